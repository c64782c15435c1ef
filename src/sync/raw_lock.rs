//! The lock inside every [`Mutex`](super::Mutex) and shared container: a robust
//! process-shared pthread mutex (see `mempool/lock.rs`) plus a *poisoned* flag that
//! outlives the holder's death.
//!
//! ## States of the flag (read and written only while holding the lock)
//!
//! * `CONSISTENT` (0): the last holder unlocked normally.
//! * `POISONED` (1): a holder died (the kernel told the next locker with `EOWNERDEAD`) or
//!   panicked with the guard alive. Every later locker is told (`LockError::Poisoned` for
//!   a `Mutex`; a container repairs itself) until one repairs the data and clears it.
//!
//! The pthread mutex itself is marked consistent at once when it reports `EOWNERDEAD`,
//! so it stays usable; the flag carries the news instead. Otherwise a locker that drops
//! the guard without repairing would make the mutex unusable forever
//! (`ENOTRECOVERABLE`), and the news would stop there.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::mempool::lock::{Acquired, RobustGuard, RobustMutex};

const CONSISTENT: u32 = 0;
const POISONED: u32 = 1;

/// How long a lock call may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Until the lock is free.
    Block,
    /// Not at all: `None` if somebody holds it.
    Try,
    /// At most this long: [`Error::Timeout`] after.
    Timeout(Duration),
}

/// A robust lock and its poisoned flag, in shared memory (zeroed, then [`init`]ed).
///
/// [`init`]: RawLock::init
#[repr(C)]
pub(crate) struct RawLock {
    mutex: RobustMutex,
    /// `CONSISTENT` or `POISONED` (see the module docs).
    state: AtomicU32,
    /// How many holders died holding the lock, ever.
    deaths: AtomicU32,
}

/// The lock, held by this thread.
pub(crate) struct Held<'a> {
    guard: RobustGuard<'a>,
    lock: &'a RawLock,
    /// This acquisition found the previous holder dead.
    pub(crate) owner_died: bool,
}

impl RawLock {
    /// Initializes the lock in place (error-checking: relocking by the holder is an
    /// error, not a hang).
    ///
    /// # Safety
    /// `self` is at its final address in shared memory, zeroed, and nobody uses it yet.
    pub(crate) unsafe fn init(&self) -> Result<()> {
        // SAFETY: the caller's contract is `init_error_checking`'s.
        unsafe { self.mutex.init_error_checking() }
            .map_err(|e| Error::io("initializing a process-shared mutex", e))
    }

    /// Takes the lock, waiting as `how` says; `Ok(None)` only for [`Wait::Try`] when the
    /// lock is held.
    ///
    /// # Errors
    /// [`Error::Timeout`] when a [`Wait::Timeout`] passes; [`Error::Io`] for `EDEADLK`
    /// (this thread holds it already) or an unexpected glibc error.
    #[inline(always)]
    pub(crate) fn acquire(&self, how: Wait) -> Result<Option<Held<'_>>> {
        let got = match how {
            Wait::Block => self.mutex.lock().map(Some),
            Wait::Try => self.mutex.try_lock(),
            Wait::Timeout(limit) => match self.mutex.lock_timeout(limit) {
                Ok(None) => return Err(Error::Timeout { job: None, limit }),
                other => other,
            },
        };
        match got {
            // The common case, small enough to inline into every caller.
            Ok(Some((guard, Acquired::Clean))) => Ok(Some(Held {
                guard,
                lock: self,
                owner_died: false,
            })),
            other => self.acquired_otherwise(other),
        }
    }

    /// The rest of [`acquire`](Self::acquire): a busy `try`, an error, or a lock whose
    /// previous holder died.
    #[cold]
    #[inline(never)]
    fn acquired_otherwise<'a>(
        &'a self,
        got: io::Result<Option<(RobustGuard<'a>, Acquired)>>,
    ) -> Result<Option<Held<'a>>> {
        let (guard, acquired) = match got {
            Ok(Some(pair)) => pair,
            Ok(None) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EDEADLK) => {
                return Err(Error::io(
                    "locking a procyon lock that this thread already holds (a guard is still \
                     alive: drop it first)",
                    e,
                ))
            }
            Err(e) => return Err(Error::io("locking a process-shared mutex", e)),
        };
        let owner_died = acquired == Acquired::OwnerDied;
        if owner_died {
            // Relaxed: written and read only under the lock, whose acquire/release orders
            // them.
            self.deaths.fetch_add(1, Relaxed);
            self.state.store(POISONED, Relaxed);
            // The flag now carries the news; keep the pthread mutex usable (see the
            // module docs). Failing would mean we do not hold it, which we do.
            guard
                .mark_consistent()
                .map_err(|e: io::Error| Error::io("marking a recovered mutex consistent", e))?;
        }
        Ok(Some(Held {
            guard,
            lock: self,
            owner_died,
        }))
    }

    /// Whether the flag says poisoned (racy unless the lock is held; for reports).
    pub(crate) fn is_poisoned(&self) -> bool {
        // Relaxed: a snapshot for a report; lockers read it under the lock.
        self.state.load(Relaxed) == POISONED
    }

    /// How many holders died holding the lock.
    pub(crate) fn deaths(&self) -> u32 {
        // Relaxed: a counter for reports.
        self.deaths.load(Relaxed)
    }
}

impl<'a> Held<'a> {
    /// Whether the data is marked inconsistent (by a death now or earlier, or a panic).
    #[inline]
    pub(crate) fn poisoned(&self) -> bool {
        // Relaxed: we hold the lock.
        self.lock.state.load(Relaxed) == POISONED
    }

    /// Marks the data inconsistent (a panic with the guard alive).
    pub(crate) fn poison(&self) {
        // Relaxed: we hold the lock; the unlock publishes it.
        self.lock.state.store(POISONED, Relaxed);
    }

    /// Marks the data repaired.
    pub(crate) fn mark_consistent(&self) {
        // Relaxed: we hold the lock; the unlock publishes it.
        self.lock.state.store(CONSISTENT, Relaxed);
    }

    /// The lock this guard holds.
    pub(crate) fn lock(&self) -> &'a RawLock {
        self.lock
    }

    /// Unlocks.
    #[inline]
    pub(crate) fn release(self) {
        drop(self.guard);
    }
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::align_of::<RawLock>() == 64);
