//! The `cairn agent` daemon, which keeps every task in sync until it is stopped, and the
//! `pause`/`resume` commands that talk to it over its local socket.
//!
//! One loop owns the state of every task (a [`TaskClock`]). Each turn it re-reads the
//! configuration, so tasks added, changed or removed are picked up within a turn, with their
//! watches, journal followers and caches; it marks tasks dirty from the file watcher and the
//! server's journal, and runs due passes one after another (they share the index and the
//! transfer limits). A failed pass is retried with backoff (1 s, doubling, at most 60 s, back
//! to 1 s after a success); a cheap probe of a server that was unreachable cuts the wait short
//! as soon as it answers again. While a pass runs, the loop still takes events, so the status
//! it publishes ([`crate::status::TaskStatus`], read by `cairn status` over the socket) never
//! calls a task with pending work, a pass in progress or a failed pass "up to date".

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_client::Connection;
use cairn_engine::drive::RemoteCache;
use cairn_engine::watcher::LocalWatcher;
use cairn_engine::Remote;
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::config::{Config, Home};
use crate::run::{
    now_ns, random_instance, run_task, PassOptions, PassOutcome, SharedStatus, TaskProgress,
};
use crate::schedule_clock::{window, Window};
use crate::status::TaskState;
use crate::task_log::Rotation;

/// A pass stopped because a suspended hour of its task's schedule began.
#[derive(Debug)]
struct SuspendedBySchedule;

impl std::fmt::Display for SuspendedBySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped: the schedule suspends the task from this hour")
    }
}

impl std::error::Error for SuspendedBySchedule {}

#[derive(Args)]
pub struct AgentCmd {
    /// Seconds between full rescans (the watcher covers the time between).
    #[arg(long, default_value_t = 600)]
    rescan: u64,
    /// Size in bytes past which a task's log (logs/TASK.log) moves to TASK.log.1.
    #[arg(long, default_value_t = Rotation::default().max_bytes, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..))]
    log_max_bytes: u64,
    /// Old files of each task's log kept (TASK.log.1 the newest ... TASK.log.N).
    #[arg(long, default_value_t = Rotation::default().keep, value_name = "N")]
    log_keep: u32,
    #[command(flatten)]
    log: crate::log_output::LogArgs,
}

impl AgentCmd {
    fn rotation(&self) -> Rotation {
        Rotation {
            max_bytes: self.log_max_bytes,
            keep: self.log_keep,
        }
    }
}

/// A request on the agent's socket: one JSON line; the answer is one JSON line.
#[derive(Serialize, Deserialize)]
pub struct Request {
    cmd: String,
    #[serde(default)]
    task: Option<String>,
}

impl Request {
    pub fn new(cmd: &str) -> Self {
        Request {
            cmd: cmd.to_string(),
            task: None,
        }
    }
}

/// The agent's answer to `req`, or `None` when no agent is running.
pub async fn ask_agent(home: &Home, req: &Request) -> Option<serde_json::Value> {
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
        home.save_state(&state)?;
        let _ = ask_agent(&home, &Request::new("reload")).await;
        println!("paused {task}");
        return Ok(());
    }
    home.save_state(&state)?;
    // Resuming starts a pass at once: whatever waited for the pause or a confirmation.
    let run = Request {
        cmd: "run".into(),
        task: Some(task.to_string()),
    };
    match ask_agent(&home, &run).await {
        Some(_) => println!("resumed {task}; the agent starts a pass now"),
        None => println!(
            "resumed {task}; no agent is running: `cairn agent` or `cairn run {task} --once` runs it"
        ),
    }
    Ok(())
}

pub async fn resume(task: &str, confirm_deletes: bool) -> Result<()> {
    if confirm_deletes {
        let home = Home::locate()?;
        if !home.load()?.tasks.contains_key(task) {
            bail!("no task named {task}");
        }
        let mut state = home.state()?;
        if !state.confirmed.iter().any(|t| t == task) {
            state.confirmed.push(task.to_string());
        }
        home.save_state(&state)?;
        println!("the next pass of {task} may delete past the guard");
    }
    set_paused(task, false).await
}

/// Short: a save here should reach the other computers within a second or two.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// The first wait before a failed pass is tried again; it doubles up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);
/// How often an unreachable server is asked whether it is back (doubling up to the second).
const PROBE_WAITS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(5));

/// The wait after a failed pass, given the wait before it (none after a success).
fn next_wait(previous: Option<Duration>) -> Duration {
    previous.map_or(FIRST_RETRY, |w| (w * 2).min(LAST_RETRY))
}

/// A failed pass waits until `at`; `wait` is what it waited, for the next doubling.
#[derive(Clone, Copy, Debug)]
struct Retry {
    at: Instant,
    wait: Duration,
}

/// A task's journal follower; dropping it stops it.
struct JournalFollower(tokio::task::JoinHandle<()>);

impl Drop for JournalFollower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the agent keeps about one task between passes.
struct TaskClock {
    /// The task's configuration as last seen: a change restarts its follower and cache.
    seen: serde_json::Value,
    /// A change was seen at this time; a pass is due once it settled for [`DEBOUNCE`].
    dirty: Option<Instant>,
    last_full: Option<Instant>,
    retry: Option<Retry>,
    running: bool,
    /// The last pass stopped before deleting and waits for confirmation.
    waiting: bool,
    journal: Option<JournalFollower>,
    /// A cloud task's polling period: it has no journal to follow, so remote changes are
    /// found by a full pass this often (or by the agent's rescan, when sooner).
    poll: Option<Duration>,
    /// A cloud task's weekly schedule: no pass in a suspended hour.
    schedule: Option<cairn_model::Schedule>,
}

impl TaskClock {
    fn new(seen: serde_json::Value) -> Self {
        TaskClock {
            poll: None,
            schedule: None,
            seen,
            dirty: Some(Instant::now()),
            last_full: None,
            retry: None,
            running: false,
            waiting: false,
            journal: None,
        }
    }

    fn is_due(&self, now: Instant, rescan: Duration) -> bool {
        if let Some(r) = &self.retry {
            // Changes wait for the retry too: a storm of saves must not hammer a dead server.
            return now >= r.at;
        }
        let rescan = self.poll.map_or(rescan, |p| p.min(rescan));
        self.dirty.is_some_and(|t| now >= t + DEBOUNCE)
            || self.last_full.is_none_or(|t| now >= t + rescan)
    }

    fn state(&self, paused: bool) -> TaskState {
        if paused {
            TaskState::Paused
        } else if self.running {
            TaskState::Running
        } else if self.waiting {
            TaskState::WaitingForConfirmation
        } else if self.retry.is_some() {
            TaskState::Error
        } else if self.dirty.is_some() || self.last_full.is_none() {
            TaskState::Pending
        } else {
            TaskState::UpToDate
        }
    }
}

/// Events that reach the loop from elsewhere.
struct Inbox {
    /// Paths the watcher saw change.
    local: UnboundedReceiver<PathBuf>,
    /// Tasks whose server folder changed (journal followers).
    remote: UnboundedReceiver<String>,
    /// Tasks to run now (`resume`).
    kicks: UnboundedReceiver<String>,
    /// Connections whose probe ended: (name, the server was down and answers again).
    probes: UnboundedReceiver<(String, bool)>,
}

/// The agent's state apart from the configuration and the inbox, so that a running pass
/// (which borrows neither) and the handlers of new events can go on side by side.
struct Daemon {
    rescan: Duration,
    instance: String,
    status: SharedStatus,
    clocks: BTreeMap<String, TaskClock>,
    /// Sessions by connection name, with the settings they were made from.
    conns: HashMap<String, (serde_json::Value, Arc<Connection>)>,
    caches: HashMap<String, RemoteCache>,
    /// `None` when the OS gave no watcher at all (inotify instances used up): rescans only.
    watcher: Option<LocalWatcher>,
    watched: BTreeSet<PathBuf>,
    remote_tx: UnboundedSender<String>,
    probe_tx: UnboundedSender<(String, bool)>,
    probing: HashSet<String>,
}

/// What a connection's session depends on: its settings and this computer's identity.
fn conn_settings(config: &Config, name: &str) -> serde_json::Value {
    serde_json::json!([config.device_id, config.connections.get(name)])
}

fn is_refused_as_copy(e: &anyhow::Error) -> bool {
    e.downcast_ref::<cairn_client::Error>()
        .and_then(cairn_client::Error::status)
        == Some(409)
}

impl Daemon {
    /// Follows the configuration: new tasks are due at once, changed ones restart their
    /// follower and cache and are due at once, removed ones are forgotten; watches follow.
    fn follow_config(&mut self, config: &Config) {
        self.conns
            .retain(|name, (seen, _)| conn_settings(config, name) == *seen);
        let conns = &self.conns;
        self.clocks.retain(|name, clock| {
            let task = config.tasks.get(name);
            // A new session means a new follower.
            if task.is_some_and(|t| !conns.contains_key(&t.connection)) {
                clock.journal = None;
            }
            task.is_some()
        });
        {
            let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
            all.retain(|name, _| config.tasks.contains_key(name));
        }
        self.caches
            .retain(|name, _| config.tasks.contains_key(name));
        for (name, task) in &config.tasks {
            let seen = serde_json::to_value(task).unwrap_or_default();
            match self.clocks.get_mut(name) {
                None => {
                    self.clocks.insert(name.clone(), TaskClock::new(seen));
                }
                Some(clock) if clock.seen != seen => {
                    clock.seen = seen;
                    clock.journal = None;
                    clock.dirty = Some(Instant::now());
                    if let Some(r) = &mut clock.retry {
                        r.at = Instant::now();
                    }
                    self.caches.remove(name);
                }
                Some(_) => {}
            }
            if let Some(clock) = self.clocks.get_mut(name) {
                clock.poll = task
                    .cloud
                    .as_ref()
                    .map(|c| Duration::from_secs(c.poll_secs));
                clock.schedule = task.cloud.as_ref().and_then(|c| c.schedule.clone());
            }
        }
        self.follow_roots(config);
    }

    /// Watches every task folder that is there, and only those: a folder that appears later
    /// (a disk mounted) is watched then.
    fn follow_roots(&mut self, config: &Config) {
        let wanted: BTreeSet<PathBuf> = config
            .tasks
            .values()
            .flat_map(|t| t.locals.iter())
            .filter(|p| p.is_dir())
            .cloned()
            .collect();
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for gone in self.watched.difference(&wanted) {
            watcher.remove(gone);
        }
        for new in wanted.difference(&self.watched) {
            let added = match watch_refused("add") {
                Some(e) => Err(e),
                None => watcher.add(new),
            };
            // The periodic rescan still covers a folder the OS refuses to watch.
            if let Err(e) = added {
                tracing::warn!(folder = %new.display(), "{e:#}; changes there wait for the next rescan");
            }
        }
        self.watched = wanted;
    }

    fn on_local_change(&mut self, path: &Path, config: &Config) {
        // Our own temporary files are not news.
        if path
            .components()
            .any(|c| c.as_os_str() == cairn_model::filter::WORK_DIR_NAME)
        {
            return;
        }
        for (name, task) in &config.tasks {
            if task.locals.iter().any(|root| path.starts_with(root)) {
                if let Some(clock) = self.clocks.get_mut(name) {
                    clock.dirty = Some(Instant::now());
                }
            }
        }
    }

    /// Due at once: a change already settled on the server, or the user asked.
    fn run_soon(&mut self, task: &str, now_even_after_failure: bool) {
        let Some(clock) = self.clocks.get_mut(task) else {
            return;
        };
        let now = Instant::now();
        clock.dirty = Some(now.checked_sub(DEBOUNCE).unwrap_or(now));
        if let Some(r) = clock.retry.as_mut().filter(|_| now_even_after_failure) {
            r.at = now;
        }
    }

    fn on_probe(&mut self, conn: &str, back: bool, config: &Config) {
        self.probing.remove(conn);
        if !back {
            return;
        }
        let now = Instant::now();
        for (name, clock) in &mut self.clocks {
            let on_it = config.tasks.get(name).is_some_and(|t| t.connection == conn);
            if let Some(r) = clock.retry.as_mut().filter(|_| on_it) {
                r.at = now;
            }
        }
    }

    /// Takes every event already waiting, without waiting for more.
    fn take(&mut self, inbox: &mut Inbox, config: &Config) {
        while let Ok(p) = inbox.local.try_recv() {
            self.on_local_change(&p, config);
        }
        while let Ok(task) = inbox.remote.try_recv() {
            self.run_soon(&task, false);
        }
        while let Ok(task) = inbox.kicks.try_recv() {
            self.run_soon(&task, true);
        }
        while let Ok((conn, back)) = inbox.probes.try_recv() {
            self.on_probe(&conn, back, config);
        }
    }

    /// The first task due to run, if any.
    fn next_due(&self, paused: &[String]) -> Option<String> {
        let now = Instant::now();
        self.clocks
            .iter()
            .find(|(name, clock)| {
                !paused.contains(name)
                    && clock.is_due(now, self.rescan)
                    && !window(clock.schedule.as_ref()).is_suspended()
            })
            .map(|(name, _)| name.clone())
    }

    /// The session for connection `name`, announced as this agent when it is made.
    ///
    /// # Errors
    /// When the connection is not configured, or the server refuses this agent because
    /// another live agent has this computer's identity (a copied configuration folder).
    async fn session(
        &mut self,
        home: &Home,
        config: &Config,
        name: &str,
    ) -> Result<Arc<Connection>> {
        if let Some((_, c)) = self.conns.get(name) {
            return Ok(c.clone());
        }
        let conn = home.connection(config, name)?;
        // Offline is no refusal: the instance rides on the journal polls, which claim later.
        if let Err(e) = conn.claim_agent(&self.instance).await {
            if e.status() == Some(409) {
                return Err(e.into());
            }
        }
        self.conns.insert(
            name.to_string(),
            (conn_settings(config, name), conn.clone()),
        );
        Ok(conn)
    }

    /// Marks `name` running: the changes seen so far are this pass's.
    fn start(&mut self, name: &str) {
        if let Some(clock) = self.clocks.get_mut(name) {
            clock.running = true;
            clock.dirty = None;
            clock.last_full = Some(Instant::now());
        }
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(name.to_string()).or_default().not_synced.clear();
    }

    /// Makes the session and journal follower of `name`; the cache it had.
    async fn prepare(
        &mut self,
        home: &Home,
        config: &Config,
        name: &str,
    ) -> Result<(Option<Arc<Connection>>, Option<RemoteCache>)> {
        let task = config
            .tasks
            .get(name)
            .with_context(|| format!("no task named {name}"))?;
        // A cloud task has no server session and no journal: it polls.
        if task.kind == "cloud" {
            return Ok((None, self.caches.remove(name)));
        }
        let conn = self.session(home, config, &task.connection).await?;
        let tx = self.remote_tx.clone();
        if let Some(clock) = self.clocks.get_mut(name) {
            // Followed before the pass lists the folder, so no change falls in between.
            if task.drive.is_some() && clock.journal.is_none() {
                clock.journal = Some(follow_journal(config, name, &conn, tx)?);
            }
        }
        Ok((Some(conn), self.caches.remove(name)))
    }

    /// Records a pass the schedule stopped: not a failure, and due again (to finish what it
    /// left) as soon as an hour runs the task. Dropping the pass cancelled its transfers: an
    /// upload never completed is no object, a download's temporary goes, and the index holds
    /// only the steps that finished.
    fn suspended(&mut self, name: &str) -> String {
        let text = "stopped: the schedule suspends the task from this hour".to_string();
        if let Some(clock) = self.clocks.get_mut(name) {
            clock.running = false;
            clock.dirty = Some(Instant::now());
        }
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let s = all.entry(name.to_string()).or_default();
        s.last_result = Some(text.clone());
        s.last_pass_at = Some(cairn_model::timespec::format_instant(now_ns()));
        s.uploading.clear();
        s.queued = 0;
        text
    }

    /// Records how a pass ended: success resets the backoff, failure schedules the retry.
    fn finish(&mut self, config: &Config, name: &str, result: Result<PassOutcome>) -> String {
        let (text, error, waiting) = match result {
            Ok(PassOutcome {
                waiting: Some(why), ..
            }) => (why, None, true),
            Ok(o) if o.failed > 0 => {
                let e = format!("{} files failed (see `cairn log {name}`)", o.failed);
                (o.summary, Some(e), false)
            }
            Ok(o) => (o.summary, None, false),
            Err(e) => {
                let e = format!("task failed: {e:#}");
                (e.clone(), Some(e), false)
            }
        };
        let Some(clock) = self.clocks.get_mut(name) else {
            return text; // removed while it ran
        };
        clock.running = false;
        clock.waiting = waiting;
        clock.retry = error.as_ref().map(|_| {
            let wait = next_wait(clock.retry.map(|r| r.wait));
            Retry {
                at: Instant::now() + wait,
                wait,
            }
        });
        if error.is_some() {
            if let Some(task) = config.tasks.get(name) {
                self.probe(&task.connection.clone());
            }
        }
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let s = all.entry(name.to_string()).or_default();
        s.last_result = Some(text.clone());
        s.last_pass_at = Some(cairn_model::timespec::format_instant(now_ns()));
        s.error = error;
        s.uploading.clear();
        s.queued = 0;
        text
    }

    /// Writes how a pass of `name` ended to the agent's own log (the task's log keeps every
    /// file; this one only outcomes): a warning when the pass left an error.
    fn log_outcome(&self, name: &str, text: &str) {
        let text = crate::output::escape(text);
        let all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match all.get(name).and_then(|s| s.error.as_deref()) {
            Some(error) => {
                tracing::warn!(task = %name, error = %crate::output::escape(error), "{text}")
            }
            None => tracing::info!(task = %name, "{text}"),
        }
    }

    /// Asks an unreachable server, more and more rarely, whether it is back; reports on
    /// `probe_tx` (a server that answers at once was not the problem, and backoff decides).
    fn probe(&mut self, conn_name: &str) {
        let Some((_, conn)) = self.conns.get(conn_name) else {
            return;
        };
        if !self.probing.insert(conn_name.to_string()) {
            return;
        }
        let conn = conn.clone();
        let tx = self.probe_tx.clone();
        let name = conn_name.to_string();
        tokio::spawn(async move {
            let (mut wait, most) = PROBE_WAITS;
            let mut was_down = false;
            loop {
                match conn.folders().await {
                    Ok(_) => break,
                    Err(e) if e.is_temporary() => was_down = true,
                    // Refused (a password changed, access removed): not a server that is down.
                    Err(_) => {
                        was_down = false;
                        break;
                    }
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(most);
            }
            let _ = tx.send((name, was_down));
        });
    }

    /// Publishes every task's state for `status`.
    fn publish(&self, paused: &[String]) {
        let now = Instant::now();
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        for (name, clock) in &self.clocks {
            let s = all.entry(name.clone()).or_default();
            s.state = clock.state(paused.contains(name));
            s.suspended_until = None;
            if let (Window::Suspended { until, .. }, false) =
                (window(clock.schedule.as_ref()), clock.running)
            {
                if s.state != TaskState::Paused {
                    s.state = TaskState::Suspended;
                    s.suspended_until = Some(until);
                }
            }
            let left = clock.retry.map(|r| r.at.saturating_duration_since(now));
            s.next_retry_in_secs = left.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
            s.next_retry_at =
                left.map(|d| cairn_model::timespec::format_instant(now_ns() + d.as_nanos() as i64));
        }
    }
}

/// Test hook (`CAIRN_TEST_NO_WATCHER=start|add`, only in builds with the `test-hooks`
/// feature): the refusal the OS gives when its inotify instances (`start`: no watcher at all)
/// or watches (`add`: no folder watched) are used up, so tests can show the rescan takes over.
fn watch_refused(step: &str) -> Option<cairn_engine::Error> {
    #[cfg(feature = "test-hooks")]
    if std::env::var("CAIRN_TEST_NO_WATCHER").is_ok_and(|v| v == step) {
        return Some(cairn_engine::Error::Refused(format!(
            "the file watcher refused to {step} (test hook CAIRN_TEST_NO_WATCHER)"
        )));
    }
    let _ = step;
    None
}

/// Answers requests on the agent's socket.
fn serve(
    listener: UnixListener,
    status: SharedStatus,
    kicks: UnboundedSender<String>,
    wake: Arc<tokio::sync::Notify>,
) {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let status = status.clone();
            let kicks = kicks.clone();
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
                    Ok(Request {
                        cmd,
                        task: Some(task),
                    }) if cmd == "run" => {
                        let _ = kicks.send(task);
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

pub async fn agent(c: AgentCmd) -> Result<()> {
    crate::log_output::init(c.log.log_format);
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
    let result = run_agent(&home, c, listener).await;
    let _ = std::fs::remove_file(&sock);
    result
}

async fn run_agent(home: &Home, c: AgentCmd, listener: UnixListener) -> Result<()> {
    let rotation = c.rotation();
    let status = SharedStatus::default();
    let wake = Arc::new(tokio::sync::Notify::new());
    let (kick_tx, kicks) = unbounded_channel();
    // Without a watcher the agent still runs: the periodic rescan finds what changed.
    let started = match watch_refused("start") {
        Some(e) => Err(e),
        None => cairn_engine::watcher::watch(&[]),
    };
    let (watcher, local) = match started {
        Ok((w, rx)) => (Some(w), rx),
        Err(e) => {
            tracing::warn!(
                "{e:#}; local changes are found by the rescan every {} s",
                c.rescan
            );
            (None, unbounded_channel().1)
        }
    };
    let (remote_tx, remote) = unbounded_channel();
    let (probe_tx, probes) = unbounded_channel();
    let mut inbox = Inbox {
        local,
        remote,
        kicks,
        probes,
    };
    let mut daemon = Daemon {
        rescan: Duration::from_secs(c.rescan),
        // One identity check per connection: a copied configuration folder must not pose as
        // the computer it was copied from.
        instance: random_instance(),
        status: status.clone(),
        clocks: BTreeMap::new(),
        conns: HashMap::new(),
        caches: HashMap::new(),
        watcher,
        watched: BTreeSet::new(),
        remote_tx,
        probe_tx,
        probing: HashSet::new(),
    };
    let mut config = home.load()?;
    let used: BTreeSet<String> = config
        .tasks
        .values()
        .filter(|t| t.kind != "cloud")
        .map(|t| t.connection.clone())
        .collect();
    for name in used {
        match daemon.session(home, &config, &name).await {
            Err(e) if is_refused_as_copy(&e) => return Err(e),
            // Anything else fails the tasks' passes, which say why and retry.
            _ => {}
        }
    }
    // Answered only now: an agent that answers has passed the identity check, so a copy
    // started after it is the one refused. (Until then `status` waits in the socket's queue.)
    serve(listener, status, kick_tx, wake.clone());
    println!("agent running; socket {}", home.socket_path().display());
    tracing::info!(socket = %home.socket_path().display(), "agent running");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let mut stopping = false;
    while !stopping {
        tokio::select! {
            Some(path) = inbox.local.recv() => daemon.on_local_change(&path, &config),
            Some(task) = inbox.remote.recv() => daemon.run_soon(&task, false),
            Some(task) = inbox.kicks.recv() => daemon.run_soon(&task, true),
            Some((conn, back)) = inbox.probes.recv() => daemon.on_probe(&conn, back, &config),
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
        // A configuration caught half-written (or broken by hand) keeps the last good one.
        config = home.load().unwrap_or(config);
        daemon.follow_config(&config);
        let paused = home.state().map(|s| s.paused).unwrap_or_default();
        daemon.publish(&paused);
        let Some(name) = daemon.next_due(&paused) else {
            continue;
        };
        let progress = Arc::new(TaskProgress::new(
            home,
            &name,
            daemon.status.clone(),
            false,
            rotation,
        ));
        // A suspended hour that starts during the pass stops it (seed 002).
        let stop_in = match daemon
            .clocks
            .get(&name)
            .map(|c| window(c.schedule.as_ref()))
        {
            Some(Window::RunsFor(d)) => d,
            _ => Duration::MAX,
        };
        let suspend_at = tokio::time::Instant::now()
            .checked_add(stop_in)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
        daemon.start(&name);
        daemon.publish(&paused);
        let result = match daemon.prepare(home, &config, &name).await {
            Ok((conn, mut cache)) => {
                let result = {
                    let pass = run_task(
                        home,
                        &config,
                        conn,
                        &mut cache,
                        &name,
                        PassOptions {
                            unattended: true,
                            ..PassOptions::default()
                        },
                        progress.clone(),
                    );
                    tokio::pin!(pass);
                    loop {
                        tokio::select! {
                            r = &mut pass => break r,
                            // Dropping the pass cancels its transfers: temporaries go with
                            // the working folder, the index keeps only finished steps.
                            _ = tokio::signal::ctrl_c() => {
                                stopping = true;
                                break Err(anyhow::anyhow!("stopped: the agent was asked to quit"));
                            }
                            _ = terminate.recv() => {
                                stopping = true;
                                break Err(anyhow::anyhow!("stopped: the agent was asked to quit"));
                            }
                            _ = tokio::time::sleep_until(suspend_at) => {
                                break Err(anyhow::Error::new(SuspendedBySchedule));
                            }
                            Some(path) = inbox.local.recv() => daemon.on_local_change(&path, &config),
                            Some(task) = inbox.remote.recv() => daemon.run_soon(&task, false),
                            Some(task) = inbox.kicks.recv() => daemon.run_soon(&task, true),
                            Some((conn, back)) = inbox.probes.recv() => daemon.on_probe(&conn, back, &config),
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                                let paused = home.state().map(|s| s.paused).unwrap_or_default();
                                daemon.publish(&paused);
                            }
                        }
                    }
                };
                if let Some(cache) = cache {
                    daemon.caches.insert(name.clone(), cache);
                }
                result
            }
            Err(e) => Err(e),
        };
        let text = match result {
            Err(e) if e.is::<SuspendedBySchedule>() => daemon.suspended(&name),
            result => daemon.finish(&config, &name, result),
        };
        progress.line(&text);
        daemon.log_outcome(&name, &text);
        // Changes that arrived while the pass ended are pending, not "up to date".
        daemon.take(&mut inbox, &config);
        let paused = home.state().map(|s| s.paused).unwrap_or_default();
        daemon.publish(&paused);
    }
    // Stopping: give up the device claims, so `run --once` or the next agent may start now.
    for (_, conn) in daemon.conns.values() {
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.release_agent()).await;
    }
    Ok(())
}

/// Follows a drive task's folder journal with long-polls and names the task on `tx` whenever
/// another device changed something under its sub-folder.
fn follow_journal(
    config: &Config,
    name: &str,
    conn: &Arc<Connection>,
    tx: UnboundedSender<String>,
) -> Result<JournalFollower> {
    let task = &config.tasks[name];
    let remote = conn.remote(&task.folder);
    let prefix = task.remote_prefix(0)?;
    let me = config.device_id.clone();
    let name = name.to_string();
    Ok(JournalFollower(tokio::spawn(async move {
        // While this task lives, passes may rely on its waits (aborting it drops the mark).
        let _following = remote.following().start();
        let mut after = None;
        loop {
            let Some(from) = after else {
                match remote.identity().await {
                    Ok((_, head)) => after = Some(head),
                    Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
                }
                continue;
            };
            // Only other computers' changes come back: this one's own commits are no news.
            match remote.news(from, 30).await {
                Ok((changes, head)) => {
                    let news = changes
                        .iter()
                        .any(|v| v.device.0 != me && v.path.starts_with(&prefix));
                    if news && tx.send(name.clone()).is_err() {
                        return;
                    }
                    // A full page of changes elsewhere in the folder: read on from its end.
                    let full = changes.len() >= cairn_client::NEWS_PAGE as usize;
                    after = match changes.last() {
                        Some(last) if full && !news => Some(last.seq),
                        _ => Some(head.max(from)),
                    };
                }
                // A folder made again under its name: a pass merges with it, and the
                // follower starts over from the new folder's head.
                Err(cairn_client::Error::Renewed { .. }) => {
                    if tx.send(name.clone()).is_err() {
                        return;
                    }
                    after = None;
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_one_second_then_double_up_to_a_minute() {
        let mut waits = Vec::new();
        let mut w = None;
        for _ in 0..9 {
            let next = next_wait(w);
            waits.push(next.as_secs());
            w = Some(next);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_task_is_up_to_date_only_with_nothing_to_do() {
        let mut clock = TaskClock::new(serde_json::Value::Null);
        assert_eq!(
            clock.state(false),
            TaskState::Pending,
            "before its first pass"
        );
        clock.dirty = None;
        clock.last_full = Some(Instant::now());
        assert_eq!(clock.state(false), TaskState::UpToDate);
        assert_eq!(clock.state(true), TaskState::Paused);
        clock.dirty = Some(Instant::now());
        assert_eq!(clock.state(false), TaskState::Pending);
        clock.retry = Some(Retry {
            at: Instant::now(),
            wait: FIRST_RETRY,
        });
        assert_eq!(clock.state(false), TaskState::Error);
        clock.waiting = true;
        assert_eq!(clock.state(false), TaskState::WaitingForConfirmation);
        clock.running = true;
        assert_eq!(clock.state(false), TaskState::Running);
    }

    #[test]
    fn a_failed_pass_waits_for_its_retry_even_with_changes() {
        let now = Instant::now();
        let mut clock = TaskClock::new(serde_json::Value::Null);
        clock.last_full = Some(now);
        clock.dirty = now.checked_sub(DEBOUNCE);
        clock.retry = Some(Retry {
            at: now + Duration::from_secs(4),
            wait: Duration::from_secs(4),
        });
        let rescan = Duration::from_secs(600);
        assert!(!clock.is_due(now, rescan));
        assert!(clock.is_due(now + Duration::from_secs(4), rescan));
    }
}
