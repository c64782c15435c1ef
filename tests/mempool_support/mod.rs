//! Helpers shared by the mempool and array tests that fork: run a closure in a child that
//! catches panics and ends with `_exit`, wait for it, and check that nothing is left
//! behind (children, files in /dev/shm or /tmp).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

/// Tests in one binary run on several threads; the forking ones take this lock so that
/// no other test thread is mid-way through anything when they fork, and so that the
/// "no leftover children" check only sees their own children.
static SERIAL: Mutex<()> = Mutex::new(());

/// Serializes forking tests (poison-tolerant: one failed test must not fail the others).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes to stderr without any lock (safe in a forked child).
pub fn raw_eprint(msg: &str) {
    // SAFETY: writing a valid buffer to fd 2.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// Forks; the child runs `f` and exits 0 on `Ok`, 1 on `Err` (message on stderr),
/// 101 on panic. Returns the child's pid in the parent.
pub fn fork_child(f: impl FnOnce() -> Result<(), String>) -> i32 {
    // SAFETY: forking test threads are serialized (`serial`), and the child only uses the
    // mempool (whose registry lock is fork-safe), glibc's malloc (fork-safe) and raw
    // writes, then leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                raw_eprint(&format!("child {} failed: {msg}\n", std::process::id()));
                1
            }
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                raw_eprint(&format!("child {} panicked: {msg}\n", std::process::id()));
                101
            }
        };
        // SAFETY: ends the child at once, running no destructors of the parent's state.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// How a child ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

/// Waits for child `pid` and reports how it ended.
pub fn wait(pid: i32) -> Status {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EINTR),
            "waitpid({pid}) failed"
        );
    }
    if libc::WIFEXITED(status) {
        Status::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Status::Signaled(libc::WTERMSIG(status))
    } else {
        panic!("unexpected wait status {status:#x}")
    }
}

/// Waits for child `pid` and asserts it exited with code 0.
pub fn wait_ok(pid: i32) {
    assert_eq!(wait(pid), Status::Exited(0), "child {pid} failed");
}

/// Sends `sig` to `pid`.
pub fn kill(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// Asserts this process has no children left (running or unreaped).
pub fn assert_no_children() {
    let mut status = 0;
    // SAFETY: non-blocking wait for any child with a valid status pointer.
    let rc = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    let err = std::io::Error::last_os_error().raw_os_error();
    assert!(
        rc == -1 && err == Some(libc::ECHILD),
        "leftover child (waitpid returned {rc})"
    );
}

/// The entries of /dev/shm and /tmp.
pub fn temp_files() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in ["/dev/shm", "/tmp"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                names.insert(format!("{dir}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    names
}

/// Asserts that the test left nothing in /dev/shm or /tmp: no new entry in /dev/shm, no
/// new entry in /tmp that names procyon or the mempool (the machine is shared, other
/// programs use /tmp), and no file there mapped or open in this process.
pub fn assert_no_new_files(before: &BTreeSet<String>) {
    for name in temp_files().difference(before) {
        let ours =
            name.starts_with("/dev/shm/") || name.contains("procyon") || name.contains("mempool");
        assert!(!ours, "new file {name} left behind");
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    // The test executable itself may live under /tmp (a CI checkout there): not ours.
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    for line in maps
        .lines()
        .filter(|l| exe.is_empty() || !l.ends_with(&exe))
    {
        assert!(
            !line.contains("/dev/shm/") && !line.contains(" /tmp/"),
            "mapping of a named file: {line}"
        );
    }
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            let named_shm = t.starts_with("/dev/shm/");
            let ours_in_tmp = t.starts_with("/tmp/") && t.contains("procyon");
            assert!(!named_shm && !ours_in_tmp, "open file {t}");
        }
    }
}

/// A tiny deterministic PRNG (xorshift64*), so failures reproduce from the seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// A pipe for a child to send bytes to its parent.
pub struct Pipe {
    pub read: i32,
    pub write: i32,
}

impl Pipe {
    pub fn new() -> Pipe {
        let mut fds = [0; 2];
        // SAFETY: valid array of two fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        Pipe {
            read: fds[0],
            write: fds[1],
        }
    }

    pub fn send(&self, bytes: &[u8]) {
        let len = (bytes.len() as u32).to_le_bytes();
        for buf in [&len[..], bytes] {
            // SAFETY: writing a valid buffer to our pipe.
            let n = unsafe { libc::write(self.write, buf.as_ptr().cast(), buf.len()) };
            assert_eq!(n as usize, buf.len());
        }
    }

    pub fn recv(&self) -> Vec<u8> {
        let mut len = [0u8; 4];
        self.read_exact(&mut len);
        let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
        self.read_exact(&mut buf);
        buf
    }

    fn read_exact(&self, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            // SAFETY: reading into the unfilled part of a valid buffer.
            let n =
                unsafe { libc::read(self.read, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
            assert!(n > 0, "pipe closed early");
            done += n as usize;
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: closing our own fds once.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}
