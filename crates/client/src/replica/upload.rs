//! Writes: content cut into chunks on a blocking thread, only the chunks the server lacks sent,
//! then a commit that names the version each change is based on.
//!
//! A batch ([`ServerReplica::write_batch`]) is chunked in one pass, asks once which chunks are
//! missing, uploads those in requests of up to [`UPLOAD_REQUEST`] bytes and commits once per
//! run of changes the protocol allows. A change whose chunks the server collected between the
//! upload and the commit (gc raced it) has them sent again and is committed again, for up to
//! [`UPLOAD_ROUNDS`] rounds: the batch keeps every file's bytes, so nothing is read twice.
//! A large file ([`ServerReplica::write_one`]) is streamed instead: window by window, with
//! [`WINDOWS_IN_FLIGHT`] windows asked about or sent at once, so memory stays at a few windows
//! whatever the file's size; its bytes are gone after sending, so chunks lost before its commit
//! make a temporary error and the caller writes it again.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use bytes::Bytes;
use cairn_engine::remote::Remote;
use cairn_engine::replica::{collect, Content, NewEntry, Outcome, Version, WriteOp};
use cairn_engine::retry::retrying;
use cairn_engine::{Error, Result};
use cairn_model::{chunk_reader, ChunkId, ContentHash, EntryKind, RelPath, Seq};
use cairn_protocol::{
    frame, Change, ChangeResult, ChunkSpan, Inline, MAX_INLINE_COMMIT, MAX_INLINE_FILE,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use super::commit::cuts;
use super::{copy_err, seq_of, wire_entry, ServerReplica};

/// Rounds of "upload what is missing, commit" for changes whose chunks gc took meanwhile.
const UPLOAD_ROUNDS: usize = 3;
/// Largest upload request body built (before frame headers).
const UPLOAD_REQUEST: usize = 16 << 20;
/// How much of a streamed file is chunked before asking the server what it lacks.
const WINDOW: usize = 4 << 20;
/// Windows of one streamed file asked about or sent at once.
const WINDOWS_IN_FLIGHT: usize = 3;
/// Pieces of a streamed file's content held ahead of the chunker.
const PIECES_AHEAD: usize = 4;
/// Files below this size given to `write` are collected and written as a batch of one (the
/// batch keeps their bytes for another round if gc races the commit); larger ones stream.
const STREAM_FROM: u64 = WINDOW as u64;

/// One write of a batch, ready to send: its change, its whole content and its chunks' bytes
/// (slices of the content).
struct Ready {
    path: RelPath,
    change: Change,
    content: Bytes,
    chunks: Vec<(ChunkId, Bytes)>,
}

/// Which writes of a run carry their content inline in the commit: edits of files whose base
/// version the connection saw lately with other content (`known_hash`: then the content is
/// new to the server), of at most [`MAX_INLINE_FILE`] bytes, in order, while the run's inline
/// bytes stay within [`MAX_INLINE_COMMIT`] (the commit may go in several requests; each then
/// carries less). Other writes ask which chunks are missing instead: a new path or an unknown
/// base is often content the server has (a copy, a task added again), which then costs nothing.
fn inline_picks(
    run: &[Ready],
    known_hash: impl Fn(&RelPath, Seq) -> Option<ContentHash>,
) -> Vec<bool> {
    let mut left = MAX_INLINE_COMMIT;
    run.iter()
        .map(|r| {
            let size = r.content.len() as u64;
            let edited = r.change.base.is_some_and(|base| {
                known_hash(&r.change.path, base).is_some_and(|h| Some(h) != r.change.entry.hash)
            });
            let pick = r.change.entry.kind == EntryKind::File
                && edited
                && !r.chunks.is_empty()
                && size <= MAX_INLINE_FILE
                && size <= left;
            if pick {
                left -= size;
            }
            pick
        })
        .collect()
}

impl ServerReplica {
    /// Writes a batch (see the module's head); one result per op, in order.
    pub(super) async fn write_batch(&self, ops: Vec<WriteOp>) -> Result<Vec<Result<Outcome>>> {
        let prefix = self.prefix.clone();
        let named: Vec<String> = ops.iter().map(|op| self.name(&op.path)).collect();
        let prepared = tokio::task::spawn_blocking(move || {
            ops.into_iter()
                .zip(named)
                .map(|(op, name)| prepare(&prefix, op, &name))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::Refused(format!("chunking failed: {e}")))?;
        let mut out: Vec<Option<Result<Outcome>>> = Vec::with_capacity(prepared.len());
        let mut ready = Vec::new();
        let mut slots = Vec::new();
        for (i, p) in prepared.into_iter().enumerate() {
            match p {
                Ok(r) => {
                    ready.push(r);
                    slots.push(i);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let runs = cuts(ready.len(), |i| ready[i].change.chunks.len() as u64);
        let mut started = false;
        for run in runs {
            let sent = self.send_run(&ready[run.clone()]).await;
            match sent {
                Ok(results) => {
                    started = true;
                    for (k, r) in run.zip(results) {
                        out[slots[k]] = Some(r);
                    }
                }
                Err(e) if !started => return Err(e),
                Err(e) => {
                    for k in run {
                        out[slots[k]] = Some(Err(copy_err(&e)));
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::remote("the server gave no result"))))
            .collect())
    }

    /// Sends one run of a batch: small files' content inline in the commit, the missing
    /// chunks of the others first, then one commit, then the rounds for chunks gc took
    /// meanwhile (or a server that did not take the inline content) uploaded as chunks.
    async fn send_run(&self, run: &[Ready]) -> Result<Vec<Result<Outcome>>> {
        let bytes: HashMap<ChunkId, Bytes> =
            run.iter().flat_map(|r| r.chunks.iter().cloned()).collect();
        let inline = inline_picks(run, |path, seq| self.remote.known_hash(path, seq));
        let asked: Vec<(ChunkId, Bytes)> = run
            .iter()
            .zip(&inline)
            .filter(|(_, inline)| !**inline)
            .flat_map(|(r, _)| r.chunks.iter().cloned())
            .collect();
        self.send_missing(asked).await?;
        let mut out: Vec<Option<Result<Outcome>>> = (0..run.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..run.len()).collect();
        for round in 1..=UPLOAD_ROUNDS {
            let changes: Vec<Change> = pending
                .iter()
                .map(|&i| {
                    let mut change = run[i].change.clone();
                    // Later rounds upload what the server still lacks instead.
                    if round == 1 && inline[i] {
                        change.inline = Some(Inline(run[i].content.clone()));
                    }
                    change
                })
                .collect();
            let inline_sent: Vec<u64> = changes.iter().map(Change::inline_len).collect();
            let results = match retrying(|| self.remote.commit(&changes)).await {
                Ok(results) => results,
                Err(e) if round == 1 => return Err(e),
                // Earlier rounds landed: their results stand, the rest fail with this error.
                Err(e) => {
                    fail_all(&mut out, &pending, &e);
                    break;
                }
            };
            let carried: u64 = inline_sent.iter().sum();
            let files = inline_sent.iter().filter(|n| **n > 0).count() as u64;
            self.count_sent(carried, files);
            let (mut again, mut lost) = (Vec::new(), HashSet::new());
            for (i, result) in pending.into_iter().zip(results) {
                let ready = &run[i];
                let path = &ready.path;
                match result {
                    ChangeResult::MissingChunks { chunks } if round < UPLOAD_ROUNDS => {
                        lost.extend(chunks);
                        again.push(i);
                    }
                    ChangeResult::MissingChunks { chunks } => {
                        out[i] = Some(Err(Error::remote(format!(
                            "{}: {} of its chunks went missing on the server before each of {UPLOAD_ROUNDS} commits",
                            self.name(path),
                            chunks.len()
                        ))));
                    }
                    other => out[i] = Some(self.outcome(path, &ready.change.entry, other)),
                }
            }
            if again.is_empty() {
                break;
            }
            // Only chunks of this run: an id the server names that was never ours is ignored.
            let resend: Vec<(ChunkId, Bytes)> = lost
                .into_iter()
                .filter_map(|id| bytes.get(&id).map(|b| (id, b.clone())))
                .collect();
            if let Err(e) = self.upload_all(resend).await {
                fail_all(&mut out, &again, &e);
                break;
            }
            pending = again;
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::remote("the server gave no result"))))
            .collect())
    }

    /// Asks which of `chunks` the server lacks (each id once) and uploads those.
    async fn send_missing(&self, mut chunks: Vec<(ChunkId, Bytes)>) -> Result<()> {
        let mut seen = HashSet::new();
        chunks.retain(|(id, _)| seen.insert(*id));
        if chunks.is_empty() {
            return Ok(());
        }
        let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
        let missing: HashSet<ChunkId> = retrying(|| self.remote.missing(&ids))
            .await?
            .into_iter()
            .collect();
        chunks.retain(|(id, _)| missing.contains(id));
        self.upload_all(chunks).await
    }

    /// Uploads `chunks` in requests of at most [`UPLOAD_REQUEST`] bytes, counting what went.
    async fn upload_all(&self, chunks: Vec<(ChunkId, Bytes)>) -> Result<()> {
        let mut start = 0;
        while start < chunks.len() {
            let mut end = start;
            let mut size = 0;
            while end < chunks.len()
                && (end == start
                    || (size + chunks[end].1.len() <= UPLOAD_REQUEST
                        && end - start < frame::MAX_FRAMES_PER_UPLOAD))
            {
                size += chunks[end].1.len();
                end += 1;
            }
            let part = &chunks[start..end];
            let sent = retrying(|| self.remote.upload(part)).await?;
            self.count_sent(sent, part.len() as u64);
            start = end;
        }
        Ok(())
    }

    /// One write: small files, folders and links as a batch of one, large files streamed.
    pub(super) async fn write_one(
        &self,
        path: &RelPath,
        entry: &NewEntry,
        content: Content<'_>,
        expect: Option<&Version>,
    ) -> Result<Outcome> {
        if entry.kind != EntryKind::File || entry.size < STREAM_FROM {
            let op = WriteOp {
                path: path.clone(),
                entry: entry.clone(),
                content: Bytes::from(collect(content).await?),
                expect: expect.cloned(),
            };
            return super::one(self.write_batch(vec![op]).await?);
        }
        let base = expect.map(seq_of).transpose()?;
        let (chunks, hash) = self.send_stream(path, entry.size, content).await?;
        if entry.hash.is_some_and(|want| want != hash) {
            return Err(Error::Refused(format!(
                "{}: the content sent does not match its hash",
                self.name(path)
            )));
        }
        let change = Change {
            path: self.full(path),
            base,
            entry: wire_entry(entry, Some(hash)),
            chunks,
            moved_from: None,
            inline: None,
        };
        let results = retrying(|| self.remote.commit(std::slice::from_ref(&change))).await?;
        match results.into_iter().next() {
            Some(r) => self.outcome(path, &change.entry, r),
            None => Err(Error::remote("the server gave no result for a commit")),
        }
    }

    /// Cuts `content` into chunks on a blocking thread while the async side sends the missing
    /// ones window by window, [`WINDOWS_IN_FLIGHT`] at a time; returns the chunk list and the
    /// content's hash.
    async fn send_stream(
        &self,
        path: &RelPath,
        size: u64,
        mut content: Content<'_>,
    ) -> Result<(Vec<ChunkSpan>, ContentHash)> {
        let name = self.name(path);
        let (bytes_tx, bytes_rx) = mpsc::channel::<Bytes>(PIECES_AHEAD);
        let (window_tx, window_rx) = mpsc::channel::<Vec<(ChunkId, Bytes)>>(1);
        let what = name.clone();
        let cutter = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx: bytes_rx,
                current: Bytes::new(),
            };
            let stopped = || cairn_model::Error::Read {
                what: what.clone(),
                source: std::io::Error::other("the upload stopped"),
            };
            let (mut window, mut held) = (Vec::new(), 0usize);
            let digest = chunk_reader(reader, size, &what, |c, bytes| {
                window.push((c.id, bytes.clone()));
                held += bytes.len();
                if held >= WINDOW {
                    held = 0;
                    window_tx
                        .blocking_send(std::mem::take(&mut window))
                        .map_err(|_| stopped())?;
                }
                Ok(())
            })?;
            if !window.is_empty() {
                window_tx.blocking_send(window).map_err(|_| stopped())?;
            }
            Ok::<_, cairn_model::Error>(digest)
        });
        let feed = async {
            while let Some(piece) = content.next().await {
                if bytes_tx.send(piece?).await.is_err() {
                    break;
                }
            }
            drop(bytes_tx);
            Ok::<(), Error>(())
        };
        let windows = stream::unfold(window_rx, |mut rx| async move {
            rx.recv().await.map(|w| (w, rx))
        });
        let send = windows
            .map(|w| self.send_missing(w))
            .buffer_unordered(WINDOWS_IN_FLIGHT)
            .try_for_each(|()| async { Ok(()) });
        // On an error either side stops: the other's channel closes and the cutter ends.
        let sent = futures_util::future::try_join(feed, send).await;
        let digest = cutter
            .await
            .map_err(|e| Error::Refused(format!("{name}: chunking failed: {e}")));
        sent?;
        let digest = digest??;
        if digest.size != size {
            return Err(Error::Refused(format!(
                "{name}: the content was {} bytes, {size} announced",
                digest.size
            )));
        }
        let spans = digest
            .chunks
            .iter()
            .map(|c| ChunkSpan {
                id: c.id,
                len: c.len,
            })
            .collect();
        Ok((spans, digest.hash))
    }
}

/// Sets the result of each of `items` to `e`.
fn fail_all(out: &mut [Option<Result<Outcome>>], items: &[usize], e: &Error) {
    for &i in items {
        out[i] = Some(Err(copy_err(e)));
    }
}

/// Checks and chunks one op of a batch (on a blocking thread): its change, with the hash the
/// replica computed, and its chunks as slices of the op's content.
fn prepare(prefix: &RelPath, op: WriteOp, name: &str) -> Result<Ready> {
    let base = op.expect.as_ref().map(seq_of).transpose()?;
    let e = &op.entry;
    let (hash, chunks) = match e.kind {
        EntryKind::File => {
            if op.content.len() as u64 != e.size {
                return Err(Error::Refused(format!(
                    "{name}: {} bytes of content for a file of {} bytes",
                    op.content.len(),
                    e.size
                )));
            }
            let mut chunks = Vec::new();
            let digest = chunk_reader(&op.content[..], e.size, name, |c, _| {
                let at = usize::try_from(c.offset).unwrap_or(usize::MAX);
                chunks.push((c.id, op.content.slice(at..at + c.len as usize)));
                Ok(())
            })?;
            if e.hash.is_some_and(|want| want != digest.hash) {
                return Err(Error::Refused(format!(
                    "{name}: the content sent does not match its hash"
                )));
            }
            (Some(digest.hash), chunks)
        }
        EntryKind::Symlink => (
            e.target.as_ref().map(|t| ContentHash::of(t.as_bytes())),
            Vec::new(),
        ),
        EntryKind::Dir => (None, Vec::new()),
        EntryKind::Deleted => {
            return Err(Error::Refused(format!("{name}: a deletion is not a write")))
        }
    };
    Ok(Ready {
        change: Change {
            path: prefix.join_path(&op.path),
            base,
            entry: wire_entry(e, hash),
            chunks: chunks
                .iter()
                .map(|(id, b)| ChunkSpan {
                    id: *id,
                    len: b.len() as u32,
                })
                .collect(),
            moved_from: None,
            inline: None,
        },
        chunks,
        content: op.content,
        path: op.path,
    })
}

/// A blocking reader over pieces arriving on a channel (the chunker's side of a stream).
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(piece) => self.current = piece,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
