//! The run set: any idle worker takes any ready job.
//!
//! One bit per slot says "this job may still have unclaimed chunks". Protocol:
//!
//! * the submitter publishes the job (ACTIVE, Release), *then* sets its bit (SeqCst)
//!   and notifies `work`;
//! * an idle worker scans the bits (spinning, then sleeping on `work`; the scan is the
//!   event's condition, so the `futex::Event` protocol loses no wakeup), and for a set bit
//!   whose slot is ACTIVE with chunks left and not yet joined by it, it pins the slot
//!   and joins (the pin protocol of `jobs::state` validates the generation);
//! * a bit is cleared either by a worker that holds a pin on the slot and has seen the
//!   job ACTIVE with every chunk claimed (`next >= n` never goes back for a generation),
//!   or by whoever retires the slot, before the retiring store. A slot is reclaimed only
//!   when retired and unpinned, and its new job sets the bit only after publishing, so
//!   neither clear can erase the bit of a later job.
//!
//! A worker waiting for its own nested job scans the same bits but takes only jobs of
//! its sub-tree (the seed's rule that makes trees of any depth finish); everything else
//! stays for the idle workers. No job is ever addressed to one worker, and a submitter
//! never waits for a worker.

use std::sync::atomic::Ordering;

use crate::jobs::id::JobId;
use crate::jobs::state::SlotState;
use crate::jobs::table::Control;

impl Control {
    /// Puts job `slot` in the run set and wakes idle workers. Call after publishing it.
    pub(crate) fn make_runnable(&self, slot: usize) {
        self.header().runnable[slot / 64].fetch_or(1 << (slot % 64), Ordering::SeqCst);
        if self.slot(slot).is_lazy() {
            // Its owner runs it anyway: only sleepers need telling (they learn its time and
            // sleep no longer), and the shared `seq` word is left alone for the many small
            // nested jobs a tree starts. The bit above is set and scanned with SeqCst, as
            // `notify_sleepers` requires.
            self.header().work.notify_sleepers();
        } else {
            self.header().work.notify();
        }
    }

    /// A fingerprint of the run set: it changes whenever a job enters or leaves it, or
    /// `work` is notified (a hint for a waiter that wants to rescan only then).
    ///
    /// The bits alone miss a slot retired and handed to a new job between two looks (its
    /// bit cleared, then set again: the same word), which `LAST_RETIRED` makes likely for
    /// a client submitting job after job; a worker spinning on a lazy job's time would
    /// then join the new job only once that time had passed (up to [`LAZY_FOR`] late). A
    /// job that is not lazy notifies `work` when it enters, and a lazy one when it opens:
    /// the count of notifications closes the gap.
    ///
    /// [`LAZY_FOR`]: crate::jobs::slot::LAZY_FOR
    pub(crate) fn run_set_fingerprint(&self) -> u64 {
        let h = self.header();
        let bits = (0..self.slot_count() / 64).fold(0u64, |acc, w| {
            acc.rotate_left(7) ^ h.runnable[w].load(Ordering::Relaxed)
        });
        let notified = h.work.notifications() as u64;
        bits ^ (notified << 32 | notified)
    }

    /// Takes `slot` out of the run set (see the module docs for who may).
    pub(crate) fn clear_runnable(&self, slot: usize) {
        self.header().runnable[slot / 64].fetch_and(!(1 << (slot % 64)), Ordering::SeqCst);
    }

    /// Retires a collected slot: out of the run set first, then RETIRED.
    pub(crate) fn retire(&self, slot: usize) {
        self.clear_runnable(slot);
        self.slot(slot).retire();
    }

    /// A job worker `worker` may join: in the run set, ACTIVE with chunks left, not
    /// joined by `worker` before, and accepted by `wanted`. Tidies the run set on the
    /// way (exhausted jobs leave it). The result is a hint: the caller pins the slot and
    /// validates the generation before running anything.
    ///
    /// Lazy nested jobs (`jobs::slot`, "Lazy nested jobs") are passed by until their time;
    /// `due` is lowered to the earliest such time seen, so that a caller with nothing to
    /// do sleeps no longer than that.
    pub(crate) fn find_work(
        &self,
        worker: usize,
        due: &mut Option<u64>,
        mut wanted: impl FnMut(JobId) -> bool,
    ) -> Option<JobId> {
        let words = self.slot_count() / 64;
        let h = self.header();
        let mut now = None;
        for w in 0..words {
            let mut bits = h.runnable[w].load(Ordering::SeqCst);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let i = w * 64 + b;
                let Some(slot) = self.try_slot(i) else {
                    continue;
                };
                let gen = slot.gen();
                if slot.state() != SlotState::Active || slot.has_joined(worker) {
                    continue;
                }
                let id = JobId {
                    slot: i as u32,
                    gen,
                };
                if self.chunks_left(slot) {
                    if let Some(until) = slot.lazy_for(&mut now) {
                        *due = Some(due.map_or(until, |d| d.min(until)));
                        continue;
                    }
                    if wanted(id) {
                        return Some(id);
                    }
                    continue;
                }
                // Every chunk is handed out: take it out of the run set, under a pin so
                // that the slot cannot be given to a new job meanwhile.
                slot.pin(worker);
                if slot.is_active_job(gen) && !self.chunks_left(slot) {
                    self.clear_runnable(i);
                }
                slot.unpin(worker, &h.ended);
            }
        }
        None
    }
}
