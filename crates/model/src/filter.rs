//! Backup rules: which paths a task leaves out, and why.
//!
//! A `Filter` combines the seeds' default ignore list (always on), the user's maximum file size,
//! name patterns, extensions and excluded sub-folders. The user's name patterns follow the
//! platform, as the seeds ask: case-sensitive on Linux and macOS (`A.txt` and `a.txt` are two
//! files there), case-insensitive on Windows. The default list and extensions match in any case
//! (`Thumbs.DB`, `*.ISO`). The decision carries the rule that matched so `status` can say why a
//! file is skipped.

use serde::{Deserialize, Serialize};

use crate::{EntryKind, RelPath};

/// Largest `--max-size` accepted, in MB (the seeds' limit).
pub const MAX_SIZE_LIMIT_MB: u64 = 10_240_000;

/// Name of the task's working folder inside its local root (temporary downloads); always ignored.
pub const WORK_DIR_NAME: &str = ".cairn";

/// Extensions never synced: temporary and shortcut files, and Outlook data files (`.pst`, which
/// the seeds leave out because they are not portable between computers).
const DEFAULT_EXTS: &[&str] = &["tmp", "temp", "swp", "lnk", "pst"];

/// Whether the user's name patterns ignore case: as the platform's file names do.
pub const NAMES_IGNORE_CASE: bool = cfg!(windows);

/// Names that are, or contain, one of these (lowercase) are never synced: OS metadata, recycle
/// bins, snapshots, system folders, the working folder of cairn and of its ancestor tool.
const DEFAULT_NAME_PARTS: &[&str] = &[
    "@eadir",
    ".synologyworkingdirectory",
    "#recycle",
    "desktop.ini",
    ".ds_store",
    "icon\r",
    "thumbs.db",
    "$recycle.bin",
    "@sharebin",
    "system volume information",
    "program files",
    "program files (x86)",
    "programdata",
    "#snapshot",
];

/// Name prefixes never synced: office lock files.
const DEFAULT_NAME_PREFIXES: &[&str] = &["~$", ".~lock."];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Largest file synced, in bytes; 0 = unlimited.
    #[serde(default)]
    pub max_size: u64,
    /// Glob patterns (`*`, `?`) matched against whole names, in case as the platform does
    /// ([`NAMES_IGNORE_CASE`]).
    #[serde(default)]
    pub names: Vec<String>,
    /// Extensions without the dot, lowercase.
    #[serde(default)]
    pub exts: Vec<String>,
    /// Sub-folders left out (selective sync).
    #[serde(default)]
    pub excluded_dirs: Vec<RelPath>,
    /// Names left out on top of the default list by the kind of task (a cloud task's, from
    /// seed 002); set when a pass starts, never saved, so a new release's list applies to old
    /// configurations.
    #[serde(skip)]
    pub more_defaults: MoreDefaults,
}

/// Default ignore rules a kind of task adds: name prefixes and whole names, both lowercase and
/// matched in any case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoreDefaults {
    pub prefixes: &'static [&'static str],
    pub names: &'static [&'static str],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterDecision {
    Include,
    /// Left out; the text names the rule.
    Exclude(String),
}

impl FilterDecision {
    pub fn is_included(&self) -> bool {
        matches!(self, FilterDecision::Include)
    }
}

/// Normalises a user's extension spelling (`*.ISO`, `.iso`, `iso`) to `iso`.
pub fn normalize_ext(raw: &str) -> String {
    raw.trim()
        .trim_start_matches('*')
        .trim_start_matches('.')
        .to_lowercase()
}

impl Filter {
    /// Decides whether `path` (of `kind`, `size` bytes) is synced.
    pub fn check(&self, path: &RelPath, kind: EntryKind, size: u64) -> FilterDecision {
        if path.is_root() {
            return FilterDecision::Include;
        }
        for dir in &self.excluded_dirs {
            if path.starts_with(dir) {
                return FilterDecision::Exclude(format!("excluded folder {dir}"));
            }
        }
        let name = path.name();
        let lower = name.to_lowercase();
        if lower == WORK_DIR_NAME {
            return FilterDecision::Exclude("cairn's working folder".into());
        }
        if let Some(part) = DEFAULT_NAME_PARTS.iter().find(|p| lower.contains(*p)) {
            return FilterDecision::Exclude(format!(
                "default ignore list ({})",
                part.escape_debug()
            ));
        }
        if let Some(prefix) = DEFAULT_NAME_PREFIXES
            .iter()
            .chain(self.more_defaults.prefixes)
            .find(|p| lower.starts_with(*p))
        {
            return FilterDecision::Exclude(format!("default ignore list (starts with {prefix})"));
        }
        if let Some(n) = self.more_defaults.names.iter().find(|n| lower == **n) {
            return FilterDecision::Exclude(format!("default ignore list ({n})"));
        }
        if let Some(p) = self.names.iter().find(|p| name_matches(p, name)) {
            return FilterDecision::Exclude(format!("file name rule {p}"));
        }
        if kind == EntryKind::File {
            if let Some(ext) = lower.rfind('.').filter(|&i| i > 0).map(|i| &lower[i + 1..]) {
                if DEFAULT_EXTS.contains(&ext) {
                    return FilterDecision::Exclude(format!("default ignore list (*.{ext})"));
                }
                if self.exts.iter().any(|e| normalize_ext(e) == ext) {
                    return FilterDecision::Exclude(format!("extension rule *.{ext}"));
                }
            }
            if self.max_size > 0 && size > self.max_size {
                return FilterDecision::Exclude(format!(
                    "larger than the maximum size ({} bytes)",
                    self.max_size
                ));
            }
        }
        FilterDecision::Include
    }
}

/// A user's name pattern against a name, in case as the platform does.
fn name_matches(pattern: &str, name: &str) -> bool {
    if NAMES_IGNORE_CASE {
        glob_match(&pattern.to_lowercase(), &name.to_lowercase())
    } else {
        glob_match(pattern, name)
    }
}

/// `*` matches any run, `?` one character; everything else literally.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).expect("valid test path")
    }

    #[test]
    fn default_list_is_case_insensitive() {
        let f = Filter::default();
        for skipped in [
            "a/.DS_Store",
            "Thumbs.DB",
            "x/$RECYCLE.BIN",
            "notes.TMP",
            "v.swp",
            "~$report.docx",
            ".cairn",
            "d/@eaDir",
            "mail/Archive.PST",
        ] {
            assert!(
                !f.check(&p(skipped), EntryKind::File, 1).is_included(),
                "{skipped} not skipped"
            );
        }
        assert!(f.check(&p("src/main.rs"), EntryKind::File, 1).is_included());
        // Extensions are a file rule: a folder named x.tmp is kept.
        assert!(f.check(&p("x.tmp"), EntryKind::Dir, 0).is_included());
    }

    #[test]
    fn user_rules() {
        let f = Filter {
            max_size: 10,
            names: vec!["*.bak".into(), "core".into()],
            exts: vec!["*.ISO".into()],
            excluded_dirs: vec![p("build")],
            ..Filter::default()
        };
        assert_eq!(
            f.check(&p("a/b.bak"), EntryKind::File, 1),
            FilterDecision::Exclude("file name rule *.bak".into())
        );
        // Names follow the platform's case rule; extensions match in any case.
        assert_eq!(
            f.check(&p("a/B.BAK"), EntryKind::File, 1).is_included(),
            !NAMES_IGNORE_CASE
        );
        assert_eq!(
            f.check(&p("Core"), EntryKind::File, 1).is_included(),
            !NAMES_IGNORE_CASE
        );
        assert!(!f.check(&p("DISK.Iso"), EntryKind::File, 1).is_included());
        assert!(!f.check(&p("disk.iso"), EntryKind::File, 1).is_included());
        assert!(!f.check(&p("big.bin"), EntryKind::File, 11).is_included());
        assert!(f.check(&p("ok.bin"), EntryKind::File, 10).is_included());
        assert!(!f.check(&p("build/x/y.c"), EntryKind::File, 1).is_included());
        assert!(f.check(&p("builder/y.c"), EntryKind::File, 1).is_included());
    }

    proptest! {
        #[test]
        fn star_matches_everything_and_literals_match_themselves(name in "[a-z0-9.]{0,12}") {
            prop_assert!(glob_match("*", &name));
            prop_assert!(glob_match(&name, &name));
            let with_prefix = format!("x{}", name);
            prop_assert!(glob_match("x*", &with_prefix));
            let longer = format!("{name}?");
            prop_assert!(!glob_match(&longer, &name));
        }

        #[test]
        fn filter_is_case_insensitive(name in "[a-zA-Z]{1,8}\\.(tmp|TMP|Tmp|txt)") {
            let f = Filter::default();
            let lower = f.check(&p(&name.to_lowercase()), EntryKind::File, 1);
            let upper = f.check(&p(&name.to_uppercase()), EntryKind::File, 1);
            prop_assert_eq!(lower.is_included(), upper.is_included());
        }
    }
}
