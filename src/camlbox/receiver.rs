//! The receiving role of a camlbox.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::ring::Recv;
use super::wait::wait_on;
use super::{Shared, STUCK_WRITER_CHECK};
use crate::sys::process;
use crate::{Error, Result};

/// The receiving side of a [`Camlbox`](crate::Camlbox), for messages of type `M`.
///
/// There is one per box at a time, owned by the process that called
/// [`Camlbox::receiver`](crate::Camlbox::receiver); it is `Send` but not `Sync` (one
/// consumer). A blocked receive spins briefly, then sleeps on a futex until a message is
/// published: an idle receiver costs no CPU. Dropping it marks the box closed, so senders
/// get [`Error::Disconnected`]; a handle inherited by a forked child is inert there (its
/// drop does not close the parent's box, and the child should not receive with it).
///
/// ```compile_fail
/// fn needs_sync<T: Sync>(_: &T) {}
/// let inbox = procyon::Camlbox::new(4, 64).unwrap();
/// let rx = inbox.receiver::<u8>().unwrap();
/// needs_sync(&rx); // one consumer: a Receiver cannot be shared between threads
/// ```
pub struct Receiver<M> {
    shared: Arc<Shared>,
    /// The process that attached; only it closes the box on drop.
    pid: i32,
    /// The `Writing` head slot we are waiting on, and since when (or since its writer was
    /// last found alive).
    stuck: Cell<Option<Stuck>>,
    _msg: PhantomData<fn() -> M>,
}

#[derive(Clone, Copy, Debug)]
struct Stuck {
    pos: u32,
    writer: u32,
    since: Instant,
}

/// One look at the head slot, in the blocking loop.
enum Step<R> {
    /// A message (or an error for one message).
    Done(Result<R>),
    /// The head slot became `Writing` while we had no deadline for it: wait again with one.
    Rearm,
}

impl<M> Receiver<M> {
    pub(super) fn new(shared: Arc<Shared>, pid: i32) -> Self {
        Receiver {
            shared,
            pid,
            stuck: Cell::new(None),
            _msg: PhantomData,
        }
    }

    /// Takes the next message's bytes if one is published; `Ok(None)` if not.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if the next slot was corrupt (the slot is dropped; the next
    /// receive goes on).
    ///
    /// # Examples
    ///
    /// ```
    /// let inbox = procyon::Camlbox::new(4, 64).unwrap();
    /// let rx = inbox.receiver::<String>().unwrap();
    /// assert_eq!(rx.try_recv_bytes().unwrap(), None);
    /// inbox.sender::<String>().try_send_bytes(b"raw").unwrap();
    /// assert_eq!(rx.try_recv_bytes().unwrap().as_deref(), Some(&b"raw"[..]));
    /// ```
    pub fn try_recv_bytes(&self) -> Result<Option<Vec<u8>>> {
        self.poll(&mut |b: &[u8]| Ok(b.to_vec())).transpose()
    }

    /// Waits for the next message and returns its bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] as for [`try_recv_bytes`](Receiver::try_recv_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// let inbox = procyon::Camlbox::new(4, 64).unwrap();
    /// let rx = inbox.receiver::<u8>().unwrap();
    /// inbox.sender::<u8>().send(&9).unwrap();
    /// assert_eq!(rx.recv_bytes().unwrap(), [9]);
    /// ```
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_until(None, &mut |b: &[u8]| Ok(b.to_vec()))
    }

    /// Waits at most `timeout` for the next message and returns its bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if nothing arrived in time, [`Error::Malformed`] as for
    /// [`try_recv_bytes`](Receiver::try_recv_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let inbox = procyon::Camlbox::new(4, 64).unwrap();
    /// let rx = inbox.receiver::<u8>().unwrap();
    /// let r = rx.recv_bytes_timeout(Duration::from_millis(1));
    /// assert!(matches!(r, Err(procyon::Error::Timeout { .. })));
    /// ```
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_until(deadline_after(timeout), &mut |b: &[u8]| Ok(b.to_vec()))
    }

    /// Blocks until a message (or a per-message error) arrives, or `deadline` passes.
    fn recv_until<R>(
        &self,
        deadline: Option<Instant>,
        decode: &mut dyn FnMut(&[u8]) -> Result<R>,
    ) -> Result<R> {
        let began = Instant::now();
        let data_ready = &self.shared.control().data_ready.0;
        loop {
            // While the head slot is being written, sleep no longer than the moment we
            // mean to ask whether its writer is alive (a dead writer never notifies).
            let stuck_at = self.stuck.get().map(|s| s.since + STUCK_WRITER_CHECK);
            let wake = match (deadline, stuck_at) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            let step = wait_on(data_ready, wake, || match self.poll(decode) {
                Some(result) => Some(Step::Done(result)),
                None if stuck_at.is_none() && self.stuck.get().is_some() => Some(Step::Rearm),
                None => None,
            });
            match step {
                Some(Step::Done(result)) => return result,
                Some(Step::Rearm) => {}
                None if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(Error::Timeout {
                        job: None,
                        limit: deadline
                            .map_or(Duration::ZERO, |d| d.saturating_duration_since(began)),
                    })
                }
                None => {}
            }
        }
    }

    /// One look at the head slot: `Some` with a message (or one message's error), `None`
    /// if there is nothing to take yet. Reclaims the slot of a dead writer.
    fn poll<R>(&self, decode: &mut dyn FnMut(&[u8]) -> Result<R>) -> Option<Result<R>> {
        let control = self.shared.control();
        loop {
            match self.shared.ring.try_recv() {
                Recv::Empty => {
                    self.stuck.set(None);
                    return None;
                }
                Recv::Ready(guard) => {
                    self.stuck.set(None);
                    let result = match guard.bytes() {
                        Ok(bytes) => decode(bytes),
                        Err(len) => Err(Error::Malformed {
                            reason: format!(
                                "slot length {len} exceeds the slot size {}",
                                self.shared.ring.geometry().slot_size()
                            ),
                        }),
                    };
                    drop(guard); // frees the slot
                    control.slot_freed.0.notify();
                    return Some(result);
                }
                Recv::Skipped => {
                    self.stuck.set(None);
                    control.slot_freed.0.notify();
                    return Some(Err(Error::Malformed {
                        reason: "slot state word corrupted; slot skipped".into(),
                    }));
                }
                Recv::Corrupt => {
                    return Some(Err(Error::Malformed {
                        reason: "camlbox head position corrupted".into(),
                    }))
                }
                Recv::Writing { pos, writer } => {
                    if self.reclaim_if_dead(pos, writer) {
                        control.slot_freed.0.notify();
                        continue;
                    }
                    return None;
                }
            }
        }
    }

    /// Tracks how long the head slot has been `Writing(pos, writer)`; past the bound,
    /// reclaims it if `writer` is dead. `true` if the slot was reclaimed.
    fn reclaim_if_dead(&self, pos: u32, writer: u32) -> bool {
        let now = Instant::now();
        match self.stuck.get() {
            Some(s) if s.pos == pos && s.writer == writer => {
                if now.duration_since(s.since) < STUCK_WRITER_CHECK {
                    return false;
                }
                let alive = i32::try_from(writer).is_ok_and(process::is_alive);
                if !alive && self.shared.ring.reclaim(pos, writer) {
                    self.stuck.set(None);
                    return true;
                }
                // Alive (or not reclaimable): look again after another bound.
                self.stuck.set(Some(Stuck { since: now, ..s }));
            }
            _ => self.stuck.set(Some(Stuck {
                pos,
                writer,
                since: now,
            })),
        }
        false
    }
}

impl<M: DeserializeOwned> Receiver<M> {
    /// Takes the next message if one is published; `Ok(None)` if not.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if the next message cannot be decoded as an `M` (it is dropped;
    /// the next receive goes on).
    ///
    /// # Examples
    ///
    /// ```
    /// let inbox = procyon::Camlbox::new(4, 64).unwrap();
    /// let rx = inbox.receiver::<i64>().unwrap();
    /// assert_eq!(rx.try_recv().unwrap(), None);
    /// inbox.sender().try_send(&-5i64).unwrap();
    /// assert_eq!(rx.try_recv().unwrap(), Some(-5));
    /// ```
    pub fn try_recv(&self) -> Result<Option<M>> {
        self.poll(&mut decode::<M>).transpose()
    }

    /// Waits for the next message: spins briefly, then sleeps until one is published.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] as for [`try_recv`](Receiver::try_recv).
    ///
    /// # Examples
    ///
    /// ```
    /// let inbox = procyon::Camlbox::new(4, 64).unwrap();
    /// let rx = inbox.receiver::<(u8, bool)>().unwrap();
    /// let tx = inbox.sender();
    /// std::thread::spawn(move || tx.send(&(1u8, true)).unwrap());
    /// assert_eq!(rx.recv().unwrap(), (1, true));
    /// ```
    pub fn recv(&self) -> Result<M> {
        self.recv_until(None, &mut decode::<M>)
    }

    /// Waits at most `timeout` for the next message.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if nothing arrived in time; [`Error::Malformed`] as for
    /// [`try_recv`](Receiver::try_recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use procyon::{Camlbox, Error};
    ///
    /// let inbox = Camlbox::new(4, 64).unwrap();
    /// let rx = inbox.receiver::<u8>().unwrap();
    /// let start = Instant::now();
    /// assert!(matches!(rx.recv_timeout(Duration::from_millis(20)), Err(Error::Timeout { .. })));
    /// assert!(start.elapsed() >= Duration::from_millis(20));
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<M> {
        self.recv_until(deadline_after(timeout), &mut decode::<M>)
    }
}

fn decode<M: DeserializeOwned>(bytes: &[u8]) -> Result<M> {
    bincode::deserialize(bytes).map_err(|e| Error::Malformed {
        reason: format!("cannot decode a {}: {e}", std::any::type_name::<M>()),
    })
}

/// `None` (wait forever) if `timeout` reaches beyond what `Instant` can represent.
fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

impl<M> Drop for Receiver<M> {
    fn drop(&mut self) {
        // Only the attaching process closes: a forked child dropping an inherited handle
        // must not disconnect its parent's box.
        if process::getpid() == self.pid && self.shared.control().close(self.pid) {
            // Wake blocked senders so they see the close and fail with `Disconnected`.
            self.shared.control().slot_freed.0.notify();
        }
    }
}

impl<M> fmt::Debug for Receiver<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("message", &std::any::type_name::<M>())
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}
