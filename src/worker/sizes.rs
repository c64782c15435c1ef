//! What the nested jobs of each call site cost, as a worker last measured them: whether
//! one is worth handing to a hungry worker (`inline`'s cost model).
//!
//! Handing work to another worker is not free. A share submits a job (about 2,500
//! instructions); on the reference 2-vCPU VM the hungry worker took its first item 1-2 us
//! after a tree started (it looked for work once per 64 `PAUSE`s then, 1.6 us there;
//! every 8 now, `futex`'s `LOOK_PAUSES`) and the owner's wait for the piece's result
//! took 0.5-1 us more. With the other worker idle, a
//! task's nested jobs of 64 one-item chunks took 0.26 us (median) in launches where they
//! happened to run inline and 3.83 us in launches where the idle worker was fed each one
//! at its start. So a hungry worker is fed at once only with a job not known to be
//! small, and from a small job's run only once that run's own time says its rest is
//! worth [`SHARE_MIN_NS`].
//!
//! When a nested job starts while a worker is hungry for it, and no timed run is open on
//! this worker's job stack, history decides: a small direct-mapped table per worker (a
//! worker is single-threaded: plain cells), keyed by the job's call site (its
//! monomorphized share function: one per call site and types) and its depth on the job
//! stack (a recursive call site starts jobs of different sizes at different depths),
//! holds the time per item last measured there ([`Sizes`]):
//!
//! * no record, or one that says the job takes [`SHARE_MIN_NS`] or more: the job is
//!   shared at once, as it always was, and timed from its start to the end of its
//!   owner's wait ([`Timing`]), the hand-offs included;
//! * a record that says less: the job runs inline, *timed* (one clock read when it
//!   begins). While it runs, its own time decides (`inline`'s `share_biggest`, which
//!   looks after its first item and then less and less often): its rest is shared once
//!   the time per item so far, times the items left, reaches the threshold (then its
//!   record, proved wrong, is dropped), and the runs nested in it (parts of one of its
//!   items) stay inline while its items are below the threshold each.
//!
//! Runs begun while nobody was hungry are not timed, and are shared as they always were
//! once a worker gets hungry unless a timed run encloses them. A wrong record costs at
//! most one item's wait or one share nobody needed; the inline fast path (nobody hungry)
//! reads no clock and no record.

use std::cell::Cell;
use std::num::NonZeroU64;

use crate::sys::clock;

/// The least work (estimated) worth handing to a hungry worker at once, in nanoseconds:
/// about twice what a share costs on the reference VM, counting both hand-offs (above).
/// A fixed value, not measured on the machine at hand: on a machine with cheaper
/// hand-offs it keeps pieces of up to 4 us from being shared that could have been.
pub(crate) const SHARE_MIN_NS: u64 = 4_000;

/// Entries in a worker's table (a power of two).
const ENTRIES: usize = 64;

/// A call site at a depth on the worker's job stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Site(NonZeroU64);

impl Site {
    /// The site of the share function at address `share`, at stack depth `depth`.
    pub(crate) fn new(share: usize, depth: usize) -> Site {
        // The depth goes into the 7 bits below the top one, which user-space addresses
        // leave clear, and the top bit is set: never 0, the empty entry.
        let key = (share as u64 ^ ((depth as u64 & 0x7f) << 56)) | 1 << 63;
        Site(NonZeroU64::new(key).unwrap_or(NonZeroU64::MAX))
    }

    fn key(self) -> u64 {
        self.0.get()
    }

    fn index(self) -> usize {
        // Fibonacci hashing: the top bits of the product spread nearby addresses.
        (self.key().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % ENTRIES
    }
}

/// What a worker's record says of a job ([`Sizes::estimate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Estimate {
    /// No record: share it at once, and time it.
    Unknown,
    /// Worth sharing: share it at once, and time it.
    Big,
    /// Not worth sharing: run it inline, timed.
    Small,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    /// The site's key; 0: empty.
    site: u64,
    /// Nanoseconds per item, last measured.
    per_item_ns: u32,
}

/// A worker's records (module docs).
pub(crate) struct Sizes {
    entries: [Cell<Entry>; ENTRIES],
}

impl Sizes {
    pub(crate) fn new() -> Sizes {
        Sizes {
            entries: std::array::from_fn(|_| Cell::new(Entry::default())),
        }
    }

    /// What a job of `n` items at `site` is worth, by its record.
    pub(crate) fn estimate(&self, site: Site, n: usize) -> Estimate {
        let e = self.entries[site.index()].get();
        if e.site != site.key() {
            Estimate::Unknown
        } else if u64::from(e.per_item_ns).saturating_mul(n as u64) >= SHARE_MIN_NS {
            Estimate::Big
        } else {
            Estimate::Small
        }
    }

    /// Records that a job of `n` items at `site` took `ns` nanoseconds (replacing what
    /// the entry held, this site's or another's).
    pub(crate) fn record(&self, site: Site, n: usize, ns: u64) {
        let per_item_ns = (ns / n.max(1) as u64).min(u64::from(u32::MAX)) as u32;
        self.entries[site.index()].set(Entry {
            site: site.key(),
            per_item_ns,
        });
    }

    /// Drops the record of `site` (its job turned out bigger than it said).
    pub(crate) fn forget(&self, site: Site) {
        let cell = &self.entries[site.index()];
        if cell.get().site == site.key() {
            cell.set(Entry::default());
        }
    }
}

/// A job shared at once, timed from its start until its owner's wait ends:
/// [`Timing::done`] records it; dropped, it records nothing (a job that failed).
pub(crate) struct Timing {
    site: Site,
    t0: u64,
}

impl Timing {
    pub(crate) fn start(site: Site) -> Timing {
        Timing {
            site,
            t0: clock::now_ns(),
        }
    }

    /// Records the job's `n` items as having taken the time since its start, in this
    /// worker's table (nothing outside a worker).
    pub(crate) fn done(self, n: usize) {
        if let Some(st) = super::state() {
            let ns = clock::now_ns().saturating_sub(self.t0);
            st.sizes.record(self.site, n, ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_say_small_big_or_unknown_per_site_and_depth() {
        let sizes = Sizes::new();
        let site = Site::new(0x5555_1234_5670, 2);
        let deeper = Site::new(0x5555_1234_5670, 3);
        assert_ne!(site, deeper);
        assert_eq!(sizes.estimate(site, 4), Estimate::Unknown);
        // 4 items in 1.2 us: 300 ns each; 4 of them are small, 20 are not.
        sizes.record(site, 4, 1_200);
        assert_eq!(sizes.estimate(site, 4), Estimate::Small);
        assert_eq!(sizes.estimate(site, 20), Estimate::Big);
        assert_eq!(sizes.estimate(deeper, 4), Estimate::Unknown);
        // A later measurement replaces the record; a forgotten one is unknown.
        sizes.record(site, 4, 40_000);
        assert_eq!(sizes.estimate(site, 1), Estimate::Big);
        sizes.forget(site);
        assert_eq!(sizes.estimate(site, 1), Estimate::Unknown);
        // A huge time per item saturates instead of wrapping; no item counts as one.
        sizes.record(site, 0, u64::MAX);
        assert_eq!(sizes.estimate(site, 1), Estimate::Big);
    }
}
