//! The `try_*` terminals: `try_for_each`, `try_fold`, `try_reduce`, over closures that
//! return `Result` or `Option`.
//!
//! They stop claiming chunks at the first `Err`/`None` and return it. As for
//! `find_first` (see [`Terminal`]), every chunk before the failing one still runs, so
//! the failure returned is the first in input order.

use std::marker::PhantomData;
use std::ops::ControlFlow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::terminal::Terminal;
use crate::task::{conjure, TaskFn};

mod sealed {
    pub trait Sealed {}
}

/// `Result<T, E>` or `Option<T>`: what the closures of the `try_*` terminals return
/// (stable Rust's stand-in for the unstable `std::ops::Try`).
///
/// # Examples
///
/// ```
/// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let r = pool.par_range(0u32..100).try_for_each(|x: u32| if x < 50 { Ok(()) } else { Err(x) })?;
/// assert_eq!(r, Err(50));
/// let o = pool.par_range(0u32..100).try_for_each(|x: u32| (x < 200).then_some(()))?;
/// assert_eq!(o, Some(()));
/// # Ok::<(), procyon::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `Result` or an `Option`",
    label = "the closure of a `try_*` terminal must return `Result<_, E>` or `Option<_>`",
    note = "the error type travels between processes: it must implement serde's Serialize and Deserialize"
)]
pub trait Try: Sized + 'static + sealed::Sealed {
    /// What a success carries.
    type Output;
    /// What a failure carries (the `E` of `Err(E)`; nothing for `None`).
    type Residual: Serialize + DeserializeOwned + 'static;
    /// The same kind of value with another output type.
    type Map<B: 'static>: Try<Output = B, Residual = Self::Residual>;
    /// A success.
    fn from_output(output: Self::Output) -> Self;
    /// A failure.
    fn from_residual(residual: Self::Residual) -> Self;
    /// Goes on with the output, or stops with the failure.
    fn branch(self) -> ControlFlow<Self::Residual, Self::Output>;
}

impl<T: 'static, E: Serialize + DeserializeOwned + 'static> sealed::Sealed for Result<T, E> {}
impl<T: 'static, E: Serialize + DeserializeOwned + 'static> Try for Result<T, E> {
    type Output = T;
    type Residual = E;
    type Map<B: 'static> = Result<B, E>;
    fn from_output(output: T) -> Self {
        Ok(output)
    }
    fn from_residual(e: E) -> Self {
        Err(e)
    }
    fn branch(self) -> ControlFlow<E, T> {
        match self {
            Ok(t) => ControlFlow::Continue(t),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

impl<T: 'static> sealed::Sealed for Option<T> {}
impl<T: 'static> Try for Option<T> {
    type Output = T;
    type Residual = ();
    type Map<B: 'static> = Option<B>;
    fn from_output(output: T) -> Self {
        Some(output)
    }
    fn from_residual((): ()) -> Self {
        None
    }
    fn branch(self) -> ControlFlow<(), T> {
        match self {
            Some(t) => ControlFlow::Continue(t),
            None => ControlFlow::Break(()),
        }
    }
}

/// A chunk's accumulator: still going with `A`, or failed with a residual.
#[doc(hidden)]
#[derive(Serialize, Deserialize)]
pub enum TryAcc<A, Res> {
    /// No failure so far.
    Going(A),
    /// The first failure of the chunk (later chunks do not matter).
    Failed(Res),
}

impl<A, Res> TryAcc<A, Res> {
    /// `left` then `right`: the first failure wins, else `op` of both.
    fn then(self, right: Self, op: impl FnOnce(A, A) -> Self) -> Self {
        match (self, right) {
            (TryAcc::Failed(r), _) => TryAcc::Failed(r),
            (TryAcc::Going(_), TryAcc::Failed(r)) => TryAcc::Failed(r),
            (TryAcc::Going(l), TryAcc::Going(r)) => op(l, r),
        }
    }

    /// Fails with `r`, and says to stop.
    fn fail(&mut self, r: Res) -> ControlFlow<()> {
        *self = TryAcc::Failed(r);
        ControlFlow::Break(())
    }
}

/// `try_for_each(f)` (over items mapped by `f`): the first failure.
#[doc(hidden)]
pub struct TryForEach;
impl<R> Terminal<R> for TryForEach
where
    R: Try<Output = ()>,
{
    type State = ();
    type Acc = TryAcc<(), R::Residual>;
    const ORDERED: bool = true;
    fn start(_: &()) -> Self::Acc {
        TryAcc::Going(())
    }
    fn step(acc: &mut Self::Acc, item: R) -> ControlFlow<()> {
        match item.branch() {
            ControlFlow::Continue(()) => ControlFlow::Continue(()),
            ControlFlow::Break(r) => acc.fail(r),
        }
    }
    fn merge(left: Self::Acc, right: Self::Acc) -> Self::Acc {
        left.then(right, |(), ()| TryAcc::Going(()))
    }
}

/// `try_fold(identity, op)`: one accumulator per chunk, or the first failure.
#[doc(hidden)]
pub struct TryFold<I, Op, R>(PhantomData<fn(I, Op) -> R>);
impl<Item, I, Op, R> Terminal<Item> for TryFold<I, Op, R>
where
    R: Try,
    R::Output: Serialize + DeserializeOwned,
    I: Fn() -> R::Output + TaskFn,
    Op: Fn(R::Output, Item) -> R + TaskFn,
{
    type State = ();
    type Acc = TryAcc<Vec<R::Output>, R::Residual>;
    const ORDERED: bool = true;
    fn start(_: &()) -> Self::Acc {
        TryAcc::Going(vec![conjure::<I>()()])
    }
    fn step(acc: &mut Self::Acc, item: Item) -> ControlFlow<()> {
        let TryAcc::Going(parts) = acc else {
            return ControlFlow::Break(());
        };
        let Some(a) = parts.pop() else {
            return ControlFlow::Continue(());
        };
        match conjure::<Op>()(a, item).branch() {
            ControlFlow::Continue(a) => {
                parts.push(a);
                ControlFlow::Continue(())
            }
            ControlFlow::Break(r) => acc.fail(r),
        }
    }
    fn merge(left: Self::Acc, right: Self::Acc) -> Self::Acc {
        left.then(right, |mut l, mut r| {
            l.append(&mut r);
            TryAcc::Going(l)
        })
    }
}

/// `try_reduce(identity, op)` over items that are `Result`s or `Option`s.
#[doc(hidden)]
pub struct TryReduce<Op>(PhantomData<fn(Op)>);
impl<R, Op> Terminal<R> for TryReduce<Op>
where
    R: Try,
    R::Output: Serialize + DeserializeOwned,
    Op: Fn(R::Output, R::Output) -> R + TaskFn,
{
    type State = ();
    type Acc = TryAcc<Option<R::Output>, R::Residual>;
    const ORDERED: bool = true;
    fn start(_: &()) -> Self::Acc {
        TryAcc::Going(None)
    }
    fn step(acc: &mut Self::Acc, item: R) -> ControlFlow<()> {
        let going = match item.branch() {
            ControlFlow::Continue(x) => TryAcc::Going(Some(x)),
            ControlFlow::Break(r) => TryAcc::Failed(r),
        };
        let prev = std::mem::replace(acc, TryAcc::Going(None));
        *acc = Self::merge(prev, going);
        match acc {
            TryAcc::Going(_) => ControlFlow::Continue(()),
            TryAcc::Failed(_) => ControlFlow::Break(()),
        }
    }
    fn merge(left: Self::Acc, right: Self::Acc) -> Self::Acc {
        left.then(right, |l, r| match (l, r) {
            (Some(a), Some(b)) => match conjure::<Op>()(a, b).branch() {
                ControlFlow::Continue(x) => TryAcc::Going(Some(x)),
                ControlFlow::Break(res) => TryAcc::Failed(res),
            },
            (l, None) => TryAcc::Going(l),
            (None, r) => TryAcc::Going(r),
        })
    }
}

/// The answer of a `try_*` terminal from its combined accumulator: `R::from_output` of
/// `ok(a)`, or the failure.
pub(crate) fn finish<R: Try, A>(acc: TryAcc<A, R::Residual>, ok: impl FnOnce(A) -> R) -> R {
    match acc {
        TryAcc::Going(a) => ok(a),
        TryAcc::Failed(r) => R::from_residual(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(a: u8, b: u8) -> Option<u8> {
        a.checked_add(b)
    }

    type Acc = TryAcc<Option<u8>, ()>;

    /// The accumulators merged in order as the client does, with `op` = `F`.
    fn merged<F: Fn(u8, u8) -> Option<u8> + crate::TaskFn>(_op: F, parts: Vec<Acc>) -> Option<u8> {
        let acc = parts.into_iter().reduce(TryReduce::<F>::merge);
        finish(acc.unwrap_or(TryAcc::Going(None)), |a: Option<u8>| {
            Some(a.unwrap_or(0))
        })
    }

    #[test]
    fn the_first_failure_wins_and_the_op_may_fail() {
        let going = |x| TryAcc::Going(Some(x));
        assert_eq!(
            merged(sum, vec![going(1), going(2), TryAcc::Going(None)]),
            Some(3)
        );
        assert_eq!(
            merged(sum, vec![going(1), TryAcc::Failed(()), going(2)]),
            None
        );
        assert_eq!(merged(sum, vec![going(200), going(100)]), None);
        assert_eq!(merged(sum, vec![]), Some(0));
    }

    #[test]
    fn results_and_options_branch() {
        assert_eq!(Ok::<u8, String>(3).branch(), ControlFlow::Continue(3));
        assert_eq!(
            Err::<u8, String>("e".into()).branch(),
            ControlFlow::Break("e".to_string())
        );
        assert_eq!(None::<u8>.branch(), ControlFlow::Break(()));
        assert_eq!(<Option<u8> as Try>::from_residual(()), None);
    }
}
