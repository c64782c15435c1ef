//! Inside an explicit process: its body from fork to `_exit`, and the trampoline that
//! runs the user's function for one argument and result type.

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::slot::{ProcSlot, ProcState, ProcTable};
use crate::pool::PoolInner;
use crate::sys::process;
use crate::task::{conjure, TaskFn};

/// What an explicit process leaves for its joiner, encoded in its result block.
#[derive(Serialize, Deserialize)]
pub(crate) enum Outcome<R> {
    /// The function returned.
    Value(R),
    /// It panicked, with this message.
    Panicked(String),
    /// Its argument could not be read back (a scribbled record, or an encoding bug).
    Setup(String),
}

/// The signature of a process trampoline: runs the function of one `fork_with` call and
/// returns its encoded [`Outcome`].
pub(crate) type ProcEntry = unsafe fn(&Arc<PoolInner>, &ProcSlot, u32, u64) -> Vec<u8>;

/// The record word for trampoline `f` (its distance from `kind::anchor`, the same in
/// every execution of one image: see `kind::encode_entry`).
pub(crate) fn encode(f: ProcEntry) -> u64 {
    (f as usize).wrapping_sub(crate::kind::anchor()) as u64
}

/// # Safety
/// `word` must come from [`encode`] in a process running the same executable image.
unsafe fn decode(word: u64) -> ProcEntry {
    let addr = crate::kind::anchor().wrapping_add(word as usize);
    // SAFETY: by the contract, `addr` is this image's address of the `ProcEntry` that
    // was encoded (offsets within one image are equal in every execution of it).
    unsafe { std::mem::transmute::<usize, ProcEntry>(addr) }
}

/// Runs `F(&arg, &ctx)` for the process in record `index` of generation `gen`.
///
/// # Safety
/// The record must be RUNNING(`gen`) in this process, its `args` written by the forker
/// of a `fork_with::<A, F, R>` (which is how this instance's address got there).
pub(crate) unsafe fn entry<A, F, R>(
    pool: &Arc<PoolInner>,
    slot: &ProcSlot,
    index: u32,
    gen: u64,
) -> Vec<u8>
where
    A: DeserializeOwned,
    F: Fn(&A, &crate::Ctx) -> R + TaskFn,
    R: Serialize,
{
    let _types: PhantomData<fn(A) -> R> = PhantomData;
    let outcome = match read_arg::<A>(pool, slot) {
        Err(message) => Outcome::Setup(message),
        Ok(arg) => {
            let ctx = crate::Ctx::for_process(Arc::clone(pool), index, gen);
            let f = conjure::<F>();
            match catch_unwind(AssertUnwindSafe(|| f(&arg, &ctx))) {
                Ok(v) => Outcome::Value(v),
                Err(payload) => Outcome::Panicked(crate::unwind::describe(&*payload)),
            }
        }
    };
    bincode::serialize(&outcome).unwrap_or_else(|e| {
        bincode::serialize(&Outcome::<()>::Setup(format!(
            "the process's result could not be encoded: {e}"
        )))
        .unwrap_or_default()
    })
}

fn read_arg<A: DeserializeOwned>(pool: &PoolInner, slot: &ProcSlot) -> Result<A, String> {
    let raw = slot
        .args
        .load(&pool.mempool)
        .ok_or("the process record names no argument block")?;
    // SAFETY: the forker wrote the block before the fork request, and nobody writes or
    // frees it until the process has ended (its joiner frees it after DONE or DIED); a
    // range outside the region (a scribbled record) is refused by `bytes_at`.
    let bytes = unsafe {
        pool.mempool
            .bytes_at(raw.offset() as usize, raw.len() as usize)
    }
    .map_err(|e| e.to_string())?;
    bincode::deserialize(bytes).map_err(|e| format!("the argument could not be decoded: {e}"))
}

/// The body of explicit process `index` (generation `gen`), forked by the scheduler.
/// Never returns.
pub(crate) fn process_main(pool: Arc<PoolInner>, index: u32, gen: u64) -> ! {
    // The scheduler's SIGCHLD handler is not ours (as in a worker).
    // SAFETY: restoring the default disposition installs no handler code.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let Some(slot) = ProcTable::of(&pool.control).slot(index as usize) else {
        process::exit_now(0)
    };
    // Relaxed: published by `begin`'s Release.
    slot.pid.store(process::getpid(), Ordering::Relaxed);
    if !slot.transition(gen, ProcState::Starting, ProcState::Running) {
        // The forker gave up waiting and may have reused the record: run nothing.
        process::exit_now(0);
    }
    // Relaxed: written by the forker before the fork request, which our fork follows.
    let word = slot.entry.load(Ordering::Relaxed);
    // SAFETY: the forker stored `encode(entry::<A, F, R>)` while STARTING(gen), and we
    // moved the record to RUNNING(gen) ourselves; every process of the pool runs the
    // same image.
    let bytes = unsafe {
        let f = decode(word);
        f(&pool, slot, index, gen)
    };
    // Untagged: the result outlives whatever job this process's tasks belong to.
    match pool.mempool.alloc_tagged(bytes.len().max(1), 8, 0) {
        Ok(mut block) => {
            block.as_bytes_mut()[..bytes.len()].copy_from_slice(&bytes);
            // Relaxed: published by `finish`'s Release.
            slot.result.store(block.into_raw());
        }
        Err(_) => slot
            .oom_requested
            .store(bytes.len().max(1) as u64, Ordering::Relaxed),
    }
    slot.transition(gen, ProcState::Running, ProcState::Done);
    process::exit_now(0)
}
