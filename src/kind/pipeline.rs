//! The kinds of the parallel-iterator pipeline: a source feeding stages into a
//! terminal ([`IterJob`]), and a one-to-one pipeline writing a new shared array in place
//! ([`CollectArray`]).

use std::marker::PhantomData;
use std::ops::{ControlFlow, Range};

use bytemuck::Pod;

use super::{JobKind, WorkerCx};
use crate::array::ArrayDesc;
use crate::iter::source::Source;
use crate::iter::stage::{OneToOne, Stage};
use crate::iter::terminal::Terminal;
use crate::stream::StreamWriter;
use crate::view::ArrayViewMut;
use crate::Result;

/// The job kind of a pipeline ending in terminal `T`.
pub(crate) struct IterJob<S, St, T>(PhantomData<fn(S, St, T)>);

impl<S: Source, St: Stage<S::Item>, T: Terminal<St::Out>> JobKind for IterJob<S, St, T> {
    type Args = (S::Args, St::State, T::State);
    type Local = (S::Local, St::Local);
    type Partial = T::Acc;
    const ORDERED: bool = T::ORDERED;
    const SEALS: bool = T::SEALS;

    #[inline]
    fn init(args: &Self::Args, cx: &WorkerCx) -> Result<Self::Local> {
        Ok((S::init(&args.0, &cx.mempool)?, St::init(&args.1)?))
    }

    fn run(
        args: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<T::Acc>, bool) {
        // A break is a short-circuit: the whole job stops claiming chunks.
        Self::run_from(args, local, range, None)
    }

    fn merge(left: T::Acc, right: T::Acc) -> T::Acc {
        T::merge(left, right)
    }

    fn seal(part: T::Acc) -> T::Acc {
        T::seal(part)
    }

    /// An unordered terminal's accumulator takes the next chunk's items as they come:
    /// adding them to it is what merging a fresh chunk accumulator into it would give
    /// (`Terminal`'s contract for unordered terminals), without the fresh one. `run` is
    /// this without an accumulator: one copy of the pipeline's loop serves both.
    fn run_from(
        args: &Self::Args,
        (src, st): &mut Self::Local,
        range: Range<usize>,
        acc: Option<T::Acc>,
    ) -> (Option<T::Acc>, bool) {
        let mut acc = match acc {
            Some(a) => a,
            None => T::start(&args.2),
        };
        let flow = S::feed(&args.0, src, range, |item| {
            St::push(&args.1, st, item, &mut |out| T::step(&mut acc, out))
        });
        (T::HAS_ACC.then_some(acc), flow.is_break())
    }
}

/// The job kind of `collect_array`: item `i` is written to `out[i]`.
pub(crate) struct CollectArray<S, St>(PhantomData<fn(S, St)>);

impl<S: Source, St: Stage<S::Item> + OneToOne> JobKind for CollectArray<S, St>
where
    St::Out: Pod,
{
    /// Source, stages, output, and whether to write it past the cache
    /// ([`crate::stream`]).
    type Args = (S::Args, St::State, ArrayDesc<St::Out>, bool);
    type Local = (S::Local, St::Local, ArrayViewMut<St::Out>);
    type Partial = ();
    const ORDERED: bool = false;

    #[inline]
    fn init(args: &Self::Args, cx: &WorkerCx) -> Result<Self::Local> {
        // SAFETY: the client owns the new output array, and neither reads nor frees it,
        // until the job has ended.
        let out = unsafe { ArrayViewMut::resolve(&args.2, &cx.mempool) }?;
        Ok((S::init(&args.0, &cx.mempool)?, St::init(&args.1)?, out))
    }

    fn run(
        args: &Self::Args,
        (src, st, out): &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<()>, bool) {
        // SAFETY: chunk `range` is handed to this worker only.
        let dst = unsafe { out.chunk_mut(range.clone()) };
        if args.3 {
            let mut w = StreamWriter::new(dst);
            let _ = S::feed(&args.0, src, range, |item| {
                St::push(&args.1, st, item, &mut |o| {
                    w.push(o);
                    ControlFlow::Continue(())
                })
            });
        } else {
            let mut i = 0;
            let _ = S::feed(&args.0, src, range, |item| {
                St::push(&args.1, st, item, &mut |o| {
                    dst[i] = o;
                    i += 1;
                    ControlFlow::Continue(())
                })
            });
        }
        (None, false)
    }
}
