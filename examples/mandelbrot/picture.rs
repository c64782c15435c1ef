//! Turns iteration counts into a colour PNG.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::kernel::Frame;

/// Writes `image` (iteration counts, row-major) as an 8-bit RGB PNG.
///
/// # Errors
/// If the file cannot be created or written.
pub fn write_png(
    path: &Path,
    frame: &Frame,
    image: &[u32],
) -> Result<(), Box<dyn std::error::Error>> {
    encode_png(BufWriter::new(File::create(path)?), frame, image)?;
    Ok(())
}

/// Encodes `image` (iteration counts, row-major) as an 8-bit RGB PNG into `out` (the
/// server example encodes into memory, in the worker that rendered the image).
///
/// # Errors
/// If `out` cannot be written, or `image` does not hold `frame.pixels()` counts.
pub fn encode_png(out: impl Write, frame: &Frame, image: &[u32]) -> Result<(), png::EncodingError> {
    let mut encoder = png::Encoder::new(out, frame.width, frame.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    let rgb: Vec<u8> = image
        .iter()
        .flat_map(|&n| colour(n, frame.max_iter))
        .collect();
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(())
}

/// Black inside the set; outside, a palette over the logarithm of the count (most
/// pixels escape within a few steps, a few take hundreds).
fn colour(n: u32, max_iter: u32) -> [u8; 3] {
    if n >= max_iter {
        return [0, 0, 0];
    }
    let t = f64::from(n + 1).ln() / f64::from(max_iter + 1).ln();
    let s = 1.0 - t;
    let channel = |v: f64| (v.clamp(0.0, 1.0) * 255.0) as u8;
    [
        channel(9.0 * s * t * t * t),
        channel(15.0 * s * s * t * t),
        channel(8.5 * s * s * s * t),
    ]
}
