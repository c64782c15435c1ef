//! Pools built from a busy, multi-threaded client start clean: client threads printing,
//! holding a lock, keeping the allocator busy or panicking in a loop while pools are built
//! and torn down, and tasks that print, lock, allocate and panic. Every round must build,
//! answer correctly and drop within a bound; a hang is a failure (a watchdog aborts the
//! test process). A SIGKILLed client takes every process of its pool with it within 1 s.
//!
//! Rounds are modest so the file runs in well under a minute on two busy cores.

mod common;

use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use procyon::{Error, Pool};

/// Rounds of build, job, drop per scenario.
const ROUNDS: usize = 25;
/// Longest a whole scenario may take before the watchdog calls it a hang.
const SCENARIO_LIMIT: Duration = Duration::from_secs(40);
/// Items per job.
const ITEMS: usize = 64;

fn builder() -> procyon::PoolBuilder {
    Pool::builder().workers(2).mempool_size(16 << 20)
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
fn rounds<F>(what: &str, task: F, expect: impl Fn(usize) -> u64)
where
    F: Fn(usize) -> u64 + procyon::TaskFn,
{
    bounded(what, SCENARIO_LIMIT, || {
        for round in 0..ROUNDS {
            let pool = builder()
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
    rounds("printing", task_prints, square);
}

// -- locks ----------------------------------------------------------------------------

/// A lock the client thread holds most of the time.
static CLIENT_LOCK: Mutex<u64> = Mutex::new(0);
/// A lock the tasks take.
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

#[test]
fn a_client_thread_holding_a_mutex() {
    let _client = Background::start(client_locks);
    rounds("mutex", task_locks, square);
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
    rounds("allocator", task_allocates, |i| i as u64 + 1);
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
            let pool = builder()
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

/// Forks a client that builds a pool from a second thread while its first thread prints
/// and panics; the client reports its pool's pids and is SIGKILLed: every one of them
/// must be gone within 1 s.
#[test]
fn a_sigkilled_client_takes_its_pool_along() {
    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) into a local array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only builds a pool, writes to the pipe and sleeps until killed;
    // it never returns into the test harness (it ends with `_exit`).
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        let r = std::panic::catch_unwind(|| {
            let write_end = fds[1];
            let _client = Background::start(client_allocates);
            let builder_thread = std::thread::spawn(move || {
                let pool = builder().build().expect("pool builds");
                let (s, w) = pool.pids();
                let msg = std::iter::once(s)
                    .chain(w)
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
                    + "\n";
                // SAFETY: writing a local buffer to our pipe.
                unsafe { libc::write(write_end, msg.as_ptr().cast(), msg.len()) };
                // Held (the building thread stays alive) until the client is killed.
                std::thread::sleep(Duration::from_secs(60));
                drop(pool);
            });
            let _ = builder_thread.join();
        });
        // SAFETY: ends the forked child without running the harness's destructors.
        unsafe { libc::_exit(if r.is_ok() { 0 } else { 1 }) };
    }
    // SAFETY: closing our copy of the write end, so a dead child gives EOF, not a hang.
    unsafe { libc::close(fds[1]) };
    let mut buf = [0u8; 256];
    // SAFETY: reading into a local buffer from our pipe.
    let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: closing our read end.
    unsafe { libc::close(fds[0]) };
    assert!(n > 0, "the client did not report its pool");
    let pids: Vec<i32> = String::from_utf8_lossy(&buf[..n as usize])
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "scheduler and 2 workers expected: {pids:?}");
    let mut status = 0;
    // SAFETY: kill(2) and waitpid(2) on our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, &mut status, 0);
    }
    let start = Instant::now();
    for pid in pids {
        assert!(
            common::gone_within(pid, Duration::from_secs(1)),
            "process {pid} outlived its client"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(1));
}
