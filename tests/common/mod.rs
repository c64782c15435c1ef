//! Helpers shared by the integration tests: leak checks for processes and files.
#![allow(dead_code)]

pub mod affinity;
pub mod procfs;
pub mod tasks;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// One process as `/proc/<pid>/stat` describes it.
struct Proc {
    pid: i32,
    ppid: i32,
    zombie: bool,
}

/// Every process `/proc` lists (those that vanish while we read are skipped).
fn processes() -> Vec<Proc> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Some(fields) = procfs::of_process(pid) else {
            continue;
        };
        let zombie = fields[procfs::STATE] == "Z";
        let ppid = fields[procfs::PPID].parse().unwrap_or(0);
        all.push(Proc { pid, ppid, zombie });
    }
    all
}

/// Pids of this process's live (non-zombie) descendants, except its fork server (which
/// lives as long as the process, by design); the server's children (schedulers) and their
/// workers are counted.
pub fn descendants() -> BTreeSet<i32> {
    let live: Vec<Proc> = processes().into_iter().filter(|p| !p.zombie).collect();
    let mut found = BTreeSet::new();
    let mut frontier = vec![std::process::id() as i32];
    while let Some(parent) = frontier.pop() {
        for p in &live {
            if p.ppid == parent && found.insert(p.pid) {
                frontier.push(p.pid);
            }
        }
    }
    if let Some(server) = procyon::__fork_server_pid() {
        found.remove(&server);
    }
    found
}

/// Waits until `pid` no longer exists (or is a zombie); true if it went within `limit`.
pub fn gone_within(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let alive = procfs::of_process(pid).is_some_and(|f| f[procfs::STATE] != "Z");
        if !alive {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Names of entries in /dev/shm and /tmp.
pub fn shm_and_tmp() -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    for dir in ["/dev/shm", "/tmp"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                s.insert(format!("{dir}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    s
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The turn of a test that starts processes in a binary whose other tests check for
/// leftover processes ([`no_leaks`] takes it too): held for the whole test, it keeps that
/// test's pool from being counted as another test's leak under plain `cargo test`. Never
/// call [`no_leaks`] while holding it (the lock is not reentrant).
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Asserts that a closure leaves no new descendant process and no new file in /dev/shm
/// or /tmp whose name mentions procyon.
///
/// The check counts every descendant of the test process, so two such checks in one test
/// binary must not overlap: plain `cargo test` runs a binary's tests on parallel threads
/// (cargo-nextest gives each its own process). A lock taken for the whole closure runs
/// them one at a time; a failed test's poisoned lock is taken over.
pub fn no_leaks<R>(f: impl FnOnce() -> R) -> R {
    let _turn = one_at_a_time();
    let files_before = shm_and_tmp();
    let r = f();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = descendants();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leftover processes after the test: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let new: Vec<_> = shm_and_tmp()
        .difference(&files_before)
        .filter(|n| n.contains("procyon"))
        .cloned()
        .collect();
    assert!(new.is_empty(), "new shared-memory/tmp files: {new:?}");
    r
}

/// Sends `sig` to `pid` (a process of the pool under test).
///
/// # Panics
/// If `pid` is not positive: `kill(0, ..)` would signal the test's whole process group
/// (`Pool::pids` reports 0 for a worker not replaced yet).
pub fn kill(pid: i32, sig: i32) {
    assert!(pid > 0, "kill({pid}): not a process of the pool");
    // SAFETY: kill(2) has no memory-safety preconditions; the pids are the test's own
    // descendants.
    unsafe { libc::kill(pid, sig) };
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    pid > 0 && !gone_within(pid, Duration::ZERO)
}

/// Waits until the pool has all its workers alive (a killed worker's replacement may
/// take a moment to fork); panics after `limit` with the pids seen.
pub fn assert_full_strength(pool: &procyon::Pool, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let (_, pids) = pool.pids();
        let distinct: BTreeSet<i32> = pids.iter().copied().collect();
        if pids.len() == pool.workers()
            && distinct.len() == pids.len()
            && pids.iter().all(|&p| alive(p))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pool not at full strength after {limit:?}: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The most jobs `pool` had in flight, looked at every millisecond until `handle`'s job
/// has finished an item; panics after `limit` (a job that never gets there fails the
/// test instead of hanging it).
pub fn most_in_flight_until_an_item_is_done<R>(
    pool: &procyon::Pool,
    handle: &procyon::JobHandle<R>,
    limit: Duration,
) -> usize {
    let deadline = Instant::now() + limit;
    let mut most = 0;
    while handle.progress().items_done < 1 {
        most = most.max(pool.jobs_in_flight());
        assert!(
            Instant::now() < deadline,
            "no item done within {limit:?} (progress {:?})",
            handle.progress()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    most
}

/// Waits for a job with a bound: a job that is never answered fails the test instead of
/// hanging it.
pub fn answer<R>(handle: procyon::JobHandle<R>, limit: Duration, what: &str) -> procyon::Result<R> {
    let deadline = Instant::now() + limit;
    let mut handle = handle;
    loop {
        // `wait_timeout` may hand the handle back before its timeout (it does so after
        // each 10 ms callback step when callbacks are set): wait again until our deadline.
        match handle.wait_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(r) => return r,
            Err(h) if Instant::now() < deadline => handle = h,
            Err(h) => {
                let p = h.progress();
                // Leak the handle: dropping it would cancel and wait again.
                std::mem::forget(h);
                panic!("{what}: no answer within {limit:?} (progress {p:?})")
            }
        }
    }
}

/// A field of /proc/<pid>/status in kB (`VmRSS`, `RssAnon`, ...), if readable.
pub fn status_kb(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Number of open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Pids of the zombie children of `parent`.
pub fn zombie_children(parent: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| p.zombie && p.ppid == parent)
        .map(|p| p.pid)
        .collect()
}

/// Everything in process `pid` that would make procyon's shared memory reachable from
/// outside the process tree: shared mappings backed by a named file (anything but the
/// anonymous `/dev/zero (deleted)` of `MAP_SHARED | MAP_ANONYMOUS`), mappings or open
/// files in /dev/shm, memfds, SysV segments. Empty is the expected answer.
pub fn named_shared_memory(pid: i32) -> Vec<String> {
    let mut found = Vec::new();
    let maps =
        std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("readable /proc/<pid>/maps");
    for line in maps.lines() {
        let mut cols = line.split_whitespace();
        let perms = cols.nth(1).unwrap_or("");
        let path = line
            .splitn(6, char::is_whitespace)
            .nth(5)
            .map(str::trim)
            .unwrap_or("");
        // (Not "any path naming procyon": the checkout, and so the test executable, may
        // live in a directory of that name.)
        let suspicious_path = path.starts_with("/dev/shm")
            || path.starts_with("/memfd:")
            || path.starts_with("/SYSV");
        let named_shared =
            perms.ends_with('s') && !path.is_empty() && path != "/dev/zero (deleted)";
        if suspicious_path || named_shared {
            found.push(format!("{pid} maps: {line}"));
        }
    }
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if t.starts_with("/dev/shm")
                || t.starts_with("/memfd:")
                || (t.starts_with("/tmp/") && t.contains("procyon"))
            {
                found.push(format!(
                    "{pid} fd {}: {t}",
                    fd.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// xorshift64*, seeded from the clock or from `PROCYON_FAULT_SEED` (printed, so a failing
/// run of the fault or soak tests can be replayed).
pub struct Rng(u64);

impl Rng {
    pub fn new(test: &str) -> Rng {
        let seed = std::env::var("PROCYON_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{test}: PROCYON_FAULT_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A random delay in `0..=max`.
    pub fn delay(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.below(max.as_micros() as u64 + 1))
    }
}
