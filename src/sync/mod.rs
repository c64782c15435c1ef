//! Process-shared synchronization in the mempool: [`Mutex<T>`] (robust: a holder that
//! dies, even by SIGKILL, is reported to the next locker), [`Condvar`], [`Semaphore`],
//! [`Barrier`].
//!
//! Each object is one block of a [`Mempool`](crate::Mempool) and is usable from every
//! process of the tree at once: the client (any thread), the workers' tasks, the
//! processes they start. The creating process gets a handle (`Mutex::new(pool.mempool(),
//! ..)`); its descriptor (`desc()`: `Copy`, serde plain data, like
//! [`ArrayDesc`](crate::ArrayDesc)) travels into tasks, where `open()` gives a handle of
//! the same object. The block is freed when the last handle in any process is dropped
//! (see `object.rs` for the count and what it cannot prove). No named objects, no files:
//! nothing outlives the pool's memory.
//!
//! ```
//! # fn main() -> procyon::Result<()> {
//! use procyon::sync::{Mutex, MutexDesc};
//! use procyon::Pool;
//!
//! let pool = Pool::builder().workers(2).mempool_size(16 << 20).build()?;
//! let histogram = Mutex::new(pool.mempool(), [0u32; 4])?;
//! pool.par_range(0u32..1000).for_each_with(histogram.desc(), |h: &MutexDesc<[u32; 4]>, x: u32| {
//!     h.open().unwrap().lock().unwrap()[(x % 4) as usize] += 1;
//! })?;
//! assert_eq!(*histogram.lock()?, [250; 4]);
//! # Ok(()) }
//! ```
//!
//! An object a task or a process creates goes with its last handle there; to hand it to
//! another process, send a [`Handover`] ([`SharedDesc::hand_over`]) instead of the plain
//! descriptor.
//!
//! Files: `object` (header, handle count, descriptors), `handover`, `raw_lock` (robust lock and its
//! poisoned flag), `mutex`, `condvar`, `semaphore`, `barrier`, `state` (the lock-free
//! cores of the semaphore and the barrier, loom-checked in `loom_tests`).

mod barrier;
mod condvar;
pub mod handover;
#[cfg(all(test, loom))]
mod loom_tests;
mod mutex;
pub(crate) mod object;
mod parties;
pub(crate) mod raw_lock;
mod semaphore;
mod state;

pub use barrier::{Barrier, BarrierDesc, BarrierWaitResult};
pub(crate) use condvar::Signal;
pub use condvar::{Condvar, CondvarDesc, WaitTimeoutResult};
pub use handover::{Handover, SharedDesc};
pub use mutex::{LockError, LockResult, Mutex, MutexDesc, MutexGuard};
pub use semaphore::{Semaphore, SemaphoreDesc};
