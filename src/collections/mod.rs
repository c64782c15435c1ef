//! Shared containers in the mempool, with descriptors that travel into tasks:
//! [`SharedQueue<T>`] (bounded, many producers and consumers, blocking / try / timed),
//! [`SharedBox<T>`] (one value), [`SharedVec<T>`] (grows), [`SharedHashMap<K, V>`]
//! (open addressing, grows), [`SharedBuffer`] (bytes, grows).
//!
//! Each container is an object of [`sync`](crate::sync) (one header block, freed when
//! the last handle in any process goes) with a robust lock inside and, for those that
//! grow, a data block it replaces when it grows (`storage.rs`: allocate, fill, switch,
//! free). Every operation takes the lock once. A holder that dies mid-operation leaves
//! the container consistent (each documents why); the next locker repairs what needs it
//! (a count) and goes on, and `owner_deaths()` tells how often it happened. Allocation
//! failure is [`Error::OutOfMemory`](crate::Error::OutOfMemory) with the container
//! unchanged; every lock wait can be bounded with `set_lock_timeout`.
//!
//! ```
//! # fn main() -> procyon::Result<()> {
//! use procyon::collections::{SharedHashMap, SharedHashMapDesc};
//! use procyon::Pool;
//!
//! let pool = Pool::builder().workers(2).mempool_size(16 << 20).build()?;
//! let squares = SharedHashMap::<u32, u64>::new(pool.mempool())?;
//! pool.par_range(0u32..500).for_each_with(squares.desc(), |m: &SharedHashMapDesc<u32, u64>, i: u32| {
//!     m.open().unwrap().insert(i, u64::from(i) * u64::from(i)).unwrap();
//! })?;
//! assert_eq!(squares.len(), 500);
//! assert_eq!(squares.get(&21)?, Some(441));
//! # Ok(()) }
//! ```

mod boxed;
mod hashmap;
mod queue;
mod storage;
mod vec;

use std::time::Duration;

pub use boxed::{SharedBox, SharedBoxDesc};
pub use hashmap::{SharedHashMap, SharedHashMapDesc};
pub use queue::{SharedQueue, SharedQueueDesc};
pub use vec::{SharedBuffer, SharedBufferDesc, SharedVec, SharedVecDesc};

use crate::error::Result;
use crate::sync::raw_lock::{Held, RawLock, Wait};

/// A handle's bound on lock waits (`None`: unbounded).
#[derive(Clone, Copy, Debug, Default)]
struct HandleWait(Option<Duration>);

impl HandleWait {
    fn set(&mut self, timeout: Option<Duration>) {
        self.0 = timeout;
    }

    fn get(&self) -> Wait {
        self.0.map_or(Wait::Block, Wait::Timeout)
    }
}

/// Takes a container's lock; if a holder died (or the lock is still marked poisoned),
/// runs `repair` and marks it consistent.
///
/// # Errors
/// As [`RawLock::acquire`].
fn enter(lock: &RawLock, wait: Wait, repair: impl FnOnce()) -> Result<Held<'_>> {
    let held = match lock.acquire(wait)? {
        Some(h) => h,
        None => unreachable!("only Wait::Try returns no guard"),
    };
    if held.poisoned() {
        repair();
        held.mark_consistent();
    }
    Ok(held)
}
