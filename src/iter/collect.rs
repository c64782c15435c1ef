//! Collecting into any collection: [`FromParIter`] for `collect::<C>()`, [`ParExtend`]
//! for `c.par_extend(iter)`, and `unzip` and `partition`.
//!
//! The items travel to this process serialized, chunk by chunk, in input order, and the
//! collection is built here from them; `collect_vec` (a `Vec`) and `collect_array` (a
//! shared array written in place by the workers) are the fast forms.

/// A collection that `collect()` can build from the items of a parallel iterator: any
/// `C: FromIterator<T>` (`Vec`, `HashMap`, `BTreeMap`, `String`, ...).
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let squares: HashMap<u32, u32> = pool.par_range(0u32..4).map(|x: u32| (x, x * x)).collect()?;
/// assert_eq!(squares[&3], 9);
/// # Ok::<(), procyon::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "a `{Self}` cannot be collected from a procyon parallel iterator of `{T}`",
    label = "`{Self}` does not implement `FromIterator<{T}>`",
    note = "`collect()` builds any `C: FromIterator<Item>` in this process; for a SharedArray use `collect_array()`, for a Vec `collect_vec()` is the fast form",
    note = "and `collect()` returns a `procyon::Result<C>`: add `?` (the job can fail)"
)]
pub trait FromParIter<T>: Sized {
    /// Builds the collection from the items, in input order.
    fn from_par_items(items: Vec<T>) -> Self;
}

impl<T, C: FromIterator<T>> FromParIter<T> for C {
    fn from_par_items(items: Vec<T>) -> Self {
        items.into_iter().collect()
    }
}

/// A collection that a parallel iterator can extend: any `C: Extend<T>`, as rayon's
/// `ParallelExtend`.
///
/// # Examples
///
/// ```
/// use procyon::ParExtend;
/// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let mut v = vec![100u32];
/// v.par_extend(pool.par_range(0u32..3).map(|x: u32| x * 2))?;
/// assert_eq!(v, [100, 0, 2, 4]);
/// # Ok::<(), procyon::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "a `{Self}` cannot be extended with the items `{T}` of a procyon parallel iterator",
    note = "`par_extend` works on any `C: Extend<Item>`"
)]
pub trait ParExtend<T> {
    /// Appends the items of `iter`, in input order.
    ///
    /// # Errors
    ///
    /// As the iterator's terminal operations; `self` is unchanged on error.
    fn par_extend<'p, S, St>(&mut self, iter: super::ParIter<'p, S, St>) -> crate::Result<()>
    where
        S: super::Source,
        St: super::Stage<S::Item, Out = T>,
        T: serde::Serialize + serde::de::DeserializeOwned + 'static;
}

impl<T, C: Extend<T>> ParExtend<T> for C {
    fn par_extend<'p, S, St>(&mut self, iter: super::ParIter<'p, S, St>) -> crate::Result<()>
    where
        S: super::Source,
        St: super::Stage<S::Item, Out = T>,
        T: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        self.extend(iter.collect_vec()?);
        Ok(())
    }
}

/// The chunks' vectors, in order, as one: each appended whole (its bytes copied at
/// once), not item by item through `Flatten`, whose `next` showed as a tenth of a
/// `collect_vec`'s profile.
pub(crate) fn concat<T>(parts: impl IntoIterator<Item = Vec<T>>) -> Vec<T> {
    let mut parts = parts.into_iter();
    let Some(mut out) = parts.next() else {
        return Vec::new();
    };
    let rest: Vec<Vec<T>> = parts.collect();
    out.reserve(rest.iter().map(Vec::len).sum());
    for mut part in rest {
        out.append(&mut part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::concat;

    #[test]
    fn concat_keeps_every_item_in_order() {
        assert_eq!(concat(Vec::<Vec<u8>>::new()), Vec::<u8>::new());
        assert_eq!(concat([vec![1], vec![], vec![2, 3], vec![4]]), [1, 2, 3, 4]);
        assert_eq!(concat([Vec::<u8>::new(), vec![5]]), [5]);
    }
}
