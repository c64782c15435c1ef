//! The fork server: where the processes of a [`StartMode::ForkServer`] pool come from.
//!
//! Forking the scheduler from the client copies whatever locks the client's other threads
//! hold, and the client's page tables. Instead, at its first such build a client starts a
//! fresh execution of its own executable (`posix_spawn` of `/proc/self/exe`: safe from
//! any thread, no page tables copied) with [`ENV`] set, holding one end of an anonymous
//! `socketpair`. procyon's ELF constructor (`serve::ON_LOAD`) sees the variable before
//! `main` runs and turns the process into the server: single-threaded, it never returns
//! to `main`, and forks one scheduler per request; schedulers fork workers as before.
//!
//! ## Protocol
//!
//! 1. The client (under the connection lock, one request at a time) creates the mempool
//!    and the camlboxes as memfds mapped at addresses carved from the shared range (see
//!    `space`), then sends a [`wire::Request`] with the memfds (`SCM_RIGHTS`).
//! 2. The server checks the request (its image fingerprint, the client pid, that every
//!    mapping lies in its reserved range), maps each memfd at the client's address, forks
//!    the scheduler (`fork_tied`: it dies with the server), drops its own mappings, and
//!    answers [`wire::Reply::Started`] with the scheduler's pid, or `Failed` with a reason.
//! 3. The client opens a pidfd on the scheduler: it is not the client's child, so
//!    liveness checks and the confirmation at drop go through the pidfd.
//!
//! ## Lifetime
//!
//! The server polls its socket and a pidfd of its client: when the client ends (even by
//! SIGKILL) the pidfd becomes readable, or the socket reads end-of-stream, and the server
//! exits; its schedulers follow by their parent-death signal, their workers by theirs.
//! (Not a parent-death signal on the server itself: that would fire when the client
//! *thread* that spawned it ends.) The server ignores SIGCHLD, so its dead schedulers are
//! reaped by the kernel.
//!
//! ## Who can talk to it
//!
//! The channel is a `socketpair`: no path, no address; only the client (and processes it
//! forks, which inherit the descriptor) can send. The server serves only the pid that
//! started it, refuses another image, and dies with that client. A process forked from
//! the client that builds a pool starts a server of its own.

mod serve;
mod wire;

use std::cell::UnsafeCell;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::camlbox::Camlbox;
use crate::mempool::Mempool;
use crate::pool::PoolBuilder;
use crate::sys::{ipc, process};
use crate::{Error, Result};
use wire::{Reply, Request};

/// The environment variable that marks a process as procyon's fork server.
pub(crate) const ENV: &str = "PROCYON_FORK_SERVER";
/// Largest request the server accepts, in bytes.
pub(crate) const REQUEST_LIMIT: usize = 1 << 16;
/// Longest a client waits for the server's answer (and the server for the rest of a
/// request).
pub(crate) const REPLY_LIMIT: Duration = Duration::from_secs(10);

/// Makes the linker keep the object that holds procyon's ELF constructor (a program that
/// builds pools refers to it through this).
pub(crate) fn keep_constructor() {
    std::hint::black_box(&serve::ON_LOAD);
}

/// A scheduler started by the fork server: not our child, watched through a pidfd.
pub(crate) struct Remote {
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
}

impl Remote {
    /// Whether the scheduler is still running.
    pub(crate) fn alive(&self) -> bool {
        !matches!(
            ipc::poll_readable(&[self.pidfd.as_fd()], Some(Duration::ZERO)).as_deref(),
            Ok([true])
        )
    }

    /// Waits until the scheduler has ended, at most until `deadline`; whether it has.
    pub(crate) fn wait_until(&self, deadline: Instant) -> bool {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ipc::poll_readable(&[self.pidfd.as_fd()], Some(left)).as_deref() {
                Ok([true]) => return true,
                _ if left.is_zero() => return false,
                _ => {}
            }
        }
    }

    /// SIGKILLs the scheduler (the pidfd names it for sure: no reused pid is hit).
    pub(crate) fn kill(&self) {
        let _ = ipc::pidfd_kill(self.pidfd.as_fd(), libc::SIGKILL);
    }
}

/// The pid of this process's fork server, if it has started one (for tests, which tell
/// it apart from pool processes).
pub fn fork_server_pid() -> Option<i32> {
    with_conn(|c| {
        c.as_ref()
            .filter(|c| c.owner == process::getpid())
            .map(|c| c.pid)
    })
}

/// Asks the fork server to start the scheduler of a pool whose memory (memfd-backed)
/// is `mempool`, with its control block at `control_offset` and inboxes `boxes` (the
/// scheduler's first).
pub(crate) fn start_scheduler(
    mempool: &Mempool,
    control_offset: usize,
    boxes: &[&Camlbox],
    config: &PoolBuilder,
) -> Result<Remote> {
    let fail = |reason: String| Error::ForkServer { reason };
    let mut fds: Vec<BorrowedFd<'_>> = Vec::with_capacity(boxes.len() + 1);
    fds.push(
        mempool
            .memfd()
            .ok_or_else(|| fail("the mempool has no memory file".into()))?,
    );
    for b in boxes {
        fds.push(
            b.memfd()
                .ok_or_else(|| fail("a camlbox has no memory file".into()))?,
        );
    }
    let request = Request {
        fingerprint: crate::kind::image_fingerprint(),
        client_pid: process::getpid(),
        mempool: (mempool.base_addr(), mempool.capacity()),
        control_offset,
        inboxes: boxes.iter().map(|b| (b.base_addr(), b.map_len())).collect(),
        config: config.clone(),
    };
    let bytes = bincode::serialize(&request).map_err(|e| fail(e.to_string()))?;
    if bytes.len() > REQUEST_LIMIT {
        return Err(fail(format!("a request of {} bytes", bytes.len())));
    }
    if !process::in_main_executable(crate::kind::anchor()) {
        return Err(fail(
            "procyon is linked into a shared library, and the fork server re-executes the \
             main program, which would not run procyon's start-up hook"
                .into(),
        ));
    }
    let pid = with_conn(|conn| {
        // A server started by the process we were forked from is not ours.
        if conn.as_ref().is_some_and(|c| c.owner != process::getpid()) {
            *conn = None;
        }
        // One retry with a fresh server if the old one is gone.
        for attempt in 0..2 {
            if conn.is_none() {
                *conn = Some(Conn::spawn().map_err(|e| fail(format!("starting it: {e}")))?);
            }
            let c = conn.as_ref().expect("just set");
            match c.ask(&bytes, &fds) {
                Ok(Reply::Started { pid }) => return Ok(pid),
                Ok(Reply::Failed { reason }) => return Err(fail(reason)),
                Err(e) if attempt == 0 && e.kind() != std::io::ErrorKind::TimedOut => {
                    *conn = None;
                }
                Err(e) => return Err(fail(format!("talking to it: {e}"))),
            }
        }
        Err(fail("it died twice".into()))
    })?;
    let pidfd =
        ipc::pidfd_open(pid).map_err(|e| fail(format!("pidfd_open of the scheduler: {e}")))?;
    Ok(Remote { pid, pidfd })
}

/// This process's connection to its fork server.
struct Conn {
    /// The process that started the server (a forked child's inherited copy is not its).
    owner: i32,
    pid: i32,
    sock: OwnedFd,
}

impl Conn {
    fn spawn() -> std::io::Result<Conn> {
        let (ours, theirs) = ipc::seqpacket_pair()?;
        let (base, len) = crate::space::reserved_range()?;
        let me = process::getpid();
        let marker = format!("{ENV}={}:{base}:{len}:{me}", theirs.as_raw_fd());
        let mut env: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| k.as_bytes() != ENV.as_bytes())
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        env.push(CString::new(marker).expect("no NUL"));
        let argv = [CString::new("procyon-fork-server").expect("no NUL")];
        let pid = ipc::spawn_self(&argv, &env, theirs.as_fd())?;
        drop(theirs);
        Ok(Conn {
            owner: me,
            pid,
            sock: ours,
        })
    }

    /// Sends one request with its descriptors and waits (bounded) for the answer.
    fn ask(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<Reply> {
        let mut batches = fds.chunks(ipc::MAX_FDS_PER_MESSAGE);
        ipc::send_message(self.sock.as_fd(), bytes, batches.next().unwrap_or(&[]))?;
        for batch in batches {
            ipc::send_message(self.sock.as_fd(), &[0], batch)?;
        }
        let ready = ipc::poll_readable(&[self.sock.as_fd()], Some(REPLY_LIMIT))?;
        if !ready[0] {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {REPLY_LIMIT:?}"),
            ));
        }
        let mut buf = vec![0u8; 4096];
        let (n, _) = ipc::recv_message(self.sock.as_fd(), &mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the fork server is gone",
            ));
        }
        bincode::deserialize(&buf[..n])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Only a server found broken is dropped (the one of a live client is never): make
        // sure it is gone and reaped. SIGKILL ends it at once, so the wait is short.
        if self.owner == process::getpid() {
            let _ = process::kill(self.pid, libc::SIGKILL);
            let _ = process::wait_blocking(self.pid);
        }
    }
}

/// The connection, behind a spin lock that `pthread_atfork` takes around every fork (a
/// child never inherits it held). Held across a request: bounded by [`REPLY_LIMIT`].
struct Locked {
    held: AtomicBool,
    conn: UnsafeCell<Option<Conn>>,
}

// SAFETY: `conn` is only touched while `held` is ours (see `with_conn`).
unsafe impl Sync for Locked {}

static CONN: Locked = Locked {
    held: AtomicBool::new(false),
    conn: UnsafeCell::new(None),
};
static ATFORK: Once = Once::new();

fn lock() {
    // Acquire pairs with the Release in `unlock`.
    while CONN
        .held
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn unlock() {
    // Release publishes our writes to the next holder.
    CONN.held.store(false, Ordering::Release);
}

extern "C" fn before_fork() {
    lock();
}

extern "C" fn after_fork() {
    unlock();
}

fn with_conn<R>(f: impl FnOnce(&mut Option<Conn>) -> R) -> R {
    ATFORK.call_once(|| {
        // SAFETY: registers handlers that only take and release our lock.
        let rc =
            unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork)) };
        debug_assert_eq!(rc, 0);
    });
    lock();
    struct Unlock;
    impl Drop for Unlock {
        fn drop(&mut self) {
            unlock();
        }
    }
    let _unlock = Unlock;
    // SAFETY: we hold the lock until `_unlock` drops.
    f(unsafe { &mut *CONN.conn.get() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trampolines_travel_as_offsets_from_the_anchor() {
        fn probe(_: &crate::kind::WorkerCx, _: &crate::jobs::JobSlot, _: usize) {}
        let f: crate::kind::Entry = probe;
        let word = crate::kind::encode_entry(f);
        assert_eq!(
            word as usize,
            (f as usize).wrapping_sub(crate::kind::anchor())
        );
        // SAFETY: encoded just above, in this very image.
        let back = unsafe { crate::kind::decode_entry(word) };
        assert_eq!(back as usize, f as usize);
    }

    #[test]
    fn procyon_is_in_the_main_executable_of_its_tests() {
        assert!(process::in_main_executable(crate::kind::anchor()));
        assert!(!process::in_main_executable(
            libc::getpid as *const () as usize
        ));
    }

    #[test]
    fn a_start_marker_we_did_not_write_is_ignored() {
        // Only the exact `fd:base:len:pid` form is acted on.
        for bad in ["", "3", "3:1:2", "3:1:2:4:5", "x:1:2:3", "3:1:2:-"] {
            assert!(serve::parse_start(bad.as_bytes()).is_none(), "{bad:?}");
        }
        assert!(serve::parse_start(b"3:17592186044416:17592186044416:42").is_some());
    }
}
