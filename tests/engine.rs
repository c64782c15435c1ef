//! The engine end to end: results equal a sequential reference, failures are values,
//! the pool keeps serving, nothing outlives it.

mod common;

use std::time::Duration;

use common::procfs::minor_faults;
use common::tasks::{abort_on, segv_on};
use procyon::{Error, Pool};
use proptest::prelude::*;

fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .mempool_size(64 << 20)
        .mempool_max(64 << 20)
        .build()
        .expect("pool builds")
}

/// Runs a tiny job and checks the pool has all its workers alive.
fn assert_full_strength(pool: &Pool) {
    let x = pool.array_from_fn(1000, |i| i as u64).unwrap();
    let y = pool.par_map(&x, |v: u64| v * 3).unwrap();
    assert!(y.iter().enumerate().all(|(i, &v)| v == 3 * i as u64));
    let (_, pids) = pool.pids();
    assert_eq!(pids.len(), pool.workers());
    for pid in pids {
        assert!(
            pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} missing"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn adapters_match_sequential(data in proptest::collection::vec(any::<u32>(), 0..3000), workers in 1usize..=4, max_len in 1usize..64) {
        common::no_leaks(|| {
            let pool = pool(workers);
            let arr = pool.array_from_slice(&data).unwrap();
            let seq_map: Vec<u64> = data.iter().map(|&x| x as u64 * 2 + 1).collect();
            let m = pool.par_map(&arr, |x: u32| x as u64 * 2 + 1).unwrap();
            prop_assert_eq!(&m[..], &seq_map[..]);
            let v = pool.par_iter(&arr).with_max_len(max_len).map(|x: u32| x as u64 * 2 + 1).collect_vec().unwrap();
            prop_assert_eq!(&v, &seq_map);
            let a = pool.par_iter(&arr).map(|x: u32| x / 3).collect_array().unwrap();
            prop_assert_eq!(a.to_vec(), data.iter().map(|x| x / 3).collect::<Vec<_>>());
            let f = pool.par_iter(&arr).filter(|x: &u32| x % 3 == 0).collect_vec().unwrap();
            prop_assert_eq!(f, data.iter().copied().filter(|x| x % 3 == 0).collect::<Vec<_>>());
            let e = pool.par_iter(&arr).enumerate().map(|(i, x): (usize, u32)| i as u64 ^ x as u64).collect_vec().unwrap();
            prop_assert_eq!(e, data.iter().enumerate().map(|(i, &x)| i as u64 ^ x as u64).collect::<Vec<_>>());
            let s: u64 = pool.par_iter(&arr).map(|x: u32| x as u64).sum().unwrap();
            prop_assert_eq!(s, data.iter().map(|&x| x as u64).sum::<u64>());
            prop_assert_eq!(pool.par_iter(&arr).count().unwrap(), data.len());
            prop_assert_eq!(pool.par_iter(&arr).min().unwrap(), data.iter().copied().min());
            prop_assert_eq!(pool.par_iter(&arr).max().unwrap(), data.iter().copied().max());
            let r = pool.par_iter(&arr).map(|x: u32| x as u64).reduce(|| 0u64, |a, b| a.max(b)).unwrap();
            prop_assert_eq!(r, data.iter().map(|&x| x as u64).max().unwrap_or(0));
            let folds = pool.par_iter(&arr).fold(|| 0u64, |a, x: u32| a + x as u64).unwrap();
            prop_assert_eq!(folds.iter().sum::<u64>(), data.iter().map(|&x| x as u64).sum::<u64>());
            let any_big = pool.par_iter(&arr).any(|x: u32| x > u32::MAX / 2).unwrap();
            prop_assert_eq!(any_big, data.iter().any(|&x| x > u32::MAX / 2));
            let all_small = pool.par_iter(&arr).all(|x: u32| x < u32::MAX / 2).unwrap();
            prop_assert_eq!(all_small, data.iter().all(|&x| x < u32::MAX / 2));
            let found = pool.par_iter(&arr).find_any(|x: &u32| x % 7 == 0).unwrap();
            match found {
                Some(x) => prop_assert!(x % 7 == 0 && data.contains(&x)),
                None => prop_assert!(!data.iter().any(|x| x % 7 == 0)),
            }
            let mw = pool.par_iter(&arr).map_with(5u32, |k: &u32, x: u32| x.wrapping_add(*k)).collect_vec().unwrap();
            prop_assert_eq!(mw, data.iter().map(|x| x.wrapping_add(5)).collect::<Vec<_>>());
            let strings: Vec<String> = data.iter().take(200).map(|x| x.to_string()).collect();
            let lens = pool.par_map_vec(strings.clone(), |s: String| s.len()).unwrap();
            prop_assert_eq!(lens, strings.iter().map(|s| s.len()).collect::<Vec<_>>());
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    /// Streaming (non-temporal) output stores, forced on for every size: chunks start at
    /// any element, so heads, whole blocks and tails of every alignment are written.
    #[test]
    fn streamed_outputs_match_sequential(len in 0usize..20_000, max_len in 1usize..3000, workers in 1usize..=3) {
        common::no_leaks(|| {
            let pool = Pool::builder()
                .workers(workers)
                .mempool_size(64 << 20)
                .stream_outputs_from(0)
                .max_len(max_len)
                .build()
                .unwrap();
            let x = pool.array_from_fn(len, |i| i as u64 * 7).unwrap();
            let y = pool.par_map(&x, |v: u64| 2.0 * v as f64 + 1.0).unwrap();
            prop_assert!(y.iter().enumerate().all(|(i, &v)| v == 2.0 * (i * 7) as f64 + 1.0));
            let w = pool.par_map(&x, |v: u64| [v as u16, (v >> 16) as u16, 9]).unwrap();
            prop_assert!(w.iter().enumerate().all(|(i, v)| *v == [(i * 7) as u16, ((i * 7) >> 16) as u16, 9]));
            let c = pool.par_iter(&x).map(|v: u64| v as u32 ^ 0x5a5a).collect_array().unwrap();
            prop_assert!(c.iter().enumerate().all(|(i, &v)| v == (i * 7) as u32 ^ 0x5a5a));
            let mut z = pool.array_zeroed::<[u8; 3]>(len).unwrap();
            pool.par_map_into(&x, &mut z, |v: u64| [v as u8, (v >> 8) as u8, 1]).unwrap();
            prop_assert!(z.iter().enumerate().all(|(i, v)| *v == [(i * 7) as u8, ((i * 7) >> 8) as u8, 1]));
            Ok(())
        })?;
    }
}

#[test]
fn reduce_keeps_input_order() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    let words: Vec<u32> = (0..500).collect();
    let arr = pool.array_from_slice(&words).unwrap();
    // Concatenation as string digits is associative and not commutative.
    let v = pool
        .par_iter(&arr)
        .with_max_len(7)
        .map(|x: u32| vec![x])
        .reduce(Vec::new, |mut a: Vec<u32>, mut b: Vec<u32>| {
            a.append(&mut b);
            a
        })
        .unwrap();
    assert_eq!(v, words);
}

#[test]
fn map_init_runs_once_per_worker_per_job() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    // Every item reports the pid of its worker and how many items that worker's state
    // had seen: the counts per pid must be 1..=k with no restart per chunk.
    let seen = pool
        .par_range(0..2000)
        .with_max_len(10)
        .map_init(
            || 0u32,
            |count: &mut u32, _i: usize| {
                *count += 1;
                (std::process::id(), *count)
            },
        )
        .collect_vec()
        .unwrap();
    let mut by_pid = std::collections::HashMap::<u32, Vec<u32>>::new();
    for (pid, c) in seen {
        by_pid.entry(pid).or_default().push(c);
    }
    assert!(by_pid.len() <= 2);
    for (_, mut counts) in by_pid {
        counts.sort_unstable();
        assert_eq!(counts, (1..=counts.len() as u32).collect::<Vec<_>>());
    }
}

#[test]
fn par_chunks_mut_and_ranges() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    let mut img = pool.array_zeroed::<u32>(1003).unwrap();
    pool.par_chunks_mut(&mut img, 10, |off: usize, c: &mut [u32]| {
        for (k, v) in c.iter_mut().enumerate() {
            *v = (off + k) as u32 * 2;
        }
    })
    .unwrap();
    assert!(img.iter().enumerate().all(|(i, &v)| v == i as u32 * 2));
    assert!(matches!(
        pool.par_chunks_mut(&mut img, 0, |_: usize, _: &mut [u32]| {}),
        Err(Error::InvalidConfig { .. })
    ));
    let total: u64 = pool
        .par_range(5..105)
        .map(|i: usize| i as u64)
        .sum()
        .unwrap();
    assert_eq!(total, (5..105u64).sum());
    assert_eq!(pool.par_range(0..0).count().unwrap(), 0);
}

#[test]
fn bad_input_is_an_error() {
    let _turn = common::one_at_a_time();
    assert!(matches!(
        Pool::builder().workers(0).build(),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        Pool::builder().slot_size(8).build(),
        Err(Error::InvalidConfig { .. })
    ));
    let pool = pool(1);
    let a = pool.array_zeroed::<u32>(10).unwrap();
    let mut b = pool.array_zeroed::<u32>(11).unwrap();
    assert!(matches!(
        pool.par_map_into(&a, &mut b, |x: u32| x),
        Err(Error::LengthMismatch { .. })
    ));
    let big = pool.array_zeroed::<u8>(1 << 30);
    assert!(matches!(big, Err(Error::OutOfMemory { .. })));
    assert_full_strength(&pool);
}

#[test]
fn large_values_through_par_map_vec() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    let items: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8; 1 << 20]).collect();
    let sums = pool
        .par_map_vec(items, |v: Vec<u8>| v.iter().map(|&b| b as u64).sum::<u64>())
        .unwrap();
    assert_eq!(
        sums,
        (0..8).map(|i| i as u64 * (1 << 20)).collect::<Vec<_>>()
    );
    let echoed = pool
        .par_map_vec(vec![vec![7u8; 3 << 20]], |v: Vec<u8>| v)
        .unwrap();
    assert_eq!(echoed[0].len(), 3 << 20);
}

fn explode(x: u64) -> u64 {
    if x == 77 {
        panic!("boom at {x}");
    }
    x
}

#[test]
fn panic_is_an_error_and_pool_recovers() {
    common::no_leaks(|| {
        let pool = pool(2);
        let x = pool.array_from_fn(1000, |i| i as u64).unwrap();
        match pool.par_map(&x, explode) {
            Err(Error::TaskPanicked { message, .. }) => {
                assert!(message.contains("boom at 77"), "{message}")
            }
            other => panic!("expected TaskPanicked, got {:?}", other.map(|_| ())),
        }
        assert_full_strength(&pool);
    });
}

fn sleep_on(x: u64) -> u64 {
    if x == 500 {
        std::thread::sleep(Duration::from_secs(30));
    }
    x
}

#[test]
fn abort_and_segfault_are_worker_deaths() {
    common::no_leaks(|| {
        let pool = pool(2);
        let x = pool.array_from_fn(1000, |i| i as u64).unwrap();
        match pool.par_map(&x, abort_on) {
            Err(Error::WorkerDied { signal, .. }) => assert_eq!(signal, Some(libc::SIGABRT)),
            other => panic!("expected WorkerDied, got {:?}", other.map(|_| ())),
        }
        assert_full_strength(&pool);
        match pool.par_map(&x, segv_on) {
            Err(Error::WorkerDied { signal, .. }) => assert_eq!(signal, Some(libc::SIGSEGV)),
            other => panic!("expected WorkerDied, got {:?}", other.map(|_| ())),
        }
        assert_full_strength(&pool);
    });
}

#[test]
fn outside_sigkill_is_a_worker_death() {
    common::no_leaks(|| {
        let pool = pool(2);
        let x = pool.array_from_fn(1000, |i| i as u64).unwrap();
        let mut y = pool.array_zeroed::<u64>(1000).unwrap();
        // SAFETY: `x` and `y` live to the end of the test, after the handle is answered.
        let handle = unsafe { pool.spawn_map_into(&x, &mut y, sleep_on) }.unwrap();
        // Find the worker stuck in the sleeping task (in clock_nanosleep, syscall 230, not
        // in futex, 202, like an idle one) and kill it from outside.
        let mut stuck = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while stuck.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let (_, pids) = pool.pids();
            stuck = pids
                .iter()
                .copied()
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/syscall"))
                        .map(|s| s.split_whitespace().next() == Some("230"))
                        .unwrap_or(false)
                })
                .collect();
        }
        assert!(!stuck.is_empty(), "no sleeping worker found");
        // SAFETY: plain kill(2) on a pid we own.
        unsafe { libc::kill(stuck[0], libc::SIGKILL) };
        match handle.wait() {
            Err(Error::WorkerDied { signal, .. }) => assert_eq!(signal, Some(libc::SIGKILL)),
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        drop(y);
        assert_full_strength(&pool);
    });
}

#[test]
fn four_client_threads_share_a_pool() {
    let _turn = common::one_at_a_time();
    let pool = pool(2);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let pool = &pool;
            s.spawn(move || {
                for j in 0..50u64 {
                    let n = 100 + (t * 50 + j) as usize;
                    let x = pool.array_from_fn(n, |i| i as u64 + t).unwrap();
                    let y = pool.par_map(&x, |v: u64| v * 2).unwrap();
                    assert!(y.iter().enumerate().all(|(i, &v)| v == 2 * (i as u64 + t)));
                    let s: u64 = pool.par_iter(&x).sum().unwrap();
                    assert_eq!(s, (0..n as u64).map(|i| i + t).sum::<u64>());
                }
            });
        }
    });
    assert_full_strength(&pool);
}

#[test]
fn drop_reaps_everything_and_pools_coexist() {
    common::no_leaks(|| {
        let a = pool(2);
        let b = pool(1);
        let x = a.array_from_fn(10, |i| i as u32).unwrap();
        let y = b.array_from_fn(10, |i| i as u32).unwrap();
        assert_eq!(a.par_iter(&x).sum::<u32>().unwrap(), 45);
        assert_eq!(b.par_iter(&y).sum::<u32>().unwrap(), 45);
        // An array from another pool is refused, not misread.
        assert!(matches!(
            a.par_iter(&y).sum::<u32>(),
            Err(Error::InvalidDescriptor { .. })
        ));
        let mut z = b.array_zeroed::<u32>(10).unwrap();
        assert!(matches!(
            a.par_map_into(&x, &mut z, |v: u32| v),
            Err(Error::InvalidDescriptor { .. })
        ));
    });
}

#[test]
fn client_sigkill_takes_the_tree_down() {
    let _turn = common::one_at_a_time();
    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) into a local array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only builds a pool, writes pids to a pipe and sleeps; it never
    // returns into the test harness (it is killed).
    let child = unsafe { libc::fork() };
    if child == 0 {
        let r = std::panic::catch_unwind(|| {
            let pool = pool(2);
            let (s, w) = pool.pids();
            let msg = format!("{} {} {}\n", s, w[0], w[1]);
            // SAFETY: writing a local buffer to our pipe.
            unsafe { libc::write(fds[1], msg.as_ptr().cast(), msg.len()) };
            std::thread::sleep(Duration::from_secs(60));
        });
        // SAFETY: ending the forked child without running the harness's destructors.
        unsafe { libc::_exit(if r.is_ok() { 0 } else { 1 }) };
    }
    let mut buf = [0u8; 128];
    // SAFETY: reading into a local buffer from our pipe.
    let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n > 0, "child did not report its pool");
    let pids: Vec<i32> = String::from_utf8_lossy(&buf[..n as usize])
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    // SAFETY: kill(2) and waitpid(2) on our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    let start = std::time::Instant::now();
    for pid in pids {
        assert!(
            common::gone_within(pid, Duration::from_secs(1)),
            "process {pid} outlived its client"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn workers_map_a_fresh_output_a_window_at_a_time_not_a_page_at_a_time() {
    // 64 MiB in and out, written by workers that have never touched either array: a
    // store to a shared page a process has not mapped faults once per 4 KiB page, a read
    // maps the 64 KiB around it, and the engine reads before it writes a chunk.
    let n = 8 << 20;
    let pool = Pool::builder()
        .workers(2)
        .mempool_size(256 << 20)
        .build()
        .unwrap();
    let x = pool.array_from_fn(n, |i| i as u64).unwrap();
    let mut y = pool.array_zeroed::<u64>(n).unwrap();
    let workers = pool.pids().1;
    let before: u64 = workers.iter().map(|&p| minor_faults(p)).sum();
    pool.par_map_into(&x, &mut y, |v: u64| 3 * v + 1).unwrap();
    let faults = workers.iter().map(|&p| minor_faults(p)).sum::<u64>() - before;
    assert!(y.iter().enumerate().all(|(i, &v)| v == 3 * i as u64 + 1));
    let output_pages = (n * 8 / 4096) as u64;
    assert!(
        faults < output_pages / 4,
        "{faults} page faults in the workers to write {output_pages} pages"
    );
}
