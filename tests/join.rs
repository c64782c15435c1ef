//! `join`, `join_with` and `scope`, on a pool and on a task's `Ctx`: results, nesting
//! (a fib-style join tree of depth 4 with one and two workers), panics and cancellation.

mod common;

use std::time::{Duration, Instant};

use common::tasks::busy_pid;
use procyon::{Ctx, Error, Pool};

fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .mempool_size(64 << 20)
        .cancel_grace(Duration::from_millis(50))
        .build()
        .expect("pool builds")
}

/// fib(n) with one `join_with` per inner node: a tree of depth n - 1.
fn fib(n: &u64, ctx: &Ctx) -> u64 {
    if *n < 2 {
        return *n;
    }
    let (a, b) = ctx.join_with(n - 1, fib, n - 2, fib).unwrap();
    a + b
}

/// Leaves of a full binary tree of `depth` levels of `ctx.join`, half of them by `scope`.
fn tree(depth: &u32, ctx: &Ctx) -> u64 {
    match *depth {
        0 => 1,
        d if d % 2 == 0 => {
            let (a, b) = ctx.join_with(d - 1, tree, d - 1, tree).unwrap();
            a + b
        }
        d => ctx
            .scope(|s| {
                s.spawn_with(d - 1, tree);
                s.spawn_with(d - 1, tree);
            })
            .unwrap()
            .into_iter()
            .sum(),
    }
}

/// A task that runs until its job is cancelled; returns how long it ran, in ms.
fn until_cancelled(ctx: &Ctx) -> u64 {
    let start = Instant::now();
    while !ctx.is_cancelled() {
        std::thread::sleep(Duration::from_millis(1));
    }
    start.elapsed().as_millis() as u64
}

fn panics(_: &Ctx) -> u64 {
    panic!("left side failed")
}

#[test]
fn join_returns_both_results_of_two_types() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    let (a, b) = pool
        .join(
            |ctx: &Ctx| ctx.par_range(0u64..1000).sum::<u64>().unwrap(),
            |_: &Ctx| "right".to_string(),
        )
        .unwrap();
    assert_eq!((a, b.as_str()), (499_500, "right"));
    let (a, b) = pool
        .join_with(
            vec![1u32, 2, 3],
            |v: &Vec<u32>, _: &Ctx| v.len(),
            7i64,
            |k: &i64, _: &Ctx| -k,
        )
        .unwrap();
    assert_eq!((a, b), (3, -7));
    assert_eq!(pool.jobs_in_flight(), 0);
}

#[test]
fn nested_joins_depth_four_finish_with_one_and_two_workers() {
    common::no_leaks(|| {
        for workers in [1, 2] {
            let pool = pool(workers);
            let base = pool.mempool().usage().in_use;
            // fib(5): a join tree of depth 4.
            assert_eq!(pool.spawn_with(5u64, fib).unwrap().wait().unwrap(), 5);
            assert_eq!(pool.spawn_with(9u64, fib).unwrap().wait().unwrap(), 34);
            // A full tree of depth 4, joins and scopes alternating; and from the client.
            assert_eq!(pool.spawn_with(4u32, tree).unwrap().wait().unwrap(), 16);
            let (a, b) = pool.join_with(4u32, tree, 3u32, tree).unwrap();
            assert_eq!((a, b), (16, 8), "workers = {workers}");
            assert_eq!(pool.jobs_in_flight(), 0);
            assert_eq!(pool.mempool().usage().in_use, base);
        }
    });
}

#[test]
fn a_panic_on_either_side_is_the_error_and_stops_the_other() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    // Left fails: the right side, which runs until cancelled, is stopped.
    let t = Instant::now();
    let r = pool.join(panics, until_cancelled);
    assert!(
        matches!(&r, Err(Error::TaskPanicked { message, .. }) if message.contains("left side failed")),
        "{r:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // Right fails after the left succeeded.
    let r = pool.join(|_: &Ctx| 1u64, panics);
    assert!(matches!(r, Err(Error::TaskPanicked { .. })), "{r:?}");
    // Inside a task: the join's error reaches the task, which passes it on.
    let r = pool
        .spawn(|ctx: &Ctx| {
            ctx.join(|_: &Ctx| 2u64, panics)
                .map(|(a, b)| a + b)
                .map_err(|e| format!("{e:?}"))
        })
        .unwrap()
        .wait()
        .unwrap();
    assert!(
        matches!(&r, Err(e) if e.starts_with("TaskPanicked")),
        "{r:?}"
    );
    // A panic that the task does not catch fails its own job.
    let r = pool
        .spawn(|ctx: &Ctx| ctx.join(panics, panics).unwrap())
        .unwrap()
        .wait();
    assert!(matches!(r, Err(Error::TaskPanicked { .. })), "{r:?}");
    assert_eq!(pool.jobs_in_flight(), 0);
    // The pool serves on.
    assert_eq!(pool.join(|_: &Ctx| 1u8, |_: &Ctx| 2u8).unwrap(), (1, 2));
}

#[test]
fn a_later_failure_stops_an_earlier_task_that_runs_on() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    // The left side would run until cancelled: the right side's panic must stop it.
    let t = Instant::now();
    let r = pool.join(until_cancelled, panics);
    assert!(matches!(r, Err(Error::TaskPanicked { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let t = Instant::now();
    let r = pool.scope(|s| {
        s.spawn(until_cancelled);
        s.spawn(|_: &Ctx| 1u64);
        s.spawn(panics);
    });
    assert!(matches!(r, Err(Error::TaskPanicked { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(pool.jobs_in_flight(), 0);
}

#[test]
fn cancelling_the_parent_stops_both_sides_of_a_nested_join() {
    let _turn = common::one_at_a_time();
    for workers in [1, 2] {
        let pool = pool(workers);
        let h = pool
            .spawn(|ctx: &Ctx| ctx.join(until_cancelled, until_cancelled).is_ok())
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        h.cancel();
        assert!(matches!(h.wait(), Err(Error::Cancelled)));
        assert!(t.elapsed() < Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.jobs_in_flight() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pool.jobs_in_flight(), 0, "workers = {workers}");
        assert_eq!(pool.join(|_: &Ctx| 3u8, |_: &Ctx| 4u8).unwrap(), (3, 4));
    }
}

#[test]
fn scope_returns_results_in_spawn_order() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    let empty: Vec<u64> = pool.scope(|_| {}).unwrap();
    assert!(empty.is_empty());
    let got = pool
        .scope(|s| {
            for i in 0..20u64 {
                if i % 2 == 0 {
                    s.spawn_with(i, |i: &u64, _: &Ctx| {
                        // Later tasks finish first: order comes from the scope, not timing.
                        std::thread::sleep(Duration::from_millis(20 - i));
                        i * 10
                    });
                } else {
                    s.spawn_with(i, |i: &u64, ctx: &Ctx| {
                        ctx.par_range(0..*i)
                            .map(|_: u64| 10u64)
                            .sum::<u64>()
                            .unwrap()
                    });
                }
            }
            assert_eq!(s.len(), 20);
        })
        .unwrap();
    assert_eq!(got, (0..20u64).map(|i| i * 10).collect::<Vec<_>>());
    // A scope inside a task, on its Ctx.
    let got = pool
        .spawn(|ctx: &Ctx| {
            ctx.scope(|s| {
                s.spawn(|_: &Ctx| 1u32);
                s.spawn(|ctx: &Ctx| ctx.join(|_: &Ctx| 2u32, |_: &Ctx| 3u32).unwrap().1);
            })
            .unwrap()
        })
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(got, vec![1, 3]);
    assert_eq!(pool.jobs_in_flight(), 0);
}

#[test]
fn a_failing_scope_task_cancels_the_rest_and_is_the_error() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    let t = Instant::now();
    let r = pool.scope(|s| {
        s.spawn(|_: &Ctx| 1u64);
        s.spawn(panics);
        s.spawn(until_cancelled);
        s.spawn(until_cancelled);
    });
    assert!(matches!(r, Err(Error::TaskPanicked { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(pool.jobs_in_flight(), 0);
    // A task that never checks for cancellation is killed after the grace period.
    let r = pool.scope(|s| {
        s.spawn(panics);
        s.spawn(|_: &Ctx| -> u64 {
            loop {
                std::hint::spin_loop()
            }
        });
    });
    assert!(matches!(r, Err(Error::TaskPanicked { .. })), "{r:?}");
    assert_eq!(pool.jobs_in_flight(), 0);
    assert_eq!(pool.scope(|s| s.spawn(|_: &Ctx| 5u8)).unwrap(), vec![5]);
}

#[test]
fn a_shut_down_pool_is_an_error_not_a_hang() {
    let _turn = common::one_at_a_time();
    let pool = pool(1);
    let (sched, _) = pool.pids();
    // The scheduler dies: every later submission must fail at once.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sched),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let r = pool.join(|_: &Ctx| 1u8, |_: &Ctx| 2u8);
    assert!(matches!(r, Err(Error::PoolShutDown { .. })), "{r:?}");
    let r = pool.scope(|s| {
        s.spawn(|_: &Ctx| 1u8);
        s.spawn(|_: &Ctx| 2u8);
    });
    assert!(matches!(r, Err(Error::PoolShutDown { .. })), "{r:?}");
}

/// On one worker nobody else could run either side: a task's `ctx.join` runs both
/// inline, with no job slot in flight but the task's own, and fib's join tree comes out
/// as the recursion does.
#[test]
fn on_one_worker_a_tasks_join_runs_inline_and_takes_no_job_slot() {
    common::no_leaks(|| {
        let pool = pool(1);
        let handle = pool
            .spawn(|ctx: &Ctx| {
                ctx.join(
                    |_: &Ctx| {
                        std::thread::sleep(Duration::from_millis(20));
                        1u64
                    },
                    |_: &Ctx| {
                        std::thread::sleep(Duration::from_millis(20));
                        2u64
                    },
                )
                .unwrap()
            })
            .unwrap();
        let most =
            common::most_in_flight_until_an_item_is_done(&pool, &handle, Duration::from_secs(30));
        assert_eq!(handle.wait().unwrap(), (1, 2));
        assert_eq!(most, 1, "only the spawned task's job was in flight");
        fn seq(n: u64) -> u64 {
            if n < 2 {
                n
            } else {
                seq(n - 1) + seq(n - 2)
            }
        }
        assert_eq!(
            pool.spawn_with(18u64, fib).unwrap().wait().unwrap(),
            seq(18)
        );
    });
}

/// A join started while the other worker is busy runs inline; once that worker is idle,
/// the first nested job inside the left side to end a chunk hands it the right side
/// (the biggest piece left), which then runs in the other process.
#[test]
fn a_joins_right_side_goes_to_a_worker_that_gets_idle_while_the_left_runs() {
    common::no_leaks(|| {
        let pool = pool(2);
        for round in 0..3 {
            let out = pool
                .par_range(0..2u32)
                .with_max_len(1)
                .map_ctx(|ctx: &Ctx, i: u32| {
                    if i == 0 {
                        // Keeps the other worker busy for a while.
                        return (busy_pid(40), 0, Vec::new());
                    }
                    let (left, right) = ctx
                        .join(
                            |c: &Ctx| {
                                c.par_range(0..10u32)
                                    .with_max_len(1)
                                    .map(|_: u32| busy_pid(8))
                                    .collect_vec()
                                    .unwrap()
                            },
                            |_: &Ctx| busy_pid(1),
                        )
                        .unwrap();
                    (std::process::id(), right, left)
                })
                .collect_vec()
                .unwrap();
            let (owner, right, left) = &out[1];
            assert_eq!(left.len(), 10);
            assert_eq!(left[0], *owner, "round {round}: the left side ran inline");
            assert_ne!(
                right, owner,
                "round {round}: the right side was never shared"
            );
        }
    });
}

/// A panic on either side of a join run inline is the join's error; the task that
/// joined goes on.
#[test]
fn a_panic_in_an_inline_join_is_the_joins_error() {
    common::no_leaks(|| {
        let pool = pool(1);
        for left in [true, false] {
            let r = pool
                .spawn_with(left, |left: &bool, ctx: &Ctx| {
                    let r = if *left {
                        ctx.join(panics, |_: &Ctx| 1u64)
                    } else {
                        ctx.join(|_: &Ctx| 1u64, panics)
                    };
                    match r {
                        Err(Error::TaskPanicked { message, .. }) => message,
                        other => format!("not a panic: {other:?}"),
                    }
                })
                .unwrap()
                .wait()
                .unwrap();
            assert!(r.contains("left side failed"), "{r}");
        }
        assert_eq!(pool.jobs_in_flight(), 0);
        assert_eq!(pool.join(|_: &Ctx| 1u8, |_: &Ctx| 2u8).unwrap(), (1, 2));
    });
}
