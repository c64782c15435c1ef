//! Per-adapter overhead against rayon on W3-sized work (100,000 items), and `par_sort`
//! of 10 M `u64` against rayon's `par_sort_unstable`: each group holds the sequential
//! loop, rayon with N threads and procyon with N worker processes (each N of
//! `PROCYON_BENCH_WORKERS`, a list such as `1,2,4`; default 2), measured in the same run.
//!
//! * `zip`: `a.zip(b).map(x * y).sum()` over two `f64` arrays;
//! * `flat_map`: three items per input, summed (rayon: `flat_map_iter`, the form whose
//!   inner iterator is sequential, as procyon's `flat_map` is);
//! * `filter_map`: every third item kept, collected into a `Vec`;
//! * `collect_hashmap`: `(i, 2 i)` pairs collected into a `HashMap`;
//! * `par_sort_10m`: 10 M pseudo-random `u64`, `par_sort_unstable` in both (each
//!   iteration sorts a fresh copy; the copy is not timed).
//!
//! Every result is checked against the sequential one before measuring.
//! `PROCYON_BENCH_QUICK=1` takes shorter samples (same sizes). The load average is
//! printed before each group: on a busy machine, read the ratios with it.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion};
use procyon::Pool;
use rayon::prelude::*;

#[path = "support/mod.rs"]
mod support;
use support::{quick, rayon_pool, workers};

/// Items of the adapter groups (W3's size).
const N: u64 = 100_000;
/// Elements of the sort group.
const SORT_N: usize = 10_000_000;

fn configure(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, long: bool) {
    if long {
        g.sample_size(10);
    }
    if quick() {
        g.measurement_time(Duration::from_secs(if long { 3 } else { 1 }))
            .warm_up_time(Duration::from_millis(300));
    } else {
        g.measurement_time(Duration::from_secs(if long { 20 } else { 5 }));
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_else(|_| "unknown".into())
}

/// Every group at each worker count of `PROCYON_BENCH_WORKERS` (default 2).
fn adapters(c: &mut Criterion) {
    for w in workers() {
        adapters_at(c, w);
    }
}

fn adapters_at(c: &mut Criterion, workers: usize) {
    let pool = Pool::builder()
        .workers(workers)
        .mempool_size(512 << 20)
        .build()
        .expect("pool builds");
    let threads = rayon_pool(workers);
    let label = |system: &str| format!("{system}/{workers}");

    let xs: Vec<f64> = (0..N).map(|i| (i % 1000) as f64 * 0.5).collect();
    let ys: Vec<f64> = (0..N).map(|i| (i % 777) as f64 + 1.0).collect();
    let (a, b) = (
        pool.array_from_slice(&xs).unwrap(),
        pool.array_from_slice(&ys).unwrap(),
    );

    // zip
    let seq = || xs.iter().zip(&ys).map(|(x, y)| x * y).sum::<f64>();
    let ray = || threads.install(|| xs.par_iter().zip(&ys).map(|(x, y)| x * y).sum::<f64>());
    let pro = || {
        pool.par_iter(&a)
            .zip(pool.par_iter(&b))
            .map(|(x, y): (f64, f64)| x * y)
            .sum::<f64>()
            .unwrap()
    };
    let want = seq();
    assert!((ray() - want).abs() <= want * 1e-12 && (pro() - want).abs() <= want * 1e-12);
    eprintln!("load before zip: {}", load());
    let mut g = c.benchmark_group("zip");
    configure(&mut g, false);
    g.bench_function("sequential", |bn| bn.iter(|| black_box(seq())));
    g.bench_function(label("rayon"), |bn| bn.iter(|| black_box(ray())));
    g.bench_function(label("procyon"), |bn| bn.iter(|| black_box(pro())));
    g.finish();

    // flat_map
    // black_box: without it the compiler sums the three items in closed form.
    let seq = || {
        (0..N)
            .flat_map(|i| [black_box(i), i + 1, i + 2])
            .sum::<u64>()
    };
    let ray = || {
        threads.install(|| {
            (0..N)
                .into_par_iter()
                .flat_map_iter(|i| [black_box(i), i + 1, i + 2])
                .sum::<u64>()
        })
    };
    let pro = || {
        pool.par_range(0..N)
            .flat_map(|i: u64| [black_box(i), i + 1, i + 2])
            .sum::<u64>()
            .unwrap()
    };
    assert!(ray() == seq() && pro() == seq());
    eprintln!("load before flat_map: {}", load());
    let mut g = c.benchmark_group("flat_map");
    configure(&mut g, false);
    g.bench_function("sequential", |bn| bn.iter(|| black_box(seq())));
    g.bench_function(label("rayon"), |bn| bn.iter(|| black_box(ray())));
    g.bench_function(label("procyon"), |bn| bn.iter(|| black_box(pro())));
    g.finish();

    // filter_map
    let keep = |i: u64| (i % 3 == 0).then_some(i * 2);
    let seq = || (0..N).filter_map(keep).collect::<Vec<u64>>();
    let ray = || {
        threads.install(|| {
            (0..N)
                .into_par_iter()
                .filter_map(keep)
                .collect::<Vec<u64>>()
        })
    };
    let pro = || pool.par_range(0..N).filter_map(keep).collect_vec().unwrap();
    assert!(ray() == seq() && pro() == seq());
    eprintln!("load before filter_map: {}", load());
    let mut g = c.benchmark_group("filter_map");
    configure(&mut g, false);
    g.bench_function("sequential", |bn| bn.iter(|| black_box(seq())));
    g.bench_function(label("rayon"), |bn| bn.iter(|| black_box(ray())));
    g.bench_function(label("procyon"), |bn| bn.iter(|| black_box(pro())));
    g.finish();

    // collect into a HashMap
    let pair = |i: u64| (i, i * 2);
    let seq = || (0..N).map(pair).collect::<HashMap<u64, u64>>();
    let ray = || {
        threads.install(|| {
            (0..N)
                .into_par_iter()
                .map(pair)
                .collect::<HashMap<u64, u64>>()
        })
    };
    let pro = || {
        pool.par_range(0..N)
            .map(pair)
            .collect::<HashMap<u64, u64>>()
            .unwrap()
    };
    assert!(ray() == seq() && pro() == seq());
    eprintln!("load before collect_hashmap: {}", load());
    let mut g = c.benchmark_group("collect_hashmap");
    configure(&mut g, false);
    g.bench_function("sequential", |bn| bn.iter(|| black_box(seq())));
    g.bench_function(label("rayon"), |bn| bn.iter(|| black_box(ray())));
    g.bench_function(label("procyon"), |bn| bn.iter(|| black_box(pro())));
    g.finish();
    drop((a, b));

    // par_sort of 10 M u64
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let data: Vec<u64> = (0..SORT_N)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    let mut want = data.clone();
    want.sort_unstable();
    let mut shared = pool.array_from_slice(&data).unwrap();
    pool.par_sort_unstable(&mut shared).unwrap();
    assert!(shared[..] == want[..]);
    drop(shared);
    let mut v = data.clone();
    threads.install(|| v.par_sort_unstable());
    assert!(v == want);
    drop((v, want));
    eprintln!("load before par_sort_10m: {}", load());
    let mut g = c.benchmark_group("par_sort_10m");
    configure(&mut g, true);
    g.bench_function("sequential", |bn| {
        bn.iter_batched_ref(
            || data.clone(),
            |v| v.sort_unstable(),
            BatchSize::LargeInput,
        )
    });
    g.bench_function(label("rayon"), |bn| {
        bn.iter_batched_ref(
            || data.clone(),
            |v| threads.install(|| v.par_sort_unstable()),
            BatchSize::LargeInput,
        )
    });
    g.bench_function(label("procyon"), |bn| {
        bn.iter_batched_ref(
            || pool.array_from_slice(&data).unwrap(),
            |a| pool.par_sort_unstable(a).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, adapters);
criterion_main!(benches);
