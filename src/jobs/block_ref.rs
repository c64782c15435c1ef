//! A mempool block named from shared memory: `(offset, length, generation)`.
//!
//! The job header names its argument block with one (a small job has none: its arguments
//! sit in the header's inline area). Each word is an atomic of its own; who publishes a
//! reference (and with which ordering) is the user's protocol, written where it is used.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::mempool::{Mempool, RawBlock};

/// A block reference in shared memory. All zero: no block.
#[repr(C)]
pub(crate) struct BlockRef {
    offset: AtomicU64,
    len: AtomicU64,
    generation: AtomicU64,
}

impl BlockRef {
    /// Records `raw` (Relaxed: published by the protocol of the caller).
    pub(crate) fn store(&self, raw: RawBlock) {
        self.offset.store(raw.offset(), Ordering::Relaxed);
        self.len.store(raw.len(), Ordering::Relaxed);
        self.generation.store(raw.generation(), Ordering::Relaxed);
    }

    /// Forgets the reference.
    pub(crate) fn clear(&self) {
        self.offset.store(0, Ordering::Relaxed);
    }

    /// The referenced block of `mempool`, if any (Relaxed: as `store`).
    pub(crate) fn load(&self, mempool: &Mempool) -> Option<RawBlock> {
        let offset = self.offset.load(Ordering::Relaxed);
        (offset != 0).then(|| self.raw(mempool, offset))
    }

    /// Takes the reference out (one taker wins: the offset is swapped to zero).
    pub(crate) fn take(&self, mempool: &Mempool) -> Option<RawBlock> {
        let offset = self.offset.swap(0, Ordering::Relaxed);
        (offset != 0).then(|| self.raw(mempool, offset))
    }

    fn raw(&self, mempool: &Mempool, offset: u64) -> RawBlock {
        RawBlock::from_parts(
            mempool.id(),
            offset,
            self.len.load(Ordering::Relaxed),
            self.generation.load(Ordering::Relaxed),
        )
    }
}
