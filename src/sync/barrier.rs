//! [`Barrier`]: a reusable barrier for `n` parties in any processes of the tree.
//!
//! The state is one word ([`Turnstile`](super::state::Turnstile), lock-free,
//! loom-checked): the round's generation and how many parties arrived. The last party of
//! a round moves to the next generation and notifies a futex [`Event`]; the others wait on
//! the event until the generation moves. A party whose timed wait runs out takes itself
//! back out of the count (unless the round was released meanwhile, in which case it
//! passed), so a timeout leaves the barrier usable for the next round.
//!
//! A party that dies before arriving cannot be told from a slow one: the others wait
//! for it (use [`Barrier::wait_timeout`] when a peer may die). A party that dies while
//! waiting stays counted, which releases the round one arrival early; the barrier does
//! not track who is waiting.

use std::fmt;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use super::object::{typed_desc, Body, Kind, Object, Shape};
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
/// let mine = (0..3).filter(|_| barrier.wait().is_leader()).count();
/// assert_eq!(mine + task.wait()?, 3); // one leader per round
/// # Ok(()) }
/// ```
pub struct Barrier {
    obj: Object<BarrierBody>,
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
                    })
                };
                Ok(())
            },
        )?;
        Ok(Barrier { obj })
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
    pub fn wait(&self) -> BarrierWaitResult {
        match self.wait_until(None) {
            Some(r) => r,
            None => unreachable!("a wait without a deadline ends only with the round"),
        }
    }

    /// As [`wait`](Self::wait), for at most `timeout`; on a timeout this party is taken
    /// back out of the round, so the barrier stays usable.
    ///
    /// # Errors
    /// [`Error::Timeout`] if the round was not complete in time.
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
            .ok_or(Error::Timeout {
                job: None,
                limit: timeout,
            })
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Option<BarrierWaitResult> {
        let body = self.obj.body();
        let generation = match body.turnstile.arrive(body.parties) {
            Arrival::Released => {
                body.event.notify();
                return Some(BarrierWaitResult(true));
            }
            Arrival::Counted { generation } => generation,
        };
        let passed = || body.turnstile.passed(generation).then_some(());
        if body
            .event
            .wait_until(DEFAULT_SPIN, deadline, passed)
            .is_some()
        {
            return Some(BarrierWaitResult(false));
        }
        if body.turnstile.withdraw(generation) {
            None
        } else {
            Some(BarrierWaitResult(false)) // released just as the time ran out
        }
    }
}

impl Clone for Barrier {
    /// Another handle of the same barrier.
    fn clone(&self) -> Self {
        Barrier {
            obj: self.obj.clone_handle(),
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
