//! The providers a cloud connection can use, and every rule the product documents set for them.
//!
//! [`Provider`] names one service (with its preset, for S3, Swift and WebDAV). [`Provider::spec`]
//! gives its table row, a [`ProviderSpec`]: the OpenDAL scheme, the options a connection needs
//! (each with the OpenDAL config key it feeds), how the endpoint is found, and what the service
//! keeps (versions, hashes, mtime, storage classes, SSE). The submodules hold the rules that take a
//! value: [`bucket`] (bucket and container names), [`limit`] (paths, names and object sizes),
//! [`storage`] (storage classes and SSE), [`keystone`] (Swift logins), [`sas`] (Azure SAS URLs),
//! [`part`] (multipart part sizes), [`poll`] (polling period) and [`filter`] (a cloud task's default filters). `--encode-names`
//! is [`crate::names`].
//!
//! Who calls: the connection code builds OpenDAL operators from a spec's option table; the CLI
//! checks a connection's options and bucket before any request; the cloud replica checks every
//! path before an upload and reports the ones a service cannot hold.
//!
//! Everything here is pure data and pure functions: no I/O, so every rule is tested alone. Rules
//! that come from the product documents cite them (`seed 002`, `seed 003`). A table of values
//! rather than one trait implementation per provider was chosen because the providers differ only
//! in data, and a table can be printed (docs/cloud.md) and checked as a whole.

pub mod bucket;
pub mod filter;
pub mod keystone;
pub mod limit;
pub mod part;
pub mod poll;
pub mod sas;
pub mod storage;
mod table;

use std::fmt;

pub use bucket::BucketRule;
pub use keystone::KeystoneVersion;
pub use limit::{PathLimits, PathRefusal};
pub use part::PartRule;
pub use poll::PollPeriod;
pub use sas::SasUrl;
pub use storage::{Sse, StorageClass};

/// A value a user gave that a provider rule refuses; the message names the value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    #[error("unknown provider `{given}`; known providers: {known}")]
    UnknownProvider { given: String, known: String },
    #[error("{kind} name `{name}`: {rule}")]
    BucketName {
        /// "bucket" or "container", as the provider calls it.
        kind: &'static str,
        name: String,
        rule: String,
    },
    #[error("{provider}: {problem}")]
    Option {
        provider: &'static str,
        problem: String,
    },
    #[error("storage class `{given}` for {provider}: {problem}")]
    StorageClass {
        provider: &'static str,
        given: String,
        problem: String,
    },
    #[error("server-side encryption on {provider}: {problem}")]
    Sse {
        provider: &'static str,
        problem: String,
    },
    #[error("part size {given_mb} MB for {provider}: {problem}")]
    PartSize {
        provider: &'static str,
        given_mb: u64,
        problem: String,
    },
    #[error("polling period {given} s: {problem}")]
    PollPeriod { given: u64, problem: &'static str },
    #[error("{what} `{given}`: {problem}")]
    Filter {
        what: &'static str,
        given: String,
        problem: String,
    },
}

/// One service a connection reaches, with its preset where a service family has several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    S3(S3Preset),
    Azblob,
    Gcs,
    B2,
    Swift(SwiftPreset),
    Oss,
    Cos,
    Webdav(WebdavPreset),
    Sftp,
    /// A local or mounted folder (a NAS share, a USB disk) as the remote.
    Fs,
    Ftp,
    Dropbox,
    Gdrive,
    Onedrive(OnedriveKind),
    YandexDisk,
}

/// S3 services: AWS itself, any compatible service by endpoint, and the documented presets.
///
/// Every preset but [`S3Preset::Aws`] is "compatible" (seed 003's switch): AWS-only features
/// (storage classes, and SSE unless the seed says the service offers it) are off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum S3Preset {
    Aws,
    /// Any S3-compatible service named by `--endpoint`.
    Compatible,
    Hicloud,
    Sfr,
    JdCloud,
    DreamObjects,
    Wasabi,
    Minio,
    Ceph,
}

/// OpenStack Swift services: any Keystone server, and the documented presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SwiftPreset {
    Generic,
    SoftLayer,
    Rackspace,
    RackspaceUk,
    Ovh,
}

/// WebDAV servers: any server by address, and the services reached through WebDAV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebdavPreset {
    Generic,
    HiDrive,
    MegaDisk,
}

/// OneDrive personal and OneDrive for Business: one OpenDAL service, different limits (seed 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnedriveKind {
    Personal,
    Business,
}

/// Every provider, in the order `cairn cloud connect --help` and docs/cloud.md list them.
pub const ALL: &[Provider] = &[
    Provider::S3(S3Preset::Aws),
    Provider::S3(S3Preset::Compatible),
    Provider::S3(S3Preset::Hicloud),
    Provider::S3(S3Preset::Sfr),
    Provider::S3(S3Preset::JdCloud),
    Provider::S3(S3Preset::DreamObjects),
    Provider::S3(S3Preset::Wasabi),
    Provider::S3(S3Preset::Minio),
    Provider::S3(S3Preset::Ceph),
    Provider::Azblob,
    Provider::Gcs,
    Provider::B2,
    Provider::Swift(SwiftPreset::Generic),
    Provider::Swift(SwiftPreset::SoftLayer),
    Provider::Swift(SwiftPreset::Rackspace),
    Provider::Swift(SwiftPreset::RackspaceUk),
    Provider::Swift(SwiftPreset::Ovh),
    Provider::Oss,
    Provider::Cos,
    Provider::Webdav(WebdavPreset::Generic),
    Provider::Webdav(WebdavPreset::HiDrive),
    Provider::Webdav(WebdavPreset::MegaDisk),
    Provider::Sftp,
    Provider::Ftp,
    Provider::Fs,
    Provider::Dropbox,
    Provider::Gdrive,
    Provider::Onedrive(OnedriveKind::Personal),
    Provider::Onedrive(OnedriveKind::Business),
    Provider::YandexDisk,
];

/// A connection option, spelled as the CLI flag (`--access-key-id`) and the config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OptionKey {
    Endpoint,
    Region,
    Bucket,
    Container,
    BucketId,
    AccessKeyId,
    SecretAccessKey,
    SecretId,
    SecretKey,
    AccountName,
    AccountKey,
    SasUrl,
    CredentialFile,
    ProjectId,
    ApplicationKeyId,
    ApplicationKey,
    AuthUrl,
    Keystone,
    Location,
    Tenant,
    Domain,
    User,
    Password,
    KeyFile,
    ClientId,
    ClientSecret,
    RefreshToken,
    AccessToken,
    Root,
}

impl OptionKey {
    /// The CLI flag without dashes, and the key in a connection's config.
    pub fn name(self) -> &'static str {
        match self {
            OptionKey::Endpoint => "endpoint",
            OptionKey::Region => "region",
            OptionKey::Bucket => "bucket",
            OptionKey::Container => "container",
            OptionKey::BucketId => "bucket-id",
            OptionKey::AccessKeyId => "access-key-id",
            OptionKey::SecretAccessKey => "secret-access-key",
            OptionKey::SecretId => "secret-id",
            OptionKey::SecretKey => "secret-key",
            OptionKey::AccountName => "account-name",
            OptionKey::AccountKey => "account-key",
            OptionKey::SasUrl => "sas-url",
            OptionKey::CredentialFile => "credential-file",
            OptionKey::ProjectId => "project-id",
            OptionKey::ApplicationKeyId => "application-key-id",
            OptionKey::ApplicationKey => "application-key",
            OptionKey::AuthUrl => "auth-url",
            OptionKey::Keystone => "keystone",
            OptionKey::Location => "location",
            OptionKey::Tenant => "tenant",
            OptionKey::Domain => "domain",
            OptionKey::User => "user",
            OptionKey::Password => "password",
            OptionKey::KeyFile => "key-file",
            OptionKey::ClientId => "client-id",
            OptionKey::ClientSecret => "client-secret",
            OptionKey::RefreshToken => "refresh-token",
            OptionKey::AccessToken => "access-token",
            OptionKey::Root => "root",
        }
    }

    /// True for values that must never be logged or printed, and that may be `prompt` (seed
    /// 003: asked at each run).
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            OptionKey::SecretAccessKey
                | OptionKey::SecretKey
                | OptionKey::AccountKey
                | OptionKey::SasUrl
                | OptionKey::ApplicationKey
                | OptionKey::Password
                | OptionKey::ClientSecret
                | OptionKey::RefreshToken
                | OptionKey::AccessToken
        )
    }

    /// True for the values that identify the account a credential belongs to: two connections
    /// with the same provider and the same values here are the same credential (seed 002 allows
    /// one connection per credential).
    pub fn identifies_account(self) -> bool {
        matches!(
            self,
            OptionKey::Endpoint
                | OptionKey::AuthUrl
                | OptionKey::Location
                | OptionKey::AccessKeyId
                | OptionKey::SecretId
                | OptionKey::AccountName
                | OptionKey::SasUrl
                | OptionKey::CredentialFile
                | OptionKey::ApplicationKeyId
                | OptionKey::Tenant
                | OptionKey::Domain
                | OptionKey::User
                | OptionKey::ClientId
                | OptionKey::RefreshToken
                | OptionKey::AccessToken
                | OptionKey::Root
        )
    }

    /// Every key, for parsing a config or a flag name.
    pub const ALL: &'static [OptionKey] = &[
        OptionKey::Endpoint,
        OptionKey::Region,
        OptionKey::Bucket,
        OptionKey::Container,
        OptionKey::BucketId,
        OptionKey::AccessKeyId,
        OptionKey::SecretAccessKey,
        OptionKey::SecretId,
        OptionKey::SecretKey,
        OptionKey::AccountName,
        OptionKey::AccountKey,
        OptionKey::SasUrl,
        OptionKey::CredentialFile,
        OptionKey::ProjectId,
        OptionKey::ApplicationKeyId,
        OptionKey::ApplicationKey,
        OptionKey::AuthUrl,
        OptionKey::Keystone,
        OptionKey::Location,
        OptionKey::Tenant,
        OptionKey::Domain,
        OptionKey::User,
        OptionKey::Password,
        OptionKey::KeyFile,
        OptionKey::ClientId,
        OptionKey::ClientSecret,
        OptionKey::RefreshToken,
        OptionKey::AccessToken,
        OptionKey::Root,
    ];

    /// The key for a flag or config name (`access-key-id`, or `access_key_id`).
    pub fn from_name(name: &str) -> Option<OptionKey> {
        let name = name.trim_start_matches("--").replace('_', "-");
        OptionKey::ALL.iter().copied().find(|k| k.name() == name)
    }
}

impl fmt::Display for OptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{}", self.name())
    }
}

/// Whether a connection must give an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
    /// One of the provider's credential sets must be complete; this option belongs to set `n`.
    /// (Azure: an account name, key and container, or a SAS URL that includes the container.)
    Alternative(u8),
}

/// One option of a provider: its key, whether it is needed, and where it goes in OpenDAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionSpec {
    pub key: OptionKey,
    pub need: Need,
    /// The OpenDAL config key this option sets, or `None` when cairn uses it itself (a Keystone
    /// login, a SAS URL split into its parts, a project id for listing buckets) or fills an
    /// endpoint template with it.
    pub opendal: Option<&'static str>,
}

/// How a connection's service address is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointRule {
    /// The option that holds the address (`endpoint`, or `auth-url` for Swift's Keystone).
    pub option: OptionKey,
    /// The address when the user gives none; `{region}`, `{location}` and `{account}` are filled
    /// from the options of the same name. `None`: the user must give it.
    pub template: Option<&'static str>,
    /// The region used for `{region}` (and given to OpenDAL) when the user gives none.
    pub default_region: Option<&'static str>,
}

/// Whether a service keeps older versions of an object, and whether cairn can reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Replacing or deleting an object loses the old bytes.
    None,
    /// Kept when versioning is on for the bucket; OpenDAL lists and reads them then.
    IfBucketEnabled,
    /// Always kept by the service (seed 003: "the cloud service forces file versioning"), but
    /// OpenDAL cannot list or read them, so cairn cannot restore from them.
    ForcedUnreadable,
    /// Always kept and readable through OpenDAL.
    Always,
}

/// The content hash a service reports, which the consistency check compares (seed 002's
/// attribute table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Md5,
    Sha1,
}

/// Whether a service keeps a file's modification time (seed 002's attribute table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtimeSupport {
    /// Third parties can set it (seed 002: "O").
    Settable,
    /// Cannot be set, but a custom attribute can hold it (seed 002: "O (1)").
    CustomAttribute,
    /// Always the upload time (seed 002: "X"): kept in the local index (the cloud database).
    UploadTime,
}

/// A provider's row in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSpec {
    /// `--provider` value.
    pub id: &'static str,
    pub display_name: &'static str,
    /// The OpenDAL scheme the connection builds.
    pub scheme: &'static str,
    /// The options a connection takes; any other option is refused.
    pub options: &'static [OptionSpec],
    /// How the service address is found; `None` for services with a fixed address (OAuth).
    pub endpoint: Option<EndpointRule>,
    /// The S3 "compatible service" switch (seed 003): AWS-only features are off.
    pub compatible: bool,
    pub versioning: Versioning,
    /// The hash the service reports for a whole-object upload (multipart uploads have none on
    /// S3, OSS, COS, JD Cloud, Swift DLO and B2 parts: seed 002).
    pub hash: Option<HashKind>,
    pub mtime: MtimeSupport,
    /// Storage classes a task may choose; empty when the service has none to choose.
    pub storage_classes: &'static [StorageClass],
    /// Server-side encryption (AES-256) can be asked for.
    pub sse: bool,
    /// Objects live in a flat namespace: folders exist only as prefixes (seed 003 "Empty folders
    /// and Amazon S3, Azure, Backblaze B2, OpenStack and Google Storage").
    pub flat_namespace: bool,
    /// What a bucket or container must look like; `None` for services without buckets.
    pub bucket_rule: Option<BucketRule>,
    /// Limits on what a path and an object may be.
    pub limits: PathLimits,
    /// Where the rules of this row come from, for docs/cloud.md.
    pub source: &'static str,
}

impl Provider {
    /// The provider for a `--provider` value (case-insensitive).
    ///
    /// # Errors
    /// An unknown id; the message lists the known ones.
    pub fn from_id(given: &str) -> Result<Provider, RuleError> {
        let wanted = given.trim().to_ascii_lowercase();
        let wanted = match wanted.as_str() {
            // Other spellings people use for the same services.
            "aws" | "amazon" => "s3",
            "azure" => "azblob",
            "google-drive" => "gdrive",
            "yandex" => "yandex-disk",
            other => other,
        };
        ALL.iter()
            .copied()
            .find(|p| p.id() == wanted)
            .ok_or_else(|| RuleError::UnknownProvider {
                given: given.to_string(),
                known: ALL.iter().map(|p| p.id()).collect::<Vec<_>>().join(", "),
            })
    }

    pub fn id(self) -> &'static str {
        self.spec().id
    }

    pub fn display_name(self) -> &'static str {
        self.spec().display_name
    }

    /// The OpenDAL scheme (`s3`, `azblob`, ...).
    pub fn scheme(self) -> &'static str {
        self.spec().scheme
    }

    /// The provider's row in the table.
    pub fn spec(self) -> &'static ProviderSpec {
        match self {
            Provider::S3(preset) => table::s3(preset),
            Provider::Azblob => &table::AZBLOB,
            Provider::Gcs => &table::GCS,
            Provider::B2 => &table::B2,
            Provider::Swift(preset) => table::swift(preset),
            Provider::Oss => &table::OSS,
            Provider::Cos => &table::COS,
            Provider::Webdav(preset) => table::webdav(preset),
            Provider::Sftp => &table::SFTP,
            Provider::Fs => &table::FS,
            Provider::Ftp => &table::FTP,
            Provider::Dropbox => &table::DROPBOX,
            Provider::Gdrive => &table::GDRIVE,
            Provider::Onedrive(OnedriveKind::Personal) => &table::ONEDRIVE,
            Provider::Onedrive(OnedriveKind::Business) => &table::ONEDRIVE_BUSINESS,
            Provider::YandexDisk => &table::YANDEX_DISK,
        }
    }

    /// The option an OpenDAL config key of this provider comes from (`access_key_secret` on OSS
    /// is `--secret-access-key`), for configurations saved with OpenDAL's names.
    pub fn option_for_opendal_key(self, key: &str) -> Option<OptionKey> {
        self.spec()
            .options
            .iter()
            .find(|o| o.opendal == Some(key))
            .map(|o| o.key)
    }

    /// What the service calls the top-level namespace, for messages.
    pub fn bucket_word(self) -> &'static str {
        match self {
            Provider::Azblob | Provider::Swift(_) => "container",
            _ => "bucket",
        }
    }

    /// Checks that a connection's options fit this provider: every required option given, one
    /// credential set complete where there are alternatives, nothing the provider does not take.
    /// (Values are checked apart: [`Provider::check_bucket`], [`Provider::endpoint`],
    /// [`Provider::keystone`], [`SasUrl::parse`].)
    ///
    /// # Errors
    /// The first missing or foreign option, by flag name.
    pub fn check_options(self, given: &[OptionKey]) -> Result<(), RuleError> {
        let spec = self.spec();
        let problem = |problem: String| RuleError::Option {
            provider: spec.display_name,
            problem,
        };
        if let Some(foreign) = given
            .iter()
            .find(|k| !spec.options.iter().any(|o| o.key == **k))
        {
            return Err(problem(format!(
                "{foreign} is not an option of this provider (it takes {})",
                option_list(spec.options.iter().map(|o| o.key))
            )));
        }
        if let Some(missing) = spec
            .options
            .iter()
            .find(|o| o.need == Need::Required && !given.contains(&o.key))
        {
            return Err(problem(format!("{} is required", missing.key)));
        }
        self.check_alternatives(given).map_err(problem)
    }

    /// Where a provider has credential alternatives, exactly one set must be complete.
    fn check_alternatives(self, given: &[OptionKey]) -> Result<(), String> {
        let spec = self.spec();
        let set = |n: u8| {
            spec.options
                .iter()
                .filter(move |o| o.need == Need::Alternative(n))
                .map(|o| o.key)
        };
        let sets: Vec<u8> = {
            let mut ids: Vec<u8> = spec
                .options
                .iter()
                .filter_map(|o| match o.need {
                    Need::Alternative(n) => Some(n),
                    _ => None,
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        if sets.is_empty() {
            return Ok(());
        }
        let touched: Vec<u8> = sets
            .iter()
            .copied()
            .filter(|&n| set(n).any(|k| given.contains(&k)))
            .collect();
        let describe = |n: u8| option_list(set(n));
        match touched.as_slice() {
            [] => Err(format!(
                "give one of: {}",
                sets.iter()
                    .map(|&n| describe(n))
                    .collect::<Vec<_>>()
                    .join("; or ")
            )),
            [n] => match set(*n).find(|k| !given.contains(k)) {
                Some(missing) => Err(format!("{missing} is required with {}", describe(*n))),
                None => Ok(()),
            },
            [a, b, ..] => Err(format!(
                "give either {} or {}, not both",
                describe(*a),
                describe(*b)
            )),
        }
    }

    /// The service address: the option the user gave, or the preset's template filled from the
    /// options (`{region}` falls back to the default region).
    ///
    /// # Errors
    /// No address given and no template, or a template value missing.
    pub fn endpoint(
        self,
        value: impl Fn(OptionKey) -> Option<String>,
    ) -> Result<String, RuleError> {
        let spec = self.spec();
        let problem = |problem: String| RuleError::Option {
            provider: spec.display_name,
            problem,
        };
        let Some(rule) = spec.endpoint else {
            return Err(problem("the service has a fixed address".into()));
        };
        if let Some(given) = value(rule.option).filter(|v| !v.trim().is_empty()) {
            return Ok(given);
        }
        let Some(template) = rule.template else {
            return Err(problem(format!("{} is required", rule.option)));
        };
        let mut out = template.to_string();
        for (placeholder, key) in [
            ("{region}", OptionKey::Region),
            ("{location}", OptionKey::Location),
            ("{account}", OptionKey::AccountName),
        ] {
            if !out.contains(placeholder) {
                continue;
            }
            let filled = value(key)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| (key == OptionKey::Region).then_some(rule.default_region?.to_string()))
                .ok_or_else(|| {
                    problem(format!("{key} is required to build the address {template}"))
                })?;
            out = out.replace(placeholder, &filled);
        }
        Ok(out)
    }

    /// A fingerprint of the credential a connection uses: equal for two connections that use the
    /// same credential on the same service (seed 002: one connection per credential), whatever
    /// their bucket, region or secret. Secrets and account ids are hashed, so the fingerprint
    /// can be stored and compared without revealing them.
    ///
    /// OAuth services are told apart only by their tokens: the same account authorised twice
    /// gets two refresh tokens, which only a request to the service could match.
    pub fn credential_fingerprint(self, value: impl Fn(OptionKey) -> Option<String>) -> String {
        let spec = self.spec();
        let mut hasher = blake3::Hasher::new();
        hasher.update(spec.id.as_bytes());
        // An address given by hand tells servers apart (a self-hosted server, or an
        // S3-compatible service reached through the AWS preset); a preset's template, never
        // hashed, only tells regions of one service apart, and a credential is the same in
        // every region.
        if let Some(rule) = spec.endpoint {
            if let Some(address) = value(rule.option).filter(|a| !a.trim().is_empty()) {
                hasher.update(b"\0address=");
                hasher.update(address.trim().trim_end_matches('/').as_bytes());
            }
        }
        for o in spec.options {
            let addressing = matches!(
                o.key,
                OptionKey::Endpoint | OptionKey::AuthUrl | OptionKey::Location | OptionKey::Region
            );
            if !o.key.identifies_account() || addressing {
                continue;
            }
            if let Some(v) = value(o.key) {
                hasher.update(b"\0");
                hasher.update(o.key.name().as_bytes());
                hasher.update(b"=");
                hasher.update(v.trim().as_bytes());
            }
        }
        hasher.finalize().to_hex()[..32].to_string()
    }

    /// Whether a conflict can keep the remote's version as a revision on the service rather than
    /// as a conflict copy (seed 002: "saved as one revision if the cloud service supports
    /// versioning").
    pub fn keeps_conflict_revision(self, bucket_versioning_on: bool) -> bool {
        match self.spec().versioning {
            Versioning::Always => true,
            Versioning::IfBucketEnabled => bucket_versioning_on,
            Versioning::None | Versioning::ForcedUnreadable => false,
        }
    }

    /// Whether mtime must be kept in the local index (seed 003's cloud database) because the
    /// service cannot store it (a custom attribute counts only where OpenDAL writes user
    /// metadata, which the connection asks OpenDAL at run time).
    pub fn needs_index_for_mtime(self) -> bool {
        self.spec().mtime == MtimeSupport::UploadTime
    }
}

impl std::str::FromStr for Provider {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::from_id(s)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

fn option_list(keys: impl Iterator<Item = OptionKey>) -> String {
    keys.map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn ids_are_unique_and_round_trip() {
        let mut seen = HashSet::new();
        for p in ALL {
            assert!(seen.insert(p.id()), "duplicate id {}", p.id());
            assert_eq!(Provider::from_id(p.id()), Ok(*p));
            assert_eq!(Provider::from_id(&p.id().to_uppercase()), Ok(*p));
        }
        assert_eq!(Provider::from_id("aws"), Ok(Provider::S3(S3Preset::Aws)));
        assert_eq!(Provider::from_id("Azure"), Ok(Provider::Azblob));
        assert_eq!("ovh".parse(), Ok(Provider::Swift(SwiftPreset::Ovh)));
        let err = Provider::from_id("dropbox-team")
            .expect_err("the rule refuses it")
            .to_string();
        assert!(err.contains("unknown provider `dropbox-team`"), "{err}");
        assert!(err.contains("s3-compatible"), "{err}");
    }

    #[test]
    fn every_provider_the_issue_names_is_in_the_table() {
        for id in [
            "s3",
            "s3-compatible",
            "hicloud",
            "sfr",
            "jdcloud",
            "dreamobjects",
            "wasabi",
            "minio",
            "ceph",
            "azblob",
            "gcs",
            "b2",
            "swift",
            "softlayer",
            "rackspace",
            "ovh",
            "oss",
            "cos",
            "webdav",
            "hidrive",
            "megadisk",
            "sftp",
            "ftp",
            "dropbox",
            "gdrive",
            "onedrive",
            "yandex-disk",
        ] {
            assert!(Provider::from_id(id).is_ok(), "{id} missing");
        }
    }

    #[test]
    fn schemes_are_the_opendal_services_the_crate_compiles_in() {
        let compiled = [
            "s3",
            "azblob",
            "gcs",
            "b2",
            "swift",
            "oss",
            "cos",
            "webdav",
            "sftp",
            "ftp",
            "fs",
            "dropbox",
            "gdrive",
            "onedrive",
            "yandex-disk",
        ];
        for p in ALL {
            assert!(
                compiled.contains(&p.scheme()),
                "{} uses {}",
                p.id(),
                p.scheme()
            );
        }
    }

    #[test]
    fn only_aws_is_not_compatible_among_s3_presets() {
        for p in ALL {
            if let Provider::S3(preset) = p {
                let spec = p.spec();
                assert_eq!(spec.compatible, *preset != S3Preset::Aws, "{}", p.id());
                if spec.compatible {
                    assert!(spec.storage_classes.is_empty(), "{}", p.id());
                }
            }
        }
        // Seed 002: SSE on AWS, hicloud and OSS only.
        let with_sse: Vec<_> = ALL
            .iter()
            .filter(|p| p.spec().sse)
            .map(|p| p.id())
            .collect();
        assert_eq!(with_sse, ["s3", "hicloud", "oss"]);
    }

    #[test]
    fn hashes_and_mtime_follow_seed_002s_table() {
        let row = |id: &str| Provider::from_id(id).expect("known id").spec();
        for (id, hash, mtime) in [
            ("s3", Some(HashKind::Md5), MtimeSupport::UploadTime),
            ("dropbox", None, MtimeSupport::Settable),
            ("gdrive", Some(HashKind::Md5), MtimeSupport::Settable),
            ("webdav", None, MtimeSupport::UploadTime),
            ("yandex-disk", None, MtimeSupport::UploadTime),
            ("swift", Some(HashKind::Md5), MtimeSupport::CustomAttribute),
            ("gcs", Some(HashKind::Md5), MtimeSupport::CustomAttribute),
            ("onedrive", Some(HashKind::Sha1), MtimeSupport::Settable),
            ("onedrive-business", None, MtimeSupport::UploadTime),
            ("azblob", Some(HashKind::Md5), MtimeSupport::CustomAttribute),
            ("b2", Some(HashKind::Sha1), MtimeSupport::CustomAttribute),
            ("oss", Some(HashKind::Md5), MtimeSupport::UploadTime),
            ("cos", Some(HashKind::Md5), MtimeSupport::UploadTime),
            ("jdcloud", Some(HashKind::Md5), MtimeSupport::UploadTime),
        ] {
            assert_eq!(row(id).hash, hash, "{id} hash");
            assert_eq!(row(id).mtime, mtime, "{id} mtime");
        }
        assert!(Provider::S3(S3Preset::Aws).needs_index_for_mtime());
        assert!(!Provider::Gdrive.needs_index_for_mtime());
    }

    #[test]
    fn conflict_revisions_only_where_versions_are_readable() {
        assert!(Provider::S3(S3Preset::Aws).keeps_conflict_revision(true));
        assert!(!Provider::S3(S3Preset::Aws).keeps_conflict_revision(false));
        assert!(Provider::Onedrive(OnedriveKind::Personal).keeps_conflict_revision(false));
        // B2 keeps versions but OpenDAL cannot restore them: a conflict copy instead.
        assert!(!Provider::B2.keeps_conflict_revision(true));
        assert!(!Provider::Webdav(WebdavPreset::Generic).keeps_conflict_revision(true));
    }

    #[test]
    fn option_tables_are_consistent() {
        for p in ALL {
            let spec = p.spec();
            let mut keys = HashSet::new();
            for o in spec.options {
                assert!(keys.insert(o.key), "{} lists {} twice", p.id(), o.key);
            }
            if let Some(rule) = spec.endpoint {
                assert!(
                    keys.contains(&rule.option),
                    "{}: the endpoint option {} is not in its options",
                    p.id(),
                    rule.option
                );
            }
            // The connection cannot work without some credential for services that need one.
            let has_secret = spec.options.iter().any(|o| o.key.is_secret());
            // Anonymous WebDAV and FTP exist; SFTP's and GCS's secrets are in key files.
            let anonymous_ok = matches!(p, Provider::Webdav(WebdavPreset::Generic))
                || matches!(
                    p,
                    Provider::Sftp | Provider::Ftp | Provider::Gcs | Provider::Fs
                );
            assert!(has_secret || anonymous_ok, "{} takes no secret", p.id());
        }
    }

    /// The field names of the OpenDAL config a scheme deserialises.
    fn opendal_fields(scheme: &str) -> Vec<String> {
        use opendal::services::*;
        let value = match scheme {
            "s3" => serde_json::to_value(S3Config::default()),
            "azblob" => serde_json::to_value(AzblobConfig::default()),
            "gcs" => serde_json::to_value(GcsConfig::default()),
            "b2" => serde_json::to_value(B2Config::default()),
            "swift" => serde_json::to_value(SwiftConfig::default()),
            "oss" => serde_json::to_value(OssConfig::default()),
            "cos" => serde_json::to_value(CosConfig::default()),
            "webdav" => serde_json::to_value(WebdavConfig::default()),
            "sftp" => serde_json::to_value(SftpConfig::default()),
            "ftp" => serde_json::to_value(FtpConfig::default()),
            "fs" => serde_json::to_value(FsConfig::default()),
            "dropbox" => serde_json::to_value(DropboxConfig::default()),
            "gdrive" => serde_json::to_value(GdriveConfig::default()),
            "onedrive" => serde_json::to_value(OnedriveConfig::default()),
            "yandex-disk" => serde_json::to_value(YandexDiskConfig::default()),
            other => panic!("no config for scheme {other}"),
        }
        .expect("OpenDAL configs serialise");
        value
            .as_object()
            .expect("a config is a JSON object")
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn every_opendal_key_in_the_table_is_a_field_of_the_services_config() {
        for p in ALL {
            let fields = opendal_fields(p.scheme());
            for o in p.spec().options {
                if let Some(key) = o.opendal {
                    assert!(
                        fields.iter().any(|f| f == key),
                        "{}: OpenDAL's {} config has no `{key}` (for {})",
                        p.id(),
                        p.scheme(),
                        o.key
                    );
                }
            }
        }
    }

    #[test]
    fn check_options_names_what_is_missing_or_foreign() {
        use OptionKey::*;
        let aws = Provider::S3(S3Preset::Aws);
        assert_eq!(
            aws.check_options(&[Bucket, AccessKeyId, SecretAccessKey]),
            Ok(())
        );
        let missing = aws
            .check_options(&[Bucket, AccessKeyId])
            .expect_err("the rule refuses it");
        assert_eq!(
            missing.to_string(),
            "Amazon S3: --secret-access-key is required"
        );
        let foreign = aws
            .check_options(&[Bucket, AccessKeyId, SecretAccessKey, Tenant])
            .expect_err("the rule refuses it")
            .to_string();
        assert!(
            foreign.starts_with("Amazon S3: --tenant is not an option of this provider"),
            "{foreign}"
        );
    }

    #[test]
    fn azure_takes_an_account_key_or_a_sas_url_not_both() {
        use OptionKey::*;
        let az = Provider::Azblob;
        assert_eq!(
            az.check_options(&[AccountName, AccountKey, Container]),
            Ok(())
        );
        assert_eq!(az.check_options(&[SasUrl]), Ok(()));
        let none = az
            .check_options(&[])
            .expect_err("the rule refuses it")
            .to_string();
        assert!(none.contains("give one of"), "{none}");
        let partial = az
            .check_options(&[AccountName, AccountKey])
            .expect_err("the rule refuses it");
        assert_eq!(
            partial.to_string(),
            "Microsoft Azure Blob Storage: --container is required with --account-name, \
             --account-key, --container"
        );
        let both = az
            .check_options(&[AccountName, AccountKey, Container, SasUrl])
            .expect_err("the rule refuses it")
            .to_string();
        assert!(both.contains("not both"), "{both}");
    }

    #[test]
    fn endpoints_come_from_the_option_or_the_preset_template() {
        let values = |pairs: &[(OptionKey, &str)]| {
            let map: HashMap<OptionKey, String> =
                pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
            move |k: OptionKey| map.get(&k).cloned()
        };
        let aws = Provider::S3(S3Preset::Aws);
        assert_eq!(
            aws.endpoint(values(&[])).as_deref(),
            Ok("https://s3.us-east-1.amazonaws.com")
        );
        assert_eq!(
            aws.endpoint(values(&[(OptionKey::Region, "eu-west-3")]))
                .as_deref(),
            Ok("https://s3.eu-west-3.amazonaws.com")
        );
        // An explicit endpoint wins, plain http included (local services).
        assert_eq!(
            Provider::S3(S3Preset::Minio)
                .endpoint(values(&[(OptionKey::Endpoint, "http://127.0.0.1:9000")]))
                .as_deref(),
            Ok("http://127.0.0.1:9000")
        );
        let minio = Provider::S3(S3Preset::Minio)
            .endpoint(values(&[]))
            .expect_err("the rule refuses it");
        assert_eq!(minio.to_string(), "MinIO: --endpoint is required");
        assert_eq!(
            Provider::Azblob
                .endpoint(values(&[(OptionKey::AccountName, "acct")]))
                .as_deref(),
            Ok("https://acct.blob.core.windows.net")
        );
        let softlayer = Provider::Swift(SwiftPreset::SoftLayer);
        assert_eq!(
            softlayer
                .endpoint(values(&[(OptionKey::Location, "dal05")]))
                .as_deref(),
            Ok("https://dal05.objectstorage.softlayer.net/auth/v1.0")
        );
        let no_location = softlayer
            .endpoint(values(&[]))
            .expect_err("the rule refuses it")
            .to_string();
        assert!(
            no_location.contains("--location is required"),
            "{no_location}"
        );
        assert_eq!(
            Provider::S3(S3Preset::JdCloud)
                .endpoint(values(&[]))
                .as_deref(),
            Ok("https://s3.cn-north-1.jdcloud-oss.com")
        );
        assert!(Provider::Dropbox.endpoint(values(&[])).is_err());
    }

    #[test]
    fn one_credential_one_fingerprint() {
        let of = |p: Provider, pairs: &[(OptionKey, &str)]| {
            let map: HashMap<OptionKey, String> =
                pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
            p.credential_fingerprint(|k| map.get(&k).cloned())
        };
        use OptionKey::*;
        let aws = Provider::S3(S3Preset::Aws);
        let a = of(
            aws,
            &[(AccessKeyId, "AK1"), (Bucket, "one"), (Region, "eu-west-1")],
        );
        // Another bucket, region or secret: the same credential.
        let b = of(
            aws,
            &[
                (AccessKeyId, "AK1"),
                (Bucket, "two"),
                (SecretAccessKey, "s"),
            ],
        );
        assert_eq!(a, b);
        assert_ne!(a, of(aws, &[(AccessKeyId, "AK2")]));
        // The same key on another service, or another server, is another credential.
        let minio = Provider::S3(S3Preset::Minio);
        let m1 = of(
            minio,
            &[(AccessKeyId, "AK1"), (Endpoint, "http://10.0.0.1:9000/")],
        );
        let m2 = of(
            minio,
            &[(AccessKeyId, "AK1"), (Endpoint, "http://10.0.0.2:9000")],
        );
        assert_ne!(a, m1);
        assert_ne!(m1, m2);
        assert_eq!(
            m1,
            of(
                minio,
                &[(AccessKeyId, "AK1"), (Endpoint, "http://10.0.0.1:9000")]
            )
        );
        assert!(!a.contains("AK1"));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn option_names_round_trip_and_secrets_are_marked() {
        for k in OptionKey::ALL {
            assert_eq!(OptionKey::from_name(k.name()), Some(*k));
            assert_eq!(OptionKey::from_name(&k.name().replace('-', "_")), Some(*k));
        }
        assert_eq!(
            Provider::Oss.option_for_opendal_key("access_key_secret"),
            Some(OptionKey::SecretAccessKey)
        );
        assert_eq!(
            Provider::Webdav(WebdavPreset::HiDrive).option_for_opendal_key("username"),
            Some(OptionKey::User)
        );
        assert_eq!(Provider::Gcs.option_for_opendal_key("bucket_id"), None);
        assert!(OptionKey::SecretAccessKey.is_secret());
        assert!(OptionKey::RefreshToken.is_secret());
        assert!(!OptionKey::AccessKeyId.is_secret());
        assert!(OptionKey::AccessKeyId.identifies_account());
        assert!(!OptionKey::Password.identifies_account());
    }
}
