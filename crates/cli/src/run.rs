//! One pass of a task (`run_task`, used by `cairn run --once` and by the agent), the progress
//! sink that logs it, and `cairn run --once` itself with its summary as text or JSON.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cairn_client::replica::ServerReplica;
use cairn_client::Connection;
use cairn_engine::backup::{self, BackupOptions, BackupRoot, BackupStats};
use cairn_engine::drive::{self, DriveOptions, DriveStats};
use cairn_engine::executor::Planned;
use cairn_engine::index::LocalIndex;
use cairn_engine::reconcile::ConflictPolicy;
use cairn_engine::replica::Replica;
use cairn_engine::{Progress, ProgressEvent};
use cairn_model::RelPath;
use clap::Args;
use serde::Serialize;

use crate::agent::{ask_agent, Request};
use crate::config::{Config, Home, TaskConfig};
use crate::output::escape;
use crate::status::TaskStatus;
use crate::task_log::{Rotation, TaskLog};

#[derive(Args)]
pub struct RunCmd {
    /// Tasks to run (default: all).
    tasks: Vec<String>,
    /// Run to completion and exit (the only mode of `run`; the agent runs continuously).
    #[arg(long)]
    once: bool,
    /// Let deletions through although a local folder became empty (it was emptied on purpose).
    #[arg(long)]
    confirm_deletes: bool,
    /// Show what each task would upload, download, delete, keep as a conflict or skip, and
    /// why; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the summary as JSON (fields in docs/json.md).
    #[arg(long)]
    json: bool,
    /// Fail at once when another process (the agent) is running a pass of a task, instead of
    /// waiting up to 30 minutes for that pass to end.
    #[arg(long)]
    no_wait: bool,
}

/// The live status of every task, shared by the agent's loop, its socket and the progress
/// sinks of running passes.
pub type SharedStatus = Arc<Mutex<BTreeMap<String, TaskStatus>>>;

/// Progress sink of one task: appends to the task's log, keeps recent activity, and (for
/// `run`) echoes problems to stderr.
pub struct TaskProgress {
    task: String,
    log: Mutex<Option<TaskLog>>,
    status: SharedStatus,
    echo: bool,
}

impl TaskProgress {
    pub fn new(
        home: &Home,
        task: &str,
        status: SharedStatus,
        echo: bool,
        rotation: Rotation,
    ) -> Self {
        // A log that cannot be opened does not stop the pass: its status still tells.
        let log = TaskLog::open(&home.log_path(task), rotation).ok();
        TaskProgress {
            task: task.to_string(),
            log: Mutex::new(log),
            status,
            echo,
        }
    }

    /// Appends a line to the task's log; names in it are escaped, so a file name can never
    /// forge a line of the log.
    pub fn line(&self, text: &str) {
        let stamp = cairn_model::timespec::format_instant(now_ns());
        if let Some(log) = self.log.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = log.append(&format!("{stamp} {}", escape(text)));
        }
    }

    fn with_status(&self, f: impl FnOnce(&mut TaskStatus)) {
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(self.task.clone()).or_default());
    }
}

/// Paths `status` names as not synced by one pass; the log keeps every one.
const MAX_NOT_SYNCED: usize = 100;

fn remember(recent: &mut VecDeque<String>, what: String) {
    recent.push_front(what);
    recent.truncate(20);
}

impl Progress for TaskProgress {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Queued { .. } => self.with_status(|s| s.queued += 1),
            ProgressEvent::Uploading { path } => self.with_status(|s| {
                s.queued = s.queued.saturating_sub(1);
                s.uploading.push(path.to_string());
            }),
            ProgressEvent::Uploaded { path, size } => {
                self.line(&format!("uploaded {path} ({size} bytes)"));
                self.with_status(|s| {
                    s.uploading.retain(|p| p != path.as_str());
                    remember(&mut s.recent, format!("uploaded {path}"));
                });
            }
            ProgressEvent::Deleted { path } => {
                self.line(&format!("deleted on the server: {path}"));
                self.with_status(|s| remember(&mut s.recent, format!("deleted {path}")));
            }
            ProgressEvent::Skipped { path, reason } => {
                self.line(&format!("skipped {path}: {reason}"));
                self.with_status(|s| {
                    if s.not_synced.len() < MAX_NOT_SYNCED {
                        s.not_synced.push(format!("{path}: {reason}"));
                    }
                });
                if self.echo {
                    eprintln!("skipped {}: {}", escape(&path), escape(&reason));
                }
            }
            ProgressEvent::Failed { path, reason } => {
                self.line(&format!("failed {path}: {reason}"));
                self.with_status(|s| s.uploading.retain(|p| p != &path));
                if self.echo {
                    eprintln!("failed {}: {}", escape(&path), escape(&reason));
                }
            }
            ProgressEvent::Downloaded { path, size } => {
                self.line(&format!("downloaded {path} ({size} bytes)"));
                self.with_status(|s| remember(&mut s.recent, format!("downloaded {path}")));
            }
            ProgressEvent::Restored { path, size } => {
                self.line(&format!("restored {path} ({size} bytes)"))
            }
            ProgressEvent::Scanned { .. } | ProgressEvent::Transferred { .. } => {}
        }
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// What one pass of a task came to.
pub struct PassOutcome {
    pub summary: String,
    /// The counts of the summary by name, for `--json`.
    pub counts: serde_json::Value,
    pub failed: u64,
    /// The pass stopped before deleting and waits for `resume --confirm-deletes`.
    pub waiting: Option<String>,
    /// A dry run's steps, for `--json`.
    pub planned: Option<serde_json::Value>,
}

/// A dry run's report: one line per step, then a count.
fn dry_run_report(name: &str, planned: &[Planned]) -> String {
    let mut out = String::new();
    for p in planned {
        out.push_str(&format!(
            "would {}: {} ({})\n",
            p.what,
            escape(&p.path),
            escape(&p.why)
        ));
    }
    out.push_str(&format!(
        "{name}: dry run, {} steps; nothing was changed",
        planned.len()
    ));
    out
}

/// A dry run's steps as JSON: what, on which path, and why.
fn dry_run_steps(planned: &[Planned]) -> serde_json::Value {
    planned
        .iter()
        .map(|p| serde_json::json!({ "action": p.what, "path": p.path, "why": p.why }))
        .collect()
}

/// Turns a finished pass into its outcome; a dry run reports its steps instead of counts.
fn outcome(name: &str, dry_run: bool, mut o: PassOutcome, planned: &[Planned]) -> PassOutcome {
    if dry_run {
        o.summary = dry_run_report(name, planned);
        o.planned = Some(dry_run_steps(planned));
    }
    o
}

fn backup_outcome(name: &str, s: &BackupStats) -> PassOutcome {
    PassOutcome {
        summary: format!(
            "backup {name}: {} uploaded, {} folders/links, {} deleted, {} unchanged, {} failed, {} reported; sent {} bytes in {} chunks",
            s.files_uploaded, s.dirs_recorded, s.deleted, s.unchanged, s.failed, s.reported, s.bytes_sent, s.chunks_sent
        ),
        counts: serde_json::json!({
            "uploaded": s.files_uploaded,
            "folders_and_links": s.dirs_recorded,
            "deleted": s.deleted,
            "unchanged": s.unchanged,
            "failed": s.failed,
            "reported": s.reported,
            "bytes_sent": s.bytes_sent,
            "chunks_sent": s.chunks_sent,
        }),
        failed: s.failed,
        waiting: None,
        planned: None,
    }
}

fn drive_outcome(name: &str, s: &DriveStats) -> PassOutcome {
    PassOutcome {
        summary: format!(
            "drive {name}: {} uploaded, {} downloaded, {} moved, {} deleted here, {} deleted on the server, {} conflicts, {} failed{}; sent {} bytes",
            s.uploaded, s.downloaded, s.moved, s.deleted_local, s.deleted_remote, s.conflicts, s.failed,
            not_sent(s.reported), s.bytes_sent
        ),
        counts: serde_json::json!({
            "uploaded": s.uploaded,
            "downloaded": s.downloaded,
            "moved": s.moved,
            "deleted_here": s.deleted_local,
            "deleted_on_server": s.deleted_remote,
            "conflicts": s.conflicts,
            "failed": s.failed,
            "reported": s.reported,
            "bytes_sent": s.bytes_sent,
        }),
        failed: s.failed,
        waiting: s.waiting_for_confirmation.clone(),
        planned: None,
    }
}

/// A rate limit that held transfers back says so in the summary (and `limit_waits` in the
/// JSON counts): the sign that a task's `--up-limit`/`--down-limit` was at work.
fn limit_waits(o: &mut PassOutcome, waits: u64) {
    if waits > 0 {
        o.summary
            .push_str(&format!("; the rate limit held {waits} transfers back"));
    }
    o.counts["limit_waits"] = serde_json::json!(waits);
}

/// The summary's word on files a rule or the remote's limits kept from syncing (named with
/// their reason above the summary, in the log and in `status`); nothing when there are none.
fn not_sent(reported: u64) -> String {
    if reported == 0 {
        String::new()
    } else {
        format!(", {reported} not synced (named above and in `cairn log`)")
    }
}

/// How one pass runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassOptions {
    /// Let deletions past the guard through (also taken from, and cleared in, the state file).
    pub confirm_deletes: bool,
    /// Only plan and report.
    pub dry_run: bool,
    /// No one is at a keyboard (the agent): a secret to be typed at each run fails the pass.
    pub unattended: bool,
    /// Wait for a pass of the task another process runs to end (a one-off `cairn run`);
    /// otherwise give up at once (the agent, which tries again later).
    pub wait_for_other_pass: bool,
}

/// How long a one-off run waits for another process's pass of its task.
const WAIT_FOR_OTHER_PASS: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// One pass of one task over `conn`. `cache` is what a drive task last saw of its server
/// folder (the agent keeps it between passes).
pub async fn run_task(
    home: &Home,
    config: &Config,
    conn: Option<Arc<Connection>>,
    cache: &mut Option<drive::RemoteCache>,
    name: &str,
    pass: PassOptions,
    progress: Arc<dyn Progress>,
) -> Result<PassOutcome> {
    let PassOptions {
        confirm_deletes,
        dry_run,
        unattended,
        wait_for_other_pass,
    } = pass;
    let task = config
        .tasks
        .get(name)
        .with_context(|| format!("no task named {name}"))?;
    let _lock = if wait_for_other_pass {
        crate::task_lock::TaskLock::wait(home, name, WAIT_FOR_OTHER_PASS).await?
    } else {
        crate::task_lock::TaskLock::take(home, name)?
    };
    let confirmed = confirm_deletes || home.state()?.confirmed.iter().any(|t| t == name);
    // Whether this pass went on download-only because the folder became read-only; `None`
    // when the pass cannot tell (a backup, a dry run).
    let mut read_only = None;
    let mut index = LocalIndex::open(&home.index_path())?;
    let server = |conn: Option<Arc<Connection>>| {
        conn.map(|c| Arc::new(c.remote(&task.folder)))
            .with_context(|| format!("task {name}: no session with its server"))
    };
    let outcome = match &task.drive {
        None => {
            let remote = server(conn)?;
            let roots = (0..task.locals.len())
                .map(|i| {
                    Ok(BackupRoot {
                        local: task.locals[i].clone(),
                        remote_prefix: task.remote_prefix(i)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let opts = BackupOptions {
                filter: task.filter.clone(),
                keep_deleted: task.keep_deleted,
                transfers: task.transfers,
                confirm_deletes: confirmed,
                dry_run,
            };
            let remote_at = |prefix: &RelPath| -> Arc<dyn Replica> {
                Arc::new(ServerReplica::new(remote.clone(), prefix.clone()))
            };
            let stats = backup::run(name, &roots, &remote_at, &mut index, &opts, progress).await?;
            outcome(name, dry_run, backup_outcome(name, &stats), &stats.planned)
        }
        Some(d) => {
            let first_pass = index.is_empty(name, 0)?;
            let policy = if first_pass && d.on_relink == "server-wins" {
                ConflictPolicy::KeepServer
            } else {
                d.conflict
            };
            let opts = DriveOptions {
                direction: d.mode,
                policy,
                keep_conflict_copy: d.keep_conflict_copy,
                consistency_check: d.consistency_check,
                filter: task.pass_filter(),
                transfers: task.transfers,
                computer: task.computer.clone(),
                confirm_deletes: confirmed,
                keep_deleted: task.keep_deleted,
                dry_run,
            };
            let replica: Box<dyn Replica> = if task.kind == "cloud" {
                crate::cloud_cmd::task_replica(home, config, name, task, unattended).await?
            } else {
                Box::new(ServerReplica::new(server(conn)?, task.remote_prefix(0)?))
            };
            let stats = drive::run(
                name,
                &task.locals[0],
                replica.as_ref(),
                &mut index,
                &opts,
                cache,
                progress,
            )
            .await?;
            if !dry_run {
                read_only = Some(stats.read_only_now);
            }
            let mut done = drive_outcome(name, &stats);
            limit_waits(&mut done, replica.traffic().limit_waits);
            outcome(name, dry_run, done, &stats.planned)
        }
    };
    // Read again: `pause` and `resume` may have written the state file while the pass ran.
    let mut state = home.state()?;
    let mut changed = false;
    let listed = |list: &[String]| list.iter().any(|t| t == name);
    if !dry_run && confirmed && outcome.waiting.is_none() && listed(&state.confirmed) {
        state.confirmed.retain(|t| t != name);
        changed = true;
    }
    if let Some(now) = read_only.filter(|now| *now != listed(&state.read_only)) {
        state.read_only.retain(|t| t != name);
        if now {
            state.read_only.push(name.to_string());
        }
        changed = true;
    }
    if changed {
        home.save_state(&state)?;
    }
    Ok(outcome)
}

/// The session for connection `name`, made once per run: logging in costs an Argon2
/// verification on the server.
fn session(
    home: &Home,
    config: &Config,
    conns: &mut HashMap<String, Arc<Connection>>,
    name: &str,
) -> Result<Arc<Connection>> {
    if let Some(c) = conns.get(name) {
        return Ok(c.clone());
    }
    let c = home.connection(config, name)?;
    conns.insert(name.to_string(), c.clone());
    Ok(c)
}

/// The session a task's passes need: none for a cloud task.
fn server_session(
    home: &Home,
    config: &Config,
    conns: &mut HashMap<String, Arc<Connection>>,
    task: &TaskConfig,
) -> Result<Option<Arc<Connection>>> {
    if task.kind == "cloud" {
        return Ok(None);
    }
    session(home, config, conns, &task.connection).map(Some)
}

/// A random id for one agent (or one run), so the server can tell two processes apart.
pub fn random_instance() -> String {
    cairn_server::auth::random_bytes(16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refuses to run from a configuration folder copied from a computer whose agent is running,
/// as that agent refuses to start: both would write as one device. The check does not make
/// this run the live agent, so the computer's own agent may start right after it; with this
/// computer's own agent running the question does not arise.
async fn refuse_copied_configuration(
    home: &Home,
    config: &Config,
    names: &[String],
    conns: &mut HashMap<String, Arc<Connection>>,
) -> Result<()> {
    if ask_agent(home, &Request::new("status")).await.is_some() {
        return Ok(());
    }
    let instance = random_instance();
    let mut asked = Vec::new();
    for task in names.iter().filter_map(|n| config.tasks.get(n)) {
        if task.kind == "cloud" || asked.contains(&task.connection) {
            continue;
        }
        asked.push(task.connection.clone());
        // A connection that cannot be made fails its tasks' passes, with the reason.
        let Ok(conn) = session(home, config, conns, &task.connection) else {
            continue;
        };
        match conn.probe_agent(&instance).await {
            Err(e) if e.status() == Some(409) => bail!("{e}"),
            _ => {}
        }
    }
    Ok(())
}

/// One task's result in `run --json`.
#[derive(Serialize)]
struct RunReport {
    task: String,
    /// "ok", "failed_files", "waiting_for_confirmation" or "error".
    outcome: &'static str,
    seconds: f64,
    summary: Option<String>,
    counts: Option<serde_json::Value>,
    planned: Option<serde_json::Value>,
    error: Option<String>,
}

pub async fn run_once(c: RunCmd) -> Result<()> {
    let _ = c.once;
    let home = Home::locate()?;
    let config = home.load()?;
    let names: Vec<String> = if c.tasks.is_empty() {
        config.tasks.keys().cloned().collect()
    } else {
        c.tasks.clone()
    };
    if names.is_empty() {
        bail!("no tasks configured; add one with `cairn backup add`");
    }
    let status = SharedStatus::default();
    let mut failed = Vec::new();
    let mut reports = Vec::new();
    let mut conns = HashMap::new();
    refuse_copied_configuration(&home, &config, &names, &mut conns).await?;
    for name in &names {
        let progress = Arc::new(TaskProgress::new(
            &home,
            name,
            status.clone(),
            true,
            Rotation::default(),
        ));
        let started = Instant::now();
        let result = match config.tasks.get(name) {
            Some(t) => match server_session(&home, &config, &mut conns, t) {
                Ok(conn) => {
                    let pass = PassOptions {
                        confirm_deletes: c.confirm_deletes,
                        dry_run: c.dry_run,
                        unattended: false,
                        wait_for_other_pass: !c.no_wait,
                    };
                    let p = crate::progress_bar::for_run(progress.clone(), !c.json);
                    run_task(&home, &config, conn, &mut None, name, pass, p).await
                }
                Err(e) => Err(e),
            },
            None => Err(anyhow::anyhow!("no task named {name}")),
        };
        let seconds = started.elapsed().as_secs_f64();
        let mut report = RunReport {
            task: name.clone(),
            outcome: "ok",
            seconds,
            summary: None,
            counts: None,
            planned: None,
            error: None,
        };
        match result {
            Ok(outcome) => {
                let line = outcome.summary;
                progress.line(&line);
                if !c.json {
                    println!("{line} in {seconds:.2}s");
                }
                if outcome.failed > 0 {
                    report.outcome = "failed_files";
                    failed.push(format!(
                        "{name}: {} files failed (see `cairn log {name}`)",
                        outcome.failed
                    ));
                }
                if let Some(why) = outcome.waiting {
                    progress.line(&why);
                    eprintln!("task {name} is waiting: {}", escape(&why));
                    failed.push(format!("{name}: waiting for confirmation of deletions"));
                    report.outcome = "waiting_for_confirmation";
                    report.error = Some(why);
                }
                report.summary = Some(line);
                report.counts = Some(outcome.counts);
                report.planned = outcome.planned;
            }
            Err(e) => {
                progress.line(&format!("task failed: {e:#}"));
                eprintln!("error: task {name}: {}", escape(&format!("{e:#}")));
                failed.push(format!("{name}: {e}"));
                report.outcome = "error";
                report.error = Some(format!("{e:#}"));
            }
        }
        reports.push(report);
    }
    if c.json {
        let doc = serde_json::json!({ "ok": failed.is_empty(), "tasks": reports });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} tasks did not complete: {}",
            failed.len(),
            names.len(),
            failed.join("; ")
        );
    }
    Ok(())
}
