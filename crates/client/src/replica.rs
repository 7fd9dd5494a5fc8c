//! The cairn server as a [`Replica`]: a folder (or a sub-folder of one) on the server. Chunk
//! dedup, the "which chunks are missing" question, the commit with its base version and the
//! journal stay behind the trait; the engine sees entries, versions and content.
//!
//! Versions are the server's sequence numbers; the cursor is the server's identity and the
//! folder's head, so a cursor from another server, or from before a restore that took the
//! journal backwards, is refused and the caller lists again.
//!
//! The transfer knowledge lives in the submodules: `upload` (batched writes: one chunking
//! pass, one "missing" question and one commit per batch; large files streamed window by
//! window), `download` (batched reads through `contents`, chunks fetched a few at a time) and
//! `commit` (deletes, moves and promotions in as few commits as the protocol's limits allow).
//! Every request goes through [`retrying`], so a dropped connection or a restarting server
//! costs a pause, not a failed batch.
//!
//! What callers rely on: a batch answers one result per item, in order, and an item that fails
//! (a stale version, content that does not match its hash, a refusal) fails alone; the outer
//! error means no request of the batch landed. A write that lands is `Done` with the server's
//! new sequence number and the hash the replica computed itself; one that meets a newer head is
//! `Changed` with that head. [`Replica::traffic`] counts chunk bytes as they are uploaded, so
//! content the server already holds (in any version of a file the caller may read) costs
//! nothing, and small files' content carried inline in a commit.
//!
//! A replica serves one pass. Two things it keeps for that pass spare requests: the identity
//! check's answer, which the pass's read of changes uses instead of asking again, and the
//! content of small files that the journal answer carried inline (written by other computers),
//! which reads use instead of fetching it, each piece checked against its version's hash.

mod commit;
mod download;
mod upload;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use cairn_engine::remote::Remote;
use cairn_engine::replica::{
    BatchResult, Capabilities, Content, Cursor, Listing, MoveOp, NewEntry, Outcome, Replica,
    ReplicaChange, ReplicaEntry, Sift, Traffic, Version, WriteOp,
};
use cairn_engine::retry::retrying;
use cairn_engine::{Error, Result};
use cairn_model::{ContentHash, Entry, RelPath, Seq};
use cairn_protocol::{ChangeResult, VersionInfo};

use crate::HttpRemote;

/// Catching up on the journal waits for no news: it reads what is there.
const JOURNAL_PAGE_WAIT: u64 = 0;

/// A folder on a cairn server, from `prefix` down.
pub struct ServerReplica {
    remote: Arc<HttpRemote>,
    prefix: RelPath,
    /// Chunk bytes (frames as sent) and chunks uploaded so far: only what travelled.
    sent_bytes: AtomicU64,
    sent_chunks: AtomicU64,
    /// The server's identity and head from this pass's identity check, taken by the first
    /// listing or read of changes after it.
    checked: Mutex<Option<(String, Seq)>>,
    /// Content of small files by full path and version, as the last journal answer carried
    /// it (already checked against each version's hash): at most one answer's worth.
    inline: Mutex<HashMap<(RelPath, Seq), Bytes>>,
}

impl ServerReplica {
    pub fn new(remote: Arc<HttpRemote>, prefix: RelPath) -> Self {
        ServerReplica {
            remote,
            prefix,
            sent_bytes: AtomicU64::new(0),
            sent_chunks: AtomicU64::new(0),
            checked: Mutex::new(None),
            inline: Mutex::new(HashMap::new()),
        }
    }

    /// The server's identity and head: the identity check's answer if this pass made one,
    /// nothing used it yet and nothing was committed since, else asked now.
    async fn identity_now(&self) -> Result<(String, Seq)> {
        let known = self
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|(_, head)| !self.remote.committed_after(*head));
        match known {
            Some(id) => Ok(id),
            None => retrying(|| self.remote.identity()).await,
        }
    }

    /// Keeps the inline content a journal answer carried, when it is the content of its
    /// version (hash checked); replaces what an earlier answer left.
    fn keep_inline(&self, versions: &[VersionInfo], first_page: bool) {
        let mut cache = self.inline.lock().unwrap_or_else(|p| p.into_inner());
        if first_page {
            cache.clear();
        }
        for v in versions {
            if let Some(data) = v.checked_inline() {
                cache.insert((v.path.clone(), v.seq), data.clone());
            }
        }
    }

    /// The content of `full` at `seq` if a journal answer carried it (checked then against
    /// the version's hash), and it is `listed` too when the caller listed a hash.
    fn take_inline(&self, full: &RelPath, seq: Seq, listed: Option<ContentHash>) -> Option<Bytes> {
        let mut cache = self.inline.lock().unwrap_or_else(|p| p.into_inner());
        let data = cache.remove(&(full.clone(), seq))?;
        listed
            .is_none_or(|h| ContentHash::of(&data) == h)
            .then_some(data)
    }

    fn full(&self, path: &RelPath) -> RelPath {
        self.prefix.join_path(path)
    }

    fn relative(&self, path: &RelPath) -> Option<RelPath> {
        path.strip_prefix(&self.prefix).filter(|r| !r.is_root())
    }

    /// `path` as messages name it: the server, the folder and the full path.
    fn name(&self, path: &RelPath) -> String {
        format!("{}/{}", self.remote.describe(), self.full(path))
    }

    fn count_sent(&self, bytes: u64, chunks: u64) {
        self.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.sent_chunks.fetch_add(chunks, Ordering::Relaxed);
    }

    async fn head_of(&self, path: &RelPath) -> Result<Option<VersionInfo>> {
        let full = self.full(path);
        let versions = retrying(|| self.remote.versions(&full)).await?;
        Ok(versions.into_iter().next().filter(|v| v.entry.is_live()))
    }

    /// The entry of version `seq` of the full path `full`, from the path's history: only for
    /// servers whose chunk lists do not carry their version's entry.
    async fn entry_from_history(&self, full: &RelPath, seq: Seq) -> Result<Entry> {
        let versions = retrying(|| self.remote.versions(full)).await?;
        versions
            .into_iter()
            .find(|v| v.seq == seq)
            .map(|v| v.entry)
            .ok_or_else(|| Error::remote(format!("{full} has no version {seq}")))
    }

    /// A commit's result for one change, in replica terms: accepted is done (with the new
    /// entry), a conflict is the head now, anything else is an error naming the path.
    fn outcome(&self, path: &RelPath, entry: &Entry, result: ChangeResult) -> Result<Outcome> {
        match result {
            ChangeResult::Accepted { seq } => {
                Ok(Outcome::Done(entry.is_live().then(|| entry_of(entry, seq))))
            }
            ChangeResult::Conflict { head } => Ok(Outcome::Changed(live_head(head))),
            ChangeResult::MissingChunks { chunks } => Err(Error::Remote {
                message: format!(
                    "{}: {} of its chunks went missing on the server before the commit; write it again",
                    self.name(path),
                    chunks.len()
                ),
                temporary: true,
            }),
            ChangeResult::Refused { reason } => Err(self.refused(path, &reason)),
        }
    }

    fn refused(&self, path: &RelPath, reason: &str) -> Error {
        Error::Refused(format!(
            "{}: refused by the server: {reason}",
            self.name(path)
        ))
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

fn live_head(head: Option<VersionInfo>) -> Option<ReplicaEntry> {
    head.filter(|h| h.entry.is_live())
        .map(|h| entry_of(&h.entry, h.seq))
}

/// What a new entry is on the wire; `hash` is what the replica computed (files) or derived
/// (links), never taken on trust.
fn wire_entry(e: &NewEntry, hash: Option<ContentHash>) -> Entry {
    Entry {
        kind: e.kind,
        size: e.size,
        mtime_ns: e.mtime_ns,
        mode: e.mode,
        hash,
        target: e.target.clone(),
    }
}

fn seq_of(v: &Version) -> Result<Seq> {
    v.0.parse()
        .map(Seq)
        .map_err(|_| Error::Refused(format!("{:?} is not a version of this server", v.0)))
}

fn cursor_of(server_id: &str, head: Seq) -> Cursor {
    Cursor(format!("{}:{server_id}", head.0))
}

/// The head and server id a cursor was made with.
fn parse_cursor(c: &Cursor) -> Option<(Seq, &str)> {
    let (head, server) = c.0.split_once(':')?;
    Some((Seq(head.parse().ok()?), server))
}

/// An error for one item of a batch, repeated for each item it stopped (engine errors are not
/// `Clone`): same message, same temporariness.
fn copy_err(e: &Error) -> Error {
    Error::Remote {
        message: e.to_string(),
        temporary: e.is_temporary(),
    }
}

impl ServerReplica {
    /// The folder's listing, without what `sift` leaves out.
    async fn listing(&self, sift: Option<&dyn Sift>) -> Result<Listing> {
        let (server_id, head) = self.identity_now().await?;
        // Each entry converted (and sifted) as it is read: the listing's versions are never
        // all held.
        let listed = retrying(|| async {
            if let Some(s) = sift {
                s.restart();
            }
            let mut out = Vec::new();
            self.remote
                .tree_each(&self.prefix, &mut |v| {
                    if let Some(rel) = self.relative(&v.path) {
                        let entry = entry_of(&v.entry, v.seq);
                        if !sift.is_some_and(|s| s.leaves_out(&rel, &entry)) {
                            out.push((rel, entry));
                        }
                    }
                })
                .await?;
            Ok(out)
        })
        .await?;
        let entries = BTreeMap::from_iter(listed);
        // A commit between the two requests may be in the tree: the cursor then replays it,
        // which is harmless (the same state again).
        Ok(Listing {
            entries,
            cursor: Some(cursor_of(&server_id, head)),
            ..Listing::default()
        })
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
            keeps_modes: true,
            stores_links: true,
            dedups: true,
            has_journal: true,
            case_sensitive: true,
            max_name_bytes: 255,
            max_path_bytes: cairn_model::path::MAX_PATH_BYTES
                .saturating_sub(self.prefix.as_str().len() + 1),
        }
    }

    async fn list(&self) -> Result<Listing> {
        self.listing(None).await
    }

    async fn list_sifted(&self, sift: Arc<dyn Sift>) -> Result<Listing> {
        self.listing(Some(&*sift)).await
    }

    async fn changes(&self, since: &Cursor) -> Result<Option<(Vec<ReplicaChange>, Cursor)>> {
        let Some((mut at, server)) = parse_cursor(since) else {
            return Ok(None);
        };
        let (server_id, head) = self.identity_now().await?;
        if server != server_id || head < at {
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut first_page = true;
        while at < head {
            let (versions, _) = retrying(|| self.remote.journal(at, JOURNAL_PAGE_WAIT)).await?;
            self.keep_inline(&versions, std::mem::take(&mut first_page));
            let Some(last) = versions.last().map(|v| v.seq) else {
                break;
            };
            for v in &versions {
                if let Some(rel) = self.relative(&v.path) {
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
        self.read_version(path, version).await
    }

    async fn write(
        &self,
        path: &RelPath,
        entry: &NewEntry,
        content: Content<'_>,
        expect: Option<&Version>,
    ) -> Result<Outcome> {
        self.write_one(path, entry, content, expect).await
    }

    async fn delete(&self, path: &RelPath, expect: &Version) -> Result<Outcome> {
        let items = [(path.clone(), expect.clone())];
        one(self.delete_batch(&items).await?)
    }

    /// A single move asks for the source's head first (the caller gives no entry); batches
    /// ([`Replica::rename_many`]) take the entry the caller listed instead.
    async fn rename(&self, from: &RelPath, to: &RelPath, expect: &Version) -> Result<Outcome> {
        let Some(head) = self.head_of(from).await? else {
            return Ok(Outcome::Changed(None));
        };
        if head.seq != seq_of(expect)? {
            return Ok(Outcome::Changed(Some(entry_of(&head.entry, head.seq))));
        }
        let e = &head.entry;
        let op = MoveOp {
            from: from.clone(),
            to: to.clone(),
            expect: expect.clone(),
            entry: NewEntry {
                kind: e.kind,
                size: e.size,
                mtime_ns: e.mtime_ns,
                mode: e.mode,
                hash: e.hash,
                target: e.target.clone(),
            },
        };
        one(self.move_batch(std::slice::from_ref(&op)).await?)
    }

    async fn write_many(&self, ops: Vec<WriteOp>) -> BatchResult<Outcome> {
        self.write_batch(ops).await
    }

    async fn read_many(&self, items: &[(RelPath, ReplicaEntry)]) -> BatchResult<Bytes> {
        self.read_batch(items).await
    }

    async fn delete_many(&self, items: &[(RelPath, Version)]) -> BatchResult<Outcome> {
        self.delete_batch(items).await
    }

    async fn rename_many(&self, moves: &[MoveOp]) -> BatchResult<Outcome> {
        self.move_batch(moves).await
    }

    async fn promote(
        &self,
        path: &RelPath,
        version: &Version,
        expect: &Version,
    ) -> Result<Outcome> {
        self.promote_version(path, version, expect).await
    }

    async fn hash_many(&self, items: &[(RelPath, Version)]) -> Result<Vec<Option<ContentHash>>> {
        self.hashes(items).await
    }

    fn traffic(&self) -> Traffic {
        Traffic {
            bytes: self.sent_bytes.load(Ordering::Relaxed),
            chunks: self.sent_chunks.load(Ordering::Relaxed),
            limit_waits: 0,
        }
    }

    async fn identity(&self) -> Result<Option<String>> {
        let (server_id, head) = retrying(|| self.remote.identity()).await?;
        *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = Some((server_id.clone(), head));
        Ok(Some(server_id))
    }

    /// A version above the head the cursor was made at: the server's journal went back
    /// (restored from an older copy), since sequence numbers only grow.
    fn went_back(&self, version: &Version, cursor: &Cursor) -> bool {
        match (seq_of(version), parse_cursor(cursor)) {
            (Ok(v), Some((head, _))) => v > head,
            _ => false,
        }
    }

    async fn writable(&self) -> Result<bool> {
        retrying(|| self.remote.writable()).await
    }

    async fn damaged(&self) -> Result<Vec<RelPath>> {
        let paths = retrying(|| self.remote.damaged(&self.prefix)).await?;
        Ok(paths.iter().filter_map(|p| self.relative(p)).collect())
    }
}

/// The only result of a batch of one.
fn one(results: Vec<Result<Outcome>>) -> Result<Outcome> {
    results
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(Error::remote("a batch of one gave no result")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_name_their_head_and_server() {
        let c = cursor_of("srv-1", Seq(42));
        assert_eq!(parse_cursor(&c), Some((Seq(42), "srv-1")));
        assert_eq!(parse_cursor(&Cursor("nonsense".into())), None);
        assert_eq!(parse_cursor(&Cursor("x:srv".into())), None);
    }
}
