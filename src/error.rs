//! `procyon::Error`: every way a procyon call can fail, as a value.
//!
//! Each variant says what went wrong and, in its message, what to do about it. The
//! variants fall in four families:
//!
//! * **bad input**, detected before any work starts: [`Error::InvalidConfig`],
//!   [`Error::LengthMismatch`], [`Error::InvalidDescriptor`], [`Error::OutOfRange`],
//!   [`Error::MessageTooLarge`];
//! * **resources**: [`Error::OutOfMemory`] (the mempool is full), [`Error::Full`] (a
//!   camlbox has no free slot), [`Error::TooManyJobs`] (65,536 jobs in flight),
//!   [`Error::Io`] (a system call failed), [`Error::Corrupted`] (a task wrote over the
//!   mempool's bookkeeping);
//! * **peers**: [`Error::Disconnected`] (the receiving process is gone),
//!   [`Error::PoolShutDown`], [`Error::Malformed`] (a message could not be decoded);
//! * **task outcomes**: [`Error::TaskPanicked`], [`Error::WorkerDied`],
//!   [`Error::Cancelled`], [`Error::Timeout`];
//! * **shared state**: [`Error::Poisoned`] (a process died or panicked holding a
//!   [`sync::Mutex`](crate::sync::Mutex)).

use std::io;

/// The result type of every fallible procyon call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a procyon call.
///
/// Every variant's message says what to do about it. Failures of a task are values
/// ([`Error::TaskPanicked`], [`Error::WorkerDied`], [`Error::Cancelled`],
/// [`Error::Timeout`]); so is every bad input, which is refused before any work starts
/// and never panics, hangs or leaves a process behind.
///
/// # Bad input, and the variant it yields
///
/// | input | variant |
/// |---|---|
/// | `PoolBuilder::workers(0)` | [`Error::InvalidConfig`] |
/// | more than 256 workers (`workers(100_000)`) | [`Error::InvalidConfig`] |
/// | `mempool_size` below 1 MiB (`0`, `4096`) | [`Error::InvalidConfig`] |
/// | `mempool_size` above the physical memory or above 64 TiB | [`Error::InvalidConfig`] |
/// | `mempool_max` below `mempool_size`, above the physical memory or above 64 TiB; `Mempool::set_retention` above the capacity | [`Error::InvalidConfig`] |
/// | `slot_size` below 64 bytes (`slot_size(8)`) or above 16 MiB; a camlbox above 1 GiB | [`Error::InvalidConfig`] |
/// | `inbox_slots` below 2 or above 65,536 | [`Error::InvalidConfig`] |
/// | `min_len(0)`, `max_len(0)`, or `min_len` above `max_len` on the builder | [`Error::InvalidConfig`] |
/// | `with_min_len(0)` / `with_max_len(0)` on a parallel iterator (from its terminal operation) | [`Error::InvalidConfig`] |
/// | `par_chunks_mut` / `par_chunks` / `par_chunks_with` / `par_chunks_mut_reading` with a chunk length of 0 | [`Error::InvalidConfig`] |
/// | `Camlbox::new` with 0 slots or slots below 8 bytes; a second live receiver of a box | [`Error::InvalidConfig`] |
/// | `Mempool::alloc` alignment not a power of two, or above 1 GiB | [`Error::InvalidConfig`] |
/// | an array (or a `par_map` output, `par_map_vec`'s encoded items, a `par_sort`'s scratch array) larger than what the mempool has free and can grow to; a length whose byte size overflows | [`Error::OutOfMemory`] |
/// | any allocation or free after a task wrote over the mempool's block headers (the pool poisoned itself) | [`Error::Corrupted`] |
/// | `par_map_into` with input and output of different lengths | [`Error::LengthMismatch`] |
/// | an array of another pool passed to `par_map`, `par_map_into`, `par_chunks_mut`, `par_chunks`, `par_chunks_mut_reading`, `par_sort` (any form), `par_iter`, `SharedArray::adopt_in` | [`Error::InvalidDescriptor`] |
/// | a `par_sort_by` comparison found not to be a total order while merging | [`Error::TaskPanicked`] (the array's contents are then unspecified) |
/// | a descriptor of a freed array (`SharedArray::adopt` of a dropped array's `desc()`), even once its memory is reused | [`Error::InvalidDescriptor`] |
/// | a descriptor adopted twice, or adopted while its array is still owned (`desc()` instead of `into_desc()`) | [`Error::InvalidDescriptor`] |
/// | a forged descriptor (wrong generation, offset or length, unknown pool) or the wrong element type (`RawArrayDesc::typed`) | [`Error::InvalidDescriptor`] |
/// | `ArrayDesc::chunk` / `chunk_mut` of a range outside the array | [`Error::OutOfRange`] |
/// | a camlbox message larger than a slot | [`Error::MessageTooLarge`] |
/// | a job submitted to a pool whose scheduler died (SIGKILL): the first within the 100 ms liveness step, later ones at once | [`Error::PoolShutDown`] |
/// | `Ctx::report` while 4,096 reports of the job wait to be collected | [`Error::Full`] |
/// | a job submitted while 65,536 jobs (nested ones included) are in flight; the job table grows in the mempool up to that, so the mempool's own limit may come first | [`Error::TooManyJobs`] or [`Error::OutOfMemory`] |
/// | a fork-server build whose server cannot start, runs another image, or cannot map the pool at the client's addresses | [`Error::ForkServer`] |
/// | a descriptor of a freed or forged `sync` object or shared container, or opened as another type (`MutexDesc::open`, `SharedVecDesc::open`, ...) | [`Error::InvalidDescriptor`] |
/// | `Barrier::new` with 0 parties, `Semaphore::release` past `u32::MAX` permits, `SharedQueue::new` with capacity 0 | [`Error::InvalidConfig`] |
/// | `SharedVec::get` / `set` / `SharedBuffer::read` past the end | [`Error::OutOfRange`] |
/// | a `sync::Mutex` locked again by the thread that holds it | [`Error::Io`] (`EDEADLK`), never a hang |
/// | a second join of an explicit process (`Process::join` after another join took the result), or opening its descriptor afterwards | [`Error::AlreadyJoined`] |
/// | a `ProcessDesc` of another pool, or opened with another result type | [`Error::InvalidDescriptor`] |
/// | an explicit process joining itself | [`Error::InvalidConfig`], never a hang |
/// | `fork_with` while 256 explicit processes of the pool run or wait to be joined | [`Error::TooManyProcesses`] |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is unusable (zero workers, a mempool of zero bytes or larger
    /// than the machine, camlbox slots too small for control messages, chunk size 0, ...).
    #[error("invalid configuration: {what}")]
    InvalidConfig {
        /// Which value was wrong and what would be accepted.
        what: String,
    },

    /// The mempool cannot satisfy an allocation.
    #[error(
        "mempool out of memory: {requested} bytes requested, largest free block {available} bytes \
         of {capacity} (free arrays you no longer need, or build the pool with a larger mempool)"
    )]
    OutOfMemory {
        /// Bytes asked for.
        requested: usize,
        /// The largest request that could have been served right now.
        available: usize,
        /// The most the mempool can hold (its maximum, for a growable one).
        capacity: usize,
    },

    /// Two lengths that must agree do not (e.g. input and output of `par_map_into`).
    #[error("length mismatch: {what} (expected {expected}, got {actual})")]
    LengthMismatch {
        /// Which lengths.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        actual: usize,
    },

    /// A shared-array descriptor does not name a live array of this element type in a
    /// mempool of this process tree.
    #[error("invalid array descriptor: {reason}")]
    InvalidDescriptor {
        /// Why the descriptor was rejected.
        reason: String,
    },

    /// An index range lies outside the array it addresses.
    #[error("range {start}..{end} out of bounds for length {len}")]
    OutOfRange {
        /// Start of the requested range.
        start: usize,
        /// End of the requested range.
        end: usize,
        /// Length of the array.
        len: usize,
    },

    /// A message does not fit in a camlbox slot.
    #[error("message of {size} bytes exceeds the camlbox slot size of {max} bytes (send large data in a SharedArray and pass its descriptor)")]
    MessageTooLarge {
        /// Encoded size of the message.
        size: usize,
        /// Largest message a slot holds.
        max: usize,
    },

    /// More jobs (nested ones included) are in flight at once than a pool can track.
    ///
    /// The job table grows in the mempool as needed, up to `limit` jobs; the error comes
    /// at once, and the pool stays usable: wait for (or drop) some outstanding handles
    /// and submit again.
    #[error(
        "{limit} jobs are in flight, the most a pool tracks at once: wait for or drop some \
         outstanding job handles before submitting more"
    )]
    TooManyJobs {
        /// Most jobs in flight at once.
        limit: usize,
    },

    /// A camlbox has no free slot (try again later, or use a blocking send).
    #[error("camlbox full: every slot is in use")]
    Full,

    /// The receiving side of a camlbox (or the process it belongs to) is gone.
    #[error("disconnected: the receiving process is gone")]
    Disconnected,

    /// A message in a camlbox could not be decoded; the message was dropped.
    #[error("malformed message dropped: {reason}")]
    Malformed {
        /// What was wrong with it.
        reason: String,
    },

    /// The pool was shut down, or its scheduler process died; build a new pool.
    #[error("the pool is shut down ({reason}); build a new pool")]
    PoolShutDown {
        /// Why the pool stopped.
        reason: String,
    },

    /// A task panicked; the message is the panic payload's text.
    #[error("task panicked in job {job}: {message}")]
    TaskPanicked {
        /// The panic message.
        message: String,
        /// The job the task belonged to.
        job: u64,
    },

    /// A worker process died while running a task of the job (abort, segfault, OOM kill,
    /// SIGKILL from outside). The worker has been replaced.
    #[error("worker process {pid} died running job {job}: {}", describe_death(*.signal, *.exit_code))]
    WorkerDied {
        /// The signal that killed it, if any.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        exit_code: Option<i32>,
        /// Its pid.
        pid: i32,
        /// The job it was running.
        job: u64,
    },

    /// The job was cancelled.
    #[error("job cancelled")]
    Cancelled,

    /// The function of an explicit process ([`Pool::fork_with`](crate::Pool::fork_with))
    /// panicked; the message is the panic payload's text.
    #[error("explicit process {process} panicked: {message}")]
    ProcessPanicked {
        /// The panic message.
        message: String,
        /// The process's number ([`Process::number`](crate::Process::number)).
        process: u64,
    },

    /// An explicit process died before it returned (abort, segfault, SIGKILL from
    /// outside or from [`Process::kill`](crate::Process::kill), a call to `exit`).
    #[error("explicit process {process} (pid {pid}) died: {}", describe_death(*.signal, *.exit_code))]
    ProcessDied {
        /// The process's number ([`Process::number`](crate::Process::number)).
        process: u64,
        /// Its pid (0 if it died before recording it).
        pid: i32,
        /// The signal that killed it, if any.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        exit_code: Option<i32>,
    },

    /// An explicit process was joined already: its result is handed over once, to the
    /// first join (through any handle or descriptor).
    #[error(
        "explicit process {process} was joined already (its result goes to the first join \
         only): keep the value the first join returned"
    )]
    AlreadyJoined {
        /// The process's number.
        process: u64,
    },

    /// A pool holds at most `limit` explicit processes at once, running or ended and not
    /// yet joined.
    #[error(
        "{limit} explicit processes of this pool are running or wait to be joined: join \
         some before forking more"
    )]
    TooManyProcesses {
        /// Most explicit processes at once.
        limit: usize,
    },

    /// A wait ran out of time: a job ran past its time limit (`job` names it; its
    /// workers were stopped as by a cancel), or a camlbox send or receive with a
    /// timeout found no room or no message (`job` is `None`).
    #[error("{}", describe_timeout(*.job, *.limit))]
    Timeout {
        /// The job that ran out of time, if the limit was a job's.
        job: Option<u64>,
        /// The limit that passed.
        limit: std::time::Duration,
    },

    /// The fork server (see [`StartMode::ForkServer`](crate::StartMode::ForkServer))
    /// could not start the pool's processes: it could not be started, died, runs another
    /// executable image than the client, or could not map the pool's memory.
    #[error(
        "the fork server could not start the pool: {reason}; build with \
             PoolBuilder::start_mode(StartMode::Fork) to fork from the caller instead"
    )]
    ForkServer {
        /// What went wrong.
        reason: String,
    },

    /// A rank of an MPI cluster (feature `mpi`, `procyon::cluster`) runs another build of
    /// the program than rank 0: its image fingerprint or executable hash differs, so task
    /// ids from rank 0 would name other code there. Found when the cluster starts, on
    /// every rank, before any job runs.
    #[error(
        "cluster rank {rank} runs a different build than rank 0 ({detail}); start every \
         rank from the same executable (copy the one binary to every host)"
    )]
    BuildMismatch {
        /// The first rank found to differ.
        rank: i32,
        /// What differs.
        detail: String,
    },

    /// A rank of an MPI cluster (feature `mpi`) failed a job's work (`reason` holds its
    /// error), went silent for longer than the cluster's silence limit (it died or hangs;
    /// the cluster is then unusable), or could not start its local pool.
    #[error("cluster rank {rank} failed: {reason}")]
    RankFailed {
        /// The rank.
        rank: i32,
        /// What happened there.
        reason: String,
    },

    /// A process died (even by SIGKILL), or a task panicked, while holding a
    /// [`sync::Mutex`](crate::sync::Mutex): the value it guards may be half-updated.
    /// This is what a `LockError::Poisoned` becomes through `?`.
    #[error(
        "{what}: a process died or panicked while holding its lock, so the value may be \
         half-updated; take the guard from LockError::Poisoned, repair the value and call \
         MutexGuard::mark_consistent"
    )]
    Poisoned {
        /// What was poisoned.
        what: &'static str,
    },

    /// A party of a [`sync::Barrier`](crate::sync::Barrier) died before arriving (its
    /// process is gone, and it had waited at the barrier before): the round can never
    /// complete. The barrier stays broken; build a new one for the parties left.
    #[error(
        "barrier broken: party process {pid} died before arriving, so the round can never \
         complete; build a new Barrier for the parties left"
    )]
    BarrierBroken {
        /// The pid of the dead party.
        pid: i32,
    },

    /// The mempool's own bookkeeping (a block header, a free-list link) was found
    /// overwritten, by a task writing where it should not. The pool is poisoned: every
    /// later allocation fails with this error and frees are refused without touching
    /// memory. Drop the pool and build a new one (see docs/THREAT_MODEL.md).
    #[error(
        "the mempool is corrupted ({what}): a task wrote over its bookkeeping; drop this \
         pool and build a new one"
    )]
    Corrupted {
        /// What was found broken, and where.
        what: String,
    },

    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What procyon was doing.
        context: &'static str,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
}

fn describe_timeout(job: Option<u64>, limit: std::time::Duration) -> String {
    match job {
        Some(job) => format!(
            "job {job} ran past its time limit of {limit:?} and was stopped (raise the limit \
             with `timeout` / `with_timeout` / `PoolBuilder::job_timeout`, or split the work)"
        ),
        None => format!("timed out after {limit:?}"),
    }
}

fn describe_death(signal: Option<i32>, exit_code: Option<i32>) -> String {
    match (signal, exit_code) {
        (Some(sig), _) => format!("killed by signal {sig} ({})", signal_name(sig)),
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => "vanished".to_string(),
    }
}

/// The conventional name of a signal number (`"SIGKILL"`), or `"unknown signal"`.
pub(crate) fn signal_name(sig: i32) -> &'static str {
    nix::sys::signal::Signal::try_from(sig).map_or("unknown signal", |s| s.as_str())
}

impl Error {
    /// Wraps an OS error with what procyon was doing when it happened.
    pub(crate) fn io(context: &'static str, source: io::Error) -> Self {
        Error::Io { context, source }
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub(crate) fn config(what: impl Into<String>) -> Self {
        Error::InvalidConfig { what: what.into() }
    }

    /// Shorthand for [`Error::InvalidDescriptor`].
    pub(crate) fn descriptor(reason: impl Into<String>) -> Self {
        Error::InvalidDescriptor {
            reason: reason.into(),
        }
    }
}
