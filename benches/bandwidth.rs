//! W5 bandwidth (docs/WORKLOADS.md): y = 2x + 1 over f64 arrays of 64 MiB, 512 MiB (the
//! reference size) and 2 GiB of input, as many bytes of output; throughput counted as
//! input + output bytes. Each size in two cases, every system in interleaved blocks
//! (support/blocks.rs), every output checked (sum = n * 1024) and cleared, untimed:
//!
//! * warm, the output reused: `sequential` (a loop over `Vec`s), `rayon` (its natural
//!   `par_iter_mut().zip(..).for_each(..)`), `rayon-NT` (the same over 512 KiB chunks,
//!   written with hand-written non-temporal stores, `_mm_stream_pd` after a runtime check
//!   for SSE2 on x86_64, plain stores elsewhere, then `_mm_sfence`), `procyon`
//!   (`par_map_into` over shared arrays allocated once);
//! * first run, a fresh output every iteration: `sequential` (`collect`), `rayon`
//!   (`collect` into a fresh `Vec`), `rayon-NT` (a fresh zeroed `Vec`, then the streaming
//!   loop), `procyon` (`par_map`, its output allocated in the mempool and dropped after
//!   the check, untimed).
//!
//! `PROCYON_BENCH_WORKERS=1,2,4` gives the worker counts (default 2); one pool per worker
//! count and size. Under `cargo test --benches` it runs one round at 8 MiB. Plain binary
//! (`harness = false`).

use rayon::prelude::*;

#[path = "support/mod.rs"]
mod support;
use support::{blocks, measuring, note_load, quick, rayon_pool, record_samples, time, workers};

/// W5's kernel, `y = 2x + 1`, for every system.
fn kernel(v: f64) -> f64 {
    2.0 * v + 1.0
}

/// Elements per rayon-NT chunk (512 KiB of output).
const NT_CHUNK: usize = 64 << 10;

/// `ys = 2 xs + 1` with non-temporal stores where the CPU has them (then a store fence,
/// so the stores are ordered before whatever publishes the chunk as done).
fn nt_chunk(xs: &[f64], ys: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("sse2") {
        // SAFETY: the CPU has SSE2, checked just above.
        unsafe { nt_chunk_sse2(xs, ys) };
        return;
    }
    for (o, &i) in ys.iter_mut().zip(xs) {
        *o = kernel(i);
    }
}

/// [`nt_chunk`] with SSE2 streaming stores: plain stores up to the first 16-byte aligned
/// element of `ys` and after the last full pair, `_mm_stream_pd` in between.
///
/// # Safety
/// The CPU must have SSE2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
unsafe fn nt_chunk_sse2(xs: &[f64], ys: &mut [f64]) {
    use std::arch::x86_64::{
        _mm_add_pd, _mm_loadu_pd, _mm_mul_pd, _mm_set1_pd, _mm_sfence, _mm_stream_pd,
    };
    let n = xs.len().min(ys.len());
    let head = ys.as_ptr().align_offset(16).min(n);
    for k in 0..head {
        ys[k] = kernel(xs[k]);
    }
    let (two, one) = (_mm_set1_pd(2.0), _mm_set1_pd(1.0));
    let mut k = head;
    while k + 2 <= n {
        // SAFETY: k + 2 <= n, so xs[k..k + 2] is in bounds (an unaligned load).
        let x = unsafe { _mm_loadu_pd(xs.as_ptr().add(k)) };
        let y = _mm_add_pd(_mm_mul_pd(x, two), one);
        // SAFETY: ys[k..k + 2] is in bounds (k + 2 <= n) and 16-byte aligned: ys[head]
        // is, and k - head is even. `ys` is this thread's own `&mut` chunk.
        unsafe { _mm_stream_pd(ys.as_mut_ptr().add(k), y) };
        k += 2;
    }
    for j in k..n {
        ys[j] = kernel(xs[j]);
    }
    _mm_sfence();
}

/// Asserts that `out` holds W5's output for an input of `out.len()` elements (the sum
/// of y is 1024 per element, exact in f64 up to 2^43 elements), then clears it, so that
/// a run that wrote nothing cannot pass the next check.
fn check(out: &mut [f64], who: &str) {
    let sum: f64 = out.iter().sum();
    assert_eq!(sum, out.len() as f64 * 1024.0, "{who}'s W5 output");
    out.fill(0.0);
}

const SYSTEMS: [&str; 8] = [
    "sequential",
    "rayon",
    "rayon-NT",
    "procyon",
    "fresh sequential",
    "fresh rayon",
    "fresh rayon-NT",
    "fresh procyon",
];

/// One size at `w` workers: every system in blocks, recorded as two cases.
fn measure(w: usize, mib: usize, rounds: usize, per_block: usize) {
    let n = (mib << 20) / 8;
    let bytes = (2 * n * 8) as u64;
    let pool = procyon::Pool::builder()
        .workers(w)
        .mempool_size((4 * mib + 256) << 20)
        .build()
        .expect("pool");
    let rp = rayon_pool(w);
    let x = pool.array_from_fn(n, |i| (i % 1024) as f64).expect("input");
    let mut y = pool.array_zeroed::<f64>(n).expect("output");
    let xs: Vec<f64> = (0..n).map(|i| (i % 1024) as f64).collect();
    let mut ys = vec![0.0f64; n];
    // The workers' first touch of the shared pages (page-table faults), untimed: the
    // warm case is about a reused output.
    pool.par_map_into(&x, &mut y, kernel).expect("W5 job");
    check(&mut y, "procyon's first run");
    let samples = blocks(&SYSTEMS, rounds, per_block, |system| match system {
        "sequential" => {
            let t = time(|| {
                for (o, &i) in ys.iter_mut().zip(&xs) {
                    *o = kernel(i);
                }
            });
            check(&mut ys, system);
            t
        }
        "rayon" => {
            let t = time(|| {
                rp.install(|| {
                    ys.par_iter_mut()
                        .zip(xs.par_iter())
                        .for_each(|(o, &i)| *o = kernel(i))
                })
            });
            check(&mut ys, system);
            t
        }
        "rayon-NT" => {
            let t = time(|| {
                rp.install(|| {
                    ys.par_chunks_mut(NT_CHUNK)
                        .zip(xs.par_chunks(NT_CHUNK))
                        .for_each(|(o, i)| nt_chunk(i, o))
                })
            });
            check(&mut ys, system);
            t
        }
        "procyon" => {
            let t = time(|| pool.par_map_into(&x, &mut y, kernel).expect("W5 job"));
            check(&mut y, system);
            t
        }
        // Fresh outputs are dropped (freed) after the check, untimed, as in a loop that
        // uses each result and lets it go.
        "fresh sequential" => {
            let mut out = Vec::new();
            let t = time(|| out = xs.iter().map(|&v| kernel(v)).collect());
            check(&mut out, system);
            t
        }
        "fresh rayon" => {
            let mut out = Vec::new();
            let t = time(|| out = rp.install(|| xs.par_iter().map(|&v| kernel(v)).collect()));
            check(&mut out, system);
            t
        }
        "fresh rayon-NT" => {
            let mut out = Vec::new();
            let t = time(|| {
                out = vec![0.0f64; n];
                rp.install(|| {
                    out.par_chunks_mut(NT_CHUNK)
                        .zip(xs.par_chunks(NT_CHUNK))
                        .for_each(|(o, i)| nt_chunk(i, o))
                })
            });
            check(&mut out, system);
            t
        }
        _ => {
            let mut out = None;
            let t = time(|| out = Some(pool.par_map(&x, kernel).expect("W5 job")));
            check(&mut out.expect("timed above"), system);
            t
        }
    });
    for (system, s) in SYSTEMS.iter().zip(samples) {
        let (case, system) = match system.strip_prefix("fresh ") {
            Some(sys) => (format!("{mib} MiB first run"), sys),
            None => (format!("{mib} MiB warm"), *system),
        };
        record_samples("w5", &case, w, system, s, Some(n as u64), Some(bytes));
    }
}

fn main() {
    // (MiB of input, iterations per block)
    let sizes: &[(usize, usize)] = if measuring() {
        &[(64, 5), (512, 2), (2048, 1)]
    } else {
        &[(8, 1)]
    };
    let rounds = match (measuring(), quick()) {
        (false, _) => 1,
        (true, true) => 7,
        (true, false) => 15,
    };
    note_load("w5", "before");
    for w in workers() {
        for &(mib, per_block) in sizes {
            measure(w, mib, rounds, per_block);
        }
    }
    note_load("w5", "after");
}
