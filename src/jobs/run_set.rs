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
//!
//! ## Hungry workers
//!
//! The other side of the run set: a worker looking for work says so, in one bit per
//! worker row (`ControlHeader::hungry`, read by everyone at a glance) and, in its row,
//! what for ([`Hunger`]): any job (idle, in `worker::next_job`), or jobs of one
//! sub-tree (waiting for the rest of its own nested job, in `worker::help_until`, which
//! takes nothing else). A task that starts a small nested job while nobody is hungry
//! for it runs it *inline* (`worker::run_inline`): in its own worker, chunk after chunk,
//! with no job submitted, since no other worker would take a chunk of it anyway. Between
//! chunks it looks again; once a worker is hungry for it (and the rest is worth a share,
//! `worker::sizes`), the task submits the rest of the items as an ordinary job, open at
//! once, and then *feeds* that worker
//! ([`Control::feed`]): clears its bit and wakes it if it sleeps, a sub-tree waiter on
//! the event it sleeps on, an idle worker on `work` (it may have looked at the run set
//! just before the feeding, and gone to sleep with its bit up). A fed worker scans
//! the run set again and finds the job (it entered the run set before the feeding); if
//! someone else took it, the worker sets its bit again.
//! One published job per hungry worker, then: not one per chunk until it gets there.
//!
//! Only the row's own worker sets its bit and row (the row first, then the bit with
//! Release; a reader loads the bit with Acquire, then the row); a feeder or the
//! scheduler (for a dead worker) clears the bit. The bits are hints: a bit read stale
//! delays sharing by one chunk or costs one submission nobody needed (what every nested
//! job cost before), and no wake-up can be lost: nobody waits for an inline job but the
//! task running it, and a fed worker that finds nothing simply waits again. A sub-tree
//! waiter sleeps on its own job's event with "fed, or my job is done" as the condition;
//! the feeder clears the bit *before* its `notify` of that event, so the waiter either
//! registered as a sleeper before the notify's look at the sleepers (and is woken), or
//! reads the notify's new `seq` with SeqCst after it and, through it, the cleared bit
//! (`futex`'s protocol). An idle worker is woken by the job entering the run set.

use std::sync::atomic::Ordering;

use crate::jobs::id::JobId;
use crate::jobs::id::NO_PARENT;
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

    /// Says what worker row `worker` is hungry for (`None`: it is not); called by that
    /// worker only ("Hungry workers" in the module docs). Writes only what changed.
    pub(crate) fn set_hungry(&self, worker: usize, hunger: Option<Hunger>) {
        let word = &self.header().hungry.0[worker / 64];
        let bit = 1u64 << (worker % 64);
        let row = &self.worker(worker).hungry_for;
        let want = hunger.map_or(0, Hunger::pack);
        // Relaxed: the row is published by the bit's Release below.
        if row.load(Ordering::Relaxed) != want {
            row.store(want, Ordering::Relaxed);
        }
        // SeqCst: a feeder's clear and its look at `work`'s sleepers come after this
        // look in the SeqCst order if it saw the bit up (`feed`).
        let up = word.load(Ordering::SeqCst) & bit != 0;
        match (hunger.is_some(), up) {
            // Release: a reader that sees the bit (Acquire) sees the row written above.
            (true, false) => {
                word.fetch_or(bit, Ordering::Release);
            }
            // Relaxed: a hint (module docs).
            (false, true) => {
                word.fetch_and(!bit, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// What [`anyone_hungry`](Control::anyone_hungry) needs to answer whether a worker
    /// other than row `me` is hungry (for anything), worked out once for a run that asks
    /// after every item (`worker::inline`).
    #[inline]
    pub(crate) fn hungry_probe(&self, me: usize) -> HungryProbe {
        HungryProbe {
            me,
            others0: if me < 64 { !(1u64 << me) } else { !0 },
            wide: self.entries() > 64,
        }
    }

    /// Whether some worker other than the probe's is hungry: one load while the pool has
    /// at most 64 rows (32 workers and their spares), one per 64 rows past that.
    #[inline(always)]
    pub(crate) fn anyone_hungry(&self, probe: &HungryProbe) -> bool {
        let words = &self.header().hungry.0;
        // Relaxed: a hint (module docs).
        words[0].load(Ordering::Relaxed) & probe.others0 != 0
            || (probe.wide && self.anyone_hungry_past_64(probe.me))
    }

    #[cold]
    fn anyone_hungry_past_64(&self, me: usize) -> bool {
        let words = &self.header().hungry.0;
        let mine = |i: usize| if i == me / 64 { 1u64 << (me % 64) } else { 0 };
        // Relaxed: a hint (module docs).
        (1..self.entries().div_ceil(64)).any(|i| words[i].load(Ordering::Relaxed) & !mine(i) != 0)
    }

    /// Whether worker row `worker`'s hungry bit is still up (a fed worker's is not).
    pub(crate) fn still_hungry(&self, worker: usize) -> bool {
        // Relaxed: a hint (module docs).
        self.header().hungry.0[worker / 64].load(Ordering::Relaxed) & (1 << (worker % 64)) != 0
    }

    /// A worker other than `me` that is hungry for a child of job `parent`: idle, or
    /// waiting for a sub-tree that holds `parent`. `None` (one load) when nobody is hungry.
    pub(crate) fn hungry_for(&self, me: usize, parent: JobId) -> Option<Feed> {
        let words = self.entries().div_ceil(64);
        for (i, word) in self.header().hungry.0[..words].iter().enumerate() {
            // Acquire: pairs with `set_hungry`'s Release (the row is written first).
            let mut bits = word.load(Ordering::Acquire);
            if i == me / 64 {
                bits &= !(1u64 << (me % 64));
            }
            while bits != 0 {
                let worker = i * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // Relaxed: ordered by the Acquire load above.
                let row = self.worker(worker).hungry_for.load(Ordering::Relaxed);
                let Some(hunger) = Hunger::unpack(row) else {
                    continue;
                };
                let wants = match hunger {
                    Hunger::Any => true,
                    Hunger::Tree(target) => self.is_in_tree(parent, target),
                };
                if wants {
                    return Some(Feed { worker, hunger });
                }
            }
        }
        None
    }

    /// Tells the worker of `feed` that a job it is hungry for is in the run set: clears
    /// its bit and wakes it if it may be asleep, on that job's event if it waits for a
    /// sub-tree, on `work` if it is idle. Call after the job is in the run set.
    ///
    /// An idle worker may have scanned the run set between the job's entry and the
    /// clear, found nothing to take (the submitter had claimed every chunk already),
    /// kept its bit up and gone to sleep: cleared now, its bit would say "not hungry"
    /// while it sleeps until some other job enters the run set, and nobody would share
    /// with it (a test saw a task run 4 items of 60 ms one after the other in 3 launches
    /// out of 10). So the clear is followed by a wake of `work`'s sleepers: woken, it
    /// scans, finds nothing and raises its bit again. The worker counts itself a sleeper
    /// (SeqCst) before that scan, whose look at its bit (`set_hungry`) is SeqCst; the
    /// clear is SeqCst and `notify_sleepers` reads the count with SeqCst: if the look
    /// saw the bit still up, it precedes the clear in the single order of SeqCst
    /// operations, so the count read after the clear includes this worker.
    pub(crate) fn feed(&self, feed: Feed) {
        // The job itself was published through the run set (SeqCst).
        self.clear_hungry(feed.worker);
        match feed.hunger {
            Hunger::Tree(target) => {
                if let Some(slot) = self.try_slot(target.slot as usize) {
                    // A wake-up of the wrong job (a slot reused since) only makes its
                    // waiters look again.
                    slot.event.notify();
                }
            }
            // No system call unless a worker sleeps on `work`.
            Hunger::Any => self.header().work.notify_sleepers(),
        }
    }

    /// Clears worker row `worker`'s bit (a feeder, and the scheduler once that worker has
    /// died). SeqCst: a feeder's wake of `work`'s sleepers relies on it (`feed`).
    pub(crate) fn clear_hungry(&self, worker: usize) {
        let bit = 1u64 << (worker % 64);
        self.header().hungry.0[worker / 64].fetch_and(!bit, Ordering::SeqCst);
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

/// What a hungry worker wants ("Hungry workers" in the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hunger {
    /// Any job (an idle worker).
    Any,
    /// Jobs of the sub-tree of this job (a worker waiting for its own nested job).
    Tree(JobId),
}

impl Hunger {
    /// The row word: `NO_PARENT` (no job packs to it) for any job, else the packed job.
    fn pack(self) -> u64 {
        match self {
            Hunger::Any => NO_PARENT,
            Hunger::Tree(job) => job.pack(),
        }
    }

    /// Reads a row word back (0: not hungry).
    fn unpack(word: u64) -> Option<Hunger> {
        match word {
            0 => None,
            NO_PARENT => Some(Hunger::Any),
            w => JobId::unpack(w).map(Hunger::Tree),
        }
    }
}

/// A worker's question "is anyone else hungry?", prepared ([`Control::hungry_probe`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HungryProbe {
    me: usize,
    /// The first word's bits but `me`'s.
    others0: u64,
    /// The table has more than 64 rows: look past the first word too.
    wide: bool,
}

/// A hungry worker a submitted job is for ([`Control::hungry_for`], [`Control::feed`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Feed {
    worker: usize,
    hunger: Hunger,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::table::with_test_control;

    #[test]
    fn hungry_workers_are_seen_fed_and_told_apart_by_their_tree() {
        // 40 workers: 80 rows, so the hungry set spans two words.
        with_test_control(40, 16 << 20, hungry_workers_in);
    }

    fn hungry_workers_in(control: &Control) {
        let here = JobId { slot: 3, gen: 7 };
        let elsewhere = JobId { slot: 5, gen: 9 };
        assert!(!control.anyone_hungry(&control.hungry_probe(0)));
        assert!(control.hungry_for(0, here).is_none());

        // An idle worker wants a child of any job; it does not count for itself.
        control.set_hungry(1, Some(Hunger::Any));
        assert!(control.anyone_hungry(&control.hungry_probe(0)));
        assert!(!control.anyone_hungry(&control.hungry_probe(1)));
        assert!(control.hungry_for(1, here).is_none());
        let feed = control
            .hungry_for(0, elsewhere)
            .expect("idle: wants anything");
        // Fed: its bit is down until it finds nothing and says so again.
        control.feed(feed);
        assert!(!control.still_hungry(1));
        assert!(control.hungry_for(0, here).is_none());
        control.set_hungry(1, Some(Hunger::Any));
        assert!(control.still_hungry(1));
        control.set_hungry(1, None);
        assert!(!control.anyone_hungry(&control.hungry_probe(0)));

        // A worker waiting for its own nested job wants children of that job's tree only.
        control.set_hungry(70, Some(Hunger::Tree(here)));
        assert!(
            control.anyone_hungry(&control.hungry_probe(0)),
            "row 70 is in the second word"
        );
        assert!(control.hungry_for(0, here).is_some());
        assert!(control.hungry_for(0, elsewhere).is_none());
        let feed = control.hungry_for(0, here).unwrap();
        control.feed(feed);
        assert!(!control.still_hungry(70));

        // A dead worker's hunger is cleared by the scheduler.
        control.set_hungry(2, Some(Hunger::Any));
        control.clear_hungry(2);
        assert!(!control.anyone_hungry(&control.hungry_probe(0)));
        assert_eq!(Hunger::unpack(Hunger::Any.pack()), Some(Hunger::Any));
        assert_eq!(
            Hunger::unpack(Hunger::Tree(here).pack()),
            Some(Hunger::Tree(here))
        );
        assert_eq!(Hunger::unpack(0), None);
    }
}
