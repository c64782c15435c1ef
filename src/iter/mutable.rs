//! `pool.par_iter_mut(&mut arr)`: the elements of a shared array by `&mut`, alone,
//! enumerated, or zipped with an indexed read-only iterator (rayon's
//! `ys.par_iter_mut().zip(xs.par_iter())`), ending in `for_each` / `for_each_with`.
//!
//! Each worker turns the chunk it claimed, and only that chunk, into a `&mut [T]`:
//! chunks are disjoint, and the client holds the array's `&mut` borrow until the job has
//! ended, so no other process reads or writes those elements meanwhile. A zipped right
//! side is read into a buffer for the chunk first, as in [`indexed`](super::indexed).

use std::marker::PhantomData;
use std::ops::{ControlFlow, Range};

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::env::{Env, EnvFn, Plain, With};
use super::indexed::{blocks, fill, Staged};
use super::source::Source;
use super::stage::{OneToOne, Stage};
use super::{Keep, ParIter};
use crate::array::{ArrayDesc, SharedArray};
use crate::kind::{JobKind, WorkerCx};
use crate::mempool::Mempool;
use crate::pool::{Chunking, JobHandle, Pool};
use crate::task::{assert_stateless, TaskFn};
use crate::view::ArrayViewMut;
use crate::{Error, Result};

/// What a `for_each` over `&mut` elements receives per element. Implementation detail of
/// [`ParIterMut`].
#[doc(hidden)]
pub trait MutShape<T: 'static>: 'static {
    /// The read-only side (nothing for the plain and enumerated forms).
    type Right: Source;
    /// The item handed to the closure.
    type Item<'a>;
    /// Builds the item of index `i`.
    fn item(i: usize, x: &mut T, y: <Self::Right as Source>::Item) -> Self::Item<'_>;
}

/// `par_iter_mut(..)`: `&mut T`.
#[doc(hidden)]
pub struct Alone;
/// `par_iter_mut(..).enumerate()`: `(usize, &mut T)`.
#[doc(hidden)]
pub struct Numbered;
/// `par_iter_mut(..).zip(other)`: `(&mut T, other's item)`.
#[doc(hidden)]
pub struct Zipped<R>(PhantomData<fn(R)>);

impl<T: 'static> MutShape<T> for Alone {
    type Right = Nothing;
    type Item<'a> = &'a mut T;
    fn item(_: usize, x: &mut T, (): ()) -> &mut T {
        x
    }
}

impl<T: 'static> MutShape<T> for Numbered {
    type Right = Nothing;
    type Item<'a> = (usize, &'a mut T);
    fn item(i: usize, x: &mut T, (): ()) -> (usize, &mut T) {
        (i, x)
    }
}

impl<T: 'static, R: Source> MutShape<T> for Zipped<R> {
    type Right = R;
    type Item<'a> = (&'a mut T, R::Item);
    fn item(_: usize, x: &mut T, y: R::Item) -> (&mut T, R::Item) {
        (x, y)
    }
}

/// A source of `()` at every index: the right side of the forms that zip nothing.
#[doc(hidden)]
pub struct Nothing;

impl Source for Nothing {
    type Item = ();
    type Args = ();
    type Local = ();
    fn len(_: &()) -> usize {
        usize::MAX
    }
    fn init(_: &(), _: &Mempool) -> Result<()> {
        Ok(())
    }
    #[inline]
    fn feed(
        _: &(),
        _: &mut (),
        range: Range<usize>,
        mut f: impl FnMut(()) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        for _ in range {
            f(())?;
        }
        ControlFlow::Continue(())
    }
    #[inline]
    fn iter<'a>(
        _: &'a (),
        _: &'a mut (),
        range: Range<usize>,
    ) -> Option<impl DoubleEndedIterator<Item = ()> + ExactSizeIterator + 'a> {
        Some(range.map(|_| ()))
    }
}

/// A parallel iterator over the elements of a shared array by `&mut` (rayon's
/// `par_iter_mut`). Built by [`Pool::par_iter_mut`]; ends in `for_each` or
/// `for_each_with`, which block until the job has ended (the array stays borrowed).
#[must_use = "a parallel iterator does nothing until for_each or for_each_with runs it"]
pub struct ParIterMut<'p, T: Pod, Sh: MutShape<T> = Alone> {
    pool: &'p Pool,
    arr: ArrayDesc<T>,
    right: <Sh::Right as Source>::Args,
    chunking: Chunking,
    error: Option<Error>,
    /// Staged inputs of a zipped iterator, kept until the job has ended.
    keep: Keep,
    _borrow: PhantomData<&'p mut SharedArray<T>>,
}

impl Pool {
    /// The elements of `arr` by `&mut`, in the workers (rayon's `par_iter_mut`).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let mut a = pool.array_from_fn(1000, |i| i as u64)?;
    /// pool.par_iter_mut(&mut a).for_each(|x: &mut u64| *x *= 2)?;
    /// assert_eq!(a[999], 1998);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// The array is borrowed mutably until the call returns, so it cannot be read by the
    /// same job at the same time:
    ///
    /// ```compile_fail,E0502
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
    /// let mut a = pool.array_from_fn(10, |i| i as u64)?;
    /// pool.par_iter_mut(&mut a).zip(pool.par_iter(&a)).for_each(|(y, x): (&mut u64, u64)| *y += x)?;
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn par_iter_mut<'p, T: Pod>(&'p self, arr: &'p mut SharedArray<T>) -> ParIterMut<'p, T> {
        ParIterMut {
            pool: self,
            arr: arr.desc(),
            right: (),
            chunking: self.inner().default_chunking(),
            error: self.check_array(arr).err(),
            keep: Keep::new(),
            _borrow: PhantomData,
        }
    }
}

impl<'p, T: Pod> ParIterMut<'p, T, Alone> {
    /// Pairs every element with its index: `(usize, &mut T)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let mut a = pool.array_zeroed::<u32>(100)?;
    /// pool.par_iter_mut(&mut a).enumerate().for_each(|(i, x): (usize, &mut u32)| *x = i as u32 * 3)?;
    /// assert_eq!(a[33], 99);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn enumerate(self) -> ParIterMut<'p, T, Numbered> {
        self.reshape(())
    }

    /// Pairs every element with the item of the same index of `other`, an indexed
    /// read-only iterator on the same pool, as many as the shorter has: rayon's
    /// `ys.par_iter_mut().zip(xs.par_iter())`.
    ///
    /// # Errors
    ///
    /// `for_each` fails with [`Error::InvalidConfig`] if `other` runs on another pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let xs = pool.array_from_fn(1000, |i| i as f64)?;
    /// let mut ys = pool.array_from_fn(1000, |_| 1.0f64)?;
    /// // y = a * x + y
    /// pool.par_iter_mut(&mut ys)
    ///     .zip(pool.par_iter(&xs))
    ///     .for_each_with(2.0f64, |a: &f64, (y, x): (&mut f64, f64)| *y += a * x)?;
    /// assert_eq!(ys[10], 21.0);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn zip<S, St>(self, other: ParIter<'p, S, St>) -> ParIterMut<'p, T, Zipped<Staged<S, St>>>
    where
        S: Source,
        St: Stage<S::Item> + OneToOne,
    {
        let (pool, right, error, keep) = other.into_parts();
        let mut it = self.reshape(right);
        it.keep = keep;
        if it.error.is_none() {
            it.error = error;
        }
        if it.error.is_none() && it.pool.mempool().id() != pool.mempool().id() {
            it.error = Some(Error::config(
                "par_iter_mut(..).zip(..) of iterators on two different pools: build both on one pool",
            ));
        }
        it
    }

    fn reshape<Sh: MutShape<T>>(self, right: <Sh::Right as Source>::Args) -> ParIterMut<'p, T, Sh> {
        ParIterMut {
            pool: self.pool,
            arr: self.arr,
            right,
            chunking: self.chunking,
            error: self.error,
            keep: self.keep,
            _borrow: PhantomData,
        }
    }
}

impl<'p, T: Pod, Sh: MutShape<T>> ParIterMut<'p, T, Sh> {
    /// Chunks hold at least `n` elements (fewer only at the very end).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let mut a = pool.array_zeroed::<u8>(10)?;
    /// pool.par_iter_mut(&mut a).with_min_len(5).for_each(|x: &mut u8| *x = 1)?;
    /// assert_eq!(a.iter().map(|&x| x as u32).sum::<u32>(), 10);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn with_min_len(mut self, n: usize) -> Self {
        self.chunking.min_len = n;
        self.chunking.max_len = self.chunking.max_len.max(n);
        self
    }

    /// Chunks hold at most `n` elements.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let mut a = pool.array_zeroed::<u8>(10)?;
    /// pool.par_iter_mut(&mut a).with_max_len(1).for_each(|x: &mut u8| *x = 1)?;
    /// assert_eq!(a.iter().map(|&x| x as u32).sum::<u32>(), 10);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn with_max_len(mut self, n: usize) -> Self {
        self.chunking.max_len = n;
        self.chunking.min_len = self.chunking.min_len.min(n.max(1));
        self
    }

    /// Runs `F` (of environment `E`, state `state`) on every item and waits.
    fn run<E: Env, F>(self, state: E::State) -> Result<()>
    where
        F: for<'a> EnvFn<E, Sh::Item<'a>, ()>,
    {
        assert_stateless::<F>();
        if let Some(e) = self.error {
            return Err(e);
        }
        let n = self.arr.len().min(Sh::Right::len(&self.right));
        let args = (self.arr, self.right, state);
        let sub = self
            .pool
            .submit::<ForEachMut<T, Sh, E, F>>(&args, n, self.chunking)?;
        let keep = self.keep;
        // The closure runs once the job has ended: its staged inputs may go then.
        JobHandle::new(
            sub,
            Box::new(move |_| {
                drop(keep);
                Ok(())
            }),
        )
        .wait()
    }
}

impl<'p, T: Pod> ParIterMut<'p, T, Alone> {
    /// Calls `f(&mut x)` on every element, in the workers.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let mut a = pool.array_from_slice(&[1.0f32, 4.0, 9.0])?;
    /// pool.par_iter_mut(&mut a).for_each(|x: &mut f32| *x = x.sqrt())?;
    /// assert_eq!(a.to_vec(), [1.0, 2.0, 3.0]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn for_each<F: Fn(&mut T) + TaskFn>(self, _f: F) -> Result<()> {
        self.run::<Plain, F>(())
    }

    /// Calls `f(&state, &mut x)` on every element; `state` travels once per worker.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let mut a = pool.array_from_slice(&[1u32, 2, 3])?;
    /// pool.par_iter_mut(&mut a).for_each_with(10u32, |k: &u32, x: &mut u32| *x += k)?;
    /// assert_eq!(a.to_vec(), [11, 12, 13]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn for_each_with<C, F>(self, state: C, _f: F) -> Result<()>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, &mut T) + TaskFn,
    {
        self.run::<With<C>, F>(state)
    }
}

impl<'p, T: Pod> ParIterMut<'p, T, Numbered> {
    /// Calls `f((i, &mut x))` on every element.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let mut a = pool.array_zeroed::<u64>(5)?;
    /// pool.par_iter_mut(&mut a).enumerate().for_each(|(i, x): (usize, &mut u64)| *x = 1 << i)?;
    /// assert_eq!(a.to_vec(), [1, 2, 4, 8, 16]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn for_each<F: Fn((usize, &mut T)) + TaskFn>(self, _f: F) -> Result<()> {
        self.run::<Plain, F>(())
    }

    /// Calls `f(&state, (i, &mut x))` on every element.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let mut a = pool.array_zeroed::<u64>(3)?;
    /// pool.par_iter_mut(&mut a).enumerate().for_each_with(7u64, |k: &u64, (i, x): (usize, &mut u64)| *x = k * i as u64)?;
    /// assert_eq!(a.to_vec(), [0, 7, 14]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn for_each_with<C, F>(self, state: C, _f: F) -> Result<()>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, (usize, &mut T)) + TaskFn,
    {
        self.run::<With<C>, F>(state)
    }
}

impl<'p, T: Pod, R: Source> ParIterMut<'p, T, Zipped<R>> {
    /// Calls `f((&mut y, x))` on every pair.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let xs = pool.array_from_slice(&[1u32, 2, 3])?;
    /// let mut ys = pool.array_from_slice(&[10u32, 20, 30, 40])?;
    /// pool.par_iter_mut(&mut ys).zip(pool.par_iter(&xs)).for_each(|(y, x): (&mut u32, u32)| *y -= x)?;
    /// assert_eq!(ys.to_vec(), [9, 18, 27, 40]); // as long as the shorter side
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn for_each<F: Fn((&mut T, R::Item)) + TaskFn>(self, _f: F) -> Result<()> {
        self.run::<Plain, F>(())
    }

    /// Calls `f(&state, (&mut y, x))` on every pair.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let mut ys = pool.array_zeroed::<u64>(4)?;
    /// pool.par_iter_mut(&mut ys)
    ///     .zip(pool.par_range(0u64..4).map(|i: u64| i * i))
    ///     .for_each_with(3u64, |k: &u64, (y, sq): (&mut u64, u64)| *y = k * sq)?;
    /// assert_eq!(ys.to_vec(), [0, 3, 12, 27]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn for_each_with<C, F>(self, state: C, _f: F) -> Result<()>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, (&mut T, R::Item)) + TaskFn,
    {
        self.run::<With<C>, F>(state)
    }
}

/// The job kind of a `for_each` over `&mut` elements.
pub(crate) struct ForEachMut<T, Sh, E, F>(PhantomData<fn(T, Sh, E, F)>);

impl<T, Sh, E, F> JobKind for ForEachMut<T, Sh, E, F>
where
    T: Pod,
    Sh: MutShape<T>,
    E: Env,
    F: for<'a> EnvFn<E, Sh::Item<'a>, ()>,
{
    /// The array, the read-only side, the closure's state.
    type Args = (ArrayDesc<T>, <Sh::Right as Source>::Args, E::State);
    /// The resolved array, the read-only side, the closure's environment, and the
    /// buffer of the read-only items of the current chunk.
    type Local = (
        ArrayViewMut<T>,
        <Sh::Right as Source>::Local,
        E::Local,
        Vec<<Sh::Right as Source>::Item>,
    );
    type Partial = ();
    const ORDERED: bool = false;

    fn init(args: &Self::Args, cx: &WorkerCx) -> Result<Self::Local> {
        // SAFETY: the client holds the array's `&mut` borrow until the job has ended.
        let arr = unsafe { ArrayViewMut::resolve(&args.0, &cx.mempool) }?;
        Ok((
            arr,
            Sh::Right::init(&args.1, &cx.mempool)?,
            E::init(&args.2)?,
            Vec::new(),
        ))
    }

    fn run(
        args: &Self::Args,
        (arr, right, env, buf): &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<()>, bool) {
        let start = range.start;
        if let Some(ys) = Sh::Right::iter(&args.1, right, range.clone()) {
            // One loop, each read-only item read beside its element, as `Zip` does.
            // SAFETY: chunk `range` is handed to this worker only (chunks are disjoint),
            // and nobody else reads the array while the client holds its `&mut` borrow.
            let dst = unsafe { arr.chunk_mut(range) };
            for (k, (x, y)) in dst.iter_mut().zip(ys).enumerate() {
                F::call(&args.2, env, Sh::item(start + k, x, y));
            }
            return (None, false);
        }
        // Else a block at a time, as `Zip` (the right-hand items wait in an L1-sized
        // buffer).
        for block in blocks(range) {
            fill::<Sh::Right>(&args.1, right, block.clone(), buf);
            let start = block.start;
            // SAFETY: chunk `range` (which holds `block`) is handed to this worker only
            // (chunks are disjoint), and nobody else reads the array while the client
            // holds its `&mut` borrow.
            let dst = unsafe { arr.chunk_mut(block) };
            for (k, (x, y)) in dst.iter_mut().zip(buf.drain(..)).enumerate() {
                F::call(&args.2, env, Sh::item(start + k, x, y));
            }
        }
        (None, false)
    }
}
