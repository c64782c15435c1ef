//! Indexed combinations of sources, as rayon's `IndexedParallelIterator`: `enumerate`,
//! `zip`, `skip`, `take`, `chain`.
//!
//! They work on any pipeline whose stages are one-to-one ([`OneToOne`]): such a pipeline
//! is fused into a source of its own ([`Staged`]), whose item `i` is the pipeline's item
//! `i`, so chunk `a..b` of the combination maps to plain index ranges of its parts.
//! `zip` runs its right side over the chunk into a buffer first (a push-based source
//! cannot be stepped in lockstep), so a chunk of a zip holds one chunk of right-hand
//! items in the worker's memory.

use std::marker::PhantomData;
use std::ops::{ControlFlow, Range};

use super::source::{Detached, Source};
use super::stage::{OneToOne, Stage};
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

    fn init(args: &Self::Args) -> Result<Self::Local> {
        Ok((S::init(&args.0)?, St::init(&args.1)?))
    }

    fn feed(
        args: &Self::Args,
        (sl, stl): &mut Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        S::feed(&args.0, sl, range, |x| St::push(&args.1, stl, x, &mut f))
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

    fn init(args: &Self::Args) -> Result<Self::Local> {
        S::init(args)
    }

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

    fn init(args: &Self::Args) -> Result<Self::Local> {
        S::init(&args.0)
    }

    fn feed(
        args: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
        f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let n = args.1 as usize;
        S::feed(&args.0, local, range.start + n..range.end + n, f)
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

    fn init(args: &Self::Args) -> Result<Self::Local> {
        S::init(&args.0)
    }

    fn feed(
        args: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
        f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        S::feed(&args.0, local, range, f)
    }
}

/// Pairs of items of two sources, as long as the shorter.
#[doc(hidden)]
pub struct Zip<A, B>(PhantomData<fn(A, B)>);
impl<A: Detached, B: Detached> Detached for Zip<A, B> {}

impl<A: Source, B: Source> Source for Zip<A, B> {
    type Item = (A::Item, B::Item);
    type Args = (A::Args, B::Args);
    /// Both sides, and the buffer of right-hand items of the current chunk.
    type Local = (A::Local, B::Local, Vec<B::Item>);

    fn len(args: &Self::Args) -> usize {
        A::len(&args.0).min(B::len(&args.1))
    }

    fn init(args: &Self::Args) -> Result<Self::Local> {
        Ok((A::init(&args.0)?, B::init(&args.1)?, Vec::new()))
    }

    fn feed(
        args: &Self::Args,
        (al, bl, buf): &mut Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        buf.clear();
        buf.reserve(range.len());
        let _ = B::feed(&args.1, bl, range.clone(), |y| {
            buf.push(y);
            ControlFlow::Continue(())
        });
        let mut right = buf.drain(..);
        A::feed(&args.0, al, range, |x| match right.next() {
            Some(y) => f((x, y)),
            // Both sides hold every index below the zip's length.
            None => ControlFlow::Break(()),
        })
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

    fn init(args: &Self::Args) -> Result<Self::Local> {
        Ok((A::init(&args.0)?, B::init(&args.1)?))
    }

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
