//! Futex wait and wake on a 32-bit word in shared memory.
//!
//! These are *shared* futexes (no `FUTEX_PRIVATE_FLAG`): the kernel keys them by the
//! backing page, so a waiter and a waker in different processes that map the same shared
//! page meet on the same futex. (parking_lot uses private futexes, which is right for
//! threads and wrong here.)

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// How a [`wait`] ended. None of these is an error: every caller re-checks its word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// Woken by a [`wake`] (or spuriously).
    Woken,
    /// The word did not hold the expected value when the kernel looked (`EAGAIN`).
    ValueChanged,
    /// The timeout elapsed (`ETIMEDOUT`).
    TimedOut,
    /// A signal handler ran (`EINTR`).
    Interrupted,
}

/// Sleeps while `*word == expected`, at most `timeout` (forever if `None`).
///
/// The kernel compares the word and queues the caller atomically, so a [`wake`] that
/// follows a store to `word` can never be missed: either the waiter sees the new value
/// (`ValueChanged`) or it is already queued when the wake comes.
pub(crate) fn wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<WaitOutcome> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 32-bit atomic for the duration of the call; the
    // kernel only reads it. `ts_ptr` is null or points to a timespec on our stack.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == 0 {
        return Ok(WaitOutcome::Woken);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) => Ok(WaitOutcome::ValueChanged),
        Some(libc::ETIMEDOUT) => Ok(WaitOutcome::TimedOut),
        Some(libc::EINTR) => Ok(WaitOutcome::Interrupted),
        _ => Err(err),
    }
}

/// Wakes up to `count` waiters sleeping on `word`; returns how many were woken.
///
/// Async-signal-safe (one system call, no allocation, no lock).
pub(crate) fn wake(word: &AtomicU32, count: u32) -> io::Result<usize> {
    let count = count.min(i32::MAX as u32) as i32;
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE does not access memory
    // beyond using the address as a key.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}
