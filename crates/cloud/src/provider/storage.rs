//! Storage classes and server-side encryption a task may ask for, per provider.
//!
//! `--storage-class` takes the user's spelling (`ia`, `STANDARD_IA`, `one-zone-ia`, `cool`) and
//! [`Provider::storage_class`] refuses a class the provider does not offer, naming the ones it
//! does. Classes whose objects must be restored before a read ([`StorageClass::needs_restore`]:
//! Glacier, Azure Archive) make the replica request a restore and pick the object up on a later
//! run (seed 003 "Amazon Glacier and Azure Archive objects"). `--sse` is AES-256 where seed 002
//! offers it (Amazon S3, hicloud S3, Alibaba OSS).

use std::fmt;

use super::{Provider, RuleError};

/// A storage class (S3) or access tier (Azure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageClass {
    S3Standard,
    S3StandardIa,
    S3OneZoneIa,
    S3ReducedRedundancy,
    S3Glacier,
    AzureHot,
    AzureCool,
    AzureArchive,
}

/// The classes AWS S3 offers a task (seed 002: Standard, IA, RRS; seed 003: One-Zone IA,
/// Glacier).
pub const S3_CLASSES: &[StorageClass] = &[
    StorageClass::S3Standard,
    StorageClass::S3StandardIa,
    StorageClass::S3OneZoneIa,
    StorageClass::S3ReducedRedundancy,
    StorageClass::S3Glacier,
];

/// Azure's access tiers (seed 003: Hot, Cool, Archive).
pub const AZURE_CLASSES: &[StorageClass] = &[
    StorageClass::AzureHot,
    StorageClass::AzureCool,
    StorageClass::AzureArchive,
];

impl StorageClass {
    /// The name users type and docs print.
    pub fn name(self) -> &'static str {
        match self {
            StorageClass::S3Standard => "standard",
            StorageClass::S3StandardIa => "standard-ia",
            StorageClass::S3OneZoneIa => "onezone-ia",
            StorageClass::S3ReducedRedundancy => "reduced-redundancy",
            StorageClass::S3Glacier => "glacier",
            StorageClass::AzureHot => "hot",
            StorageClass::AzureCool => "cool",
            StorageClass::AzureArchive => "archive",
        }
    }

    /// The value the service's API takes: S3's `x-amz-storage-class` (OpenDAL's
    /// `default_storage_class`), Azure's `x-ms-access-tier`.
    pub fn api_value(self) -> &'static str {
        match self {
            StorageClass::S3Standard => "STANDARD",
            StorageClass::S3StandardIa => "STANDARD_IA",
            StorageClass::S3OneZoneIa => "ONEZONE_IA",
            StorageClass::S3ReducedRedundancy => "REDUCED_REDUNDANCY",
            StorageClass::S3Glacier => "GLACIER",
            StorageClass::AzureHot => "Hot",
            StorageClass::AzureCool => "Cool",
            StorageClass::AzureArchive => "Archive",
        }
    }

    /// Objects in this class must be restored (a temporary copy requested) before they can be
    /// read.
    pub fn needs_restore(self) -> bool {
        matches!(self, StorageClass::S3Glacier | StorageClass::AzureArchive)
    }

    /// Early-deletion charges apply when an object is edited or deleted soon after upload (seed
    /// 002's note on Infrequent Access): the CLI warns when such a class is chosen.
    pub fn has_minimum_duration(self) -> bool {
        !matches!(
            self,
            StorageClass::S3Standard | StorageClass::S3ReducedRedundancy | StorageClass::AzureHot
        )
    }

    /// The class a user's spelling names, if any: case, `-`, `_` and spaces do not matter, and
    /// the common short forms (`ia`, `rrs`, `one-zone-ia`) are accepted.
    fn from_spelling(raw: &str) -> Option<StorageClass> {
        let key: String = raw
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect::<String>()
            .to_ascii_lowercase();
        Some(match key.as_str() {
            "standard" => StorageClass::S3Standard,
            "standardia" | "ia" | "infrequentaccess" => StorageClass::S3StandardIa,
            "onezoneia" | "onezoneinfrequentaccess" => StorageClass::S3OneZoneIa,
            "reducedredundancy" | "rrs" => StorageClass::S3ReducedRedundancy,
            "glacier" => StorageClass::S3Glacier,
            "hot" => StorageClass::AzureHot,
            "cool" => StorageClass::AzureCool,
            "archive" => StorageClass::AzureArchive,
            _ => return None,
        })
    }
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Server-side encryption a task may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sse {
    /// AES-256 with keys the service manages (S3's and OSS's `AES256`).
    Aes256,
}

impl Sse {
    /// The value OpenDAL's `server_side_encryption` takes (S3 and OSS alike).
    pub fn api_value(self) -> &'static str {
        match self {
            Sse::Aes256 => "AES256",
        }
    }
}

impl Provider {
    /// Parses `--storage-class` for this provider.
    ///
    /// # Errors
    /// An unknown spelling, or a class the provider does not offer; the message lists the ones
    /// it does (or says it has none: compatible S3 services turn AWS-only features off).
    pub fn storage_class(self, raw: &str) -> Result<StorageClass, RuleError> {
        let spec = self.spec();
        let problem = |problem: String| RuleError::StorageClass {
            provider: spec.display_name,
            given: raw.to_string(),
            problem,
        };
        let offered = || {
            spec.storage_classes
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if spec.storage_classes.is_empty() {
            let why = if spec.compatible {
                "the service offers no storage classes (an S3-compatible service: AWS-only features are off)"
            } else {
                "the service offers no storage classes"
            };
            return Err(problem(why.into()));
        }
        let Some(class) = StorageClass::from_spelling(raw) else {
            return Err(problem(format!(
                "unknown class; choose one of {}",
                offered()
            )));
        };
        if !spec.storage_classes.contains(&class) {
            return Err(problem(format!(
                "not offered here; choose one of {}",
                offered()
            )));
        }
        Ok(class)
    }

    /// The server-side encryption `--sse` asks for on this provider (`None` when off).
    ///
    /// # Errors
    /// `--sse` on a provider that does not offer it.
    pub fn sse(self, wanted: bool) -> Result<Option<Sse>, RuleError> {
        let spec = self.spec();
        match (wanted, spec.sse) {
            (false, _) => Ok(None),
            (true, true) => Ok(Some(Sse::Aes256)),
            (true, false) => Err(RuleError::Sse {
                provider: spec.display_name,
                problem: if spec.compatible {
                    "not offered (an S3-compatible service: AWS-only features are off)".into()
                } else {
                    "not offered by this service".into()
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{S3Preset, ALL};
    use super::*;

    #[test]
    fn aws_takes_every_s3_class_in_any_spelling() {
        let aws = Provider::S3(S3Preset::Aws);
        for (raw, class) in [
            ("standard", StorageClass::S3Standard),
            ("STANDARD_IA", StorageClass::S3StandardIa),
            ("ia", StorageClass::S3StandardIa),
            ("one-zone-ia", StorageClass::S3OneZoneIa),
            ("ONEZONE_IA", StorageClass::S3OneZoneIa),
            ("rrs", StorageClass::S3ReducedRedundancy),
            ("Reduced Redundancy", StorageClass::S3ReducedRedundancy),
            ("glacier", StorageClass::S3Glacier),
        ] {
            assert_eq!(aws.storage_class(raw), Ok(class), "{raw}");
        }
        let err = aws
            .storage_class("cool")
            .expect_err("the rule refuses it")
            .to_string();
        assert_eq!(
            err,
            "storage class `cool` for Amazon S3: not offered here; choose one of standard, \
             standard-ia, onezone-ia, reduced-redundancy, glacier"
        );
        let err = aws
            .storage_class("deep")
            .expect_err("the rule refuses it")
            .to_string();
        assert!(err.contains("unknown class"), "{err}");
    }

    #[test]
    fn azure_takes_its_tiers_only() {
        assert_eq!(
            Provider::Azblob.storage_class("Cool"),
            Ok(StorageClass::AzureCool)
        );
        assert_eq!(
            Provider::Azblob
                .storage_class("archive")
                .map(|c| c.api_value()),
            Ok("Archive")
        );
        assert!(Provider::Azblob.storage_class("glacier").is_err());
    }

    #[test]
    fn compatible_and_other_services_have_no_classes() {
        let err = Provider::S3(S3Preset::Wasabi)
            .storage_class("standard")
            .expect_err("the rule refuses it")
            .to_string();
        assert!(err.contains("AWS-only features are off"), "{err}");
        let err = Provider::B2
            .storage_class("standard")
            .expect_err("the rule refuses it")
            .to_string();
        assert!(
            err.ends_with("the service offers no storage classes"),
            "{err}"
        );
    }

    #[test]
    fn archive_classes_need_a_restore() {
        let restore: Vec<_> = S3_CLASSES
            .iter()
            .chain(AZURE_CLASSES)
            .filter(|c| c.needs_restore())
            .collect();
        assert_eq!(
            restore,
            [&StorageClass::S3Glacier, &StorageClass::AzureArchive]
        );
        assert_eq!(StorageClass::S3OneZoneIa.api_value(), "ONEZONE_IA");
        assert!(StorageClass::S3StandardIa.has_minimum_duration());
        assert!(!StorageClass::AzureHot.has_minimum_duration());
    }

    #[test]
    fn sse_only_where_offered() {
        assert_eq!(Provider::S3(S3Preset::Aws).sse(true), Ok(Some(Sse::Aes256)));
        assert_eq!(
            Provider::S3(S3Preset::Hicloud).sse(true),
            Ok(Some(Sse::Aes256))
        );
        assert_eq!(Provider::Oss.sse(true), Ok(Some(Sse::Aes256)));
        for p in ALL {
            assert_eq!(p.sse(false), Ok(None));
        }
        let err = Provider::S3(S3Preset::Minio)
            .sse(true)
            .expect_err("the rule refuses it")
            .to_string();
        assert_eq!(
            err,
            "server-side encryption on MinIO: not offered (an S3-compatible service: AWS-only \
             features are off)"
        );
        assert!(Provider::Gdrive.sse(true).is_err());
        assert_eq!(Sse::Aes256.api_value(), "AES256");
    }
}
