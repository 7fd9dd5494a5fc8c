//! Client-side encryption of a cloud task: [`EncryptedReplica`] wraps any [`Replica`] and
//! stores names and contents encrypted in it, so the provider sees neither.
//!
//! Who calls whom: the task opens its inner replica (the cloud path), then
//! [`EncryptedReplica::enable`] (first run, `--encrypt`) or [`EncryptedReplica::open`] (later
//! runs) with the password; the engine sees only the decorator. A task without encryption
//! calls [`refuse_if_encrypted`] so that an encrypted remote is never written in the clear.
//! [`decrypt_tree`] restores files from a plain copy of the remote's objects, offline.
//!
//! Invariants: a wrong password is refused before anything but the marker is read; a stored
//! name or content that does not authenticate is never handed on as data (names are
//! reported, contents fail their read); a name that does not decrypt never makes the
//! listing look as if a file were gone: the folder holding it is listed as incomplete, so
//! nothing under it is deleted (DESIGN.md invariant 3). The format is docs/encryption.md.
//!
//! The key choice: each name is encrypted deterministically and on its own, so listings,
//! stats and renames map 1:1 and a folder rename is one rename; the alternative (names bound to
//! their folder, or random per upload) hides more of the tree's shape but makes every rename
//! of a folder rewrite everything under it.

mod kept;
mod key;
mod name;
mod offline;
mod path;
mod resume;
mod segment;
mod stream;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_engine::replica::{
    content_of, BatchResult, Capabilities, Content, Cursor, Listing, MoveOp, NewEntry, Outcome,
    Replica, ReplicaChange, ReplicaEntry, Traffic, Version, WriteOp,
};
use cairn_engine::{Error, Result};
use cairn_model::path::{MAX_NAME_BYTES, MAX_PATH_BYTES};
use cairn_model::{ContentHash, EntryKind, RelPath};
use futures_util::StreamExt;

pub use key::{
    export_key, key_text, parse_key_text, read_key_file, KdfParams, Marker, MasterKey, MARKER_NAME,
};
pub use name::{encrypted_name_len, max_plain_name_len};
pub use offline::{decrypt_tree, DecryptReport};
pub use resume::SealLog;
pub use segment::{cipher_size, plain_size, SEGMENT};

use key::{Keys, MARKER_MAX_BYTES};
use path::{BadNames, NameCache};

/// Names at the remote root that belong to cairn itself (the marker, hidden folders), never
/// to the user's tree: no encrypted name starts with a dot.
const RESERVED_PREFIX: &str = ".cairn";

/// A replica whose names and contents are stored encrypted in `R`.
pub struct EncryptedReplica<R> {
    inner: R,
    key: MasterKey,
    keys: Arc<Keys>,
    /// Records large uploads so an interrupted one is taken up again under its file id
    /// (none: every upload starts over under a new one).
    seal_log: Option<Arc<SealLog>>,
}

fn marker_path() -> RelPath {
    RelPath::parse(MARKER_NAME).expect("the marker's name is a valid path")
}

/// Whether a stored path belongs to cairn rather than to the user's tree.
fn is_reserved(stored: &RelPath) -> bool {
    stored
        .components()
        .next()
        .is_some_and(|first| first.starts_with(RESERVED_PREFIX))
}

/// The marker of the remote `inner`, if it has one.
///
/// # Errors
/// When the remote cannot be read, or what is there is not a marker.
pub async fn read_marker<R: Replica + ?Sized>(inner: &R) -> Result<Option<Marker>> {
    let path = marker_path();
    let source = format!("{}/{MARKER_NAME}", inner.describe());
    let Some(entry) = inner.stat(&path).await? else {
        return Ok(None);
    };
    if entry.kind != EntryKind::File || entry.size > MARKER_MAX_BYTES {
        return Err(Error::Refused(format!(
            "{source}: not an encryption marker (a {:?} of {} bytes)",
            entry.kind, entry.size
        )));
    }
    let mut content = inner.read(&path, &entry.version).await?;
    let mut bytes = Vec::new();
    while let Some(piece) = content.next().await {
        bytes.extend_from_slice(&piece?);
        if bytes.len() as u64 > MARKER_MAX_BYTES {
            return Err(Error::Refused(format!(
                "{source}: not an encryption marker (larger than {MARKER_MAX_BYTES} bytes)"
            )));
        }
    }
    Marker::parse(&bytes, &source).map(Some)
}

/// For a task without encryption: fails when `inner` is an encrypted remote.
///
/// # Errors
/// When the remote has a marker (or cannot be read).
pub async fn refuse_if_encrypted<R: Replica + ?Sized>(inner: &R) -> Result<()> {
    if read_marker(inner).await?.is_none() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "{} is encrypted ({MARKER_NAME} at its root): encryption cannot be turned off for a \
         remote once it is on; use the task with encryption and the remote's password",
        inner.describe()
    )))
}

/// Unlocks `marker` with `password` off the async threads (Argon2id is deliberately slow).
async fn unlock(marker: Marker, password: &str, source: String) -> Result<MasterKey> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || marker.unlock(&password, &source))
        .await
        .map_err(|e| Error::Refused(format!("unlocking the encryption key failed: {e}")))?
}

impl<R: Replica> EncryptedReplica<R> {
    /// The encrypted remote `inner`, unlocked with `password`.
    ///
    /// # Errors
    /// When `inner` is not encrypted (no marker), or the password is wrong: refused before
    /// anything else is read or written.
    pub async fn open(inner: R, password: &str) -> Result<Self> {
        let Some(marker) = read_marker(&inner).await? else {
            return Err(Error::Refused(format!(
                "{} is not encrypted (no {MARKER_NAME} at its root); turn encryption on first",
                inner.describe()
            )));
        };
        let key = unlock(marker, password, marker_source(&inner)).await?;
        Ok(Self::with_key(inner, key))
    }

    /// The encrypted remote `inner` with an exported key instead of the password (a run
    /// where nobody types a password).
    ///
    /// # Errors
    /// When `inner` is not encrypted, or encrypted under another key.
    pub async fn open_with_key(inner: R, key: MasterKey) -> Result<Self> {
        match read_marker(&inner).await? {
            Some(marker) if marker.matches(&key) => Ok(Self::with_key(inner, key)),
            Some(_) => Err(Error::Refused(format!(
                "{}: the key given is not this remote's key; nothing was read or written",
                marker_source(&inner)
            ))),
            None => Err(Error::Refused(format!(
                "{} is not encrypted (no {MARKER_NAME} at its root)",
                inner.describe()
            ))),
        }
    }

    /// Turns encryption on for `inner` with `password` (Argon2id costs `params`), or opens it
    /// when it is on already: then the password must be the one it was turned on with, since
    /// it cannot be changed. Only an empty remote can be turned encrypted: files already
    /// there in the clear would stay readable to the provider.
    ///
    /// # Errors
    /// A wrong password for an encrypted remote, a remote holding files in the clear, or
    /// the marker cannot be written.
    pub async fn enable(inner: R, password: &str, params: KdfParams) -> Result<Self> {
        if let Some(marker) = read_marker(&inner).await? {
            let key = unlock(marker, password, marker_source(&inner)).await?;
            return Ok(Self::with_key(inner, key));
        }
        let listing = inner.list().await?;
        let clear = listing.entries.keys().filter(|p| !is_reserved(p)).count();
        if clear > 0 {
            return Err(Error::Refused(format!(
                "{} already holds {clear} entries in the clear; encryption can only be turned \
                 on for an empty remote folder (choose a new one)",
                inner.describe()
            )));
        }
        let pw = password.to_owned();
        let (marker, key) = tokio::task::spawn_blocking(move || Marker::create(&pw, params))
            .await
            .map_err(|e| Error::Refused(format!("making the encryption key failed: {e}")))??;
        let json = marker.to_json();
        let entry = NewEntry {
            kind: EntryKind::File,
            size: json.len() as u64,
            mtime_ns: now_ns(),
            mode: 0o600,
            hash: Some(ContentHash::of(&json)),
            target: None,
        };
        let path = marker_path();
        match inner
            .write(&path, &entry, content_of(Bytes::from(json)), None)
            .await?
        {
            Outcome::Done(_) => Ok(Self::with_key(inner, key)),
            // Another computer turned it on meanwhile: its marker decides.
            Outcome::Changed(_) => Self::open(inner, password).await,
        }
    }

    fn with_key(inner: R, key: MasterKey) -> Self {
        let keys = Arc::new(Keys::derive(&key));
        EncryptedReplica {
            inner,
            key,
            keys,
            seal_log: None,
        }
    }

    /// Records this task's large uploads in `file` (a local file of the task), so that one cut
    /// off is taken up again with the same bytes, and the inner replica's multipart resume
    /// skips what the service holds (`resume` says why this never reuses a nonce).
    pub fn with_seal_log(mut self, file: &Path) -> Self {
        self.seal_log = Some(Arc::new(SealLog::new(file)));
        self
    }

    /// The record to seal a file upload under, when it is large enough to be resumed; none
    /// when the log cannot be written (the upload then starts over under a new file id, as
    /// every upload did before).
    async fn resumed(&self, plain: &RelPath, entry: &NewEntry) -> Option<stream::Resumed> {
        let log = self.seal_log.clone()?;
        if entry.kind != EntryKind::File || entry.size < resume::RESUMED_FROM {
            return None;
        }
        let (keys, path) = (self.keys.clone(), plain.as_str().to_string());
        let (size, hash, mtime_ns) = (
            entry.size,
            entry.hash.map(|h| *h.as_bytes()),
            entry.mtime_ns,
        );
        let begin = log.clone();
        let id = tokio::task::spawn_blocking(move || {
            let src = resume::Source {
                path: &path,
                size,
                hash,
                mtime_ns,
            };
            begin.begin(&keys, &src)
        })
        .await
        .ok()?
        .ok()?;
        Some(stream::Resumed {
            log,
            path: plain.as_str().to_string(),
            id,
        })
    }

    /// Writes the master key to a new file (mode 0600); see [`export_key`].
    ///
    /// # Errors
    /// When the file exists or cannot be written.
    pub fn export_key(&self, path: &Path) -> Result<()> {
        export_key(&self.key, path)
    }

    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// The master key, for a caller that keeps it elsewhere than in a key file (a server's
    /// database, [`key_text`]).
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// A plain path for messages.
    fn side(&self, plain: &RelPath) -> String {
        format!("{}/{plain}", self.inner.describe())
    }

    /// Where `plain` is stored in the inner replica.
    fn stored_path(&self, plain: &RelPath) -> Result<RelPath> {
        let caps = self.inner.capabilities();
        let max_name = caps.max_name_bytes.min(MAX_NAME_BYTES);
        let mut out = String::with_capacity(plain.as_str().len() * 2);
        for name in plain.components() {
            let stored = name::encrypt_name(&self.keys, name);
            if stored.len() > max_name {
                return Err(Error::Refused(format!(
                    "{}: the name {name:?} is {} bytes; encrypted it takes {} characters, more \
                     than the {max_name} this remote allows (encrypted names hold at most {} \
                     bytes)",
                    self.side(plain),
                    name.len(),
                    stored.len(),
                    max_plain_name_len(max_name)
                )));
            }
            if !out.is_empty() {
                out.push('/');
            }
            out.push_str(&stored);
        }
        let max_path = caps.max_path_bytes.min(MAX_PATH_BYTES);
        if out.len() > max_path {
            return Err(Error::Refused(format!(
                "{}: encrypted, the path takes {} characters, more than the {max_path} this \
                 remote allows",
                self.side(plain),
                out.len()
            )));
        }
        Ok(RelPath::parse(&out)?)
    }

    /// A stored entry as the caller sees it (`Err`: why it cannot be).
    fn plain_entry(&self, mut entry: ReplicaEntry) -> std::result::Result<ReplicaEntry, String> {
        entry.hash = None;
        match entry.kind {
            EntryKind::File => {
                entry.size = plain_size(entry.size).ok_or_else(|| {
                    format!(
                        "its stored size ({} bytes) is no encrypted file's size: cut short, or \
                         not written by cairn; left alone",
                        entry.size
                    )
                })?;
            }
            EntryKind::Symlink => {
                let stored = entry.target.take().unwrap_or_default();
                let target = name::decrypt_target(&self.keys, &stored)
                    .map_err(|e| format!("its link target is {e}"))?;
                entry.hash = Some(ContentHash::of(target.as_bytes()));
                entry.target = Some(target);
            }
            EntryKind::Dir | EntryKind::Deleted => {}
        }
        Ok(entry)
    }

    fn plain_entry_at(&self, plain: &RelPath, entry: ReplicaEntry) -> Result<ReplicaEntry> {
        self.plain_entry(entry)
            .map_err(|why| Error::Refused(format!("{}: {why}", self.side(plain))))
    }

    /// A new entry as it is stored.
    fn stored_entry(&self, entry: &NewEntry) -> NewEntry {
        let mut stored = entry.clone();
        stored.hash = None;
        match entry.kind {
            EntryKind::File => stored.size = cipher_size(entry.size),
            EntryKind::Symlink => {
                stored.target = entry
                    .target
                    .as_deref()
                    .map(|t| name::encrypt_target(&self.keys, t));
            }
            EntryKind::Dir | EntryKind::Deleted => {}
        }
        stored
    }

    fn plain_outcome(&self, plain: &RelPath, outcome: Outcome) -> Result<Outcome> {
        let map = |e: Option<ReplicaEntry>| e.map(|e| self.plain_entry_at(plain, e)).transpose();
        Ok(match outcome {
            Outcome::Done(e) => Outcome::Done(map(e)?),
            Outcome::Changed(e) => Outcome::Changed(map(e)?),
        })
    }

    /// The stored content of a whole small file, encrypted, after checking it against what
    /// the caller announced.
    fn seal_whole(&self, plain: &RelPath, entry: &NewEntry, content: &[u8]) -> Result<Bytes> {
        if content.len() as u64 != entry.size
            || entry.hash.is_some_and(|h| h != ContentHash::of(content))
        {
            return Err(Error::Refused(format!(
                "{}: the content is not the {} bytes announced, or does not match its hash",
                self.side(plain),
                entry.size
            )));
        }
        Ok(Bytes::from(segment::seal_all(&self.keys, content)?))
    }

    fn map_listing(&self, inner: Listing) -> Listing {
        let mut names = NameCache::new(&self.keys);
        let mut out = Listing {
            cursor: inner.cursor,
            skipped: inner.skipped,
            ..Listing::default()
        };
        let mut bad = BadNames::default();
        for (stored, entry) in inner.entries {
            if is_reserved(&stored) {
                continue;
            }
            match names.plain_path(&stored) {
                Ok(plain) => match self.plain_entry(entry) {
                    Ok(e) => {
                        out.entries.insert(plain, e);
                    }
                    Err(why) => {
                        out.skipped.push((self.side(&plain), why));
                        out.held.push(plain);
                    }
                },
                Err(fail) => bad.note(fail),
            }
        }
        for (stored, rule) in inner.excluded {
            if is_reserved(&stored) {
                continue;
            }
            match names.plain_path(&stored) {
                Ok(plain) => out.excluded.push((plain, rule)),
                Err(fail) => bad.note(fail),
            }
        }
        for stored in inner.held {
            if is_reserved(&stored) {
                continue;
            }
            match names.plain_path(&stored) {
                Ok(plain) => out.held.push(plain),
                // Whatever it holds has no plain name: its plain parent is left alone whole.
                Err(fail) => {
                    bad.incomplete.insert(fail.plain_parent);
                }
            }
        }
        for stored in inner.incomplete {
            if is_reserved(&stored) {
                continue;
            }
            let plain = names
                .plain_path(&stored)
                .unwrap_or_else(|fail| fail.plain_parent);
            bad.incomplete.insert(plain);
        }
        let describe = self.inner.describe();
        out.skipped.extend(
            bad.reports
                .into_iter()
                .map(|(stored, why)| (format!("{describe}/{stored} (stored name)"), why)),
        );
        out.incomplete.extend(bad.incomplete);
        out
    }

    fn plain_change(
        &self,
        names: &mut NameCache<'_>,
        change: ReplicaChange,
    ) -> Option<ReplicaChange> {
        match change {
            ReplicaChange::Upsert(stored, entry) => {
                let plain = names.plain_path(&stored).ok()?;
                Some(ReplicaChange::Upsert(plain, self.plain_entry(entry).ok()?))
            }
            ReplicaChange::Remove(stored) => {
                Some(ReplicaChange::Remove(names.plain_path(&stored).ok()?))
            }
        }
    }
}

fn marker_source<R: Replica + ?Sized>(inner: &R) -> String {
    format!("{}/{MARKER_NAME}", inner.describe())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Results of a batch where some items never reached the inner replica: `slots` holds the
/// early failures in place (`None` for items sent), `answers` the inner replica's results
/// for those sent, in order.
fn merge<T>(slots: Vec<Option<Result<T>>>, answers: Vec<Result<T>>) -> Vec<Result<T>> {
    let mut answers = answers.into_iter();
    slots
        .into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| {
                answers.next().unwrap_or_else(|| {
                    Err(Error::Refused(
                        "the replica answered fewer items than it was sent".into(),
                    ))
                })
            })
        })
        .collect()
}

#[async_trait]
impl<R: Replica> Replica for EncryptedReplica<R> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    /// The inner replica's, but hashes are unknown (the store's are of ciphertext), names are
    /// shorter (the encryption's growth), and case counts: two names differing only in case
    /// are stored under unrelated lowercase names.
    fn capabilities(&self) -> Capabilities {
        let inner = self.inner.capabilities();
        Capabilities {
            knows_hashes: false,
            case_sensitive: true,
            max_name_bytes: max_plain_name_len(inner.max_name_bytes.min(MAX_NAME_BYTES)),
            ..inner
        }
    }

    async fn list(&self) -> Result<Listing> {
        let inner = self.inner.list().await?;
        Ok(self.map_listing(inner))
    }

    /// A change whose name does not decrypt makes the answer `None`: the caller lists again,
    /// and the listing reports it.
    async fn changes(&self, since: &Cursor) -> Result<Option<(Vec<ReplicaChange>, Cursor)>> {
        let Some((changes, cursor)) = self.inner.changes(since).await? else {
            return Ok(None);
        };
        let mut names = NameCache::new(&self.keys);
        let mut out = Vec::with_capacity(changes.len());
        for change in changes {
            let stored = match &change {
                ReplicaChange::Upsert(p, _) | ReplicaChange::Remove(p) => p,
            };
            if is_reserved(stored) {
                continue;
            }
            match self.plain_change(&mut names, change) {
                Some(c) => out.push(c),
                None => return Ok(None),
            }
        }
        Ok(Some((out, cursor)))
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<ReplicaEntry>> {
        let stored = self.stored_path(path)?;
        self.inner
            .stat(&stored)
            .await?
            .map(|e| self.plain_entry_at(path, e))
            .transpose()
    }

    async fn read(&self, path: &RelPath, version: &Version) -> Result<Content<'static>> {
        let stored = self.stored_path(path)?;
        let content = self.inner.read(&stored, version).await?;
        Ok(stream::open_stream(
            self.keys.clone(),
            content,
            self.side(path),
        ))
    }

    async fn write(
        &self,
        path: &RelPath,
        entry: &NewEntry,
        content: Content<'_>,
        expect: Option<&Version>,
    ) -> Result<Outcome> {
        let stored = self.stored_path(path)?;
        let mut finish = None;
        let content = match entry.kind {
            EntryKind::File => {
                let resumed = self.resumed(path, entry).await;
                finish = resumed.as_ref().map(|r| (r.log.clone(), r.id));
                let side = self.side(path);
                stream::seal_stream(
                    self.keys.clone(),
                    content,
                    entry.size,
                    entry.hash,
                    side,
                    resumed,
                )?
            }
            _ => content,
        };
        let outcome = self
            .inner
            .write(&stored, &self.stored_entry(entry), content, expect)
            .await?;
        // Written, or not written because the path changed: either way this upload is over.
        // (After an error the record stays, for the next try to take the upload up.)
        if let Some((log, id)) = finish {
            let path = path.as_str().to_string();
            let _ = tokio::task::spawn_blocking(move || log.finish(&path, &id)).await;
        }
        self.plain_outcome(path, outcome)
    }

    async fn delete(&self, path: &RelPath, expect: &Version) -> Result<Outcome> {
        let stored = self.stored_path(path)?;
        let outcome = self.inner.delete(&stored, expect).await?;
        self.plain_outcome(path, outcome)
    }

    async fn rename(&self, from: &RelPath, to: &RelPath, expect: &Version) -> Result<Outcome> {
        let (stored_from, stored_to) = (self.stored_path(from)?, self.stored_path(to)?);
        let outcome = self.inner.rename(&stored_from, &stored_to, expect).await?;
        self.plain_outcome(to, outcome)
    }

    async fn write_many(&self, ops: Vec<WriteOp>) -> BatchResult<Outcome> {
        let mut slots = Vec::with_capacity(ops.len());
        let mut sent = Vec::with_capacity(ops.len());
        let mut paths = Vec::with_capacity(ops.len());
        for op in ops {
            let stored = self.stored_path(&op.path).and_then(|stored| {
                let content = match op.entry.kind {
                    EntryKind::File => self.seal_whole(&op.path, &op.entry, &op.content)?,
                    _ => op.content.clone(),
                };
                Ok(WriteOp {
                    path: stored,
                    entry: self.stored_entry(&op.entry),
                    content,
                    expect: op.expect.clone(),
                })
            });
            match stored {
                Ok(s) => {
                    slots.push(None);
                    sent.push(s);
                }
                Err(e) => slots.push(Some(Err(e))),
            }
            paths.push(op.path);
        }
        let answers = self.inner.write_many(sent).await?;
        Ok(merge(slots, answers)
            .into_iter()
            .zip(&paths)
            .map(|(r, path)| r.and_then(|o| self.plain_outcome(path, o)))
            .collect())
    }

    async fn read_many(&self, items: &[(RelPath, ReplicaEntry)]) -> BatchResult<Bytes> {
        let mut slots = Vec::with_capacity(items.len());
        let mut sent = Vec::with_capacity(items.len());
        for (path, entry) in items {
            match self.stored_path(path) {
                Ok(stored) => {
                    let mut listed = entry.clone();
                    listed.hash = None;
                    listed.target = None;
                    if listed.kind == EntryKind::File {
                        listed.size = cipher_size(entry.size);
                    }
                    slots.push(None);
                    sent.push((stored, listed));
                }
                Err(e) => slots.push(Some(Err(e))),
            }
        }
        let answers = self.inner.read_many(&sent).await?;
        Ok(merge(slots, answers)
            .into_iter()
            .zip(items)
            .map(|(r, (path, entry))| {
                let plain = segment::open_all(&self.keys, &r?)
                    .map_err(|e| Error::Refused(format!("{}: {e}; not used", self.side(path))))?;
                if entry.hash.is_some_and(|h| h != ContentHash::of(&plain)) {
                    return Err(Error::Refused(format!(
                        "{}: the content read does not match its listed hash",
                        self.side(path)
                    )));
                }
                Ok(Bytes::from(plain))
            })
            .collect())
    }

    async fn delete_many(&self, items: &[(RelPath, Version)]) -> BatchResult<Outcome> {
        let mut slots = Vec::with_capacity(items.len());
        let mut sent = Vec::with_capacity(items.len());
        for (path, version) in items {
            match self.stored_path(path) {
                Ok(stored) => {
                    slots.push(None);
                    sent.push((stored, version.clone()));
                }
                Err(e) => slots.push(Some(Err(e))),
            }
        }
        let answers = self.inner.delete_many(&sent).await?;
        Ok(merge(slots, answers)
            .into_iter()
            .zip(items)
            .map(|(r, (path, _))| r.and_then(|o| self.plain_outcome(path, o)))
            .collect())
    }

    async fn rename_many(&self, moves: &[MoveOp]) -> BatchResult<Outcome> {
        let mut slots = Vec::with_capacity(moves.len());
        let mut sent = Vec::with_capacity(moves.len());
        for m in moves {
            let stored = self.stored_path(&m.from).and_then(|from| {
                Ok(MoveOp {
                    from,
                    to: self.stored_path(&m.to)?,
                    expect: m.expect.clone(),
                    entry: self.stored_entry(&m.entry),
                })
            });
            match stored {
                Ok(s) => {
                    slots.push(None);
                    sent.push(s);
                }
                Err(e) => slots.push(Some(Err(e))),
            }
        }
        let answers = self.inner.rename_many(&sent).await?;
        Ok(merge(slots, answers)
            .into_iter()
            .zip(moves)
            .map(|(r, m)| r.and_then(|o| self.plain_outcome(&m.to, o)))
            .collect())
    }

    async fn promote(
        &self,
        path: &RelPath,
        version: &Version,
        expect: &Version,
    ) -> Result<Outcome> {
        let stored = self.stored_path(path)?;
        let outcome = self.inner.promote(&stored, version, expect).await?;
        self.plain_outcome(path, outcome)
    }

    fn traffic(&self) -> Traffic {
        self.inner.traffic()
    }

    async fn identity(&self) -> Result<Option<String>> {
        self.inner.identity().await
    }

    fn went_back(&self, version: &Version, cursor: &Cursor) -> bool {
        self.inner.went_back(version, cursor)
    }

    async fn writable(&self) -> Result<bool> {
        self.inner.writable().await
    }

    /// Damaged paths whose names decrypt (the others are reported by listings).
    async fn damaged(&self) -> Result<Vec<RelPath>> {
        let mut names = NameCache::new(&self.keys);
        Ok(self
            .inner
            .damaged()
            .await?
            .iter()
            .filter_map(|stored| names.plain_path(stored).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests;
