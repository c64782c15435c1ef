//! What travels over the fork server's socket (bincode).

use serde::{Deserialize, Serialize};

use crate::pool::PoolBuilder;

/// A client's request: start the scheduler of one pool.
///
/// The first message carries this and the first descriptors; further messages (one byte
/// each) carry the rest, [`crate::sys::ipc::MAX_FDS_PER_MESSAGE`] at a time. The
/// descriptors are, in order: the mempool's memfd, then the scheduler's inbox.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    /// `kind::image_fingerprint()` in the client: the server refuses another image.
    pub(crate) fingerprint: [u64; 3],
    /// The client's pid (the server only serves the process that started it).
    pub(crate) client_pid: i32,
    /// Where the mempool is mapped in the client, and its length.
    pub(crate) mempool: (usize, usize),
    /// Offset of the pool's control block inside the mempool.
    pub(crate) control_offset: usize,
    /// Where each camlbox is mapped in the client, and its length: the scheduler's first.
    pub(crate) inboxes: Vec<(usize, usize)>,
    /// The pool's configuration.
    pub(crate) config: PoolBuilder,
}

impl Request {
    /// Descriptors that travel with the request.
    pub(crate) fn fd_count(&self) -> usize {
        1 + self.inboxes.len()
    }
}

/// The server's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The scheduler runs, as this pid (a child of the server).
    Started { pid: i32 },
    /// Nothing was started, for this reason.
    Failed { reason: String },
}
