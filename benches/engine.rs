//! Engine benchmarks on the reference workloads (docs/WORKLOADS.md), each holding the
//! sequential loop, rayon with the same number of threads, and procyon, so ratios come
//! from one run on one machine. The figures the report uses (`scripts/bench-report.sh`)
//! come from interleaved blocks (support/blocks.rs), recorded in `results.jsonl`; the
//! criterion groups (skipped with `PROCYON_BENCH_ROUNDS_ONLY=1`) are for looking closer.
//!
//! * W3 tiny tasks: 100,000 items, `i + 1`, summed; default chunking and one item per
//!   chunk (`with_max_len(1)`), against rayon with the same settings.
//! * W4 round trip: one small job at a time, submit to result: the sum of `v + 1` over 16
//!   values on both, in blocks of 1,000 jobs per system: median and p99. (criterion also
//!   measures procyon's smallest job, a 16-element `par_map_into`.) Then again with the
//!   client, the pool's processes and rayon's threads all pinned to the client's CPU:
//!   the placement a launch may get by chance, made certain.
//! * W6 a pool as a service: 200 independent 1 ms jobs at once, and a 10 us job beside a
//!   long one, against rayon's `spawn` with a channel.
//! * Pool build (mempool mapped, scheduler and workers forked and ready) and drop.
//!
//! W5 (bandwidth) is `benches/bandwidth.rs`, W7 (nested jobs) `benches/nested.rs`.
//!
//! `PROCYON_BENCH_QUICK=1` shortens every part (CI-sized); `PROCYON_BENCH_WORKERS=1,2,4`
//! gives the worker counts (default 2); `PROCYON_BENCH_START_MODE=fork` measures pools
//! started with `StartMode::Fork`. `cargo test --benches` runs each part once, small.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;

#[path = "../tests/common/affinity.rs"]
mod affinity;
#[path = "support/mod.rs"]
mod support;
use support::{
    blocks, criterion_wanted, measuring, median, note_load, quick, rayon_pool, record_samples,
    time, workers,
};

/// The pool under test, with `workers` workers; `PROCYON_BENCH_START_MODE=fork` starts it
/// with `StartMode::Fork` instead of the default fork server.
fn pool(workers: usize) -> procyon::Pool {
    let mode = match std::env::var("PROCYON_BENCH_START_MODE").as_deref() {
        Ok("fork") => procyon::StartMode::Fork,
        _ => procyon::StartMode::ForkServer,
    };
    procyon::Pool::builder()
        .workers(workers)
        .mempool_size(1 << 30)
        .start_mode(mode)
        .build()
        .expect("pool")
}

/// Shortens a criterion group in quick mode.
fn shorten(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    if quick() {
        g.sample_size(10)
            .measurement_time(Duration::from_secs(1))
            .warm_up_time(Duration::from_millis(300));
    }
}

const W3_N: usize = 100_000;
const W3_SUM: u64 = (W3_N as u64) * (W3_N as u64 + 1) / 2;

fn w3_sequential() -> u64 {
    (0..W3_N as u64).map(|i| black_box(i) + 1).sum::<u64>()
}

/// W3 on rayon: default splitting, or one item per task (`max_len_1`).
fn w3_rayon(rp: &rayon::ThreadPool, max_len_1: bool) -> u64 {
    rp.install(|| {
        let it = (0..W3_N).into_par_iter();
        if max_len_1 {
            it.with_max_len(1)
                .map(|i| black_box(i as u64) + 1)
                .sum::<u64>()
        } else {
            it.map(|i| black_box(i as u64) + 1).sum::<u64>()
        }
    })
}

/// W3 on procyon: default chunking, or one item per chunk (`max_len_1`).
fn w3_procyon(pool: &procyon::Pool, max_len_1: bool) -> u64 {
    let it = pool.par_range(0..W3_N);
    let it = if max_len_1 { it.with_max_len(1) } else { it };
    it.map(|i: usize| black_box(i as u64) + 1).sum().unwrap()
}

fn w3(c: &mut Criterion) {
    if !criterion_wanted() {
        return;
    }
    let mut g = c.benchmark_group("w3_tiny_tasks");
    g.throughput(Throughput::Elements(W3_N as u64));
    shorten(&mut g);
    g.bench_function("sequential", |b| b.iter(|| black_box(w3_sequential())));
    for w in workers() {
        let pool = pool(w);
        let rp = rayon_pool(w);
        for (name, one) in [("default", false), ("max_len_1", true)] {
            g.bench_function(BenchmarkId::new(format!("rayon/{name}"), w), |b| {
                b.iter(|| assert_eq!(w3_rayon(&rp, one), W3_SUM))
            });
            g.bench_function(BenchmarkId::new(format!("procyon/{name}"), w), |b| {
                b.iter(|| assert_eq!(w3_procyon(&pool, one), W3_SUM))
            });
        }
    }
    g.finish();
}

/// W3 in interleaved blocks, recorded: per worker count, the two chunkings as two cases.
///
/// Fifteen rounds in quick mode too: a round of W3 costs a fraction of a second, and
/// both systems' default-chunking jobs switch between a fast mode (34-37 us) and slow
/// ones from round to round (the client's wake-up queued behind a spinning worker, or
/// rayon's two threads on one CPU), so five rounds' median ratio went from 0.77x to
/// 1.64x across three report runs of one engine (O, P, Q of 2026-12-06).
fn w3_rounds(_: &mut Criterion) {
    let (rounds, per_block) = match (measuring(), quick()) {
        (false, _) => (1, 1),
        (true, true) => (15, 40),
        (true, false) => (15, 100),
    };
    const SYSTEMS: [&str; 5] = [
        "sequential",
        "rayon",
        "procyon",
        "rayon/max_len_1",
        "procyon/max_len_1",
    ];
    note_load("w3", "before");
    for w in workers() {
        let pool = pool(w);
        let rp = rayon_pool(w);
        let samples = blocks(&SYSTEMS, rounds, per_block, |system| {
            let mut got = 0;
            let t = time(|| {
                got = match system {
                    "sequential" => w3_sequential(),
                    "rayon" => w3_rayon(&rp, false),
                    "procyon" => w3_procyon(&pool, false),
                    "rayon/max_len_1" => w3_rayon(&rp, true),
                    _ => w3_procyon(&pool, true),
                }
            });
            assert_eq!(got, W3_SUM, "{system}'s W3 sum");
            t
        });
        let items = Some(W3_N as u64);
        let mut s = samples.into_iter();
        let seq = s.next().expect("sequential samples");
        for case in ["default chunking", "one item per chunk"] {
            record_samples("w3", case, w, "sequential", seq.clone(), items, None);
            for system in ["rayon", "procyon"] {
                let v = s.next().expect("samples");
                record_samples("w3", case, w, system, v, items, None);
            }
        }
    }
    note_load("w3", "after");
}

/// W4's job for rayon: the sum of `v + 1` over 16 values.
fn w4_rayon(rp: &rayon::ThreadPool) -> u64 {
    rp.install(|| {
        (0..16u64)
            .into_par_iter()
            .map(|v| black_box(v) + 1)
            .sum::<u64>()
    })
}

/// The same job on procyon (each worker that takes part hands back a partial sum).
fn w4_procyon(pool: &procyon::Pool) -> u64 {
    pool.par_range(0..16)
        .map(|v: usize| black_box(v as u64) + 1)
        .sum()
        .unwrap()
}

fn w4(c: &mut Criterion) {
    if !criterion_wanted() {
        return;
    }
    let mut g = c.benchmark_group("w4_round_trip");
    shorten(&mut g);
    for w in workers() {
        let pool = pool(w);
        let rp = rayon_pool(w);
        let x = pool.array_from_fn(16, |i| i as u64).unwrap();
        let mut y = pool.array_zeroed::<u64>(16).unwrap();
        g.bench_function(BenchmarkId::new("rayon", w), |b| b.iter(|| w4_rayon(&rp)));
        g.bench_function(BenchmarkId::new("procyon", w), |b| {
            b.iter(|| w4_procyon(&pool))
        });
        // The smallest job procyon has: no result to hand back, output written in place.
        g.bench_function(BenchmarkId::new("procyon/par_map_into", w), |b| {
            b.iter(|| pool.par_map_into(&x, &mut y, |v: u64| v + 1).unwrap())
        });
        // Checked on a run of its own: a filter may have skipped the benchmark.
        pool.par_map_into(&x, &mut y, |v: u64| v + 1).unwrap();
        assert!(y.iter().enumerate().all(|(i, &v)| v == i as u64 + 1));
    }
    g.finish();
}

/// W4's latency distribution: one job at a time, 10,000 times (2,000 in quick mode), the
/// same job (a sum of 16) for both, in blocks of 1,000 jobs per system.
fn w4_rounds(_: &mut Criterion) {
    let (rounds, per_block) = match (measuring(), quick()) {
        (false, _) => (1, 10),
        (true, true) => (2, 1_000),
        (true, false) => (10, 1_000),
    };
    note_load("w4", "before");
    // Then the placement a launch may get by chance (a forked worker starts on its
    // parent's CPU and may stay there), made certain: the client, the pool's processes
    // and rayon's threads all on the client's CPU, while the pool still counts every CPU.
    let crowd: &[bool] = if num_cpus::get() > 1 {
        &[false, true]
    } else {
        &[false]
    };
    for (crowded, w) in crowd
        .iter()
        .flat_map(|&c| workers().into_iter().map(move |w| (c, w)))
    {
        let pool = pool(w);
        let rp = rayon_pool(w);
        let case = if crowded {
            let cpu = affinity::crowd_onto_this_cpu(&pool);
            rp.broadcast(|_| affinity::set_affinity(0, &[cpu]));
            "sum of 16, all on one CPU"
        } else {
            "sum of 16"
        };
        let samples = blocks(&["rayon", "procyon"], rounds, per_block, |system| {
            let t = Instant::now();
            let got = if system == "rayon" {
                w4_rayon(&rp)
            } else {
                w4_procyon(&pool)
            };
            let t = t.elapsed().as_secs_f64();
            assert_eq!(got, 136, "{system}'s W4 sum ({case})");
            t
        });
        for (system, s) in ["rayon", "procyon"].iter().zip(samples) {
            record_samples("w4", case, w, system, s, None, None);
        }
        if crowded {
            affinity::set_affinity(0, &affinity::all_cpus());
        }
    }
    note_load("w4", "after");
}

/// Pool build (mempool mapped, scheduler and workers forked and ready) and drop (every
/// process shut down and reaped), 50 of each (10 in quick mode) per worker count.
fn lifecycle(_: &mut Criterion) {
    let rounds = match (measuring(), quick()) {
        (false, _) => 2,
        (true, true) => 10,
        (true, false) => 50,
    };
    note_load("lifecycle", "before");
    for w in workers() {
        let (mut build, mut drop_t) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            let pool = procyon::Pool::builder()
                .workers(w)
                .mempool_size(1 << 30)
                .build()
                .unwrap();
            build.push(t.elapsed().as_secs_f64());
            // One job, so the pool is really up before it is dropped (untimed).
            let s: u64 = pool
                .par_range(0..1000)
                .map(|i: usize| i as u64)
                .sum()
                .unwrap();
            assert_eq!(s, 499_500);
            let t = Instant::now();
            drop(pool);
            drop_t.push(t.elapsed().as_secs_f64());
        }
        record_samples("lifecycle", "build", w, "procyon", build, None, None);
        record_samples("lifecycle", "drop", w, "procyon", drop_t, None, None);
    }
    note_load("lifecycle", "after");
}

fn busy(iters: u64) -> u64 {
    let mut x = black_box(1u64);
    for i in 0..iters {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    black_box(x)
}

/// Iterations of [`busy`] that take `target` on this machine (median of 5 tries).
fn calibrate(target: Duration) -> u64 {
    let probe = 1_000_000u64;
    let secs = median(
        (0..5)
            .map(|_| {
                time(|| {
                    busy(probe);
                })
            })
            .collect(),
    );
    ((probe as f64) * target.as_secs_f64() / secs).max(1.0) as u64
}

fn w6_task(iters: &u64, _: &procyon::Ctx) -> u64 {
    busy(*iters)
}

/// W6, a pool as a service: (a) 200 jobs of 1 ms submitted at once from one thread on 2
/// workers, all waited (limit: 200 x 1 ms / 2 = 100 ms), against rayon's `spawn` with a
/// channel; (b) the latency of a 10 us job submitted while a 100 ms job runs on the other
/// worker. Rounds alternate between the systems in blocks (one system's whole round, then
/// the other's), never job by job.
fn w6(_: &mut Criterion) {
    note_load("w6", "before");
    let ms = calibrate(Duration::from_millis(1));
    for w in workers() {
        w6_at(w, ms);
    }
    note_load("w6", "after");
}

/// W6 at `workers` workers, with `ms` iterations of [`busy`] per millisecond.
fn w6_at(workers: usize, ms: u64) {
    const JOBS: usize = 200;
    let pool = pool(workers);
    let rp = rayon_pool(workers);
    let (rounds, samples) = match (measuring(), quick()) {
        (false, _) => (1, 2),
        (true, true) => (5, 30),
        (true, false) => (15, 40),
    };
    let jobs = if measuring() { JOBS } else { 20 };
    let (mut p_all, mut r_all) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        p_all.push(time(|| {
            let handles: Vec<_> = (0..jobs)
                .map(|_| pool.spawn_with(ms, w6_task).unwrap())
                .collect();
            for h in handles {
                black_box(h.wait().unwrap());
            }
        }));
        r_all.push(time(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            for _ in 0..jobs {
                let tx = tx.clone();
                rp.spawn(move || tx.send(busy(ms)).unwrap());
            }
            for _ in 0..jobs {
                black_box(rx.recv().unwrap());
            }
        }));
    }
    let limit = jobs as f64 * 1e-3 / workers as f64;
    println!(
        "w6a {jobs} jobs of 1 ms on {workers} workers: limit {:.1} ms",
        limit * 1e3
    );
    record_samples(
        "w6a",
        "200 jobs of 1 ms",
        workers,
        "procyon",
        p_all,
        None,
        None,
    );
    record_samples(
        "w6a",
        "200 jobs of 1 ms",
        workers,
        "rayon",
        r_all,
        None,
        None,
    );
    // The limit, as a system of its own, so the report can give the ratio to it.
    record_samples(
        "w6a",
        "200 jobs of 1 ms",
        workers,
        "limit",
        vec![limit],
        None,
        None,
    );

    let short = (ms / 100).max(1);
    let long = ms * 100;
    let (mut p_lat, mut r_lat) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let blocker = pool.spawn_with(long, w6_task).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        p_lat.push(time(|| {
            black_box(pool.spawn_with(short, w6_task).unwrap().wait().unwrap());
        }));
        black_box(blocker.wait().unwrap());
    }
    for _ in 0..samples {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx2 = tx.clone();
        rp.spawn(move || tx2.send(busy(long)).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        r_lat.push(time(|| {
            let (stx, srx) = std::sync::mpsc::channel();
            rp.spawn(move || stx.send(busy(short)).unwrap());
            black_box(srx.recv().unwrap());
        }));
        black_box(rx.recv().unwrap());
        drop(tx);
    }
    let case = "10 us job beside a 100 ms job";
    record_samples("w6b", case, workers, "procyon", p_lat, None, None);
    record_samples("w6b", case, workers, "rayon", r_lat, None, None);
}

criterion_group!(benches, w3, w4, w3_rounds, w4_rounds, w6, lifecycle);
criterion_main!(benches);
