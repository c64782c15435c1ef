//! A slot's state word and pins: which job a slot holds, where that job is in its life,
//! and which workers may still be inside it.
//!
//! ## The state word
//!
//! One 64-bit word holds the job's generation (48 bits, see [`GEN_LIMIT`]) and its
//! [`SlotState`] (16 bits), so "this slot runs job `gen` and the job is ACTIVE" is one
//! load and every transition is one atomic operation on both:
//!
//! ```text
//!   FREE/RETIRED(g) --claim (CAS, unpinned)--> INIT(g') --publish (Release)--> ACTIVE(g')
//!   ACTIVE(g) --last chunk done: complete (CAS)---------------------------> COMPLETE(g)
//!   ACTIVE(g) --first failure wins: begin_failure (CAS)--> FAILING(g) --end_failure--> FAILED(g)
//!   COMPLETE(g) | FAILED(g) --the owner (or the scheduler) has collected it--> RETIRED(g)
//! ```
//!
//! Only the claimer writes the read-only part of the header, and only in INIT; `publish`
//! stores ACTIVE with Release and readers load the word with Acquire (or SeqCst), so a
//! process that sees ACTIVE(g) sees the whole header of job `g`. A code that is no state
//! (a word scribbled over by a wild task) reads as [`SlotState::Corrupt`]: never reused,
//! never run, reported to its owner.
//!
//! ## Pins: when a slot may be reused
//!
//! A worker about to act on a slot sets its bit in the [`Pins`] (SeqCst), then checks
//! [`StateWord::is_active`] for the generation it expects (SeqCst); it clears the bit
//! when it leaves. [`StateWord::claim`] takes a reusable slot only while no bit is set
//! (SeqCst load before the claiming CAS). The pin, the worker's check, the retiring
//! store and the claimer's pin check all sit in one total order: if the worker's check
//! sees its job ACTIVE, its pin precedes the check, which precedes the retiring, which
//! precedes the claimer's pin check, so the claimer sees the pin and leaves the slot
//! alone. A worker whose check fails (another generation, or not ACTIVE) drops the slot:
//! no worker ever runs a half-rewritten header. `loom_tests` model-checks this.

use crate::jobs::id::GEN_LIMIT;
use crate::loom::{fence, AtomicU64, Ordering};

/// Most workers (and spare workers) a pool may have: one pin bit each.
pub(crate) const MAX_WORKERS: usize = 256;
const PIN_WORDS: usize = MAX_WORKERS / 64;
const STATE_BITS: u32 = 16;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

/// Where a job is in its life (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    Free,
    Init,
    Active,
    Complete,
    Failing,
    Failed,
    Retired,
    /// The word holds no state: shared memory was scribbled over.
    Corrupt,
}

impl SlotState {
    const fn code(self) -> u64 {
        match self {
            SlotState::Free => 0,
            SlotState::Init => 1,
            SlotState::Active => 2,
            SlotState::Complete => 3,
            SlotState::Failing => 4,
            SlotState::Failed => 5,
            SlotState::Retired => 6,
            SlotState::Corrupt => STATE_MASK,
        }
    }

    const fn decode(code: u64) -> SlotState {
        match code {
            0 => SlotState::Free,
            1 => SlotState::Init,
            2 => SlotState::Active,
            3 => SlotState::Complete,
            4 => SlotState::Failing,
            5 => SlotState::Failed,
            6 => SlotState::Retired,
            _ => SlotState::Corrupt,
        }
    }

    /// A slot in this state may be claimed for a new job (when unpinned).
    pub(crate) fn is_reusable(self) -> bool {
        matches!(self, SlotState::Free | SlotState::Retired)
    }

    /// The job has an outcome its owner can collect.
    pub(crate) fn has_ended(self) -> bool {
        matches!(self, SlotState::Complete | SlotState::Failed)
    }
}

/// A generation and a state, as one word holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(u64);

impl Stamp {
    pub(crate) fn new(gen: u64, state: SlotState) -> Stamp {
        debug_assert!(gen < GEN_LIMIT);
        Stamp((gen << STATE_BITS) | state.code())
    }

    pub(crate) fn gen(self) -> u64 {
        self.0 >> STATE_BITS
    }

    pub(crate) fn state(self) -> SlotState {
        SlotState::decode(self.0 & STATE_MASK)
    }

    fn with(self, state: SlotState) -> Stamp {
        Stamp::new(self.gen(), state)
    }
}

/// The state word of a slot (see the module docs).
#[repr(transparent)]
pub(crate) struct StateWord(AtomicU64);

/// The state word of a slot while it runs job `gen`, ACTIVE: made once by a reader
/// that checks it after every chunk (`worker::inline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ActiveStamp(u64);

impl ActiveStamp {
    #[inline]
    pub(crate) fn of(gen: u64) -> ActiveStamp {
        ActiveStamp(Stamp::new(gen, SlotState::Active).0)
    }
}

impl StateWord {
    #[cfg(loom)]
    pub(crate) fn new(gen: u64, state: SlotState) -> StateWord {
        StateWord(AtomicU64::new(Stamp::new(gen, state).0))
    }

    /// The current generation and state. Acquire: pairs with the Release stores of
    /// ACTIVE / FAILED and the AcqRel of COMPLETE, so a reader that sees a state also
    /// sees the header or failure record written before it.
    pub(crate) fn load(&self) -> Stamp {
        Stamp(self.0.load(Ordering::Acquire))
    }

    /// Claims a reusable slot that no worker has pinned, for job `gen` (INIT). Only the
    /// claimer writes the header from here until [`StateWord::publish`].
    #[must_use]
    pub(crate) fn claim(&self, pins: &Pins, gen: u64) -> bool {
        // The claimer's half of the pin protocol's store-load pair: whatever this thread
        // stored before (the retiring of the slot) is ordered before the pin check below.
        // SeqCst accesses alone order it in the C++ model too; the fence makes the
        // argument rest on fences, which loom checks exactly.
        fence(Ordering::SeqCst);
        let cur = Stamp(self.0.load(Ordering::SeqCst));
        if !cur.state().is_reusable() || pins.any() {
            return false;
        }
        self.0
            .compare_exchange(
                cur.0,
                Stamp::new(gen, SlotState::Init).0,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }

    /// Makes job `gen`'s header visible to workers (INIT -> ACTIVE).
    pub(crate) fn publish(&self, gen: u64) {
        debug_assert_eq!(self.load(), Stamp::new(gen, SlotState::Init));
        self.0
            .store(Stamp::new(gen, SlotState::Active).0, Ordering::Release);
    }

    /// ACTIVE -> COMPLETE (the caller finished the last items); false if the job had
    /// ended otherwise. The caller is inside the job (pinned), so the generation is its.
    #[must_use]
    pub(crate) fn complete(&self) -> bool {
        self.transition(SlotState::Active, SlotState::Complete)
    }

    /// ACTIVE -> FAILING: the caller's failure is the job's, and the caller must record
    /// it and call [`StateWord::end_failure`]. False if the job had ended already.
    #[must_use]
    pub(crate) fn begin_failure(&self) -> bool {
        self.transition(SlotState::Active, SlotState::Failing)
    }

    /// ACTIVE -> FAILING if the slot still runs job `gen`: [`begin_failure`] for a caller
    /// that holds no pin on the slot, which may have been retired and claimed by another
    /// job since the caller looked at it. False if it holds another job, or the job had
    /// ended already.
    ///
    /// [`begin_failure`]: StateWord::begin_failure
    #[must_use]
    pub(crate) fn begin_failure_of(&self, gen: u64) -> bool {
        // AcqRel / Acquire as `transition`. The only changes from ACTIVE of the same
        // generation are the job's end (COMPLETE, or FAILING by another caller), after
        // which the exchange fails, as it should.
        self.0
            .compare_exchange(
                Stamp::new(gen, SlotState::Active).0,
                Stamp::new(gen, SlotState::Failing).0,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// FAILING -> FAILED, publishing the failure record written since `begin_failure`.
    pub(crate) fn end_failure(&self) {
        let cur = self.load();
        debug_assert_eq!(cur.state(), SlotState::Failing);
        self.0
            .store(cur.with(SlotState::Failed).0, Ordering::Release);
    }

    /// Gives a collected slot back (COMPLETE / FAILED, or an INIT never published ->
    /// RETIRED), keeping the generation so that late readers recognise the old job.
    pub(crate) fn retire(&self) {
        let cur = self.load();
        debug_assert!(matches!(
            cur.state(),
            SlotState::Complete | SlotState::Failed | SlotState::Init
        ));
        self.0
            .store(cur.with(SlotState::Retired).0, Ordering::SeqCst);
    }

    /// Whether the slot runs job `gen` and it is ACTIVE.
    ///
    /// SeqCst, not Acquire: a worker calls this right after its SeqCst pin, and the pin
    /// protocol (module docs) needs this load in the same total order as the pin, the
    /// retiring store and the claimer's pin check. An Acquire load may be satisfied
    /// before the pin is visible (store-load reordering), so a claimer could miss the pin
    /// of a worker that saw the old job ACTIVE. (SeqCst also gives the Acquire that pairs
    /// with `publish`.)
    #[inline]
    pub(crate) fn is_active(&self, gen: u64) -> bool {
        self.is_still_active(ActiveStamp::of(gen))
    }

    /// [`is_active`](StateWord::is_active) for the job `stamp` was made for (the same
    /// SeqCst load), without making the stamp again.
    #[inline]
    pub(crate) fn is_still_active(&self, stamp: ActiveStamp) -> bool {
        self.0.load(Ordering::SeqCst) == stamp.0
    }

    fn transition(&self, from: SlotState, to: SlotState) -> bool {
        let mut cur = self.load();
        loop {
            if cur.state() != from {
                return false;
            }
            // AcqRel: Release publishes what the caller wrote before (outputs, the failure
            // claim); Acquire makes a completing worker carry what the others published
            // through `done`.
            match self.0.compare_exchange_weak(
                cur.0,
                cur.with(to).0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = Stamp(actual),
            }
        }
    }
}

/// One bit per worker row: who may still be inside the slot's job.
#[repr(transparent)]
pub(crate) struct Pins([AtomicU64; PIN_WORDS]);

impl Pins {
    #[cfg(loom)]
    pub(crate) fn new() -> Pins {
        Pins(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    pub(crate) fn pin(&self, worker: usize) {
        self.0[worker / 64].fetch_or(1 << (worker % 64), Ordering::SeqCst);
        // The worker's half of the store-load pair: the pin is ordered before its check of
        // the state word (see `StateWord::claim`).
        fence(Ordering::SeqCst);
    }

    pub(crate) fn unpin(&self, worker: usize) {
        self.0[worker / 64].fetch_and(!(1 << (worker % 64)), Ordering::SeqCst);
    }

    /// Whether any worker is (about to be) inside. SeqCst: the claimer's check in the
    /// pin protocol.
    pub(crate) fn any(&self) -> bool {
        self.0.iter().any(|w| w.load(Ordering::SeqCst) != 0)
    }

    /// How many workers are inside, as a heuristic. Relaxed: a stale count only makes
    /// one spin step longer or shorter.
    pub(crate) fn count(&self) -> usize {
        self.0
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_garbage_is_corrupt() {
        for state in [
            SlotState::Free,
            SlotState::Init,
            SlotState::Active,
            SlotState::Complete,
            SlotState::Failing,
            SlotState::Failed,
            SlotState::Retired,
        ] {
            let s = Stamp::new(GEN_LIMIT - 1, state);
            assert_eq!((s.gen(), s.state()), (GEN_LIMIT - 1, state));
        }
        assert_eq!(Stamp(7).state(), SlotState::Corrupt);
        assert_eq!(Stamp(u64::MAX).state(), SlotState::Corrupt);
        assert!(!SlotState::Corrupt.is_reusable() && !SlotState::Corrupt.has_ended());
    }
}
