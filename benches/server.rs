//! `examples/server` under load: requests per second and p50 / p99 latency for small
//! (64 x 64) and large (1024 x 1024) tiles at 2 workers (or each count of
//! `PROCYON_BENCH_WORKERS`, a list such as `1,2,4`), rendered by the procyon pool
//! and, in the same run, by the same server rendering with rayon inside
//! `spawn_blocking` (`--engine rayon`).
//!
//! ```text
//! cargo bench --bench server                       # builds the release server first
//! PROCYON_BENCH_QUICK=1 cargo bench --bench server # a few seconds
//! ```
//!
//! One run on the shared 2-core machine (load average 1.6 to 1.9), median of the two
//! interleaved runs of each: 64 x 64 tiles, procyon 2,780 req/s (p50 2.7 ms, p99 6.6 ms)
//! against rayon 2,730 req/s (p50 1.4 ms, p99 21 ms); 1024 x 1024, procyon 14.9 req/s
//! (p50 534 ms, p99 568 ms) against rayon 15.4 req/s (p50 406 ms, p99 1.9 s). The same
//! throughput; rayon answers the median request sooner, the pool serves requests in
//! turn and so has the much shorter tail.
//!
//! A measured loop, not criterion: each case is a fixed number of requests from a
//! fixed number of keep-alive connections on loopback, so it is bounded in count; each
//! request is bounded in time by the client's timeout.

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Connections sending requests at once.
const CONNECTIONS: usize = 8;
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// A tile to ask for, and how many times.
struct Case {
    name: &'static str,
    query: &'static str,
    requests: usize,
}

/// The server example, built in this bench's profile if missing or stale.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench binary path");
    let target = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = target.join("examples").join("server");
    // Always ask cargo: it rebuilds only what changed. In the profile this bench was
    // built in (`cargo test --benches` builds it in debug, next to target/debug/examples).
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--example", "server"]);
    if target.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building the server example failed");
    assert!(path.exists(), "{} is missing", path.display());
    path
}

struct Server {
    child: Child,
    base: String,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(binary: &PathBuf, engine: &str, workers: usize) -> Server {
        let mut child = Command::new(binary)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--workers",
                &workers.to_string(),
                "--engine",
                engine,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let base = first
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .trim_end_matches('/')
            .to_string();
        Server {
            child,
            base,
            _stdout: stdout,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.wait();
    }
}

/// Requests per second, p50, p99, and the checksums seen (all must agree).
fn load(server: &Server, case: &Case) -> (f64, Duration, Duration, u64) {
    let url = format!("{}/mandelbrot.png?{}", server.base, case.query);
    let latencies = Mutex::new(Vec::with_capacity(case.requests));
    let checksums = Mutex::new(std::collections::BTreeSet::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..CONNECTIONS {
            let (url, latencies, checksums) = (&url, &latencies, &checksums);
            s.spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(REQUEST_LIMIT).build();
                let mine = (c..case.requests).step_by(CONNECTIONS).count();
                for _ in 0..mine {
                    let t = Instant::now();
                    let response = agent.get(url).call().expect("answered 200");
                    let checksum: u64 = response.header("x-checksum").unwrap().parse().unwrap();
                    let mut body = Vec::new();
                    response.into_reader().read_to_end(&mut body).unwrap();
                    latencies.lock().unwrap().push(t.elapsed());
                    checksums.lock().unwrap().insert(checksum);
                }
            });
        }
    });
    let wall = start.elapsed().as_secs_f64();
    let mut latencies = latencies.into_inner().unwrap();
    latencies.sort();
    let checksums = checksums.into_inner().unwrap();
    assert_eq!(checksums.len(), 1, "answers disagree: {checksums:?}");
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    (
        latencies.len() as f64 / wall,
        at(0.5),
        at(0.99),
        *checksums.iter().next().unwrap(),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported: there is one run.
    // `cargo test --benches` (no `--bench`) runs each case once, at a hundredth of the
    // requests: it checks that the bench works, it measures nothing.
    let scale = if !support::measuring() {
        100
    } else if support::quick() {
        10
    } else {
        1
    };
    let cases = [
        Case {
            name: "64x64, max_iter 200",
            query: "width=64&height=64&max_iter=200",
            requests: 2000 / scale,
        },
        Case {
            name: "1024x1024, max_iter 200",
            query: "width=1024&height=1024&max_iter=200",
            requests: (40 / scale).max(2),
        },
    ];
    let binary = server_binary();
    for workers in support::workers() {
        run_cases(&binary, &cases, workers);
    }
}

/// Every case at `workers` workers (rayon: as many threads), engines interleaved.
fn run_cases(binary: &PathBuf, cases: &[Case], workers: usize) {
    println!("server bench: {workers} workers, {CONNECTIONS} keep-alive connections on loopback");
    println!(
        "{:<26} {:<8} {:>9} {:>10} {:>10}",
        "tile", "engine", "req/s", "p50", "p99"
    );
    for case in cases {
        let mut checksum = None;
        // Interleaved: procyon, rayon, procyon, rayon; the table shows each run.
        let engines: &[&str] = if support::measuring() {
            &["procyon", "rayon", "procyon", "rayon"]
        } else {
            &["procyon", "rayon"]
        };
        for &engine in engines {
            let server = Server::start(binary, engine, workers);
            // Warm up: the first requests fault in the mempool and the caches.
            let warm = Case {
                requests: CONNECTIONS,
                ..*case
            };
            load(&server, &warm);
            let (rps, p50, p99, sum) = load(&server, case);
            assert!(checksum.map_or(true, |c| c == sum), "engines disagree");
            checksum = Some(sum);
            println!(
                "{:<26} {:<8} {:>9.1} {:>8.2}ms {:>8.2}ms",
                case.name,
                engine,
                rps,
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
        }
    }
}
