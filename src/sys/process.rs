//! Processes: fork, wait, kill, parent-death signal.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

fn io_err(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Which side of a [`fork`] we are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fork {
    /// The original process; holds the child's pid.
    Parent(i32),
    /// The new process.
    Child,
}

/// Forks the calling process.
///
/// # Safety
/// In a multi-threaded process only the calling thread exists in the child, and any lock
/// another thread held at the time stays locked there. Until it calls `exec` or exits, the
/// child must only use state that no other thread could have held (glibc's `malloc` is
/// made fork-safe by glibc itself; Rust's stdout/stderr locks, the environment lock and
/// user locks are not).
pub(crate) unsafe fn fork() -> io::Result<Fork> {
    // SAFETY: forwarded to the caller, see `# Safety`.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Fork::Parent(child.as_raw())),
        Ok(nix::unistd::ForkResult::Child) => Ok(Fork::Child),
        Err(e) => Err(io_err(e)),
    }
}

/// Forks a child that is tied to the calling process: in the child, before anything else
/// (no lock taken, nothing allocated), it asks for SIGKILL when its parent goes
/// (`PR_SET_PDEATHSIG`) and checks that its parent is still the process that forked it,
/// exiting at once if not (the parent died before the death signal was armed).
///
/// Linux sends the parent-death signal when the parent *thread* that forked ends, not the
/// parent process: a child forked from a short-lived thread dies with that thread.
///
/// # Safety
/// As [`fork`].
pub(crate) unsafe fn fork_tied() -> io::Result<Fork> {
    let parent = getpid();
    // SAFETY: forwarded to the caller, see `# Safety`.
    match unsafe { fork() }? {
        Fork::Child => {
            // Both calls are raw system calls: no lock, no allocation.
            if set_parent_death_signal(libc::SIGKILL).is_err() || getppid() != parent {
                exit_now(0);
            }
            Ok(Fork::Child)
        }
        parent_side => Ok(parent_side),
    }
}

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It called `exit`/`_exit` with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

fn exit_of(status: WaitStatus) -> Option<(i32, Exit)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), Exit::Code(code))),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), Exit::Signal(sig as i32))),
        _ => None,
    }
}

/// Blocks until child `pid` ends and reaps it. `EINTR` is retried.
pub(crate) fn wait_blocking(pid: i32) -> io::Result<Exit> {
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(pid), None) {
            Ok(status) => {
                if let Some((_, exit)) = exit_of(status) {
                    return Ok(exit);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Reaps child `pid` if it has ended; `Ok(None)` while it runs.
pub(crate) fn try_wait(pid: i32) -> io::Result<Option<Exit>> {
    match nix::sys::wait::waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(status) => Ok(exit_of(status).map(|(_, e)| e)),
        Err(e) => Err(io_err(e)),
    }
}

/// Reaps any one ended child of this process: `Ok(None)` if none has ended (or none
/// exists).
pub(crate) fn try_wait_any() -> io::Result<Option<(i32, Exit)>> {
    match nix::sys::wait::waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
        Ok(status) => Ok(exit_of(status)),
        Err(nix::errno::Errno::ECHILD) => Ok(None),
        Err(e) => Err(io_err(e)),
    }
}

/// Sends signal `sig` (a `libc::SIG*` number) to process `pid`.
pub(crate) fn kill(pid: i32, sig: i32) -> io::Result<()> {
    let signal = Signal::try_from(sig).map_err(io_err)?;
    nix::sys::signal::kill(Pid::from_raw(pid), signal).map_err(io_err)
}

/// Whether process `pid` exists and has not yet exited (a zombie counts as exited).
pub(crate) fn is_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(Pid::from_raw(pid), None) {
        Err(nix::errno::Errno::ESRCH) => false,
        // EPERM: it exists but belongs to someone else; treat as alive.
        Err(_) => true,
        Ok(()) => !is_zombie(pid),
    }
}

fn is_zombie(pid: i32) -> bool {
    // /proc/<pid>/stat: "pid (comm) S ..."; the state follows the last ')'.
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat.iter().rposition(|&b| b == b')') {
            Some(i) => matches!(stat.get(i + 2), Some(b'Z') | Some(b'X')),
            None => false,
        },
        // Gone since `kill` found it (reaped): exited. Any other error (no /proc, a
        // sandbox) says nothing about the process, which `kill` saw: not a zombie, since
        // callers take "exited" as leave to reclaim what the process holds.
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Asks the kernel to send `sig` to this process when its parent *thread* dies.
pub(crate) fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    let signal = Signal::try_from(sig).map_err(io_err)?;
    nix::sys::prctl::set_pdeathsig(Some(signal)).map_err(io_err)
}

/// Sets signal `sig` to be ignored (`SIG_IGN`; kept across `exec`).
pub(crate) fn ignore_signal(sig: i32) -> io::Result<()> {
    let signal = Signal::try_from(sig).map_err(io_err)?;
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigIgn) }
        .map(|_| ())
        .map_err(io_err)
}

/// The pid of this process.
pub(crate) fn getpid() -> i32 {
    nix::unistd::getpid().as_raw()
}

/// The pid of this process's parent (1 or a subreaper once the parent died).
pub(crate) fn getppid() -> i32 {
    nix::unistd::getppid().as_raw()
}

/// Ends the calling process at once with `code`, running no destructors, atexit handlers
/// or stdio flushes (the right way for a forked child to end).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// Nanoseconds of `CLOCK_MONOTONIC`: one clock for every process of the machine, so a
/// time one process writes to shared memory means the same to the others (an `Instant`
/// cannot travel). Read through the vDSO, no system call.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPUs this process may run on (affinity and cgroup quota included), read once: the
/// same count `PoolBuilder`'s default number of workers comes from.
pub(crate) fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(num_cpus::get)
}

/// The CPU the calling thread runs on now (it may move right after), `None` where the
/// system cannot tell. A vDSO read on Linux: a few nanoseconds, no system call.
pub(crate) fn current_cpu() -> Option<u32> {
    nix::sched::sched_getcpu().ok().map(|c| c as u32)
}

/// A thread moved off a CPU by [`leave_cpu`]: its CPU mask before and since. Not
/// `Send`: [`Moved::restore`] sets the calling thread's mask, which must be the thread
/// that moved.
pub(crate) struct Moved {
    before: CpuSet,
    since: CpuSet,
    _this_thread: std::marker::PhantomData<*const ()>,
}

/// Moves the calling thread off CPU `cpu` by taking `cpu` out of the thread's CPU mask
/// (the kernel migrates a thread off a CPU its mask no longer holds before the call
/// returns). `None`, and nothing changed, if the mask does not hold `cpu`, holds
/// nothing else, or the system refuses.
pub(crate) fn leave_cpu(cpu: u32) -> Option<Moved> {
    let me = Pid::from_raw(0);
    let before = sched_getaffinity(me).ok()?;
    let cpu = cpu as usize;
    if !before.is_set(cpu).unwrap_or(false) {
        return None;
    }
    let mut since = before;
    since.unset(cpu).ok()?;
    // Another CPU to go to.
    cpus_in(&since).next()?;
    sched_setaffinity(me, &since).ok()?;
    Some(Moved {
        before,
        since,
        _this_thread: std::marker::PhantomData,
    })
}

/// The CPUs in `mask`, in order.
fn cpus_in(mask: &CpuSet) -> impl Iterator<Item = usize> + '_ {
    (0..CpuSet::count()).filter(|&c| mask.is_set(c).unwrap_or(false))
}

/// The CPUs the calling thread may run on (for tests that move threads).
#[cfg(test)]
pub(crate) fn allowed_cpus() -> Vec<usize> {
    cpus_in(&sched_getaffinity(Pid::from_raw(0)).unwrap()).collect()
}

/// Lets the calling thread run on `cpu` only (for tests that move threads).
#[cfg(test)]
pub(crate) fn pin_to(cpu: usize) {
    let mut one = CpuSet::new();
    one.set(cpu).unwrap();
    sched_setaffinity(Pid::from_raw(0), &one).unwrap();
}

impl Moved {
    /// Gives the calling thread back the mask it had before [`leave_cpu`], unless its
    /// mask has changed since (another thread set it: that one stands).
    pub(crate) fn restore(self) {
        let me = Pid::from_raw(0);
        if sched_getaffinity(me).is_ok_and(|now| now == self.since) {
            // A failure (a cpuset shrunk meanwhile) leaves the narrower mask, which is
            // still one the thread may run with.
            let _ = sched_setaffinity(me, &self.before);
        }
    }
}

/// Largest allocation the C allocator serves from its heap once [`keep_freed_heap`] ran
/// (glibc's own ceiling for this threshold); larger ones are mapped and unmapped apart.
const HEAP_ALLOC_MAX: usize = 32 << 20;
/// Free memory at the top of the heap that the C allocator keeps rather than returns to
/// the kernel, once [`keep_freed_heap`] ran.
const HEAP_KEEP: usize = 64 << 20;

/// Tells glibc's allocator to keep the memory a worker frees for its next job instead
/// of returning it to the kernel at once: allocations up to [`HEAP_ALLOC_MAX`] come from
/// the heap, and up to [`HEAP_KEEP`] of free memory stays at its top.
///
/// glibc maps each allocation past its threshold apart (128 KiB at first, raised to the
/// size of such a block when one is freed) and gives free memory at the heap's top back
/// to the kernel past twice that threshold. A job that keeps several large vectors alive
/// at once (a `collect_vec` keeps one per chunk until the job ends) frees more than twice
/// the largest of them at its end, so its worker gave the pages back and took each one as
/// a fresh page fault in the next job: three 4 MiB vectors per job cost 3,040 faults a
/// job, none with these thresholds (tests/worker_heap.rs). Whether a real job hits
/// this depends on the order in which its blocks were freed: 2,000 `collect_vec`s of
/// 100,000 pairs on 2 workers (all processes counted, 2026-12-07) took, without these
/// thresholds, 96,765 page faults in one launch (1.28 s) and 3,671 / 214,499 / 3,989
/// (2.11 / 3.08 / 2.28 s) in three later ones; with them 3,382 (1.02 s), then 3,387 /
/// 3,356 / 3,364 (2.01 / 2.23 / 2.02 s), the later launches alternated with the ones
/// without. A worker then holds the
/// most heap any one job needed plus [`HEAP_KEEP`]. Elsewhere than glibc this does
/// nothing (a program's own `#[global_allocator]` is not glibc's either).
pub(crate) fn keep_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets two of the allocator's thresholds; called at a
    // worker's start, before its jobs allocate. A refusal (0) leaves glibc's defaults,
    // which are correct, only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_ALLOC_MAX as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, HEAP_KEEP as libc::c_int);
    }
}

/// This process's pid, cached (0: not known yet). `getpid` is a real system call (about
/// 165 ns on the reference VM), which every camlbox send and every block's ownership check
/// would otherwise pay.
static PID: AtomicI32 = AtomicI32::new(0);
/// Whether the atfork handler that resets [`PID`] in children is in place.
static RESET_ON_FORK: AtomicBool = AtomicBool::new(false);
static REGISTER: Once = Once::new();

extern "C" fn forget_pid() {
    // Relaxed: runs in the child's only thread, before `fork` returns there.
    PID.store(0, Ordering::Relaxed);
}

/// Installs the `pthread_atfork` child handler that clears the cached pid. Called when a
/// sender is made, so before any send can fill the cache, and never from a signal handler.
pub(crate) fn register_pid_cache() {
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic (async-signal-safe, as
        // atfork child handlers must be).
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
        // Relaxed: read on this process's send paths; if another thread races past the
        // `Once` with `false`, it merely skips the cache.
        RESET_ON_FORK.store(rc == 0, Ordering::Relaxed);
    });
}

/// This process's pid, from the cache when [`register_pid_cache`] has run (camlbox
/// writer ids, block owners). Async-signal-safe: an atomic load, or `getpid` and a store.
///
/// A process made by a raw `clone`/`SYS_fork` (skipping atfork handlers) would record its
/// parent's pid; its dead claims would then wait for the parent to die to be reclaimed.
/// procyon forks through libc's `fork`, which runs the handler.
pub(crate) fn cached_pid() -> i32 {
    // Relaxed: the pid is the same for every thread of the process; a stale 0 only costs a
    // `getpid`.
    let cached = PID.load(Ordering::Relaxed);
    if cached > 0 {
        return cached;
    }
    let pid = getpid();
    debug_assert!(pid > 0);
    if RESET_ON_FORK.load(Ordering::Relaxed) {
        PID.store(pid, Ordering::Relaxed);
    }
    pid
}

/// Whether the code at `addr` belongs to the main executable (not to a shared library):
/// the object `dladdr` finds for it is the one holding the program's entry point.
pub(crate) fn in_main_executable(addr: usize) -> bool {
    // SAFETY: getauxval has no preconditions; 0 means "not known".
    let entry = unsafe { libc::getauxval(libc::AT_ENTRY) } as usize;
    let base_of = |a: usize| {
        // SAFETY: an all-zero Dl_info is valid to be overwritten.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: dladdr only reads the loader's tables and writes into `info`.
        let found = unsafe { libc::dladdr(a as *const libc::c_void, &mut info) } != 0;
        found.then_some(info.dli_fbase as usize)
    };
    entry != 0 && base_of(entry).is_some_and(|b| Some(b) == base_of(addr))
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_leaves_its_cpu_and_gets_its_mask_back_unless_it_was_changed_meanwhile() {
        // A thread of its own: the test changes its affinity.
        std::thread::spawn(|| {
            let me = Pid::from_raw(0);
            let all = sched_getaffinity(me).unwrap();
            let cpus = allowed_cpus();
            let here = current_cpu().unwrap();
            if cpus.len() < 2 {
                assert!(leave_cpu(here).is_none(), "nowhere else to go");
                return;
            }
            let moved = leave_cpu(here).expect("another CPU is allowed");
            assert_ne!(current_cpu(), Some(here), "moved before the call returned");
            assert!(!allowed_cpus().contains(&(here as usize)));
            moved.restore();
            assert_eq!(sched_getaffinity(me).unwrap(), all);
            // A mask set by someone else while the thread was away stands.
            let left = current_cpu().unwrap() as usize;
            let moved = leave_cpu(left as u32).unwrap();
            pin_to(left);
            moved.restore();
            assert_eq!(allowed_cpus(), [left]);
            // Allowed on one CPU, or asked to leave one it may not run on: it stays.
            let elsewhere = *cpus.iter().find(|&&c| c != left).unwrap();
            assert!(leave_cpu(left as u32).is_none());
            assert!(leave_cpu(elsewhere as u32).is_none());
            assert_eq!(allowed_cpus(), [left]);
        })
        .join()
        .unwrap();
    }
}
