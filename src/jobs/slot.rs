//! The shared header of one job, and how workers share its items.
//!
//! A [`JobSlot`] lives in the job table in the mempool (`jobs::table`), so its address is
//! the same in every process. Whoever submits the job (a client thread, or a worker
//! starting a nested job) claims a slot, fills its header, publishes it and puts it in
//! the run set; workers then take chunks themselves. No process sits on the per-chunk
//! path. The slot's life and the pin protocol are in `jobs::state`, the failure record in
//! `jobs::failure`.
//!
//! ## Chunk self-scheduling
//!
//! Workers claim chunks with a CAS on `next` (guided self-scheduling: a chunk is
//! `remaining / (2 * workers)` items, clamped to `[min_len, max_len]`, so chunks start
//! large and shrink towards the end, where uneven items would otherwise leave a worker
//! idle). A worker counts finished items locally and adds them to `done` in batches; its
//! **last** addition for a job comes after it has published its partial results, so
//! `done == n` (read with Acquire) means every output write and every partial is visible.
//!
//! A short-circuiting terminal (`any`, `find_any`) stops a job early with
//! [`JobSlot::stop_and_take_rest`]: one atomic swap moves `next` to `n`, and the caller
//! counts the unclaimed items as done, so `done` still reaches `n` once the chunks
//! already handed out finish.
//!
//! ## Failure
//!
//! The first failure (a panic caught in a task, a worker death seen by the scheduler, a
//! cancel) wins `begin_failure` (ACTIVE -> FAILING), writes its record, then `end_failure`
//! (FAILED, Release) and notifies. Other workers stop claiming chunks once the state is not
//! ACTIVE. The owner waits for `FAILED` *and* for `pins == 0`, so when it frees the
//! job's memory no worker is still writing into it. A failed job never hands back
//! partial output.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::futex::Event;
use crate::jobs::block_ref::BlockRef;
use crate::jobs::failure::{FailOutcome, Failure, FailureCell};
use crate::jobs::id::JobId;
use crate::jobs::state::{Pins, SlotState, StateWord, MAX_WORKERS};

const JOIN_WORDS: usize = MAX_WORKERS / 64;

/// The shared header of one job. Lives in the job table in the mempool.
#[repr(C, align(64))]
pub(crate) struct JobSlot {
    /// Generation and state (see `jobs::state`).
    word: StateWord,
    // Written by the owner in INIT, read-only while ACTIVE.
    pub(crate) entry: AtomicUsize,
    pub(crate) n_items: AtomicU64,
    pub(crate) min_len: AtomicU64,
    pub(crate) max_len: AtomicU64,
    pub(crate) workers: AtomicU64,
    /// The job's argument block: the serialized arguments, then the partial-results
    /// table at `table`.
    pub(crate) args: BlockRef,
    /// Bytes of serialized arguments at the start of the argument block.
    pub(crate) args_len: AtomicU64,
    /// Packed `(slot, gen)` of the parent job, or `NO_PARENT`.
    pub(crate) parent: AtomicU64,
    /// Mempool offset of the partial-results table (one [`BlockRef`] per worker row).
    pub(crate) table: AtomicU64,
    /// Generation of the job at the root of this job's tree (its own for a top-level
    /// job): the tag of every block allocated inside the tree, freed together if the
    /// tree fails.
    pub(crate) root: AtomicU64,
    /// Pid of the process that submitted the job and will collect it (0: the scheduler
    /// took it over); the scheduler fails and retires the jobs of an owner that died.
    pub(crate) owner: AtomicU64,
    _pad0: [u64; 2],
    // Hot, written by workers.
    pub(crate) next: AtomicU64,
    _pad1: [u64; 7],
    pub(crate) done: AtomicU64,
    /// Reports waiting for the owner (bounded by `MAX_PENDING_REPORTS`).
    pub(crate) reports_pending: AtomicU32,
    /// On a top-level job: jobs of its tree whose owner died and that the scheduler has
    /// not cleaned up yet (the owner waits for zero before it collects the job).
    pub(crate) orphans: AtomicU32,
    /// Progress a task reported itself with `Ctx::progress` (monotonic: `fetch_max`).
    pub(crate) user_done: AtomicU64,
    pub(crate) user_total: AtomicU64,
    /// Sequence numbers of `Ctx::report`s, so the owner can deliver them in order.
    pub(crate) report_seq: AtomicU64,
    /// Head (mempool offset) of the stack of report blocks; see `progress`.
    pub(crate) reports: AtomicU64,
    pins: Pins,
    /// Workers that have joined the job (a worker joins a job at most once).
    joined: [AtomicU64; JOIN_WORDS],
    /// Woken when the job ends and when the last pin goes away after a failure.
    pub(crate) event: Event,
    failure: FailureCell,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<JobSlot>() % 64 == 0);
#[cfg(not(loom))]
const _: () = assert!(std::mem::align_of::<JobSlot>() == 64);

impl JobSlot {
    /// Where the slot's current (or last) job is in its life.
    pub(crate) fn state(&self) -> SlotState {
        self.word.load().state()
    }

    /// The generation of the slot's current (or last) job.
    pub(crate) fn gen(&self) -> u64 {
        self.word.load().gen()
    }

    /// Claims a reusable, unpinned slot for a new job of generation `gen` and resets
    /// its header: `Some(gen)` on success.
    pub(crate) fn try_claim(&self, gen: u64) -> Option<u64> {
        if !self.word.claim(&self.pins, gen) {
            return None;
        }
        // Only the claimer writes from here until `publish`; Relaxed is enough because
        // `publish` stores ACTIVE with Release and readers load it with Acquire.
        self.next.store(0, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.reports_pending.store(0, Ordering::Relaxed);
        self.orphans.store(0, Ordering::Relaxed);
        self.user_done.store(0, Ordering::Relaxed);
        self.user_total.store(0, Ordering::Relaxed);
        self.report_seq.store(0, Ordering::Relaxed);
        self.reports.store(0, Ordering::Relaxed);
        self.root.store(gen, Ordering::Relaxed);
        // The claimer owns the slot from here: a scheduler looking for the jobs of dead
        // owners must never see the previous job's owner on a slot being filled.
        self.owner
            .store(crate::sys::process::cached_pid() as u64, Ordering::Relaxed);
        self.failure.clear();
        self.args.clear();
        self.table.store(0, Ordering::Relaxed);
        for w in &self.joined {
            w.store(0, Ordering::Relaxed);
        }
        Some(gen)
    }

    /// Makes the header visible to workers (INIT -> ACTIVE).
    pub(crate) fn publish(&self) {
        self.word.publish(self.gen());
    }

    /// Gives a collected slot back (COMPLETE/FAILED -> RETIRED). Callers go through
    /// `Control::retire`, which takes the slot out of the run set first.
    pub(crate) fn retire(&self) {
        self.word.retire();
    }

    pub(crate) fn pin(&self, worker: usize) {
        self.pins.pin(worker);
    }

    /// Clears `worker`'s pin; wakes the owner when a failed job loses its last pin.
    pub(crate) fn unpin(&self, worker: usize, ended: &Event) {
        self.pins.unpin(worker);
        if !self.is_pinned() && self.state() != SlotState::Active {
            self.notify_end(ended);
        }
    }

    /// Wakes whoever waits for the job's end: its owner on the job's own event, the
    /// pool's async waiter on the pool-wide `ended` event.
    fn notify_end(&self, ended: &Event) {
        self.event.notify();
        ended.notify();
    }

    /// Marks `worker` as joined; `false` if it had joined before (then it must not run
    /// the job again: it left only when no chunk was left to claim).
    pub(crate) fn join(&self, worker: usize) -> bool {
        let bit = 1 << (worker % 64);
        self.joined[worker / 64].fetch_or(bit, Ordering::SeqCst) & bit == 0
    }

    /// Whether `worker` has joined the job (a hint for the run-set scan; `join` decides).
    pub(crate) fn has_joined(&self, worker: usize) -> bool {
        self.joined[worker / 64].load(Ordering::SeqCst) & (1 << (worker % 64)) != 0
    }

    /// Whether some chunk of the job is not handed out yet. Once false it stays false
    /// for this generation (`next` only grows).
    pub(crate) fn chunks_left(&self) -> bool {
        // Relaxed: a hint; whoever acts on it claims with a CAS on `next` or re-checks
        // under a pin.
        self.next.load(Ordering::Relaxed) < self.n_items.load(Ordering::Relaxed)
    }

    pub(crate) fn is_pinned(&self) -> bool {
        self.pins.any()
    }

    /// Whether a process waiting for this job may spin without taking a CPU from the
    /// workers running it: spinning pays off for short jobs (a hand-off in well under a
    /// microsecond instead of a 25-30 us futex wake), but while the job's workers fill
    /// every CPU a spinning waiter only slows them down.
    fn spinning_leaves_cpus_free(&self) -> bool {
        self.pins.count() < crate::sys::process::cpus()
    }

    /// Waits on the job's event until `check` gives a value or `deadline` passes,
    /// spinning up to `spin` first, but only while that leaves the job's workers a CPU.
    pub(crate) fn wait<T>(
        &self,
        spin: std::time::Duration,
        deadline: std::time::Instant,
        check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        self.event.wait_until_spinning_while(
            spin,
            || self.spinning_leaves_cpus_free(),
            Some(deadline),
            check,
        )
    }

    /// The parent job, if any.
    pub(crate) fn parent(&self) -> Option<JobId> {
        JobId::unpack(self.parent.load(Ordering::Relaxed))
    }

    /// Whether the slot currently runs job `gen` and it is ACTIVE (one SeqCst load of
    /// the state word: see the pin protocol in `jobs::state`).
    pub(crate) fn is_active_job(&self, gen: u64) -> bool {
        self.word.is_active(gen)
    }

    /// Whether the slot's current (or last) job has generation `gen`.
    pub(crate) fn holds(&self, gen: u64) -> bool {
        self.gen() == gen
    }

    /// Claims the next chunk of items by guided self-scheduling, or `None` when all are
    /// taken or the job should stop.
    pub(crate) fn claim_chunk(&self) -> Option<Range<usize>> {
        // Relaxed loads of the read-only header: the worker loaded ACTIVE with Acquire.
        let n = self.n_items.load(Ordering::Relaxed);
        let min = self.min_len.load(Ordering::Relaxed).max(1);
        let max = self.max_len.load(Ordering::Relaxed).max(min);
        let workers = self.workers.load(Ordering::Relaxed).max(1);
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            if cur >= n || self.state() != SlotState::Active {
                return None;
            }
            let size = ((n - cur) / (2 * workers)).clamp(min, max).min(n - cur);
            // Relaxed: `next` only hands out disjoint index ranges; the data a chunk
            // touches is published through `done` (Release) and the state word.
            match self.next.compare_exchange_weak(
                cur,
                cur + size,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(cur as usize..(cur + size) as usize),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Stops the job early (short-circuit, not a failure): no chunk is handed out any
    /// more, and the caller takes every unclaimed item as done-without-running. Returns
    /// how many items it took; the caller adds them to `done` with its own.
    pub(crate) fn stop_and_take_rest(&self) -> u64 {
        let n = self.n_items.load(Ordering::Relaxed);
        // Relaxed: `swap` is atomic, so exactly one caller gets each unclaimed item; the
        // accounting is published through `done` like any chunk.
        let old = self.next.swap(n, Ordering::Relaxed);
        n.saturating_sub(old)
    }

    /// Adds `items` finished items; the call that completes the job moves it to COMPLETE
    /// and wakes the owner.
    pub(crate) fn add_done(&self, items: u64, ended: &Event) {
        if items == 0 {
            return;
        }
        // AcqRel: Release publishes this worker's output writes and partials; Acquire
        // makes the completing worker's COMPLETE transition carry every other worker's too.
        let before = self.done.fetch_add(items, Ordering::AcqRel);
        if before + items == self.n_items.load(Ordering::Relaxed) && self.word.complete() {
            self.notify_end(ended);
        }
    }

    /// Completes a job of zero items (no worker will ever call `add_done`).
    pub(crate) fn complete_empty(&self, ended: &Event) {
        let _ = self.word.complete();
        self.notify_end(ended);
    }

    /// Fails the job with `failure` unless it already ended. Allocation-free.
    pub(crate) fn fail(&self, failure: &Failure, ended: &Event) -> FailOutcome {
        if !self.word.begin_failure() {
            return FailOutcome::AlreadyEnded;
        }
        self.failure.write(failure);
        self.word.end_failure();
        self.notify_end(ended);
        FailOutcome::Recorded
    }

    /// The recorded failure of a FAILED job.
    pub(crate) fn failure(&self) -> Failure {
        debug_assert_eq!(self.state(), SlotState::Failed);
        self.failure.read()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn slot() -> Box<JobSlot> {
        // SAFETY: JobSlot is all atomics and integers; all-zero is FREE with empty fields.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    #[test]
    fn guided_chunks_cover_everything_once() {
        let s = slot();
        s.try_claim(7).unwrap();
        s.n_items.store(1000, Ordering::Relaxed);
        s.min_len.store(3, Ordering::Relaxed);
        s.max_len.store(u64::MAX, Ordering::Relaxed);
        s.workers.store(2, Ordering::Relaxed);
        s.publish();
        let mut covered = 0;
        let mut sizes = vec![];
        while let Some(r) = s.claim_chunk() {
            assert_eq!(r.start, covered);
            covered = r.end;
            sizes.push(r.len());
            s.add_done(r.len() as u64, &Event::new());
        }
        assert_eq!(covered, 1000);
        assert_eq!(sizes[0], 250);
        assert!(sizes.iter().all(|&n| n >= 3 || covered == 1000));
        assert_eq!(s.state(), SlotState::Complete);
        assert_eq!(s.gen(), 7);
    }

    #[test]
    fn first_failure_wins() {
        let s = slot();
        s.try_claim(1).unwrap();
        s.n_items.store(10, Ordering::Relaxed);
        s.publish();
        assert_eq!(
            s.fail(
                &Failure::Panicked {
                    message: "first".into()
                },
                &Event::new()
            ),
            FailOutcome::Recorded
        );
        assert_eq!(
            s.fail(&Failure::Cancelled, &Event::new()),
            FailOutcome::AlreadyEnded
        );
        assert_eq!(
            s.failure(),
            Failure::Panicked {
                message: "first".into()
            }
        );
    }

    #[test]
    fn pinned_slots_are_not_reclaimed() {
        let s = slot();
        s.try_claim(1).unwrap();
        s.publish();
        s.pin(3);
        s.complete_empty(&Event::new());
        s.retire();
        assert!(s.try_claim(2).is_none());
        s.unpin(3, &Event::new());
        assert_eq!(s.try_claim(2), Some(2));
        assert!(!s.is_active_job(1) && !s.is_active_job(2));
        s.publish();
        assert!(s.is_active_job(2));
    }
}
