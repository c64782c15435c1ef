//! A camlbox receiver facing bytes it did not expect: arbitrary payloads, corrupted
//! encodings of real control messages, and slots scribbled over in shared memory (the
//! way a task with a wild pointer could). The receiver must never panic and never wedge:
//! each malformed message is `Err(Malformed)` for that message only, and a well-formed
//! message sent afterwards is received.
//!
//! The control messages of the pool (`WorkerMsg`, `SchedMsg`) are crate-private, so the
//! enums below are lookalikes with the same serde shape; `Rich` adds strings, options
//! and vectors (the shapes of failure records), where a length prefix can lie.
//!
//! The camlbox exposes no test hook to corrupt a slot, so the slot tests find the box's
//! mapping in `/proc/self/maps` (an anonymous shared mapping whose control block holds
//! the geometry, and whose first slot holds a marker message unique to the test) and
//! write into it through the documented layout (see `procyon::camlbox`'s module docs).

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use procyon::{Camlbox, Error, Receiver, Sender};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct JobId {
    slot: u32,
    gen: u64,
}

/// Shaped like the worker inbox's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum WorkerMsg {
    Job(JobId),
    Shutdown,
}

/// Shaped like the scheduler inbox's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum SchedMsg {
    ChildExited,
    Shutdown,
    Cancel { job: JobId, grace_ms: u64 },
}

/// Shaped like a failure record, with lengths that can lie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Rich {
    Panicked {
        message: String,
    },
    WorkerDied {
        pid: i32,
        signal: Option<i32>,
        exit_code: Option<i32>,
    },
    Cancelled,
    Data(Vec<u64>),
    Nested(Box<Option<(String, Vec<u8>)>>),
}

const SLOTS: usize = 8;
const SLOT_SIZE: usize = 128;

fn job_id() -> impl Strategy<Value = JobId> {
    (any::<u32>(), any::<u64>()).prop_map(|(slot, gen)| JobId { slot, gen })
}

fn worker_msg() -> impl Strategy<Value = WorkerMsg> {
    prop_oneof![job_id().prop_map(WorkerMsg::Job), Just(WorkerMsg::Shutdown)]
}

fn sched_msg() -> impl Strategy<Value = SchedMsg> {
    prop_oneof![
        Just(SchedMsg::ChildExited),
        Just(SchedMsg::Shutdown),
        (job_id(), any::<u64>()).prop_map(|(job, grace_ms)| SchedMsg::Cancel { job, grace_ms }),
    ]
}

fn rich() -> impl Strategy<Value = Rich> {
    prop_oneof![
        "[a-z ]{0,40}".prop_map(|message| Rich::Panicked { message }),
        (any::<i32>(), any::<Option<i32>>(), any::<Option<i32>>()).prop_map(
            |(pid, signal, exit_code)| Rich::WorkerDied {
                pid,
                signal,
                exit_code
            }
        ),
        Just(Rich::Cancelled),
        proptest::collection::vec(any::<u64>(), 0..8).prop_map(Rich::Data),
        proptest::option::of(("[a-z]{0,10}", proptest::collection::vec(any::<u8>(), 0..20)))
            .prop_map(|o| Rich::Nested(Box::new(o))),
    ]
}

/// A way to damage an encoding.
#[derive(Clone, Debug)]
enum Damage {
    /// Flip these bits (positions modulo the length).
    Flip(Vec<(usize, u8)>),
    /// Keep only a prefix.
    Truncate(usize),
    /// Append junk.
    Extend(Vec<u8>),
    /// Overwrite the 4-byte variant tag (bincode encodes it first).
    Tag(u32),
    /// Overwrite 8 bytes at an offset (a length prefix, a number) with a value.
    Word(usize, u64),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        proptest::collection::vec((any::<usize>(), 1u8..), 1..4).prop_map(Damage::Flip),
        any::<usize>().prop_map(Damage::Truncate),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(Damage::Extend),
        prop_oneof![0u32..8, any::<u32>()].prop_map(Damage::Tag),
        (
            any::<usize>(),
            prop_oneof![Just(u64::MAX), Just(1 << 40), 0u64..64, any::<u64>()]
        )
            .prop_map(|(at, v)| Damage::Word(at, v)),
    ]
}

fn apply(mut bytes: Vec<u8>, d: &Damage) -> Vec<u8> {
    match d {
        Damage::Flip(bits) if !bytes.is_empty() => {
            let n = bytes.len();
            for &(at, mask) in bits {
                bytes[at % n] ^= mask;
            }
        }
        Damage::Flip(_) => {}
        Damage::Truncate(k) => bytes.truncate(k % (bytes.len() + 1)),
        Damage::Extend(junk) => bytes.extend_from_slice(junk),
        Damage::Tag(t) => {
            if bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&t.to_le_bytes());
            }
        }
        Damage::Word(at, v) => {
            if bytes.len() >= 8 {
                let at = at % (bytes.len() - 7);
                bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    bytes.truncate(SLOT_SIZE);
    bytes
}

/// Sends `bytes` raw and checks the receiver's verdict against bincode itself (what the
/// receiver promises to decode), then checks the box still carries a good message.
fn check_raw<M>(
    tx: &Sender<M>,
    rx: &Receiver<M>,
    bytes: &[u8],
    good: &M,
) -> Result<(), TestCaseError>
where
    M: Serialize + DeserializeOwned + PartialEq + Debug,
{
    tx.try_send_bytes(bytes)
        .map_err(|e| TestCaseError::fail(format!("send of {} bytes: {e}", bytes.len())))?;
    let oracle = bincode::deserialize::<M>(bytes);
    match (rx.try_recv(), oracle) {
        (Ok(Some(m)), Ok(o)) => prop_assert_eq!(m, o),
        (Err(Error::Malformed { reason }), Err(_)) => prop_assert!(!reason.is_empty()),
        (got, oracle) => {
            return Err(TestCaseError::fail(format!(
                "bytes {bytes:?}: receiver said {got:?}, bincode said {oracle:?}"
            )))
        }
    }
    // Not wedged: the next well-formed message comes through, and nothing else is left.
    tx.try_send(good)
        .map_err(|e| TestCaseError::fail(format!("send after: {e}")))?;
    let next = rx
        .try_recv()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(next.as_ref(), Some(good));
    prop_assert_eq!(
        rx.try_recv()
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
        None
    );
    Ok(())
}

/// A box, its sender and receiver of `M`.
fn open<M>() -> (Camlbox, Sender<M>, Receiver<M>) {
    let b = Camlbox::new(SLOTS, SLOT_SIZE).unwrap();
    let (tx, rx) = (b.sender(), b.receiver().unwrap());
    (b, tx, rx)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, .. ProptestConfig::default() })]

    /// Arbitrary bytes into every message type, many per box (so slots wrap around).
    #[test]
    fn arbitrary_bytes(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=SLOT_SIZE), 1..24)) {
        let (_w, wtx, wrx) = open::<WorkerMsg>();
        let (_s, stx, srx) = open::<SchedMsg>();
        let (_r, rtx, rrx) = open::<Rich>();
        for p in &payloads {
            check_raw(&wtx, &wrx, p, &WorkerMsg::Shutdown)?;
            check_raw(&stx, &srx, p, &SchedMsg::Cancel { job: JobId { slot: 3, gen: 9 }, grace_ms: 50 })?;
            check_raw(&rtx, &rrx, p, &Rich::Panicked { message: "after".into() })?;
        }
    }

    /// Real messages, damaged.
    #[test]
    fn damaged_worker_messages(msgs in proptest::collection::vec((worker_msg(), damage()), 1..16)) {
        let (_b, tx, rx) = open::<WorkerMsg>();
        for (m, d) in &msgs {
            let bytes = apply(bincode::serialize(m).unwrap(), d);
            check_raw(&tx, &rx, &bytes, m)?;
        }
    }

    #[test]
    fn damaged_scheduler_messages(msgs in proptest::collection::vec((sched_msg(), damage()), 1..16)) {
        let (_b, tx, rx) = open::<SchedMsg>();
        for (m, d) in &msgs {
            let bytes = apply(bincode::serialize(m).unwrap(), d);
            check_raw(&tx, &rx, &bytes, m)?;
        }
    }

    #[test]
    fn damaged_rich_messages(msgs in proptest::collection::vec((rich(), damage()), 1..16)) {
        let (_b, tx, rx) = open::<Rich>();
        for (m, d) in &msgs {
            let bytes = apply(bincode::serialize(m).unwrap(), d);
            check_raw(&tx, &rx, &bytes, m)?;
        }
    }
}

/// The box's mapping in this process, found through /proc/self/maps and checked against
/// the geometry its control block records.
struct Raw {
    base: *mut u8,
    slot_size: usize,
}

/// Layout constants from `procyon::camlbox`'s module docs.
const RING: usize = 384;
const HEAD: usize = RING + 128;
const SLOTS_AT: usize = RING + 256;
const SLOT_HEADER: usize = 16;

impl Raw {
    /// Finds the mapping of the box of `capacity` x `slot_size` whose slot 0 holds the
    /// published message `marker`.
    ///
    /// Other tests of this file run on other threads and create and drop boxes of the
    /// same geometry meanwhile, so neither "new since the box was made" nor the geometry
    /// names one mapping, and a mapping listed a moment ago may be gone already. Candidates are
    /// therefore read through `/proc/self/mem` (an unmapped address is an `EIO`, not a
    /// SIGSEGV), and the box is the one carrying this test's own marker.
    fn find(capacity: usize, slot_size: usize, marker: &[u8]) -> Raw {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::File::open("/proc/self/mem").unwrap();
        let read = |addr: usize, buf: &mut [u8]| mem.read_exact_at(buf, addr as u64).is_ok();
        let u64_at = |addr: usize| {
            let mut b = [0u8; 8];
            read(addr, &mut b).then(|| u64::from_ne_bytes(b))
        };
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let candidates: Vec<usize> = maps
            .lines()
            .filter(|l| {
                l.split_whitespace().nth(1) == Some("rw-s") && l.ends_with("/dev/zero (deleted)")
            })
            .map(|l| usize::from_str_radix(l.split('-').next().unwrap(), 16).unwrap())
            .filter(|&base| {
                let geometry = (u64_at(base + 8), u64_at(base + 16));
                if geometry != (Some(capacity as u64), Some(slot_size as u64)) {
                    return false;
                }
                // Slot 0 is `Full(0)` (stamp 1, no writer) and holds the marker.
                let mut payload = vec![0u8; marker.len()];
                u64_at(base + SLOTS_AT) == Some(1 << 32)
                    && u64_at(base + SLOTS_AT + 8).map(|w| w as u32) == Some(marker.len() as u32)
                    && read(base + SLOTS_AT + SLOT_HEADER, &mut payload)
                    && payload == marker
            })
            .collect();
        assert_eq!(
            candidates.len(),
            1,
            "camlbox mapping not found: {candidates:x?}"
        );
        Raw {
            base: candidates[0] as *mut u8,
            slot_size,
        }
    }

    fn stride(&self) -> usize {
        (SLOT_HEADER + self.slot_size).next_multiple_of(64)
    }

    fn word64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: offsets come from the documented layout and stay inside the mapping,
        // which the test's `Camlbox` keeps alive; shared words are accessed atomically.
        unsafe { &*(self.base.add(offset) as *const AtomicU64) }
    }

    fn word32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: as in `word64`.
        unsafe { &*(self.base.add(offset) as *const AtomicU32) }
    }

    fn head(&self) -> u32 {
        self.word32(HEAD).load(Ordering::SeqCst)
    }

    /// The slot index of ring position `pos` (the box has 8 slots, so one lap is 16).
    fn index(pos: u32) -> usize {
        (pos & 15) as usize
    }

    fn state(&self, index: usize) -> &AtomicU64 {
        self.word64(SLOTS_AT + index * self.stride())
    }

    fn len(&self, index: usize) -> &AtomicU32 {
        self.word32(SLOTS_AT + index * self.stride() + 8)
    }

    fn payload(&self, index: usize) -> Vec<u8> {
        (0..self.slot_size)
            .map(|i| self.word8(SLOTS_AT + index * self.stride() + SLOT_HEADER + i))
            .collect()
    }

    fn word8(&self, offset: usize) -> u8 {
        // SAFETY: as in `word64`; a payload byte the test reads while nobody writes it.
        unsafe { std::ptr::read_volatile(self.base.add(offset)) }
    }

    fn write8(&self, offset: usize, v: u8) {
        // SAFETY: as in `word64`; the test plays the wild writer, on a slot it published.
        unsafe { std::ptr::write_volatile(self.base.add(offset), v) }
    }
}

/// A box of `WorkerMsg` with its raw view. The box has carried one message (the
/// marker that identified its mapping), so its head is at position 1.
fn open_raw() -> (Camlbox, Sender<WorkerMsg>, Receiver<WorkerMsg>, Raw) {
    static BOXES: AtomicU64 = AtomicU64::new(0);
    let mut marker = *b"decode_fuzz box ________________";
    let id = (u64::from(std::process::id()) << 32) | BOXES.fetch_add(1, Ordering::Relaxed);
    marker[16..24].copy_from_slice(&id.to_le_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    marker[24..].copy_from_slice(&nanos.to_le_bytes());
    let (b, tx, rx) = open::<WorkerMsg>();
    tx.try_send_bytes(&marker).unwrap();
    let raw = Raw::find(SLOTS, SLOT_SIZE, &marker);
    assert_eq!(rx.try_recv_bytes().unwrap().as_deref(), Some(&marker[..]));
    (b, tx, rx, raw)
}

/// Receives until `want` arrives, allowing per-message errors and empty polls on the
/// way (a reclaimed slot takes a couple of milliseconds); fails after 1 s.
fn eventually(rx: &Receiver<WorkerMsg>, want: WorkerMsg) -> Result<(), TestCaseError> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match rx.try_recv() {
            Ok(Some(m)) if m == want => return Ok(()),
            Ok(Some(_)) | Ok(None) | Err(Error::Malformed { .. }) => {}
            Err(e) => return Err(TestCaseError::fail(format!("receiver failed: {e}"))),
        }
        if Instant::now() >= deadline {
            return Err(TestCaseError::fail("the receiver is wedged"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// How the ring would read a state word at slot `index` while its head is `h` (the
/// encoding of `procyon::camlbox`'s docs: `stamp << 32 | writer`, 8 slots, lap 16).
#[derive(Debug, PartialEq)]
enum Reads {
    /// Looks like an empty head slot: the receiver reports an empty box.
    EmptyHead,
    /// Looks like a head slot being written by process `writer`.
    WritingHead(u32),
    /// Anything else: a published slot, a slot a lap ahead, or garbage.
    Other,
}

fn reads(raw: u64, h: u32) -> Reads {
    let (stamp, writer) = ((raw >> 32) as u32, raw as u32);
    match (stamp == h, writer) {
        (true, 0) => Reads::EmptyHead,
        (true, w) => Reads::WritingHead(w),
        _ => Reads::Other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, .. ProptestConfig::default() })]

    /// A published slot whose length word is scribbled over.
    #[test]
    fn scribbled_length(rounds in proptest::collection::vec((worker_msg(), prop_oneof![0u32..=160, Just(u32::MAX), any::<u32>()]), 1..12)) {
        let (_b, tx, rx, raw) = open_raw();
        for (m, len) in rounds {
            tx.try_send(&m).unwrap();
            let i = Raw::index(raw.head());
            raw.len(i).store(len, Ordering::SeqCst);
            let payload = raw.payload(i);
            let got = rx.try_recv();
            match len {
                // The length a sender whose encoder panicked leaves: skipped silently.
                u32::MAX => prop_assert!(matches!(got, Ok(None)), "abandoned slot: {got:?}"),
                l if l as usize > SLOT_SIZE => prop_assert!(matches!(got, Err(Error::Malformed { .. })), "len {l}: {got:?}"),
                l => match (got, bincode::deserialize::<WorkerMsg>(&payload[..l as usize])) {
                    (Ok(Some(a)), Ok(b)) => prop_assert_eq!(a, b),
                    (Err(Error::Malformed { .. }), Err(_)) => {}
                    (got, oracle) => return Err(TestCaseError::fail(format!("len {l}: {got:?} vs {oracle:?}"))),
                },
            }
            tx.try_send(&WorkerMsg::Shutdown).unwrap();
            eventually(&rx, WorkerMsg::Shutdown)?;
        }
    }

    /// A published slot whose payload is scribbled over.
    #[test]
    fn scribbled_payload(rounds in proptest::collection::vec((worker_msg(), proptest::collection::vec((0usize..16, any::<u8>()), 1..6)), 1..12)) {
        let (_b, tx, rx, raw) = open_raw();
        for (m, writes) in rounds {
            tx.try_send(&m).unwrap();
            let i = Raw::index(raw.head());
            let len = raw.len(i).load(Ordering::SeqCst) as usize;
            for (at, v) in writes {
                raw.write8(SLOTS_AT + i * raw.stride() + SLOT_HEADER + at % len, v);
            }
            let payload = raw.payload(i);
            match (rx.try_recv(), bincode::deserialize::<WorkerMsg>(&payload[..len])) {
                (Ok(Some(a)), Ok(b)) => prop_assert_eq!(a, b),
                (Err(Error::Malformed { .. }), Err(_)) => {}
                (got, oracle) => return Err(TestCaseError::fail(format!("{got:?} vs {oracle:?}"))),
            }
            tx.try_send(&WorkerMsg::Shutdown).unwrap();
            eventually(&rx, WorkerMsg::Shutdown)?;
        }
    }

    /// A published head slot whose state word is scribbled over with any value that does
    /// not spell "empty" or "being written by a live process" at the head position (those
    /// two are valid protocol states: see `plausible_scribbled_head_states_do_not_wedge`).
    /// The message may be lost, the receiver must not be.
    #[test]
    fn scribbled_state_word(rounds in proptest::collection::vec((worker_msg(), any::<u64>(), any::<bool>()), 1..12)) {
        let (_b, tx, rx, raw) = open_raw();
        let me = std::process::id();
        for (m, word, dead_writer) in rounds {
            tx.try_send(&m).unwrap();
            let h = raw.head();
            let i = Raw::index(h);
            // Half the rounds: a "being written" state naming a process that does not
            // exist, which the receiver must reclaim.
            let word = if dead_writer { (u64::from(h) << 32) | 0x7fff_fff0 } else { word };
            let r = reads(word, h);
            prop_assume!(r != Reads::EmptyHead && r != Reads::WritingHead(me));
            if let Reads::WritingHead(w) = r {
                prop_assume!(w > 0x40_0000 || !std::path::Path::new(&format!("/proc/{w}")).exists());
            }
            raw.state(i).store(word, Ordering::SeqCst);
            let first = rx.try_recv();
            prop_assert!(matches!(first, Ok(_) | Err(Error::Malformed { .. })), "{first:?}");
            tx.try_send(&WorkerMsg::Shutdown).unwrap();
            eventually(&rx, WorkerMsg::Shutdown)?;
        }
    }
}

/// A scribbled head position (out of range) makes the box unusable; the receiver says
/// so on every receive instead of panicking or reading out of bounds, and a sender whose
/// tail is scribbled gets an error instead of spinning forever.
#[test]
fn scribbled_head_and_tail_are_errors() {
    let (_b, tx, rx, raw) = open_raw();
    tx.try_send(&WorkerMsg::Shutdown).unwrap();
    raw.word32(HEAD).store(0x0bad_0009, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(matches!(rx.try_recv(), Err(Error::Malformed { .. })));
    }
    let (_b, tx, _rx, raw) = open_raw();
    raw.word32(RING).store(0x0bad_0009, Ordering::SeqCst);
    let start = Instant::now();
    assert!(matches!(
        tx.try_send(&WorkerMsg::Shutdown),
        Err(Error::Disconnected)
    ));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "a scribbled tail took {:?}",
        start.elapsed()
    );
}

/// The two scribbles the receiver cannot tell from real protocol states: the head slot
/// marked empty while later slots are published, and the head slot marked as being
/// written by a live process. Each loses the box today (the receiver reports it empty, or
/// waits for the live "writer" forever).
#[test]
#[ignore = "bug: a head slot scribbled to Empty(head) or Writing(head, live pid) wedges the receiver"]
fn plausible_scribbled_head_states_do_not_wedge() {
    for live_writer in [false, true] {
        let (_b, tx, rx, raw) = open_raw();
        tx.try_send(&WorkerMsg::Shutdown).unwrap();
        let h = raw.head();
        let writer = if live_writer {
            u64::from(std::process::id())
        } else {
            0
        };
        raw.state(Raw::index(h))
            .store((u64::from(h) << 32) | writer, Ordering::SeqCst);
        let job = WorkerMsg::Job(JobId { slot: 1, gen: 2 });
        tx.try_send(&job).unwrap();
        eventually(&rx, job).unwrap_or_else(|e| panic!("live_writer = {live_writer}: {e}"));
    }
}
