//! W8 (../shared/WORKLOADS.md) counted two ways, procyon (the text staged as a
//! `SharedStrings`, a map per chunk in the workers, merged in the client) and rayon (over
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

/// Adds the words of `block` to `counts` (in a worker: keys are copied once per new word).
pub fn count_block(mut counts: HashMap<String, u64>, block: &str) -> HashMap<String, u64> {
    for w in block.split_ascii_whitespace() {
        match counts.get_mut(w) {
            Some(c) => *c += 1,
            None => {
                counts.insert(w.to_owned(), 1);
            }
        }
    }
    counts
}

/// The procyon version: stage the blocks, count per chunk in the workers, merge here.
/// Returns the counts and the seconds the staging copy took.
pub fn procyon_count(
    pool: &Pool,
    blocks: &[&str],
    workers: usize,
) -> procyon::Result<(HashMap<String, u64>, f64)> {
    let start = Instant::now();
    let shared = pool.strings_from_slice(blocks)?;
    let staging = start.elapsed().as_secs_f64();
    // About two chunks per worker: each sends back a map of up to 50,000 words that is
    // decoded and merged here (7 parts took 55 ms to merge against 25 ms for 4).
    let per_chunk = (blocks.len() / (2 * workers)).max(1);
    let mut parts = pool
        .par_iter_strs(&shared)
        .with_min_len(per_chunk)
        .fold(HashMap::new, count_block)?;
    parts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_default();
    for part in parts {
        for (w, c) in part {
            *total.entry(w).or_insert(0) += c;
        }
    }
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
pub fn same_counts(a: &HashMap<String, u64>, b: &HashMap<&str, u64>) -> bool {
    a.len() == b.len() && b.iter().all(|(w, c)| a.get(*w) == Some(c))
}
