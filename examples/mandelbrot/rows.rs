//! W1 on procyon: one item per image row. The pool maps row `y` to the row's checksum
//! and, on the way, writes the row's pixels straight into a shared image (no copy).
//!
//! The row function captures nothing: the frame and the image's descriptor travel as
//! the `map_with` context, decoded once per worker process.

use procyon::{ArrayDesc, JobHandle, Pool, SharedArray};

use super::kernel::{self, Frame};

/// Largest number of rows a worker takes at once: keeps the progress bar moving and the
/// last chunks short, so no worker idles at the end. A row costs from microseconds
/// (outside the set) to milliseconds (inside it); a claim costs one atomic operation.
pub const MAX_ROWS_PER_CHUNK: usize = 16;

/// What every row task needs: the frame and where the image is.
pub type RowCtx = (Frame, ArrayDesc<u32>);

/// A pool sized for an image of `pixels` pixels.
pub fn pool(workers: usize, pixels: usize) -> procyon::Result<Pool> {
    // The image plus room for the job's own blocks.
    Pool::builder()
        .workers(workers)
        .mempool_size(pixels * 4 + (64 << 20))
        .build()
}

/// The task: computes row `y` into the shared image and returns the row's checksum.
///
/// # Panics
/// If the image is gone or does not hold the row (a bug of the caller of [`spawn`]).
pub fn render_row((frame, image): &RowCtx, y: usize) -> u64 {
    let width = frame.width as usize;
    // SAFETY: `spawn`'s caller keeps the image alive, and neither reads nor writes it,
    // until the job has ended. Row `y` is item `y`, and a job runs each item once, so no
    // other reference to these pixels exists in any process while this one lives.
    let out =
        unsafe { image.chunk_mut(y * width..(y + 1) * width) }.expect("row of the shared image");
    kernel::row(frame, y as u32, out)
}

/// Starts computing `frame` into `image`; the job's result is the checksum of each row.
///
/// The image must stay alive, and the caller must not touch it, until the handle has been
/// waited for (the handle does not borrow it).
///
/// # Panics
/// If `image` does not hold `frame.pixels()` pixels.
pub fn spawn(
    pool: &Pool,
    frame: Frame,
    image: &SharedArray<u32>,
) -> procyon::Result<JobHandle<Vec<u64>>> {
    assert_eq!(
        image.len(),
        frame.pixels(),
        "image size does not match the frame"
    );
    pool.par_range(0..frame.height as usize)
        .with_max_len(MAX_ROWS_PER_CHUNK)
        .map_with((frame, image.desc()), render_row)
        .spawn_collect_vec()
}
