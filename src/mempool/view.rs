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
    pub(crate) unsafe fn words_at(&self, off: usize, n: usize) -> &[AtomicU64] {
        assert!(
            off % 8 == 0 && off > 0 && off + n * 8 <= self.capacity(),
            "word range outside the mempool"
        );
        // SAFETY: in bounds and aligned (asserted); the caller guarantees liveness; atomics
        // may be shared between processes.
        unsafe { std::slice::from_raw_parts(self.base().add(off) as *const AtomicU64, n) }
    }
}
