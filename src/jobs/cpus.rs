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
//! The records are hints: a process may have moved since, and the client's word holds
//! the last waiting client thread's CPU. A wrong hint costs a sleep where a spin would
//! have done, or a spin where a sleep would have been better, never a lost wake-up: the
//! futex protocol is the same either way.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::futex::{Spin, SpinPolicy};
use crate::jobs::table::Control;

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
        Presence { control: self, me }
    }
}

/// A waiter's [`SpinPolicy`]: [`Control::spin_advice`] between rounds, its record marked
/// asleep while it sleeps. A client's record is cleared when its wait ends.
pub(crate) struct Presence<'a> {
    control: &'a Control,
    me: Peer,
}

impl SpinPolicy for Presence<'_> {
    fn advice(&mut self) -> Spin {
        self.control.spin_advice(self.me)
    }

    fn sleeping(&mut self, asleep: bool) {
        if asleep {
            // Relaxed: a hint. A process asleep needs no CPU; its record still says
            // where it sleeps, for a worker that may wake a client from there
            // (`jobs::watch`), also when it never spun (and so never noted its CPU).
            self.control.note_cpu(self.me);
            self.control
                .cpu_record(self.me)
                .fetch_or(ASLEEP, Ordering::Relaxed);
        } else {
            self.control.note_cpu(self.me);
        }
    }
}

impl Drop for Presence<'_> {
    fn drop(&mut self) {
        if self.me == Peer::Client {
            // Relaxed: a hint; a client that no longer waits needs no worker to make way.
            self.control
                .cpu_record(Peer::Client)
                .store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::table::with_test_control;

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
}
