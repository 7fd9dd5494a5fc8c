//! Client configuration and state under `$CAIRN_HOME` (default: `~/.config/cairn` for
//! configuration, `~/.local/share/cairn` for the index, logs and the agent's socket).
//!
//! `config.json` holds connections and tasks; `credentials.json` (0600) holds passwords, apart
//! so that the configuration can be shown or shared without them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_client::{ConnectOptions, Connection, Trust};
use cairn_engine::reconcile::{ConflictPolicy, Direction};
use cairn_model::{DeviceId, Filter, RelPath};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectionConfig {
    pub url: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Seconds the server may stay silent before a request fails (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Content upload and download limits in bytes per second, for all transfers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_upload: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_download: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskConfig {
    pub kind: String,
    pub locals: Vec<PathBuf>,
    pub connection: String,
    pub folder: String,
    pub computer: String,
    #[serde(default)]
    pub filter: Filter,
    #[serde(default)]
    pub keep_deleted: bool,
    pub transfers: usize,
    /// Set for drive and cloud tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive: Option<DriveConfig>,
    /// Set for cloud tasks (`connection` then names a cloud connection, `folder` the path in
    /// the cloud).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<crate::cloud_cmd::CloudTaskConfig>,
}

/// What a drive task adds to a task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DriveConfig {
    /// The sub-folder of the server folder that is synced ("" for all of it).
    #[serde(default)]
    pub sub: String,
    pub mode: Direction,
    pub conflict: ConflictPolicy,
    #[serde(default)]
    pub keep_conflict_copy: bool,
    #[serde(default)]
    pub consistency_check: bool,
    /// The server folder was read-only for the user when the task was added.
    #[serde(default)]
    pub read_only: bool,
    /// First pass over a folder that already holds files: "merge" or "server-wins".
    #[serde(default = "merge")]
    pub on_relink: String,
}

fn merge() -> String {
    "merge".into()
}

impl TaskConfig {
    /// The filter the task's passes run with: a cloud task adds the cloud default ignore list.
    pub fn pass_filter(&self) -> Filter {
        if self.kind == "cloud" {
            cairn_cloud::provider::filter::for_cloud(&self.filter)
        } else {
            self.filter.clone()
        }
    }

    /// Where local root `i` lands in the server folder: `<computer>/<folder name>` for a
    /// backup, the chosen sub-folder for a drive.
    pub fn remote_prefix(&self, i: usize) -> Result<RelPath> {
        if let Some(d) = &self.drive {
            return Ok(RelPath::parse(&d.sub)?);
        }
        let local = &self.locals[i];
        let name = local
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable folder name", local.display()))?;
        Ok(RelPath::parse(&self.computer)?.join(name)?)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Config {
    pub device_id: String,
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskConfig>,
    /// Connections to public clouds (secrets in the credentials file).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clouds: BTreeMap<String, cairn_cloud::CloudConnection>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub passwords: BTreeMap<String, String>,
    /// Proxy URLs that carry a user name and password, by connection (the configuration keeps
    /// them without).
    #[serde(default)]
    pub proxies: BTreeMap<String, String>,
    /// Cloud connections' secrets, by connection.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clouds: BTreeMap<String, cairn_cloud::Secrets>,
}

/// Task state shared by the CLI and the agent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub paused: Vec<String>,
    /// Tasks whose next pass may delete past the guard (`resume --confirm-deletes`).
    #[serde(default)]
    pub confirmed: Vec<String>,
    /// Two-way tasks whose last pass went on download-only because their server folder became
    /// read-only for the user: their local changes stay here, unsent (`status PATH` says so).
    #[serde(default)]
    pub read_only: Vec<String>,
}

pub struct Home {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Home {
    pub fn locate() -> Result<Home> {
        if let Some(h) = std::env::var_os("CAIRN_HOME").filter(|h| !h.is_empty()) {
            let h = PathBuf::from(h);
            return Ok(Home {
                config_dir: h.clone(),
                data_dir: h,
            });
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .context("neither CAIRN_HOME nor HOME is set")?;
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".local/share"));
        Ok(Home {
            config_dir: config.join("cairn"),
            data_dir: data.join("cairn"),
        })
    }

    fn ensure(&self) -> Result<()> {
        for d in [&self.config_dir, &self.data_dir] {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            let _ = fs::set_permissions(d, fs::Permissions::from_mode(0o700));
        }
        Ok(())
    }

    pub fn index_path(&self) -> PathBuf {
        self.data_dir.join("index.sqlite")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.data_dir.join("agent.sock")
    }

    /// The file a pass of `task` holds locked (`task_lock.rs`).
    pub fn lock_path(&self, task: &str) -> PathBuf {
        self.data_dir.join("locks").join(format!("{task}.lock"))
    }

    pub fn log_path(&self, task: &str) -> PathBuf {
        self.data_dir.join("logs").join(format!("{task}.log"))
    }

    pub fn load(&self) -> Result<Config> {
        let path = self.config_dir.join("config.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let device = cairn_server::auth::random_bytes(16)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Ok(Config {
                    device_id: device,
                    ..Config::default()
                })
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, config: &Config) -> Result<()> {
        self.ensure()?;
        write_atomic(
            &self.config_dir.join("config.json"),
            &serde_json::to_vec_pretty(config)?,
            0o600,
        )
    }

    pub fn credentials(&self) -> Result<Credentials> {
        let path = self.config_dir.join("credentials.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save_credentials(&self, c: &Credentials) -> Result<()> {
        self.ensure()?;
        write_atomic(
            &self.config_dir.join("credentials.json"),
            &serde_json::to_vec_pretty(c)?,
            0o600,
        )
    }

    pub fn state(&self) -> Result<State> {
        let path = self.data_dir.join("state.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display())),
            Err(_) => Ok(State::default()),
        }
    }

    pub fn save_state(&self, s: &State) -> Result<()> {
        self.ensure()?;
        write_atomic(
            &self.data_dir.join("state.json"),
            &serde_json::to_vec_pretty(s)?,
            0o600,
        )
    }

    /// An (unconnected) session for a saved connection.
    pub fn connection(&self, config: &Config, name: &str) -> Result<Arc<Connection>> {
        let c = config
            .connections
            .get(name)
            .with_context(|| format!("no connection named {name}; add it with `cairn connect URL --user NAME --name {name}`"))?;
        let creds = self.credentials()?;
        let password = creds.passwords.get(name).cloned().with_context(|| {
            format!("no password saved for connection {name}; run `cairn connect` again")
        })?;
        let mut c = c.clone();
        if let Some(p) = creds.proxies.get(name) {
            c.proxy = Some(p.clone());
        }
        Ok(Arc::new(
            Connection::new(connect_options(&c, password, &config.device_id))?
                .with_rate_limits(c.limit_upload, c.limit_download),
        ))
    }
}

pub fn connect_options(c: &ConnectionConfig, password: String, device: &str) -> ConnectOptions {
    let trust = match (&c.fingerprint, &c.ca) {
        (Some(f), _) => Trust::Fingerprint(f.clone()),
        (None, Some(ca)) => Trust::CaFile(ca.clone()),
        (None, None) => Trust::SystemRoots,
    };
    ConnectOptions {
        url: c.url.clone(),
        user: c.user.clone(),
        password,
        trust,
        proxy: c.proxy.clone(),
        device: DeviceId(device.to_string()),
        computer: host_name(),
        timeout: c.timeout_secs.map_or(
            cairn_client::DEFAULT_TIMEOUT,
            std::time::Duration::from_secs,
        ),
    }
}

/// Writes through a temporary file and a rename so a crash never leaves half a file.
/// Refuses a task or connection name the CLI does not take (`what`: "task", "connection").
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if !cairn_protocol::is_valid_name(name) {
        bail!("invalid {what} name {name:?}: use 1-64 letters, digits, '.', '_' or '-'");
    }
    Ok(())
}

/// A new task's filter from its `--max-size` (MB, checked), name and extension rules.
pub fn new_filter(max_size_mb: u64, names: &[String], exts: &[String]) -> Result<Filter> {
    if max_size_mb > cairn_model::filter::MAX_SIZE_LIMIT_MB {
        bail!(
            "--max-size {max_size_mb} is over the limit of {} MB (0 means unlimited)",
            cairn_model::filter::MAX_SIZE_LIMIT_MB
        );
    }
    Ok(Filter {
        max_size: max_size_mb * 1024 * 1024,
        names: names.to_vec(),
        exts: exts
            .iter()
            .map(|e| cairn_model::filter::normalize_ext(e))
            .collect(),
        excluded_dirs: Vec::new(),
        ..Filter::default()
    })
}

pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(data)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "computer".into())
}

/// Reads one line (a password) from standard input.
pub fn read_stdin_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        bail!("the password read from standard input is empty");
    }
    Ok(pw)
}

/// Parses `none`, a byte count, or a count with a K, M, G or T suffix (powers of 1024):
/// quotas, rate limits. `None` for `none`.
pub fn parse_size(text: &str) -> std::result::Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let unit = unit.trim().to_ascii_uppercase();
    let shift = match unit
        .trim_end_matches("/S")
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "{text:?}: use a number of bytes with K, M, G or T, or none"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: use a number of bytes with K, M, G or T, or none"))?;
    n.checked_mul(1u64 << shift)
        .map(Some)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A rate limit as given on the command line: bytes per second, `None` for no limit.
#[derive(Clone, Copy, Debug)]
pub struct Rate(pub Option<u64>);

/// Parses a rate (`500K`, `2M`, `none`; an optional `/s`).
pub fn parse_rate(text: &str) -> std::result::Result<Rate, String> {
    parse_size(text).map(|r| Rate(r.filter(|r| *r > 0)))
}
