//! The shape of a camlbox ring in memory: the `#[repr(C)]` shared headers, the trusted
//! process-local geometry, and the encoding of a slot's state word. No behaviour: the
//! protocol that moves slots between states is in `ring.rs`.

use std::mem::{align_of, size_of};

use crate::loom::{AtomicU32, AtomicU64};

/// Largest number of slots: keeps `one_lap` at 2^17, so 32-bit positions go round 2^15
/// laps before they wrap (wrapping is harmless: every comparison is an equality).
pub(crate) const MAX_SLOTS: usize = 1 << 16;
/// Smallest slot payload: a bincode `u64`.
pub(crate) const MIN_SLOT_SIZE: usize = 8;
/// Largest slot payload; bigger data goes by reference through the mempool.
pub(crate) const MAX_SLOT_SIZE: usize = 16 << 20;
/// Largest region a ring may span (header and slots).
pub(crate) const MAX_REGION: usize = 1 << 30;
/// `len` of a slot whose writer gave up (a panicking `Serialize`): the receiver skips it.
pub(super) const ABANDONED: u32 = u32::MAX;
/// Pads and aligns a value to 128 bytes (two cache lines: x86 prefetches pairs), so the
/// senders' `tail` and the receiver's `head` never share a line.
#[repr(C, align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

/// The shared words at the start of a ring region.
#[repr(C)]
pub(super) struct RingHeader {
    /// Next position to claim (senders). A hint: the claim itself is the CAS on the slot.
    pub(super) tail: CachePadded<AtomicU32>,
    /// Next position to consume (written by the receiver only).
    pub(super) head: CachePadded<AtomicU32>,
}

/// The shared words at the start of every slot; the payload follows.
#[repr(C)]
pub(super) struct SlotHeader {
    /// A [`SlotState`], encoded.
    pub(super) state: AtomicU64,
    /// Payload length of a published slot, or [`ABANDONED`].
    pub(super) len: AtomicU32,
    pub(super) _reserved: u32,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<RingHeader>() == 256);
    assert!(align_of::<RingHeader>() == 128);
    assert!(size_of::<SlotHeader>() == 16);
    assert!(align_of::<SlotHeader>() == 8);
};

/// Where the ring sits and how it is cut into slots. Process-local and trusted: nothing
/// read from shared memory ever changes it, so a scribbled word cannot send us out of
/// bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(super) capacity: u32,
    pub(super) slot_size: u32,
    pub(super) one_lap: u32,
    pub(super) stride: usize,
}

impl Geometry {
    /// Validates `capacity` slots of `slot_size` payload bytes; the error says what would
    /// be accepted.
    pub(crate) fn new(capacity: usize, slot_size: usize) -> Result<Self, String> {
        if capacity == 0 || capacity > MAX_SLOTS {
            return Err(format!(
                "camlbox needs 1..={MAX_SLOTS} slots, got {capacity}"
            ));
        }
        if !(MIN_SLOT_SIZE..=MAX_SLOT_SIZE).contains(&slot_size) {
            return Err(format!(
                "camlbox slot size must be {MIN_SLOT_SIZE}..={MAX_SLOT_SIZE} bytes, got {slot_size}"
            ));
        }
        let align = align_of::<SlotHeader>().max(64);
        let stride = (size_of::<SlotHeader>() + slot_size).next_multiple_of(align);
        let geo = Geometry {
            capacity: capacity as u32,
            slot_size: slot_size as u32,
            // A power of two above `capacity`: index `capacity` (a published last slot)
            // must not carry into the lap bits.
            one_lap: (capacity as u32 + 1).next_power_of_two(),
            stride,
        };
        match stride.checked_mul(capacity) {
            Some(n) if n <= MAX_REGION - size_of::<RingHeader>() => Ok(geo),
            _ => Err(format!(
                "camlbox of {capacity} slots x {slot_size} bytes exceeds {MAX_REGION} bytes"
            )),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity as usize
    }

    pub(crate) fn slot_size(&self) -> usize {
        self.slot_size as usize
    }

    /// Bytes of region the ring needs.
    pub(crate) fn region_len(&self) -> usize {
        size_of::<RingHeader>() + self.stride * self.capacity as usize
    }

    /// Alignment the region must have.
    pub(crate) const fn region_align() -> usize {
        align_of::<RingHeader>()
    }

    pub(super) fn index(&self, pos: u32) -> u32 {
        pos & (self.one_lap - 1)
    }

    /// The position after `pos`: next index, or index 0 of the next lap.
    pub(super) fn next(&self, pos: u32) -> u32 {
        if self.index(pos) + 1 < self.capacity {
            pos.wrapping_add(1)
        } else {
            (pos & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }
}

/// What one slot holds, decoded from its state word. `pos` is the ring position the
/// state belongs to (lap and index); a slot only ever holds positions of its own index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Free, for the sender that claims position `pos`.
    Empty { pos: u32 },
    /// Claimed at `pos` by process `writer`, who is writing the payload.
    Writing { pos: u32, writer: u32 },
    /// Published at `pos`; the receiver owns it until it frees it for `pos + one_lap`.
    Full { pos: u32 },
}

impl SlotState {
    /// Word layout: `stamp << 32 | writer`. `Empty` and `Writing` have `stamp == pos`
    /// (writer 0, resp. the writer's pid, never 0); `Full` has `stamp == pos + 1`, whose
    /// index part cannot be the slot's own index (crossbeam's stamp trick).
    pub(super) fn encode(self) -> u64 {
        match self {
            SlotState::Empty { pos } => u64::from(pos) << 32,
            SlotState::Writing { pos, writer } => {
                debug_assert_ne!(writer, 0, "writer pids are never 0");
                u64::from(pos) << 32 | u64::from(writer)
            }
            SlotState::Full { pos } => u64::from(pos.wrapping_add(1)) << 32,
        }
    }

    /// Decodes the word of slot `index`; `None` if no state of that slot looks like it.
    pub(super) fn decode(raw: u64, index: u32, geo: &Geometry) -> Option<Self> {
        let stamp = (raw >> 32) as u32;
        let writer = raw as u32;
        let stamp_index = geo.index(stamp);
        if stamp_index == index {
            Some(if writer == 0 {
                SlotState::Empty { pos: stamp }
            } else {
                SlotState::Writing { pos: stamp, writer }
            })
        } else if stamp_index == index + 1 && writer == 0 {
            Some(SlotState::Full {
                pos: stamp.wrapping_sub(1),
            })
        } else {
            None
        }
    }

    pub(super) fn pos(self) -> u32 {
        match self {
            SlotState::Empty { pos } | SlotState::Writing { pos, .. } | SlotState::Full { pos } => {
                pos
            }
        }
    }
}
