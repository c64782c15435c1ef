//! Cluster pipelines as types: a source of indices and the adapters over it.
//!
//! A cluster job's pipeline (`par_range(..).map(..).filter(..)`) is a type built of
//! zero-sized markers: [`RangeOf`] at the bottom, then one [`Map`], [`MapWith`] or
//! [`Filter`] per adapter, each naming its task function's (zero-sized) type. The only
//! value a pipeline holds is its [`Stage::State`] (the range start, the `map_with`
//! states), which travels serialized. Because the type says everything else, a rank
//! re-creates the whole pipeline from a task id (see `super::task`) and that state.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::task::{conjure, TaskFn};

/// The field of a marker type: names its parameters, holds nothing.
pub(crate) type Marker<T> = PhantomData<fn() -> T>;

/// A cluster pipeline: what item (if any) index `i` of the job's index space yields.
///
/// Implemented by the marker types of this module; not meant to be implemented outside
/// procyon (build pipelines with [`Cluster::par_range`](super::Cluster::par_range) and
/// the adapters of [`ClusterIter`](super::ClusterIter)).
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
/// # if !cluster.is_driver() { return cluster.serve(); }
/// use procyon::cluster::{ClusterIter, RangeOf, Stage};
/// fn first_item<P: Stage>(_: &ClusterIter<'_, P>, state: &P::State) -> Option<P::Item> {
///     P::apply(state, 0)
/// }
/// let it: ClusterIter<'_, RangeOf<u32>> = cluster.par_range(7u32..9);
/// assert_eq!(first_item(&it, &7), Some(7));
/// assert_eq!(it.collect_vec()?, [7, 8]);
/// # Ok(()) }
/// ```
pub trait Stage: 'static {
    /// The items the pipeline yields.
    type Item: 'static;
    /// The values the pipeline carries (range start, `map_with` states): serialized once
    /// per job and sent to every rank.
    type State: Serialize + DeserializeOwned + 'static;
    /// The item at index `i` (counted from the start of the job's index space), or
    /// `None` if filtered out.
    fn apply(state: &Self::State, i: u64) -> Option<Self::Item>;
    /// The state a block starting at index `start` runs with: the job's state, with the
    /// block's scattered items `data` put in (a source that scatters its items sends
    /// each block its own; every other stage passes `data` down). The error says why
    /// `data` does not decode.
    fn for_block(state: Self::State, data: &[u8], start: u64) -> Result<Self::State, String> {
        let _ = (data, start);
        Ok(state)
    }
}

/// An integer type a cluster range can run over (every primitive integer but the 128-bit
/// ones).
///
/// # Examples
///
/// ```
/// use procyon::cluster::ClusterInt;
/// assert_eq!(i8::span(-128, 127), Some(255));
/// assert_eq!(u64::span(9, 3), None);
/// assert_eq!(i32::offset(-5, 7), 2);
/// ```
pub trait ClusterInt: Copy + Serialize + DeserializeOwned + Send + 'static {
    /// `end - start` as a count, or `None` if the range is empty or reversed.
    fn span(start: Self, end: Self) -> Option<u64>;
    /// `start + i`.
    fn offset(start: Self, i: u64) -> Self;
}

macro_rules! cluster_int {
    ($($t:ty),*) => {$(
        impl ClusterInt for $t {
            fn span(start: Self, end: Self) -> Option<u64> {
                // i128 holds every difference of two values of these types.
                let d = end as i128 - start as i128;
                (d > 0).then_some(d as u64)
            }
            fn offset(start: Self, i: u64) -> Self {
                (start as i128 + i as i128) as $t
            }
        }
    )*};
}
cluster_int!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

/// The source of `par_range(start..end)`: index `i` yields `start + i`.
/// A marker type: it names the stage in a pipeline's type, and is never built.
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
/// # if !cluster.is_driver() { return cluster.serve(); }
/// let v = cluster.par_range(3i16..6).collect_vec()?;
/// assert_eq!(v, [3, 4, 5]);
/// # Ok(()) }
/// ```
pub struct RangeOf<I>(Marker<I>);

impl<I: ClusterInt> Stage for RangeOf<I> {
    type Item = I;
    type State = I;
    fn apply(start: &I, i: u64) -> Option<I> {
        Some(I::offset(*start, i))
    }
}

/// The source of [`Cluster::par_iter`](super::Cluster::par_iter): the items of a slice
/// on rank 0, scattered: each block of the job is sent its own items, once.
/// A marker type: it names the stage in a pipeline's type, and is never built.
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
/// # if !cluster.is_driver() { return cluster.serve(); }
/// let names = vec!["ada".to_string(), "grace".to_string()];
/// let v = cluster.par_iter(&names).map(|s: String| s.len()).collect_vec()?;
/// assert_eq!(v, [3, 5]);
/// # Ok(()) }
/// ```
pub struct ItemsOf<T>(Marker<T>);

/// The state of an [`ItemsOf`] source: the items of one block and where it starts
/// (none in the job's state: they travel with the blocks).
#[derive(Serialize, Deserialize)]
#[serde(bound = "T: Serialize + DeserializeOwned")]
pub struct Scattered<T> {
    start: u64,
    items: Vec<T>,
}

impl<T> Scattered<T> {
    /// The job's state of a scattering source: no items yet.
    pub(crate) fn none() -> Self {
        Scattered {
            start: 0,
            items: Vec::new(),
        }
    }
}

impl<T: Serialize + DeserializeOwned + Clone + 'static> Stage for ItemsOf<T> {
    type Item = T;
    type State = Scattered<T>;
    fn apply(state: &Scattered<T>, i: u64) -> Option<T> {
        let k = usize::try_from(i.checked_sub(state.start)?).ok()?;
        state.items.get(k).cloned()
    }
    fn for_block(_: Scattered<T>, data: &[u8], start: u64) -> Result<Scattered<T>, String> {
        let items = bincode::deserialize(data)
            .map_err(|e| format!("the block's items do not decode: {e}"))?;
        Ok(Scattered { start, items })
    }
}

/// `map(f)` over pipeline `P`.
/// A marker type: it names the stage in a pipeline's type, and is never built.
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
/// # if !cluster.is_driver() { return cluster.serve(); }
/// let v = cluster.par_range(0u64..3).map(|i: u64| i + 10).collect_vec()?;
/// assert_eq!(v, [10, 11, 12]);
/// # Ok(()) }
/// ```
pub struct Map<P, F, U>(Marker<(P, F, U)>);

impl<P, F, U> Stage for Map<P, F, U>
where
    P: Stage,
    F: Fn(P::Item) -> U + TaskFn,
    U: 'static,
{
    type Item = U;
    type State = P::State;
    fn apply(state: &P::State, i: u64) -> Option<U> {
        P::apply(state, i).map(conjure::<F>())
    }
    fn for_block(state: P::State, data: &[u8], start: u64) -> Result<P::State, String> {
        P::for_block(state, data, start)
    }
}

/// `map_with(c, f)` over pipeline `P`: `f(&c, item)`.
/// A marker type: it names the stage in a pipeline's type, and is never built.
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
/// # if !cluster.is_driver() { return cluster.serve(); }
/// let v = cluster.par_range(0u64..3).map_with(2u64, |k: &u64, i: u64| i * k).collect_vec()?;
/// assert_eq!(v, [0, 2, 4]);
/// # Ok(()) }
/// ```
pub struct MapWith<P, C, F, U>(Marker<(P, C, F, U)>);

impl<P, C, F, U> Stage for MapWith<P, C, F, U>
where
    P: Stage,
    C: Serialize + DeserializeOwned + 'static,
    F: Fn(&C, P::Item) -> U + TaskFn,
    U: 'static,
{
    type Item = U;
    type State = (P::State, C);
    fn apply(state: &(P::State, C), i: u64) -> Option<U> {
        let f = conjure::<F>();
        P::apply(&state.0, i).map(|x| f(&state.1, x))
    }
    fn for_block(state: Self::State, data: &[u8], start: u64) -> Result<Self::State, String> {
        Ok((P::for_block(state.0, data, start)?, state.1))
    }
}

/// `filter(f)` over pipeline `P`.
/// A marker type: it names the stage in a pipeline's type, and is never built.
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// # let cluster = procyon::cluster::Cluster::builder().pool(procyon::Pool::builder().workers(1).mempool_size(32 << 20)).build()?;
/// # if !cluster.is_driver() { return cluster.serve(); }
/// let v = cluster.par_range(0u64..6).filter(|i: &u64| i % 2 == 1).collect_vec()?;
/// assert_eq!(v, [1, 3, 5]);
/// # Ok(()) }
/// ```
pub struct Filter<P, F>(Marker<(P, F)>);

impl<P, F> Stage for Filter<P, F>
where
    P: Stage,
    F: Fn(&P::Item) -> bool + TaskFn,
{
    type Item = P::Item;
    type State = P::State;
    fn apply(state: &P::State, i: u64) -> Option<P::Item> {
        P::apply(state, i).filter(conjure::<F>())
    }
    fn for_block(state: P::State, data: &[u8], start: u64) -> Result<P::State, String> {
        P::for_block(state, data, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_type_computes_its_items() {
        fn pipeline<F: Fn(i32) -> i64 + TaskFn, G: Fn(&i64) -> bool + TaskFn>(
            _: F,
            _: G,
        ) -> Vec<Option<i64>> {
            (0..5)
                .map(|i| <Filter<Map<RangeOf<i32>, F, i64>, G>>::apply(&-2, i))
                .collect()
        }
        let got = pipeline(|x| i64::from(x) * 10, |y| *y != 0);
        assert_eq!(got, [Some(-20), Some(-10), None, Some(10), Some(20)]);
        assert_eq!(i8::span(-128, 127), Some(255));
        assert_eq!(u64::span(5, 5), None);
        assert_eq!(u64::span(0, u64::MAX), Some(u64::MAX));
    }
}
