//! [`SharedBox<T>`]: one plain-data value in the mempool that every process of the tree
//! reads and replaces (Netmulticore's `Netmcore_ref`), over a robust
//! [`Mutex<T>`](crate::sync::Mutex).

use std::fmt;

use bytemuck::Pod;

use crate::error::Result;
use crate::mempool::Mempool;
use crate::sync::object::typed_desc;
use crate::sync::{Mutex, MutexDesc};

/// A shared plain-data value: `get`, `set`, `update` under a robust lock.
///
/// A writer that dies in the middle of `set` or `update` poisons it: later calls fail
/// with [`Error::Poisoned`](crate::Error::Poisoned) until somebody repairs the value
/// through [`SharedBox::mutex`].
///
/// # Examples
///
/// ```
/// # fn main() -> procyon::Result<()> {
/// use procyon::collections::{SharedBox, SharedBoxDesc};
/// use procyon::{Ctx, Pool};
///
/// let pool = Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let best = SharedBox::new(pool.mempool(), [0u64; 2])?; // [score, item]
/// pool.par_range(0u64..1000).for_each_with(best.desc(), |b: &SharedBoxDesc<[u64; 2]>, i: u64| {
///     let score = (i * 7919) % 1009;
///     b.open().unwrap().update(|best| if score > best[0] { *best = [score, i] }).unwrap();
/// })?;
/// assert_eq!(best.get()?[0], 1008);
/// # Ok(()) }
/// ```
pub struct SharedBox<T: Pod> {
    mutex: Mutex<T>,
}

typed_desc! {
    /// The plain-data descriptor of a [`SharedBox<T>`]: `Copy`, serde, valid in every
    /// process of the tree.
    SharedBoxDesc<T>
}

impl<T: Pod> SharedBoxDesc<T> {
    /// A handle of the box in this process.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`](crate::Error::InvalidDescriptor) if it was freed, the
    /// pool is unknown here, or the block is not a box of this `T`.
    pub fn open(&self) -> Result<SharedBox<T>> {
        Ok(SharedBox {
            mutex: MutexDesc::<T>::from_raw(self.raw).open()?,
        })
    }
}

impl<T: Pod> SharedBox<T> {
    /// A box holding `value`, in `pool`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory) if it does not fit.
    pub fn new(pool: &Mempool, value: T) -> Result<Self> {
        Ok(SharedBox {
            mutex: Mutex::new(pool, value)?,
        })
    }

    /// The descriptor, for other processes of the tree.
    pub fn desc(&self) -> SharedBoxDesc<T> {
        SharedBoxDesc::from_raw(self.mutex.desc().raw)
    }

    /// A copy of the value.
    ///
    /// # Errors
    /// [`Error::Poisoned`](crate::Error::Poisoned) if a writer died or panicked half-way
    /// and nobody repaired the value.
    pub fn get(&self) -> Result<T> {
        Ok(*self.mutex.lock()?)
    }

    /// Replaces the value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn set(&self, value: T) -> Result<()> {
        *self.mutex.lock()? = value;
        Ok(())
    }

    /// Runs `f` on the value under the lock (a read-modify-write no other process
    /// interleaves with); its result.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        Ok(f(&mut *self.mutex.lock()?))
    }

    /// The mutex underneath, for timed locks and for repairing a poisoned value.
    pub fn mutex(&self) -> &Mutex<T> {
        &self.mutex
    }
}

impl<T: Pod> Clone for SharedBox<T> {
    /// Another handle of the same box.
    fn clone(&self) -> Self {
        SharedBox {
            mutex: self.mutex.clone(),
        }
    }
}

impl<T: Pod> fmt::Debug for SharedBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBox")
            .field("mutex", &self.mutex)
            .finish()
    }
}

crate::sync::handover::shared_desc!(impl[T: bytemuck::Pod] SharedBoxDesc<T> => SharedBox<T>);
