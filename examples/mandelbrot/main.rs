//! W1 mandelbrot (docs/WORKLOADS.md) on a procyon pool, with a live progress bar, Ctrl-C
//! cancellation, an optional colour PNG, and an optional comparison with the sequential
//! loop.
//!
//! ```text
//! cargo run --release --example mandelbrot                       # W1: 2048 x 2048, max_iter 2000
//! cargo run --release --example mandelbrot -- --compare --out mandelbrot.png
//! cargo run --release --example mandelbrot -- --width 800 --height 600 --max-iter 500 --workers 1
//! ```
//!
//! Each image row is one item of a parallel job (see `rows.rs`): the pool maps it to the
//! row's checksum and writes its pixels straight into a `SharedArray<u32>`. The
//! main thread polls the job's handle every 50 ms for the progress bar, and cancels the
//! job on Ctrl-C. The pool's `Drop` shuts down and reaps its processes on every path.

mod kernel;
mod picture;
mod rows;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use procyon::JobHandle;

use kernel::{Frame, W1_CHECKSUM};

/// How often the progress bar is refreshed (and Ctrl-C noticed).
const POLL: Duration = Duration::from_millis(50);

/// Exit status after Ctrl-C, as a shell reports a process killed by SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

/// Set by the Ctrl-C handler; read by the loops that can stop early.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// W1 mandelbrot on a pool of worker processes.
#[derive(Parser, Debug)]
#[command(long_about = None)]
struct Args {
    /// Image width in pixels.
    #[arg(long, default_value_t = Frame::W1.width, value_parser = clap::value_parser!(u32).range(1..))]
    width: u32,
    /// Image height in pixels (one task per row).
    #[arg(long, default_value_t = Frame::W1.height, value_parser = clap::value_parser!(u32).range(1..))]
    height: u32,
    /// Iteration bound per pixel.
    #[arg(long, default_value_t = Frame::W1.max_iter, value_parser = clap::value_parser!(u32).range(1..))]
    max_iter: u32,
    /// Worker processes (one per CPU by default).
    #[arg(long, default_value_t = num_cpus::get())]
    workers: usize,
    /// Write the image as a colour PNG to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Also run the sequential loop, check it gives the same image, and print the speedup.
    #[arg(long)]
    compare: bool,
}

/// How a run ended, once the pool is gone.
enum Outcome {
    Finished,
    /// Ctrl-C: what was stopped.
    Interrupted(String),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(Outcome::Finished) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted(what)) => {
            eprintln!("interrupted: {what}; the pool's processes are stopped and reaped, nothing was written");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<Outcome, Box<dyn std::error::Error>> {
    let frame = Frame {
        width: args.width,
        height: args.height,
        max_iter: args.max_iter,
    };
    let pool = rows::pool(args.workers, frame.pixels())?;
    // Installed after the pool has forked its processes: they keep the default SIGINT
    // action, and live in their own process group anyway (the terminal's Ctrl-C reaches
    // this process only, which cancels the job).
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))?;

    let image = pool.array_zeroed::<u32>(frame.pixels())?;
    println!(
        "mandelbrot {} x {}, max_iter {}, {} workers",
        frame.width, frame.height, frame.max_iter, args.workers
    );

    // Read before the run: our own workers would count in the average taken after it.
    let load_before = load_average();
    let start = Instant::now();
    let handle = rows::spawn(&pool, frame, &image)?;
    let rows_total = u64::from(frame.height);
    let (result, rows_done) = wait_with_progress(handle);
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Ok(Outcome::Interrupted(format!(
            "cancelled the render after {rows_done} of {rows_total} rows"
        )));
    }
    let checksum: u64 = result?.iter().sum();
    let parallel = start.elapsed();

    print!("checksum {checksum}");
    if frame == Frame::W1 {
        if checksum != W1_CHECKSUM {
            return Err(
                format!("checksum {checksum} differs from the W1 reference {W1_CHECKSUM}").into(),
            );
        }
        print!(" (the W1 reference)");
    }
    println!();
    let mpix = frame.pixels() as f64 / parallel.as_secs_f64() / 1e6;
    println!(
        "procyon: {:.3} s wall, {mpix:.1} Mpixel/s",
        parallel.as_secs_f64()
    );

    if args.compare {
        let mut seq_image = vec![0u32; frame.pixels()];
        let start = Instant::now();
        let mut seq_checksum = 0u64;
        for (y, out) in (0..frame.height).zip(seq_image.chunks_mut(frame.width as usize)) {
            if INTERRUPTED.load(Ordering::Relaxed) {
                return Ok(Outcome::Interrupted(format!(
                    "stopped the sequential comparison at row {y}"
                )));
            }
            seq_checksum += kernel::row(&frame, y, out);
        }
        let sequential = start.elapsed();
        if seq_checksum != checksum || seq_image[..] != image[..] {
            return Err(format!("the sequential image differs (checksum {seq_checksum})").into());
        }
        println!(
            "sequential: {:.3} s; speedup {:.2}x on {} workers (same checksum, same pixels)",
            sequential.as_secs_f64(),
            sequential.as_secs_f64() / parallel.as_secs_f64(),
            args.workers
        );
        println!("{}", load_note(load_before, num_cpus::get()));
    }
    if let Some(path) = &args.out {
        picture::write_png(path, &frame, &image)?;
        println!("wrote {}", path.display());
    }
    Ok(Outcome::Finished)
}

/// The 1-minute load average (Linux's `/proc/loadavg`), if this system has one.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The line printed under the speedup: how busy the machine was before the run, so that
/// a speedup measured beside other programs is read as such.
fn load_note(load: Option<f64>, cpus: usize) -> String {
    match load {
        None => format!("machine load: unknown (no /proc/loadavg); {cpus} CPUs"),
        Some(l) if l >= 0.5 => format!(
            "machine load before the run: {l:.2} (1-min average) on {cpus} CPUs: other programs \
             were running, so this speedup is lower than on an idle machine"
        ),
        Some(l) => {
            format!("machine load before the run: {l:.2} (1-min average) on {cpus} CPUs: idle")
        }
    }
}

/// Waits for the render job, drawing a progress bar from the handle's progress (items
/// done of items in all, refreshed every [`POLL`]);
/// on Ctrl-C, cancels the job and waits for the cancellation to land (workers still
/// inside a row are killed after the pool's grace period), so the image is no longer
/// written when this returns. Returns the job's result and the rows done.
fn wait_with_progress<R>(mut handle: JobHandle<R>) -> (procyon::Result<R>, u64) {
    let total = handle.progress().items_total;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{spinner} rows {bar:40} {pos}/{len} [{elapsed_precise}, eta {eta}] {msg}",
        )
        .expect("a valid template"),
    );
    let mut cancelled = false;
    loop {
        match handle.wait_timeout(POLL) {
            Ok(result) => {
                // Read before finishing: `finish_and_clear` moves the bar to its end.
                let done = if result.is_ok() {
                    total
                } else {
                    bar.position()
                };
                // The bar is transient: the caller prints the outcome.
                bar.finish_and_clear();
                return (result, done);
            }
            Err(running) => {
                handle = running;
                bar.set_position(handle.progress().items_done);
                if !cancelled && INTERRUPTED.load(Ordering::SeqCst) {
                    handle.cancel();
                    cancelled = true;
                    bar.set_message("cancelling");
                }
            }
        }
    }
}
