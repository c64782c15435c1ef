//! Starting a pool's scheduler the way its [`StartMode`] says, and watching it end.

use std::time::{Duration, Instant};

use super::builder::StartMode;
use crate::camlbox::Camlbox;
use crate::scheduler::{scheduler_main, SchedulerSetup};
use crate::server::{self, Remote};
use crate::space::Backing;
use crate::sys::process::{self, Fork};
use crate::{Error, Result};

/// How the pool's shared memory must be backed for `mode`.
pub(crate) fn backing(mode: StartMode) -> Backing {
    match mode {
        StartMode::Fork => Backing::Anonymous,
        StartMode::ForkServer => Backing::Memfd,
    }
}

/// The scheduler process, as the client sees it.
pub(crate) enum SchedulerProc {
    /// Forked by the client: its child.
    Child(i32),
    /// Forked by the fork server: watched through a pidfd.
    Remote(Remote),
}

impl SchedulerProc {
    pub(crate) fn pid(&self) -> i32 {
        match self {
            SchedulerProc::Child(pid) => *pid,
            SchedulerProc::Remote(r) => r.pid,
        }
    }

    pub(crate) fn alive(&self) -> bool {
        match self {
            SchedulerProc::Child(pid) => process::is_alive(*pid),
            SchedulerProc::Remote(r) => r.alive(),
        }
    }

    /// Waits (at most `limit`) for the scheduler to end, then SIGKILLs it and confirms it
    /// is gone (a child is reaped).
    pub(crate) fn end_within(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        match self {
            SchedulerProc::Child(pid) => loop {
                match process::try_wait(*pid) {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = process::kill(*pid, libc::SIGKILL);
                        let _ = process::wait_blocking(*pid);
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_micros(100)),
                }
            },
            SchedulerProc::Remote(r) => {
                if !r.wait_until(deadline) {
                    r.kill();
                    // SIGKILL ends it at once; the bound is only a safety net.
                    r.wait_until(Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }
}

/// Starts the scheduler that `setup` describes, as `setup.config.start_mode` says.
pub(crate) fn start_scheduler(
    setup: SchedulerSetup,
    control_offset: usize,
) -> Result<SchedulerProc> {
    match setup.config.start_mode {
        StartMode::Fork => match fork_scheduler()? {
            Fork::Child => scheduler_main(setup),
            Fork::Parent(pid) => Ok(SchedulerProc::Child(pid)),
        },
        StartMode::ForkServer => {
            server::keep_constructor();
            let boxes: Vec<&Camlbox> = vec![&setup.inbox];
            server::start_scheduler(&setup.mempool, control_offset, &boxes, &setup.config)
                .map(SchedulerProc::Remote)
        }
    }
}

/// Forks the scheduler from the calling client thread (see "Forking in a threaded
/// program" on [`Pool`](crate::Pool)).
fn fork_scheduler() -> Result<Fork> {
    use std::io::Write;
    // In the client, where the hook lock behaves (never in the child: `panic_hook`).
    crate::panic_hook::install();
    // Held across the fork, so that no other thread holds them at that instant: the child
    // inherits them held by its own (only) thread and releases them with these guards.
    // Flushed first, or the child would print the client's buffered output again.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.flush();
    let _stderr = std::io::stderr().lock();
    // SAFETY: the child runs only the scheduler, which takes no lock another thread of
    // ours could hold: stdout and stderr are ours (above), glibc resets its `malloc`
    // locks, the mempool registry's lock is taken around every fork (`pthread_atfork`),
    // and it never sets the panic hook, touches the environment or takes a user's lock.
    unsafe { process::fork_tied() }.map_err(|e| Error::io("fork of the scheduler", e))
}
