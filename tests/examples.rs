//! The examples as a user runs them: results checked against the sequential versions,
//! and Ctrl-C during a render cancels it cleanly (a clear message, exit code 130, every
//! process of the pool gone).
//!
//! `cargo test` and `cargo nextest run` build the examples (debug profile) next to the
//! test binaries, which is where these tests find them.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of a built example, next to this test binary (`target/<profile>/examples`).
fn example(name: &str) -> PathBuf {
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

/// Waits for `child` to exit; kills it and fails if it takes longer than `limit`.
fn exit_within(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Everything left in a child's pipe.
fn rest_of(pipe: Option<impl Read>) -> String {
    let mut s = String::new();
    pipe.expect("piped").read_to_string(&mut s).unwrap();
    s
}

/// Runs to completion within `limit`; returns (success, stdout, stderr).
fn run(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    let status = exit_within(&mut child, limit, "the example did not finish");
    let out = rest_of(child.stdout.take());
    let err = rest_of(child.stderr.take());
    (status.success(), out, err)
}

#[test]
fn mandelbrot_matches_the_sequential_image_and_writes_a_png() {
    common::no_leaks(|| {
        // Under the build's own scratch directory, not /tmp: other tests, running at the
        // same time, check that nothing named procyon appears in /tmp while they run.
        let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("mandelbrot-test-{}.png", std::process::id()));
        let (ok, out, err) = run(
            Command::new(example("mandelbrot")).args([
                "--width",
                "200",
                "--height",
                "120",
                "--max-iter",
                "300",
                "--workers",
                "2",
                "--compare",
                "--out",
                png.to_str().unwrap(),
            ]),
            Duration::from_secs(60),
        );
        assert!(ok, "mandelbrot failed:\n{out}\n{err}");
        assert!(out.contains("checksum "), "{out}");
        assert!(out.contains("(same checksum, same pixels)"), "{out}");
        // The speedup line is followed by how busy the machine was.
        assert!(out.contains("machine load"), "{out}");
        let bytes = std::fs::read(&png).expect("the PNG was written");
        std::fs::remove_file(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    });
}

#[test]
fn matrix_matches_the_sequential_product() {
    common::no_leaks(|| {
        let (ok, out, err) = run(
            Command::new(example("matrix")).args(["--n", "96", "--workers", "2", "--compare"]),
            Duration::from_secs(60),
        );
        assert!(ok, "matrix failed:\n{out}\n{err}");
        assert!(out.contains("GFLOP/s"), "{out}");
        assert!(out.contains("max |C - C_seq| = 0"), "{out}");
    });
}

#[test]
fn shared_structures_prints_the_sequential_checksum() {
    common::no_leaks(|| {
        let (ok, out, err) = run(
            Command::new(example("shared_structures")).args([
                "--items",
                "50000",
                "--buckets",
                "32",
            ]),
            Duration::from_secs(60),
        );
        assert!(ok, "shared_structures failed:\n{out}\n{err}");
        // The example's checksum, computed here on its own.
        let item = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) % 1_000_003;
        let (mut weight, mut sum) = (0u64, 0u64);
        for i in 0..50_000 {
            weight += item(i) % 32 + 1;
            sum += item(i);
        }
        let expected = weight ^ sum.rotate_left(32) ^ 50_000;
        let line = format!("checksum = {expected:#018x} (sequential {expected:#018x})");
        assert!(out.contains(&line), "expected {line:?} in:\n{out}");
        assert!(
            out.contains("50000 items through the queue, 32 buckets, 2 explicit processes joined"),
            "{out}"
        );
    });
}

#[test]
fn ctrl_c_cancels_the_render_and_leaves_no_process() {
    common::no_leaks(|| {
        // The full W1 image in a debug build takes minutes: Ctrl-C always lands mid-job.
        let mut child = Command::new(example("mandelbrot"))
            .args(["--workers", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("example starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("mandelbrot 2048 x 2048"), "{first}");
        std::thread::sleep(Duration::from_millis(300));
        let tree = common::descendants();
        assert!(
            tree.len() >= 4,
            "expected the example, its scheduler and 2 workers, found {tree:?}"
        );
        common::kill(child.id() as i32, libc::SIGINT);
        let status = exit_within(
            &mut child,
            Duration::from_secs(10),
            "Ctrl-C did not stop it",
        );
        let err = rest_of(child.stderr.take());
        assert_eq!(status.code(), Some(130), "{err}");
        let line = err
            .split(['\n', '\r'])
            .find(|l| l.starts_with("interrupted: cancelled the render after "))
            .unwrap_or_else(|| panic!("no clear message in {err:?}"));
        let rows: u32 = line["interrupted: cancelled the render after ".len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no row count in {line}"));
        assert!(rows < 2048, "the render was not cut short: {line}");
        for pid in tree {
            assert!(
                common::gone_within(pid, Duration::from_secs(2)),
                "process {pid} outlived the example"
            );
        }
    });
}
