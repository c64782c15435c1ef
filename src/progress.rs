//! Progress and partial results: what a running job tells the client before it ends.
//!
//! Three sources, all read by the owner of the job, none of them on a camlbox:
//!
//! * **items done / total** come for free from the job header (`done`, `n_items`): they
//!   count *finished* chunks, flushed by each worker every ~1/64 of the job;
//! * **task-reported progress** (`Ctx::progress(done, total)`) goes to two words of the
//!   header with `fetch_max`, so it is monotonic whatever the order of the reporters,
//!   and a chatty task costs two atomic operations per call, nothing more;
//! * **partial results** (`Ctx::report(value)`) are encoded into mempool blocks pushed on
//!   a lock-free stack in the header, each with a sequence number from the header's
//!   `report_seq`. At most [`MAX_PENDING_REPORTS`] wait at once; past that `report`
//!   returns [`Error::Full`](crate::Error::Full) instead of flooding the mempool.
//!
//! The owner polls while it waits (every [`POLL_PERIOD`] at most, so callbacks are
//! rate-limited by construction), pops the whole stack with one swap, and delivers
//! reports in sequence order: a report is delivered only when every smaller sequence
//! number has been, so a reporter that took its number but has not pushed yet holds the
//! later ones back instead of letting them overtake it.
//!
//! ## Report stack
//!
//! A node is a mempool block: `[own len, own generation, next offset, seq]` then the
//! bincode payload. Push: write the node, then CAS `reports` from the old head to the
//! node's offset (Release). Pop (owner only): `swap(reports, 0)` (Acquire). The only
//! concurrent operation besides pushes is that single swap, so there is no ABA.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::jobs::JobSlot;
use crate::mempool::{Block, Mempool, RawBlock};

/// Most reports that may wait for the owner at once, per job.
pub(crate) const MAX_PENDING_REPORTS: u32 = 4096;
/// How often a waiting owner polls progress and reports.
pub(crate) const POLL_PERIOD: Duration = Duration::from_millis(10);
const NODE_HEADER: usize = 32;

/// A snapshot of a job's progress: items whose chunk has finished, and what the tasks
/// reported in their own units with [`Ctx::progress`](crate::Ctx::progress).
///
/// Read it from [`JobHandle::progress`](crate::JobHandle::progress), a callback
/// ([`JobHandle::on_progress`](crate::JobHandle::on_progress)) or a stream
/// ([`JobHandle::progress_stream`](crate::JobHandle::progress_stream)).
///
/// # Examples
///
/// ```
/// use procyon::{Pool, Progress};
///
/// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
/// let handle = pool.par_range(0..5000u64).map(|i: u64| i % 7).spawn_collect_vec()?;
/// let Progress { items_done, items_total, reported } = handle.progress();
/// assert_eq!(items_total, 5000);
/// assert!(items_done <= items_total);
/// assert_eq!(reported, None); // no task called `Ctx::progress`
/// assert_eq!(handle.wait()?.len(), 5000);
/// # Ok::<(), procyon::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Progress {
    /// Items whose chunk has finished.
    pub items_done: u64,
    /// Items in the job.
    pub items_total: u64,
    /// What tasks reported with `Ctx::progress`, as `(done, total)` (the largest values
    /// reported so far), if any did.
    pub reported: Option<(u64, u64)>,
}

impl Progress {
    pub(crate) fn of(slot: &JobSlot) -> Progress {
        // Relaxed: a snapshot; each word is monotonic on its own.
        let total = slot.user_total.load(Ordering::Relaxed);
        Progress {
            items_done: slot.done.load(Ordering::Relaxed),
            items_total: slot.n_items.load(Ordering::Relaxed),
            reported: (total > 0).then(|| (slot.user_done.load(Ordering::Relaxed), total)),
        }
    }
}

/// Records task-reported progress (monotonic).
pub(crate) fn set_progress(slot: &JobSlot, done: u64, total: u64) {
    // Relaxed: each word is independent and only ever grows; readers take snapshots.
    slot.user_total.fetch_max(total, Ordering::Relaxed);
    slot.user_done.fetch_max(done, Ordering::Relaxed);
}

/// Pushes a partial result for the job's owner.
pub(crate) fn push_report<T: Serialize>(
    mempool: &Mempool,
    slot: &JobSlot,
    tag: u64,
    value: &T,
) -> Result<()> {
    if slot.reports_pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING_REPORTS {
        slot.reports_pending.fetch_sub(1, Ordering::Relaxed);
        return Err(Error::Full);
    }
    let push = || -> Result<()> {
        let len = bincode::serialized_size(value).map_err(|e| Error::Malformed {
            reason: e.to_string(),
        })? as usize;
        let block = mempool.alloc_tagged(NODE_HEADER + len, 64, tag)?;
        // SAFETY: the block is ours, `NODE_HEADER + len` bytes, not yet shared.
        let buf = unsafe { std::slice::from_raw_parts_mut(block.as_ptr(), NODE_HEADER + len) };
        crate::codec::encode_into(&mut buf[NODE_HEADER..], value).map_err(|e| {
            Error::Malformed {
                reason: e.to_string(),
            }
        })?;
        // Numbered only once nothing can fail any more: the owner delivers in sequence, so
        // a number never pushed would hold back every later report.
        let seq = slot.report_seq.fetch_add(1, Ordering::Relaxed);
        let raw = block.into_raw();
        // SAFETY: the node header lies in the block we own (8-aligned, 64-aligned base).
        let words = unsafe { mempool.words_at(raw.offset() as usize, 4) }?;
        words[0].store(raw.len(), Ordering::Relaxed);
        words[1].store(raw.generation(), Ordering::Relaxed);
        words[3].store(seq, Ordering::Relaxed);
        let mut head = slot.reports.load(Ordering::Relaxed);
        loop {
            words[2].store(head, Ordering::Relaxed);
            // Release: the node's contents are visible to the owner's Acquire swap.
            match slot.reports.compare_exchange_weak(
                head,
                raw.offset(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(h) => head = h,
            }
        }
    };
    push().inspect_err(|_| {
        slot.reports_pending.fetch_sub(1, Ordering::Relaxed);
    })
}

/// One report, still in the mempool block the worker wrote it to (freed on drop).
pub(crate) struct Report(Block);

impl Report {
    /// The serialized value.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0.as_bytes()[NODE_HEADER..]
    }
}

/// The owner's side: collects reports and delivers them in sequence order.
#[derive(Default)]
pub(crate) struct ReportInbox {
    next_seq: u64,
    waiting: BTreeMap<u64, Report>,
}

impl ReportInbox {
    /// Pops every pushed report and returns those now deliverable, in order.
    pub(crate) fn collect(&mut self, mempool: &Mempool, slot: &JobSlot) -> Vec<Report> {
        pop_all(mempool, slot, |seq, report| {
            self.waiting.insert(seq, report);
        });
        let mut out = Vec::new();
        while let Some(report) = self.waiting.remove(&self.next_seq) {
            out.push(report);
            self.next_seq += 1;
        }
        out
    }

    /// Everything still held back (the job has ended: no gap will ever fill).
    pub(crate) fn drain(&mut self) -> Vec<Report> {
        std::mem::take(&mut self.waiting).into_values().collect()
    }
}

/// Frees every report pushed to `slot` and not collected (nobody will read them).
pub(crate) fn discard_reports(mempool: &Mempool, slot: &JobSlot) {
    pop_all(mempool, slot, |_, report| drop(report));
}

/// Pops every report pushed to `slot`, adopting its block, and hands each to `each` with
/// its sequence number.
fn pop_all(mempool: &Mempool, slot: &JobSlot, mut each: impl FnMut(u64, Report)) {
    // Most jobs send no report: look before writing (Relaxed: a hint, the swap below
    // decides).
    if slot.reports.load(Ordering::Relaxed) == 0 {
        return;
    }
    // Acquire: pairs with the pushers' Release CAS.
    let mut off = slot.reports.swap(0, Ordering::Acquire);
    while off != 0 {
        // SAFETY: `off` is a node pushed by a worker: a live block whose header the
        // pusher wrote before publishing it; nobody else pops. A chain a task overwrote
        // ends the walk here or below (the rest is lost, never followed out of the
        // region, never looped over: a node already adopted fails `adopt`).
        let Ok(words) = (unsafe { mempool.words_at(off as usize, 4) }) else {
            break;
        };
        let (len, gen, next, seq) = (
            words[0].load(Ordering::Relaxed),
            words[1].load(Ordering::Relaxed),
            words[2].load(Ordering::Relaxed),
            words[3].load(Ordering::Relaxed),
        );
        let Ok(block) = mempool.adopt(RawBlock::from_parts(mempool.id(), off, len, gen)) else {
            break;
        };
        slot.reports_pending.fetch_sub(1, Ordering::Relaxed);
        each(seq, Report(block));
        off = next;
    }
}
