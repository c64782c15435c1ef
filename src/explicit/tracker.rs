//! The scheduler's side of explicit processes: it forks them on request, reaps them,
//! records a death in the record, kills them on request and with the pool.
//!
//! Only the scheduler reaps its children, so a pid in [`Tracker`]'s list is never a
//! reused one: a kill request for a process already reaped finds nothing to kill.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::child::process_main;
use super::slot::{ProcState, ProcTable};
use crate::pool::PoolInner;
use crate::sys::process::{self, Exit, Fork};

/// One explicit process the scheduler forked and has not reaped yet.
struct Child {
    pid: i32,
    index: u32,
    gen: u64,
}

/// The explicit processes of one scheduler.
#[derive(Default)]
pub(crate) struct Tracker {
    children: Vec<Child>,
}

impl Tracker {
    /// Forks the process of record `index` if it is still STARTING(`gen`) (its forker
    /// waits for the answer). A failed fork is recorded as a death with its errno.
    pub(crate) fn fork(&mut self, pool: &Arc<PoolInner>, index: u32, gen: u64) {
        let table = ProcTable::of(&pool.control);
        let Some(slot) = table.slot(index as usize) else {
            return;
        };
        if slot.state_of(gen) != Some(ProcState::Starting) {
            return;
        }
        // SAFETY: the scheduler is single-threaded, so the child is a complete copy.
        match unsafe { process::fork_tied() } {
            Ok(Fork::Child) => process_main(Arc::clone(pool), index, gen),
            Ok(Fork::Parent(pid)) => self.children.push(Child { pid, index, gen }),
            Err(e) => {
                if slot.transition(gen, ProcState::Starting, ProcState::Dying) {
                    // Relaxed: published by the transition's Release.
                    slot.fork_errno
                        .store(e.raw_os_error().unwrap_or(libc::EAGAIN), Ordering::Relaxed);
                    slot.transition(gen, ProcState::Dying, ProcState::Died);
                }
            }
        }
    }

    /// Handles the end of child `pid`; false if it is not an explicit process.
    pub(crate) fn on_exit(&mut self, pool: &PoolInner, pid: i32, exit: Exit) -> bool {
        let Some(at) = self.children.iter().position(|c| c.pid == pid) else {
            return false;
        };
        let child = self.children.swap_remove(at);
        let Some(slot) = ProcTable::of(&pool.control).slot(child.index as usize) else {
            return true;
        };
        // A process that published DONE has nothing to add; its record may even be
        // joined and reused by now (then the transitions find another generation).
        let dying = slot.transition(child.gen, ProcState::Starting, ProcState::Dying)
            || slot.transition(child.gen, ProcState::Running, ProcState::Dying);
        if !dying {
            return true;
        }
        let (signal, code) = match exit {
            Exit::Signal(s) => (s, -1),
            Exit::Code(c) => (-1, c),
        };
        // Relaxed: published by the transition's Release; the record is ours while
        // DYING.
        slot.pid.store(pid, Ordering::Relaxed);
        slot.signal.store(signal, Ordering::Relaxed);
        slot.exit_code.store(code, Ordering::Relaxed);
        slot.transition(child.gen, ProcState::Dying, ProcState::Died);
        true
    }

    /// SIGKILLs the process of record `index` (generation `gen`) if it still runs.
    pub(crate) fn kill(&self, index: u32, gen: u64) {
        for c in self
            .children
            .iter()
            .filter(|c| c.index == index && c.gen == gen)
        {
            let _ = process::kill(c.pid, libc::SIGKILL);
        }
    }

    /// SIGKILLs every explicit process and reaps it (the pool is going away). Their
    /// records are marked DIED, for joiners still looking.
    pub(crate) fn kill_all(&mut self, pool: &PoolInner) {
        for c in &self.children {
            let _ = process::kill(c.pid, libc::SIGKILL);
        }
        while let Some(c) = self.children.last() {
            let pid = c.pid;
            match process::wait_blocking(pid) {
                Ok(exit) => {
                    self.on_exit(pool, pid, exit);
                }
                // Already reaped elsewhere (cannot happen: we are its only reaper).
                Err(_) => {
                    self.children.pop();
                }
            }
        }
    }
}
