//! A worker keeps the heap memory its tasks free for its next job
//! (`sys::process::keep_freed_heap`): jobs that build the same large vectors job after
//! job take their pages as fresh page faults once, not in every job. glibc's thresholds
//! are what the worker sets, so the test runs where glibc is the allocator.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;

use common::procfs::minor_faults;
use procyon::Pool;

const MIB: usize = 1 << 20;

/// Builds three 4 MiB vectors, all alive until the task ends (as a `collect_vec` keeps
/// one vector per chunk until its job ends), and drops them.
///
/// With glibc's own thresholds the first job maps each vector apart, freeing one raises
/// the threshold past 4 MiB (and the trim threshold to twice that), so later jobs build
/// them on the heap, and freeing 12 MiB at its top gives them back: every page is a
/// fresh fault in every job.
fn three_vectors(mib: &usize, _: &procyon::Ctx) -> u64 {
    let vectors: Vec<Vec<u8>> = (0..3).map(|k| vec![k as u8 + 1; mib * MIB]).collect();
    std::hint::black_box(&vectors)
        .iter()
        .map(|v| v.iter().step_by(4096).map(|&b| b as u64).sum::<u64>())
        .sum()
}

#[test]
fn a_worker_builds_the_same_vectors_again_without_faulting_their_pages_in_again() {
    common::no_leaks(|| {
        let pool = Pool::builder()
            .workers(1)
            .mempool_size(16 * MIB)
            .build()
            .unwrap();
        let (_, workers) = pool.pids();
        // One byte per page of each vector, summed: 1 + 2 + 3 times 1,024 pages.
        let want = 6 * (4 * MIB / 4096) as u64;
        let job = || {
            pool.spawn_with(4usize, three_vectors)
                .unwrap()
                .wait()
                .unwrap()
        };
        // The first jobs map what the worker's heap needs.
        for _ in 0..2 {
            assert_eq!(job(), want);
        }
        let before = minor_faults(workers[0]);
        const JOBS: u64 = 10;
        for _ in 0..JOBS {
            assert_eq!(job(), want);
        }
        let faults = minor_faults(workers[0]) - before;
        // The vectors are 3,072 pages: mapped afresh, they fault that many times a job
        // (30,400 faults in these 10 jobs with glibc's thresholds, 0 with ours).
        assert!(
            faults < 3072,
            "{faults} page faults in {JOBS} jobs that each built the same three 4 MiB vectors"
        );
    })
}
