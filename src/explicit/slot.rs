//! The record of one explicit process in shared memory, its state word, and the table
//! of them at the end of the pool's control block.
//!
//! ## The state word
//!
//! One 64-bit word holds the record's generation (48 bits, from the pool's job
//! generation counter, so a process number never equals a job number of the same pool)
//! and its [`ProcState`] (16 bits); every transition is one compare-and-swap on both, so
//! a stale descriptor (another generation) can never act on a reused record:
//!
//! ```text
//!   FREE(g)     --forker: claim (CAS)----------------------------> STARTING(g')
//!   STARTING(g) --child: begin (CAS), first thing it does---------> RUNNING(g)
//!   STARTING(g) --forker: abandon (CAS), fork never answered------> FREE(g)
//!   STARTING(g) --scheduler: fork failed / child died first (CAS)-> DYING(g)
//!   RUNNING(g)  --child: result published (CAS)-------------------> DONE(g)
//!   RUNNING(g)  --scheduler: reaped it before DONE (CAS)----------> DYING(g)
//!   DYING(g)    --scheduler: death recorded-----------------------> DIED(g)
//!   DONE(g) | DIED(g) --one joiner wins (CAS)---------------------> JOINED(g)
//!   JOINED(g)   --that joiner, after freeing the blocks-----------> FREE(g)
//! ```
//!
//! Who writes which field, and when: the forker writes `entry`, `type_tag` and `args`
//! while the record is STARTING and before it asks the scheduler to fork; the child
//! writes `pid` before `begin` and `result` / `oom_requested` before `finish`; the
//! scheduler takes the record to DYING first (so that no forker giving up on a STARTING
//! record can hand it to a new process meanwhile), then writes `pid` / `signal` /
//! `exit_code` / `fork_errno` and moves it to DIED. Each of those stores is Relaxed and
//! published by the Release half of the transition that follows it; every reader loads
//! the state word with Acquire (or SeqCst) first. After every
//! transition its author notifies `event`; waiters sleep on it with the state word as
//! their condition, so by the `futex::Event` protocol no wakeup is lost.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crate::futex::Event;
use crate::jobs::block_ref::BlockRef;
use crate::jobs::id::GEN_LIMIT;
use crate::jobs::table::PROCESS_TABLE_BYTES;
use crate::jobs::Control;

/// Most explicit processes a pool holds at once (running, or ended and not yet joined).
pub(crate) const MAX_PROCESSES: usize = 256;

const STATE_BITS: u32 = 16;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

/// Where an explicit process is in its life (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcState {
    Free,
    Starting,
    Running,
    Done,
    /// The scheduler is recording the death (a moment, inside its loop).
    Dying,
    Died,
    Joined,
    /// The word holds no state: shared memory was scribbled over.
    Corrupt,
}

impl ProcState {
    const fn code(self) -> u64 {
        match self {
            ProcState::Free => 0,
            ProcState::Starting => 1,
            ProcState::Running => 2,
            ProcState::Done => 3,
            ProcState::Died => 4,
            ProcState::Joined => 5,
            ProcState::Dying => 6,
            ProcState::Corrupt => STATE_MASK,
        }
    }

    const fn decode(code: u64) -> ProcState {
        match code {
            0 => ProcState::Free,
            1 => ProcState::Starting,
            2 => ProcState::Running,
            3 => ProcState::Done,
            4 => ProcState::Died,
            5 => ProcState::Joined,
            6 => ProcState::Dying,
            _ => ProcState::Corrupt,
        }
    }

    /// Whether the process has ended and its outcome waits for a joiner.
    pub(crate) fn has_ended(self) -> bool {
        matches!(self, ProcState::Done | ProcState::Died)
    }
}

const fn word(gen: u64, state: ProcState) -> u64 {
    (gen << STATE_BITS) | state.code()
}

/// The record of one explicit process. Plain atomics only (zeroed memory is a FREE
/// record of generation 0, which no process ever has).
#[repr(C, align(64))]
pub(crate) struct ProcSlot {
    state: AtomicU64,
    /// Notified after every transition of `state`.
    pub(crate) event: Event,
    /// The child's pid (written by the child before `begin`).
    pub(crate) pid: AtomicI32,
    /// The signal that killed the child, or -1 (written by the scheduler before DIED).
    pub(crate) signal: AtomicI32,
    /// The child's exit code, or -1 (written by the scheduler before DIED).
    pub(crate) exit_code: AtomicI32,
    /// The errno of a failed `fork`, or 0 (written by the scheduler before DIED).
    pub(crate) fork_errno: AtomicI32,
    /// The child's trampoline, as `kind::anchor`-relative code offset (forker, STARTING).
    pub(crate) entry: AtomicU64,
    /// A fingerprint of the result type, checked when a descriptor is opened (forker).
    pub(crate) type_tag: AtomicU64,
    /// The encoded argument (forker, STARTING); freed by the joiner.
    pub(crate) args: BlockRef,
    /// The encoded outcome, `Result<R, String>` (child, before DONE); freed by the joiner.
    pub(crate) result: BlockRef,
    /// Bytes the child could not allocate for its result (0: none; child, before DONE).
    pub(crate) oom_requested: AtomicU64,
    /// What the process reported with `Ctx::progress` (monotonic, like a job's).
    pub(crate) progress_done: AtomicU64,
    pub(crate) progress_total: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<ProcSlot>() % 64 == 0);
const _: () = assert!(MAX_PROCESSES * std::mem::size_of::<ProcSlot>() <= PROCESS_TABLE_BYTES);

impl ProcSlot {
    /// The record's generation and state (Acquire: a reader that sees a state sees the
    /// fields written before the transition to it).
    pub(crate) fn load(&self) -> (u64, ProcState) {
        let w = self.state.load(Ordering::Acquire);
        (w >> STATE_BITS, ProcState::decode(w & STATE_MASK))
    }

    /// The state, if the record still holds generation `gen`.
    pub(crate) fn state_of(&self, gen: u64) -> Option<ProcState> {
        let (g, s) = self.load();
        (g == gen).then_some(s)
    }

    /// Moves `from(gen)` to `to(gen)`, then wakes the waiters. False if the record was
    /// elsewhere (another state or generation): nothing changed.
    pub(crate) fn transition(&self, gen: u64, from: ProcState, to: ProcState) -> bool {
        // AcqRel: Release publishes the fields this transition's author wrote before it;
        // Acquire lets the author see what the previous transition published.
        let ok = self
            .state
            .compare_exchange(
                word(gen, from),
                word(gen, to),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if ok {
            self.event.notify();
        }
        ok
    }

    /// Claims a FREE record for a new process of generation `gen`: the claimer then owns
    /// every field until it asks for the fork.
    fn claim(&self, gen: u64) -> bool {
        debug_assert!(gen > 0 && gen < GEN_LIMIT);
        let cur = self.state.load(Ordering::Acquire);
        if ProcState::decode(cur & STATE_MASK) != ProcState::Free {
            return false;
        }
        // AcqRel: Acquire sees the last joiner's frees before we reuse the fields.
        self.state
            .compare_exchange(
                cur,
                word(gen, ProcState::Starting),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Frees the record after its joiner (or its forker) released what it held.
    pub(crate) fn release(&self, gen: u64, from: ProcState) {
        self.transition(gen, from, ProcState::Free);
    }

    /// The death the scheduler recorded: `(signal, exit_code)`.
    pub(crate) fn death(&self) -> (Option<i32>, Option<i32>) {
        let sig = self.signal.load(Ordering::Relaxed);
        let code = self.exit_code.load(Ordering::Relaxed);
        ((sig >= 0).then_some(sig), (code >= 0).then_some(code))
    }
}

/// The table of explicit-process records in a pool's control block.
#[derive(Clone, Copy)]
pub(crate) struct ProcTable<'a> {
    control: &'a Control,
}

impl<'a> ProcTable<'a> {
    pub(crate) fn of(control: &'a Control) -> ProcTable<'a> {
        ProcTable { control }
    }

    /// Record `i`, if there is one.
    pub(crate) fn slot(&self, i: usize) -> Option<&'a ProcSlot> {
        if i >= MAX_PROCESSES {
            return None;
        }
        let base = self.control.process_table() as *const ProcSlot;
        // SAFETY: the control block reserves `PROCESS_TABLE_BYTES` zero-initialised,
        // 64-aligned bytes there (`Control::process_table`), which hold `MAX_PROCESSES`
        // records (asserted at compile time) made only of atomics; `i` is in bounds.
        Some(unsafe { &*base.add(i) })
    }

    /// Claims a free record, returning its index and generation.
    pub(crate) fn claim(&self) -> Option<(usize, u64)> {
        (0..MAX_PROCESSES).find_map(|i| {
            let gen = self.control.next_gen();
            let slot = self.slot(i)?;
            slot.claim(gen).then_some((i, gen))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_code() {
        for s in [
            ProcState::Free,
            ProcState::Starting,
            ProcState::Running,
            ProcState::Done,
            ProcState::Died,
            ProcState::Joined,
            ProcState::Dying,
            ProcState::Corrupt,
        ] {
            assert_eq!(ProcState::decode(s.code()), s);
        }
        assert_eq!(ProcState::decode(77), ProcState::Corrupt);
    }

    #[test]
    fn transitions_are_one_way_and_generation_checked() {
        // SAFETY: all-zero bytes are a valid record (atomics only).
        let slot: ProcSlot = unsafe { std::mem::zeroed() };
        assert!(slot.claim(7));
        assert!(!slot.claim(8), "a claimed record is not claimed again");
        assert!(!slot.transition(6, ProcState::Starting, ProcState::Running));
        assert!(slot.transition(7, ProcState::Starting, ProcState::Running));
        assert!(slot.transition(7, ProcState::Running, ProcState::Done));
        assert!(slot.transition(7, ProcState::Done, ProcState::Joined));
        assert!(
            !slot.transition(7, ProcState::Done, ProcState::Joined),
            "exactly one joiner wins"
        );
        slot.release(7, ProcState::Joined);
        assert_eq!(slot.load(), (7, ProcState::Free));
        assert_eq!(slot.state_of(8), None);
        assert!(slot.claim(9));
    }
}
