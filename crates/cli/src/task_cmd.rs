//! `cairn backup add|remove`: backup tasks.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cairn_engine::index::LocalIndex;
use cairn_protocol::Access;
use clap::{Args, Subcommand};

use crate::config::{host_name, Home, TaskConfig};

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Add a backup task.
    Add(BackupAddCmd),
    /// Remove a backup task; the server keeps its data.
    Remove { name: String },
}

#[derive(Args)]
pub struct BackupAddCmd {
    name: String,
    /// A local folder to back up; repeat for several.
    #[arg(long, required = true)]
    local: Vec<PathBuf>,
    #[arg(long)]
    connection: String,
    /// The server folder that receives the backup.
    #[arg(long)]
    folder: String,
    /// Name of this computer in the destination (default: the host name).
    #[arg(long)]
    computer: Option<String>,
    /// Largest file backed up, in MB (0 = unlimited, at most 10240000).
    #[arg(long, default_value_t = 0)]
    max_size: u64,
    /// File names (glob patterns) not backed up.
    #[arg(long)]
    exclude_name: Vec<String>,
    /// Extensions not backed up (iso, *.iso).
    #[arg(long)]
    exclude_ext: Vec<String>,
    /// Keep files on the server when they are removed locally.
    #[arg(long)]
    keep_deleted: bool,
    /// Files transferred at once.
    #[arg(long, default_value_t = 3)]
    transfers: usize,
}

pub async fn backup(cmd: BackupCmd) -> Result<()> {
    match cmd {
        BackupCmd::Add(a) => backup_add(a).await,
        BackupCmd::Remove { name } => {
            let home = Home::locate()?;
            let mut config = home.load()?;
            if config.tasks.remove(&name).is_none() {
                bail!("no task named {name}");
            }
            home.save(&config)?;
            LocalIndex::open(&home.index_path())?.forget_task(&name)?;
            println!("removed task {name}; its backups stay on the server");
            Ok(())
        }
    }
}

async fn backup_add(a: BackupAddCmd) -> Result<()> {
    crate::config::check_name("task", &a.name)?;
    let filter = crate::config::new_filter(a.max_size, &a.exclude_name, &a.exclude_ext)?;
    if a.transfers == 0 || a.transfers > 64 {
        bail!("--transfers must be between 1 and 64");
    }
    let home = Home::locate()?;
    let mut config = home.load()?;
    if config.tasks.contains_key(&a.name) {
        bail!("a task named {} exists already", a.name);
    }
    let mut locals = Vec::new();
    for l in &a.local {
        let abs =
            std::fs::canonicalize(l).with_context(|| format!("local folder {}", l.display()))?;
        if !abs.is_dir() {
            bail!("{} is not a folder", l.display());
        }
        for (other, t) in &config.tasks {
            for theirs in &t.locals {
                if abs.starts_with(theirs) || theirs.starts_with(&abs) {
                    bail!(
                        "{} overlaps {} of task {other}",
                        abs.display(),
                        theirs.display()
                    );
                }
            }
        }
        locals.push(abs);
    }
    let computer = a.computer.clone().unwrap_or_else(host_name);
    let task = TaskConfig {
        kind: "backup".into(),
        locals,
        connection: a.connection.clone(),
        folder: a.folder.clone(),
        computer,
        filter,
        keep_deleted: a.keep_deleted,
        transfers: a.transfers,
        drive: None,
        cloud: None,
    };
    let mut prefixes = Vec::new();
    for i in 0..task.locals.len() {
        let p = task.remote_prefix(i)?;
        if prefixes.contains(&p) {
            bail!("two local folders would both land in {p}: give them different names");
        }
        prefixes.push(p);
    }
    let conn = home.connection(&config, &a.connection)?;
    let folders = conn
        .folders()
        .await
        .with_context(|| format!("listing folders on {}", conn.url()))?;
    match folders.iter().find(|f| f.name == a.folder) {
        None => bail!(
            "folder {} does not exist on {} or is not shared with you",
            a.folder,
            conn.url()
        ),
        Some(f) if f.access == Access::Ro => bail!(
            "folder {} on {} is read-only for you: a backup destination must be writable",
            a.folder,
            conn.url()
        ),
        Some(_) => {}
    }
    config.tasks.insert(a.name.clone(), task);
    home.save(&config)?;
    println!("added backup task {}:", a.name);
    for (i, l) in config.tasks[&a.name].locals.iter().enumerate() {
        println!("  {} -> {}/{}", l.display(), a.folder, prefixes[i]);
    }
    Ok(())
}
