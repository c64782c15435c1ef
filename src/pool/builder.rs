//! `PoolBuilder`: the knobs of a pool, checked before anything is mapped or forked.

use std::time::Duration;

use crate::jobs::MAX_WORKERS;
use crate::pool::Pool;
use crate::{Error, Result};

/// Configures and builds a [`Pool`].
///
/// # Examples
///
/// ```
/// let pool = procyon::Pool::builder()
///     .workers(2)
///     .mempool_size(64 << 20)
///     .build()?;
/// assert_eq!(pool.workers(), 2);
/// # Ok::<(), procyon::Error>(())
/// ```
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PoolBuilder {
    pub(crate) workers: usize,
    pub(crate) mempool_size: Option<usize>,
    pub(crate) mempool_retention: Option<usize>,
    pub(crate) mempool_max: Option<usize>,
    pub(crate) inbox_slots: usize,
    pub(crate) slot_size: usize,
    pub(crate) min_len: usize,
    pub(crate) max_len: usize,
    pub(crate) spin: Duration,
    pub(crate) cancel_grace: Duration,
    /// Outputs of at least this many bytes are streamed (resolved at build when not set:
    /// [`STREAM_BYTES_PER_WORKER`](crate::stream::STREAM_BYTES_PER_WORKER) per worker).
    pub(crate) stream_from: Option<usize>,
    pub(crate) job_timeout: Option<Duration>,
    pub(crate) start_mode: StartMode,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            workers: crate::sys::process::cpus(),
            mempool_size: None,
            mempool_retention: None,
            mempool_max: None,
            inbox_slots: 256,
            slot_size: 128,
            min_len: 1,
            max_len: usize::MAX,
            spin: crate::futex::DEFAULT_SPIN,
            cancel_grace: Duration::from_millis(50),
            stream_from: None,
            job_timeout: None,
            start_mode: StartMode::default(),
        }
    }
}

/// How a pool's processes are started: see [`PoolBuilder::start_mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StartMode {
    /// The scheduler is forked by procyon's fork server: a fresh execution of this
    /// program's executable, started (with `posix_spawn`, from whatever thread) at the
    /// first such build and caught by procyon before `main` runs, single-threaded. Safe in
    /// any program (threads, held locks, a large heap); build and drop cost nothing that
    /// grows with the client's memory.
    ///
    /// Workers see what that fresh execution sees: statics as they are at start-up, the
    /// environment and the open (not close-on-exec) files the client had when it started
    /// the server, and whatever reaches them through the job (arguments, `map_with`
    /// contexts, shared arrays). They do **not** see anything the client set up in memory
    /// after it started (statics, heap data, `OnceLock`s, loggers).
    #[default]
    ForkServer,
    /// The scheduler is forked from the client thread that calls `build`, so workers
    /// inherit a copy-on-write snapshot of the client's memory at that moment (large
    /// read-only state costs nothing to share, Parmap's way).
    ///
    /// Hazards: the fork copies the client's page tables (about 25 ms per GiB of touched
    /// heap, at build and again at drop); a task that takes a lock some other client thread
    /// held at that moment (a `Mutex` in a static, a logger) waits forever (std's stdout
    /// and stderr locks are taken around the fork, so printing is safe); the pool's
    /// processes die when the *thread* that built it ends (Linux's parent-death signal
    /// follows the forking thread). See "Forking in a threaded program" on [`Pool`].
    Fork,
}

/// Smallest camlbox slot that holds every control message.
pub(crate) const MIN_SLOT_SIZE: usize = 64;

impl PoolBuilder {
    /// Outputs of at least this many bytes are written with non-temporal stores.
    pub(crate) fn stream_threshold(&self) -> usize {
        self.stream_from
            .unwrap_or(crate::stream::STREAM_BYTES_PER_WORKER.saturating_mul(self.workers))
    }

    /// Number of worker processes (default: `num_cpus::get()`).
    ///
    /// A worker is a long-lived process: with glibc's allocator it keeps the heap memory
    /// its jobs free for the next job (allocations up to 32 MiB come from its heap, and
    /// up to 64 MiB of free heap stays mapped), so a job that builds the same large
    /// vectors as the last one does not fault their pages in again. A worker's resident
    /// size is then about the most heap one of its jobs needed.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(3).mempool_size(64 << 20).build()?;
    /// assert_eq!(pool.pids().1.len(), 3);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Initial size of the shared memory pool in bytes (default: half of physical memory;
    /// pages cost nothing until used). It grows as needed up to
    /// [`mempool_max`](Self::mempool_max).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder()
    ///     .workers(1)
    ///     .mempool_size(16 << 20)
    ///     .mempool_max(16 << 20)
    ///     .build()?;
    /// assert!(pool.mempool().capacity() <= 16 << 20);
    /// // Too big a request is an error, not a crash.
    /// assert!(matches!(
    ///     pool.array_zeroed::<u8>(32 << 20),
    ///     Err(procyon::Error::OutOfMemory { .. })
    /// ));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn mempool_size(mut self, bytes: usize) -> Self {
        self.mempool_size = Some(bytes);
        self
    }

    /// The most the mempool may grow to, in bytes (default: the physical memory). The
    /// mempool starts at [`mempool_size`](Self::mempool_size) and grows as allocations
    /// need, from any process, while jobs run; past the maximum, allocations fail with
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory). Pass the `mempool_size` for a
    /// pool that never grows.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder()
    ///     .workers(1)
    ///     .mempool_size(16 << 20)
    ///     .mempool_max(64 << 20)
    ///     .build()?;
    /// let big = pool.array_zeroed::<u8>(40 << 20)?; // more than the initial size
    /// assert!(pool.mempool().usage().size > 40 << 20);
    /// assert!(pool.array_zeroed::<u8>(64 << 20).is_err());
    /// # drop(big);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn mempool_max(mut self, bytes: usize) -> Self {
        self.mempool_max = Some(bytes);
        self
    }

    /// How many populated bytes the mempool's free blocks may keep (default: a quarter of
    /// the mempool's maximum, [`mempool_max`](Self::mempool_max); see [`Mempool::retention`](crate::Mempool::retention)). Freed
    /// pages up to this stay populated in every process that touched them, so a fresh
    /// output (`par_map`, `collect_array`) costs what a reused one does; past it, freed
    /// pages go back to the system. `pool.mempool().trim()` gives them all back.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder()
    ///     .workers(1)
    ///     .mempool_size(64 << 20)
    ///     .mempool_retention(32 << 20)
    ///     .build()?;
    /// assert_eq!(pool.mempool().retention(), 32 << 20);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn mempool_retention(mut self, bytes: usize) -> Self {
        self.mempool_retention = Some(bytes);
        self
    }

    /// Slots in each process's camlbox (default 256).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).inbox_slots(64).build()?;
    /// let x = pool.array_from_fn(1000, |i| i as u64)?;
    /// assert_eq!(pool.par_iter(&x).sum::<u64>()?, 499_500);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn inbox_slots(mut self, slots: usize) -> Self {
        self.inbox_slots = slots;
        self
    }

    /// Bytes per camlbox slot (default 128; at least 64).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).slot_size(256).build()?;
    /// let x = pool.array_from_fn(1000, |i| i as u64)?;
    /// assert_eq!(pool.par_iter(&x).sum::<u64>()?, 499_500);
    /// // Smaller than a control message: refused at build.
    /// assert!(procyon::Pool::builder().slot_size(8).build().is_err());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = bytes;
        self
    }

    /// Default smallest chunk of items a worker takes at once (default 1).
    ///
    /// # Examples
    ///
    /// ```
    /// // Chunks of at least 1000 items: cheap items, fewer claims.
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).min_len(1000).build()?;
    /// let x = pool.array_from_fn(100_000, |i| i as u64)?;
    /// assert_eq!(pool.par_iter(&x).sum::<u64>()?, 4_999_950_000);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn min_len(mut self, items: usize) -> Self {
        self.min_len = items;
        self
    }

    /// Default largest chunk of items a worker takes at once (default: unbounded).
    ///
    /// # Examples
    ///
    /// ```
    /// // At most one item per chunk: each item is a long computation, balance them finely.
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).max_len(1).build()?;
    /// let x = pool.array_from_fn(20, |i| i as u64)?;
    /// assert_eq!(pool.par_iter(&x).map(|v: u64| v * v).sum::<u64>()?, 2470);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn max_len(mut self, items: usize) -> Self {
        self.max_len = items;
        self
    }

    /// How long idle workers and waiting clients spin before they sleep on a futex
    /// (default 50 us; zero sleeps at once). When the workers occupy every CPU, a waiting
    /// client spins at most 5 us: its spinning would take a CPU from a worker.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// // Never spin: idle workers sleep at once (for a machine shared with other programs).
    /// let pool = procyon::Pool::builder()
    ///     .workers(2)
    ///     .mempool_size(64 << 20)
    ///     .spin(Duration::ZERO)
    ///     .build()?;
    /// let x = pool.array_from_fn(1000, |i| i as u64)?;
    /// assert_eq!(pool.par_iter(&x).sum::<u64>()?, 499_500);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// How long a cancelled task may run before its worker is killed (default 50 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Error};
    /// use std::time::{Duration, Instant};
    ///
    /// let pool = procyon::Pool::builder()
    ///     .workers(1)
    ///     .mempool_size(64 << 20)
    ///     .cancel_grace(Duration::from_millis(20))
    ///     .build()?;
    /// // A task that never looks at `is_cancelled`: its worker is killed after the grace.
    /// let handle = pool.spawn(|_: &Ctx| -> u32 {
    ///     loop {
    ///         std::hint::spin_loop();
    ///     }
    /// })?;
    /// let start = Instant::now();
    /// handle.cancel();
    /// assert!(matches!(handle.wait(), Err(Error::Cancelled)));
    /// assert!(start.elapsed() < Duration::from_secs(5));
    /// // The worker was replaced: the pool goes on serving.
    /// assert_eq!(pool.spawn(|_: &Ctx| 7u32)?.wait()?, 7);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Outputs of `par_map` / `par_map_into` of at least this many bytes are written with
    /// non-temporal stores, which skip reading each output line before writing it and do
    /// not fill the cache (default: 4 MiB per worker, 8 MiB for 2 workers: a fixed
    /// size, not one read from the machine, so that a result does not depend on a cache
    /// size a VM may misreport).
    ///
    /// For outputs far larger than the cache this saves a third of the memory traffic
    /// (W5, y = 2x + 1 over 512 MiB: about 1.3x the bandwidth); an output that is read
    /// again right away and fits in the cache is better written normally. `usize::MAX`
    /// turns streaming off, `0` streams every output.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder()
    ///     .workers(2)
    ///     .mempool_size(64 << 20)
    ///     .stream_outputs_from(0)
    ///     .build()?;
    /// let x = pool.array_from_fn(100_000, |i| i as f64)?;
    /// let y = pool.par_map(&x, |v: f64| 2.0 * v + 1.0)?;
    /// assert!(y.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f64 + 1.0));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn stream_outputs_from(mut self, bytes: usize) -> Self {
        self.stream_from = Some(bytes);
        self
    }

    /// A time limit for every job of the pool (default: none): a `par_map`,
    /// `par_chunks_mut`, `par_map_vec`, iterator terminal or spawned job that runs longer
    /// fails with [`Error::Timeout`] and its workers are stopped as by a cancel (killed
    /// and replaced after the cancel grace period if they do not return). Override it
    /// per call with [`Pool::with_timeout`] or [`ParIter::timeout`](crate::ParIter::timeout).
    /// It bounds the jobs a client (or an explicit process) starts, and through each of
    /// them its whole tree of nested jobs; a task gives its own nested jobs a shorter
    /// limit with `ctx.with_timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procyon::Pool::builder()
    ///     .workers(2)
    ///     .mempool_size(64 << 20)
    ///     .job_timeout(Duration::from_millis(200))
    ///     .build()?;
    /// let r = pool.spawn(|_ctx: &procyon::Ctx| std::thread::sleep(Duration::from_secs(10)))?.wait();
    /// assert!(matches!(r, Err(procyon::Error::Timeout { .. })));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn job_timeout(mut self, limit: Duration) -> Self {
        self.job_timeout = Some(limit);
        self
    }

    /// How the pool's processes are started (default [`StartMode::ForkServer`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Pool, StartMode};
    ///
    /// static TABLE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    /// TABLE.set(42).unwrap();
    /// // Fork: the workers inherit the client's memory, `TABLE` included.
    /// let pool = Pool::builder().workers(1).mempool_size(16 << 20).start_mode(StartMode::Fork).build()?;
    /// let seen = pool.par_range(0..1).map(|_: usize| *TABLE.get().unwrap_or(&0)).sum::<u64>()?;
    /// assert_eq!(seen, 42);
    /// // ForkServer (the default): a fresh image, where `TABLE` was never set.
    /// let pool = Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let seen = pool.par_range(0..1).map(|_: usize| *TABLE.get().unwrap_or(&0)).sum::<u64>()?;
    /// assert_eq!(seen, 0);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn start_mode(mut self, mode: StartMode) -> Self {
        self.start_mode = mode;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad value.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.workers == 0 {
            return Err(Error::config("workers must be at least 1"));
        }
        if self.workers > MAX_WORKERS {
            return Err(Error::config(format!(
                "{} workers requested, at most {MAX_WORKERS} are supported",
                self.workers
            )));
        }
        if self.inbox_slots < 2 {
            return Err(Error::config("inbox_slots must be at least 2"));
        }
        if self.slot_size < MIN_SLOT_SIZE {
            return Err(Error::config(format!(
                "slot_size {} is too small for control messages: use at least {MIN_SLOT_SIZE} bytes",
                self.slot_size
            )));
        }
        if self.min_len == 0 || self.max_len == 0 {
            return Err(Error::config(
                "chunk sizes (min_len, max_len) must be at least 1",
            ));
        }
        if self.min_len > self.max_len {
            return Err(Error::config(format!(
                "min_len {} is larger than max_len {}",
                self.min_len, self.max_len
            )));
        }
        Ok(())
    }

    /// Maps the mempool, starts the scheduler (through the fork server, started at the
    /// first such build, or by forking the calling thread: see [`StartMode`]), and waits
    /// until every worker is ready.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad value; [`Error::Io`] if mapping or forking
    /// fails; [`Error::ForkServer`] if the fork server cannot be started, runs another
    /// image, or cannot map the pool (procyon in a shared library, no `/proc`);
    /// [`Error::PoolShutDown`] if the scheduler dies while starting.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// assert_eq!(pool.workers(), 2);
    /// // A bad value is an error at build, not a panic later.
    /// assert!(matches!(
    ///     procyon::Pool::builder().workers(0).build(),
    ///     Err(procyon::Error::InvalidConfig { .. })
    /// ));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn build(self) -> Result<Pool> {
        Pool::build(self)
    }
}
