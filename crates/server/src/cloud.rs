//! Cloud tasks the server runs for its own folders (seed 002: a NAS keeping its shares in
//! sync with a public cloud), and the connections they use.
//!
//! Each user keeps their own connections and tasks; an administrator sees and manages every
//! user's (seed 002's "admin mode"). A task runs as its owner: the runner (in the `cairn`
//! binary) reaches the folder through this server's own API with a token of the owner, so a
//! task can never touch a folder its owner may not, and loses access the moment its owner does.
//!
//! This module holds the wire types, the checks every request passes, and nothing that talks
//! to a cloud; [`crate::meta`] stores them. The one look at a cloud a request needs (a new
//! task's path: encrypted or not, the password right) is [`CloudAttach`]'s, which the binary
//! that runs the tasks supplies.
//!
//! An encrypted task's key (docs/encryption.md) is kept in the metadata store beside the
//! connection secrets, so the runner works unattended after a restart; the password that made
//! or opened it is used once and never stored.

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;

use std::sync::Arc;

use cairn_cloud::connection::is_secret;
use cairn_cloud::crypt::MasterKey;
use cairn_cloud::provider::Provider;
use cairn_cloud::transport::Counters;
use cairn_cloud::{CloudConnection, Secrets};
use cairn_model::filter::{normalize_ext, Filter};
use cairn_protocol::Access;
use serde::{Deserialize, Serialize};

use crate::meta::{Actor, CloudConnectionRow, EventKind, Meta, Outcome, User};
use crate::{Error, Result};

/// Connections and tasks one user may keep: each costs the server a pass now and then.
pub const MAX_PER_USER: i64 = 32;
/// Seed 002: a day at most between looks at the remote, ten minutes unless told.
pub const DEFAULT_POLL_SECS: u64 = 600;
pub const MAX_POLL_SECS: u64 = 86_400;
/// Largest file a task may be told to sync, in MB (seed 002: 0..10240).
pub const MAX_SIZE_MB: u64 = 10_240;
/// Shortest encryption password, as for a computer's cloud task.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Saving (or, with `edit`, changing) a connection.
#[derive(Clone, Serialize, Deserialize)]
pub struct ConnectionRequest {
    pub name: String,
    /// Whose connection it is; only an administrator may name another user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub connection: CloudConnection,
    /// Secret option values by name. Never sent back.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub edit: bool,
}

/// Shows no secret value.
impl std::fmt::Debug for ConnectionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRequest")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("connection", &self.connection)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A connection as listed: never its secrets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectionInfo {
    pub owner: String,
    pub name: String,
    pub provider: String,
    /// `s3:bucket`, as `cairn cloud list` shows it.
    pub place: String,
    pub tasks: Vec<String>,
}

/// What a server cloud task does; the folder side is `left`, the cloud `right`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskSettings {
    /// The path in the bucket (or container) the folder syncs with.
    #[serde(default)]
    pub remote: String,
    /// `bidirectional`, `upload-only` (folder to cloud) or `download-only` (cloud to folder).
    pub direction: String,
    #[serde(default)]
    pub keep_deleted: bool,
    pub poll_secs: u64,
    #[serde(default)]
    pub keep_versions: usize,
    pub transfers: usize,
    pub part_size_mb: u64,
    /// Largest file synced, in MB (0: unlimited).
    #[serde(default)]
    pub max_size_mb: u64,
    #[serde(default)]
    pub exclude_names: Vec<String>,
    #[serde(default)]
    pub exclude_exts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<String>,
    /// Names and contents encrypted before they leave the server (docs/encryption.md).
    #[serde(default)]
    pub encrypt: bool,
}

impl TaskSettings {
    /// # Errors
    /// The first setting out of range, named.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !["bidirectional", "upload-only", "download-only"].contains(&self.direction.as_str()) {
            return Err(format!(
                "direction {:?}: use bidirectional, upload-only or download-only",
                self.direction
            ));
        }
        if self.poll_secs == 0 || self.poll_secs > MAX_POLL_SECS {
            return Err(format!(
                "poll period {} s: give 1 to {MAX_POLL_SECS} seconds",
                self.poll_secs
            ));
        }
        if !(1..=16).contains(&self.transfers) {
            return Err(format!("transfers {}: give 1 to 16", self.transfers));
        }
        if !(5..=5_000).contains(&self.part_size_mb) {
            return Err(format!(
                "part size {} MB: give 5 to 5000",
                self.part_size_mb
            ));
        }
        if self.max_size_mb > MAX_SIZE_MB {
            return Err(format!(
                "largest file {} MB: give 0 (no limit) to {MAX_SIZE_MB}",
                self.max_size_mb
            ));
        }
        if self.keep_versions > 1_000 {
            return Err(format!(
                "versions kept {}: give 0 to 1000",
                self.keep_versions
            ));
        }
        if self.remote.len() > 1_024 || self.remote.split('/').any(|p| p == "..") {
            return Err(format!("remote path {:?} is not allowed", self.remote));
        }
        let names = self.exclude_names.iter().chain(&self.exclude_exts);
        if self.exclude_names.len() + self.exclude_exts.len() > 256
            || names.clone().any(|n| n.len() > 255)
        {
            return Err("at most 256 excluded names and extensions, each under 256 bytes".into());
        }
        Ok(())
    }

    /// The filter the task's passes run with: its own rules plus the cloud default ignore
    /// list, as for a computer's cloud task. The web UI marks what it leaves out "filtered".
    pub fn filter(&self) -> Filter {
        cairn_cloud::provider::filter::for_cloud(&Filter {
            max_size: self.max_size_mb * 1024 * 1024,
            names: self.exclude_names.clone(),
            exts: self.exclude_exts.iter().map(|e| normalize_ext(e)).collect(),
            ..Filter::default()
        })
    }

    /// Whether the task writes into the server folder (and so needs write access to it).
    pub fn writes_folder(&self) -> bool {
        self.direction != "upload-only"
    }
}

/// Adding a task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub folder: String,
    pub connection: String,
    pub settings: TaskSettings,
    /// The encryption password of a task with `settings.encrypt`: used once to turn
    /// encryption on (or to open a path encrypted already), then forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,
}

/// An encryption password on its way in: never stored, never shown.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A task request that passed every rule, with the connection it names; the password is
/// taken out of the request so that only [`CloudAttach`] sees it.
pub struct CheckedTask {
    pub request: TaskRequest,
    pub connection: CloudConnectionRow,
    pub password: Option<Password>,
}

/// The look at a new task's cloud path that adding it needs; implemented by the binary that
/// runs the tasks (this crate talks to no cloud) and given to [`crate::api::AppState`].
pub trait CloudAttach: Send + Sync {
    /// With a password: turns encryption on for the task's path, or opens it when it is on
    /// already, and gives the key. Without: refuses a path that is encrypted (it must never
    /// be written in the clear); a path that cannot be read now is the first pass's to report.
    ///
    /// # Errors
    /// A wrong password, a path that holds files in the clear, an encrypted path for a plain
    /// task, or the cloud failing, in words for the user and never with a secret.
    fn attach<'a>(&'a self, task: &'a CheckedTask) -> AttachFuture<'a>;
}

/// What [`CloudAttach::attach`] gives: the key of an encrypted task, or the reason it may not
/// be added.
pub type AttachFuture<'a> =
    futures_util::future::BoxFuture<'a, std::result::Result<Option<MasterKey>, String>>;

/// How a task's last pass went.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskStatus {
    /// When the last pass ended (ns since the epoch); `None`: never ran.
    #[serde(default)]
    pub last_ns: Option<i64>,
    /// `ok`, `failed_files` or `error`; empty before the first pass.
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A task as listed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskInfo {
    pub owner: String,
    pub name: String,
    pub folder: String,
    pub connection: String,
    pub settings: TaskSettings,
    pub status: TaskStatus,
}

/// Saves (or edits) a connection of `owner`; `admin`: the caller is an administrator (see
/// [`check_connection`]). The operator is built once with every secret, so a wrong option is
/// said now rather than at the first pass.
///
/// # Errors
/// A rule broken, a name taken, or the store.
pub fn save_connection(
    meta: &Meta,
    owner: &User,
    req: ConnectionRequest,
    admin: bool,
) -> Result<()> {
    let invalid = |m: String| Error::Invalid(m);
    if !cairn_protocol::is_valid_name(&req.name) {
        return Err(invalid(format!(
            "invalid connection name {:?}: use 1-64 letters, digits, '.', '_' or '-'",
            req.name
        )));
    }
    let mut conn = req.connection;
    if let Some(k) = conn.options.keys().find(|k| is_secret(k)) {
        return Err(invalid(format!(
            "option `{k}` is a secret: give it as a secret"
        )));
    }
    if req.secrets.len() > 32 || req.secrets.values().any(|v| v.len() > 16 * 1024) {
        return Err(invalid("at most 32 secrets of 16 KiB each".into()));
    }
    check_connection(&conn, admin).map_err(invalid)?;
    // What a user saves is held to public addresses at every connection, not only now; an
    // administrator's connection may reach inside the network.
    conn.public_only = !admin;
    let mut all = Secrets::default();
    if req.edit {
        // An edit keeps the secrets it does not give.
        if let Some(row) = meta
            .cloud_connections(Some(owner.id))?
            .into_iter()
            .find(|r| r.name == req.name)
        {
            all = row.secrets;
            conn.secrets = row.connection.secrets;
        }
    }
    for key in req.secrets.keys() {
        if !conn.secrets.contains(key) {
            conn.secrets.push(key.clone());
        }
    }
    let given = Secrets(req.secrets);
    all.0.extend(given.0.clone());
    cairn_cloud::connection::operator(&conn, &all, "", Arc::new(Counters::default()))
        .map_err(|e| invalid(format!("connection {}: {e}", req.name)))?;
    meta.save_cloud_connection(owner, &req.name, &conn, &given, req.edit)
}

/// Checks a task `owner` asks for, who needs write access to the folder unless the task only
/// copies it to the cloud; the task is then [`CloudAttach::attach`]ed and saved with
/// [`Meta::add_cloud_task`].
///
/// # Errors
/// A rule broken, no such connection or folder for the owner, read-only access, or the store.
pub fn check_task(meta: &Meta, owner: &User, mut req: TaskRequest) -> Result<CheckedTask> {
    for (what, name) in [("task", &req.name), ("folder", &req.folder)] {
        if !cairn_protocol::is_valid_name(name) {
            return Err(Error::Invalid(format!(
                "invalid {what} name {name:?}: use 1-64 letters, digits, '.', '_' or '-'"
            )));
        }
    }
    req.settings.check().map_err(Error::Invalid)?;
    let password = req.password.take();
    check_password(req.settings.encrypt, password.as_ref()).map_err(Error::Invalid)?;
    let conn = meta
        .cloud_connections(Some(owner.id))?
        .into_iter()
        .find(|c| c.name == req.connection)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no cloud connection named {} for user {}",
                req.connection, owner.name
            ))
        })?;
    let provider =
        Provider::from_id(&conn.connection.provider).map_err(|e| Error::Invalid(e.to_string()))?;
    let rule = |e: cairn_cloud::provider::RuleError| Error::Invalid(e.to_string());
    if let Some(raw) = &req.settings.storage_class {
        req.settings.storage_class = Some(
            provider
                .storage_class(raw)
                .map_err(rule)?
                .api_value()
                .into(),
        );
    }
    req.settings.sse = provider
        .sse(req.settings.sse.is_some())
        .map_err(rule)?
        .map(|s| s.api_value().into());
    match meta.access(owner, &req.folder)? {
        None => Err(Error::NotFound(format!(
            "no folder {} for user {}",
            req.folder, owner.name
        ))),
        Some((_, Access::Ro)) if req.settings.writes_folder() => Err(Error::Invalid(format!(
            "user {} may only read folder {}: only an upload-only task (folder to cloud) may use it",
            owner.name, req.folder
        ))),
        Some(_) => Ok(CheckedTask {
            request: req,
            connection: conn,
            password,
        }),
    }
}

/// An encrypted task comes with a password long enough; a plain one with none.
fn check_password(encrypt: bool, password: Option<&Password>) -> std::result::Result<(), String> {
    match (encrypt, password) {
        (true, None) => Err("an encrypted task needs its password".into()),
        (true, Some(p)) if p.0.chars().count() < MIN_PASSWORD_CHARS => Err(format!(
            "the encryption password must have at least {MIN_PASSWORD_CHARS} characters"
        )),
        (false, Some(_)) => Err("a password is given only with encryption on".into()),
        _ => Ok(()),
    }
}

/// Connections as listed (no secrets), with the tasks using each.
///
/// # Errors
/// The store.
pub fn connection_infos(meta: &Meta, owner: Option<i64>) -> Result<Vec<ConnectionInfo>> {
    let tasks = meta.cloud_tasks(owner)?;
    Ok(meta
        .cloud_connections(owner)?
        .into_iter()
        .map(|c| ConnectionInfo {
            owner: c.owner,
            provider: c.connection.provider.clone(),
            place: c.connection.describe(""),
            tasks: tasks
                .iter()
                .filter(|t| t.connection_id == c.id)
                .map(|t| t.name.clone())
                .collect(),
            name: c.name,
        })
        .collect())
}

/// Tasks as listed, with how their last pass went.
///
/// # Errors
/// The store.
pub fn task_infos(meta: &Meta, owner: Option<i64>) -> Result<Vec<TaskInfo>> {
    Ok(meta
        .cloud_tasks(owner)?
        .into_iter()
        .map(|t| TaskInfo {
            owner: t.owner,
            name: t.name,
            folder: t.folder,
            connection: t.connection,
            settings: t.settings,
            status: t.status,
        })
        .collect())
}

/// Options that would make the server act with its own identity or files rather than the
/// user's: reading the machine's cloud credentials, its metadata service, a key or CA file on
/// its disk. Only an administrator may set them.
const SERVER_SIDE_OPTIONS: &[&str] = &[
    "disable_config_load",
    "disable_ec2_metadata",
    "disable_vm_metadata",
    "credential_path",
    "role_arn",
    "external_id",
    "key",
    "known_hosts_strategy",
    "root_path",
];

/// Checks a connection someone asks the server to keep. Everyone: a known provider, a bucket
/// name that passes its rules. A user who is not an administrator also may not reach the
/// server's own files (`fs`, a CA or key file), its own credentials, or an endpoint on this
/// machine or its private network (the server would become their way in).
///
/// # Errors
/// The rule broken, in words.
pub fn check_connection(conn: &CloudConnection, admin: bool) -> std::result::Result<(), String> {
    let provider = Provider::from_id(&conn.provider).map_err(|e| e.to_string())?;
    if let Some(bucket) = conn.options.get("bucket").or(conn.options.get("container")) {
        provider
            .check_bucket(bucket, conn.options.get("region").map(String::as_str))
            .map_err(|e| e.to_string())?;
    }
    if !conn.prompt.is_empty() {
        return Err("a server task runs unattended: give every secret, none as `prompt`".into());
    }
    if admin {
        return Ok(());
    }
    if conn.scheme() == "fs" {
        return Err("only an administrator may sync with the server's own disk (`fs`)".into());
    }
    // SFTP runs the system `ssh` as the server's account: its keys and known hosts.
    if conn.scheme() == "sftp" {
        return Err(
            "only an administrator may add an SFTP connection on the server (it logs in with the server's own SSH identity)"
                .into(),
        );
    }
    if conn.ca_file.is_some() {
        return Err("only an administrator may name a CA file on the server".into());
    }
    if let Some(k) = conn
        .options
        .keys()
        .find(|k| SERVER_SIDE_OPTIONS.contains(&k.as_str()))
    {
        return Err(format!(
            "only an administrator may set option `{k}` on a server connection"
        ));
    }
    for key in ["endpoint", "host"] {
        if let Some(value) = conn.options.get(key) {
            refuse_private(value)?;
        }
    }
    Ok(())
}

/// Refuses an endpoint that resolves to this machine or a private network.
fn refuse_private(endpoint: &str) -> std::result::Result<(), String> {
    let without_scheme = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let host_port = without_scheme.split('/').next().unwrap_or("");
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
    let with_port = if host_port.starts_with('[') {
        if host_port.contains("]:") {
            host_port.to_string()
        } else {
            format!("{host_port}:443")
        }
    } else if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:443")
    };
    let addrs = with_port
        .to_socket_addrs()
        .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?;
    for a in addrs {
        if cairn_cloud::transport::is_private(a.ip()) {
            return Err(format!(
                "endpoint {endpoint:?} is on this machine or a private network ({}); only an administrator may use one",
                a.ip()
            ));
        }
    }
    Ok(())
}

/// Records task `task` of `owner` added or removed in the activity log (target
/// `OWNER/TASK`), saying so when `by` acts for another user.
pub fn record_task(
    meta: &Meta,
    kind: EventKind,
    by: &Actor,
    owner: &User,
    task: &str,
    detail: &str,
) {
    let detail = if by.name() == Some(owner.name.as_str()) {
        detail.to_string()
    } else {
        format!("{detail} (for {})", owner.name)
    };
    let target = format!("{}/{task}", owner.name);
    meta.record(kind, by, &target, Outcome::Ok, detail.trim());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(provider: &str, options: &[(&str, &str)]) -> CloudConnection {
        CloudConnection {
            provider: provider.into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secrets: Vec::new(),
            prompt: Vec::new(),
            ca_file: None,
            limit_upload: None,
            limit_download: None,
            public_only: false,
        }
    }

    #[test]
    fn users_cannot_point_the_server_at_itself() {
        for endpoint in [
            "http://127.0.0.1:9000",
            "https://localhost",
            "http://[::1]:80/x",
            "http://10.1.2.3",
            "http://192.168.0.10:8080",
            "http://169.254.169.254/latest",
            "http://user:pw@127.0.0.1/",
        ] {
            let c = conn("s3", &[("endpoint", endpoint), ("bucket", "data")]);
            let err = check_connection(&c, false).expect_err(endpoint);
            assert!(err.contains("private network"), "{endpoint}: {err}");
            check_connection(&c, true).expect("an administrator may");
        }
    }

    #[test]
    fn users_cannot_reach_the_servers_files_or_credentials() {
        let sftp = conn("sftp", &[("endpoint", "ssh://example.com:22")]);
        assert!(check_connection(&sftp, false)
            .expect_err("refused")
            .contains("SSH identity"));
        let fs = conn("fs", &[("root", "/etc")]);
        assert!(check_connection(&fs, false)
            .expect_err("refused")
            .contains("fs"));
        let load = conn(
            "s3",
            &[("bucket", "data"), ("disable_config_load", "false")],
        );
        assert!(check_connection(&load, false)
            .expect_err("refused")
            .contains("disable_config_load"));
        let mut ca = conn("s3", &[("bucket", "data")]);
        ca.ca_file = Some("/etc/ssl/private/key.pem".into());
        assert!(check_connection(&ca, false)
            .expect_err("refused")
            .contains("CA"));
    }

    #[test]
    fn bad_buckets_and_prompts_are_refused_for_everyone() {
        let bad = conn("s3", &[("bucket", "no/slashes")]);
        assert!(check_connection(&bad, true).is_err());
        let mut prompt = conn("s3", &[("bucket", "data")]);
        prompt.prompt.push("secret_access_key".into());
        assert!(check_connection(&prompt, true)
            .expect_err("refused")
            .contains("unattended"));
    }

    #[test]
    fn settings_out_of_range_are_named() {
        let ok = TaskSettings {
            remote: "backup".into(),
            direction: "bidirectional".into(),
            keep_deleted: false,
            poll_secs: 600,
            keep_versions: 0,
            transfers: 3,
            part_size_mb: 8,
            max_size_mb: 0,
            exclude_names: vec![],
            exclude_exts: vec![],
            storage_class: None,
            sse: None,
            encrypt: false,
        };
        ok.check().expect("defaults are fine");
        let cases: [(&str, TaskSettings); 5] = [
            (
                "direction",
                TaskSettings {
                    direction: "sideways".into(),
                    ..ok.clone()
                },
            ),
            (
                "poll period",
                TaskSettings {
                    poll_secs: 86_401,
                    ..ok.clone()
                },
            ),
            (
                "transfers",
                TaskSettings {
                    transfers: 0,
                    ..ok.clone()
                },
            ),
            (
                "largest file",
                TaskSettings {
                    max_size_mb: 10_241,
                    ..ok.clone()
                },
            ),
            (
                "remote path",
                TaskSettings {
                    remote: "a/../b".into(),
                    ..ok.clone()
                },
            ),
        ];
        for (word, s) in cases {
            assert!(s.check().expect_err("refused").contains(word), "{word}");
        }
    }

    #[test]
    fn encryption_passwords_are_checked_and_never_shown() {
        let short = Password("seven77".into());
        let long = Password("eight888".into());
        assert!(check_password(true, None)
            .expect_err("refused")
            .contains("needs its password"));
        assert!(check_password(true, Some(&short))
            .expect_err("refused")
            .contains("at least 8"));
        check_password(true, Some(&long)).expect("long enough");
        assert!(check_password(false, Some(&long)).is_err());
        check_password(false, None).expect("a plain task");
        let req = TaskRequest {
            name: "t".into(),
            owner: None,
            folder: "f".into(),
            connection: "c".into(),
            settings: TaskSettings {
                remote: String::new(),
                direction: "bidirectional".into(),
                keep_deleted: false,
                poll_secs: 600,
                keep_versions: 0,
                transfers: 3,
                part_size_mb: 8,
                max_size_mb: 0,
                exclude_names: vec![],
                exclude_exts: vec![],
                storage_class: None,
                sse: None,
                encrypt: true,
            },
            password: Some(long),
        };
        assert!(!format!("{req:?}").contains("eight888"));
    }
}
