//! Array descriptors in one process: every detectable misuse is an error, not undefined
//! behaviour; edge cases (empty arrays, zero-sized and over-aligned elements) work.

use procyon::{ArrayDesc, Error, Mempool, Pod, SharedArray, Zeroable};

const MIB: usize = 1 << 20;

#[test]
fn a_freed_array_is_an_invalid_descriptor_even_if_its_memory_is_reused() {
    let pool = Mempool::new(4 * MIB).unwrap();
    let a = SharedArray::from_slice(&pool, &[1u64, 2, 3]).unwrap();
    let desc = a.desc();
    drop(a);
    // SAFETY: resolving a stale descriptor must fail before touching anything.
    let err = unsafe { desc.as_slice() }.unwrap_err();
    assert!(matches!(err, Error::InvalidDescriptor { .. }), "{err}");
    let b = SharedArray::from_slice(&pool, &[4u64, 5, 6]).unwrap();
    assert_eq!(b.desc().into_raw().len(), 3);
    // Same place, new generation: still rejected.
    // SAFETY: as above.
    let err = unsafe { desc.chunk_mut(0..1) }.unwrap_err();
    assert!(
        err.to_string().contains("generation") || err.to_string().contains("freed"),
        "{err}"
    );
    assert!(desc.validate().is_err());
    assert!(b.desc().validate().is_ok());
}

#[test]
fn a_descriptor_of_an_unknown_pool_is_rejected() {
    let desc = {
        let pool = Mempool::new(4 * MIB).unwrap();
        let a = SharedArray::from_slice(&pool, &[1u8; 100]).unwrap();
        let desc = a.into_desc();
        // A different pool does not adopt it.
        let other = Mempool::new(4 * MIB).unwrap();
        match SharedArray::adopt_in(&other, desc) {
            Err(Error::InvalidDescriptor { reason }) => {
                assert!(reason.contains("pool"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        desc
    };
    // The pool is gone from this process.
    // SAFETY: must fail: no such pool.
    match unsafe { desc.as_slice() } {
        Err(Error::InvalidDescriptor { reason }) => {
            assert!(reason.contains("unknown pool"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(SharedArray::adopt(desc).is_err());
}

#[test]
fn out_of_range_chunks_are_errors() {
    let pool = Mempool::new(4 * MIB).unwrap();
    let a = SharedArray::<u16>::zeroed(&pool, 10).unwrap();
    let desc = a.desc();
    #[allow(clippy::reversed_empty_ranges)]
    for range in [0..11, 10..11, 5..4, usize::MAX - 1..usize::MAX] {
        // SAFETY: must fail on the range check.
        match unsafe { desc.chunk(range.clone()) } {
            Err(Error::OutOfRange { start, end, len }) => {
                assert_eq!((start, end, len), (range.start, range.end, 10))
            }
            other => panic!("{range:?}: {other:?}"),
        }
    }
    // SAFETY: `a` is alive and not written meanwhile.
    assert_eq!(unsafe { desc.chunk(10..10) }.unwrap().len(), 0);
    // SAFETY: as above.
    assert_eq!(unsafe { desc.chunk(3..7) }.unwrap(), &[0; 4]);
}

#[test]
fn a_wrong_element_type_is_an_invalid_descriptor() {
    let pool = Mempool::new(4 * MIB).unwrap();
    let a = SharedArray::from_slice(&pool, &[1u32, 2, 3, 4]).unwrap();
    let raw = a.desc().into_raw();
    assert_eq!(raw.elem_size(), 4);
    assert!(matches!(
        raw.typed::<u64>(),
        Err(Error::InvalidDescriptor { .. })
    ));
    assert!(matches!(
        raw.typed::<[u8; 4]>(),
        Err(Error::InvalidDescriptor { .. })
    ));
    assert!(raw.typed::<f32>().is_ok());
    // Reinterpreting through serde is caught when the descriptor is used.
    let bytes = bincode::serialize(&a.desc()).unwrap();
    let wrong: ArrayDesc<u16> = bincode::deserialize(&bytes).unwrap();
    // SAFETY: must fail on the element check.
    let err = unsafe { wrong.as_slice() }.unwrap_err();
    assert!(err.to_string().contains("element type"), "{err}");
    assert!(SharedArray::adopt(wrong).is_err());
}

#[test]
fn a_borrowed_descriptor_cannot_be_adopted() {
    let pool = Mempool::new(4 * MIB).unwrap();
    let a = SharedArray::from_slice(&pool, &[7i8; 9]).unwrap();
    match SharedArray::adopt(a.desc()) {
        Err(Error::InvalidDescriptor { reason }) => {
            assert!(reason.contains("detached"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.to_vec(), vec![7; 9]);
}

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C, align(256))]
struct Wide {
    x: [u64; 32],
}

#[test]
fn empty_zero_sized_and_over_aligned_arrays_work() {
    let pool = Mempool::new(4 * MIB).unwrap();
    let empty = SharedArray::<f64>::zeroed(&pool, 0).unwrap();
    assert!(empty.is_empty());
    assert_eq!(pool.usage().allocations, 0, "no allocation for zero bytes");
    let desc = empty.into_desc();
    // SAFETY: zero elements: nothing is read.
    assert_eq!(unsafe { desc.as_slice() }.unwrap(), &[] as &[f64]);
    assert!(SharedArray::adopt(desc).unwrap().is_empty());

    let units = SharedArray::<()>::from_fn(&pool, 1000, |_| ()).unwrap();
    assert_eq!(units.len(), 1000);
    assert_eq!(pool.usage().allocations, 0);
    // SAFETY: zero-sized elements: nothing is read.
    assert_eq!(unsafe { units.desc().chunk(10..20) }.unwrap().len(), 10);

    let wide = SharedArray::from_fn(&pool, 3, |i| Wide { x: [i as u64; 32] }).unwrap();
    assert_eq!(wide.as_ptr() as usize % 256, 0);
    // SAFETY: `wide` is alive and not written meanwhile.
    assert_eq!(unsafe { wide.desc().as_slice() }.unwrap()[2].x[31], 2);
    let desc = wide.into_desc();
    assert_eq!(SharedArray::adopt(desc).unwrap()[1], Wide { x: [1; 32] });
    assert_eq!(pool.usage().allocations, 0);
}

#[test]
fn zeroed_is_zero_after_reuse_and_from_slice_round_trips() {
    let pool = Mempool::new(32 * MIB).unwrap();
    for len in [1usize, 1000, 300_000, 2_000_000] {
        let mut dirty = SharedArray::<u32>::zeroed(&pool, len).unwrap();
        dirty.fill(u32::MAX);
        drop(dirty);
        let clean = SharedArray::<u32>::zeroed(&pool, len).unwrap();
        assert!(clean.iter().all(|&x| x == 0), "len {len}");
    }
    let values: Vec<f32> = (0..5000).map(|i| i as f32 * 0.5).collect();
    let a = SharedArray::from_slice(&pool, &values).unwrap();
    assert_eq!(a.to_vec(), values);
    assert_eq!(
        format!("{:?}", SharedArray::from_slice(&pool, &[1u8, 2]).unwrap()),
        "[1, 2]"
    );
    let huge = SharedArray::<u64>::zeroed(&pool, usize::MAX / 4);
    assert!(matches!(huge, Err(Error::OutOfMemory { .. })));
}

#[test]
fn large_arrays_start_on_a_page_small_ones_on_a_cache_line() {
    // Page-aligned large arrays keep streaming kernels (`y[i] = f(x[i])`) clear of 4K
    // aliasing between the loads of one array and the stores to the other.
    let pool = Mempool::new(16 * MIB).unwrap();
    let mut keep = Vec::new();
    for len in [1usize, 7, 100, 1000, 8191, 8192, 8193, 100_000] {
        let a = SharedArray::<u64>::zeroed(&pool, len).unwrap();
        let addr = a.as_ptr() as usize;
        if len * 8 >= 64 << 10 {
            assert_eq!(addr % 4096, 0, "{len} u64 at {addr:#x}");
        } else {
            assert_eq!(addr % 64, 0, "{len} u64 at {addr:#x}");
        }
        keep.push(a);
    }
    let (x, y) = (&keep[6], &keep[7]);
    assert_eq!(
        (y.as_ptr() as usize).abs_diff(x.as_ptr() as usize) % 4096,
        0
    );
}
