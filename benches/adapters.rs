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
//! Every result is checked against the sequential one before measuring. After each
//! criterion group (skipped with `PROCYON_BENCH_ROUNDS_ONLY=1`, as
//! `scripts/bench-report.sh` sets), the three systems run in interleaved blocks
//! (support/blocks.rs), every result checked, recorded in `results.jsonl` as bench
//! `adapters` for the report. `PROCYON_BENCH_QUICK=1` takes shorter samples and fewer
//! rounds (same sizes); `cargo test --benches` runs everything once, the sort on 100,000
//! items. The load average is printed before each group: on a busy machine, read the
//! ratios with it.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion};
use procyon::Pool;
use rayon::prelude::*;

#[path = "support/mod.rs"]
mod support;
use support::{
    blocks, criterion_wanted, measuring, note_load, quick, rayon_pool, record_samples, time,
    workers,
};

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
    note_load("adapters", "before");
    for w in workers() {
        adapters_at(c, w);
    }
    note_load("adapters", "after");
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
    if criterion_wanted() {
        eprintln!("load before zip: {}", load());
        let mut g = c.benchmark_group("zip");
        configure(&mut g, false);
        g.bench_function("sequential", |bn| bn.iter(|| black_box(seq())));
        g.bench_function(label("rayon"), |bn| bn.iter(|| black_box(ray())));
        g.bench_function(label("procyon"), |bn| bn.iter(|| black_box(pro())));
        g.finish();
    }
    recorded("zip", workers, 50, (&seq, &ray, &pro), |r: &f64| {
        (r - want).abs() <= want * 1e-12
    });

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
    let want = seq();
    assert!(ray() == want && pro() == want);
    if criterion_wanted() {
        eprintln!("load before flat_map: {}", load());
        let mut g = c.benchmark_group("flat_map");
        configure(&mut g, false);
        g.bench_function("sequential", |bn| bn.iter(|| black_box(seq())));
        g.bench_function(label("rayon"), |bn| bn.iter(|| black_box(ray())));
        g.bench_function(label("procyon"), |bn| bn.iter(|| black_box(pro())));
        g.finish();
    }
    recorded("flat_map", workers, 50, (&seq, &ray, &pro), |r: &u64| {
        *r == want
    });

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
    let want = seq();
    assert!(ray() == want && pro() == want);
    if criterion_wanted() {
        eprintln!("load before filter_map: {}", load());
        let mut g = c.benchmark_group("filter_map");
        configure(&mut g, false);
        g.bench_function("sequential", |bn| bn.iter(|| black_box(seq())));
        g.bench_function(label("rayon"), |bn| bn.iter(|| black_box(ray())));
        g.bench_function(label("procyon"), |bn| bn.iter(|| black_box(pro())));
        g.finish();
    }
    recorded(
        "filter_map",
        workers,
        50,
        (&seq, &ray, &pro),
        |r: &Vec<u64>| *r == want,
    );

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
    let want = seq();
    assert!(ray() == want && pro() == want);
    if criterion_wanted() {
        eprintln!("load before collect_hashmap: {}", load());
        let mut g = c.benchmark_group("collect_hashmap");
        configure(&mut g, false);
        g.bench_function("sequential", |bn| bn.iter(|| black_box(seq())));
        g.bench_function(label("rayon"), |bn| bn.iter(|| black_box(ray())));
        g.bench_function(label("procyon"), |bn| bn.iter(|| black_box(pro())));
        g.finish();
    }
    recorded(
        "collect_hashmap",
        workers,
        5,
        (&seq, &ray, &pro),
        |r: &HashMap<u64, u64>| *r == want,
    );
    drop((a, b));

    // par_sort of 10 M u64 (a hundredth under `cargo test --benches`)
    let sort_n = if measuring() { SORT_N } else { SORT_N / 100 };
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let data: Vec<u64> = (0..sort_n)
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
    drop(v);
    if criterion_wanted() {
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

    // Recorded: each iteration sorts a fresh copy (the copy, and the check against the
    // sequential sort, untimed).
    let (rounds, per_block) = rounds(2);
    let samples = blocks(&SYSTEMS, rounds, per_block, |system| {
        if system == "procyon" {
            let mut a = pool.array_from_slice(&data).unwrap();
            let t = time(|| pool.par_sort_unstable(&mut a).unwrap());
            assert!(a[..] == want[..], "procyon's sort");
            return t;
        }
        let mut v = data.clone();
        let t = if system == "rayon" {
            time(|| threads.install(|| v.par_sort_unstable()))
        } else {
            time(|| v.sort_unstable())
        };
        assert!(v == want, "{system}'s sort");
        t
    });
    let case = if sort_n % 1_000_000 == 0 {
        format!("par_sort_unstable, {} M u64", sort_n / 1_000_000)
    } else {
        format!("par_sort_unstable, {sort_n} u64")
    };
    for (system, s) in SYSTEMS.iter().zip(samples) {
        record_samples(
            "adapters",
            &case,
            workers,
            system,
            s,
            Some(sort_n as u64),
            None,
        );
    }
}

const SYSTEMS: [&str; 3] = ["sequential", "rayon", "procyon"];

/// Rounds and iterations per block of the recorded part: `per_block` in quick mode, more
/// of both in full mode, one of each under `cargo test --benches`.
fn rounds(per_block: usize) -> (usize, usize) {
    match (measuring(), quick()) {
        (false, _) => (1, 1),
        (true, true) => (7, per_block),
        (true, false) => (15, 2 * per_block),
    }
}

/// An adapter group's sequential, rayon and procyon forms.
type Three<'f, R> = (&'f dyn Fn() -> R, &'f dyn Fn() -> R, &'f dyn Fn() -> R);

/// The recorded part of an adapter group: `(sequential, rayon, procyon)` in interleaved
/// blocks (support/blocks.rs), every result checked with `ok` (untimed), recorded as bench
/// `adapters`, case `case`, with the group's `N` items.
fn recorded<R>(
    case: &str,
    workers: usize,
    per_block: usize,
    (seq, ray, pro): Three<'_, R>,
    ok: impl Fn(&R) -> bool,
) {
    let (rounds, per_block) = rounds(per_block);
    let samples = blocks(&SYSTEMS, rounds, per_block, |system| {
        let f = match system {
            "sequential" => seq,
            "rayon" => ray,
            _ => pro,
        };
        let mut got = None;
        let t = time(|| got = Some(f()));
        assert!(
            ok(got.as_ref().expect("ran")),
            "{system}'s result on {case}"
        );
        t
    });
    for (system, s) in SYSTEMS.iter().zip(samples) {
        record_samples("adapters", case, workers, system, s, Some(N), None);
    }
}

criterion_group!(benches, adapters);
criterion_main!(benches);
