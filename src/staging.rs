//! Ordinary Rust data in: what `par_iter` and `par_map` take ([`ArrayInput`]).
//!
//! The workers read their input in the mempool, the one region mapped in every process.
//! A [`SharedArray`] already lives there and is read in place. A slice, `Vec` or array
//! of plain data that the program already has lives in its private heap, which the
//! workers cannot see: it is **staged**, copied once into a new shared array (one
//! `memcpy`, at memory speed), which lives as long as the iterator or the call that
//! staged it and is freed after it. Build the data in a `SharedArray` from the start
//! ([`Pool::array_from_fn`], [`Pool::array_zeroed`]) to skip that copy, or stage it
//! once yourself ([`Pool::array_from_slice`]) to reuse it in several jobs.
//!
//! Results come back the same way: a `SharedArray` is read in place, and
//! [`SharedArray::to_vec`] is the one copy out when a `Vec` is needed.

use bytemuck::Pod;

use crate::array::SharedArray;
use crate::pool::Pool;
use crate::Result;

/// Data a job can read: a [`SharedArray`] (read in place), or a slice, `Vec` or array of
/// [`Pod`] values (copied once into the pool's mempool for the job; see the module docs).
///
/// # Examples
///
/// ```
/// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
/// let prices: Vec<f64> = (0..10_000).map(|i| i as f64 * 0.5).collect();
///
/// // A Vec the program already has: staged with one copy, then read by the workers.
/// let total: f64 = pool.par_iter(&prices).sum()?;
/// assert_eq!(total, prices.iter().sum::<f64>());
///
/// // The same with a slice of it, and into a new shared array.
/// let taxed = pool.par_map(&prices[..100], |p: f64| p * 1.2)?;
/// assert_eq!(taxed.len(), 100);
/// let back: Vec<f64> = taxed.to_vec(); // the one copy out
/// assert_eq!(back[10], 6.0);
/// # Ok::<(), procyon::Error>(())
/// ```
pub trait ArrayInput {
    /// The element type.
    type Elem: Pod;

    /// The data as a shared array of `pool`: borrowed when it is one, else a staged copy.
    ///
    /// # Errors
    /// [`crate::Error::OutOfMemory`] if the staged copy does not fit in the mempool.
    fn stage<'a>(&'a self, pool: &Pool) -> Result<StagedInput<'a, Self::Elem>>;
}

/// An [`ArrayInput`] as a shared array: borrowed in place, or a copy made for one job.
pub enum StagedInput<'a, T: Pod> {
    /// A shared array, read in place.
    InPlace(&'a SharedArray<T>),
    /// A copy of private data, freed when this value is dropped.
    Copied(SharedArray<T>),
}

impl<T: Pod> StagedInput<'_, T> {
    /// The shared array the workers read.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::ArrayInput;
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let staged = [1u32, 2, 3].stage(&pool)?;
    /// assert_eq!(staged.array().to_vec(), [1, 2, 3]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn array(&self) -> &SharedArray<T> {
        match self {
            StagedInput::InPlace(a) => a,
            StagedInput::Copied(a) => a,
        }
    }

    /// Whether the data was copied into the mempool (it was not a shared array).
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::ArrayInput;
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let shared = pool.array_from_slice(&[1u8, 2])?;
    /// assert!(!shared.stage(&pool)?.is_copy());
    /// assert!(vec![1u8, 2].stage(&pool)?.is_copy());
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn is_copy(&self) -> bool {
        matches!(self, StagedInput::Copied(_))
    }
}

impl<T: Pod> ArrayInput for SharedArray<T> {
    type Elem = T;
    fn stage<'a>(&'a self, _: &Pool) -> Result<StagedInput<'a, T>> {
        Ok(StagedInput::InPlace(self))
    }
}

impl<T: Pod> ArrayInput for [T] {
    type Elem = T;
    fn stage<'a>(&'a self, pool: &Pool) -> Result<StagedInput<'a, T>> {
        Ok(StagedInput::Copied(SharedArray::from_slice(
            pool.mempool(),
            self,
        )?))
    }
}

impl<T: Pod> ArrayInput for Vec<T> {
    type Elem = T;
    fn stage<'a>(&'a self, pool: &Pool) -> Result<StagedInput<'a, T>> {
        self.as_slice().stage(pool)
    }
}

impl<T: Pod, const N: usize> ArrayInput for [T; N] {
    type Elem = T;
    fn stage<'a>(&'a self, pool: &Pool) -> Result<StagedInput<'a, T>> {
        self.as_slice().stage(pool)
    }
}

/// A reference, `Box`, `Rc` or `Arc` of an input is the same input (deref coercion does
/// not apply to generic arguments, so `pool.par_iter(&arc_of_array)` works through these).
macro_rules! forward_input {
    ($($ptr:ty),*) => {$(
        impl<A: ArrayInput + ?Sized> ArrayInput for $ptr {
            type Elem = A::Elem;
            fn stage<'a>(&'a self, pool: &Pool) -> Result<StagedInput<'a, A::Elem>> {
                (**self).stage(pool)
            }
        }
    )*};
}
forward_input!(&A, Box<A>, std::rc::Rc<A>, std::sync::Arc<A>);
