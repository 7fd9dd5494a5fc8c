//! A tree listing read entry by entry as it arrives: a folder of a million files answers with
//! hundreds of megabytes of JSON, which must not sit in memory at all. The body is scanned
//! piece by piece; each entry of its `entries` list is cut out, parsed and handed to the caller
//! as soon as its last byte is in, then dropped. What is left of the body, each entry replaced
//! by `0` (two bytes an entry), is parsed at the end as the whole answer: that checks its shape
//! (keys, commas, the head) as strictly as parsing the body whole would.

use std::fmt;

use cairn_model::{RelPath, Seq};
use cairn_protocol::VersionInfo;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Cuts the entries out of a tree answer (`{"entries": [...], "head": N}`, keys in any
/// order) fed to it in pieces.
pub(crate) struct TreeSplitter<'a> {
    prefix: &'a RelPath,
    each: &'a mut (dyn FnMut(VersionInfo) + Send),
    /// The body outside the entries, each entry replaced by `0`.
    skeleton: Vec<u8>,
    /// The entry being read, while one is.
    entry: Vec<u8>,
    /// Open objects and lists around the byte being read.
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At depth 1, the next string is a key of the answer.
    expect_key: bool,
    reading_key: bool,
    /// The last key of the answer read (raw bytes, bounded).
    key: Vec<u8>,
    /// Inside the list under the answer's `entries` key.
    in_entries: bool,
    /// Inside one of its entries.
    in_entry: bool,
    cut: u64,
}

/// Longer keys are not ours: kept only up to this many bytes.
const KEY_MAX: usize = 16;

impl<'a> TreeSplitter<'a> {
    /// A splitter handing each entry (which must lie under `prefix`) to `each`.
    pub(crate) fn new(prefix: &'a RelPath, each: &'a mut (dyn FnMut(VersionInfo) + Send)) -> Self {
        Self {
            prefix,
            each,
            skeleton: Vec::new(),
            entry: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            expect_key: false,
            reading_key: false,
            key: Vec::new(),
            in_entries: false,
            in_entry: false,
            cut: 0,
        }
    }

    /// Takes the next piece of the body.
    ///
    /// # Errors
    /// An entry that is not a version, or one outside the prefix.
    pub(crate) fn feed(&mut self, piece: &[u8]) -> Result<(), String> {
        // Bytes are copied in runs, not one by one: `from` is where the current run began.
        let mut from = 0;
        let mut i = 0;
        while i < piece.len() {
            if self.in_string && !self.escaped && !self.reading_key {
                // Most of a body is inside strings (paths, hashes, names): jump to the next
                // byte that can end one.
                match memchr::memchr2(b'"', b'\\', &piece[i..]) {
                    Some(n) => i += n,
                    None => break,
                }
            }
            let b = piece[i];
            i += 1;
            if self.in_string {
                if self.reading_key && !self.escaped && b != b'"' && self.key.len() < KEY_MAX {
                    self.key.push(b);
                }
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    self.reading_key = false;
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 && self.expect_key {
                        self.expect_key = false;
                        self.reading_key = true;
                        self.key.clear();
                    }
                }
                b',' if self.depth == 1 => self.expect_key = true,
                b'{' | b'[' => {
                    if self.in_entries && !self.in_entry && self.depth == 2 && b == b'{' {
                        self.skeleton.extend_from_slice(&piece[from..i - 1]);
                        self.skeleton.push(b'0');
                        from = i - 1;
                        self.in_entry = true;
                    }
                    self.depth += 1;
                    match (self.depth, b) {
                        (1, b'{') => self.expect_key = true,
                        (2, b'[') => self.in_entries = self.key == b"entries",
                        _ => {}
                    }
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.in_entry && self.depth == 2 {
                        self.entry.extend_from_slice(&piece[from..i]);
                        from = i;
                        self.in_entry = false;
                        self.hand_over()?;
                    } else if self.depth == 1 {
                        self.in_entries = false;
                    }
                }
                _ => {}
            }
        }
        let rest = &piece[from..];
        if self.in_entry {
            self.entry.extend_from_slice(rest);
        } else {
            self.skeleton.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Parses the entry just cut out and hands it over.
    fn hand_over(&mut self) -> Result<(), String> {
        let v: VersionInfo = serde_json::from_slice(&self.entry).map_err(|e| e.to_string())?;
        self.entry.clear();
        if !v.path.starts_with(self.prefix) {
            return Err(format!(
                "entry {} is outside the listed prefix {}",
                v.path, self.prefix
            ));
        }
        self.cut += 1;
        (self.each)(v);
        Ok(())
    }

    /// The end of the body: checks the answer's shape and returns its head.
    ///
    /// # Errors
    /// A body that is not such an answer (cut short, a key twice, no head, an entry that is
    /// not an object), with what is wrong.
    pub(crate) fn finish(self) -> Result<Seq, String> {
        let mut de = serde_json::Deserializer::from_slice(&self.skeleton);
        let (head, listed) = SkeletonSeed
            .deserialize(&mut de)
            .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        // Everything the answer lists must have been cut out and checked as an entry.
        if listed != self.cut {
            return Err(format!(
                "{listed} entries listed but {} of them read as versions",
                self.cut
            ));
        }
        Ok(head)
    }
}

/// The answer with its entries replaced: the head, and how many entries there were.
struct SkeletonSeed;

impl<'de> DeserializeSeed<'de> for SkeletonSeed {
    type Value = (Seq, u64);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SkeletonSeed {
    type Value = (Seq, u64);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tree answer with entries and a head")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut head, mut entries) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "entries" if entries.is_none() => entries = Some(map.next_value_seed(Count)?),
                "head" if head.is_none() => head = Some(map.next_value::<Seq>()?),
                "entries" | "head" => {
                    return Err(serde::de::Error::custom(format!("duplicate field `{key}`")))
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let entries = entries.ok_or_else(|| serde::de::Error::missing_field("entries"))?;
        let head = head.ok_or_else(|| serde::de::Error::missing_field("head"))?;
        Ok((head, entries))
    }
}

/// Counts the items of a list.
struct Count;

impl<'de> DeserializeSeed<'de> for Count {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Count {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of versions")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut each = |v: VersionInfo| seen.push(v.path.to_string());
        let mut splitter = TreeSplitter::new(&prefix, &mut each);
        for piece in body.as_bytes().chunks(size) {
            splitter.feed(piece)?;
        }
        let head = splitter.finish()?;
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

    #[test]
    fn whatever_the_skeleton_hides_the_answer_is_checked_as_a_whole() {
        let one = version("d/a", 1).to_string();
        let bad = [
            // No comma between two entries.
            format!(r#"{{"entries": [{one}{one}], "head": 1}}"#),
            // An entry that is not an object, beside one that is.
            format!(r#"{{"entries": [0, {one}], "head": 1}}"#),
            // A list inside the list.
            format!(r#"{{"entries": [[{one}]], "head": 1}}"#),
            // The key written with an escape: its entries are never cut out, so refused.
            format!(r#"{{"\u0065ntries": [{one}], "entries": [], "head": 1}}"#),
            // Two lists of entries.
            format!(r#"{{"entries": [{one}], "entries": [{one}], "head": 1}}"#),
            // Not an object at all.
            format!("[{one}]"),
            // An entry that is not a version.
            r#"{"entries": [{"path": 5}], "head": 1}"#.to_string(),
        ];
        for body in bad {
            for size in [1, 2, 9, 4096] {
                assert!(parse(&body, "", size).is_err(), "accepted: {body}");
            }
        }
        let spaced = format!("{{ \"entries\" : [ {one} ,\n {one} ] , \"head\" : 3 }}");
        let (head, seen) = parse(&spaced, "d", 2).expect("whitespace is fine");
        assert_eq!((head, seen.len()), (Seq(3), 2));
    }
}
