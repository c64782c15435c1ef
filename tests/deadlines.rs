//! Every wait can be bounded, and keeps its bound: nested waits inside a task (even on a
//! child whose item never returns, with one worker), pool-wide and per-call timeouts of
//! the blocking operations, and clean-up after forked client processes that die.

mod common;

use std::time::{Duration, Instant};

use procyon::{Ctx, Error, Pool};

fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .mempool_size(64 << 20)
        .build()
        .unwrap()
}

/// A task that never returns and never looks at cancellation: only a kill stops it.
fn never_returns(_: &Ctx) -> u64 {
    loop {
        std::thread::sleep(Duration::from_millis(1));
    }
}

const LIMIT: Duration = Duration::from_millis(200);

/// How the parent task waits for its never-returning child; the task answers the
/// microseconds from the start of the wait until it got its answer.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum Form {
    JobTimeout,
    HandleTimeout,
    WaitTimeout,
    TryWait,
    Drop,
}

fn parent(form: &Form, ctx: &Ctx) -> (u64, String) {
    let start = Instant::now();
    let outcome = match form {
        Form::JobTimeout => {
            let r = ctx.with_timeout(LIMIT).spawn(never_returns).unwrap().wait();
            format!("{r:?}")
        }
        Form::HandleTimeout => {
            let r = ctx.spawn(never_returns).unwrap().timeout(LIMIT).wait();
            format!("{r:?}")
        }
        Form::WaitTimeout => {
            let h = ctx.spawn(never_returns).unwrap();
            match h.wait_timeout(LIMIT) {
                Ok(r) => format!("ended: {r:?}"),
                Err(h) => {
                    let at = start.elapsed();
                    drop(h);
                    return (at.as_micros() as u64, "gave the handle back".into());
                }
            }
        }
        Form::TryWait => {
            let h = ctx.spawn(never_returns).unwrap();
            match h.try_wait() {
                Ok(r) => format!("ended: {r:?}"),
                Err(h) => {
                    let at = start.elapsed();
                    drop(h);
                    return (at.as_micros() as u64, "gave the handle back".into());
                }
            }
        }
        Form::Drop => {
            let h = ctx.spawn(never_returns).unwrap();
            drop(h);
            "dropped".into()
        }
    };
    (start.elapsed().as_micros() as u64, outcome)
}

fn run_parent(pool: &Pool, form: Form) -> (Duration, String) {
    let (us, outcome) = pool
        .spawn_with(form, parent)
        .unwrap()
        .wait()
        .unwrap_or_else(|e| panic!("{form:?}: parent failed: {e}"));
    (Duration::from_micros(us), outcome)
}

#[test]
fn nested_waits_keep_their_deadlines_with_one_and_two_workers() {
    common::no_leaks(|| {
        for workers in [1, 2] {
            let pool = pool(workers);
            for form in [
                Form::JobTimeout,
                Form::HandleTimeout,
                Form::WaitTimeout,
                Form::TryWait,
                Form::Drop,
            ] {
                let (took, outcome) = run_parent(&pool, form);
                let bound = match form {
                    Form::TryWait | Form::Drop => Duration::from_millis(50),
                    _ => LIMIT + Duration::from_millis(50),
                };
                assert!(
                    took <= bound,
                    "{workers} workers, {form:?}: the parent got its answer after {took:?} \
                     (bound {bound:?}): {outcome}"
                );
                match form {
                    Form::JobTimeout | Form::HandleTimeout => {
                        assert!(outcome.contains("Timeout"), "{form:?}: {outcome}")
                    }
                    Form::WaitTimeout | Form::TryWait => {
                        assert_eq!(outcome, "gave the handle back", "{form:?}")
                    }
                    Form::Drop => assert_eq!(outcome, "dropped"),
                }
                if matches!(
                    form,
                    Form::WaitTimeout | Form::JobTimeout | Form::HandleTimeout
                ) {
                    assert!(
                        took >= LIMIT,
                        "{form:?} answered before its deadline: {took:?}"
                    );
                }
                // The never-returning child is killed through the cancel path; the pool is
                // back at full strength and serves the next job.
                common::assert_full_strength(&pool, Duration::from_secs(5));
                let deadline = Instant::now() + Duration::from_secs(5);
                while pool.jobs_in_flight() > 0 {
                    assert!(Instant::now() < deadline, "{form:?}: jobs left in flight");
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    });
}

fn child_pid(_: &Ctx) -> u32 {
    std::thread::sleep(Duration::from_millis(10));
    std::process::id()
}

/// The parent's pid, and its child's, waited for with a deadline (so not run inline).
fn parent_of_bounded_child(ctx: &Ctx) -> (u32, u32) {
    let child = ctx.spawn(child_pid).unwrap();
    match child.wait_timeout(Duration::from_secs(5)) {
        Ok(r) => (std::process::id(), r.unwrap()),
        Err(_) => panic!("the child did not run within 5 s"),
    }
}

#[test]
fn a_bounded_nested_wait_runs_its_child_in_a_spare_worker() {
    common::no_leaks(|| {
        let pool = pool(1);
        for _ in 0..3 {
            let (parent, child) = pool.spawn(parent_of_bounded_child).unwrap().wait().unwrap();
            let (_, workers) = pool.pids();
            assert_eq!(workers, vec![parent as i32]);
            // The one worker sleeps in its bounded wait: the child ran in a spare.
            assert_ne!(parent, child);
        }
        // Idle spares leave after their linger time.
        assert!(common::descendants().len() <= 3);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(common::descendants().len(), 2, "scheduler and one worker");
    });
}

fn forever(v: u64) -> u64 {
    loop {
        if v == u64::MAX {
            return v;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn forever_chunk(_: usize, xs: &mut [u64]) {
    if xs.len() != usize::MAX {
        loop {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn forever_string(s: String) -> usize {
    forever(s.len() as u64) as usize
}

/// Asserts that `r` is the timeout of a job, answered within its limit plus the cancel
/// grace and some slack, and that the pool serves on.
fn timed_out<T: std::fmt::Debug>(pool: &Pool, what: &str, start: Instant, r: procyon::Result<T>) {
    let took = start.elapsed();
    match r {
        Err(Error::Timeout {
            job: Some(_),
            limit,
        }) => assert_eq!(limit, LIMIT, "{what}"),
        other => panic!("{what}: expected a job timeout, got {other:?}"),
    }
    assert!(took >= LIMIT, "{what}: answered before the limit: {took:?}");
    assert!(
        took < LIMIT + Duration::from_millis(500),
        "{what}: the timeout answered after {took:?}"
    );
    let x = pool.array_from_fn(8, |i| i as u64).unwrap();
    assert_eq!(
        pool.par_map(&x, |v: u64| v + 1).unwrap()[7],
        8,
        "{what}: pool serves on"
    );
}

#[test]
fn every_blocking_operation_can_be_bounded() {
    common::no_leaks(|| {
        // The pool-wide default.
        let pool = Pool::builder()
            .workers(2)
            .mempool_size(64 << 20)
            .job_timeout(LIMIT)
            .build()
            .unwrap();
        let x = pool.array_from_fn(4, |i| i as u64).unwrap();
        let start = Instant::now();
        timed_out(&pool, "par_map", start, pool.par_map(&x, forever));
        let mut out = pool.array_zeroed::<u64>(4).unwrap();
        let start = Instant::now();
        timed_out(
            &pool,
            "par_map_into",
            start,
            pool.par_map_into(&x, &mut out, forever),
        );
        let start = Instant::now();
        timed_out(
            &pool,
            "par_chunks_mut",
            start,
            pool.par_chunks_mut(&mut out, 1, forever_chunk),
        );
        let start = Instant::now();
        let strings = vec!["a".to_string(), "bc".to_string()];
        timed_out(
            &pool,
            "par_map_vec",
            start,
            pool.par_map_vec(strings, forever_string),
        );
        let start = Instant::now();
        timed_out(
            &pool,
            "sum",
            start,
            pool.par_iter(&x).map(forever).sum::<u64>(),
        );
        let start = Instant::now();
        timed_out(
            &pool,
            "spawn",
            start,
            pool.spawn(never_returns).unwrap().wait(),
        );

        // Per call, on a pool without a default.
        let pool = pool_without_limit();
        let x = pool.array_from_fn(4, |i| i as u64).unwrap();
        let start = Instant::now();
        timed_out(
            &pool,
            "with_timeout",
            start,
            pool.with_timeout(LIMIT).par_map(&x, forever),
        );
        // A blocking iterator terminal waits without a handle unless a limit is set:
        // the pool handle's limit still holds.
        let start = Instant::now();
        timed_out(
            &pool,
            "with_timeout, iterator",
            start,
            pool.with_timeout(LIMIT)
                .par_iter(&x)
                .map(forever)
                .sum::<u64>(),
        );
        let start = Instant::now();
        timed_out(
            &pool,
            "ParIter::timeout",
            start,
            pool.par_iter(&x).timeout(LIMIT).map(forever).collect_vec(),
        );
    });
}

/// A root whose one nested child never returns.
fn root_of_a_stuck_child(ctx: &Ctx) -> u64 {
    ctx.spawn(never_returns).unwrap().wait().unwrap()
}

#[test]
fn a_pool_wide_limit_bounds_nested_trees_through_their_root() {
    common::no_leaks(|| {
        for workers in [1, 2] {
            let pool = Pool::builder()
                .workers(workers)
                .mempool_size(64 << 20)
                .job_timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            // Deeper than the pool has spare workers: every level waits unbounded and
            // helps, so the tree ends in its own time, not the limit's (it waited the
            // full limit out when each nested job took the pool-wide one).
            for depth in 1..=5u64 {
                let start = Instant::now();
                let got = common::tasks::tree(&pool, depth).unwrap();
                assert_eq!(
                    got,
                    4u64.pow(depth as u32),
                    "{workers} workers, depth {depth}"
                );
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "{workers} workers, depth {depth}: took {:?}",
                    start.elapsed()
                );
            }
        }
        // And the root's limit still stops a tree whose nested task never returns.
        let pool = Pool::builder()
            .workers(1)
            .mempool_size(64 << 20)
            .job_timeout(LIMIT)
            .build()
            .unwrap();
        let start = Instant::now();
        timed_out(
            &pool,
            "a root with a stuck nested child",
            start,
            pool.spawn(root_of_a_stuck_child).unwrap().wait(),
        );
    });
}

fn pool_without_limit() -> Pool {
    pool(2)
}

fn cooperative(ctx: &Ctx) -> u64 {
    while !ctx.is_cancelled() {
        std::thread::sleep(Duration::from_micros(200));
    }
    0
}

#[test]
fn forked_clients_that_die_mid_job_leave_nothing_behind() {
    common::no_leaks(|| {
        let pool = pool(2);
        // Warm up (the first jobs allocate nothing lasting, but settle the heap).
        assert_eq!(pool.spawn(|_: &Ctx| 1u64).unwrap().wait().unwrap(), 1);
        let baseline = pool.mempool().usage();
        for round in 0..100 {
            let mut fds = [0i32; 2];
            // SAFETY: pipe(2) into a local array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: the child only submits a job through the inherited pool, says so on
            // the pipe and sleeps until it is killed; it never returns into the harness.
            let child = unsafe { libc::fork() };
            assert!(child >= 0, "fork failed");
            if child == 0 {
                let r = std::panic::catch_unwind(|| {
                    let h = if round % 10 == 0 {
                        // Never checks: its worker is killed after the cancel grace.
                        pool.spawn(never_returns).unwrap()
                    } else {
                        pool.spawn(cooperative).unwrap()
                    };
                    let _h = h;
                    // SAFETY: one byte from a local into the pipe's write end.
                    unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) };
                    loop {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
                let _ = r;
                // SAFETY: ends the forked child without running the harness's destructors.
                unsafe { libc::_exit(1) };
            }
            // SAFETY: our copy of the write end is closed, so the read ends with the
            // child's byte or, if it died first, with EOF.
            unsafe { libc::close(fds[1]) };
            let mut byte = [0u8; 1];
            // SAFETY: reads one byte into a local buffer from our pipe's read end.
            let got = unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) };
            // SAFETY: closes our read end.
            unsafe { libc::close(fds[0]) };
            assert_eq!(got, 1, "round {round}: the child never submitted its job");
            common::kill(child, libc::SIGKILL);
            let mut status = 0;
            // SAFETY: waits for our own child.
            assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.jobs_in_flight() > 0 || pool.mempool().usage().in_use != baseline.in_use {
            assert!(
                Instant::now() < deadline,
                "after 100 dead clients: {} jobs in flight, mempool {:?} (baseline {baseline:?})",
                pool.jobs_in_flight(),
                pool.mempool().usage()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pool.mempool().usage().allocations, baseline.allocations);
        common::assert_full_strength(&pool, Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(pool.spawn(|_: &Ctx| 2u64).unwrap().wait().unwrap(), 2);
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
    });
}
