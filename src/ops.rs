//! The direct operations on shared arrays and vectors, as thin `Pool` methods: `par_map`,
//! `par_map_into`, `par_chunks_mut`, `par_map_vec`, `spawn`, `spawn_with`. What each
//! job computes in the workers is its kind in [`crate::kind`].

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::array::SharedArray;
use crate::jobs::run_set::Feed;
use crate::kind::chunks_mut::ChunksMut;
use crate::kind::map_into::MapInto;
use crate::kind::spawn::{SpawnJob, SpawnWithJob};
use crate::pool::{JobHandle, Pool};
use crate::staging::ArrayInput;
use crate::task::{assert_stateless, TaskFn};
use crate::{Error, Result};

impl Pool {
    /// A zeroed shared array of `len` elements in this pool's mempool.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the mempool cannot hold it.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let a = pool.array_zeroed::<u32>(1000)?;
    /// assert_eq!(a.len(), 1000);
    /// assert!(a.iter().all(|&v| v == 0));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn array_zeroed<T: Pod>(&self, len: usize) -> Result<SharedArray<T>> {
        SharedArray::zeroed(self.mempool(), len)
    }

    /// A shared array holding a copy of `data`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the mempool cannot hold it.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let data: Vec<f64> = (0..1000).map(|i| i as f64).collect();
    /// let x = pool.array_from_slice(&data)?; // one copy into the mempool
    /// let y = pool.par_map(&x, |v: f64| v * v)?;
    /// let back: Vec<f64> = y.to_vec(); // and one copy out
    /// assert_eq!(back[30], 900.0);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn array_from_slice<T: Pod>(&self, data: &[T]) -> Result<SharedArray<T>> {
        SharedArray::from_slice(self.mempool(), data)
    }

    /// A shared array with `f(i)` at index `i` (computed in this process).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the mempool cannot hold it.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).build()?;
    /// let squares = pool.array_from_fn(100, |i| (i * i) as u64)?;
    /// assert_eq!(squares[9], 81);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn array_from_fn<T: Pod>(
        &self,
        len: usize,
        f: impl FnMut(usize) -> T,
    ) -> Result<SharedArray<T>> {
        SharedArray::from_fn(self.mempool(), len, f)
    }

    /// Maps `f` over `src` in the workers into a new shared array.
    ///
    /// `src` is a [`SharedArray`], read in place, or a slice, `Vec` or array of plain
    /// data, copied once into the mempool first (see [`ArrayInput`](crate::ArrayInput));
    /// [`SharedArray::to_vec`] is the one copy out when a `Vec` is needed.
    ///
    /// `f` must be a `fn` item or a closure that captures nothing (checked at compile
    /// time); use [`par_iter`](Pool::par_iter)`.map_with` to pass state.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let x = pool.array_from_fn(10_000, |i| i as f64)?;
    /// let y = pool.par_map(&x, |v: f64| 2.0 * v + 1.0)?;
    /// assert_eq!(y[10], 21.0);
    ///
    /// // From a Vec, back to a Vec: one copy in, one copy out.
    /// let v: Vec<u32> = (0..1000).collect();
    /// let squares: Vec<u64> = pool.par_map(&v, |x: u32| u64::from(x) * u64::from(x))?.to_vec();
    /// assert_eq!(squares[999], 998_001);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] for the output (or the staged copy of the input); a task failure
    /// ([`Error::TaskPanicked`], [`Error::WorkerDied`], ...). No partial output is
    /// returned on failure.
    pub fn par_map<A, U, F>(&self, src: &A, f: F) -> Result<SharedArray<U>>
    where
        A: ArrayInput + ?Sized,
        U: Pod,
        F: Fn(A::Elem) -> U + TaskFn,
    {
        assert_stateless::<F>();
        let src = src.stage(self)?;
        // Every element is written by the job (and a failed job's output is dropped).
        let mut dst = SharedArray::<U>::for_overwrite(self.mempool(), src.array().len())?;
        self.par_map_into(src.array(), &mut dst, f)?;
        Ok(dst)
    }

    /// Maps `f` over `src` into the existing array `dst` (same length). `src` is any
    /// [`ArrayInput`](crate::ArrayInput), as for [`par_map`](Pool::par_map).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if the lengths differ; task failures as
    /// [`par_map`](Pool::par_map).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let x = pool.array_from_fn(10_000, |i| i as f64)?;
    /// let mut y = pool.array_zeroed::<f64>(10_000)?;
    /// for round in 0..3 {
    ///     // The output is reused: no allocation, its pages are already mapped everywhere.
    ///     pool.par_map_into(&x, &mut y, |v: f64| 2.0 * v + 1.0)?;
    ///     assert_eq!(y[round], 2.0 * round as f64 + 1.0);
    /// }
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn par_map_into<A, U, F>(&self, src: &A, dst: &mut SharedArray<U>, f: F) -> Result<()>
    where
        A: ArrayInput + ?Sized,
        U: Pod,
        F: Fn(A::Elem) -> U + TaskFn,
    {
        let src = src.stage(self)?;
        // SAFETY: the job is waited for before the borrows of `src` (and its staged
        // copy) and `dst` end.
        unsafe { self.spawn_map_into(src.array(), dst, f) }?.wait()
    }

    /// Starts [`par_map_into`](Pool::par_map_into) and returns its handle.
    ///
    /// # Safety
    /// The workers read `src` and write `dst` until the job has ended, and the handle
    /// borrows neither (a borrow could not be trusted: a leaked handle ends it early).
    /// Keep both arrays alive, and do not read or write `dst`, until the handle has been
    /// waited for or dropped (dropping it cancels the job and waits for it). Freeing
    /// either array earlier lets the workers write into memory reused by something
    /// else.
    ///
    /// # Errors
    /// As [`par_map_into`](Pool::par_map_into).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let x = pool.array_from_fn(10_000, |i| i as u32)?;
    /// let mut y = pool.array_zeroed::<u32>(10_000)?;
    /// // SAFETY: `x` and `y` outlive the handle, and `y` is not touched until it is waited for.
    /// let handle = unsafe { pool.spawn_map_into(&x, &mut y, |v: u32| v + 1)? };
    /// // ... other work in this thread while the workers run ...
    /// handle.wait()?;
    /// assert_eq!(y[9_999], 10_000);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub unsafe fn spawn_map_into<T: Pod, U: Pod, F: Fn(T) -> U + TaskFn>(
        &self,
        src: &SharedArray<T>,
        dst: &mut SharedArray<U>,
        _f: F,
    ) -> Result<JobHandle<()>> {
        assert_stateless::<F>();
        self.check_array(src)?;
        self.check_array(dst)?;
        if src.len() != dst.len() {
            return Err(Error::LengthMismatch {
                what: "par_map_into output",
                expected: src.len(),
                actual: dst.len(),
            });
        }
        let chunking = self.inner().default_chunking();
        let stream = std::mem::size_of_val::<[U]>(dst) >= self.inner().config.stream_threshold();
        let sub = self.submit::<MapInto<T, U, F>>(
            &(src.desc(), dst.desc(), stream),
            src.len(),
            chunking,
        )?;
        Ok(JobHandle::new(sub, Box::new(|_| Ok(()))))
    }

    /// Runs `f(offset, chunk)` on consecutive chunks of `chunk_len` elements of `arr`, in
    /// the workers, in place (the last chunk may be shorter).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let mut img = pool.array_zeroed::<u32>(64 * 8)?;
    /// pool.par_chunks_mut(&mut img, 64, |offset: usize, row: &mut [u32]| {
    ///     for (x, px) in row.iter_mut().enumerate() {
    ///         *px = (offset / 64 * 1000 + x) as u32;
    ///     }
    /// })?;
    /// assert_eq!(img[3 * 64 + 5], 3005);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `chunk_len` is 0; task failures as
    /// [`par_map`](Pool::par_map).
    pub fn par_chunks_mut<T: Pod, F: Fn(usize, &mut [T]) + TaskFn>(
        &self,
        arr: &mut SharedArray<T>,
        chunk_len: usize,
        _f: F,
    ) -> Result<()> {
        assert_stateless::<F>();
        if chunk_len == 0 {
            return Err(Error::config(
                "par_chunks_mut: chunk length 0; use at least 1",
            ));
        }
        self.check_array(arr)?;
        let chunks = arr.len().div_ceil(chunk_len);
        let chunking = crate::pool::Chunking {
            min_len: 1,
            max_len: self.inner().default_chunking().max_len,
        };
        let sub =
            self.submit::<ChunksMut<T, F>>(&(arr.desc(), chunk_len as u64), chunks, chunking)?;
        JobHandle::new(sub, Box::new(|_| Ok(()))).wait()
    }

    /// Maps `f` over a vector of any serde type, in the workers.
    ///
    /// Items travel encoded with bincode through a mempool buffer (never a pipe), and so
    /// do results: there is no size limit beyond the mempool, at the cost of encoding and
    /// decoding each value once each way. For plain data, [`par_map`](Pool::par_map)
    /// over a `SharedArray` copies nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let words = vec!["a".to_string(), "bb".into(), "ccc".into()];
    /// let lens = pool.par_map_vec(words, |s: String| s.len())?;
    /// assert_eq!(lens, vec![1, 2, 3]);
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the encoded input or output does not fit in the mempool;
    /// task failures as [`par_map`](Pool::par_map).
    pub fn par_map_vec<T, U, F>(&self, items: Vec<T>, f: F) -> Result<Vec<U>>
    where
        T: Serialize + DeserializeOwned + 'static,
        U: Serialize + DeserializeOwned + Send + 'static,
        F: Fn(T) -> U + TaskFn,
    {
        // The serde source's bulk encoding (one buffer, an offset per item), then an
        // ordered collect: the same path as `par_iter_vec(items).map(f).collect_vec()`.
        self.par_iter_vec(items).map(f).collect_vec()
    }
}

impl Pool {
    /// Runs `f(&ctx)` as a job of its own in a worker and returns its handle: wait for it,
    /// poll it, cancel it, watch its progress, or `.await` it.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// use procyon::{Ctx, Pool};
    /// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let handle = pool.spawn(|ctx: &Ctx| ctx.par_range(0..1000).map(|i: usize| i as u64).sum::<u64>().unwrap())?;
    /// assert_eq!(handle.wait()?, 499_500);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::PoolShutDown`] if the pool can take no job; [`Error::OutOfMemory`] if
    /// its header does not fit.
    pub fn spawn<F, R>(&self, _f: F) -> Result<JobHandle<R>>
    where
        F: Fn(&crate::Ctx) -> R + TaskFn,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_stateless::<F>();
        let sub = self.submit::<SpawnJob<F, R>>(&(), 1, ONE_TASK)?;
        Ok(spawned(sub))
    }

    /// Runs `f(&arg, &ctx)` as a job of its own in a worker and returns its handle:
    /// [`spawn`](Pool::spawn) with an argument. `arg` is any serde value (a request's
    /// parameters, say), encoded once into the job's argument block in the mempool and
    /// decoded in the worker; the task function itself must capture nothing.
    ///
    /// Dropping the handle without waiting cancels the job and returns at once (the
    /// scheduler frees what the job held once its worker has left), so an abandoned
    /// request stops its work without blocking the caller's thread.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// use procyon::{Ctx, Pool};
    /// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let words = vec!["process".to_string(), "pool".to_string()];
    /// let handle = pool.spawn_with(words, |words: &Vec<String>, _ctx: &Ctx| {
    ///     words.iter().map(|w| w.len()).sum::<usize>()
    /// })?;
    /// assert_eq!(handle.wait()?, 11);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::PoolShutDown`] if the pool can take no job; [`Error::OutOfMemory`] if the
    /// argument does not fit in the mempool; [`Error::TooManyJobs`] past 65,536 jobs in
    /// flight.
    pub fn spawn_with<A, F, R>(&self, arg: A, _f: F) -> Result<JobHandle<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        F: Fn(&A, &crate::Ctx) -> R + TaskFn,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_stateless::<F>();
        let sub = self.submit::<SpawnWithJob<A, F, R>>(&arg, 1, ONE_TASK)?;
        Ok(spawned(sub))
    }
}

impl Pool {
    /// [`spawn`](Pool::spawn) for the hungry worker of `feed`: the job is open at once,
    /// and that worker is told (`jobs::run_set`, "Hungry workers").
    pub(crate) fn spawn_open<F, R>(&self, _f: F, feed: Feed) -> Result<JobHandle<R>>
    where
        F: Fn(&crate::Ctx) -> R + TaskFn,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_stateless::<F>();
        let sub = self.submit_open::<SpawnJob<F, R>>(&(), 1, ONE_TASK, 0, feed)?;
        Ok(spawned(sub))
    }

    /// [`spawn_with`](Pool::spawn_with) for the hungry worker of `feed` (as
    /// [`spawn_open`](Pool::spawn_open)).
    pub(crate) fn spawn_with_open<A, F, R>(
        &self,
        arg: &A,
        _f: F,
        feed: Feed,
    ) -> Result<JobHandle<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        F: Fn(&A, &crate::Ctx) -> R + TaskFn,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_stateless::<F>();
        let sub = self.submit_open::<SpawnWithJob<A, F, R>>(arg, 1, ONE_TASK, 0, feed)?;
        Ok(spawned(sub))
    }
}

/// The chunking of a job of one task.
const ONE_TASK: crate::pool::Chunking = crate::pool::Chunking {
    min_len: 1,
    max_len: 1,
};

/// The handle of a spawned job: its one partial is the task's value.
fn spawned<R: DeserializeOwned + Send + 'static>(sub: crate::pool::Submitted) -> JobHandle<R> {
    JobHandle::new(
        sub,
        Box::new(|sub| {
            sub.partials::<R>()?
                .into_iter()
                .next()
                .map(|(_, r)| r)
                .ok_or_else(|| Error::Malformed {
                    reason: "spawned task left no result".into(),
                })
        }),
    )
}
