//! The provider table: one [`ProviderSpec`] per provider and preset, with the source of each
//! rule. Rows share values through struct update (`..S3_AWS`), so a preset states only how it
//! differs from its family.

use super::limit::{LengthUnit, PathLimits, GENERAL};
use super::storage::{AZURE_CLASSES, S3_CLASSES};
use super::{
    BucketRule, EndpointRule, HashKind, MtimeSupport, Need, OptionKey, OptionSpec, ProviderSpec,
    S3Preset, SwiftPreset, Versioning, WebdavPreset,
};

const fn req(key: OptionKey, opendal: &'static str) -> OptionSpec {
    OptionSpec {
        key,
        need: Need::Required,
        opendal: Some(opendal),
    }
}

const fn opt(key: OptionKey, opendal: &'static str) -> OptionSpec {
    OptionSpec {
        key,
        need: Need::Optional,
        opendal: Some(opendal),
    }
}

/// An option cairn reads itself (not passed to OpenDAL as is).
const fn own(key: OptionKey, need: Need) -> OptionSpec {
    OptionSpec {
        key,
        need,
        opendal: None,
    }
}

/// S3 options where the preset knows the address (AWS and the named services).
const S3_OPTIONS: &[OptionSpec] = &[
    opt(OptionKey::Endpoint, "endpoint"),
    opt(OptionKey::Region, "region"),
    req(OptionKey::Bucket, "bucket"),
    req(OptionKey::AccessKeyId, "access_key_id"),
    req(OptionKey::SecretAccessKey, "secret_access_key"),
];

/// S3 options where the user must give the address (a compatible service, MinIO, Ceph).
const S3_OPTIONS_WITH_ENDPOINT: &[OptionSpec] = &[
    req(OptionKey::Endpoint, "endpoint"),
    opt(OptionKey::Region, "region"),
    req(OptionKey::Bucket, "bucket"),
    req(OptionKey::AccessKeyId, "access_key_id"),
    req(OptionKey::SecretAccessKey, "secret_access_key"),
];

/// S3 limits for AWS and SFR (seed 002): the S3 character list, `.` and `..` refused, paths to
/// 1,024 characters (S3 keys are counted in UTF-8 bytes).
const S3_LIMITS: PathLimits = PathLimits {
    forbidden_chars: &[
        '"', '<', '>', '|', '{', '^', '}', '%', '`', ']', '[', '~', '#',
    ],
    reserved_names: &[".", ".."],
    max_path: Some(1024),
    unit: LengthUnit::Bytes,
    max_object_size: Some(5 * TB),
    ..GENERAL
};

const TB: u64 = 1 << 40;
const GB: u64 = 1 << 30;

/// The S3 row for a preset: shared options and hashes, preset endpoint and limits.
pub(super) fn s3(preset: S3Preset) -> &'static ProviderSpec {
    match preset {
        S3Preset::Aws => &S3_AWS,
        S3Preset::Compatible => &S3_COMPATIBLE,
        S3Preset::Hicloud => &S3_HICLOUD,
        S3Preset::Sfr => &S3_SFR,
        S3Preset::JdCloud => &S3_JDCLOUD,
        S3Preset::DreamObjects => &S3_DREAMOBJECTS,
        S3Preset::Wasabi => &S3_WASABI,
        S3Preset::Minio => &S3_MINIO,
        S3Preset::Ceph => &S3_CEPH,
    }
}

/// A compatible S3 preset: AWS-only features off.
const fn s3_compatible(
    id: &'static str,
    display_name: &'static str,
    endpoint: EndpointRule,
    limits: PathLimits,
    source: &'static str,
) -> ProviderSpec {
    ProviderSpec {
        id,
        display_name,
        options: match endpoint.template {
            Some(_) => S3_OPTIONS,
            None => S3_OPTIONS_WITH_ENDPOINT,
        },
        endpoint: Some(endpoint),
        compatible: true,
        storage_classes: &[],
        sse: false,
        bucket_rule: Some(BucketRule::S3Strict),
        limits,
        source,
        ..S3_AWS
    }
}

const fn endpoint(template: Option<&'static str>, region: &'static str) -> EndpointRule {
    EndpointRule {
        option: OptionKey::Endpoint,
        template,
        default_region: Some(region),
    }
}

pub(super) const S3_AWS: ProviderSpec = ProviderSpec {
    id: "s3",
    display_name: "Amazon S3",
    scheme: "s3",
    options: S3_OPTIONS,
    endpoint: Some(endpoint(
        Some("https://s3.{region}.amazonaws.com"),
        "us-east-1",
    )),
    compatible: false,
    versioning: Versioning::IfBucketEnabled,
    hash: Some(HashKind::Md5),
    mtime: MtimeSupport::UploadTime,
    storage_classes: S3_CLASSES,
    sse: true,
    flat_namespace: true,
    bucket_rule: Some(BucketRule::S3UsStandard),
    limits: S3_LIMITS,
    source: "seed 002 (limits, hash, mtime, SSE, RRS, IA), seed 003 (bucket names, One-Zone IA, Glacier, 5 TB)",
};

const S3_COMPATIBLE: ProviderSpec = s3_compatible(
    "s3-compatible",
    "S3-compatible service",
    endpoint(None, "us-east-1"),
    S3_LIMITS,
    "seed 003 (the compatible switch), seed 002 (S3 limits)",
);

const S3_HICLOUD: ProviderSpec = ProviderSpec {
    // Seed 002: hicloud S3 offers SSE (AES-256) like AWS.
    sse: true,
    ..s3_compatible(
        "hicloud",
        "hicloud S3",
        endpoint(Some("https://s3.hicloud.net.tw"), "us-east-1"),
        PathLimits {
            max_path: Some(255),
            max_object_size: Some(TB),
            ..S3_LIMITS
        },
        "seed 002 (255-character paths, 1 TB, SSE)",
    )
};

const S3_SFR: ProviderSpec = s3_compatible(
    "sfr",
    "SFR NAS Backup",
    endpoint(
        Some("https://api.suite-stockage-cloud.sfrbusinessteam.fr"),
        "us-east-1",
    ),
    PathLimits {
        // Seed 002: 3.9 GB.
        max_object_size: Some(3_900_000_000),
        ..S3_LIMITS
    },
    "seed 002 (address, 1,024-character paths, 3.9 GB)",
);

const S3_JDCLOUD: ProviderSpec = ProviderSpec {
    bucket_rule: Some(BucketRule::JdCloud),
    ..s3_compatible(
        "jdcloud",
        "JD Cloud OSS",
        endpoint(Some("https://s3.{region}.jdcloud-oss.com"), "cn-north-1"),
        PathLimits {
            forbidden_chars: &['#', '%', '+'],
            reserved_names: &[".", ".."],
            max_path: Some(1021),
            unit: LengthUnit::Bytes,
            max_object_size: Some(19 * TB),
            ..GENERAL
        },
        "seed 002 (bucket names, # % +, 1,021-character paths, 19 TB, md5)",
    )
};

const S3_DREAMOBJECTS: ProviderSpec = s3_compatible(
    "dreamobjects",
    "DreamObjects",
    endpoint(Some("https://objects-us-east-1.dream.io"), "us-east-1"),
    S3_LIMITS,
    "seed 003 (named as an S3-compatible service), seed 002 (S3 limits)",
);

const S3_WASABI: ProviderSpec = s3_compatible(
    "wasabi",
    "Wasabi",
    endpoint(Some("https://s3.{region}.wasabisys.com"), "us-east-1"),
    S3_LIMITS,
    "seed 002 (S3 limits)",
);

const S3_MINIO: ProviderSpec = s3_compatible(
    "minio",
    "MinIO",
    endpoint(None, "us-east-1"),
    S3_LIMITS,
    "seed 002 (S3 limits)",
);

const S3_CEPH: ProviderSpec = s3_compatible(
    "ceph",
    "Ceph Object Gateway",
    endpoint(None, "us-east-1"),
    S3_LIMITS,
    "seed 002 (S3 limits)",
);

pub(super) const AZBLOB: ProviderSpec = ProviderSpec {
    id: "azblob",
    display_name: "Microsoft Azure Blob Storage",
    scheme: "azblob",
    options: &[
        opt(OptionKey::Endpoint, "endpoint"),
        OptionSpec {
            key: OptionKey::AccountName,
            need: Need::Alternative(0),
            opendal: Some("account_name"),
        },
        OptionSpec {
            key: OptionKey::AccountKey,
            need: Need::Alternative(0),
            opendal: Some("account_key"),
        },
        OptionSpec {
            key: OptionKey::Container,
            need: Need::Alternative(0),
            opendal: Some("container"),
        },
        // Seed 003: a SAS URL that includes the container; cairn splits it into OpenDAL's
        // endpoint, container and sas_token.
        own(OptionKey::SasUrl, Need::Alternative(1)),
    ],
    endpoint: Some(EndpointRule {
        option: OptionKey::Endpoint,
        template: Some("https://{account}.blob.core.windows.net"),
        default_region: None,
    }),
    compatible: false,
    versioning: Versioning::None,
    hash: Some(HashKind::Md5),
    mtime: MtimeSupport::CustomAttribute,
    storage_classes: AZURE_CLASSES,
    sse: false,
    flat_namespace: true,
    bucket_rule: Some(BucketRule::Azure),
    limits: PathLimits {
        reserved_names: &[".synoemptyblob"],
        max_path: Some(1024),
        max_object_size: Some(4_864 * GB), // Seed 002: 4.75 TB, read as TiB.
        ..GENERAL
    },
    source: "seed 002 (limits, md5, mtime attribute), seed 003 (container names, $root, SAS, Hot/Cool/Archive)",
};

pub(super) const GCS: ProviderSpec = ProviderSpec {
    id: "gcs",
    display_name: "Google Cloud Storage",
    scheme: "gcs",
    options: &[
        opt(OptionKey::Endpoint, "endpoint"),
        req(OptionKey::Bucket, "bucket"),
        req(OptionKey::CredentialFile, "credential_path"),
        // Seed 002/003: the project id, which listing buckets needs (OpenDAL does not).
        own(OptionKey::ProjectId, Need::Required),
    ],
    endpoint: Some(EndpointRule {
        option: OptionKey::Endpoint,
        template: Some("https://storage.googleapis.com"),
        default_region: None,
    }),
    compatible: false,
    // Seed 002: Cloud Sync does not turn object versioning on; OpenDAL cannot read versions.
    versioning: Versioning::None,
    hash: Some(HashKind::Md5),
    mtime: MtimeSupport::CustomAttribute,
    storage_classes: &[],
    sse: false,
    flat_namespace: true,
    bucket_rule: Some(BucketRule::Gcs),
    limits: PathLimits {
        forbidden_chars: &['*', '?', '#', '[', ']'],
        blank_name_refused: true,
        max_path: Some(1024),
        unit: LengthUnit::Bytes,
        max_object_size: Some(5 * TB),
        ..GENERAL
    },
    source: "seed 002 (limits, md5, mtime attribute), seed 003 (bucket names, project id, service-account key)",
};

pub(super) const B2: ProviderSpec = ProviderSpec {
    id: "b2",
    display_name: "Backblaze B2",
    scheme: "b2",
    options: &[
        req(OptionKey::Bucket, "bucket"),
        // OpenDAL's b2 service addresses the bucket by its id as well as its name.
        req(OptionKey::BucketId, "bucket_id"),
        req(OptionKey::ApplicationKeyId, "application_key_id"),
        req(OptionKey::ApplicationKey, "application_key"),
    ],
    endpoint: None,
    compatible: false,
    versioning: Versioning::ForcedUnreadable,
    hash: Some(HashKind::Sha1),
    mtime: MtimeSupport::CustomAttribute,
    storage_classes: &[],
    sse: false,
    flat_namespace: true,
    bucket_rule: Some(BucketRule::B2),
    limits: PathLimits {
        reserved_names: &[".bzEmpty"],
        max_name: Some(250),
        max_path: Some(1024),
        unit: LengthUnit::Bytes,
        ..GENERAL
    },
    source: "seed 002 (limits, sha1, mtime attribute, bucket names), seed 003 (bucket names, forced versions)",
};

/// Swift options: a Keystone login cairn performs itself; OpenDAL then gets the storage URL
/// and the token (`endpoint`, `token`) and the container. A generic service names its identity
/// server and Keystone version; a preset knows both (seed 002).
const SWIFT_OPTIONS: &[OptionSpec] = &[
    own(OptionKey::AuthUrl, Need::Required),
    own(OptionKey::Keystone, Need::Required),
    own(OptionKey::Region, Need::Optional),
    own(OptionKey::User, Need::Required),
    own(OptionKey::Password, Need::Required),
    own(OptionKey::Tenant, Need::Optional),
    own(OptionKey::Domain, Need::Optional),
    req(OptionKey::Container, "container"),
];

/// SoftLayer: user name and API key, and a location that names the identity server (seed 002).
const SOFTLAYER_OPTIONS: &[OptionSpec] = &[
    own(OptionKey::AuthUrl, Need::Optional),
    own(OptionKey::Keystone, Need::Optional),
    own(OptionKey::Location, Need::Required),
    own(OptionKey::User, Need::Required),
    own(OptionKey::Password, Need::Required),
    req(OptionKey::Container, "container"),
];

/// Rackspace: user name and API key (Keystone 1.0, seed 002); a region picks the storage.
const RACKSPACE_OPTIONS: &[OptionSpec] = &[
    own(OptionKey::AuthUrl, Need::Optional),
    own(OptionKey::Keystone, Need::Optional),
    own(OptionKey::Region, Need::Optional),
    own(OptionKey::User, Need::Required),
    own(OptionKey::Password, Need::Required),
    req(OptionKey::Container, "container"),
];

/// OVH: Keystone 3.0 with a project (tenant) and optionally a domain (seed 003).
const OVH_OPTIONS: &[OptionSpec] = &[
    own(OptionKey::AuthUrl, Need::Optional),
    own(OptionKey::Keystone, Need::Optional),
    own(OptionKey::Region, Need::Optional),
    own(OptionKey::User, Need::Required),
    own(OptionKey::Password, Need::Required),
    own(OptionKey::Tenant, Need::Required),
    own(OptionKey::Domain, Need::Optional),
    req(OptionKey::Container, "container"),
];

const SWIFT_LIMITS: PathLimits = PathLimits {
    forbidden_chars: &['?'],
    max_path: Some(1024),
    ..GENERAL
};

pub(super) fn swift(preset: SwiftPreset) -> &'static ProviderSpec {
    match preset {
        SwiftPreset::Generic => &SWIFT,
        SwiftPreset::SoftLayer => &SWIFT_SOFTLAYER,
        SwiftPreset::Rackspace => &SWIFT_RACKSPACE,
        SwiftPreset::RackspaceUk => &SWIFT_RACKSPACE_UK,
        SwiftPreset::Ovh => &SWIFT_OVH,
    }
}

const fn auth(template: Option<&'static str>) -> EndpointRule {
    EndpointRule {
        option: OptionKey::AuthUrl,
        template,
        default_region: None,
    }
}

pub(super) const SWIFT: ProviderSpec = ProviderSpec {
    id: "swift",
    display_name: "OpenStack Swift",
    scheme: "swift",
    options: SWIFT_OPTIONS,
    endpoint: Some(auth(None)),
    compatible: false,
    versioning: Versioning::None,
    hash: Some(HashKind::Md5),
    mtime: MtimeSupport::CustomAttribute,
    storage_classes: &[],
    sse: false,
    flat_namespace: true,
    bucket_rule: Some(BucketRule::Swift),
    limits: SWIFT_LIMITS,
    source: "seed 002 (Keystone v1/v2/v3, limits, container names, md5, mtime attribute), seed 003 (tenant, Identity V3)",
};

const SWIFT_SOFTLAYER: ProviderSpec = ProviderSpec {
    id: "softlayer",
    display_name: "IBM SoftLayer Object Storage",
    options: SOFTLAYER_OPTIONS,
    endpoint: Some(auth(Some(
        "https://{location}.objectstorage.softlayer.net/auth/v1.0",
    ))),
    source: "seed 002 (username and API key, location, Swift limits)",
    ..SWIFT
};

const SWIFT_RACKSPACE: ProviderSpec = ProviderSpec {
    id: "rackspace",
    display_name: "Rackspace Cloud Files",
    options: RACKSPACE_OPTIONS,
    endpoint: Some(auth(Some("https://auth.api.rackspacecloud.com/v1.0"))),
    source: "seed 002 (username and API key, Swift limits), seed 003",
    ..SWIFT
};

const SWIFT_RACKSPACE_UK: ProviderSpec = ProviderSpec {
    id: "rackspace-uk",
    display_name: "Rackspace Cloud Files UK",
    options: RACKSPACE_OPTIONS,
    endpoint: Some(auth(Some("https://lon.auth.api.rackspacecloud.com/v1.0"))),
    source: "seed 002 (RackSpace UK, Swift limits)",
    ..SWIFT
};

const SWIFT_OVH: ProviderSpec = ProviderSpec {
    id: "ovh",
    display_name: "OVH Object Storage",
    options: OVH_OPTIONS,
    endpoint: Some(auth(Some("https://auth.cloud.ovh.net/v3"))),
    source: "seed 003 (OVH via OpenStack, Identity V3), seed 002 (Swift limits)",
    ..SWIFT
};

pub(super) const OSS: ProviderSpec = ProviderSpec {
    id: "oss",
    display_name: "Alibaba Cloud OSS",
    scheme: "oss",
    options: &[
        opt(OptionKey::Endpoint, "endpoint"),
        // OSS has no region setting in OpenDAL: the region is part of the address.
        own(OptionKey::Region, Need::Optional),
        req(OptionKey::Bucket, "bucket"),
        req(OptionKey::AccessKeyId, "access_key_id"),
        req(OptionKey::SecretAccessKey, "access_key_secret"),
    ],
    endpoint: Some(EndpointRule {
        option: OptionKey::Endpoint,
        template: Some("https://oss-{region}.aliyuncs.com"),
        default_region: Some("cn-hangzhou"),
    }),
    compatible: false,
    versioning: Versioning::IfBucketEnabled,
    hash: Some(HashKind::Md5),
    mtime: MtimeSupport::UploadTime,
    storage_classes: &[],
    sse: true,
    flat_namespace: true,
    bucket_rule: Some(BucketRule::Oss),
    limits: PathLimits {
        reserved_names: &[".", ".."],
        max_path: Some(1023),
        unit: LengthUnit::Bytes,
        max_object_size: Some(49_971 * GB), // Seed 002: 48.8 TB, read as TiB, in whole GiB.
        ..GENERAL
    },
    source: "seed 002 (bucket names, limits, 48.8 TB, md5, SSE)",
};

pub(super) const COS: ProviderSpec = ProviderSpec {
    id: "cos",
    display_name: "Tencent Cloud COS",
    scheme: "cos",
    options: &[
        opt(OptionKey::Endpoint, "endpoint"),
        // COS has no region setting in OpenDAL: the region is part of the address.
        own(OptionKey::Region, Need::Optional),
        req(OptionKey::Bucket, "bucket"),
        req(OptionKey::SecretId, "secret_id"),
        req(OptionKey::SecretKey, "secret_key"),
    ],
    endpoint: Some(EndpointRule {
        option: OptionKey::Endpoint,
        template: Some("https://cos.{region}.myqcloud.com"),
        default_region: Some("ap-guangzhou"),
    }),
    compatible: false,
    versioning: Versioning::IfBucketEnabled,
    hash: Some(HashKind::Md5),
    mtime: MtimeSupport::UploadTime,
    storage_classes: &[],
    sse: false,
    flat_namespace: true,
    bucket_rule: Some(BucketRule::Cos),
    limits: PathLimits {
        forbidden_chars: &['?', '~'],
        reserved_names: &[".", ".."],
        max_path: Some(797),
        unit: LengthUnit::Bytes,
        max_object_size: Some(49_971 * GB), // Seed 002: 48.8 TB, read as TiB, in whole GiB.
        ..GENERAL
    },
    source: "seed 002 (bucket names, ? ~, 797-character paths, 48.8 TB, md5, COS V5)",
};

const WEBDAV_OPTIONS: &[OptionSpec] = &[
    req(OptionKey::Endpoint, "endpoint"),
    opt(OptionKey::User, "username"),
    opt(OptionKey::Password, "password"),
];

pub(super) fn webdav(preset: WebdavPreset) -> &'static ProviderSpec {
    match preset {
        WebdavPreset::Generic => &WEBDAV,
        WebdavPreset::HiDrive => &WEBDAV_HIDRIVE,
        WebdavPreset::MegaDisk => &WEBDAV_MEGADISK,
    }
}

pub(super) const WEBDAV: ProviderSpec = ProviderSpec {
    id: "webdav",
    display_name: "WebDAV",
    scheme: "webdav",
    options: WEBDAV_OPTIONS,
    endpoint: Some(EndpointRule {
        option: OptionKey::Endpoint,
        template: None,
        default_region: None,
    }),
    compatible: false,
    versioning: Versioning::None,
    hash: None,
    mtime: MtimeSupport::UploadTime,
    storage_classes: &[],
    sse: false,
    flat_namespace: false,
    bucket_rule: None,
    limits: GENERAL,
    source: "seed 002 (server address, account and password; no hash, no mtime; general limits)",
};

const WEBDAV_HIDRIVE: ProviderSpec = ProviderSpec {
    id: "hidrive",
    display_name: "HiDrive (WebDAV)",
    options: &[
        opt(OptionKey::Endpoint, "endpoint"),
        req(OptionKey::User, "username"),
        req(OptionKey::Password, "password"),
    ],
    endpoint: Some(EndpointRule {
        option: OptionKey::Endpoint,
        template: Some("https://webdav.hidrive.strato.com"),
        default_region: None,
    }),
    source: "seed 002 (HiDrive; reached through WebDAV, so WebDAV's attributes)",
    ..WEBDAV
};

const WEBDAV_MEGADISK: ProviderSpec = ProviderSpec {
    id: "megadisk",
    display_name: "MegaFon MegaDisk (WebDAV)",
    options: &[
        req(OptionKey::Endpoint, "endpoint"),
        req(OptionKey::User, "username"),
        req(OptionKey::Password, "password"),
    ],
    limits: PathLimits {
        forbidden_chars: &['*', '?', '"', '<', '>', '|'],
        ..GENERAL
    },
    source: "seed 002 (MegaDisk limits; reached through WebDAV, so WebDAV's attributes)",
    ..WEBDAV
};

pub(super) const SFTP: ProviderSpec = ProviderSpec {
    id: "sftp",
    display_name: "SFTP",
    scheme: "sftp",
    options: &[
        req(OptionKey::Endpoint, "endpoint"),
        req(OptionKey::User, "user"),
        opt(OptionKey::KeyFile, "key"),
    ],
    endpoint: Some(EndpointRule {
        option: OptionKey::Endpoint,
        template: None,
        default_region: None,
    }),
    source: "issue 8 (not in the seeds: general limits only)",
    ..WEBDAV
};

pub(super) const FTP: ProviderSpec = ProviderSpec {
    id: "ftp",
    display_name: "FTP",
    scheme: "ftp",
    options: &[
        req(OptionKey::Endpoint, "endpoint"),
        opt(OptionKey::User, "user"),
        opt(OptionKey::Password, "password"),
    ],
    source: "issue 8 (not in the seeds: general limits only)",
    ..SFTP
};

/// OAuth services: an app's client id and secret and a refresh token, refreshed by OpenDAL
/// during long uploads (seed 003 "Large file uploads and security time-outs").
const OAUTH_OPTIONS: &[OptionSpec] = &[
    req(OptionKey::ClientId, "client_id"),
    req(OptionKey::ClientSecret, "client_secret"),
    req(OptionKey::RefreshToken, "refresh_token"),
];

pub(super) const DROPBOX: ProviderSpec = ProviderSpec {
    id: "dropbox",
    display_name: "Dropbox",
    scheme: "dropbox",
    options: OAUTH_OPTIONS,
    endpoint: None,
    compatible: false,
    // Dropbox keeps revisions, but OpenDAL cannot read them.
    versioning: Versioning::ForcedUnreadable,
    hash: None,
    mtime: MtimeSupport::Settable,
    storage_classes: &[],
    sse: false,
    flat_namespace: false,
    bucket_rule: None,
    limits: PathLimits {
        forbidden_prefixes: &[".dropbox", ".cache"],
        forbidden_parts: &[".dropbox"],
        ..GENERAL
    },
    source:
        "seed 002 (.dropbox and .cache names, mtime settable, no hash), seed 003 (ignored files)",
};

pub(super) const GDRIVE: ProviderSpec = ProviderSpec {
    id: "gdrive",
    display_name: "Google Drive",
    scheme: "gdrive",
    versioning: Versioning::ForcedUnreadable,
    hash: Some(HashKind::Md5),
    limits: PathLimits {
        max_object_size: Some(5 * TB),
        ..GENERAL
    },
    source: "seed 002 (5 TB, md5, mtime settable)",
    ..DROPBOX
};

pub(super) const ONEDRIVE: ProviderSpec = ProviderSpec {
    id: "onedrive",
    display_name: "Microsoft OneDrive",
    scheme: "onedrive",
    versioning: Versioning::Always,
    hash: Some(HashKind::Sha1),
    limits: PathLimits {
        forbidden_chars: &['*', '?', '"', '<', '>', '|'],
        forbidden_leading: &[' '],
        max_object_size: Some(110 * GB),
        ..GENERAL
    },
    source: "seed 002 (characters, leading space, 110 GB, sha1, mtime settable)",
    ..DROPBOX
};

pub(super) const ONEDRIVE_BUSINESS: ProviderSpec = ProviderSpec {
    id: "onedrive-business",
    display_name: "Microsoft OneDrive for Business",
    hash: None,
    mtime: MtimeSupport::UploadTime,
    limits: PathLimits {
        forbidden_chars: &['*', '?', '"', '<', '>', '|'],
        forbidden_trailing: &['.'],
        reserved_names: &["forms", "~"],
        forbidden_parts: &["_vti_"],
        max_name: Some(128),
        max_path: Some(308),
        max_object_size: Some(15 * GB),
        ..GENERAL
    },
    source: "seed 002 (characters, trailing dot, forms and ~, _vti_, 128/308 characters, 15 GB; no hash, no mtime)",
    ..ONEDRIVE
};

pub(super) const YANDEX_DISK: ProviderSpec = ProviderSpec {
    id: "yandex-disk",
    display_name: "Yandex Disk",
    scheme: "yandex-disk",
    // OpenDAL's yandex-disk service takes an OAuth access token only.
    options: &[req(OptionKey::AccessToken, "access_token")],
    versioning: Versioning::None,
    hash: None,
    mtime: MtimeSupport::UploadTime,
    limits: GENERAL,
    source: "seed 002 (no hash, no mtime; general limits)",
    ..DROPBOX
};

/// The two tables of docs/cloud.md, rendered from the code so the page cannot drift from it.
#[cfg(test)]
mod docs {
    use super::super::limit::{GENERAL_FORBIDDEN_CHARS, GENERAL_MAX_NAME, GENERAL_MAX_PATH};
    use super::super::{Need, Provider, Versioning, ALL};
    use super::*;

    const PAGE: &str = include_str!("../../../../docs/cloud.md");

    fn chars(list: &[char]) -> String {
        list.iter()
            .map(|c| match c {
                '|' => "`\\|`".to_string(),
                '`' => "`` ` ``".to_string(),
                ' ' => "space".to_string(),
                c => format!("`{c}`"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn size(bytes: Option<u64>) -> String {
        const GB: u64 = 1 << 30;
        const TB: u64 = 1 << 40;
        match bytes {
            None => "-".into(),
            Some(b) if b % TB == 0 => format!("{} TiB", b / TB),
            Some(b) if b % GB == 0 => format!("{} GiB", b / GB),
            Some(b) => format!("{b} bytes"),
        }
    }

    fn options(p: Provider) -> String {
        p.spec()
            .options
            .iter()
            .map(|o| {
                let name = format!("`{}`", o.key.name());
                match o.need {
                    Need::Required => name,
                    Need::Optional => format!("[{name}]"),
                    Need::Alternative(n) => format!("{name}<sup>{}</sup>", n + 1),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn providers_table() -> String {
        let mut out = String::from(
            "| `--provider` | service | OpenDAL | options | address when not given | hash | mtime | versions | storage classes | SSE |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for p in ALL.iter().copied() {
            let s = p.spec();
            let address = match s.endpoint {
                None => "fixed".to_string(),
                Some(r) => match (r.template, r.default_region) {
                    (None, _) => format!("required (`{}`)", r.option.name()),
                    (Some(t), Some(region)) if t.contains("{region}") => {
                        format!("`{t}` (region {region})")
                    }
                    (Some(t), _) => format!("`{t}`"),
                },
            };
            let hash = match s.hash {
                None => "-",
                Some(HashKind::Md5) => "MD5",
                Some(HashKind::Sha1) => "SHA-1",
            };
            let mtime = match s.mtime {
                MtimeSupport::Settable => "kept",
                MtimeSupport::CustomAttribute => "attribute",
                MtimeSupport::UploadTime => "index",
            };
            let versions = match s.versioning {
                Versioning::None => "-",
                Versioning::IfBucketEnabled => "if on for the bucket",
                Versioning::ForcedUnreadable => "kept, not readable",
                Versioning::Always => "kept",
            };
            let classes = if s.storage_classes.is_empty() {
                "-".to_string()
            } else {
                s.storage_classes
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let compatible = if s.compatible { " (compatible)" } else { "" };
            out.push_str(&format!(
                "| `{}` | {}{compatible} | {} | {} | {address} | {hash} | {mtime} | {versions} | {classes} | {} |\n",
                s.id,
                s.display_name,
                s.scheme,
                options(p),
                if s.sse { "AES-256" } else { "-" },
            ));
        }
        out
    }

    fn limits_table() -> String {
        let mut out = format!(
            "| `--provider` | forbidden characters (besides {}) | other name rules | longest name | longest path | largest file | {} names | source |\n\
             |---|---|---|---|---|---|---|---|\n",
            chars(GENERAL_FORBIDDEN_CHARS),
            "bucket",
        );
        for p in ALL.iter().copied() {
            let s = p.spec();
            let l = &s.limits;
            let mut rules = Vec::new();
            if !l.reserved_names.is_empty() {
                let names: Vec<_> = l.reserved_names.iter().map(|n| format!("`{n}`")).collect();
                rules.push(format!("not {}", names.join(", ")));
            }
            if !l.forbidden_leading.is_empty() {
                rules.push(format!("no leading {}", chars(l.forbidden_leading)));
            }
            if !l.forbidden_trailing.is_empty() {
                rules.push(format!("no trailing {}", chars(l.forbidden_trailing)));
            }
            for prefix in l.forbidden_prefixes {
                rules.push(format!("no `{prefix}…`"));
            }
            for part in l.forbidden_parts {
                rules.push(format!("no `…{part}…`"));
            }
            if l.blank_name_refused {
                rules.push("not blank".into());
            }
            let rules = if rules.is_empty() {
                "-".to_string()
            } else {
                rules.join("; ")
            };
            let unit = match l.unit {
                super::super::limit::LengthUnit::Chars => "chars",
                super::super::limit::LengthUnit::Bytes => "bytes",
            };
            let name = l.max_name.map_or(format!("{GENERAL_MAX_NAME} chars"), |n| {
                format!("{n} {unit}")
            });
            let path = l.max_path.map_or(format!("{GENERAL_MAX_PATH} chars"), |n| {
                format!("{n} {unit}")
            });
            let bucket = match s.bucket_rule {
                None => "-",
                Some(BucketRule::S3UsStandard) => "S3 strict; relaxed in us-east-1",
                Some(BucketRule::S3Strict) => "S3 strict",
                Some(BucketRule::Oss) => "OSS",
                Some(BucketRule::Azure) => "Azure",
                Some(BucketRule::B2) => "B2",
                Some(BucketRule::Gcs) => "GCS",
                Some(BucketRule::Cos) => "COS",
                Some(BucketRule::JdCloud) => "JD Cloud",
                Some(BucketRule::Swift) => "Swift",
            };
            out.push_str(&format!(
                "| `{}` | {} | {rules} | {name} | {path} | {} | {bucket} | {} |\n",
                s.id,
                if l.forbidden_chars.is_empty() {
                    "-".to_string()
                } else {
                    chars(l.forbidden_chars)
                },
                size(l.max_object_size),
                s.source,
            ));
        }
        out
    }

    #[test]
    fn docs_cloud_md_shows_the_table_in_the_code() {
        for (what, table) in [("providers", providers_table()), ("limits", limits_table())] {
            assert!(
                PAGE.contains(&table),
                "docs/cloud.md's {what} table differs from the code; it should read:\n{table}"
            );
        }
    }
}
