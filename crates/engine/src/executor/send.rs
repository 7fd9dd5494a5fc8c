//! Sending local state to the remote: folders and links first (parents before children), then
//! file contents, small files in batches (one read job here, one write call there), large ones
//! streamed, `transfers` at a time. In an upload-only task a write that met a newer remote
//! version is made again over it (the remote keeps the other as a version).

use bytes::Bytes;
use cairn_model::{EntryKind, RelPath};
use futures_util::stream::{self, StreamExt};

use super::{agreed, new_entry, per_item, Ctx, PassStats};
use crate::index::LocalIndex;
use crate::replica::{Outcome, ReplicaEntry, Version, WriteOp};
use crate::{ProgressEvent, Result};

/// Files up to this size are read whole and sent in batches with others.
const SMALL_FILE: u64 = 1024 * 1024;
/// Most files and bytes one batch carries. Each batch is one upload and one commit on the
/// server, each a transaction that rewrites the pages of its random-keyed chunk indexes that
/// the batch touches: fewer, larger batches rewrite each such page fewer times.
const BATCH_FILES: usize = 4000;
const BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// Rounds of writes against a remote that keeps changing under an upload-only task.
const REBASE_ROUNDS: usize = 3;

/// One upload: the path, its local entry, the remote version it replaces.
pub(super) type Upload = (RelPath, ReplicaEntry, Option<Version>);

pub(super) async fn upload(
    ctx: &Ctx<'_>,
    uploads: Vec<Upload>,
    index: &mut LocalIndex,
    stats: &mut PassStats,
) -> Result<()> {
    let (mut meta, files): (Vec<Upload>, Vec<Upload>) = uploads
        .into_iter()
        .partition(|(_, l, _)| l.kind != EntryKind::File);
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    if !meta.is_empty() {
        let ops = meta
            .iter()
            .map(|(path, l, base)| WriteOp {
                path: path.clone(),
                entry: new_entry(l),
                content: Bytes::new(),
                expect: base.clone(),
            })
            .collect();
        let results = write_rebasing(ctx, ops).await?;
        let mut rows = Vec::new();
        for ((path, l, _), r) in meta.iter().zip(results) {
            match r {
                Ok(Outcome::Done(Some(there))) => {
                    stats.uploaded += 1;
                    stats.recorded += 1;
                    rows.push(agreed(path, l, &there));
                }
                Ok(_) => {}
                Err(e) => ctx.fail(stats, path, e.to_string()),
            }
        }
        index.apply(ctx.task, ctx.root_no, &rows, &[])?;
    }
    for (path, l, _) in &files {
        ctx.progress.event(ProgressEvent::Queued {
            path: path.clone(),
            size: l.size,
        });
    }
    let (small, large): (Vec<Upload>, Vec<Upload>) = files
        .into_iter()
        .partition(|(_, l, _)| l.size <= SMALL_FILE);
    send_small(ctx, small, index, stats).await?;
    send_large(ctx, large, index, stats).await
}

/// `items` cut into batches of at most [`BATCH_FILES`] files and [`BATCH_BYTES`] bytes.
pub(super) fn batches<T>(items: Vec<T>, size: impl Fn(&T) -> u64, max_bytes: u64) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0u64;
    for item in items {
        let n = size(&item);
        let full = out
            .last()
            .is_none_or(|b| b.len() >= BATCH_FILES || bytes + n > max_bytes);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        if let Some(b) = out.last_mut() {
            b.push(item);
        }
    }
    out
}

async fn send_small(
    ctx: &Ctx<'_>,
    files: Vec<Upload>,
    index: &mut LocalIndex,
    stats: &mut PassStats,
) -> Result<()> {
    let jobs = batches(files, |(_, l, _)| l.size, BATCH_BYTES);
    // Reading one batch overlaps sending another.
    let mut sent = stream::iter(jobs)
        .map(|batch| async move {
            let items: Vec<(RelPath, ReplicaEntry)> = batch
                .iter()
                .map(|(p, l, _)| (p.clone(), l.clone()))
                .collect();
            let read = per_item(batch.len(), ctx.left.read_many(&items).await)?;
            let mut ops = Vec::new();
            let mut sending = Vec::new();
            let mut failed = Vec::new();
            for ((path, l, base), data) in batch.into_iter().zip(read) {
                match data {
                    Ok(content) => {
                        ops.push(WriteOp {
                            path: path.clone(),
                            entry: new_entry(&l),
                            content,
                            expect: base,
                        });
                        sending.push((path, l));
                    }
                    Err(e) => failed.push((path, e)),
                }
            }
            let written = write_rebasing(ctx, ops).await?;
            Ok::<_, crate::Error>((sending.into_iter().zip(written).collect::<Vec<_>>(), failed))
        })
        .buffer_unordered(ctx.transfers.max(2));
    let mut first_error = None;
    while let Some(done) = sent.next().await {
        let (written, failed) = match done {
            Ok(d) => d,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        for (path, e) in failed {
            not_sent(ctx, stats, &path, e).await;
        }
        let mut rows = Vec::new();
        for ((path, l), r) in written {
            record_upload(ctx, stats, &path, &l, r, &mut rows);
        }
        index.apply(ctx.task, ctx.root_no, &rows, &[])?;
        ctx.count_traffic(stats);
    }
    first_error.map_or(Ok(()), Err)
}

async fn send_large(
    ctx: &Ctx<'_>,
    files: Vec<Upload>,
    index: &mut LocalIndex,
    stats: &mut PassStats,
) -> Result<()> {
    let mut sent = stream::iter(files)
        .map(|(path, l, base)| async move {
            ctx.progress
                .event(ProgressEvent::Uploading { path: path.clone() });
            let mut expect = base;
            let mut result = Err(crate::Error::Refused("not sent".into()));
            for _ in 0..REBASE_ROUNDS {
                result = match ctx.left.read(&path, &l.version).await {
                    Ok(content) => {
                        ctx.right
                            .write(&path, &new_entry(&l), content, expect.as_ref())
                            .await
                    }
                    Err(e) => Err(e),
                };
                match &result {
                    Ok(Outcome::Changed(now)) if ctx.rebase => {
                        expect = now.as_ref().map(|n| n.version.clone());
                    }
                    _ => break,
                }
            }
            (path, l, result)
        })
        .buffer_unordered(ctx.transfers.max(1));
    let mut first_error = None;
    while let Some((path, l, result)) = sent.next().await {
        match result {
            Err(e) if e.is_temporary() => {
                first_error.get_or_insert(e);
            }
            Err(e) => not_sent(ctx, stats, &path, e).await,
            r => {
                let mut rows = Vec::new();
                record_upload(ctx, stats, &path, &l, r, &mut rows);
                index.apply(ctx.task, ctx.root_no, &rows, &[])?;
                ctx.count_traffic(stats);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// A file that could not be sent: a failure, unless it is simply gone (deleted while it was
/// read), which the next pass sees as a deletion.
async fn not_sent(ctx: &Ctx<'_>, stats: &mut PassStats, path: &RelPath, e: crate::Error) {
    if matches!(ctx.left.stat(path).await, Ok(None)) {
        ctx.progress.event(ProgressEvent::Skipped {
            path: path.to_string(),
            reason: "deleted while it was read; not sent".into(),
        });
        return;
    }
    ctx.fail(stats, path, e.to_string());
}

fn record_upload(
    ctx: &Ctx<'_>,
    stats: &mut PassStats,
    path: &RelPath,
    l: &ReplicaEntry,
    result: Result<Outcome>,
    rows: &mut Vec<crate::index::IndexRow>,
) {
    match result {
        Ok(Outcome::Done(Some(there))) => {
            stats.uploaded += 1;
            ctx.progress.event(ProgressEvent::Uploaded {
                path: path.clone(),
                size: l.size,
            });
            rows.push(agreed(path, l, &there));
        }
        // Changed on the remote meanwhile: the next pass sees it.
        Ok(_) => {}
        Err(e) => ctx.fail(stats, path, e.to_string()),
    }
}

/// Writes a batch; in an upload-only task, writes that met a newer remote version are made
/// again over that version (a few rounds), so the local state becomes the head.
async fn write_rebasing(ctx: &Ctx<'_>, mut ops: Vec<WriteOp>) -> Result<Vec<Result<Outcome>>> {
    let n = ops.len();
    let mut results: Vec<Option<Result<Outcome>>> = (0..n).map(|_| None).collect();
    let mut pending: Vec<usize> = (0..n).collect();
    for round in 0..REBASE_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let batch: Vec<WriteOp> = pending.iter().map(|&k| ops[k].clone()).collect();
        let answers = per_item(batch.len(), ctx.right.write_many(batch).await)?;
        let mut again = Vec::new();
        for (k, answer) in pending.into_iter().zip(answers) {
            match answer {
                Ok(Outcome::Changed(now)) if ctx.rebase && round + 1 < REBASE_ROUNDS => {
                    ops[k].expect = now.map(|n| n.version);
                    again.push(k);
                }
                other => results[k] = Some(other),
            }
        }
        pending = again;
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Ok(Outcome::Changed(None))))
        .collect())
}
