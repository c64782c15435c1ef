//! Searching terminals: `any`, `all`, `find_any`, `find_first`, `find_last`,
//! `position_any`, `position_first`, `position_last`.
//!
//! The `*_any` forms and `any`/`all` stop every worker once one of them has its answer.
//! The `*_first` forms stop claiming chunks at the first match too: every chunk before
//! it was claimed earlier and still runs (see [`Terminal`]), so the first match of the
//! earliest chunk that has one is the first in input order. The `*_last` forms must see
//! every chunk.

use std::marker::PhantomData;
use std::ops::ControlFlow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::terminal::Terminal;
use crate::task::{conjure, TaskFn};

/// `any(pred)` (`ALL = false`) and `all(pred)` (`ALL = true`), short-circuiting.
#[doc(hidden)]
pub struct AnyAll<F, const ALL: bool>(PhantomData<fn(F)>);
impl<Item, F: Fn(Item) -> bool + TaskFn, const ALL: bool> Terminal<Item> for AnyAll<F, ALL> {
    type State = ();
    /// Whether the deciding item was found (a match for any, a mismatch for all).
    type Acc = bool;
    const ORDERED: bool = false;
    fn start(_: &()) -> bool {
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

/// Which match a search keeps.
#[doc(hidden)]
#[derive(PartialEq, Eq)]
pub enum Which {
    /// Any match; stops the whole job at the first one a worker sees.
    Any,
    /// The first match in input order.
    First,
    /// The last match in input order.
    Last,
}

/// Which match a search type parameter names (`Which` cannot be a const parameter on
/// stable Rust, so `0`, `1`, `2` stand for `Any`, `First`, `Last`).
const fn which(w: u8) -> Which {
    match w {
        0 => Which::Any,
        1 => Which::First,
        _ => Which::Last,
    }
}

/// Keeps the match `which` asks for, of two accumulators, `left` first.
fn keep<T>(w: Which, left: Option<T>, right: Option<T>) -> Option<T> {
    match w {
        Which::Any | Which::First => left.or(right),
        Which::Last => right.or(left),
    }
}

/// Adds a match to a chunk's accumulator: `Break` unless the last match is wanted.
fn found<T>(w: Which, acc: &mut Option<T>, x: T) -> ControlFlow<()> {
    *acc = Some(x);
    if w == Which::Last {
        ControlFlow::Continue(())
    } else {
        ControlFlow::Break(())
    }
}

/// `find_any(pred)`, `find_first(pred)`, `find_last(pred)` (`W` = 0, 1, 2).
#[doc(hidden)]
pub struct Find<F, const W: u8>(PhantomData<fn(F)>);
impl<Item, F, const W: u8> Terminal<Item> for Find<F, W>
where
    Item: Serialize + DeserializeOwned,
    F: Fn(&Item) -> bool + TaskFn,
{
    type State = ();
    type Acc = Option<Item>;
    const ORDERED: bool = W != 0;
    fn start(_: &()) -> Option<Item> {
        None
    }
    fn step(acc: &mut Option<Item>, item: Item) -> ControlFlow<()> {
        if conjure::<F>()(&item) {
            found(which(W), acc, item)
        } else {
            ControlFlow::Continue(())
        }
    }
    fn merge(left: Option<Item>, right: Option<Item>) -> Option<Item> {
        keep(which(W), left, right)
    }
}

/// `position_any(pred)`, `position_first(pred)`, `position_last(pred)` (`W` = 0, 1, 2),
/// over enumerated items.
#[doc(hidden)]
pub struct Position<F, const W: u8>(PhantomData<fn(F)>);
impl<Item, F, const W: u8> Terminal<(usize, Item)> for Position<F, W>
where
    F: Fn(Item) -> bool + TaskFn,
{
    type State = ();
    type Acc = Option<u64>;
    const ORDERED: bool = W != 0;
    fn start(_: &()) -> Option<u64> {
        None
    }
    fn step(acc: &mut Option<u64>, (i, item): (usize, Item)) -> ControlFlow<()> {
        if conjure::<F>()(item) {
            found(which(W), acc, i as u64)
        } else {
            ControlFlow::Continue(())
        }
    }
    fn merge(left: Option<u64>, right: Option<u64>) -> Option<u64> {
        keep(which(W), left, right)
    }
}
