//! `Remote`: the far side of a task, as the engine needs it.
//!
//! The engine decides *what* changes; a `Remote` decides how bytes travel. The cairn server's
//! remote (in `cairn-client`) moves content as chunks the server lacks; every method is one
//! or a few requests, so many small files cost few round trips.

use async_trait::async_trait;
use bytes::Bytes;
use cairn_model::{ChunkId, Entry, RelPath, Seq};
use cairn_protocol::{Change, ChangeResult, ChunkSpan, VersionInfo};
use futures_util::stream::BoxStream;

use crate::Result;

/// The head of one remote path.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteEntry {
    pub seq: Seq,
    pub entry: Entry,
}

#[async_trait]
pub trait Remote: Send + Sync {
    /// For messages: `https://host:port/folder`.
    fn describe(&self) -> String;

    /// Every path under `prefix` (live heads, or as of `at_ns`, with deletion markers when
    /// `deleted`). The listing is complete or an error: never a partial answer.
    ///
    /// # Errors
    /// Any failure to get the whole listing.
    async fn tree(
        &self,
        prefix: &RelPath,
        at_ns: Option<i64>,
        deleted: bool,
    ) -> Result<Vec<VersionInfo>>;

    /// The live entries under `prefix`, each handed to `each` as it is read, so that a listing
    /// of a million entries is never held whole beside what the caller makes of it. Complete
    /// or an error, as [`Remote::tree`]; on an error `each` may have seen part of it.
    ///
    /// # Errors
    /// Any failure to get the whole listing.
    async fn tree_each(
        &self,
        prefix: &RelPath,
        each: &mut (dyn FnMut(VersionInfo) + Send),
    ) -> Result<()> {
        for v in self.tree(prefix, None, false).await? {
            each(v);
        }
        Ok(())
    }

    /// Which of `ids` the remote lacks.
    async fn missing(&self, ids: &[ChunkId]) -> Result<Vec<ChunkId>>;

    /// Stores chunks; returns the bytes sent.
    async fn upload(&self, chunks: &[(ChunkId, Bytes)]) -> Result<u64>;

    /// Applies a batch of changes; one result per change, in order.
    async fn commit(&self, changes: &[Change]) -> Result<Vec<ChangeResult>>;

    /// The server's identity and the folder's newest sequence number.
    async fn identity(&self) -> Result<(String, Seq)>;

    /// Changes after `after`, waiting up to `wait_secs` for one; returns them and the head.
    async fn journal(&self, after: Seq, wait_secs: u64) -> Result<(Vec<VersionInfo>, Seq)>;

    /// Every retained version of `path`, newest first.
    async fn versions(&self, path: &RelPath) -> Result<Vec<VersionInfo>>;

    /// The chunk list of version `seq` of `path`.
    async fn chunk_list(&self, path: &RelPath, seq: Seq) -> Result<Vec<ChunkSpan>>;

    /// The whole content of version `seq` of `path` in one request (small files).
    async fn content(&self, path: &RelPath, seq: Seq) -> Result<Bytes>;

    /// The content of version `seq` of `path`, which is `size` bytes, as it arrives (large
    /// files): never more than `size` bytes. The caller checks the whole against its hash.
    async fn content_stream(
        &self,
        path: &RelPath,
        seq: Seq,
        size: u64,
    ) -> Result<BoxStream<'static, Result<Bytes>>>;

    /// The whole contents of several small files (`versions`, in order); one request where the
    /// remote can. The caller checks each against its hash.
    async fn contents(&self, versions: &[VersionInfo]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            out.push(self.content(&v.path, v.seq).await?);
        }
        Ok(out)
    }

    /// One chunk's bytes.
    async fn chunk(&self, id: &ChunkId) -> Result<Bytes>;

    /// Paths under `prefix` whose content the remote lost part of: a backup that still has
    /// them sends them again.
    async fn damaged(&self, prefix: &RelPath) -> Result<Vec<RelPath>>;

    /// Whether this user may write here now (access can change while a task exists).
    async fn writable(&self) -> Result<bool> {
        Ok(true)
    }
}
