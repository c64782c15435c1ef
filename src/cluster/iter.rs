//! `ClusterIter`: the parallel iterator of a cluster job, its adapters and terminals.

use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::stage::{Filter, Map, MapWith, Stage};
use super::task::{self, start_block, CollectVec, Terminal};
use super::{driver, CancelToken, Cluster, Opts};
use crate::task::{assert_stateless, TaskFn};
use crate::{Error, Progress, Result, SharedArray};

/// How a scattering source encodes the items of block `start..end`.
type ScatterFn<'c> = Box<dyn Fn(u64, u64) -> Result<Vec<u8>> + 'c>;

/// A parallel iterator over a cluster: the job's index space split over every rank, each
/// part run in its rank's local pool, results combined in input order on rank 0.
///
/// Built by [`Cluster::par_range`] and [`Cluster::par_iter`]; nothing runs until a
/// terminal (`collect_vec`, `sum`, `reduce`, `fold`, `for_each`, ...) is called, on rank
/// 0. As in a local pool, functions must capture nothing (checked at compile time) and
/// state travels with [`map_with`](ClusterIter::map_with); items and results must be
/// serde values, since they cross ranks.
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// let cluster = procyon::cluster::Cluster::builder()
///     .pool(procyon::Pool::builder().workers(2).mempool_size(32 << 20))
///     .build()?;
/// if !cluster.is_driver() {
///     return cluster.serve();
/// }
/// let words = cluster
///     .par_range(0u32..4)
///     .map_with("x".to_string(), |s: &String, i: u32| s.repeat(i as usize))
///     .reduce(String::new, |a: String, b: String| a + &b)?;
/// assert_eq!(words, "xxxxxx");
/// # Ok(()) }
/// ```
#[must_use = "a cluster iterator does nothing until a terminal operation (sum, collect_vec, for_each, ...) runs it"]
pub struct ClusterIter<'c, P: Stage> {
    cluster: &'c Cluster,
    state: P::State,
    n: u64,
    opts: Opts,
    /// The source's items of a block, encoded, if the source scatters them.
    scatter: Option<ScatterFn<'c>>,
    _p: PhantomData<fn() -> P>,
}

impl<'c, P: Stage> ClusterIter<'c, P> {
    pub(crate) fn new(cluster: &'c Cluster, state: P::State, n: u64) -> Self {
        ClusterIter {
            cluster,
            state,
            n,
            opts: Opts::default(),
            scatter: None,
            _p: PhantomData,
        }
    }

    /// The same, with a source that scatters its items: `scatter(start, end)` encodes
    /// the items of block `start..end`.
    pub(crate) fn scattering(mut self, scatter: impl Fn(u64, u64) -> Result<Vec<u8>> + 'c) -> Self {
        self.scatter = Some(Box::new(scatter));
        self
    }

    /// The same job with one more stage, whose state `state` makes from this one's.
    fn stage<Q: Stage>(self, state: impl FnOnce(P::State) -> Q::State) -> ClusterIter<'c, Q> {
        ClusterIter {
            cluster: self.cluster,
            state: state(self.state),
            n: self.n,
            opts: self.opts,
            scatter: self.scatter,
            _p: PhantomData,
        }
    }

    /// Applies `f` to every item.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let v = cluster.par_range(0u8..3).map(|i: u8| u32::from(i) * 10).collect_vec()?;
    /// assert_eq!(v, [0, 10, 20]);
    /// # Ok(()) }
    /// ```
    pub fn map<F, U>(self, _f: F) -> ClusterIter<'c, Map<P, F, U>>
    where
        F: Fn(P::Item) -> U + TaskFn,
        U: 'static,
    {
        assert_stateless::<F>();
        self.stage(|s| s)
    }

    /// Applies `f(&state, item)` to every item; `state` is a serde value sent once per
    /// job to every rank (and copied once per block into its pool).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let table = vec![5u64, 7, 9];
    /// let v = cluster.par_range(0usize..3).map_with(table, |t: &Vec<u64>, i: usize| t[i] + 1).collect_vec()?;
    /// assert_eq!(v, [6, 8, 10]);
    /// # Ok(()) }
    /// ```
    pub fn map_with<C, F, U>(self, state: C, _f: F) -> ClusterIter<'c, MapWith<P, C, F, U>>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, P::Item) -> U + TaskFn,
        U: 'static,
    {
        assert_stateless::<F>();
        self.stage(|s| (s, state))
    }

    /// Keeps the items for which `f` is true.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let v = cluster.par_range(0i32..10).filter(|i: &i32| i % 3 == 0).collect_vec()?;
    /// assert_eq!(v, [0, 3, 6, 9]);
    /// # Ok(()) }
    /// ```
    pub fn filter<F>(self, _f: F) -> ClusterIter<'c, Filter<P, F>>
    where
        F: Fn(&P::Item) -> bool + TaskFn,
    {
        assert_stateless::<F>();
        self.stage(|s| s)
    }

    /// Stops the job when `token` is cancelled: every rank's work stops (cooperatively,
    /// then by the local pools' forced kill), then the job answers
    /// [`Error::Cancelled`]. See [`CancelToken`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let token = procyon::cluster::CancelToken::new();
    /// let s: u64 = cluster.par_range(0u64..10).with_cancel(&token).sum()?; // never cancelled
    /// assert_eq!(s, 45);
    /// # Ok(()) }
    /// ```
    pub fn with_cancel(mut self, token: &CancelToken) -> Self {
        self.opts.cancel = Some(token.clone());
        self
    }

    /// Fails the job with [`Error::Timeout`] if it has not ended `limit` from its start
    /// (its work is stopped on every rank first, as by a cancel).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// use std::time::Duration;
    /// let r = cluster
    ///     .par_range(0u64..4)
    ///     .map(|i: u64| { std::thread::sleep(Duration::from_secs(5)); i })
    ///     .timeout(Duration::from_millis(100))
    ///     .sum::<u64>();
    /// assert!(matches!(r, Err(procyon::Error::Timeout { .. })));
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.opts.timeout = Some(limit);
        self
    }

    /// Calls `f` on rank 0 each time a block ends, with the items of finished blocks
    /// summed over every rank.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// use std::{cell::Cell, rc::Rc};
    /// // The callback runs on rank 0, in the driving thread: it may capture anything.
    /// let seen = Rc::new(Cell::new(0));
    /// let s = seen.clone();
    /// cluster.par_range(0u64..500).on_progress(move |p| s.set(p.items_done)).sum::<u64>()?;
    /// assert_eq!(seen.get(), 500);
    /// # Ok(()) }
    /// ```
    pub fn on_progress(mut self, f: impl FnMut(Progress) + 'static) -> Self {
        self.opts.on_progress = Some(Box::new(f));
        self
    }

    /// Runs the job with terminal `T`.
    fn run<T: Terminal<P, Args = ()>>(mut self) -> Result<T::Output> {
        let args = bincode::serialize(&(&self.state, ()))
            .map_err(|e| Error::config(format!("cannot encode the cluster job's state: {e}")))?;
        let none = |_: u64, _: u64| Ok(Vec::new());
        let scatter: driver::Scatter<'_> = match &self.scatter {
            Some(f) => f.as_ref(),
            None => &none,
        };
        let parts = driver::run(
            self.cluster,
            start_block::<P, T>,
            args,
            scatter,
            self.n,
            &mut self.opts,
        )?;
        let parts = parts
            .iter()
            .map(|bytes| bincode::deserialize::<T::Partial>(bytes))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Malformed {
                reason: format!("a block's result does not decode: {e}"),
            })?;
        Ok(T::combine(parts))
    }

    /// The items, in input order, on rank 0.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] on a rank other than 0; [`Error::RankFailed`] naming the
    /// rank where a task failed (panicked, its worker died, ...); [`Error::Cancelled`],
    /// [`Error::Timeout`]. Every terminal fails the same ways.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let v = cluster.par_range(0u64..5).map(|i: u64| format!("#{i}")).collect_vec()?;
    /// assert_eq!(v, ["#0", "#1", "#2", "#3", "#4"]);
    /// # Ok(()) }
    /// ```
    pub fn collect_vec(self) -> Result<Vec<P::Item>>
    where
        P::Item: Serialize + DeserializeOwned + Send,
    {
        self.run::<CollectVec>()
    }

    /// The items, in input order, in a shared array of rank 0's pool.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let a = cluster.par_range(0u32..100).map(|i: u32| f64::from(i) / 2.0).collect_array()?;
    /// assert_eq!(a.len(), 100);
    /// assert_eq!(a[99], 49.5);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`collect_vec`](ClusterIter::collect_vec), and the pool's error if its
    /// mempool has no room for the array.
    pub fn collect_array(self) -> Result<SharedArray<P::Item>>
    where
        P::Item: Serialize + DeserializeOwned + Send + Pod,
    {
        let cluster = self.cluster;
        let v = self.collect_vec()?;
        cluster.pool.array_from_slice(&v)
    }

    /// The sum of the items.
    ///
    /// # Errors
    /// As [`collect_vec`](ClusterIter::collect_vec).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let s: f64 = cluster.par_range(1u32..5).map(|i: u32| 1.0 / f64::from(i)).sum()?;
    /// assert!((s - 25.0 / 12.0).abs() < 1e-12);
    /// # Ok(()) }
    /// ```
    pub fn sum<S>(self) -> Result<S>
    where
        P: Stage<Item = S>,
        S: Serialize + DeserializeOwned + std::iter::Sum<S> + 'static,
    {
        self.run::<task::Sum>()
    }

    /// The items combined with `op` in input order (`op` must be associative; it need
    /// not be commutative), `identity()` for none.
    ///
    /// # Errors
    /// As [`collect_vec`](ClusterIter::collect_vec).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let m = cluster.par_range(0u64..100).map(|i: u64| (i * 37) % 101).reduce(|| 0, |a: u64, b: u64| a.max(b))?;
    /// assert_eq!(m, 100);
    /// # Ok(()) }
    /// ```
    pub fn reduce<I, Op>(self, _identity: I, _op: Op) -> Result<P::Item>
    where
        P::Item: Serialize + DeserializeOwned,
        I: Fn() -> P::Item + TaskFn,
        Op: Fn(P::Item, P::Item) -> P::Item + TaskFn,
    {
        assert_stateless::<I>();
        assert_stateless::<Op>();
        self.run::<task::Reduce<I, Op>>()
    }

    /// Folds the items of each local chunk into an accumulator (starting from
    /// `identity()`): the accumulators, in input order (as rayon's `fold`, collected).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// let parts = cluster.par_range(0u64..1000).fold(|| 0u64, |a: u64, i: u64| a + i)?;
    /// assert_eq!(parts.iter().sum::<u64>(), 499_500);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`collect_vec`](ClusterIter::collect_vec).
    pub fn fold<I, Op, A>(self, _identity: I, _op: Op) -> Result<Vec<A>>
    where
        A: Serialize + DeserializeOwned + 'static,
        I: Fn() -> A + TaskFn,
        Op: Fn(A, P::Item) -> A + TaskFn,
    {
        assert_stateless::<I>();
        assert_stateless::<Op>();
        self.run::<task::Fold<I, Op, A>>()
    }

    /// Runs `f` on every item, on whichever rank holds it, for its side effects there.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
    /// # if !cluster.is_driver() { return cluster.serve(); }
    /// cluster.par_range(0u64..100).for_each(|i: u64| assert!(i < 100))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`collect_vec`](ClusterIter::collect_vec).
    pub fn for_each<F>(self, _f: F) -> Result<()>
    where
        F: Fn(P::Item) + TaskFn,
    {
        assert_stateless::<F>();
        self.run::<task::ForEach<F>>()
    }
}
