//! How a parallel iterator ends: the per-chunk accumulator of each terminal operation,
//! and how accumulators combine. This file holds the trait and the collecting and
//! summing terminals; [`reduce`](super::reduce) holds reductions and folds,
//! [`search`](super::search) the short-circuiting searches, and
//! [`fallible`](super::fallible) the `try_*` forms.

use std::marker::PhantomData;
use std::ops::ControlFlow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::Items;
use crate::task::{conjure, TaskFn};

/// A terminal operation. Implementation detail of [`ParIter`](crate::ParIter).
///
/// A chunk starts from [`start`](Terminal::start), adds its items in order with
/// [`step`](Terminal::step), and leaves its accumulator; an `ORDERED` terminal's
/// accumulators are combined in input order in the client. An unordered terminal keeps
/// one accumulator per worker, which takes the items of every further chunk the worker
/// runs, so stepping items into an accumulator must give what merging their own
/// accumulator into it would. A `Break` from `step` stops the whole job from claiming
/// more chunks; chunks are claimed in increasing index order and a claimed chunk always
/// runs to its end (or its own break), so every chunk before a breaking one still leaves
/// its accumulator: that is what makes `find_first` and the `try_*` forms return the
/// first match in input order.
#[doc(hidden)]
pub trait Terminal<Item>: 'static {
    /// State that travels with the job (`fold_with`'s initial value).
    type State: Serialize + DeserializeOwned;
    /// Accumulator of one chunk (and, for unordered terminals, of one worker).
    type Acc: Serialize + DeserializeOwned;
    /// Whether accumulators must be combined in input order.
    const ORDERED: bool;
    /// Whether the terminal produces accumulators at all (`for_each` does not).
    const HAS_ACC: bool = true;
    /// A fresh accumulator.
    fn start(state: &Self::State) -> Self::Acc;
    /// Adds one item; `Break` stops the whole job (short-circuit).
    fn step(acc: &mut Self::Acc, item: Item) -> ControlFlow<()>;
    /// Combines two accumulators, `left` first in input order.
    fn merge(left: Self::Acc, right: Self::Acc) -> Self::Acc;
    /// Turns a worker's accumulator into what it sends back, just before it is encoded
    /// (while the job's inputs are still alive): the identity but for terminals whose
    /// accumulator holds what cannot travel (`fold_finish_reduce_unordered`'s local
    /// one). May panic (user code): the worker catches it and fails the job.
    fn seal(acc: Self::Acc) -> Self::Acc {
        acc
    }
    /// Whether [`Terminal::seal`] is more than the identity (else it is not called).
    const SEALS: bool = false;
}

/// Runs the pipeline for its effects only (every `for_each` form).
#[doc(hidden)]
pub struct Drain;
impl<Item> Terminal<Item> for Drain {
    type State = ();
    type Acc = ();
    const ORDERED: bool = false;
    const HAS_ACC: bool = false;
    fn start(_: &()) {}
    fn step(_: &mut (), _: Item) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    fn merge(_: (), _: ()) {}
}

/// `collect_vec()` (and `collect`, `unzip`, `par_extend` over it).
#[doc(hidden)]
pub struct CollectVec;
impl<Item: Serialize + DeserializeOwned + 'static> Terminal<Item> for CollectVec {
    type State = ();
    // A primitive number type's items travel as one byte string (`codec::Items`).
    type Acc = Items<Item>;
    const ORDERED: bool = true;
    fn start(_: &()) -> Items<Item> {
        Items(Vec::new())
    }
    fn step(acc: &mut Items<Item>, item: Item) -> ControlFlow<()> {
        acc.0.push(item);
        ControlFlow::Continue(())
    }
    fn merge(mut left: Items<Item>, mut right: Items<Item>) -> Items<Item> {
        left.0.append(&mut right.0);
        left
    }
}

/// `partition(pred)`: the items for which `pred` holds, and the others, in input order.
#[doc(hidden)]
pub struct Partition<F>(PhantomData<fn(F)>);
impl<Item, F> Terminal<Item> for Partition<F>
where
    Item: Serialize + DeserializeOwned + 'static,
    F: Fn(&Item) -> bool + TaskFn,
{
    type State = ();
    type Acc = (Items<Item>, Items<Item>);
    const ORDERED: bool = true;
    fn start(_: &()) -> Self::Acc {
        (Items(Vec::new()), Items(Vec::new()))
    }
    fn step((yes, no): &mut Self::Acc, item: Item) -> ControlFlow<()> {
        if conjure::<F>()(&item) {
            yes.0.push(item);
        } else {
            no.0.push(item);
        }
        ControlFlow::Continue(())
    }
    fn merge((mut yes, mut no): Self::Acc, (mut more_yes, mut more_no): Self::Acc) -> Self::Acc {
        yes.0.append(&mut more_yes.0);
        no.0.append(&mut more_no.0);
        (yes, no)
    }
}

/// `sum()`.
#[doc(hidden)]
pub struct Sum;
impl<Item: Serialize + DeserializeOwned + std::iter::Sum<Item>> Terminal<Item> for Sum {
    type State = ();
    type Acc = Item;
    const ORDERED: bool = false;
    fn start(_: &()) -> Item {
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

/// `product()`.
#[doc(hidden)]
pub struct Product;
impl<Item: Serialize + DeserializeOwned + std::iter::Product<Item>> Terminal<Item> for Product {
    type State = ();
    type Acc = Item;
    const ORDERED: bool = false;
    fn start(_: &()) -> Item {
        std::iter::empty::<Item>().product()
    }
    fn step(acc: &mut Item, item: Item) -> ControlFlow<()> {
        let a = std::mem::replace(acc, std::iter::empty::<Item>().product());
        *acc = [a, item].into_iter().product();
        ControlFlow::Continue(())
    }
    fn merge(left: Item, right: Item) -> Item {
        [left, right].into_iter().product()
    }
}

/// `count()`.
#[doc(hidden)]
pub struct Count;
impl<Item> Terminal<Item> for Count {
    type State = ();
    type Acc = u64;
    const ORDERED: bool = false;
    fn start(_: &()) -> u64 {
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
