//! Which CPU each of the pool's processes last ran on: a hint that tells a spinning
//! waiter to make way for a process of the pool that needs its CPU.
//!
//! A waiter spins (rather than sleeps) so that a hand-off from a process running on
//! *another* CPU takes well under a microsecond. When the operating system has put the
//! waiter on the same CPU as a process it waits for (a forked worker starts beside its
//! parent, and a woken process is placed near its waker), every round spun is taken from
//! that process, and the kernel sees no reason to move either of them: a client and a
//! single worker that landed on one CPU took 75 us per tiny job, each spinning out its
//! budget before the other ran, against 2.5 us when they ran apart, and which of the two
//! a launch got was chance.
//!
//! So each process records the CPU it runs on (`sched_getcpu`, a few nanoseconds through
//! the vDSO) in its row of the worker table or, for a client waiting on a job, in one word
//! of the control header: a worker when it joins a job and while it spins, a client while
//! it waits. A process marks its record asleep while it sleeps on a futex (and a client
//! clears its word when it stops waiting): it needs no CPU then. A spinner that finds
//! another *awake* process of the pool recorded on its own CPU is keeping that process
//! off the CPU (or the record is stale), so it stops spinning and sleeps
//! ([`Spin::Stop`]): the other process runs at once, and when the spinner is woken the
//! kernel places it on an idle CPU if there is one, which undoes the bad placement.
//!
//! ## A client does not sleep beside other work
//!
//! A client that must sleep on a CPU where a worker runs a task of *another* job (a
//! service's long request, while the client waits for a short one) used to be woken
//! there too: the kernel queued it behind that task, which it does not preempt before
//! its time slice ends, with the other CPU idle. Traced on the reference 2-vCPU VM (a
//! 10 us job submitted beside a 100 ms one, the bench's W6b): the woken client waited
//! 1-4.4 ms in 4-10 of 60-100 samples, against 50-70 us otherwise. So a client about to
//! sleep there leaves that CPU first: it takes the CPU out of its thread's CPU mask for
//! the sleep (the kernel moves it at once) and puts the mask back when it wakes, unless
//! something else changed the mask meanwhile. A thread allowed on one CPU only stays.
//! Tasks of the client's own job, and workers between jobs, are no reason to move: the
//! job waited for runs there, or is about to. The pool's async waiter thread, which
//! sleeps until some awaited job ends and never spins, leaves a CPU where a worker runs
//! any job's task ([`Relay`]). Measured (scratch drivers of W6b's shape, 100 samples a
//! launch, 3 launches): blocking waits over 1 ms 8 / 11 / 3 before, 0 / 0 / 0 after;
//! awaited, 5 / 7 / 9 before, 3 / 3 / 5 after (the runtime's own thread, which the
//! waiter wakes, is the user's and stays where it is).
//!
//! The records are hints: a process may have moved since, and the client's word holds
//! the last waiting client thread's CPU. A wrong hint costs a sleep where a spin would
//! have done, or a spin where a sleep would have been better, never a lost wake-up: the
//! futex protocol is the same either way.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::futex::{Spin, SpinPolicy};
use crate::jobs::table::Control;
use crate::jobs::JobId;
use crate::sys::process;

/// Set in a record while its process sleeps on a futex.
const ASLEEP: u32 = 1 << 31;

/// Who is spinning (or running): a client thread, or worker row `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    Client,
    Worker(usize),
}

impl Control {
    fn cpu_record(&self, who: Peer) -> &AtomicU32 {
        match who {
            Peer::Client => &self.header().client_cpu,
            Peer::Worker(i) => &self.worker(i).cpu,
        }
    }

    /// Records that `me` is awake on the CPU it runs on now (CPU number + 1; nothing is
    /// written when the record already says so, so its cache line stays shared) and
    /// returns that value, 0 if the CPU is unknown.
    pub(crate) fn note_cpu(&self, me: Peer) -> u32 {
        let Some(cpu) = crate::sys::process::current_cpu() else {
            return 0;
        };
        let rec = self.cpu_record(me);
        // Relaxed: a hint (module docs); nothing else is published through it.
        if rec.load(Ordering::Relaxed) != cpu + 1 {
            rec.store(cpu + 1, Ordering::Relaxed);
        }
        cpu + 1
    }

    /// How a spinning `me` goes on: [`Spin::Stop`] if another awake process of the pool
    /// was last seen on the CPU `me` runs on, else [`Spin::On`]. Records `me` as awake
    /// there.
    pub(crate) fn spin_advice(&self, me: Peer) -> Spin {
        let cpu = self.note_cpu(me);
        if cpu == 0 {
            return Spin::On;
        }
        // Relaxed: hints, as above. An asleep record has `ASLEEP` set, so it never equals
        // `cpu` (at most 2^31 - 1).
        let beside = |who: Peer| who != me && self.cpu_record(who).load(Ordering::Relaxed) == cpu;
        if beside(Peer::Client) || (0..self.entries()).any(|i| beside(Peer::Worker(i))) {
            Spin::Stop
        } else {
            Spin::On
        }
    }

    /// Whether the client's record says it sleeps on the CPU a [`note_cpu`] call
    /// returned `cpu` for (CPU number + 1). A hint, as every record.
    ///
    /// [`note_cpu`]: Control::note_cpu
    pub(crate) fn client_asleep_on(&self, cpu: u32) -> bool {
        // Relaxed: a hint (module docs); `jobs::watch` decides nothing else from it.
        self.cpu_record(Peer::Client).load(Ordering::Relaxed) == cpu | ASLEEP
    }

    /// The spin policy of `me` waiting on an event (see the module docs).
    pub(crate) fn presence(&self, me: Peer) -> Presence<'_> {
        Presence {
            control: self,
            me,
            waits_for: None,
            away: SleepAway::default(),
        }
    }

    /// The spin policy of a client waiting for top-level job `job`: [`presence`], and
    /// a sleep away from a CPU where a worker runs other work (module docs, "A client
    /// does not sleep beside other work").
    ///
    /// [`presence`]: Control::presence
    pub(crate) fn client_presence(&self, job: JobId) -> Presence<'_> {
        Presence {
            control: self,
            me: Peer::Client,
            waits_for: Some(job),
            away: SleepAway::default(),
        }
    }

    /// Whether a worker recorded awake on `cpu` (CPU number + 1) is inside a job tree
    /// that is still running, other than `job`'s (any, for `None`): busy with work that
    /// the waiter does not wait for.
    fn busy_elsewhere_on(&self, cpu: u32, job: Option<JobId>) -> bool {
        (0..self.entries()).any(|i| {
            let w = self.worker(i);
            // Relaxed: hints (module docs); a stale one costs one move or one missed.
            if w.cpu.load(Ordering::Relaxed) != cpu || w.depth.load(Ordering::Relaxed) == 0 {
                return false;
            }
            let Some(other) = JobId::unpack(w.stack[0].load(Ordering::Relaxed)) else {
                return false;
            };
            // A worker still recorded in a job that has ended (descheduled before it
            // left it, as the one beside a client often is when the client wakes) is
            // about to look for work, which may be ours.
            Some(other) != job
                && self
                    .try_slot(other.slot as usize)
                    .is_some_and(|s| s.is_active_job(other.gen))
        })
    }
}

/// A waiter's [`SpinPolicy`]: [`Control::spin_advice`] between rounds, its record marked
/// asleep while it sleeps. A client's record is cleared when its wait ends.
pub(crate) struct Presence<'a> {
    control: &'a Control,
    me: Peer,
    /// The job a client waits for.
    waits_for: Option<JobId>,
    away: SleepAway,
}

impl SpinPolicy for Presence<'_> {
    fn advice(&mut self) -> Spin {
        self.control.spin_advice(self.me)
    }

    fn sleeping(&mut self, asleep: bool) {
        if asleep {
            if let Some(job) = self.waits_for {
                let cpu = self.control.note_cpu(self.me);
                self.away.leave(self.control, cpu, Some(job));
            }
            // Relaxed: a hint. A process asleep needs no CPU; its record still says
            // where it sleeps, for a worker that may wake a client from there
            // (`jobs::watch`), also when it never spun (and so never noted its CPU).
            self.control.note_cpu(self.me);
            self.control
                .cpu_record(self.me)
                .fetch_or(ASLEEP, Ordering::Relaxed);
        } else {
            self.away.come_back();
            self.control.note_cpu(self.me);
        }
    }
}

impl Drop for Presence<'_> {
    fn drop(&mut self) {
        // `away` comes back when dropped.
        if self.me == Peer::Client {
            // Relaxed: a hint; a client that no longer waits needs no worker to make way.
            self.control
                .cpu_record(Peer::Client)
                .store(0, Ordering::Relaxed);
        }
    }
}

/// A waiting thread's move off a CPU where a worker runs other work, for one sleep
/// (module docs, "A client does not sleep beside other work"); undone when dropped.
#[derive(Default)]
struct SleepAway(Option<process::Moved>);

impl SleepAway {
    /// Leaves CPU `cpu` (number + 1, 0: unknown) for the coming sleep if a worker there
    /// runs a job other than `waits_for` (any job, for `None`).
    fn leave(&mut self, control: &Control, cpu: u32, waits_for: Option<JobId>) {
        if cpu != 0 && self.0.is_none() && control.busy_elsewhere_on(cpu, waits_for) {
            self.0 = process::leave_cpu(cpu - 1);
        }
    }

    /// Gives the thread its CPU mask back after the sleep.
    fn come_back(&mut self) {
        if let Some(moved) = self.0.take() {
            moved.restore();
        }
    }
}

impl Drop for SleepAway {
    fn drop(&mut self) {
        self.come_back();
    }
}

/// The [`SpinPolicy`] of the pool's async waiter thread (`pool::waiter`), which never
/// spins and only passes wakes on: it sleeps away from a CPU where a worker runs any
/// job's task, as a client does (module docs), since every job it waits for runs on
/// another CPU than the one it would be woken on there.
pub(crate) struct Relay<'a> {
    control: &'a Control,
    away: SleepAway,
}

impl Control {
    /// The async waiter thread's [`Relay`] policy.
    pub(crate) fn relay(&self) -> Relay<'_> {
        Relay {
            control: self,
            away: SleepAway::default(),
        }
    }
}

impl SpinPolicy for Relay<'_> {
    fn advice(&mut self) -> Spin {
        Spin::Stop
    }

    fn sleeping(&mut self, asleep: bool) {
        if asleep {
            let cpu = process::current_cpu().map_or(0, |c| c + 1);
            self.away.leave(self.control, cpu, None);
        } else {
            self.away.come_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::table::{publish_test_job, with_test_control};

    #[test]
    fn a_spinner_stops_only_for_an_awake_process_recorded_on_its_cpu() {
        with_test_control(2, 8 << 20, spinners_stop_in);
    }

    fn spinners_stop_in(control: &Control) {
        let Some(cpu) = crate::sys::process::current_cpu() else {
            return; // no CPU numbers on this system: every spinner spins on
        };
        let record = |w: usize| control.worker(w).cpu.load(Ordering::Relaxed);
        // Nobody else recorded yet: spin on; the spinner's own record is written.
        assert_eq!(control.spin_advice(Peer::Worker(0)), Spin::On);
        assert_eq!(record(0), cpu + 1);
        // A client seen on another CPU is no reason to stop.
        control
            .header()
            .client_cpu
            .store(cpu + 2, Ordering::Relaxed);
        assert_eq!(control.spin_advice(Peer::Worker(0)), Spin::On);
        // An awake worker on ours is, for a worker and for the client alike...
        control.worker(1).cpu.store(cpu + 1, Ordering::Relaxed);
        assert_eq!(control.spin_advice(Peer::Worker(0)), Spin::Stop);
        {
            let mut client = control.presence(Peer::Client);
            assert_eq!(client.advice(), Spin::Stop);
            assert_eq!(control.header().client_cpu.load(Ordering::Relaxed), cpu + 1);
            // ...and a waiting client on ours stops worker 1 too.
            assert_eq!(control.spin_advice(Peer::Worker(1)), Spin::Stop);
            // Asleep, the client stops nobody, and its record says where it sleeps.
            client.sleeping(true);
            assert_eq!(
                control.header().client_cpu.load(Ordering::Relaxed),
                (cpu + 1) | ASLEEP
            );
            assert!(control.client_asleep_on(cpu + 1));
            assert!(!control.client_asleep_on(cpu + 2));
            client.sleeping(false);
            assert!(!control.client_asleep_on(cpu + 1));
            assert_eq!(control.header().client_cpu.load(Ordering::Relaxed), cpu + 1);
        }
        // A client that stopped waiting is forgotten.
        assert_eq!(control.header().client_cpu.load(Ordering::Relaxed), 0);
        // A worker asleep on our CPU needs no CPU: spin on.
        let mut one = control.presence(Peer::Worker(1));
        one.sleeping(true);
        assert_eq!(record(1), (cpu + 1) | ASLEEP);
        assert_eq!(control.spin_advice(Peer::Worker(0)), Spin::On);
        one.sleeping(false);
        assert_eq!(record(1), cpu + 1);
        assert_eq!(control.spin_advice(Peer::Worker(0)), Spin::Stop);
    }

    /// Job 7 published in `control`'s slot 0, running.
    fn running_job(control: &Control) -> JobId {
        publish_test_job(control, 7);
        JobId { slot: 0, gen: 7 }
    }

    #[test]
    fn a_client_sleeps_away_only_from_a_worker_running_another_live_job() {
        with_test_control(2, 8 << 20, |control| {
            let other = running_job(control);
            let mine = JobId { slot: 1, gen: 3 };
            let w = control.worker(1);
            let cpu = 5; // CPU 4, as recorded (+ 1)
            w.cpu.store(cpu, Ordering::Relaxed);
            // A worker between jobs is about to look for ours: no reason to move.
            assert!(!control.busy_elsewhere_on(cpu, Some(mine)));
            busy_in(control, 1, cpu, other);
            assert!(control.busy_elsewhere_on(cpu, Some(mine)));
            // Another CPU, or asleep: nobody in the way.
            assert!(!control.busy_elsewhere_on(cpu + 1, Some(mine)));
            w.cpu.store(cpu | ASLEEP, Ordering::Relaxed);
            assert!(!control.busy_elsewhere_on(cpu, Some(mine)));
            w.cpu.store(cpu, Ordering::Relaxed);
            // Running the job the client waits for: the client stays beside it.
            assert!(!control.busy_elsewhere_on(cpu, Some(other)));
            // Still recorded in a job that has ended (the slot holds a later one).
            w.stack[0].store(JobId { slot: 0, gen: 6 }.pack(), Ordering::Relaxed);
            assert!(!control.busy_elsewhere_on(cpu, Some(mine)));
        });
    }

    /// Runs `f` on a thread of its own (its affinity changes while it "sleeps") with a
    /// control block, the thread's CPU mask, its CPU, and whether the mask allows
    /// another; nothing if the system has no CPU numbers.
    fn on_own_thread(f: impl FnOnce(&Control, nix::sched::CpuSet, u32, bool) + Send) {
        std::thread::scope(|s| {
            s.spawn(|| {
                with_test_control(2, 8 << 20, |control| {
                    let me = nix::unistd::Pid::from_raw(0);
                    let all = nix::sched::sched_getaffinity(me).unwrap();
                    let Some(here) = process::current_cpu() else {
                        return; // no CPU numbers on this system
                    };
                    let others = process::allowed_cpus().iter().any(|&c| c != here as usize);
                    f(control, all, here, others);
                });
            });
        });
    }

    /// The calling thread's CPU mask.
    fn mask() -> nix::sched::CpuSet {
        nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap()
    }

    /// Worker row `w` recorded awake on `cpu` (number + 1), inside `job`.
    fn busy_in(control: &Control, w: usize, cpu: u32, job: JobId) {
        let w = control.worker(w);
        w.cpu.store(cpu, Ordering::Relaxed);
        w.stack[0].store(job.pack(), Ordering::Relaxed);
        w.depth.store(1, Ordering::Relaxed);
    }

    #[test]
    fn a_client_beside_other_work_sleeps_elsewhere_and_comes_back_with_its_mask() {
        on_own_thread(|control, all, here, others| {
            let other = running_job(control);
            busy_in(control, 1, here + 1, other);
            let mut client = control.client_presence(JobId { slot: 1, gen: 3 });
            client.sleeping(true);
            let moved = process::current_cpu() != Some(here);
            assert_eq!(moved, others, "left CPU {here} if it may run elsewhere");
            // Its record says where it sleeps.
            let rec = control.header().client_cpu.load(Ordering::Relaxed);
            assert_eq!(rec & ASLEEP, ASLEEP);
            assert_eq!(rec & !ASLEEP, process::current_cpu().unwrap() + 1);
            client.sleeping(false);
            assert_eq!(mask(), all);
            // Beside a task of its own job it stays.
            let mut client = control.client_presence(other);
            client.sleeping(true);
            assert_eq!(mask(), all);
            client.sleeping(false);
        });
    }

    #[test]
    fn the_async_waiter_sleeps_away_from_any_jobs_task_and_comes_back() {
        on_own_thread(|control, all, here, others| {
            // Nobody busy on its CPU: it stays.
            let mut relay = control.relay();
            relay.sleeping(true);
            assert_eq!(mask(), all);
            relay.sleeping(false);
            // A worker in a running job there, whichever: it leaves.
            busy_in(control, 0, here + 1, running_job(control));
            relay.sleeping(true);
            assert_eq!(process::current_cpu() != Some(here), others);
            relay.sleeping(false);
            assert_eq!(mask(), all);
            // Dropped while away, it comes back too.
            let mut relay = control.relay();
            relay.sleeping(true);
            drop(relay);
            assert_eq!(mask(), all);
        });
    }
}
