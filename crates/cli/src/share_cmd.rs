//! `cairn share ...`: sharing links to files and folders kept on a cairn server (create, list,
//! revoke); the server serves them at `/s/TOKEN` (see `cairn_server::share`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_client::Connection;
use cairn_server::share::{ShareInfo, ShareRequest};
use clap::Subcommand;

use crate::config::{read_stdin_line, Home};
use crate::output::escape;

#[derive(Subcommand)]
pub enum ShareCmd {
    /// Create a link to a file or folder of a task (a local path inside the task's folder).
    Create {
        task: String,
        path: PathBuf,
        /// Ask visitors for a password, read from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// When the link stops working: a date, an RFC 3339 time, or a span such as `7d`.
        #[arg(long)]
        expires: Option<String>,
        /// Most downloads it allows (with --upload-only: most files it takes).
        #[arg(long)]
        max_access: Option<u64>,
        /// A link to a folder that takes files and shows nothing of it ("file request").
        #[arg(long)]
        upload_only: bool,
        #[arg(long)]
        json: bool,
    },
    /// Your links (with --all, every user's: administrators).
    List {
        /// The saved connection to the server (default: the only one).
        #[arg(long)]
        connection: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stop a link from working (its id from `share list`).
    Revoke {
        id: i64,
        #[arg(long)]
        connection: Option<String>,
    },
}

fn now_ns() -> i64 {
    crate::run::now_ns()
}

/// `--expires`: an instant, or a span counted forward from now (`7d`, `12h`).
fn parse_expiry(text: &str) -> Result<i64> {
    let now = now_ns();
    let at = cairn_model::timespec::parse_instant(text, 0)
        .with_context(|| format!("--expires {text:?}"))?;
    // Relative forms count back from the "now" given (0 here): forward is what a link means.
    let at = if at <= 0 { now.saturating_sub(at) } else { at };
    if at <= now {
        bail!("--expires {text:?} is not in the future");
    }
    Ok(at)
}

fn connection(name: Option<&str>) -> Result<Arc<Connection>> {
    let home = Home::locate()?;
    let config = home.load()?;
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let mut names = config.connections.keys();
            match (names.next(), names.next()) {
                (Some(only), None) => only.clone(),
                (None, _) => bail!("no saved connection; add one with `cairn connect`"),
                _ => bail!("several saved connections: say which with --connection NAME"),
            }
        }
    };
    home.connection(&config, &name)
}

fn describe(s: &ShareInfo, base: &str) -> String {
    let mut limits = Vec::new();
    if s.password {
        limits.push("password".to_string());
    }
    if let Some(e) = s.expires_ns {
        limits.push(format!(
            "until {}",
            cairn_model::timespec::format_instant(e)
        ));
    }
    match s.max_access {
        Some(m) => limits.push(format!("{}/{m} accesses", s.accesses)),
        None => limits.push(format!("{} accesses", s.accesses)),
    }
    let path = if s.path.is_empty() { "/" } else { &s.path };
    format!(
        "{}\t{}\t{}:{}\t{}{}\t{}",
        s.id,
        s.state,
        s.folder,
        escape(path),
        base,
        s.url_path,
        limits.join(", ")
    )
}

pub async fn run(cmd: ShareCmd) -> Result<()> {
    match cmd {
        ShareCmd::Create {
            task,
            path,
            password_stdin,
            expires,
            max_access,
            upload_only,
            json,
        } => {
            let (conn, folder, remote) = crate::explore::server_place(&task, &path)?;
            let password = if password_stdin {
                Some(read_stdin_line().context("reading the link's password from stdin")?)
            } else {
                None
            };
            let req = ShareRequest {
                folder,
                path: remote.to_string(),
                password,
                expires_ns: expires.as_deref().map(parse_expiry).transpose()?,
                max_access,
                upload_only,
            };
            let made: ShareInfo = conn.admin_post("/api/v1/shares", &req).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&made)?);
            } else {
                println!("{}{}", conn.url(), made.url_path);
                eprintln!(
                    "link {} to {}",
                    made.id,
                    escape(&path.display().to_string())
                );
            }
        }
        ShareCmd::List {
            connection: name,
            all,
            json,
        } => {
            let conn = connection(name.as_deref())?;
            let q: Vec<(&str, String)> = if all {
                vec![("all", "true".into())]
            } else {
                vec![]
            };
            let list: Vec<ShareInfo> = conn.admin_get("/api/v1/shares", &q).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if list.is_empty() {
                println!("no sharing links; make one with `cairn share create TASK PATH`");
            }
            for s in &list {
                println!("{}", describe(s, conn.url()));
            }
        }
        ShareCmd::Revoke {
            id,
            connection: name,
        } => {
            let conn = connection(name.as_deref())?;
            conn.admin_delete(&format!("/api/v1/shares/{id}"), &[])
                .await?;
            println!("revoked link {id}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_spans_count_forward() {
        let now = now_ns();
        let week = parse_expiry("7d").expect("a span");
        let seven_days = 7 * 24 * 3600 * 1_000_000_000i64;
        assert!(
            (week - now - seven_days).abs() < 60 * 1_000_000_000,
            "{week} {now}"
        );
        assert!(parse_expiry("2001-01-01").is_err(), "the past is refused");
        assert!(parse_expiry("2100-01-01").is_ok());
        assert!(parse_expiry("soon").is_err());
    }
}
