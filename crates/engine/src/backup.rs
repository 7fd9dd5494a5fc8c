//! Backup tasks: one pass that makes the remote hold what each local root holds.
//!
//! The pass: check the root is there, take a complete remote listing, scan, plan, then record
//! folders and links, upload files (small ones in batches, large ones streamed window by
//! window so memory stays bounded), and finally record deletions. Only chunks the remote lacks
//! are sent. A file is committed only if its size, mtime, ctime and inode are the same after
//! reading as before (DESIGN.md invariant 6); otherwise it is reported and retried next pass.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cairn_model::{
    chunk_reader, ChunkId, ChunkRef, ContentHash, Entry, EntryKind, Filter, RelPath, Seq,
};
use cairn_protocol::{Change, ChangeResult, ChunkSpan};
use futures_util::stream::{self, StreamExt};

use crate::executor::{PassStats, Planned};
use crate::index::{IndexRow, LocalIndex};
use crate::pass::{self, PassSpec};
use crate::plan;
use crate::reconcile::{ConflictPolicy, Direction, Guards};
use crate::remote::Remote;
use crate::scanner::{self, LocalEntry};
use crate::{Error, Progress, ProgressEvent, Result};

/// Files below this size are read whole and sent in batches with others.
const SMALL_FILE: u64 = 1024 * 1024;
/// Rounds of uploads in one pass: files whose chunks gc collected before their commit are
/// sent again in the next round.
const UPLOAD_ROUNDS: usize = 3;
/// Small-file batches read ahead of the ones being sent.
const READERS: usize = 2;
/// Most files and bytes one small-file batch carries.
const BATCH_FILES: usize = 1000;
const BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// Largest upload request body the client builds.
const UPLOAD_REQUEST: usize = 16 * 1024 * 1024;
/// How much of a large file is chunked before asking the server what it lacks.
const WINDOW: usize = 4 * 1024 * 1024;
/// Windows of one large file sent at once.
const WINDOWS_IN_FLIGHT: usize = 3;

/// One local folder of a task and where it lands in the remote folder.
#[derive(Clone, Debug)]
pub struct BackupRoot {
    pub local: PathBuf,
    pub remote_prefix: RelPath,
}

#[derive(Clone, Debug)]
pub struct BackupOptions {
    pub filter: Filter,
    pub keep_deleted: bool,
    pub transfers: usize,
    /// Lets a pass delete on the server although the local folder became empty.
    pub confirm_deletes: bool,
    /// Plan only and report (`BackupStats::planned`); change nothing.
    pub dry_run: bool,
}

#[derive(Debug, Default)]
pub struct BackupStats {
    pub files_uploaded: u64,
    pub dirs_recorded: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub bytes_sent: u64,
    pub chunks_sent: u64,
    pub failed: u64,
    pub reported: u64,
    /// A dry run: what the pass would do, and why.
    pub planned: Vec<Planned>,
}

/// Runs one backup pass over every root of `task`: the one [`pass`] every task runs,
/// upload-only, without the half-delete guard (the server keeps every deleted file as a
/// version).
///
/// # Errors
/// A missing or unreadable root, a failed remote listing, or a local index failure stop the
/// pass before anything is deleted. Failures of single files are reported through `progress`
/// and counted in the stats instead.
pub async fn run(
    task: &str,
    roots: &[BackupRoot],
    remote: Arc<dyn Remote>,
    index: &mut LocalIndex,
    opts: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupStats> {
    let mut stats = BackupStats::default();
    for r in roots {
        scanner::check_root(&r.local)?;
    }
    for (i, root) in roots.iter().enumerate() {
        let spec = PassSpec {
            task,
            root_no: i as u32,
            root: &root.local,
            prefix: &root.remote_prefix,
            direction: Direction::UploadOnly,
            policy: ConflictPolicy::KeepLatest,
            keep_conflict_copy: false,
            keep_deleted: opts.keep_deleted,
            consistency_check: false,
            filter: &opts.filter,
            transfers: opts.transfers,
            computer: "",
            guards: Guards {
                confirm_deletes: opts.confirm_deletes,
                half_deletes: false,
            },
            dry_run: opts.dry_run,
        };
        let pass = pass::run(&spec, remote.clone(), index, &mut None, progress.clone()).await?;
        stats.add(&pass);
    }
    Ok(stats)
}

impl BackupStats {
    fn add(&mut self, p: &PassStats) {
        self.files_uploaded += p.uploaded - p.recorded;
        self.dirs_recorded += p.recorded;
        self.deleted += p.deleted_remote;
        self.unchanged += p.unchanged;
        self.bytes_sent += p.bytes_sent;
        self.chunks_sent += p.chunks_sent;
        self.failed += p.failed;
        self.reported += p.reported;
        self.planned.extend(p.planned.iter().cloned());
    }
}

pub(crate) use crate::retry::retrying;

/// Where and how [`upload_files`] sends.
pub(crate) struct UploadSetup {
    pub remote: Arc<dyn Remote>,
    pub local_root: PathBuf,
    pub prefix: RelPath,
    pub progress: Arc<dyn Progress>,
    pub transfers: usize,
    /// Re-base a change that met a newer head (backup: local wins, the other version stays in
    /// history); otherwise the conflict is reported back for the planner's next pass.
    pub rebase: bool,
}

#[derive(Default)]
pub(crate) struct Uploaded {
    pub files: u64,
    pub failed: u64,
    pub bytes_sent: u64,
    pub chunks_sent: u64,
    /// Paths that met a newer head (only without `rebase`).
    pub conflicts: Vec<RelPath>,
}

/// Uploads files (content) and commits them, `transfers` jobs at a time; `on_rows` records
/// each committed batch in the index as it lands, so an interrupted pass keeps what it did.
pub(crate) async fn upload_files(
    setup: &UploadSetup,
    uploads: Vec<(LocalEntry, Option<Seq>)>,
    on_rows: &mut dyn FnMut(&[IndexRow]) -> Result<()>,
) -> Result<Uploaded> {
    let mut done = Uploaded::default();
    let mut pending = uploads;
    for (entry, _) in &pending {
        setup.progress.event(ProgressEvent::Queued {
            path: entry.path.clone(),
            size: entry.size,
        });
    }
    for round in 0..UPLOAD_ROUNDS {
        let ctx = Arc::new(JobContext {
            remote: setup.remote.clone(),
            local_root: setup.local_root.clone(),
            prefix: setup.prefix.clone(),
            progress: setup.progress.clone(),
            sent: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            final_round: round + 1 == UPLOAD_ROUNDS,
            rebase: setup.rebase,
        });
        let jobs = make_jobs(std::mem::take(&mut pending));
        let mut results = stream::iter(jobs.into_iter().map(|job| prepare(ctx.clone(), job)))
            .buffered(READERS)
            .map(|prepared| {
                let ctx = ctx.clone();
                async move { run_job(ctx, prepared?).await }
            })
            .buffer_unordered(setup.transfers.max(1));
        while let Some(outcome) = results.next().await {
            let outcome = outcome?;
            done.files += outcome.rows.len() as u64;
            done.failed += outcome.failed;
            done.conflicts.extend(outcome.conflicts);
            pending.extend(outcome.again);
            on_rows(&outcome.rows)?;
        }
        done.bytes_sent += ctx.sent.load(Ordering::Relaxed);
        done.chunks_sent += ctx.chunks.load(Ordering::Relaxed);
        if pending.is_empty() {
            break;
        }
    }
    Ok(done)
}

/// Small files go in batches, large ones one job each.
fn make_jobs(uploads: Vec<(LocalEntry, Option<Seq>)>) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut small: Vec<(LocalEntry, Option<Seq>)> = Vec::new();
    let mut small_bytes = 0;
    for (entry, base) in uploads {
        if entry.size < SMALL_FILE {
            small_bytes += entry.size;
            small.push((entry, base));
            if small.len() >= BATCH_FILES || small_bytes >= BATCH_BYTES {
                jobs.push(Job::Small(std::mem::take(&mut small)));
                small_bytes = 0;
            }
        } else {
            jobs.push(Job::Large(entry, base));
        }
    }
    if !small.is_empty() {
        jobs.push(Job::Small(small));
    }
    jobs
}

pub(crate) fn describe(r: &ChangeResult) -> String {
    match r {
        ChangeResult::Accepted { seq } => format!("accepted as version {seq}"),
        ChangeResult::Conflict { .. } => "changed on the server meanwhile".into(),
        ChangeResult::MissingChunks { chunks } => format!(
            "{} chunks vanished from the server; will retry",
            chunks.len()
        ),
        ChangeResult::Refused { reason } => format!("refused by the server: {reason}"),
    }
}

/// Commits, and re-bases changes that met a newer head once: a backup task owns its
/// sub-folder, so its local state wins while the other version stays in history.
pub(crate) async fn commit_rebasing(
    remote: &dyn Remote,
    mut changes: Vec<Change>,
) -> Result<Vec<ChangeResult>> {
    let mut results = retrying(|| remote.commit(&changes)).await?;
    let retry: Vec<usize> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| matches!(r, ChangeResult::Conflict { .. }).then_some(i))
        .collect();
    if retry.is_empty() {
        return Ok(results);
    }
    let again: Vec<Change> = retry
        .iter()
        .map(|&i| {
            let head = match &results[i] {
                ChangeResult::Conflict { head } => head.as_ref().map(|h| h.seq),
                _ => None,
            };
            changes[i].base = head;
            changes[i].clone()
        })
        .collect();
    let second = retrying(|| remote.commit(&again)).await?;
    for (i, r) in retry.into_iter().zip(second) {
        results[i] = r;
    }
    Ok(results)
}

enum Job {
    Small(Vec<(LocalEntry, Option<Seq>)>),
    Large(LocalEntry, Option<Seq>),
}

struct JobContext {
    /// The last round reports chunks gc took meanwhile as failures instead of retrying.
    final_round: bool,
    rebase: bool,
    remote: Arc<dyn Remote>,
    local_root: PathBuf,
    prefix: RelPath,
    progress: Arc<dyn Progress>,
    sent: AtomicU64,
    chunks: AtomicU64,
}

#[derive(Default)]
struct JobOutcome {
    rows: Vec<IndexRow>,
    failed: u64,
    /// Files whose chunks gc collected between upload and commit: sent again next round.
    again: Vec<(LocalEntry, Option<Seq>)>,
    conflicts: Vec<RelPath>,
}

/// A file read completely, with the stat it had while being read.
struct ReadFile {
    entry: LocalEntry,
    base: Option<Seq>,
    hash: ContentHash,
    chunks: Vec<ChunkRef>,
}

enum ReadError {
    /// Gone before we could read it: nothing to back up, nothing to report as failure.
    Vanished,
    Failed(String),
}

fn local_path(root: &Path, rel: &RelPath) -> PathBuf {
    rel.components().fold(root.to_path_buf(), |p, c| p.join(c))
}

/// Checks that the file still has the stat it had when it was opened.
fn stat_unchanged(path: &Path, before: &LocalEntry) -> std::result::Result<(), ReadError> {
    let after = std::fs::symlink_metadata(path).map_err(|_| ReadError::Vanished)?;
    let same = after.len() == before.size
        && after.mtime() * 1_000_000_000 + after.mtime_nsec() == before.mtime_ns
        && after.ctime() * 1_000_000_000 + after.ctime_nsec() == before.ctime_ns
        && after.ino() == before.inode;
    if same {
        Ok(())
    } else {
        Err(ReadError::Failed(
            "changed while it was read; it will be backed up on the next pass".into(),
        ))
    }
}

/// Opens a file and returns it with its stat at open time.
fn open_file(path: &Path, rel: &RelPath) -> std::result::Result<(File, LocalEntry), ReadError> {
    let f = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::Vanished,
        _ => ReadError::Failed(format!("cannot open: {e}")),
    })?;
    let md = f
        .metadata()
        .map_err(|e| ReadError::Failed(format!("cannot stat: {e}")))?;
    if !md.is_file() {
        return Err(ReadError::Failed("is no longer a regular file".into()));
    }
    Ok((
        f,
        LocalEntry::from_metadata(rel.clone(), EntryKind::File, &md, None),
    ))
}

/// A small file read whole, with its chunks' bytes.
type SmallRead = std::result::Result<(ReadFile, Vec<(ChunkId, Bytes)>), ReadError>;

/// Reads small files whole: their bytes, chunked, ready to send.
fn read_small(root: &Path, files: Vec<(LocalEntry, Option<Seq>)>) -> Vec<(RelPath, SmallRead)> {
    files
        .into_iter()
        .map(|(entry, base)| {
            let path = local_path(root, &entry.path);
            let rel = entry.path.clone();
            let read = (|| {
                let (f, stat) = open_file(&path, &entry.path)?;
                let mut data = Vec::new();
                let digest = chunk_reader(f, stat.size, &path.display().to_string(), |c, bytes| {
                    data.push((c.id, Bytes::copy_from_slice(bytes)));
                    Ok(())
                })
                .map_err(|e| ReadError::Failed(e.to_string()))?;
                stat_unchanged(&path, &stat)?;
                if digest.size != stat.size {
                    return Err(ReadError::Failed(
                        "changed while it was read; it will be backed up on the next pass".into(),
                    ));
                }
                Ok((
                    ReadFile {
                        entry: stat,
                        base,
                        hash: digest.hash,
                        chunks: digest.chunks,
                    },
                    data,
                ))
            })();
            (rel, read)
        })
        .collect()
}

/// A job whose local reading is done (small files) or still to do (a large file, streamed).
enum Prepared {
    Small {
        ready: Vec<ReadFile>,
        chunks: HashMap<ChunkId, Bytes>,
        failed: u64,
    },
    Large(LocalEntry, Option<Seq>),
}

/// First stage: reads a batch of small files on a blocking thread. Runs ahead of the sending
/// stage so the disk and the network are busy at the same time.
async fn prepare(ctx: Arc<JobContext>, job: Job) -> Result<Prepared> {
    match job {
        Job::Large(entry, base) => Ok(Prepared::Large(entry, base)),
        Job::Small(files) => {
            for (e, _) in &files {
                ctx.progress.event(ProgressEvent::Uploading {
                    path: e.path.clone(),
                });
            }
            let root = ctx.local_root.clone();
            let read = tokio::task::spawn_blocking(move || read_small(&root, files))
                .await
                .map_err(|e| Error::Refused(format!("reader failed: {e}")))?;
            let mut ready = Vec::new();
            let mut chunks: HashMap<ChunkId, Bytes> = HashMap::new();
            let mut failed = 0;
            for (rel, r) in read {
                match r {
                    Ok((file, data)) => {
                        chunks.extend(data);
                        ready.push(file);
                    }
                    Err(ReadError::Vanished) => {}
                    Err(ReadError::Failed(why)) => {
                        failed += 1;
                        ctx.progress.event(ProgressEvent::Failed {
                            path: rel.to_string(),
                            reason: why,
                        });
                    }
                }
            }
            Ok(Prepared::Small {
                ready,
                chunks,
                failed,
            })
        }
    }
}

/// Second stage: sends what the server lacks and commits.
async fn run_job(ctx: Arc<JobContext>, job: Prepared) -> Result<JobOutcome> {
    let mut outcome = JobOutcome::default();
    let ready: Vec<ReadFile> = match job {
        Prepared::Small {
            ready,
            chunks,
            failed,
        } => {
            outcome.failed = failed;
            send_missing(&ctx, chunks).await?;
            ready
        }
        Prepared::Large(entry, base) => {
            ctx.progress.event(ProgressEvent::Uploading {
                path: entry.path.clone(),
            });
            match stream_large(&ctx, entry.clone(), base).await? {
                Ok(file) => vec![file],
                Err(ReadError::Vanished) => Vec::new(),
                Err(ReadError::Failed(why)) => {
                    outcome.failed += 1;
                    ctx.progress.event(ProgressEvent::Failed {
                        path: entry.path.to_string(),
                        reason: why,
                    });
                    Vec::new()
                }
            }
        }
    };
    if ready.is_empty() {
        return Ok(outcome);
    }
    let changes: Vec<Change> = ready
        .iter()
        .map(|f| Change {
            path: ctx.prefix.join_path(&f.entry.path),
            base: f.base,
            entry: Entry {
                kind: EntryKind::File,
                size: f.entry.size,
                mtime_ns: f.entry.mtime_ns,
                mode: f.entry.mode,
                hash: Some(f.hash),
                target: None,
            },
            chunks: f
                .chunks
                .iter()
                .map(|c| ChunkSpan {
                    id: c.id,
                    len: c.len,
                })
                .collect(),
            moved_from: None,
        })
        .collect();
    let results = if ctx.rebase {
        commit_rebasing(ctx.remote.as_ref(), changes).await?
    } else {
        retrying(|| ctx.remote.commit(&changes)).await?
    };
    for (file, result) in ready.into_iter().zip(results) {
        match result {
            ChangeResult::Accepted { seq } => {
                ctx.progress.event(ProgressEvent::Uploaded {
                    path: file.entry.path.clone(),
                    size: file.entry.size,
                });
                outcome
                    .rows
                    .push(plan::index_row(&file.entry, Some(file.hash), seq));
            }
            ChangeResult::MissingChunks { .. } if !ctx.final_round => {
                outcome.again.push((file.entry, file.base))
            }
            other => {
                outcome.failed += 1;
                ctx.progress.event(ProgressEvent::Failed {
                    path: file.entry.path.to_string(),
                    reason: describe(&other),
                });
            }
        }
    }
    Ok(outcome)
}

/// Asks which chunks the remote lacks and uploads those, in requests of bounded size.
async fn send_missing(ctx: &JobContext, chunks: HashMap<ChunkId, Bytes>) -> Result<()> {
    if chunks.is_empty() {
        return Ok(());
    }
    let ids: Vec<ChunkId> = chunks.keys().copied().collect();
    let missing = retrying(|| ctx.remote.missing(&ids)).await?;
    let mut batch: Vec<(ChunkId, Bytes)> = Vec::new();
    let mut size = 0;
    for id in missing {
        if let Some(data) = chunks.get(&id) {
            size += data.len();
            batch.push((id, data.clone()));
            if size >= UPLOAD_REQUEST {
                upload(ctx, std::mem::take(&mut batch)).await?;
                size = 0;
            }
        }
    }
    if !batch.is_empty() {
        upload(ctx, batch).await?;
    }
    Ok(())
}

async fn upload(ctx: &JobContext, batch: Vec<(ChunkId, Bytes)>) -> Result<()> {
    let sent = retrying(|| ctx.remote.upload(&batch)).await?;
    ctx.sent.fetch_add(sent, Ordering::Relaxed);
    ctx.chunks.fetch_add(batch.len() as u64, Ordering::Relaxed);
    ctx.progress
        .event(ProgressEvent::Transferred { bytes: sent });
    Ok(())
}

/// Chunks a large file on a blocking thread, window by window, while the async side asks for
/// and sends the chunks the remote lacks; memory stays at about two windows.
async fn stream_large(
    ctx: &JobContext,
    entry: LocalEntry,
    base: Option<Seq>,
) -> Result<std::result::Result<ReadFile, ReadError>> {
    let path = local_path(&ctx.local_root, &entry.path);
    let rel = entry.path.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<HashMap<ChunkId, Bytes>>(WINDOWS_IN_FLIGHT);
    let reader =
        tokio::task::spawn_blocking(move || -> std::result::Result<ReadFile, ReadError> {
            let (f, stat) = open_file(&path, &rel)?;
            let mut window: HashMap<ChunkId, Bytes> = HashMap::new();
            let mut window_bytes = 0usize;
            let digest = chunk_reader(f, stat.size, &path.display().to_string(), |c, bytes| {
                window_bytes += bytes.len();
                window.insert(c.id, Bytes::copy_from_slice(bytes));
                if window_bytes >= WINDOW {
                    window_bytes = 0;
                    if tx.blocking_send(std::mem::take(&mut window)).is_err() {
                        return Err(cairn_model::Error::Read {
                            what: path.display().to_string(),
                            source: std::io::Error::other("upload stopped"),
                        });
                    }
                }
                Ok(())
            })
            .map_err(|e| ReadError::Failed(e.to_string()))?;
            if !window.is_empty() && tx.blocking_send(window).is_err() {
                return Err(ReadError::Failed("upload stopped".into()));
            }
            stat_unchanged(&path, &stat)?;
            if digest.size != stat.size {
                return Err(ReadError::Failed(
                    "changed while it was read; it will be backed up on the next pass".into(),
                ));
            }
            Ok(ReadFile {
                entry: stat,
                base,
                hash: digest.hash,
                chunks: digest.chunks,
            })
        });
    // Two windows in flight: one is asked about or sent while the next is on the wire.
    let windows = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|w| (w, rx)) });
    let mut sends = Box::pin(
        windows
            .map(|w| send_missing(ctx, w))
            .buffer_unordered(WINDOWS_IN_FLIGHT),
    );
    let mut send_error = None;
    while let Some(sent) = sends.next().await {
        if let Err(e) = sent {
            send_error = Some(e);
            break;
        }
    }
    // Dropping the stream drops the receiver, which stops a reader still blocked on sending.
    drop(sends);
    let read = reader
        .await
        .map_err(|e| Error::Refused(format!("reader failed: {e}")))?;
    if let Some(e) = send_error {
        return Err(e);
    }
    Ok(read)
}
