//! The client side of a pool: build it, submit jobs, wait for them, shut it down.

mod builder;
mod handle;
pub(crate) mod shared;
mod start;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use builder::{PoolBuilder, StartMode};
pub use handle::JobHandle;
pub(crate) use handle::{ProgressFn, ReportFn};

use crate::camlbox::{Camlbox, Sender};
use crate::job::{JobId, SlotState, NO_PARENT};
use crate::kind::{entry, JobKind};
use crate::mempool::{Block, Mempool};
use crate::scheduler::{SchedMsg, SchedulerSetup};
use crate::sys::process;
use crate::worker::WorkerMsg;
use crate::{Error, Result};
use shared::{Control, JOB_SLOTS};

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
    inner: Arc<PoolInner>,
    /// The job whose task this handle runs in (a `Ctx`'s pool), `None` for the client.
    pub(crate) parent: Option<JobId>,
}

pub(crate) struct PoolInner {
    pub(crate) mempool: Mempool,
    pub(crate) control: Control,
    /// Keeps the control block allocated (`None` in the copies inside workers).
    _control_block: Option<Block>,
    pub(crate) worker_tx: Vec<Sender<WorkerMsg>>,
    sched_tx: Sender<SchedMsg>,
    _boxes: Vec<Camlbox>,
    scheduler: start::SchedulerProc,
    owner_pid: i32,
    pub(crate) config: PoolBuilder,
}

/// Spin budget of a waiting client when the workers occupy every CPU.
const SHARED_CPU_WAITER_SPIN: Duration = Duration::from_micros(5);

impl Pool {
    /// A builder with the defaults (one worker per CPU, half of RAM as mempool).
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// A pool with the default configuration.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new() -> Result<Pool> {
        PoolBuilder::default().build()
    }

    fn build(config: PoolBuilder) -> Result<Pool> {
        config.validate()?;
        let backing = start::backing(config.start_mode);
        let size = config
            .mempool_size
            .unwrap_or_else(Mempool::default_capacity);
        let mempool = Mempool::create(size, backing)?;
        let n = config.workers;
        let control_block = mempool.alloc_zeroed(Control::size(n), 64)?;
        // SAFETY: the block is `Control::size(n)` zeroed bytes, 64-aligned, and kept
        // alive by `_control_block` for as long as the pool (and every view) exists.
        let control = unsafe { Control::new(control_block.as_ptr(), n) };
        let sched_box = Camlbox::create(config.inbox_slots, config.slot_size, backing)?;
        let worker_boxes = (0..n)
            .map(|_| Camlbox::create(config.inbox_slots, config.slot_size, backing))
            .collect::<Result<Vec<_>>>()?;
        let worker_tx = worker_boxes.iter().map(|b| b.sender()).collect();
        let sched_tx = sched_box.sender();
        let client_pid = process::getpid();
        let setup = SchedulerSetup {
            mempool: mempool.clone(),
            control,
            inbox: sched_box.clone(),
            worker_inboxes: worker_boxes.clone(),
            client_pid,
            parent_pid: client_pid,
            config: config.clone(),
        };
        let control_offset = control_block.as_ptr() as usize - mempool.base_addr();
        let scheduler = start::start_scheduler(setup, control_offset)?;
        let mut boxes = worker_boxes;
        boxes.push(sched_box);
        let pool = Pool {
            parent: None,
            inner: Arc::new(PoolInner {
                mempool,
                control,
                _control_block: Some(control_block),
                worker_tx,
                sched_tx,
                _boxes: boxes,
                scheduler,
                owner_pid: client_pid,
                config,
            }),
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
    pub fn workers(&self) -> usize {
        self.inner.config.workers
    }

    /// The pool's mempool, where shared arrays live.
    pub fn mempool(&self) -> &Mempool {
        &self.inner.mempool
    }

    /// Pids of the scheduler and the current workers (for monitoring and tests); 0 for a
    /// worker index whose process died and has not been replaced yet.
    pub fn pids(&self) -> (i32, Vec<i32>) {
        let c = &self.inner.control;
        (
            self.inner.scheduler.pid(),
            (0..c.workers())
                .map(|w| c.worker(w).pid.load(Ordering::SeqCst))
                .collect(),
        )
    }

    pub(crate) fn inner(&self) -> &Arc<PoolInner> {
        &self.inner
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
        self.inner.submit::<K>(args, n, chunking, self.parent)
    }

    /// A pool handle for code running inside job `parent` in a worker.
    pub(crate) fn in_worker(inner: Arc<PoolInner>, parent: JobId) -> Pool {
        Pool {
            inner,
            parent: Some(parent),
        }
    }
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
        let mut boxes = setup.worker_inboxes.clone();
        boxes.push(setup.inbox.clone());
        PoolInner {
            mempool: setup.mempool.clone(),
            control: setup.control,
            _control_block: None,
            worker_tx: setup.worker_inboxes.iter().map(|b| b.sender()).collect(),
            sched_tx: setup.inbox.sender(),
            _boxes: boxes,
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

    /// Submits a job of kind `K` over `n` items and tells the workers about it.
    pub(crate) fn submit<K: JobKind>(
        self: &Arc<Self>,
        args: &K::Args,
        n: usize,
        chunking: Chunking,
        parent: Option<JobId>,
    ) -> Result<handle::Submitted> {
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
        let args_len = bincode::serialized_size(args).map_err(|e| Error::Malformed {
            reason: e.to_string(),
        })? as usize;
        let table_at = args_len.next_multiple_of(8);
        // One `[offset, len, gen]` triple per worker for its partial results.
        let table_len = self.config.workers * 24;
        let block = self
            .mempool
            .alloc_zeroed((table_at + table_len).max(1), 64)?;
        // SAFETY: the block is ours and at least `args_len` bytes; nobody else sees it yet.
        let buf = unsafe { std::slice::from_raw_parts_mut(block.as_ptr(), args_len) };
        bincode::serialize_into(&mut &mut buf[..], args).map_err(|e| Error::Malformed {
            reason: e.to_string(),
        })?;
        let (slot_index, gen) = self.claim_slot()?;
        let slot = self.control.slot(slot_index);
        let id = JobId {
            slot: slot_index as u32,
            gen,
        };
        // Relaxed stores: published by `publish` (Release), see `job`'s module docs.
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
        slot.args[0].store(block.offset(), Ordering::Relaxed);
        slot.args[1].store(args_len as u64, Ordering::Relaxed);
        slot.args[2].store(block.generation(), Ordering::Relaxed);
        slot.table
            .store(block.offset() + table_at as u64, Ordering::Relaxed);
        slot.parent
            .store(parent.map_or(NO_PARENT, JobId::pack), Ordering::Relaxed);
        let root = parent.and_then(|p| self.control.job_root(p)).unwrap_or(gen);
        slot.root.store(root, Ordering::Relaxed);
        slot.owner
            .store(process::cached_pid() as u64, Ordering::Relaxed);
        slot.publish();
        if n == 0 {
            slot.complete_empty();
        } else {
            self.notify_workers(id, n.div_ceil(chunking.min_len));
        }
        Ok(handle::Submitted {
            pool: Arc::clone(self),
            id,
            args: Some(block),
            table_at,
        })
    }

    /// Tells up to `max` workers about job `id` (not the calling worker, which runs its
    /// own nested jobs directly).
    ///
    /// A notice may be dropped when a worker's inbox is full (that worker is busy; the
    /// others take the chunks), but a job submitted by a client must reach at least one
    /// worker, or nobody would ever run it: if every inbox was full, the client waits for
    /// room in one of them. A worker never waits here (two workers each waiting for room
    /// in the other's inbox would never drain them); it runs its job itself.
    /// If the scheduler dies meanwhile, the caller's wait reports it.
    fn notify_workers(&self, id: JobId, max: usize) {
        let me = crate::worker::current_index();
        let msg = WorkerMsg::Job(id);
        let targets = || {
            self.worker_tx
                .iter()
                .enumerate()
                .filter(move |(w, _)| Some(*w) != me)
                .map(|(_, tx)| tx)
                .take(max.max(1))
        };
        // A dead worker's box still queues the notice for its replacement.
        let delivered = targets().filter(|tx| tx.try_send(&msg).is_ok()).count();
        if delivered > 0 || me.is_some() {
            return;
        }
        let slot = self.control.slot(id.slot as usize);
        for tx in targets().cycle() {
            let sent = tx.send_timeout(&msg, Duration::from_millis(10)).is_ok();
            if sent || !slot.is_active_job(id.gen) || !self.scheduler_alive() {
                return;
            }
        }
    }

    /// Finds a reusable job slot, waiting if all are in flight.
    fn claim_slot(&self) -> Result<(usize, u64)> {
        let header = self.control.header();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let start = header.slot_hint.fetch_add(1, Ordering::Relaxed) as usize;
            for k in 0..JOB_SLOTS {
                let i = (start + k) % JOB_SLOTS;
                let slot = self.control.slot(i);
                if matches!(slot.state(), SlotState::Free | SlotState::Retired) && !slot.is_pinned()
                {
                    if let Some(gen) = slot.try_claim(self.control.next_gen()) {
                        return Ok((i, gen));
                    }
                }
            }
            if Instant::now() >= deadline || !self.scheduler_alive() {
                return Err(Error::PoolShutDown {
                    reason: format!("all {JOB_SLOTS} job slots stayed busy"),
                });
            }
            header.slot_event.wait_until(
                Duration::ZERO,
                Some(Instant::now() + Duration::from_millis(10)),
                || None::<()>,
            );
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
