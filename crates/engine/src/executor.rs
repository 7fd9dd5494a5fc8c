//! The executor: runs any plan between two replicas, for every kind of task.
//!
//! The left replica is "here" (a local folder), the right one the "remote" (a cairn server,
//! later a cloud); the executor only speaks the [`Replica`] trait, so the same steps serve every
//! pair. Order within a pass: folders and links up, file contents up (`transfers` batches at a
//! time), moves made here, remote deletions, moves made there, local deletions (children first),
//! then downloads (folders and links in order, then contents). Every write, move and delete is
//! conditional on the version the plan saw (DESIGN.md invariant 5): a path that changed waits
//! for the next pass. Every agreed state is recorded in the index as it lands, in this one
//! place, so an interrupted pass keeps what it did.

mod fetch;
mod send;
mod settle;

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_model::conflict::conflict_name;
use cairn_model::{ContentHash, EntryKind, RelPath};

use crate::index::{IndexRow, LocalIndex};
use crate::reconcile::Action;
use crate::replica::{MoveOp, NewEntry, Outcome, Replica, ReplicaEntry, Traffic, Version, WriteOp};
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
    /// The pass ran download-only because the folder became read-only for the user (local
    /// changes stay here, unsent).
    pub read_only_now: bool,
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

/// Where and how a plan runs.
pub(crate) struct Ctx<'a> {
    pub task: &'a str,
    /// The index's number for this root of the task.
    pub root_no: u32,
    /// Here.
    pub left: &'a dyn Replica,
    /// The remote.
    pub right: &'a dyn Replica,
    pub progress: Arc<dyn Progress>,
    pub transfers: usize,
    /// This computer's name, for conflict copies.
    pub computer: &'a str,
    /// A write that met a newer remote version is made again over it (upload-only: the local
    /// state wins, the other version stays in the remote's history); otherwise the next pass
    /// sees it.
    pub rebase: bool,
    /// The remote's traffic counted so far (see [`Ctx::count_traffic`]).
    pub traffic: std::sync::Mutex<Traffic>,
}

impl Ctx<'_> {
    fn fail(&self, stats: &mut PassStats, path: &RelPath, reason: impl Into<String>) {
        stats.failed += 1;
        self.progress.event(ProgressEvent::Failed {
            path: path.to_string(),
            reason: reason.into(),
        });
    }

    /// Counts and reports what the remote sent since the last count (after each batch, so a
    /// progress bar moves while a pass runs).
    fn count_traffic(&self, stats: &mut PassStats) {
        let now = self.right.traffic();
        let mut seen = self
            .traffic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bytes = now.bytes.saturating_sub(seen.bytes);
        if bytes > 0 {
            self.progress.event(ProgressEvent::Transferred { bytes });
        }
        stats.bytes_sent += bytes;
        stats.chunks_sent += now.chunks.saturating_sub(seen.chunks);
        *seen = now;
    }
}

/// The agreed state of `path`: the local entry, the remote's version, the content's hash.
pub(crate) fn agreed(path: &RelPath, local: &ReplicaEntry, remote: &ReplicaEntry) -> IndexRow {
    agreed_as(path, local, remote.version.clone(), remote.hash)
}

pub(crate) fn agreed_as(
    path: &RelPath,
    local: &ReplicaEntry,
    remote: Version,
    hash: Option<ContentHash>,
) -> IndexRow {
    IndexRow {
        path: path.clone(),
        kind: local.kind,
        size: local.size,
        mtime_ns: local.mtime_ns,
        mode: local.mode,
        hash: match local.kind {
            EntryKind::Dir | EntryKind::Deleted => None,
            _ => local.hash.or(hash),
        },
        left: local.version.clone(),
        right: remote,
    }
}

/// What writing `e` on the other side means.
pub(crate) fn new_entry(e: &ReplicaEntry) -> NewEntry {
    NewEntry {
        kind: e.kind,
        size: match e.kind {
            EntryKind::Symlink => e.target.as_ref().map_or(0, |t| t.len() as u64),
            EntryKind::File => e.size,
            _ => 0,
        },
        mtime_ns: e.mtime_ns,
        mode: e.mode,
        hash: match e.kind {
            EntryKind::File | EntryKind::Symlink => e.hash,
            _ => None,
        },
        target: e.target.clone(),
    }
}

/// A batch's results, or the batch's own failure repeated for each item (a temporary one ends
/// the pass: returned as `Err`).
fn per_item<T>(n: usize, batch: Result<Vec<Result<T>>>) -> Result<Vec<Result<T>>> {
    match batch {
        Ok(results) if results.len() == n => Ok(results),
        Ok(results) => Err(Error::Refused(format!(
            "a replica answered {} results for {n} requests",
            results.len()
        ))),
        Err(e) if e.is_temporary() => Err(e),
        Err(e) => Ok((0..n).map(|_| Err(Error::Refused(e.to_string()))).collect()),
    }
}

pub(crate) async fn execute(
    ctx: &Ctx<'_>,
    actions: Vec<Action>,
    local: &BTreeMap<RelPath, ReplicaEntry>,
    index: &mut LocalIndex,
    stats: &mut PassStats,
) -> Result<()> {
    let (task, root) = (ctx.task, ctx.root_no);
    let mut uploads = Vec::new();
    let mut downloads = Vec::new();
    let mut remote_deletes = Vec::new();
    let mut local_deletes = Vec::new();
    let mut rows = Vec::new();
    let mut forget = Vec::new();
    let mut remote_moves = Vec::new();
    let mut local_moves = Vec::new();
    let mut remote_aside = Vec::new();
    let actions = settle::lost_writes(ctx, actions, local).await?;
    for a in actions {
        match a {
            Action::MoveRemote {
                from,
                from_base,
                to,
                ..
            } => {
                if let Some(l) = local.get(&to) {
                    remote_moves.push((from, from_base, to, l.clone()));
                }
            }
            Action::MoveLocal {
                from,
                expect,
                to,
                remote,
            } => local_moves.push((from, expect, to, remote)),
            Action::Upload { path, base } => {
                if let Some(l) = local.get(&path) {
                    uploads.push((path, l.clone(), base));
                }
            }
            Action::KeepRemoteCopyThenUpload { path, remote } => {
                if let Some(l) = local.get(&path) {
                    remote_aside.push((path, remote, l.clone()));
                }
            }
            Action::DeleteRemote { path, base } => remote_deletes.push((path, base)),
            Action::DeleteLocal { path, expect } => local_deletes.push((path, expect)),
            Action::Adopt { path, remote, hash } => {
                if let Some(l) = local.get(&path) {
                    rows.push(agreed_as(&path, l, remote, hash));
                }
            }
            Action::Forget { path } => forget.push(path),
            other => downloads.push(other),
        }
    }
    index.apply(task, root, &rows, &forget)?;
    let done = async {
        // Moves first: a renamed folder's files reach the other computers in the first commit
        // they see (their new folders follow), so they rename rather than wait a pass.
        move_remote(ctx, remote_moves, index, stats).await?;
        uploads.extend(set_remote_aside(ctx, remote_aside, stats).await?);
        send::upload(ctx, uploads, index, stats).await?;
        delete_remote(ctx, remote_deletes, index, stats).await?;
        move_local(ctx, local_moves, index, stats).await?;
        delete_local(ctx, local_deletes, index, stats).await?;
        // Downloads can send too: a losing local edit saved as a remote version.
        fetch::download(ctx, downloads, index, stats).await
    }
    .await;
    ctx.count_traffic(stats);
    done
}

/// Conflicts the local edit wins on a remote that keeps no versions: the remote's file moves
/// aside as a conflict copy there, and the local one is uploaded as new in its place.
async fn set_remote_aside(
    ctx: &Ctx<'_>,
    conflicts: Vec<(RelPath, ReplicaEntry, ReplicaEntry)>,
    stats: &mut PassStats,
) -> Result<Vec<send::Upload>> {
    let mut uploads = Vec::new();
    for (path, remote, local) in conflicts {
        match keep_aside(ctx, ctx.right, &path, &remote, "the remote's version").await {
            Ok(Some(_)) => uploads.push((path, local, None)),
            // Changed on the remote meanwhile: the next pass sees it anew.
            Ok(None) => {}
            Err(e) if e.is_temporary() => return Err(e),
            Err(e) => ctx.fail(stats, &path, e.to_string()),
        }
    }
    Ok(uploads)
}

/// Moves made here: the remote moves the content, nothing is uploaded; all in one call, so a
/// remote that can do it in one transaction never shows half a renamed folder.
async fn move_remote(
    ctx: &Ctx<'_>,
    moves: Vec<(RelPath, Version, RelPath, ReplicaEntry)>,
    index: &mut LocalIndex,
    stats: &mut PassStats,
) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let ops: Vec<MoveOp> = moves
        .iter()
        .map(|(from, base, to, l)| MoveOp {
            from: from.clone(),
            to: to.clone(),
            expect: base.clone(),
            entry: new_entry(l),
        })
        .collect();
    let results = per_item(ops.len(), ctx.right.rename_many(&ops).await)?;
    let (mut done, mut gone) = (Vec::new(), Vec::new());
    for ((from, _, to, l), r) in moves.into_iter().zip(results) {
        match r {
            Ok(Outcome::Done(Some(there))) => {
                stats.moved += 1;
                done.push(agreed(&to, &l, &there));
                gone.push(from);
            }
            // Changed on the remote meanwhile: the next pass sees it anew.
            Ok(_) => {}
            Err(e) => ctx.fail(stats, &to, e.to_string()),
        }
    }
    index.apply(ctx.task, ctx.root_no, &done, &gone)
}

async fn delete_remote(
    ctx: &Ctx<'_>,
    mut deletes: Vec<(RelPath, Version)>,
    index: &mut LocalIndex,
    stats: &mut PassStats,
) -> Result<()> {
    if deletes.is_empty() {
        return Ok(());
    }
    deletes.sort_by(|a, b| b.0.cmp(&a.0));
    let results = per_item(deletes.len(), ctx.right.delete_many(&deletes).await)?;
    let mut gone = Vec::new();
    for ((path, _), r) in deletes.into_iter().zip(results) {
        match r {
            Ok(Outcome::Done(_)) => {
                stats.deleted_remote += 1;
                ctx.progress
                    .event(ProgressEvent::Deleted { path: path.clone() });
                gone.push(path);
            }
            // Changed on the remote meanwhile: the next pass downloads it (edit beats delete).
            Ok(Outcome::Changed(_)) => {}
            Err(e) => ctx.fail(stats, &path, e.to_string()),
        }
    }
    index.apply(ctx.task, ctx.root_no, &[], &gone)
}

/// Moves made on the remote: renamed here instead of downloaded again, recorded in batches
/// (one transaction per move made a 10,000-file rename slow); a pass cut short before a batch
/// is recorded only re-adopts those paths next time.
async fn move_local(
    ctx: &Ctx<'_>,
    moves: Vec<(RelPath, ReplicaEntry, RelPath, ReplicaEntry)>,
    index: &mut LocalIndex,
    stats: &mut PassStats,
) -> Result<()> {
    for batch in moves.chunks(INDEX_BATCH) {
        let ops: Vec<MoveOp> = batch
            .iter()
            .map(|(from, expect, to, _)| MoveOp {
                from: from.clone(),
                to: to.clone(),
                expect: expect.version.clone(),
                entry: new_entry(expect),
            })
            .collect();
        let results = per_item(ops.len(), ctx.left.rename_many(&ops).await)?;
        let (mut done, mut gone) = (Vec::new(), Vec::new());
        for ((from, _, to, remote), r) in batch.iter().zip(results) {
            match r {
                Ok(Outcome::Done(Some(here))) => {
                    stats.moved += 1;
                    done.push(agreed(to, &here, remote));
                    gone.push(from.clone());
                }
                Ok(_) => {}
                Err(e) => ctx.fail(stats, to, format!("cannot move {from} here: {e}")),
            }
        }
        index.apply(ctx.task, ctx.root_no, &done, &gone)?;
    }
    Ok(())
}

/// Local deletions, children before parents. A folder that gained files here stays, and goes
/// back to the remote.
async fn delete_local(
    ctx: &Ctx<'_>,
    mut deletes: Vec<(RelPath, ReplicaEntry)>,
    index: &mut LocalIndex,
    stats: &mut PassStats,
) -> Result<()> {
    if deletes.is_empty() {
        return Ok(());
    }
    deletes.sort_by(|a, b| b.0.cmp(&a.0));
    let items: Vec<(RelPath, Version)> = deletes
        .iter()
        .map(|(p, e)| (p.clone(), e.version.clone()))
        .collect();
    let results = per_item(items.len(), ctx.left.delete_many(&items).await)?;
    let (mut gone, mut kept) = (Vec::new(), Vec::new());
    for ((path, expect), r) in deletes.into_iter().zip(results) {
        match r {
            Ok(Outcome::Done(_)) => {
                stats.deleted_local += 1;
                gone.push(path);
            }
            Ok(Outcome::Changed(_)) => {}
            Err(_) if expect.kind == EntryKind::Dir => kept.push(WriteOp {
                path,
                entry: new_entry(&expect),
                content: bytes::Bytes::new(),
                expect: None,
            }),
            Err(e) => ctx.fail(stats, &path, e.to_string()),
        }
    }
    index.apply(ctx.task, ctx.root_no, &[], &gone)?;
    if kept.is_empty() {
        return Ok(());
    }
    kept.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<RelPath> = kept.iter().map(|k| k.path.clone()).collect();
    let results = per_item(kept.len(), ctx.right.write_many(kept).await)?;
    let mut rows = Vec::new();
    for (path, r) in paths.iter().zip(results) {
        if let (Ok(Outcome::Done(Some(there))), Ok(Some(here))) = (r, ctx.left.stat(path).await) {
            rows.push(agreed(path, &here, &there));
        }
    }
    index.apply(ctx.task, ctx.root_no, &rows, &[])
}

/// Moves what is at `path` on `side` aside under a free conflict-copy name in the same folder,
/// named with the losing entry's modified date (as the seeds say); `None` when the path
/// changed since the plan. `kept` names what was moved, for the report.
pub(crate) async fn keep_aside(
    ctx: &Ctx<'_>,
    side: &dyn Replica,
    path: &RelPath,
    expect: &ReplicaEntry,
    kept: &str,
) -> Result<Option<RelPath>> {
    let name = if path.name().is_empty() {
        "file"
    } else {
        path.name()
    };
    let modified = (expect.mtime_ns / 1_000_000_000).max(0);
    let parent = path.parent().unwrap_or_default();
    for n in 1..10_000 {
        let Ok(aside) = parent.join(&conflict_name(name, ctx.computer, modified, n)) else {
            continue;
        };
        if side.stat(&aside).await?.is_some() {
            continue;
        }
        return match side.rename(path, &aside, &expect.version).await? {
            Outcome::Done(_) => {
                ctx.progress.event(ProgressEvent::Skipped {
                    path: path.to_string(),
                    reason: format!("conflict: {kept} was kept as {}", side_path(side, &aside)),
                });
                Ok(Some(aside))
            }
            Outcome::Changed(_) => Ok(None),
        };
    }
    Err(Error::Refused(format!(
        "no free conflict-copy name for {}",
        side_path(side, path)
    )))
}

/// `path` on `side`, for messages.
pub(crate) fn side_path(side: &dyn Replica, path: &RelPath) -> String {
    format!("{}/{path}", side.describe().trim_end_matches('/'))
}
