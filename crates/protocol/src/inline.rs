//! [`Inline`]: a small file's bytes inside a JSON body, as base64 (standard alphabet, padded).

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Bytes carried in JSON as a base64 string.
#[derive(Clone, PartialEq, Eq)]
pub struct Inline(pub Bytes);

/// The length only: content stays out of logs.
impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inline({} bytes)", self.0.len())
    }
}

impl Serialize for Inline {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Inline {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map(|v| Inline(Bytes::from(v)))
            .map_err(|e| serde::de::Error::custom(format!("inline content is not base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_bytes_round_trip_as_base64() {
        let i = Inline(Bytes::from_static(b"\x00hello\xff"));
        let json = serde_json::to_string(&i).expect("serialise");
        assert_eq!(json, r#""AGhlbGxv/w==""#);
        let back: Inline = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, i);
        assert!(serde_json::from_str::<Inline>(r#""not base64!""#).is_err());
        assert_eq!(format!("{i:?}"), "Inline(7 bytes)");
    }
}
