//! Faults injected for real: SIGKILLed workers (during flat jobs, nested jobs and
//! cancellations), a SIGKILLed scheduler, crashing tasks (panic, abort, SIGSEGV, stack
//! overflow, allocation failure under a memory limit), the mempool running out, floods
//! of progress and reports, inbox back-pressure, a SIGKILLed client. Every job must be
//! answered (a bounded wait fails the test instead of hanging it), every returned result
//! must equal the sequential one, and the pool must end at full strength with its memory
//! back.
//!
//! Randomized tests print their seed; set `PROCYON_FAULT_SEED` to replay one.

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::procfs::running;
use common::tasks::{abort_on, parent_of_spinners, segv_on, slow, spin_300ms, spin_forever};
use common::{answer, assert_full_strength, kill};
use procyon::{Ctx, Error, JobHandle, Pool, Progress};

/// Longest any job may take to answer before the test calls it a hang.
const ANSWER: Duration = Duration::from_secs(20);
/// Longest a killed worker's replacement may take to be up.
const STRENGTH: Duration = Duration::from_secs(2);

fn pool(workers: usize, mempool: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .mempool_size(mempool)
        .mempool_max(mempool)
        .cancel_grace(Duration::from_millis(20))
        .build()
        .expect("pool builds")
}

use common::Rng;

/// SIGKILLs a random live worker of `pool`; its pid.
fn kill_random_worker(pool: &Pool, rng: &mut Rng) -> i32 {
    let (_, pids) = pool.pids();
    let live: Vec<i32> = pids.into_iter().filter(|&p| p > 0).collect();
    let victim = live[rng.below(live.len() as u64) as usize];
    kill(victim, libc::SIGKILL);
    victim
}

/// Outcomes of fault rounds, printed for the closing note.
#[derive(Default, Debug)]
struct Tally {
    ok: u32,
    worker_died: u32,
    cancelled: u32,
    nested_error: u32,
}

/// How a fault round ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    WorkerDied,
    NestedError,
}

impl Tally {
    fn count(&mut self, o: Outcome) {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::WorkerDied => self.worker_died += 1,
            Outcome::NestedError => self.nested_error += 1,
        }
    }
}

/// A job handle of any result type: cancel it, or wait (bounded) for its outcome.
trait Job {
    fn cancel(&self);
    fn answer(self: Box<Self>, what: &str) -> procyon::Result<()>;
}

impl<R> Job for JobHandle<R> {
    fn cancel(&self) {
        JobHandle::cancel(self);
    }

    fn answer(self: Box<Self>, what: &str) -> procyon::Result<()> {
        answer(*self, ANSWER, what).map(|_| ())
    }
}

/// Checks that a job hit by our SIGKILL failed the right way.
fn assert_killed(e: &Error, what: &str) {
    match e {
        Error::WorkerDied {
            signal: Some(libc::SIGKILL),
            ..
        } => {
            let msg = e.to_string();
            assert!(
                msg.contains("SIGKILL") && msg.contains("died"),
                "{what}: unhelpful message {msg}"
            );
        }
        other => panic!("{what}: expected WorkerDied by SIGKILL, got {other:?}"),
    }
}

#[test]
fn sigkill_workers_during_par_map() {
    common::no_leaks(|| {
        let pool = pool(2, 128 << 20);
        let mut rng = Rng::new("sigkill_workers_during_par_map");
        let n = 20_000;
        let x = pool.array_from_fn(n, |i| i as u64).unwrap();
        let expected: Vec<u64> = (0..n as u64).map(slow).collect();
        let mut y = pool.array_zeroed::<u64>(n).unwrap();
        let start = Instant::now();
        pool.par_map_into(&x, &mut y, slow).unwrap();
        let job = start.elapsed();
        assert_eq!(&y[..], &expected[..]);
        let base = pool.mempool().usage();
        let mut tally = Tally::default();
        for round in 0..40 {
            y.as_mut_slice().fill(0);
            // SAFETY: `y` is read only after the handle is answered; both outlive it.
            let handle = unsafe { pool.spawn_map_into(&x, &mut y, slow) }.unwrap();
            std::thread::sleep(rng.delay(job.mul_f32(1.2)));
            let victim = kill_random_worker(&pool, &mut rng);
            match answer(handle, ANSWER, "par_map under SIGKILL") {
                Ok(()) => {
                    assert_eq!(
                        &y[..],
                        &expected[..],
                        "round {round}: wrong result after a worker death"
                    );
                    tally.ok += 1;
                }
                Err(e) => {
                    assert_killed(&e, &format!("round {round}"));
                    assert!(
                        matches!(e, Error::WorkerDied { pid, .. } if pid == victim),
                        "{e:?} names another pid than {victim}"
                    );
                    tally.worker_died += 1;
                }
            }
            assert_full_strength(&pool, STRENGTH);
        }
        // A healthy job after all that, and the failed jobs' memory is back.
        pool.par_map_into(&x, &mut y, slow).unwrap();
        assert_eq!(&y[..], &expected[..]);
        assert_eq!(pool.mempool().usage().in_use, base.in_use);
        assert_eq!(pool.mempool().usage().allocations, base.allocations);
        eprintln!("par_map: 40 rounds survived (job {job:?}): {tally:?}");
    });
}

/// Two levels of nested jobs below a spawned task: 4 tasks, each summing a range with a
/// job of its own.
fn nested_task(ctx: &Ctx) -> Result<u64, String> {
    let parts = ctx
        .par_range(0..4)
        .with_max_len(1)
        .map_ctx(|ctx: &Ctx, i: usize| {
            ctx.par_range(i * 2500..(i + 1) * 2500)
                .map(|j: usize| slow(j as u64))
                .sum::<u64>()
                .map_err(|e| e.to_string())
        })
        .collect_vec()
        .map_err(|e| e.to_string())?;
    parts.into_iter().sum()
}

/// The same shape from the client: a parallel iterator whose tasks start jobs.
fn nested_item(ctx: &Ctx, i: usize) -> Result<u64, String> {
    ctx.par_range(i * 1000..(i + 1) * 1000)
        .map(|j: usize| slow(j as u64))
        .sum::<u64>()
        .map_err(|e| e.to_string())
}

#[test]
fn sigkill_workers_during_nested_jobs() {
    common::no_leaks(|| {
        let pool = pool(2, 128 << 20);
        let mut rng = Rng::new("sigkill_workers_during_nested_jobs");
        let expected_task: u64 = (0..10_000u64).map(slow).sum();
        let expected_items: Vec<u64> = (0..8)
            .map(|i| (i * 1000..(i + 1) * 1000).map(slow).sum())
            .collect();
        let start = Instant::now();
        assert_eq!(
            pool.spawn(nested_task).unwrap().wait().unwrap(),
            Ok(expected_task)
        );
        let job = start.elapsed();
        let base = pool.mempool().usage();
        let mut tally = Tally::default();
        // A nested failure reaches the caller as the inner error's text (the task
        // propagated it) or as the death of the worker running the outer task.
        let nested_death = |msg: &str| msg.contains("died") && msg.contains("SIGKILL");
        // Bytes left allocated by rounds whose root job completed although a nested job
        // below it lost its worker (see `orphaned_nested_jobs_are_freed`).
        let mut orphan_leak = 0usize;
        for round in 0..30 {
            let before = pool.mempool().usage().in_use;
            let outcome = if round % 2 == 0 {
                let handle = pool.spawn(nested_task).unwrap();
                std::thread::sleep(rng.delay(job.mul_f32(1.2)));
                kill_random_worker(&pool, &mut rng);
                match answer(handle, ANSWER, "nested spawn under SIGKILL") {
                    Ok(Ok(v)) => {
                        assert_eq!(v, expected_task, "round {round}");
                        Outcome::Ok
                    }
                    Ok(Err(msg)) => {
                        assert!(nested_death(&msg), "round {round}: {msg}");
                        Outcome::NestedError
                    }
                    Err(Error::TaskPanicked { message, .. }) if nested_death(&message) => {
                        Outcome::NestedError
                    }
                    Err(e) => {
                        assert_killed(&e, &format!("round {round}"));
                        Outcome::WorkerDied
                    }
                }
            } else {
                let handle = pool
                    .par_range(0..8)
                    .with_max_len(1)
                    .map_ctx(nested_item)
                    .spawn_collect_vec()
                    .unwrap();
                std::thread::sleep(rng.delay(job.mul_f32(1.2)));
                kill_random_worker(&pool, &mut rng);
                match answer(handle, ANSWER, "nested iterator under SIGKILL") {
                    Ok(parts) => {
                        let mut outcome = Outcome::Ok;
                        for (i, p) in parts.iter().enumerate() {
                            match p {
                                Ok(v) => {
                                    assert_eq!(*v, expected_items[i], "round {round}, item {i}")
                                }
                                Err(msg) => {
                                    assert!(nested_death(msg), "round {round}: {msg}");
                                    outcome = Outcome::NestedError;
                                }
                            }
                        }
                        outcome
                    }
                    Err(Error::TaskPanicked { message, .. }) if nested_death(&message) => {
                        Outcome::NestedError
                    }
                    Err(e) => {
                        assert_killed(&e, &format!("round {round}"));
                        Outcome::WorkerDied
                    }
                }
            };
            tally.count(outcome);
            assert_full_strength(&pool, STRENGTH);
            let after = pool.mempool().usage().in_use;
            if outcome == Outcome::NestedError {
                orphan_leak += after.saturating_sub(before);
            } else {
                assert_eq!(
                    after, before,
                    "round {round} ({outcome:?}): memory of the job tree not freed"
                );
            }
        }
        assert_eq!(
            pool.spawn(nested_task).unwrap().wait().unwrap(),
            Ok(expected_task)
        );
        assert_eq!(pool.mempool().usage().in_use, base.in_use + orphan_leak);
        eprintln!("nested: 30 rounds survived (job {job:?}): {tally:?}, {orphan_leak} bytes left by orphaned nested jobs");
    });
}

/// The spawned task of `orphaned_nested_jobs_are_freed`: reports its worker's pid,
/// then runs 2 middle tasks that each start a job of 200 ms items, and handles their
/// failure itself (so its own job completes). Both levels are submitted as jobs (a
/// progress callback keeps a nested job from running inline in its task's worker,
/// `worker::inline`), so the other worker takes a middle task and owns its nested job.
fn handles_nested_failure(ctx: &Ctx) -> Result<u64, String> {
    ctx.report(&std::process::id()).unwrap();
    let r = ctx
        .par_range(0..2)
        .with_max_len(1)
        .on_progress(|_| {})
        .map_ctx(|ctx: &Ctx, _: usize| {
            ctx.par_range(0..4)
                .with_max_len(1)
                .on_progress(|_| {})
                .map(sleep_200ms)
                .sum::<u64>()
                // Display, not Debug: when the victim ran an item of the nested job of
                // the middle task in the *other* worker, that task's panic carries the
                // WorkerDied error to the root job, and the test reads "SIGKILL" in it.
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .sum::<u64>();
    r.map_err(|e| e.to_string())
}

fn sleep_200ms(i: usize) -> u64 {
    std::thread::sleep(Duration::from_millis(200));
    i as u64
}

/// A worker that submitted a nested job dies; the task above handles the failure and
/// its root job completes. What the dead worker's job had allocated (argument block,
/// partial results) must still be freed.
#[test]
fn orphaned_nested_jobs_are_freed() {
    common::no_leaks(|| {
        let pool = pool(2, 64 << 20);
        let base = pool.mempool().usage();
        let outer = Arc::new(Mutex::new(0u32));
        let o = Arc::clone(&outer);
        let handle = pool
            .spawn(handles_nested_failure)
            .unwrap()
            .on_report(move |pid: u32| *o.lock().unwrap() = pid);
        // Wait for the outer task's pid, then kill the *other* worker: it is inside a
        // middle task that owns a nested job.
        let mut handle = handle;
        let deadline = Instant::now() + Duration::from_secs(2);
        while *outer.lock().unwrap() == 0 {
            handle = match handle.wait_timeout(Duration::from_millis(20)) {
                Err(h) => h,
                Ok(r) => panic!("finished early: {r:?}"),
            };
            assert!(Instant::now() < deadline, "the outer task did not report");
        }
        std::thread::sleep(Duration::from_millis(100));
        let outer = *outer.lock().unwrap();
        let victim = pool
            .pids()
            .1
            .into_iter()
            .find(|&p| p > 0 && p != outer as i32)
            .unwrap();
        kill(victim, libc::SIGKILL);
        match answer(handle, ANSWER, "orphan") {
            Ok(Err(msg)) => assert!(msg.contains("SIGKILL"), "{msg}"),
            other => panic!("expected the task to see its nested job fail, got {other:?}"),
        }
        assert_full_strength(&pool, STRENGTH);
        let u = pool.mempool().usage();
        assert_eq!(
            (u.in_use, u.allocations),
            (base.in_use, base.allocations),
            "orphaned job's blocks leaked"
        );
    });
}

fn cooperative(ctx: &Ctx) -> u64 {
    let mut n = 0u64;
    while !ctx.is_cancelled() {
        n = black_box(n + 1);
    }
    n
}

/// Fails (panics) when its nested job fails: swallowing the error would let it complete
/// normally once a SIGKILL hit its child, before the test's cancel arrives.
fn parent_of_slow_spinners(ctx: &Ctx) -> u64 {
    match ctx.par_range(0..4).with_max_len(1).for_each(spin_300ms) {
        Ok(()) => 1,
        Err(e) => panic!("nested job failed: {e}"),
    }
}

#[test]
fn sigkill_workers_during_cancellation() {
    common::no_leaks(|| {
        let pool = pool(2, 128 << 20);
        let mut rng = Rng::new("sigkill_workers_during_cancellation");
        let base = pool.mempool().usage();
        let mut tally = Tally::default();
        // Tasks that ignore the cancel flag (stopped by the scheduler's kill after the
        // grace period), and one that checks it. They run 300 ms, far longer than a
        // round, so the job is always cut short. (With tasks that never end and the
        // kill *before* the cancel, see `cancel_after_a_worker_death_stops_the_job`.)
        for round in 0..30 {
            let handle: Box<dyn Job> = match round % 3 {
                0 => Box::new(pool.spawn(parent_of_slow_spinners).unwrap()),
                1 => Box::new(pool.spawn(cooperative).unwrap()),
                _ => Box::new(
                    pool.par_range(0..8)
                        .with_max_len(1)
                        .spawn_for_each(spin_300ms)
                        .unwrap(),
                ),
            };
            std::thread::sleep(rng.delay(Duration::from_millis(20)));
            if rng.below(2) == 0 {
                handle.cancel();
                kill_random_worker(&pool, &mut rng);
            } else {
                kill_random_worker(&pool, &mut rng);
                std::thread::sleep(rng.delay(Duration::from_millis(2)));
                handle.cancel();
            }
            let start = Instant::now();
            match handle.answer("cancel under SIGKILL") {
                Err(Error::Cancelled) => tally.cancelled += 1,
                // The SIGKILL hit the child of `parent_of_slow_spinners` before the cancel
                // came: the parent task saw its nested job fail and failed with it.
                Err(Error::TaskPanicked { message, .. }) => {
                    assert!(
                        round % 3 == 0 && message.contains("nested job failed"),
                        "round {round}: unexpected panic {message}"
                    );
                    assert!(message.contains("SIGKILL"), "round {round}: {message}");
                    tally.nested_error += 1;
                }
                Err(e) => {
                    assert_killed(&e, &format!("round {round}"));
                    tally.worker_died += 1;
                }
                Ok(()) => panic!("round {round}: a cancelled job completed"),
            }
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "round {round}: cancel took {:?}",
                start.elapsed()
            );
            assert_full_strength(&pool, STRENGTH);
        }
        let s: u64 = pool
            .par_range(0..10_000)
            .map(|i: usize| i as u64)
            .sum()
            .unwrap();
        assert_eq!(s, (0..10_000u64).sum::<u64>());
        assert_eq!(
            pool.mempool().usage().in_use,
            base.in_use,
            "memory of cancelled trees not freed"
        );
        assert_eq!(pool.mempool().usage().allocations, base.allocations);
        eprintln!("cancellation: 30 rounds survived: {tally:?}");
    });
}

fn pid_after_5ms(_: usize) -> u32 {
    std::thread::sleep(Duration::from_millis(5));
    std::process::id()
}

/// A job fails because one of its workers died; its other worker is inside a task that
/// never ends. Cancelling the failed job must stop that worker (as a cancel of a running
/// job does) so that the wait returns.
#[test]
fn cancel_after_a_worker_death_stops_the_job() {
    common::no_leaks(|| {
        let pool = pool(2, 64 << 20);
        for nested in [false, true] {
            let handle: Box<dyn Job> = if nested {
                Box::new(pool.spawn(parent_of_spinners).unwrap())
            } else {
                Box::new(
                    pool.par_range(0..2)
                        .with_max_len(1)
                        .spawn_for_each(spin_forever)
                        .unwrap(),
                )
            };
            std::thread::sleep(Duration::from_millis(100));
            kill(pool.pids().1[0], libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(50));
            handle.cancel();
            let start = Instant::now();
            match handle.answer("cancel after a worker death") {
                Err(Error::Cancelled | Error::WorkerDied { .. }) => {}
                other => panic!("nested = {nested}: {other:?}"),
            }
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "nested = {nested}: took {:?}",
                start.elapsed()
            );
            assert_full_strength(&pool, STRENGTH);
            // The surviving worker is free again: a job runs on both.
            let pids = pool
                .par_range(0..64)
                .with_max_len(1)
                .map(pid_after_5ms)
                .collect_vec()
                .unwrap();
            assert_eq!(
                pids.iter().collect::<std::collections::BTreeSet<_>>().len(),
                2,
                "a worker is still stuck"
            );
        }
    });
}

#[test]
fn sigkill_scheduler_answers_every_handle() {
    common::no_leaks(|| {
        for round in 0..3 {
            let pool = pool(2, 64 << 20);
            let x = pool.array_from_fn(20_000, |i| i as u64).unwrap();
            let mut y = pool.array_zeroed::<u64>(20_000).unwrap();
            assert_eq!(
                pool.par_iter(&x).sum::<u64>().unwrap(),
                (0..20_000u64).sum::<u64>()
            );
            // Outstanding: running flat and nested jobs, and queued ones of every shape.
            let jobs: Vec<(&str, Box<dyn Job>)> = vec![
                (
                    "flat spinners",
                    Box::new(
                        pool.par_range(0..2)
                            .with_max_len(1)
                            .spawn_for_each(spin_forever)
                            .unwrap(),
                    ),
                ),
                (
                    "nested spinners",
                    Box::new(pool.spawn(parent_of_spinners).unwrap()),
                ),
                (
                    "queued par_map",
                    // SAFETY: every handle is answered below, while `x` and `y` live.
                    Box::new(unsafe { pool.spawn_map_into(&x, &mut y, slow) }.unwrap()),
                ),
                (
                    "queued collect with progress",
                    Box::new(
                        pool.par_range(0..1000)
                            .on_progress(|_| {})
                            .map(|i: usize| i as u64)
                            .spawn_collect_vec()
                            .unwrap(),
                    ),
                ),
                (
                    "queued cooperative",
                    Box::new(pool.spawn(cooperative).unwrap()),
                ),
            ];
            std::thread::sleep(Duration::from_millis(30));
            let (scheduler, workers) = pool.pids();
            kill(scheduler, libc::SIGKILL);
            let killed = Instant::now();
            for (what, job) in jobs {
                match job.answer(what) {
                    Err(e @ Error::PoolShutDown { .. }) => {
                        assert!(e.to_string().contains("build a new pool"))
                    }
                    other => panic!("round {round}, {what}: expected PoolShutDown, got {other:?}"),
                }
                assert!(
                    killed.elapsed() < Duration::from_secs(1),
                    "round {round}, {what}: answered after {:?}",
                    killed.elapsed()
                );
            }
            for w in workers {
                assert!(
                    common::gone_within(w, Duration::from_secs(1)),
                    "worker {w} outlived its scheduler"
                );
            }
            assert!(matches!(
                pool.par_range(0..10).count(),
                Err(Error::PoolShutDown { .. })
            ));
            drop((x, y));
            let start = Instant::now();
            drop(pool);
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "drop took {:?}",
                start.elapsed()
            );
        }
        // A new pool in the same program works.
        let pool = pool(2, 64 << 20);
        let x = pool.array_from_fn(20_000, |i| i as u64).unwrap();
        let y = pool.par_map(&x, slow).unwrap();
        assert!(y.iter().enumerate().all(|(i, &v)| v == slow(i as u64)));
        assert_full_strength(&pool, STRENGTH);
    });
}

fn panic_on(x: u64) -> u64 {
    if x == 500 {
        panic!("boom at {x}");
    }
    x
}

/// Recursion without end (the depth test is opaque to the optimizer).
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth) == u64::MAX {
        return frame[0];
    }
    recurse(depth + 1).wrapping_add(frame[depth as usize % 32])
}

fn overflow_on(x: u64) -> u64 {
    if x == 500 {
        return recurse(0);
    }
    x
}

/// Caps this worker's address space a little above what it maps now, then asks for a
/// 1 GiB vector: the allocation fails, and Rust's allocation-error handler aborts.
fn oom_on(x: u64) -> u64 {
    if x == 500 {
        let vm_kb = common::status_kb(std::process::id() as i32, "VmSize").expect("VmSize");
        let cap = (vm_kb + (64 << 10)) << 10;
        let limit = libc::rlimit {
            rlim_cur: cap,
            rlim_max: cap,
        };
        // SAFETY: setrlimit(2) reads a valid rlimit; it only lowers this worker's limit.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
        assert_eq!(rc, 0, "setrlimit failed");
        let v: Vec<u8> = Vec::with_capacity(black_box(1 << 30));
        black_box(&v);
    }
    x
}

/// Runs crash kind `K` inside a nested job.
fn nested_crash<const K: u8>(ctx: &Ctx) -> Result<u64, String> {
    let x = ctx
        .array_from_fn(1000, |i| i as u64)
        .map_err(|e| e.to_string())?;
    let y = match K {
        0 => ctx.par_map(&x, panic_on),
        1 => ctx.par_map(&x, abort_on),
        2 => ctx.par_map(&x, segv_on),
        3 => ctx.par_map(&x, overflow_on),
        _ => ctx.par_map(&x, oom_on),
    };
    y.map(|y| y.iter().sum()).map_err(|e| e.to_string())
}

fn signame(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        _ => "?",
    }
}

#[test]
fn crashing_tasks_are_typed_errors_and_the_pool_serves_on() {
    common::no_leaks(|| {
        let pool = pool(2, 64 << 20);
        let x = pool.array_from_fn(1000, |i| i as u64).unwrap();
        let base = pool.mempool().usage();
        let serves = |what: &str| {
            assert_full_strength(&pool, STRENGTH);
            let y = pool
                .par_map(&x, |v: u64| v * 3)
                .unwrap_or_else(|e| panic!("after {what}: {e}"));
            assert!(
                y.iter().enumerate().all(|(i, &v)| v == 3 * i as u64),
                "after {what}"
            );
        };
        // Rust's stack-overflow handler reports the overflow and aborts, so a stack
        // overflow ends in SIGABRT (SIGSEGV where that handler is not installed).
        let mut observed = BTreeMap::new();
        let mut died =
            |what: &'static str, r: procyon::Result<procyon::SharedArray<u64>>, signals: &[i32]| {
                match r {
                    Err(
                        ref e @ Error::WorkerDied {
                            signal: Some(sig), ..
                        },
                    ) if signals.contains(&sig) => {
                        assert!(e.to_string().contains(signame(sig)), "{what}: message {e}");
                        observed.insert(what, signame(sig));
                    }
                    other => panic!(
                        "{what}: expected WorkerDied by {signals:?}, got {:?}",
                        other.map(|_| ())
                    ),
                }
                serves(what);
            };
        died("abort", pool.par_map(&x, abort_on), &[libc::SIGABRT]);
        died("SIGSEGV", pool.par_map(&x, segv_on), &[libc::SIGSEGV]);
        died(
            "stack overflow",
            pool.par_map(&x, overflow_on),
            &[libc::SIGSEGV, libc::SIGABRT],
        );
        died(
            "allocation failure under RLIMIT_AS",
            pool.par_map(&x, oom_on),
            &[libc::SIGABRT],
        );
        match pool.par_map(&x, panic_on) {
            Err(Error::TaskPanicked { message, .. }) => {
                assert!(message.contains("boom at 500"), "{message}")
            }
            other => panic!("panic: expected TaskPanicked, got {:?}", other.map(|_| ())),
        }
        serves("panic");
        // The same crashes one level down: the spawned task sees its nested job fail
        // (or, when the crash hit its own worker, the caller sees the death).
        let nested =
            |what: &str, h: procyon::Result<JobHandle<Result<u64, String>>>, needle: &str| {
                match answer(h.unwrap(), ANSWER, what) {
                    Ok(Err(msg)) => assert!(msg.contains(needle), "{what}: {msg}"),
                    Err(e @ (Error::WorkerDied { .. } | Error::TaskPanicked { .. })) => {
                        assert!(e.to_string().contains(needle), "{what}: {e}")
                    }
                    other => panic!("{what}: expected a failure, got {other:?}"),
                }
                serves(what);
            };
        nested("nested panic", pool.spawn(nested_crash::<0>), "boom at 500");
        nested("nested abort", pool.spawn(nested_crash::<1>), "SIGABRT");
        nested("nested SIGSEGV", pool.spawn(nested_crash::<2>), "SIGSEGV");
        nested(
            "nested stack overflow",
            pool.spawn(nested_crash::<3>),
            "SIG",
        );
        nested(
            "nested allocation failure",
            pool.spawn(nested_crash::<4>),
            "SIGABRT",
        );
        assert_eq!(pool.mempool().usage().in_use, base.in_use);
        eprintln!("crashes: signals observed {observed:?}");
    });
}

const MIB: usize = 1 << 20;

/// Takes 4 MiB arrays until the mempool says no; returns how many, and the error.
fn hoard(ctx: &Ctx) -> (Vec<procyon::SharedArray<u8>>, Error) {
    let mut held = Vec::new();
    loop {
        match ctx.array_zeroed::<u8>(4 * MIB) {
            Ok(a) => held.push(a),
            Err(e) => return (held, e),
        }
    }
}

fn hoard_and_return(ctx: &Ctx) -> (usize, String) {
    let (held, e) = hoard(ctx);
    (held.len(), e.to_string())
}

fn hoard_and_panic(ctx: &Ctx) -> usize {
    let (held, e) = hoard(ctx);
    panic!("holding {} arrays: {e}", held.len());
}

fn hoard_forget_and_panic(ctx: &Ctx) -> usize {
    let (held, e) = hoard(ctx);
    let n = held.len();
    std::mem::forget(held);
    panic!("leaked {n} arrays: {e}");
}

fn hoard_and_sleep(ctx: &Ctx) -> usize {
    let held: Vec<_> = (0..10)
        .map(|_| ctx.array_zeroed::<u8>(4 * MIB).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(30));
    held.len()
}

/// Many tasks hoarding at once: some get memory, some get OutOfMemory.
fn hoard_some(ctx: &Ctx, _: usize) -> Result<usize, String> {
    let mut held = Vec::new();
    for _ in 0..40 {
        match ctx.array_zeroed::<u8>(MIB) {
            Ok(a) => held.push(a),
            Err(e) => return Err(e.to_string()),
        }
    }
    // Hold it while the other worker's task asks for its share.
    std::thread::sleep(Duration::from_millis(200));
    Ok(held.len())
}

fn big_output(i: u32) -> Vec<u8> {
    vec![i as u8; 2 * MIB]
}

#[test]
fn mempool_running_out_mid_job() {
    common::no_leaks(|| {
        let pool = pool(2, 64 << 20);
        let base = pool.mempool().usage();
        let back_to_base = |what: &str| {
            let u = pool.mempool().usage();
            assert_eq!(
                (u.in_use, u.allocations),
                (base.in_use, base.allocations),
                "{what}: mempool not back to its baseline"
            );
        };
        let no_sigbus = |e: &Error, what: &str| {
            assert!(
                !matches!(
                    e,
                    Error::WorkerDied {
                        signal: Some(libc::SIGBUS),
                        ..
                    }
                ),
                "{what}: SIGBUS: {e}"
            );
        };

        let (n, msg) = answer(pool.spawn(hoard_and_return).unwrap(), ANSWER, "hoard").unwrap();
        assert!(
            n >= 10 && msg.contains("out of memory"),
            "{n} arrays, then {msg}"
        );
        back_to_base("task returned");

        let panicked = |what: &str, h: procyon::Result<JobHandle<usize>>| match answer(
            h.unwrap(),
            ANSWER,
            what,
        ) {
            Err(Error::TaskPanicked { message, .. }) => {
                assert!(message.contains("out of memory"), "{what}: {message}")
            }
            Err(e) => {
                no_sigbus(&e, what);
                panic!("{what}: expected TaskPanicked, got {e:?}")
            }
            Ok(v) => panic!("{what}: returned {v}"),
        };
        panicked("hoard and panic", pool.spawn(hoard_and_panic));
        back_to_base("hoard and panic");
        // Arrays the task forgot are reclaimed with its failed job tree.
        panicked("hoard, leak and panic", pool.spawn(hoard_forget_and_panic));
        back_to_base("hoard, leak and panic");

        // Killed while holding 40 MiB: the dead task's memory comes back; meanwhile a
        // client allocation that does not fit is an error, not a SIGBUS.
        let h = pool.spawn(hoard_and_sleep).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.mempool().usage().in_use < base.in_use + 40 * MIB {
            assert!(Instant::now() < deadline, "the hoarding task did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(matches!(
            pool.array_zeroed::<u8>(30 * MIB),
            Err(Error::OutOfMemory { .. })
        ));
        for pid in pool.pids().1.into_iter().filter(|&p| p > 0) {
            kill(pid, libc::SIGKILL);
        }
        match answer(h, ANSWER, "hoard and sleep") {
            Err(e) => assert_killed(&e, "hoard and sleep"),
            Ok(v) => panic!("returned {v}"),
        }
        back_to_base("killed hoarder");
        assert_full_strength(&pool, STRENGTH);

        // Four tasks, two at a time, want 40 MiB each of a 64 MiB pool.
        let parts = pool
            .par_range(0..4)
            .with_max_len(1)
            .map_ctx(hoard_some)
            .collect_vec()
            .unwrap();
        assert!(
            parts.iter().any(|p| p.is_err()),
            "two tasks held 40 MiB each of a 64 MiB pool? {parts:?}"
        );
        for p in &parts {
            if let Err(msg) = p {
                assert!(msg.contains("out of memory"), "{msg}");
            }
        }
        back_to_base("parallel hoarders");

        back_to_base("after");
        drop(pool);

        // Results that do not fit: 10 outputs of 2 MiB from a 16 MiB pool (small, so the
        // encoding work stays cheap).
        let pool = self::pool(2, 16 << 20);
        let base = pool.mempool().usage();
        match pool.par_map_vec((0..10u32).collect(), big_output) {
            Err(e) => {
                no_sigbus(&e, "big outputs");
                // The variant is checked by `results_that_do_not_fit_are_out_of_memory`.
                assert!(
                    e.to_string().contains("out of memory"),
                    "big outputs: {e:?}"
                );
            }
            Ok(v) => panic!("20 MiB of results from a 16 MiB pool: {} items", v.len()),
        }
        let u = pool.mempool().usage();
        assert_eq!(
            (u.in_use, u.allocations),
            (base.in_use, base.allocations),
            "big outputs: memory not back"
        );
        let y = pool.par_map_vec((0..4u32).collect(), big_output).unwrap();
        assert_eq!(y[3], vec![3u8; 2 * MIB]);
        drop(y);
        let u = pool.mempool().usage();
        assert_eq!((u.in_use, u.allocations), (base.in_use, base.allocations));
    });
}

/// Results that do not fit in the mempool fail the job with `OutOfMemory` (what the
/// caller can act on: a larger mempool, smaller results), like inputs that do not fit.
#[test]
fn results_that_do_not_fit_are_out_of_memory() {
    common::no_leaks(|| {
        let pool = pool(2, 16 << 20);
        match pool.par_map_vec((0..10u32).collect(), big_output) {
            Err(Error::OutOfMemory { .. }) => {}
            Err(e @ Error::TaskPanicked { .. }) if e.to_string().contains("out of memory") => {}
            other => panic!("expected OutOfMemory, got {:?}", other.map(|v| v.len())),
        }
        let total: u64 = pool
            .par_range(0..10)
            .map(|i: usize| big_output(i as u32).len() as u64)
            .sum()
            .unwrap();
        assert_eq!(total, 20 * MIB as u64);
    });
}

/// Reports and progress as fast as possible for 40 ms; returns the reports accepted.
fn flood(ctx: &Ctx, i: usize) -> Vec<u32> {
    let start = Instant::now();
    let mut accepted = Vec::new();
    let mut k = 0u32;
    while start.elapsed() < Duration::from_millis(40) {
        ctx.progress(u64::from(k) + (i as u64) * 1_000_000, 1 << 40);
        match ctx.report(&(i as u32, k)) {
            Ok(()) => accepted.push(k),
            Err(Error::Full) => {}
            Err(e) => panic!("report failed: {e}"),
        }
        k += 1;
    }
    accepted
}

#[test]
fn report_and_progress_floods() {
    common::no_leaks(|| {
        let pool = pool(2, 64 << 20);
        let base = pool.mempool().usage();
        for round in 0..3 {
            let delivered = Arc::new(Mutex::new(Vec::<(u32, u32)>::new()));
            let progress = Arc::new(Mutex::new(Vec::<Progress>::new()));
            let (d, p) = (Arc::clone(&delivered), Arc::clone(&progress));
            let start = Instant::now();
            let handle = pool
                .par_range(0..32)
                .with_max_len(1)
                .on_report(move |r: (u32, u32)| d.lock().unwrap().push(r))
                .on_progress(move |x| p.lock().unwrap().push(x))
                .map_ctx(flood)
                .spawn_collect_vec()
                .unwrap();
            let accepted = answer(handle, ANSWER, "flood").unwrap();
            let elapsed = start.elapsed();
            let delivered = delivered.lock().unwrap().clone();
            let sent: usize = accepted.iter().map(Vec::len).sum();
            // Exactly once: the delivered set is the accepted set, with no duplicate.
            let mut want: Vec<(u32, u32)> = accepted
                .iter()
                .enumerate()
                .flat_map(|(i, ks)| ks.iter().map(move |&k| (i as u32, k)))
                .collect();
            want.sort_unstable();
            let mut got = delivered.clone();
            got.sort_unstable();
            assert_eq!(
                got.len(),
                want.len(),
                "round {round}: {} delivered, {} accepted",
                got.len(),
                want.len()
            );
            assert!(
                got == want,
                "round {round}: delivered reports differ from the accepted ones"
            );
            // In order: each task's reports arrive in the order it made them.
            let mut last = BTreeMap::new();
            for &(i, k) in &delivered {
                if let Some(prev) = last.insert(i, k) {
                    assert!(
                        prev < k,
                        "round {round}: task {i}'s report {k} delivered after {prev}"
                    );
                }
            }
            let progress = progress.lock().unwrap();
            assert!(
                progress.len() >= 2,
                "round {round}: {} progress callbacks",
                progress.len()
            );
            for w in progress.windows(2) {
                assert!(
                    w[0].items_done <= w[1].items_done,
                    "items_done went back: {w:?}"
                );
                let (a, b) = (
                    w[0].reported.unwrap_or((0, 0)),
                    w[1].reported.unwrap_or((0, 0)),
                );
                assert!(
                    a.0 <= b.0 && a.1 <= b.1,
                    "reported progress went back: {w:?}"
                );
            }
            let fin = progress.last().unwrap();
            assert_eq!((fin.items_done, fin.items_total), (32, 32));
            eprintln!(
                "flood round {round}: {sent} reports accepted and delivered exactly once in {elapsed:?} \
                 ({:.0}/s), {} progress callbacks",
                sent as f64 / elapsed.as_secs_f64(),
                progress.len()
            );
            assert!(sent > 1000, "flood too weak to test anything: {sent}");
        }
        assert_eq!(pool.mempool().usage().in_use, base.in_use);
    });
}

fn sleep_item(_: usize) {
    std::thread::sleep(Duration::from_millis(150));
}

/// Clears a flag when dropped, even by a panic, so helper threads polling it stop.
struct ClearOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

fn tiny_task(ctx: &Ctx) -> u64 {
    ctx.job_number() % 7
}

#[test]
fn concurrent_small_jobs_through_tiny_inboxes() {
    common::no_leaks(|| {
        // Two slots per inbox: job notices meet back-pressure all the time.
        let pool = Pool::builder()
            .workers(2)
            .mempool_size(128 << 20)
            .inbox_slots(2)
            .build()
            .unwrap();
        let base = pool.mempool().usage();
        let busy = std::sync::atomic::AtomicBool::new(true);
        let start = Instant::now();
        let jobs = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            // One thread keeps both workers busy with slow items now and then, so the
            // inboxes fill up while the others submit.
            s.spawn(|| {
                while busy.load(std::sync::atomic::Ordering::Relaxed) {
                    let h = pool
                        .par_range(0..2)
                        .with_max_len(1)
                        .spawn_for_each(sleep_item)
                        .unwrap();
                    answer(h, ANSWER, "slow job").unwrap();
                    std::thread::sleep(Duration::from_millis(150));
                }
            });
            let _stop = ClearOnDrop(&busy);
            let submitters: Vec<_> = (0..4u64)
                .map(|t| {
                    let (pool, jobs) = (&pool, &jobs);
                    s.spawn(move || {
                        for round in 0..40u64 {
                            let n = 10 + ((t * 40 + round) % 50) as usize;
                            let x = pool.array_from_fn(n, |i| i as u64 + t).unwrap();
                            let mut y = pool.array_zeroed::<u64>(n).unwrap();
                            let a = pool
                                .par_range(0..n)
                                .map(|i: usize| i as u64 * 2)
                                .spawn_collect_vec()
                                .unwrap();
                            let b = pool.spawn(tiny_task).unwrap();
                            // SAFETY: `c` is answered before `y` is read and before
                            // `x` and `y` go, at the end of the round.
                            let c =
                                unsafe { pool.spawn_map_into(&x, &mut y, |v: u64| v + 1) }.unwrap();
                            let d = pool
                                .par_range(0..n)
                                .map_with(t, |t: &u64, i: usize| (i as u64 + t) % 5)
                                .spawn_collect_vec()
                                .unwrap();
                            assert_eq!(
                                answer(a, ANSWER, "collect").unwrap(),
                                (0..n as u64).map(|i| i * 2).collect::<Vec<_>>()
                            );
                            assert!(answer(b, ANSWER, "spawn").unwrap() < 7);
                            answer(c, ANSWER, "map_into").unwrap();
                            assert!(y.iter().enumerate().all(|(i, &v)| v == i as u64 + t + 1));
                            assert_eq!(
                                answer(d, ANSWER, "iter").unwrap(),
                                (0..n as u64).map(|i| (i + t) % 5).collect::<Vec<_>>()
                            );
                            jobs.fetch_add(4, std::sync::atomic::Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for h in submitters {
                h.join().unwrap();
            }
        });
        eprintln!(
            "{} small jobs from 4 threads through 2-slot inboxes in {:?}",
            jobs.into_inner(),
            start.elapsed()
        );
        assert_full_strength(&pool, STRENGTH);
        assert_eq!(pool.mempool().usage().in_use, base.in_use);
    });
}

fn sleep_1500ms(_: usize) {
    std::thread::sleep(Duration::from_millis(1500));
}

/// Both workers are busy for 1.5 s while 4 client threads submit 24 small jobs through
/// 2-slot inboxes: most job notices meet a full inbox. Every job must still run once the
/// workers are free.
#[test]
fn job_notices_survive_full_inboxes() {
    common::no_leaks(|| {
        let pool = Pool::builder()
            .workers(2)
            .mempool_size(64 << 20)
            .inbox_slots(2)
            .build()
            .unwrap();
        let long = pool
            .par_range(0..2)
            .with_max_len(1)
            .spawn_for_each(sleep_1500ms)
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let pool = &pool;
                s.spawn(move || {
                    let handles: Vec<_> = (0..6).map(|_| pool.spawn(tiny_task).unwrap()).collect();
                    for h in handles {
                        assert!(
                            answer(h, Duration::from_secs(10), "queued behind full inboxes")
                                .unwrap()
                                < 7
                        );
                    }
                });
            }
        });
        answer(long, ANSWER, "long job").unwrap();
    });
}

/// `wait_timeout` gives the handle back only once its timeout has passed, with or
/// without progress callbacks.
#[test]
fn wait_timeout_with_callbacks_waits_its_timeout() {
    common::no_leaks(|| {
        let pool = pool(1, 64 << 20);
        for callbacks in [false, true] {
            let h = pool.par_range(0..1).spawn_for_each(sleep_item).unwrap();
            let h = if callbacks { h.on_progress(|_| {}) } else { h };
            let start = Instant::now();
            let h = match h.wait_timeout(Duration::from_millis(100)) {
                Err(h) => h,
                Ok(r) => panic!("a 150 ms job answered within 100 ms: {r:?}"),
            };
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_millis(100),
                "callbacks = {callbacks}: wait_timeout(100 ms) gave the handle back after {waited:?}"
            );
            h.wait().unwrap();
        }
    });
}

/// What the forked client does before it reports its pool's pids and waits to be killed.
#[derive(Clone, Copy, Debug)]
enum ClientState {
    Idle,
    RunningJob,
    RunningNestedJobs,
}

/// Forks a client that builds a pool, puts it in `state`, reports every pid of its tree
/// over a pipe; SIGKILLs it; checks every one of those processes is gone within 1 s.
fn client_sigkill(state: ClientState) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) into a local array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child builds a pool, writes to the pipe and sleeps until killed; it
    // never returns into the test harness (a panic ends it with `_exit`).
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        let r = std::panic::catch_unwind(|| {
            let pool = pool(2, 64 << 20);
            // Held (not dropped: that would cancel) until the child is killed.
            let _jobs: Vec<Box<dyn Job>> = match state {
                ClientState::Idle => vec![],
                ClientState::RunningJob => {
                    vec![Box::new(
                        pool.par_range(0..2)
                            .with_max_len(1)
                            .spawn_for_each(spin_forever)
                            .unwrap(),
                    )]
                }
                ClientState::RunningNestedJobs => {
                    // Two items of the client's job, one per worker, each running a
                    // nested job of spinning tasks. (A single task that starts the
                    // nested jobs itself may run them inline, and an item that never
                    // returns keeps a worker that was not hungry yet idle: see
                    // `worker::inline`.)
                    vec![Box::new(
                        pool.par_range(0..2)
                            .with_max_len(1)
                            .map_ctx(|ctx: &Ctx, _| parent_of_spinners(ctx))
                            .spawn_collect_vec()
                            .unwrap(),
                    )]
                }
            };
            // Let the jobs get going, so that the kill lands in the middle of them: both
            // workers running a task (at most 2 s).
            let deadline = Instant::now() + Duration::from_secs(2);
            while !matches!(state, ClientState::Idle)
                && !pool.pids().1.iter().all(|&w| running(w))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let (s, w) = pool.pids();
            let mut msg = format!("{s}");
            for p in &w {
                msg.push_str(&format!(" {p}"));
            }
            msg.push('\n');
            // SAFETY: writing a local buffer to our pipe.
            unsafe { libc::write(fds[1], msg.as_ptr().cast(), msg.len()) };
            std::thread::sleep(Duration::from_secs(60));
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
    assert!(n > 0, "{state:?}: the child did not report its pool");
    let pids: Vec<i32> = String::from_utf8_lossy(&buf[..n as usize])
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        pids.len(),
        3,
        "{state:?}: scheduler and 2 workers expected: {pids:?}"
    );
    if !matches!(state, ClientState::Idle) {
        // The workers are really busy (running, not asleep) when the client dies.
        for &w in &pids[1..] {
            assert!(running(w), "{state:?}: worker {w} not running a task");
        }
    }
    let mut status = 0;
    // SAFETY: kill(2) and waitpid(2) on our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, &mut status, 0);
    }
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "{state:?}: child status {status}"
    );
    let start = Instant::now();
    for pid in pids {
        assert!(
            common::gone_within(pid, Duration::from_secs(1)),
            "{state:?}: process {pid} outlived its client"
        );
    }
    eprintln!(
        "{state:?}: the whole tree was gone {:?} after the client's SIGKILL",
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn client_sigkill_while_idle() {
    let _turn = common::one_at_a_time();
    client_sigkill(ClientState::Idle);
}

#[test]
fn client_sigkill_while_a_job_runs() {
    let _turn = common::one_at_a_time();
    client_sigkill(ClientState::RunningJob);
}

#[test]
fn client_sigkill_while_nested_jobs_run() {
    let _turn = common::one_at_a_time();
    client_sigkill(ClientState::RunningNestedJobs);
}

/// With `StartMode::Fork`, the mempool and the camlboxes are anonymous shared mappings:
/// nothing in /dev/shm, no memfd, no named file, in the client, the scheduler or any
/// worker. (The fork server's memfds: `fork_server_memory_has_no_name`.)
#[test]
fn shared_memory_is_anonymous() {
    common::no_leaks(|| {
        let pool = Pool::builder()
            .workers(2)
            .mempool_size(64 << 20)
            .cancel_grace(Duration::from_millis(20))
            .start_mode(procyon::StartMode::Fork)
            .build()
            .expect("pool builds");
        // Touch everything: arrays, a nested job, reports.
        let r = pool.spawn(nested_task).unwrap().wait().unwrap();
        assert!(r.is_ok());
        let x = pool.array_from_fn(1 << 16, |i| i as u32).unwrap();
        assert_eq!(
            pool.par_iter(&x)
                .map(|v: u32| v as u64)
                .sum::<u64>()
                .unwrap(),
            (0..1u64 << 16).sum::<u64>()
        );
        let (scheduler, workers) = pool.pids();
        let me = std::process::id() as i32;
        let capacity = pool.mempool().capacity();
        // Under plain `cargo test`, other tests of this process run fork-server pools
        // meanwhile: their memfds are mapped in this process (and inherited by this pool's
        // forks). They are not this pool's: this pool's mappings are checked below.
        let others = procyon::__fork_server_pid().is_some();
        for pid in [me, scheduler].into_iter().chain(workers) {
            let found: Vec<String> = common::named_shared_memory(pid)
                .into_iter()
                .filter(|f| !(others && f.contains("/memfd:procyon-")))
                .collect();
            assert!(
                found.is_empty(),
                "named shared memory in process {pid}: {found:#?}"
            );
            // And the scan does see the pool: an anonymous shared mapping of the mempool's
            // size, plus the camlboxes.
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
            let shared_anon: Vec<usize> = maps
                .lines()
                .filter(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|p| p.ends_with('s'))
                        && l.ends_with("/dev/zero (deleted)")
                })
                .map(|l| {
                    let range = l.split_whitespace().next().unwrap();
                    let (a, b) = range.split_once('-').unwrap();
                    usize::from_str_radix(b, 16).unwrap() - usize::from_str_radix(a, 16).unwrap()
                })
                .collect();
            assert!(
                shared_anon.contains(&capacity),
                "process {pid}: no anonymous mapping of the mempool: {shared_anon:?}"
            );
            // The mempool and the scheduler's inbox (workers find jobs in the mempool's
            // run set and have no inbox).
            assert!(
                shared_anon.len() >= 2,
                "process {pid}: the camlboxes are not anonymous shared mappings: {shared_anon:?}"
            );
        }
    });
}

fn panics_at_seven(x: u64) -> u64 {
    if x == 7 {
        panic!("seven is not allowed");
    }
    x
}

/// A task's panic reaches the caller with its text and the place it was raised, as a
/// rayon user sees it on stderr; nothing is printed by the worker.
#[test]
fn a_task_panic_names_its_file_and_line() {
    common::no_leaks(|| {
        let pool = pool(2, 64 << 20);
        let x = pool.array_from_fn(16, |i| i as u64).unwrap();
        match pool.par_map(&x, panics_at_seven) {
            Err(Error::TaskPanicked { message, .. }) => {
                assert!(
                    message.starts_with("seven is not allowed (at "),
                    "{message}"
                );
                assert!(message.contains("tests/faults.rs:"), "{message}");
            }
            other => panic!("expected TaskPanicked, got {other:?}"),
        }
    });
}

/// With the fork server (the default), the pool's memory is in memfds: files with no name
/// in any file system, reachable only through the descriptors and mappings of the
/// client, the server and the pool's processes. Nothing in /dev/shm, /tmp or SysV.
#[test]
fn fork_server_memory_has_no_name() {
    common::no_leaks(|| {
        let pool = pool(2, 64 << 20);
        let r = pool.spawn(nested_task).unwrap().wait().unwrap();
        assert!(r.is_ok());
        let (scheduler, workers) = pool.pids();
        let me = std::process::id() as i32;
        let server = procyon::__fork_server_pid().expect("a fork server");
        let capacity = pool.mempool().capacity();
        for pid in [me, server, scheduler].into_iter().chain(workers) {
            let found: Vec<String> = common::named_shared_memory(pid)
                .into_iter()
                .filter(|f| !(f.contains("/memfd:procyon-") && f.ends_with("(deleted)")))
                .collect();
            assert!(
                found.is_empty(),
                "named shared memory in process {pid}: {found:#?}"
            );
        }
        for pid in [me, scheduler].into_iter().chain(pool.pids().1) {
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
            let mempool = maps.lines().any(|l| {
                let range = l.split_whitespace().next().unwrap();
                let (a, b) = range.split_once('-').unwrap();
                l.contains("/memfd:procyon-mempool (deleted)")
                    && usize::from_str_radix(b, 16).unwrap() - usize::from_str_radix(a, 16).unwrap()
                        == capacity
            });
            assert!(mempool, "process {pid}: no memfd mapping of the mempool");
        }
    });
}
