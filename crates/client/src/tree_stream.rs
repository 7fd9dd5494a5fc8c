//! A tree listing read entry by entry: a folder of a million files answers with hundreds of
//! megabytes of JSON, which must not sit in memory more than once (a buffer doubling as it
//! grows, then every parsed entry beside it). The body is kept as the pieces it arrived in,
//! joined once into a buffer of its exact size (each piece freed as it is copied), and each
//! entry goes to the caller as soon as it is parsed.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;
use cairn_model::{RelPath, Seq};
use cairn_protocol::VersionInfo;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A body as the pieces it arrived in.
pub(crate) struct Pieces(pub(crate) VecDeque<Bytes>);

impl Pieces {
    /// One buffer of exactly the body's size; each piece is freed once copied. (Parsing from a
    /// slice is about twice as fast as from a reader over the pieces.)
    pub(crate) fn join(mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.iter().map(Bytes::len).sum());
        while let Some(piece) = self.0.pop_front() {
            out.extend_from_slice(&piece);
        }
        out
    }
}

/// Parses a tree answer (`{"entries": [...], "head": N}`, keys in any order) from `body`,
/// handing each entry to `each` in turn; every entry must lie under `prefix`. Returns the
/// head.
///
/// # Errors
/// A body that is not such an answer, or an entry outside `prefix`, with what is wrong.
pub(crate) fn parse_tree(
    body: Pieces,
    prefix: &RelPath,
    each: &mut (dyn FnMut(VersionInfo) + Send),
) -> Result<Seq, String> {
    let body = body.join();
    let mut de = serde_json::Deserializer::from_slice(&body);
    let head = TreeSeed { prefix, each }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(head)
}

struct TreeSeed<'a> {
    prefix: &'a RelPath,
    each: &'a mut (dyn FnMut(VersionInfo) + Send),
}

impl<'de> DeserializeSeed<'de> for TreeSeed<'_> {
    type Value = Seq;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Seq, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TreeSeed<'_> {
    type Value = Seq;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tree answer with entries and a head")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Seq, A::Error> {
        let (mut head, mut entries) = (None, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "entries" if !entries => {
                    entries = true;
                    map.next_value_seed(EntriesSeed {
                        prefix: self.prefix,
                        each: &mut *self.each,
                    })?;
                }
                "head" if head.is_none() => head = Some(map.next_value::<Seq>()?),
                "entries" | "head" => {
                    return Err(serde::de::Error::custom(format!("duplicate field `{key}`")))
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !entries {
            return Err(serde::de::Error::missing_field("entries"));
        }
        head.ok_or_else(|| serde::de::Error::missing_field("head"))
    }
}

struct EntriesSeed<'a> {
    prefix: &'a RelPath,
    each: &'a mut (dyn FnMut(VersionInfo) + Send),
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of versions")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<VersionInfo>()? {
            if !v.path.starts_with(self.prefix) {
                return Err(serde::de::Error::custom(format!(
                    "entry {} is outside the listed prefix {}",
                    v.path, self.prefix
                )));
            }
            (self.each)(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: &str, size: usize) -> Pieces {
        Pieces(
            s.as_bytes()
                .chunks(size)
                .map(Bytes::copy_from_slice)
                .collect(),
        )
    }

    fn version(path: &str, seq: i64) -> serde_json::Value {
        let v = VersionInfo {
            path: RelPath::parse(path).expect("a test path"),
            seq: Seq(seq),
            entry: cairn_model::Entry::dir(1, 0o755),
            device: cairn_model::DeviceId("d1".into()),
            user: "u".into(),
            computer: "c".into(),
            committed_ns: 5,
            inline: None,
        };
        serde_json::to_value(v).expect("a version serialises")
    }

    fn parse(body: &str, prefix: &str, size: usize) -> Result<(Seq, Vec<String>), String> {
        let mut seen = Vec::new();
        let prefix = RelPath::parse(prefix).map_err(|e| e.to_string())?;
        let head = parse_tree(pieces(body, size), &prefix, &mut |v| {
            seen.push(v.path.to_string())
        })?;
        Ok((head, seen))
    }

    #[test]
    fn entries_arrive_in_order_whatever_the_pieces_and_key_order() {
        let body = serde_json::json!({
            "head": 9, "extra": [1, {"a": "}"}],
            "entries": [version("d/a", 1), version("d/b\"}]", 2)],
        })
        .to_string();
        for size in [1, 3, 7, 4096] {
            let (head, seen) = parse(&body, "d", size).expect("a good answer parses");
            assert_eq!(head, Seq(9));
            assert_eq!(seen, ["d/a", "d/b\"}]"]);
        }
    }

    #[test]
    fn a_broken_or_stray_answer_is_refused_with_what_is_wrong() {
        let stray = serde_json::json!({"entries": [version("e/x", 1)], "head": 1}).to_string();
        assert!(parse(&stray, "d", 5)
            .expect_err("refused")
            .contains("outside the listed prefix"));
        let no_head = serde_json::json!({"entries": []}).to_string();
        assert!(parse(&no_head, "", 5)
            .expect_err("refused")
            .contains("head"));
        let twice = r#"{"entries": [], "head": 1, "head": 2}"#;
        assert!(parse(twice, "", 5)
            .expect_err("refused")
            .contains("duplicate"));
        let cut = &stray[..stray.len() - 4];
        assert!(parse(cut, "", 5).is_err());
        let trailing = format!("{stray} x");
        assert!(parse(&trailing, "", 5).is_err());
    }
}
