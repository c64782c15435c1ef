//! The slot protocol of a camlbox over a plain byte region: claim, publish, consume,
//! reclaim. No waiting, no system calls, no mmap: those live in the parent module, so this
//! file can be model-checked with loom over heap memory (see `loom_tests.rs`).
//!
//! The protocol itself (states, orderings, proofs) is written down in the module docs of
//! [`crate::camlbox`]; the comments here only say which step of it a line implements.

use std::mem::size_of;
use std::ptr::NonNull;

use super::layout::{CachePadded, Geometry, RingHeader, SlotHeader, SlotState, ABANDONED};
use crate::loom::{fence, spin_hint, AtomicU32, AtomicU64, Ordering};

/// How many inconsistent snapshots a sender tolerates before it calls the ring corrupt.
/// Legitimate ones are stale reads that the next reload fixes.
const MAX_STALE_RETRIES: u32 = 1 << 16;

/// Why a claim failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClaimError {
    /// Every slot is claimed or published and not yet consumed.
    Full,
    /// The shared words make no sense (something scribbled over the box).
    Corrupt,
}

/// What the receiver found at its head position.
pub(crate) enum Recv<'a> {
    /// Nothing published, nothing claimed: the box is empty.
    Empty,
    /// A sender claimed the head slot and has not published it yet.
    Writing { pos: u32, writer: u32 },
    /// A published message; dropping the guard frees the slot.
    Ready(ReadGuard<'a>),
    /// The head slot's state word was garbage; the slot was skipped.
    Skipped,
    /// The head word is out of range: the ring is unusable.
    Corrupt,
}

/// A view of a ring region. Process-local (it holds an address), cheap to copy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ring {
    base: NonNull<u8>,
    geo: Geometry,
}

// SAFETY: a `Ring` is an address plus geometry; every access it makes to the shared region
// is atomic, or (payload bytes) done by the one party the slot protocol hands the slot to.
unsafe impl Send for Ring {}
// SAFETY: as above: concurrent use from many threads (and processes) is the design.
unsafe impl Sync for Ring {}

impl Ring {
    /// Lays out a fresh ring (all slots empty, head = tail = 0) in `base`.
    ///
    /// # Safety
    /// `base` must be valid for writes of `geo.region_len()` bytes, aligned to
    /// [`Geometry::region_align`], not yet shared with any other thread or process, and
    /// stay mapped for as long as the returned `Ring` (or a copy) is used. Under loom, call
    /// [`Ring::destroy`] before freeing it.
    pub(crate) unsafe fn init(base: NonNull<u8>, geo: Geometry) -> Ring {
        debug_assert_eq!(base.as_ptr() as usize % Geometry::region_align(), 0);
        let ring = Ring { base, geo };
        // SAFETY: the caller hands us the region for writing, aligned for `RingHeader`.
        unsafe {
            base.cast::<RingHeader>().as_ptr().write(RingHeader {
                tail: CachePadded(AtomicU32::new(0)),
                head: CachePadded(AtomicU32::new(0)),
            });
        }
        for index in 0..geo.capacity {
            // SAFETY: `slot_ptr` stays inside the region for `index < capacity` and is
            // 64-aligned (region aligned, header and stride multiples of 64).
            unsafe {
                ring.slot_ptr(index).write(SlotHeader {
                    state: AtomicU64::new(SlotState::Empty { pos: index }.encode()),
                    len: AtomicU32::new(0),
                    _reserved: 0,
                });
            }
        }
        ring
    }

    /// A view of a ring another process laid out with [`Ring::init`] in `base`.
    ///
    /// # Safety
    /// `base` must hold a ring of geometry `geo` made by `init`, aligned to
    /// [`Geometry::region_align`], and stay mapped for as long as the returned `Ring` (or a
    /// copy) is used.
    pub(crate) unsafe fn attach(base: NonNull<u8>, geo: Geometry) -> Ring {
        debug_assert_eq!(base.as_ptr() as usize % Geometry::region_align(), 0);
        Ring { base, geo }
    }

    /// Drops the atomics `init` placed (needed under loom, a no-op with std atomics).
    ///
    /// # Safety
    /// No copy of this ring may be used afterwards, by any thread.
    #[cfg(loom)]
    pub(crate) unsafe fn destroy(&self) {
        // SAFETY: the caller guarantees exclusive, final access; these are the values
        // `init` wrote.
        unsafe {
            std::ptr::drop_in_place(self.base.cast::<RingHeader>().as_ptr());
            for index in 0..self.geo.capacity {
                std::ptr::drop_in_place(self.slot_ptr(index));
            }
        }
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geo
    }

    fn header(&self) -> &RingHeader {
        // SAFETY: `init` wrote a `RingHeader` at `base`, which stays valid while `self`
        // is used (contract of `init`); shared access is through atomics only.
        unsafe { self.base.cast::<RingHeader>().as_ref() }
    }

    /// # Safety
    /// `index < capacity`.
    unsafe fn slot_ptr(&self, index: u32) -> *mut SlotHeader {
        debug_assert!(index < self.geo.capacity);
        let offset = size_of::<RingHeader>() + index as usize * self.geo.stride;
        // SAFETY: `offset + stride <= region_len` for `index < capacity` (caller).
        unsafe { self.base.as_ptr().add(offset).cast() }
    }

    /// The header of slot `index`, `None` if a corrupt position sent us out of range.
    fn slot(&self, index: u32) -> Option<&SlotHeader> {
        if index >= self.geo.capacity {
            return None;
        }
        // SAFETY: in range (checked); `init` wrote a `SlotHeader` there.
        Some(unsafe { &*self.slot_ptr(index) })
    }

    /// The payload bytes of slot `index` (`slot_size` of them).
    ///
    /// # Safety
    /// `index < capacity`, and the caller owns the slot by the protocol (it is `Writing`
    /// by us, or `Full` and we are the receiver) for the lifetime of the pointer's use.
    unsafe fn payload(&self, index: u32) -> *mut u8 {
        // SAFETY: the payload follows the header inside the slot's stride (caller: index
        // in range).
        unsafe {
            self.slot_ptr(index)
                .cast::<u8>()
                .add(size_of::<SlotHeader>())
        }
    }

    /// Claims a free slot for process `writer` (its pid, never 0). Never waits on another
    /// sender: lock-free, allocation-free, async-signal-safe.
    pub(crate) fn try_claim(&self, writer: u32) -> Result<Claim<'_>, ClaimError> {
        self.claim(writer, true)
    }

    /// Claims a slot and leaves it `Writing` forever without moving the tail: a sender
    /// killed between its claim CAS and its tail CAS.
    #[cfg(test)]
    pub(crate) fn claim_and_die_before_tail(&self, writer: u32) -> Result<(), ClaimError> {
        self.claim(writer, false).map(Claim::die)
    }

    #[inline]
    fn claim(&self, writer: u32, move_tail: bool) -> Result<Claim<'_>, ClaimError> {
        debug_assert_ne!(writer, 0);
        let geo = &self.geo;
        let tail = &self.header().tail.0;
        let mut stale = 0u32;
        // Relaxed: the tail only says where to try; the claim CAS below validates it.
        let mut t = tail.load(Ordering::Relaxed);
        loop {
            let index = geo.index(t);
            let slot = self.slot(index).ok_or(ClaimError::Corrupt)?;
            // Relaxed: only classified here; we act on it through the CAS (Acquire) or
            // report Full, which the fence below double-checks.
            let raw = slot.state.load(Ordering::Relaxed);
            let state = SlotState::decode(raw, index, geo);
            match state {
                Some(SlotState::Empty { pos }) if pos == t => {
                    let claimed = SlotState::Writing { pos: t, writer }.encode();
                    // Acquire on success: pairs with the receiver's Release that freed the
                    // slot, so its reads of the old payload happen before our writes.
                    match slot.state.compare_exchange_weak(
                        raw,
                        claimed,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) if !move_tail => {
                            return Ok(Claim {
                                ring: self,
                                index,
                                pos: t,
                                published: false,
                            })
                        }
                        Ok(_) => {
                            // Help ourselves past the slot; failing means someone helped.
                            // Relaxed: a hint, as above.
                            let _ = tail.compare_exchange(
                                t,
                                geo.next(t),
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            );
                            return Ok(Claim {
                                ring: self,
                                index,
                                pos: t,
                                published: false,
                            });
                        }
                        Err(_) => {
                            // Someone claimed it first. Relaxed: a hint, validated by the
                            // next claim CAS like the first load.
                            spin_hint();
                            t = tail.load(Ordering::Relaxed);
                        }
                    }
                }
                // Claimed (or even published) at `t` already, or a lap ahead (the tail is
                // stale, e.g. the claimer died and was reclaimed): move the tail on.
                Some(s)
                    if (s.pos() == t && !matches!(s, SlotState::Empty { .. }))
                        || s.pos() == t.wrapping_add(geo.one_lap) =>
                {
                    // Continue from the CAS's value either way: an RMW reads the latest
                    // tail, where a plain reload might return the same stale one.
                    let next = geo.next(t);
                    t = match tail.compare_exchange(t, next, Ordering::Relaxed, Ordering::Relaxed) {
                        Ok(_) => next,
                        Err(now) => now,
                    };
                }
                // Still occupied by the previous lap: full, unless the snapshot is stale.
                Some(SlotState::Writing { pos, .. } | SlotState::Full { pos })
                    if pos.wrapping_add(geo.one_lap) == t =>
                {
                    // SeqCst fence, then re-read the tail (as crossbeam does): if the tail
                    // has not moved, the box really was full at some instant after our
                    // loads. A blocked sender re-checks after its SeqCst futex handshake
                    // anyway, so a stale "full" here costs at most a retry, not a wakeup.
                    fence(Ordering::SeqCst);
                    let now = tail.load(Ordering::Relaxed);
                    if now == t {
                        return Err(ClaimError::Full);
                    }
                    t = now;
                }
                // A snapshot no consistent moment can produce: our tail was stale. Reload.
                _ => {
                    stale += 1;
                    if stale > MAX_STALE_RETRIES {
                        return Err(ClaimError::Corrupt);
                    }
                    // Relaxed: as above; `spin_hint` gives the stores we lag behind time
                    // to arrive (under loom, a yield makes the model move on).
                    spin_hint();
                    t = tail.load(Ordering::Relaxed);
                }
            }
        }
    }

    /// Looks at the head slot, as the receiver (only one party may call this at a time).
    pub(crate) fn try_recv(&self) -> Recv<'_> {
        let geo = &self.geo;
        let head = &self.header().head.0;
        loop {
            // Acquire: pairs with the Release store of a previous receiver (maybe another,
            // now dead, process) so we start from its last consumed position.
            let h = head.load(Ordering::Acquire);
            let index = geo.index(h);
            let Some(slot) = self.slot(index) else {
                return Recv::Corrupt;
            };
            // Acquire: pairs with the publisher's Release, making `len` and the payload
            // visible before we read them.
            let raw = slot.state.load(Ordering::Acquire);
            match SlotState::decode(raw, index, geo) {
                Some(SlotState::Empty { pos }) if pos == h => return Recv::Empty,
                Some(SlotState::Writing { pos, writer }) if pos == h => {
                    return Recv::Writing { pos, writer }
                }
                Some(SlotState::Full { pos }) if pos == h => {
                    // Relaxed: ordered by the Acquire load of the state above.
                    let len = slot.len.load(Ordering::Relaxed);
                    let guard = ReadGuard {
                        ring: self,
                        index,
                        pos: h,
                        len,
                    };
                    if len == ABANDONED {
                        drop(guard); // frees the slot and moves on
                        continue;
                    }
                    return Recv::Ready(guard);
                }
                // The previous receiver freed `h` and died before advancing the head.
                Some(s) if s.pos() == h.wrapping_add(geo.one_lap) => {
                    // Release: pairs with the Acquire load above in a later receiver.
                    head.store(geo.next(h), Ordering::Release);
                }
                _ => {
                    // Garbage: free the slot for the next lap and report the loss. A CAS,
                    // not a store, in case the word changes under us.
                    let freed = SlotState::Empty {
                        pos: h.wrapping_add(geo.one_lap),
                    };
                    // Release: nothing of ours to publish, but keeps every "free" edge
                    // uniform with `ReadGuard::drop`.
                    if slot
                        .state
                        .compare_exchange(raw, freed.encode(), Ordering::Release, Ordering::Relaxed)
                        .is_ok()
                    {
                        head.store(geo.next(h), Ordering::Release);
                        return Recv::Skipped;
                    }
                }
            }
        }
    }

    /// Frees the head slot that process `writer` claimed at `pos` and will never publish
    /// (the caller established that `writer` is dead). Receiver only. `true` if reclaimed.
    pub(crate) fn reclaim(&self, pos: u32, writer: u32) -> bool {
        let geo = &self.geo;
        let head = &self.header().head.0;
        if head.load(Ordering::Relaxed) != pos {
            return false; // not our head any more (we are the only head writer)
        }
        let Some(slot) = self.slot(geo.index(pos)) else {
            return false;
        };
        let claimed = SlotState::Writing { pos, writer }.encode();
        let freed = SlotState::Empty {
            pos: pos.wrapping_add(geo.one_lap),
        };
        // If the writer died between its claim and its tail CAS, nobody may have moved the
        // tail on yet: do it, so the tail is not left a lap behind (senders would fix it
        // too, via the lap-ahead rule; this keeps `len` right meanwhile). Relaxed: a hint.
        let _ = self.header().tail.0.compare_exchange(
            pos,
            geo.next(pos),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        // Release: as in `ReadGuard::drop`. Relaxed on failure: we then do nothing.
        if slot
            .state
            .compare_exchange(
                claimed,
                freed.encode(),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        // Release: pairs with a later receiver's Acquire load of the head.
        head.store(geo.next(pos), Ordering::Release);
        true
    }

    /// How many slots are claimed or published, approximately (a racy snapshot).
    pub(crate) fn len(&self) -> usize {
        let geo = &self.geo;
        // Relaxed: an estimate; nothing is read on the strength of it.
        let h = self.header().head.0.load(Ordering::Relaxed);
        let t = self.header().tail.0.load(Ordering::Relaxed);
        let (hi, ti) = (geo.index(h), geo.index(t));
        let n = if ti > hi {
            ti - hi
        } else if ti < hi {
            geo.capacity - hi + ti
        } else if h == t {
            0
        } else {
            geo.capacity
        };
        n.min(geo.capacity) as usize
    }
}

/// A claimed slot, being written by us. Publish it with [`Claim::publish`]; dropping it
/// unpublished (a panic while encoding) publishes it as abandoned, which the receiver
/// skips, so a panicking sender cannot wedge the box either.
pub(crate) struct Claim<'a> {
    ring: &'a Ring,
    index: u32,
    pos: u32,
    published: bool,
}

impl Claim<'_> {
    /// The slot's payload area, ours to write until we publish.
    pub(crate) fn payload(&mut self) -> &mut [u8] {
        // SAFETY: the slot is `Writing` by us: no other party reads or writes its payload
        // until we publish (the receiver reclaims only slots of dead writers). `index` came
        // from a successful claim, so it is in range.
        unsafe {
            std::slice::from_raw_parts_mut(self.ring.payload(self.index), self.ring.geo.slot_size())
        }
    }

    /// Publishes `len` bytes of payload and hands the slot to the receiver.
    pub(crate) fn publish(mut self, len: usize) {
        assert!(len <= self.ring.geo.slot_size(), "payload beyond the slot");
        self.publish_len(len as u32);
        self.published = true;
    }

    fn publish_len(&self, len: u32) {
        let Some(slot) = self.ring.slot(self.index) else {
            return;
        };
        // Relaxed: ordered before the receiver's read by the Release store below.
        slot.len.store(len, Ordering::Relaxed);
        // Release: makes `len` and the payload visible to the receiver's Acquire load.
        // A plain store suffices: while `Writing` by a live process, no one else writes
        // the word.
        slot.state.store(
            SlotState::Full { pos: self.pos }.encode(),
            Ordering::Release,
        );
    }

    /// Leaves the slot claimed forever, as a sender killed mid-write would.
    #[cfg(test)]
    pub(crate) fn die(mut self) {
        self.published = true; // suppress the abandon in `drop`
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.published {
            self.publish_len(ABANDONED);
        }
    }
}

/// A published slot the receiver is reading; dropping it frees the slot.
pub(crate) struct ReadGuard<'a> {
    ring: &'a Ring,
    index: u32,
    pos: u32,
    len: u32,
}

impl ReadGuard<'_> {
    /// The message bytes, or the bad length the sender recorded.
    pub(crate) fn bytes(&self) -> Result<&[u8], u32> {
        if self.len as usize > self.ring.geo.slot_size() {
            return Err(self.len);
        }
        // SAFETY: the slot is `Full` and we are the receiver: nobody writes it until we
        // free it in `drop`, after the last use of this borrow. `len <= slot_size`
        // (checked), so the slice stays inside the slot; `index` is in range (from
        // `try_recv`).
        Ok(unsafe { std::slice::from_raw_parts(self.ring.payload(self.index), self.len as usize) })
    }

    /// Position of the message (for the non-loom tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn pos(&self) -> u32 {
        self.pos
    }

    /// Frees the slot but "dies" before advancing the head, as a receiver killed between
    /// the two stores would.
    #[cfg(test)]
    pub(crate) fn free_without_advance(self) {
        let this = std::mem::ManuallyDrop::new(self);
        this.free_slot();
    }

    fn free_slot(&self) {
        let geo = &self.ring.geo;
        let Some(slot) = self.ring.slot(self.index) else {
            return;
        };
        let freed = SlotState::Empty {
            pos: self.pos.wrapping_add(geo.one_lap),
        };
        // Release: our reads of the payload happen before the next writer's writes (it
        // claims with an Acquire CAS that reads this value).
        slot.state.store(freed.encode(), Ordering::Release);
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.free_slot();
        // Release: pairs with a later receiver's Acquire load of the head. Freeing the slot
        // *before* advancing the head is what lets a replacement receiver repair a head
        // left behind (see `try_recv`), and what lets senders call a previous-lap slot
        // "full" without looking at the head.
        self.ring
            .header()
            .head
            .0
            .store(self.ring.geo.next(self.pos), Ordering::Release);
    }
}

/// Heap memory to back a ring in tests (and under loom), freed on drop.
#[cfg(test)]
pub(crate) struct HeapRegion {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
    ring: Ring,
}

// SAFETY: the region is owned heap memory; the ring inside is `Send + Sync` by design.
#[cfg(test)]
unsafe impl Send for HeapRegion {}
// SAFETY: as above; `&HeapRegion` only hands out `&Ring`.
#[cfg(test)]
unsafe impl Sync for HeapRegion {}

#[cfg(test)]
impl HeapRegion {
    pub(crate) fn new(capacity: usize, slot_size: usize) -> HeapRegion {
        let geo = Geometry::new(capacity, slot_size).expect("valid test geometry");
        let layout =
            std::alloc::Layout::from_size_align(geo.region_len(), Geometry::region_align())
                .expect("layout");
        // SAFETY: the layout has non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        // SAFETY: fresh, aligned, exclusively ours; freed only in `drop`, after `destroy`.
        let ring = unsafe { Ring::init(ptr, geo) };
        HeapRegion { ptr, layout, ring }
    }

    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }
}

#[cfg(test)]
impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: tests join every thread using the ring before dropping the region.
        #[cfg(loom)]
        unsafe {
            self.ring.destroy();
        }
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}
