//! Loom model checks of the slot protocol (`ring.rs`) over heap memory.
//!
//! Run (CI calls exactly this; ~15 s on two idle cores, ~45 s with
//! `LOOM_MAX_PREEMPTIONS=3` on a loaded machine):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --lib --features tokio/sync camlbox::loom_tests
//! ```
//!
//! (`--features tokio/sync`: the tokio dev-dependency does not build under `--cfg loom`
//! without it; drop the flag if that dependency goes.)
//!
//! Shape of every model: senders and a receiver make a *bounded* number of attempts
//! concurrently (no spin-waiting on each other, which would blow up loom's schedule
//! space); then, alone, the main thread drains what is left. The checks: every message
//! that a send reported as sent is received exactly once, in per-sender order, with its
//! length intact; nothing else is received; the ring ends empty.
//!
//! Payload bytes are plain memory, which loom does not track. `len` is an atomic written
//! Relaxed before the Release publish, so a missing Acquire/Release edge shows up as a
//! wrong length: each message is `s + 1` bytes of value `s`, and the receiver checks that
//! the length matches the first byte.

use std::sync::Arc;

use loom::thread;

use super::ring::{HeapRegion, Recv, Ring};

/// Checks `f` under every interleaving with at most `preemptions` preemptions (bugs in
/// protocols like this one show up within 2-3; LOOM_MAX_PREEMPTIONS overrides, for a
/// deeper search than CI's time budget allows).
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(f);
}

/// One send attempt of message `s` by writer `s + 1`; `true` if it was published.
fn try_send(ring: &Ring, s: u8) -> bool {
    match ring.try_claim(u32::from(s) + 1) {
        Ok(mut claim) => {
            let n = usize::from(s) + 1;
            claim.payload()[..n].fill(s);
            claim.publish(n);
            true
        }
        Err(_) => false,
    }
}

/// One receive attempt; slots `Writing` by a writer in `dead` are reclaimed on the way.
fn try_recv(ring: &Ring, dead: &[u32]) -> Option<u8> {
    loop {
        match ring.try_recv() {
            Recv::Ready(guard) => {
                let bytes = guard.bytes().expect("published length within the slot");
                let s = *bytes
                    .first()
                    .expect("a stale len (0) read: publish not visible");
                assert_eq!(
                    bytes.len(),
                    usize::from(s) + 1,
                    "len not visible with payload"
                );
                return Some(s);
            }
            Recv::Writing { pos, writer } if dead.contains(&writer) => {
                assert!(
                    ring.reclaim(pos, writer),
                    "reclaim of a dead writer's head slot"
                );
            }
            Recv::Empty | Recv::Writing { .. } => return None,
            Recv::Skipped | Recv::Corrupt => panic!("protocol produced a corrupt state"),
        }
    }
}

/// After every other thread is joined: take everything left.
fn drain(ring: &Ring, dead: &[u32], got: &mut Vec<u8>) {
    while let Some(s) = try_recv(ring, dead) {
        got.push(s);
    }
    assert!(matches!(ring.try_recv(), Recv::Empty), "ring ends empty");
    assert_eq!(ring.len(), 0);
}

/// Spawns one thread per entry of `plan`; each tries to send its messages in order, and
/// returns the ones that were published.
fn spawn_senders(region: &Arc<HeapRegion>, plan: &[&[u8]]) -> Vec<thread::JoinHandle<Vec<u8>>> {
    plan.iter()
        .map(|msgs| {
            let region = Arc::clone(region);
            let msgs = msgs.to_vec();
            thread::spawn(move || {
                msgs.into_iter()
                    .filter(|&s| try_send(region.ring(), s))
                    .collect()
            })
        })
        .collect()
}

/// Every published message received exactly once, each sender's in its order.
fn check(got: &[u8], sent: Vec<Vec<u8>>) {
    for mine in &sent {
        let seen: Vec<u8> = got.iter().copied().filter(|s| mine.contains(s)).collect();
        assert_eq!(
            &seen, mine,
            "a sender's messages, exactly once and in order"
        );
    }
    assert_eq!(
        got.len(),
        sent.iter().map(Vec::len).sum::<usize>(),
        "nothing extra"
    );
}

#[test]
fn two_senders_race_for_one_slot() {
    model(3, || {
        let region = Arc::new(HeapRegion::new(1, 8));
        let senders = spawn_senders(&region, &[&[0], &[1]]);
        let mut got: Vec<u8> = try_recv(region.ring(), &[]).into_iter().collect();
        let sent: Vec<Vec<u8>> = senders.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            sent.iter().any(|s| !s.is_empty()),
            "Full only when the slot is taken"
        );
        drain(region.ring(), &[], &mut got);
        check(&got, sent);
    });
}

#[test]
fn two_senders_two_slots_with_receiver() {
    model(3, || {
        let region = Arc::new(HeapRegion::new(2, 8));
        let senders = spawn_senders(&region, &[&[0], &[1]]);
        let mut got: Vec<u8> = (0..2)
            .filter_map(|_| try_recv(region.ring(), &[]))
            .collect();
        let sent: Vec<Vec<u8>> = senders.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(sent, [vec![0], vec![1]], "two slots hold two messages");
        drain(region.ring(), &[], &mut got);
        check(&got, sent);
    });
}

#[test]
fn one_sender_laps_a_single_slot() {
    // Per-sender FIFO across laps while the receiver frees slots under the sender.
    model(3, || {
        let region = Arc::new(HeapRegion::new(1, 8));
        let senders = spawn_senders(&region, &[&[0, 1, 2]]);
        let mut got: Vec<u8> = (0..2)
            .filter_map(|_| try_recv(region.ring(), &[]))
            .collect();
        let sent: Vec<Vec<u8>> = senders.into_iter().map(|h| h.join().unwrap()).collect();
        drain(region.ring(), &[], &mut got);
        check(&got, sent);
    });
}

#[test]
fn three_senders_two_slots() {
    model(2, || {
        let region = Arc::new(HeapRegion::new(2, 8));
        let senders = spawn_senders(&region, &[&[0], &[1], &[2]]);
        let mut got: Vec<u8> = try_recv(region.ring(), &[]).into_iter().collect();
        let sent: Vec<Vec<u8>> = senders.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(sent.iter().map(Vec::len).sum::<usize>() >= 2);
        drain(region.ring(), &[], &mut got);
        check(&got, sent);
    });
}

#[test]
fn sender_dies_after_claim() {
    // Writer 9 claims a slot and dies without publishing, before or after its tail CAS;
    // the receiver reclaims the slot and the live sender's message still arrives.
    for before_tail in [false, true] {
        model(3, move || {
            let region = Arc::new(HeapRegion::new(2, 8));
            let r2 = Arc::clone(&region);
            let doomed = thread::spawn(move || {
                if before_tail {
                    r2.ring().claim_and_die_before_tail(9).unwrap();
                } else {
                    r2.ring().try_claim(9).unwrap().die();
                }
            });
            let senders = spawn_senders(&region, &[&[0]]);
            let mut got: Vec<u8> = try_recv(region.ring(), &[9]).into_iter().collect();
            doomed.join().unwrap();
            let sent: Vec<Vec<u8>> = senders.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(sent, [vec![0]], "two slots: both claims succeed");
            drain(region.ring(), &[9], &mut got);
            check(&got, sent);
            // The box still works at full capacity afterwards.
            assert!(try_send(region.ring(), 3) && try_send(region.ring(), 4));
            assert_eq!(try_recv(region.ring(), &[]), Some(3));
            assert_eq!(try_recv(region.ring(), &[]), Some(4));
        });
    }
}

#[test]
fn receiver_dies_between_free_and_head() {
    // Receiver A frees its slot and dies before advancing the head, while senders keep
    // going; receiver B (the main thread, after A is gone) takes over.
    model(3, || {
        let region = Arc::new(HeapRegion::new(1, 8));
        let senders = spawn_senders(&region, &[&[0, 1], &[2]]);
        let r2 = Arc::clone(&region);
        let first = thread::spawn(move || match r2.ring().try_recv() {
            Recv::Ready(guard) => {
                let s = guard.bytes().unwrap()[0];
                guard.free_without_advance();
                Some(s)
            }
            Recv::Empty | Recv::Writing { .. } => None,
            Recv::Skipped | Recv::Corrupt => panic!("corrupt"),
        })
        .join()
        .unwrap();
        let mut got: Vec<u8> = first.into_iter().collect();
        got.extend(try_recv(region.ring(), &[]));
        let sent: Vec<Vec<u8>> = senders.into_iter().map(|h| h.join().unwrap()).collect();
        drain(region.ring(), &[], &mut got);
        check(&got, sent);
    });
}
