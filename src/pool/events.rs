//! A running job's progress and partial results as [`Stream`]s, for async code (an SSE
//! endpoint, a GUI's event loop): [`JobHandle::progress_stream`] and
//! [`JobHandle::reports`].
//!
//! Both borrow the handle mutably and end when the job ends; the handle can then be
//! awaited (or waited for) for the result. Neither costs a thread: a stream with nothing
//! new registers its waker with the pool's waiter, to be woken at the job's end or after
//! [`POLL_PERIOD`], whichever comes first, so a stream yields at most one progress
//! snapshot per period and reports in batches per period.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_core::Stream;
use serde::de::DeserializeOwned;

use crate::pool::JobHandle;
use crate::progress::{Progress, POLL_PERIOD};

/// The progress of a running job, as a stream: see [`JobHandle::progress_stream`].
#[must_use = "streams do nothing unless polled"]
pub struct ProgressStream<'h, R> {
    handle: &'h mut JobHandle<R>,
    last: Option<Progress>,
    last_at: Option<Instant>,
    done: bool,
}

/// The partial results of a running job, as a stream: see [`JobHandle::reports`].
#[must_use = "streams do nothing unless polled"]
pub struct ReportStream<'h, R, T> {
    handle: &'h mut JobHandle<R>,
    ready: VecDeque<T>,
    done: bool,
    _item: PhantomData<fn() -> T>,
}

impl<R> JobHandle<R> {
    /// The job's progress as a [`Stream`]: a snapshot whenever it changed, at most one per
    /// 10 ms, the last one once the job has ended; then the stream ends.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// use std::time::Duration;
    /// use futures_core::Stream;
    /// use procyon::{Ctx, Pool};
    ///
    /// fn rows(ctx: &Ctx) -> u64 {
    ///     for row in 1..=20 {
    ///         std::thread::sleep(Duration::from_millis(2));
    ///         ctx.progress(row, 20);
    ///     }
    ///     20
    /// }
    ///
    /// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// rt.block_on(async {
    ///     let mut handle = pool.spawn(rows)?;
    ///     let mut seen = Vec::new();
    ///     let mut stream = handle.progress_stream();
    ///     while let Some(p) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)).await {
    ///         seen.push(p.reported.map_or(0, |(done, _)| done));
    ///     }
    ///     assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    ///     assert_eq!(handle.await?, 20);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn progress_stream(&mut self) -> ProgressStream<'_, R> {
        ProgressStream {
            handle: self,
            last: None,
            last_at: None,
            done: false,
        }
    }

    /// The values tasks send with [`Ctx::report`](crate::Ctx::report), as a [`Stream`] of
    /// `T`, in the order they were reported; values that do not decode as `T` are
    /// skipped. The stream ends when the job has ended and every report is delivered.
    /// Reports taken by the stream are no longer given to an `on_report` callback.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> procyon::Result<()> {
    /// use futures_core::Stream;
    /// use procyon::{Ctx, Pool};
    ///
    /// fn best_so_far(ctx: &Ctx) -> u64 {
    ///     for best in [3u64, 7, 9] {
    ///         ctx.report(&best).unwrap();
    ///     }
    ///     9
    /// }
    ///
    /// let pool = Pool::builder().workers(2).mempool_size(64 << 20).build()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// rt.block_on(async {
    ///     let mut handle = pool.spawn(best_so_far)?;
    ///     let mut reports = handle.reports::<u64>();
    ///     let mut got = Vec::new();
    ///     while let Some(v) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut reports).poll_next(cx)).await {
    ///         got.push(v);
    ///     }
    ///     assert_eq!(got, vec![3, 7, 9]);
    ///     assert_eq!(handle.await?, 9);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn reports<T: DeserializeOwned>(&mut self) -> ReportStream<'_, R, T> {
        ReportStream {
            handle: self,
            ready: VecDeque::new(),
            done: false,
            _item: PhantomData,
        }
    }
}

impl<R> Stream for ProgressStream<'_, R> {
    type Item = Progress;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Progress>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let ended = this.handle.has_ended();
        let now = Instant::now();
        let next_at = this.last_at.map(|t| t + POLL_PERIOD);
        if !ended && next_at.is_some_and(|t| now < t) {
            this.handle.register_waker(cx.waker(), next_at);
            return Poll::Pending;
        }
        let p = this.handle.progress_now();
        if ended {
            this.done = true;
            return Poll::Ready((this.last != p).then_some(p).flatten());
        }
        if p.is_some() && this.last != p {
            this.last = p;
            this.last_at = Some(now);
            return Poll::Ready(p);
        }
        this.handle
            .register_waker(cx.waker(), Some(now + POLL_PERIOD));
        Poll::Pending
    }
}

// Nothing in a report stream is pinned in place (the values sit in a heap queue).
impl<R, T> Unpin for ReportStream<'_, R, T> {}

impl<R, T: DeserializeOwned> Stream for ReportStream<'_, R, T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        loop {
            if let Some(v) = this.ready.pop_front() {
                return Poll::Ready(Some(v));
            }
            if this.done {
                return Poll::Ready(None);
            }
            // Ended first, then collected: a report pushed before the end is collected.
            let ended = this.handle.has_ended();
            let reports = this.handle.take_reports(ended);
            this.ready.extend(
                reports
                    .iter()
                    .filter_map(|r| bincode::deserialize::<T>(r.bytes()).ok()),
            );
            if ended {
                this.done = true;
                continue;
            }
            if this.ready.is_empty() {
                this.handle
                    .register_waker(cx.waker(), Some(Instant::now() + POLL_PERIOD));
                return Poll::Pending;
            }
        }
    }
}
