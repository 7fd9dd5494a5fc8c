//! `cairn server cloud ...`: cloud connections and tasks the server keeps and runs for its own
//! folders (seed 002). On the server itself with `--data DIR` (as an administrator), or from
//! anywhere with `--connection NAME`, a saved connection to the server (as its user; an
//! administrator may name any `--owner`). The server's runner does the passes
//! ([`runner`]); these commands only change what it is told. An encrypted task's password is
//! read here from stdin and goes to the server once, over its API or straight into its
//! data folder; the key it makes is kept there and comes back only through `export-key`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_client::Connection;
use cairn_cloud::crypt;
use cairn_server::cloud::{
    self, ConnectionInfo, ConnectionRequest, Password, TaskInfo, TaskRequest, TaskSettings,
    DEFAULT_POLL_SECS, MIN_PASSWORD_CHARS,
};
use cairn_server::meta::{Actor, EventKind, User};
use cairn_server::DataDir;
use clap::{Args, Subcommand};

use crate::cloud_cmd::{connection_from_args, ConnectArgs, DirectionArg};
use crate::output::escape;

pub mod runner;

#[derive(Subcommand)]
pub enum ServerCloudCmd {
    /// Save a cloud connection on the server; secrets are read from stdin as for `cairn cloud
    /// connect` (a server task runs unattended, so none may be `prompt`).
    Connect {
        #[command(flatten)]
        args: ConnectArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Change a connection kept on the server (re-authorise it); secrets not given stay.
    Edit {
        #[command(flatten)]
        args: ConnectArgs,
        #[command(flatten)]
        target: Target,
    },
    /// List the cloud connections kept on the server (never their secrets).
    Connections {
        #[command(flatten)]
        target: Target,
        /// Every user's (administrators).
        #[arg(long)]
        all: bool,
    },
    /// Remove a connection no task uses.
    Disconnect {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Add a task: the server keeps one of its folders in sync with a path in a cloud.
    Add {
        #[command(flatten)]
        args: AddArgs,
        #[command(flatten)]
        target: Target,
    },
    /// List the server's cloud tasks and how their last pass went.
    List {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        all: bool,
        /// As JSON (fields in docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Remove a task (the folder and the cloud keep what they hold).
    Remove {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Ask the running server for a pass of the task now.
    Run {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Write an encrypted task's key to a new file, for `cairn cloud decrypt --key` (the
    /// task's owner or an administrator; keep the file safe: it opens the data).
    ExportKey {
        name: String,
        #[command(flatten)]
        target: Target,
        /// The key file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Which server, and whose tasks.
#[derive(Args)]
pub struct Target {
    /// The server's data folder, on the server itself (acts as an administrator).
    #[arg(long, env = "CAIRN_DATA", conflicts_with = "connection")]
    data: Option<PathBuf>,
    /// The server's PostgreSQL metadata, when it has it there (as `server run --metadata`).
    #[arg(long, env = "CAIRN_METADATA", value_name = "URL")]
    metadata: Option<String>,
    /// A saved connection to the server (`cairn connect`); acts as its user.
    #[arg(long)]
    connection: Option<String>,
    /// The user whose connections or tasks these are (administrators only; default: the
    /// connection's user, or `admin` with --data).
    #[arg(long)]
    owner: Option<String>,
}

#[derive(Args)]
pub struct AddArgs {
    name: String,
    /// The server folder to sync.
    #[arg(long)]
    folder: String,
    /// The cloud connection (kept on the server) to sync it with.
    #[arg(long)]
    cloud: String,
    /// The path in the bucket or container.
    #[arg(long, default_value = "")]
    remote: String,
    /// upload-only: folder to cloud; download-only: cloud to folder.
    #[arg(long, value_enum, default_value = "bidirectional")]
    direction: DirectionArg,
    /// Don't remove files: a deletion on one side is not carried to the other.
    #[arg(long)]
    keep_deleted: bool,
    /// Seconds between looks for changes made in the cloud (1 to 86400).
    #[arg(long, default_value_t = DEFAULT_POLL_SECS)]
    poll: u64,
    #[arg(long, default_value_t = 3)]
    transfers: usize,
    /// Multipart part size in MB.
    #[arg(long, default_value_t = 8)]
    part_size: u64,
    /// Replaced or deleted versions kept on the remote per file (0 = none).
    #[arg(long, default_value_t = 0)]
    keep_versions: usize,
    /// Largest file synced, in MB (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    max_size: u64,
    #[arg(long)]
    exclude_name: Vec<String>,
    #[arg(long)]
    exclude_ext: Vec<String>,
    /// Storage class of new objects (S3: standard, ia, one-zone-ia, rrs, glacier).
    #[arg(long)]
    storage_class: Option<String>,
    /// Server-side encryption (AES-256) where the provider offers it.
    #[arg(long)]
    sse: bool,
    /// Encrypt names and contents before they leave the server (docs/encryption.md); the
    /// password is read from stdin (one line, at least 8 characters). Cannot be turned off.
    #[arg(long)]
    encrypt: bool,
}

/// Where the commands go: the data folder itself, or the server's API.
enum Server {
    Local {
        dir: DataDir,
        owner: User,
    },
    Remote {
        conn: Arc<Connection>,
        owner: Option<String>,
    },
}

impl Server {
    fn open(t: &Target) -> Result<Server> {
        if let Some(o) = t
            .owner
            .as_deref()
            .filter(|o| !cairn_protocol::is_valid_name(o))
        {
            bail!("invalid user name {o:?}");
        }
        match (&t.data, &t.connection) {
            (_, Some(name)) => {
                let home = crate::config::Home::locate()?;
                let config = home.load()?;
                Ok(Server::Remote {
                    conn: home.connection(&config, name)?,
                    owner: t.owner.clone(),
                })
            }
            (Some(data), None) => {
                let choice = crate::server_admin::metadata_choice(t.metadata.as_deref())?;
                let dir = DataDir::open_with(data, &choice)?;
                let name = t.owner.clone().unwrap_or_else(|| "admin".into());
                let (owner, _) = dir
                    .meta
                    .user_by_name(&name)?
                    .with_context(|| format!("no user {name} on this server"))?;
                Ok(Server::Local { dir, owner })
            }
            (None, None) => bail!(
                "say which server: --data DIR on the server itself, or --connection NAME (a saved connection)"
            ),
        }
    }

    /// `?owner=` for a request about another user's rows.
    fn whose(owner: &Option<String>, all: bool) -> Vec<(&'static str, String)> {
        let mut q: Vec<(&str, String)> = owner.iter().map(|o| ("owner", o.clone())).collect();
        if all {
            q.push(("all", "true".into()));
        }
        q
    }

    async fn save_connection(&self, mut req: ConnectionRequest) -> Result<()> {
        match self {
            Server::Local { dir, owner } => {
                Ok(cloud::save_connection(&dir.meta, owner, req, true)?)
            }
            Server::Remote { conn, owner } => {
                req.owner = owner.clone();
                let _: serde_json::Value =
                    conn.admin_post("/api/v1/cloud/connections", &req).await?;
                Ok(())
            }
        }
    }

    async fn add_task(&self, mut req: TaskRequest) -> Result<()> {
        match self {
            Server::Local { dir, owner } => {
                let task = cloud::check_task(&dir.meta, owner, req)?;
                let key = runner::attach(&task).await?;
                let r = &task.request;
                dir.meta.add_cloud_task(owner, r, key.as_ref())?;
                let (kind, by) = (EventKind::CloudTaskAdded, Actor::console());
                let detail = format!(
                    "{} {} {}:{}",
                    r.folder, r.settings.direction, r.connection, r.settings.remote
                );
                cloud::record_task(&dir.meta, kind, &by, owner, &r.name, &detail);
                Ok(())
            }
            Server::Remote { conn, owner } => {
                req.owner = owner.clone();
                let _: serde_json::Value = conn.admin_post("/api/v1/cloud/tasks", &req).await?;
                Ok(())
            }
        }
    }

    async fn connections(&self, all: bool) -> Result<Vec<ConnectionInfo>> {
        match self {
            Server::Local { dir, owner } => Ok(cloud::connection_infos(
                &dir.meta,
                (!all).then_some(owner.id),
            )?),
            Server::Remote { conn, owner } => Ok(conn
                .admin_get("/api/v1/cloud/connections", &Self::whose(owner, all))
                .await?),
        }
    }

    async fn tasks(&self, all: bool) -> Result<Vec<TaskInfo>> {
        match self {
            Server::Local { dir, owner } => {
                Ok(cloud::task_infos(&dir.meta, (!all).then_some(owner.id))?)
            }
            Server::Remote { conn, owner } => Ok(conn
                .admin_get("/api/v1/cloud/tasks", &Self::whose(owner, all))
                .await?),
        }
    }

    /// The key of encrypted task `name`.
    async fn task_key(&self, name: &str) -> Result<crypt::MasterKey> {
        match self {
            Server::Local { dir, owner } => Ok(dir.meta.cloud_task_key_named(owner, name)?),
            Server::Remote { conn, owner } => {
                let query: String = Self::whose(owner, false)
                    .iter()
                    .map(|(k, v)| format!("?{k}={v}"))
                    .collect();
                let answer: KeyAnswer = conn
                    .admin_post(
                        &format!("/api/v1/cloud/tasks/{name}/key{query}"),
                        &serde_json::json!({}),
                    )
                    .await?;
                Ok(crypt::parse_key_text(
                    answer.key.as_bytes(),
                    &format!("the key of cloud task {name} sent by the server"),
                )?)
            }
        }
    }

    /// Removes a connection (`what` = "connections") or a task ("tasks"), or asks for a pass.
    async fn act(&self, what: &str, name: &str) -> Result<()> {
        match self {
            Server::Local { dir, owner } => {
                match what {
                    "connections" => dir.meta.remove_cloud_connection(owner, name)?,
                    "tasks" => {
                        dir.meta.remove_cloud_task(owner, name)?;
                        let (kind, by) = (EventKind::CloudTaskRemoved, Actor::console());
                        cloud::record_task(&dir.meta, kind, &by, owner, name, "");
                    }
                    _ => dir.meta.request_cloud_run(owner, name)?,
                }
                Ok(())
            }
            Server::Remote { conn, owner } => {
                let q = Self::whose(owner, false);
                if what == "run" {
                    let path = format!("/api/v1/cloud/tasks/{name}/run");
                    let query: String = q.iter().map(|(k, v)| format!("?{k}={v}")).collect();
                    let _: serde_json::Value = conn
                        .admin_post(&format!("{path}{query}"), &serde_json::json!({}))
                        .await?;
                    return Ok(());
                }
                Ok(conn
                    .admin_delete(&format!("/api/v1/cloud/{what}/{name}"), &q)
                    .await?)
            }
        }
    }
}

pub async fn run(cmd: ServerCloudCmd) -> Result<()> {
    match cmd {
        ServerCloudCmd::Connect { args, target } => connect(args, &target, false).await,
        ServerCloudCmd::Edit { args, target } => connect(args, &target, true).await,
        ServerCloudCmd::Connections { target, all } => {
            let server = Server::open(&target)?;
            let list = server.connections(all).await?;
            if list.is_empty() {
                println!(
                    "no cloud connections on the server; add one with `cairn server cloud connect`"
                );
            }
            for c in list {
                let tasks = if c.tasks.is_empty() {
                    "-".into()
                } else {
                    c.tasks.join(", ")
                };
                println!("{}\t{}\t{}\ttasks: {}", c.owner, c.name, c.place, tasks);
            }
            Ok(())
        }
        ServerCloudCmd::Disconnect { name, target } => {
            Server::open(&target)?.act("connections", &name).await?;
            println!("removed cloud connection {name} from the server");
            Ok(())
        }
        ServerCloudCmd::Add { args, target } => add(args, &target).await,
        ServerCloudCmd::List { target, all, json } => list(&target, all, json).await,
        ServerCloudCmd::Remove { name, target } => {
            Server::open(&target)?.act("tasks", &name).await?;
            println!("removed cloud task {name} (the folder and the cloud keep their files)");
            Ok(())
        }
        ServerCloudCmd::Run { name, target } => {
            Server::open(&target)?.act("run", &name).await?;
            println!("asked the server for a pass of cloud task {name}");
            Ok(())
        }
        ServerCloudCmd::ExportKey { name, target, out } => export_key(&name, &target, &out).await,
    }
}

/// What the server answers to a key export.
#[derive(serde::Deserialize)]
struct KeyAnswer {
    key: String,
}

async fn export_key(name: &str, target: &Target, out: &std::path::Path) -> Result<()> {
    if !cairn_protocol::is_valid_name(name) {
        bail!("invalid task name {name:?}");
    }
    let key = Server::open(target)?.task_key(name).await?;
    crypt::export_key(&key, out)?;
    println!(
        "wrote the key of server cloud task {name} to {} (anyone with it can read the task's data; `cairn cloud decrypt --key` opens a copy of it)",
        out.display()
    );
    Ok(())
}

async fn connect(args: ConnectArgs, target: &Target, edit: bool) -> Result<()> {
    let server = Server::open(target)?;
    let (connection, secrets) = connection_from_args(&args)?;
    let described = connection.describe("");
    server
        .save_connection(ConnectionRequest {
            name: args.name.clone(),
            owner: None,
            connection,
            secrets,
            edit,
        })
        .await?;
    println!(
        "{} cloud connection {} on the server: {described}",
        if edit { "changed" } else { "saved" },
        args.name
    );
    Ok(())
}

async fn add(a: AddArgs, target: &Target) -> Result<()> {
    let server = Server::open(target)?;
    let settings = TaskSettings {
        remote: a.remote.trim_matches('/').to_string(),
        direction: match a.direction {
            DirectionArg::Bidirectional => "bidirectional",
            DirectionArg::UploadOnly => "upload-only",
            DirectionArg::DownloadOnly => "download-only",
        }
        .into(),
        keep_deleted: a.keep_deleted,
        poll_secs: a.poll,
        keep_versions: a.keep_versions,
        transfers: a.transfers,
        part_size_mb: a.part_size,
        max_size_mb: a.max_size,
        exclude_names: a.exclude_name,
        exclude_exts: a.exclude_ext,
        storage_class: a.storage_class,
        sse: a.sse.then(|| "AES256".to_string()),
        encrypt: a.encrypt,
    };
    settings.check().map_err(anyhow::Error::msg)?;
    let password = if a.encrypt {
        let pw = crate::config::read_stdin_line()
            .context("reading the encryption password from stdin")?;
        if pw.chars().count() < MIN_PASSWORD_CHARS {
            bail!("the encryption password must have at least {MIN_PASSWORD_CHARS} characters");
        }
        Some(Password(pw))
    } else {
        None
    };
    server
        .add_task(TaskRequest {
            name: a.name.clone(),
            owner: None,
            folder: a.folder.clone(),
            connection: a.cloud.clone(),
            settings,
            password,
        })
        .await?;
    println!(
        "added server cloud task {}{}: folder {} <-> {}:{} (the running server starts it now)",
        a.name,
        if a.encrypt { " (encrypted)" } else { "" },
        a.folder,
        a.cloud,
        a.remote
    );
    Ok(())
}

async fn list(target: &Target, all: bool, json: bool) -> Result<()> {
    let tasks = Server::open(target)?.tasks(all).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tasks)?);
        return Ok(());
    }
    if tasks.is_empty() {
        println!("no cloud tasks on the server; add one with `cairn server cloud add`");
    }
    for t in tasks {
        let state = match (&t.status.error, t.status.outcome.as_str()) {
            (Some(e), _) => format!("error: {}", escape(e)),
            (None, "") => "not run yet".into(),
            (None, outcome) => format!("{outcome}: {}", t.status.summary),
        };
        println!(
            "{}\t{}\tfolder {} <-> {}:{} ({})\t{state}",
            t.owner, t.name, t.folder, t.connection, t.settings.remote, t.settings.direction
        );
    }
    Ok(())
}
