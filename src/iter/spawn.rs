//! `pool.spawn_with(state, |state, ctx| ..)`: the state form of [`Pool::spawn`], beside
//! the other `*_with` forms. The state is serialized once into the job's arguments and
//! decoded in the worker that runs the task.

use std::marker::PhantomData;
use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::kind::{JobKind, WorkerCx};
use crate::pool::{Chunking, JobHandle, Pool};
use crate::task::{assert_stateless, conjure, TaskFn};
use crate::{Ctx, Error, Result};

/// One task, `f(&state, &ctx)`, whose value comes back to the caller.
pub(crate) struct SpawnWith<C, F, R>(PhantomData<fn(C, F) -> R>);

impl<C, F, R> JobKind for SpawnWith<C, F, R>
where
    C: Serialize + DeserializeOwned + 'static,
    F: Fn(&C, &Ctx) -> R + TaskFn,
    R: Serialize + DeserializeOwned + 'static,
{
    type Args = C;
    type Local = Ctx;
    type Partial = R;
    const ORDERED: bool = true;

    fn init(_: &C, _: &WorkerCx) -> Result<Ctx> {
        Ctx::current()
    }

    fn run(state: &C, ctx: &mut Ctx, _: Range<usize>) -> (Option<R>, bool) {
        (Some(conjure::<F>()(state, ctx)), false)
    }
}

impl Pool {
    /// Runs `f(&state, &ctx)` as a job of its own in a worker and returns its handle, as
    /// [`spawn`](Pool::spawn) does; `state` travels serialized with the job.
    ///
    /// # Examples
    ///
    /// ```
    /// use procyon::Ctx;
    /// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
    /// let words = vec!["par".to_string(), "allel".to_string()];
    /// let h = pool.spawn_with(words, |w: &Vec<String>, _ctx: &Ctx| w.concat())?;
    /// assert_eq!(h.wait()?, "parallel");
    /// # Ok::<(), procyon::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`spawn`](Pool::spawn).
    pub fn spawn_with<C, F, R>(&self, state: C, _f: F) -> Result<JobHandle<R>>
    where
        C: Serialize + DeserializeOwned + 'static,
        F: Fn(&C, &Ctx) -> R + TaskFn,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        assert_stateless::<F>();
        let one = Chunking {
            min_len: 1,
            max_len: 1,
        };
        let sub = self.submit::<SpawnWith<C, F, R>>(&state, 1, one)?;
        Ok(JobHandle::new(
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
        ))
    }
}
