//! procyon: rayon's data-parallel API over forked worker processes.

mod array;
mod camlbox;
mod error;
#[allow(dead_code)]
pub(crate) mod futex;
#[allow(dead_code)]
mod loom;
mod mempool;
#[allow(dead_code)]
pub(crate) mod sys;

pub use array::{ArrayDesc, RawArrayDesc, SharedArray};
pub use bytemuck::{Pod, Zeroable};
pub use camlbox::{Camlbox, Receiver, Sender};
pub use error::{Error, Result};
pub use mempool::{Block, Mempool, RawBlock, Usage};
#[doc(hidden)]
pub use mempool::{
    CrashPoint as __CrashPoint, HeapReport as __HeapReport, TestLockGuard as __TestLockGuard,
};
