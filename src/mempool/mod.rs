//! The mempool: one shared region mapped at the same address in every process of the
//! tree, and an allocator inside it that every process can use at the same time.
//!
//! ```text
//!  region (MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, mapped before any fork)
//!  +-------------+--------+---------+--------+----------------------- ... --+
//!  | PoolHeader  | block  | block   | block  |  free block (rest)           |
//!  | lock, stats,| hdr|pay| hdr|pay  | hdr|pay|  hdr| never touched yet       |
//!  | free lists  |        |         |        |                              |
//!  +-------------+--------+---------+--------+----------------------- ... --+
//!  0          heap_start                  populated watermark          heap_end
//!                                                      (reserved up to region_len)
//! ```
//!
//! Submodules: [`layout`] (what the region holds), [`lock`] (the robust process-shared
//! lock), [`heap`] (the TLSF allocator, under the lock), [`recovery`] (repair after a lock
//! holder died, invariant check), [`pages`] (populate / give back), [`create`] (mapping a
//! new pool), [`alloc`] (the public allocate/free entry points), [`registry`] (pool id ->
//! handle in this process), [`block`] (the owning [`Block`] handle and its plain-data
//! [`RawBlock`]), [`testing`] (crash points and the heap report, for tests).
//!
//! # The allocator
//!
//! Two-level segregated fit (TLSF, Masmano et al. 2004): free blocks sit in one of
//! 36 x 32 doubly linked lists by size class (first level: power of two; second level: 32
//! linear steps within it), with a bitmap per level, so finding a block and freeing one
//! are O(1). A free coalesces at once with free physical neighbours (each header carries
//! the offset of its physical predecessor), so no two free blocks are ever adjacent.
//! Blocks and payloads are 64-byte aligned (a cache line: two arrays never share one);
//! a larger power-of-two alignment splits a free block in front of the allocation.
//!
//! **Fragmentation bound.**
//! * Internal: a block of a request of `n` bytes (alignment 64) is `64 + round_up(n, 64)`
//!   bytes, so at most 127 bytes per allocation are not payload; the leftover of a split
//!   smaller than 128 bytes stays with the block (so at most 191). A larger alignment `a`
//!   costs nothing beyond that: the skipped front part becomes a free block.
//! * Search: the O(1) good-fit search only takes blocks from lists whose *every* block
//!   fits, i.e. at least the request rounded up by less than 1/32 (3.1 %). When that
//!   fails, the request's own list is scanned, so an allocation of a block of size `s`
//!   fails only if **no free block of size `>= s` exists** (for alignment `a > 64`: no
//!   free block of size `>= s + 2a`). `OutOfMemory::available` reports the largest
//!   request that would have succeeded.
//! * External: with immediate coalescing, `k` used blocks split the free space into at
//!   most `k + 1` free blocks. No allocator that does not move blocks can do better than
//!   Robson's worst case (about `M * log2(largest / smallest)` for live size `M`); TLSF's
//!   good fit stays within a few percent of live size on the usual workloads, and our
//!   randomized test checks that a heap emptied after any sequence is one free block
//!   again.
//!
//! # Memory is reserved at allocation time, never at first touch
//!
//! `MAP_NORESERVE` makes untouched pages free, and a shared page touched for the first
//! time when the machine has no memory left would raise SIGBUS. So an allocation
//! populates (`madvise(MADV_POPULATE_WRITE)`) the pages it hands out before returning,
//! and a failure is `Err(OutOfMemory)` with the block returned to the free lists.
//! Bookkeeping, in [`layout::Stats`]:
//! * `populated` watermark `W`: pages below it are populated, except the interiors of free
//!   blocks flagged `UNPOPULATED` and the payloads of used blocks in state
//!   `STATE_UNRESERVED` (being populated by their owner). Small allocations that cross it
//!   advance it by a step of 2-8 MiB (one `madvise` per step). Allocations of 1 MiB or
//!   more populate their payload *after* unlocking, so a huge allocation does not stall
//!   the others.
//! * Giving pages back, and the cache of populated free space. Freed pages stay
//!   populated (and mapped in every process that touched them), so the next allocation
//!   of that size faults nothing in: `par_map`'s fresh output each call costs what a
//!   reused one does. The populated bytes of free blocks are counted in the pool header
//!   (`cached`, [`Usage::cached`]; each free block remembers what it was counted with,
//!   so the count is exact with respect to the estimates and recovery recomputes it) and
//!   bounded by the **retention limit** ([`Mempool::retention`], default a quarter of the
//!   capacity, set with [`Mempool::set_retention`] or `PoolBuilder::mempool_retention`):
//!   a free that would take the count past the limit gives the freed (coalesced) block's
//!   interior pages back (`madvise(MADV_REMOVE)`): before the lock for a used block with
//!   a payload of 8 MiB or more, under it otherwise. Blocks of fewer than 2 MiB of
//!   populated pages are never given back on free (so the cache may exceed the limit by
//!   such small blocks); [`Mempool::trim`] gives back every free block's pages. Given-back
//!   free blocks are flagged `UNPOPULATED` (allocating from them populates first) and,
//!   once the removal is done, `ZEROED`. A reused populated block is *not* known to be
//!   zero: [`Mempool::alloc_zeroed`] clears it.
//! * Reuse: an allocation first looks at the first four blocks of its own size class
//!   (which holds the block of its size freed last), then does the O(1) good-fit search.
//! * `dirty` watermark `D`: nothing at or above it was ever written. With `ZEROED`,
//!   this tells an allocation which of its bytes are known to be zero, so
//!   [`Mempool::alloc_zeroed`] and `SharedArray::zeroed` only clear the rest.
//! * Base pages only. The region is mapped 2 MiB aligned, so `madvise(MADV_COLLAPSE)`
//!   (Linux 6.1+) can turn a populated range into 2 MiB shared pages even where
//!   `shmem_enabled` is `never` (the usual default, under which `MADV_HUGEPAGE` does
//!   nothing for shared memory); an unpopulated range it refuses (`EINVAL`). Measured on
//!   the 2-vCPU KVM guest of BENCHMARKS.md (2026-12-07, scratch drivers, not landed): W5
//!   at 512 MiB and 2 GiB, 2 workers, about 5-8% more GB/s on collapsed arrays (43-51
//!   against 36-47 GB/s, a few rounds of the VM's fast state at 62-78 GB/s in both
//!   aside; alternated in blocks, 5 launches), W2 none (94.6-95.5 against 94.5-96.8 ms
//!   in a matmul with A, B and C collapsed); but populating fresh memory took 0.56-0.61 s per GiB, and collapsing
//!   it after the populate 0.29-0.46 s more (1.1-2.3 s per GiB from one page touched in
//!   every 2 MiB). A gain of a few percent on streaming jobs does not pay 50-80% more on
//!   every allocation of fresh memory, so allocations populate base pages.
//!
//! # Growing
//!
//! The whole maximum ([`Mempool::capacity`]) is mapped at creation, before any fork
//! (`MAP_NORESERVE`: untouched pages cost nothing), so every process of the tree has it
//! at the same address; the heap itself ends at `heap_end` ([`Mempool::size`]). An
//! allocation that finds no free block grows the heap under the lock, by at least the
//! request and at least doubling it (in 2 MiB steps, capped at the maximum), then
//! searches again: a process can grow the pool while the others run jobs, and nobody
//! needs to map anything. Only the new block's header page is populated by the growth;
//! the allocation populates its own pages as always, so running out is an
//! `Err(OutOfMemory)`, never a SIGBUS. A request that could not fit even in the whole
//! reservation does not grow the heap. The stores are in the table below.
//!
//! # Sealed headers
//!
//! Tasks can write anywhere in the region, so nothing the allocator reads from a block
//! header is trusted before it is checked: each header's `state` word carries a seal, a
//! keyed hash of the block's offset and size under a random per-pool secret, rewritten
//! with every size change (`Locked::store_size`). `Region::checked` accepts a header only
//! inside the heap, 64-aligned, below the populated watermark, with a size that fits and
//! a matching seal; free-list links must lead back, physical neighbours must agree, and
//! list walks are bounded. Every walk (allocation, free and coalescing, the list searches,
//! growth, `free_tagged`, `trim`, descriptor validation, the invariant check) goes
//! through these checks, and a free checks all it will touch before its first store.
//! A failed check poisons the pool (`Stats::poisoned`): that call and every later
//! allocation fail with [`Error::Corrupted`](crate::Error::Corrupted), and frees are
//! refused without touching memory. Recovery after a holder's death trusts only the
//! chain's bounds and re-seals every header (a death between a seal and its size store
//! leaves a stale one). See docs/THREAT_MODEL.md for what this does not cover (the pool
//! header).
//!
//! # The lock and crash consistency
//!
//! One lock protects the heap: a glibc pthread mutex, process-shared and robust (see
//! [`lock`]), in the pool header. When a holder dies (even by SIGKILL) the kernel marks
//! the lock and the next locker gets it with `EOWNERDEAD`, runs recovery, and marks it
//! consistent. For recovery to be possible, every critical section keeps this invariant
//! at every instruction:
//!
//! > **The physical chain is walkable**: starting at `heap_start`, each header's size
//! > leads to the next header, ending exactly at `heap_end`; each block's `FREE` bit says
//! > whether it belongs to somebody.
//!
//! A block's size and flags share one word (`size_flags`), so each chain change is one
//! store:
//!
//! | operation | stores, in order | state if the holder dies between them |
//! |---|---|---|
//! | split (alloc) | 1. tail header (size, FREE); 2. next block's prev link; 3. block's `size_flags` = its new size, used | before 3: the tail header is unreachable garbage, the whole block is still free |
//! | front split (align) | 1. new header (FREE, spans to the end); 2. old block shrinks | before 2: as above |
//! | free | 1. block's `size_flags` \|= FREE; 2. merge right: block grows in one store; 3. merge left: left block grows in one store; 4. prev links | free blocks may be adjacent, lists stale |
//! | give back | 1. \|= UNPOPULATED; 2. `madvise(REMOVE)`; 3. \|= ZEROED | each flag is conservative until the next store |
//! | grow | 1. populate the new header's page; free last block \|= UNPOPULATED if pages below its end are not populated; 2. new free header past the end; 3. `heap_end` = new end (one store); 4. merge into a free last block (one store), or list it | before 3: the new header is unreachable garbage; after 3: two adjacent free blocks, which recovery merges |
//! | watermarks | `dirty` raised before writing; `populated` raised after populating *and* after the commit | both stay on the safe side; recovery raises `populated` over the last reachable header |
//!
//! Who touches what: `size_flags`, links, lists, bitmaps and statistics only under the
//! lock, with two exceptions that never race with a lock holder: the owner of a used block
//! sets its `DETACHED` flag (`Block::into_raw`, an atomic `fetch_or`; nobody else writes
//! a used block's word while it has an owner) and its `state`.
//!
//! **Recovery** (in [`recovery`]) walks the chain and: sets every prev link from the walk;
//! merges each run of adjacent free blocks into its first block with one store (so a
//! death during recovery leaves a walkable chain, and the next locker recovers again);
//! clears generations of free blocks; empties and rebuilds every free list and bitmap
//! from the `FREE` bits; recomputes `in_use`, `live` and the generation counter from the
//! used blocks. This is correct because the chain, the only thing it trusts, is valid by
//! the invariant above, and everything else is a function of it. A block whose allocation
//! committed but whose allocator died before returning it stays used (it leaks), unless
//! it was tagged: [`Mempool::free_tagged`] reclaims everything a cancelled job allocated.
//!
//! Glibc keeps the robust list in each thread and re-registers it in a `fork` child, so
//! this works in every process forked with `fork(2)` through glibc (not with raw
//! `clone`).

mod alloc;
mod block;
mod create;
pub(crate) mod heap;
pub(crate) mod layout;
pub(crate) mod lock;
mod pages;
mod recovery;
mod registry;
mod testing;
mod view;

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub(crate) use alloc::set_default_tag;
pub use block::{Block, RawBlock};
#[doc(hidden)]
pub use testing::{CrashPoint, HeapReport};

use crate::error::{Error, Result};
use heap::{Corrupt, Locked, Region};
use lock::Acquired;

/// Smallest accepted capacity.
pub(crate) const MIN_CAPACITY: usize = 1 << 20;

/// Largest accepted alignment (1 GiB).
const MAX_ALIGN: usize = 1 << 30;

/// A shared memory pool, mapped at the same address in this process and every process
/// forked from it afterwards.
///
/// Cheap to clone (a reference count); `Send` and `Sync`. The region is unmapped (in this
/// process) when the last handle and the last [`Block`] of it are gone. Nothing is
/// created in `/dev/shm` or `/tmp`: the memory vanishes with the last process of the tree.
///
/// * **Concurrent use.** Every process of the tree can allocate and free at the same
///   time. The allocator lock is a robust process-shared mutex: if a process dies holding
///   it (even by SIGKILL), the next one to lock repairs the heap and carries on. A block
///   whose allocation completed but whose allocator died before returning it leaks,
///   unless it was tagged ([`Mempool::alloc_tagged`], [`Mempool::free_tagged`]).
/// * **Reserved, never SIGBUS.** Pages cost nothing until allocated; an allocation
///   reserves (populates) its pages before returning, so running out of memory is an
///   `Err(OutOfMemory)` at allocation time, never a signal at first touch. Freed pages
///   stay populated up to the [retention limit](Mempool::retention) (so reallocating is
///   as fast as reusing), beyond it they go back to the system, and [`Mempool::trim`]
///   gives them all back.
/// * **O(1) and bounded fragmentation.** Two-level segregated fit: allocation and free
///   take constant time; free blocks coalesce with their neighbours at once. A block
///   takes its size rounded up to 64 bytes plus a 64-byte header; an allocation of `n`
///   bytes (alignment 64) fails only if no free block of `n` rounded up plus 64 bytes
///   exists (with a larger alignment `a`: plus `2a`). Payloads are 64-byte aligned, so
///   two arrays never share a cache line.
///
/// # Examples
///
/// ```
/// use procyon::Mempool;
///
/// let pool = Mempool::new(16 << 20)?;
/// let mut block = pool.alloc(1000, 64)?;
/// block.as_bytes_mut()[0] = 7;
/// assert_eq!(block.len(), 1000);
/// assert!(pool.usage().in_use >= 1000);
/// drop(block);
/// assert_eq!(pool.usage().in_use, 0);
/// # Ok::<(), procyon::Error>(())
/// ```
#[derive(Clone)]
pub struct Mempool {
    inner: Arc<Inner>,
}

/// The per-process side of a pool: where it is mapped.
pub(crate) struct Inner {
    base: NonNull<u8>,
    len: usize,
    id: u64,
    page: u64,
    /// The mapping at `base`, unmapped when the last handle goes.
    map: crate::space::Mapping,
}

// SAFETY: `base` points to a shared mapping that lives as long as `Inner`; everything in it
// that changes after creation is an atomic or protected by the process-shared lock, so it
// may be used from any thread.
unsafe impl Send for Inner {}
// SAFETY: as for Send: all shared access goes through atomics and the lock.
unsafe impl Sync for Inner {}

impl Mempool {
    /// The memory file behind a memfd-backed pool (to send to the fork server).
    pub(crate) fn memfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inner.map.fd()
    }

    /// The address of the region in this process (the same in every process of the pool).
    pub(crate) fn base_addr(&self) -> usize {
        self.inner.base.as_ptr() as usize
    }
}

impl Inner {
    fn region(&self) -> Region<'_> {
        // SAFETY: `base` is our live mapping of `len` bytes, whose header was initialized
        // in `Mempool::new` before this `Inner` existed; the borrow of `self` keeps it
        // mapped.
        unsafe { Region::new(self.base.as_ptr(), self.page) }
    }

    /// Takes the allocator lock, recovering first if the previous holder died.
    fn lock(&self) -> Result<Locked<'_>> {
        let region = self.region();
        let (guard, acquired) = region.hdr.lock.lock().map_err(|e| {
            Error::io(
                "locking the mempool (the pool is unusable: build a new one)",
                e,
            )
        })?;
        let locked = Locked::new(region, guard);
        if acquired == Acquired::OwnerDied {
            let result = locked.recover();
            // Consistent even if recovery failed: the poisoned flag then makes every user
            // fail cleanly instead of hanging on an unrecoverable lock.
            locked
                .guard()
                .mark_consistent()
                .map_err(|e| Error::io("marking the mempool lock consistent", e))?;
            debug_assert!(result.is_ok(), "mempool recovery failed: {result:?}");
        }
        // Relaxed: written under the lock we now hold.
        if region.hdr.stats.poisoned.load(Relaxed) != 0 {
            return Err(Error::Corrupted {
                what: "the pool was poisoned when its bookkeeping was found broken".into(),
            });
        }
        Ok(locked)
    }

    /// Whether the pool is poisoned (a hint without the lock: the locked operations
    /// decide).
    fn poisoned(&self) -> bool {
        // Relaxed: a hint; see above.
        self.region().hdr.stats.poisoned.load(Relaxed) != 0
    }
}

/// Poisons the pool of `locked` after its bookkeeping was found broken: every later
/// locked operation fails with [`Error::Corrupted`]. Returns that error.
pub(crate) fn poison(locked: &Locked<'_>, c: Corrupt) -> Error {
    // Relaxed: under the lock, which orders it for every later holder.
    locked.hdr.stats.poisoned.store(1, Relaxed);
    Error::Corrupted { what: c.0 }
}

impl Inner {
    /// Takes the lock, runs `f`, and poisons the pool if `f` found it corrupted.
    fn locked<R>(
        &self,
        f: impl FnOnce(&Locked<'_>) -> std::result::Result<R, Corrupt>,
    ) -> Result<R> {
        let locked = self.lock()?;
        f(&locked).map_err(|c| poison(&locked, c))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        registry::unregister(self.id);
        // `map` unmaps when dropped right after this: no handle or block of this process
        // refers to it any more (they all hold an `Arc<Inner>`).
    }
}

/// A snapshot of a pool's usage, the same in every process.
///
/// Each field is exact; the set is read without the lock, so while other processes
/// allocate the fields may come from slightly different instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Bytes in used blocks: block sizes, i.e. requested bytes rounded up to 64 plus a
    /// 64-byte header each (what the allocations really take from the pool).
    pub in_use: usize,
    /// The highest `in_use` since the pool was created.
    pub peak: usize,
    /// The most the pool can hold ([`Mempool::capacity`]: its reservation); about 12 KiB
    /// of it is the pool's own header.
    pub capacity: usize,
    /// The heap's current size ([`Mempool::size`]): `capacity` for a fixed pool, less
    /// for a [growable](Mempool::growable) one that has not grown to its maximum.
    pub size: usize,
    /// Number of live allocations.
    pub allocations: usize,
    /// Populated bytes held in free blocks (the cache of populated free space, kept up
    /// to [`Mempool::retention`]; an estimate, see "Giving pages back" in the module
    /// docs). [`Mempool::trim`] gives them back.
    pub cached: usize,
}

/// The default retention limit of a pool of `capacity` bytes: a quarter of it.
pub(crate) fn default_retention(capacity: usize) -> usize {
    capacity / 4
}

pub(crate) fn pool_out_of_memory(requested: usize, available: u64, capacity: usize) -> Error {
    Error::OutOfMemory {
        requested,
        available: available as usize,
        capacity,
    }
}

impl Mempool {
    /// The pool's random id, the same in every process; descriptors name their pool by it.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The most the pool can hold, in bytes: the length of its reservation (for a
    /// [growable](Mempool::growable) pool, its maximum).
    pub fn capacity(&self) -> usize {
        self.inner.len
    }

    /// The heap's current size in bytes (it only grows, up to [`Mempool::capacity`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let fixed = procyon::Mempool::new(8 << 20)?;
    /// assert_eq!(fixed.size(), fixed.capacity());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn size(&self) -> usize {
        self.inner.region().end() as usize
    }

    /// Current usage, as seen by every process of the tree.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let block = pool.alloc(100, 64)?;
    /// let usage = pool.usage();
    /// assert_eq!((usage.allocations, usage.in_use), (1, 64 + 128));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn usage(&self) -> Usage {
        let stats = &self.inner.region().hdr.stats;
        // Relaxed: statistics, documented as a possibly torn snapshot.
        Usage {
            in_use: stats.in_use.load(Relaxed) as usize,
            peak: stats.peak.load(Relaxed) as usize,
            capacity: self.inner.len,
            allocations: stats.live.load(Relaxed) as usize,
            cached: self.inner.region().hdr.cached.load(Relaxed) as usize,
            size: self.size(),
        }
    }

    /// The retention limit: how many populated bytes free blocks may keep (default: a
    /// quarter of the [capacity](Mempool::capacity), i.e. of a growable pool's maximum),
    /// the same in every process.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(64 << 20)?;
    /// assert_eq!(pool.retention(), 16 << 20);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn retention(&self) -> usize {
        // Relaxed: a setting; whoever changes it does so under the lock.
        self.inner.region().hdr.retain.load(Relaxed) as usize
    }

    /// Sets the retention limit (see [`Mempool::retention`]) for every process of the
    /// tree. Lowering it gives nothing back by itself; call [`Mempool::trim`] for that.
    /// 0 gives back every block of 2 MiB or more of populated pages when it is freed
    /// (the behaviour before the cache existed).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `bytes` exceeds the capacity; the errors of a locked
    /// operation if the pool is unusable.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(64 << 20)?;
    /// pool.set_retention(0)?;
    /// drop(pool.alloc(16 << 20, 64)?); // given back: only a few pages stay cached
    /// assert!(pool.usage().cached < 2 << 20);
    /// assert!(pool.set_retention(1 << 40).is_err());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn set_retention(&self, bytes: usize) -> Result<()> {
        if bytes > self.capacity() {
            return Err(Error::config(format!(
                "a retention limit of {bytes} bytes exceeds the mempool capacity of {} bytes; \
                 pass at most that",
                self.capacity()
            )));
        }
        let locked = self.inner.lock()?;
        // Relaxed: under the lock.
        locked.hdr.retain.store(bytes as u64, Relaxed);
        Ok(())
    }

    /// Gives the pages of every free block back to the system now (they read as zero
    /// afterwards, so zeroed allocations from them cost no `memset`); returns how many
    /// populated bytes the cache held. Takes the lock for the time the `madvise` calls
    /// take.
    ///
    /// # Errors
    /// The errors of a locked operation if the pool is unusable.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(64 << 20)?;
    /// let mut block = pool.alloc(8 << 20, 64)?;
    /// block.as_bytes_mut().fill(1);
    /// drop(block); // kept populated: the next allocation of it faults nothing in
    /// assert!(pool.usage().cached >= 8 << 20);
    /// assert!(pool.trim()? >= 8 << 20);
    /// assert_eq!(pool.usage().cached, 0);
    /// assert!(pool.alloc_zeroed(8 << 20, 64)?.as_bytes().iter().all(|&b| b == 0));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn trim(&self) -> Result<usize> {
        self.inner.locked(|l| l.trim()).map(|b| b as usize)
    }

    /// Address of the region base, the same in every process of the tree.
    pub(crate) fn base(&self) -> *mut u8 {
        self.inner.base.as_ptr()
    }

    /// Whether `ptr` points into this pool's region.
    pub(crate) fn contains(&self, ptr: *const u8) -> bool {
        let base = self.base() as usize;
        (base..base + self.inner.len).contains(&(ptr as usize))
    }

    /// Offset of the first block header: below it lies the pool header (tests only).
    #[doc(hidden)]
    pub fn __heap_start(&self) -> usize {
        self.inner.region().hdr.heap_start as usize
    }

    /// Walks the heap and checks every invariant (tests only).
    #[doc(hidden)]
    pub fn __check_invariants(&self) -> std::result::Result<HeapReport, String> {
        let locked = self.inner.lock().map_err(|e| e.to_string())?;
        locked.check()
    }

    /// Takes the allocator lock and holds it until the guard is dropped (tests only: a
    /// forked child holds it and gets SIGKILLed).
    #[doc(hidden)]
    pub fn __lock_for_test(&self) -> Result<TestLockGuard<'_>> {
        Ok(TestLockGuard {
            _locked: self.inner.lock()?,
        })
    }

    /// Arms a crash point in the calling process (tests only): the next critical section
    /// that reaches it SIGKILLs the process with the lock held.
    #[doc(hidden)]
    pub fn __arm_crash_point(point: Option<CrashPoint>) {
        testing::arm(point);
    }
}

/// Holds the allocator lock (tests only).
#[doc(hidden)]
pub struct TestLockGuard<'a> {
    _locked: Locked<'a>,
}

/// A handle to pool `pool_id` if this process has one (descriptors resolve through it).
pub(crate) fn lookup(pool_id: u64) -> Option<Mempool> {
    registry::lookup(pool_id).map(|inner| Mempool { inner })
}

pub(crate) use registry::current_pid;

impl fmt::Debug for Mempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mempool")
            .field("id", &format_args!("{:#x}", self.id()))
            .field("base", &self.base())
            .field("usage", &self.usage())
            .finish()
    }
}

impl PartialEq for Mempool {
    fn eq(&self, other: &Mempool) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Mempool {}
