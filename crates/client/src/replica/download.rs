//! Reads: every byte handed on is checked first, each chunk against its id and each file
//! against its hash, so a corrupt or hostile answer is an error for that file, never wrong
//! content.
//!
//! Small files go in batches through one `contents` request each (within the protocol's
//! [`MAX_BATCH_FILES`] and [`MAX_BATCH_BYTES`]), checked against the hashes the caller listed;
//! a batch the server refuses, and a file that does not match, are fetched again on their own so
//! one bad file fails alone. A single read asks for the version's chunk list, which carries the
//! version's entry (kind, size, hash), then the content as one streamed answer (resumed from
//! the first missing byte if it is cut off), hashed as it passes; a file of one chunk is that
//! chunk's request, checked against its id. A request per chunk, [`CHUNKS_IN_FLIGHT`] at a
//! time, cost each chunk a request's checks on the server and a hash of its own here. The
//! alternative that lost, asking for the path's history to learn the hash, costs a request per
//! file and a history that grows with retention; it remains only for servers whose chunk lists
//! do not carry the entry.

use bytes::Bytes;
use cairn_engine::remote::Remote;
use cairn_engine::replica::{collect, Content, ReplicaEntry, Version};
use cairn_engine::retry::retrying;
use cairn_engine::{Error, Result};
use cairn_model::{ChunkId, ContentHash, DeviceId, Entry, EntryKind, RelPath, Seq};
use cairn_protocol::{ChunkSpan, VersionInfo, MAX_BATCH_BYTES, MAX_BATCH_FILES};
use futures_util::stream::{self, BoxStream, StreamExt};
use std::sync::Arc;

use super::{seq_of, ServerReplica};
use crate::HttpRemote;

/// Chunks of one file fetched at once.
const CHUNKS_IN_FLIGHT: usize = 4;
/// `contents` requests of one batch read in flight at once.
const BATCHES_IN_FLIGHT: usize = 2;
/// Hash look-ups made one by one (their chunk lists); more are answered from one listing.
const HASHES_ONE_BY_ONE: usize = 16;

/// One file of a batched read: its slot in the answer, path, version and listed hash.
struct Wanted {
    slot: usize,
    path: RelPath,
    full: RelPath,
    seq: Seq,
    size: u64,
    hash: ContentHash,
}

impl ServerReplica {
    /// The content of `path` at `version`, checked as it streams (see the module's head).
    pub(super) async fn read_version(
        &self,
        path: &RelPath,
        version: &Version,
    ) -> Result<Content<'static>> {
        let seq = seq_of(version)?;
        let full = self.full(path);
        if let Some(data) = self.take_inline(&full, seq, None) {
            return Ok(stream::once(async move { Ok(data) }).boxed());
        }
        let (entry, spans) = retrying(|| self.remote.version_chunks(&full, seq)).await?;
        let entry = match entry {
            Some(e) => e,
            None => self.entry_from_history(&full, seq).await?,
        };
        if entry.kind != EntryKind::File {
            return Err(Error::remote(format!(
                "{}: version {seq} is a {}, not a file",
                self.name(path),
                entry.kind.as_str()
            )));
        }
        let want = entry.hash.ok_or_else(|| {
            Error::remote(format!("{}: version {seq} has no hash", self.name(path)))
        })?;
        if spans.len() <= 1 {
            // One chunk (or none): its request is the whole answer, checked against its id too.
            return Ok(chunk_stream(
                self.remote.clone(),
                self.name(path),
                spans,
                want,
            ));
        }
        let pieces = retrying(|| self.remote.content_stream(&full, seq, entry.size)).await?;
        Ok(hashed(pieces, self.name(path), want))
    }

    /// Several small files (see the module's head); one result per item, in order.
    pub(super) async fn read_batch(
        &self,
        items: &[(RelPath, ReplicaEntry)],
    ) -> Result<Vec<Result<Bytes>>> {
        let mut out: Vec<Option<Result<Bytes>>> = (0..items.len()).map(|_| None).collect();
        let mut batches: Vec<Vec<Wanted>> = Vec::new();
        let mut alone = Vec::new();
        let mut bytes = 0u64;
        for (slot, (path, e)) in items.iter().enumerate() {
            if e.kind != EntryKind::File {
                out[slot] = Some(Err(Error::Refused(format!(
                    "{}: a {} has no content to read",
                    self.name(path),
                    e.kind.as_str()
                ))));
                continue;
            }
            let (Some(hash), Ok(seq)) = (e.hash, seq_of(&e.version)) else {
                alone.push(slot);
                continue;
            };
            if let Some(data) = self.take_inline(&self.full(path), seq, Some(hash)) {
                out[slot] = Some(Ok(data));
                continue;
            }
            if e.size > MAX_BATCH_BYTES {
                alone.push(slot);
                continue;
            }
            let full = batches
                .last()
                .is_none_or(|b| b.len() >= MAX_BATCH_FILES || bytes + e.size > MAX_BATCH_BYTES);
            if full {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += e.size;
            let batch = batches.last_mut().expect("a batch was just pushed");
            batch.push(Wanted {
                slot,
                path: path.clone(),
                full: self.full(path),
                seq,
                size: e.size,
                hash,
            });
        }
        let mut fetched = stream::iter(batches)
            .map(|b| self.fetch_batch(b))
            .buffer_unordered(BATCHES_IN_FLIGHT);
        while let Some(done) = fetched.next().await {
            for (slot, r) in done? {
                out[slot] = Some(r);
            }
        }
        drop(fetched);
        for slot in alone {
            let (path, e) = &items[slot];
            out[slot] = Some(self.read_whole(path, &e.version, e.hash).await);
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::remote("no result for a read"))))
            .collect())
    }

    /// One `contents` request; files it did not give right are fetched on their own. A
    /// temporary failure that outlasts the retries fails the whole read (the server is gone).
    async fn fetch_batch(&self, batch: Vec<Wanted>) -> Result<Vec<(usize, Result<Bytes>)>> {
        let versions: Vec<VersionInfo> = batch.iter().map(version_info).collect();
        let answer = match retrying(|| self.remote.contents(&versions)).await {
            Ok(pieces) => Some(pieces),
            Err(e) if e.is_temporary() => return Err(e),
            // Refused as a whole (one file gone, one chunk lost): each alone tells which.
            Err(_) => None,
        };
        let mut out = Vec::with_capacity(batch.len());
        for (i, w) in batch.iter().enumerate() {
            let piece = answer.as_ref().and_then(|a| a.get(i));
            let result = match piece {
                Some(data) if ContentHash::of(data) == w.hash => Ok(data.clone()),
                _ => self.fetch_alone(w).await,
            };
            out.push((w.slot, result));
        }
        Ok(out)
    }

    /// One small file in one request, checked against its listed hash.
    async fn fetch_alone(&self, w: &Wanted) -> Result<Bytes> {
        let data = retrying(|| self.remote.content(&w.full, w.seq)).await?;
        if ContentHash::of(&data) != w.hash {
            return Err(Error::remote(format!(
                "{}: version {} arrived corrupt (it does not match its content hash)",
                self.name(&w.path),
                w.seq
            )));
        }
        Ok(data)
    }

    /// A file read through [`ServerReplica::read_version`], and checked against the listed
    /// hash too when there is one.
    async fn read_whole(
        &self,
        path: &RelPath,
        version: &Version,
        listed: Option<ContentHash>,
    ) -> Result<Bytes> {
        let data = collect(self.read_version(path, version).await?).await?;
        if listed.is_some_and(|h| h != ContentHash::of(&data)) {
            return Err(Error::remote(format!(
                "{}: version {} is not the content listed",
                self.name(path),
                version.0
            )));
        }
        Ok(Bytes::from(data))
    }

    /// Content hashes of files at versions, without their content: the server knows them.
    /// A few are looked up one by one (their chunk lists carry the entry); more are answered
    /// from one listing of the prefix, with the rest (older versions) looked up one by one.
    pub(super) async fn hashes(
        &self,
        items: &[(RelPath, Version)],
    ) -> Result<Vec<Option<ContentHash>>> {
        let mut out: Vec<Option<ContentHash>> = vec![None; items.len()];
        let mut todo: Vec<usize> = (0..items.len()).collect();
        if items.len() > HASHES_ONE_BY_ONE {
            let tree = retrying(|| self.remote.tree(&self.prefix, None, false)).await?;
            let heads: std::collections::HashMap<RelPath, (Seq, Option<ContentHash>)> = tree
                .into_iter()
                .filter(|v| v.entry.kind == EntryKind::File)
                .map(|v| (v.path, (v.seq, v.entry.hash)))
                .collect();
            todo.retain(|&i| {
                let (path, version) = &items[i];
                let head = heads.get(&self.full(path));
                match (head, seq_of(version)) {
                    (Some((seq, hash)), Ok(want)) if *seq == want => {
                        out[i] = *hash;
                        false
                    }
                    _ => true,
                }
            });
        }
        let looked: Vec<(usize, Option<ContentHash>)> = stream::iter(todo)
            .map(|i| async move {
                let (path, version) = &items[i];
                (i, self.hash_of(path, version).await.ok().flatten())
            })
            .buffer_unordered(CHUNKS_IN_FLIGHT)
            .collect()
            .await;
        for (i, h) in looked {
            out[i] = h;
        }
        Ok(out)
    }

    async fn hash_of(&self, path: &RelPath, version: &Version) -> Result<Option<ContentHash>> {
        let seq = seq_of(version)?;
        let full = self.full(path);
        let (entry, _) = retrying(|| self.remote.version_chunks(&full, seq)).await?;
        let entry = match entry {
            Some(e) => e,
            None => self.entry_from_history(&full, seq).await?,
        };
        Ok(entry.hash.filter(|_| entry.kind == EntryKind::File))
    }
}

/// What `contents` needs to know of a wanted file (path, version and size).
fn version_info(w: &Wanted) -> VersionInfo {
    VersionInfo {
        path: w.full.clone(),
        seq: w.seq,
        entry: Entry {
            kind: EntryKind::File,
            size: w.size,
            mtime_ns: 0,
            mode: 0,
            hash: Some(w.hash),
            target: None,
        },
        device: DeviceId(String::new()),
        user: String::new(),
        computer: String::new(),
        committed_ns: 0,
        inline: None,
    }
}

/// The chunks of `spans`, [`CHUNKS_IN_FLIGHT`] fetched at once and handed on in order, each
/// checked against its id and length, and the whole against `want` at the end.
fn chunk_stream(
    remote: Arc<HttpRemote>,
    name: String,
    spans: Vec<ChunkSpan>,
    want: ContentHash,
) -> Content<'static> {
    let what = name.clone();
    let fetches: BoxStream<'static, Result<Bytes>> = stream::iter(spans)
        .map(move |span| {
            let (remote, what) = (remote.clone(), what.clone());
            async move {
                let data = retrying(|| remote.chunk(&span.id)).await?;
                if ChunkId::of(&data) != span.id || data.len() != span.len as usize {
                    return Err(Error::remote(format!(
                        "{what}: chunk {} arrived corrupt",
                        span.id
                    )));
                }
                Ok(data)
            }
        })
        .buffered(CHUNKS_IN_FLIGHT)
        .boxed();
    hashed(fetches, name, want)
}

/// `pieces` handed on as they arrive, the whole checked against `want` at the end (the last
/// piece waits for the check).
fn hashed(
    pieces: BoxStream<'static, Result<Bytes>>,
    name: String,
    want: ContentHash,
) -> Content<'static> {
    let hasher = blake3::Hasher::new();
    stream::try_unfold(
        (pieces, hasher, name, want),
        |(mut pieces, mut hasher, name, want)| async move {
            match pieces.next().await {
                Some(data) => {
                    let data = data?;
                    hasher.update(&data);
                    Ok(Some((data, (pieces, hasher, name, want))))
                }
                None if ContentHash::from_bytes(*hasher.finalize().as_bytes()) == want => Ok(None),
                None => Err(Error::remote(format!(
                    "{name} arrived corrupt (it does not match its content hash)"
                ))),
            }
        },
    )
    .boxed()
}
