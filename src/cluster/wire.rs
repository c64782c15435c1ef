//! Messages between the driving rank and the serving ranks, and how they travel.
//!
//! Every message is a bincode-encoded enum sent as one MPI message of bytes on the world
//! communicator: [`Down`] from rank 0 to a server on tag [`DOWN`], [`Up`] from a server
//! to rank 0 on tag [`UP`]. MPI keeps the order of messages between one sender and one
//! receiver on one tag, which the protocol of `super` relies on (a job's `Job` comes
//! before its `Block`s, a `Done` before the `Stopped` that follows it). Receiving is
//! polled (`MPI_Improbe`), so that a rank can watch its local pool and MPI in one thread.

use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Tag of driver-to-server messages.
pub(crate) const DOWN: i32 = 0x5052;
/// Tag of server-to-driver messages.
pub(crate) const UP: i32 = 0x5053;

/// From the driver to one server.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Down {
    /// A new job: its task id (see `super::task`) and its encoded arguments.
    Job { job: u64, entry: u64, args: Vec<u8> },
    /// Run items `start..end` of the job; `data` holds the block's scattered items
    /// (empty unless the job's source scatters).
    Block {
        job: u64,
        start: u64,
        end: u64,
        data: Vec<u8>,
    },
    /// No more blocks will come for the job: answer `Stopped` once the last one is done.
    NoMore { job: u64 },
    /// Stop the job's work now (cooperatively, then by the local pool's forced kill), and
    /// answer `Stopped`.
    Cancel { job: u64 },
    /// The cluster is closing: `serve` returns.
    Close,
}

/// From a server to the driver.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Up {
    /// Items `start..end` are done: their partial result (bincode), or the error text.
    Done {
        job: u64,
        start: u64,
        end: u64,
        result: std::result::Result<Vec<u8>, String>,
    },
    /// Still at work on the job (sent every `super::HEARTBEAT` while a block runs).
    Alive { job: u64 },
    /// The server has left the job: every block it ran has ended, nothing of the job
    /// runs on its rank any more.
    Stopped { job: u64 },
}

/// Sends `msg` to `rank` on `tag`.
pub(crate) fn send<M: Serialize>(
    world: &SimpleCommunicator,
    rank: i32,
    tag: i32,
    msg: &M,
) -> Result<()> {
    let bytes = bincode::serialize(msg).map_err(|e| Error::Malformed {
        reason: format!("cannot encode a cluster message: {e}"),
    })?;
    world.process_at_rank(rank).send_with_tag(&bytes[..], tag);
    Ok(())
}

/// The next message on `tag` from any rank, if one has arrived, with its sender.
/// A message that does not decode is an error naming its sender.
pub(crate) fn poll<M: for<'de> Deserialize<'de>>(
    world: &SimpleCommunicator,
    tag: i32,
) -> Result<Option<(i32, M)>> {
    let Some(probed) = world.any_process().immediate_matched_probe_with_tag(tag) else {
        return Ok(None);
    };
    let (bytes, status) = probed.matched_receive_vec::<u8>();
    let from = status.source_rank();
    let msg = bincode::deserialize(&bytes).map_err(|e| Error::RankFailed {
        rank: from,
        reason: format!("sent a cluster message that does not decode: {e}"),
    })?;
    Ok(Some((from, msg)))
}
