//! Parallel iterators over shared arrays and index ranges, run in the worker processes.
//!
//! `pool.par_iter(&arr)` and `pool.par_range(0..n)` start a pipeline; adapters (`map`,
//! `map_with`, `map_init`, `filter`, `enumerate`) build its type; a terminal (`sum`,
//! `collect_vec`, `for_each`, ...) submits it as one job and waits. Workers take chunks
//! of the index space themselves; each chunk leaves an accumulator that is combined in
//! input order where the operation needs it (`collect_vec`, `reduce`, `min`) or inside
//! each worker where it does not (`sum`, `count`, `any`).
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

mod source;
mod stage;
mod terminal;

use std::marker::PhantomData;
use std::ops::{ControlFlow, Range};

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::array::{ArrayDesc, SharedArray};
use crate::kind::{JobKind, WorkerCx};
use crate::ops::Resolved;
use crate::pool::{Chunking, JobHandle, Pool};
use crate::stream::StreamWriter;
use crate::task::{assert_stateless, TaskFn};
use crate::Result;

#[doc(hidden)]
pub use source::{ArraySource, Detached, Enumerated, RangeArgs, RangeSource, Source};
#[doc(hidden)]
pub use stage::{Filter, Id, Map, MapCtx, MapInit, MapWith, OneToOne, Stage};
#[doc(hidden)]
pub use terminal::{
    AnyAll, CollectVec, Count, Drain, FindAny, Fold, ForEach, MinMax, Reduce, Sum, Terminal,
};

/// A parallel iterator: a source, a chain of stages, and chunking bounds.
///
/// Built by [`Pool::par_iter`] and [`Pool::par_range`]; nothing runs until a terminal
/// operation is called. Functions passed to adapters must capture nothing (checked at
/// compile time); state travels with [`map_with`](ParIter::map_with).
#[must_use = "a parallel iterator does nothing until a terminal operation (sum, collect_vec, for_each, ...) runs it"]
pub struct ParIter<'p, S: Source, St: Stage<S::Item>> {
    pool: &'p Pool,
    source: S::Args,
    state: St::State,
    chunking: Chunking,
    opts: Opts,
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
}

impl Pool {
    /// A parallel iterator over the elements of `arr` (by value).
    ///
    /// The array is borrowed until the terminal operation returns.
    pub fn par_iter<'p, T: Pod>(
        &'p self,
        arr: &'p SharedArray<T>,
    ) -> ParIter<'p, ArraySource<T>, Id> {
        let opts = Opts {
            error: self.check_array(arr).err(),
            ..Opts::default()
        };
        ParIter {
            pool: self,
            source: arr.desc(),
            state: (),
            chunking: self.inner().default_chunking(),
            opts,
            _types: PhantomData,
        }
    }

    /// A parallel iterator over the integers of `range`.
    pub fn par_range(&self, range: Range<usize>) -> ParIter<'_, RangeSource, Id> {
        ParIter {
            pool: self,
            source: RangeArgs::new(range),
            state: (),
            chunking: self.inner().default_chunking(),
            opts: Opts::default(),
            _types: PhantomData,
        }
    }
}

impl<'p, S: Source> ParIter<'p, S, Id> {
    /// Pairs every item with its index.
    pub fn enumerate(self) -> ParIter<'p, Enumerated<S>, Id> {
        ParIter {
            pool: self.pool,
            source: self.source,
            state: (),
            chunking: self.chunking,
            opts: self.opts,
            _types: PhantomData,
        }
    }
}

impl<'p, S: Source, St: Stage<S::Item>> ParIter<'p, S, St> {
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

    /// Applies `f` to every item.
    pub fn map<F: Fn(St::Out) -> U + TaskFn, U: 'static>(
        self,
        _f: F,
    ) -> ParIter<'p, S, Map<St, F, U>> {
        assert_stateless::<F>();
        self.restage(|s| s)
    }

    /// Applies `f(&ctx, item)`; `ctx` is serialized once and decoded once per worker.
    pub fn map_with<C, F, U>(self, ctx: C, _f: F) -> ParIter<'p, S, MapWith<St, C, F, U>>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, St::Out) -> U + TaskFn,
        U: 'static,
    {
        assert_stateless::<F>();
        self.restage(|s| (s, ctx))
    }

    /// Applies `f(&mut state, item)`, where `state = init()` runs once per worker
    /// process per job (not once per chunk).
    pub fn map_init<I, T, F, U>(self, _init: I, _f: F) -> ParIter<'p, S, MapInit<St, I, T, F, U>>
    where
        I: Fn() -> T + TaskFn,
        T: 'static,
        F: Fn(&mut T, St::Out) -> U + TaskFn,
        U: 'static,
    {
        assert_stateless::<I>();
        assert_stateless::<F>();
        self.restage(|s| s)
    }

    /// Applies `f(&ctx, item)`, where `ctx` is the task's [`Ctx`](crate::Ctx): nested
    /// jobs (`ctx.par_map(..)`), `ctx.is_cancelled()`, `ctx.progress(..)`,
    /// `ctx.report(..)`.
    pub fn map_ctx<F, U>(self, _f: F) -> ParIter<'p, S, MapCtx<St, F, U>>
    where
        F: Fn(&crate::Ctx, St::Out) -> U + TaskFn,
        U: 'static,
    {
        assert_stateless::<F>();
        self.restage(|s| s)
    }

    /// Calls `f` with the job's progress while a terminal operation waits (at most every
    /// 10 ms, when it changed, monotonic, and once with the final value).
    pub fn on_progress(mut self, f: impl FnMut(crate::Progress) + Send + 'static) -> Self {
        self.opts.on_progress = Some(Box::new(f));
        self
    }

    /// Calls `f` with each partial result a task sends with `Ctx::report`, in order.
    pub fn on_report<T: DeserializeOwned>(mut self, mut f: impl FnMut(T) + Send + 'static) -> Self {
        self.opts.on_report = Some(Box::new(move |b: &[u8]| {
            if let Ok(v) = bincode::deserialize::<T>(b) {
                f(v);
            }
        }));
        self
    }

    /// Fails the job with [`Error::Timeout`](crate::Error::Timeout) if it runs longer
    /// than `timeout`.
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.opts.timeout = Some(timeout);
        self
    }

    /// Keeps the items for which `pred` holds.
    pub fn filter<F: Fn(&St::Out) -> bool + TaskFn>(
        self,
        _pred: F,
    ) -> ParIter<'p, S, Filter<St, F>> {
        assert_stateless::<F>();
        self.restage(|s| s)
    }

    /// Chunks hold at least `n` items (fewer only at the very end).
    pub fn with_min_len(mut self, n: usize) -> Self {
        self.chunking.min_len = n;
        self.chunking.max_len = self.chunking.max_len.max(n);
        self
    }

    /// Chunks hold at most `n` items (`with_max_len(1)`: one item per chunk).
    pub fn with_max_len(mut self, n: usize) -> Self {
        self.chunking.max_len = n;
        self.chunking.min_len = self.chunking.min_len.min(n.max(1));
        self
    }

    fn spawn<T: Terminal<St::Out>, R: 'static>(
        self,
        finish: impl FnOnce(Vec<T::Acc>) -> Result<R> + Send + 'static,
    ) -> Result<JobHandle<R>>
    where
        T::Acc: 'static,
    {
        if let Some(e) = self.opts.error {
            return Err(e);
        }
        let n = S::len(&self.source);
        let args = (self.source, self.state);
        let sub = self
            .pool
            .submit::<IterJob<S, St, T>>(&args, n, self.chunking)?;
        let handle = JobHandle::new(
            sub,
            Box::new(move |sub| {
                let parts = if T::HAS_ACC {
                    sub.partials::<T::Acc>()?
                } else {
                    Vec::new()
                };
                finish(parts.into_iter().map(|(_, a)| a).collect())
            }),
        );
        Ok(handle.with_opts(
            self.opts.on_progress,
            self.opts.on_report,
            self.opts.timeout,
        ))
    }

    fn run<T: Terminal<St::Out>, R: 'static>(
        self,
        finish: impl FnOnce(Vec<T::Acc>) -> Result<R> + Send + 'static,
    ) -> Result<R>
    where
        T::Acc: 'static,
    {
        self.spawn::<T, R>(finish)?.wait()
    }

    /// Calls `f` on every item, in the workers.
    pub fn for_each<F: Fn(St::Out) + TaskFn>(self, _f: F) -> Result<()> {
        assert_stateless::<F>();
        self.run::<ForEach<F>, ()>(|_| Ok(()))
    }

    /// Calls `f(&ctx, item)` on every item; `ctx` travels once per worker.
    pub fn for_each_with<C, F>(self, ctx: C, _f: F) -> Result<()>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, St::Out) + TaskFn,
    {
        assert_stateless::<F>();
        let it: ParIter<'p, S, MapWith<St, C, F, ()>> =
            self.map_with(ctx, crate::task::conjure::<F>());
        it.run::<Drain, ()>(|_| Ok(()))
    }

    /// Calls `f(&ctx, item)` on every item, with the task's [`Ctx`](crate::Ctx).
    pub fn for_each_ctx<F: Fn(&crate::Ctx, St::Out) + TaskFn>(self, _f: F) -> Result<()> {
        assert_stateless::<F>();
        let it: ParIter<'p, S, MapCtx<St, F, ()>> = self.map_ctx(crate::task::conjure::<F>());
        it.run::<Drain, ()>(|_| Ok(()))
    }

    /// Starts [`for_each`](ParIter::for_each) and returns its handle.
    ///
    /// Only over index ranges (`par_range`): a job over a shared array must end before
    /// the array may go, which only the blocking terminals guarantee.
    ///
    /// ```compile_fail
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(8 << 20).build()?;
    /// let x = pool.array_from_fn(10, |i| i as u64)?;
    /// let h = pool.par_iter(&x).spawn_for_each(|_: u64| {})?; // the array could go first
    /// drop(x);
    /// h.wait()?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::par_map`]'s submission errors.
    pub fn spawn_for_each<F: Fn(St::Out) + TaskFn>(self, _f: F) -> Result<JobHandle<()>>
    where
        S: Detached,
    {
        assert_stateless::<F>();
        self.spawn::<ForEach<F>, ()>(|_| Ok(()))
    }

    /// Starts [`collect_vec`](ParIter::collect_vec) and returns its handle (index ranges
    /// only, as [`spawn_for_each`](ParIter::spawn_for_each)).
    ///
    /// # Errors
    /// As [`Pool::par_map`]'s submission errors.
    pub fn spawn_collect_vec(self) -> Result<JobHandle<Vec<St::Out>>>
    where
        S: Detached,
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        self.spawn::<CollectVec, _>(|parts| Ok(parts.into_iter().flatten().collect()))
    }

    /// All items, in input order, in a `Vec` in this process.
    pub fn collect_vec(self) -> Result<Vec<St::Out>>
    where
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        self.run::<CollectVec, _>(|parts| Ok(parts.into_iter().flatten().collect()))
    }

    /// The sum of the items (`0` for none).
    pub fn sum<T>(self) -> Result<T>
    where
        St: Stage<S::Item, Out = T>,
        T: Serialize + DeserializeOwned + std::iter::Sum<T> + 'static,
    {
        self.run::<Sum, T>(|parts| Ok(parts.into_iter().sum()))
    }

    /// The number of items.
    pub fn count(self) -> Result<usize> {
        self.run::<Count, usize>(|parts| Ok(parts.into_iter().sum::<u64>() as usize))
    }

    /// The smallest item (the first of equals), `None` if there is none.
    pub fn min(self) -> Result<Option<St::Out>>
    where
        St::Out: Ord + Serialize + DeserializeOwned + 'static,
    {
        self.run::<MinMax<false>, _>(|parts| {
            Ok(parts.into_iter().fold(None, MinMax::<false>::merge))
        })
    }

    /// The largest item (the last of equals), `None` if there is none.
    pub fn max(self) -> Result<Option<St::Out>>
    where
        St::Out: Ord + Serialize + DeserializeOwned + 'static,
    {
        self.run::<MinMax<true>, _>(|parts| Ok(parts.into_iter().fold(None, MinMax::<true>::merge)))
    }

    /// Combines all items with the associative `op`, in input order; `identity()` for
    /// none.
    pub fn reduce<I, Op>(self, _identity: I, _op: Op) -> Result<St::Out>
    where
        St::Out: Serialize + DeserializeOwned + 'static,
        I: Fn() -> St::Out + TaskFn,
        Op: Fn(St::Out, St::Out) -> St::Out + TaskFn,
    {
        assert_stateless::<I>();
        assert_stateless::<Op>();
        self.run::<Reduce<I, Op>, _>(|parts| {
            Ok(parts
                .into_iter()
                .fold(None, Reduce::<I, Op>::merge)
                .unwrap_or_else(Reduce::<I, Op>::identity))
        })
    }

    /// Folds each chunk with `op` starting from `identity()`; returns one accumulator
    /// per chunk, in input order (combine them with a sequential fold).
    pub fn fold<I, Op, A>(self, _identity: I, _op: Op) -> Result<Vec<A>>
    where
        A: Serialize + DeserializeOwned + 'static,
        I: Fn() -> A + TaskFn,
        Op: Fn(A, St::Out) -> A + TaskFn,
    {
        assert_stateless::<I>();
        assert_stateless::<Op>();
        self.run::<Fold<I, Op, A>, _>(|parts| Ok(parts.into_iter().flatten().collect()))
    }

    /// Whether `pred` holds for some item; stops the other workers once one is found.
    pub fn any<F: Fn(St::Out) -> bool + TaskFn>(self, _pred: F) -> Result<bool> {
        assert_stateless::<F>();
        self.run::<AnyAll<F, false>, _>(|parts| Ok(parts.into_iter().any(|b| b)))
    }

    /// Whether `pred` holds for every item; stops at the first that fails.
    pub fn all<F: Fn(St::Out) -> bool + TaskFn>(self, _pred: F) -> Result<bool> {
        assert_stateless::<F>();
        self.run::<AnyAll<F, true>, _>(|parts| Ok(!parts.into_iter().any(|b| b)))
    }

    /// Some item for which `pred` holds (not necessarily the first); stops the other
    /// workers once one is found.
    pub fn find_any<F: Fn(&St::Out) -> bool + TaskFn>(self, _pred: F) -> Result<Option<St::Out>>
    where
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        assert_stateless::<F>();
        self.run::<FindAny<F>, _>(|parts| Ok(parts.into_iter().flatten().next()))
    }

    /// Writes the items into a new shared array, in input order, with no copy through
    /// this process (each worker writes its chunk in place).
    pub fn collect_array(self) -> Result<SharedArray<St::Out>>
    where
        St: OneToOne,
        St::Out: Pod,
    {
        if let Some(e) = self.opts.error {
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
        JobHandle::new(sub, Box::new(|_| Ok(())))
            .with_opts(
                self.opts.on_progress,
                self.opts.on_report,
                self.opts.timeout,
            )
            .wait()?;
        Ok(out)
    }
}

/// The job kind of a pipeline ending in terminal `T`.
pub(crate) struct IterJob<S, St, T>(PhantomData<fn(S, St, T)>);

impl<S: Source, St: Stage<S::Item>, T: Terminal<St::Out>> JobKind for IterJob<S, St, T> {
    type Args = (S::Args, St::State);
    type Local = (S::Local, St::Local);
    type Partial = T::Acc;
    const ORDERED: bool = T::ORDERED;

    fn init(args: &Self::Args, _: &WorkerCx) -> Result<Self::Local> {
        Ok((S::init(&args.0)?, St::init(&args.1)?))
    }

    fn run(
        args: &Self::Args,
        (src, st): &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<T::Acc>, bool) {
        let mut acc = T::start();
        let flow = S::feed(src, range, |item| {
            St::push(&args.1, st, item, &mut |out| T::step(&mut acc, out))
        });
        // A break is a short-circuit: the whole job stops claiming chunks.
        (T::HAS_ACC.then_some(acc), flow.is_break())
    }

    fn merge(left: T::Acc, right: T::Acc) -> T::Acc {
        T::merge(left, right)
    }
}

/// The job kind of `collect_array`: item `i` is written to `out[i]`.
pub(crate) struct CollectArray<S, St>(PhantomData<fn(S, St)>);

impl<S: Source, St: Stage<S::Item> + OneToOne> JobKind for CollectArray<S, St>
where
    St::Out: Pod,
{
    /// Source, stages, output, and whether to write it past the cache
    /// ([`crate::stream`]).
    type Args = (S::Args, St::State, ArrayDesc<St::Out>, bool);
    type Local = (S::Local, St::Local, Resolved<St::Out>);
    type Partial = ();
    const ORDERED: bool = false;

    fn init(args: &Self::Args, _: &WorkerCx) -> Result<Self::Local> {
        // SAFETY: the client owns the output array until the job has ended.
        let out = unsafe { Resolved::new(&args.2) }?;
        Ok((S::init(&args.0)?, St::init(&args.1)?, out))
    }

    fn run(
        args: &Self::Args,
        (src, st, out): &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<()>, bool) {
        // SAFETY: chunk `range` is handed to this worker only.
        let dst = unsafe { out.slice_mut(range.clone()) };
        if args.3 {
            let mut w = StreamWriter::new(dst);
            let _ = S::feed(src, range, |item| {
                St::push(&args.1, st, item, &mut |o| {
                    w.push(o);
                    ControlFlow::Continue(())
                })
            });
        } else {
            let mut i = 0;
            let _ = S::feed(src, range, |item| {
                St::push(&args.1, st, item, &mut |o| {
                    dst[i] = o;
                    i += 1;
                    ControlFlow::Continue(())
                })
            });
        }
        (None, false)
    }
}
