//! A saved connection to a cloud account, and the OpenDAL operator built from it.
//!
//! The connection keeps its options (endpoint, bucket, region, account...) in the
//! configuration and its secrets apart, in the credentials file; a secret may also be
//! `prompt`, asked at each run (seed 003). Neither `Debug` nor an error message ever shows a
//! secret's value.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{HttpTransporter, OperationContext, Operator};
use serde::{Deserialize, Serialize};

use crate::provider::{OptionKey, Provider};
use crate::transport::{Counters, Limits, Transport};

/// Option names whose values are secrets, whatever the service.
const SECRET_KEYS: &[&str] = &[
    "secret_access_key",
    "session_token",
    "account_key",
    "sas_token",
    "credential",
    "password",
    "application_key",
    "refresh_token",
    "client_secret",
    "access_token",
    "token",
];

/// What the value of a secret option is replaced with in the configuration when it must be
/// asked at each run.
pub const PROMPT: &str = "prompt";

pub fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CloudConnection {
    /// The OpenDAL service (s3, azblob, gcs, ...) or a provider preset of one.
    pub provider: String,
    /// Options other than secrets (endpoint, bucket, region, account name, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Secret options this connection has (their values are in the credentials file), and
    /// those asked at each run.
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt: Vec<String>,
    /// Extra certificate authorities to trust (PEM), for a private endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Bytes per second for all transfers of this connection together (0 or none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_upload: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_download: Option<u64>,
    /// Only public addresses: names are resolved at every connection and loopback, private
    /// and link-local answers refused, so a name that later points inside the network is
    /// caught (a server connection saved by a user who is not an administrator).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public_only: bool,
}

/// Secret values by option name; `Debug` shows the names only.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Secrets(pub BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl CloudConnection {
    /// The OpenDAL scheme behind the provider.
    pub fn scheme(&self) -> String {
        crate::provider_scheme(&self.provider)
    }

    /// What identifies the account a connection reaches: one connection per credential
    /// (seed 002). The provider's [`Provider::credential_fingerprint`] over the saved options
    /// (OpenDAL's names, or cairn's for the options cairn uses itself).
    pub fn credential_id(&self) -> String {
        let Ok(provider) = Provider::from_id(&self.provider) else {
            // Not a provider this version knows: it can only clash with itself.
            return format!("unknown provider {}", self.provider);
        };
        let given = |key: OptionKey| {
            self.options.iter().find_map(|(name, value)| {
                let named = provider
                    .option_for_opendal_key(name)
                    .or_else(|| OptionKey::from_name(name));
                (named == Some(key)).then(|| value.clone())
            })
        };
        provider.credential_fingerprint(given)
    }

    /// For messages: `s3 http://127.0.0.1:9000 bucket`.
    pub fn describe(&self, root: &str) -> String {
        let place = ["bucket", "container", "endpoint", "root"]
            .iter()
            .find_map(|k| self.options.get(*k))
            .cloned()
            .unwrap_or_default();
        let root = root.trim_matches('/');
        if root.is_empty() {
            format!("{}:{place}", self.provider)
        } else {
            format!("{}:{place}/{root}", self.provider)
        }
    }
}

/// Opens the connection's operator with `root` (a path inside the bucket) as its root.
///
/// # Errors
/// A missing secret, a CA file that cannot be read, or options the service refuses; the
/// message names the option, never a secret's value.
pub fn operator(
    conn: &CloudConnection,
    secrets: &Secrets,
    root: &str,
    counters: Arc<Counters>,
) -> Result<Operator, String> {
    operator_with(conn, secrets, root, counters, DEFAULT_IN_FLIGHT, None)
}

/// What a caller that does not say may have in flight at once (a few parts of a few files).
pub const DEFAULT_IN_FLIGHT: u64 = 64 << 20;
/// OpenDAL's own bound on one read or write call of an unlimited connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one read or write call may take: OpenDAL's 10 s, plus, on a connection with a
/// limit, the time the limit needs for `in_flight` bytes. Without that, a request waiting its
/// turn behind the others' bytes timed out, was sent again and paid for its bytes twice: the
/// bench measured uploads at half their cap.
fn io_timeout(conn: &CloudConnection, in_flight: u64) -> Duration {
    let slowest = [conn.limit_upload, conn.limit_download]
        .into_iter()
        .flatten()
        .filter(|r| *r > 0)
        .min();
    match slowest {
        Some(rate) => IO_TIMEOUT + Duration::from_secs_f64(in_flight as f64 / rate as f64),
        None => IO_TIMEOUT,
    }
}

/// [`operator`] for a task: it may have `in_flight` bytes of requests at once (transfers
/// times parts times the part size), so that a rate limit never times a waiting request out;
/// and on S3 with static keys, multipart uploads interrupted in an earlier run are taken up
/// again, recorded in the state file `uploads` ([`crate::multipart`]).
///
/// # Errors
/// As [`operator`].
/// For a public-only connection to a service that does not speak HTTP (FTP): the host is
/// resolved again now and refused if it points inside the network. (HTTP services are checked
/// at every connection by the transport's resolver.)
fn refuse_private_host(conn: &CloudConnection) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    if !conn.public_only || conn.scheme() != "ftp" {
        return Ok(());
    }
    let Some(endpoint) = conn.options.get("endpoint").or(conn.options.get("host")) else {
        return Ok(());
    };
    let host = endpoint
        .split_once("://")
        .map_or(endpoint.as_str(), |(_, r)| r);
    let host = host.split('/').next().unwrap_or("");
    let with_port = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:21")
    };
    let addrs = with_port
        .to_socket_addrs()
        .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?;
    for a in addrs {
        if crate::transport::is_private(a.ip()) {
            return Err(format!(
                "endpoint {endpoint:?} now points at this machine or a private network ({}); only an administrator may use one",
                a.ip()
            ));
        }
    }
    Ok(())
}

/// The options OpenDAL's service is built from: the service's defaults, the connection's
/// options and secrets, and the task's root under the connection's own.
pub(crate) fn service_options(
    conn: &CloudConnection,
    secrets: &Secrets,
    root: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut map: BTreeMap<String, String> = service_defaults(&conn.scheme());
    map.extend(conn.options.clone());
    for name in &conn.secrets {
        match secrets.0.get(name) {
            Some(v) => {
                map.insert(name.clone(), v.clone());
            }
            None => {
                return Err(format!(
                    "the secret `{name}` of this connection is not saved; run `cairn cloud edit` to give it"
                ))
            }
        }
    }
    if conn.scheme() == "sftp" {
        pin_sftp_host(&mut map)?;
    }
    let root = root.trim_matches('/');
    let base_root = map.get("root").cloned().unwrap_or_default();
    let joined = format!("/{}/{root}", base_root.trim_matches('/'));
    map.insert("root".into(), joined.replace("//", "/"));
    Ok(map)
}

pub fn operator_with(
    conn: &CloudConnection,
    secrets: &Secrets,
    root: &str,
    counters: Arc<Counters>,
    in_flight: u64,
    uploads: Option<&std::path::Path>,
) -> Result<Operator, String> {
    opendal::init_default_registry();
    let mut map = service_options(conn, secrets, root)?;
    let ca = match &conn.ca_file {
        Some(path) => Some(
            std::fs::read(path).map_err(|e| format!("reading CA file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let limits = Arc::new(Limits {
        up: cairn_engine::ratelimit::RateLimit::new(conn.limit_upload),
        down: cairn_engine::ratelimit::RateLimit::new(conn.limit_download),
    });
    refuse_private_host(conn)?;
    let mut transport = Transport::new(ca.as_deref(), limits, counters, conn.public_only)?;
    if conn.scheme() == "gcs" {
        transport = transport.with_default_content_type();
    }
    if let (Some(file), Some(signer)) = (uploads, s3_signer(conn, &map)) {
        let resume = crate::multipart::Resume::load(file, signer);
        transport = transport.with_resume(Arc::new(resume));
    }
    if let Some(hook) = provider_hook(conn, &map, uploads) {
        transport = transport.with_hook(hook);
    }
    if conn.scheme() == "azblob" {
        // The access tier is the hook's to send: OpenDAL's azblob service has no such option.
        map.remove("default_storage_class");
    }
    let op = Operator::via_iter(conn.scheme(), map).map_err(|e| redact(&e.to_string(), secrets))?;
    let ctx = OperationContext::new().with_http_transport(transporter(transport)?);
    Ok(op
        .with_context(ctx)
        .layer(crate::full::FullIsFinalLayer)
        .layer(TimeoutLayer::new().with_io_timeout(io_timeout(conn, in_flight)))
        .layer(RetryLayer::new().with_jitter().with_max_times(5)))
}

/// The signer of an S3 connection with static keys (temporary ones expire: not resumed).
fn s3_signer(
    conn: &CloudConnection,
    map: &BTreeMap<String, String>,
) -> Option<crate::multipart::SigV4> {
    if conn.scheme() != "s3" || map.contains_key("session_token") {
        return None;
    }
    Some(crate::multipart::SigV4 {
        access_key_id: map.get("access_key_id")?.clone(),
        secret_access_key: map.get("secret_access_key")?.clone(),
        region: map
            .get("region")
            .cloned()
            .unwrap_or_else(|| "us-east-1".into()),
    })
}

/// What the transport does beyond OpenDAL for this service: Azure's access tiers, archive
/// rehydration and resumed block uploads; GCS's resumed sessions (the state in `uploads`).
fn provider_hook(
    conn: &CloudConnection,
    map: &BTreeMap<String, String>,
    uploads: Option<&std::path::Path>,
) -> Option<Arc<dyn crate::hook::Hook>> {
    match conn.scheme().as_str() {
        "azblob" => {
            let tier = map.get("default_storage_class").cloned();
            let auth = crate::azure::AzureAuth::of(map);
            Some(Arc::new(crate::azure::AzureHook::new(auth, tier, uploads)))
        }
        "gcs" => uploads.map(|file| {
            Arc::new(crate::gcs_session::GcsHook::load(file)) as Arc<dyn crate::hook::Hook>
        }),
        _ => None,
    }
}

/// SFTP: the host key the connection pinned is the one the user's known_hosts holds for
/// the host (added from the host when it holds none), and `ssh` checks strictly against it
/// (see `sftp_host`).
fn pin_sftp_host(map: &mut BTreeMap<String, String>) -> Result<(), String> {
    use crate::sftp_host;
    let pinned = map.remove(sftp_host::OPTION).ok_or_else(|| {
        format!(
            "an SFTP connection needs the server's host key fingerprint: --option {}=SHA256:... \
             (ask the server's administrator, or compare `ssh-keyscan -p PORT HOST | ssh-keygen -lf -` \
             with what they say)",
            sftp_host::OPTION
        )
    })?;
    match map.get("known_hosts_strategy").map(|s| s.to_lowercase()) {
        None => {}
        Some(s) if s == "strict" => {}
        Some(other) => {
            return Err(format!(
                "known_hosts_strategy={other}: SFTP host keys are always checked strictly; \
                 pin the host's key with --option {}=SHA256:... instead",
                sftp_host::OPTION
            ))
        }
    }
    map.insert("known_hosts_strategy".into(), "strict".into());
    let endpoint = map
        .get("endpoint")
        .ok_or("an SFTP connection needs --endpoint")?;
    sftp_host::ensure_pinned(endpoint, &pinned, &sftp_host::user_known_hosts()?)
}

#[cfg(not(feature = "test-hooks"))]
fn transporter(transport: Transport) -> Result<HttpTransporter, String> {
    Ok(HttpTransporter::new(transport))
}

/// Test hook: `CAIRN_TEST_CLOUD_FAULTS` puts the fault-injecting transport in front.
#[cfg(feature = "test-hooks")]
fn transporter(transport: Transport) -> Result<HttpTransporter, String> {
    match std::env::var("CAIRN_TEST_CLOUD_FAULTS") {
        Ok(text) if !text.is_empty() => {
            let plan = crate::faults::FaultPlan::parse(&text)?;
            Ok(HttpTransporter::new(crate::faults::FaultTransport::new(
                transport, plan,
            )))
        }
        _ => Ok(HttpTransporter::new(transport)),
    }
}

/// Options every connection of a service gets unless it says otherwise: never read the
/// machine's own cloud credentials or metadata service behind the user's back; WebDAV writes
/// make no folders (OpenDAL looked for the folder before every PUT; the cloud replica makes
/// its staging folder once).
fn service_defaults(scheme: &str) -> BTreeMap<String, String> {
    let pairs: &[(&str, &str)] = match scheme {
        "s3" => &[
            ("disable_config_load", "true"),
            ("disable_ec2_metadata", "true"),
            ("region", "us-east-1"),
        ],
        "gcs" => &[
            ("disable_config_load", "true"),
            ("disable_vm_metadata", "true"),
        ],
        "webdav" => &[("disable_create_dir", "true")],
        _ => &[],
    };
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `text` with every secret value replaced.
pub fn redact(text: &str, secrets: &Secrets) -> String {
    let mut out = text.to_string();
    for v in secrets.0.values().filter(|v| v.len() >= 4) {
        out = out.replace(v.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let s = Secrets(BTreeMap::from([(
            "secret_access_key".to_string(),
            "hunter2-secret".to_string(),
        )]));
        let shown = format!("{s:?}");
        assert!(shown.contains("secret_access_key"));
        assert!(!shown.contains("hunter2"));
        assert_eq!(redact("bad key hunter2-secret!", &s), "bad key ***!");
    }

    #[test]
    fn a_limited_connection_gives_waiting_requests_time() {
        let mut c = CloudConnection {
            provider: "s3".into(),
            options: BTreeMap::new(),
            secrets: vec![],
            prompt: vec![],
            ca_file: None,
            limit_upload: None,
            limit_download: None,
            public_only: false,
        };
        assert_eq!(
            io_timeout(&c, 1 << 30),
            IO_TIMEOUT,
            "unlimited: OpenDAL's bound"
        );
        c.limit_upload = Some(1_000_000);
        c.limit_download = Some(4_000_000);
        assert_eq!(
            io_timeout(&c, 32_000_000),
            IO_TIMEOUT + Duration::from_secs(32),
            "32 MB behind a 1 MB/s limit"
        );
    }

    #[test]
    fn one_credential_is_one_account_per_endpoint() {
        let mut a = CloudConnection {
            provider: "s3".into(),
            options: BTreeMap::from([
                ("access_key_id".to_string(), "AK".to_string()),
                ("endpoint".to_string(), "http://H/".to_string()),
                ("bucket".to_string(), "one".to_string()),
            ]),
            secrets: vec![],
            prompt: vec![],
            ca_file: None,
            limit_upload: None,
            limit_download: None,
            public_only: false,
        };
        let first = a.credential_id();
        a.options.insert("bucket".into(), "two".into());
        assert_eq!(a.credential_id(), first, "another bucket, same credential");
        a.options.insert("endpoint".into(), "http://H".into());
        assert_eq!(a.credential_id(), first, "the same address");
        a.options
            .insert("endpoint".into(), "http://other:9000".into());
        assert_ne!(a.credential_id(), first, "another server");
        a.options.insert("endpoint".into(), "http://H/".into());
        a.options.insert("access_key_id".into(), "AK2".into());
        assert_ne!(a.credential_id(), first);
        assert!(!a.credential_id().contains("AK2"), "the key id is hashed");
    }
}
