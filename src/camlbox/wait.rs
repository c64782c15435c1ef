//! The two process-local helpers of the hot paths: how a waiter spins before it hands over
//! to [`Event`], and the pid a sender records in its claims.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;
use std::time::Instant;

use crate::futex::{Event, DEFAULT_SPIN};
use crate::sys::process;

/// Checks made back to back (one `PAUSE` apart) before [`Event::wait_until`]'s own spin.
///
/// `Event` spins 64 `PAUSE`s between checks, about 2.2 us on the reference EPYC, which
/// alone would eat the 2 us round-trip budget of a camlbox hand-off. A check here is two
/// loads of the head slot (a few tens of ns), so this phase reacts within ~100 ns and
/// lasts at most ~20 us; then `Event` spins on (its budget) and sleeps. Bounded either way:
/// an idle waiter stops using CPU after the sum of the two budgets.
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

/// This process's pid, cached (0: not known yet). `getpid` is a real system call (about
/// 165 ns on the reference VM), which every send would otherwise pay.
static PID: AtomicI32 = AtomicI32::new(0);
/// Whether the atfork handler that resets [`PID`] in children is in place.
static RESET_ON_FORK: AtomicBool = AtomicBool::new(false);
static REGISTER: Once = Once::new();

extern "C" fn forget_pid() {
    // Relaxed: runs in the child's only thread, before `fork` returns there.
    PID.store(0, Ordering::Relaxed);
}

/// Installs the `pthread_atfork` child handler that clears the cached pid. Called when a
/// sender is made, so before any send can fill the cache, and never from a signal handler.
pub(crate) fn register_pid_cache() {
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic (async-signal-safe, as
        // atfork child handlers must be).
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
        // Relaxed: read on this process's send paths; if another thread races past the
        // `Once` with `false`, it merely skips the cache.
        RESET_ON_FORK.store(rc == 0, Ordering::Relaxed);
    });
}

/// The writer id recorded in claimed slots: this process's pid (positive, so never the 0
/// that means "no writer"). Async-signal-safe: an atomic load, or `getpid` and a store.
///
/// A process made by a raw `clone`/`SYS_fork` (skipping atfork handlers) would record its
/// parent's pid; its dead claims would then wait for the parent to die to be reclaimed.
/// procyon forks through libc's `fork`, which runs the handler.
pub(crate) fn my_pid() -> u32 {
    // Relaxed: the pid is the same for every thread of the process; a stale 0 only costs a
    // `getpid`.
    let cached = PID.load(Ordering::Relaxed);
    if cached > 0 {
        return cached as u32;
    }
    let pid = process::getpid();
    debug_assert!(pid > 0);
    if RESET_ON_FORK.load(Ordering::Relaxed) {
        PID.store(pid, Ordering::Relaxed);
    }
    pid as u32
}
