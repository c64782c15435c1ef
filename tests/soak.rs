//! The soak: thousands of mixed jobs (par_map, iterators, par_map_vec, par_chunks_mut,
//! nested spawns, progress and report callbacks) with random cancellations, timeouts and
//! worker deaths, then the leak checks: mempool usage back at its baseline, this
//! process's file descriptors, the scheduler's and workers' resident memory, zombies,
//! /dev/shm and /tmp.
//!
//! Runs for `PROCYON_SOAK_SECS` seconds if set, else 60 s when `CI=true`, else 10 s.
//! Prints the figures (jobs, outcomes, before/after numbers). `PROCYON_FAULT_SEED`
//! replays a run.

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tasks::{slow, spin_300ms};
use common::{answer, assert_full_strength, kill};
use procyon::{Ctx, Error, Pool};

const ANSWER: Duration = Duration::from_secs(20);

fn soak_duration() -> Duration {
    let secs = match std::env::var("PROCYON_SOAK_SECS") {
        Ok(s) => s.parse().expect("PROCYON_SOAK_SECS: a number of seconds"),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => 60,
        Err(_) => 10,
    };
    Duration::from_secs(secs)
}

use common::Rng;

fn cooperative(ctx: &Ctx) -> u64 {
    let mut n = 0u64;
    while !ctx.is_cancelled() {
        n = black_box(n + 1);
    }
    n
}

/// Nested: 3 tasks each summing a range with a job of its own. A nested failure
/// propagates (the task unwraps it), so the whole tree fails and is freed.
fn nested_sum(ctx: &Ctx, n: u64) -> u64 {
    ctx.par_range(0..3)
        .with_max_len(1)
        .map_ctx(|ctx: &Ctx, i: usize| {
            ctx.par_range(i * 300..(i + 1) * 300)
                .map(|j: usize| slow(j as u64))
                .sum::<u64>()
                .unwrap()
        })
        .sum::<u64>()
        .unwrap()
        + n
}

fn nested_task(ctx: &Ctx) -> u64 {
    nested_sum(ctx, 0)
}

fn reporting(ctx: &Ctx, i: usize) -> u64 {
    ctx.progress(i as u64 + 1, 64);
    let _ = ctx.report(&(i as u64));
    slow(i as u64)
}

/// Outcome counters, by job kind and by outcome.
#[derive(Default)]
struct Tally {
    jobs: u64,
    by_kind: BTreeMap<&'static str, u64>,
    by_outcome: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn record(&mut self, kind: &'static str, outcome: &'static str) {
        self.jobs += 1;
        *self.by_kind.entry(kind).or_default() += 1;
        *self.by_outcome.entry(outcome).or_default() += 1;
    }
}

/// The outcome name of a failed job, or a panic if the failure is not one the soak
/// injected (a worker SIGKILLed by us, a cancel, a timeout).
fn failure(e: &Error, kind: &str) -> &'static str {
    match e {
        Error::WorkerDied {
            signal: Some(libc::SIGKILL),
            ..
        } => "worker died (SIGKILL)",
        // A task that unwrapped its nested job's `WorkerDied`.
        Error::TaskPanicked { message, .. }
            if message.contains("SIGKILL") || message.contains("WorkerDied") =>
        {
            "nested worker died (SIGKILL)"
        }
        Error::Cancelled => "cancelled",
        Error::Timeout { .. } => "timed out",
        other => panic!("{kind}: unexpected failure {other:?}"),
    }
}

/// Resident memory of a process: (VmRSS, RssAnon) in kB.
fn rss(pid: i32) -> (u64, u64) {
    (
        common::status_kb(pid, "VmRSS").unwrap_or(0),
        common::status_kb(pid, "RssAnon").unwrap_or(0),
    )
}

fn max_worker_rss(pool: &Pool) -> (u64, u64) {
    pool.pids()
        .1
        .iter()
        .map(|&p| rss(p))
        .fold((0, 0), |a, b| (a.0.max(b.0), a.1.max(b.1)))
}

#[test]
fn soak() {
    common::no_leaks(|| {
        let duration = soak_duration();
        let mut rng = Rng::new("soak");
        let pool = Pool::builder()
            .workers(2)
            .mempool_size(128 << 20)
            .cancel_grace(Duration::from_millis(20))
            .build()
            .unwrap();
        let me = std::process::id() as i32;
        let (scheduler, _) = pool.pids();

        // Warm up every kind once, so that lazily made state exists before the baseline.
        let x = pool.array_from_fn(4096, |i| i as u64).unwrap();
        pool.par_map(&x, slow).unwrap();
        pool.par_map_vec(vec!["a".to_string()], |s: String| s.len())
            .unwrap();
        pool.spawn(nested_task).unwrap().wait().unwrap();
        drop(x);
        let files_before = common::shm_and_tmp();
        let fds_before = common::open_fds();
        let usage_before = pool.mempool().usage();
        let sched_before = rss(scheduler);
        let workers_before = max_worker_rss(&pool);

        let nested_expected: u64 = (0..900u64).map(slow).sum();
        let mut tally = Tally::default();
        let mut kills = 0u64;
        let start = Instant::now();
        while start.elapsed() < duration {
            let mode = rng.below(100);
            // About one job in a hundred loses a worker to SIGKILL at a random moment: a
            // longer par_map, a nested tree, or a reporting job.
            let kill_this = mode < 1;
            let kind = if kill_this {
                [0, 4, 5][rng.below(3) as usize]
            } else {
                rng.below(8)
            };
            let n = if kill_this {
                20_000
            } else {
                100 + rng.below(5000) as usize
            };
            let input = pool
                .array_from_fn(n, |i| (i as u64).wrapping_mul(2_654_435_761))
                .unwrap();
            // A worker just killed may not be replaced yet (pid 0): pick among the live ones.
            let pids: Vec<i32> = pool.pids().1.into_iter().filter(|&p| p > 0).collect();
            let killer = (kill_this && !pids.is_empty()).then(|| {
                let victim = pids[rng.below(pids.len() as u64) as usize];
                let delay =
                    Duration::from_micros(rng.below(if kind == 0 { 20_000 } else { 4_000 }));
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    kill(victim, libc::SIGKILL);
                })
            });
            if killer.is_some() {
                kills += 1;
            }
            let (name, outcome): (&'static str, &'static str) = if (1..3).contains(&mode) {
                // Cancelled (or timed out) mid-flight: tasks that ignore the flag, one that
                // checks it, and a nested tree.
                let which = rng.below(3);
                let delay = Duration::from_micros(rng.below(10_000));
                let name = ["cancel flat", "cancel cooperative", "timeout nested"][which as usize];
                let r = match which {
                    0 => {
                        let h = pool
                            .par_range(0..4)
                            .with_max_len(1)
                            .spawn_for_each(spin_300ms)
                            .unwrap();
                        std::thread::sleep(delay);
                        h.cancel();
                        answer(h, ANSWER, name)
                    }
                    1 => {
                        let h = pool.spawn(cooperative).unwrap();
                        std::thread::sleep(delay);
                        h.cancel();
                        answer(h, ANSWER, name).map(|_| ())
                    }
                    _ => {
                        let h = pool.spawn(nested_task).unwrap().timeout(delay);
                        answer(h, ANSWER, name).map(|v| assert_eq!(v, nested_expected))
                    }
                };
                (name, r.err().map_or("ok", |e| failure(&e, name)))
            } else {
                let r: procyon::Result<()> = match kind {
                    0 => pool.par_map(&input, slow).map(|y| {
                        assert!(
                            y.iter().zip(input.iter()).all(|(&a, &b)| a == slow(b)),
                            "par_map result"
                        )
                    }),
                    1 => pool
                        .par_iter(&input)
                        .map(|v: u64| v % 1000)
                        .sum::<u64>()
                        .map(|s| {
                            assert_eq!(s, input.iter().map(|v| v % 1000).sum::<u64>(), "sum");
                        }),
                    2 => pool
                        .par_iter(&input)
                        .filter(|v: &u64| v % 3 == 0)
                        .collect_vec()
                        .map(|v| {
                            assert_eq!(
                                v,
                                input
                                    .iter()
                                    .copied()
                                    .filter(|v| v % 3 == 0)
                                    .collect::<Vec<_>>(),
                                "filter"
                            );
                        }),
                    3 => {
                        let words: Vec<String> =
                            input.iter().take(200).map(|v| v.to_string()).collect();
                        let lens: Vec<usize> = words.iter().map(String::len).collect();
                        pool.par_map_vec(words, |s: String| s.len())
                            .map(|v| assert_eq!(v, lens, "par_map_vec"))
                    }
                    4 => answer(pool.spawn(nested_task).unwrap(), ANSWER, "nested").map(|v| {
                        assert_eq!(v, nested_expected, "nested");
                    }),
                    5 => {
                        let reported = Arc::new(AtomicU64::new(0));
                        let last = Arc::new(AtomicU64::new(0));
                        let (r2, l2) = (Arc::clone(&reported), Arc::clone(&last));
                        let h = pool
                            .par_range(0..64)
                            .with_max_len(4)
                            .on_report(move |_: u64| {
                                r2.fetch_add(1, Ordering::Relaxed);
                            })
                            .on_progress(move |p| {
                                let prev = l2.swap(p.items_done, Ordering::Relaxed);
                                assert!(prev <= p.items_done, "progress went back");
                            })
                            .map_ctx(reporting)
                            .spawn_collect_vec()
                            .unwrap();
                        answer(h, ANSWER, "progress").map(|v| {
                            assert_eq!(
                                v,
                                (0..64).map(slow).collect::<Vec<_>>(),
                                "progress job result"
                            );
                            assert_eq!(reported.load(Ordering::Relaxed), 64, "reports lost");
                            assert_eq!(last.load(Ordering::Relaxed), 64, "final progress");
                        })
                    }
                    6 => {
                        let mut a = pool.array_zeroed::<u32>(n).unwrap();
                        pool.par_chunks_mut(&mut a, 97, |off: usize, c: &mut [u32]| {
                            for (k, v) in c.iter_mut().enumerate() {
                                *v = (off + k) as u32 ^ 0x5a5a;
                            }
                        })
                        .map(|()| {
                            assert!(
                                a.iter().enumerate().all(|(i, &v)| v == i as u32 ^ 0x5a5a),
                                "chunks"
                            );
                        })
                    }
                    _ => {
                        let mx = pool.par_iter(&input).max();
                        let mn = pool.par_iter(&input).min();
                        mx.and_then(|mx| mn.map(|mn| (mn, mx))).map(|(mn, mx)| {
                            assert_eq!(
                                (mn, mx),
                                (input.iter().copied().min(), input.iter().copied().max()),
                                "min/max"
                            );
                        })
                    }
                };
                let name = [
                    "par_map",
                    "sum",
                    "filter",
                    "par_map_vec",
                    "nested",
                    "progress",
                    "chunks",
                    "min/max",
                ][kind as usize];
                (name, r.err().map_or("ok", |e| failure(&e, name)))
            };
            if let Some(k) = killer {
                k.join().unwrap();
                assert_full_strength(&pool, Duration::from_secs(2));
            }
            tally.record(name, outcome);
            drop(input);
            // Every job, whatever its end, gives its memory back: at once, or (a spawned
            // job whose owner stopped waiting at its timeout) as soon as the scheduler has
            // seen its workers leave.
            let settle = Instant::now() + Duration::from_secs(2);
            let mut u = pool.mempool().usage();
            while (u.in_use, u.allocations) != (usage_before.in_use, usage_before.allocations)
                && Instant::now() < settle
            {
                std::thread::sleep(Duration::from_millis(1));
                u = pool.mempool().usage();
            }
            assert_eq!(
                (u.in_use, u.allocations),
                (usage_before.in_use, usage_before.allocations),
                "job {} ({name}, {outcome}) left memory allocated",
                tally.jobs
            );
        }
        let elapsed = start.elapsed();
        assert_full_strength(&pool, Duration::from_secs(2));

        // Leak checks.
        let usage_after = pool.mempool().usage();
        let fds_after = common::open_fds();
        let sched_after = rss(scheduler);
        let workers_after = max_worker_rss(&pool);
        // The pool settles within a bounded wait: the scheduler reaps the workers it
        // killed, and a cancelled job's answer can come before the scheduler has killed
        // its uncooperative workers (after the grace period) and forked replacements.
        let deadline = Instant::now() + Duration::from_secs(2);
        let (zombies, live) = loop {
            let z: Vec<i32> = common::zombie_children(me)
                .into_iter()
                .chain(common::zombie_children(scheduler))
                .collect();
            let live = common::descendants();
            if (z.is_empty() && live.len() == 3) || Instant::now() >= deadline {
                break (z, live);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let files_after = common::shm_and_tmp();
        let new_files: Vec<_> = files_after.difference(&files_before).cloned().collect();

        eprintln!(
            "soak: {} jobs in {elapsed:?}, {kills} worker kills",
            tally.jobs
        );
        eprintln!("soak: jobs by kind {:?}", tally.by_kind);
        eprintln!("soak: outcomes {:?}", tally.by_outcome);
        eprintln!(
            "soak: mempool in_use {} -> {} bytes, allocations {} -> {}, peak {}",
            usage_before.in_use,
            usage_after.in_use,
            usage_before.allocations,
            usage_after.allocations,
            usage_after.peak
        );
        eprintln!("soak: open fds {fds_before} -> {fds_after}");
        eprintln!("soak: scheduler VmRSS/RssAnon {sched_before:?} -> {sched_after:?} kB");
        eprintln!("soak: largest worker VmRSS/RssAnon {workers_before:?} -> {workers_after:?} kB");
        eprintln!("soak: zombies {zombies:?}; processes {} (scheduler + 2 workers); new in /dev/shm,/tmp {new_files:?}", live.len());

        assert!(
            tally.jobs >= 100,
            "too few jobs to call it a soak: {}",
            tally.jobs
        );
        assert_eq!(
            (usage_after.in_use, usage_after.allocations),
            (usage_before.in_use, usage_before.allocations)
        );
        assert_eq!(fds_after, fds_before, "file descriptors leaked");
        // Anonymous memory of the long-lived scheduler, and of whichever workers are alive
        // (re-forked ones start from the scheduler's image): generous slack for allocator
        // caches, none for a leak per job.
        assert!(
            sched_after.1 <= sched_before.1 * 2 + 8 * 1024,
            "scheduler RssAnon grew {sched_before:?} -> {sched_after:?}"
        );
        assert!(
            workers_after.1 <= workers_before.1 * 2 + 32 * 1024,
            "worker RssAnon grew {workers_before:?} -> {workers_after:?}"
        );
        assert!(zombies.is_empty(), "zombie children: {zombies:?}");
        assert_eq!(live.len(), 3, "unexpected processes: {live:?}");
        assert!(
            !new_files.iter().any(|f| f.starts_with("/dev/shm")),
            "new files in /dev/shm: {new_files:?}"
        );
        assert!(
            !new_files.iter().any(|f| f.contains("procyon")),
            "new procyon files: {new_files:?}"
        );
    });
}
