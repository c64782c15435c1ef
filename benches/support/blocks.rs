//! Systems measured in interleaved blocks: each round runs a block of iterations of one
//! system, then a block of the next, and so on, the order rotating from round to round.
//! Never job by job: procyon's idle workers and rayon's idle threads spin for a while
//! after a job, on the very CPUs the other system needs next, so alternating single jobs
//! charges each system for the other's spinning. A burst of load from elsewhere still
//! lands on every system alike, which is what a single criterion group per system cannot
//! offer.
//!
//! For the same reason a block also *lasts* at least [`MIN_BLOCK`] when measuring,
//! however many iterations that takes past the bench's own count: the previous system's
//! threads are still spinning down while a block starts, and a block of a few short
//! iterations can lie entirely inside that. W7's depth-4 tree from the client took
//! 15.6-17.0 us in the rounds of run J (at 3942d75) whose procyon block came straight
//! after rayon's, against 3.6-3.9 us in the others, a block being 10 trees (about 40 us);
//! two launches of the nested bench on 2026-12-06 reproduced it (slow in 5 of 5 and 4 of
//! 5 such rounds, fast in the other 2 of 7; procyon-flat slow in its one round after
//! rayon's block). With blocks of at least 2 ms, three launches had no such rounds, and
//! with [`MIN_BLOCK`] none of eight: the tree took 3.14-3.94 us in every round of seven
//! of them, 5.12-5.26 us in every round of the eighth (the VM in a slower state). Iterations
//! per block then differ between systems and rounds; [`Samples`] keeps where each
//! round's block ends.

use std::ops::Deref;
use std::time::{Duration, Instant};

use super::results::{self, Line, Record};

/// How long a block lasts at least under `cargo bench` (module docs): some 50 times the
/// spin-down that reached into W7's blocks (at least half of a 10-tree block, over
/// 100 us, above), so that it moves a block's median by a few percent at most. A fixed
/// value, not measured on the machine at hand.
pub const MIN_BLOCK: Duration = Duration::from_millis(5);

/// One system's per-iteration seconds, in the order they were taken, and where each
/// round's block of them ends (one round: not measured in blocks). Reads as the slice of
/// its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    values: Vec<f64>,
    /// The end of each round's block in `values`, in round order.
    round_ends: Vec<usize>,
}

impl Samples {
    /// Each round's block of values, in round order.
    fn round_blocks(&self) -> impl Iterator<Item = &[f64]> {
        let starts = std::iter::once(0).chain(self.round_ends.iter().copied());
        starts
            .zip(&self.round_ends)
            .map(|(start, &end)| &self.values[start..end])
    }

    /// The median of each round's block (as [`record_samples`] takes the whole run's),
    /// in round order; empty unless there are at least two rounds.
    pub fn round_medians(&self) -> Vec<f64> {
        if self.round_ends.len() < 2 {
            return Vec::new();
        }
        self.round_blocks()
            .filter(|block| !block.is_empty())
            .map(|block| {
                let mut block = block.to_vec();
                block.sort_by(f64::total_cmp);
                percentile(&block, 0.5)
            })
            .collect()
    }

    /// How many iterations each round's block took, in round order.
    pub fn block_lens(&self) -> Vec<usize> {
        self.round_blocks().map(<[f64]>::len).collect()
    }
}

/// Samples not taken in rounds of blocks (one round).
impl From<Vec<f64>> for Samples {
    fn from(values: Vec<f64>) -> Self {
        let round_ends = vec![values.len()];
        Samples { values, round_ends }
    }
}

impl Deref for Samples {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        &self.values
    }
}

/// Runs `rounds` rounds of a block of every system in `systems`, and returns each
/// system's per-iteration seconds (in `systems`' order), round after round. A block is
/// `per_block` iterations and, under `cargo bench`, as many more as it takes to last
/// [`MIN_BLOCK`] (module docs). `run(name)` performs one iteration of system `name`,
/// checks its result (untimed), and returns the seconds its timed part took.
pub fn blocks(
    systems: &[&str],
    rounds: usize,
    per_block: usize,
    run: impl FnMut(&str) -> f64,
) -> Vec<Samples> {
    let min = if super::measuring() {
        MIN_BLOCK
    } else {
        Duration::ZERO
    };
    blocks_lasting(systems, rounds, per_block, min, run)
}

/// [`blocks`] with blocks of at least `per_block` iterations that last at least
/// `min_time` each (from the block's start to its last iteration's end, untimed parts
/// included).
pub fn blocks_lasting(
    systems: &[&str],
    rounds: usize,
    per_block: usize,
    min_time: Duration,
    mut run: impl FnMut(&str) -> f64,
) -> Vec<Samples> {
    let mut out: Vec<Samples> = systems
        .iter()
        .map(|_| Samples {
            values: Vec::with_capacity(rounds * per_block),
            round_ends: Vec::with_capacity(rounds),
        })
        .collect();
    for round in 0..rounds {
        for k in 0..systems.len() {
            let s = (k + round) % systems.len();
            let start = Instant::now();
            let mut done = 0;
            while done < per_block || start.elapsed() < min_time {
                out[s].values.push(run(systems[s]));
                done += 1;
            }
            let end = out[s].values.len();
            out[s].round_ends.push(end);
        }
    }
    out
}

/// The value at quantile `p` of `sorted` (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Records (and prints) the median and p99 of `samples` (seconds per iteration) of
/// `system` on `case` of `bench` with `workers` workers, and each round's median when
/// they came in rounds of blocks; `items` and `bytes` per iteration, when counted.
/// Written only under `cargo bench`.
#[allow(clippy::too_many_arguments)]
pub fn record_samples(
    bench: &str,
    case: &str,
    workers: usize,
    system: &str,
    samples: impl Into<Samples>,
    items: Option<u64>,
    bytes: Option<u64>,
) -> Record {
    let samples = samples.into();
    let round_medians = samples.round_medians();
    let mut samples = samples.values;
    samples.sort_by(f64::total_cmp);
    let r = Record {
        bench: bench.into(),
        case: case.into(),
        workers,
        system: system.into(),
        median_s: percentile(&samples, 0.5),
        p99_s: percentile(&samples, 0.99),
        samples: samples.len(),
        items,
        bytes,
        round_medians,
    };
    let extra = match (items, bytes) {
        (_, Some(b)) => format!(", {:.1} GB/s", b as f64 / r.median_s / 1e9),
        (Some(n), None) => format!(", {:.1} ns/item", r.median_s / n as f64 * 1e9),
        (None, None) => String::new(),
    };
    println!(
        "{bench} {case}, {workers} workers, {system}: median {:.2} us, p99 {:.2} us over {}{extra}",
        r.median_s * 1e6,
        r.p99_s * 1e6,
        r.samples
    );
    if super::measuring() {
        results::write(&Line::Result(r.clone()));
    }
    r
}
