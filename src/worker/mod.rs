//! Worker processes: wait for job notices, run chunks, help their own nested jobs, stay
//! alive through task failures.
//!
//! A worker is forked by the scheduler (a single-threaded process), so it starts as a
//! clean single-threaded copy. Its life:
//!
//! 1. (forked by `process::fork_tied`, it already has a parent-death signal: SIGKILL when
//!    the scheduler goes; its panics are quiet through `panic_hook`, which records where a
//!    task panicked);
//! 2. record its pid in the worker table and count itself started;
//! 3. loop: find a ready job in the pool's run set (spinning briefly, then sleeping on
//!    the `work` event; see `pool::shared`), pin its slot, check it still runs that
//!    job, join it once, run the job's trampoline, unpin; leave once the pool closes.
//!
//! No job is addressed to a worker: whichever worker is idle takes whichever job is
//! ready, so one busy worker never holds up a job another could run.
//!
//! ## Nested jobs
//!
//! A task may start a job of its own (`ctx.par_map(..)`). The worker then runs that
//! child job's chunks itself, and while other workers finish theirs it keeps working,
//! but **only on jobs of its own sub-tree** (the child and its descendants): anything
//! else in the run set is left to idle workers. A tree of any depth therefore finishes
//! even if every worker is waiting on a child, and with a single worker: in the worst
//! case each worker runs its whole sub-tree alone.
//!
//! A panic inside a task is caught by the trampoline and fails only that job. Anything
//! worse (abort, segfault, SIGKILL) ends the process; the scheduler sees it, fails the
//! jobs on this worker's stack and those it had submitted, and forks a replacement on
//! the same index.

mod inline;
mod sizes;

pub(crate) use inline::{run_inline, Begin, Frame, Inline, Share, Step};
pub(crate) use sizes::Timing;

use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::futex::Spin;
use crate::jobs::cpus::Peer;
use crate::jobs::partials::Kept;
use crate::jobs::run_set::{Hunger, HungryProbe};
use crate::jobs::Control;
use crate::jobs::{JobId, JobSlot};
use crate::kind::{Entry, JobKind, WorkerCx};
use crate::pool::PoolInner;
use crate::sys::process;

/// Everything a worker needs, prepared by the scheduler before it forks.
pub(crate) struct WorkerSetup {
    pub(crate) cx: WorkerCx,
    pub(crate) control: Control,
    pub(crate) pool: Arc<PoolInner>,
    /// Which fork of this index we are (see `WorkerEntry::gate`).
    pub(crate) incarnation: u64,
    /// A spare worker: runs only the sub-trees of bounded nested waits, and exits once
    /// idle for [`SPARE_LINGER`].
    pub(crate) spare: bool,
}

/// How long a spare worker stays without work before it exits.
pub(crate) const SPARE_LINGER: Duration = Duration::from_millis(100);

/// The worker's process-wide state (a worker is single-threaded).
struct State {
    setup: &'static WorkerSetup,
    /// The jobs this worker is inside, innermost last, with the inline runs in progress
    /// (`inline`) among them.
    jobs: RefCell<Vec<Inside>>,
    /// What the nested jobs of each call site cost (`sizes`).
    sizes: sizes::Sizes,
    /// Looks at the hungry set an inline run skips (`inline`'s `Frame::hungry`).
    quiet: Cell<u8>,
    /// How many looks the next one that finds nothing makes it skip.
    quiet_window: Cell<u8>,
    /// A timed inline run is entered (`sizes`): at most one at a time, since runs begun
    /// inside it are not timed.
    timed_open: Cell<bool>,
    /// This worker's look at the hungry set (`jobs::run_set`), prepared once: every
    /// inline run looks after each of its chunks.
    probe: HungryProbe,
}

/// A job the worker is inside.
#[derive(Clone, Copy)]
struct Inside {
    job: JobId,
    /// Generation of the job at the root of its tree.
    root: u64,
    /// The job's slot, looked up once for the inline runs its tasks start (each checks
    /// it after every chunk).
    slot: &'static JobSlot,
    /// Not null while the worker runs a nested job of `job`'s task inline
    /// (`run_inline`), that run's entered frame: the tasks of that nested job see `job`
    /// as theirs, but their progress and reports go nowhere (they would have gone to the
    /// nested job, which nobody watches).
    frame: *const inline::Frame,
}

impl Inside {
    /// Whether this entry is an inline run's (module docs of `inline`).
    fn inline(&self) -> bool {
        !self.frame.is_null()
    }
}

thread_local! {
    // A `Cell`: a copy in and out, no borrow flag to check on every look (each inline
    // nested job and join looks it up).
    static STATE: Cell<Option<&'static State>> = const { Cell::new(None) };
}

#[inline]
fn state() -> Option<&'static State> {
    STATE.with(Cell::get)
}

/// The job the calling task belongs to (innermost), with the pool state to submit nested
/// jobs, its root's generation, and whether the task belongs to a nested job run inline
/// (`run_inline`): `None` outside a worker.
#[inline]
pub(crate) fn current_job() -> Option<(&'static Arc<PoolInner>, JobId, u64, bool)> {
    let s = state()?;
    let inside = *s.jobs.borrow().last()?;
    Some((&s.setup.pool, inside.job, inside.root, inside.inline()))
}

/// Marks worker row `w` hungry for `hunger` (`jobs::run_set`, "Hungry workers") until
/// dropped, or until the worker claims a chunk ([`until_claim`](Hungry::until_claim)).
struct Hungry<'a> {
    control: &'a Control,
    w: usize,
    hunger: Hunger,
    /// Leave the bit up when dropped: `kind::claim_first` takes it down.
    until_claim: Cell<bool>,
}

impl<'a> Hungry<'a> {
    fn new(control: &'a Control, w: usize, hunger: Hunger) -> Self {
        control.set_hungry(w, Some(hunger));
        Hungry {
            control,
            w,
            hunger,
            until_claim: Cell::new(false),
        }
    }

    /// Keeps us hungry past the guard, until we claim a chunk of the job we found
    /// (`kind::claim_first`), not merely until we found it: joining a job whose chunks
    /// are all claimed takes a microsecond or two, and a task that started a nested job
    /// meanwhile would have seen nobody hungry, run it inline, and kept us idle for as
    /// long as the item in progress runs (a chunk in progress is never split, `inline`).
    fn until_claim(&self) {
        self.until_claim.set(true);
    }

    /// Whether a submitter fed us (`Control::feed`): a job we are hungry for may be in
    /// the run set, worth a scan.
    fn fed(&self) -> bool {
        !self.control.still_hungry(self.w)
    }

    /// Hungry again (after a scan that found nothing).
    fn again(&self) {
        self.control.set_hungry(self.w, Some(self.hunger));
    }
}

impl Drop for Hungry<'_> {
    fn drop(&mut self) {
        if !self.until_claim.get() {
            self.control.set_hungry(self.w, None);
        }
    }
}

/// The body of a worker process. Never returns.
pub(crate) fn worker_main(setup: WorkerSetup) -> ! {
    let code = match run(setup) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    process::exit_now(code)
}

fn run(setup: WorkerSetup) -> crate::Result<()> {
    // `process::fork_tied` armed the parent-death signal and checked our parent; the
    // panic hook is the scheduler's (see `panic_hook`).
    // The scheduler's SIGCHLD handler is not ours: a task that runs a subprocess must
    // not wake the scheduler.
    // SAFETY: restoring the default disposition installs no handler code.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    // Job after job allocates alike: keep freed heap memory for the next one.
    process::keep_freed_heap();
    let entry = setup.control.worker(setup.cx.index);
    entry.gate_event.wait_until(Duration::ZERO, None, || {
        (entry.gate.load(Ordering::SeqCst) >= setup.incarnation).then_some(())
    });
    let setup: &'static WorkerSetup = Box::leak(Box::new(setup));
    let st: &'static State = Box::leak(Box::new(State {
        setup,
        jobs: RefCell::new(Vec::new()),
        sizes: sizes::Sizes::new(),
        quiet: Cell::new(0),
        quiet_window: Cell::new(inline::QUIET_ITEMS),
        timed_open: Cell::new(false),
        probe: setup.control.hungry_probe(setup.cx.index),
    }));
    STATE.with(|s| s.set(Some(st)));
    let me = setup.control.worker(setup.cx.index);
    me.pid.store(process::getpid(), Ordering::SeqCst);
    me.depth.store(0, Ordering::SeqCst);
    if !setup.spare {
        // Hungry before we count as started, so that a job submitted right after the
        // pool is built finds us hungry: a task that starts a nested job before we said
        // so runs it inline, and one long item of it would keep us idle to its end (a
        // chunk in progress is never split, `inline`). `next_job` keeps the bit up.
        setup.control.set_hungry(setup.cx.index, Some(Hunger::Any));
    }
    setup
        .control
        .header()
        .started
        .fetch_add(1, Ordering::SeqCst);
    setup.control.header().ready_event.notify();
    let spare = setup.spare;
    loop {
        let linger = spare.then(|| Instant::now() + SPARE_LINGER);
        match next_job(setup, linger) {
            Some(id) => {
                run_job(st, id);
                // Out of chunks of it: watch its end for a client asleep on our CPU
                // (`jobs::watch`), within our idle spin.
                watch_end(setup, id);
            }
            // Closed, or a spare that lingered long enough.
            None => return Ok(()),
        }
    }
}

/// Watches the end of job `id`, which this worker has no chunk of left, for the job's
/// client if it sleeps on our CPU (`jobs::watch`). Hungry meanwhile, as an idle worker
/// is: we leave the watch when fed, or when the run set changes.
fn watch_end(setup: &WorkerSetup, id: JobId) {
    let (control, w, spin) = (&setup.control, setup.cx.index, setup.pool.config.spin);
    let Some(slot) = control.try_slot(id.slot as usize) else {
        return;
    };
    if setup.spare || !slot.worth_watching(control, id.gen, w, spin) {
        return;
    }
    let hungry = Hungry::new(control, w, Hunger::Any);
    let seen = control.run_set_fingerprint();
    slot.watch_end(control, id.gen, w, spin, || {
        hungry.fed() || control.run_set_fingerprint() != seen
    });
}

/// What ended an idle worker's wait.
enum Woken {
    Job(JobId),
    Closed,
    /// Only lazy jobs are there: wait again, no longer than until the first one opens.
    Lazy,
}

/// Waits for a job this idle worker may join: `None` once the pool is closed or, for a
/// spare, at `linger`.
fn next_job(setup: &WorkerSetup, linger: Option<Instant>) -> Option<JobId> {
    let control = setup.control;
    let header = control.header();
    let w = setup.cx.index;
    // Looking for any job until we return (`jobs::run_set`, "Hungry workers"); a spare
    // runs only what bounded waits want, and says nothing.
    let hungry = (!setup.spare).then(|| Hungry::new(&control, w, Hunger::Any));
    // The earliest time a lazy job we passed by opens to us: we sleep no longer.
    let mut due: Option<u64> = None;
    let scan = |due: &mut Option<u64>| {
        if setup.spare {
            control.find_work(w, due, |id| control.wanted_by_a_bounded_wait(id))
        } else {
            let found = control.find_work(w, due, |_| true);
            if let Some(h) = &hungry {
                match found {
                    // Found: we return it, and stay hungry until we claim a chunk of it.
                    Some(_) => h.until_claim(),
                    // Fed while we looked, and the job went to someone else: hungry again.
                    None => h.again(),
                }
            }
            found
        }
    };
    loop {
        let mut waiting_for_due = false;
        let until = match due.take() {
            Some(t) => {
                // A lazy job opens within microseconds (or is done by then): spin until
                // it does rather than sleep, so that the nested jobs its owner keeps
                // starting find nobody asleep to wake (a futex wake costs more than such
                // a job). Meanwhile we rescan only when the run set changes: reading the
                // lazy job's header again and again would pull its cache lines away from
                // its owner. We sleep until its time instead when spinning is off, or
                // when another process of the pool needs this CPU (`jobs::cpus`).
                if !setup.pool.config.spin.is_zero() {
                    let mut seen = control.run_set_fingerprint();
                    let mut make_way = false;
                    while process::monotonic_ns() < t {
                        for _ in 0..64 {
                            std::hint::spin_loop();
                        }
                        if control.spin_advice(Peer::Worker(w)) == Spin::Stop {
                            make_way = true;
                            break;
                        }
                        if header.closed.load(Ordering::SeqCst) != 0 {
                            return None;
                        }
                        let now = control.run_set_fingerprint();
                        if now != seen {
                            seen = now;
                            let mut later = None;
                            if let Some(id) = scan(&mut later) {
                                return Some(id);
                            }
                        }
                    }
                    if !make_way {
                        continue;
                    }
                }
                waiting_for_due = true;
                let wait = Duration::from_nanos(t.saturating_sub(process::monotonic_ns()));
                let at = Instant::now() + wait;
                Some(linger.map_or(at, |l| l.min(at)))
            }
            None => linger,
        };
        // The scan is the event's condition, so a job made runnable while we go to sleep
        // is seen (see `futex`'s protocol). A lazy job found while the wait is not bounded
        // by one ends the wait, so that the next one is bounded by its time (or spins).
        let policy = control.presence(Peer::Worker(w));
        let next =
            header
                .work
                .wait_until_spinning_while(setup.pool.config.spin, policy, until, || {
                    if header.closed.load(Ordering::SeqCst) != 0 {
                        return Some(Woken::Closed);
                    }
                    match scan(&mut due) {
                        Some(id) => Some(Woken::Job(id)),
                        None if due.is_some() && !waiting_for_due => Some(Woken::Lazy),
                        None => None,
                    }
                });
        match next {
            Some(Woken::Job(id)) => return Some(id),
            Some(Woken::Closed) => return None,
            Some(Woken::Lazy) => continue,
            None if linger.is_some_and(|l| Instant::now() >= l) => return None,
            // A lazy job's time came (or a spurious timeout): scan again.
            None => continue,
        }
    }
}

/// Runs job `id` if the slot still holds it (see `job`'s module docs for the pin
/// protocol), through the trampoline its header names.
fn run_job(st: &State, id: JobId) {
    run_job_with(st, id, |cx, slot, tag| {
        let addr = slot.entry.load(Ordering::Relaxed);
        // SAFETY: the owner stored `kind::encode_entry(entry::<K>)` in INIT; we loaded
        // ACTIVE with Acquire and checked the generation while pinned, so the header is
        // that job's and cannot be rewritten until we unpin. Every process of the pool
        // runs the same image (forks of one, or a fork server checked to run the
        // client's).
        let entry: Entry = unsafe { crate::kind::decode_entry(addr as u64) };
        // SAFETY: the slot is ACTIVE (checked), pinned by us, and written for the kind
        // whose trampoline `entry` is.
        unsafe { entry(cx, slot, tag) };
    });
}

/// Runs `run` inside job `id` if the slot still holds it: pinned, joined, recorded as
/// this worker's current job (for the scheduler, should we die in it, and for nested
/// submissions), its allocations tagged with the job's tree.
fn run_job_with(st: &State, id: JobId, run: impl FnOnce(&WorkerCx, &JobSlot, usize)) {
    let setup = st.setup;
    let Some(slot) = setup.control.try_slot(id.slot as usize) else {
        return;
    };
    let w = setup.cx.index;
    slot.pin(w);
    if slot.is_active_job(id.gen) && slot.join(w) {
        // Where we run it, for spinners that might share our CPU (`jobs::cpus`).
        setup.control.note_cpu(Peer::Worker(w));
        let me = setup.control.worker(w);
        let recorded = me.push(id);
        let root = slot.root.load(Ordering::Relaxed);
        st.jobs.borrow_mut().push(Inside {
            job: id,
            root,
            slot,
            frame: std::ptr::null(),
        });
        let old_tag = crate::mempool::set_default_tag(root);
        run(&setup.cx, slot, root as usize);
        crate::mempool::set_default_tag(old_tag);
        st.jobs.borrow_mut().pop();
        if recorded {
            me.pop();
        }
    }
    slot.unpin(w, &setup.control.header().ended);
}

/// Runs chunks of nested job `target` (submitted by the calling task) until none is left
/// to claim: the first step of an unbounded wait for it.
pub(crate) fn run_own(target: JobId) {
    let st = state().expect("run_own outside a worker");
    run_job(st, target);
}

/// As [`run_own`], for a job of kind `K` whose arguments the calling task has in hand:
/// they are not decoded again, and the partials of the chunks run here are returned
/// rather than published (`kind::entry_owned`), added to `kept` (the partials of items
/// the task ran inline before it submitted the rest, `run_inline`).
///
/// # Safety
/// `target` must be a job the calling task submitted as kind `K` with arguments `args`.
pub(crate) unsafe fn run_own_typed<K: JobKind>(
    target: JobId,
    args: &K::Args,
    kept: Kept<K::Partial>,
) -> Kept<K::Partial> {
    let st = state().expect("run_own_typed outside a worker");
    let mut mine = kept;
    run_job_with(st, target, |cx, slot, tag| {
        // SAFETY: the slot is ACTIVE (checked), pinned by us, and holds the job the
        // caller submitted as kind `K` with `args` (the caller's contract).
        unsafe { crate::kind::entry_owned::<K>(cx, slot, tag, args, &mut mine) };
    });
    mine
}

/// Waits for nested job `target` (submitted by the calling task) until `done` gives its
/// outcome or `until` passes.
///
/// An unbounded wait (`bounded == false`: the caller waits for the end, `until` is only
/// a liveness step) works meanwhile: on the child first, then on jobs of the child's
/// sub-tree, never on anything else. A *bounded* wait (the caller has a deadline:
/// `wait_timeout`, `try_wait`, a job timeout) runs no chunk itself, since one item that
/// never returns would hold it past its deadline: the child runs in other workers, or in
/// a spare worker the scheduler forks for this wait (see `scheduler`).
pub(crate) fn help_until<T>(
    target: JobId,
    bounded: bool,
    until: Instant,
    mut done: impl FnMut() -> Option<T>,
) -> Option<T> {
    let st = state().expect("help_until outside a worker");
    let control = st.setup.control;
    let w = st.setup.cx.index;
    let slot = control.slot(target.slot as usize);
    if bounded {
        return wait_bounded(st, target, until, done);
    }
    // Our own child first: nobody else may be free to run it.
    run_job(st, target);
    // Hungry for our sub-tree while we wait with nothing of it to run: a task of it
    // running a nested job inline then shares the rest with us and wakes us
    // (`jobs::run_set`, "Hungry workers").
    let mut hungry: Option<Hungry<'_>> = None;
    loop {
        if let Some(r) = done() {
            return Some(r);
        }
        // Only our own sub-tree: whatever else is ready waits for an idle worker.
        let mut due = None;
        if let Some(id) = control.find_work(w, &mut due, |id| control.is_in_tree(id, target)) {
            hungry = None;
            run_job(st, id);
            continue;
        }
        match &hungry {
            Some(h) => h.again(),
            None => hungry = Some(Hungry::new(&control, w, Hunger::Tree(target))),
        }
        if control.header().closed.load(Ordering::SeqCst) != 0 {
            process::exit_now(0);
        }
        if Instant::now() >= until {
            return None;
        }
        // Sleep briefly on the child's event (no longer than until a lazy job of the
        // sub-tree opens); new sub-tree work is found by the next scan.
        let mut step = (Instant::now() + Duration::from_millis(1)).min(until);
        if let Some(t) = due {
            let wait = Duration::from_nanos(t.saturating_sub(process::monotonic_ns()));
            step = step.min(Instant::now() + wait);
        }
        let policy = control.presence(Peer::Worker(w));
        // Back to the scan once fed (the job that fed us is in the run set).
        let fed = || hungry.as_ref().is_some_and(Hungry::fed);
        let check = || match done() {
            Some(r) => Some(Some(r)),
            None => fed().then_some(None),
        };
        if let Some(Some(r)) = slot.wait(st.setup.pool.waiter_spin(), step, policy, check) {
            return Some(r);
        }
    }
}

/// A bounded wait for nested job `target`: sleeps on its event, running nothing. While
/// it waits, the job's sub-tree is open to spare workers, and if nobody has taken the
/// job's chunks the scheduler is asked for one.
fn wait_bounded<T>(
    st: &State,
    target: JobId,
    until: Instant,
    mut done: impl FnMut() -> Option<T>,
) -> Option<T> {
    let control = st.setup.control;
    let slot = control.slot(target.slot as usize);
    let w = st.setup.cx.index;
    let me = control.worker(w);
    // Cleared on every way out (the scheduler clears it too if this process dies).
    struct Waiting<'a>(&'a crate::jobs::WorkerEntry);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.waiting_on.store(0, Ordering::SeqCst);
        }
    }
    // Ask for a spare only if the chunks are still there after a moment: an idle worker
    // usually takes them within microseconds. A bounded wait runs no task, so it never
    // nests in another one of this worker.
    let mut waiting: Option<Waiting<'_>> = None;
    // We run nothing ourselves: the job must not wait for us to lift its laziness.
    if slot.holds(target.gen) {
        slot.open(&control.header().work);
    }
    let ask_at = Instant::now() + Duration::from_micros(200);
    loop {
        if let Some(r) = done() {
            return Some(r);
        }
        if control.header().closed.load(Ordering::SeqCst) != 0 {
            process::exit_now(0);
        }
        let now = Instant::now();
        if now >= until {
            return None;
        }
        if waiting.is_none()
            && now >= ask_at
            && slot.is_active_job(target.gen)
            && control.chunks_left(slot)
        {
            debug_assert_eq!(me.waiting_on.load(Ordering::SeqCst), 0);
            me.waiting_on.store(target.pack(), Ordering::SeqCst);
            waiting = Some(Waiting(me));
            st.setup
                .pool
                .nudge_scheduler(crate::scheduler::SchedMsg::SpareWanted);
        }
        let step = (now + Duration::from_millis(1)).min(until);
        let step = if now < ask_at { step.min(ask_at) } else { step };
        let policy = control.presence(Peer::Worker(w));
        if let Some(r) = slot.wait(st.setup.pool.waiter_spin(), step, policy, &mut done) {
            return Some(r);
        }
    }
}
