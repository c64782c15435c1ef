//! [`SharedStrings`] and [`SharedVecs`] as sources of parallel iterators:
//! `pool.par_iter_strs(&s)` yields `&str`, `pool.par_iter_vecs(&v)` yields `&[T]`, both
//! straight out of the mempool (no copy, no decoding), with every adapter of [`ParIter`].
//!
//! A worker resolves the two descriptors once per job into raw pointers and, per item,
//! reads two offsets and forms a slice of the values. The items' type says `'static`
//! because a source's item type carries no lifetime ([`Source`] is `'static`); they are
//! valid until the job ends, which is before the terminal operation returns and so before
//! the borrowed value can be dropped. A task must not keep an item beyond its call (in a
//! `static` or a thread-local): copy what it needs (`to_owned`), as the `map` to `String`
//! before a `collect_vec` does. The one accumulator that may hold items across calls is
//! the worker-local one of `fold_finish_reduce_unordered`, finished (and so done with
//! them) before the job ends.

use std::marker::PhantomData;
use std::ops::{ControlFlow, Range};

use bytemuck::Pod;

use super::source::Source;
use super::stage::Id;
use super::{IntoParIterOn, ParIter};
use crate::array::ArrayDesc;
use crate::columnar::{SharedStrings, SharedVecs};
use crate::mempool::Mempool;
use crate::pool::Pool;
use crate::{Error, Result};

/// A worker's view of a columnar value: where its offsets and values are.
#[doc(hidden)]
pub struct ColumnsView<T> {
    offsets: *const u64,
    /// Items (`offsets` holds one more).
    len: usize,
    values: *const T,
    values_len: usize,
}

impl<T: Pod> ColumnsView<T> {
    /// Resolves the descriptors against `pool`, this worker's handle of the job's mempool.
    pub(super) fn resolve(
        (offsets, values): &(ArrayDesc<u64>, ArrayDesc<T>),
        pool: &Mempool,
    ) -> Result<Self> {
        if offsets.is_empty() {
            return Err(Error::descriptor(
                "a columnar value has at least one offset",
            ));
        }
        Ok(ColumnsView {
            offsets: offsets.base_ptr_in(pool)?.as_ptr(),
            len: offsets.len() - 1,
            values: values.base_ptr_in(pool)?.as_ptr(),
            values_len: values.len(),
        })
    }

    /// Item `i`, for `i < len`.
    ///
    /// # Safety
    /// The value the view was resolved from is alive and immutable for `'a`.
    unsafe fn item<'a>(&self, i: usize) -> &'a [T] {
        assert!(i < self.len, "columnar item {i} of {}", self.len);
        // SAFETY: `i + 1 <= len` offsets follow `self.offsets` in a live array (caller's
        // contract); nobody writes them (`columnar`'s module docs), and reading a `u64`
        // needs no reference.
        let (a, b) = unsafe {
            (
                self.offsets.add(i).read() as usize,
                self.offsets.add(i + 1).read() as usize,
            )
        };
        // Cannot fail for offsets the builder wrote; a task writing wild pointers into the
        // pool could have changed them (docs/THREAT_MODEL.md): fail its job, do not read
        // out of bounds.
        assert!(
            a <= b && b <= self.values_len,
            "columnar offsets {a}..{b} outside {} values: the shared value was overwritten",
            self.values_len
        );
        // SAFETY: `a..b` lies within the live values array (checked above), whose elements
        // are initialized `T: Pod` and written by no process while the value lives, which
        // covers `'a` (caller's contract).
        unsafe { std::slice::from_raw_parts(self.values.add(a), b - a) }
    }

    /// The values of items `range` together, for `range` within `0..len`.
    ///
    /// # Safety
    /// As [`Self::item`].
    pub(super) unsafe fn span<'a>(&self, range: Range<usize>) -> &'a [T] {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "columnar items {range:?} of {}",
            self.len
        );
        // SAFETY: as in `item`: offsets `start` and `end` are in the live, unwritten
        // offsets array.
        let (a, b) = unsafe {
            (
                self.offsets.add(range.start).read() as usize,
                self.offsets.add(range.end).read() as usize,
            )
        };
        assert!(
            a <= b && b <= self.values_len,
            "columnar offsets {a}..{b} outside {} values: the shared value was overwritten",
            self.values_len
        );
        // SAFETY: as in `item`: `a..b` is within the live values array, unwritten for `'a`.
        unsafe { std::slice::from_raw_parts(self.values.add(a), b - a) }
    }

    /// Feeds items `range` to `f` as slices.
    ///
    /// # Safety
    /// As [`Self::item`], for the whole call.
    unsafe fn feed(
        &self,
        range: Range<usize>,
        mut f: impl FnMut(&'static [T]) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        for i in range {
            // SAFETY: the caller's contract; the item's type says `'static`, but it lives
            // only for the call of `f` (module docs).
            f(unsafe { self.item(i) })?;
        }
        ControlFlow::Continue(())
    }
}

/// The strings of a [`SharedStrings`], as `&str`.
#[doc(hidden)]
pub struct StrSource;

impl Source for StrSource {
    type Item = &'static str;
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
        mut f: impl FnMut(&'static str) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        // SAFETY: the client borrows the `SharedStrings` until the job has ended, and its
        // bytes are immutable (`columnar`'s module docs), so nobody writes them while the
        // items live: for the call of `f` that gets each.
        unsafe {
            view.feed(range, |bytes| {
                // SAFETY: each item's bytes are a copy of one `&str` (built from `&str`s
                // only, offsets at their ends), hence valid UTF-8.
                f(std::str::from_utf8_unchecked(bytes))
            })
        }
    }
}

/// The vectors of a [`SharedVecs`], as `&[T]`.
#[doc(hidden)]
pub struct VecsSource<T>(PhantomData<fn(T)>);

impl<T: Pod> Source for VecsSource<T> {
    type Item = &'static [T];
    type Args = (ArrayDesc<u64>, ArrayDesc<T>);
    type Local = ColumnsView<T>;

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
        f: impl FnMut(&'static [T]) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        // SAFETY: the client borrows the `SharedVecs` until the job has ended, and its
        // elements are immutable (`columnar`'s module docs), so nobody writes them while
        // the items live: for the call of `f` that gets each.
        unsafe { view.feed(range, f) }
    }
}

/// An error if a value of mempool `id` cannot be read by jobs of `pool`.
fn check_pool(pool: &Pool, id: u64) -> Option<Error> {
    let own = pool.mempool().id();
    (id != own).then(|| {
        Error::descriptor(format!(
            "the shared value belongs to mempool {id:#x}, not to this pool's ({own:#x}): build it with this pool"
        ))
    })
}

impl Pool {
    /// Copies `items` into this pool's mempool as a [`SharedStrings`] (one pass for the
    /// offsets, one copy of the bytes).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the mempool cannot hold them.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let s = pool.strings_from_slice(&vec![String::from("x"); 3])?;
    /// assert_eq!(s.total_bytes(), 3);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn strings_from_slice<S: AsRef<str> + Sync>(&self, items: &[S]) -> Result<SharedStrings> {
        SharedStrings::from_slice(self.mempool(), items)
    }

    /// Copies `items` into this pool's mempool as a [`SharedVecs`] (one pass for the
    /// offsets, one copy of the elements).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the mempool cannot hold them.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let v = pool.vecs_from_slice(&[vec![1u32, 2], vec![3]])?;
    /// assert_eq!(v.total_len(), 3);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn vecs_from_slice<T: Pod, V: AsRef<[T]> + Sync>(
        &self,
        items: &[V],
    ) -> Result<SharedVecs<T>> {
        SharedVecs::from_slice(self.mempool(), items)
    }

    /// A parallel iterator over the strings of `strings`, as `&str` viewing the mempool
    /// (no copy). The value is borrowed until the terminal operation returns; an item
    /// lives for the call that gets it (copy it to keep it: `map(str::to_owned)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let s = pool.strings_from_slice(&["a", "bb", "ccc"])?;
    /// let total: usize = pool.par_iter_strs(&s).map(|w: &str| w.len()).sum()?;
    /// assert_eq!(total, 6);
    /// let upper = pool.par_iter_strs(&s).map(|w: &str| w.to_uppercase()).collect_vec()?;
    /// assert_eq!(upper, ["A", "BB", "CCC"]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// A `&str` cannot leave the job: results must own their data.
    ///
    /// ```compile_fail
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let s = pool.strings_from_slice(&["a"])?;
    /// let v: Vec<&str> = pool.par_iter_strs(&s).collect_vec()?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn par_iter_strs<'p>(&'p self, strings: &'p SharedStrings) -> ParIter<'p, StrSource, Id> {
        let error = check_pool(self, strings.pool_id());
        ParIter::new(self, strings.descs(), error)
    }

    /// A parallel iterator over the vectors of `vecs`, as `&[T]` viewing the mempool (no
    /// copy). The value is borrowed until the terminal operation returns; an item lives for
    /// the call that gets it (copy it to keep it: `map(<[T]>::to_vec)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let v = pool.vecs_from_slice(&[vec![1u64, 2], vec![], vec![3, 4, 5]])?;
    /// let longest = pool.par_iter_vecs(&v).map(|r: &[u64]| r.len()).max()?;
    /// assert_eq!(longest, Some(3));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn par_iter_vecs<'p, T: Pod>(
        &'p self,
        vecs: &'p SharedVecs<T>,
    ) -> ParIter<'p, VecsSource<T>, Id> {
        let error = check_pool(self, vecs.pool_id());
        ParIter::new(self, vecs.descs(), error)
    }
}

impl<'p> IntoParIterOn<'p> for &'p SharedStrings {
    type Source = StrSource;
    fn into_par_iter_on(self, pool: &'p Pool) -> ParIter<'p, StrSource, Id> {
        pool.par_iter_strs(self)
    }
}

impl<'p, T: Pod> IntoParIterOn<'p> for &'p SharedVecs<T> {
    type Source = VecsSource<T>;
    fn into_par_iter_on(self, pool: &'p Pool) -> ParIter<'p, VecsSource<T>, Id> {
        pool.par_iter_vecs(self)
    }
}
