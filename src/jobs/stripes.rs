//! Per-worker stripes for jobs of many small chunks: each worker claims chunks from a
//! stripe of its own and steals from the others' once its own runs dry.
//!
//! With one shared counter (`JobSlot::next`), every claim moves one cache line between
//! the CPUs of the workers: one item per chunk cost 86-93 ns per item on 2 workers
//! against 12 ns on one. A job that will be cut into many chunks (at least
//! [`CHUNKS_PER_STRIPE`] per worker, which in practice means a small `max_len`) is laid
//! out in stripes instead: the job's items are split evenly over one [`Stripe`] per
//! worker, each on a cache line of its own, and worker `i` claims from stripe `i` alone
//! until it is empty, which no other worker touches unless it steals. A job of at least
//! [`STICKY_ITEMS`] items is striped too, however it is chunked, so that each worker
//! works the same part of large arrays in job after job (its page tables, unlike a
//! thread's, are its own).
//!
//! ## Protocol
//!
//! A stripe is one word packing the half-open range `lo..hi` of item indices it still
//! holds (32 bits each: striping is used only for jobs of fewer than 2^32 items). Every
//! change is a CAS from the value read, and a value says everything: the items `lo..hi`
//! are unclaimed and in this stripe. Items only ever leave a stripe (claims take from the
//! front, steals from the back), and a stripe is refilled only by its owner when it is
//! empty, with items it has just stolen and nobody else knows of, so no two stripes ever
//! hold the same item and a CAS that succeeds on a value read earlier is right whatever
//! happened in between.
//!
//! * **Claim** (the owner, stripe `i`): take a guided chunk from the front: half of what
//!   is left, clamped to `[min_len, max_len]`.
//! * **Steal** (a worker whose own stripe is empty, or a spare worker, which has none):
//!   take half of another stripe's items from its back. An owner runs the first chunk of
//!   its loot and puts the rest in its own, empty, stripe; a spare worker takes a single
//!   chunk and keeps nothing.
//! * **Stop** (a short-circuit in the chunk ending at `from`): cut every item at or past
//!   `from` out of the stripes and count them as done; the items before `from` are still
//!   claimed and run (`find_first` and the `try_*` terminals need every chunk before the
//!   breaking one). A steal in flight may refill its thief's stripe with items past `from`
//!   afterwards; those are then run and counted as usual, so `done` still reaches `n`
//!   exactly once per item.
//!
//! The claim, steal and stop protocol is model-checked with loom (`jobs::loom_tests`).
//!
//! Orderings are Relaxed as for the single counter: stripes only hand out disjoint index
//! ranges; what the chunks write is published through `done` and the state word.

use crate::loom::{AtomicU64, Ordering};
use std::ops::Range;

/// Least number of chunks per worker for which a job is striped.
pub(crate) const CHUNKS_PER_STRIPE: u64 = 64;
/// Least number of items for which a job is striped however it is chunked.
///
/// A process's page tables are its own: a page of a shared array that one worker has
/// mapped still faults in another the first time it touches it. With the shared counter
/// the part of the index space each worker gets moves from job to job (whoever claims
/// first takes the front), so every new job over the same large arrays makes each worker
/// fault in pages the other had mapped: 2 GiB W5 jobs ran at 11-28 GB/s in their first
/// runs after a warm-up, against 63-67 GB/s at once when striped. Striped, worker `i`
/// starts on stripe `i` in every job, so the pages it touched last time are mapped
/// already (rayon's threads share one page table and never pay this). What a steal still
/// takes from another stripe is mapped 64 KiB at a time before it is written
/// (`view::ArrayViewMut::chunk_mut`). A fixed count, not a reading of the machine: 2^20
/// items is a few MiB of any element type, past which a job's page faults cost more than
/// its claims.
pub(crate) const STICKY_ITEMS: u64 = 1 << 20;
/// Bytes of one stripe.
pub(crate) const STRIPE_SIZE: usize = 64;

/// One worker's share of a job's items (see the module docs).
#[repr(C, align(64))]
pub(crate) struct Stripe {
    range: AtomicU64,
    _pad: [u64; 7],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Stripe>() == STRIPE_SIZE);

impl Stripe {
    /// An empty stripe (for tests over heap memory; the engine's live in the mempool).
    #[cfg(test)]
    pub(crate) fn empty() -> Stripe {
        Stripe {
            range: AtomicU64::new(0),
            _pad: [0; 7],
        }
    }
}

fn pack(lo: u64, hi: u64) -> u64 {
    debug_assert!(lo <= hi && hi <= u32::MAX as u64);
    (hi << 32) | lo
}

fn unpack(word: u64) -> (u64, u64) {
    (word & u32::MAX as u64, word >> 32)
}

/// How many stripes a job of `n` items with chunks of at most `max_len` gets on
/// `workers` workers: 0 (one shared counter) unless it will be cut into many chunks or
/// is large ([`STICKY_ITEMS`]).
#[inline]
pub(crate) fn stripes_for(n: u64, max_len: u64, workers: u64) -> usize {
    if n < CHUNKS_PER_STRIPE * workers {
        // Too few items for that many chunks (a small nested job): no division.
        return 0;
    }
    let chunks = n / max_len.max(1);
    let many = chunks >= CHUNKS_PER_STRIPE * workers || n >= STICKY_ITEMS;
    if workers >= 2 && n <= u32::MAX as u64 && many {
        workers as usize
    } else {
        0
    }
}

/// Splits `0..n` evenly over `stripes` (the submitter, before publishing the job).
pub(crate) fn init(stripes: &[Stripe], n: u64) {
    let s = stripes.len() as u64;
    for (i, stripe) in stripes.iter().enumerate() {
        let i = i as u64;
        // Relaxed: published with the job (ACTIVE, Release).
        stripe
            .range
            .store(pack(i * n / s, (i + 1) * n / s), Ordering::Relaxed);
    }
}

/// A guided chunk out of `rem` items.
fn chunk(rem: u64, min: u64, max: u64) -> u64 {
    (rem / 2).clamp(min, max).min(rem)
}

/// Claims the next chunk for `worker`: from its own stripe, else stolen from another.
pub(crate) fn claim(stripes: &[Stripe], worker: usize, min: u64, max: u64) -> Option<Range<usize>> {
    let own = stripes.get(worker);
    if let Some(stripe) = own {
        let mut cur = stripe.range.load(Ordering::Relaxed);
        loop {
            let (lo, hi) = unpack(cur);
            if lo >= hi {
                break;
            }
            let size = chunk(hi - lo, min, max);
            match stripe.range.compare_exchange_weak(
                cur,
                pack(lo + size, hi),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(lo as usize..(lo + size) as usize),
                Err(actual) => cur = actual,
            }
        }
    }
    let s = stripes.len();
    for k in 1..=s {
        let victim = &stripes[(worker + k) % s];
        if own.is_some_and(|o| std::ptr::eq(o, victim)) {
            continue;
        }
        let mut cur = victim.range.load(Ordering::Relaxed);
        loop {
            let (lo, hi) = unpack(cur);
            if lo >= hi {
                break;
            }
            // An owner takes half (and keeps what it does not run now); a spare, one chunk.
            let take = match own {
                Some(_) => (hi - lo).div_ceil(2),
                None => chunk(hi - lo, min, max),
            };
            match victim.range.compare_exchange_weak(
                cur,
                pack(lo, hi - take),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let start = hi - take;
                    // A spare keeps nothing: it runs all it took (one chunk's worth).
                    let size = if own.is_some() {
                        chunk(take, min, max)
                    } else {
                        take
                    };
                    if let Some(o) = own {
                        if size < take {
                            // Our stripe is empty and only we refill it (module docs).
                            o.range.store(pack(start + size, hi), Ordering::Relaxed);
                        }
                    }
                    return Some(start as usize..(start + size) as usize);
                }
                Err(actual) => cur = actual,
            }
        }
    }
    None
}

/// Whether any stripe still holds items (a hint, as `JobSlot::chunks_left`).
pub(crate) fn any_left(stripes: &[Stripe]) -> bool {
    stripes.iter().any(|s| {
        let (lo, hi) = unpack(s.range.load(Ordering::Relaxed));
        lo < hi
    })
}

/// Takes every item at or past `from` out of the stripes; returns how many (see Stop in
/// the module docs). Items before `from` stay, to be claimed and run as usual: a
/// short-circuit at the chunk ending at `from` still runs every item before it, as with
/// the single counter, whose earlier items are all claimed already.
pub(crate) fn take_from(stripes: &[Stripe], from: u64) -> u64 {
    let mut taken = 0;
    for s in stripes {
        let mut cur = s.range.load(Ordering::Relaxed);
        loop {
            let (lo, hi) = unpack(cur);
            if hi <= from || lo >= hi {
                break;
            }
            let cut = lo.max(from);
            let new = if cut == lo { pack(0, 0) } else { pack(lo, cut) };
            match s
                .range
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    taken += hi - cut;
                    break;
                }
                Err(actual) => cur = actual,
            }
        }
    }
    taken
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn stripes(n: usize) -> Vec<Stripe> {
        (0..n).map(|_| Stripe::empty()).collect()
    }

    #[test]
    fn only_jobs_of_many_chunks_or_items_are_striped() {
        assert_eq!(stripes_for(100_000, 1, 2), 2);
        assert_eq!(stripes_for(100_000, u64::MAX, 2), 0, "few guided chunks");
        assert_eq!(stripes_for(STICKY_ITEMS, u64::MAX, 2), 2, "a large job");
        assert_eq!(stripes_for(STICKY_ITEMS - 1, u64::MAX, 2), 0);
        assert_eq!(stripes_for(4, 1, 2), 0, "a small nested job");
        assert_eq!(stripes_for(100_000, 1, 1), 0, "one worker");
        assert_eq!(stripes_for(1 << 33, 1, 2), 0, "past 32-bit indices");
    }

    /// Every item is handed out exactly once, whoever claims, in any interleaving the
    /// threads produce (owners, thieves and a spare at once).
    #[test]
    fn claims_and_steals_cover_every_item_once() {
        // Smaller under Miri, which runs them some thousand times slower.
        let cases: &[(u64, u64, u64)] = if cfg!(miri) {
            &[(200, 1, 1), (103, 3, 17), (7, 1, 1)]
        } else {
            &[(1000, 1, 1), (100_000, 1, 1), (100_003, 3, 17), (7, 1, 1)]
        };
        for &(n, min, max) in cases {
            let st = stripes(3);
            init(&st, n);
            let seen: Vec<std::sync::atomic::AtomicU64> = (0..n)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect();
            std::thread::scope(|s| {
                // Worker 1 starts late: the others must steal its stripe.
                for w in [0usize, 1, 2, 7] {
                    let (st, seen) = (&st, &seen);
                    s.spawn(move || {
                        if w == 1 {
                            std::thread::sleep(std::time::Duration::from_millis(2));
                        }
                        while let Some(r) = claim(st, w, min, max) {
                            assert!(r.len() as u64 <= max.max(1) && !r.is_empty());
                            for i in r {
                                seen[i].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            assert!(
                seen.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                "n = {n}"
            );
            assert!(!any_left(&st));
        }
    }

    /// A spare (no stripe to keep loot in) runs all it steals: nothing is dropped.
    #[test]
    fn a_spare_runs_everything_it_steals() {
        let st = stripes(2);
        init(&st, 200);
        let mut seen = vec![0u32; 200];
        while let Some(r) = claim(&st, 9, 3, 17) {
            assert!(r.len() <= 17);
            for i in r {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
    }

    #[test]
    fn a_stop_takes_what_lies_past_it_exactly_once() {
        let st = stripes(2);
        init(&st, 1000);
        let first = claim(&st, 0, 1, 1).unwrap();
        assert_eq!(first, 0..1);
        // A spare (no stripe of its own) steals one item from the back of the next stripe.
        let stolen = claim(&st, 5, 1, 1).unwrap();
        assert_eq!(stolen, 499..500);
        // A break in the chunk ending at 700: 700..1000 go, 1..499 and 500..700 stay.
        assert_eq!(take_from(&st, 700), 300);
        assert_eq!(take_from(&st, 700), 0);
        let mut left = 0;
        while let Some(r) = claim(&st, 1, 1, 1000) {
            assert!(r.end <= 700);
            left += r.len();
        }
        assert_eq!(left, 498 + 200);
        assert_eq!(take_from(&st, 0), 0);
    }
}
