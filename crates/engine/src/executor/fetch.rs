//! Bringing remote state here: folders and links first, in order (parents before children),
//! then file contents, `transfers` at a time: small files in batches (one read call there, one
//! write call here, which a local folder makes durable with one sync), large ones streamed.
//! Conflict resolutions go one by one. Every write is conditional on what the plan saw here.

use bytes::Bytes;
use cairn_model::{EntryKind, RelPath};
use futures_util::stream::{self, StreamExt};

use super::send::batches;
use super::{agreed, keep_aside, new_entry, per_item, Ctx, PassStats};
use crate::index::{IndexRow, LocalIndex};
use crate::reconcile::Action;
use crate::replica::{content_of, Outcome, ReplicaEntry, WriteOp};
use crate::restore::listed_under_non_folders;
use crate::{Error, ProgressEvent, Result};

/// Files up to this size are fetched in batches, many in one request.
const BATCH_FILE_MAX: u64 = 64 * 1024;
/// Most bytes of one batch of small downloads.
const BATCH_BYTES: u64 = 16 * 1024 * 1024;

/// A plain download: the path, its remote entry, what the plan saw here.
type Plain = (RelPath, ReplicaEntry, Option<ReplicaEntry>);

pub(super) async fn download(
    ctx: &Ctx<'_>,
    mut downloads: Vec<Action>,
    index: &mut LocalIndex,
    stats: &mut PassStats,
) -> Result<()> {
    downloads.sort_by(|a, b| a.path().cmp(b.path()));
    drop_shadowed(ctx, &mut downloads, stats);
    let mut outcomes = Outcomes::default();
    let (files, structure): (Vec<Action>, Vec<Action>) = downloads
        .into_iter()
        .partition(|a| remote_of(a).is_some_and(|r| r.kind == EntryKind::File));
    // Folders and links first, in order, so parents exist before their children arrive:
    // runs of plain ones in one call each, the others one by one between them.
    let mut run: Vec<Plain> = Vec::new();
    for a in structure {
        if is_plain(&a) {
            run.extend(plain_of(a));
            continue;
        }
        for (path, r) in write_here(ctx, std::mem::take(&mut run)).await? {
            outcomes.record(ctx, stats, &path, r);
        }
        let path = a.path().clone();
        let r = resolve(ctx, a).await;
        outcomes.record(ctx, stats, &path, r);
    }
    for (path, r) in write_here(ctx, run).await? {
        outcomes.record(ctx, stats, &path, r);
    }
    outcomes.flush(ctx, index)?;
    let (plain, resolving): (Vec<Action>, Vec<Action>) = files.into_iter().partition(is_plain);
    let files: Vec<Plain> = plain.into_iter().flat_map(plain_of).collect();
    let (small, large): (Vec<Plain>, Vec<Plain>) =
        files.into_iter().partition(|d| d.1.size <= BATCH_FILE_MAX);
    let mut fetched = stream::iter(batches(small, |d| d.1.size, BATCH_BYTES))
        .map(|batch| fetch_batch(ctx, batch))
        .buffer_unordered(ctx.transfers.max(1));
    while let Some(results) = fetched.next().await {
        for (path, r) in results {
            outcomes.record(ctx, stats, &path, r);
        }
        outcomes.flush(ctx, index)?;
    }
    drop(fetched);
    let mut fetched = stream::iter(large.into_iter().map(|(path, remote, expect)| async move {
        let r = place(ctx, &path, &remote, expect.as_ref()).await;
        (path, r)
    }))
    .buffer_unordered(ctx.transfers.max(1));
    while let Some((path, r)) = fetched.next().await {
        outcomes.record(ctx, stats, &path, r);
        outcomes.flush(ctx, index)?;
    }
    drop(fetched);
    let mut resolved = stream::iter(resolving.into_iter().map(|a| async move {
        let path = a.path().clone();
        (path, resolve(ctx, a).await)
    }))
    .buffer_unordered(ctx.transfers.max(1));
    while let Some((path, r)) = resolved.next().await {
        outcomes.record(ctx, stats, &path, r);
    }
    outcomes.flush(ctx, index)?;
    outcomes.first_temporary.map_or(Ok(()), Err)
}

fn plain_of(a: Action) -> Option<Plain> {
    match a {
        Action::Download {
            path,
            remote,
            expect,
        } => Some((path, remote, expect)),
        _ => None,
    }
}

/// A download that replaces nothing, or a file with a file: no folder to clear, no conflict.
fn is_plain(a: &Action) -> bool {
    match a {
        Action::Download { remote, expect, .. } => match expect.as_ref().map(|e| e.kind) {
            None => true,
            Some(EntryKind::Dir) => remote.kind == EntryKind::Dir,
            Some(_) => remote.kind != EntryKind::Dir,
        },
        _ => false,
    }
}

fn remote_of(a: &Action) -> Option<ReplicaEntry> {
    match a {
        Action::Download { remote, .. }
        | Action::KeepLocalCopyThenDownload { remote, .. }
        | Action::SaveLocalThenDownload { remote, .. } => Some(remote.clone()),
        _ => None,
    }
}

/// Entries listed under a remote file or link cannot be written: reported, not written.
fn drop_shadowed(ctx: &Ctx<'_>, downloads: &mut Vec<Action>, stats: &mut PassStats) {
    let kinds: Vec<(RelPath, EntryKind)> = downloads
        .iter()
        .filter_map(|a| Some((a.path().clone(), remote_of(a)?.kind)))
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
}

/// Writes folders and links in one call, in order.
async fn write_here(ctx: &Ctx<'_>, items: Vec<Plain>) -> Result<Vec<Fetched>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let ops: Vec<WriteOp> = items
        .iter()
        .map(|(path, remote, expect)| WriteOp {
            path: path.clone(),
            entry: new_entry(remote),
            content: Bytes::new(),
            expect: expect.as_ref().map(|e| e.version.clone()),
        })
        .collect();
    let results = per_item(ops.len(), ctx.left.write_many(ops).await)?;
    Ok(items
        .into_iter()
        .zip(results)
        .map(|((path, remote, _), r)| {
            let row = landed(ctx, &path, &remote, r);
            (path, row)
        })
        .collect())
}

/// A download's path and what it came to.
type Fetched = (RelPath, Result<Option<IndexRow>>);

/// One batch of small files: read there in one call, written here in one call.
async fn fetch_batch(ctx: &Ctx<'_>, batch: Vec<Plain>) -> Vec<Fetched> {
    let items: Vec<(RelPath, ReplicaEntry)> = batch
        .iter()
        .map(|(p, r, _)| (p.clone(), r.clone()))
        .collect();
    let read = match per_item(items.len(), ctx.right.read_many(&items).await) {
        Ok(r) => r,
        Err(e) => {
            let message = e.to_string();
            let temporary = e.is_temporary();
            return batch
                .into_iter()
                .map(|(p, _, _)| {
                    let e = if temporary {
                        Error::Remote {
                            message: message.clone(),
                            temporary: true,
                        }
                    } else {
                        Error::Refused(message.clone())
                    };
                    (p, Err(e))
                })
                .collect();
        }
    };
    let mut ops = Vec::new();
    let mut writing = Vec::new();
    let mut out = Vec::new();
    for ((path, remote, expect), data) in batch.into_iter().zip(read) {
        match data {
            Ok(content) => {
                ops.push(WriteOp {
                    path: path.clone(),
                    entry: new_entry(&remote),
                    content,
                    expect: expect.map(|e| e.version),
                });
                writing.push((path, remote));
            }
            Err(e) if moved_on(ctx, &path, &remote, &e).await => out.push((path, Ok(None))),
            Err(e) => out.push((path, Err(e))),
        }
    }
    match per_item(ops.len(), ctx.left.write_many(ops).await) {
        Ok(results) => {
            for ((path, remote), r) in writing.into_iter().zip(results) {
                let row = landed(ctx, &path, &remote, r);
                out.push((path, row));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for (path, _) in writing {
                out.push((path, Err(Error::Refused(message.clone()))));
            }
        }
    }
    out
}

/// What a write here came to: the agreed row, or `None` when the path changed meanwhile.
fn landed(
    ctx: &Ctx<'_>,
    path: &RelPath,
    remote: &ReplicaEntry,
    result: Result<Outcome>,
) -> Result<Option<IndexRow>> {
    match result? {
        Outcome::Done(Some(here)) => {
            if remote.kind == EntryKind::File {
                ctx.progress.event(ProgressEvent::Downloaded {
                    path: path.clone(),
                    size: remote.size,
                });
            }
            Ok(Some(agreed(path, &here, remote)))
        }
        Outcome::Done(None) => Err(Error::Refused(format!(
            "{} vanished after download",
            super::side_path(ctx.left, path)
        ))),
        // A folder was made there meanwhile (a move here made it as a parent): the same.
        Outcome::Changed(Some(here))
            if here.kind == EntryKind::Dir && remote.kind == EntryKind::Dir =>
        {
            Ok(Some(agreed(path, &here, remote)))
        }
        Outcome::Changed(_) => Ok(None),
    }
}

/// Writes the remote state at `path` if the local path is still `expect`.
async fn place(
    ctx: &Ctx<'_>,
    path: &RelPath,
    remote: &ReplicaEntry,
    expect: Option<&ReplicaEntry>,
) -> Result<Option<IndexRow>> {
    let written = async {
        let content = match remote.kind {
            EntryKind::File => ctx.right.read(path, &remote.version).await?,
            _ => content_of(Bytes::new()),
        };
        let expect = expect.map(|e| &e.version);
        ctx.left
            .write(path, &new_entry(remote), content, expect)
            .await
    }
    .await;
    match written {
        Err(e) if moved_on(ctx, path, remote, &e).await => Ok(None),
        r => landed(ctx, path, remote, r),
    }
}

/// Whether a download of `remote` failed with `e` only because the remote path moved on
/// while it was read (another computer's edit, rename or delete): no failure then, the next
/// pass sees the path anew. Said as a skip, so the pass's report still shows it.
async fn moved_on(ctx: &Ctx<'_>, path: &RelPath, remote: &ReplicaEntry, e: &Error) -> bool {
    if e.is_temporary() {
        return false;
    }
    let now = match ctx.right.stat(path).await {
        Ok(now) => now,
        Err(_) => return false,
    };
    if now.is_some_and(|n| n.version == remote.version) {
        return false;
    }
    ctx.progress.event(ProgressEvent::Skipped {
        path: path.to_string(),
        reason: "changed on the remote while it was read; the next pass takes it".into(),
    });
    true
}

/// What a local conflict copy holds, for the report.
const LOCAL: &str = "the local copy";

/// A conflict, or a download over an entry of another kind: one by one.
async fn resolve(ctx: &Ctx<'_>, action: Action) -> Result<Option<IndexRow>> {
    match action {
        Action::Download {
            path,
            remote,
            expect,
        } => match expect {
            // A folder stands where a file or link must go: removed when empty (its synced
            // children were deleted earlier in the pass), kept as a conflict copy otherwise.
            Some(dir) if dir.kind == EntryKind::Dir => {
                match ctx.left.delete(&path, &dir.version).await {
                    Ok(Outcome::Done(_)) => {}
                    Ok(Outcome::Changed(_)) => return Ok(None),
                    Err(_) => {
                        if keep_aside(ctx, ctx.left, &path, &dir, LOCAL)
                            .await?
                            .is_none()
                        {
                            return Ok(None);
                        }
                    }
                }
                place(ctx, &path, &remote, None).await
            }
            // A file or link stands where a folder must go: kept as a conflict copy.
            Some(other) if remote.kind == EntryKind::Dir => {
                if keep_aside(ctx, ctx.left, &path, &other, LOCAL)
                    .await?
                    .is_none()
                {
                    return Ok(None);
                }
                place(ctx, &path, &remote, None).await
            }
            expect => place(ctx, &path, &remote, expect.as_ref()).await,
        },
        Action::KeepLocalCopyThenDownload {
            path,
            remote,
            expect,
        } => {
            if keep_aside(ctx, ctx.left, &path, &expect, LOCAL)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            place(ctx, &path, &remote, None).await
        }
        Action::SaveLocalThenDownload {
            path,
            remote,
            expect,
        } => save_then_download(ctx, path, remote, expect).await,
        _ => Ok(None),
    }
}

/// The local loser becomes a version on the remote, the winner its head again (without
/// content moving), and the winner lands here: the local edit survives in history.
async fn save_then_download(
    ctx: &Ctx<'_>,
    path: RelPath,
    remote: ReplicaEntry,
    expect: ReplicaEntry,
) -> Result<Option<IndexRow>> {
    let content = ctx.left.read(&path, &expect.version).await?;
    let saved = match ctx
        .right
        .write(&path, &new_entry(&expect), content, Some(&remote.version))
        .await?
    {
        Outcome::Done(Some(saved)) => saved,
        _ => return Ok(None),
    };
    let head = match ctx
        .right
        .promote(&path, &remote.version, &saved.version)
        .await?
    {
        Outcome::Done(Some(head)) => head,
        _ => return Ok(None),
    };
    place(ctx, &path, &head, Some(&expect)).await
}

/// What the downloads of a pass came to: rows for the index, and the first temporary error
/// (which ends the pass after the others are recorded; the next pass retries).
#[derive(Default)]
struct Outcomes {
    rows: Vec<IndexRow>,
    first_temporary: Option<Error>,
}

impl Outcomes {
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

    fn flush(&mut self, ctx: &Ctx<'_>, index: &mut LocalIndex) -> Result<()> {
        if !self.rows.is_empty() {
            index.apply(ctx.task, ctx.root_no, &self.rows, &[])?;
            self.rows.clear();
        }
        Ok(())
    }
}
