//! W8 word count (../shared/WORKLOADS.md) on a procyon pool: word frequencies of a seeded
//! 50 MB text. The text is cut at line ends into blocks, copied once into the mempool as
//! a [`SharedStrings`](procyon::SharedStrings) (one `memcpy`, no encoding), and each worker
//! counts the words of every block it claims into one map of its own, keyed by `&str`s
//! of the shared text as the sequential loop's and rayon's are, and copies each distinct
//! word once when it is done (`fold_finish_reduce_unordered`); the client merges the
//! workers' maps. `--compare` runs the sequential loop and rayon (as many
//! threads as workers) on the same text, checks that all three maps are equal, and prints
//! the speedups with the machine's load average.
//!
//! ```text
//! cargo run --release --example wordcount                 # W8: 50 MB
//! cargo run --release --example wordcount -- --compare    # against sequential and rayon
//! cargo run --release --example wordcount -- --bytes 5000000 --workers 1
//! ```

mod count;
mod text;

use std::process::ExitCode;
use std::time::Instant;

use clap::builder::TypedValueParser;
use clap::Parser;
use procyon::Pool;

use count::{blocks, procyon_count, rayon_count, same_counts};

/// W8 word count on a pool of worker processes.
#[derive(Parser, Debug)]
#[command(long_about = None)]
struct Args {
    /// Size of the generated text, in bytes (W8: 50 MB).
    #[arg(long, default_value_t = 50_000_000)]
    bytes: usize,
    /// Worker processes (and rayon threads), one per CPU by default.
    #[arg(long, default_value_t = num_cpus::get(), value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    workers: usize,
    /// Blocks the text is cut into (at line ends).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    blocks: usize,
    /// Runs of each version; the fastest is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    runs: usize,
    /// Also run the sequential loop and rayon, check the counts, print the speedups.
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

/// The fastest of `runs` timed calls of `f`, with the last result.
fn best<R>(runs: usize, mut f: impl FnMut() -> R) -> (R, f64) {
    let mut fastest = f64::INFINITY;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let r = f();
        fastest = fastest.min(start.elapsed().as_secs_f64());
        last = Some(r);
    }
    (last.expect("at least one run"), fastest)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let text = text::generate(args.bytes, text::SEED);
    let blocks = blocks(&text, args.blocks);
    let pool = Pool::builder()
        .workers(args.workers)
        .mempool_size(2 * text.len() + (256 << 20))
        .build()?;
    println!(
        "wordcount: {} bytes of W8 text in {} blocks, {} workers",
        text.len(),
        blocks.len(),
        args.workers
    );

    let (result, parallel) = best(args.runs, || procyon_count(&pool, &blocks));
    let (counts, staging) = result?;
    let words: u64 = counts.values().sum();
    println!(
        "distinct words {}, words {words}, checksum {}",
        counts.len(),
        text::checksum(counts.iter().map(|(w, &c)| (&**w, c)))
    );
    println!(
        "procyon: {parallel:.3} s ({staging:.3} s of it the staging copy), {:.0} MB/s",
        text.len() as f64 / parallel / 1e6
    );

    if args.compare {
        let (seq, sequential) = best(args.runs, || text::sequential(&text));
        if !same_counts(&counts, &seq) {
            return Err("procyon's counts differ from the sequential loop's".into());
        }
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(args.workers)
            .build()?;
        let (ray, rayon) = best(args.runs, || threads.install(|| rayon_count(&blocks)));
        if !same_counts(&counts, &ray) {
            return Err("procyon's counts differ from rayon's".into());
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!(
            "sequential: {sequential:.3} s; rayon ({} threads): {rayon:.3} s; counts equal",
            args.workers
        );
        println!(
            "speedup: {:.2}x the sequential loop, {:.2}x rayon on {} workers (load average {})",
            sequential / parallel,
            rayon / parallel,
            args.workers,
            load.join(" ")
        );
    }
    Ok(())
}
