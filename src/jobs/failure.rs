//! Why a job failed: the record the first failure writes into the slot itself.
//!
//! The record is bincode of a [`Failure`] in a fixed cell of the slot (no allocation on
//! the failure path, which the scheduler takes right after a crash). Whoever wins
//! [`StateWord::begin_failure`](crate::jobs::state::StateWord::begin_failure) writes it
//! (Relaxed) and publishes it with `end_failure` (Release); readers load FAILED with
//! Acquire first. A message too long for the cell keeps its head.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Why a job failed, as recorded in its slot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Failure {
    Panicked {
        message: String,
    },
    WorkerDied {
        pid: i32,
        signal: Option<i32>,
        exit_code: Option<i32>,
    },
    Cancelled,
    /// The owner's time limit (in microseconds) passed.
    TimedOut {
        limit_us: u64,
    },
    /// The task set up failed (context could not be decoded, descriptor invalid, ...).
    Setup {
        message: String,
    },
    /// The mempool could not hold what the job had to store (its partial results).
    OutOfMemory {
        requested: u64,
        available: u64,
        capacity: u64,
    },
}

const FAILURE_TEXT: usize = 440;

/// A failure record small enough to live in the slot itself (no allocation on the
/// failure path, which the scheduler takes after a crash).
#[repr(C)]
pub(crate) struct FailureCell {
    len: AtomicU32,
    bytes: [AtomicU8x8; FAILURE_TEXT / 8],
}

/// Eight bytes stored as one atomic word.
#[repr(transparent)]
pub(crate) struct AtomicU8x8(AtomicU64);

impl FailureCell {
    /// Writes `failure` (Relaxed: published by the caller's Release of FAILED).
    pub(crate) fn write(&self, failure: &Failure) {
        let mut buf = [0u8; FAILURE_TEXT];
        let len = encode_failure(failure, &mut buf);
        for (i, word) in self.bytes.iter().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&buf[i * 8..i * 8 + 8]);
            word.0.store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
        self.len.store(len as u32, Ordering::Relaxed);
    }

    /// Reads the record (the caller loaded FAILED with Acquire).
    pub(crate) fn read(&self) -> Failure {
        let len = (self.len.load(Ordering::Relaxed) as usize).min(FAILURE_TEXT);
        let mut buf = [0u8; FAILURE_TEXT];
        for (i, word) in self.bytes.iter().enumerate() {
            buf[i * 8..i * 8 + 8].copy_from_slice(&word.0.load(Ordering::Relaxed).to_le_bytes());
        }
        bincode::deserialize(&buf[..len]).unwrap_or_else(|e| Failure::Setup {
            message: format!("unreadable failure record: {e}"),
        })
    }

    /// Forgets the record (a new job in the slot).
    pub(crate) fn clear(&self) {
        self.len.store(0, Ordering::Relaxed);
    }
}

/// The outcome of trying to fail a job.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FailOutcome {
    /// This call's failure is the job's failure.
    Recorded,
    /// The job had already ended (completed or failed by someone else).
    AlreadyEnded,
}

/// Encodes a failure into `buf`, shortening its text if needed; returns the length.
fn encode_failure(failure: &Failure, buf: &mut [u8; FAILURE_TEXT]) -> usize {
    if let Ok(len) = crate::codec::encode_into(buf, failure) {
        return len;
    }
    // Too long: keep the head of the message (a panic text can be arbitrarily long).
    let shorten = |m: &str| {
        let mut end = m.len().min(FAILURE_TEXT - 64);
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &m[..end])
    };
    let short = match failure {
        Failure::Panicked { message } => Failure::Panicked {
            message: shorten(message),
        },
        Failure::Setup { message } => Failure::Setup {
            message: shorten(message),
        },
        other => other.clone(),
    };
    crate::codec::encode_into(buf, &short).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_keep_their_head() {
        // SAFETY: the cell is atomics only; all-zero is an empty record.
        let cell: FailureCell = unsafe { std::mem::zeroed() };
        cell.write(&Failure::Panicked {
            message: "x".repeat(10_000),
        });
        match cell.read() {
            Failure::Panicked { message } => {
                assert!(message.ends_with("...") && message.len() < FAILURE_TEXT)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
