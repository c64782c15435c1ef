//! Waking a sleeping client from its own CPU.
//!
//! A client whose job outlasts its spin sleeps on the job's event, and the worker that
//! finishes the job's last items wakes it. On 2 CPUs a client shares its CPU with one of
//! the two workers, which runs while the client sleeps, and which of the two workers
//! finishes last is chance. When it is the worker on the *other* CPU, the wake-up
//! crosses CPUs: traced with the kernel's scheduler events on the reference 2-vCPU VM
//! (W3, 100,000 tiny items on 2 workers), 7-8 us passed between the finisher's futex
//! wake and the client being queued on its CPU, and 4-7 us more until the worker
//! spinning there was preempted, against 1-2 us in all when the wake came from the
//! client's own CPU; jobs ran at 36-38 us or at 47-50 us, block by block, by which
//! worker happened to finish last.
//!
//! So a worker that has run out of chunks of a top-level job while the job's client
//! sleeps on the worker's own CPU *watches* the job's end instead of going idle: it
//! registers in the job header's `end_watch` word and spins (no longer than its idle
//! spin, and only while no other job turns up) until the job has ended, then wakes the
//! client itself, from the client's CPU. The finisher, seeing a watcher registered,
//! leaves the wake to it.
//!
//! # Protocol
//!
//! `end_watch` holds 0 (nobody watches), a watcher's token `(gen << 16) | (row + 1)`
//! (the job's generation and the watcher's worker row), or the token with [`WAKES`] set:
//! the watcher has seen the end and wakes the client. Every access is SeqCst.
//!
//! * The watcher registers with a CAS from 0 to its token, *then* looks at the job's
//!   state; the finisher moves the state to COMPLETE, issues a SeqCst fence, *then*
//!   reads `end_watch`. Whichever order the two come in, one of them sees the other:
//!   the watcher sees the end (and wakes the client), or the finisher sees the watcher
//!   (and leaves the wake to it), or both, and then the rest of the protocol decides.
//! * The watcher that sees the end CASes its token to token | `WAKES` and, if that
//!   succeeds, wakes the client. A watcher that stops watching first (another job to
//!   run, its spin used up, a process of the pool needing its CPU) CASes its token back
//!   to 0, and wakes nobody.
//! * The finisher that reads a token waits a moment ([`HANDOFF`]) for the watcher to
//!   answer. `WAKES`: done, the watcher wakes the client. 0: the watcher left, the
//!   finisher wakes it. Still the token (the watcher was descheduled, or killed): the
//!   finisher CASes the token to 0 and wakes the client itself, unless the CAS fails
//!   because the watcher set `WAKES` meanwhile.
//!
//! Exactly one of the two wakes the client, except that both may, harmlessly, when the
//! watcher registers after the finisher's read. A watcher killed between setting
//! `WAKES` and its wake (a few instructions) leaves the client asleep until its wait's
//! next timeout, at which it sees the end by itself (`pool::handle`'s liveness step).
//! A stale token (a watcher of an earlier job in the slot) never matches: tokens carry
//! the generation, and claiming a slot for a new job clears the word.

use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use super::cpus::Peer;
use super::{Control, JobSlot};
use crate::futex::Spin;
use crate::sys::process;

/// Set in `end_watch` by a watcher that has seen the job end and wakes its client.
const WAKES: u64 = 1 << 15;

/// Worker rows that fit a token's low bits beside [`WAKES`].
const _: () = assert!((super::MAX_WORKERS as u64) < WAKES);

/// How long a finisher waits for a registered watcher to answer before it wakes the
/// client itself: a watcher polls the job's state every few dozen nanoseconds, so only
/// one that lost its CPU (or died) takes longer.
const HANDOFF: Duration = Duration::from_micros(2);

/// The token of worker row `w` watching job `gen`.
fn token(gen: u64, w: usize) -> u64 {
    (gen << 16) | (w as u64 + 1)
}

/// What ended a watch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Watched {
    /// The job ended and this watcher woke its client.
    Woke,
    /// The watcher stopped first (or the finisher took the wake back); nothing to do.
    Left,
}

impl JobSlot {
    /// Whether worker row `w`, out of chunks of job `gen`, should watch its end for the
    /// job's client: a top-level job still running, whose client sleeps on the CPU `w`
    /// runs on (module docs), and idle workers that spin at all (`spin` non-zero).
    pub(crate) fn worth_watching(
        &self,
        control: &Control,
        gen: u64,
        w: usize,
        spin: Duration,
    ) -> bool {
        if spin.is_zero() || self.parent().is_some() || !self.is_active_job(gen) {
            return false;
        }
        let cpu = control.note_cpu(Peer::Worker(w));
        cpu != 0 && control.client_asleep_on(cpu)
    }

    /// Worker row `w` watches job `gen`'s end and wakes the job's client when it comes
    /// (module docs), spinning no longer than `spin`, and only while `leave` (asked
    /// about once a microsecond: other work for the worker?) says no and no other
    /// process of the pool is recorded on its CPU. `None` if another worker watches.
    pub(crate) fn watch_end(
        &self,
        control: &Control,
        gen: u64,
        w: usize,
        spin: Duration,
        mut leave: impl FnMut() -> bool,
    ) -> Option<Watched> {
        let mine = token(gen, w);
        self.end_watch
            .compare_exchange(0, mine, Ordering::SeqCst, Ordering::SeqCst)
            .ok()?;
        let until = process::monotonic_ns() + spin.as_nanos() as u64;
        let mut looks = 0u32;
        loop {
            if !self.is_active_job(gen) {
                // Ended (or failed): ours to wake unless the finisher took it back.
                return Some(
                    match self.end_watch.compare_exchange(
                        mine,
                        mine | WAKES,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    ) {
                        Ok(_) => {
                            self.event.notify();
                            Watched::Woke
                        }
                        Err(_) => Watched::Left,
                    },
                );
            }
            for _ in 0..8 {
                std::hint::spin_loop();
            }
            looks = looks.wrapping_add(1);
            // Other work every 4th look (8 `PAUSE`s a look: 0.2 us on the reference
            // VM), other processes' records and the clock every 16th: other work, a
            // process of the pool wanting this CPU, or the spin used up ends the watch.
            if looks % 4 == 0
                && (leave()
                    || looks % 16 == 0
                        && (control.spin_advice(Peer::Worker(w)) == Spin::Stop
                            || process::monotonic_ns() >= until))
            {
                // Leave. A failed CAS means the finisher took the wake back: nothing
                // to do either way.
                let _ =
                    self.end_watch
                        .compare_exchange(mine, 0, Ordering::SeqCst, Ordering::SeqCst);
                return Some(Watched::Left);
            }
        }
    }

    /// Wakes the job's owner on the job's event, or leaves that to a worker watching the
    /// end from the owner's CPU (module docs). Called once the job has moved to COMPLETE
    /// by the caller's own transition.
    pub(crate) fn wake_owner_after_finish(&self) {
        if self.parent().is_some() {
            // Nobody watches a nested job (its owner is a task): no fence to pay, which
            // was a fifth of a small nested job's cost.
            self.event.notify();
            return;
        }
        // The finisher's side of the store-buffer pattern: the COMPLETE transition
        // (AcqRel) before the SeqCst read of `end_watch`.
        fence(Ordering::SeqCst);
        let seen = self.end_watch.load(Ordering::SeqCst);
        let gen = self.gen();
        let watcher = seen & (WAKES - 1);
        if seen == 0 || watcher == 0 || seen >> 16 != gen & (u64::MAX >> 16) {
            self.event.notify();
            return;
        }
        if seen & WAKES != 0 {
            return;
        }
        let deadline = process::monotonic_ns() + HANDOFF.as_nanos() as u64;
        loop {
            for _ in 0..8 {
                std::hint::spin_loop();
            }
            let now = self.end_watch.load(Ordering::SeqCst);
            if now == seen | WAKES {
                return;
            }
            if now != seen {
                // The watcher left: the wake is ours.
                self.event.notify();
                return;
            }
            if process::monotonic_ns() >= deadline {
                // Take the wake back, unless the watcher set `WAKES` meanwhile.
                if self
                    .end_watch
                    .compare_exchange(seen, 0, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    self.event.notify();
                }
                return;
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::jobs::table::{publish_test_job, with_test_control};

    fn with_control<R>(f: impl FnOnce(&Control) -> R) -> R {
        with_test_control(2, 8 << 20, f)
    }

    #[test]
    fn tokens_keep_the_generation_and_the_row_apart() {
        assert_eq!(token(1, 0), (1 << 16) | 1);
        assert_eq!(token(7, 255) & (WAKES - 1), 256);
        assert_eq!(token(7, 255) >> 16, 7);
        assert_eq!(token(7, 255) & WAKES, 0);
    }

    #[test]
    fn a_finisher_wakes_the_owner_itself_when_nobody_watches_or_the_watcher_is_stale() {
        with_control(|control| {
            let slot = control.slot(0);
            let gen = slot.gen();
            let before = slot.event.sequence();
            slot.wake_owner_after_finish();
            assert_eq!(slot.event.sequence(), before.wrapping_add(1));
            // A watcher of another generation is not this job's.
            slot.end_watch
                .store(token(gen.wrapping_add(1), 1), Ordering::SeqCst);
            slot.wake_owner_after_finish();
            assert_eq!(slot.event.sequence(), before.wrapping_add(2));
        });
    }

    #[test]
    fn a_finisher_leaves_the_wake_to_a_watcher_that_answered_and_takes_back_one_that_did_not() {
        with_control(|control| {
            let slot = control.slot(0);
            let gen = slot.gen();
            let before = slot.event.sequence();
            // The watcher already said it wakes the owner: the finisher does not.
            slot.end_watch
                .store(token(gen, 1) | WAKES, Ordering::SeqCst);
            slot.wake_owner_after_finish();
            assert_eq!(slot.event.sequence(), before);
            // A watcher that never answers: after `HANDOFF` the finisher takes the wake
            // back (the word goes back to 0, so a late watcher's CAS fails).
            slot.end_watch.store(token(gen, 1), Ordering::SeqCst);
            let t = std::time::Instant::now();
            slot.wake_owner_after_finish();
            assert!(t.elapsed() >= HANDOFF);
            assert_eq!(slot.event.sequence(), before.wrapping_add(1));
            assert_eq!(slot.end_watch.load(Ordering::SeqCst), 0);
        });
    }

    /// Worker row 1 watching job 7 in slot 0 on a thread pinned to its CPU, with the
    /// client recorded asleep on that CPU (as a client's wait records itself), while
    /// this thread finishes the job once the watcher has registered (or, if `leave`
    /// says so at once, once it has left). Returns what the watch returned and how many
    /// times the job's event was notified.
    fn watch_and_finish(leave: bool) -> (Option<Watched>, u32) {
        /// Raises its flag when dropped: also when the watcher's thread panics.
        struct Raise<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Raise<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let (watcher_cpu, finisher_cpu) = two_cpus();
        let all = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
        process::pin_to(finisher_cpu);
        let r = with_control(|control| {
            let slot = publish_test_job(control, 7);
            let before = slot.event.sequence();
            let registered = std::sync::atomic::AtomicBool::new(false);
            let watched = std::thread::scope(|s| {
                let watcher = s.spawn(|| {
                    let raise = Raise(&registered);
                    process::pin_to(watcher_cpu);
                    let mut client = control.presence(Peer::Client);
                    crate::futex::SpinPolicy::sleeping(&mut client, true);
                    assert!(slot.worth_watching(control, 7, 1, Duration::from_secs(5)));
                    let mut raise = Some(raise);
                    // `leave` is first asked just after the watcher registered.
                    slot.watch_end(control, 7, 1, Duration::from_secs(5), || {
                        raise.take();
                        leave
                    })
                });
                while !registered.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
                if leave {
                    // Finish only once the watcher has gone.
                    while !watcher.is_finished() {
                        std::thread::yield_now();
                    }
                }
                slot.add_done(1, &crate::futex::Event::new());
                watcher.join().unwrap()
            });
            assert_eq!(slot.state(), crate::jobs::SlotState::Complete);
            (watched, slot.event.sequence().wrapping_sub(before))
        });
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &all).unwrap();
        r
    }

    /// Two CPUs the calling thread may run on: the watcher's and the finisher's (the
    /// same one twice where it may run on one only).
    fn two_cpus() -> (usize, usize) {
        let cpus = process::allowed_cpus();
        (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]))
    }

    /// Exactly one of the two wakes the client: the watcher, as a rule; the finisher
    /// when the watcher did not answer within `HANDOFF` (it lost its CPU to another
    /// process, or shares one with the finisher), taking the wake back.
    #[test]
    fn a_watcher_beside_the_sleeping_client_wakes_it_and_the_finisher_does_not() {
        if process::current_cpu().is_none() {
            return; // no CPU numbers on this system: nobody watches
        }
        let mut woke = 0;
        for round in 0..20 {
            let (watched, notified) = watch_and_finish(false);
            assert_eq!(
                notified, 1,
                "round {round}: exactly one wake-up ({watched:?})"
            );
            match watched {
                Some(Watched::Woke) => woke += 1,
                Some(Watched::Left) => {}
                None => panic!("round {round}: the watcher did not register"),
            }
        }
        let (watcher_cpu, finisher_cpu) = two_cpus();
        if watcher_cpu != finisher_cpu {
            // Each on a CPU of its own, the watcher answers within `HANDOFF` unless
            // another process takes its CPU at that very moment.
            assert!(woke > 0, "the watcher never woke the client in 20 rounds");
        }
    }

    #[test]
    fn a_watcher_that_left_leaves_the_wake_to_the_finisher() {
        if process::current_cpu().is_none() {
            return; // as above
        }
        let (watched, notified) = watch_and_finish(true);
        assert_eq!(watched, Some(Watched::Left));
        assert_eq!(notified, 1, "one wake-up, the finisher's");
    }
}
