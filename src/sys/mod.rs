//! The thin syscall layer: every system call procyon makes goes through here.
//!
//! Each wrapper takes typed arguments and returns `io::Result`, so the rest of the
//! crate never touches `libc` directly and never reads `errno` by hand. The
//! wrappers do no policy: retry loops, spin budgets and error mapping live in the
//! modules that use them.

pub(crate) mod clock;
pub(crate) mod futex;
pub(crate) mod ipc;
pub(crate) mod mman;
pub(crate) mod process;
