//! Systems measured in interleaved blocks: each round runs a block of iterations of one
//! system, then a block of the next, and so on, the order rotating from round to round.
//! Never job by job: procyon's idle workers and rayon's idle threads spin for a while
//! after a job, on the very CPUs the other system needs next, so alternating single jobs
//! charges each system for the other's spinning. A burst of load from elsewhere still
//! lands on every system alike, which is what a single criterion group per system cannot
//! offer.

use std::ops::Deref;

use super::results::{self, Line, Record};

/// One system's per-iteration seconds, in the order they were taken, and how many
/// rounds of equal blocks they came in (1: not measured in blocks). Reads as the slice
/// of its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    values: Vec<f64>,
    rounds: usize,
}

impl Samples {
    /// The median of each round's block (as [`record_samples`] takes the whole run's),
    /// in round order; empty unless there are at least two rounds of equal blocks.
    pub fn round_medians(&self) -> Vec<f64> {
        if self.rounds < 2 || self.values.is_empty() || self.values.len() % self.rounds != 0 {
            return Vec::new();
        }
        self.values
            .chunks(self.values.len() / self.rounds)
            .map(|block| {
                let mut block = block.to_vec();
                block.sort_by(f64::total_cmp);
                percentile(&block, 0.5)
            })
            .collect()
    }
}

/// Samples not taken in rounds of blocks (one round).
impl From<Vec<f64>> for Samples {
    fn from(values: Vec<f64>) -> Self {
        Samples { values, rounds: 1 }
    }
}

impl Deref for Samples {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        &self.values
    }
}

/// Runs `rounds` rounds of a block of `per_block` iterations of every system in
/// `systems`, and returns each system's per-iteration seconds (in `systems`' order),
/// round after round. `run(name)` performs one iteration of system `name`, checks its
/// result (untimed), and returns the seconds its timed part took.
pub fn blocks(
    systems: &[&str],
    rounds: usize,
    per_block: usize,
    mut run: impl FnMut(&str) -> f64,
) -> Vec<Samples> {
    let mut out = vec![Vec::with_capacity(rounds * per_block); systems.len()];
    for round in 0..rounds {
        for k in 0..systems.len() {
            let s = (k + round) % systems.len();
            for _ in 0..per_block {
                out[s].push(run(systems[s]));
            }
        }
    }
    out.into_iter()
        .map(|values| Samples { values, rounds })
        .collect()
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
