//! A mempool that grows (issue 15 item 4): a pool built with 64 MiB and no maximum holds a
//! 1 GiB array once its workers run, allocated while a job runs, read by the workers; a
//! maximum is an `OutOfMemory`, never a SIGBUS.

mod common;

use std::time::Duration;

use procyon::{Error, Pool, StartMode};

const MIB: usize = 1 << 20;

/// Sums one element per page of a chunk (the workers read the grown part of the heap).
fn sample(_offset: usize, chunk: &[u64]) -> u64 {
    chunk.iter().step_by(512).sum()
}

fn sleepy(ms: &u64, _: &procyon::Ctx) -> u64 {
    std::thread::sleep(Duration::from_millis(*ms));
    *ms
}

fn grows_while_jobs_run(mode: StartMode) {
    common::no_leaks(|| {
        let pool = Pool::builder()
            .workers(2)
            .mempool_size(64 * MIB)
            .start_mode(mode)
            .build()
            .unwrap();
        let before = pool.mempool().usage();
        assert_eq!(before.size, 64 * MIB);
        assert!(before.capacity >= 1 << 30, "{before:?}");
        // A job runs on one worker while the client grows the heap to 1 GiB.
        let running = pool.spawn_with(300u64, sleepy).unwrap();
        const N: usize = (1 << 30) / 8;
        let mut big = pool.array_zeroed::<u64>(N).unwrap();
        let usage = pool.mempool().usage();
        assert!(usage.size >= (1 << 30) + 64 * MIB, "{usage:?}");
        for i in (0..N).step_by(512) {
            big[i] = (i / 512) as u64;
        }
        let pages = (N / 512) as u64;
        let sums = pool.par_chunks(&big, 1 << 20, sample).unwrap();
        assert_eq!(sums.iter().sum::<u64>(), pages * (pages - 1) / 2);
        assert_eq!(running.wait().unwrap(), 300);
        drop(big);
        pool.mempool().trim().unwrap();
        let report = pool.mempool().__check_invariants().unwrap();
        assert_eq!(report.recoveries, 0);
        assert_eq!(pool.mempool().usage().in_use, before.in_use);
    });
}

#[test]
fn a_64_mib_pool_holds_a_1_gib_array_while_jobs_run_fork() {
    grows_while_jobs_run(StartMode::Fork);
}

#[test]
fn a_64_mib_pool_holds_a_1_gib_array_while_jobs_run_fork_server() {
    grows_while_jobs_run(StartMode::ForkServer);
}

/// A task grows the pool from its worker: 256 MiB in a pool built with 16 MiB, written
/// and summed there, then dropped (freed into the cache).
fn grow_in_a_worker(mib: &usize, ctx: &procyon::Ctx) -> u64 {
    let n = *mib * MIB / 8;
    let mut a = ctx.array_zeroed::<u64>(n).unwrap();
    for i in (0..n).step_by(512) {
        a[i] = 1;
    }
    a.iter().sum()
}

#[test]
fn a_worker_grows_the_pool_and_the_client_sees_it() {
    common::no_leaks(|| {
        let pool = Pool::builder()
            .workers(2)
            .mempool_size(16 * MIB)
            .start_mode(StartMode::Fork)
            .build()
            .unwrap();
        let sum = pool
            .spawn_with(256usize, grow_in_a_worker)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(sum, (256 * MIB / 8 / 512) as u64);
        let usage = pool.mempool().usage();
        assert!(usage.size > 256 * MIB, "{usage:?}");
        // The client allocates in what the worker grew (no growth of its own needed).
        let before = usage.size;
        let b = pool.array_zeroed::<u8>(200 * MIB).unwrap();
        assert_eq!(pool.mempool().usage().size, before);
        assert!(b.iter().step_by(4096).all(|&x| x == 0));
        drop(b);
        pool.mempool().__check_invariants().unwrap();
    });
}

#[test]
fn the_maximum_is_out_of_memory_and_the_pool_stays_usable() {
    common::no_leaks(|| {
        let pool = Pool::builder()
            .workers(1)
            .mempool_size(16 * MIB)
            .mempool_max(48 * MIB)
            .build()
            .unwrap();
        let a = pool.array_zeroed::<u8>(30 * MIB).unwrap();
        assert!(pool.mempool().usage().size > 30 * MIB);
        match pool.array_zeroed::<u8>(30 * MIB) {
            Err(Error::OutOfMemory { capacity, .. }) => assert_eq!(capacity, 48 * MIB),
            other => panic!("expected OutOfMemory, got {:?}", other.map(|a| a.len())),
        }
        assert_eq!(pool.mempool().usage().size, 48 * MIB);
        drop(a);
        let b = pool.array_from_fn(40 * MIB / 8, |i| i as u64).unwrap();
        // Its output does not fit under the maximum: an error, and the pool goes on.
        assert!(matches!(
            pool.par_map(&b, |v: u64| v + 1),
            Err(Error::OutOfMemory { .. })
        ));
        let small = pool.array_from_fn(1000, |i| i as u64).unwrap();
        let out = pool.par_map(&small, |v: u64| v + 1).unwrap();
        assert!(out.iter().enumerate().all(|(i, &v)| v == i as u64 + 1));
        drop(b);
        assert!(matches!(
            Pool::builder()
                .workers(1)
                .mempool_size(64 * MIB)
                .mempool_max(32 * MIB)
                .build(),
            Err(Error::InvalidConfig { .. })
        ));
    });
}
