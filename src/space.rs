//! Shared mappings, and the address space a client and its fork server share.
//!
//! A pool started by the fork server (see `server`) lives in memory files (memfds) that
//! the client maps and sends to the server, which maps them at the **same addresses**:
//! offsets and the mempool's base must mean the same thing in both images. Two programs
//! images lay out their address spaces differently (PIE, ASLR), so an address free in the
//! client may hold a library in the server. Both therefore reserve one range early
//! ([`SPAN`] bytes at [`HINT`], `PROT_NONE` and `MAP_NORESERVE`: addresses only, no
//! memory): the client at its first fork-server build, the server before `main`, at the
//! address the client names. Memfd-backed mappings are carved from it (`MAP_FIXED` over
//! the reservation) and given back to it (`PROT_NONE` again), never unmapped.
//!
//! Anonymous mappings (pools started by a plain fork) are made and unmapped as before.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crate::sys::{ipc, mman};

/// Where the shared range is asked for: 16 TiB, far below where Linux puts PIE images
/// (around 85 TiB), the heap and shared libraries (near 128 TiB) on x86-64 and arm64.
pub(crate) const HINT: usize = 0x1000_0000_0000;
/// Size of the shared range: 16 TiB of addresses (no memory).
pub(crate) const SPAN: usize = 16 << 40;
/// Granularity of carving (2 MiB: a huge page).
const GRAIN: usize = 2 << 20;

/// How a mapping is backed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backing {
    /// `MAP_SHARED | MAP_ANONYMOUS`: shared with forked children only.
    Anonymous,
    /// A memfd mapped in the shared range: can be sent to the fork server.
    Memfd,
}

/// One shared mapping of this process, unmapped (or given back to the range) on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// The memory file, for a memfd-backed mapping.
    fd: Option<OwnedFd>,
    /// Whether `ptr..ptr+len` lies in the shared range (give back, do not unmap).
    in_range: bool,
    /// Whether this process carved it from its free list (so returns it there).
    carved: bool,
}

// SAFETY: a mapping is an address range owned by this process; who may access the bytes
// is the business of the types built on it (atomics, the slot protocol, the heap lock).
unsafe impl Send for Mapping {}
// SAFETY: as above; `Mapping` itself exposes no interior mutability.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// A new zeroed shared mapping of `len` bytes (a multiple of the page size).
    pub(crate) fn new(len: usize, backing: Backing, name: &CStr) -> io::Result<Mapping> {
        match backing {
            Backing::Anonymous => Ok(Mapping {
                ptr: mman::map_shared_anon(len)?,
                len,
                fd: None,
                in_range: false,
                carved: false,
            }),
            Backing::Memfd => {
                let fd = ipc::memfd(name, len)?;
                let at = carve(len)?;
                // SAFETY: `at..at+len` was just carved from our reservation for us alone.
                if let Err(e) = unsafe { mman::map_fd_fixed(at, len, fd.as_fd()) } {
                    give_back(at, len);
                    return Err(e);
                }
                Ok(Mapping {
                    ptr: at,
                    len,
                    fd: Some(fd),
                    in_range: true,
                    carved: true,
                })
            }
        }
    }

    /// Maps memory file `fd` (of at least `len` bytes) at `at`, an address the client
    /// carved from the shared range, in this process's copy of that range.
    pub(crate) fn attach(at: usize, len: usize, fd: OwnedFd) -> io::Result<Mapping> {
        if !in_reserved_range(at, len) || at % mman::page_size() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes at {at:#x} are not inside this process's reserved range"),
            ));
        }
        if ipc::file_len(fd.as_fd())? < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "memory file too short",
            ));
        }
        let ptr = NonNull::new(at as *mut u8).expect("checked inside the range");
        // SAFETY: inside our reservation; the client carved it for this one mapping, and
        // this process maps nothing else there.
        unsafe { mman::map_fd_fixed(ptr, len, fd.as_fd()) }?;
        Ok(Mapping {
            ptr,
            len,
            fd: Some(fd),
            in_range: true,
            carved: false,
        })
    }

    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The memory file behind a memfd-backed mapping.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let result = if self.in_range {
            // SAFETY: our mapping inside the reservation; its owner (this value) is going
            // away, so nothing refers to it any more.
            unsafe { mman::unmap_to_reserved(self.ptr, self.len) }
        } else {
            // SAFETY: our anonymous mapping, no longer referenced (as above).
            unsafe { mman::unmap(self.ptr, self.len) }
        };
        debug_assert!(result.is_ok(), "unmapping failed: {result:?}");
        if self.carved && result.is_ok() {
            give_back(self.ptr, self.len);
        }
    }
}

/// This process's reservation and, in a client, its free list.
struct Space {
    base: usize,
    len: usize,
    /// Free `(start, len)` runs, sorted by start, never adjacent.
    free: Vec<(usize, usize)>,
}

struct Locked {
    held: AtomicBool,
    space: std::cell::UnsafeCell<Option<Space>>,
}

// SAFETY: `space` is only touched while `held` is ours (see `with_space`).
unsafe impl Sync for Locked {}

static SPACE: Locked = Locked {
    held: AtomicBool::new(false),
    space: std::cell::UnsafeCell::new(None),
};
static ATFORK: Once = Once::new();

fn lock() {
    // Acquire pairs with the Release in `unlock`: the previous holder's writes are ours.
    while SPACE
        .held
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

fn unlock() {
    // Release publishes our writes to the next holder.
    SPACE.held.store(false, Ordering::Release);
}

extern "C" fn before_fork() {
    lock();
}

extern "C" fn after_fork() {
    unlock();
}

/// Runs `f` on this process's space under its lock. The lock is a spin lock held only for
/// list edits (no system call inside), taken by a `pthread_atfork` handler around every
/// `fork`, so a child never inherits it held.
fn with_space<R>(f: impl FnOnce(&mut Option<Space>) -> R) -> R {
    ATFORK.call_once(|| {
        // SAFETY: registers handlers that only take and release our spin lock.
        let rc =
            unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork)) };
        debug_assert_eq!(rc, 0);
    });
    lock();
    // SAFETY: we hold the lock.
    let r = f(unsafe { &mut *SPACE.space.get() });
    unlock();
    r
}

/// The shared range of this process, reserving it first if needed: `(base, len)`.
pub(crate) fn reserved_range() -> io::Result<(usize, usize)> {
    // Reserved outside the lock (a system call), installed under it.
    if let Some(r) = with_space(|s| s.as_ref().map(|s| (s.base, s.len))) {
        return Ok(r);
    }
    let ptr = mman::reserve(Some(HINT), SPAN).or_else(|_| mman::reserve(None, SPAN))?;
    let (base, len) = (ptr.as_ptr() as usize, SPAN);
    let kept = with_space(|s| match s {
        Some(other) => Err((other.base, other.len)),
        None => {
            *s = Some(Space {
                base,
                len,
                free: vec![(base, len)],
            });
            Ok((base, len))
        }
    });
    kept.or_else(|other| {
        // Another thread reserved first: ours goes.
        // SAFETY: our own fresh PROT_NONE mapping, never used.
        unsafe { mman::unmap(ptr, len) }?;
        Ok(other)
    })
}

/// Reserves exactly `base..base+len` (in a fork server, before `main`: the client's
/// range).
pub(crate) fn adopt_range(base: usize, len: usize) -> io::Result<()> {
    mman::reserve(Some(base), len)?;
    with_space(|s| {
        *s = Some(Space {
            base,
            len,
            free: Vec::new(),
        })
    });
    Ok(())
}

fn in_reserved_range(at: usize, len: usize) -> bool {
    with_space(|s| {
        s.as_ref().is_some_and(|s| {
            at >= s.base && at.checked_add(len).is_some_and(|end| end <= s.base + s.len)
        })
    })
}

/// Takes `len` bytes (rounded up to [`GRAIN`]) from the range, first fit.
fn carve(len: usize) -> io::Result<NonNull<u8>> {
    reserved_range()?;
    let len = len.next_multiple_of(GRAIN);
    let at = with_space(|s| {
        let s = s.as_mut()?;
        let i = s.free.iter().position(|&(_, l)| l >= len)?;
        let (start, l) = s.free[i];
        if l == len {
            s.free.remove(i);
        } else {
            s.free[i] = (start + len, l - len);
        }
        Some(start)
    });
    match at {
        Some(a) => Ok(NonNull::new(a as *mut u8).expect("the range is not at 0")),
        None => Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!(
                "no {len} bytes left in the {SPAN}-byte address range shared with the fork server"
            ),
        )),
    }
}

/// Returns a carved run to the free list, merging it with its neighbours.
fn give_back(ptr: NonNull<u8>, len: usize) {
    let (start, len) = (ptr.as_ptr() as usize, len.next_multiple_of(GRAIN));
    with_space(|s| {
        let Some(s) = s.as_mut() else { return };
        let i = s.free.partition_point(|&(a, _)| a < start);
        s.free.insert(i, (start, len));
        if i + 1 < s.free.len() && s.free[i].0 + s.free[i].1 == s.free[i + 1].0 {
            s.free[i].1 += s.free[i + 1].1;
            s.free.remove(i + 1);
        }
        if i > 0 && s.free[i - 1].0 + s.free[i - 1].1 == s.free[i].0 {
            s.free[i - 1].1 += s.free[i].1;
            s.free.remove(i);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfd_mappings_are_carved_and_given_back() {
        let a = Mapping::new(1 << 20, Backing::Memfd, c"procyon-test").unwrap();
        let b = Mapping::new(3 << 20, Backing::Memfd, c"procyon-test").unwrap();
        let (base, len) = reserved_range().unwrap();
        for m in [&a, &b] {
            let p = m.ptr().as_ptr() as usize;
            assert!(p >= base && p + m.len() <= base + len);
            // SAFETY: our fresh writable mapping.
            unsafe { m.ptr().as_ptr().write(7) };
        }
        let pa = a.ptr();
        drop(a);
        let c = Mapping::new(1 << 20, Backing::Memfd, c"procyon-test").unwrap();
        assert_eq!(c.ptr(), pa, "a run given back is carved again");
        // SAFETY: a fresh mapping of a fresh memfd reads as zero.
        assert_eq!(unsafe { c.ptr().as_ptr().read() }, 0);
    }
}
