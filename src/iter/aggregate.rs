//! Terminal operations of [`ParIter`] that combine the items into one value: `sum`,
//! `product`, `count`, `min`/`max` and their `_by`/`_by_key` forms, `reduce`,
//! `reduce_with`, `fold`, `fold_with`, `fold_reduce_unordered`.

use std::cmp::Ordering;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::reduce::{
    Fold, FoldFinishReduce, FoldReduce, FoldWith, MinMax, MinMaxBy, MinMaxByKey, Reduce,
};
use super::source::Source;
use super::stage::Stage;
use super::terminal::{Count, Product, Sum};
use super::ParIter;
use crate::task::{assert_stateless, conjure, TaskFn};
use crate::Result;

impl<'p, S: Source, St: Stage<S::Item>> ParIter<'p, S, St> {
    /// The sum of the items (`0` for none).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// assert_eq!(pool.par_range(1u64..101).sum::<u64>()?, 5050);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn sum<T>(self) -> Result<T>
    where
        St: Stage<S::Item, Out = T>,
        T: Serialize + DeserializeOwned + std::iter::Sum<T> + 'static,
    {
        self.run::<Sum, T>((), |parts| Ok(parts.into_iter().sum()))
    }

    /// The product of the items (`1` for none).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// assert_eq!(pool.par_range(1u64..11).product::<u64>()?, 3_628_800);
    /// assert_eq!(pool.par_range(0u64..0).product::<u64>()?, 1);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn product<T>(self) -> Result<T>
    where
        St: Stage<S::Item, Out = T>,
        T: Serialize + DeserializeOwned + std::iter::Product<T> + 'static,
    {
        self.run::<Product, T>((), |parts| Ok(parts.into_iter().product()))
    }

    /// The number of items.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// assert_eq!(pool.par_range(0u32..1000).filter(|x: &u32| x % 7 == 0).count()?, 143);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn count(self) -> Result<usize> {
        self.run::<Count, usize>((), |parts| Ok(parts.into_iter().sum::<u64>() as usize))
    }

    /// The smallest item (the first of equals), `None` if there is none.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// assert_eq!(pool.par_range(3i32..9).map(|x: i32| (x - 5).abs()).min()?, Some(0));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn min(self) -> Result<Option<St::Out>>
    where
        St::Out: Ord + Serialize + DeserializeOwned + 'static,
    {
        self.run_merged::<MinMax<false>>(()).map(Option::flatten)
    }

    /// The largest item (the last of equals), `None` if there is none.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// assert_eq!(pool.par_range(3i32..9).map(|x: i32| (x - 5).abs()).max()?, Some(3));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn max(self) -> Result<Option<St::Out>>
    where
        St::Out: Ord + Serialize + DeserializeOwned + 'static,
    {
        self.run_merged::<MinMax<true>>(()).map(Option::flatten)
    }

    /// The smallest item by `cmp` (the first of equals, as `Iterator::min_by`), `None`
    /// if there is none: the way to the minimum of `f64`s.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let a = pool.array_from_slice(&[2.5f64, -1.0, 7.0])?;
    /// assert_eq!(pool.par_iter(&a).min_by(|x: &f64, y: &f64| x.total_cmp(y))?, Some(-1.0));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn min_by<F>(self, _cmp: F) -> Result<Option<St::Out>>
    where
        F: Fn(&St::Out, &St::Out) -> Ordering + TaskFn,
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        assert_stateless::<F>();
        self.run_merged::<MinMaxBy<F, false>>(())
            .map(Option::flatten)
    }

    /// The largest item by `cmp` (the last of equals, as `Iterator::max_by`), `None` if
    /// there is none.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let a = pool.array_from_slice(&[2.5f64, -1.0, 7.0])?;
    /// assert_eq!(pool.par_iter(&a).max_by(|x: &f64, y: &f64| x.total_cmp(y))?, Some(7.0));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn max_by<F>(self, _cmp: F) -> Result<Option<St::Out>>
    where
        F: Fn(&St::Out, &St::Out) -> Ordering + TaskFn,
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        assert_stateless::<F>();
        self.run_merged::<MinMaxBy<F, true>>(())
            .map(Option::flatten)
    }

    /// The item with the smallest `key` (the first of equals, as
    /// `Iterator::min_by_key`), `None` if there is none.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let m = pool.par_range(0i32..10).min_by_key(|x: &i32| (x - 4).abs())?;
    /// assert_eq!(m, Some(4));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn min_by_key<K, F>(self, _key: F) -> Result<Option<St::Out>>
    where
        F: Fn(&St::Out) -> K + TaskFn,
        K: Ord + Serialize + DeserializeOwned + 'static,
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        assert_stateless::<F>();
        let best = self.run_merged::<MinMaxByKey<F, K, false>>(())?;
        Ok(best.flatten().map(|(_, x)| x))
    }

    /// The item with the largest `key` (the last of equals, as
    /// `Iterator::max_by_key`), `None` if there is none.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let m = pool.par_range(0i32..10).max_by_key(|x: &i32| x % 4)?;
    /// assert_eq!(m, Some(7));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn max_by_key<K, F>(self, _key: F) -> Result<Option<St::Out>>
    where
        F: Fn(&St::Out) -> K + TaskFn,
        K: Ord + Serialize + DeserializeOwned + 'static,
        St::Out: Serialize + DeserializeOwned + 'static,
    {
        assert_stateless::<F>();
        let best = self.run_merged::<MinMaxByKey<F, K, true>>(())?;
        Ok(best.flatten().map(|(_, x)| x))
    }

    /// Combines all items with the associative `op`, in input order; `identity()` for
    /// none.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// // Concatenation is associative, not commutative: the order is kept.
    /// let s = pool.par_range(0u8..5).map(|i: u8| i.to_string()).reduce(String::new, |a: String, b: String| a + &b)?;
    /// assert_eq!(s, "01234");
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn reduce<I, Op>(self, _identity: I, _op: Op) -> Result<St::Out>
    where
        St::Out: Serialize + DeserializeOwned + 'static,
        I: Fn() -> St::Out + TaskFn,
        Op: Fn(St::Out, St::Out) -> St::Out + TaskFn,
    {
        assert_stateless::<I>();
        assert_stateless::<Op>();
        let r = self.run_merged::<Reduce<Op>>(())?;
        Ok(r.flatten().unwrap_or_else(conjure::<I>()))
    }

    /// Combines all items with the associative `op`, in input order; `None` for none.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let a = pool.array_from_slice(&[3.0f64, 9.5, 1.0])?;
    /// assert_eq!(pool.par_iter(&a).reduce_with(f64::max)?, Some(9.5));
    /// assert_eq!(pool.par_range(0u32..0).reduce_with(|a: u32, b: u32| a + b)?, None);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn reduce_with<Op>(self, _op: Op) -> Result<Option<St::Out>>
    where
        St::Out: Serialize + DeserializeOwned + 'static,
        Op: Fn(St::Out, St::Out) -> St::Out + TaskFn,
    {
        assert_stateless::<Op>();
        self.run_merged::<Reduce<Op>>(()).map(Option::flatten)
    }

    /// Folds each chunk with `op` starting from `identity()`; returns one accumulator
    /// per chunk, in input order (combine them with a sequential fold or `reduce`).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let parts = pool.par_range(0u64..1000).fold(|| 0u64, |a: u64, x: u64| a + x)?;
    /// assert_eq!(parts.iter().sum::<u64>(), 499_500);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn fold<I, Op, A>(self, _identity: I, _op: Op) -> Result<Vec<A>>
    where
        A: Serialize + DeserializeOwned + 'static,
        I: Fn() -> A + TaskFn,
        Op: Fn(A, St::Out) -> A + TaskFn,
    {
        assert_stateless::<I>();
        assert_stateless::<Op>();
        self.run::<Fold<I, Op, A>, _>((), |parts| Ok(super::collect::concat(parts)))
    }

    /// Folds the items with `fold` into one accumulator per worker and combines those
    /// with `reduce`: rayon's `fold(identity, fold).reduce(identity, reduce)` for
    /// operations that do not care about order (counting, histograms, sets, sums).
    ///
    /// Each worker starts one accumulator from `identity()` and adds to it the items of
    /// every chunk it runs, whichever part of the input those come from, so there are at
    /// most as many accumulators to send back, decode and combine as workers took part,
    /// and the chunks can be small (good balance) at no cost in accumulators. The client
    /// combines them with `reduce` in no particular order; `identity()` if there are no
    /// items.
    ///
    /// The result equals the sequential `items.fold(identity(), fold)` when adding items
    /// in any order, and `reduce` of two accumulators, give what adding all their items
    /// to one would (as for a map of counts); for an operation that needs input order,
    /// use [`fold`](ParIter::fold), which keeps one accumulator per chunk in order, or
    /// [`reduce`](ParIter::reduce).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    ///
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let words = pool.strings_from_slice(&["a b", "b c", "c c"])?;
    /// let counts = pool.par_iter_strs(&words).fold_reduce_unordered(
    ///     HashMap::new,
    ///     |mut m: HashMap<String, u64>, line: &str| {
    ///         for w in line.split(' ') {
    ///             *m.entry(w.to_owned()).or_insert(0) += 1;
    ///         }
    ///         m
    ///     },
    ///     |mut a: HashMap<String, u64>, b: HashMap<String, u64>| {
    ///         for (w, c) in b {
    ///             *a.entry(w).or_insert(0) += c;
    ///         }
    ///         a
    ///     },
    /// )?;
    /// assert_eq!(counts["c"], 3);
    /// assert_eq!(counts.len(), 3);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn fold_reduce_unordered<I, F, R, A>(self, _identity: I, _fold: F, _reduce: R) -> Result<A>
    where
        A: Serialize + DeserializeOwned + 'static,
        I: Fn() -> A + TaskFn,
        F: Fn(A, St::Out) -> A + TaskFn,
        R: Fn(A, A) -> A + TaskFn,
    {
        assert_stateless::<I>();
        assert_stateless::<F>();
        assert_stateless::<R>();
        let r = self.run_merged::<FoldReduce<I, F, R, A>>(())?;
        Ok(r.flatten().unwrap_or_else(conjure::<I>()))
    }

    /// As [`fold_reduce_unordered`](ParIter::fold_reduce_unordered), with a worker's
    /// accumulator that never leaves it: each worker folds the items of every chunk it
    /// runs into one `L` from `identity()`, turns it with `finish` into the `A` it sends
    /// back, and the client combines those with `reduce`.
    ///
    /// `L` needs no serde and may hold the job's items as they come, `&str`s out of a
    /// [`SharedStrings`](crate::SharedStrings) or `&[T]`s out of a
    /// [`SharedVecs`](crate::SharedVecs): they stay valid until `finish` has run (the
    /// pool borrows the source until the job ends, and `finish` runs before that). So a
    /// word count can key its worker's map by `&str`, as a sequential or rayon count
    /// does, and copy each distinct word once in `finish`, not once per new word while
    /// counting. Nothing else may keep an item past the call that got it.
    ///
    /// The result is `finish(identity())` if there are no items. As for
    /// `fold_reduce_unordered`, `fold`, `finish` and `reduce` must not care in which
    /// order the items come: `reduce(finish(a), finish(b))` must be what `finish` of one
    /// accumulator of all their items would give.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    ///
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let lines = pool.strings_from_slice(&["a b", "b c", "c c"])?;
    /// let counts = pool.par_iter_strs(&lines).fold_finish_reduce_unordered(
    ///     HashMap::new,
    ///     |mut m: HashMap<&str, u64>, line: &str| {
    ///         for w in line.split(' ') {
    ///             *m.entry(w).or_insert(0) += 1;
    ///         }
    ///         m
    ///     },
    ///     |m: HashMap<&str, u64>| -> HashMap<String, u64> {
    ///         m.into_iter().map(|(w, c)| (w.to_owned(), c)).collect()
    ///     },
    ///     |mut a: HashMap<String, u64>, b: HashMap<String, u64>| {
    ///         for (w, c) in b {
    ///             *a.entry(w).or_insert(0) += c;
    ///         }
    ///         a
    ///     },
    /// )?;
    /// assert_eq!(counts["c"], 3);
    /// assert_eq!(counts.len(), 3);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn fold_finish_reduce_unordered<I, F, Fi, R, L, A>(
        self,
        _identity: I,
        _fold: F,
        _finish: Fi,
        _reduce: R,
    ) -> Result<A>
    where
        L: 'static,
        A: Serialize + DeserializeOwned + 'static,
        I: Fn() -> L + TaskFn,
        F: Fn(L, St::Out) -> L + TaskFn,
        Fi: Fn(L) -> A + TaskFn,
        R: Fn(A, A) -> A + TaskFn,
    {
        assert_stateless::<I>();
        assert_stateless::<F>();
        assert_stateless::<Fi>();
        assert_stateless::<R>();
        type T<I, F, Fi, R, L, A> = FoldFinishReduce<I, F, Fi, R, L, A>;
        let r = self.run_merged::<T<I, F, Fi, R, L, A>>(())?;
        Ok(match r.flatten() {
            Some(acc) => T::<I, F, Fi, R, L, A>::finished(acc),
            None => conjure::<Fi>()(conjure::<I>()()),
        })
    }

    /// As [`fold`](ParIter::fold), each chunk starting from a clone of `init` (rayon's
    /// `fold_with`): `init` travels to the workers once, so it can carry state.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let parts = pool.par_range(0u32..10).fold_with(vec![100u32], |mut v: Vec<u32>, x: u32| { v.push(x); v })?;
    /// let all: Vec<u32> = parts.into_iter().flat_map(|v| v.into_iter().filter(|&x| x < 100)).collect();
    /// assert_eq!(all, (0..10).collect::<Vec<_>>());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn fold_with<Op, A>(self, init: A, _op: Op) -> Result<Vec<A>>
    where
        A: Clone + Serialize + DeserializeOwned + 'static,
        Op: Fn(A, St::Out) -> A + TaskFn,
    {
        assert_stateless::<Op>();
        self.run::<FoldWith<Op, A>, _>(init, |parts| Ok(super::collect::concat(parts)))
    }
}
