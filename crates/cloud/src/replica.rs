//! `CloudReplica`: a path in a public cloud, reached through an OpenDAL operator, as one side
//! of a task.
//!
//! What a cloud can and cannot do shapes this replica:
//! - No journal: every pass lists the whole path (the planner diffs listings).
//! - An entry's version is its ETag where the service gives one (it changes with the content),
//!   otherwise its size and modification time.
//! - Conditional writes use the service's `If-Match`/`If-None-Match` where OpenDAL offers them;
//!   elsewhere the path is checked just before the write. A write lands whole: object stores
//!   replace an object in one step, file-like services (SFTP, FTP, WebDAV) get a temporary
//!   that is renamed into place.
//! - Object stores have no folders: a folder is a zero-byte `name/` marker object (so empty
//!   folders sync too), and any prefix that holds objects is a folder as well.
//! - Names starting with `.cairn` at the top are ours (temporaries, versions, the encryption
//!   marker) and never listed as the user's.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_engine::replica::{
    Capabilities, Content, Cursor, Listing, NewEntry, Outcome, Replica, ReplicaChange,
    ReplicaEntry, Traffic, Version,
};
use cairn_engine::{Error, Result};
use cairn_model::RelPath;
use futures_util::{StreamExt, TryStreamExt};
use opendal::Operator;

use crate::transport::Counters;

mod listing;
mod versions;
mod write;

/// Our own names at the top of a cloud path.
pub const RESERVED_PREFIX: &str = ".cairn";
/// Temporaries of file-like services, renamed into place when complete.
const STAGING: &str = ".cairn/tmp";

/// How a task uses its cloud path.
#[derive(Clone, Debug)]
pub struct CloudOptions {
    /// Multipart part size in bytes.
    pub part_size: usize,
    /// Parts of one file sent at once.
    pub part_concurrency: usize,
    /// Replaced and deleted files kept on the remote, per path (0: none).
    pub keep_versions: usize,
}

impl Default for CloudOptions {
    fn default() -> Self {
        CloudOptions {
            part_size: 8 << 20,
            part_concurrency: 2,
            keep_versions: 0,
        }
    }
}

pub struct CloudReplica {
    op: Operator,
    describe: String,
    opts: CloudOptions,
    counters: Arc<Counters>,
    /// The service replaces objects in one step (no temporary needed).
    atomic_put: bool,
}

impl CloudReplica {
    /// A replica over `op`, whose root is the task's remote path.
    pub fn new(
        op: Operator,
        describe: String,
        opts: CloudOptions,
        counters: Arc<Counters>,
    ) -> Self {
        let scheme = op.info().scheme().to_string();
        let atomic_put = !matches!(scheme.as_str(), "sftp" | "ftp" | "webdav" | "fs");
        CloudReplica {
            op,
            describe,
            opts,
            counters,
            atomic_put,
        }
    }

    pub fn operator(&self) -> &Operator {
        &self.op
    }

    /// The versions of `path` kept on the remote, oldest first: object key and when it was
    /// replaced (ns since the epoch).
    pub async fn kept_versions(&self, path: &RelPath) -> Result<Vec<(String, i64)>> {
        versions::list_versions(self, path).await
    }

    fn caps(&self) -> opendal::Capability {
        self.op.info().capability()
    }

    /// An error about `path`, temporary when the service says so.
    fn fail(&self, what: &str, path: &str, e: opendal::Error) -> Error {
        let temporary = e.is_temporary()
            || matches!(
                e.kind(),
                opendal::ErrorKind::RateLimited | opendal::ErrorKind::Unexpected
            );
        Error::Remote {
            message: format!("{}/{path}: {what}: {e}", self.describe),
            temporary,
        }
    }

    /// What is at `path` now: a file, a folder marker, or a prefix holding objects.
    async fn current(&self, path: &RelPath) -> Result<Option<ReplicaEntry>> {
        let key = path.as_str();
        match self.op.stat(key).await {
            Ok(meta) if !meta.is_dir() => return Ok(Some(listing::entry_of(&meta, false))),
            Ok(_) => return Ok(Some(listing::dir_entry())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
            Err(e) => return Err(self.fail("stat", key, e)),
        }
        let dir = format!("{key}/");
        match self.op.stat(&dir).await {
            Ok(_) => return Ok(Some(listing::dir_entry())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
            Err(e) => return Err(self.fail("stat", &dir, e)),
        }
        // A prefix with objects under it and no marker is a folder too.
        let under = self
            .op
            .list_with(&dir)
            .limit(1)
            .await
            .or_else(|e| match e.kind() {
                opendal::ErrorKind::NotFound => Ok(Vec::new()),
                _ => Err(self.fail("list", &dir, e)),
            })?;
        Ok(under
            .iter()
            .any(|e| e.path() != dir)
            .then(listing::dir_entry))
    }

    /// `Changed` with the path's state now, unless it is still `expect`.
    async fn check(&self, path: &RelPath, expect: Option<&Version>) -> Result<Option<Outcome>> {
        let now = self.current(path).await?;
        let same = match (&now, expect) {
            (None, None) => true,
            (Some(e), Some(v)) => &e.version == v,
            _ => false,
        };
        Ok((!same).then_some(Outcome::Changed(now)))
    }
}

#[async_trait]
impl Replica for CloudReplica {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn capabilities(&self) -> Capabilities {
        let caps = self.caps();
        Capabilities {
            keeps_versions: self.opts.keep_versions > 0,
            knows_hashes: false,
            knows_mtimes: false,
            can_move: caps.rename,
            keeps_modes: false,
            stores_links: false,
            dedups: false,
            has_journal: false,
            case_sensitive: true,
            max_name_bytes: 255,
            max_path_bytes: 1024,
        }
    }

    async fn list(&self) -> Result<Listing> {
        listing::list(self).await
    }

    async fn changes(&self, _since: &Cursor) -> Result<Option<(Vec<ReplicaChange>, Cursor)>> {
        Ok(None)
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<ReplicaEntry>> {
        self.current(path).await
    }

    async fn read(&self, path: &RelPath, version: &Version) -> Result<Content<'static>> {
        // A chunked read stats the object first, with the same condition: both must take it
        // (WebDAV takes If-Match on a read but not on a stat).
        let caps = self.caps();
        let guarded = listing::etag_of(version)
            .filter(|_| caps.read_with_if_match && caps.stat_with_if_match);
        let head = match &guarded {
            Some(_) => true,
            None => self.check(path, Some(version)).await?.is_none(),
        };
        if head {
            match self.stream(path.as_str(), guarded.as_deref()).await {
                Err(e) if is_changed(&e) => {}
                other => return other.map_err(|e| self.read_error(path, e)),
            }
        }
        // No longer the head: a kept version, if there is one.
        match versions::find(self, path, version).await? {
            Some(kept) => self
                .stream(&kept, None)
                .await
                .map_err(|e| self.read_error(path, e)),
            None => Err(changed(&self.describe, path)),
        }
    }

    async fn write(
        &self,
        path: &RelPath,
        entry: &NewEntry,
        content: Content<'_>,
        expect: Option<&Version>,
    ) -> Result<Outcome> {
        write::write(self, path, entry, content, expect).await
    }

    async fn delete(&self, path: &RelPath, expect: &Version) -> Result<Outcome> {
        write::delete(self, path, expect).await
    }

    async fn rename(&self, from: &RelPath, to: &RelPath, expect: &Version) -> Result<Outcome> {
        write::rename(self, from, to, expect).await
    }

    async fn promote(
        &self,
        path: &RelPath,
        version: &Version,
        expect: &Version,
    ) -> Result<Outcome> {
        versions::promote(self, path, version, expect).await
    }

    fn traffic(&self) -> Traffic {
        use std::sync::atomic::Ordering;
        Traffic {
            bytes: self.counters.sent.load(Ordering::Relaxed),
            chunks: 0,
        }
    }
}

impl CloudReplica {
    /// The content of object `key`, only if it is still `if_match` when given.
    async fn stream(
        &self,
        key: &str,
        if_match: Option<&str>,
    ) -> std::result::Result<Content<'static>, opendal::Error> {
        let mut reader = self.op.reader_with(key).chunk(self.opts.part_size);
        if let Some(tag) = if_match {
            reader = reader.if_match(tag);
        }
        let stream = reader.await?.into_bytes_stream(..).await?;
        let (describe, key) = (self.describe.clone(), key.to_string());
        Ok(stream
            .map_err(move |e| Error::Remote {
                message: format!("{describe}/{key}: reading: {e}"),
                temporary: true,
            })
            .boxed())
    }

    fn read_error(&self, path: &RelPath, e: opendal::Error) -> Error {
        match e.kind() {
            opendal::ErrorKind::ConditionNotMatch | opendal::ErrorKind::NotFound => {
                changed(&self.describe, path)
            }
            _ => self.fail("reading", path.as_str(), e),
        }
    }
}

fn is_changed(e: &opendal::Error) -> bool {
    matches!(
        e.kind(),
        opendal::ErrorKind::ConditionNotMatch | opendal::ErrorKind::NotFound
    )
}

fn changed(describe: &str, path: &RelPath) -> Error {
    Error::Refused(format!(
        "{describe}/{path}: changed on the remote since it was listed"
    ))
}

/// The object key of a folder marker.
fn dir_key(path: &RelPath) -> String {
    format!("{}/", path.as_str())
}

/// Bytes as OpenDAL takes them.
fn buffer(b: Bytes) -> opendal::Buffer {
    opendal::Buffer::from(b)
}

/// User metadata we keep beside an object, where the service stores it.
fn user_metadata(entry: &NewEntry) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("mtime".to_string(), entry.mtime_ns.to_string());
    m.insert("mode".to_string(), format!("{:o}", entry.mode));
    m
}
