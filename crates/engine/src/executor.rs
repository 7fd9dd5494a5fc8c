//! The executor: runs any plan against a local folder and a remote, for every kind of task.
//!
//! Order within a pass: folders and links up, file contents up (`transfers` at a time, small
//! files batched), moves made here, remote deletions, moves made there, local deletions
//! (children first), then downloads (folders and links in order, then contents, fetched into the
//! working folder, made durable with one sync, and renamed into place). Every agreed state is
//! recorded in the index as it lands, in this one place, so an interrupted pass keeps what it
//! did. A local file is replaced or removed only if it still has the stat the plan saw (DESIGN.md
//! invariant 5); otherwise the path waits for the next pass.

use std::collections::BTreeMap;

use cairn_model::chunking::most_chunks;
use cairn_model::{DeviceId, Entry, EntryKind, RelPath};
use cairn_protocol::{Change, ChangeResult, ChunkSpan, MovedFrom, VersionInfo};
use futures_util::stream::{self, StreamExt};
use std::sync::Arc;

use crate::backup::{commit_rebasing, describe, retrying, upload_files, UploadSetup};
use crate::index::{IndexRow, LocalIndex};
use crate::local_root::{LocalRoot, WorkDir};
use crate::plan::{entry_of, index_row};
use crate::reconcile::{Action, LocalState};
use crate::remote::{Remote, RemoteEntry};
use crate::restore::{fetch_verified, keep_aside, listed_under_non_folders, write_fetched};
use crate::scanner::LocalEntry;
use crate::{Error, Progress, ProgressEvent, Result};

/// Index rows recorded per transaction where steps are many and small (local moves).
const INDEX_BATCH: usize = 1000;

/// What a pass did, for every kind of task.
#[derive(Debug, Default)]
pub struct PassStats {
    /// Files, folders and links sent (folders and links also count in `recorded`).
    pub uploaded: u64,
    /// Folders and links sent.
    pub recorded: u64,
    pub downloaded: u64,
    pub deleted_local: u64,
    pub deleted_remote: u64,
    pub conflicts: u64,
    pub moved: u64,
    pub failed: u64,
    /// Paths left out and reported (special files, names the remote cannot hold, ...).
    pub reported: u64,
    pub unchanged: u64,
    pub bytes_sent: u64,
    pub chunks_sent: u64,
    /// The pass stopped before deleting: it waits for `--confirm-deletes`.
    pub waiting_for_confirmation: Option<String>,
    /// A dry run: what the pass would do, and why (nothing was done).
    pub planned: Vec<Planned>,
}

/// One step a dry run would take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// "upload", "download", "delete here", "skip", ...
    pub what: &'static str,
    pub path: String,
    pub why: String,
}

/// Moves per commit request: the server's limit of changes is sized for moves, which write two
/// versions each.
const MOVES_PER_COMMIT: usize = cairn_protocol::MAX_COMMIT_CHANGES;

/// `moves` cut into commits within the server's limits: at most [`MOVES_PER_COMMIT`] moves,
/// and at most `MAX_COMMIT_CHUNKS` chunk references brought along by the moved files (the
/// server copies each one's list). A file over that limit alone goes in a commit of its own.
fn move_batches<T>(moves: &[T], chunks_of: impl Fn(&T) -> u64) -> Vec<&[T]> {
    let max_refs = cairn_protocol::MAX_COMMIT_CHUNKS as u64;
    let mut out = Vec::new();
    let (mut start, mut refs) = (0, 0u64);
    for (i, m) in moves.iter().enumerate() {
        let n = chunks_of(m);
        if i > start && (i - start >= MOVES_PER_COMMIT || refs + n > max_refs) {
            out.push(&moves[start..i]);
            (start, refs) = (i, 0);
        }
        refs += n;
    }
    if start < moves.len() {
        out.push(&moves[start..]);
    }
    out
}

/// The local entry at `path` now, if any (a link on the way is not followed).
fn stat_now(root: &LocalRoot, rel: &RelPath) -> Option<LocalEntry> {
    let md = root.stat(rel).ok()??;
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::File
    };
    let target = if kind == EntryKind::Symlink {
        root.read_link(rel)
    } else {
        None
    };
    Some(LocalEntry::from_metadata(rel.clone(), kind, &md, target))
}

/// True when the local path still is what the plan saw (`None`: nothing there).
fn unchanged(root: &LocalRoot, rel: &RelPath, expect: Option<&LocalEntry>) -> bool {
    match (stat_now(root, rel), expect) {
        (None, None) => true,
        (Some(now), Some(e)) => {
            now.kind == e.kind
                && (now.kind == EntryKind::Dir
                    || now.same_stat(e.size, e.mtime_ns, e.ctime_ns, e.inode))
        }
        _ => false,
    }
}

/// Where and how a plan runs.
pub(crate) struct Ctx<'a> {
    pub task: &'a str,
    /// The index's number for this local root of the task.
    pub root_no: u32,
    pub root: &'a LocalRoot,
    pub prefix: &'a RelPath,
    pub remote: Arc<dyn Remote>,
    pub work: &'a WorkDir,
    pub progress: Arc<dyn Progress>,
    pub transfers: usize,
    /// This computer's name, for conflict copies.
    pub computer: &'a str,
    /// A change that met a newer head is re-based and sent again (upload-only: the local
    /// state wins, the other version stays in history); otherwise the next pass sees it.
    pub rebase: bool,
}

impl Ctx<'_> {
    fn fail(&self, stats: &mut PassStats, path: &RelPath, reason: impl Into<String>) {
        stats.failed += 1;
        self.progress.event(ProgressEvent::Failed {
            path: path.to_string(),
            reason: reason.into(),
        });
    }

    fn version(&self, path: &RelPath, r: &RemoteEntry) -> VersionInfo {
        VersionInfo {
            path: self.prefix.join_path(path),
            seq: r.seq,
            entry: r.entry.clone(),
            device: DeviceId(String::new()),
            user: String::new(),
            computer: String::new(),
            committed_ns: 0,
        }
    }
}

pub(crate) async fn execute(
    ctx: &Ctx<'_>,
    actions: Vec<Action>,
    local: &BTreeMap<RelPath, LocalState>,
    index: &mut LocalIndex,
    stats: &mut PassStats,
) -> Result<()> {
    let task = ctx.task;
    let mut file_uploads = Vec::new();
    let mut meta_uploads = Vec::new();
    let mut downloads = Vec::new();
    let mut remote_deletes = Vec::new();
    let mut local_deletes = Vec::new();
    let mut rows = Vec::new();
    let mut forget = Vec::new();
    let mut remote_moves = Vec::new();
    let mut local_moves = Vec::new();
    for a in actions {
        match a {
            Action::MoveRemote {
                from,
                from_base,
                to,
                to_base,
            } => remote_moves.push((from, from_base, to, to_base)),
            Action::MoveLocal {
                from,
                expect,
                to,
                remote,
            } => local_moves.push((from, expect, to, remote)),
            Action::Upload { path, base } => match local.get(&path) {
                Some(l) if l.entry.kind == EntryKind::File => {
                    file_uploads.push((l.entry.clone(), base))
                }
                Some(l) => meta_uploads.push((l.clone(), base)),
                None => {}
            },
            Action::DeleteRemote { path, base } => remote_deletes.push((path, base)),
            Action::DeleteLocal { path, expect } => local_deletes.push((path, expect)),
            Action::Adopt { path, seq, hash } => {
                if let Some(l) = local.get(&path) {
                    rows.push(index_row(&l.entry, hash.or(l.hash), seq));
                }
            }
            Action::Forget { path } => forget.push(path),
            other => downloads.push(other),
        }
    }
    index.apply(task, ctx.root_no, &rows, &forget)?;

    // Folders and links first, parents before children.
    meta_uploads.sort_by(|a, b| a.0.entry.path.cmp(&b.0.entry.path));
    if !meta_uploads.is_empty() {
        let changes: Vec<Change> = meta_uploads
            .iter()
            .map(|(l, base)| Change {
                path: ctx.prefix.join_path(&l.entry.path),
                base: *base,
                entry: entry_of(&l.entry),
                chunks: Vec::new(),
                moved_from: None,
            })
            .collect();
        let results = if ctx.rebase {
            commit_rebasing(ctx.remote.as_ref(), changes).await?
        } else {
            retrying(|| ctx.remote.commit(&changes)).await?
        };
        let mut done = Vec::new();
        for ((l, _), r) in meta_uploads.iter().zip(results) {
            match r {
                ChangeResult::Accepted { seq } => {
                    stats.uploaded += 1;
                    stats.recorded += 1;
                    done.push(index_row(&l.entry, l.hash, seq));
                }
                ChangeResult::Conflict { .. } => {}
                other => ctx.fail(stats, &l.entry.path, describe(&other)),
            }
        }
        index.apply(task, ctx.root_no, &done, &[])?;
    }

    if !file_uploads.is_empty() {
        let setup = UploadSetup {
            remote: ctx.remote.clone(),
            local_root: ctx.root.path().to_path_buf(),
            prefix: ctx.prefix.clone(),
            progress: ctx.progress.clone(),
            transfers: ctx.transfers,
            rebase: ctx.rebase,
        };
        let up = upload_files(&setup, file_uploads, &mut |rows| {
            index.apply(task, ctx.root_no, rows, &[])
        })
        .await?;
        stats.uploaded += up.files;
        stats.failed += up.failed;
        stats.bytes_sent += up.bytes_sent;
        stats.chunks_sent += up.chunks_sent;
    }

    // Moves made here: the server moves the content, nothing is uploaded.
    // One transaction for all moves, so other computers never see half a renamed folder.
    let batches = move_batches(&remote_moves, |(_, _, to, _)| {
        local
            .get(to)
            .filter(|l| l.entry.kind == EntryKind::File)
            .map_or(0, |l| most_chunks(l.entry.size))
    });
    for batch in batches {
        let moves: Vec<(&RelPath, &RelPath, &LocalState, Change)> = batch
            .iter()
            .filter_map(|(from, from_base, to, to_base)| {
                let l = local.get(to)?;
                let change = Change {
                    path: ctx.prefix.join_path(to),
                    base: *to_base,
                    entry: Entry {
                        hash: l.hash,
                        ..entry_of(&l.entry)
                    },
                    chunks: Vec::new(),
                    moved_from: Some(MovedFrom {
                        path: ctx.prefix.join_path(from),
                        base: *from_base,
                    }),
                };
                Some((from, to, l, change))
            })
            .collect();
        let changes: Vec<Change> = moves.iter().map(|m| m.3.clone()).collect();
        let results = retrying(|| ctx.remote.commit(&changes)).await?;
        let (mut done, mut gone) = (Vec::new(), Vec::new());
        for ((from, to, l, _), r) in moves.into_iter().zip(results) {
            match r {
                ChangeResult::Accepted { seq } => {
                    stats.moved += 1;
                    done.push(index_row(&l.entry, l.hash, seq));
                    gone.push(from.clone());
                }
                // Changed on the server meanwhile: the next pass sees it anew.
                ChangeResult::Conflict { .. } => {}
                other => ctx.fail(stats, to, describe(&other)),
            }
        }
        index.apply(task, ctx.root_no, &done, &gone)?;
    }

    if !remote_deletes.is_empty() {
        let changes: Vec<Change> = remote_deletes
            .iter()
            .map(|(path, base)| Change {
                path: ctx.prefix.join_path(path),
                base: Some(*base),
                entry: Entry {
                    kind: EntryKind::Deleted,
                    size: 0,
                    mtime_ns: crate::now_ns(),
                    mode: 0,
                    hash: None,
                    target: None,
                },
                chunks: Vec::new(),
                moved_from: None,
            })
            .collect();
        let results = retrying(|| ctx.remote.commit(&changes)).await?;
        let mut gone = Vec::new();
        for ((path, _), r) in remote_deletes.iter().zip(results) {
            match r {
                ChangeResult::Accepted { .. } => {
                    stats.deleted_remote += 1;
                    ctx.progress
                        .event(ProgressEvent::Deleted { path: path.clone() });
                    gone.push(path.clone());
                }
                // Changed on the server meanwhile: the next pass downloads it (edit beats delete).
                ChangeResult::Conflict { .. } => {}
                other => ctx.fail(stats, path, describe(&other)),
            }
        }
        index.apply(task, ctx.root_no, &[], &gone)?;
    }

    // Moves made on the server: rename here instead of downloading again. The index takes
    // them in batches (one transaction per move made a 10,000-file rename slow); a pass cut
    // short before a batch is recorded only re-adopts those paths next time.
    let (mut moved_rows, mut moved_from) = (Vec::new(), Vec::new());
    for (from, expect, to, r) in local_moves {
        if !unchanged(ctx.root, &from, Some(&expect)) || stat_now(ctx.root, &to).is_some() {
            continue;
        }
        let moved = to
            .parent()
            .map_or(Ok(()), |parent| ctx.root.create_dir_all(&parent))
            .and_then(|()| ctx.root.rename(&from, &to));
        match moved {
            Ok(()) => {
                stats.moved += 1;
                if let Some(now) = stat_now(ctx.root, &to) {
                    moved_rows.push(index_row(&now, r.entry.hash, r.seq));
                    moved_from.push(from);
                }
                if moved_rows.len() >= INDEX_BATCH {
                    index.apply(task, ctx.root_no, &moved_rows, &moved_from)?;
                    (moved_rows, moved_from) = (Vec::new(), Vec::new());
                }
            }
            Err(e) => ctx.fail(
                stats,
                &to,
                format!("cannot move {} here: {e}", ctx.root.full(&from).display()),
            ),
        }
    }
    index.apply(task, ctx.root_no, &moved_rows, &moved_from)?;

    // Local deletions, children before parents.
    local_deletes.sort_by(|a, b| b.0.cmp(&a.0));
    for (path, expect) in local_deletes {
        if !unchanged(ctx.root, &path, Some(&expect)) {
            continue;
        }
        let removed = if expect.kind == EntryKind::Dir {
            ctx.root.remove_dir(&path)
        } else {
            ctx.root.remove_file(&path)
        };
        match removed {
            Ok(()) => {
                stats.deleted_local += 1;
                index.apply(task, ctx.root_no, &[], std::slice::from_ref(&path))?;
            }
            // A folder that gained files here stays, and goes back to the server.
            Err(_) if expect.kind == EntryKind::Dir => {
                let change = Change {
                    path: ctx.prefix.join_path(&path),
                    base: None,
                    entry: entry_of(&expect),
                    chunks: Vec::new(),
                    moved_from: None,
                };
                if let Some(ChangeResult::Accepted { seq }) =
                    retrying(|| ctx.remote.commit(std::slice::from_ref(&change)))
                        .await?
                        .into_iter()
                        .next()
                {
                    index.apply(task, ctx.root_no, &[index_row(&expect, None, seq)], &[])?;
                }
            }
            Err(e) => ctx.fail(stats, &path, e.to_string()),
        }
    }
    // Downloads, parents before children so folders exist when their files arrive.
    // Folders and links first, in order (parents before children), then file contents,
    // `transfers` at a time.
    downloads.sort_by(|a, b| a.path().cmp(b.path()));
    let kinds: Vec<(RelPath, EntryKind)> = downloads
        .iter()
        .filter_map(|a| match a {
            Action::Download { path, remote, .. }
            | Action::KeepLocalCopyThenDownload { path, remote, .. }
            | Action::SaveLocalThenDownload { path, remote, .. } => {
                Some((path.clone(), remote.entry.kind))
            }
            _ => None,
        })
        .collect();
    let shadowed = listed_under_non_folders(kinds.iter().map(|(p, k)| (p, *k)));
    downloads.retain(|a| match shadowed.get(a.path()) {
        Some(ancestor) => {
            ctx.fail(
                stats,
                a.path(),
                format!("listed under {ancestor}, which is not a folder; not written"),
            );
            false
        }
        None => true,
    });
    let (contents, structure): (Vec<Action>, Vec<Action>) =
        downloads.into_iter().partition(|a| match a {
            Action::Download { remote, .. }
            | Action::KeepLocalCopyThenDownload { remote, .. }
            | Action::SaveLocalThenDownload { remote, .. } => remote.entry.kind == EntryKind::File,
            _ => false,
        });
    for a in structure {
        let path = a.path().clone();
        match download(ctx, a).await {
            Ok(Some(row)) => {
                stats.downloaded += 1;
                index.apply(task, ctx.root_no, &[row], &[])?;
            }
            Ok(None) => {}
            Err(e) if e.is_temporary() => return Err(e),
            Err(e) => ctx.fail(stats, &path, e.to_string()),
        }
    }
    // Plain downloads: fetch every file into the working folder, sync the file system once,
    // then rename each into place (one syncfs instead of an fsync per file). Conflict
    // resolutions go one by one.
    let (plain, resolving): (Vec<Action>, Vec<Action>) =
        contents.into_iter().partition(|a| matches!(a, Action::Download { expect, .. } if expect.as_ref().is_none_or(|e| e.kind == EntryKind::File)));
    let mut outcomes = Downloads::default();
    let mut fetched = fetch_plain(
        ctx,
        plain
            .into_iter()
            .filter_map(|a| match a {
                Action::Download {
                    path,
                    remote,
                    expect,
                } => Some((path, remote, expect)),
                _ => None,
            })
            .collect(),
    )
    .await;
    // Placed parents before children whatever order the fetches finished in: a file listed
    // under a file then always meets the file (and is reported), never turns it into a folder.
    fetched.sort_by(|a, b| a.0.cmp(&b.0));
    if fetched.iter().any(|f| f.3.is_ok()) {
        ctx.work.sync_filesystem().await?;
    }
    for (path, remote, expect, tmp) in fetched {
        let placed = tmp.and_then(|t| place_fetched(ctx, &path, &remote, expect.as_ref(), t));
        outcomes.record(ctx, stats, &path, placed);
    }
    let mut fetched = stream::iter(resolving.into_iter().map(|a| async move {
        let path = a.path().clone();
        (path, download(ctx, a).await)
    }))
    .buffer_unordered(ctx.transfers.max(1));
    while let Some((path, result)) = fetched.next().await {
        outcomes.record(ctx, stats, &path, result);
    }
    index.apply(task, ctx.root_no, &outcomes.rows, &[])?;
    if let Some(e) = outcomes.first_temporary {
        return Err(e);
    }

    Ok(())
}

/// A plain download: the path, its remote version, what the plan saw here.
type PlainDownload = (RelPath, RemoteEntry, Option<LocalEntry>);

/// Files up to this size are fetched in batches, many in one request.
const BATCH_FILE_MAX: u64 = 64 * 1024;

/// Fetches plain downloads into the working folder, `transfers` requests at a time: small
/// files in batches (one request each, within the protocol's bounds), the others one by one.
/// Every file is checked against its hash. A batch that fails is fetched again file by file, so
/// one bad file fails alone.
async fn fetch_plain(
    ctx: &Ctx<'_>,
    downloads: Vec<PlainDownload>,
) -> Vec<(RelPath, RemoteEntry, Option<LocalEntry>, Result<String>)> {
    let (small, large): (Vec<_>, Vec<_>) = downloads
        .into_iter()
        .partition(|(_, r, _)| r.entry.size <= BATCH_FILE_MAX);
    let mut jobs: Vec<Vec<PlainDownload>> = Vec::new();
    let mut bytes = 0u64;
    for d in small {
        let full = jobs.last().is_none_or(|j| {
            j.len() >= cairn_protocol::MAX_BATCH_FILES
                || bytes + d.1.entry.size > cairn_protocol::MAX_BATCH_BYTES
        });
        if full {
            jobs.push(Vec::new());
            bytes = 0;
        }
        bytes += d.1.entry.size;
        jobs.last_mut().expect("a batch was just pushed").push(d);
    }
    jobs.extend(large.into_iter().map(|d| vec![d]));
    let done: Vec<Vec<_>> = stream::iter(jobs)
        .map(|job| async move {
            let versions: Vec<VersionInfo> =
                job.iter().map(|(p, r, _)| ctx.version(p, r)).collect();
            let batch = match job.len() {
                1 => None,
                _ => ctx.remote.contents(&versions).await.ok(),
            };
            let mut out = Vec::with_capacity(job.len());
            for (i, ((path, remote, expect), v)) in job.into_iter().zip(&versions).enumerate() {
                let tmp = match batch.as_ref().and_then(|b| b.get(i)) {
                    Some(data) => write_fetched(v, data, ctx.work, ctx.progress.as_ref()),
                    None => fetch_verified(
                        ctx.remote.as_ref(),
                        v,
                        ctx.work,
                        ctx.progress.as_ref(),
                        false,
                    )
                    .await
                    .map(|(t, _)| t),
                };
                out.push((path, remote, expect, tmp));
            }
            out
        })
        .buffer_unordered(ctx.transfers.max(1))
        .collect()
        .await;
    done.into_iter().flatten().collect()
}

/// Applies one download-side action; `None` when the local path changed since the plan (the
/// next pass sees it again).
async fn download(ctx: &Ctx<'_>, action: Action) -> Result<Option<IndexRow>> {
    match action {
        Action::Download {
            path,
            remote,
            expect,
        } => place(ctx, &path, &remote, expect.as_ref()).await,
        Action::KeepLocalCopyThenDownload {
            path,
            remote,
            expect,
        } => {
            if !unchanged(ctx.root, &path, Some(&expect)) {
                return Ok(None);
            }
            let kept = keep_aside(ctx.root, &path, ctx.computer)?;
            ctx.progress.event(ProgressEvent::Skipped {
                path: path.to_string(),
                reason: format!("conflict: the local copy was kept as {}", kept.display()),
            });
            place(ctx, &path, &remote, None).await
        }
        Action::SaveLocalThenDownload {
            path,
            remote,
            expect,
        } => {
            if !unchanged(ctx.root, &path, Some(&expect)) {
                return Ok(None);
            }
            // 1. The local loser becomes a version on the server.
            let setup = UploadSetup {
                remote: ctx.remote.clone(),
                local_root: ctx.root.path().to_path_buf(),
                prefix: ctx.prefix.clone(),
                progress: ctx.progress.clone(),
                transfers: 1,
                rebase: false,
            };
            let mut saved = Vec::new();
            let up = upload_files(
                &setup,
                vec![(expect.clone(), Some(remote.seq))],
                &mut |rows| {
                    saved.extend_from_slice(rows);
                    Ok(())
                },
            )
            .await?;
            let Some(saved) = saved.into_iter().next().filter(|_| up.failed == 0) else {
                return Ok(None);
            };
            // 2. The winner becomes the head again, without moving its content.
            let full = ctx.prefix.join_path(&path);
            let chunks: Vec<ChunkSpan> = if remote.entry.kind == EntryKind::File {
                ctx.remote.chunk_list(&full, remote.seq).await?
            } else {
                Vec::new()
            };
            let change = Change {
                path: full,
                base: Some(saved.seq),
                entry: remote.entry.clone(),
                chunks,
                moved_from: None,
            };
            let result = retrying(|| ctx.remote.commit(std::slice::from_ref(&change))).await?;
            let Some(ChangeResult::Accepted { seq }) = result.into_iter().next() else {
                return Ok(None);
            };
            // 3. And lands here.
            let head = RemoteEntry {
                seq,
                entry: remote.entry.clone(),
            };
            let now = stat_now(ctx.root, &path);
            place(ctx, &path, &head, now.as_ref()).await
        }
        _ => Ok(None),
    }
}

/// What the downloads of a pass came to: rows for the index, and the first temporary error
/// (which ends the pass after the others are recorded; the next pass retries).
#[derive(Default)]
struct Downloads {
    rows: Vec<IndexRow>,
    first_temporary: Option<Error>,
}

impl Downloads {
    fn record(
        &mut self,
        ctx: &Ctx<'_>,
        stats: &mut PassStats,
        path: &RelPath,
        result: Result<Option<IndexRow>>,
    ) {
        match result {
            Ok(Some(row)) => {
                stats.downloaded += 1;
                self.rows.push(row);
            }
            Ok(None) => {}
            Err(e) if e.is_temporary() => {
                self.first_temporary.get_or_insert(e);
            }
            Err(e) => ctx.fail(stats, path, e.to_string()),
        }
    }
}

/// A local folder stands where a file or link must go: removes it when empty (its synced
/// children were deleted earlier in the pass), or keeps it under a conflict-copy name when it
/// still holds something. False when the path changed since the plan.
fn clear_folder(ctx: &Ctx<'_>, path: &RelPath, expect: Option<&LocalEntry>) -> Result<bool> {
    if !expect.is_some_and(|e| e.kind == EntryKind::Dir) {
        return Ok(true);
    }
    match ctx.root.stat(path)? {
        Some(md) if md.is_dir() => {
            if ctx.root.remove_dir(path).is_err() {
                keep_aside(ctx.root, path, ctx.computer)?;
            }
            Ok(true)
        }
        Some(_) => Ok(false),
        None => Ok(true),
    }
}

/// Renames a fetched, verified (and durable) temporary file into place if the local path is
/// still `expect`; anything newer waits for the next pass.
fn place_fetched(
    ctx: &Ctx<'_>,
    path: &RelPath,
    r: &RemoteEntry,
    expect: Option<&LocalEntry>,
    tmp: String,
) -> Result<Option<IndexRow>> {
    if !unchanged(ctx.root, path, expect) {
        ctx.work.remove(&tmp);
        return Ok(None);
    }
    ctx.root.place(ctx.work, &tmp, path)?;
    ctx.progress.event(ProgressEvent::Downloaded {
        path: path.clone(),
        size: r.entry.size,
    });
    let now = stat_now(ctx.root, path).ok_or_else(|| {
        Error::Refused(format!(
            "{} vanished after download",
            ctx.root.full(path).display()
        ))
    })?;
    Ok(Some(index_row(&now, r.entry.hash, r.seq)))
}

/// Writes the remote state at `path` if the local path is still `expect`.
async fn place(
    ctx: &Ctx<'_>,
    path: &RelPath,
    r: &RemoteEntry,
    expect: Option<&LocalEntry>,
) -> Result<Option<IndexRow>> {
    match r.entry.kind {
        EntryKind::Dir => {
            match expect.map(|e| e.kind) {
                Some(EntryKind::Dir) => {}
                Some(_) => {
                    if !unchanged(ctx.root, path, expect) {
                        return Ok(None);
                    }
                    keep_aside(ctx.root, path, ctx.computer)?;
                    ctx.root.create_dir_all(path)?;
                }
                None => ctx.root.create_dir_all(path)?,
            }
            ctx.root.set_dir_mode(path, r.entry.mode)?;
        }
        EntryKind::Symlink => {
            if !clear_folder(ctx, path, expect)? {
                return Ok(None);
            }
            let expect = expect.filter(|e| e.kind != EntryKind::Dir);
            let target = r.entry.target.clone().unwrap_or_default();
            let tmp = ctx.work.create_link(&target)?;
            if !unchanged(ctx.root, path, expect)
                || expect.is_some_and(|e| e.kind == EntryKind::Dir)
            {
                ctx.work.remove(&tmp);
                return Ok(None);
            }
            ctx.root.place(ctx.work, &tmp, path)?;
        }
        EntryKind::File => {
            if !clear_folder(ctx, path, expect)? {
                return Ok(None);
            }
            let expect = expect.filter(|e| e.kind != EntryKind::Dir);
            let (tmp, _) = fetch_verified(
                ctx.remote.as_ref(),
                &ctx.version(path, r),
                ctx.work,
                ctx.progress.as_ref(),
                true,
            )
            .await?;
            return place_fetched(ctx, path, r, expect, tmp);
        }
        EntryKind::Deleted => return Ok(None),
    }
    let now = stat_now(ctx.root, path).ok_or_else(|| {
        Error::Refused(format!(
            "{} vanished after download",
            ctx.root.full(path).display()
        ))
    })?;
    Ok(Some(index_row(&now, r.entry.hash, r.seq)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_batches_respect_both_limits() {
        let max = cairn_protocol::MAX_COMMIT_CHUNKS as u64;
        let small = vec![1u64; MOVES_PER_COMMIT * 2 + 3];
        let sizes: Vec<usize> = move_batches(&small, |n| *n)
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![MOVES_PER_COMMIT, MOVES_PER_COMMIT, 3]);
        // Large files: cut by the chunk references they bring; one over the limit goes alone.
        let big = vec![max / 2, max / 2, 1, max * 3, 5];
        let cut: Vec<&[u64]> = move_batches(&big, |n| *n);
        assert_eq!(cut, vec![&big[0..2], &big[2..3], &big[3..4], &big[4..5]]);
        assert!(move_batches(&Vec::<u64>::new(), |n| *n).is_empty());
    }
}
