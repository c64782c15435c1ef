//! Ordinary data in and out: slices, `Vec`s and arrays of plain data as the input of
//! `par_iter`, `par_map` and `par_map_into`, staged into the mempool with one copy that
//! lives exactly as long as the job; checked against the sequential result.

mod common;

use procyon::{ArrayInput, Error, Pool};

fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .mempool_size(128 << 20)
        .build()
        .expect("pool builds")
}

fn data(n: usize) -> Vec<u64> {
    (0..n as u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40)
        .collect()
}

#[test]
fn a_vec_a_slice_and_an_array_iterate_as_the_sequential_loop() {
    common::no_leaks(|| {
        for workers in [1, 2] {
            let pool = pool(workers);
            for n in [0usize, 1, 2, 7, 1000, 1_000_003] {
                let v = data(n);
                let seq_sum: u64 = v.iter().map(|x| x % 1000).sum();
                let sum: u64 = pool.par_iter(&v).map(|x: u64| x % 1000).sum().unwrap();
                assert_eq!(sum, seq_sum, "n = {n}");
                let half = &v[..n / 2];
                let evens = pool
                    .par_iter(half)
                    .filter(|x: &u64| x % 2 == 0)
                    .collect_vec()
                    .unwrap();
                let seq: Vec<u64> = half.iter().copied().filter(|x| x % 2 == 0).collect();
                assert_eq!(evens, seq, "n = {n}");
            }
            let fixed = [3u32, 1, 4, 1, 5, 9, 2, 6];
            assert_eq!(pool.par_iter(&fixed).max().unwrap(), Some(9));
            assert_eq!(
                pool.par_iter(&fixed).enumerate().collect_vec().unwrap(),
                fixed.iter().copied().enumerate().collect::<Vec<_>>()
            );
        }
    });
}

#[test]
fn par_map_takes_a_vec_and_gives_back_a_vec_with_one_copy() {
    common::no_leaks(|| {
        let pool = pool(2);
        for n in [0usize, 1, 7, 100_000] {
            let v: Vec<f64> = (0..n).map(|i| i as f64 * 0.25).collect();
            let out: Vec<f64> = pool.par_map(&v, |x: f64| 2.0 * x + 1.0).unwrap().to_vec();
            let seq: Vec<f64> = v.iter().map(|x| 2.0 * x + 1.0).collect();
            assert_eq!(out, seq, "n = {n}");
            let mut dst = pool.array_zeroed::<f64>(n).unwrap();
            pool.par_map_into(&v[..], &mut dst, |x: f64| x - 1.0)
                .unwrap();
            assert!(dst.iter().zip(&v).all(|(d, x)| *d == x - 1.0));
        }
        let short = [1u8, 2];
        let mut dst = pool.array_zeroed::<u8>(3).unwrap();
        assert!(matches!(
            pool.par_map_into(&short, &mut dst, |x: u8| x),
            Err(Error::LengthMismatch { .. })
        ));
    });
}

#[test]
fn a_shared_array_zips_with_a_staged_vec_on_both_sides() {
    common::no_leaks(|| {
        let pool = pool(2);
        let n = 50_000;
        let xs: Vec<u32> = (0..n).collect();
        let shared = pool.array_from_fn(n as usize, |i| (i * 3) as u32).unwrap();
        let pairs: u64 = pool
            .par_iter(&shared)
            .zip(pool.par_iter(&xs))
            .map(|(a, b): (u32, u32)| u64::from(a) * u64::from(b))
            .sum()
            .unwrap();
        let seq: u64 = (0..n as u64).map(|i| i * 3 * i).sum();
        assert_eq!(pairs, seq);

        // rayon's `ys.par_iter_mut().zip(xs.par_iter())` with `xs` a plain Vec.
        let mut ys = pool.array_from_fn(n as usize, |_| 1u32).unwrap();
        pool.par_iter_mut(&mut ys)
            .zip(pool.par_iter(&xs))
            .for_each(|(y, x): (&mut u32, u32)| *y += 2 * x)
            .unwrap();
        assert!(ys.iter().enumerate().all(|(i, &y)| y == 1 + 2 * i as u32));
    });
}

#[test]
fn a_staged_copy_lives_as_long_as_its_job_and_no_longer() {
    common::no_leaks(|| {
        let pool = pool(2);
        let before = pool.mempool().usage().allocations;
        let v = data(200_000);
        let it = pool.par_iter(&v).map(|x: u64| x + 1);
        // The copy exists while the iterator does ...
        assert_eq!(pool.mempool().usage().allocations, before + 1);
        let total: u64 = it.sum().unwrap();
        assert_eq!(total, v.iter().map(|x| x + 1).sum::<u64>());
        // ... and is freed once the job has ended.
        assert_eq!(pool.mempool().usage().allocations, before);
        drop(pool.par_iter(&v));
        assert_eq!(pool.mempool().usage().allocations, before);
        let _ = pool.par_map(&v, |x: u64| x).unwrap();
        assert_eq!(pool.mempool().usage().allocations, before);

        // A shared array is read in place: nothing is copied.
        let shared = pool.array_from_slice(&v).unwrap();
        assert!(!shared.stage(&pool).unwrap().is_copy());
        let with_array = pool.mempool().usage().allocations;
        let it = pool.par_iter(&shared);
        assert_eq!(pool.mempool().usage().allocations, with_array);
        assert_eq!(it.count().unwrap(), v.len());
    });
}

#[test]
fn both_staged_copies_of_a_zip_live_as_long_as_its_job() {
    common::no_leaks(|| {
        let pool = pool(2);
        let before = pool.mempool().usage().allocations;
        let (a, b) = (data(100_000), data(50_000));
        // A zip takes in the other iterator's staged copy (and a chain, both sides').
        let it = pool
            .par_iter(&a)
            .zip(pool.par_iter(&b))
            .map(|(x, y): (u64, u64)| x * 3 + y);
        assert_eq!(pool.mempool().usage().allocations, before + 2);
        let total: u64 = it.sum().unwrap();
        let want: u64 = a.iter().zip(&b).map(|(x, y)| x * 3 + y).sum();
        assert_eq!(total, want);
        assert_eq!(pool.mempool().usage().allocations, before);
        let it = pool.par_iter(&a).chain(pool.par_iter(&b));
        assert_eq!(pool.mempool().usage().allocations, before + 2);
        assert_eq!(it.collect_vec().unwrap(), [&a[..], &b[..]].concat());
        assert_eq!(pool.mempool().usage().allocations, before);
    });
}

#[test]
fn a_task_that_panics_on_staged_data_fails_the_job_and_frees_the_copy() {
    common::no_leaks(|| {
        let pool = pool(2);
        let before = pool.mempool().usage().allocations;
        let v = data(10_000);
        let r = pool
            .par_iter(&v)
            .map(|x: u64| {
                if x == 0 {
                    panic!("zero is not allowed");
                }
                x
            })
            .sum::<u64>();
        assert!(matches!(r, Err(Error::TaskPanicked { .. })), "{r:?}");
        assert_eq!(pool.mempool().usage().allocations, before);
        // The pool goes on serving.
        assert_eq!(pool.par_iter(&v[1..4]).count().unwrap(), 3);
    });
}

#[test]
fn data_too_big_to_stage_is_out_of_memory_from_the_terminal() {
    common::no_leaks(|| {
        let pool = Pool::builder()
            .workers(1)
            .mempool_size(8 << 20)
            .mempool_max(8 << 20)
            .build()
            .unwrap();
        let big = vec![7u64; 4 << 20]; // 32 MiB, four times the mempool
        let r = pool.par_iter(&big).sum::<u64>();
        assert!(matches!(r, Err(Error::OutOfMemory { .. })), "{r:?}");
        assert!(matches!(
            pool.par_map(&big, |x: u64| x),
            Err(Error::OutOfMemory { .. })
        ));
        assert_eq!(pool.par_iter(&big[..1000]).sum::<u64>().unwrap(), 7000);
    });
}
