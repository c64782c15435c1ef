//! Handing a shared object over to another process: a descriptor that owns a handle.
//!
//! A shared object lives while some process holds a handle of it (`sync::object`): an
//! object that a task or an explicit process creates is freed when that process drops
//! its last handle, typically when the task returns, so its plain descriptor is of no use
//! to whoever receives it. [`SharedDesc::hand_over`] makes a [`Handover`]: a descriptor
//! that owns one handle of the object (counted in the object's header, alongside how many
//! such hand-overs are outstanding). It is plain data (serde), so it travels as a task's
//! result, a process's result or a message; [`Handover::take`] in the receiving process
//! turns it into a handle of that process, once: a second take is an error, never a
//! double release.
//!
//! A `Handover` that is never taken keeps its object alive until the pool goes (as a
//! handle held by a process that died does): take what you hand over.
//!
//! # Examples
//!
//! A vector filled by a task, handed to the client:
//!
//! ```
//! use procyon::collections::SharedVec;
//! use procyon::sync::{Handover, SharedDesc};
//! use procyon::{Ctx, Pool};
//!
//! let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
//! let handed = pool
//!     .spawn(|ctx: &Ctx| {
//!         let squares = SharedVec::<u64>::new(ctx.mempool()).unwrap();
//!         for i in 0..10u64 {
//!             squares.push(i * i).unwrap();
//!         }
//!         // The task's own handle goes when it returns; the hand-over keeps one.
//!         squares.desc().hand_over().unwrap()
//!     })?
//!     .wait()?;
//! let squares = handed.take()?;
//! assert_eq!(squares.to_vec()?, (0..10u64).map(|i| i * i).collect::<Vec<_>>());
//! # Ok::<(), procyon::Error>(())
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::sync::object::{self, RawObjectDesc};

mod sealed {
    use crate::sync::object::RawObjectDesc;

    /// What only the crate's descriptors can do: name their object in raw form.
    pub trait Sealed {
        fn raw(&self) -> RawObjectDesc;
        fn from_raw_desc(raw: RawObjectDesc) -> Self;
    }
}

/// The typed descriptors of shared objects (`MutexDesc`, `SharedVecDesc`, ...): what
/// they open, and how to hand a handle of their object to another process.
pub trait SharedDesc: Copy + sealed::Sealed + Sized {
    /// The handle this descriptor opens (`Mutex<T>` for a `MutexDesc<T>`, ...).
    type Object;

    /// A new handle of the object in this process (the descriptor's `open`).
    ///
    /// # Errors
    /// As the descriptor's `open`.
    fn open_object(&self) -> Result<Self::Object>;

    /// A descriptor that owns one handle of the object, for another process to
    /// [`take`](Handover::take): the object then outlives every handle of this process
    /// (see the [module docs](crate::sync::handover)).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::sync::{Semaphore, SharedDesc};
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let sem = Semaphore::new(pool.mempool(), 3)?;
    /// let handed = sem.desc().hand_over()?;
    /// drop(sem); // the object lives on in the hand-over
    /// let sem = handed.take()?;
    /// assert!(sem.try_acquire());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`](crate::Error::InvalidDescriptor) if the object was
    /// freed or the pool is unknown here.
    fn hand_over(&self) -> Result<Handover<Self>> {
        object::add_handed_over(&sealed::Sealed::raw(self))?;
        Ok(Handover { desc: *self })
    }
}

/// A descriptor that owns one handle of its object: made by [`SharedDesc::hand_over`],
/// taken once by [`Handover::take`] in any process of the pool's tree. Plain data
/// (serde); not `Copy`, since it stands for one handle.
#[must_use = "a hand-over that is never taken keeps its object alive until the pool goes"]
pub struct Handover<D: SharedDesc> {
    desc: D,
}

impl<D: SharedDesc> Handover<D> {
    /// The object's plain descriptor (opening it makes more handles; the hand-over still
    /// owns its own).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::sync::{Mutex, SharedDesc};
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let m = Mutex::new(pool.mempool(), 5u64)?;
    /// let handed = m.desc().hand_over()?;
    /// assert_eq!(handed.desc(), m.desc());
    /// let m2 = handed.take()?;
    /// assert_eq!(*m2.lock().unwrap(), 5);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn desc(&self) -> D {
        self.desc
    }

    /// Turns the hand-over into a handle of this process, taking over the handle it
    /// owns.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::collections::SharedQueue;
    /// use procyon::sync::SharedDesc;
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let q = SharedQueue::<u32>::new(pool.mempool(), 4)?;
    /// q.try_push(7)?;
    /// let handed = q.desc().hand_over()?;
    /// drop(q);
    /// let q = handed.take()?;
    /// assert_eq!(q.try_pop()?, Some(7));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`](crate::Error::InvalidDescriptor) if the handle was
    /// taken over already (a copy of the hand-over was taken before), the object was
    /// freed, or the pool is unknown here.
    pub fn take(self) -> Result<D::Object> {
        // Open first (our own count), then give back the one the hand-over held: the
        // object never drops to zero handles in between.
        let handle = self.desc.open_object()?;
        object::take_handed_over(&sealed::Sealed::raw(&self.desc))?;
        Ok(handle)
    }
}

impl<D: SharedDesc> fmt::Debug for Handover<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handover({:?})", sealed::Sealed::raw(&self.desc))
    }
}

impl<D: SharedDesc> Serialize for Handover<D> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        sealed::Sealed::raw(&self.desc).serialize(serializer)
    }
}

impl<'de, D: SharedDesc> Deserialize<'de> for Handover<D> {
    fn deserialize<De: Deserializer<'de>>(
        deserializer: De,
    ) -> std::result::Result<Self, De::Error> {
        Ok(Handover {
            desc: D::from_raw_desc(RawObjectDesc::deserialize(deserializer)?),
        })
    }
}

/// Implements [`SharedDesc`] for a typed descriptor whose `open` gives `$obj`.
macro_rules! shared_desc {
    (impl[$($g:tt)*] $desc:ty => $obj:ty) => {
        impl<$($g)*> $crate::sync::handover::sealed_access::Sealed for $desc {
            fn raw(&self) -> $crate::sync::object::RawObjectDesc {
                self.raw
            }
            fn from_raw_desc(raw: $crate::sync::object::RawObjectDesc) -> Self {
                <$desc>::from_raw(raw)
            }
        }
        impl<$($g)*> $crate::sync::handover::SharedDesc for $desc {
            type Object = $obj;
            fn open_object(&self) -> $crate::Result<$obj> {
                self.open()
            }
        }
    };
}
pub(crate) use shared_desc;

/// The sealing trait, reachable by the crate's `shared_desc!` invocations.
pub(crate) mod sealed_access {
    pub(crate) use super::sealed::Sealed;
}
