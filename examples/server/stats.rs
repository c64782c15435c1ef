//! What `/stats` answers: how the jobs ended, which worker ran them, and how many
//! threads this process has.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

/// Counters of the server's jobs. Every job started ends in exactly one of them: the
/// [`Job`](crate::engine::Job) that owns it records its end, or `cancelled` when it is
/// dropped unfinished (the client went away).
#[derive(Default)]
pub struct Stats {
    done: AtomicU64,
    cancelled: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
    /// Jobs done per process that ran them (worker pids; replaced workers keep their
    /// entry).
    per_worker: Mutex<BTreeMap<u32, u64>>,
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Rendered, by process `pid`.
    Done { pid: u32 },
    /// Dropped unfinished: the client disconnected.
    Cancelled,
    /// Cancelled because the request's `timeout_ms` passed.
    TimedOut,
    /// The task failed (panicked, its worker died, ...).
    Failed,
}

/// A `/stats` answer.
#[derive(Serialize)]
pub struct Snapshot {
    pub engine: &'static str,
    pub done: u64,
    pub cancelled: u64,
    pub timed_out: u64,
    pub failed: u64,
    /// Jobs done per process, by pid.
    pub per_worker: BTreeMap<u32, u64>,
    /// Current worker pids (none for rayon).
    pub workers: Vec<i32>,
    /// Jobs in the pool not yet collected (0 for rayon).
    pub jobs_in_flight: usize,
    /// Threads of this server process (`/proc/self/task`).
    pub threads: usize,
}

impl Stats {
    pub fn record(&self, end: End) {
        // Relaxed: independent counters, read as a snapshot.
        let counter = match end {
            End::Done { pid } => {
                *self
                    .per_worker
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(pid)
                    .or_default() += 1;
                &self.done
            }
            End::Cancelled => &self.cancelled,
            End::TimedOut => &self.timed_out,
            End::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(
        &self,
        engine: &'static str,
        workers: Vec<i32>,
        jobs_in_flight: usize,
    ) -> Snapshot {
        Snapshot {
            engine,
            done: self.done.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            per_worker: self
                .per_worker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            workers,
            jobs_in_flight,
            threads: threads(),
        }
    }
}

/// Threads of this process.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}
