//! Where the workers of a job leave their partial results: a table of [`PartialCell`]s,
//! one per worker row, at the job header's `table` offset.
//!
//! A partial result that encodes in at most [`INLINE_CAP`] bytes (a sum, a count, a min,
//! a short list) is written into the cell itself, so a small job allocates no block for
//! it; a larger one goes into a mempool block the cell names. The usual case, one merged
//! partial of an unordered kind (`[(0, p)]`), is stored as the encoding of `p` alone.
//! Cells are small (the table of a small job sits in its header's inline area); each
//! worker writes its own once per job, so sharing a cache line costs nothing. The task
//! that submitted a nested iterator job and runs it first while it waits writes no cell:
//! it keeps its partials in its own memory (`kind::entry_owned`) and adds them to what it
//! takes from the others' cells.
//!
//! ## Protocol
//!
//! * The submitter zeroes the table (EMPTY cells) before it publishes the job (ACTIVE,
//!   Release).
//! * A worker writes its own row's cell at most once per job, after its last chunk and
//!   before its last `done` addition (AcqRel), which publishes the cell.
//! * Once the job has ended (`done == n` loaded with Acquire, or FAILED with no pin
//!   left), its owner, or the scheduler for a dead owner, *takes* each cell: one swap of
//!   the `meta` word to EMPTY, so a cell is taken once, and a block named by it is freed
//!   by exactly one taker.
//!
//! Everything else in a cell is Relaxed: the ordering comes from `done` and the state
//! word, as for the output arrays the workers write.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::mempool::{Mempool, RawBlock};

/// Bytes of one cell (cells are laid out back to back, 32-byte aligned).
pub(crate) const CELL_SIZE: usize = 32;
/// Most bytes of encoded partial results a cell holds itself.
pub(crate) const INLINE_CAP: usize = 24;

/// `meta`: nothing recorded.
const EMPTY: u64 = 0;
/// `meta`: `words[0..3]` name a mempool block `(offset, len, generation)`.
const BLOCK: u64 = 1;
/// `meta`: `INLINE + len`, the first `len` bytes of `words` hold the encoding of the
/// list of partials.
const INLINE: u64 = 2;
/// `meta`: `INLINE_ONE + len`, the first `len` bytes of `words` hold the encoding of `p`
/// for the list `[(0, p)]`.
const INLINE_ONE: u64 = INLINE + INLINE_CAP as u64 + 1;

/// One worker row's partial results.
#[repr(C, align(32))]
pub(crate) struct PartialCell {
    meta: AtomicU64,
    words: [AtomicU64; INLINE_CAP / 8],
}

const _: () = assert!(std::mem::size_of::<PartialCell>() == CELL_SIZE);

/// What a taken cell held.
pub(crate) enum Partial {
    /// The encoding itself (`len` bytes of the array); `one`: of `p` alone, for the
    /// list `[(0, p)]`.
    Inline {
        buf: [u8; INLINE_CAP],
        len: usize,
        one: bool,
    },
    /// A block holding the encoding, now owned by the taker.
    Block(RawBlock),
}

impl Partial {
    /// Decodes the list of partials, adopting and freeing a block.
    pub(crate) fn decode<P: DeserializeOwned>(
        self,
        mempool: &Mempool,
    ) -> crate::Result<Vec<(u64, P)>> {
        let malformed = |e: bincode::Error| crate::Error::Malformed {
            reason: format!("partial results: {e}"),
        };
        match self {
            Partial::Inline {
                buf,
                len,
                one: true,
            } => Ok(vec![(
                0,
                bincode::deserialize(&buf[..len]).map_err(malformed)?,
            )]),
            Partial::Inline { buf, len, .. } => {
                bincode::deserialize(&buf[..len]).map_err(malformed)
            }
            Partial::Block(raw) => {
                let block = mempool.adopt(raw)?;
                bincode::deserialize(block.as_bytes()).map_err(malformed)
            }
        }
    }
}

/// The partials the submitting task of a nested job kept for itself (it ran chunks of
/// its own job: `kind::entry_owned`): an unordered kind's one merged partial, or an
/// ordered kind's list of `(first item, partial)` in claim order. Holds no allocation of
/// its own for the first kind.
pub(crate) struct Kept<P> {
    pub(crate) merged: Option<P>,
    pub(crate) ordered: Vec<(u64, P)>,
}

impl<P> Default for Kept<P> {
    fn default() -> Self {
        Kept {
            merged: None,
            ordered: Vec::new(),
        }
    }
}

impl<P> Kept<P> {
    /// As a list of `(first item, partial)`.
    pub(crate) fn into_list(self) -> Vec<(u64, P)> {
        match self.merged {
            Some(m) => {
                let mut all = self.ordered;
                all.push((0, m));
                all
            }
            None => self.ordered,
        }
    }
}

/// A job's partials in input order, as its answer consumes them: straight from what its
/// submitting task kept when no other worker left any (a small nested job: no list to
/// build), else from the sorted list of all.
pub(crate) enum Partials<P> {
    /// The kept partial of an unordered kind, alone.
    One(Option<P>),
    /// Every partial, sorted by first item.
    Listed(std::vec::IntoIter<(u64, P)>),
}

impl<P> Partials<P> {
    /// The partials of a job whose every item its submitting task ran itself (inline,
    /// `worker::run_inline`): `kept` alone, in input order.
    #[inline(always)]
    pub(crate) fn kept(kept: Kept<P>) -> Self {
        if kept.ordered.is_empty() {
            Partials::One(kept.merged)
        } else {
            // Chunks ran in input order, and an ordered kind keeps no merged partial.
            Partials::Listed(kept.into_list().into_iter())
        }
    }
}

impl<P> Iterator for Partials<P> {
    type Item = P;
    fn next(&mut self) -> Option<P> {
        match self {
            Partials::One(p) => p.take(),
            Partials::Listed(it) => it.next().map(|(_, p)| p),
        }
    }
}

/// Encodes `parts`, of encoded size `size` (`bincode::serialized_size(parts)`), into a
/// cell of its own when small enough: `Some((buf, len, one))`.
pub(crate) fn encode_inline<P: Serialize>(
    parts: &[(u64, P)],
    size: usize,
) -> Option<([u8; INLINE_CAP], usize, bool)> {
    let mut buf = [0u8; INLINE_CAP];
    if let [(0, p)] = parts {
        // The list's encoding is its length, the first item's index and `p`'s encoding.
        let len = size.checked_sub(16)?;
        if len <= INLINE_CAP {
            let len = crate::codec::encode_into(&mut buf[..len], p).ok()?;
            return Some((buf, len, true));
        }
    }
    if size > INLINE_CAP {
        return None;
    }
    let len = crate::codec::encode_into(&mut buf[..size], parts).ok()?;
    Some((buf, len, false))
}

impl PartialCell {
    /// Entry `index` of a table of cells at mempool offset `table`.
    ///
    /// # Safety
    /// `table .. table + (index + 1) * CELL_SIZE` must lie inside live memory of
    /// `mempool` that holds such a table (an argument block or a job header's inline
    /// area) for as long as the reference is used.
    ///
    /// # Errors
    /// [`crate::Error::InvalidDescriptor`] if the entry is not an aligned range of the
    /// region (a table offset read from shared memory that a task overwrote).
    pub(crate) unsafe fn in_table(
        mempool: &Mempool,
        table: u64,
        index: usize,
    ) -> crate::Result<&PartialCell> {
        let count = index
            .checked_add(1)
            .ok_or_else(|| crate::Error::descriptor("partial-results cell out of place"))?;
        // SAFETY: forwarded to the caller: the first `index + 1` cells are live memory.
        Ok(&unsafe { Self::table(mempool, table, count) }?[index])
    }

    /// The whole table of `count` cells at mempool offset `table`, resolved once (the
    /// owner reads every row's cell when its job ends).
    ///
    /// # Safety
    /// As [`in_table`](PartialCell::in_table), for every one of the `count` cells.
    pub(crate) unsafe fn table(
        mempool: &Mempool,
        table: u64,
        count: usize,
    ) -> crate::Result<&[PartialCell]> {
        if table as usize % CELL_SIZE != 0 {
            return Err(crate::Error::descriptor(
                "partial-results table out of place",
            ));
        }
        let words = count
            .checked_mul(CELL_SIZE / 8)
            .ok_or_else(|| crate::Error::descriptor("partial-results table too long"))?;
        // SAFETY: forwarded to the caller: in bounds of live memory (checked by
        // `words_at`), aligned (checked), made of atomics.
        let words = unsafe { mempool.words_at(table as usize, words) }?;
        // SAFETY: `count` back-to-back groups of four AtomicU64 words, 32-byte aligned, are
        // `count` `#[repr(C, align(32))]` PartialCells (size 32, no padding).
        Ok(unsafe { std::slice::from_raw_parts(words.as_ptr() as *const PartialCell, count) })
    }

    /// Records `bytes` (at most [`INLINE_CAP`]) in the cell itself; `one`: the encoding
    /// of `p` alone for the list `[(0, p)]`.
    pub(crate) fn store_inline(&self, bytes: &[u8], one: bool) {
        assert!(bytes.len() <= INLINE_CAP, "partial too large for its cell");
        for (w, chunk) in self.words.iter().zip(bytes.chunks(8)) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            // Relaxed: published by the worker's last `done` addition (module docs).
            w.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        let tag = if one { INLINE_ONE } else { INLINE };
        self.meta.store(tag + bytes.len() as u64, Ordering::Relaxed);
    }

    /// Records that `raw` holds the encoding.
    pub(crate) fn store_block(&self, raw: RawBlock) {
        // Relaxed: as `store_inline`.
        self.words[0].store(raw.offset(), Ordering::Relaxed);
        self.words[1].store(raw.len(), Ordering::Relaxed);
        self.words[2].store(raw.generation(), Ordering::Relaxed);
        self.meta.store(BLOCK, Ordering::Relaxed);
    }

    /// Takes what the cell holds (one taker wins: `meta` is swapped to EMPTY).
    ///
    /// # Errors
    /// [`crate::Error::InvalidDescriptor`] if the cell's tag is none of the above (a task
    /// overwrote it).
    pub(crate) fn take(&self, mempool: &Mempool) -> crate::Result<Option<Partial>> {
        // Relaxed: the caller saw the job end (Acquire), which publishes the cell. Most
        // cells of a job are empty: look before writing.
        if self.meta.load(Ordering::Relaxed) == EMPTY {
            return Ok(None);
        }
        let meta = self.meta.swap(EMPTY, Ordering::Relaxed);
        match meta {
            EMPTY => Ok(None),
            BLOCK => Ok(Some(Partial::Block(RawBlock::from_parts(
                mempool.id(),
                self.words[0].load(Ordering::Relaxed),
                self.words[1].load(Ordering::Relaxed),
                self.words[2].load(Ordering::Relaxed),
            )))),
            m if (INLINE..=INLINE_ONE + INLINE_CAP as u64).contains(&m) => {
                let one = m >= INLINE_ONE;
                let len = (m - if one { INLINE_ONE } else { INLINE }) as usize;
                let mut buf = [0u8; INLINE_CAP];
                for (w, chunk) in self.words.iter().zip(buf.chunks_mut(8)) {
                    chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
                }
                Ok(Some(Partial::Inline { buf, len, one }))
            }
            _ => Err(crate::Error::descriptor(
                "a partial-results cell was overwritten (a task wrote outside its own data)",
            )),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn cell() -> Box<PartialCell> {
        // SAFETY: a cell is all atomics; all zero is EMPTY.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    fn round_trip<P: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        pool: &Mempool,
        parts: Vec<(u64, P)>,
        inline: bool,
    ) {
        let c = cell();
        let size = bincode::serialized_size(&parts).unwrap() as usize;
        match encode_inline(&parts, size) {
            Some((buf, len, one)) => {
                assert!(inline, "{parts:?} should not fit a cell");
                c.store_inline(&buf[..len], one);
            }
            None => {
                assert!(!inline, "{parts:?} should fit a cell");
                let bytes = bincode::serialize(&parts).unwrap();
                let mut block = pool.alloc(bytes.len(), 8).unwrap();
                block.as_bytes_mut()[..bytes.len()].copy_from_slice(&bytes);
                c.store_block(block.into_raw());
            }
        }
        let got: Vec<(u64, P)> = c.take(pool).unwrap().unwrap().decode(pool).unwrap();
        assert_eq!(got, parts);
        assert!(c.take(pool).unwrap().is_none(), "taken once");
    }

    #[test]
    fn partials_round_trip_inline_or_through_a_block() {
        let pool = Mempool::new(1 << 20).unwrap();
        let before = pool.usage().in_use;
        round_trip(&pool, vec![(0, 42u64)], true);
        round_trip(&pool, vec![(0, (1u64, 2u64, 3u64))], true);
        round_trip(&pool, vec![(0, Some(7u64))], true);
        round_trip(&pool, vec![(5, 1u32)], true);
        round_trip(&pool, vec![(0, [1u64; 4])], false);
        round_trip(&pool, vec![(0, 1u64), (10, 2u64)], false);
        round_trip(&pool, (0..100u64).map(|i| (i, i * i)).collect(), false);
        round_trip::<u8>(&pool, vec![], true);
        // The blocks were adopted and freed by the taker.
        assert_eq!(pool.usage().in_use, before);
    }

    #[test]
    fn kept_partials_list_and_iterate_in_order() {
        let none: Kept<u8> = Kept::default();
        assert!(none.into_list().is_empty());
        let merged = Kept {
            merged: Some(7u8),
            ordered: Vec::new(),
        };
        assert_eq!(merged.into_list(), vec![(0, 7)]);
        let ordered = Kept {
            merged: None,
            ordered: vec![(0, 1u8), (4, 2)],
        };
        assert_eq!(ordered.into_list(), vec![(0, 1), (4, 2)]);
        assert_eq!(Partials::One(Some(3u8)).collect::<Vec<_>>(), vec![3]);
        assert_eq!(Partials::<u8>::One(None).count(), 0);
        let listed = Partials::Listed(vec![(0, 'a'), (2, 'b')].into_iter());
        assert_eq!(listed.collect::<String>(), "ab");
    }

    #[test]
    fn a_scribbled_tag_is_an_error() {
        let pool = Mempool::new(1 << 20).unwrap();
        let c = cell();
        c.meta
            .store(INLINE_ONE + INLINE_CAP as u64 + 1, Ordering::Relaxed);
        assert!(c.take(&pool).is_err());
    }
}
