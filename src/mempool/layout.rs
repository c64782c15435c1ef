//! What the mempool region holds: the pool header, block headers, and the TLSF size
//! classes.
//!
//! Everything here lives in shared memory, so it is `#[repr(C)]` plain data that holds
//! *offsets from the region base*, never pointers, and every field that may change after
//! the region is shared is an atomic (see the module docs of [`super`] for who may touch
//! which field and when).

use std::sync::atomic::{AtomicU32, AtomicU64};

use super::lock::RobustMutex;

/// Block sizes, block starts and payloads are multiples of this (one cache line).
pub(crate) const GRANULE: u64 = 64;
const GRANULE_LOG2: u32 = 6;
const _: () = assert!(1 << GRANULE_LOG2 == GRANULE);

/// Size of a [`BlockHeader`]: the payload starts right after it.
pub(crate) const HEADER: u64 = 64;

/// Smallest block: a header plus one granule of payload.
pub(crate) const MIN_BLOCK: u64 = HEADER + GRANULE;

/// log2 of the number of second-level lists per first-level class.
const SL_LOG2: u32 = 5;
/// Second-level lists per first-level class: sizes within a class are told apart to 1/32.
pub(crate) const SL_COUNT: usize = 1 << SL_LOG2;
/// First-level classes: enough for [`MAX_HEAP`].
pub(crate) const FL_COUNT: usize = 36;

/// Largest heap the size classes can index (64 TiB).
pub(crate) const MAX_HEAP: u64 = 1 << 46;
// The largest block, in granules, must map to a class below FL_COUNT.
const _: () = assert!((46 - GRANULE_LOG2) - SL_LOG2 < FL_COUNT as u32);

/// "No block" in offset fields: offset 0 is the pool header, never a block.
pub(crate) const NIL: u64 = 0;

/// `POOL_MAGIC` marks an initialized pool header ("procyon1").
pub(crate) const POOL_MAGIC: u64 = u64::from_le_bytes(*b"procyon1");

/// Flag bits in the low bits of [`BlockHeader::size_flags`] (sizes are multiples of 64).
pub(crate) mod flag {
    /// The block is free (in a free list, or about to be put back in one by recovery).
    pub(crate) const FREE: u64 = 1 << 0;
    /// Free block only: pages strictly inside it may be unpopulated (given back with
    /// `madvise(Remove)`); allocating from it populates the allocated range first.
    pub(crate) const UNPOPULATED: u64 = 1 << 1;
    /// Free block only: every page strictly inside it reads as zero (removed and not
    /// touched since). Set only after the removal finished.
    pub(crate) const ZEROED: u64 = 1 << 2;
    /// Used block only: its ownership is in flight as a `RawBlock` (after `into_raw`,
    /// before `adopt` or `free_raw`).
    pub(crate) const DETACHED: u64 = 1 << 3;
    /// Every flag bit.
    pub(crate) const MASK: u64 = super::GRANULE - 1;
}

/// [`BlockHeader::state`] bit: the payload pages of this *used* block may not all be
/// populated yet (its owner populates them outside the lock, or is giving them back).
/// Freeing such a block marks the free block [`flag::UNPOPULATED`].
pub(crate) const STATE_UNRESERVED: u64 = 1;

/// The bits of [`BlockHeader::state`] that hold the header's seal.
pub(crate) const SEAL_MASK: u64 = !STATE_UNRESERVED;

/// The header in front of every block, free or used.
///
/// Who writes what (all under the allocator lock unless said otherwise):
/// `size_flags` (one word, so that one store changes size and flags together: this is
/// what makes every critical section crash-consistent), `prev_phys`, `generation`, `tag`,
/// `len`, `next_free`/`prev_free` (free blocks only). `state` is also written by the
/// owner of a used block without the lock. Readers outside the lock (descriptor
/// validation) load `size_flags` with Acquire, then `generation` and `len`.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct BlockHeader {
    /// Block size in bytes (header included, multiple of 64) | `flag` bits.
    pub(crate) size_flags: AtomicU64,
    /// Offset of the physically preceding block, or [`NIL`] for the first block.
    pub(crate) prev_phys: AtomicU64,
    /// Allocation number of a used block (unique per pool, never 0); 0 when free.
    pub(crate) generation: AtomicU64,
    /// Used block: the caller's tag (0 = untagged). Free block in a free list: the
    /// populated bytes it was counted with in [`PoolHeader::cached`] when inserted.
    pub(crate) tag: AtomicU64,
    /// Used block: bytes requested (`<= size - HEADER`). Free block flagged
    /// `UNPOPULATED`: an estimate of how many of its bytes are populated (when to give
    /// pages back).
    pub(crate) len: AtomicU64,
    /// Free block: next block in its free list, or [`NIL`].
    pub(crate) next_free: AtomicU64,
    /// Free block: previous block in its free list, or [`NIL`] if it is the head.
    pub(crate) prev_free: AtomicU64,
    /// Bit 0: [`STATE_UNRESERVED`] (used blocks only). The other bits: the header's
    /// **seal**, a keyed hash of the block's offset and size (`Region::seal`), rewritten
    /// under the lock before every store that changes the size. A header whose seal does
    /// not match was overwritten by somebody else: the allocator stops (poisons the pool)
    /// instead of following it. The owner changes bit 0 with atomic `fetch_or` /
    /// `fetch_and`, never touching the seal.
    pub(crate) state: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<BlockHeader>() == HEADER as usize);
const _: () = assert!(std::mem::align_of::<BlockHeader>() == GRANULE as usize);

/// Usage counters, kept exact under the lock and readable by anyone without it.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Stats {
    /// Bytes of used blocks (headers and rounding included).
    pub(crate) in_use: AtomicU64,
    /// Highest `in_use` ever seen.
    pub(crate) peak: AtomicU64,
    /// Number of used blocks.
    pub(crate) live: AtomicU64,
    /// Last generation handed out (the next allocation gets this + 1).
    pub(crate) generation: AtomicU64,
    /// Populated watermark: every page below it is populated, except the interiors of
    /// free blocks flagged `UNPOPULATED` and the payloads of used blocks in state
    /// `STATE_UNRESERVED`. Raised only after the populate call succeeded.
    pub(crate) populated: AtomicU64,
    /// Dirty watermark: no byte at or above it was ever written (so it reads zero).
    /// Raised *before* the bytes below the new value are written.
    pub(crate) dirty: AtomicU64,
    /// How many times a lock holder's death was recovered from.
    pub(crate) recoveries: AtomicU64,
    /// Non-zero once recovery found the heap unwalkable (never expected; every later
    /// allocation fails instead of corrupting memory further).
    pub(crate) poisoned: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Stats>() == 64);

/// The first bytes of the region.
///
/// The plain fields are written once by the creating process before anybody else can see
/// the region (before any fork) and only read afterwards.
#[repr(C, align(64))]
pub(crate) struct PoolHeader {
    /// [`POOL_MAGIC`].
    pub(crate) magic: u64,
    /// Random pool id (`Mempool::id`).
    pub(crate) pool_id: u64,
    /// Length of the whole mapping in bytes: the reservation, the most the heap can
    /// grow to.
    pub(crate) region_len: u64,
    /// Offset of the first block (page aligned).
    pub(crate) heap_start: u64,
    /// End of the last block: the heap's current size. Only grows, under the lock, with
    /// `Release` (the new block's header is written first); lock-free readers load it
    /// with `Acquire`.
    pub(crate) heap_end: AtomicU64,
    /// Random per-pool secret mixed into every block header's seal (see
    /// [`BlockHeader::state`]).
    pub(crate) secret: u64,
    /// The allocator lock.
    pub(crate) lock: RobustMutex,
    /// Usage counters and watermarks.
    pub(crate) stats: Stats,
    /// Populated bytes counted in free blocks (the cache of populated free space): the
    /// sum of the `tag` words of the blocks in the free lists (see [`BlockHeader::tag`]).
    pub(crate) cached: AtomicU64,
    /// The retention limit: a free that would take `cached` above it gives the freed
    /// block's pages back (see "Giving pages back" in the mempool docs).
    pub(crate) retain: AtomicU64,
    /// Bit `f` set iff some list of first-level class `f` is non-empty.
    pub(crate) fl_bitmap: AtomicU64,
    /// Bit `s` of entry `f` set iff list `(f, s)` is non-empty.
    pub(crate) sl_bitmap: [AtomicU32; FL_COUNT],
    /// Head block of each free list, or [`NIL`].
    pub(crate) heads: [[AtomicU64; SL_COUNT]; FL_COUNT],
}

const _: () = assert!(std::mem::align_of::<PoolHeader>() == 64);
const _: () = assert!(std::mem::size_of::<PoolHeader>() % 64 == 0);
const _: () = assert!(FL_COUNT <= 64 && SL_COUNT <= 32);

/// The free list `(first level, second level)` that holds free blocks of `size` bytes.
pub(crate) fn class_of(size: u64) -> (usize, usize) {
    debug_assert!(size >= GRANULE && size % GRANULE == 0);
    let units = size >> GRANULE_LOG2;
    if units < SL_COUNT as u64 {
        (0, units as usize)
    } else {
        let log = 63 - units.leading_zeros();
        let fl = (log - SL_LOG2 + 1) as usize;
        let sl = ((units >> (log - SL_LOG2)) as usize) - SL_COUNT;
        (fl, sl)
    }
}

/// The first free list whose every block has at least `size` bytes ("good fit": round
/// the request up to the next list boundary). `None` if no list can hold such a block.
pub(crate) fn search_class(size: u64) -> Option<(usize, usize)> {
    debug_assert!(size >= GRANULE && size % GRANULE == 0);
    let mut units = size >> GRANULE_LOG2;
    if units >= SL_COUNT as u64 {
        let log = 63 - units.leading_zeros();
        units = units.checked_add((1u64 << (log - SL_LOG2)) - 1)?;
    }
    let (fl, sl) = class_of(units.checked_mul(GRANULE)?);
    (fl < FL_COUNT).then_some((fl, sl))
}

/// Rounds `x` up to a multiple of the power of two `to` (`None` on overflow).
pub(crate) fn round_up(x: u64, to: u64) -> Option<u64> {
    debug_assert!(to.is_power_of_two());
    Some(x.checked_add(to - 1)? & !(to - 1))
}

/// Rounds `x` down to a multiple of the power of two `to`.
pub(crate) fn round_down(x: u64, to: u64) -> u64 {
    debug_assert!(to.is_power_of_two());
    x & !(to - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lower bound of the sizes held by list `(fl, sl)`.
    fn class_floor(fl: usize, sl: usize) -> u64 {
        if fl == 0 {
            sl as u64 * GRANULE
        } else {
            let log = fl as u32 + SL_LOG2 - 1;
            ((1u64 << log) + ((sl as u64) << (log - SL_LOG2))) * GRANULE
        }
    }

    #[test]
    fn classes_are_monotonic_and_tight() {
        let mut last = (0, 0);
        for units in 1..20_000u64 {
            let size = units * GRANULE;
            let c = class_of(size);
            assert!(c >= last, "class order broken at {size}");
            last = c;
            assert!(class_floor(c.0, c.1) <= size);
            // Within 1/32 of the class floor.
            assert!(size - class_floor(c.0, c.1) <= class_floor(c.0, c.1) / SL_COUNT as u64);
        }
    }

    #[test]
    fn search_class_only_returns_lists_that_fit() {
        for units in 1..20_000u64 {
            let size = units * GRANULE;
            let (fl, sl) = search_class(size).unwrap();
            assert!(class_floor(fl, sl) >= size, "size {size} -> ({fl},{sl})");
            assert!((fl, sl) >= class_of(size));
        }
        assert!(search_class(MAX_HEAP / 2).is_some());
        assert!(class_of(MAX_HEAP - GRANULE).0 < FL_COUNT);
        assert!(search_class(!(GRANULE - 1)).is_none());
    }

    #[test]
    fn largest_heap_fits_the_classes() {
        let (fl, _) = class_of(MAX_HEAP - GRANULE);
        assert!(fl < FL_COUNT);
    }
}
