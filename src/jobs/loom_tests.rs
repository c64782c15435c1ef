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
