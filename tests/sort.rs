//! `par_sort` and its forms against std's sort on the same input: sizes 0, 1, 2, 7,
//! 1000, 100_003 and random ones, 1 to 3 workers, stability with keys, floats through
//! `total_cmp`, one 10 M `u64` case, and bad input.

use std::cmp::Ordering;
use std::time::Instant;

use procyon::{Error, Pool};
use proptest::prelude::*;

thread_local! {
    static POOLS: Vec<Pool> = (1..=3)
        .map(|w| Pool::builder().workers(w).mempool_size(64 << 20).build().expect("pool builds"))
        .collect();
}

fn with_pool<R>(workers: usize, f: impl FnOnce(&Pool) -> R) -> R {
    POOLS.with(|p| f(&p[workers - 1]))
}

/// Sizes the issue names, and random ones.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(2),
        Just(7),
        Just(1000),
        Just(100_003),
        0usize..5000
    ]
}

/// Values from a narrow or a wide range: many ties, or almost none.
fn values(n: usize) -> impl Strategy<Value = Vec<u64>> {
    prop_oneof![
        proptest::collection::vec(0u64..16, n),
        proptest::collection::vec(any::<u64>(), n),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, .. ProptestConfig::default() })]

    /// Every form sorts as std does; the stable ones keep the order of equal keys.
    #[test]
    fn every_form_matches_std(xs in size().prop_flat_map(values), workers in 1usize..=3) {
        with_pool(workers, |pool| {
            let mut a = pool.array_from_slice(&xs).unwrap();
            pool.par_sort(&mut a).unwrap();
            let mut expect = xs.clone();
            expect.sort();
            prop_assert_eq!(a.to_vec(), expect.clone());

            let mut a = pool.array_from_slice(&xs).unwrap();
            pool.par_sort_unstable(&mut a).unwrap();
            prop_assert_eq!(a.to_vec(), expect);

            let mut a = pool.array_from_slice(&xs).unwrap();
            pool.par_sort_unstable_by(&mut a, |x: &u64, y: &u64| y.cmp(x)).unwrap();
            let mut expect = xs.clone();
            expect.sort_unstable_by(|x, y| y.cmp(x));
            prop_assert_eq!(a.to_vec(), expect);

            // Stability: (value, original index) sorted by value alone.
            let pairs: Vec<[u64; 2]> = xs.iter().enumerate().map(|(i, &x)| [x % 7, i as u64]).collect();
            let mut expect = pairs.clone();
            expect.sort_by_key(|p| p[0]);
            let mut a = pool.array_from_slice(&pairs).unwrap();
            pool.par_sort_by_key(&mut a, |p: &[u64; 2]| p[0]).unwrap();
            prop_assert_eq!(a.to_vec(), expect.clone());
            let mut a = pool.array_from_slice(&pairs).unwrap();
            pool.par_sort_by(&mut a, |p: &[u64; 2], q: &[u64; 2]| p[0].cmp(&q[0])).unwrap();
            prop_assert_eq!(a.to_vec(), expect);

            let mut a = pool.array_from_slice(&pairs).unwrap();
            pool.par_sort_unstable_by_key(&mut a, |p: &[u64; 2]| p[0]).unwrap();
            let keys: Vec<u64> = a.iter().map(|p| p[0]).collect();
            let mut expect: Vec<u64> = pairs.iter().map(|p| p[0]).collect();
            expect.sort_unstable();
            prop_assert_eq!(keys, expect);
            // Still a permutation of the input.
            let mut back = a.to_vec();
            back.sort_by_key(|p| p[1]);
            prop_assert_eq!(back, pairs);
            Ok(())
        })?;
    }

    /// Floats through `total_cmp`, NaNs and signed zeros included.
    #[test]
    fn floats_sort_by_total_cmp(xs in proptest::collection::vec(any::<f64>(), 0..3000), workers in 1usize..=3) {
        with_pool(workers, |pool| {
            let mut a = pool.array_from_slice(&xs).unwrap();
            pool.par_sort_unstable_by(&mut a, |x: &f64, y: &f64| x.total_cmp(y)).unwrap();
            let mut expect = xs.clone();
            expect.sort_unstable_by(|x, y| x.total_cmp(y));
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&a), bits(&expect));
            Ok(())
        })?;
    }
}

#[test]
fn ten_million_u64_sort_as_std_does() {
    let n = 10_000_000;
    let pool = Pool::builder()
        .workers(2)
        .mempool_size(256 << 20)
        .build()
        .unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u64> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    let mut a = pool.array_from_slice(&data).unwrap();
    let t = Instant::now();
    pool.par_sort_unstable(&mut a).unwrap();
    let took = t.elapsed();
    let mut expect = data;
    expect.sort_unstable();
    assert!(a[..] == expect[..], "10 M sorted as std");
    eprintln!("par_sort_unstable of 10 M u64 on 2 workers: {took:?}");
    let base = pool.mempool().usage().in_use;
    drop(a);
    assert!(pool.mempool().usage().in_use < base, "the array is freed");
}

#[test]
fn bad_input_is_an_error() {
    let pool = Pool::builder()
        .workers(2)
        .mempool_size(16 << 20)
        .mempool_max(16 << 20)
        .build()
        .unwrap();
    // No room for the scratch array: the array is left as it was.
    let data: Vec<u64> = (0..1_200_000u64).rev().collect();
    let mut big = pool.array_from_slice(&data).unwrap();
    let r = pool.par_sort(&mut big);
    assert!(matches!(r, Err(Error::OutOfMemory { .. })), "{r:?}");
    assert!(big[..] == data[..]);
    drop(big);
    // An array of another pool.
    let other = Pool::builder()
        .workers(1)
        .mempool_size(16 << 20)
        .mempool_max(16 << 20)
        .build()
        .unwrap();
    let mut foreign = other.array_from_fn(100, |i| i as u32).unwrap();
    let r = pool.par_sort(&mut foreign);
    assert!(matches!(r, Err(Error::InvalidDescriptor { .. })), "{r:?}");
    // A comparison that panics.
    let mut a = pool
        .array_from_fn(10_000, |i| (i * 7919 % 10_007) as u32)
        .unwrap();
    let r = pool.par_sort_by(&mut a, |x: &u32, y: &u32| {
        if *x == 5000 {
            panic!("no fives")
        }
        x.cmp(y)
    });
    assert!(
        matches!(&r, Err(Error::TaskPanicked { message, .. }) if message.contains("no fives")),
        "{r:?}"
    );
    // A comparison that is no order at all: an answer or an error, never a hang.
    let r = pool.par_sort_by(&mut a, |x: &u32, y: &u32| {
        if (x ^ y) % 3 == 0 {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    });
    assert!(
        matches!(r, Ok(()) | Err(Error::TaskPanicked { .. })),
        "{r:?}"
    );
    // The pool serves on.
    pool.par_sort(&mut a).unwrap();
    assert!(a.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(pool.jobs_in_flight(), 0);
}

#[test]
fn a_task_sorts_an_array_of_its_own_with_nested_jobs() {
    for workers in [1, 2] {
        let pool = Pool::builder()
            .workers(workers)
            .mempool_size(64 << 20)
            .build()
            .unwrap();
        let sorted = pool
            .spawn(|ctx: &procyon::Ctx| {
                let mut a = ctx
                    .array_from_fn(50_000, |i| (i as u64 * 2_654_435_761) % 1_000_003)
                    .unwrap();
                ctx.par_sort(&mut a).unwrap();
                a.windows(2).all(|w| w[0] <= w[1]) && a.len() == 50_000
            })
            .unwrap()
            .wait()
            .unwrap();
        assert!(sorted, "workers = {workers}");
        assert_eq!(pool.jobs_in_flight(), 0);
    }
}
