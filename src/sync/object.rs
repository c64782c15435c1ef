//! Shared objects: the header every synchronization object and shared container starts
//! with, the per-process handle over it, and its plain-data descriptor.
//!
//! An object is one mempool block:
//!
//! ```text
//!  +---------------------------------+------------------------------+
//!  | Header: refs (gen | count),     | body (a lock, counters, the  |
//!  | kind, element size and align    | value or the container's     |
//!  |                                 | fields), repr(C), no pointer |
//!  +---------------------------------+------------------------------+
//! ```
//!
//! ## Who frees the block: a count of handles in the header
//!
//! Any process of the tree may hold a handle ([`Object`]) of an object: the one that
//! created it, a task that opened a descriptor, a clone of either. `refs` counts them:
//! the low 32 bits are the count, the high 32 bits the low half of the block's
//! generation. The block is detached ([`Block::into_raw`](crate::Block::into_raw)) right
//! after creation, so whichever process drops the last handle frees it with
//! [`Mempool::free_raw`], after the body released what it owns (a container's data
//! blocks).
//!
//! * Creating stores `(gen, 1)`.
//! * Opening a descriptor checks the block ([`Mempool::resolve`]: inside the heap, a live
//!   block of the descriptor's generation), then increments with a compare-and-swap that
//!   only succeeds from `(gen, n)` with `n > 0`. A descriptor whose object was freed fails
//!   there, even if the memory was reused: the new owner of the memory would have to hold
//!   exactly `(gen, n)` in that word, and generations are unique in a pool (an object's
//!   word holds its own). This is the one unprovable corner: a descriptor opened *while*
//!   the last handle is being dropped, and its memory reused by a non-object allocation
//!   that happens to hold that very 64-bit value. Keep a handle alive while the
//!   descriptor may be opened (as for [`ArrayDesc`](crate::ArrayDesc)).
//! * Dropping decrements (AcqRel, as `Arc`: the last dropper sees every write made
//!   through the other handles before it frees).
//!
//! A handle is its process's: one inherited through `fork` (a copy of the parent's
//! memory) does nothing when dropped in the child, as for [`Block`](crate::Block). A
//! process that dies holding handles leaves the count too high: the object then lives
//! until its pool is dropped (the pool's memory goes with its process tree anyway).
//! Object blocks (and containers' data blocks) are allocated *untagged*: the clean-up
//! of a failed or cancelled job frees the blocks tagged with it, and a shared object
//! that a task made or grew must survive that task.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mempool::{self, current_pid, Mempool, RawBlock};

/// What kind of object a block holds, stored in its header and in its descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u32)]
pub(crate) enum Kind {
    Mutex = 1,
    Condvar = 2,
    Semaphore = 3,
    Barrier = 4,
    Queue = 5,
    Vec = 6,
    HashMap = 7,
    Buffer = 8,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mutex => "Mutex",
            Kind::Condvar => "Condvar",
            Kind::Semaphore => "Semaphore",
            Kind::Barrier => "Barrier",
            Kind::Queue => "SharedQueue",
            Kind::Vec => "SharedVec",
            Kind::HashMap => "SharedHashMap",
            Kind::Buffer => "SharedBuffer",
        }
    }
}

/// The first bytes of every object. Written once at creation (except `refs`), before
/// any descriptor of it exists.
#[repr(C)]
struct Header {
    /// `generation_low32 << 32 | handles`. See the module docs.
    refs: AtomicU64,
    kind: u32,
    /// Size and alignment of the element type (`0, 1` for objects without one; a map's
    /// keys).
    elem_size: u32,
    elem_align: u32,
    /// Size and alignment of a second element type (a map's values), else `0, 1`.
    elem2_size: u32,
    elem2_align: u32,
    /// Handles owned by outstanding hand-overs (`sync::handover`), counted in `refs` too.
    handed_over: AtomicU32,
}

/// The types an object is made for: its kind and its element type(s), checked when a
/// descriptor is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Shape {
    kind: Kind,
    elem: (u32, u32),
    elem2: (u32, u32),
}

impl Shape {
    /// An object of `kind` without an element type.
    pub(crate) const fn bare(kind: Kind) -> Shape {
        Shape {
            kind,
            elem: (0, 1),
            elem2: (0, 1),
        }
    }

    /// An object of `kind` holding `T`s.
    pub(crate) const fn of<T>(kind: Kind) -> Shape {
        Shape {
            kind,
            elem: (size_of::<T>() as u32, align_of::<T>() as u32),
            elem2: (0, 1),
        }
    }

    /// An object of `kind` mapping `K`s to `V`s.
    pub(crate) const fn of2<K, V>(kind: Kind) -> Shape {
        Shape {
            kind,
            elem: (size_of::<K>() as u32, align_of::<K>() as u32),
            elem2: (size_of::<V>() as u32, align_of::<V>() as u32),
        }
    }
}

/// A body's hook for the last handle's drop: free what the body owns besides its own
/// block (nothing, for most).
pub(crate) trait Body {
    /// Frees what the body owns. Runs once, in the process that drops the last handle,
    /// when no other handle exists any more.
    fn release(&self, _pool: &Mempool) {}
}

/// The block of an object with body `B`.
#[repr(C)]
struct Shared<B> {
    header: Header,
    body: B,
}

/// A process's handle of an object with body `B`: keeps it alive (see the module docs).
pub(crate) struct Object<B: Body> {
    pool: Mempool,
    raw: RawBlock,
    ptr: NonNull<Shared<B>>,
    shape: Shape,
    /// The process this handle counts for; in any other (a forked copy) drop does nothing.
    owner: i32,
}

// SAFETY: the handle only gives out `&B` for bodies made of atomics and process-shared
// locks (every `B` is Sync itself, required below), and its drop is an atomic decrement;
// nothing in it is tied to the thread that made it.
unsafe impl<B: Body + Sync> Send for Object<B> {}
// SAFETY: as above: shared access is to `&B`, which is Sync.
unsafe impl<B: Body + Sync> Sync for Object<B> {}

impl<B: Body> Object<B> {
    /// Allocates an object of `shape` in `pool`; `init` writes the body in place (the
    /// memory is zeroed first, so atomics start at 0).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the block does not fit; whatever `init` returns (the
    /// block is freed).
    pub(crate) fn create(
        pool: &Mempool,
        shape: Shape,
        init: impl FnOnce(NonNull<B>) -> Result<()>,
    ) -> Result<Object<B>> {
        let size = size_of::<Shared<B>>();
        let align = align_of::<Shared<B>>().max(64);
        // Untagged: an object outlives the job that made it (it goes with its last
        // handle), so a failed job's clean-up (`free_tagged`) must not take it.
        let block = pool.alloc_tagged(size, align, 0)?;
        let ptr = block.as_ptr().cast::<Shared<B>>();
        let generation = block.generation();
        // SAFETY: the block holds `size` bytes at `ptr`, aligned for `Shared<B>`; nobody
        // else knows of it yet (no descriptor exists), so plain writes race with nothing.
        unsafe {
            std::ptr::write_bytes(ptr.cast::<u8>(), 0, size);
            std::ptr::addr_of_mut!((*ptr).header).write(Header {
                refs: AtomicU64::new(refs_word(generation, 1)),
                kind: shape.kind as u32,
                elem_size: shape.elem.0,
                elem_align: shape.elem.1,
                elem2_size: shape.elem2.0,
                elem2_align: shape.elem2.1,
                handed_over: AtomicU32::new(0),
            });
        }
        let raw = block.into_raw();
        // SAFETY: `ptr` is inside the block, hence not null.
        let body = unsafe { NonNull::new_unchecked(std::ptr::addr_of_mut!((*ptr).body)) };
        if let Err(e) = init(body) {
            let _ = pool.free_raw(raw);
            return Err(e);
        }
        Ok(Object {
            pool: pool.clone(),
            raw,
            // SAFETY: as above.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            shape,
            owner: current_pid(),
        })
    }

    /// Opens the object `desc` names, in this process, as an object of `shape`.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if the pool is unknown here, the object was freed, or
    /// it is of another kind or element type.
    pub(crate) fn open(desc: &RawObjectDesc, shape: Shape) -> Result<Object<B>> {
        if desc.shape != shape {
            return Err(Error::descriptor(format!(
                "descriptor of a {} ({:?}), opened as a {} ({:?})",
                desc.shape.kind.name(),
                (desc.shape.elem, desc.shape.elem2),
                shape.kind.name(),
                (shape.elem, shape.elem2),
            )));
        }
        let pool = mempool::lookup(desc.pool_id).ok_or_else(|| {
            Error::descriptor(format!(
                "unknown pool {:#x}: not a pool of this process tree",
                desc.pool_id
            ))
        })?;
        let size = size_of::<Shared<B>>() as u64;
        let ptr = pool
            .resolve(desc.offset, desc.generation, size)?
            .cast::<Shared<B>>();
        // SAFETY: `resolve` checked that `size` bytes at `ptr` lie in a live block of the
        // descriptor's generation; `refs` is an atomic at offset 0, so reading it races
        // with nothing non-atomic even if the block is being freed meanwhile.
        let refs = unsafe { &(*ptr.as_ptr()).header.refs };
        let mut cur = refs.load(Ordering::Relaxed);
        loop {
            if cur >> 32 != desc.generation & 0xffff_ffff || cur as u32 == 0 {
                return Err(Error::descriptor(format!(
                    "the {} was freed (its last handle was dropped)",
                    shape.kind.name()
                )));
            }
            if cur as u32 == u32::MAX {
                return Err(Error::descriptor("too many handles of one object"));
            }
            // Acquire on success: the body's initialization (written before the
            // descriptor was sent) is visible; the channel that carried the descriptor
            // synchronizes too, this makes it independent of that channel.
            match refs.compare_exchange_weak(cur, cur + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        let raw = RawBlock::from_parts(desc.pool_id, desc.offset, size, desc.generation);
        let object = Object {
            pool,
            raw,
            ptr,
            shape,
            owner: current_pid(),
        };
        // The header's shape fields never change after creation and we now count in
        // `refs`, so plain reads race with nothing. A descriptor forged with another shape
        // for this block is rejected here (and the count taken is given back by drop).
        let h = object.header();
        let stored = (
            h.kind,
            (h.elem_size, h.elem_align),
            (h.elem2_size, h.elem2_align),
        );
        if stored != (shape.kind as u32, shape.elem, shape.elem2) {
            return Err(Error::descriptor(format!(
                "the block does not hold a {} of this element type",
                shape.kind.name()
            )));
        }
        Ok(object)
    }

    /// The object's body.
    pub(crate) fn body(&self) -> &B {
        // SAFETY: the block lives while this handle counts in `refs`; the body was
        // initialized before the handle existed, and `B` is made of atomics and
        // process-shared locks (interior mutability), so `&B` is sound while other
        // processes use it.
        unsafe { &(*self.ptr.as_ptr()).body }
    }

    /// The pool the object lives in.
    pub(crate) fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// The descriptor of the object, for any process of the tree.
    pub(crate) fn desc(&self) -> RawObjectDesc {
        RawObjectDesc {
            pool_id: self.raw.pool_id(),
            offset: self.raw.offset(),
            generation: self.raw.generation(),
            shape: self.shape,
        }
    }

    /// Another handle of the same object (counted).
    pub(crate) fn clone_handle(&self) -> Object<B> {
        // Relaxed: as `Arc::clone`; the new handle is made from an existing one, which
        // keeps the object alive meanwhile.
        self.header().refs.fetch_add(1, Ordering::Relaxed);
        Object {
            pool: self.pool.clone(),
            raw: self.raw,
            ptr: self.ptr,
            shape: self.shape,
            owner: current_pid(),
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: as in `body`.
        unsafe { &(*self.ptr.as_ptr()).header }
    }
}

impl<B: Body> Drop for Object<B> {
    fn drop(&mut self) {
        if self.owner != current_pid() {
            return; // a forked copy of another process's handle
        }
        // AcqRel: Release publishes this handle's writes to the last dropper; Acquire (on
        // the last decrement) makes every other handle's writes visible before freeing.
        let prev = self.header().refs.fetch_sub(1, Ordering::AcqRel);
        if prev as u32 == 1 {
            self.body().release(&self.pool);
            // The block was detached at creation, so any process may free it; an error
            // would mean the header was scribbled over, and the pool reports that itself.
            let _ = self.pool.free_raw(self.raw);
        }
    }
}

/// The header of the object `desc` names, checked to be a live block of its generation.
fn header_of(desc: &RawObjectDesc) -> Result<(Mempool, NonNull<Header>)> {
    let pool = mempool::lookup(desc.pool_id).ok_or_else(|| {
        Error::descriptor(format!(
            "unknown pool {:#x}: not a pool of this process tree",
            desc.pool_id
        ))
    })?;
    let ptr = pool
        .resolve(desc.offset, desc.generation, size_of::<Header>() as u64)?
        .cast::<Header>();
    Ok((pool, ptr))
}

/// Counts one more handle of the object `desc` names, owned by a hand-over
/// (`sync::handover`): `refs` up (as `Object::open`, only from a live count) and
/// `handed_over` up.
///
/// # Errors
/// [`Error::InvalidDescriptor`] if the pool is unknown here or the object was freed.
pub(crate) fn add_handed_over(desc: &RawObjectDesc) -> Result<()> {
    let (_pool, ptr) = header_of(desc)?;
    // SAFETY: `header_of` checked that the header's bytes lie in a live block of the
    // descriptor's generation; `refs` and `handed_over` are atomics, so this races with
    // nothing non-atomic even if the block is being freed meanwhile (the CAS below then
    // fails on the generation or the zero count).
    let h = unsafe { ptr.as_ref() };
    let mut cur = h.refs.load(Ordering::Relaxed);
    loop {
        if cur >> 32 != desc.generation & 0xffff_ffff || cur as u32 == 0 {
            return Err(Error::descriptor(format!(
                "the {} was freed (its last handle was dropped)",
                desc.shape.kind.name()
            )));
        }
        if cur as u32 == u32::MAX {
            return Err(Error::descriptor("too many handles of one object"));
        }
        // Relaxed: as `Arc::clone`; the caller holds a handle (or a hand-over), which
        // keeps the object alive meanwhile.
        match h
            .refs
            .compare_exchange_weak(cur, cur + 1, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(now) => cur = now,
        }
    }
    // Relaxed: a count; whoever takes it over opens a handle first (see below).
    h.handed_over.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Gives back the handle a hand-over owned, once: `handed_over` down (only from a
/// positive count), then `refs` down. The caller holds a handle it opened just before,
/// so `refs` stays above zero.
///
/// # Errors
/// [`Error::InvalidDescriptor`] if no hand-over of the object is outstanding (this one
/// was taken already).
pub(crate) fn take_handed_over(desc: &RawObjectDesc) -> Result<()> {
    let (_pool, ptr) = header_of(desc)?;
    // SAFETY: as in `add_handed_over`; the caller's open handle keeps the block alive.
    let h = unsafe { ptr.as_ref() };
    // Relaxed: counts; the caller's handle keeps the object alive throughout.
    h.handed_over
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .map_err(|_| {
            Error::descriptor(format!(
                "this hand-over of a {} was taken already",
                desc.shape.kind.name()
            ))
        })?;
    // AcqRel: as a handle's drop (never the last: the caller holds one).
    h.refs.fetch_sub(1, Ordering::AcqRel);
    Ok(())
}

fn refs_word(generation: u64, count: u32) -> u64 {
    (generation & 0xffff_ffff) << 32 | u64::from(count)
}

/// Plain data naming an object in a mempool of this process tree; the typed descriptors
/// (`MutexDesc`, `SharedVecDesc`, ...) wrap it.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[doc(hidden)]
pub struct RawObjectDesc {
    pool_id: u64,
    offset: u64,
    generation: u64,
    shape: Shape,
}

impl fmt::Debug for RawObjectDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{:#x}:{:#x}/{}",
            self.shape.kind.name(),
            self.pool_id,
            self.offset,
            self.generation
        )
    }
}

/// Defines a typed descriptor `$desc<$($g),*>` over [`RawObjectDesc`], with the derives
/// every descriptor has (`Copy`, serde, `Debug`, `PartialEq`) whatever its type
/// parameters.
macro_rules! typed_desc {
    ($(#[$m:meta])* $desc:ident<$($g:ident),*>) => {
        $(#[$m])*
        pub struct $desc<$($g),*> {
            pub(crate) raw: $crate::sync::object::RawObjectDesc,
            pub(crate) _types: ::std::marker::PhantomData<fn() -> ($($g,)*)>,
        }

        impl<$($g),*> Clone for $desc<$($g),*> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<$($g),*> Copy for $desc<$($g),*> {}

        impl<$($g),*> PartialEq for $desc<$($g),*> {
            fn eq(&self, other: &Self) -> bool {
                self.raw == other.raw
            }
        }

        impl<$($g),*> Eq for $desc<$($g),*> {}

        impl<$($g),*> ::std::fmt::Debug for $desc<$($g),*> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&self.raw, f)
            }
        }

        impl<$($g),*> ::serde::Serialize for $desc<$($g),*> {
            fn serialize<S: ::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                self.raw.serialize(serializer)
            }
        }

        impl<'de, $($g),*> ::serde::Deserialize<'de> for $desc<$($g),*> {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                Ok($desc {
                    raw: $crate::sync::object::RawObjectDesc::deserialize(deserializer)?,
                    _types: ::std::marker::PhantomData,
                })
            }
        }

        impl<$($g),*> $desc<$($g),*> {
            pub(crate) fn from_raw(raw: $crate::sync::object::RawObjectDesc) -> Self {
                $desc {
                    raw,
                    _types: ::std::marker::PhantomData,
                }
            }
        }
    };
}
pub(crate) use typed_desc;
