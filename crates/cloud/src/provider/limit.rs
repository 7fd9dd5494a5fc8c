//! What a path and an object may be on each provider: forbidden characters, reserved names,
//! name and path lengths, object sizes (seed 002's lists, general and per service).
//!
//! [`Provider::check_path`] answers for one stored path and size, with a [`PathRefusal`] that
//! names the path and the rule; the cloud replica reports it and moves on (nothing is dropped
//! without a word). The general rules apply to every provider; a [`PathLimits`] row adds the
//! provider's own. Lengths in the general rules are in characters as seed 002 states them;
//! providers whose APIs count keys in UTF-8 bytes (S3 and its kin, GCS, B2) count bytes, which
//! refuses a long non-ASCII key here rather than at the service.

use std::fmt;

use cairn_model::RelPath;

use super::Provider;

/// Characters no cloud path may contain (seed 002: "As a general rule ... `: \ /`"; `/` is the
/// separator, so it never appears inside a name).
pub const GENERAL_FORBIDDEN_CHARS: &[char] = &[':', '\\'];
/// Longest name on any provider, in characters (seed 002).
pub const GENERAL_MAX_NAME: usize = 255;
/// Longest path on any provider, in characters (seed 002).
pub const GENERAL_MAX_PATH: usize = 2048;

/// How a provider counts a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthUnit {
    Chars,
    Bytes,
}

impl LengthUnit {
    pub fn measure(self, s: &str) -> usize {
        match self {
            LengthUnit::Chars => s.chars().count(),
            LengthUnit::Bytes => s.len(),
        }
    }

    fn word(self) -> &'static str {
        match self {
            LengthUnit::Chars => "characters",
            LengthUnit::Bytes => "bytes",
        }
    }
}

/// A provider's own path rules, on top of the general ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathLimits {
    /// Characters a name may not contain.
    pub forbidden_chars: &'static [char],
    /// Characters a name may not start with (OneDrive: a space).
    pub forbidden_leading: &'static [char],
    /// Characters a name may not end with (OneDrive for Business: a dot).
    pub forbidden_trailing: &'static [char],
    /// Whole names refused, in any ASCII case.
    pub reserved_names: &'static [&'static str],
    /// Name prefixes refused, in any ASCII case.
    pub forbidden_prefixes: &'static [&'static str],
    /// Text a name may not contain, in any ASCII case.
    pub forbidden_parts: &'static [&'static str],
    /// A name of ASCII white space only is refused (GCS: "the name is blank").
    pub blank_name_refused: bool,
    /// Longest name, in `unit`.
    pub max_name: Option<usize>,
    /// Longest path from the bucket's root, in `unit`.
    pub max_path: Option<usize>,
    pub unit: LengthUnit,
    /// Largest object, in bytes.
    pub max_object_size: Option<u64>,
}

/// A provider with no rules of its own: the general ones only.
pub const GENERAL: PathLimits = PathLimits {
    forbidden_chars: &[],
    forbidden_leading: &[],
    forbidden_trailing: &[],
    reserved_names: &[],
    forbidden_prefixes: &[],
    forbidden_parts: &[],
    blank_name_refused: false,
    max_name: None,
    max_path: None,
    unit: LengthUnit::Chars,
    max_object_size: None,
};

/// Why a path cannot be stored on a provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: cannot be stored on {provider}: {reason}")]
pub struct PathRefusal {
    /// The path as the task names it.
    pub path: String,
    pub provider: &'static str,
    pub reason: String,
}

impl PathLimits {
    /// Whether `c` may not appear anywhere in a name here (general or provider rule).
    pub fn forbids_char(&self, c: char) -> bool {
        GENERAL_FORBIDDEN_CHARS.contains(&c) || self.forbidden_chars.contains(&c)
    }

    /// The rule one name breaks, if any (lengths apart).
    pub fn name_problem(&self, name: &str) -> Option<String> {
        if let Some(r) = self
            .reserved_names
            .iter()
            .find(|r| name.eq_ignore_ascii_case(r))
        {
            return Some(format!("the name `{r}` is reserved"));
        }
        if let Some(c) = name.chars().find(|c| self.forbids_char(*c)) {
            return Some(format!("the name contains `{}`", c.escape_debug()));
        }
        if let Some(c) = name
            .chars()
            .next()
            .filter(|c| self.forbidden_leading.contains(c))
        {
            return Some(format!("the name starts with `{}`", c.escape_debug()));
        }
        if let Some(c) = name
            .chars()
            .last()
            .filter(|c| self.forbidden_trailing.contains(c))
        {
            return Some(format!("the name ends with `{}`", c.escape_debug()));
        }
        let lower = name.to_ascii_lowercase();
        if let Some(p) = self
            .forbidden_prefixes
            .iter()
            .find(|p| lower.starts_with(&p.to_ascii_lowercase()))
        {
            return Some(format!("the name starts with `{p}`"));
        }
        if let Some(p) = self
            .forbidden_parts
            .iter()
            .find(|p| lower.contains(&p.to_ascii_lowercase()))
        {
            return Some(format!("the name contains `{p}`"));
        }
        if self.blank_name_refused && name.chars().all(|c| c.is_ascii_whitespace()) {
            return Some("the name is blank".into());
        }
        None
    }

    /// The length rule a name breaks, if any.
    fn name_length_problem(&self, name: &str) -> Option<String> {
        let chars = LengthUnit::Chars.measure(name);
        if chars > GENERAL_MAX_NAME {
            return Some(format!(
                "the name is {chars} characters long (at most {GENERAL_MAX_NAME})"
            ));
        }
        let max = self.max_name?;
        let len = self.unit.measure(name);
        (len > max).then(|| {
            format!(
                "the name is {len} {unit} long (at most {max})",
                unit = self.unit.word()
            )
        })
    }

    /// The length rule a whole path breaks, if any.
    fn path_length_problem(&self, path: &str) -> Option<String> {
        let chars = LengthUnit::Chars.measure(path);
        if chars > GENERAL_MAX_PATH {
            return Some(format!(
                "the path is {chars} characters long (at most {GENERAL_MAX_PATH})"
            ));
        }
        let max = self.max_path?;
        let len = self.unit.measure(path);
        (len > max).then(|| {
            format!(
                "the path is {len} {unit} long (at most {max})",
                unit = self.unit.word()
            )
        })
    }

    /// Every rule for a stored path (`/`-separated, from the bucket's root) and, for a file, its
    /// size; the first broken rule.
    pub fn problem(&self, key: &str, size: Option<u64>) -> Option<String> {
        for name in key.split('/').filter(|n| !n.is_empty()) {
            if let Some(p) = self
                .name_problem(name)
                .or_else(|| self.name_length_problem(name))
            {
                return Some(p);
            }
        }
        if let Some(p) = self.path_length_problem(key) {
            return Some(p);
        }
        match (size, self.max_object_size) {
            (Some(size), Some(max)) if size > max => Some(format!(
                "the file is {size} bytes, over the service's limit of {max} bytes"
            )),
            _ => None,
        }
    }
}

impl Provider {
    /// Checks a stored path (`/`-separated, from the bucket's or account's root, after any name
    /// encoding or encryption) and, for a file, its size against this provider.
    ///
    /// # Errors
    /// The first rule the path breaks, naming the path.
    pub fn check_path(self, key: &str, size: Option<u64>) -> Result<(), PathRefusal> {
        let spec = self.spec();
        match spec.limits.problem(key, size) {
            None => Ok(()),
            Some(reason) => Err(PathRefusal {
                path: key.to_string(),
                provider: spec.display_name,
                reason,
            }),
        }
    }

    /// Checks a task's path `rel` stored under the remote folder `root`; the refusal names `rel`,
    /// the path the user knows.
    ///
    /// # Errors
    /// As [`Provider::check_path`].
    pub fn check_task_path(
        self,
        root: &str,
        rel: &RelPath,
        size: Option<u64>,
    ) -> Result<(), PathRefusal> {
        let root = root.trim_matches('/');
        let key = if root.is_empty() {
            rel.as_str().to_string()
        } else {
            format!("{root}/{rel}")
        };
        self.check_path(&key, size).map_err(|mut refusal| {
            refusal.path = rel.to_string();
            refusal
        })
    }
}

impl fmt::Display for LengthUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{OnedriveKind, S3Preset, SwiftPreset, WebdavPreset, ALL};
    use super::*;

    fn refused(p: Provider, key: &str, size: Option<u64>) -> String {
        match p.check_path(key, size) {
            Ok(()) => panic!("{key} accepted on {}", p.id()),
            Err(r) => r.reason,
        }
    }

    /// An ASCII key of exactly `len` bytes, in names of at most 100.
    fn key_of(len: usize) -> String {
        let mut parts = Vec::new();
        let mut left = len;
        while left > 0 {
            let n = left.min(100);
            parts.push("k".repeat(n));
            left -= n;
            // The separator before the next name.
            left = left.saturating_sub(1);
        }
        let key = parts.join("/");
        assert_eq!(
            key.len(),
            len,
            "a key of {len} bytes cannot end in a separator"
        );
        key
    }

    fn ok(p: Provider, key: &str) {
        if let Err(r) = p.check_path(key, Some(1)) {
            panic!("{key} refused on {}: {r}", p.id());
        }
    }

    #[test]
    fn general_rules_hold_everywhere() {
        for p in ALL.iter().copied() {
            ok(p, "docs/report 2026.txt");
            assert!(refused(p, "a/b:c", None).contains("`:`"));
            assert!(refused(p, "a\\b", None).contains("`\\\\`"));
            let name = "n".repeat(GENERAL_MAX_NAME + 1);
            assert!(refused(p, &name, None).contains("name is 256 characters"));
        }
    }

    #[test]
    fn every_provider_at_its_length_edges() {
        for p in ALL.iter().copied() {
            let l = p.spec().limits;
            let max_path = l.max_path.unwrap_or(GENERAL_MAX_PATH).min(GENERAL_MAX_PATH);
            ok(p, &key_of(max_path));
            let over = refused(p, &key_of(max_path + 1), None);
            assert!(
                over.contains(&format!("at most {max_path})")),
                "{}: {over}",
                p.id()
            );
            let max_name = l.max_name.unwrap_or(GENERAL_MAX_NAME).min(GENERAL_MAX_NAME);
            ok(p, &"n".repeat(max_name));
            let over = refused(p, &"n".repeat(max_name + 1), None);
            assert!(
                over.contains(&format!("at most {max_name})")),
                "{}: {over}",
                p.id()
            );
        }
    }

    #[test]
    fn every_provider_refuses_what_its_row_lists() {
        for p in ALL.iter().copied() {
            let l = p.spec().limits;
            for c in l.forbidden_chars {
                let reason = refused(p, &format!("dir/a{c}b"), None);
                assert!(reason.contains("the name contains"), "{}: {reason}", p.id());
            }
            for c in l.forbidden_leading {
                assert!(refused(p, &format!("{c}x"), None).contains("starts with"));
            }
            for c in l.forbidden_trailing {
                assert!(refused(p, &format!("x{c}"), None).contains("ends with"));
            }
            for r in l.reserved_names {
                assert!(refused(p, &format!("d/{r}"), None).contains("reserved"));
                assert!(refused(p, &r.to_uppercase(), None).contains("reserved"));
                // Only the whole name is reserved (`.` and `..` aside, which are not names).
                if r.len() > 2 {
                    ok(p, &format!("{r}x"));
                }
            }
            for prefix in l.forbidden_prefixes {
                assert!(refused(p, &format!("{prefix}x"), None).contains("starts with"));
            }
            for part in l.forbidden_parts {
                assert!(refused(p, &format!("x{part}x"), None).contains("contains"));
            }
            if let Some(max) = l.max_object_size {
                assert!(p.check_path("f", Some(max)).is_ok());
                assert!(p.check_path("f", Some(max + 1)).is_err());
            }
        }
    }

    #[test]
    fn general_limits_count_characters_at_the_edge() {
        let webdav = Provider::Webdav(WebdavPreset::Generic);
        // 255 two-byte characters: 510 bytes, still one legal name.
        ok(webdav, &"é".repeat(GENERAL_MAX_NAME));
        let dir = "d".repeat(200);
        let path_of = |n: usize| {
            let mut parts = vec![dir.clone(); n / 201];
            let used = parts.len() * 201;
            parts.push("f".repeat(n - used));
            parts.join("/")
        };
        let at = path_of(GENERAL_MAX_PATH);
        assert_eq!(at.chars().count(), GENERAL_MAX_PATH);
        ok(webdav, &at);
        let over = path_of(GENERAL_MAX_PATH + 1);
        assert!(refused(webdav, &over, None).contains("2049 characters"));
    }

    #[test]
    fn s3_characters_and_dots() {
        let aws = Provider::S3(S3Preset::Aws);
        for c in [
            '"', '<', '>', '|', '{', '^', '}', '%', '`', ']', '[', '~', '#',
        ] {
            let key = format!("dir/a{c}b");
            let shown = format!("`{}`", c.escape_debug());
            assert!(refused(aws, &key, None).contains(&shown), "{c}");
        }
        assert!(refused(aws, "a/../b", None).contains("reserved"));
        ok(aws, "a/b.c/d-e_f (1)+!.txt");
    }

    #[test]
    fn s3_path_lengths_per_preset_in_bytes() {
        let aws = Provider::S3(S3Preset::Aws);
        ok(aws, &format!("{}/{}", "a".repeat(200), "b".repeat(200)));
        assert_eq!(key_of(1024).len(), 1024);
        ok(aws, &key_of(1024));
        assert!(refused(aws, &key_of(1025), None).contains("1025 bytes"));
        // 400 three-byte characters: 1,200 bytes is over AWS's 1,024 though 400 characters.
        let wide = format!("{}/{}", "語".repeat(200), "語".repeat(200));
        assert!(refused(aws, &wide, None).contains("bytes long (at most 1024)"));
        let hicloud = Provider::S3(S3Preset::Hicloud);
        ok(hicloud, &key_of(255));
        assert!(refused(hicloud, &key_of(256), None).contains("at most 255"));
        let jd = Provider::S3(S3Preset::JdCloud);
        ok(jd, &key_of(1021));
        assert!(refused(jd, &key_of(1022), None).contains("at most 1021"));
    }

    #[test]
    fn object_sizes_per_provider() {
        const GB: u64 = 1 << 30;
        const TB: u64 = 1 << 40;
        for (p, max) in [
            (Provider::S3(S3Preset::Aws), 5 * TB),
            (Provider::S3(S3Preset::Hicloud), TB),
            (Provider::S3(S3Preset::Sfr), 3_900_000_000),
            (Provider::S3(S3Preset::JdCloud), 19 * TB),
            (Provider::Azblob, 4_864 * GB),
            (Provider::Gcs, 5 * TB),
            (Provider::Gdrive, 5 * TB),
            (Provider::Oss, 49_971 * GB),
            (Provider::Cos, 49_971 * GB),
            (Provider::Onedrive(OnedriveKind::Personal), 110 * GB),
            (Provider::Onedrive(OnedriveKind::Business), 15 * GB),
        ] {
            assert_eq!(p.check_path("f", Some(max)), Ok(()), "{}", p.id());
            let reason = refused(p, "f", Some(max + 1));
            assert!(reason.contains("over the service's limit"), "{reason}");
        }
        // Folders have no size; providers without a documented limit take any size.
        assert_eq!(Provider::S3(S3Preset::Aws).check_path("d", None), Ok(()));
        assert_eq!(Provider::B2.check_path("f", Some(u64::MAX)), Ok(()));
    }

    #[test]
    fn gcs_rules() {
        let gcs = Provider::Gcs;
        for c in ['*', '?', '#', '[', ']'] {
            assert!(refused(gcs, &format!("a{c}"), None).contains(&format!("`{c}`")));
        }
        assert!(refused(gcs, "dir/   ", None).contains("blank"));
        ok(gcs, "dir/ a ");
    }

    #[test]
    fn azure_b2_swift_cos_oss_rules() {
        assert!(refused(Provider::Azblob, "d/.synoemptyblob", None).contains("reserved"));
        ok(Provider::Azblob, "d/a~b#c%");
        assert!(refused(Provider::B2, "x/.bzEmpty", None).contains("reserved"));
        ok(Provider::B2, &"n".repeat(250));
        assert!(refused(Provider::B2, &"n".repeat(251), None).contains("at most 250"));
        let swift = Provider::Swift(SwiftPreset::Rackspace);
        assert!(refused(swift, "what?", None).contains("`?`"));
        ok(swift, "hash#tag");
        assert!(refused(Provider::Cos, "a~", None).contains("`~`"));
        ok(Provider::Cos, &key_of(797));
        assert!(refused(Provider::Cos, &key_of(798), None).contains("at most 797"));
        assert!(refused(Provider::S3(S3Preset::JdCloud), "1+1", None).contains("`+`"));
        assert!(refused(Provider::Oss, "..", None).contains("reserved"));
        ok(Provider::Oss, "a#b");
    }

    #[test]
    fn onedrive_and_dropbox_rules() {
        let personal = Provider::Onedrive(OnedriveKind::Personal);
        assert!(refused(personal, "d/ lead", None).contains("starts with ` `"));
        assert!(refused(personal, "a*b", None).contains("`*`"));
        ok(personal, "forms/trail.");
        let business = Provider::Onedrive(OnedriveKind::Business);
        assert!(refused(business, "trail.", None).contains("ends with `.`"));
        assert!(refused(business, "Forms", None).contains("reserved"));
        assert!(refused(business, "~", None).contains("reserved"));
        assert!(refused(business, "a_VTI_b", None).contains("`_vti_`"));
        ok(business, &"n".repeat(128));
        assert!(refused(business, &"n".repeat(129), None).contains("at most 128"));
        let deep = format!(
            "{}/{}/{}",
            "a".repeat(100),
            "b".repeat(100),
            "c".repeat(107)
        );
        assert_eq!(deep.len(), 309);
        assert!(refused(business, &deep, None).contains("at most 308"));
        assert!(refused(Provider::Dropbox, ".dropbox.attr", None).contains(".dropbox"));
        assert!(refused(Provider::Dropbox, "x.DropBox", None).contains(".dropbox"));
        assert!(refused(Provider::Dropbox, ".cache", None).contains("starts with `.cache`"));
        ok(Provider::Dropbox, "my.cache");
        let mega = Provider::Webdav(WebdavPreset::MegaDisk);
        assert!(refused(mega, "a|b", None).contains("`|`"));
    }

    #[test]
    fn task_paths_are_reported_by_the_users_path() {
        let rel = RelPath::parse("photos/a:b.jpg").expect("valid path");
        let refusal = Provider::Gcs
            .check_task_path("backups/laptop/", &rel, Some(10))
            .expect_err("the rule refuses it");
        assert_eq!(refusal.path, "photos/a:b.jpg");
        assert_eq!(
            refusal.to_string(),
            "photos/a:b.jpg: cannot be stored on Google Cloud Storage: the name contains `:`"
        );
        // The root counts towards the path length.
        let root = "r".repeat(1000);
        let rel = RelPath::parse(&"f".repeat(30)).expect("valid path");
        assert!(Provider::Gcs.check_task_path(&root, &rel, None).is_err());
        assert!(Provider::Gcs.check_task_path("", &rel, None).is_ok());
    }
}
