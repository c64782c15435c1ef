//! The control block at the start of a camlbox region: who the receiver is, and the two
//! sleep/wake points (`data_ready` for the receiver, `slot_freed` for blocked senders).

use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU64, Ordering};

use super::layout::CachePadded;
use crate::futex::Event;
use crate::sys::process;

/// Who receives from a box. Encoded in one word (`tag << 32 | pid`) so every transition
/// is a single CAS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReceiverState {
    /// No receiver yet: senders fill the box, a blocked sender waits without probing.
    Unattached,
    /// Process `pid` holds the receiver. If it dies, senders find out when they would
    /// block (they probe `pid`), and a replacement may take the box over.
    Open { pid: i32 },
    /// The receiver of process `pid` was dropped: sends fail with `Disconnected` until a
    /// new receiver attaches.
    Closed { pid: i32 },
}

const CLOSED_TAG: u64 = 1 << 32;

impl ReceiverState {
    fn encode(self) -> u64 {
        match self {
            ReceiverState::Unattached => 0,
            ReceiverState::Open { pid } => u64::from(pid as u32),
            ReceiverState::Closed { pid } => CLOSED_TAG | u64::from(pid as u32),
        }
    }

    fn decode(raw: u64) -> Self {
        let pid = raw as u32 as i32;
        match raw >> 32 {
            0 if pid == 0 => ReceiverState::Unattached,
            0 => ReceiverState::Open { pid },
            // 1, or garbage: nobody can be reached through a scribbled word.
            _ => ReceiverState::Closed { pid },
        }
    }
}

/// The control block (`#[repr(C)]`, no pointers; all-zero bytes are a valid fresh block).
#[repr(C, align(128))]
pub(crate) struct Control {
    /// Encoded [`ReceiverState`]. Written on attach and close only, so it stays shared in
    /// every sender's cache.
    receiver: AtomicU64,
    /// Geometry, for whoever inspects a core dump; processes use their own trusted copy.
    capacity: u64,
    slot_size: u64,
    /// The receiver sleeps here; every publish notifies it.
    pub(crate) data_ready: CachePadded<Event>,
    /// Blocked senders sleep here; every freed slot (and a close) notifies them.
    pub(crate) slot_freed: CachePadded<Event>,
}

const _: () = {
    assert!(size_of::<Control>() == 384);
    assert!(align_of::<Control>() == 128);
};

impl Control {
    pub(crate) fn new(capacity: usize, slot_size: usize) -> Control {
        Control {
            receiver: AtomicU64::new(ReceiverState::Unattached.encode()),
            capacity: capacity as u64,
            slot_size: slot_size as u64,
            data_ready: CachePadded(Event::new()),
            slot_freed: CachePadded(Event::new()),
        }
    }

    /// The current receiver state, for the senders' fast path.
    pub(crate) fn receiver(&self) -> ReceiverState {
        // Relaxed: a hint. Closing orders nothing that senders read: a message sent just
        // after a close stays in the box for the next receiver, which attaches with a CAS.
        ReceiverState::decode(self.receiver.load(Ordering::Relaxed))
    }

    /// Makes process `me` the receiver; fails with the pid of a live process that holds
    /// an open receiver (which may be `me`).
    pub(crate) fn attach(&self, me: i32) -> Result<(), i32> {
        let mut raw = self.receiver.load(Ordering::SeqCst);
        loop {
            if let ReceiverState::Open { pid } = ReceiverState::decode(raw) {
                if pid == me || process::is_alive(pid) {
                    return Err(pid);
                }
            }
            let open = ReceiverState::Open { pid: me }.encode();
            // SeqCst: attach and close are rare; no need to argue about weaker orders.
            match self
                .receiver
                .compare_exchange(raw, open, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Ok(()),
                Err(now) => raw = now,
            }
        }
    }

    /// Marks the box closed if `me` still holds the open receiver; `true` if it did.
    #[must_use]
    pub(crate) fn close(&self, me: i32) -> bool {
        let open = ReceiverState::Open { pid: me }.encode();
        let closed = ReceiverState::Closed { pid: me }.encode();
        self.receiver
            .compare_exchange(open, closed, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Whether sends can no longer reach a receiver. With `probe`, an open receiver's
    /// process is checked too (a system call and a `/proc` read: only on slow paths, and
    /// never from a signal handler).
    pub(crate) fn receiver_gone(&self, probe: bool) -> bool {
        match self.receiver() {
            ReceiverState::Unattached => false,
            ReceiverState::Closed { .. } => true,
            ReceiverState::Open { pid } => probe && !process::is_alive(pid),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn receiver_state_round_trips() {
        for s in [
            ReceiverState::Unattached,
            ReceiverState::Open { pid: 1 },
            ReceiverState::Open { pid: 4_194_303 },
            ReceiverState::Closed { pid: 77 },
        ] {
            assert_eq!(ReceiverState::decode(s.encode()), s);
        }
        assert_eq!(
            ReceiverState::decode(7 << 32 | 5),
            ReceiverState::Closed { pid: 5 }
        );
    }

    #[test]
    fn attach_close_and_takeover() {
        let c = Control::new(1, 8);
        let me = process::getpid();
        assert!(!c.receiver_gone(true));
        c.attach(me).unwrap();
        assert_eq!(c.attach(me), Err(me), "one receiver at a time");
        assert!(!c.receiver_gone(true));
        assert!(c.close(me));
        assert!(!c.close(me), "closing twice is a no-op");
        assert!(c.receiver_gone(false));
        c.attach(me).unwrap();
        // An open receiver of a dead process is taken over.
        c.receiver.store(
            ReceiverState::Open { pid: i32::MAX }.encode(),
            Ordering::SeqCst,
        );
        assert!(!c.receiver_gone(false));
        assert!(c.receiver_gone(true));
        c.attach(me).unwrap();
        assert_eq!(c.receiver(), ReceiverState::Open { pid: me });
    }
}
