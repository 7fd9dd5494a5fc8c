//! `cairn server ...`: run the server and administer its data folder (also while it runs:
//! the metadata store allows a second writer).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_protocol::{is_valid_name, Access};
use cairn_server::{auth, maintenance, DataDir, Limits, ServerOptions};
use clap::{Args, Subcommand};

use crate::config::read_stdin_line;

#[derive(Args)]
pub struct DataArg {
    /// The server's data folder.
    #[arg(long, env = "CAIRN_DATA", default_value = "cairn-data")]
    data: PathBuf,
}

#[derive(Subcommand)]
pub enum ServerCmd {
    /// Start the server (creates the data folder on first run).
    Run {
        #[command(flatten)]
        data: DataArg,
        /// Address to listen on; repeat for several. Default: port 8443 on every IPv6 and IPv4 address.
        #[arg(long)]
        listen: Vec<SocketAddr>,
        /// A real certificate (PEM) instead of the self-signed one.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Lifetime of login tokens, in seconds (1 second to 90 days).
        #[arg(long, default_value_t = 30 * 24 * 3600,
              value_parser = clap::value_parser!(u64).range(1..=90 * 24 * 3600))]
        token_ttl: u64,
        #[command(flatten)]
        limits: LimitArgs,
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
        cmd: UserCmd,
    },
    /// Manage shared folders.
    Folder {
        #[command(subcommand)]
        cmd: FolderCmd,
    },
    /// Cloud connections and tasks the server runs for its own folders.
    Cloud {
        #[command(subcommand)]
        cmd: crate::server_cloud::ServerCloudCmd,
    },
    /// Delete chunks no retained version references (safe while clients upload).
    Gc {
        #[command(flatten)]
        data: DataArg,
    },
    /// Verify metadata against chunks; exits non-zero and names what is wrong.
    Check {
        #[command(flatten)]
        data: DataArg,
        /// Also re-hash every chunk.
        #[arg(long)]
        read_data: bool,
    },
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
}

impl LimitArgs {
    fn to_limits(&self) -> Result<Limits> {
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
        })
    }
}

#[derive(Subcommand)]
pub enum UserCmd {
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input (otherwise a random one is made and printed).
        #[arg(long)]
        password_stdin: bool,
        /// Most bytes the user's uploads may take (`500M`, `20G`, `none`; default: none).
        #[arg(long, value_parser = parse_quota)]
        quota: Option<Quota>,
        #[command(flatten)]
        data: DataArg,
    },
    /// Sets or lifts a user's quota (`500M`, `20G`, `none`).
    Quota {
        name: String,
        #[arg(value_parser = parse_quota)]
        quota: Quota,
        #[command(flatten)]
        data: DataArg,
    },
    /// Users with their use against their quota.
    List {
        #[command(flatten)]
        data: DataArg,
    },
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataArg,
    },
    Disable {
        name: String,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Subcommand)]
pub enum FolderCmd {
    Add {
        name: String,
        /// Versions kept per file.
        #[arg(long, default_value_t = 32)]
        keep_versions: u32,
        #[command(flatten)]
        data: DataArg,
    },
    List {
        #[command(flatten)]
        data: DataArg,
    },
    Grant {
        folder: String,
        user: String,
        #[arg(long, value_parser = ["rw", "ro"])]
        access: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Changes how many versions per file a folder keeps.
    Set {
        name: String,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        keep_versions: u32,
        #[command(flatten)]
        data: DataArg,
    },
    Revoke {
        folder: String,
        user: String,
        #[command(flatten)]
        data: DataArg,
    },
}

fn password(from_stdin: bool) -> Result<(String, bool)> {
    if from_stdin {
        Ok((read_stdin_line()?, false))
    } else {
        Ok((auth::random_password(), true))
    }
}

pub async fn run(cmd: ServerCmd) -> Result<()> {
    match cmd {
        ServerCmd::Run {
            data,
            listen,
            cert,
            key,
            token_ttl,
            limits,
        } => serve(data.data, listen, cert, key, token_ttl, limits.to_limits()?).await,
        ServerCmd::Fingerprint { data, cert } => {
            let dir = DataDir::open(&data.data)?;
            println!("{}", dir.fingerprint(cert.as_deref())?);
            Ok(())
        }
        ServerCmd::User { cmd } => user(cmd),
        ServerCmd::Cloud { cmd } => crate::server_cloud::run(cmd).await,
        ServerCmd::Folder { cmd } => folder(cmd),
        ServerCmd::Gc { data } => {
            let dir = DataDir::open(&data.data)?;
            let rt = tokio::runtime::Handle::current();
            let report = tokio::task::spawn_blocking(move || maintenance::gc(&dir, &rt)).await??;
            println!(
                "gc: removed {} chunks ({} bytes), {} objects and {} orphan objects",
                report.chunks, report.bytes, report.objects_deleted, report.orphan_objects
            );
            for f in &report.failed {
                eprintln!("could not delete (left for the next gc): {f}");
            }
            Ok(())
        }
        ServerCmd::Check { data, read_data } => {
            let dir = DataDir::open(&data.data)?;
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

async fn serve(
    data: PathBuf,
    listen: Vec<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    token_ttl: u64,
    limits: Limits,
) -> Result<()> {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let (dir, created) = cairn_server::DataDir::open_or_init(&data)?;
    println!("cairn server {}", env!("CARGO_PKG_VERSION"));
    println!("data folder: {}", data.display());
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
    for a in &bound.addrs {
        println!("listening on https://{a}");
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    let runner = crate::server_cloud::runner::Runner::new(
        bound.state(),
        &data,
        loopback_url(&bound.addrs),
        dir.fingerprint(opts.cert.as_deref())?,
    );
    tokio::spawn(runner.run());
    bound.serve().await.context("serving")?;
    Ok(())
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

/// A quota in bytes; `None` for no limit.
#[derive(Clone, Copy, Debug)]
pub struct Quota(Option<u64>);

/// Parses `none`, a byte count, or a count with a K, M, G or T suffix (powers of 1024).
fn parse_quota(text: &str) -> Result<Quota, String> {
    crate::config::parse_size(text).map(Quota)
}

fn user(cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Add {
            name,
            admin,
            password_stdin,
            quota,
            data,
        } => {
            if !is_valid_name(&name) {
                bail!("invalid user name {name:?}: use 1-64 letters, digits, '.', '_' or '-'");
            }
            let dir = DataDir::open(&data.data)?;
            let (pw, made) = password(password_stdin)?;
            dir.meta
                .add_user(&name, &auth::hash_password(&pw)?, admin)?;
            if let Some(Quota(q)) = quota {
                dir.meta.set_quota(&name, q)?;
            }
            if made {
                println!("added user {name} with password {pw}");
            } else {
                println!("added user {name}");
            }
        }
        UserCmd::List { data } => {
            let dir = DataDir::open(&data.data)?;
            for u in dir.meta.users()? {
                let mut flags = Vec::new();
                if u.admin {
                    flags.push("admin");
                }
                if u.disabled {
                    flags.push("disabled");
                }
                let quota = u
                    .quota
                    .map_or("no quota".to_string(), |q| format!("of {q}"));
                println!(
                    "{}\t{}\t{} bytes used {quota}",
                    u.name,
                    flags.join(","),
                    u.used_bytes
                );
            }
        }
        UserCmd::Quota { name, quota, data } => {
            let dir = DataDir::open(&data.data)?;
            dir.meta.set_quota(&name, quota.0)?;
            match quota.0 {
                Some(q) => println!("quota of {name}: {q} bytes"),
                None => println!("{name} has no quota"),
            }
        }
        UserCmd::Passwd {
            name,
            password_stdin,
            data,
        } => {
            let dir = DataDir::open(&data.data)?;
            let (pw, made) = password(password_stdin)?;
            dir.meta.set_password(&name, &auth::hash_password(&pw)?)?;
            if made {
                println!("new password of {name}: {pw}");
            } else {
                println!("changed the password of {name}; its sessions are ended");
            }
        }
        UserCmd::Disable { name, data } => {
            let dir = DataDir::open(&data.data)?;
            dir.meta.set_disabled(&name, true)?;
            println!("disabled user {name}; its sessions are ended");
        }
    }
    Ok(())
}

fn folder(cmd: FolderCmd) -> Result<()> {
    match cmd {
        FolderCmd::Add {
            name,
            keep_versions,
            data,
        } => {
            if !is_valid_name(&name) {
                bail!("invalid folder name {name:?}: use 1-64 letters, digits, '.', '_' or '-'");
            }
            if keep_versions == 0 {
                bail!("--keep-versions must be at least 1");
            }
            let dir = DataDir::open(&data.data)?;
            dir.meta.add_folder(&name, keep_versions)?;
            println!("added folder {name} (keeps {keep_versions} versions per file)");
        }
        FolderCmd::List { data } => {
            let dir = DataDir::open(&data.data)?;
            for (f, grants) in dir.meta.folders()? {
                let g: Vec<String> = grants
                    .iter()
                    .map(|(u, a)| format!("{u}:{}", a.as_str()))
                    .collect();
                println!(
                    "{}\tkeep {}\thead {}\t{}",
                    f.name,
                    f.keep_versions,
                    f.head,
                    g.join(" ")
                );
            }
        }
        FolderCmd::Grant {
            folder,
            user,
            access,
            data,
        } => {
            let dir = DataDir::open(&data.data)?;
            let access = Access::parse(&access).context("--access is rw or ro")?;
            dir.meta.grant(&folder, &user, access)?;
            println!("granted {} on {folder} to {user}", access.as_str());
        }
        FolderCmd::Revoke { folder, user, data } => {
            let dir = DataDir::open(&data.data)?;
            dir.meta.revoke(&folder, &user)?;
            println!("revoked {user}'s access to {folder}");
        }
        FolderCmd::Set {
            name,
            keep_versions,
            data,
        } => {
            let dir = DataDir::open(&data.data)?;
            dir.meta.set_keep_versions(&name, keep_versions)?;
            println!("{name} keeps {keep_versions} versions per file from its next change on");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_with_units_or_none() {
        assert_eq!(parse_quota("none").map(|q| q.0), Ok(None));
        assert_eq!(parse_quota("1024").map(|q| q.0), Ok(Some(1024)));
        assert_eq!(parse_quota("1K").map(|q| q.0), Ok(Some(1024)));
        assert_eq!(parse_quota("20G").map(|q| q.0), Ok(Some(20 << 30)));
        assert_eq!(parse_quota("3MiB").map(|q| q.0), Ok(Some(3 << 20)));
        assert!(parse_quota("-5").is_err());
        assert!(parse_quota("12X").is_err());
        assert!(parse_quota("99999999999T").is_err(), "overflow is refused");
    }
}
