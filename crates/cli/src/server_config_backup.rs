//! `cairn server backup-config` and `cairn server restore-config`: a server's users, folders,
//! grants, quotas and cloud connections and tasks (not its content) as one JSON document, and
//! that document made into a new server (`cairn_server::meta::ConfigBackup` says what is in
//! it and what is not).
//!
//! The document holds password hashes and cloud secrets, so it is written readable only by
//! its owner: `--out FILE` creates it 0600, and stdout redirected to a file has that file
//! made 0600 before a byte is written; stdout on a terminal gets a warning first.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cairn_server::meta::ConfigBackup;
use cairn_server::DataDir;
use clap::Args;

use crate::server_cmd::ServerPlace;

#[derive(Args)]
pub struct BackupConfigCmd {
    #[command(flatten)]
    place: ServerPlace,
    /// Write the backup to this file (created readable only by you) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct RestoreConfigCmd {
    /// The backup to restore (`-` for stdin).
    #[arg(value_name = "FILE")]
    backup: PathBuf,
    /// Where the new server's data goes: --data must not hold a data folder yet, and with
    /// --metadata the database must hold no users or folders.
    #[command(flatten)]
    place: ServerPlace,
    /// Also write the server config file the backup holds (if any) here; never over an
    /// existing file.
    #[arg(long, value_name = "FILE")]
    write_config: Option<PathBuf>,
}

pub fn backup(cmd: BackupConfigCmd) -> Result<()> {
    let dir = cmd.place.open()?;
    let mut backup = dir.meta.export_config()?;
    if let Some(path) = cmd.place.config_path() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the server config file {}", path.display()))?;
        backup.server_config = Some(text);
    }
    let mut json = serde_json::to_vec_pretty(&backup).context("encoding the backup")?;
    json.push(b'\n');
    match &cmd.out {
        Some(path) => write_private(path, &json),
        None => write_stdout(&json),
    }
}

/// Writes `bytes` to a new or truncated file at `path` that only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // `mode` applies only to a file it creates: an older one may be readable by others.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        eprintln!(
            "warning: this backup holds password hashes and cloud secrets; \
             redirect it to a file (or use --out FILE) and keep that file private"
        );
    } else {
        let fd = stdout
            .as_fd()
            .try_clone_to_owned()
            .context("looking at stdout")?;
        let file = File::from(fd);
        let is_file = file.metadata().is_ok_and(|m| m.is_file());
        if is_file {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .context("making the file stdout goes to readable only by you")?;
        }
    }
    let mut out = stdout.lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("writing the backup to stdout")
}

fn read_backup(path: &Path) -> Result<ConfigBackup> {
    let mut text = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut text)
            .context("reading the backup from stdin")?;
    } else {
        text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    let backup: ConfigBackup = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a cairn configuration backup", path.display()))?;
    backup.check_format()?;
    Ok(backup)
}

pub fn restore(cmd: RestoreConfigCmd) -> Result<()> {
    let backup = read_backup(&cmd.backup)?;
    // Refused before anything is written, so a refusal leaves nothing behind.
    let config_out = match &cmd.write_config {
        None => None,
        Some(path) => {
            let Some(text) = &backup.server_config else {
                bail!(
                    "{} holds no server config file (it was made without --config)",
                    cmd.backup.display()
                );
            };
            if path.exists() {
                bail!(
                    "{} exists; not writing the backup's config over it",
                    path.display()
                );
            }
            Some((path, text))
        }
    };
    let (data, config) = cmd.place.resolve()?;
    let dir = DataDir::create_empty(&data, &config.store)?;
    let restored = dir.meta.import_config(&backup)?;
    for t in &restored {
        println!("restored {} ({} rows)", t.table, t.rows);
    }
    if let Some((path, text)) = config_out {
        write_private(path, text.as_bytes())?;
        println!("wrote the server config file {}", path.display());
    }
    println!(
        "restored the settings into {}: start it with `cairn server run --data {}`; \
         clients see a new server and upload their files again",
        data.display(),
        data.display()
    );
    if backup.server_config.is_some() && cmd.write_config.is_none() {
        println!("the backup also holds a server config file: --write-config FILE writes it");
    }
    Ok(())
}
