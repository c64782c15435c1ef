//! The pool as a service: many independent jobs from real programs (issue: balanced
//! dispatch, no hidden caps). Every idle worker takes any ready job; a submitter never
//! waits for a worker; the job table grows instead of capping outstanding handles.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use procyon::{Ctx, Error, Pool};

fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .mempool_size(256 << 20)
        .build()
        .unwrap()
}

/// Waits (bounded) until every job has been collected: jobs whose handle was dropped or
/// timed out are cleaned up by the scheduler once their workers have left.
fn settle(pool: &Pool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.jobs_in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} jobs still in flight after 5 s",
            pool.jobs_in_flight()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn sleep_500ms(_: &Ctx) -> u32 {
    std::thread::sleep(Duration::from_millis(500));
    std::process::id()
}

fn sleep_3s(ctx: &Ctx) -> u32 {
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end && !ctx.is_cancelled() {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::process::id()
}

fn busy_1ms(_: &Ctx) -> u32 {
    let end = Instant::now() + Duration::from_millis(1);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
    std::process::id()
}

#[test]
fn independent_spawns_run_on_every_worker() {
    common::no_leaks(|| {
        let pool = pool(2);
        let start = Instant::now();
        let handles: Vec<_> = (0..4).map(|_| pool.spawn(sleep_500ms).unwrap()).collect();
        let pids: Vec<u32> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
        let took = start.elapsed();
        let distinct: BTreeSet<u32> = pids.iter().copied().collect();
        let (_, workers) = pool.pids();
        assert_eq!(
            distinct.len(),
            2,
            "4 spawns ran on {distinct:?}, workers {workers:?}"
        );
        assert!(
            distinct.iter().all(|p| workers.contains(&(*p as i32))),
            "{distinct:?} are not the workers {workers:?}"
        );
        assert!(
            took <= Duration::from_millis(1100),
            "4 x 0.5 s on 2 workers took {took:?}"
        );
    });
}

#[test]
fn a_short_job_behind_a_long_one_runs_on_the_idle_worker() {
    common::no_leaks(|| {
        let pool = pool(2);
        let long = pool.spawn(sleep_3s).unwrap();
        // Let the long job start on one worker.
        std::thread::sleep(Duration::from_millis(50));
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let start = Instant::now();
            let pid = pool.spawn(busy_1ms).unwrap().wait().unwrap();
            worst = worst.max(start.elapsed());
            assert!(pool.pids().1.contains(&(pid as i32)));
        }
        assert!(
            worst < Duration::from_millis(20),
            "a 1 ms job behind a 3 s job took {worst:?}"
        );
        long.cancel();
        assert!(matches!(long.wait(), Err(Error::Cancelled) | Ok(_)));
    });
}

#[test]
fn ten_thousand_outstanding_spawns_are_all_answered() {
    common::no_leaks(|| {
        let pool = pool(2);
        let before = pool.mempool().usage();
        let start = Instant::now();
        let handles: Vec<_> = (0..10_000u64)
            .map(|_| pool.spawn(|_: &Ctx| std::process::id() as u64).unwrap())
            .collect();
        let submitted = start.elapsed();
        let total: u64 = handles
            .into_iter()
            .map(|h| common::answer(h, Duration::from_secs(30), "spawn").unwrap())
            .sum();
        assert!(total > 0);
        assert_eq!(pool.jobs_in_flight(), 0, "job slots left in flight");
        // Only the grown job table (kept for reuse) stays allocated.
        let after = pool.mempool().usage();
        let table = after.in_use - before.in_use;
        assert!(
            table < 16 << 20 && after.allocations - before.allocations <= 20,
            "left behind: {before:?} -> {after:?}"
        );
        // The grown table is reused: a second round allocates no more of it.
        let handles: Vec<_> = (0..10_000u64)
            .map(|_| pool.spawn(|_: &Ctx| 1u64).unwrap())
            .collect();
        let sum: u64 = handles.into_iter().map(|h| h.wait().unwrap()).sum();
        assert_eq!(sum, 10_000);
        assert_eq!(pool.mempool().usage().in_use, after.in_use);
        eprintln!(
            "10,000 spawns submitted in {submitted:?}, answered in {:?}",
            start.elapsed()
        );
    });
}

fn square(x: u64) -> u64 {
    x * x
}

fn check_cancelled(ctx: &Ctx) -> u64 {
    while !ctx.is_cancelled() {
        std::thread::sleep(Duration::from_micros(200));
    }
    7
}

#[test]
fn many_client_threads_mix_spawns_maps_cancels_and_timeouts() {
    common::no_leaks(|| {
        let pool = Arc::new(pool(2));
        let input = Arc::new(pool.array_from_fn(64, |i| i as u64).unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        let threads: Vec<_> = (0..16u64)
            .map(|t| {
                let pool = Arc::clone(&pool);
                let input = Arc::clone(&input);
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        assert!(Instant::now() < deadline, "thread {t} stuck at round {i}");
                        match (t + i) % 4 {
                            0 => {
                                let r = pool.spawn(|ctx: &Ctx| ctx.job_number()).unwrap();
                                assert!(r.wait().unwrap() > 0);
                            }
                            1 => {
                                let out = pool.par_map(&input, square).unwrap();
                                assert!(out.iter().enumerate().all(|(k, &v)| v == (k * k) as u64));
                            }
                            2 => {
                                let h = pool.spawn(check_cancelled).unwrap();
                                h.cancel();
                                assert!(matches!(h.wait(), Err(Error::Cancelled)));
                            }
                            _ => {
                                let r = pool
                                    .spawn(check_cancelled)
                                    .unwrap()
                                    .timeout(Duration::from_millis(2))
                                    .wait();
                                assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        settle(&pool);
        common::assert_full_strength(&pool, Duration::from_secs(5));
    });
}

#[test]
fn a_tokio_server_spawning_and_timing_out_never_deadlocks() {
    common::no_leaks(|| {
        let pool = Arc::new(pool(2));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_time()
            .build()
            .unwrap();
        let outcome = rt.block_on(async {
            let requests: Vec<_> = (0..200u64)
                .map(|i| {
                    let pool = Arc::clone(&pool);
                    tokio::spawn(async move {
                        // Every runtime thread may sit in `spawn` at once: it must not block.
                        let handle = if i % 3 == 0 {
                            pool.spawn(sleep_3s).unwrap()
                        } else {
                            pool.spawn(busy_1ms).unwrap()
                        };
                        // A dropped (timed-out) handle cancels its job.
                        tokio::time::timeout(Duration::from_millis(100), handle)
                            .await
                            .ok()
                            .map(|r| r.unwrap())
                    })
                })
                .collect();
            let mut done = 0;
            let mut timed_out = 0;
            for r in requests {
                match r.await.unwrap() {
                    Some(_) => done += 1,
                    None => timed_out += 1,
                }
            }
            (done, timed_out)
        });
        assert_eq!(outcome.0 + outcome.1, 200);
        assert!(outcome.1 >= 67, "every 3 s job must time out: {outcome:?}");
        drop(rt);
        settle(&pool);
        common::assert_full_strength(&pool, Duration::from_secs(5));
    });
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn sleep_1ms(_: &Ctx) -> u32 {
    std::thread::sleep(Duration::from_millis(1));
    std::process::id()
}

#[test]
fn a_thousand_awaited_handles_add_at_most_a_few_threads() {
    common::no_leaks(|| {
        let pool = pool(2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let before = threads();
        let (during, total) = rt.block_on(async {
            let tasks: Vec<_> = (0..1000)
                .map(|_| tokio::spawn(pool.spawn(sleep_1ms).unwrap()))
                .collect();
            // Let every task poll its handle once (all pending: 1000 ms of work on 2
            // workers).
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let during = threads();
            let mut total = 0;
            for t in tasks {
                total += u64::from(t.await.unwrap().unwrap() > 0);
            }
            (during, total)
        });
        assert_eq!(total, 1000);
        assert!(
            during <= before + 4,
            "1,000 awaited handles took {before} -> {during} threads"
        );
    });
}

fn progress_rows(ctx: &Ctx) -> u64 {
    for row in 1..=30 {
        std::thread::sleep(Duration::from_millis(2));
        ctx.progress(row, 30);
        if row % 10 == 0 {
            ctx.report(&row).unwrap();
        }
    }
    30
}

async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
}

#[test]
fn progress_and_reports_arrive_as_streams_that_end_with_the_job() {
    common::no_leaks(|| {
        let pool = pool(2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut handle = pool.spawn(progress_rows).unwrap();
            let mut seen: Vec<(u64, Instant)> = Vec::new();
            let mut progress = handle.progress_stream();
            while let Some(p) = next(&mut progress).await {
                if let Some((done, total)) = p.reported {
                    assert_eq!(total, 30);
                    seen.push((done, Instant::now()));
                }
            }
            assert!(seen.len() >= 2, "{seen:?}");
            assert!(
                seen.windows(2).all(|w| w[0].0 <= w[1].0),
                "in order: {seen:?}"
            );
            // At most one snapshot per 10 ms while it runs; the final one comes at the end.
            let running = &seen[..seen.len() - 1];
            assert!(
                running
                    .windows(2)
                    .all(|w| w[1].1 - w[0].1 >= Duration::from_millis(9)),
                "at most one per 10 ms"
            );
            assert_eq!(
                seen.last().unwrap().0,
                30,
                "the last snapshot is the final one"
            );
            assert_eq!((&mut handle).await.unwrap(), 30);

            let mut handle = pool.spawn(progress_rows).unwrap();
            let mut got = Vec::new();
            let mut reports = handle.reports::<u64>();
            while let Some(r) = next(&mut reports).await {
                got.push(r);
            }
            assert_eq!(got, vec![10, 20, 30]);
            assert_eq!(handle.await.unwrap(), 30);
        });
    });
}
