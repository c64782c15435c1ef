//! The report generator (examples/bench_report) turns a fixed sample of bench results into
//! the expected tables: ratios, units, targets met and missed, oversubscribed rows; and
//! the benches' own helpers: the worker list, the order of interleaved blocks.

#[path = "../benches/support/mod.rs"]
mod support;
use support::results;

#[path = "../examples/bench_report/render.rs"]
mod render;

use results::{Line, Record};

fn rec(bench: &str, case: &str, workers: usize, system: &str, median_s: f64) -> Line {
    Line::Result(Record {
        bench: bench.into(),
        case: case.into(),
        workers,
        system: system.into(),
        median_s,
        p99_s: median_s * 2.0,
        samples: 10,
        items: (bench == "w3").then_some(100_000),
        bytes: (bench == "w5").then_some(1 << 30),
    })
}

/// The sample: W3 at 2 workers (default chunking met, one item per chunk missed) and at 4
/// workers on 2 cores; W5 at 512 MiB, one target met and one missed; the load lines.
fn sample() -> Vec<Line> {
    let mut v = vec![Line::Load {
        bench: "w3".into(),
        when: "before".into(),
        loadavg: "0.10 0.20 0.30".into(),
    }];
    for (case, rayon, procyon) in [
        ("default chunking", 40e-6, 32e-6),
        ("one item per chunk", 2.0e-3, 3.0e-3),
    ] {
        v.push(rec("w3", case, 2, "sequential", 64e-6));
        v.push(rec("w3", case, 2, "rayon", rayon));
        v.push(rec("w3", case, 2, "procyon", procyon));
    }
    v.push(rec("w3", "default chunking", 4, "sequential", 64e-6));
    v.push(rec("w3", "default chunking", 4, "rayon", 80e-6));
    v.push(rec("w3", "default chunking", 4, "procyon", 64e-6));
    v.push(rec("w5", "512 MiB warm", 2, "rayon", 40e-3));
    v.push(rec("w5", "512 MiB warm", 2, "rayon-NT", 30e-3));
    v.push(rec("w5", "512 MiB warm", 2, "procyon", 25e-3));
    v.push(rec("w5", "512 MiB warm", 2, "sequential", 50e-3));
    v
}

fn meta() -> render::Meta {
    render::parse_meta("commit\tabc1234\ncores\t2\n").unwrap()
}

#[test]
fn tables_ratios_and_targets() {
    let text = render::render("{{tables}}", &meta(), &sample());
    let expected = "\
### W3 tiny tasks (100,000 items)

| case | workers | procyon | vs sequential | vs rayon | target | status |
|---|---:|---:|---:|---:|---|---|
| default chunking | 2 | 32.0 us (p99 64.0 us), 0.3 ns/item | 2.00x | 1.25x | time <= rayon's | met |
| one item per chunk | 2 | 3.00 ms (p99 6.00 ms), 30.0 ns/item | 0.02x | 0.67x | <= 25 ns/item | **missed** (<= 25 ns/item) |
| default chunking | 4 (oversubscribed) | 64.0 us (p99 128.0 us), 0.6 ns/item | 1.00x | 1.25x |  |  |

### W5 bandwidth (y = 2x + 1)

| case | workers | procyon | vs sequential | vs rayon | vs rayon-NT | target | status |
|---|---:|---:|---:|---:|---:|---|---|
| 512 MiB warm | 2 | 25.00 ms (p99 50.00 ms), 42.9 GB/s | 2.00x | 1.60x | 1.20x | >= 1.3x rayon, >= 0.9x rayon-NT | met |

";
    assert_eq!(text, expected, "got:\n{text}");
}

#[test]
fn summary_lists_every_target_at_two_workers() {
    let mut lines = sample();
    // rayon-NT now faster than procyon by more than the target allows.
    lines.push(rec("w5", "512 MiB warm", 2, "rayon-NT", 20e-3));
    let text = render::render("{{summary}}", &meta(), &lines);
    let expected = "\
| workload | case | target | measured | status |
|---|---|---|---|---|
| w3 | default chunking | time <= rayon's | 1.25x | met |
| w3 | one item per chunk | <= 25 ns/item | 30.0 ns | **missed** |
| w5 | 512 MiB warm | >= 1.3x rayon | 1.60x | met |
| w5 | 512 MiB warm | >= 0.9x rayon-NT | 0.80x | **missed** |
";
    assert_eq!(text, expected, "got:\n{text}");
}

#[test]
fn run_and_scaling_sections() {
    let mut lines = sample();
    // Recorded last, listed first: the scaling table is sorted by workload and workers.
    lines.push(rec("w1", "reference size", 2, "sequential", 2.0));
    lines.push(rec("w1", "reference size", 2, "rayon", 1.25));
    lines.push(rec("w1", "reference size", 2, "procyon", 1.0));
    let text = render::render("{{run}}\n{{scaling}}", &meta(), &lines);
    let expected = "\
- commit: abc1234
- cores: 2

Every figure below is from this machine's 2 cores; rows with more workers than that are marked oversubscribed.

| bench | when | load average (1, 5, 15 min) |
|---|---|---|
| w3 | before | 0.10 0.20 0.30 |

| workload | case | workers | rayon speedup | procyon speedup |
|---|---|---:|---:|---:|
| w1 | reference size | 2 | 1.60x | 2.00x |
| w3 | default chunking | 2 | 1.60x | 2.00x |
| w3 | default chunking | 4 (oversubscribed) | 0.80x | 1.00x |
| w5 | 512 MiB warm | 2 | 1.25x | 2.00x |
";
    assert_eq!(text, expected, "got:\n{text}");
}

#[test]
fn malformed_input_is_an_error_naming_the_line() {
    let err = results::parse(
        "{\"kind\":\"load\",\"bench\":\"w3\",\"when\":\"x\",\"loadavg\":\"1\"}\nnot json\n",
    )
    .unwrap_err();
    assert!(err.starts_with("line 2:"), "{err}");
    assert!(render::parse_meta("no tab here").is_err());
}

#[test]
fn round_trip_compares_medians_and_p99s() {
    let w4 = |system: &str, median_s: f64, p99_s: f64| {
        Line::Result(Record {
            bench: "w4".into(),
            case: "sum of 16".into(),
            workers: 2,
            system: system.into(),
            median_s,
            p99_s,
            samples: 2000,
            items: None,
            bytes: None,
        })
    };
    let lines = [w4("rayon", 8e-6, 60e-6), w4("procyon", 4e-6, 120e-6)];
    let text = render::render("{{tables}}", &meta(), &lines);
    let row = "| sum of 16 | 2 | 4.0 us (p99 120.0 us) | 2.00x | 0.50x \
               | median <= 10 us, p99 <= 100 us | **missed** (p99 <= 100 us) |";
    assert!(text.contains(row), "got:\n{text}");
}

#[test]
fn worker_lists() {
    assert_eq!(support::parse_workers("1,2,4"), Ok(vec![1, 2, 4]));
    assert_eq!(support::parse_workers(" 2 , 2,8,"), Ok(vec![2, 8]));
    for bad in ["", "0", "two", "1,-2", ","] {
        assert!(support::parse_workers(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn blocks_run_each_system_in_blocks_rotating_the_order() {
    let mut order = Vec::new();
    let samples = support::blocks(&["a", "b", "c"], 3, 2, |s| {
        order.push(s.to_string());
        order.len() as f64
    });
    let order: String = order.concat();
    assert_eq!(order, "aabbccbbccaaccaabb");
    // Each system's samples, in its own order: a ran 1st-2nd, 11th-12th, 15th-16th.
    assert_eq!(samples[0], [1.0, 2.0, 11.0, 12.0, 15.0, 16.0]);
    assert_eq!(samples.iter().map(Vec::len).sum::<usize>(), 18);
}
