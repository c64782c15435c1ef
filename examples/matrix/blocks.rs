//! W2 on procyon: a task is a block of rows of `C`. A and B are read-only shared inputs,
//! C the shared output, all three in the pool's mempool; the block function captures
//! nothing and finds them through the descriptors of its `for_each_with` context.

use procyon::{ArrayDesc, Pool, SharedArray};
use serde::{Deserialize, Serialize};

use super::kernel;

/// Rows of C per task: 64 tasks for n = 1024, so two workers balance to within a
/// sixty-fourth of the job, and a task (16 rows x 8 KiB of C, all of B) is worth a
/// claim.
pub const ROWS_PER_TASK: usize = 16;

/// Where the matrices are; travels once per worker.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct Product {
    pub n: usize,
    pub a: ArrayDesc<f64>,
    pub b: ArrayDesc<f64>,
    pub c: ArrayDesc<f64>,
}

/// A pool sized for three n x n matrices.
pub fn pool(workers: usize, n: usize) -> procyon::Result<Pool> {
    Pool::builder()
        .workers(workers)
        .mempool_size(3 * n * n * 8 + (64 << 20))
        .build()
}

/// The inputs of W2 at size `n`, in shared arrays.
pub fn inputs(pool: &Pool, n: usize) -> procyon::Result<(SharedArray<f64>, SharedArray<f64>)> {
    Ok((
        pool.array_from_fn(n * n, |x| kernel::a(n, x))?,
        pool.array_from_fn(n * n, |x| kernel::b(n, x))?,
    ))
}

/// Tasks (blocks of rows) for an n x n product.
pub fn tasks(n: usize) -> usize {
    n.div_ceil(ROWS_PER_TASK)
}

/// The task: block `block` of rows of C.
///
/// # Panics
/// If a matrix is gone or has the wrong size (a bug of the caller of [`multiply`]).
pub fn block(p: &Product, block: usize) {
    let first = block * ROWS_PER_TASK;
    let end = (first + ROWS_PER_TASK).min(p.n);
    // SAFETY: `multiply` holds `&A`, `&B` (so nobody writes them) and `&mut C` (so the
    // client neither reads nor writes it) until the job has ended, which keeps all three
    // alive. Block `block` is item `block`, run once, so these rows of C are written by
    // this task only.
    let (a, b, c) = unsafe {
        (
            p.a.as_slice(),
            p.b.as_slice(),
            p.c.chunk_mut(first * p.n..end * p.n),
        )
    };
    kernel::rows(
        p.n,
        a.expect("A"),
        b.expect("B"),
        first,
        c.expect("rows of C"),
    );
}

/// `C = A x B`, in the workers (C is overwritten).
///
/// # Errors
/// A task failure or a pool failure.
pub fn multiply(
    pool: &Pool,
    n: usize,
    a: &SharedArray<f64>,
    b: &SharedArray<f64>,
    c: &mut SharedArray<f64>,
) -> procyon::Result<()> {
    assert!(
        a.len() == n * n && b.len() == n * n && c.len() == n * n,
        "matrices must be n x n"
    );
    let product = Product {
        n,
        a: a.desc(),
        b: b.desc(),
        c: c.desc(),
    };
    // One block per chunk: the self-scheduled chunks would otherwise start at a quarter of
    // the job each, and the blocks are already the unit of balance.
    pool.par_range(0..tasks(n))
        .with_max_len(1)
        .for_each_with(product, block)
}
