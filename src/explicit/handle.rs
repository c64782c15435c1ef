//! The public side of explicit processes: [`Pool::fork_with`], the [`Process`] handle
//! and its plain-data [`ProcessDesc`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::child::{self, Outcome};
use super::slot::{ProcSlot, ProcState, ProcTable, MAX_PROCESSES};
use crate::error::{Error, Result};
use crate::pool::{Pool, PoolInner};
use crate::scheduler::SchedMsg;
use crate::task::{assert_stateless, TaskFn};

/// How often a waiting joiner or forker checks that the scheduler is alive.
const LIVENESS_STEP: Duration = Duration::from_millis(100);
/// Longest a forker waits for the scheduler to fork (it answers within a loop turn; the
/// bound only catches a scheduler that stopped serving).
const FORK_LIMIT: Duration = Duration::from_secs(10);

/// A fingerprint of type `R` (its name, hashed): a descriptor opened with another
/// result type than the process's is refused instead of decoding garbage.
fn type_tag<R>() -> u64 {
    // FNV-1a: stable across processes of one image, which is all it must be.
    std::any::type_name::<R>()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

impl Pool {
    /// Starts `f(&arg, &ctx)` in an explicit process of its own: a fork point, as
    /// Netmulticore's `start`. The process is forked by the pool's scheduler, outside the
    /// workers: it takes no worker's place and no worker ever runs it, so a process that
    /// runs for hours leaves `par_map` and friends all their parallelism. Inside, `ctx`
    /// offers the pool's whole API (nested jobs run in the workers while the process
    /// sleeps) and the shared structures of [`collections`](crate::collections) and
    /// [`sync`](crate::sync) work through their descriptors. Returns once the process
    /// exists.
    ///
    /// The argument travels encoded (any serde value, plain data included); `f` is a
    /// function that captures nothing, as for [`Pool::spawn_with`]. The process is killed
    /// with the pool (drop, or the client's death, even by SIGKILL).
    ///
    /// # Errors
    /// [`Error::TooManyProcesses`] if 256 processes of this pool are running or wait to be
    /// joined; [`Error::OutOfMemory`] if the argument does not fit in the mempool;
    /// [`Error::Io`] if the scheduler could not fork; [`Error::PoolShutDown`] if the pool
    /// is shut down.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool};
    ///
    /// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let p = pool.fork_with(10u64, |n: &u64, ctx: &Ctx| {
    ///     // A nested job: its items run in the workers.
    ///     ctx.par_range(0..*n).map(|i: u64| i * i).sum::<u64>().unwrap()
    /// })?;
    /// assert_eq!(p.join()?, (0..10u64).map(|i| i * i).sum());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn fork_with<A, F, R>(&self, arg: A, _f: F) -> Result<Process<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        F: Fn(&A, &crate::Ctx) -> R + TaskFn,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_stateless::<F>();
        let inner = self.inner();
        if inner.control.header().closed.load(Ordering::Relaxed) != 0 {
            return Err(Error::PoolShutDown {
                reason: "the scheduler has shut down".into(),
            });
        }
        let bytes = bincode::serialize(&arg).map_err(|e| Error::Malformed {
            reason: format!("the process argument could not be encoded: {e}"),
        })?;
        // Untagged: the argument must outlive the job of a task that forks.
        let mut block = inner.mempool.alloc_tagged(bytes.len().max(1), 8, 0)?;
        block.as_bytes_mut()[..bytes.len()].copy_from_slice(&bytes);
        let table = ProcTable::of(&inner.control);
        let Some((index, gen)) = table.claim() else {
            return Err(Error::TooManyProcesses {
                limit: MAX_PROCESSES,
            });
        };
        let slot = table.slot(index).expect("claimed");
        // Relaxed stores while STARTING: we own the record until the fork request, whose
        // message (and the fork after it) orders them before the child and scheduler.
        slot.entry
            .store(child::encode(child::entry::<A, F, R>), Ordering::Relaxed);
        slot.type_tag.store(type_tag::<R>(), Ordering::Relaxed);
        slot.pid.store(0, Ordering::Relaxed);
        slot.signal.store(-1, Ordering::Relaxed);
        slot.exit_code.store(-1, Ordering::Relaxed);
        slot.fork_errno.store(0, Ordering::Relaxed);
        slot.oom_requested.store(0, Ordering::Relaxed);
        slot.progress_done.store(0, Ordering::Relaxed);
        slot.progress_total.store(0, Ordering::Relaxed);
        slot.result.clear();
        slot.args.store(block.into_raw());
        let process = Process {
            pool: Arc::clone(inner),
            index: index as u32,
            gen,
            _result: PhantomData,
        };
        let msg = SchedMsg::Fork {
            index: index as u32,
            gen,
        };
        if let Err(e) = inner.send_scheduler(msg) {
            process.abandon();
            return Err(e);
        }
        process.wait_started()?;
        Ok(process)
    }
}

/// An explicit process started with [`Pool::fork_with`]: join it for its result (a join
/// point), or kill it.
///
/// **Who may join, and how often.** Any process of the pool's tree may join it: the
/// client through this handle, a task in a worker or another explicit process through
/// its [`ProcessDesc`] ([`desc`](Process::desc), then [`ProcessDesc::open`]). The result
/// is handed over exactly once: the first join of the ended process takes it, and every
/// later join (through any handle) is [`Error::AlreadyJoined`].
///
/// Dropping the handle neither joins nor kills: the process runs on and its result waits
/// in the mempool for a join through a descriptor, or until the pool is dropped (a
/// record nobody joins keeps one of the pool's 256 places until then). A handle keeps
/// its pool alive, as a [`JobHandle`](crate::JobHandle) does: the pool (and every
/// explicit process with it) goes when the `Pool` and every handle are dropped.
///
/// # Examples
///
/// ```
/// use procyon::{Ctx, Error, Pool};
///
/// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
/// let p = pool.fork_with("procyon".to_string(), |s: &String, _: &Ctx| s.len())?;
/// let again = p.desc();
/// assert_eq!(p.join()?, 7);
/// // The result was handed over: a second join is an error, not a second copy.
/// let second = again.open(&pool).and_then(|p| p.join());
/// assert!(matches!(second, Err(Error::AlreadyJoined { .. })));
/// # Ok::<(), procyon::Error>(())
/// ```
#[must_use = "a process is joined for its result; a dropped handle leaves it running"]
pub struct Process<R> {
    pool: Arc<PoolInner>,
    index: u32,
    gen: u64,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("number", &self.gen)
            .field("record", &self.index)
            .finish()
    }
}

impl<R: DeserializeOwned> Process<R> {
    fn slot(&self) -> &ProcSlot {
        ProcTable::of(&self.pool.control)
            .slot(self.index as usize)
            .expect("index checked when the handle was made")
    }

    /// The process's pid (0 if it died before it could record it).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let p = pool.fork_with((), |_: &(), _: &Ctx| std::process::id() as i32)?;
    /// let pid = p.pid();
    /// assert_eq!(p.join()?, pid);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn pid(&self) -> i32 {
        // Relaxed: written before RUNNING, which `wait_started` (or `open`) saw.
        self.slot().pid.load(Ordering::Relaxed)
    }

    /// A number identifying the process in this pool (as in error messages).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let a = pool.fork_with((), |_: &(), _: &Ctx| 1u8)?;
    /// let b = pool.fork_with((), |_: &(), _: &Ctx| 2u8)?;
    /// assert_ne!(a.number(), b.number());
    /// assert_eq!(a.join()? + b.join()?, 3);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn number(&self) -> u64 {
        self.gen
    }

    /// The plain-data descriptor of this process, for a task or another explicit
    /// process to join it ([`ProcessDesc::open`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool, ProcessDesc};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let p = pool.fork_with(20u32, |n: &u32, _: &Ctx| n + 1)?;
    /// // A task in a worker joins it (an `Error` travels back as text).
    /// let r = pool
    ///     .spawn_with(p.desc(), |d: &ProcessDesc<u32>, ctx: &Ctx| {
    ///         d.open(ctx).and_then(|p| p.join()).map_err(|e| e.to_string())
    ///     })?
    ///     .wait()?;
    /// assert_eq!(r, Ok(21));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn desc(&self) -> ProcessDesc<R> {
        ProcessDesc {
            pool_id: self.pool.mempool.id(),
            index: self.index,
            gen: self.gen,
            _result: PhantomData,
        }
    }

    /// Waits for the process to end and takes its result.
    ///
    /// # Errors
    /// [`Error::ProcessPanicked`] (with the panic message) if `f` panicked;
    /// [`Error::ProcessDied`] (with the signal or exit status) if the process died
    /// (abort, segfault, SIGKILL, [`kill`](Process::kill)); [`Error::AlreadyJoined`] if
    /// another join took the result; [`Error::PoolShutDown`] if the pool's scheduler is
    /// gone (the process went with it); [`Error::InvalidConfig`] if a process joins
    /// itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Error, Pool};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let p = pool.fork_with(3u8, |n: &u8, _: &Ctx| -> u8 {
    ///     if *n == 3 { panic!("three") } else { *n }
    /// })?;
    /// assert!(matches!(p.join(), Err(Error::ProcessPanicked { message, .. }) if message.contains("three")));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn join(self) -> Result<R> {
        match self.join_until(None) {
            Some(r) => r,
            None => unreachable!("a join without deadline ends only with an outcome"),
        }
    }

    /// Like [`join`](Process::join), but gives the handle back if the process has not
    /// ended within `timeout` (it keeps running).
    ///
    /// # Errors
    /// As [`join`](Process::join); `Err(process)` (the outer one) on timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let mut p = pool.fork_with(50u64, |ms: &u64, _: &Ctx| {
    ///     std::thread::sleep(Duration::from_millis(*ms));
    ///     ms * 2
    /// })?;
    /// let v = loop {
    ///     match p.join_timeout(Duration::from_millis(5)) {
    ///         Ok(r) => break r?,
    ///         Err(running) => p = running, // do something else meanwhile
    ///     }
    /// };
    /// assert_eq!(v, 100);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    // The error variant gives the handle back, by value, so the caller can keep waiting.
    #[allow(clippy::result_large_err)]
    pub fn join_timeout(self, timeout: Duration) -> std::result::Result<Result<R>, Process<R>> {
        match self.join_until(Some(Instant::now() + timeout)) {
            Some(r) => Ok(r),
            None => Err(self),
        }
    }

    /// Takes the result if the process has ended, or gives the handle back.
    ///
    /// # Errors
    /// As [`join`](Process::join); `Err(process)` (the outer one) if it still runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let mut p = pool.fork_with((), |_: &(), _: &Ctx| 9u8)?;
    /// let v = loop {
    ///     match p.try_join() {
    ///         Ok(r) => break r?,
    ///         Err(running) => {
    ///             p = running;
    ///             std::thread::sleep(Duration::from_millis(1));
    ///         }
    ///     }
    /// };
    /// assert_eq!(v, 9);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    #[allow(clippy::result_large_err)]
    pub fn try_join(self) -> std::result::Result<Result<R>, Process<R>> {
        self.join_timeout(Duration::ZERO)
    }

    /// Kills the process (SIGKILL, sent by the scheduler, which alone reaps it, so the
    /// signal never reaches a reused pid). A join then gives [`Error::ProcessDied`],
    /// unless the process had already returned: then the join gives its result. Returns
    /// without waiting for the death.
    ///
    /// # Errors
    /// [`Error::PoolShutDown`] if the scheduler cannot be told (the pool is gone, and
    /// the process with it).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Error, Pool};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let p = pool.fork_with((), |_: &(), _: &Ctx| -> u64 { loop { std::thread::park() } })?;
    /// p.kill()?;
    /// assert!(matches!(p.join(), Err(Error::ProcessDied { signal: Some(9), .. })));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn kill(&self) -> Result<()> {
        self.pool.send_scheduler(SchedMsg::KillProcess {
            index: self.index,
            gen: self.gen,
        })
    }

    /// The latest `(done, total)` the process reported with
    /// [`Ctx::progress`](crate::Ctx::progress), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let p = pool.fork_with((), |_: &(), ctx: &Ctx| {
    ///     ctx.progress(5, 5);
    ///     std::thread::sleep(std::time::Duration::from_millis(200));
    /// })?;
    /// while p.progress().is_none() {
    ///     std::thread::sleep(std::time::Duration::from_millis(1));
    /// }
    /// assert_eq!(p.progress(), Some((5, 5)));
    /// p.join()?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn progress(&self) -> Option<(u64, u64)> {
        let slot = self.slot();
        let total = slot.progress_total.load(Ordering::Relaxed);
        (slot.state_of(self.gen).is_some() && total > 0)
            .then(|| (slot.progress_done.load(Ordering::Relaxed), total))
    }

    /// Waits until the scheduler has forked the process (RUNNING, or already ended).
    fn wait_started(&self) -> Result<()> {
        let slot = self.slot();
        let deadline = Instant::now() + FORK_LIMIT;
        loop {
            let step = (Instant::now() + LIVENESS_STEP).min(deadline);
            let seen = slot
                .event
                .wait_until(self.pool.waiter_spin(), Some(step), || {
                    match slot.state_of(self.gen) {
                        Some(ProcState::Starting | ProcState::Dying) => None,
                        s => Some(s),
                    }
                });
            match seen {
                Some(Some(ProcState::Died)) => {
                    let errno = slot.fork_errno.load(Ordering::Relaxed);
                    if errno == 0 {
                        return Ok(()); // it ran and died: the join reports it
                    }
                    if slot.transition(self.gen, ProcState::Died, ProcState::Joined) {
                        self.free_blocks(slot);
                        slot.release(self.gen, ProcState::Joined);
                    }
                    return Err(Error::io(
                        "fork of an explicit process",
                        std::io::Error::from_raw_os_error(errno),
                    ));
                }
                Some(Some(_)) => return Ok(()),
                Some(None) => {
                    return Err(Error::Corrupted {
                        what: "an explicit process's record was overwritten".into(),
                    })
                }
                None => {}
            }
            // If the record moved on meanwhile (`abandon` fails), look again.
            if (!self.pool.scheduler_alive() || Instant::now() >= deadline) && self.abandon() {
                return Err(Error::PoolShutDown {
                    reason: "the scheduler did not fork the explicit process".into(),
                });
            }
        }
    }

    /// Gives up a STARTING record (the fork was never answered): frees the argument and
    /// the record. False if the record had moved on.
    fn abandon(&self) -> bool {
        let slot = self.slot();
        if !slot.transition(self.gen, ProcState::Starting, ProcState::Joined) {
            return false;
        }
        self.free_blocks(slot);
        slot.release(self.gen, ProcState::Joined);
        true
    }

    fn free_blocks(&self, slot: &ProcSlot) {
        // A reference a scribbler broke is refused by `free_raw` (then it stays).
        for r in [&slot.args, &slot.result] {
            if let Some(raw) = r.take(&self.pool.mempool) {
                let _ = self.pool.mempool.free_raw(raw);
            }
        }
    }

    /// Waits (until `deadline`) for the end, then takes the outcome.
    fn join_until(&self, deadline: Option<Instant>) -> Option<Result<R>> {
        let slot = self.slot();
        let gone = || Error::AlreadyJoined { process: self.gen };
        if slot.state_of(self.gen) == Some(ProcState::Running)
            && slot.pid.load(Ordering::Relaxed) == crate::sys::process::cached_pid()
        {
            return Some(Err(Error::config(
                "an explicit process cannot join itself (it would wait forever)",
            )));
        }
        let ended = loop {
            let step = Instant::now() + LIVENESS_STEP;
            let until = deadline.map_or(step, |d| d.min(step));
            let seen = slot
                .event
                .wait_until(self.pool.waiter_spin(), Some(until), || {
                    match slot.state_of(self.gen) {
                        Some(ProcState::Starting | ProcState::Running | ProcState::Dying) => None,
                        s => Some(s),
                    }
                });
            match seen {
                Some(Some(s)) if s.has_ended() => break s,
                Some(Some(ProcState::Corrupt)) => {
                    return Some(Err(Error::Corrupted {
                        what: "an explicit process's record was overwritten".into(),
                    }))
                }
                Some(_) => return Some(Err(gone())),
                None => {}
            }
            if !self.pool.scheduler_alive() {
                return Some(Err(Error::PoolShutDown {
                    reason: "the scheduler process died, and the explicit process with it".into(),
                }));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
        };
        // Exactly once: the CAS to JOINED picks the one joiner that takes the outcome.
        if !slot.transition(self.gen, ended, ProcState::Joined) {
            return Some(Err(gone()));
        }
        let r = self.outcome(slot, ended);
        self.free_blocks(slot);
        slot.release(self.gen, ProcState::Joined);
        Some(r)
    }

    /// The outcome of an ended process whose record we hold JOINED.
    fn outcome(&self, slot: &ProcSlot, ended: ProcState) -> Result<R> {
        if ended == ProcState::Died {
            let (signal, exit_code) = slot.death();
            return Err(Error::ProcessDied {
                process: self.gen,
                pid: slot.pid.load(Ordering::Relaxed),
                signal,
                exit_code,
            });
        }
        let mempool = &self.pool.mempool;
        let requested = slot.oom_requested.load(Ordering::Relaxed);
        if requested > 0 {
            return Err(Error::OutOfMemory {
                requested: requested as usize,
                available: 0,
                capacity: mempool.capacity(),
            });
        }
        let raw = slot
            .result
            .take(mempool)
            .ok_or_else(|| Error::descriptor("the process left no result block"))?;
        let block = mempool.adopt(raw)?;
        let outcome: Outcome<R> =
            bincode::deserialize(block.as_bytes()).map_err(|e| Error::Malformed {
                reason: format!("the process's result: {e}"),
            })?;
        match outcome {
            Outcome::Value(v) => Ok(v),
            Outcome::Panicked(message) => Err(Error::ProcessPanicked {
                process: self.gen,
                message,
            }),
            Outcome::Setup(reason) => Err(Error::InvalidDescriptor { reason }),
        }
    }
}

/// The plain-data descriptor of a [`Process`]: `Copy`, serde, valid in every process of
/// the pool's tree. [`open`](ProcessDesc::open) it into a handle to join the process
/// (the result is handed over once, to the first join; see [`Process`]).
///
/// # Examples
///
/// ```
/// use procyon::{Ctx, Pool, ProcessDesc};
///
/// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
/// let worker = pool.fork_with(4u64, |n: &u64, _: &Ctx| n * 10)?;
/// // Another explicit process joins the first one through its descriptor.
/// let joiner = pool.fork_with(worker.desc(), |d: &ProcessDesc<u64>, ctx: &Ctx| {
///     // An `Error` is not serde: it travels back as text.
///     d.open(ctx).and_then(|p| p.join()).map(|v| v + 2).map_err(|e| e.to_string())
/// })?;
/// assert_eq!(joiner.join()?, Ok(42));
/// # Ok::<(), procyon::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
pub struct ProcessDesc<R> {
    pool_id: u64,
    index: u32,
    gen: u64,
    #[serde(skip)]
    _result: PhantomData<fn() -> R>,
}

impl<R> Clone for ProcessDesc<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for ProcessDesc<R> {}

impl<R> fmt::Debug for ProcessDesc<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessDesc")
            .field("pool_id", &self.pool_id)
            .field("number", &self.gen)
            .finish()
    }
}

impl<R: DeserializeOwned> ProcessDesc<R> {
    /// A handle to the process, in `pool` (the client's [`Pool`], or a task's
    /// [`Ctx`](crate::Ctx), which dereferences to one).
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if the descriptor names another pool, no record, or
    /// a process with another result type; [`Error::AlreadyJoined`] if the process was
    /// joined already (its record may since hold another process).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Error, Pool};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let p = pool.fork_with((), |_: &(), _: &Ctx| 1u32)?;
    /// let d = p.desc();
    /// let wrong: procyon::ProcessDesc<String> = bincode::deserialize(&bincode::serialize(&d).unwrap()).unwrap();
    /// assert!(matches!(wrong.open(&pool), Err(Error::InvalidDescriptor { .. })));
    /// assert_eq!(d.open(&pool)?.join()?, 1);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn open(&self, pool: &Pool) -> Result<Process<R>> {
        let inner = pool.inner();
        if self.pool_id != inner.mempool.id() {
            return Err(Error::descriptor(format!(
                "the process belongs to pool {:#x}, not to this one ({:#x})",
                self.pool_id,
                inner.mempool.id()
            )));
        }
        let slot = ProcTable::of(&inner.control)
            .slot(self.index as usize)
            .ok_or_else(|| Error::descriptor("no such process record"))?;
        match slot.state_of(self.gen) {
            Some(ProcState::Running | ProcState::Dying | ProcState::Done | ProcState::Died) => {}
            Some(ProcState::Starting) => {
                return Err(Error::descriptor("the process is still being forked"))
            }
            _ => return Err(Error::AlreadyJoined { process: self.gen }),
        }
        // Relaxed: written in STARTING, published by the child's (or the scheduler's)
        // transition we just loaded with Acquire.
        if slot.type_tag.load(Ordering::Relaxed) != type_tag::<R>() {
            return Err(Error::descriptor(format!(
                "the process does not return a {}",
                std::any::type_name::<R>()
            )));
        }
        Ok(Process {
            pool: Arc::clone(inner),
            index: self.index,
            gen: self.gen,
            _result: PhantomData,
        })
    }

    /// A number identifying the process in its pool (as [`Process::number`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Ctx, Pool};
    ///
    /// let pool = Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let p = pool.fork_with((), |_: &(), _: &Ctx| ())?;
    /// assert_eq!(p.desc().number(), p.number());
    /// p.join()?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn number(&self) -> u64 {
        self.gen
    }
}
