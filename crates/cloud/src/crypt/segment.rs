//! Contents: a file is a 24-byte header (8-byte magic, 16 random bytes) then its plaintext cut
//! into 64 KiB segments, each sealed with XChaCha20-Poly1305 (16-byte tag), the last one
//! possibly shorter (an empty file is one empty segment).
//!
//! A segment's nonce is the file's 16 random bytes followed by its index (big-endian u64), and
//! its associated data is the header followed by one byte, 1 on the last segment and 0
//! elsewhere. So a segment moved to another place or another file, a file cut at a segment
//! boundary, or one with segments added after its end, each fails a tag. Sizes map both ways
//! ([`cipher_size`], [`plain_size`]), so a listing shows real sizes without reading anything.
//!
//! [`Sealer`] and [`Opener`] work one segment at a time on caller buffers: the async streams of
//! the replica and the offline decoder both drive them, and neither ever holds a whole file.

use std::fmt;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};

use super::key::{random, Keys};
use cairn_engine::Result;

/// Plaintext bytes per segment (the last may hold fewer).
pub const SEGMENT: usize = 64 * 1024;
pub const TAG: usize = 16;
/// A whole sealed segment (all but the last are this long).
pub const SEALED_SEGMENT: usize = SEGMENT + TAG;
pub const MAGIC: &[u8; 8] = b"CAIRN-E1";
const FILE_ID: usize = 16;
pub const HEADER: usize = MAGIC.len() + FILE_ID;

/// Segments of a file of `plain` bytes (an empty file has one, empty).
pub fn segments(plain: u64) -> u64 {
    plain.div_ceil(SEGMENT as u64).max(1)
}

/// Stored size of a file of `plain` bytes.
pub fn cipher_size(plain: u64) -> u64 {
    HEADER as u64 + plain + TAG as u64 * segments(plain)
}

/// Plain size of a stored file of `cipher` bytes; `None` when no plain size gives it (the
/// object was cut short, or is not an encrypted file).
pub fn plain_size(cipher: u64) -> Option<u64> {
    let body = cipher.checked_sub(HEADER as u64)?;
    let whole = body / SEALED_SEGMENT as u64;
    let rest = body % SEALED_SEGMENT as u64;
    let plain = match rest {
        // Only full segments: at least one of them.
        0 if whole > 0 => whole * SEGMENT as u64,
        // A bare tag is the empty last segment, which only an empty file has.
        r if r == TAG as u64 && whole == 0 => 0,
        r if r > TAG as u64 => whole * SEGMENT as u64 + r - TAG as u64,
        _ => return None,
    };
    Some(plain)
}

/// Why stored content does not decrypt. The index names the segment, from 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentError {
    /// Does not begin with the magic of this format.
    NotEncrypted,
    /// Too short to hold a header and one tag.
    TooShort,
    /// Fails its tag: altered, moved within the file, or taken from another file.
    Altered(u64),
    /// Authentic, but was not the file's last segment: the rest of the file is missing.
    Truncated(u64),
    /// Authentic, but the file's last segment: something was added after the end.
    Extended(u64),
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::NotEncrypted => {
                f.write_str("not encrypted by cairn (its header is not a cairn header)")
            }
            SegmentError::TooShort => f.write_str("too short to be an encrypted file (truncated?)"),
            SegmentError::Altered(i) => write!(
                f,
                "segment {i} does not authenticate: the stored content was altered, reordered, \
                 or taken from another file"
            ),
            SegmentError::Truncated(i) => write!(
                f,
                "truncated: the stored content ends after segment {i}, which is not the last"
            ),
            SegmentError::Extended(i) => write!(
                f,
                "segment {i} is the last of the file, yet more stored content follows it"
            ),
        }
    }
}

fn cipher(keys: &Keys) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(Key::from_slice(&keys.content))
}

fn nonce(header: &[u8; HEADER], index: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..FILE_ID].copy_from_slice(&header[MAGIC.len()..]);
    n[FILE_ID..].copy_from_slice(&index.to_be_bytes());
    XNonce::from(n)
}

fn aad(header: &[u8; HEADER], last: bool) -> [u8; HEADER + 1] {
    let mut a = [0u8; HEADER + 1];
    a[..HEADER].copy_from_slice(header);
    a[HEADER] = u8::from(last);
    a
}

/// Seals the segments of one file, in order.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    header: [u8; HEADER],
    index: u64,
}

impl Sealer {
    /// A new file: its header (to be stored first) is [`Sealer::header`].
    ///
    /// # Errors
    /// When the operating system gives no random bytes.
    pub(crate) fn new(keys: &Keys) -> Result<Sealer> {
        let mut header = [0u8; HEADER];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        random(&mut header[MAGIC.len()..])?;
        Ok(Sealer {
            cipher: cipher(keys),
            header,
            index: 0,
        })
    }

    /// A file with a given id: an interrupted upload taken up again (its record says the id
    /// is safe to use again, see `resume`), or the format's test vectors.
    pub(crate) fn with_file_id(keys: &Keys, id: [u8; FILE_ID]) -> Sealer {
        let mut header = [0u8; HEADER];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[MAGIC.len()..].copy_from_slice(&id);
        Sealer {
            cipher: cipher(keys),
            header,
            index: 0,
        }
    }

    pub fn header(&self) -> &[u8; HEADER] {
        &self.header
    }

    /// Seals the next segment in place: `buf` holds its plaintext (at most [`SEGMENT`]
    /// bytes) and ends up holding the sealed segment.
    pub fn seal(&mut self, buf: &mut Vec<u8>, last: bool) {
        debug_assert!(buf.len() <= SEGMENT);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                &nonce(&self.header, self.index),
                &aad(&self.header, last),
                buf,
            )
            .expect("XChaCha20-Poly1305 seals any segment of at most 64 KiB");
        buf.extend_from_slice(&tag);
        self.index += 1;
    }
}

/// Opens the segments of one file, in order.
pub struct Opener {
    cipher: XChaCha20Poly1305,
    header: [u8; HEADER],
    index: u64,
}

impl Opener {
    /// Reads a stored file's header.
    pub(crate) fn new(keys: &Keys, header: &[u8]) -> Result<Opener, SegmentError> {
        let header: [u8; HEADER] = header.try_into().map_err(|_| SegmentError::TooShort)?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(SegmentError::NotEncrypted);
        }
        Ok(Opener {
            cipher: cipher(keys),
            header,
            index: 0,
        })
    }

    /// Opens the next segment in place: `buf` holds it sealed (tag included) and ends up
    /// holding its plaintext. `last`: whether the stored content ends with it.
    pub fn open(&mut self, buf: &mut Vec<u8>, last: bool) -> Result<(), SegmentError> {
        let i = self.index;
        if buf.len() < TAG || buf.len() > SEALED_SEGMENT {
            return Err(if last {
                SegmentError::TooShort
            } else {
                SegmentError::Altered(i)
            });
        }
        let body = buf.len() - TAG;
        let tag = Tag::clone_from_slice(&buf[body..]);
        buf.truncate(body);
        let nonce = nonce(&self.header, i);
        if self
            .cipher
            .decrypt_in_place_detached(&nonce, &aad(&self.header, last), buf, &tag)
            .is_ok()
        {
            self.index += 1;
            return Ok(());
        }
        // Failed (and `buf` untouched): try the other flag, only to say what happened.
        let other = self
            .cipher
            .decrypt_in_place_detached(&nonce, &aad(&self.header, !last), buf, &tag)
            .is_ok();
        buf.clear();
        Err(match (other, last) {
            (true, true) => SegmentError::Truncated(i),
            (true, false) => SegmentError::Extended(i),
            (false, _) => SegmentError::Altered(i),
        })
    }
}

/// Encrypts a whole small file.
pub(crate) fn seal_all(keys: &Keys, plain: &[u8]) -> Result<Vec<u8>> {
    let mut sealer = Sealer::new(keys)?;
    let mut out = Vec::with_capacity(cipher_size(plain.len() as u64) as usize);
    out.extend_from_slice(sealer.header());
    let count = segments(plain.len() as u64) as usize;
    let mut buf = Vec::with_capacity(SEALED_SEGMENT);
    for i in 0..count {
        let end = plain.len().min((i + 1) * SEGMENT);
        buf.clear();
        buf.extend_from_slice(&plain[i * SEGMENT..end]);
        sealer.seal(&mut buf, i + 1 == count);
        out.extend_from_slice(&buf);
    }
    Ok(out)
}

/// Decrypts a whole small stored file.
pub(crate) fn open_all(keys: &Keys, stored: &[u8]) -> Result<Vec<u8>, SegmentError> {
    if stored.len() < HEADER + TAG {
        return Err(
            if stored.len() >= MAGIC.len() && &stored[..MAGIC.len()] != MAGIC {
                SegmentError::NotEncrypted
            } else {
                SegmentError::TooShort
            },
        );
    }
    let mut opener = Opener::new(keys, &stored[..HEADER])?;
    let body = &stored[HEADER..];
    let mut out = Vec::with_capacity(body.len());
    let mut buf = Vec::with_capacity(SEALED_SEGMENT);
    let mut pieces = body.chunks(SEALED_SEGMENT).peekable();
    while let Some(piece) = pieces.next() {
        buf.clear();
        buf.extend_from_slice(piece);
        opener.open(&mut buf, pieces.peek().is_none())?;
        out.extend_from_slice(&buf);
    }
    Ok(out)
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
    fn sizes_map_both_ways_and_nothing_else_is_a_size() {
        let s = SEGMENT as u64;
        for plain in [0, 1, s - 1, s, s + 1, 2 * s, 3 * s + 5] {
            assert_eq!(plain_size(cipher_size(plain)), Some(plain), "{plain}");
        }
        assert_eq!(cipher_size(0), 40);
        assert_eq!(cipher_size(s), 24 + s + 16);
        assert_eq!(cipher_size(s + 1), 24 + s + 1 + 32);
        // Every stored size up to three segments is either exactly one plain size's or none.
        let end = 3 * SEALED_SEGMENT as u64 + HEADER as u64 + 40;
        let mut seen = 0;
        for c in 0..end {
            if let Some(p) = plain_size(c) {
                assert_eq!(cipher_size(p), c);
                seen += 1;
            }
        }
        // ... and every plain size below the range is reached.
        assert_eq!(seen, (0..4 * s).filter(|&p| cipher_size(p) < end).count());
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let k = keys();
        let plain: Vec<u8> = (0..3 * SEGMENT + 7).map(|i| i as u8).collect();
        let stored = seal_all(&k, &plain).expect("seal");
        assert_eq!(open_all(&k, &stored).as_deref(), Ok(&plain[..]));

        let mut flipped = stored.clone();
        flipped[HEADER + SEALED_SEGMENT + 100] ^= 1;
        assert_eq!(open_all(&k, &flipped), Err(SegmentError::Altered(1)));

        let cut = &stored[..HEADER + 2 * SEALED_SEGMENT];
        assert_eq!(open_all(&k, cut), Err(SegmentError::Truncated(1)));

        // Two full segments, then a copy of the first appended after the last.
        let even = seal_all(&k, &plain[..2 * SEGMENT]).expect("seal");
        let mut longer = even.clone();
        longer.extend_from_slice(&even[HEADER..HEADER + SEALED_SEGMENT]);
        assert_eq!(open_all(&k, &longer), Err(SegmentError::Extended(1)));

        let mut swapped = stored[..HEADER].to_vec();
        swapped.extend_from_slice(&stored[HEADER + SEALED_SEGMENT..HEADER + 2 * SEALED_SEGMENT]);
        swapped.extend_from_slice(&stored[HEADER..HEADER + SEALED_SEGMENT]);
        swapped.extend_from_slice(&stored[HEADER + 2 * SEALED_SEGMENT..]);
        assert_eq!(open_all(&k, &swapped), Err(SegmentError::Altered(0)));

        let mut plain_text = b"just some text".to_vec();
        plain_text.resize(100, b'x');
        assert_eq!(open_all(&k, &plain_text), Err(SegmentError::NotEncrypted));
        assert_eq!(open_all(&k, &stored[..30]), Err(SegmentError::TooShort));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_size_round_trips(len in 0usize..(3 * SEGMENT + 100), seed in any::<u8>()) {
            let k = keys();
            let plain: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            let stored = seal_all(&k, &plain).expect("seal");
            prop_assert_eq!(stored.len() as u64, cipher_size(len as u64));
            prop_assert_eq!(plain_size(stored.len() as u64), Some(len as u64));
            prop_assert_eq!(open_all(&k, &stored).expect("open"), plain);
        }
    }
}
