//! The fork server's side: caught before `main`, it serves its client until the client
//! goes, then exits.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::wire::{Reply, Request};
use super::{ENV, REQUEST_LIMIT};
use crate::camlbox::Camlbox;
use crate::jobs::Control;
use crate::mempool::Mempool;
use crate::scheduler::{scheduler_main, SchedulerSetup};
use crate::space::Mapping;
use crate::sys::{ipc, process};

/// What the client put in [`ENV`]: `fd:base:len:client_pid`.
pub(super) struct Start {
    sock: RawFd,
    base: usize,
    len: usize,
    client: i32,
}

pub(super) fn parse_start(value: &[u8]) -> Option<Start> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split(':');
    let start = Start {
        sock: parts.next()?.parse().ok()?,
        base: parts.next()?.parse().ok()?,
        len: parts.next()?.parse().ok()?,
        client: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(start)
}

/// Called by the C runtime before `main` in every process of a program that links
/// procyon (from `.init_array`). Returns at once unless [`ENV`] marks the process as
/// procyon's fork server; then it never returns.
///
/// It takes no arguments: glibc passes `(argc, argv, envp)` to `.init_array` entries, a
/// caller-cleaned extra the C calling convention lets a function ignore, while other
/// loaders (and Miri) pass none; declaring none is right for both.
extern "C" fn on_load() {
    // The environment is set up before constructors run; with one thread, reading it
    // takes no lock anybody could hold.
    let Some(value) = std::env::var_os(ENV) else {
        return;
    };
    // A value we did not write is not ours to act on: let `main` run.
    if let Some(start) = parse_start(value.as_encoded_bytes()) {
        serve(start)
    }
}

/// The constructor, kept by the linker because `Pool::build` refers to it.
#[used]
#[link_section = ".init_array"]
pub(crate) static ON_LOAD: extern "C" fn() = on_load;

/// The server's loop. Single-threaded, before `main`: no other thread exists, so its forks
/// are clean.
fn serve(start: Start) -> ! {
    // A task that starts this program again must not become a fork server. (Before
    // `main`, with one thread, touching the environment is safe.)
    std::env::remove_var(ENV);
    // SAFETY: the client passed this descriptor on for us alone (`spawn_self`).
    let sock = unsafe { OwnedFd::from_raw_fd(start.sock) };
    // What `lang_start` would do for a Rust program: a write to a closed pipe is an error,
    // not a death. Children reaped by the kernel: the server never waits for one.
    let _ = process::ignore_signal(libc::SIGPIPE);
    let _ = process::ignore_signal(libc::SIGCHLD);
    // Before `main`, single-threaded: the hook lock is free (see `panic_hook`).
    crate::panic_hook::install();
    if process::getppid() != start.client {
        process::exit_now(0);
    }
    let client = match ipc::pidfd_open(start.client) {
        Ok(fd) => fd,
        Err(_) => process::exit_now(1),
    };
    let reserved = crate::space::adopt_range(start.base, start.len).map_err(|e| {
        format!(
            "the fork server could not reserve the client's address range {:#x}+{:#x}: {e}",
            start.base, start.len
        )
    });
    let mut buf = vec![0u8; REQUEST_LIMIT];
    loop {
        let ready = match ipc::poll_readable(&[sock.as_fd(), client.as_fd()], None) {
            Ok(r) => r,
            Err(_) => process::exit_now(1),
        };
        if ready[1] {
            // The client ended: so do we (our schedulers follow by their death signal).
            process::exit_now(0);
        }
        if !ready[0] {
            continue;
        }
        let (n, fds) = match ipc::recv_message(sock.as_fd(), &mut buf) {
            Ok((0, _)) | Err(_) => process::exit_now(0),
            Ok(m) => m,
        };
        let reply = match &reserved {
            Err(reason) => Reply::Failed {
                reason: reason.clone(),
            },
            Ok(()) => match handle(&sock, &client, &buf[..n], fds, start.client) {
                Ok(pid) => Reply::Started { pid },
                Err(reason) => Reply::Failed { reason },
            },
        };
        let bytes = bincode::serialize(&reply).unwrap_or_default();
        if ipc::send_message(sock.as_fd(), &bytes, &[]).is_err() {
            process::exit_now(0);
        }
    }
}

/// Maps what the request names and forks its scheduler; the scheduler's pid.
fn handle(
    sock: &OwnedFd,
    client: &OwnedFd,
    bytes: &[u8],
    mut fds: Vec<OwnedFd>,
    client_pid: i32,
) -> Result<i32, String> {
    let req: Request =
        bincode::deserialize(bytes).map_err(|e| format!("malformed request: {e}"))?;
    let mut buf = [0u8; 16];
    while fds.len() < req.fd_count() {
        let ready = ipc::poll_readable(&[sock.as_fd()], Some(super::REPLY_LIMIT))
            .map_err(|e| format!("waiting for the rest of the request: {e}"))?;
        if !ready[0] {
            return Err("the rest of the request did not come".into());
        }
        let (n, more) =
            ipc::recv_message(sock.as_fd(), &mut buf).map_err(|e| format!("receiving: {e}"))?;
        if n == 0 {
            return Err("the client went away".into());
        }
        fds.extend(more);
    }
    if fds.len() != req.fd_count() {
        return Err(format!(
            "{} descriptors for {} mappings",
            fds.len(),
            req.fd_count()
        ));
    }
    if req.fingerprint != crate::kind::image_fingerprint() {
        return Err(format!(
            "the fork server runs another executable image than the client (fingerprint \
             {:x?}, the client's {:x?}): was the program's file replaced while it ran?",
            crate::kind::image_fingerprint(),
            req.fingerprint
        ));
    }
    if req.client_pid != client_pid {
        return Err("a request from a process other than the server's client".into());
    }
    let n = req.config.workers;
    if req.inboxes.len() != 1 {
        return Err("the scheduler's inbox (and no other) expected".into());
    }
    let mut fds = fds.into_iter();
    let map = |(at, len): (usize, usize), fd: OwnedFd| {
        Mapping::attach(at, len, fd).map_err(|e| format!("mapping {len} bytes at {at:#x}: {e}"))
    };
    let mempool = Mempool::attach(map(req.mempool, fds.next().expect("counted"))?)
        .map_err(|e| e.to_string())?;
    if req
        .control_offset
        .checked_add(Control::size(n))
        .map_or(true, |end| end > req.mempool.1)
        || req.control_offset % 64 != 0
    {
        return Err("the control block is not inside the mempool".into());
    }
    let mut boxes = Vec::with_capacity(1);
    for (&place, fd) in req.inboxes.iter().zip(fds) {
        boxes.push(
            Camlbox::attach(
                req.config.inbox_slots,
                req.config.slot_size,
                map(place, fd)?,
            )
            .map_err(|e| e.to_string())?,
        );
    }
    let inbox = boxes.remove(0);
    let base = (mempool.base_addr() + req.control_offset) as *const u8;
    // SAFETY: the block lies inside the mempool (checked above), which the client
    // allocated and zeroed for `Control::size(n)` bytes, 64-aligned, and keeps alive
    // while the pool lives; this mapping stays in the scheduler until it exits.
    let control = unsafe {
        Control::new(
            base,
            mempool.base_addr() as *const u8,
            mempool.capacity(),
            n,
        )
    };
    let setup = SchedulerSetup {
        mempool,
        control,
        inbox,
        client_pid,
        parent_pid: process::getpid(),
        config: req.config,
    };
    // SAFETY: the server is single-threaded (it runs before `main`, and starts no thread),
    // so the child is a complete copy.
    match unsafe { process::fork_tied() }.map_err(|e| format!("fork of the scheduler: {e}"))? {
        process::Fork::Child => {
            // The server's channel and its watch on the client are not the scheduler's.
            ipc::close_raw(sock.as_raw_fd());
            ipc::close_raw(client.as_raw_fd());
            scheduler_main(setup)
        }
        // Our copies of the mappings go with `setup` (back to reserved addresses).
        process::Fork::Parent(pid) => Ok(pid),
    }
}
