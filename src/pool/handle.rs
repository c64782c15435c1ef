//! Waiting for a job: the raw `Submitted` record and the typed `JobHandle`.
//!
//! A handle waits on the job's event (spin, then futex), waking at least every
//! [`POLL_PERIOD`] while it has progress or report callbacks to feed, and every
//! `LIVENESS_STEP` to check that the scheduler is alive. Inside a worker (a nested job)
//! it does not sleep: it works on its own sub-tree (`worker::help_until`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::jobs::partials::{Kept, Partial, PartialCell, Partials};
use crate::jobs::{FailOutcome, Failure, JobId, JobSlot, SlotState};
use crate::kind::JobKind;
use crate::mempool::Block;
use crate::pool::PoolInner;
use crate::progress::{discard_reports, Progress, ReportInbox, POLL_PERIOD};
use crate::scheduler::SchedMsg;

/// A job that was submitted and not yet collected. Dropping it without collecting
/// cancels the job and releases its slot once no worker is inside.
pub(crate) struct Submitted {
    pub(crate) pool: Arc<PoolInner>,
    pub(crate) id: JobId,
    /// The argument block (`None`: the arguments and table sit in the job header).
    pub(crate) args: Option<Block>,
    /// Mempool offset of the partial-results table.
    pub(crate) table: u64,
    /// Not yet released or handed over to the scheduler.
    pub(crate) live: bool,
    /// Time limit the submitting pool handle gives its jobs.
    pub(crate) timeout: Option<Duration>,
    /// The job borrows nothing of the owner's (`JobKind::BORROWS` is false): the owner
    /// may stop waiting before its workers have left, handing the clean-up over.
    pub(crate) detachable: bool,
    /// How to wait for it (help in a worker, sleep in a client).
    pub(crate) waiting: Waiting,
    /// The submitting task has run the job's chunks itself already
    /// ([`Submitted::run_and_finish`]): its wait need not try again.
    pub(crate) own_ran: bool,
    /// Every cell of the partial-results table has been taken (`partials_with` went
    /// through them all): releasing has none left to look at.
    pub(crate) cells_taken: std::cell::Cell<bool>,
}

/// How the owner of a job waits for it, decided by who submitted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// A client thread: sleep on the job's event (after a brief spin).
    Sleep,
    /// A task in a worker (a nested job): work on the job's sub-tree meanwhile
    /// (`worker::help_until`), so that trees of any depth finish.
    Help,
}

/// How often a waiting client checks that the scheduler is still alive.
const LIVENESS_STEP: Duration = Duration::from_millis(100);
/// Longest a failed job's owner waits for workers to leave its tree before giving up on
/// freeing the tree's memory (the scheduler kills stragglers well before).
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

impl Submitted {
    fn slot(&self) -> &JobSlot {
        self.pool.control.slot(self.id.slot as usize)
    }

    /// The job's outcome if it has ended: COMPLETE, or FAILED with no worker inside.
    fn poll(&self) -> Option<std::result::Result<(), Failure>> {
        let slot = self.slot();
        if !slot.holds(self.id.gen) {
            // Never expected: only the owner (or the scheduler, for a dead owner) retires
            // a slot. Fail loudly rather than read another job's outcome.
            return Some(Err(Failure::Setup {
                message: "the job's slot was reclaimed".into(),
            }));
        }
        match slot.state() {
            SlotState::Complete => Some(Ok(())),
            SlotState::Failed if !slot.is_pinned() => Some(Err(slot.failure())),
            SlotState::Corrupt => Some(Err(Failure::Setup {
                message: "the job's header in shared memory was overwritten (a task wrote \
                          outside its own data); the pool's shared state may be damaged"
                    .into(),
            })),
            _ => None,
        }
    }

    /// Waits until the job ends or `deadline` passes (`None` then), calling `tick`
    /// at least every [`POLL_PERIOD`] if `ticking`.
    fn wait_until(
        &self,
        deadline: Option<Instant>,
        ticking: bool,
        tick: &mut dyn FnMut(),
    ) -> Option<Result<()>> {
        // While feeding callbacks every 10 ms, almost every step ends by its timeout:
        // spinning at the start of each would only burn the CPU the workers need.
        let spin = if ticking {
            Duration::ZERO
        } else {
            self.pool.waiter_spin()
        };
        if self.waiting == Waiting::Help && deadline.is_none() {
            // A nested job: run it here first (it is lazy: nobody else may have started
            // it), and a small one is done before any clock is read.
            if !self.own_ran {
                crate::worker::run_own(self.id);
            }
            if let Some(r) = self.poll() {
                return Some(r.map_err(|f| self.error_of(f)));
            }
        }
        loop {
            let step = Instant::now() + if ticking { POLL_PERIOD } else { LIVENESS_STEP };
            let until = deadline.map_or(step, |d| d.min(step));
            let r = if self.waiting == Waiting::Help {
                crate::worker::help_until(self.id, deadline.is_some(), until, || self.poll())
            } else {
                // Records where this client spins, for the workers' spinning, marks it
                // asleep while it sleeps (a worker beside it may wake it from there,
                // `jobs::watch`), and forgets it when the wait ends (`jobs::cpus`).
                let policy = self.pool.control.client_presence(self.id);
                self.slot().wait(spin, until, policy, || self.poll())
            };
            if let Some(r) = r {
                return Some(r.map_err(|f| self.error_of(f)));
            }
            tick();
            if !self.pool.scheduler_alive() {
                // The scheduler takes the workers down with it: nothing will finish this job,
                // and later submissions fail at once.
                self.pool.control.header().closed.store(1, Ordering::SeqCst);
                return Some(Err(Error::PoolShutDown {
                    reason: "the scheduler process died".into(),
                }));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
        }
    }

    fn error_of(&self, f: Failure) -> Error {
        let job = self.id.number();
        match f {
            Failure::Panicked { message } => Error::TaskPanicked { message, job },
            Failure::WorkerDied {
                pid,
                signal,
                exit_code,
            } => Error::WorkerDied {
                signal,
                exit_code,
                pid,
                job,
            },
            Failure::Cancelled => Error::Cancelled,
            Failure::TimedOut { limit_us } => Error::Timeout {
                job: Some(job),
                limit: Duration::from_micros(limit_us),
            },
            Failure::Setup { message } => Error::InvalidDescriptor { reason: message },
            Failure::OutOfMemory {
                requested,
                available,
                capacity,
            } => Error::OutOfMemory {
                requested: requested as usize,
                available: available as usize,
                capacity: capacity as usize,
            },
        }
    }

    /// Waits for the end of a job nobody watches (no callbacks, no time limit but the
    /// pool handle's), answers with `finish` and releases it: what a [`JobHandle`] does
    /// in `wait`, without building one. A pool handle's time limit goes through the
    /// handle, which enforces it.
    pub(crate) fn wait_and_finish<R: 'static>(
        self,
        finish: impl FnOnce(&Submitted) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if self.timeout.is_some() {
            return JobHandle::new(self, Box::new(finish)).wait();
        }
        self.finish_unwatched(finish)
    }

    /// As [`wait_and_finish`](Submitted::wait_and_finish), for a job of kind `K` with
    /// arguments `args`: a nested job's submitting task (in a worker, no time limit) runs
    /// its chunks first with `args` in hand, and `finish` gets the partials of the chunks
    /// it ran (`worker::run_own_typed`) beside the job, whose cells hold the others'.
    /// `kept` holds the partials of items the task ran before submitting (the rest of an
    /// inline run, `worker::run_inline`; empty otherwise).
    ///
    /// # Safety
    /// The job must have been submitted as kind `K` with arguments `args`.
    pub(crate) unsafe fn run_and_finish<K: JobKind, R: 'static>(
        mut self,
        args: &K::Args,
        kept: Kept<K::Partial>,
        finish: impl FnOnce(&Submitted, Kept<K::Partial>) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if self.timeout.is_some() || self.waiting != Waiting::Help {
            // Only an unbounded nested wait follows an inline run (`Pool::may_run_inline`).
            debug_assert!(kept.merged.is_none() && kept.ordered.is_empty());
            return self.wait_and_finish(|sub| finish(sub, Kept::default()));
        }
        // SAFETY: forwarded: the job is ours, of kind `K`, submitted with `args`.
        let mine = unsafe { crate::worker::run_own_typed::<K>(self.id, args, kept) };
        self.own_ran = true;
        self.finish_unwatched(|sub| finish(sub, mine))
    }

    /// Waits for the end without a time limit, answers with `finish`, releases.
    fn finish_unwatched<R>(mut self, finish: impl FnOnce(&Submitted) -> Result<R>) -> Result<R> {
        let outcome = self.wait_until(None, false, &mut || {}).unwrap_or_else(|| {
            // `wait_until` without a deadline only returns with the job's outcome.
            Err(Error::PoolShutDown {
                reason: "the wait for a job ended before the job".into(),
            })
        });
        let result = outcome.and_then(|()| finish(&self));
        self.release();
        result
    }

    /// Takes the partial results the workers published, in chunk order.
    pub(crate) fn partials<P: DeserializeOwned>(&self) -> Result<Vec<(u64, P)>> {
        Ok(match self.partials_with(Kept::default())? {
            Partials::One(p) => p.map(|p| (0, p)).into_iter().collect(),
            Partials::Listed(list) => list.collect(),
        })
    }

    /// Takes the partial results the workers published and adds them to `mine` (those
    /// the submitting task kept, `run_and_finish`), in chunk order; without building a
    /// list when no cell holds any and `mine` has only an unordered kind's partial.
    pub(crate) fn partials_with<P: DeserializeOwned>(&self, mine: Kept<P>) -> Result<Partials<P>> {
        let mut others: Vec<(u64, P)> = Vec::new();
        for cell in self.cells()? {
            let Some(partial) = cell.take(&self.pool.mempool)? else {
                continue;
            };
            let mut parts: Vec<(u64, P)> = partial.decode(&self.pool.mempool)?;
            if others.is_empty() {
                others = parts;
            } else {
                others.append(&mut parts);
            }
        }
        self.cells_taken.set(true);
        if others.is_empty() && mine.ordered.is_empty() {
            return Ok(Partials::One(mine.merged));
        }
        let mut all = mine.into_list();
        if all.is_empty() {
            all = others;
        } else {
            all.append(&mut others);
        }
        all.sort_by_key(|(start, _)| *start);
        Ok(Partials::Listed(all.into_iter()))
    }

    /// The job's partial-results cells, one per worker row (none once released).
    fn cells(&self) -> Result<&[PartialCell]> {
        if !self.live {
            return Ok(&[]);
        }
        // SAFETY: the table lies inside our argument block or our slot's inline area (laid
        // out with one cell per worker row), which we own and which is alive while `live`.
        unsafe { PartialCell::table(&self.pool.mempool, self.table, self.pool.control.entries()) }
    }

    /// Releases everything the job holds: partial blocks, reports, the argument block,
    /// the slot; after a failure of a top-level job, everything its tree allocated.
    fn release(&mut self) {
        if !self.cells_taken.get() {
            for cell in self.cells().unwrap_or_default() {
                if let Ok(Some(Partial::Block(raw))) = cell.take(&self.pool.mempool) {
                    let _ = self.pool.mempool.free_raw(raw);
                }
            }
        }
        discard_reports(&self.pool.mempool, self.slot());
        let slot = self.slot();
        let failed = slot.state() == SlotState::Failed;
        let root = slot.root.load(Ordering::Relaxed);
        if slot.parent().is_none() && slot.orphans.load(Ordering::SeqCst) > 0 {
            // Jobs of our tree lost their owner to a crash: the scheduler frees what they
            // held; wait for it so the caller sees the memory back (rare, bounded).
            let deadline = Instant::now() + DRAIN_LIMIT;
            while slot.orphans.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        if failed && slot.parent().is_none() {
            // Wait until no worker is inside any job of the tree (cancelled descendants
            // stop at their next chunk, stragglers are killed), then free what the tree
            // allocated and nobody owns any more.
            let deadline = Instant::now() + DRAIN_LIMIT;
            while self.pool.control.tree_busy_except(root, self.id) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
            if !self.pool.control.tree_busy_except(root, self.id) {
                // SAFETY: blocks tagged with the tree's root were allocated by its tasks;
                // the tree has failed and no worker is inside it, and its recorded partials
                // were adopted and freed above, so no live handle owns any of them.
                let _ = unsafe { self.pool.mempool.free_tagged(root) };
            }
        }
        self.args = None;
        self.live = false;
        let slot = self.slot();
        if slot.state().has_ended() {
            self.pool.control.retire(self.id.slot as usize);
            crate::pool::LAST_RETIRED.with(|l| l.set(Some(self.id.slot as usize)));
        }
    }

    /// Fails the job with `failure` (cancel or timeout); the scheduler cancels its
    /// descendants and kills workers still inside after the grace period.
    ///
    /// A job that had already failed (say a worker died) but still has workers inside is
    /// stopped the same way: the request is sent unless the job completed.
    fn abort(&self, failure: Failure) {
        let slot = self.slot();
        if slot.fail(&failure, &self.pool.control.header().ended) == FailOutcome::Recorded
            || slot.state() != SlotState::Complete
        {
            let grace = self.pool.config.cancel_grace.as_millis() as u64;
            let _ = self.pool.send_scheduler(SchedMsg::Cancel {
                job: self.id,
                grace_ms: grace,
            });
        }
    }
}

impl Submitted {
    /// Hands a job that has been failed (cancel, timeout) but may still have workers
    /// inside over to the scheduler, which frees what it holds (its argument block,
    /// partials, reports, and for a top-level job what its tree allocated) once they have
    /// left; `false` (and nothing changed) if the job borrows memory of ours or the
    /// scheduler cannot be told.
    fn detach(&mut self) -> bool {
        if !self.detachable {
            return false;
        }
        if !self.live {
            return true;
        }
        // Relaxed: the scheduler reads it after our message, which synchronizes.
        self.slot().owner.store(0, Ordering::Relaxed);
        let raw = self.args.take().map(Block::into_raw);
        if self
            .pool
            .send_scheduler(SchedMsg::Adopt { job: self.id })
            .is_ok()
        {
            self.live = false;
            return true;
        }
        self.slot()
            .owner
            .store(crate::sys::process::cached_pid() as u64, Ordering::Relaxed);
        if let Some(raw) = raw {
            match self.pool.mempool.adopt(raw) {
                Ok(block) => self.args = Some(block),
                // Cannot happen for our own detached block; the scheduler-less pool is
                // going away with its mempool anyway.
                Err(_) => {
                    self.live = false;
                    return true;
                }
            }
        }
        false
    }
}

impl Drop for Submitted {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        if self.poll().is_none() {
            self.abort(Failure::Cancelled);
            if self.detach() {
                return;
            }
            // Free nothing the workers might still write to: wait for them to leave (the
            // scheduler kills the stragglers after the grace period).
            let _ = self.wait_until(
                Some(Instant::now() + Duration::from_secs(5)),
                false,
                &mut || {},
            );
        }
        if self.poll().is_some() {
            self.release();
        }
    }
}

type Finish<R> = Box<dyn FnOnce(&Submitted) -> Result<R> + Send>;
pub(crate) type ProgressFn = Box<dyn FnMut(Progress) + Send>;
pub(crate) type ReportFn = Box<dyn FnMut(&[u8]) + Send>;

/// A job running in the pool: wait for it, poll it, cancel it, watch its progress, or
/// `.await` it.
///
/// Dropping a handle without waiting cancels the job. For a job that borrows nothing of
/// the caller's (`spawn`, `spawn_with`, the `spawn_*` terminals of ranges) the drop
/// returns at once, also on an async runtime's thread: the scheduler frees what the job
/// held once its worker has left (stopped at its next `is_cancelled` check, or killed
/// after the cancel grace period). A job over borrowed shared arrays (`spawn_map_into`)
/// waits in the drop for its workers to leave, at most about the grace period, since the
/// caller may free the arrays right after. A job [`timeout`](JobHandle::timeout) ends
/// the same way: at once for a job that borrows nothing.
///
/// Awaiting a handle costs no thread of its own: see the `Future` implementation.
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
/// let handle = pool.spawn(|_ctx: &procyon::Ctx| 6 * 7)?;
/// assert_eq!(handle.wait()?, 42);
/// # Ok(()) }
/// ```
#[must_use = "dropping a JobHandle cancels its job"]
pub struct JobHandle<R> {
    sub: Option<Submitted>,
    finish: Option<Finish<R>>,
    on_progress: Option<ProgressFn>,
    on_report: Option<ReportFn>,
    reports: ReportInbox,
    last_progress: Option<Progress>,
    /// When the job's time limit passes, and the limit (for the error).
    deadline: Option<(Instant, Duration)>,
    /// Our registration with the pool's async waiter, if any.
    waiter_key: Option<u64>,
}

impl<R> JobHandle<R> {
    pub(crate) fn new(sub: Submitted, finish: Finish<R>) -> Self {
        let deadline = sub.timeout.map(|t| (Instant::now() + t, t));
        JobHandle {
            sub: Some(sub),
            finish: Some(finish),
            on_progress: None,
            on_report: None,
            reports: ReportInbox::default(),
            last_progress: None,
            deadline,
            waiter_key: None,
        }
    }

    pub(crate) fn with_opts(
        mut self,
        on_progress: Option<ProgressFn>,
        on_report: Option<ReportFn>,
        timeout: Option<Duration>,
    ) -> Self {
        if on_progress.is_some() {
            self.on_progress = on_progress;
        }
        if on_report.is_some() {
            self.on_report = on_report;
        }
        if let Some(t) = timeout {
            self.deadline = Some((Instant::now() + t, t));
        }
        self
    }

    fn sub(&self) -> &Submitted {
        self.sub.as_ref().expect("handle already collected")
    }

    /// Calls `f` with the job's progress while it runs (at most every 10 ms, only when
    /// it changed, monotonic) and once more with the final value when it completes.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::Pool;
    /// use std::sync::{Arc, Mutex};
    ///
    /// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let last = Arc::new(Mutex::new(None));
    /// let sink = Arc::clone(&last);
    /// let doubled = pool
    ///     .par_range(0..10_000u64)
    ///     .map(|v: u64| 2 * v)
    ///     .spawn_collect_vec()?
    ///     .on_progress(move |p| *sink.lock().unwrap() = Some(p))
    ///     .wait()?;
    /// assert_eq!(doubled[4_999], 9_998);
    /// let p = last.lock().unwrap().expect("called at least once, at the end");
    /// assert_eq!((p.items_done, p.items_total), (10_000, 10_000));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn on_progress(mut self, f: impl FnMut(Progress) + Send + 'static) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Calls `f` with every partial result a task sent with `Ctx::report`, in the order
    /// they were reported. Values that do not decode as `T` are skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let lines = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&lines);
    /// pool.spawn(|ctx: &Ctx| {
    ///     ctx.report(&"loaded".to_string()).unwrap();
    ///     ctx.report(&"solved".to_string()).unwrap();
    /// })?
    /// .on_report(move |s: String| sink.lock().unwrap().push(s))
    /// .wait()?;
    /// assert_eq!(*lines.lock().unwrap(), ["loaded", "solved"]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn on_report<T: DeserializeOwned>(mut self, mut f: impl FnMut(T) + Send + 'static) -> Self {
        self.on_report = Some(Box::new(move |bytes: &[u8]| {
            if let Ok(v) = bincode::deserialize::<T>(bytes) {
                f(v);
            }
        }));
        self
    }

    /// Fails the job with [`Error::Timeout`] if it has not ended `timeout` from now
    /// (its workers are stopped like a cancel's).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Error};
    /// use std::time::Duration;
    ///
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let slow = pool
    ///     .spawn(|_: &Ctx| std::thread::sleep(Duration::from_secs(10)))?
    ///     .timeout(Duration::from_millis(50));
    /// assert!(matches!(slow.wait(), Err(Error::Timeout { .. })));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Some((Instant::now() + timeout, timeout));
        self
    }

    /// Blocks until the job ends and returns its result.
    ///
    /// The calling thread spins for a few microseconds, then sleeps. It does not sleep on
    /// a CPU where a worker runs a task of another job (it would be woken there, behind
    /// that task): it takes that CPU out of its CPU mask while it sleeps, and puts the
    /// mask back before this returns (unless something else changed the mask meanwhile).
    /// A thread allowed on one CPU only stays where it is.
    ///
    /// # Errors
    /// [`Error::TaskPanicked`], [`Error::WorkerDied`], [`Error::Cancelled`],
    /// [`Error::Timeout`], [`Error::PoolShutDown`], or an error from collecting the
    /// results.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Error};
    ///
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// assert_eq!(pool.spawn(|_: &Ctx| 6 * 7)?.wait()?, 42);
    /// // A panic in the task is an error value here, and the pool goes on.
    /// let failed = pool.spawn(|_: &Ctx| -> u32 { panic!("bad input") })?.wait();
    /// assert!(matches!(failed, Err(Error::TaskPanicked { .. })));
    /// assert_eq!(pool.spawn(|_: &Ctx| 1)?.wait()?, 1);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn wait(mut self) -> Result<R> {
        self.wait_step(None).unwrap_or_else(|| {
            Err(Error::PoolShutDown {
                reason: "handle already collected".into(),
            })
        })
    }

    /// Like [`wait`](JobHandle::wait), but gives the handle back if the job has not
    /// ended within `timeout` (the job keeps running).
    ///
    /// # Errors
    /// As [`wait`](JobHandle::wait); `Err(handle)` (the outer one) on timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::Ctx;
    /// use std::time::Duration;
    ///
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let mut handle = pool.spawn(|_: &Ctx| {
    ///     std::thread::sleep(Duration::from_millis(100));
    ///     5u32
    /// })?;
    /// let value = loop {
    ///     match handle.wait_timeout(Duration::from_millis(10)) {
    ///         Ok(result) => break result?,
    ///         Err(still_running) => handle = still_running, // e.g. repaint a GUI here
    ///     }
    /// };
    /// assert_eq!(value, 5);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    // The error variant gives the handle back, by value, so the caller can keep waiting.
    #[allow(clippy::result_large_err)]
    pub fn wait_timeout(
        mut self,
        timeout: Duration,
    ) -> std::result::Result<Result<R>, JobHandle<R>> {
        match self.wait_step(Some(Instant::now() + timeout)) {
            Some(r) => Ok(r),
            None => Err(self),
        }
    }

    /// Returns the result if the job has ended, or the handle back.
    ///
    /// # Errors
    /// As [`wait`](JobHandle::wait); `Err(handle)` (the outer one) if still running.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::Ctx;
    /// use std::time::Duration;
    ///
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let mut handle = pool.spawn(|_: &Ctx| 9u8)?;
    /// let value = loop {
    ///     match handle.try_wait() {
    ///         Ok(result) => break result?,
    ///         Err(pending) => {
    ///             handle = pending;
    ///             std::thread::sleep(Duration::from_millis(1));
    ///         }
    ///     }
    /// };
    /// assert_eq!(value, 9);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    // The error variant gives the handle back, by value, so the caller can keep waiting.
    #[allow(clippy::result_large_err)]
    pub fn try_wait(mut self) -> std::result::Result<Result<R>, JobHandle<R>> {
        match self.wait_step(Some(Instant::now())) {
            Some(r) => Ok(r),
            None => Err(self),
        }
    }

    /// Cancels the job and all its descendants; waiting then returns
    /// [`Error::Cancelled`]. Tasks see it at their next chunk or through
    /// `Ctx::is_cancelled`; workers still inside after the pool's grace period are
    /// killed and replaced.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Error};
    /// use std::time::Duration;
    ///
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let handle = pool.spawn(|ctx: &Ctx| {
    ///     // A sub-job of its own, cancelled with its parent.
    ///     ctx.par_range(0..1_000_000usize)
    ///         .for_each(|_: usize| std::thread::sleep(Duration::from_millis(1)))
    ///         .is_ok()
    /// })?;
    /// std::thread::sleep(Duration::from_millis(20));
    /// handle.cancel();
    /// assert!(matches!(handle.wait(), Err(Error::Cancelled)));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn cancel(&self) {
        self.sub().abort(Failure::Cancelled);
    }

    /// A snapshot of the job's progress.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::Pool;
    ///
    /// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let handle = pool.par_range(0..1000u64).spawn_collect_vec()?;
    /// let p = handle.progress(); // a snapshot while (or after) it runs
    /// assert_eq!(p.items_total, 1000);
    /// assert!(p.items_done <= 1000);
    /// assert_eq!(handle.wait()?, (0..1000).collect::<Vec<u64>>());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn progress(&self) -> Progress {
        Progress::of(self.sub().slot())
    }

    /// Feeds the callbacks with whatever is new.
    fn deliver(&mut self, fin: bool) {
        let Some(sub) = self.sub.as_ref() else { return };
        if let Some(f) = self.on_report.as_mut() {
            let mut reports = self.reports.collect(&sub.pool.mempool, sub.slot());
            if fin {
                reports.extend(self.reports.drain());
            }
            for r in reports {
                f(r.bytes());
            }
        }
        if let Some(f) = self.on_progress.as_mut() {
            let p = Progress::of(sub.slot());
            if self.last_progress != Some(p) {
                self.last_progress = Some(p);
                f(p);
            }
        }
    }

    /// Waits until the job ends (`Some(result)`, the handle is then spent) or `until`
    /// passes (`None`; `until == None` waits for the end). Feeds the callbacks every
    /// [`POLL_PERIOD`] meanwhile and enforces the job's timeout.
    fn wait_step(&mut self, until: Option<Instant>) -> Option<Result<R>> {
        let ticking = self.on_progress.is_some() || self.on_report.is_some();
        loop {
            let limit = match (until, self.deadline.map(|(d, _)| d)) {
                (Some(u), Some(d)) => Some(u.min(d)),
                (u, d) => u.or(d),
            };
            let sub = self.sub.take()?;
            let mut tick = || {};
            let outcome = if ticking {
                // Deliver between bounded waits so callbacks run in this thread.
                let step = Instant::now() + POLL_PERIOD;
                sub.wait_until(Some(limit.map_or(step, |l| l.min(step))), true, &mut tick)
            } else {
                sub.wait_until(limit, false, &mut tick)
            };
            self.sub = Some(sub);
            if let Some(outcome) = outcome {
                return Some(self.collect(outcome));
            }
            self.deliver(false);
            let now = Instant::now();
            if let Some((_, limit)) = self.deadline.filter(|&(d, _)| now >= d) {
                self.sub().abort(Failure::TimedOut {
                    limit_us: limit.as_micros().min(u64::MAX as u128) as u64,
                });
                self.deadline = None;
                if self.sub().detachable {
                    // Nothing of ours is borrowed: answer now, the scheduler cleans up.
                    self.deliver(true);
                    let job = self.sub().id.number();
                    let mut sub = self.sub.take().expect("checked above");
                    self.finish = None;
                    if !sub.detach() {
                        self.sub = Some(sub);
                        continue;
                    }
                    return Some(Err(Error::Timeout {
                        job: Some(job),
                        limit,
                    }));
                }
            }
            if until.is_some_and(|u| now >= u) {
                return None;
            }
        }
    }

    fn collect(&mut self, outcome: Result<()>) -> Result<R> {
        self.deliver(true);
        let mut sub = self.sub.take().expect("collect once");
        let finish = self.finish.take().expect("collect once");
        let result = outcome.and_then(|()| finish(&sub));
        sub.release();
        result
    }
}

/// Awaiting a handle does not block the runtime and costs no thread of its own: a handle
/// that is not ready registers its waker with the pool's one waiter thread, which wakes
/// it when the job ends (and every 10 ms while progress or report callbacks are set, or
/// at the job's deadline, so they run and the timeout is enforced in the polling thread).
impl<R: Unpin> Future for JobHandle<R> {
    type Output = Result<R>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let this = &mut *self;
        if this.sub.is_none() {
            return Poll::Ready(Err(Error::PoolShutDown {
                reason: "handle polled after completion".into(),
            }));
        }
        if let Some(r) = this.wait_step(Some(Instant::now())) {
            this.forget_waker();
            return Poll::Ready(r);
        }
        let ticking = this.on_progress.is_some() || this.on_report.is_some();
        let tick = ticking.then(|| Instant::now() + POLL_PERIOD);
        let due = match (tick, this.deadline.map(|(d, _)| d)) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        };
        this.register_waker(cx.waker(), due);
        Poll::Pending
    }
}

impl<R> JobHandle<R> {
    /// Whether the job has ended (its outcome can be collected without waiting), or the
    /// handle is spent.
    pub(crate) fn has_ended(&self) -> bool {
        match self.sub.as_ref() {
            Some(sub) => sub.poll().is_some(),
            None => true,
        }
    }

    /// The job's progress now, `None` once the handle is spent.
    pub(crate) fn progress_now(&self) -> Option<Progress> {
        self.sub.as_ref().map(|sub| Progress::of(sub.slot()))
    }

    /// Reports now deliverable in order (all that are left once `fin`), taken from the
    /// handle so that neither callbacks nor the end of the wait see them again.
    pub(crate) fn take_reports(&mut self, fin: bool) -> Vec<crate::progress::Report> {
        let Some(sub) = self.sub.as_ref() else {
            return Vec::new();
        };
        let mut reports = self.reports.collect(&sub.pool.mempool, sub.slot());
        if fin {
            reports.extend(self.reports.drain());
        }
        reports
    }

    /// Has the pool's waiter wake `waker` when the job ends (or at `due`).
    pub(crate) fn register_waker(&mut self, waker: &Waker, due: Option<Instant>) {
        let sub = self.sub.as_ref().expect("registered while running");
        let waiter = Arc::clone(&sub.pool.waiter);
        waiter.register(&mut self.waiter_key, sub.id, waker, due);
    }

    fn forget_waker(&mut self) {
        if let Some(sub) = self.sub.as_ref() {
            sub.pool.waiter.deregister(self.waiter_key.take());
        }
    }
}

impl<R> Drop for JobHandle<R> {
    fn drop(&mut self) {
        self.forget_waker();
    }
}
