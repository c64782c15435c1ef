//! `examples/server` over real HTTP on loopback: the built example is started on
//! 127.0.0.1:0, driven with a real client (ureq, and a raw socket to disconnect), and
//! stopped with SIGTERM; no process of it may be left. Every request loop is bounded in
//! count, and every request in time.

mod common;

#[allow(dead_code)] // The sequential kernel: the reference the answers are checked against.
#[path = "../examples/mandelbrot/kernel.rs"]
mod kernel;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::procfs::cpu_ticks;
use kernel::Frame;

/// Longest any one request may take in these tests (debug build, 2 shared cores).
const REQUEST_LIMIT: Duration = Duration::from_secs(60);

/// An image of the server's default pixel limit, at 2.5 times W1's iteration bound:
/// many seconds of work on 2 workers, so a disconnect always lands mid-render.
const BIG: Frame = Frame {
    width: 4096,
    height: 4096,
    max_iter: 5000,
};

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

/// The server example, running; stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    agent: ureq::Agent,
    /// The server's stdout, kept open until it has exited.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(example("server"))
            .args(["--addr", "127.0.0.1:0", "--workers", "2"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .strip_prefix("listening on http://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no bound address in {first:?}"));
        let agent = ureq::AgentBuilder::new()
            .timeout(REQUEST_LIMIT)
            .max_idle_connections_per_host(64)
            .build();
        Server {
            child,
            addr,
            agent,
            _stdout: stdout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path`: status, `X-Checksum`, body.
    fn get(&self, path: &str) -> (u16, Option<u64>, Vec<u8>) {
        let response = match self.agent.get(&self.url(path)).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("GET {path}: {e}"),
        };
        let status = response.status();
        let checksum = response.header("x-checksum").and_then(|c| c.parse().ok());
        let mut body = Vec::new();
        response.into_reader().read_to_end(&mut body).unwrap();
        (status, checksum, body)
    }

    fn stats(&self) -> serde_json::Value {
        let (status, _, body) = self.get("/stats");
        assert_eq!(status, 200);
        serde_json::from_slice(&body).expect("stats are JSON")
    }

    fn workers(&self) -> Vec<i32> {
        self.stats()["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_i64().unwrap() as i32)
            .collect()
    }

    /// Waits until the pool has 2 distinct live workers.
    fn assert_full_strength(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let pids = self.workers();
            if pids.len() == 2 && pids[0] != pids[1] && pids.iter().all(|&p| common::alive(p)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pool not at full strength: {pids:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        common::kill(self.child.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if !std::thread::panicking() {
            assert!(
                status.is_some_and(|s| s.success()),
                "the server did not stop cleanly on SIGTERM: {status:?}"
            );
        }
    }
}

fn query(f: &Frame) -> String {
    format!(
        "width={}&height={}&max_iter={}",
        f.width, f.height, f.max_iter
    )
}

fn sequential_checksum(f: &Frame) -> u64 {
    let mut image = vec![0u32; f.pixels()];
    kernel::sequential(f, &mut image)
}

fn total_ticks(pids: &[i32]) -> u64 {
    pids.iter().filter_map(|&p| cpu_ticks(p)).sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn a_tile_decodes_and_carries_the_sequential_checksum() {
    common::no_leaks(|| {
        let server = Server::start(&[]);
        let frame = Frame {
            width: 256,
            height: 256,
            max_iter: 300,
        };
        let (status, checksum, body) = server.get(&format!("/mandelbrot.png?{}", query(&frame)));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(checksum, Some(sequential_checksum(&frame)));
        let decoder = png::Decoder::new(&body[..]);
        let mut reader = decoder.read_info().expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).expect("the PNG decodes");
        assert_eq!((info.width, info.height), (256, 256));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        // The page is served too.
        let (status, _, page) = server.get("/");
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&page).contains("EventSource"));
    });
}

#[test]
fn concurrent_requests_are_all_answered_right_and_spread_over_the_workers() {
    common::no_leaks(|| {
        const CONNECTIONS: usize = 50;
        const PER_CONNECTION: usize = 4;
        let server = Server::start(&[]);
        let frames: Vec<Frame> = (0..8)
            .map(|i| Frame {
                width: 96 + 8 * i,
                height: 96,
                max_iter: 200 + 50 * i,
            })
            .collect();
        let expected: Vec<u64> = frames.iter().map(sequential_checksum).collect();
        let baseline_threads = server.stats()["threads"].as_u64().unwrap() as usize;

        let max_threads = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let latencies = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                // Bounded: the load below ends within its limit, or the test fails.
                let deadline = Instant::now() + 4 * REQUEST_LIMIT;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let threads = server.stats()["threads"].as_u64().unwrap() as usize;
                    max_threads.fetch_max(threads, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let clients: Vec<_> = (0..CONNECTIONS)
                .map(|c| {
                    let (server, frames, expected, latencies) =
                        (&server, &frames, &expected, &latencies);
                    s.spawn(move || {
                        // One agent per client: its own keep-alive connection.
                        let agent = ureq::AgentBuilder::new().timeout(REQUEST_LIMIT).build();
                        for r in 0..PER_CONNECTION {
                            let i = (c * PER_CONNECTION + r) % frames.len();
                            let url = server.url(&format!("/mandelbrot.png?{}", query(&frames[i])));
                            let start = Instant::now();
                            let response = agent.get(&url).call().expect("answered 200");
                            let checksum: u64 =
                                response.header("x-checksum").unwrap().parse().unwrap();
                            let mut body = Vec::new();
                            response.into_reader().read_to_end(&mut body).unwrap();
                            latencies.lock().unwrap().push(start.elapsed());
                            assert_eq!(checksum, expected[i], "frame {:?}", frames[i]);
                            assert_eq!(&body[..8], b"\x89PNG\r\n\x1a\n");
                        }
                    })
                })
                .collect();
            for c in clients {
                c.join().expect("a client failed");
            }
            stop.store(true, Ordering::Relaxed);
            watcher.join().unwrap();
        });

        let mut latencies = latencies.into_inner().unwrap();
        latencies.sort();
        let total = CONNECTIONS * PER_CONNECTION;
        assert_eq!(latencies.len(), total);
        let stats = server.stats();
        println!(
            "{total} requests from {CONNECTIONS} connections: p50 {:?}, p99 {:?}, max {:?}; \
             server threads {baseline_threads} idle, at most {} under load; {stats}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies[total - 1],
            max_threads.load(Ordering::Relaxed),
        );
        assert_eq!(stats["done"].as_u64(), Some(total as u64));
        assert_eq!(stats["failed"].as_u64(), Some(0));
        let per_worker: BTreeMap<String, u64> =
            serde_json::from_value(stats["per_worker"].clone()).unwrap();
        assert_eq!(per_worker.len(), 2, "{per_worker:?}");
        for (pid, jobs) in &per_worker {
            assert!(
                *jobs as usize >= total / 4,
                "worker {pid} ran {jobs} of {total} renders: {per_worker:?}"
            );
        }
        // Bounded: the runtime's threads and the pool's one waiter thread, whatever the
        // number of requests in flight (50 here); a thread per awaited handle would be 50
        // more.
        let bound = baseline_threads + 4;
        assert!(
            max_threads.load(Ordering::Relaxed) <= bound,
            "{} threads under load, bound {bound}",
            max_threads.load(Ordering::Relaxed)
        );
    });
}

#[test]
fn a_client_that_disconnects_cancels_its_render() {
    common::no_leaks(|| {
        let server = Server::start(&[]);
        let workers = server.workers();
        let big = format!("/mandelbrot.png?{}", query(&BIG));
        let mut socket = TcpStream::connect(server.addr).unwrap();
        write!(
            socket,
            "GET {big} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.addr
        )
        .unwrap();
        // Both workers render (its rows are a nested job).
        let busy_deadline = Instant::now() + Duration::from_secs(10);
        let before = total_ticks(&workers);
        loop {
            std::thread::sleep(Duration::from_millis(100));
            if total_ticks(&workers) >= before + 20 {
                break;
            }
            assert!(Instant::now() < busy_deadline, "the render did not start");
        }
        assert_eq!(server.stats()["cancelled"].as_u64(), Some(0));
        drop(socket);

        let deadline = Instant::now() + Duration::from_secs(5);
        while server.stats()["cancelled"].as_u64() != Some(1) {
            assert!(
                Instant::now() < deadline,
                "the job was not cancelled: {}",
                server.stats()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // The cancel grace period is 50 ms: within 200 ms of the disconnect every worker of
        // the render has stopped (returned, or been killed and replaced).
        std::thread::sleep(Duration::from_millis(200));
        let stopped = total_ticks(&workers);
        std::thread::sleep(Duration::from_millis(300));
        let later = total_ticks(&workers);
        assert!(
            later <= stopped + 2,
            "workers {workers:?} still burn CPU after the disconnect: {stopped} -> {later} ticks"
        );
        server.assert_full_strength(Duration::from_secs(5));
        let frame = Frame {
            width: 64,
            height: 64,
            max_iter: 100,
        };
        let (status, checksum, _) = server.get(&format!("/mandelbrot.png?{}", query(&frame)));
        assert_eq!(status, 200);
        assert_eq!(checksum, Some(sequential_checksum(&frame)));
        let stats = server.stats();
        assert_eq!(stats["done"].as_u64(), Some(1), "{stats}");
        assert_eq!(stats["jobs_in_flight"].as_u64(), Some(0), "{stats}");
    });
}

#[test]
fn progress_events_arrive_in_order_and_end_with_done() {
    common::no_leaks(|| {
        let server = Server::start(&[]);
        // Long enough for several progress periods (100 ms) on any machine: 400 x 400
        // took 87 ms on 2 idle workers here, one progress event and `done`.
        let frame = Frame {
            width: 800,
            height: 800,
            max_iter: 1500,
        };
        let response = server
            .agent
            .get(&server.url(&format!("/mandelbrot/progress?{}", query(&frame))))
            .call()
            .expect("the stream starts");
        assert_eq!(response.header("content-type"), Some("text/event-stream"));
        let mut events: Vec<(String, String, Instant)> = Vec::new();
        let mut name = String::new();
        // Bounded: the server ends the stream after `done`; the agent's timeout bounds
        // the wait for each line.
        for line in BufReader::new(response.into_reader()).lines().take(10_000) {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                events.push((std::mem::take(&mut name), data.to_string(), Instant::now()));
            }
        }
        let (last, progress) = events.split_last().expect("some events");
        assert_eq!(last.0, "done", "{events:?}");
        let done: serde_json::Value = serde_json::from_str(&last.1).unwrap();
        assert_eq!(done["checksum"].as_u64(), Some(sequential_checksum(&frame)));
        assert!(progress.len() >= 2, "too few progress events: {events:?}");
        let mut previous = None;
        for (name, data, at) in progress {
            assert_eq!(name, "progress", "{events:?}");
            let p: serde_json::Value = serde_json::from_str(data).unwrap();
            assert_eq!(p["rows"].as_u64(), Some(frame.height as u64));
            let rows_done = p["rows_done"].as_u64().unwrap();
            if let Some((before, when)) = previous {
                assert!(rows_done > before, "out of order: {events:?}");
                // At most every 100 ms (some slack for the reading side's scheduling).
                assert!(
                    at.duration_since(when) >= Duration::from_millis(70),
                    "{events:?}"
                );
            }
            previous = Some((rows_done, *at));
        }
        // The image the stream rendered is there to fetch.
        let (status, _, body) = server.get(done["image"].as_str().unwrap());
        assert_eq!(status, 200);
        assert_eq!(&body[..8], b"\x89PNG\r\n\x1a\n");
    });
}

#[test]
fn bad_requests_and_failing_tasks_get_their_status_and_the_server_serves_on() {
    common::no_leaks(|| {
        let server = Server::start(&["--max-pixels", "1000000"]);
        for (path, status, reason) in [
            (
                "/mandelbrot.png?height=8&max_iter=8",
                400,
                "missing parameter width",
            ),
            (
                "/mandelbrot.png?width=0&height=8&max_iter=8",
                400,
                "width must be at least 1",
            ),
            (
                "/mandelbrot.png?width=8&height=x&max_iter=8",
                400,
                "height=\"x\" is not",
            ),
            (
                "/mandelbrot.png?width=8&height=8&max_iter=-3",
                400,
                "max_iter=\"-3\" is not",
            ),
            (
                "/mandelbrot/progress?width=8&height=8",
                400,
                "missing parameter max_iter",
            ),
            (
                "/mandelbrot.png?width=8&height=8&max_iter=8&fault=oops",
                400,
                "fault",
            ),
            (
                "/mandelbrot.png?width=1001&height=1000&max_iter=8",
                413,
                "over this server's limit",
            ),
            (
                "/mandelbrot.png?width=8&height=8&max_iter=8&fault=panic",
                500,
                "task panicked",
            ),
            (
                "/mandelbrot.png?width=8&height=8&max_iter=8&fault=abort",
                500,
                "died",
            ),
            (
                "/mandelbrot.png?width=1000&height=1000&max_iter=100000&timeout_ms=200",
                504,
                "timeout_ms=200",
            ),
            ("/mandelbrot/result/12345", 404, "no image"),
        ] {
            let (got, _, body) = server.get(path);
            let body = String::from_utf8_lossy(&body);
            assert_eq!(got, status, "{path}: {body}");
            assert!(body.contains(reason), "{path}: {body:?} lacks {reason:?}");
            assert_eq!(
                body.trim_end().lines().count(),
                1,
                "{path}: not one line: {body:?}"
            );
        }
        server.assert_full_strength(Duration::from_secs(5));
        let frame = Frame {
            width: 1000,
            height: 1000,
            max_iter: 20,
        };
        let (status, checksum, _) = server.get(&format!("/mandelbrot.png?{}", query(&frame)));
        assert_eq!(status, 200);
        assert_eq!(checksum, Some(sequential_checksum(&frame)));
        let stats = server.stats();
        assert_eq!(stats["failed"].as_u64(), Some(2), "{stats}");
        assert_eq!(stats["timed_out"].as_u64(), Some(1), "{stats}");
        assert_eq!(stats["done"].as_u64(), Some(1), "{stats}");
    });
}

#[test]
fn closing_a_progress_stream_cancels_its_render() {
    common::no_leaks(|| {
        let server = Server::start(&[]);
        let workers = server.workers();
        let mut socket = TcpStream::connect(server.addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            socket,
            "GET /mandelbrot/progress?{} HTTP/1.1\r\nHost: {}\r\n\r\n",
            query(&BIG),
            server.addr
        )
        .unwrap();
        // Read until the first progress event: the render is under way.
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        for _ in 0..100 {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.starts_with("event: progress") {
                break;
            }
        }
        assert!(
            line.starts_with("event: progress"),
            "no progress event: {line:?}"
        );
        drop(reader);
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.stats()["cancelled"].as_u64() != Some(1) {
            assert!(
                Instant::now() < deadline,
                "not cancelled: {}",
                server.stats()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        let stopped = total_ticks(&workers);
        std::thread::sleep(Duration::from_millis(300));
        let later = total_ticks(&workers);
        assert!(
            later <= stopped + 2,
            "workers still busy: {stopped} -> {later} ticks"
        );
        server.assert_full_strength(Duration::from_secs(5));
    });
}
