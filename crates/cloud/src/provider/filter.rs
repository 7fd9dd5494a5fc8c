//! The filters of a cloud task (seed 002 "File Filter" and its general exclusions), on top of
//! the model's [`Filter`].
//!
//! A cloud task takes the same rules as every task (sub-folders, names, extensions, the default
//! ignore list) with two differences from seed 002: the maximum file size is 0 to 10,240 MB
//! (backup tasks allow more), and a few more names are never synced: macOS resource forks
//! (`._*`) and the working folders of the tool the seed describes, so that a share or a remote
//! it once used is not synced as data. [`check`] runs the model's filter first, then these.

use cairn_model::filter::MoreDefaults;
use cairn_model::{EntryKind, Filter, FilterDecision, RelPath};

use super::RuleError;

/// Largest `--max-size` of a cloud task, in MB (seed 002: "between 1~10,240 MB, with 0 meaning
/// unlimited").
pub const MAX_SIZE_LIMIT_MB: u64 = 10_240;

/// Longest file-name or extension rule, in characters (seed 002).
pub const MAX_RULE_CHARS: usize = 255;

/// Name prefixes never synced to or from a cloud (seed 002: "The file name starts with").
const PREFIXES: &[&str] = &["._", "~.synoppsdb"];

/// Names never synced to or from a cloud, in any case (seed 002's list, beyond the model's).
const NAMES: &[&str] = &[
    "@synologycloudsync",
    "cloudsync_encrypt.info",
    "@activebackup",
    "activebackupdata",
    "activebackupforoffice365",
    "activebackupforgsuite",
];

/// `--max-size` in MB to bytes (0 = unlimited).
///
/// # Errors
/// Above 10,240 MB.
pub fn max_size_bytes(mb: u64) -> Result<u64, RuleError> {
    if mb > MAX_SIZE_LIMIT_MB {
        return Err(RuleError::Filter {
            what: "--max-size",
            given: mb.to_string(),
            problem: format!(
                "a cloud task's maximum file size is 0 to {MAX_SIZE_LIMIT_MB} MB (0 means unlimited)"
            ),
        });
    }
    Ok(mb * 1024 * 1024)
}

/// Checks one file-name or extension rule as a user typed it.
///
/// # Errors
/// An empty rule, or one over 255 characters.
pub fn check_rule(what: &'static str, raw: &str) -> Result<(), RuleError> {
    let len = raw.trim().chars().count();
    let problem = if len == 0 {
        "the rule is empty".to_string()
    } else if len > MAX_RULE_CHARS {
        format!("the rule is {len} characters long (at most {MAX_RULE_CHARS})")
    } else {
        return Ok(());
    };
    Err(RuleError::Filter {
        what,
        given: raw.chars().take(80).collect(),
        problem,
    })
}

/// The filter a cloud task's passes run with: its own rules plus the cloud defaults.
pub fn for_cloud(filter: &Filter) -> Filter {
    Filter {
        more_defaults: MoreDefaults {
            prefixes: PREFIXES,
            names: NAMES,
        },
        ..filter.clone()
    }
}

/// Whether a cloud task syncs `path`: the model's filter with the cloud task's own defaults.
pub fn check(filter: &Filter, path: &RelPath, kind: EntryKind, size: u64) -> FilterDecision {
    for_cloud(filter).check(path, kind, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).expect("valid test path")
    }

    #[test]
    fn max_size_is_zero_to_10240_mb() {
        assert_eq!(max_size_bytes(0), Ok(0));
        assert_eq!(max_size_bytes(1), Ok(1 << 20));
        assert_eq!(max_size_bytes(10_240), Ok(10_240 << 20));
        let err = max_size_bytes(10_241)
            .expect_err("the rule refuses it")
            .to_string();
        assert_eq!(
            err,
            "--max-size `10241`: a cloud task's maximum file size is 0 to 10240 MB (0 means \
             unlimited)"
        );
    }

    #[test]
    fn rules_are_1_to_255_characters() {
        assert!(check_rule("--exclude-name", "*.iso").is_ok());
        assert!(check_rule("--exclude-name", &"é".repeat(255)).is_ok());
        let err = check_rule("--exclude-ext", &"x".repeat(256)).expect_err("the rule refuses it");
        assert!(
            err.to_string()
                .contains("256 characters long (at most 255)"),
            "{err}"
        );
        assert!(check_rule("--exclude-ext", "  ").is_err());
    }

    #[test]
    fn cloud_defaults_add_to_the_models() {
        let f = Filter::default();
        for skipped in [
            "a/._photo.jpg",
            "~.SYNOPPSDB",
            "@SynologyCloudSync",
            "x/cloudsync_encrypt.info",
            "ActiveBackupForGSuite",
            // The model's list still applies.
            "d/Thumbs.db",
            "notes.tmp",
        ] {
            assert!(
                !check(&f, &p(skipped), EntryKind::File, 1).is_included(),
                "{skipped} not skipped"
            );
        }
        for kept in [
            "a/_photo.jpg",
            "x.cloudsync_encrypt.info.bak",
            "ActiveBackupNotes",
        ] {
            assert!(
                check(&f, &p(kept), EntryKind::File, 1).is_included(),
                "{kept} skipped"
            );
        }
        assert_eq!(
            check(&f, &p("._x"), EntryKind::File, 1),
            FilterDecision::Exclude("default ignore list (starts with ._)".into())
        );
        // The user's size rule is the model's.
        let sized = Filter {
            max_size: 10,
            ..Filter::default()
        };
        assert!(!check(&sized, &p("big"), EntryKind::File, 11).is_included());
    }
}
