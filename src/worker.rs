//! Worker processes: wait for job notices, run chunks, help their own nested jobs, stay
//! alive through task failures.
//!
//! A worker is forked by the scheduler (a single-threaded process), so it starts as a
//! clean single-threaded copy. Its life:
//!
//! 1. (forked by `process::fork_tied`, it already has a parent-death signal: SIGKILL when
//!    the scheduler goes; its panics are quiet through `panic_hook`) take over its inbox;
//! 2. record its pid in the worker table and count itself started;
//! 3. loop: take a [`WorkerMsg`] (deferred notices first, then the inbox); for a job
//!    notice, pin the slot, check it still runs that job, join it once, run the job's
//!    trampoline, unpin.
//!
//! ## Nested jobs
//!
//! A task may start a job of its own (`ctx.par_map(..)`). The worker then runs that
//! child job's chunks itself, and while other workers finish theirs it keeps working,
//! but **only on jobs of its own sub-tree** (the child and its descendants): notices for
//! anything else are deferred to its main loop. A tree of any depth therefore finishes
//! even if every worker is waiting on a child, and with a single worker: in the worst
//! case each worker runs its whole sub-tree alone.
//!
//! A panic inside a task is caught by the trampoline and fails only that job. Anything
//! worse (abort, segfault, SIGKILL) ends the process; the scheduler sees it, fails the
//! jobs on this worker's stack and those it had submitted, and forks a replacement on
//! the same inbox.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::camlbox::Receiver;
use crate::job::{JobId, JobSlot};
use crate::kind::{Entry, WorkerCx};
use crate::pool::shared::{Control, JOB_SLOTS};
use crate::pool::PoolInner;
use crate::sys::process;

/// Messages in a worker's inbox.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) enum WorkerMsg {
    /// A job the worker may help with.
    Job(JobId),
    /// Exit now.
    Shutdown,
}

/// Everything a worker needs, prepared by the scheduler before it forks.
pub(crate) struct WorkerSetup {
    pub(crate) cx: WorkerCx,
    pub(crate) control: Control,
    pub(crate) inbox: crate::camlbox::Camlbox,
    pub(crate) pool: Arc<PoolInner>,
    /// Which fork of this index we are (see `WorkerEntry::gate`).
    pub(crate) incarnation: u64,
}

/// The worker's process-wide state (a worker is single-threaded).
struct State {
    setup: &'static WorkerSetup,
    inbox: Receiver<WorkerMsg>,
    /// Notices put aside while helping a nested job.
    deferred: RefCell<VecDeque<JobId>>,
    /// The jobs this worker is inside, innermost last, with their root generation.
    jobs: RefCell<Vec<(JobId, u64)>>,
}

thread_local! {
    static STATE: RefCell<Option<&'static State>> = const { RefCell::new(None) };
}

fn state() -> Option<&'static State> {
    STATE.with(|s| *s.borrow())
}

/// This process's worker index, if it is a worker.
pub(crate) fn current_index() -> Option<usize> {
    state().map(|s| s.setup.cx.index)
}

/// The job the calling task belongs to (innermost), with the pool state to submit nested
/// jobs: `None` outside a worker.
pub(crate) fn current_job() -> Option<(Arc<PoolInner>, JobId, u64)> {
    let s = state()?;
    let (job, root) = *s.jobs.borrow().last()?;
    Some((Arc::clone(&s.setup.pool), job, root))
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
    let entry = setup.control.worker(setup.cx.index);
    entry.gate_event.wait_until(Duration::ZERO, None, || {
        (entry.gate.load(Ordering::SeqCst) >= setup.incarnation).then_some(())
    });
    let setup: &'static WorkerSetup = Box::leak(Box::new(setup));
    let inbox: Receiver<WorkerMsg> = setup.inbox.receiver()?;
    let st: &'static State = Box::leak(Box::new(State {
        setup,
        inbox,
        deferred: RefCell::new(VecDeque::new()),
        jobs: RefCell::new(Vec::new()),
    }));
    STATE.with(|s| *s.borrow_mut() = Some(st));
    let me = setup.control.worker(setup.cx.index);
    me.pid.store(process::getpid(), Ordering::SeqCst);
    me.depth.store(0, Ordering::SeqCst);
    setup
        .control
        .header()
        .started
        .fetch_add(1, Ordering::SeqCst);
    setup.control.header().ready_event.notify();
    loop {
        let deferred = st.deferred.borrow_mut().pop_front();
        if let Some(id) = deferred {
            run_notice(st, id);
            continue;
        }
        match st.inbox.recv() {
            Ok(WorkerMsg::Job(id)) => run_notice(st, id),
            Ok(WorkerMsg::Shutdown) => return Ok(()),
            // A malformed notice is dropped; the box keeps working.
            Err(crate::Error::Malformed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Acts on one job notice (see `job`'s module docs for the pin protocol).
fn run_notice(st: &State, id: JobId) {
    let setup = st.setup;
    if id.slot as usize >= JOB_SLOTS {
        return;
    }
    let slot = setup.control.slot(id.slot as usize);
    let w = setup.cx.index;
    slot.pin(w);
    if slot.is_active_job(id.gen) && slot.join(w) {
        run_joined(st, slot, id);
    }
    slot.unpin(w);
}

fn run_joined(st: &State, slot: &JobSlot, id: JobId) {
    let setup = st.setup;
    let me = setup.control.worker(setup.cx.index);
    let recorded = me.push(id);
    let root = slot.root.load(Ordering::Relaxed);
    st.jobs.borrow_mut().push((id, root));
    let old_tag = crate::mempool::set_default_tag(root);
    let addr = slot.entry.load(Ordering::Relaxed);
    // SAFETY: the owner stored `kind::encode_entry(entry::<K>)` in INIT; we loaded ACTIVE
    // with Acquire and checked the generation while pinned, so the header is that job's
    // and cannot be rewritten until we unpin. Every process of the pool runs the same
    // image (forks of one, or a fork server checked to run the client's).
    let entry: Entry = unsafe { crate::kind::decode_entry(addr as u64) };
    // SAFETY: the slot is ACTIVE (checked), pinned by us, and written for the kind whose
    // trampoline `entry` is.
    unsafe { entry(&setup.cx, slot, root as usize) };
    crate::mempool::set_default_tag(old_tag);
    st.jobs.borrow_mut().pop();
    if recorded {
        me.pop();
    }
}

/// Whether the calling process is a worker (nested waits must help, not sleep).
pub(crate) fn is_worker() -> bool {
    state().is_some()
}

/// Waits for nested job `target` (submitted by the calling task), working on it and on
/// its descendants meanwhile. `done` says whether the job has ended.
pub(crate) fn help_until<T>(
    target: JobId,
    deadline: Option<Instant>,
    mut done: impl FnMut() -> Option<T>,
) -> Option<T> {
    let st = state().expect("help_until outside a worker");
    let control = st.setup.control;
    // Our own child first: nobody else may be free to run it.
    run_notice(st, target);
    let slot = control.slot(target.slot as usize);
    loop {
        if let Some(r) = done() {
            return Some(r);
        }
        match st.inbox.try_recv() {
            Ok(Some(WorkerMsg::Job(id))) => {
                if control.is_in_tree(id, target) {
                    run_notice(st, id);
                } else {
                    st.deferred.borrow_mut().push_back(id);
                }
                continue;
            }
            Ok(Some(WorkerMsg::Shutdown)) => process::exit_now(0),
            Ok(None) | Err(_) => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        // Sleep briefly on the child's event; new sub-tree work arrives in the inbox.
        let step = Instant::now() + Duration::from_millis(1);
        if let Some(r) = slot.wait(st.setup.pool.waiter_spin(), step, &mut done) {
            return Some(r);
        }
    }
}
