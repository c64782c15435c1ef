//! The cost of an explicit process, fork point to join point, next to what it competes
//! with, in one run:
//!
//! * `process/fork_join`: `pool.fork_with(arg, f)` then `join()`, `f` returning at once
//!   (a fork of the scheduler, a record hand-off and a reap per call);
//! * `process/spawn_wait`: `pool.spawn_with(arg, f)` then `wait()`, the same function run
//!   as a job by a pooled worker (no fork);
//! * `process/thread_spawn_join`: `std::thread::spawn` then `join`, in-process.
//!
//! `PROCYON_BENCH_QUICK=1` shortens every group for CI.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use procyon::{Ctx, Pool};

fn add_one(v: &u64, _: &Ctx) -> u64 {
    v + 1
}

fn process(c: &mut Criterion) {
    let pool = Pool::builder()
        .workers(2)
        .mempool_size(64 << 20)
        .build()
        .expect("pool");
    let mut g = c.benchmark_group("process");
    if support::quick() {
        g.sample_size(10)
            .measurement_time(Duration::from_secs(1))
            .warm_up_time(Duration::from_millis(300));
    }
    g.bench_function("fork_join", |b| {
        b.iter(|| {
            let p = pool.fork_with(black_box(41u64), add_one).unwrap();
            assert_eq!(p.join().unwrap(), 42);
        })
    });
    g.bench_function("spawn_wait", |b| {
        b.iter(|| {
            let h = pool.spawn_with(black_box(41u64), add_one).unwrap();
            assert_eq!(h.wait().unwrap(), 42);
        })
    });
    g.bench_function("thread_spawn_join", |b| {
        b.iter(|| {
            let v = black_box(41u64);
            assert_eq!(std::thread::spawn(move || v + 1).join().unwrap(), 42);
        })
    });
    g.finish();
}

criterion_group!(benches, process);
criterion_main!(benches);
