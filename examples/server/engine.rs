//! Where renders run: the procyon pool, or (the baseline) rayon threads inside
//! `spawn_blocking`. A [`Job`] is one render in flight, as a future the request's
//! handler awaits; dropping it cancels the render and counts it as cancelled.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::StatusCode;
use procyon::{JobHandle, Pool};

use crate::render::{self, Rendered, TaskResult, Tile};
use crate::stats::{End, Stats};

/// The renderer behind the server.
pub enum Engine {
    /// Jobs of a pool of worker processes.
    Procyon(Pool),
    /// The baseline: a rayon pool, entered from tokio's blocking threads.
    Rayon(Arc<rayon::ThreadPool>),
}

/// Why a render gave no image: the HTTP status and the one-line text to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    pub reason: String,
}

impl Failure {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Failure {
            status,
            reason: reason.into(),
        }
    }
}

impl From<procyon::Error> for Failure {
    fn from(e: procyon::Error) -> Self {
        use procyon::Error as E;
        let status = match e {
            // Resources: the request may succeed later.
            E::OutOfMemory { .. } | E::TooManyJobs { .. } | E::Full | E::PoolShutDown { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            E::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure::new(status, e.to_string())
    }
}

impl Engine {
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Procyon(_) => "procyon",
            Engine::Rayon(_) => "rayon",
        }
    }

    /// Starts rendering `tile`; its end is recorded in `stats`.
    ///
    /// # Errors
    /// If the pool takes no job now (mempool full, pool shut down).
    pub fn start(&self, tile: Tile, stats: Arc<Stats>) -> Result<Job, Failure> {
        let running = match self {
            Engine::Procyon(pool) => {
                Running::Procyon(Box::new(pool.spawn_with(tile, render::render)?))
            }
            Engine::Rayon(threads) => {
                let rows = Arc::new(AtomicU64::new(0));
                let cancel = Arc::new(AtomicBool::new(false));
                let task = tokio::task::spawn_blocking({
                    let (threads, rows, cancel) = (threads.clone(), rows.clone(), cancel.clone());
                    move || threads.install(|| render::render_rayon(&tile, &rows, &cancel))
                });
                Running::Rayon { task, rows, cancel }
            }
        };
        Ok(Job {
            running,
            rows: u64::from(tile.frame.height),
            stats,
            ended: false,
        })
    }
}

enum Running {
    /// Dropping the handle cancels the job, at once (the scheduler cleans up).
    Procyon(Box<JobHandle<TaskResult>>),
    Rayon {
        task: tokio::task::JoinHandle<TaskResult>,
        rows: Arc<AtomicU64>,
        /// Set when the job is dropped: the rows not started yet are skipped.
        cancel: Arc<AtomicBool>,
    },
}

/// One render in flight. Await it for the image; drop it to cancel.
pub struct Job {
    running: Running,
    rows: u64,
    stats: Arc<Stats>,
    /// Its end is recorded (then the drop records nothing).
    ended: bool,
}

impl Job {
    /// Rows rendered so far, and the rows of the image.
    pub fn progress(&self) -> (u64, u64) {
        let done = match &self.running {
            Running::Procyon(handle) => handle.progress().reported.map_or(0, |(done, _)| done),
            // Relaxed: a counter read as a snapshot.
            Running::Rayon { rows, .. } => rows.load(Ordering::Relaxed),
        };
        (done.min(self.rows), self.rows)
    }

    /// Records that the request's time limit passed; drop the job next.
    pub fn timed_out(&mut self) {
        self.end(End::TimedOut);
    }

    fn end(&mut self, end: End) {
        if !self.ended {
            self.ended = true;
            self.stats.record(end);
        }
    }
}

impl Future for Job {
    type Output = Result<Rendered, Failure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result: Result<TaskResult, Failure> = match &mut this.running {
            Running::Procyon(handle) => match Pin::new(&mut **handle).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r.map_err(Failure::from),
            },
            Running::Rayon { task, .. } => match Pin::new(task).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r.map_err(|e| {
                    Failure::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("render task failed: {e}"),
                    )
                }),
            },
        };
        let result = result
            .and_then(|r| r.map_err(|text| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, text)));
        this.end(match &result {
            Ok(r) => End::Done { pid: r.pid },
            Err(_) => End::Failed,
        });
        Poll::Ready(result)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Running::Rayon { cancel, .. } = &self.running {
            // Relaxed: the rows only need to see it eventually.
            cancel.store(true, Ordering::Relaxed);
        }
        // The procyon handle cancels its job when it is dropped, right after this.
        self.end(End::Cancelled);
    }
}
