//! [`Block`], the owning handle of an allocation, and [`RawBlock`], its plain-data form
//! for handing ownership to another process.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::{current_pid, Mempool};

/// An allocation in a [`Mempool`]; frees it when dropped.
///
/// The memory is shared: every process of the tree sees the same bytes at the same
/// address. Ownership is per process: a `Block` that a forked child inherited from its
/// parent's memory is not the child's (dropping it there does nothing; the parent still
/// owns the allocation). To move ownership to another process, use [`Block::into_raw`]
/// and [`Mempool::adopt`].
///
/// # Examples
///
/// ```
/// let pool = procyon::Mempool::new(4 << 20)?;
/// let mut block = pool.alloc(16, 64)?;
/// block.as_bytes_mut().copy_from_slice(b"sixteen bytes!!!");
/// assert_eq!(&block.as_bytes()[..7], b"sixteen");
/// assert_eq!(block.as_ptr() as usize % 64, 0);
/// # Ok::<(), procyon::Error>(())
/// ```
pub struct Block {
    pool: Mempool,
    /// Offset of the payload from the region base.
    offset: u64,
    len: usize,
    generation: u64,
    /// The process that owns (and will free) the block.
    owner: i32,
    /// Payload bytes known to read as zero right after allocation.
    known_zero: Range<usize>,
}

impl Block {
    pub(crate) fn new(
        pool: Mempool,
        offset: u64,
        len: usize,
        generation: u64,
        known_zero: Range<usize>,
    ) -> Block {
        debug_assert!(
            known_zero.start <= known_zero.end && known_zero.end <= len.max(known_zero.end)
        );
        let known_zero = known_zero.start.min(len)..known_zero.end.min(len);
        Block {
            pool,
            offset,
            len,
            generation,
            owner: current_pid(),
            known_zero,
        }
    }

    /// Address of the first payload byte (aligned as requested, at least to 64), the same
    /// in every process of the tree.
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: the payload offset lies inside the pool's mapping, which the `pool`
        // handle keeps mapped.
        unsafe { self.pool.base().add(self.offset as usize) }
    }

    /// The payload.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the block owns `len` bytes at `as_ptr()`, populated and initialized
        // (mapped memory always is); nobody may write them without `&mut self` except
        // through descriptors whose users promised not to (their `# Safety` contracts).
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The payload, writable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_bytes`, and `&mut self` makes this the only reference made
        // through the handle.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }

    /// Bytes requested.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether zero bytes were requested.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of the payload from the pool's base, the same in every process.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The allocation's generation: unique in its pool, so a stale descriptor of a freed
    /// and reused block is told apart.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The pool the block belongs to.
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// Releases ownership as plain data, to be [adopted](Mempool::adopt) (or
    /// [freed](Mempool::free_raw)) exactly once, in this or another process of the tree.
    /// Until then the block stays allocated.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let raw = pool.alloc(10, 64)?.into_raw();
    /// let bytes = bincode::serialize(&raw).unwrap(); // e.g. into a message
    /// let back: procyon::RawBlock = bincode::deserialize(&bytes).unwrap();
    /// assert_eq!(pool.adopt(back)?.len(), 10);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn into_raw(self) -> RawBlock {
        let raw = self.raw();
        if self.owner == current_pid() {
            self.pool.detach(self.offset);
        }
        let mut this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and its destructor never runs; dropping the
        // pool handle in place releases our reference to the pool.
        unsafe { std::ptr::drop_in_place(&mut this.pool) };
        raw
    }

    /// The plain-data description of this block (without releasing it).
    pub(crate) fn raw(&self) -> RawBlock {
        RawBlock {
            pool_id: self.pool.id(),
            offset: self.offset,
            len: self.len as u64,
            generation: self.generation,
        }
    }

    /// Payload bytes known to read as zero since allocation.
    pub(crate) fn known_zero(&self) -> Range<usize> {
        self.known_zero.clone()
    }

    /// Zeroes the payload, skipping the bytes known to be zero already.
    pub(crate) fn zero_unknown(&mut self) {
        let Range { start, end } = self.known_zero();
        let bytes = self.as_bytes_mut();
        let len = bytes.len();
        bytes[..start].fill(0);
        bytes[end.max(start)..len].fill(0);
        self.known_zero = 0..len;
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if self.owner != current_pid() {
            // Inherited through fork: the parent owns it.
            return;
        }
        let result = self
            .pool
            .free_owned(self.offset, self.len as u64, self.generation);
        // An error means the block was already freed by `free_tagged` (allowed) or the
        // pool is unusable; neither is worth a panic in a destructor.
        let _ = result;
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("pool", &format_args!("{:#x}", self.pool.id()))
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("generation", &self.generation)
            .finish()
    }
}

/// A [`Block`] as plain data: pool id, offset, length, generation. Valid in every
/// process of the tree; carries ownership when made by [`Block::into_raw`].
///
/// Every use is validated: a `RawBlock` of another pool, of a freed block (even if its
/// memory was reused) or one already adopted is rejected with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RawBlock {
    pool_id: u64,
    offset: u64,
    len: u64,
    generation: u64,
}

impl RawBlock {
    /// Id of the pool the block belongs to.
    pub fn pool_id(&self) -> u64 {
        self.pool_id
    }

    /// Offset of the payload from the pool's base.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes requested.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether zero bytes were requested.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Generation of the allocation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Assembles a `RawBlock` from its parts (e.g. from an array descriptor); nothing is
    /// checked until it is used.
    pub(crate) fn from_parts(pool_id: u64, offset: u64, len: u64, generation: u64) -> RawBlock {
        RawBlock {
            pool_id,
            offset,
            len,
            generation,
        }
    }
}
