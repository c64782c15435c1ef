//! Messages between the driving rank and the serving ranks, and how they travel.
//!
//! Every message is a bincode-encoded enum sent as one MPI message of bytes on the world
//! communicator: [`Down`] from rank 0 to a server on tag [`DOWN`], [`Up`] from a server
//! to rank 0 on tag [`UP`]. MPI keeps the order of messages between one sender and one
//! receiver on one tag, which the protocol of `super` relies on (a job's `Job` comes
//! before its `Block`s, a `Done` before the `Stopped` that follows it); the stash of
//! [`Link`] keeps that order. Receiving is polled (`MPI_Improbe`), so that a rank can
//! watch its local pool and MPI in one thread, and sending never blocks on the receiver
//! (see [`Link`]).

use std::cell::RefCell;
use std::collections::VecDeque;

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

/// This rank's end of the cluster's messages: the world communicator and the messages
/// that arrived while a send of ours was in flight.
///
/// A blocking `MPI_Send` of a large message waits for the receiver to post a receive
/// (rendezvous): if the driver sends a large `Block` while the server sends a large
/// `Done`, both would wait forever. So a send is started non-blocking, and until it
/// completes this rank keeps receiving what comes to it on its incoming tag, into
/// `stash`, which [`Link::poll`] hands out first, in arrival order.
pub(crate) struct Link {
    pub(crate) world: SimpleCommunicator,
    incoming: i32,
    stash: RefCell<VecDeque<(i32, Vec<u8>)>>,
}

impl Link {
    /// The link of a rank that receives on `incoming` ([`UP`] on the driver, [`DOWN`]
    /// on a server).
    pub(crate) fn new(world: SimpleCommunicator, incoming: i32) -> Link {
        Link {
            world,
            incoming,
            stash: RefCell::new(VecDeque::new()),
        }
    }

    /// Sends `msg` to `rank` on `tag`, receiving into the stash until the send is done.
    pub(crate) fn send<M: Serialize>(&self, rank: i32, tag: i32, msg: &M) -> Result<()> {
        let bytes = bincode::serialize(msg).map_err(|e| Error::Malformed {
            reason: format!("cannot encode a cluster message: {e}"),
        })?;
        mpi::request::scope(|scope| {
            let mut req =
                self.world
                    .process_at_rank(rank)
                    .immediate_send_with_tag(scope, &bytes[..], tag);
            loop {
                match req.test() {
                    Ok(_) => return,
                    Err(r) => req = r,
                }
                if let Some(got) = self.receive() {
                    self.stash.borrow_mut().push_back(got);
                } else {
                    // The receiver looks at MPI every few tens of microseconds.
                    std::thread::sleep(std::time::Duration::from_micros(20));
                }
            }
        });
        Ok(())
    }

    /// The next message on this rank's incoming tag, if one has arrived, with its
    /// sender. A message that does not decode is an error naming its sender.
    pub(crate) fn poll<M: for<'de> Deserialize<'de>>(&self) -> Result<Option<(i32, M)>> {
        let next = self.stash.borrow_mut().pop_front();
        let Some((from, bytes)) = next.or_else(|| self.receive()) else {
            return Ok(None);
        };
        let msg = bincode::deserialize(&bytes).map_err(|e| Error::RankFailed {
            rank: from,
            reason: format!("sent a cluster message that does not decode: {e}"),
        })?;
        Ok(Some((from, msg)))
    }

    /// Receives one message on the incoming tag, if one has arrived.
    fn receive(&self) -> Option<(i32, Vec<u8>)> {
        let probed = self
            .world
            .any_process()
            .immediate_matched_probe_with_tag(self.incoming)?;
        let (bytes, status) = probed.matched_receive_vec::<u8>();
        Some((status.source_rank(), bytes))
    }
}
