//! Task ids across ranks: how a block of a cluster job reaches another rank's pool.
//!
//! A cluster job is a pipeline type `P` (see `super::stage`) and a terminal type `T`
//! (what a block leaves behind and how partials combine, [`Terminal`]). Both are made of
//! zero-sized types, so the monomorphized function [`start_block::<P, T>`] knows the
//! whole job but its state. Its *task id* is its offset from the crate's code anchor
//! (`kind::anchor`, the same reference the fork server's jobs use): equal in every
//! execution of one executable, whatever address ASLR loads it at, on any host. Ranks
//! check at cluster start that they run the same executable (`super::identity`), which
//! is what makes a task id from rank 0 valid on every rank.
//!
//! A block runs as a job of its own in the rank's local pool ([`Pool::spawn_with`]): its
//! task decodes the job's state and runs the block's index range as a nested parallel
//! job of the pipeline, with every worker of the rank, and hands back the block's partial
//! result, encoded.

use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::stage::{Marker, Stage};
use crate::task::{conjure, TaskFn};
use crate::{Ctx, JobHandle, Pool, Result};

/// What a block of a cluster job hands back: its partial result (bincode), or the text
/// of its error.
pub(crate) type BlockResult = std::result::Result<Vec<u8>, String>;

/// Starts items `start..end` of a job whose encoded arguments are `args` in `pool`;
/// `data` holds the block's scattered items (empty unless the source scatters).
pub(crate) type BlockEntry = fn(&Pool, &[u8], Vec<u8>, u64, u64) -> Result<JobHandle<BlockResult>>;

/// The task id of `f`: its offset from the crate's code anchor.
pub(crate) fn encode(f: BlockEntry) -> u64 {
    (f as usize).wrapping_sub(crate::kind::anchor()) as u64
}

/// The function whose task id [`encode`] made.
///
/// # Safety
/// `id` must come from [`encode`] in a process running the same executable (a rank
/// whose build identity matched this one's at cluster start).
pub(crate) unsafe fn decode(id: u64) -> BlockEntry {
    let addr = crate::kind::anchor().wrapping_add(id as usize);
    // SAFETY: by the contract, `addr` is this process's address of the `BlockEntry`
    // that was encoded: offsets within one executable are the same in every execution.
    unsafe { std::mem::transmute::<usize, BlockEntry>(addr) }
}

/// How a cluster job ends: what a block computes from its range, and how the blocks'
/// partials (in input order) make the job's result.
pub(crate) trait Terminal<P: Stage>: 'static {
    /// The terminal's own arguments (none so far: every terminal's functions are types).
    type Args: Serialize + DeserializeOwned + 'static;
    /// What a block leaves behind.
    type Partial: Serialize + DeserializeOwned + 'static;
    /// The job's result.
    type Output;
    /// Runs items `range` of the pipeline in `pool` (a nested job of the block's task).
    fn run_block(
        pool: &Pool,
        state: P::State,
        args: Self::Args,
        range: Range<u64>,
    ) -> Result<Self::Partial>;
    /// The job's result from its blocks' partials, in input order.
    fn combine(parts: Vec<Self::Partial>) -> Self::Output;
}

/// The block trampoline of job type `(P, T)`: spawns the block as a job of its own.
pub(crate) fn start_block<P: Stage, T: Terminal<P>>(
    pool: &Pool,
    args: &[u8],
    data: Vec<u8>,
    start: u64,
    end: u64,
) -> Result<JobHandle<BlockResult>> {
    pool.spawn_with((args.to_vec(), data, start, end), run_block::<P, T>)
}

/// The task of a block: runs in a worker of the rank's pool.
fn run_block<P: Stage, T: Terminal<P>>(a: &(Vec<u8>, Vec<u8>, u64, u64), ctx: &Ctx) -> BlockResult {
    let (args, data, start, end) = a;
    let (state, targs): (P::State, T::Args) = bincode::deserialize(args)
        .map_err(|e| format!("cannot decode the cluster job's arguments: {e}"))?;
    let state = P::for_block(state, data, *start)?;
    let part = T::run_block(ctx, state, targs, *start..*end).map_err(|e| e.to_string())?;
    bincode::serialize(&part).map_err(|e| format!("cannot encode a block's result: {e}"))
}

/// Item `i` of pipeline `P` (the filter-map every block's local job runs).
fn apply<P: Stage>(state: &P::State, i: u64) -> Option<P::Item> {
    P::apply(state, i)
}

/// `collect_vec`: the items, in input order.
pub(crate) struct CollectVec;

impl<P: Stage> Terminal<P> for CollectVec
where
    P::Item: Serialize + DeserializeOwned + Send,
{
    type Args = ();
    type Partial = Vec<P::Item>;
    type Output = Vec<P::Item>;
    fn run_block(pool: &Pool, state: P::State, _: (), range: Range<u64>) -> Result<Vec<P::Item>> {
        pool.par_range(range)
            .filter_map_with(state, apply::<P>)
            .collect_vec()
    }
    fn combine(parts: Vec<Vec<P::Item>>) -> Vec<P::Item> {
        parts.into_iter().flatten().collect()
    }
}

/// `sum`: the sum of the items.
pub(crate) struct Sum;

impl<P: Stage> Terminal<P> for Sum
where
    P::Item: Serialize + DeserializeOwned + std::iter::Sum<P::Item>,
{
    type Args = ();
    type Partial = P::Item;
    type Output = P::Item;
    fn run_block(pool: &Pool, state: P::State, _: (), range: Range<u64>) -> Result<P::Item> {
        pool.par_range(range)
            .filter_map_with(state, apply::<P>)
            .sum()
    }
    fn combine(parts: Vec<P::Item>) -> P::Item {
        parts.into_iter().sum()
    }
}

/// `reduce(identity, op)`: the items combined with `op`, in input order.
pub(crate) struct Reduce<I, Op>(Marker<(I, Op)>);

impl<P: Stage, I, Op> Terminal<P> for Reduce<I, Op>
where
    P::Item: Serialize + DeserializeOwned,
    I: Fn() -> P::Item + TaskFn,
    Op: Fn(P::Item, P::Item) -> P::Item + TaskFn,
{
    type Args = ();
    type Partial = P::Item;
    type Output = P::Item;
    fn run_block(pool: &Pool, state: P::State, _: (), range: Range<u64>) -> Result<P::Item> {
        pool.par_range(range)
            .filter_map_with(state, apply::<P>)
            .reduce(conjure::<I>(), conjure::<Op>())
    }
    fn combine(parts: Vec<P::Item>) -> P::Item {
        parts
            .into_iter()
            .reduce(conjure::<Op>())
            .unwrap_or_else(conjure::<I>())
    }
}

/// `fold(identity, op)`: one accumulator per local chunk, in input order.
pub(crate) struct Fold<I, Op, A>(Marker<(I, Op, A)>);

impl<P: Stage, I, Op, A> Terminal<P> for Fold<I, Op, A>
where
    A: Serialize + DeserializeOwned + 'static,
    I: Fn() -> A + TaskFn,
    Op: Fn(A, P::Item) -> A + TaskFn,
{
    type Args = ();
    type Partial = Vec<A>;
    type Output = Vec<A>;
    fn run_block(pool: &Pool, state: P::State, _: (), range: Range<u64>) -> Result<Vec<A>> {
        pool.par_range(range)
            .filter_map_with(state, apply::<P>)
            .fold(conjure::<I>(), conjure::<Op>())
    }
    fn combine(parts: Vec<Vec<A>>) -> Vec<A> {
        parts.into_iter().flatten().collect()
    }
}

/// `for_each(f)`: runs `f` on every item, for its side effects.
pub(crate) struct ForEach<F>(Marker<F>);

impl<P: Stage, F> Terminal<P> for ForEach<F>
where
    F: Fn(P::Item) + TaskFn,
{
    type Args = ();
    type Partial = ();
    type Output = ();
    fn run_block(pool: &Pool, state: P::State, _: (), range: Range<u64>) -> Result<()> {
        pool.par_range(range)
            .filter_map_with(state, apply::<P>)
            .for_each(conjure::<F>())
    }
    fn combine(_: Vec<()>) {}
}
