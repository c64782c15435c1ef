//! [`Semaphore`]: a counting semaphore in the mempool, shared by every process of the
//! tree.
//!
//! A count of permits ([`Permits`](super::state::Permits), lock-free, loom-checked) and a
//! futex [`Event`] to sleep on. `acquire` takes a permit with a compare-and-swap (never
//! below zero); when none is free it waits on the event, whose protocol (in `futex.rs`)
//! guarantees that a `release` after the check wakes it. `release` adds permits, then
//! notifies.
//!
//! Permits are not owned: a process that dies holding some does not give them back (the
//! semaphore cannot tell a permit held from a permit handed on). Use a
//! [`Mutex`](super::Mutex) where a dead holder must be detected, and the timed forms of
//! `acquire` so that no wait hangs on a dead peer.

use std::fmt;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use super::object::{typed_desc, Body, Kind, Object, Shape};
use super::state::Permits;
use crate::error::{Error, Result};
use crate::futex::{Event, DEFAULT_SPIN};
use crate::mempool::Mempool;

/// The block of a [`Semaphore`].
#[repr(C)]
pub(crate) struct SemaphoreBody {
    permits: Permits,
    event: Event,
}

impl Body for SemaphoreBody {}

/// A counting semaphore shared by every process of the tree. See the module docs.
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// use procyon::sync::{Semaphore, SemaphoreDesc};
/// use procyon::Pool;
///
/// let pool = Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let sem = Semaphore::new(pool.mempool(), 0)?;
/// // Each of 10 tasks gives one permit; the client then takes all 10.
/// pool.par_range(0..10).for_each_with(sem.desc(), |s: &SemaphoreDesc, _i: usize| {
///     s.open().unwrap().release(1).unwrap();
/// })?;
/// for _ in 0..10 {
///     sem.acquire_timeout(std::time::Duration::from_secs(5))?;
/// }
/// assert!(!sem.try_acquire());
/// # Ok(()) }
/// ```
pub struct Semaphore {
    obj: Object<SemaphoreBody>,
}

typed_desc! {
    /// The plain-data descriptor of a [`Semaphore`]: `Copy`, serde, valid in every
    /// process of the tree.
    SemaphoreDesc<>
}

impl SemaphoreDesc {
    /// A handle of the semaphore in this process.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if it was freed, the pool is unknown here, or the
    /// block is not a semaphore.
    pub fn open(&self) -> Result<Semaphore> {
        Ok(Semaphore {
            obj: Object::open(&self.raw, Shape::bare(Kind::Semaphore))?,
        })
    }
}

impl Semaphore {
    /// A semaphore with `permits` free permits, in `pool`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if it does not fit.
    pub fn new(pool: &Mempool, permits: u32) -> Result<Self> {
        let obj = Object::create(
            pool,
            Shape::bare(Kind::Semaphore),
            |body: NonNull<SemaphoreBody>| {
                // SAFETY: `create` hands us the zeroed, unshared body.
                unsafe {
                    body.as_ptr().write(SemaphoreBody {
                        permits: Permits::new(permits),
                        event: Event::new(),
                    })
                };
                Ok(())
            },
        )?;
        Ok(Semaphore { obj })
    }

    /// The descriptor, for other processes of the tree.
    pub fn desc(&self) -> SemaphoreDesc {
        SemaphoreDesc::from_raw(self.obj.desc())
    }

    /// Takes a permit, waiting for one as long as it takes.
    pub fn acquire(&self) {
        let body = self.obj.body();
        // Without a deadline the wait ends only with a permit.
        let _ = body
            .event
            .wait_until(DEFAULT_SPIN, None, || body.permits.try_take().then_some(()));
    }

    /// Takes a permit, waiting at most `timeout` for one.
    ///
    /// # Errors
    /// [`Error::Timeout`] if none came free in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let sem = procyon::sync::Semaphore::new(&pool, 1)?;
    /// sem.acquire_timeout(Duration::from_millis(10))?;
    /// assert!(sem.acquire_timeout(Duration::from_millis(10)).is_err());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        let body = self.obj.body();
        body.event
            .wait_until(DEFAULT_SPIN, Some(Instant::now() + timeout), || {
                body.permits.try_take().then_some(())
            })
            .ok_or(Error::Timeout {
                job: None,
                limit: timeout,
            })
    }

    /// Takes a permit if one is free.
    pub fn try_acquire(&self) -> bool {
        self.obj.body().permits.try_take()
    }

    /// Gives `n` permits back and wakes the waiters.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (and no change) if the count would pass `u32::MAX`.
    pub fn release(&self, n: u32) -> Result<()> {
        let body = self.obj.body();
        body.permits.give(n).map_err(|cur| {
            Error::config(format!(
                "Semaphore::release({n}) with {cur} permits free would pass u32::MAX"
            ))
        })?;
        body.event.notify();
        Ok(())
    }

    /// Free permits now (a snapshot: others may take or give meanwhile).
    pub fn available(&self) -> u32 {
        self.obj.body().permits.available()
    }
}

impl Clone for Semaphore {
    /// Another handle of the same semaphore.
    fn clone(&self) -> Self {
        Semaphore {
            obj: self.obj.clone_handle(),
        }
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("desc", &self.obj.desc())
            .field("available", &self.available())
            .finish()
    }
}

crate::sync::handover::shared_desc!(impl[] SemaphoreDesc => Semaphore);
