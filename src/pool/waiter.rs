//! The pool's async waiter: one thread that owns every pending [`Waker`] of the pool's
//! awaited handles and streams, however many there are.
//!
//! An awaited [`JobHandle`](crate::JobHandle) (or a progress / report stream) that is not
//! ready registers `(job, waker, due)` here and returns `Pending`. The waiter thread,
//! started on the first registration, sleeps on the control block's `ended` event, which
//! every process notifies after a job ends (completes, fails, or a failed job loses its
//! last pin). When it wakes it wakes (and forgets) every registration whose job has
//! ended, whose `due` time has come (a timeout to enforce, callbacks or a stream to feed),
//! or all of them if the scheduler died; then it sleeps again until the next event or the
//! earliest `due`, and at least every [`LIVENESS_STEP`]. A woken future polls its handle,
//! which does the real work (collecting the result, enforcing the deadline) in the
//! runtime's thread, and registers again if it is still not done.
//!
//! ## Why no wakeup is lost
//!
//! The thread's sleep is [`Event::wait_until`](crate::futex::Event) whose condition scans
//! the registrations (under the mutex) for an ended job: a job that ends after the scan
//! bumps the event's sequence number, which the futex compare sees (the `futex` module's
//! protocol). A registration made while the thread sleeps also bumps it, so the thread
//! recomputes its wake-up time with the new entry. With no registration the thread parks
//! on a condition variable instead, so `ended` notifications cost no system call.
//!
//! The thread holds no reference to the pool: the pool stops and joins it when it is
//! dropped, before the mempool (where the control block lives) is unmapped.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::jobs::Control;
use crate::jobs::{JobId, SlotState};
use crate::sys::process;

/// Longest the waiter sleeps without looking at the scheduler's liveness.
const LIVENESS_STEP: Duration = Duration::from_millis(100);

/// One pending future.
struct Entry {
    job: JobId,
    waker: Waker,
    /// Wake at this time even if the job has not ended.
    due: Option<Instant>,
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, Entry>,
    next_key: u64,
    /// Bumped by every registration, so a sleeping thread recomputes its wake-up time.
    changes: u64,
    stop: bool,
    started: bool,
    /// The process whose thread this is: a forked copy of the pool (a child process of
    /// the client that uses it) has the state but not the thread, and starts its own.
    started_by: i32,
}

/// The waiter of one pool (see the module docs).
pub(crate) struct Waiter {
    state: Mutex<State>,
    idle: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    control: Control,
    scheduler_pid: i32,
}

impl Waiter {
    pub(crate) fn new(control: Control, scheduler_pid: i32) -> Arc<Waiter> {
        Arc::new(Waiter {
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
            thread: Mutex::new(None),
            control,
            scheduler_pid,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` inconsistent (every update
        // is one map operation), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or re-registers, under `*key`) a future waiting for `job`, to be woken
    /// when it ends or at `due`.
    pub(crate) fn register(
        self: &Arc<Self>,
        key: &mut Option<u64>,
        job: JobId,
        waker: &Waker,
        due: Option<Instant>,
    ) {
        let mut st = self.lock();
        if st.started && st.started_by != process::cached_pid() {
            // A fork of the process that ran the thread: none runs here.
            st.started = false;
            st.pending.clear();
        }
        if st.stop {
            // The pool is going away: let the future see it.
            drop(st);
            waker.wake_by_ref();
            return;
        }
        let k = *key.get_or_insert_with(|| {
            st.next_key += 1;
            st.next_key
        });
        st.pending.insert(
            k,
            Entry {
                job,
                waker: waker.clone(),
                due,
            },
        );
        st.changes += 1;
        let start = !st.started;
        st.started = true;
        st.started_by = process::cached_pid();
        drop(st);
        if start {
            let me = Arc::clone(self);
            let handle = std::thread::Builder::new()
                .name("procyon-waiter".into())
                .spawn(move || me.run());
            match handle {
                Ok(h) => *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(h),
                Err(_) => {
                    // No thread: degrade to waking at once, so the future polls (and so
                    // waits) in its own thread rather than hanging.
                    self.lock().started = false;
                    waker.wake_by_ref();
                    return;
                }
            }
        }
        self.idle.notify_one();
        self.control.header().ended.notify();
    }

    /// Forgets the registration under `key` (the future was dropped or completed).
    pub(crate) fn deregister(&self, key: Option<u64>) {
        if let Some(k) = key {
            self.lock().pending.remove(&k);
        }
    }

    /// Threads this waiter runs (0 or 1): for monitoring.
    pub(crate) fn threads(&self) -> usize {
        let st = self.lock();
        usize::from(st.started && st.started_by == process::cached_pid())
    }

    /// Stops the thread and waits for it (the pool is being dropped).
    pub(crate) fn stop(&self) {
        let pending = {
            let mut st = self.lock();
            st.stop = true;
            std::mem::take(&mut st.pending)
        };
        for (_, e) in pending {
            e.waker.wake();
        }
        self.idle.notify_one();
        self.control.header().ended.notify();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle.filter(|_| self.threads() == 1) {
            let _ = h.join();
        }
    }

    fn ended(&self, job: JobId) -> bool {
        let Some(slot) = self.control.try_slot(job.slot as usize) else {
            return true;
        };
        if !slot.holds(job.gen) {
            return true;
        }
        match slot.state() {
            SlotState::Complete => true,
            SlotState::Failed => !slot.is_pinned(),
            _ => false,
        }
    }

    fn run(self: Arc<Self>) {
        let ended_event = &self.control.header().ended;
        let mut dead = false;
        let mut liveness_checked = Instant::now();
        loop {
            let mut st = self.lock();
            if st.stop {
                return;
            }
            if st.pending.is_empty() {
                let _ = self
                    .idle
                    .wait_timeout(st, LIVENESS_STEP)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let now = Instant::now();
            if now >= liveness_checked + LIVENESS_STEP {
                liveness_checked = now;
                dead = !process::is_alive(self.scheduler_pid)
                    || self
                        .control
                        .header()
                        .closed
                        .load(std::sync::atomic::Ordering::SeqCst)
                        != 0;
            }
            let mut woken = Vec::new();
            st.pending.retain(|_, e| {
                let wake = dead || e.due.is_some_and(|d| d <= now) || self.ended(e.job);
                if wake {
                    woken.push(e.waker.clone());
                }
                !wake
            });
            let next = st
                .pending
                .values()
                .filter_map(|e| e.due)
                .min()
                .map_or(now + LIVENESS_STEP, |d| d.min(now + LIVENESS_STEP));
            let changes = st.changes;
            drop(st);
            for w in woken {
                w.wake();
            }
            // Asleep away from a CPU where a worker runs a task (`jobs::cpus`): woken
            // there, it would wait behind that task.
            ended_event.wait_until_spinning_while(
                Duration::ZERO,
                self.control.relay(),
                Some(next),
                || {
                    let st = self.lock();
                    (st.stop
                        || st.changes != changes
                        || st.pending.values().any(|e| self.ended(e.job)))
                    .then_some(())
                },
            );
        }
    }
}
