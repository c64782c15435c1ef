//! `f` over serde values encoded in one mempool block: the kind of `par_map_vec`.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{JobKind, WorkerCx};
use crate::task::{conjure, TaskFn};
use crate::Result;

/// Arguments of a `par_map_vec` job: where the encoded items are.
#[derive(Serialize, Deserialize)]
pub(crate) struct VecArgs {
    /// Mempool offset of `n + 1` native-endian u64 positions (read as atomics), followed
    /// by the items.
    pub(crate) offset: u64,
    pub(crate) n: u64,
}

/// `f` over serde values encoded in a mempool block; partials are the encoded outputs.
pub(crate) struct MapVec<T, U, F>(PhantomData<fn(T, U, F)>);

impl<
        T: DeserializeOwned + 'static,
        U: Serialize + DeserializeOwned + 'static,
        F: Fn(T) -> U + TaskFn,
    > JobKind for MapVec<T, U, F>
{
    type Args = VecArgs;
    type Local = (crate::mempool::Mempool, F);
    type Partial = Vec<U>;
    const ORDERED: bool = true;

    fn init(_: &Self::Args, cx: &WorkerCx) -> Result<Self::Local> {
        Ok((cx.mempool.clone(), conjure::<F>()))
    }

    fn run(
        args: &Self::Args,
        (mempool, f): &mut Self::Local,
        range: Range<usize>,
    ) -> (Option<Vec<U>>, bool) {
        let base = args.offset as usize;
        let index_len = (args.n as usize + 1) * 8;
        // SAFETY: the owner keeps the input block alive and unchanged until the job ends.
        let index = unsafe { mempool.words_at(base, args.n as usize + 1) }.expect("input index");
        let mut out = Vec::with_capacity(range.len());
        for i in range {
            let a = index[i].load(Ordering::Relaxed) as usize;
            let b = index[i + 1].load(Ordering::Relaxed) as usize;
            // SAFETY: as above; positions were written by the owner before publishing.
            let bytes =
                unsafe { mempool.bytes_at(base + index_len + a, b - a) }.expect("input block");
            let item: T = bincode::deserialize(bytes).expect("input item decodes");
            out.push(f(item));
        }
        (Some(out), false)
    }
}
