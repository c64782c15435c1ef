//! The adapters between source and terminal: map, map_with, map_init, filter.
//!
//! A chain of stages is a type (`Filter<Map<Id, F>, G>`); the functions in it are
//! zero-sized and conjured in the worker, and only explicit state (`map_with`'s context)
//! travels, serialized once per job and decoded once per worker.

use std::marker::PhantomData;
use std::ops::ControlFlow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::task::{conjure, TaskFn};

/// One step of a parallel iterator pipeline. Implementation detail of
/// [`ParIter`](crate::ParIter).
#[doc(hidden)]
pub trait Stage<In>: 'static {
    /// Items this stage emits.
    type Out;
    /// State carried to the workers.
    type State: Serialize + DeserializeOwned;
    /// Per worker per job state.
    type Local;
    /// Sets up the per worker state (runs once per worker per job).
    fn init(state: &Self::State) -> crate::Result<Self::Local>;
    /// Pushes one item through, emitting zero or more items to `k`.
    fn push(
        state: &Self::State,
        local: &mut Self::Local,
        item: In,
        k: &mut impl FnMut(Self::Out) -> ControlFlow<()>,
    ) -> ControlFlow<()>;
}

/// Marks stages that emit exactly one item per input (so outputs can be written by
/// index, as `collect_array` does).
#[doc(hidden)]
pub trait OneToOne {}

/// The identity stage.
#[doc(hidden)]
pub struct Id;
impl OneToOne for Id {}

impl<In> Stage<In> for Id {
    type Out = In;
    type State = ();
    type Local = ();
    fn init(_: &()) -> crate::Result<()> {
        Ok(())
    }
    fn push(
        _: &(),
        _: &mut (),
        item: In,
        k: &mut impl FnMut(In) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        k(item)
    }
}

/// `map(f)`.
#[doc(hidden)]
pub struct Map<P, F, U>(PhantomData<fn(P, F) -> U>);
impl<P: OneToOne, F, U> OneToOne for Map<P, F, U> {}

impl<In, P: Stage<In>, F: Fn(P::Out) -> U + TaskFn, U: 'static> Stage<In> for Map<P, F, U> {
    type Out = U;
    type State = P::State;
    type Local = (P::Local, F);
    fn init(state: &P::State) -> crate::Result<Self::Local> {
        Ok((P::init(state)?, conjure::<F>()))
    }
    fn push(
        state: &P::State,
        (pl, f): &mut Self::Local,
        item: In,
        k: &mut impl FnMut(U) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        P::push(state, pl, item, &mut |x| k(f(x)))
    }
}

/// `map_with(ctx, f)`: `f(&ctx, item)`, with `ctx` delivered once per worker per job.
#[doc(hidden)]
pub struct MapWith<P, C, F, U>(PhantomData<fn(P, C, F) -> U>);
impl<P: OneToOne, C, F, U> OneToOne for MapWith<P, C, F, U> {}

impl<In, P, C, F, U> Stage<In> for MapWith<P, C, F, U>
where
    P: Stage<In>,
    C: Serialize + DeserializeOwned + 'static,
    F: Fn(&C, P::Out) -> U + TaskFn,
    U: 'static,
{
    type Out = U;
    type State = (P::State, C);
    type Local = (P::Local, F);
    fn init(state: &Self::State) -> crate::Result<Self::Local> {
        Ok((P::init(&state.0)?, conjure::<F>()))
    }
    fn push(
        state: &Self::State,
        (pl, f): &mut Self::Local,
        item: In,
        k: &mut impl FnMut(U) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let ctx = &state.1;
        P::push(&state.0, pl, item, &mut |x| k(f(ctx, x)))
    }
}

/// `map_init(init, f)`: `init()` runs once per worker process per job; `f(&mut s, item)`.
#[doc(hidden)]
pub struct MapInit<P, I, S, F, U>(PhantomData<MapInitTypes<P, I, S, F, U>>);
type MapInitTypes<P, I, S, F, U> = fn(P, I, S, F) -> U;
impl<P: OneToOne, I, S, F, U> OneToOne for MapInit<P, I, S, F, U> {}

impl<In, P, I, S, F, U> Stage<In> for MapInit<P, I, S, F, U>
where
    P: Stage<In>,
    I: Fn() -> S + TaskFn,
    S: 'static,
    F: Fn(&mut S, P::Out) -> U + TaskFn,
    U: 'static,
{
    type Out = U;
    type State = P::State;
    type Local = (P::Local, S, F);
    fn init(state: &P::State) -> crate::Result<Self::Local> {
        Ok((P::init(state)?, conjure::<I>()(), conjure::<F>()))
    }
    fn push(
        state: &P::State,
        (pl, s, f): &mut Self::Local,
        item: In,
        k: &mut impl FnMut(U) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        P::push(state, pl, item, &mut |x| k(f(s, x)))
    }
}

/// `filter(pred)`.
#[doc(hidden)]
pub struct Filter<P, F>(PhantomData<fn(P, F)>);

impl<In, P, F> Stage<In> for Filter<P, F>
where
    P: Stage<In>,
    F: Fn(&P::Out) -> bool + TaskFn,
{
    type Out = P::Out;
    type State = P::State;
    type Local = (P::Local, F);
    fn init(state: &P::State) -> crate::Result<Self::Local> {
        Ok((P::init(state)?, conjure::<F>()))
    }
    fn push(
        state: &P::State,
        (pl, f): &mut Self::Local,
        item: In,
        k: &mut impl FnMut(P::Out) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        P::push(state, pl, item, &mut |x| {
            if f(&x) {
                k(x)
            } else {
                ControlFlow::Continue(())
            }
        })
    }
}

/// `map_ctx(f)`: `f(&ctx, item)` with the task's [`Ctx`](crate::Ctx) (nested jobs,
/// cancellation checks, progress reports).
#[doc(hidden)]
pub struct MapCtx<P, F, U>(PhantomData<fn(P, F) -> U>);
impl<P: OneToOne, F, U> OneToOne for MapCtx<P, F, U> {}

impl<In, P, F, U> Stage<In> for MapCtx<P, F, U>
where
    P: Stage<In>,
    F: Fn(&crate::Ctx, P::Out) -> U + TaskFn,
    U: 'static,
{
    type Out = U;
    type State = P::State;
    type Local = (P::Local, crate::Ctx, F);
    fn init(state: &P::State) -> crate::Result<Self::Local> {
        Ok((P::init(state)?, crate::Ctx::current()?, conjure::<F>()))
    }
    fn push(
        state: &P::State,
        (pl, ctx, f): &mut Self::Local,
        item: In,
        k: &mut impl FnMut(U) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        P::push(state, pl, item, &mut |x| k(f(ctx, x)))
    }
}
