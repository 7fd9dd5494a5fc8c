//! Bucket and container name rules (seed 003 "Bucket / Container", seed 002 "Bucket name must
//! comply with the following rules"), checked before any request so a bad name is refused with
//! the rule it breaks rather than with a service's opaque 400.
//!
//! [`Provider::check_bucket`] picks the rule: AWS buckets in US Standard (us-east-1) may use the
//! relaxed legacy rules; everywhere else on S3 the strict ones apply.

use std::net::Ipv4Addr;

use super::{Provider, RuleError, S3Preset};

/// One service's naming rule for buckets or containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketRule {
    /// AWS: strict outside US Standard, relaxed inside it (seed 003).
    S3UsStandard,
    /// S3 outside US Standard, and the compatible services (seed 003's strict list).
    S3Strict,
    /// Alibaba OSS (seed 002: grouped with the S3 services).
    Oss,
    /// Azure containers (seed 003), `$root` included.
    Azure,
    /// Backblaze B2 (seeds 002 and 003).
    B2,
    /// Google Cloud Storage (seed 003).
    Gcs,
    /// Tencent COS (seed 002), checked before the `-APPID` suffix COS V5 adds.
    Cos,
    /// JD Cloud OSS (seed 002).
    JdCloud,
    /// OpenStack Swift containers (seed 002).
    Swift,
}

/// The AWS region whose legacy buckets may use the relaxed rules.
const US_STANDARD: &str = "us-east-1";

impl Provider {
    /// Checks a bucket or container name for this provider; `region` picks AWS's relaxed rule in
    /// US Standard (none given means the default region, us-east-1).
    ///
    /// # Errors
    /// The provider has no buckets, or the rule the name breaks.
    pub fn check_bucket(self, name: &str, region: Option<&str>) -> Result<(), RuleError> {
        let kind = self.bucket_word();
        let Some(rule) = self.spec().bucket_rule else {
            return Err(RuleError::Option {
                provider: self.display_name(),
                problem: "the service has no buckets or containers".into(),
            });
        };
        let rule = match (rule, self) {
            (BucketRule::S3UsStandard, Provider::S3(S3Preset::Aws))
                if region.is_some_and(|r| r != US_STANDARD) =>
            {
                BucketRule::S3Strict
            }
            (rule, _) => rule,
        };
        rule.problem(name).map_or(Ok(()), |rule| {
            Err(RuleError::BucketName {
                kind,
                name: name.to_string(),
                rule,
            })
        })
    }
}

impl BucketRule {
    /// The first rule `name` breaks, as a sentence about the service's names.
    pub fn problem(self, name: &str) -> Option<String> {
        match self {
            BucketRule::S3UsStandard => s3_relaxed(name),
            BucketRule::S3Strict => s3_strict(name),
            BucketRule::Oss => oss(name),
            BucketRule::Azure => azure(name),
            BucketRule::B2 => b2(name),
            BucketRule::Gcs => gcs(name),
            BucketRule::Cos => cos(name),
            BucketRule::JdCloud => jdcloud(name),
            BucketRule::Swift => swift(name),
        }
    }
}

fn is_lower_or_digit(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn length(service: &str, name: &str, min: usize, max: usize) -> Option<String> {
    let len = name.len();
    (len < min || len > max)
        .then(|| format!("{service} names are {min} to {max} characters long (this one has {len})"))
}

fn only(service: &str, name: &str, allowed: impl Fn(char) -> bool, what: &str) -> Option<String> {
    name.chars().find(|c| !allowed(*c)).map(|c| {
        format!(
            "{service} names use {what} only (found `{}`)",
            c.escape_debug()
        )
    })
}

fn starts_with_lower_or_digit(service: &str, name: &str) -> Option<String> {
    (!name.starts_with(is_lower_or_digit))
        .then(|| format!("{service} names start with a lowercase letter or a digit"))
}

fn ends_with_lower_or_digit(service: &str, name: &str) -> Option<String> {
    (!name.ends_with(is_lower_or_digit))
        .then(|| format!("{service} names end with a lowercase letter or a digit"))
}

fn looks_like_ip(name: &str) -> bool {
    name.parse::<Ipv4Addr>().is_ok()
}

/// Seed 003: S3 outside US Standard.
fn s3_strict(name: &str) -> Option<String> {
    const S3: &str = "S3";
    length(S3, name, 3, 63)
        .or_else(|| {
            only(
                S3,
                name,
                |c| is_lower_or_digit(c) || c == '.' || c == '-',
                "lowercase letters, digits, dots and hyphens",
            )
        })
        .or_else(|| starts_with_lower_or_digit(S3, name))
        .or_else(|| ends_with_lower_or_digit(S3, name))
        .or_else(|| {
            name.contains("..")
                .then(|| "S3 names cannot contain two dots in a row".to_string())
        })
        .or_else(|| {
            (name.contains(".-") || name.contains("-."))
                .then(|| "S3 names cannot have a hyphen next to a dot".to_string())
        })
        .or_else(|| {
            looks_like_ip(name).then(|| "S3 names cannot be formatted as an IP address".to_string())
        })
}

/// Seed 003: S3 in US Standard, relaxed.
fn s3_relaxed(name: &str) -> Option<String> {
    const S3: &str = "S3 (US Standard)";
    length(S3, name, 3, 255).or_else(|| {
        only(
            S3,
            name,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'),
            "letters, digits, dots, hyphens and underscores",
        )
    })
}

/// Seed 002: S3-compatible services and Alibaba OSS.
fn oss(name: &str) -> Option<String> {
    const OSS: &str = "OSS";
    length(OSS, name, 3, 63)
        .or_else(|| starts_with_lower_or_digit(OSS, name))
        .or_else(|| {
            only(
                OSS,
                name,
                |c| is_lower_or_digit(c) || c == '.' || c == '-',
                "lowercase letters, digits, dots and hyphens",
            )
        })
}

/// Seed 003: Azure containers; `$root` is the account's special root container.
fn azure(name: &str) -> Option<String> {
    const AZ: &str = "Azure container";
    if name == "$root" {
        return None;
    }
    length(AZ, name, 3, 63)
        .or_else(|| starts_with_lower_or_digit(AZ, name))
        .or_else(|| {
            only(
                AZ,
                name,
                |c| is_lower_or_digit(c) || c == '-' || c == '_',
                "lowercase letters, digits, hyphens and underscores",
            )
        })
        .or_else(|| {
            name.contains("--")
                .then(|| "Azure container names cannot contain two hyphens in a row".to_string())
        })
        .or_else(|| {
            name.ends_with('-')
                .then(|| "Azure container names cannot end with a hyphen".to_string())
        })
}

/// Seeds 002 and 003: B2 names are case-insensitive, so upper case is accepted.
fn b2(name: &str) -> Option<String> {
    const B2: &str = "B2";
    length(B2, name, 6, 50)
        .or_else(|| {
            only(
                B2,
                name,
                |c| c.is_ascii_alphanumeric() || c == '-',
                "letters, digits and hyphens",
            )
        })
        .or_else(|| {
            name.get(..3)
                .is_some_and(|p| p.eq_ignore_ascii_case("b2-"))
                .then(|| "B2 names starting with `b2-` are reserved by Backblaze".to_string())
        })
}

/// Seed 003: Google Cloud Storage.
fn gcs(name: &str) -> Option<String> {
    const GCS: &str = "GCS";
    let max = if name.contains('.') { 222 } else { 63 };
    length(GCS, name, 3, max)
        .or_else(|| {
            only(
                GCS,
                name,
                |c| is_lower_or_digit(c) || matches!(c, '-' | '_' | '.'),
                "lowercase letters, digits, hyphens, underscores and dots",
            )
        })
        .or_else(|| {
            (!name.starts_with(is_lower_or_digit) || !name.ends_with(is_lower_or_digit))
                .then(|| "GCS names start and end with a letter or a digit".to_string())
        })
        .or_else(|| {
            name.split('.')
                .find(|part| part.len() > 63)
                .map(|_| "GCS names have at most 63 characters between dots".to_string())
        })
        .or_else(|| {
            (name.contains("..") || name.contains(".-") || name.contains("-."))
                .then(|| "GCS names cannot have a dot next to a dot or a hyphen".to_string())
        })
        .or_else(|| {
            looks_like_ip(name)
                .then(|| "GCS names cannot be an IP address in dotted-decimal notation".to_string())
        })
        .or_else(|| {
            name.starts_with("goog")
                .then(|| "GCS names cannot begin with `goog`".to_string())
        })
        .or_else(|| {
            mentions_google(name).then(|| {
                "GCS names cannot contain `google` or a close misspelling of it".to_string()
            })
        })
}

/// `google` spelled with look-alike digits or with its `o`s doubled, tripled or dropped
/// (`g00gle`, `gooogle`, `gogle`): seed 003's "close misspellings". Other letters are left alone
/// so ordinary words (`goggles`) pass.
fn mentions_google(name: &str) -> bool {
    let mut squeezed = String::with_capacity(name.len());
    for c in name.chars() {
        let c = match c {
            '0' => 'o',
            '1' => 'l',
            '3' => 'e',
            other => other,
        };
        if !(c == 'o' && squeezed.ends_with('o')) {
            squeezed.push(c);
        }
    }
    squeezed.contains("gogle")
}

/// Seed 002: Tencent COS, on the name before COS V5's `-APPID` suffix (`photos-1250000000`).
fn cos(name: &str) -> Option<String> {
    const COS: &str = "COS";
    let base = match name.rsplit_once('-') {
        Some((base, appid)) if !appid.is_empty() && appid.chars().all(|c| c.is_ascii_digit()) => {
            base
        }
        _ => name,
    };
    if base.is_empty() {
        return Some("COS names need a name before the -APPID suffix".into());
    }
    (base.len() > 40)
        .then(|| {
            format!(
                "COS names are at most 40 characters long before the -APPID suffix (this one has {})",
                base.len()
            )
        })
        .or_else(|| {
            only(
                COS,
                base,
                is_lower_or_digit,
                "lowercase letters and digits (before the -APPID suffix)",
            )
        })
}

/// Seed 002: JD Cloud OSS.
fn jdcloud(name: &str) -> Option<String> {
    const JD: &str = "JD Cloud";
    length(JD, name, 3, 63)
        .or_else(|| {
            only(
                JD,
                name,
                |c| is_lower_or_digit(c) || c == '-',
                "lowercase letters, digits and hyphens",
            )
        })
        .or_else(|| starts_with_lower_or_digit(JD, name))
        .or_else(|| ends_with_lower_or_digit(JD, name))
}

/// Seed 002: Swift containers.
fn swift(name: &str) -> Option<String> {
    const SWIFT: &str = "Swift container";
    length(SWIFT, name, 1, 255).or_else(|| {
        name.contains('/')
            .then(|| "Swift container names cannot contain `/`".to_string())
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{SwiftPreset, WebdavPreset};
    use super::*;

    proptest! {
        /// The rules nest as the seeds describe them: a strict S3 name is also a relaxed one and
        /// an OSS one; a JD Cloud name is a strict S3 one.
        #[test]
        fn stricter_rules_accept_subsets(
            name in prop_oneof!["[a-z0-9-]{1,70}", "[a-z0-9.-]{1,70}", "[a-zA-Z0-9._-]{0,70}"]
        ) {
            let ok = |rule: BucketRule| rule.problem(&name).is_none();
            if ok(BucketRule::S3Strict) {
                prop_assert!(ok(BucketRule::S3UsStandard), "{name}");
                prop_assert!(ok(BucketRule::Oss), "{name}");
            }
            if ok(BucketRule::JdCloud) {
                prop_assert!(ok(BucketRule::S3Strict), "{name}");
            }
        }
    }

    fn good(p: Provider, region: Option<&str>, names: &[&str]) {
        for n in names {
            if let Err(e) = p.check_bucket(n, region) {
                panic!("{n} refused on {}: {e}", p.id());
            }
        }
    }

    fn bad(p: Provider, region: Option<&str>, cases: &[(&str, &str)]) {
        for (n, why) in cases {
            match p.check_bucket(n, region) {
                Ok(()) => panic!("{n} accepted on {}", p.id()),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(why), "{n} on {}: {msg}", p.id());
                }
            }
        }
    }

    #[test]
    fn s3_strict_outside_us_standard() {
        let aws = Provider::S3(S3Preset::Aws);
        let eu = Some("eu-west-1");
        good(aws, eu, &["abc", "my.bucket-1", "0a9", &"a".repeat(63)]);
        bad(
            aws,
            eu,
            &[
                ("ab", "3 to 63 characters long (this one has 2)"),
                (&"a".repeat(64), "this one has 64"),
                (
                    "My_Bucket",
                    "lowercase letters, digits, dots and hyphens only (found `M`)",
                ),
                ("-abc", "start with a lowercase letter or a digit"),
                ("abc-", "end with a lowercase letter or a digit"),
                ("a..b", "two dots in a row"),
                ("bad.-name", "hyphen next to a dot"),
                ("a-.b", "hyphen next to a dot"),
                ("192.168.5.4", "IP address"),
            ],
        );
        let err = aws
            .check_bucket("My_Bucket", eu)
            .expect_err("the rule refuses it")
            .to_string();
        assert_eq!(
            err,
            "bucket name `My_Bucket`: S3 names use lowercase letters, digits, dots and hyphens \
             only (found `M`)"
        );
    }

    #[test]
    fn s3_relaxed_in_us_standard() {
        let aws = Provider::S3(S3Preset::Aws);
        for region in [None, Some("us-east-1")] {
            good(aws, region, &["My_Bucket", "a..b", &"A".repeat(255)]);
            bad(
                aws,
                region,
                &[
                    ("ab", "3 to 255"),
                    (&"a".repeat(256), "this one has 256"),
                    ("a b", "found ` `"),
                    ("a/b", "found `/`"),
                ],
            );
        }
    }

    #[test]
    fn compatible_presets_use_the_strict_rule_wherever_they_are() {
        for preset in [S3Preset::Compatible, S3Preset::Hicloud, S3Preset::Minio] {
            let p = Provider::S3(preset);
            good(p, None, &["backups-2026"]);
            bad(p, None, &[("My_Bucket", "S3 names"), ("a..b", "two dots")]);
        }
    }

    #[test]
    fn oss_names() {
        good(Provider::Oss, None, &["abc", "a.b-c", &"z".repeat(63)]);
        bad(
            Provider::Oss,
            None,
            &[
                ("ab", "3 to 63"),
                (&"z".repeat(64), "this one has 64"),
                ("-ab", "start with"),
                ("aB1", "found `B`"),
                ("a_b", "found `_`"),
            ],
        );
    }

    #[test]
    fn azure_containers() {
        good(
            Provider::Azblob,
            None,
            &["abc", "a-b_c", "$root", &"a".repeat(63)],
        );
        bad(
            Provider::Azblob,
            None,
            &[
                ("ab", "3 to 63"),
                (&"a".repeat(64), "this one has 64"),
                ("_abc", "start with"),
                ("Abc", "start with"),
                ("ab.c", "found `.`"),
                ("bad--name", "two hyphens in a row"),
                ("bad-name-", "end with a hyphen"),
                ("$logs", "start with"),
            ],
        );
        let err = Provider::Azblob
            .check_bucket("ab", None)
            .expect_err("the rule refuses it");
        assert!(err.to_string().starts_with("container name `ab`:"), "{err}");
    }

    #[test]
    fn b2_buckets() {
        good(
            Provider::B2,
            None,
            &["myphotos", "MYPhotos", "a-b-c-d", &"b".repeat(50)],
        );
        bad(
            Provider::B2,
            None,
            &[
                ("short", "6 to 50"),
                (&"b".repeat(51), "this one has 51"),
                ("my_photos", "found `_`"),
                ("my.photos", "found `.`"),
                ("b2-photos", "reserved by Backblaze"),
                ("B2-Photos", "reserved by Backblaze"),
            ],
        );
    }

    #[test]
    fn gcs_buckets() {
        good(
            Provider::Gcs,
            None,
            &[
                "abc",
                "my_bucket-1",
                "example.com",
                "goggles",
                &format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63)),
            ],
        );
        bad(
            Provider::Gcs,
            None,
            &[
                ("ab", "3 to 63"),
                (&"a".repeat(64), "3 to 63"),
                (
                    &format!("{}.{}", "a".repeat(64), "b"),
                    "63 characters between dots",
                ),
                (&format!("{}.b", "a".repeat(221)), "3 to 222"),
                ("Abc", "found `A`"),
                ("_abc", "start and end"),
                ("abc-", "start and end"),
                ("a..b", "dot next to"),
                ("a.-b", "dot next to"),
                ("10.0.0.1", "IP address"),
                ("goog-data", "begin with `goog`"),
                ("my-google-files", "google"),
                ("my-g00gle-files", "google"),
                ("a-gooogle", "google"),
                ("gogle-a", "google"),
            ],
        );
    }

    #[test]
    fn cos_buckets() {
        good(
            Provider::Cos,
            None,
            &["photos-1250000000", "abc123", &"c".repeat(40)],
        );
        bad(
            Provider::Cos,
            None,
            &[
                (&"c".repeat(41), "at most 40"),
                (&format!("{}-125", "c".repeat(41)), "at most 40"),
                ("my-photos-1250000000", "found `-`"),
                ("Photos", "found `P`"),
                ("-1250000000", "name before the -APPID"),
            ],
        );
    }

    #[test]
    fn jdcloud_buckets() {
        let jd = Provider::S3(S3Preset::JdCloud);
        good(jd, None, &["abc", "a-b-c", &"j".repeat(63)]);
        bad(
            jd,
            None,
            &[
                ("ab", "3 to 63"),
                (&"j".repeat(64), "this one has 64"),
                ("a.b", "found `.`"),
                ("-ab", "start with"),
                ("ab-", "end with"),
                ("aBc", "found `B`"),
            ],
        );
    }

    #[test]
    fn swift_containers_and_providers_without_buckets() {
        let swift = Provider::Swift(SwiftPreset::Ovh);
        good(swift, None, &["Any Name_at.all", &"s".repeat(255)]);
        bad(
            swift,
            None,
            &[
                ("", "1 to 255"),
                (&"s".repeat(256), "1 to 255"),
                ("a/b", "cannot contain `/`"),
            ],
        );
        let err = Provider::Webdav(WebdavPreset::Generic)
            .check_bucket("x", None)
            .expect_err("the rule refuses it");
        assert_eq!(
            err.to_string(),
            "WebDAV: the service has no buckets or containers"
        );
    }
}
