//! Creating a pool: validating the capacity, mapping the region, writing the header and
//! the first free block, registering the pool in this process.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::heap::{Locked, Region};
use super::layout::{flag, round_up, PoolHeader, HEADER, MAX_HEAP, NIL, POOL_MAGIC};
use super::lock::Acquired;
use super::pages::{self, PopulateError};
use super::{pool_out_of_memory, registry, Inner, Mempool, MIN_CAPACITY};
use crate::error::{Error, Result};
use crate::space::{Backing, Mapping};
use crate::sys::mman;

impl Mempool {
    /// Maps a new pool of `capacity` bytes (rounded up to whole pages), which never grows
    /// (see [`Mempool::growable`] for one that does).
    ///
    /// Pages cost nothing until allocations use them, so a generous capacity is cheap.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `capacity` is below 1 MiB or above the physical memory;
    /// [`Error::Io`] if the mapping fails, or on kernels older than 5.14 (no
    /// `MADV_POPULATE_WRITE`).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(8 << 20)?;
    /// assert!(pool.capacity() >= 8 << 20);
    /// assert!(procyon::Mempool::new(0).is_err());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn new(capacity: usize) -> Result<Mempool> {
        Mempool::create(capacity, capacity, Backing::Anonymous)
    }

    /// A pool that starts at `initial` bytes and grows as allocations need, up to `max`
    /// bytes (`None`: the physical memory). The whole `max` is reserved as address space
    /// at once (mapped `MAP_NORESERVE`, at the same address in every process forked
    /// afterwards: untouched pages cost nothing), and the heap's end advances under the
    /// allocator lock, from any process, even after the workers started. Running out of
    /// `max`, or of memory, is `Err(OutOfMemory)` at allocation, never SIGBUS.
    ///
    /// # Errors
    /// As [`Mempool::new`], for `initial` and for `max`; [`Error::InvalidConfig`] if `max`
    /// is below `initial`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::growable(4 << 20, Some(64 << 20))?;
    /// assert_eq!(pool.usage().size, 4 << 20);
    /// let block = pool.alloc(32 << 20, 64)?; // grows
    /// assert!(pool.usage().size > 32 << 20);
    /// assert_eq!(pool.capacity(), 64 << 20);
    /// assert!(pool.alloc(64 << 20, 64).is_err()); // past the maximum
    /// # drop(block);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn growable(initial: usize, max: Option<usize>) -> Result<Mempool> {
        let max = max.unwrap_or_else(|| Mempool::growth_limit(initial));
        Mempool::create(initial, max, Backing::Anonymous)
    }

    /// The maximum of a growable pool given none: the physical memory (or `initial` if
    /// that is more, or 1 GiB when unknown).
    pub(crate) fn growth_limit(initial: usize) -> usize {
        let physical = mman::physical_memory().min(MAX_HEAP);
        let page = mman::page_size() as u64;
        let limit = if physical == 0 {
            1 << 30
        } else {
            physical & !(page - 1)
        };
        (limit as usize).max(initial)
    }

    /// A pool of `initial` bytes that grows up to `max`, backed as `backing` says (a
    /// memfd for a pool whose processes the fork server starts).
    pub(crate) fn create(initial: usize, max: usize, backing: Backing) -> Result<Mempool> {
        if max < initial {
            return Err(Error::config(format!(
                "mempool maximum of {max} bytes is below its initial size of {initial} bytes; \
                 pass a maximum of at least that"
            )));
        }
        check_capacity(initial)?;
        check_capacity(max)?;
        let page = mman::page_size() as u64;
        let heap_len = round_up(initial as u64, page).expect("capacity below MAX_HEAP");
        let len = round_up(max as u64, page).expect("capacity below MAX_HEAP");
        let map = Mapping::new(len as usize, backing, c"procyon-mempool")
            .map_err(|e| Error::io("mapping the mempool", e))?;
        let base = map.ptr();
        // SAFETY: `base` is the fresh mapping of `len` bytes made above, used by nobody else
        // (dropping `map` on failure unmaps it).
        let id = unsafe { init_region(base, len, heap_len, page) }?;
        let inner = Arc::new(Inner {
            base,
            len: len as usize,
            id,
            page,
            map,
        });
        registry::register(id, Arc::downgrade(&inner));
        Ok(Mempool { inner })
    }
}

/// Checks a mempool size (initial or maximum) against the limits.
fn check_capacity(capacity: usize) -> Result<()> {
    let physical = mman::physical_memory();
    if capacity < MIN_CAPACITY {
        return Err(Error::config(format!(
            "mempool capacity of {capacity} bytes is below the minimum of {MIN_CAPACITY} \
                 bytes; pass at least 1 MiB (or use Mempool::with_default_capacity)"
        )));
    }
    if physical > 0 && capacity as u64 > physical {
        return Err(Error::config(format!(
            "mempool capacity of {capacity} bytes exceeds the physical memory of {physical} \
                 bytes; pass at most that (pages only cost memory once allocated, so \
                 Mempool::default_capacity(), half of RAM, is usually right)"
        )));
    }
    if capacity as u64 > MAX_HEAP {
        return Err(Error::config(format!(
            "mempool capacity of {capacity} bytes exceeds the maximum of {MAX_HEAP} bytes"
        )));
    }
    Ok(())
}

impl Mempool {
    /// The pool another process created in the memory file now mapped as `map` (at the
    /// address it has there), registered in this process.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if the mapping does not hold a pool header of its size.
    pub(crate) fn attach(map: Mapping) -> Result<Mempool> {
        let page = mman::page_size() as u64;
        let hdr = map.ptr().as_ptr() as *const PoolHeader;
        // SAFETY: the mapping is at least a page long (checked by the creator's rounding)
        // and its first bytes are the plain header fields written once before it was sent.
        let (magic, id, region_len) = unsafe {
            (
                std::ptr::addr_of!((*hdr).magic).read(),
                std::ptr::addr_of!((*hdr).pool_id).read(),
                std::ptr::addr_of!((*hdr).region_len).read(),
            )
        };
        if magic != POOL_MAGIC || region_len != map.len() as u64 || id == 0 {
            return Err(Error::descriptor(
                "the memory file sent for the mempool holds no pool of its size",
            ));
        }
        let inner = Arc::new(Inner {
            base: map.ptr(),
            len: map.len(),
            id,
            page,
            map,
        });
        registry::register(id, Arc::downgrade(&inner));
        Ok(Mempool { inner })
    }

    /// Maps a pool of [`Mempool::default_capacity`] bytes.
    ///
    /// # Errors
    /// As [`Mempool::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::with_default_capacity()?;
    /// assert_eq!(pool.capacity(), procyon::Mempool::default_capacity());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn with_default_capacity() -> Result<Mempool> {
        Mempool::new(Mempool::default_capacity())
    }

    /// Half of the physical memory (1 GiB if unknown), in whole pages. Untouched pages
    /// cost nothing, so this only bounds how much the pool can ever hold.
    pub fn default_capacity() -> usize {
        let page = mman::page_size() as u64;
        let physical = mman::physical_memory();
        let half = if physical == 0 { 1 << 30 } else { physical / 2 };
        let half = half.clamp(MIN_CAPACITY as u64, MAX_HEAP);
        (half & !(page - 1)) as usize
    }
}

/// Writes the pool header and the first free block into a fresh mapping of `len` bytes
/// whose heap ends at `heap_len` for now; returns the id.
///
/// # Safety
/// `base` is a fresh mapping of `len` bytes (page aligned, zeroed) that nobody else uses,
/// and `heap_len <= len` is page aligned.
unsafe fn init_region(base: NonNull<u8>, len: u64, heap_len: u64, page: u64) -> Result<u64> {
    let heap_start = round_up(std::mem::size_of::<PoolHeader>() as u64, page).expect("small");
    // Header pages plus the page of the first block header.
    // SAFETY: inside the fresh mapping.
    unsafe { pages::populate(base.as_ptr(), 0..heap_start + page) }.map_err(|e| match e {
        PopulateError::OutOfMemory => pool_out_of_memory(0, 0, len as usize),
        PopulateError::Io(e) => Error::io(
            "populating the mempool header (MADV_POPULATE_WRITE needs Linux 5.14 or later)",
            e,
        ),
    })?;
    let id = random_id();
    let hdr = base.as_ptr() as *mut PoolHeader;
    // SAFETY: the header lies in the populated, zeroed, exclusively owned start of the
    // mapping; we write its plain fields before any reference to the header exists.
    unsafe {
        std::ptr::addr_of_mut!((*hdr).magic).write(POOL_MAGIC);
        std::ptr::addr_of_mut!((*hdr).pool_id).write(id);
        std::ptr::addr_of_mut!((*hdr).region_len).write(len);
        std::ptr::addr_of_mut!((*hdr).heap_start).write(heap_start);
        std::ptr::addr_of_mut!((*hdr).heap_end).write(AtomicU64::new(heap_len));
        std::ptr::addr_of_mut!((*hdr).secret).write(random_id() ^ random_id().rotate_left(29));
    }
    // SAFETY: the header is initialized (plain fields above, atomics and free lists are
    // all-zero = empty, which is valid) and lives in our mapping.
    let region = unsafe { Region::new(base.as_ptr(), page) };
    // SAFETY: the lock is at its final address and nobody can see the region yet.
    unsafe { region.hdr.lock.init() }.map_err(|e| Error::io("initializing the mempool lock", e))?;
    let stats = &region.hdr.stats;
    // Relaxed: nobody else can see the region until it is shared by a later fork, which
    // orders these stores before anything the child does.
    stats.populated.store(heap_start + page, Relaxed);
    region
        .hdr
        .retain
        .store(super::default_retention(len as usize) as u64, Relaxed);
    stats.dirty.store(heap_start + HEADER, Relaxed);
    let (guard, acquired) = region
        .hdr
        .lock
        .lock()
        .map_err(|e| Error::io("locking the new mempool", e))?;
    debug_assert_eq!(acquired, Acquired::Clean);
    let locked = Locked::new(region, guard);
    locked.block(heap_start).prev_phys.store(NIL, Relaxed);
    locked.store_size(heap_start, (heap_len - heap_start) | flag::FREE, 0);
    // The lists are empty: nothing to find broken.
    locked
        .insert_free(heap_start, heap_len - heap_start)
        .map_err(|c| Error::Corrupted { what: c.0 })?;
    Ok(id)
}

/// A random, non-zero pool id (std's per-process random hash keys, mixed with the time,
/// the pid and a counter).
fn random_id() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    h.write_u64(now);
    h.write_i32(crate::sys::process::getpid());
    // Relaxed: only uniqueness matters.
    h.write_u64(COUNTER.fetch_add(1, Relaxed));
    h.finish().max(1)
}
