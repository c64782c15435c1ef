//! procyon's process-shared mutex, queue and hash map next to their in-process baselines,
//! in one run, one workload per group (procyon, then the baseline, so that the two
//! systems alternate through the run):
//!
//! * `mutex/uncontended`: lock + unlock of a `procyon::sync::Mutex<u64>` vs a
//!   `std::sync::Mutex<u64>`, one thread;
//! * `mutex/contended`: the same while a second *process* (procyon) or *thread* (std)
//!   locks and unlocks the same mutex in a loop;
//! * `queue/uncontended`: push + pop on a `SharedQueue<u64>` vs crossbeam's `ArrayQueue`;
//! * `queue/contended`: pop while another process / thread pushes;
//! * `hashmap/uncontended`: insert into a `SharedHashMap<u64, u64>` vs a `HashMap` behind
//!   a `std::sync::Mutex`;
//! * `hashmap/contended`: the same while another process / thread inserts.
//!
//! Partners are forked children (they die with the bench: parent-death signal) or
//! threads, started before the measurement and stopped after it.
//! `PROCYON_BENCH_QUICK=1` shortens every group for CI.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use crossbeam_queue::ArrayQueue;
use procyon::collections::{SharedBox, SharedHashMap, SharedQueue};
use procyon::sync::{Mutex, MutexGuard};
use procyon::Mempool;

/// Forks a child running `f`, which dies with us; returns its pid.
fn fork_partner(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the bench is single-threaded when it forks (thread partners are joined
    // before); the child only runs `f` and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain prctl; then `f`, then `_exit` without running our destructors.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
        f();
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// Stops and reaps a partner process.
fn stop(pid: libc::pid_t) {
    // SAFETY: our own child; `status` is a valid out-pointer.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
}

/// A thread partner running `f(&stop)` until told to stop.
struct ThreadPartner {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ThreadPartner {
    fn start(f: impl FnOnce(&AtomicBool) + Send + 'static) -> ThreadPartner {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let handle = Some(std::thread::spawn(move || f(&s2)));
        ThreadPartner { stop, handle }
    }
}

impl Drop for ThreadPartner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

/// Locks `m`; a poisoned lock (a partner killed while holding it, which is how the
/// contended runs end) is marked consistent: the counter needs no repair.
fn lock(m: &Mutex<u64>) -> MutexGuard<'_, u64> {
    match m.lock() {
        Ok(g) => g,
        Err(e) => {
            let mut g = e.into_poisoned().unwrap();
            g.mark_consistent();
            g
        }
    }
}

/// `iters` runs of `op`, timed.
fn timed(iters: u64, mut op: impl FnMut(u64)) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        op(i);
    }
    start.elapsed()
}

fn mutex(c: &mut Criterion, mem: &Mempool) {
    let m = Mutex::new(mem, 0u64).unwrap();
    let s = std::sync::Mutex::new(0u64);
    let mut g = c.benchmark_group("mutex/uncontended");
    g.bench_function("procyon", |b| {
        b.iter_custom(|n| timed(n, |_| *lock(&m) += 1))
    });
    g.bench_function("std", |b| {
        b.iter_custom(|n| timed(n, |_| *s.lock().unwrap() += 1))
    });
    g.finish();

    let mut g = c.benchmark_group("mutex/contended");
    g.bench_function("procyon_2_processes", |b| {
        let theirs = m.clone();
        let partner = fork_partner(move || loop {
            *lock(&theirs) += 1;
        });
        b.iter_custom(|n| timed(n, |_| *lock(&m) += 1));
        stop(partner);
    });
    g.bench_function("std_2_threads", |b| {
        let s = Arc::new(std::sync::Mutex::new(0u64));
        let theirs = Arc::clone(&s);
        let _partner = ThreadPartner::start(move |stop| {
            while !stop.load(Ordering::Relaxed) {
                *theirs.lock().unwrap() += 1;
            }
        });
        b.iter_custom(|n| timed(n, |_| *s.lock().unwrap() += 1));
    });
    g.finish();
}

fn queue(c: &mut Criterion, mem: &Mempool) {
    let q = SharedQueue::<u64>::new(mem, 1024).unwrap();
    let a = ArrayQueue::<u64>::new(1024);
    let mut g = c.benchmark_group("queue/uncontended");
    g.bench_function("procyon", |b| {
        b.iter_custom(|n| {
            timed(n, |i| {
                q.push(i).unwrap();
                q.pop().unwrap();
            })
        })
    });
    g.bench_function("crossbeam_array_queue", |b| {
        b.iter_custom(|n| {
            timed(n, |i| {
                a.push(i).unwrap();
                a.pop().unwrap();
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("queue/contended");
    g.bench_function("procyon_2_processes", |b| {
        let theirs = q.clone();
        let partner = fork_partner(move || {
            for i in 0.. {
                theirs.push(i).unwrap();
            }
        });
        b.iter_custom(|n| {
            timed(n, |_| {
                q.pop().unwrap();
            })
        });
        stop(partner);
        while q.try_pop().unwrap().is_some() {}
    });
    g.bench_function("crossbeam_2_threads", |b| {
        let a = Arc::new(ArrayQueue::<u64>::new(1024));
        let theirs = Arc::clone(&a);
        let _partner = ThreadPartner::start(move |stop| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if theirs.push(i).is_ok() {
                    i += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        b.iter_custom(|n| {
            timed(n, |_| loop {
                if a.pop().is_some() {
                    break;
                }
                std::hint::spin_loop();
            })
        });
    });
    g.finish();
}

/// Keys cycle through this many values, so that the tables stop growing.
const KEYS: u64 = 1 << 16;

fn hashmap(c: &mut Criterion, mem: &Mempool) {
    let m = SharedHashMap::<u64, u64>::new(mem).unwrap();
    let h = std::sync::Mutex::new(HashMap::<u64, u64>::new());
    let mut g = c.benchmark_group("hashmap/uncontended");
    g.bench_function("procyon", |b| {
        b.iter_custom(|n| {
            timed(n, |i| {
                m.insert(i % KEYS, i).unwrap();
            })
        })
    });
    g.bench_function("std_hashmap_in_mutex", |b| {
        b.iter_custom(|n| {
            timed(n, |i| {
                h.lock().unwrap().insert(i % KEYS, i);
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("hashmap/contended");
    g.bench_function("procyon_2_processes", |b| {
        let theirs = m.clone();
        let partner = fork_partner(move || {
            for i in 0u64.. {
                theirs.insert(KEYS + i % KEYS, i).unwrap();
            }
        });
        b.iter_custom(|n| {
            timed(n, |i| {
                m.insert(i % KEYS, i).unwrap();
            })
        });
        stop(partner);
    });
    g.bench_function("std_hashmap_in_mutex_2_threads", |b| {
        let h = Arc::new(std::sync::Mutex::new(HashMap::<u64, u64>::new()));
        let theirs = Arc::clone(&h);
        let _partner = ThreadPartner::start(move |stop| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                theirs.lock().unwrap().insert(KEYS + i % KEYS, i);
                i += 1;
            }
        });
        b.iter_custom(|n| {
            timed(n, |i| {
                h.lock().unwrap().insert(i % KEYS, i);
            })
        });
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    let mem = Mempool::new(64 << 20).expect("mempool");
    if support::criterion_wanted() {
        mutex(c, &mem);
        queue(c, &mem);
        hashmap(c, &mem);
    }
    recorded(&mem);
}

/// A partner running beside the measured loop, stopped when dropped: a forked process
/// (for procyon's objects) or a thread (for the baselines).
enum Partner {
    None,
    Process(libc::pid_t),
    // Held for its drop, which stops and joins the thread.
    Thread(#[allow(dead_code)] ThreadPartner),
}

impl Drop for Partner {
    fn drop(&mut self) {
        if let Partner::Process(pid) = *self {
            stop(pid);
        }
        // A thread partner stops and is joined by its own drop.
    }
}

/// Waits until a partner has set `started` (it does so before its loop), so that a
/// block is not timed before the contention begins.
fn wait_started(started: &SharedBox<u64>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.get().unwrap() == 0 {
        assert!(Instant::now() < deadline, "a partner did not start in 10 s");
        std::thread::yield_now();
    }
}

/// The recorded part: every case as `procyon` against `baseline` in interleaved blocks
/// (support/blocks.rs), each iteration a batch of operations, recorded per operation in
/// `results.jsonl` as bench `sync` for the report. For the contended cases, a block's
/// partner (a process for procyon, a thread for the baseline) starts when the block
/// starts and stops when it ends, so that only the measured system's partner runs.
fn recorded(mem: &Mempool) {
    let (rounds, per_block, batch) = match (support::measuring(), support::quick()) {
        (false, _) => (1, 1, 100),
        (true, true) => (7, 10, 10_000),
        (true, false) => (15, 20, 10_000),
    };
    let started = SharedBox::new(mem, 0u64).unwrap();
    // Runs the two systems' operations `procyon` and `baseline` on `case`; `partner(system)`
    // starts the partner of a block of `system`, which sets `started` before its loop.
    let pair = |case: &str,
                procyon: &mut dyn FnMut(u64),
                baseline: &mut dyn FnMut(u64),
                partner: &mut dyn FnMut(&str) -> Partner| {
        let mut running: Option<(String, Partner)> = None;
        // Recorded as the workers: the processes (threads) using the object, 1 or 2.
        let mut users = 1;
        let samples = support::blocks(&["procyon", "baseline"], rounds, per_block, |system| {
            let op: &mut dyn FnMut(u64) = if system == "procyon" {
                &mut *procyon
            } else {
                &mut *baseline
            };
            if running.as_ref().map(|(s, _)| s.as_str()) != Some(system) {
                running = None; // stops the other system's partner
                started.set(0).unwrap();
                let p = partner(system);
                if !matches!(p, Partner::None) {
                    wait_started(&started);
                    users = 2;
                }
                running = Some((system.to_string(), p));
                timed(batch, &mut *op); // untimed warm-up of the block
            }
            timed(batch, op).as_secs_f64() / batch as f64
        });
        drop(running);
        for (system, s) in ["procyon", "baseline"].iter().zip(samples) {
            support::record_samples("sync", case, users, system, s, None, None);
        }
    };
    let alone = &mut |_: &str| Partner::None;
    support::note_load("sync", "before");

    let m = Mutex::new(mem, 0u64).unwrap();
    let s = Arc::new(std::sync::Mutex::new(0u64));
    pair(
        "mutex lock + unlock, uncontended (vs std::sync::Mutex)",
        &mut |_| *lock(&m) += 1,
        &mut |_| *s.lock().unwrap() += 1,
        alone,
    );
    pair(
        "mutex, contended by 2 processes / 2 threads",
        &mut |_| *lock(&m) += 1,
        &mut |_| *s.lock().unwrap() += 1,
        &mut |system| {
            if system == "procyon" {
                let theirs = m.clone();
                let started = &started;
                Partner::Process(fork_partner(move || {
                    started.set(1).unwrap();
                    loop {
                        *lock(&theirs) += 1;
                    }
                }))
            } else {
                let (theirs, started) = (Arc::clone(&s), started.clone());
                Partner::Thread(ThreadPartner::start(move |stop| {
                    started.set(1).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        *theirs.lock().unwrap() += 1;
                    }
                }))
            }
        },
    );

    let q = SharedQueue::<u64>::new(mem, 1024).unwrap();
    let a = Arc::new(ArrayQueue::<u64>::new(1024));
    pair(
        "queue push + pop, uncontended (vs crossbeam ArrayQueue)",
        &mut |i| {
            q.push(i).unwrap();
            q.pop().unwrap();
        },
        &mut |i| {
            a.push(i).unwrap();
            a.pop().unwrap();
        },
        alone,
    );
    pair(
        "queue pop, another process / thread pushing",
        &mut |_| {
            q.pop().unwrap();
        },
        &mut |_| loop {
            if a.pop().is_some() {
                break;
            }
            std::hint::spin_loop();
        },
        &mut |system| {
            if system == "procyon" {
                let theirs = q.clone();
                let started = &started;
                Partner::Process(fork_partner(move || {
                    started.set(1).unwrap();
                    for i in 0.. {
                        theirs.push(i).unwrap();
                    }
                }))
            } else {
                let (theirs, started) = (Arc::clone(&a), started.clone());
                Partner::Thread(ThreadPartner::start(move |stop| {
                    started.set(1).unwrap();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if theirs.push(i).is_ok() {
                            i += 1;
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                }))
            }
        },
    );
    drop((q, a));

    let hm = SharedHashMap::<u64, u64>::new(mem).unwrap();
    let h = Arc::new(std::sync::Mutex::new(HashMap::<u64, u64>::new()));
    pair(
        "hash map insert, uncontended (vs HashMap in a std Mutex)",
        &mut |i| {
            hm.insert(i % KEYS, i).unwrap();
        },
        &mut |i| {
            h.lock().unwrap().insert(i % KEYS, i);
        },
        alone,
    );
    pair(
        "hash map insert, another process / thread inserting",
        &mut |i| {
            hm.insert(i % KEYS, i).unwrap();
        },
        &mut |i| {
            h.lock().unwrap().insert(i % KEYS, i);
        },
        &mut |system| {
            if system == "procyon" {
                let theirs = hm.clone();
                let started = &started;
                Partner::Process(fork_partner(move || {
                    started.set(1).unwrap();
                    for i in 0u64.. {
                        theirs.insert(KEYS + i % KEYS, i).unwrap();
                    }
                }))
            } else {
                let (theirs, started) = (Arc::clone(&h), started.clone());
                Partner::Thread(ThreadPartner::start(move |stop| {
                    started.set(1).unwrap();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        theirs.lock().unwrap().insert(KEYS + i % KEYS, i);
                        i += 1;
                    }
                }))
            }
        },
    );
    support::note_load("sync", "after");
}

fn config() -> Criterion {
    let c = Criterion::default().sample_size(20);
    if support::quick() {
        c.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500))
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = all
}
criterion_main!(benches);
