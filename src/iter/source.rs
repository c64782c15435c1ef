//! Where the items of a parallel iterator come from: a shared array, an index range, or
//! either of them enumerated.

use std::marker::PhantomData;
use std::ops::{ControlFlow, Range};

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::array::ArrayDesc;
use crate::ops::Resolved;
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
    /// Resolves the source in a worker.
    fn init(args: &Self::Args) -> Result<Self::Local>;
    /// Feeds items `range` to `f` in order until it breaks.
    fn feed(
        local: &Self::Local,
        range: Range<usize>,
        f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()>;
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
    type Local = Resolved<T>;

    fn len(args: &Self::Args) -> usize {
        args.len()
    }

    fn init(args: &Self::Args) -> Result<Self::Local> {
        // SAFETY: the client keeps the array borrowed until the job has ended.
        unsafe { Resolved::new(args) }
    }

    fn feed(
        local: &Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(T) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        // SAFETY: the array is read-only while the client borrows it for the job.
        for &x in unsafe { local.slice(range) } {
            f(x)?;
        }
        ControlFlow::Continue(())
    }
}

/// The integers of a range.
#[doc(hidden)]
pub struct RangeSource;
impl Detached for RangeSource {}

/// `start` and `len` of an index range.
#[doc(hidden)]
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct RangeArgs {
    start: u64,
    len: u64,
}

impl RangeArgs {
    pub(crate) fn new(r: Range<usize>) -> Self {
        RangeArgs {
            start: r.start as u64,
            len: r.end.saturating_sub(r.start) as u64,
        }
    }
}

impl Source for RangeSource {
    type Item = usize;
    type Args = RangeArgs;
    type Local = usize;

    fn len(args: &Self::Args) -> usize {
        args.len as usize
    }

    fn init(args: &Self::Args) -> Result<usize> {
        Ok(args.start as usize)
    }

    fn feed(
        start: &usize,
        range: Range<usize>,
        mut f: impl FnMut(usize) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        for i in range {
            f(start + i)?;
        }
        ControlFlow::Continue(())
    }
}

/// A source whose items come with their index.
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
        local: &Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(Self::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let mut i = range.start;
        S::feed(local, range, |x| {
            let r = f((i, x));
            i += 1;
            r
        })
    }
}
