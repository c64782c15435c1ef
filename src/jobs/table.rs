//! The pool's control block in the mempool: counters, the worker table, the job table
//! (and the run set, whose protocol is in `jobs::run_set`).
//!
//! Allocated by the client at build time, before the scheduler is forked, so it sits at
//! the same address in every process of the pool. Plain `#[repr(C)]` atomics only; the
//! job table's segments are named by mempool offsets, never by pointers.
//!
//! ## The job table grows
//!
//! The table is a directory of up to [`MAX_SEGMENTS`] segments of [`SEGMENT_SLOTS`]
//! slots. Segment 0 lives in the control block; a submitter that finds every slot in
//! flight allocates the next segment from the mempool (zeroed, untagged, never freed
//! while the pool lives), publishes its offset with a CAS on the empty directory entry
//! (a loser frees its block and uses the winner's), then raises `segments` to cover it.
//! A slot index therefore stays valid for the life of the pool, and scans cover
//! `0..slot_count()`. The only limit is [`MAX_JOBS`] (the 16 bits a [`JobId`] packs its
//! slot into), refused at once with [`crate::Error::TooManyJobs`].
//!
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::futex::Event;
use crate::jobs::id::JobId;
use crate::jobs::slot::JobSlot;
use crate::jobs::stripes::{Stripe, STRIPE_SIZE};

/// Slots per segment of the job table.
pub(crate) const SEGMENT_SLOTS: usize = 512;
/// Most jobs (including nested ones) in flight at once: a [`JobId`] packs its slot in 16
/// bits.
pub(crate) const MAX_JOBS: usize = 1 << 16;
/// Most segments of the job table.
pub(crate) const MAX_SEGMENTS: usize = MAX_JOBS / SEGMENT_SLOTS;
pub(crate) const RUN_WORDS: usize = MAX_JOBS / 64;
/// Deepest job nesting a worker tracks for crash attribution.
pub(crate) const MAX_DEPTH: usize = 16;
/// Bytes of one segment of the job table.
const SEGMENT_BYTES: usize = SEGMENT_SLOTS * std::mem::size_of::<JobSlot>();
/// Bytes reserved at the end of the control block for the table of explicit processes
/// (`explicit::slot`, which checks at compile time that its table fits). The jobs layer
/// only keeps the room; it never reads it.
pub(crate) const PROCESS_TABLE_BYTES: usize = 64 << 10;

/// One worker's row in the worker table. Written by that worker (pid, stack) and by the
/// scheduler after the worker died.
#[repr(C, align(64))]
pub(crate) struct WorkerEntry {
    /// Pid of the current process for this index (0 before the first fork and between a
    /// death and the replacement's fork).
    pub(crate) pid: AtomicI32,
    /// Number of valid entries in `stack`.
    pub(crate) depth: AtomicU32,
    /// Packed [`JobId`]s of the jobs this worker is inside, outermost first.
    pub(crate) stack: [AtomicU64; MAX_DEPTH],
    /// Times this index has been (re)forked.
    pub(crate) incarnations: AtomicU64,
    /// A new incarnation starts work only once `gate` reaches its number: the scheduler
    /// opens it after clearing its dead predecessor's pins, so that it cannot clear a pin
    /// of the new process.
    pub(crate) gate: AtomicU64,
    pub(crate) gate_event: Event,
    /// Packed [`JobId`] of the nested job this worker waits for with a deadline (0:
    /// none); spare workers run that job's sub-tree.
    pub(crate) waiting_on: AtomicU64,
    /// The CPU this worker was last seen on, + 1 (0: not yet): a hint (`jobs::cpus`).
    pub(crate) cpu: AtomicU32,
    /// What this worker is hungry for, if its bit in the hungry set is up
    /// (`jobs::run_set`, "Hungry workers"): any job, or the jobs of one sub-tree.
    pub(crate) hungry_for: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<WorkerEntry>() % 64 == 0);

impl WorkerEntry {
    /// Records that this worker entered `job` (the worker itself, before running it).
    /// Returns false if the stack is full (the job then runs unrecorded: a crash inside
    /// it is still caught by the job's owner through the scheduler's pin cleanup).
    pub(crate) fn push(&self, job: JobId) -> bool {
        let d = self.depth.load(Ordering::Relaxed) as usize;
        if d >= MAX_DEPTH {
            return false;
        }
        // Release (paired with the Acquire loads in `jobs`): the entry is written before
        // the depth that covers it. The scheduler reads the stack after this process died
        // (the kernel's exit / wait path orders everything before it) or, for a live
        // worker, once a cancel's grace period has passed (`kill_overdue`), long after
        // these stores. Only this worker writes its row, so no stronger order is needed;
        // a SeqCst store costs a locked instruction per nested job on x86.
        self.stack[d].store(job.pack(), Ordering::Release);
        self.depth.store(d as u32 + 1, Ordering::Release);
        true
    }

    pub(crate) fn pop(&self) {
        let d = self.depth.load(Ordering::Relaxed);
        if d > 0 {
            // Release: as in `push`.
            self.depth.store(d - 1, Ordering::Release);
        }
    }

    /// The jobs a worker is (or a dead worker was) inside.
    pub(crate) fn jobs(&self) -> Vec<JobId> {
        // Acquire: pairs with `push` / `pop` (an entry below the depth read is written).
        let d = (self.depth.load(Ordering::Acquire) as usize).min(MAX_DEPTH);
        self.stack[..d]
            .iter()
            .filter_map(|w| JobId::unpack(w.load(Ordering::Acquire)))
            .collect()
    }
}

/// The header of the control block.
#[repr(C, align(64))]
pub(crate) struct ControlHeader {
    /// Job generations (never 0).
    pub(crate) next_gen: AtomicU64,
    /// Workers that have started (counts up once per fork); the client waits on
    /// `ready_event` for the first `n` at build time.
    pub(crate) started: AtomicU32,
    /// Set by the scheduler when it shuts down or the pool can serve no more.
    pub(crate) closed: AtomicU32,
    pub(crate) ready_event: Event,
    /// Rotating start index for slot search.
    pub(crate) slot_hint: AtomicU32,
    /// Woken when there may be new work for idle workers (a job became runnable, or the
    /// pool is closing).
    pub(crate) work: Event,
    /// Woken whenever a job of the pool ends (completes, fails, or a failed job loses
    /// its last pin), after the job's own event: the pool's async waiter sleeps on it.
    pub(crate) ended: Event,
    /// Segments of the job table in use (segment 0 is always there).
    segments: AtomicU32,
    /// Mempool offsets of the job table's segments (0: not allocated yet).
    directory: [AtomicU64; MAX_SEGMENTS],
    /// The run set: one bit per slot (see `jobs::run_set`).
    pub(crate) runnable: [AtomicU64; RUN_WORDS],
    /// The CPU a client thread was last seen on, + 1 (0: not yet): a hint (`jobs::cpus`).
    pub(crate) client_cpu: AtomicU32,
    /// The workers looking for work (see `jobs::run_set`, "Hungry workers").
    pub(crate) hungry: HungrySet,
}

/// One bit per worker row: set while that worker looks for work (`jobs::run_set`). On a
/// cache line of its own: workers write it when they go idle or find work, and every
/// task running a nested job inline reads it between chunks.
#[repr(C, align(64))]
pub(crate) struct HungrySet(pub(crate) [AtomicU64; crate::jobs::state::MAX_WORKERS / 64]);

/// Typed view of the control block: header, worker table, job table, laid out
/// back-to-back in one mempool block.
#[derive(Clone, Copy)]
pub(crate) struct Control {
    base: *const u8,
    /// Base of the mempool region the segment offsets are relative to.
    region: *const u8,
    region_len: usize,
    workers: usize,
}

// SAFETY: `Control` is a view of shared memory made only of atomics; sharing it between
// threads is no different from sharing `&AtomicU64`s.
unsafe impl Send for Control {}
// SAFETY: as above.
unsafe impl Sync for Control {}

impl Control {
    /// Bytes needed for `workers` workers (with the first segment of the job table and
    /// the room for the explicit-process table).
    pub(crate) fn size(workers: usize) -> usize {
        Self::process_table_offset(workers) + PROCESS_TABLE_BYTES
    }

    fn process_table_offset(workers: usize) -> usize {
        Self::slots_offset(workers) + SEGMENT_BYTES
    }

    /// The [`PROCESS_TABLE_BYTES`] zero-initialised bytes (64-aligned) reserved for the
    /// explicit-process table, mapped for as long as this view is usable.
    pub(crate) fn process_table(&self) -> *const u8 {
        // SAFETY: `new`'s contract: the block holds `size(workers)` bytes, of which these
        // are the last `PROCESS_TABLE_BYTES`.
        unsafe { self.base.add(Self::process_table_offset(self.workers)) }
    }

    /// Rows of the worker table for a pool of `workers`: the workers, then as many spare
    /// rows (within [`MAX_WORKERS`](crate::jobs::state::MAX_WORKERS) pin bits) for the spare
    /// workers the scheduler forks for bounded nested waits.
    #[inline]
    pub(crate) fn entries_for(workers: usize) -> usize {
        workers + workers.min(crate::jobs::state::MAX_WORKERS - workers)
    }

    fn workers_offset() -> usize {
        std::mem::size_of::<ControlHeader>()
    }

    fn slots_offset(workers: usize) -> usize {
        Self::workers_offset() + Self::entries_for(workers) * std::mem::size_of::<WorkerEntry>()
    }

    /// # Safety
    /// `base` must point to at least `Control::size(workers)` zeroed (or previously so
    /// initialised) bytes of shared memory, 64-byte aligned, inside the mempool region
    /// `region .. region + region_len`, all of which stays mapped for as long as the view
    /// is used.
    pub(crate) unsafe fn new(
        base: *const u8,
        region: *const u8,
        region_len: usize,
        workers: usize,
    ) -> Control {
        debug_assert_eq!(base as usize % 64, 0);
        debug_assert!(base as usize >= region as usize);
        debug_assert_eq!(Self::slots_offset(workers) % 64, 0);
        let c = Control {
            base,
            region,
            region_len,
            workers,
        };
        let first = (base as usize + Self::slots_offset(workers) - region as usize) as u64;
        // Relaxed: the block is zero-initialised by its creator before any other process
        // exists (or sees it), and later views only find the same value here.
        let h = c.header();
        if h.directory[0].load(Ordering::Relaxed) == 0 {
            h.directory[0].store(first, Ordering::Relaxed);
            h.segments.store(1, Ordering::Relaxed);
        }
        c
    }

    pub(crate) fn header(&self) -> &ControlHeader {
        // SAFETY: `new`'s contract: the header is at offset 0, aligned, mapped, and made of
        // atomics (all-zero is a valid value).
        unsafe { &*(self.base as *const ControlHeader) }
    }

    pub(crate) fn worker(&self, i: usize) -> &WorkerEntry {
        assert!(i < self.entries());
        // SAFETY: in bounds (asserted) of the worker table laid out by `size`; atomics only.
        unsafe { &*(self.base.add(Self::workers_offset()) as *const WorkerEntry).add(i) }
    }

    /// Slot `i`, which must be below [`Control::slot_count`] (an index taken from a
    /// [`JobId`] this process made or validated).
    ///
    /// # Panics
    /// If slot `i` does not exist: an internal invariant, never user input.
    #[inline]
    pub(crate) fn slot(&self, i: usize) -> &JobSlot {
        self.try_slot(i)
            .unwrap_or_else(|| panic!("job slot {i} is not allocated"))
    }

    /// Slot `i`, or `None` if the table has no such slot (an index read from shared
    /// memory that a task may have scribbled over).
    #[inline]
    pub(crate) fn try_slot(&self, i: usize) -> Option<&JobSlot> {
        let seg = i / SEGMENT_SLOTS;
        if seg == 0 {
            // The first segment is part of the control block itself (`size`), at a fixed
            // place: no directory to read (every job lookup passes here).
            // SAFETY: `new`'s contract: `slots_offset .. size` is mapped, zero-initialised
            // and aligned, holding `SEGMENT_SLOTS` slots of atomics; `i` is below that.
            return Some(unsafe {
                &*(self.base.add(Self::slots_offset(self.workers)) as *const JobSlot).add(i)
            });
        }
        if seg >= MAX_SEGMENTS {
            return None;
        }
        // Acquire: pairs with the AcqRel CAS that published the segment, so its zeroed
        // contents are visible.
        let off = self.header().directory[seg].load(Ordering::Acquire) as usize;
        if off == 0 || off.checked_add(SEGMENT_BYTES)? > self.region_len || off % 64 != 0 {
            return None;
        }
        // SAFETY: the segment `off .. off + SEGMENT_BYTES` lies inside the mapped region
        // (checked just above), is 64-aligned (checked), was zeroed before its offset was
        // published, and holds `SEGMENT_SLOTS` slots made only of atomics; `i %
        // SEGMENT_SLOTS` is in bounds.
        Some(unsafe { &*(self.region.add(off) as *const JobSlot).add(i % SEGMENT_SLOTS) })
    }

    /// The stripes of `slot`'s job (`jobs::stripes`), if it has any: `Ok(None)` when it
    /// claims through its single counter.
    ///
    /// # Errors
    /// If the header names stripes outside the region (a task overwrote it).
    pub(crate) fn stripes_of<'a>(&self, slot: &'a JobSlot) -> Result<Option<&'a [Stripe]>, String> {
        // Relaxed: written in INIT, published with ACTIVE (the caller loaded it with
        // Acquire or pinned the slot and validated its generation).
        let off = slot.stripes.load(Ordering::Relaxed) as usize;
        if off == 0 {
            return Ok(None);
        }
        let count = slot.stripe_count.load(Ordering::Relaxed) as usize;
        let inside = count
            .checked_mul(STRIPE_SIZE)
            .and_then(|b| off.checked_add(b))
            .is_some_and(|end| end <= self.region_len);
        if !inside || off % STRIPE_SIZE != 0 || count > crate::jobs::state::MAX_WORKERS {
            return Err(
                "the job's stripes lie outside the mempool (its header was overwritten)".into(),
            );
        }
        // SAFETY: `count` stripes at `off` lie inside the mapped region (checked), aligned
        // (checked); they are atomics and padding, any bit pattern is a (possibly wrong, never
        // unsafe) stripe; the job that laid them out keeps them alive while it is ACTIVE or
        // pinned, which the caller's claim presupposes.
        Ok(Some(unsafe {
            std::slice::from_raw_parts(self.region.add(off) as *const Stripe, count)
        }))
    }

    /// Whether `slot`'s job has chunks nobody claimed yet (a hint).
    pub(crate) fn chunks_left(&self, slot: &JobSlot) -> bool {
        match self.stripes_of(slot) {
            Ok(stripes) => slot.chunks_left(stripes),
            Err(_) => false,
        }
    }

    /// Number of slots the job table has now (a multiple of [`SEGMENT_SLOTS`]).
    pub(crate) fn slot_count(&self) -> usize {
        // Acquire: a scanner that sees the count also sees the directory entries below it.
        self.header().segments.load(Ordering::Acquire) as usize * SEGMENT_SLOTS
    }

    /// Adds segment `seg` to the job table (allocated from `mempool`) unless another
    /// process did first. `Ok(false)` if the table is at its limit.
    pub(crate) fn grow(
        &self,
        mempool: &crate::mempool::Mempool,
        seg: usize,
    ) -> crate::Result<bool> {
        if seg >= MAX_SEGMENTS {
            return Ok(false);
        }
        let h = self.header();
        if h.directory[seg].load(Ordering::Acquire) == 0 {
            // Untagged: the table outlives any job tree, so `free_tagged` must not take it.
            let mut block = mempool.alloc_tagged(SEGMENT_BYTES, 64, 0)?;
            block.zero_unknown();
            let off = block.offset();
            if h.directory[seg]
                .compare_exchange(0, off, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Never freed while the pool lives: the region goes with the pool.
                let _ = block.into_raw();
            }
        }
        // AcqRel: publishes the directory entry before the count that covers it.
        h.segments.fetch_max(seg as u32 + 1, Ordering::AcqRel);
        Ok(true)
    }

    /// Number of (regular) workers.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Rows of the worker table: the workers, then the spare rows. Every per-worker
    /// table (pins, partial results) has this many entries.
    #[inline]
    pub(crate) fn entries(&self) -> usize {
        Self::entries_for(self.workers)
    }

    /// Whether job `id` belongs to the sub-tree some worker is waiting for with a
    /// deadline (what a spare worker may run).
    pub(crate) fn wanted_by_a_bounded_wait(&self, id: JobId) -> bool {
        (0..self.entries()).any(|w| {
            JobId::unpack(self.worker(w).waiting_on.load(Ordering::SeqCst))
                .is_some_and(|target| self.is_in_tree(id, target))
        })
    }

    /// Rows whose process is in a bounded wait for a nested job.
    pub(crate) fn bounded_waits(&self) -> usize {
        (0..self.entries())
            .filter(|&w| self.worker(w).waiting_on.load(Ordering::SeqCst) != 0)
            .count()
    }

    ///
    /// Each thread takes generations from the shared counter in blocks of [`GEN_BLOCK`]
    /// (one shared write per block instead of one per job: the counter's cache line is
    /// otherwise written by every worker for every nested job). A block is its process's:
    /// a forked child (which copies the forking thread's block) starts a block of its own.
    pub(crate) fn next_gen(&self) -> u64 {
        let pid = crate::sys::process::cached_pid();
        let header = self.header() as *const ControlHeader as usize;
        let raw = GENS.with(|g| {
            let (owner, pool, next, end) = g.get();
            if owner == pid && pool == header && next < end {
                g.set((owner, pool, next + 1, end));
                return next;
            }
            // Relaxed: the counter only hands out disjoint blocks.
            let start = self
                .header()
                .next_gen
                .fetch_add(GEN_BLOCK, Ordering::Relaxed);
            g.set((pid, header, start + 1, start + GEN_BLOCK));
            start
        });
        raw % (crate::jobs::id::GEN_LIMIT - 1) + 1
    }
}

/// Generations a thread takes from the shared counter at a time (see `next_gen`).
const GEN_BLOCK: u64 = 256;

thread_local! {
    /// This thread's block of generations: `(pid, pool, next, end)`.
    static GENS: std::cell::Cell<(i32, usize, u64, u64)> = const { std::cell::Cell::new((0, 0, 0, 0)) };
}

/// Longest parent chain followed (deeper trees are treated as unrelated).
const MAX_CHAIN: usize = 64;

impl Control {
    /// Whether job `id` is `ancestor` or one of its descendants.
    ///
    /// Follows parent links through the job table; a link whose slot has been reused
    /// (generation mismatch) ends the walk, so a stale id is never "related".
    pub(crate) fn is_in_tree(&self, id: JobId, ancestor: JobId) -> bool {
        let mut cur = Some(id);
        for _ in 0..MAX_CHAIN {
            let Some(j) = cur else { return false };
            if j == ancestor {
                return true;
            }
            let Some(slot) = self.try_slot(j.slot as usize) else {
                return false;
            };
            if !slot.holds(j.gen) {
                return false;
            }
            cur = slot.parent();
        }
        false
    }

    /// The slot of the top-level job with generation `root`, if it is still there.
    pub(crate) fn root_slot(&self, root: u64) -> Option<usize> {
        (0..self.slot_count()).find(|&i| {
            let s = self.slot(i);
            s.holds(root) && s.parent().is_none() && !s.state().is_reusable()
        })
    }

    /// The root generation of live job `id`.
    pub(crate) fn job_root(&self, id: JobId) -> Option<u64> {
        let slot = self.try_slot(id.slot as usize)?;
        slot.holds(id.gen)
            .then(|| slot.root.load(Ordering::Relaxed))
    }

    /// Whether any job of the tree rooted at generation `root`, other than `except`
    /// (the root's own slot, which its owner is collecting), still has a worker inside or
    /// has not been retired by its owner (or, for an orphan, by the scheduler, which
    /// frees what the orphan held before it retires it). Once this is false, nobody but
    /// the caller touches the tree's blocks any more.
    pub(crate) fn tree_busy_except(&self, root: u64, except: JobId) -> bool {
        (0..self.slot_count()).any(|i| {
            let s = self.slot(i);
            i != except.slot as usize
                && s.root.load(Ordering::Relaxed) == root
                && (s.is_pinned() || !s.state().is_reusable())
        })
    }
}

/// A control block for `workers` workers in a mempool of `mempool_bytes` of its own, for
/// unit tests of the protocols kept in it: `f` gets the control, and the mempool lives
/// until `f` returns.
#[cfg(test)]
pub(crate) fn with_test_control<R>(
    workers: usize,
    mempool_bytes: usize,
    f: impl FnOnce(&Control) -> R,
) -> R {
    let pool = crate::mempool::Mempool::new(mempool_bytes).unwrap();
    let block = pool.alloc_zeroed(Control::size(workers), 64).unwrap();
    // SAFETY: `Control::size(workers)` zeroed bytes, 64-aligned, alive (`block`) for as
    // long as `control` is used (until `f` returns), in `pool`'s region.
    let control = unsafe { Control::new(block.as_ptr(), pool.base(), pool.capacity(), workers) };
    f(&control)
}

/// Publishes a running top-level job of one item and generation `gen` in slot 0 of a
/// [`with_test_control`] block, for unit tests; returns the slot.
#[cfg(test)]
pub(crate) fn publish_test_job(control: &Control, gen: u64) -> &JobSlot {
    let slot = control.slot(0);
    slot.try_claim(gen).unwrap();
    slot.n_items.store(1, Ordering::Relaxed);
    slot.parent.store(crate::jobs::NO_PARENT, Ordering::Relaxed);
    slot.publish();
    slot
}
