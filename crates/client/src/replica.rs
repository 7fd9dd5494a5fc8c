//! The cairn server as a [`Replica`]: a folder (or a sub-folder of one) on the server. Chunk
//! dedup, the "which chunks are missing" question, the commit with its base version and the
//! journal stay behind the trait; the engine sees entries, versions and content.
//!
//! Versions are the server's sequence numbers; the cursor is the server's identity and the
//! folder's head, so a cursor from another server, or from before a restore that took the
//! journal backwards, is refused and the caller lists again.

use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_engine::remote::Remote;
use cairn_engine::replica::{
    Capabilities, Content, Cursor, Listing, NewEntry, Outcome, Replica, ReplicaChange,
    ReplicaEntry, Version,
};
use cairn_engine::{Error, Result};
use cairn_model::{chunk_reader, ChunkId, ContentHash, Entry, EntryKind, RelPath, Seq};
use cairn_protocol::{Change, ChangeResult, ChunkSpan, MovedFrom, VersionInfo};
use futures_util::stream::{self, StreamExt};
use tokio::sync::mpsc;

use crate::HttpRemote;

/// Chunk bytes gathered before asking the server which it lacks.
const WINDOW: usize = 8 << 20;
/// Journal entries asked for at once when catching up.
const JOURNAL_PAGE_WAIT: u64 = 0;

/// A folder on a cairn server, from `prefix` down.
pub struct ServerReplica {
    remote: Arc<HttpRemote>,
    prefix: RelPath,
}

impl ServerReplica {
    pub fn new(remote: Arc<HttpRemote>, prefix: RelPath) -> Self {
        ServerReplica { remote, prefix }
    }

    fn full(&self, path: &RelPath) -> RelPath {
        self.prefix.join_path(path)
    }

    fn relative(&self, v: &VersionInfo) -> Option<RelPath> {
        v.path.strip_prefix(&self.prefix).filter(|r| !r.is_root())
    }

    async fn head_of(&self, path: &RelPath) -> Result<Option<VersionInfo>> {
        let versions = self.remote.versions(&self.full(path)).await?;
        Ok(versions.into_iter().next().filter(|v| v.entry.is_live()))
    }

    /// Commits one change; the outcome in replica terms.
    async fn commit_one(&self, path: &RelPath, change: Change) -> Result<Outcome> {
        let result = self.remote.commit(std::slice::from_ref(&change)).await?;
        match result.into_iter().next() {
            Some(ChangeResult::Accepted { seq }) => {
                let entry =
                    (change.entry.kind != EntryKind::Deleted).then(|| entry_of(&change.entry, seq));
                Ok(Outcome::Done(entry))
            }
            Some(ChangeResult::Conflict { head }) => Ok(Outcome::Changed(
                head.filter(|h| h.entry.is_live())
                    .map(|h| entry_of(&h.entry, h.seq)),
            )),
            Some(ChangeResult::MissingChunks { chunks }) => Err(Error::remote(format!(
                "{}: {} chunks went missing before the commit; write again",
                self.full(path),
                chunks.len()
            ))),
            Some(ChangeResult::Refused { reason }) => Err(Error::Refused(reason)),
            None => Err(Error::remote("the server gave no result for a commit")),
        }
    }

    /// Sends the chunks of `window` the server lacks.
    async fn send_missing(&self, window: &mut Vec<(ChunkId, Bytes)>) -> Result<()> {
        if window.is_empty() {
            return Ok(());
        }
        let ids: Vec<ChunkId> = window.iter().map(|(id, _)| *id).collect();
        let missing: std::collections::HashSet<ChunkId> =
            self.remote.missing(&ids).await?.into_iter().collect();
        let send: Vec<(ChunkId, Bytes)> = window
            .drain(..)
            .filter(|(id, _)| missing.contains(id))
            .collect();
        if !send.is_empty() {
            self.remote.upload(&send).await?;
        }
        Ok(())
    }

    /// Cuts `content` into chunks (off the runtime), sends the missing ones window by window,
    /// and returns the chunk list and the content's hash.
    async fn send_content(
        &self,
        size: u64,
        mut content: Content<'_>,
    ) -> Result<(Vec<ChunkSpan>, ContentHash)> {
        let (bytes_tx, bytes_rx) = std::sync::mpsc::sync_channel::<Bytes>(4);
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<(ChunkId, Bytes)>(64);
        let cutter = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx: bytes_rx,
                current: Bytes::new(),
            };
            chunk_reader(reader, size, "content", |c, bytes| {
                chunk_tx
                    .blocking_send((c.id, Bytes::copy_from_slice(bytes)))
                    .map_err(|_| cairn_model::Error::Read {
                        what: "content".into(),
                        source: std::io::ErrorKind::BrokenPipe.into(),
                    })
            })
        });
        let feed = async {
            while let Some(piece) = content.next().await {
                if bytes_tx.send(piece?).is_err() {
                    break;
                }
            }
            drop(bytes_tx);
            Ok::<(), Error>(())
        };
        let send = async {
            let mut window = Vec::new();
            let mut held = 0usize;
            while let Some((id, bytes)) = chunk_rx.recv().await {
                held += bytes.len();
                window.push((id, bytes));
                if held >= WINDOW {
                    self.send_missing(&mut window).await?;
                    held = 0;
                }
            }
            self.send_missing(&mut window).await
        };
        let (fed, sent) = tokio::join!(feed, send);
        fed?;
        sent?;
        let digest = cutter
            .await
            .map_err(|e| Error::Refused(format!("chunking failed: {e}")))?
            .map_err(|e| Error::Refused(e.to_string()))?;
        if digest.size != size {
            return Err(Error::Refused(format!(
                "the content was {} bytes, {size} announced",
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

/// A blocking reader over pieces arriving on a channel.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(piece) => self.current = piece,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

fn entry_of(e: &Entry, seq: Seq) -> ReplicaEntry {
    ReplicaEntry {
        kind: e.kind,
        size: e.size,
        mtime_ns: e.mtime_ns,
        mode: e.mode & 0o777,
        hash: e.hash,
        target: e.target.clone(),
        version: Version(seq.0.to_string()),
    }
}

fn seq_of(v: &Version) -> Result<Seq> {
    v.0.parse()
        .map(Seq)
        .map_err(|_| Error::Refused(format!("{:?} is not a version of this server", v.0)))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn cursor_of(server_id: &str, head: Seq) -> Cursor {
    Cursor(format!("{}:{server_id}", head.0))
}

fn deleted(mtime_ns: i64) -> Entry {
    Entry {
        kind: EntryKind::Deleted,
        size: 0,
        mtime_ns,
        mode: 0,
        hash: None,
        target: None,
    }
}

#[async_trait]
impl Replica for ServerReplica {
    fn describe(&self) -> String {
        if self.prefix.is_root() {
            self.remote.describe()
        } else {
            format!("{}/{}", self.remote.describe(), self.prefix)
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            keeps_versions: true,
            knows_hashes: true,
            knows_mtimes: true,
            can_move: true,
            has_journal: true,
            case_sensitive: true,
            max_name_bytes: 255,
            max_path_bytes: cairn_model::path::MAX_PATH_BYTES
                .saturating_sub(self.prefix.as_str().len() + 1),
        }
    }

    async fn list(&self) -> Result<Listing> {
        let (server_id, head) = self.remote.identity().await?;
        let tree = self.remote.tree(&self.prefix, None, false).await?;
        let entries = tree
            .iter()
            .filter_map(|v| Some((self.relative(v)?, entry_of(&v.entry, v.seq))))
            .collect();
        // A commit between the two requests may be in the tree: the cursor then replays it,
        // which is harmless (the same state again).
        Ok(Listing {
            entries,
            cursor: Some(cursor_of(&server_id, head)),
            ..Listing::default()
        })
    }

    async fn changes(&self, since: &Cursor) -> Result<Option<(Vec<ReplicaChange>, Cursor)>> {
        let Some((head_text, server)) = since.0.split_once(':') else {
            return Ok(None);
        };
        let Ok(mut at) = head_text.parse::<i64>().map(Seq) else {
            return Ok(None);
        };
        let (server_id, head) = self.remote.identity().await?;
        if server != server_id || head < at {
            return Ok(None);
        }
        let mut out = Vec::new();
        while at < head {
            let (versions, _) = self.remote.journal(at, JOURNAL_PAGE_WAIT).await?;
            let Some(last) = versions.last().map(|v| v.seq) else {
                break;
            };
            for v in &versions {
                if let Some(rel) = self.relative(v) {
                    out.push(if v.entry.is_live() {
                        ReplicaChange::Upsert(rel, entry_of(&v.entry, v.seq))
                    } else {
                        ReplicaChange::Remove(rel)
                    });
                }
            }
            at = last;
        }
        Ok(Some((out, cursor_of(&server_id, at))))
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<ReplicaEntry>> {
        Ok(self.head_of(path).await?.map(|v| entry_of(&v.entry, v.seq)))
    }

    async fn read(&self, path: &RelPath, version: &Version) -> Result<Content<'static>> {
        let seq = seq_of(version)?;
        let full = self.full(path);
        let versions = self.remote.versions(&full).await?;
        let v = versions
            .into_iter()
            .find(|v| v.seq == seq && v.entry.kind == EntryKind::File)
            .ok_or_else(|| Error::remote(format!("{full} has no file version {}", seq.0)))?;
        let want = v
            .entry
            .hash
            .ok_or_else(|| Error::remote(format!("{full} version {} has no hash", seq.0)))?;
        let spans = self.remote.chunk_list(&full, seq).await?;
        let remote = self.remote.clone();
        // Each chunk is checked against its id as it arrives, the whole against the file's
        // hash at the end: a corrupt or substituted piece fails the read.
        let hasher = blake3::Hasher::new();
        let pieces = stream::try_unfold(
            (remote, spans.into_iter(), hasher, full, want),
            |(remote, mut spans, mut hasher, full, want)| async move {
                let Some(span) = spans.next() else {
                    if ContentHash::from_bytes(*hasher.finalize().as_bytes()) != want {
                        return Err(Error::remote(format!("{full} arrived corrupt")));
                    }
                    return Ok(None);
                };
                let data = remote.chunk(&span.id).await?;
                if ChunkId::of(&data) != span.id || data.len() != span.len as usize {
                    return Err(Error::remote(format!(
                        "chunk {} of {full} arrived corrupt",
                        span.id
                    )));
                }
                hasher.update(&data);
                Ok(Some((data, (remote, spans, hasher, full, want))))
            },
        );
        Ok(pieces.boxed())
    }

    async fn write(
        &self,
        path: &RelPath,
        entry: &NewEntry,
        content: Content<'_>,
        expect: Option<&Version>,
    ) -> Result<Outcome> {
        let base = expect.map(seq_of).transpose()?;
        let (chunks, hash) = match entry.kind {
            EntryKind::File => {
                let (chunks, hash) = self.send_content(entry.size, content).await?;
                if entry.hash.is_some_and(|want| want != hash) {
                    return Err(Error::Refused(format!(
                        "{}: the content sent does not match its hash",
                        self.full(path)
                    )));
                }
                (chunks, Some(hash))
            }
            EntryKind::Symlink => (
                Vec::new(),
                entry.target.as_ref().map(|t| ContentHash::of(t.as_bytes())),
            ),
            EntryKind::Dir => (Vec::new(), None),
            EntryKind::Deleted => return Err(Error::Refused("a deletion is not a write".into())),
        };
        let change = Change {
            path: self.full(path),
            base,
            entry: Entry {
                kind: entry.kind,
                size: entry.size,
                mtime_ns: entry.mtime_ns,
                mode: entry.mode,
                hash,
                target: entry.target.clone(),
            },
            chunks,
            moved_from: None,
        };
        self.commit_one(path, change).await
    }

    async fn delete(&self, path: &RelPath, expect: &Version) -> Result<Outcome> {
        let change = Change {
            path: self.full(path),
            base: Some(seq_of(expect)?),
            entry: deleted(now_ns()),
            chunks: Vec::new(),
            moved_from: None,
        };
        self.commit_one(path, change).await
    }

    async fn rename(&self, from: &RelPath, to: &RelPath, expect: &Version) -> Result<Outcome> {
        let Some(head) = self.head_of(from).await? else {
            return Ok(Outcome::Changed(None));
        };
        if head.seq != seq_of(expect)? {
            return Ok(Outcome::Changed(Some(entry_of(&head.entry, head.seq))));
        }
        let change = Change {
            path: self.full(to),
            base: None,
            entry: head.entry.clone(),
            chunks: Vec::new(),
            moved_from: Some(MovedFrom {
                path: self.full(from),
                base: head.seq,
            }),
        };
        self.commit_one(to, change).await
    }
}
