//! The cluster's tests, across real MPI ranks: run under `mpirun` (see `.ci/run`):
//!
//! ```text
//! cargo build --features mpi --example cluster_tests
//! mpirun --allow-run-as-root --oversubscribe -np 4 target/debug/examples/cluster_tests
//! PROCYON_TEST_MODE=mismatch mpirun ... -np 2 target/debug/examples/cluster_tests
//! ```
//!
//! Other modes: `silent` (a rank stops during a job: `RankFailed` once the silence limit
//! passes), `die` (a rank is killed: Open MPI ends the MPI job, which the script checks).
//!
//! `PROCYON_TEST_WORKERS` sets each rank's workers (default 2). Every check compares the
//! cluster's answer with the single-machine pool of rank 0 and a sequential model. A
//! failed check panics: the process exits non-zero and `mpirun` ends the MPI job with an
//! error. Started without `mpirun` (no `OMPI_COMM_WORLD_SIZE`), it says so and fails.

use std::time::{Duration, Instant};

use procyon::cluster::{CancelToken, Cluster};
use procyon::{Error, Pool};

/// This process's MPI rank, as Open MPI tells it (the workers inherit the variable).
fn rank_env() -> i32 {
    std::env::var("OMPI_COMM_WORLD_RANK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

const GRACE: Duration = Duration::from_millis(300);

fn main() {
    if std::env::var_os("OMPI_COMM_WORLD_SIZE").is_none() {
        eprintln!(
            "cluster_tests: run me under mpirun (see .ci/run); OMPI_COMM_WORLD_SIZE is not set"
        );
        std::process::exit(2);
    }
    let workers: usize = std::env::var("PROCYON_TEST_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mode = std::env::var("PROCYON_TEST_MODE").unwrap_or_default();
    let size: i32 = std::env::var("OMPI_COMM_WORLD_SIZE")
        .unwrap()
        .parse()
        .unwrap();
    let pool = Pool::builder()
        .workers(workers)
        .mempool_size(64 << 20)
        .cancel_grace(GRACE);
    if mode == "mismatch" {
        return mismatch(pool, size);
    }
    let silence = if mode == "silent" { 2 } else { 30 };
    let cluster = Cluster::builder()
        .pool(pool)
        .silence_limit(Duration::from_secs(silence))
        .build()
        .expect("cluster starts");
    assert_eq!(cluster.size(), size);
    assert_eq!(cluster.rank(), rank_env());
    if mode == "die" {
        return die(&cluster);
    }
    if mode == "silent" {
        return silent(&cluster);
    }
    if !cluster.is_driver() {
        let r = cluster.par_range(0u8..3).sum::<u8>();
        assert!(matches!(r, Err(Error::InvalidConfig { .. })), "{r:?}");
        cluster.serve().expect("serve");
        return;
    }
    assert!(matches!(cluster.serve(), Err(Error::InvalidConfig { .. })));
    let t = Instant::now();
    adapters(&cluster);
    println!("cluster_tests: adapters ok ({:?})", t.elapsed());
    task_failure(&cluster);
    println!("cluster_tests: task failure ok");
    rebalance(&cluster, size);
    println!("cluster_tests: rebalance ok");
    cancel(&cluster, size, workers);
    println!("cluster_tests: cancel ok");
    timeout(&cluster);
    println!("cluster_tests: timeout ok");
    println!(
        "cluster_tests: all passed on {size} ranks x {workers} workers in {:?}",
        t.elapsed()
    );
}

/// Every adapter and terminal against rank 0's local pool and a sequential model.
fn adapters(c: &Cluster) {
    let pool = c.pool();
    let n = 10_000u64;

    let got = c
        .par_range(0..n)
        .map(|i: u64| i * 3 + 1)
        .collect_vec()
        .unwrap();
    let local = pool
        .par_range(0..n)
        .map(|i: u64| i * 3 + 1)
        .collect_vec()
        .unwrap();
    let model: Vec<u64> = (0..n).map(|i| i * 3 + 1).collect();
    assert_eq!(got, model);
    assert_eq!(local, model);

    let table: Vec<u64> = vec![3, 1, 4, 1, 5, 9, 2];
    let got = c
        .par_range(0usize..5000)
        .map_with(table.clone(), |t: &Vec<u64>, i: usize| t[i % 7] * i as u64)
        .collect_vec()
        .unwrap();
    let local = pool
        .par_range(0usize..5000)
        .map_with(table.clone(), |t: &Vec<u64>, i: usize| t[i % 7] * i as u64)
        .collect_vec()
        .unwrap();
    let model: Vec<u64> = (0..5000).map(|i| table[i % 7] * i as u64).collect();
    assert_eq!(got, model);
    assert_eq!(local, model);

    let got = c
        .par_range(-500i64..4500)
        .filter(|x: &i64| x % 7 == 0)
        .collect_vec()
        .unwrap();
    let local = pool
        .par_range(-500i64..4500)
        .filter(|x: &i64| x % 7 == 0)
        .collect_vec()
        .unwrap();
    let model: Vec<i64> = (-500..4500).filter(|x| x % 7 == 0).collect();
    assert_eq!(got, model);
    assert_eq!(local, model);

    // A chain: map, filter, map_with.
    let got = c
        .par_range(0u32..3000)
        .map(|i: u32| u64::from(i) * u64::from(i))
        .filter(|x: &u64| x % 3 != 1)
        .map_with(5u64, |k: &u64, x: u64| x + k)
        .collect_vec()
        .unwrap();
    let model: Vec<u64> = (0..3000u64)
        .map(|i| i * i)
        .filter(|x| x % 3 != 1)
        .map(|x| x + 5)
        .collect();
    assert_eq!(got, model);

    let got: u64 = c.par_range(0..n).map(|i: u64| i * i).sum().unwrap();
    let local: u64 = pool.par_range(0..n).map(|i: u64| i * i).sum().unwrap();
    assert_eq!(got, (0..n).map(|i| i * i).sum::<u64>());
    assert_eq!(local, got);

    // reduce with an associative, non-commutative op: the order of the items is kept.
    let got = c
        .par_range(0u32..3000)
        .map(|i: u32| vec![i])
        .reduce(Vec::new, |mut a: Vec<u32>, b: Vec<u32>| {
            a.extend(b);
            a
        })
        .unwrap();
    let local = pool
        .par_range(0u32..3000)
        .map(|i: u32| vec![i])
        .reduce(Vec::new, |mut a: Vec<u32>, b: Vec<u32>| {
            a.extend(b);
            a
        })
        .unwrap();
    assert_eq!(got, (0..3000).collect::<Vec<u32>>());
    assert_eq!(local, got);

    // fold: accumulators in input order, together every item once.
    let parts = c
        .par_range(0u64..4000)
        .fold(Vec::new, |mut a: Vec<u64>, i: u64| {
            a.push(i);
            a
        })
        .unwrap();
    assert!(!parts.is_empty());
    assert_eq!(parts.concat(), (0..4000).collect::<Vec<u64>>());
    let sums = c
        .par_range(0u64..4000)
        .fold(|| 0u64, |a: u64, i: u64| a + i)
        .unwrap();
    let local = pool
        .par_range(0u64..4000)
        .fold(|| 0u64, |a: u64, i: u64| a + i)
        .unwrap();
    assert_eq!(sums.iter().sum::<u64>(), local.iter().sum::<u64>());

    // for_each runs every item (progress counts them all, over every rank).
    let done = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let d = done.clone();
    c.par_range(0u64..7000)
        .on_progress(move |p| {
            assert_eq!(p.items_total, 7000);
            assert!(p.items_done >= d.get());
            d.set(p.items_done);
        })
        .for_each(|i: u64| assert!(i < 7000))
        .unwrap();
    assert_eq!(done.get(), 7000);

    // collect_array on the driver.
    let a = c
        .par_range(0u32..2048)
        .map(|i: u32| i ^ 0x55)
        .collect_array()
        .unwrap();
    assert_eq!(a.len(), 2048);
    assert!((0..2048u32).all(|i| a[i as usize] == i ^ 0x55));

    // A scattered source: the items of a slice on rank 0, each block sent its own.
    let words: Vec<String> = (0..3000).map(|i| format!("w{}", i * 7 % 1000)).collect();
    let got = c
        .par_iter(&words)
        .map(|w: String| w.len() as u64)
        .collect_vec()
        .unwrap();
    assert_eq!(
        got,
        words.iter().map(|w| w.len() as u64).collect::<Vec<_>>()
    );
    let got = c
        .par_iter(&words)
        .filter(|w: &String| w.ends_with('7'))
        .reduce(String::new, |a: String, b: String| a + &b)
        .unwrap();
    let model: String = words
        .iter()
        .filter(|w| w.ends_with('7'))
        .map(String::as_str)
        .collect();
    assert_eq!(got, model);
    let xs: Vec<u64> = (0..20_000u64).map(|i| i * i % 977).collect();
    let arr = pool.array_from_slice(&xs).unwrap();
    let local: u64 = pool.par_iter(&arr).map(|x: u64| x * 3).sum().unwrap();
    let got: u64 = c.par_iter(&xs).map(|x: u64| x * 3).sum().unwrap();
    assert_eq!(got, local);
    assert_eq!(got, xs.iter().map(|x| x * 3).sum::<u64>());
    let empty: Vec<u32> = Vec::new();
    assert!(c.par_iter(&empty).collect_vec().unwrap().is_empty());

    // Empty and tiny ranges, small integer types.
    assert!(c.par_range(5u64..5).collect_vec().unwrap().is_empty());
    // A reversed range is empty, as in std.
    let (hi, lo) = (9i32, 3i32);
    assert!(c.par_range(hi..lo).collect_vec().unwrap().is_empty());
    assert_eq!(c.par_range(0u64..0).sum::<u64>().unwrap(), 0);
    assert_eq!(c.par_range(7u16..8).collect_vec().unwrap(), [7]);
    let all: Vec<u8> = c.par_range(0u8..255).collect_vec().unwrap();
    assert_eq!(all, (0..255).collect::<Vec<u8>>());
}

/// A task that panics on some rank fails the job with an error naming the rank and the
/// panic; the next job runs.
fn task_failure(c: &Cluster) {
    let r = c
        .par_range(0u64..10_000)
        .map(|i: u64| {
            assert!(i != 7777, "boom at {i}");
            i
        })
        .sum::<u64>();
    match r {
        Err(Error::RankFailed { rank, reason }) => {
            assert!((0..c.size()).contains(&rank));
            assert!(reason.contains("boom at 7777"), "{reason}");
        }
        other => panic!("expected RankFailed, got {other:?}"),
    }
    let s: u64 = c.par_range(0u64..1000).sum().unwrap();
    assert_eq!(s, 499_500);
}

/// With the last rank slow, the others take the rest: it computes fewer items than an
/// even split would give it, and the result is still right and in order.
fn rebalance(c: &Cluster, size: i32) {
    if size < 2 {
        return;
    }
    let n = 400u64;
    let got = c
        .par_range(0..n)
        .map_with(size - 1, |slow: &i32, i: u64| {
            let me = rank_env();
            let ms = if me == *slow { 20 } else { 1 };
            std::thread::sleep(Duration::from_millis(ms));
            (i, me)
        })
        .collect_vec()
        .unwrap();
    assert_eq!(
        got.iter().map(|p| p.0).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    let on_slow = got.iter().filter(|p| p.1 == size - 1).count() as u64;
    let ranks: std::collections::BTreeSet<i32> = got.iter().map(|p| p.1).collect();
    assert_eq!(
        ranks.len(),
        size as usize,
        "every rank took part: {ranks:?}"
    );
    assert!(
        on_slow < n / size as u64,
        "the slow rank ran {on_slow} of {n} items (an even split gives it {})",
        n / size as u64
    );
}

/// Cancel while every rank's workers are inside tasks that never return: the job answers
/// `Cancelled` within the local pools' grace period (plus slack), and the next job,
/// which needs every rank's workers, runs.
fn cancel(c: &Cluster, size: i32, workers: usize) {
    let token = CancelToken::new();
    let t = token.clone();
    let started = Instant::now();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        t.cancel();
        Instant::now()
    });
    let items = (size as u64) * workers as u64 * 8;
    let r = c
        .par_range(0..items)
        .with_cancel(&token)
        .for_each(|_i: u64| loop {
            std::thread::sleep(Duration::from_millis(10));
        });
    let returned = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    let after = returned.saturating_duration_since(cancelled_at);
    assert!(
        after < GRACE + Duration::from_secs(3),
        "returned {after:?} after the cancel (grace {GRACE:?})"
    );
    assert!(returned - started >= Duration::from_millis(700));
    let s: u64 = c
        .par_range(0u64..4000)
        .timeout(Duration::from_secs(30))
        .sum()
        .unwrap();
    assert_eq!(s, 4000 * 3999 / 2);
}

/// A time limit stops the job on every rank like a cancel.
fn timeout(c: &Cluster) {
    let t = Instant::now();
    let r = c
        .par_range(0u64..64)
        .map(|i: u64| {
            std::thread::sleep(Duration::from_secs(60));
            i
        })
        .timeout(Duration::from_millis(300))
        .sum::<u64>();
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_millis(300) + GRACE + Duration::from_secs(3));
    let v = c.par_range(0u64..10).collect_vec().unwrap();
    assert_eq!(v, (0..10).collect::<Vec<_>>());
}

/// The last rank is killed (SIGKILL) while a job runs. Open MPI then ends the whole MPI
/// job: `mpirun` exits non-zero and names the rank (checked by scripts/test_mpi.sh, with
/// a time bound: no rank may hang). Reaching the end of the job here is a failure.
fn die(c: &Cluster) {
    let victim = c.size() - 1;
    if c.rank() == victim && victim > 0 {
        // No MPI call in this thread: it only kills the process.
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(800));
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        });
    }
    if !c.is_driver() {
        let _ = c.serve();
        return;
    }
    let r = c
        .par_range(0u64..2000)
        .map(|i: u64| {
            std::thread::sleep(Duration::from_millis(10));
            i
        })
        .timeout(Duration::from_secs(60))
        .sum::<u64>();
    panic!("the job ended ({r:?}) although rank {victim} was killed: expected mpirun to end the MPI job");
}

/// The last rank stops (SIGSTOP) during a job, and is resumed 8 s later by a helper
/// process it started: the driver fails the job with `RankFailed` naming it once the
/// silence limit (2 s) has passed, and refuses further jobs; the cluster then closes.
fn silent(c: &Cluster) {
    let victim = c.size() - 1;
    if victim == 0 {
        println!("cluster_tests: silent needs 2 ranks or more; nothing to check on 1");
        return;
    }
    if c.rank() == victim {
        let pid = std::process::id();
        let mut resume = std::process::Command::new("sh")
            .args(["-c", &format!("sleep 8; kill -CONT {pid}")])
            .spawn()
            .expect("start the helper that resumes this rank");
        // No MPI call in this thread: it only stops the process.
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(800));
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
        });
        c.serve().expect("serve");
        resume.wait().expect("the helper ends");
        return;
    }
    if !c.is_driver() {
        c.serve().expect("serve");
        return;
    }
    let t = Instant::now();
    let r = c
        .par_range(0u64..3000)
        .map(|i: u64| {
            std::thread::sleep(Duration::from_millis(2));
            i
        })
        .sum::<u64>();
    match r {
        Err(Error::RankFailed { rank, reason }) => {
            assert_eq!(rank, victim);
            assert!(reason.contains("no word from it"), "{reason}");
        }
        other => panic!("expected RankFailed naming rank {victim}, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    let again = c.par_range(0u64..10).sum::<u64>();
    assert!(
        matches!(again, Err(Error::RankFailed { rank, .. }) if rank == victim),
        "{again:?}"
    );
    println!("cluster_tests: silent rank ok ({:?})", t.elapsed());
}

/// The last rank announces another build: every rank's `build` fails with
/// `BuildMismatch` naming it, at once (no hang).
fn mismatch(pool: procyon::PoolBuilder, size: i32) {
    if size < 2 {
        println!("cluster_tests: mismatch needs 2 ranks or more; nothing to check on 1");
        return;
    }
    let t = Instant::now();
    let r = Cluster::builder()
        .pool(pool)
        .__perturb_identity_on_rank(size - 1)
        .build();
    match r {
        Err(Error::BuildMismatch { rank, detail }) => {
            assert_eq!(rank, size - 1);
            assert!(detail.contains("executable differs"), "{detail}");
            let msg = Error::BuildMismatch { rank, detail }.to_string();
            assert!(msg.contains("same executable"), "{msg}");
        }
        Err(e) => panic!("expected BuildMismatch, got {e}"),
        Ok(_) => panic!("a rank with another build was accepted"),
    }
    assert!(t.elapsed() < Duration::from_secs(20));
    if rank_env() == 0 {
        println!(
            "cluster_tests: mismatch ok on {size} ranks ({:?})",
            t.elapsed()
        );
    }
}
