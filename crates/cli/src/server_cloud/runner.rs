//! The server's cloud task runner: runs beside `cairn server run` and keeps each server folder
//! that has a cloud task in sync with its cloud path, with the one pass every task runs
//! (folder side left, cloud right).
//!
//! A task acts as its owner through this server's own API, over loopback with the server's
//! certificate pinned and a token minted for the owner: every access rule of the API applies
//! to it, and a disabled owner or a revoked folder stops it at the next request. Passes run one
//! at a time (a cloud task must not starve the clients), when a task is added or asked to run,
//! when its folder's head moved (a client changed something), and every `poll_secs` for
//! changes made in the cloud.
//!
//! An encrypted task's cloud side is the cloud path behind the decryption layer, opened with
//! the key kept in the server's database (no password at run time); a plain task's path is
//! refused at every pass if it turns out encrypted, as a computer's task is. [`attach`] is
//! the look at a new task's path before it is saved (the API's [`CloudAttach`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cairn_client::replica::ServerReplica;
use cairn_client::{ConnectOptions, Connection, Trust};
use cairn_cloud::crypt::{self, EncryptedReplica, KdfParams, MasterKey};
use cairn_cloud::oauth::{Renewal, SaveToken};
use cairn_cloud::CloudReplica;
use cairn_engine::drive::RemoteCache;
use cairn_engine::executor::PassStats;
use cairn_engine::index::LocalIndex;
use cairn_engine::pass::{self, PassSpec};
use cairn_engine::reconcile::{ConflictPolicy, Direction, Guards};
use cairn_engine::replica::Replica;
use cairn_engine::{Progress, ProgressEvent};
use cairn_model::{DeviceId, RelPath};
use cairn_server::api::AppState;
use cairn_server::cloud::{AttachFuture, CheckedTask, CloudAttach, TaskSettings, TaskStatus};
use cairn_server::meta::{CloudConnectionRow, CloudTaskRow, Meta};

use crate::cloud_cmd::{open_replica, CloudTaskConfig};

/// How often the runner looks for work when nothing woke it.
const TICK: Duration = Duration::from_secs(2);
/// A pass that failed is tried again after this long, doubling to the task's poll period.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// What the runner remembers of one task between passes.
#[derive(Default)]
struct Seen {
    /// The folder's head when the last pass started.
    head: Option<i64>,
    last: Option<Instant>,
    /// While passes fail: when to try again, and the wait after that.
    retry: Option<(Instant, Duration)>,
    cache: Option<RemoteCache>,
}

pub struct Runner {
    state: Arc<AppState>,
    meta: Arc<Meta>,
    url: String,
    fingerprint: String,
    index_path: PathBuf,
    /// Where interrupted multipart uploads are recorded, one file per task.
    uploads_dir: PathBuf,
    seen: HashMap<i64, Seen>,
}

impl Runner {
    /// `url` reaches this server over loopback; `fingerprint` is its certificate's.
    pub fn new(state: Arc<AppState>, data: &Path, url: String, fingerprint: String) -> Self {
        state.set_cloud_attach(Arc::new(Attach {
            slots: tokio::sync::Semaphore::new(ATTACH_SLOTS),
        }));
        Runner {
            meta: state.meta(),
            state,
            url,
            fingerprint,
            index_path: data.join("cloud-tasks.db"),
            uploads_dir: data.join("cloud-uploads"),
            seen: HashMap::new(),
        }
    }

    /// Runs until the process ends.
    pub async fn run(mut self) {
        let wake = self.state.cloud_wake();
        loop {
            if let Err(e) = self.round().await {
                tracing::error!(error = format!("{e:#}"), "cloud task runner");
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// One look at every task; runs the passes that are due.
    async fn round(&mut self) -> Result<()> {
        let meta = self.meta.clone();
        let (tasks, conns) = tokio::task::spawn_blocking(move || -> Result<_> {
            Ok((meta.cloud_tasks(None)?, meta.cloud_connections(None)?))
        })
        .await??;
        let gone: Vec<i64> = self
            .seen
            .keys()
            .filter(|id| !tasks.iter().any(|t| t.id == **id))
            .copied()
            .collect();
        for id in gone {
            // A removed task's index rows would only mislead a task that reused its id.
            self.seen.remove(&id);
            LocalIndex::open(&self.index_path)?.forget_task(&index_key(id))?;
        }
        let live: HashSet<String> = tasks.iter().map(|t| index_key(t.id)).collect();
        sweep_uploads(&self.uploads_dir, &live);
        for task in tasks {
            let Some(conn) = conns.iter().find(|c| c.id == task.connection_id) else {
                continue;
            };
            let (due, head) = self.due(&task).await?;
            if !due {
                continue;
            }
            let seen = self.seen.entry(task.id).or_default();
            seen.head = head;
            seen.last = Some(Instant::now());
            let mut cache = seen.cache.take();
            let result = self.pass(&task, conn, &mut cache).await;
            let seen = self.seen.entry(task.id).or_default();
            seen.cache = cache;
            let status = self.record(&task, result);
            let meta = self.meta.clone();
            let id = task.id;
            tokio::task::spawn_blocking(move || meta.finish_cloud_pass(id, &status)).await??;
        }
        Ok(())
    }

    /// Whether `task` needs a pass now, and its folder's head.
    async fn due(&mut self, task: &CloudTaskRow) -> Result<(bool, Option<i64>)> {
        let meta = self.meta.clone();
        let (id, folder) = (task.id, task.folder.clone());
        let (asked, head) = tokio::task::spawn_blocking(move || -> Result<_> {
            let asked = meta.take_cloud_run(id)?;
            Ok((asked, meta.folder(&folder)?.map(|f| f.head.0)))
        })
        .await??;
        let seen = self.seen.entry(task.id).or_default();
        let now = Instant::now();
        if let Some((at, _)) = seen.retry {
            return Ok((asked || now >= at, head));
        }
        let poll = Duration::from_secs(task.settings.poll_secs);
        let polled = seen.last.is_none_or(|l| now.duration_since(l) >= poll);
        let moved = head.is_some() && head != seen.head;
        Ok((asked || polled || moved, head))
    }

    /// Turns a pass's result into the task's status, and schedules a retry after a failure.
    fn record(&mut self, task: &CloudTaskRow, result: Result<PassStats>) -> TaskStatus {
        let seen = self.seen.entry(task.id).or_default();
        let mut status = TaskStatus {
            last_ns: Some(crate::run::now_ns()),
            ..TaskStatus::default()
        };
        match result {
            Ok(s) => {
                seen.retry = None;
                status.summary = summary(&s);
                status.outcome = if s.failed > 0 { "failed_files" } else { "ok" }.into();
                tracing::info!(task = %task.name, owner = %task.owner, "cloud pass: {}", status.summary);
            }
            Err(e) => {
                let poll = Duration::from_secs(task.settings.poll_secs);
                let wait = seen.retry.map_or(FIRST_RETRY, |(_, w)| (w * 2).min(poll));
                seen.retry = Some((Instant::now() + wait, wait));
                // A failed pass forgets what it saw: the next one starts from a listing.
                seen.cache = None;
                let text = format!("{e:#}");
                tracing::warn!(task = %task.name, owner = %task.owner, error = %text, "cloud pass failed");
                status.outcome = "error".into();
                status.error = Some(text);
            }
        }
        status
    }

    async fn pass(
        &self,
        task: &CloudTaskRow,
        conn: &CloudConnectionRow,
        cache: &mut Option<RemoteCache>,
    ) -> Result<PassStats> {
        let server = Arc::new(self.session(task).await?);
        let folder_side =
            ServerReplica::new(Arc::new(server.remote(&task.folder)), RelPath::root());
        let s = &task.settings;
        let uploads = self
            .uploads_dir
            .join(format!("{}.json", index_key(task.id)));
        let plain = cloud_replica(conn, s, Some(&uploads))?
            .with_staging_owner(staging_owner(self.state.server_id(), task.id))
            .with_renewal(Renewal::of(
                &format!("server connection {}", conn.id),
                &conn.connection,
                &conn.secrets,
                save_token(&self.meta, conn.id),
            ));
        let cloud_side: Box<dyn Replica> = if s.encrypt {
            let meta = self.meta.clone();
            let id = task.id;
            let key = tokio::task::spawn_blocking(move || meta.cloud_task_key(id))
                .await??
                .context("the task encrypts, but its key is missing from the server's database")?;
            Box::new(
                EncryptedReplica::open_with_key(plain, key)
                    .await?
                    .with_seal_log(&uploads.with_extension("sealed")),
            )
        } else {
            crypt::refuse_if_encrypted(&plain).await?;
            Box::new(plain)
        };
        let filter = s.filter();
        let direction = match s.direction.as_str() {
            "upload-only" => Direction::UploadOnly,
            "download-only" => Direction::DownloadOnly,
            _ => Direction::TwoWay,
        };
        let key = index_key(task.id);
        let computer = format!("cloud task {}", task.name);
        let spec = PassSpec {
            task: &key,
            root_no: 0,
            direction,
            policy: ConflictPolicy::KeepLocal,
            keep_conflict_copy: false,
            keep_deleted: s.keep_deleted,
            consistency_check: false,
            filter: &filter,
            transfers: s.transfers,
            computer: &computer,
            guards: Guards {
                confirm_deletes: false,
                half_deletes: true,
            },
            dry_run: false,
        };
        let mut index = LocalIndex::open(&self.index_path)?;
        let progress: Arc<dyn Progress> = Arc::new(Logged(task.name.clone()));
        let stats = pass::run(
            &spec,
            &folder_side,
            cloud_side.as_ref(),
            &mut index,
            Some(cache),
            progress,
        )
        .await
        .with_context(|| format!("cloud task {} of user {}", task.name, task.owner))?;
        Ok(stats)
    }

    /// A session with this server as the task's owner, on the task's own device.
    async fn session(&self, task: &CloudTaskRow) -> Result<Connection> {
        let meta = self.meta.clone();
        let device = DeviceId(format!("cloud-task-{}", task.id));
        let (owner_id, d, computer) = (
            task.owner_id,
            device.clone(),
            format!("cloud task {}", task.name),
        );
        let owner = tokio::task::spawn_blocking(move || -> Result<_> {
            let user = meta
                .user_by_id(owner_id)?
                .with_context(|| format!("the owner (user #{owner_id}) no longer exists"))?;
            meta.remember_device(&user, &d, &computer)?;
            Ok(user)
        })
        .await??;
        anyhow::ensure!(!owner.disabled, "user {} is disabled", owner.name);
        let opts = ConnectOptions {
            url: self.url.clone(),
            user: owner.name.clone(),
            password: String::new(),
            trust: Trust::Fingerprint(self.fingerprint.clone()),
            proxy: None,
            device: device.clone(),
            computer: format!("cloud task {}", task.name),
            timeout: Duration::from_secs(60),
        };
        let state = self.state.clone();
        let mint = Arc::new(move || state.issue_token(&owner, &device.0));
        let features: Vec<String> = cairn_server::api::FEATURES.map(String::from).to_vec();
        Ok(Connection::new(opts)?.with_token_source(
            mint,
            self.state.server_id().to_string(),
            &features,
        ))
    }
}

/// Saves a renewed refresh token of connection `id` in the server's database. Called from
/// the pass's runtime: the write is short and local, as every other small write of a pass.
fn save_token(meta: &Arc<Meta>, id: i64) -> SaveToken {
    let meta = meta.clone();
    Box::new(move |token| {
        meta.set_cloud_secret(id, "refresh_token", token)
            .map_err(|e| e.to_string())
    })
}

/// The cloud path of a server task, in the clear (the decryption layer goes on top).
fn cloud_replica(
    conn: &CloudConnectionRow,
    s: &TaskSettings,
    uploads: Option<&Path>,
) -> Result<CloudReplica> {
    let cloud = CloudTaskConfig {
        poll_secs: s.poll_secs,
        part_size_mb: s.part_size_mb,
        keep_versions: s.keep_versions,
        encrypt: s.encrypt,
        storage_class: s.storage_class.clone(),
        sse: s.sse.clone(),
        ..CloudTaskConfig::default()
    };
    open_replica(
        &conn.name,
        &conn.connection,
        &conn.secrets,
        &cloud,
        &s.remote,
        s.transfers,
        uploads,
    )
}

/// How long adding a task without a password looks for an encrypted path's marker.
const MARKER_LOOK: std::time::Duration = std::time::Duration::from_secs(10);

/// Looks at a new task's cloud path before it is saved. With a password: turns encryption on
/// for it (an empty path), or opens it when it is on already (the same password), and gives
/// the key to keep. Without: refuses a path that is encrypted; one that cannot be read now
/// is left for the first pass to report, so a connection can be re-authorised later.
///
/// # Errors
/// A wrong password, a path holding files in the clear, an encrypted path for a plain task,
/// or (with a password) the cloud failing.
pub async fn attach(task: &CheckedTask) -> Result<Option<MasterKey>> {
    let s = &task.request.settings;
    let replica = cloud_replica(&task.connection, s, None)?;
    let described = replica.describe();
    let Some(password) = &task.password else {
        // A courtesy, bounded: every pass refuses an encrypted path anyway, so a cloud that
        // cannot be reached now does not hold the command up through all its retries.
        let look = tokio::time::timeout(MARKER_LOOK, crypt::read_marker(&replica)).await;
        if let Ok(Ok(Some(_))) = look {
            crypt::refuse_if_encrypted(&replica).await?;
        }
        return Ok(None);
    };
    let encrypted = EncryptedReplica::enable(replica, &password.0, KdfParams::default())
        .await
        .with_context(|| format!("turning encryption on for {described}"))?;
    Ok(Some(encrypted.key().clone()))
}

/// How many new tasks' paths the API looks at at once: each with a password runs Argon2id
/// (64 MiB by default), which a user could otherwise ask for without bound.
const ATTACH_SLOTS: usize = 2;

/// [`attach`] for the API.
struct Attach {
    slots: tokio::sync::Semaphore,
}

impl CloudAttach for Attach {
    fn attach<'a>(&'a self, task: &'a CheckedTask) -> AttachFuture<'a> {
        Box::pin(async move {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| "the server is stopping".to_string())?;
            attach(task).await.map_err(|e| format!("{e:#}"))
        })
    }
}

/// The tag of a server task's temporaries on file-like services (this server's identity and
/// the task's id, which never change while the task lives): its next pass removes what an
/// interrupted one left, as a computer's task does, and leaves every other task's alone.
fn staging_owner(server_id: &str, task_id: i64) -> String {
    cairn_cloud::replica::owner_tag(&["server", server_id, &index_key(task_id)])
}

/// A task's rows in the runner's index.
pub fn index_key(id: i64) -> String {
    format!("server-cloud-{id}")
}

/// Removes the upload records (`server-cloud-N.json`, `.sealed`) of tasks that no longer
/// exist, removed while the server ran or while it was down. Best effort: a record left
/// behind costs a few bytes, and the next round tries again.
fn sweep_uploads(dir: &Path, live: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let task = name.split('.').next().unwrap_or_default();
        if task.starts_with("server-cloud-") && !live.contains(task) {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a removed task's upload record");
            }
        }
    }
}

fn summary(s: &PassStats) -> String {
    format!(
        "{} to the cloud, {} from the cloud, {} moved, {} deleted in the folder, {} deleted in the cloud, {} conflicts, {} failed, {} reported",
        s.uploaded, s.downloaded, s.moved, s.deleted_local, s.deleted_remote, s.conflicts, s.failed, s.reported
    )
}

/// Progress of a server task: problems in the server's log, the rest at debug level.
struct Logged(String);

impl Progress for Logged {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Failed { path, reason } => {
                tracing::warn!(task = %self.0, path = %path, reason = %reason, "cloud task: failed")
            }
            ProgressEvent::Skipped { path, reason } => {
                tracing::info!(task = %self.0, path = %path, reason = %reason, "cloud task: skipped")
            }
            other => tracing::debug!(task = %self.0, event = ?other, "cloud task"),
        }
    }
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    #[test]
    fn upload_records_of_removed_tasks_go_and_others_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "server-cloud-1.json",
            "server-cloud-1.sealed",
            "server-cloud-2.json",
            "server-cloud-12.json",
            "0123456789abcdef.json",
        ] {
            std::fs::write(dir.path().join(name), b"{}").expect("write");
        }
        let live: HashSet<String> = [index_key(2)].into_iter().collect();
        sweep_uploads(dir.path(), &live);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["0123456789abcdef.json", "server-cloud-2.json"]);
    }
}
