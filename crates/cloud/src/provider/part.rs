//! Multipart part sizes per provider (seed 002's "Select the size of the upload part" for S3,
//! hicloud, SFR, OSS, B2, COS and JD Cloud).
//!
//! `--part-size MB` is checked against the service's smallest and largest part
//! ([`Provider::part_size`]); for each file, [`PartRule::part_size_for`] raises it when the file
//! would otherwise need more parts than the service accepts (S3's 10,000: 8 MiB parts stop at
//! 78 GiB), so a large file is uploaded with larger parts instead of failing near its end. The
//! bounds are those OpenDAL states for each service, plus the part counts of the services'
//! documentation.

use super::{Provider, RuleError};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// What a service accepts as the parts of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRule {
    /// Smallest part (the last part may be smaller).
    pub min: u64,
    /// Largest part.
    pub max: u64,
    /// Most parts in one upload; `None` when the service sets no count.
    pub max_parts: Option<u64>,
}

const S3_PARTS: PartRule = PartRule {
    min: 5 * MIB,
    max: 5 * GIB,
    max_parts: Some(10_000),
};

impl Provider {
    /// The multipart rule of the service; `None` where uploads go whole (WebDAV, SFTP, FTP, and
    /// the OAuth services, whose upload sessions OpenDAL sizes itself).
    pub fn part_rule(self) -> Option<PartRule> {
        match self {
            Provider::S3(_) | Provider::B2 => Some(S3_PARTS),
            Provider::Oss => Some(PartRule {
                min: 100 * KIB,
                ..S3_PARTS
            }),
            Provider::Cos => Some(PartRule {
                min: MIB,
                ..S3_PARTS
            }),
            Provider::Gcs | Provider::Swift(_) => Some(PartRule {
                max_parts: None,
                ..S3_PARTS
            }),
            // Azure block blobs: up to 50,000 blocks of at most 4,000 MiB.
            Provider::Azblob => Some(PartRule {
                min: MIB,
                max: 4_000 * MIB,
                max_parts: Some(50_000),
            }),
            Provider::Webdav(_)
            | Provider::Sftp
            | Provider::Ftp
            | Provider::Dropbox
            | Provider::Gdrive
            | Provider::Onedrive(_)
            | Provider::YandexDisk => None,
        }
    }

    /// `--part-size` in MB to bytes, checked against the service's part bounds.
    ///
    /// # Errors
    /// A size outside the bounds, or a service that uploads whole files.
    pub fn part_size(self, mb: u64) -> Result<u64, RuleError> {
        let problem = |problem: String| RuleError::PartSize {
            provider: self.display_name(),
            given_mb: mb,
            problem,
        };
        let Some(rule) = self.part_rule() else {
            return Err(problem(
                "the service takes whole uploads; a part size does not apply".into(),
            ));
        };
        let bytes = mb.saturating_mul(MIB);
        let (low, high) = (rule.min.div_ceil(MIB).max(1), rule.max / MIB);
        if bytes < rule.min || bytes > rule.max {
            return Err(problem(format!("the part size is {low} to {high} MB here")));
        }
        Ok(bytes)
    }
}

impl PartRule {
    /// The part size for a file of `file_size` bytes: `chosen`, raised in whole MiB when the file
    /// would need more parts than the service accepts, and never above the largest part.
    pub fn part_size_for(&self, chosen: u64, file_size: u64) -> u64 {
        let chosen = chosen.clamp(self.min, self.max);
        let Some(max_parts) = self.max_parts else {
            return chosen;
        };
        let needed = file_size.div_ceil(max_parts);
        if needed <= chosen {
            return chosen;
        }
        needed.div_ceil(MIB).saturating_mul(MIB).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{OnedriveKind, S3Preset, WebdavPreset};
    use super::*;

    #[test]
    fn part_sizes_within_each_services_bounds() {
        let aws = Provider::S3(S3Preset::Aws);
        assert_eq!(aws.part_size(5), Ok(5 * MIB));
        assert_eq!(aws.part_size(5 * 1024), Ok(5 * GIB));
        let small = aws.part_size(4).expect_err("under 5 MiB").to_string();
        assert_eq!(
            small,
            "part size 4 MB for Amazon S3: the part size is 5 to 5120 MB here"
        );
        assert!(aws.part_size(5 * 1024 + 1).is_err());
        assert!(aws.part_size(u64::MAX).is_err());
        assert_eq!(Provider::Oss.part_size(1), Ok(MIB));
        assert_eq!(Provider::Cos.part_size(1), Ok(MIB));
        assert!(Provider::B2.part_size(4).is_err());
        assert_eq!(Provider::Azblob.part_size(4_000), Ok(4_000 * MIB));
        assert!(Provider::Azblob.part_size(4_001).is_err());
        let whole = Provider::Webdav(WebdavPreset::Generic)
            .part_size(8)
            .expect_err("whole uploads")
            .to_string();
        assert!(whole.contains("does not apply"), "{whole}");
        assert!(Provider::Onedrive(OnedriveKind::Personal)
            .part_size(8)
            .is_err());
    }

    #[test]
    fn parts_grow_for_files_that_would_need_too_many() {
        let s3 = S3_PARTS;
        // 8 MiB parts: 10,000 of them hold 78.125 GiB.
        assert_eq!(s3.part_size_for(8 * MIB, 10_000 * 8 * MIB), 8 * MIB);
        let bigger = s3.part_size_for(8 * MIB, 10_000 * 8 * MIB + 1);
        assert_eq!(bigger, 9 * MIB);
        // The largest S3 object, 5 TiB, fits in 10,000 parts.
        let for_5_tib = s3.part_size_for(8 * MIB, 5 << 40);
        assert!(for_5_tib * 10_000 >= 5 << 40, "{for_5_tib}");
        assert!(for_5_tib <= s3.max);
        // Out-of-bounds choices are brought within bounds.
        assert_eq!(s3.part_size_for(1, 1), 5 * MIB);
        // No part count: the chosen size stands.
        let gcs = Provider::Gcs.part_rule().expect("GCS uploads in parts");
        assert_eq!(gcs.part_size_for(8 * MIB, 1 << 40), 8 * MIB);
    }
}
