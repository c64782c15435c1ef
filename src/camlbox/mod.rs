//! Camlboxes: fixed-slot shared-memory mailboxes, many senders, one receiver.
//!
//! A [`Camlbox`] is a `MAP_SHARED` anonymous mapping holding a fixed number of slots of a
//! fixed size. Made before `fork`, it sits at the same address in every descendant, so any
//! process of the tree can send into it through a [`Sender`], and one process at a time
//! receives through a [`Receiver`]. Messages are serde values encoded with bincode straight
//! into the slot; a raw bytes API serves callers that encode themselves (or that run in a
//! signal handler).
//!
//! # Layout
//!
//! ```text
//! offset 0     Control (384 B): receiver word | data_ready Event | slot_freed Event
//! offset 384   RingHeader (256 B): tail (128-byte line) | head (128-byte line)
//! offset 640   slot 0: state u64 | len u32 | pad u32 | payload[slot_size] (stride: 64-multiple)
//!              slot 1 ...
//! ```
//!
//! Everything is `#[repr(C)]` plain data with `const` size and alignment assertions; the
//! region holds no pointers, only positions. The geometry each process uses to find the
//! slots is its own copy, made at creation and inherited through `fork`, so a scribbled
//! shared word can never send a process out of bounds.
//!
//! # Files
//!
//! `layout.rs` (shared headers, geometry, state word encoding), `ring.rs` (the slot
//! protocol over a plain byte region, model-checked in `loom_tests.rs`), `control.rs`
//! (receiver identity and the two futex events), `wait.rs` (spinning before the futex,
//! the cached pid), `sender.rs` and `receiver.rs` (the two roles), and this file (the
//! mapping).
//!
//! # The slot protocol (`ring.rs`)
//!
//! Modelled on crossbeam-channel's bounded array flavor (Vyukov's queue). A *position* is
//! a 32-bit `lap | index`, where `one_lap` is the power of two above the capacity. The
//! senders' `tail` and the receiver's `head` are positions. Every slot has a 64-bit state
//! word `stamp << 32 | writer`:
//!
//! | state            | stamp      | writer     | meaning                                   |
//! |------------------|------------|------------|-------------------------------------------|
//! | `Empty(p)`       | `p`        | 0          | free for the sender that claims `p`       |
//! | `Writing(p, w)`  | `p`        | pid `w`    | claimed at `p` by process `w`, being written |
//! | `Full(p)`        | `p + 1`    | 0          | published; the receiver owns it           |
//!
//! A slot goes `Empty(p) -> Writing(p, w) -> Full(p) -> Empty(p + one_lap)`, and so on
//! lap after lap; `Full(p)`'s stamp has index `index(p) + 1`, which no `Empty`/`Writing`
//! state of the same slot can have, so the word is unambiguous.
//!
//! Who touches what, when:
//!
//! * **Sender, claim** (`Ring::try_claim`): read `tail = t` and slot `index(t)`. If it is
//!   `Empty(t)`, CAS it to `Writing(t, my pid)` (Acquire on success, pairing with the
//!   receiver's Release that freed it), then CAS `tail` from `t` to the next position.
//!   If the slot is already `Writing(t)`/`Full(t)`, or a lap ahead, the tail is behind:
//!   help it on and retry. If the slot still holds the previous lap (`Writing`/`Full` of
//!   `t - one_lap`), the box is full: after a SeqCst fence, re-read `tail`; unchanged means
//!   `Full`. The claim is the CAS on the slot, *not* the tail CAS (crossbeam claims with
//!   the tail): so the writer's pid lands in the very word that claims the slot, and there
//!   is no window in which a slot is claimed by nobody knows whom. The tail is only a hint,
//!   which any sender (or the receiver, via the lap-ahead rule) may move on; no sender ever
//!   waits for another, so claiming is lock-free and async-signal-safe.
//! * **Sender, write and publish** (`Claim::publish`): write the payload and `len`
//!   (Relaxed), then store `Full(t)` with **Release**. A plain store suffices: nobody else
//!   writes a `Writing` word of a live process.
//! * **Receiver, consume** (`Ring::try_recv`, `ReadGuard`): read `head = h` and load slot
//!   `index(h)` with **Acquire** (pairs with the publish: `len` and payload are visible).
//!   `Empty(h)`: the box is empty (the tail never passes a slot before it is claimed).
//!   `Full(h)`: read `len` and the payload, then store `Empty(h + one_lap)` (Release: our
//!   reads happen before the next writer's writes), *then* store `head = next(h)`
//!   (Release). Freeing before advancing means a slot that still shows the previous lap
//!   really is occupied, so senders need not read `head` at all; and a receiver that dies
//!   between the two stores leaves a slot a lap ahead of `head`, which its replacement
//!   recognizes and steps over.
//!
//! Only the receiver writes `head`, and [`Receiver`] is `!Sync` and attached to one
//! process at a time (the control block's receiver word), so there is one consumer.
//!
//! # Waiting: why no wakeup is lost
//!
//! Both directions use [`crate::futex::Event`]: spin for a bounded budget, then sleep on a
//! futex; after the budget an idle party costs no CPU. In front of `Event`'s spin,
//! `wait.rs` checks back to back for a few hundred `PAUSE`s (`Event` checks every 64,
//! ~2.2 us here, too coarse for a 2 us round trip); those checks are only early looks and
//! change nothing below. The receiver waits on `data_ready`
//! with the condition "the head slot is `Full`"; every publish calls `data_ready.notify()`
//! after its Release store. A blocked sender waits on `slot_freed` with the condition "a
//! claim succeeds (or the receiver is gone)"; every consume (and a receiver's drop) calls
//! `slot_freed.notify()` after freeing. In both cases the condition is made true *before*
//! `notify`, and the waiter re-checks it after announcing itself, which is exactly the
//! contract under which `Event`'s proof (in `crate::futex`) rules out a lost wakeup: the
//! notifier's SeqCst `seq` bump and the waiter's SeqCst `seq` read order the notifier's
//! Release store before the waiter's re-check, or the kernel's compare sees `seq` moved.
//!
//! Two things no notify will ever announce are covered by timeouts instead:
//!
//! * a receiver that died: a blocked sender probes the receiver's pid when it starts to
//!   wait and every [`RECEIVER_PROBE`] while it waits, and fails with
//!   [`Error::Disconnected`](crate::Error::Disconnected);
//! * a sender that died mid-write (below): the receiver bounds its sleep while the head
//!   slot is `Writing`.
//!
//! # A sender that dies mid-write
//!
//! A `Writing(h, w)` head slot blocks the receiver (order is per position). When the
//! receiver has seen the same `Writing(h, w)` for [`STUCK_WRITER_CHECK`], it asks whether
//! process `w` is alive; if not, it CASes the slot from `Writing(h, w)` to
//! `Empty(h + one_lap)` and advances `head`, dropping the half-written message. Senders
//! that later find the tail behind that slot help it on (the lap-ahead rule). Because the
//! pid is part of the claiming CAS there is no claimed-but-anonymous window. A live writer
//! is re-checked every [`STUCK_WRITER_CHECK`]. A sender whose `Serialize` panics publishes
//! its slot as *abandoned* (a reserved `len`), which the receiver skips silently.
//!
//! A malformed message (a `len` beyond the slot, bytes that do not decode as `M`, a state
//! word that no protocol step writes) costs that one message: the slot is freed and the
//! receive returns [`Error::Malformed`](crate::Error::Malformed); the next receive goes on.

mod control;
mod layout;
mod receiver;
mod ring;
mod sender;
mod wait;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

use std::fmt;
use std::mem::size_of;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

pub use receiver::Receiver;
pub use sender::Sender;

use self::control::Control;
use self::layout::Geometry;
use self::ring::Ring;
use crate::space::{Backing, Mapping};
use crate::sys::{mman, process};
use crate::{Error, Result};

/// How long the receiver lets a head slot stay `Writing` before it asks whether the
/// writer is alive.
pub(crate) const STUCK_WRITER_CHECK: Duration = Duration::from_millis(2);
/// How often a blocked sender probes whether the receiver's process is alive.
pub(crate) const RECEIVER_PROBE: Duration = Duration::from_millis(10);

/// A mailbox in shared memory: a fixed number of slots of a fixed size, many senders in
/// any processes of the tree, one receiving process.
///
/// Create it *before* forking; every process that inherits it can make a [`Sender`] with
/// [`Camlbox::sender`], and one process at a time becomes its receiver with
/// [`Camlbox::receiver`]. Cloning is cheap (a reference count); the mapping is released
/// when the last handle of this process goes away (other processes keep their own).
///
/// # Examples
///
/// ```
/// use procyon::Camlbox;
///
/// # fn main() -> procyon::Result<()> {
/// let inbox = Camlbox::new(16, 256)?;
/// let tx = inbox.sender::<(u32, String)>();
/// let rx = inbox.receiver::<(u32, String)>()?;
///
/// tx.send(&(7, "seven".to_string()))?;
/// assert_eq!(rx.recv()?, (7, "seven".to_string()));
/// assert_eq!(rx.try_recv()?, None);
/// # Ok(())
/// # }
/// ```
///
/// Across processes (the box is mapped before `fork`; the child sends, the parent
/// receives):
///
/// ```
/// use procyon::Camlbox;
///
/// # fn main() -> procyon::Result<()> {
/// let inbox = Camlbox::new(4, 64)?;
/// let rx = inbox.receiver::<u64>()?;
/// let tx = inbox.sender::<u64>();
/// // SAFETY: this doctest is single-threaded; the child only sends and `_exit`s.
/// match unsafe { libc::fork() } {
///     0 => {
///         let ok = (0..100u64).all(|i| tx.send(&i).is_ok());
///         unsafe { libc::_exit(if ok { 0 } else { 1 }) }
///     }
///     pid => {
///         for i in 0..100u64 {
///             assert_eq!(rx.recv()?, i);
///         }
///         let mut status = 0;
///         assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
///         assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Camlbox {
    shared: Arc<Shared>,
}

/// This process's handle on the mapping.
struct Shared {
    map: NonNull<u8>,
    ring: Ring,
    /// The mapping at `map`, unmapped when the last handle of this process goes.
    mapping: crate::space::Mapping,
}

// SAFETY: `Shared` is an address of a mapping it owns plus trusted geometry; all access to
// the mapping goes through atomics or through the slot protocol (see the module docs),
// which is built for concurrent use from many threads and processes.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    fn control(&self) -> &Control {
        // SAFETY: `Camlbox::new` wrote a `Control` at the start of the mapping, which lives
        // as long as `self`; it is only accessed through atomics (and immutable fields).
        unsafe { self.map.cast::<Control>().as_ref() }
    }
}

impl Camlbox {
    /// Maps a new box of `slots` slots, each holding messages of up to `slot_size` bytes
    /// (encoded).
    ///
    /// The memory is committed at once, so a full machine is an `Err` here, never a
    /// `SIGBUS` later.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidConfig`] if `slots` is 0 or above 65,536, if `slot_size` is below
    ///   8 bytes or above 16 MiB, or if the box would exceed 1 GiB;
    /// * [`Error::Io`] if the mapping cannot be made or committed.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Camlbox, Error};
    ///
    /// let inbox = Camlbox::new(64, 1024).unwrap();
    /// assert_eq!((inbox.capacity(), inbox.slot_size(), inbox.len()), (64, 1024, 0));
    /// assert!(matches!(Camlbox::new(0, 1024), Err(Error::InvalidConfig { .. })));
    /// ```
    pub fn new(slots: usize, slot_size: usize) -> Result<Camlbox> {
        Camlbox::create(slots, slot_size, Backing::Anonymous)
    }

    /// Bytes of the mapping of a box of `slots` slots of `slot_size` bytes.
    fn map_len_for(geo: &Geometry) -> usize {
        const _: () = assert!(size_of::<Control>() % Geometry::region_align() == 0);
        (size_of::<Control>() + geo.region_len()).next_multiple_of(mman::page_size())
    }

    /// As [`Camlbox::new`], backed as `backing` says (a memfd for a pool whose processes
    /// the fork server starts).
    pub(crate) fn create(slots: usize, slot_size: usize, backing: Backing) -> Result<Camlbox> {
        let geo = Geometry::new(slots, slot_size).map_err(Error::config)?;
        let ring_offset = size_of::<Control>();
        let map_len = Camlbox::map_len_for(&geo);
        let mapping = Mapping::new(map_len, backing, c"procyon-camlbox")
            .map_err(|e| Error::io("mapping a camlbox", e))?;
        let map = mapping.ptr();
        // SAFETY: the whole fresh mapping, which holds no data yet.
        let populated =
            unsafe { mman::madvise(map.as_ptr(), map_len, mman::Advice::PopulateWrite) };
        if let Err(e) = populated {
            return Err(Error::io("committing camlbox memory", e));
        }
        // SAFETY: the mapping is page-aligned (so aligned for `Control`), at least
        // `ring_offset + region_len` long, zeroed and not yet shared with anyone.
        let ring = unsafe {
            map.cast::<Control>()
                .as_ptr()
                .write(Control::new(slots, slot_size));
            Ring::init(map.add(ring_offset), geo)
        };
        Ok(Camlbox {
            shared: Arc::new(Shared { map, ring, mapping }),
        })
    }

    /// The box of `slots` x `slot_size` that another process created in the memory file
    /// now mapped as `mapping` (geometry recomputed here, never read from shared memory).
    pub(crate) fn attach(slots: usize, slot_size: usize, mapping: Mapping) -> Result<Camlbox> {
        let geo = Geometry::new(slots, slot_size).map_err(Error::config)?;
        if mapping.len() != Camlbox::map_len_for(&geo) {
            return Err(Error::descriptor(
                "the memory file sent for a camlbox does not have the box's size",
            ));
        }
        let map = mapping.ptr();
        // SAFETY: the mapping holds a box of this geometry, initialized by its creator
        // before it was sent; `Ring::attach` only computes positions from `geo`.
        let ring = unsafe { Ring::attach(map.add(size_of::<Control>()), geo) };
        Ok(Camlbox {
            shared: Arc::new(Shared { map, ring, mapping }),
        })
    }

    /// The memory file behind a memfd-backed box (to send to the fork server).
    pub(crate) fn memfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.shared.mapping.fd()
    }

    /// The length of the box's mapping in bytes.
    pub(crate) fn map_len(&self) -> usize {
        self.shared.mapping.len()
    }

    /// The address of the box's mapping (the same in every process of the pool).
    pub(crate) fn base_addr(&self) -> usize {
        self.shared.map.as_ptr() as usize
    }

    /// A sender of `M` messages. Clone it freely; it works in every process that inherits
    /// it through `fork`.
    ///
    /// # Examples
    ///
    /// ```
    /// let inbox = procyon::Camlbox::new(4, 64).unwrap();
    /// let tx = inbox.sender::<String>();
    /// tx.try_send(&"hello".to_string()).unwrap();
    /// assert_eq!(inbox.len(), 1);
    /// ```
    pub fn sender<M>(&self) -> Sender<M> {
        Sender::new(Arc::clone(&self.shared))
    }

    /// Makes the calling process the box's receiver, of `M` messages.
    ///
    /// Messages sent before any receiver attached wait in the box. A replacement process
    /// (e.g. a worker re-forked after its predecessor died) calls this again to take over
    /// the same box, including the messages still in it; a message the dead receiver was
    /// reading when it died is delivered again.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if a live process (this one included) already holds an
    /// open receiver of this box: a box has one receiver at a time.
    ///
    /// # Examples
    ///
    /// ```
    /// let inbox = procyon::Camlbox::new(4, 64).unwrap();
    /// let rx = inbox.receiver::<u8>().unwrap();
    /// assert!(inbox.receiver::<u8>().is_err(), "one receiver at a time");
    /// drop(rx);
    /// let _rx = inbox.receiver::<u8>().unwrap();
    /// ```
    pub fn receiver<M>(&self) -> Result<Receiver<M>> {
        let me = process::getpid();
        self.shared.control().attach(me).map_err(|holder| {
            Error::config(format!(
                "this camlbox already has a receiver, held by live process {holder} \
                 (a camlbox has one receiver at a time; drop it first)"
            ))
        })?;
        Ok(Receiver::new(Arc::clone(&self.shared), me))
    }

    /// How many slots the box has.
    pub fn capacity(&self) -> usize {
        self.shared.ring.geometry().capacity()
    }

    /// The largest encoded message a slot holds, in bytes.
    pub fn slot_size(&self) -> usize {
        self.shared.ring.geometry().slot_size()
    }

    /// How many slots are in use right now (claimed or published). Approximate while
    /// others send or receive.
    pub fn len(&self) -> usize {
        self.shared.ring.len()
    }

    /// Whether [`len`](Camlbox::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Camlbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Camlbox")
            .field("capacity", &self.capacity())
            .field("slot_size", &self.slot_size())
            .field("len", &self.len())
            .field("receiver", &self.shared.control().receiver())
            .finish()
    }
}
