//! The allocator lock: a process-shared, *robust* pthread mutex in the pool header.
//!
//! Robust means the lock survives the death of its holder, even by SIGKILL:
//!
//! * glibc links every robust mutex a thread holds into that thread's robust list, whose
//!   head it registered with the kernel (`set_robust_list`). glibc's `fork` registers a
//!   fresh list in the child, so this holds in every process of the tree.
//! * When a thread dies, the kernel walks its list and, for each mutex still held, sets
//!   `FUTEX_OWNER_DIED` in the lock word and wakes one waiter.
//! * The next `pthread_mutex_lock` then *acquires* the lock and returns `EOWNERDEAD`: the
//!   caller owns the lock, the protected data may be half-updated. It must repair the data
//!   and call `pthread_mutex_consistent` before unlocking; if it unlocks (or dies) without
//!   doing so, the next locker sees `EOWNERDEAD` again (death) or `ENOTRECOVERABLE`
//!   (unlock without repair; the lock is then unusable forever).
//!
//! [`RobustMutex::lock`] reports the second case as [`Acquired::OwnerDied`]; the mempool
//! runs its recovery (see the mempool module docs) and calls
//! [`RobustGuard::mark_consistent`].
//!
//! A held lock is tried again for a couple of microseconds ([`SPIN`]) before a locker
//! sleeps in glibc, whose robust mutexes go to sleep on the futex at once: a holder in
//! another process usually lets go within a few hundred nanoseconds, and every sleeper
//! costs the holder a system call to wake it at unlock.
//!
//! Why a pthread mutex and not our own futex word: the robust-list protocol needs the
//! kernel to know where the lock word is and which thread holds it, in glibc's format. A
//! hand-rolled version would have to take over the thread's robust list from glibc.

use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// How long a locker keeps trying a held lock before it sleeps until it is free.
const SPIN: Duration = Duration::from_micros(2);

/// `PAUSE`s between two tries while spinning (each try is a CAS on the lock's line).
const SPIN_PAUSES: u32 = 8;

/// How [`RobustMutex::lock`] got the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Acquired {
    /// The previous holder unlocked it normally: the protected data is consistent.
    Clean,
    /// The previous holder died holding it: the data may be half-updated. Repair it, then
    /// call [`RobustGuard::mark_consistent`].
    OwnerDied,
}

/// A process-shared robust mutex, to be placed in shared memory and initialized in place.
#[repr(C, align(64))]
pub(crate) struct RobustMutex {
    raw: UnsafeCell<libc::pthread_mutex_t>,
}

const _: () = assert!(std::mem::size_of::<RobustMutex>() == 64);

// SAFETY: a process-shared pthread mutex is designed to be used from any thread of any
// process; all access goes through the pthread functions, which synchronize internally.
unsafe impl Sync for RobustMutex {}
// SAFETY: as above; the mutex has no thread affinity while unlocked.
unsafe impl Send for RobustMutex {}

/// Maps a pthread return code to `io::Result`.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

impl RobustMutex {
    /// Initializes the mutex in place as process-shared and robust.
    ///
    /// # Safety
    /// `self` must be at its final address (in the shared mapping) and no thread of any
    /// process may use it yet, nor concurrently with this call.
    pub(crate) unsafe fn init(&self) -> io::Result<()> {
        // SAFETY: the caller's contract is ours.
        unsafe { self.init_kind(libc::PTHREAD_MUTEX_NORMAL) }
    }

    /// As [`init`](Self::init), but an error-checking mutex: a thread that locks it
    /// again while holding it gets `EDEADLK` instead of hanging forever (the user-facing
    /// `procyon::sync::Mutex` wants that error).
    ///
    /// # Safety
    /// As [`init`](Self::init).
    pub(crate) unsafe fn init_error_checking(&self) -> io::Result<()> {
        // SAFETY: the caller's contract is ours.
        unsafe { self.init_kind(libc::PTHREAD_MUTEX_ERRORCHECK) }
    }

    /// # Safety
    /// As [`init`](Self::init).
    unsafe fn init_kind(&self, kind: libc::c_int) -> io::Result<()> {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is valid for writes; pthread_mutexattr_init initializes it.
        check(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
        let attr_ptr = attr.as_mut_ptr();
        // SAFETY: `attr_ptr` was initialized above; the setters only write the attribute,
        // and pthread_mutex_init writes the mutex, which nobody else uses yet (caller's
        // contract).
        let result = unsafe {
            check(libc::pthread_mutexattr_setpshared(
                attr_ptr,
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|()| {
                check(libc::pthread_mutexattr_setrobust(
                    attr_ptr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|()| check(libc::pthread_mutexattr_settype(attr_ptr, kind)))
            .and_then(|()| check(libc::pthread_mutex_init(self.raw.get(), attr_ptr)))
        };
        // SAFETY: `attr_ptr` is initialized and not used after this.
        unsafe { libc::pthread_mutexattr_destroy(attr_ptr) };
        result
    }

    /// Blocks until this thread holds the lock (spinning for up to [`SPIN`] first).
    ///
    /// Errors: `ENOTRECOVERABLE` if a previous holder gave up on recovery (the pool is
    /// unusable), and any other error glibc reports (none is expected).
    #[inline]
    pub(crate) fn lock(&self) -> io::Result<(RobustGuard<'_>, Acquired)> {
        if let Some(got) = self.spin()? {
            return Ok(got);
        }
        // SAFETY: the mutex was initialized by `init` before the region was shared (the
        // mempool's construction order), and lives as long as `self`.
        let rc = unsafe { libc::pthread_mutex_lock(self.raw.get()) };
        let guard = || RobustGuard {
            mutex: self,
            _not_send: PhantomData,
        };
        match rc {
            0 => Ok((guard(), Acquired::Clean)),
            libc::EOWNERDEAD => Ok((guard(), Acquired::OwnerDied)),
            err => Err(io::Error::from_raw_os_error(err)),
        }
    }

    /// Takes the lock if nobody holds it; `None` if somebody does (`EBUSY`).
    ///
    /// Errors: as [`lock`](Self::lock).
    #[inline]
    pub(crate) fn try_lock(&self) -> io::Result<Option<(RobustGuard<'_>, Acquired)>> {
        // SAFETY: as in `lock`.
        let rc = unsafe { libc::pthread_mutex_trylock(self.raw.get()) };
        self.outcome(rc, libc::EBUSY)
    }

    /// Blocks until this thread holds the lock or `timeout` has passed (`None`),
    /// spinning for up to [`SPIN`] first.
    ///
    /// glibc measures the limit on `CLOCK_REALTIME`; the absolute time is taken from it
    /// just before the call, so only a wall-clock step *during* the wait stretches or
    /// shortens it. Errors: as [`lock`](Self::lock).
    pub(crate) fn lock_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> io::Result<Option<(RobustGuard<'_>, Acquired)>> {
        if let Some(got) = self.spin()? {
            return Ok(Some(got));
        }
        // `spin` gives up only after `SPIN`: that much of the limit is gone.
        let timeout = timeout.saturating_sub(SPIN);
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid timespec to write.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let nanos = now.tv_nsec as u64 + u64::from(timeout.subsec_nanos());
        let secs = (now.tv_sec as u64)
            .saturating_add(timeout.as_secs())
            .saturating_add(nanos / 1_000_000_000)
            .min(libc::time_t::MAX as u64);
        let abs = libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: as in `lock`; `abs` is a valid timespec on our stack.
        let rc = unsafe { libc::pthread_mutex_timedlock(self.raw.get(), &abs) };
        self.outcome(rc, libc::ETIMEDOUT)
    }

    /// Tries to take the lock, and keeps trying for up to [`SPIN`] if it is held:
    /// `Ok(None)` if it stayed held.
    #[inline]
    fn spin(&self) -> io::Result<Option<(RobustGuard<'_>, Acquired)>> {
        match self.try_lock()? {
            Some(got) => Ok(Some(got)),
            None => self.spin_held(),
        }
    }

    /// The spinning part of [`spin`](Self::spin), once the lock was found held.
    #[cold]
    #[inline(never)]
    fn spin_held(&self) -> io::Result<Option<(RobustGuard<'_>, Acquired)>> {
        // The clock only now (a read costs tens of nanoseconds, as much as an
        // uncontended lock).
        let end = Instant::now() + SPIN;
        loop {
            for _ in 0..SPIN_PAUSES {
                std::hint::spin_loop();
            }
            if let Some(got) = self.try_lock()? {
                return Ok(Some(got));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
        }
    }

    /// The guard for return code `rc` of a lock call; `busy` is the code that means
    /// "not acquired" for that call.
    #[inline]
    fn outcome(
        &self,
        rc: libc::c_int,
        busy: libc::c_int,
    ) -> io::Result<Option<(RobustGuard<'_>, Acquired)>> {
        let guard = || RobustGuard {
            mutex: self,
            _not_send: PhantomData,
        };
        match rc {
            0 => Ok(Some((guard(), Acquired::Clean))),
            libc::EOWNERDEAD => Ok(Some((guard(), Acquired::OwnerDied))),
            rc if rc == busy => Ok(None),
            err => Err(io::Error::from_raw_os_error(err)),
        }
    }
}

/// Proof that this thread holds a [`RobustMutex`]; unlocks on drop.
///
/// Not `Send`: a pthread mutex must be unlocked by the thread that locked it.
#[must_use = "the lock is released when the guard is dropped"]
pub(crate) struct RobustGuard<'a> {
    mutex: &'a RobustMutex,
    _not_send: PhantomData<*const ()>,
}

impl RobustGuard<'_> {
    /// Declares the protected data repaired after [`Acquired::OwnerDied`].
    pub(crate) fn mark_consistent(&self) -> io::Result<()> {
        // SAFETY: we hold the lock (the guard exists), which is what
        // pthread_mutex_consistent requires.
        check(unsafe { libc::pthread_mutex_consistent(self.mutex.raw.get()) })
    }
}

impl Drop for RobustGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this thread locked the mutex when it made the guard and has not unlocked
        // it since (the guard is the only way to unlock).
        let rc = unsafe { libc::pthread_mutex_unlock(self.mutex.raw.get()) };
        debug_assert_eq!(rc, 0, "pthread_mutex_unlock failed");
    }
}
