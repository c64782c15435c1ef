//! Jobs: the layer below both kinds of process (clients and workers) that every job goes
//! through. It knows nothing of who waits or runs; it holds the shared state and writes
//! its protocols down beside it:
//!
//! * [`id`]: a job's identity across processes, `(slot, generation)`;
//! * [`state`]: a slot's state word (generation and state in one word, typed
//!   transitions) and its pins: the claim / pin protocol that keeps a worker from ever
//!   running a half-rewritten header (model-checked with loom);
//! * [`slot`]: the job header: chunk self-scheduling, done accounting, failure;
//! * [`stripes`]: per-worker stripes with stealing, for jobs of many small chunks;
//! * [`failure`]: the failure record written into the slot itself;
//! * [`block_ref`]: `(offset, len, generation)` references to mempool blocks;
//! * [`partials`]: the per-worker cells where a job's partial results wait for its owner;
//! * [`table`]: the control block: worker table, the job table that grows in segments;
//! * [`run_set`]: how any idle worker finds any ready job, and how a worker says it is
//!   hungry for one (so that a task running a nested job inline shares it);
//! * [`cpus`]: which CPU each process last ran on, so that a spinner steps aside for a
//!   process of the pool on its own CPU;
//! * [`watch`]: a worker on a sleeping client's CPU watching its job's end, so that the
//!   client is woken from its own CPU.
//!
//! Arrows point one way: api (`ops`, `iter`, `ctx`) -> client (`pool`) -> processes
//! (`scheduler`, `worker`) -> `jobs` -> `mempool` / `camlbox` / `futex` -> `sys`.

pub(crate) mod block_ref;
pub(crate) mod cpus;
pub(crate) mod failure;
pub(crate) mod id;
#[cfg(all(test, loom))]
mod loom_tests;
pub(crate) mod partials;
pub(crate) mod run_set;
pub(crate) mod slot;
pub(crate) mod state;
pub(crate) mod stripes;
pub(crate) mod table;
pub(crate) mod watch;

pub(crate) use failure::{FailOutcome, Failure};
pub(crate) use id::{JobId, NO_PARENT};
pub(crate) use slot::JobSlot;
pub(crate) use state::{SlotState, MAX_WORKERS};
pub(crate) use table::{Control, WorkerEntry, MAX_JOBS, SEGMENT_SLOTS};
