//! W8 word count (docs/WORKLOADS.md): word frequencies of the seeded 50 MB text, counted
//! by the very functions `examples/wordcount --compare` runs (included below): procyon
//! (staging the text as a `SharedStrings` is timed, as in the example), rayon with as many
//! threads over the same blocks, and the sequential loop. Systems run in interleaved
//! blocks (support/blocks.rs), every map checked against the sequential one (untimed),
//! recorded in `results.jsonl` for `scripts/bench-report.sh`.
//!
//! `PROCYON_BENCH_WORKERS=1,2,4` gives the worker counts (default 2);
//! `PROCYON_BENCH_QUICK=1` changes nothing here (the 50 MB text and eleven rounds in
//! both modes); `cargo test --benches` runs one round on a 1 MB text. Plain binary
//! (`harness = false`).

use procyon::Pool;

#[path = "support/mod.rs"]
mod support;
use support::{blocks, measuring, note_load, rayon_pool, record_samples, time, workers};

/// W8's counts and text, as the example runs them.
#[path = "../examples/wordcount"]
#[allow(dead_code)] // the example's checksum is not used here
mod w8 {
    pub mod count;
    pub mod text;
}
use w8::{count, text};

/// Blocks the text is cut into (the example's default).
const BLOCKS: usize = 256;

const SYSTEMS: [&str; 3] = ["sequential", "rayon", "procyon"];

fn main() {
    // Eleven rounds in both modes: a round is one count per system (about a second on 2
    // workers), and the sequential loop alone moved 0.32-0.43 s from round to round in
    // run Q (2026-12-06), so seven rounds' median ratio moved with it (1.47x-1.58x
    // across three runs of one engine).
    let (bytes, rounds) = if measuring() {
        (50_000_000, 11)
    } else {
        (1_000_000, 1)
    };
    let text = text::generate(bytes, text::SEED);
    let blocks_of_text = count::blocks(&text, BLOCKS);
    let want = text::sequential(&text);
    note_load("w8", "before");
    for w in workers() {
        let pool = Pool::builder()
            .workers(w)
            .mempool_size(2 * text.len() + (256 << 20))
            .build()
            .expect("pool");
        let rp = rayon_pool(w);
        let samples = blocks(&SYSTEMS, rounds, 1, |system| match system {
            "sequential" => {
                let mut got = Default::default();
                let t = time(|| got = text::sequential(&text));
                assert!(got == want, "the sequential loop's counts changed");
                t
            }
            "rayon" => {
                let mut got = Default::default();
                let t = time(|| got = rp.install(|| count::rayon_count(&blocks_of_text)));
                assert!(
                    got == want,
                    "rayon's counts differ from the sequential loop's"
                );
                t
            }
            _ => {
                let mut got = Default::default();
                let t = time(|| {
                    got = count::procyon_count(&pool, &blocks_of_text)
                        .expect("procyon's count")
                        .0
                });
                assert!(
                    count::same_counts(&got, &want),
                    "procyon's counts differ from the sequential loop's"
                );
                t
            }
        });
        let case = format!("{} MB text", text.len() / 1_000_000);
        for (system, s) in SYSTEMS.iter().zip(samples) {
            record_samples("w8", &case, w, system, s, None, None);
        }
    }
    note_load("w8", "after");
}
