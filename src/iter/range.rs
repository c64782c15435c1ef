//! Ranges of every primitive integer type as parallel iterators: `pool.par_range(a..b)`,
//! `(a..b).into_par_iter_on(&pool)` and `(a..=b).into_par_iter_on(&pool)`.

use std::ops::{ControlFlow, Range, RangeInclusive};

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::source::{ArraySource, Detached, Source};
use super::stage::Id;
use super::ParIter;
use crate::array::SharedArray;
use crate::mempool::Mempool;
use crate::pool::Pool;
use crate::staging::{ArrayInput, StagedInput};
use crate::Result;

mod sealed {
    pub trait Sealed {}
}

/// A primitive integer type whose ranges are parallel iterators (`u8` ..= `u64`,
/// `usize`, `i8` ..= `i64`, `isize`).
///
/// # Examples
///
/// ```
/// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let s: i64 = pool.par_range(-5i64..5).sum()?;
/// assert_eq!(s, -5);
/// let bytes = pool.par_range(250u8..255).collect_vec()?;
/// assert_eq!(bytes, [250, 251, 252, 253, 254]);
/// # Ok::<(), procyon::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` ranges are not parallel iterators in procyon",
    label = "a range of `{Self}`",
    note = "ranges of u8, u16, u32, u64, usize, i8, i16, i32, i64 and isize are; for other items put them in a SharedArray (`pool.array_from_slice`) or use `pool.par_map_vec`"
)]
pub trait RangeInt:
    Copy + Serialize + DeserializeOwned + Send + Sync + 'static + sealed::Sealed
{
    /// The number of integers in `range` (0 if it is empty).
    #[doc(hidden)]
    fn span(range: &Range<Self>) -> u64;
    /// `start + i`, for `i` below the span of a range starting at `start`.
    #[doc(hidden)]
    fn nth(start: Self, i: u64) -> Self;
}

macro_rules! range_int {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl RangeInt for $t {
            #[inline]
            fn span(range: &Range<$t>) -> u64 {
                // Every supported type fits in i128, and so does every difference.
                (range.end as i128 - range.start as i128).max(0) as u64
            }
            #[inline]
            fn nth(start: $t, i: u64) -> $t {
                (start as i128 + i as i128) as $t
            }
        }
    )*};
}
range_int!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

/// The integers of a range.
#[doc(hidden)]
pub struct RangeSource<I>(std::marker::PhantomData<fn(I)>);
impl<I: RangeInt> Detached for RangeSource<I> {}

/// `start` and length of a range.
#[doc(hidden)]
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct RangeArgs<I> {
    start: I,
    len: u64,
}

impl<I: RangeInt> RangeArgs<I> {
    pub(crate) fn new(r: Range<I>) -> Self {
        RangeArgs {
            start: r.start,
            len: I::span(&r),
        }
    }
}

impl<I: RangeInt> Source for RangeSource<I> {
    type Item = I;
    type Args = RangeArgs<I>;
    type Local = ();

    fn len(args: &Self::Args) -> usize {
        // A range longer than the address space could not be chunked anyway.
        usize::try_from(args.len).unwrap_or(usize::MAX)
    }

    fn init(_: &Self::Args, _: &Mempool) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn feed(
        args: &Self::Args,
        _: &mut (),
        range: Range<usize>,
        mut f: impl FnMut(I) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        for i in range {
            f(I::nth(args.start, i as u64))?;
        }
        ControlFlow::Continue(())
    }

    #[inline]
    fn iter<'a>(
        args: &'a Self::Args,
        _: &'a mut (),
        range: Range<usize>,
    ) -> Option<impl DoubleEndedIterator<Item = I> + ExactSizeIterator + 'a> {
        let start = args.start;
        Some(range.map(move |i| I::nth(start, i as u64)))
    }
}

impl Pool {
    /// A parallel iterator over the elements of `data` (by value): a [`SharedArray`],
    /// read in place, or a slice, `Vec` or array of plain data, copied once into the
    /// mempool for the job (one `memcpy`; see [`ArrayInput`]).
    ///
    /// The data is borrowed until the terminal operation returns. A problem with it (an
    /// array of another pool, no room for the copy) is the terminal operation's error.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let a = pool.array_from_fn(100, |i| i as u32)?;
    /// assert_eq!(pool.par_iter(&a).map(|x: u32| x * 2).sum::<u32>()?, 9900);
    ///
    /// // Data the program already has: staged, then read in the workers.
    /// let v: Vec<u32> = (0..100).collect();
    /// assert_eq!(pool.par_iter(&v).map(|x: u32| x * 2).sum::<u32>()?, 9900);
    /// assert_eq!(pool.par_iter(&v[..10]).max()?, Some(9));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn par_iter<'p, A: ArrayInput + ?Sized>(
        &'p self,
        data: &'p A,
    ) -> ParIter<'p, ArraySource<A::Elem>, Id> {
        match data.stage(self) {
            Ok(StagedInput::InPlace(arr)) => {
                let error = self.check_array(arr).err();
                ParIter::new(self, arr.desc(), error)
            }
            Ok(StagedInput::Copied(arr)) => {
                let mut it = ParIter::new(self, arr.desc(), None);
                it.opts_mut().keep.extend(arr.into_block());
                it
            }
            // Reported by the terminal operation, as every problem found while building.
            Err(e) => ParIter::new(self, SharedArray::empty(self.mempool()).desc(), Some(e)),
        }
    }

    /// A parallel iterator over the integers of `range`, of any primitive integer type
    /// ([`RangeInt`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let squares: u64 = pool.par_range(0u64..1000).map(|i: u64| i * i).sum()?;
    /// assert_eq!(squares, (0u64..1000).map(|i| i * i).sum());
    /// assert_eq!(pool.par_range(-3i32..3).collect_vec()?, [-3, -2, -1, 0, 1, 2]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn par_range<I: RangeInt>(&self, range: Range<I>) -> ParIter<'_, RangeSource<I>, Id> {
        ParIter::new(self, RangeArgs::new(range), None)
    }
}

/// Turns a range, a shared array, a [`SharedStrings`](crate::SharedStrings) or a
/// [`SharedVecs`](crate::SharedVecs) into a parallel iterator on a given pool: rayon's
/// `into_par_iter()`, with the pool named.
///
/// # Examples
///
/// ```
/// use procyon::IntoParIterOn;
/// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let evens = (0u32..100).into_par_iter_on(&pool).filter(|x: &u32| x % 2 == 0).count()?;
/// assert_eq!(evens, 50);
/// assert_eq!((250u8..=255).into_par_iter_on(&pool).count()?, 6);
/// let a = pool.array_from_slice(&[1.5f64, 2.5])?;
/// assert_eq!((&a).into_par_iter_on(&pool).sum::<f64>()?, 4.0);
/// # Ok::<(), procyon::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be turned into a procyon parallel iterator",
    note = "ranges of primitive integers, `&SharedArray<T>`, `&SharedStrings` and `&SharedVecs<T>` can; put other data in a SharedArray (`pool.array_from_slice`), strings in a SharedStrings (`pool.strings_from_slice`), or use `pool.par_iter_vec` for serde values"
)]
pub trait IntoParIterOn<'p> {
    /// Where the items come from.
    #[doc(hidden)]
    type Source: Source;
    /// The parallel iterator over `self`, running on `pool`.
    fn into_par_iter_on(self, pool: &'p Pool) -> ParIter<'p, Self::Source, Id>;
}

impl<'p, I: RangeInt> IntoParIterOn<'p> for Range<I> {
    type Source = RangeSource<I>;
    fn into_par_iter_on(self, pool: &'p Pool) -> ParIter<'p, RangeSource<I>, Id> {
        pool.par_range(self)
    }
}

impl<'p, I: RangeInt> IntoParIterOn<'p> for RangeInclusive<I> {
    type Source = RangeSource<I>;
    /// # Errors
    ///
    /// The terminal operation fails with [`Error::InvalidConfig`](crate::Error::InvalidConfig)
    /// for a range of more than `u64::MAX` integers (`0..=u64::MAX`).
    fn into_par_iter_on(self, pool: &'p Pool) -> ParIter<'p, RangeSource<I>, Id> {
        let (start, end) = self.into_inner();
        let (args, error) = match I::span(&(end..start)) {
            // `start > end`: empty.
            s if s > 0 => (RangeArgs { start, len: 0 }, None),
            _ => match I::span(&(start..end)).checked_add(1) {
                Some(len) => (RangeArgs { start, len }, None),
                None => (
                    RangeArgs { start, len: 0 },
                    Some(crate::Error::config(
                        "an inclusive range of more than u64::MAX integers cannot be a job",
                    )),
                ),
            },
        };
        ParIter::new(pool, args, error)
    }
}

impl<'p, T: Pod> IntoParIterOn<'p> for &'p SharedArray<T> {
    type Source = ArraySource<T>;
    fn into_par_iter_on(self, pool: &'p Pool) -> ParIter<'p, ArraySource<T>, Id> {
        pool.par_iter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_steps_at_the_extremes() {
        assert_eq!(u64::span(&(0..u64::MAX)), u64::MAX);
        assert_eq!(i64::span(&(i64::MIN..i64::MAX)), u64::MAX);
        assert_eq!(i8::span(&(-128..127)), 255);
        let (hi, lo) = (200u8, 100u8);
        assert_eq!(u8::span(&(hi..lo)), 0);
        assert_eq!(i32::span(&(5..5)), 0);
        assert_eq!(i64::nth(i64::MIN, u64::MAX), i64::MAX);
        assert_eq!(u64::nth(u64::MAX - 1, 1), u64::MAX);
        assert_eq!(i8::nth(-128, 255), 127);
    }

    #[test]
    fn a_range_source_feeds_its_integers() {
        let args = RangeArgs::new(-3i16..4);
        assert_eq!(RangeSource::<i16>::len(&args), 7);
        let mut got = Vec::new();
        let _ = RangeSource::<i16>::feed(&args, &mut (), 2..5, |x| {
            got.push(x);
            ControlFlow::Continue(())
        });
        assert_eq!(got, [-1, 0, 1]);
    }
}
