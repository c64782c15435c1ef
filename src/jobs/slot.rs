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
//! ## Lazy nested jobs
//!
//! A job a task starts (a nested job) is run first by its owner, the worker that waits
//! for it (`worker::help_until`). Most nested jobs are small (the leaves of a tree):
//! a second worker joining one only moves its header's cache lines between CPUs, and
//! costs more than it saves. So a nested job is submitted *lazy*: it is in the run set,
//! but idle workers pass it by ([`JobSlot::lazy_for`]) until its `lazy_until` time, a
//! fixed [`LAZY_FOR`] after the first idle worker saw it (the owner of a small job never
//! reads the clock). The owner lifts the laziness at once
//! ([`JobSlot::open`]) when the job turns out to be worth sharing: when one of its tasks
//! starts a nested job of its own (an inner node of a tree), when the owner waits with a
//! deadline (it then runs nothing itself), or when the owner finds the time has passed
//! between chunks. An idle worker that passed a lazy job by sleeps no longer than its
//! `lazy_until`, so a job whose owner is stuck in one long chunk is still shared then.
//! Laziness only delays other workers: the owner always runs the job, so no job waits
//! for it to be lifted.
//!
//! Most small nested jobs are not submitted at all: while no other worker is hungry for
//! work (`jobs::run_set`, "Hungry workers"), the task runs them inline
//! (`worker::inline`). One submitted because a worker *is* hungry for it, or the rest
//! of an inline run shared with one, is open at once ([`JobSlot::start_at`] marks the
//! items its task already ran).
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

use crate::futex::{Event, Spin, SpinPolicy};
use crate::jobs::block_ref::BlockRef;
use crate::jobs::failure::{FailOutcome, Failure, FailureCell};
use crate::jobs::id::JobId;
use crate::jobs::state::{Pins, SlotState, StateWord, MAX_WORKERS};
use crate::jobs::stripes::{self, Stripe};

const JOIN_WORDS: usize = MAX_WORKERS / 64;

/// How long a nested job stays lazy, from the moment an idle worker first sees it,
/// unless its owner opens it sooner (module docs).
pub(crate) const LAZY_FOR: std::time::Duration = std::time::Duration::from_micros(20);
/// `lazy_until` of a lazy job no idle worker has seen yet.
const LAZY_UNTIMED: u64 = u64::MAX;

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
    /// Mempool offset of the serialized arguments: at the start of the argument block,
    /// or of `inline` when the job has no block.
    pub(crate) args_at: AtomicU64,
    /// Mempool offset of the partial-results table (one `jobs::partials::PartialCell`
    /// per worker row), after the arguments.
    pub(crate) table: AtomicU64,
    /// Generation of the job at the root of this job's tree (its own for a top-level
    /// job): the tag of every block allocated inside the tree, freed together if the
    /// tree fails.
    pub(crate) root: AtomicU64,
    /// Pid of the process that submitted the job and will collect it (0: the scheduler
    /// took it over); the scheduler fails and retires the jobs of an owner that died.
    pub(crate) owner: AtomicU64,
    /// A nested job is *lazy* at first: its owner runs it alone, and idle workers leave
    /// it alone until this time (`sys::process::monotonic_ns`) or until the owner lifts it
    /// (0: open to every worker). See "Lazy nested jobs" in the module docs.
    lazy_until: AtomicU64,
    /// Mempool offset of the job's stripes (`jobs::stripes`; 0: the job claims through
    /// `next`) and how many there are. Written in INIT.
    pub(crate) stripes: AtomicU64,
    pub(crate) stripe_count: AtomicU64,
    // Hot, written by workers.
    pub(crate) next: OwnLine<AtomicU64>,
    pub(crate) done: OwnLine<AtomicU64>,
    /// Reports waiting for the owner (bounded by `MAX_PENDING_REPORTS`).
    pub(crate) reports_pending: AtomicU32,
    /// On a top-level job: jobs of its tree whose owner died and that the scheduler has
    /// not cleaned up yet (the owner waits for zero before it collects the job).
    pub(crate) orphans: AtomicU32,
    /// A worker watching the job's end for its sleeping client, so that the client is
    /// woken from its own CPU (`jobs::watch`): 0, or a watcher's token.
    pub(crate) end_watch: AtomicU64,
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
    /// Room for a small job's arguments and partial-results table, so that submitting
    /// it allocates nothing: written by the claimer in INIT, read-only while ACTIVE
    /// except for the table cells (see `jobs::partials`).
    inline: Inline,
}

/// A field on a cache line of its own (the counters every worker writes).
#[repr(C, align(64))]
pub(crate) struct OwnLine<T>(T);

impl<T> std::ops::Deref for OwnLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Bytes of a job header's inline area.
pub(crate) const INLINE_BYTES: usize = 512;

#[repr(C, align(64))]
struct Inline([AtomicU64; INLINE_BYTES / 8]);

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<JobSlot>() % 64 == 0);
// The claim counter and the done counter, written by every worker, each on a cache line
// of its own.
#[cfg(not(loom))]
const _: () = assert!(std::mem::offset_of!(JobSlot, next) % 64 == 0);
#[cfg(not(loom))]
const _: () = assert!(std::mem::offset_of!(JobSlot, done) % 64 == 0);
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
        self.end_watch.store(0, Ordering::Relaxed);
        self.user_done.store(0, Ordering::Relaxed);
        self.user_total.store(0, Ordering::Relaxed);
        self.report_seq.store(0, Ordering::Relaxed);
        self.reports.store(0, Ordering::Relaxed);
        self.root.store(gen, Ordering::Relaxed);
        self.lazy_until.store(0, Ordering::Relaxed);
        self.stripes.store(0, Ordering::Relaxed);
        self.stripe_count.store(0, Ordering::Relaxed);
        // The claimer owns the slot from here: a scheduler looking for the jobs of dead
        // owners must never see the previous job's owner on a slot being filled.
        self.owner
            .store(crate::sys::process::cached_pid() as u64, Ordering::Relaxed);
        self.failure.clear();
        self.args.clear();
        self.args_at.store(0, Ordering::Relaxed);
        self.table.store(0, Ordering::Relaxed);
        for w in &self.joined {
            w.store(0, Ordering::Relaxed);
        }
        Some(gen)
    }

    /// Starts the job at item `from`: items `0..from` count as claimed and done (the
    /// submitting task ran them inline, `worker::run_inline`, and keeps their partials).
    /// Claimer only, in INIT, on a job claimed through `next` (no stripes); published with
    /// ACTIVE (Release).
    pub(crate) fn start_at(&self, from: u64) {
        debug_assert_eq!(self.stripes.load(Ordering::Relaxed), 0);
        debug_assert!(from <= self.n_items.load(Ordering::Relaxed));
        // Relaxed: see `try_claim`.
        self.next.store(from, Ordering::Relaxed);
        self.done.store(from, Ordering::Relaxed);
    }

    /// Mempool offset of the header's inline area (the header lives in the mempool's
    /// job table, so it has one).
    pub(crate) fn inline_offset(&self, mempool: &crate::mempool::Mempool) -> u64 {
        (self.inline.0.as_ptr() as usize - mempool.base() as usize) as u64
    }

    /// Writes `bytes` (at most [`INLINE_BYTES`]) to the start of the inline area.
    /// Only the claimer calls it, in INIT (published with ACTIVE, Release).
    pub(crate) fn write_inline(&self, bytes: &[u8]) {
        assert!(bytes.len() <= INLINE_BYTES, "inline arguments too large");
        for (w, chunk) in self.inline.0.iter().zip(bytes.chunks(8)) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            // Relaxed: see above.
            w.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
    }

    /// Zeroes the inline area's words `from..from + n` (a table of cells). Claimer only,
    /// in INIT.
    pub(crate) fn zero_inline(&self, from_byte: usize, bytes: usize) {
        for w in &self.inline.0[from_byte / 8..(from_byte + bytes).div_ceil(8)] {
            // Relaxed: see `write_inline`.
            w.store(0, Ordering::Relaxed);
        }
    }

    /// Makes the job lazy; its time is set by the first idle worker that sees it (so
    /// the owner of a small job never reads the clock). Claimer only, in INIT (published
    /// with ACTIVE, Release).
    pub(crate) fn make_lazy(&self) {
        self.lazy_until.store(LAZY_UNTIMED, Ordering::Relaxed);
    }

    /// Whether the job was submitted lazy and its laziness not lifted yet.
    pub(crate) fn is_lazy(&self) -> bool {
        // Relaxed: a hint, as in `lazy_for`.
        self.lazy_until.load(Ordering::Relaxed) != 0
    }

    /// Whether idle workers must still pass the job by at `now`: `Some(until)` if so. The
    /// first caller to see a lazy job without a time gives it one, [`LAZY_FOR`] from now.
    pub(crate) fn lazy_for(&self, now: &mut Option<u64>) -> Option<u64> {
        // Relaxed: a hint (laziness only delays; the owner runs the job regardless).
        let until = self.lazy_until.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let t = *now.get_or_insert_with(crate::sys::process::monotonic_ns);
        if until == LAZY_UNTIMED {
            let at = t + LAZY_FOR.as_nanos() as u64;
            // Relaxed: as above; losing to the owner's `open` (0) or another scanner's
            // time is fine, the value read back decides.
            return match self.lazy_until.compare_exchange(
                LAZY_UNTIMED,
                at,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => Some(at),
                Err(0) => None,
                Err(other) => (t < other).then_some(other),
            };
        }
        (t < until).then_some(until)
    }

    /// Lifts the job's laziness and wakes idle workers (no-op if it was not lazy).
    pub(crate) fn open(&self, work: &Event) {
        // Relaxed: a hint, as in `lazy_for`; the notify orders the rest.
        if self.lazy_until.load(Ordering::Relaxed) != 0 {
            self.lazy_until.store(0, Ordering::Relaxed);
            work.notify();
        }
    }

    /// Lifts the job's laziness if its time has passed (the owner, between chunks; a job
    /// no idle worker has seen yet has no time, and stays lazy).
    pub(crate) fn open_if_due(&self, work: &Event) {
        let until = self.lazy_until.load(Ordering::Relaxed);
        if until != 0 && until != LAZY_UNTIMED && crate::sys::process::monotonic_ns() >= until {
            self.open(work);
        }
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
        if !self.is_pinned() {
            match self.state() {
                SlotState::Active => {}
                // Its owner was woken when it completed (`add_done`) and collects it
                // whoever still holds a pin: only whoever frees slots (on the pool-wide
                // event) may want to know. Waking the owner again from here would race
                // the wake from its own CPU (`jobs::watch`) with one from ours.
                SlotState::Complete => self.notify_ended(ended),
                _ => self.notify_end(ended),
            }
        }
    }

    /// Wakes whoever waits for the job's end: its owner on the job's own event, the
    /// pool's async waiter on the pool-wide `ended` event.
    fn notify_end(&self, ended: &Event) {
        self.event.notify();
        self.notify_ended(ended);
    }

    /// The pool-wide half of [`notify_end`](JobSlot::notify_end): the `ended` event.
    fn notify_ended(&self, ended: &Event) {
        if self.parent().is_some() {
            // A nested job is waited for by the task that started it, never by a client's
            // async waiter: tell `ended` only if someone sleeps on it, leaving its word
            // (shared by every process) alone.
            ended.notify_sleepers();
        } else {
            ended.notify();
        }
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

    /// Whether some chunk of the job is not handed out yet (`stripes`: the job's, from
    /// `Control::stripes_of`). Once false it stays false for this generation (`next`
    /// only grows, stripes only lose items) but for a steal in flight (`jobs::stripes`).
    pub(crate) fn chunks_left(&self, stripes: Option<&[Stripe]>) -> bool {
        if let Some(st) = stripes {
            return stripes::any_left(st);
        }
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
    /// spinning up to `spin` first as `policy` says (`jobs::cpus`), but only while that
    /// leaves the job's workers a CPU.
    pub(crate) fn wait<T>(
        &self,
        spin: std::time::Duration,
        deadline: std::time::Instant,
        policy: impl SpinPolicy,
        check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        /// `policy`, stopped while the job's workers fill every CPU.
        struct UnlessFull<'a, P> {
            slot: &'a JobSlot,
            policy: P,
        }
        impl<P: SpinPolicy> SpinPolicy for UnlessFull<'_, P> {
            fn advice(&mut self) -> Spin {
                if self.slot.spinning_leaves_cpus_free() {
                    self.policy.advice()
                } else {
                    Spin::Stop
                }
            }
            fn sleeping(&mut self, asleep: bool) {
                self.policy.sleeping(asleep);
            }
        }
        let policy = UnlessFull { slot: self, policy };
        self.event
            .wait_until_spinning_while(spin, policy, Some(deadline), check)
    }

    /// The parent job, if any.
    pub(crate) fn parent(&self) -> Option<JobId> {
        JobId::unpack(self.parent.load(Ordering::Relaxed))
    }

    /// Whether the slot currently runs job `gen` and it is ACTIVE (one SeqCst load of
    /// the state word: see the pin protocol in `jobs::state`).
    #[inline]
    pub(crate) fn is_active_job(&self, gen: u64) -> bool {
        self.word.is_active(gen)
    }

    /// [`is_active_job`](JobSlot::is_active_job) for the job `stamp` was made for.
    #[inline]
    pub(crate) fn is_still_active(&self, stamp: crate::jobs::state::ActiveStamp) -> bool {
        self.word.is_still_active(stamp)
    }

    /// Whether the slot's current (or last) job has generation `gen`.
    pub(crate) fn holds(&self, gen: u64) -> bool {
        self.gen() == gen
    }

    /// Claims the next chunk of items for `worker` by guided self-scheduling, from the
    /// job's stripes if it has them (`jobs::stripes`), or `None` when all are taken or the
    /// job should stop.
    pub(crate) fn claim_chunk(
        &self,
        stripes: Option<&[Stripe]>,
        worker: usize,
    ) -> Option<Range<usize>> {
        // Relaxed loads of the read-only header: the worker loaded ACTIVE with Acquire.
        let n = self.n_items.load(Ordering::Relaxed);
        let min = self.min_len.load(Ordering::Relaxed).max(1);
        let max = self.max_len.load(Ordering::Relaxed).max(min);
        if self.state() != SlotState::Active {
            return None;
        }
        if let Some(st) = stripes {
            return stripes::claim(st, worker, min, max);
        }
        let workers = self.workers.load(Ordering::Relaxed).max(1);
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            if cur >= n {
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
                Err(actual) => {
                    if self.state() != SlotState::Active {
                        return None;
                    }
                    cur = actual
                }
            }
        }
    }

    /// Stops the job early (short-circuit, not a failure) after the chunk ending at
    /// `from`: no chunk past it is handed out any more, and the caller takes every
    /// unclaimed item past it as done-without-running. Returns how many items it took;
    /// the caller adds them to `done` with its own. With the single counter every item
    /// before `from` is claimed already; with stripes some may not be, and the caller
    /// goes on claiming them (`jobs::stripes`, Stop).
    pub(crate) fn stop_and_take_rest(&self, stripes: Option<&[Stripe]>, from: u64) -> u64 {
        if let Some(st) = stripes {
            return stripes::take_from(st, from);
        }
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
            // The owner's own event: from here, or from a worker on the owner's CPU.
            self.wake_owner_after_finish();
            self.notify_ended(ended);
        }
    }

    /// Completes a job of zero items (no worker will ever call `add_done`).
    pub(crate) fn complete_empty(&self, ended: &Event) {
        let _ = self.word.complete();
        self.notify_end(ended);
    }

    /// Fails the job with `failure` unless it already ended. Allocation-free. For a
    /// caller that keeps the slot from being reused meanwhile (a pin, or being the
    /// job's owner); others use [`fail_job`](JobSlot::fail_job).
    pub(crate) fn fail(&self, failure: &Failure, ended: &Event) -> FailOutcome {
        if !self.word.begin_failure() {
            return FailOutcome::AlreadyEnded;
        }
        self.record_failure(failure, ended)
    }

    /// Fails job `gen` with `failure` if the slot still runs it and it has not ended: a
    /// slot looked at without a pin may have been retired and claimed by another job
    /// since, which must not get this failure.
    pub(crate) fn fail_job(&self, gen: u64, failure: &Failure, ended: &Event) -> FailOutcome {
        if !self.word.begin_failure_of(gen) {
            return FailOutcome::AlreadyEnded;
        }
        self.record_failure(failure, ended)
    }

    fn record_failure(&self, failure: &Failure, ended: &Event) -> FailOutcome {
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
        while let Some(r) = s.claim_chunk(None, 0) {
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
    fn a_failure_for_an_old_job_leaves_the_slots_new_job_alone() {
        let s = slot();
        s.try_claim(1).unwrap();
        s.n_items.store(10, Ordering::Relaxed);
        s.publish();
        // Job 1 ends and its slot goes to job 2 while a canceller still holds job 1's id.
        s.complete_empty(&Event::new());
        s.retire();
        assert_eq!(s.try_claim(2), Some(2));
        s.publish();
        assert_eq!(
            s.fail_job(1, &Failure::Cancelled, &Event::new()),
            FailOutcome::AlreadyEnded
        );
        assert!(s.is_active_job(2));
        assert_eq!(
            s.fail_job(2, &Failure::Cancelled, &Event::new()),
            FailOutcome::Recorded
        );
        assert_eq!(s.state(), SlotState::Failed);
        assert_eq!(s.failure(), Failure::Cancelled);
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
