//! `f(offset, &mut arr[offset..offset + chunk])` for every fixed-size chunk of a shared
//! array: the kind of `par_chunks_mut`.

use std::marker::PhantomData;
use std::ops::Range;

use bytemuck::Pod;

use super::{JobKind, WorkerCx};
use crate::array::ArrayDesc;
use crate::task::{conjure, TaskFn};
use crate::view::ArrayViewMut;
use crate::Result;

/// `f(offset, &mut arr[offset..offset + chunk])` for every chunk; the job's items are
/// the chunks.
pub(crate) struct ChunksMut<T, F>(PhantomData<fn(T, F)>);

impl<T: Pod, F: Fn(usize, &mut [T]) + TaskFn> JobKind for ChunksMut<T, F> {
    /// The array and the chunk length in elements.
    type Args = (ArrayDesc<T>, u64);
    type Local = (ArrayViewMut<T>, F);
    type Partial = ();
    const ORDERED: bool = false;

    fn init(args: &Self::Args, cx: &WorkerCx) -> Result<Self::Local> {
        // SAFETY: the owner lends the array by `&mut` until the job has ended.
        unsafe { Ok((ArrayViewMut::resolve(&args.0, &cx.mempool)?, conjure::<F>())) }
    }

    fn run(
        args: &Self::Args,
        (arr, f): &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<()>, bool) {
        let chunk = args.1 as usize;
        for c in range {
            let start = c * chunk;
            let end = (start + chunk).min(arr.len());
            // SAFETY: chunk `c` is handed to exactly one worker, and this loop forms one
            // slice at a time.
            f(start, unsafe { arr.chunk_mut(start..end) });
        }
        (None, false)
    }
}
