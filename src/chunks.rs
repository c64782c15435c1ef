//! Chunks of shared arrays beyond `par_chunks_mut`: `par_chunks`, read-only chunks with
//! one value back per chunk, in order (rayon's `arr.par_chunks(n).map(f).collect()`),
//! and `par_chunks_mut_reading`, chunks of one array written from the whole of another
//! (a stencil: rayon's `next.par_chunks_mut(w).for_each(|row| step(&cur, row))`).
//!
//! Each worker claims runs of chunk indices and touches only those chunks of the array
//! it writes, in place. An array that is only read is borrowed shared by the caller until
//! the job has ended, so no process writes it meanwhile, and every worker may view all
//! of it; the written array is borrowed `&mut`, so it is another array. Every claimed run
//! of `par_chunks` leaves the `Vec` of its results, which the caller concatenates in
//! chunk order.

use std::marker::PhantomData;
use std::ops::Range;

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::array::{ArrayDesc, SharedArray};
use crate::kind::{JobKind, WorkerCx};
use crate::pool::{JobHandle, Pool};
use crate::task::{assert_stateless, conjure, TaskFn};
use crate::view::{ArrayView, ArrayViewMut};
use crate::{Error, Result};

/// `f(&state, offset, &arr[offset..offset + chunk])` for every chunk, results in order.
pub(crate) struct Chunks<T, A, F, R>(PhantomData<fn(T, A, F) -> R>);

impl<T, A, F, R> JobKind for Chunks<T, A, F, R>
where
    T: Pod,
    A: Serialize + DeserializeOwned + 'static,
    F: Fn(&A, usize, &[T]) -> R + TaskFn,
    R: Serialize + DeserializeOwned + 'static,
{
    /// The array, the chunk length, the state.
    type Args = (ArrayDesc<T>, u64, A);
    type Local = (ArrayView<T>, F);
    type Partial = Vec<R>;
    const ORDERED: bool = true;

    fn init(args: &Self::Args, cx: &WorkerCx) -> Result<Self::Local> {
        // SAFETY: the caller borrows the array until the job has ended.
        unsafe { Ok((ArrayView::resolve(&args.0, &cx.mempool)?, conjure::<F>())) }
    }

    fn run(
        (_, chunk, state): &Self::Args,
        (arr, f): &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<Vec<R>>, bool) {
        let chunk = *chunk as usize;
        let out = range
            .map(|c| {
                let start = c * chunk;
                let end = (start + chunk).min(arr.len());
                // SAFETY: nobody writes the array while the caller borrows it for the job.
                f(state, start, unsafe { arr.chunk(start..end) })
            })
            .collect();
        (Some(out), false)
    }
}

impl Pool {
    /// Calls `f(offset, chunk)` in the workers on consecutive read-only chunks of
    /// `chunk_len` elements of `arr` (the last may be shorter) and returns the results in
    /// chunk order (rayon's `arr.par_chunks(n).map(..).collect()`). The chunks are read
    /// in place, never copied.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let x = pool.array_from_fn(10, |i| i as u64)?;
    /// let sums = pool.par_chunks(&x, 4, |_offset: usize, c: &[u64]| c.iter().sum::<u64>())?;
    /// assert_eq!(sums, [6, 22, 17]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `chunk_len` is 0; [`Error::InvalidDescriptor`] if
    /// `arr` belongs to another pool; task failures as [`par_map`](Pool::par_map).
    pub fn par_chunks<T, F, R>(
        &self,
        arr: &SharedArray<T>,
        chunk_len: usize,
        f: F,
    ) -> Result<Vec<R>>
    where
        T: Pod,
        F: Fn(usize, &[T]) -> R + TaskFn,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_stateless::<F>();
        // Captures only `f`, which is zero-sized: so is the closure.
        self.par_chunks_with(arr, chunk_len, (), move |_: &(), o: usize, c: &[T]| f(o, c))
    }

    /// [`par_chunks`](Pool::par_chunks) with a state: `f(&state, offset, chunk)`, where
    /// `state` is any serde value, sent once with the job.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let x = pool.array_from_fn(1000, |i| i as u32)?;
    /// let over = pool.par_chunks_with(&x, 100, 950u32, |limit: &u32, _: usize, c: &[u32]| {
    ///     c.iter().filter(|&&v| v >= *limit).count()
    /// })?;
    /// assert_eq!(over.iter().sum::<usize>(), 50);
    /// assert_eq!(over.len(), 10);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`par_chunks`](Pool::par_chunks); [`Error::OutOfMemory`] if the state does not
    /// fit in the mempool.
    pub fn par_chunks_with<T, A, F, R>(
        &self,
        arr: &SharedArray<T>,
        chunk_len: usize,
        state: A,
        _f: F,
    ) -> Result<Vec<R>>
    where
        T: Pod,
        A: Serialize + DeserializeOwned + 'static,
        F: Fn(&A, usize, &[T]) -> R + TaskFn,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_stateless::<F>();
        if chunk_len == 0 {
            return Err(Error::config("par_chunks: chunk length 0; use at least 1"));
        }
        self.check_array(arr)?;
        let chunks = arr.len().div_ceil(chunk_len);
        let chunking = crate::pool::Chunking {
            min_len: 1,
            max_len: self.inner().default_chunking().max_len,
        };
        let sub = self.submit::<Chunks<T, A, F, R>>(
            &(arr.desc(), chunk_len as u64, state),
            chunks,
            chunking,
        )?;
        JobHandle::new(
            sub,
            Box::new(move |sub| {
                let mut out = Vec::with_capacity(chunks);
                for (_, mut part) in sub.partials::<Vec<R>>()? {
                    out.append(&mut part);
                }
                if out.len() != chunks {
                    return Err(Error::Malformed {
                        reason: format!("{} results for {chunks} chunks", out.len()),
                    });
                }
                Ok(out)
            }),
        )
        .wait()
    }
}

/// `f(&src, offset, &mut dst[offset..offset + chunk])` for every chunk of `dst`.
pub(crate) struct ChunksMutReading<S, T, F>(PhantomData<fn(S, T, F)>);

impl<S: Pod, T: Pod, F: Fn(&[S], usize, &mut [T]) + TaskFn> JobKind for ChunksMutReading<S, T, F> {
    /// The array read whole, the array written by chunks, the chunk length.
    type Args = (ArrayDesc<S>, ArrayDesc<T>, u64);
    type Local = (ArrayView<S>, ArrayViewMut<T>, F);
    type Partial = ();
    const ORDERED: bool = false;

    fn init(args: &Self::Args, cx: &WorkerCx) -> Result<Self::Local> {
        // SAFETY: the caller borrows `src` by `&` and `dst` by `&mut` until the job has
        // ended.
        unsafe {
            Ok((
                ArrayView::resolve(&args.0, &cx.mempool)?,
                ArrayViewMut::resolve(&args.1, &cx.mempool)?,
                conjure::<F>(),
            ))
        }
    }

    fn run(
        (_, _, chunk): &Self::Args,
        (src, dst, f): &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<()>, bool) {
        let chunk = *chunk as usize;
        // SAFETY: `src` is borrowed shared by the caller for the job: nobody writes it.
        let all = unsafe { src.chunk(0..src.len()) };
        for c in range {
            let start = c * chunk;
            let end = (start + chunk).min(dst.len());
            // SAFETY: chunk `c` of `dst` is handed to this worker alone; `dst` is
            // borrowed `&mut` by the caller, so it is not `src`.
            f(all, start, unsafe { dst.chunk_mut(start..end) });
        }
        (None, false)
    }
}

impl Pool {
    /// Runs `f(src, offset, chunk)` in the workers on consecutive chunks of `chunk_len`
    /// elements of `dst` (the last may be shorter), each task seeing the whole of `src`
    /// read-only: a stencil step from one shared array into another, with no copy and no
    /// `unsafe` (rayon's `next.par_chunks_mut(w).enumerate().for_each(|(y, row)| ..&cur..)`,
    /// where the closure would capture `cur`).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let cur = pool.array_from_fn(8, |i| i as u32)?;
    /// let mut next = pool.array_zeroed::<u32>(8)?;
    /// // Each cell becomes the sum of itself and its neighbours (0 past the ends).
    /// pool.par_chunks_mut_reading(&cur, &mut next, 3, |cur: &[u32], off: usize, out: &mut [u32]| {
    ///     for (k, o) in out.iter_mut().enumerate() {
    ///         let i = off + k;
    ///         *o = cur[i] + cur.get(i + 1).unwrap_or(&0) + if i > 0 { cur[i - 1] } else { 0 };
    ///     }
    /// })?;
    /// assert_eq!(next.to_vec(), [1, 3, 6, 9, 12, 15, 18, 13]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `chunk_len` is 0; [`Error::InvalidDescriptor`] if an
    /// array belongs to another pool; task failures as [`par_map`](Pool::par_map).
    pub fn par_chunks_mut_reading<S, T, F>(
        &self,
        src: &SharedArray<S>,
        dst: &mut SharedArray<T>,
        chunk_len: usize,
        _f: F,
    ) -> Result<()>
    where
        S: Pod,
        T: Pod,
        F: Fn(&[S], usize, &mut [T]) + TaskFn,
    {
        assert_stateless::<F>();
        if chunk_len == 0 {
            return Err(Error::config(
                "par_chunks_mut_reading: chunk length 0; use at least 1",
            ));
        }
        self.check_array(src)?;
        self.check_array(dst)?;
        let chunks = dst.len().div_ceil(chunk_len);
        let chunking = crate::pool::Chunking {
            min_len: 1,
            max_len: self.inner().default_chunking().max_len,
        };
        let sub = self.submit::<ChunksMutReading<S, T, F>>(
            &(src.desc(), dst.desc(), chunk_len as u64),
            chunks,
            chunking,
        )?;
        JobHandle::new(sub, Box::new(|_| Ok(()))).wait()
    }
}
