//! Unit tests of the slot protocol (heap-backed rings, threads) and of `Camlbox` in one
//! process. Cross-process scenarios live in `tests/camlbox.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::layout::Geometry;
use super::ring::{ClaimError, HeapRegion, Recv};
use super::*;

const ME: u32 = 4242;

fn send(ring: &Ring, writer: u32, bytes: &[u8]) -> Result<(), ClaimError> {
    let mut c = ring.try_claim(writer)?;
    c.payload()[..bytes.len()].copy_from_slice(bytes);
    c.publish(bytes.len());
    Ok(())
}

fn recv(ring: &Ring) -> Option<Vec<u8>> {
    match ring.try_recv() {
        Recv::Ready(g) => Some(g.bytes().expect("good length").to_vec()),
        Recv::Empty => None,
        Recv::Writing { pos, writer } => panic!("head {pos} still written by {writer}"),
        Recv::Skipped | Recv::Corrupt => panic!("corrupt ring"),
    }
}

#[test]
fn geometry_validation() {
    assert!(Geometry::new(0, 64).is_err());
    assert!(Geometry::new(1, 7).is_err());
    assert!(Geometry::new(1 << 17, 64).is_err());
    assert!(Geometry::new(1, (16 << 20) + 1).is_err());
    assert!(Geometry::new(1 << 16, 16 << 20).is_err(), "over 1 GiB");
    let g = Geometry::new(3, 8).unwrap();
    assert_eq!((g.capacity(), g.slot_size()), (3, 8));
    assert_eq!(g.region_len(), 256 + 3 * 64);
}

#[test]
fn fifo_across_many_laps() {
    for cap in [1, 2, 3, 4, 7] {
        let region = HeapRegion::new(cap, 8);
        let ring = region.ring();
        let mut next_recv = 0u64;
        for i in 0..1000u64 {
            send(ring, ME, &i.to_le_bytes()).unwrap();
            if i % 3 == 2 || ring.len() == cap {
                while let Some(b) = recv(ring) {
                    assert_eq!(b, next_recv.to_le_bytes());
                    next_recv += 1;
                }
            }
        }
        while let Some(b) = recv(ring) {
            assert_eq!(b, next_recv.to_le_bytes());
            next_recv += 1;
        }
        assert_eq!(next_recv, 1000);
        assert_eq!(ring.len(), 0);
    }
}

#[test]
fn full_then_free() {
    let region = HeapRegion::new(2, 8);
    let ring = region.ring();
    send(ring, ME, b"a").unwrap();
    send(ring, ME, b"b").unwrap();
    assert_eq!(ring.len(), 2);
    assert_eq!(send(ring, ME, b"c"), Err(ClaimError::Full));
    assert_eq!(recv(ring).unwrap(), b"a");
    send(ring, ME, b"c").unwrap();
    assert_eq!(recv(ring).unwrap(), b"b");
    assert_eq!(recv(ring).unwrap(), b"c");
    assert_eq!(recv(ring), None);
}

#[test]
fn dead_writer_is_reclaimed_and_the_tail_moves_on() {
    let region = HeapRegion::new(2, 8);
    let ring = region.ring();
    // The claimer dies before even moving the tail; the next sender moves it on.
    ring.claim_and_die_before_tail(ME).unwrap();
    send(ring, ME + 1, b"x").unwrap();
    match ring.try_recv() {
        Recv::Writing { pos: 0, writer: ME } => {}
        _ => panic!("expected the dead claim at the head"),
    }
    assert!(!ring.reclaim(1, ME), "not the head");
    assert!(!ring.reclaim(0, ME + 7), "not that writer");
    assert!(ring.reclaim(0, ME));
    assert_eq!(recv(ring).unwrap(), b"x");
    for i in 0..10u8 {
        send(ring, ME, &[i]).unwrap();
        assert_eq!(recv(ring).unwrap(), [i]);
    }
}

#[test]
fn abandoned_claim_is_skipped() {
    let region = HeapRegion::new(2, 8);
    let ring = region.ring();
    drop(ring.try_claim(ME).unwrap()); // as a panicking `Serialize` would
    send(ring, ME, b"after").unwrap();
    assert_eq!(recv(ring).unwrap(), b"after");
    assert_eq!(recv(ring), None);
}

#[test]
fn replacement_receiver_steps_over_a_half_done_consume() {
    let region = HeapRegion::new(2, 8);
    let ring = region.ring();
    send(ring, ME, b"1").unwrap();
    send(ring, ME, b"2").unwrap();
    match ring.try_recv() {
        Recv::Ready(g) => {
            assert_eq!(g.pos(), 0);
            g.free_without_advance(); // receiver killed between its two stores
        }
        _ => panic!("expected a message"),
    }
    // A sender may already reuse the freed slot, a lap ahead of the stale head.
    send(ring, ME, b"3").unwrap();
    assert_eq!(recv(ring).unwrap(), b"2");
    assert_eq!(recv(ring).unwrap(), b"3");
    assert_eq!(recv(ring), None);
}

#[test]
fn threads_hammer_one_ring() {
    const SENDERS: u32 = 3;
    const EACH: u32 = 20_000;
    let region = Arc::new(HeapRegion::new(4, 8));
    let handles: Vec<_> = (0..SENDERS)
        .map(|s| {
            let region = Arc::clone(&region);
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let msg = (u64::from(s) << 32 | u64::from(i)).to_le_bytes();
                    while send(region.ring(), s + 1, &msg).is_err() {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let mut next = [0u32; SENDERS as usize];
    let mut got = 0;
    while got < SENDERS * EACH {
        match region.ring().try_recv() {
            Recv::Ready(g) => {
                let v = u64::from_le_bytes(g.bytes().unwrap().try_into().unwrap());
                let (s, i) = ((v >> 32) as usize, v as u32);
                assert_eq!(i, next[s], "sender {s} out of order");
                next[s] += 1;
                got += 1;
            }
            Recv::Empty | Recv::Writing { .. } => std::thread::yield_now(),
            Recv::Skipped | Recv::Corrupt => panic!("corrupt"),
        }
    }
    handles.into_iter().for_each(|h| h.join().unwrap());
}

#[test]
fn bad_length_is_malformed_once() {
    let inbox = Camlbox::new(4, 16).unwrap();
    let rx = inbox.receiver::<u32>().unwrap();
    let tx = inbox.sender::<u32>();
    // A published head slot whose length runs past the slot, as a scribbler could leave.
    corrupt_head_len(&inbox, 1000);
    tx.send(&5).unwrap();
    match rx.recv() {
        Err(Error::Malformed { reason }) => assert!(reason.contains("1000"), "{reason}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert_eq!(rx.recv().unwrap(), 5);
}

/// Publishes slot 0 (the head of a fresh box) with a `len` of `len`.
fn corrupt_head_len(inbox: &Camlbox, len: u32) {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    let base = inbox.shared.map.as_ptr();
    // Control (384 bytes) + RingHeader (256 bytes) = slot 0: state u64, then len u32.
    // SAFETY: slot 0's header words, inside our live mapping; accessed atomically.
    unsafe {
        let slot = base.add(size_of::<Control>() + 256);
        let state = &*(slot as *const AtomicU64);
        let len_word = &*(slot.add(8) as *const AtomicU32);
        len_word.store(len, Ordering::Relaxed);
        state.store(1 << 32, Ordering::Release); // Full { pos: 0 }
    }
}

#[test]
fn undecodable_bytes_are_malformed_once() {
    let inbox = Camlbox::new(4, 16).unwrap();
    let rx = inbox.receiver::<String>().unwrap();
    let tx = inbox.sender::<String>();
    tx.try_send_bytes(&[200, 0, 0, 0, 0, 0, 0, 0]).unwrap(); // length 200, no bytes
    tx.try_send(&"ok".to_string()).unwrap();
    assert!(matches!(rx.recv(), Err(Error::Malformed { .. })));
    assert_eq!(rx.recv().unwrap(), "ok");
}

#[test]
fn garbage_state_word_is_skipped() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let inbox = Camlbox::new(2, 16).unwrap();
    let rx = inbox.receiver::<u8>().unwrap();
    // SAFETY: slot 0's state word inside our live mapping, accessed atomically.
    unsafe {
        let slot = inbox.shared.map.as_ptr().add(size_of::<Control>() + 256);
        (*(slot as *const AtomicU64)).store(0xdead_beef_dead_beef, Ordering::SeqCst);
    }
    assert!(matches!(rx.try_recv(), Err(Error::Malformed { .. })));
    let tx = inbox.sender::<u8>();
    for i in 0..5 {
        tx.send(&i).unwrap();
        assert_eq!(rx.recv().unwrap(), i);
    }
}

#[test]
fn panicking_serialize_abandons_its_slot() {
    struct Boom(std::cell::Cell<u32>);
    impl serde::Serialize for Boom {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let n = self.0.get();
            self.0.set(n + 1);
            assert!(n == 0, "boom while writing the slot");
            s.serialize_u8(1)
        }
    }
    let inbox = Camlbox::new(1, 16).unwrap();
    let rx = inbox.receiver::<u8>().unwrap();
    let r = std::panic::catch_unwind(|| inbox.sender::<Boom>().try_send(&Boom(0.into())));
    assert!(r.is_err());
    inbox.sender::<u8>().try_send(&3).unwrap_err(); // the abandoned slot is still in the box
    assert_eq!(
        rx.try_recv().unwrap(),
        None,
        "abandoned slots are skipped silently"
    );
    inbox.sender::<u8>().try_send(&3).unwrap();
    assert_eq!(rx.recv().unwrap(), 3);
}

#[test]
fn encode_errors_and_sizes() {
    let inbox = Camlbox::new(2, 8).unwrap();
    let tx = inbox.sender::<Vec<u8>>();
    match tx.try_send(&vec![0; 9]) {
        Err(Error::MessageTooLarge { size: 17, max: 8 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(inbox.is_empty());
    tx.try_send(&vec![]).unwrap();
    assert_eq!(inbox.len(), 1);
}

#[test]
fn dead_sender_slot_is_reclaimed_by_recv() {
    let inbox = Camlbox::new(2, 16).unwrap();
    let rx = inbox.receiver::<u8>().unwrap();
    // A claim by a pid that does not exist, never published.
    inbox.shared.ring.try_claim(i32::MAX as u32).unwrap().die();
    inbox.sender::<u8>().send(&1).unwrap();
    let start = std::time::Instant::now();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
    assert!(start.elapsed() >= STUCK_WRITER_CHECK);
    // A live writer is waited for, not reclaimed.
    inbox
        .shared
        .ring
        .try_claim(std::process::id())
        .unwrap()
        .die();
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(Error::Timeout { .. })
    ));
}

#[test]
fn receiver_drop_disconnects_and_wakes_blocked_senders() {
    let inbox = Camlbox::new(1, 16).unwrap();
    let rx = inbox.receiver::<u8>().unwrap();
    let tx = inbox.sender::<u8>();
    tx.send(&1).unwrap();
    let t = std::thread::spawn(move || tx.send(&2));
    std::thread::sleep(Duration::from_millis(20));
    drop(rx);
    assert!(matches!(t.join().unwrap(), Err(Error::Disconnected)));
    assert!(matches!(
        inbox.sender::<u8>().try_send_bytes(&[1]),
        Err(Error::Disconnected)
    ));
    // A new receiver gets what was left.
    let rx = inbox.receiver::<u8>().unwrap();
    assert_eq!(rx.try_recv().unwrap(), Some(1));
}

#[test]
fn debug_output() {
    let inbox = Camlbox::new(2, 16).unwrap();
    let s = format!("{inbox:?} {:?}", inbox.sender::<u8>());
    assert!(s.contains("capacity: 2"), "{s}");
}

#[test]
fn cached_pid_is_reset_in_a_forked_child() {
    use crate::sys::process::{self, Exit, Fork};
    use crate::sys::process::{cached_pid, register_pid_cache};
    register_pid_cache();
    assert_eq!(cached_pid() as u32, std::process::id(), "fills the cache");
    // SAFETY: the child only reads pids (no locks, no allocation) and `_exit`s.
    match unsafe { process::fork() }.unwrap() {
        Fork::Child => {
            let ok = cached_pid() == process::getpid();
            process::exit_now(if ok { 0 } else { 1 });
        }
        Fork::Parent(pid) => {
            assert_eq!(process::wait_blocking(pid).unwrap(), Exit::Code(0));
            assert_eq!(cached_pid() as u32, std::process::id());
        }
    }
}
