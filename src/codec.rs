//! bincode encoding into a byte slice sized beforehand, one store per field.
//!
//! `bincode::serialize_into(&mut &mut buf[..], value)` writes each field through
//! `<&mut [u8] as io::Write>::write`, which takes as many bytes as still fit: a length
//! known only at run time, hence a call to `memmove` per field. [`encode_into`] writes
//! through [`SliceWriter`] instead, whose `write_all` either copies the whole field or
//! fails; inlined into bincode's serializer, the copy of a `u64` is one 8-byte store.
//! Encoding 50,000 `(u64, u64)` pairs (a chunk of a `collect_vec`) took 285-347 us the
//! first way and 56-88 us this way, 4-5 times less in each of three launches (scratch
//! driver, medians of 100 encodings; 2026-12-07, the 2-vCPU Zen 4 VM of BENCHMARKS.md).
//! The bytes are the same: only the writer differs. Every encoding into a slice goes
//! through here (job arguments, partial results, progress reports, camlbox messages, a
//! job's failure record).
//!
//! [`Items`] is how a chunk's vector of items travels (`collect_vec` and the forms built
//! on it): a vector of a primitive number type as one byte string, anything else as
//! bincode's sequence.

use std::io;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// An `io::Write` over a byte slice that writes a buffer whole or not at all.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl io::Write for SliceWriter<'_> {
    #[inline]
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data)?;
        Ok(data.len())
    }

    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let end = self.at + data.len();
        match self.buf.get_mut(self.at..end) {
            Some(dst) => {
                dst.copy_from_slice(data);
                self.at = end;
                Ok(())
            }
            None => Err(io::ErrorKind::WriteZero.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encodes `value` with bincode's default (fixed-width) options into the front of `buf`
/// and returns how many bytes it wrote; an error if they do not fit.
///
/// The encoding is `bincode::serialize`'s, byte for byte.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    buf: &mut [u8],
    value: &T,
) -> bincode::Result<usize> {
    let mut w = SliceWriter { buf, at: 0 };
    bincode::serialize_into(&mut w, value)?;
    Ok(w.at)
}

/// A chunk's items on their way from a worker to the client.
///
/// bincode writes and reads a sequence item by item: for 33,000 `u64`s a store and a
/// length check each way per item, plus a first pass that only counts the bytes. When
/// `T` is a primitive number type ([`is_plain_number`]), whose values are their bytes,
/// the vector travels as one byte string instead: its size is known at once, and each
/// end is one `memcpy`. Both ends are the same program, so they agree on `T`'s size and
/// byte order. (`pub` only because the hidden `Terminal` trait names it as
/// `collect_vec`'s accumulator; it is not reachable from outside the crate.)
#[derive(Debug)]
pub struct Items<T>(pub(crate) Vec<T>);

/// Whether `T` is one of Rust's primitive number types: no padding, and every bit
/// pattern of its size is a value (unlike `bool` or `char`).
fn is_plain_number<T: 'static>() -> bool {
    use std::any::TypeId;
    let t = TypeId::of::<T>();
    [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<u128>(),
        TypeId::of::<usize>(),
        TypeId::of::<i8>(),
        TypeId::of::<i16>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<i128>(),
        TypeId::of::<isize>(),
        TypeId::of::<f32>(),
        TypeId::of::<f64>(),
    ]
    .contains(&t)
}

impl<T: Serialize + 'static> Serialize for Items<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if is_plain_number::<T>() {
            // SAFETY: `T` is a primitive number type: the vector's `len` items are
            // initialized and have no padding, so its memory is `size_of_val` readable
            // bytes for as long as `self` is borrowed.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    self.0.as_ptr().cast::<u8>(),
                    std::mem::size_of_val(self.0.as_slice()),
                )
            };
            s.serialize_bytes(bytes)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de, T: Deserialize<'de> + 'static> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if is_plain_number::<T>() {
            d.deserialize_bytes(NumberBytes(PhantomData)).map(Items)
        } else {
            Vec::<T>::deserialize(d).map(Items)
        }
    }
}

/// Reads the byte string of an [`Items`] of primitive numbers back into a vector.
struct NumberBytes<T>(PhantomData<T>);

impl<T: 'static> Visitor<'_> for NumberBytes<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the bytes of a vector of {}", std::any::type_name::<T>())
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<T>, E> {
        debug_assert!(is_plain_number::<T>());
        let size = std::mem::size_of::<T>();
        if bytes.len() % size != 0 {
            return Err(E::invalid_length(bytes.len(), &self));
        }
        let n = bytes.len() / size;
        let mut v = Vec::<T>::with_capacity(n);
        // SAFETY: the capacity holds `n` items, `bytes.len()` bytes, and the copy is
        // bytewise (the source needs no alignment). `T` is a primitive number type
        // (the only kind `Items` encodes as bytes), for which any bytes are a value, so
        // the `n` items are initialized once copied.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), bytes.len());
            v.set_len(n);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::{encode_into, Items};
    use serde::{de::DeserializeOwned, Serialize};

    fn round_trip<T>(items: Vec<T>) -> (Vec<u8>, Vec<T>)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + 'static,
    {
        let bytes = bincode::serialize(&Items(items)).unwrap();
        let back: Items<T> = bincode::deserialize(&bytes).unwrap();
        (bytes, back.0)
    }

    /// Primitive numbers travel as their bytes (length in bytes, then the bytes), every
    /// value intact; other types as bincode's sequence.
    #[test]
    fn items_of_numbers_travel_as_their_bytes_and_others_as_a_sequence() {
        let (bytes, back) = round_trip(vec![1u64, u64::MAX, 0]);
        assert_eq!(back, [1, u64::MAX, 0]);
        assert_eq!(&bytes[..8], &24u64.to_le_bytes());
        assert_eq!(&bytes[8..16], &1u64.to_ne_bytes());
        assert_eq!(bytes.len(), 8 + 24);
        assert_eq!(round_trip(vec![0u8, 255, 7]).1, [0, 255, 7]);
        assert_eq!(round_trip(vec![-1i16, i16::MIN]).1, [-1, i16::MIN]);
        assert_eq!(round_trip(vec![u128::MAX, 3]).1, [u128::MAX, 3]);
        assert_eq!(round_trip(vec![usize::MAX]).1, [usize::MAX]);
        assert_eq!(
            round_trip(vec![isize::MIN, -2i64 as isize]).1,
            [isize::MIN, -2]
        );
        assert_eq!(
            round_trip(vec![i32::MIN, i8::MIN as i32]).1,
            [i32::MIN, -128]
        );
        assert_eq!(
            round_trip(Vec::<u32>::new()),
            (0u64.to_le_bytes().to_vec(), vec![])
        );
        // Floats bit for bit: -0.0, a NaN's payload, infinities.
        let odd = [
            -0.0f64,
            f64::from_bits(0x7ff8_dead_beef_0001),
            f64::INFINITY,
        ];
        let back = round_trip(odd.to_vec()).1;
        assert_eq!(
            back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            odd.map(f64::to_bits)
        );
        assert_eq!(round_trip(vec![1.5f32, f32::MIN]).1, [1.5, f32::MIN]);
        // Not numbers: the sequence bincode writes for a Vec, item by item.
        for_seq(vec![true, false]);
        for_seq(vec!['x', '\u{10ffff}']);
        for_seq(vec![(1u64, 2u64)]);
        for_seq(vec![String::from("ab"), String::new()]);
    }

    fn for_seq<T>(items: Vec<T>)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone + 'static,
    {
        let (bytes, back) = round_trip(items.clone());
        assert_eq!(bytes, bincode::serialize(&items).unwrap());
        assert_eq!(back, items);
    }

    /// A byte string whose length is not a whole number of items is an error, as is one
    /// cut short: never a panic or a read past the input.
    #[test]
    fn malformed_bytes_of_numbers_are_an_error() {
        let mut bad = 12u64.to_le_bytes().to_vec();
        bad.extend_from_slice(&[0; 12]);
        assert!(bincode::deserialize::<Items<u64>>(&bad).is_err());
        let short = bincode::serialize(&Items(vec![1u32, 2, 3])).unwrap();
        assert!(bincode::deserialize::<Items<u32>>(&short[..short.len() - 1]).is_err());
        // The same bytes read as items of another size.
        assert_eq!(
            bincode::deserialize::<Items<u16>>(&short).unwrap().0.len(),
            6
        );
    }

    #[test]
    fn writes_what_bincode_serialize_writes_and_refuses_a_short_buffer() {
        let value: (u64, Vec<(u8, String, f64)>, Option<i32>) = (
            7,
            vec![(1, "one".into(), 1.5), (2, String::new(), -0.0)],
            Some(-3),
        );
        let want = bincode::serialize(&value).unwrap();
        let mut buf = vec![0xaa; want.len() + 5];
        assert_eq!(encode_into(&mut buf, &value).unwrap(), want.len());
        assert_eq!(&buf[..want.len()], &want[..]);
        assert!(buf[want.len()..].iter().all(|&b| b == 0xaa));
        let mut short = vec![0; want.len() - 1];
        assert!(encode_into(&mut short, &value).is_err());
        assert_eq!(encode_into(&mut [], &()).unwrap(), 0);
    }
}
