//! Turns the results of `cargo bench --bench workloads` into BENCHMARKS.md's table and
//! speedup plot.
//!
//! ```text
//! cargo bench --bench workloads
//! cargo run --release --example plot_speedup -- --out docs/speedup.png
//! ```
//!
//! For every group (`w1_mandelbrot`, `w2_matmul`) it reads criterion's median estimate
//! of `sequential`, `rayon/W` and `procyon/W` (`<criterion dir>/<group>/<bench>/new/
//! estimates.json`), prints a Markdown table with the speedups over the sequential loop
//! and procyon's ratio to rayon (rayon's time / procyon's time: above 1, procyon is
//! faster), and draws speedup against workers with the ideal line. The interleaved
//! rounds the benchmark saves (`<group>/interleaved.json`) get a second table and
//! triangles on the plot. With `--list` it prints the median of every benchmark it finds
//! instead (for `benches/engine.rs`).
//!
//! With `--results <results.jsonl>` (what `scripts/bench-report.sh` uses) it draws the
//! same plot from the interleaved block rounds the benches record instead of criterion's
//! medians (benches/support/results.rs), and prints no table: `examples/bench_report`
//! writes the report's tables from the same file.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use clap::Parser;
use plotters::prelude::*;
use serde::Deserialize;

#[path = "../benches/support/criterion_dir.rs"]
mod support;

#[path = "../benches/support/results.rs"]
#[allow(dead_code)] // the writing half is the benches'
mod results;

/// The groups of `benches/workloads.rs`, with the names used in the table.
const GROUPS: [(&str, &str); 2] = [
    ("w1_mandelbrot", "W1 mandelbrot"),
    ("w2_matmul", "W2 matmul"),
];

/// Fonts tried, in order, when `--font` is not given.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Table and plot from criterion's output of the workloads benchmark.
#[derive(Parser, Debug)]
#[command(long_about = None)]
struct Args {
    /// Criterion's output directory (default: `$CRITERION_HOME`, else
    /// `$CARGO_TARGET_DIR/criterion`, else `target/criterion`).
    #[arg(long)]
    criterion_dir: Option<PathBuf>,
    /// Where to write the plot (PNG).
    #[arg(long, default_value = "docs/speedup.png")]
    out: PathBuf,
    /// A TrueType font for the plot's labels (default: DejaVu Sans from the system).
    #[arg(long)]
    font: Option<PathBuf>,
    /// Instead: list the median of every benchmark found in the criterion directory
    /// (for the engine benchmarks' W3 to W5), and draw nothing.
    #[arg(long)]
    list: bool,
    /// Instead of criterion's medians: the interleaved rounds recorded in this
    /// `results.jsonl` (by `scripts/bench-report.sh`'s run).
    #[arg(long)]
    results: Option<PathBuf>,
}

/// The part of criterion's `estimates.json` we use.
#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    /// Nanoseconds per iteration.
    point_estimate: f64,
}

/// Median seconds per iteration of one benchmark.
fn median(dir: &Path, group: &str, bench: &str) -> Result<f64, Box<dyn Error>> {
    let path = dir
        .join(group)
        .join(bench)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let est: Estimates =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(est.median.point_estimate * 1e-9)
}

/// The interleaved rounds `benches/workloads.rs` saves beside criterion's results: the
/// medians of rounds of (sequential, rayon, procyon) run one right after the other.
#[derive(Deserialize)]
struct Interleaved {
    workers: u32,
    rounds: u32,
    sequential: f64,
    rayon: f64,
    procyon: f64,
    speedup_rayon: f64,
    speedup_procyon: f64,
    procyon_over_rayon: f64,
}

/// One workload's medians: the sequential time and, per worker count, rayon's and
/// procyon's; and the interleaved rounds, if the run saved them.
struct Workload {
    name: &'static str,
    sequential: f64,
    parallel: BTreeMap<u32, (f64, f64)>,
    interleaved: Option<Interleaved>,
}

fn load(dir: &Path, group: &str, name: &'static str) -> Result<Workload, Box<dyn Error>> {
    let sequential = median(dir, group, "sequential")?;
    let mut parallel = BTreeMap::new();
    let rayon_dir = dir.join(group).join("rayon");
    for entry in
        std::fs::read_dir(&rayon_dir).map_err(|e| format!("{}: {e}", rayon_dir.display()))?
    {
        let Ok(workers) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let rayon = median(dir, group, &format!("rayon/{workers}"))?;
        let procyon = median(dir, group, &format!("procyon/{workers}"))?;
        parallel.insert(workers, (rayon, procyon));
    }
    let interleaved = match std::fs::read_to_string(dir.join(group).join("interleaved.json")) {
        Ok(text) => Some(
            serde_json::from_str(&text).map_err(|e| format!("{group}/interleaved.json: {e}"))?,
        ),
        Err(_) => None,
    };
    Ok(Workload {
        name,
        sequential,
        parallel,
        interleaved,
    })
}

/// W1 and W2 from the benches' recorded rounds. Each worker count's rounds have their own
/// sequential median, so the times are kept relative to it (sequential = 1): the plot's
/// speedups are then each count's own.
fn load_results(path: &Path) -> Result<Vec<Workload>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines = results::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (bench, name) in [("w1", GROUPS[0].1), ("w2", GROUPS[1].1)] {
        let mut times: BTreeMap<u32, BTreeMap<String, f64>> = BTreeMap::new();
        for line in &lines {
            if let results::Line::Result(r) = line {
                if r.bench == bench {
                    times
                        .entry(r.workers as u32)
                        .or_default()
                        .insert(r.system.clone(), r.median_s);
                }
            }
        }
        let parallel: BTreeMap<u32, (f64, f64)> = times
            .iter()
            .filter_map(|(&w, t)| {
                let seq = t.get("sequential")?;
                Some((w, (t.get("rayon")? / seq, t.get("procyon")? / seq)))
            })
            .collect();
        if !parallel.is_empty() {
            out.push(Workload {
                name,
                sequential: 1.0,
                parallel,
                interleaved: None,
            });
        }
    }
    if out.is_empty() {
        return Err(format!("{}: no W1 or W2 rounds to plot", path.display()).into());
    }
    Ok(out)
}

fn print_table(workloads: &[Workload]) {
    println!("| workload | workers | sequential | rayon | procyon | speedup rayon | speedup procyon | procyon / rayon |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for w in workloads {
        for (workers, &(rayon, procyon)) in &w.parallel {
            println!(
                "| {} | {workers} | {} | {} | {} | {:.2}x | {:.2}x | {:.3} |",
                w.name,
                seconds(w.sequential),
                seconds(rayon),
                seconds(procyon),
                w.sequential / rayon,
                w.sequential / procyon,
                rayon / procyon
            );
        }
    }
    if workloads.iter().all(|w| w.interleaved.is_none()) {
        return;
    }
    println!();
    println!("| workload | workers | rounds | sequential | rayon | procyon | speedup rayon | speedup procyon | procyon / rayon |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for w in workloads {
        let Some(i) = &w.interleaved else { continue };
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2}x | {:.2}x | {:.3} |",
            w.name,
            i.workers,
            i.rounds,
            seconds(i.sequential),
            seconds(i.rayon),
            seconds(i.procyon),
            i.speedup_rayon,
            i.speedup_procyon,
            i.procyon_over_rayon
        );
    }
}

/// A duration in the unit that suits it.
fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

fn plot(workloads: &[Workload], out: &Path, caption: &str) -> Result<(), Box<dyn Error>> {
    let max_workers = workloads
        .iter()
        .flat_map(|w| w.parallel.keys())
        .copied()
        .max()
        .unwrap_or(1)
        .max(2);
    let top = f64::from(max_workers) + 0.25;
    let root = BitMapBackend::new(out, (800, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(54)
        .build_cartesian_2d(0.75f64..f64::from(max_workers) + 0.25, 0.0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("workers (processes for procyon, threads for rayon)")
        .y_desc("speedup")
        .x_labels(max_workers as usize + 1)
        .x_label_formatter(&|x| {
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 16))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            [(1.0, 1.0), (f64::from(max_workers), f64::from(max_workers))],
            BLACK.mix(0.4),
        ))?
        .label("ideal")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
    // (rayon, procyon) per workload: blues for rayon, reds for procyon.
    let colours = [
        (RGBColor(31, 90, 200), RGBColor(215, 40, 40)),
        (RGBColor(90, 170, 240), RGBColor(240, 140, 30)),
    ];
    for (w, (rayon_colour, procyon_colour)) in workloads.iter().zip(colours) {
        let rayon = w
            .parallel
            .iter()
            .map(|(&n, &(r, _))| (f64::from(n), w.sequential / r));
        let procyon = w
            .parallel
            .iter()
            .map(|(&n, &(_, p))| (f64::from(n), w.sequential / p));
        let interleaved = w.interleaved.as_ref();
        let series = [
            (
                "rayon",
                rayon_colour,
                rayon.collect::<Vec<_>>(),
                interleaved.map(|i| (f64::from(i.workers), i.speedup_rayon)),
            ),
            (
                "procyon",
                procyon_colour,
                procyon.collect::<Vec<_>>(),
                interleaved.map(|i| (f64::from(i.workers), i.speedup_procyon)),
            ),
        ];
        for (system, colour, points, rounds) in series {
            let style = ShapeStyle::from(colour).stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.clone(), style))?
                .label(format!("{} {system}", w.name))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, colour.filled())),
            )?;
            // The interleaved rounds: a triangle just right of the criterion point.
            if let Some((x, speedup)) = rounds {
                chart.draw_series([TriangleMarker::new((x + 0.04, speedup), 7, style)])?;
            }
        }
    }
    if workloads.iter().any(|w| w.interleaved.is_some()) {
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label("triangles: median of the interleaved rounds")
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Registers the labels' font (plotters' pure-Rust text backend has none built in).
fn register_font(font: Option<&Path>) -> Result<(), Box<dyn Error>> {
    let path = match font {
        Some(p) => p.to_path_buf(),
        None => FONTS.iter().map(PathBuf::from).find(|p| p.exists()).ok_or(
            "no DejaVu Sans font found in the usual places; pass --font <file.ttf> (any TrueType font)",
        )?,
    };
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    // Plotters keeps fonts for the whole run; this tool registers one, once.
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| format!("{}: not a TrueType font", path.display()))?;
    Ok(())
}

/// Every `new/estimates.json` under `dir`, as `(benchmark id, median seconds)`, sorted.
fn list(dir: &Path) -> Result<(), Box<dyn Error>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, f64)>) -> Result<(), Box<dyn Error>> {
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry?.path();
            if !path.is_dir()
                || path
                    .file_name()
                    .is_some_and(|n| n == "report" || n == "base")
            {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                let parent = path.parent().unwrap_or(root);
                let id = parent
                    .strip_prefix(root)
                    .unwrap_or(parent)
                    .to_string_lossy()
                    .into_owned();
                let text = std::fs::read_to_string(path.join("estimates.json"))?;
                let est: Estimates = serde_json::from_str(&text)?;
                out.push((id, est.median.point_estimate * 1e-9));
            } else {
                walk(root, &path, out)?;
            }
        }
        Ok(())
    }
    let mut all = Vec::new();
    walk(dir, dir, &mut all)?;
    all.sort_by(|a, b| a.0.cmp(&b.0));
    println!("| benchmark | median |");
    println!("|---|---:|");
    for (id, s) in all {
        let time = if s < 1e-3 {
            format!("{:.1} us", s * 1e6)
        } else {
            seconds(s)
        };
        println!("| {id} | {time} |");
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let dir = args
        .criterion_dir
        .clone()
        .unwrap_or_else(support::criterion_dir);
    if args.list {
        return list(&dir);
    }
    let (workloads, caption) = match &args.results {
        Some(path) => (
            load_results(path)?,
            "Speedup over the sequential loop (medians of interleaved rounds)",
        ),
        None => {
            let w = GROUPS
                .iter()
                .map(|&(group, name)| load(&dir, group, name))
                .collect::<Result<Vec<_>, _>>()?;
            print_table(&w);
            (
                w,
                "Speedup over the sequential loop (median of criterion samples)",
            )
        }
    };
    register_font(args.font.as_deref())?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    plot(&workloads, &args.out, caption)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
