//! Cloud replicas: a path in a public cloud, reached through Apache OpenDAL, as one side of a
//! task the engine runs like any other (DESIGN.md "Replicas").

#[cfg(test)]
mod account_tests;
mod archive;
mod azure;
pub mod buckets;
pub mod connection;
pub mod crypt;
pub mod encoded;
#[cfg(feature = "test-hooks")]
pub mod faults;
mod full;
mod gcs_session;
mod hook;
pub mod multipart;
pub mod names;
pub mod oauth;
#[cfg(test)]
mod oauth_tests;
pub mod provider;
pub mod rebuild;
pub mod replica;
pub mod sftp_host;
pub mod transport;

pub use connection::{CloudConnection, Secrets};
pub use replica::{CloudOptions, CloudReplica};

/// The OpenDAL service behind a provider name (a preset's service for a preset); an unknown
/// name is taken as a service name as it is.
pub fn provider_scheme(provider: &str) -> String {
    provider::Provider::from_id(provider)
        .map(|p| p.scheme().to_string())
        .unwrap_or_else(|_| provider.to_string())
}
