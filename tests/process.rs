//! Explicit processes (`Pool::fork_with`, `Process`, `ProcessDesc`) across real
//! processes: results against a sequential computation, more processes than workers
//! with the workers left free, nested jobs, a producer / consumer pair over a
//! `SharedQueue`, joins from a worker task and from another explicit process, deaths
//! (SIGKILL, abort, exit, panic) as typed errors, bounded joins, and a pool dropped while
//! its processes run. Every wait is bounded; nothing is left behind.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{kill, no_leaks, one_at_a_time};
use procyon::collections::{SharedQueue, SharedQueueDesc};
use procyon::{Ctx, Error, Pool, Process, ProcessDesc};
use serde::{Deserialize, Serialize};

const ANSWER: Duration = Duration::from_secs(30);

fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .mempool_size(32 << 20)
        .build()
        .expect("pool builds")
}

/// Joins with a bound: a process that never answers fails the test instead of hanging.
fn join<R: serde::de::DeserializeOwned>(p: Process<R>) -> procyon::Result<R> {
    match p.join_timeout(ANSWER) {
        Ok(r) => r,
        Err(p) => {
            let _ = p.kill();
            panic!("process {} gave no answer within {ANSWER:?}", p.number())
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Job {
    seed: u64,
    rounds: u32,
    words: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Answer {
    hash: u64,
    letters: usize,
    longest: Option<String>,
}

fn compute(job: &Job) -> Answer {
    let mut h = job.seed;
    for _ in 0..job.rounds {
        h = h
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    Answer {
        hash: h,
        letters: job.words.iter().map(String::len).sum(),
        longest: job.words.iter().max_by_key(|w| w.len()).cloned(),
    }
}

#[test]
fn results_round_trip_against_a_sequential_computation() {
    let _turn = one_at_a_time();
    let pool = pool(2);
    let before = pool.mempool().usage().allocations;
    let jobs: Vec<Job> = (0..4)
        .map(|i| Job {
            seed: i * 977,
            rounds: 10_000 + i as u32,
            words: (0..50 * (i + 1))
                .map(|w| "x".repeat(w as usize % 13))
                .collect(),
        })
        .collect();
    let procs: Vec<Process<Answer>> = jobs
        .iter()
        .map(|j| pool.fork_with(j.clone(), |j: &Job, _: &Ctx| compute(j)))
        .collect::<procyon::Result<_>>()
        .unwrap();
    for (p, j) in procs.into_iter().zip(&jobs) {
        assert_eq!(join(p).unwrap(), compute(j));
    }
    // A plain-data argument and result, and a unit one.
    let p = pool
        .fork_with([3u32; 16], |a: &[u32; 16], _: &Ctx| a.map(|v| v * 2))
        .unwrap();
    assert_eq!(join(p).unwrap(), [6u32; 16]);
    let p = pool.fork_with((), |_: &(), _: &Ctx| ()).unwrap();
    join(p).unwrap();
    assert_eq!(
        pool.mempool().usage().allocations,
        before,
        "joined processes leave no block behind"
    );
}

/// Sleeps `ms`, then returns its pid and `i * i`.
fn nap(&(i, ms): &(u64, u64), _: &Ctx) -> (u32, u64) {
    std::thread::sleep(Duration::from_millis(ms));
    (std::process::id(), i * i)
}

#[test]
fn more_processes_than_workers_all_join_and_leave_the_workers_to_jobs() {
    let _turn = one_at_a_time();
    let pool = pool(2);
    let (_, workers_before) = pool.pids();
    let procs: Vec<Process<(u32, u64)>> = (0..8u64)
        .map(|i| pool.fork_with((i, 400), nap))
        .collect::<procyon::Result<_>>()
        .unwrap();
    let pids: BTreeSet<i32> = procs.iter().map(|p| p.pid()).collect();
    assert_eq!(pids.len(), 8, "each process has a pid of its own");
    assert!(pids.iter().all(|&p| p > 0 && !workers_before.contains(&p)));
    // While all eight run, a job still gets both workers.
    let ran_on: BTreeSet<u32> = pool
        .par_range(0..64u32)
        .with_max_len(1)
        .map(|_: u32| {
            std::thread::sleep(Duration::from_millis(5));
            std::process::id()
        })
        .collect::<Vec<u32>>()
        .unwrap()
        .into_iter()
        .collect();
    let (_, workers_after) = pool.pids();
    assert_eq!(workers_after, workers_before, "no worker replaced or taken");
    assert_eq!(
        ran_on,
        workers_before.iter().map(|&p| p as u32).collect(),
        "the job ran on both workers, never in an explicit process"
    );
    for (i, p) in procs.into_iter().enumerate() {
        let pid = p.pid();
        assert_eq!(join(p).unwrap(), (pid as u32, (i * i) as u64));
    }
    assert_eq!(pool.jobs_in_flight(), 0);
}

fn nested(n: &u64, ctx: &Ctx) -> Result<(u64, u64, Vec<u64>), String> {
    let run = || -> procyon::Result<_> {
        let sum: u64 = ctx.par_range(0..*n).map(|i: u64| i * 3 + 1).sum()?;
        let x = ctx.array_from_fn(*n as usize, |i| i as u64)?;
        let squares = ctx.par_map(&x, |v: u64| v * v)?;
        let (a, b) = ctx.join(|_: &Ctx| 40u64, |_: &Ctx| 2u64)?;
        Ok((sum, a + b, squares.to_vec()))
    };
    run().map_err(|e| e.to_string())
}

#[test]
fn a_process_runs_nested_jobs_in_the_workers() {
    let _turn = one_at_a_time();
    let pool = pool(2);
    let n = 20_000u64;
    let (sum, joined, squares) = join(pool.fork_with(n, nested).unwrap()).unwrap().unwrap();
    assert_eq!(sum, (0..n).map(|i| i * 3 + 1).sum::<u64>());
    assert_eq!(joined, 42);
    assert_eq!(squares, (0..n).map(|v| v * v).collect::<Vec<_>>());
    assert_eq!(pool.jobs_in_flight(), 0);
}

const END: u64 = u64::MAX;

fn produce(&(q, n): &(SharedQueueDesc<u64>, u64), _: &Ctx) -> u64 {
    let q = q.open().unwrap();
    for i in 0..n {
        q.push_timeout(i * 7 % 1000, ANSWER).unwrap();
    }
    q.push_timeout(END, ANSWER).unwrap();
    n
}

fn consume(q: &SharedQueueDesc<u64>, _: &Ctx) -> (u64, u64) {
    let q = q.open().unwrap();
    let (mut count, mut sum) = (0, 0);
    loop {
        let v = q.pop_timeout(ANSWER).unwrap();
        if v == END {
            return (count, sum);
        }
        count += 1;
        sum += v;
    }
}

#[test]
fn producer_and_consumer_processes_share_a_queue() {
    let _turn = one_at_a_time();
    let pool = pool(1);
    let q = SharedQueue::<u64>::new(pool.mempool(), 64).unwrap();
    let n = 50_000u64;
    let consumer = pool.fork_with(q.desc(), consume).unwrap();
    let producer = pool.fork_with((q.desc(), n), produce).unwrap();
    assert_eq!(join(producer).unwrap(), n);
    let expected = (n, (0..n).map(|i| i * 7 % 1000).sum::<u64>());
    assert_eq!(join(consumer).unwrap(), expected);
}

/// Joins the process `d` names; the error as text (an `Error` is not serde).
fn join_desc(d: &ProcessDesc<u64>, ctx: &Ctx) -> Result<u64, String> {
    let p = d.open(ctx).map_err(|e| e.to_string())?;
    match p.join_timeout(ANSWER) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

#[test]
fn a_worker_task_and_another_process_join_through_the_descriptor() {
    let _turn = one_at_a_time();
    let pool = pool(2);
    // From a task in a worker.
    let a = pool.fork_with(5u64, |n: &u64, _: &Ctx| n * 100).unwrap();
    let da = a.desc();
    let got = pool.spawn_with(da, join_desc).unwrap().wait().unwrap();
    assert_eq!(got.unwrap(), 500);
    // The handle's own join now finds the result taken.
    assert!(matches!(join(a), Err(Error::AlreadyJoined { .. })));
    assert!(matches!(da.open(&pool), Err(Error::AlreadyJoined { .. })));

    // From another explicit process, while the first one still runs.
    let b = pool
        .fork_with(7u64, |n: &u64, _: &Ctx| {
            std::thread::sleep(Duration::from_millis(100));
            n + 1
        })
        .unwrap();
    let joiner = pool.fork_with(b.desc(), join_desc).unwrap();
    assert_eq!(join(joiner).unwrap().unwrap(), 8);
    assert!(matches!(join(b), Err(Error::AlreadyJoined { .. })));

    // A task forks a process and joins it itself.
    let inner = pool
        .spawn(|ctx: &Ctx| {
            let p = ctx.fork_with(3u64, |n: &u64, _: &Ctx| n * n).unwrap();
            p.join_timeout(ANSWER).ok().map(|r| r.unwrap())
        })
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(inner, Some(9));

    // A descriptor opened with the wrong result type is refused.
    let c = pool.fork_with((), |_: &(), _: &Ctx| 1u64).unwrap();
    let wrong: ProcessDesc<String> =
        bincode::deserialize(&bincode::serialize(&c.desc()).unwrap()).unwrap();
    assert!(matches!(
        wrong.open(&pool),
        Err(Error::InvalidDescriptor { .. })
    ));
    assert_eq!(join(c).unwrap(), 1);
}

fn park(_: &(), _: &Ctx) -> u64 {
    loop {
        std::thread::park();
    }
}

#[test]
fn deaths_are_typed_errors_at_join() {
    let _turn = one_at_a_time();
    let pool = pool(2);
    // SIGKILL from outside, through the pid.
    let p = pool.fork_with((), park).unwrap();
    let pid = p.pid();
    kill(pid, libc::SIGKILL);
    match join(p) {
        Err(Error::ProcessDied {
            pid: died,
            signal: Some(libc::SIGKILL),
            exit_code: None,
            ..
        }) => assert_eq!(died, pid),
        other => panic!("expected ProcessDied by SIGKILL, got {other:?}"),
    }
    // abort()
    let p = pool
        .fork_with((), |_: &(), _: &Ctx| -> u64 { std::process::abort() })
        .unwrap();
    assert!(matches!(
        join(p),
        Err(Error::ProcessDied {
            signal: Some(libc::SIGABRT),
            ..
        })
    ));
    // exit(3)
    let p = pool
        .fork_with((), |_: &(), _: &Ctx| -> u64 { std::process::exit(3) })
        .unwrap();
    assert!(matches!(
        join(p),
        Err(Error::ProcessDied {
            signal: None,
            exit_code: Some(3),
            ..
        })
    ));
    // panic!
    let p = pool
        .fork_with(17u64, |n: &u64, _: &Ctx| -> u64 {
            panic!("no luck with {n}")
        })
        .unwrap();
    match join(p) {
        Err(Error::ProcessPanicked { message, .. }) => {
            assert!(message.contains("no luck with 17"), "{message}")
        }
        other => panic!("expected ProcessPanicked, got {other:?}"),
    }
    // Process::kill
    let p = pool.fork_with((), park).unwrap();
    p.kill().unwrap();
    assert!(matches!(
        join(p),
        Err(Error::ProcessDied {
            signal: Some(libc::SIGKILL),
            ..
        })
    ));
    // The pool serves on, at full strength.
    common::assert_full_strength(&pool, ANSWER);
    let x = pool.array_from_fn(1000, |i| i as u64).unwrap();
    assert_eq!(pool.par_map(&x, |v: u64| v + 1).unwrap()[999], 1000);
}

#[test]
fn a_pool_holds_256_processes_until_they_are_joined() {
    let _turn = one_at_a_time();
    let pool = pool(1);
    // Each ends at once, but holds its record until joined.
    let procs: Vec<Process<u32>> = (0..256u32)
        .map(|i| pool.fork_with(i, |i: &u32, _: &Ctx| i + 1))
        .collect::<procyon::Result<_>>()
        .unwrap();
    assert!(matches!(
        pool.fork_with(0u32, |i: &u32, _: &Ctx| *i),
        Err(Error::TooManyProcesses { limit: 256 })
    ));
    let total: u32 = procs.into_iter().map(|p| join(p).unwrap()).sum();
    assert_eq!(total, (1..=256).sum());
    // Joined records are reused.
    assert_eq!(
        join(pool.fork_with(1u32, |i: &u32, _: &Ctx| i * 5).unwrap()).unwrap(),
        5
    );
}

/// Starts a nested job that never ends, then waits for it.
fn stuck_in_a_job(_: &(), ctx: &Ctx) -> u64 {
    ctx.par_range(0..2usize)
        .map(|_: usize| loop {
            std::thread::sleep(Duration::from_millis(1));
        })
        .sum::<u64>()
        .unwrap_or(0)
}

#[test]
fn a_killed_process_s_jobs_are_cleaned_up() {
    let _turn = one_at_a_time();
    let pool = Pool::builder()
        .workers(2)
        .mempool_size(32 << 20)
        .cancel_grace(Duration::from_millis(50))
        .build()
        .unwrap();
    let p = pool.fork_with((), stuck_in_a_job).unwrap();
    let deadline = Instant::now() + ANSWER;
    while pool.jobs_in_flight() == 0 {
        assert!(Instant::now() < deadline, "the nested job never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    p.kill().unwrap();
    assert!(matches!(join(p), Err(Error::ProcessDied { .. })));
    // The scheduler cancels the dead owner's job and kills the workers inside it.
    while pool.jobs_in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "the orphaned job was never collected"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    common::assert_full_strength(&pool, ANSWER);
    assert_eq!(pool.par_range(0..10u64).sum::<u64>().unwrap(), 45);
}

#[test]
fn join_timeout_is_bounded() {
    let _turn = one_at_a_time();
    let pool = pool(1);
    let p = pool.fork_with((), park).unwrap();
    let start = Instant::now();
    let p = match p.join_timeout(Duration::from_millis(100)) {
        Ok(r) => panic!("a parked process ended: {r:?}"),
        Err(p) => p,
    };
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    let p = p.try_join().expect_err("still running");
    p.kill().unwrap();
    assert!(matches!(join(p), Err(Error::ProcessDied { .. })));
}

#[test]
fn a_process_cannot_join_itself() {
    let _turn = one_at_a_time();
    let pool = pool(1);
    // The process learns its own descriptor through a queue, then tries to join it.
    let q = SharedQueue::<[u64; 4]>::new(pool.mempool(), 2).unwrap();
    let p = pool
        .fork_with(q.desc(), |q: &SharedQueueDesc<[u64; 4]>, ctx: &Ctx| {
            let raw = q.open().unwrap().pop_timeout(ANSWER).unwrap();
            let desc: ProcessDesc<u64> = bincode::deserialize(bytemuck::bytes_of(&raw)).unwrap();
            match desc
                .open(ctx)
                .map(|p| p.join_timeout(Duration::from_secs(5)))
            {
                Ok(Ok(Err(Error::InvalidConfig { .. }))) => 1u64,
                _ => 0,
            }
        })
        .unwrap();
    let encoded = bincode::serialize(&p.desc()).unwrap();
    let mut raw = [0u64; 4];
    bytemuck::bytes_of_mut(&mut raw)[..encoded.len()].copy_from_slice(&encoded);
    q.push_timeout(raw, ANSWER).unwrap();
    assert_eq!(join(p).unwrap(), 1);
}

#[test]
fn dropping_the_pool_takes_running_processes_with_it() {
    no_leaks(|| {
        let pool = pool(1);
        let procs: Vec<Process<u64>> = (0..3)
            .map(|_| pool.fork_with((), park))
            .collect::<procyon::Result<_>>()
            .unwrap();
        let pids: Vec<i32> = procs.iter().map(|p| p.pid()).collect();
        assert!(pids.iter().all(|&p| common::alive(p)));
        drop(procs); // detached: they run on, until the pool goes
        assert!(pids.iter().all(|&p| common::alive(p)));
        drop(pool);
        for pid in pids {
            assert!(
                common::gone_within(pid, Duration::from_secs(5)),
                "{pid} left"
            );
        }
    });
}

// -- a SIGKILLed client ---------------------------------------------------------------

/// Set in the environment of the client process `sigkilled_client` starts.
const CHILD_MODE: &str = "PROCESS_TEST_CLIENT_MODE";

/// A client (this test binary again, running only `client_with_processes`) builds a pool
/// in each start mode, forks two explicit processes that never end, reports every pid
/// of its tree and is SIGKILLed: all of them must be gone within 1 s.
#[test]
fn a_sigkilled_client_takes_its_explicit_processes_along() {
    let _turn = one_at_a_time();
    for mode in ["server", "fork"] {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "client_with_processes",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_MODE, mode)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the client starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
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
        let line = rx.recv_timeout(ANSWER);
        let _ = child.kill();
        let status = child.wait().unwrap();
        let line = line.unwrap_or_else(|_| panic!("{mode}: the client did not report"));
        assert!(!status.success());
        let pids: Vec<i32> = line
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(
            pids.len(),
            4,
            "{mode}: scheduler, a worker, 2 processes: {pids:?}"
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
}

/// The client of `a_sigkilled_client_takes_its_explicit_processes_along` (run only by it).
#[test]
#[ignore = "the client process of a_sigkilled_client_takes_its_explicit_processes_along"]
fn client_with_processes() {
    use std::io::Write;
    let mode = match std::env::var(CHILD_MODE).as_deref() {
        Ok("server") => procyon::StartMode::ForkServer,
        Ok("fork") => procyon::StartMode::Fork,
        _ => return,
    };
    let pool = Pool::builder()
        .workers(1)
        .mempool_size(16 << 20)
        .start_mode(mode)
        .build()
        .expect("pool builds");
    let procs: Vec<Process<u64>> = (0..2).map(|_| pool.fork_with((), park).unwrap()).collect();
    let (s, w) = pool.pids();
    let pids: Vec<String> = std::iter::once(s)
        .chain(w)
        .chain(procs.iter().map(|p| p.pid()))
        .map(|p| p.to_string())
        .collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "PIDS {}", pids.join(" "));
    let _ = out.flush();
    drop(out);
    std::thread::sleep(Duration::from_secs(60));
    drop(pool);
}
