//! What a request renders, and the two ways to render it: a job of the pool (the task
//! below, run in a worker process) or rayon threads inside this process (the baseline
//! the bench compares against).
//!
//! Both render the W1 kernel row by row, count the rows done for the progress stream,
//! stop early once cancelled, and encode the PNG where they rendered it, so the
//! server's own threads only move bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use procyon::Ctx;
use serde::{Deserialize, Serialize};

use crate::kernel::{self, Frame};
use crate::{picture, rows};

/// Images up to this many pixels are rendered by the task itself, row after row; larger
/// ones are split into a nested job over their rows (see [`render`]).
pub const INLINE_PIXELS: usize = 64 * 1024;

/// How often a task whose rows run as a nested job copies their progress to its own job.
const PROGRESS_STEP: Duration = Duration::from_millis(20);

/// A deliberate failure of the task, to show that it costs the server nothing: the job
/// answers an error and the pool replaces a dead worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// The task panics: the job fails with the panic's text.
    Panic,
    /// The task aborts its process: the job fails with the worker's death, and the pool
    /// forks a new worker.
    Abort,
}

/// One request's work: the argument of the job, sent with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tile {
    pub frame: Frame,
    pub fault: Option<Fault>,
}

/// A rendered tile.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rendered {
    /// The image as an RGB PNG.
    pub png: Vec<u8>,
    /// The W1 checksum: the sum of the iteration counts.
    pub checksum: u64,
    /// The process that ran the task (a worker's pid; this process's for rayon).
    pub pid: u32,
}

/// What a task answers: the tile, or why it could not render it (the text the HTTP
/// answer carries).
pub type TaskResult = Result<Rendered, String>;

/// The pool's task: renders `tile` in this worker, reporting rows done with
/// `ctx.progress(rows, height)`.
///
/// A small image is rendered here row after row, checking for cancellation between
/// rows. A large one runs its rows as a nested job (the mandelbrot example's `rows`
/// job, one item per row), which every worker helps with, this one included while it
/// waits; a cancel of the request's job reaches the nested job too.
pub fn render(tile: &Tile, ctx: &Ctx) -> TaskResult {
    match tile.fault {
        Some(Fault::Panic) => panic!("the request asked the task to panic (fault=panic)"),
        Some(Fault::Abort) => std::process::abort(),
        None => {}
    }
    let frame = tile.frame;
    let height = u64::from(frame.height);
    if frame.pixels() <= INLINE_PIXELS {
        let mut image = vec![0u32; frame.pixels()];
        let mut checksum = 0;
        for (y, out) in (0..frame.height).zip(image.chunks_mut(frame.width as usize)) {
            if ctx.is_cancelled() {
                return Err("cancelled".into());
            }
            checksum += kernel::row(&frame, y, out);
            ctx.progress(u64::from(y) + 1, height);
        }
        finish(&frame, &image, checksum)
    } else {
        let image = ctx
            .array_zeroed::<u32>(frame.pixels())
            .map_err(|e| e.to_string())?;
        let mut rows = rows::spawn(ctx, frame, &image).map_err(|e| e.to_string())?;
        let sums = loop {
            match rows.wait_timeout(PROGRESS_STEP) {
                Ok(sums) => break sums.map_err(|e| e.to_string())?,
                Err(running) => {
                    ctx.progress(running.progress().items_done, height);
                    rows = running;
                }
            }
        };
        ctx.progress(height, height);
        // Encoded straight from the shared image, which the rows were written into.
        finish(&frame, &image, sums.iter().sum())
    }
}

/// The baseline: renders `tile` on the calling rayon pool, one row per item, counting
/// rows in `rows_done` and stopping early once `cancel` is set. Rayon cannot stop a
/// running row, nor survive a task that aborts: a `Fault::Abort` takes the whole server
/// down, which is what the pool's processes prevent.
pub fn render_rayon(tile: &Tile, rows_done: &AtomicU64, cancel: &AtomicBool) -> TaskResult {
    use rayon::prelude::*;
    match tile.fault {
        Some(Fault::Panic) => panic!("the request asked the task to panic (fault=panic)"),
        Some(Fault::Abort) => std::process::abort(),
        None => {}
    }
    let frame = tile.frame;
    let mut image = vec![0u32; frame.pixels()];
    let checksum: Option<u64> = image
        .par_chunks_mut(frame.width as usize)
        .enumerate()
        .map(|(y, out)| {
            // Relaxed: a flag and a counter, each read on its own; no data rides on them.
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            let sum = kernel::row(&frame, y as u32, out);
            rows_done.fetch_add(1, Ordering::Relaxed);
            Some(sum)
        })
        .sum();
    let checksum = checksum.ok_or("cancelled")?;
    finish(&frame, &image, checksum)
}

fn finish(frame: &Frame, image: &[u32], checksum: u64) -> TaskResult {
    let mut png = Vec::with_capacity(image.len());
    picture::encode_png(&mut png, frame, image).map_err(|e| format!("PNG encoding: {e}"))?;
    Ok(Rendered {
        png,
        checksum,
        pid: std::process::id(),
    })
}
