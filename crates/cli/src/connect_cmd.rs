//! `cairn connect [list|remove]`: saved connections to cairn servers.
//!
//! Saving logs in first, so a typo never becomes a saved connection. Saving again over an
//! existing connection keeps its trust (pinned fingerprint or CA file), proxy and timeout unless
//! they are given again: re-typing a password must not silently drop a pin and fall back to the
//! system's roots. Passwords (the server's and a proxy's) live in the credentials file only.
//!
//! Connecting keeps this computer's device id, so the server goes on seeing one device (its
//! own changes are not news to it, its agent claim stays its own). A new id is made only when
//! asked (`--new-device`) or when the server says another computer's live agent has this one:
//! a configuration folder copied from that computer, which must stop posing as it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cairn_protocol::is_valid_name;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::config::{
    connect_options, host_name, read_stdin_line, Config, ConnectionConfig, Credentials, Home,
};
use crate::output::escape;

mod discover;
use discover::discover_and_save;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ConnectCmd {
    #[command(subcommand)]
    action: Option<ConnectAction>,
    /// The server's HTTPS URL, with host and port.
    #[arg(required_unless_present = "discover")]
    url: Option<String>,
    #[command(flatten)]
    discover: DiscoverArgs,
    #[arg(long, required = true)]
    user: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Trust exactly the certificate with this SHA-256 fingerprint.
    #[arg(long, conflicts_with_all = ["ca", "system_roots", "discover"])]
    fingerprint: Option<String>,
    /// Trust certificates signed by this CA (PEM).
    #[arg(long, conflicts_with_all = ["system_roots", "discover"])]
    ca: Option<PathBuf>,
    /// Trust the system's roots again, dropping a saved fingerprint or CA file.
    #[arg(long, conflicts_with = "discover")]
    system_roots: bool,
    /// Name of the connection.
    #[arg(long, default_value = "default")]
    name: String,
    /// Proxy URL, e.g. http://user:password@proxy:3128 (HTTP(S)_PROXY are honoured without it).
    #[arg(long, conflicts_with = "no_proxy")]
    proxy: Option<String>,
    /// Drop a saved proxy (HTTP(S)_PROXY are still honoured).
    #[arg(long)]
    no_proxy: bool,
    /// Seconds the server may stay silent before a request fails and is retried (default 30;
    /// raise it for very slow links).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: Option<u64>,
    /// Upload at most this many bytes per second over this connection, all transfers
    /// together (e.g. 500K, 2M; none for no limit).
    #[arg(long, value_name = "RATE", value_parser = crate::config::parse_rate)]
    limit_upload: Option<crate::config::Rate>,
    /// Download at most this many bytes per second (e.g. 10M; none for no limit).
    #[arg(long, value_name = "RATE", value_parser = crate::config::parse_rate)]
    limit_download: Option<crate::config::Rate>,
    /// Give this computer a new device identity (the configuration folder was copied from
    /// another computer). Otherwise connecting keeps the device id.
    #[arg(long)]
    new_device: bool,
}

/// `connect --discover`: find the server on the local network instead of naming its URL.
#[derive(Args)]
struct DiscoverArgs {
    /// Find cairn servers on the local network (mDNS), pick one, and pin the fingerprint it
    /// announces once you confirm it.
    #[arg(long, conflicts_with = "url")]
    discover: bool,
    /// Seconds to listen for servers (1 to 60) [default: 3].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=60))]
    discover_seconds: Option<u64>,
    /// Pick the Nth server of the list, or the one announced as NAME, without asking (for
    /// scripts: a name stays right when other servers come and go).
    #[arg(long, value_name = "N|NAME")]
    pick: Option<String>,
    /// Trust the picked server's fingerprint without asking (for scripts).
    #[arg(long)]
    yes: bool,
}

#[derive(Subcommand)]
enum ConnectAction {
    /// List saved connections (passwords are never shown).
    List {
        /// Print JSON (see docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Remove a saved connection and its stored passwords; refused while tasks use it.
    Remove { name: String },
}

pub async fn connect(c: ConnectCmd) -> Result<()> {
    match c.action {
        Some(ConnectAction::List { json }) => list(json),
        Some(ConnectAction::Remove { name }) => remove(&name),
        None if c.discover.discover => discover_and_save(c).await,
        // (clap's `requires` counts --discover's default `false` as given.)
        None if c.discover.pick.is_some()
            || c.discover.yes
            || c.discover.discover_seconds.is_some() =>
        {
            bail!("--pick, --yes and --discover-seconds go with --discover")
        }
        None => save(c).await,
    }
}

/// The settings of a saved connection that `save` carried over, for its output.
fn kept_settings(
    c: &ConnectCmd,
    previous: Option<&ConnectionConfig>,
    previous_proxy: Option<String>,
    conn: &mut ConnectionConfig,
) -> Vec<String> {
    let Some(prev) = previous else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    if c.fingerprint.is_none() && c.ca.is_none() && !c.system_roots {
        if let Some(f) = &prev.fingerprint {
            conn.fingerprint = Some(f.clone());
            kept.push(format!("the pinned fingerprint {f}"));
        }
        if let Some(ca) = &prev.ca {
            conn.ca = Some(ca.clone());
            kept.push(format!("the CA file {}", ca.display()));
        }
    }
    if c.proxy.is_none() && !c.no_proxy {
        if let Some(p) = previous_proxy {
            kept.push(format!("the proxy {}", cairn_client::redact_url(&p)));
            conn.proxy = Some(p);
        }
    }
    if c.timeout.is_none() {
        if let Some(t) = prev.timeout_secs {
            conn.timeout_secs = Some(t);
            kept.push(format!("the timeout of {t} s"));
        }
    }
    if c.limit_upload.is_none() {
        if let Some(r) = prev.limit_upload {
            conn.limit_upload = Some(r);
            kept.push(format!("the upload limit of {r} bytes/s"));
        }
    }
    if c.limit_download.is_none() {
        if let Some(r) = prev.limit_download {
            conn.limit_download = Some(r);
            kept.push(format!("the download limit of {r} bytes/s"));
        }
    }
    kept
}

async fn save(c: ConnectCmd) -> Result<()> {
    if !is_valid_name(&c.name) {
        bail!("invalid connection name {:?}", c.name);
    }
    let (Some(url), Some(user)) = (c.url.clone(), c.user.clone()) else {
        bail!("give the server's URL and --user (or `cairn connect list`)");
    };
    let home = Home::locate()?;
    let mut config = home.load()?;
    let mut creds = home.credentials()?;
    let previous = config.connections.get(&c.name).cloned();
    let password = if c.password_stdin {
        read_stdin_line()?
    } else {
        match creds.passwords.get(&c.name) {
            Some(p) if previous.as_ref().is_some_and(|p| p.user == user) => p.clone(),
            _ => bail!("give the password on standard input with --password-stdin"),
        }
    };
    let mut conn = ConnectionConfig {
        url: url.trim_end_matches('/').to_string(),
        user,
        fingerprint: c.fingerprint.clone(),
        ca: c.ca.clone(),
        proxy: c.proxy.clone(),
        timeout_secs: c.timeout,
        limit_upload: c.limit_upload.and_then(|r| r.0),
        limit_download: c.limit_download.and_then(|r| r.0),
    };
    // The saved proxy with its password, if it has one.
    let previous_proxy = creds
        .proxies
        .get(&c.name)
        .cloned()
        .or_else(|| previous.as_ref().and_then(|p| p.proxy.clone()));
    let kept = kept_settings(&c, previous.as_ref(), previous_proxy, &mut conn);
    // Log in before saving, so a typo never becomes a saved connection.
    let session =
        cairn_client::Connection::new(connect_options(&conn, password.clone(), &config.device_id))?;
    session
        .login()
        .await
        .with_context(|| format!("logging in to {}", conn.url))?;
    let folders = session.folders().await?;
    let new_device = c.new_device || posing_as_another_computer(&home, &session).await;
    // A proxy's password goes to the credentials file (0600), not the configuration.
    let mut saved = conn.clone();
    match &conn.proxy {
        Some(p) if cairn_client::redact_url(p) != *p => {
            creds.proxies.insert(c.name.clone(), p.clone());
            saved.proxy = Some(cairn_client::redact_url(p));
        }
        _ => {
            creds.proxies.remove(&c.name);
        }
    }
    config.connections.insert(c.name.clone(), saved);
    if new_device {
        config.device_id = cairn_server::auth::random_bytes(16)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    }
    creds.passwords.insert(c.name.clone(), password);
    home.save_credentials(&creds)?;
    home.save(&config)?;
    let verb = if previous.is_some() {
        "updated"
    } else {
        "saved"
    };
    println!(
        "{verb} connection {} to {} as {}",
        c.name, conn.url, conn.user
    );
    if !kept.is_empty() {
        println!("  kept {}", kept.join(", "));
    }
    if new_device {
        println!("  this computer has a new device identity (affects every connection)");
    }
    for f in folders {
        println!("  folder {} ({})", f.name, f.access.as_str());
    }
    Ok(())
}

/// True when the server says another live agent has this computer's device identity while no
/// agent of this configuration runs here: the configuration folder was copied from a computer
/// whose agent runs. Anything else (an old server, a network error) keeps the identity.
async fn posing_as_another_computer(home: &Home, session: &cairn_client::Connection) -> bool {
    if crate::agent::ask_agent(home, &crate::agent::Request::new("status"))
        .await
        .is_some()
    {
        return false;
    }
    let probe = session.probe_agent(&crate::run::random_instance()).await;
    matches!(probe, Err(e) if e.status() == Some(409))
}

/// One saved connection as `connect list --json` prints it (field names are stable).
#[derive(Serialize)]
struct ConnectionView<'a> {
    name: &'a str,
    url: &'a str,
    user: &'a str,
    /// "fingerprint", "ca" or "system".
    trust: &'static str,
    fingerprint: Option<&'a str>,
    ca: Option<String>,
    /// Without its password.
    proxy: Option<String>,
    timeout_secs: Option<u64>,
    /// Bytes per second; absent for no limit.
    limit_upload: Option<u64>,
    limit_download: Option<u64>,
    /// The name this computer gives the server when it logs in.
    computer: &'a str,
    tasks: Vec<&'a str>,
}

fn tasks_using<'a>(config: &'a Config, connection: &str) -> Vec<&'a str> {
    config
        .tasks
        .iter()
        .filter(|(_, t)| t.connection == connection)
        .map(|(n, _)| n.as_str())
        .collect()
}

fn views<'a>(config: &'a Config, computer: &'a str) -> Vec<ConnectionView<'a>> {
    config
        .connections
        .iter()
        .map(|(name, c)| ConnectionView {
            name,
            url: &c.url,
            user: &c.user,
            trust: match (&c.fingerprint, &c.ca) {
                (Some(_), _) => "fingerprint",
                (None, Some(_)) => "ca",
                (None, None) => "system",
            },
            fingerprint: c.fingerprint.as_deref(),
            ca: c.ca.as_ref().map(|p| p.display().to_string()),
            // Saved without its password already; redacted again in case it was edited by hand.
            proxy: c.proxy.as_deref().map(cairn_client::redact_url),
            timeout_secs: c.timeout_secs,
            limit_upload: c.limit_upload,
            limit_download: c.limit_download,
            computer,
            tasks: tasks_using(config, name),
        })
        .collect()
}

fn list(json: bool) -> Result<()> {
    let home = Home::locate()?;
    let config = home.load()?;
    let computer = host_name();
    let all = views(&config, &computer);
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        println!(
            "no saved connections; add one with `cairn connect URL --user NAME --password-stdin`"
        );
    }
    for v in all {
        let trust = match (v.fingerprint, &v.ca) {
            (Some(f), _) => format!("pinned fingerprint {f}"),
            (None, Some(ca)) => format!("CA file {ca}"),
            (None, None) => "the system's roots".into(),
        };
        // The configuration may have been edited by hand: nothing in it moves the cursor.
        println!("{}  {}  user {}", v.name, escape(v.url), escape(v.user));
        println!("  trusts {}", escape(&trust));
        println!(
            "  proxy {}",
            escape(
                v.proxy
                    .as_deref()
                    .unwrap_or("none saved (HTTPS_PROXY is honoured)")
            )
        );
        println!("  computer {}", escape(v.computer));
        if let Some(t) = v.timeout_secs {
            println!("  timeout {t} s");
        }
        if let Some(r) = v.limit_upload {
            println!("  uploads at most {r} bytes/s");
        }
        if let Some(r) = v.limit_download {
            println!("  downloads at most {r} bytes/s");
        }
        if !v.tasks.is_empty() {
            println!("  used by {}", v.tasks.join(", "));
        }
    }
    Ok(())
}

fn remove(name: &str) -> Result<()> {
    let home = Home::locate()?;
    let mut config = home.load()?;
    if !config.connections.contains_key(name) {
        bail!("no connection named {name} (see `cairn connect list`)");
    }
    let users = tasks_using(&config, name);
    if !users.is_empty() {
        bail!(
            "connection {name} is used by tasks {}: remove them first (`cairn backup remove`, `cairn drive remove`)",
            users.join(", ")
        );
    }
    config.connections.remove(name);
    let mut creds: Credentials = home.credentials()?;
    creds.passwords.remove(name);
    creds.proxies.remove(name);
    // Credentials first: a crash in between leaves a connection without a password (which asks
    // for one), never a password without its connection.
    home.save_credentials(&creds)?;
    home.save(&config)?;
    println!("removed connection {name} and its saved passwords");
    Ok(())
}
