//! A pool whose processes share one CPU: the placement a launch may get by chance (a
//! forked worker starts on its parent's CPU and the kernel may leave it there), made
//! certain by pinning the client and every process of the pool to the client's CPU while
//! the pool still counts every CPU of the machine. Waiters that would spin on that CPU
//! must make way instead (`jobs::cpus`); these tests check that every kind of wait still
//! ends with the right answer there: a client's, an idle worker's, a nested job's owner's,
//! and several client threads at once. Every job carries a time limit, so a lost wake-up
//! fails the test instead of hanging it.

mod common;

use std::time::Duration;

use procyon::{Ctx, Pool};

/// The CPU the calling thread runs on.
fn current_cpu() -> usize {
    // SAFETY: `sched_getcpu` has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    assert!(c >= 0, "sched_getcpu: {}", std::io::Error::last_os_error());
    c as usize
}

/// Lets thread or process `pid` (0: the calling thread) run only on `cpus`.
fn set_affinity(pid: i32, cpus: &[usize]) {
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

/// A pool of `workers` with every process on the calling thread's CPU. The caller
/// restores its own affinity with `set_affinity(0, &all_cpus())`.
fn crowded_pool(workers: usize) -> Pool {
    let pool = Pool::builder()
        .workers(workers)
        .mempool_size(64 << 20)
        .job_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let cpu = current_cpu();
    let (scheduler, worker_pids) = pool.pids();
    for pid in std::iter::once(0).chain([scheduler]).chain(worker_pids) {
        set_affinity(pid, &[cpu]);
    }
    pool
}

fn all_cpus() -> Vec<usize> {
    (0..num_cpus::get()).collect()
}

/// A node at `depth` (0: a leaf) inside a worker: its children as one nested job, their
/// depth carried in the range's items (child `i` of `4(d-1)..4d` has depth `i / 4`).
fn node(ctx: &Ctx, depth: u64) -> u64 {
    if depth == 0 {
        return 1;
    }
    let lo = 4 * (depth - 1);
    ctx.par_range(lo..lo + 4)
        .with_max_len(1)
        .map_ctx(|ctx: &Ctx, i: u64| node(ctx, i / 4))
        .sum::<u64>()
        .expect("nested job")
}

#[test]
fn jobs_one_after_another_end_right_with_every_process_on_one_cpu() {
    if num_cpus::get() < 2 {
        return; // nothing to crowd: the pool sees one CPU and never spins on it
    }
    common::no_leaks(|| {
        for workers in [1, 2] {
            let pool = crowded_pool(workers);
            let expected: u64 = (0..16u64).map(|v| v * v + 1).sum();
            for round in 0..2_000 {
                let got: u64 = pool
                    .par_range(0..16u64)
                    .with_max_len(1 + round % 4)
                    .map(|v: u64| v * v + 1)
                    .sum()
                    .unwrap();
                assert_eq!(got, expected, "{workers} workers, round {round}");
            }
            for depth in 1..=4u64 {
                let lo = 4 * (depth - 1);
                let got: u64 = pool
                    .par_range(lo..lo + 4)
                    .with_max_len(1)
                    .map_ctx(|ctx: &Ctx, i: u64| node(ctx, i / 4))
                    .sum()
                    .unwrap();
                assert_eq!(
                    got,
                    4u64.pow(depth as u32),
                    "{workers} workers, depth {depth}"
                );
            }
            set_affinity(0, &all_cpus());
        }
    });
}

#[test]
fn client_threads_waiting_together_on_one_cpu_all_get_their_answers() {
    if num_cpus::get() < 2 {
        return; // as above
    }
    common::no_leaks(|| {
        let pool = crowded_pool(2);
        let cpu = current_cpu();
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..3u64)
                .map(|t| {
                    let pool = &pool;
                    s.spawn(move || {
                        set_affinity(0, &[cpu]);
                        for round in 0..500u64 {
                            let got: u64 = pool
                                .par_range(0..32u64)
                                .with_max_len(2)
                                .map_with((t, round), |&(t, r): &(u64, u64), v: u64| v + t + r)
                                .sum()
                                .unwrap();
                            assert_eq!(got, (0..32).map(|v| v + t + round).sum::<u64>());
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        });
        set_affinity(0, &all_cpus());
    });
}
