//! A pool whose processes share one CPU: the placement a launch may get by chance (a
//! forked worker starts on its parent's CPU and the kernel may leave it there), made
//! certain by pinning the client and every process of the pool to the client's CPU while
//! the pool still counts every CPU of the machine. Waiters that would spin on that CPU
//! must make way instead (`jobs::cpus`); these tests check that every kind of wait still
//! ends with the right answer there: a client's, an idle worker's, a nested job's owner's,
//! and several client threads at once. Every job carries a time limit, so a lost wake-up
//! fails the test instead of hanging it. A last test splits the pool over two CPUs, the
//! client beside one worker, so that the worker beside it watches the ends of its jobs
//! and wakes it from there (`jobs::watch`). The last two put a long task beside a
//! waiting client, and beside the async waiter thread, and see them sleep on the other
//! CPU (`jobs::cpus`).

mod common;

use std::time::Duration;

use common::affinity::{all_cpus, allowed_cpus, crowd_onto_this_cpu, current_cpu, set_affinity};
use common::procfs;
use common::tasks::tree;
use procyon::Pool;

/// A pool of `workers` whose jobs carry a time limit (a lost wake-up fails the test).
fn limited_pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .mempool_size(64 << 20)
        .job_timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A [`limited_pool`] with every process on the calling thread's CPU (the caller
/// restores its own affinity with `set_affinity(0, &all_cpus())`).
fn crowded_pool(workers: usize) -> Pool {
    let pool = limited_pool(workers);
    crowd_onto_this_cpu(&pool);
    pool
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
                let got = tree(&pool, depth).unwrap();
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

/// The client and worker 0 pinned to one CPU, worker 1 and the scheduler to another: the
/// client sleeps through each job (worker 0 needs its CPU), and whenever worker 0 runs
/// out of chunks first it watches the job's end and wakes the client itself, while the
/// finisher on the other CPU leaves the wake to it (`jobs::watch`). A wake-up lost between
/// the two would leave the client asleep until its wait's liveness step (100 ms): every
/// job must come back well before that.
#[test]
fn a_client_asleep_beside_a_worker_is_woken_at_each_end_whichever_worker_finishes() {
    if num_cpus::get() < 2 {
        return; // one CPU: nothing to split
    }
    common::no_leaks(|| {
        let pool = limited_pool(2);
        let here = current_cpu();
        let there = all_cpus().into_iter().find(|&c| c != here).unwrap();
        let (scheduler, workers) = pool.pids();
        set_affinity(0, &[here]);
        set_affinity(workers[0], &[here]);
        set_affinity(workers[1], &[there]);
        set_affinity(scheduler, &[there]);
        const N: u64 = 100_000;
        let mut slowest = Duration::ZERO;
        for round in 0..1_500u64 {
            let t = std::time::Instant::now();
            let got: u64 = pool
                .par_range(0..N)
                .map_with(round, |&r: &u64, v: u64| std::hint::black_box(v) + r)
                .sum()
                .unwrap();
            slowest = slowest.max(t.elapsed());
            assert_eq!(got, N * (N - 1) / 2 + N * round, "round {round}");
        }
        set_affinity(0, &all_cpus());
        assert!(
            slowest < Duration::from_millis(80),
            "a job took {slowest:?}: its client slept past the end (a lost wake-up)"
        );
    });
}

/// Where thread `tid` of this process last ran (where it sleeps, if it sleeps), and
/// whether it is running or runnable.
fn cpu_and_runnable(tid: i32) -> (usize, bool) {
    let f = procfs::of_thread(tid).expect("the thread is alive");
    (
        f[procfs::PROCESSOR].parse().unwrap(),
        f[procfs::STATE] == "R",
    )
}

/// A task spinning for `ms` milliseconds.
fn spin_for(&ms: &u64, _: &procyon::Ctx) {
    let end = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// A pool of 2 whose processes start on the calling thread's CPU (`here`, returned with
/// another, `there`), one worker running a task of a long job there for a second (the
/// handle is returned), the other, idle and asleep, moved to `there`.
fn long_task_here() -> (Pool, procyon::JobHandle<()>, usize, usize) {
    let pool = limited_pool(2);
    let here = current_cpu();
    let (scheduler, workers) = pool.pids();
    set_affinity(scheduler, &[here]);
    for &w in &workers {
        set_affinity(w, &[here]);
    }
    // In whichever worker takes it; the other goes back to sleep after its idle spin.
    let long = pool.spawn_with(1_000u64, spin_for).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let idle: Vec<i32> = workers
        .iter()
        .copied()
        .filter(|&w| !procfs::running(w))
        .collect();
    assert_eq!(idle.len(), 1, "one worker runs the long task, one is idle");
    let there = all_cpus().into_iter().find(|&c| c != here).unwrap();
    set_affinity(idle[0], &[there]);
    (pool, long, here, there)
}

/// The web server's case (W6b): a job submitted while a long one keeps a worker busy on
/// the client's own CPU. A client that slept there was woken there too, and waited
/// behind the long task for the rest of its time slice (milliseconds) with the other CPU
/// idle. It now sleeps elsewhere (`jobs::cpus`): seen from another thread in the middle
/// of its wait, it sleeps on another CPU, and once the wait has returned its CPU mask is
/// whole again.
#[test]
fn a_client_waiting_beside_another_jobs_task_sleeps_on_another_cpu() {
    if num_cpus::get() < 2 {
        return; // one CPU: nowhere to go
    }
    common::no_leaks(|| {
        let (pool, long, here, there) = long_task_here();
        // The client on the long task's CPU (as the kernel may leave it), free to move.
        set_affinity(0, &[here]);
        set_affinity(0, &all_cpus());
        // SAFETY: `gettid` has no preconditions.
        let tid = unsafe { libc::gettid() };
        let seen = std::thread::scope(|s| {
            let observer = s.spawn(|| {
                // Between the wait's 100 ms liveness steps, well inside the job.
                std::thread::sleep(Duration::from_millis(150));
                cpu_and_runnable(tid)
            });
            pool.spawn_with(300u64, spin_for)
                .and_then(|h| h.wait())
                .unwrap();
            observer.join().unwrap()
        });
        let after = allowed_cpus(0);
        long.wait().unwrap();
        set_affinity(0, &all_cpus());
        assert_eq!(
            seen,
            (there, false),
            "where the client slept (CPU, runnable) beside the long task on CPU {here}"
        );
        assert_eq!(
            after,
            all_cpus(),
            "the client's mask once its wait returned"
        );
    });
}

/// The thread of this process named `name`, if there is one.
fn thread_named(name: &str) -> Option<i32> {
    std::fs::read_dir("/proc/self/task").unwrap().find_map(|t| {
        let t = t.unwrap().file_name().into_string().unwrap();
        let comm = std::fs::read_to_string(format!("/proc/self/task/{t}/comm")).ok()?;
        (comm.trim_end() == name).then(|| t.parse().unwrap())
    })
}

/// As above for an awaited handle: the pool's async waiter thread, which sleeps until a
/// job ends and then wakes the future's task, does not sleep beside another job's task
/// either (`jobs::cpus`, `pool::waiter`).
#[test]
fn the_async_waiter_beside_another_jobs_task_sleeps_on_another_cpu() {
    if num_cpus::get() < 2 {
        return; // one CPU: nowhere to go
    }
    common::no_leaks(|| {
        let (pool, long, here, there) = long_task_here();
        // The waiter thread starts with its creator's CPU mask, here; once it sleeps, it
        // is let go everywhere, and it looks again at its next wake (its wait's liveness
        // step, 100 ms), still here, where the long task runs.
        set_affinity(0, &[here]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let seen = std::thread::scope(|s| {
            let observer = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(30));
                let tid = thread_named("procyon-waiter").expect("the waiter thread runs");
                set_affinity(tid, &all_cpus());
                std::thread::sleep(Duration::from_millis(120));
                cpu_and_runnable(tid)
            });
            rt.block_on(pool.spawn_with(300u64, spin_for).unwrap())
                .unwrap();
            observer.join().unwrap()
        });
        long.wait().unwrap();
        set_affinity(0, &all_cpus());
        assert_eq!(
            seen,
            (there, false),
            "where the waiter slept (CPU, runnable) beside the long task on CPU {here}"
        );
    });
}
