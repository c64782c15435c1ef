//! Pools built from a busy, multi-threaded client start clean: client threads printing,
//! holding a lock, keeping the allocator busy or panicking in a loop while pools are built
//! and torn down, and tasks that print, lock, allocate and panic. Every round must build,
//! answer correctly and drop within a bound; a hang is a failure (a watchdog aborts the
//! test process). A SIGKILLed client takes every process of its pool with it within 1 s.
//!
//! Every scenario runs in both start modes: the fork server (the default) and
//! `StartMode::Fork`. Rounds are modest so the file runs in well under a minute on two
//! busy cores.

mod common;

use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use procyon::{Error, Pool, StartMode};

const MODES: [StartMode; 2] = [StartMode::ForkServer, StartMode::Fork];

/// Rounds of build, job, drop per scenario.
const ROUNDS: usize = 100;
/// Longest a whole scenario may take before the watchdog calls it a hang.
const SCENARIO_LIMIT: Duration = Duration::from_secs(40);
/// Items per job.
const ITEMS: usize = 64;

fn builder(mode: StartMode) -> procyon::PoolBuilder {
    Pool::builder()
        .workers(2)
        .mempool_size(16 << 20)
        .start_mode(mode)
}

/// Runs `f`; aborts the whole test process if it has not returned within `limit` (a hang
/// must fail the run, not stall it).
fn bounded<R>(what: &str, limit: Duration, f: impl FnOnce() -> R) -> R {
    let (done, wait) = mpsc::channel::<()>();
    let name = what.to_string();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
            eprintln!("{name}: no end within {limit:?}: a hang; aborting");
            std::process::abort();
        }
    });
    let r = f();
    let _ = done.send(());
    watchdog.join().unwrap();
    r
}

/// Starts `client` on a thread of its own, looping until the returned guard drops.
struct Background {
    stop: &'static AtomicBool,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Background {
    fn start(client: fn()) -> Background {
        let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let thread = std::thread::spawn(move || {
            let mut laps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                client();
                laps += 1;
            }
            laps
        });
        Background {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let laps = t.join().expect("background client thread");
            assert!(laps > 0, "the background client thread never ran");
        }
    }
}

/// Some work while a lock is held, so that a fork lands inside it often.
fn busy_while_locked() {
    let mut x = 0u64;
    for i in 0..2_000u64 {
        x = black_box(x.wrapping_add(i));
    }
    black_box(x);
}

/// Builds, runs one job of `task` over `0..ITEMS` (checked against `expect`), drops.
fn rounds<F>(mode: StartMode, what: &str, task: F, expect: impl Fn(usize) -> u64)
where
    F: Fn(usize) -> u64 + procyon::TaskFn,
{
    let what = format!("{what} ({mode:?})");
    bounded(&what, SCENARIO_LIMIT, || {
        for round in 0..ROUNDS {
            let pool = builder(mode)
                .build()
                .unwrap_or_else(|e| panic!("{what}, round {round}: build failed: {e}"));
            let total = pool
                .par_range(0..ITEMS)
                .with_max_len(4)
                .map(task)
                .sum::<u64>()
                .unwrap_or_else(|e| panic!("{what}, round {round}: job failed: {e}"));
            assert_eq!(
                total,
                (0..ITEMS).map(&expect).sum::<u64>(),
                "{what}, round {round}"
            );
            drop(pool);
        }
    });
}

fn square(i: usize) -> u64 {
    (i * i) as u64
}

// -- printing -------------------------------------------------------------------------

/// Holds the real stdout lock (not libtest's capture) while it works, and prints a line
/// now and then.
fn client_prints() {
    static LAPS: AtomicU64 = AtomicU64::new(0);
    let mut out = std::io::stdout().lock();
    busy_while_locked();
    if LAPS.fetch_add(1, Ordering::Relaxed) % 20_000 == 0 {
        let _ = writeln!(out, "clean_start: the client thread prints");
    }
}

fn task_prints(i: usize) -> u64 {
    let mut out = std::io::stdout().lock();
    if i % 16 == 0 {
        let _ = writeln!(out, "clean_start: task {i} prints");
    }
    let _ = out.flush();
    square(i)
}

#[test]
fn a_client_thread_printing() {
    let _client = Background::start(client_prints);
    for mode in MODES {
        rounds(mode, "printing", task_prints, square);
    }
}

// -- locks ----------------------------------------------------------------------------

/// A lock the client thread holds most of the time.
static CLIENT_LOCK: Mutex<u64> = Mutex::new(0);
/// A lock the tasks take in `StartMode::Fork`, where a task must not take a lock a client
/// thread may hold at the fork (see `Pool`'s docs).
static TASK_LOCK: Mutex<u64> = Mutex::new(0);

fn client_locks() {
    let mut g = CLIENT_LOCK.lock().unwrap();
    busy_while_locked();
    *g += 1;
}

fn task_locks(i: usize) -> u64 {
    let mut g = TASK_LOCK.lock().unwrap();
    *g += 1;
    square(i)
}

/// The fork server's image never saw the client's lock taken: tasks may take it.
fn task_takes_the_clients_lock(i: usize) -> u64 {
    let mut g = CLIENT_LOCK.lock().unwrap();
    *g += 1;
    square(i)
}

#[test]
fn a_client_thread_holding_a_mutex() {
    let _client = Background::start(client_locks);
    rounds(
        StartMode::ForkServer,
        "mutex",
        task_takes_the_clients_lock,
        square,
    );
    rounds(StartMode::Fork, "mutex", task_locks, square);
}

// -- the allocator --------------------------------------------------------------------

fn client_allocates() {
    let v: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 + i * 97]).collect();
    black_box(v);
}

fn task_allocates(i: usize) -> u64 {
    let v: Vec<u64> = (0..=i as u64).collect();
    black_box(&v);
    v.len() as u64
}

#[test]
fn a_client_thread_keeping_the_allocator_busy() {
    let _client = Background::start(client_allocates);
    for mode in MODES {
        rounds(mode, "allocator", task_allocates, |i| i as u64 + 1);
    }
}

// -- panics ---------------------------------------------------------------------------

/// A panic hook that is quiet and slow: a panicking client thread holds std's hook lock
/// for a while, the window in which a fork used to copy it held.
fn slow_quiet_hook() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let from_client = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|s| *s == "client panic");
            if from_client {
                busy_while_locked();
            } else {
                previous(info);
            }
        }));
    });
}

fn client_panics() {
    let r = std::panic::catch_unwind(|| std::panic::panic_any("client panic"));
    assert!(r.is_err());
}

fn task_panics(i: usize) -> u64 {
    if i == 7 {
        panic!("task panic on {i}");
    }
    square(i)
}

#[test]
fn a_client_thread_panicking_in_a_loop() {
    slow_quiet_hook();
    let _client = Background::start(client_panics);
    bounded("panics", SCENARIO_LIMIT, || {
        for round in 0..ROUNDS {
            let mode = MODES[round % 2];
            let pool = builder(mode)
                .build()
                .unwrap_or_else(|e| panic!("panics, round {round}: build failed: {e}"));
            let r = pool.par_range(0..ITEMS).map(task_panics).sum::<u64>();
            match r {
                Err(Error::TaskPanicked { message, .. }) => {
                    assert!(message.contains("task panic on 7"), "{message}")
                }
                other => panic!("panics, round {round}: expected the task's panic: {other:?}"),
            }
            // The pool serves on after the panic.
            let total = pool.par_range(0..ITEMS).map(square).sum::<u64>().unwrap();
            assert_eq!(total, (0..ITEMS).map(square).sum::<u64>());
        }
    });
}

// -- a SIGKILLed client ---------------------------------------------------------------

/// Set in the environment of the client process `sigkilled_client` starts.
const CHILD_MODE: &str = "CLEAN_START_CLIENT_MODE";

/// Starts a client (this test binary again, running only `sigkill_client_child`: a fresh
/// process, not a fork of this multi-threaded harness) that builds a pool from a second
/// thread while its first thread keeps the allocator busy; it reports its pool's pids and
/// is SIGKILLed: every one of them must be gone within 1 s.
#[test]
fn a_sigkilled_client_takes_its_pool_along() {
    for mode in ["server", "fork"] {
        sigkilled_client(mode);
    }
}

fn sigkilled_client(mode: &str) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_client_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_MODE, mode)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the client starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
        {
            if let Some(pids) = line.strip_prefix("PIDS ") {
                let _ = tx.send(pids.to_string());
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let status = child.wait().unwrap();
    let line = line.unwrap_or_else(|_| panic!("{mode}: the client did not report its pool"));
    assert!(!status.success());
    let pids: Vec<i32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let expected = if mode == "server" { 4 } else { 3 };
    assert_eq!(
        pids.len(),
        expected,
        "{mode}: scheduler, 2 workers (and the fork server) expected: {pids:?}"
    );
    let start = Instant::now();
    for pid in pids {
        assert!(
            common::gone_within(pid, Duration::from_secs(1)),
            "{mode}: process {pid} outlived its client"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// The client of `a_sigkilled_client_takes_its_pool_along` (run only by it).
#[test]
#[ignore = "the client process of a_sigkilled_client_takes_its_pool_along"]
fn sigkill_client_child() {
    let mode = match std::env::var(CHILD_MODE).as_deref() {
        Ok("server") => StartMode::ForkServer,
        Ok("fork") => StartMode::Fork,
        _ => return,
    };
    let _client = Background::start(client_allocates);
    let builder_thread = std::thread::spawn(move || {
        let pool = builder(mode).build().expect("pool builds");
        let (s, w) = pool.pids();
        let pids: Vec<String> = std::iter::once(s)
            .chain(w)
            .chain(procyon::__fork_server_pid())
            .map(|p| p.to_string())
            .collect();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "PIDS {}", pids.join(" "));
        let _ = out.flush();
        drop(out);
        // Held (the building thread stays alive) until the client is killed.
        std::thread::sleep(Duration::from_secs(60));
        drop(pool);
    });
    let _ = builder_thread.join();
}

// -- a fork server serves its own client only -----------------------------------------

/// A process forked from a client (which inherits the client's channel to its fork
/// server) gets a fork server of its own when it builds a pool; the client's server does
/// not serve it.
#[test]
fn a_forked_child_of_a_client_gets_its_own_fork_server() {
    let out = bounded("forking client", SCENARIO_LIMIT, || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "forking_client_child",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_MODE, "forking")
            .output()
            .expect("the client runs")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("FORKING CLIENT OK"),
        "the forking client failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The client of `a_forked_child_of_a_client_gets_its_own_fork_server` (run only by it).
#[test]
#[ignore = "the client process of a_forked_child_of_a_client_gets_its_own_fork_server"]
fn forking_client_child() {
    if std::env::var(CHILD_MODE).as_deref() != Ok("forking") {
        return;
    }
    let pool = builder(StartMode::ForkServer).build().unwrap();
    let ours = procyon::__fork_server_pid().expect("a fork server");
    // SAFETY: this process runs no thread that holds a lock the child needs (the harness's
    // other thread waits for this test); the child ends with `_exit`.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        let ok = std::panic::catch_unwind(|| {
            let pool = builder(StartMode::ForkServer).build().unwrap();
            let total = pool.par_range(0..ITEMS).map(square).sum::<u64>().unwrap();
            let theirs = procyon::__fork_server_pid().expect("a fork server of its own");
            total == (0..ITEMS).map(square).sum::<u64>() && theirs != ours
        });
        // SAFETY: ends the forked child without running the harness's destructors.
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child, into a local.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if r == child {
            break;
        }
        assert!(Instant::now() < deadline, "the forked client hangs");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked client's pool failed: status {status}"
    );
    // The client's own pool and server are untouched.
    assert_eq!(procyon::__fork_server_pid(), Some(ours));
    let total = pool.par_range(0..ITEMS).map(square).sum::<u64>().unwrap();
    assert_eq!(total, (0..ITEMS).map(square).sum::<u64>());
    let _ = writeln!(std::io::stdout().lock(), "FORKING CLIENT OK");
}

// -- a pool outliving the thread that built it ----------------------------------------

/// Built on a thread that then ends, a fork-server pool keeps serving (its processes are
/// tied to the fork server, not to that thread), and the program never called any
/// start-up function.
#[test]
fn a_pool_built_on_a_short_lived_thread_serves_on() {
    bounded("short-lived thread", SCENARIO_LIMIT, || {
        let pool = std::thread::spawn(|| builder(StartMode::ForkServer).build().unwrap())
            .join()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let total = pool.par_range(0..ITEMS).map(square).sum::<u64>().unwrap();
        assert_eq!(total, (0..ITEMS).map(square).sum::<u64>());
    });
}

// -- a tokio multi-thread runtime ---------------------------------------------------

fn task_allocates_and_prints(i: usize) -> u64 {
    let v: Vec<u64> = (0..64).map(|k| k as u64).collect();
    if i % 64 == 0 {
        println!("task {i} of a pool built beside a tokio runtime");
    }
    (i * i) as u64 + v.len() as u64 - 64
}

/// A tokio multi-thread runtime busy with timers, channels and allocation on its own
/// threads (and awaiting pool jobs of a pool of its own) while pools are built and used:
/// no hang, every result right.
#[test]
fn a_tokio_multi_thread_runtime_running() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_time()
        .build()
        .unwrap();
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let service = builder(StartMode::ForkServer).build().unwrap();
    let service: &'static procyon::Pool = Box::leak(Box::new(service));
    let load: Vec<_> = (0..6u64)
        .map(|t| {
            rt.spawn(async move {
                let mut laps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u64>>(4);
                    tx.send(vec![t; 256]).await.unwrap();
                    black_box(rx.recv().await);
                    if laps % 8 == 0 {
                        let h = service
                            .spawn_with(t, |t: &u64, _: &procyon::Ctx| t + 1)
                            .unwrap();
                        assert_eq!(h.await.unwrap(), t + 1);
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    laps += 1;
                }
                laps
            })
        })
        .collect();
    for mode in MODES {
        rounds(mode, "tokio runtime", task_allocates_and_prints, square);
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        assert!(rt.block_on(l).unwrap() > 0);
    }
}
