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
//! least [`STREAM_BYTES_PER_WORKER`] bytes per worker (a fixed size; tunable with
//! [`PoolBuilder::stream_outputs_from`](crate::PoolBuilder::stream_outputs_from)).
//!
//! A map whose element size divides a cache line (every primitive, `[f32; 4]`, ...)
//! computes each line's values straight into registers and writes them with four 16-byte
//! streaming stores ([`map_by_lines`]; SSE2 is part of every x86-64 CPU, so no runtime
//! check is needed); the elements before the first line boundary and after the last whole
//! line use ordinary stores. That is what hand-written `_mm_stream_pd` code does: W5
//! (y = 2x + 1, 512 MiB, 2 workers) went from 17-26 GB/s through the former 1 KiB staging
//! buffer to 38-40 GB/s, level with rayon plus hand-written streaming stores (see
//! BENCHMARKS.md). Other element sizes, and values pushed one at a time
//! (`collect_array`'s [`StreamWriter`]), go through a small aligned staging buffer copied
//! out with streaming stores. Both paths hint each output page two pages before the
//! stores reach it ([`Ahead`]), so that the page walk is not in the streaming stores'
//! way. Other architectures take the ordinary loop.
//!
//! Wider stores would need a runtime check and gain nothing measurable: rayon writing W5
//! with 32-byte `_mm256_stream_pd` (two per line, AVX checked at run time) ran at 40-46
//! GB/s against 41-51 GB/s with the 16-byte `_mm_stream_pd` in the same launches (512
//! MiB, 2 threads, alternated in blocks, 2 launches, 2026-12-07): the memory, not the
//! store width, sets the pace.

use std::mem::{align_of, size_of, size_of_val, MaybeUninit};

use bytemuck::Pod;

/// Output bytes per worker from which the engine streams by default: an output this
/// large per worker is far past any per-core cache share, and a few MiB keeps the choice
/// independent of the cache sizes a machine (or a VM) reports.
pub(crate) const STREAM_BYTES_PER_WORKER: usize = 4 << 20;

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
    match line_head::<U>(dst.as_ptr() as usize) {
        Some(head) => map_by_lines(src, dst, head, f),
        None => StreamWriter::new(dst).extend_mapped(src, f),
    }
}

/// Bytes of a cache line, the unit a streaming store fills in the CPU's write-combining
/// buffers (64 on every x86-64 CPU).
const LINE: usize = 64;

/// A cache line of values on the stack, which the compiler keeps in registers: the
/// values of one line are computed, then stored with four 16-byte streaming stores.
#[repr(C, align(64))]
struct Line([MaybeUninit<u8>; LINE]);

/// For `U` at address `addr`: the index of the first element that starts a cache line,
/// when elements tile lines exactly (`size_of::<U>()` divides 64, as for every primitive
/// and for `[f32; 4]`-like vectors) and streaming stores exist; `None` otherwise.
fn line_head<U>(addr: usize) -> Option<usize> {
    let size = size_of::<U>();
    if !cfg!(target_arch = "x86_64") || size == 0 || LINE % size != 0 || align_of::<U>() > LINE {
        return None;
    }
    // Consecutive elements' addresses repeat modulo 64 every 64 / size elements.
    (0..LINE / size).find(|&h| (addr + h * size) % LINE == 0)
}

/// `dst[i] = f(src[i])`: ordinary stores up to the first line boundary (`head`) and after
/// the last whole line, and each whole line in between computed into registers and
/// written with streaming stores (no staging buffer, no read of the old output).
fn map_by_lines<T: Pod, U: Pod>(src: &[T], dst: &mut [U], head: usize, f: &impl Fn(T) -> U) {
    let per_line = LINE / size_of::<U>();
    let head = head.min(dst.len());
    let (dst_head, dst_rest) = dst.split_at_mut(head);
    let (src_head, src_rest) = src.split_at(head);
    map_cached(src_head, dst_head, f);
    let whole = dst_rest.len() / per_line * per_line;
    let (dst_body, dst_tail) = dst_rest.split_at_mut(whole);
    let (src_body, src_tail) = src_rest.split_at(whole);
    let out = dst_body.as_mut_ptr();
    let ahead = Ahead::new(out.cast(), whole * size_of::<U>());
    for (l, xs) in src_body.chunks_exact(per_line).enumerate() {
        ahead.span(l * LINE, LINE);
        let mut line = Line([MaybeUninit::uninit(); LINE]);
        let vals = line.0.as_mut_ptr().cast::<U>();
        for (k, &x) in xs.iter().enumerate() {
            // SAFETY: `k < per_line` and `per_line * size_of::<U>() == LINE`; the line is
            // 64-byte aligned, which `U` (align <= 64, checked by `line_head`) accepts.
            unsafe { vals.add(k).write(f(x)) };
        }
        // SAFETY: line `l` of the body lies inside `dst_body` (`whole` elements from a
        // 64-byte aligned start: `head` is the first element on a line boundary), and
        // all 64 bytes of `line` were written just above.
        unsafe { stream_line(out.add(l * per_line).cast(), &line) };
    }
    if whole > 0 {
        fence();
    }
    map_cached(src_tail, dst_tail, f);
}

/// Writes the 64 bytes of `line` to `dst` with streaming stores.
///
/// # Safety
/// `dst` is valid for 64 bytes of writes and 64-byte aligned; every byte of `line` is
/// initialized.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn stream_line(dst: *mut u8, line: &Line) {
    use std::arch::x86_64::{__m128i, _mm_load_si128, _mm_stream_si128};
    let (dst, src) = (dst.cast::<__m128i>(), line.0.as_ptr().cast::<__m128i>());
    for w in 0..LINE / 16 {
        // SAFETY: word `w` lies in both 64-byte aligned lines (the caller's contract);
        // SSE2 is part of every x86-64 CPU (the target's baseline, no runtime check
        // needed).
        unsafe { _mm_stream_si128(dst.add(w), _mm_load_si128(src.add(w))) };
    }
}

/// Without streaming stores (never called: `line_head` is `None` there).
///
/// # Safety
/// As the x86-64 version.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn stream_line(dst: *mut u8, line: &Line) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(line.0.as_ptr().cast(), dst, LINE) };
}

/// Bytes of a base page, the unit a TLB entry maps on x86-64 (where huge pages are in
/// use, the extra hints [`Ahead`] gives cost a load per 4 KiB and nothing else).
const PAGE: usize = 4096;

/// How far ahead of the streaming stores [`Ahead`] touches the output.
const TLB_AHEAD: usize = 2 * PAGE;

/// Translates the pages of a streamed output ahead of the stores: at every page
/// boundary the stores cross, a prefetch hint for the page [`TLB_AHEAD`] bytes further
/// on.
///
/// A streaming store to a page whose translation is not in the TLB waits for the page
/// walk, and the walk is slow in a virtual machine (two levels of page tables). The hint
/// walks the page table before the stores get there, at the price of reading one line
/// per page (1/64 of the output's bytes). Measured on this project's 2-vCPU KVM guest
/// (scratch drivers, 2026-12-07), y = 2x + 1 over 256 MiB of 4 KiB shared pages, one
/// thread, with and without the hints alternating in one process:
///
/// * by lines ([`map_by_lines`]): 23.4-25.6 GB/s without, 35.1-35.8 GB/s with (other
///   distances from 2 to 32 KiB and other hint kinds alike; a hint per *input* page
///   instead made it slower);
/// * through the staging buffer ([`StreamWriter`]): 19.2-19.9 against 22.8-26.0 GB/s;
/// * with 2 MiB pages (shmem THP allowed): 34.6-34.8 against 35.0-35.3 GB/s, no cost.
///
/// In a worker, W5 at 512 MiB with one worker went from 0.93-1.11x the speed of rayon's
/// hand-written streaming loop (one thread, medians of 5 rounds, 3 launches) to
/// 1.32-1.49x; with two workers both are bound by the machine's bandwidth (1.01-1.16x
/// against 1.06-1.11x). In the W5 bench, whose client checks and clears each output
/// between runs, less (one worker, 512 MiB: 0.91x -> 0.93-0.96x rayon-NT): the client's
/// pass leaves the page-table entries rayon's threads walk next in the cache (one
/// address space), not those of the workers (their own page tables). Hints 8 or 16
/// pages ahead did better at 64 MiB and worse at 512 MiB in that bench.
#[derive(Clone, Copy)]
struct Ahead {
    /// Address of the output range the stores write.
    start: usize,
    /// Its length in bytes.
    bytes: usize,
}

impl Ahead {
    fn new(start: *const u8, bytes: usize) -> Self {
        Ahead {
            start: start as usize,
            bytes,
        }
    }

    /// The offset (from `start`) to hint before the stores to `offset..offset + len`:
    /// `TLB_AHEAD` past the page boundary those stores cross, if they cross one and
    /// that offset is inside the range.
    #[inline(always)]
    fn hint_for(self, offset: usize, len: usize) -> Option<usize> {
        let addr = self.start + offset;
        let boundary = addr.next_multiple_of(PAGE);
        let target = boundary - self.start + TLB_AHEAD;
        (boundary < addr + len && target < self.bytes).then_some(target)
    }

    /// Called before the stores to `offset..offset + len` of the range: hints
    /// [`hint_for`](Self::hint_for)'s offset.
    #[inline(always)]
    fn span(self, offset: usize, len: usize) {
        if let Some(target) = self.hint_for(offset, len) {
            prefetch(self.start + target);
        }
    }
}

/// A hint that the line at `addr` will be written soon (`prefetchnta`; nothing where
/// there are no streaming stores).
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_NTA};
        // SAFETY: a prefetch is a hint: it never faults, whatever the address, and
        // changes no memory (`Ahead` passes addresses inside the output anyway).
        unsafe { _mm_prefetch::<_MM_HINT_NTA>(addr as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Bytes of the staging buffer.
const BUF_BYTES: usize = 1024;

/// Where values wait until a whole block of 16-byte words can be streamed out.
#[repr(C, align(16))]
struct Staging([MaybeUninit<u8>; BUF_BYTES]);

/// Fills a slice front to back, writing it past the cache in blocks of `BUF_BYTES` where
/// the layout allows (see the module docs); the unaligned head and the last partial block
/// use ordinary stores. Dropping it (also while unwinding) writes out what is staged and
/// fences the streaming stores.
pub(crate) struct StreamWriter<'a, U: Pod> {
    dst: &'a mut [U],
    /// Elements of `dst` written (directly or streamed).
    done: usize,
    /// Elements waiting in `buf`, bound for `dst[done..]`.
    staged: usize,
    /// First index of `dst` that starts on 16 bytes (`usize::MAX`: never stream).
    head: usize,
    /// Elements per streamed block.
    per_block: usize,
    streamed: bool,
    buf: Staging,
}

impl<'a, U: Pod> StreamWriter<'a, U> {
    pub(crate) fn new(dst: &'a mut [U]) -> Self {
        let (head, per_block) = block_layout::<U>(dst.as_ptr() as usize).unwrap_or((usize::MAX, 0));
        StreamWriter {
            dst,
            done: 0,
            staged: 0,
            head,
            per_block,
            streamed: false,
            buf: Staging([MaybeUninit::uninit(); BUF_BYTES]),
        }
    }

    /// Appends one value.
    ///
    /// # Panics
    /// If the slice is already full.
    #[inline]
    pub(crate) fn push(&mut self, v: U) {
        assert!(
            self.done + self.staged < self.dst.len(),
            "StreamWriter: more values than room"
        );
        if self.done < self.head {
            self.dst[self.done] = v;
            self.done += 1;
            return;
        }
        // SAFETY: `staged < per_block` here (a full block is flushed at once), and
        // `per_block * size_of::<U>() <= BUF_BYTES`; the buffer is 16-byte aligned, which
        // `U` (align <= 16, checked by `block_layout`) accepts; `U: Pod` has no drop.
        unsafe {
            self.buf
                .0
                .as_mut_ptr()
                .cast::<U>()
                .add(self.staged)
                .write(v)
        };
        self.staged += 1;
        if self.staged == self.per_block {
            self.flush_block();
        }
    }

    /// Appends `f(x)` for every `x` of `src`: as `push` one by one, but whole blocks are
    /// computed in a loop the compiler can vectorize.
    pub(crate) fn extend_mapped<T: Pod>(&mut self, src: &[T], f: &impl Fn(T) -> U) {
        let mut rest = src;
        // One by one up to a block boundary (or to the end when nothing streams).
        while let Some((&x, tail)) = rest.split_first() {
            if self.staged == 0 && self.done >= self.head {
                break;
            }
            self.push(f(x));
            rest = tail;
        }
        while self.per_block > 0 && rest.len() >= self.per_block {
            assert!(
                self.done + self.per_block <= self.dst.len(),
                "StreamWriter: more values than room"
            );
            let (block, tail) = rest.split_at(self.per_block);
            let staged = self.buf.0.as_mut_ptr().cast::<U>();
            for (k, &x) in block.iter().enumerate() {
                // SAFETY: as in `push`: `k < per_block`, aligned, no drop.
                unsafe { staged.add(k).write(f(x)) };
            }
            self.staged = self.per_block;
            self.flush_block();
            rest = tail;
        }
        for &x in rest {
            self.push(f(x));
        }
    }

    /// Streams the full staging buffer to `dst[done..done + per_block]`.
    fn flush_block(&mut self) {
        let bytes = self.per_block * size_of::<U>();
        let out = self.dst[self.done..self.done + self.per_block].as_mut_ptr();
        debug_assert_eq!(out as usize % 16, 0);
        Ahead::new(self.dst.as_ptr().cast(), size_of_val(self.dst))
            .span(self.done * size_of::<U>(), bytes);
        // SAFETY: `out` starts on 16 bytes (`head` is the first such element and blocks are
        // whole numbers of 16-byte words) and the `bytes` from it are the slice just
        // borrowed; the buffer holds `per_block` initialized values, `bytes` in all.
        unsafe { copy_past_cache(out.cast(), self.buf.0.as_ptr().cast(), bytes) };
        self.done += self.per_block;
        self.staged = 0;
        self.streamed = true;
    }
}

impl<U: Pod> Drop for StreamWriter<'_, U> {
    fn drop(&mut self) {
        let staged = self.buf.0.as_ptr().cast::<U>();
        for k in 0..self.staged {
            // SAFETY: the first `staged` values of the buffer were written by `push`.
            self.dst[self.done + k] = unsafe { staged.add(k).read() };
        }
        self.done += self.staged;
        self.staged = 0;
        if self.streamed {
            fence();
        }
    }
}

/// For `U` at address `addr`: the index of the first element that starts on 16 bytes,
/// and how many elements make a streamed block (a whole number of 16-byte words within
/// `BUF_BYTES`); `None` when nothing can be streamed (no streaming stores on this
/// architecture, zero-sized or over-aligned `U`, a layout that never meets 16 bytes).
fn block_layout<U>(addr: usize) -> Option<(usize, usize)> {
    let size = size_of::<U>();
    if !cfg!(target_arch = "x86_64") || size == 0 || align_of::<U>() > 16 {
        return None;
    }
    // Elements per whole number of 16-byte words.
    let unit = 16 / gcd(size, 16);
    if unit * size > BUF_BYTES {
        return None;
    }
    // Addresses of consecutive elements repeat modulo 16 every `unit` elements, so if
    // none of the first `unit` is aligned (a 4-byte element at an odd address), none is.
    let head = (0..unit).find(|&h| (addr + h * size) % 16 == 0)?;
    Some((head, (BUF_BYTES / (unit * size)) * unit))
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Copies `bytes` (a multiple of 16) from `src` to `dst`, both 16-byte aligned, with
/// non-temporal stores.
///
/// # Safety
/// Both ranges valid and 16-byte aligned, `bytes % 16 == 0`, not overlapping.
#[cfg(target_arch = "x86_64")]
unsafe fn copy_past_cache(dst: *mut u8, src: *const u8, bytes: usize) {
    use std::arch::x86_64::{__m128i, _mm_load_si128, _mm_stream_si128};
    let (dst, src) = (dst.cast::<__m128i>(), src.cast::<__m128i>());
    for w in 0..bytes / 16 {
        // SAFETY: word `w` lies in both ranges, which are aligned (caller's contract);
        // SSE2 is part of x86-64.
        unsafe { _mm_stream_si128(dst.add(w), _mm_load_si128(src.add(w))) };
    }
}

/// Without streaming stores (never called: `block_layout` streams nothing there).
///
/// # Safety
/// As the x86-64 version.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_past_cache(dst: *mut u8, src: *const u8, bytes: usize) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, bytes) };
}

/// Orders earlier streaming stores before every later store (they are weakly ordered).
fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no preconditions; SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
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
                // One value at a time, as collect_array pushes them.
                let mut pushed = vec![U::zeroed(); len + off];
                let mut w = StreamWriter::new(&mut pushed[off..]);
                for &x in &src[off..] {
                    w.push(f(x));
                }
                drop(w);
                assert_eq!(pushed, want, "pushed, len {len} offset {off}");
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
        // Whole lines of one and of two elements.
        check(|x| [x; 8], &[0, 1]);
        check(|x| [x as u32; 8], &[0, 1, 3]);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn lines_start_at_the_first_element_on_a_line_boundary() {
        assert_eq!(line_head::<f64>(64), Some(0));
        assert_eq!(line_head::<f64>(72), Some(7));
        assert_eq!(line_head::<u8>(65), Some(63));
        assert_eq!(line_head::<[u8; 3]>(0), None, "3 does not divide a line");
        assert_eq!(line_head::<u32>(1), None, "never on a boundary");
        assert_eq!(line_head::<()>(0), None);
    }

    /// The offsets `Ahead` hints for a range of `bytes` at `start` written front to
    /// back in steps of `step` bytes.
    fn hints(start: usize, bytes: usize, step: usize) -> Vec<usize> {
        let ahead = Ahead { start, bytes };
        (0..bytes)
            .step_by(step)
            .filter_map(|o| ahead.hint_for(o, step.min(bytes - o)))
            .collect()
    }

    #[test]
    fn each_page_the_stores_reach_is_hinted_once_two_pages_ahead_inside_the_range() {
        // Lines from a page boundary: a hint at every page start, for the page two on;
        // none past the range.
        let base = 1 << 20;
        assert_eq!(
            hints(base, 5 * PAGE, LINE),
            [2 * PAGE, 3 * PAGE, 4 * PAGE],
            "pages 0-2 hint pages 2-4; pages 3 and 4 would hint past the end"
        );
        // A range that starts mid-page (lines from its first line boundary): the
        // boundaries are the address's, not the offset's.
        let start = base + 3 * LINE;
        let got = hints(start, 6 * PAGE, LINE);
        let want: Vec<usize> = (1..=4).map(|p| p * PAGE - 3 * LINE + TLB_AHEAD).collect();
        assert_eq!(got, want);
        // 1 KiB blocks from a 16-byte (not line) aligned start, as `StreamWriter` flushes
        // them: the block that straddles a boundary hints it.
        let start = base + 48;
        let got = hints(start, 8 * PAGE, 1024);
        let want: Vec<usize> = (1..=6).map(|p| p * PAGE - 48 + TLB_AHEAD).collect();
        assert_eq!(got, want);
        assert!(got.iter().all(|&o| o < 8 * PAGE));
        // Shorter than the distance: nothing to hint.
        assert!(hints(base, TLB_AHEAD, LINE).is_empty());
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
    #[should_panic(expected = "more values than room")]
    fn a_writer_refuses_values_past_the_end() {
        let mut dst = [0u64; 300];
        let mut w = StreamWriter::new(&mut dst);
        for x in 0..301 {
            w.push(x);
        }
    }

    #[test]
    fn the_default_threshold_is_a_fixed_size_per_worker() {
        assert_eq!(STREAM_BYTES_PER_WORKER, 4 << 20);
        let b = crate::Pool::builder().workers(2);
        assert_eq!(b.stream_threshold(), 8 << 20);
        assert_eq!(b.stream_outputs_from(0).stream_threshold(), 0);
    }
}
