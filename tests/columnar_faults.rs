//! Faults in the columnar and serde sources, with nothing left behind: a task that panics
//! in the middle of a `SharedStrings` or `par_iter_vec` stream fails its job with the
//! panic's message (so does a `finish` that panics), items that cannot be encoded or decoded are typed errors, the pool
//! serves on, the values are freed, and no process or file is left.
//!
//! The tests take one lock each, so that `no_leaks` (every descendant of this process
//! gone) sees only the pool of the test that runs.

mod common;

use std::sync::Mutex;

use procyon::{Error, Pool};
use serde::{Deserialize, Serialize};

/// One test at a time (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A pool of 2 workers that has run a first job (which grows its job table), and the
/// number of its mempool's allocations then: nothing a test does should leave more.
fn warm_pool() -> (Pool, usize) {
    let pool = Pool::builder()
        .workers(2)
        .mempool_size(32 << 20)
        .build()
        .unwrap();
    assert_eq!(pool.par_range(0u32..10).count().unwrap(), 10);
    let before = pool.mempool().usage().allocations;
    (pool, before)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Rec {
    id: u32,
    name: String,
    tags: Vec<u16>,
    score: Option<i64>,
}

/// Panics on the item "boom".
fn explode_word(w: &str) -> usize {
    if w == "boom" {
        panic!("item {w:?} exploded");
    }
    w.len()
}

#[test]
fn a_task_that_panics_mid_stream_fails_the_job_and_the_pool_serves_on() {
    let _one = serial();
    common::no_leaks(|| {
        let (pool, before) = warm_pool();
        let mut v: Vec<String> = (0..10_000).map(|i| format!("w{i}")).collect();
        v[6_789] = "boom".into();
        let s = pool.strings_from_slice(&v).unwrap();
        match pool.par_iter_strs(&s).map(explode_word).sum::<usize>() {
            Err(Error::TaskPanicked { message, .. }) => {
                assert!(message.contains("\"boom\" exploded"), "{message}")
            }
            other => panic!("expected TaskPanicked, got {other:?}"),
        }
        // The same value, still intact, on the same pool.
        v[6_789] = "fine".into();
        let t = pool.strings_from_slice(&v).unwrap();
        let got: usize = pool.par_iter_strs(&t).map(explode_word).sum().unwrap();
        assert_eq!(got, v.iter().map(String::len).sum::<usize>());
        assert_eq!(s.get(6_789), Some("boom"));
        drop((s, t));
        assert!(
            pool.mempool().usage().allocations <= before,
            "the values were freed"
        );
    });
}

/// Encodes differently from how it decodes: bincode cannot skip an absent field.
#[derive(Serialize, Deserialize)]
struct Skips {
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<u8>,
    b: u8,
}

/// Never encodes.
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unencodable)
    }
}

fn explode_record(r: Rec) -> u32 {
    if r.name == "boom" {
        panic!("record {} exploded", r.id);
    }
    r.id
}

#[test]
fn bad_items_and_panics_are_typed_errors_and_free_everything() {
    let _one = serial();
    common::no_leaks(|| {
        let (pool, before) = warm_pool();

        match pool.par_iter_vec(vec![Unencodable]).count() {
            Err(Error::Malformed { reason }) => {
                assert!(
                    reason.contains("item 0") && reason.contains("refuses"),
                    "{reason}"
                )
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
        let skips = vec![Skips { a: Some(1), b: 2 }, Skips { a: None, b: 3 }];
        match pool.par_iter_vec(skips).map(|s: Skips| s.b).collect_vec() {
            Err(Error::TaskPanicked { message, .. }) => {
                assert!(message.contains("does not decode"), "{message}")
            }
            other => panic!("expected TaskPanicked, got {other:?}"),
        }
        let mut v: Vec<Rec> = (0..10_000)
            .map(|id| Rec {
                id,
                name: format!("r{id}"),
                tags: vec![],
                score: None,
            })
            .collect();
        v[7_777].name = "boom".into();
        match pool
            .par_iter_vec(v.clone())
            .map(explode_record)
            .sum::<u32>()
        {
            Err(Error::TaskPanicked { message, .. }) => {
                assert!(message.contains("record 7777 exploded"), "{message}")
            }
            other => panic!("expected TaskPanicked, got {other:?}"),
        }
        v[7_777].name = "fine".into();
        let want: u64 = (0..10_000u64).sum();
        let got: u64 = pool
            .par_iter_vec(v)
            .map(|r: Rec| r.id as u64)
            .sum()
            .unwrap();
        assert_eq!(got, want);
        assert!(
            pool.mempool().usage().allocations <= before,
            "the encoded items were freed"
        );
    });
}

/// Panics in the `finish` of `fold_finish_reduce_unordered` when the local accumulator
/// holds the word "boom".
fn finish_or_explode(m: std::collections::HashMap<&str, u64>) -> Vec<(String, u64)> {
    if m.contains_key("boom") {
        panic!("finish met {:?}", "boom");
    }
    m.into_iter().map(|(w, c)| (w.to_owned(), c)).collect()
}

#[test]
fn a_finish_that_panics_fails_the_job_and_the_pool_serves_on() {
    let _one = serial();
    common::no_leaks(|| {
        let (pool, before) = warm_pool();
        let count = |s: &procyon::SharedStrings| {
            pool.par_iter_strs(s).fold_finish_reduce_unordered(
                std::collections::HashMap::new,
                |mut m: std::collections::HashMap<&str, u64>, w: &str| {
                    *m.entry(w).or_insert(0) += 1;
                    m
                },
                finish_or_explode,
                |mut a: Vec<(String, u64)>, b: Vec<(String, u64)>| {
                    a.extend(b);
                    a
                },
            )
        };
        let mut v: Vec<String> = (0..10_000).map(|i| format!("w{}", i % 100)).collect();
        v[4_321] = "boom".into();
        let s = pool.strings_from_slice(&v).unwrap();
        match count(&s) {
            Err(Error::TaskPanicked { message, .. }) => {
                assert!(message.contains("finish met \"boom\""), "{message}")
            }
            other => panic!("expected TaskPanicked, got {other:?}"),
        }
        v[4_321] = "w21".into();
        let t = pool.strings_from_slice(&v).unwrap();
        let mut got = count(&t).unwrap();
        got.sort_unstable();
        let mut want: Vec<(String, u64)> = Vec::new();
        for w in &v {
            match want.iter_mut().find(|(k, _)| k == w) {
                Some((_, c)) => *c += 1,
                None => want.push((w.clone(), 1)),
            }
        }
        want.sort_unstable();
        // The two workers' lists may both hold a word: add them up.
        let mut merged: Vec<(String, u64)> = Vec::new();
        for (w, c) in got {
            match merged.last_mut() {
                Some((k, n)) if *k == w => *n += c,
                _ => merged.push((w, c)),
            }
        }
        assert_eq!(merged, want);
        drop((s, t));
        assert!(
            pool.mempool().usage().allocations <= before,
            "the values were freed"
        );
    });
}
