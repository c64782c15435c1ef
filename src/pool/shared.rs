//! The pool's control block in the mempool: counters, the worker table, the job table.
//!
//! Allocated by the client at build time, before the scheduler is forked, so it sits at
//! the same address in every process of the pool. Plain `#[repr(C)]` atomics only.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::futex::Event;
use crate::job::{JobId, JobSlot};

/// Number of job slots: jobs (including nested ones) that may be in flight at once.
pub(crate) const JOB_SLOTS: usize = 512;
/// Deepest job nesting a worker tracks for crash attribution.
pub(crate) const MAX_DEPTH: usize = 16;

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
        // SeqCst: the scheduler reads the stack after this process died; the kernel's
        // exit/wait path orders it anyway, SeqCst keeps the reasoning local.
        self.stack[d].store(job.pack(), Ordering::SeqCst);
        self.depth.store(d as u32 + 1, Ordering::SeqCst);
        true
    }

    pub(crate) fn pop(&self) {
        let d = self.depth.load(Ordering::Relaxed);
        if d > 0 {
            self.depth.store(d - 1, Ordering::SeqCst);
        }
    }

    /// The jobs a dead worker was inside.
    pub(crate) fn jobs(&self) -> Vec<JobId> {
        let d = (self.depth.load(Ordering::SeqCst) as usize).min(MAX_DEPTH);
        self.stack[..d]
            .iter()
            .filter_map(|w| JobId::unpack(w.load(Ordering::SeqCst)))
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
    /// Woken whenever a slot is retired (for submitters waiting for a free slot).
    pub(crate) slot_event: Event,
}

/// Typed view of the control block: header, worker table, job table, laid out
/// back-to-back in one mempool block.
#[derive(Clone, Copy)]
pub(crate) struct Control {
    base: *const u8,
    workers: usize,
}

// SAFETY: `Control` is a view of shared memory made only of atomics; sharing it between
// threads is no different from sharing `&AtomicU64`s.
unsafe impl Send for Control {}
// SAFETY: as above.
unsafe impl Sync for Control {}

impl Control {
    /// Bytes needed for `workers` workers.
    pub(crate) fn size(workers: usize) -> usize {
        Self::slots_offset(workers) + JOB_SLOTS * std::mem::size_of::<JobSlot>()
    }

    fn workers_offset() -> usize {
        std::mem::size_of::<ControlHeader>()
    }

    fn slots_offset(workers: usize) -> usize {
        Self::workers_offset() + workers * std::mem::size_of::<WorkerEntry>()
    }

    /// # Safety
    /// `base` must point to at least `Control::size(workers)` zeroed (or previously so
    /// initialised) bytes of shared memory, 64-byte aligned, that stay mapped for as long
    /// as the view is used.
    pub(crate) unsafe fn new(base: *const u8, workers: usize) -> Control {
        debug_assert_eq!(base as usize % 64, 0);
        Control { base, workers }
    }

    pub(crate) fn header(&self) -> &ControlHeader {
        // SAFETY: `new`'s contract: the header is at offset 0, aligned, mapped, and made of
        // atomics (all-zero is a valid value).
        unsafe { &*(self.base as *const ControlHeader) }
    }

    pub(crate) fn worker(&self, i: usize) -> &WorkerEntry {
        assert!(i < self.workers);
        // SAFETY: in bounds (asserted) of the worker table laid out by `size`; atomics only.
        unsafe { &*(self.base.add(Self::workers_offset()) as *const WorkerEntry).add(i) }
    }

    pub(crate) fn slot(&self, i: usize) -> &JobSlot {
        assert!(i < JOB_SLOTS);
        // SAFETY: in bounds (asserted) of the job table laid out by `size`; atomics only.
        unsafe { &*(self.base.add(Self::slots_offset(self.workers)) as *const JobSlot).add(i) }
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    pub(crate) fn next_gen(&self) -> u64 {
        self.header().next_gen.fetch_add(1, Ordering::Relaxed) % (crate::job::GEN_LIMIT - 1) + 1
    }
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
            if j.slot as usize >= JOB_SLOTS {
                return false;
            }
            let slot = self.slot(j.slot as usize);
            if !slot.holds(j.gen) {
                return false;
            }
            cur = slot.parent();
        }
        false
    }

    /// The slot of the top-level job with generation `root`, if it is still there.
    pub(crate) fn root_slot(&self, root: u64) -> Option<usize> {
        (0..JOB_SLOTS).find(|&i| {
            let s = self.slot(i);
            s.holds(root)
                && s.parent().is_none()
                && !matches!(
                    s.state(),
                    crate::job::SlotState::Free | crate::job::SlotState::Retired
                )
        })
    }

    /// The root generation of live job `id`.
    pub(crate) fn job_root(&self, id: JobId) -> Option<u64> {
        let slot = self.slot(id.slot as usize % JOB_SLOTS);
        slot.holds(id.gen)
            .then(|| slot.root.load(Ordering::Relaxed))
    }

    /// Whether any job of the tree rooted at generation `root`, other than `except`
    /// (the root's own slot, which its owner is collecting), still has a worker inside or
    /// has not been retired by its owner (or, for an orphan, by the scheduler, which
    /// frees what the orphan held before it retires it). Once this is false, nobody but
    /// the caller touches the tree's blocks any more.
    pub(crate) fn tree_busy_except(&self, root: u64, except: JobId) -> bool {
        (0..JOB_SLOTS).any(|i| {
            let s = self.slot(i);
            i != except.slot as usize
                && s.root.load(Ordering::Relaxed) == root
                && (s.is_pinned()
                    || !matches!(
                        s.state(),
                        crate::job::SlotState::Free | crate::job::SlotState::Retired
                    ))
        })
    }
}
