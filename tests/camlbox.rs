//! Camlboxes between real forked processes: many senders, dead senders, dead and
//! replaced receivers, every error the API promises, and an idle receiver that costs no
//! CPU.
//!
//! Every forking test holds `SERIAL` (one fork at a time in this multi-threaded test
//! binary); a child runs its closure under `catch_unwind` and ends with `_exit`, and the
//! parent asserts on its `waitpid` status. A `Child` not waited for is killed and reaped on
//! drop, so a failing test leaves no process behind.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use procyon::{Camlbox, Error};
use serde::{Deserialize, Serialize};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a child ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// A forked child process, killed and reaped on drop unless waited for.
struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    /// Forks; the child runs `f` and exits with its code (101 if it panics).
    fn spawn(f: impl FnOnce() -> i32) -> Child {
        // SAFETY: the child only runs `f` (camlbox calls, allocation, which glibc keeps
        // fork-safe) and then `_exit`s; `SERIAL` keeps other tests from forking meanwhile.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: plain prctl; the child dies with the test thread that forked it.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
            let code = catch_unwind(AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: ends the child without running the parent's destructors or atexit.
            unsafe { libc::_exit(code) };
        }
        Child { pid, reaped: false }
    }

    fn wait(mut self) -> Ended {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        assert_eq!(rc, self.pid, "waitpid");
        self.reaped = true;
        if libc::WIFEXITED(status) {
            Ended::Exited(libc::WEXITSTATUS(status))
        } else {
            Ended::Signaled(libc::WTERMSIG(status))
        }
    }

    fn kill(self) -> Ended {
        // SAFETY: signals our own, not yet reaped, child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        self.wait()
    }

    /// CPU time (user + system) the child has used so far.
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        // Fields after "(comm)": state is field 3, utime 14, stime 15 (1-based).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }
}

/// Forks a child that opens `inbox`'s receiver and then runs `body` with it; returns once
/// the receiver is open (the child signals through a second box).
fn spawn_receiver<M: Serialize + for<'de> Deserialize<'de>>(
    inbox: &Camlbox,
    body: impl FnOnce(procyon::Receiver<M>) -> i32,
) -> Child {
    let ready = Camlbox::new(2, 16).unwrap();
    let ready_rx = ready.receiver::<u8>().unwrap();
    let (inbox, ready_tx) = (inbox.clone(), ready.sender::<u8>());
    let child = Child::spawn(move || {
        let rx = inbox.receiver::<M>().unwrap();
        ready_tx.send(&0).unwrap();
        body(rx)
    });
    ready_rx.recv_timeout(LONG).unwrap();
    child
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: our own child, not yet reaped; `status` is a valid out-pointer.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                let mut status = 0;
                libc::waitpid(self.pid, &mut status, 0);
            }
        }
    }
}

const LONG: Duration = Duration::from_secs(20);

#[test]
fn four_senders_ten_thousand_messages_each_arrive_exactly_once() {
    const SENDERS: u32 = 4;
    const EACH: u32 = 10_000;
    let _serial = serial();
    let inbox = Camlbox::new(64, 64).unwrap();
    let rx = inbox.receiver::<(u32, u32)>().unwrap();
    let children: Vec<Child> = (0..SENDERS)
        .map(|s| {
            let tx = inbox.sender::<(u32, u32)>();
            Child::spawn(move || {
                for i in 0..EACH {
                    tx.send(&(s, i)).unwrap();
                }
                0
            })
        })
        .collect();
    let mut next = [0u32; SENDERS as usize];
    for _ in 0..SENDERS * EACH {
        let (s, i) = rx.recv_timeout(LONG).unwrap();
        assert_eq!(
            i, next[s as usize],
            "sender {s}: out of order or duplicated"
        );
        next[s as usize] += 1;
    }
    assert_eq!(next, [EACH; SENDERS as usize]);
    assert_eq!(rx.try_recv().unwrap(), None, "nothing extra");
    for child in children {
        assert_eq!(child.wait(), Ended::Exited(0));
    }
}

/// Encodes as a `u64` the first time (the size check) and SIGKILLs its process the second
/// time: while it is being written into a claimed slot.
struct KillsItsWriter(std::cell::Cell<u32>);

impl Serialize for KillsItsWriter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let calls = self.0.get() + 1;
        self.0.set(calls);
        if calls == 2 {
            // SAFETY: plain signal to ourselves; we are a forked test child.
            unsafe { libc::raise(libc::SIGKILL) };
        }
        s.serialize_u64(u64::MAX)
    }
}

#[test]
fn sender_killed_mid_write_does_not_wedge_the_box() {
    let _serial = serial();
    let inbox = Camlbox::new(4, 32).unwrap();
    let rx = inbox.receiver::<u64>().unwrap();
    let tx = inbox.sender::<u64>();
    tx.send(&1).unwrap();
    let doomed = inbox.sender::<KillsItsWriter>();
    let killed = Child::spawn(move || {
        let _ = doomed.send(&KillsItsWriter(0.into()));
        1 // not reached
    });
    assert_eq!(killed.wait(), Ended::Signaled(libc::SIGKILL));
    // Behind the dead slot: more messages than the box holds, from another process.
    let sender = Child::spawn(move || {
        for i in 2..=100 {
            tx.send(&i).unwrap();
        }
        0
    });
    for expected in 1..=100 {
        assert_eq!(rx.recv_timeout(LONG).unwrap(), expected);
    }
    assert_eq!(sender.wait(), Ended::Exited(0));
    assert_eq!(rx.try_recv().unwrap(), None);
}

#[test]
fn sender_killed_mid_write_while_the_receiver_sleeps() {
    let _serial = serial();
    let inbox = Camlbox::new(2, 32).unwrap();
    let receiver = spawn_receiver(&inbox, |rx| {
        // Asleep on the futex when the doomed sender claims; woken by the next publish.
        let got: Vec<u64> = (0..3).map(|_| rx.recv_timeout(LONG).unwrap()).collect();
        i32::from(got != [7, 8, 9])
    });
    std::thread::sleep(Duration::from_millis(20));
    let doomed = inbox.sender::<KillsItsWriter>();
    let killed = Child::spawn(move || {
        let _ = doomed.send(&KillsItsWriter(0.into()));
        1
    });
    assert_eq!(killed.wait(), Ended::Signaled(libc::SIGKILL));
    let tx = inbox.sender::<u64>();
    for i in [7, 8, 9] {
        tx.send_timeout(&i, LONG).unwrap();
    }
    assert_eq!(receiver.wait(), Ended::Exited(0));
}

#[test]
fn full_too_large_and_timeouts() {
    let inbox = Camlbox::new(2, 16).unwrap();
    let rx = inbox.receiver::<Vec<u8>>().unwrap();
    let tx = inbox.sender::<Vec<u8>>();

    let start = Instant::now();
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(30)),
        Err(Error::Timeout { .. })
    ));
    assert!(start.elapsed() >= Duration::from_millis(30));

    // 8 bytes of length prefix + 9 bytes > 16.
    match tx.try_send(&vec![0; 9]) {
        Err(Error::MessageTooLarge { size: 17, max: 16 }) => {}
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert!(matches!(
        tx.try_send_bytes(&[0; 17]),
        Err(Error::MessageTooLarge { size: 17, max: 16 })
    ));

    tx.try_send(&vec![1]).unwrap();
    tx.try_send(&vec![2]).unwrap();
    assert!(matches!(tx.try_send(&vec![3]), Err(Error::Full)));
    assert!(matches!(tx.try_send_bytes(&[0; 8]), Err(Error::Full)));
    let start = Instant::now();
    assert!(matches!(
        tx.send_timeout(&vec![3], Duration::from_millis(30)),
        Err(Error::Timeout { .. })
    ));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(inbox.len(), 2);

    assert_eq!(rx.recv().unwrap(), [1]);
    tx.send_timeout(&vec![3], Duration::from_millis(30))
        .unwrap();
    assert_eq!(rx.recv().unwrap(), [2]);
    assert_eq!(rx.recv().unwrap(), [3]);
}

#[test]
fn disconnected_when_the_receiver_is_dropped() {
    let _serial = serial();
    let inbox = Camlbox::new(2, 16).unwrap();
    let box2 = inbox.clone();
    let child = Child::spawn(move || {
        drop(box2.receiver::<u8>().unwrap());
        0
    });
    assert_eq!(child.wait(), Ended::Exited(0));
    let tx = inbox.sender::<u8>();
    assert!(matches!(tx.try_send(&1), Err(Error::Disconnected)));
    assert!(matches!(tx.send(&1), Err(Error::Disconnected)));
    assert!(matches!(tx.try_send_bytes(&[1]), Err(Error::Disconnected)));
    // A new receiver reopens the box.
    let rx = inbox.receiver::<u8>().unwrap();
    tx.send(&5).unwrap();
    assert_eq!(rx.recv().unwrap(), 5);
}

#[test]
fn disconnected_when_the_receiver_process_dies() {
    let _serial = serial();
    let inbox = Camlbox::new(4, 16).unwrap();
    let receiver = spawn_receiver::<u8>(&inbox, |_rx| loop {
        std::thread::park(); // holds the receiver, receives nothing
    });
    match inbox.receiver::<u8>() {
        Err(Error::InvalidConfig { .. }) => {}
        other => panic!("a live receiver must not be taken over: {other:?}"),
    }
    let tx = inbox.sender::<u8>();
    tx.try_send(&1).unwrap(); // buffered while the receiver lives
    assert_eq!(receiver.kill(), Ended::Signaled(libc::SIGKILL));
    // Messages still fit (they wait for a replacement); a full box reports the death.
    let mut sent = 1;
    loop {
        match tx.try_send(&1) {
            Ok(()) => sent += 1,
            Err(Error::Disconnected) => break,
            Err(e) => panic!("expected Disconnected once full, got {e:?}"),
        }
    }
    assert_eq!(sent, inbox.capacity());
    assert!(matches!(tx.send(&1), Err(Error::Disconnected)));
    assert!(matches!(
        tx.send_timeout(&1, Duration::from_secs(5)),
        Err(Error::Disconnected)
    ));
}

#[test]
fn a_replacement_process_takes_over_the_box() {
    let _serial = serial();
    let inbox = Camlbox::new(8, 16).unwrap();
    let report = Camlbox::new(2, 16).unwrap();
    let report_rx = report.receiver::<u32>().unwrap();
    let tx = inbox.sender::<u32>();
    for i in 0..7 {
        tx.send(&i).unwrap();
    }
    let (box2, report_tx) = (inbox.clone(), report.sender::<u32>());
    let first = Child::spawn(move || {
        let rx = box2.receiver::<u32>().unwrap();
        report_tx.send(&rx.recv_timeout(LONG).unwrap()).unwrap();
        loop {
            std::thread::park();
        }
    });
    assert_eq!(report_rx.recv_timeout(LONG).unwrap(), 0);
    assert_eq!(first.kill(), Ended::Signaled(libc::SIGKILL));
    let box3 = inbox.clone();
    let second = Child::spawn(move || {
        let rx = box3.receiver::<u32>().unwrap();
        let got: Vec<u32> = (0..7).map(|_| rx.recv_timeout(LONG).unwrap()).collect();
        i32::from(got != [1, 2, 3, 4, 5, 6, 7])
    });
    tx.send(&7).unwrap();
    assert_eq!(second.wait(), Ended::Exited(0));
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Msg {
    Text(String),
    Pair(u16, i64),
}

#[test]
fn a_malformed_message_costs_only_itself() {
    let _serial = serial();
    let inbox = Camlbox::new(4, 64).unwrap();
    let rx = inbox.receiver::<Msg>().unwrap();
    let tx = inbox.sender::<Msg>();
    let child = Child::spawn(move || {
        tx.try_send_bytes(&[9, 0, 0, 0]).unwrap(); // no such variant
        tx.try_send_bytes(&[0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 0])
            .unwrap(); // truncated
        tx.send(&Msg::Pair(3, -4)).unwrap();
        0
    });
    assert_eq!(child.wait(), Ended::Exited(0));
    for _ in 0..2 {
        match rx.recv_timeout(LONG) {
            Err(Error::Malformed { reason }) => assert!(reason.contains("Msg"), "{reason}"),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }
    assert_eq!(rx.recv_timeout(LONG).unwrap(), Msg::Pair(3, -4));
    inbox
        .sender::<Msg>()
        .send(&Msg::Text("still fine".into()))
        .unwrap();
    assert_eq!(rx.recv().unwrap(), Msg::Text("still fine".into()));
}

#[test]
fn an_idle_receiver_uses_no_cpu() {
    let _serial = serial();
    let inbox = Camlbox::new(4, 16).unwrap();
    let receiver =
        spawn_receiver::<u64>(&inbox, |rx| i32::from(rx.recv_timeout(LONG).unwrap() != 42));
    let before = receiver.cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let used = receiver.cpu_time() - before;
    inbox.sender::<u64>().send(&42).unwrap();
    assert_eq!(receiver.wait(), Ended::Exited(0));
    assert!(
        used < Duration::from_millis(50),
        "a receiver blocked for 1 s used {used:?} of CPU"
    );
}
