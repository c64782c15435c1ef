//! Waiting across processes: a brief spin, then a futex sleep, never a lost wakeup.
//!
//! An [`Event`] is two 32-bit words in shared memory that turn "some condition I can
//! check became true" into a sleep/wake protocol usable between processes:
//!
//! * `seq`, bumped by every [`Event::notify`]; waiters sleep on it with `FUTEX_WAIT`;
//! * `sleepers`, the number of waiters that are (about to be) asleep, so that `notify`
//!   costs no system call when nobody sleeps (the common case while peers spin).
//!
//! ## Protocol
//!
//! Waiter ([`Event::wait_until`]):
//! 1. spin up to the budget, calling `check()`; return as soon as it yields a value;
//! 2. `sleepers += 1` (SeqCst), then `s = seq` (SeqCst), then `check()` once more;
//! 3. `futex_wait(seq, s)`: the kernel sleeps only if `seq` still equals `s`;
//! 4. `sleepers -= 1`, and go back to 2 (spurious wakes, signals and timeouts included).
//!
//! Notifier ([`Event::notify`]), after making the condition true:
//! 1. `seq += 1` (SeqCst);
//! 2. if `sleepers > 0` (SeqCst): `futex_wake(seq, all)`.
//!
//! **Why no wakeup is lost.** All four accesses are SeqCst, so they sit in one total
//! order. If the notifier reads `sleepers == 0`, the waiter's increment comes later in
//! that order, hence so does its read of `seq` and its `check()`: the waiter sees the
//! condition (made true before `seq += 1`) and does not sleep. If the notifier reads
//! `sleepers > 0`, it wakes; a waiter that read `seq` before the bump is either already
//! queued (and woken) or finds `seq != s` in the kernel's atomic compare (`EAGAIN`).
//!
//! The spin phase matters on this hardware: a futex wake of a sleeping process on the
//! other CPU costs 25-30 us, a spinning hand-off well under 1 us. The budget is bounded,
//! so an idle waiter costs no CPU once it sleeps.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys::futex;

/// Default spin budget before sleeping on the futex.
pub(crate) const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// `PAUSE`s between two looks at the condition while spinning.
///
/// A look is a few loads of lines the waited-for process writes once (when it makes the
/// condition true), so looking often costs the waiter's CPU only, and the time between
/// looks is what a spinning hand-off adds on average to what it waits for, half a round.
/// A `PAUSE` takes 24.6 ns on the reference VM (Zen 4 under KVM), so a round of 64 took
/// 1.6 us: every job waited up to that long for an idle worker to see it, and its client
/// as long again to see its end (a one-item-per-chunk flat job of 256 items from the
/// client: 3.9 us, against 2.6 us with looks every 8 pauses; W7's depth-4 tree: 7.0
/// against 5.2 us). Where a `PAUSE` takes a few cycles (older Intel cores) a round of 8
/// is a look every few dozen nanoseconds, as in a spin lock.
const LOOK_PAUSES: u32 = 8;

/// `PAUSE`s between two consultations of the spin policy and of the clock (about 1.6 us
/// on the reference VM): the policy may read other processes' records, and the clock
/// bounds the spin, which a look every 64 pauses overran by at most one such round.
const ADVISE_PAUSES: u32 = 64;

// `spun % ADVISE_PAUSES` comes round to 0, also when `spun` wraps.
const _: () = assert!(ADVISE_PAUSES % LOOK_PAUSES == 0 && ADVISE_PAUSES.is_power_of_two());

/// What a spinning waiter does next (see [`Event::wait_until_spinning_while`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spin {
    /// Spin on (yielding now and then past the first microseconds).
    On,
    /// Stop spinning and sleep on the futex.
    Stop,
}

/// How a waiter spins: asked between spin rounds what to do next, and told when the
/// waiter goes to sleep on the futex and when it wakes. Any `FnMut() -> Spin` closure is
/// a policy that only advises.
pub(crate) trait SpinPolicy {
    /// What to do before the next spin round.
    fn advice(&mut self) -> Spin;
    /// Called with `true` right before the waiter sleeps on the futex, with `false`
    /// right after it wakes.
    fn sleeping(&mut self, _asleep: bool) {}
}

impl<F: FnMut() -> Spin> SpinPolicy for F {
    fn advice(&mut self) -> Spin {
        self()
    }
}

/// A sleep/wake point in shared memory. See the module docs for the protocol.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Event {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<Event>() == 8);
const _: () = assert!(std::mem::align_of::<Event>() == 4);

impl Event {
    /// A fresh event (both words zero); also what zeroed shared memory holds.
    pub(crate) const fn new() -> Self {
        Event {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Wakes every waiter. Call it *after* making the awaited condition true.
    ///
    /// Async-signal-safe: two atomic operations and at most one system call.
    pub(crate) fn notify(&self) {
        self.notify_up_to(u32::MAX);
    }

    /// As [`notify`](Event::notify), but wakes at most `count` of the waiters asleep
    /// (at least one if any sleeps and `count > 0`; every spinning waiter sees the
    /// notification anyway).
    pub(crate) fn notify_up_to(&self, count: u32) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            // An error here (EFAULT/EINVAL) would mean our own word is not mapped, which
            // cannot happen while `self` is borrowed; waiters also re-check on timeouts.
            let _ = futex::wake(&self.seq, count);
        }
    }

    /// How many times [`notify`](Event::notify) was called (wrapping), read in the single
    /// total order of SeqCst operations: what a waiter that must not miss a later
    /// notification reads before it lets go of whatever guards the awaited condition.
    pub(crate) fn sequence(&self) -> u32 {
        self.seq.load(Ordering::SeqCst)
    }

    /// How many times [`notify`](Event::notify) was called (wrapping): a hint for a
    /// spinner that wants to notice a notification without sleeping on the event.
    pub(crate) fn notifications(&self) -> u32 {
        // Relaxed: a hint; whoever acts on a change re-reads the condition itself.
        self.seq.load(Ordering::Relaxed)
    }

    /// Wakes the waiters that sleep, without touching `seq` when none does: for a hot
    /// event whose waiters mostly spin, this saves a write to a cache line every process
    /// shares. Call it after making the awaited condition true *with a SeqCst operation
    /// that the waiters' `check` reads with SeqCst* (as the run set's bits are).
    ///
    /// Why no wakeup is lost: the SeqCst fence takes the place of the `seq` bump as the
    /// notifier's barrier. If the load below reads `sleepers == 0`, the fence precedes the
    /// waiter's increment in the single total order, so the waiter's SeqCst re-check
    /// comes later too and sees the condition; otherwise `notify` wakes it as usual.
    pub(crate) fn notify_sleepers(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.notify();
        }
    }

    /// Waits until `check` returns `Some`, spinning for at most `spin` first, then
    /// sleeping; gives up at `deadline` (returning `None`).
    pub(crate) fn wait_until<T>(
        &self,
        spin: Duration,
        deadline: Option<Instant>,
        check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        self.wait_until_spinning_while(spin, || Spin::On, deadline, check)
    }

    /// As [`wait_until`](Event::wait_until), but between spin rounds `policy` says how
    /// to go on: spin on, or stop spinning and sleep ([`Spin::Stop`]: spinning would
    /// only take a CPU from the processes being waited for); it is told when the waiter
    /// sleeps and wakes.
    pub(crate) fn wait_until_spinning_while<T>(
        &self,
        spin: Duration,
        mut policy: impl SpinPolicy,
        deadline: Option<Instant>,
        mut check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        if let Some(v) = check() {
            return Some(v);
        }
        if !spin.is_zero() {
            let spin_end = Instant::now() + spin;
            let mut spun = 0u32;
            loop {
                for _ in 0..LOOK_PAUSES {
                    std::hint::spin_loop();
                }
                if let Some(v) = check() {
                    return Some(v);
                }
                spun = spun.wrapping_add(LOOK_PAUSES);
                if spun % ADVISE_PAUSES != 0 {
                    continue;
                }
                // Rounds of `ADVISE_PAUSES` spun so far.
                let i = spun / ADVISE_PAUSES;
                match policy.advice() {
                    Spin::Stop => break,
                    // Past the first few microseconds, give the CPU away now and then: on
                    // a machine with fewer cores than busy processes, the peer we wait for
                    // may need this very core.
                    Spin::On if i > 16 && i % 4 == 0 => std::thread::yield_now(),
                    Spin::On => {}
                }
                // The clock every round of `ADVISE_PAUSES` (a vDSO read, tens of
                // nanoseconds): such a round takes 1.5-4 us depending on the CPU's pause,
                // so looking every eighth round let a 5 us budget run to 12-30 us, on the
                // CPU a worker was waiting for.
                let now = Instant::now();
                if now >= spin_end || deadline.is_some_and(|d| now >= d) {
                    break;
                }
            }
        }
        self.wait_slow(deadline, &mut policy, check)
    }

    #[cold]
    fn wait_slow<T>(
        &self,
        deadline: Option<Instant>,
        policy: &mut impl SpinPolicy,
        mut check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        loop {
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let seq = self.seq.load(Ordering::SeqCst);
            if let Some(v) = check() {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return Some(v);
            }
            let timeout = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        self.sleepers.fetch_sub(1, Ordering::SeqCst);
                        return None;
                    }
                    Some(d - now)
                }
                None => None,
            };
            // Every outcome (woken, value changed, timed out, interrupted) leads back to a
            // re-check; a hard error cannot be recovered by sleeping, so degrade to a short
            // pause and keep checking.
            policy.sleeping(true);
            if futex::wait(&self.seq, seq, timeout).is_err() {
                std::thread::sleep(Duration::from_micros(100));
            }
            policy.sleeping(false);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn wakes_a_sleeping_waiter() {
        struct Shared {
            ev: Event,
            flag: AtomicBool,
        }
        let s = Arc::new(Shared {
            ev: Event::new(),
            flag: AtomicBool::new(false),
        });
        let s2 = Arc::clone(&s);
        let t = std::thread::spawn(move || {
            s2.ev.wait_until(Duration::ZERO, None, || {
                s2.flag.load(Ordering::SeqCst).then_some(())
            })
        });
        std::thread::sleep(Duration::from_millis(20));
        s.flag.store(true, Ordering::SeqCst);
        s.ev.notify();
        assert_eq!(t.join().unwrap(), Some(()));
    }

    /// `notify_up_to(1)` with two waiters asleep wakes one of them; the other sleeps on
    /// until the next notification (a condition variable's `notify_one`).
    #[test]
    fn notify_up_to_one_wakes_one_sleeper() {
        struct Shared {
            ev: Event,
            flag: AtomicBool,
            returned: std::sync::atomic::AtomicU32,
        }
        let s = Arc::new(Shared {
            ev: Event::new(),
            flag: AtomicBool::new(false),
            returned: std::sync::atomic::AtomicU32::new(0),
        });
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let limit = Some(Instant::now() + Duration::from_secs(20));
                    let r = s.ev.wait_until(Duration::ZERO, limit, || {
                        s.flag.load(Ordering::SeqCst).then_some(())
                    });
                    s.returned.fetch_add(1, Ordering::SeqCst);
                    r
                })
            })
            .collect();
        let both_asleep = Instant::now() + Duration::from_secs(20);
        while s.ev.sleepers.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < both_asleep, "the waiters never slept");
            std::thread::sleep(Duration::from_millis(1));
        }
        // A waiter counts itself a sleeper just before its system call: give both time
        // to be in the kernel (a waiter that is not finds the word changed and returns,
        // which Miri's slow threads showed).
        std::thread::sleep(Duration::from_millis(100));
        s.flag.store(true, Ordering::SeqCst);
        s.ev.notify_up_to(1);
        let one_back = Instant::now() + Duration::from_secs(20);
        while s.returned.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < one_back, "notify_up_to(1) woke nobody");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(s.returned.load(Ordering::SeqCst), 1, "woke more than one");
        s.ev.notify_up_to(1);
        for w in waiters {
            assert_eq!(w.join().unwrap(), Some(()));
        }
    }

    #[test]
    fn deadline_gives_none() {
        let ev = Event::new();
        let start = Instant::now();
        let r: Option<()> = ev.wait_until(
            DEFAULT_SPIN,
            Some(start + Duration::from_millis(10)),
            || None,
        );
        assert!(r.is_none());
        assert!(start.elapsed() >= Duration::from_millis(10));
    }

    #[test]
    fn a_spinner_looks_at_its_condition_eight_times_per_consultation_of_its_policy() {
        // The policy stops the spin at its 5th consultation; from then on the condition
        // holds, so the waiter's first look before it would sleep returns.
        let ev = Event::new();
        let looks = std::cell::Cell::new(0u32);
        let looks_at_stop = std::cell::Cell::new(None);
        let mut advised = 0u32;
        let r = ev.wait_until_spinning_while(
            Duration::from_secs(3600),
            || {
                advised += 1;
                if advised == 5 {
                    looks_at_stop.set(Some(looks.get()));
                    Spin::Stop
                } else {
                    Spin::On
                }
            },
            None,
            || {
                looks.set(looks.get() + 1);
                looks_at_stop.get().map(|_| ())
            },
        );
        assert_eq!(r, Some(()));
        // One look before the spin, then one every `LOOK_PAUSES` pauses: 8 per
        // consultation, which comes every `ADVISE_PAUSES`.
        let per_advice = ADVISE_PAUSES / LOOK_PAUSES;
        assert_eq!(per_advice, 8);
        assert_eq!(looks_at_stop.get(), Some(1 + 5 * per_advice));
    }
}
