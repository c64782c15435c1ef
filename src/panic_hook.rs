//! The one place procyon touches the panic hook.
//!
//! A task's panic is caught at the task boundary and shipped to the job's owner as an
//! error carrying its message, so in a pool process the hook should stay quiet instead of
//! printing to the stderr the process shares with the client.
//!
//! `std::panic::set_hook` takes a process-wide lock that every panicking thread holds
//! while its hook runs (and the default hook takes std's backtrace lock as well). A
//! process forked while another thread of the client was panicking inherits those locks
//! held forever: calling `set_hook` there hangs, and so does the default hook on the first
//! panic. So the hook is never set in a forked child. [`install`] runs where locks behave:
//! in the client before it forks a scheduler (the hook then stays in place for the
//! client's own panics, which it hands on to the hook it replaced) or in a process that
//! runs no other thread. Children only flip [`mark_pool_process`], an atomic store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// Whether this process is a scheduler or worker of a pool.
static POOL_PROCESS: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Marks the calling process as a pool process (its panics are quiet). Async-signal-safe:
/// one atomic store, fine right after `fork`.
pub(crate) fn mark_pool_process() {
    // Relaxed: read by this process's own threads only after this point of its single
    // thread of control.
    POOL_PROCESS.store(true, Ordering::Relaxed);
}

/// Whether the calling process is a scheduler or worker of a pool.
pub(crate) fn in_pool_process() -> bool {
    // Relaxed: see `mark_pool_process`.
    POOL_PROCESS.load(Ordering::Relaxed)
}

/// Installs procyon's panic hook once per process: quiet in pool processes, the previous
/// hook everywhere else.
///
/// Call only where taking the hook lock cannot hang: in a process that was not forked
/// from a multi-threaded one since it last ran `main`-level code (the client itself, or a
/// freshly executed image). A hook set later by the program replaces this one; pool
/// processes then run that hook on a task's panic.
pub(crate) fn install() {
    if std::thread::panicking() {
        // `take_hook` refuses to run in a panicking thread; try again at the next build.
        return;
    }
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if in_pool_process() {
                // Quiet: the task boundary ships the panic, with this place, to the owner.
                crate::unwind::record(info);
            } else {
                previous(info);
            }
        }));
    });
}
