//! Loom model checks of the lock-free cores in `state.rs`: the semaphore's permit count
//! and the barrier's turnstile word, over heap memory.
//!
//! Run (as `scripts/test.sh` does):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --lib --features tokio/sync sync::loom_tests
//! ```
//!
//! Waiting is not modelled (it is the futex `Event`, whose protocol `futex.rs` argues);
//! a waiting party here spins with loom's `yield_now`, bounded where the model may leave
//! it waiting forever. Payload data is a loom `AtomicU32` written and read `Relaxed`, so a
//! missing Acquire/Release edge in the cores shows up as a stale value.

use std::sync::Arc;

use loom::sync::atomic::{AtomicU32, Ordering::Relaxed};
use loom::thread;

use super::state::{Arrival, Permits, Turnstile};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// One permit, two takers: at most one wins at a time, the permit is conserved, and the
/// winner sees what the releaser wrote before giving it back.
#[test]
fn permit_hand_off() {
    model(|| {
        let permits = Arc::new(Permits::new(0));
        let data = Arc::new(AtomicU32::new(0));
        let (p2, d2) = (Arc::clone(&permits), Arc::clone(&data));
        let giver = thread::spawn(move || {
            d2.store(7, Relaxed);
            p2.give(1).unwrap();
        });
        let p3 = Arc::clone(&permits);
        let d3 = Arc::clone(&data);
        let taker = thread::spawn(move || {
            let got = p3.try_take();
            if got {
                assert_eq!(d3.load(Relaxed), 7, "a permit carries the giver's writes");
            }
            got
        });
        let mine = permits.try_take();
        if mine {
            assert_eq!(data.load(Relaxed), 7);
        }
        giver.join().unwrap();
        let theirs = taker.join().unwrap();
        assert!(!(mine && theirs), "one permit taken twice");
        let left = permits.available();
        assert_eq!(
            left + u32::from(mine) + u32::from(theirs),
            1,
            "permit lost or made"
        );
    });
}

/// Release past `u32::MAX` is refused without changing the count.
#[test]
fn give_overflow_refused() {
    model(|| {
        let permits = Permits::new(u32::MAX - 1);
        assert!(permits.give(1).is_ok());
        assert_eq!(permits.give(1), Err(u32::MAX));
        assert_eq!(permits.available(), u32::MAX);
    });
}

/// Two parties, two rounds: each sees the other's writes from before each round, and
/// there is exactly one leader per round.
#[test]
fn barrier_two_rounds_publish() {
    model(|| {
        let t = Arc::new(Turnstile::new());
        let cells = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
        let party = |me: usize, t: Arc<Turnstile>, cells: Arc<[AtomicU32; 2]>| {
            let mut leaders = 0;
            for round in 1..=2u32 {
                cells[me].store(round, Relaxed);
                match t.arrive(2) {
                    Arrival::Released => leaders += 1,
                    Arrival::Counted { generation } => {
                        while !t.passed(generation) {
                            thread::yield_now();
                        }
                    }
                }
                assert!(
                    cells[1 - me].load(Relaxed) >= round,
                    "barrier let a party through early"
                );
            }
            leaders
        };
        let (t2, c2) = (Arc::clone(&t), Arc::clone(&cells));
        let other = thread::spawn(move || party(1, t2, c2));
        let mine = party(0, Arc::clone(&t), Arc::clone(&cells));
        assert_eq!(mine + other.join().unwrap(), 2);
        assert_eq!(t.arrived(), 0);
    });
}

/// A counted party that withdraws (its timeout) races with the last arrival: either it
/// withdrew and the round is still open with only the other counted, or the round was
/// released and the withdrawal reports that it passed.
#[test]
fn barrier_withdraw_races_release() {
    model(|| {
        let t = Arc::new(Turnstile::new());
        let t2 = Arc::clone(&t);
        let first = thread::spawn(move || match t2.arrive(2) {
            Arrival::Counted { generation } => Some(t2.withdraw(generation)),
            Arrival::Released => None,
        });
        let second = t.arrive(2);
        let withdrew = first.join().unwrap();
        match (withdrew, second) {
            // Withdrew before the second arrived: the second waits alone in round 0.
            (Some(true), Arrival::Counted { generation }) => {
                assert_eq!(generation, 0);
                assert!(!t.passed(0));
                assert_eq!(t.arrived(), 1);
            }
            // The second released the round: the first passed.
            (Some(false), Arrival::Released) => {
                assert!(t.passed(0));
                assert_eq!(t.arrived(), 0);
            }
            // The second came first; the first was last.
            (None, Arrival::Counted { generation: 0 }) => {
                assert!(t.passed(0));
                assert_eq!(t.arrived(), 0);
            }
            other => panic!("impossible outcome {other:?}"),
        }
    });
}
