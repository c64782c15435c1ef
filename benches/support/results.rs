//! The benches' machine-readable results: one JSON object a line in
//! `<report dir>/results.jsonl` (`$PROCYON_BENCH_REPORT_DIR`, else
//! `$CARGO_TARGET_DIR/bench-report`, else `target/bench-report`), appended to by every
//! bench run under `cargo bench` and read by `examples/bench_report` and
//! `examples/plot_speedup.rs`. `scripts/bench-report.sh` empties it before a run.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One system's times on one case of one workload, measured in interleaved blocks.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Record {
    /// The workload: "w1", "w2", "w3", "w4", "w5", "w6a", "w6b", "w7", "lifecycle".
    pub bench: String,
    /// The case within it ("one item per chunk", "512 MiB warm", "depth 4", ...).
    pub case: String,
    /// Workers (procyon) or threads (rayon); the sequential loop is recorded once per
    /// worker count, so that each row has its own.
    pub workers: usize,
    /// "sequential", "rayon", "rayon-NT", "procyon", "procyon-flat", ...
    pub system: String,
    /// Median seconds per iteration.
    pub median_s: f64,
    /// 99th percentile seconds per iteration.
    pub p99_s: f64,
    /// Iterations timed.
    pub samples: usize,
    /// Items per iteration (for ns per item), if counted.
    pub items: Option<u64>,
    /// Bytes moved per iteration (for GB/s), if counted.
    pub bytes: Option<u64>,
    /// The median of each round of interleaved blocks, in round order (round `k` of
    /// every system in the case ran in the same stretch of time, so their ratios pair
    /// up); empty when the samples were not taken in rounds, and in results written
    /// before rounds were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_medians: Vec<f64>,
}

/// A line of `results.jsonl`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Line {
    /// A measurement.
    Result(Record),
    /// The load average (1, 5, 15 minutes) when a bench started or ended.
    Load {
        bench: String,
        when: String,
        loadavg: String,
    },
}

/// Where the results go.
pub fn report_dir() -> PathBuf {
    match (
        std::env::var_os("PROCYON_BENCH_REPORT_DIR"),
        std::env::var_os("CARGO_TARGET_DIR"),
    ) {
        (Some(dir), _) => dir.into(),
        (None, Some(target)) => PathBuf::from(target).join("bench-report"),
        (None, None) => PathBuf::from("target/bench-report"),
    }
}

/// Appends `line` to `results.jsonl` (a failure to write is printed, not fatal: the
/// figures are printed too).
pub fn write(line: &Line) {
    let dir = report_dir();
    let path = dir.join("results.jsonl");
    let text = serde_json::to_string(line).expect("a result encodes");
    let res = std::fs::create_dir_all(&dir).and_then(|()| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        writeln!(f, "{text}")
    });
    if let Err(e) = res {
        eprintln!("could not write {}: {e}", path.display());
    }
}

/// Every line of a `results.jsonl` text; a line that does not parse is an error naming
/// its number.
pub fn parse(text: &str) -> Result<Vec<Line>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}
