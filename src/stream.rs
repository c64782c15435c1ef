//! Writing large outputs past the cache (non-temporal stores).
//!
//! `par_map` / `par_map_into` overwrite every element of their output. With ordinary
//! stores the CPU first reads each output cache line it is about to write ("read for
//! ownership"), so a memory-bound map moves three bytes for every two it needs: read the
//! input, read the old output, write the new output. Non-temporal stores write whole
//! lines without reading them and without filling the cache: on this 2-core VM, y = 2x + 1
//! over 512 MiB went from 25-28 GB/s to 34-36 GB/s (two threads, same arrays).
//!
//! The price is that the output is not in the cache afterwards, which only matters when
//! the output is small enough to have stayed there: the engine streams outputs of at
//! least [`default_threshold`] bytes (twice the last-level cache; tunable with
//! [`PoolBuilder::stream_outputs_from`](crate::PoolBuilder::stream_outputs_from)).
//!
//! Values are computed into a small aligned buffer and copied out with 16-byte streaming
//! stores (SSE2, part of every x86-64 CPU); the unaligned head and the tail use ordinary
//! stores. Other architectures, and element types whose layout does not fit the buffer,
//! take the ordinary loop.

use std::sync::OnceLock;

use bytemuck::Pod;

/// Outputs of at least this many bytes are written with streaming stores by default:
/// twice the last-level cache (as the kernel reports it), 64 MiB if unknown.
pub(crate) fn default_threshold() -> usize {
    static THRESHOLD: OnceLock<usize> = OnceLock::new();
    *THRESHOLD.get_or_init(|| 2 * last_level_cache().unwrap_or(32 << 20))
}

/// Size of the largest CPU cache of CPU 0, from sysfs.
fn last_level_cache() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|e| {
        let size = std::fs::read_to_string(e.ok()?.path().join("size")).ok()?;
        parse_cache_size(size.trim())
    })
    .max()
}

/// Parses sysfs cache sizes such as `32768K` or `1M`.
fn parse_cache_size(s: &str) -> Option<usize> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = digits.parse().ok()?;
    match unit {
        "" => Some(n),
        "K" => n.checked_mul(1 << 10),
        "M" => n.checked_mul(1 << 20),
        "G" => n.checked_mul(1 << 30),
        _ => None,
    }
}

/// `dst[i] = f(src[i])` for every `i`, with ordinary stores.
pub(crate) fn map_cached<T: Pod, U: Pod>(src: &[T], dst: &mut [U], f: &impl Fn(T) -> U) {
    for (o, &i) in dst.iter_mut().zip(src) {
        *o = f(i);
    }
}

/// `dst[i] = f(src[i])` for every `i`, writing past the cache where the layout allows.
///
/// On return (and when `f` panics) every store is globally visible in program order
/// with the caller's later stores (an `sfence` ends the streaming).
pub(crate) fn map_streaming<T: Pod, U: Pod>(src: &[T], dst: &mut [U], f: &impl Fn(T) -> U) {
    debug_assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    {
        x86::map_streaming(src, dst, f)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        map_cached(src, dst, f)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{__m128i, _mm_load_si128, _mm_sfence, _mm_stream_si128};
    use std::mem::{align_of, size_of, MaybeUninit};

    use bytemuck::Pod;

    /// Bytes of the staging buffer (in 16-byte words).
    const BUF_WORDS: usize = 64;

    /// Orders the streaming stores before anything the caller does next, also when `f`
    /// panics half way (the job then fails, but the memory is reused).
    struct Fence;
    impl Drop for Fence {
        fn drop(&mut self) {
            // SAFETY: `sfence` has no preconditions; SSE is part of x86-64.
            unsafe { _mm_sfence() };
        }
    }

    pub(super) fn map_streaming<T: Pod, U: Pod>(src: &[T], dst: &mut [U], f: &impl Fn(T) -> U) {
        let size = size_of::<U>();
        // Elements per whole number of 16-byte words, and per buffer.
        let unit = if size == 0 { 0 } else { 16 / gcd(size, 16) };
        if size == 0 || align_of::<U>() > 16 || unit * size > BUF_WORDS * 16 {
            return super::map_cached(src, dst, f);
        }
        let per_buf = (BUF_WORDS * 16 / (unit * size)) * unit;
        let n = dst.len();
        // Ordinary stores until the output is 16-byte aligned. Addresses of consecutive
        // elements repeat modulo 16 every `unit` elements, so if none of the first `unit`
        // is aligned (a 4-byte element at an odd address), none is: no streaming then.
        let addr = dst.as_ptr() as usize;
        let Some(head) = (0..unit).find(|&h| (addr + h * size) % 16 == 0) else {
            return super::map_cached(src, dst, f);
        };
        let head = head.min(n);
        super::map_cached(&src[..head], &mut dst[..head], f);
        let _fence = Fence;
        let mut buf = [MaybeUninit::<__m128i>::uninit(); BUF_WORDS];
        let mut i = head;
        while n - i >= per_buf {
            let staged = buf.as_mut_ptr().cast::<U>();
            for k in 0..per_buf {
                // SAFETY: `buf` holds `per_buf * size <= BUF_WORDS * 16` bytes and is
                // 16-byte aligned, which `U` (align <= 16) accepts; `U: Pod` has no drop.
                unsafe { staged.add(k).write(f(src[i + k])) };
            }
            let out = dst[i..].as_mut_ptr().cast::<__m128i>();
            debug_assert_eq!(out as usize % 16, 0);
            for (w, word) in buf.iter().take(per_buf * size / 16).enumerate() {
                // SAFETY: `out` is 16-byte aligned (the head made it so, and every block
                // is a whole number of words); the `per_buf * size` bytes from it are
                // `dst[i..i + per_buf]`, ours to write. The source word was written
                // above (the block is a whole number of words of initialized `U`s).
                unsafe { _mm_stream_si128(out.add(w), _mm_load_si128(word.as_ptr())) };
            }
            i += per_buf;
        }
        super::map_cached(&src[i..], &mut dst[i..], f);
    }

    fn gcd(mut a: usize, mut b: usize) -> usize {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<U: Pod + PartialEq + std::fmt::Debug>(f: impl Fn(u64) -> U, offsets: &[usize]) {
        for &len in &[0usize, 1, 2, 15, 16, 17, 100, 1000, 4099] {
            for &off in offsets {
                let src: Vec<u64> = (0..(len + off) as u64).collect();
                let mut want = vec![U::zeroed(); len + off];
                let mut got = want.clone();
                map_cached(&src[off..], &mut want[off..], &f);
                map_streaming(&src[off..], &mut got[off..], &f);
                assert_eq!(got, want, "len {len} offset {off}");
            }
        }
    }

    #[test]
    fn equals_the_plain_loop_for_every_size_and_alignment() {
        check(|x| x as u8, &[0, 1, 3, 7, 15]);
        check(|x| x as u16 ^ 0xabcd, &[0, 1, 3, 7]);
        check(|x| [x as u8; 3], &[0, 1, 2, 5]);
        check(|x| x as f32 * 0.5, &[0, 1, 2, 3]);
        check(|x| 2.0 * x as f64 + 1.0, &[0, 1]);
        check(|x| [x as u32; 3], &[0, 1, 2]);
        check(|x| [x; 2], &[0, 1]);
        check(|x| [x as u8; 96], &[0, 1]);
        check(|x| [x as u8; 2048], &[0, 1]);
        check(|x| [x; 256], &[0, 1]);
    }

    #[test]
    fn elements_that_never_align_take_the_plain_loop() {
        // 4-byte elements at an odd address: no element starts on 16 bytes.
        let len = 1000;
        let src: Vec<u64> = (0..len as u64).collect();
        let mut bytes = vec![0u8; 4 * len + 1];
        let dst: &mut [[u8; 4]] = bytemuck::cast_slice_mut(&mut bytes[1..]);
        map_streaming(&src, dst, &|x: u64| (x as u32).to_le_bytes());
        for (i, v) in dst.iter().enumerate() {
            assert_eq!(u32::from_le_bytes(*v), i as u32);
        }
    }

    #[test]
    fn sysfs_cache_sizes_parse() {
        assert_eq!(parse_cache_size("32768K"), Some(32 << 20));
        assert_eq!(parse_cache_size("1M"), Some(1 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("x"), None);
        assert!(default_threshold() >= 1 << 20);
    }
}
