//! `pool.par_iter_vec(items)`: a `Vec` of serde values (neither plain data nor strings) as
//! the source of a parallel iterator, with every adapter of [`ParIter`].
//!
//! # Encoding in bulk
//!
//! The client encodes every item with bincode, back to back into one buffer of its own
//! (no allocation per item), noting where each ends, and copies the buffer and the
//! offsets into the mempool as one columnar value ([`crate::columnar`]'s layout: `n + 1`
//! offsets, one byte buffer). A worker decodes the items of the chunk it claimed with one
//! deserializer over the chunk's bytes; each item is then owned by the worker (decoding
//! allocates what the item owns, as its `Deserialize` does), so nothing of the buffer is
//! borrowed past the call. The iterator owns the two arrays and keeps them until its job
//! has ended ([`ParIter`]'s `keep`), then frees them.
//!
//! The cost: one encoding pass in the client (sequential) and one decoding per item in
//! the workers (in parallel), against nothing for [`SharedArray`](crate::SharedArray),
//! [`SharedStrings`](crate::SharedStrings) and [`SharedVecs`](crate::SharedVecs). Use
//! those when the items fit them. bincode's variable-length integer encoding is used
//! (measured against its fixed-length one in benches/columnar.rs: the same speed, and
//! fewer bytes to copy for small numbers).
//!
//! # Errors
//!
//! An item whose `Serialize` fails (bincode needs the length of every sequence and map
//! up front) fails the terminal operation with [`Error::Malformed`] before any job runs.
//! A type whose `Deserialize` does not read back what its `Serialize` wrote (bincode
//! cannot decode `#[serde(skip_serializing_if)]`, `untagged` or `flatten`) fails the job
//! with [`Error::TaskPanicked`] naming the item.

use std::marker::PhantomData;
use std::ops::{ControlFlow, Range};

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::columnar::ColumnsView;
use super::source::Source;
use super::stage::Id;
use super::ParIter;
use crate::array::{ArrayDesc, SharedArray};
use crate::mempool::Mempool;
use crate::pool::Pool;
use crate::{Error, Result};

/// The codec of the serde path, the same on both sides.
fn codec() -> impl Options + Copy {
    bincode::DefaultOptions::new()
}

/// The items of a `Vec` of serde values, decoded a chunk at a time.
#[doc(hidden)]
pub struct SerdeSource<T>(PhantomData<fn() -> T>);

impl<T: Serialize + DeserializeOwned + 'static> Source for SerdeSource<T> {
    type Item = T;
    type Args = (ArrayDesc<u64>, ArrayDesc<u8>);
    type Local = ColumnsView<u8>;

    fn len(args: &Self::Args) -> usize {
        args.0.len().saturating_sub(1)
    }

    fn init(args: &Self::Args, pool: &Mempool) -> Result<Self::Local> {
        ColumnsView::resolve(args, pool)
    }

    #[inline]
    fn feed(
        _: &Self::Args,
        view: &mut Self::Local,
        range: Range<usize>,
        mut f: impl FnMut(T) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        // SAFETY: the iterator keeps the encoded arrays until the job has ended, and
        // nobody writes them after the client filled them (before submitting the job);
        // the slice lives only in this call, and the decoded items borrow nothing of it.
        let bytes = unsafe { view.span(range.clone()) };
        let mut de = bincode::Deserializer::from_slice(bytes, codec());
        for i in range {
            match T::deserialize(&mut de) {
                Ok(item) => f(item)?,
                Err(e) => panic!(
                    "item {i} of par_iter_vec does not decode ({e}): its Deserialize must read \
                     back what its Serialize wrote (bincode cannot decode serde's \
                     skip_serializing_if, untagged or flatten)"
                ),
            }
        }
        ControlFlow::Continue(())
    }
}

/// Encodes `items` into the mempool: one buffer, one offset per item.
fn encode<T: Serialize>(pool: &Pool, items: &[T]) -> Result<(SharedArray<u64>, SharedArray<u8>)> {
    let mut offsets = SharedArray::<u64>::for_overwrite(pool.mempool(), items.len() + 1)?;
    let mut buf = Vec::new();
    {
        let offs = offsets.as_mut_slice();
        offs[0] = 0;
        for (i, (item, end)) in items.iter().zip(&mut offs[1..]).enumerate() {
            codec()
                .serialize_into(&mut buf, item)
                .map_err(|e| Error::Malformed {
                    reason: format!("item {i} of par_iter_vec cannot be encoded: {e}"),
                })?;
            *end = buf.len() as u64;
        }
    }
    Ok((offsets, SharedArray::from_slice(pool.mempool(), &buf)?))
}

impl Pool {
    /// A parallel iterator over `items` (a `Vec`, a slice, or a reference to either) of
    /// any serde type, in the workers: they are encoded here into one buffer in the mempool and decoded a chunk at a time by
    /// the workers. The cost: one encoding pass here (sequential, tens of nanoseconds per
    /// small record), 8 bytes of offsets per item, and one decoding per item in the workers (in
    /// parallel, allocating what the item owns). Plain data is faster through
    /// [`Pool::par_iter`] (a [`SharedArray`] read in place, or a slice or `Vec` staged with
    /// one copy), strings and vectors of plain data as [`SharedStrings`](crate::SharedStrings) /
    /// [`SharedVecs`](crate::SharedVecs), which cost one copy and no encoding.
    /// Results that keep the order (`collect_vec`, `reduce`, ...) are in input order. The
    /// items are encoded (copied) at once, so a borrowed `items` is free again on return.
    ///
    /// # Errors
    /// The terminal operation fails with [`Error::Malformed`] if an item cannot be
    /// encoded, [`Error::OutOfMemory`] if the encoded items do not fit in the mempool; the
    /// job fails with [`Error::TaskPanicked`] naming the item if `T`'s `Deserialize` does
    /// not read back what its `Serialize` wrote (bincode cannot decode serde's
    /// `skip_serializing_if`, `untagged` or `flatten`).
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Order { id: u32, lines: Vec<(String, f64)> }
    ///
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let orders: Vec<Order> = (0..100)
    ///     .map(|id| Order { id, lines: vec![("tea".into(), 2.5); id as usize % 3] })
    ///     .collect();
    /// let totals = pool
    ///     .par_iter_vec(orders)
    ///     .filter(|o: &Order| !o.lines.is_empty())
    ///     .map(|o: Order| (o.id, o.lines.iter().map(|l| l.1).sum::<f64>()))
    ///     .collect_vec()?;
    /// assert_eq!(totals.len(), 66);
    /// assert_eq!(totals[0], (1, 2.5));
    ///
    /// let words = vec!["a".to_string(), "bc".to_string()];
    /// let n: usize = pool.par_iter_vec(&words).map(|w: String| w.len()).sum()?;
    /// assert_eq!((n, words.len()), (3, 2)); // `words` is still ours
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn par_iter_vec<T, V>(&self, items: V) -> ParIter<'_, SerdeSource<T>, Id>
    where
        T: Serialize + DeserializeOwned + 'static,
        V: AsRef<[T]>,
    {
        let (offsets, bytes, error) = match encode(self, items.as_ref()) {
            Ok((offsets, bytes)) => (offsets, bytes, None),
            // Empty arrays, never resolved: the terminal reports `e` before any job.
            Err(e) => (
                SharedArray::empty(self.mempool()),
                SharedArray::empty(self.mempool()),
                Some(e),
            ),
        };
        drop(items);
        let mut it = ParIter::new(self, (offsets.desc(), bytes.desc()), error);
        let keep = &mut it.opts_mut().keep;
        keep.extend(offsets.into_block());
        keep.extend(bytes.into_block());
        it
    }
}
