//! Pool build and drop against the client's touched heap, for each start mode.
//!
//! The client first touches a heap of 0, 256 MiB, 1 GiB (and 4 GiB with
//! `PROCYON_BENCH_BIG_HEAP=1`) bytes, then builds and drops a pool of 2 workers (and of 8
//! with `PROCYON_BENCH_WORKERS=8`) 20 times per start mode, and prints the medians. A
//! plain fork copies the client's page tables, so `StartMode::Fork` grows with the heap;
//! the fork server's start does not. The fork server's own start (the first
//! `ForkServer` build of the process) is printed apart.
//!
//! `cargo bench --bench start` (about 20 s).

use std::hint::black_box;
use std::time::Instant;

use procyon::{Pool, StartMode};

#[path = "support/mod.rs"]
mod support;
use support::{median, workers};

const ROUNDS: usize = 20;

fn build_and_drop(mode: StartMode, workers: usize) -> (f64, f64) {
    let t = Instant::now();
    let pool = Pool::builder()
        .workers(workers)
        .mempool_size(1 << 30)
        .start_mode(mode)
        .build()
        .expect("pool");
    let build = t.elapsed().as_secs_f64() * 1e3;
    // One job, so the pool is really up (and checked) before it is dropped.
    let s: u64 = pool
        .par_range(0..1000)
        .map(|i: usize| i as u64)
        .sum()
        .unwrap();
    assert_eq!(s, 499_500);
    let t = Instant::now();
    drop(pool);
    (build, t.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    let counts = workers();
    let mut heaps: Vec<usize> = vec![0, 256 << 20, 1 << 30];
    if std::env::var_os("PROCYON_BENCH_BIG_HEAP").is_some() {
        heaps.push(4 << 30);
    }
    let t = Instant::now();
    let (first, _) = build_and_drop(StartMode::ForkServer, counts[0]);
    println!(
        "first fork-server build (server started): {first:.2} ms; then {:.2} ms for its drop included",
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("workers  heap      mode         build median  drop median  (ms, {ROUNDS} rounds)");
    for heap in heaps {
        // Touched for real: one write per page, so every page is mapped.
        let mut ballast = vec![0u8; heap];
        for i in (0..heap).step_by(4096) {
            ballast[i] = 1;
        }
        black_box(&ballast);
        for (&workers, mode) in counts
            .iter()
            .flat_map(|w| [(w, StartMode::ForkServer), (w, StartMode::Fork)])
        {
            let (mut b, mut d) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let (bt, dt) = build_and_drop(mode, workers);
                b.push(bt);
                d.push(dt);
            }
            println!(
                "{workers:>7}  {:>4} MiB  {:<11}  {:>12.2}  {:>11.2}",
                heap >> 20,
                format!("{mode:?}"),
                median(b),
                median(d)
            );
        }
        drop(ballast);
    }
}
