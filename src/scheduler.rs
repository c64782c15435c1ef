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
use crate::job::{Failure, JobId, SlotState};
use crate::kind::WorkerCx;
use crate::mempool::Mempool;
use crate::pool::shared::{Control, JOB_SLOTS};
use crate::sys::process::{self, Exit, Fork};
use crate::worker::{worker_main, WorkerMsg, WorkerSetup};

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
}

/// What the scheduler needs, prepared by the client before it forks.
pub(crate) struct SchedulerSetup {
    pub(crate) mempool: Mempool,
    pub(crate) control: Control,
    pub(crate) inbox: Camlbox,
    pub(crate) worker_inboxes: Vec<Camlbox>,
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
    /// Cancelled jobs whose remaining workers are killed at the deadline.
    kill_at: Vec<(JobId, Instant)>,
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
        let n = setup.worker_inboxes.len();
        let pool = std::sync::Arc::new(crate::pool::PoolInner::for_worker(
            &setup,
            process::getpid(),
        ));
        let mut s = Scheduler {
            setup,
            pool,
            orphans: Vec::new(),
            pids: vec![0; n],
            kill_at: Vec::new(),
            shutting_down: false,
        };
        for w in 0..n {
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
            },
            control: self.setup.control,
            inbox: self.setup.worker_inboxes[w].clone(),
            pool: std::sync::Arc::clone(&self.pool),
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
                Ok(SchedMsg::ChildExited) | Err(_) => {}
            }
            self.reap();
            self.kill_overdue();
            self.retire_orphans();
            self.refill();
            if process::getppid() != self.setup.parent_pid {
                // The client (or its fork server) is gone: take the pool down with it.
                self.kill_all();
                return;
            }
        }
    }

    fn next_timeout(&self) -> Duration {
        if !self.orphans.is_empty() {
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
                if (job.slot as usize) < JOB_SLOTS {
                    let slot = control.slot(job.slot as usize);
                    if slot.is_active_job(job.gen) {
                        slot.fail(&Failure::WorkerDied {
                            pid,
                            signal,
                            exit_code,
                        });
                        // The job's other workers stop at their next chunk. One in a task
                        // that never returns is not killed here (its task may be long but
                        // finite, or a parent handling this failure); the owner's cancel
                        // or timeout stops it.
                    }
                }
            }
        }
        entry.depth.store(0, Ordering::SeqCst);
        // Until a replacement is forked (which may fail, then `refill` retries), the
        // index has no process: `Pool::pids` must not report the dead one.
        entry.pid.store(0, Ordering::SeqCst);
        self.pids[w] = 0;
        // The replacement first (it waits at its gate), so that when the failed job's
        // owner sees the last pin go, the pool is already back at full strength.
        let replaced = !self.shutting_down && self.fork_worker(w).is_ok();
        // Orphans are counted on their root *before* any pin is cleared: clearing the dead
        // worker's pin may end its failed root job, whose owner then frees the tree's
        // memory only after the orphans' count is back to zero. Counted in the same loop,
        // an orphan in a later slot than its root was missed, and its blocks were freed
        // only after the owner had seen the job end.
        for i in 0..JOB_SLOTS {
            let slot = control.slot(i);
            // Jobs the dead worker submitted (nested jobs) have nobody left to collect
            // them: fail them so their helpers stop, and retire them once empty.
            if slot.owner.load(Ordering::Relaxed) == pid as u64
                && matches!(
                    slot.state(),
                    SlotState::Active | SlotState::Complete | SlotState::Failed
                )
            {
                slot.fail(&Failure::WorkerDied {
                    pid,
                    signal,
                    exit_code,
                });
                let root = control.root_slot(slot.root.load(Ordering::Relaxed));
                if let Some(r) = root {
                    control.slot(r).orphans.fetch_add(1, Ordering::SeqCst);
                }
                self.orphans.push((i, root));
            }
        }
        for i in 0..JOB_SLOTS {
            control.slot(i).unpin(w);
        }
        if replaced {
            self.open_gate(w);
        }
        // A failed fork leaves the index empty; `run` retries it every period.
    }

    /// Re-forks workers whose replacement could not be forked earlier.
    fn refill(&mut self) {
        for w in 0..self.pids.len() {
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
            if matches!(slot.state(), SlotState::Complete | SlotState::Failed) {
                free_orphan(&self.setup.mempool, slot, self.setup.worker_inboxes.len());
                slot.retire();
                control.header().slot_event.notify();
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

    /// Cancels `job` and every job below it; workers still inside any of them after the
    /// grace period are killed.
    fn cancel(&mut self, job: JobId, grace_ms: u64) {
        let control = self.setup.control;
        for i in 0..JOB_SLOTS {
            let slot = control.slot(i);
            let id = JobId {
                slot: i as u32,
                gen: slot.gen.load(Ordering::Relaxed),
            };
            if slot.state() == SlotState::Active && control.is_in_tree(id, job) {
                slot.fail(&Failure::Cancelled);
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
        for inbox in &self.setup.worker_inboxes {
            let _ = inbox.sender::<WorkerMsg>().try_send(&WorkerMsg::Shutdown);
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while self.pids.iter().any(|&p| p != 0) && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_micros(200));
        }
        self.kill_all();
    }

    fn kill_all(&mut self) {
        self.shutting_down = true;
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
fn free_orphan(mempool: &Mempool, slot: &crate::job::JobSlot, workers: usize) {
    crate::progress::discard_reports(mempool, slot);
    let args = slot.args[0].load(Ordering::Relaxed);
    let table = slot.table.load(Ordering::Relaxed);
    if args == 0 || table < args {
        return;
    }
    for w in 0..workers {
        // SAFETY: the table lies inside the orphan's argument block, still allocated (its
        // owner died before freeing it) and no longer used by any worker (unpinned).
        let words = unsafe { mempool.words_at(table as usize + w * 24, 3) };
        let off = words[0].swap(0, Ordering::Relaxed);
        if off != 0 {
            let raw = crate::mempool::RawBlock::from_parts(
                mempool.id(),
                off,
                words[1].load(Ordering::Relaxed),
                words[2].load(Ordering::Relaxed),
            );
            let _ = mempool.free_raw(raw);
        }
    }
    let len = table - args + (workers * 24) as u64;
    let _ = mempool.free_owned(args, len, slot.args[2].load(Ordering::Relaxed));
}
