//! [`Barrier`]: a reusable barrier for `n` parties in any processes of the tree.
//!
//! The state is one word ([`Turnstile`](super::state::Turnstile), lock-free,
//! loom-checked): the round's generation and how many parties arrived. The last party of
//! a round moves to the next generation and notifies a futex [`Event`]; the others wait on
//! the event until the generation moves. A party whose timed wait runs out takes itself
//! back out of the count (unless the round was released meanwhile, in which case it
//! passed), so a timeout leaves the barrier usable for the next round.
//!
//! A party that dies is reported: every handle enrolls in the barrier's table of parties
//! at its first wait ([`parties`](super::parties) writes the protocol down), and a waiter
//! that has slept a while looks for an enrolled party that has not arrived in its round
//! and whose process is gone. It then breaks the barrier: that wait, every other wait of
//! the round and every later one end with [`Error::BarrierBroken`] naming the dead pid.
//! A party that dies while waiting stays counted, which releases its round one arrival
//! early; the next round finds it missing. A party that dies before its first wait was
//! never enrolled and cannot be told from a slow one (use [`Barrier::wait_timeout`] when
//! that may happen).

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::object::{typed_desc, Body, Kind, Object, Shape};
use super::parties::{Parties, CHECK_PERIOD};
use super::state::{Arrival, Turnstile};
use crate::error::{Error, Result};
use crate::futex::{Event, DEFAULT_SPIN};
use crate::mempool::Mempool;

/// The block of a [`Barrier`].
#[repr(C)]
pub(crate) struct BarrierBody {
    turnstile: Turnstile,
    event: Event,
    /// Set at creation, never written again.
    parties: u32,
    /// Who the parties are, and whether one died.
    table: Parties,
}

impl Body for BarrierBody {}

/// How a party left [`Barrier::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for exactly one party per round: the one that arrived last.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

/// A reusable barrier shared by every process of the tree. See the module docs.
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// use procyon::sync::{Barrier, BarrierDesc};
/// use procyon::{Ctx, Pool};
/// use std::time::Duration;
///
/// let pool = Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let barrier = Barrier::new(pool.mempool(), 2)?;
/// // A task in a worker and the client meet at the barrier, three rounds in a row.
/// let task = pool.spawn_with(barrier.desc(), |b: &BarrierDesc, _: &Ctx| {
///     let b = b.open().unwrap();
///     (0..3).filter(|_| b.wait_timeout(Duration::from_secs(10)).unwrap().is_leader()).count()
/// })?;
/// let mine = (0..3).filter(|_| barrier.wait().unwrap().is_leader()).count();
/// assert_eq!(mine + task.wait()?, 3); // one leader per round
/// # Ok(()) }
/// ```
pub struct Barrier {
    obj: Object<BarrierBody>,
    /// This handle's entry in the table of parties: `pid << 32 | (index + 1)`, 0 before
    /// its first wait (or if the table was full).
    enrolled: AtomicU64,
}

typed_desc! {
    /// The plain-data descriptor of a [`Barrier`]: `Copy`, serde, valid in every process
    /// of the tree.
    BarrierDesc<>
}

impl BarrierDesc {
    /// A handle of the barrier in this process.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if it was freed, the pool is unknown here, or the
    /// block is not a barrier.
    pub fn open(&self) -> Result<Barrier> {
        Ok(Barrier {
            obj: Object::open(&self.raw, Shape::bare(Kind::Barrier))?,
            enrolled: AtomicU64::new(0),
        })
    }
}

impl Barrier {
    /// A barrier for `parties` parties, in `pool`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for 0 parties; [`Error::OutOfMemory`] if it does not fit.
    pub fn new(pool: &Mempool, parties: u32) -> Result<Self> {
        if parties == 0 {
            return Err(Error::config(
                "Barrier::new with 0 parties (give at least 1)",
            ));
        }
        let obj = Object::create(
            pool,
            Shape::bare(Kind::Barrier),
            |body: NonNull<BarrierBody>| {
                // SAFETY: `create` hands us the zeroed, unshared body.
                unsafe {
                    body.as_ptr().write(BarrierBody {
                        turnstile: Turnstile::new(),
                        event: Event::new(),
                        parties,
                        table: Parties::new(),
                    })
                };
                Ok(())
            },
        )?;
        Ok(Barrier {
            obj,
            enrolled: AtomicU64::new(0),
        })
    }

    /// The descriptor, for other processes of the tree.
    pub fn desc(&self) -> BarrierDesc {
        BarrierDesc::from_raw(self.obj.desc())
    }

    /// The number of parties per round.
    pub fn parties(&self) -> u32 {
        self.obj.body().parties
    }

    /// Parties waiting in the current round (a snapshot).
    pub fn arrived(&self) -> u32 {
        self.obj.body().turnstile.arrived()
    }

    /// Waits until all parties of this round have arrived.
    ///
    /// # Errors
    /// [`Error::BarrierBroken`] if a party died before arriving (see the module docs):
    /// the round can never complete.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::sync::{Barrier, BarrierDesc};
    /// use procyon::{Ctx, Error, Pool};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let barrier = Barrier::new(pool.mempool(), 2)?;
    /// // The other party meets us once, then dies (holding its handle: a handle dropped
    /// // before is a party that left, not a dead one) before the second round.
    /// let p = pool.fork_with(barrier.desc(), |b: &BarrierDesc, _: &Ctx| -> u32 {
    ///     let b = b.open().unwrap();
    ///     b.wait().unwrap();
    ///     std::process::abort()
    /// })?;
    /// barrier.wait()?;
    /// let second = barrier.wait_timeout(Duration::from_secs(10));
    /// assert!(matches!(second, Err(Error::BarrierBroken { .. })));
    /// assert!(matches!(p.join(), Err(Error::ProcessDied { .. })));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn wait(&self) -> Result<BarrierWaitResult> {
        match self.wait_until(None) {
            Some(r) => r,
            None => unreachable!("a wait without a deadline ends only with the round"),
        }
    }

    /// As [`wait`](Self::wait), for at most `timeout`; on a timeout this party is taken
    /// back out of the round, so the barrier stays usable.
    ///
    /// # Errors
    /// [`Error::Timeout`] if the round was not complete in time; [`Error::BarrierBroken`]
    /// as for [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let b = procyon::sync::Barrier::new(&pool, 2)?;
    /// assert!(b.wait_timeout(Duration::from_millis(10)).is_err()); // nobody else came
    /// assert_eq!(b.arrived(), 0);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult> {
        self.wait_until(Some(Instant::now() + timeout))
            .unwrap_or(Err(Error::Timeout {
                job: None,
                limit: timeout,
            }))
    }

    /// This handle's entry in the table of parties, enrolling it at its first wait in
    /// this process.
    fn entry(&self) -> Option<usize> {
        let pid = crate::sys::process::cached_pid();
        // Relaxed: the word is this handle's, read and written by its users in this
        // process; the table entry it names is synchronized by the table itself.
        let cur = self.enrolled.load(Ordering::Relaxed);
        if cur != 0 && (cur >> 32) as i32 == pid {
            return Some((cur as u32 - 1) as usize);
        }
        let i = self.obj.body().table.enroll(pid)?;
        let word = (u64::from(pid as u32) << 32) | (i as u64 + 1);
        if self
            .enrolled
            .compare_exchange(cur, word, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another thread of ours enrolled this handle first: use its entry.
            self.obj.body().table.leave(i, pid);
            return self.entry();
        }
        Some(i)
    }

    fn broken(pid: i32) -> Error {
        Error::BarrierBroken { pid }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Option<Result<BarrierWaitResult>> {
        let body = self.obj.body();
        if let Some(pid) = body.table.broken() {
            return Some(Err(Self::broken(pid)));
        }
        let me = self.entry();
        if let Some(i) = me {
            body.table.arriving(i, body.turnstile.generation());
        }
        let generation = match body.turnstile.arrive(body.parties) {
            Arrival::Released => {
                body.event.notify();
                return Some(Ok(BarrierWaitResult(true)));
            }
            Arrival::Counted { generation } => generation,
        };
        if let Some(i) = me {
            // The same round but for a dead party counted in it (see `parties`).
            body.table.arriving(i, generation);
        }
        let ended = || {
            if body.turnstile.passed(generation) {
                Some(Ok(()))
            } else {
                body.table.broken().map(Err)
            }
        };
        loop {
            let step = Instant::now() + CHECK_PERIOD;
            let until = deadline.map_or(step, |d| d.min(step));
            match body.event.wait_until(DEFAULT_SPIN, Some(until), ended) {
                Some(Ok(())) => return Some(Ok(BarrierWaitResult(false))),
                Some(Err(pid)) => {
                    body.turnstile.withdraw(generation);
                    return Some(Err(Self::broken(pid)));
                }
                None => {}
            }
            if let Some(pid) = body.table.dead_absentee(generation, me) {
                body.table.mark_broken(pid);
                body.event.notify();
                continue; // take the broken path above (or the round, if it passed)
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return if body.turnstile.withdraw(generation) {
                    None
                } else {
                    Some(Ok(BarrierWaitResult(false))) // released just as the time ran out
                };
            }
        }
    }
}

impl Drop for Barrier {
    fn drop(&mut self) {
        let cur = self.enrolled.load(Ordering::Relaxed);
        let pid = crate::sys::process::cached_pid();
        if cur != 0 && (cur >> 32) as i32 == pid {
            // Before `obj` drops (fields drop after this body), while the block lives.
            self.obj.body().table.leave((cur as u32 - 1) as usize, pid);
        }
    }
}

impl Clone for Barrier {
    /// Another handle of the same barrier.
    fn clone(&self) -> Self {
        Barrier {
            obj: self.obj.clone_handle(),
            enrolled: AtomicU64::new(0),
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("desc", &self.obj.desc())
            .field("parties", &self.parties())
            .field("arrived", &self.arrived())
            .finish()
    }
}

crate::sync::handover::shared_desc!(impl[] BarrierDesc => Barrier);
