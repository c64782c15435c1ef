//! The indexed adapters of [`ParIter`], as rayon's `IndexedParallelIterator`:
//! `enumerate`, `skip`, `take`, `rev`, `chunks`, `zip`, `chain`. They fuse the pipeline so far
//! into one source (see [`indexed`](super::indexed)) and so exist only while every
//! stage is one-to-one.

use super::indexed::{Chain, Chunks, Enumerated, Rev, Skip, Staged, Take, Zip};
use super::source::Source;
use super::stage::{Id, OneToOne, Stage};
use super::ParIter;
use crate::Error;

/// The pipeline so far, as the source of an indexed combination.
type Fused<S, St> = Staged<S, St>;

/// `a.zip(b)` of pipelines `a = (S, St)` and `b = (S2, St2)`.
type Zipped<'p, S, St, S2, St2> = ParIter<'p, Zip<Fused<S, St>, Fused<S2, St2>>, Id>;

/// `a.chain(b)` of pipelines `a = (S, St)` and `b = (S2, St2)`.
type Chained<'p, S, St, S2, St2> = ParIter<'p, Chain<Fused<S, St>, Fused<S2, St2>>, Id>;

/// The indexed adapters: only while every stage is one-to-one (before any `filter`,
/// `filter_map` or `flat_map`), as rayon's `IndexedParallelIterator`.
impl<'p, S: Source, St: Stage<S::Item>> ParIter<'p, S, St> {
    /// Takes in the build problems and staged inputs of `other`, an iterator to combine
    /// with this one, and fails the combination if it runs on another pool.
    fn absorb<S2: Source, St2: Stage<S2::Item>>(&mut self, other: &mut ParIter<'p, S2, St2>) {
        if let Some(theirs) = other.opts.as_mut() {
            let mine = self.opts_mut();
            if mine.error.is_none() {
                mine.error = theirs.error.take();
            }
            mine.keep.append(&mut theirs.keep);
        }
        if !self.has_error() && self.pool.mempool().id() != other.pool.mempool().id() {
            self.opts_mut().error = Some(Error::config(
                "zip/chain of parallel iterators on two different pools: build both on one pool",
            ));
        }
    }

    /// Pairs every item with its index (at any point before a filter-like stage).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.par_range(10u32..13).map(|x: u32| x * 2).enumerate().collect_vec()?;
    /// assert_eq!(v, [(0, 20), (1, 22), (2, 24)]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// After a filter-like stage the iterator is no longer indexed, and the error says
    /// where to move the call:
    ///
    /// ```compile_fail,E0277
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// // error: this parallel iterator is not indexed: a `filter`, ... stage changes how many items there are
    /// let v = pool.par_range(0u32..9).filter(|x: &u32| x % 2 == 0).enumerate().collect_vec()?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn enumerate(self) -> ParIter<'p, Enumerated<Fused<S, St>>, Id>
    where
        St: OneToOne,
    {
        self.reshape(|a, s| (a, s))
    }

    /// All items but the first `n` (none if there are fewer).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// assert_eq!(pool.par_range(0u32..6).skip(4).collect_vec()?, [4, 5]);
    /// assert_eq!(pool.par_range(0u32..6).skip(9).count()?, 0);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn skip(self, n: usize) -> ParIter<'p, Skip<Fused<S, St>>, Id>
    where
        St: OneToOne,
    {
        self.reshape(|a, s| ((a, s), n as u64))
    }

    /// The first `n` items (all if there are fewer).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// assert_eq!(pool.par_range(0u32..6).take(2).collect_vec()?, [0, 1]);
    /// assert_eq!(pool.par_range(0u32..6).take(100).count()?, 6);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn take(self, n: usize) -> ParIter<'p, Take<Fused<S, St>>, Id>
    where
        St: OneToOne,
    {
        self.reshape(|a, s| ((a, s), n as u64))
    }

    /// The items in reverse order (rayon's `rev`).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.par_range(0u32..5).map(|x: u32| x * 10).rev().enumerate().collect_vec()?;
    /// assert_eq!(v, [(0, 40), (1, 30), (2, 20), (3, 10), (4, 0)]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn rev(self) -> ParIter<'p, Rev<Fused<S, St>>, Id>
    where
        St: OneToOne,
    {
        self.reshape(|a, s| (a, s))
    }

    /// Consecutive groups of `size` items, each a `Vec` (the last may be shorter), in
    /// order (rayon's `chunks`). The result is indexed too.
    ///
    /// # Errors
    ///
    /// The terminal operation fails with [`Error::InvalidConfig`] for `size` 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let sums = pool.par_range(0u32..7).chunks(3).map(|c: Vec<u32>| c.iter().sum::<u32>()).collect_vec()?;
    /// assert_eq!(sums, [3, 12, 6]);
    /// assert!(pool.par_range(0u32..7).chunks(0).count().is_err());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn chunks(mut self, size: usize) -> ParIter<'p, Chunks<Fused<S, St>>, Id>
    where
        St: OneToOne,
    {
        if size == 0 && !self.has_error() {
            self.opts_mut().error = Some(Error::config("chunks(0): a chunk holds at least 1 item"));
        }
        self.reshape(|a, s| ((a, s), size as u64))
    }

    /// Pairs of items of `self` and `other`, as many as the shorter has (rayon's `zip`).
    /// Both must run on the same pool; the chunking and callbacks of `self` apply.
    ///
    /// # Errors
    ///
    /// The terminal operation fails with [`Error::InvalidConfig`] if `other` runs on
    /// another pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let xs = pool.array_from_fn(4, |i| i as f64)?;
    /// let ys = pool.array_from_fn(3, |i| 10.0 * i as f64)?;
    /// let dot: f64 = pool.par_iter(&xs).zip(pool.par_iter(&ys)).map(|(x, y): (f64, f64)| x * y).sum()?;
    /// assert_eq!(dot, 0.0 + 10.0 + 40.0);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn zip<S2, St2>(mut self, mut other: ParIter<'p, S2, St2>) -> Zipped<'p, S, St, S2, St2>
    where
        St: OneToOne,
        S2: Source,
        St2: Stage<S2::Item> + OneToOne,
    {
        self.absorb(&mut other);
        let right = (other.source, other.state);
        self.reshape(|a, s| ((a, s), right))
    }

    /// The items of `self`, then those of `other` (rayon's `chain`). Both must run on the
    /// same pool; the chunking and callbacks of `self` apply.
    ///
    /// # Errors
    ///
    /// The terminal operation fails with [`Error::InvalidConfig`] if `other` runs on
    /// another pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let a = pool.array_from_slice(&[7u32, 8])?;
    /// let v = pool.par_range(0u32..3).chain(pool.par_iter(&a)).collect_vec()?;
    /// assert_eq!(v, [0, 1, 2, 7, 8]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn chain<S2, St2>(mut self, mut other: ParIter<'p, S2, St2>) -> Chained<'p, S, St, S2, St2>
    where
        St: OneToOne,
        S2: Source,
        St2: Stage<S2::Item, Out = St::Out> + OneToOne,
    {
        self.absorb(&mut other);
        let right = (other.source, other.state);
        self.reshape(|a, s| ((a, s), right))
    }
}
