//! Variable-size items (issue 14): the shared columnar layout and the serde path, each
//! against the sequential loop (and rayon where it applies) in the same run, with N
//! workers / threads for each N of `PROCYON_BENCH_WORKERS` (a list such as `1,2,4`;
//! default 2).
//!
//! * `strings_5m`: the length in characters of 5 M short words, summed: through a
//!   `SharedStrings` built from the `Vec<String>` in every iteration (the staging copy is
//!   timed), through one built once (`procyon_view`), rayon over the `Vec`, and the
//!   sequential loop;
//! * `serde_trivial_1m`: 1 M small records (a number, a short string, a few numbers)
//!   through `par_iter_vec` (encoding timed), keeping a cheap function of each;
//! * `serde_5us_20k`: 20,000 records, each costing about 5 us of work;
//! * `codec_1m`: the encoding and decoding of the serde path's records, bincode with
//!   variable-length integers (the one used) against fixed-length ones.
//!
//! Every result is checked against the sequential one first. After the criterion groups
//! (skipped with `PROCYON_BENCH_ROUNDS_ONLY=1`, as `scripts/bench-report.sh` sets), the
//! systems run again in interleaved blocks (support/blocks.rs: a block of each, the order
//! rotating round after round, every result checked), recorded in `results.jsonl` as
//! bench `columnar` for the report; the codec group is criterion's only.
//! `PROCYON_BENCH_QUICK=1` takes shorter samples and fewer rounds (same sizes);
//! `cargo test --benches` runs everything once on a hundredth or fiftieth of the items.

use std::hint::black_box;
use std::time::Duration;

use bincode::Options;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use procyon::Pool;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[path = "support/mod.rs"]
mod support;
use support::{
    blocks, criterion_wanted, measuring, median, note_load, quick, rayon_pool, record_samples,
    time, workers,
};

fn configure(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(10);
    if quick() {
        g.measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(300));
    } else {
        g.measurement_time(Duration::from_secs(10));
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_else(|_| "unknown".into())
        .trim()
        .to_string()
}

/// `n` as the case names write it: "5 M", or the count itself.
fn count_label(n: u64) -> String {
    if n % 1_000_000 == 0 {
        format!("{} M", n / 1_000_000)
    } else {
        n.to_string()
    }
}

/// Rounds and iterations per block of the recorded part: `per_block` (at full size) in
/// quick mode, more of both in full mode, one of each under `cargo test --benches`.
fn rounds(per_block: usize) -> (usize, usize) {
    match (measuring(), quick()) {
        (false, _) => (1, 1),
        (true, true) => (7, per_block),
        (true, false) => (15, 2 * per_block),
    }
}

/// Word `k` of W8's vocabulary, with a multi-byte letter in one word of 8.
fn word(k: u64) -> String {
    let mut s = if k % 8 == 0 {
        "é".to_string()
    } else {
        "w".to_string()
    };
    let mut k = k;
    loop {
        s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(k % 36) as usize] as char);
        k /= 36;
        if k == 0 {
            return s;
        }
    }
}

fn strings(c: &mut Criterion) {
    note_load("columnar", "before");
    for w in workers() {
        strings_at(c, w);
    }
}

fn strings_at(c: &mut Criterion, workers: usize) {
    let pool = Pool::builder()
        .workers(workers)
        .mempool_size(512 << 20)
        .build()
        .unwrap();
    let threads = rayon_pool(workers);
    // Issue 14's 5 M strings when measuring; fewer under `cargo test --benches`.
    let n: u64 = if measuring() { 5_000_000 } else { 100_000 };
    let words: Vec<String> = (0..n).map(|i| word(i * 2_654_435_761 % 50_000)).collect();
    let chars = |w: &str| w.chars().count();
    let view = pool.strings_from_slice(&words).unwrap();

    let seq = || words.iter().map(|w| chars(w)).sum::<usize>();
    let ray = || threads.install(|| words.par_iter().map(|w| chars(w)).sum::<usize>());
    let staged = || {
        let s = pool.strings_from_slice(&words).unwrap();
        pool.par_iter_strs(&s).map(chars).sum::<usize>().unwrap()
    };
    let viewed = || pool.par_iter_strs(&view).map(chars).sum::<usize>().unwrap();
    let want = seq();
    assert!(ray() == want && staged() == want && viewed() == want);

    let build: Vec<f64> = (0..5)
        .map(|_| time(|| drop(black_box(pool.strings_from_slice(&words).unwrap()))))
        .collect();
    eprintln!(
        "strings_5m: building the SharedStrings ({} bytes of words, {} of offsets) takes {:.1} ms (median of 5)",
        view.total_bytes(),
        8 * (view.len() + 1),
        median(build) * 1e3
    );
    if criterion_wanted() {
        eprintln!("load before strings_5m: {}", load());
        let mut g = c.benchmark_group("strings_5m");
        configure(&mut g);
        g.bench_function("sequential", |b| b.iter(|| black_box(seq())));
        g.bench_function(format!("rayon/{workers}"), |b| b.iter(|| black_box(ray())));
        g.bench_function(format!("procyon/{workers}"), |b| {
            b.iter(|| black_box(staged()))
        });
        g.bench_function(format!("procyon_view/{workers}"), |b| {
            b.iter(|| black_box(viewed()))
        });
        g.finish();
    }

    // The recorded part: the two procyon forms as two cases, each beside the same
    // sequential and rayon samples.
    const SYSTEMS: [&str; 4] = ["sequential", "rayon", "procyon", "procyon-view"];
    let (rounds, per_block) = rounds(3);
    let samples = blocks(&SYSTEMS, rounds, per_block, |system| {
        let mut got = 0;
        let t = time(|| {
            got = match system {
                "sequential" => seq(),
                "rayon" => ray(),
                "procyon" => staged(),
                _ => viewed(),
            }
        });
        assert_eq!(got, want, "{system}'s sum of word lengths");
        t
    });
    let label = count_label(n);
    for (case, procyon) in [
        (format!("{label} strings, built in the run"), &samples[2]),
        (format!("{label} strings, built once"), &samples[3]),
    ] {
        for (system, s) in [
            ("sequential", &samples[0]),
            ("rayon", &samples[1]),
            ("procyon", procyon),
        ] {
            record_samples("columnar", &case, workers, system, s.clone(), Some(n), None);
        }
    }
}

/// A record of the serde path.
#[derive(Clone, Serialize, Deserialize)]
struct Rec {
    id: u64,
    name: String,
    xs: Vec<u32>,
}

fn recs(n: u64) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            id: i,
            name: word(i % 50_000),
            xs: vec![i as u32; (i % 4) as usize],
        })
        .collect()
}

/// Cheap work on a record.
fn trivial(r: &Rec) -> u64 {
    r.id ^ r.name.len() as u64 ^ r.xs.len() as u64
}

/// About 5 us of work on a record (a fixed xorshift loop seeded by it).
fn costly(r: &Rec) -> u64 {
    let mut x = r.id | 1;
    for _ in 0..4_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x ^ r.name.len() as u64
}

fn serde_path(c: &mut Criterion) {
    for w in workers() {
        serde_path_at(c, w);
    }
    note_load("columnar", "after");
}

fn serde_path_at(c: &mut Criterion, workers: usize) {
    let pool = Pool::builder()
        .workers(workers)
        .mempool_size(512 << 20)
        .build()
        .unwrap();
    let threads = rayon_pool(workers);

    // Issue 14's sizes when measuring; fewer under `cargo test --benches`.
    let scale = if measuring() { 1 } else { 100 };
    for (name, n, heavy) in [
        ("serde_trivial_1m", 1_000_000 / scale, false),
        ("serde_5us_20k", 20_000 / scale, true),
    ] {
        let f: fn(&Rec) -> u64 = if heavy { costly } else { trivial };
        let v = recs(n);
        let seq = || v.iter().map(f).fold(0u64, u64::wrapping_add);
        let ray = || threads.install(|| v.par_iter().map(f).reduce(|| 0, u64::wrapping_add));
        let pro = || {
            if !heavy {
                pool.par_iter_vec(&v)
                    .map(|r: Rec| trivial(&r))
                    .reduce(|| 0, u64::wrapping_add)
            } else {
                pool.par_iter_vec(&v)
                    .map(|r: Rec| costly(&r))
                    .reduce(|| 0, u64::wrapping_add)
            }
            .unwrap()
        };
        let want = seq();
        assert!(ray() == want && pro() == want);
        let per_item = time(|| {
            black_box(seq());
        }) / n as f64;
        eprintln!(
            "{name}: {:.2} us per item sequentially; load {}",
            per_item * 1e6,
            load()
        );
        if criterion_wanted() {
            let mut g = c.benchmark_group(name);
            configure(&mut g);
            g.bench_function("sequential", |b| b.iter(|| black_box(seq())));
            g.bench_function(format!("rayon/{workers}"), |b| b.iter(|| black_box(ray())));
            g.bench_function(format!("procyon/{workers}"), |b| {
                b.iter(|| black_box(pro()))
            });
            g.finish();
        }

        const SYSTEMS: [&str; 3] = ["sequential", "rayon", "procyon"];
        let (rounds, per_block) = rounds(if heavy { 1 } else { 5 });
        let samples = blocks(&SYSTEMS, rounds, per_block, |system| {
            let mut got = 0;
            let t = time(|| {
                got = match system {
                    "sequential" => seq(),
                    "rayon" => ray(),
                    _ => pro(),
                }
            });
            assert_eq!(got, want, "{system}'s result on {name}");
            t
        });
        let case = if heavy {
            format!("serde, {n} records of >= 5 us")
        } else {
            format!("serde, {} trivial records", count_label(n))
        };
        for (system, s) in SYSTEMS.iter().zip(samples) {
            record_samples("columnar", &case, workers, system, s, Some(n), None);
        }
    }
}

fn codec(c: &mut Criterion) {
    if !criterion_wanted() {
        return;
    }
    let v = recs(if measuring() { 1_000_000 } else { 10_000 });
    fn round_trip<O: Options + Copy>(o: O, v: &[Rec]) -> usize {
        let mut buf = Vec::new();
        for r in v {
            o.serialize_into(&mut buf, r).unwrap();
        }
        let mut de = bincode::Deserializer::from_slice(&buf, o);
        let mut n = 0;
        for _ in v {
            n += Rec::deserialize(&mut de).unwrap().name.len();
        }
        n
    }
    let varint = bincode::DefaultOptions::new();
    let fixint = bincode::DefaultOptions::new().with_fixint_encoding();
    assert_eq!(round_trip(varint, &v), round_trip(fixint, &v));
    let size = |o: &dyn Fn(&Rec) -> u64| v.iter().map(o).sum::<u64>();
    eprintln!(
        "codec_1m: {} bytes with varint, {} with fixint; load {}",
        size(&|r| varint.serialized_size(r).unwrap()),
        size(&|r| fixint.serialized_size(r).unwrap()),
        load()
    );
    let mut g = c.benchmark_group("codec_1m");
    configure(&mut g);
    g.bench_function("bincode_varint", |b| {
        b.iter(|| black_box(round_trip(varint, &v)))
    });
    g.bench_function("bincode_fixint", |b| {
        b.iter(|| black_box(round_trip(fixint, &v)))
    });
    g.finish();
}

criterion_group!(benches, strings, serde_path, codec);
criterion_main!(benches);
