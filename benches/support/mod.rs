//! Helpers the benchmarks share (each bench includes this module with `#[path]`, and
//! uses what it needs).
#![allow(dead_code)]

mod criterion_dir;

use std::time::Instant;

#[allow(unused_imports)] // not every bench saves results
pub use criterion_dir::criterion_dir;

/// Whether `PROCYON_BENCH_QUICK` asks for the short, CI-sized runs.
pub fn quick() -> bool {
    std::env::var_os("PROCYON_BENCH_QUICK").is_some()
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
