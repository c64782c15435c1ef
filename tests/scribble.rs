//! A task that writes garbage over the mempool (issue 15 item 5): 200 seeded trials. In
//! each, a forked child plays the client: it builds a pool, lets a task scribble over
//! random ranges of the heap (block headers included, the pool header excluded: see
//! docs/THREAT_MODEL.md), then allocates, frees and runs a job. The child must never
//! crash and never hang past the job timeout; each trial ends in a correct result (the
//! job's output matches a sequential map of its input as the scribble left it), a typed
//! error, or `Error::Corrupted` (the pool poisoned itself).

mod mempool_support;

use std::time::{Duration, Instant};

use mempool_support::{assert_no_children, fork_child, kill, serial, Rng, Status};
use procyon::{Error, Pool, StartMode};

const TRIALS: u64 = 200;
const N: usize = 1 << 16;

/// Exit codes of a trial's child.
const CORRECT: i32 = 0;
const TYPED_ERROR: i32 = 2;
const POISONED: i32 = 3;
const WRONG: i32 = 4;

/// What a scribbling task is told: the region's base, the heap range to hit, the seed,
/// and the header offsets of blocks the client allocated (some freed since).
type Target = (u64, u64, u64, u64, Vec<u64>);

/// Writes 1 to 4 garbage ranges (seeded) into the mempool: a whole block header, one
/// word of a header, or a random range of the used part of the heap.
fn scribble(args: &Target, _: &procyon::Ctx) -> u64 {
    let (base, lo, hi, seed, headers) = args;
    let mut rng = Rng(*seed);
    let count = 1 + rng.next() % 4;
    for _ in 0..count {
        let header = headers[(rng.next() % headers.len() as u64) as usize];
        let (off, len) = match rng.next() % 3 {
            0 => (header, 64),
            1 => (header + 8 * (rng.next() % 8), 8),
            _ => {
                let len = rng.range(1, 512);
                (rng.range(*lo, hi - len), len)
            }
        };
        for i in 0..len {
            // SAFETY: none, on purpose: this is the wild write under test. The range
            // lies inside the mapped mempool, so the write itself cannot fault.
            unsafe { ((base + off + i) as *mut u8).write_volatile(rng.next() as u8) };
        }
    }
    count
}

fn classify(e: &Error) -> i32 {
    match e {
        Error::Corrupted { .. } => POISONED,
        other => {
            eprintln!("typed error: {other}");
            TYPED_ERROR
        }
    }
}

/// One trial, in the child: returns its exit code.
fn trial(seed: u64) -> i32 {
    let pool = match Pool::builder()
        .workers(2)
        .mempool_size(16 << 20)
        .start_mode(StartMode::Fork)
        .job_timeout(Duration::from_secs(2))
        .build()
    {
        Ok(p) => p,
        Err(e) => return classify(&e),
    };
    let mut rng = Rng(seed ^ 0x5c81_bb1e);
    let x = match pool.array_from_fn(N, |i| i as u64) {
        Ok(x) => x,
        Err(e) => return classify(&e),
    };
    let mut keep = Vec::new();
    for _ in 0..16 {
        match pool.array_from_fn(rng.range(1, 20_000) as usize, |i| i as u32) {
            Ok(a) => keep.push(a),
            Err(e) => return classify(&e),
        }
    }
    let mempool = pool.mempool();
    let base = match mempool.alloc(64, 64) {
        Ok(b) => b.as_ptr() as u64 - b.offset(),
        Err(e) => return classify(&e),
    };
    let header = |a: &procyon::SharedArray<u32>| a.as_ptr() as u64 - base - 64;
    let mut headers: Vec<u64> = keep.iter().map(header).collect();
    headers.push(x.as_ptr() as u64 - base - 64);
    // Every other one freed: free blocks (and list links) between used ones.
    let mut i = 0;
    keep.retain(|_| {
        i += 1;
        i % 2 == 0
    });
    let lo = mempool.__heap_start() as u64;
    let hi = headers.iter().max().copied().unwrap_or(lo) + (64 << 10);
    let target: Target = (base, lo, hi, seed, headers);
    let scribbled = pool.spawn_with(target, scribble).and_then(|h| h.wait());
    if let Err(e) = scribbled {
        return classify(&e);
    }
    let mut code = CORRECT;
    // Allocations and frees after the scribble.
    for _ in 0..32 {
        match pool.array_from_fn(rng.range(1, 50_000) as usize, |i| i as u32) {
            Ok(a) if rng.next() % 2 == 0 => keep.push(a),
            Ok(a) => drop(a),
            Err(e) => {
                code = classify(&e);
                break;
            }
        }
        if !keep.is_empty() && rng.next() % 3 == 0 {
            keep.swap_remove((rng.next() % keep.len() as u64) as usize);
        }
    }
    if code != CORRECT {
        return code;
    }
    // A job over the input as the scribble left it.
    let expected: Vec<u64> = x
        .iter()
        .map(|&v| v.wrapping_mul(3).wrapping_add(1))
        .collect();
    match pool.par_map(&x, |v: u64| v.wrapping_mul(3).wrapping_add(1)) {
        Ok(y) if y[..] == expected[..] => CORRECT,
        Ok(_) => WRONG,
        Err(e) => classify(&e),
    }
}

#[test]
fn scribbled_mempools_never_crash_or_hang_the_client() {
    let _serial = serial();
    let started = Instant::now();
    let mut counts = [0usize; 5]; // correct, typed error, poisoned, wrong, other
    let mut failures = Vec::new();
    for seed in 0..TRIALS {
        let pid = fork_child(move || {
            let code = trial(0x5eed_0000 + seed);
            // Exits with the outcome as its code, without running the pool's destructors
            // twice (fork_child's own exit path is for Ok/Err).
            std::process::exit(code)
        });
        // A trial that outlives this is a hang: every wait in it is bounded by the 2 s
        // job timeout, and a trial takes a few tens of ms.
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            let mut raw = 0;
            // SAFETY: waits for our own child without blocking.
            let rc = unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG) };
            if rc == pid {
                break if libc::WIFEXITED(raw) {
                    Status::Exited(libc::WEXITSTATUS(raw))
                } else {
                    Status::Signaled(libc::WTERMSIG(raw))
                };
            }
            if Instant::now() > deadline {
                kill(pid, libc::SIGKILL);
                let mut raw = 0;
                // SAFETY: reaps the child we just killed.
                unsafe { libc::waitpid(pid, &mut raw, 0) };
                failures.push(format!("seed {seed}: hung past 20 s"));
                break Status::Signaled(libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        match status {
            Status::Exited(CORRECT) => counts[0] += 1,
            Status::Exited(TYPED_ERROR) => counts[1] += 1,
            Status::Exited(POISONED) => counts[2] += 1,
            Status::Exited(WRONG) => {
                counts[3] += 1;
                failures.push(format!("seed {seed}: a silently wrong result"));
            }
            other => {
                counts[4] += 1;
                failures.push(format!("seed {seed}: the client ended with {other:?}"));
            }
        }
    }
    eprintln!(
        "scribble: {TRIALS} trials in {:.1} s: {} correct, {} typed errors, {} poisoned, \
         {} wrong, {} crashed or hung",
        started.elapsed().as_secs_f64(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4]
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert_no_children();
}
