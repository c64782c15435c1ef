//! Page-level bookkeeping: populating ranges before they are handed out (so that first
//! touch can never raise SIGBUS) and giving the pages of large free ranges back.
//!
//! Ranges here are byte offsets from the region base; the functions round them to whole
//! pages themselves where they must.

use std::io;
use std::ops::Range;

use super::layout::{round_down, round_up};
use crate::sys::mman::{self, Advice};

/// Allocations with a payload at least this large populate their pages *after* the lock
/// is released (the block is marked `STATE_UNRESERVED` meanwhile), so one process
/// reserving a gigabyte does not stall every other allocator for the time it takes.
pub(crate) const POPULATE_OUTSIDE_LOCK: u64 = 1 << 20;

/// Smallest and largest step by which small allocations advance the populated
/// watermark (one `madvise` per step instead of one per allocation).
pub(crate) const STEP_MIN: u64 = 2 << 20;
pub(crate) const STEP_MAX: u64 = 8 << 20;

/// A used block whose payload is at least this large, freed when the cache of populated
/// free space is (about) full, gives its interior pages back before taking the lock (the
/// owner still owns the block, so the `madvise` does not stall the other allocators).
pub(crate) const RELEASE_BLOCK: u64 = 8 << 20;

/// A free block holding fewer populated bytes than this is never given back on free
/// (a `madvise` costs more than keeping them); `Mempool::trim` gives back even those.
pub(crate) const RELEASE_MIN: u64 = 2 << 20;

/// The heap grows in multiples of this (2 MiB).
pub(crate) const GROW_STEP: u64 = 2 << 20;

/// The empty range.
pub(crate) const EMPTY: Range<u64> = 0..0;

/// The whole pages strictly inside block `start..end` past its header page: the part a
/// free block may have given back. Never contains the page of the block's own header or
/// of the next block's header.
pub(crate) fn interior(start: u64, end: u64, page: u64) -> Range<u64> {
    let lo = round_up(start + super::layout::HEADER, page).unwrap_or(u64::MAX);
    let hi = round_down(end, page);
    if lo < hi {
        lo..hi
    } else {
        EMPTY
    }
}

/// `a ∩ b`, or the empty range.
pub(crate) fn intersect(a: &Range<u64>, b: &Range<u64>) -> Range<u64> {
    let lo = a.start.max(b.start);
    let hi = a.end.min(b.end);
    if lo < hi {
        lo..hi
    } else {
        EMPTY
    }
}

/// The page-aligned hull of the parts of `r` that may be unpopulated, given the
/// possibly-unpopulated `interior` of the free block it is carved from and the populated
/// watermark `watermark` (everything at or above it may be unpopulated). `None` if all of
/// `r` is populated.
pub(crate) fn maybe_unpopulated(
    r: Range<u64>,
    interior: &Range<u64>,
    watermark: u64,
    page: u64,
) -> Option<Range<u64>> {
    let a = intersect(&r, interior);
    let b = intersect(&r, &(watermark..u64::MAX));
    let (lo, hi) = match (a.is_empty(), b.is_empty()) {
        (true, true) => return None,
        (false, true) => (a.start, a.end),
        (true, false) => (b.start, b.end),
        (false, false) => (a.start.min(b.start), a.end.max(b.end)),
    };
    Some(round_down(lo, page)..round_up(hi, page).unwrap_or(u64::MAX))
}

/// The larger of two ranges, or their union if they overlap or touch.
pub(crate) fn union_or_larger(a: Range<u64>, b: Range<u64>) -> Range<u64> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    if a.start <= b.end && b.start <= a.end {
        a.start.min(b.start)..a.end.max(b.end)
    } else if a.end - a.start >= b.end - b.start {
        a
    } else {
        b
    }
}

/// Why a populate failed.
#[derive(Debug)]
pub(crate) enum PopulateError {
    /// The system has no memory for these pages (`ENOMEM`, `EFAULT`).
    OutOfMemory,
    /// Anything else (e.g. `EINVAL` on kernels without `MADV_POPULATE_WRITE`, < 5.14).
    Io(io::Error),
}

/// Allocates and maps the backing pages of `range` (page aligned) now.
///
/// # Safety
/// `base` is the base of a live shared mapping made by `map_shared_anon` that contains
/// `range`.
pub(crate) unsafe fn populate(base: *mut u8, range: Range<u64>) -> Result<(), PopulateError> {
    if range.is_empty() {
        return Ok(());
    }
    #[cfg(test)]
    if FAIL_POPULATE.with(|f| f.get()) {
        return Err(PopulateError::OutOfMemory);
    }
    loop {
        // SAFETY: the range is inside our mapping (caller's contract); populating does not
        // change contents.
        let result = unsafe {
            mman::madvise(
                base.add(range.start as usize),
                (range.end - range.start) as usize,
                Advice::PopulateWrite,
            )
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) => match e.raw_os_error() {
                // A signal arrived or the kernel asked us to retry: populating is
                // idempotent, so do it again.
                Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                Some(libc::ENOMEM) | Some(libc::EFAULT) | Some(libc::EHWPOISON) => {
                    return Err(PopulateError::OutOfMemory)
                }
                _ => return Err(PopulateError::Io(e)),
            },
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Unit tests: make every populate of this thread fail as if the system were out of
    /// memory.
    pub(crate) static FAIL_POPULATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Gives the pages of `range` (page aligned) back to the system; they read as zero
/// afterwards in every process.
///
/// # Safety
/// `base` is the base of a live shared mapping made by `map_shared_anon` that contains
/// `range`, and no live data is stored in `range`.
pub(crate) unsafe fn remove(base: *mut u8, range: Range<u64>) -> io::Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        mman::madvise(
            base.add(range.start as usize),
            (range.end - range.start) as usize,
            Advice::Remove,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interior_excludes_header_pages() {
        assert_eq!(interior(4096, 4096 * 4, 4096), 8192..16384);
        assert_eq!(interior(4096 - 64, 4096 * 4 + 64, 4096), 4096..16384);
        assert!(interior(4096, 4096 * 2, 4096).is_empty());
    }

    #[test]
    fn maybe_unpopulated_hulls() {
        let page = 4096;
        assert_eq!(maybe_unpopulated(0..100, &EMPTY, 1 << 20, page), None);
        assert_eq!(
            maybe_unpopulated(100..10_000, &EMPTY, 8192, page),
            Some(8192..12288)
        );
        assert_eq!(
            maybe_unpopulated(100..10_000, &(4096..8192), 1 << 20, page),
            Some(4096..8192)
        );
    }

    #[test]
    fn union_or_larger_picks() {
        assert_eq!(union_or_larger(0..10, 10..20), 0..20);
        assert_eq!(union_or_larger(0..10, 11..12), 0..10);
        assert_eq!(union_or_larger(0..1, 5..12), 5..12);
        assert_eq!(union_or_larger(EMPTY, 5..12), 5..12);
    }
}
