//! Helpers the benchmarks share (each bench includes this module with `#[path]`, and
//! uses what it needs).
#![allow(dead_code)]

mod blocks;
mod criterion_dir;
pub mod results;

use std::time::Instant;

#[allow(unused_imports)] // not every bench measures in blocks
pub use blocks::{blocks, blocks_lasting, percentile, record_samples, Samples};
#[allow(unused_imports)] // not every bench saves results
pub use criterion_dir::criterion_dir;

/// Whether `PROCYON_BENCH_QUICK` asks for the short, CI-sized runs.
pub fn quick() -> bool {
    std::env::var_os("PROCYON_BENCH_QUICK").is_some()
}

/// Whether this is `cargo bench` rather than `cargo test --benches`, which runs each
/// benchmark once, as a test (at the quick sizes or smaller, and one round).
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Whether to run the criterion groups: `PROCYON_BENCH_ROUNDS_ONLY=1` (what
/// `scripts/bench-report.sh` sets) skips them and runs only the interleaved block rounds
/// that the report is made from.
pub fn criterion_wanted() -> bool {
    std::env::var_os("PROCYON_BENCH_ROUNDS_ONLY").is_none()
}

/// The worker counts to measure: `PROCYON_BENCH_WORKERS`, a comma-separated list
/// (`1,2,4`), 2 when unset. Counts above the machine's cores are measured too
/// (oversubscribed; the report says so).
///
/// # Panics
/// On a list that does not parse, or a count of 0: a bench asked for the wrong thing
/// should stop at once, not measure something else.
pub fn workers() -> Vec<usize> {
    match std::env::var("PROCYON_BENCH_WORKERS") {
        Ok(list) => parse_workers(&list).unwrap_or_else(|e| panic!("PROCYON_BENCH_WORKERS: {e}")),
        Err(_) => vec![2],
    }
}

/// `"1,2,4"` as `[1, 2, 4]`: positive counts, in the order given, no repeats.
pub fn parse_workers(list: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<usize>() {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "{part:?} is not a positive worker count (expected e.g. 1,2,4)"
                ))
            }
            Ok(n) if !out.contains(&n) => out.push(n),
            Ok(_) => {}
        }
    }
    if out.is_empty() {
        return Err("empty list (expected e.g. 1,2,4)".into());
    }
    Ok(out)
}

/// A rayon pool of `threads` threads, to compare with a procyon pool of as many workers.
pub fn rayon_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool")
}

/// Seconds taken by `f`.
pub fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// The median of `v` (the upper one for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints the load average and records it in the results (`bench`, `when`: "before" or
/// "after"), so that a run says how busy the machine was.
pub fn note_load(bench: &str, when: &str) {
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load = load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!("load average {when} {bench}: {load}");
        if measuring() {
            results::write(&results::Line::Load {
                bench: bench.into(),
                when: when.into(),
                loadavg: load,
            });
        }
    }
}
