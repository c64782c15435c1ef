//! `join` and `scope`: two, or any number of, sub-jobs whose results come back together.
//!
//! Both are built on [`Pool::spawn`] / [`Pool::spawn_with`]: every task is a job of its
//! own (one task, run by whichever worker takes it), and the caller waits for the
//! handles in argument (spawn) order.
//!
//! ## Protocol
//!
//! * **Submission.** `join` submits `b` before `a`, so that while the caller starts on
//!   `a`, `b` is already open to an idle worker (rayon's join pushes `b` for stealing and
//!   runs `a` itself; here nothing is pushed to a deque, but the effect is the same).
//! * **Waiting.** A client thread sleeps on each job's event. A task in a worker
//!   (`ctx.join(..)`, `ctx.scope(..)`) is a nested job's owner, so its `JobHandle::wait`
//!   *helps*: it runs the child it waits for if nobody took it yet, then only jobs of
//!   that child's sub-tree (`worker::help_until`). A join tree of any depth therefore
//!   finishes with one worker: at worst that worker runs the whole tree depth-first.
//! * **Failure.** The first error seen wins: the tasks not yet collected are cancelled
//!   (with their descendants; a task that never checks [`Ctx::is_cancelled`] is killed
//!   after the pool's grace period) and waited for, so no task of a `join` or a `scope`
//!   is still running when it returns, and the error is returned. A client thread waits
//!   for the first uncollected task in steps of [`WATCH_STEP`] and looks at the others
//!   between steps, so a later task that fails stops the rest within a step even while
//!   an earlier one runs on. A task in a worker cannot look between steps (its wait runs
//!   the child it waits for), so there errors are seen in argument / spawn order.
//!   Cancelling the job that runs a `ctx.join` reaches both children through the
//!   scheduler, like any nested job.
//!
//! * **Inline.** A task's `ctx.join(a, b)` while no other worker is hungry for work runs
//!   both inline, `a` then `b`, in the task's worker, with no job submitted
//!   (`worker::inline`): as a rayon `join` that nobody steals from. While `a` runs, `b`
//!   is what an idle worker would want: once one is hungry, the first inline run inside
//!   `a` to reach a chunk's end spawns `b` for it (the outermost piece left goes first),
//!   and the caller waits for `b` after `a` as above. If a worker is hungry when
//!   `ctx.join` starts, `b` is spawned open for it at once. A panic in `a` or `b` run
//!   inline is the join's [`Error::TaskPanicked`] (naming the task's job), and a spawned
//!   `b` is then cancelled and waited for. The price: `b` can only be handed over at the
//!   end of a chunk of a nested job inside `a`, so a join of two long tasks that start
//!   no nested jobs, called while every other worker is busy, runs them one after the
//!   other even if a worker gets idle meanwhile; `scope` submits every task at once and
//!   suits such a pair (fine-grained recursive joins, fib or quicksort, are where inline
//!   runs pay: no job per node).
//!
//! Task functions capture nothing (they are re-created in the worker from their type):
//! pass state with [`Pool::join_with`] or [`Scope::spawn_with`].

use std::cell::RefCell;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ctx::Ctx;
use crate::jobs::run_set::Feed;
use crate::pool::{JobHandle, Pool};
use crate::task::TaskFn;
use crate::worker::{Begin, Frame, Share, Step, Timing};
use crate::{Error, Result};

/// How long a client waiting for one task of a `join` or `scope` sleeps before it looks
/// at the others for a failure.
const WATCH_STEP: Duration = Duration::from_millis(5);

impl Pool {
    /// Runs `a(&ctx)` and `b(&ctx)` as two jobs, possibly in parallel, and returns both
    /// results (rayon's `join`, with a [`Ctx`] for the tasks: they may start nested jobs,
    /// or join again).
    ///
    /// The task functions must capture nothing; [`join_with`](Pool::join_with) gives each
    /// a state. Called on a task's `Ctx` (`ctx.join(..)`), the two jobs are children of
    /// the task's job, and the waiting worker works on them meanwhile, so nested joins
    /// finish even with a single worker.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// use procyon::{Ctx, Pool};
    /// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let (sum, name) = pool.join(
    ///     |ctx: &Ctx| ctx.par_range(0u64..1000).sum::<u64>().unwrap(),
    ///     |_: &Ctx| String::from("done"),
    /// )?;
    /// assert_eq!((sum, name.as_str()), (499_500, "done"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The first error seen (in a client thread, that of the task that failed first;
    /// inside a task, in argument order): a task's failure ([`Error::TaskPanicked`],
    /// [`Error::WorkerDied`], [`Error::Cancelled`], [`Error::Timeout`], ...) or a
    /// submission's ([`Error::PoolShutDown`], [`Error::OutOfMemory`],
    /// [`Error::TooManyJobs`]). The other task is then cancelled and waited for.
    pub fn join<FA, RA, FB, RB>(&self, a: FA, b: FB) -> Result<(RA, RB)>
    where
        FA: Fn(&Ctx) -> RA + TaskFn,
        FB: Fn(&Ctx) -> RB + TaskFn,
        RA: Serialize + DeserializeOwned + Send + 'static,
        RB: Serialize + DeserializeOwned + Send + 'static,
    {
        let (hb, timing) =
            match self.join_inline(|ctx| a(ctx), |ctx| b(ctx), |feed| self.spawn_open(b, feed)) {
                Joined::Done(r) => return r,
                Joined::Spawned(spawned) => {
                    let (hb, timing) = *spawned;
                    (hb?, Some(timing))
                }
                Joined::Declined => (self.spawn(b)?, None),
            };
        let ha = match self.spawn(a) {
            Ok(h) => h,
            Err(e) => return Err(abandon(hb, e)),
        };
        timed(timing, wait_both(self.parent.is_none(), ha, hb))
    }

    /// [`join`](Pool::join) with a state for each task: runs `a(&state_a, &ctx)` and
    /// `b(&state_b, &ctx)`. Each state is any serde value, sent with its job (as
    /// [`spawn_with`](Pool::spawn_with) does).
    ///
    /// # Examples
    ///
    /// A fib-style tree of nested joins, which runs even on one worker:
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// use procyon::{Ctx, Pool};
    /// fn fib(n: &u64, ctx: &Ctx) -> u64 {
    ///     if *n < 2 {
    ///         return *n;
    ///     }
    ///     let (a, b) = ctx.join_with(n - 1, fib, n - 2, fib).unwrap();
    ///     a + b
    /// }
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// assert_eq!(pool.spawn_with(6u64, fib)?.wait()?, 8);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`join`](Pool::join); [`Error::OutOfMemory`] if a state does not fit in the
    /// mempool.
    pub fn join_with<SA, FA, RA, SB, FB, RB>(
        &self,
        state_a: SA,
        a: FA,
        state_b: SB,
        b: FB,
    ) -> Result<(RA, RB)>
    where
        SA: Serialize + DeserializeOwned + 'static,
        SB: Serialize + DeserializeOwned + 'static,
        FA: Fn(&SA, &Ctx) -> RA + TaskFn,
        FB: Fn(&SB, &Ctx) -> RB + TaskFn,
        RA: Serialize + DeserializeOwned + Send + 'static,
        RB: Serialize + DeserializeOwned + Send + 'static,
    {
        let (hb, timing) = match self.join_inline(
            |ctx| a(&state_a, ctx),
            |ctx| b(&state_b, ctx),
            |feed| self.spawn_with_open(&state_b, b, feed),
        ) {
            Joined::Done(r) => return r,
            Joined::Spawned(spawned) => {
                let (hb, timing) = *spawned;
                (hb?, Some(timing))
            }
            Joined::Declined => (self.spawn_with(state_b, b)?, None),
        };
        let ha = match self.spawn_with(state_a, a) {
            Ok(h) => h,
            Err(e) => return Err(abandon(hb, e)),
        };
        timed(timing, wait_both(self.parent.is_none(), ha, hb))
    }

    /// Runs `a` then `b` inline in the calling task's worker (module docs, "Inline"),
    /// `spawn_b` spawning `b` open for a hungry worker if one turns up while `a` runs;
    /// `Declined` if this is not a task's join (or it has a time limit), `Spawned` (`b`
    /// by `spawn_b`) if a worker is hungry already.
    fn join_inline<RA, RB, S>(
        &self,
        a: impl FnOnce(&Ctx) -> RA,
        b: impl FnOnce(&Ctx) -> RB,
        spawn_b: S,
    ) -> Joined<RA, RB>
    where
        S: FnOnce(Feed) -> Result<JobHandle<RB>>,
    {
        if !self.may_run_inline() {
            return Joined::Declined;
        }
        let rest = JoinRest {
            spawn: RefCell::new(Some(spawn_b)),
            handle: RefCell::new(None),
        };
        let share = Share {
            share: share_b::<RB, S>,
            cx: &rest as *const JoinRest<RB, S> as *const (),
        };
        // SAFETY: `rest` outlives the frame (declared before it), and `share_b` spawns
        // item 1 of this run, `b`, the only item a rest of it can start at.
        let frame = match unsafe { Frame::begin(2, share) } {
            Begin::Run(frame) => frame,
            Begin::Declined(None) => return Joined::Declined,
            Begin::Declined(Some(now)) => match rest.spawn.take() {
                Some(spawn) => return Joined::Spawned(Box::new((spawn(now.feed), now.timing))),
                None => return Joined::Declined,
            },
        };
        let entered = frame.enter();
        let ctx = frame.task_ctx();
        frame.running_until(1);
        let ra = match catch_unwind(AssertUnwindSafe(|| a(&ctx))) {
            Ok(ra) => ra,
            Err(payload) => {
                let e = frame.panicked(&*payload);
                drop(entered);
                return Joined::Done(Err(match rest.handle.take() {
                    Some(hb) => abandon(*hb, e),
                    None => e,
                }));
            }
        };
        match frame.after() {
            Step::Go => {}
            Step::Shared => {
                drop(entered);
                return Joined::Done(match rest.handle.take() {
                    Some(hb) => hb.wait().map(|rb| (ra, rb)),
                    None => Err(Error::PoolShutDown {
                        reason: "a join's second task was shared without its job".into(),
                    }),
                });
            }
            Step::Stop(e) => return Joined::Done(Err(e)),
        }
        frame.running_until(2);
        let rb = catch_unwind(AssertUnwindSafe(|| b(&ctx)));
        Joined::Done(match rb {
            Ok(rb) => Ok((ra, rb)),
            Err(payload) => Err(frame.panicked(&*payload)),
        })
    }

    /// Runs `f` with a [`Scope`] whose [`spawn`](Scope::spawn) and
    /// [`spawn_with`](Scope::spawn_with) start tasks as jobs of their own; returns once
    /// every one of them has ended, with their results in spawn order (rayon's `scope`,
    /// for tasks that return a value of one type `R`: use an enum for several).
    ///
    /// `f` itself runs in the calling process (a client thread, or the task whose `Ctx`
    /// this is) and may capture anything; the tasks it spawns capture nothing. A task
    /// cannot spawn into its parent's scope (it runs in another process), but it can
    /// open a scope of its own: `ctx.scope(..)`.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// use procyon::{Ctx, Pool};
    /// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let lens = pool.scope(|s| {
    ///     s.spawn(|_: &Ctx| 0usize);
    ///     for word in ["process", "pool"] {
    ///         s.spawn_with(word.to_string(), |w: &String, _: &Ctx| w.len());
    ///     }
    /// })?;
    /// assert_eq!(lens, vec![0, 7, 4]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The first error seen, a task's (in a client thread, that of the task that failed
    /// first; inside a task, in spawn order) or a submission's (after a failed submission
    /// nothing more is spawned); the tasks not yet collected are then cancelled and
    /// waited for.
    ///
    /// # Panics
    /// If `f` panics: the tasks it spawned are cancelled (their handles are dropped) and
    /// the panic goes on.
    pub fn scope<R, F>(&self, f: F) -> Result<Vec<R>>
    where
        R: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(&Scope<'_, R>),
    {
        let scope = Scope {
            pool: self,
            handles: RefCell::new(Vec::new()),
            error: RefCell::new(None),
        };
        f(&scope);
        let handles = scope.handles.into_inner();
        let result = wait_all(self.parent.is_none(), handles);
        match scope.error.into_inner() {
            // A submission failed, after every task that was spawned: a task's error
            // (which `wait_all` returns) wins over it.
            Some(e) => result.and(Err(e)),
            None => result,
        }
    }
}

/// The tasks of a [`Pool::scope`] call: every task spawned through it has ended when
/// `scope` returns, and its result is in the `Vec` it returns, in spawn order.
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// use procyon::{Ctx, Pool};
/// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
/// let squares = pool.scope(|s| {
///     for i in 0..4u64 {
///         s.spawn_with(i, |i: &u64, _: &Ctx| i * i);
///     }
///     assert_eq!(s.len(), 4);
/// })?;
/// assert_eq!(squares, vec![0, 1, 4, 9]);
/// # Ok(()) }
/// ```
pub struct Scope<'p, R> {
    pool: &'p Pool,
    handles: RefCell<Vec<JobHandle<R>>>,
    /// The first submission that failed; nothing is spawned after it.
    error: RefCell<Option<Error>>,
}

impl<R: Serialize + DeserializeOwned + Send + 'static> Scope<'_, R> {
    /// Starts `f(&ctx)` as a job of its own; its result is the next one of the scope's.
    ///
    /// A submission error ([`Error::PoolShutDown`], [`Error::OutOfMemory`],
    /// [`Error::TooManyJobs`]) is kept and returned by [`Pool::scope`]; spawns after it do
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// use procyon::{Ctx, Pool};
    /// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let v = pool.scope(|s| {
    ///     s.spawn(|ctx: &Ctx| ctx.par_range(0u32..10).count().unwrap());
    ///     s.spawn(|_: &Ctx| 1usize);
    /// })?;
    /// assert_eq!(v, vec![10, 1]);
    /// # Ok(()) }
    /// ```
    pub fn spawn<F>(&self, f: F)
    where
        F: Fn(&Ctx) -> R + TaskFn,
    {
        if self.error.borrow().is_none() {
            let h = self.pool.spawn(f);
            self.keep(h);
        }
    }

    /// Starts `f(&state, &ctx)` as a job of its own; `state` is any serde value, sent
    /// with the job. Otherwise as [`spawn`](Scope::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// use procyon::{Ctx, Pool};
    /// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let v = pool.scope(|s| {
    ///     s.spawn_with(vec![1u64, 2, 3], |v: &Vec<u64>, _: &Ctx| v.iter().sum::<u64>());
    /// })?;
    /// assert_eq!(v, vec![6]);
    /// # Ok(()) }
    /// ```
    pub fn spawn_with<A, F>(&self, state: A, f: F)
    where
        A: Serialize + DeserializeOwned + 'static,
        F: Fn(&A, &Ctx) -> R + TaskFn,
    {
        if self.error.borrow().is_none() {
            let h = self.pool.spawn_with(state, f);
            self.keep(h);
        }
    }

    /// Number of tasks spawned so far (failed submissions not counted).
    pub fn len(&self) -> usize {
        self.handles.borrow().len()
    }

    /// Whether no task has been spawned yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn keep(&self, h: Result<JobHandle<R>>) {
        match h {
            Ok(h) => self.handles.borrow_mut().push(h),
            Err(e) => *self.error.borrow_mut() = Some(e),
        }
    }
}

/// What became of a `join` offered to [`Pool::join_inline`].
enum Joined<RA, RB> {
    /// Run (inline, or `b` spawned for a worker that got hungry): the answer.
    Done(Result<(RA, RB)>),
    /// Not run: spawn both.
    Declined,
    /// A worker was hungry: `b` was spawned open for it (or its spawn failed); spawn `a`,
    /// and time the join (`worker::sizes`). Boxed: a handle is large, and this is the
    /// rare way out.
    Spawned(Box<(Result<JobHandle<RB>>, Timing)>),
}

/// `r`, the answer of a join whose `b` was spawned open for a hungry worker; its time
/// recorded if `timing` (a join that failed records nothing).
fn timed<T>(timing: Option<Timing>, r: Result<T>) -> Result<T> {
    if let (Some(timing), Ok(_)) = (timing, &r) {
        timing.done(2);
    }
    r
}

/// How the second task of a `join` run inline goes to a job ([`Share`]).
struct JoinRest<RB, S> {
    spawn: RefCell<Option<S>>,
    /// The spawned `b`, for the caller to wait for. Boxed: a handle is large, and an
    /// empty slot for one was copied (`memcpy`, 58 instructions) into every inline join.
    handle: RefCell<Option<Box<JobHandle<RB>>>>,
}

/// Spawns `b` of the [`JoinRest`] at `cx` for the hungry worker of `feed`.
///
/// # Safety
/// `cx` must point to a live `JoinRest<RB, S>`.
unsafe fn share_b<RB, S: FnOnce(Feed) -> Result<JobHandle<RB>>>(
    cx: *const (),
    from: usize,
    feed: Feed,
) -> bool {
    debug_assert_eq!(from, 1, "a join's rest is its second task");
    // SAFETY: the caller's contract.
    let cx = unsafe { &*(cx as *const JoinRest<RB, S>) };
    let Some(spawn) = cx.spawn.borrow_mut().take() else {
        return false;
    };
    match spawn(feed) {
        Ok(h) => {
            *cx.handle.borrow_mut() = Some(Box::new(h));
            true
        }
        // Not spawned: `b` runs inline after `a`.
        Err(_) => false,
    }
}

/// Waits for both; on an error, stops the other first. A client (`watch`) looks at `b`
/// between steps of its wait for `a`.
fn wait_both<RA, RB>(watch: bool, a: JobHandle<RA>, b: JobHandle<RB>) -> Result<(RA, RB)> {
    if !watch {
        return match a.wait() {
            Ok(ra) => Ok((ra, b.wait()?)),
            Err(e) => Err(abandon(b, e)),
        };
    }
    let (mut a, mut b, mut rb) = (a, Some(b), None);
    loop {
        match a.wait_timeout(WATCH_STEP) {
            Ok(Ok(ra)) => {
                let rb = match (rb, b) {
                    (Some(rb), _) => rb,
                    (None, Some(b)) => b.wait()?,
                    (None, None) => unreachable!("b is either collected or running"),
                };
                return Ok((ra, rb));
            }
            Ok(Err(e)) => {
                return Err(match b {
                    Some(b) => abandon(b, e),
                    None => e,
                })
            }
            Err(still) => a = still,
        }
        match look(&mut b) {
            Some(Ok(v)) => rb = Some(v),
            Some(Err(e)) => return Err(abandon(a, e)),
            None => {}
        }
    }
}

/// Takes the outcome of the job in `slot` if it has ended, without waiting; `None` (and
/// the handle left in place) while it runs, or if there is none.
fn look<R>(slot: &mut Option<JobHandle<R>>) -> Option<Result<R>> {
    if !slot.as_ref()?.has_ended() {
        return None;
    }
    match slot.take()?.try_wait() {
        Ok(r) => Some(r),
        Err(h) => {
            *slot = Some(h);
            None
        }
    }
}

/// Waits for every handle, results in order; after the first error, cancels the rest,
/// waits for them to end and returns it. A client (`watch`) waits for the first
/// uncollected handle in steps and looks at the later ones between them.
fn wait_all<R>(watch: bool, handles: Vec<JobHandle<R>>) -> Result<Vec<R>> {
    let n = handles.len();
    let mut running: Vec<Option<JobHandle<R>>> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<R>> = (0..n).map(|_| None).collect();
    let mut next = 0;
    loop {
        while next < n && results[next].is_some() {
            next += 1;
        }
        if next == n {
            return Ok(results.into_iter().flatten().collect());
        }
        let h = running[next]
            .take()
            .expect("an uncollected task is running");
        if !watch {
            match h.wait() {
                Ok(v) => results[next] = Some(v),
                Err(e) => return Err(stop_all(running, e)),
            }
            continue;
        }
        match h.wait_timeout(WATCH_STEP) {
            Ok(Ok(v)) => results[next] = Some(v),
            Ok(Err(e)) => return Err(stop_all(running, e)),
            Err(h) => {
                running[next] = Some(h);
                for k in next + 1..n {
                    match look(&mut running[k]) {
                        Some(Ok(v)) => results[k] = Some(v),
                        Some(Err(e)) => return Err(stop_all(running, e)),
                        None => {}
                    }
                }
            }
        }
    }
}

/// Cancels every job still running, waits for each to end, and returns `e`.
fn stop_all<R>(running: Vec<Option<JobHandle<R>>>, e: Error) -> Error {
    let running: Vec<JobHandle<R>> = running.into_iter().flatten().collect();
    for h in &running {
        h.cancel();
    }
    for h in running {
        let _ = h.wait();
    }
    e
}

/// Cancels the job of `h`, waits for it to end, and returns `e` (the error that made
/// its result unneeded).
fn abandon<R>(h: JobHandle<R>, e: Error) -> Error {
    h.cancel();
    let _ = h.wait();
    e
}
