//! Reducing terminals: `min`/`max` and their `_by`/`_by_key` forms, `reduce`,
//! `reduce_with`, `fold` and `fold_with`. All are combined in input order, so an
//! associative operation that does not commute (concatenation, matrix product) gives the
//! sequential result, and ties resolve as in `std::iter` (the first minimum, the last
//! maximum).

use std::cmp::Ordering;
use std::marker::PhantomData;
use std::ops::ControlFlow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::terminal::Terminal;
use crate::task::{conjure, TaskFn};

/// Combines two accumulators of which either may be empty, `left` first.
pub(crate) fn combine<T>(
    left: Option<T>,
    right: Option<T>,
    op: impl FnOnce(T, T) -> T,
) -> Option<T> {
    match (left, right) {
        (Some(l), Some(r)) => Some(op(l, r)),
        (l, None) => l,
        (None, r) => r,
    }
}

/// Of `left` (earlier) and `right`, the one to keep: the first of equal minima, the last
/// of equal maxima (as `Iterator::min_by` / `max_by`).
fn pick<T>(max: bool, left: T, right: T, cmp: impl FnOnce(&T, &T) -> Ordering) -> T {
    match (max, cmp(&left, &right)) {
        (false, Ordering::Greater) | (true, Ordering::Less | Ordering::Equal) => right,
        _ => left,
    }
}

/// `min()` / `max()`: `MAX = true` keeps the largest.
#[doc(hidden)]
pub struct MinMax<const MAX: bool>;
impl<Item: Ord + Serialize + DeserializeOwned, const MAX: bool> Terminal<Item> for MinMax<MAX> {
    type State = ();
    type Acc = Option<Item>;
    const ORDERED: bool = true;
    fn start(_: &()) -> Option<Item> {
        None
    }
    fn step(acc: &mut Option<Item>, item: Item) -> ControlFlow<()> {
        *acc = Self::merge(acc.take(), Some(item));
        ControlFlow::Continue(())
    }
    fn merge(left: Option<Item>, right: Option<Item>) -> Option<Item> {
        combine(left, right, |l, r| pick(MAX, l, r, Ord::cmp))
    }
}

/// `min_by(cmp)` / `max_by(cmp)`.
#[doc(hidden)]
pub struct MinMaxBy<F, const MAX: bool>(PhantomData<fn(F)>);
impl<Item, F, const MAX: bool> Terminal<Item> for MinMaxBy<F, MAX>
where
    Item: Serialize + DeserializeOwned,
    F: Fn(&Item, &Item) -> Ordering + TaskFn,
{
    type State = ();
    type Acc = Option<Item>;
    const ORDERED: bool = true;
    fn start(_: &()) -> Option<Item> {
        None
    }
    fn step(acc: &mut Option<Item>, item: Item) -> ControlFlow<()> {
        *acc = Self::merge(acc.take(), Some(item));
        ControlFlow::Continue(())
    }
    fn merge(left: Option<Item>, right: Option<Item>) -> Option<Item> {
        combine(left, right, |l, r| pick(MAX, l, r, conjure::<F>()))
    }
}

/// `min_by_key(key)` / `max_by_key(key)`: each key is computed once, in the workers, and
/// travels with its item.
#[doc(hidden)]
pub struct MinMaxByKey<F, K, const MAX: bool>(PhantomData<fn(F) -> K>);
impl<Item, F, K, const MAX: bool> Terminal<Item> for MinMaxByKey<F, K, MAX>
where
    Item: Serialize + DeserializeOwned,
    K: Ord + Serialize + DeserializeOwned + 'static,
    F: Fn(&Item) -> K + TaskFn,
{
    type State = ();
    type Acc = Option<(K, Item)>;
    const ORDERED: bool = true;
    fn start(_: &()) -> Self::Acc {
        None
    }
    fn step(acc: &mut Self::Acc, item: Item) -> ControlFlow<()> {
        let key = conjure::<F>()(&item);
        *acc = Self::merge(acc.take(), Some((key, item)));
        ControlFlow::Continue(())
    }
    fn merge(left: Self::Acc, right: Self::Acc) -> Self::Acc {
        combine(left, right, |l, r| pick(MAX, l, r, |a, b| a.0.cmp(&b.0)))
    }
}

/// `reduce(identity, op)` and `reduce_with(op)`: `op` must be associative; combined in
/// input order. The identity is only used for an empty iterator.
#[doc(hidden)]
pub struct Reduce<Op>(PhantomData<fn(Op)>);
impl<Item, Op> Terminal<Item> for Reduce<Op>
where
    Item: Serialize + DeserializeOwned,
    Op: Fn(Item, Item) -> Item + TaskFn,
{
    type State = ();
    type Acc = Option<Item>;
    const ORDERED: bool = true;
    fn start(_: &()) -> Option<Item> {
        None
    }
    fn step(acc: &mut Option<Item>, item: Item) -> ControlFlow<()> {
        *acc = Self::merge(acc.take(), Some(item));
        ControlFlow::Continue(())
    }
    fn merge(left: Option<Item>, right: Option<Item>) -> Option<Item> {
        combine(left, right, conjure::<Op>())
    }
}

/// `fold(identity, op)`: one accumulator per chunk, in input order.
#[doc(hidden)]
pub struct Fold<I, Op, A>(PhantomData<fn(I, Op) -> A>);
impl<Item, I, Op, A> Terminal<Item> for Fold<I, Op, A>
where
    A: Serialize + DeserializeOwned + 'static,
    I: Fn() -> A + TaskFn,
    Op: Fn(A, Item) -> A + TaskFn,
{
    type State = ();
    type Acc = Vec<A>;
    const ORDERED: bool = true;
    fn start(_: &()) -> Vec<A> {
        vec![conjure::<I>()()]
    }
    fn step(acc: &mut Vec<A>, item: Item) -> ControlFlow<()> {
        fold_last(acc, |a| conjure::<Op>()(a, item));
        ControlFlow::Continue(())
    }
    fn merge(mut left: Vec<A>, mut right: Vec<A>) -> Vec<A> {
        left.append(&mut right);
        left
    }
}

/// `fold_reduce_unordered(identity, fold, reduce)`: one accumulator per worker, taking
/// the items of every chunk it runs in whatever order they come, the workers'
/// accumulators combined with `reduce` (unordered: both must be order-insensitive).
#[doc(hidden)]
pub struct FoldReduce<I, F, R, A>(PhantomData<fn(I, F, R) -> A>);
impl<Item, I, F, R, A> Terminal<Item> for FoldReduce<I, F, R, A>
where
    A: Serialize + DeserializeOwned + 'static,
    I: Fn() -> A + TaskFn,
    F: Fn(A, Item) -> A + TaskFn,
    R: Fn(A, A) -> A + TaskFn,
{
    type State = ();
    type Acc = Option<A>;
    const ORDERED: bool = false;
    fn start(_: &()) -> Option<A> {
        None
    }
    fn step(acc: &mut Option<A>, item: Item) -> ControlFlow<()> {
        let a = acc.take().unwrap_or_else(conjure::<I>());
        *acc = Some(conjure::<F>()(a, item));
        ControlFlow::Continue(())
    }
    fn merge(left: Option<A>, right: Option<A>) -> Option<A> {
        combine(left, right, conjure::<R>())
    }
}

/// A worker's accumulator of `fold_finish_reduce_unordered`: the local one its chunks
/// fold into, which never leaves the worker (it may borrow the job's inputs), or what
/// `finish` made of it, the only form that is encoded and sent.
#[doc(hidden)]
pub enum Finishing<L, A> {
    /// Still folding, in the worker that holds it.
    Local(L),
    /// Finished: the form that travels and that `reduce` combines.
    Finished(A),
}

impl<L, A: Serialize> Serialize for Finishing<L, A> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Finishing::Finished(a) => a.serialize(s),
            // `JobKind::seal` finishes every accumulator before it is encoded.
            Finishing::Local(_) => Err(serde::ser::Error::custom(
                "a local accumulator was about to leave its worker unfinished",
            )),
        }
    }
}

impl<'de, L, A: serde::Deserialize<'de>> serde::Deserialize<'de> for Finishing<L, A> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        A::deserialize(d).map(Finishing::Finished)
    }
}

/// `fold_finish_reduce_unordered(identity, fold, finish, reduce)`: as [`FoldReduce`],
/// but each worker folds into a local accumulator of type `L`, turned by `finish` into
/// the `A` that is sent back and combined with `reduce`.
#[doc(hidden)]
pub struct FoldFinishReduce<I, F, Fi, R, L, A>(PhantomData<FoldFinishFns<I, F, Fi, R, L, A>>);

/// The functions and types [`FoldFinishReduce`] is made of, as a variance marker.
type FoldFinishFns<I, F, Fi, R, L, A> = fn(I, F, Fi, R) -> (L, A);

impl<I, F, Fi, R, L, A> FoldFinishReduce<I, F, Fi, R, L, A>
where
    Fi: Fn(L) -> A + TaskFn,
{
    /// `acc` finished (`finish` called on a local one).
    pub(crate) fn finished(acc: Finishing<L, A>) -> A {
        match acc {
            Finishing::Local(l) => conjure::<Fi>()(l),
            Finishing::Finished(a) => a,
        }
    }
}

impl<Item, I, F, Fi, R, L, A> Terminal<Item> for FoldFinishReduce<I, F, Fi, R, L, A>
where
    L: 'static,
    A: Serialize + DeserializeOwned + 'static,
    I: Fn() -> L + TaskFn,
    F: Fn(L, Item) -> L + TaskFn,
    Fi: Fn(L) -> A + TaskFn,
    R: Fn(A, A) -> A + TaskFn,
{
    type State = ();
    type Acc = Option<Finishing<L, A>>;
    const ORDERED: bool = false;
    const SEALS: bool = true;
    fn start(_: &()) -> Self::Acc {
        None
    }
    fn step(acc: &mut Self::Acc, item: Item) -> ControlFlow<()> {
        *acc = Some(match acc.take() {
            None => Finishing::Local(conjure::<F>()(conjure::<I>()(), item)),
            Some(Finishing::Local(l)) => Finishing::Local(conjure::<F>()(l, item)),
            // Not reached (a worker seals only when it has no more chunks), but correct:
            // the item starts a new local accumulator, finished and combined at once.
            Some(Finishing::Finished(a)) => {
                let l = conjure::<F>()(conjure::<I>()(), item);
                Finishing::Finished(conjure::<R>()(a, conjure::<Fi>()(l)))
            }
        });
        ControlFlow::Continue(())
    }
    fn merge(left: Self::Acc, right: Self::Acc) -> Self::Acc {
        combine(left, right, |l, r| {
            Finishing::Finished(conjure::<R>()(Self::finished(l), Self::finished(r)))
        })
    }
    fn seal(acc: Self::Acc) -> Self::Acc {
        acc.map(|a| Finishing::Finished(Self::finished(a)))
    }
}

/// `fold_with(init, op)`: as [`Fold`], each chunk starting from a clone of `init`.
#[doc(hidden)]
pub struct FoldWith<Op, A>(PhantomData<fn(Op) -> A>);
impl<Item, Op, A> Terminal<Item> for FoldWith<Op, A>
where
    A: Clone + Serialize + DeserializeOwned + 'static,
    Op: Fn(A, Item) -> A + TaskFn,
{
    type State = A;
    type Acc = Vec<A>;
    const ORDERED: bool = true;
    fn start(init: &A) -> Vec<A> {
        vec![init.clone()]
    }
    fn step(acc: &mut Vec<A>, item: Item) -> ControlFlow<()> {
        fold_last(acc, |a| conjure::<Op>()(a, item));
        ControlFlow::Continue(())
    }
    fn merge(mut left: Vec<A>, mut right: Vec<A>) -> Vec<A> {
        left.append(&mut right);
        left
    }
}

/// Replaces the last accumulator `a` of a chunk by `op(a)`.
fn fold_last<A>(acc: &mut Vec<A>, op: impl FnOnce(A) -> A) {
    if let Some(a) = acc.pop() {
        acc.push(op(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_keep_the_first_minimum_and_the_last_maximum() {
        let by_key = |a: &(u8, char), b: &(u8, char)| a.0.cmp(&b.0);
        let xs = [(2, 'a'), (1, 'b'), (3, 'c'), (1, 'd'), (3, 'e')];
        let fold = |max| xs.iter().copied().reduce(|l, r| pick(max, l, r, by_key));
        assert_eq!(fold(false), xs.iter().copied().min_by(by_key));
        assert_eq!(fold(true), xs.iter().copied().max_by(by_key));
        assert_eq!(fold(false), Some((1, 'b')));
        assert_eq!(fold(true), Some((3, 'e')));
    }

    #[test]
    fn combine_keeps_whichever_side_exists() {
        let cat = |a: String, b: String| a + &b;
        assert_eq!(
            combine(Some("a".into()), Some("b".into()), cat),
            Some("ab".to_string())
        );
        assert_eq!(
            combine(None, Some("b".to_string()), cat),
            Some("b".to_string())
        );
        assert_eq!(
            combine(Some("a".to_string()), None, cat),
            Some("a".to_string())
        );
        assert_eq!(combine::<String>(None, None, cat), None);
    }
}
