//! procyon: rayon's data-parallel API over forked worker processes.

mod error;
#[allow(dead_code)]
pub(crate) mod futex;
#[allow(dead_code)]
mod loom;
#[allow(dead_code)]
pub(crate) mod sys;

pub use error::{Error, Result};
