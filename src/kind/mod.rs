//! Job kinds: what a job computes, and the trampoline that runs it inside a worker.
//!
//! Every public operation (`par_map`, `par_iter(..).sum()`, ...) is a [`JobKind`]: a
//! zero-sized type that says how to decode the job's arguments, what each worker sets up
//! once per job, how to run one chunk, and what partial result a chunk leaves behind.
//! The job header stores the address of [`entry::<K>`], monomorphized for that kind, so a
//! worker can run any kind without a registry (all processes share one program image).
//!
//! The kinds of the direct operations live here, one per file: [`map_into`] (`par_map`,
//! `par_map_into`), [`chunks_mut`] (`par_chunks_mut`),
//! [`spawn`] (`spawn`, `spawn_with`) and [`pipeline`] (every `par_iter` terminal,
//! `collect_array`, and `par_map_vec`, which is `par_iter_vec(..).map(..).collect_vec()`); the `Pool` methods that submit them are thin (`ops`, `iter`).
//! Whole-array algorithms whose kinds are part of the algorithm (`sort`, `chunks`,
//! `par_iter_mut`) keep them beside it. Every kind reads and writes shared arrays
//! through [`crate::view`] only.

pub(crate) mod chunks_mut;
pub(crate) mod map_into;
pub(crate) mod pipeline;
pub(crate) mod spawn;

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::futex::Event;
use crate::jobs::partials::{encode_inline, Kept, PartialCell};
use crate::jobs::{Failure, JobSlot};
use crate::mempool::Mempool;

/// What a job computes. Implemented by zero-sized marker types.
pub(crate) trait JobKind: 'static {
    /// Arguments, serialized once into the job's argument block.
    type Args: Serialize + DeserializeOwned;
    /// Per worker per job state (decoded context, `map_init` value, resolved slices).
    type Local;
    /// What a chunk leaves behind (use `()` and return `None` for none).
    type Partial: Serialize + DeserializeOwned;
    /// Whether partials must be kept per chunk, in input order (else they are merged
    /// inside each worker with [`JobKind::merge`]).
    const ORDERED: bool;
    /// Whether the job's tasks touch memory the submitter may free as soon as its wait
    /// returns (shared arrays borrowed for the call). A job that borrows nothing (a
    /// `spawn`) can be *detached* when its owner stops waiting (drop, timeout): the
    /// scheduler frees what it holds once its workers have left, and the owner returns
    /// at once. A borrowing job's owner waits for its workers to leave instead.
    const BORROWS: bool = true;

    /// Runs once per worker per job, before its first chunk.
    fn init(args: &Self::Args, cx: &WorkerCx) -> crate::Result<Self::Local>;
    /// Runs one chunk. May panic: the caller catches it. Returns the chunk's partial and
    /// whether the whole job should stop early (short-circuit).
    fn run(
        args: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<Self::Partial>, bool);
    /// Combines two partials of an unordered kind (left came first).
    fn merge(left: Self::Partial, right: Self::Partial) -> Self::Partial {
        let _ = right;
        left
    }
    /// Turns a partial into what is encoded into the worker's cell (the identity but for
    /// a pipeline whose terminal keeps a local accumulator, [`Terminal::seal`]). May
    /// panic: the caller catches it.
    ///
    /// [`Terminal::seal`]: crate::iter::terminal::Terminal::seal
    fn seal(part: Self::Partial) -> Self::Partial {
        part
    }
    /// Whether [`JobKind::seal`] is more than the identity (else it is not called).
    const SEALS: bool = false;
    /// Runs one chunk, of an unordered kind on top of `acc` if given: the partial of the
    /// chunks this worker ran before in this job. A kind that can go on adding to it
    /// does (one accumulator per worker, however many chunks it claims); the default
    /// runs the chunk alone and merges.
    fn run_from(
        args: &Self::Args,
        local: &mut Self::Local,
        range: Range<usize>,
        acc: Option<Self::Partial>,
    ) -> (Option<Self::Partial>, bool) {
        let (part, stop) = Self::run(args, local, range);
        let merged = match (acc, part) {
            (Some(a), Some(p)) => Some(Self::merge(a, p)),
            (a, p) => a.or(p),
        };
        (merged, stop)
    }
}

/// The signature of a job trampoline stored in the job header.
pub(crate) type Entry = unsafe fn(&WorkerCx, &JobSlot, usize);

/// The code address every cross-process code reference is counted from.
///
/// A pool started by the fork server runs in a fresh execution of the same executable,
/// loaded at another base address (PIE, ASLR), so a trampoline travels as its distance
/// from this function, the same in every execution of one image, and is turned back into
/// an address by adding the local address of this function.
#[inline(never)]
pub(crate) fn anchor() -> usize {
    anchor as fn() -> usize as usize
}

/// The job-header word for trampoline `f`: its offset from [`anchor`].
pub(crate) fn encode_entry(f: Entry) -> u64 {
    (f as usize).wrapping_sub(anchor()) as u64
}

/// The trampoline whose job-header word [`encode_entry`] made in a process of the same
/// image.
///
/// # Safety
/// `word` must come from [`encode_entry`] in a process running the same executable image
/// (every process of a pool does: forks of one image, or a fork server checked to run the
/// client's image).
pub(crate) unsafe fn decode_entry(word: u64) -> Entry {
    let addr = anchor().wrapping_add(word as usize);
    // SAFETY: by the contract, `addr` is this image's address of the `Entry` that was
    // encoded (offsets within one image are the same in every execution of it).
    unsafe { std::mem::transmute::<usize, Entry>(addr) }
}

/// Offsets from [`anchor`] of a few functions spread over the image: equal in two
/// processes only if they run the same executable (a cheap check, made for every pool
/// the fork server starts).
pub(crate) fn image_fingerprint() -> [u64; 3] {
    [
        (crate::scheduler::scheduler_main as fn(_) -> ! as usize).wrapping_sub(anchor()) as u64,
        (crate::unwind::payload_text as fn(_) -> String as usize).wrapping_sub(anchor()) as u64,
        (crate::pool::Pool::builder as fn() -> _ as usize).wrapping_sub(anchor()) as u64,
    ]
}

/// What a worker hands to a trampoline.
pub(crate) struct WorkerCx {
    pub(crate) index: usize,
    pub(crate) mempool: Mempool,
    pub(crate) control: crate::jobs::Control,
}

/// Runs chunks of job `slot` (kind `K`) until none is left, in the calling worker.
///
/// # Safety
/// `slot` must be ACTIVE, pinned by this worker, and its header must have been written
/// for kind `K` (which is how its address got there).
pub(crate) unsafe fn entry<K: JobKind>(cx: &WorkerCx, slot: &JobSlot, tag: usize) {
    let Some((stripes, first)) = claim_first(cx, slot) else {
        return;
    };
    // While we hold a claimed chunk, `done` cannot reach `n`: the owner waits, and the
    // argument block stays alive.
    // SAFETY: the argument block belongs to this job and is alive (see above); it was
    // written by the owner before ACTIVE was published (we loaded it with Acquire).
    let args: K::Args = match unsafe { read_args(cx, slot) } {
        Ok(a) => a,
        Err(message) => {
            slot.fail(&Failure::Setup { message }, &cx.control.header().ended);
            return;
        }
    };
    run_chunks::<K>(cx, slot, tag, stripes, first, &args, None);
}

/// The job's stripes (if it has them) and this worker's first chunk of it; `None` if
/// there is no chunk left, or the stripes are out of place (the job then fails).
fn claim_first<'s>(
    cx: &WorkerCx,
    slot: &'s JobSlot,
) -> Option<(Option<&'s [crate::jobs::stripes::Stripe]>, Range<usize>)> {
    let stripes = match cx.control.stripes_of(slot) {
        Ok(s) => s,
        Err(message) => {
            slot.fail(&Failure::Setup { message }, &cx.control.header().ended);
            return None;
        }
    };
    let first = slot.claim_chunk(stripes, cx.index)?;
    // Busy from here: an idle worker's hungry bit stays up until it claims a chunk
    // (`worker::Hungry::until_claim`); a task running its own job has it down already.
    cx.control.set_hungry(cx.index, None);
    Some((stripes, first))
}

/// [`entry`] for the task that submitted nested job `slot` and runs it first while it
/// waits: with the arguments it has in hand (nothing to decode), and with its partials
/// left in `mine` rather than encoded into its cell (nothing to encode, store, take and
/// decode back). Partials of chunks other workers run still come through their cells.
/// What `mine` holds already (items the task ran inline before submitting the rest) is
/// kept, and an unordered kind's partial goes on taking items.
///
/// # Safety
/// As [`entry`]; `args` must be the arguments the job was submitted with.
pub(crate) unsafe fn entry_owned<K: JobKind>(
    cx: &WorkerCx,
    slot: &JobSlot,
    tag: usize,
    args: &K::Args,
    mine: &mut Kept<K::Partial>,
) {
    let Some((stripes, first)) = claim_first(cx, slot) else {
        return;
    };
    run_chunks::<K>(cx, slot, tag, stripes, first, args, Some(mine));
}

/// Runs chunk `first`, then every further chunk this worker claims, and leaves the
/// partials: in this worker's cell of the job's table, or in `mine` (the owner's own
/// run, [`entry_owned`]).
fn run_chunks<K: JobKind>(
    cx: &WorkerCx,
    slot: &JobSlot,
    tag: usize,
    stripes: Option<&[crate::jobs::stripes::Stripe]>,
    first: Range<usize>,
    args: &K::Args,
    mut mine: Option<&mut Kept<K::Partial>>,
) {
    let ended = &cx.control.header().ended;
    let mut local = match catch_unwind(AssertUnwindSafe(|| K::init(args, cx))) {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            slot.fail(
                &Failure::Setup {
                    message: e.to_string(),
                },
                ended,
            );
            return;
        }
        Err(payload) => {
            fail_panicked(slot, ended, &*payload);
            return;
        }
    };
    let n = slot.n_items.load(Ordering::Relaxed);
    // Flush finished items to `done` every ~1/64 of the job, so progress moves without
    // a shared write per chunk; a job of fewer than 64 items counts once per worker (at
    // its end), which keeps a small nested job at one `done` write per worker.
    let flush_every = if n < 64 { n } else { n / 64 };
    // The owner goes on from what it kept of items it ran inline before submitting the
    // rest (`worker::run_inline`): an unordered kind's partial takes our chunks too.
    let (mut merged, mut ordered) = match &mut mine {
        Some(kept) => (kept.merged.take(), std::mem::take(&mut kept.ordered)),
        None => (None, Vec::new()),
    };
    let mut pending = 0u64;
    let mut chunks = 0u64;
    let work = &cx.control.header().work;
    let mut cur = Some(first);
    while let Some(range) = cur {
        let start = range.start as u64;
        let end = range.end as u64;
        let len = range.len() as u64;
        // An unordered kind's chunks all add to one partial per worker.
        let before = merged.take();
        let stop = match catch_unwind(AssertUnwindSafe(|| {
            K::run_from(args, &mut local, range, before)
        })) {
            Ok((part, stop)) => {
                if let Some(p) = part {
                    if K::ORDERED {
                        ordered.push((start, p));
                    } else {
                        merged = Some(p);
                    }
                }
                stop
            }
            Err(payload) => {
                fail_panicked(slot, ended, &*payload);
                return;
            }
        };
        pending += len;
        chunks += 1;
        if chunks >= 4 && chunks.is_power_of_two() && chunks.trailing_zeros() % 2 == 0 {
            // A lazy job whose time has come is shared (`jobs::slot`, "Lazy nested
            // jobs"); looking after chunks 4, 16, 64, ... costs nothing.
            slot.open_if_due(work);
        }
        if stop {
            pending += slot.stop_and_take_rest(stripes, end);
            if stripes.is_none() {
                break;
            }
            // Striped: items before `end` may still be unclaimed; they run as usual.
        }
        cur = slot.claim_chunk(stripes, cx.index);
        if cur.is_some() && pending >= flush_every {
            // Safe to flush: we hold the next chunk, so this cannot complete the job.
            slot.add_done(pending, ended);
            pending = 0;
        }
    }
    if let Some(mine) = mine {
        // The owner keeps its partials; our last addition below still publishes the
        // chunks as done.
        mine.merged = merged;
        mine.ordered = ordered;
        slot.add_done(pending, ended);
        return;
    }
    // Sealed here, while the job's inputs are alive (a chunk is still ours to report).
    if K::SEALS {
        let sealed = catch_unwind(AssertUnwindSafe(|| {
            let merged = merged.map(K::seal);
            let ordered: Vec<_> = ordered
                .into_iter()
                .map(|(at, p)| (at, K::seal(p)))
                .collect();
            (merged, ordered)
        }));
        match sealed {
            Ok(parts) => (merged, ordered) = parts,
            Err(payload) => {
                fail_panicked(slot, ended, &*payload);
                return;
            }
        }
    }
    // An unordered kind leaves one merged partial: published from where it is, without
    // a vector.
    let merged = merged.map(|m| (0u64, m));
    let parts: &[(u64, K::Partial)] = match &merged {
        Some(one) => std::slice::from_ref(one),
        None => &ordered,
    };
    if !parts.is_empty() {
        if let Err(e) = publish_partials(cx, slot, tag as u64, parts) {
            slot.fail(
                &match e {
                    crate::Error::OutOfMemory {
                        requested,
                        available,
                        capacity,
                    } => Failure::OutOfMemory {
                        requested: requested as u64,
                        available: available as u64,
                        capacity: capacity as u64,
                    },
                    e => Failure::Setup {
                        message: format!("could not store partial results: {e}"),
                    },
                },
                ended,
            );
            return;
        }
    }
    // Our last addition: everything we wrote and published is visible to whoever sees
    // the job complete.
    slot.add_done(pending, ended);
}

/// Fails job `slot` with the panic whose payload is `payload` (a task's, caught).
fn fail_panicked(slot: &JobSlot, ended: &Event, payload: &(dyn std::any::Any + Send)) {
    slot.fail(
        &Failure::Panicked {
            message: crate::unwind::describe(payload),
        },
        ended,
    );
}

/// Decodes the job's arguments from its block.
///
/// # Safety
/// The job's argument block must be alive and fully written.
unsafe fn read_args<A: DeserializeOwned>(cx: &WorkerCx, slot: &JobSlot) -> Result<A, String> {
    // Relaxed: written in INIT, published with ACTIVE (we loaded it with Acquire).
    let off = slot.args_at.load(Ordering::Relaxed) as usize;
    let len = slot.args_len.load(Ordering::Relaxed) as usize;
    // SAFETY: forwarded: the block [off, off+len) is alive, written, and not written
    // concurrently (arguments are read-only once the job is ACTIVE).
    let bytes = unsafe { cx.mempool.bytes_at(off, len) }.map_err(|e| e.to_string())?;
    bincode::deserialize(bytes).map_err(|e| format!("job arguments could not be decoded: {e}"))
}

/// Records this worker's partials in its row's cell of the job's table: in the cell
/// itself when they encode small (no allocation), else in a mempool block the cell names.
fn publish_partials<P: Serialize>(
    cx: &WorkerCx,
    slot: &JobSlot,
    tag: u64,
    parts: &[(u64, P)],
) -> crate::Result<()> {
    let malformed = |e: bincode::Error| crate::Error::Malformed {
        reason: e.to_string(),
    };
    let table = slot.table.load(Ordering::Relaxed);
    // SAFETY: the owner laid the table out with one cell per worker row (in the argument
    // block or the header's inline area), which stays alive until the job ends (we hold
    // a claimed chunk, so it cannot end); only this worker writes its own cell.
    let cell = unsafe { PartialCell::in_table(&cx.mempool, table, cx.index) }?;
    // One pass to size them (arithmetic alone for fixed-size items), then one to encode.
    let size = bincode::serialized_size(parts).map_err(malformed)? as usize;
    if let Some((buf, len, one)) = encode_inline(parts, size) {
        cell.store_inline(&buf[..len], one);
        return Ok(());
    }
    let block = cx.mempool.alloc_tagged(size, 8, tag)?;
    // SAFETY: the block is ours, freshly allocated, `size` bytes long, not shared yet.
    let buf = unsafe { std::slice::from_raw_parts_mut(block.as_ptr(), size) };
    crate::codec::encode_into(buf, parts).map_err(malformed)?;
    // Published by our final `add_done` (AcqRel) before the owner reads it.
    cell.store_block(block.into_raw());
    Ok(())
}
