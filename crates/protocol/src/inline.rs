//! [`Inline`]: a small file's bytes inside a JSON body: `{"text": "..."}` when they are UTF-8
//! text that JSON carries at no more than base64's cost (most small files people edit), else
//! `{"base64": "..."}` (standard alphabet, padded).

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Bytes carried in JSON, as text or base64.
#[derive(Clone, PartialEq, Eq)]
pub struct Inline(pub Bytes);

/// The length only: content stays out of logs.
impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inline({} bytes)", self.0.len())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Wire<'a> {
    #[serde(borrow)]
    Text(std::borrow::Cow<'a, str>),
    Base64(std::borrow::Cow<'a, str>),
}

/// The bytes JSON needs for `text` inside its quotes.
fn escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

impl Serialize for Inline {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b64_len = self.0.len().div_ceil(3) * 4;
        match std::str::from_utf8(&self.0) {
            Ok(text) if escaped_len(text) <= b64_len => Wire::Text(text.into()).serialize(s),
            _ => Wire::Base64(STANDARD.encode(&self.0).into()).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Inline {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Wire::deserialize(d)? {
            Wire::Text(text) => Ok(Inline(Bytes::from(text.into_owned()))),
            Wire::Base64(b64) => STANDARD
                .decode(b64.as_bytes())
                .map(|v| Inline(Bytes::from(v)))
                .map_err(|e| {
                    serde::de::Error::custom(format!("inline content is not base64: {e}"))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_bytes_travel_as_text_or_base64_and_back() {
        let text = Inline(Bytes::from_static(b"a line\nand \"more\""));
        let json = serde_json::to_string(&text).expect("serialise");
        assert_eq!(json, r#"{"text":"a line\nand \"more\""}"#);
        assert_eq!(serde_json::from_str::<Inline>(&json).expect("parse"), text);
        let binary = Inline(Bytes::from_static(b"\x00hello\xff"));
        let json = serde_json::to_string(&binary).expect("serialise");
        assert_eq!(json, r#"{"base64":"AGhlbGxv/w=="}"#);
        assert_eq!(
            serde_json::from_str::<Inline>(&json).expect("parse"),
            binary
        );
        // Text full of control characters costs more escaped than in base64.
        let controls = Inline(Bytes::from_static(b"\x01\x02\x03\x04\x05\x06"));
        let json = serde_json::to_string(&controls).expect("serialise");
        assert!(json.starts_with(r#"{"base64":"#), "{json}");
        assert!(serde_json::from_str::<Inline>(r#"{"base64":"not base64!"}"#).is_err());
        assert!(serde_json::from_str::<Inline>(r#""bare string""#).is_err());
        assert_eq!(format!("{binary:?}"), "Inline(7 bytes)");
    }
}
