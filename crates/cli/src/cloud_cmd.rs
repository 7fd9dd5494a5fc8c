//! `cairn cloud ...`: connections to public clouds (`connect`, `list`, `edit`, `remove`) and
//! cloud tasks (`add`), which keep a local folder in sync with a path in a cloud.
//!
//! A connection's options live in `config.json`, its secrets in `credentials.json` (0600); a
//! secret given as `prompt` is asked at each run instead, and an unattended run fails with a
//! message saying so (seed 003).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_cloud::connection::{is_secret, PROMPT};
use cairn_cloud::crypt::{self, EncryptedReplica, KdfParams};
use cairn_cloud::encoded::EncodedReplica;
use cairn_cloud::provider::Provider;
use cairn_cloud::transport::Counters;
use cairn_cloud::{CloudConnection, CloudOptions, CloudReplica, Secrets};
use cairn_engine::reconcile::{ConflictPolicy, Direction};
use cairn_engine::replica::Replica;
use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::config::{host_name, read_stdin_line, Config, DriveConfig, Home, TaskConfig};

/// Seed 002: at most a day between looks at the remote; ten minutes unless told.
pub const DEFAULT_POLL_SECS: u64 = 600;

/// What a cloud task adds to a task.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CloudTaskConfig {
    /// Seconds between looks at the remote for changes made there.
    pub poll_secs: u64,
    /// Multipart part size in MiB.
    pub part_size_mb: u64,
    /// Replaced and deleted files kept on the remote (0: none).
    #[serde(default)]
    pub keep_versions: usize,
    /// Names and contents encrypted here (docs/encryption.md); the key is kept in the
    /// configuration folder (`keys/TASK.key`, 0600).
    #[serde(default)]
    pub encrypt: bool,
    /// The storage class (S3) new objects are written in, as the API names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Server-side encryption (AES-256) asked for on new objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<String>,
    /// The hours of the week the agent runs this task in (none: every hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<cairn_model::Schedule>,
    /// The task's own caps in bytes per second, inside its connection's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_upload: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_download: Option<u64>,
    /// Names the provider refuses are stored under a reversible spelling (docs/cloud.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encode_names: bool,
}

#[derive(Subcommand)]
pub enum CloudCmd {
    /// Save a connection to a cloud account.
    Connect(ConnectArgs),
    /// List saved cloud connections (never their secrets).
    List,
    /// Change a saved connection's options or secrets (re-authorise when they were revoked).
    Edit(ConnectArgs),
    /// Remove a saved connection (refused while a task uses it).
    Remove { name: String },
    /// Add a cloud task: a local folder kept in sync with a path in a cloud.
    Add(AddArgs),
    /// List the buckets (or containers) a connection's credential can see.
    Buckets { name: String },
    /// Write an encrypted task's key to a new file (keep it safe: it opens the data).
    ExportKey { task: String, file: PathBuf },
    /// Decrypt a plain copy of an encrypted remote's objects with an exported key; no task,
    /// no network.
    Decrypt(crate::cloud_decrypt::DecryptCmd),
    /// A cloud task's local index (the "cloud database").
    Db {
        #[command(subcommand)]
        cmd: crate::cloud_db::DbCmd,
    },
}

#[derive(Args)]
pub struct ConnectArgs {
    pub name: String,
    /// The service or a preset of one: s3, azblob, gcs, b2, swift, oss, cos, webdav, sftp, ftp,
    /// dropbox, gdrive, onedrive, yandex-disk; minio, wasabi, ceph, ... for S3-compatible ones.
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long)]
    bucket: Option<String>,
    #[arg(long)]
    region: Option<String>,
    /// Any other option of the service, as KEY=VALUE (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// A secret option (repeatable), its value read from stdin, one line each in the order
    /// given; a value of `prompt` asks for it at each run instead of saving it.
    #[arg(long = "secret", value_name = "KEY")]
    secrets: Vec<String>,
    /// Extra certificate authorities (PEM) for a private endpoint.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Upload limit in KB/s for all transfers of this connection (0 = unlimited).
    #[arg(long)]
    up_limit: Option<u64>,
    /// Download limit in KB/s (0 = unlimited).
    #[arg(long)]
    down_limit: Option<u64>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DirectionArg {
    Bidirectional,
    UploadOnly,
    DownloadOnly,
}

#[derive(Args)]
pub struct AddArgs {
    name: String,
    #[arg(long)]
    connection: String,
    #[arg(long)]
    local: PathBuf,
    /// The path in the bucket (or container, or server) the folder syncs with.
    #[arg(long, default_value = "")]
    remote: String,
    #[arg(long, value_enum, default_value = "bidirectional")]
    direction: DirectionArg,
    /// Don't remove files: a file deleted on one side stays on the other.
    #[arg(long)]
    keep_deleted: bool,
    /// Seconds between looks for changes made in the cloud (at most 86400).
    #[arg(long, default_value_t = DEFAULT_POLL_SECS)]
    poll: u64,
    #[arg(long, default_value_t = 3)]
    transfers: usize,
    /// Multipart part size in MB (default 8; the provider's bounds).
    #[arg(long)]
    part_size: Option<u64>,
    /// Keep this many replaced or deleted versions of each file on the remote (0 = none).
    #[arg(long, default_value_t = 0)]
    keep_versions: usize,
    /// Store names the provider refuses under a reversible spelling (docs/cloud.md "Names")
    /// instead of reporting them.
    #[arg(long)]
    encode_names: bool,
    /// Largest file synced, in MB (0 = unlimited, at most 10240).
    #[arg(long, default_value_t = 0)]
    max_size: u64,
    /// File names (glob patterns) not synced.
    #[arg(long)]
    exclude_name: Vec<String>,
    /// Extensions not synced (iso, *.iso).
    #[arg(long)]
    exclude_ext: Vec<String>,
    /// Sub-folders of the local folder not synced (selective sync).
    #[arg(long)]
    exclude_dir: Vec<PathBuf>,
    /// Weekly schedule: `always`, rules such as `mon-fri 09-18=suspend`, or a grid of 168
    /// `1`/`0` (docs/cloud.md).
    #[arg(long)]
    schedule: Option<String>,
    /// This task's own upload cap in KB/s, inside the connection's limit (0 = none).
    #[arg(long)]
    up_limit: Option<u64>,
    /// This task's own download cap in KB/s (0 = none).
    #[arg(long)]
    down_limit: Option<u64>,
    /// This computer's name in conflict-copy names.
    #[arg(long)]
    computer: Option<String>,
    /// Encrypt names and contents here; the password is read from stdin (one line). It
    /// cannot be turned off or changed for this remote later.
    #[arg(long)]
    encrypt: bool,
    /// Storage class of new objects: standard, ia, one-zone-ia, rrs, glacier (S3).
    #[arg(long)]
    storage_class: Option<String>,
    /// Ask the provider to encrypt objects at rest (AES-256), where it offers that.
    #[arg(long)]
    sse: bool,
}

pub async fn cloud(cmd: CloudCmd) -> Result<()> {
    match cmd {
        CloudCmd::Connect(a) => connect(a, false),
        CloudCmd::Edit(a) => connect(a, true),
        CloudCmd::List => list(),
        CloudCmd::Remove { name } => remove(&name),
        CloudCmd::Add(a) => add(a).await,
        CloudCmd::Buckets { name } => crate::cloud_buckets::run(&name).await,
        CloudCmd::ExportKey { task, file } => export_key(&task, &file),
        CloudCmd::Decrypt(c) => crate::cloud_decrypt::run(&c),
        CloudCmd::Db { cmd } => crate::cloud_db::run(cmd).await,
    }
}

fn parse_options(a: &ConnectArgs) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let named = [
        ("endpoint", &a.endpoint),
        ("bucket", &a.bucket),
        ("region", &a.region),
    ];
    for (k, v) in named {
        if let Some(v) = v {
            out.insert(k.to_string(), v.clone());
        }
    }
    for kv in &a.options {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--option {kv:?}: give KEY=VALUE");
        };
        if is_secret(k) {
            bail!("--option {k}=...: `{k}` is a secret; give it with `--secret {k}` (read from stdin) so it stays out of the configuration and of your shell's history");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// A new connection from `a` with its secrets read from stdin (one line each, in the order
/// given): what `cairn server cloud connect` sends to the server, which keeps it.
pub fn connection_from_args(
    a: &ConnectArgs,
) -> Result<(CloudConnection, BTreeMap<String, String>)> {
    let provider = a
        .provider
        .clone()
        .context("give the service with --provider (s3, azblob, gcs, webdav, sftp, ...)")?;
    let mut secrets = BTreeMap::new();
    for key in &a.secrets {
        let value =
            read_stdin_line().with_context(|| format!("reading secret {key} from stdin"))?;
        secrets.insert(key.clone(), value);
    }
    let conn = CloudConnection {
        provider,
        options: parse_options(a)?,
        secrets: Vec::new(),
        prompt: Vec::new(),
        ca_file: None,
        limit_upload: a.up_limit.map(|kb| kb * 1000).filter(|r| *r > 0),
        limit_download: a.down_limit.map(|kb| kb * 1000).filter(|r| *r > 0),
        public_only: false,
    };
    Ok((conn, secrets))
}

fn connect(a: ConnectArgs, edit: bool) -> Result<()> {
    crate::config::check_name("connection", &a.name)?;
    let home = Home::locate()?;
    let mut config = home.load()?;
    let mut creds = home.credentials()?;
    let mut conn = match (config.clouds.get(&a.name), edit) {
        (Some(c), true) => c.clone(),
        (None, true) => bail!("no cloud connection named {}", a.name),
        (Some(_), false) => bail!(
            "a cloud connection named {} exists already; change it with `cairn cloud edit {}`",
            a.name,
            a.name
        ),
        (None, false) => CloudConnection {
            provider: a
                .provider
                .clone()
                .context("give the service with --provider (s3, azblob, gcs, webdav, sftp, ...)")?,
            options: BTreeMap::new(),
            secrets: Vec::new(),
            prompt: Vec::new(),
            ca_file: None,
            limit_upload: None,
            limit_download: None,
            public_only: false,
        },
    };
    if let Some(p) = &a.provider {
        conn.provider = p.clone();
    }
    let provider = Provider::from_id(&conn.provider)?;
    conn.options.extend(parse_options(&a)?);
    // Bucket names are checked by the provider's rules before any request (seeds 002, 003).
    if let Some(bucket) = conn.options.get("bucket").or(conn.options.get("container")) {
        provider.check_bucket(bucket, conn.options.get("region").map(String::as_str))?;
    }
    let secrets = creds.clouds.entry(a.name.clone()).or_default();
    for key in &a.secrets {
        let value =
            read_stdin_line().with_context(|| format!("reading secret {key} from stdin"))?;
        conn.prompt.retain(|k| k != key);
        if value == PROMPT {
            conn.prompt.push(key.clone());
            secrets.0.remove(key);
        } else {
            secrets.0.insert(key.clone(), value);
        }
        if !conn.secrets.contains(key) {
            conn.secrets.push(key.clone());
        }
    }
    if let Some(ca) = &a.ca {
        conn.ca_file =
            Some(std::fs::canonicalize(ca).with_context(|| format!("CA file {}", ca.display()))?);
    }
    if let Some(kb) = a.up_limit {
        conn.limit_upload = Some(kb * 1000).filter(|r| *r > 0);
    }
    if let Some(kb) = a.down_limit {
        conn.limit_download = Some(kb * 1000).filter(|r| *r > 0);
    }
    // One connection per credential (seed 002): two would race on one account's objects.
    let id = conn.credential_id();
    if let Some((other, _)) = config
        .clouds
        .iter()
        .find(|(n, c)| **n != a.name && c.credential_id() == id)
    {
        bail!(
            "connection {other} already uses this credential; use it (or edit it) instead of adding a second one"
        );
    }
    // Checked before it is saved: the operator takes every option, or says which is wrong.
    let probe = Secrets(
        conn.secrets
            .iter()
            .map(|k| (k.clone(), secrets.0.get(k).cloned().unwrap_or_default()))
            .collect(),
    );
    cairn_cloud::connection::operator(&conn, &probe, "", Arc::new(Counters::default()))
        .map_err(|e| anyhow::anyhow!("connection {}: {e}", a.name))?;
    let described = conn.describe("");
    config.clouds.insert(a.name.clone(), conn);
    home.save_credentials(&creds)?;
    home.save(&config)?;
    println!(
        "{} cloud connection {}: {described}",
        if edit { "changed" } else { "saved" },
        a.name
    );
    Ok(())
}

fn list() -> Result<()> {
    let home = Home::locate()?;
    let config = home.load()?;
    if config.clouds.is_empty() {
        println!("no cloud connections; add one with `cairn cloud connect NAME --provider P ...`");
    }
    for (name, c) in &config.clouds {
        let used: Vec<&str> = config
            .tasks
            .iter()
            .filter(|(_, t)| t.kind == "cloud" && &t.connection == name)
            .map(|(n, _)| n.as_str())
            .collect();
        println!(
            "{name}\t{}\ttasks: {}",
            c.describe(""),
            if used.is_empty() {
                "-".to_string()
            } else {
                used.join(", ")
            }
        );
    }
    Ok(())
}

fn remove(name: &str) -> Result<()> {
    let home = Home::locate()?;
    let mut config = home.load()?;
    if !config.clouds.contains_key(name) {
        bail!("no cloud connection named {name}");
    }
    let users: Vec<&String> = config
        .tasks
        .iter()
        .filter(|(_, t)| t.kind == "cloud" && t.connection == name)
        .map(|(n, _)| n)
        .collect();
    if !users.is_empty() {
        bail!(
            "connection {name} is used by task(s) {}; remove them first",
            users
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    config.clouds.remove(name);
    let mut creds = home.credentials()?;
    creds.clouds.remove(name);
    home.save_credentials(&creds)?;
    home.save(&config)?;
    println!("removed cloud connection {name}");
    Ok(())
}

async fn add(a: AddArgs) -> Result<()> {
    crate::config::check_name("task", &a.name)?;
    let home = Home::locate()?;
    let mut config = home.load()?;
    if config.tasks.contains_key(&a.name) {
        bail!("a task named {} exists already", a.name);
    }
    if !config.clouds.contains_key(&a.connection) {
        bail!(
            "no cloud connection named {}; add it with `cairn cloud connect {} --provider ...`",
            a.connection,
            a.connection
        );
    }
    let local = crate::drive_cmd::check_local(&config, &a.local, None)?;
    let provider = Provider::from_id(&config.clouds[&a.connection].provider)?;
    let remote = a.remote.trim_matches('/').to_string();
    if !remote.is_empty() {
        cairn_model::RelPath::parse(&remote).with_context(|| format!("--remote {remote:?}"))?;
    }
    let mut task = TaskConfig {
        kind: "cloud".into(),
        locals: vec![local.clone()],
        connection: a.connection.clone(),
        folder: remote.clone(),
        computer: a.computer.clone().unwrap_or_else(host_name),
        filter: cairn_model::Filter::default(),
        keep_deleted: false,
        transfers: 3,
        drive: Some(DriveConfig {
            sub: String::new(),
            mode: Direction::TwoWay,
            conflict: ConflictPolicy::KeepLocal,
            keep_conflict_copy: false,
            consistency_check: false,
            read_only: false,
            on_relink: "merge".into(),
        }),
        cloud: Some(CloudTaskConfig {
            encrypt: a.encrypt,
            encode_names: a.encode_names,
            ..CloudTaskConfig::default()
        }),
    };
    // The same checks as `task set` (crate::cloud_options).
    let change = crate::cloud_options::CloudChange {
        direction: Some(a.direction.into()),
        keep_deleted: Some(a.keep_deleted),
        transfers: Some(a.transfers),
        part_size_mb: a.part_size,
        storage_class: a.storage_class.clone(),
        sse: Some(a.sse),
        max_size_mb: Some(a.max_size),
        exclude_names: Some(a.exclude_name.clone()),
        exclude_exts: Some(a.exclude_ext.clone()),
        exclude_dirs: Some(a.exclude_dir.clone()),
        schedule: a.schedule.clone(),
        poll_secs: Some(a.poll),
        keep_versions: Some(a.keep_versions),
        up_limit_kb: a.up_limit,
        down_limit_kb: a.down_limit,
    };
    crate::cloud_options::apply(&mut task, provider, &change)?;
    // The remote must answer before the task is saved: a wrong bucket or key is said now.
    let replica = cloud_replica(&home, &config, &a.connection, &task, false)?;
    let described = replica.describe();
    replica
        .list()
        .await
        .with_context(|| format!("listing {described}"))?;
    if a.encrypt {
        let password = read_stdin_line().context("reading the encryption password from stdin")?;
        if password.chars().count() < 8 {
            bail!("the encryption password must have at least 8 characters");
        }
        let encrypted = EncryptedReplica::enable(replica, &password, KdfParams::default())
            .await
            .with_context(|| format!("turning encryption on for {described}"))?;
        let key_file = key_path(&home, &a.name);
        if let Some(dir) = key_file.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(&key_file);
        encrypted.export_key(&key_file)?;
    } else {
        crypt::refuse_if_encrypted(&replica).await?;
    }
    config.tasks.insert(a.name.clone(), task);
    home.save(&config)?;
    println!(
        "added cloud task {}{}: {} <-> {described}",
        a.name,
        if a.encrypt { " (encrypted)" } else { "" },
        local.display(),
    );
    Ok(())
}

/// Where the multipart uploads a task started and did not finish are recorded: one file per
/// connection, remote path and local folder (what a task is), so two tasks never share one.
pub(crate) fn uploads_file(home: &Home, conn_name: &str, task: &TaskConfig) -> PathBuf {
    let local = task.locals.first().map(|l| l.display().to_string());
    let what = format!(
        "{conn_name}\0{}\0{}",
        task.folder,
        local.unwrap_or_default()
    );
    let id = cairn_model::ContentHash::of(what.as_bytes()).to_hex();
    home.data_dir
        .join("cloud-uploads")
        .join(format!("{}.json", &id[..16]))
}

/// Where an encrypted task's key is kept.
pub(crate) fn key_path(home: &Home, task: &str) -> PathBuf {
    home.config_dir.join("keys").join(format!("{task}.key"))
}

fn export_key(task: &str, file: &std::path::Path) -> Result<()> {
    let home = Home::locate()?;
    let config = home.load()?;
    let t = config
        .tasks
        .get(task)
        .with_context(|| format!("no task named {task}"))?;
    if !t.cloud.as_ref().is_some_and(|c| c.encrypt) {
        bail!("task {task} is not an encrypted cloud task");
    }
    let key = crypt::read_key_file(&key_path(&home, task))?;
    crypt::export_key(&key, file)?;
    println!(
        "wrote the key of task {task} to {} (anyone with it can read the task's data)",
        file.display()
    );
    Ok(())
}

/// The replica a cloud task's passes run against: the cloud path, behind the decryption
/// layer when the task encrypts.
pub async fn task_replica(
    home: &Home,
    config: &Config,
    task_name: &str,
    task: &TaskConfig,
    unattended: bool,
) -> Result<Box<dyn Replica>> {
    let replica = cloud_replica(home, config, &task.connection, task, unattended)?;
    if task.cloud.as_ref().is_some_and(|c| c.encrypt) {
        let key = crypt::read_key_file(&key_path(home, task_name))?;
        let sealed = uploads_file(home, &task.connection, task).with_extension("sealed");
        return Ok(Box::new(
            EncryptedReplica::open_with_key(replica, key)
                .await?
                .with_seal_log(&sealed),
        ));
    }
    crypt::refuse_if_encrypted(&replica).await?;
    // Encrypted names pass every provider's rules already: encoding is for plain ones.
    if let Some(provider) = encoded_names(config, task) {
        return Ok(Box::new(EncodedReplica::new(replica, provider)));
    }
    Ok(Box::new(replica))
}

/// The provider whose rules a task with `--encode-names` encodes names for.
pub(crate) fn encoded_names(config: &Config, task: &TaskConfig) -> Option<Provider> {
    task.cloud.as_ref().filter(|c| c.encode_names)?;
    let conn = config.clouds.get(&task.connection)?;
    Provider::from_id(&conn.provider).ok()
}

/// Where the task's path starts, counted from the bucket's root (a connection's own `root`
/// option, then the task's remote path).
fn join_root(conn: &CloudConnection, folder: &str) -> String {
    let base = conn.options.get("root").map(String::as_str).unwrap_or("");
    [base.trim_matches('/'), folder.trim_matches('/')]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}

/// The replica of a cloud task's remote path. `unattended`: a secret that must be typed at
/// each run fails the run instead of waiting for a keyboard.
pub fn cloud_replica(
    home: &Home,
    config: &Config,
    conn_name: &str,
    task: &TaskConfig,
    unattended: bool,
) -> Result<CloudReplica> {
    let conn = config
        .clouds
        .get(conn_name)
        .with_context(|| format!("no cloud connection named {conn_name}"))?;
    let mut secrets = home
        .credentials()?
        .clouds
        .get(conn_name)
        .cloned()
        .unwrap_or_default();
    for key in &conn.prompt {
        if unattended || !std::io::stdin().is_terminal() {
            bail!(
                "connection {conn_name} asks for its secret `{key}` at each run, and this run is unattended; run `cairn run` in a terminal, or save the secret with `cairn cloud edit {conn_name} --secret {key}`"
            );
        }
        eprint!("{key} for cloud connection {conn_name}: ");
        secrets.0.insert(key.clone(), read_stdin_line()?);
    }
    let cloud = task.cloud.clone().unwrap_or_default();
    let uploads = uploads_file(home, conn_name, task);
    let replica = open_replica(
        conn_name,
        conn,
        &secrets,
        &cloud,
        &task.folder,
        task.transfers,
        Some(&uploads),
    )?;
    let renewal =
        cairn_cloud::oauth::Renewal::of(conn_name, conn, &secrets, save_token(home, conn_name));
    Ok(replica
        .with_staging_owner(staging_owner(config, conn_name, task))
        .with_renewal(renewal))
}

/// Saves a renewed refresh token of connection `conn_name` in `credentials.json`, read again
/// just before it is written so that a change made meanwhile (another connection saved) stays.
fn save_token(home: &Home, conn_name: &str) -> cairn_cloud::oauth::SaveToken {
    let home = Home {
        config_dir: home.config_dir.clone(),
        data_dir: home.data_dir.clone(),
    };
    let name = conn_name.to_string();
    Box::new(move |token| {
        let mut creds = home.credentials().map_err(|e| format!("{e:#}"))?;
        let Some(secrets) = creds.clouds.get_mut(&name) else {
            // The connection was removed meanwhile: nothing to keep.
            return Ok(());
        };
        secrets.0.insert("refresh_token".into(), token.to_string());
        home.save_credentials(&creds).map_err(|e| format!("{e:#}"))
    })
}

/// The tag of this computer's temporaries for a task (its device id, connection, remote path
/// and local folder): its next pass removes what an interrupted one left, and no one else's.
fn staging_owner(config: &Config, conn_name: &str, task: &TaskConfig) -> String {
    let local = task.locals.first().map(|l| l.display().to_string());
    cairn_cloud::replica::owner_tag(&[
        &config.device_id,
        conn_name,
        &task.folder,
        &local.unwrap_or_default(),
    ])
}

/// The replica of `remote` (a path in the bucket) over connection `conn` with the task's
/// cloud settings; shared by this computer's cloud tasks and the server's. `uploads` records
/// multipart uploads so an interrupted one resumes (S3).
pub fn open_replica(
    conn_name: &str,
    conn: &CloudConnection,
    secrets: &Secrets,
    cloud: &CloudTaskConfig,
    remote: &str,
    transfers: usize,
    uploads: Option<&std::path::Path>,
) -> Result<CloudReplica> {
    let mut conn = conn.clone();
    // A task's own cap works inside its connection's limit: the lower one holds.
    conn.limit_upload = tighter(conn.limit_upload, cloud.limit_upload);
    conn.limit_download = tighter(conn.limit_download, cloud.limit_download);
    if let Some(class) = &cloud.storage_class {
        conn.options
            .insert("default_storage_class".into(), class.clone());
    }
    if let Some(sse) = &cloud.sse {
        conn.options
            .insert("server_side_encryption".into(), sse.clone());
    }
    let conn = &conn;
    let counters = Arc::new(Counters::default());
    let part_size = (cloud.part_size_mb as usize) << 20;
    let part_concurrency = transfers.clamp(1, 8);
    // What may wait behind a rate limit at once: every transfer's parts in flight (a service
    // that takes files whole holds one file per transfer; 64 MiB stands in for its size).
    let in_flight = (transfers.max(1) as u64).saturating_mul(
        (part_size as u64)
            .saturating_mul(part_concurrency as u64)
            .max(64 << 20),
    );
    let op = cairn_cloud::connection::operator_with(
        conn,
        secrets,
        remote,
        counters.clone(),
        in_flight,
        uploads,
    )
    .map_err(|e| anyhow::anyhow!("connection {conn_name}: {e}"))?;
    let opts = CloudOptions {
        part_size,
        part_concurrency,
        keep_versions: cloud.keep_versions,
        provider: cairn_cloud::provider::Provider::from_id(&conn.provider).ok(),
        root: join_root(conn, remote),
        staging_owner: None,
    };
    CloudReplica::new(op, conn.describe(remote), opts, counters)
        .with_limits(conn.limit_upload, conn.limit_download)
        .with_webdav_access(conn, secrets)
        .map_err(|e| anyhow::anyhow!("connection {conn_name}: {e}"))
}

/// The lower of two limits, either of which may be none.
fn tighter(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests {
    use super::tighter;

    #[test]
    fn a_task_cap_holds_inside_its_connections_limit() {
        assert_eq!(tighter(Some(8_000), Some(4_000)), Some(4_000));
        assert_eq!(
            tighter(Some(2_000), Some(4_000)),
            Some(2_000),
            "never above the connection's"
        );
        assert_eq!(tighter(None, Some(4_000)), Some(4_000));
        assert_eq!(tighter(Some(8_000), None), Some(8_000));
        assert_eq!(tighter(None, None), None);
    }
}
