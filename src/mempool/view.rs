//! Raw views into the region by offset, for protocol code that keeps offsets in shared
//! headers (job arguments, partial-result tables).

use std::sync::atomic::AtomicU64;

use super::Mempool;
use crate::error::{Error, Result};

impl Mempool {
    /// The bytes `off..off + len` of the region.
    ///
    /// # Safety
    /// The range must lie inside one live block whose contents nobody writes while the
    /// slice is used.
    pub(crate) unsafe fn bytes_at(&self, off: usize, len: usize) -> Result<&[u8]> {
        let end = off
            .checked_add(len)
            .filter(|&e| e <= self.capacity() && off > 0);
        if end.is_none() {
            return Err(Error::descriptor(format!(
                "range {off}+{len} outside the mempool"
            )));
        }
        // SAFETY: in bounds of the mapping (checked); the caller guarantees the range is a
        // live block not written concurrently.
        Ok(unsafe { std::slice::from_raw_parts(self.base().add(off), len) })
    }

    /// `n` atomic words at `off` (8-aligned) of the region.
    ///
    /// # Safety
    /// The range must lie inside one live block that outlives the returned slice.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if the range is misaligned or not inside the region
    /// (an offset read from shared memory that a task overwrote, say): never a panic.
    pub(crate) unsafe fn words_at(&self, off: usize, n: usize) -> Result<&[AtomicU64]> {
        let inside = n
            .checked_mul(8)
            .and_then(|bytes| off.checked_add(bytes))
            .is_some_and(|end| end <= self.capacity());
        if off % 8 != 0 || off == 0 || !inside {
            return Err(Error::descriptor(format!(
                "{n} words at offset {off} are not an aligned range of the mempool"
            )));
        }
        // SAFETY: in bounds and aligned (checked); the caller guarantees liveness; atomics
        // may be shared between processes.
        Ok(unsafe { std::slice::from_raw_parts(self.base().add(off) as *const AtomicU64, n) })
    }
}

#[cfg(test)]
mod tests {
    use crate::mempool::Mempool;

    /// Offsets read from shared memory may be anything: a range that is not an aligned
    /// part of the region is an error, never a panic or an overflow.
    #[test]
    fn word_ranges_outside_the_region_are_errors() {
        let pool = Mempool::new(1 << 20).unwrap();
        let cap = pool.capacity();
        // SAFETY: only the in-range call returns words, and they are read while the pool
        // (a private test pool) lives.
        unsafe {
            assert_eq!(pool.words_at(64, 2).unwrap().len(), 2);
            assert!(
                pool.words_at(0, 1).is_err(),
                "offset 0 is the null reference"
            );
            assert!(pool.words_at(68, 1).is_err(), "misaligned");
            assert!(pool.words_at(cap - 8, 2).is_err(), "past the end");
            assert!(pool.words_at(usize::MAX - 7, 2).is_err(), "overflowing end");
            assert!(
                pool.words_at(64, usize::MAX / 4).is_err(),
                "overflowing length"
            );
            assert!(pool.bytes_at(cap - 1, 2).is_err());
        }
    }
}
