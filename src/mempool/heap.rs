//! The TLSF allocator over the shared region: free lists, split, merge.
//!
//! [`Region`] is a view of the mapped region usable without the lock (only atomic reads
//! of block headers, for descriptor validation). [`Locked`] is the same view plus the
//! allocator lock, and is the only way to change the heap.
//!
//! **Orderings.** Every field of the free lists, bitmaps, statistics and block headers is
//! written only while the allocator lock is held; the lock's acquire/release orders those
//! accesses between holders, so they use `Relaxed`. The exceptions are the stores that
//! lock-free readers (descriptor validation) depend on: a block's `size_flags` is stored
//! with `Release` after its `generation` and `len`, and validators load it with `Acquire`.
//! The single-store commits that make critical sections crash-consistent are spelled out
//! in the mempool module docs ("Crash consistency").

use std::ops::Range;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::layout::{
    class_of, flag, round_up, search_class, BlockHeader, PoolHeader, FL_COUNT, GRANULE, HEADER,
    MIN_BLOCK, NIL, SEAL_MASK, SL_COUNT, STATE_UNRESERVED,
};
use super::lock::RobustGuard;
use super::pages::{self, PopulateError};
use super::testing::{crash_point, CrashPoint};

/// How many blocks of a request's own free list are looked at before the good-fit
/// search (bounded, so allocation stays O(1)).
const OWN_LIST_PROBES: usize = 4;

/// A view of a mapped pool region. Copying it copies the pointer, not the memory.
#[derive(Clone, Copy)]
pub(crate) struct Region<'a> {
    base: *mut u8,
    pub(crate) hdr: &'a PoolHeader,
    pub(crate) page: u64,
}

/// A successful allocation, as seen by the lock holder.
#[derive(Debug)]
pub(crate) struct Allocation {
    /// Offset of the block header (the payload follows it).
    pub(crate) header: u64,
    /// The block's generation.
    pub(crate) generation: u64,
    /// Absolute byte range of the payload known to read as zero (maybe empty).
    pub(crate) known_zero: Range<u64>,
    /// Page range the caller must populate after unlocking (the block's state is
    /// `STATE_UNRESERVED` until it has).
    pub(crate) populate_later: Option<Range<u64>>,
}

/// The allocator found its bookkeeping overwritten (a header out of bounds or with a
/// bad seal, a free-list link that does not lead back): the pool must be poisoned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) String);

impl Corrupt {
    pub(crate) fn at(off: u64, what: &str) -> Corrupt {
        Corrupt(format!("{what}, at offset {off}"))
    }
}

/// Why an allocation failed.
#[derive(Debug)]
pub(crate) enum AllocFailure {
    /// No free block is large enough; the largest request that would fit now.
    NoFit { available: u64 },
    /// The pool had room, but the system refused the pages.
    Populate(PopulateError),
    /// The heap's bookkeeping is broken.
    Corrupted(Corrupt),
}

impl From<Corrupt> for AllocFailure {
    fn from(c: Corrupt) -> AllocFailure {
        AllocFailure::Corrupted(c)
    }
}

impl<'a> Region<'a> {
    /// # Safety
    /// `base` is the base of a live mapping whose first bytes are an initialized
    /// `PoolHeader`, mapped for at least `'a` and `hdr.region_len` bytes long.
    pub(crate) unsafe fn new(base: *mut u8, page: u64) -> Self {
        debug_assert_eq!(base as usize % 4096, 0);
        // SAFETY: the caller guarantees an initialized, live header at `base`; the header is
        // plain data plus atomics, so a shared reference to it is sound even while other
        // processes update its atomics.
        let hdr = unsafe { &*(base as *const PoolHeader) };
        Region { base, hdr, page }
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.base
    }

    /// The header of the block at `off` (inside the reservation: a growth writes the
    /// next block's header just past the heap's end).
    pub(crate) fn block(&self, off: u64) -> &'a BlockHeader {
        debug_assert!(
            off >= self.hdr.heap_start && off + HEADER <= self.hdr.region_len,
            "block offset {off} outside the heap"
        );
        debug_assert_eq!(off % GRANULE, 0);
        // SAFETY: `off` is a 64-aligned offset inside the mapping (checked above in debug
        // builds, guaranteed by the callers, which only follow offsets that `checked`
        // accepted, offsets of their own blocks, or the end of the heap while growing it
        // within the reservation). The mapping lives for 'a, and `BlockHeader` is atomics
        // only, so any bit pattern is valid and concurrent access is sound.
        unsafe { &*(self.base.add(off as usize) as *const BlockHeader) }
    }

    /// The first block header offset at which the heap ends.
    pub(crate) fn heap(&self) -> Range<u64> {
        self.hdr.heap_start..self.end()
    }

    /// The heap's current end. Acquire: pairs with the Release store of a growth, so
    /// the header of the block it added is visible.
    pub(crate) fn end(&self) -> u64 {
        self.hdr.heap_end.load(Acquire)
    }

    /// The seal of a header at `off` for a block of `size` bytes: a keyed hash (the
    /// pool's secret) of both, in the bits of [`SEAL_MASK`]. Random garbage matches it
    /// with probability 2^-63.
    pub(crate) fn seal(&self, off: u64, size: u64) -> u64 {
        // splitmix64's finalizer over the secret, the offset and the size.
        let mut x =
            self.hdr.secret ^ off.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ size.rotate_left(32);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (x ^ (x >> 31)) & SEAL_MASK
    }

    /// The header at `off`, checked before anything follows it: inside the heap,
    /// 64-aligned, below the populated watermark (every header is: see the mempool
    /// docs), with a size that fits in the heap, and a seal that matches its offset and
    /// size. Returns it with the `size_flags` word read (`Acquire`, for lock-free
    /// readers; under the lock any ordering would do).
    pub(crate) fn checked(&self, off: u64) -> Result<(&'a BlockHeader, u64), Corrupt> {
        let heap = self.heap();
        // Relaxed: under the lock, ordered by it; without it (descriptor validation) a
        // stale watermark is only lower, which rejects more.
        let watermark = self.hdr.stats.populated.load(Relaxed);
        if off % GRANULE != 0
            || off < heap.start
            || off.checked_add(MIN_BLOCK).map_or(true, |e| e > heap.end)
            || off >= watermark
        {
            return Err(Corrupt::at(off, "a block offset outside the heap"));
        }
        let b = self.block(off);
        // Acquire: pairs with the Release store that committed the size (its seal was
        // written before it).
        let sf = b.size_flags.load(Acquire);
        let size = sf & !flag::MASK;
        if size < MIN_BLOCK || size > heap.end - off {
            return Err(Corrupt::at(off, "a block size that does not fit the heap"));
        }
        if b.state.load(Relaxed) & SEAL_MASK != self.seal(off, size) {
            return Err(Corrupt::at(off, "a block header whose seal does not match"));
        }
        Ok((b, sf))
    }

    /// Checks without the lock that `payload` (offset of a payload) names a live used
    /// block of generation `generation` holding at least `bytes` bytes; returns its header
    /// offset. Lock-free: the answer may be stale by the time it is used, which is fine
    /// for the callers (descriptor users promise the array stays alive).
    pub(crate) fn validate(
        &self,
        payload: u64,
        generation: u64,
        bytes: u64,
    ) -> Result<u64, &'static str> {
        let heap = self.heap();
        if payload % GRANULE != 0 || payload < heap.start + HEADER || payload >= heap.end {
            return Err("offset does not point at a block of this pool");
        }
        let off = payload - HEADER;
        // Relaxed: a hint that saves touching unpopulated pages; the header checks below
        // are what decide.
        if off >= self.hdr.stats.populated.load(Relaxed) {
            return Err("offset does not point at a live block of this pool");
        }
        // Acquire (in `checked`) pairs with the Release store that committed the
        // allocation: we see the generation, length and seal written before it.
        let (b, sf) = self
            .checked(off)
            .map_err(|_| "offset does not point at a live block of this pool")?;
        let size = sf & !flag::MASK;
        if sf & flag::FREE != 0 || generation == 0 {
            return Err("the block was freed");
        }
        if b.generation.load(Relaxed) != generation {
            return Err("stale generation: the block was freed (and maybe reused)");
        }
        if size < MIN_BLOCK || off + size > heap.end || bytes > size - HEADER {
            return Err("length exceeds the block");
        }
        if bytes > b.len.load(Relaxed) {
            return Err("length exceeds the allocation");
        }
        Ok(off)
    }
}

impl Region<'_> {
    /// Whether keeping `more` populated free bytes would take the cache past the pool's
    /// retention limit. Relaxed: under the lock the lock orders it; without the lock it
    /// is only a hint (the decision under the lock is what bounds the cache).
    pub(crate) fn over_retention(&self, more: u64) -> bool {
        let hdr = self.hdr;
        hdr.cached.load(Relaxed).saturating_add(more) > hdr.retain.load(Relaxed)
    }
}

/// The region with the allocator lock held: the only way to change the heap.
pub(crate) struct Locked<'a> {
    region: Region<'a>,
    guard: RobustGuard<'a>,
}

impl<'a> std::ops::Deref for Locked<'a> {
    type Target = Region<'a>;
    fn deref(&self) -> &Region<'a> {
        &self.region
    }
}

impl<'a> Locked<'a> {
    /// Pairs a region with the guard of its own lock.
    pub(crate) fn new(region: Region<'a>, guard: RobustGuard<'a>) -> Self {
        Locked { region, guard }
    }

    pub(crate) fn guard(&self) -> &RobustGuard<'a> {
        &self.guard
    }

    /// Puts free block `off` of `size` bytes at the head of its list, and counts its
    /// populated bytes in the cache (remembered in its `tag` word, so that removing it
    /// subtracts exactly what was added).
    pub(crate) fn insert_free(&self, off: u64, size: u64) -> Result<(), Corrupt> {
        let (fl, sl) = class_of(size);
        let hdr = self.hdr;
        let head = hdr.heads[fl][sl].load(Relaxed);
        if head != NIL {
            let (h, h_sf) = self.checked(head)?;
            if h_sf & flag::FREE == 0
                || class_of(h_sf & !flag::MASK) != (fl, sl)
                || h.prev_free.load(Relaxed) != NIL
            {
                return Err(Corrupt::at(
                    head,
                    "a free-list head that is not a free block",
                ));
            }
        }
        let b = self.block(off);
        let sf = b.size_flags.load(Relaxed);
        let counted = self.populated_estimate(off, size, sf, hdr.stats.populated.load(Relaxed));
        b.tag.store(counted, Relaxed);
        hdr.cached
            .store(hdr.cached.load(Relaxed) + counted, Relaxed);
        b.next_free.store(head, Relaxed);
        b.prev_free.store(NIL, Relaxed);
        if head != NIL {
            self.block(head).prev_free.store(off, Relaxed);
        }
        hdr.heads[fl][sl].store(off, Relaxed);
        hdr.sl_bitmap[fl].fetch_or(1 << sl, Relaxed);
        hdr.fl_bitmap.fetch_or(1 << fl, Relaxed);
        Ok(())
    }

    /// Checks that free block `off` of `size` bytes can be taken out of its list: its
    /// neighbours in the list are free blocks that point back at it (or it is the head).
    /// Nothing is written, so a caller can check every block it will unlink first.
    fn check_linked(&self, off: u64, size: u64) -> Result<(), Corrupt> {
        let (fl, sl) = class_of(size);
        let b = self.block(off);
        let next = b.next_free.load(Relaxed);
        let prev = b.prev_free.load(Relaxed);
        if next != NIL {
            let (n, n_sf) = self.checked(next)?;
            if n_sf & flag::FREE == 0 || n.prev_free.load(Relaxed) != off {
                return Err(Corrupt::at(off, "a free-list link that does not lead back"));
            }
        }
        let linked = if prev != NIL {
            let (p, p_sf) = self.checked(prev)?;
            p_sf & flag::FREE != 0 && p.next_free.load(Relaxed) == off
        } else {
            self.hdr.heads[fl][sl].load(Relaxed) == off
        };
        if linked {
            Ok(())
        } else {
            Err(Corrupt::at(off, "a free block that its list does not hold"))
        }
    }

    /// Takes free block `off` of `size` bytes out of its list.
    pub(crate) fn remove_free(&self, off: u64, size: u64) -> Result<(), Corrupt> {
        self.check_linked(off, size)?;
        let (fl, sl) = class_of(size);
        let hdr = self.hdr;
        let b = self.block(off);
        let counted = b.tag.swap(0, Relaxed);
        hdr.cached
            .store(hdr.cached.load(Relaxed).saturating_sub(counted), Relaxed);
        let next = b.next_free.load(Relaxed);
        let prev = b.prev_free.load(Relaxed);
        if next != NIL {
            self.block(next).prev_free.store(prev, Relaxed);
        }
        if prev != NIL {
            self.block(prev).next_free.store(next, Relaxed);
        } else {
            debug_assert_eq!(hdr.heads[fl][sl].load(Relaxed), off);
            hdr.heads[fl][sl].store(next, Relaxed);
            if next == NIL {
                let left = hdr.sl_bitmap[fl].fetch_and(!(1 << sl), Relaxed) & !(1 << sl);
                if left == 0 {
                    hdr.fl_bitmap.fetch_and(!(1 << fl), Relaxed);
                }
            }
        }
        Ok(())
    }

    /// A free block of at least `size` bytes: O(1) good fit via the bitmaps, then (only
    /// when that fails, i.e. near exhaustion) a scan of the list `size` itself falls in,
    /// which may hold blocks between `size` and the next list boundary.
    fn find_free(&self, size: u64) -> Result<Option<u64>, Corrupt> {
        let hdr = self.hdr;
        // Checks a block taken from list `(fl, sl)`: a sealed free block of that class.
        let listed = |off: u64, fl: usize, sl: usize| -> Result<u64, Corrupt> {
            let (_, sf) = self.checked(off)?;
            if sf & flag::FREE == 0 || class_of(sf & !flag::MASK) != (fl, sl) {
                return Err(Corrupt::at(
                    off,
                    "a free list holding a block not of its class",
                ));
            }
            Ok(sf & !flag::MASK)
        };
        // First the first few blocks of the request's own list: a block freed just now
        // (whose pages the cache kept populated) is reused by the next request of its size
        // (the `par_map` pattern) instead of a block from a larger list.
        let (own_fl, own_sl) = class_of(size);
        if own_fl < FL_COUNT {
            let mut off = hdr.heads[own_fl][own_sl].load(Relaxed);
            for _ in 0..OWN_LIST_PROBES {
                if off == NIL {
                    break;
                }
                if listed(off, own_fl, own_sl)? >= size {
                    return Ok(Some(off));
                }
                off = self.block(off).next_free.load(Relaxed);
            }
        }
        if let Some((fl, sl)) = search_class(size) {
            let sl_map = hdr.sl_bitmap[fl].load(Relaxed) & (u32::MAX << sl);
            let found = if sl_map != 0 {
                Some((fl, sl_map.trailing_zeros() as usize))
            } else {
                let above = if fl + 1 < 64 { u64::MAX << (fl + 1) } else { 0 };
                let fl_map = hdr.fl_bitmap.load(Relaxed) & above;
                (fl_map != 0).then(|| {
                    let f = fl_map.trailing_zeros() as usize;
                    (f, hdr.sl_bitmap[f].load(Relaxed).trailing_zeros() as usize)
                })
            };
            if let Some((f, s)) = found {
                if f >= FL_COUNT || s >= SL_COUNT {
                    return Err(Corrupt("a free-list bitmap naming no list".into()));
                }
                let off = hdr.heads[f][s].load(Relaxed);
                if off == NIL || listed(off, f, s)? < size {
                    return Err(Corrupt::at(
                        off,
                        "a free-list bitmap that disagrees with its list",
                    ));
                }
                return Ok(Some(off));
            }
        }
        if own_fl >= FL_COUNT {
            return Ok(None);
        }
        let mut off = hdr.heads[own_fl][own_sl].load(Relaxed);
        let mut steps = 0;
        while off != NIL {
            if listed(off, own_fl, own_sl)? >= size {
                return Ok(Some(off));
            }
            steps += 1;
            if steps > self.max_blocks() {
                return Err(Corrupt("a free list that loops".into()));
            }
            off = self.block(off).next_free.load(Relaxed);
        }
        Ok(None)
    }

    /// More blocks than the heap can hold: a walk that takes more steps loops.
    pub(crate) fn max_blocks(&self) -> u64 {
        (self.heap().end - self.heap().start) / MIN_BLOCK + 1
    }

    /// The largest payload a request could get right now (for error messages).
    pub(crate) fn largest_free_payload(&self) -> u64 {
        let fl_map = self.hdr.fl_bitmap.load(Relaxed);
        if fl_map == 0 {
            return 0;
        }
        let fl = 63 - fl_map.leading_zeros() as usize;
        if fl >= FL_COUNT {
            return 0;
        }
        let sl_map = self.hdr.sl_bitmap[fl].load(Relaxed);
        if sl_map == 0 {
            return 0;
        }
        let sl = 31 - sl_map.leading_zeros() as usize;
        let mut best = 0;
        let mut off = self.hdr.heads[fl][sl].load(Relaxed);
        // Only for an error message: a broken list ends the walk (the allocation that
        // follows it reports the corruption).
        for _ in 0..self.max_blocks() {
            if off == NIL {
                break;
            }
            let Ok((b, sf)) = self.checked(off) else {
                break;
            };
            best = best.max(sf & !flag::MASK);
            off = b.next_free.load(Relaxed);
        }
        best.saturating_sub(HEADER)
    }

    /// Writes the header of a new free block (the first store of a split). `estimate` is
    /// its populated-bytes estimate (kept only for `UNPOPULATED` blocks).
    fn write_free_header(&self, off: u64, size: u64, prev: u64, flags: u64, estimate: u64) {
        let b = self.block(off);
        b.prev_phys.store(prev, Relaxed);
        b.generation.store(0, Relaxed);
        b.tag.store(0, Relaxed);
        b.len.store(estimate.min(size), Relaxed);
        self.store_size(off, size | flag::FREE | flags, 0);
    }

    /// Stores block `off`'s `size_flags` word, sealing the header for its size first
    /// (`state` = seal | `state_bit`). Release: lock-free validators that see the word
    /// see the seal and everything written to the header before.
    pub(crate) fn store_size(&self, off: u64, size_flags: u64, state_bit: u64) {
        let b = self.block(off);
        b.state.store(
            self.seal(off, size_flags & !flag::MASK) | (state_bit & STATE_UNRESERVED),
            Relaxed,
        );
        b.size_flags.store(size_flags, Release);
    }

    /// How many bytes of free block `off` may be populated: below the watermark for a
    /// fully populated block; the estimate kept in `len` for an `UNPOPULATED` one. Only a
    /// heuristic for when to give pages back.
    pub(crate) fn populated_estimate(&self, off: u64, size: u64, sf: u64, watermark: u64) -> u64 {
        if sf & flag::UNPOPULATED != 0 {
            self.block(off).len.load(Relaxed).min(size)
        } else {
            (off + size).min(watermark).saturating_sub(off)
        }
    }

    /// Points the block after `end` (if any) back at `prev`. The caller checked it with
    /// [`Locked::check_next`] before its first store.
    fn link_next(&self, end: u64, prev: u64) {
        if end < self.end() {
            self.block(end).prev_phys.store(prev, Relaxed);
        }
    }

    /// Checks that the block after `end` (if any) is a sealed header that points back at
    /// `prev`, as the chain says it must.
    fn check_next(&self, end: u64, prev: u64) -> Result<(), Corrupt> {
        if end < self.end() {
            let (n, _) = self.checked(end)?;
            if n.prev_phys.load(Relaxed) != prev {
                return Err(Corrupt::at(end, "a block whose predecessor link is wrong"));
            }
        }
        Ok(())
    }

    /// Allocates `size` bytes aligned to `align` (a power of two >= 64), tagged `tag`.
    pub(crate) fn alloc(
        &self,
        size: u64,
        align: u64,
        tag: u64,
    ) -> Result<Allocation, AllocFailure> {
        debug_assert!(align.is_power_of_two() && align >= GRANULE);
        let no_fit = || AllocFailure::NoFit {
            available: self.largest_free_payload(),
        };
        let payload = round_up(size.max(1), GRANULE).ok_or_else(no_fit)?;
        let need = payload.checked_add(HEADER).ok_or_else(no_fit)?;
        let search = if align <= GRANULE {
            need
        } else {
            need.checked_add(align.checked_mul(2).ok_or_else(no_fit)?)
                .ok_or_else(no_fit)?
        };
        let f_off = match self.find_free(search)? {
            Some(off) => off,
            None => {
                self.grow(search)?;
                self.find_free(search)?.ok_or_else(no_fit)?
            }
        };
        let (f, f_sf) = self.checked(f_off)?;
        let f_size = f_sf & !flag::MASK;
        let f_end = f_off + f_size;
        let f_flags = f_sf & (flag::UNPOPULATED | flag::ZEROED);
        if f_sf & flag::FREE == 0 || f_size < search {
            return Err(Corrupt::at(f_off, "a free list holding a block too small or used").into());
        }
        // Everything this allocation will follow is checked before its first store.
        self.check_next(f_end, f_off)?;
        self.remove_free(f_off, f_size)?;
        let f_estimate =
            self.populated_estimate(f_off, f_size, f_sf, self.hdr.stats.populated.load(Relaxed));

        // Where the block goes: at the front of F, or (larger alignment) far enough in
        // that the piece in front of it is a valid free block of its own.
        let b_off = if align <= GRANULE {
            f_off
        } else {
            // Align the *address* (the same in every process), not just the offset: the
            // base is only page aligned.
            let base = self.base() as u64;
            let mut b = round_up(base + f_off + HEADER, align).expect("inside the address space")
                - HEADER
                - base;
            if b != f_off && b - f_off < MIN_BLOCK {
                b += align;
            }
            b
        };
        let end = b_off + need;
        debug_assert!(end <= f_end);
        let split = f_end - end >= MIN_BLOCK;
        let b_end = if split { end } else { f_end };
        let touch_end = if split { end + HEADER } else { b_end };
        let page = self.page;
        let stats = &self.hdr.stats;
        let w_old = stats.populated.load(Relaxed);
        let d_old = stats.dirty.load(Relaxed);
        let f_interior = pages::interior(f_off, f_end, page);
        let unpop_interior = if f_flags & flag::UNPOPULATED != 0 {
            f_interior.clone()
        } else {
            pages::EMPTY
        };
        let big = payload >= pages::POPULATE_OUTSIDE_LOCK;

        // Populate what must be populated before we write (and, for small blocks, the
        // whole block plus a step ahead of the watermark). Nothing is written yet, so a
        // failure only has to put F back.
        let mut now: [Option<Range<u64>>; 3] = [None, None, None];
        let mut later = None;
        let w_new;
        if big {
            now[0] = pages::maybe_unpopulated(b_off..b_off + HEADER, &unpop_interior, w_old, page);
            if split {
                now[1] = pages::maybe_unpopulated(end..end + HEADER, &unpop_interior, w_old, page);
            }
            later = pages::maybe_unpopulated(b_off + HEADER..b_end, &unpop_interior, w_old, page);
            w_new = w_old.max(round_up(touch_end, page).expect("inside the region"));
        } else {
            now[0] = pages::maybe_unpopulated(b_off..touch_end, &unpop_interior, u64::MAX, page);
            if touch_end > w_old {
                let used = w_old.saturating_sub(self.hdr.heap_start);
                let step = (used / 8).clamp(pages::STEP_MIN, pages::STEP_MAX);
                let target = round_up(touch_end, page).expect("inside the region");
                // An eighth of the heap in use is not a whole number of pages: round the
                // step, or the next populate would start off a page boundary.
                let ahead = round_up(w_old + step, page).expect("far below u64::MAX");
                w_new = target.max(ahead).min(self.end());
                now[2] = Some(w_old..w_new);
            } else {
                w_new = w_old;
            }
        }
        for r in now.into_iter().flatten() {
            // SAFETY: every range is page-aligned and inside the region (block ranges are
            // inside the heap, watermarks are clamped to the region length).
            if let Err(e) = unsafe { pages::populate(self.base(), r) } {
                self.insert_free(f_off, f_size)?;
                return Err(AllocFailure::Populate(e));
            }
        }

        // Everything we and the caller are about to write lies below touch_end: raise the
        // dirty watermark first (see `Stats::dirty`).
        if touch_end > d_old {
            stats.dirty.store(touch_end, Relaxed);
        }
        let p = b_off + HEADER;
        let mut known_zero = if d_old < p + size {
            d_old.max(p)..p + size
        } else {
            pages::EMPTY
        };
        if f_flags & flag::ZEROED != 0 {
            known_zero =
                pages::union_or_larger(known_zero, pages::intersect(&(p..p + size), &f_interior));
        }

        if b_off != f_off {
            // Front split: B's header first (a free block spanning to F's end), then shrink
            // F in one store. A big block's front piece may now lie below the watermark
            // without being populated: mark it.
            self.write_free_header(b_off, f_end - b_off, f_off, f_flags, f_estimate);
            self.link_next(f_end, b_off);
            let (extra, front_estimate) = if f_flags & flag::UNPOPULATED != 0 {
                (0, f_estimate)
            } else if big && b_off > w_old {
                (flag::UNPOPULATED, b_off.min(w_old).saturating_sub(f_off))
            } else {
                (0, 0)
            };
            f.len.store(front_estimate.min(b_off - f_off), Relaxed);
            self.store_size(f_off, (b_off - f_off) | flag::FREE | f_flags | extra, 0);
            self.insert_free(f_off, b_off - f_off)?;
        }
        if split {
            // Tail split, first store: the tail's header, unreachable until B shrinks.
            self.write_free_header(end, f_end - end, b_off, f_flags, f_estimate);
            self.link_next(f_end, end);
            crash_point(CrashPoint::AllocAfterTail);
        }
        let generation = stats.generation.load(Relaxed) + 1;
        stats.generation.store(generation, Relaxed);
        let b = self.block(b_off);
        b.generation.store(generation, Relaxed);
        b.tag.store(tag, Relaxed);
        b.len.store(size, Relaxed);
        let state = if later.is_some() { STATE_UNRESERVED } else { 0 };
        // The commit: one store makes B used with its final size (and the tail reachable).
        // Release: lock-free validators that see it also see generation, len and seal.
        self.store_size(b_off, b_end - b_off, state);
        crash_point(CrashPoint::AllocAfterCommit);
        if split {
            self.insert_free(end, f_end - end)?;
        }
        if w_new > w_old {
            stats.populated.store(w_new, Relaxed);
        }
        let in_use = stats.in_use.load(Relaxed) + (b_end - b_off);
        stats.in_use.store(in_use, Relaxed);
        if in_use > stats.peak.load(Relaxed) {
            stats.peak.store(in_use, Relaxed);
        }
        stats.live.store(stats.live.load(Relaxed) + 1, Relaxed);
        Ok(Allocation {
            header: b_off,
            generation,
            known_zero,
            populate_later: later,
        })
    }

    /// Frees used block `off` and coalesces it with its free neighbours; returns the
    /// offset of the resulting free block. `extra` is `UNPOPULATED | ZEROED` when the
    /// caller already gave the block's interior pages back, else 0.
    pub(crate) fn free(&self, off: u64, extra: u64) -> Result<u64, Corrupt> {
        let stats = &self.hdr.stats;
        let (b, sf) = self.checked(off)?;
        if sf & flag::FREE != 0 {
            return Err(Corrupt::at(off, "a block freed twice"));
        }
        let b_size = sf & !flag::MASK;
        // Check every header and link this free will follow or write, before the first
        // store: a broken one refuses the free without touching memory.
        let right = off + b_size;
        let mut right_free = None;
        if right < self.end() {
            self.check_next(right, off)?;
            let r_sf = self.block(right).size_flags.load(Relaxed);
            if r_sf & flag::FREE != 0 {
                let r_size = r_sf & !flag::MASK;
                self.check_linked(right, r_size)?;
                self.check_next(right + r_size, right)?;
                right_free = Some((r_sf, r_size));
            }
        }
        let left = b.prev_phys.load(Relaxed);
        let mut left_free = None;
        if left != NIL {
            let (l, l_sf) = self.checked(left)?;
            let l_size = l_sf & !flag::MASK;
            if left.checked_add(l_size) != Some(off) {
                return Err(Corrupt::at(
                    off,
                    "a block whose predecessor does not reach it",
                ));
            }
            if l_sf & flag::FREE != 0 {
                self.check_linked(left, l_size)?;
                left_free = Some((l, l_sf, l_size));
            }
        }

        // Acquire: pairs with the owner's Release store that cleared the bit after its
        // populate finished (a stale set bit only costs a later re-populate).
        let unreserved = b.state.load(Acquire) & STATE_UNRESERVED != 0;
        let mut flags = extra | if unreserved { flag::UNPOPULATED } else { 0 };
        // The commit of a free: one store (the size is unchanged: so is the seal).
        self.store_size(off, b_size | flag::FREE | flags, 0);
        b.generation.store(0, Relaxed);
        crash_point(CrashPoint::FreeAfterMark);
        stats
            .in_use
            .store(stats.in_use.load(Relaxed).saturating_sub(b_size), Relaxed);
        stats
            .live
            .store(stats.live.load(Relaxed).saturating_sub(1), Relaxed);

        let watermark = stats.populated.load(Relaxed);
        let mut estimate = if extra != 0 {
            0
        } else if unreserved {
            b_size
        } else {
            b_size.min(watermark.saturating_sub(off))
        };
        let (mut start, mut size) = (off, b_size);

        if let Some((r_sf, r_size)) = right_free {
            self.remove_free(right, r_size)?;
            estimate += self.populated_estimate(right, r_size, r_sf, watermark);
            flags = (flags | r_sf) & flag::UNPOPULATED;
            // Merge: grow the left block in one store; the right header is garbage now.
            self.store_size(start, (size + r_size) | flag::FREE | flags, 0);
            size += r_size;
            self.link_next(start + size, start);
            crash_point(CrashPoint::FreeAfterMergeRight);
        }
        if let Some((_, l_sf, l_size)) = left_free {
            self.remove_free(left, l_size)?;
            estimate += self.populated_estimate(left, l_size, l_sf, watermark);
            flags = (flags | l_sf) & flag::UNPOPULATED;
            self.store_size(left, (l_size + size) | flag::FREE | flags, 0);
            start = left;
            size += l_size;
            self.link_next(start + size, start);
        }
        // The estimate only matters for UNPOPULATED blocks (see `populated_estimate`).
        self.block(start).len.store(estimate.min(size), Relaxed);
        if estimate >= pages::RELEASE_MIN && self.over_retention(estimate) {
            self.release(start, size, flags);
        }
        self.insert_free(start, size)?;
        Ok(start)
    }

    /// Grows the heap (up to the reservation) so that a free block of `need` bytes can
    /// exist: by at least `need` plus a page, and at least doubling it, in steps of
    /// [`pages::GROW_STEP`]. Nothing happens if the heap is at its maximum or the system
    /// refuses the new header's page (the allocation then fails with `NoFit`).
    ///
    /// Crash consistency (see the mempool docs): 1. if the pages between the populated
    /// watermark and the old end are the last free block's interior, that block is
    /// flagged `UNPOPULATED` (conservative); 2. the new free block's header is written
    /// past the old end (unreachable); 3. `heap_end` is raised in one store (the chain
    /// now ends at the new end, through the new block); 4. the new block is merged into a
    /// free last block (one store) or listed. Recovery after a death at any point sees a
    /// walkable chain.
    fn grow(&self, need: u64) -> Result<(), Corrupt> {
        let hdr = self.hdr;
        let (start, end, max) = (hdr.heap_start, self.end(), hdr.region_len);
        let page = self.page;
        let Some(room) = max.checked_sub(end).filter(|&r| r >= page + MIN_BLOCK) else {
            return Ok(());
        };
        if need > room + (end - start) {
            // Even the whole reservation could not hold it: do not grow for nothing.
            return Ok(());
        }
        let want = need.saturating_add(page).max(end - start);
        let grow = round_up(want, pages::GROW_STEP)
            .unwrap_or(u64::MAX)
            .min(room)
            & !(page - 1);
        let new_end = end + grow;
        // The last block: walk the chain (growth is rare: the heap at least doubles).
        let (mut off, mut last, mut steps) = (start, NIL, 0u64);
        while off < end {
            let (_, sf) = self.checked(off)?;
            last = off;
            off += sf & !flag::MASK;
            steps += 1;
            if steps > self.max_blocks() {
                return Err(Corrupt("a block chain that loops".into()));
            }
        }
        if off != end || last == NIL {
            return Err(Corrupt::at(
                off,
                "a block chain that does not end at the heap's end",
            ));
        }
        let (l, l_sf) = self.checked(last)?;
        let l_size = l_sf & !flag::MASK;
        let last_free = l_sf & flag::FREE != 0;
        if last_free {
            self.check_linked(last, l_size)?;
        }
        // SAFETY: the new header's page, inside the reservation (`new_end <= max`), which
        // is mapped in every process of the tree since before the first fork.
        if unsafe { pages::populate(self.base(), end..end + page) }.is_err() {
            return Ok(());
        }
        let stats = &hdr.stats;
        let watermark = stats.populated.load(Relaxed);
        if last_free && watermark < end && l_sf & flag::UNPOPULATED == 0 {
            // 1. The pages from the watermark to the end are the last block's interior.
            let estimate = self.populated_estimate(last, l_size, l_sf, watermark);
            self.remove_free(last, l_size)?;
            l.len.store(estimate, Relaxed);
            self.store_size(last, l_sf | flag::UNPOPULATED, 0);
            self.insert_free(last, l_size)?;
        }
        // 2. The new block's header, unreachable until the end moves.
        if stats.dirty.load(Relaxed) < end + HEADER {
            stats.dirty.store(end + HEADER, Relaxed);
        }
        self.write_free_header(end, grow, last, flag::UNPOPULATED, 0);
        // 3. The commit. Release: lock-free readers that see the new end see its header.
        hdr.heap_end.store(new_end, Release);
        crash_point(CrashPoint::GrowAfterEnd);
        stats
            .populated
            .store(stats.populated.load(Relaxed).max(end + page), Relaxed);
        // 4. Merge with a free last block, or list the new one.
        if last_free {
            let (_, l_sf) = self.checked(last)?;
            self.remove_free(last, l_size)?;
            self.store_size(last, (l_size + grow) | flag::FREE | flag::UNPOPULATED, 0);
            let estimate = self.populated_estimate(last, l_size, l_sf, watermark);
            l.len.store(estimate, Relaxed);
            self.insert_free(last, l_size + grow)?;
        } else {
            self.insert_free(end, grow)?;
        }
        Ok(())
    }

    /// Gives back the pages of every free block the cache counts; returns how many
    /// populated bytes the cache held before.
    pub(crate) fn trim(&self) -> Result<u64, Corrupt> {
        let hdr = self.hdr;
        let before = hdr.cached.load(Relaxed);
        let mut cached = Vec::new();
        let mut steps = 0;
        for fl in 0..FL_COUNT {
            for sl in 0..SL_COUNT {
                let mut off = hdr.heads[fl][sl].load(Relaxed);
                while off != NIL {
                    let (b, sf) = self.checked(off)?;
                    if sf & flag::FREE == 0 {
                        return Err(Corrupt::at(off, "a used block in a free list"));
                    }
                    if b.tag.load(Relaxed) > 0 {
                        cached.push(off);
                    }
                    steps += 1;
                    if steps > self.max_blocks() {
                        return Err(Corrupt("a free list that loops".into()));
                    }
                    off = b.next_free.load(Relaxed);
                }
            }
        }
        for off in cached {
            let sf = self.block(off).size_flags.load(Relaxed);
            let size = sf & !flag::MASK;
            self.remove_free(off, size)?;
            self.release(off, size, sf & flag::UNPOPULATED);
            self.insert_free(off, size)?;
        }
        Ok(before)
    }

    /// Gives the interior pages of free block `off` back: flag first (conservative), then
    /// remove, then claim zero.
    fn release(&self, off: u64, size: u64, flags: u64) {
        let b = self.block(off);
        let stats = &self.hdr.stats;
        // Everything written lies below the dirty watermark and everything populated below
        // the populated one; past both, the pages are untouched (and read zero).
        let touched = stats
            .populated
            .load(Relaxed)
            .max(round_up(stats.dirty.load(Relaxed), self.page).unwrap_or(u64::MAX));
        let range = pages::intersect(&pages::interior(off, off + size, self.page), &(0..touched));
        b.len.store(0, Relaxed);
        self.store_size(off, size | flag::FREE | flags | flag::UNPOPULATED, 0);
        // SAFETY: the range is the page interior of a free block (holds no live data: its
        // bytes belong to nobody, and headers sit outside the interior), inside the region.
        if unsafe { pages::remove(self.base(), range) }.is_ok() {
            // The interior now reads zero below both watermarks, and nothing at or above
            // the dirty watermark was ever written: all of it reads zero.
            self.store_size(off, size | flag::FREE | flag::UNPOPULATED | flag::ZEROED, 0);
        }
    }

    /// Validates a block for an owner-level operation (free, adopt) under the lock:
    /// everything [`Region::validate`] checks, plus that the neighbours agree.
    pub(crate) fn validate_owned(
        &self,
        payload: u64,
        generation: u64,
        len: u64,
    ) -> Result<u64, &'static str> {
        let off = self.validate(payload, generation, len)?;
        let b = self.block(off);
        if b.len.load(Relaxed) != len {
            return Err("length does not match the allocation");
        }
        let size = b.size_flags.load(Relaxed) & !flag::MASK;
        if self.check_next(off + size, off).is_err() {
            return Err("offset does not point at a block of this pool");
        }
        let prev = b.prev_phys.load(Relaxed);
        if prev != NIL && (prev < self.hdr.heap_start || prev >= off) {
            return Err("offset does not point at a block of this pool");
        }
        Ok(off)
    }
}
