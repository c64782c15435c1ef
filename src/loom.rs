//! Atomics facade: `std` atomics normally, loom's under `--cfg loom`, so the lock-free
//! cores (the camlbox slot protocol) can be model-checked unchanged.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::thread::yield_now as spin_hint;

#[cfg(not(loom))]
pub(crate) use std::hint::spin_loop as spin_hint;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
