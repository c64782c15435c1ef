//! The adapters between source and terminal: map, filter, filter_map, flat_map (and
//! flatten), each in
//! every environment of [`env`](super::env) (`map`, `map_with`, `map_init`, `map_ctx`,
//! `map_with_ctx`, ...).
//!
//! A chain of stages is a type (`Filter<Map<Id, Plain, F, U>, With<C>, G>`); the
//! functions in it are zero-sized and conjured in the worker, and only explicit state
//! travels, serialized once per job and decoded once per worker.

use std::marker::PhantomData;
use std::ops::ControlFlow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::env::{Env, EnvFn};

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

/// Marks stage chains that emit exactly one item per input, so item `i` of the pipeline
/// is item `i` of the source: outputs can be written by index (`collect_array`) and the
/// pipeline is indexed (`enumerate`, `zip`, `skip`, `take`, `chain`, `position_*`), as
/// rayon's `IndexedParallelIterator`.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "this parallel iterator is not indexed: a `filter`, `filter_map` or `flat_map` stage changes how many items there are",
    label = "not indexed after `filter` / `filter_map` / `flat_map`",
    note = "as with rayon's IndexedParallelIterator, call `enumerate`, `zip`, `skip`, `take`, `chain`, `position_*` and `collect_array` before any filter-like stage, or `collect_vec` first"
)]
pub trait OneToOne {}

/// The identity stage.
#[doc(hidden)]
pub struct Id;
impl OneToOne for Id {}

impl<In> Stage<In> for Id {
    type Out = In;
    type State = ();
    type Local = ();
    #[inline]
    fn init(_: &()) -> crate::Result<()> {
        Ok(())
    }
    #[inline]
    fn push(
        _: &(),
        _: &mut (),
        item: In,
        k: &mut impl FnMut(In) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        k(item)
    }
}

/// `map(f)` and its environment forms.
#[doc(hidden)]
pub struct Map<P, E, F, U>(PhantomData<fn(P, E, F) -> U>);
impl<P: OneToOne, E, F, U> OneToOne for Map<P, E, F, U> {}

impl<In, P, E, F, U> Stage<In> for Map<P, E, F, U>
where
    P: Stage<In>,
    E: Env,
    F: EnvFn<E, P::Out, U>,
    U: 'static,
{
    type Out = U;
    type State = (P::State, E::State);
    type Local = (P::Local, E::Local);
    #[inline]
    fn init(state: &Self::State) -> crate::Result<Self::Local> {
        Ok((P::init(&state.0)?, E::init(&state.1)?))
    }
    #[inline]
    fn push(
        state: &Self::State,
        (pl, el): &mut Self::Local,
        item: In,
        k: &mut impl FnMut(U) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        P::push(&state.0, pl, item, &mut |x| k(F::call(&state.1, el, x)))
    }
}

/// `filter(pred)` and its environment forms.
#[doc(hidden)]
pub struct Filter<P, E, F>(PhantomData<fn(P, E, F)>);

impl<In, P, E, F> Stage<In> for Filter<P, E, F>
where
    P: Stage<In>,
    E: Env,
    F: for<'a> EnvFn<E, &'a P::Out, bool>,
{
    type Out = P::Out;
    type State = (P::State, E::State);
    type Local = (P::Local, E::Local);
    #[inline]
    fn init(state: &Self::State) -> crate::Result<Self::Local> {
        Ok((P::init(&state.0)?, E::init(&state.1)?))
    }
    #[inline]
    fn push(
        state: &Self::State,
        (pl, el): &mut Self::Local,
        item: In,
        k: &mut impl FnMut(P::Out) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        P::push(&state.0, pl, item, &mut |x| {
            if F::call(&state.1, el, &x) {
                k(x)
            } else {
                ControlFlow::Continue(())
            }
        })
    }
}

/// `filter_map(f)` and its environment forms.
#[doc(hidden)]
pub struct FilterMap<P, E, F, U>(PhantomData<fn(P, E, F) -> U>);

impl<In, P, E, F, U> Stage<In> for FilterMap<P, E, F, U>
where
    P: Stage<In>,
    E: Env,
    F: EnvFn<E, P::Out, Option<U>>,
    U: 'static,
{
    type Out = U;
    type State = (P::State, E::State);
    type Local = (P::Local, E::Local);
    #[inline]
    fn init(state: &Self::State) -> crate::Result<Self::Local> {
        Ok((P::init(&state.0)?, E::init(&state.1)?))
    }
    #[inline]
    fn push(
        state: &Self::State,
        (pl, el): &mut Self::Local,
        item: In,
        k: &mut impl FnMut(U) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        P::push(
            &state.0,
            pl,
            item,
            &mut |x| match F::call(&state.1, el, x) {
                Some(y) => k(y),
                None => ControlFlow::Continue(()),
            },
        )
    }
}

/// `flat_map(f)` (`f` returns any `IntoIterator`) and its environment forms.
#[doc(hidden)]
pub struct FlatMap<P, E, F, I>(PhantomData<fn(P, E, F) -> I>);

impl<In, P, E, F, I> Stage<In> for FlatMap<P, E, F, I>
where
    P: Stage<In>,
    E: Env,
    F: EnvFn<E, P::Out, I>,
    I: IntoIterator + 'static,
{
    type Out = I::Item;
    type State = (P::State, E::State);
    type Local = (P::Local, E::Local);
    #[inline]
    fn init(state: &Self::State) -> crate::Result<Self::Local> {
        Ok((P::init(&state.0)?, E::init(&state.1)?))
    }
    #[inline]
    fn push(
        state: &Self::State,
        (pl, el): &mut Self::Local,
        item: In,
        k: &mut impl FnMut(I::Item) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        P::push(&state.0, pl, item, &mut |x| {
            for y in F::call(&state.1, el, x) {
                k(y)?;
            }
            ControlFlow::Continue(())
        })
    }
}

/// `flatten()`: every item of every item.
#[doc(hidden)]
pub struct Flatten<P>(PhantomData<fn(P)>);

impl<In, P> Stage<In> for Flatten<P>
where
    P: Stage<In>,
    P::Out: IntoIterator,
{
    type Out = <P::Out as IntoIterator>::Item;
    type State = P::State;
    type Local = P::Local;
    #[inline]
    fn init(state: &Self::State) -> crate::Result<Self::Local> {
        P::init(state)
    }
    #[inline]
    fn push(
        state: &Self::State,
        local: &mut Self::Local,
        item: In,
        k: &mut impl FnMut(Self::Out) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        P::push(state, local, item, &mut |x| {
            for y in x {
                k(y)?;
            }
            ControlFlow::Continue(())
        })
    }
}
