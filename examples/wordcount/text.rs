//! W8's text (../shared/WORKLOADS.md) and the sequential word count: xorshift64* seeded
//! with 42 over a vocabulary of 50,000 words (word `k` is "w" followed by `k` in base 36),
//! Zipf-like (`k = floor(50000 * u^3)` for `u` uniform in [0, 1)), single spaces, a newline
//! every 12 words. Shared with tests/examples.rs, which checks the example against it.

use std::collections::HashMap;

/// Words in the vocabulary.
pub const VOCABULARY: u64 = 50_000;

/// W8's seed.
pub const SEED: u64 = 42;

/// xorshift64*.
struct XorShift64Star(u64);

impl XorShift64Star {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Appends word `k` ("w" and `k` in base 36).
fn push_word(text: &mut String, k: u64) {
    text.push('w');
    let mut digits = [0u8; 16];
    let (mut k, mut n) = (k, 0);
    loop {
        digits[n] = b"0123456789abcdefghijklmnopqrstuvwxyz"[(k % 36) as usize];
        n += 1;
        k /= 36;
        if k == 0 {
            break;
        }
    }
    text.extend(digits[..n].iter().rev().map(|&d| d as char));
}

/// At least `bytes` bytes of W8 text (whole words; the last separator included).
pub fn generate(bytes: usize, seed: u64) -> String {
    let mut rng = XorShift64Star(seed);
    let mut text = String::with_capacity(bytes + 16);
    let mut words = 0u64;
    while text.len() < bytes {
        let u = rng.unit();
        let k = ((VOCABULARY as f64) * u * u * u) as u64;
        push_word(&mut text, k.min(VOCABULARY - 1));
        words += 1;
        text.push(if words % 12 == 0 { '\n' } else { ' ' });
    }
    text
}

/// Adds the words of `text` to `counts`.
pub fn count_into<'a>(counts: &mut HashMap<&'a str, u64>, text: &'a str) {
    for w in text.split_ascii_whitespace() {
        match counts.get_mut(w) {
            Some(c) => *c += 1,
            None => {
                counts.insert(w, 1);
            }
        }
    }
}

/// The sequential loop: word frequencies of `text`.
pub fn sequential(text: &str) -> HashMap<&str, u64> {
    let mut counts = HashMap::new();
    count_into(&mut counts, text);
    counts
}

/// W8's checksum: the sum over words of count * (index + 1).
pub fn checksum<'a>(counts: impl IntoIterator<Item = (&'a str, u64)>) -> u64 {
    counts
        .into_iter()
        .map(|(w, c)| {
            let k = u64::from_str_radix(&w[1..], 36).expect("a W8 word is w<base 36>");
            c.wrapping_mul(k + 1)
        })
        .fold(0u64, u64::wrapping_add)
}
