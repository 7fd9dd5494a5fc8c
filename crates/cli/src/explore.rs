//! The version explorer: `versions`, `ls`, `restore`, `download`.
//!
//! A PATH names a place inside one of the task's local folders (absolute, or relative to the
//! current directory) and may no longer exist locally; it maps to `<computer>/<folder>/...` in
//! the server folder.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_engine::local_root::LocalRoot;
use cairn_engine::restore::{self, RestoreOptions};
use cairn_engine::{Progress, ProgressEvent, Remote};
use cairn_model::timespec::{format_instant, parse_instant};
use cairn_model::{EntryKind, RelPath, Seq};
use clap::Args;
use serde::Serialize;

use crate::config::{Home, TaskConfig};

/// One place of a task: which local root, the path below it, and the path on the server.
struct Place {
    root: usize,
    rel: RelPath,
    remote: RelPath,
}

fn normalize(path: &Path) -> Result<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

fn places(task: &TaskConfig, path: Option<&Path>) -> Result<Vec<Place>> {
    let Some(path) = path else {
        return (0..task.locals.len())
            .map(|i| {
                Ok(Place {
                    root: i,
                    rel: RelPath::root(),
                    remote: task.remote_prefix(i)?,
                })
            })
            .collect();
    };
    let abs = normalize(path)?;
    // The local folder may be reached through a link: compare against its real path too.
    let real = abs
        .parent()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| abs.file_name().map(|n| p.join(n)));
    for (i, root) in task.locals.iter().enumerate() {
        for candidate in [Some(&abs), real.as_ref()].into_iter().flatten() {
            if let Ok(rest) = candidate.strip_prefix(root) {
                let text = rest
                    .to_str()
                    .with_context(|| format!("{} is not valid UTF-8", rest.display()))?;
                let rel = RelPath::parse(text)?;
                let remote = task.remote_prefix(i)?.try_join_path(&rel)?;
                return Ok(vec![Place {
                    root: i,
                    rel,
                    remote,
                }]);
            }
        }
    }
    let roots: Vec<String> = task
        .locals
        .iter()
        .map(|l| l.display().to_string())
        .collect();
    bail!(
        "{} is not inside the task's local folders ({})",
        abs.display(),
        roots.join(", ")
    )
}

/// Where local `path` of task `name` is on its server: the connection, the server folder and
/// the path in it (for `share create`).
pub fn server_place(
    name: &str,
    path: &Path,
) -> Result<(Arc<cairn_client::Connection>, String, RelPath)> {
    let home = Home::locate()?;
    let config = home.load()?;
    let task = config
        .tasks
        .get(name)
        .with_context(|| format!("no task named {name}"))?;
    if task.kind == "cloud" {
        bail!("task {name} is a cloud task: links share files kept on a cairn server");
    }
    let place = places(task, Some(path))?.remove(0);
    let conn = home.connection(&config, &task.connection)?;
    Ok((conn, task.folder.clone(), place.remote))
}

struct Task {
    config: TaskConfig,
    remote: Arc<dyn Remote>,
    computer: String,
}

/// The task `name` when it is a cloud task (its versions are on the cloud, not a server).
fn cloud_task(name: &str) -> Result<Option<(Home, crate::config::Config, TaskConfig)>> {
    let home = Home::locate()?;
    let config = home.load()?;
    match config.tasks.get(name) {
        Some(t) if t.kind == "cloud" => {
            let t = t.clone();
            Ok(Some((home, config, t)))
        }
        _ => Ok(None),
    }
}

fn open_task(name: &str) -> Result<Task> {
    let home = Home::locate()?;
    let config = home.load()?;
    let task = config
        .tasks
        .get(name)
        .with_context(|| format!("no task named {name}"))?
        .clone();
    let conn = home.connection(&config, &task.connection)?;
    let remote: Arc<dyn Remote> = Arc::new(conn.remote(&task.folder));
    Ok(Task {
        computer: task.computer.clone(),
        config: task,
        remote,
    })
}

fn report_failures(failed: &[(PathBuf, String)]) {
    for (path, why) in failed {
        eprintln!(
            "not restored: {}: {}",
            crate::output::escape_path(path),
            crate::output::escape(why)
        );
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn parse_at(at: Option<&str>) -> Result<Option<i64>> {
    at.map(|t| parse_instant(t, now_ns()).map_err(anyhow::Error::from))
        .transpose()
}

/// One version as `versions --json` prints it (field names are stable: docs/json.md).
#[derive(Serialize)]
struct VersionView {
    version: i64,
    /// When the server accepted it: RFC 3339 (seconds) and nanoseconds since the epoch.
    saved: String,
    saved_ns: i64,
    size: u64,
    /// file, dir, symlink or deleted.
    kind: &'static str,
    /// BLAKE3 of the content (of the target for a symbolic link); null otherwise.
    hash: Option<String>,
    computer: String,
    device: String,
    user: String,
}

/// One path as `ls --json` prints it (field names are stable: docs/json.md).
#[derive(Serialize)]
struct LsView {
    /// Where it is (or would be) in the task's local folder.
    path: String,
    /// Where it is in the server folder.
    server_path: String,
    /// file, dir, symlink or deleted.
    kind: &'static str,
    size: u64,
    saved: String,
    saved_ns: i64,
    version: i64,
}

pub async fn versions(task: &str, path: &Path, json: bool) -> Result<()> {
    if let Some((home, config, t)) = cloud_task(task)? {
        if json {
            bail!("--json is not available for cloud tasks' versions yet");
        }
        return crate::cloud_explore::versions(&home, &config, task, &t, path).await;
    }
    let t = open_task(task)?;
    let place = places(&t.config, Some(path))?.remove(0);
    let versions = t.remote.versions(&place.remote).await?;
    if versions.is_empty() {
        bail!("{} has no versions on the server", path.display());
    }
    if json {
        let views: Vec<VersionView> = versions
            .into_iter()
            .map(|v| VersionView {
                version: v.seq.0,
                saved: format_instant(v.committed_ns),
                saved_ns: v.committed_ns,
                size: v.entry.size,
                kind: v.entry.kind.as_str(),
                hash: v.entry.hash.map(|h| h.to_hex()),
                computer: v.computer,
                device: v.device.0,
                user: v.user,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    println!(
        "{:>8}  {:<20}  {:>12}  {:<8}  {:<16}  user",
        "version", "saved", "size", "kind", "computer"
    );
    for v in versions {
        // Versions from before computers were named show their device id.
        let computer = if v.computer.is_empty() {
            v.device.0.as_str()
        } else {
            v.computer.as_str()
        };
        println!(
            "{:>8}  {:<20}  {:>12}  {:<8}  {:<16}  {}",
            v.seq.0,
            format_instant(v.committed_ns),
            v.entry.size,
            v.entry.kind.as_str(),
            crate::output::escape(computer),
            crate::output::escape(&v.user)
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct LsCmd {
    task: String,
    path: Option<PathBuf>,
    /// Show the state at this time (RFC 3339, or relative: 2h, "3 days ago").
    #[arg(long)]
    at: Option<String>,
    /// Include deleted files.
    #[arg(long)]
    deleted: bool,
    /// Print JSON (see docs/json.md).
    #[arg(long)]
    json: bool,
}

pub async fn ls(c: LsCmd) -> Result<()> {
    let t = open_task(&c.task)?;
    let at = parse_at(c.at.as_deref())?;
    let mut views = Vec::new();
    for place in places(&t.config, c.path.as_deref())? {
        let prefix = t.config.remote_prefix(place.root)?;
        for v in t.remote.tree(&place.remote, at, c.deleted).await? {
            let rel = v.path.strip_prefix(&prefix).unwrap_or(v.path.clone());
            let shown = t.config.locals[place.root].join(rel.as_str());
            let kind = if v.is_deleted() {
                "deleted"
            } else {
                v.entry.kind.as_str()
            };
            if c.json {
                views.push(LsView {
                    path: shown.to_string_lossy().into_owned(),
                    server_path: v.path.to_string(),
                    kind,
                    size: v.entry.size,
                    saved: format_instant(v.committed_ns),
                    saved_ns: v.committed_ns,
                    version: v.seq.0,
                });
                continue;
            }
            println!(
                "{:<8} {:>12}  {}  {}",
                kind,
                v.entry.size,
                format_instant(v.committed_ns),
                crate::output::escape_path(&shown)
            );
        }
    }
    if c.json {
        println!("{}", serde_json::to_string_pretty(&views)?);
    }
    Ok(())
}

#[derive(Args)]
pub struct RestoreCmd {
    task: String,
    /// A file or folder inside the task's local folders (default: the whole task).
    path: Option<PathBuf>,
    /// Restore the state at this time (default: the newest).
    #[arg(long)]
    at: Option<String>,
    /// Write into this folder instead of in place.
    #[arg(long)]
    to: Option<PathBuf>,
}

/// A progress bar over the bytes of a restore.
struct BarProgress(indicatif::ProgressBar);

impl Progress for BarProgress {
    fn event(&self, e: ProgressEvent) {
        if let ProgressEvent::Transferred { bytes } = e {
            self.0.inc(bytes);
        }
    }
}

fn bar(total: u64) -> Arc<BarProgress> {
    let pb = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style);
    }
    Arc::new(BarProgress(pb))
}

pub async fn restore(c: RestoreCmd) -> Result<()> {
    let at = parse_at(c.at.as_deref())?;
    if let Some((home, config, t)) = cloud_task(&c.task)? {
        let (path, to) = (c.path.as_deref(), c.to.as_deref());
        return crate::cloud_explore::restore(&home, &config, &c.task, &t, path, at, to).await;
    }
    let t = open_task(&c.task)?;
    if let Some(to) = &c.to {
        std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    }
    let mut total_files = 0;
    let mut failed = 0;
    for place in places(&t.config, c.path.as_deref())? {
        let local_root = &t.config.locals[place.root];
        let tree = t.remote.tree(&place.remote, at, false).await?;
        if tree.is_empty() {
            let when = at
                .map(|a| format!(" at {}", format_instant(a)))
                .unwrap_or_default();
            bail!(
                "nothing to restore at {}{when}",
                local_root.join(place.rel.as_str()).display()
            );
        }
        // The restored item's own name: the file, the sub-folder, or the local folder itself.
        let own_name = if place.rel.is_root() {
            local_root
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("restore")
                .to_string()
        } else {
            place.rel.name().to_string()
        };
        let own = RelPath::parse(&own_name)?;
        // Where a server path lands below the restore's root; `None` for anything the server
        // sent outside what was asked for (a hostile or broken server), which is skipped, and
        // an error for a path that would be too long there (below a longer folder name).
        let dest_of = |path: &RelPath| -> Option<cairn_model::Result<RelPath>> {
            let below = path.strip_prefix(&place.remote)?;
            Some(match &c.to {
                None => place.rel.try_join_path(&below),
                Some(_) => own.try_join_path(&below),
            })
        };
        let mut items = Vec::new();
        for v in &tree {
            match dest_of(&v.path) {
                Some(Ok(dest)) => items.push((v.clone(), dest)),
                Some(Err(e)) => {
                    failed += 1;
                    eprintln!(
                        "not restored: {}: {}",
                        crate::output::escape(v.path.as_str()),
                        crate::output::escape(&e.to_string())
                    );
                }
                None => eprintln!(
                    "skipped {}: the server listed it outside {}",
                    crate::output::escape(v.path.as_str()),
                    crate::output::escape(place.remote.as_str())
                ),
            }
        }
        let total: u64 = items
            .iter()
            .filter(|(v, _)| v.entry.kind == EntryKind::File)
            .map(|(v, _)| v.entry.size)
            .sum();
        let mut heads = HashMap::new();
        if c.to.is_none() {
            let now = if at.is_some() {
                t.remote.tree(&place.remote, None, false).await?
            } else {
                tree.clone()
            };
            for v in now {
                if let (Some(h), Some(Ok(dest))) = (v.entry.hash, dest_of(&v.path)) {
                    heads.insert(dest, h);
                }
            }
        }
        let root = match &c.to {
            Some(to) => LocalRoot::open(to)?,
            None => LocalRoot::create(local_root)?,
        };
        let opts = RestoreOptions {
            in_place: c.to.is_none(),
            computer: t.computer.clone(),
            heads,
            transfers: t.config.transfers,
        };
        let progress = bar(total);
        let stats =
            restore::restore(t.remote.clone(), items, &root, &opts, progress.clone()).await?;
        progress.0.finish_and_clear();
        total_files += stats.files;
        failed += stats.failed.len();
        println!(
            "restored {} files and {} folders ({} bytes) into {}; {} already up to date",
            stats.files,
            stats.dirs,
            stats.bytes,
            c.to.as_ref()
                .map(|p| p.join(&own_name))
                .unwrap_or_else(|| local_root.join(place.rel.as_str()))
                .display(),
            stats.unchanged
        );
        for k in stats.kept_local {
            println!(
                "kept the local file that differed as {}",
                crate::output::escape_path(&k)
            );
        }
        report_failures(&stats.failed);
    }
    let _ = total_files;
    if failed > 0 {
        bail!("{failed} paths could not be restored (listed above)");
    }
    Ok(())
}

#[derive(Args)]
pub struct DownloadCmd {
    task: String,
    path: PathBuf,
    /// The version number (see `cairn versions`).
    #[arg(long)]
    version: i64,
    /// The file to write.
    #[arg(long)]
    to: PathBuf,
}

pub async fn download(c: DownloadCmd) -> Result<()> {
    let t = open_task(&c.task)?;
    let place = places(&t.config, Some(&c.path))?.remove(0);
    let versions = t.remote.versions(&place.remote).await?;
    let v = versions
        .into_iter()
        .find(|v| v.seq == Seq(c.version))
        .with_context(|| {
            format!(
                "{} has no version {}; see `cairn versions`",
                c.path.display(),
                c.version
            )
        })?;
    if v.entry.kind != EntryKind::File {
        bail!(
            "version {} of {} is a {}, not a file",
            c.version,
            c.path.display(),
            v.entry.kind.as_str()
        );
    }
    let to = normalize(&c.to)?;
    let parent = to.parent().unwrap_or(Path::new("/"));
    let name = to
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} does not name a file", to.display()))?;
    let root = LocalRoot::open(parent)?;
    let dest = RelPath::parse(name)?;
    let opts = RestoreOptions {
        in_place: false,
        computer: t.computer.clone(),
        heads: HashMap::new(),
        transfers: 1,
    };
    let progress = bar(v.entry.size);
    let stats = restore::restore(
        t.remote.clone(),
        vec![(v, dest)],
        &root,
        &opts,
        progress.clone(),
    )
    .await?;
    progress.0.finish_and_clear();
    for k in stats.kept_local {
        println!(
            "kept the existing file as {}",
            crate::output::escape_path(&k)
        );
    }
    report_failures(&stats.failed);
    if !stats.failed.is_empty() {
        bail!("{} could not be written", to.display());
    }
    println!("downloaded version {} to {}", c.version, to.display());
    Ok(())
}
