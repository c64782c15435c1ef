//! Loom model checks of the claim / pin protocol (`state.rs`) over heap memory.
//!
//! Run (CI calls this with the camlbox models):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --lib --features tokio/sync jobs::loom_tests
//! ```
//!
//! The property: a worker that pinned a slot and then saw job `g1` ACTIVE in it never
//! reads another job's header while pinned, however the owner's completion, retiring and
//! re-claiming for `g2` interleave with it. The header is modelled by one atomic word
//! written Relaxed by the claimer before `publish` (as the real header is), so a missing
//! ordering shows up as the worker reading `g2`'s value.

use std::sync::Arc;

use loom::sync::atomic::AtomicU64;
use loom::thread;

use super::state::{Pins, SlotState, StateWord};
use crate::loom::Ordering;

struct Slot {
    word: StateWord,
    pins: Pins,
    header: AtomicU64,
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

fn active_slot() -> Arc<Slot> {
    Arc::new(Slot {
        word: StateWord::new(1, SlotState::Active),
        pins: Pins::new(),
        header: AtomicU64::new(1),
    })
}

/// The owner completes job 1, retires it and tries to claim the slot for job 2.
fn owner(s: &Slot) -> bool {
    if !s.word.complete() {
        return false;
    }
    s.word.retire();
    if s.word.claim(&s.pins, 2) {
        s.header.store(2, Ordering::Relaxed);
        s.word.publish(2);
        true
    } else {
        false
    }
}

#[test]
fn a_pinned_worker_never_sees_a_rewritten_header() {
    model(|| {
        let s = active_slot();
        let w = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                s.pins.pin(0);
                if s.word.is_active(1) {
                    assert_eq!(s.header.load(Ordering::Relaxed), 1, "read job 2's header");
                }
                s.pins.unpin(0);
            })
        };
        let claimed = owner(&s);
        w.join().unwrap();
        if claimed {
            assert!(s.word.is_active(2));
        }
    });
}

#[test]
fn a_new_job_is_seen_whole_or_not_at_all() {
    model(|| {
        let s = active_slot();
        let w = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                s.pins.pin(0);
                if s.word.is_active(2) {
                    assert_eq!(s.header.load(Ordering::Relaxed), 2, "half-published job 2");
                }
                s.pins.unpin(0);
            })
        };
        owner(&s);
        w.join().unwrap();
    });
}

#[test]
fn only_one_of_two_failures_and_a_completion_wins() {
    model(|| {
        let s = active_slot();
        let f = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                if s.word.begin_failure() {
                    s.word.end_failure();
                    1
                } else {
                    0
                }
            })
        };
        let completed = usize::from(s.word.complete());
        let failed = f.join().unwrap();
        assert_eq!(completed + failed, 1);
        let end = s.word.load().state();
        assert!(end == SlotState::Complete || end == SlotState::Failed);
        assert_eq!(s.word.load().gen(), 1);
    });
}

/// Every item of a striped job is handed out exactly once, however two owners and a
/// spare (no stripe of its own) interleave their claims and steals.
#[test]
fn stripes_hand_out_every_item_once() {
    use super::stripes::{self, Stripe};
    model(|| {
        const N: u64 = 4;
        let st: Arc<Vec<Stripe>> = Arc::new((0..2).map(|_| Stripe::empty()).collect());
        stripes::init(&st, N);
        let seen: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
        let run = |st: Arc<Vec<Stripe>>, seen: Arc<Vec<AtomicU64>>, w: usize| {
            while let Some(r) = stripes::claim(&st, w, 1, 2) {
                for i in r {
                    seen[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        let (s1, v1) = (Arc::clone(&st), Arc::clone(&seen));
        let t1 = thread::spawn(move || run(s1, v1, 1));
        let (s2, v2) = (Arc::clone(&st), Arc::clone(&seen));
        let t2 = thread::spawn(move || run(s2, v2, 5));
        run(Arc::clone(&st), Arc::clone(&seen), 0);
        t1.join().unwrap();
        t2.join().unwrap();
        for i in 0..N as usize {
            assert_eq!(seen[i].load(Ordering::Relaxed), 1, "item {i}");
        }
    });
}

/// A stop racing with claims and steals: every item is either run or taken by the stop,
/// never both, never neither, and nothing before the stop point is taken.
#[test]
fn a_stop_racing_with_steals_counts_every_item_once() {
    use super::stripes::{self, Stripe};
    model(|| {
        const N: u64 = 4;
        const FROM: u64 = 1;
        let st: Arc<Vec<Stripe>> = Arc::new((0..2).map(|_| Stripe::empty()).collect());
        stripes::init(&st, N);
        let seen: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
        let (s1, v1) = (Arc::clone(&st), Arc::clone(&seen));
        let t1 = thread::spawn(move || {
            while let Some(r) = stripes::claim(&s1, 0, 1, 1) {
                for i in r {
                    v1[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let taken = stripes::take_from(&st, FROM);
        let mut ran = 0;
        while let Some(r) = stripes::claim(&st, 1, 1, 1) {
            for i in r {
                seen[i].fetch_add(1, Ordering::Relaxed);
                ran += 1;
            }
        }
        t1.join().unwrap();
        let total: u64 = seen.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        assert!(
            seen.iter().all(|c| c.load(Ordering::Relaxed) <= 1),
            "an item ran twice"
        );
        assert_eq!(total + taken, N, "ran {total} (here {ran}), taken {taken}");
        assert_eq!(
            seen[0].load(Ordering::Relaxed),
            1,
            "an item before the stop was taken"
        );
    });
}
