//! Camlboxes: fixed-slot shared-memory mailboxes, many senders, one receiver.
