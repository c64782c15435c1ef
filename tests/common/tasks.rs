//! Task functions several test files run in workers: busy work of a known length, tasks
//! that never end, tasks that kill their worker on a chosen item, and trees of nested
//! jobs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use procyon::Ctx;

/// Some arithmetic per item, so that a job lasts long enough to be hit.
pub fn slow(x: u64) -> u64 {
    let mut h = x;
    for _ in 0..300 {
        h = black_box(
            h.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    h >> 24
}

/// A task that never returns and never checks for cancellation.
pub fn spin_forever(_: usize) {
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

/// A task that never checks for cancellation and runs 300 ms.
pub fn spin_300ms(_: usize) {
    let end = Instant::now() + Duration::from_millis(300);
    let mut x = 0u64;
    while Instant::now() < end {
        x = black_box(x.wrapping_add(1));
    }
}

/// Spins for `ms` milliseconds, then says which process ran it (to see which worker ran
/// an item).
pub fn busy_pid(ms: u64) -> u32 {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
    std::process::id()
}

/// Four nested children that spin forever; cancelling the parent must stop them all.
pub fn parent_of_spinners(ctx: &Ctx) -> u64 {
    ctx.par_range(0..4)
        .with_max_len(1)
        .for_each(spin_forever)
        .map(|_| 1)
        .unwrap_or(0)
}

/// Aborts its worker (SIGABRT) on item 500.
pub fn abort_on(x: u64) -> u64 {
    if x == 500 {
        std::process::abort();
    }
    x
}

/// Kills its worker with a real SIGSEGV on item 500.
pub fn segv_on(x: u64) -> u64 {
    if x == 500 {
        // SAFETY: none, on purpose: a real invalid write (address 8), so the kernel sends
        // SIGSEGV; Rust's handler sees no guard page there and lets it kill the worker.
        unsafe { std::ptr::write_volatile(std::ptr::NonNull::<u64>::dangling().as_ptr(), 1) };
    }
    x
}

/// A node of a fan-out-4 tree at `depth` (0: a leaf), one nested job per node; the
/// children's depth travels in the range's items (child `i` of `4(d-1)..4d` has depth
/// `i / 4`), so the job carries no state. Returns the leaves below it.
pub fn tree_node(ctx: &Ctx, depth: u64) -> u64 {
    if depth == 0 {
        return 1;
    }
    let lo = 4 * (depth - 1);
    ctx.par_range(lo..lo + 4)
        .with_max_len(1)
        .map_ctx(|ctx: &Ctx, i: u64| tree_node(ctx, i / 4))
        .sum::<u64>()
        .expect("nested job")
}

/// The tree of `depth` (at least 1) from the client: the root's children as one job.
pub fn tree(pool: &procyon::Pool, depth: u64) -> procyon::Result<u64> {
    let lo = 4 * (depth - 1);
    pool.par_range(lo..lo + 4)
        .with_max_len(1)
        .map_ctx(|ctx: &Ctx, i: u64| tree_node(ctx, i / 4))
        .sum()
}
