//! Allocating and freeing through a [`Mempool`] handle: the public entry points around
//! the locked heap operations of [`super::heap`], plus the page work done outside the
//! lock.

use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Relaxed, Release};

use super::heap::{AllocFailure, Locked};
use super::layout::{flag, GRANULE, HEADER, STATE_UNRESERVED};
use super::pages::{self, PopulateError};
use super::{poison, pool_out_of_memory, Block, Mempool, RawBlock, MAX_ALIGN};
use crate::error::{Error, Result};

impl Mempool {
    /// Allocates `size` bytes aligned to `align` (a power of two; at least 64 is used).
    ///
    /// The block is freed when dropped. Its pages are reserved: touching them can never
    /// raise SIGBUS. Contents are unspecified (see [`Mempool::alloc_zeroed`]).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if no free block is large enough (`available` is the largest
    /// request that would succeed) or the system refused the pages (`available` is then
    /// 0); [`Error::InvalidConfig`] if `align` is not a power of two or above 1 GiB.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let block = pool.alloc(3000, 4096)?;
    /// assert_eq!(block.as_ptr() as usize % 4096, 0);
    /// assert!(matches!(pool.alloc(8 << 20, 64), Err(procyon::Error::OutOfMemory { .. })));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn alloc(&self, size: usize, align: usize) -> Result<Block> {
        self.alloc_tagged(size, align, default_tag())
    }

    /// [`Mempool::alloc`], with a tag (0 = none) that [`Mempool::free_tagged`] can later
    /// use to free every block so tagged, e.g. everything a cancelled job allocated.
    ///
    /// # Errors
    /// As [`Mempool::alloc`].
    pub fn alloc_tagged(&self, size: usize, align: usize, tag: u64) -> Result<Block> {
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(Error::config(format!(
                "alignment {align} is not a power of two up to {MAX_ALIGN}"
            )));
        }
        let align = align.max(GRANULE as usize) as u64;
        let capacity = self.inner.len;
        if size > isize::MAX as usize {
            return Err(pool_out_of_memory(size, 0, capacity));
        }
        let a = {
            let locked = self.inner.lock()?;
            locked
                .alloc(size as u64, align, tag)
                .map_err(|failure| match failure {
                    AllocFailure::NoFit { available } => {
                        pool_out_of_memory(size, available, capacity)
                    }
                    AllocFailure::Populate(e) => populate_error(size, capacity, e),
                    AllocFailure::Corrupted(c) => poison(&locked, c),
                })?
        };
        if let Some(range) = a.populate_later {
            let region = self.inner.region();
            // SAFETY: the range is page-aligned inside our mapping and covers the payload of
            // the block we own now.
            match unsafe { pages::populate(region.base(), range) } {
                // Release: a later free (under the lock, maybe by another process through
                // `free_tagged`) that sees 0 also sees the pages populated.
                Ok(()) => {
                    region
                        .block(a.header)
                        .state
                        .fetch_and(!STATE_UNRESERVED, Release);
                }
                Err(e) => {
                    self.inner.locked(|l| l.free(a.header, 0))?;
                    return Err(populate_error(size, capacity, e));
                }
            }
        }
        let payload = a.header + HEADER;
        let known_zero = (a.known_zero.start.saturating_sub(payload) as usize)
            ..(a.known_zero.end.saturating_sub(payload) as usize);
        Ok(Block::new(
            self.clone(),
            payload,
            size,
            a.generation,
            known_zero,
        ))
    }

    /// [`Mempool::alloc`], with the contents zeroed. Bytes the allocator knows are zero
    /// (fresh or given-back pages) are not written again, so a large zeroed allocation
    /// from fresh memory costs no `memset`.
    ///
    /// # Errors
    /// As [`Mempool::alloc`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let block = pool.alloc_zeroed(5000, 64)?;
    /// assert!(block.as_bytes().iter().all(|&b| b == 0));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn alloc_zeroed(&self, size: usize, align: usize) -> Result<Block> {
        let mut block = self.alloc(size, align)?;
        block.zero_unknown();
        Ok(block)
    }

    /// Takes ownership of a block released with [`Block::into_raw`], in this or any
    /// other process of the tree. Each `RawBlock` can be adopted (or freed) once.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if `raw` names another pool, a block that is not live
    /// (freed, stale generation), or one that is not detached (still owned by a handle,
    /// or already adopted).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let raw = pool.alloc(100, 64)?.into_raw();
    /// let block = pool.adopt(raw)?; // e.g. in another process
    /// assert!(pool.adopt(raw).is_err()); // only once
    /// drop(block);
    /// assert!(pool.adopt(raw).is_err()); // freed
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn adopt(&self, raw: RawBlock) -> Result<Block> {
        self.take_detached(raw)?;
        Ok(Block::new(
            self.clone(),
            raw.offset(),
            raw.len() as usize,
            raw.generation(),
            0..0,
        ))
    }

    /// Frees a block released with [`Block::into_raw`] without adopting it.
    ///
    /// # Errors
    /// As [`Mempool::adopt`]: a double free or a stale descriptor is an error, not
    /// undefined behaviour.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let raw = pool.alloc(100, 64)?.into_raw();
    /// pool.free_raw(raw)?;
    /// assert!(pool.free_raw(raw).is_err());
    /// assert_eq!(pool.usage().allocations, 0);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn free_raw(&self, raw: RawBlock) -> Result<()> {
        let (locked, off) = self.take_detached(raw)?;
        locked.free(off, 0).map_err(|c| poison(&locked, c))?;
        Ok(())
    }

    /// Validates a detached `raw` and clears its DETACHED flag, under the lock.
    fn take_detached(&self, raw: RawBlock) -> Result<(Locked<'_>, u64)> {
        if raw.pool_id() != self.id() {
            return Err(Error::descriptor(format!(
                "block of pool {:#x}, not of this pool {:#x}",
                raw.pool_id(),
                self.id()
            )));
        }
        let locked = self.inner.lock()?;
        let off = locked
            .validate_owned(raw.offset(), raw.generation(), raw.len())
            .map_err(Error::descriptor)?;
        let word = &locked.block(off).size_flags;
        // Relaxed: under the lock; the owner's fetch_or that set DETACHED happened before
        // the RawBlock existed, and the RawBlock reached us through some synchronizing
        // channel.
        let sf = word.load(Relaxed);
        if sf & flag::DETACHED == 0 {
            return Err(Error::descriptor(
                "the block is not detached: it is still owned by a handle (use into_raw to \
                 hand it over) or was already adopted",
            ));
        }
        word.store(sf & !flag::DETACHED, Relaxed);
        Ok((locked, off))
    }

    /// Frees every live block allocated with `tag` (0 frees nothing), in every process;
    /// returns how many were freed. Walks the whole heap under the lock.
    ///
    /// # Safety
    /// No handle ([`Block`], `SharedArray`) to a block with this tag may be used after the
    /// call, in any process: its memory may be handed to someone else. Dropping such a
    /// handle *after* the call is fine (the stale free is detected and ignored), but not
    /// *during* it: freeing a large block gives its pages back outside the lock, so a
    /// concurrent `free_tagged` could hand the block to a new owner whose data those pages
    /// then lose. Call it once no process of the tree uses or drops the blocks any more.
    ///
    /// # Errors
    /// [`Error::Io`] if the pool is unusable (its lock is unrecoverable).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let raws: Vec<_> = (0..3).map(|_| pool.alloc_tagged(100, 64, 42).map(|b| b.into_raw()))
    ///     .collect::<Result<_, _>>()?;
    /// // SAFETY: the blocks were all released to `raws`, which is not used again.
    /// assert_eq!(unsafe { pool.free_tagged(42) }?, 3);
    /// assert_eq!(pool.usage().allocations, 0);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub unsafe fn free_tagged(&self, tag: u64) -> Result<usize> {
        if tag == 0 {
            return Ok(0);
        }
        self.inner.locked(|locked| {
            let heap = locked.heap();
            let (mut off, mut freed) = (heap.start, 0);
            while off < heap.end {
                let (b, sf) = locked.checked(off)?;
                // Relaxed: under the lock.
                if sf & flag::FREE == 0 && b.tag.load(Relaxed) == tag {
                    let merged = locked.free(off, 0)?;
                    freed += 1;
                    let (_, m_sf) = locked.checked(merged)?;
                    off = merged + (m_sf & !flag::MASK);
                } else {
                    off += sf & !flag::MASK;
                }
            }
            Ok(freed)
        })
    }

    /// Frees a block owned by a handle (called by `Block`'s drop).
    pub(crate) fn free_owned(&self, payload: u64, len: u64, generation: u64) -> Result<()> {
        if self.inner.poisoned() {
            // Refused without touching memory: the headers cannot be trusted.
            return Err(Error::Corrupted {
                what: "the pool was poisoned; the block is not freed".into(),
            });
        }
        let region = self.inner.region();
        let off = region
            .validate(payload, generation, len)
            .map_err(Error::descriptor)?;
        // Relaxed: under nobody's lock, but we own the block, and nobody else writes
        // size_flags of an owned block.
        let size = region.block(off).size_flags.load(Relaxed) & !flag::MASK;
        let mut extra = 0;
        if size - HEADER >= pages::RELEASE_BLOCK && region.over_retention(size) {
            // Give the pages back before locking: we still own the block, so nobody else
            // touches them. Mark the block first, so that whoever frees it (us, or
            // `free_tagged` if we die) knows its pages may be gone.
            // Relaxed: the readers are our own free below (program order, then the lock)
            // and, if we die before it, a `free_tagged` under the lock after our death; a
            // dead process's stores are all visible by then (the kernel's context switch
            // and exit are full barriers).
            region.block(off).state.fetch_or(STATE_UNRESERVED, Relaxed);
            let interior = pages::interior(off, off + size, region.page);
            // SAFETY: the interior of a block we own and are freeing: no live data.
            if unsafe { pages::remove(region.base(), interior) }.is_ok() {
                extra = flag::UNPOPULATED | flag::ZEROED;
            }
        }
        let locked = self.inner.lock()?;
        let off = locked
            .validate_owned(payload, generation, len)
            .map_err(Error::descriptor)?;
        locked.free(off, extra).map_err(|c| poison(&locked, c))?;
        Ok(())
    }

    /// Checks that `payload..payload+bytes` is inside a live block of generation
    /// `generation`, without the lock; returns the address of `payload`.
    pub(crate) fn resolve(&self, payload: u64, generation: u64, bytes: u64) -> Result<NonNull<u8>> {
        let region = self.inner.region();
        region
            .validate(payload, generation, bytes)
            .map_err(Error::descriptor)?;
        // SAFETY: validated to be inside the heap, which is inside our mapping.
        let ptr = unsafe { NonNull::new_unchecked(region.base().add(payload as usize)) };
        debug_assert!(self.contains(ptr.as_ptr()));
        Ok(ptr)
    }

    /// Sets the DETACHED flag of an owned block (for `Block::into_raw`).
    pub(crate) fn detach(&self, payload: u64) {
        let region = self.inner.region();
        // Release: the flag is set before the RawBlock can reach an adopter, who reads it
        // under the lock after receiving the RawBlock through a synchronizing channel.
        region
            .block(payload - HEADER)
            .size_flags
            .fetch_or(flag::DETACHED, Release);
    }
}

fn populate_error(requested: usize, capacity: usize, e: PopulateError) -> Error {
    match e {
        PopulateError::OutOfMemory => pool_out_of_memory(requested, 0, capacity),
        PopulateError::Io(e) => Error::io("reserving mempool pages", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn fresh_memory_is_known_zero() {
        let pool = Mempool::new(64 * MIB).unwrap();
        let mut keep = Vec::new();
        for size in [1, 4096, 3 * MIB, 100] {
            let block = pool.alloc(size, 64).unwrap();
            assert_eq!(block.known_zero(), 0..size, "size {size}");
            keep.push(block);
        }
        // Freed and reused: only the part past what was ever written is known zero.
        let mut dirty = keep.remove(1);
        dirty.as_bytes_mut().fill(0xff);
        let old_offset = dirty.offset();
        drop(dirty);
        for size in [4000, 4096, 100] {
            let reused = pool.alloc(size, 64).unwrap();
            if reused.offset() == old_offset {
                assert!(reused.known_zero().is_empty());
            }
            assert!(reused.as_bytes()[reused.known_zero()]
                .iter()
                .all(|&b| b == 0));
            keep.push(reused);
        }
    }

    #[test]
    fn reused_memory_is_not_known_zero_until_given_back() {
        let pool = Mempool::new(64 * MIB).unwrap();
        let mut small = pool.alloc(10_000, 64).unwrap();
        small.as_bytes_mut().fill(1);
        drop(small);
        let again = pool.alloc(10_000, 64).unwrap();
        assert!(again.known_zero().is_empty());
        // With no retention, a large block is given back on free; if nothing merges with
        // it, its interior is known zero when reused.
        pool.set_retention(0).unwrap();
        let guard_before = pool.alloc(100, 64).unwrap();
        let mut big = pool.alloc(12 * MIB, 64).unwrap();
        let guard_after = pool.alloc(100, 64).unwrap();
        big.as_bytes_mut().fill(2);
        drop(big);
        let mut reused = pool.alloc(12 * MIB, 64).unwrap();
        let zero = reused.known_zero();
        assert!(zero.end - zero.start >= 12 * MIB - 8192, "{zero:?}");
        assert!(reused.as_bytes()[zero.clone()].iter().all(|&b| b == 0));
        reused.zero_unknown();
        assert!(reused.as_bytes().iter().all(|&b| b == 0));
        drop((guard_before, guard_after, again));
    }

    #[test]
    fn freed_pages_are_cached_up_to_the_retention_limit() {
        let pool = Mempool::new(256 * MIB).unwrap();
        pool.set_retention(100 * MIB).unwrap();
        let guard = pool.alloc(100, 64).unwrap();
        let mut big = pool.alloc(40 * MIB, 64).unwrap();
        let after = pool.alloc(100, 64).unwrap();
        let offset = big.offset();
        big.as_bytes_mut().fill(3);
        drop(big);
        // Kept populated: counted in the cache, and the same block comes back dirty.
        let cached = pool.usage().cached;
        assert!(cached >= 40 * MIB, "{cached}");
        assert_eq!(pool.__check_invariants().unwrap().cached, cached);
        let mut again = pool.alloc(40 * MIB, 64).unwrap();
        assert_eq!(again.offset(), offset);
        assert!(again.known_zero().len() < 4096, "{:?}", again.known_zero());
        assert!(again.as_bytes().iter().step_by(4096).all(|&b| b == 3));
        again.zero_unknown();
        assert!(again.as_bytes().iter().all(|&b| b == 0));
        drop(again);
        let zeroed = pool.alloc_zeroed(40 * MIB, 64).unwrap();
        assert!(zeroed.as_bytes().iter().all(|&b| b == 0));
        drop(zeroed);
        // A second big block does not fit in the limit any more: given back on free.
        let mut keep = pool.alloc(40 * MIB, 64).unwrap();
        let mut other = pool.alloc(70 * MIB, 64).unwrap();
        let fence = pool.alloc(100, 64).unwrap();
        keep.as_bytes_mut().fill(4);
        other.as_bytes_mut().fill(5);
        drop(keep);
        let before = pool.usage().cached;
        drop(other);
        let usage = pool.usage();
        assert!(usage.cached <= 100 * MIB + 8 * MIB, "{usage:?}");
        assert!(usage.cached < before + 70 * MIB, "{before} -> {usage:?}");
        pool.__check_invariants().unwrap();
        // trim gives everything back; what was given back reads as zero.
        assert!(pool.trim().unwrap() >= 40 * MIB);
        assert_eq!(pool.usage().cached, 0);
        assert_eq!(pool.__check_invariants().unwrap().cached, 0);
        let reused = pool.alloc(100 * MIB, 64).unwrap();
        let zero = reused.known_zero();
        assert!(zero.len() >= 100 * MIB - 3 * 4096, "{zero:?}");
        assert!(reused.as_bytes()[zero]
            .iter()
            .step_by(4096)
            .all(|&b| b == 0));
        drop((reused, guard, after, fence));
        pool.__check_invariants().unwrap();
    }

    #[test]
    fn a_refused_populate_is_out_of_memory_and_leaves_nothing_behind() {
        let pool = Mempool::new(64 * MIB).unwrap();
        let keep = pool.alloc(100, 64).unwrap();
        let before = pool.usage();
        pages::FAIL_POPULATE.with(|f| f.set(true));
        // Small (populated under the lock) and large (populated after unlocking).
        for size in [3 * MIB / 2 + 7, 200 * 1024, 40 * MIB] {
            match pool.alloc(size, 64) {
                Err(Error::OutOfMemory {
                    requested,
                    available: 0,
                    ..
                }) => {
                    assert_eq!(requested, size)
                }
                other => panic!("size {size}: {other:?}"),
            }
            let usage = pool.usage();
            assert_eq!(
                (usage.in_use, usage.allocations),
                (before.in_use, before.allocations)
            );
            pool.__check_invariants().unwrap();
        }
        pages::FAIL_POPULATE.with(|f| f.set(false));
        let block = pool.alloc_zeroed(40 * MIB, 64).unwrap();
        assert!(block.as_bytes().iter().step_by(4096).all(|&b| b == 0));
        drop((block, keep));
        assert_eq!(pool.__check_invariants().unwrap().free_blocks, 1);
    }
}

thread_local! {
    /// Tag given to untagged allocations made by this thread (0: none).
    static DEFAULT_TAG: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The tag [`Mempool::alloc`] gives to blocks allocated by this thread.
pub(crate) fn default_tag() -> u64 {
    DEFAULT_TAG.with(|t| t.get())
}

/// Sets the tag untagged allocations of this thread get; returns the previous one.
///
/// A worker sets it to the root job of the tree it runs, so that everything a failed
/// or cancelled tree allocated can be freed with [`Mempool::free_tagged`].
pub(crate) fn set_default_tag(tag: u64) -> u64 {
    DEFAULT_TAG.with(|t| t.replace(tag))
}
