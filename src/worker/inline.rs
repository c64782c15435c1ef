//! Inline nested jobs: a small nested job started while every other worker is busy runs
//! in its task's worker, chunk after chunk, without being submitted (a nested iterator
//! job, [`run_inline`]; a task's `join`, `join.rs` through [`Frame`]).
//!
//! A submitted nested job costs a job slot, its header and argument encoding, the run
//! set's bit set and cleared, a claim per chunk, a pin, a join, the partial-results table
//! and the slot's release: about 2,500 instructions, and cache lines that the other
//! workers read and write too. When no other worker is looking for work (none is
//! *hungry*, `jobs::run_set`), none could take a chunk of it anyway: the task runs the
//! job's chunks itself, the same chunks a single worker would claim (guided sizes within
//! the job's `min_len..=max_len`, so `fold` leaves the same accumulators), with the
//! arguments in hand and its partials kept, as the submitting task of a lazy job does
//! (`kind::entry_owned`), minus everything shared.
//!
//! Between chunks it looks at the hungry set (`jobs::run_set`, "Hungry workers"). Once a
//! worker is hungry for work of this tree, the biggest piece left is shared: the rest of
//! the *outermost* inline run in this worker that still has items after its chunk in
//! progress (rayon's thieves take the oldest task for the same reason: an outer item is
//! a whole sub-tree, an inner one may be a leaf). Its rest goes out as an ordinary job,
//! open at once (`Pool::submit_open`: items `0..from` count as claimed and done), the
//! hungry worker is fed, and the inline run whose rest it was, once its chunk in
//! progress ends, runs and waits for that job as any owner does, going on from the
//! partials it kept. The inner runs go on inline. A chunk in progress is never split, so
//! a worker that gets hungry while a long chunk runs with no inline run inside it waits
//! for its end: a job is run inline only when it has at most [`INLINE_MAX_ITEMS`] items,
//! which keeps that wait to a small share of a small job.
//!
//! Sharing costs more than a small job: a job that starts while a worker is hungry for
//! it, or a run's rest, goes to that worker only if it is worth it (`sizes`, the cost
//! model): a job whose call site's record says it is small runs inline anyway, timed,
//! and its rest is shared only once its own time says the rest is worth it. Looks that
//! find nothing worth sharing make the next ones rarer (16 items skipped, then 32, up to
//! 128), since each reads the clock.
//!
//! Each inline run in progress has a [`Frame`], pointed to by its entry on its worker's
//! job stack (the entry that makes its tasks belong to the parent's job), pushed and
//! popped in strict nesting (a worker is single-threaded and runs one task at a time),
//! with what an inner run needs to share the frame's rest: the end of its chunk in
//! progress and the submitting code's [`Share`] (a monomorphized function and its
//! context, which live on the submitting code's stack below the frame).
//!
//! What differs from a submitted job, for the tasks inside it: their [`Ctx`] is their
//! parent's (the job of the task that started the nested one): `is_cancelled` and
//! `job_number` answer for that job, nested jobs they start are its children, and their
//! progress and reports are dropped (a nested job with an `on_progress` or `on_report`
//! collector, or a time limit, is never run inline). A panic fails the nested job's
//! terminal with [`Error::TaskPanicked`] naming the parent job, as a failed setup fails it
//! with [`Error::InvalidDescriptor`]; the parent's task goes on. If the parent job stops
//! (cancelled, failed, timed out) the run stops at the next chunk with
//! [`Error::Cancelled`]. A worker that dies inside fails the parent job, as it fails every
//! job on its stack.
//!
//! [`Ctx`]: crate::Ctx
//! [`Error::TaskPanicked`]: crate::Error::TaskPanicked
//! [`Error::InvalidDescriptor`]: crate::Error::InvalidDescriptor
//! [`Error::Cancelled`]: crate::Error::Cancelled

use std::cell::Cell;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::sizes::{Estimate, Site, Timing, SHARE_MIN_NS};
use super::{state, Inside, State};
use crate::jobs::partials::Kept;
use crate::jobs::run_set::Feed;
use crate::jobs::state::ActiveStamp;
use crate::jobs::stripes;
use crate::jobs::JobId;
use crate::kind::JobKind;
use crate::sys::clock;
use crate::Error;

/// Most items of a nested job run inline. Past it, a job's chunks (a quarter of the job
/// at first, on two workers) could keep a hungry worker waiting too long, and the
/// submission costs little against the items' own work.
pub(crate) const INLINE_MAX_ITEMS: usize = 64;

/// Looks at the hungry set skipped after one that found nothing worth sharing
/// ([`Frame::hungry`]): this many at first, twice as many after each such look, up to
/// [`QUIET_MAX`], until a share.
pub(super) const QUIET_ITEMS: u8 = 16;
const QUIET_MAX: u8 = 128;

/// What became of a nested job offered to [`run_inline`].
pub(crate) enum Inline<P> {
    /// Not run: outside a task, too large or striped (`None`: submit it as usual), or
    /// a worker is hungry for it and it is not known to be small (submit it open, feed
    /// that worker, and time it).
    Declined(Option<ShareNow>),
    /// Every item ran here: the partials, as an owner's own run leaves them.
    Done(Kept<P>),
    /// The items up to some chunk ran here; the rest went to a job through the run's
    /// [`Share`] (it holds the job): run and wait for it, going on from `kept`.
    Shared(Kept<P>),
    /// A task panicked, the job's setup failed, or the parent job stopped.
    Failed(Error),
}

/// How an inline run's rest goes to a job: `share(cx, from, feed)` submits items
/// `from..n` open, keeps the job for the run's owner to collect, feeds the hungry worker
/// and answers whether it did (a submission that fails leaves the run inline).
#[derive(Clone, Copy)]
pub(crate) struct Share {
    pub(crate) share: unsafe fn(*const (), usize, Feed) -> bool,
    pub(crate) cx: *const (),
}

/// An inline run in progress (module docs): on its worker's job stack while
/// [entered](Frame::enter).
pub(crate) struct Frame {
    st: &'static State,
    /// The job of the task that started the run (the parent of its rest, if shared).
    parent: Inside,
    /// Its slot's state word while it runs (checked after every item or chunk).
    active: ActiveStamp,
    n: usize,
    /// Where the rest starts if shared now: the end of the item or chunk in progress
    /// (between them, the start of the next).
    next: Cell<usize>,
    /// The rest went to a job.
    shared: Cell<bool>,
    share: Share,
    /// A run timed for `sizes`: begun while a worker was hungry, its record small.
    timed: Option<Timed>,
}

/// What a timed run ([`Frame`]) keeps for `sizes`.
struct Timed {
    site: Site,
    /// When it began (`sys::clock::now_ns`).
    t0: u64,
}

/// Whether a nested job may run inline ([`Frame::begin`]).
pub(crate) enum Begin {
    /// Yes: enter the frame, then run the items.
    Run(Frame),
    /// No: outside a task (`None`: submit it as usual), or a worker is hungry for it and
    /// it is not known to be small (`sizes`): submit it open, feed that worker, and time
    /// it.
    Declined(Option<ShareNow>),
}

/// A nested job to submit open at once for a hungry worker: feed it with `feed` once
/// submitted, and call `timing.done(n)` once the job has been waited for (`sizes`).
pub(crate) struct ShareNow {
    pub(crate) feed: Feed,
    pub(crate) timing: Timing,
}

/// What the run does after an item or chunk ([`Frame::after`]).
pub(crate) enum Step {
    /// Run the next one.
    Go,
    /// The rest went to a job (through the frame's [`Share`]): run and wait for it.
    Shared,
    /// The parent job stopped (cancelled, failed, timed out): stop with this error.
    Stop(Error),
}

impl Frame {
    /// A frame for an inline run of `n` items in the calling task's worker whose rest
    /// `share` submits, unless the caller is not a task or a worker is hungry for the
    /// work of the task's job already.
    ///
    /// # Safety
    /// `share.cx` must stay valid for `share.share` while the frame lives, and
    /// `share.share(cx, from, feed)` must submit items `from..n` of this very run.
    #[inline(always)]
    pub(crate) unsafe fn begin(n: usize, share: Share) -> Begin {
        let Some(st) = state() else {
            return Begin::Declined(None);
        };
        let (parent, depth) = {
            let jobs = st.jobs.borrow();
            let Some(parent) = jobs.last().copied() else {
                return Begin::Declined(None);
            };
            (parent, jobs.len())
        };
        let control = &st.setup.control;
        let w = st.setup.cx.index;
        let mut timed = None;
        if control.anyone_hungry(&st.probe) {
            // Inside a timed run, that run's time decides (`share_biggest`): no call.
            if !st.timed_open.get() {
                match begin_hungry(st, w, parent.job, depth, n, share) {
                    Ok(t) => timed = t,
                    Err(now) => return Begin::Declined(Some(now)),
                }
            }
        } else {
            // Looks skipped after an earlier run found nothing worth sharing must not
            // hold back this one's first look once a worker gets hungry (a run of long
            // items would go on alone for up to `QUIET_MAX` of them).
            st.quiet.set(0);
        }
        Begin::Run(Frame {
            st,
            parent,
            active: ActiveStamp::of(parent.job.gen),
            n,
            next: Cell::new(0),
            shared: Cell::new(false),
            share,
            timed,
        })
    }

    /// Puts the frame on the worker's job stack until the guard is dropped: the tasks run
    /// meanwhile belong to the parent's job, quietly (module docs), and inner runs may
    /// share this one's rest.
    #[inline]
    pub(crate) fn enter(&self) -> Entered<'_> {
        self.st.jobs.borrow_mut().push(Inside {
            frame: self as *const Frame,
            ..self.parent
        });
        if self.timed.is_some() {
            self.st.timed_open.set(true);
        }
        Entered { frame: self }
    }

    /// The [`Ctx`] of the run's tasks: their parent's job, quietly (module docs), as
    /// `Ctx::current` answers inside the entered frame, without looking it up.
    ///
    /// [`Ctx`]: crate::Ctx
    pub(crate) fn task_ctx(&self) -> crate::Ctx {
        crate::Ctx::task(&self.st.setup.pool, self.parent.job, self.parent.root, true)
    }

    /// Notes that the item or chunk about to run ends before item `next`: where the
    /// rest starts if shared while it runs, and where [`after`](Frame::after) goes on.
    pub(crate) fn running_until(&self, next: usize) {
        self.next.set(next);
    }

    /// Whether the rest went to a job.
    pub(crate) fn shared(&self) -> bool {
        self.shared.get()
    }

    /// After an item or chunk, the next one starting where [`running_until`] said this
    /// one ended (`< n`): stop if the parent job has stopped, share the biggest piece
    /// left if a worker is hungry.
    ///
    /// Inlined into every run's loop (a call per item of a small nested job): the common
    /// case, nobody hungry and the parent active, is four loads.
    ///
    /// [`running_until`]: Frame::running_until
    #[inline(always)]
    pub(crate) fn after(&self) -> Step {
        if self.shared.get() {
            // A run inside that item shared our rest (from `next`).
            return Step::Shared;
        }
        if !self.parent.slot.is_still_active(self.active) {
            return Step::Stop(Error::Cancelled);
        }
        if self.st.setup.control.anyone_hungry(&self.st.probe) {
            // After a look that found nothing worth sharing, the next few are skipped.
            let quiet = self.st.quiet.get();
            if quiet > 0 {
                self.st.quiet.set(quiet - 1);
                return Step::Go;
            }
            return self.hungry(self.st.setup.cx.index);
        }
        Step::Go
    }

    /// [`after`](Frame::after) once a worker is hungry: share the biggest piece left
    /// that is worth it (`sizes`). When none is, the next looks are skipped (a worker
    /// stays hungry while small runs go on inline, and a look reads the clock): first
    /// [`QUIET_ITEMS`], then twice as many each time, up to [`QUIET_MAX`].
    #[cold]
    fn hungry(&self, w: usize) -> Step {
        let st = self.st;
        if !share_biggest(st, w) {
            let window = st.quiet_window.get();
            st.quiet.set(window);
            st.quiet_window.set(window.saturating_mul(2).min(QUIET_MAX));
            return Step::Go;
        }
        st.quiet_window.set(QUIET_ITEMS);
        if self.shared.get() {
            Step::Shared
        } else {
            Step::Go
        }
    }

    /// The error of a task of the run that panicked with `payload`.
    pub(crate) fn panicked(&self, payload: &(dyn std::any::Any + Send)) -> Error {
        Error::TaskPanicked {
            message: crate::unwind::describe(payload),
            job: self.parent.job.number(),
        }
    }
}

/// A [`Frame`] on its worker's job stack (`Frame::enter`), until dropped.
pub(crate) struct Entered<'a> {
    frame: &'a Frame,
}

impl Drop for Entered<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let st = self.frame.st;
        st.jobs.borrow_mut().pop();
        if self.frame.timed.is_some() {
            st.timed_open.set(false);
        }
    }
}

/// Runs the nested job of kind `K` over `n` items with arguments `args` and chunks of
/// `min_len..=max_len` items in the calling task's worker, without submitting it, while
/// no other worker is hungry for it (module docs). `share` submits its rest when one
/// gets hungry.
///
/// # Safety
/// `share.cx` must stay valid for `share.share` until this call returns, and `share.share`
/// must submit the rest of this very job (kind `K`, `args`, `n` items, this chunking).
// Inlined into its one caller, `ParIter::run` (see there).
#[inline(always)]
pub(crate) unsafe fn run_inline<K: JobKind>(
    args: &K::Args,
    n: usize,
    min_len: usize,
    max_len: usize,
    share: Share,
) -> Inline<K::Partial> {
    // SAFETY: forwarded from our caller.
    let frame = match unsafe { Frame::begin(n, share) } {
        Begin::Run(frame) => frame,
        Begin::Declined(feed) => return Inline::Declined(feed),
    };
    let setup = frame.st.setup;
    let workers = (setup.pool.config.workers as u64).max(1);
    let min = (min_len as u64).max(1);
    let max = (max_len.min(u64::MAX as usize) as u64).max(min);
    if n > INLINE_MAX_ITEMS || stripes::stripes_for(n as u64, max, workers) > 0 {
        return Inline::Declined(None);
    }
    let _entered = frame.enter();
    // One unwind guard for the whole run: a panic in the setup or in any chunk fails the
    // run alike (the kept partials and the per-worker value are dropped on the way).
    match catch_unwind(AssertUnwindSafe(|| {
        run_chunks::<K>(&frame, args, n as u64, workers, min, max)
    })) {
        Ok(inline) => inline,
        Err(payload) => Inline::Failed(frame.panicked(&*payload)),
    }
}

/// The chunks of an entered inline run (see [`run_inline`]), which catches its panics.
#[inline(always)]
fn run_chunks<K: JobKind>(
    frame: &Frame,
    args: &K::Args,
    n: u64,
    workers: u64,
    min: u64,
    max: u64,
) -> Inline<K::Partial> {
    let mut local = match K::init(args, &frame.st.setup.cx) {
        Ok(local) => local,
        Err(e) => {
            return Inline::Failed(Error::InvalidDescriptor {
                reason: e.to_string(),
            })
        }
    };
    let mut kept = Kept::default();
    let mut cur = 0u64;
    while cur < n {
        let range = guided(cur, n, workers, min, max);
        let len = range.len() as u64;
        frame.running_until(range.end);
        // An unordered kind's partial takes every chunk's items.
        let before = kept.merged.take();
        let (part, stop) = K::run_from(args, &mut local, range, before);
        if let Some(p) = part {
            if K::ORDERED {
                kept.ordered.push((cur, p));
            } else {
                kept.merged = Some(p);
            }
        }
        if stop {
            // A short-circuit: the items left are not run, as with a job. A rest shared
            // meanwhile (by a run inside the last chunk) still runs, as chunks other
            // workers claimed before a stop do; the answer is the same.
            return if frame.shared() {
                Inline::Shared(kept)
            } else {
                Inline::Done(kept)
            };
        }
        cur += len;
        if cur < n || frame.shared() {
            match frame.after() {
                Step::Go => {}
                Step::Shared => return Inline::Shared(kept),
                Step::Stop(e) => return Inline::Failed(e),
            }
        }
    }
    Inline::Done(kept)
}

/// [`Frame::begin`] once some worker is hungry, outside a timed run: `Err` if one is
/// hungry for a child of `parent` and the job (`n` items, at `depth` on the job stack) is
/// not known to be small (`sizes`): share it at once; else whether to time it.
#[cold]
fn begin_hungry(
    st: &State,
    w: usize,
    parent: JobId,
    depth: usize,
    n: usize,
    share: Share,
) -> Result<Option<Timed>, ShareNow> {
    let Some(feed) = st.setup.control.hungry_for(w, parent) else {
        return Ok(None);
    };
    let site = Site::new(share.share as usize, depth);
    match st.sizes.estimate(site, n) {
        Estimate::Unknown | Estimate::Big => Err(ShareNow {
            feed,
            timing: Timing::start(site),
        }),
        // Too small to be worth a share: inline, timed; its first look comes after its
        // first item (a record that no longer holds is caught there), whatever looks a
        // run before it skipped.
        Estimate::Small => {
            st.quiet.set(0);
            Ok(Some(Timed {
                site,
                t0: clock::now_ns(),
            }))
        }
    }
}

/// Shares the rest of the outermost inline run of this worker that has items left after
/// its chunk in progress and whose tree a hungry worker wants (module docs), once some
/// worker is hungry. Whether it shared one.
#[cold]
fn share_biggest(st: &State, w: usize) -> bool {
    let control = st.setup.control;
    // By index: a share submits a job, which touches no frame, but the borrow must not
    // be held across it.
    let count = st.jobs.borrow().len();
    let mut now = None;
    // Whether a timed run encloses the frames still to come with items that are each
    // below the threshold (`sizes`): a nested run is part of one of them.
    let mut in_small_items = false;
    for i in 0..count {
        let ptr = st.jobs.borrow()[i].frame;
        if ptr.is_null() {
            // A job's own entry, not an inline run's.
            continue;
        }
        // SAFETY: a frame's entry is on the stack while it is entered (`Entered` pops it
        // before the frame goes), and entries nest strictly on this single-threaded
        // worker: every frame listed is alive.
        let frame = unsafe { &*ptr };
        let from = frame.next.get();
        let per_item = frame.timed.as_ref().map(|t| {
            // Its `from` items started took the time since it began, the last one still
            // running: each is taken to cost at least their mean.
            let now = *now.get_or_insert_with(clock::now_ns);
            now.saturating_sub(t.t0) / from.max(1) as u64
        });
        if let Some(per_item) = per_item {
            in_small_items = per_item < SHARE_MIN_NS;
        }
        if frame.shared.get() || from >= frame.n {
            continue;
        }
        let rest = (frame.n - from) as u64;
        let worth = match per_item {
            Some(per_item) => per_item.saturating_mul(rest) >= SHARE_MIN_NS,
            // Begun while nobody was hungry: shared as always, unless it is part of a
            // small item of a timed run.
            None => !in_small_items,
        };
        if !worth {
            continue;
        }
        let Some(feed) = control.hungry_for(w, frame.parent.job) else {
            continue;
        };
        // SAFETY: the frame is alive, so its `share` context is (`Frame::begin`'s
        // contract), and `from` is where its rest starts.
        if unsafe { (frame.share.share)(frame.share.cx, from, feed) } {
            frame.shared.set(true);
            if let Some(t) = &frame.timed {
                // Bigger than its record said: the next one is shared at once and timed.
                st.sizes.forget(t.site);
            }
            return true;
        }
        return false;
    }
    false
}

/// The chunk a job's counter hands out at `cur` (`JobSlot::claim_chunk`'s guided size:
/// what is left over twice the workers, within `min..=max`).
#[inline]
fn guided(cur: u64, n: u64, workers: u64, min: u64, max: u64) -> Range<usize> {
    let rem = n - cur;
    let size = if min == max || rem <= 2 * workers * min {
        // A fixed size (`with_max_len(1)`), or what is left over twice the workers is at
        // most `min`: no division needed.
        min.min(rem)
    } else {
        (rem / (2 * workers)).clamp(min, max).min(rem)
    };
    cur as usize..(cur + size) as usize
}

#[cfg(test)]
mod tests {
    use super::guided;

    #[test]
    fn inline_chunks_are_the_ones_a_job_counter_hands_out() {
        // 4 items, one per chunk; 100 items on 2 workers, guided; at least 30 each.
        let walk = |n: u64, workers: u64, min: u64, max: u64| {
            let mut cur = 0;
            let mut out = Vec::new();
            while cur < n {
                let r = guided(cur, n, workers, min, max);
                cur = r.end as u64;
                out.push(r);
            }
            out
        };
        assert_eq!(walk(4, 2, 1, 1), vec![0..1, 1..2, 2..3, 3..4]);
        let lens: Vec<usize> = walk(100, 2, 1, u64::MAX).iter().map(|r| r.len()).collect();
        assert_eq!(lens[..4], [25, 18, 14, 10]);
        assert_eq!(lens.iter().sum::<usize>(), 100);
        assert_eq!(
            walk(100, 2, 30, u64::MAX)
                .iter()
                .map(|r| r.len())
                .collect::<Vec<_>>(),
            [30, 30, 30, 10]
        );
    }
}
