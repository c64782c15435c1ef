//! Every bad input gets a typed error whose message says what to do: never a panic, a
//! hang, or a leaked process. One test per family of inputs; each also checks that the
//! pool (when one was built) still serves the next job.

mod common;

use std::time::{Duration, Instant};

use procyon::{ArrayDesc, Error, Pool, RawArrayDesc, SharedArray};

fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .mempool_size(64 << 20)
        .mempool_max(64 << 20)
        .build()
        .expect("pool builds")
}

/// The error's message: non-empty, and containing every one of `hints` (what to do).
fn says(e: &Error, hints: &[&str]) -> String {
    let msg = e.to_string();
    assert!(!msg.trim().is_empty(), "empty message for {e:?}");
    for h in hints {
        assert!(
            msg.contains(h),
            "message of {e:?} does not say {h:?}: {msg}"
        );
    }
    msg
}

fn config_error<T>(r: procyon::Result<T>, hints: &[&str]) -> String {
    match r {
        Err(e @ Error::InvalidConfig { .. }) => says(&e, hints),
        Err(e) => panic!("expected InvalidConfig, got {e:?}"),
        Ok(_) => panic!("expected InvalidConfig, got Ok"),
    }
}

fn serves(pool: &Pool) {
    let x = pool.array_from_fn(1000, |i| i as u64).unwrap();
    let y = pool.par_map(&x, |v: u64| v + 1).unwrap();
    assert!(y.iter().enumerate().all(|(i, &v)| v == i as u64 + 1));
}

#[test]
fn worker_counts() {
    common::no_leaks(|| {
        config_error(
            Pool::builder().workers(0).mempool_size(64 << 20).build(),
            &["workers", "at least 1"],
        );
        // procyon caps a pool at 256 workers (one pin bit each in a job header).
        config_error(
            Pool::builder()
                .workers(100_000)
                .mempool_size(64 << 20)
                .build(),
            &["100000", "at most 256"],
        );
        config_error(
            Pool::builder().workers(257).mempool_size(64 << 20).build(),
            &["at most 256"],
        );
    });
}

#[test]
fn mempool_sizes() {
    common::no_leaks(|| {
        config_error(
            Pool::builder().workers(1).mempool_size(0).build(),
            &["mempool", "at least 1 MiB"],
        );
        config_error(
            Pool::builder().workers(1).mempool_size(4096).build(),
            &["below the minimum", "at least 1 MiB"],
        );
        // Larger than the machine, and larger than anything addressable.
        config_error(
            Pool::builder().workers(1).mempool_size(1 << 50).build(),
            &["exceeds", "at most"],
        );
        config_error(
            Pool::builder().workers(1).mempool_size(usize::MAX).build(),
            &["exceeds"],
        );
        // The smallest accepted mempool still runs jobs; what does not fit is OutOfMemory.
        let small = Pool::builder()
            .workers(1)
            .mempool_size(1 << 20)
            .mempool_max(1 << 20)
            .build()
            .expect("1 MiB mempool builds");
        serves(&small);
        match small.array_zeroed::<u8>(2 << 20) {
            Err(e @ Error::OutOfMemory { .. }) => {
                says(&e, &["larger mempool"]);
            }
            other => panic!("expected OutOfMemory, got {:?}", other.map(|a| a.len())),
        }
    });
}

#[test]
fn camlbox_geometry() {
    common::no_leaks(|| {
        config_error(
            Pool::builder()
                .workers(1)
                .mempool_size(64 << 20)
                .slot_size(8)
                .build(),
            &["slot_size", "at least 64"],
        );
        config_error(
            Pool::builder()
                .workers(1)
                .mempool_size(64 << 20)
                .slot_size(0)
                .build(),
            &["slot_size"],
        );
        config_error(
            Pool::builder()
                .workers(1)
                .mempool_size(64 << 20)
                .inbox_slots(1)
                .build(),
            &["inbox_slots", "at least 2"],
        );
        config_error(
            Pool::builder()
                .workers(1)
                .mempool_size(64 << 20)
                .inbox_slots(0)
                .build(),
            &["inbox_slots"],
        );
        // Too many or too large slots are refused by the camlbox itself, before any fork.
        config_error(
            Pool::builder()
                .workers(1)
                .mempool_size(64 << 20)
                .inbox_slots(1 << 20)
                .build(),
            &["slots"],
        );
        config_error(
            Pool::builder()
                .workers(1)
                .mempool_size(64 << 20)
                .slot_size(1 << 30)
                .build(),
            &["slot size"],
        );
        // The smallest accepted geometry works.
        let p = Pool::builder()
            .workers(2)
            .mempool_size(64 << 20)
            .inbox_slots(2)
            .slot_size(64)
            .build()
            .unwrap();
        serves(&p);
        // And the standalone camlbox API has the same contract.
        config_error(procyon::Camlbox::new(0, 64), &["slots"]);
        config_error(procyon::Camlbox::new(4, 7), &["slot size"]);
        let b = procyon::Camlbox::new(2, 16).unwrap();
        match b.sender::<Vec<u8>>().try_send(&vec![0u8; 100]) {
            Err(e @ Error::MessageTooLarge { size: 108, max: 16 }) => {
                says(&e, &["SharedArray"]);
            }
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
    });
}

#[test]
fn chunk_sizes() {
    common::no_leaks(|| {
        config_error(
            Pool::builder()
                .workers(1)
                .mempool_size(64 << 20)
                .min_len(0)
                .build(),
            &["min_len"],
        );
        config_error(
            Pool::builder()
                .workers(1)
                .mempool_size(64 << 20)
                .max_len(0)
                .build(),
            &["max_len"],
        );
        config_error(
            Pool::builder()
                .workers(1)
                .mempool_size(64 << 20)
                .min_len(10)
                .max_len(5)
                .build(),
            &["larger than max_len"],
        );
        let pool = pool(2);
        let mut a = pool.array_zeroed::<u32>(100).unwrap();
        config_error(
            pool.par_chunks_mut(&mut a, 0, |_: usize, _: &mut [u32]| {}),
            &["chunk length 0", "at least 1"],
        );
        // Iterator chunk bounds of 0 are an error of the terminal operation, not a panic.
        config_error(
            pool.par_iter(&a)
                .with_max_len(0)
                .map(|x: u32| x as u64)
                .sum::<u64>(),
            &["at least 1"],
        );
        config_error(
            pool.par_iter(&a)
                .with_min_len(0)
                .map(|x: u32| x as u64)
                .sum::<u64>(),
            &["at least 1"],
        );
        config_error(
            pool.par_range(0..10)
                .with_min_len(0)
                .with_max_len(0)
                .count(),
            &["at least 1"],
        );
        config_error(
            pool.par_range(0..10).with_max_len(0).spawn_collect_vec(),
            &["at least 1"],
        );
        // Nothing was left half-submitted: the pool serves, and its memory is back.
        let base = pool.mempool().usage();
        serves(&pool);
        assert_eq!(pool.mempool().usage().in_use, base.in_use);
    });
}

#[test]
fn arrays_larger_than_the_mempool() {
    common::no_leaks(|| {
        let pool = pool(2);
        let base = pool.mempool().usage();
        // The last length overflows the byte count itself.
        for len in [65 << 20, 1 << 40, usize::MAX / 4] {
            match pool.array_zeroed::<u64>(len) {
                Err(e @ Error::OutOfMemory { .. }) => {
                    says(&e, &["out of memory", "larger mempool"]);
                }
                other => panic!(
                    "expected OutOfMemory for {len} u64s, got {:?}",
                    other.map(|a| a.len())
                ),
            }
        }
        // The input fits, the output does not: the error comes before any work, and
        // nothing stays allocated.
        let x = pool.array_zeroed::<u8>(40 << 20).unwrap();
        assert!(matches!(
            pool.par_map(&x, |v: u8| v),
            Err(Error::OutOfMemory { .. })
        ));
        assert!(matches!(
            pool.par_map_vec(vec![vec![0u8; 1 << 20]; 80], |v: Vec<u8>| v.len()),
            Err(Error::OutOfMemory { .. })
        ));
        drop(x);
        assert_eq!(pool.mempool().usage().in_use, base.in_use);
        serves(&pool);
    });
}

#[test]
fn mismatched_lengths() {
    common::no_leaks(|| {
        let pool = pool(1);
        let a = pool.array_zeroed::<u32>(10).unwrap();
        for n in [0, 9, 11, 1000] {
            let mut b = pool.array_zeroed::<u64>(n).unwrap();
            match pool.par_map_into(&a, &mut b, |x: u32| x as u64) {
                Err(e @ Error::LengthMismatch { expected: 10, .. }) => {
                    says(&e, &["length mismatch", "expected 10"]);
                }
                other => panic!("expected LengthMismatch for {n}, got {other:?}"),
            }
            // SAFETY: the call is rejected before any job starts.
            let spawned = unsafe { pool.spawn_map_into(&a, &mut b, |x: u32| x as u64) };
            assert!(matches!(spawned, Err(Error::LengthMismatch { .. })));
        }
        serves(&pool);
    });
}

#[test]
fn arrays_of_another_pool() {
    common::no_leaks(|| {
        let a = pool(1);
        let b = pool(1);
        let mine = a.array_from_fn(10, |i| i as u32).unwrap();
        let mut theirs = b.array_zeroed::<u32>(10).unwrap();
        let hint = ["create it with this pool"];
        match a.par_map(&theirs, |x: u32| x) {
            Err(e @ Error::InvalidDescriptor { .. }) => {
                says(&e, &hint);
            }
            other => panic!("expected InvalidDescriptor, got {:?}", other.map(|_| ())),
        }
        assert!(matches!(
            a.par_map_into(&mine, &mut theirs, |x: u32| x),
            Err(Error::InvalidDescriptor { .. })
        ));
        assert!(matches!(
            a.par_chunks_mut(&mut theirs, 2, |_: usize, _: &mut [u32]| {}),
            Err(Error::InvalidDescriptor { .. })
        ));
        assert!(matches!(
            a.par_iter(&theirs).sum::<u32>(),
            Err(Error::InvalidDescriptor { .. })
        ));
        assert!(matches!(
            a.par_iter(&theirs).map(|x: u32| x).collect_array(),
            Err(Error::InvalidDescriptor { .. })
        ));
        // Adopting into the wrong pool is refused too.
        let desc = b.array_zeroed::<u32>(3).unwrap().into_desc();
        assert!(matches!(
            SharedArray::adopt_in(a.mempool(), desc),
            Err(Error::InvalidDescriptor { .. })
        ));
        drop(SharedArray::adopt(desc).expect("its own pool adopts it"));
        serves(&a);
        serves(&b);
    });
}

#[test]
fn freed_stale_and_forged_descriptors() {
    common::no_leaks(|| {
        let pool = pool(1);
        let base = pool.mempool().usage();

        // A descriptor of an array that was dropped.
        let arr = pool.array_from_fn(100, |i| i as u64).unwrap();
        let desc = arr.desc();
        drop(arr);
        match SharedArray::adopt(desc) {
            Err(e @ Error::InvalidDescriptor { .. }) => {
                says(&e, &["invalid array descriptor"]);
            }
            other => panic!(
                "expected InvalidDescriptor, got {:?}",
                other.map(|a| a.len())
            ),
        }
        assert!(matches!(
            desc.validate(),
            Err(Error::InvalidDescriptor { .. })
        ));
        // Its memory was reused by a new array: the generation still tells them apart.
        let reuse = pool.array_zeroed::<u64>(100).unwrap();
        assert!(matches!(
            desc.validate(),
            Err(Error::InvalidDescriptor { .. })
        ));
        assert!(matches!(
            SharedArray::adopt(desc),
            Err(Error::InvalidDescriptor { .. })
        ));

        // A borrowed descriptor (still owned by a handle) cannot be adopted; an owned one
        // only once.
        assert!(matches!(
            SharedArray::adopt(reuse.desc()),
            Err(Error::InvalidDescriptor { .. })
        ));
        let owned = reuse.into_desc();
        let back = SharedArray::adopt(owned).unwrap();
        match SharedArray::adopt(owned) {
            Err(e @ Error::InvalidDescriptor { .. }) => {
                says(&e, &["already adopted"]);
            }
            other => panic!(
                "expected InvalidDescriptor, got {:?}",
                other.map(|a| a.len())
            ),
        }
        drop(back);

        // The wrong element type.
        let words = pool.array_zeroed::<u32>(8).unwrap();
        match words.desc().into_raw().typed::<u64>() {
            Err(e @ Error::InvalidDescriptor { .. }) => {
                says(&e, &["element type mismatch"]);
            }
            other => panic!("expected InvalidDescriptor, got {other:?}"),
        }
        // A chunk out of range.
        // SAFETY: `words` is alive; the call fails before any access.
        match unsafe { words.desc().chunk(4..9) } {
            Err(
                e @ Error::OutOfRange {
                    start: 4,
                    end: 9,
                    len: 8,
                },
            ) => {
                says(&e, &["out of bounds"]);
            }
            other => panic!("expected OutOfRange, got {other:?}"),
        }

        // Forged descriptors (bytes off the wire): wrong generation, offset past the
        // region, a length that overflows, an unknown pool.
        let raw = words.desc().into_raw();
        let fields: [u64; 6] = bincode::deserialize(&bincode::serialize(&raw).unwrap()).unwrap();
        assert_eq!(
            (fields[0], fields[2]),
            (raw.pool_id(), 8),
            "field order of RawArrayDesc"
        );
        let forge = |i: usize, v: u64| -> ArrayDesc<u32> {
            let mut f = fields;
            f[i] = v;
            let raw: RawArrayDesc = bincode::deserialize(&bincode::serialize(&f).unwrap()).unwrap();
            raw.typed::<u32>().unwrap()
        };
        for (what, d) in [
            ("generation", forge(5, raw.generation() + 1)),
            ("offset past the end", forge(1, 1 << 40)),
            ("offset inside another block", forge(1, raw.offset() + 64)),
            ("length overflow", forge(2, u64::MAX / 2)),
            ("length beyond the block", forge(2, 1 << 20)),
            ("unknown pool", forge(0, raw.pool_id() ^ 1)),
        ] {
            match d.validate() {
                Err(e @ Error::InvalidDescriptor { .. }) => {
                    says(&e, &[]);
                }
                other => panic!("forged descriptor ({what}) accepted: {other:?}"),
            }
            assert!(
                SharedArray::adopt(d).is_err(),
                "forged descriptor ({what}) adopted"
            );
        }
        drop(words);
        assert_eq!(pool.mempool().usage().in_use, base.in_use);
        assert_eq!(pool.mempool().usage().allocations, base.allocations);
        serves(&pool);
    });
}

#[test]
fn jobs_after_the_scheduler_died() {
    common::no_leaks(|| {
        let pool = pool(2);
        let x = pool.array_from_fn(1000, |i| i as u64).unwrap();
        serves(&pool);
        let (scheduler, workers) = pool.pids();
        common::kill(scheduler, libc::SIGKILL);
        assert!(
            common::gone_within(scheduler, Duration::from_secs(1)),
            "scheduler survived SIGKILL"
        );
        // The first submission finds out within the liveness step.
        let start = Instant::now();
        match pool.par_map(&x, |v: u64| v * 2) {
            Err(e @ Error::PoolShutDown { .. }) => {
                says(&e, &["build a new pool"]);
            }
            other => panic!("expected PoolShutDown, got {:?}", other.map(|_| ())),
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "PoolShutDown took {:?}",
            start.elapsed()
        );
        // Later ones fail at once, whatever the operation.
        let start = Instant::now();
        assert!(matches!(
            pool.par_range(0..10).count(),
            Err(Error::PoolShutDown { .. })
        ));
        assert!(matches!(
            pool.par_map_vec(vec![1u8, 2], |v: u8| v),
            Err(Error::PoolShutDown { .. })
        ));
        match pool.spawn(|_: &procyon::Ctx| 1u8) {
            Err(Error::PoolShutDown { .. }) => {}
            Ok(h) => assert!(matches!(h.wait(), Err(Error::PoolShutDown { .. }))),
            Err(e) => panic!("expected PoolShutDown, got {e:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "took {:?}",
            start.elapsed()
        );
        // The workers followed their scheduler.
        for w in workers {
            assert!(
                common::gone_within(w, Duration::from_secs(1)),
                "worker {w} outlived its scheduler"
            );
        }
        // The client's memory is still usable, and dropping the pool does not hang.
        assert_eq!(x[999], 999);
        drop(x);
        let start = Instant::now();
        drop(pool);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "drop took {:?}",
            start.elapsed()
        );
    });
}
