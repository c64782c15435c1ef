//! Shared arrays across real forked processes: children write disjoint chunks through a
//! descriptor and the parent sees every value; a child allocates an array and hands it to
//! its parent; descriptors resolve in grandchildren too.

#[path = "mempool_support/mod.rs"]
mod mempool_support;

use mempool_support::{
    assert_no_children, assert_no_new_files, fork_child, serial, temp_files, wait_ok, Pipe,
};
use procyon::{ArrayDesc, Mempool, SharedArray};

const MIB: usize = 1 << 20;

#[test]
fn children_write_disjoint_chunks_the_parent_sees_every_value() {
    let _serial = serial();
    let files = temp_files();
    let pool = Mempool::new(64 * MIB).unwrap();
    let n = 1_000_003usize;
    let input = SharedArray::from_fn(&pool, n, |i| i as u64).unwrap();
    let output = SharedArray::<u64>::zeroed(&pool, n).unwrap();
    let (input_desc, output_desc) = (input.desc(), output.desc());
    // Descriptors travel as bytes, as they would in a message.
    let message = bincode::serialize(&(input_desc, output_desc)).unwrap();
    let workers = 4;
    let chunk = n.div_ceil(workers);
    let children: Vec<i32> = (0..workers)
        .map(|w| {
            let message = &message;
            fork_child(move || {
                let (input, output): (ArrayDesc<u64>, ArrayDesc<u64>) =
                    bincode::deserialize(message).map_err(|e| e.to_string())?;
                let range = w * chunk..((w + 1) * chunk).min(n);
                // SAFETY: both arrays outlive the children (the parent waits for them);
                // the chunks are disjoint and the parent does not touch them meanwhile.
                let (src, dst) = unsafe {
                    (
                        input.chunk(range.clone()).map_err(|e| e.to_string())?,
                        output.chunk_mut(range).map_err(|e| e.to_string())?,
                    )
                };
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = s * 3 + 1;
                }
                Ok(())
            })
        })
        .collect();
    for pid in children {
        wait_ok(pid);
    }
    for (i, &v) in output.iter().enumerate() {
        assert_eq!(v, i as u64 * 3 + 1, "element {i}");
    }
    drop((input, output));
    assert_eq!(pool.usage().allocations, 0);
    assert_no_children();
    drop(pool);
    assert_no_new_files(&files);
}

#[test]
fn a_child_allocates_an_array_and_hands_it_to_the_parent() {
    let _serial = serial();
    let pool = Mempool::new(16 * MIB).unwrap();
    let pipe = Pipe::new();
    let child = fork_child(|| {
        let squares =
            SharedArray::from_fn(&pool, 10_000, |i| (i * i) as u32).map_err(|e| e.to_string())?;
        pipe.send(&bincode::serialize(&squares.into_desc()).unwrap());
        Ok(())
    });
    let desc: ArrayDesc<u32> = bincode::deserialize(&pipe.recv()).unwrap();
    wait_ok(child);
    let squares = SharedArray::adopt(desc).unwrap();
    assert_eq!(squares.len(), 10_000);
    assert_eq!(squares[99], 99 * 99);
    assert!(SharedArray::adopt(desc).is_err(), "adopted twice");
    drop(squares);
    assert_eq!(pool.usage().allocations, 0);
    // SAFETY: the descriptor is stale; resolving must fail, not read.
    assert!(unsafe { desc.as_slice() }.is_err());
    assert_no_children();
}

#[test]
fn descriptors_resolve_in_grandchildren() {
    let _serial = serial();
    let pool = Mempool::new(16 * MIB).unwrap();
    let out = SharedArray::<i32>::zeroed(&pool, 64).unwrap();
    let desc = out.desc();
    let child = fork_child(|| {
        let grandchild = fork_child(|| {
            // SAFETY: the array outlives the tree; only this process writes 32..64.
            let part = unsafe { desc.chunk_mut(32..64) }.map_err(|e| e.to_string())?;
            part.fill(-2);
            Ok(())
        });
        // SAFETY: as above, for 0..32.
        let part = unsafe { desc.chunk_mut(0..32) }.map_err(|e| e.to_string())?;
        part.fill(-1);
        mempool_support::wait_ok(grandchild);
        Ok(())
    });
    wait_ok(child);
    assert!(out[..32].iter().all(|&x| x == -1));
    assert!(out[32..].iter().all(|&x| x == -2));
    assert_no_children();
}
