//! The parties of a [`Barrier`](super::Barrier): who they are, which round each last
//! arrived in, and whether one died, so that a waiter tells a dead party from a slow
//! one instead of waiting for it forever.
//!
//! ## Enrollment
//!
//! A barrier handle enrolls at its first wait: it claims a free entry of the table (a
//! CAS of the entry's pid from 0 to its process's pid) and keeps it until it is dropped
//! (the drop gives the entry back, in the process that enrolled it only). A process that
//! dies never drops its handles, so its entries stay, naming a dead pid: that is what a
//! waiter looks for. Before each arrival the party stores the round it arrives in
//! (`generation + 1`, so that 0 means "not arrived yet").
//!
//! ## Who is missing
//!
//! A waiter of round `g` that has slept [`CHECK_PERIOD`] looks at every enrolled entry
//! but its own: one that has not arrived in `g` and whose process is gone is a party that
//! will never arrive. The waiter records its pid in `broken` (the first finder wins) and
//! notifies the barrier's event; every waiter of the round then ends with
//! [`Error::BarrierBroken`](crate::Error::BarrierBroken), and so does every later wait:
//! the barrier stays broken (build a new one). A party that died *while waiting* was
//! counted in its round, which therefore still completes; it is found missing in the
//! next round.
//!
//! Limits, by design: only the first [`TRACKED`] handles are tracked (a barrier of more
//! parties still works, but its untracked parties' deaths are not detected); a party
//! that dies before its first wait was never enrolled and cannot be told from one that
//! has not started (bound those waits with `wait_timeout`); a dead party's pid reused by
//! an unrelated process looks alive. All of these fall back to the old behaviour
//! (waiting), never to a false alarm among live parties.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

/// Most handles whose deaths a barrier can detect.
pub(crate) const TRACKED: usize = 64;
/// How long a waiter sleeps between looks for a dead party.
pub(crate) const CHECK_PERIOD: Duration = Duration::from_millis(20);

/// One enrolled handle.
#[repr(C)]
struct Party {
    /// The enrolling process (0: a free entry).
    pid: AtomicI32,
    /// `generation + 1` of the round it last arrived in (0: none yet).
    round: AtomicU32,
}

/// The table of a barrier's parties, in its block (zeroed at creation).
#[repr(C)]
pub(crate) struct Parties {
    entries: [Party; TRACKED],
    /// The pid of a party found dead (0: none): the barrier is broken.
    broken: AtomicI32,
}

impl Parties {
    pub(crate) fn new() -> Parties {
        Parties {
            entries: std::array::from_fn(|_| Party {
                pid: AtomicI32::new(0),
                round: AtomicU32::new(0),
            }),
            broken: AtomicI32::new(0),
        }
    }

    /// Claims a free entry for process `pid`; `None` if all [`TRACKED`] are taken.
    pub(crate) fn enroll(&self, pid: i32) -> Option<usize> {
        (0..TRACKED).find(|&i| {
            let e = &self.entries[i];
            // SeqCst: enrollment, arrivals and the waiters' scans are few and slow-path;
            // one total order keeps the reasoning of the module docs local.
            e.pid.load(Ordering::SeqCst) == 0
                && e.pid
                    .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
        })
    }

    /// Gives entry `i` back (the handle that enrolled it in process `pid` is dropped).
    pub(crate) fn leave(&self, i: usize, pid: i32) {
        if let Some(e) = self.entries.get(i) {
            let _ = e
                .pid
                .compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// Records that entry `i` arrives in round `generation`.
    pub(crate) fn arriving(&self, i: usize, generation: u32) {
        if let Some(e) = self.entries.get(i) {
            // SeqCst: see `enroll`; stored before the arrival's own transition.
            e.round.store(generation.wrapping_add(1), Ordering::SeqCst);
        }
    }

    /// The pid of a party (other than entry `me`) that has not arrived in round
    /// `generation` and whose process is gone.
    pub(crate) fn dead_absentee(&self, generation: u32, me: Option<usize>) -> Option<i32> {
        let round = generation.wrapping_add(1);
        (0..TRACKED).filter(|&i| Some(i) != me).find_map(|i| {
            let e = &self.entries[i];
            let pid = e.pid.load(Ordering::SeqCst);
            (pid != 0
                && e.round.load(Ordering::SeqCst) != round
                && !crate::sys::process::is_alive(pid))
            .then_some(pid)
        })
    }

    /// The pid of the dead party that broke the barrier, if one did.
    pub(crate) fn broken(&self) -> Option<i32> {
        let pid = self.broken.load(Ordering::SeqCst);
        (pid != 0).then_some(pid)
    }

    /// Marks the barrier broken by the death of `pid` (the first finder's pid stays).
    pub(crate) fn mark_broken(&self, pid: i32) {
        let _ = self
            .broken
            .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that exists in no pid namespace (above `pid_max`'s limit).
    const NO_SUCH_PID: i32 = 1 << 30;

    #[test]
    fn an_absent_dead_party_is_found_and_an_arrived_or_living_one_is_not() {
        let p = Parties::new();
        let me = p.enroll(std::process::id() as i32).unwrap();
        let dead = p.enroll(NO_SUCH_PID).unwrap();
        assert_ne!(me, dead);
        p.arriving(me, 5);
        assert_eq!(p.dead_absentee(5, Some(me)), Some(NO_SUCH_PID));
        p.arriving(dead, 5);
        assert_eq!(p.dead_absentee(5, Some(me)), None, "it arrived: counted");
        assert_eq!(p.dead_absentee(6, Some(me)), Some(NO_SUCH_PID));
        p.leave(dead, NO_SUCH_PID);
        assert_eq!(
            p.dead_absentee(6, Some(me)),
            None,
            "a handle that left is no party"
        );
        assert_eq!(p.broken(), None);
        p.mark_broken(7);
        p.mark_broken(8);
        assert_eq!(p.broken(), Some(7), "the first finder's pid stays");
    }

    #[test]
    fn the_table_fills_up() {
        let p = Parties::new();
        for _ in 0..TRACKED {
            assert!(p.enroll(1).is_some());
        }
        assert_eq!(p.enroll(1), None);
    }
}
