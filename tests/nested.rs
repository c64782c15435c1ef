//! Nested jobs, cancellation, progress reports, timeouts and async handles.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tasks::{busy_pid, parent_of_spinners, spin_forever};
use procyon::{Ctx, Error, Pool};

fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .mempool_size(128 << 20)
        .cancel_grace(Duration::from_millis(50))
        .build()
        .expect("pool builds")
}

/// Sum of 0..n computed through `depth` levels of nested jobs, each level splitting in 3.
fn nested_sum(ctx: &Ctx, depth: u32, lo: u64, hi: u64) -> u64 {
    if depth == 0 || hi - lo < 3 {
        return (lo..hi).sum();
    }
    let step = (hi - lo).div_ceil(3);
    let parts = ctx
        .array_from_fn(3, |k| {
            [
                depth as u64 - 1,
                lo + k as u64 * step,
                (lo + (k as u64 + 1) * step).min(hi),
            ]
        })
        .unwrap();
    ctx.par_iter(&parts)
        .with_max_len(1)
        .map_ctx(|ctx: &Ctx, [d, a, b]: [u64; 3]| nested_sum(ctx, d as u32, a, b.max(a)))
        .sum::<u64>()
        .unwrap()
}

#[test]
fn nesting_four_levels_deep_with_one_and_two_workers() {
    common::no_leaks(|| {
        for workers in [1, 2] {
            let pool = pool(workers);
            let base = pool.mempool().usage().in_use;
            let got = pool
                .spawn(|ctx: &Ctx| nested_sum(ctx, 4, 0, 10_000))
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(got, (0..10_000u64).sum::<u64>(), "workers = {workers}");
            // Every level's arrays and job blocks were freed.
            assert_eq!(pool.mempool().usage().in_use, base);
        }
    });
}

/// Runs a job correctly, and sees every worker alive within 20 ms of the failure that
/// preceded the call (the scheduler re-forks killed workers at once).
fn assert_serves(pool: &Pool) {
    let s: u64 = pool
        .par_range(0..10_000)
        .map(|i: usize| i as u64)
        .sum()
        .unwrap();
    assert_eq!(s, (0..10_000u64).sum::<u64>());
    let deadline = Instant::now() + Duration::from_millis(20);
    loop {
        let (_, pids) = pool.pids();
        if pids
            .iter()
            .all(|&p| p > 0 && !common::gone_within(p, Duration::ZERO))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pool not at full strength: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn cancel_stops_tasks_that_never_check() {
    common::no_leaks(|| {
        let pool = pool(2);
        let (_, before) = pool.pids();
        let handle = pool
            .par_range(0..8)
            .with_max_len(1)
            .spawn_for_each(spin_forever)
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        handle.cancel();
        assert!(matches!(handle.wait(), Err(Error::Cancelled)));
        assert!(
            start.elapsed() < Duration::from_millis(50 + 500),
            "cancel took {:?}",
            start.elapsed()
        );
        // The spinning workers were killed and replaced: full strength, new pids.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let (_, after) = pool.pids();
            if after.iter().all(|p| !before.contains(p)) && after.iter().all(|&p| p > 0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "workers not replaced: {before:?} -> {after:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_serves(&pool);
    });
}

#[test]
fn cancelling_a_parent_stops_its_descendants_and_frees_their_memory() {
    common::no_leaks(|| {
        let pool = pool(2);
        let base = pool.mempool().usage();
        let handle = pool.spawn(parent_of_spinners).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        handle.cancel();
        assert!(matches!(handle.wait(), Err(Error::Cancelled)));
        assert_eq!(
            pool.mempool().usage().in_use,
            base.in_use,
            "memory of the cancelled tree was not freed"
        );
        assert_serves(&pool);
    });
}

fn cooperative(ctx: &Ctx) -> u64 {
    let mut n = 0;
    while !ctx.is_cancelled() {
        n += 1;
        std::hint::spin_loop();
    }
    n
}

#[test]
fn cooperative_cancel_is_prompt() {
    let _turn = common::one_at_a_time();
    let pool = Pool::builder()
        .workers(2)
        .mempool_size(64 << 20)
        .cancel_grace(Duration::from_secs(5))
        .build()
        .unwrap();
    let (_, before) = pool.pids();
    let handle = pool.spawn(cooperative).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    handle.cancel();
    assert!(matches!(handle.wait(), Err(Error::Cancelled)));
    // Well under the 5 s grace: the task saw the flag and returned; nobody was killed.
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(pool.pids().1, before);
}

fn slow_row(ctx: &Ctx, i: usize) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    ctx.progress(i as u64 + 1, 100);
    ctx.report(&(i as u64)).unwrap();
    i as u64
}

#[test]
fn progress_is_monotonic_and_reports_arrive_in_order() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reports = Arc::new(Mutex::new(Vec::new()));
    let (s, r) = (Arc::clone(&seen), Arc::clone(&reports));
    let out = pool
        .par_range(0..100)
        .with_max_len(1)
        .on_progress(move |p| s.lock().unwrap().push(p))
        .on_report(move |v: u64| r.lock().unwrap().push(v))
        .map_ctx(slow_row)
        .collect_vec()
        .unwrap();
    assert_eq!(out, (0..100).collect::<Vec<_>>());
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 2, "too few progress callbacks: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0].items_done <= w[1].items_done));
    let last = seen.last().unwrap();
    assert_eq!((last.items_done, last.items_total), (100, 100));
    assert_eq!(last.reported.map(|(_, t)| t), Some(100));
    let mut reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 100);
    // Each report is delivered once; order follows the report sequence, and one worker's
    // reports are in its own order.
    reports.sort_unstable();
    assert_eq!(reports, (0..100).collect::<Vec<_>>());
}

#[test]
fn timeout_fails_the_job_and_the_pool_recovers() {
    common::no_leaks(|| {
        let pool = pool(2);
        let start = Instant::now();
        let r = pool
            .par_range(0..4)
            .with_max_len(1)
            .timeout(Duration::from_millis(100))
            .for_each(spin_forever);
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_serves(&pool);
    });
}

fn panics_deep(ctx: &Ctx) -> u64 {
    ctx.par_range(0..10)
        .map(|i: usize| {
            if i == 7 {
                panic!("inner failure {i}")
            } else {
                i as u64
            }
        })
        .sum::<u64>()
        .unwrap_or(u64::MAX)
}

fn propagates(ctx: &Ctx) -> u64 {
    ctx.par_range(0..10)
        .map(|i: usize| if i == 7 { panic!("deep {i}") } else { i as u64 })
        .sum::<u64>()
        .unwrap()
}

#[test]
fn nested_errors_reach_the_parent_task_or_the_caller() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    // The parent task handles the error itself.
    assert_eq!(pool.spawn(panics_deep).unwrap().wait().unwrap(), u64::MAX);
    // The parent task does not: the caller gets the failure, with the inner message.
    match pool.spawn(propagates).unwrap().wait() {
        Err(Error::TaskPanicked { message, .. }) => {
            assert!(message.contains("deep 7"), "{message}")
        }
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    assert_serves(&pool);
}

fn square_after(ctx: &Ctx) -> u64 {
    let _ = ctx;
    std::thread::sleep(Duration::from_millis(20));
    49
}

#[test]
fn async_handles_under_tokio() {
    let _turn = common::one_at_a_time();
    let pool = Arc::new(pool(2));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let handles: Vec<_> = (0..6).map(|_| pool.spawn(square_after).unwrap()).collect();
        // The single runtime thread is never blocked: a ticker keeps running meanwhile.
        let c = Arc::clone(&counter);
        let ticker = tokio::spawn(async move {
            for _ in 0..10 {
                c.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        let results = futures_join_all(handles).await;
        assert!(results.into_iter().all(|r| r.unwrap() == 49));
        ticker.await.unwrap();
    });
    assert_eq!(counter.load(Ordering::Relaxed), 10);
}

/// Awaits every future in turn (they all run in the pool at once anyway).
async fn futures_join_all<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in fs {
        out.push(f.await);
    }
    out
}

/// A nested job starts lazy (its owner runs it alone at first), but one of long items is
/// still shared: the idle worker, asleep when the job starts, takes the second item.
#[test]
fn a_nested_job_of_long_items_runs_on_both_workers() {
    common::no_leaks(|| {
        let pool = pool(2);
        for round in 0..3 {
            // Let the other worker fall asleep first.
            std::thread::sleep(Duration::from_millis(50));
            let pids = pool
                .spawn(|ctx: &Ctx| {
                    ctx.par_range(0..2u32)
                        .with_max_len(1)
                        .map(|_: u32| busy_pid(150))
                        .collect_vec()
                        .unwrap()
                })
                .unwrap()
                .wait()
                .unwrap();
            assert_ne!(
                pids[0], pids[1],
                "round {round}: both items ran in one worker"
            );
        }
    });
}

/// The processes that ran `n` items of `ms` each, as one nested job of one item per chunk
/// (one call site for every caller).
fn pids_of_items(ctx: &Ctx, n: u32, ms: u64) -> Vec<u32> {
    ctx.par_range(0..n)
        .with_max_len(1)
        .map_with(ms, |ms: &u64, _: u32| busy_pid(*ms))
        .collect_vec()
        .unwrap()
}

/// A nested job that starts while the other worker idles goes to it only if it is worth
/// a share (`worker::sizes`): after 200 tiny jobs from one call site, whose record may
/// then say its jobs are small, a job of long items from that same call site is still
/// shared: when it runs inline on a small record, its own time decides after its first
/// item.
#[test]
fn a_call_site_whose_jobs_were_small_still_shares_a_job_of_long_items() {
    common::no_leaks(|| {
        let pool = pool(2);
        for round in 0..3 {
            let pids = pool
                .spawn(|ctx: &Ctx| {
                    for _ in 0..200 {
                        assert_eq!(pids_of_items(ctx, 16, 0).len(), 16);
                    }
                    pids_of_items(ctx, 4, 60)
                })
                .unwrap()
                .wait()
                .unwrap();
            assert!(
                pids.iter().any(|p| *p != pids[0]),
                "round {round}: the long items all ran in one worker: {pids:?}"
            );
        }
    });
}

/// The inner jobs of a tree (their tasks start jobs of their own) are shared at once;
/// the result matches the sequential count whatever ran where.
#[test]
fn trees_of_small_nested_jobs_count_every_leaf() {
    fn tree(ctx: &Ctx, d: u32) -> u64 {
        if d == 0 {
            return 1;
        }
        ctx.par_range(0..4u32)
            .with_max_len(1)
            .map_with_ctx(d - 1, |d: &u32, c: &Ctx, _: u32| tree(c, *d))
            .sum::<u64>()
            .unwrap()
    }
    common::no_leaks(|| {
        for workers in [1, 2, 3] {
            let pool = pool(workers);
            for d in 1..=5u32 {
                let got = pool
                    .spawn_with(d, |d: &u32, ctx: &Ctx| tree(ctx, *d))
                    .unwrap()
                    .wait()
                    .unwrap();
                assert_eq!(got, 4u64.pow(d), "workers {workers}, depth {d}");
            }
        }
    });
}

/// The submitting task keeps the accumulators of the chunks it runs itself, while the
/// other worker's come through the job's table: merged, they are still in input order
/// (collect_vec, a non-commutative reduce) and complete (sum), in rounds where both
/// workers took items.
#[test]
fn a_shared_nested_job_combines_the_owners_and_the_others_results_in_order() {
    common::no_leaks(|| {
        let pool = pool(2);
        let base = pool.mempool().usage().in_use;
        let mut shared = 0;
        for _ in 0..4 {
            let (pids, text, total) = pool
                .spawn(|ctx: &Ctx| {
                    let pids = ctx
                        .par_range(0..16u32)
                        .with_max_len(1)
                        .map(|i: u32| (i, busy_pid(3)))
                        .collect_vec()
                        .unwrap();
                    let text = ctx
                        .par_range(0..16u32)
                        .with_max_len(1)
                        .map(|i: u32| {
                            busy_pid(1);
                            i.to_string()
                        })
                        .reduce(String::new, |a: String, b: String| a + &b)
                        .unwrap();
                    let total = ctx
                        .par_range(0..16u64)
                        .with_max_len(1)
                        .map(|i: u64| {
                            busy_pid(1);
                            i * i
                        })
                        .sum::<u64>()
                        .unwrap();
                    (pids, text, total)
                })
                .unwrap()
                .wait()
                .unwrap();
            let order: Vec<u32> = pids.iter().map(|p| p.0).collect();
            assert_eq!(order, (0..16).collect::<Vec<_>>());
            assert_eq!(text, (0..16).map(|i| i.to_string()).collect::<String>());
            assert_eq!(total, (0..16u64).map(|i| i * i).sum::<u64>());
            if pids.iter().any(|p| p.1 != pids[0].1) {
                shared += 1;
            }
        }
        assert!(
            shared > 0,
            "the other worker never took an item of the nested jobs"
        );
        // The other worker's lists of partials went through mempool blocks: all freed.
        assert_eq!(pool.mempool().usage().in_use, base);
    });
}

/// A nested `fold_finish_reduce_unordered`: the submitting task's own local accumulator
/// (never encoded) is finished and combined with the other worker's finished one; every
/// item is counted once, in rounds where both workers took items.
#[test]
fn a_nested_fold_finish_combines_the_owners_local_accumulator_with_the_others() {
    type Seen = (Vec<u32>, Vec<u32>);
    common::no_leaks(|| {
        let pool = pool(2);
        let mut shared = 0;
        for _ in 0..4 {
            let (items, pids): Seen = pool
                .spawn(|ctx: &Ctx| {
                    ctx.par_range(0..16u32)
                        .with_max_len(1)
                        .fold_finish_reduce_unordered(
                            Vec::new,
                            |mut v: Vec<(u32, u32)>, i: u32| {
                                v.push((i, busy_pid(1)));
                                v
                            },
                            |v: Vec<(u32, u32)>| -> Seen {
                                let mut pids: Vec<u32> = v.iter().map(|p| p.1).collect();
                                pids.dedup();
                                (v.into_iter().map(|p| p.0).collect(), pids)
                            },
                            |(mut a, mut p): Seen, (b, q): Seen| {
                                a.extend(b);
                                p.extend(q);
                                (a, p)
                            },
                        )
                        .unwrap()
                })
                .unwrap()
                .wait()
                .unwrap();
            let mut sorted = items.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..16).collect::<Vec<_>>(), "{items:?}");
            assert!(
                pids.len() <= 2,
                "one finished accumulator per worker: {pids:?}"
            );
            if pids.len() == 2 {
                assert_ne!(pids[0], pids[1]);
                shared += 1;
            }
        }
        assert!(
            shared > 0,
            "the other worker never took an item of the nested jobs"
        );
    });
}

/// On one worker nobody else could take a chunk of a nested job: it runs inline in its
/// task's worker and takes no job slot (the client sees only the task's own job in
/// flight), and its answer is the sequential one.
#[test]
fn on_one_worker_a_nested_job_runs_inline_and_takes_no_job_slot() {
    common::no_leaks(|| {
        let pool = pool(1);
        let handle = pool
            .spawn(|ctx: &Ctx| {
                ctx.par_range(0..8u32)
                    .with_max_len(1)
                    .map(|i: u32| {
                        std::thread::sleep(Duration::from_millis(5));
                        i * i
                    })
                    .collect_vec()
                    .unwrap()
            })
            .unwrap();
        let most =
            common::most_in_flight_until_an_item_is_done(&pool, &handle, Duration::from_secs(30));
        assert_eq!(
            handle.wait().unwrap(),
            (0..8u32).map(|i| i * i).collect::<Vec<_>>()
        );
        assert_eq!(most, 1, "only the spawned task's job was in flight");
        assert_eq!(pool.jobs_in_flight(), 0);
    });
}

/// A nested job started while the other worker is busy runs inline; once that worker is
/// idle, the rest is shared with it at the next chunk: the items still come back in
/// order, the first ran in the task's own worker, and both workers ran some.
#[test]
fn a_nested_job_run_inline_shares_its_rest_once_a_worker_is_idle() {
    common::no_leaks(|| {
        let pool = pool(2);
        for round in 0..3 {
            let out = pool
                .par_range(0..2u32)
                .with_max_len(1)
                .map_ctx(|ctx: &Ctx, i: u32| {
                    if i == 0 {
                        // Keeps the other worker busy for a while.
                        return (busy_pid(40), Vec::new());
                    }
                    let items = ctx
                        .par_range(0..10u32)
                        .with_max_len(1)
                        .map(|k: u32| (k, busy_pid(8)))
                        .collect_vec()
                        .unwrap();
                    (std::process::id(), items)
                })
                .collect_vec()
                .unwrap();
            let (owner, items) = &out[1];
            let order: Vec<u32> = items.iter().map(|p| p.0).collect();
            assert_eq!(order, (0..10).collect::<Vec<_>>(), "round {round}");
            assert_eq!(
                items[0].1, *owner,
                "round {round}: the first item ran inline"
            );
            assert!(
                items.iter().any(|p| p.1 != *owner),
                "round {round}: the rest was never shared: {items:?}"
            );
        }
    });
}

/// The tasks of a nested job run inline belong to their parent's job: they see its
/// number, and their reports and progress go nowhere (as a submitted nested job's do,
/// which nobody watches): the client hears only the reports of its own job's tasks.
#[test]
fn inline_nested_tasks_belong_to_their_parents_job_and_report_to_nobody() {
    common::no_leaks(|| {
        let pool = pool(1);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&heard);
        let last = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&last);
        let out = pool
            .par_range(0..2u64)
            .with_max_len(1)
            .on_report(move |r: u64| sink.lock().unwrap().push(r))
            .on_progress(move |p| *seen.lock().unwrap() = Some(p))
            .map_ctx(|ctx: &Ctx, i: u64| {
                ctx.report(&(100 + i)).unwrap();
                let inner = ctx
                    .par_range(0..3u64)
                    .with_max_len(1)
                    .map_ctx(|c: &Ctx, k: u64| {
                        c.report(&k).unwrap();
                        c.progress(k + 1, 3);
                        c.job_number()
                    })
                    .collect_vec()
                    .unwrap();
                (ctx.job_number(), inner)
            })
            .collect_vec()
            .unwrap();
        for (job, inner) in &out {
            assert_eq!(inner, &vec![*job; 3]);
        }
        let mut heard = heard.lock().unwrap().clone();
        heard.sort_unstable();
        assert_eq!(heard, vec![100, 101]);
        let last = last
            .lock()
            .unwrap()
            .expect("the final progress is reported");
        assert_eq!((last.items_done, last.reported), (2, None));
    });
}

/// A panic in a task of a nested job run inline fails that nested job's terminal with
/// the panic's message; the task that started it goes on, and the pool serves on.
#[test]
fn a_panic_inside_an_inline_nested_job_fails_only_that_job() {
    common::no_leaks(|| {
        let pool = pool(1);
        let answer = pool
            .spawn(|ctx: &Ctx| {
                let r = ctx
                    .par_range(0..4u32)
                    .with_max_len(1)
                    .map(|i: u32| if i == 2 { panic!("inline boom {i}") } else { i })
                    .sum::<u32>();
                match r {
                    Err(Error::TaskPanicked { message, .. }) => message,
                    other => format!("not a panic: {other:?}"),
                }
            })
            .unwrap()
            .wait()
            .unwrap();
        assert!(answer.contains("inline boom 2"), "{answer}");
        assert_serves(&pool);
    });
}

/// A nested `fold` leaves the accumulators the same job started by the client leaves
/// (one per chunk, the chunks a job's counter hands out), whether it runs inline or is
/// shared.
#[test]
fn a_nested_fold_leaves_the_accumulators_a_top_level_fold_does() {
    common::no_leaks(|| {
        for workers in [1, 2] {
            let pool = pool(workers);
            let top = pool
                .par_range(0..50u32)
                .with_min_len(3)
                .fold(Vec::new, |mut v: Vec<u32>, i: u32| {
                    v.push(i);
                    v
                })
                .unwrap();
            let nested = pool
                .spawn(|ctx: &Ctx| {
                    ctx.par_range(0..50u32)
                        .with_min_len(3)
                        .fold(Vec::new, |mut v: Vec<u32>, i: u32| {
                            v.push(i);
                            v
                        })
                        .unwrap()
                })
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(nested, top, "workers = {workers}");
            assert!(top.iter().all(|c| c.len() >= 3 || c.last() == Some(&49)));
        }
    });
}

/// Cancelling a job whose task runs a nested job inline stops it: the tasks see the
/// cancel through their parent's job, and the inline run stops at its next chunk.
#[test]
fn cancelling_a_job_stops_its_inline_nested_job() {
    common::no_leaks(|| {
        let pool = pool(1);
        let handle = pool
            .spawn(|ctx: &Ctx| {
                ctx.par_range(0..4u32)
                    .with_max_len(1)
                    .map_ctx(|c: &Ctx, _: u32| {
                        while !c.is_cancelled() {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        1u32
                    })
                    .sum::<u32>()
                    .map_err(|e| e.to_string())
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let start = Instant::now();
        handle.cancel();
        assert!(matches!(handle.wait(), Err(Error::Cancelled)));
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_serves(&pool);
    });
}

/// Short-circuiting terminals of a nested job run inline stop at the item that decides
/// and answer as the sequential iterator does: `find_first`, `position_first`, `any`,
/// `all`, and a `try_fold` that breaks.
#[test]
fn inline_nested_short_circuits_answer_as_the_sequential_iterator() {
    common::no_leaks(|| {
        // One worker: run inline; two: shared with the idle worker as well.
        for workers in [1, 2] {
            let pool = pool(workers);
            let got = pool
                .spawn(|ctx: &Ctx| {
                    let r = || ctx.par_range(0..40u32).with_max_len(3);
                    (
                        r().find_first(|x: &u32| x % 7 == 6).unwrap(),
                        r().position_first(|x: u32| x > 30).unwrap(),
                        r().any(|x: u32| x == 39).unwrap(),
                        r().all(|x: u32| x < 20).unwrap(),
                        r().try_fold(
                            || 0u32,
                            |a: u32, x: u32| if x < 25 { Ok(a + x) } else { Err(x) },
                        )
                        .unwrap()
                        .map(|v| v.len()),
                    )
                })
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(got.0, Some(6));
            assert_eq!(got.1, Some(31));
            assert!(got.2);
            assert!(!got.3);
            assert_eq!(got.4, Err(25), "the first failing item, in input order");
        }
    });
}
