//! Indexed combinations of sources, as rayon's `IndexedParallelIterator`: `enumerate`,
//! `zip`, `skip`, `take`, `chain`, `rev`, `chunks`.
//!
//! They work on any pipeline whose stages are one-to-one ([`OneToOne`]): such a pipeline
//! is fused into a source of its own ([`Staged`]), whose item `i` is the pipeline's item
//! `i`, so chunk `a..b` of the combination maps to plain index ranges of its parts.
//! `zip` runs its right side over the chunk into a buffer first (a push-based source
//! cannot be stepped in lockstep), so a chunk of a zip holds one chunk of right-hand
//! items in the worker's memory; `rev` buffers its chunk the same way.

use std::marker::PhantomData;
use std::ops::{ControlFlow, Range};

use super::source::{Detached, Source};
use super::stage::{OneToOne, Stage};
use crate::mempool::Mempool;
use crate::Result;

/// A source followed by one-to-one stages, as one source.
#[doc(hidden)]
pub struct Staged<S, St>(PhantomData<fn(S, St)>);
impl<S: Detached, St: Stage<S::Item> + OneToOne> Detached for Staged<S, St> {}

impl<S: Source, St: Stage<S::Item> + OneToOne> Source for Staged<S, St> {
    type Item = St::Out;
    type Args = (S::Args, St::State);
    type Local = (S::Local, St::Local);

    fn len(args: &Self::Args) -> usize {
        S::len(&args.0)
    }

    fn init(args: &Self::Args, pool: &Mempool) -> Result<Self::Local> {
        Ok((S::init(&args.0, pool)?, St::init(&args.1)?))
    }

    #[inline]
    fn feed(
        args: &Self::Args,
        (sl, stl): &mut Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        S::feed(&args.0, sl, range, |x| St::push(&args.1, stl, x, &mut f))
    }

    #[inline]
    fn iter<'a>(
        args: &'a Self::Args,
        (sl, stl): &'a mut Self::Local,
        range: Range<usize>,
    ) -> Option<impl DoubleEndedIterator<Item = Self::Item> + ExactSizeIterator + 'a> {
        let items = S::iter(&args.0, sl, range)?;
        Some(items.map(move |x| {
            // A one-to-one stage emits exactly one item per item pushed.
            let mut out = None;
            let _ = St::push(&args.1, stl, x, &mut |y| {
                out = Some(y);
                ControlFlow::Continue(())
            });
            out.expect("a one-to-one stage emits one item per item")
        }))
    }
}

/// Items with their index.
#[doc(hidden)]
pub struct Enumerated<S>(PhantomData<fn(S)>);
impl<S: Detached> Detached for Enumerated<S> {}

impl<S: Source> Source for Enumerated<S> {
    type Item = (usize, S::Item);
    type Args = S::Args;
    type Local = S::Local;

    fn len(args: &Self::Args) -> usize {
        S::len(args)
    }

    fn init(args: &Self::Args, pool: &Mempool) -> Result<Self::Local> {
        S::init(args, pool)
    }

    #[inline]
    fn feed(
        args: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let mut i = range.start;
        S::feed(args, local, range, |x| {
            let r = f((i, x));
            i += 1;
            r
        })
    }

    #[inline]
    fn iter<'a>(
        args: &'a Self::Args,
        local: &'a mut Self::Local,
        range: Range<usize>,
    ) -> Option<impl DoubleEndedIterator<Item = Self::Item> + ExactSizeIterator + 'a> {
        Some(range.clone().zip(S::iter(args, local, range)?))
    }
}

/// All but the first `n` items.
#[doc(hidden)]
pub struct Skip<S>(PhantomData<fn(S)>);
impl<S: Detached> Detached for Skip<S> {}

impl<S: Source> Source for Skip<S> {
    type Item = S::Item;
    /// The source and how many items to skip (at most its length).
    type Args = (S::Args, u64);
    type Local = S::Local;

    fn len(args: &Self::Args) -> usize {
        S::len(&args.0).saturating_sub(args.1 as usize)
    }

    fn init(args: &Self::Args, pool: &Mempool) -> Result<Self::Local> {
        S::init(&args.0, pool)
    }

    #[inline]
    fn feed(
        args: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
        f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let n = args.1 as usize;
        S::feed(&args.0, local, range.start + n..range.end + n, f)
    }

    #[inline]
    fn iter<'a>(
        args: &'a Self::Args,
        local: &'a mut Self::Local,
        range: Range<usize>,
    ) -> Option<impl DoubleEndedIterator<Item = Self::Item> + ExactSizeIterator + 'a> {
        let n = args.1 as usize;
        S::iter(&args.0, local, range.start + n..range.end + n)
    }
}

/// The first `n` items.
#[doc(hidden)]
pub struct Take<S>(PhantomData<fn(S)>);
impl<S: Detached> Detached for Take<S> {}

impl<S: Source> Source for Take<S> {
    type Item = S::Item;
    /// The source and how many items to keep.
    type Args = (S::Args, u64);
    type Local = S::Local;

    fn len(args: &Self::Args) -> usize {
        S::len(&args.0).min(usize::try_from(args.1).unwrap_or(usize::MAX))
    }

    fn init(args: &Self::Args, pool: &Mempool) -> Result<Self::Local> {
        S::init(&args.0, pool)
    }

    #[inline]
    fn feed(
        args: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
        f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        S::feed(&args.0, local, range, f)
    }

    #[inline]
    fn iter<'a>(
        args: &'a Self::Args,
        local: &'a mut Self::Local,
        range: Range<usize>,
    ) -> Option<impl DoubleEndedIterator<Item = Self::Item> + ExactSizeIterator + 'a> {
        S::iter(&args.0, local, range)
    }
}

/// Items a [`Zip`] or a [`Rev`] buffers at a time: 8 KiB of `f64`s, a fraction of an L1
/// cache, and few enough items of any size that the buffer costs nothing to keep.
const BLOCK: usize = 1024;

/// `range` cut into consecutive blocks of at most [`BLOCK`] items.
pub(crate) fn blocks(range: Range<usize>) -> impl Iterator<Item = Range<usize>> {
    range
        .clone()
        .step_by(BLOCK)
        .map(move |start| start..(start + BLOCK).min(range.end))
}

/// Items `block` (at most [`BLOCK`]) of `S`, in `buf` (emptied first).
///
/// Written through the spare capacity with the count in a local rather than by `push`:
/// a `push` stores the vector's length and checks its capacity in memory for every item
/// (the compiler cannot tell the item's store from the length's), which made filling
/// the buffer cost as much as a zip's own loop (`perf annotate`, 2026-12-07).
#[inline]
pub(crate) fn fill<S: Source>(
    args: &S::Args,
    local: &mut S::Local,
    block: Range<usize>,
    buf: &mut Vec<S::Item>,
) {
    buf.clear();
    buf.reserve(block.len());
    let spare = &mut buf.spare_capacity_mut()[..block.len()];
    let mut n = 0;
    let _ = S::feed(args, local, block, |y| match spare.get_mut(n) {
        Some(slot) => {
            slot.write(y);
            n += 1;
            ControlFlow::Continue(())
        }
        // A source feeds at most the items asked for.
        None => ControlFlow::Break(()),
    });
    // SAFETY: slots `0..n` of the spare capacity were written just above, and
    // `n <= block.len() <= capacity`.
    unsafe { buf.set_len(n) }
}

/// Pairs of items of two sources, as long as the shorter.
#[doc(hidden)]
pub struct Zip<A, B>(PhantomData<fn(A, B)>);
impl<A: Detached, B: Detached> Detached for Zip<A, B> {}

impl<A: Source, B: Source> Source for Zip<A, B> {
    type Item = (A::Item, B::Item);
    type Args = (A::Args, B::Args);
    /// Both sides, and the buffer of right-hand items of the current block.
    type Local = (A::Local, B::Local, Vec<B::Item>);

    fn len(args: &Self::Args) -> usize {
        A::len(&args.0).min(B::len(&args.1))
    }

    fn init(args: &Self::Args, pool: &Mempool) -> Result<Self::Local> {
        Ok((A::init(&args.0, pool)?, B::init(&args.1, pool)?, Vec::new()))
    }

    #[inline]
    fn feed(
        args: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if let Some(pairs) = Self::iter(args, local, range.clone()) {
            // Both sides are iterators: one plain loop over their zip.
            for pair in pairs {
                f(pair)?;
            }
            return ControlFlow::Continue(());
        }
        let (al, bl, buf) = local;
        if let Some(mut right) = B::iter(&args.1, bl, range.clone()) {
            // One loop: each right-hand item read as its left-hand partner comes.
            return A::feed(&args.0, al, range, |x| match right.next() {
                Some(y) => f((x, y)),
                // Both sides hold every index below the zip's length.
                None => ControlFlow::Break(()),
            });
        }
        // Else a block at a time, so the right-hand items wait in a buffer that stays in
        // the L1 cache (and never grows past a block) however long the chunk.
        for block in blocks(range) {
            fill::<B>(&args.1, bl, block.clone(), buf);
            let mut right = buf.drain(..);
            A::feed(&args.0, al, block, |x| match right.next() {
                Some(y) => f((x, y)),
                // Both sides hold every index below the zip's length.
                None => ControlFlow::Break(()),
            })?;
        }
        ControlFlow::Continue(())
    }

    #[inline]
    fn iter<'a>(
        args: &'a Self::Args,
        (al, bl, _): &'a mut Self::Local,
        range: Range<usize>,
    ) -> Option<impl DoubleEndedIterator<Item = Self::Item> + ExactSizeIterator + 'a> {
        let left = A::iter(&args.0, al, range.clone())?;
        Some(left.zip(B::iter(&args.1, bl, range)?))
    }
}

/// The items of one source, then those of another.
#[doc(hidden)]
pub struct Chain<A, B>(PhantomData<fn(A, B)>);
impl<A: Detached, B: Detached<Item = A::Item>> Detached for Chain<A, B> {}

impl<A: Source, B: Source<Item = A::Item>> Source for Chain<A, B> {
    type Item = A::Item;
    type Args = (A::Args, B::Args);
    type Local = (A::Local, B::Local);

    fn len(args: &Self::Args) -> usize {
        A::len(&args.0).saturating_add(B::len(&args.1))
    }

    fn init(args: &Self::Args, pool: &Mempool) -> Result<Self::Local> {
        Ok((A::init(&args.0, pool)?, B::init(&args.1, pool)?))
    }

    #[inline]
    fn feed(
        args: &Self::Args,
        (al, bl): &mut Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let split = A::len(&args.0);
        let left = range.start.min(split)..range.end.min(split);
        let right = range.start.max(split) - split..range.end.max(split) - split;
        if !left.is_empty() {
            A::feed(&args.0, al, left, &mut f)?;
        }
        if !right.is_empty() {
            B::feed(&args.1, bl, right, &mut f)?;
        }
        ControlFlow::Continue(())
    }
}

/// The items in reverse order.
#[doc(hidden)]
pub struct Rev<S>(PhantomData<fn(S)>);
impl<S: Detached> Detached for Rev<S> {}

impl<S: Source> Source for Rev<S> {
    type Item = S::Item;
    type Args = S::Args;
    /// The source, and the buffer of the current block's items.
    type Local = (S::Local, Vec<S::Item>);

    fn len(args: &Self::Args) -> usize {
        S::len(args)
    }

    fn init(args: &Self::Args, pool: &Mempool) -> Result<Self::Local> {
        Ok((S::init(args, pool)?, Vec::new()))
    }

    #[inline]
    fn feed(
        args: &Self::Args,
        (local, buf): &mut Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let n = S::len(args);
        // Reversed index `i` is the source's `n - 1 - i`.
        if let Some(items) = S::iter(args, local, n - range.end..n - range.start) {
            for x in items.rev() {
                f(x)?;
            }
            return ControlFlow::Continue(());
        }
        // Else each block of reversed indices is a block of the source's, fed forwards
        // into the buffer and emitted backwards.
        for block in blocks(range) {
            fill::<S>(args, local, n - block.end..n - block.start, buf);
            for x in buf.drain(..).rev() {
                f(x)?;
            }
        }
        ControlFlow::Continue(())
    }

    #[inline]
    fn iter<'a>(
        args: &'a Self::Args,
        (local, _): &'a mut Self::Local,
        range: Range<usize>,
    ) -> Option<impl DoubleEndedIterator<Item = Self::Item> + ExactSizeIterator + 'a> {
        let n = S::len(args);
        Some(S::iter(args, local, n - range.end..n - range.start)?.rev())
    }
}

/// Consecutive groups of `size` items (the last may be shorter), as `Vec`s.
#[doc(hidden)]
pub struct Chunks<S>(PhantomData<fn(S)>);
impl<S: Detached> Detached for Chunks<S> {}

impl<S: Source> Source for Chunks<S> {
    type Item = Vec<S::Item>;
    /// The source and the group size (at least 1: `chunks(0)` is refused when built).
    type Args = (S::Args, u64);
    type Local = S::Local;

    fn len(args: &Self::Args) -> usize {
        S::len(&args.0).div_ceil(args.1.max(1) as usize)
    }

    fn init(args: &Self::Args, pool: &Mempool) -> Result<Self::Local> {
        S::init(&args.0, pool)
    }

    #[inline]
    fn feed(
        args: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let size = args.1.max(1) as usize;
        let n = S::len(&args.0);
        let items = range.start * size..(range.end * size).min(n);
        let mut group = Vec::with_capacity(size.min(items.len()));
        let mut stop = false;
        let flow = S::feed(&args.0, local, items, |x| {
            group.push(x);
            if group.len() == size {
                let full = std::mem::replace(&mut group, Vec::with_capacity(size));
                if f(full).is_break() {
                    stop = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if stop || flow.is_break() {
            return ControlFlow::Break(());
        }
        if group.is_empty() {
            ControlFlow::Continue(())
        } else {
            f(group)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iter::range::{RangeArgs, RangeSource};
    use crate::iter::stage::Id;

    /// A small mempool of this process (range sources resolve nothing in it).
    fn test_pool() -> Mempool {
        Mempool::new(1 << 20).expect("a 1 MiB mempool maps")
    }

    /// Items `range` of source `S`, resolved in this process.
    fn items<S: Source>(args: &S::Args, range: Range<usize>) -> Vec<S::Item> {
        let mut local = S::init(args, &test_pool()).unwrap();
        let mut out = Vec::new();
        let _ = S::feed(args, &mut local, range, |x| {
            out.push(x);
            ControlFlow::Continue(())
        });
        out
    }

    /// Checks every chunk `a..b` of `S` against the same items of `expect`.
    fn every_chunk<S: Source>(args: &S::Args, expect: &[S::Item])
    where
        S::Item: PartialEq + std::fmt::Debug,
    {
        assert_eq!(S::len(args), expect.len());
        for a in 0..=expect.len() {
            for b in a..=expect.len() {
                assert_eq!(items::<S>(args, a..b), &expect[a..b], "chunk {a}..{b}");
            }
        }
    }

    /// Checks that `S` reads every chunk `a..b` of `expect` as an iterator, forwards and
    /// backwards.
    fn every_iter<S: Source>(args: &S::Args, expect: &[S::Item])
    where
        S::Item: PartialEq + std::fmt::Debug + Clone,
    {
        let mut local = S::init(args, &test_pool()).unwrap();
        for a in 0..=expect.len() {
            for b in a..=expect.len() {
                let items = S::iter(args, &mut local, a..b).expect("an iterable source");
                assert_eq!(items.len(), b - a);
                assert_eq!(items.collect::<Vec<_>>(), &expect[a..b], "chunk {a}..{b}");
                let back: Vec<_> = S::iter(args, &mut local, a..b).unwrap().rev().collect();
                let want: Vec<_> = expect[a..b].iter().rev().cloned().collect();
                assert_eq!(back, want, "chunk {a}..{b} backwards");
            }
        }
    }

    fn range(r: Range<u32>) -> RangeArgs<u32> {
        RangeArgs::new(r)
    }

    type R = RangeSource<u32>;
    type Fused = Staged<R, Id>;
    /// A range fed in order only: the buffered forms of zip and rev.
    type Ord = InOrder<R>;

    /// `S` without an iterator.
    struct InOrder<S>(PhantomData<fn(S)>);

    impl<S: Source> Source for InOrder<S> {
        type Item = S::Item;
        type Args = S::Args;
        type Local = S::Local;
        fn len(args: &S::Args) -> usize {
            S::len(args)
        }
        fn init(args: &S::Args, pool: &Mempool) -> Result<S::Local> {
            S::init(args, pool)
        }
        fn feed(
            args: &S::Args,
            local: &mut S::Local,
            range: Range<usize>,
            f: impl FnMut(S::Item) -> ControlFlow<()>,
        ) -> ControlFlow<()> {
            S::feed(args, local, range, f)
        }
    }

    #[test]
    fn skip_take_enumerate_rev_map_chunks_to_the_right_items() {
        for n in [0u32, 1, 2, 7, 12] {
            let all: Vec<u32> = (3..3 + n).collect();
            every_iter::<R>(&range(3..3 + n), &all);
            every_iter::<Fused>(&(range(3..3 + n), ()), &all);
            for k in 0..n as usize + 2 {
                let skipped: Vec<u32> = all.iter().copied().skip(k).collect();
                every_chunk::<Skip<R>>(&(range(3..3 + n), k as u64), &skipped);
                every_iter::<Skip<R>>(&(range(3..3 + n), k as u64), &skipped);
                let taken: Vec<u32> = all.iter().copied().take(k).collect();
                every_chunk::<Take<R>>(&(range(3..3 + n), k as u64), &taken);
                every_iter::<Take<R>>(&(range(3..3 + n), k as u64), &taken);
            }
            let numbered: Vec<(usize, u32)> = all.iter().copied().enumerate().collect();
            every_chunk::<Enumerated<Fused>>(&(range(3..3 + n), ()), &numbered);
            every_iter::<Enumerated<Fused>>(&(range(3..3 + n), ()), &numbered);
            let reversed: Vec<u32> = all.iter().copied().rev().collect();
            // Read through an iterator, and through the block buffer (fed in order only).
            every_chunk::<Rev<R>>(&range(3..3 + n), &reversed);
            every_chunk::<Rev<Ord>>(&range(3..3 + n), &reversed);
            every_iter::<Rev<R>>(&range(3..3 + n), &reversed);
            for size in 1..5usize {
                let groups: Vec<Vec<u32>> = all.chunks(size).map(<[u32]>::to_vec).collect();
                every_chunk::<Chunks<R>>(&(range(3..3 + n), size as u64), &groups);
            }
        }
    }

    #[test]
    fn zip_is_as_long_as_the_shorter_side() {
        for (m, n) in [(0u32, 0u32), (0, 3), (3, 0), (5, 5), (4, 9), (9, 4)] {
            let expect: Vec<(u32, u32)> = (0..m).zip(100..100 + n).collect();
            // The right-hand side read through its iterator, then buffered.
            every_chunk::<Zip<R, Fused>>(&(range(0..m), (range(100..100 + n), ())), &expect);
            every_chunk::<Zip<Ord, R>>(&(range(0..m), range(100..100 + n)), &expect);
            every_chunk::<Zip<R, Ord>>(&(range(0..m), range(100..100 + n)), &expect);
            every_iter::<Zip<R, Fused>>(&(range(0..m), (range(100..100 + n), ())), &expect);
        }
    }

    #[test]
    fn zip_and_rev_pair_and_order_items_across_their_blocks() {
        let n = 2 * BLOCK as u32 + 5;
        let zipped: Vec<(u32, u32)> = (0..n).zip(100..100 + n).collect();
        let reversed: Vec<u32> = (0..n).rev().collect();
        let b = BLOCK;
        let n = n as usize;
        // Chunks inside one block, across one or two block boundaries, the whole range.
        for chunk in [
            0..n,
            3..b + 7,
            b - 1..b + 1,
            b..2 * b,
            5..2 * b + 1,
            2 * b..n,
        ] {
            // Buffered (right-hand side fed in order only), and through the iterator.
            let args = (range(0..n as u32), range(100..100 + n as u32));
            assert_eq!(
                items::<Zip<R, Ord>>(&args, chunk.clone()),
                zipped[chunk.clone()]
            );
            assert_eq!(
                items::<Zip<R, R>>(&args, chunk.clone()),
                zipped[chunk.clone()]
            );
            assert_eq!(
                items::<Rev<Ord>>(&range(0..n as u32), chunk.clone()),
                reversed[chunk.clone()]
            );
            assert_eq!(
                items::<Rev<R>>(&range(0..n as u32), chunk.clone()),
                reversed[chunk]
            );
        }
        // A break in a later block stops the feed there, in both forms.
        fn stops_at<S: Source<Item = (u32, u32)>>(args: &S::Args, n: usize, at: usize) {
            let mut local = S::init(args, &test_pool()).unwrap();
            let mut seen = 0;
            let flow = S::feed(args, &mut local, 0..n, |(x, y)| {
                assert_eq!(y, x + 100);
                seen += 1;
                if x as usize == at {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            assert!(flow.is_break());
            assert_eq!(seen, at + 1);
        }
        let args = (range(0..n as u32), range(100..100 + n as u32));
        stops_at::<Zip<R, R>>(&args, n, b + 2);
        stops_at::<Zip<R, Ord>>(&args, n, b + 2);
    }

    #[test]
    fn only_sources_read_in_order_have_an_iterator() {
        let mut none = ();
        assert!(R::iter(&range(0..3), &mut none, 0..3).is_some());
        assert!(Ord::iter(&range(0..3), &mut none, 0..3).is_none());
        let args = (range(0..3), range(3..6));
        let mut local = Chain::<R, R>::init(&args, &test_pool()).unwrap();
        assert!(Chain::<R, R>::iter(&args, &mut local, 0..6).is_none());
        let args = (range(0..3), range(3..6));
        let mut local = Zip::<R, Ord>::init(&args, &test_pool()).unwrap();
        assert!(Zip::<R, Ord>::iter(&args, &mut local, 0..3).is_none());
    }

    #[test]
    fn chain_splits_chunks_at_the_seam() {
        for (m, n) in [(0u32, 0u32), (0, 3), (3, 0), (5, 5), (1, 8)] {
            let expect: Vec<u32> = (0..m).chain(100..100 + n).collect();
            every_chunk::<Chain<R, R>>(&(range(0..m), range(100..100 + n)), &expect);
        }
    }

    #[test]
    fn a_break_stops_the_feed_on_both_sides_of_a_chain() {
        let args = (range(0..3), range(10..13));
        let mut local = Chain::<R, R>::init(&args, &test_pool()).unwrap();
        let mut seen = Vec::new();
        let flow = Chain::<R, R>::feed(&args, &mut local, 0..6, |x| {
            seen.push(x);
            if x == 10 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(flow.is_break());
        assert_eq!(seen, [0, 1, 2, 10]);
    }
}
