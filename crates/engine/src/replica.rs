//! `Replica`: one side of a task as the engine sees it, in engine types only.
//!
//! A replica lists its entries (and, when it keeps a journal, the changes since a cursor),
//! stats one path, streams content out, and writes, deletes and moves *only if the path is
//! still the version the caller saw* (an opaque [`Version`] token). That last rule is what lets
//! one planner and one executor serve a local folder, a cairn server and, next, public clouds:
//! whatever the replica, a write never clobbers a change the plan did not see.
//!
//! [`LocalReplica`] is a local folder (no-follow writes through a temporary in the task's
//! working folder); the cairn server's replica lives in `cairn-client`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_model::{ContentHash, EntryKind, RelPath};
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::{Error, Result};

mod local;

pub use local::{stat_version, LocalReplica};

/// An entry's state as its replica names it: the server's sequence number, a local file's
/// stat. Only the replica that made it can read it; others just compare it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(pub String);

/// Where a replica's journal was read up to; opaque like [`Version`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(pub String);

/// One path of a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaEntry {
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    /// Permission bits only.
    pub mode: u32,
    /// Content hash, when the replica knows it without reading the content.
    pub hash: Option<ContentHash>,
    /// A symbolic link's target.
    pub target: Option<String>,
    pub version: Version,
}

/// What a new entry is: kind, times and mode (content comes separately).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    /// The content's hash, when the writer knows it (the replica checks what it receives).
    pub hash: Option<ContentHash>,
    pub target: Option<String>,
}

/// What a replica can do, for the planner and the executor to adapt to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Replaced and deleted content stays reachable as versions.
    pub keeps_versions: bool,
    /// Listings carry content hashes (otherwise the caller hashes what it reads).
    pub knows_hashes: bool,
    /// Listings carry modification times to the nanosecond.
    pub knows_mtimes: bool,
    /// Moves are one cheap operation (no content travels).
    pub can_move: bool,
    /// Permission bits and modification times are kept as written (stat gives them back).
    pub keeps_modes: bool,
    /// Symbolic links can be stored (otherwise a local link is reported and left alone).
    pub stores_links: bool,
    /// Content the replica holds already is not sent again.
    pub dedups: bool,
    /// Keeps a journal: [`Replica::changes`] answers.
    pub has_journal: bool,
    /// Names differing only in case are different entries.
    pub case_sensitive: bool,
    pub max_name_bytes: usize,
    pub max_path_bytes: usize,
}

/// A complete listing and the cursor to ask for changes after it.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub entries: BTreeMap<RelPath, ReplicaEntry>,
    /// `None` when the replica keeps no journal.
    pub cursor: Option<Cursor>,
    /// Paths the listing could not take, with why (special files, bad names); never silent.
    pub skipped: Vec<(String, String)>,
    /// Paths a rule left out, with the rule: neither sent nor deleted, on either side.
    pub excluded: Vec<(RelPath, String)>,
    /// Names the listing could not take as they are (a name's normal form, ...): whatever
    /// the other side holds under them is left alone.
    pub held: Vec<RelPath>,
    /// Folders that could not be read whole: nothing under them is deleted, on either side.
    /// Listed here, never silently missing (DESIGN.md invariant 3).
    pub incomplete: Vec<RelPath>,
}

/// Decides, entry by entry as a listing is read, which entries it leaves out (a pass's
/// paths unchanged since its base: [`crate::sift`]). Every listed entry is shown to it once.
pub trait Sift: Send + Sync {
    /// A listing starts (again, after a failed try): what earlier tries left out is forgotten.
    fn restart(&self);
    /// Whether the listing leaves `entry` out.
    fn leaves_out(&self, path: &RelPath, entry: &ReplicaEntry) -> bool;
}

/// One change from a journal: the new state of a path, or its removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaChange {
    Upsert(RelPath, ReplicaEntry),
    Remove(RelPath),
}

/// The outcome of a conditional write, delete or move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the path's new state (`None` after a delete).
    Done(Option<ReplicaEntry>),
    /// Not done: the path is no longer the version expected; its state now.
    Changed(Option<ReplicaEntry>),
}

/// Content in flight, in pieces of any size.
pub type Content<'a> = BoxStream<'a, Result<Bytes>>;

/// One write of a batch: a folder, a link, or a small file whose content is all here.
#[derive(Clone, Debug)]
pub struct WriteOp {
    pub path: RelPath,
    pub entry: NewEntry,
    /// A file's whole content (empty for folders and links).
    pub content: Bytes,
    /// What the path must still be (`None`: nothing there).
    pub expect: Option<Version>,
}

/// One move of a batch.
#[derive(Clone, Debug)]
pub struct MoveOp {
    pub from: RelPath,
    pub to: RelPath,
    /// What `from` must still be; nothing may be at `to`.
    pub expect: Version,
    /// What is moved, as the caller listed it (a server records it at `to`, and cuts
    /// batches by the chunk references moves copy).
    pub entry: NewEntry,
}

/// What a replica sent over the network since it was made (after dedup: only what travelled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub bytes: u64,
    pub chunks: u64,
    /// Transfers (requests or pieces) an upload or download rate limit made wait: how a
    /// pass shows its limit was at work, whatever the timing.
    pub limit_waits: u64,
}

/// Results of a batch, one per item and in order; the outer error is for the batch as a whole
/// (the replica could not be reached, nothing is known to be done).
pub type BatchResult<T> = Result<Vec<Result<T>>>;

#[async_trait]
pub trait Replica: Send + Sync {
    /// For messages: a local path, `https://host/folder`, ...
    fn describe(&self) -> String;

    fn capabilities(&self) -> Capabilities;

    /// Every entry, complete or an error: never a partial answer (DESIGN.md invariant 3).
    async fn list(&self) -> Result<Listing>;

    /// [`Replica::list`] without the entries `sift` leaves out; a replica that reads its
    /// listing piece by piece drops them as they come, so the listing is never held whole.
    async fn list_sifted(&self, sift: Arc<dyn Sift>) -> Result<Listing> {
        sift.restart();
        let mut listing = self.list().await?;
        listing.entries.retain(|p, e| !sift.leaves_out(p, e));
        Ok(listing)
    }

    /// Changes after `since`, oldest first, and the cursor after them; `None` when the
    /// replica cannot answer from there (no journal, or the cursor is too old): list again.
    async fn changes(&self, since: &Cursor) -> Result<Option<(Vec<ReplicaChange>, Cursor)>>;

    /// What is at `path` now.
    async fn stat(&self, path: &RelPath) -> Result<Option<ReplicaEntry>>;

    /// The content of `path` at `version`; an error if it is no longer that version (and the
    /// replica keeps no versions) or the content does not match its hash.
    async fn read(&self, path: &RelPath, version: &Version) -> Result<Content<'static>>;

    /// Writes `entry` (with `content` for a file) at `path` if the path is still `expect`
    /// (`None`: nothing there). The content lands whole or not at all.
    async fn write(
        &self,
        path: &RelPath,
        entry: &NewEntry,
        content: Content<'_>,
        expect: Option<&Version>,
    ) -> Result<Outcome>;

    /// Removes `path` if it is still `expect`. Already gone counts as done: a delete retried
    /// after a lost answer must not fail.
    async fn delete(&self, path: &RelPath, expect: &Version) -> Result<Outcome>;

    /// Moves `from` (still `expect`) to `to`, where nothing may be.
    async fn rename(&self, from: &RelPath, to: &RelPath, expect: &Version) -> Result<Outcome>;

    /// Several small writes, in order (parents before children), in as few requests and
    /// durability syncs as the replica can. Each is conditional like [`Replica::write`].
    async fn write_many(&self, ops: Vec<WriteOp>) -> BatchResult<Outcome> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let content = content_of(op.content);
            out.push(
                self.write(&op.path, &op.entry, content, op.expect.as_ref())
                    .await,
            );
        }
        Ok(out)
    }

    /// The whole contents of several small files as the caller listed them, each checked as
    /// [`Replica::read`] checks it (and against the listed hash, when there is one), in as few
    /// requests as the replica can.
    async fn read_many(&self, items: &[(RelPath, ReplicaEntry)]) -> BatchResult<Bytes> {
        let mut out = Vec::with_capacity(items.len());
        for (path, entry) in items {
            out.push(match self.read(path, &entry.version).await {
                Ok(content) => collect(content).await.map(Bytes::from),
                Err(e) => Err(e),
            });
        }
        Ok(out)
    }

    /// Several conditional deletes, in order (children are given before their parents).
    async fn delete_many(&self, items: &[(RelPath, Version)]) -> BatchResult<Outcome> {
        let mut out = Vec::with_capacity(items.len());
        for (path, version) in items {
            out.push(self.delete(path, version).await);
        }
        Ok(out)
    }

    /// Several conditional moves; where the replica can, in one transaction, so no reader
    /// sees half of a renamed folder.
    async fn rename_many(&self, moves: &[MoveOp]) -> BatchResult<Outcome> {
        let mut out = Vec::with_capacity(moves.len());
        for m in moves {
            out.push(self.rename(&m.from, &m.to, &m.expect).await);
        }
        Ok(out)
    }

    /// A replica that keeps versions: makes the retained `version` of `path` its head again,
    /// if the head is still `expect`, without content travelling.
    async fn promote(
        &self,
        path: &RelPath,
        version: &Version,
        expect: &Version,
    ) -> Result<Outcome> {
        let _ = (version, expect);
        Err(Error::Refused(format!(
            "{}/{path}: this replica keeps no versions",
            self.describe()
        )))
    }

    /// Content hashes of files at the given versions, read and computed where the replica
    /// does not know them; `None` for a file that changed, vanished or cannot be read.
    async fn hash_many(&self, items: &[(RelPath, Version)]) -> Result<Vec<Option<ContentHash>>> {
        let mut out = Vec::with_capacity(items.len());
        for (path, version) in items {
            let hash = match self.read(path, version).await {
                Ok(mut content) => {
                    let mut hasher = blake3::Hasher::new();
                    let mut ok = true;
                    while let Some(piece) = content.next().await {
                        match piece {
                            Ok(p) => {
                                hasher.update(&p);
                            }
                            Err(_) => {
                                ok = false;
                                break;
                            }
                        }
                    }
                    ok.then(|| ContentHash::from_bytes(*hasher.finalize().as_bytes()))
                }
                Err(_) => None,
            };
            out.push(hash);
        }
        Ok(out)
    }

    /// What this replica sent since it was made.
    fn traffic(&self) -> Traffic {
        Traffic::default()
    }

    /// A stable name of the store behind the replica (a server's identity): when it differs
    /// from the one last synced with, what both sides agreed on before means nothing here.
    async fn identity(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// True when `version` is newer than anything the replica held at `cursor`: the replica
    /// went back in time (restored from an older copy of its data).
    fn went_back(&self, version: &Version, cursor: &Cursor) -> bool {
        let _ = (version, cursor);
        false
    }

    /// Whether the caller may write here now (access can change while a task exists).
    async fn writable(&self) -> Result<bool> {
        Ok(true)
    }

    /// Whether names that differ only in case name the same entry here (a Mac's or Windows'
    /// folder). Asked only when a listing holds such names: a local folder answers by trying.
    async fn folds_case(&self) -> Result<bool> {
        Ok(!self.capabilities().case_sensitive)
    }

    /// Why the replica cannot hold an entry of `kind` and `size` at `path` (a provider's
    /// forbidden characters, name and path lengths, largest object), or `None`: such a local
    /// entry is reported by name and left alone, never silently dropped.
    fn refuses(&self, path: &RelPath, kind: EntryKind, size: u64) -> Option<String> {
        let _ = (path, kind, size);
        None
    }

    /// Paths whose content the replica lost part of: a backup that still has them sends them
    /// again.
    async fn damaged(&self) -> Result<Vec<RelPath>> {
        Ok(Vec::new())
    }
}

/// Content that is all here already.
pub fn content_of(bytes: Bytes) -> Content<'static> {
    stream::once(async move { Ok(bytes) }).boxed()
}

/// Reads all of `content` (tests and small files).
pub async fn collect(mut content: Content<'_>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(piece) = content.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}
