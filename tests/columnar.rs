//! `SharedStrings` and `SharedVecs` against the sequential result (and rayon's, for the
//! order-keeping collects) on the same input: sizes 0, 1, 2, 7, 1000, random ones below
//! 1000 and a large one; empty items; non-ASCII UTF-8 (multi-byte letters, emoji, NUL);
//! 1 and 2 workers; chunks from one item to whole-job sized. Values of another mempool and
//! values too large for the mempool are typed errors. Faults (a task that panics
//! mid-stream) are in tests/columnar_faults.rs.
//!
//! Each test thread builds one pool per worker count once and reuses it (building a pool
//! forks processes); the pools go when the thread ends.

use std::collections::{BTreeMap, HashMap};

use procyon::{Error, IntoParIterOn, Pool, SharedStrings, SharedVecs};
use proptest::prelude::*;
use rayon::prelude::*;

thread_local! {
    static POOLS: Vec<Pool> = (1..=2)
        .map(|w| Pool::builder().workers(w).mempool_size(96 << 20).build().expect("pool builds"))
        .collect();
}

/// Runs `f` with the pool of `workers` workers of this thread.
fn with_pool<R>(workers: usize, f: impl FnOnce(&Pool) -> R) -> R {
    POOLS.with(|p| f(&p[workers - 1]))
}

/// Chunk bounds: `(min_len, max_len)`.
fn chunks() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        Just((1, usize::MAX)),
        Just((1, 1)),
        Just((1, 3)),
        Just((64, 64)),
        Just((2000, usize::MAX)),
    ]
}

/// Item counts the issue names, and random ones.
fn sizes() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(2),
        Just(7),
        Just(1000),
        0usize..1000
    ]
}

/// Strings of 0 to 6 characters, ASCII and not (2-, 3- and 4-byte UTF-8, NUL).
fn words() -> impl Strategy<Value = Vec<String>> {
    sizes().prop_flat_map(|n| proptest::collection::vec("[a-cé€😀\u{0}]{0,6}", n))
}

/// Vectors of 0 to 5 elements.
fn rows() -> impl Strategy<Value = Vec<Vec<u32>>> {
    sizes().prop_flat_map(|n| {
        proptest::collection::vec(proptest::collection::vec(0u32..1000, 0..6), n)
    })
}

const CASES: u32 = 48;

fn non_ascii(s: &str) -> bool {
    !s.is_ascii()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn strings_read_back_in_the_client(v in words()) {
        let pool = procyon::Mempool::new(16 << 20).unwrap();
        let s = SharedStrings::from_slice(&pool, &v).unwrap();
        prop_assert_eq!(s.len(), v.len());
        prop_assert_eq!(s.is_empty(), v.is_empty());
        prop_assert_eq!(s.total_bytes(), v.iter().map(String::len).sum::<usize>());
        prop_assert_eq!(s.to_vec(), v.clone());
        prop_assert_eq!(s.iter().rev().collect::<Vec<_>>(), v.iter().rev().map(String::as_str).collect::<Vec<_>>());
        for (i, w) in v.iter().enumerate() {
            prop_assert_eq!(s.get(i), Some(w.as_str()));
        }
        prop_assert_eq!(s.get(v.len()), None);
        let t = SharedStrings::from_iter_in(&pool, v.iter()).unwrap();
        prop_assert_eq!(t.to_vec(), v);
    }

    #[test]
    fn strings_through_every_kind_of_adapter(v in words(), workers in 1usize..=2, c in chunks()) {
        with_pool(workers, |pool| {
            let s = pool.strings_from_slice(&v).unwrap();
            let it = || pool.par_iter_strs(&s).with_min_len(c.0).with_max_len(c.1);

            let bytes: usize = it().map(|w: &str| w.len()).sum().unwrap();
            prop_assert_eq!(bytes, v.iter().map(String::len).sum::<usize>());
            prop_assert_eq!(it().count().unwrap(), v.len());
            prop_assert_eq!(
                it().filter(|w: &&str| non_ascii(w)).count().unwrap(),
                v.iter().filter(|w| non_ascii(w)).count()
            );
            // Order-keeping collects, against rayon.
            let upper: Vec<String> = it().map(|w: &str| w.to_uppercase()).collect_vec().unwrap();
            prop_assert_eq!(&upper, &v.par_iter().map(|w| w.to_uppercase()).collect::<Vec<_>>());
            let numbered: Vec<(usize, String)> = it()
                .enumerate()
                .filter_map(|(i, w): (usize, &str)| (!w.is_empty()).then(|| (i, w.to_owned())))
                .collect_vec()
                .unwrap();
            let want: Vec<(usize, String)> = v
                .par_iter()
                .enumerate()
                .filter_map(|(i, w)| (!w.is_empty()).then(|| (i, w.clone())))
                .collect();
            prop_assert_eq!(numbered, want);
            let chars: Vec<char> = it().flat_map(|w: &str| w.chars().collect::<Vec<_>>()).collect_vec().unwrap();
            prop_assert_eq!(chars, v.iter().flat_map(|w| w.chars()).collect::<Vec<_>>());
            // Concatenation is associative but not commutative: the input order must hold.
            let joined = it()
                .map(|w: &str| w.to_owned())
                .reduce(String::new, |a: String, b: String| a + &b)
                .unwrap();
            prop_assert_eq!(joined, v.concat());
            let parts = it().fold(|| 0usize, |n: usize, w: &str| n + w.chars().count()).unwrap();
            prop_assert_eq!(parts.iter().sum::<usize>(), v.iter().map(|w| w.chars().count()).sum::<usize>());
            let longest = it().map(|w: &str| w.to_owned()).max_by_key(|w: &String| w.len()).unwrap();
            prop_assert_eq!(longest.map(|w| w.len()), v.iter().map(String::len).max());
            let first = it().map(|w: &str| w.to_owned()).min_by(|a: &String, b: &String| a.cmp(b)).unwrap();
            prop_assert_eq!(first.as_ref(), v.iter().min());
            let set: std::collections::BTreeSet<String> = it().map(|w: &str| w.to_owned()).collect().unwrap();
            prop_assert_eq!(set, v.iter().cloned().collect());
            it().for_each(|w: &str| assert!(std::str::from_utf8(w.as_bytes()).is_ok())).unwrap();
            let via_trait: usize = (&s).into_par_iter_on(pool).map(|w: &str| w.len()).sum().unwrap();
            prop_assert_eq!(via_trait, bytes);
            // A word count whose workers key their maps by the shared `&str`s and copy
            // each distinct word once, in `finish`; and how many maps came back (at most
            // one per worker, whatever the chunking).
            type Owned = (BTreeMap<String, u64>, usize);
            let (counts, maps): Owned = it()
                .fold_finish_reduce_unordered(
                    HashMap::new,
                    |mut m: HashMap<&str, u64>, w: &str| { *m.entry(w).or_insert(0) += 1; m },
                    |m: HashMap<&str, u64>| -> Owned { (m.into_iter().map(|(w, c)| (w.to_owned(), c)).collect(), 1) },
                    |(mut a, n): Owned, (b, k): Owned| { for (w, c) in b { *a.entry(w).or_insert(0) += c; } (a, n + k) },
                )
                .unwrap();
            let mut want = BTreeMap::new();
            for w in &v {
                *want.entry(w.clone()).or_insert(0u64) += 1;
            }
            prop_assert_eq!(counts, want);
            prop_assert!(maps >= 1 && maps <= workers, "{} maps from {} workers", maps, workers);
            Ok(())
        })?;
    }

    #[test]
    fn vecs_read_back_and_through_adapters(v in rows(), workers in 1usize..=2, c in chunks()) {
        with_pool(workers, |pool| {
            let s = pool.vecs_from_slice(&v).unwrap();
            prop_assert_eq!(s.len(), v.len());
            prop_assert_eq!(s.total_len(), v.iter().map(Vec::len).sum::<usize>());
            prop_assert_eq!(s.to_vec(), v.clone());
            prop_assert_eq!(SharedVecs::from_iter_in(pool.mempool(), v.iter()).unwrap().to_vec(), v.clone());
            let it = || pool.par_iter_vecs(&s).with_min_len(c.0).with_max_len(c.1);

            let sums: Vec<u64> = it().map(|r: &[u32]| r.iter().map(|&x| x as u64).sum()).collect_vec().unwrap();
            prop_assert_eq!(sums, v.par_iter().map(|r| r.iter().map(|&x| x as u64).sum()).collect::<Vec<u64>>());
            let flat: Vec<u32> = it().flat_map(|r: &[u32]| r.to_vec()).collect_vec().unwrap();
            prop_assert_eq!(flat, v.concat());
            let empty = it().filter(|r: &&[u32]| r.is_empty()).count().unwrap();
            prop_assert_eq!(empty, v.iter().filter(|r| r.is_empty()).count());
            let total: u64 = it().map(|r: &[u32]| r.len() as u64).sum().unwrap();
            prop_assert_eq!(total, s.total_len() as u64);
            let widest = it().enumerate().map(|(i, r): (usize, &[u32])| (r.len(), i)).min_by_key(|p: &(usize, usize)| (usize::MAX - p.0, p.1)).unwrap();
            let want = v.iter().enumerate().map(|(i, r)| (r.len(), i)).min_by_key(|p| (usize::MAX - p.0, p.1));
            prop_assert_eq!(widest, want);
            // Rows borrowed by the workers' local accumulators, finished into sums.
            let (elems, longest) = it()
                .fold_finish_reduce_unordered(
                    Vec::new,
                    |mut kept: Vec<&[u32]>, r: &[u32]| { kept.push(r); kept },
                    |kept: Vec<&[u32]>| (kept.iter().map(|r| r.iter().map(|&x| x as u64).sum::<u64>()).sum::<u64>(), kept.iter().map(|r| r.len()).max().unwrap_or(0)),
                    |a: (u64, usize), b: (u64, usize)| (a.0 + b.0, a.1.max(b.1)),
                )
                .unwrap();
            prop_assert_eq!(elems, v.iter().flatten().map(|&x| x as u64).sum::<u64>());
            prop_assert_eq!(longest, v.iter().map(Vec::len).max().unwrap_or(0));
            Ok(())
        })?;
    }
}

#[test]
fn a_large_list_of_strings_matches_the_sequential_sum() {
    let v: Vec<String> = (0..1_000_003u64)
        .map(|i| "é".repeat((i % 5) as usize) + &(i * 2654435761 % 1000).to_string())
        .collect();
    let want: usize = v.iter().map(|w| w.chars().count()).sum();
    for workers in 1..=2 {
        with_pool(workers, |pool| {
            let s = pool.strings_from_slice(&v).unwrap();
            let got: usize = pool
                .par_iter_strs(&s)
                .map(|w: &str| w.chars().count())
                .sum()
                .unwrap();
            assert_eq!(got, want, "{workers} workers");
            assert_eq!(s.get(1_000_002), Some(v[1_000_002].as_str()));
        });
    }
}

#[test]
fn a_value_of_another_pool_is_a_clear_error() {
    with_pool(1, |pool| {
        let other = procyon::Mempool::new(4 << 20).unwrap();
        let s = SharedStrings::from_slice(&other, &["a"]).unwrap();
        match pool.par_iter_strs(&s).count() {
            Err(Error::InvalidDescriptor { reason }) => {
                assert!(reason.contains("build it with this pool"), "{reason}")
            }
            other => panic!("expected InvalidDescriptor, got {other:?}"),
        }
        let v = SharedVecs::from_slice(&other, &[[1u8]]).unwrap();
        assert!(matches!(
            pool.par_iter_vecs(&v).count(),
            Err(Error::InvalidDescriptor { .. })
        ));
    });
}

#[test]
fn a_value_too_large_for_the_mempool_is_out_of_memory() {
    let pool = procyon::Mempool::new(1 << 20).unwrap();
    let big = vec!["x".repeat(4096); 1024];
    assert!(matches!(
        SharedStrings::from_slice(&pool, &big),
        Err(Error::OutOfMemory { .. })
    ));
    assert!(matches!(
        SharedStrings::from_iter_in(&pool, big.iter()),
        Err(Error::OutOfMemory { .. })
    ));
    // Nothing is left allocated by the failed builds.
    let s = SharedStrings::from_slice(&pool, &["x".repeat(512 << 10)]).unwrap();
    assert_eq!(s.total_bytes(), 512 << 10);
}
