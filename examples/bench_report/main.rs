//! Writes BENCHMARKS.md from a run of `scripts/bench-report.sh`: the benches' results
//! (`results.jsonl`, benches/support/results.rs) and the run's metadata (`meta.tsv`,
//! written by the script), filled into a template that holds the methodology prose.
//!
//! ```text
//! cargo run --release --example bench_report -- --dir target/bench-report --out BENCHMARKS.md
//! cargo run --release --example bench_report -- --probe   # the machine's hand-off costs
//! ```

use std::error::Error;
use std::path::PathBuf;

use clap::Parser;

mod probe;
mod render;
// The benches' results format and statistics; the rest is theirs.
#[path = "../../benches/support/mod.rs"]
mod support;
use support::results;

/// BENCHMARKS.md from a bench-report run.
#[derive(Parser, Debug)]
#[command(long_about = None)]
struct Args {
    /// The run's directory, holding `results.jsonl` and `meta.tsv` (default: the benches'
    /// report directory, `$PROCYON_BENCH_REPORT_DIR` or `<target dir>/bench-report`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The template (`{{run}}`, `{{summary}}`, `{{tables}}`, `{{scaling}}` are filled in).
    #[arg(long, default_value = "examples/bench_report/template.md")]
    template: PathBuf,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Measure the machine's hand-off costs (a `PAUSE`, a cache line between two CPUs, a
    /// sleeping thread's wake-up; about a second) and print them as `meta.tsv` lines,
    /// instead of writing the report.
    #[arg(long)]
    probe: bool,
}

fn read(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    if args.probe {
        print!("{}", probe::meta_lines());
        return Ok(());
    }
    let dir = args.dir.unwrap_or_else(results::report_dir);
    let lines = results::parse(&read(&dir.join("results.jsonl"))?)
        .map_err(|e| format!("{}: {e}", dir.join("results.jsonl").display()))?;
    if lines.is_empty() {
        return Err(format!("{}: no results (did the benches run?)", dir.display()).into());
    }
    let meta = render::parse_meta(&read(&dir.join("meta.tsv"))?)?;
    let text = render::render(&read(&args.template)?, &meta, &lines);
    std::fs::write(&args.out, text).map_err(|e| format!("{}: {e}", args.out.display()))?;
    eprintln!("wrote {} ({} results)", args.out.display(), lines.len());
    Ok(())
}
