//! [`Mutex<T>`]: a robust mutual-exclusion lock over a plain-data value in the mempool,
//! usable from every process of the tree.
//!
//! The lock is a glibc robust process-shared mutex (see `mempool/lock.rs`): when a
//! holder dies, even by SIGKILL, the kernel marks the lock and the next locker gets it
//! with the news. That locker, and every one after it until somebody repairs the value,
//! gets [`LockError::Poisoned`] with the guard: the value may be half-written, and
//! nothing hides that. A panic with a guard alive poisons the same way (as
//! `std::sync::Mutex` does). Repair the value through the guard, then call
//! [`MutexGuard::mark_consistent`].

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::Duration;

use bytemuck::Pod;

use super::object::{typed_desc, Body, Kind, Object, Shape};
use super::raw_lock::{Held, RawLock, Wait};
use crate::error::{Error, Result};
use crate::mempool::Mempool;

/// Why a lock call did not give a clean guard.
///
/// `G` is what a clean call returns (a [`MutexGuard`], or a guard and a timeout flag for
/// [`Condvar::wait_timeout`](super::Condvar::wait_timeout)). Through `?` it becomes an
/// [`Error`] ([`Error::Poisoned`] for a poisoned lock; the guard is then dropped and the
/// lock stays poisoned).
pub enum LockError<G> {
    /// The lock was taken, but a holder died or panicked since the value was last marked
    /// consistent: it may be half-updated. Repair it through the guard and call
    /// [`MutexGuard::mark_consistent`]; dropping the guard without doing so leaves the
    /// lock poisoned for the next locker.
    Poisoned(G),
    /// The lock was not taken: a timeout, or a system error.
    Failed(Error),
}

impl<G> LockError<G> {
    /// The guard of a poisoned lock, or the error that kept the lock from being taken.
    ///
    /// # Errors
    /// The [`LockError::Failed`] error.
    pub fn into_poisoned(self) -> Result<G> {
        match self {
            LockError::Poisoned(g) => Ok(g),
            LockError::Failed(e) => Err(e),
        }
    }

    /// Maps the guard a poisoned lock carries.
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::Poisoned(g) => LockError::Poisoned(f(g)),
            LockError::Failed(e) => LockError::Failed(e),
        }
    }
}

impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Error {
        match e {
            LockError::Poisoned(_) => Error::Poisoned {
                what: "procyon::sync::Mutex",
            },
            LockError::Failed(e) => e,
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Poisoned(_) => f.write_str("Poisoned(..)"),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Poisoned(_) => fmt::Display::fmt(
                &Error::Poisoned {
                    what: "procyon::sync::Mutex",
                },
                f,
            ),
            LockError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// What a lock call returns: a clean guard, or why not.
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

/// The block of a [`Mutex<T>`].
#[repr(C)]
pub(crate) struct MutexBody<T> {
    lock: RawLock,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through a guard, which exists only while its thread
// holds `lock`; the lock is process-shared and thread-safe.
unsafe impl<T: Pod> Sync for MutexBody<T> {}

impl<T: Pod> Body for MutexBody<T> {}

/// A robust mutex over a plain-data value in the mempool, shared by every process of the
/// tree. Open it elsewhere through its [`MutexDesc`]. See the module docs.
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// use procyon::{sync::{Mutex, MutexDesc}, Pool};
///
/// let pool = Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let counter = Mutex::new(pool.mempool(), 0u64)?;
/// // 1000 tasks in the workers, each adding its index under the lock.
/// pool.par_range(0u64..1000).for_each_with(counter.desc(), |m: &MutexDesc<u64>, i: u64| {
///     let m = m.open().unwrap();
///     *m.lock().unwrap() += i;
/// })?;
/// assert_eq!(*counter.lock()?, 499_500);
/// # Ok(()) }
/// ```
pub struct Mutex<T: Pod> {
    obj: Object<MutexBody<T>>,
}

typed_desc! {
    /// The plain-data descriptor of a [`Mutex<T>`]: `Copy`, serde, valid in every
    /// process of the tree; [`open`](MutexDesc::open) it to lock.
    MutexDesc<T>
}

impl<T: Pod> MutexDesc<T> {
    /// A handle of the mutex in this process.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if the mutex was freed (every handle dropped), the
    /// pool is unknown here, or the block is not a `Mutex<T>` of this `T`.
    pub fn open(&self) -> Result<Mutex<T>> {
        Ok(Mutex {
            obj: Object::open(&self.raw, Shape::of::<T>(Kind::Mutex))?,
        })
    }
}

impl<T: Pod> Mutex<T> {
    /// A mutex holding `value`, in `pool`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if it does not fit in the pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let m = procyon::sync::Mutex::new(&pool, [1u32, 2, 3])?;
    /// m.lock()?[1] = 20;
    /// assert_eq!(*m.lock()?, [1, 20, 3]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn new(pool: &Mempool, value: T) -> Result<Self> {
        let obj = Object::create(
            pool,
            Shape::of::<T>(Kind::Mutex),
            |body: NonNull<MutexBody<T>>| {
                let body = body.as_ptr();
                // SAFETY: `create` hands us the zeroed, unshared body; the lock is at its
                // final address.
                unsafe {
                    (*body).lock.init()?;
                    std::ptr::addr_of_mut!((*body).value).write(UnsafeCell::new(value));
                }
                Ok(())
            },
        )?;
        Ok(Mutex { obj })
    }

    /// The descriptor, for other processes of the tree.
    pub fn desc(&self) -> MutexDesc<T> {
        MutexDesc::from_raw(self.obj.desc())
    }

    /// The pool the mutex lives in.
    pub fn mempool(&self) -> &Mempool {
        self.obj.pool()
    }

    /// Blocks until this thread holds the lock.
    ///
    /// # Errors
    /// [`LockError::Poisoned`] with the guard if a holder died or panicked (see the
    /// module docs); [`LockError::Failed`] with an [`Error::Io`] if this thread holds the
    /// lock already (a hang otherwise).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let m = procyon::sync::Mutex::new(&pool, 1i32)?;
    /// let mut g = m.lock()?;
    /// *g += 1;
    /// // Held: another thread's try_lock gets nothing (this thread's would be an error).
    /// std::thread::scope(|s| s.spawn(|| assert!(m.try_lock().unwrap().is_none())).join().unwrap());
    /// drop(g);
    /// assert_eq!(*m.lock()?, 2);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        match self.acquire(Wait::Block) {
            Ok(Some(g)) => g,
            Ok(None) => unreachable!("a blocking lock returns a guard or an error"),
            Err(e) => Err(LockError::Failed(e)),
        }
    }

    /// As [`lock`](Self::lock), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`lock`](Self::lock), and [`Error::Timeout`] if the lock stayed held.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let m = procyon::sync::Mutex::new(&pool, 0u8)?;
    /// let _g = m.lock()?;
    /// let other = std::thread::scope(|s| {
    ///     s.spawn(|| m.lock_timeout(Duration::from_millis(20)).map(|_| ()).map_err(procyon::Error::from))
    ///         .join()
    ///         .unwrap()
    /// });
    /// assert!(matches!(other, Err(procyon::Error::Timeout { .. })));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<MutexGuard<'_, T>> {
        match self.acquire(Wait::Timeout(timeout)) {
            Ok(Some(g)) => g,
            Ok(None) => unreachable!("a timed lock returns a guard or an error"),
            Err(e) => Err(LockError::Failed(e)),
        }
    }

    /// Takes the lock if it is free: `Ok(None)` if somebody holds it.
    ///
    /// # Errors
    /// [`LockError::Poisoned`] as for [`lock`](Self::lock) (the value is then held);
    /// [`LockError::Failed`] for a system error, or if this thread holds the lock
    /// already (`EDEADLK`).
    pub fn try_lock(&self) -> LockResult<Option<MutexGuard<'_, T>>> {
        match self.acquire(Wait::Try) {
            Ok(Some(Ok(g))) => Ok(Some(g)),
            Ok(Some(Err(e))) => Err(e.map(Some)),
            Ok(None) => Ok(None),
            Err(e) => Err(LockError::Failed(e)),
        }
    }

    fn acquire(&self, how: Wait) -> Result<Option<LockResult<MutexGuard<'_, T>>>> {
        let body = self.obj.body();
        Ok(body
            .lock
            .acquire(how)?
            .map(|held| MutexGuard::from_held(body, held)))
    }

    /// Whether the value is marked inconsistent right now (racy: for reports).
    pub fn is_poisoned(&self) -> bool {
        self.obj.body().lock.is_poisoned()
    }

    /// How many processes died holding the lock since the mutex was made.
    pub fn owner_deaths(&self) -> u32 {
        self.obj.body().lock.deaths()
    }
}

impl<T: Pod> Clone for Mutex<T> {
    /// Another handle of the same mutex.
    fn clone(&self) -> Self {
        Mutex {
            obj: self.obj.clone_handle(),
        }
    }
}

impl<T: Pod> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("desc", &self.obj.desc())
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

/// Proof that this thread holds a [`Mutex`]; gives the value; unlocks on drop.
///
/// Not `Send`: a pthread mutex is unlocked by the thread that locked it.
#[must_use = "the lock is released when the guard is dropped"]
pub struct MutexGuard<'a, T: Pod> {
    pub(crate) body: &'a MutexBody<T>,
    held: Option<Held<'a>>,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: Pod> MutexGuard<'a, T> {
    /// The guard for `held`, poisoned or not.
    pub(crate) fn from_held(body: &'a MutexBody<T>, held: Held<'a>) -> LockResult<Self> {
        let poisoned = held.poisoned();
        let guard = MutexGuard {
            body,
            held: Some(held),
            _not_send: PhantomData,
        };
        if poisoned {
            Err(LockError::Poisoned(guard))
        } else {
            Ok(guard)
        }
    }

    /// Whether this very lock call found the previous holder dead (a poisoned guard can
    /// also come from an earlier death nobody repaired, or from a panic).
    pub fn owner_died(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.owner_died)
    }

    /// Declares the value repaired: later lockers get clean guards again.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let m = procyon::sync::Mutex::new(&pool, 7u32)?;
    /// let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
    ///     let _g = m.lock().unwrap();
    ///     panic!("half-way"); // poisons
    /// }));
    /// let mut g = m.lock().err().unwrap().into_poisoned()?;
    /// *g = 0; // repair
    /// g.mark_consistent();
    /// drop(g);
    /// assert_eq!(*m.lock()?, 0);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn mark_consistent(&mut self) {
        if let Some(h) = &self.held {
            h.mark_consistent();
        }
    }

    /// The body and the held lock, for a condition-variable wait.
    pub(crate) fn into_parts(mut self) -> (&'a MutexBody<T>, Held<'a>) {
        // With `held` taken, the guard's drop does nothing.
        match self.held.take() {
            Some(h) => (self.body, h),
            None => unreachable!("a live guard holds its lock"),
        }
    }
}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this thread holds the lock (the guard exists and `held` is only taken
        // on the way out), so no process writes the value meanwhile (every access goes
        // through a guard).
        unsafe { &*self.body.value.get() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { &mut *self.body.value.get() }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if let Some(h) = self.held.take() {
            if std::thread::panicking() {
                h.poison();
            }
            h.release();
        }
    }
}

crate::sync::handover::shared_desc!(impl[T: bytemuck::Pod] MutexDesc<T> => Mutex<T>);
