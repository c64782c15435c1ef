//! `pool.par_iter_vec(items)` over serde values against the sequential result on the same
//! input: sizes 0, 1, 2, 7, 1000 and random ones below 1000; strings (non-ASCII, empty),
//! nested vectors, options; 1 and 2 workers; chunks from one item to whole-job sized;
//! combined with other iterators (`zip`, `chain`, `par_iter_mut(..).zip`), which must keep
//! the encoded items alive until the job has ended. Faults (bad items, a panicking task)
//! are in tests/columnar_faults.rs.

use procyon::Pool;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

thread_local! {
    static POOLS: Vec<Pool> = (1..=2)
        .map(|w| Pool::builder().workers(w).mempool_size(64 << 20).build().expect("pool builds"))
        .collect();
}

fn with_pool<R>(workers: usize, f: impl FnOnce(&Pool) -> R) -> R {
    POOLS.with(|p| f(&p[workers - 1]))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Rec {
    id: u32,
    name: String,
    tags: Vec<u16>,
    score: Option<i64>,
}

fn recs() -> impl Strategy<Value = Vec<Rec>> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(2),
        Just(7),
        Just(1000),
        0usize..1000
    ]
    .prop_flat_map(|n| {
        proptest::collection::vec(
            (
                any::<u32>(),
                "[a-zé😀]{0,5}",
                proptest::collection::vec(any::<u16>(), 0..4),
                proptest::option::of(any::<i64>()),
            )
                .prop_map(|(id, name, tags, score)| Rec {
                    id,
                    name,
                    tags,
                    score,
                }),
            n,
        )
    })
}

fn chunks() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        Just((1, usize::MAX)),
        Just((1, 1)),
        Just((1, 3)),
        Just((64, 64)),
        Just((2000, usize::MAX))
    ]
}

fn label(r: Rec) -> String {
    format!("{}:{}:{}", r.id, r.name, r.tags.len())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn serde_items_through_every_kind_of_adapter(v in recs(), workers in 1usize..=2, c in chunks()) {
        with_pool(workers, |pool| {
            let it = || pool.par_iter_vec(v.clone()).with_min_len(c.0).with_max_len(c.1);
            prop_assert_eq!(it().collect_vec().unwrap(), v.clone());
            prop_assert_eq!(it().count().unwrap(), v.len());
            let labels = it().map(label).collect_vec().unwrap();
            prop_assert_eq!(&labels, &v.iter().cloned().map(label).collect::<Vec<_>>());
            let scored = it().filter_map(|r: Rec| r.score).collect_vec().unwrap();
            prop_assert_eq!(scored, v.iter().filter_map(|r| r.score).collect::<Vec<_>>());
            let tags: u64 = it().flat_map(|r: Rec| r.tags).map(|t: u16| t as u64).sum().unwrap();
            prop_assert_eq!(tags, v.iter().flat_map(|r| &r.tags).map(|&t| t as u64).sum::<u64>());
            let joined = it().map(|r: Rec| r.name).reduce(String::new, |a: String, b: String| a + &b).unwrap();
            prop_assert_eq!(joined, v.iter().map(|r| r.name.as_str()).collect::<String>());
            let parts = it().fold(|| 0usize, |n: usize, r: Rec| n + r.name.len()).unwrap();
            prop_assert_eq!(parts.iter().sum::<usize>(), v.iter().map(|r| r.name.len()).sum::<usize>());
            let first_max = it().enumerate().map(|(i, r): (usize, Rec)| (r.id, i)).max_by_key(|p: &(u32, usize)| (p.0, usize::MAX - p.1)).unwrap();
            prop_assert_eq!(first_max, v.iter().enumerate().map(|(i, r)| (r.id, i)).max_by_key(|p| (p.0, usize::MAX - p.1)));
            // Combined with other sources: both sides' items in order.
            let zipped = pool.par_range(0u32..v.len() as u32).zip(it()).map(|(i, r): (u32, Rec)| (i, r.id)).collect_vec().unwrap();
            prop_assert_eq!(zipped, v.iter().enumerate().map(|(i, r)| (i as u32, r.id)).collect::<Vec<_>>());
            let chained = it().map(|r: Rec| r.id).chain(pool.par_iter_vec(vec![7u32, 8])).collect_vec().unwrap();
            prop_assert_eq!(chained, v.iter().map(|r| r.id).chain([7, 8]).collect::<Vec<_>>());
            Ok(())
        })?;
    }
}

#[test]
fn par_iter_mut_zipped_with_serde_items_keeps_them_alive() {
    with_pool(2, |pool| {
        let words: Vec<String> = (0..5000).map(|i| "é".repeat(i % 7)).collect();
        let mut lens = pool.array_zeroed::<u64>(words.len()).unwrap();
        pool.par_iter_mut(&mut lens)
            .zip(pool.par_iter_vec(words.clone()))
            .for_each(|(n, w): (&mut u64, String)| *n = w.len() as u64)
            .unwrap();
        assert_eq!(
            lens.to_vec(),
            words.iter().map(|w| w.len() as u64).collect::<Vec<_>>()
        );
    });
}
