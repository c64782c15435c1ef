//! `examples/wordcount` as a user runs it, on a smaller W8 text: its distinct-word count
//! and checksum equal the sequential loop's, computed here from the same generator, and
//! `--compare` finds procyon's map equal to the sequential loop's and rayon's.
//!
//! `cargo test` and `cargo nextest run` build the examples (debug profile) next to the
//! test binaries, which is where this test finds it.

mod common;

#[allow(dead_code)]
#[path = "../examples/wordcount/text.rs"]
mod text;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the built example, next to this test binary (`target/<profile>/examples`).
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: cargo test / cargo nextest run build the examples first",
        path.display()
    );
    path
}

/// Runs the example with `args` to completion within a minute; returns its stdout.
fn run(args: &[&str]) -> String {
    let mut child = Command::new(example("wordcount"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wordcount {args:?} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = child.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(status.success(), "wordcount {args:?} failed:\n{out}\n{err}");
    out
}

#[test]
fn wordcount_counts_as_the_sequential_loop() {
    common::no_leaks(|| {
        let bytes = 1_500_000;
        let text = text::generate(bytes, text::SEED);
        let want = text::sequential(&text);
        let line = format!(
            "distinct words {}, words {}, checksum {}",
            want.len(),
            want.values().sum::<u64>(),
            text::checksum(want.iter().map(|(w, &c)| (*w, c)))
        );
        for (workers, blocks) in [("1", "1"), ("2", "37")] {
            let out = run(&[
                "--bytes",
                &bytes.to_string(),
                "--workers",
                workers,
                "--blocks",
                blocks,
                "--runs",
                "1",
                "--compare",
            ]);
            assert!(out.contains(&line), "expected {line:?} in:\n{out}");
            assert!(out.contains("counts equal"), "{out}");
            assert!(
                out.contains("speedup: ") && out.contains("load average"),
                "{out}"
            );
        }
    });
}

#[test]
fn the_generator_follows_w8() {
    let _turn = common::one_at_a_time();
    let text = text::generate(10_000, text::SEED);
    assert!(text.len() >= 10_000 && text.len() < 10_020);
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(lines[..lines.len() - 1]
        .iter()
        .all(|l| l.split(' ').count() == 12));
    assert!(text.split_ascii_whitespace().all(|w| w.starts_with('w')
        && u64::from_str_radix(&w[1..], 36).is_ok_and(|k| k < text::VOCABULARY)));
    // Zipf-like: word 0 (u < 0.027) is the most frequent by far.
    let counts = text::sequential(&text);
    let top = counts.iter().max_by_key(|(_, &c)| c).unwrap();
    assert_eq!(*top.0, "w0");
    assert_eq!(
        text::generate(10_000, text::SEED),
        text,
        "seeded: the same text every time"
    );
}
