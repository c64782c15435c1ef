//! The one data-view path of the engine: a worker turns the descriptor of a shared array
//! into a raw-pointer view against its own mempool handle, and forms references only over
//! the elements the protocol gives it.
//!
//! * [`ArrayView`]: an array the job only reads (its owner lends it by `&`, or a pass of a
//!   multi-pass operation reads what an earlier pass wrote). Slices of it are formed per
//!   chunk, and only while no process writes those elements.
//! * [`ArrayViewMut`]: an array the job writes, each worker a disjoint range (the chunks
//!   the self-scheduling handed it, each index to exactly one worker). A `&mut [T]` is
//!   formed over that range only, never over the whole array, since other workers are
//!   writing the rest of it at the same time.
//!
//! Neither view is a Rust reference: holding one claims nothing, so a view of an array
//! that other processes write is not undefined behaviour; the `unsafe` accessors say
//! what must hold for the slice they return.
//!
//! Resolving checks the descriptor against the worker's mempool (`WorkerCx::mempool`):
//! same pool, a live block of that generation, large enough, aligned for `T`.

use std::marker::PhantomData;
use std::ops::Range;
use std::ptr::NonNull;

use bytemuck::Pod;

use crate::array::ArrayDesc;
use crate::mempool::Mempool;
use crate::Result;

/// A shared array that the job reads, resolved in this process. (Public only as the
/// resolved state of the hidden `Source` of an array; not meant for use outside procyon.)
#[doc(hidden)]
pub struct ArrayView<T> {
    ptr: NonNull<T>,
    len: usize,
    _elems: PhantomData<*const T>,
}

/// A shared array that the job writes, a disjoint range per worker, resolved in this
/// process.
pub(crate) struct ArrayViewMut<T> {
    ptr: NonNull<T>,
    len: usize,
    _elems: PhantomData<*mut T>,
}

/// Bytes around a faulting address that Linux maps at once on a read fault of shared
/// memory whose pages exist (`fault_around_bytes`, 64 KiB by default since Linux 3.15).
const FAULT_AROUND: usize = 64 << 10;

/// Least chunk, in bytes, that [`map_for_writing`] prepares: below a page a chunk touches
/// at most two pages, and its one extra load would cost more than it saves.
const MAP_AHEAD_MIN: usize = 4096;

/// Reads one byte of `start..start + bytes` in every [`FAULT_AROUND`] window, so that the
/// pages a worker is about to write are in its page tables before the first store.
///
/// A process's page tables are its own (module docs of `jobs::stripes`): a worker that
/// writes pages of a shared array it has not touched before (a chunk stolen from another
/// worker's stripe, a fresh output) takes a page fault per 4 KiB page on its first store,
/// since Linux maps shared pages one at a time on a write fault. A read fault maps the
/// pages around it too, writable (shared memory needs no write notification): on this
/// 2-vCPU VM, writing 256 MiB of populated shared pages another process had written cost
/// 1,200 ns per page store by store, 260 ns per page with a read every 64 KiB first.
/// Where the pages are mapped already the reads cost one load per 64 KiB, independent
/// of each other (a 64 KiB chunk takes microseconds to write).
///
/// # Safety
/// `start..start + bytes` is allocated and no other process writes it meanwhile.
#[inline]
unsafe fn map_for_writing(start: *const u8, bytes: usize) {
    if bytes < MAP_AHEAD_MIN {
        return;
    }
    for offset in window_starts(start as usize, bytes) {
        // SAFETY: `offset < bytes`, so the byte is in the range (the caller's contract);
        // read as `MaybeUninit` since a fresh output's bytes may be uninitialized, and
        // volatile so that the read happens although its value is unused.
        unsafe { std::ptr::read_volatile(start.add(offset).cast::<std::mem::MaybeUninit<u8>>()) };
    }
}

/// The offsets into `addr..addr + bytes` that [`map_for_writing`] reads: the range's
/// first byte, then the first byte of every [`FAULT_AROUND`] window it reaches into.
fn window_starts(addr: usize, bytes: usize) -> impl Iterator<Item = usize> {
    let first_boundary = (addr | (FAULT_AROUND - 1)) + 1 - addr;
    std::iter::once(0)
        .chain((first_boundary..).step_by(FAULT_AROUND))
        .take_while(move |&offset| offset < bytes)
}

fn check_range(range: &Range<usize>, len: usize) {
    assert!(
        range.start <= range.end && range.end <= len,
        "chunk {}..{} out of an array of {len}",
        range.start,
        range.end
    );
}

impl<T: Pod> ArrayView<T> {
    /// Resolves `desc` against `pool`, this process's handle of the job's mempool.
    ///
    /// # Safety
    /// The array must stay allocated while the view is used (its owner keeps it alive
    /// until the job has ended).
    ///
    /// # Errors
    /// [`crate::Error::InvalidDescriptor`] if `desc` names another pool, a freed block, or
    /// a block too small or misaligned for `T`.
    pub(crate) unsafe fn resolve(desc: &ArrayDesc<T>, pool: &Mempool) -> Result<Self> {
        Ok(ArrayView {
            ptr: desc.base_ptr_in(pool)?,
            len: desc.len(),
            _elems: PhantomData,
        })
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Elements `range`, read-only.
    ///
    /// # Safety
    /// No process writes any element of `range` while the slice lives.
    ///
    /// # Panics
    /// If `range` is not within the array (a bug of the caller's chunk arithmetic).
    pub(crate) unsafe fn chunk(&self, range: Range<usize>) -> &[T] {
        check_range(&range, self.len);
        // SAFETY: in bounds (checked) of a live array (constructor's contract) of
        // initialized `T: Pod` values, aligned (checked when resolved); not written while
        // the slice lives (caller's contract).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(range.start), range.len()) }
    }
}

impl<T: Pod> ArrayViewMut<T> {
    /// Resolves `desc` against `pool`, this process's handle of the job's mempool.
    ///
    /// # Safety
    /// The array must stay allocated while the view is used, and its owner must not read
    /// or write it until the job has ended (it lent it by `&mut`).
    ///
    /// # Errors
    /// As [`ArrayView::resolve`].
    pub(crate) unsafe fn resolve(desc: &ArrayDesc<T>, pool: &Mempool) -> Result<Self> {
        Ok(ArrayViewMut {
            ptr: desc.base_ptr_in(pool)?,
            len: desc.len(),
            _elems: PhantomData,
        })
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Elements `range`, writable.
    ///
    /// # Safety
    /// No other reference to any element of `range` is used, in any process, while the
    /// slice lives: `range` is (part of) a chunk handed to this worker only, and this
    /// worker forms no other slice over it meanwhile.
    ///
    /// # Panics
    /// If `range` is not within the array.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn chunk_mut(&self, range: Range<usize>) -> &mut [T] {
        check_range(&range, self.len);
        // SAFETY: in bounds (checked) of a live, aligned array.
        let start = unsafe { self.ptr.as_ptr().add(range.start) };
        let bytes = range.len() * std::mem::size_of::<T>();
        // SAFETY: the range is in bounds and this worker's alone (the caller's contract).
        unsafe { map_for_writing(start.cast(), bytes) };
        // SAFETY: in bounds, live, aligned; exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(start, range.len()) }
    }

    /// Elements `range`, read-only.
    ///
    /// # Safety
    /// No process writes any element of `range` while the slice lives (e.g. a later
    /// pass reads what an earlier pass of the same operation wrote).
    ///
    /// # Panics
    /// If `range` is not within the array.
    pub(crate) unsafe fn chunk(&self, range: Range<usize>) -> &[T] {
        check_range(&range, self.len);
        // SAFETY: in bounds, live, aligned; unwritten while the slice lives (caller).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(range.start), range.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::{window_starts, FAULT_AROUND};

    #[test]
    fn one_read_lands_in_every_window_a_range_reaches_and_none_outside_it() {
        for addr in [
            0,
            1,
            4096,
            FAULT_AROUND - 8,
            FAULT_AROUND,
            3 * FAULT_AROUND + 100,
        ] {
            for bytes in [
                1,
                4096,
                FAULT_AROUND - 1,
                FAULT_AROUND,
                5 * FAULT_AROUND + 7,
            ] {
                let offsets: Vec<usize> = window_starts(addr, bytes).collect();
                let windows: Vec<usize> =
                    offsets.iter().map(|o| (addr + o) / FAULT_AROUND).collect();
                let first = addr / FAULT_AROUND;
                let last = (addr + bytes - 1) / FAULT_AROUND;
                assert_eq!(
                    windows,
                    (first..=last).collect::<Vec<_>>(),
                    "{addr} + {bytes}"
                );
                assert!(offsets.iter().all(|&o| o < bytes));
            }
        }
    }
}
