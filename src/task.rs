//! Functions as code: how a task function reaches a worker process.
//!
//! Every worker is a `fork` of the same program image, so code addresses mean the same
//! thing in every process of the tree. procyon therefore never serializes a closure: a
//! task function is a *zero-sized* type (a `fn` item or a closure that captures nothing),
//! the job carries the address of a trampoline monomorphized for that type, and the
//! worker re-creates the (stateless) function value from nothing.
//!
//! A closure that captures variables has a non-zero size: the captured values (often
//! pointers into the client's heap) would be meaningless in another process. Passing one
//! is a **compile-time error** raised by [`assert_stateless`], whose message says what to
//! do instead: pass the state explicitly with `map_with` (a serde value delivered once
//! per worker) or put the data in a `SharedArray` and capture nothing.
//!
//! ```compile_fail
//! # fn main() -> procyon::Result<()> {
//! let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).build()?;
//! let input = pool.array_from_slice(&[1u64, 2, 3])?;
//! let offset = 10u64;
//! // error: procyon task functions must not capture variables
//! let out = pool.par_map(&input, move |x: u64| x + offset)?;
//! # Ok(()) }
//! ```
//!
//! The same with the state passed explicitly compiles and runs:
//!
//! ```
//! # fn main() -> procyon::Result<()> {
//! let pool = procyon::Pool::builder().workers(1).mempool_size(64 << 20).build()?;
//! let input = pool.array_from_slice(&[1u64, 2, 3])?;
//! let out = pool.par_iter(&input).map_with(10u64, |offset: &u64, x: u64| x + offset).collect_vec()?;
//! assert_eq!(out, vec![11, 12, 13]);
//! # Ok(()) }
//! ```

/// A task function: `Copy`, `'static`, and (checked at compile time) zero-sized.
///
/// Implemented for every `Copy + Send + Sync + 'static` type. Every process of a pool is
/// a fork of one program image, so procyon never serializes a closure: the worker
/// re-creates the function from its type alone, which only works for a type that holds
/// no data (a `fn` item, or a closure that captures nothing). Every method taking a task
/// function checks that at compile time, and a closure that captures a variable fails
/// the build with a message that says what to do instead: pass the state with a `*_with`
/// form ([`ParIter::map_with`](crate::ParIter::map_with),
/// [`ParIter::filter_with`](crate::ParIter::filter_with), ...), which serializes it once
/// per job, or put the data in a [`SharedArray`](crate::SharedArray).
///
/// # Examples
///
/// ```
/// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
/// let offset = 10u64;
/// let v = pool.par_range(0u64..3).map_with(offset, |k: &u64, x: u64| x + k).collect_vec()?;
/// assert_eq!(v, [10, 11, 12]);
/// # Ok::<(), procyon::Error>(())
/// ```
///
/// The same with a capturing closure does not compile:
///
/// ```compile_fail
/// let pool = procyon::Pool::builder().workers(1).mempool_size(16 << 20).build()?;
/// let offset = 10u64;
/// // error: procyon task functions must not capture variables
/// let v = pool.par_range(0u64..3).map(move |x: u64| x + offset).collect_vec()?;
/// # Ok::<(), procyon::Error>(())
/// ```
pub trait TaskFn: Copy + Send + Sync + 'static {}
impl<F: Copy + Send + Sync + 'static> TaskFn for F {}

struct Stateless<F>(F);

impl<F> Stateless<F> {
    const CHECK: () = assert!(
        std::mem::size_of::<F>() == 0,
        "procyon task functions must not capture variables: they run in other processes. \
         Use a fn item or a closure that captures nothing, and pass state explicitly with \
         a *_with form (map_with, filter_with, flat_map_with, for_each_with, ...: a serde \
         value) or in a SharedArray."
    );
}

/// Compile-time check that `F` is zero-sized (a `fn` item or a non-capturing closure).
///
/// Fails the build (post-monomorphization) for a capturing closure or a `fn` pointer
/// value, with a message that says what to do instead.
#[inline(always)]
pub(crate) const fn assert_stateless<F>() {
    #[allow(clippy::let_unit_value)]
    let () = Stateless::<F>::CHECK;
}

/// Re-creates a value of the zero-sized function type `F` in any process.
pub(crate) fn conjure<F: TaskFn>() -> F {
    assert_stateless::<F>();
    // SAFETY: `F` is zero-sized (checked at compile time just above), so a value of it
    // holds no bytes (all-zero is every one of its zero bytes); closures and fn items have no validity invariant beyond their
    // type, and `F: Copy` means creating one more value drops nothing and duplicates no
    // ownership. This is what every caller of the function would have had anyway.
    unsafe { std::mem::zeroed::<F>() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn conjured_fn_items_and_closures_run() {
        fn call<F: Fn(u32) -> u32 + TaskFn>(_: F) -> u32 {
            conjure::<F>()(21)
        }
        assert_eq!(call(double), 42);
        assert_eq!(call(|x| x + 1), 22);
    }
}
