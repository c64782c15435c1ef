//! An HTTP server that renders W1 mandelbrot tiles (docs/WORKLOADS.md) in a procyon
//! pool: each request is a job of its own, run in a worker process, cancelled when the
//! client goes away.
//!
//! ```text
//! cargo run --release --example server -- --addr 127.0.0.1:8080 --workers 2
//! # then open http://127.0.0.1:8080/ in a browser, or:
//! curl -sD - -o tile.png 'http://127.0.0.1:8080/mandelbrot.png?width=512&height=512&max_iter=500'
//! curl -N 'http://127.0.0.1:8080/mandelbrot/progress?width=2048&height=2048&max_iter=2000'
//! curl -s http://127.0.0.1:8080/stats
//! ```
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | an HTML page: a form, the image, a live progress bar from the SSE stream |
//! | `GET /mandelbrot.png?width=W&height=H&max_iter=M` | the PNG, its W1 checksum in `X-Checksum` |
//! | `GET /mandelbrot/progress?...` | server-sent events: `progress` (`{"rows_done","rows"}`, at most every 100 ms), then one `done` (`{"checksum","image"}`) or `error` |
//! | `GET /mandelbrot/result/{id}` | the PNG a `done` event names (the last few are kept) |
//! | `GET /stats` | JSON: jobs done, cancelled, timed out, failed; jobs per worker pid; threads |
//!
//! Both render routes take `timeout_ms=T` (the job is cancelled after T ms: 504) and, to
//! show what a crash costs, `fault=panic` or `fault=abort` (the task panics, or kills
//! its worker: 500 with the job's error, the pool replaces the worker and the server
//! serves on). Bad parameters answer 400 with the reason, an image over `--max-pixels`
//! 413. `--engine rayon` renders with rayon inside `spawn_blocking` instead: the
//! baseline of `benches/server.rs` (there `fault=abort` takes the server down).
//!
//! # Offloading from an async server
//!
//! The pattern, in [`png`]: parse the request, `pool.spawn_with(params, task)` (the
//! parameters travel with the job as a serde value; the task is a `fn` that captures
//! nothing), `.await` the `JobHandle` (it is a `Future`), answer. Nothing CPU-bound
//! runs on the runtime's threads: the task renders and encodes the PNG in a worker
//! process, the handler only moves bytes. For progress, poll `handle.progress()` on a
//! `tokio::time::interval` next to the handle ([`progress`]); the task reports with
//! `ctx.progress(done, total)`.
//!
//! Cancellation is the handle's drop: when a client disconnects, hyper drops the
//! handler's future (or the SSE body stream), which drops the handle, which cancels the
//! job and returns at once. The task sees `ctx.is_cancelled()` at its next row and
//! returns; a task that does not check is killed after the pool's cancel grace period
//! (`PoolBuilder::cancel_grace`) and its worker replaced, so a disconnected request
//! never keeps a CPU busy. A time limit is the same drop, after
//! `tokio::time::timeout`. A task that panics or crashes fails only its job.
//!
//! The costs, per request:
//!
//! * a job submission and its collection (tens of microseconds; see BENCHMARKS.md, W4),
//!   and for an image above [`render::INLINE_PIXELS`] a second, nested job over its
//!   rows;
//! * the parameters and the result cross through the mempool encoded with bincode: the
//!   PNG is copied once from the worker's result block into the answer;
//! * no thread per request: an awaited handle registers its waker with the pool's one
//!   waiter thread, woken when any job of the pool ends (`/stats` shows the threads);
//! * a render cannot use more CPUs than the pool has workers, and requests beyond that
//!   queue in the pool (not in the runtime, which stays responsive).
//!
//! Against rayon in `spawn_blocking` (`--engine rayon`): the same code shape, but a
//! dropped request can only skip the rows not started (rayon cannot stop a running
//! closure), a panic is caught by tokio but an abort or segfault ends the server, and
//! every request in flight holds a blocking thread.

#[allow(dead_code)] // Shared with the mandelbrot example; the server uses part of it.
#[path = "../mandelbrot/kernel.rs"]
mod kernel;
#[allow(dead_code)] // Shared with the mandelbrot example: the server encodes in memory.
#[path = "../mandelbrot/picture.rs"]
mod picture;
#[allow(dead_code)] // Shared with the mandelbrot example: the server builds its own pool.
#[path = "../mandelbrot/rows.rs"]
mod rows;

mod engine;
mod params;
mod render;
mod stats;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::{Parser, ValueEnum};
use futures_util::Stream;

use engine::{Engine, Failure, Job};
use stats::Stats;

/// Shortest time between two `progress` events of a stream.
const PROGRESS_PERIOD: Duration = Duration::from_millis(100);
/// Rendered images kept for `/mandelbrot/result/{id}`.
const RESULTS_KEPT: usize = 8;
/// How long in-flight requests may finish after SIGTERM or SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Which renderer the server uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EngineKind {
    /// Jobs in a procyon pool of worker processes.
    Procyon,
    /// rayon threads inside tokio's `spawn_blocking` (the baseline).
    Rayon,
}

/// W1 mandelbrot tiles over HTTP, rendered in a procyon pool.
#[derive(Parser, Debug)]
#[command(long_about = None)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Worker processes (rayon threads with `--engine rayon`).
    #[arg(long, default_value_t = num_cpus::get())]
    workers: usize,
    /// Largest image, in pixels, a request may ask for (larger ones answer 413).
    #[arg(long, default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(1..=(1 << 28)))]
    max_pixels: u64,
    /// How long a cancelled task may run before its worker is killed, in ms.
    #[arg(long, default_value_t = 50)]
    cancel_grace_ms: u64,
    /// The renderer.
    #[arg(long, value_enum, default_value_t = EngineKind::Procyon)]
    engine: EngineKind,
}

/// What the handlers share.
struct App {
    engine: Engine,
    stats: Arc<Stats>,
    max_pixels: u64,
    /// The last images rendered for a progress stream, by id.
    results: Mutex<VecDeque<(u64, Arc<Vec<u8>>)>>,
    next_result: AtomicU64,
}

type Shared = Arc<App>;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // The pool forks before the runtime starts its threads.
    let engine = match args.engine {
        EngineKind::Procyon => {
            // Room for a few images of the largest size at once, their PNGs and the
            // results on their way back (pages cost nothing until used).
            let mempool = (args.max_pixels as usize * 4) * 8 + (64 << 20);
            Engine::Procyon(
                procyon::Pool::builder()
                    .workers(args.workers)
                    .mempool_size(mempool)
                    .cancel_grace(Duration::from_millis(args.cancel_grace_ms))
                    .build()?,
            )
        }
        EngineKind::Rayon => Engine::Rayon(Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(args.workers)
                .build()?,
        )),
    };
    let app = Arc::new(App {
        engine,
        stats: Arc::new(Stats::default()),
        max_pixels: args.max_pixels,
        results: Mutex::new(VecDeque::new()),
        next_result: AtomicU64::new(1),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(serve(args, Arc::clone(&app)));
    // Tasks still running hold their jobs: dropping the runtime drops them (cancelling
    // the jobs) before the pool, whose drop then reaps its processes.
    drop(runtime);
    drop(app);
    served
}

async fn serve(args: &Args, app: Shared) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    let workers = match &app.engine {
        Engine::Procyon(pool) => format!("{} worker processes", pool.workers()),
        Engine::Rayon(threads) => format!("{} rayon threads", threads.current_num_threads()),
    };
    println!(
        "listening on http://{addr}/ ({}, {workers})",
        app.engine.name()
    );
    std::io::stdout().flush()?;
    let router = Router::new()
        .route("/", get(index))
        .route("/mandelbrot.png", get(png))
        .route("/mandelbrot/progress", get(progress))
        .route("/mandelbrot/result/{id}", get(result))
        .route("/stats", get(stats))
        .with_state(app);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    tokio::select! {
        served = server => served?,
        () = async {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
            // Streams and slow renders get a moment; then the runtime's drop ends them.
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {}
    }
    // Whoever started us may have stopped reading: that is no reason to fail.
    let _ = writeln!(std::io::stdout(), "stopped");
    Ok(())
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // No handler could be installed: serve until killed.
        _ => std::future::pending().await,
    }
}

/// A one-line text answer.
fn text(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    (status, format!("{reason}\n")).into_response()
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        text(self.status, self.reason)
    }
}

impl IntoResponse for params::ParamError {
    fn into_response(self) -> Response {
        text(self.status(), self)
    }
}

/// Why a render did not start.
enum NotStarted {
    Params(params::ParamError),
    Failure(Failure),
}

impl IntoResponse for NotStarted {
    fn into_response(self) -> Response {
        match self {
            NotStarted::Params(e) => e.into_response(),
            NotStarted::Failure(f) => f.into_response(),
        }
    }
}

/// Checks the query and starts the job.
fn start(app: &App, query: &HashMap<String, String>) -> Result<(Job, params::Request), NotStarted> {
    let request = params::parse(query, app.max_pixels).map_err(NotStarted::Params)?;
    let job = app
        .engine
        .start(request.tile, Arc::clone(&app.stats))
        .map_err(NotStarted::Failure)?;
    Ok((job, request))
}

/// The request's time limit: when it passes, and `timeout_ms` (for the answer).
type Limit = Option<(tokio::time::Instant, Duration)>;

fn limit_of(request: &params::Request) -> Limit {
    request
        .timeout
        .map(|t| (tokio::time::Instant::now() + t, t))
}

/// Awaits `job` until the request's time limit.
async fn finish(job: &mut Job, limit: Limit) -> Result<render::Rendered, Failure> {
    match limit {
        None => job.await,
        Some((deadline, limit)) => match tokio::time::timeout_at(deadline, &mut *job).await {
            Ok(result) => result,
            Err(_) => {
                job.timed_out();
                Err(Failure {
                    status: StatusCode::GATEWAY_TIMEOUT,
                    reason: format!("no image within timeout_ms={}", limit.as_millis()),
                })
            }
        },
    }
}

/// `GET /mandelbrot.png`: the PNG with its checksum. If the client disconnects, hyper
/// drops this future, and with it the job: the render is cancelled.
async fn png(State(app): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let (mut job, request) = match start(&app, &query) {
        Ok(started) => started,
        Err(refused) => return refused.into_response(),
    };
    match finish(&mut job, limit_of(&request)).await {
        Ok(r) => (
            [
                (header::CONTENT_TYPE, "image/png".to_string()),
                (
                    header::HeaderName::from_static("x-checksum"),
                    r.checksum.to_string(),
                ),
            ],
            r.png,
        )
            .into_response(),
        Err(failure) => failure.into_response(),
    }
}

/// What a progress stream holds between two events.
enum StreamState {
    Running(Box<Live>),
    Ended,
}

/// A progress stream whose render has not ended.
struct Live {
    app: Shared,
    job: Job,
    limit: Limit,
    ticker: tokio::time::Interval,
    /// Rows done at the last event.
    last: Option<u64>,
}

/// `GET /mandelbrot/progress`: server-sent events of the render's progress, then its
/// end. The stream owns the job: when the client disconnects, hyper drops the stream,
/// and the render is cancelled.
async fn progress(
    State(app): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, NotStarted> {
    let (job, request) = start(&app, &query)?;
    let mut ticker = tokio::time::interval(PROGRESS_PERIOD);
    // A slow client gets fewer events, never a burst.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = StreamState::Running(Box::new(Live {
        app,
        job,
        limit: limit_of(&request),
        ticker,
        last: None,
    }));
    let events = futures_util::stream::unfold(state, |state| async move {
        let StreamState::Running(mut live) = state else {
            return None;
        };
        loop {
            tokio::select! {
                // Biased: the end wins over a progress tick that falls due with it.
                biased;
                result = finish(&mut live.job, live.limit) => {
                    return Some((Ok(end_event(&live.app, result)), StreamState::Ended));
                }
                _ = live.ticker.tick() => {
                    let (done, rows) = live.job.progress();
                    if live.last != Some(done) {
                        live.last = Some(done);
                        let event = Event::default()
                            .event("progress")
                            .data(format!(r#"{{"rows_done":{done},"rows":{rows}}}"#));
                        return Some((Ok(event), StreamState::Running(live)));
                    }
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The `done` event (with the checksum and where to fetch the image) or `error` event.
fn end_event(app: &App, result: Result<render::Rendered, Failure>) -> Event {
    match result {
        Ok(r) => {
            let id = app.next_result.fetch_add(1, Ordering::Relaxed);
            let mut kept = app.results.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() == RESULTS_KEPT {
                kept.pop_front();
            }
            kept.push_back((id, Arc::new(r.png)));
            Event::default().event("done").data(format!(
                r#"{{"checksum":{},"image":"/mandelbrot/result/{id}"}}"#,
                r.checksum
            ))
        }
        Err(f) => {
            Event::default()
                .event("error")
                .data(format!("{} {}", f.status.as_u16(), f.reason))
        }
    }
}

/// `GET /mandelbrot/result/{id}`: an image a progress stream rendered.
async fn result(State(app): State<Shared>, Path(id): Path<u64>) -> Response {
    let kept = app.results.lock().unwrap_or_else(|e| e.into_inner());
    match kept.iter().find(|(i, _)| *i == id) {
        Some((_, png)) => ([(header::CONTENT_TYPE, "image/png")], png.to_vec()).into_response(),
        None => text(
            StatusCode::NOT_FOUND,
            format!("no image {id} (only the last {RESULTS_KEPT} are kept)"),
        ),
    }
}

/// `GET /stats`.
async fn stats(State(app): State<Shared>) -> Json<stats::Snapshot> {
    let (workers, in_flight) = match &app.engine {
        Engine::Procyon(pool) => (pool.pids().1, pool.jobs_in_flight()),
        Engine::Rayon(_) => (Vec::new(), 0),
    };
    Json(app.stats.snapshot(app.engine.name(), workers, in_flight))
}

/// `GET /`.
async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}
