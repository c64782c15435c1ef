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
pub struct Ctx {
    pool: Pool,
    job: JobId,
    root: u64,
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
    pub(crate) fn current() -> Result<Ctx> {
        let (inner, job, root) = crate::worker::current_job()
            .ok_or_else(|| Error::config("a task context exists only inside a worker"))?;
        Ok(Ctx {
            pool: Pool::in_worker(inner, job),
            job,
            root,
        })
    }

    /// Whether this task's job, or any job above it, was cancelled (or has failed or
    /// timed out): a long task should check it now and then and return early.
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
        let mut cur = Some(self.job);
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
    /// operations; call it as often as you like.
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
        crate::progress::set_progress(
            self.pool.inner().control.slot(self.job.slot as usize),
            done,
            total,
        );
    }

    /// Sends a partial result to whoever waits for this job (`JobHandle::on_report`),
    /// delivered in the order reported.
    ///
    /// # Errors
    /// [`Error::Full`] if too many reports wait to be collected (the owner polls every
    /// 10 ms); [`Error::OutOfMemory`] if the mempool is full.
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
        crate::progress::push_report(
            &inner.mempool,
            inner.control.slot(self.job.slot as usize),
            self.root,
            value,
        )
    }

    /// A number identifying this task's job (as in error messages).
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
        self.job.number()
    }
}
