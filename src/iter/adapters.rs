//! The per-item adapters of [`ParIter`]: `map`, `filter`, `filter_map`, `flat_map`, each
//! in its environment forms (see [`env`](super::env)), and `flatten`. The indexed ones
//! (`enumerate`, `zip`, ...) are in [`indexed_adapters`](super::indexed_adapters).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::env::{CtxEnv, Env, Init, Plain, With, WithCtx};
use super::source::Source;
use super::stage::{Filter, FilterMap, FlatMap, Flatten, Map, Stage};
use super::ParIter;
use crate::task::{assert_stateless, TaskFn};
use crate::Ctx;

impl<'p, S: Source, St: Stage<S::Item>> ParIter<'p, S, St> {
    /// Adds a stage of environment `E` whose state is `env`.
    fn stage<E: Env, St2>(self, env: E::State) -> ParIter<'p, S, St2>
    where
        St2: Stage<S::Item, State = (St::State, E::State)>,
    {
        self.restage(|s| (s, env))
    }

    /// Applies `f` to every item.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.par_range(0u32..5).map(|x: u32| x * 10).collect_vec()?;
    /// assert_eq!(v, [0, 10, 20, 30, 40]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn map<F: Fn(St::Out) -> U + TaskFn, U: 'static>(
        self,
        _f: F,
    ) -> ParIter<'p, S, Map<St, Plain, F, U>> {
        assert_stateless::<F>();
        self.stage::<Plain, _>(())
    }

    /// Applies `f(&state, item)`; `state` is serialized once and decoded once per worker.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let names = vec!["a".to_string(), "b".to_string()];
    /// let v = pool.par_range(0usize..2).map_with(names, |n: &Vec<String>, i: usize| n[i].clone()).collect_vec()?;
    /// assert_eq!(v, ["a", "b"]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn map_with<C, F, U>(self, state: C, _f: F) -> ParIter<'p, S, Map<St, With<C>, F, U>>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, St::Out) -> U + TaskFn,
        U: 'static,
    {
        assert_stateless::<F>();
        self.stage::<With<C>, _>(state)
    }

    /// Applies `f(&mut t, item)`, where `t = init()` runs once per worker process per
    /// job (not once per chunk).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// // A scratch buffer made once per worker, reused for every item.
    /// let v = pool
    ///     .par_range(0usize..4)
    ///     .map_init(Vec::<u8>::new, |buf: &mut Vec<u8>, i: usize| { buf.clear(); buf.resize(i, 1); buf.len() })
    ///     .collect_vec()?;
    /// assert_eq!(v, [0, 1, 2, 3]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn map_init<I, T, F, U>(self, _init: I, _f: F) -> ParIter<'p, S, Map<St, Init<I, T>, F, U>>
    where
        I: Fn() -> T + TaskFn,
        T: 'static,
        F: Fn(&mut T, St::Out) -> U + TaskFn,
        U: 'static,
    {
        assert_stateless::<I>();
        assert_stateless::<F>();
        self.stage::<Init<I, T>, _>(())
    }

    /// Applies `f(&ctx, item)`, where `ctx` is the task's [`Ctx`]: nested jobs
    /// (`ctx.par_map(..)`), `ctx.is_cancelled()`, `ctx.progress(..)`, `ctx.report(..)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::Ctx;
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.par_range(1u64..4).map_ctx(|ctx: &Ctx, n: u64| ctx.par_range(0..n).sum::<u64>().unwrap()).collect_vec()?;
    /// assert_eq!(v, [0, 1, 3]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn map_ctx<F, U>(self, _f: F) -> ParIter<'p, S, Map<St, CtxEnv, F, U>>
    where
        F: Fn(&Ctx, St::Out) -> U + TaskFn,
        U: 'static,
    {
        assert_stateless::<F>();
        self.stage::<CtxEnv, _>(())
    }

    /// Applies `f(&state, &ctx, item)`: a state value and the task's [`Ctx`] together.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::Ctx;
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool
    ///     .par_range(1u64..4)
    ///     .map_with_ctx(10u64, |k: &u64, ctx: &Ctx, n: u64| ctx.par_range(0..n).map(|i: u64| i + 1).sum::<u64>().unwrap() * k)
    ///     .collect_vec()?;
    /// assert_eq!(v, [10, 30, 60]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn map_with_ctx<C, F, U>(self, state: C, _f: F) -> ParIter<'p, S, Map<St, WithCtx<C>, F, U>>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, &Ctx, St::Out) -> U + TaskFn,
        U: 'static,
    {
        assert_stateless::<F>();
        self.stage::<WithCtx<C>, _>(state)
    }

    /// Keeps the items for which `pred` holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.par_range(0u32..10).filter(|x: &u32| x % 3 == 0).collect_vec()?;
    /// assert_eq!(v, [0, 3, 6, 9]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn filter<F: Fn(&St::Out) -> bool + TaskFn>(
        self,
        _pred: F,
    ) -> ParIter<'p, S, Filter<St, Plain, F>> {
        assert_stateless::<F>();
        self.stage::<Plain, _>(())
    }

    /// Keeps the items for which `pred(&state, &item)` holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.par_range(0u32..10).filter_with(4u32, |k: &u32, x: &u32| x % k == 0).collect_vec()?;
    /// assert_eq!(v, [0, 4, 8]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn filter_with<C, F>(self, state: C, _pred: F) -> ParIter<'p, S, Filter<St, With<C>, F>>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, &St::Out) -> bool + TaskFn,
    {
        assert_stateless::<F>();
        self.stage::<With<C>, _>(state)
    }

    /// Keeps the items for which `pred(&mut t, &item)` holds, `t = init()` once per
    /// worker per job.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashSet;
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// // With one worker, a per-worker set keeps the first of each value.
    /// let a = pool.array_from_slice(&[3u8, 1, 3, 2, 1])?;
    /// let v = pool.par_iter(&a).filter_init(HashSet::new, |seen: &mut HashSet<u8>, x: &u8| seen.insert(*x)).collect_vec()?;
    /// assert_eq!(v, [3, 1, 2]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn filter_init<I, T, F>(
        self,
        _init: I,
        _pred: F,
    ) -> ParIter<'p, S, Filter<St, Init<I, T>, F>>
    where
        I: Fn() -> T + TaskFn,
        T: 'static,
        F: Fn(&mut T, &St::Out) -> bool + TaskFn,
    {
        assert_stateless::<I>();
        assert_stateless::<F>();
        self.stage::<Init<I, T>, _>(())
    }

    /// Applies `f` and keeps the `Some` results.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.par_range(0u32..10).filter_map(|x: u32| (x % 4 == 1).then(|| x * 100)).collect_vec()?;
    /// assert_eq!(v, [100, 500, 900]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn filter_map<F: Fn(St::Out) -> Option<U> + TaskFn, U: 'static>(
        self,
        _f: F,
    ) -> ParIter<'p, S, FilterMap<St, Plain, F, U>> {
        assert_stateless::<F>();
        self.stage::<Plain, _>(())
    }

    /// Applies `f(&state, item)` and keeps the `Some` results.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let words = vec!["zero".to_string(), "one".to_string(), "two".to_string()];
    /// let v = pool
    ///     .par_range(0usize..5)
    ///     .filter_map_with(words, |w: &Vec<String>, i: usize| w.get(i).cloned())
    ///     .collect_vec()?;
    /// assert_eq!(v, ["zero", "one", "two"]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn filter_map_with<C, F, U>(
        self,
        state: C,
        _f: F,
    ) -> ParIter<'p, S, FilterMap<St, With<C>, F, U>>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, St::Out) -> Option<U> + TaskFn,
        U: 'static,
    {
        assert_stateless::<F>();
        self.stage::<With<C>, _>(state)
    }

    /// Applies `f(&mut t, item)`, `t = init()` once per worker per job, and keeps the
    /// `Some` results.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool
    ///     .par_range(0u32..6)
    ///     .filter_map_init(String::new, |s: &mut String, x: u32| { s.clear(); s.push_str(&x.to_string()); (x % 2 == 0).then(|| s.clone()) })
    ///     .collect_vec()?;
    /// assert_eq!(v, ["0", "2", "4"]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn filter_map_init<I, T, F, U>(
        self,
        _init: I,
        _f: F,
    ) -> ParIter<'p, S, FilterMap<St, Init<I, T>, F, U>>
    where
        I: Fn() -> T + TaskFn,
        T: 'static,
        F: Fn(&mut T, St::Out) -> Option<U> + TaskFn,
        U: 'static,
    {
        assert_stateless::<I>();
        assert_stateless::<F>();
        self.stage::<Init<I, T>, _>(())
    }

    /// Applies `f` and yields every item of what it returns (a `Vec`, an `Option`, a
    /// range, any `IntoIterator`), in order.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.par_range(0u32..4).flat_map(|x: u32| vec![x; x as usize]).collect_vec()?;
    /// assert_eq!(v, [1, 2, 2, 3, 3, 3]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn flat_map<F, I>(self, _f: F) -> ParIter<'p, S, FlatMap<St, Plain, F, I>>
    where
        F: Fn(St::Out) -> I + TaskFn,
        I: IntoIterator + 'static,
    {
        assert_stateless::<F>();
        self.stage::<Plain, _>(())
    }

    /// The same as [`flat_map`](ParIter::flat_map), under rayon's name for a closure that
    /// returns a serial iterator (every procyon closure does).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.par_range(0u32..3).flat_map_iter(|x: u32| (0..x).map(move |i| (x, i))).collect_vec()?;
    /// assert_eq!(v, [(1, 0), (2, 0), (2, 1)]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn flat_map_iter<F, I>(self, f: F) -> ParIter<'p, S, FlatMap<St, Plain, F, I>>
    where
        F: Fn(St::Out) -> I + TaskFn,
        I: IntoIterator + 'static,
    {
        self.flat_map(f)
    }

    /// Yields every item of every item (each an `IntoIterator`: a `Vec`, an `Option`, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.par_range(0u32..4).map(|x: u32| (x % 2 == 1).then_some(x)).flatten().collect_vec()?;
    /// assert_eq!(v, [1, 3]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn flatten(self) -> ParIter<'p, S, Flatten<St>>
    where
        St::Out: IntoIterator,
    {
        self.restage(|s| s)
    }

    /// Applies `f(&state, item)` and yields every item of what it returns.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let text = vec!["a b".to_string(), "c".to_string()];
    /// let words = pool
    ///     .par_range(0usize..2)
    ///     .flat_map_with(text, |t: &Vec<String>, i: usize| t[i].split(' ').map(String::from).collect::<Vec<_>>())
    ///     .collect_vec()?;
    /// assert_eq!(words, ["a", "b", "c"]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn flat_map_with<C, F, I>(
        self,
        state: C,
        _f: F,
    ) -> ParIter<'p, S, FlatMap<St, With<C>, F, I>>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, St::Out) -> I + TaskFn,
        I: IntoIterator + 'static,
    {
        assert_stateless::<F>();
        self.stage::<With<C>, _>(state)
    }

    /// Applies `f(&mut t, item)`, `t = init()` once per worker per job, and yields every
    /// item of what it returns.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool
    ///     .par_range(0u32..3)
    ///     .flat_map_init(|| 7u32, |k: &mut u32, x: u32| [x, *k])
    ///     .collect_vec()?;
    /// assert_eq!(v, [0, 7, 1, 7, 2, 7]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn flat_map_init<In, T, F, I>(
        self,
        _init: In,
        _f: F,
    ) -> ParIter<'p, S, FlatMap<St, Init<In, T>, F, I>>
    where
        In: Fn() -> T + TaskFn,
        T: 'static,
        F: Fn(&mut T, St::Out) -> I + TaskFn,
        I: IntoIterator + 'static,
    {
        assert_stateless::<In>();
        assert_stateless::<F>();
        self.stage::<Init<In, T>, _>(())
    }
}
