//! One task whose value comes back to the caller: the kinds of `spawn` and
//! `spawn_with`. They borrow nothing ([`JobKind::BORROWS`] is false), so a job whose
//! owner stops waiting can be detached and left to the scheduler.

use std::marker::PhantomData;
use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{JobKind, WorkerCx};
use crate::task::{conjure, TaskFn};
use crate::Result;

/// One task, `f(&ctx)`, whose value comes back to the caller.
pub(crate) struct SpawnJob<F, R>(PhantomData<fn(F) -> R>);

impl<F: Fn(&crate::Ctx) -> R + TaskFn, R: Serialize + DeserializeOwned + 'static> JobKind
    for SpawnJob<F, R>
{
    type Args = ();
    type Local = (crate::Ctx, F);
    type Partial = R;
    const ORDERED: bool = true;
    const BORROWS: bool = false;

    fn init(_: &(), _: &WorkerCx) -> Result<Self::Local> {
        Ok((crate::Ctx::current()?, conjure::<F>()))
    }

    fn run(_: &(), (ctx, f): &mut Self::Local, _: Range<usize>) -> (Option<R>, bool) {
        (Some(f(ctx)), false)
    }
}

/// One task, `f(&arg, &ctx)`, whose value comes back to the caller.
pub(crate) struct SpawnWithJob<A, F, R>(PhantomData<fn(A, F) -> R>);

impl<A, F, R> JobKind for SpawnWithJob<A, F, R>
where
    A: Serialize + DeserializeOwned + 'static,
    F: Fn(&A, &crate::Ctx) -> R + TaskFn,
    R: Serialize + DeserializeOwned + 'static,
{
    type Args = A;
    type Local = (crate::Ctx, F);
    type Partial = R;
    const ORDERED: bool = true;
    const BORROWS: bool = false;

    fn init(_: &A, _: &WorkerCx) -> Result<Self::Local> {
        Ok((crate::Ctx::current()?, conjure::<F>()))
    }

    fn run(arg: &A, (ctx, f): &mut Self::Local, _: Range<usize>) -> (Option<R>, bool) {
        (Some(f(arg, ctx)), false)
    }
}
