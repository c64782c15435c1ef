//! The W1 kernel (docs/WORKLOADS.md), free of any parallel machinery, so that the example,
//! the sequential baseline and every benchmark run the very same code.

use serde::{Deserialize, Serialize};

/// The W1 checksum: the sum of all iteration counts of the 2048 x 2048 image.
pub const W1_CHECKSUM: u64 = 1_898_038_182;

/// The image to compute: its size and the iteration bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub max_iter: u32,
}

impl Frame {
    /// W1: 2048 x 2048, max_iter 2000.
    pub const W1: Frame = Frame {
        width: 2048,
        height: 2048,
        max_iter: 2000,
    };

    /// Pixels in the image.
    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }
}

/// The iteration count of pixel `(px, py)`: `z = z*z + c` from `z = 0` while `|z|^2 <= 4`
/// and fewer than `max_iter` steps, with `c = (-2.0 + 2.6*px/width, -1.3 + 2.6*py/height)`.
#[inline]
pub fn pixel(f: &Frame, px: u32, py: u32) -> u32 {
    let cr = -2.0 + 2.6 * f64::from(px) / f64::from(f.width);
    let ci = -1.3 + 2.6 * f64::from(py) / f64::from(f.height);
    let (mut zr, mut zi, mut n) = (0.0f64, 0.0f64, 0u32);
    while zr * zr + zi * zi <= 4.0 && n < f.max_iter {
        let t = zr * zr - zi * zi + cr;
        zi = 2.0 * zr * zi + ci;
        zr = t;
        n += 1;
    }
    n
}

/// Computes row `y` into `out` (`width` pixels) and returns the row's checksum.
///
/// Never inlined: the sequential loop, rayon and procyon then run the very same machine
/// code, whatever the call site.
#[inline(never)]
pub fn row(f: &Frame, y: u32, out: &mut [u32]) -> u64 {
    debug_assert_eq!(out.len(), f.width as usize);
    let mut sum = 0u64;
    for (x, px) in (0..f.width).zip(out.iter_mut()) {
        *px = pixel(f, x, y);
        sum += u64::from(*px);
    }
    sum
}

/// The whole image, one row after the other: the benchmarks' sequential baseline (the
/// example runs the same loop with a Ctrl-C check between rows).
#[allow(dead_code)]
pub fn sequential(f: &Frame, image: &mut [u32]) -> u64 {
    image
        .chunks_mut(f.width as usize)
        .zip(0..f.height)
        .map(|(out, y)| row(f, y, out))
        .sum()
}
