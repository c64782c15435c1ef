//! [`SharedQueue<T>`]: a bounded queue of plain data with many producers and many
//! consumers in any processes of the tree.
//!
//! A ring of `capacity` slots in a data block, `head` (next to pop) and `tail` (next to
//! push) as ever-growing counters, a robust lock, and two condition signals (`not_empty`,
//! `not_full`; see [`Condvar`](crate::sync::Condvar) for why no wakeup is lost). `push`
//! writes the slot, then advances `tail`; `pop` reads the slot, then advances `head`: a
//! holder that dies anywhere leaves a consistent queue (an element half-written is not
//! yet published; one read but not yet popped is still there).

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::storage::Storage;
use super::{enter, HandleWait};
use crate::error::{Error, Result};
use crate::mempool::Mempool;
use crate::sync::object::{typed_desc, Body, Kind, Object, Shape};
use crate::sync::raw_lock::{Held, RawLock};
use crate::sync::Signal;

/// The block of a [`SharedQueue<T>`].
#[repr(C)]
pub(crate) struct QueueBody {
    lock: RawLock,
    head: AtomicU64,
    tail: AtomicU64,
    /// Slots in the ring; set at creation.
    capacity: AtomicU64,
    not_empty: Signal,
    not_full: Signal,
    storage: Storage,
}

impl Body for QueueBody {
    fn release(&self, pool: &Mempool) {
        self.storage.release(pool);
    }
}

/// A bounded multi-producer multi-consumer queue shared by every process of the tree.
/// See the module docs.
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// use procyon::collections::{SharedQueue, SharedQueueDesc};
/// use procyon::{Ctx, Pool};
/// use std::time::Duration;
///
/// let pool = Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let q = SharedQueue::<u64>::new(pool.mempool(), 16)?;
/// // A producer task in a worker; the client consumes.
/// let producer = pool.spawn_with(q.desc(), |q: &SharedQueueDesc<u64>, _: &Ctx| {
///     let q = q.open().unwrap();
///     for i in 0..1000 {
///         q.push_timeout(i, Duration::from_secs(10)).unwrap();
///     }
/// })?;
/// let sum: u64 = (0..1000).map(|_| q.pop_timeout(Duration::from_secs(10)).unwrap()).sum();
/// producer.wait()?;
/// assert_eq!(sum, 499_500);
/// # Ok(()) }
/// ```
pub struct SharedQueue<T: Pod> {
    obj: Object<QueueBody>,
    wait: HandleWait,
    _elem: PhantomData<T>,
}

typed_desc! {
    /// The plain-data descriptor of a [`SharedQueue<T>`]: `Copy`, serde, valid in every
    /// process of the tree.
    SharedQueueDesc<T>
}

impl<T: Pod> SharedQueueDesc<T> {
    /// A handle of the queue in this process.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if it was freed, the pool is unknown here, or the
    /// block is not a `SharedQueue<T>` of this `T`.
    pub fn open(&self) -> Result<SharedQueue<T>> {
        Ok(SharedQueue {
            obj: Object::open(&self.raw, Shape::of::<T>(Kind::Queue))?,
            wait: HandleWait::default(),
            _elem: PhantomData,
        })
    }
}

impl<T: Pod> SharedQueue<T> {
    /// A queue of at most `capacity` elements, in `pool`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for capacity 0; [`Error::OutOfMemory`] if it does not
    /// fit.
    pub fn new(pool: &Mempool, capacity: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::config(
                "SharedQueue::new with capacity 0 (give at least 1)",
            ));
        }
        let bytes = capacity
            .checked_mul(size_of::<T>())
            .ok_or_else(|| crate::mempool::pool_out_of_memory(usize::MAX, 0, pool.capacity()))?;
        let obj = Object::create(
            pool,
            Shape::of::<T>(Kind::Queue),
            |body: NonNull<QueueBody>| {
                let body = body.as_ptr();
                // SAFETY: `create` hands us the zeroed, unshared body; the lock is at its
                // final address.
                unsafe {
                    (*body).lock.init()?;
                    (*body).capacity.store(capacity as u64, Relaxed);
                    (*body)
                        .storage
                        .replace(pool, bytes, align_of::<T>(), |_, _| {})
                }
            },
        )?;
        Ok(SharedQueue {
            obj,
            wait: HandleWait::default(),
            _elem: PhantomData,
        })
    }

    /// The descriptor, for other processes of the tree.
    pub fn desc(&self) -> SharedQueueDesc<T> {
        SharedQueueDesc::from_raw(self.obj.desc())
    }

    /// Bounds every lock wait of this handle (`None`, the default: unbounded). The
    /// waits for room or for an element have their own timed forms.
    pub fn set_lock_timeout(&mut self, timeout: Option<Duration>) {
        self.wait.set(timeout);
    }

    fn lock(&self) -> Result<Held<'_>> {
        // Nothing to repair: every step keeps the queue consistent (module docs).
        enter(&self.obj.body().lock, self.wait.get(), || {})
    }

    fn slot(&self, counter: u64) -> Result<*mut T> {
        let body = self.obj.body();
        let cap = body.capacity.load(Relaxed);
        let base = body
            .storage
            .ptr(self.obj.pool())?
            .map_or(NonNull::dangling().as_ptr(), |p| p.cast::<T>());
        // SAFETY: `counter % cap < cap`, and the block holds `cap` elements.
        Ok(unsafe { base.add((counter % cap) as usize) })
    }

    /// Pushes under the lock held, waiting for room until `deadline` (`Some(now)`: not
    /// at all). Gives the value back if there was no room in time.
    fn push_until(&self, value: T, deadline: Option<Instant>) -> Result<Option<T>> {
        let body = self.obj.body();
        let mut held = self.lock()?;
        loop {
            let (head, tail) = (body.head.load(Relaxed), body.tail.load(Relaxed));
            if tail - head < body.capacity.load(Relaxed) {
                // SAFETY: the slot is inside the ring and free (not between head and
                // tail); we hold the lock.
                unsafe { self.slot(tail)?.write(value) };
                body.tail.store(tail + 1, Relaxed);
                drop(held);
                body.not_empty.notify(1);
                return Ok(None);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Some(value));
            }
            held = body.not_full.wait(held, deadline)?;
        }
    }

    /// Pops under the lock, waiting for an element until `deadline`.
    fn pop_until(&self, deadline: Option<Instant>) -> Result<Option<T>> {
        let body = self.obj.body();
        let mut held = self.lock()?;
        loop {
            let (head, tail) = (body.head.load(Relaxed), body.tail.load(Relaxed));
            if head != tail {
                // SAFETY: the slot between head and tail holds a pushed element; we hold
                // the lock.
                let v = unsafe { self.slot(head)?.read() };
                body.head.store(head + 1, Relaxed);
                drop(held);
                body.not_full.notify(1);
                return Ok(Some(v));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            held = body.not_empty.wait(held, deadline)?;
        }
    }

    /// Pushes `value`, waiting as long as it takes for room.
    ///
    /// # Errors
    /// [`Error::Timeout`] past the handle's lock timeout.
    pub fn push(&self, value: T) -> Result<()> {
        self.push_until(value, None).map(|_| ())
    }

    /// Pushes `value` if there is room: `Ok(false)` if the queue is full.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn try_push(&self, value: T) -> Result<bool> {
        Ok(self.push_until(value, Some(Instant::now()))?.is_none())
    }

    /// Pushes `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Error::Timeout`] if the queue stayed full.
    pub fn push_timeout(&self, value: T, timeout: Duration) -> Result<()> {
        match self.push_until(value, Some(Instant::now() + timeout))? {
            None => Ok(()),
            Some(_) => Err(Error::Timeout {
                job: None,
                limit: timeout,
            }),
        }
    }

    /// Pops the oldest element, waiting as long as it takes for one.
    ///
    /// # Errors
    /// [`Error::Timeout`] past the handle's lock timeout.
    pub fn pop(&self) -> Result<T> {
        match self.pop_until(None)? {
            Some(v) => Ok(v),
            None => unreachable!("an unbounded pop returns an element"),
        }
    }

    /// Pops the oldest element if there is one.
    ///
    /// # Errors
    /// As [`pop`](Self::pop).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let q = procyon::collections::SharedQueue::new(&pool, 2)?;
    /// assert!(q.try_push(1u8)? && q.try_push(2)?);
    /// assert!(!q.try_push(3)?); // full
    /// assert_eq!(q.try_pop()?, Some(1));
    /// assert_eq!(q.len(), 1);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn try_pop(&self) -> Result<Option<T>> {
        self.pop_until(Some(Instant::now()))
    }

    /// Pops the oldest element, waiting at most `timeout` for one.
    ///
    /// # Errors
    /// [`Error::Timeout`] if the queue stayed empty.
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T> {
        self.pop_until(Some(Instant::now() + timeout))?
            .ok_or(Error::Timeout {
                job: None,
                limit: timeout,
            })
    }

    /// Elements in the queue (a snapshot).
    pub fn len(&self) -> usize {
        let body = self.obj.body();
        // Relaxed: a snapshot; read tail first so the difference is never negative
        // (head only grows, and never past tail).
        let tail = body.tail.load(Relaxed);
        let head = body.head.load(Relaxed);
        tail.saturating_sub(head) as usize
    }

    /// Whether the queue is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most elements it holds.
    pub fn capacity(&self) -> usize {
        self.obj.body().capacity.load(Relaxed) as usize
    }

    /// How many processes died holding the queue's lock (it stays consistent).
    pub fn owner_deaths(&self) -> u32 {
        self.obj.body().lock.deaths()
    }
}

impl<T: Pod> Clone for SharedQueue<T> {
    /// Another handle of the same queue (with the default lock timeout).
    fn clone(&self) -> Self {
        SharedQueue {
            obj: self.obj.clone_handle(),
            wait: HandleWait::default(),
            _elem: PhantomData,
        }
    }
}

impl<T: Pod> fmt::Debug for SharedQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedQueue")
            .field("desc", &self.obj.desc())
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

crate::sync::handover::shared_desc!(impl[T: bytemuck::Pod] SharedQueueDesc<T> => SharedQueue<T>);
