//! How a parallel iterator ends: the per-chunk accumulator of each terminal operation
//! (`sum`, `count`, `min`, `collect_vec`, `any`, ...), and how accumulators combine.

use std::marker::PhantomData;
use std::ops::ControlFlow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::task::{conjure, TaskFn};

/// A terminal operation. Implementation detail of [`ParIter`](crate::ParIter).
#[doc(hidden)]
pub trait Terminal<Item>: 'static {
    /// Accumulator of one chunk (and, for unordered terminals, of one worker).
    type Acc: Serialize + DeserializeOwned;
    /// Whether accumulators must be combined in input order.
    const ORDERED: bool;
    /// Whether the terminal produces accumulators at all (`for_each` does not).
    const HAS_ACC: bool = true;
    /// A fresh accumulator.
    fn start() -> Self::Acc;
    /// Adds one item; `Break` stops the whole job (short-circuit).
    fn step(acc: &mut Self::Acc, item: Item) -> ControlFlow<()>;
    /// Combines two accumulators, `left` first in input order.
    fn merge(left: Self::Acc, right: Self::Acc) -> Self::Acc;
}

/// `for_each(f)`.
#[doc(hidden)]
pub struct ForEach<F>(PhantomData<fn(F)>);
impl<Item, F: Fn(Item) + TaskFn> Terminal<Item> for ForEach<F> {
    type Acc = ();
    const ORDERED: bool = false;
    const HAS_ACC: bool = false;
    fn start() {}
    fn step(_: &mut (), item: Item) -> ControlFlow<()> {
        conjure::<F>()(item);
        ControlFlow::Continue(())
    }
    fn merge(_: (), _: ()) {}
}

/// Runs the pipeline for its effects only (`for_each_with`).
#[doc(hidden)]
pub struct Drain;
impl<Item> Terminal<Item> for Drain {
    type Acc = ();
    const ORDERED: bool = false;
    const HAS_ACC: bool = false;
    fn start() {}
    fn step(_: &mut (), _: Item) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    fn merge(_: (), _: ()) {}
}

/// `collect_vec()`.
#[doc(hidden)]
pub struct CollectVec;
impl<Item: Serialize + DeserializeOwned> Terminal<Item> for CollectVec {
    type Acc = Vec<Item>;
    const ORDERED: bool = true;
    fn start() -> Vec<Item> {
        Vec::new()
    }
    fn step(acc: &mut Vec<Item>, item: Item) -> ControlFlow<()> {
        acc.push(item);
        ControlFlow::Continue(())
    }
    fn merge(mut left: Vec<Item>, mut right: Vec<Item>) -> Vec<Item> {
        left.append(&mut right);
        left
    }
}

/// `sum()`.
#[doc(hidden)]
pub struct Sum;
impl<Item: Serialize + DeserializeOwned + std::iter::Sum<Item>> Terminal<Item> for Sum {
    type Acc = Item;
    const ORDERED: bool = false;
    fn start() -> Item {
        std::iter::empty::<Item>().sum()
    }
    fn step(acc: &mut Item, item: Item) -> ControlFlow<()> {
        let a = std::mem::replace(acc, std::iter::empty::<Item>().sum());
        *acc = [a, item].into_iter().sum();
        ControlFlow::Continue(())
    }
    fn merge(left: Item, right: Item) -> Item {
        [left, right].into_iter().sum()
    }
}

/// `count()`.
#[doc(hidden)]
pub struct Count;
impl<Item> Terminal<Item> for Count {
    type Acc = u64;
    const ORDERED: bool = false;
    fn start() -> u64 {
        0
    }
    fn step(acc: &mut u64, _: Item) -> ControlFlow<()> {
        *acc += 1;
        ControlFlow::Continue(())
    }
    fn merge(left: u64, right: u64) -> u64 {
        left + right
    }
}

/// Combines two accumulators of which either may be empty, `left` first.
fn combine<T>(left: Option<T>, right: Option<T>, op: impl FnOnce(T, T) -> T) -> Option<T> {
    match (left, right) {
        (Some(l), Some(r)) => Some(op(l, r)),
        (l, None) => l,
        (None, r) => r,
    }
}

/// `min()` / `max()`: `MAX = true` keeps the largest.
#[doc(hidden)]
pub struct MinMax<const MAX: bool>;
impl<Item: Ord + Serialize + DeserializeOwned, const MAX: bool> Terminal<Item> for MinMax<MAX> {
    type Acc = Option<Item>;
    // Ordered so that ties resolve like the sequential `min`/`max` (first min, last max).
    const ORDERED: bool = true;
    fn start() -> Option<Item> {
        None
    }
    fn step(acc: &mut Option<Item>, item: Item) -> ControlFlow<()> {
        *acc = Self::merge(acc.take(), Some(item));
        ControlFlow::Continue(())
    }
    fn merge(left: Option<Item>, right: Option<Item>) -> Option<Item> {
        combine(left, right, if MAX { std::cmp::max } else { std::cmp::min })
    }
}

/// `reduce(identity, op)`: `op` must be associative; combined in input order.
#[doc(hidden)]
pub struct Reduce<I, Op>(PhantomData<fn(I, Op)>);
impl<Item, I, Op> Terminal<Item> for Reduce<I, Op>
where
    Item: Serialize + DeserializeOwned,
    I: Fn() -> Item + TaskFn,
    Op: Fn(Item, Item) -> Item + TaskFn,
{
    type Acc = Option<Item>;
    const ORDERED: bool = true;
    fn start() -> Option<Item> {
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

impl<I: TaskFn, Op: TaskFn> Reduce<I, Op> {
    pub(crate) fn identity<Item>() -> Item
    where
        I: Fn() -> Item,
    {
        conjure::<I>()()
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
    type Acc = Vec<A>;
    const ORDERED: bool = true;
    fn start() -> Vec<A> {
        vec![conjure::<I>()()]
    }
    fn step(acc: &mut Vec<A>, item: Item) -> ControlFlow<()> {
        if let Some(a) = acc.pop() {
            acc.push(conjure::<Op>()(a, item));
        }
        ControlFlow::Continue(())
    }
    fn merge(mut left: Vec<A>, mut right: Vec<A>) -> Vec<A> {
        left.append(&mut right);
        left
    }
}

/// `any(pred)` (`ALL = false`) and `all(pred)` (`ALL = true`), short-circuiting.
#[doc(hidden)]
pub struct AnyAll<F, const ALL: bool>(PhantomData<fn(F)>);
impl<Item, F: Fn(Item) -> bool + TaskFn, const ALL: bool> Terminal<Item> for AnyAll<F, ALL> {
    /// Whether the deciding item was found (a match for any, a mismatch for all).
    type Acc = bool;
    const ORDERED: bool = false;
    fn start() -> bool {
        false
    }
    fn step(acc: &mut bool, item: Item) -> ControlFlow<()> {
        if conjure::<F>()(item) != ALL {
            *acc = true;
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn merge(left: bool, right: bool) -> bool {
        left || right
    }
}

/// `find_any(pred)`: some item matching, short-circuiting (not necessarily the first).
#[doc(hidden)]
pub struct FindAny<F>(PhantomData<fn(F)>);
impl<Item: Serialize + DeserializeOwned, F: Fn(&Item) -> bool + TaskFn> Terminal<Item>
    for FindAny<F>
{
    type Acc = Option<Item>;
    const ORDERED: bool = false;
    fn start() -> Option<Item> {
        None
    }
    fn step(acc: &mut Option<Item>, item: Item) -> ControlFlow<()> {
        if conjure::<F>()(&item) {
            *acc = Some(item);
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn merge(left: Option<Item>, right: Option<Item>) -> Option<Item> {
        left.or(right)
    }
}
