//! What a task function receives besides its item: nothing, a state value, a per-worker
//! value, the task's [`Ctx`], or a state value and the `Ctx`.
//!
//! This is the one mechanism behind every `*_with`, `*_init`, `*_ctx` and `*_with_ctx`
//! form of the adapters (`map`, `filter`, `filter_map`, `flat_map`, `for_each`): a stage
//! is generic over an [`Env`], which says what travels to the workers (`State`, serialized
//! once per job), what each worker sets up once per job (`Local`), and, through
//! [`EnvFn`], how the stage's function is called with them.
//!
//! | env              | travels | per worker per job | function                   |
//! |------------------|---------|--------------------|----------------------------|
//! | [`Plain`]        | nothing | nothing            | `f(item)`                  |
//! | [`With<C>`]      | `C`     | nothing            | `f(&c, item)`              |
//! | [`Init<I, T>`]   | nothing | `t = init()`       | `f(&mut t, item)`          |
//! | [`CtxEnv`]       | nothing | the task's `Ctx`   | `f(&ctx, item)`            |
//! | [`WithCtx<C>`]   | `C`     | the task's `Ctx`   | `f(&c, &ctx, item)`        |

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::task::{conjure, TaskFn};
use crate::{Ctx, Result};

/// What a stage's function receives besides its item. Implementation detail of
/// [`ParIter`](crate::ParIter).
#[doc(hidden)]
pub trait Env: 'static {
    /// What travels to the workers with the job.
    type State: Serialize + DeserializeOwned;
    /// Set up once per worker per job.
    type Local;
    /// Sets up the per-worker value.
    fn init(state: &Self::State) -> Result<Self::Local>;
}

/// A function of environment `E` from `A` to `R`.
#[doc(hidden)]
pub trait EnvFn<E: Env, A, R>: TaskFn {
    /// Calls the function (re-created in this process) with its environment.
    fn call(state: &E::State, local: &mut E::Local, a: A) -> R;
}

/// No environment: `f(item)`.
#[doc(hidden)]
pub struct Plain;

impl Env for Plain {
    type State = ();
    type Local = ();
    #[inline]
    fn init(_: &()) -> Result<()> {
        Ok(())
    }
}

impl<A, R, F: Fn(A) -> R + TaskFn> EnvFn<Plain, A, R> for F {
    fn call(_: &(), _: &mut (), a: A) -> R {
        conjure::<F>()(a)
    }
}

/// A state value `C`, serialized once per job and decoded once per worker: `f(&c, item)`.
#[doc(hidden)]
pub struct With<C>(PhantomData<fn(C)>);

impl<C: Serialize + DeserializeOwned + 'static> Env for With<C> {
    type State = C;
    type Local = ();
    #[inline]
    fn init(_: &C) -> Result<()> {
        Ok(())
    }
}

impl<C, A, R, F> EnvFn<With<C>, A, R> for F
where
    C: Serialize + DeserializeOwned + 'static,
    F: Fn(&C, A) -> R + TaskFn,
{
    fn call(c: &C, _: &mut (), a: A) -> R {
        conjure::<F>()(c, a)
    }
}

/// A value made by `init()` once per worker process per job: `f(&mut t, item)`.
#[doc(hidden)]
pub struct Init<I, T>(PhantomData<fn(I) -> T>);

impl<I: Fn() -> T + TaskFn, T: 'static> Env for Init<I, T> {
    type State = ();
    type Local = T;
    #[inline]
    fn init(_: &()) -> Result<T> {
        Ok(conjure::<I>()())
    }
}

impl<I, T, A, R, F> EnvFn<Init<I, T>, A, R> for F
where
    I: Fn() -> T + TaskFn,
    T: 'static,
    F: Fn(&mut T, A) -> R + TaskFn,
{
    fn call(_: &(), t: &mut T, a: A) -> R {
        conjure::<F>()(t, a)
    }
}

/// The task's [`Ctx`]: `f(&ctx, item)`.
#[doc(hidden)]
pub struct CtxEnv;

impl Env for CtxEnv {
    type State = ();
    type Local = Ctx;
    // Inlined into the user's monomorphized pipeline: once per job, and a small nested
    // job's whole cost is a few hundred instructions.
    #[inline]
    fn init(_: &()) -> Result<Ctx> {
        Ctx::current()
    }
}

impl<A, R, F: Fn(&Ctx, A) -> R + TaskFn> EnvFn<CtxEnv, A, R> for F {
    fn call(_: &(), ctx: &mut Ctx, a: A) -> R {
        conjure::<F>()(ctx, a)
    }
}

/// A state value and the task's [`Ctx`]: `f(&c, &ctx, item)`.
#[doc(hidden)]
pub struct WithCtx<C>(PhantomData<fn(C)>);

impl<C: Serialize + DeserializeOwned + 'static> Env for WithCtx<C> {
    type State = C;
    type Local = Ctx;
    #[inline]
    fn init(_: &C) -> Result<Ctx> {
        Ctx::current()
    }
}

impl<C, A, R, F> EnvFn<WithCtx<C>, A, R> for F
where
    C: Serialize + DeserializeOwned + 'static,
    F: Fn(&C, &Ctx, A) -> R + TaskFn,
{
    fn call(c: &C, ctx: &mut Ctx, a: A) -> R {
        conjure::<F>()(c, ctx, a)
    }
}
