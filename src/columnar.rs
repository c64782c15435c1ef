//! Variable-size items in the mempool without per-item encoding: [`SharedStrings`] and
//! [`SharedVecs`], laid out as Apache Arrow lays out its string and list arrays.
//!
//! # Layout
//!
//! Two shared arrays: `offsets`, `n + 1` `u64`s starting at 0 and never decreasing, and
//! `values`, every item's elements back to back. Item `i` is
//! `values[offsets[i]..offsets[i + 1]]`. Building takes one pass over the items to
//! compute the offsets and one copy of their elements (a `memcpy` per item); nothing is
//! encoded, and reading an item in a worker is two loads and a slice.
//!
//! # Who touches what
//!
//! Both arrays are written only while the value is built, in the building process, before
//! any descriptor of them exists. Afterwards no handle gives write access: the type has no
//! `&mut` accessor and never hands out its arrays or their descriptors, so the elements are
//! immutable until the value is dropped (which frees both arrays). Parallel iterators over
//! it ([`Pool::par_iter_strs`](crate::Pool::par_iter_strs),
//! [`Pool::par_iter_vecs`](crate::Pool::par_iter_vecs)) borrow it until their terminal
//! operation returns, which is after the job has ended, so the workers' views of the
//! elements never outlive the arrays.
//!
//! The bytes of a [`SharedStrings`] come from `&str`s only, and every offset is the end of
//! one of them, so each item is valid UTF-8 by construction: neither the client nor the
//! workers validate it again.

use std::fmt;

use bytemuck::Pod;

use crate::array::{ArrayDesc, SharedArray};
use crate::mempool::Mempool;
use crate::{Error, Result};

/// The offsets and values of a columnar value; the shared part of both public types.
struct Columns<T: Pod> {
    offsets: SharedArray<u64>,
    values: SharedArray<T>,
}

impl<T: Pod> Columns<T> {
    /// Builds from items given as slices: one pass for the offsets, one copy of the
    /// elements.
    fn from_slices<'a, I>(pool: &Mempool, items: I) -> Result<Self>
    where
        I: ExactSizeIterator<Item = &'a [T]> + Clone,
        T: 'a,
    {
        let n = items.len();
        let mut offsets = SharedArray::<u64>::for_overwrite(pool, n + 1)?;
        let mut total = 0u64;
        {
            let offs = offsets.as_mut_slice();
            offs[0] = 0;
            let mut filled = 0;
            for (slot, item) in offs[1..].iter_mut().zip(items.clone()) {
                total = total
                    .checked_add(item.len() as u64)
                    .ok_or_else(|| Error::config("columnar items: more elements than u64 holds"))?;
                *slot = total;
                filled += 1;
            }
            if filled != n {
                return Err(Error::LengthMismatch {
                    what: "items an ExactSizeIterator yielded",
                    expected: n,
                    actual: filled,
                });
            }
        }
        let total = usize::try_from(total)
            .map_err(|_| Error::config("columnar items: more elements than the address space"))?;
        let mut values = SharedArray::<T>::for_overwrite(pool, total)?;
        {
            let dst = values.as_mut_slice();
            let mut at = 0;
            for item in items.take(n) {
                let end = at + item.len();
                // A `Clone` iterator that yields other items the second time must not
                // make us write out of bounds.
                let slot = dst.get_mut(at..end).ok_or_else(|| {
                    Error::config(
                        "columnar items: the iterator yielded other items the second time",
                    )
                })?;
                slot.copy_from_slice(item);
                at = end;
            }
            if at != total {
                return Err(Error::config(
                    "columnar items: the iterator yielded other items the second time",
                ));
            }
        }
        Ok(Columns { offsets, values })
    }

    /// Builds from owned offsets and values gathered in one pass.
    fn from_parts(pool: &Mempool, offsets: &[u64], values: &[T]) -> Result<Self> {
        Ok(Columns {
            offsets: SharedArray::from_slice(pool, offsets)?,
            values: SharedArray::from_slice(pool, values)?,
        })
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn get(&self, i: usize) -> Option<&[T]> {
        let offs = self.offsets.as_slice();
        let (a, b) = (*offs.get(i)?, *offs.get(i + 1)?);
        // Offsets were computed by `from_*` and are immutable since.
        Some(&self.values.as_slice()[a as usize..b as usize])
    }

    fn descs(&self) -> (ArrayDesc<u64>, ArrayDesc<T>) {
        (self.offsets.desc(), self.values.desc())
    }

    fn pool_id(&self) -> u64 {
        self.offsets.pool_id()
    }

    fn values_len(&self) -> usize {
        self.values.len()
    }
}

/// Gathers items in one pass into offsets and values (for iterators that cannot be
/// walked twice).
fn gather<T: Pod, A: AsRef<[T]>>(items: impl IntoIterator<Item = A>) -> (Vec<u64>, Vec<T>) {
    let items = items.into_iter();
    let mut offsets = Vec::with_capacity(items.size_hint().0 + 1);
    let mut values = Vec::new();
    offsets.push(0u64);
    for item in items {
        values.extend_from_slice(item.as_ref());
        offsets.push(values.len() as u64);
    }
    (offsets, values)
}

/// An immutable list of strings in the mempool, shared with the workers without copying or
/// encoding: an offsets array and one buffer of UTF-8 bytes (Arrow's string layout: string
/// `i` is `bytes[offsets[i]..offsets[i + 1]]`). Immutable once built: nothing writes the
/// bytes until it is dropped, which is why workers may view them as `&str` in place.
/// Building costs 8 bytes of offsets per string and one copy of the bytes.
///
/// Build it from a slice ([`Pool::strings_from_slice`](crate::Pool::strings_from_slice),
/// [`SharedStrings::from_slice`]) or any iterator ([`SharedStrings::from_iter_in`]); iterate
/// it in the workers as `&str` with [`Pool::par_iter_strs`](crate::Pool::par_iter_strs),
/// with every adapter of [`ParIter`](crate::ParIter); read it back here with
/// [`get`](Self::get), [`iter`](Self::iter) and [`to_vec`](Self::to_vec).
///
/// # Examples
///
/// ```
/// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let words = pool.strings_from_slice(&["été", "", "procyon"])?;
/// assert_eq!((words.len(), words.total_bytes()), (3, 12));
/// assert_eq!(words.get(0), Some("été"));
/// let long = pool.par_iter_strs(&words).filter(|w: &&str| w.len() > 3).count()?;
/// assert_eq!(long, 2);
/// # Ok::<(), procyon::Error>(())
/// ```
pub struct SharedStrings {
    cols: Columns<u8>,
}

impl SharedStrings {
    /// Copies `items` into `pool`: one pass computing the offsets, one copy of the bytes.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the pool cannot hold the offsets (8 bytes per item, plus
    /// 8) and the bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let owned = vec![String::from("a"), String::from("bc")];
    /// let s = procyon::SharedStrings::from_slice(&pool, &owned)?;
    /// assert_eq!(s.to_vec(), owned);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn from_slice<S: AsRef<str>>(pool: &Mempool, items: &[S]) -> Result<Self> {
        let cols = Columns::from_slices(pool, items.iter().map(|s| s.as_ref().as_bytes()))?;
        Ok(SharedStrings { cols })
    }

    /// Copies the strings of any iterator into `pool`, in one pass over it (through a
    /// buffer of this process, then one copy into the pool).
    ///
    /// # Errors
    /// As [`from_slice`](Self::from_slice).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let s = procyon::SharedStrings::from_iter_in(&pool, "to be or not".split(' '))?;
    /// assert_eq!(s.iter().collect::<Vec<_>>(), ["to", "be", "or", "not"]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn from_iter_in<S: AsRef<str>>(
        pool: &Mempool,
        items: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let (offsets, bytes) = gather::<u8, _>(items.into_iter().map(Bytes));
        Ok(SharedStrings {
            cols: Columns::from_parts(pool, &offsets, &bytes)?,
        })
    }

    /// Number of strings.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// assert_eq!(procyon::SharedStrings::from_slice(&pool, &["x"; 5])?.len(), 5);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.cols.len()
    }

    /// Whether there are no strings.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// assert!(procyon::SharedStrings::from_slice::<&str>(&pool, &[])?.is_empty());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of all strings together (UTF-8, without the offsets).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// assert_eq!(procyon::SharedStrings::from_slice(&pool, &["ab", "ç"])?.total_bytes(), 4);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn total_bytes(&self) -> usize {
        self.cols.values_len()
    }

    /// String `i`, or `None` past the end.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let s = procyon::SharedStrings::from_slice(&pool, &["a", "b"])?;
    /// assert_eq!((s.get(1), s.get(2)), (Some("b"), None));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn get(&self, i: usize) -> Option<&str> {
        let bytes = self.cols.get(i)?;
        // SAFETY: the bytes of item `i` are a copy of one `&str` (module docs: built from
        // `&str`s only, offsets at their ends, immutable since), hence valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    }

    /// The strings, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let s = procyon::SharedStrings::from_slice(&pool, &["a", "bb"])?;
    /// assert_eq!(s.iter().map(str::len).sum::<usize>(), 3);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + DoubleEndedIterator + '_ {
        (0..self.len()).map(|i| self.get(i).expect("index below len"))
    }

    /// The strings, copied out as `String`s.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let s = procyon::SharedStrings::from_slice(&pool, &["a"])?;
    /// assert_eq!(s.to_vec(), vec!["a".to_string()]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }

    /// Descriptors of the offsets and the bytes, for the workers' view.
    pub(crate) fn descs(&self) -> (ArrayDesc<u64>, ArrayDesc<u8>) {
        self.cols.descs()
    }

    /// The id of the mempool holding it.
    pub(crate) fn pool_id(&self) -> u64 {
        self.cols.pool_id()
    }
}

impl fmt::Debug for SharedStrings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A `str` seen as its bytes, for [`gather`].
struct Bytes<S>(S);

impl<S: AsRef<str>> AsRef<[u8]> for Bytes<S> {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref().as_bytes()
    }
}

/// An immutable list of vectors of plain data in the mempool, shared with the workers
/// without copying or encoding: an offsets array and one values array (Arrow's list
/// layout: vector `i` is `values[offsets[i]..offsets[i + 1]]`). Immutable once built, as
/// [`SharedStrings`]; building costs 8 bytes of offsets per vector and one copy of the
/// elements.
///
/// Build it from a slice of anything that is a slice of `T`
/// ([`Pool::vecs_from_slice`](crate::Pool::vecs_from_slice), [`SharedVecs::from_slice`]:
/// `&[Vec<T>]`, `&[&[T]]`, `&[[T; N]]`) or any iterator ([`SharedVecs::from_iter_in`]);
/// iterate it in the workers as `&[T]` with
/// [`Pool::par_iter_vecs`](crate::Pool::par_iter_vecs); read it back here with
/// [`get`](Self::get), [`iter`](Self::iter) and [`to_vec`](Self::to_vec).
///
/// # Examples
///
/// ```
/// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let rows = pool.vecs_from_slice(&[vec![1.0f64, 2.0], vec![], vec![3.0]])?;
/// assert_eq!((rows.len(), rows.total_len()), (3, 3));
/// let sums = pool.par_iter_vecs(&rows).map(|r: &[f64]| r.iter().sum::<f64>()).collect_vec()?;
/// assert_eq!(sums, [3.0, 0.0, 3.0]);
/// # Ok::<(), procyon::Error>(())
/// ```
pub struct SharedVecs<T: Pod> {
    cols: Columns<T>,
}

impl<T: Pod> SharedVecs<T> {
    /// Copies `items` into `pool`: one pass computing the offsets, one copy of the
    /// elements.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the pool cannot hold the offsets (8 bytes per item, plus
    /// 8) and the elements.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let v = procyon::SharedVecs::from_slice(&pool, &[vec![1u32], vec![2, 3]])?;
    /// assert_eq!(v.get(1), Some(&[2u32, 3][..]));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn from_slice<V: AsRef<[T]>>(pool: &Mempool, items: &[V]) -> Result<Self> {
        let cols = Columns::from_slices(pool, items.iter().map(|v| v.as_ref()))?;
        Ok(SharedVecs { cols })
    }

    /// Copies the vectors of any iterator into `pool`, in one pass over it (through a
    /// buffer of this process, then one copy into the pool).
    ///
    /// # Errors
    /// As [`from_slice`](Self::from_slice).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let v = procyon::SharedVecs::from_iter_in(&pool, (0u8..4).map(|n| vec![n; n as usize]))?;
    /// assert_eq!(v.total_len(), 6);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn from_iter_in<V: AsRef<[T]>>(
        pool: &Mempool,
        items: impl IntoIterator<Item = V>,
    ) -> Result<Self> {
        let (offsets, values) = gather::<T, _>(items);
        Ok(SharedVecs {
            cols: Columns::from_parts(pool, &offsets, &values)?,
        })
    }

    /// Number of vectors.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// assert_eq!(procyon::SharedVecs::from_slice(&pool, &[[1u8, 2]; 3])?.len(), 3);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.cols.len()
    }

    /// Whether there are no vectors.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// assert!(procyon::SharedVecs::<u8>::from_slice::<Vec<u8>>(&pool, &[])?.is_empty());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements of all vectors together.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// assert_eq!(procyon::SharedVecs::from_slice(&pool, &[vec![0u16; 4], vec![1]])?.total_len(), 5);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn total_len(&self) -> usize {
        self.cols.values_len()
    }

    /// Vector `i`, or `None` past the end.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let v = procyon::SharedVecs::from_slice(&pool, &[vec![7i64]])?;
    /// assert_eq!((v.get(0), v.get(1)), (Some(&[7i64][..]), None));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn get(&self, i: usize) -> Option<&[T]> {
        self.cols.get(i)
    }

    /// The vectors, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let v = procyon::SharedVecs::from_slice(&pool, &[vec![1u32, 2], vec![3]])?;
    /// assert_eq!(v.iter().map(|r| r.len()).collect::<Vec<_>>(), [2, 1]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[T]> + DoubleEndedIterator + '_ {
        (0..self.len()).map(|i| self.get(i).expect("index below len"))
    }

    /// The vectors, copied out.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let rows = vec![vec![1u8], vec![], vec![2, 3]];
    /// assert_eq!(procyon::SharedVecs::from_slice(&pool, &rows)?.to_vec(), rows);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn to_vec(&self) -> Vec<Vec<T>> {
        self.iter().map(<[T]>::to_vec).collect()
    }

    /// Descriptors of the offsets and the values, for the workers' view.
    pub(crate) fn descs(&self) -> (ArrayDesc<u64>, ArrayDesc<T>) {
        self.cols.descs()
    }

    /// The id of the mempool holding it.
    pub(crate) fn pool_id(&self) -> u64 {
        self.cols.pool_id()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SharedVecs<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
