//! Collecting into any collection: [`FromParIter`] for `collect::<C>()`, [`ParExtend`]
//! for `c.par_extend(iter)`, and `unzip` and `partition`.
//!
//! The items travel to this process serialized, chunk by chunk, in input order (a
//! chunk's vector of a primitive number type as its bytes, `codec::Items`), and the
//! collection is built here from them ([`ParItems`]: the chunks' vectors one after the
//! other, never joined into one `Vec` unless the collection is a `Vec`);
//! `collect_vec` (a `Vec`) and `collect_array` (a shared array written in place by the
//! workers) are the fast forms.

use std::iter::FusedIterator;

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
    ///
    /// (`collect::<Vec<T>>()` does not come here: it joins the chunks' vectors whole,
    /// as [`collect_vec`](crate::ParIter::collect_vec) does.)
    fn from_par_items(items: ParItems<T>) -> Self;
}

impl<T, C: FromIterator<T>> FromParIter<T> for C {
    fn from_par_items(items: ParItems<T>) -> Self {
        items.collect()
    }
}

/// The items of a job, in input order, as its chunks delivered them: an iterator that
/// walks the chunks' vectors one after the other, freeing each once read, and knows how
/// many items are left (so `HashMap` and the like reserve once). What `collect()` hands
/// a collection's `FromIterator` (through [`FromParIter::from_par_items`]).
///
/// A collection built from it needs no `Vec` of all the items first: collecting 100,000
/// pairs into a `HashMap` no longer copies them into one vector of 1.6 MB that is freed
/// at once.
///
/// # Examples
///
/// A collection of one's own is built through `FromIterator`, which sees the exact
/// number of items:
///
/// ```
/// struct Stats {
///     n: usize,
///     hint: usize,
///     last: Option<u32>,
/// }
///
/// impl FromIterator<u32> for Stats {
///     fn from_iter<I: IntoIterator<Item = u32>>(items: I) -> Self {
///         let items = items.into_iter();
///         let hint = items.size_hint().0;
///         let (mut n, mut last) = (0, None);
///         for x in items {
///             n += 1;
///             last = Some(x);
///         }
///         Stats { n, hint, last }
///     }
/// }
///
/// let pool = procyon::Pool::builder().workers(2).mempool_size(16 << 20).build()?;
/// let s: Stats = pool.par_range(0u32..1000).map(|x: u32| x * 2).collect()?;
/// assert_eq!((s.n, s.hint, s.last), (1000, 1000, Some(1998)));
/// # Ok::<(), procyon::Error>(())
/// ```
pub struct ParItems<T> {
    /// The chunks' vectors not yet started, none empty.
    parts: std::vec::IntoIter<Vec<T>>,
    /// The rest of the vector being read.
    current: std::vec::IntoIter<T>,
    /// Items left in `current` and `parts`.
    left: usize,
}

impl<T> ParItems<T> {
    /// The items of `parts`, in order.
    pub(crate) fn new(parts: impl IntoIterator<Item = Vec<T>>) -> Self {
        let parts: Vec<Vec<T>> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        let left = parts.iter().map(Vec::len).sum();
        ParItems {
            parts: parts.into_iter(),
            current: Vec::new().into_iter(),
            left,
        }
    }

    /// The items left as one `Vec`, each chunk's vector appended whole (the fast way to
    /// a `Vec`, which `collect::<Vec<_>>()` takes).
    pub fn into_vec(self) -> Vec<T> {
        concat(self.into_parts())
    }

    /// The items left, as the vectors they are in (the first may be empty).
    fn into_parts(self) -> impl Iterator<Item = Vec<T>> {
        let current: Vec<T> = self.current.collect();
        std::iter::once(current).chain(self.parts)
    }
}

impl<T> Iterator for ParItems<T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(x) = self.current.next() {
                self.left -= 1;
                return Some(x);
            }
            self.current = self.parts.next()?.into_iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }

    /// A loop per chunk's vector (what `for_each`, `extend` and most consumers use).
    fn fold<B, F: FnMut(B, T) -> B>(self, init: B, mut f: F) -> B {
        let acc = self.current.fold(init, &mut f);
        self.parts
            .fold(acc, |acc, part| part.into_iter().fold(acc, &mut f))
    }
}

impl<T> ExactSizeIterator for ParItems<T> {}

impl<T> FusedIterator for ParItems<T> {}

impl<T> std::fmt::Debug for ParItems<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParItems")
            .field("left", &self.left)
            .finish()
    }
}

/// `items` as a `C`: a `Vec` by joining the chunks' vectors whole, anything else by
/// [`FromParIter`].
pub(crate) fn build<T: 'static, C: FromParIter<T> + 'static>(items: ParItems<T>) -> C {
    if std::any::TypeId::of::<C>() == std::any::TypeId::of::<Vec<T>>() {
        let all: Box<dyn std::any::Any> = Box::new(items.into_vec());
        return *all
            .downcast::<C>()
            .expect("C is Vec<T>: their TypeIds are equal");
    }
    C::from_par_items(items)
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

impl<T, C: Extend<T> + 'static> ParExtend<T> for C {
    fn par_extend<'p, S, St>(&mut self, iter: super::ParIter<'p, S, St>) -> crate::Result<()>
    where
        S: super::Source,
        St: super::Stage<S::Item, Out = T>,
        T: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        let items = iter.run::<super::terminal::CollectVec, _>((), |parts| {
            Ok(ParItems::new(parts.map(|p| p.0)))
        })?;
        // A `Vec` takes each chunk's vector whole (one copy, no joined vector in
        // between); anything else the items one by one.
        match (self as &mut dyn std::any::Any).downcast_mut::<Vec<T>>() {
            Some(v) => {
                v.reserve(items.len());
                for part in items.into_parts() {
                    v.extend(part);
                }
            }
            None => self.extend(items),
        }
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
    use super::{build, concat, ParItems};
    use std::collections::{BTreeMap, HashMap, VecDeque};

    #[test]
    fn concat_keeps_every_item_in_order() {
        assert_eq!(concat(Vec::<Vec<u8>>::new()), Vec::<u8>::new());
        assert_eq!(concat([vec![1], vec![], vec![2, 3], vec![4]]), [1, 2, 3, 4]);
        assert_eq!(concat([Vec::<u8>::new(), vec![5]]), [5]);
    }

    fn parts() -> Vec<Vec<String>> {
        let s = |x: &str| x.to_string();
        vec![
            vec![],
            vec![s("a"), s("b")],
            vec![],
            vec![s("c")],
            vec![s("d"), s("e")],
        ]
    }

    #[test]
    fn par_items_yield_every_item_in_order_and_count_what_is_left() {
        let want = ["a", "b", "c", "d", "e"];
        let mut it = ParItems::new(parts());
        for (k, w) in want.iter().enumerate() {
            assert_eq!(it.len(), want.len() - k);
            assert_eq!(it.next().as_deref(), Some(*w));
        }
        assert_eq!((it.len(), it.next(), it.next()), (0, None, None));
        // Folded (a loop per vector), and folded or joined after a few `next`s.
        let all: Vec<String> = ParItems::new(parts()).fold(Vec::new(), |mut v, x| {
            v.push(x);
            v
        });
        assert_eq!(all, want);
        let mut it = ParItems::new(parts());
        it.next();
        assert_eq!(it.collect::<Vec<_>>(), want[1..]);
        let mut it = ParItems::new(parts());
        it.next();
        let rest = it.fold(String::new(), |acc, x| acc + &x);
        assert_eq!(rest, "bcde");
        let mut it = ParItems::new(parts());
        it.next();
        assert_eq!(it.into_vec(), want[1..]);
        assert_eq!(ParItems::new(Vec::<Vec<u8>>::new()).len(), 0);
        // Dropped half read: the rest is freed (Miri checks for leaks).
        let mut it = ParItems::new(parts());
        it.next();
        it.next();
        it.next();
        drop(it);
    }

    #[test]
    fn collections_are_built_from_the_parts_and_vecs_joined_whole() {
        let pairs = || ParItems::new(vec![vec![(1u8, 'x'), (2, 'y')], vec![(1, 'z')]]);
        let m: HashMap<u8, char> = build(pairs());
        assert_eq!(m, HashMap::from([(1, 'z'), (2, 'y')]));
        let m: BTreeMap<u8, char> = build(pairs());
        assert_eq!(m, BTreeMap::from([(1, 'z'), (2, 'y')]));
        let v: Vec<(u8, char)> = build(pairs());
        assert_eq!(v, [(1, 'x'), (2, 'y'), (1, 'z')]);
        let d: VecDeque<(u8, char)> = build(pairs());
        assert_eq!(d, [(1, 'x'), (2, 'y'), (1, 'z')]);
        let s: String = build(ParItems::new(vec![vec!['a'], vec![], vec!['b', 'c']]));
        assert_eq!(s, "abc");
        let mut it = ParItems::new(parts());
        it.next();
        let rest: Vec<Vec<String>> = it.into_parts().filter(|p| !p.is_empty()).collect();
        assert_eq!(rest, [vec!["b"], vec!["c"], vec!["d", "e"]]);
    }
}
