//! CPU affinity, for the tests and benchmarks that put every process of a pool on one
//! CPU (the placement a launch may get by chance, made certain). benches/engine.rs
//! includes this file with `#[path]`.
#![allow(dead_code)]

/// The CPU the calling thread runs on.
pub fn current_cpu() -> usize {
    // SAFETY: `sched_getcpu` has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    assert!(c >= 0, "sched_getcpu: {}", std::io::Error::last_os_error());
    c as usize
}

/// Every CPU of the machine (online), whatever the calling thread's affinity: not
/// `num_cpus::get()`, which counts the CPUs the thread may run on, so that restoring a
/// pinned thread with it would pin it again.
pub fn all_cpus() -> Vec<usize> {
    // SAFETY: `sysconf` has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    assert!(
        n >= 1,
        "sysconf(_SC_NPROCESSORS_ONLN): {}",
        std::io::Error::last_os_error()
    );
    (0..n as usize).collect()
}

/// Lets thread or process `pid` (0: the calling thread) run only on `cpus`.
pub fn set_affinity(pid: i32, cpus: &[usize]) {
    // SAFETY: an all-zero `cpu_set_t` is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        assert!(c < libc::CPU_SETSIZE as usize);
        // SAFETY: `c` is below CPU_SETSIZE (asserted), so the write stays inside `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid, initialized `cpu_set_t` of the size passed.
    let r = unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) };
    assert_eq!(
        r,
        0,
        "sched_setaffinity({pid}): {}",
        std::io::Error::last_os_error()
    );
}

/// The CPUs thread `tid` (0: the calling thread) may run on.
pub fn allowed_cpus(tid: i32) -> Vec<usize> {
    // SAFETY: an all-zero `cpu_set_t` is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed, written by the call.
    let r = unsafe { libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(
        r,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `c` is below CPU_SETSIZE, inside `set`.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread and every process of `pool` (scheduler, workers) to the
/// calling thread's CPU; returns that CPU. Undo the thread's part with
/// `set_affinity(0, &all_cpus())`.
pub fn crowd_onto_this_cpu(pool: &procyon::Pool) -> usize {
    let cpu = current_cpu();
    let (scheduler, workers) = pool.pids();
    for pid in std::iter::once(0).chain([scheduler]).chain(workers) {
        set_affinity(pid, &[cpu]);
    }
    cpu
}
