//! Control-path figures for issue "nested jobs, cancellation, progress":
//!
//! * cancel latency, from `cancel()` to `Err(Cancelled)` returned, for a cooperative
//!   task (checks `ctx.is_cancelled()`) and for a task that never checks (killed after
//!   the grace period), median of 20 each, and how long until the pool is back at full
//!   strength;
//! * progress overhead: W1 mandelbrot rows with and without an `on_progress` callback,
//!   criterion medians in the same run.
//!
//! `PROCYON_BENCH_QUICK=1` uses a smaller image for the progress comparison.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use procyon::{Ctx, Error, Pool};

#[path = "support/mod.rs"]
mod support;
use support::{median, quick};

const GRACE: Duration = Duration::from_millis(50);

fn cooperative(ctx: &Ctx) -> u64 {
    let mut n = 0u64;
    while !ctx.is_cancelled() {
        n = std::hint::black_box(n + 1);
    }
    n
}

fn never_checks(_: usize) {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Whether every worker in `before` has been replaced by a live process.
fn replaced(pool: &Pool, before: &[i32]) -> bool {
    let (_, now) = pool.pids();
    now.iter()
        .zip(before)
        .all(|(&p, &old)| p > 0 && p != old && std::path::Path::new(&format!("/proc/{p}")).exists())
}

fn pid_after_1ms(_: usize) -> u32 {
    std::thread::sleep(Duration::from_millis(1));
    std::process::id()
}

/// Whether a job of one 1 ms item per worker ran on as many distinct workers.
fn serves_on_every_worker(pool: &Pool) -> bool {
    let mut pids = pool
        .par_range(0..pool.workers())
        .with_max_len(1)
        .map(pid_after_1ms)
        .collect_vec()
        .unwrap();
    pids.sort_unstable();
    pids.dedup();
    pids.len() == pool.workers()
}

fn cancel_latency(_: &mut Criterion) {
    let pool = Pool::builder()
        .workers(2)
        .mempool_size(64 << 20)
        .cancel_grace(GRACE)
        .build()
        .unwrap();
    let mut coop = Vec::new();
    let mut forced = Vec::new();
    let (mut replacement, mut serving) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let h = pool.spawn(cooperative).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        h.cancel();
        assert!(matches!(h.wait(), Err(Error::Cancelled)));
        coop.push(t.elapsed().as_secs_f64() * 1e3);

        let (_, before) = pool.pids();
        let h = pool
            .par_range(0..2)
            .with_max_len(1)
            .spawn_for_each(never_checks)
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        h.cancel();
        assert!(matches!(h.wait(), Err(Error::Cancelled)));
        forced.push(t.elapsed().as_secs_f64() * 1e3);
        // Both workers were killed; how long until their replacements exist, and until
        // a job runs on every worker again (that job's 1 ms tasks included).
        let t = Instant::now();
        while !replaced(&pool, &before) {
            std::thread::yield_now();
        }
        replacement.push(t.elapsed().as_secs_f64() * 1e3);
        while !serves_on_every_worker(&pool) {}
        serving.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "cancel latency (median of 20): cooperative {:.2} ms; never-checking {:.2} ms with a {} ms \
         grace; killed workers replaced {:.2} ms later, a job (1 ms tasks) served by every \
         worker {:.2} ms later",
        median(coop),
        median(forced),
        GRACE.as_millis(),
        median(replacement),
        median(serving)
    );
}

/// The W1 kernel, as the example and the workloads bench run it (only `pixel` is used
/// here: rows are summed, not stored).
#[allow(dead_code)]
#[path = "../examples/mandelbrot/kernel.rs"]
mod kernel;

use kernel::Frame;

/// Checksum of row `y`.
fn row(f: &Frame, y: u32) -> u64 {
    (0..f.width)
        .map(|x| u64::from(kernel::pixel(f, x, y)))
        .sum()
}

fn progress_overhead(c: &mut Criterion) {
    let frame = if quick() {
        Frame {
            width: 512,
            height: 512,
            max_iter: 500,
        }
    } else {
        Frame::W1
    };
    let pool = Pool::builder()
        .workers(2)
        .mempool_size(64 << 20)
        .build()
        .unwrap();
    let rows = pool
        .array_from_fn(frame.height as usize, |y| y as u32)
        .unwrap();
    let mut g = c.benchmark_group("progress_overhead_w1");
    g.sample_size(10);
    if quick() {
        g.measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
    }
    g.bench_function("without_progress", |b| {
        b.iter(|| {
            pool.par_iter(&rows)
                .with_max_len(4)
                .map_with(frame, |f: &Frame, y: u32| row(f, y))
                .sum::<u64>()
                .unwrap()
        })
    });
    g.bench_function("with_progress", |b| {
        b.iter(|| {
            pool.par_iter(&rows)
                .with_max_len(4)
                .on_progress(|p| {
                    std::hint::black_box(p);
                })
                .map_with(frame, |f: &Frame, y: u32| row(f, y))
                .sum::<u64>()
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, cancel_latency, progress_overhead);
criterion_main!(benches);
