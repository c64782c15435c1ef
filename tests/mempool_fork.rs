//! The mempool across real forked processes: concurrent use, a lock holder killed with
//! SIGKILL, deaths at every crash point inside the critical sections, ownership handed
//! from a child to its parent.

mod mempool_support;

use std::time::{Duration, Instant};

use mempool_support::{
    assert_no_children, assert_no_new_files, fork_child, kill, serial, temp_files, wait, wait_ok,
    Pipe, Rng, Status,
};
use procyon::{__CrashPoint as CrashPoint, Error, Mempool, RawBlock};

const MIB: usize = 1 << 20;

/// Random allocations and frees for `duration`, each block filled with a pattern unique
/// to this process and allocation, checked before it is freed: two processes handed
/// overlapping blocks would overwrite each other's pattern.
fn stress(pool: &Mempool, seed: u64, duration: Duration) -> Result<u64, String> {
    let mut rng = Rng(seed);
    let mut live: Vec<(procyon::Block, u8)> = Vec::new();
    let deadline = Instant::now() + duration;
    let mut ops = 0u64;
    while Instant::now() < deadline {
        for _ in 0..64 {
            ops += 1;
            if live.len() < 48 && (live.is_empty() || rng.next() % 2 == 0) {
                let size = match rng.next() % 16 {
                    0 => rng.range(64 * 1024, 2 * MIB as u64),
                    _ => rng.range(1, 8192),
                } as usize;
                match pool.alloc(size, 64 << (rng.next() % 3)) {
                    Ok(mut b) => {
                        let fill = (seed as u8) ^ (ops as u8);
                        b.as_bytes_mut().fill(fill);
                        live.push((b, fill));
                    }
                    Err(Error::OutOfMemory { .. }) => {}
                    Err(e) => return Err(format!("alloc: {e}")),
                }
            } else {
                let i = (rng.next() % live.len() as u64) as usize;
                let (b, fill) = live.swap_remove(i);
                if let Some(pos) = b.as_bytes().iter().position(|&x| x != fill) {
                    return Err(format!("block {:?} overwritten at byte {pos}", b));
                }
            }
        }
    }
    Ok(ops)
}

#[test]
fn concurrent_alloc_free_from_four_processes() {
    let _serial = serial();
    let files = temp_files();
    let pool = Mempool::new(128 * MIB).unwrap();
    let children: Vec<i32> = (1..=3u64)
        .map(|c| {
            let pool = &pool;
            fork_child(move || stress(pool, 0x1000 + c, Duration::from_millis(1500)).map(|_| ()))
        })
        .collect();
    let ops = stress(&pool, 0x1000, Duration::from_millis(1500)).unwrap();
    assert!(ops > 1000, "only {ops} operations");
    for pid in children {
        wait_ok(pid);
    }
    let report = pool.__check_invariants().unwrap();
    assert_eq!((report.used_blocks, report.free_blocks), (0, 1));
    let usage = pool.usage();
    assert_eq!((usage.in_use, usage.allocations), (0, 0));
    assert_eq!(report.recoveries, 0);
    assert_no_children();
    drop(pool);
    assert_no_new_files(&files);
}

#[test]
fn a_lock_holder_killed_by_sigkill_does_not_wedge_the_others() {
    let _serial = serial();
    let files = temp_files();
    let pool = Mempool::new(16 * MIB).unwrap();
    let kept = pool.alloc(1000, 64).unwrap();
    let ready = Pipe::new();
    let holder = fork_child(|| {
        let _guard = pool.__lock_for_test().map_err(|e| e.to_string())?;
        ready.send(b"locked");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    assert_eq!(ready.recv(), b"locked");
    // These block on the lock until the holder dies.
    let waiters: Vec<i32> = (0..2)
        .map(|w| {
            let pool = &pool;
            fork_child(move || {
                for i in 0..2000 {
                    let mut b = pool.alloc(64 + i * 7 + w, 64).map_err(|e| e.to_string())?;
                    b.as_bytes_mut().fill(w as u8);
                }
                pool.__check_invariants().map(|_| ())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Statistics stay readable without the lock.
    assert_eq!(pool.usage().allocations, 1);
    kill(holder, libc::SIGKILL);
    assert_eq!(wait(holder), Status::Signaled(libc::SIGKILL));
    for pid in waiters {
        wait_ok(pid);
    }
    // The parent keeps working too, and everything adds up.
    let blocks: Vec<_> = (0..100).map(|i| pool.alloc(i * 100, 64).unwrap()).collect();
    drop(blocks);
    let report = pool.__check_invariants().unwrap();
    assert_eq!(report.recoveries, 1, "exactly one process ran recovery");
    assert_eq!(report.used_blocks, 1);
    assert_eq!(pool.usage().allocations, 1);
    assert_eq!(pool.usage().in_use, report.used_bytes);
    drop(kept);
    assert_eq!(pool.usage().in_use, 0);
    assert_no_children();
    drop(ready);
    drop(pool);
    assert_no_new_files(&files);
}

/// A child dies (SIGKILL to itself) at `point` inside a critical section; the parent then
/// recovers and checks that the heap and the statistics are exactly what they should be.
fn die_at(point: CrashPoint) {
    let files = temp_files();
    let pool = Mempool::new(16 * MIB).unwrap();
    // A heap with some structure: used blocks with free holes between them.
    let mut parent_blocks: Vec<_> = (0..8)
        .map(|i| pool.alloc(1000 * (i + 1), 64).unwrap())
        .collect();
    parent_blocks.remove(5);
    parent_blocks.remove(2);
    for (i, b) in parent_blocks.iter_mut().enumerate() {
        b.as_bytes_mut().fill(i as u8 + 1);
    }
    let baseline = pool.usage();
    const TAG: u64 = 77;
    let child = fork_child(|| {
        let fail = |e: Error| e.to_string();
        match point {
            CrashPoint::AllocAfterTail | CrashPoint::AllocAfterCommit => {
                // Small enough that whichever free block serves it is split.
                Mempool::__arm_crash_point(Some(point));
                let _b = pool.alloc_tagged(100, 64, TAG).map_err(fail)?;
            }
            CrashPoint::FreeAfterMark => {
                let b = pool.alloc_tagged(3000, 64, TAG).map_err(fail)?;
                Mempool::__arm_crash_point(Some(point));
                drop(b);
            }
            _ => {
                // Free a block whose right neighbour is free: two blocks too large for the
                // holes, so they come one after the other from the free rest of the heap.
                let x = pool.alloc_tagged(100_000, 64, TAG).map_err(fail)?;
                let y = pool.alloc_tagged(100_000, 64, TAG).map_err(fail)?;
                assert_eq!(x.offset() + 100_032 + 64, y.offset());
                drop(y);
                Mempool::__arm_crash_point(Some(point));
                drop(x);
            }
        }
        Err(format!("survived crash point {point:?}"))
    });
    assert_eq!(wait(child), Status::Signaled(libc::SIGKILL), "{point:?}");
    // The next lock taker (us) recovers.
    let probe = pool.alloc(123, 64).unwrap();
    drop(probe);
    let report = pool.__check_invariants().unwrap();
    assert_eq!(report.recoveries, 1, "{point:?}");
    let usage = pool.usage();
    assert_eq!(usage.in_use, report.used_bytes);
    if point == CrashPoint::AllocAfterCommit {
        // The block committed, but its allocator died: it leaked, tagged, so reclaimable.
        assert_eq!(usage.allocations, baseline.allocations + 1);
        // SAFETY: no handle to the tagged block exists (its allocator is dead).
        assert_eq!(unsafe { pool.free_tagged(TAG) }.unwrap(), 1);
    }
    let usage = pool.usage();
    assert_eq!(
        (usage.in_use, usage.allocations),
        (baseline.in_use, baseline.allocations),
        "{point:?}"
    );
    // The survivors' blocks were never touched.
    for (i, b) in parent_blocks.iter().enumerate() {
        assert!(
            b.as_bytes().iter().all(|&x| x == i as u8 + 1),
            "{point:?}: block {i}"
        );
    }
    drop(parent_blocks);
    let report = pool.__check_invariants().unwrap();
    assert_eq!(
        (report.used_blocks, report.free_blocks),
        (0, 1),
        "{point:?}"
    );
    assert_no_children();
    drop(pool);
    assert_no_new_files(&files);
}

#[test]
fn death_after_the_first_store_of_a_split_is_recovered() {
    let _serial = serial();
    die_at(CrashPoint::AllocAfterTail);
}

#[test]
fn death_after_an_allocation_committed_is_recovered() {
    let _serial = serial();
    die_at(CrashPoint::AllocAfterCommit);
}

#[test]
fn death_after_marking_a_block_free_is_recovered() {
    let _serial = serial();
    die_at(CrashPoint::FreeAfterMark);
}

#[test]
fn death_in_the_middle_of_coalescing_is_recovered() {
    let _serial = serial();
    die_at(CrashPoint::FreeAfterMergeRight);
}

#[test]
fn a_child_hands_a_block_to_its_parent() {
    let _serial = serial();
    let pool = Mempool::new(16 * MIB).unwrap();
    let pipe = Pipe::new();
    let child = fork_child(|| {
        let mut b = pool.alloc(5000, 64).map_err(|e| e.to_string())?;
        b.as_bytes_mut().fill(0x5A);
        pipe.send(&bincode::serialize(&b.into_raw()).unwrap());
        Ok(())
    });
    let raw: RawBlock = bincode::deserialize(&pipe.recv()).unwrap();
    wait_ok(child);
    // The child is gone, the block lives on, owned by nobody until adopted.
    assert_eq!(pool.usage().allocations, 1);
    let block = pool.adopt(raw).unwrap();
    assert!(block.as_bytes().iter().all(|&x| x == 0x5A));
    assert!(pool.adopt(raw).is_err());
    drop(block);
    assert_eq!(pool.usage().allocations, 0);
    assert_no_children();
}

#[test]
fn a_block_inherited_through_fork_is_not_freed_by_the_child() {
    let _serial = serial();
    let pool = Mempool::new(16 * MIB).unwrap();
    let mut block = pool.alloc(100, 64).unwrap();
    block.as_bytes_mut().fill(9);
    let child = fork_child(|| {
        // SAFETY: the child's copy of the parent's handle; the parent's copy is untouched.
        let inherited = unsafe { std::ptr::read(&block) };
        drop(inherited);
        // The child can still allocate and free its own.
        drop(pool.alloc(100, 64).map_err(|e| e.to_string())?);
        Ok(())
    });
    wait_ok(child);
    assert_eq!(pool.usage().allocations, 1);
    assert!(block.as_bytes().iter().all(|&x| x == 9));
    pool.__check_invariants().unwrap();
    drop(block);
    assert_eq!(pool.usage().allocations, 0);
}

#[test]
fn a_death_during_recovery_is_recovered_by_the_next_locker() {
    let _serial = serial();
    let pool = Mempool::new(16 * MIB).unwrap();
    let kept = pool.alloc(1000, 64).unwrap();
    let baseline = pool.usage();
    // First death: a block marked free next to a free block, not yet merged.
    let first = fork_child(|| {
        let x = pool.alloc(100_000, 64).map_err(|e| e.to_string())?;
        let y = pool.alloc(100_000, 64).map_err(|e| e.to_string())?;
        drop(y);
        Mempool::__arm_crash_point(Some(CrashPoint::FreeAfterMark));
        drop(x);
        Err("survived".to_string())
    });
    assert_eq!(wait(first), Status::Signaled(libc::SIGKILL));
    // Second death: the process that recovers dies after recovery's first merge.
    let second = fork_child(|| {
        Mempool::__arm_crash_point(Some(CrashPoint::RecoveryAfterMerge));
        drop(pool.alloc(10, 64).map_err(|e| e.to_string())?);
        Err("recovery did not merge anything".to_string())
    });
    assert_eq!(wait(second), Status::Signaled(libc::SIGKILL));
    // We recover again, from the half-recovered heap.
    drop(pool.alloc(10, 64).unwrap());
    let report = pool.__check_invariants().unwrap();
    assert_eq!(report.recoveries, 1, "only completed recoveries count");
    assert_eq!((report.used_blocks, report.free_blocks), (1, 1));
    let usage = pool.usage();
    assert_eq!((usage.in_use, usage.allocations), (baseline.in_use, 1));
    drop(kept);
    assert_no_children();
}

/// A child dies right after moving the heap's end (the new free block reachable, not yet
/// merged with the free tail nor listed). The parent recovers: the growth holds, the
/// heap is one walkable chain, and the pool goes on growing to its maximum.
#[test]
fn death_in_the_middle_of_a_growth_is_recovered() {
    let _serial = serial();
    let files = temp_files();
    let pool = Mempool::growable(4 * MIB, Some(64 * MIB)).unwrap();
    let mut keep = pool.alloc(1000, 64).unwrap();
    keep.as_bytes_mut().fill(5);
    let baseline = pool.usage();
    for tail_used in [false, true] {
        let size_before = pool.size();
        // With `tail_used`, the last block is used when the heap grows (no merge).
        let tail = tail_used.then(|| {
            let free = pool.__check_invariants().unwrap().largest_free;
            pool.alloc(free - 64 - 64, 64).unwrap()
        });
        let child = fork_child(|| {
            Mempool::__arm_crash_point(Some(CrashPoint::GrowAfterEnd));
            let _b = pool.alloc(2 * size_before, 64).map_err(|e| e.to_string())?;
            Err("survived the crash point".to_string())
        });
        assert_eq!(wait(child), Status::Signaled(libc::SIGKILL));
        let probe = pool.alloc(123, 64).unwrap();
        drop(probe);
        let report = pool.__check_invariants().unwrap();
        assert!(pool.size() > size_before, "the growth was lost");
        assert_eq!(report.used_blocks, 1 + tail_used as usize);
        drop(tail);
        let report = pool.__check_invariants().unwrap();
        assert_eq!((report.used_blocks, report.free_blocks), (1, 1));
    }
    assert_eq!(pool.__check_invariants().unwrap().recoveries, 2);
    // It goes on growing, up to its maximum.
    let mut big = pool.alloc(48 * MIB, 64).unwrap();
    big.as_bytes_mut()[48 * MIB - 1] = 1;
    assert!(pool.alloc(16 * MIB, 64).is_err());
    drop(big);
    assert!(keep.as_bytes().iter().all(|&b| b == 5));
    let usage = pool.usage();
    assert_eq!(
        (usage.in_use, usage.allocations),
        (baseline.in_use, baseline.allocations)
    );
    drop(keep);
    assert_no_children();
    drop(pool);
    assert_no_new_files(&files);
}
