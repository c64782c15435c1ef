//! The driving rank's side of a cluster job: splitting, handing out blocks, collecting
//! partials in input order, cancel, time limit, progress, silent ranks.
//!
//! ## Splitting
//!
//! The job's `n` items are cut into blocks by a [`Plan`]: the first half of the index
//! space is split evenly by rank (rank `r` gets the `r`-th of `size` equal parts), the rest
//! is handed out in guided blocks (a `1/(2 size)` share of what is left, never below
//! `n / (64 size)`) to whichever rank has finished a block. Every rank, the driver
//! included, holds up to two blocks at a time (its first-split part and one more), so a
//! rank never waits for the driver's answer with nothing to do, and a slow rank holds at
//! most its two blocks while the others take the rest.
//!
//! ## One job, step by step
//!
//! 1. The driver sends `Job` (task id, encoded arguments) and two `Block`s (or `NoMore`)
//!    to every server, and starts its own two blocks in its local pool.
//! 2. Each `Done` from a server (or end of a local block) is stored under its start index
//!    and answered with the next block, or with `NoMore` once the plan is exhausted.
//! 3. A server answers `NoMore` with `Stopped` once its last block has ended. The job is
//!    over when the driver's own blocks have ended and every server has said `Stopped`;
//!    the partials are then read in index order.
//! 4. On cancel, time limit or any block's error, the driver sends `Cancel` to every
//!    server still in the job, cancels its own blocks (the local pool stops their
//!    workers: cooperatively, then by its forced kill after its grace period) and waits
//!    for every server's `Stopped`, which a server sends only once its own blocks have
//!    ended the same way. So when the job's error comes back, nothing of the job runs on
//!    any rank, and the next job can start.
//!
//! A server that sends nothing (not even its `Alive` heartbeat) for the cluster's
//! silence limit while in a job is taken for dead or hung: the job fails with
//! [`Error::RankFailed`] naming it, and the cluster refuses further jobs (MPI offers no
//! way to exclude a rank and go on). Under Open MPI a rank that *dies* ends the whole
//! MPI job before the silence limit matters: `mpirun` kills every other rank, the driver
//! included, and reports the dead rank itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::task::{encode, BlockEntry, BlockResult};
use super::wire::{Down, Up, DOWN};
use super::{Cluster, Opts};
use crate::{Error, JobHandle, Progress, Result};

/// How long a rank waits for a local block to end between two looks at MPI (the wait
/// ends early when the block does).
pub(crate) const POLL: Duration = Duration::from_micros(200);
/// How long a rank sleeps between two looks at MPI when no local block runs.
pub(crate) const QUICK: Duration = Duration::from_micros(40);

/// Blocks of a job's index space, in the order they are handed out.
pub(crate) struct Plan {
    n: u64,
    size: u64,
    first: u64,
    next: u64,
    min_block: u64,
}

impl Plan {
    /// The plan of `n` items over `size` ranks.
    pub(crate) fn new(n: u64, size: usize) -> Plan {
        let size = size.max(1) as u64;
        let first = n / 2;
        Plan {
            n,
            size,
            first,
            next: first,
            min_block: (n / (64 * size)).max(1),
        }
    }

    /// Rank `r`'s part of the first split (`None` if it is empty).
    pub(crate) fn initial(&self, r: usize) -> Option<(u64, u64)> {
        let r = r as u64;
        let (s, e) = (self.first * r / self.size, self.first * (r + 1) / self.size);
        (s < e).then_some((s, e))
    }

    /// The next guided block of what is left after the first split, if any.
    pub(crate) fn next(&mut self) -> Option<(u64, u64)> {
        let left = self.n - self.next;
        if left == 0 {
            return None;
        }
        let len = (left / (2 * self.size)).max(self.min_block).min(left);
        let s = self.next;
        self.next += len;
        Some((s, s + len))
    }
}

/// What the driver knows of one server during a job.
struct Server {
    no_more_sent: bool,
    stopped: bool,
    heard: Instant,
}

/// A block running in the driver's own pool.
struct Local {
    start: u64,
    end: u64,
    handle: JobHandle<BlockResult>,
}

/// The encoded items of block `start..end` of a job whose source scatters them (the
/// empty vector for any other source).
pub(crate) type Scatter<'a> = &'a dyn Fn(u64, u64) -> Result<Vec<u8>>;

/// Runs one job of `n` items over the cluster; the blocks' encoded partials, in input
/// order.
pub(crate) fn run(
    cluster: &Cluster,
    entry: BlockEntry,
    args: Vec<u8>,
    scatter: Scatter<'_>,
    n: u64,
    opts: &mut Opts,
) -> Result<Vec<Vec<u8>>> {
    cluster.usable()?;
    let job = cluster.next_job();
    let size = cluster.size as usize;
    let began = Instant::now();
    let mut plan = Plan::new(n, size);
    let mut servers: Vec<Server> = (0..size)
        .map(|r| Server {
            no_more_sent: false,
            // Rank 0 is the driver itself: never waited for.
            stopped: r == 0,
            heard: began,
        })
        .collect();
    let mut parts: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut done = 0u64;
    let mut local: Vec<Local> = Vec::new();
    let mut ended: Vec<(u64, u64, Result<BlockResult>)> = Vec::new();

    let outcome = (|| -> Result<()> {
        let id = encode(entry);
        for (r, server) in servers.iter_mut().enumerate().skip(1) {
            let msg = Down::Job {
                job,
                entry: id,
                args: args.clone(),
            };
            cluster.link.send(r as i32, DOWN, &msg)?;
            let first = plan.initial(r);
            give(cluster, job, r, first, &mut plan, server, scatter)?;
            give(cluster, job, r, None, &mut plan, server, scatter)?;
        }
        for block in [plan.initial(0), plan.next()].into_iter().flatten() {
            local.push(start_local(cluster, entry, &args, scatter, block)?);
        }
        loop {
            if let Some(e) = stop_reason(job, began, opts) {
                return Err(e);
            }
            // The driver's own blocks.
            let mut still = Vec::with_capacity(local.len());
            for l in local.drain(..) {
                match l.handle.try_wait() {
                    Err(handle) => still.push(Local { handle, ..l }),
                    Ok(result) => ended.push((l.start, l.end, result)),
                }
            }
            local = still;
            for (start, end, result) in ended.drain(..) {
                let bytes = block_result(0, result)?;
                parts.insert(start, bytes);
                done += end - start;
                report(opts, done, n);
                if let Some(block) = plan.next() {
                    local.push(start_local(cluster, entry, &args, scatter, block)?);
                }
            }
            // The servers' news.
            while let Some((from, up)) = cluster.link.poll::<Up>()? {
                let Some(server) = servers.get_mut(from as usize).filter(|_| from > 0) else {
                    continue;
                };
                server.heard = Instant::now();
                match up {
                    Up::Done {
                        job: j,
                        start,
                        end,
                        result,
                    } if j == job => {
                        let bytes = block_result(from, Ok(result))?;
                        parts.insert(start, bytes);
                        done += end - start;
                        report(opts, done, n);
                        give(
                            cluster,
                            job,
                            from as usize,
                            None,
                            &mut plan,
                            server,
                            scatter,
                        )?;
                    }
                    Up::Stopped { job: j } if j == job => server.stopped = true,
                    // A heartbeat, or news of an earlier job: only the time counts.
                    _ => {}
                }
            }
            check_silence(cluster, &servers)?;
            if local.is_empty() && servers.iter().all(|s| s.stopped) {
                return Ok(());
            }
            wait_a_little(&mut local, &mut ended);
        }
    })();

    match outcome {
        Ok(()) => Ok(parts.into_values().collect()),
        Err(e) => {
            let stopped = stop_everywhere(cluster, job, &mut servers, local);
            Err(stopped.err().unwrap_or(e))
        }
    }
}

/// Sends server `r` block `block` (or the plan's next one when `None`), or `NoMore`
/// once when the plan is exhausted.
fn give(
    cluster: &Cluster,
    job: u64,
    r: usize,
    block: Option<(u64, u64)>,
    plan: &mut Plan,
    server: &mut Server,
    scatter: Scatter<'_>,
) -> Result<()> {
    match block.or_else(|| plan.next()) {
        Some((start, end)) => {
            let data = scatter(start, end)?;
            let msg = Down::Block {
                job,
                start,
                end,
                data,
            };
            cluster.link.send(r as i32, DOWN, &msg)
        }
        None if !server.no_more_sent => {
            server.no_more_sent = true;
            cluster.link.send(r as i32, DOWN, &Down::NoMore { job })
        }
        None => Ok(()),
    }
}

fn start_local(
    cluster: &Cluster,
    entry: BlockEntry,
    args: &[u8],
    scatter: Scatter<'_>,
    (start, end): (u64, u64),
) -> Result<Local> {
    Ok(Local {
        start,
        end,
        handle: entry(&cluster.pool, args, scatter(start, end)?, start, end)?,
    })
}

/// A block's partial, or the error that fails the job (naming rank `rank`).
fn block_result(rank: i32, result: Result<BlockResult>) -> Result<Vec<u8>> {
    match result {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(reason)) => Err(Error::RankFailed { rank, reason }),
        Err(e) => Err(Error::RankFailed {
            rank,
            reason: e.to_string(),
        }),
    }
}

/// Why the job must stop now, if it must: its cancel token, or its time limit.
fn stop_reason(job: u64, began: Instant, opts: &Opts) -> Option<Error> {
    if opts.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Some(Error::Cancelled);
    }
    match opts.timeout {
        Some(limit) if began.elapsed() >= limit => Some(Error::Timeout {
            job: Some(job),
            limit,
        }),
        _ => None,
    }
}

fn report(opts: &mut Opts, done: u64, total: u64) {
    if let Some(f) = opts.on_progress.as_mut() {
        f(Progress {
            items_done: done,
            items_total: total,
            reported: None,
        });
    }
}

/// Fails the job if a server still in it has been silent for the silence limit; the
/// cluster is then unusable.
fn check_silence(cluster: &Cluster, servers: &[Server]) -> Result<()> {
    for (r, s) in servers.iter().enumerate() {
        if !s.stopped && s.heard.elapsed() > cluster.silence_limit {
            let reason = format!(
                "no word from it for {:?} (it died or hangs); this cluster takes no more \
                 jobs: end the MPI job and start it again",
                cluster.silence_limit
            );
            cluster.set_broken(r as i32, &reason);
            return Err(Error::RankFailed {
                rank: r as i32,
                reason,
            });
        }
    }
    Ok(())
}

/// Waits [`POLL`] for the first local block to end (moving it to `ended` if it does),
/// or sleeps [`QUICK`] when none runs.
fn wait_a_little(local: &mut Vec<Local>, ended: &mut Vec<(u64, u64, Result<BlockResult>)>) {
    if local.is_empty() {
        std::thread::sleep(QUICK);
        return;
    }
    let l = local.remove(0);
    match l.handle.wait_timeout(POLL) {
        Err(handle) => local.insert(0, Local { handle, ..l }),
        Ok(result) => ended.push((l.start, l.end, result)),
    }
}

/// Stops the job on every rank: `Cancel` to every server still in it, the driver's own
/// blocks cancelled and waited for, then every server's `Stopped` waited for.
fn stop_everywhere(
    cluster: &Cluster,
    job: u64,
    servers: &mut [Server],
    local: Vec<Local>,
) -> Result<()> {
    for (r, s) in servers.iter_mut().enumerate() {
        if !s.stopped {
            // A send error here changes nothing: the silence check below names the rank.
            let _ = cluster.link.send(r as i32, DOWN, &Down::Cancel { job });
            s.heard = Instant::now();
        }
    }
    for l in &local {
        l.handle.cancel();
    }
    for l in local {
        // Cancelled: ends within the local pool's grace period (its forced kill).
        let _ = l.handle.wait();
    }
    while !servers.iter().all(|s| s.stopped) {
        while let Some((from, up)) = cluster.link.poll::<Up>()? {
            if let Some(s) = servers.get_mut(from as usize).filter(|_| from > 0) {
                s.heard = Instant::now();
                if matches!(up, Up::Stopped { job: j } if j == job) {
                    s.stopped = true;
                }
            }
        }
        check_silence(cluster, servers)?;
        std::thread::sleep(QUICK);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_covers_every_item_once_in_order_of_hand_out() {
        for (n, size) in [(0u64, 1usize), (1, 4), (10, 4), (1000, 3), (12_345, 2)] {
            let mut plan = Plan::new(n, size);
            let mut blocks: Vec<(u64, u64)> = (0..size).filter_map(|r| plan.initial(r)).collect();
            while let Some(b) = plan.next() {
                blocks.push(b);
            }
            blocks.sort();
            let mut at = 0;
            for (s, e) in blocks {
                assert_eq!(s, at, "n {n} size {size}");
                assert!(e > s);
                at = e;
            }
            assert_eq!(at, n);
        }
    }

    #[test]
    fn guided_blocks_shrink() {
        let mut plan = Plan::new(1 << 20, 2);
        let a = plan.next().unwrap();
        let b = plan.next().unwrap();
        assert!(b.1 - b.0 <= a.1 - a.0);
        assert_eq!(plan.initial(1), Some((1 << 18, 1 << 19)));
    }
}
