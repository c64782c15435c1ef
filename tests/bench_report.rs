//! The report generator (examples/bench_report) turns a fixed sample of bench results into
//! the expected tables: ratios, units, targets met and missed (on the run and on each
//! round), oversubscribed rows, the tables of issues 13-15's benches (W8, columnar,
//! adapters, sync) with their own time columns; its machine probes measure; and the
//! benches' own helpers: the worker list, the order of interleaved blocks.

#[path = "../benches/support/mod.rs"]
mod support;
use support::results;

#[path = "../examples/bench_report/render.rs"]
mod render;

#[path = "../examples/bench_report/probe.rs"]
mod probe;

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
        round_medians: Vec::new(),
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
| workload | case | target | measured | rounds met | status |
|---|---|---|---|---|---|
| w3 | default chunking | time <= rayon's | 1.25x | - | met |
| w3 | one item per chunk | <= 25 ns/item | 30.0 ns | - | **missed** |
| w5 | 512 MiB warm | >= 1.3x rayon | 1.60x | - | met |
| w5 | 512 MiB warm | >= 0.9x rayon-NT | 0.80x | - | **missed** |
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
    let w4_case = |case: &str, system: &str, median_s: f64, p99_s: f64| {
        Line::Result(Record {
            bench: "w4".into(),
            case: case.into(),
            workers: 2,
            system: system.into(),
            median_s,
            p99_s,
            samples: 2000,
            items: None,
            bytes: None,
            round_medians: Vec::new(),
        })
    };
    let w4 =
        |system: &str, median_s: f64, p99_s: f64| w4_case("sum of 16", system, median_s, p99_s);
    let lines = [w4("rayon", 8e-6, 60e-6), w4("procyon", 4e-6, 120e-6)];
    let text = render::render("{{tables}}", &meta(), &lines);
    let row = "| sum of 16 | 2 | 4.0 us (p99 120.0 us) | 2.00x | 0.50x \
               | median <= 10 us, p99 <= 100 us | **missed** (p99 <= 100 us) |";
    assert!(text.contains(row), "got:\n{text}");
    // The pinned case shows a placement: no target is judged on it.
    let pinned = "sum of 16, all on one CPU";
    let lines = [
        w4_case(pinned, "rayon", 8e-6, 60e-6),
        w4_case(pinned, "procyon", 16e-6, 120e-6),
    ];
    let text = render::render("{{tables}}", &meta(), &lines);
    let row = "| sum of 16, all on one CPU | 2 | 16.0 us (p99 120.0 us) | 0.50x | 0.50x |  |  |";
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
    assert_eq!(samples[0][..], [1.0, 2.0, 11.0, 12.0, 15.0, 16.0]);
    assert_eq!(samples.iter().map(|s| s.len()).sum::<usize>(), 18);
    // Each round's median, in round order (nearest rank, as the whole run's median).
    assert_eq!(samples[0].round_medians(), [2.0, 12.0, 16.0]);
    assert_eq!(samples[1].round_medians(), [4.0, 8.0, 18.0]);
    // Samples not taken in rounds have none.
    assert!(support::Samples::from(vec![1.0, 2.0])
        .round_medians()
        .is_empty());
}

#[test]
fn a_block_runs_until_it_has_lasted_its_minimum() {
    use std::time::{Duration, Instant};
    let min = Duration::from_millis(6);
    // (system, start, end) of every iteration, each at least 2 ms long.
    let mut calls: Vec<(String, Instant, Instant)> = Vec::new();
    let samples = support::blocks_lasting(&["a", "b"], 3, 1, min, |s| {
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        calls.push((s.to_string(), start, Instant::now()));
        start.elapsed().as_secs_f64()
    });
    // Cut the iterations into blocks by the samples' own block lengths, in the order the
    // rounds ran them: a b, b a, a b.
    let (a, b) = (samples[0].block_lens(), samples[1].block_lens());
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), 3);
    let plan = [
        ("a", a[0]),
        ("b", b[0]),
        ("b", b[1]),
        ("a", a[1]),
        ("a", a[2]),
        ("b", b[2]),
    ];
    assert_eq!(plan.iter().map(|p| p.1).sum::<usize>(), calls.len());
    let slack = Duration::from_millis(1);
    let mut rest = &calls[..];
    for (system, len) in plan {
        let (block, after) = rest.split_at(len);
        rest = after;
        assert!(block.iter().all(|c| c.0 == system), "a block mixes systems");
        let (first, last) = (&block[0], &block[len - 1]);
        // Long enough: more than the one iteration asked for, until `min` had passed...
        assert!(len >= 2, "a block of {len} iteration(s)");
        assert!(
            last.2 - first.1 + slack >= min,
            "a block of {:?}",
            last.2 - first.1
        );
        // ...and not one iteration more: the one before the last ended within it.
        let before_last = &block[len - 2];
        assert!(
            before_last.2 - first.1 < min,
            "an iteration began after the minimum"
        );
    }
    assert_eq!(samples[0].len(), a.iter().sum::<usize>());
    assert_eq!(samples[0].round_medians().len(), 3);
    // Without a minimum, a block is its iteration count, as `blocks` runs outside
    // `cargo bench`.
    let quick = support::blocks_lasting(&["a"], 2, 3, Duration::ZERO, |_| 1.0);
    assert_eq!(quick[0].block_lens(), [3, 3]);
}

/// A record of issue 13-15's benches: `items` per iteration as they count them.
fn rec_items(bench: &str, case: &str, system: &str, median_s: f64, items: Option<u64>) -> Line {
    Line::Result(Record {
        bench: bench.into(),
        case: case.into(),
        workers: 2,
        system: system.into(),
        median_s,
        p99_s: median_s * 2.0,
        samples: 7,
        items,
        bytes: None,
        round_medians: Vec::new(),
    })
}

/// W8, columnar, adapters and sync at 2 workers, in the order the benches record them:
/// targets met and missed on each side, a case without a target, per-item figures.
fn later_sample() -> Vec<Line> {
    let mut v = Vec::new();
    for (system, t) in [("sequential", 1.2), ("rayon", 0.4), ("procyon", 0.6)] {
        v.push(rec_items("w8", "50 MB text", system, t, None));
    }
    let strings = Some(5_000_000);
    for (case, items, times) in [
        (
            "5 M strings, built in the run",
            strings,
            [24e-3, 12e-3, 40e-3],
        ),
        ("5 M strings, built once", strings, [24e-3, 12e-3, 12e-3]),
        (
            "serde, 1 M trivial records",
            Some(1_000_000),
            [2e-3, 2e-3, 40e-3],
        ),
        (
            "serde, 20000 records of >= 5 us",
            Some(20_000),
            [140e-3, 72e-3, 70e-3],
        ),
    ] {
        for (system, t) in ["sequential", "rayon", "procyon"].into_iter().zip(times) {
            v.push(rec_items("columnar", case, system, t, items));
        }
    }
    for (case, items, times) in [
        ("zip", 100_000, [56e-6, 55e-6, 270e-6]),
        (
            "par_sort_unstable, 10 M u64",
            10_000_000,
            [190e-3, 200e-3, 125e-3],
        ),
    ] {
        for (system, t) in ["sequential", "rayon", "procyon"].into_iter().zip(times) {
            v.push(rec_items("adapters", case, system, t, Some(items)));
        }
    }
    for (case, procyon, baseline) in [
        (
            "mutex lock + unlock, uncontended (vs std::sync::Mutex)",
            48e-9,
            12e-9,
        ),
        (
            "queue pop, another process / thread pushing",
            1.04e-6,
            30e-9,
        ),
    ] {
        v.push(rec_items("sync", case, "procyon", procyon, None));
        v.push(rec_items("sync", case, "baseline", baseline, None));
    }
    v
}

#[test]
fn issue_13_to_15_tables_show_times_ratios_and_targets() {
    let text = render::render("{{tables}}", &meta(), &later_sample());
    let expected = "\
### W8 word count

| case | workers | procyon | sequential | vs sequential | vs rayon | target | status |
|---|---:|---:|---:|---:|---:|---|---|
| 50 MB text | 2 | 600.00 ms (p99 1.200 s) | 1.200 s | 2.00x | 0.67x | >= 1.5x sequential, >= 0.8x rayon | **missed** (>= 0.8x rayon) |

### Variable-size items: SharedStrings and the serde path (issue 14)

| case | workers | procyon | sequential | vs sequential | vs rayon | target | status |
|---|---:|---:|---:|---:|---:|---|---|
| 5 M strings, built in the run | 2 | 40.00 ms (p99 80.00 ms), 8.0 ns/item | 24.00 ms | 0.60x | 0.30x | >= 1.5x sequential | **missed** (>= 1.5x sequential) |
| 5 M strings, built once | 2 | 12.00 ms (p99 24.00 ms), 2.4 ns/item | 24.00 ms | 2.00x | 1.00x |  |  |
| serde, 1 M trivial records | 2 | 40.00 ms (p99 80.00 ms), 40.0 ns/item | 2.00 ms | 0.05x | 0.05x | >= 0.5x sequential | **missed** (>= 0.5x sequential) |
| serde, 20000 records of >= 5 us | 2 | 70.00 ms (p99 140.00 ms), 3500.0 ns/item | 140.00 ms | 2.00x | 1.03x | >= 1.7x sequential | met |

### Adapters on 100,000 items, and par_sort (issue 13)

| case | workers | procyon | sequential | vs sequential | vs rayon | target | status |
|---|---:|---:|---:|---:|---:|---|---|
| zip | 2 | 270.0 us (p99 540.0 us), 2.7 ns/item | 56.0 us | 0.21x | 0.20x |  |  |
| par_sort_unstable, 10 M u64 | 2 | 125.00 ms (p99 250.00 ms), 12.5 ns/item | 190.00 ms | 1.52x | 1.60x | >= 0.8x rayon | met |

### Process-shared sync and containers, per operation (issue 15)

| case | workers | procyon | baseline | vs baseline | target | status |
|---|---:|---:|---:|---:|---|---|
| mutex lock + unlock, uncontended (vs std::sync::Mutex) | 2 | 48 ns (p99 96 ns) | 12 ns | 0.25x |  |  |
| queue pop, another process / thread pushing | 2 | 1.0 us (p99 2.1 us) | 30 ns | 0.03x |  |  |

";
    assert_eq!(text, expected, "got:\n{text}");
}

#[test]
fn issue_13_and_14_targets_join_the_summary() {
    let text = render::render("{{summary}}", &meta(), &later_sample());
    let expected = "\
| workload | case | target | measured | rounds met | status |
|---|---|---|---|---|---|
| w8 | 50 MB text | >= 1.5x sequential | 2.00x | - | met |
| w8 | 50 MB text | >= 0.8x rayon | 0.67x | - | **missed** |
| columnar | 5 M strings, built in the run | >= 1.5x sequential | 0.60x | - | **missed** |
| columnar | serde, 1 M trivial records | >= 0.5x sequential | 0.05x | - | **missed** |
| columnar | serde, 20000 records of >= 5 us | >= 1.7x sequential | 2.00x | - | met |
| adapters | par_sort_unstable, 10 M u64 | >= 0.8x rayon | 1.60x | - | met |
";
    assert_eq!(text, expected, "got:\n{text}");
}

/// W7 at 2 workers: trees from the client at depths 2 and 4, and from a task at depth 2,
/// with rayon's tree and the flat job beside each.
fn w7_sample() -> Vec<Line> {
    let mut v = Vec::new();
    // (case, jobs in the tree, rayon, flat, procyon)
    for (case, jobs, times) in [
        ("depth 2", 5, [20e-6, 2e-6, 2.5e-6]),
        ("depth 4", 85, [40e-6, 5e-6, 9e-6]),
        ("depth 2 from a task", 5, [20e-6, 0.1e-6, 2e-6]),
    ] {
        for (system, t) in ["rayon", "procyon-flat", "procyon"].into_iter().zip(times) {
            v.push(rec_items("w7", case, system, t, Some(jobs)));
        }
    }
    v
}

#[test]
fn w7_judges_child_jobs_from_a_task_and_whole_trees_from_the_client() {
    // The depth-2 tree from the client (500 ns/job, most of it the root's round trip)
    // is not judged per job; the one from a task (400 ns per child job) is, and misses;
    // the depth-4 tree from the client is judged against rayon's and the flat job.
    let text = render::render("{{summary}}", &meta(), &w7_sample());
    let expected = "\
| workload | case | target | measured | rounds met | status |
|---|---|---|---|---|---|
| w7 | depth 4 | time <= 2x rayon's | 0.22x rayon's time | - | met |
| w7 | depth 4 | time <= 1.5x flat | 1.80x flat's time | - | **missed** |
| w7 | depth 2 from a task | <= 300 ns/child job | 400.0 ns | - | **missed** |
";
    assert_eq!(text, expected, "got:\n{text}");
}

/// A record with each round's median: `rounds` in round order.
fn rec_rounds(case: &str, system: &str, items: Option<u64>, rounds: &[f64]) -> Line {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(f64::total_cmp);
    Line::Result(Record {
        bench: if items == Some(85) { "w7" } else { "w3" }.into(),
        case: case.into(),
        workers: 2,
        system: system.into(),
        median_s: support::percentile(&sorted, 0.5),
        p99_s: sorted[sorted.len() - 1],
        samples: rounds.len() * 10,
        items,
        bytes: None,
        round_medians: rounds.to_vec(),
    })
}

#[test]
fn the_summary_judges_each_round_beside_the_run() {
    let w3 = Some(100_000);
    let lines = [
        // rayon over procyon by round: 1.25x, 0.94x, 1.25x (their median: 1.25x).
        rec_rounds("default chunking", "rayon", w3, &[40e-6, 30e-6, 40e-6]),
        rec_rounds("default chunking", "procyon", w3, &[32e-6, 32e-6, 32e-6]),
        // Per item by round: 20, 30 and 24 ns (the run's median: 24 ns).
        rec_rounds("one item per chunk", "procyon", w3, &[2e-3, 3e-3, 2.4e-3]),
        // The tree against the flat job by round: 1.8x and 1.2x its time, judged on the
        // mean of the two rounds' ratios (flat's time over the tree's: 0.56 and 0.83,
        // 0.69: 1.44x its time); against rayon's a tree whose rounds do not pair up with
        // procyon's: no rounds shown, and the runs' medians judged.
        rec_rounds("depth 4", "procyon-flat", Some(85), &[5e-6, 5e-6]),
        rec_rounds("depth 4", "rayon", Some(85), &[40e-6, 40e-6, 40e-6]),
        rec_rounds("depth 4", "procyon", Some(85), &[9e-6, 6e-6]),
    ];
    let text = render::render("{{summary}}", &meta(), &lines);
    let expected = "\
| workload | case | target | measured | rounds met | status |
|---|---|---|---|---|---|
| w3 | default chunking | time <= rayon's | 1.25x | 2 of 3 (0.94x to 1.25x) | met |
| w3 | one item per chunk | <= 25 ns/item | 24.0 ns | 2 of 3 (20.0 ns to 30.0 ns) | met |
| w7 | depth 4 | time <= 2x rayon's | 0.22x rayon's time | - | met |
| w7 | depth 4 | time <= 1.5x flat | 1.44x flat's time | 1 of 2 (1.20x flat's time to 1.80x flat's time) | met |
";
    assert_eq!(text, expected, "got:\n{text}");
}

#[test]
fn a_ratio_pairs_the_rounds_when_the_machine_changes_state_during_a_run() {
    // Run L's W7 depth 4 at 2 workers (us): the machine slowed between the flat job's
    // block and the tree's in round 3. Each system's own median comes from a different
    // state (the tree's from the slow rounds, the flat job's from the fast ones): 4.45 /
    // 2.69 = 1.65x; round by round the tree took 1.27x-1.38x its flat job's time, but
    // 1.66x in round 3, and the median of the rounds says 1.33x.
    let tree = [3.38, 3.27, 3.31, 4.48, 4.52, 4.49, 4.45].map(|t| t * 1e-6);
    let flat = [2.54, 2.57, 2.57, 2.69, 3.28, 3.38, 3.47].map(|t| t * 1e-6);
    let lines = [
        rec_rounds("depth 4", "rayon", Some(85), &[36e-6; 7]),
        rec_rounds("depth 4", "procyon", Some(85), &tree),
        rec_rounds("depth 4", "procyon-flat", Some(85), &flat),
    ];
    let text = render::render("{{summary}}", &meta(), &lines);
    assert!(
        text.contains("| w7 | depth 4 | time <= 1.5x flat | 1.33x flat's time | 6 of 7 (1.27x flat's time to 1.67x flat's time) | met |"),
        "got:\n{text}"
    );
    // The table's ratio columns are the same paired figures: the flat job's time over the
    // tree's is 0.75x (the runs' medians would say 0.60x).
    let table = render::render("{{tables}}", &meta(), &lines);
    assert!(table.contains("| 8.09x | 0.75x |"), "got:\n{table}");
}

#[test]
fn round_medians_are_optional_in_results() {
    // A line written before rounds were recorded reads with none; a record without them
    // writes none.
    let old = r#"{"kind":"result","bench":"w3","case":"c","workers":2,"system":"procyon","median_s":1.0,"p99_s":2.0,"samples":5,"items":null,"bytes":null}"#;
    let lines = results::parse(old).unwrap();
    let Line::Result(r) = &lines[0] else {
        panic!("not a result: {lines:?}")
    };
    assert!(r.round_medians.is_empty());
    let written = serde_json::to_string(&lines[0]).unwrap();
    assert_eq!(written, old);
    let mut with = r.clone();
    with.round_medians = vec![1.0, 1.5];
    let text = serde_json::to_string(&Line::Result(with.clone())).unwrap();
    assert!(text.contains(r#""round_medians":[1.0,1.5]"#), "{text}");
    assert_eq!(results::parse(&text).unwrap(), [Line::Result(with)]);
}

#[test]
fn the_machine_probes_measure_and_read_as_run_metadata() {
    use std::time::Duration;
    let pause = probe::pause_ns(3, 10_000);
    assert!(pause > 0.0 && pause < 10_000.0, "a PAUSE of {pause} ns");
    let cpus = probe::allowed_cpus();
    assert!(!cpus.is_empty(), "this process may run somewhere");
    let lines = probe::meta_lines();
    let meta = render::parse_meta(&lines).expect("key<TAB>value lines");
    assert!(
        meta.iter().all(|(k, _)| k.starts_with("probe: ")),
        "{lines}"
    );
    let [a, b, ..] = cpus[..] else {
        // One CPU: the probes between two say so.
        assert_eq!(meta.len(), 2, "{lines}");
        return;
    };
    assert_eq!(meta.len(), 4, "{lines}");
    assert!(
        meta.iter().all(|(_, v)| !v.starts_with("not measured")),
        "{lines}"
    );
    let limit = Duration::from_secs(20);
    let rt = probe::round_trip_ns(a, b, 2, 1_000, limit).expect("two CPUs bounce a line");
    assert!(rt > 0.0 && rt < 1e6, "a round trip of {rt} ns");
    let (median, p90) = probe::wake_us(a, b, 9, Duration::from_millis(1), limit)
        .expect("a sleeping thread is woken");
    assert!(
        median > 0.0 && p90 >= median && median < 1e6,
        "{median} / {p90} us"
    );
    let chase = probe::neighbour_ns(a, b, 2, 10_000, limit).expect("a chase beside each");
    assert!(
        chase.iter().all(|&ns| ns > 0.0 && ns < 1e6),
        "{chase:?} ns per step"
    );
    // A CPU that does not exist cannot be pinned: no figure, and no hang.
    let none = libc::CPU_SETSIZE as usize;
    assert_eq!(probe::round_trip_ns(a, none, 1, 10, limit), None);
    assert_eq!(probe::wake_us(a, none, 1, Duration::ZERO, limit), None);
    assert_eq!(probe::neighbour_ns(a, none, 1, 10, limit), None);
}
