//! The scheduler process: forks the workers, re-forks the ones that die, fails the jobs
//! they were running, and takes the pool down with the client.
//!
//! It is forked by the client at build time (`process::fork_tied`: it gets SIGKILL when
//! the client thread that forked it ends) and is the only process that forks. It never
//! starts a thread, so every worker is a clean single-threaded copy. It never sets the
//! panic hook (see `panic_hook`): it only marks itself a pool process. It is *not* on the
//! per-job path: clients post job notices straight to the workers' inboxes.
//!
//! ## Loop
//!
//! The scheduler sleeps on its own inbox. It wakes for
//! * `ChildExited`, sent by its SIGCHLD handler (an async-signal-safe raw send of
//!   pre-encoded bytes): it reaps every ended child, and for each dead worker fails the
//!   jobs on that worker's stack with [`Failure::WorkerDied`], clears the worker's pins in
//!   every slot, and forks a replacement on the same inbox;
//! * `Shutdown` from the client: it tells the workers to exit, waits briefly, SIGKILLs any
//!   straggler, reaps them all and exits;
//! * a timeout every [`LIVENESS_PERIOD`]: if its parent changed (the client died, even by
//!   SIGKILL), it exits; the workers follow through their parent-death signal. It also
//!   reaps here, so a lost SIGCHLD costs at most one period.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::camlbox::{Camlbox, Sender};
use crate::jobs::partials::{Partial, PartialCell, CELL_SIZE};
use crate::jobs::slot::INLINE_BYTES;
use crate::jobs::{Control, Failure, JobId, SlotState};
use crate::kind::WorkerCx;
use crate::mempool::Mempool;
use crate::sys::process::{self, Exit, Fork};
use crate::worker::{worker_main, WorkerSetup};

/// How often an idle scheduler checks that its client is alive.
pub(crate) const LIVENESS_PERIOD: Duration = Duration::from_millis(100);

/// Messages in the scheduler's inbox.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) enum SchedMsg {
    /// A child ended (from the SIGCHLD handler).
    ChildExited,
    /// Shut the pool down.
    Shutdown,
    /// Cancel a job: fail it and kill the workers still inside it after `grace_ms`.
    Cancel { job: JobId, grace_ms: u64 },
    /// A worker entered a bounded wait for a nested job that no worker has taken yet:
    /// fork a spare worker if none is free for it.
    SpareWanted,
    /// The owner of `job` (failed, borrowing nothing) stopped waiting for it: free what
    /// it holds and retire it once no worker is inside.
    Adopt { job: JobId },
    /// Fork the explicit process of record `index` (generation `gen`, STARTING).
    Fork { index: u32, gen: u64 },
    /// SIGKILL the explicit process of record `index` (generation `gen`) if it runs.
    KillProcess { index: u32, gen: u64 },
}

/// What the scheduler needs, prepared by the client before it forks.
pub(crate) struct SchedulerSetup {
    pub(crate) mempool: Mempool,
    pub(crate) control: Control,
    pub(crate) inbox: Camlbox,
    pub(crate) client_pid: i32,
    /// The process that forks the scheduler: the client, or the fork server.
    pub(crate) parent_pid: i32,
    pub(crate) config: crate::pool::PoolBuilder,
}

/// The bytes of an encoded `SchedMsg::ChildExited` and a sender, for the signal handler.
struct SignalSend {
    bytes: Vec<u8>,
    sender: Sender<SchedMsg>,
}

static SIGCHLD_SEND: AtomicPtr<SignalSend> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_sigchld(_: libc::c_int) {
    let p = SIGCHLD_SEND.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: set once before the handler was installed, never freed (the scheduler
        // exits with `_exit`).
        let s = unsafe { &*p };
        // Async-signal-safe: atomics, a copy into the slot, maybe a futex wake. A full
        // box is fine: the scheduler reaps on every wake-up and every period anyway.
        let errno = nix::errno::Errno::last_raw();
        let _ = s.sender.try_send_bytes(&s.bytes);
        nix::errno::Errno::set_raw(errno);
    }
}

/// The body of the scheduler process. Never returns.
pub(crate) fn scheduler_main(setup: SchedulerSetup) -> ! {
    // Quiet panics in here and in every worker (never `set_hook`: see `panic_hook`).
    crate::panic_hook::mark_pool_process();
    let code = match Scheduler::start(setup) {
        Ok(mut s) => {
            s.run();
            0
        }
        Err(_) => 1,
    };
    process::exit_now(code)
}

struct Scheduler {
    setup: SchedulerSetup,
    /// The pool state every worker inherits, for nested jobs.
    pool: std::sync::Arc<crate::pool::PoolInner>,
    /// Slots whose owner died, with the slot of their tree's root: failed, and retired
    /// once no worker is inside.
    orphans: Vec<(usize, Option<usize>)>,
    pids: Vec<i32>,
    /// Top-level jobs whose owner stopped waiting ([`SchedMsg::Adopt`]): retired, with
    /// everything their tree allocated freed, once no worker is inside the tree.
    detached: Vec<JobId>,
    /// When [`Scheduler::collect_dead_clients`] last looked.
    clients_checked: Instant,
    /// Cancelled jobs whose remaining workers are killed at the deadline.
    kill_at: Vec<(JobId, Instant)>,
    /// The explicit processes forked and not yet reaped.
    explicit: crate::explicit::Tracker,
    shutting_down: bool,
}

impl Scheduler {
    fn start(setup: SchedulerSetup) -> crate::Result<Scheduler> {
        // Our own process group: a Ctrl-C at the terminal goes to the client, which
        // decides what to cancel; the pool follows the client's fate, not the terminal's.
        let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
        // The forking client thread may have blocked signals; we need SIGCHLD.
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&nix::sys::signal::SigSet::empty()),
            None,
        );
        let signal_send = Box::new(SignalSend {
            bytes: bincode::serialize(&SchedMsg::ChildExited).map_err(|e| {
                crate::Error::Malformed {
                    reason: e.to_string(),
                }
            })?,
            sender: setup.inbox.sender(),
        });
        SIGCHLD_SEND.store(Box::into_raw(signal_send), Ordering::Release);
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_sigchld),
            nix::sys::signal::SaFlags::SA_RESTART | nix::sys::signal::SaFlags::SA_NOCLDSTOP,
            nix::sys::signal::SigSet::empty(),
        );
        // SAFETY: the handler only touches a leaked, immutable `SignalSend` and does
        // async-signal-safe work (see `on_sigchld`).
        unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGCHLD, &action) }
            .map_err(|e| {
                crate::Error::io(
                    "sigaction(SIGCHLD)",
                    std::io::Error::from_raw_os_error(e as i32),
                )
            })?;
        let n = setup.control.entries();
        let regular = setup.config.workers;
        let pool = std::sync::Arc::new(crate::pool::PoolInner::for_worker(
            &setup,
            process::getpid(),
        ));
        let mut s = Scheduler {
            setup,
            pool,
            orphans: Vec::new(),
            detached: Vec::new(),
            clients_checked: Instant::now(),
            pids: vec![0; n],
            kill_at: Vec::new(),
            explicit: crate::explicit::Tracker::default(),
            shutting_down: false,
        };
        for w in 0..regular {
            s.fork_worker(w)?;
            s.open_gate(w);
        }
        Ok(s)
    }

    /// Lets the current incarnation of worker `w` start.
    fn open_gate(&self, w: usize) {
        let entry = self.setup.control.worker(w);
        entry
            .gate
            .store(entry.incarnations.load(Ordering::SeqCst), Ordering::SeqCst);
        entry.gate_event.notify();
    }

    /// Forks worker `w`; it waits at its gate until [`Scheduler::open_gate`].
    fn fork_worker(&mut self, w: usize) -> crate::Result<()> {
        let incarnation = self
            .setup
            .control
            .worker(w)
            .incarnations
            .fetch_add(1, Ordering::SeqCst)
            + 1;
        let setup = WorkerSetup {
            incarnation,
            cx: WorkerCx {
                index: w,
                mempool: self.setup.mempool.clone(),
                control: self.setup.control,
            },
            control: self.setup.control,
            pool: std::sync::Arc::clone(&self.pool),
            spare: self.is_spare(w),
        };
        // SAFETY: the scheduler is single-threaded, so the child is a complete copy.
        match unsafe { process::fork_tied() }
            .map_err(|e| crate::Error::io("fork of a worker", e))?
        {
            Fork::Child => worker_main(setup),
            Fork::Parent(pid) => {
                self.pids[w] = pid;
                self.setup
                    .control
                    .worker(w)
                    .pid
                    .store(pid, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    fn run(&mut self) {
        let inbox = match self.setup.inbox.receiver::<SchedMsg>() {
            Ok(r) => r,
            Err(_) => return,
        };
        loop {
            let timeout = self.next_timeout();
            match inbox.recv_timeout(timeout) {
                Ok(SchedMsg::Shutdown) => {
                    self.shutdown();
                    return;
                }
                Ok(SchedMsg::Cancel { job, grace_ms }) => self.cancel(job, grace_ms),
                Ok(SchedMsg::Adopt { job }) => self.adopt(job),
                Ok(SchedMsg::Fork { index, gen }) if !self.shutting_down => {
                    self.explicit.fork(&self.pool, index, gen)
                }
                Ok(SchedMsg::KillProcess { index, gen }) => self.explicit.kill(index, gen),
                Ok(SchedMsg::Fork { .. }) => {}
                Ok(SchedMsg::SpareWanted) | Ok(SchedMsg::ChildExited) | Err(_) => {}
            }
            self.reap();
            self.kill_overdue();
            self.retire_orphans();
            self.retire_detached();
            self.refill();
            self.ensure_spares();
            self.collect_dead_clients();
            if process::getppid() != self.setup.parent_pid {
                // The client (or its fork server) is gone: take the pool down with it.
                self.kill_all();
                return;
            }
        }
    }

    fn next_timeout(&self) -> Duration {
        if !self.orphans.is_empty() || !self.detached.is_empty() {
            // An orphan's tree owner may be waiting for it to be retired.
            return Duration::from_millis(1);
        }
        let now = Instant::now();
        self.kill_at
            .iter()
            .map(|(_, at)| at.saturating_duration_since(now))
            .min()
            .unwrap_or(LIVENESS_PERIOD)
            .min(LIVENESS_PERIOD)
    }

    fn reap(&mut self) {
        while let Ok(Some((pid, exit))) = process::try_wait_any() {
            if let Some(w) = self.pids.iter().position(|&p| p == pid) {
                self.on_worker_exit(w, pid, exit);
            } else {
                self.explicit.on_exit(&self.pool, pid, exit);
            }
        }
    }

    fn on_worker_exit(&mut self, w: usize, pid: i32, exit: Exit) {
        let control = self.setup.control;
        let entry = control.worker(w);
        let (signal, exit_code) = match exit {
            Exit::Signal(s) => (Some(s), None),
            Exit::Code(c) => (None, Some(c)),
        };
        if !self.shutting_down {
            for job in entry.jobs() {
                if let Some(slot) = control.try_slot(job.slot as usize) {
                    if slot.is_active_job(job.gen) {
                        slot.fail(
                            &Failure::WorkerDied {
                                pid,
                                signal,
                                exit_code,
                            },
                            &control.header().ended,
                        );
                        // The job's other workers stop at their next chunk. One in a task
                        // that never returns is not killed here (its task may be long but
                        // finite, or a parent handling this failure); the owner's cancel
                        // or timeout stops it.
                    }
                }
            }
        }
        entry.depth.store(0, Ordering::SeqCst);
        // Its hunger died with it: nobody is to share work with it any more.
        control.clear_hungry(w);
        // Until a replacement is forked (which may fail, then `refill` retries), the
        // index has no process: `Pool::pids` must not report the dead one.
        entry.pid.store(0, Ordering::SeqCst);
        self.pids[w] = 0;
        // The replacement first (it waits at its gate), so that when the failed job's
        // owner sees the last pin go, the pool is already back at full strength. A spare
        // is not replaced: `ensure_spares` forks one again while a bounded wait needs it.
        entry.waiting_on.store(0, Ordering::SeqCst);
        let replaced = !self.shutting_down && !self.is_spare(w) && self.fork_worker(w).is_ok();
        // Orphans are counted on their root *before* any pin is cleared: clearing the dead
        // worker's pin may end its failed root job, whose owner then frees the tree's
        // memory only after the orphans' count is back to zero. Counted in the same loop,
        // an orphan in a later slot than its root was missed, and its blocks were freed
        // only after the owner had seen the job end.
        for i in 0..control.slot_count() {
            let slot = control.slot(i);
            // Jobs the dead worker submitted (nested jobs) have nobody left to collect
            // them: fail them so their helpers stop, and retire them once empty.
            if slot.owner.load(Ordering::Relaxed) == pid as u64
                && matches!(
                    slot.state(),
                    SlotState::Active | SlotState::Complete | SlotState::Failed
                )
            {
                slot.fail(
                    &Failure::WorkerDied {
                        pid,
                        signal,
                        exit_code,
                    },
                    &control.header().ended,
                );
                let root = control.root_slot(slot.root.load(Ordering::Relaxed));
                if let Some(r) = root {
                    control.slot(r).orphans.fetch_add(1, Ordering::SeqCst);
                }
                self.orphans.push((i, root));
            }
        }
        for i in 0..control.slot_count() {
            control.slot(i).unpin(w, &control.header().ended);
        }
        if replaced {
            self.open_gate(w);
        }
        // A failed fork leaves the index empty; `run` retries it every period.
    }

    fn is_spare(&self, w: usize) -> bool {
        w >= self.setup.config.workers
    }

    /// Forks spare workers while fewer are alive than workers wait with a deadline for a
    /// nested job (each such waiter runs no chunk itself, see `worker::help_until`). A
    /// spare runs only those waits' sub-trees and exits once it has been idle for
    /// [`SPARE_LINGER`](crate::worker::SPARE_LINGER).
    fn ensure_spares(&mut self) {
        if self.shutting_down {
            return;
        }
        let wanted = self.setup.control.bounded_waits();
        let regular = self.setup.config.workers;
        let mut alive = self.pids[regular..].iter().filter(|&&p| p != 0).count();
        for w in regular..self.pids.len() {
            if alive >= wanted {
                break;
            }
            if self.pids[w] == 0 && self.fork_worker(w).is_ok() {
                self.open_gate(w);
                alive += 1;
            }
        }
    }

    /// Re-forks workers whose replacement could not be forked earlier.
    fn refill(&mut self) {
        for w in 0..self.setup.config.workers {
            if self.pids[w] == 0 && !self.shutting_down && self.fork_worker(w).is_ok() {
                self.open_gate(w);
            }
        }
    }

    fn retire_orphans(&mut self) {
        let control = self.setup.control;
        self.orphans.retain(|&(i, root)| {
            let slot = control.slot(i);
            if slot.is_pinned() {
                return true;
            }
            if slot.state().has_ended() {
                free_orphan(&self.setup.mempool, slot, control.entries());
                control.retire(i);
            }
            if let Some(r) = root {
                let root_slot = control.slot(r);
                let _ = root_slot
                    .orphans
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                root_slot.event.notify();
            }
            false
        });
    }

    /// Takes over job `job` from its owner (see [`SchedMsg::Adopt`]). A nested job is
    /// handled like an orphan (counted on its root, whose owner waits for it); a
    /// top-level one also has its tree's allocations freed.
    fn adopt(&mut self, job: JobId) {
        let control = self.setup.control;
        let Some(slot) = control.try_slot(job.slot as usize) else {
            return;
        };
        if !slot.holds(job.gen) || slot.owner.load(Ordering::Relaxed) != 0 {
            return;
        }
        self.adopt_unchecked(job);
    }

    fn adopt_unchecked(&mut self, job: JobId) {
        let control = self.setup.control;
        let slot = control.slot(job.slot as usize);
        if slot.parent().is_some() {
            let root = control.root_slot(slot.root.load(Ordering::Relaxed));
            if let Some(r) = root {
                control.slot(r).orphans.fetch_add(1, Ordering::SeqCst);
            }
            self.orphans.push((job.slot as usize, root));
        } else {
            self.detached.push(job);
        }
    }

    /// Cleans up after client processes other than the one that built the pool (a
    /// child it forked that used the pool) which died with jobs in flight: their jobs
    /// are cancelled (workers still inside are killed after the grace period) and
    /// adopted, so their slots, argument blocks and tree allocations come back. Looks at
    /// most once per [`LIVENESS_PERIOD`].
    fn collect_dead_clients(&mut self) {
        if self.shutting_down || self.clients_checked.elapsed() < LIVENESS_PERIOD {
            return;
        }
        self.clients_checked = Instant::now();
        let control = self.setup.control;
        let mut dead: Vec<u64> = Vec::new();
        let mut alive: Vec<u64> = vec![0, self.setup.client_pid as u64];
        alive.extend(self.pids.iter().map(|&p| p as u64));
        for i in 0..control.slot_count() {
            let slot = control.slot(i);
            // INIT is left alone: its owner field may not be this claimer's yet, and a
            // live claimer would publish over whatever we did (an owner that dies in the
            // microseconds between claim and publish costs one slot).
            if !matches!(
                slot.state(),
                SlotState::Active | SlotState::Complete | SlotState::Failed
            ) {
                continue;
            }
            let owner = slot.owner.load(Ordering::Relaxed);
            if alive.contains(&owner) {
                continue;
            }
            if !dead.contains(&owner) {
                if process::is_alive(owner as i32) {
                    alive.push(owner);
                    continue;
                }
                dead.push(owner);
            }
            // The owner is gone: nobody will collect the job.
            let id = JobId {
                slot: i as u32,
                gen: slot.gen(),
            };
            slot.owner.store(0, Ordering::Relaxed);
            self.cancel(id, self.setup.config.cancel_grace.as_millis() as u64);
            self.adopt_unchecked(id);
        }
    }

    fn retire_detached(&mut self) {
        let control = self.setup.control;
        let mempool = &self.setup.mempool;
        self.detached.retain(|&id| {
            let slot = control.slot(id.slot as usize);
            let root = slot.root.load(Ordering::Relaxed);
            let ended = slot.state().has_ended();
            if slot.is_pinned()
                || !ended
                || slot.orphans.load(Ordering::SeqCst) > 0
                || control.tree_busy_except(root, id)
            {
                return true;
            }
            free_orphan(mempool, slot, control.entries());
            if slot.state() == SlotState::Failed {
                // SAFETY: blocks tagged with the tree's root were allocated by its tasks;
                // the tree has failed, no worker is inside any of its jobs, and its owner
                // handed it to us, so nothing else frees or uses them.
                let _ = unsafe { mempool.free_tagged(root) };
            }
            control.retire(id.slot as usize);
            false
        });
    }

    /// Cancels `job` and every job below it; workers still inside any of them after the
    /// grace period are killed.
    fn cancel(&mut self, job: JobId, grace_ms: u64) {
        let control = self.setup.control;
        for i in 0..control.slot_count() {
            let slot = control.slot(i);
            let id = JobId {
                slot: i as u32,
                gen: slot.gen(),
            };
            if slot.state() == SlotState::Active && control.is_in_tree(id, job) {
                // Unpinned: the job may end, and its slot go to another job, meanwhile.
                slot.fail_job(id.gen, &Failure::Cancelled, &control.header().ended);
            }
        }
        self.kill_at
            .push((job, Instant::now() + Duration::from_millis(grace_ms)));
    }

    /// Kills workers still inside a cancelled job after its grace period.
    fn kill_overdue(&mut self) {
        let now = Instant::now();
        let control = self.setup.control;
        let (due, rest): (Vec<_>, Vec<_>) = self.kill_at.drain(..).partition(|(_, at)| *at <= now);
        self.kill_at = rest;
        for (job, _) in due {
            for w in 0..self.pids.len() {
                if self.pids[w] != 0
                    && control
                        .worker(w)
                        .jobs()
                        .iter()
                        .any(|&j| control.is_in_tree(j, job))
                {
                    let _ = process::kill(self.pids[w], libc::SIGKILL);
                }
            }
        }
    }

    fn shutdown(&mut self) {
        self.shutting_down = true;
        // Workers leave their idle wait (and any help loop) once the pool is closed.
        let header = self.setup.control.header();
        header.closed.store(1, Ordering::SeqCst);
        header.work.notify();
        // Explicit processes do not watch `closed`: they go at once.
        self.explicit.kill_all(&self.pool);
        let deadline = Instant::now() + Duration::from_millis(200);
        while self.pids.iter().any(|&p| p != 0) && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_micros(200));
        }
        self.kill_all();
    }

    fn kill_all(&mut self) {
        self.shutting_down = true;
        self.explicit.kill_all(&self.pool);
        for &pid in self.pids.iter().filter(|&&p| p != 0) {
            let _ = process::kill(pid, libc::SIGKILL);
        }
        for w in 0..self.pids.len() {
            if self.pids[w] != 0 {
                let _ = process::wait_blocking(self.pids[w]);
                self.pids[w] = 0;
            }
        }
        self.setup
            .control
            .header()
            .closed
            .store(1, Ordering::SeqCst);
    }
}

/// Frees what an orphaned job (its owner died) still holds: the partial results its
/// workers recorded, the reports nobody collected, and its argument block.
fn free_orphan(mempool: &Mempool, slot: &crate::jobs::JobSlot, rows: usize) {
    crate::progress::discard_reports(mempool, slot);
    let args = slot.args.load(mempool);
    // The table lies inside the argument block, or in the header's inline area when the
    // job has none; anything else is an overwritten header: free nothing it names.
    let (start, len) = match args {
        Some(a) => (a.offset(), a.len()),
        None => (slot.inline_offset(mempool), INLINE_BYTES as u64),
    };
    let table = slot.table.load(Ordering::Relaxed);
    if table >= start && table + (rows * CELL_SIZE) as u64 <= start + len {
        for w in 0..rows {
            // SAFETY: the table lies inside the orphan's argument block or inline area
            // (checked just above), still allocated (its owner died or handed it over
            // before freeing it) and no longer used by any worker (unpinned).
            let Ok(cell) = (unsafe { PartialCell::in_table(mempool, table, w) }) else {
                break;
            };
            if let Ok(Some(Partial::Block(raw))) = cell.take(mempool) {
                let _ = mempool.free_raw(raw);
            }
        }
    }
    let Some(args) = args else {
        return;
    };
    slot.args.clear();
    // Owned by a dead process, or detached by one that handed the job over: either way
    // nobody else frees it.
    let _ = mempool.free_owned(args.offset(), args.len(), args.generation());
}
