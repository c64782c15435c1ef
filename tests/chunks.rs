//! `par_chunks` / `par_chunks_with` against rayon's `par_chunks`, and
//! `par_chunks_mut_reading` against rayon's `par_chunks_mut` reading a captured slice, on
//! the same input: sizes 0, 1, 2, 7, 1000 and random ones, chunk lengths 1 to past the
//! length, 1 to 3 workers; bad input.

use procyon::{Error, Pool};
use proptest::prelude::*;
use rayon::prelude::*;

thread_local! {
    static POOLS: Vec<Pool> = (1..=3)
        .map(|w| Pool::builder().workers(w).mempool_size(32 << 20).build().expect("pool builds"))
        .collect();
}

fn blur(src: &[u32], i: usize) -> u64 {
    let at = |j: usize| src.get(j).map_or(0, |&v| v as u64);
    at(i.wrapping_sub(1)) + 2 * at(i) + at(i + 1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn chunks_match_rayon(
        xs in prop_oneof![Just(0usize), Just(1), Just(2), Just(7), Just(1000), 0usize..3000]
            .prop_flat_map(|n| proptest::collection::vec(any::<u32>(), n)),
        len in prop_oneof![Just(1usize), 1usize..20, 900usize..4000],
        workers in 1usize..=3,
    ) {
        POOLS.with(|pools| {
            let pool = &pools[workers - 1];
            let a = pool.array_from_slice(&xs).unwrap();
            let got = pool
                .par_chunks(&a, len, |o: usize, c: &[u32]| (o, c.iter().map(|&v| v as u64).sum::<u64>()))
                .unwrap();
            let expect: Vec<(usize, u64)> = xs
                .par_chunks(len)
                .enumerate()
                .map(|(i, c)| (i * len, c.iter().map(|&v| v as u64).sum::<u64>()))
                .collect();
            prop_assert_eq!(got, expect);
            let got = pool
                .par_chunks_with(&a, len, 3u32, |k: &u32, _: usize, c: &[u32]| c.iter().filter(|&&v| v % k == 0).count())
                .unwrap();
            let expect: Vec<usize> = xs.par_chunks(len).map(|c| c.iter().filter(|&&v| v % 3 == 0).count()).collect();
            prop_assert_eq!(got, expect);
            // A 3-point stencil from `a` into another array.
            let mut out = pool.array_zeroed::<u64>(xs.len()).unwrap();
            pool.par_chunks_mut_reading(&a, &mut out, len, |src: &[u32], off: usize, o: &mut [u64]| {
                for (k, v) in o.iter_mut().enumerate() {
                    *v = blur(src, off + k);
                }
            })
            .unwrap();
            let mut expect = vec![0u64; xs.len()];
            expect.par_chunks_mut(len).enumerate().for_each(|(c, o)| {
                for (k, v) in o.iter_mut().enumerate() {
                    *v = blur(&xs, c * len + k);
                }
            });
            prop_assert_eq!(out.to_vec(), expect);
            Ok(())
        })?;
    }
}

#[test]
fn bad_input_is_an_error() {
    let pool = Pool::builder()
        .workers(1)
        .mempool_size(16 << 20)
        .build()
        .unwrap();
    let a = pool.array_from_fn(10, |i| i as u8).unwrap();
    let r = pool.par_chunks(&a, 0, |_: usize, c: &[u8]| c.len());
    assert!(matches!(r, Err(Error::InvalidConfig { .. })), "{r:?}");
    let other = Pool::builder()
        .workers(1)
        .mempool_size(16 << 20)
        .build()
        .unwrap();
    let b = other.array_from_fn(10, |i| i as u8).unwrap();
    let r = pool.par_chunks(&b, 3, |_: usize, c: &[u8]| c.len());
    assert!(matches!(r, Err(Error::InvalidDescriptor { .. })), "{r:?}");
    let r = pool.par_chunks(&a, 3, |_: usize, c: &[u8]| -> usize {
        if c[0] == 6 {
            panic!("chunk at 6")
        }
        c.len()
    });
    assert!(matches!(r, Err(Error::TaskPanicked { .. })), "{r:?}");
    let mut out = pool.array_zeroed::<u8>(10).unwrap();
    let r = pool.par_chunks_mut_reading(&a, &mut out, 0, |_: &[u8], _: usize, _: &mut [u8]| {});
    assert!(matches!(r, Err(Error::InvalidConfig { .. })), "{r:?}");
    let r = pool.par_chunks_mut_reading(&b, &mut out, 2, |_: &[u8], _: usize, _: &mut [u8]| {});
    assert!(matches!(r, Err(Error::InvalidDescriptor { .. })), "{r:?}");
    assert_eq!(
        pool.par_chunks(&a, 3, |_: usize, c: &[u8]| c.len())
            .unwrap(),
        [3, 3, 3, 1]
    );
}
