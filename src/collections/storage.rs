//! The data block of a growable container, named in shared memory by offset and
//! generation, and replaced by a crash-consistent switch.
//!
//! Two slots name blocks; `current` says which one is live. Growing allocates a new
//! block, fills it (a copy, or a rehash), writes it into the *other* slot, flips
//! `current` (one store), then frees the old block. Every field is written only under
//! the container's lock; a holder that dies at any point leaves a consistent container:
//! before the flip, the old block is still current (the new one leaks until the pool
//! goes); after it, the new one is (the old one leaks). Leaks after a death are the
//! price of never following a half-written offset.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::error::Result;
use crate::mempool::{Mempool, RawBlock};

/// Where one data block is: all zero for none.
#[repr(C)]
struct Slot {
    offset: AtomicU64,
    bytes: AtomicU64,
    generation: AtomicU64,
}

/// A container's data block (see the module docs). All accesses are Relaxed: they
/// happen under the container's lock, whose acquire/release orders them.
#[repr(C)]
pub(crate) struct Storage {
    slots: [Slot; 2],
    current: AtomicU32,
}

impl Storage {
    fn slot(&self) -> &Slot {
        &self.slots[self.current.load(Relaxed) as usize & 1]
    }

    fn raw(slot: &Slot, pool: &Mempool) -> Option<RawBlock> {
        let bytes = slot.bytes.load(Relaxed);
        (bytes > 0).then(|| {
            RawBlock::from_parts(
                pool.id(),
                slot.offset.load(Relaxed),
                bytes,
                slot.generation.load(Relaxed),
            )
        })
    }

    /// The address of the current block's first byte (`None` if there is none), checked
    /// to lie in a live block of the pool.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`](crate::Error::InvalidDescriptor) if the slot names no
    /// live block (the container's memory was scribbled over).
    pub(crate) fn ptr(&self, pool: &Mempool) -> Result<Option<*mut u8>> {
        let slot = self.slot();
        let bytes = slot.bytes.load(Relaxed);
        if bytes == 0 {
            return Ok(None);
        }
        let p = pool.resolve(
            slot.offset.load(Relaxed),
            slot.generation.load(Relaxed),
            bytes,
        )?;
        Ok(Some(p.as_ptr()))
    }

    /// Replaces the block by a new one of `bytes` bytes aligned to `align`, which
    /// `fill(old, new)` initializes from the old one (`old` is `None` if there was none).
    /// On an allocation failure nothing changes.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory) if the new block does not fit;
    /// as [`ptr`](Self::ptr).
    pub(crate) fn replace(
        &self,
        pool: &Mempool,
        bytes: usize,
        align: usize,
        fill: impl FnOnce(Option<*const u8>, *mut u8),
    ) -> Result<()> {
        let old_ptr = self.ptr(pool)?;
        // Untagged, as the object's own block (see `sync/object.rs`).
        let block = pool.alloc_tagged(bytes.max(1), align.max(64), 0)?;
        fill(old_ptr.map(|p| p.cast_const()), block.as_ptr());
        let raw = block.into_raw();
        let cur = self.current.load(Relaxed) as usize & 1;
        let next = &self.slots[1 - cur];
        next.offset.store(raw.offset(), Relaxed);
        next.bytes.store(raw.len(), Relaxed);
        next.generation.store(raw.generation(), Relaxed);
        let old = Self::raw(&self.slots[cur], pool);
        self.current.store(1 - cur as u32, Relaxed);
        if let Some(old) = old {
            // Detached at allocation, so any process may free it; an error would mean
            // the slot was scribbled over, which the pool reports on its own.
            let _ = pool.free_raw(old);
        }
        Ok(())
    }

    /// Frees the current block (the container's last handle is going).
    pub(crate) fn release(&self, pool: &Mempool) {
        if let Some(raw) = Self::raw(self.slot(), pool) {
            let _ = pool.free_raw(raw);
        }
    }
}
