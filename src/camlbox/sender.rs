//! The sending role of a camlbox.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ring::{Claim, ClaimError};
use super::wait::wait_on;
use super::{Shared, RECEIVER_PROBE};
use crate::sys::process::{cached_pid, register_pid_cache};
use crate::{Error, Result};

/// The sending side of a [`Camlbox`](crate::Camlbox), for messages of type `M`.
///
/// Any number of senders, in any threads of any processes that inherited the box through
/// `fork`, may send at once: they claim slots with atomics and never wait for one another.
/// Messages of one sender arrive in the order it sent them.
///
/// Made by [`Camlbox::sender`](crate::Camlbox::sender).
pub struct Sender<M> {
    shared: Arc<Shared>,
    _msg: PhantomData<fn(&M)>,
}

impl<M> Sender<M> {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        register_pid_cache();
        Sender {
            shared,
            _msg: PhantomData,
        }
    }

    /// Sends `bytes` as one message, without waiting: the receiver decodes them as an `M`
    /// (so they should be `M`'s bincode encoding; anything else reaches the receiver as
    /// [`Error::Malformed`]).
    ///
    /// **Async-signal-safe**: no allocation, no lock, a few atomic operations and at most
    /// two system calls (`getpid`, and a futex wake when the receiver sleeps). Call it from
    /// a signal handler freely. For that reason it never probes whether the receiver's
    /// process is alive: a full box whose receiver died reports `Full`, not
    /// `Disconnected`.
    ///
    /// # Errors
    ///
    /// * [`Error::MessageTooLarge`] if `bytes` exceeds the slot size;
    /// * [`Error::Disconnected`] if the receiver was dropped (or the box's shared state is
    ///   corrupt);
    /// * [`Error::Full`] if no slot is free.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Camlbox, Error};
    ///
    /// let inbox = Camlbox::new(1, 16).unwrap();
    /// let tx = inbox.sender::<u32>();
    /// let rx = inbox.receiver::<u32>().unwrap();
    /// tx.try_send_bytes(&7u32.to_le_bytes()).unwrap(); // bincode's u32 encoding
    /// assert!(matches!(tx.try_send_bytes(&[0; 4]), Err(Error::Full)));
    /// assert!(matches!(
    ///     tx.try_send_bytes(&[0; 17]),
    ///     Err(Error::MessageTooLarge { size: 17, max: 16 })
    /// ));
    /// assert_eq!(rx.recv().unwrap(), 7);
    /// ```
    pub fn try_send_bytes(&self, bytes: &[u8]) -> Result<()> {
        let max = self.slot_size();
        if bytes.len() > max {
            return Err(Error::MessageTooLarge {
                size: bytes.len(),
                max,
            });
        }
        self.check_open()?;
        let mut claim = self.claim_now()?;
        claim.payload()[..bytes.len()].copy_from_slice(bytes);
        claim.publish(bytes.len());
        self.shared.control().data_ready.0.notify();
        Ok(())
    }

    fn slot_size(&self) -> usize {
        self.shared.ring.geometry().slot_size()
    }

    /// `Disconnected` if the receiver was dropped. One relaxed load: the fast path.
    fn check_open(&self) -> Result<()> {
        if self.shared.control().receiver_gone(false) {
            Err(Error::Disconnected)
        } else {
            Ok(())
        }
    }

    /// One claim attempt. Async-signal-safe.
    fn claim_now(&self) -> Result<Claim<'_>> {
        self.shared
            .ring
            .try_claim(cached_pid() as u32)
            .map_err(|e| match e {
                ClaimError::Full => Error::Full,
                ClaimError::Corrupt => Error::Disconnected,
            })
    }

    /// Claims a slot, waiting until `deadline` (forever if `None`) for one to be freed.
    #[cold]
    fn claim_blocking(&self, deadline: Option<Instant>) -> Result<Claim<'_>> {
        let began = Instant::now();
        let control = self.shared.control();
        loop {
            // About to wait: is anyone going to free a slot?
            if control.receiver_gone(true) {
                return Err(Error::Disconnected);
            }
            let probe_at = Instant::now() + RECEIVER_PROBE;
            let wake = deadline.map_or(probe_at, |d| d.min(probe_at));
            let got = wait_on(&control.slot_freed.0, Some(wake), || {
                if control.receiver_gone(false) {
                    return Some(Err(Error::Disconnected));
                }
                match self.claim_now() {
                    Err(Error::Full) => None,
                    other => Some(other),
                }
            });
            if let Some(result) = got {
                return result;
            }
            if let Some(d) = deadline.filter(|&d| Instant::now() >= d) {
                return Err(Error::Timeout {
                    job: None,
                    limit: d.saturating_duration_since(began),
                });
            }
        }
    }
}

impl<M: Serialize> Sender<M> {
    /// Sends `msg` if a slot is free right now.
    ///
    /// # Errors
    ///
    /// * [`Error::MessageTooLarge`] if `msg` encodes to more than the slot size;
    /// * [`Error::Disconnected`] if the receiver was dropped, or if the box is full and the
    ///   receiver's process is gone;
    /// * [`Error::Full`] if no slot is free;
    /// * [`Error::Malformed`] if `msg` cannot be encoded by bincode (e.g. a sequence of
    ///   unknown length).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::{Camlbox, Error};
    ///
    /// let inbox = Camlbox::new(2, 64).unwrap();
    /// let tx = inbox.sender::<&str>();
    /// tx.try_send(&"one").unwrap();
    /// tx.try_send(&"two").unwrap();
    /// assert!(matches!(tx.try_send(&"three"), Err(Error::Full)));
    /// ```
    pub fn try_send(&self, msg: &M) -> Result<()> {
        let len = self.encoded_len(msg)?;
        self.check_open()?;
        let claim = match self.claim_now() {
            Err(Error::Full) if self.shared.control().receiver_gone(true) => {
                return Err(Error::Disconnected)
            }
            other => other?,
        };
        self.write(claim, msg, len)
    }

    /// Sends `msg`, waiting for a free slot as long as it takes (spinning briefly, then
    /// sleeping on a futex).
    ///
    /// # Errors
    ///
    /// * [`Error::MessageTooLarge`] and [`Error::Malformed`] as for
    ///   [`try_send`](Sender::try_send);
    /// * [`Error::Disconnected`] if the receiver is dropped or its process dies (checked
    ///   when the send starts to wait, and every 10 ms while it waits).
    ///
    /// # Examples
    ///
    /// ```
    /// let inbox = procyon::Camlbox::new(8, 64).unwrap();
    /// let rx = inbox.receiver::<Vec<u16>>().unwrap();
    /// inbox.sender().send(&vec![1u16, 2, 3]).unwrap();
    /// assert_eq!(rx.recv().unwrap(), [1, 2, 3]);
    /// ```
    pub fn send(&self, msg: &M) -> Result<()> {
        self.send_until(msg, None)
    }

    /// Sends `msg`, waiting at most `timeout` for a free slot.
    ///
    /// # Errors
    ///
    /// As for [`send`](Sender::send), plus [`Error::Timeout`] if no slot was freed in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use procyon::{Camlbox, Error};
    ///
    /// let inbox = Camlbox::new(1, 64).unwrap();
    /// let _rx = inbox.receiver::<u8>().unwrap();
    /// let tx = inbox.sender::<u8>();
    /// tx.send_timeout(&1, Duration::from_millis(5)).unwrap();
    /// let full = tx.send_timeout(&2, Duration::from_millis(5));
    /// assert!(matches!(full, Err(Error::Timeout { .. })));
    /// ```
    pub fn send_timeout(&self, msg: &M, timeout: Duration) -> Result<()> {
        self.send_until(msg, Instant::now().checked_add(timeout))
    }

    fn send_until(&self, msg: &M, deadline: Option<Instant>) -> Result<()> {
        let len = self.encoded_len(msg)?;
        self.check_open()?;
        let claim = match self.claim_now() {
            Err(Error::Full) => self.claim_blocking(deadline)?,
            other => other?,
        };
        self.write(claim, msg, len)
    }

    /// The encoded size of `msg`, checked against the slot size.
    fn encoded_len(&self, msg: &M) -> Result<usize> {
        let size = bincode::serialized_size(msg).map_err(encode_error)?;
        let max = self.slot_size();
        match usize::try_from(size) {
            Ok(size) if size <= max => Ok(size),
            _ => Err(Error::MessageTooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                max,
            }),
        }
    }

    /// Encodes `msg` straight into the claimed slot and publishes it. On failure the claim
    /// is dropped, which publishes the slot as abandoned (skipped by the receiver).
    fn write(&self, mut claim: Claim<'_>, msg: &M, len: usize) -> Result<()> {
        let payload = claim.payload();
        // A `Serialize` that writes less the second time publishes what it wrote.
        let written = crate::codec::encode_into(&mut payload[..len], msg).map_err(encode_error)?;
        claim.publish(written);
        self.shared.control().data_ready.0.notify();
        Ok(())
    }
}

fn encode_error(e: bincode::Error) -> Error {
    Error::Malformed {
        reason: format!("cannot encode message: {e}"),
    }
}

impl<M> Clone for Sender<M> {
    fn clone(&self) -> Self {
        Sender::new(Arc::clone(&self.shared))
    }
}

impl<M> fmt::Debug for Sender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("message", &std::any::type_name::<M>())
            .field("slot_size", &self.slot_size())
            .finish_non_exhaustive()
    }
}
