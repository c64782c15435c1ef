//! Parallel iterators over shared arrays and index ranges, run in the worker processes.
//!
//! `pool.par_iter(&arr)` and `pool.par_range(a..b)` (any primitive integer type) start a
//! pipeline, and so do `pool.par_iter_strs(&strings)` / `pool.par_iter_vecs(&vecs)`
//! ([`columnar`]: `&str` / `&[T]` out of the mempool) and `pool.par_iter_vec(items)`
//! ([`serde_source`]: serde values encoded in bulk); adapters (`map`, `filter`,
//! `filter_map`, `flat_map`, `enumerate`, `zip`, `skip`, `take`, `chain`, each
//! closure-taking one also in `_with`, `_init` and `_ctx` forms) build its type; a
//! terminal (`sum`, `collect`, `for_each`, `find_first`, `try_for_each`, ...) submits it
//! as one job and waits. Workers take chunks of the index space themselves; each chunk
//! leaves an accumulator that is combined in input order where the operation needs it
//! (`collect_vec`, `reduce`, `min`) or inside each worker where it does not (`sum`,
//! `count`, `any`).
//!
//! What a job carries (a `_with` state, `fold_with`'s initial value) is encoded once and
//! decoded in each worker that takes part, and accumulators come back encoded. A task
//! that starts a nested iterator job runs its first chunks itself: it uses the values
//! it passed as they are and keeps its own accumulators without encoding them, so a
//! type whose serde round trip is lossy (`#[serde(skip)]` fields) sees the difference
//! between its chunks and the other workers'.
//!
//! # Examples
//!
//! ```
//! let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
//! let total: u64 = pool.par_range(0..100_000).map(|i: usize| i as u64 + 1).sum()?;
//! assert_eq!(total, 100_000 * 100_001 / 2);
//!
//! let data = pool.array_from_fn(1000, |i| (i * 7 % 1000) as u32)?;
//! let evens = pool.par_iter(&data).filter(|x: &u32| x % 2 == 0).count()?;
//! assert_eq!(evens, 500);
//! # Ok::<(), procyon::Error>(())
//! ```

mod adapters;
mod aggregate;
mod collect;
mod columnar;
mod consume;
mod env;
mod fallible;
mod find;
mod indexed;
mod indexed_adapters;
mod mutable;
mod range;
mod reduce;
mod search;
mod serde_source;
pub(crate) mod source;
pub(crate) mod stage;
pub(crate) mod terminal;

use std::marker::PhantomData;

use bytemuck::Pod;

use crate::array::SharedArray;
use crate::jobs::partials::{Kept, Partials};
use crate::jobs::run_set::Feed;
use crate::kind::pipeline::{CollectArray, IterJob};
use crate::pool::{Chunking, JobHandle, Pool, Submitted};
use crate::worker::{Inline, Share};
use crate::Result;
use std::cell::RefCell;

pub use collect::{FromParIter, ParExtend, ParItems};
pub use fallible::Try;
pub use mutable::ParIterMut;
pub use range::{IntoParIterOn, RangeInt};
use source::Source;
use stage::{Id, OneToOne, Stage};
use terminal::Terminal;

/// A parallel iterator: a source, a chain of stages, and chunking bounds.
///
/// Built by [`Pool::par_iter`], [`Pool::par_range`] and [`IntoParIterOn`]; nothing runs
/// until a terminal operation is called. Functions passed to adapters must capture
/// nothing (checked at compile time); state travels with the `*_with` forms
/// ([`map_with`](ParIter::map_with), [`filter_with`](ParIter::filter_with), ...), per-worker
/// values with the `*_init` forms, and the task's [`Ctx`](crate::Ctx) with the `*_ctx`
/// forms. The closures of terminal operations (`any`, `find_first`, `min_by_key`, ...)
/// take no state: put a `map_with` before them. A task of its own gets state with
/// [`Pool::spawn_with`].
#[must_use = "a parallel iterator does nothing until a terminal operation (sum, collect_vec, for_each, ...) runs it"]
pub struct ParIter<'p, S: Source, St: Stage<S::Item>> {
    pool: &'p Pool,
    source: S::Args,
    state: St::State,
    chunking: Chunking,
    /// `None` while the iterator has no callback, limit, build problem or staged input
    /// (the common case): every builder step moves the iterator, and a small nested
    /// job's goes through several, so it stays a few words.
    opts: Option<Box<Opts>>,
    _types: PhantomData<fn(S, St)>,
}

/// Callbacks and limits applied to the job a terminal operation starts.
#[derive(Default)]
struct Opts {
    on_progress: Option<crate::pool::ProgressFn>,
    on_report: Option<crate::pool::ReportFn>,
    timeout: Option<std::time::Duration>,
    /// A problem found while building the iterator, reported by the terminal operation.
    error: Option<crate::Error>,
    /// Staged copies of private data the job reads ([`crate::staging`]): kept alive
    /// until the job has ended (they travel into the handle's finishing closure).
    keep: Keep,
}

impl Opts {
    /// The options an iterator holds, the defaults if it holds none.
    fn take(opts: Option<Box<Opts>>) -> Opts {
        opts.map_or_else(Opts::default, |o| *o)
    }
}

/// What to do once an iterator's job has ended: let its staged inputs go, then turn
/// its accumulators (`A`, in input order, with those the submitting task kept for
/// itself, `mine`; none if `has_acc` is false: the terminal makes none) into the answer
/// with `finish`.
fn answer<A: serde::de::DeserializeOwned + 'static, R>(
    has_acc: bool,
    keep: Keep,
    finish: impl FnOnce(Partials<A>) -> Result<R> + Send + 'static,
) -> impl FnOnce(&Submitted, Kept<A>) -> Result<R> + Send + 'static {
    move |sub: &Submitted, mine: Kept<A>| {
        drop(keep);
        let parts = if has_acc {
            sub.partials_with::<A>(mine)?
        } else {
            Partials::One(None)
        };
        finish(parts)
    }
}

/// What the rest of a nested job run inline needs to go to a job ([`Share`]).
struct RestCx<'a, K: crate::kind::JobKind> {
    pool: &'a Pool,
    args: &'a K::Args,
    n: usize,
    chunking: Chunking,
    /// The job, once shared: its owner collects it.
    sub: RefCell<Option<Submitted>>,
}

/// Submits items `from..` of the job `cx` describes, open, for the hungry worker of
/// `feed` (a [`Share`]).
///
/// # Safety
/// `cx` must point to a live `RestCx<K>`.
unsafe fn share_rest<K: crate::kind::JobKind>(cx: *const (), from: usize, feed: Feed) -> bool {
    // SAFETY: the caller's contract.
    let cx = unsafe { &*(cx as *const RestCx<'_, K>) };
    match cx
        .pool
        .submit_open::<K>(cx.args, cx.n, cx.chunking, from, feed)
    {
        Ok(sub) => {
            *cx.sub.borrow_mut() = Some(sub);
            true
        }
        // Nothing shared: the run goes on inline.
        Err(_) => false,
    }
}

/// Submits the pipeline of source `S` and stages `St` ending in terminal `T`.
fn submit_iter<S: Source, St: Stage<S::Item>, T: Terminal<St::Out>>(
    pool: &Pool,
    source: S::Args,
    state: St::State,
    tstate: T::State,
    chunking: Chunking,
) -> Result<Submitted> {
    let n = S::len(&source);
    pool.submit::<IterJob<S, St, T>>(&(source, state, tstate), n, chunking)
}

/// An iterator taken apart: pool, source and stages, build problem, staged inputs.
type Parts<'p, S, St> = (
    &'p Pool,
    (
        <S as Source>::Args,
        <St as Stage<<S as Source>::Item>>::State,
    ),
    Option<crate::Error>,
    Keep,
);

/// What a job's handle keeps alive until the job has ended: the blocks of staged input
/// arrays.
pub(crate) type Keep = Vec<crate::mempool::Block>;

impl<'p, S: Source> ParIter<'p, S, Id> {
    /// A pipeline over `source` with no stages yet.
    fn new(pool: &'p Pool, source: S::Args, error: Option<crate::Error>) -> Self {
        ParIter {
            pool,
            source,
            state: (),
            chunking: pool.inner().default_chunking(),
            opts: error.map(|error| {
                Box::new(Opts {
                    error: Some(error),
                    ..Opts::default()
                })
            }),
            _types: PhantomData,
        }
    }
}

impl<'p, S: Source, St: Stage<S::Item>> ParIter<'p, S, St> {
    /// The iterator's options, made present.
    fn opts_mut(&mut self) -> &mut Opts {
        self.opts.get_or_insert_with(Box::default)
    }

    /// Whether building the iterator found a problem (which its terminal reports).
    fn has_error(&self) -> bool {
        self.opts.as_ref().is_some_and(|o| o.error.is_some())
    }

    /// The same iterator with another stage chain (an adapter added).
    fn restage<St2: Stage<S::Item>>(
        self,
        state: impl FnOnce(St::State) -> St2::State,
    ) -> ParIter<'p, S, St2> {
        ParIter {
            pool: self.pool,
            source: self.source,
            state: state(self.state),
            chunking: self.chunking,
            opts: self.opts,
            _types: PhantomData,
        }
    }

    /// The same iterator over another source made of this one's source and stages (an
    /// indexed combination), with no stages.
    fn reshape<S2: Source>(
        self,
        source: impl FnOnce(S::Args, St::State) -> S2::Args,
    ) -> ParIter<'p, S2, Id> {
        ParIter {
            pool: self.pool,
            source: source(self.source, self.state),
            state: (),
            chunking: self.chunking,
            opts: self.opts,
            _types: PhantomData,
        }
    }

    /// The pool, the source and stages (as one indexed source's arguments), any problem
    /// found while building, and what the job keeps alive: what another iterator takes
    /// in to combine with.
    fn into_parts(self) -> Parts<'p, S, St> {
        let Opts { error, keep, .. } = Opts::take(self.opts);
        (self.pool, (self.source, self.state), error, keep)
    }

    /// Calls `f` with the job's progress while a terminal operation waits (at most every
    /// 10 ms, when it changed, monotonic, and once with the final value).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let last = Arc::new(Mutex::new(None));
    /// let seen = last.clone();
    /// pool.par_range(0u32..10_000).on_progress(move |p| *seen.lock().unwrap() = Some(p)).count()?;
    /// let p = last.lock().unwrap().expect("the final progress is always reported");
    /// assert_eq!((p.items_done, p.items_total), (10_000, 10_000));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn on_progress(mut self, f: impl FnMut(crate::Progress) + Send + 'static) -> Self {
        self.opts_mut().on_progress = Some(Box::new(f));
        self
    }

    /// Calls `f` with each partial result a task sends with `Ctx::report`, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use procyon::Ctx;
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let got = Arc::new(Mutex::new(Vec::new()));
    /// let sink = got.clone();
    /// pool.par_range(0u32..4)
    ///     .on_report(move |x: u32| sink.lock().unwrap().push(x))
    ///     .for_each_ctx(|ctx: &Ctx, x: u32| ctx.report(&(x * 10)).unwrap())?;
    /// let mut got = got.lock().unwrap().clone();
    /// got.sort();
    /// assert_eq!(got, [0, 10, 20, 30]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn on_report<T: serde::de::DeserializeOwned>(
        mut self,
        mut f: impl FnMut(T) + Send + 'static,
    ) -> Self {
        self.opts_mut().on_report = Some(Box::new(move |b: &[u8]| {
            if let Ok(v) = bincode::deserialize::<T>(b) {
                f(v);
            }
        }));
        self
    }

    /// Fails the job with [`Error::Timeout`](crate::Error::Timeout) if it runs longer
    /// than `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let r = pool
    ///     .par_range(0u32..2)
    ///     .timeout(Duration::from_millis(50))
    ///     .for_each(|_: u32| std::thread::sleep(Duration::from_secs(5)));
    /// assert!(matches!(r, Err(procyon::Error::Timeout { .. })));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.opts_mut().timeout = Some(timeout);
        self
    }

    /// Chunks hold at least `n` items (fewer only at the very end).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// // One accumulator per chunk: at most 1000 / 400 rounded up.
    /// let parts = pool.par_range(0u32..1000).with_min_len(400).fold(|| 0u32, |a: u32, _x: u32| a + 1)?;
    /// assert!(parts.len() <= 3 && parts.iter().sum::<u32>() == 1000);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn with_min_len(mut self, n: usize) -> Self {
        self.chunking.min_len = n;
        self.chunking.max_len = self.chunking.max_len.max(n);
        self
    }

    /// Chunks hold at most `n` items (`with_max_len(1)`: one item per chunk).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let parts = pool.par_range(0u32..10).with_max_len(1).fold(|| 0u32, |a: u32, x: u32| a + x)?;
    /// assert_eq!(parts, (0..10).collect::<Vec<u32>>());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn with_max_len(mut self, n: usize) -> Self {
        self.chunking.max_len = n;
        self.chunking.min_len = self.chunking.min_len.min(n.max(1));
        self
    }

    /// Submits the pipeline ending in terminal `T` (with state `tstate`); `finish` turns
    /// the accumulators, in input order, into the answer.
    fn spawn<T: Terminal<St::Out>, R: 'static>(
        self,
        tstate: T::State,
        finish: impl FnOnce(Partials<T::Acc>) -> Result<R> + Send + 'static,
    ) -> Result<JobHandle<R>>
    where
        T::Acc: 'static,
    {
        let opts = Opts::take(self.opts);
        if let Some(e) = opts.error {
            return Err(e);
        }
        let sub =
            submit_iter::<S, St, T>(self.pool, self.source, self.state, tstate, self.chunking)?;
        let answer = answer::<T::Acc, R>(T::HAS_ACC, opts.keep, finish);
        let done = move |sub: &Submitted| answer(sub, Kept::default());
        Ok(JobHandle::new(sub, Box::new(done)).with_opts(
            opts.on_progress,
            opts.on_report,
            opts.timeout,
        ))
    }

    /// Runs the pipeline ending in terminal `T` and waits for its answer.
    ///
    /// Inlined into each terminal (one call site each), with `worker::run_inline` in it:
    /// a small nested job run inline is then one function with its caller's task, its
    /// items and their closure, and no longer moves its arguments, frame and result
    /// across two calls (W7 from a task: 579 -> 535 worker instructions per nested job).
    #[inline(always)]
    fn run<T: Terminal<St::Out>, R: 'static>(
        self,
        tstate: T::State,
        finish: impl FnOnce(Partials<T::Acc>) -> Result<R> + Send + 'static,
    ) -> Result<R>
    where
        T::Acc: 'static,
    {
        if self.opts.as_ref().is_some_and(|o| {
            o.on_progress.is_some() || o.on_report.is_some() || o.timeout.is_some()
        }) {
            return self.spawn::<T, R>(tstate, finish)?.wait();
        }
        // No callback to feed and no time limit of the iterator's own: wait on the
        // submission itself, without a handle (no boxed closure, no callback plumbing;
        // a sixth of a small nested job's instructions went there).
        // `None` when nothing is staged: a nested job run inline then drops no `Vec`.
        let keep: Option<Keep> = match self.opts {
            None => None,
            Some(opts) => {
                let Opts { error, keep, .. } = *opts;
                if let Some(e) = error {
                    return Err(e);
                }
                Some(keep)
            }
        };
        // The arguments stay in hand: a nested job's submitting task runs its chunks
        // with them (nothing decoded) and keeps their accumulators (nothing encoded).
        let n = S::len(&self.source);
        let args = (self.source, self.state, tstate);
        let chunking = self.chunking;
        // A small nested job while every other worker is busy: run inline, submitted
        // only if a worker gets hungry meanwhile (`worker::run_inline`).
        let mut kept = Kept::default();
        let mut sub = None;
        let mut timing = None;
        if self.pool.may_run_inline() {
            let rest = RestCx::<IterJob<S, St, T>> {
                pool: self.pool,
                args: &args,
                n,
                chunking,
                sub: RefCell::new(None),
            };
            let share = Share {
                share: share_rest::<IterJob<S, St, T>>,
                cx: &rest as *const RestCx<'_, IterJob<S, St, T>> as *const (),
            };
            // SAFETY: `rest` outlives the call, and `share_rest` submits the rest of this
            // very job (kind, arguments, items, chunking).
            let inline = unsafe {
                crate::worker::run_inline::<IterJob<S, St, T>>(
                    &args,
                    n,
                    chunking.min_len,
                    chunking.max_len,
                    share,
                )
            };
            match inline {
                Inline::Declined(None) => {}
                Inline::Declined(Some(now)) => {
                    sub = Some(
                        self.pool
                            .submit_open::<IterJob<S, St, T>>(&args, n, chunking, 0, now.feed)?,
                    );
                    timing = Some(now.timing);
                }
                Inline::Done(mine) => {
                    drop(keep);
                    return finish(if T::HAS_ACC {
                        Partials::kept(mine)
                    } else {
                        Partials::One(None)
                    });
                }
                Inline::Shared(mine) => {
                    kept = mine;
                    sub = rest.sub.take();
                    if sub.is_none() {
                        return Err(crate::Error::PoolShutDown {
                            reason: "an inline run was shared without its job".into(),
                        });
                    }
                }
                Inline::Failed(e) => return Err(e),
            }
        }
        let sub = match sub {
            Some(sub) => sub,
            None => self.pool.submit::<IterJob<S, St, T>>(&args, n, chunking)?,
        };
        let answer = answer::<T::Acc, R>(T::HAS_ACC, keep.unwrap_or_default(), finish);
        // SAFETY: `sub` was submitted just above as this kind with `args`.
        let r = unsafe { sub.run_and_finish::<IterJob<S, St, T>, R>(&args, kept, answer) };
        if let (Some(timing), Ok(_)) = (timing, &r) {
            timing.done(n);
        }
        r
    }

    /// Runs the pipeline ending in terminal `T` and merges its accumulators in input
    /// order (`None` if there were none: an empty iterator).
    fn run_merged<T: Terminal<St::Out>>(self, tstate: T::State) -> Result<Option<T::Acc>>
    where
        T::Acc: 'static,
    {
        self.run::<T, _>(tstate, |parts| {
            Ok(parts.into_iter().reduce(|l, r| T::merge(l, r)))
        })
    }

    /// Writes the items into a new shared array, in input order, with no copy through
    /// this process (each worker writes its chunk in place).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let a = pool.par_range(0u32..1000).map(|i: u32| i as f32 * 0.5).collect_array()?;
    /// assert_eq!(a[10], 5.0);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn collect_array(self) -> Result<SharedArray<St::Out>>
    where
        St: OneToOne,
        St::Out: Pod,
    {
        let opts = Opts::take(self.opts);
        if let Some(e) = opts.error {
            return Err(e);
        }
        let n = S::len(&self.source);
        // One-to-one stages write every element (and a failed job's output is dropped).
        let out = SharedArray::<St::Out>::for_overwrite(self.pool.mempool(), n)?;
        let stream =
            std::mem::size_of_val::<[St::Out]>(&out) >= self.pool.inner().config.stream_threshold();
        let args = (self.source, self.state, out.desc(), stream);
        let sub = self
            .pool
            .submit::<CollectArray<S, St>>(&args, n, self.chunking)?;
        let keep = opts.keep;
        // The closure runs once the job has ended: its staged inputs may go then.
        JobHandle::new(
            sub,
            Box::new(move |_| {
                drop(keep);
                Ok(())
            }),
        )
        .with_opts(opts.on_progress, opts.on_report, opts.timeout)
        .wait()?;
        Ok(out)
    }
}
