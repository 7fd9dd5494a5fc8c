//! What the user asks about tasks: `cairn status` (every task, one task, or one path inside a
//! task's folder) and `cairn log`, as text or as JSON (`--json`, fields in docs/json.md).
//!
//! Task states come from the running agent over its socket ([`TaskStatus`], filled in by
//! `agent`); a path's state comes from the index and the task's rules, without the agent.
//! The states are an enum, not text, so that "up to date" is said only when the agent knows
//! there is nothing to do: pending changes, a pass in progress, a failed pass, a pause or a
//! wait for confirmation each have their own state.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use anyhow::{bail, Context, Result};
use cairn_engine::index::LocalIndex;
use cairn_engine::reconcile::Direction;
use cairn_model::{EntryKind, FilterDecision, RelPath};
use serde::{Deserialize, Serialize};

use crate::agent::{ask_agent, Request};
use crate::config::{Config, Home, TaskConfig};
use crate::output::{escape, escape_controls, escape_path};

/// Where a task stands, as the agent sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// No agent is running: nothing watches the task.
    #[default]
    NotRunning,
    /// Changes were seen (or the first pass has not run yet) and a pass is due.
    Pending,
    /// A pass is running.
    Running,
    /// The last pass succeeded and nothing changed since.
    UpToDate,
    /// The last pass failed (or some files failed); it is retried with backoff.
    Error,
    Paused,
    /// The last pass stopped before deleting; `resume --confirm-deletes` lets it through.
    WaitingForConfirmation,
    /// The task's schedule suspends it this hour.
    Suspended,
}

impl TaskState {
    fn text(self) -> &'static str {
        match self {
            TaskState::NotRunning => "not watched (agent not running)",
            TaskState::Pending => "changes pending",
            TaskState::Running => "syncing (a pass is running)",
            TaskState::UpToDate => "up to date",
            TaskState::Error => "error",
            TaskState::Paused => "paused",
            TaskState::WaitingForConfirmation => "waiting for confirmation of deletions",
            TaskState::Suspended => "suspended by its schedule",
        }
    }
}

/// What one task is doing, for `status`; the agent answers a map of these by task name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskStatus {
    pub state: TaskState,
    /// The summary of the last pass (or why it failed).
    pub last_result: Option<String>,
    /// When the last pass ended (RFC 3339, UTC).
    pub last_pass_at: Option<String>,
    /// Why the last pass failed, while the task is in [`TaskState::Error`].
    pub error: Option<String>,
    /// When the failed pass is tried again (RFC 3339, UTC), and in how many seconds.
    pub next_retry_at: Option<String>,
    pub next_retry_in_secs: Option<u64>,
    /// While the schedule suspends the task: when it runs again (local time).
    pub suspended_until: Option<String>,
    /// Files the last pass left alone by a rule or a limit of the remote: `PATH: reason`.
    pub not_synced: Vec<String>,
    pub uploading: Vec<String>,
    pub queued: u64,
    pub recent: VecDeque<String>,
}

/// One task in `status --json`.
#[derive(Serialize)]
struct TaskReport<'a> {
    name: &'a str,
    kind: &'static str,
    mode: Option<&'static str>,
    locals: Vec<String>,
    connection: &'a str,
    folder: &'a str,
    sub: Option<&'a str>,
    #[serde(flatten)]
    status: TaskStatus,
}

/// `cairn status [TASK|PATH] [--json]`.
pub async fn status(task: Option<&str>, json: bool) -> Result<()> {
    let home = Home::locate()?;
    let config = home.load()?;
    if let Some(t) = task {
        if !config.tasks.contains_key(t) {
            // Not a task: a file or folder inside one.
            return path_status(&home, &config, Path::new(t), json);
        }
    }
    let live: Option<BTreeMap<String, TaskStatus>> = ask_agent(&home, &Request::new("status"))
        .await
        .and_then(|v| serde_json::from_value(v).ok());
    let paused = home.state()?.paused;
    let tasks = config
        .tasks
        .iter()
        .filter(|(name, _)| task.is_none_or(|x| x == name.as_str()))
        .map(|(name, t)| {
            let mut s = match &live {
                Some(l) => l.get(name).cloned().unwrap_or(TaskStatus {
                    // Added a moment ago: the agent takes it up on its next turn.
                    state: TaskState::Pending,
                    ..TaskStatus::default()
                }),
                None => TaskStatus::default(),
            };
            // The pause is the user's word, agent or not.
            if paused.contains(name) {
                s.state = TaskState::Paused;
            }
            report(name, t, s)
        })
        .collect::<Vec<_>>();
    if json {
        let doc = serde_json::json!({ "agent_running": live.is_some(), "tasks": tasks });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    if live.is_none() {
        println!("agent: not running (start it with `cairn agent`)");
    }
    for t in &tasks {
        print_task(t);
    }
    Ok(())
}

fn report<'a>(name: &'a str, t: &'a TaskConfig, status: TaskStatus) -> TaskReport<'a> {
    TaskReport {
        name,
        kind: match (t.kind.as_str(), t.drive.is_some()) {
            ("cloud", _) => "cloud",
            (_, true) => "drive",
            _ => "backup",
        },
        mode: t.drive.as_ref().map(|d| d.mode.as_str()),
        locals: t.locals.iter().map(|l| l.display().to_string()).collect(),
        connection: &t.connection,
        folder: &t.folder,
        sub: t.drive.as_ref().map(|d| d.sub.as_str()),
        status,
    }
}

fn print_task(t: &TaskReport<'_>) {
    let s = &t.status;
    let state = match (s.state, s.next_retry_in_secs) {
        (TaskState::Error, Some(secs)) => format!("error, next retry in {secs} s"),
        (TaskState::Suspended, _) => match &s.suspended_until {
            Some(until) => format!("suspended until {until}"),
            None => s.state.text().to_string(),
        },
        (TaskState::WaitingForConfirmation, _) => format!(
            "{} (`cairn resume {} --confirm-deletes` lets them through)",
            s.state.text(),
            t.name
        ),
        (state, _) => state.text().to_string(),
    };
    match (t.mode, t.sub) {
        (Some(mode), _) if t.kind == "cloud" => println!(
            "{}: cloud ({mode}) {} <-> {}:{} — {state}",
            t.name,
            escape(&t.locals.join(", ")),
            t.connection,
            escape(t.folder),
        ),
        (Some(mode), Some(sub)) => println!(
            "{}: drive ({mode}) {} <-> {}/{}/{sub} — {state}",
            t.name,
            escape(&t.locals.join(", ")),
            t.connection,
            t.folder,
        ),
        _ => println!(
            "{}: {} backup to {}/{} — {state}",
            t.name,
            t.locals.len(),
            t.connection,
            t.folder
        ),
    }
    if let Some(e) = &s.error {
        println!("  error: {}", escape(e));
    }
    if let Some(r) = s.last_result.as_ref().filter(|_| s.error.is_none()) {
        println!("  last pass: {}", escape(r));
    }
    for n in &s.not_synced {
        println!("  not synced: {}", escape(n));
    }
    for u in &s.uploading {
        println!("  uploading {}", escape(u));
    }
    if s.queued > 0 {
        println!("  queued: {} files", s.queued);
    }
    for r in &s.recent {
        println!("  {}", escape(r));
    }
}

/// What `status PATH` says about one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum PathState {
    Synced,
    SyncedReadOnly,
    NewHere,
    ChangedHere,
    DeletedHere,
    /// Download-only task: a local file the server never had.
    LocalOnly,
    /// Download-only task: a local edit the task never uploads.
    LocalEditKept,
    /// A two-way task whose folder became read-only for the user: a local change kept here,
    /// not sent (the last pass went on download-only).
    ReadOnly,
    /// Left out by a rule, its own or a folder's above it.
    FilteredOut,
    /// A socket, FIFO or device: never synced.
    SkippedSpecialFile,
    ConflictCopy,
}

/// `cairn status PATH`: synced, syncing, filtered out (by which rule, also inside an ignored
/// folder), skipped as a special file, a kept local edit, read-only (also a local change a
/// two-way task keeps since its folder became read-only), or a conflict copy.
fn path_status(home: &Home, config: &Config, path: &Path, json: bool) -> Result<()> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let found = config.tasks.iter().find_map(|(name, t)| {
        t.locals.iter().enumerate().find_map(|(i, root)| {
            abs.strip_prefix(root)
                .ok()
                .map(|rest| (name, t, i, rest.to_path_buf()))
        })
    });
    let Some((name, task, root_no, rest)) = found else {
        bail!(
            "{} is neither a task nor inside a task's folder",
            path.display()
        );
    };
    let text = rest
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", rest.display()))?;
    let rel = RelPath::parse(text)?;
    let md = std::fs::symlink_metadata(&abs).ok();
    let (state, detail) = match classify(home, name, task, root_no, &rel, md.as_ref())? {
        Some(found) => found,
        None => bail!(
            "{} does not exist and is not known to task {name}",
            abs.display()
        ),
    };
    if json {
        let doc = serde_json::json!({
            "path": abs.display().to_string(),
            "task": name,
            "state": state,
            "detail": detail,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{}: {detail} [task {name}]", escape_path(&abs));
    }
    Ok(())
}

/// The state of `rel` in task `name`, with the sentence that says it; `None` when the path
/// neither exists nor is known to the task.
fn classify(
    home: &Home,
    name: &str,
    task: &TaskConfig,
    root_no: usize,
    rel: &RelPath,
    md: Option<&std::fs::Metadata>,
) -> Result<Option<(PathState, String)>> {
    let kind = match md {
        Some(m) if m.is_dir() => EntryKind::Dir,
        Some(m) if m.file_type().is_symlink() => EntryKind::Symlink,
        _ => EntryKind::File,
    };
    if let Some(what) = md.and_then(special_kind) {
        return Ok(Some((
            PathState::SkippedSpecialFile,
            format!("skipped: special file ({what}), never synced"),
        )));
    }
    if let Some(why) = filtered_out(task, rel, kind, md.map_or(0, |m| m.len())) {
        return Ok(Some((
            PathState::FilteredOut,
            format!("filtered out ({why})"),
        )));
    }
    if rel.name().contains("_Conflict") {
        return Ok(Some((
            PathState::ConflictCopy,
            "conflict copy (a losing edit kept beside the file)".into(),
        )));
    }
    let index = LocalIndex::open(&home.index_path())?;
    let row = index.row(name, root_no as u32, rel)?;
    let drive = task.drive.as_ref();
    let download_only = drive.is_some_and(|d| d.mode == Direction::DownloadOnly);
    // A two-way task whose last pass went on download-only: the folder is read-only for the
    // user now, whatever it was when the task was added.
    let read_only_now = drive.is_some() && home.state()?.read_only.iter().any(|t| t == name);
    let read_only = read_only_now || drive.is_some_and(|d| d.read_only);
    let found = match (md, &row) {
        (None, None) => return Ok(None),
        // A one-way download keeps a local deletion too (the planner's `kept_here`).
        (None, Some(_)) if read_only_now => (
            PathState::ReadOnly,
            "read-only (deleted here, not sent: the folder is read-only for you)".into(),
        ),
        (None, Some(_)) if download_only => (
            PathState::LocalEditKept,
            "local deletion kept (download-only task: not sent; a newer server version comes \
             back)"
                .into(),
        ),
        (None, Some(_)) => (PathState::DeletedHere, "syncing (deleted here)".into()),
        (Some(_), None) if read_only_now => (
            PathState::ReadOnly,
            "read-only (new here, not sent: the folder is read-only for you)".into(),
        ),
        (Some(_), None) if download_only => (
            PathState::LocalOnly,
            "local only (download-only task: never uploaded)".into(),
        ),
        (Some(_), None) => (PathState::NewHere, "syncing (new here)".into()),
        (Some(m), Some(r)) => {
            let here = cairn_engine::scanner::LocalEntry::from_metadata(rel.clone(), kind, m, None);
            let same = kind == EntryKind::Dir
                || cairn_engine::replica::stat_version(
                    here.size,
                    here.mtime_ns,
                    here.ctime_ns,
                    here.inode,
                    here.mode,
                ) == r.left;
            match (same, read_only) {
                (true, true) => (PathState::SyncedReadOnly, "synced, read-only".into()),
                (true, false) => (PathState::Synced, "synced".into()),
                (false, _) if read_only_now => (
                    PathState::ReadOnly,
                    "read-only (changed here, not sent: the folder is read-only for you)".into(),
                ),
                (false, _) if download_only => (
                    PathState::LocalEditKept,
                    "local edit kept (download-only task: not uploaded; a newer server version \
                     keeps it as a conflict copy)"
                        .into(),
                ),
                (false, _) => (PathState::ChangedHere, "syncing (changed here)".into()),
            }
        }
    };
    Ok(Some(found))
}

/// The rule that leaves `rel` out: its own, or that of a folder above it (the scanner never
/// enters an ignored folder, so nothing below one is synced either).
fn filtered_out(task: &TaskConfig, rel: &RelPath, kind: EntryKind, size: u64) -> Option<String> {
    let filter = task.pass_filter();
    let mut above = Vec::new();
    let mut dir = rel.parent();
    while let Some(d) = dir.filter(|d| !d.is_root()) {
        dir = d.parent();
        above.push(d);
    }
    for d in above.iter().rev() {
        if let FilterDecision::Exclude(rule) = filter.check(d, EntryKind::Dir, 0) {
            return Some(format!("inside the ignored folder {d}: {rule}"));
        }
    }
    match filter.check(rel, kind, size) {
        FilterDecision::Exclude(rule) => Some(rule),
        FilterDecision::Include => None,
    }
}

/// What a special file is, or `None` for files, folders and links.
fn special_kind(md: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let ft = md.file_type();
    if ft.is_socket() {
        Some("socket")
    } else if ft.is_fifo() {
        Some("FIFO")
    } else if ft.is_block_device() {
        Some("block device")
    } else if ft.is_char_device() {
        Some("character device")
    } else {
        None
    }
}

/// One line of a task's log in `log --json`.
#[derive(Serialize)]
struct LogEntry<'a> {
    #[serde(skip)]
    line: &'a str,
    task: &'a str,
    time: &'a str,
    message: std::borrow::Cow<'a, str>,
}

/// `cairn log`: the end of a task's log; with `downloads`, only the files it downloaded.
pub fn log(task: Option<&str>, lines: usize, downloads: bool, json: bool) -> Result<()> {
    let home = Home::locate()?;
    let config = home.load()?;
    let names: Vec<String> = match task {
        Some(t) if !config.tasks.contains_key(t) => bail!("no task named {t}"),
        Some(t) => vec![t.to_string()],
        None => config.tasks.keys().cloned().collect(),
    };
    let mut texts = Vec::new();
    for name in names {
        let text = crate::task_log::read_all(&home.log_path(&name))?;
        texts.push((name, text));
    }
    let mut entries = Vec::new();
    for (name, text) in &texts {
        let all: Vec<&str> = text
            .lines()
            .filter(|l| !downloads || l.contains(" downloaded "))
            .collect();
        for l in &all[all.len().saturating_sub(lines)..] {
            let (time, message) = l.split_once(' ').unwrap_or(("", l));
            entries.push(LogEntry {
                line: l,
                task: name,
                time,
                message: escape_controls(message),
            });
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    for e in &entries {
        println!("[{}] {}", e.task, escape_controls(e.line));
    }
    Ok(())
}
