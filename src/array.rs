//! `SharedArray<T>`: plain-data arrays in the mempool, shared by every process of the tree.
//!
//! Two roles, two types:
//!
//! * [`SharedArray<T>`] is the **owning handle**: it allocates in a [`Mempool`], gives
//!   safe `&[T]` / `&mut [T]` access in the owning process, and frees on drop.
//! * [`ArrayDesc<T>`] is the **descriptor**: `Copy`, serde plain data (pool id, offset,
//!   length, element size and alignment, generation), valid in every process of the tree.
//!   A process resolves it to a slice of the same memory, with no copy: tasks read their
//!   input chunk and write their output chunk in place. Resolving is `unsafe` (the compiler
//!   cannot see other processes), but every misuse that can be detected is an error:
//!   unknown pool, freed array (generation mismatch), chunk out of range, wrong element
//!   type.
//!
//! Ownership moves between processes with [`SharedArray::into_desc`] and
//! [`SharedArray::adopt`]: a worker can allocate its output and hand it to the client.
//! [`RawArrayDesc`] is the untyped descriptor, for messages that carry arrays of any `T`.
//!
//! `T` must be [`bytemuck::Pod`] (re-exported as `procyon::Pod`): no pointers, no
//! padding, any bit pattern valid, which is what makes sharing bytes between processes
//! sound (see the `compile_fail` example on [`SharedArray`]).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::mempool::{self, Block, Mempool, RawBlock};

/// Smallest alignment of an array's first element (one cache line).
const ARRAY_ALIGN: usize = 64;

/// Arrays of at least this many bytes start on a page boundary.
///
/// Streaming kernels read one array and write another (`y[i] = f(x[i])`). When the two
/// start a little apart modulo 4 KiB (64 bytes, as cache-line aligned blocks do), a load
/// from `x` matches the low 12 address bits of a store to `y` still in the store buffer,
/// and the CPU stalls on the false dependency ("4K aliasing"): W5 (y = 2x + 1 over
/// 512 MiB) ran 7-10 % slower than over page-aligned arrays. Page-aligned arrays always
/// start at the same offset modulo 4 KiB, as large `Vec`s from the system allocator do.
/// The cost, at most two pages of padding per allocation, is kept to large arrays.
const PAGE_ALIGN_FROM: usize = 64 << 10;

/// Alignment of an array of `bytes` bytes whose elements need `elem_align`.
fn array_align(bytes: usize, elem_align: usize) -> usize {
    let base = if bytes >= PAGE_ALIGN_FROM {
        4096
    } else {
        ARRAY_ALIGN
    };
    base.max(elem_align)
}

/// An array of plain-data `T` in a [`Mempool`]; frees it when dropped.
///
/// Dereferences to `[T]`. Ownership is per process, as for [`Block`]: an array inherited
/// through `fork` is not freed by the child. [`SharedArray::desc`] gives a descriptor that
/// other processes of the tree resolve to the same memory (see [`ArrayDesc`]).
///
/// `T` must be plain data ([`Pod`](bytemuck::Pod), re-exported as `procyon::Pod`, with a
/// derive): no pointers, no padding, every bit pattern valid. That is what makes sharing
/// the bytes with other processes sound; anything else is rejected at compile time:
///
/// ```compile_fail
/// let pool = procyon::Mempool::new(4 << 20).unwrap();
/// let names = procyon::SharedArray::<String>::zeroed(&pool, 4); // String is not Pod
/// ```
///
/// # Examples
///
/// ```
/// use procyon::{Mempool, SharedArray};
///
/// let pool = Mempool::new(16 << 20)?;
/// let mut squares = SharedArray::from_fn(&pool, 1000, |i| (i * i) as u64)?;
/// squares[3] += 1;
/// assert_eq!(squares[3], 10);
/// assert_eq!(squares.iter().take(3).sum::<u64>(), 5);
/// # Ok::<(), procyon::Error>(())
/// ```
pub struct SharedArray<T: Pod> {
    /// `None` when the array holds zero bytes (no allocation is needed).
    block: Option<Block>,
    pool_id: u64,
    len: usize,
    _elem: PhantomData<T>,
}

impl<T: Pod> SharedArray<T> {
    /// Allocates room for `len` elements; contents unspecified (whatever the memory held:
    /// valid for `T: Pod`). For outputs a job overwrites whole, which need no zeroing.
    pub(crate) fn for_overwrite(pool: &Mempool, len: usize) -> Result<Self> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| mempool::pool_out_of_memory(usize::MAX, 0, pool.capacity()))?;
        let block = if bytes == 0 {
            None
        } else {
            Some(pool.alloc(bytes, array_align(bytes, std::mem::align_of::<T>()))?)
        };
        Ok(SharedArray {
            block,
            pool_id: pool.id(),
            len,
            _elem: PhantomData,
        })
    }

    /// The array's block (none for an array of no bytes), which frees the memory when
    /// dropped: what a job keeps alive of an array it reads.
    pub(crate) fn into_block(self) -> Option<Block> {
        self.block
    }

    /// An array of no elements in `pool` (no allocation: it cannot fail).
    pub(crate) fn empty(pool: &Mempool) -> Self {
        SharedArray {
            block: None,
            pool_id: pool.id(),
            len: 0,
            _elem: PhantomData,
        }
    }

    /// An array of `len` zeroes. Memory the allocator knows is zero (fresh or given-back
    /// pages) is not written again, so this is cheap even for large arrays.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the pool cannot hold `len` elements.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(16 << 20)?;
    /// let a = procyon::SharedArray::<f64>::zeroed(&pool, 1 << 20)?;
    /// assert!(a.iter().all(|&x| x == 0.0));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn zeroed(pool: &Mempool, len: usize) -> Result<Self> {
        let mut array = Self::for_overwrite(pool, len)?;
        if let Some(block) = &mut array.block {
            block.zero_unknown();
        }
        Ok(array)
    }

    /// An array holding a copy of `values`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the pool cannot hold it.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let a = procyon::SharedArray::from_slice(&pool, &[1u32, 2, 3])?;
    /// assert_eq!(a.to_vec(), vec![1, 2, 3]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn from_slice(pool: &Mempool, values: &[T]) -> Result<Self> {
        let mut array = Self::for_overwrite(pool, values.len())?;
        array.as_mut_slice().copy_from_slice(values);
        Ok(array)
    }

    /// An array whose element `i` is `f(i)`, for `i` in `0..len`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the pool cannot hold it.
    ///
    /// # Panics
    /// If `f` panics (the allocation is freed).
    pub fn from_fn(pool: &Mempool, len: usize, mut f: impl FnMut(usize) -> T) -> Result<Self> {
        let mut array = Self::for_overwrite(pool, len)?;
        for (i, slot) in array.as_mut_slice().iter_mut().enumerate() {
            *slot = f(i);
        }
        Ok(array)
    }

    fn ptr(&self) -> NonNull<T> {
        match &self.block {
            Some(block) => {
                let ptr = block.as_ptr().cast::<T>();
                debug_assert_eq!(ptr as usize % std::mem::align_of::<T>(), 0);
                // SAFETY: a block's address is inside a live mapping, hence not null.
                unsafe { NonNull::new_unchecked(ptr) }
            }
            None => NonNull::dangling(),
        }
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the block (if any) holds `len * size_of::<T>()` bytes at `ptr()`,
        // aligned for T, initialized, and any bit pattern is a valid `T: Pod`; without a
        // block, `len` elements take zero bytes and a dangling pointer is valid. Other
        // processes only write through descriptors whose users promised not to overlap
        // live references (`ArrayDesc`'s safety contracts).
        unsafe { std::slice::from_raw_parts(self.ptr().as_ptr(), self.len) }
    }

    /// The elements, writable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only reference made
        // through this handle.
        unsafe { std::slice::from_raw_parts_mut(self.ptr().as_ptr(), self.len) }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Id of the pool the array lives in.
    pub fn pool_id(&self) -> u64 {
        self.pool_id
    }

    /// A copy of the elements in an ordinary `Vec`.
    pub fn to_vec(&self) -> Vec<T> {
        self.as_slice().to_vec()
    }

    fn raw_desc(&self) -> RawArrayDesc {
        let (offset, generation) = self
            .block
            .as_ref()
            .map_or((0, 0), |b| (b.offset(), b.generation()));
        RawArrayDesc {
            pool_id: self.pool_id,
            offset,
            len: self.len as u64,
            elem_size: std::mem::size_of::<T>() as u64,
            elem_align: std::mem::align_of::<T>() as u64,
            generation,
        }
    }

    /// A descriptor of this array, to resolve in any process of the tree while this
    /// handle keeps the array alive. It does not carry ownership ([`Self::into_desc`]
    /// does).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let a = procyon::SharedArray::from_slice(&pool, &[1u8, 2, 3])?;
    /// let desc = a.desc();
    /// // SAFETY: `a` is alive and nobody writes it meanwhile.
    /// assert_eq!(unsafe { desc.as_slice() }?, &[1, 2, 3]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn desc(&self) -> ArrayDesc<T> {
        ArrayDesc::from_raw_unchecked(self.raw_desc())
    }

    /// Releases ownership as a descriptor, to be [adopted](Self::adopt) exactly once in
    /// this or another process of the tree. Until then the array stays allocated.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let desc = procyon::SharedArray::from_slice(&pool, &[7i64; 10])?.into_desc();
    /// let again = procyon::SharedArray::adopt(desc)?; // e.g. in the parent process
    /// assert_eq!(again[9], 7);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn into_desc(self) -> ArrayDesc<T> {
        let raw = self.raw_desc();
        if let Some(block) = self.block {
            let _ = block.into_raw();
        }
        ArrayDesc::from_raw_unchecked(raw)
    }

    /// Takes ownership of an array released with [`Self::into_desc`], resolving its pool
    /// through this process's registry (any process of the tree that holds a handle of the
    /// pool, e.g. one forked after the pool was created).
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if the pool is unknown here, the array was freed or
    /// already adopted, it is still owned (a descriptor from [`Self::desc`]), or the
    /// element type does not match.
    pub fn adopt(desc: ArrayDesc<T>) -> Result<Self> {
        let raw = desc.raw;
        raw.check_elem::<T>()?;
        let pool = mempool::lookup(raw.pool_id).ok_or_else(|| unknown_pool(raw.pool_id))?;
        Self::adopt_in(&pool, desc)
    }

    /// [`Self::adopt`] with the pool given explicitly.
    ///
    /// # Errors
    /// As [`Self::adopt`].
    pub fn adopt_in(pool: &Mempool, desc: ArrayDesc<T>) -> Result<Self> {
        let raw = desc.raw;
        raw.check_elem::<T>()?;
        if raw.pool_id != pool.id() {
            return Err(Error::descriptor(format!(
                "array of pool {:#x}, not of pool {:#x}",
                raw.pool_id,
                pool.id()
            )));
        }
        let bytes = raw.bytes()?;
        let len =
            usize::try_from(raw.len).map_err(|_| Error::descriptor("length overflows usize"))?;
        let block = if bytes == 0 {
            None
        } else {
            Some(pool.adopt(RawBlock::from_parts(
                raw.pool_id,
                raw.offset,
                bytes,
                raw.generation,
            ))?)
        };
        Ok(SharedArray {
            block,
            pool_id: raw.pool_id,
            len,
            _elem: PhantomData,
        })
    }
}

fn unknown_pool(pool_id: u64) -> Error {
    Error::descriptor(format!(
        "unknown pool {pool_id:#x}: not a pool of this process tree, or this process \
         dropped its last handle"
    ))
}

impl<T: Pod> Deref for SharedArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod> DerefMut for SharedArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: Pod> AsRef<[T]> for SharedArray<T> {
    fn as_ref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The untyped form of an [`ArrayDesc`]: plain data naming an array of any element type,
/// for messages that carry arrays of several types. [`RawArrayDesc::typed`] checks the
/// element type back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RawArrayDesc {
    pool_id: u64,
    offset: u64,
    len: u64,
    elem_size: u64,
    elem_align: u64,
    generation: u64,
}

impl RawArrayDesc {
    /// Id of the pool the array lives in.
    pub fn pool_id(&self) -> u64 {
        self.pool_id
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of one element in bytes.
    pub fn elem_size(&self) -> u64 {
        self.elem_size
    }

    /// Alignment of the element type.
    pub fn elem_align(&self) -> u64 {
        self.elem_align
    }

    /// Offset of the first element from the pool's base (the same in every process).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Generation of the allocation holding the array (0 for an array of zero bytes).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The typed descriptor, if the element size and alignment match `T`'s.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if they do not.
    pub fn typed<T: Pod>(self) -> Result<ArrayDesc<T>> {
        self.check_elem::<T>()?;
        Ok(ArrayDesc::from_raw_unchecked(self))
    }

    fn check_elem<T: Pod>(&self) -> Result<()> {
        let (size, align) = (
            std::mem::size_of::<T>() as u64,
            std::mem::align_of::<T>() as u64,
        );
        if self.elem_size != size || self.elem_align != align {
            return Err(Error::descriptor(format!(
                "element type mismatch: the array holds {}-byte elements (align {}), read as \
                 {} ({size} bytes, align {align})",
                self.elem_size,
                self.elem_align,
                std::any::type_name::<T>()
            )));
        }
        Ok(())
    }

    fn bytes(&self) -> Result<u64> {
        self.len
            .checked_mul(self.elem_size)
            .ok_or_else(|| Error::descriptor("length times element size overflows"))
    }
}

/// A descriptor of a [`SharedArray<T>`]: `Copy`, serde plain data (pool id, offset,
/// length, element size and alignment, generation), valid in every process of the tree.
///
/// A process resolves it to a slice of the same memory, with no copy. Resolving is
/// `unsafe` (the compiler cannot see other processes), but every misuse that can be
/// detected is an error: unknown pool, freed array (generation mismatch), chunk out of
/// range, wrong element type. A descriptor from [`SharedArray::desc`] borrows; one from
/// [`SharedArray::into_desc`] carries ownership, for [`SharedArray::adopt`].
///
/// # Examples
///
/// Tasks in other processes write disjoint chunks of one output array (here in one
/// process for brevity):
///
/// ```
/// let pool = procyon::Mempool::new(4 << 20)?;
/// let out = procyon::SharedArray::<u32>::zeroed(&pool, 100)?;
/// let desc = out.desc();
/// let bytes = bincode::serialize(&desc).unwrap(); // travels in a message
/// let desc: procyon::ArrayDesc<u32> = bincode::deserialize(&bytes).unwrap();
/// for chunk in [0..50, 50..100] {
///     // SAFETY: the array is alive; the chunks are disjoint and nobody else reads or
///     // writes them meanwhile.
///     let part = unsafe { desc.chunk_mut(chunk.clone()) }?;
///     part.iter_mut().zip(chunk).for_each(|(x, i)| *x = i as u32);
/// }
/// assert_eq!(out[77], 77);
/// # Ok::<(), procyon::Error>(())
/// ```
pub struct ArrayDesc<T> {
    raw: RawArrayDesc,
    _elem: PhantomData<fn() -> T>,
}

impl<T> Clone for ArrayDesc<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ArrayDesc<T> {}

impl<T> PartialEq for ArrayDesc<T> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl<T> Eq for ArrayDesc<T> {}

impl<T> fmt::Debug for ArrayDesc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayDesc")
            .field("elem", &std::any::type_name::<T>())
            .field("raw", &self.raw)
            .finish()
    }
}

impl<T> Serialize for ArrayDesc<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for ArrayDesc<T> {
    /// Deserializes without checks: every use of the descriptor validates it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        RawArrayDesc::deserialize(deserializer).map(ArrayDesc::from_raw_unchecked)
    }
}

impl<T> ArrayDesc<T> {
    fn from_raw_unchecked(raw: RawArrayDesc) -> Self {
        ArrayDesc {
            raw,
            _elem: PhantomData,
        }
    }

    /// The untyped descriptor.
    pub fn into_raw(self) -> RawArrayDesc {
        self.raw
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.raw.len as usize
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }

    /// Id of the pool the array lives in.
    pub fn pool_id(&self) -> u64 {
        self.raw.pool_id
    }
}

impl<T: Pod> ArrayDesc<T> {
    /// Checks the descriptor names a live array of `T` in a pool this process knows, and
    /// returns the address of its first element.
    /// Checks the element type and size; `Ok(None)` for an array of no bytes (which
    /// resolves to a dangling pointer in any process), else its size in bytes.
    fn byte_size(&self) -> Result<Option<u64>> {
        let raw = &self.raw;
        raw.check_elem::<T>()?;
        let bytes = raw.bytes()?;
        if bytes > isize::MAX as u64 || usize::try_from(raw.len).is_err() {
            return Err(Error::descriptor("array larger than the address space"));
        }
        Ok((bytes != 0).then_some(bytes))
    }

    fn resolve(&self) -> Result<NonNull<T>> {
        let Some(bytes) = self.byte_size()? else {
            return Ok(NonNull::dangling());
        };
        let id = self.raw.pool_id;
        let pool = mempool::lookup(id).ok_or_else(|| unknown_pool(id))?;
        self.resolve_checked(&pool, bytes)
    }

    /// [`Self::resolve`] against `pool`, this process's handle of the descriptor's
    /// mempool (a worker's own handle: no registry lookup).
    fn resolve_in(&self, pool: &Mempool) -> Result<NonNull<T>> {
        let Some(bytes) = self.byte_size()? else {
            return Ok(NonNull::dangling());
        };
        if self.raw.pool_id != pool.id() {
            return Err(Error::descriptor(
                "the array lives in another pool than the job's: pass arrays of the pool that runs the job",
            ));
        }
        self.resolve_checked(pool, bytes)
    }

    fn resolve_checked(&self, pool: &Mempool, bytes: u64) -> Result<NonNull<T>> {
        let raw = &self.raw;
        let ptr = pool.resolve(raw.offset, raw.generation, bytes)?.cast::<T>();
        if ptr.as_ptr() as usize % std::mem::align_of::<T>() != 0 {
            return Err(Error::descriptor("misaligned array offset"));
        }
        Ok(ptr)
    }

    /// The address of the first element, checked as [`Self::validate`] does but against
    /// `pool` (this process's handle of the descriptor's mempool; an error if the
    /// descriptor names another pool), without forming a reference to any element (other
    /// processes may be writing some of them).
    pub(crate) fn base_ptr_in(&self, pool: &Mempool) -> Result<NonNull<T>> {
        self.resolve_in(pool)
    }

    /// Checks that the descriptor names a live array of `T` in a pool of this process
    /// tree, without resolving it.
    ///
    /// # Errors
    /// As [`Self::as_slice`].
    pub fn validate(&self) -> Result<()> {
        self.resolve().map(|_| ())
    }

    /// The whole array, read-only.
    ///
    /// # Safety
    /// For `'a`, the array must stay allocated and its pool mapped in this process (a
    /// handle of the pool alive here), and no process may write any element of it.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`]: unknown pool, array freed (generation mismatch),
    /// element size or alignment not `T`'s.
    pub unsafe fn as_slice<'a>(&self) -> Result<&'a [T]> {
        // SAFETY: the chunk 0..len is in range; the caller's contract covers the rest.
        unsafe { self.chunk(0..self.len()) }
    }

    /// Elements `range` of the array, read-only.
    ///
    /// # Safety
    /// As [`Self::as_slice`], for the elements of `range` only.
    ///
    /// # Errors
    /// As [`Self::as_slice`], and [`Error::OutOfRange`] if `range` is not within the array.
    pub unsafe fn chunk<'a>(&self, range: Range<usize>) -> Result<&'a [T]> {
        let ptr = self.chunk_ptr(&range)?;
        // SAFETY: `chunk_ptr` checked that the range lies in a live block holding
        // initialized, aligned `T: Pod` values; the caller promises it stays alive and
        // unwritten for 'a.
        Ok(unsafe { std::slice::from_raw_parts(ptr.as_ptr(), range.end - range.start) })
    }

    /// Elements `range` of the array, writable in place: what other processes see, with
    /// no copy. Several processes may write disjoint chunks at the same time.
    ///
    /// # Safety
    /// For `'a`, the array must stay allocated and its pool mapped in this process, and
    /// no other reference to any element of `range` may be used, in any process (no
    /// overlapping chunks, no `SharedArray::as_slice` of the owner meanwhile).
    ///
    /// # Errors
    /// As [`Self::chunk`].
    pub unsafe fn chunk_mut<'a>(&self, range: Range<usize>) -> Result<&'a mut [T]> {
        let ptr = self.chunk_ptr(&range)?;
        // SAFETY: as in `chunk`, and the caller promises exclusive access to the range.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), range.end - range.start) })
    }

    fn chunk_ptr(&self, range: &Range<usize>) -> Result<NonNull<T>> {
        let len = self.len();
        if range.start > range.end || range.end > len {
            return Err(Error::OutOfRange {
                start: range.start,
                end: range.end,
                len,
            });
        }
        let base = self.resolve()?;
        // SAFETY: `range.start <= len` elements into an array of `len` elements (or a
        // dangling pointer with zero-sized total, where the offset is zero bytes).
        Ok(unsafe { NonNull::new_unchecked(base.as_ptr().add(range.start)) })
    }
}
