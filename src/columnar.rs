//! Variable-size items in the mempool without per-item encoding: [`SharedStrings`] and
//! [`SharedVecs`], laid out as Apache Arrow lays out its string and list arrays.
//!
//! # Layout
//!
//! Two shared arrays: `offsets`, `n + 1` `u64`s starting at 0 and never decreasing, and
//! `values`, every item's elements back to back. Item `i` is
//! `values[offsets[i]..offsets[i + 1]]`. Building takes one pass over the items to
//! compute the offsets and one copy of their elements (a `memcpy` per item); nothing is
//! encoded, and reading an item in a worker is two loads and a slice. From 65,536 items
//! on, `from_slice` splits both passes over scoped threads of the calling process (as
//! many as `std::thread::available_parallelism`, at most 8), joined before it returns:
//! only the building process can read its items, and with one thread the copy of many
//! short items takes longer than counting over them in the workers (5 M words of about
//! 5 bytes on the 2-vCPU machine of BENCHMARKS.md: 42-43 ms on one thread, 28.5 ms on
//! two; the workers' count 22 ms).
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
    /// Builds from items given as slices (`get` of each of `items`): one pass for the
    /// offsets, one copy of the elements, both split over [`staging_threads`] threads
    /// for large inputs (each takes a contiguous run of items; the offsets of a run
    /// start where the previous run's elements end).
    fn from_slices<S: Sync>(
        pool: &Mempool,
        items: &[S],
        get: impl Fn(&S) -> &[T] + Sync,
    ) -> Result<Self> {
        Self::from_slices_in_runs(pool, items, get, staging_threads(items.len()))
    }

    /// [`Self::from_slices`] with the items cut into (at most) `runs` runs, one thread
    /// each.
    fn from_slices_in_runs<S: Sync>(
        pool: &Mempool,
        items: &[S],
        get: impl Fn(&S) -> &[T] + Sync,
        runs: usize,
    ) -> Result<Self> {
        let n = items.len();
        let per_run = n.div_ceil(runs).max(1);
        let parts: Vec<&[S]> = items.chunks(per_run).collect();
        let overflow = || Error::config("columnar items: more elements than u64 holds");
        // Pass 1: the elements of each run.
        let lens: Vec<Option<u64>> = in_threads(&parts, |part| {
            part.iter()
                .try_fold(0u64, |sum, s| sum.checked_add(get(s).len() as u64))
        });
        let mut bases = Vec::with_capacity(parts.len() + 1);
        bases.push(0u64);
        for len in &lens {
            let last = *bases.last().expect("starts with 0");
            bases.push(
                last.checked_add(len.ok_or_else(overflow)?)
                    .ok_or_else(overflow)?,
            );
        }
        let total = *bases.last().expect("starts with 0");
        let total = usize::try_from(total)
            .map_err(|_| Error::config("columnar items: more elements than the address space"))?;
        let mut offsets = SharedArray::<u64>::for_overwrite(pool, n + 1)?;
        let mut values = SharedArray::<T>::for_overwrite(pool, total)?;
        // Pass 2: each run writes its offsets and copies its elements into its own,
        // disjoint, ranges of the two new arrays (no descriptor of them exists yet, so
        // nobody else can touch them).
        let (first, mut offs) = offsets.as_mut_slice().split_at_mut(1);
        first[0] = 0;
        // As bytes: a `Pod` type need not be `Send`, bytes are.
        let size = std::mem::size_of::<T>();
        let mut vals: &mut [u8] = if size == 0 {
            &mut []
        } else {
            bytemuck::cast_slice_mut(values.as_mut_slice())
        };
        let mut jobs = Vec::with_capacity(parts.len());
        for (k, part) in parts.iter().enumerate() {
            let (o, rest_o) = std::mem::take(&mut offs).split_at_mut(part.len());
            offs = rest_o;
            let run_len = (bases[k + 1] - bases[k]) as usize;
            let (v, rest_v) = std::mem::take(&mut vals).split_at_mut(run_len * size);
            vals = rest_v;
            jobs.push((*part, bases[k], run_len, o, v));
        }
        let copied: Vec<bool> = in_threads_mut(jobs, |(part, base, run_len, o, v)| {
            let (mut elems, mut at) = (0usize, 0usize);
            for (slot, s) in o.iter_mut().zip(part.iter()) {
                let item = get(s);
                elems += item.len();
                if size != 0 {
                    let bytes: &[u8] = bytemuck::cast_slice(item);
                    // An `AsRef` that answers differently the second time must not make
                    // us write out of bounds.
                    let Some(dst) = v.get_mut(at..at + bytes.len()) else {
                        return false;
                    };
                    dst.copy_from_slice(bytes);
                    at += bytes.len();
                }
                *slot = base + elems as u64;
            }
            elems == run_len && at == v.len()
        });
        if copied.iter().any(|ok| !ok) {
            return Err(Error::config(
                "columnar items: an item's `as_ref` gave another slice the second time",
            ));
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

/// Inputs of at least this many items are staged by several threads.
const PARALLEL_ITEMS: usize = 1 << 16;
/// At most this many staging threads.
const MAX_STAGING_THREADS: usize = 8;

/// How many threads stage `n` items: one below [`PARALLEL_ITEMS`], else as many as
/// this process may run at once (`std::thread::available_parallelism`), at most
/// [`MAX_STAGING_THREADS`] and at least [`PARALLEL_ITEMS`] / 2 items each. Only the
/// speed depends on it: the value built is the same.
fn staging_threads(n: usize) -> usize {
    if n < PARALLEL_ITEMS {
        return 1;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    cpus.min(MAX_STAGING_THREADS)
        .min(n / (PARALLEL_ITEMS / 2))
        .max(1)
}

/// `f` of each of `parts`, the first here and the others on scoped threads.
fn in_threads<P: Sync, R: Send>(parts: &[P], f: impl Fn(&P) -> R + Sync) -> Vec<R> {
    match parts {
        [] => Vec::new(),
        [one] => vec![f(one)],
        [first, rest @ ..] => std::thread::scope(|sc| {
            let others: Vec<_> = rest.iter().map(|p| sc.spawn(|| f(p))).collect();
            let mut out = vec![f(first)];
            out.extend(others.into_iter().map(|h| match h.join() {
                Ok(r) => r,
                Err(payload) => std::panic::resume_unwind(payload),
            }));
            out
        }),
    }
}

/// `f` of each of `jobs` (taken by value), the first here and the others on scoped
/// threads.
fn in_threads_mut<J: Send, R: Send>(jobs: Vec<J>, f: impl Fn(J) -> R + Sync) -> Vec<R> {
    let mut jobs = jobs.into_iter();
    let Some(first) = jobs.next() else {
        return Vec::new();
    };
    std::thread::scope(|sc| {
        let f = &f;
        let others: Vec<_> = jobs.map(|j| sc.spawn(move || f(j))).collect();
        let mut out = vec![f(first)];
        out.extend(others.into_iter().map(|h| match h.join() {
            Ok(r) => r,
            Err(payload) => std::panic::resume_unwind(payload),
        }));
        out
    })
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
    /// Copies `items` into `pool`: one pass computing the offsets, one copy of the bytes,
    /// on several threads for large inputs (module docs).
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
    pub fn from_slice<S: AsRef<str> + Sync>(pool: &Mempool, items: &[S]) -> Result<Self> {
        let cols = Columns::from_slices(pool, items, |s| s.as_ref().as_bytes())?;
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
    /// Copies `items` into `pool` (on several threads for large inputs, module docs):
    /// one pass computing the offsets, one copy of the
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
    pub fn from_slice<V: AsRef<[T]> + Sync>(pool: &Mempool, items: &[V]) -> Result<Self> {
        let cols = Columns::from_slices(pool, items, |v| v.as_ref())?;
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Items of 0 to 6 elements, some empty, from a fixed seed.
    fn rows(n: usize) -> Vec<Vec<u32>> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (0..(x % 7) as u32).map(|k| k + i as u32).collect()
            })
            .collect()
    }

    #[test]
    fn any_number_of_runs_builds_the_same_value() {
        let pool = Mempool::new(16 << 20).unwrap();
        for n in [0, 1, 2, 5, 64, 1000] {
            let items = rows(n);
            let want: Vec<u64> = std::iter::once(0)
                .chain(items.iter().scan(0u64, |at, r| {
                    *at += r.len() as u64;
                    Some(*at)
                }))
                .collect();
            for runs in [1, 2, 3, 7, 2000] {
                let c =
                    Columns::from_slices_in_runs(&pool, &items, |r| r.as_slice(), runs).unwrap();
                assert_eq!(c.offsets.as_slice(), &want[..], "{n} items in {runs} runs");
                assert_eq!(
                    c.values.as_slice(),
                    &items.concat()[..],
                    "{n} items in {runs} runs"
                );
                assert_eq!(c.len(), n);
            }
        }
    }

    #[test]
    fn zero_sized_elements_keep_their_offsets() {
        let pool = Mempool::new(4 << 20).unwrap();
        let items: Vec<Vec<()>> = (0..100).map(|i| vec![(); i % 4]).collect();
        for runs in [1, 3] {
            let c = Columns::from_slices_in_runs(&pool, &items, |r| r.as_slice(), runs).unwrap();
            assert_eq!(c.values_len(), items.iter().map(Vec::len).sum::<usize>());
            assert_eq!(c.get(7).map(<[()]>::len), Some(3));
        }
    }

    /// Answers a longer slice from its second call on.
    struct Shifty {
        calls: AtomicU32,
        bytes: [u8; 8],
    }

    fn shifty(s: &Shifty) -> &[u8] {
        // Relaxed: a counter of one item's calls, read by the thread that makes them.
        if s.calls.fetch_add(1, Ordering::Relaxed) == 0 {
            &s.bytes[..2]
        } else {
            &s.bytes[..]
        }
    }

    #[test]
    fn an_item_that_changes_between_the_passes_is_an_error_not_an_overrun() {
        let pool = Mempool::new(4 << 20).unwrap();
        let items: Vec<Shifty> = (0..10)
            .map(|_| Shifty {
                calls: AtomicU32::new(0),
                bytes: *b"abcdefgh",
            })
            .collect();
        for runs in [1, 2] {
            for s in &items {
                s.calls.store(0, Ordering::Relaxed);
            }
            match Columns::from_slices_in_runs(&pool, &items, shifty, runs) {
                Err(Error::InvalidConfig { .. }) => {}
                other => panic!("expected a config error, got {:?}", other.map(|c| c.len())),
            }
        }
    }
}
