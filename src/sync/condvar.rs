//! [`Condvar`]: a condition variable in the mempool, used with any [`Mutex`] of the tree.
//!
//! Two words and no per-process wait entry: a [`futex::Event`](crate::futex::Event),
//! whose `seq` every notify bumps and on which waiters sleep with `FUTEX_WAIT`, and whose
//! `sleepers` counts the waiters asleep, so that a notify costs no system call when
//! nobody sleeps.
//!
//! ## Protocol
//!
//! Waiter, holding the mutex: `s = seq`, unlock, then the event's wait for `seq != s`:
//! a few microseconds of spinning ([`SPIN`]), then `sleepers += 1`, a re-check, and
//! `futex_wait(seq, s)`, `sleepers -= 1`; lock again. Notifier, after changing the
//! condition under the mutex (it may notify after unlocking): `seq += 1`, then
//! `futex_wake(seq, 1 or all)` if `sleepers > 0`. Every access is SeqCst but the
//! waiter's looks at `seq` while it spins, which are Relaxed: a look that sees the bump
//! only sends the caller back to re-check its condition under the mutex, one that does
//! not see it yet spins on, and whether the waiter sleeps is decided by the event's
//! SeqCst protocol (`futex.rs`), not by these looks.
//!
//! **Why no wakeup is lost.** The waiter reads `seq` while it holds the mutex; the
//! notifier changes the condition, hence bumps `seq`, after taking the mutex, so after
//! the waiter unlocked. A spinning waiter sees the bump. A sleeping one counted itself in
//! `sleepers` before its last look at `seq` (the event's protocol, `futex.rs`): in the
//! single SeqCst order either the notifier's read of `sleepers` comes later, and it
//! wakes, or the waiter's look comes after the bump and it does not sleep (or the
//! kernel's atomic compare fails with `EAGAIN`). A `notify_one` wakes one sleeper that
//! read `seq` before the bump (all sleepers did), and every spinner sees it: at least one
//! waiter wakes. Waits may also return spuriously (signals, another notify), as with
//! every condition variable: wait in a loop, or use [`Condvar::wait_while`].
//!
//! The spin is what makes a hand-off between two busy processes cheap: a consumer
//! popping from a [`SharedQueue`](crate::collections::SharedQueue) that a producer keeps
//! full woke the producer with a system call at every pop, which put it to sleep again
//! at its next push.

use std::fmt;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::mutex::{LockError, LockResult, MutexGuard};
use super::object::{typed_desc, Body, Kind, Object, Shape};
use super::raw_lock::{Held, Wait};
use crate::error::Result;
use crate::futex::Event;
use crate::mempool::Mempool;

/// How long a waiter spins for a notification before it sleeps on the futex: a few
/// round trips of a cache line between two CPUs, long enough for a busy peer's next
/// operation, short enough to cost a waiter that has to sleep anyway little.
const SPIN: Duration = Duration::from_micros(4);

/// The two words of a condition variable (see the module docs), usable with any
/// [`RawLock`](super::raw_lock::RawLock): the core of [`Condvar`] and of the shared containers' blocking waits.
/// Zeroed memory is a fresh one.
#[repr(C)]
pub(crate) struct Signal {
    event: Event,
}

impl Signal {
    /// Unlocks `held`, waits until notified, spuriously woken, or `deadline`; locks
    /// again. The caller re-checks its condition.
    ///
    /// # Errors
    /// As [`RawLock::acquire`](super::raw_lock::RawLock::acquire) when relocking (the lock is then not held).
    pub(crate) fn wait<'a>(&self, held: Held<'a>, deadline: Option<Instant>) -> Result<Held<'a>> {
        let seq = self.event.sequence();
        let lock = held.lock();
        held.release();
        // Every outcome (notified, timed out, interrupted) returns to the caller, who
        // re-checks its condition: a spurious wake at worst.
        if !deadline.is_some_and(|d| Instant::now() >= d) {
            self.event.wait_until(SPIN, deadline, || {
                (self.event.notifications() != seq).then_some(())
            });
        }
        match lock.acquire(Wait::Block)? {
            Some(held) => Ok(held),
            None => unreachable!("a blocking lock returns a guard or an error"),
        }
    }

    /// Wakes up to `count` waiters (at least one if any waits and `count > 0`).
    pub(crate) fn notify(&self, count: u32) {
        self.event.notify_up_to(count);
    }
}

/// The block of a [`Condvar`].
#[repr(C)]
pub(crate) struct CondvarBody {
    signal: Signal,
}

impl Body for CondvarBody {}

/// A condition variable shared by every process of the tree. See the module docs.
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// use procyon::sync::{Condvar, CondvarDesc, Mutex, MutexDesc};
/// use procyon::{Ctx, Pool};
///
/// let pool = Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let ready = Mutex::new(pool.mempool(), 0u32)?;
/// let cv = Condvar::new(pool.mempool())?;
/// // A task in a worker waits until the client sets the flag.
/// let waiter = pool.spawn_with((ready.desc(), cv.desc()), |d: &(MutexDesc<u32>, CondvarDesc), _: &Ctx| {
///     let (m, cv) = (d.0.open().unwrap(), d.1.open().unwrap());
///     let g = cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap();
///     *g
/// })?;
/// *ready.lock()? = 42;
/// cv.notify_all();
/// assert_eq!(waiter.wait()?, 42);
/// # Ok(()) }
/// ```
pub struct Condvar {
    obj: Object<CondvarBody>,
}

typed_desc! {
    /// The plain-data descriptor of a [`Condvar`]: `Copy`, serde, valid in every process
    /// of the tree.
    CondvarDesc<>
}

impl CondvarDesc {
    /// A handle of the condition variable in this process.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`](crate::Error::InvalidDescriptor) if it was freed, the
    /// pool is unknown here, or the block is not a condition variable.
    pub fn open(&self) -> Result<Condvar> {
        Ok(Condvar {
            obj: Object::open(&self.raw, Shape::bare(Kind::Condvar))?,
        })
    }
}

/// Whether a timed wait returned because its time ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the time ran out (the condition may still have become true meanwhile).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Condvar {
    /// A condition variable in `pool`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory) if it does not fit.
    pub fn new(pool: &Mempool) -> Result<Self> {
        // The zeroed body is the initial state (no waiter, sequence 0).
        let obj = Object::create(
            pool,
            Shape::bare(Kind::Condvar),
            |_: NonNull<CondvarBody>| Ok(()),
        )?;
        Ok(Condvar { obj })
    }

    /// The descriptor, for other processes of the tree.
    pub fn desc(&self) -> CondvarDesc {
        CondvarDesc::from_raw(self.obj.desc())
    }

    /// Unlocks `guard`'s mutex, sleeps until notified (or spuriously), and locks it
    /// again.
    ///
    /// # Errors
    /// [`LockError::Poisoned`](super::LockError::Poisoned) if a holder of the mutex died or panicked meanwhile (the
    /// guard is in it); [`LockError::Failed`](super::LockError::Failed) if relocking failed.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let (m, cv) = (procyon::sync::Mutex::new(&pool, 0u8)?, procyon::sync::Condvar::new(&pool)?);
    /// std::thread::scope(|s| {
    ///     s.spawn(|| { *m.lock().unwrap() = 1; cv.notify_one(); });
    ///     let mut g = m.lock().unwrap();
    ///     while *g == 0 {
    ///         g = cv.wait(g).unwrap();
    ///     }
    /// });
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn wait<'a, T: Pod>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_until(guard, None)
            .map(|(g, _)| g)
            .map_err(|e| e.map(|(g, _)| g))
    }

    /// As [`wait`](Self::wait), for at most `timeout`.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let (m, cv) = (procyon::sync::Mutex::new(&pool, 0u8)?, procyon::sync::Condvar::new(&pool)?);
    /// let (_g, r) = cv.wait_timeout(m.lock()?, Duration::from_millis(10))?;
    /// assert!(r.timed_out());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn wait_timeout<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.wait_until(guard, Some(Instant::now() + timeout))
    }

    /// Waits while `condition` holds of the value, re-checking after every wake; returns
    /// with the lock held and the condition false.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        while condition(&mut guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// As [`wait_while`](Self::wait_while), for at most `timeout` in all.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let deadline = Instant::now() + timeout;
        while condition(&mut guard) {
            if Instant::now() >= deadline {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            guard = self.wait_until(guard, Some(deadline))?.0;
        }
        Ok((guard, WaitTimeoutResult(false)))
    }

    fn wait_until<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let (body, held) = guard.into_parts();
        let held = self
            .obj
            .body()
            .signal
            .wait(held, deadline)
            .map_err(LockError::Failed)?;
        let timed_out = WaitTimeoutResult(deadline.is_some_and(|d| Instant::now() >= d));
        match MutexGuard::from_held(body, held) {
            Ok(g) => Ok((g, timed_out)),
            Err(e) => Err(e.map(|g| (g, timed_out))),
        }
    }

    /// Wakes one waiter (at least one, if any waits).
    pub fn notify_one(&self) {
        self.obj.body().signal.notify(1);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.obj.body().signal.notify(u32::MAX);
    }
}

impl Clone for Condvar {
    /// Another handle of the same condition variable.
    fn clone(&self) -> Self {
        Condvar {
            obj: self.obj.clone_handle(),
        }
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar")
            .field("desc", &self.obj.desc())
            .finish_non_exhaustive()
    }
}

crate::sync::handover::shared_desc!(impl[] CondvarDesc => Condvar);
