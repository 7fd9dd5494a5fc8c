//! `RelPath`: the only path type that crosses a crate or the wire.
//!
//! A `RelPath` is relative, `/`-separated, UTF-8 in NFC, with no empty, `.` or `..` component and
//! no NUL; the empty path is the root of a tree. Every outside spelling (OS paths, API input) goes
//! through [`RelPath::parse`], so a path that reaches storage can never climb out of its folder.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use unicode_normalization::UnicodeNormalization;

use crate::{Error, Result};

/// Longest path accepted, in bytes (the seeds' Linux limit).
pub const MAX_PATH_BYTES: usize = 2048;
/// Longest single name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// True when `name` is already in Unicode NFC (the form every path travels in).
pub fn is_nfc(name: &str) -> bool {
    unicode_normalization::is_nfc(name)
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelPath(String);

impl RelPath {
    /// The root of a tree (the empty path).
    pub fn root() -> Self {
        Self(String::new())
    }

    /// Validates and normalises (to NFC) a `/`-separated relative path; `""` is the root.
    ///
    /// # Errors
    /// A leading `/`, an empty, `.` or `..` component, a NUL byte, a name over 255 bytes or a
    /// path over 2048 bytes; the error names the path.
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidPath {
            path: raw.chars().take(300).collect(),
            reason,
        };
        if raw.is_empty() {
            return Ok(Self::root());
        }
        if raw.contains('\0') {
            return Err(bad("contains a NUL byte"));
        }
        if raw.starts_with('/') {
            return Err(bad("must be relative"));
        }
        let normal: String = if is_nfc(raw) {
            raw.to_string()
        } else {
            raw.nfc().collect()
        };
        if normal.len() > MAX_PATH_BYTES {
            return Err(bad("longer than 2048 bytes"));
        }
        for part in normal.split('/') {
            match part {
                "" => return Err(bad("has an empty component")),
                "." | ".." => return Err(bad("has a '.' or '..' component")),
                _ if part.len() > MAX_NAME_BYTES => {
                    return Err(bad("has a name longer than 255 bytes"))
                }
                _ => {}
            }
        }
        Ok(Self(normal))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last component; empty for the root.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// The parent path; `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => RelPath(self.0[..i].to_string()),
            None => RelPath::root(),
        })
    }

    /// Appends one validated name.
    ///
    /// # Errors
    /// When `name` is not a single valid component.
    pub fn join(&self, name: &str) -> Result<RelPath> {
        if name.contains('/') || name.is_empty() {
            return Err(Error::InvalidPath {
                path: format!("{}/{}", self.0, name),
                reason: "a name must be one non-empty component",
            });
        }
        if self.is_root() {
            RelPath::parse(name)
        } else {
            RelPath::parse(&format!("{}/{}", self.0, name))
        }
    }

    /// Appends a relative path below this one, keeping the [`MAX_PATH_BYTES`] limit that
    /// [`RelPath::parse`] enforces: a path from the network joined below a longer local one
    /// may exceed it.
    ///
    /// # Errors
    /// When the joined path would be longer than [`MAX_PATH_BYTES`]; the error names it.
    pub fn try_join_path(&self, rest: &RelPath) -> Result<RelPath> {
        let joined = self.join_unchecked(rest);
        if joined.0.len() > MAX_PATH_BYTES {
            return Err(Error::InvalidPath {
                path: joined.0.chars().take(300).collect(),
                reason: "longer than 2048 bytes once joined below its folder",
            });
        }
        Ok(joined)
    }

    /// Appends a relative path below this one where the result is known to fit: `rest` was
    /// stripped from a path below `self`, or checked against the limit beforehand (the
    /// scanner holds back local paths too long for their remote prefix). Anything else, and
    /// every path that came from the network, goes through [`RelPath::try_join_path`].
    pub fn join_path(&self, rest: &RelPath) -> RelPath {
        let joined = self.join_unchecked(rest);
        debug_assert!(
            joined.0.len() <= MAX_PATH_BYTES,
            "join_path over the path limit: use try_join_path"
        );
        joined
    }

    fn join_unchecked(&self, rest: &RelPath) -> RelPath {
        match (self.is_root(), rest.is_root()) {
            (true, _) => rest.clone(),
            (_, true) => self.clone(),
            _ => RelPath(format!("{}/{}", self.0, rest.0)),
        }
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    /// The part of `self` below `prefix`, when it lies below it.
    pub fn strip_prefix(&self, prefix: &RelPath) -> Option<RelPath> {
        if prefix.is_root() {
            return Some(self.clone());
        }
        if self.0 == prefix.0 {
            return Some(RelPath::root());
        }
        if self.starts_with(prefix) {
            return Some(RelPath(self.0[prefix.0.len() + 1..].to_string()));
        }
        None
    }

    /// Key under which names that differ only in case collide (case-insensitive file systems).
    pub fn case_key(&self) -> String {
        self.0.to_lowercase()
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str("/")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RelPath::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn refuses_escapes() {
        for bad in [
            "/etc/passwd",
            "a/../b",
            "..",
            "./a",
            "a//b",
            "a/",
            "a\0b",
            "a/.",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RelPath::parse(&"x".repeat(256)).is_err());
        assert!(RelPath::parse(&["y"; 1100].join("/")).is_err());
    }

    #[test]
    fn normalises_to_nfc() {
        let decomposed = "cafe\u{301}/x";
        let p = RelPath::parse(decomposed).expect("valid");
        assert_eq!(p.as_str(), "caf\u{e9}/x");
    }

    #[test]
    fn prefix_is_component_wise() {
        let a = RelPath::parse("a/bc").expect("valid");
        let b = RelPath::parse("a/b").expect("valid");
        assert!(!a.starts_with(&b));
        assert_eq!(
            a.strip_prefix(&RelPath::parse("a").expect("valid"))
                .map(|p| p.0),
            Some("bc".into())
        );
        assert_eq!(a.parent().map(|p| p.0), Some("a".into()));
    }

    #[test]
    fn a_join_over_the_path_limit_is_refused() {
        // A server path restored below a local folder name longer than its own prefix.
        let long = RelPath::parse(&vec!["n".repeat(200); 10].join("/")).expect("2009 bytes");
        let fits = RelPath::parse(&"d".repeat(38)).expect("valid");
        assert_eq!(
            fits.try_join_path(&long)
                .expect("38 + 1 + 2009 = 2048")
                .as_str()
                .len(),
            MAX_PATH_BYTES
        );
        let over = RelPath::parse(&"d".repeat(39)).expect("valid");
        let refused = over.try_join_path(&long).expect_err("2049 bytes");
        assert!(
            refused.to_string().contains("longer than 2048 bytes"),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("ddd/nnn"),
            "names the path: {refused}"
        );
    }

    #[test]
    fn a_join_below_or_of_the_root_is_the_other_path() {
        let a = RelPath::parse("a/b").expect("valid");
        assert_eq!(RelPath::root().try_join_path(&a).expect("fits"), a);
        assert_eq!(a.try_join_path(&RelPath::root()).expect("fits"), a);
        assert_eq!(
            a.try_join_path(&RelPath::parse("c").expect("valid"))
                .expect("fits")
                .as_str(),
            "a/b/c"
        );
    }

    proptest! {
        #[test]
        fn parse_is_idempotent_and_never_escapes(raw in "[a-zA-Z0-9._/\u{e9}\u{301} -]{0,40}") {
            if let Ok(p) = RelPath::parse(&raw) {
                let again = RelPath::parse(p.as_str()).expect("a parsed path parses again");
                prop_assert_eq!(&again, &p);
                prop_assert!(!p.as_str().starts_with('/'));
                prop_assert!(p.components().all(|c| c != ".." && c != "."));
                if !p.is_root() {
                    let parent = p.parent().expect("non-root has a parent");
                    prop_assert_eq!(parent.join(p.name()).expect("rejoin"), p.clone());
                }
            }
        }

        #[test]
        fn a_checked_join_fits_exactly_when_its_spelling_parses(a in 0usize..1200, b in 0usize..1200) {
            let left = RelPath::parse(&vec!["a".repeat(199); 8].join("/")[..a]).ok();
            let right = RelPath::parse(&vec!["b".repeat(199); 8].join("/")[..b]).ok();
            if let (Some(left), Some(right)) = (left, right) {
                let spelled = [left.as_str(), right.as_str()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("/");
                prop_assert_eq!(left.try_join_path(&right).ok(), RelPath::parse(&spelled).ok());
            }
        }
    }
}
