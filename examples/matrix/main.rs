//! W2 matmul (docs/WORKLOADS.md) on a procyon pool: `C = A x B`, f64, row-major, i-k-j loop
//! order; A and B are read-only shared arrays, C a shared output, and a task is a block
//! of rows of C (see `blocks.rs`).
//!
//! ```text
//! cargo run --release --example matrix                  # W2: n = 1024
//! cargo run --release --example matrix -- --compare     # and check against the sequential loop
//! cargo run --release --example matrix -- --n 512 --workers 1
//! ```

mod blocks;
mod kernel;

use std::process::ExitCode;
use std::time::Instant;

use clap::builder::TypedValueParser;
use clap::Parser;

use kernel::{W2_CHECKSUM, W2_N};

/// W2 matrix product on a pool of worker processes.
#[derive(Parser, Debug)]
#[command(long_about = None)]
struct Args {
    /// Matrix size (n x n).
    #[arg(long, default_value_t = W2_N, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    n: usize,
    /// Worker processes (one per CPU by default).
    #[arg(long, default_value_t = num_cpus::get())]
    workers: usize,
    /// Also run the sequential loop, compare C, and print the speedup.
    #[arg(long)]
    compare: bool,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let n = args.n;
    let pool = blocks::pool(args.workers, n)?;
    let (a, b) = blocks::inputs(&pool, n)?;
    let mut c = pool.array_zeroed::<f64>(n * n)?;
    println!(
        "matmul n = {n}, {} workers, {} tasks of {} rows",
        args.workers,
        blocks::tasks(n),
        blocks::ROWS_PER_TASK
    );

    let start = Instant::now();
    blocks::multiply(&pool, n, &a, &b, &mut c)?;
    let parallel = start.elapsed().as_secs_f64();
    let checksum = format!("{:.6}", kernel::checksum(&c));
    print!("checksum {checksum}");
    if n == W2_N {
        if checksum != W2_CHECKSUM {
            return Err(
                format!("checksum {checksum} differs from the W2 reference {W2_CHECKSUM}").into(),
            );
        }
        print!(" (the W2 reference)");
    }
    println!();
    let flops = 2.0 * (n as f64).powi(3);
    println!(
        "procyon: {parallel:.3} s wall, {:.2} GFLOP/s",
        flops / parallel / 1e9
    );

    if args.compare {
        let mut seq = vec![0.0f64; n * n];
        let start = Instant::now();
        kernel::sequential(n, &a, &b, &mut seq);
        let sequential = start.elapsed().as_secs_f64();
        let diff = seq
            .iter()
            .zip(c.iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        println!(
            "sequential: {sequential:.3} s, {:.2} GFLOP/s; speedup {:.2}x on {} workers; max |C - C_seq| = {diff:e}",
            flops / sequential / 1e9,
            sequential / parallel,
            args.workers
        );
        if diff != 0.0 {
            return Err("the same kernel in the same order must give the same C".into());
        }
    }
    Ok(())
}
