//! Jobs: the shared header a job lives in, and the protocols around it.
//!
//! A *job* applies one task function to the items `0..n` of its input. Its header is a
//! [`JobSlot`] in a fixed table inside the mempool (so its address is the same in every
//! process). Whoever submits the job (a client thread, or a worker starting a nested
//! job) fills a slot and sends a *notice* `(slot, gen)` to the workers' camlboxes; the
//! workers then take chunks themselves. No process sits on the per-chunk path.
//!
//! ## Slot states
//!
//! ```text
//!   FREE/RETIRED --claim (CAS, owner)--> INIT --publish (Release, owner)--> ACTIVE
//!   ACTIVE --last chunk done (worker)--------------------------------------> COMPLETE
//!   ACTIVE --first failure wins the CAS (worker, scheduler, owner)--> FAILING --> FAILED
//!   COMPLETE | FAILED --owner has collected the outcome--> RETIRED
//! ```
//!
//! * Only the owner writes the read-only part (entry, args, lengths, parent) and only in
//!   INIT; `ACTIVE` is stored with Release and every reader loads it with Acquire, so a
//!   worker that sees ACTIVE sees the whole header.
//! * `gen` changes only on claim. A notice names a generation, so a late notice for a
//!   finished job is recognised and dropped.
//!
//! ## Pins: when a slot may be reused
//!
//! A worker that acts on a notice first sets its bit in `pins` (SeqCst), then checks
//! `state == ACTIVE && gen == notice.gen`; it clears the bit when it leaves the job.
//! A RETIRED slot is reclaimed only while no bit is set (checked before the claiming
//! CAS). The pin, the worker's state load, the retiring store and the claimer's state load
//! and pin check are all SeqCst, so they sit in one total order. If the worker's load
//! sees its job ACTIVE, its pin precedes that load, which precedes the slot's retiring,
//! which precedes the claimer's pin check: the claimer sees the pin and skips the slot.
//! A worker that sees anything else (not ACTIVE, or a new generation, published with
//! Release after it was written) drops the notice: a worker never runs a half-rewritten
//! header. The
//! scheduler clears the bit of a dead worker in every slot, so a crash never pins a slot
//! forever.
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
//! cancel) wins the CAS `ACTIVE -> FAILING`, writes its record, then stores `FAILED`
//! (Release) and notifies. Other workers stop claiming chunks once the state is not
//! ACTIVE. The owner waits for `FAILED` *and* for `pins == 0`, so when it frees the
//! job's memory no worker is still writing into it. A failed job never hands back
//! partial output.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::futex::Event;

/// Most workers a pool may have (one pin bit each).
pub(crate) const MAX_WORKERS: usize = 256;
const PIN_WORDS: usize = MAX_WORKERS / 64;

/// Named slot states (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum SlotState {
    Free = 0,
    Init = 1,
    Active = 2,
    Complete = 3,
    Failing = 4,
    Failed = 5,
    Retired = 6,
}

impl SlotState {
    fn from_u32(v: u32) -> SlotState {
        match v {
            1 => SlotState::Init,
            2 => SlotState::Active,
            3 => SlotState::Complete,
            4 => SlotState::Failing,
            5 => SlotState::Failed,
            6 => SlotState::Retired,
            _ => SlotState::Free,
        }
    }
}

/// Why a job failed, as recorded in its slot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Failure {
    Panicked {
        message: String,
    },
    WorkerDied {
        pid: i32,
        signal: Option<i32>,
        exit_code: Option<i32>,
    },
    Cancelled,
    /// The owner's time limit (in microseconds) passed.
    TimedOut {
        limit_us: u64,
    },
    /// The task set up failed (context could not be decoded, descriptor invalid, ...).
    Setup {
        message: String,
    },
    /// The mempool could not hold what the job had to store (its partial results).
    OutOfMemory {
        requested: u64,
        available: u64,
        capacity: u64,
    },
}

const FAILURE_TEXT: usize = 440;

/// A failure record small enough to live in the slot itself (no allocation on the
/// failure path, which the scheduler takes after a crash).
#[repr(C)]
pub(crate) struct FailureCell {
    len: AtomicU32,
    bytes: [AtomicU8x8; FAILURE_TEXT / 8],
}

/// Eight bytes stored as one atomic word.
#[repr(transparent)]
pub(crate) struct AtomicU8x8(AtomicU64);

/// The shared header of one job. Lives in the job table in the mempool.
#[repr(C, align(64))]
pub(crate) struct JobSlot {
    // Written by the owner in INIT, read-only while ACTIVE.
    pub(crate) gen: AtomicU64,
    state: AtomicU32,
    pub(crate) entry: AtomicUsize,
    pub(crate) n_items: AtomicU64,
    pub(crate) min_len: AtomicU64,
    pub(crate) max_len: AtomicU64,
    pub(crate) workers: AtomicU64,
    /// Offset, length and generation of the serialized job arguments (a mempool block).
    pub(crate) args: [AtomicU64; 3],
    /// Packed `(slot, gen)` of the parent job, or `NO_PARENT`.
    pub(crate) parent: AtomicU64,
    /// Mempool offset of the partial-results table (one `[offset, len, gen]` triple per
    /// worker), or 0 when the job kind has no partial results.
    pub(crate) table: AtomicU64,
    /// Generation of the job at the root of this job's tree (its own for a top-level
    /// job): the tag of every block allocated inside the tree, freed together if the
    /// tree fails.
    pub(crate) root: AtomicU64,
    /// Pid of the process that submitted the job and will collect it; the scheduler
    /// fails and retires the jobs of an owner that died.
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
    pins: [AtomicU64; PIN_WORDS],
    /// Workers that have joined the job (a worker joins a job at most once).
    joined: [AtomicU64; PIN_WORDS],
    /// Woken when the job ends and when the last pin goes away after a failure.
    pub(crate) event: Event,
    failure: FailureCell,
}

const _: () = assert!(std::mem::size_of::<JobSlot>() % 64 == 0);
const _: () = assert!(std::mem::align_of::<JobSlot>() == 64);

/// Packed `(slot, gen)` meaning "no parent".
pub(crate) const NO_PARENT: u64 = u64::MAX;

/// A job's identity across processes: its slot and the generation it was claimed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobId {
    pub(crate) slot: u32,
    pub(crate) gen: u64,
}

/// Generations are below this (48 bits, so that a [`JobId`] packs into one word): they
/// count from 1 and wrap long after any slot's earlier job has been collected.
pub(crate) const GEN_LIMIT: u64 = 1 << 48;

impl JobId {
    /// Packs into one word.
    pub(crate) fn pack(self) -> u64 {
        debug_assert!(self.gen < GEN_LIMIT);
        (u64::from(self.slot) << 48) | self.gen
    }
    pub(crate) fn unpack(v: u64) -> Option<JobId> {
        (v != NO_PARENT && v != 0).then_some(JobId {
            slot: (v >> 48) as u32,
            gen: v & (GEN_LIMIT - 1),
        })
    }
    /// A number for error messages.
    pub(crate) fn number(self) -> u64 {
        self.gen
    }
}

/// The outcome of trying to fail a job.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FailOutcome {
    /// This call's failure is the job's failure.
    Recorded,
    /// The job had already ended (completed or failed by someone else).
    AlreadyEnded,
}

impl JobSlot {
    pub(crate) fn state(&self) -> SlotState {
        // Acquire: pairs with the Release store of ACTIVE / COMPLETE / FAILED, so a reader
        // that sees a state also sees the header or failure record written before it.
        SlotState::from_u32(self.state.load(Ordering::Acquire))
    }

    /// Claims a FREE or RETIRED, unpinned slot for a new job: `Some(gen)` on success.
    pub(crate) fn try_claim(&self, gen: u64) -> Option<u64> {
        let s = self.state.load(Ordering::SeqCst);
        if s != SlotState::Free as u32 && s != SlotState::Retired as u32 {
            return None;
        }
        if self.is_pinned() {
            return None;
        }
        self.state
            .compare_exchange(
                s,
                SlotState::Init as u32,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .ok()?;
        // Only the claimer writes from here until `publish`; Relaxed is enough because
        // `publish` stores ACTIVE with Release and readers load it with Acquire.
        self.gen.store(gen, Ordering::Relaxed);
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
        self.failure.len.store(0, Ordering::Relaxed);
        self.table.store(0, Ordering::Relaxed);
        for w in &self.joined {
            w.store(0, Ordering::Relaxed);
        }
        Some(gen)
    }

    /// Makes the header visible to workers (INIT -> ACTIVE).
    pub(crate) fn publish(&self) {
        debug_assert_eq!(self.state(), SlotState::Init);
        self.state
            .store(SlotState::Active as u32, Ordering::Release);
    }

    /// Gives a collected slot back (COMPLETE/FAILED -> RETIRED).
    pub(crate) fn retire(&self) {
        debug_assert!(matches!(
            self.state(),
            SlotState::Complete | SlotState::Failed | SlotState::Init
        ));
        self.state
            .store(SlotState::Retired as u32, Ordering::SeqCst);
    }

    pub(crate) fn pin(&self, worker: usize) {
        self.pins[worker / 64].fetch_or(1 << (worker % 64), Ordering::SeqCst);
    }

    /// Clears `worker`'s pin; wakes the owner when a failed job loses its last pin.
    pub(crate) fn unpin(&self, worker: usize, ended: &Event) {
        self.pins[worker / 64].fetch_and(!(1 << (worker % 64)), Ordering::SeqCst);
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
        self.pins.iter().any(|w| w.load(Ordering::SeqCst) != 0)
    }

    /// Whether a process waiting for this job may spin without taking a CPU from the
    /// workers running it: spinning pays off for short jobs (a hand-off in well under a
    /// microsecond instead of a 25-30 us futex wake), but while the job's workers fill
    /// every CPU a spinning waiter only slows them down.
    fn spinning_leaves_cpus_free(&self) -> bool {
        // Relaxed: a heuristic; a stale count only makes one spin step longer or shorter.
        let busy: u32 = self
            .pins
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones())
            .sum();
        (busy as usize) < crate::sys::process::cpus()
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

    /// Whether the slot currently runs job `id`.
    pub(crate) fn is_active_job(&self, gen: u64) -> bool {
        // SeqCst, not Acquire: a worker calls this right after its SeqCst pin, and the
        // pin protocol (module docs) needs this load in the same total order as the pin,
        // the retiring store and the claimer's pin check. An Acquire load may be satisfied
        // before the pin is visible (store-load reordering), so a claimer could miss the
        // pin of a worker that saw the old job ACTIVE. (SeqCst also gives the Acquire that
        // pairs with `publish`, so `gen` below is the published one.)
        SlotState::from_u32(self.state.load(Ordering::SeqCst)) == SlotState::Active
            && self.holds(gen)
    }

    /// Whether the slot's current (or last) job has generation `gen`.
    pub(crate) fn holds(&self, gen: u64) -> bool {
        // Relaxed: callers order it after a state load (or only compare identities).
        self.gen.load(Ordering::Relaxed) == gen
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
        // makes the completing worker's COMPLETE store carry every other worker's too.
        let before = self.done.fetch_add(items, Ordering::AcqRel);
        if before + items == self.n_items.load(Ordering::Relaxed)
            && self
                .state
                .compare_exchange(
                    SlotState::Active as u32,
                    SlotState::Complete as u32,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.notify_end(ended);
        }
    }

    /// Completes a job of zero items (no worker will ever call `add_done`).
    pub(crate) fn complete_empty(&self, ended: &Event) {
        let _ = self.state.compare_exchange(
            SlotState::Active as u32,
            SlotState::Complete as u32,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.notify_end(ended);
    }

    /// Fails the job with `failure` unless it already ended. Allocation-free.
    pub(crate) fn fail(&self, failure: &Failure, ended: &Event) -> FailOutcome {
        if self
            .state
            .compare_exchange(
                SlotState::Active as u32,
                SlotState::Failing as u32,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return FailOutcome::AlreadyEnded;
        }
        let mut buf = [0u8; FAILURE_TEXT];
        let len = encode_failure(failure, &mut buf);
        for (i, word) in self.failure.bytes.iter().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&buf[i * 8..i * 8 + 8]);
            // Relaxed: published by the Release store of FAILED below.
            word.0.store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
        self.failure.len.store(len as u32, Ordering::Relaxed);
        self.state
            .store(SlotState::Failed as u32, Ordering::Release);
        self.notify_end(ended);
        FailOutcome::Recorded
    }

    /// The recorded failure of a FAILED job.
    pub(crate) fn failure(&self) -> Failure {
        debug_assert_eq!(self.state(), SlotState::Failed);
        let len = (self.failure.len.load(Ordering::Relaxed) as usize).min(FAILURE_TEXT);
        let mut buf = [0u8; FAILURE_TEXT];
        for (i, word) in self.failure.bytes.iter().enumerate() {
            buf[i * 8..i * 8 + 8].copy_from_slice(&word.0.load(Ordering::Relaxed).to_le_bytes());
        }
        bincode::deserialize(&buf[..len]).unwrap_or_else(|e| Failure::Setup {
            message: format!("unreadable failure record: {e}"),
        })
    }
}

/// Encodes a failure into `buf`, shortening its text if needed; returns the length.
fn encode_failure(failure: &Failure, buf: &mut [u8; FAILURE_TEXT]) -> usize {
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if bincode::serialize_into(&mut cursor, failure).is_ok() {
        return cursor.position() as usize;
    }
    // Too long: keep the head of the message (a panic text can be arbitrarily long).
    let shorten = |m: &str| {
        let mut end = m.len().min(FAILURE_TEXT - 64);
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &m[..end])
    };
    let short = match failure {
        Failure::Panicked { message } => Failure::Panicked {
            message: shorten(message),
        },
        Failure::Setup { message } => Failure::Setup {
            message: shorten(message),
        },
        other => other.clone(),
    };
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    match bincode::serialize_into(&mut cursor, &short) {
        Ok(()) => cursor.position() as usize,
        Err(_) => 0,
    }
}

#[cfg(test)]
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
    }

    #[test]
    fn first_failure_wins_and_long_messages_are_cut() {
        let s = slot();
        s.try_claim(1).unwrap();
        s.n_items.store(10, Ordering::Relaxed);
        s.publish();
        let long = "x".repeat(10_000);
        assert_eq!(
            s.fail(&Failure::Panicked { message: long }, &Event::new()),
            FailOutcome::Recorded
        );
        assert_eq!(
            s.fail(&Failure::Cancelled, &Event::new()),
            FailOutcome::AlreadyEnded
        );
        match s.failure() {
            Failure::Panicked { message } => {
                assert!(message.ends_with("...") && message.len() < FAILURE_TEXT)
            }
            other => panic!("unexpected {other:?}"),
        }
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
    }

    #[test]
    fn job_ids_pack() {
        let id = JobId {
            slot: 17,
            gen: 123_456,
        };
        assert_eq!(JobId::unpack(id.pack()), Some(id));
        assert_eq!(JobId::unpack(NO_PARENT), None);
    }
}
