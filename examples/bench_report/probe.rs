//! The machine facts a hand-off between processes costs, measured when a report run
//! starts and recorded with it (`bench_report --probe`, which `scripts/bench-report.sh`
//! appends to the run's `meta.tsv`).
//!
//! Three facts decided every figure of a short job in this project's measurements, and
//! none of them is a cache size or a core count that a system reports:
//!
//! - how long a `PAUSE` (`std::hint::spin_loop`) takes: a spinning waiter looks at its
//!   condition every few of them (24.6 ns each on one VM, a few cycles on older cores);
//! - how long a cache line takes to go from one CPU to another and back: every hand-off
//!   of a job or of its end is such a transfer, and on a VM it depends on where the host
//!   placed the vCPUs (one run measured 320 ns, where two vCPUs on one core complex take
//!   well under 100);
//! - how long a thread asleep on an idle CPU takes to run once woken: a waiter that gave
//!   up spinning pays it, and on a VM whose idle vCPUs halt it is tens of microseconds.
//!
//! A fourth fact is how fast a CPU runs the same code, and whether that depends on what
//! the CPU beside it does ([`neighbour_ns`]): a pointer chase through 256 KiB timed with
//! the other CPU asleep, spinning on `PAUSE` (as procyon's waiters do), or spinning on
//! integer adds. On the reference VM, within one day and at the same low load, a
//! one-worker W7 tree from a task took 2.4 us with the other vCPU idle and 3.7 us with it
//! spinning on `PAUSE` in one state; 3.7 us idle and 2.4 us with an integer spinner in
//! another; 2.4 us idle or beside `PAUSE` and 4.3 us beside an integer spinner in a
//! third; the same in all three cases in a fourth. The chase took 1,180 or 1,570 us for
//! the same 300,000 steps with the other vCPU idle (2026-12-06, issue 16's notes).
//!
//! Recorded, never used to decide anything: two runs whose probes differ are two
//! machines, whatever their names say.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{median, percentile};

/// The CPUs this process may run on, in order (`sched_getaffinity`); empty if unknown.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set, and `sched_getaffinity` writes
    // at most `size_of::<cpu_set_t>()` bytes into the one we own.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        set
    };
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below `CPU_SETSIZE`, within the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`; whether it worked.
fn pin(cpu: usize) -> bool {
    // SAFETY: as in `allowed_cpus`: a set we own, `cpu` below `CPU_SETSIZE` (checked),
    // and `sched_setaffinity` only reads the set.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Nanoseconds one `PAUSE` takes: the median of `runs` runs of `per_run`.
pub fn pause_ns(runs: usize, per_run: u32) -> f64 {
    let per_run = per_run.max(1);
    median(
        (0..runs.max(1))
            .map(|_| {
                let t = Instant::now();
                for _ in 0..per_run {
                    std::hint::spin_loop();
                }
                t.elapsed().as_nanos() as f64 / per_run as f64
            })
            .collect(),
    )
}

/// Nanoseconds a cache line takes from CPU `a` to CPU `b` and back (two threads pinned
/// there bouncing one atomic word): the median of `runs` runs of `per_run` round trips.
/// `None` if a thread could not be pinned or the runs took longer than `limit` (a CPU
/// taken by something else): the probe gives up rather than hang.
pub fn round_trip_ns(
    a: usize,
    b: usize,
    runs: usize,
    per_run: u64,
    limit: Duration,
) -> Option<f64> {
    let (runs, per_run) = (runs.max(1), per_run.max(1));
    let word = Arc::new(AtomicU64::new(0));
    // Relaxed wherever `stop` is touched: a flag that publishes nothing else (the
    // times are the main thread's own, and `join` orders the rest).
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + limit;
    let total = runs as u64 * per_run;
    // Waits until `word` holds `want`; false once the probe is stopped.
    let wait = move |word: &AtomicU64, stop: &AtomicBool, want: u64| {
        let mut spins = 0u32;
        // Acquire (and Release on the stores): a hand-off of work publishes data with
        // its word, and the probe times what such a hand-off costs.
        while word.load(Ordering::Acquire) != want {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 4096 == 0 && (stop.load(Ordering::Relaxed) || Instant::now() > deadline) {
                stop.store(true, Ordering::Relaxed);
                return false;
            }
        }
        true
    };
    let (w2, s2) = (word.clone(), stop.clone());
    let partner = std::thread::spawn(move || {
        if !pin(b) {
            s2.store(true, Ordering::Relaxed);
            return;
        }
        for i in 0..total {
            if !wait(&w2, &s2, 2 * i + 1) {
                return;
            }
            w2.store(2 * i + 2, Ordering::Release);
        }
    });
    let mut times = Vec::new();
    if pin(a) {
        'runs: for r in 0..runs as u64 {
            let t = Instant::now();
            for j in 0..per_run {
                let i = r * per_run + j;
                word.store(2 * i + 1, Ordering::Release);
                if !wait(&word, &stop, 2 * i + 2) {
                    break 'runs;
                }
            }
            times.push(t.elapsed().as_nanos() as f64 / per_run as f64);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = partner.join();
    (times.len() == runs).then(|| median(times))
}

/// Microseconds a thread asleep on CPU `b` (parked: a futex wait) takes to run once a
/// thread on CPU `a` wakes it, `samples` times, `gap` apart so that `b` goes idle in
/// between: (median, 90th percentile). `None` if a thread could not be pinned or a
/// wake-up was not seen within `limit`.
pub fn wake_us(
    a: usize,
    b: usize,
    samples: usize,
    gap: Duration,
    limit: Duration,
) -> Option<(f64, f64)> {
    let base = Instant::now();
    // The waker's stamp (ns since `base`) and the sample number it belongs to.
    let stamp = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    // Relaxed wherever `stop` is touched: a flag that publishes nothing else (the
    // latencies go through the mutex, and `join` orders the rest).
    let seen = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(samples)));
    let stop = Arc::new(AtomicBool::new(false));
    let (stamp2, seq2, seen2, lat2, stop2) = (
        stamp.clone(),
        seq.clone(),
        seen.clone(),
        lat.clone(),
        stop.clone(),
    );
    let sleeper = std::thread::spawn(move || {
        if !pin(b) {
            stop2.store(true, Ordering::Relaxed);
            return;
        }
        let mut last = 0;
        while !stop2.load(Ordering::Relaxed) {
            std::thread::park();
            let now = base.elapsed().as_nanos() as u64;
            // Acquire: pairs with the waker's Release store of `seq`, after its stamp.
            let s = seq2.load(Ordering::Acquire);
            if s != last {
                last = s;
                // Relaxed: ordered after the waker's store by the `seq` pair above.
                let t0 = stamp2.load(Ordering::Relaxed);
                lat2.lock()
                    .expect("no panics hold it")
                    .push(now.saturating_sub(t0) as f64 / 1e3);
                // Release: the waker waits for this before its next sample.
                seen2.store(s, Ordering::Release);
            }
        }
    });
    let mut ok = pin(a);
    for i in 1..=samples as u64 {
        if !ok || stop.load(Ordering::Relaxed) {
            ok = false;
            break;
        }
        std::thread::sleep(gap);
        // Relaxed: published by the Release store of `seq` just below.
        stamp.store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        // Release: the stamp is read after this number (above).
        seq.store(i, Ordering::Release);
        sleeper.thread().unpark();
        let deadline = Instant::now() + limit;
        // Acquire: pairs with the sleeper's Release store of `seen` (its sample pushed).
        while seen.load(Ordering::Acquire) != i {
            // The sleeper quits early only if it could not be pinned.
            if Instant::now() > deadline || stop.load(Ordering::Relaxed) {
                ok = false;
                break;
            }
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    sleeper.thread().unpark();
    let _ = sleeper.join();
    let mut v = std::mem::take(&mut *lat.lock().expect("no panics hold it"));
    if !ok || v.len() != samples || v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some((percentile(&v, 0.5), percentile(&v, 0.9)))
}

/// Nanoseconds per step of a pointer chase through a random cycle of 256 KiB (mostly
/// L2-resident) on CPU `a` while a thread pinned to CPU `b` sleeps, spins on `PAUSE`, or
/// spins on integer adds: the median of `rounds` rounds of `steps` steps each, the three
/// interleaved within every round. `None` if a thread could not be pinned or the whole
/// took longer than `limit`.
pub fn neighbour_ns(
    a: usize,
    b: usize,
    rounds: usize,
    steps: u64,
    limit: Duration,
) -> Option<[f64; 3]> {
    const IDLE: u8 = 0;
    const PAUSING: u8 = 1;
    const ADDING: u8 = 2;
    const QUIT: u8 = 3;
    const LEN: usize = 64 * 1024; // u32s: 256 KiB
    let deadline = Instant::now() + limit;
    // What the neighbour does. Relaxed: a flag that publishes nothing else; `join`
    // orders the end.
    let mode = Arc::new(std::sync::atomic::AtomicU8::new(IDLE));
    let pinned = Arc::new(AtomicBool::new(true));
    let (mode2, pinned2) = (mode.clone(), pinned.clone());
    let neighbour = std::thread::spawn(move || {
        if !pin(b) {
            pinned2.store(false, Ordering::Relaxed);
            return;
        }
        let mut x = 0u64;
        loop {
            match mode2.load(Ordering::Relaxed) {
                IDLE => std::thread::sleep(Duration::from_micros(200)),
                PAUSING => {
                    for _ in 0..8 {
                        std::hint::spin_loop();
                    }
                }
                ADDING => {
                    for _ in 0..64 {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                }
                _ => return,
            }
        }
    });
    // One random cycle through every slot (a fixed seed: the same walk every run).
    let mut order: Vec<u32> = (0..LEN as u32).collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in (1..LEN).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        order.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let mut next = vec![0u32; LEN];
    for k in 0..LEN {
        next[order[k] as usize] = order[(k + 1) % LEN];
    }
    let mut times: [Vec<f64>; 3] = Default::default();
    let mut ok = pin(a);
    'rounds: for _ in 0..rounds.max(1) {
        for m in [IDLE, PAUSING, ADDING] {
            if !ok || !pinned.load(Ordering::Relaxed) || Instant::now() > deadline {
                ok = false;
                break 'rounds;
            }
            mode.store(m, Ordering::Relaxed);
            // Let the neighbour settle into it (asleep, or spinning).
            std::thread::sleep(Duration::from_millis(2));
            let t = Instant::now();
            let mut i = 0u32;
            for _ in 0..steps {
                i = next[i as usize];
            }
            std::hint::black_box(i);
            times[m as usize].push(t.elapsed().as_nanos() as f64 / steps.max(1) as f64);
        }
    }
    mode.store(QUIT, Ordering::Relaxed);
    let _ = neighbour.join();
    if !ok || !pinned.load(Ordering::Relaxed) {
        return None;
    }
    let [idle, pausing, adding] = times;
    Some([median(idle), median(pausing), median(adding)])
}

/// The probes as `key<TAB>value` lines for the run's metadata (`render::parse_meta`).
pub fn meta_lines() -> String {
    let mut s = format!(
        "probe: PAUSE\t{:.1} ns (median of 5 runs of 1,000,000)\n",
        pause_ns(5, 1_000_000)
    );
    let cpus = allowed_cpus();
    let [a, b, ..] = cpus[..] else {
        s.push_str("probe: between two CPUs\tnot measured (one CPU allowed)\n");
        return s;
    };
    let limit = Duration::from_secs(10);
    let key = format!("probe: cache-line round trip, CPU {a} <-> CPU {b}");
    match round_trip_ns(a, b, 5, 100_000, limit) {
        Some(ns) => s.push_str(&format!(
            "{key}\t{ns:.0} ns (median of 5 runs of 100,000)\n"
        )),
        None => s.push_str(&format!("{key}\tnot measured (a CPU was taken)\n")),
    }
    let key = format!("probe: wake-up of a thread asleep on idle CPU {b}, from CPU {a}");
    match wake_us(a, b, 200, Duration::from_millis(2), limit) {
        Some((med, p90)) => s.push_str(&format!(
            "{key}\t{med:.1} us median, {p90:.1} us p90 (200 wake-ups, 2 ms apart)\n"
        )),
        None => s.push_str(&format!("{key}\tnot measured (a CPU was taken)\n")),
    }
    let key = format!(
        "probe: a pointer chase in 256 KiB on CPU {a}, CPU {b} idle / PAUSE-spinning / add-spinning"
    );
    match neighbour_ns(a, b, 7, 300_000, limit) {
        Some([idle, pausing, adding]) => s.push_str(&format!(
            "{key}\t{idle:.2} / {pausing:.2} / {adding:.2} ns per step (medians of 7 rounds of 300,000)\n"
        )),
        None => s.push_str(&format!("{key}\tnot measured (a CPU was taken)\n")),
    }
    s
}
