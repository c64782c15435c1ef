//! Shared anonymous mappings and `madvise`.
//!
//! A `MAP_SHARED | MAP_ANONYMOUS` mapping made before `fork` is inherited by the child at
//! the same virtual address and backed by the same pages: this is what lets the mempool
//! and camlboxes hold offsets that mean the same thing in every process of the tree, with
//! nothing named in `/dev/shm` or `/tmp` (the pages vanish with the last process that maps
//! them, however the tree ends).

use std::io;
use std::ptr::NonNull;

/// What [`madvise`] should do with a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Advice {
    /// Allocate (zeroed) backing pages now and map them writable in this process
    /// (`MADV_POPULATE_WRITE`). Fails with `ENOMEM`/`EFAULT` instead of raising SIGBUS
    /// later: this is how the mempool reserves memory at allocation time.
    PopulateWrite,
    /// Give the backing pages back to the system (`MADV_REMOVE`); the range reads as
    /// zeroes afterwards in every process.
    Remove,
}

/// Maps `len` bytes of zeroed shared anonymous memory, readable and writable.
///
/// `MAP_NORESERVE` makes untouched pages cost nothing: memory is committed page by page
/// (by [`madvise`] with [`Advice::PopulateWrite`] or by first touch).
pub(crate) fn map_shared_anon(len: usize) -> io::Result<NonNull<u8>> {
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "mapping of zero bytes",
        ));
    }
    // SAFETY: an anonymous mapping at a kernel-chosen address aliases no existing Rust
    // object; the arguments are plain integers and the result is checked below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// Unmaps a mapping made by [`map_shared_anon`].
///
/// # Safety
/// `ptr..ptr+len` must be a mapping this process made with [`map_shared_anon`] (or a
/// whole-page part of one), and no reference into it may be used afterwards.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is our mapping and is no longer referenced.
    let rc = unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Applies `advice` to the page-aligned range `addr..addr+len` of a shared mapping.
///
/// # Safety
/// The range must lie inside a mapping made by [`map_shared_anon`]. With
/// [`Advice::Remove`] the range's contents become zero in every process: no live data may
/// be stored there.
pub(crate) unsafe fn madvise(addr: *mut u8, len: usize, advice: Advice) -> io::Result<()> {
    debug_assert_eq!(
        addr as usize % page_size(),
        0,
        "madvise needs a page-aligned start"
    );
    if len == 0 {
        return Ok(());
    }
    let flag = match advice {
        Advice::PopulateWrite => libc::MADV_POPULATE_WRITE,
        Advice::Remove => libc::MADV_REMOVE,
    };
    // SAFETY: the caller guarantees the range is inside our shared mapping and, for
    // `Remove`, holds no live data; populating never changes contents.
    let rc = unsafe { libc::madvise(addr.cast(), len, flag) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The system page size in bytes.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf with a valid name has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// Physical memory of the machine in bytes (0 if unknown).
pub(crate) fn physical_memory() -> u64 {
    // SAFETY: sysconf with valid names has no preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        0
    }
}

/// Reserves `len` bytes of address space (`PROT_NONE`, `MAP_NORESERVE`: no memory, only
/// addresses) at exactly `at` if given (`MAP_FIXED_NOREPLACE`: fails with `EEXIST` if
/// anything is mapped there), else wherever the kernel likes.
pub(crate) fn reserve(at: Option<usize>, len: usize) -> io::Result<NonNull<u8>> {
    let (hint, fixed) = match at {
        Some(a) => (a as *mut libc::c_void, libc::MAP_FIXED_NOREPLACE),
        None => (std::ptr::null_mut(), 0),
    };
    // SAFETY: a PROT_NONE private anonymous mapping with NOREPLACE (or no address) cannot
    // replace any existing mapping, so it aliases no Rust object.
    let ptr = unsafe {
        libc::mmap(
            hint,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | fixed,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if at.is_some_and(|a| a != ptr as usize) {
        // A kernel older than 4.17 ignores MAP_FIXED_NOREPLACE and treats it as a hint.
        // SAFETY: the mapping was just made by us and nothing refers to it.
        unsafe { libc::munmap(ptr, len) };
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// Maps `len` bytes of the shared file `fd` (from offset 0), readable and writable, over
/// the reserved range at `at` (`MAP_FIXED`).
///
/// # Safety
/// `at..at+len` must be part of a reservation made by [`reserve`] that holds nothing in
/// use: whatever is mapped there is replaced.
pub(crate) unsafe fn map_fd_fixed(
    at: NonNull<u8>,
    len: usize,
    fd: std::os::fd::BorrowedFd<'_>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the caller guarantees the range is ours and unused.
    let ptr = unsafe {
        libc::mmap(
            at.as_ptr().cast(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED | libc::MAP_NORESERVE,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Turns `at..at+len` back into reserved address space (`PROT_NONE`, no memory),
/// dropping whatever was mapped there.
///
/// # Safety
/// The range must be part of a reservation made by [`reserve`], and no reference into
/// what was mapped there may be used afterwards.
pub(crate) unsafe fn unmap_to_reserved(at: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is ours and no longer referenced.
    let ptr = unsafe {
        libc::mmap(
            at.as_ptr().cast(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
