//! A serving rank's side: wait for jobs, run the blocks the driver hands out in the
//! local pool, answer, until the driver closes the cluster.
//!
//! Between jobs a server polls MPI for the next `Job` or `Close`: every [`QUICK`] for a
//! while after a job (jobs often follow each other), then less and less often, up to
//! every [`IDLE_MAX`] (Open MPI's blocking receive would spin a core all along). In a job it runs every `Block` at once as a job of its own in the local
//! pool (the driver hands out at most two at a time), sends `Done` as each one ends and
//! `Alive` every [`HEARTBEAT`] while any runs, and leaves the job with `Stopped` when the
//! driver has said `NoMore` and its blocks have ended, or at once after `Cancel` once its
//! cancelled blocks have ended (the local pool stops their workers cooperatively, then
//! by its forced kill after its grace period). Messages of other jobs are stale (the
//! driver has moved on) and are dropped.

use std::time::{Duration, Instant};

use super::driver::{POLL, QUICK};
use super::task::{decode, BlockResult};
use super::wire::{Down, Up, UP};
use super::Cluster;
use crate::{Error, JobHandle, Result};

/// How often a server in a job tells the driver it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(250);
/// Longest sleep between two looks at MPI while idle.
const IDLE_MAX: Duration = Duration::from_millis(2);

/// Why a job's loop ended.
enum Left {
    /// The job is over (done or cancelled): wait for the next.
    Job,
    /// The driver closed the cluster.
    Close,
}

/// Serves jobs until the driver closes the cluster.
pub(crate) fn serve(cluster: &Cluster) -> Result<()> {
    let mut idle_since = Instant::now();
    loop {
        match cluster.link.poll::<Down>()? {
            Some((_, Down::Job { job, entry, args })) => {
                if let Left::Close = run_job(cluster, job, entry, &args)? {
                    return Ok(());
                }
                idle_since = Instant::now();
            }
            Some((_, Down::Close)) => return Ok(()),
            // Stale news of a job this rank has left.
            Some(_) => {}
            None => std::thread::sleep(idle_sleep(idle_since.elapsed())),
        }
    }
}

/// How long to sleep between two looks at MPI after `idle` without a job: [`QUICK`]
/// at first (jobs often follow each other), then longer and longer, up to
/// [`IDLE_MAX`].
fn idle_sleep(idle: Duration) -> Duration {
    const FAST_FOR: Duration = Duration::from_millis(50);
    if idle < FAST_FOR {
        QUICK
    } else {
        (idle / 32).clamp(QUICK, IDLE_MAX)
    }
}

/// A block running in the local pool.
struct Running {
    start: u64,
    end: u64,
    handle: JobHandle<BlockResult>,
}

fn run_job(cluster: &Cluster, job: u64, entry: u64, args: &[u8]) -> Result<Left> {
    // SAFETY: the task id comes from rank 0, whose build identity equals this rank's
    // (checked by every rank when the cluster started, before any job), so it is
    // this executable's offset of a `BlockEntry`.
    let entry = unsafe { decode(entry) };
    let mut running: Vec<Running> = Vec::new();
    let mut no_more = false;
    let mut alive_sent = Instant::now();
    loop {
        while let Some((_, down)) = cluster.link.poll::<Down>()? {
            match down {
                Down::Block {
                    job: j,
                    start,
                    end,
                    data,
                } if j == job => match entry(&cluster.pool, args, data, start, end) {
                    Ok(handle) => running.push(Running { start, end, handle }),
                    Err(e) => {
                        let result = Err(e.to_string());
                        cluster.link.send(
                            0,
                            UP,
                            &Up::Done {
                                job,
                                start,
                                end,
                                result,
                            },
                        )?;
                    }
                },
                Down::NoMore { job: j } if j == job => no_more = true,
                Down::Cancel { job: j } if j == job => {
                    stop(cluster, job, running)?;
                    return Ok(Left::Job);
                }
                Down::Close => {
                    stop(cluster, job, running)?;
                    return Ok(Left::Close);
                }
                Down::Job { job: j, .. } => {
                    stop(cluster, job, running)?;
                    return Err(Error::RankFailed {
                        rank: 0,
                        reason: format!(
                            "sent job {j} while job {job} was still running here (a \
                             protocol error: the ranks disagree on the job in progress)"
                        ),
                    });
                }
                // Stale news of an earlier job.
                _ => {}
            }
        }
        let mut still = Vec::with_capacity(running.len());
        for r in running.drain(..) {
            match r.handle.try_wait() {
                Err(handle) => still.push(Running { handle, ..r }),
                Ok(result) => send_done(cluster, job, r.start, r.end, result)?,
            }
        }
        running = still;
        if no_more && running.is_empty() {
            cluster.link.send(0, UP, &Up::Stopped { job })?;
            return Ok(Left::Job);
        }
        if alive_sent.elapsed() >= HEARTBEAT {
            cluster.link.send(0, UP, &Up::Alive { job })?;
            alive_sent = Instant::now();
        }
        if running.is_empty() {
            std::thread::sleep(QUICK);
        } else {
            let r = running.remove(0);
            match r.handle.wait_timeout(POLL) {
                Err(handle) => running.insert(0, Running { handle, ..r }),
                Ok(result) => send_done(cluster, job, r.start, r.end, result)?,
            }
        }
    }
}

fn send_done(
    cluster: &Cluster,
    job: u64,
    start: u64,
    end: u64,
    result: Result<BlockResult>,
) -> Result<()> {
    let result = result.unwrap_or_else(|e| Err(e.to_string()));
    cluster.link.send(
        0,
        UP,
        &Up::Done {
            job,
            start,
            end,
            result,
        },
    )
}

/// Cancels the job's blocks here, waits for them to end (sending `Alive` meanwhile),
/// and tells the driver with `Stopped`.
fn stop(cluster: &Cluster, job: u64, running: Vec<Running>) -> Result<()> {
    for r in &running {
        r.handle.cancel();
    }
    for r in running {
        let mut handle = r.handle;
        // A cancelled job ends within the local pool's grace period (its forced kill):
        // the wait is bounded by the pool, and the heartbeat keeps the driver patient.
        loop {
            match handle.wait_timeout(HEARTBEAT) {
                Ok(_) => break,
                Err(h) => {
                    handle = h;
                    cluster.link.send(0, UP, &Up::Alive { job })?;
                }
            }
        }
    }
    cluster.link.send(0, UP, &Up::Stopped { job })
}
