//! `cairn server ...`: run the server and administer its data folder (also while it runs:
//! the metadata store allows a second writer).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_server::{maintenance, DataDir, Limits, ServerOptions, StoreChoice};
use cairn_store::StoreLocation;
use clap::{Args, Subcommand};

use crate::server_config::ServerConfig;

#[derive(Args)]
pub struct DataArg {
    /// The server's data folder.
    #[arg(long, env = "CAIRN_DATA", default_value = "cairn-data")]
    data: PathBuf,
}

/// Where a server's data is: its folder, its chunk store, and a config file that may say both.
#[derive(Args)]
pub struct ServerPlace {
    /// The server's data folder [default: `data` of --config, else cairn-data].
    #[arg(long, env = "CAIRN_DATA")]
    data: Option<PathBuf>,
    /// A server config file (TOML; docs/deployment.md lists its keys). Options given here win.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the chunks are: s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION, file:///PATH or
    /// a path [default: the store the data folder was created with; on first run, chunks/ in
    /// it]. S3 keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the s3 table of --config.
    #[arg(long, env = "CAIRN_STORE", value_name = "URL")]
    store: Option<String>,
    /// The metadata in PostgreSQL: postgres://USER:PASSWORD@HOST:PORT/DATABASE (or libpq's
    /// key=value form) [default: meta.sqlite in the data folder]. Several servers on one
    /// database and one chunk store serve the same users and folders (docs/deployment.md).
    #[arg(long, env = "CAIRN_METADATA", value_name = "URL")]
    metadata: Option<String>,
}

impl ServerPlace {
    /// The config file given, if any.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config.as_deref()
    }

    /// The data folder, the chunk store and the rest of the config file.
    pub fn resolve(&self) -> Result<(PathBuf, ServerConfig)> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::load(path)?,
            None => ServerConfig::default(),
        };
        if let Some(url) = &self.store {
            config.store.location = Some(StoreLocation::parse(url)?);
        }
        if let Some(url) = &self.metadata {
            config.store.metadata = Some(cairn_server::meta::PgAddress::parse(url)?);
        }
        let data = self
            .data
            .clone()
            .or_else(|| config.data.clone())
            .unwrap_or_else(|| PathBuf::from("cairn-data"));
        Ok((data, config))
    }

    /// Opens the existing data folder and its chunk store (admin commands, gc, check).
    pub fn open(&self) -> Result<DataDir> {
        let (data, config) = self.resolve()?;
        Ok(DataDir::open_with(&data, &config.store)?)
    }
}

#[derive(Subcommand)]
pub enum ServerCmd {
    /// Start the server (creates the data folder on first run).
    Run {
        #[command(flatten)]
        place: ServerPlace,
        /// Address to listen on; repeat for several. Default: port 8443 on every IPv6 and IPv4 address.
        #[arg(long)]
        listen: Vec<SocketAddr>,
        /// A real certificate (PEM) instead of the self-signed one.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Serve Prometheus `/metrics` over plain HTTP on this address, to anyone who can reach
        /// it (bind it to a private network). Without it, `/metrics` on the API's address
        /// answers administrators' tokens only.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
        /// Lifetime of login tokens, in seconds (1 second to 90 days).
        #[arg(long, default_value_t = 30 * 24 * 3600,
              value_parser = clap::value_parser!(u64).range(1..=90 * 24 * 3600))]
        token_ttl: u64,
        #[command(flatten)]
        announce: AnnounceArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        log: crate::log_output::LogArgs,
    },
    /// Print the SHA-256 fingerprint of the server's certificate.
    Fingerprint {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        cmd: crate::server_admin::UserCmd,
    },
    /// Manage shared folders.
    Folder {
        #[command(subcommand)]
        cmd: crate::server_admin::FolderCmd,
    },
    /// The server's activity log (logins, administration, links), newest first.
    Log(crate::server_log::LogArgs),
    /// Cloud connections and tasks the server runs for its own folders.
    Cloud {
        #[command(subcommand)]
        cmd: crate::server_cloud::ServerCloudCmd,
    },
    /// Delete chunks no retained version references (safe while clients upload).
    Gc {
        #[command(flatten)]
        place: ServerPlace,
    },
    /// Move a stopped embedded server (SQLite metadata) to PostgreSQL, and its chunks to
    /// another store if asked, with every version intact (docs/deployment.md).
    Migrate(crate::server_migrate::MigrateCmd),
    /// Print (or write with --out) the server's users, folders, grants, quotas and cloud
    /// connections and tasks as JSON: not the content. Holds password hashes and secrets.
    BackupConfig(crate::server_config_backup::BackupConfigCmd),
    /// Make a new server from a backup-config file: into a new data folder (or an empty
    /// database), never merged into a server in use.
    RestoreConfig(crate::server_config_backup::RestoreConfigCmd),
    /// Verify metadata against chunks; exits non-zero and names what is wrong.
    Check {
        #[command(flatten)]
        place: ServerPlace,
        /// Also re-hash every chunk.
        #[arg(long)]
        read_data: bool,
    },
}

/// How `server run` announces itself on the local network (docs/deployment.md, "Discovery").
#[derive(Args)]
pub struct AnnounceArgs {
    /// Do not announce this server on the local network (mDNS/DNS-SD `_cairn._tcp`).
    #[arg(long)]
    no_announce: bool,
    /// The name the server is announced as [default: the host name].
    #[arg(long, value_name = "NAME")]
    announce_name: Option<String>,
    /// Announce on loopback too, for tests on one machine (a server listening only on
    /// loopback announces nothing otherwise: nobody else could reach it).
    #[arg(long, hide = true)]
    announce_loopback: bool,
}

/// What a client may cost before it has proved who it is (docs/limits.md explains each).
#[derive(Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Seconds a TLS handshake may take.
    #[arg(long, default_value_t = Limits::default().handshake_timeout.as_secs(), value_name = "SECS")]
    handshake_timeout: u64,
    /// Seconds to send a complete HTTP/1 request header, counted from the end of the previous
    /// request (so it also closes idle HTTP/1 keep-alive connections).
    #[arg(long, default_value_t = Limits::default().header_timeout.as_secs(), value_name = "SECS")]
    header_timeout: u64,
    /// Seconds a connection may have no request in flight, and a response may wait for the
    /// client to read it, before the connection is closed.
    #[arg(long, default_value_t = Limits::default().idle_timeout.as_secs(), value_name = "SECS")]
    idle_timeout: u64,
    /// Seconds a request body may send nothing before it is cut off.
    #[arg(long, default_value_t = Limits::default().body_timeout.as_secs(), value_name = "SECS")]
    body_timeout: u64,
    /// Slowest average request body, in bytes per second, after its first --body-timeout.
    #[arg(long, default_value_t = Limits::default().min_body_rate, value_name = "BYTES")]
    min_body_rate: u64,
    /// Open connections per source address (an IPv4 address or an IPv6 /64); more are closed
    /// at once.
    #[arg(long, default_value_t = Limits::default().max_connections_per_address, value_name = "N")]
    max_connections_per_address: usize,
    /// HTTP/2 streams open at once on one connection.
    #[arg(long, default_value_t = Limits::default().max_streams, value_name = "N")]
    max_streams: u32,
    /// Password verifications running at once, ~19 MiB each (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    login_concurrency: Option<usize>,
    /// Login attempts that may wait for a verification, in each of three queues (addresses that
    /// logged in recently go first, then those without a recent failure); more are answered 429 at once.
    #[arg(long, default_value_t = Limits::default().login_queue, value_name = "N")]
    login_queue: usize,
    /// Login attempts one source address may have running or waiting at once.
    #[arg(long, default_value_t = Limits::default().login_per_address, value_name = "N")]
    login_per_address: usize,
    /// Seconds a login attempt may wait for a verification before it is answered 429.
    #[arg(long, default_value_t = Limits::default().login_wait.as_secs(), value_name = "SECS")]
    login_wait: u64,
    /// Entries in each login table (failed user names, failed and known source addresses).
    #[arg(long, default_value_t = Limits::default().login_throttle_entries, value_name = "N")]
    login_throttle_entries: usize,
    /// A load balancer or reverse proxy in front of the server (an address or a range such as
    /// 10.0.0.0/8); repeat for several. Its X-Forwarded-For header is believed, so logins are
    /// throttled and logged by the address of the client behind it, and it is not held to
    /// the per-address connection cap.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<cairn_server::proxy::Cidr>,
}

impl LimitArgs {
    /// The limits, with the config file's trusted proxies when none are given here.
    fn to_limits(&self, config_proxies: &[cairn_server::proxy::Cidr]) -> Result<Limits> {
        let secs = |name: &str, v: u64| {
            if v == 0 || v > 24 * 3600 {
                bail!("--{name} must be between 1 and 86400 seconds");
            }
            Ok(Duration::from_secs(v))
        };
        for (name, v) in [
            (
                "max-connections-per-address",
                self.max_connections_per_address,
            ),
            ("login-per-address", self.login_per_address),
            ("login-throttle-entries", self.login_throttle_entries),
            ("max-streams", self.max_streams as usize),
        ] {
            if v == 0 {
                bail!("--{name} must be at least 1");
            }
        }
        let defaults = Limits::default();
        Ok(Limits {
            handshake_timeout: secs("handshake-timeout", self.handshake_timeout)?,
            header_timeout: secs("header-timeout", self.header_timeout)?,
            idle_timeout: secs("idle-timeout", self.idle_timeout)?,
            body_timeout: secs("body-timeout", self.body_timeout)?,
            min_body_rate: self.min_body_rate,
            max_connections_per_address: self.max_connections_per_address,
            max_streams: self.max_streams,
            login_concurrency: match self.login_concurrency {
                Some(0) => bail!("--login-concurrency must be at least 1"),
                Some(n) => n,
                None => defaults.login_concurrency,
            },
            login_queue: self.login_queue,
            login_per_address: self.login_per_address,
            login_wait: secs("login-wait", self.login_wait)?,
            login_throttle_entries: self.login_throttle_entries,
            trusted_proxies: cairn_server::proxy::TrustedProxies(
                if self.trusted_proxies.is_empty() {
                    config_proxies.to_vec()
                } else {
                    self.trusted_proxies.clone()
                },
            ),
        })
    }
}

pub async fn run(cmd: ServerCmd) -> Result<()> {
    match cmd {
        ServerCmd::Run {
            place,
            listen,
            cert,
            key,
            metrics_listen,
            token_ttl,
            announce,
            limits,
            log,
        } => {
            crate::log_output::init(log.log_format);
            let (data, config) = place.resolve()?;
            let run = Run {
                listen: if listen.is_empty() {
                    config.listen
                } else {
                    listen
                },
                cert: cert.or(config.cert),
                key: key.or(config.key),
                metrics_listen: metrics_listen.or(config.metrics_listen),
                store: config.store,
                directory: config.directory,
                announce: (config.announce != Some(false) && !announce.no_announce).then(|| {
                    AnnounceChoice {
                        name: announce
                            .announce_name
                            .or(config.announce_name)
                            .unwrap_or_else(default_announce_name),
                        loopback: announce.announce_loopback,
                    }
                }),
            };
            if run.cert.is_some() != run.key.is_some() {
                bail!("a certificate needs its key and a key its certificate (cert and key)");
            }
            if let Some(a) = &run.announce {
                crate::discovery::check_name(&a.name).context("--announce-name")?;
            }
            let limits = limits.to_limits(&config.trusted_proxies)?;
            serve(data, run, token_ttl, limits).await
        }
        ServerCmd::Fingerprint { data, cert } => {
            let fingerprint =
                cairn_server::datadir::certificate_fingerprint(&data.data, cert.as_deref())?;
            println!("{fingerprint}");
            Ok(())
        }
        ServerCmd::User { cmd } => crate::server_admin::user(cmd).await,
        ServerCmd::Cloud { cmd } => crate::server_cloud::run(cmd).await,
        ServerCmd::Folder { cmd } => crate::server_admin::folder(cmd).await,
        ServerCmd::Log(args) => crate::server_log::run(args).await,
        ServerCmd::Migrate(cmd) => crate::server_migrate::run(cmd).await,
        ServerCmd::BackupConfig(cmd) => crate::server_config_backup::backup(cmd),
        ServerCmd::RestoreConfig(cmd) => crate::server_config_backup::restore(cmd),
        ServerCmd::Gc { place } => {
            let dir = place.open()?;
            let rt = tokio::runtime::Handle::current();
            let report = tokio::task::spawn_blocking(move || maintenance::gc(&dir, &rt)).await??;
            println!(
                "gc: removed {} chunks ({} bytes), {} objects and {} orphan objects",
                report.chunks, report.bytes, report.objects_deleted, report.orphan_objects
            );
            let r = &report.repack;
            if r.bytes_moved > 0 {
                println!(
                    "gc: repacked packs with dead space: {} bytes of live chunks moved, {} packs \
                     deleted, {} bytes freed",
                    r.bytes_moved, r.packs_deleted, r.bytes_freed
                );
            }
            for f in &r.failed {
                eprintln!("gc: a pack was left as it is: {f}");
            }
            if report.events > 0 {
                println!(
                    "gc: dropped {} activity log entries past its bounds",
                    report.events
                );
            }
            for f in &report.failed {
                eprintln!("could not delete (left for the next gc): {f}");
            }
            Ok(())
        }
        ServerCmd::Check { place, read_data } => {
            let dir = place.open()?;
            let rt = tokio::runtime::Handle::current();
            let problems =
                tokio::task::spawn_blocking(move || maintenance::check(&dir, &rt, read_data))
                    .await??;
            if problems.is_empty() {
                println!(
                    "check: no problems found{}",
                    if read_data {
                        " (all chunks re-hashed)"
                    } else {
                        ""
                    }
                );
                return Ok(());
            }
            for p in &problems {
                println!("{p}");
            }
            bail!("check found {} problems", problems.len())
        }
    }
}

/// What `server run` serves, from its options and its config file.
struct Run {
    listen: Vec<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    store: StoreChoice,
    /// `[ldap]` of the config file.
    directory: Option<cairn_server::directory::DirectoryConfig>,
    /// `None` with `--no-announce` or `announce = false`.
    announce: Option<AnnounceChoice>,
}

struct AnnounceChoice {
    name: String,
    loopback: bool,
}

async fn serve(data: PathBuf, run: Run, token_ttl: u64, limits: Limits) -> Result<()> {
    let Run {
        listen,
        cert,
        key,
        metrics_listen,
        store,
        directory,
        announce,
    } = run;
    // Checked before anything starts: a server that would refuse its directory users (or
    // send their passwords in clear text) must not look as if it were running fine.
    let directory = directory
        .map(cairn_server::directory::Directory::new)
        .transpose()
        .context("[ldap] of the server config")?;
    std::fs::create_dir_all(&data)
        .with_context(|| format!("creating data folder {}", data.display()))?;
    // Held while the server runs: `server migrate` must not move the folder under it.
    let _running = cairn_server::datadir::RunLock::take(&data)?;
    let (dir, created) = cairn_server::DataDir::open_or_init_with(&data, &store)?;
    dir.store.probe().await?;
    println!("cairn server {}", env!("CARGO_PKG_VERSION"));
    println!("data folder: {}", data.display());
    println!("chunk store: {}", dir.store.describe());
    if let Some(c) = created {
        println!(
            "created user admin; its password is in {} (readable only by you)",
            c.admin_password_file.display()
        );
    }
    println!(
        "certificate fingerprint (SHA-256): {}",
        dir.fingerprint(cert.as_deref())?
    );
    let explicit = !listen.is_empty();
    let mut opts = ServerOptions {
        data: data.clone(),
        listen: if explicit {
            listen
        } else {
            vec!["[::]:8443".parse()?]
        },
        cert,
        key,
        token_ttl: Duration::from_secs(token_ttl),
        limits,
        metrics_listen,
    };
    let bound = match cairn_server::bind(&opts, &dir).await {
        Ok(b) => b,
        // Without IPv6 on the machine, fall back to every IPv4 address.
        Err(_) if !explicit => {
            opts.listen = vec!["0.0.0.0:8443".parse()?];
            cairn_server::bind(&opts, &dir).await?
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(d) = directory {
        println!(
            "directory logins: {} (base {})",
            d.config().url,
            d.config().base_dn
        );
        bound.state().set_directory(std::sync::Arc::new(d));
    }
    if let Some(a) = bound.metrics_addr {
        println!("metrics on http://{a}/metrics");
    }
    let fingerprint = dir.fingerprint(opts.cert.as_deref())?;
    // Held while the server runs; dropping it says goodbye. Before the listening lines: those
    // end the banner, and whoever reads it (a test, a supervisor) may close stdout after them.
    let _announcer = announce.and_then(|a| start_announcing(a, &bound.addrs, &fingerprint));
    for a in &bound.addrs {
        println!("listening on https://{a}");
        // Stdout is the banner for a person; the log says it for a collector too.
        tracing::info!(address = %a, data = %data.display(), "listening");
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    let runner = crate::server_cloud::runner::Runner::new(
        bound.state(),
        &data,
        loopback_url(&bound.addrs),
        fingerprint,
    );
    tokio::spawn(runner.run());
    bound.serve().await.context("serving")?;
    Ok(())
}

/// The host name, cut to one DNS label (a Linux host name may be a byte longer).
fn default_announce_name() -> String {
    let mut name = String::new();
    for c in crate::config::host_name().chars() {
        if name.len() + c.len_utf8() > 63 {
            break;
        }
        name.push(c);
    }
    name
}

/// Announces the server on the local network. A network without multicast must not stop
/// the server: the failure is printed and the server runs on unannounced.
fn start_announcing(
    choice: AnnounceChoice,
    addrs: &[SocketAddr],
    fingerprint: &str,
) -> Option<crate::discovery::Announcer> {
    let opts = crate::discovery::AnnounceOptions {
        name: choice.name,
        listen: addrs.to_vec(),
        fingerprint: fingerprint.to_string(),
        loopback: choice.loopback,
    };
    match crate::discovery::announce(&opts) {
        Ok(Some(a)) => {
            tracing::info!(name = %opts.name, "announced on the local network");
            println!(
                "announced on the local network as {} ({})",
                opts.name,
                crate::discovery::SERVICE_TYPE
            );
            Some(a)
        }
        Ok(None) => {
            println!("not announced on the local network: listening on loopback only");
            None
        }
        Err(e) => {
            eprintln!("not announced on the local network: {e:#}");
            tracing::warn!(error = %format!("{e:#}"), "not announced on the local network");
            None
        }
    }
}

/// The URL this server's own cloud task runner reaches it at: the first address, with an
/// unspecified one (listening everywhere) replaced by loopback.
fn loopback_url(addrs: &[SocketAddr]) -> String {
    let Some(mut a) = addrs.first().copied() else {
        return "https://127.0.0.1:8443".into();
    };
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("https://{a}")
}
