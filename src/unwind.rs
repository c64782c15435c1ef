//! Panics inside tasks, carried to the job's owner as data.
//!
//! A task's panic is caught at the task boundary (`kind::entry`, with `catch_unwind`)
//! and becomes the job's failure record: the payload's text and, when the worker's panic
//! hook is installed, the place the panic was raised (`file:line:col`), as a rayon user
//! would have seen it on stderr. The hook prints nothing: a panicking task is an error
//! value for the owner, not noise on the client's terminal.
//!
//! The hook (`panic_hook`, quiet in pool processes) only writes a thread-local here.

use std::cell::RefCell;

thread_local! {
    /// Where the last panic of this thread was raised, until the task boundary takes it.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records where the panic `info` describes was raised, for the task boundary to take
/// (called by the quiet hook of pool processes, `panic_hook`).
pub(crate) fn record(info: &std::panic::PanicHookInfo<'_>) {
    let at = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    // `try_with`: a panic during thread teardown has nowhere to go, and is dropped.
    let _ = LOCATION.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = at;
        }
    });
}

/// The text of a caught panic: its payload, and where it was raised if the hook saw it.
pub(crate) fn describe(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload_text(payload);
    let at = LOCATION
        .try_with(|cell| cell.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten();
    match at {
        Some(at) => format!("{message} (at {at})"),
        None => message,
    }
}

/// The text of a panic payload.
pub(crate) fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_names_its_place() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(record));
        let payload = std::panic::catch_unwind(|| panic!("bad row {}", 7)).unwrap_err();
        let text = describe(&*payload);
        std::panic::set_hook(prev);
        assert!(text.starts_with("bad row 7 (at "), "{text}");
        assert!(text.contains("src/unwind.rs:"), "{text}");
        // Taken once: a later payload without a hook record has no place.
        assert_eq!(describe(&"plain"), "plain");
    }
}
