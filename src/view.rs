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
        // SAFETY: in bounds (checked) of a live, aligned array; exclusive by the
        // caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(range.start), range.len()) }
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
