//! Terminal operations of [`ParIter`] that run closures for their effects or bring the
//! items back: the `for_each` forms, `collect_vec`, `collect`, `unzip`, `partition` and
//! the `spawn_*` forms.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::collect::{FromParIter, ParItems};
use super::env::{CtxEnv, Init, With, WithCtx};
use super::source::{Detached, Source};
use super::stage::{Map, Stage};
use super::terminal::{CollectVec, Drain, Partition};
use super::ParIter;
use crate::pool::JobHandle;
use crate::task::{assert_stateless, TaskFn};
use crate::{Ctx, Result};

impl<'p, S: Source, St: Stage<S::Item>> ParIter<'p, S, St> {
    /// Calls `f` on every item, in the workers.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// // Runs in the workers: a failed assertion would fail the job.
    /// pool.par_range(0u32..100).for_each(|x: u32| assert!(x < 100))?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn for_each<F: Fn(St::Out) + TaskFn>(self, f: F) -> Result<()> {
        self.map(f).run::<Drain, ()>((), |_| Ok(()))
    }

    /// Calls `f(&state, item)` on every item; `state` travels once per worker.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// pool.par_range(0u32..10).for_each_with(10u32, |limit: &u32, x: u32| assert!(x < *limit))?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn for_each_with<C, F>(self, state: C, f: F) -> Result<()>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, St::Out) + TaskFn,
    {
        let it: ParIter<'p, S, Map<St, With<C>, F, ()>> = self.map_with(state, f);
        it.run::<Drain, ()>((), |_| Ok(()))
    }

    /// Calls `f(&mut t, item)` on every item, `t = init()` once per worker per job.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// pool.par_range(0u32..100).for_each_init(Vec::new, |buf: &mut Vec<u32>, x: u32| buf.push(x))?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn for_each_init<I, T, F>(self, init: I, f: F) -> Result<()>
    where
        I: Fn() -> T + TaskFn,
        T: 'static,
        F: Fn(&mut T, St::Out) + TaskFn,
    {
        let it: ParIter<'p, S, Map<St, Init<I, T>, F, ()>> = self.map_init(init, f);
        it.run::<Drain, ()>((), |_| Ok(()))
    }

    /// Calls `f(&ctx, item)` on every item, with the task's [`Ctx`].
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::Ctx;
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// pool.par_range(0u32..4).for_each_ctx(|ctx: &Ctx, x: u32| ctx.progress(x as u64, 4))?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn for_each_ctx<F: Fn(&Ctx, St::Out) + TaskFn>(self, f: F) -> Result<()> {
        let it: ParIter<'p, S, Map<St, CtxEnv, F, ()>> = self.map_ctx(f);
        it.run::<Drain, ()>((), |_| Ok(()))
    }

    /// Calls `f(&state, &ctx, item)` on every item: a state value and the task's [`Ctx`].
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::Ctx;
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// pool.par_range(0u64..4).for_each_with_ctx(4u64, |total: &u64, ctx: &Ctx, x: u64| ctx.progress(x, *total))?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn for_each_with_ctx<C, F>(self, state: C, f: F) -> Result<()>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, &Ctx, St::Out) + TaskFn,
    {
        let it: ParIter<'p, S, Map<St, WithCtx<C>, F, ()>> = self.map_with_ctx(state, f);
        it.run::<Drain, ()>((), |_| Ok(()))
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
    /// As [`Pool::par_map`](crate::Pool::par_map)'s submission errors.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let h = pool.par_range(0u32..1000).spawn_for_each(|x: u32| assert!(x < 1000))?;
    /// h.wait()?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn spawn_for_each<F: Fn(St::Out) + TaskFn>(self, f: F) -> Result<JobHandle<()>>
    where
        S: Detached,
    {
        self.map(f).spawn::<Drain, ()>((), |_| Ok(()))
    }

    /// Starts [`collect_vec`](ParIter::collect_vec) and returns its handle (index ranges
    /// only, as [`spawn_for_each`](ParIter::spawn_for_each)).
    ///
    /// # Errors
    /// As [`Pool::par_map`](crate::Pool::par_map)'s submission errors.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let h = pool.par_range(0u32..4).map(|x: u32| x + 1).spawn_collect_vec()?;
    /// assert_eq!(h.wait()?, [1, 2, 3, 4]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn spawn_collect_vec(self) -> Result<JobHandle<Vec<St::Out>>>
    where
        S: Detached,
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        self.spawn::<CollectVec, _>((), |parts| Ok(super::collect::concat(parts.map(|p| p.0))))
    }

    /// All items, in input order, in a `Vec` in this process: the fast form of
    /// [`collect`](ParIter::collect).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.par_range(0u8..3).map(|x: u8| format!("#{x}")).collect_vec()?;
    /// assert_eq!(v, ["#0", "#1", "#2"]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn collect_vec(self) -> Result<Vec<St::Out>>
    where
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        self.run::<CollectVec, _>((), |parts| Ok(super::collect::concat(parts.map(|p| p.0))))
    }

    /// All items, in input order, collected into any `C: FromIterator<Item>` in this
    /// process (`Vec`, `HashMap`, `BTreeMap`, `String`, ...), as rayon's `collect`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let s: String = pool.par_range(0u8..5).map(|i: u8| (b'a' + i) as char).collect()?;
    /// assert_eq!(s, "abcde");
    /// let m: BTreeMap<u32, bool> = pool.par_range(0u32..3).map(|x: u32| (x, x % 2 == 0)).collect()?;
    /// assert_eq!(m[&2], true);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// A type that cannot be built from the items names the forms that can:
    ///
    /// ```compile_fail,E0277
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// // error: a `SharedArray<u32>` cannot be collected ... use `collect_array()`
    /// let a: procyon::SharedArray<u32> = pool.par_range(0u32..3).collect()?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn collect<C>(self) -> Result<C>
    where
        C: FromParIter<St::Out> + 'static,
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        self.run::<CollectVec, _>((), |parts| {
            Ok(super::collect::build(ParItems::new(parts.map(|p| p.0))))
        })
    }

    /// Splits pairs into two collections, in input order (rayon's `unzip`).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let (xs, ys): (Vec<u32>, Vec<u64>) = pool.par_range(0u32..3).map(|x: u32| (x, x as u64 * 10)).unzip()?;
    /// assert_eq!((xs, ys), (vec![0, 1, 2], vec![0, 10, 20]));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn unzip<A, B, CA, CB>(self) -> Result<(CA, CB)>
    where
        St: Stage<S::Item, Out = (A, B)>,
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        CA: Default + Extend<A>,
        CB: Default + Extend<B>,
    {
        let items = self.run::<CollectVec, _>((), |parts| Ok(ParItems::new(parts.map(|p| p.0))))?;
        Ok(items.unzip())
    }

    /// The items for which `pred` holds, and the others, each in input order (rayon's
    /// `partition`); the predicate runs in the workers.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let (even, odd): (Vec<u32>, Vec<u32>) = pool.par_range(0u32..7).partition(|x: &u32| x % 2 == 0)?;
    /// assert_eq!(even, [0, 2, 4, 6]);
    /// assert_eq!(odd, [1, 3, 5]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn partition<F, CA, CB>(self, _pred: F) -> Result<(CA, CB)>
    where
        F: Fn(&St::Out) -> bool + TaskFn,
        St::Out: Serialize + DeserializeOwned + 'static,
        CA: Default + Extend<St::Out>,
        CB: Default + Extend<St::Out>,
    {
        assert_stateless::<F>();
        let (mut a, mut b) = (CA::default(), CB::default());
        if let Some((yes, no)) = self.run_merged::<Partition<F>>(())? {
            a.extend(yes.0);
            b.extend(no.0);
        }
        Ok((a, b))
    }
}
