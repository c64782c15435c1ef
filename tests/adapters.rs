//! Every adapter and terminal of `ParIter` (and `par_iter_mut`) against rayon's result on
//! the same input:
//! sizes 0, 1, 2, 7, 1000 and random ones below 1000 (and one 1_000_003 case), 1 to 4
//! workers, chunks from one item to whole-job sized. Reductions that are associative but
//! not commutative (concatenation) must keep the input order.
//!
//! Each test thread builds one pool per worker count once and reuses it for every case
//! (building a pool forks processes); the pools go when the thread ends.

use std::collections::{BTreeMap, HashMap};
use std::num::Wrapping;

use procyon::{Ctx, Error, IntoParIterOn, ParExtend, Pool};
use proptest::prelude::*;
use rayon::prelude::*;

thread_local! {
    static POOLS: Vec<Pool> = (1..=4)
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

/// Inputs of the sizes the issue names, and random ones.
fn data() -> impl Strategy<Value = Vec<u32>> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(2),
        Just(7),
        Just(1000),
        // Past the 1,024-item blocks `zip` and `rev` buffer at a time.
        Just(2100),
        0usize..1000
    ]
    .prop_flat_map(|n| proptest::collection::vec(0u32..1000, n))
}

/// rayon's iterator over `v`, by value.
fn r(v: &[u32]) -> impl IndexedParallelIterator<Item = u32> + '_ {
    v.par_iter().copied()
}

/// `pool.par_iter(&arr)` with chunk bounds `c`.
macro_rules! par {
    ($pool:expr, $arr:expr, $c:expr) => {
        $pool.par_iter(&$arr).with_min_len($c.0).with_max_len($c.1)
    };
}

const CASES: u32 = 96;

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, .. ProptestConfig::default() })]

    /// map, filter, filter_map, flat_map, enumerate (after a map), skip, take, zip (equal
    /// and unequal lengths), chain, collected in order.
    #[test]
    fn stages_match_rayon(xs in data(), ys in data(), workers in 1usize..=4, c in chunks(), k in 0usize..1100) {
        with_pool(workers, |pool| {
            let a = pool.array_from_slice(&xs).unwrap();
            let b = pool.array_from_slice(&ys).unwrap();

            let got = par!(pool, a, c).map(|x: u32| x as u64 * 3).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).map(|x| x as u64 * 3).collect::<Vec<_>>());
            let got = par!(pool, a, c).filter(|x: &u32| x % 3 == 0).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).filter(|x| x % 3 == 0).collect::<Vec<_>>());
            let got = par!(pool, a, c).filter_map(|x: u32| (x % 4 == 1).then_some(x / 4)).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).filter_map(|x| (x % 4 == 1).then_some(x / 4)).collect::<Vec<_>>());
            let got = par!(pool, a, c).flat_map(|x: u32| vec![x; (x % 4) as usize]).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).flat_map(|x| vec![x; (x % 4) as usize]).collect::<Vec<_>>());
            let got = par!(pool, a, c).map(|x: u32| x ^ 5).enumerate().collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).map(|x| x ^ 5).enumerate().collect::<Vec<_>>());
            let got = par!(pool, a, c).skip(k).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).skip(k).collect::<Vec<_>>());
            let got = par!(pool, a, c).take(k).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).take(k).collect::<Vec<_>>());
            let got = par!(pool, a, c).skip(k / 3).take(k / 2).enumerate().collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).skip(k / 3).take(k / 2).enumerate().collect::<Vec<_>>());
            let got = par!(pool, a, c).zip(pool.par_iter(&b).map(|y: u32| y as u64)).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).zip(r(&ys).map(|y| y as u64)).collect::<Vec<_>>());
            let got = par!(pool, a, c).zip(pool.par_iter(&a)).map(|(x, y): (u32, u32)| x + y).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).zip(r(&xs)).map(|(x, y)| x + y).collect::<Vec<_>>());
            let got = par!(pool, a, c).chain(pool.par_iter(&b).map(|y: u32| y + 1)).enumerate().collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).chain(r(&ys).map(|y| y + 1)).enumerate().collect::<Vec<_>>());
            let got = par!(pool, a, c).map(|x: u32| x / 2).rev().enumerate().skip(k / 4).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).map(|x| x / 2).rev().enumerate().skip(k / 4).collect::<Vec<_>>());
            let got = par!(pool, a, c).zip(pool.par_iter(&b).rev()).rev().collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).zip(r(&ys).rev()).rev().collect::<Vec<_>>());
            let got = par!(pool, a, c).map(|x: u32| vec![x; (x % 3) as usize]).flatten().collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).map(|x| vec![x; (x % 3) as usize]).flatten().collect::<Vec<_>>());
            let got = par!(pool, a, c).flat_map_iter(|x: u32| (0..x % 3).map(move |i| x + i)).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).flat_map_iter(|x| (0..x % 3).map(move |i| x + i)).collect::<Vec<_>>());
            let size = k % 9 + 1;
            let got = par!(pool, a, c).chunks(size).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).chunks(size).collect::<Vec<_>>());
            let got = par!(pool, a, c).map(|x: u32| x % 7).chunks(size).enumerate().map(|(i, v): (usize, Vec<u32>)| i as u32 * 100 + v.iter().sum::<u32>()).collect_vec().unwrap();
            prop_assert_eq!(got, r(&xs).map(|x| x % 7).chunks(size).enumerate().map(|(i, v)| i as u32 * 100 + v.iter().sum::<u32>()).collect::<Vec<_>>());
            // Indexed adapters over a range and after a zip, then a filter.
            let got = pool.par_range(0u32..xs.len() as u32).with_max_len(c.1).zip(pool.par_iter(&a)).skip(1).filter(|(i, x): &(u32, u32)| (i + x) % 2 == 0).collect_vec().unwrap();
            prop_assert_eq!(got, (0u32..xs.len() as u32).into_par_iter().zip(r(&xs)).skip(1).filter(|(i, x)| (i + x) % 2 == 0).collect::<Vec<_>>());
            Ok(())
        })?;
    }

    /// Searches, in input order where rayon keeps it.
    #[test]
    fn searches_match_rayon(xs in data(), workers in 1usize..=4, c in chunks(), m in 1u32..60) {
        with_pool(workers, |pool| {
            let a = pool.array_from_slice(&xs).unwrap();
            let r = || xs.par_iter().copied();
            let hit = |x: &u32| x % 60 == 7;
            prop_assert_eq!(par!(pool, a, c).find_first(|x: &u32| x % 60 == 7).unwrap(), r().find_first(hit));
            prop_assert_eq!(par!(pool, a, c).find_last(|x: &u32| x % 60 == 7).unwrap(), r().find_last(hit));
            prop_assert_eq!(par!(pool, a, c).position_first(|x: u32| x % 60 == 7).unwrap(), r().position_first(|x| hit(&x)));
            prop_assert_eq!(par!(pool, a, c).position_last(|x: u32| x % 60 == 7).unwrap(), r().position_last(|x| hit(&x)));
            match par!(pool, a, c).position_any(|x: u32| x % 60 == 7).unwrap() {
                Some(i) => prop_assert!(hit(&xs[i])),
                None => prop_assert!(!xs.iter().any(hit)),
            }
            match par!(pool, a, c).find_any(|x: &u32| x % 60 == 7).unwrap() {
                Some(x) => prop_assert!(hit(&x)),
                None => prop_assert!(!xs.iter().any(hit)),
            }
            // After a map: the searched items are the mapped ones.
            let got = par!(pool, a, c).map_with(m, |m: &u32, x: u32| x % m).find_first(|x: &u32| *x == 0).unwrap();
            prop_assert_eq!(got, r().map(|x| x % m).find_first(|x| *x == 0));
            prop_assert_eq!(par!(pool, a, c).any(|x: u32| x > 990).unwrap(), r().any(|x| x > 990));
            prop_assert_eq!(par!(pool, a, c).all(|x: u32| x > 5).unwrap(), r().all(|x| x > 5));
            Ok(())
        })?;
    }

    /// Reductions, folds, min/max forms (ties as std), collections.
    #[test]
    fn reductions_match_rayon(xs in data(), workers in 1usize..=4, c in chunks()) {
        with_pool(workers, |pool| {
            let a = pool.array_from_slice(&xs).unwrap();
            let r = || xs.par_iter().copied();

            // Concatenation: associative, not commutative.
            let got = par!(pool, a, c).map(|x: u32| x.to_string()).reduce(String::new, |a: String, b: String| a + &b).unwrap();
            prop_assert_eq!(got, r().map(|x| x.to_string()).reduce(String::new, |a, b| a + &b));
            let got = par!(pool, a, c).map(|x: u32| vec![x]).reduce_with(|mut a: Vec<u32>, mut b: Vec<u32>| { a.append(&mut b); a }).unwrap();
            prop_assert_eq!(got, r().map(|x| vec![x]).reduce_with(|mut a, mut b| { a.append(&mut b); a }));
            let got: Wrapping<u64> = par!(pool, a, c).map(|x: u32| Wrapping(x as u64 | 1)).product().unwrap();
            prop_assert_eq!(got, r().map(|x| Wrapping(x as u64 | 1)).product::<Wrapping<u64>>());
            let got: u64 = par!(pool, a, c).map(|x: u32| x as u64).sum().unwrap();
            prop_assert_eq!(got, r().map(|x| x as u64).sum::<u64>());

            // f64 keys with many ties; the index tells which of equals was kept.
            let keyed = |v: &[u32]| v.iter().enumerate().map(|(i, &x)| ((x % 10) as f64 * 0.5, i)).collect::<Vec<_>>();
            let by = |p: &(f64, usize), q: &(f64, usize)| p.0.total_cmp(&q.0);
            let seq = keyed(&xs);
            let got = par!(pool, a, c).enumerate().map(|(i, x): (usize, u32)| ((x % 10) as f64 * 0.5, i)).min_by(|p: &(f64, usize), q: &(f64, usize)| p.0.total_cmp(&q.0)).unwrap();
            prop_assert_eq!(got, seq.iter().copied().min_by(by));
            prop_assert_eq!(got, seq.par_iter().copied().min_by(by));
            let got = par!(pool, a, c).enumerate().map(|(i, x): (usize, u32)| ((x % 10) as f64 * 0.5, i)).max_by(|p: &(f64, usize), q: &(f64, usize)| p.0.total_cmp(&q.0)).unwrap();
            prop_assert_eq!(got, seq.iter().copied().max_by(by));
            prop_assert_eq!(got, seq.par_iter().copied().max_by(by));
            let got = par!(pool, a, c).enumerate().min_by_key(|(_, x): &(usize, u32)| x % 10).unwrap();
            prop_assert_eq!(got, r().enumerate().min_by_key(|(_, x)| x % 10));
            let got = par!(pool, a, c).enumerate().max_by_key(|(_, x): &(usize, u32)| x % 10).unwrap();
            prop_assert_eq!(got, r().enumerate().max_by_key(|(_, x)| x % 10));
            prop_assert_eq!(par!(pool, a, c).min().unwrap(), r().min());
            prop_assert_eq!(par!(pool, a, c).max().unwrap(), r().max());

            let folds = par!(pool, a, c).fold(Vec::new, |mut v: Vec<u32>, x: u32| { v.push(x); v }).unwrap();
            prop_assert_eq!(folds.concat(), xs.clone());
            let folds = par!(pool, a, c).fold_with(String::from(">"), |s: String, x: u32| s + &x.to_string()).unwrap();
            prop_assert_eq!(folds.concat().replace('>', ""), xs.iter().map(|x| x.to_string()).collect::<String>());

            // A histogram: one accumulator per worker that ran chunks (however many it
            // ran: one item per chunk included), `identity()` alone for no items.
            type Hist = (BTreeMap<u32, u64>, u32);
            let got: Hist = par!(pool, a, c).fold_reduce_unordered(
                || (BTreeMap::new(), 1),
                |(mut m, n): Hist, x: u32| { *m.entry(x % 17).or_insert(0) += 1; (m, n) },
                |(mut m, n): Hist, (b, k): Hist| { for (x, c) in b { *m.entry(x).or_insert(0) += c; } (m, n + k) },
            ).unwrap();
            let want = r().fold(BTreeMap::new, |mut m, x| { *m.entry(x % 17).or_insert(0u64) += 1; m })
                .reduce(BTreeMap::new, |mut m, b| { for (x, c) in b { *m.entry(x).or_insert(0) += c; } m });
            prop_assert_eq!(&got.0, &want);
            prop_assert!(got.1 >= 1 && got.1 as usize <= workers, "{} accumulators from {} workers", got.1, workers);

            let (l, rr): (Vec<u32>, Vec<u64>) = par!(pool, a, c).map(|x: u32| (x, x as u64 * 2)).unzip().unwrap();
            let (el, er): (Vec<u32>, Vec<u64>) = r().map(|x| (x, x as u64 * 2)).unzip();
            prop_assert_eq!((l, rr), (el, er));
            let (l, rr): (Vec<u32>, Vec<u32>) = par!(pool, a, c).partition(|x: &u32| x % 3 == 0).unwrap();
            let (el, er): (Vec<u32>, Vec<u32>) = r().partition(|x| x % 3 == 0);
            prop_assert_eq!((l, rr), (el, er));

            let got: HashMap<u32, usize> = par!(pool, a, c).enumerate().map(|(i, x): (usize, u32)| (x, i)).collect().unwrap();
            prop_assert_eq!(got, r().enumerate().map(|(i, x)| (x, i)).collect::<HashMap<_, _>>());
            let got: BTreeMap<u32, usize> = par!(pool, a, c).enumerate().map(|(i, x): (usize, u32)| (x, i)).collect().unwrap();
            prop_assert_eq!(got, r().enumerate().map(|(i, x)| (x, i)).collect::<BTreeMap<_, _>>());
            let got: String = par!(pool, a, c).map(|x: u32| char::from(b'a' + (x % 26) as u8)).collect().unwrap();
            prop_assert_eq!(got, r().map(|x| char::from(b'a' + (x % 26) as u8)).collect::<String>());
            let got: Vec<u32> = par!(pool, a, c).collect().unwrap();
            prop_assert_eq!(&got, &xs);
            let mut v = vec![7u32];
            ParExtend::par_extend(&mut v, par!(pool, a, c).map(|x: u32| x + 1)).unwrap();
            let mut e = vec![7u32];
            ParallelExtend::par_extend(&mut e, r().map(|x| x + 1));
            prop_assert_eq!(v, e);
            // Not a Vec: the items one by one (later duplicates win, as in rayon).
            let mut m = HashMap::from([(u32::MAX, 0usize)]);
            ParExtend::par_extend(&mut m, par!(pool, a, c).enumerate().map(|(i, x): (usize, u32)| (x, i))).unwrap();
            let mut em = HashMap::from([(u32::MAX, 0usize)]);
            ParallelExtend::par_extend(&mut em, r().enumerate().map(|(i, x)| (x, i)));
            prop_assert_eq!(m, em);
            Ok(())
        })?;
    }

    /// try_for_each / try_fold / try_reduce return the first failure in input order.
    #[test]
    fn fallible_terminals_match_rayon(xs in data(), workers in 1usize..=4, c in chunks(), bad in 900u32..1000) {
        with_pool(workers, |pool| {
            let a = pool.array_from_slice(&xs).unwrap();
            let r = || xs.par_iter().copied();
            let first_bad = xs.iter().copied().find(|&x| x >= bad);

            let got = par!(pool, a, c).map_with(bad, |b: &u32, x: u32| (x, *b)).try_for_each(|(x, b): (u32, u32)| if x >= b { Err(x) } else { Ok(()) }).unwrap();
            prop_assert_eq!(got, first_bad.map_or(Ok(()), Err));
            let rayon_got = r().try_for_each(|x| if x >= bad { Err(x) } else { Ok(()) });
            prop_assert_eq!(got.is_err(), rayon_got.is_err());
            let got = par!(pool, a, c).try_for_each(|x: u32| (x < 995).then_some(())).unwrap();
            prop_assert_eq!(got, r().try_for_each(|x| (x < 995).then_some(())));

            let got = par!(pool, a, c).map(|x: u32| if x >= 990 { Err(x) } else { Ok(x.to_string()) }).try_reduce(String::new, |a: String, b: String| Ok(a + &b)).unwrap();
            let seq: Result<String, u32> = xs.iter().map(|&x| if x >= 990 { Err(x) } else { Ok(x.to_string()) }).collect();
            prop_assert_eq!(&got, &seq);
            let rayon_got = r().map(|x| if x >= 990 { Err(x) } else { Ok(x.to_string()) }).try_reduce(String::new, |a, b| Ok(a + &b));
            prop_assert_eq!(got.is_ok(), rayon_got.is_ok());
            if let (Ok(g), Ok(e)) = (&got, &rayon_got) {
                prop_assert_eq!(g, e);
            }
            // The op itself fails: a checked sum that overflows u16.
            let got = par!(pool, a, c).map(|x: u32| Some(x as u16)).try_reduce(|| 0u16, |a: u16, b: u16| a.checked_add(b)).unwrap();
            prop_assert_eq!(got, r().map(|x| Some(x as u16)).try_reduce(|| 0u16, |a, b| a.checked_add(b)));

            let got = par!(pool, a, c).try_fold(|| 0u64, |acc: u64, x: u32| if x >= 998 { Err(x) } else { Ok(acc + x as u64) }).unwrap();
            let expect = xs.iter().copied().find(|&x| x >= 998);
            match (got, expect) {
                (Ok(parts), None) => prop_assert_eq!(parts.iter().sum::<u64>(), xs.iter().map(|&x| x as u64).sum::<u64>()),
                (Err(x), Some(e)) => prop_assert_eq!(x, e),
                (got, expect) => return Err(TestCaseError::fail(format!("{got:?} vs first failure {expect:?}"))),
            }
            Ok(())
        })?;
    }

    /// The `_with`, `_init`, `_ctx` and `_with_ctx` forms of every adapter.
    #[test]
    fn state_forms_match_rayon(xs in data(), workers in 1usize..=4, c in chunks(), k in 1u32..50) {
        with_pool(workers, |pool| {
            let a = pool.array_from_slice(&xs).unwrap();
            let r = || xs.par_iter().copied();
            let table: Vec<u32> = (0..k).map(|i| i * i).collect();

            let got = par!(pool, a, c).filter_with(k, |k: &u32, x: &u32| x % k == 0).collect_vec().unwrap();
            prop_assert_eq!(got, r().filter(|x| x % k == 0).collect::<Vec<_>>());
            let got = par!(pool, a, c).filter_init(|| 3u32, |t: &mut u32, x: &u32| x % *t == 0).collect_vec().unwrap();
            prop_assert_eq!(got, r().filter(|x| x % 3 == 0).collect::<Vec<_>>());
            let got = par!(pool, a, c).filter_map_with(table.clone(), |t: &Vec<u32>, x: u32| t.get(x as usize).copied()).collect_vec().unwrap();
            prop_assert_eq!(got, r().filter_map(|x| table.get(x as usize).copied()).collect::<Vec<_>>());
            let got = par!(pool, a, c).filter_map_init(Vec::new, |scratch: &mut Vec<u32>, x: u32| { scratch.push(x); (x % 2 == 0).then_some(x) }).collect_vec().unwrap();
            prop_assert_eq!(got, r().filter(|x| x % 2 == 0).collect::<Vec<_>>());
            let got = par!(pool, a, c).flat_map_with(k, |k: &u32, x: u32| (0..x % k).map(move |i| (x, i))).collect_vec().unwrap();
            prop_assert_eq!(got, r().flat_map_iter(|x| (0..x % k).map(move |i| (x, i))).collect::<Vec<_>>());
            let got = par!(pool, a, c).flat_map_init(|| 2usize, |n: &mut usize, x: u32| vec![x; *n]).collect_vec().unwrap();
            prop_assert_eq!(got, r().flat_map(|x| vec![x; 2]).collect::<Vec<_>>());
            let got = par!(pool, a, c).map_with_ctx(k, |k: &u32, ctx: &Ctx, x: u32| (x * k, ctx.is_cancelled())).collect_vec().unwrap();
            prop_assert_eq!(got, r().map(|x| (x * k, false)).collect::<Vec<_>>());
            let got = par!(pool, a, c).map_init(|| 10u32, |t: &mut u32, x: u32| x + *t).enumerate().skip(1).collect_vec().unwrap();
            prop_assert_eq!(got, r().map(|x| x + 10).enumerate().skip(1).collect::<Vec<_>>());
            par!(pool, a, c).for_each_with(k, |k: &u32, x: u32| assert!(x < 1000 && *k > 0)).unwrap();
            par!(pool, a, c).for_each_init(|| 1u32, |one: &mut u32, x: u32| assert!(x + *one > 0)).unwrap();
            par!(pool, a, c).for_each_ctx(|ctx: &Ctx, _x: u32| assert!(!ctx.is_cancelled())).unwrap();
            par!(pool, a, c).for_each_with_ctx(k, |k: &u32, ctx: &Ctx, _x: u32| assert!(*k > 0 && !ctx.is_cancelled())).unwrap();
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, .. ProptestConfig::default() })]

    /// `par_iter_mut` alone, enumerated, and zipped with read-only iterators of equal and
    /// unequal lengths, against rayon's `par_iter_mut` on a `Vec`.
    #[test]
    fn iter_mut_matches_rayon(xs in data(), ys in data(), workers in 1usize..=4, c in chunks(), k in 0u32..9) {
        with_pool(workers, |pool| {
            let b = pool.array_from_slice(&ys).unwrap();
            let mut a = pool.array_from_slice(&xs).unwrap();
            let mut e = xs.clone();

            pool.par_iter_mut(&mut a).with_min_len(c.0).with_max_len(c.1).for_each(|x: &mut u32| *x = *x * 3 + 1).unwrap();
            e.par_iter_mut().for_each(|x| *x = *x * 3 + 1);
            prop_assert_eq!(a.to_vec(), e.clone());

            pool.par_iter_mut(&mut a).with_max_len(c.1).for_each_with(k, |k: &u32, x: &mut u32| *x ^= k).unwrap();
            e.par_iter_mut().for_each(|x| *x ^= k);
            prop_assert_eq!(a.to_vec(), e.clone());

            pool.par_iter_mut(&mut a).with_max_len(c.1).enumerate().for_each(|(i, x): (usize, &mut u32)| *x += i as u32).unwrap();
            e.par_iter_mut().enumerate().for_each(|(i, x)| *x += i as u32);
            prop_assert_eq!(a.to_vec(), e.clone());

            pool.par_iter_mut(&mut a).enumerate().with_max_len(c.1).for_each_with(k, |k: &u32, (i, x): (usize, &mut u32)| *x = x.wrapping_sub(i as u32 * k)).unwrap();
            e.par_iter_mut().enumerate().for_each(|(i, x)| *x = x.wrapping_sub(i as u32 * k));
            prop_assert_eq!(a.to_vec(), e.clone());

            pool.par_iter_mut(&mut a).zip(pool.par_iter(&b)).with_max_len(c.1).for_each(|(y, x): (&mut u32, u32)| *y = y.wrapping_add(x)).unwrap();
            e.par_iter_mut().zip(ys.par_iter()).for_each(|(y, x)| *y = y.wrapping_add(*x));
            prop_assert_eq!(a.to_vec(), e.clone());

            pool.par_iter_mut(&mut a).zip(pool.par_iter(&b).map(|x: u32| x / 2).rev()).with_min_len(c.0).for_each_with(k, |k: &u32, (y, x): (&mut u32, u32)| *y = y.wrapping_mul(k + 1) ^ x).unwrap();
            e.par_iter_mut().zip(ys.par_iter().map(|x| x / 2).rev()).for_each(|(y, x)| *y = y.wrapping_mul(k + 1) ^ x);
            prop_assert_eq!(a.to_vec(), e);
            Ok(())
        })?;
    }
}

/// `spawn_with`: the state reaches the task, which may start nested jobs with it.
#[test]
fn spawn_with_carries_state_into_a_task() {
    with_pool(2, |pool| {
        let xs: Vec<u64> = (0..500).collect();
        let h = pool
            .spawn_with(xs.clone(), |xs: &Vec<u64>, ctx: &Ctx| {
                let n = xs.len() as u64;
                let nested: u64 = ctx
                    .par_range(0..n)
                    .map_with(xs.clone(), |xs: &Vec<u64>, i: u64| xs[i as usize] * 2)
                    .sum()
                    .unwrap();
                (xs.iter().sum::<u64>(), nested)
            })
            .unwrap();
        let s: u64 = xs.iter().sum();
        assert_eq!(h.wait().unwrap(), (s, 2 * s));
    });
}

/// Ranges of every primitive integer type, against rayon's ranges of the same type
/// (reversed ranges are empty on purpose).
#[test]
#[allow(clippy::reversed_empty_ranges)]
fn ranges_of_every_integer_type() {
    macro_rules! check {
        ($pool:expr, $($t:ty: $a:expr, $b:expr);*) => {$(
            let got = $pool.par_range::<$t>($a..$b).with_max_len(7).collect_vec().unwrap();
            assert_eq!(got, ($a..$b).into_par_iter().collect::<Vec<$t>>(), stringify!($t));
            let got = (($a as $t)..$b).into_par_iter_on($pool).map(|x: $t| x as i128).sum::<i128>().unwrap();
            assert_eq!(got, (($a as $t)..$b).into_par_iter().map(|x| x as i128).sum::<i128>(), stringify!($t));
            assert_eq!($pool.par_range::<$t>($b..$a).count().unwrap(), 0, "empty {}", stringify!($t));
            let got = (($a as $t)..=$b).into_par_iter_on($pool).with_max_len(5).collect_vec().unwrap();
            assert_eq!(got, (($a as $t)..=$b).into_par_iter().collect::<Vec<$t>>(), "inclusive {}", stringify!($t));
            assert_eq!((($b as $t)..=$a).into_par_iter_on($pool).count().unwrap(), 0, "empty inclusive {}", stringify!($t));
        )*};
    }
    with_pool(2, |pool| {
        check!(pool,
            u8: 0, 255; u16: 100, 5000; u32: 7, 70_000; u64: u64::MAX - 300, u64::MAX;
            usize: 0, 1000; i8: -128, 127; i16: -3000, 3000; i32: -70_000, 70_000;
            i64: i64::MIN, i64::MIN + 999; isize: -5, 5);
    });
}

/// Collected numbers come back bit for bit, whichever way they are collected (a chunk's
/// vector of a primitive number type travels as its bytes, anything else item by
/// item): floats with their sign of zero and NaN payloads, 128-bit integers, and the
/// types that are not numbers (`bool`, `char`) beside them.
#[test]
fn collected_numbers_come_back_bit_for_bit() {
    let bits: Vec<u64> = (0..3000u64)
        .map(|i| match i % 5 {
            0 => (-0.0f64).to_bits(),
            1 => 0x7ff8_0000_dead_beef + i,
            2 => f64::NEG_INFINITY.to_bits(),
            _ => (i as f64 * 1.5).to_bits(),
        })
        .collect();
    with_pool(2, |pool| {
        let src = pool.array_from_slice(&bits).unwrap();
        let got: Vec<f64> = pool
            .par_iter(&src)
            .with_max_len(64)
            .map(|b: u64| f64::from_bits(b))
            .collect_vec()
            .unwrap();
        assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), bits);
        let got: Vec<f32> = pool
            .par_iter(&src)
            .with_max_len(7)
            .map(|b: u64| f32::from_bits(b as u32))
            .collect()
            .unwrap();
        let want: Vec<u32> = bits.iter().map(|&b| b as u32).collect();
        assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want);
        let (wide, signed): (Vec<u128>, Vec<i128>) = pool
            .par_range(0u64..3000)
            .with_max_len(100)
            .map(|i: u64| ((i as u128) << 70 | 1, -((i as i128) << 90)))
            .unzip()
            .unwrap();
        assert_eq!(wide, (0..3000u128).map(|i| i << 70 | 1).collect::<Vec<_>>());
        assert_eq!(
            signed,
            (0..3000i128).map(|i| -(i << 90)).collect::<Vec<_>>()
        );
        let mut ext = vec![u16::MAX];
        ParExtend::par_extend(
            &mut ext,
            pool.par_range(0u16..2000)
                .with_max_len(9)
                .map(|x: u16| x * 3),
        )
        .unwrap();
        let want: Vec<u16> = std::iter::once(u16::MAX)
            .chain((0..2000).map(|x| x * 3))
            .collect();
        assert_eq!(ext, want);
        let flags: Vec<(bool, char)> = pool
            .par_range(0u32..1000)
            .with_max_len(13)
            .map(|i: u32| (i % 3 == 0, char::from_u32(0x1F600 + i % 80).unwrap()))
            .collect_vec()
            .unwrap();
        let want: Vec<(bool, char)> = (0u32..1000)
            .map(|i| (i % 3 == 0, char::from_u32(0x1F600 + i % 80).unwrap()))
            .collect();
        assert_eq!(flags, want);
    });
}

/// The longest inclusive ranges: every value of a type, and one integer too many.
#[test]
fn inclusive_ranges_up_to_the_type_limits() {
    with_pool(2, |pool| {
        assert_eq!(
            (i8::MIN..=i8::MAX).into_par_iter_on(pool).count().unwrap(),
            256
        );
        assert_eq!(
            (u8::MAX..=u8::MAX)
                .into_par_iter_on(pool)
                .collect_vec()
                .unwrap(),
            [255]
        );
        let first = (u64::MAX - 2..=u64::MAX)
            .into_par_iter_on(pool)
            .find_first(|_: &u64| true);
        assert_eq!(first.unwrap(), Some(u64::MAX - 2));
        let r = (0u64..=u64::MAX).into_par_iter_on(pool).count();
        assert!(matches!(r, Err(Error::InvalidConfig { .. })), "{r:?}");
    });
}

/// One size above a million, for the indexed adapters and a search.
#[test]
fn a_million_and_three() {
    const N: usize = 1_000_003;
    with_pool(3, |pool| {
        let xs: Vec<u32> = (0..N as u32)
            .map(|i| i.wrapping_mul(2_654_435_761) % 1_000_000)
            .collect();
        let a = pool.array_from_slice(&xs).unwrap();
        let got: u64 = pool
            .par_iter(&a)
            .zip(pool.par_range(0u64..N as u64 - 5))
            .skip(3)
            .map(|(x, i): (u32, u64)| x as u64 ^ i)
            .sum()
            .unwrap();
        let expect: u64 = xs
            .par_iter()
            .zip((0..N - 5).into_par_iter().map(|i| i as u64))
            .skip(3)
            .map(|(&x, i)| x as u64 ^ i)
            .sum();
        assert_eq!(got, expect);
        let got = pool
            .par_iter(&a)
            .enumerate()
            .take(N - 10)
            .filter_map(|(i, x): (usize, u32)| (x < 10).then_some(i))
            .collect_vec()
            .unwrap();
        let expect: Vec<usize> = xs
            .par_iter()
            .enumerate()
            .take(N - 10)
            .filter_map(|(i, &x)| (x < 10).then_some(i))
            .collect();
        assert_eq!(got, expect);
        let got = pool
            .par_iter(&a)
            .find_last(|x: &u32| *x == 999_999)
            .unwrap();
        assert_eq!(got, xs.par_iter().copied().find_last(|x| *x == 999_999));
        let got = pool
            .par_iter(&a)
            .position_first(|x: u32| x == 999_999)
            .unwrap();
        assert_eq!(got, xs.par_iter().position_first(|&x| x == 999_999));
    });
}

/// Combining iterators of two pools is bad input, reported by the terminal operation.
#[test]
fn zip_and_chain_across_pools_are_errors() {
    with_pool(1, |one| {
        with_pool(2, |two| {
            let r = one.par_range(0u32..10).zip(two.par_range(0u32..10)).count();
            assert!(matches!(r, Err(Error::InvalidConfig { .. })), "{r:?}");
            let r = one
                .par_range(0u32..10)
                .chain(two.par_range(0u32..10))
                .collect_vec();
            assert!(matches!(r, Err(Error::InvalidConfig { .. })), "{r:?}");
            // Both pools still serve.
            assert_eq!(
                two.par_range(0u32..10)
                    .zip(two.par_range(5u32..8))
                    .count()
                    .unwrap(),
                3
            );
            assert_eq!(one.par_range(0u32..10).count().unwrap(), 10);
        })
    });
}

/// An array of another pool inside a zip is reported as such.
#[test]
fn zip_with_a_foreign_array_is_an_error() {
    with_pool(1, |one| {
        with_pool(2, |two| {
            let foreign = two.array_from_slice(&[1u32, 2, 3]).unwrap();
            let r = one.par_range(0u32..3).zip(one.par_iter(&foreign)).count();
            assert!(matches!(r, Err(Error::InvalidDescriptor { .. })), "{r:?}");
        })
    });
}
