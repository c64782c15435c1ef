//! [`SharedVec<T>`]: a growable vector of plain data in the mempool, pushed to and read
//! from every process of the tree under its lock; [`SharedBuffer`]: the same for bytes.
//!
//! Fields, all under the lock: `len` (elements `0..len` are initialized), `cap` (room in
//! the data block, in elements), the data block ([`Storage`]). Growth doubles the
//! capacity (at least): a new block is allocated, the elements copied, the block
//! switched, the old one freed. Every step keeps `len <= cap <= room` and the first
//! `len` elements written, so a holder that dies anywhere leaves a consistent vector: the
//! next locker is not stopped (the death is counted in
//! [`owner_deaths`](SharedVec::owner_deaths)). An element being written by `set` when
//! its writer died may be torn (`push` publishes an element only after writing it).

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

use bytemuck::Pod;

use super::storage::Storage;
use super::{enter, HandleWait};
use crate::error::{Error, Result};
use crate::mempool::{pool_out_of_memory, Mempool};
use crate::sync::object::{typed_desc, Body, Kind, Object, Shape};
use crate::sync::raw_lock::{Held, RawLock};

/// The block of a [`SharedVec<T>`] (and of a [`SharedBuffer`], with `T = u8`).
#[repr(C)]
pub(crate) struct VecBody {
    lock: RawLock,
    len: std::sync::atomic::AtomicU64,
    cap: std::sync::atomic::AtomicU64,
    storage: Storage,
}

impl Body for VecBody {
    fn release(&self, pool: &Mempool) {
        self.storage.release(pool);
    }
}

use std::sync::atomic::Ordering::Relaxed;

/// A growable vector of plain-data `T` shared by every process of the tree. See the
/// module docs.
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// use procyon::collections::{SharedVec, SharedVecDesc};
/// use procyon::Pool;
///
/// let pool = Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let v = SharedVec::<u32>::new(pool.mempool())?;
/// pool.par_range(0u32..1000).for_each_with(v.desc(), |v: &SharedVecDesc<u32>, i: u32| {
///     v.open().unwrap().push(i).unwrap();
/// })?;
/// let mut all = v.to_vec()?;
/// all.sort();
/// assert_eq!(all, (0..1000).collect::<Vec<_>>());
/// # Ok(()) }
/// ```
pub struct SharedVec<T: Pod> {
    obj: Object<VecBody>,
    wait: HandleWait,
    _elem: PhantomData<T>,
}

typed_desc! {
    /// The plain-data descriptor of a [`SharedVec<T>`]: `Copy`, serde, valid in every
    /// process of the tree.
    SharedVecDesc<T>
}

impl<T: Pod> SharedVecDesc<T> {
    /// A handle of the vector in this process.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if it was freed, the pool is unknown here, or the
    /// block is not a `SharedVec<T>` of this `T`.
    pub fn open(&self) -> Result<SharedVec<T>> {
        SharedVec::open_kind(&self.raw, Kind::Vec)
    }
}

impl<T: Pod> SharedVec<T> {
    /// An empty vector in `pool` (no data block until the first push).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if its header does not fit.
    pub fn new(pool: &Mempool) -> Result<Self> {
        Self::create_kind(pool, Kind::Vec)
    }

    /// An empty vector with room for `capacity` elements.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if it does not fit.
    pub fn with_capacity(pool: &Mempool, capacity: usize) -> Result<Self> {
        let v = Self::new(pool)?;
        v.reserve(capacity)?;
        Ok(v)
    }

    pub(crate) fn create_kind(pool: &Mempool, kind: Kind) -> Result<Self> {
        let obj = Object::create(pool, Shape::of::<T>(kind), |body: NonNull<VecBody>| {
            // SAFETY: `create` hands us the zeroed (empty vector, no block), unshared
            // body; the lock is at its final address.
            unsafe { (*body.as_ptr()).lock.init() }
        })?;
        Ok(SharedVec {
            obj,
            wait: HandleWait::default(),
            _elem: PhantomData,
        })
    }

    pub(crate) fn open_kind(raw: &crate::sync::object::RawObjectDesc, kind: Kind) -> Result<Self> {
        Ok(SharedVec {
            obj: Object::open(raw, Shape::of::<T>(kind))?,
            wait: HandleWait::default(),
            _elem: PhantomData,
        })
    }

    /// The descriptor, for other processes of the tree.
    pub fn desc(&self) -> SharedVecDesc<T> {
        SharedVecDesc::from_raw(self.obj.desc())
    }

    pub(crate) fn raw_desc(&self) -> crate::sync::object::RawObjectDesc {
        self.obj.desc()
    }

    /// Bounds every lock wait of this handle (`None`: wait as long as it takes, the
    /// default); past it an operation fails with [`Error::Timeout`].
    pub fn set_lock_timeout(&mut self, timeout: Option<Duration>) {
        self.wait.set(timeout);
    }

    fn lock(&self) -> Result<Held<'_>> {
        // Nothing to repair: every step keeps the vector consistent (module docs).
        enter(&self.obj.body().lock, self.wait.get(), || {})
    }

    fn data(&self) -> Result<*mut T> {
        Ok(self
            .obj
            .body()
            .storage
            .ptr(self.obj.pool())?
            .map_or(NonNull::dangling().as_ptr(), |p| p.cast::<T>()))
    }

    /// Makes room for `additional` more elements than `len`, under the lock held.
    fn grow_for(&self, additional: usize) -> Result<()> {
        let body = self.obj.body();
        let len = body.len.load(Relaxed);
        let cap = body.cap.load(Relaxed);
        let size = size_of::<T>() as u64;
        let need = len
            .checked_add(additional as u64)
            .ok_or_else(|| self.too_big(u64::MAX))?;
        if need <= cap || size == 0 {
            if size == 0 {
                body.cap.store(u64::MAX, Relaxed);
            }
            return Ok(());
        }
        let new_cap = need.max(cap.saturating_mul(2)).max(4);
        let bytes = new_cap
            .checked_mul(size)
            .ok_or_else(|| self.too_big(new_cap))?;
        let bytes = usize::try_from(bytes).map_err(|_| self.too_big(new_cap))?;
        let copy = (len * size) as usize;
        body.storage
            .replace(self.obj.pool(), bytes, align_of::<T>(), |old, new| {
                if let Some(old) = old {
                    // SAFETY: the old block holds `len` elements (`copy` bytes), the new
                    // one at least that many; two distinct blocks do not overlap; we hold
                    // the lock, so nobody else touches either.
                    unsafe { std::ptr::copy_nonoverlapping(old, new, copy) };
                }
            })?;
        body.cap.store(new_cap, Relaxed);
        Ok(())
    }

    fn too_big(&self, elems: u64) -> Error {
        pool_out_of_memory(
            usize::try_from(elems.saturating_mul(size_of::<T>() as u64)).unwrap_or(usize::MAX),
            0,
            self.obj.pool().capacity(),
        )
    }

    /// Appends `value`, growing the data block if needed.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the vector must grow and the pool has no room (the
    /// vector is unchanged); [`Error::Timeout`] past the handle's lock timeout.
    pub fn push(&self, value: T) -> Result<()> {
        self.extend_from_slice(std::slice::from_ref(&value))
    }

    /// Appends every element of `values` (one lock, at most one growth).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let v = procyon::collections::SharedVec::new(&pool)?;
    /// v.extend_from_slice(&[1u64, 2, 3])?;
    /// v.push(4)?;
    /// assert_eq!(v.to_vec()?, [1, 2, 3, 4]);
    /// assert_eq!(v.get(2)?, 3);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn extend_from_slice(&self, values: &[T]) -> Result<()> {
        let _held = self.lock()?;
        self.grow_for(values.len())?;
        let body = self.obj.body();
        let len = body.len.load(Relaxed) as usize;
        let data = self.data()?;
        // SAFETY: `grow_for` made room for `len + values.len()` elements; we hold the
        // lock, so no other process writes there; `values` is our own memory.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), data.add(len), values.len()) };
        // Published after the elements are written (a death before this leaves them
        // unpublished).
        body.len.store((len + values.len()) as u64, Relaxed);
        Ok(())
    }

    /// Makes room for at least `additional` more elements.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn reserve(&self, additional: usize) -> Result<()> {
        let _held = self.lock()?;
        self.grow_for(additional)
    }

    /// A copy of element `index`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] past the end; [`Error::Timeout`] past the lock timeout.
    pub fn get(&self, index: usize) -> Result<T> {
        let _held = self.lock()?;
        let data = self.checked(index)?;
        // SAFETY: `checked` bounds-checked `index` against `len`; the element is
        // initialized and nobody writes it while we hold the lock.
        Ok(unsafe { data.add(index).read() })
    }

    /// Overwrites element `index`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        let _held = self.lock()?;
        let data = self.checked(index)?;
        // SAFETY: as in `get`; nobody reads or writes it while we hold the lock.
        unsafe { data.add(index).write(value) };
        Ok(())
    }

    fn checked(&self, index: usize) -> Result<*mut T> {
        let len = self.obj.body().len.load(Relaxed) as usize;
        if index >= len {
            return Err(Error::OutOfRange {
                start: index,
                end: index + 1,
                len,
            });
        }
        self.data()
    }

    /// Removes and returns the last element.
    ///
    /// # Errors
    /// [`Error::Timeout`] past the lock timeout.
    pub fn pop(&self) -> Result<Option<T>> {
        let _held = self.lock()?;
        let body = self.obj.body();
        let len = body.len.load(Relaxed) as usize;
        if len == 0 {
            return Ok(None);
        }
        let data = self.data()?;
        // SAFETY: element `len - 1` is initialized; we hold the lock.
        let v = unsafe { data.add(len - 1).read() };
        body.len.store(len as u64 - 1, Relaxed);
        Ok(Some(v))
    }

    /// Copies elements `range` into `out` (whose length says how many).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] if `start..start + out.len()` passes the end.
    pub fn read_into(&self, start: usize, out: &mut [T]) -> Result<()> {
        let _held = self.lock()?;
        let len = self.obj.body().len.load(Relaxed) as usize;
        let end = start
            .checked_add(out.len())
            .filter(|&e| e <= len)
            .ok_or(Error::OutOfRange {
                start,
                end: start.saturating_add(out.len()),
                len,
            })?;
        let data = self.data()?;
        // SAFETY: `start..end` is within the initialized elements; we hold the lock.
        unsafe { std::ptr::copy_nonoverlapping(data.add(start), out.as_mut_ptr(), end - start) };
        Ok(())
    }

    /// A copy of every element.
    ///
    /// # Errors
    /// [`Error::Timeout`] past the lock timeout.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let _held = self.lock()?;
        let len = self.obj.body().len.load(Relaxed) as usize;
        let data = self.data()?;
        let mut out = Vec::with_capacity(len);
        // SAFETY: `len` initialized elements at `data`; `out` has room for them; we hold
        // the lock.
        unsafe {
            std::ptr::copy_nonoverlapping(data, out.as_mut_ptr(), len);
            out.set_len(len);
        }
        Ok(out)
    }

    /// Shortens the vector to `len` elements (no effect if it is not longer).
    ///
    /// # Errors
    /// [`Error::Timeout`] past the lock timeout.
    pub fn truncate(&self, len: usize) -> Result<()> {
        let _held = self.lock()?;
        let body = self.obj.body();
        if (len as u64) < body.len.load(Relaxed) {
            body.len.store(len as u64, Relaxed);
        }
        Ok(())
    }

    /// The number of elements (a snapshot: others may push meanwhile).
    pub fn len(&self) -> usize {
        // Relaxed: a snapshot; operations that depend on it read it under the lock.
        self.obj.body().len.load(Relaxed) as usize
    }

    /// Whether the vector is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room in the data block, in elements (a snapshot).
    pub fn capacity(&self) -> usize {
        // Relaxed: a snapshot.
        self.obj.body().cap.load(Relaxed).min(usize::MAX as u64) as usize
    }

    /// How many processes died holding the vector's lock (the vector stays consistent;
    /// see the module docs).
    pub fn owner_deaths(&self) -> u32 {
        self.obj.body().lock.deaths()
    }
}

impl<T: Pod> Clone for SharedVec<T> {
    /// Another handle of the same vector (with the default lock timeout).
    fn clone(&self) -> Self {
        SharedVec {
            obj: self.obj.clone_handle(),
            wait: HandleWait::default(),
            _elem: PhantomData,
        }
    }
}

impl<T: Pod> fmt::Debug for SharedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedVec")
            .field("desc", &self.obj.desc())
            .field("len", &self.len())
            .finish()
    }
}

/// A growable byte buffer shared by every process of the tree (Netmulticore's
/// `Netmcore_buffer`): a [`SharedVec<u8>`] under another name and descriptor type, with
/// byte-oriented methods.
///
/// # Examples
///
/// ```
/// let pool = procyon::Mempool::new(4 << 20)?;
/// let buf = procyon::collections::SharedBuffer::new(&pool)?;
/// buf.append(b"hello, ")?;
/// buf.append(b"world")?;
/// let mut word = [0u8; 5];
/// buf.read(7, &mut word)?;
/// assert_eq!(&word, b"world");
/// assert_eq!(buf.to_vec()?, b"hello, world");
/// # Ok::<(), procyon::Error>(())
/// ```
pub struct SharedBuffer {
    bytes: SharedVec<u8>,
}

typed_desc! {
    /// The plain-data descriptor of a [`SharedBuffer`]: `Copy`, serde, valid in every
    /// process of the tree.
    SharedBufferDesc<>
}

impl SharedBufferDesc {
    /// A handle of the buffer in this process.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if it was freed, the pool is unknown here, or the
    /// block is not a buffer.
    pub fn open(&self) -> Result<SharedBuffer> {
        Ok(SharedBuffer {
            bytes: SharedVec::open_kind(&self.raw, Kind::Buffer)?,
        })
    }
}

impl SharedBuffer {
    /// An empty buffer in `pool`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if its header does not fit.
    pub fn new(pool: &Mempool) -> Result<Self> {
        Ok(SharedBuffer {
            bytes: SharedVec::create_kind(pool, Kind::Buffer)?,
        })
    }

    /// The descriptor, for other processes of the tree.
    pub fn desc(&self) -> SharedBufferDesc {
        SharedBufferDesc::from_raw(self.bytes.raw_desc())
    }

    /// Appends `bytes` at the end, as one piece (no other append lands inside it).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the buffer must grow and the pool has no room.
    pub fn append(&self, bytes: &[u8]) -> Result<()> {
        self.bytes.extend_from_slice(bytes)
    }

    /// Copies `out.len()` bytes from `offset` into `out`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] if that passes the end.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.bytes.read_into(offset, out)
    }

    /// A copy of the whole buffer.
    ///
    /// # Errors
    /// [`Error::Timeout`] past the lock timeout.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        self.bytes.to_vec()
    }

    /// Shortens the buffer to `len` bytes.
    ///
    /// # Errors
    /// [`Error::Timeout`] past the lock timeout.
    pub fn truncate(&self, len: usize) -> Result<()> {
        self.bytes.truncate(len)
    }

    /// Its length in bytes (a snapshot).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bounds every lock wait of this handle; see [`SharedVec::set_lock_timeout`].
    pub fn set_lock_timeout(&mut self, timeout: Option<Duration>) {
        self.bytes.set_lock_timeout(timeout);
    }
}

impl Clone for SharedBuffer {
    /// Another handle of the same buffer.
    fn clone(&self) -> Self {
        SharedBuffer {
            bytes: self.bytes.clone(),
        }
    }
}

impl fmt::Debug for SharedBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBuffer")
            .field("desc", &self.bytes.raw_desc())
            .field("len", &self.len())
            .finish()
    }
}

crate::sync::handover::shared_desc!(impl[T: bytemuck::Pod] SharedVecDesc<T> => SharedVec<T>);
crate::sync::handover::shared_desc!(impl[] SharedBufferDesc => SharedBuffer);
