//! `par_chunks`: read-only chunks of a shared array, one value back per chunk, in order
//! (rayon's `arr.par_chunks(n).map(f).collect()`).
//!
//! Each worker claims runs of chunk indices and reads only those chunks, in place: the
//! caller holds a shared borrow of the array until the job has ended, so no process
//! writes it meanwhile. Every claimed run of chunks leaves the `Vec` of its results,
//! which the caller concatenates in chunk order.

use std::marker::PhantomData;
use std::ops::Range;

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::array::{ArrayDesc, SharedArray};
use crate::kind::{JobKind, WorkerCx};
use crate::ops::Resolved;
use crate::pool::{JobHandle, Pool};
use crate::task::{assert_stateless, conjure, TaskFn};
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
    type Local = (Resolved<T>, F);
    type Partial = Vec<R>;
    const ORDERED: bool = true;

    fn init(args: &Self::Args, _: &WorkerCx) -> Result<Self::Local> {
        // SAFETY: the caller borrows the array until the job has ended.
        unsafe { Ok((Resolved::new(&args.0)?, conjure::<F>())) }
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
                f(state, start, unsafe { arr.slice(start..end) })
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
