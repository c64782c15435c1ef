//! Round trip between two processes: a camlbox ping-pong (two boxes, one each way)
//! next to the two baselines that bracket it, measured in the same run:
//!
//! * `spin`: one shared `AtomicU32` each way, both sides spinning: the floor (cache-line
//!   transfer between the cores, nothing else);
//! * `futex`: the same words, but every hand-off is a futex wake and the waiter sleeps at
//!   once: what a round trip costs when both sides sleep every time.
//!
//! A camlbox hand-off spins for a bounded budget before it sleeps, so while both sides
//! are busy it should sit near `spin` plus encoding and the slot protocol (target: at most
//! 2 us per round trip).
//!
//! The partner is a forked child process that echoes until told to stop; it dies with the
//! bench (parent-death signal) whatever happens.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use procyon::Camlbox;

/// Forks a child running `f`, which dies with us; returns its pid.
fn fork_partner(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the bench is single-threaded here; the child only runs `f` and `_exit`s.
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

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(rc == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

const STOP: u64 = u64::MAX;

fn camlbox(c: &mut Criterion) {
    let ping = Camlbox::new(64, 64).unwrap();
    let pong = Camlbox::new(64, 64).unwrap();
    let pong_rx = pong.receiver::<u64>().unwrap();
    let ping_tx = ping.sender::<u64>();
    let (ping2, pong_tx) = (ping.clone(), pong.sender::<u64>());
    let partner = fork_partner(move || {
        let rx = ping2.receiver::<u64>().unwrap();
        loop {
            let m = rx.recv().unwrap();
            if m == STOP {
                break;
            }
            pong_tx.send(&m).unwrap();
        }
    });
    let mut next = 0u64;
    c.bench_function("round_trip/camlbox", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                ping_tx.send(&next).unwrap();
                assert_eq!(pong_rx.recv().unwrap(), next);
                next += 1;
            }
            start.elapsed()
        })
    });
    ping_tx.send(&STOP).unwrap();
    reap(partner);
}

/// Two 32-bit words in a shared anonymous mapping, one per direction.
struct Words {
    ptr: *mut libc::c_void,
}

impl Words {
    fn new() -> Words {
        // SAFETY: a fresh anonymous shared mapping; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Words { ptr }
    }

    /// Word 0 carries pings, word 16 (another cache line) pongs.
    fn word(&self, i: usize) -> &AtomicU32 {
        // SAFETY: inside the live, zeroed, 4-aligned mapping; only accessed atomically.
        unsafe { &*self.ptr.cast::<AtomicU32>().add(i * 16) }
    }
}

impl Drop for Words {
    fn drop(&mut self) {
        // SAFETY: our mapping; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr, 4096) };
    }
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: a live, aligned 32-bit word; the kernel only reads it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: a live, aligned 32-bit word, used as a key only.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

/// Echo loop of the baselines: wait for a new ping, answer with the same value.
fn echo(words: &Words, sleep: bool) {
    let (ping, pong) = (words.word(0), words.word(1));
    let mut last = 0;
    loop {
        let mut v = ping.load(Ordering::Acquire);
        while v == last {
            if sleep {
                futex_wait(ping, last);
            } else {
                std::hint::spin_loop();
            }
            v = ping.load(Ordering::Acquire);
        }
        if v == u32::MAX {
            return;
        }
        pong.store(v, Ordering::Release);
        if sleep {
            futex_wake(pong);
        }
        last = v;
    }
}

fn raw(c: &mut Criterion, name: &str, sleep: bool) {
    let words = Words::new();
    let partner = fork_partner(|| echo(&words, sleep));
    let (ping, pong) = (words.word(0), words.word(1));
    let mut next = 0u32;
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                next = next % (u32::MAX - 1) + 1; // never 0 (initial) nor u32::MAX (stop)
                ping.store(next, Ordering::Release);
                if sleep {
                    futex_wake(ping);
                }
                let mut v = pong.load(Ordering::Acquire);
                while v != next {
                    if sleep {
                        futex_wait(pong, v);
                    } else {
                        std::hint::spin_loop();
                    }
                    v = pong.load(Ordering::Acquire);
                }
            }
            start.elapsed()
        })
    });
    ping.store(u32::MAX, Ordering::Release);
    futex_wake(ping);
    reap(partner);
}

fn baselines(c: &mut Criterion) {
    raw(c, "round_trip/spin", false);
    raw(c, "round_trip/futex", true);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = camlbox, baselines
}
criterion_main!(benches);
