//! Typed ids: a chunk's and a file's BLAKE3 hash, a device id, a journal sequence number.
//!
//! Hashes travel as lowercase hex; parsing refuses anything else so a forged id cannot name a
//! path in the chunk store.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

macro_rules! hash_id {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            pub fn of(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }

            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            pub fn to_hex(&self) -> String {
                blake3::Hash::from_bytes(self.0).to_hex().to_string()
            }

            /// Parses 64 lowercase hex digits.
            ///
            /// # Errors
            /// Anything else, uppercase included, so that one id has one spelling.
            pub fn parse(value: &str) -> Result<Self> {
                // One pass that checks and decodes: listings carry an id per entry.
                fn nibble(b: u8) -> Option<u8> {
                    match b {
                        b'0'..=b'9' => Some(b - b'0'),
                        b'a'..=b'f' => Some(b - b'a' + 10),
                        _ => None,
                    }
                }
                let invalid = || Error::InvalidId {
                    value: value.chars().take(80).collect(),
                    reason: "expected 64 lowercase hex digits",
                };
                let hex = value.as_bytes();
                if hex.len() != 64 {
                    return Err(invalid());
                }
                let mut out = [0u8; 32];
                for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
                    let (Some(hi), Some(lo)) = (nibble(pair[0]), nibble(pair[1])) else {
                        return Err(invalid());
                    };
                    *byte = hi << 4 | lo;
                }
                Ok(Self(out))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                // A visitor, not a `String`: a commit carries hundreds of thousands of ids,
                // and borrowing each from the body saves an allocation apiece.
                struct Hex;
                impl serde::de::Visitor<'_> for Hex {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("64 lowercase hex digits")
                    }
                    fn visit_str<E: serde::de::Error>(
                        self,
                        v: &str,
                    ) -> std::result::Result<$name, E> {
                        $name::parse(v).map_err(E::custom)
                    }
                }
                d.deserialize_str(Hex)
            }
        }
    };
}

hash_id!(
    ChunkId,
    "BLAKE3 of one chunk's bytes; names the chunk everywhere."
);
hash_id!(
    ContentHash,
    "BLAKE3 of a whole file's content (or of a symbolic link's target)."
);

/// Names a pack: one object holding many small chunks side by side.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PackId(pub [u8; 16]);

impl PackId {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 32 lowercase hex digits.
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() != 32
            || !value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in value.as_bytes().chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(text, 16).ok()?;
        }
        Some(PackId(out))
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A journal sequence number: the folder's counter at the change that produced a version.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Seq(pub i64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The identity of one client installation, created once and sent with every change it writes.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(pub String);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_uppercase() {
        let id = ChunkId::of(b"hello");
        assert_eq!(ChunkId::parse(&id.to_hex()).ok(), Some(id));
        assert!(ChunkId::parse(&id.to_hex().to_uppercase()).is_err());
        assert!(ChunkId::parse("../../etc/passwd").is_err());
        // 64 bytes, but not 64 hex digits: a letter past f, a space, a two-byte character.
        let hex = id.to_hex();
        for bad in [
            format!("g{}", &hex[1..]),
            format!("{} ", &hex[..63]),
            format!("\u{e9}{}", &hex[2..]),
        ] {
            assert_eq!(bad.len(), 64);
            assert!(ChunkId::parse(&bad).is_err(), "{bad}");
        }
        let pack = PackId([0xab; 16]);
        assert_eq!(PackId::parse(&pack.to_hex()), Some(pack));
        assert_eq!(PackId::parse("../x"), None);
    }
}
