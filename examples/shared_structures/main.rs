//! A tour of procyon's shared structures: a producer and a consumer, two explicit
//! processes, exchange items over a `SharedQueue`; the consumer fills a histogram in a
//! `SharedHashMap` and running totals in a robust `Mutex`; a `Barrier` separates that
//! phase from the next, in which both processes weigh the finished histogram with a
//! nested job run by the workers; the client joins both processes and prints a
//! checksum, checked against the same computation done sequentially.
//!
//! ```text
//! cargo run --release --example shared_structures -- --items 1000000
//! ```
//!
//! The producer and the consumer are explicit processes (`Pool::fork_with`): processes
//! of their own, outside the workers, so they run at once however many workers the pool
//! has, and the workers stay free for the nested jobs. Every structure is reached from
//! them through its descriptor; the client joins them (`Process::join`) for their
//! results.

use std::time::{Duration, Instant};

use clap::Parser;
use procyon::collections::{SharedHashMap, SharedHashMapDesc, SharedQueue, SharedQueueDesc};
use procyon::sync::{Barrier, BarrierDesc, Mutex, MutexDesc};
use procyon::{Ctx, Pod, Pool, Zeroable};

#[derive(Parser)]
struct Args {
    /// Items the producer sends.
    #[arg(long, default_value_t = 200_000)]
    items: u64,
    /// Histogram buckets.
    #[arg(long, default_value_t = 64)]
    buckets: u64,
    /// Worker processes (the producer and the consumer are processes of their own).
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

/// Running totals the consumer keeps under the mutex.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
struct Totals {
    count: u64,
    sum: u64,
}

/// Every descriptor a process needs: plain data, sent with its argument.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Shared {
    queue: SharedQueueDesc<u64>,
    histogram: SharedHashMapDesc<u64, u64>,
    totals: MutexDesc<Totals>,
    phase: BarrierDesc,
    items: u64,
    buckets: u64,
}

/// Value number `i`: a hash, so that the buckets fill unevenly.
fn item(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) % 1_000_003
}

/// The end-of-stream marker (no item reaches it).
const END: u64 = u64::MAX;
const STEP: Duration = Duration::from_secs(30);

/// Phase 2 for one half of the buckets: `sum of (bucket + 1) * count`, a nested job
/// over the buckets (run by the workers, each reading the map through its descriptor).
fn weigh(s: &Shared, half: u64, ctx: &Ctx) -> u64 {
    ctx.par_range(0..s.buckets)
        .map_with(
            (s.histogram, half),
            |(h, half): &(SharedHashMapDesc<u64, u64>, u64), b: u64| {
                if b % 2 != *half {
                    return 0;
                }
                (b + 1) * h.open().unwrap().get(&b).unwrap().unwrap_or(0)
            },
        )
        .sum()
        .unwrap()
}

fn producer(s: &Shared, ctx: &Ctx) -> u64 {
    let q = s.queue.open().unwrap();
    for i in 0..s.items {
        q.push_timeout(item(i), STEP).unwrap();
    }
    q.push_timeout(END, STEP).unwrap();
    s.phase.open().unwrap().wait_timeout(STEP).unwrap();
    weigh(s, 0, ctx)
}

fn consumer(s: &Shared, ctx: &Ctx) -> u64 {
    let (q, h, totals) = (
        s.queue.open().unwrap(),
        s.histogram.open().unwrap(),
        s.totals.open().unwrap(),
    );
    loop {
        let v = q.pop_timeout(STEP).unwrap();
        if v == END {
            break;
        }
        h.update(v % s.buckets, 0, |c| *c += 1).unwrap();
        let mut t = totals.lock().unwrap();
        t.count += 1;
        t.sum += v;
    }
    s.phase.open().unwrap().wait_timeout(STEP).unwrap();
    weigh(s, 1, ctx)
}

fn main() -> procyon::Result<()> {
    let args = Args::parse();
    if args.workers == 0 || args.buckets == 0 {
        eprintln!("shared_structures: needs --workers 1 or more and --buckets 1 or more");
        std::process::exit(2);
    }
    let pool = Pool::builder()
        .workers(args.workers)
        .mempool_size(64 << 20)
        .build()?;
    let mem = pool.mempool();
    let queue = SharedQueue::<u64>::new(mem, 1024)?;
    let histogram = SharedHashMap::<u64, u64>::new(mem)?;
    let totals = Mutex::new(mem, Totals::default())?;
    let phase = Barrier::new(mem, 3)?; // the two processes and the client
    let shared = Shared {
        queue: queue.desc(),
        histogram: histogram.desc(),
        totals: totals.desc(),
        phase: phase.desc(),
        items: args.items,
        buckets: args.buckets,
    };

    let start = Instant::now();
    let consuming = pool.fork_with(shared, consumer)?;
    let producing = pool.fork_with(shared, producer)?;
    phase.wait_timeout(STEP)?; // phase 1 over: the histogram is complete
    let phase1 = start.elapsed();
    let weight = producing.join()? + consuming.join()?;
    let t = *totals.lock()?;
    let checksum = weight ^ t.sum.rotate_left(32) ^ t.count;

    // The same, sequentially.
    let mut seq_hist = vec![0u64; args.buckets as usize];
    let mut seq_sum = 0u64;
    for i in 0..args.items {
        let v = item(i);
        seq_hist[(v % args.buckets) as usize] += 1;
        seq_sum += v;
    }
    let seq_weight: u64 = seq_hist
        .iter()
        .enumerate()
        .map(|(b, c)| (b as u64 + 1) * c)
        .sum();
    let seq_checksum = seq_weight ^ seq_sum.rotate_left(32) ^ args.items;

    println!(
        "shared_structures: {} items through the queue, {} buckets, 2 explicit processes joined, phase 1 in {:.1?}, all in {:.1?}",
        args.items,
        histogram.len(),
        phase1,
        start.elapsed()
    );
    println!("checksum = {checksum:#018x} (sequential {seq_checksum:#018x})");
    if checksum != seq_checksum {
        eprintln!("shared_structures: checksum mismatch");
        std::process::exit(1);
    }
    Ok(())
}
