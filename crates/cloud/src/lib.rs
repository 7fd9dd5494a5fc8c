//! Cloud replicas: a path in a public cloud, reached through Apache OpenDAL, as one side of a
//! task the engine runs like any other (DESIGN.md "Replicas").

pub mod connection;
pub mod replica;
pub mod transport;

pub use connection::{CloudConnection, Secrets};
pub use replica::{CloudOptions, CloudReplica};

/// The OpenDAL service behind a provider name: presets of S3-compatible services speak s3.
pub fn provider_scheme(provider: &str) -> String {
    match provider {
        "aws" | "minio" | "wasabi" | "ceph" | "dreamobjects" | "hicloud" | "sfr" | "jdcloud"
        | "s3-compatible" => "s3".into(),
        "azure" => "azblob".into(),
        "hidrive" | "megadisk" => "webdav".into(),
        "softlayer" | "rackspace" | "ovh" => "swift".into(),
        other => other.into(),
    }
}
