//! Build identity: what every rank announces at cluster start, so that a task id made on
//! rank 0 (a code offset, see `super::task`) names the same code on every rank.
//!
//! An identity is the image fingerprint the fork server already checks (offsets of a few
//! functions from the anchor, `kind::image_fingerprint`) plus the length and a 64-bit
//! hash of the executable file's bytes (`/proc/self/exe`). Two ranks with equal
//! identities run the same executable; a rebuilt binary, even with the same layout,
//! differs in its hash. Hashing reads the file once per process (tens of milliseconds
//! for a large debug binary), when the first cluster starts.

use std::io::Read;
use std::sync::OnceLock;

use crate::{Error, Result};

/// Words of an announced identity: 3 fingerprint words, file length, file hash.
pub(crate) const WORDS: usize = 5;

/// This process's build identity, or why it cannot be had.
pub(crate) fn local() -> std::result::Result<[u64; WORDS], String> {
    static HASH: OnceLock<std::result::Result<(u64, u64), String>> = OnceLock::new();
    let (len, hash) = HASH
        .get_or_init(|| hash_file("/proc/self/exe").map_err(|e| e.to_string()))
        .clone()
        .map_err(|reason| format!("cannot read /proc/self/exe to hash this build: {reason}"))?;
    let [a, b, c] = crate::kind::image_fingerprint();
    Ok([a, b, c, len, hash])
}

/// Length and hash of a file's bytes (FNV-style multiply-xor over 8-byte words, then a
/// final mix: not cryptographic; it tells builds apart, it does not resist forgery).
fn hash_file(path: &str) -> std::io::Result<(u64, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    loop {
        let got = file.read(&mut buf)?;
        if got == 0 {
            break;
        }
        // Reads may end at any byte; the tail of a read shorter than a word is hashed
        // byte by byte, so the hash depends only on the bytes, not on how reads split.
        let (words, tail) = buf[..got].split_at(got - got % 8);
        for w in words.chunks_exact(8) {
            let v = u64::from_le_bytes(w.try_into().expect("8-byte chunk"));
            h = (h ^ v).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(23);
        }
        for &byte in tail {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        len += got as u64;
    }
    h ^= len;
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    Ok((len, h))
}

/// Compares every rank's identity (`all`, [`WORDS`] words per rank, in rank order)
/// with rank 0's: the first rank that differs, as an error saying what differs.
pub(crate) fn check(all: &[u64]) -> Result<()> {
    let reference = &all[..WORDS];
    for (rank, id) in all.chunks_exact(WORDS).enumerate().skip(1) {
        if id == reference {
            continue;
        }
        let detail = if id[..3] != reference[..3] {
            format!(
                "its code layout differs (image fingerprint {:x?}, rank 0 has {:x?})",
                &id[..3],
                &reference[..3]
            )
        } else {
            format!(
                "its executable differs (length {} hash {:016x}, rank 0 has length {} hash {:016x})",
                id[3], id[4], reference[3], reference[4]
            )
        };
        return Err(Error::BuildMismatch {
            rank: rank as i32,
            detail,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_bytes_only() {
        let dir = std::env::temp_dir().join(format!("procyon-id-{}", std::process::id()));
        std::fs::write(&dir, b"0123456789abcdefXYZ").unwrap();
        let a = hash_file(dir.to_str().unwrap()).unwrap();
        std::fs::write(&dir, b"0123456789abcdefXYz").unwrap();
        let b = hash_file(dir.to_str().unwrap()).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(a.0, 19);
        assert_ne!(a.1, b.1);
    }

    #[test]
    fn check_names_the_first_rank_that_differs() {
        let me = local().unwrap();
        let mut all: Vec<u64> = me.iter().chain(&me).chain(&me).copied().collect();
        assert!(check(&all).is_ok());
        all[2 * WORDS + 4] ^= 1;
        match check(&all) {
            Err(Error::BuildMismatch { rank, detail }) => {
                assert_eq!(rank, 2);
                assert!(detail.contains("executable differs"), "{detail}");
            }
            other => panic!("expected a build mismatch, got {other:?}"),
        }
        all[WORDS] ^= 1;
        match check(&all) {
            Err(Error::BuildMismatch { rank, detail }) => {
                assert_eq!(rank, 1);
                assert!(detail.contains("code layout"), "{detail}");
            }
            other => panic!("expected a build mismatch, got {other:?}"),
        }
    }
}
