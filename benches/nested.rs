//! W7 nested tree (docs/WORKLOADS.md): a tree of fan-out 4 and depth d = 1..5 whose leaves
//! return 1 and whose nodes sum their children (result 4^d), in four forms:
//!
//! * `procyon`: every node's task starts its 4 children as one nested job through its
//!   `Ctx` (`ctx.par_range(..).with_max_len(1).map_ctx(..)`); the root's job comes from
//!   the client. A tree of depth d is (4^d - 1) / 3 jobs.
//! * `rayon`: the same shape with nested `into_par_iter().with_max_len(1)`.
//! * `procyon-flat`: one flat job over the 4^d leaves, one item per chunk.
//! * `sequential`: the recursion on one thread.
//!
//! The same trees also run *from a task* (cases "depth d from a task"): one spawned task
//! per block times, inside its worker, each of the block's trees of depth d it starts (its
//! 4 children as one nested job), or flat jobs over the 4^d leaves, after one untimed
//! first. The client's round trip and its hand-off of its CPU are outside the timing, and
//! so is the start of the task, while the client that spawned it may still hold the CPU
//! the other workers need: these rows show what the nested jobs cost the engine inside a
//! long task (rayon's tree beside them is the same as above).
//!
//! A join tree runs from a task too (case "fib(n) by join from a task"): fib(n) with one
//! `ctx.join_with` per inner node, timed the same way, beside rayon's `rayon::join` fib;
//! its ns/job counts the joins.
//!
//! Systems run in interleaved blocks (support/blocks.rs), every tree's sum checked;
//! `PROCYON_BENCH_WORKERS=1,2,4` gives the worker counts (default 2). Under
//! `cargo test --benches` it runs depths 1 to 3 once. Plain binary (`harness = false`).

use std::hint::black_box;

use procyon::{Ctx, Pool};
use rayon::prelude::*;

#[path = "support/mod.rs"]
mod support;
use support::{blocks, measuring, note_load, quick, rayon_pool, record_samples, time, workers};

/// A node at `depth` (0: a leaf) inside a worker: its children as one nested job. The
/// children's depth travels in the range's items (child `i` of the range `4(d-1)..4d`
/// has depth `i / 4`), so the job carries no state to encode.
fn procyon_node(ctx: &Ctx, depth: u64) -> u64 {
    if depth == 0 {
        return black_box(1);
    }
    let lo = 4 * (depth - 1);
    ctx.par_range(lo..lo + 4)
        .with_max_len(1)
        .map_ctx(|ctx: &Ctx, i: u64| procyon_node(ctx, i / 4))
        .sum::<u64>()
        .expect("nested job")
}

/// The tree of `depth` from the client: the root's children as one job.
fn procyon_tree(pool: &Pool, depth: u64) -> u64 {
    let lo = 4 * (depth - 1);
    pool.par_range(lo..lo + 4)
        .with_max_len(1)
        .map_ctx(|ctx: &Ctx, i: u64| procyon_node(ctx, i / 4))
        .sum::<u64>()
        .expect("tree job")
}

/// One flat job over the tree's 4^depth leaves, one item per chunk.
fn procyon_flat(pool: &Pool, depth: u64) -> u64 {
    pool.par_range(0..4u64.pow(depth as u32))
        .with_max_len(1)
        .map(|_: u64| black_box(1u64))
        .sum::<u64>()
        .expect("flat job")
}

fn rayon_node(depth: u64) -> u64 {
    if depth == 0 {
        return black_box(1);
    }
    (0..4usize)
        .into_par_iter()
        .with_max_len(1)
        .map(|_| rayon_node(depth - 1))
        .sum()
}

fn sequential_node(depth: u64) -> u64 {
    if depth == 0 {
        return black_box(1);
    }
    (0..4).map(|_| sequential_node(depth - 1)).sum()
}

const SYSTEMS: [&str; 4] = ["sequential", "rayon", "procyon", "procyon-flat"];

/// Seconds each of `count` trees of `depth` (or, `flat`, flat jobs over its leaves)
/// takes in one task, timed inside its worker after an untimed first (module docs);
/// checks every sum.
fn from_a_task(pool: &Pool, depth: u64, flat: bool, count: usize) -> Vec<f64> {
    let (ns, bad) = pool
        .spawn_with(
            (depth, flat, count as u64),
            |&(d, flat, count): &(u64, bool, u64), ctx: &Ctx| {
                let want = 4u64.pow(d as u32);
                let mut ns = Vec::with_capacity(count as usize);
                let mut bad = None;
                for i in 0..=count {
                    let t = std::time::Instant::now();
                    let sum = if flat {
                        ctx.par_range(0..want)
                            .with_max_len(1)
                            .map(|_: u64| black_box(1u64))
                            .sum::<u64>()
                            .expect("flat job from a task")
                    } else {
                        procyon_node(ctx, d)
                    };
                    let elapsed = t.elapsed().as_nanos() as u64;
                    if sum != want {
                        bad = Some(sum);
                    }
                    if i > 0 {
                        ns.push(elapsed);
                    }
                }
                (ns, bad)
            },
        )
        .expect("spawn")
        .wait()
        .expect("task");
    assert_eq!(
        bad, None,
        "a tree of depth {depth} from a task summed wrong"
    );
    ns.into_iter().map(|n| n as f64 * 1e-9).collect()
}

/// fib(n) with one `join_with` per inner node, in a task.
fn procyon_fib(n: &u64, ctx: &Ctx) -> u64 {
    if *n < 2 {
        return *n;
    }
    let (a, b) = ctx
        .join_with(n - 1, procyon_fib, n - 2, procyon_fib)
        .expect("join");
    a + b
}

fn rayon_fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = rayon::join(|| rayon_fib(n - 1), || rayon_fib(n - 2));
    a + b
}

/// fib(n) and the number of joins (inner nodes) its recursion makes.
fn fib_and_joins(n: u64) -> (u64, u64) {
    if n < 2 {
        return (n, 0);
    }
    let (a, ja) = fib_and_joins(n - 1);
    let (b, jb) = fib_and_joins(n - 2);
    (a + b, ja + jb + 1)
}

/// Seconds each of `count` fib(`n`) by join takes in one task, timed inside its worker
/// after an untimed first; checks every one.
fn fib_from_a_task(pool: &Pool, n: u64, want: u64, count: usize) -> Vec<f64> {
    let (ns, got) = pool
        .spawn_with((n, count as u64), |&(n, count): &(u64, u64), ctx: &Ctx| {
            let mut ns = Vec::with_capacity(count as usize);
            let mut got = Vec::with_capacity(count as usize + 1);
            for i in 0..=count {
                let t = std::time::Instant::now();
                got.push(procyon_fib(&n, ctx));
                let elapsed = t.elapsed().as_nanos() as u64;
                if i > 0 {
                    ns.push(elapsed);
                }
            }
            (ns, got)
        })
        .expect("spawn")
        .wait()
        .expect("task");
    assert!(
        got.iter().all(|&g| g == want),
        "fib({n}) by join from a task"
    );
    ns.into_iter().map(|n| n as f64 * 1e-9).collect()
}

/// One sample of a system timed a block at a time inside a task: the next of `queue`,
/// refilled by `fill` (a block's worth, in the order taken) when empty.
fn next_sample(queue: &mut Vec<f64>, fill: impl FnOnce() -> Vec<f64>) -> f64 {
    if queue.is_empty() {
        *queue = fill();
        queue.reverse();
    }
    queue.pop().expect("a block of samples")
}

fn main() {
    let (depths, rounds, per_block) = if !measuring() {
        (1..=3u64, 1, 1)
    } else if quick() {
        (1..=5u64, 7, 20)
    } else {
        (1..=5u64, 15, 50)
    };
    note_load("w7", "before");
    for w in workers() {
        let pool = Pool::builder()
            .workers(w)
            .mempool_size(256 << 20)
            .build()
            .expect("pool");
        let rp = rayon_pool(w);
        for depth in depths.clone() {
            let expected = 4u64.pow(depth as u32);
            // Fewer trees per block as they grow (a depth-5 tree is 341 jobs).
            let per_block = (per_block >> depth.saturating_sub(3)).max(1);
            let samples = blocks(&SYSTEMS, rounds, per_block, |system| {
                let mut got = 0;
                let t = time(|| {
                    got = match system {
                        "sequential" => sequential_node(depth),
                        "rayon" => rp.install(|| rayon_node(depth)),
                        "procyon" => procyon_tree(&pool, depth),
                        _ => procyon_flat(&pool, depth),
                    }
                });
                assert_eq!(got, expected, "{system}'s tree of depth {depth}");
                t
            });
            // items: the tree's nested jobs, (4^d - 1) / 3, for the cost per job.
            let jobs = (expected - 1) / 3;
            for (system, s) in SYSTEMS.iter().zip(samples) {
                record_samples(
                    "w7",
                    &format!("depth {depth}"),
                    w,
                    system,
                    s,
                    Some(jobs),
                    None,
                );
            }
        }
        // The same trees started by a task (module docs).
        const FROM_A_TASK: [&str; 3] = ["rayon", "procyon", "procyon-flat"];
        for depth in depths.clone() {
            let expected = 4u64.pow(depth as u32);
            let per_block = (per_block >> depth.saturating_sub(3)).max(1);
            // A block of trees in one task: the samples wait here until `blocks` asks.
            let (mut trees, mut flats) = (Vec::new(), Vec::new());
            let samples = blocks(&FROM_A_TASK, rounds, per_block, |system| match system {
                "rayon" => {
                    let mut got = 0;
                    let t = time(|| got = rp.install(|| rayon_node(depth)));
                    assert_eq!(got, expected, "rayon's tree of depth {depth}");
                    t
                }
                "procyon" => {
                    next_sample(&mut trees, || from_a_task(&pool, depth, false, per_block))
                }
                _ => next_sample(&mut flats, || from_a_task(&pool, depth, true, per_block)),
            });
            let jobs = (expected - 1) / 3;
            for (system, s) in FROM_A_TASK.iter().zip(samples) {
                record_samples(
                    "w7",
                    &format!("depth {depth} from a task"),
                    w,
                    system,
                    s,
                    Some(jobs),
                    None,
                );
            }
        }
        // A join tree from a task: fib(16), 1,596 joins (fib(10) under test).
        let n = if measuring() { 16 } else { 10 };
        let (want, joins) = fib_and_joins(n);
        const JOIN: [&str; 2] = ["rayon", "procyon"];
        let fib_block = per_block.div_ceil(4);
        let mut fibs = Vec::new();
        let samples = blocks(&JOIN, rounds, fib_block, |system| match system {
            "rayon" => {
                let mut got = 0;
                let t = time(|| got = rp.install(|| rayon_fib(n)));
                assert_eq!(got, want, "rayon's fib({n})");
                t
            }
            _ => next_sample(&mut fibs, || fib_from_a_task(&pool, n, want, fib_block)),
        });
        for (system, s) in JOIN.iter().zip(samples) {
            record_samples(
                "w7",
                &format!("fib({n}) by join from a task"),
                w,
                system,
                s,
                Some(joins),
                None,
            );
        }
    }
    note_load("w7", "after");
}
