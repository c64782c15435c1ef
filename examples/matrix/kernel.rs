//! The W2 kernel (docs/WORKLOADS.md), free of any parallel machinery, so that the example,
//! the sequential baseline and every benchmark run the very same code.

/// The W2 size.
pub const W2_N: usize = 1024;
/// The W2 checksum, as printed with 6 decimals.
pub const W2_CHECKSUM: &str = "262682122.174589";

/// `A[i][j]` of W2.
pub fn a(n: usize, x: usize) -> f64 {
    let (i, j) = (x / n, x % n);
    ((i * 31 + j * 17) % 97) as f64 / 97.0
}

/// `B[i][j]` of W2.
pub fn b(n: usize, x: usize) -> f64 {
    let (i, j) = (x / n, x % n);
    ((i * 13 + j * 29) % 89) as f64 / 89.0
}

/// Rows `first..first + c.len() / n` of `C = A x B` into `c` (overwritten), in the
/// i-k-j order: for each row `i`, `C[i][..] = 0`, then for each `k`,
/// `C[i][..] += A[i][k] * B[k][..]`.
///
/// Never inlined: the sequential loop, rayon and procyon then run the very same machine
/// code, whatever the call site (the inner loop is sensitive to how it is compiled).
#[inline(never)]
pub fn rows(n: usize, a: &[f64], b: &[f64], first: usize, c: &mut [f64]) {
    debug_assert_eq!(c.len() % n, 0);
    for (i, c_row) in (first..).zip(c.chunks_exact_mut(n)) {
        c_row.fill(0.0);
        for (&aik, b_row) in a[i * n..(i + 1) * n].iter().zip(b.chunks_exact(n)) {
            for (c, &bkj) in c_row.iter_mut().zip(b_row) {
                *c += aik * bkj;
            }
        }
    }
}

/// The whole product, one row after the other: the sequential baseline.
pub fn sequential(n: usize, a: &[f64], b: &[f64], c: &mut [f64]) {
    rows(n, a, b, 0, c);
}

/// The W2 checksum: the sum of all of `C`, in row-major order.
pub fn checksum(c: &[f64]) -> f64 {
    c.iter().sum()
}
