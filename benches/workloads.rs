//! W1 (mandelbrot) and W2 (matmul) from docs/WORKLOADS.md, each in one criterion group that
//! holds the sequential loop and, for every worker count of `PROCYON_BENCH_WORKERS`
//! (a list such as `1,2,4`; default 2), rayon with that many threads and procyon with
//! that many worker processes. All three run the very kernels of `examples/mandelbrot` and `examples/matrix` (included below),
//! so speedups and ratios to rayon come from one run on one machine.
//!
//! * `w1_mandelbrot/{sequential, rayon/W, procyon/W}`: 2048 x 2048, max_iter 2000, one
//!   item per row (rayon: `par_chunks_mut(width)`; procyon: `par_range` with the frame
//!   and the image's descriptor as `map_with` context, at most 16 rows per claim).
//! * `w2_matmul/{sequential, rayon/W, procyon/W}`: n = 1024, i-k-j, a task is a block of
//!   16 rows of C (rayon: `par_chunks_mut(16 * n)`; procyon: `par_range` over the blocks
//!   with the three descriptors as `for_each_with` context).
//!
//! Criterion measures one benchmark after the other, so a burst of load from another
//! user of the machine lands on one of them only. The last part therefore measures the
//! three systems *interleaved* (in blocks of one run each, sequential, rayon, procyon,
//! again and again, the order rotating, at every worker count; support/blocks.rs) and
//! records them in `results.jsonl` (support/results.rs), which `scripts/bench-report.sh`
//! turns into BENCHMARKS.md; the largest count's medians are also saved as
//! `interleaved.json` in the group's criterion directory. `PROCYON_BENCH_ROUNDS_ONLY=1`
//! skips the criterion groups. The load average is printed before each part.
//!
//! Every run checks its result against the sequential one. `PROCYON_BENCH_QUICK=1` takes
//! shorter samples, fewer rounds, and **shrinks W1 to 1024 x 1024** (same mapping and
//! max_iter, a quarter of the work, checksum taken from the sequential loop), so that the
//! whole of `cargo bench` stays within minutes; W2 keeps its reference size. Quote full
//! runs. `cargo test --benches` runs each benchmark once at the quick sizes, with no
//! interleaved rounds. `examples/plot_speedup.rs` turns the results into BENCHMARKS.md's
//! table and plot.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use procyon::{Pool, SharedArray};
use rayon::prelude::*;

#[path = "support/mod.rs"]
mod support;
use support::{
    blocks, criterion_dir, criterion_wanted, measuring, median, note_load, quick, rayon_pool,
    record_samples, time, workers,
};

/// The W1 kernel and its procyon form, as the example runs them.
#[path = "../examples/mandelbrot"]
mod w1 {
    pub mod kernel;
    pub mod rows;
}

/// The W2 kernel and its procyon form, as the example runs them.
#[path = "../examples/matrix"]
mod w2 {
    pub mod blocks;
    pub mod kernel;
}

use w1::kernel::{Frame, W1_CHECKSUM};
use w2::blocks::ROWS_PER_TASK;
use w2::kernel::{W2_CHECKSUM, W2_N};

/// Long iterations (W1 takes seconds): the fewest samples criterion allows, one flat
/// batch each.
fn configure(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, full: Duration) {
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    if quick() {
        g.measurement_time(Duration::from_secs(1))
            .warm_up_time(Duration::from_millis(500));
    } else {
        g.measurement_time(full)
            .warm_up_time(Duration::from_secs(3));
    }
}

/// A workload in its three forms (the sequential loop, rayon, procyon), each run's
/// output checked against the sequential one.
trait Workload {
    /// The criterion group (also where the interleaved rounds are saved).
    const GROUP: &'static str;
    /// The workload's name in the results ("w1", "w2").
    const NAME: &'static str;
    /// criterion's measurement time per benchmark in full mode.
    const FULL_TIME: Duration;
    /// The arrays procyon's form works on.
    type Arrays;
    fn throughput(&self) -> Throughput;
    fn sequential(&mut self);
    fn rayon(&mut self, rp: &rayon::ThreadPool);
    fn procyon_pool(&self, workers: usize) -> (Pool, Self::Arrays);
    fn procyon(&self, pool: &Pool, arrays: &mut Self::Arrays);
    /// Checks the output the sequential loop and rayon write (see [`check`]).
    fn check_own(&mut self, who: &str);
    /// Checks procyon's output.
    fn check_procyon(&self, arrays: &mut Self::Arrays);
}

/// W1's three forms over one frame, each checked against the sequential image.
struct W1 {
    frame: Frame,
    /// The sequential image and its checksum.
    expected: (Vec<u32>, u64),
    /// The image the sequential loop and rayon write.
    image: Vec<u32>,
}

impl W1 {
    fn new() -> W1 {
        let frame = if quick() || !measuring() {
            Frame {
                width: 1024,
                height: 1024,
                ..Frame::W1
            }
        } else {
            Frame::W1
        };
        let mut reference = vec![0u32; frame.pixels()];
        let sum = w1::kernel::sequential(&frame, &mut reference);
        if frame == Frame::W1 {
            assert_eq!(sum, W1_CHECKSUM);
        }
        W1 {
            frame,
            expected: (reference, sum),
            image: vec![0; frame.pixels()],
        }
    }
}

impl Workload for W1 {
    const GROUP: &'static str = "w1_mandelbrot";
    const NAME: &'static str = "w1";
    const FULL_TIME: Duration = Duration::from_secs(60);
    type Arrays = SharedArray<u32>;

    fn throughput(&self) -> Throughput {
        Throughput::Elements(self.frame.pixels() as u64)
    }

    fn sequential(&mut self) {
        let sum = w1::kernel::sequential(&self.frame, black_box(&mut self.image));
        assert_eq!(sum, self.expected.1);
    }

    fn rayon(&mut self, rp: &rayon::ThreadPool) {
        let frame = self.frame;
        let image = &mut self.image;
        let sum: u64 = rp.install(|| {
            image
                .par_chunks_mut(frame.width as usize)
                .enumerate()
                .map(|(y, out)| w1::kernel::row(&frame, y as u32, out))
                .sum()
        });
        assert_eq!(sum, self.expected.1);
    }

    fn procyon_pool(&self, workers: usize) -> (Pool, SharedArray<u32>) {
        let pool = w1::rows::pool(workers, self.frame.pixels()).expect("procyon pool");
        let image = pool
            .array_zeroed::<u32>(self.frame.pixels())
            .expect("image");
        (pool, image)
    }

    fn procyon(&self, pool: &Pool, image: &mut SharedArray<u32>) {
        let sums = w1::rows::spawn(pool, self.frame, image)
            .and_then(|h| h.wait())
            .expect("W1 job");
        assert_eq!(sums.iter().sum::<u64>(), self.expected.1);
    }

    fn check_own(&mut self, who: &str) {
        check(&self.expected.0, &mut self.image, who);
    }

    fn check_procyon(&self, image: &mut SharedArray<u32>) {
        check(&self.expected.0, image, "procyon");
    }
}

/// W2's three forms at size n, each checked against the sequential C.
struct W2 {
    n: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    expected: Vec<f64>,
    out: Vec<f64>,
}

impl W2 {
    fn new() -> W2 {
        let n = W2_N;
        let a: Vec<f64> = (0..n * n).map(|x| w2::kernel::a(n, x)).collect();
        let b: Vec<f64> = (0..n * n).map(|x| w2::kernel::b(n, x)).collect();
        let mut expected = vec![0.0f64; n * n];
        w2::kernel::sequential(n, &a, &b, &mut expected);
        assert_eq!(
            format!("{:.6}", w2::kernel::checksum(&expected)),
            W2_CHECKSUM
        );
        W2 {
            n,
            a,
            b,
            expected,
            out: vec![0.0; n * n],
        }
    }
}

impl Workload for W2 {
    const GROUP: &'static str = "w2_matmul";
    const NAME: &'static str = "w2";
    const FULL_TIME: Duration = Duration::from_secs(20);
    type Arrays = [SharedArray<f64>; 3];

    /// Counted as floating-point operations: the reported "elements/s" are FLOP/s.
    fn throughput(&self) -> Throughput {
        Throughput::Elements(2 * (self.n as u64).pow(3))
    }

    fn sequential(&mut self) {
        w2::kernel::sequential(self.n, &self.a, &self.b, black_box(&mut self.out));
    }

    fn rayon(&mut self, rp: &rayon::ThreadPool) {
        let (n, a, b) = (self.n, &self.a, &self.b);
        let out = &mut self.out;
        rp.install(|| {
            out.par_chunks_mut(ROWS_PER_TASK * n)
                .enumerate()
                .for_each(|(blk, c)| w2::kernel::rows(n, a, b, blk * ROWS_PER_TASK, c))
        });
    }

    fn procyon_pool(&self, workers: usize) -> (Pool, [SharedArray<f64>; 3]) {
        let pool = w2::blocks::pool(workers, self.n).expect("procyon pool");
        let (a, b) = w2::blocks::inputs(&pool, self.n).expect("inputs");
        let c = pool.array_zeroed::<f64>(self.n * self.n).expect("C");
        (pool, [a, b, c])
    }

    fn procyon(&self, pool: &Pool, [a, b, c]: &mut [SharedArray<f64>; 3]) {
        w2::blocks::multiply(pool, self.n, a, b, c).expect("W2 job");
    }

    fn check_own(&mut self, who: &str) {
        check(&self.expected, &mut self.out, who);
    }

    fn check_procyon(&self, arrays: &mut [SharedArray<f64>; 3]) {
        check(&self.expected, &mut arrays[2], "procyon");
    }
}

/// Asserts that `out` is the sequential loop's output, then clears it (so that a run
/// that wrote nothing cannot pass the next check).
fn check<T: PartialEq + Default + Copy>(expected: &[T], out: &mut [T], who: &str) {
    assert!(
        out == expected,
        "{who}'s output differs from the sequential one"
    );
    out.fill(T::default());
}

/// The group of workload `w`: the sequential loop, then rayon and procyon at every
/// worker count, each benchmark's output checked after it ran.
fn bench<W: Workload>(c: &mut Criterion, mut w: W) {
    note_load(W::GROUP, "before criterion's");
    let mut g = c.benchmark_group(W::GROUP);
    configure(&mut g, W::FULL_TIME);
    g.throughput(w.throughput());
    // `ran`: whether criterion ran the benchmark (a filter may skip it), so its output
    // is there to check.
    let mut ran = false;
    g.bench_function("sequential", |b| {
        ran = true;
        b.iter(|| w.sequential())
    });
    if std::mem::take(&mut ran) {
        w.check_own("the sequential loop");
    }
    for workers in workers() {
        let rp = rayon_pool(workers);
        g.bench_with_input(BenchmarkId::new("rayon", workers), &workers, |b, _| {
            ran = true;
            b.iter(|| w.rayon(&rp))
        });
        if std::mem::take(&mut ran) {
            w.check_own("rayon");
        }
        drop(rp);
        let (pool, mut arrays) = w.procyon_pool(workers);
        g.bench_with_input(BenchmarkId::new("procyon", workers), &workers, |b, _| {
            ran = true;
            b.iter(|| w.procyon(&pool, &mut arrays))
        });
        if std::mem::take(&mut ran) {
            w.check_procyon(&mut arrays);
        }
    }
    g.finish();
}

fn w1_mandelbrot(c: &mut Criterion) {
    if criterion_wanted() {
        bench(c, W1::new());
    }
}

fn w2_matmul(c: &mut Criterion) {
    if criterion_wanted() {
        bench(c, W2::new());
    }
}

/// Prints the medians of interleaved rounds (`rounds[i] = (sequential, rayon, procyon)`
/// seconds) and saves them beside criterion's results of `group`, as
/// `interleaved.json`, for `examples/plot_speedup.rs`.
fn report_rounds(group: &str, workers: usize, rounds: &[(f64, f64, f64)]) {
    let col = |f: fn(&(f64, f64, f64)) -> f64| median(rounds.iter().map(f).collect());
    let (seq, rayon, procyon) = (col(|r| r.0), col(|r| r.1), col(|r| r.2));
    let (speedup_rayon, speedup_procyon) = (col(|r| r.0 / r.1), col(|r| r.0 / r.2));
    let ratio = col(|r| r.1 / r.2);
    println!(
        "{group} interleaved, {} rounds at {workers} workers: median sequential {seq:.4} s, \
         rayon {rayon:.4} s, procyon {procyon:.4} s; median per-round speedup rayon \
         {speedup_rayon:.2}x, procyon {speedup_procyon:.2}x; procyon / rayon (rayon's time \
         over procyon's) {ratio:.3}",
        rounds.len(),
    );
    let report = serde_json::json!({
        "workers": workers,
        "rounds": rounds.len(),
        "sequential": seq,
        "rayon": rayon,
        "procyon": procyon,
        "speedup_rayon": speedup_rayon,
        "speedup_procyon": speedup_procyon,
        "procyon_over_rayon": ratio,
    });
    let dir = criterion_dir().join(group);
    let path = dir.join("interleaved.json");
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, report.to_string()))
    {
        eprintln!("could not write {}: {e}", path.display());
    }
}

/// `rounds` rounds of the three forms of `w` in interleaved blocks of one run each (the
/// order rotating; support/blocks.rs), after a warm-up run of procyon's (the workers'
/// first touch of the arrays' pages), recorded in the results. Every run's output is
/// checked, and cleared, before the next run (untimed). Returns the rounds as
/// `(sequential, rayon, procyon)` seconds.
fn interleaved_rounds<W: Workload>(
    w: &mut W,
    workers: usize,
    rounds: usize,
) -> Vec<(f64, f64, f64)> {
    let rp = rayon_pool(workers);
    let (pool, mut arrays) = w.procyon_pool(workers);
    w.procyon(&pool, &mut arrays);
    w.check_procyon(&mut arrays);
    const SYSTEMS: [&str; 3] = ["sequential", "rayon", "procyon"];
    let samples = blocks(&SYSTEMS, rounds, 1, |system| match system {
        "sequential" => {
            let t = time(|| w.sequential());
            w.check_own("the sequential loop");
            t
        }
        "rayon" => {
            let t = time(|| w.rayon(&rp));
            w.check_own("rayon");
            t
        }
        _ => {
            let t = time(|| w.procyon(&pool, &mut arrays));
            w.check_procyon(&mut arrays);
            t
        }
    });
    let r = (0..rounds)
        .map(|i| (samples[0][i], samples[1][i], samples[2][i]))
        .collect();
    let case = if W::NAME == "w1" && quick() {
        "1024 x 1024 (quick)"
    } else {
        "reference size"
    };
    for (system, s) in SYSTEMS.iter().zip(samples) {
        record_samples(W::NAME, case, workers, system, s, None, None);
    }
    r
}

/// The interleaved rounds of W1 and W2 at every worker count; the last count's are also
/// saved as `interleaved.json` beside criterion's results, for `plot_speedup`.
fn interleaved(_: &mut Criterion) {
    if !measuring() {
        return;
    }
    let counts = workers();
    note_load("w1 w2", "before");
    let mut w1 = W1::new();
    let mut w2 = W2::new();
    // W1's rounds: both systems run it within a few percent of twice the sequential
    // speed on 2 workers, so its verdict against rayon is the median of ratios near 1.
    // Five rounds put it at 0.99x, 1.01x and 1.03x in three report runs of one engine
    // (O, P, Q of 2026-12-06; Q's rounds 0.99x-1.05x); nine move less from run to run,
    // for about half a minute more in quick mode.
    const W1_ROUNDS: usize = 9;
    for &workers in &counts {
        let r = interleaved_rounds(&mut w1, workers, W1_ROUNDS);
        if Some(&workers) == counts.last() {
            report_rounds(W1::GROUP, workers, &r);
        }
        let r = interleaved_rounds(&mut w2, workers, if quick() { 9 } else { 31 });
        if Some(&workers) == counts.last() {
            report_rounds(W2::GROUP, workers, &r);
        }
    }
    note_load("w1 w2", "after");
}

criterion_group!(workloads, w1_mandelbrot, w2_matmul, interleaved);
criterion_main!(workloads);
