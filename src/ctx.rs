//! `Ctx`: what a task sees of the pool from inside a worker.
//!
//! A task started with a `*_ctx` adapter (or [`Pool::spawn`]) receives `&Ctx`. It offers
//! the pool's whole API (it dereferences to a [`Pool`] whose jobs are children of the
//! task's job), plus cancellation checks and progress reports:
//!
//! ```
//! # fn main() -> procyon::Result<()> {
//! use procyon::{Ctx, Pool};
//! let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
//! // Each of 4 tasks sums a range with a nested parallel job.
//! let sums = pool
//!     .par_range(0..4)
//!     .map_ctx(|ctx: &Ctx, i: usize| ctx.par_range(0..1000 * (i + 1)).map(|x: usize| x as u64).sum::<u64>().unwrap())
//!     .collect_vec()?;
//! assert_eq!(sums[3], (0..4000u64).sum());
//! # Ok(()) }
//! ```

use std::ops::Deref;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::jobs::{JobId, SlotState};
use crate::pool::Pool;

/// A task's view of the pool: nested jobs, cancellation, progress. See the module docs.
///
/// An explicit process ([`Pool::fork_with`]) gets one too: there its nested jobs are
/// top-level jobs the process owns, run by the workers while it waits.
pub struct Ctx {
    pool: Pool,
    place: Place,
}

/// Where the code holding a [`Ctx`] runs.
enum Place {
    /// A task of job `job` (whose tree's root has generation `root`), in a worker;
    /// `quiet`: a task of a nested job `job`'s task runs inline (`worker::run_inline`),
    /// whose progress and reports have nobody to go to.
    Task { job: JobId, root: u64, quiet: bool },
    /// The explicit process of record `index`, generation `gen`.
    Process { index: u32, gen: u64 },
}

impl Deref for Ctx {
    type Target = Pool;
    /// The pool, for nested jobs (`ctx.par_map(..)`, `ctx.par_range(..)`, ...); they are
    /// children of the task's job: cancelled with it, helped by the waiting worker.
    fn deref(&self) -> &Pool {
        &self.pool
    }
}

impl Ctx {
    /// The context of the job the calling worker is running.
    #[inline]
    pub(crate) fn current() -> Result<Ctx> {
        let (inner, job, root, quiet) = crate::worker::current_job()
            .ok_or_else(|| Error::config("a task context exists only inside a worker"))?;
        Ok(Ctx::task(inner, job, root, quiet))
    }

    /// The context of a task of job `job` (root generation `root`); `quiet` for the
    /// tasks of an inline run (`worker::inline`).
    pub(crate) fn task(
        inner: &'static std::sync::Arc<crate::pool::PoolInner>,
        job: JobId,
        root: u64,
        quiet: bool,
    ) -> Ctx {
        Ctx {
            pool: Pool::in_worker(inner, job),
            place: Place::Task { job, root, quiet },
        }
    }

    /// The context of explicit process `index` (generation `gen`), in that process.
    pub(crate) fn for_process(
        inner: std::sync::Arc<crate::pool::PoolInner>,
        index: u32,
        gen: u64,
    ) -> Ctx {
        Ctx {
            pool: Pool::in_process(inner),
            place: Place::Process { index, gen },
        }
    }

    fn process_slot(&self, index: u32) -> Option<&crate::explicit::slot::ProcSlot> {
        crate::explicit::slot::ProcTable::of(&self.pool.inner().control).slot(index as usize)
    }

    /// Whether this task's job, or any job above it, was cancelled (or has failed or
    /// timed out): a long task should check it now and then and return early. In an
    /// explicit process (which is not a job, and is stopped only by
    /// [`Process::kill`](crate::Process::kill)), whether the pool is shutting down.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Error, Pool};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let handle = pool.spawn(|ctx: &Ctx| {
    ///     let mut rounds = 0u64;
    ///     while !ctx.is_cancelled() {
    ///         std::thread::sleep(Duration::from_millis(1));
    ///         rounds += 1;
    ///     }
    ///     rounds // never seen: a cancelled job answers Cancelled
    /// })?;
    /// std::thread::sleep(Duration::from_millis(20));
    /// handle.cancel();
    /// assert!(matches!(handle.wait(), Err(Error::Cancelled)));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn is_cancelled(&self) -> bool {
        let control = self.pool.inner().control;
        let job = match self.place {
            Place::Task { job, .. } => job,
            Place::Process { .. } => {
                return control
                    .header()
                    .closed
                    .load(std::sync::atomic::Ordering::SeqCst)
                    != 0
            }
        };
        let mut cur = Some(job);
        for _ in 0..64 {
            let Some(j) = cur else { return false };
            let slot = control.slot(j.slot as usize);
            if !slot.holds(j.gen) {
                return true;
            }
            if slot.state() != SlotState::Active {
                return true;
            }
            cur = slot.parent();
        }
        false
    }

    /// Reports progress of this job in the task's own units (e.g. rows of a frame).
    /// Monotonic: the largest `done` and `total` reported win. Costs two atomic
    /// operations; call it as often as you like. In an explicit process it is what
    /// [`Process::progress`](crate::Process::progress) reads.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&seen);
    /// let rows = pool
    ///     .spawn(|ctx: &Ctx| {
    ///         for row in 1..=10u64 {
    ///             ctx.progress(row, 10); // one row of a frame done
    ///         }
    ///         10u64
    ///     })?
    ///     .on_progress(move |p| sink.lock().unwrap().push(p.reported))
    ///     .wait()?;
    /// assert_eq!(rows, 10);
    /// // The last call, made once the job has ended, sees the final value.
    /// assert_eq!(seen.lock().unwrap().last(), Some(&Some((10, 10))));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn progress(&self, done: u64, total: u64) {
        match self.place {
            // A nested job run inline has no job of its own to report on; its parent's
            // progress is its parent's tasks' to report (`worker::run_inline`).
            Place::Task { quiet: true, .. } => {}
            Place::Task { job, .. } => crate::progress::set_progress(
                self.pool.inner().control.slot(job.slot as usize),
                done,
                total,
            ),
            Place::Process { index, .. } => {
                if let Some(slot) = self.process_slot(index) {
                    // Relaxed: a monotonic snapshot, as a job's progress.
                    let o = std::sync::atomic::Ordering::Relaxed;
                    slot.progress_done.fetch_max(done, o);
                    slot.progress_total.fetch_max(total, o);
                }
            }
        }
    }

    /// Sends a partial result to whoever waits for this job (`JobHandle::on_report`),
    /// delivered in the order reported.
    ///
    /// # Errors
    /// [`Error::Full`] if too many reports wait to be collected (the owner polls every
    /// 10 ms); [`Error::OutOfMemory`] if the mempool is full; [`Error::InvalidConfig`] in
    /// an explicit process, which has no handle collecting reports (send partial results
    /// through a [`SharedQueue`](crate::collections::SharedQueue) instead).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let partial = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&partial);
    /// let best = pool
    ///     .spawn(|ctx: &Ctx| {
    ///         for step in [3u64, 2, 1] {
    ///             ctx.report(&step).unwrap(); // an improving answer, as it is found
    ///         }
    ///         1u64
    ///     })?
    ///     .on_report(move |v: u64| sink.lock().unwrap().push(v))
    ///     .wait()?;
    /// assert_eq!(best, 1);
    /// assert_eq!(*partial.lock().unwrap(), vec![3, 2, 1]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn report<T: Serialize>(&self, value: &T) -> Result<()> {
        let inner = self.pool.inner();
        match self.place {
            // Nobody collects the reports of a nested job run inline (one that had a
            // collector, `on_report`, is never run inline): dropped, as such a job's
            // reports are when it is released.
            Place::Task { quiet: true, .. } => Ok(()),
            Place::Task { job, root, .. } => crate::progress::push_report(
                &inner.mempool,
                inner.control.slot(job.slot as usize),
                root,
                value,
            ),
            Place::Process { .. } => Err(Error::config(
                "Ctx::report in an explicit process: nobody collects its reports; send \
                 partial results through a SharedQueue, or return them",
            )),
        }
    }

    /// A number identifying this task's job (as in error messages); in an explicit
    /// process, the process's number ([`Process::number`](crate::Process::number)).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let first = pool.spawn(|ctx: &Ctx| ctx.job_number())?.wait()?;
    /// let second = pool.spawn(|ctx: &Ctx| ctx.job_number())?.wait()?;
    /// assert_ne!(first, second); // each job has its own number
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn job_number(&self) -> u64 {
        match self.place {
            Place::Task { job, .. } => job.number(),
            Place::Process { gen, .. } => gen,
        }
    }
}
