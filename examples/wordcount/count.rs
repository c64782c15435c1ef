//! W8 (../shared/WORKLOADS.md) counted two ways, procyon (the text staged as a
//! `SharedStrings`, a map per worker, merged in the client) and rayon (over
//! the same blocks), and the check that two maps agree. Shared by the example and by
//! benches/wordcount.rs, which measures these very functions for the report.

use std::collections::HashMap;
use std::time::Instant;

use procyon::Pool;
use rayon::prelude::*;

use super::text;

/// `text` cut into about `n` pieces, each ending at a line end (or the text's end).
pub fn blocks(text: &str, n: usize) -> Vec<&str> {
    let step = text.len().div_ceil(n).max(1);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < text.len() {
        let end = match text.as_bytes()[(start + step).min(text.len())..]
            .iter()
            .position(|&b| b == b'\n')
        {
            Some(p) => (start + step + p + 1).min(text.len()),
            None => text.len(),
        };
        out.push(&text[start..end]);
        start = end;
    }
    out
}

/// The counts a worker sends back: its map of borrowed words (the very map the
/// sequential loop and rayon count into, [`text::count_into`]) with each distinct word
/// copied once into a `Box<str>` (16 bytes, against `String`'s 24).
///
/// Counting into owned keys instead (a copy per new word, the key bytes away from the
/// text) is slower: counting the 50 MB text in one thread pinned to one CPU (medians of
/// 8, two launches, on the 2-vCPU Zen 1 machine of BENCHMARKS.md at 996ed3f) took
/// 0.83-0.93 s with `Box<str>` keys, 1.07-1.11 s with `String` keys and 0.77-0.81 s with
/// the `&str` keys counted into here.
pub type Counts = HashMap<Box<str>, u64>;

/// A worker's local counts, keyed by words of the shared text.
type Local = HashMap<&'static str, u64>;

/// Adds the words of `block` to `counts`.
fn count_block(mut counts: Local, block: &'static str) -> Local {
    text::count_into(&mut counts, block);
    counts
}

/// A worker's counts, each distinct word copied once, to go back to the client.
fn owned(counts: Local) -> Counts {
    counts.into_iter().map(|(w, c)| (w.into(), c)).collect()
}

/// Merges two maps of counts (the smaller into the larger).
pub fn merge_counts(mut a: Counts, mut b: Counts) -> Counts {
    if a.len() < b.len() {
        std::mem::swap(&mut a, &mut b);
    }
    for (w, c) in b {
        *a.entry(w).or_insert(0) += c;
    }
    a
}

/// The procyon version: stage the blocks, count in the workers (one map per worker,
/// whatever blocks it takes), merge those here. Returns the counts and the seconds the
/// staging copy took.
pub fn procyon_count(pool: &Pool, blocks: &[&str]) -> procyon::Result<(Counts, f64)> {
    let start = Instant::now();
    let shared = pool.strings_from_slice(blocks)?;
    let staging = start.elapsed().as_secs_f64();
    // Counting is order-insensitive, so each worker folds every block it claims into one
    // map: two maps of up to 50,000 words come back on 2 workers, however the blocks
    // were chunked (`fold`, one map per chunk, sent back four and took 60-130 ms more to
    // decode and merge here). The worker's map borrows the words from the shared text
    // and copies them once, when it is finished.
    let total = pool.par_iter_strs(&shared).fold_finish_reduce_unordered(
        HashMap::new,
        count_block,
        owned,
        merge_counts,
    )?;
    Ok((total, staging))
}

/// The rayon version: the same blocks, a map per rayon fold, merged by `reduce`.
pub fn rayon_count<'a>(blocks: &[&'a str]) -> HashMap<&'a str, u64> {
    blocks
        .par_iter()
        .fold(HashMap::new, |mut m, b| {
            text::count_into(&mut m, b);
            m
        })
        .reduce(HashMap::new, |mut a, mut b| {
            if a.len() < b.len() {
                std::mem::swap(&mut a, &mut b);
            }
            for (w, c) in b {
                *a.entry(w).or_insert(0) += c;
            }
            a
        })
}

/// Whether two maps hold the same counts.
pub fn same_counts(a: &Counts, b: &HashMap<&str, u64>) -> bool {
    a.len() == b.len() && b.iter().all(|(w, c)| a.get(*w) == Some(c))
}
