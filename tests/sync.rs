//! `procyon::sync` across real processes: 4 worker tasks x 100,000 operations on each
//! primitive against a sequential model, a mutex holder SIGKILLed mid-update, a
//! condition variable ping-pong that fails on any lost wakeup, timeouts, bad
//! descriptors. Every wait is bounded, and each test checks that nothing is left behind
//! (processes, files, mempool blocks).

mod common;

use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use common::{answer, kill, no_leaks};
use procyon::sync::{
    Barrier, BarrierDesc, Condvar, CondvarDesc, LockError, Mutex, MutexDesc, Semaphore,
    SemaphoreDesc,
};
use procyon::{Ctx, Error, JobHandle, Pool};

/// Tests that start pools run one at a time: `no_leaks` counts every descendant of the
/// test process, so a neighbour's pool would look like a leak.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `no_leaks(f)`, alone.
fn alone<R>(f: impl FnOnce() -> R) -> R {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    no_leaks(f)
}

const ANSWER: Duration = Duration::from_secs(30);
const OPS: u64 = 100_000;
const PARTIES: usize = 4;

fn pool() -> Pool {
    Pool::builder()
        .workers(PARTIES)
        .mempool_size(16 << 20)
        .build()
        .expect("pool builds")
}

/// A value with an invariant (`b == 2 * a`, `sum` the sum of the added terms) that a
/// critical section breaks for a moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
struct Pair {
    a: u64,
    b: u64,
    sum: u64,
    holder: u64,
}

/// Starts one task per party, each on its own worker (a spawned job is one task, and a
/// busy worker takes no other), and waits for all.
fn run_parties<A, R, F>(pool: &Pool, arg: impl Fn(u64) -> A, f: F) -> Vec<R>
where
    F: Fn(&A, &Ctx) -> R + procyon::TaskFn + Copy,
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let handles: Vec<JobHandle<R>> = (0..PARTIES as u64)
        .map(|i| pool.spawn_with(arg(i), f).expect("spawn"))
        .collect();
    handles
        .into_iter()
        .map(|h| answer(h, ANSWER, "party").expect("party answers"))
        .collect()
}

fn mutex_party(arg: &(MutexDesc<Pair>, u64), _: &Ctx) -> u64 {
    let m = arg.0.open().unwrap();
    for k in 0..OPS {
        let mut g = m.lock().unwrap();
        assert_eq!(g.b, 2 * g.a, "another process saw a half-done update");
        g.a += 1;
        std::hint::black_box(&mut *g);
        g.b += 2;
        g.sum += arg.1 * OPS + k;
    }
    OPS
}

#[test]
fn mutex_four_workers_against_model() {
    alone(|| {
        let pool = pool();
        let before = pool.mempool().usage().allocations;
        let m = Mutex::new(pool.mempool(), Pair::default()).unwrap();
        let start = Instant::now();
        let done: u64 = run_parties(&pool, |i| (m.desc(), i), mutex_party)
            .into_iter()
            .sum();
        eprintln!("mutex: {} lock/unlock in {:?}", done, start.elapsed());
        let n = PARTIES as u64 * OPS;
        let model_sum: u64 = (0..n).sum();
        let g = m.lock().unwrap();
        assert_eq!((g.a, g.b, g.sum), (n, 2 * n, model_sum));
        drop(g);
        assert!(!m.is_poisoned());
        assert_eq!(m.owner_deaths(), 0);
        drop(m);
        assert_eq!(
            pool.mempool().usage().allocations,
            before,
            "the mutex was freed"
        );
    });
}

/// Takes the lock, publishes its pid in `pid`, breaks the invariant half-way, and
/// never finishes.
fn hold_and_hang(arg: &(MutexDesc<Pair>, MutexDesc<u64>), _: &Ctx) -> u64 {
    let (m, pid) = (arg.0.open().unwrap(), arg.1.open().unwrap());
    let mut g = m.lock().unwrap();
    g.a += 1; // b not yet updated: the invariant is broken
    g.holder = u64::from(std::process::id());
    *pid.lock().unwrap() = u64::from(std::process::id());
    loop {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A pool of two workers for the holder tests.
fn two_workers() -> Pool {
    Pool::builder()
        .workers(2)
        .mempool_size(16 << 20)
        .build()
        .unwrap()
}

/// A `Pair { a, b }` mutex held by a task that hangs with it half-updated
/// ([`hold_and_hang`]): the mutex, the mutex the task published its pid in, the task's
/// job, and the pid, once the task holds the lock.
fn hung_holder(pool: &Pool, a: u64, b: u64) -> (Mutex<Pair>, Mutex<u64>, JobHandle<u64>, i32) {
    let m = Mutex::new(
        pool.mempool(),
        Pair {
            a,
            b,
            sum: 0,
            holder: 0,
        },
    )
    .unwrap();
    let pid = Mutex::new(pool.mempool(), 0u64).unwrap();
    let job = pool
        .spawn_with((m.desc(), pid.desc()), hold_and_hang)
        .unwrap();
    let deadline = Instant::now() + ANSWER;
    let victim = loop {
        let p = *pid.lock_timeout(Duration::from_secs(5)).unwrap();
        if p != 0 {
            break p as i32;
        }
        assert!(Instant::now() < deadline, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(2));
    };
    (m, pid, job, victim)
}

#[test]
fn holder_sigkilled_is_reported_and_repairable() {
    alone(|| {
        let pool = two_workers();
        let (m, _pid, job, victim) = hung_holder(&pool, 5, 10);
        // Held: others are refused, then time out.
        assert!(m.try_lock().unwrap().is_none());
        assert!(matches!(
            m.lock_timeout(Duration::from_millis(20)),
            Err(LockError::Failed(Error::Timeout { .. }))
        ));
        kill(victim, libc::SIGKILL);
        assert!(matches!(
            answer(job, ANSWER, "killed holder"),
            Err(Error::WorkerDied { .. })
        ));

        // The next locker is told, sees the broken invariant, repairs.
        let g = match m.lock_timeout(Duration::from_secs(10)) {
            Err(LockError::Poisoned(g)) => g,
            Ok(_) => panic!("the death of the holder was hidden"),
            Err(LockError::Failed(e)) => panic!("lock failed: {e}"),
        };
        assert!(g.owner_died());
        assert_eq!(g.holder, victim as u64);
        assert_eq!((g.a, g.b), (6, 10), "the half-done update is visible");
        // Without repair, the next locker is told again (nothing hides it).
        drop(g);
        let mut g = m
            .lock()
            .expect_err("still poisoned")
            .into_poisoned()
            .unwrap();
        assert!(
            !g.owner_died(),
            "told of the death once, then of the poison"
        );
        g.b = 2 * g.a;
        g.mark_consistent();
        drop(g);
        let g = m.lock().expect("clean after repair");
        assert_eq!((g.a, g.b), (6, 12));
        drop(g);
        assert_eq!(m.owner_deaths(), 1);
        // `?` turns a poisoned lock into a typed error.
        let e: Error = LockError::<()>::Poisoned(()).into();
        assert!(matches!(e, Error::Poisoned { .. }), "{e}");
    });
}

/// A locker already waiting when the holder is SIGKILLed (past its few microseconds of
/// spinning, asleep in glibc) is woken by the kernel and told of the death.
#[test]
fn a_waiting_locker_is_woken_and_told_when_the_holder_is_killed() {
    alone(|| {
        let pool = two_workers();
        let (m, _pid, job, victim) = hung_holder(&pool, 1, 2);
        let deadline = Instant::now() + ANSWER;
        let locking = std::sync::atomic::AtomicBool::new(false);
        let (told, waited) = std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let start = Instant::now();
                locking.store(true, std::sync::atomic::Ordering::SeqCst);
                let told = match m.lock_timeout(ANSWER) {
                    Err(LockError::Poisoned(g)) => g.owner_died() && g.holder == victim as u64,
                    Ok(_) => false,
                    Err(LockError::Failed(e)) => panic!("lock failed: {e}"),
                };
                (told, start.elapsed())
            });
            while !locking.load(std::sync::atomic::Ordering::SeqCst) {
                assert!(Instant::now() < deadline, "the waiter never started");
                std::thread::sleep(Duration::from_millis(1));
            }
            // Long enough for the waiter to be asleep in the kernel, not spinning.
            std::thread::sleep(Duration::from_millis(100));
            kill(victim, libc::SIGKILL);
            waiter.join().unwrap()
        });
        assert!(told, "the waiter was not told of the holder's death");
        assert!(
            waited >= Duration::from_millis(100) && waited < ANSWER,
            "woke after {waited:?}: before the kill (it started 100 ms before it), or only \
             at its time limit"
        );
        assert!(matches!(
            answer(job, ANSWER, "killed holder"),
            Err(Error::WorkerDied { .. })
        ));
        assert_eq!(m.owner_deaths(), 1);
    });
}

/// Ping-pong: party `i` of 2 waits until `turn % 2 == i`, bumps it, notifies. A lost
/// wakeup leaves both asleep: the bounded wait then fails the test.
fn ping_pong(arg: &(MutexDesc<u64>, CondvarDesc, u64, u64), _: &Ctx) -> u64 {
    let (m, cv) = (arg.0.open().unwrap(), arg.1.open().unwrap());
    let (me, rounds) = (arg.2, arg.3);
    let mut woken = 0;
    for _ in 0..rounds {
        let mut g = m.lock().unwrap();
        while *g % 2 != me {
            let (g2, r) = cv.wait_timeout(g, Duration::from_secs(10)).unwrap();
            assert!(
                !r.timed_out() || *g2 % 2 == me,
                "lost wakeup: turn {} stuck",
                *g2
            );
            g = g2;
            woken += 1;
        }
        *g += 1;
        drop(g);
        cv.notify_one();
    }
    woken
}

#[test]
fn condvar_ping_pong_loses_no_wakeup() {
    alone(|| {
        let pool = Pool::builder()
            .workers(2)
            .mempool_size(16 << 20)
            .build()
            .unwrap();
        let m = Mutex::new(pool.mempool(), 0u64).unwrap();
        let cv = Condvar::new(pool.mempool()).unwrap();
        let rounds = 20_000;
        let start = Instant::now();
        let hs: Vec<_> = (0..2)
            .map(|me| {
                pool.spawn_with((m.desc(), cv.desc(), me, rounds), ping_pong)
                    .unwrap()
            })
            .collect();
        for h in hs {
            answer(h, ANSWER, "ping-pong").unwrap();
        }
        eprintln!("condvar: {} hand-offs in {:?}", 2 * rounds, start.elapsed());
        assert_eq!(*m.lock().unwrap(), 2 * rounds);
    });
}

/// Waits (bounded) until the counter passes `arg.2`, counting how often it woke.
fn wait_for_count(arg: &(MutexDesc<u64>, CondvarDesc, u64), _: &Ctx) -> u64 {
    let (m, cv) = (arg.0.open().unwrap(), arg.1.open().unwrap());
    let (g, r) = cv
        .wait_timeout_while(m.lock().unwrap(), Duration::from_secs(20), |v| *v < arg.2)
        .unwrap();
    assert!(!r.timed_out(), "notify_all lost: value {}", *g);
    *g
}

#[test]
fn condvar_notify_all_wakes_every_process() {
    alone(|| {
        let pool = pool();
        let m = Mutex::new(pool.mempool(), 0u64).unwrap();
        let cv = Condvar::new(pool.mempool()).unwrap();
        let target = 50_000;
        let hs: Vec<_> = (0..3)
            .map(|_| {
                pool.spawn_with((m.desc(), cv.desc(), target), wait_for_count)
                    .unwrap()
            })
            .collect();
        // The client bumps the value with many notifies, some with nobody asleep.
        for _ in 0..target {
            *m.lock().unwrap() += 1;
            cv.notify_all();
        }
        for h in hs {
            assert_eq!(answer(h, ANSWER, "waiter").unwrap(), target);
        }
    });
}

/// A semaphore of one permit used as a lock over a counter in a mutex that is only ever
/// *tried*: two holders of the permit at once would find it held and fail.
fn sem_party(arg: &(SemaphoreDesc, MutexDesc<u64>), _: &Ctx) -> u64 {
    let (sem, m) = (arg.0.open().unwrap(), arg.1.open().unwrap());
    for _ in 0..OPS {
        sem.acquire_timeout(Duration::from_secs(10)).unwrap();
        let mut g = m.try_lock().unwrap().expect("two permit holders at once");
        *g += 1;
        drop(g);
        sem.release(1).unwrap();
    }
    OPS
}

#[test]
fn semaphore_four_workers_against_model() {
    alone(|| {
        let pool = pool();
        let sem = Semaphore::new(pool.mempool(), 1).unwrap();
        let counter = Mutex::new(pool.mempool(), 0u64).unwrap();
        let start = Instant::now();
        let done: u64 = run_parties(&pool, |_| (sem.desc(), counter.desc()), sem_party)
            .into_iter()
            .sum();
        eprintln!("semaphore: {done} acquire/release in {:?}", start.elapsed());
        assert_eq!(*counter.lock().unwrap(), PARTIES as u64 * OPS);
        assert_eq!(sem.available(), 1);
        assert!(sem.release(u32::MAX).is_err(), "overflow refused");
        assert_eq!(sem.available(), 1);
    });
}

const BARRIER_ROUNDS: u64 = 10_000;

/// Each round: write the round number into this party's cell, meet, check that every
/// cell holds at least this round.
fn barrier_party(arg: &(BarrierDesc, MutexDesc<[u64; PARTIES]>, u64), _: &Ctx) -> u64 {
    let (b, cells) = (arg.0.open().unwrap(), arg.1.open().unwrap());
    let me = arg.2 as usize;
    let mut leader = 0;
    for round in 1..=BARRIER_ROUNDS {
        cells.lock().unwrap()[me] = round;
        if b.wait_timeout(Duration::from_secs(10)).unwrap().is_leader() {
            leader += 1;
        }
        let seen = *cells.lock().unwrap();
        for (i, &c) in seen.iter().enumerate() {
            assert!(c >= round, "party {i} at {c} let through round {round}");
        }
    }
    leader
}

#[test]
fn barrier_four_workers_rounds() {
    alone(|| {
        let pool = pool();
        let b = Barrier::new(pool.mempool(), PARTIES as u32).unwrap();
        let cells = Mutex::new(pool.mempool(), [0u64; PARTIES]).unwrap();
        let start = Instant::now();
        let leaders: u64 = run_parties(&pool, |i| (b.desc(), cells.desc(), i), barrier_party)
            .into_iter()
            .sum();
        eprintln!(
            "barrier: {BARRIER_ROUNDS} rounds of {PARTIES} in {:?}",
            start.elapsed()
        );
        assert_eq!(leaders, BARRIER_ROUNDS, "one leader per round");
        assert_eq!(b.arrived(), 0);
        assert_eq!(*cells.lock().unwrap(), [BARRIER_ROUNDS; PARTIES]);
    });
}

#[test]
fn barrier_timeout_withdraws_and_stays_usable() {
    let pool = procyon::Mempool::new(4 << 20).unwrap();
    let b = Barrier::new(&pool, 2).unwrap();
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(20)),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(b.arrived(), 0);
    let leaders = std::thread::scope(|s| {
        let t = s.spawn(|| b.wait_timeout(Duration::from_secs(10)).unwrap().is_leader());
        let me = b.wait_timeout(Duration::from_secs(10)).unwrap().is_leader();
        u32::from(me) + u32::from(t.join().unwrap())
    });
    assert_eq!(leaders, 1);
    assert!(matches!(
        Barrier::new(&pool, 0),
        Err(Error::InvalidConfig { .. })
    ));
}

/// Meets the others once, then waits to be killed before the next round.
fn barrier_then_park(b: &BarrierDesc, _: &Ctx) -> u64 {
    let b = b.open().unwrap();
    b.wait_timeout(ANSWER).unwrap();
    loop {
        std::thread::park();
    }
}

/// Meets the others once, then reports how its next two waits ended.
fn barrier_live_party(b: &BarrierDesc, _: &Ctx) -> (bool, bool) {
    let b = b.open().unwrap();
    b.wait_timeout(ANSWER).unwrap();
    let broken = |r: procyon::Result<_>| matches!(r, Err(Error::BarrierBroken { .. }));
    (
        broken(b.wait_timeout(ANSWER)),
        broken(b.wait_timeout(ANSWER)),
    )
}

#[test]
fn a_barrier_party_that_died_breaks_the_round_for_the_others() {
    alone(|| {
        let pool = pool();
        let b = Barrier::new(pool.mempool(), 3).unwrap();
        let dying = pool.fork_with(b.desc(), barrier_then_park).unwrap();
        let live = pool.spawn_with(b.desc(), barrier_live_party).unwrap();
        b.wait_timeout(ANSWER).unwrap(); // round 1: all three
        let dead = dying.pid();
        kill(dead, libc::SIGKILL);
        let start = Instant::now();
        match b.wait_timeout(ANSWER) {
            Err(Error::BarrierBroken { pid }) => assert_eq!(pid, dead),
            other => panic!("expected BarrierBroken, got {other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "found within {:?}",
            start.elapsed()
        );
        assert_eq!(
            answer(live, ANSWER, "live party").unwrap(),
            (true, true),
            "the other waiter of the round is told too, and so is its next wait"
        );
        assert!(
            matches!(b.wait(), Err(Error::BarrierBroken { .. })),
            "stays broken"
        );
        assert!(matches!(
            dying.join(),
            Err(Error::ProcessDied {
                signal: Some(libc::SIGKILL),
                ..
            })
        ));
    });
}

#[test]
fn a_barrier_party_that_left_cleanly_is_not_a_dead_one() {
    alone(|| {
        let pool = pool();
        let b = Barrier::new(pool.mempool(), 2).unwrap();
        // Each round's other party is a new process that waits once and exits (its
        // handle dropped first); the next round waits for the next one, a while later.
        for _ in 0..3 {
            let p = pool
                .fork_with(b.desc(), |b: &BarrierDesc, _: &Ctx| {
                    std::thread::sleep(Duration::from_millis(60));
                    b.open().unwrap().wait_timeout(ANSWER).is_ok()
                })
                .unwrap();
            b.wait_timeout(ANSWER).unwrap();
            assert!(p.join().unwrap());
        }
    });
}

#[test]
fn relock_by_holder_is_an_error_not_a_hang() {
    let pool = procyon::Mempool::new(4 << 20).unwrap();
    let m = Mutex::new(&pool, 1u32).unwrap();
    let g = m.lock().unwrap();
    assert!(matches!(m.lock(), Err(LockError::Failed(Error::Io { .. }))));
    drop(g);
    assert_eq!(*m.lock().unwrap(), 1);
}

#[test]
fn stale_and_mistyped_descriptors_are_refused() {
    let pool = procyon::Mempool::new(4 << 20).unwrap();
    let m = Mutex::new(&pool, 1u32).unwrap();
    let desc = m.desc();
    // Wrong element type: the descriptor round-trips through serde as another type.
    let bytes = bincode::serialize(&desc).unwrap();
    let wrong: MutexDesc<u64> = bincode::deserialize(&bytes).unwrap();
    assert!(matches!(wrong.open(), Err(Error::InvalidDescriptor { .. })));
    let cv: CondvarDesc = bincode::deserialize(&bytes).unwrap();
    assert!(matches!(cv.open(), Err(Error::InvalidDescriptor { .. })));
    // A second handle keeps it alive; the last drop frees it; the descriptor then fails,
    // even once the memory is reused.
    let again = desc.open().unwrap();
    drop(m);
    assert_eq!(*again.lock().unwrap(), 1);
    drop(again);
    assert_eq!(pool.usage().allocations, 0);
    let _other = Mutex::new(&pool, 9u32).unwrap();
    assert!(matches!(desc.open(), Err(Error::InvalidDescriptor { .. })));
}

/// Breaks the invariant under the lock, then panics with the guard alive.
fn panic_holding(arg: &MutexDesc<Pair>, _: &Ctx) -> u64 {
    let m = arg.open().unwrap();
    let mut g = m.lock().unwrap();
    g.a += 1;
    panic!("half-way through an update");
}

#[test]
fn a_task_panicking_with_the_guard_poisons_the_mutex() {
    alone(|| {
        let pool = Pool::builder()
            .workers(2)
            .mempool_size(16 << 20)
            .build()
            .unwrap();
        let m = Mutex::new(pool.mempool(), Pair::default()).unwrap();
        let job = pool.spawn_with(m.desc(), panic_holding).unwrap();
        assert!(matches!(
            answer(job, ANSWER, "panicking task"),
            Err(Error::TaskPanicked { .. })
        ));
        let mut g = m
            .lock()
            .expect_err("poisoned by the panic")
            .into_poisoned()
            .unwrap();
        assert!(!g.owner_died(), "a panic is not a death");
        assert_eq!((g.a, g.b), (1, 0));
        g.b = 2;
        g.mark_consistent();
        drop(g);
        assert_eq!(
            *m.lock().unwrap(),
            Pair {
                a: 1,
                b: 2,
                sum: 0,
                holder: 0
            }
        );
        assert_eq!(m.owner_deaths(), 0);
    });
}
