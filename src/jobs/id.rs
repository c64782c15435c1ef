//! A job's identity across processes.

use serde::{Deserialize, Serialize};

/// A job's identity across processes: its slot and the generation it was claimed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobId {
    pub(crate) slot: u32,
    pub(crate) gen: u64,
}

/// Packed `(slot, gen)` meaning "no parent".
pub(crate) const NO_PARENT: u64 = u64::MAX;

/// Generations are below this (48 bits, so that a [`JobId`] packs into one word, and a
/// generation and a state into one state word): they count from 1 and wrap long after
/// any slot's earlier job has been collected.
pub(crate) const GEN_LIMIT: u64 = 1 << 48;

impl JobId {
    /// Packs into one word.
    pub(crate) fn pack(self) -> u64 {
        debug_assert!(self.gen < GEN_LIMIT);
        (u64::from(self.slot) << 48) | self.gen
    }

    pub(crate) fn unpack(v: u64) -> Option<JobId> {
        (v != NO_PARENT && v != 0).then_some(JobId {
            slot: (v >> 48) as u32,
            gen: v & (GEN_LIMIT - 1),
        })
    }

    /// A number for error messages.
    pub(crate) fn number(self) -> u64 {
        self.gen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_pack() {
        let id = JobId {
            slot: 17,
            gen: 123_456,
        };
        assert_eq!(JobId::unpack(id.pack()), Some(id));
        assert_eq!(JobId::unpack(NO_PARENT), None);
    }
}
