//! How a camlbox waiter spins before it hands over to [`Event`]. (The pid a sender
//! records in its claims is [`crate::sys::process::cached_pid`].)

use std::time::Instant;

use crate::futex::{Event, DEFAULT_SPIN};

/// Checks made back to back (one `PAUSE` apart) before [`Event::wait_until`]'s own spin.
///
/// `Event` spins 8 `PAUSE`s between looks (about 200 ns on the reference EPYC; 64 before,
/// 1.6-2.2 us, which alone would have eaten the 2 us round-trip budget of a camlbox
/// hand-off). A check here is two loads of the head slot (a few tens of ns), so this phase
/// reacts within a `PAUSE` or two and lasts at most ~20 us; then `Event` spins on (its
/// budget) and sleeps. Bounded either way: an idle waiter stops using CPU after the sum of
/// the two budgets.
const HOT_CHECKS: u32 = 256;

/// Waits until `check` yields a value: a hot spin, then `event`'s spin-then-futex wait
/// (whose protocol is what rules out lost wakeups: every `check` here is just an early
/// look). `None` once `deadline` passes.
pub(crate) fn wait_on<T>(
    event: &Event,
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    for i in 0..HOT_CHECKS {
        if let Some(v) = check() {
            return Some(v);
        }
        if i % 32 == 31 && deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        std::hint::spin_loop();
    }
    event.wait_until(DEFAULT_SPIN, deadline, check)
}
