//! Engine benchmarks on the reference workloads (docs/WORKLOADS.md), each group holding the
//! sequential loop, rayon with the same number of threads, and procyon, so ratios come
//! from one run on one machine.
//!
//! * W3 tiny tasks: 100,000 items, `i + 1`, summed; default chunking and one item per
//!   chunk (`with_max_len(1)`).
//! * W4 round trip: one small job at a time, submit to result: the sum of `v + 1` over 16
//!   values on both (and, for procyon alone, its smallest job, a 16-element
//!   `par_map_into`). Besides criterion's estimate, a direct loop of 10,000 jobs prints
//!   the median and p99 in microseconds.
//! * W5 bandwidth: y = 2x + 1 over 64 Mi f64 (512 MiB in, 512 MiB out); throughput is
//!   counted as input + output bytes. The arrays are allocated (and populated) once,
//!   before timing; the first run also pays each worker's page-table faults on the shared
//!   pages (printed separately as "cold"). Interleaved rounds check every run's output.
//!
//! * W6 a pool as a service: 200 independent 1 ms jobs at once, and a 10 us job beside a
//!   long one, against rayon's `spawn` with a channel.
//!
//! `PROCYON_BENCH_QUICK=1` shortens every group (CI-sized); workers default to 2;
//! `PROCYON_BENCH_START_MODE=fork` measures pools started with `StartMode::Fork`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;

#[path = "support/mod.rs"]
mod support;
use support::{median, quick, rayon_pool, time};

const WORKERS: usize = 2;

/// The pool under test; `PROCYON_BENCH_START_MODE=fork` starts it with
/// `StartMode::Fork` instead of the default fork server.
fn pool() -> procyon::Pool {
    let mode = match std::env::var("PROCYON_BENCH_START_MODE").as_deref() {
        Ok("fork") => procyon::StartMode::Fork,
        _ => procyon::StartMode::ForkServer,
    };
    procyon::Pool::builder()
        .workers(WORKERS)
        .mempool_size(4 << 30)
        .start_mode(mode)
        .build()
        .expect("pool")
}

fn w3(c: &mut Criterion) {
    const N: usize = 100_000;
    let pool = pool();
    let rp = rayon_pool(WORKERS);
    let mut g = c.benchmark_group("w3_tiny_tasks");
    g.throughput(Throughput::Elements(N as u64));
    if quick() {
        g.sample_size(10)
            .measurement_time(Duration::from_secs(1))
            .warm_up_time(Duration::from_millis(300));
    }
    let expected = (N as u64) * (N as u64 + 1) / 2;
    g.bench_function("sequential", |b| {
        b.iter(|| black_box((0..N as u64).map(|i| black_box(i) + 1).sum::<u64>()))
    });
    g.bench_function("rayon/default", |b| {
        b.iter(|| {
            rp.install(|| {
                (0..N as u64)
                    .into_par_iter()
                    .map(|i| black_box(i) + 1)
                    .sum::<u64>()
            })
        })
    });
    g.bench_function("rayon/max_len_1", |b| {
        b.iter(|| {
            rp.install(|| {
                (0..N)
                    .into_par_iter()
                    .with_max_len(1)
                    .map(|i| black_box(i as u64) + 1)
                    .sum::<u64>()
            })
        })
    });
    g.bench_function("procyon/default", |b| {
        b.iter(|| {
            let s: u64 = pool
                .par_range(0..N)
                .map(|i: usize| black_box(i as u64) + 1)
                .sum()
                .unwrap();
            assert_eq!(s, expected);
        })
    });
    g.bench_function("procyon/max_len_1", |b| {
        b.iter(|| {
            let s: u64 = pool
                .par_range(0..N)
                .with_max_len(1)
                .map(|i: usize| black_box(i as u64) + 1)
                .sum()
                .unwrap();
            assert_eq!(s, expected);
        })
    });
    g.finish();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
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
    let pool = pool();
    let rp = rayon_pool(WORKERS);
    let x = pool.array_from_fn(16, |i| i as u64).unwrap();
    let mut y = pool.array_zeroed::<u64>(16).unwrap();
    let mut g = c.benchmark_group("w4_round_trip");
    if quick() {
        g.sample_size(10)
            .measurement_time(Duration::from_secs(1))
            .warm_up_time(Duration::from_millis(300));
    }
    g.bench_function("rayon", |b| b.iter(|| w4_rayon(&rp)));
    g.bench_function("procyon", |b| b.iter(|| w4_procyon(&pool)));
    // The smallest job procyon has: no result to hand back, output written in place.
    g.bench_function("procyon/par_map_into", |b| {
        b.iter(|| pool.par_map_into(&x, &mut y, |v: u64| v + 1).unwrap())
    });
    g.finish();
    // Checked on a run of its own: a filter may have skipped the benchmark.
    pool.par_map_into(&x, &mut y, |v: u64| v + 1).unwrap();
    assert!(y.iter().enumerate().all(|(i, &v)| v == i as u64 + 1));

    // Latency distribution: one job at a time, 10,000 times (1,000 in quick mode), the
    // same job (a sum of 16) for both, in blocks of 1,000 jobs per system: alternating job
    // by job would have each system's idle threads spin on the CPUs the other needs.
    let rounds = if quick() { 1_000 } else { 10_000 };
    let mut lat = Vec::with_capacity(rounds);
    let mut lat_rayon = Vec::with_capacity(rounds);
    for _ in 0..rounds.div_ceil(1_000) {
        for _ in 0..1_000 {
            let t = Instant::now();
            assert_eq!(w4_procyon(&pool), 136);
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        for _ in 0..1_000 {
            let t = Instant::now();
            assert_eq!(w4_rayon(&rp), 136);
            lat_rayon.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    lat.sort_by(f64::total_cmp);
    lat_rayon.sort_by(f64::total_cmp);
    println!(
        "w4 latency over {rounds} jobs (sum of 16): procyon median {:.1} us p99 {:.1} us; rayon median {:.1} us p99 {:.1} us",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat_rayon, 0.5),
        percentile(&lat_rayon, 0.99)
    );
}

/// W5's kernel, `y = 2x + 1`, for every system.
fn w5_kernel(v: f64) -> f64 {
    2.0 * v + 1.0
}

const W5_CHECKSUM: f64 = 68_719_476_736.0;

fn w5_sequential(xs: &[f64], ys: &mut [f64]) {
    for (o, &i) in ys.iter_mut().zip(xs) {
        *o = w5_kernel(i);
    }
}

fn w5_rayon(rp: &rayon::ThreadPool, xs: &[f64], ys: &mut [f64]) {
    rp.install(|| {
        ys.par_iter_mut()
            .zip(xs.par_iter())
            .for_each(|(o, &i)| *o = w5_kernel(i))
    })
}

fn w5_procyon(
    pool: &procyon::Pool,
    x: &procyon::SharedArray<f64>,
    y: &mut procyon::SharedArray<f64>,
) {
    pool.par_map_into(x, y, w5_kernel).unwrap()
}

/// W5 into a fresh output each call: `par_map` allocates the output, which is dropped
/// (freed) before the next call; the mempool's cache keeps its pages populated.
fn w5_procyon_fresh(
    pool: &procyon::Pool,
    x: &procyon::SharedArray<f64>,
) -> procyon::SharedArray<f64> {
    pool.par_map(x, w5_kernel).unwrap()
}

/// W5 into a fresh `Vec` each call, the rayon way.
fn w5_rayon_collect(rp: &rayon::ThreadPool, xs: &[f64]) -> Vec<f64> {
    rp.install(|| xs.par_iter().map(|&v| w5_kernel(v)).collect())
}

/// Asserts that `out` holds W5's output, then clears it (so that a run that wrote
/// nothing cannot pass the next check).
fn w5_check(out: &mut [f64], who: &str) {
    assert_eq!(out.iter().sum::<f64>(), W5_CHECKSUM, "{who}'s W5 output");
    out.fill(0.0);
}

fn w5(c: &mut Criterion) {
    const N: usize = 64 << 20;
    let bytes = (2 * N * 8) as u64;
    let pool = pool();
    let rp = rayon_pool(WORKERS);
    let x = pool.array_from_fn(N, |i| (i % 1024) as f64).unwrap();
    let mut y = pool.array_zeroed::<f64>(N).unwrap();
    let cold = time(|| w5_procyon(&pool, &x, &mut y));
    w5_check(&mut y, "procyon's cold run");
    println!(
        "w5 cold first run (page-table faults in the workers): {:.1} GB/s",
        bytes as f64 / cold / 1e9
    );
    let xs: Vec<f64> = (0..N).map(|i| (i % 1024) as f64).collect();
    let mut ys = vec![0.0f64; N];
    let mut g = c.benchmark_group("w5_bandwidth");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    if quick() {
        g.measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
    }
    g.bench_function("sequential", |b| b.iter(|| w5_sequential(&xs, &mut ys)));
    g.bench_function("rayon", |b| b.iter(|| w5_rayon(&rp, &xs, &mut ys)));
    g.bench_function("rayon/collect", |b| {
        b.iter(|| black_box(w5_rayon_collect(&rp, &xs)))
    });
    g.bench_with_input(BenchmarkId::new("procyon", WORKERS), &(), |b, _| {
        b.iter(|| w5_procyon(&pool, &x, &mut y))
    });
    g.bench_with_input(BenchmarkId::new("procyon/par_map", WORKERS), &(), |b, _| {
        b.iter(|| black_box(w5_procyon_fresh(&pool, &x)))
    });
    g.finish();

    // The three one after the other, again and again: a burst of load from elsewhere on
    // this shared machine then hits all three alike, so the ratio is steadier than the
    // one between criterion's groups, measured seconds apart. Each run is checked (not
    // timed) before the next.
    let rounds = if quick() { 9 } else { 25 };
    let (mut seq, mut ray, mut pro) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ray_collect, mut fresh) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        seq.push(time(|| w5_sequential(&xs, &mut ys)));
        w5_check(&mut ys, "sequential");
        ray.push(time(|| w5_rayon(&rp, &xs, &mut ys)));
        w5_check(&mut ys, "rayon");
        pro.push(time(|| w5_procyon(&pool, &x, &mut y)));
        w5_check(&mut y, "procyon");
        // The fresh outputs are dropped (freed) outside the timing, as in a loop that
        // uses each result and lets it go.
        let mut out = Vec::new();
        ray_collect.push(time(|| out = w5_rayon_collect(&rp, &xs)));
        w5_check(&mut out, "rayon's collect");
        drop(out);
        let mut out = None;
        fresh.push(time(|| out = Some(w5_procyon_fresh(&pool, &x))));
        w5_check(&mut out.expect("timed above"), "procyon's par_map");
    }
    let gbs = |v: Vec<f64>| bytes as f64 / median(v) / 1e9;
    let (s, r, p) = (gbs(seq), gbs(ray), gbs(pro));
    let (rc, pf) = (gbs(ray_collect), gbs(fresh));
    println!(
        "w5 interleaved over {rounds} rounds (medians): sequential {s:.1} GB/s, rayon {r:.1} GB/s, \
         procyon {p:.1} GB/s; procyon / rayon = {:.3}",
        p / r
    );
    println!(
        "w5 fresh outputs, same rounds (medians): rayon collect {rc:.1} GB/s, procyon par_map \
         {pf:.1} GB/s; par_map / par_map_into = {:.3}, par_map / rayon collect = {:.3}",
        pf / p,
        pf / rc
    );
}

/// Pool build (mempool mapped, scheduler and 2 workers forked and ready) and drop (every
/// process shut down and reaped), as medians of 50 each.
fn lifecycle(_: &mut Criterion) {
    let rounds = if quick() { 10 } else { 50 };
    let (mut build, mut drop_t) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let pool = procyon::Pool::builder()
            .workers(WORKERS)
            .mempool_size(1 << 30)
            .build()
            .unwrap();
        build.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        drop(pool);
        drop_t.push(t.elapsed().as_secs_f64() * 1e3);
    }
    build.sort_by(f64::total_cmp);
    drop_t.sort_by(f64::total_cmp);
    println!(
        "pool lifecycle over {rounds} rounds: build {:.2} ms median ({:.2} ms p90), drop {:.2} ms median ({:.2} ms p90)",
        percentile(&build, 0.5),
        percentile(&build, 0.9),
        percentile(&drop_t, 0.5),
        percentile(&drop_t, 0.9)
    );
}

/// A fixed busy loop of `iters` steps (calibrated once to take about 1 ms), the same
/// code in both systems, never a sleep.
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
    const JOBS: usize = 200;
    let pool = pool();
    let rp = rayon_pool(WORKERS);
    let ms = calibrate(Duration::from_millis(1));
    let rounds = if quick() { 5 } else { 15 };
    let (mut p_all, mut r_all) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        p_all.push(time(|| {
            let handles: Vec<_> = (0..JOBS)
                .map(|_| pool.spawn_with(ms, w6_task).unwrap())
                .collect();
            for h in handles {
                black_box(h.wait().unwrap());
            }
        }));
        r_all.push(time(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            for _ in 0..JOBS {
                let tx = tx.clone();
                rp.spawn(move || tx.send(busy(ms)).unwrap());
            }
            for _ in 0..JOBS {
                black_box(rx.recv().unwrap());
            }
        }));
    }
    let (p, r) = (median(p_all) * 1e3, median(r_all) * 1e3);
    println!(
        "w6a {JOBS} jobs of 1 ms on {WORKERS} workers, medians of {rounds}: procyon {p:.1} ms, \
         rayon spawn+channel {r:.1} ms, limit {:.1} ms; procyon/limit {:.2}, procyon/rayon {:.2}",
        JOBS as f64 / WORKERS as f64,
        p / (JOBS as f64 / WORKERS as f64),
        p / r
    );

    let short = (ms / 100).max(1);
    let long = ms * 100;
    let samples = if quick() { 10 } else { 40 };
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
    println!(
        "w6b a 10 us job beside a running 100 ms job, medians of {samples}: procyon {:.1} us, rayon {:.1} us",
        median(p_lat) * 1e6,
        median(r_lat) * 1e6
    );
}

criterion_group!(benches, w3, w4, w5, w6, lifecycle);
criterion_main!(benches);
