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
//! Every result is checked against the sequential one first. After the criterion groups,
//! the systems run again in interleaved blocks (one of each, round after round, medians),
//! so that load from elsewhere hits them alike; both are printed with the load average.
//! `PROCYON_BENCH_QUICK=1` takes shorter samples (same sizes).

use std::hint::black_box;
use std::time::Duration;

use bincode::Options;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use procyon::Pool;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[path = "support/mod.rs"]
mod support;
use support::{median, quick, rayon_pool, time, workers};

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

/// Runs each system once per round, `rounds` times, and prints the medians and each
/// system's speedup over the first (the sequential loop).
fn interleaved(name: &str, systems: &mut [(&str, &mut dyn FnMut())]) {
    let rounds = if quick() { 5 } else { 15 };
    let mut times = vec![Vec::new(); systems.len()];
    for _ in 0..rounds {
        for (t, (_, f)) in times.iter_mut().zip(systems.iter_mut()) {
            t.push(time(&mut **f));
        }
    }
    let medians: Vec<f64> = times.into_iter().map(median).collect();
    let line: Vec<String> = systems
        .iter()
        .zip(&medians)
        .map(|((label, _), m)| format!("{label} {:.1} ms ({:.2}x)", m * 1e3, medians[0] / m))
        .collect();
    println!(
        "{name} interleaved over {rounds} rounds (medians, speedup over sequential): {}; load {}",
        line.join(", "),
        load()
    );
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
    let words: Vec<String> = (0..5_000_000u64)
        .map(|i| word(i * 2_654_435_761 % 50_000))
        .collect();
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
    interleaved(
        "strings_5m",
        &mut [
            ("sequential", &mut || {
                black_box(seq());
            }),
            ("rayon", &mut || {
                black_box(ray());
            }),
            ("procyon (staging included)", &mut || {
                black_box(staged());
            }),
            ("procyon (built once)", &mut || {
                black_box(viewed());
            }),
        ],
    );
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
}

fn serde_path_at(c: &mut Criterion, workers: usize) {
    let pool = Pool::builder()
        .workers(workers)
        .mempool_size(512 << 20)
        .build()
        .unwrap();
    let threads = rayon_pool(workers);

    for (name, n, heavy) in [
        ("serde_trivial_1m", 1_000_000, false),
        ("serde_5us_20k", 20_000, true),
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
            "load before {name} ({:.2} us per item sequentially): {}",
            per_item * 1e6,
            load()
        );
        let mut g = c.benchmark_group(name);
        configure(&mut g);
        g.bench_function("sequential", |b| b.iter(|| black_box(seq())));
        g.bench_function(format!("rayon/{workers}"), |b| b.iter(|| black_box(ray())));
        g.bench_function(format!("procyon/{workers}"), |b| {
            b.iter(|| black_box(pro()))
        });
        g.finish();
        interleaved(
            name,
            &mut [
                ("sequential", &mut || {
                    black_box(seq());
                }),
                ("rayon", &mut || {
                    black_box(ray());
                }),
                ("procyon", &mut || {
                    black_box(pro());
                }),
            ],
        );
    }
}

fn codec(c: &mut Criterion) {
    let v = recs(1_000_000);
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
