//! Mempool allocate + free, uncontended, against the system allocator in the same run.
//!
//! `cargo bench --bench mempool -- --warm-up-time 1 --measurement-time 3`

use std::alloc::{alloc, dealloc, Layout};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use procyon::Mempool;

const SIZES: [(usize, &str); 5] = [
    (64, "64B"),
    (1 << 10, "1KiB"),
    (4 << 10, "4KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

fn alloc_free(c: &mut Criterion) {
    let pool = Mempool::new(1 << 30).expect("mempool");
    // Some live blocks around, so the heap is not trivially empty.
    let _live: Vec<_> = (0..256)
        .map(|i| pool.alloc(64 + i * 40, 64).expect("alloc"))
        .collect();
    let mut group = c.benchmark_group("alloc+free");
    for (size, name) in SIZES {
        group.bench_with_input(BenchmarkId::new("mempool", name), &size, |b, &size| {
            b.iter(|| {
                let block = pool.alloc(black_box(size), 64).expect("alloc");
                black_box(block.as_ptr());
                drop(block);
            })
        });
        let layout = Layout::from_size_align(size, 64).expect("layout");
        group.bench_with_input(BenchmarkId::new("malloc", name), &layout, |b, &layout| {
            b.iter(|| {
                // SAFETY: non-zero size; the pointer is freed with the same layout.
                unsafe {
                    let p = alloc(black_box(layout));
                    assert!(!p.is_null());
                    black_box(p);
                    dealloc(p, layout);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, alloc_free);
criterion_main!(benches);
