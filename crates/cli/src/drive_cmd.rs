//! `cairn drive add|remove|exclude|include` and `cairn task set`: drive tasks keep a local
//! folder in two-way (or download-only) sync with a folder on a cairn server.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cairn_engine::index::LocalIndex;
use cairn_engine::reconcile::{ConflictPolicy, Direction};
use cairn_model::filter::{normalize_ext, MAX_SIZE_LIMIT_MB};
use cairn_model::{Filter, RelPath};
use cairn_protocol::Access;
use clap::{Args, Subcommand, ValueEnum};

use crate::config::{host_name, Config, DriveConfig, Home, TaskConfig};

#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    TwoWay,
    DownloadOnly,
}

#[derive(Clone, Copy, ValueEnum)]
// The names are the flag's values (`--conflict keep-latest`).
#[allow(clippy::enum_variant_names)]
pub enum ConflictArg {
    KeepLatest,
    KeepServer,
    /// The local edit always stays; the remote's is kept as a version or a conflict copy
    /// (cloud tasks' default).
    KeepLocal,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RelinkArg {
    Merge,
    ServerWins,
}

impl From<ModeArg> for Direction {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::TwoWay => Direction::TwoWay,
            ModeArg::DownloadOnly => Direction::DownloadOnly,
        }
    }
}

impl From<ConflictArg> for ConflictPolicy {
    fn from(c: ConflictArg) -> Self {
        match c {
            ConflictArg::KeepLatest => ConflictPolicy::KeepLatest,
            ConflictArg::KeepServer => ConflictPolicy::KeepServer,
            ConflictArg::KeepLocal => ConflictPolicy::KeepLocal,
        }
    }
}

#[derive(Subcommand)]
pub enum DriveCmd {
    /// Add a drive task.
    Add(DriveAddCmd),
    /// Remove a drive task; files stay where they are, here and on the server.
    Remove { name: String },
    /// Stop syncing a sub-folder (selective sync); its local files are left alone.
    Exclude { name: String, subdir: PathBuf },
    /// Sync an excluded sub-folder again.
    Include { name: String, subdir: PathBuf },
}

#[derive(Args)]
pub struct DriveAddCmd {
    name: String,
    #[arg(long)]
    local: PathBuf,
    #[arg(long)]
    connection: String,
    /// The server folder, optionally with a sub-folder: FOLDER or FOLDER/SUB.
    #[arg(long)]
    folder: String,
    #[arg(long, value_enum, default_value = "two-way")]
    mode: ModeArg,
    #[arg(long, value_enum, default_value = "keep-latest")]
    conflict: ConflictArg,
    /// Keep a losing local copy as name_COMPUTER_YYYYMMDD_Conflict.ext.
    #[arg(long)]
    keep_conflict_copy: bool,
    /// Compare content hashes and permissions on every pass, not only size and mtime.
    #[arg(long)]
    consistency_check: bool,
    /// Largest file synced, in MB (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    max_size: u64,
    #[arg(long)]
    exclude_name: Vec<String>,
    #[arg(long)]
    exclude_ext: Vec<String>,
    /// Sub-folders (relative to the local folder) not synced.
    #[arg(long)]
    exclude_dir: Vec<PathBuf>,
    /// First pass over a folder that already holds files.
    #[arg(long, value_enum, default_value = "merge")]
    on_relink: RelinkArg,
    /// This computer's name in conflict-copy names.
    #[arg(long)]
    computer: Option<String>,
    #[arg(long, default_value_t = 3)]
    transfers: usize,
    /// Don't remove files: a file deleted on one side stays on the other.
    #[arg(long)]
    keep_deleted: bool,
}

/// Checks that `local` is a folder that no other task covers (nor contains).
pub fn check_local(config: &Config, local: &Path, except: Option<&str>) -> Result<PathBuf> {
    let abs = std::fs::canonicalize(local)
        .with_context(|| format!("local folder {}", local.display()))?;
    if !abs.is_dir() {
        bail!("{} is not a folder", local.display());
    }
    for (other, t) in &config.tasks {
        if Some(other.as_str()) == except {
            continue;
        }
        for theirs in &t.locals {
            if abs.starts_with(theirs) || theirs.starts_with(&abs) {
                bail!(
                    "{} is already synced by task {other} ({})",
                    abs.display(),
                    theirs.display()
                );
            }
        }
    }
    Ok(abs)
}

fn parse_sub(local: &Path, dir: &Path) -> Result<RelPath> {
    let rel = if dir.is_absolute() {
        dir.strip_prefix(local)
            .with_context(|| format!("{} is not inside {}", dir.display(), local.display()))?
    } else {
        dir
    };
    let text = rel
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", rel.display()))?;
    let p = RelPath::parse(text.trim_end_matches('/'))?;
    if p.is_root() {
        bail!("give a sub-folder, not the task's whole folder");
    }
    Ok(p)
}

pub async fn drive(cmd: DriveCmd) -> Result<()> {
    match cmd {
        DriveCmd::Add(a) => add(a).await,
        DriveCmd::Remove { name } => {
            let home = Home::locate()?;
            let mut config = home.load()?;
            match config.tasks.get(&name) {
                Some(t) if t.drive.is_some() => {}
                Some(_) => bail!("task {name} is not a drive task (see `cairn backup remove`)"),
                None => bail!("no task named {name}"),
            }
            config.tasks.remove(&name);
            home.save(&config)?;
            LocalIndex::open(&home.index_path())?.forget_task(&name)?;
            println!("removed drive task {name}; files stay where they are");
            Ok(())
        }
        DriveCmd::Exclude { name, subdir } => selective(&name, &subdir, true),
        DriveCmd::Include { name, subdir } => selective(&name, &subdir, false),
    }
}

fn selective(name: &str, subdir: &Path, exclude: bool) -> Result<()> {
    let home = Home::locate()?;
    let mut config = home.load()?;
    let task = config
        .tasks
        .get_mut(name)
        .with_context(|| format!("no task named {name}"))?;
    let sub = parse_sub(&task.locals[0], subdir)?;
    task.filter.excluded_dirs.retain(|d| d != &sub);
    if exclude {
        task.filter.excluded_dirs.push(sub.clone());
    }
    home.save(&config)?;
    println!(
        "{} {sub} in task {name}",
        if exclude { "excluded" } else { "included" }
    );
    Ok(())
}

async fn add(a: DriveAddCmd) -> Result<()> {
    crate::config::check_name("task", &a.name)?;
    let filter = crate::config::new_filter(a.max_size, &a.exclude_name, &a.exclude_ext)?;
    let home = Home::locate()?;
    let mut config = home.load()?;
    if config.tasks.contains_key(&a.name) {
        bail!("a task named {} exists already", a.name);
    }
    let local = check_local(&config, &a.local, None)?;
    let (folder, sub) = match a.folder.split_once('/') {
        Some((f, s)) => (f.to_string(), RelPath::parse(s.trim_matches('/'))?),
        None => (a.folder.clone(), RelPath::root()),
    };
    let conn = home.connection(&config, &a.connection)?;
    let folders = conn
        .folders()
        .await
        .with_context(|| format!("listing folders on {}", conn.url()))?;
    let Some(info) = folders.iter().find(|f| f.name == folder) else {
        bail!(
            "folder {folder} does not exist on {} or is not shared with you",
            conn.url()
        );
    };
    let mode: Direction = a.mode.into();
    if info.access == Access::Ro && mode == Direction::TwoWay {
        bail!(
            "folder {folder} on {} is read-only for you: only --mode download-only is possible",
            conn.url()
        );
    }
    let excluded_dirs = a
        .exclude_dir
        .iter()
        .map(|d| parse_sub(&local, d))
        .collect::<Result<Vec<_>>>()?;
    let task = TaskConfig {
        kind: "drive".into(),
        locals: vec![local.clone()],
        connection: a.connection.clone(),
        folder: folder.clone(),
        computer: a.computer.clone().unwrap_or_else(host_name),
        filter: Filter {
            excluded_dirs,
            ..filter
        },
        keep_deleted: a.keep_deleted,
        transfers: a.transfers.clamp(1, 64),
        drive: Some(DriveConfig {
            sub: sub.as_str().to_string(),
            mode,
            conflict: a.conflict.into(),
            keep_conflict_copy: a.keep_conflict_copy,
            consistency_check: a.consistency_check,
            read_only: info.access == Access::Ro,
            on_relink: match a.on_relink {
                RelinkArg::Merge => "merge".into(),
                RelinkArg::ServerWins => "server-wins".into(),
            },
        }),
        cloud: None,
    };
    config.tasks.insert(a.name.clone(), task);
    home.save(&config)?;
    println!(
        "added drive task {}: {} <-> {folder}/{sub}",
        a.name,
        local.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct TaskSetCmd {
    name: String,
    /// Replaces the local folders (repeat for several; a drive task has one). What was backed
    /// up from a folder no longer listed stays on the server.
    #[arg(long)]
    local: Option<Vec<PathBuf>>,
    /// Replaces the sub-folders (of a local folder) that are not synced or backed up; '' clears.
    #[arg(long)]
    exclude_dir: Option<Vec<String>>,
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    #[arg(long, value_enum)]
    conflict: Option<ConflictArg>,
    #[arg(long)]
    keep_conflict_copy: Option<bool>,
    #[arg(long)]
    consistency_check: Option<bool>,
    #[arg(long)]
    max_size: Option<u64>,
    /// Replaces the file-name rules; '' clears them.
    #[arg(long)]
    exclude_name: Option<Vec<String>>,
    /// Replaces the extension rules; '' clears them.
    #[arg(long)]
    exclude_ext: Option<Vec<String>>,
    #[arg(long)]
    keep_deleted: Option<bool>,
    #[arg(long)]
    transfers: Option<usize>,
    /// A cloud task's seconds between looks at the remote (1..86400).
    #[arg(long)]
    poll: Option<u64>,
    /// A cloud task's versions kept on the remote per file (0: none).
    #[arg(long)]
    keep_versions: Option<usize>,
    #[command(flatten)]
    cloud: crate::cloud_options::CloudSetArgs,
}

/// `cairn task set`: changes settings of any task.
pub async fn set(c: TaskSetCmd) -> Result<()> {
    let home = Home::locate()?;
    let mut config = home.load()?;
    let old_locals = config
        .tasks
        .get(&c.name)
        .with_context(|| format!("no task named {}", c.name))?
        .locals
        .clone();
    let provider_id = config
        .clouds
        .get(&config.tasks[&c.name].connection)
        .map(|conn| conn.provider.clone())
        .unwrap_or_default();
    let new_locals = match &c.local {
        Some(dirs) => Some(new_locals(&config, &c.name, dirs)?),
        None => None,
    };
    let task = config
        .tasks
        .get_mut(&c.name)
        .with_context(|| format!("no task named {}", c.name))?;
    if let Some(locals) = &new_locals {
        task.locals = locals.clone();
    }
    if task.kind == "cloud" {
        // A cloud task's options are checked as `cloud add` checks them.
        let provider = cairn_cloud::provider::Provider::from_id(&provider_id)?;
        let common = crate::cloud_options::CloudChange {
            direction: c.mode.map(Into::into),
            keep_deleted: c.keep_deleted,
            transfers: c.transfers,
            max_size_mb: c.max_size,
            exclude_names: c.exclude_name.clone(),
            exclude_exts: c.exclude_ext.clone(),
            exclude_dirs: c
                .exclude_dir
                .as_ref()
                .map(|d| d.iter().map(PathBuf::from).collect()),
            poll_secs: c.poll,
            keep_versions: c.keep_versions,
            ..Default::default()
        };
        let change = crate::cloud_options::CloudChange::from_set(common, &c.cloud);
        crate::cloud_options::apply(task, provider, &change)?;
    } else {
        let cloud_only = c.cloud.given();
        if let Some(first) = cloud_only.first() {
            bail!("task {}: {first} is for cloud tasks", c.name);
        }
        set_common(task, &c)?;
    }
    let drive_only = c.mode.is_some()
        || c.conflict.is_some()
        || c.keep_conflict_copy.is_some()
        || c.consistency_check.is_some();
    match task.drive.as_mut() {
        Some(d) => {
            if let Some(m) = c.mode {
                d.mode = m.into();
            }
            if let Some(p) = c.conflict {
                d.conflict = p.into();
            }
            if let Some(k) = c.keep_conflict_copy {
                d.keep_conflict_copy = k;
            }
            if let Some(k) = c.consistency_check {
                d.consistency_check = k;
            }
        }
        None if drive_only => bail!(
            "task {} is a backup task: --mode, --conflict and the like are for drive tasks",
            c.name
        ),
        None => {}
    }
    // A server folder may have become read-only; a cloud path has no such access rule.
    let on_server = task.kind != "cloud";
    if on_server
        && task
            .drive
            .as_ref()
            .is_some_and(|d| d.mode == Direction::TwoWay)
    {
        let conn = home.connection(&config, &config.tasks[&c.name].connection)?;
        let folder = config.tasks[&c.name].folder.clone();
        let folders = conn.folders().await?;
        if folders
            .iter()
            .any(|f| f.name == folder && f.access == Access::Ro)
        {
            bail!("folder {folder} is read-only for you: only --mode download-only is possible");
        }
    }
    let changed_locals = new_locals.filter(|l| *l != old_locals);
    match &changed_locals {
        Some(locals) => save_moved(&home, &config, &c.name, &old_locals, locals)?,
        None => home.save(&config)?,
    }
    println!("updated task {}", c.name);
    if let Some(locals) = &changed_locals {
        let task = &config.tasks[&c.name];
        for (i, l) in locals.iter().enumerate() {
            println!(
                "  {} -> {}/{}",
                l.display(),
                task.folder,
                task.remote_prefix(i)?
            );
        }
        for gone in old_locals.iter().filter(|o| !locals.contains(o)) {
            println!(
                "  {} is no longer synced; what the server has of it stays there",
                gone.display()
            );
        }
    }
    Ok(())
}

/// `task set`'s filter and transfer options for a backup or drive task.
fn set_common(task: &mut TaskConfig, c: &TaskSetCmd) -> Result<()> {
    if let Some(dirs) = &c.exclude_dir {
        task.filter.excluded_dirs = dirs
            .iter()
            .filter(|d| !d.is_empty())
            .map(|d| excluded_dir(&task.locals, Path::new(d)))
            .collect::<Result<Vec<_>>>()?;
    }
    if let Some(m) = c.max_size {
        if m > MAX_SIZE_LIMIT_MB {
            bail!("--max-size {m} is over the limit of {MAX_SIZE_LIMIT_MB} MB (0 means unlimited)");
        }
        task.filter.max_size = m * 1024 * 1024;
    }
    if let Some(n) = c.exclude_name.clone() {
        task.filter.names = n.into_iter().filter(|n| !n.is_empty()).collect();
    }
    if let Some(e) = c.exclude_ext.clone() {
        task.filter.exts = e
            .iter()
            .map(|e| normalize_ext(e))
            .filter(|e| !e.is_empty())
            .collect();
    }
    if let Some(t) = c.transfers {
        task.transfers = t.clamp(1, 64);
    }
    if let Some(k) = c.keep_deleted {
        task.keep_deleted = k;
    }
    if c.poll.is_some() || c.keep_versions.is_some() {
        bail!("--poll and --keep-versions are for cloud tasks");
    }
    Ok(())
}

/// Saves a task whose local folders changed from `old` to `new`. A folder keeps its base in the
/// index only if it stays (renumbered); any other base is forgotten, so the next pass uploads
/// (or re-hashes) and never deletes on the server what another folder put there.
fn save_moved(
    home: &Home,
    config: &Config,
    name: &str,
    old: &[PathBuf],
    new: &[PathBuf],
) -> Result<()> {
    let kept: Vec<(u32, u32)> = old
        .iter()
        .enumerate()
        .filter_map(|(o, path)| {
            let n = new.iter().position(|l| l == path)?;
            Some((o as u32, n as u32))
        })
        .collect();
    let mut index = LocalIndex::open(&home.index_path())?;
    index.remap_roots(name, &kept)?;
    if let Err(e) = home.save(config) {
        // The index now numbers the new folders: forgetting it is the safe way back.
        index.forget_task(name)?;
        return Err(e);
    }
    Ok(())
}

/// Checks the folders given to `task set --local`: each exists, none overlaps another (of
/// this task or another task), a drive task has one, and no two land in the same place.
fn new_locals(config: &Config, name: &str, dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let task = &config.tasks[name];
    if task.drive.is_some() && dirs.len() != 1 {
        bail!("a drive task syncs exactly one local folder: give --local once");
    }
    let mut locals: Vec<PathBuf> = Vec::new();
    for d in dirs {
        let abs = check_local(config, d, Some(name))?;
        if let Some(other) = locals
            .iter()
            .find(|l| abs.starts_with(l) || l.starts_with(&abs))
        {
            bail!("{} overlaps {}", abs.display(), other.display());
        }
        locals.push(abs);
    }
    let mut probe = task.clone();
    probe.locals = locals.clone();
    let mut prefixes = Vec::new();
    for i in 0..locals.len() {
        let p = probe.remote_prefix(i)?;
        if prefixes.contains(&p) {
            bail!("two local folders would both land in {p}: give them different names");
        }
        prefixes.push(p);
    }
    Ok(locals)
}

/// An excluded sub-folder given to `task set --exclude-dir`: relative to every local folder,
/// or absolute inside one of them.
fn excluded_dir(locals: &[PathBuf], dir: &Path) -> Result<RelPath> {
    if dir.is_absolute() {
        if let Some(root) = locals.iter().find(|l| dir.starts_with(l)) {
            return parse_sub(root, dir);
        }
        bail!("{} is not inside the task's local folders", dir.display());
    }
    parse_sub(Path::new(""), dir)
}
