//! W1 mandelbrot (docs/WORKLOADS.md) split over MPI ranks, each rank with its own pool of
//! worker processes; rank 0 prints the W1 checksum (1898038182).
//!
//! ```text
//! cargo build --release --features mpi --example cluster_mandelbrot
//! # one machine, 2 ranks x 1 worker:
//! mpirun -np 2 target/release/examples/cluster_mandelbrot --workers 1
//! # several machines (the same binary at the same path on each), one rank per host:
//! mpirun -np 2 --host a,b target/release/examples/cluster_mandelbrot --workers 16
//! ```
//!
//! Each image row is one item of a cluster job: the ranks map rows to their checksums
//! (the frame travels as the `map_with` state), and rank 0 gathers the row checksums in
//! order. `--gather` brings every pixel back to rank 0 instead (16 MiB for W1, one
//! message per block) and sums them there.

#[allow(dead_code)]
#[path = "mandelbrot/kernel.rs"]
mod kernel;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use procyon::cluster::Cluster;
use procyon::Pool;

use kernel::{Frame, W1_CHECKSUM};

/// W1 mandelbrot over the ranks of an MPI job.
#[derive(Parser, Debug)]
struct Args {
    /// Worker processes per rank (default: the machine's cores divided by the ranks on it).
    #[arg(long)]
    workers: Option<usize>,
    /// Image width in pixels.
    #[arg(long, default_value_t = Frame::W1.width)]
    width: u32,
    /// Image height in pixels.
    #[arg(long, default_value_t = Frame::W1.height)]
    height: u32,
    /// Iteration bound.
    #[arg(long, default_value_t = Frame::W1.max_iter)]
    max_iter: u32,
    /// Gather every pixel on rank 0 (rather than only the row checksums).
    #[arg(long)]
    gather: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cluster_mandelbrot: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> procyon::Result<ExitCode> {
    let frame = Frame {
        width: args.width,
        height: args.height,
        max_iter: args.max_iter,
    };
    let workers = args.workers.unwrap_or_else(|| {
        // Ranks on this host, as Open MPI tells it.
        let local: usize = std::env::var("OMPI_COMM_WORLD_LOCAL_SIZE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        (num_cpus() / local.max(1)).max(1)
    });
    let cluster = Cluster::builder()
        .pool(Pool::builder().workers(workers).mempool_size(64 << 20))
        .build()?;
    if !cluster.is_driver() {
        cluster.serve()?;
        return Ok(ExitCode::SUCCESS);
    }
    let t = Instant::now();
    let checksum: u64 = if args.gather {
        let rows = cluster
            .par_range(0..frame.height)
            .map_with(frame, |f: &Frame, y: u32| {
                let mut out = vec![0u32; f.width as usize];
                kernel::row(f, y, &mut out);
                out
            })
            .collect_vec()?;
        rows.iter().flatten().map(|&n| u64::from(n)).sum()
    } else {
        let sums = cluster
            .par_range(0..frame.height)
            .map_with(frame, |f: &Frame, y: u32| {
                let mut out = vec![0u32; f.width as usize];
                kernel::row(f, y, &mut out)
            })
            .collect_vec()?;
        sums.iter().sum()
    };
    let elapsed = t.elapsed();
    println!(
        "{}x{} max_iter {} on {} ranks x {} workers: checksum {} in {:.3} s",
        frame.width,
        frame.height,
        frame.max_iter,
        cluster.size(),
        workers,
        checksum,
        elapsed.as_secs_f64()
    );
    if frame == Frame::W1 && checksum != W1_CHECKSUM {
        eprintln!("cluster_mandelbrot: wrong W1 checksum (expected {W1_CHECKSUM})");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
