//! `dst[i] = f(src[i])` over two shared arrays: the kind of `par_map` and
//! `par_map_into`.

use std::marker::PhantomData;
use std::ops::Range;

use bytemuck::Pod;

use super::{JobKind, WorkerCx};
use crate::array::ArrayDesc;
use crate::stream;
use crate::task::{conjure, TaskFn};
use crate::view::{ArrayView, ArrayViewMut};
use crate::Result;

/// `dst[i] = f(src[i])`.
pub(crate) struct MapInto<T, U, F>(PhantomData<fn(T, U, F)>);

impl<T: Pod, U: Pod, F: Fn(T) -> U + TaskFn> JobKind for MapInto<T, U, F> {
    /// Input, output, and whether to write the output past the cache ([`crate::stream`]).
    type Args = (ArrayDesc<T>, ArrayDesc<U>, bool);
    type Local = (ArrayView<T>, ArrayViewMut<U>, F);
    type Partial = ();
    const ORDERED: bool = false;

    fn init(args: &Self::Args, cx: &WorkerCx) -> Result<Self::Local> {
        // SAFETY: the owner lends `src` by `&` and `dst` by `&mut` and keeps both alive
        // until the job has ended.
        unsafe {
            Ok((
                ArrayView::resolve(&args.0, &cx.mempool)?,
                ArrayViewMut::resolve(&args.1, &cx.mempool)?,
                conjure::<F>(),
            ))
        }
    }

    fn run(
        args: &Self::Args,
        (src, dst, f): &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<()>, bool) {
        // SAFETY: the input is read-only for the job (lent by `&`); the output chunk
        // `range` is handed to this worker only (self-scheduling hands out each index
        // once), and `src` and `dst` are distinct arrays (one is borrowed `&mut`).
        let (s, d) = unsafe { (src.chunk(range.clone()), dst.chunk_mut(range)) };
        if args.2 {
            stream::map_streaming(s, d, &*f);
        } else {
            stream::map_cached(s, d, &*f);
        }
        (None, false)
    }
}
