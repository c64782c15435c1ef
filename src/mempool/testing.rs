//! Test hooks: die at a chosen point inside a critical section, and a report of a heap
//! walk. Hidden from the docs; the crash tests in `tests/` use them from forked children.

use std::sync::atomic::{AtomicU8, Ordering};

/// A point inside an allocator critical section at which a process can be made to die
/// (by SIGKILL to itself, with the lock held), to exercise lock-holder-death recovery.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum CrashPoint {
    /// Allocation: after writing the tail's header of a split, before the commit store.
    AllocAfterTail = 1,
    /// Allocation: right after the commit store (the block is used, nobody owns it).
    AllocAfterCommit = 2,
    /// Free: after marking the block free, before coalescing and relinking.
    FreeAfterMark = 3,
    /// Free: after merging with the right neighbour, before the left merge and relink.
    FreeAfterMergeRight = 4,
    /// Recovery: after its first merge of adjacent free blocks (recovery must survive
    /// its own death: the next locker recovers again).
    RecoveryAfterMerge = 5,
    /// Growth: right after the heap's end moved (the new free block is reachable but
    /// neither merged with a free last block nor listed).
    GrowAfterEnd = 6,
}

/// The armed crash point of this process (0 = none). Process-local by nature.
static ARMED: AtomicU8 = AtomicU8::new(0);

/// Arms (or with `None` disarms) a crash point in the calling process.
pub(crate) fn arm(point: Option<CrashPoint>) {
    // Relaxed: only this process's own later critical sections read it.
    ARMED.store(point.map_or(0, |p| p as u8), Ordering::Relaxed);
}

/// Dies here, by SIGKILL, if `point` is armed.
#[inline]
pub(crate) fn crash_point(point: CrashPoint) {
    // Relaxed: see `arm`.
    if ARMED.load(Ordering::Relaxed) == point as u8 {
        crash_now();
    }
}

#[cold]
fn crash_now() -> ! {
    let _ = crate::sys::process::kill(crate::sys::process::getpid(), libc::SIGKILL);
    // SIGKILL to ourselves is delivered before kill() returns; this is unreachable.
    crate::sys::process::exit_now(137)
}

/// What a full heap walk found (see `Mempool::__check_invariants`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeapReport {
    /// Used blocks.
    pub used_blocks: usize,
    /// Bytes in used blocks (headers included).
    pub used_bytes: usize,
    /// Free blocks.
    pub free_blocks: usize,
    /// Bytes in free blocks (headers included).
    pub free_bytes: usize,
    /// Populated bytes the free blocks were counted with (the cache).
    pub cached: usize,
    /// Size of the largest free block (header included).
    pub largest_free: usize,
    /// Times a dead lock holder was recovered from.
    pub recoveries: u64,
}
