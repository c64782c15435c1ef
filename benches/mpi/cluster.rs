//! Cluster benchmark (feature `mpi`), run under mpirun: W1 on the cluster against rank
//! 0's local pool, rayon and the sequential loop, and the fixed cost of a cluster job
//! against a local one. Criterion cannot drive several ranks, so this is a plain binary
//! (an example target); `scripts/cluster_bench.sh` runs it with 2 ranks x 1 worker and
//! 1 rank x 2 workers, alternately.
//!
//! ```text
//! cargo build --release --features mpi --example cluster_bench
//! mpirun -np 2 target/release/examples/cluster_bench --workers 1
//! ```
//!
//! Systems are measured interleaved in blocks (one W1 run of each, round after round;
//! 50 tiny jobs of each, block after block), and medians are printed. With
//! `PROCYON_BENCH_QUICK=1`: fewer rounds and a smaller image.

#[allow(dead_code)]
#[path = "../../examples/mandelbrot/kernel.rs"]
mod kernel;

use std::time::{Duration, Instant};

use clap::Parser;
use procyon::cluster::Cluster;
use procyon::Pool;
use rayon::prelude::*;

use kernel::Frame;

/// The cluster benchmark.
#[derive(Parser, Debug)]
struct Args {
    /// Worker processes per rank.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// W1 rounds (each runs every system once).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn row_sum(f: &Frame, y: u32) -> u64 {
    let mut out = vec![0u32; f.width as usize];
    kernel::row(f, y, &mut out)
}

fn main() -> procyon::Result<()> {
    let args = Args::parse();
    let quick = std::env::var_os("PROCYON_BENCH_QUICK").is_some();
    let frame = if quick {
        Frame {
            width: 512,
            height: 512,
            max_iter: 500,
        }
    } else {
        Frame::W1
    };
    let rounds = if quick { 2 } else { args.rounds };
    let cluster = Cluster::builder()
        .pool(Pool::builder().workers(args.workers).mempool_size(64 << 20))
        .build()?;
    if !cluster.is_driver() {
        return cluster.serve();
    }
    let ranks = cluster.size();
    let w = args.workers;
    let pool = cluster.pool();
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(ranks as usize * w)
        .build()
        .expect("rayon pool");
    let expect: u64 = (0..frame.height).map(|y| row_sum(&frame, y)).sum();

    let mut t_cluster = Vec::new();
    let mut t_local = Vec::new();
    let mut t_rayon = Vec::new();
    let mut t_seq = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let s: u64 = cluster
            .par_range(0..frame.height)
            .map_with(frame, |f: &Frame, y: u32| row_sum(f, y))
            .sum()?;
        t_cluster.push(t.elapsed());
        assert_eq!(s, expect);

        let t = Instant::now();
        let s: u64 = pool
            .par_range(0..frame.height)
            .map_with(frame, |f: &Frame, y: u32| row_sum(f, y))
            .sum()?;
        t_local.push(t.elapsed());
        assert_eq!(s, expect);

        let t = Instant::now();
        let s: u64 = rayon_pool.install(|| {
            (0..frame.height)
                .into_par_iter()
                .map(|y| row_sum(&frame, y))
                .sum()
        });
        t_rayon.push(t.elapsed());
        assert_eq!(s, expect);

        let t = Instant::now();
        let s: u64 = (0..frame.height).map(|y| row_sum(&frame, y)).sum();
        t_seq.push(t.elapsed());
        assert_eq!(s, expect);
    }
    println!(
        "W1 {}x{} max_iter {}, {ranks} ranks x {w} workers, median of {rounds}: \
         cluster {:.1} ms | rank-0 local pool ({w} workers) {:.1} ms | rayon ({} threads) {:.1} ms | sequential {:.1} ms",
        frame.width,
        frame.height,
        frame.max_iter,
        ms(median(t_cluster)),
        ms(median(t_local)),
        ranks as usize * w,
        ms(median(t_rayon)),
        ms(median(t_seq)),
    );

    // Fixed cost: a job of one item per rank (every rank gets a block), against a local
    // job of as many items.
    let n = 2 * ranks as u64;
    let (blocks, per_block) = if quick { (2, 20) } else { (6, 50) };
    let mut c = Vec::new();
    let mut l = Vec::new();
    for _ in 0..blocks {
        for _ in 0..per_block {
            let t = Instant::now();
            let s: u64 = cluster.par_range(0..n).sum()?;
            c.push(t.elapsed());
            assert_eq!(s, n * (n - 1) / 2);
        }
        for _ in 0..per_block {
            let t = Instant::now();
            let s: u64 = pool.par_range(0..n).sum()?;
            l.push(t.elapsed());
            assert_eq!(s, n * (n - 1) / 2);
        }
    }
    println!(
        "tiny job ({n} items), median of {}: cluster {:.0} us | local pool {:.0} us",
        c.len(),
        us(median(c)),
        us(median(l)),
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
