//! Terminal operations of [`ParIter`] that may stop early: `any`, `all`, the `find_*`
//! and `position_*` searches, and the `try_*` forms.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::fallible::{finish, Try, TryAcc, TryFold, TryForEach, TryReduce};
use super::search::{AnyAll, Find, Position};
use super::source::Source;
use super::stage::{OneToOne, Stage};
use super::ParIter;
use crate::task::{assert_stateless, conjure, TaskFn};
use crate::Result;

impl<'p, S: Source, St: Stage<S::Item>> ParIter<'p, S, St> {
    /// Whether `pred` holds for some item; stops the other workers once one is found.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// assert!(pool.par_range(0u32..1_000_000).any(|x: u32| x == 999_999)?);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn any<F: Fn(St::Out) -> bool + TaskFn>(self, _pred: F) -> Result<bool> {
        assert_stateless::<F>();
        self.run::<AnyAll<F, false>, _>((), |parts| Ok(parts.into_iter().any(|b| b)))
    }

    /// Whether `pred` holds for every item; stops at the first that fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// assert!(!pool.par_range(0u32..1000).all(|x: u32| x < 500)?);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn all<F: Fn(St::Out) -> bool + TaskFn>(self, _pred: F) -> Result<bool> {
        assert_stateless::<F>();
        self.run::<AnyAll<F, true>, _>((), |parts| Ok(!parts.into_iter().any(|b| b)))
    }

    /// Some item for which `pred` holds (not necessarily the first); stops the other
    /// workers once one is found.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let x = pool.par_range(0u32..1000).find_any(|x: &u32| x % 100 == 99)?;
    /// assert_eq!(x.map(|x| x % 100), Some(99));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn find_any<F: Fn(&St::Out) -> bool + TaskFn>(self, _pred: F) -> Result<Option<St::Out>>
    where
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        assert_stateless::<F>();
        self.run_merged::<Find<F, 0>>(()).map(Option::flatten)
    }

    /// The first item in input order for which `pred` holds; stops claiming chunks after
    /// the one where it is found.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// assert_eq!(pool.par_range(0u32..1000).find_first(|x: &u32| x % 100 == 99)?, Some(99));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn find_first<F: Fn(&St::Out) -> bool + TaskFn>(self, _pred: F) -> Result<Option<St::Out>>
    where
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        assert_stateless::<F>();
        self.run_merged::<Find<F, 1>>(()).map(Option::flatten)
    }

    /// The last item in input order for which `pred` holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// assert_eq!(pool.par_range(0u32..1000).find_last(|x: &u32| x % 100 == 99)?, Some(999));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn find_last<F: Fn(&St::Out) -> bool + TaskFn>(self, _pred: F) -> Result<Option<St::Out>>
    where
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        assert_stateless::<F>();
        self.run_merged::<Find<F, 2>>(()).map(Option::flatten)
    }

    /// Calls `f` on every item until one returns `Err`/`None`, and returns that failure
    /// (the first in input order), or `Ok(())`/`Some(())`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let r = pool
    ///     .par_range(0u32..1000)
    ///     .try_for_each(|x: u32| if x % 300 == 299 { Err(format!("bad {x}")) } else { Ok(()) })?;
    /// assert_eq!(r, Err("bad 299".to_string()));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn try_for_each<F, R>(self, f: F) -> Result<R>
    where
        F: Fn(St::Out) -> R + TaskFn,
        R: Try<Output = ()>,
    {
        let acc = self.map(f).run_merged::<TryForEach>(())?;
        Ok(finish(acc.unwrap_or(TryAcc::Going(())), R::from_output))
    }

    /// Folds each chunk as [`fold`](ParIter::fold) does with an `op` that may fail:
    /// the accumulators of all chunks, or the first failure in input order.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let ok = pool.par_range(0u32..100).try_fold(|| 0u32, |a: u32, x: u32| a.checked_add(x))?;
    /// assert_eq!(ok.map(|v| v.iter().sum::<u32>()), Some(4950));
    /// let overflow = pool.par_range(0u32..100).try_fold(|| 0u8, |a: u8, x: u32| a.checked_add(x as u8))?;
    /// assert_eq!(overflow, None);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn try_fold<I, Op, R>(self, _identity: I, _op: Op) -> Result<R::Map<Vec<R::Output>>>
    where
        R: Try,
        R::Output: Serialize + DeserializeOwned + 'static,
        I: Fn() -> R::Output + TaskFn,
        Op: Fn(R::Output, St::Out) -> R + TaskFn,
    {
        assert_stateless::<I>();
        assert_stateless::<Op>();
        let acc = self.run_merged::<TryFold<I, Op, R>>(())?;
        Ok(finish(
            acc.unwrap_or(TryAcc::Going(Vec::new())),
            <R::Map<Vec<R::Output>> as Try>::from_output,
        ))
    }

    /// Combines items that are `Result`s or `Option`s with an associative `op` that may
    /// fail, in input order; the first failure (of an item or of `op`) is returned.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let sum = pool.par_range(0u32..100).map(|x: u32| Some(x)).try_reduce(|| 0u32, |a: u32, b: u32| a.checked_add(b))?;
    /// assert_eq!(sum, Some(4950));
    /// let r = pool
    ///     .par_range(0i32..100)
    ///     .map(|x: i32| if x == 42 { Err(x) } else { Ok(x) })
    ///     .try_reduce(|| 0, |a: i32, b: i32| Ok(a + b))?;
    /// assert_eq!(r, Err(42));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn try_reduce<I, Op, R>(self, _identity: I, _op: Op) -> Result<R>
    where
        St: Stage<S::Item, Out = R>,
        R: Try,
        R::Output: Serialize + DeserializeOwned + 'static,
        I: Fn() -> R::Output + TaskFn,
        Op: Fn(R::Output, R::Output) -> R + TaskFn,
    {
        assert_stateless::<I>();
        assert_stateless::<Op>();
        let acc = self.run_merged::<TryReduce<Op>>(())?;
        Ok(finish(acc.unwrap_or(TryAcc::Going(None)), |a| {
            R::from_output(a.unwrap_or_else(conjure::<I>()))
        }))
    }
}

/// The index searches: on indexed iterators only (before any filter-like stage).
impl<'p, S: Source, St: Stage<S::Item>> ParIter<'p, S, St> {
    /// The index of some item for which `pred` holds (not necessarily the first); stops
    /// the other workers once one is found.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let i = pool.par_range(0u32..1000).map(|x: u32| x * 3).position_any(|x: u32| x % 300 == 0)?;
    /// assert_eq!(i.map(|i| i % 100), Some(0));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn position_any<F: Fn(St::Out) -> bool + TaskFn>(self, _pred: F) -> Result<Option<usize>>
    where
        St: OneToOne,
    {
        assert_stateless::<F>();
        let p = self.enumerate().run_merged::<Position<F, 0>>(())?;
        Ok(p.flatten().map(|i| i as usize))
    }

    /// The index of the first item for which `pred` holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let a = pool.array_from_slice(&[5u8, 7, 9, 7])?;
    /// assert_eq!(pool.par_iter(&a).position_first(|x: u8| x == 7)?, Some(1));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn position_first<F: Fn(St::Out) -> bool + TaskFn>(self, _pred: F) -> Result<Option<usize>>
    where
        St: OneToOne,
    {
        assert_stateless::<F>();
        let p = self.enumerate().run_merged::<Position<F, 1>>(())?;
        Ok(p.flatten().map(|i| i as usize))
    }

    /// The index of the last item for which `pred` holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let a = pool.array_from_slice(&[5u8, 7, 9, 7])?;
    /// assert_eq!(pool.par_iter(&a).position_last(|x: u8| x == 7)?, Some(3));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn position_last<F: Fn(St::Out) -> bool + TaskFn>(self, _pred: F) -> Result<Option<usize>>
    where
        St: OneToOne,
    {
        assert_stateless::<F>();
        let p = self.enumerate().run_merged::<Position<F, 2>>(())?;
        Ok(p.flatten().map(|i| i as usize))
    }
}
