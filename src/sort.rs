//! Sorting a shared array in the workers, in place in the mempool: `par_sort`,
//! `par_sort_unstable` and their `_by` / `_by_key` forms.
//!
//! ## Algorithm
//!
//! A bottom-up merge sort over runs, each phase one job:
//!
//! 1. **Runs.** The array is cut into `runs` runs of `run` elements (the last shorter);
//!    each worker takes whole runs and sorts each with std's sort (`sort_by`, stable, or
//!    `sort_unstable_by`).
//! 2. **Merge passes.** Pass `p` merges adjacent pairs of sorted runs of width
//!    `run * 2^p` from one array into the other. The *output* index space is cut into
//!    pieces of `piece` elements, one per task, whatever the pairs are: a piece finds
//!    where its first and last output elements come from in the pair's two runs by a
//!    binary search on the merge path ([`co_rank`]), and merges that much. So the last
//!    passes, with one or two huge pairs, are as parallel as the first.
//! 3. **Ping-pong.** Passes alternate between the array and a scratch array of the same
//!    length in the mempool. When the number of passes is odd, phase 1 sorts each run
//!    *into* the scratch array (copy, then sort), so the last pass always writes the
//!    array itself and nothing is copied back.
//!
//! Ties are always taken from the left run first (both in the merge and in the co-rank
//! search), and std's `sort_by` is stable, so `par_sort`, `par_sort_by` and
//! `par_sort_by_key` are stable. The unstable forms differ only in phase 1.
//!
//! ## Who touches what
//!
//! The caller holds `&mut` of the array (and owns the scratch array) until the last job
//! has ended. Within a job, the source array is only read, by every worker, and each
//! task writes only its own run (phase 1) or its own output piece (passes) of the
//! destination, which it alone turns into a `&mut [T]`; when phase 1 sorts in place, a
//! run is read and written by the one worker that claimed it. Jobs run one after the
//! other: the next starts after the previous one has been waited for.
//!
//! On an error (a comparison that panics or is not a total order, a worker that dies,
//! a cancel or timeout) every element of the array is one of its original elements, in
//! no particular order, and some may appear twice (a merge pass may have stopped half
//! way through writing the array). `T: Pod` makes that safe; nothing else is touched.

use std::cmp::Ordering;
use std::marker::PhantomData;
use std::ops::Range;

use bytemuck::Pod;

use crate::array::{ArrayDesc, SharedArray};
use crate::kind::{JobKind, WorkerCx};
use crate::pool::{Chunking, JobHandle, Pool};
use crate::task::{assert_stateless, conjure, TaskFn};
use crate::view::{ArrayView, ArrayViewMut};
use crate::Result;

/// An order on `T` named by a type (the comparison is re-created in each worker).
pub(crate) trait Order<T>: 'static {
    fn cmp(a: &T, b: &T) -> Ordering;
}

/// `T`'s own `Ord`.
pub(crate) struct Natural;

impl<T: Ord> Order<T> for Natural {
    fn cmp(a: &T, b: &T) -> Ordering {
        a.cmp(b)
    }
}

/// A comparison function.
pub(crate) struct By<F>(PhantomData<fn(F)>);

impl<T, F: Fn(&T, &T) -> Ordering + TaskFn> Order<T> for By<F> {
    fn cmp(a: &T, b: &T) -> Ordering {
        conjure::<F>()(a, b)
    }
}

/// The `Ord` of a key function's values.
pub(crate) struct ByKey<F, K>(PhantomData<fn(F) -> K>);

impl<T, K: Ord + 'static, F: Fn(&T) -> K + TaskFn> Order<T> for ByKey<F, K> {
    fn cmp(a: &T, b: &T) -> Ordering {
        let key = conjure::<F>();
        key(a).cmp(&key(b))
    }
}

/// Shortest run phase 1 makes (shorter arrays are one run).
const MIN_RUN: usize = 256;
/// Shortest output piece of a merge task.
const MIN_PIECE: usize = 1024;

/// How an array of `n` elements is sorted: run length, pass count, piece length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) run: usize,
    pub(crate) passes: u32,
    pub(crate) piece: usize,
}

impl Plan {
    /// Two runs per worker (one run for one worker: std's sort alone), four merge pieces
    /// per worker and pass, so that a slow worker (a busy CPU) holds up little.
    pub(crate) fn new(n: usize, workers: usize) -> Plan {
        let workers = workers.max(1);
        let runs = if workers == 1 { 1 } else { 2 * workers };
        let run = n.div_ceil(runs).max(MIN_RUN).max(1);
        let piece = n.div_ceil(4 * workers).max(MIN_PIECE);
        Plan::with(n, run, piece)
    }

    /// The plan with runs of `run` and pieces of `piece` elements (both at least 1).
    pub(crate) fn with(n: usize, run: usize, piece: usize) -> Plan {
        let runs = n.div_ceil(run.max(1)).max(1);
        Plan {
            run: run.max(1),
            passes: runs.next_power_of_two().trailing_zeros(),
            piece: piece.max(1),
        }
    }
}

/// Phase 1: run `c` of `src` (elements `c * run ..`) sorted into the same run of `dst`,
/// or in place when they are one array.
pub(crate) struct SortRuns<T, O>(PhantomData<fn(T, O)>);

impl<T: Pod, O: Order<T>> JobKind for SortRuns<T, O> {
    /// Source, destination, run length, stable.
    type Args = (ArrayDesc<T>, ArrayDesc<T>, u64, bool);
    /// The source is written too when it is the destination (sorting in place).
    type Local = (ArrayViewMut<T>, ArrayViewMut<T>);
    type Partial = ();
    const ORDERED: bool = false;

    fn init(args: &Self::Args, cx: &WorkerCx) -> Result<Self::Local> {
        // SAFETY: the caller keeps both arrays alive, and touches neither, until the job
        // has ended.
        unsafe {
            Ok((
                ArrayViewMut::resolve(&args.0, &cx.mempool)?,
                ArrayViewMut::resolve(&args.1, &cx.mempool)?,
            ))
        }
    }

    fn run(
        (src_desc, dst_desc, run, stable): &Self::Args,
        (src, dst): &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<()>, bool) {
        let n = src.len();
        let run = *run as usize;
        for c in range {
            let r = c * run..((c + 1) * run).min(n);
            let out = if src_desc == dst_desc {
                // SAFETY: run `c` is claimed by this worker alone, nobody else reads or
                // writes it during the job.
                unsafe { src.chunk_mut(r) }
            } else {
                // SAFETY: as above for the destination's run; the source is only read
                // during the job.
                let (out, input) = unsafe { (dst.chunk_mut(r.clone()), src.chunk(r)) };
                out.copy_from_slice(input);
                out
            };
            if *stable {
                out.sort_by(O::cmp);
            } else {
                out.sort_unstable_by(O::cmp);
            }
        }
        (None, false)
    }
}

/// A merge pass: output piece `t` (elements `t * piece ..`) of `dst`, merged from the
/// pairs of sorted runs of width `width` in `src` that it overlaps.
pub(crate) struct MergePass<T, O>(PhantomData<fn(T, O)>);

impl<T: Pod, O: Order<T>> JobKind for MergePass<T, O> {
    /// Source, destination, run width, piece length.
    type Args = (ArrayDesc<T>, ArrayDesc<T>, u64, u64);
    type Local = (ArrayView<T>, ArrayViewMut<T>);
    type Partial = ();
    const ORDERED: bool = false;

    fn init(args: &Self::Args, cx: &WorkerCx) -> Result<Self::Local> {
        // SAFETY: the caller keeps both arrays alive, and touches neither, until the job
        // has ended; a pass only reads its source (the previous pass's output).
        unsafe {
            Ok((
                ArrayView::resolve(&args.0, &cx.mempool)?,
                ArrayViewMut::resolve(&args.1, &cx.mempool)?,
            ))
        }
    }

    fn run(
        (_, _, width, piece): &Self::Args,
        (src, dst): &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<()>, bool) {
        let n = src.len();
        let (width, piece) = (*width as usize, *piece as usize);
        for t in range {
            let (s, e) = (t * piece, ((t + 1) * piece).min(n));
            // SAFETY: piece `t` of the destination is claimed by this worker alone.
            let out = unsafe { dst.chunk_mut(s..e) };
            let mut pos = s;
            while pos < e {
                let lo = pos / (2 * width) * (2 * width);
                let mid = (lo + width).min(n);
                let hi = (lo + 2 * width).min(n);
                let stop = e.min(hi);
                // SAFETY: the source is only read during the job.
                let (a, b) = unsafe { (src.chunk(lo..mid), src.chunk(mid..hi)) };
                let (i0, j0) = co_rank::<T, O>(pos - lo, a, b);
                let (i1, j1) = co_rank::<T, O>(stop - lo, a, b);
                assert!(
                    i0 <= i1 && j0 <= j1,
                    "par_sort: the comparison is not a total order"
                );
                merge::<T, O>(&a[i0..i1], &b[j0..j1], &mut out[pos - s..stop - s]);
                pos = stop;
            }
        }
        (None, false)
    }
}

/// Where the first `k` elements of the stable merge of sorted `a` and `b` come from:
/// `(i, j)` with `i + j = k`, the first `i` of `a` and the first `j` of `b`.
///
/// `i` is the largest count such that `a[i - 1] <= b[j]` (a tie goes to `a`, the left
/// run): taking more from `a` would put an element of `a` before a smaller one of `b`.
pub(crate) fn co_rank<T, O: Order<T>>(k: usize, a: &[T], b: &[T]) -> (usize, usize) {
    debug_assert!(k <= a.len() + b.len());
    let (mut lo, mut hi) = (k.saturating_sub(b.len()), k.min(a.len()));
    while lo < hi {
        let i = (lo + hi).div_ceil(2);
        let j = k - i;
        // i >= 1 (i > lo >= 0); j < b.len() unless i == k - b.len() == lo, excluded.
        if j == b.len() || O::cmp(&b[j], &a[i - 1]) != Ordering::Less {
            lo = i;
        } else {
            hi = i - 1;
        }
    }
    (lo, k - lo)
}

/// Merges sorted `a` and `b` into `out` (exactly as long as both), ties from `a` first.
///
/// The main loop has no data-dependent branch (the choice is a select and two index
/// increments): on random input a branch mispredicts every other element, which made
/// the merge passes cost as much as sorting the runs.
pub(crate) fn merge<T: Copy, O: Order<T>>(a: &[T], b: &[T], out: &mut [T]) {
    assert_eq!(a.len() + b.len(), out.len(), "merge: output length");
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let from_b = O::cmp(&b[j], &a[i]) == Ordering::Less;
        out[k] = if from_b { b[j] } else { a[i] };
        j += usize::from(from_b);
        i += usize::from(!from_b);
        k += 1;
    }
    // One side is used up: the rest of the other follows in order.
    out[k..k + a.len() - i].copy_from_slice(&a[i..]);
    k += a.len() - i;
    out[k..].copy_from_slice(&b[j..]);
}

/// Chunking of the sort jobs: one run or one piece per task.
const ONE_EACH: Chunking = Chunking {
    min_len: 1,
    max_len: 1,
};

impl Pool {
    /// Sorts `arr` in the workers, in place, with a stable merge sort (rayon's
    /// `par_sort`): equal elements keep their order.
    ///
    /// Each worker sorts runs with std's stable sort, then merge passes of any width
    /// are split evenly between the workers; a scratch array of the same length is
    /// allocated in the mempool for the passes (and freed before returning). See
    /// `par_sort_unstable` for the usually faster form.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let mut a = pool.array_from_fn(100_000, |i| (i as u64 * 7919) % 100_003)?;
    /// pool.par_sort(&mut a)?;
    /// assert!(a.windows(2).all(|w| w[0] <= w[1]));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory) if the mempool cannot hold the
    /// scratch array; [`Error::InvalidDescriptor`](crate::Error::InvalidDescriptor) if
    /// `arr` belongs to another pool; task failures ([`Error::WorkerDied`](crate::Error::WorkerDied),
    /// [`Error::Cancelled`](crate::Error::Cancelled), ...), after which the array's
    /// contents are unspecified (each element one of the original ones, some perhaps twice).
    pub fn par_sort<T: Pod + Ord>(&self, arr: &mut SharedArray<T>) -> Result<()> {
        self.sort_by_order::<T, Natural>(arr, true)
    }

    /// Sorts `arr` in the workers, in place, without keeping the order of equal elements
    /// (rayon's `par_sort_unstable`): runs are sorted with std's `sort_unstable`, then
    /// merged as by [`par_sort`](Pool::par_sort).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let mut a = pool.array_from_fn(10_000, |i| (10_000 - i) as u32)?;
    /// pool.par_sort_unstable(&mut a)?;
    /// assert_eq!((a[0], a[9_999]), (1, 10_000));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`par_sort`](Pool::par_sort).
    pub fn par_sort_unstable<T: Pod + Ord>(&self, arr: &mut SharedArray<T>) -> Result<()> {
        self.sort_by_order::<T, Natural>(arr, false)
    }

    /// Sorts `arr` stably by the comparison `compare` (rayon's `par_sort_by`). `compare`
    /// must capture nothing and be a total order.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let mut a = pool.array_from_fn(1000, |i| i as i64)?;
    /// pool.par_sort_by(&mut a, |x: &i64, y: &i64| y.cmp(x))?; // descending
    /// assert_eq!((a[0], a[999]), (999, 0));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`par_sort`](Pool::par_sort); [`Error::TaskPanicked`](crate::Error::TaskPanicked)
    /// if `compare` panics, or is found not to be a total order.
    pub fn par_sort_by<T: Pod, F>(&self, arr: &mut SharedArray<T>, _compare: F) -> Result<()>
    where
        F: Fn(&T, &T) -> Ordering + TaskFn,
    {
        assert_stateless::<F>();
        self.sort_by_order::<T, By<F>>(arr, true)
    }

    /// Sorts `arr` by the comparison `compare`, without keeping the order of equal
    /// elements (rayon's `par_sort_unstable_by`). This is how to sort floats:
    /// `|a: &f64, b: &f64| a.total_cmp(b)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let mut a = pool.array_from_slice(&[2.5f64, -1.0, f64::INFINITY, 0.0, -0.0])?;
    /// pool.par_sort_unstable_by(&mut a, |x: &f64, y: &f64| x.total_cmp(y))?;
    /// assert_eq!(a.to_vec(), [-1.0, -0.0, 0.0, 2.5, f64::INFINITY]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`par_sort_by`](Pool::par_sort_by).
    pub fn par_sort_unstable_by<T: Pod, F>(
        &self,
        arr: &mut SharedArray<T>,
        _compare: F,
    ) -> Result<()>
    where
        F: Fn(&T, &T) -> Ordering + TaskFn,
    {
        assert_stateless::<F>();
        self.sort_by_order::<T, By<F>>(arr, false)
    }

    /// Sorts `arr` stably by the key `key` gives each element (rayon's
    /// `par_sort_by_key`); `key` is called on every comparison, so keep it cheap.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// // (key, original index): equal keys keep their index order.
    /// let mut a = pool.array_from_fn(1000, |i| [(i % 3) as u32, i as u32])?;
    /// pool.par_sort_by_key(&mut a, |p: &[u32; 2]| p[0])?;
    /// assert_eq!((a[0], a[1], a[334]), ([0, 0], [0, 3], [1, 1]));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`par_sort_by`](Pool::par_sort_by).
    pub fn par_sort_by_key<T: Pod, K: Ord + 'static, F>(
        &self,
        arr: &mut SharedArray<T>,
        _key: F,
    ) -> Result<()>
    where
        F: Fn(&T) -> K + TaskFn,
    {
        assert_stateless::<F>();
        self.sort_by_order::<T, ByKey<F, K>>(arr, true)
    }

    /// Sorts `arr` by the key `key` gives each element, without keeping the order of
    /// equal elements (rayon's `par_sort_unstable_by_key`).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let mut a = pool.array_from_fn(1000, |i| i as i32 - 500)?;
    /// pool.par_sort_unstable_by_key(&mut a, |x: &i32| x.unsigned_abs())?;
    /// assert_eq!(a[0], 0);
    /// assert_eq!(a[999].abs(), 500);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`par_sort_by`](Pool::par_sort_by).
    pub fn par_sort_unstable_by_key<T: Pod, K: Ord + 'static, F>(
        &self,
        arr: &mut SharedArray<T>,
        _key: F,
    ) -> Result<()>
    where
        F: Fn(&T) -> K + TaskFn,
    {
        assert_stateless::<F>();
        self.sort_by_order::<T, ByKey<F, K>>(arr, false)
    }

    fn sort_by_order<T: Pod, O: Order<T>>(
        &self,
        arr: &mut SharedArray<T>,
        stable: bool,
    ) -> Result<()> {
        let plan = Plan::new(arr.len(), self.workers());
        self.sort_planned::<T, O>(arr, stable, plan)
    }

    /// Sorts `arr` by `O` following `plan` (see the module docs).
    pub(crate) fn sort_planned<T: Pod, O: Order<T>>(
        &self,
        arr: &mut SharedArray<T>,
        stable: bool,
        plan: Plan,
    ) -> Result<()> {
        self.check_array(arr)?;
        let n = arr.len();
        if n < 2 {
            return Ok(());
        }
        let scratch = if plan.passes > 0 {
            Some(SharedArray::<T>::for_overwrite(self.mempool(), n)?)
        } else {
            None
        };
        let mine = arr.desc();
        let other = scratch.as_ref().map_or(mine, SharedArray::desc);
        // An odd number of passes starts from the scratch array and ends in `arr`.
        let (mut from, mut to) = if plan.passes % 2 == 1 {
            (other, mine)
        } else {
            (mine, other)
        };
        self.run_sort_job::<SortRuns<T, O>>(
            &(mine, from, plan.run as u64, stable),
            n.div_ceil(plan.run),
        )?;
        let mut width = plan.run;
        for _ in 0..plan.passes {
            self.run_sort_job::<MergePass<T, O>>(
                &(from, to, width as u64, plan.piece as u64),
                n.div_ceil(plan.piece),
            )?;
            std::mem::swap(&mut from, &mut to);
            width = width.saturating_mul(2);
        }
        debug_assert!(from == mine, "the last pass writes the array itself");
        drop(scratch);
        Ok(())
    }

    /// Runs one phase of a sort and waits for it.
    fn run_sort_job<K: JobKind>(&self, args: &K::Args, items: usize) -> Result<()> {
        let sub = self.submit::<K>(args, items, ONE_EACH)?;
        JobHandle::new(sub, Box::new(|_| Ok(()))).wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(a: &[u32], b: &[u32]) -> Vec<u32> {
        let mut out = vec![0; a.len() + b.len()];
        merge::<u32, Natural>(a, b, &mut out);
        out
    }

    #[test]
    fn co_rank_splits_every_prefix_of_the_merge() {
        let cases: [(&[u32], &[u32]); 5] = [
            (&[], &[]),
            (&[1, 3, 5], &[]),
            (&[], &[2, 4]),
            (&[1, 2, 2, 2, 7], &[2, 2, 3, 9, 9, 10]),
            (&[5, 5, 5], &[5, 5]),
        ];
        for (a, b) in cases {
            let whole = merged(a, b);
            let mut expect = whole.clone();
            expect.sort();
            assert_eq!(whole, expect);
            for k in 0..=a.len() + b.len() {
                let (i, j) = co_rank::<u32, Natural>(k, a, b);
                assert_eq!(i + j, k);
                let mut prefix = merged(&a[..i], &b[..j]);
                prefix.sort();
                assert_eq!(prefix, whole[..k], "k = {k} of {a:?} + {b:?}");
                // Stable: all of the tied left elements come before the right ones.
                if i < a.len() && j > 0 {
                    assert!(b[j - 1] < a[i]);
                }
            }
        }
    }

    #[test]
    fn plans_end_in_the_array_and_cover_it() {
        assert_eq!(Plan::new(1000, 1).passes, 0);
        let p = Plan::new(100_003, 3);
        assert_eq!((p.run, p.passes), (16_668, 3));
        assert_eq!(Plan::with(10, 3, 4).passes, 2);
        assert_eq!(Plan::with(9, 3, 4).passes, 2);
        assert_eq!(
            Plan::with(7, 100, 0),
            Plan {
                run: 100,
                passes: 0,
                piece: 1
            }
        );
    }

    fn by_key<F: Fn(&[u32; 2]) -> u32 + TaskFn>(
        pool: &Pool,
        a: &mut SharedArray<[u32; 2]>,
        plan: Plan,
        _key: F,
    ) -> Result<()> {
        pool.sort_planned::<[u32; 2], ByKey<F, u32>>(a, true, plan)
    }

    #[test]
    fn tiny_runs_and_pieces_sort_stably_in_the_workers() {
        let pool = Pool::builder()
            .workers(2)
            .mempool_size(16 << 20)
            .build()
            .unwrap();
        for n in [2usize, 3, 7, 64, 1000] {
            for (run, piece) in [(1, 1), (1, 3), (2, 5), (3, 2), (5, 1000)] {
                // (key, index): a stable sort by key leaves indices ascending within a key.
                let mut a = pool
                    .array_from_fn(n, |i| [((i * 37) % 5) as u32, i as u32])
                    .unwrap();
                let mut expect = a.to_vec();
                expect.sort_by_key(|p| p[0]);
                by_key(&pool, &mut a, Plan::with(n, run, piece), |p: &[u32; 2]| {
                    p[0]
                })
                .unwrap_or_else(|e| panic!("n = {n}, run = {run}, piece = {piece}: {e}"));
                assert_eq!(a.to_vec(), expect, "n = {n}, run = {run}, piece = {piece}");
            }
        }
    }
}
