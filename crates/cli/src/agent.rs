//! Running tasks: `cairn run --once`, the `cairn agent` daemon (watcher + periodic rescan,
//! a local socket for pause/resume/status), and `cairn log`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_engine::backup::{self, BackupOptions, BackupRoot, BackupStats};
use cairn_engine::drive::{self, DriveOptions, DriveStats};
use cairn_engine::index::LocalIndex;
use cairn_engine::reconcile::ConflictPolicy;
use cairn_engine::{Progress, ProgressEvent, Remote};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::{Config, Home};
use crate::output::escape;

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
}

#[derive(Args)]
pub struct AgentCmd {
    /// Seconds between full rescans (the watcher covers the time between).
    #[arg(long, default_value_t = 600)]
    rescan: u64,
}

/// What one task is doing, for `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: String,
    pub last_result: Option<String>,
    pub uploading: Vec<String>,
    pub queued: u64,
    pub recent: VecDeque<String>,
}

/// Progress sink of one task: appends to the task's log, keeps recent activity, and (for
/// `run`) echoes problems to stderr.
struct TaskProgress {
    task: String,
    log: Mutex<Option<std::fs::File>>,
    status: Arc<Mutex<BTreeMap<String, TaskStatus>>>,
    echo: bool,
}

impl TaskProgress {
    fn new(
        home: &Home,
        task: &str,
        status: Arc<Mutex<BTreeMap<String, TaskStatus>>>,
        echo: bool,
    ) -> Self {
        let path = home.log_path(task);
        let _ = std::fs::create_dir_all(path.parent().unwrap_or(&home.data_dir));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        TaskProgress {
            task: task.to_string(),
            log: Mutex::new(log),
            status,
            echo,
        }
    }

    /// Appends a line to the task's log; names in it are escaped, so a file name can never
    /// forge a line of the log.
    fn line(&self, text: &str) {
        let stamp = cairn_model::timespec::format_instant(now_ns());
        if let Some(f) = self.log.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = writeln!(f, "{stamp} {}", escape(text));
        }
    }

    fn with_status(&self, f: impl FnOnce(&mut TaskStatus)) {
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(self.task.clone()).or_default());
    }
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
                    s.recent.push_front(format!("uploaded {path}"));
                    s.recent.truncate(20);
                });
            }
            ProgressEvent::Deleted { path } => {
                self.line(&format!("deleted on the server: {path}"));
                self.with_status(|s| {
                    s.recent.push_front(format!("deleted {path}"));
                    s.recent.truncate(20);
                });
            }
            ProgressEvent::Skipped { path, reason } => {
                self.line(&format!("skipped {path}: {reason}"));
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
                self.with_status(|s| {
                    s.recent.push_front(format!("downloaded {path}"));
                    s.recent.truncate(20);
                });
            }
            ProgressEvent::Restored { path, size } => {
                self.line(&format!("restored {path} ({size} bytes)"))
            }
            ProgressEvent::Scanned { .. } | ProgressEvent::Transferred { .. } => {}
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// What one pass of a task came to.
struct PassOutcome {
    summary: String,
    failed: u64,
    /// The pass stopped before deleting and waits for `resume --confirm-deletes`.
    waiting: Option<String>,
}

fn backup_summary(name: &str, s: &BackupStats) -> String {
    format!(
        "backup {name}: {} uploaded, {} folders/links, {} deleted, {} unchanged, {} failed, {} reported; sent {} bytes in {} chunks",
        s.files_uploaded, s.dirs_recorded, s.deleted, s.unchanged, s.failed, s.reported, s.bytes_sent, s.chunks_sent
    )
}

fn drive_summary(name: &str, s: &DriveStats) -> String {
    format!(
        "drive {name}: {} uploaded, {} downloaded, {} moved, {} deleted here, {} deleted on the server, {} conflicts, {} failed; sent {} bytes",
        s.uploaded, s.downloaded, s.moved, s.deleted_local, s.deleted_remote, s.conflicts, s.failed, s.bytes_sent
    )
}

/// One pass of one task. `confirm_deletes` lets deletions past the guard through (it is also
/// taken from, and cleared in, the state file).
async fn run_task(
    home: &Home,
    config: &Config,
    conns: &mut HashMap<String, Arc<cairn_client::Connection>>,
    caches: &mut HashMap<String, Option<drive::RemoteCache>>,
    name: &str,
    confirm_deletes: bool,
    progress: Arc<dyn Progress>,
) -> Result<PassOutcome> {
    let task = config
        .tasks
        .get(name)
        .with_context(|| format!("no task named {name}"))?;
    let mut state = home.state()?;
    let confirmed = confirm_deletes || state.confirmed.iter().any(|t| t == name);
    let conn = match conns.get(&task.connection) {
        Some(c) => c.clone(),
        None => {
            let c = home.connection(config, &task.connection)?;
            conns.insert(task.connection.clone(), c.clone());
            c
        }
    };
    let remote = Arc::new(conn.remote(&task.folder));
    let mut index = LocalIndex::open(&home.index_path())?;
    let outcome = match &task.drive {
        None => {
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
            };
            let stats = backup::run(name, &roots, remote, &mut index, &opts, progress).await?;
            PassOutcome {
                summary: backup_summary(name, &stats),
                failed: stats.failed,
                waiting: None,
            }
        }
        Some(d) => {
            let first_pass = index.load(name, 0)?.is_empty();
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
                filter: task.filter.clone(),
                transfers: task.transfers,
                computer: task.computer.clone(),
                confirm_deletes: confirmed,
            };
            let prefix = task.remote_prefix(0)?;
            let cache = caches.entry(name.to_string()).or_default();
            let stats = drive::run(
                name,
                &task.locals[0],
                &prefix,
                remote,
                &mut index,
                &opts,
                cache,
                progress,
            )
            .await?;
            PassOutcome {
                summary: drive_summary(name, &stats),
                failed: stats.failed,
                waiting: stats.waiting_for_confirmation.clone(),
            }
        }
    };
    if confirmed && outcome.waiting.is_none() && state.confirmed.iter().any(|t| t == name) {
        state.confirmed.retain(|t| t != name);
        home.save_state(&state)?;
    }
    Ok(outcome)
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
    let status = Arc::new(Mutex::new(BTreeMap::new()));
    let mut failed = Vec::new();
    // One session per connection: logging in costs an Argon2 verification on the server.
    let mut conns = HashMap::new();
    for name in &names {
        let progress = Arc::new(TaskProgress::new(&home, name, status.clone(), true));
        let started = Instant::now();
        match run_task(
            &home,
            &config,
            &mut conns,
            &mut HashMap::new(),
            name,
            c.confirm_deletes,
            crate::progress_bar::for_run(progress.clone()),
        )
        .await
        {
            Ok(outcome) => {
                let line = outcome.summary;
                progress.line(&line);
                println!("{line} in {:.2}s", started.elapsed().as_secs_f64());
                if outcome.failed > 0 {
                    failed.push(format!(
                        "{name}: {} files failed (see `cairn log {name}`)",
                        outcome.failed
                    ));
                }
                if let Some(why) = outcome.waiting {
                    progress.line(&why);
                    eprintln!("task {name} is waiting: {}", escape(&why));
                    failed.push(format!("{name}: waiting for confirmation of deletions"));
                }
            }
            Err(e) => {
                progress.line(&format!("task failed: {e:#}"));
                eprintln!("error: task {name}: {}", escape(&format!("{e:#}")));
                failed.push(format!("{name}: {e}"));
            }
        }
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

#[derive(Serialize, Deserialize)]
struct Request {
    cmd: String,
    #[serde(default)]
    task: Option<String>,
}

async fn ask_agent(home: &Home, req: &Request) -> Option<serde_json::Value> {
    let mut stream = UnixStream::connect(home.socket_path()).await.ok()?;
    let mut line = serde_json::to_vec(req).ok()?;
    line.push(b'\n');
    stream.write_all(&line).await.ok()?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).await.ok()?;
    serde_json::from_str(&answer).ok()
}

pub async fn set_paused(task: &str, paused: bool) -> Result<()> {
    let home = Home::locate()?;
    let config = home.load()?;
    if !config.tasks.contains_key(task) {
        bail!("no task named {task}");
    }
    let mut state = home.state()?;
    state.paused.retain(|t| t != task);
    if paused {
        state.paused.push(task.to_string());
    }
    home.save_state(&state)?;
    let _ = ask_agent(
        &home,
        &Request {
            cmd: "reload".into(),
            task: None,
        },
    )
    .await;
    println!("{} {task}", if paused { "paused" } else { "resumed" });
    Ok(())
}

pub async fn resume(task: &str, confirm_deletes: bool) -> Result<()> {
    if confirm_deletes {
        let home = Home::locate()?;
        let mut state = home.state()?;
        if !state.confirmed.iter().any(|t| t == task) {
            state.confirmed.push(task.to_string());
        }
        home.save_state(&state)?;
        println!("the next pass of {task} may delete past the guard");
    }
    set_paused(task, false).await
}

pub async fn status(task: Option<&str>) -> Result<()> {
    let home = Home::locate()?;
    let config = home.load()?;
    if let Some(t) = task {
        if !config.tasks.contains_key(t) {
            // Not a task: a file or folder inside one.
            return path_status(&home, &config, std::path::Path::new(t));
        }
    }
    let live = ask_agent(
        &home,
        &Request {
            cmd: "status".into(),
            task: None,
        },
    )
    .await;
    let live: BTreeMap<String, TaskStatus> = live
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let paused = home.state()?.paused;
    if live.is_empty() {
        println!("agent: not running (start it with `cairn agent`)");
    }
    for (name, t) in &config.tasks {
        if task.is_some_and(|x| x != name) {
            continue;
        }
        let st = live.get(name);
        let state = if paused.contains(name) {
            "paused".to_string()
        } else {
            st.map(|s| s.state.clone()).unwrap_or_else(|| "idle".into())
        };
        match &t.drive {
            None => println!(
                "{name}: {} backup to {}/{} — {state}",
                t.locals.len(),
                t.connection,
                t.folder
            ),
            Some(d) => {
                let mode = match d.mode {
                    cairn_engine::reconcile::Direction::TwoWay => "two-way",
                    cairn_engine::reconcile::Direction::DownloadOnly => "download-only",
                };
                println!(
                    "{name}: drive ({mode}) {} <-> {}/{}/{} — {state}",
                    t.locals[0].display(),
                    t.connection,
                    t.folder,
                    d.sub
                );
            }
        }
        if let Some(s) = st {
            if let Some(r) = &s.last_result {
                println!("  last pass: {}", escape(r));
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
    }
    Ok(())
}

/// Prints the end of a task's log; with `downloads`, only the files it downloaded.
/// `cairn status PATH`: synced, syncing, filtered out (by which rule), read-only, or a
/// conflict copy.
fn path_status(home: &Home, config: &Config, path: &std::path::Path) -> Result<()> {
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
    let rel = cairn_model::RelPath::parse(text)?;
    let md = std::fs::symlink_metadata(&abs).ok();
    let kind = match &md {
        Some(m) if m.is_dir() => cairn_model::EntryKind::Dir,
        Some(m) if m.file_type().is_symlink() => cairn_model::EntryKind::Symlink,
        _ => cairn_model::EntryKind::File,
    };
    let size = md.as_ref().map_or(0, |m| m.len());
    let index = LocalIndex::open(&home.index_path())?;
    let row = index.load(name, root_no as u32)?.remove(&rel);
    let drive = task.drive.as_ref();
    let state = if let cairn_model::FilterDecision::Exclude(rule) =
        task.filter.check(&rel, kind, size)
    {
        format!("filtered out ({rule})")
    } else if rel.name().contains("_Conflict") {
        "conflict copy (a losing edit kept beside the file)".to_string()
    } else {
        match (&md, &row) {
            (None, None) => bail!(
                "{} does not exist and is not known to task {name}",
                abs.display()
            ),
            (None, Some(_)) => "syncing (deleted here)".to_string(),
            (Some(_), None)
                if drive.is_some_and(|d| {
                    d.mode == cairn_engine::reconcile::Direction::DownloadOnly
                }) =>
            {
                "local only (download-only task: never uploaded)".to_string()
            }
            (Some(_), None) => "syncing (new here)".to_string(),
            (Some(m), Some(r)) => {
                let here =
                    cairn_engine::scanner::LocalEntry::from_metadata(rel.clone(), kind, m, None);
                let same = kind == cairn_model::EntryKind::Dir
                    || here.same_stat(r.size, r.mtime_ns, r.ctime_ns, r.inode);
                match (same, drive.is_some_and(|d| d.read_only)) {
                    (true, true) => "synced, read-only".to_string(),
                    (true, false) => "synced".to_string(),
                    (false, _) => "syncing (changed here)".to_string(),
                }
            }
        }
    };
    println!(
        "{}: {state} [task {name}]",
        crate::output::escape_path(&abs)
    );
    Ok(())
}

pub fn log(task: Option<&str>, lines: usize, downloads: bool) -> Result<()> {
    let home = Home::locate()?;
    let config = home.load()?;
    let names: Vec<String> = match task {
        Some(t) if !config.tasks.contains_key(t) => bail!("no task named {t}"),
        Some(t) => vec![t.to_string()],
        None => config.tasks.keys().cloned().collect(),
    };
    for name in names {
        let text = std::fs::read_to_string(home.log_path(&name)).unwrap_or_default();
        let all: Vec<&str> = text
            .lines()
            .filter(|l| !downloads || l.contains(" downloaded "))
            .collect();
        for l in &all[all.len().saturating_sub(lines)..] {
            println!("[{name}] {}", crate::output::escape_controls(l));
        }
    }
    Ok(())
}

pub async fn agent(c: AgentCmd) -> Result<()> {
    let home = Home::locate()?;
    let sock = home.socket_path();
    if UnixStream::connect(&sock).await.is_ok() {
        bail!("an agent is already running (socket {})", sock.display());
    }
    let _ = std::fs::remove_file(&sock);
    std::fs::create_dir_all(&home.data_dir)
        .with_context(|| format!("creating {}", home.data_dir.display()))?;
    let listener =
        UnixListener::bind(&sock).with_context(|| format!("listening on {}", sock.display()))?;
    let status: Arc<Mutex<BTreeMap<String, TaskStatus>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let wake = Arc::new(tokio::sync::Notify::new());
    {
        let status = status.clone();
        let wake = wake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let status = status.clone();
                let wake = wake.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut line = String::new();
                    if BufReader::new(r).read_line(&mut line).await.is_err() {
                        return;
                    }
                    let answer = match serde_json::from_str::<Request>(&line) {
                        Ok(req) if req.cmd == "status" => {
                            let s = status.lock().unwrap_or_else(|p| p.into_inner()).clone();
                            serde_json::to_value(s).unwrap_or_default()
                        }
                        Ok(req) if req.cmd == "reload" => {
                            wake.notify_one();
                            serde_json::json!({"ok": true})
                        }
                        _ => serde_json::json!({"error": "unknown request"}),
                    };
                    let mut out = serde_json::to_vec(&answer).unwrap_or_default();
                    out.push(b'\n');
                    let _ = w.write_all(&out).await;
                });
            }
        });
    }
    println!("agent running; socket {}", sock.display());
    let mut config = home.load()?;
    let roots: Vec<(String, PathBuf)> = config
        .tasks
        .iter()
        .flat_map(|(n, t)| t.locals.iter().map(move |l| (n.clone(), l.clone())))
        .collect();
    let watch_paths: Vec<PathBuf> = roots
        .iter()
        .map(|(_, p)| p.clone())
        .filter(|p| p.is_dir())
        .collect();
    let (_watcher, mut events) = cairn_engine::watcher::watch(&watch_paths)?;
    let mut dirty: HashMap<String, Instant> = config
        .tasks
        .keys()
        .map(|k| (k.clone(), Instant::now()))
        .collect();
    let mut last_full: HashMap<String, Instant> = HashMap::new();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    // What each drive task last saw of its server folder: passes then read only the journal.
    let mut caches: HashMap<String, Option<drive::RemoteCache>> = HashMap::new();
    // Short: a save here should reach the other computers within a second or two.
    let debounce = Duration::from_millis(150);
    let (remote_tx, mut remote_changes) = tokio::sync::mpsc::unbounded_channel::<String>();
    // One identity check per connection: a copied configuration folder must not pose as the
    // computer it was copied from.
    let instance: String = cairn_server::auth::random_bytes(16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut conns: HashMap<String, Arc<cairn_client::Connection>> = HashMap::new();
    for t in config.tasks.values() {
        if conns.contains_key(&t.connection) {
            continue;
        }
        let conn = home.connection(&config, &t.connection)?;
        match conn.claim_agent(&instance).await {
            Ok(()) => {}
            Err(e) if e.status() == Some(409) => {
                let _ = std::fs::remove_file(&sock);
                bail!("{e}");
            }
            // Offline at start: the journal poll checks again when the server is back.
            Err(e) => eprintln!("warning: {e}"),
        }
        conns.insert(t.connection.clone(), conn);
    }
    for (name, t) in &config.tasks {
        if t.drive.is_some() {
            follow_journal(&config, name, &conns[&t.connection], remote_tx.clone())?;
        }
    }
    loop {
        tokio::select! {
            Some(path) = events.recv() => {
                // Our own temporary files are not news.
                if path.components().any(|c| c.as_os_str() == cairn_model::filter::WORK_DIR_NAME) {
                    continue;
                }
                for (task, root) in &roots {
                    if path.starts_with(root) {
                        dirty.insert(task.clone(), Instant::now());
                    }
                }
            }
            Some(task) = remote_changes.recv() => {
                // Already settled on the server: no reason to wait.
                let now = Instant::now();
                dirty.insert(task, now.checked_sub(debounce).unwrap_or(now));
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
        config = home.load().unwrap_or(config);
        let paused = home.state().map(|s| s.paused).unwrap_or_default();
        for name in config.tasks.keys() {
            let is_paused = paused.contains(name);
            {
                let mut all = status.lock().unwrap_or_else(|p| p.into_inner());
                let s = all.entry(name.clone()).or_default();
                if is_paused {
                    s.state = "paused".into();
                } else if s.state.is_empty() || s.state == "paused" {
                    s.state = "idle".into();
                }
            }
            if is_paused {
                continue;
            }
            let due_watch = dirty.get(name).is_some_and(|t| t.elapsed() >= debounce);
            let due_scan = last_full
                .get(name)
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(c.rescan));
            if !(due_watch || due_scan) {
                continue;
            }
            dirty.remove(name);
            last_full.insert(name.clone(), Instant::now());
            set_state(&status, name, "running");
            let progress = Arc::new(TaskProgress::new(&home, name, status.clone(), false));
            let result = run_task(
                &home,
                &config,
                &mut conns,
                &mut caches,
                name,
                false,
                progress.clone(),
            )
            .await;
            let (state, text) = match result {
                Ok(PassOutcome {
                    waiting: Some(why), ..
                }) => ("waiting for confirmation of deletions", why),
                Ok(o) if o.failed > 0 => ("error", o.summary),
                Ok(o) => ("up to date", o.summary),
                Err(e) => ("error", format!("task failed: {e:#}")),
            };
            progress.line(&text);
            let mut all = status.lock().unwrap_or_else(|p| p.into_inner());
            let s = all.entry(name.clone()).or_default();
            s.state = state.into();
            s.last_result = Some(text);
            s.uploading.clear();
            s.queued = 0;
        }
    }
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

/// Follows a drive task's folder journal with long-polls and names the task on `tx` whenever
/// another device changed something under its sub-folder.
fn follow_journal(
    config: &Config,
    name: &str,
    conn: &Arc<cairn_client::Connection>,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<()> {
    let task = &config.tasks[name];
    let remote = conn.remote(&task.folder);
    let prefix = task.remote_prefix(0)?;
    let me = config.device_id.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        let mut after = None;
        loop {
            let Some(from) = after else {
                match remote.identity().await {
                    Ok((_, head)) => after = Some(head),
                    Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
                }
                continue;
            };
            match remote.journal(from, 30).await {
                Ok((changes, head)) => {
                    let news = changes
                        .iter()
                        .any(|v| v.device.0 != me && v.path.starts_with(&prefix));
                    if news && tx.send(name.clone()).is_err() {
                        return;
                    }
                    after = Some(head.max(from));
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        }
    });
    Ok(())
}

fn set_state(status: &Arc<Mutex<BTreeMap<String, TaskStatus>>>, name: &str, state: &str) {
    let mut all = status.lock().unwrap_or_else(|p| p.into_inner());
    all.entry(name.to_string()).or_default().state = state.into();
}
