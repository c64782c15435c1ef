//! The client side of a pool: build it, submit jobs, wait for them, shut it down.

mod builder;
mod events;
mod handle;
mod start;
mod waiter;

use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use builder::{PoolBuilder, StartMode};
pub use events::{ProgressStream, ReportStream};
pub use handle::JobHandle;
pub(crate) use handle::{ProgressFn, ReportFn, Submitted};

use crate::camlbox::{Camlbox, Sender};
use crate::jobs::partials::CELL_SIZE;
use crate::jobs::run_set::Feed;
use crate::jobs::slot::INLINE_BYTES;
use crate::jobs::stripes::{self, STRIPE_SIZE};
use crate::jobs::{Control, MAX_JOBS, SEGMENT_SLOTS};
use crate::jobs::{JobId, NO_PARENT};
use crate::kind::{entry, JobKind};
use crate::mempool::{Block, Mempool};
use crate::scheduler::{SchedMsg, SchedulerSetup};
use crate::sys::process;
use crate::{Error, Result};

/// A pool of worker processes, the way rayon has a pool of threads.
///
/// Building a pool maps the mempool and starts one scheduler process, which forks the
/// workers. Jobs run in the workers; their inputs and outputs live in the mempool.
/// `Pool` is `Send + Sync`: any number of client threads may submit jobs at once.
/// Dropping it shuts every process down and reaps it.
///
/// # Examples
///
/// ```
/// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
/// let input = pool.array_from_fn(1000, |i| i as u64)?;
/// let squares = pool.par_map(&input, |x: u64| x * x)?;
/// assert_eq!(squares[999], 999 * 999);
/// # Ok::<(), procyon::Error>(())
/// ```
///
/// # Where the processes come from
///
/// By default ([`StartMode::ForkServer`]) the scheduler is forked by procyon's fork
/// server: a fresh execution of this program's executable, started at the first build
/// (from any thread, with `posix_spawn`) and caught by procyon before its `main` runs, so
/// it is single-threaded and holds no lock. This is safe in any program: threads that
/// print, hold mutexes, allocate or panic at build time cannot hang the pool, and
/// building costs nothing that grows with the client's heap. The server lives as long as
/// the client process (it exits when the client does, however it ends) and serves only
/// it; see `docs/THREAT_MODEL.md`.
///
/// What a worker then sees of the client: statics as they are at program start-up (not
/// what the client set afterwards: no `OnceLock` it filled, no logger it installed, no
/// heap data), and the environment and open files the client had when it started the
/// server. State reaches tasks through the job: arguments, `map_with` contexts and shared
/// arrays.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// static SEEN: AtomicU64 = AtomicU64::new(1);
/// SEEN.store(7, Ordering::Relaxed); // after start-up: the fork server's image never sees it
/// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
/// let v = pool.par_range(0..1).map(|_: usize| SEEN.load(Ordering::Relaxed)).sum::<u64>()?;
/// assert_eq!(v, 1);
/// # Ok::<(), procyon::Error>(())
/// ```
///
/// [`StartMode::Fork`] forks the scheduler from the calling thread instead, so workers
/// inherit a copy-on-write snapshot of the client's memory.
///
/// # Forking in a threaded program ([`StartMode::Fork`])
///
/// `build` forks. In a program that already runs threads, only the calling thread exists
/// in the child, and a lock another thread held stays locked there. The scheduler is
/// built so that this window is harmless to the pool itself: the client holds std's
/// stdout and stderr locks across the fork (so a task that prints never finds them
/// held), the panic hook is never set in a forked process (procyon's quiet hook is
/// installed in the client, see below), glibc resets its `malloc` locks, and between
/// `fork` and its own set-up the scheduler takes no other lock; workers are forked by the
/// single-threaded scheduler. What stays hazardous: a task that takes a lock of the
/// client's (a `Mutex` in a static, a logger) that some client thread held at the moment
/// of the build waits for it forever.
///
/// Panics in the pool's processes are caught at the task boundary and become errors; to
/// keep them off stderr, the first build installs a panic hook in the client that is quiet
/// inside pool processes and calls the hook it replaced everywhere else. A hook the
/// program sets later replaces it, and then also runs for a task's panic in a worker.
///
/// The scheduler and the workers die with their parent (`PR_SET_PDEATHSIG`): Linux sends
/// that signal when the *thread* that forked ends, so build a pool on a thread that
/// outlives it (the main thread, or the thread that also drops it).
pub struct Pool {
    inner: Holder,
    /// The job whose task this handle runs in (a `Ctx`'s pool), `None` for the client.
    pub(crate) parent: Option<JobId>,
    /// Time limit of the jobs submitted through this handle (see [`Pool::with_timeout`]).
    timeout: Option<Duration>,
}

pub(crate) struct PoolInner {
    pub(crate) mempool: Mempool,
    pub(crate) control: Control,
    /// Keeps the control block allocated (`None` in the copies inside workers).
    _control_block: Option<Block>,
    sched_tx: Sender<SchedMsg>,
    _sched_box: Camlbox,
    /// Wakes the futures of awaited handles and streams (one thread for all of them).
    pub(crate) waiter: Arc<waiter::Waiter>,
    scheduler: start::SchedulerProc,
    owner_pid: i32,
    pub(crate) config: PoolBuilder,
}

/// How a [`Pool`] handle holds the pool's state.
#[derive(Clone)]
enum Holder {
    /// A handle of the client's (or of an explicit process's): one count of the state.
    Counted(Arc<PoolInner>),
    /// A task's context inside a worker: the worker's own count, borrowed. The worker
    /// leaks its setup when it starts (`worker::run`), so that count lives as
    /// long as the process, and the context of each nested job or join a task starts
    /// costs no atomic read-modify-write to make and to drop.
    Worker(&'static Arc<PoolInner>),
}

impl Holder {
    fn arc(&self) -> &Arc<PoolInner> {
        match self {
            Holder::Counted(arc) => arc,
            Holder::Worker(arc) => arc,
        }
    }
}

impl std::ops::Deref for Holder {
    type Target = PoolInner;

    fn deref(&self) -> &PoolInner {
        self.arc()
    }
}

/// Spin budget of a waiting client when the workers occupy every CPU.
const SHARED_CPU_WAITER_SPIN: Duration = Duration::from_micros(5);

impl Pool {
    /// A builder with the defaults (one worker per CPU, half of RAM as mempool).
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
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// A pool with the default configuration.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::new()?; // one worker per CPU
    /// assert_eq!(pool.workers(), num_cpus::get());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn new() -> Result<Pool> {
        PoolBuilder::default().build()
    }

    fn build(config: PoolBuilder) -> Result<Pool> {
        config.validate()?;
        let backing = start::backing(config.start_mode);
        let size = config
            .mempool_size
            .unwrap_or_else(Mempool::default_capacity);
        let max = config
            .mempool_max
            .unwrap_or_else(|| Mempool::growth_limit(size));
        let mempool = Mempool::create(size, max, backing)?;
        if let Some(bytes) = config.mempool_retention {
            mempool.set_retention(bytes)?;
        }
        let n = config.workers;
        let control_block = mempool.alloc_zeroed(Control::size(n), 64)?;
        // SAFETY: the block is `Control::size(n)` zeroed bytes, 64-aligned, and kept
        // alive by `_control_block` for as long as the pool (and every view) exists.
        let control = unsafe {
            Control::new(
                control_block.as_ptr(),
                mempool.base(),
                mempool.capacity(),
                n,
            )
        };
        let sched_box = Camlbox::create(config.inbox_slots, config.slot_size, backing)?;
        let sched_tx = sched_box.sender();
        let client_pid = process::getpid();
        let setup = SchedulerSetup {
            mempool: mempool.clone(),
            control,
            inbox: sched_box.clone(),
            client_pid,
            parent_pid: client_pid,
            config: config.clone(),
        };
        let control_offset = control_block.as_ptr() as usize - mempool.base_addr();
        let scheduler = start::start_scheduler(setup, control_offset)?;
        let pool = Pool {
            parent: None,
            timeout: config.job_timeout,
            inner: Holder::Counted(Arc::new(PoolInner {
                mempool,
                control,
                _control_block: Some(control_block),
                sched_tx,
                _sched_box: sched_box,
                waiter: waiter::Waiter::new(control, scheduler.pid()),
                scheduler,
                owner_pid: client_pid,
                config,
            })),
        };
        pool.wait_ready()?;
        Ok(pool)
    }

    fn wait_ready(&self) -> Result<()> {
        let inner = &self.inner;
        let header = inner.control.header();
        let n = inner.config.workers as u32;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let step = (Instant::now() + Duration::from_millis(50)).min(deadline);
            let ready = header
                .ready_event
                .wait_until(inner.config.spin, Some(step), || {
                    (header.started.load(Ordering::SeqCst) >= n).then_some(())
                });
            if ready.is_some() {
                return Ok(());
            }
            if !inner.scheduler_alive() {
                return Err(Error::PoolShutDown {
                    reason: "the scheduler died while starting".into(),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::PoolShutDown {
                    reason: "workers did not start within 10 s".into(),
                });
            }
        }
    }

    /// Number of worker processes.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// assert_eq!(pool.workers(), 2);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn workers(&self) -> usize {
        self.inner.config.workers
    }

    /// The pool's mempool, where shared arrays live.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let before = pool.mempool().usage().in_use;
    /// let a = pool.array_zeroed::<u8>(1 << 20)?;
    /// assert!(pool.mempool().usage().in_use >= before + (1 << 20));
    /// drop(a);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn mempool(&self) -> &Mempool {
        &self.inner.mempool
    }

    /// Pids of the scheduler and the current workers (for monitoring and tests); 0 for a
    /// worker index whose process died and has not been replaced yet.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let (scheduler, workers) = pool.pids();
    /// assert!(scheduler > 0);
    /// assert_eq!(workers.len(), 2);
    /// assert!(workers.iter().all(|&pid| pid > 0 && pid != scheduler));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn pids(&self) -> (i32, Vec<i32>) {
        let c = &self.inner.control;
        (
            self.inner.scheduler.pid(),
            (0..c.workers())
                .map(|w| c.worker(w).pid.load(Ordering::SeqCst))
                .collect(),
        )
    }

    /// Jobs in flight: submitted (by any process of the pool, nested jobs included) and
    /// not yet collected. For monitoring, and to check that nothing is left behind. A
    /// job whose handle was dropped (or timed out) while its workers were still inside
    /// counts until the scheduler has freed it, moments after they left.
    ///
    /// There is no fixed cap below [`Error::TooManyJobs`]'s 65,536: the job table grows
    /// in the mempool as needed (a few hundred bytes per job slot, kept for reuse).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let handles = (0..3u64)
    ///     .map(|_| pool.spawn(|_ctx: &procyon::Ctx| 1u64))
    ///     .collect::<procyon::Result<Vec<_>>>()?;
    /// assert!(pool.jobs_in_flight() <= 3);
    /// let total: u64 = handles.into_iter().map(|h| h.wait()).sum::<procyon::Result<u64>>()?;
    /// assert_eq!(total, 3);
    /// assert_eq!(pool.jobs_in_flight(), 0);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn jobs_in_flight(&self) -> usize {
        let c = &self.inner.control;
        (0..c.slot_count())
            .filter(|&i| !c.slot(i).state().is_reusable())
            .count()
    }

    pub(crate) fn inner(&self) -> &Arc<PoolInner> {
        self.inner.arc()
    }

    /// Checks that `arr` lives in this pool's mempool.
    pub(crate) fn check_array<T: bytemuck::Pod>(&self, arr: &crate::SharedArray<T>) -> Result<()> {
        if arr.pool_id() != self.inner.mempool.id() && !arr.is_empty() {
            return Err(Error::descriptor(format!(
                "the array belongs to mempool {:#x}, not to this pool's ({:#x}): create it with this pool",
                arr.pool_id(),
                self.inner.mempool.id()
            )));
        }
        Ok(())
    }

    /// Submits a job of kind `K`, as a child of `self.parent` when inside a task.
    pub(crate) fn submit<K: JobKind>(
        &self,
        args: &K::Args,
        n: usize,
        chunking: Chunking,
    ) -> Result<handle::Submitted> {
        self.submit_started::<K>(args, n, chunking, Start::Fresh)
    }

    /// Submits a job of kind `K`, as a child of `self.parent`, started as `start` says,
    /// with this handle's time limit.
    fn submit_started<K: JobKind>(
        &self,
        args: &K::Args,
        n: usize,
        chunking: Chunking,
        start: Start,
    ) -> Result<handle::Submitted> {
        let mut sub = self
            .inner()
            .submit_from::<K>(args, n, chunking, self.parent, start)?;
        sub.timeout = self.timeout;
        Ok(sub)
    }

    /// Submits a nested job for the hungry worker of `feed` (`jobs::run_set`, "Hungry
    /// workers"): open to every worker at once rather than lazy, and that worker told.
    /// Items `0..from` count as run: the submitting task ran them inline
    /// (`worker::run_inline`) until a worker got hungry (`from == 0`: one was already).
    pub(crate) fn submit_open<K: JobKind>(
        &self,
        args: &K::Args,
        n: usize,
        chunking: Chunking,
        from: usize,
        feed: Feed,
    ) -> Result<handle::Submitted> {
        debug_assert!(self.parent.is_some());
        let sub = self.submit_started::<K>(args, n, chunking, Start::Open { from })?;
        // The job is in the run set: the hungry worker's next scan finds it.
        self.inner.control.feed(feed);
        Ok(sub)
    }

    /// Whether a nested job started through this handle may run inline in the calling
    /// task's worker (`worker::run_inline`): the handle is a task's (`Ctx`'s) and sets no
    /// time limit (a limited wait runs nothing itself).
    pub(crate) fn may_run_inline(&self) -> bool {
        self.parent.is_some() && self.timeout.is_none()
    }

    /// A handle to the same pool whose jobs (every `par_map`, `par_chunks_mut`,
    /// `par_map_vec`, iterator terminal and `spawn` started through it) fail with
    /// [`Error::Timeout`] if they run longer than `limit`; their workers are then
    /// stopped as by a cancel. Inside a task (`ctx.with_timeout(..)`) it bounds the
    /// nested jobs. The pool-wide default is [`PoolBuilder::job_timeout`], for the
    /// jobs a client (or an explicit process) starts; a nested job is bounded by its
    /// root's limit unless given one of its own. A parallel iterator's own
    /// [`timeout`](crate::ParIter::timeout) takes precedence.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let x = pool.array_from_fn(4, |i| i as u64)?;
    /// let forever = |v: u64| loop { if v == u64::MAX { return v; } std::hint::spin_loop() };
    /// let r = pool.with_timeout(Duration::from_millis(100)).par_map(&x, forever);
    /// assert!(matches!(r, Err(procyon::Error::Timeout { .. })));
    /// // The pool itself has no limit, and serves on.
    /// assert_eq!(pool.par_map(&x, |v: u64| v + 1)?[3], 4);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn with_timeout(&self, limit: Duration) -> Pool {
        Pool {
            inner: self.inner.clone(),
            parent: self.parent,
            timeout: Some(limit),
        }
    }

    /// A pool handle for an explicit process: its jobs are top-level jobs it owns.
    pub(crate) fn in_process(inner: Arc<PoolInner>) -> Pool {
        let timeout = inner.config.job_timeout;
        Pool {
            inner: Holder::Counted(inner),
            parent: None,
            timeout,
        }
    }

    /// A pool handle for code running inside job `parent` in a worker.
    ///
    /// Its nested jobs have no limit of their own unless the task sets one
    /// (`ctx.with_timeout`, `ParIter::timeout`): the pool-wide default
    /// ([`PoolBuilder::job_timeout`]) already bounds the whole tree through its root,
    /// which started earlier and so always runs out first. Giving every nested job that
    /// same limit would add no bound but would turn each nested wait into a bounded one,
    /// which runs none of the sub-tree itself and needs a spare worker per level: a
    /// depth-3 tree on one worker (one spare) then waited out the full limit.
    pub(crate) fn in_worker(inner: &'static Arc<PoolInner>, parent: JobId) -> Pool {
        Pool {
            inner: Holder::Worker(inner),
            parent: Some(parent),
            timeout: None,
        }
    }
}

thread_local! {
    /// The job slot this thread retired last (`Submitted::release`), tried first by its
    /// next submission.
    pub(crate) static LAST_RETIRED: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// How a submitted job starts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Start {
    /// At item 0; a nested job lazy (`jobs::slot`, "Lazy nested jobs").
    Fresh,
    /// Open to every worker at once, items `0..from` counted as run by the submitting
    /// task (a nested job a hungry worker waits for; `from > 0`: the rest of an inline
    /// run, `worker::run_inline`, never striped).
    Open { from: usize },
}

/// Chunking of one job.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunking {
    pub(crate) min_len: usize,
    pub(crate) max_len: usize,
}

impl PoolInner {
    /// The copy of the client's pool state a worker uses to start nested jobs. It never
    /// tears anything down (its `owner_pid` is the client's).
    pub(crate) fn for_worker(setup: &SchedulerSetup, scheduler_pid: i32) -> PoolInner {
        PoolInner {
            mempool: setup.mempool.clone(),
            control: setup.control,
            _control_block: None,
            sched_tx: setup.inbox.sender(),
            _sched_box: setup.inbox.clone(),
            waiter: waiter::Waiter::new(setup.control, scheduler_pid),
            scheduler: start::SchedulerProc::Child(scheduler_pid),
            owner_pid: setup.client_pid,
            config: setup.config.clone(),
        }
    }

    pub(crate) fn default_chunking(&self) -> Chunking {
        Chunking {
            min_len: self.config.min_len,
            max_len: self.config.max_len,
        }
    }

    pub(crate) fn scheduler_alive(&self) -> bool {
        self.control.header().closed.load(Ordering::SeqCst) == 0 && self.scheduler.alive()
    }

    /// Submits a job of kind `K` over `n` items and tells the workers about it, started
    /// as `start` says.
    pub(crate) fn submit_from<K: JobKind>(
        self: &Arc<Self>,
        args: &K::Args,
        n: usize,
        chunking: Chunking,
        parent: Option<JobId>,
        start: Start,
    ) -> Result<handle::Submitted> {
        let (from, open) = match start {
            Start::Fresh => (0, false),
            Start::Open { from } => (from, true),
        };
        if chunking.min_len == 0 || chunking.max_len == 0 {
            return Err(Error::config(
                "chunk size 0: with_min_len / with_max_len need at least 1",
            ));
        }
        // The cheap check only: waits notice a dead scheduler within their liveness step.
        if self.control.header().closed.load(Ordering::Relaxed) != 0 {
            return Err(Error::PoolShutDown {
                reason: "the scheduler has shut down".into(),
            });
        }
        let malformed = |e: bincode::Error| Error::Malformed {
            reason: e.to_string(),
        };
        let args_len = bincode::serialized_size(args).map_err(malformed)? as usize;
        // The arguments, then one partial-results cell per worker row (spares included).
        let table_at = args_len.next_multiple_of(CELL_SIZE);
        let table_len = self.control.entries() * CELL_SIZE;
        // A job of many small chunks claims them from per-worker stripes (`jobs::stripes`).
        let stripe_count = if from > 0 {
            // The rest of an inline run: its task ran it as one counter would hand it
            // out (`worker::run_inline` runs only jobs that have no stripes).
            0
        } else {
            stripes::stripes_for(
                n as u64,
                chunking.max_len.min(u64::MAX as usize) as u64,
                self.config.workers as u64,
            )
        };
        let stripes_at = (table_at + table_len).next_multiple_of(STRIPE_SIZE);
        let total = if stripe_count > 0 {
            stripes_at + stripe_count * STRIPE_SIZE
        } else {
            table_at + table_len
        };
        // A small job's arguments and table fit in its header's inline area: nothing to
        // allocate, nothing to free. A larger one gets an argument block.
        // Only the `args_len` bytes the encoding fills are zeroed (a whole 512-byte
        // buffer cleared per submission showed in a small nested job's profile).
        let mut staged = [MaybeUninit::<u8>::uninit(); INLINE_BYTES];
        let block = if total <= INLINE_BYTES {
            let bytes = &mut staged[..args_len];
            bytes.fill(MaybeUninit::new(0));
            // SAFETY: every byte of `bytes` was just initialized; `MaybeUninit<u8>` has
            // the layout of `u8`.
            let bytes = unsafe { &mut *(bytes as *mut [MaybeUninit<u8>] as *mut [u8]) };
            crate::codec::encode_into(bytes, args).map_err(malformed)?;
            None
        } else {
            let block = self.mempool.alloc_zeroed(total, 64)?;
            // SAFETY: the block is ours and at least `args_len` bytes; nobody else sees
            // it yet.
            let buf = unsafe { std::slice::from_raw_parts_mut(block.as_ptr(), args_len) };
            crate::codec::encode_into(buf, args).map_err(malformed)?;
            Some(block)
        };
        let (slot_index, gen) = self.claim_slot()?;
        let slot = self.control.slot(slot_index);
        let id = JobId {
            slot: slot_index as u32,
            gen,
        };
        // Relaxed stores: published by `publish` (Release), see `job`'s module docs.
        let base = match &block {
            Some(b) => {
                slot.args.store(b.raw());
                b.offset()
            }
            None => {
                // SAFETY: the first `args_len` bytes were initialized above.
                let bytes =
                    unsafe { std::slice::from_raw_parts(staged.as_ptr() as *const u8, args_len) };
                slot.write_inline(bytes);
                slot.zero_inline(table_at, table_len);
                slot.inline_offset(&self.mempool)
            }
        };
        slot.entry.store(
            crate::kind::encode_entry(entry::<K>) as _,
            Ordering::Relaxed,
        );
        slot.n_items.store(n as u64, Ordering::Relaxed);
        slot.min_len
            .store(chunking.min_len as u64, Ordering::Relaxed);
        slot.max_len.store(
            chunking.max_len.min(u64::MAX as usize) as u64,
            Ordering::Relaxed,
        );
        slot.workers
            .store(self.config.workers as u64, Ordering::Relaxed);
        slot.args_at.store(base, Ordering::Relaxed);
        slot.args_len.store(args_len as u64, Ordering::Relaxed);
        let table = base + table_at as u64;
        slot.table.store(table, Ordering::Relaxed);
        if stripe_count > 0 {
            slot.stripes
                .store(base + stripes_at as u64, Ordering::Relaxed);
            slot.stripe_count
                .store(stripe_count as u64, Ordering::Relaxed);
            match self.control.stripes_of(slot) {
                Ok(Some(st)) => stripes::init(st, n as u64),
                // Cannot happen for the layout just written; claim through `next` then.
                _ => slot.stripes.store(0, Ordering::Relaxed),
            }
        }
        slot.parent
            .store(parent.map_or(NO_PARENT, JobId::pack), Ordering::Relaxed);
        let root = parent.and_then(|p| self.control.job_root(p)).unwrap_or(gen);
        slot.root.store(root, Ordering::Relaxed);
        slot.owner
            .store(process::cached_pid() as u64, Ordering::Relaxed);
        if from > 0 {
            slot.start_at(from as u64);
        }
        if let Some(p) = parent {
            // A nested job starts lazy (`jobs::slot`, "Lazy nested jobs"): we run it
            // ourselves first; but one a hungry worker waits for is open at once. Its
            // parent, whose task starts it, is an inner node of a tree from now on:
            // worth sharing at once.
            if !open {
                slot.make_lazy();
            }
            let parent_slot = self.control.slot(p.slot as usize);
            if parent_slot.holds(p.gen) {
                parent_slot.open(&self.control.header().work);
            }
        }
        slot.publish();
        if n == 0 {
            slot.complete_empty(&self.control.header().ended);
        } else {
            self.control.make_runnable(slot_index);
        }
        Ok(handle::Submitted {
            pool: Arc::clone(self),
            id,
            args: block,
            table,
            live: true,
            timeout: None,
            detachable: !K::BORROWS,
            waiting: if parent.is_some() {
                handle::Waiting::Help
            } else {
                handle::Waiting::Sleep
            },
            own_ran: false,
            cells_taken: std::cell::Cell::new(false),
        })
    }

    /// Finds a free job slot, growing the job table when every slot is in flight.
    ///
    /// Never waits: the table grows in the mempool up to [`MAX_JOBS`] jobs in flight;
    /// past that (or when the mempool cannot hold another segment) the caller gets the
    /// error at once.
    fn claim_slot(&self) -> Result<(usize, u64)> {
        let header = self.control.header();
        // The slot this thread retired last first: its header is likely still in this
        // CPU's cache, and no other process's scan starts there.
        if let Some(i) = LAST_RETIRED.with(|l| l.take()) {
            if let Some(slot) = self.control.try_slot(i) {
                if slot.state().is_reusable() && !slot.is_pinned() {
                    if let Some(gen) = slot.try_claim(self.control.next_gen()) {
                        return Ok((i, gen));
                    }
                }
            }
        }
        loop {
            let count = self.control.slot_count();
            let start = header.slot_hint.fetch_add(1, Ordering::Relaxed) as usize;
            for k in 0..count {
                let i = (start + k) % count;
                let slot = self.control.slot(i);
                if slot.state().is_reusable() && !slot.is_pinned() {
                    if let Some(gen) = slot.try_claim(self.control.next_gen()) {
                        return Ok((i, gen));
                    }
                }
            }
            if !self.control.grow(&self.mempool, count / SEGMENT_SLOTS)? {
                return Err(Error::TooManyJobs { limit: MAX_JOBS });
            }
        }
    }

    /// How long a process waiting for a job spins before it sleeps: the configured
    /// budget while a CPU is left over for the waiter, otherwise only a few microseconds
    /// (a tiny job still comes back within them). When there are no more CPUs than
    /// workers, every microsecond spun is taken from a worker that shares the waiter's
    /// CPU: with the full 50 us, W3 (100,000 tiny items) took 94 us, with 5 us 50 us.
    pub(crate) fn waiter_spin(&self) -> Duration {
        if self.config.workers < crate::sys::process::cpus() {
            self.config.spin
        } else {
            self.config.spin.min(SHARED_CPU_WAITER_SPIN)
        }
    }

    /// Sends `msg` to the scheduler if its inbox has room, without waiting (for hints
    /// the scheduler also finds on its own within a liveness period).
    pub(crate) fn nudge_scheduler(&self, msg: SchedMsg) {
        let _ = self.sched_tx.try_send(&msg);
    }

    pub(crate) fn send_scheduler(&self, msg: SchedMsg) -> Result<()> {
        self.sched_tx.send_timeout(&msg, Duration::from_millis(500))
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        if process::getpid() != self.owner_pid {
            // A forked copy (scheduler or worker) never tears the pool down.
            return;
        }
        // Before the mempool goes: the waiter thread reads the control block.
        self.waiter.stop();
        let _ = self
            .sched_tx
            .send_timeout(&SchedMsg::Shutdown, Duration::from_millis(100));
        self.scheduler.end_within(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_client_spins_briefly_when_workers_fill_the_cpus() {
        let cpus = crate::sys::process::cpus();
        let pool = Pool::builder()
            .workers(cpus)
            .mempool_size(8 << 20)
            .build()
            .unwrap();
        assert_eq!(pool.inner().waiter_spin(), SHARED_CPU_WAITER_SPIN);
        let custom = Pool::builder()
            .workers(cpus)
            .spin(Duration::from_micros(2))
            .mempool_size(8 << 20)
            .build()
            .unwrap();
        assert_eq!(custom.inner().waiter_spin(), Duration::from_micros(2));
        if cpus > 1 {
            let spare = Pool::builder()
                .workers(cpus - 1)
                .mempool_size(8 << 20)
                .build()
                .unwrap();
            assert_eq!(spare.inner().waiter_spin(), crate::futex::DEFAULT_SPIN);
        }
    }
}
