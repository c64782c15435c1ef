//! Explicit processes: Netmulticore's `def_process` / `start` / `join`, as
//! [`Pool::fork_with`](crate::Pool::fork_with), [`Process`] and [`ProcessDesc`].
//!
//! An explicit process runs one function, `f(&arg, &ctx)`, in a process of its own. It
//! is not a worker: the scheduler forks it on request, it appears in no worker row and
//! no job's run set, so no worker's `find_work` ever sees it, and however long it runs
//! the pool keeps all its workers for jobs. Inside it, `ctx` is a client of the pool: its
//! `par_map`, `par_iter`, `join`, `spawn` ... are top-level jobs it owns (the workers run
//! them while the process sleeps on their events, as a client thread would), and every
//! shared structure works through its descriptor.
//!
//! ```text
//!  forker (client, task, or explicit process)     scheduler                child
//!   claim a FREE record -> STARTING(g)
//!   write entry, type, argument block
//!   SchedMsg::Fork { index, g } ---------------> fork_tied()  -------------> pid, then
//!   sleep on the record's event                  track (pid, index, g)      STARTING -> RUNNING
//!   <------------------------------------------------------------------- notify
//!   return Process                                                         f(&arg, &ctx)
//!                                                                          result block,
//!   joiner (anyone with a descriptor)                                      RUNNING -> DONE,
//!   sleep until DONE or DIED                                               notify, _exit(0)
//!                                                 reaps it; if it ended
//!                                                 before DONE: -> DYING,
//!                                                 signal or exit code,
//!                                                 -> DIED, notify
//!   DONE|DIED -> JOINED (one CAS: one winner)
//!   decode the result, free both blocks, -> FREE
//! ```
//!
//! The record's states, and who writes which field when, are in [`slot`]'s docs.
//!
//! ## Why no wakeup is lost
//!
//! Every waiter (the forker waiting for RUNNING, joiners waiting for the end) sleeps on
//! the record's `futex::Event` with the state word as the condition it re-checks, and
//! every transition is made *before* the event is notified; by the `Event` protocol a
//! waiter either sees the new state or is woken. Waiters also wake every 100 ms to check
//! that the scheduler lives: if it died, the process died with it (parent-death signal)
//! and nothing would ever write DIED, so the wait ends with [`Error::PoolShutDown`].
//!
//! ## Deaths
//!
//! * The process dies (SIGKILL, abort, segfault, a call to `exit`): the scheduler reaps
//!   it, finds its record still STARTING or RUNNING, takes it to DYING, writes the pid
//!   and the signal or exit code and moves it to DIED; the join is [`Error::ProcessDied`]. A panic in `f` is caught in
//!   the process and handed over as [`Error::ProcessPanicked`] with its message. The
//!   jobs it had submitted have lost their owner: the scheduler cancels them and frees
//!   what they hold (as for any client process that dies).
//! * A joiner dies: between its winning CAS and the release the record stays JOINED
//!   (its blocks with it) until the pool goes; before it, another joiner may still join.
//! * The pool is dropped, or the client dies (even by SIGKILL): the scheduler SIGKILLs
//!   and reaps every explicit process as it goes, and each has a parent-death signal
//!   tied to the scheduler besides, so none outlives the pool.
//! * A joiner in a worker blocks that worker (as a task waiting on a queue does); if the
//!   joined process waits for jobs that need that worker, bound the join
//!   ([`Process::join_timeout`]).
//!
//! [`Error::PoolShutDown`]: crate::Error::PoolShutDown
//! [`Error::ProcessDied`]: crate::Error::ProcessDied
//! [`Error::ProcessPanicked`]: crate::Error::ProcessPanicked

mod child;
mod handle;
pub(crate) mod slot;
mod tracker;

pub use handle::{Process, ProcessDesc};
pub(crate) use tracker::Tracker;
