//! The lock-free cores of [`Semaphore`](super::Semaphore) and
//! [`Barrier`](super::Barrier): their atomic state words and transitions, written against
//! the crate's atomics facade so that `loom_tests` model-checks them unchanged. Waiting
//! (the futex [`Event`](crate::futex::Event) beside each word) is not part of them: a
//! waiter re-checks these transitions after every wake.

use crate::loom::{AtomicU32, AtomicU64, Ordering};

/// A semaphore's count of free permits.
#[repr(C)]
pub(crate) struct Permits {
    count: AtomicU32,
}

impl Permits {
    pub(crate) fn new(n: u32) -> Permits {
        Permits {
            count: AtomicU32::new(n),
        }
    }

    /// Takes one permit if one is free.
    pub(crate) fn try_take(&self) -> bool {
        let mut cur = self.count.load(Ordering::Relaxed);
        loop {
            if cur == 0 {
                return false;
            }
            // Acquire: what the releaser wrote before giving the permit back is visible
            // to the taker (a semaphore used as a lock, or as a hand-off).
            match self.count.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Gives `n` permits back; `Err(count)` (and no change) if the count would pass
    /// `u32::MAX`.
    pub(crate) fn give(&self, n: u32) -> Result<(), u32> {
        let mut cur = self.count.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n) else {
                return Err(cur);
            };
            // Release: pairs with the taker's Acquire.
            match self
                .count
                .compare_exchange_weak(cur, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// Free permits now (a snapshot).
    pub(crate) fn available(&self) -> u32 {
        // Relaxed: a snapshot for reports.
        self.count.load(Ordering::Relaxed)
    }
}

/// A reusable barrier's state: `generation << 32 | arrived`, one word so that arriving,
/// releasing and withdrawing are single atomic transitions.
///
/// States and transitions (`n` parties, `0 <= arrived < n` always):
/// * arrive, not last: `(g, a) -> (g, a + 1)`, then wait until the generation is not `g`;
/// * arrive, last (`a == n - 1`): `(g, n - 1) -> (g + 1, 0)`: releases the round;
/// * withdraw (a waiter's timeout): `(g, a) -> (g, a - 1)` while the generation is still
///   `g`; if it moved, the round was released and the waiter passed after all.
///
/// The count never reaches `n` in the word, so a withdrawal cannot race with a release
/// into a state where the withdrawn party was counted.
#[repr(C)]
pub(crate) struct Turnstile {
    word: AtomicU64,
}

/// What [`Turnstile::arrive`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Arrival {
    /// This party was the last of the round and released it.
    Released,
    /// Counted in round `generation`; wait until [`Turnstile::passed`].
    Counted { generation: u32 },
}

impl Turnstile {
    pub(crate) fn new() -> Turnstile {
        Turnstile {
            word: AtomicU64::new(0),
        }
    }

    /// Counts this party in the current round of `parties` (at least 1).
    pub(crate) fn arrive(&self, parties: u32) -> Arrival {
        debug_assert!(parties >= 1);
        let mut cur = self.word.load(Ordering::Relaxed);
        loop {
            let (generation, arrived) = ((cur >> 32) as u32, cur as u32);
            let last = arrived + 1 >= parties;
            let next = if last {
                u64::from(generation.wrapping_add(1)) << 32
            } else {
                cur + 1
            };
            // AcqRel: Release publishes this party's writes before the barrier (through
            // the chain of read-modify-writes) to the releasing party; Acquire on the
            // release makes every earlier party's writes visible to it, and its own
            // Release passes them on to the waiters' Acquire loads in `passed`.
            match self
                .word
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if last => return Arrival::Released,
                Ok(_) => return Arrival::Counted { generation },
                Err(now) => cur = now,
            }
        }
    }

    /// Whether round `generation` was released.
    pub(crate) fn passed(&self, generation: u32) -> bool {
        // Acquire: pairs with the releasing party's AcqRel transition.
        (self.word.load(Ordering::Acquire) >> 32) as u32 != generation
    }

    /// Takes this party back out of round `generation`: true if done, false if the round
    /// was released meanwhile (the party passed).
    pub(crate) fn withdraw(&self, generation: u32) -> bool {
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            if (cur >> 32) as u32 != generation {
                return false;
            }
            debug_assert!(cur as u32 > 0, "a counted party is in the count");
            // Acquire on failure: a released round's writes are visible to the party
            // that finds it passed.
            match self.word.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::Relaxed,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// The current round's generation (a snapshot: it moves on when the round is
    /// released).
    pub(crate) fn generation(&self) -> u32 {
        // Acquire: as `passed`.
        (self.word.load(Ordering::Acquire) >> 32) as u32
    }

    /// Parties counted in the current round (a snapshot).
    pub(crate) fn arrived(&self) -> u32 {
        // Relaxed: a snapshot for reports.
        self.word.load(Ordering::Relaxed) as u32
    }
}
