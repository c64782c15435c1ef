//! procyon: rayon's data-parallel API over forked worker processes.
//!
//! A [`Pool`] is a scheduler process and N worker processes running your program's code
//! (by default forked from a fresh, single-threaded execution of your executable: see
//! [`StartMode`]; no start-up call is needed).
//! Jobs look like rayon's (`par_map`, `par_iter().map().sum()`, ...) but their tasks run
//! in the workers, so a task that panics, aborts, segfaults, leaks or never returns
//! cannot take the caller down: the job answers with an [`Error`], the worker is
//! replaced, and the pool goes on serving. Inputs and outputs live in the [`Mempool`], a
//! shared region mapped at the same address in every process, as [`SharedArray`]s that
//! the workers read and write in place.
//!
//! ```
//! # fn main() -> procyon::Result<()> {
//! use procyon::{Ctx, Pool};
//!
//! let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
//! let x = pool.array_from_fn(100_000, |i| i as f64)?;
//! let y = pool.par_map(&x, |v: f64| 2.0 * v + 1.0)?; // in place, no copy
//! assert_eq!(y[10], 21.0);
//!
//! let total: f64 = pool.par_iter(&y).sum()?;
//! assert_eq!(total, 100_000.0 * 100_000.0);
//!
//! // A job of its own, with a nested parallel job inside, that can be cancelled.
//! let handle = pool.spawn(|ctx: &Ctx| ctx.par_range(0..1000).map(|i: usize| i as u64).sum::<u64>().unwrap())?;
//! assert_eq!(handle.wait()?, 499_500);
//! # Ok(()) }
//! ```
//!
//! # Map of the crate
//!
//! * processes: [`Pool`] (client side), the scheduler (forks and re-forks workers, fails
//!   the jobs of dead ones, cancels), the workers (run chunks, help their nested jobs);
//! * data plane: [`Mempool`] (shared region that grows up to its reservation, allocator
//!   with a lock that survives a dead holder and sealed headers that a wild write cannot
//!   lead astray, a bounded cache of populated free pages, no SIGBUS), [`SharedArray`] / [`ArrayDesc`]; whole-array operations in the
//!   workers, in place: [`Pool::par_sort`] and its forms, [`Pool::par_chunks`],
//!   [`Pool::par_chunks_mut`], [`Pool::par_chunks_mut_reading`]; variable-size items
//!   without per-item encoding, as Arrow lays them out (offsets and one values buffer):
//!   [`SharedStrings`] / [`SharedVecs`] (`columnar`), iterated as `&str` / `&[T]` by
//!   [`Pool::par_iter_strs`] / [`Pool::par_iter_vecs`]; any serde values encoded in bulk,
//!   one buffer per job and decoded a chunk at a time: [`Pool::par_iter_vec`];
//! * control plane: [`Camlbox`] (fixed-slot mailboxes, many senders, one receiver);
//!   what crosses a process boundary (job arguments, partial results, messages) is
//!   bincode, written into slices sized beforehand (`codec`; a chunk's collected
//!   vector of a primitive number type goes as its bytes);
//! * job kinds (`kind`): what each operation computes in a worker, one file per kind;
//!   every kind reads and writes shared arrays through raw-pointer views resolved against
//!   the worker's own mempool handle (`view`), forming slices only over the elements the
//!   protocol gives it;
//! * jobs: a shared header per job, chunks taken by the workers themselves (guided
//!   self-scheduling), results in input order; [`JobHandle`] to wait, poll, cancel,
//!   watch [`Progress`] or `.await`; [`Ctx`] inside a task for nested jobs, cancellation
//!   checks, progress and partial results; [`Pool::join`] / [`Pool::scope`] for two or
//!   more sub-jobs whose results come back together (nesting on a `Ctx`);
//! * beyond one machine (feature `mpi`): `cluster`, the same iterator API across MPI
//!   ranks, one local pool per rank, tasks named by stable ids checked against every
//!   rank's build.
//! * shared state for every process of the tree, in the mempool, with descriptors that
//!   travel into tasks: [`sync`] (a robust [`sync::Mutex`] that reports a dead holder,
//!   [`sync::Condvar`], [`sync::Semaphore`], [`sync::Barrier`]) and [`collections`]
//!   ([`collections::SharedQueue`], [`collections::SharedBox`],
//!   [`collections::SharedVec`], [`collections::SharedHashMap`],
//!   [`collections::SharedBuffer`]), on top of it;
//! * explicit processes (Netmulticore's fork and join points): [`Pool::fork_with`] runs a
//!   function in a process of its own, outside the workers, and [`Process`] /
//!   [`ProcessDesc`] join it exactly once, from any process of the tree (`explicit`).
//!
//! Each module documents its protocol (states, who touches what, why no wakeup is
//! lost). Functions travel as code addresses, valid in every forked process: pass `fn`
//! items or closures that capture nothing (checked at compile time), and state through
//! `map_with` or shared arrays.
//! Who is trusted, and what a misbehaving task can and cannot corrupt: `docs/THREAT_MODEL.md`.

#![deny(missing_docs)]

mod array;
mod camlbox;
mod chunks;
#[cfg(feature = "mpi")]
pub mod cluster;
mod codec;
pub mod collections;
mod columnar;
mod ctx;
mod error;
mod explicit;
#[allow(dead_code)]
pub(crate) mod futex;
mod iter;
mod jobs;
mod join;
mod kind;
#[allow(dead_code)]
mod loom;
mod mempool;
mod ops;
mod panic_hook;
mod pool;
mod progress;
mod scheduler;
mod server;
mod sort;
mod space;
mod staging;
mod stream;
pub mod sync;
#[allow(dead_code)]
pub(crate) mod sys;
mod task;
mod unwind;
mod view;
mod worker;

pub use array::{ArrayDesc, RawArrayDesc, SharedArray};
pub use bytemuck::{Pod, Zeroable};
pub use camlbox::{Camlbox, Receiver, Sender};
pub use columnar::{SharedStrings, SharedVecs};
pub use ctx::Ctx;
pub use error::{Error, Result};
pub use explicit::{Process, ProcessDesc};
pub use join::Scope;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use iter::{
    FromParIter, IntoParIterOn, ParExtend, ParItems, ParIter, ParIterMut, RangeInt, Try,
};
pub use mempool::{Block, Mempool, RawBlock, Usage};
#[doc(hidden)]
pub use mempool::{
    CrashPoint as __CrashPoint, HeapReport as __HeapReport, TestLockGuard as __TestLockGuard,
};
pub use pool::{JobHandle, Pool, PoolBuilder, ProgressStream, ReportStream, StartMode};
pub use progress::Progress;
#[doc(hidden)]
pub use server::fork_server_pid as __fork_server_pid;
pub use staging::{ArrayInput, StagedInput};
pub use task::TaskFn;
