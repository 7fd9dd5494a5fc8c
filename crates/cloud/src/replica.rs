//! `CloudReplica`: a path in a public cloud, reached through an OpenDAL operator, as one side
//! of a task.
//!
//! What a cloud can and cannot do shapes this replica:
//! - No journal: every pass lists the whole path (the planner diffs listings).
//! - An entry's version is its ETag where the service gives one (it changes with the content),
//!   otherwise its size and modification time, and its path (a version names a state of one
//!   path; two files written in the same second are not each other's version). Without an
//!   ETag, two edits of one size within the service's time resolution (a second on SFTP, a
//!   minute on FTP) cannot be told apart.
//! - Conditional writes use the service's `If-Match`/`If-None-Match` where OpenDAL offers them;
//!   elsewhere the path is checked just before the write. A write lands whole: object stores
//!   replace an object in one step, file-like services (SFTP, FTP, WebDAV) get a temporary
//!   that is renamed into place.
//! - Object stores have no folders: a folder is a zero-byte `name/` marker object (so empty
//!   folders sync too), and any prefix that holds objects is a folder as well. Where a service
//!   will not hold `name/` objects (the GCS emulator), the marker is a hidden zero-byte object
//!   `name/.cairn-folder` instead.
//! - Versions built from a modification time compare at the service's resolution: Swift gives
//!   milliseconds in listings but whole seconds (rounded up) when stat'ed.
//! - Names starting with `.cairn` at the top are ours (temporaries, versions, the encryption
//!   marker) and never listed as the user's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_engine::ratelimit::RateLimit;
use cairn_engine::replica::{
    Capabilities, Content, Cursor, Listing, NewEntry, Outcome, Replica, ReplicaChange,
    ReplicaEntry, Traffic, Version,
};
use cairn_engine::{Error, Result};
use cairn_model::{EntryKind, RelPath};
use opendal::Operator;

use crate::transport::{Counters, Limits};

mod checked;
mod dav;
mod dav_list;
mod dav_put;
mod listing;
mod reading;
mod staging;
mod versions;

pub use staging::owner_tag;
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
    /// The provider whose rules (names, lengths, sizes) paths are checked against.
    pub provider: Option<crate::provider::Provider>,
    /// The task's path inside the bucket, where the rules count path lengths from.
    pub root: String,
    /// Tags this replica's temporaries on file-like services, so that its next pass removes
    /// the ones an interrupted upload left (none: untagged, never removed; see `staging`).
    pub staging_owner: Option<String>,
}

impl Default for CloudOptions {
    fn default() -> Self {
        CloudOptions {
            part_size: 8 << 20,
            part_concurrency: 2,
            keep_versions: 0,
            provider: None,
            root: String::new(),
            staging_owner: None,
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
    /// The service gives an entry's ETag in listings, stats and write answers alike (Swift's
    /// stat does not): versions are ETags, else size and time.
    use_etags: bool,
    /// Folders are `name/.cairn-folder` objects, not `name/` ones.
    hidden_markers: bool,
    /// The resolution at which a modification time makes a version, in ns (1: all of it).
    mtime_step_ns: i64,
    /// The service is not reached through our HTTP transport (SFTP, FTP, a mounted folder):
    /// the replica applies the connection's rate limits and counts bytes itself.
    own_transport: bool,
    limits: Arc<Limits>,
    /// The owner's leftover temporaries were looked for (once, at the first listing).
    staging_cleaned: AtomicBool,
    /// The staging folder was made or seen (WebDAV: its PUTs make no folders).
    staging_ready: AtomicBool,
    /// WebDAV: the requests of a commit are made here (`dav`), not through OpenDAL.
    dav: Option<dav::DavAccess>,
    /// WebDAV: whether the server keeps a file's ETag through a move (`dav::ETAG_*`).
    dav_etag_moves: AtomicU8,
    /// WebDAV: the server refused a listing of infinite depth (`dav_list`).
    dav_finite_depth: AtomicBool,
    /// OneDrive: the connection's refresh token, renewed and saved as the task runs.
    renewal: Option<crate::oauth::Renewal>,
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
        // File-like services write in place: a temporary renamed into place keeps a reader
        // from seeing half a file, where the service can rename (FTP here cannot).
        let atomic_put = !matches!(scheme.as_str(), "sftp" | "ftp" | "webdav" | "fs")
            || !op.info().capability().rename;
        // Swift's listings give the MD5 its stat and write answers give as the ETag.
        let use_etags = matches!(
            scheme.as_str(),
            "s3" | "azblob" | "gcs" | "oss" | "cos" | "webdav" | "swift"
        );
        CloudReplica {
            own_transport: matches!(scheme.as_str(), "sftp" | "ftp" | "fs"),
            limits: Arc::new(Limits::default()),
            staging_cleaned: AtomicBool::new(false),
            staging_ready: AtomicBool::new(false),
            dav: None,
            dav_etag_moves: AtomicU8::new(dav::ETAG_UNKNOWN),
            dav_finite_depth: AtomicBool::new(false),
            renewal: None,
            hidden_markers: scheme == "gcs",
            mtime_step_ns: if scheme == "swift" { 1_000_000_000 } else { 1 },
            op,
            describe,
            opts,
            counters,
            atomic_put,
            use_etags,
        }
    }

    /// The connection's upload and download limits in bytes per second, for a service our
    /// HTTP transport does not carry (its transport applies them for the others).
    pub fn with_limits(mut self, up: Option<u64>, down: Option<u64>) -> Self {
        if self.own_transport {
            self.limits = Arc::new(Limits {
                up: RateLimit::new(up),
                down: RateLimit::new(down),
            });
        }
        self
    }

    /// On WebDAV, commits written files with requests of its own over the connection's
    /// transport (two requests for a new file instead of ten; see `replica/dav.rs`). Other
    /// services are left as they are.
    ///
    /// # Errors
    /// Credentials that cannot be put in a header.
    pub fn with_webdav_access(
        mut self,
        conn: &crate::CloudConnection,
        secrets: &crate::Secrets,
    ) -> std::result::Result<Self, String> {
        self.dav = dav::DavAccess::of(conn, secrets)?;
        Ok(self)
    }

    /// Tags this replica's temporaries with `owner` (hex digits), and lets its first listing
    /// remove the ones an earlier interrupted pass of the same owner left.
    pub fn with_staging_owner(mut self, owner: String) -> Self {
        self.opts.staging_owner = Some(owner);
        self
    }

    /// Renews the connection's refresh token at the first listing (and daily after), saving
    /// it through `renewal` (OneDrive: see [`crate::oauth`]).
    pub fn with_renewal(mut self, renewal: Option<crate::oauth::Renewal>) -> Self {
        self.renewal = renewal;
        self
    }

    /// `bytes` are about to go up over a service our transport does not carry: they wait for
    /// the upload limit, and count as sent.
    async fn own_transport_sent(&self, bytes: u64) {
        if self.own_transport {
            self.limits.take_up(bytes, &self.counters).await;
            self.counters.sent.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// At the first listing only, the owner's temporaries left by an interrupted pass (among
    /// `staged`, the staging folder's files, where the listing saw them).
    async fn clean_staging(&self, staged: Option<Vec<String>>) {
        let Some(owner) = self.opts.staging_owner.as_deref() else {
            return;
        };
        if self.atomic_put || self.staging_cleaned.swap(true, Ordering::Relaxed) {
            return;
        }
        match staged {
            Some(keys) => staging::remove_own(self, owner, keys).await,
            None => staging::clean(self, owner).await,
        };
    }

    pub fn operator(&self) -> &Operator {
        &self.op
    }

    /// The versions of `path` kept on the remote, oldest first: object key and when it was
    /// replaced (ns since the epoch).
    pub async fn kept_versions(&self, path: &RelPath) -> Result<Vec<(String, i64)>> {
        versions::list_versions(self, path).await
    }

    /// Every kept version under `under`, by path (also of paths deleted since), oldest first.
    pub async fn all_kept_versions(
        &self,
        under: &RelPath,
    ) -> Result<BTreeMap<RelPath, Vec<(String, i64)>>> {
        versions::all_kept(self, under).await
    }

    /// The content of a kept version's object (a key from [`CloudReplica::kept_versions`]).
    pub async fn read_kept(&self, key: &str) -> Result<Content<'static>> {
        if !key.starts_with(RESERVED_PREFIX) {
            return Err(Error::Refused(format!("{key} is not a kept version")));
        }
        self.stream(key, None)
            .await
            .map_err(|e| self.fail("reading a kept version", key, e))
    }

    /// The size of a kept version's object.
    pub async fn kept_size(&self, key: &str) -> Result<u64> {
        self.op
            .stat(key)
            .await
            .map(|m| m.content_length())
            .map_err(|e| self.fail("stat", key, e))
    }

    fn caps(&self) -> opendal::Capability {
        self.op.info().capability()
    }

    /// An error about `path`, temporary when the service says so; a full destination is not
    /// (trying again at once only fills the log: the next pass tries again).
    fn fail(&self, what: &str, path: &str, e: opendal::Error) -> Error {
        if crate::full::is_full(&e) {
            let cause = crate::full::full_cause(&e).unwrap_or_else(|| e.to_string());
            return Error::Remote {
                message: format!(
                    "{}/{path}: {what}: the destination is full, over its quota, or refuses a \
                     file this large ({cause}); nothing was placed, the next pass tries again",
                    self.describe
                ),
                temporary: false,
            };
        }
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
        if let Some(found) = self.one_look(path).await? {
            return Ok(Some(found));
        }
        let dir = format!("{}/", path.as_str());
        // With hidden markers the listing below finds the marker; `name/` is never asked for.
        if !self.hidden_markers {
            match self.op.stat(&dir).await {
                Ok(_) => return Ok(Some(listing::dir_entry())),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
                Err(e) => return Err(self.fail("stat", &dir, e)),
            }
        }
        // On object stores, a prefix with objects under it and no marker is a folder too
        // (file-like services have real folders, and an FTP listing cut short would leave
        // its data connection open).
        if !self.atomic_put {
            return Ok(None);
        }
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

    /// What one stat of `path` finds (a folder only where the service says so for the name
    /// as it is, as WebDAV does).
    async fn one_look(&self, path: &RelPath) -> Result<Option<ReplicaEntry>> {
        let key = path.as_str();
        match self.op.stat(key).await {
            Ok(meta) if !meta.is_dir() => Ok(Some(self.entry_of(&meta, key))),
            Ok(_) => Ok(Some(listing::dir_entry())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail("stat", key, e)),
        }
    }

    /// A file's entry from the service's metadata, its version at the service's resolution.
    fn entry_of(&self, meta: &opendal::Metadata, key: &str) -> ReplicaEntry {
        listing::entry_of(meta, self.use_etags, self.mtime_step_ns, key)
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
        if let Some(renewal) = &self.renewal {
            renewal.renew_if_due(&self.op).await;
            crate::oauth::stop_after_exchange()?;
        }
        let (listing, staged) = listing::list(self).await?;
        self.clean_staging(staged).await;
        Ok(listing)
    }

    async fn changes(&self, _since: &Cursor) -> Result<Option<(Vec<ReplicaChange>, Cursor)>> {
        Ok(None)
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<ReplicaEntry>> {
        // The encryption marker is a file or nothing, and every pass looks for it: one look
        // (asking for a folder of that name too was a second PROPFIND per pass on WebDAV).
        if path.as_str() == crate::crypt::MARKER_NAME {
            return self.one_look(path).await;
        }
        self.current(path).await
    }

    async fn read(&self, path: &RelPath, version: &Version) -> Result<Content<'static>> {
        let caps = self.caps();
        // A conditional read also stats conditionally on some services (WebDAV): both or none.
        let guarded = listing::etag_of(version)
            .filter(|_| self.use_etags && caps.read_with_if_match && caps.stat_with_if_match);
        let head = match &guarded {
            Some(_) => true,
            None => self.check(path, Some(version)).await?.is_none(),
        };
        if head {
            match self.head_stream(path, version, guarded.as_deref()).await {
                Err(e) if reading::is_changed(&e) => {}
                other => return other.map_err(|e| self.read_error(path, e)),
            }
        }
        // No longer the head: a kept version, if there is one.
        match versions::find(self, path, version).await? {
            Some(kept) => self
                .stream(&kept, None)
                .await
                .map_err(|e| self.read_error(path, e)),
            None => Err(reading::changed(&self.describe, path.as_str())),
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

    fn refuses(&self, path: &RelPath, kind: EntryKind, size: u64) -> Option<String> {
        let provider = self.opts.provider?;
        let size = (kind == EntryKind::File).then_some(size);
        provider
            .check_task_path(&self.opts.root, path, size)
            .err()
            .map(|r| r.to_string())
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
        Traffic {
            bytes: self.counters.sent.load(Ordering::Relaxed),
            chunks: 0,
            limit_waits: self.counters.limit_waits.load(Ordering::Relaxed),
        }
    }
}

/// Makes the folder `path`: a zero-byte `path/` marker on object stores (or a hidden
/// `path/.cairn-folder` object where `path/` is refused), a folder on file-like services.
async fn make_dir(r: &CloudReplica, path: &RelPath) -> Result<()> {
    make_dir_key(r, &marker_key(r, path.as_str())).await
}

/// Makes the folder whose marker is `key` (as [`marker_key`] gives it).
async fn make_dir_key(r: &CloudReplica, key: &str) -> Result<()> {
    let made = if key.ends_with('/') {
        r.op.create_dir(key).await
    } else {
        r.op.write_with(key, opendal::Buffer::new())
            .content_type("application/octet-stream")
            .await
            .map(|_| ())
    };
    made.map_err(|e| r.fail("making the folder", key, e))
}

/// The name of a hidden folder marker inside its folder.
pub(crate) const HIDDEN_MARKER: &str = ".cairn-folder";

/// The key of the marker of folder `path` (a key without its trailing `/`).
fn marker_key(r: &CloudReplica, path: &str) -> String {
    if r.hidden_markers {
        format!("{path}/{HIDDEN_MARKER}")
    } else {
        format!("{path}/")
    }
}

/// Whether `key` is a folder marker of this replica's kind.
fn is_marker(r: &CloudReplica, key: &str) -> bool {
    if r.hidden_markers {
        key.rsplit('/').next() == Some(HIDDEN_MARKER)
    } else {
        key.ends_with('/')
    }
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
