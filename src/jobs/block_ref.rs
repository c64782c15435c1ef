//! A mempool block named from shared memory: `(offset, length, generation)`.
//!
//! The job header names its argument block with one, and the argument block ends with a
//! table of them, one per worker row, where each worker records the block of partial
//! results it published. Each word is an atomic of its own; who publishes a reference
//! (and with which ordering) is the user's protocol, written where it is used.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::mempool::{Mempool, RawBlock};

/// A block reference in shared memory. All zero: no block.
#[repr(C)]
pub(crate) struct BlockRef {
    offset: AtomicU64,
    len: AtomicU64,
    generation: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<BlockRef>() == BlockRef::SIZE);

impl BlockRef {
    /// Bytes of one reference (tables of them are laid out back to back).
    pub(crate) const SIZE: usize = 24;

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

    /// Entry `index` of a table of references at mempool offset `table`.
    ///
    /// # Safety
    /// `table .. table + (index + 1) * SIZE` must lie inside a live block of `mempool`
    /// that holds such a table (8-aligned) for as long as the reference is used.
    ///
    /// # Errors
    /// [`crate::Error::InvalidDescriptor`] if the entry is not an aligned range of the
    /// region (a table offset read from shared memory that a task overwrote).
    pub(crate) unsafe fn in_table(
        mempool: &Mempool,
        table: u64,
        index: usize,
    ) -> crate::Result<&BlockRef> {
        let at = index
            .checked_mul(Self::SIZE)
            .and_then(|o| (table as usize).checked_add(o))
            .ok_or_else(|| crate::Error::descriptor("result table entry past the address space"))?;
        // SAFETY: forwarded to the caller: in bounds of a live block, aligned, and made of
        // atomics (any bit pattern is a valid reference to check before use).
        let words = unsafe { mempool.words_at(at, 3) }?;
        // SAFETY: three consecutive AtomicU64 words are a `#[repr(C)]` BlockRef.
        Ok(unsafe { &*(words.as_ptr() as *const BlockRef) })
    }
}
