//! The same API across MPI ranks (feature `mpi`): one local [`Pool`] per rank, rank 0
//! drives, the other ranks serve.
//!
//! Sources: [`Cluster::par_range`] (an index range) and [`Cluster::par_iter`] (a
//! slice on rank 0, scattered); adapters `map`, `map_with`, `filter`; terminals
//! `collect_vec`, `collect_array`, `sum`, `reduce`, `fold`, `for_each`.
//!
//! Start the program with `mpirun` (one rank per machine, or several on one machine);
//! every rank builds a [`Cluster`], which initializes MPI, starts the rank's local pool
//! and checks that every rank runs the same build. Rank 0 then runs jobs with
//! [`Cluster::par_range`] / [`Cluster::par_iter`] and the adapters of [`ClusterIter`];
//! every other rank calls [`Cluster::serve`], which runs the blocks rank 0 hands out
//! until rank 0 drops (or [`closes`](Cluster::close)) its cluster.
//!
//! ```
//! # fn main() -> procyon::Result<()> {
//! use procyon::cluster::Cluster;
//! use procyon::Pool;
//!
//! // Under `mpirun -np N`, N ranks; started on its own, a single rank.
//! let cluster = Cluster::builder().pool(Pool::builder().workers(2).mempool_size(64 << 20)).build()?;
//! if !cluster.is_driver() {
//!     return cluster.serve();
//! }
//! let squares = cluster.par_range(0u64..1000).map(|i: u64| i * i).collect_vec()?;
//! assert_eq!(squares[999], 998_001);
//! let total: u64 = cluster.par_range(0u64..1000).filter(|i: &u64| i % 2 == 0).sum()?;
//! assert_eq!(total, 249_500);
//! # Ok(()) }
//! ```
//!
//! ## Functions across ranks
//!
//! Ranks are separate executions of one executable, possibly on different hosts, each
//! loaded at its own address: a task travels as a *task id*, the offset of a trampoline
//! monomorphized for the job's pipeline type from the crate's code anchor (`task`).
//! When the cluster starts, every rank announces its build identity (image fingerprint,
//! length and hash of its executable: `identity`) to every other; a rank that runs
//! another build makes [`ClusterBuilder::build`] fail on *every* rank with
//! [`Error::BuildMismatch`] naming it, before any job runs.
//!
//! ## Jobs
//!
//! How a job is split (first by rank, then guided blocks to whichever rank is free, so a
//! slow rank does not hold the job), combined (partials in input order), cancelled
//! ([`CancelToken`], [`ClusterIter::timeout`]: every rank's work stops, cooperatively and
//! then by the local pools' forced kill, before the error comes back), and what happens
//! when a rank dies: see `driver`. A server that goes silent (hangs, or is stopped) for
//! the silence limit fails the job with [`Error::RankFailed`] naming it. **A rank that
//! dies ends the whole MPI job under Open MPI**: `mpirun` kills every other rank, rank 0
//! included, so no error reaches rank 0's code; `mpirun` exits non-zero and names the
//! dead rank ("process rank 2 ... exited on signal 9"), and the ranks' pools die with
//! their ranks (tested by `scripts/test_mpi.sh`). Progress ([`ClusterIter::on_progress`]) counts the items of finished blocks,
//! summed over ranks.
//!
//! ## Data and its cost
//!
//! Shared arrays are local to a machine and do not cross ranks. What a job needs goes
//! with it. *Broadcast*: the pipeline's state (range start, `map_with` values) is
//! encoded once per job and sent to every rank (`size - 1` copies over MPI), then copied
//! once per block into the rank's mempool (a block is a job of the local pool): keep it
//! to what every item needs. *Scattered*: the items of [`Cluster::par_iter`] (a slice on
//! rank 0) travel with the blocks, each block carrying only its own items (their
//! bincode size, once per job in all). Results come back to rank 0
//! encoded with bincode, one message per block: `collect_vec` moves every item once,
//! `sum` / `reduce` one value per block, `fold` one accumulator per local chunk.
//! [`ClusterIter::collect_array`] puts the items in a [`SharedArray`](crate::SharedArray)
//! of rank 0's pool.
//!
//! ## Trust
//!
//! Every rank trusts every other: they are one program, started by one `mpirun`. The
//! build check catches a stale or different binary on a host (an honest mistake); it is
//! not a defence against a rank that lies (a task id is a code offset, and a rank that
//! sends a forged one can make another rank jump anywhere in its executable). Do not
//! let untrusted processes join the MPI job.
//!
//! ## Threads
//!
//! MPI is initialized with `MPI_THREAD_FUNNELED`: a cluster is used from the thread that
//! built it (it is neither `Send` nor `Sync`); a [`CancelToken`] may be cancelled from
//! any thread. MPI can be initialized once per process, so a process builds one cluster.

mod driver;
mod identity;
mod iter;
mod serve;
mod stage;
mod task;
mod wire;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mpi::traits::*;

use crate::{Error, Pool, PoolBuilder, Progress, Result};

pub use iter::ClusterIter;
pub use stage::{ClusterInt, Filter, ItemsOf, Map, MapWith, RangeOf, Scattered, Stage};

/// How a cluster is built: the local pool of every rank, the silence limit.
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// use std::time::Duration;
/// let cluster = procyon::cluster::Cluster::builder()
///     .pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20))
///     .silence_limit(Duration::from_secs(30))
///     .build()?;
/// if !cluster.is_driver() {
///     return cluster.serve();
/// }
/// assert_eq!(cluster.par_range(0u32..10).sum::<u32>()?, 45);
/// # Ok(()) }
/// ```
pub struct ClusterBuilder {
    pool: PoolBuilder,
    silence_limit: Duration,
    perturb_rank: Option<i32>,
}

impl ClusterBuilder {
    /// The local pool every rank starts (default: `Pool::builder()`, one worker per
    /// core). Ranks on one machine share its cores: give each `cores / ranks` workers.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let c = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(3));
    /// # drop(c);
    /// # Ok(()) }
    /// ```
    pub fn pool(mut self, pool: PoolBuilder) -> Self {
        self.pool = pool;
        self
    }

    /// How long a serving rank may stay silent during a job before the driver takes it
    /// for dead or hung (default 60 s; a working rank sends a heartbeat every 250 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let b = procyon::cluster::Cluster::builder().silence_limit(std::time::Duration::from_secs(5));
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn silence_limit(mut self, limit: Duration) -> Self {
        self.silence_limit = limit;
        self
    }

    /// Test hook: rank `rank` announces a perturbed build identity, as a rank running
    /// another build would.
    #[doc(hidden)]
    pub fn __perturb_identity_on_rank(mut self, rank: i32) -> Self {
        self.perturb_rank = Some(rank);
        self
    }

    /// Initializes MPI, starts this rank's local pool and checks, with every other rank,
    /// that all ranks run the same build and started their pools. Every rank of the MPI
    /// job must call it (it is collective).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if MPI is already initialized in this process (one
    /// cluster per process) or cannot be; [`Error::BuildMismatch`] on every rank if a
    /// rank runs another build; [`Error::RankFailed`] on every rank if a rank could not
    /// start its pool (naming it); the local pool's errors.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// // MPI is initialized once per process: a second cluster is refused.
    /// let again = procyon::cluster::Cluster::builder().build();
    /// assert!(matches!(again, Err(procyon::Error::InvalidConfig { .. })));
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<Cluster> {
        if self.silence_limit.is_zero() {
            return Err(Error::config("the silence limit must be above zero"));
        }
        let (universe, _threading) = mpi::initialize_with_threading(mpi::Threading::Funneled)
            .ok_or_else(|| {
                Error::config(
                    "MPI is already initialized in this process: build one Cluster per \
                     process (MPI can be initialized only once)",
                )
            })?;
        let world = universe.world();
        let rank = world.rank();
        let size = world.size();
        let pool = self.pool.build();
        let mut mine = [0u64; identity::WORDS + 1];
        let my_id = identity::local();
        if let Ok(id) = &my_id {
            mine[..identity::WORDS].copy_from_slice(id);
        }
        if self.perturb_rank == Some(rank) {
            mine[identity::WORDS - 1] ^= 0x5eed;
        }
        // The last word: whether this rank is ready (identity known, pool started).
        mine[identity::WORDS] = u64::from(my_id.is_ok() && pool.is_ok());
        let mut all = vec![0u64; mine.len() * size as usize];
        world.all_gather_into(&mine[..], &mut all[..]);
        // Every rank draws the same conclusion from the same gathered words.
        let ids: Vec<u64> = all
            .chunks_exact(mine.len())
            .flat_map(|w| w[..identity::WORDS].iter().copied())
            .collect();
        for (r, w) in all.chunks_exact(mine.len()).enumerate() {
            if w[identity::WORDS] == 0 {
                if r as i32 == rank {
                    // Our own failure: say what it was.
                    if let Err(reason) = my_id {
                        return Err(Error::RankFailed { rank, reason });
                    }
                    pool?;
                }
                return Err(Error::RankFailed {
                    rank: r as i32,
                    reason: "it could not start its local pool or read its executable".into(),
                });
            }
        }
        identity::check(&ids)?;
        Ok(Cluster {
            pool: pool?,
            link: wire::Link::new(world, if rank == 0 { wire::UP } else { wire::DOWN }),
            rank,
            size,
            next_job: Cell::new(0),
            broken: RefCell::new(None),
            closed: Cell::new(false),
            silence_limit: self.silence_limit,
            _universe: universe,
        })
    }
}

/// An MPI cluster: this rank's local pool and its place among the ranks. See the module
/// docs.
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// let cluster = procyon::cluster::Cluster::builder()
///     .pool(procyon::Pool::builder().workers(2).mempool_size(32 << 20))
///     .build()?;
/// if cluster.is_driver() {
///     let v = cluster.par_range(0i64..5).map(|i: i64| -i).collect_vec()?;
///     assert_eq!(v, [0, -1, -2, -3, -4]);
///     cluster.close(); // or drop it: the other ranks' `serve` returns
/// } else {
///     cluster.serve()?;
/// }
/// # Ok(()) }
/// ```
pub struct Cluster {
    pool: Pool,
    link: wire::Link,
    rank: i32,
    size: i32,
    next_job: Cell<u64>,
    broken: RefCell<Option<(i32, String)>>,
    closed: Cell<bool>,
    silence_limit: Duration,
    // Last: dropping it finalizes MPI, after the pool and the communicator are gone.
    _universe: mpi::environment::Universe,
}

impl Cluster {
    /// A builder with the defaults (see [`ClusterBuilder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// assert!(cluster.size() >= 1);
    /// # Ok(()) }
    /// ```
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            pool: Pool::builder(),
            silence_limit: Duration::from_secs(60),
            perturb_rank: None,
        }
    }

    /// This process's rank (0 drives).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// assert_eq!(cluster.rank(), 0); // past the serve above: the driver
    /// # Ok(()) }
    /// ```
    pub fn rank(&self) -> i32 {
        self.rank
    }

    /// The number of ranks.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let per_rank: Vec<u64> = cluster.par_range(0..cluster.size()).map(|r: i32| r as u64).collect_vec()?;
    /// assert_eq!(per_rank.len(), cluster.size() as usize);
    /// # Ok(()) }
    /// ```
    pub fn size(&self) -> i32 {
        self.size
    }

    /// Whether this rank drives the cluster's jobs (rank 0).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// assert!(cluster.is_driver());
    /// # Ok(()) }
    /// ```
    pub fn is_driver(&self) -> bool {
        self.rank == 0
    }

    /// This rank's local pool (for work of this rank alone).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// // Work of rank 0 alone, in its own pool.
    /// let local: u64 = cluster.pool().par_range(0u64..10).sum()?;
    /// assert_eq!(local, 45);
    /// # Ok(()) }
    /// ```
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A parallel iterator over `range` across every rank: item `i` of the job is
    /// `range.start + i`. Only rank 0 may run it (its terminal fails elsewhere).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// assert_eq!(cluster.par_range(-3i64..3).sum::<i64>()?, -3);
    /// # Ok(()) }
    /// ```
    pub fn par_range<I: ClusterInt>(
        &self,
        range: std::ops::Range<I>,
    ) -> ClusterIter<'_, RangeOf<I>> {
        let n = I::span(range.start, range.end).unwrap_or(0);
        ClusterIter::new(self, range.start, n)
    }

    /// A parallel iterator over the items of `items` (on rank 0) across every rank,
    /// in order. The items are *scattered*: each block of the job is sent its own items
    /// (encoded with bincode: about their serialized size, once per job in all, plus a
    /// copy into the rank's mempool), never the whole slice. Only rank 0 may run it.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let xs: Vec<f64> = (0..1000).map(f64::from).collect();
    /// let total: f64 = cluster.par_iter(&xs).map(|x: f64| x * 2.0).sum()?;
    /// assert_eq!(total, 999_000.0);
    /// # Ok(()) }
    /// ```
    pub fn par_iter<'c, T>(&'c self, items: &'c [T]) -> ClusterIter<'c, ItemsOf<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone + 'static,
    {
        ClusterIter::new(self, Scattered::none(), items.len() as u64).scattering(move |s, e| {
            bincode::serialize(&items[s as usize..e as usize])
                .map_err(|e| Error::config(format!("cannot encode the items of a block: {e}")))
        })
    }

    /// Serves the driver's jobs on a rank other than 0, until the driver closes the
    /// cluster.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] on rank 0; [`Error::RankFailed`] if the driver sends a
    /// message that does not decode or breaks the protocol.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// // (Other ranks serve above.) On rank 0, serve is refused:
    /// assert!(matches!(cluster.serve(), Err(procyon::Error::InvalidConfig { .. })));
    /// # Ok(()) }
    /// ```
    pub fn serve(&self) -> Result<()> {
        if self.is_driver() {
            return Err(Error::config(
                "rank 0 drives the cluster's jobs; Cluster::serve is for the other ranks",
            ));
        }
        serve::serve(self)
    }

    /// Ends the cluster on rank 0: every other rank's [`serve`](Cluster::serve) returns.
    /// Dropping the driver's cluster does the same. Does nothing on other ranks, or twice.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// cluster.close();
    /// assert!(cluster.par_range(0u8..2).sum::<u8>().is_err());
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        if self.is_driver() && !self.closed.replace(true) {
            for r in 1..self.size {
                // A rank that is gone cannot be told; nothing else is to be done.
                let _ = self.link.send(r, wire::DOWN, &wire::Down::Close);
            }
        }
    }

    /// Fails if this rank cannot drive a job now.
    fn usable(&self) -> Result<()> {
        if !self.is_driver() {
            return Err(Error::config(format!(
                "rank {} is not the driver: only rank 0 runs cluster jobs; the other \
                 ranks call Cluster::serve",
                self.rank
            )));
        }
        if self.closed.get() {
            return Err(Error::config("the cluster is closed"));
        }
        if let Some((rank, reason)) = &*self.broken.borrow() {
            return Err(Error::RankFailed {
                rank: *rank,
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    fn next_job(&self) -> u64 {
        let j = self.next_job.get() + 1;
        self.next_job.set(j);
        j
    }

    fn set_broken(&self, rank: i32, reason: &str) {
        *self.broken.borrow_mut() = Some((rank, reason.to_string()));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.close();
    }
}

/// Cancels a cluster job from any thread: every rank's work on it stops, and the job
/// answers [`Error::Cancelled`]. One token per job (once cancelled, it stays so).
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// use procyon::cluster::{CancelToken, Cluster};
/// let cluster = Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
/// if !cluster.is_driver() {
///     return cluster.serve();
/// }
/// let token = CancelToken::new();
/// token.cancel(); // from another thread, in real use
/// let r = cluster.par_range(0u64..1000).with_cancel(&token).sum::<u64>();
/// assert!(matches!(r, Err(procyon::Error::Cancelled)));
/// # Ok(()) }
/// ```
#[derive(Clone, Default, Debug)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled yet.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let token = procyon::cluster::CancelToken::new();
    /// assert!(!token.is_cancelled());
    /// # drop(cluster);
    /// # Ok(()) }
    /// ```
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels the job that carries the token (now, or at its start).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let token = procyon::cluster::CancelToken::new();
    /// let t = token.clone();
    /// std::thread::spawn(move || t.cancel()).join().unwrap();
    /// assert!(token.is_cancelled());
    /// # drop(cluster);
    /// # Ok(()) }
    /// ```
    pub fn cancel(&self) {
        // Release: pairs with the Acquire load below; no data rides on the flag, and
        // the driver looks at it at every step of its loop.
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`cancel`](CancelToken::cancel) was called.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let token = procyon::cluster::CancelToken::new();
    /// token.cancel();
    /// assert!(token.is_cancelled());
    /// # drop(cluster);
    /// # Ok(()) }
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A job's options on the driver: its cancel token, time limit, progress callback.
#[derive(Default)]
pub(crate) struct Opts {
    cancel: Option<CancelToken>,
    timeout: Option<Duration>,
    on_progress: Option<Box<dyn FnMut(Progress)>>,
}
