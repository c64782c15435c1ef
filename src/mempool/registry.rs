//! The process-global registry of mempools (pool id -> weak handle) and the cached pid.
//!
//! Both are process-local state that survives `fork` by copy. The registry lets a
//! descriptor that names a pool by id be resolved in any process of the tree: the child
//! inherits the parent's registry along with its handles.
//!
//! **Fork safety.** A lock held by another thread at the moment of `fork` stays locked
//! forever in the child. The registry's lock is therefore a tiny spin lock that a
//! `pthread_atfork` handler takes before every `fork` (waiting for the other threads'
//! critical sections, which never block) and releases afterwards in both parent and
//! child. The same handler refreshes the cached pid in the child.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, Weak};

use super::Inner;
use crate::sys::process;

struct Registry {
    locked: AtomicBool,
    pools: UnsafeCell<Vec<(u64, Weak<Inner>)>>,
}

// SAFETY: `pools` is only accessed while `locked` is held (see `with_registry`).
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    locked: AtomicBool::new(false),
    pools: UnsafeCell::new(Vec::new()),
};

static ATFORK: Once = Once::new();

fn lock_registry() {
    // Acquire pairs with the Release in `unlock_registry`: the previous holder's changes
    // to `pools` are visible to us.
    while REGISTRY
        .locked
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
        std::thread::yield_now();
    }
}

fn unlock_registry() {
    // Release publishes our changes to `pools` to the next holder.
    REGISTRY.locked.store(false, Ordering::Release);
}

extern "C" fn before_fork() {
    lock_registry();
}

extern "C" fn after_fork_parent() {
    unlock_registry();
}

extern "C" fn after_fork_child() {
    unlock_registry();
}

fn install_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: the handlers are `extern "C" fn()` that live for the whole program and
        // are async-signal-safe enough for the fork window (an atomic spin, getpid).
        let rc = unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_parent),
                Some(after_fork_child),
            )
        };
        // ENOMEM is the only documented failure; without the handler the registry still
        // works, only `fork` from a multi-threaded process could catch its lock held.
        debug_assert_eq!(rc, 0, "pthread_atfork failed");
        process::register_pid_cache();
    });
}

fn with_registry<R>(f: impl FnOnce(&mut Vec<(u64, Weak<Inner>)>) -> R) -> R {
    install_atfork();
    lock_registry();
    // Unlock even if `f` panics, so other threads are not wedged.
    struct Unlock;
    impl Drop for Unlock {
        fn drop(&mut self) {
            unlock_registry();
        }
    }
    let _unlock = Unlock;
    // SAFETY: we hold the registry lock, so this is the only reference to `pools`.
    let pools = unsafe { &mut *REGISTRY.pools.get() };
    f(pools)
}

/// Makes `pool` findable by [`lookup`] in this process and its future children.
pub(super) fn register(id: u64, pool: Weak<Inner>) {
    with_registry(|pools| {
        pools.retain(|(_, w)| w.strong_count() > 0);
        pools.push((id, pool));
    });
}

/// Forgets pool `id` (called when its last handle in this process goes away).
pub(super) fn unregister(id: u64) {
    with_registry(|pools| pools.retain(|(i, w)| *i != id && w.strong_count() > 0));
}

/// A strong handle to pool `id` if this process still has one.
pub(super) fn lookup(id: u64) -> Option<std::sync::Arc<Inner>> {
    with_registry(|pools| {
        pools
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .and_then(|(_, w)| w.upgrade())
    })
}

/// The pid of the calling process, without a system call in the common case.
pub(crate) fn current_pid() -> i32 {
    install_atfork();
    process::cached_pid()
}
