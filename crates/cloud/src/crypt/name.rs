//! Names: each path component encrypted on its own, deterministically, and written in
//! lowercase base32 so that any store (case-insensitive, Unicode-normalising, picky about
//! punctuation) keeps it as written.
//!
//! Deterministic, so one plain name is always one stored name: listings, stats and renames
//! map 1:1, and renaming a folder renames one object name, not everything below it. The
//! construction is SIV: a 16-byte synthetic IV, keyed BLAKE3 of the name, doubles as the
//! authentication tag and as the nonce of XChaCha20 over the name. A stored name is
//! `base32(siv || ciphertext)`: 16 bytes of overhead, then 8/5 for the encoding, so a name of
//! `n` bytes is stored as `ceil((n + 16) * 8 / 5)` characters (255 characters hold 143 bytes).
//! The alternative, a random nonce per name, would make the same name differ on every upload
//! and break the 1:1 mapping.

use std::fmt;

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::XChaCha20;

use super::key::Keys;

const SIV_LEN: usize = 16;
/// Domain bytes of the SIV's input: a name never authenticates as a link target.
const DOMAIN_NAME: u8 = 1;
const DOMAIN_TARGET: u8 = 2;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a stored name gives no plain name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NameError {
    /// Not in the form cairn writes (not lowercase base32, too short): something else put it
    /// there.
    Foreign,
    /// In cairn's form but does not authenticate: altered, or written under another key.
    Damaged,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Foreign => "not an encrypted name (not written by cairn); left alone",
            NameError::Damaged => {
                "an encrypted name that does not decrypt (altered, or encrypted with another key)"
            }
        })
    }
}

/// Characters a name of `plain_bytes` bytes takes once encrypted.
pub fn encrypted_name_len(plain_bytes: usize) -> usize {
    ((plain_bytes + SIV_LEN) * 8).div_ceil(5)
}

/// The longest plain name (bytes) whose encrypted form fits in `stored_max` characters.
pub fn max_plain_name_len(stored_max: usize) -> usize {
    (stored_max * 5 / 8).saturating_sub(SIV_LEN)
}

/// The stored form of the path component `name`.
pub(crate) fn encrypt_name(keys: &Keys, name: &str) -> String {
    base32(&seal(keys, DOMAIN_NAME, name.as_bytes()))
}

/// The plain path component stored as `stored`.
pub(crate) fn decrypt_name(keys: &Keys, stored: &str) -> Result<String, NameError> {
    let bytes = unbase32(stored).ok_or(NameError::Foreign)?;
    let plain = open(keys, DOMAIN_NAME, &bytes)?;
    let name = String::from_utf8(plain).map_err(|_| NameError::Damaged)?;
    // Authentic yet not one component can only come from another program with the key.
    if name.is_empty() || name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Err(NameError::Damaged);
    }
    Ok(name)
}

/// The stored form of a link target (any string, slashes included).
pub(crate) fn encrypt_target(keys: &Keys, target: &str) -> String {
    base32(&seal(keys, DOMAIN_TARGET, target.as_bytes()))
}

pub(crate) fn decrypt_target(keys: &Keys, stored: &str) -> Result<String, NameError> {
    let bytes = unbase32(stored).ok_or(NameError::Foreign)?;
    String::from_utf8(open(keys, DOMAIN_TARGET, &bytes)?).map_err(|_| NameError::Damaged)
}

fn synthetic_iv(keys: &Keys, domain: u8, plain: &[u8]) -> [u8; SIV_LEN] {
    let mut mac = blake3::Hasher::new_keyed(&keys.name_siv);
    mac.update(&[domain]);
    mac.update(plain);
    let mut siv = [0u8; SIV_LEN];
    siv.copy_from_slice(&mac.finalize().as_bytes()[..SIV_LEN]);
    siv
}

/// XChaCha20 keystream over `data`, nonce = the SIV followed by eight zero bytes.
fn apply_keystream(keys: &Keys, siv: &[u8; SIV_LEN], data: &mut [u8]) {
    let mut nonce = [0u8; 24];
    nonce[..SIV_LEN].copy_from_slice(siv);
    XChaCha20::new((&keys.name_cipher).into(), (&nonce).into()).apply_keystream(data);
}

fn seal(keys: &Keys, domain: u8, plain: &[u8]) -> Vec<u8> {
    let siv = synthetic_iv(keys, domain, plain);
    let mut out = Vec::with_capacity(SIV_LEN + plain.len());
    out.extend_from_slice(&siv);
    out.extend_from_slice(plain);
    apply_keystream(keys, &siv, &mut out[SIV_LEN..]);
    out
}

fn open(keys: &Keys, domain: u8, sealed: &[u8]) -> Result<Vec<u8>, NameError> {
    // An empty plain name is never written, so a bare SIV is not cairn's either.
    if sealed.len() <= SIV_LEN {
        return Err(NameError::Foreign);
    }
    let mut siv = [0u8; SIV_LEN];
    siv.copy_from_slice(&sealed[..SIV_LEN]);
    let mut plain = sealed[SIV_LEN..].to_vec();
    apply_keystream(keys, &siv, &mut plain);
    let want = synthetic_iv(keys, domain, &plain);
    // Constant time, though a listing's names hardly make a timing oracle.
    let differ = want.iter().zip(&siv).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if differ != 0 {
        return Err(NameError::Damaged);
    }
    Ok(plain)
}

/// RFC 4648 base32, lowercase, without padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encrypted_name_len(bytes.len()));
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The bytes of a lowercase, unpadded base32 text; `None` unless it is the one canonical
/// spelling of them (no other length, no stray trailing bits), so two stored names never
/// decode to one plain name.
fn unbase32(text: &str) -> Option<Vec<u8>> {
    // Lengths 1, 3 and 6 (mod 8) are no whole number of bytes.
    if matches!(text.len() % 8, 1 | 3 | 6) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::crypt::key::MasterKey;

    fn keys() -> Keys {
        Keys::derive(&MasterKey::generate().expect("random key"))
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 section 10, lowercased and without padding.
        for (plain, coded) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32(plain.as_bytes()), coded);
            assert_eq!(unbase32(coded).as_deref(), Some(plain.as_bytes()));
        }
    }

    #[test]
    fn base32_refuses_non_canonical_spellings() {
        // Same bytes with stray trailing bits, uppercase, padding, a bad length.
        for bad in ["mz", "MY", "my======", "m", "mzx", "my_"] {
            assert_eq!(unbase32(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_are_deterministic_lowercase_and_reversible() {
        let k = keys();
        let name = "Réunion — 日本語 📁.txt";
        let a = encrypt_name(&k, name);
        assert_eq!(a, encrypt_name(&k, name));
        assert_ne!(a, encrypt_name(&k, "réunion — 日本語 📁.txt"));
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
        assert_eq!(a.len(), encrypted_name_len(name.len()));
        assert_eq!(decrypt_name(&k, &a).as_deref(), Ok(name));
        // Another key reads nothing.
        assert_eq!(decrypt_name(&keys(), &a), Err(NameError::Damaged));
    }

    #[test]
    fn altered_and_foreign_names_are_told_apart() {
        let k = keys();
        let stored = encrypt_name(&k, "report.pdf");
        let mut altered = stored.clone().into_bytes();
        altered[5] = if altered[5] == b'a' { b'b' } else { b'a' };
        let altered = String::from_utf8(altered).expect("ascii");
        assert_eq!(decrypt_name(&k, &altered), Err(NameError::Damaged));
        assert_eq!(decrypt_name(&k, "README.md"), Err(NameError::Foreign));
        assert_eq!(decrypt_name(&k, "abc"), Err(NameError::Foreign));
        // A link target is not a name, even with the same bytes.
        assert_eq!(
            decrypt_name(&k, &encrypt_target(&k, "report.pdf")),
            Err(NameError::Damaged)
        );
        assert_eq!(
            decrypt_target(&k, &encrypt_target(&k, "../a/b")).as_deref(),
            Ok("../a/b")
        );
    }

    #[test]
    fn length_limits_are_exact() {
        assert_eq!(max_plain_name_len(255), 143);
        assert!(encrypted_name_len(143) <= 255);
        assert!(encrypted_name_len(144) > 255);
        for stored in [32, 100, 255, 1024] {
            let n = max_plain_name_len(stored);
            assert!(encrypted_name_len(n) <= stored);
            assert!(encrypted_name_len(n + 1) > stored);
        }
    }

    proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = base32(&bytes);
            prop_assert_eq!(text.len(), (bytes.len() * 8).div_ceil(5));
            prop_assert_eq!(unbase32(&text), Some(bytes));
        }
    }
}
