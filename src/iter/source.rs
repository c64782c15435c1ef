//! Where the items of a parallel iterator come from: a shared array or a range of
//! integers ([`range`](super::range)), and the indexed combinations of sources in
//! [`indexed`](super::indexed) (enumerate, zip, skip, take, chain).

use std::marker::PhantomData;
use std::ops::{ControlFlow, Range};

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::array::ArrayDesc;
use crate::mempool::Mempool;
use crate::view::ArrayView;
use crate::Result;

/// A source of items, resolved in each worker. Implementation detail of
/// [`ParIter`](crate::ParIter); not meant to be implemented outside procyon.
#[doc(hidden)]
pub trait Source: 'static {
    /// The items produced.
    type Item;
    /// What travels to the workers.
    type Args: Serialize + DeserializeOwned;
    /// Resolved once per worker per job.
    type Local;
    /// Number of items.
    fn len(args: &Self::Args) -> usize;
    /// Resolves the source in a worker, against `pool` (the worker's handle of the
    /// job's mempool).
    fn init(args: &Self::Args, pool: &Mempool) -> Result<Self::Local>;
    /// Feeds items `range` (within `0..len`) to `f` in order until it breaks.
    ///
    /// Implementations are `#[inline]`, as are the stages' `push`: a pipeline's loop runs
    /// fast only when it is compiled as one function with the terminal's step, whose
    /// accumulator can then stay in a register. A `zip` whose `feed` was compiled apart
    /// kept its running sum of `f64` products in memory, a store and a load per item:
    /// benches/adapters.rs's zip of 100,000 items took 407-420 us on one worker, and
    /// 162-179 us inlined, with the zip buffering a block at a time (2026-12-07).
    fn feed(
        args: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
        f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()>;

    /// Items `range` (within `0..len`) as an iterator, for the sources that can be read
    /// that way: shared arrays, ranges, their one-to-one stages (`map`) and the index
    /// combinations of such sources (enumerate, skip, take, rev, zip). `None` for the
    /// others (filter-like stages, columnar and serde sources, `chunks`, `chain`, whose
    /// std iterator has no exact size), which are only fed.
    ///
    /// `zip`, `rev` and `par_iter_mut().zip()` use it when their sources have it: a zip of
    /// two arrays then runs as one plain loop over both iterators, as the sequential
    /// `zip` does, instead of copying the right-hand items through a buffer a block at a
    /// time. One worker, `a.zip(a).map(x * y).sum()` over 1,000,000 `f64`, three
    /// launches alternated: 1.04-1.64 ms per job buffered, 0.87-0.90 ms as one loop, as
    /// fast as `a.map(x * x).sum()` (0.85-0.89 ms). For two arrays, pulling the
    /// right-hand items from inside the left-hand side's `feed` (by index or from its
    /// iterator) kept the running sum in memory in that build (3.4-3.7 ms), hence the
    /// plain loop when both sides have an iterator; with a left-hand side that has none
    /// (`a.chain(b).zip(c)`), the same pull took 0.86-0.90 ms per job against 1.02-1.12
    /// buffered (three launches alternated), so it stays for that case (2026-12-07,
    /// scratch drivers).
    #[inline]
    fn iter<'a>(
        _args: &'a Self::Args,
        _local: &'a mut Self::Local,
        _range: Range<usize>,
    ) -> Option<impl DoubleEndedIterator<Item = Self::Item> + ExactSizeIterator + 'a> {
        None::<std::iter::Empty<Self::Item>>
    }
}

/// Marks sources that refer to no memory of the caller's (index ranges), so a job over
/// them may outlive the call that started it: only those get the `spawn_*` terminals.
/// A job over a shared array reads it until it ends, and a handle cannot keep the array
/// borrowed (a leaked handle would end the borrow early), so array jobs only run to
/// completion inside the call (`for_each`, `collect_vec`, ...).
#[doc(hidden)]
pub trait Detached: Source {}

/// Items of a shared array, by value.
#[doc(hidden)]
pub struct ArraySource<T>(PhantomData<fn(T)>);

impl<T: Pod> Source for ArraySource<T> {
    type Item = T;
    type Args = ArrayDesc<T>;
    type Local = ArrayView<T>;

    fn len(args: &Self::Args) -> usize {
        args.len()
    }

    fn init(args: &Self::Args, pool: &Mempool) -> Result<Self::Local> {
        // SAFETY: the client keeps the array borrowed until the job has ended.
        unsafe { ArrayView::resolve(args, pool) }
    }

    #[inline]
    fn feed(
        _: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(T) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        // SAFETY: the array is read-only while the client borrows it for the job.
        for &x in unsafe { local.chunk(range) } {
            f(x)?;
        }
        ControlFlow::Continue(())
    }

    #[inline]
    fn iter<'a>(
        _: &'a Self::Args,
        local: &'a mut Self::Local,
        range: Range<usize>,
    ) -> Option<impl DoubleEndedIterator<Item = T> + ExactSizeIterator + 'a> {
        // SAFETY: as in `feed`, the array is read-only while the client borrows it.
        Some(unsafe { local.chunk(range) }.iter().copied())
    }
}
