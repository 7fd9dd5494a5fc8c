//! `LocalReplica`: a local folder as a [`Replica`]: listings from the scanner, no journal (the
//! watcher gives hints instead), and every read, write, delete and move through [`LocalRoot`],
//! which never follows a link below the root.
//!
//! A write lands in a temporary in the task's working folder and is renamed into place only if
//! the path is still the version the caller saw (DESIGN.md invariant 5). Batches are what keep
//! drive sync and backups fast: small writes are staged in one blocking job, made durable with
//! ONE file-system sync for the batch (instead of an fsync per file), then placed in the order
//! given, each checked again just before its rename. Batch reads and hashes run in one blocking
//! job, and a file whose stat moved while it was read is refused, never handed on half old and
//! half new (invariant 6). No blocking call runs on the async threads except through
//! [`crate::off_runtime`].
//!
//! A version is a stat (size, times, inode, mode); a folder's leaves out its times, which move
//! with every child added or removed (a batch deletes children before their parent). Removing
//! a folder that is not empty fails, which is what keeps a child the caller did not know about.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_model::{ContentHash, EntryKind, Filter, RelPath};
use futures_util::stream::{self, StreamExt};

use super::{
    BatchResult, Capabilities, Content, Cursor, Listing, MoveOp, NewEntry, Outcome, Replica,
    ReplicaChange, ReplicaEntry, Sift, Version, WriteOp,
};
use crate::local_root::{file_mode, LocalRoot, WorkDir};
use crate::scanner::{self, LocalEntry};
use crate::{off_runtime, Error, Result};

/// A local folder: scans for listings, no journal (a watcher gives hints instead), writes
/// through the task's working folder and renames into place without following links.
pub struct LocalReplica {
    root: Arc<LocalRoot>,
    filter: Filter,
    /// The working folder, made at the first write (a listing creates nothing).
    work: tokio::sync::OnceCell<Arc<WorkDir>>,
    /// File-system syncs made by batch writes (one per batch that holds a file).
    syncs: AtomicU64,
}

/// Bytes per piece when a local file is streamed out.
const READ_PIECE: usize = 1 << 20;
/// Pieces of a streamed write waiting for the writing thread: bounds memory whatever the pace
/// of the stream and of the disk.
const WRITE_QUEUE: usize = 4;
/// Read buffer for hashing: large enough for blake3's wide SIMD paths.
const HASH_BUFFER: usize = 256 * 1024;

fn local_version(e: &LocalEntry) -> Version {
    match e.kind {
        // A folder is the same folder while its children come and go (they change its times).
        EntryKind::Dir => Version(format!("dir:{}:{:o}", e.inode, e.mode)),
        _ => stat_version(e.size, e.mtime_ns, e.ctime_ns, e.inode, e.mode),
    }
}

/// A local entry's version: its stat (any change of content, time, inode or mode shows).
pub fn stat_version(size: u64, mtime_ns: i64, ctime_ns: i64, inode: u64, mode: u32) -> Version {
    Version(format!("{size}:{mtime_ns}:{ctime_ns}:{inode}:{mode:o}"))
}

impl LocalReplica {
    /// The walk of the folder, without what `sift` leaves out.
    async fn listing(&self, sift: Option<Arc<dyn Sift>>) -> Result<Listing> {
        let (path, filter) = (self.root.path().to_path_buf(), self.filter.clone());
        let mut scan = blocking("scanner", move || {
            let leave_out = |e: &LocalEntry| {
                sift.as_ref()
                    .is_some_and(|s| s.leaves_out(&e.path, &replica_entry(e)))
            };
            scanner::scan_sifted(&path, &filter, &leave_out)
        })
        .await?;
        self.root.set_aliases(std::mem::take(&mut scan.aliases));
        Ok(Listing {
            // Sorted by path already: the map is built in order, each path moved, not copied.
            entries: scan
                .entries
                .into_iter()
                .map(|e| {
                    let entry = replica_entry(&e);
                    (e.path, entry)
                })
                .collect(),
            cursor: None,
            skipped: scan.reports,
            excluded: scan.excluded,
            held: scan.held,
            incomplete: scan.incomplete,
        })
    }
}

fn replica_entry(e: &LocalEntry) -> ReplicaEntry {
    ReplicaEntry {
        kind: e.kind,
        size: e.size,
        mtime_ns: e.mtime_ns,
        mode: e.mode & 0o777,
        hash: e.target.as_ref().map(|t| ContentHash::of(t.as_bytes())),
        target: e.target.clone(),
        version: local_version(e),
    }
}

/// What is at `path` now (a link there or on the way is not followed).
fn entry_at(root: &LocalRoot, path: &RelPath) -> Result<Option<LocalEntry>> {
    let Some(md) = root.stat(path)? else {
        return Ok(None);
    };
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else {
        return Err(Error::Refused(format!(
            "{} is a special file; not synced",
            root.full(path).display()
        )));
    };
    let target = (kind == EntryKind::Symlink)
        .then(|| root.read_link(path))
        .flatten();
    Ok(Some(LocalEntry::from_metadata(
        path.clone(),
        kind,
        &md,
        target,
    )))
}

fn state_at(root: &LocalRoot, path: &RelPath) -> Result<Option<ReplicaEntry>> {
    Ok(entry_at(root, path)?.as_ref().map(replica_entry))
}

/// `Some(current)` when `path` is not `expect` any more (`None`: nothing was there).
fn moved_on(
    root: &LocalRoot,
    path: &RelPath,
    expect: Option<&Version>,
) -> Result<Option<Option<ReplicaEntry>>> {
    let now = entry_at(root, path)?;
    let same = match (&now, expect) {
        (None, None) => true,
        (Some(e), Some(v)) => &local_version(e) == v,
        _ => false,
    };
    Ok((!same).then(|| now.as_ref().map(replica_entry)))
}

/// The version of an open file, from its descriptor (what is read is what is stat'ed);
/// `None` when it is not a plain file.
fn open_version(file: &File) -> Option<Version> {
    let md = file.metadata().ok()?;
    // A version does not depend on the path: none is built for it.
    md.is_file().then(|| {
        local_version(&LocalEntry::from_metadata(
            RelPath::root(),
            EntryKind::File,
            &md,
            None,
        ))
    })
}

/// Opens the file at `path` if it is still `version`; the error says what moved on.
fn open_at_version(root: &LocalRoot, path: &RelPath, version: &Version) -> Result<File> {
    let file = root.open_file(path).map_err(|e| match e {
        Error::Io { ref cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
            Error::Refused(format!(
                "{} is gone since it was listed; it will be read again",
                root.full(path).display()
            ))
        }
        other => other,
    })?;
    if open_version(&file).as_ref() != Some(version) {
        return Err(Error::Refused(format!(
            "{} changed since it was listed; it will be read again",
            root.full(path).display()
        )));
    }
    Ok(file)
}

/// Fails when the open `file` is no longer `version` after it was read.
fn still_version(root: &LocalRoot, path: &RelPath, file: &File, version: &Version) -> Result<()> {
    if open_version(file).as_ref() == Some(version) {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "{} changed while it was read; it will be read again",
        root.full(path).display()
    )))
}

/// The whole content of a small file as it was listed (one item of a batch read).
fn read_listed(root: &LocalRoot, path: &RelPath, listed: &ReplicaEntry) -> Result<Bytes> {
    if listed.kind != EntryKind::File {
        return Err(Error::Refused(format!(
            "{}: only files have content to read",
            root.full(path).display()
        )));
    }
    let file = open_at_version(root, path, &listed.version)?;
    let mut data = Vec::with_capacity(usize::try_from(listed.size).unwrap_or(0).min(1 << 26));
    // A file growing meanwhile is not read on and on: one byte past its size shows it grew.
    (&file)
        .take(listed.size.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| Error::io("reading", root.full(path))(e))?;
    still_version(root, path, &file, &listed.version)?;
    if listed
        .hash
        .is_some_and(|want| want != ContentHash::of(&data))
    {
        return Err(Error::Refused(format!(
            "{}: the content read does not match its listed hash",
            root.full(path).display()
        )));
    }
    Ok(Bytes::from(data))
}

/// The content hash of the file at `path` if it is `version` before and after reading
/// (`buf`: a read buffer, reused from file to file).
fn hash_at(
    root: &LocalRoot,
    path: &RelPath,
    version: &Version,
    buf: &mut [u8],
) -> Option<ContentHash> {
    let file = open_at_version(root, path, version).ok()?;
    let mut hasher = blake3::Hasher::new();
    loop {
        match (&file).read(buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    still_version(root, path, &file, version).ok()?;
    Some(ContentHash::from_bytes(*hasher.finalize().as_bytes()))
}

/// Removes `path` if it is still `expect`; a folder only when it is empty now.
fn delete_at(root: &LocalRoot, path: &RelPath, expect: &Version) -> Result<Outcome> {
    let Some(now) = entry_at(root, path)? else {
        return Ok(Outcome::Done(None));
    };
    if &local_version(&now) != expect {
        return Ok(Outcome::Changed(Some(replica_entry(&now))));
    }
    let removed = match now.kind {
        EntryKind::Dir => root.remove_dir(path),
        _ => root.remove_file(path),
    };
    let Err(e) = removed else {
        return Ok(Outcome::Done(None));
    };
    match io_kind(&e) {
        // Gone meanwhile counts as done, like gone before.
        Some(std::io::ErrorKind::NotFound) => Ok(Outcome::Done(None)),
        Some(std::io::ErrorKind::DirectoryNotEmpty) => Err(Error::Refused(format!(
            "{}: the folder is not empty (something new is in it); kept",
            root.full(path).display()
        ))),
        _ => Err(e),
    }
}

/// The kind of an I/O error, `None` for other errors.
fn io_kind(e: &Error) -> Option<std::io::ErrorKind> {
    match e {
        Error::Io { cause, .. } => Some(cause.kind()),
        _ => None,
    }
}

/// Moves `from` (still `expect`) to `to`, where nothing may be.
fn rename_at(root: &LocalRoot, from: &RelPath, to: &RelPath, expect: &Version) -> Result<Outcome> {
    if let Some(now) = moved_on(root, from, Some(expect))? {
        return Ok(Outcome::Changed(now));
    }
    if let Some(there) = entry_at(root, to)? {
        return Ok(Outcome::Changed(Some(replica_entry(&there))));
    }
    if let Some(parent) = to.parent() {
        root.create_dir_all(&parent)?;
    }
    root.rename(from, to)?;
    Ok(Outcome::Done(state_at(root, to)?))
}

/// Makes the folder `path` with `entry`'s mode; a file or link there (the version the caller
/// expected) goes first.
fn make_dir(root: &LocalRoot, path: &RelPath, entry: &NewEntry) -> Result<Outcome> {
    if entry_at(root, path)?.is_some_and(|e| e.kind != EntryKind::Dir) {
        root.remove_file(path)?;
    }
    root.create_dir_all(path)?;
    root.set_dir_mode(path, entry.mode)?;
    Ok(Outcome::Done(state_at(root, path)?))
}

/// A temporary in the working folder, removed when dropped unless it was placed: a failed,
/// refused or cancelled write leaves nothing behind.
struct Temp {
    work: Arc<WorkDir>,
    name: String,
    placed: bool,
}

impl Temp {
    fn new(work: &Arc<WorkDir>, name: String) -> Temp {
        Temp {
            work: work.clone(),
            name,
            placed: false,
        }
    }

    fn path(&self) -> PathBuf {
        self.work.path().join(&self.name)
    }

    /// Renames the temporary over `path` if the path is still `expect`; otherwise it goes,
    /// and the caller learns what is there now.
    fn place(
        mut self,
        root: &LocalRoot,
        path: &RelPath,
        expect: Option<&Version>,
    ) -> Result<Outcome> {
        if let Some(now) = moved_on(root, path, expect)? {
            return Ok(Outcome::Changed(now));
        }
        // Placed or not, `LocalRoot::place` leaves no temporary.
        self.placed = true;
        root.place(&self.work, &self.name, path)?;
        Ok(Outcome::Done(state_at(root, path)?))
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.placed {
            self.work.remove(&self.name);
        }
    }
}

/// A new temporary link to `entry`'s target.
fn link_temp(work: &Arc<WorkDir>, full: &Path, entry: &NewEntry) -> Result<Temp> {
    match entry.target.as_deref() {
        Some(target) if !target.is_empty() => Ok(Temp::new(work, work.create_link(target)?)),
        _ => Err(Error::Refused(format!(
            "{}: a link without a target",
            full.display()
        ))),
    }
}

/// Fails when `got` (hash and length of what arrived) is not what `entry` announced.
fn check_content(full: &Path, entry: &NewEntry, got: ContentHash, len: u64) -> Result<()> {
    if entry.hash.is_some_and(|want| want != got) {
        return Err(Error::Refused(format!(
            "{}: the content written does not match its hash",
            full.display()
        )));
    }
    if len != entry.size {
        return Err(Error::Refused(format!(
            "{}: {len} bytes arrived where {} were announced",
            full.display(),
            entry.size
        )));
    }
    Ok(())
}

/// Gives a written temporary `entry`'s time and mode.
fn finish_temp(file: &File, tmp: &Path, entry: &NewEntry) -> Result<()> {
    let mtime =
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(entry.mtime_ns.max(0) as u64);
    file.set_modified(mtime)
        .map_err(Error::io("setting mtime", tmp))?;
    file.set_permissions(std::fs::Permissions::from_mode(file_mode(entry.mode)))
        .map_err(Error::io("setting mode", tmp))
}

/// What the first stage of a batch write left for the second.
enum Staged {
    /// A folder: nothing to stage, made when placed.
    Folder,
    /// A file or link waiting in the working folder.
    Temp(Temp),
}

/// Stages one write of a batch: a file's content checked and written (not yet durable) with
/// its time and mode, or a link made, in the working folder (`None` when the batch holds
/// only folders).
fn stage(root: &LocalRoot, work: Option<&Arc<WorkDir>>, op: &WriteOp) -> Result<Staged> {
    let full = root.full(&op.path);
    let work = match (op.entry.kind, work) {
        (EntryKind::Dir, _) => return Ok(Staged::Folder),
        (EntryKind::Deleted, _) => {
            return Err(Error::Refused(format!(
                "{}: a deletion is not a write",
                full.display()
            )))
        }
        (_, None) => {
            return Err(Error::Refused(format!(
                "{}: no working folder to write in",
                full.display()
            )))
        }
        (_, Some(work)) => work,
    };
    Ok(Staged::Temp(match op.entry.kind {
        EntryKind::Symlink => link_temp(work, &full, &op.entry)?,
        _ => file_temp(work, &full, &op.entry, &op.content)?,
    }))
}

/// A new temporary holding `data`, checked against `entry` first, with `entry`'s time and
/// mode; not yet durable.
fn file_temp(work: &Arc<WorkDir>, full: &Path, entry: &NewEntry, data: &[u8]) -> Result<Temp> {
    check_content(full, entry, ContentHash::of(data), data.len() as u64)?;
    let (mut file, name) = work.create_temp("write")?;
    let temp = Temp::new(work, name);
    file.write_all(data)
        .map_err(Error::io("writing", temp.path()))?;
    finish_temp(&file, &temp.path(), entry)?;
    if !work.syncfs_durable() {
        file.sync_all().map_err(Error::io("writing", temp.path()))?;
    }
    Ok(temp)
}

/// Second stage of a batch write: one staged write put in place if the path is still what
/// the caller expected.
fn place_staged(root: &LocalRoot, op: &WriteOp, staged: Staged) -> Result<Outcome> {
    match staged {
        Staged::Folder => match moved_on(root, &op.path, op.expect.as_ref())? {
            Some(now) => Ok(Outcome::Changed(now)),
            None => make_dir(root, &op.path, &op.entry),
        },
        Staged::Temp(temp) => temp.place(root, &op.path, op.expect.as_ref()),
    }
}

/// Runs `f` on the blocking pool; `what` names the work if the job itself dies.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Refused(format!("{what} failed: {e}")))
}

/// Writes the pieces arriving on `rx` to `file` (the temporary `temp`) on a blocking thread,
/// hashing them, then checks, finishes and fsyncs it. `None` on the channel marks the end; a
/// channel closed without it means the write was abandoned, and the temporary goes.
fn write_pieces(
    mut file: File,
    temp: Temp,
    entry: &NewEntry,
    full: &Path,
    mut rx: tokio::sync::mpsc::Receiver<Option<Bytes>>,
) -> Result<Temp> {
    let tmp = &temp.path();
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    loop {
        match rx.blocking_recv() {
            Some(Some(piece)) => {
                hasher.update(&piece);
                len += piece.len() as u64;
                file.write_all(&piece).map_err(Error::io("writing", tmp))?;
            }
            Some(None) => break,
            None => {
                return Err(Error::Refused(format!(
                    "{}: the write stopped before its end",
                    full.display()
                )))
            }
        }
    }
    let got = ContentHash::from_bytes(*hasher.finalize().as_bytes());
    check_content(full, entry, got, len)?;
    finish_temp(&file, tmp, entry)?;
    file.sync_all().map_err(Error::io("writing", tmp))?;
    Ok(temp)
}

impl LocalReplica {
    /// The folder at `path`, listed through `filter`.
    ///
    /// # Errors
    /// When `path` is not a folder that can be opened.
    pub fn open(path: &Path, filter: Filter) -> Result<Self> {
        scanner::check_root(path)?;
        Ok(LocalReplica {
            root: Arc::new(LocalRoot::open(path)?),
            filter,
            work: tokio::sync::OnceCell::new(),
            syncs: AtomicU64::new(0),
        })
    }

    async fn work(&self) -> Result<Arc<WorkDir>> {
        let root = &self.root;
        self.work
            .get_or_try_init(|| async { off_runtime(|| root.work_dir()).map(Arc::new) })
            .await
            .cloned()
    }

    /// Streams `content` into a new temporary (writes, hash check and fsync on a blocking
    /// thread, at most [`WRITE_QUEUE`] pieces waiting), returned once it is whole and durable.
    async fn stream_to_temp(
        &self,
        work: &Arc<WorkDir>,
        path: &RelPath,
        entry: &NewEntry,
        mut content: Content<'_>,
    ) -> Result<Temp> {
        let (file, name) = off_runtime(|| work.create_temp("write"))?;
        let temp = Temp::new(work, name);
        let (tx, rx) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        let (entry, full) = (entry.clone(), self.root.full(path));
        let what = format!("writing {}", full.display());
        let writer =
            tokio::task::spawn_blocking(move || write_pieces(file, temp, &entry, &full, rx));
        let mut failed = None;
        while let Some(piece) = content.next().await {
            match piece {
                Ok(p) => {
                    // A closed channel: the writer stopped, and its error says why.
                    if tx.send(Some(p)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_none() {
            let _ = tx.send(None).await;
        }
        drop(tx);
        // Waited for even after a failed stream: the writer lets go of the temporary first.
        let written = writer
            .await
            .map_err(|e| Error::Refused(format!("{what} failed: {e}")))?;
        match failed {
            Some(e) => Err(e),
            None => written,
        }
    }

    /// Makes all staged writes durable with one `syncfs`.
    async fn sync(&self, work: &WorkDir) -> Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        work.sync_filesystem().await
    }
}

#[async_trait]
impl Replica for LocalReplica {
    fn describe(&self) -> String {
        self.root.path().display().to_string()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            keeps_versions: false,
            knows_hashes: false,
            knows_mtimes: true,
            can_move: true,
            keeps_modes: true,
            stores_links: true,
            dedups: false,
            has_journal: false,
            case_sensitive: true,
            max_name_bytes: 255,
            max_path_bytes: cairn_model::path::MAX_PATH_BYTES,
        }
    }

    async fn folds_case(&self) -> Result<bool> {
        // The folder itself is asked: it may be a mount of another kind than its parent.
        let dir = self.work().await?.path().to_path_buf();
        off_runtime(move || probe_case(&dir))
    }

    async fn list(&self) -> Result<Listing> {
        self.listing(None).await
    }

    async fn list_sifted(&self, sift: Arc<dyn Sift>) -> Result<Listing> {
        sift.restart();
        self.listing(Some(sift)).await
    }

    async fn changes(&self, _since: &Cursor) -> Result<Option<(Vec<ReplicaChange>, Cursor)>> {
        Ok(None)
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<ReplicaEntry>> {
        off_runtime(|| state_at(&self.root, path))
    }

    async fn read(&self, path: &RelPath, version: &Version) -> Result<Content<'static>> {
        let file = off_runtime(|| open_at_version(&self.root, path, version))?;
        let (root, rel, version) = (self.root.clone(), path.clone(), version.clone());
        let full = self.root.full(path);
        // At the end the file must still be the version that was asked for: content that
        // changed while it was read is never handed on half old, half new (invariant 6).
        let pieces = stream::try_unfold(file, move |mut file| {
            let (root, rel, version) = (root.clone(), rel.clone(), version.clone());
            let full = full.clone();
            async move {
                off_runtime(|| {
                    // Read into spare capacity: no zeroing of a buffer the read overwrites.
                    let mut buf = Vec::with_capacity(READ_PIECE);
                    let n = (&mut file)
                        .take(READ_PIECE as u64)
                        .read_to_end(&mut buf)
                        .map_err(Error::io("reading", &full))?;
                    if n == 0 {
                        still_version(&root, &rel, &file, &version)?;
                        return Ok(None);
                    }
                    Ok(Some((Bytes::from(buf), file)))
                })
            }
        });
        Ok(pieces.boxed())
    }

    async fn write(
        &self,
        path: &RelPath,
        entry: &NewEntry,
        content: Content<'_>,
        expect: Option<&Version>,
    ) -> Result<Outcome> {
        let root = &self.root;
        if let Some(now) = off_runtime(|| moved_on(root, path, expect))? {
            return Ok(Outcome::Changed(now));
        }
        let temp = match entry.kind {
            EntryKind::Dir => return off_runtime(|| make_dir(root, path, entry)),
            EntryKind::Deleted => {
                return Err(Error::Refused(format!(
                    "{}: a deletion is not a write",
                    root.full(path).display()
                )))
            }
            EntryKind::Symlink => {
                let work = self.work().await?;
                off_runtime(|| link_temp(&work, &root.full(path), entry))?
            }
            EntryKind::File => {
                let work = self.work().await?;
                self.stream_to_temp(&work, path, entry, content).await?
            }
        };
        // Checked again just before the rename: a change in between wins.
        off_runtime(|| temp.place(root, path, expect))
    }

    async fn delete(&self, path: &RelPath, expect: &Version) -> Result<Outcome> {
        off_runtime(|| delete_at(&self.root, path, expect))
    }

    async fn rename(&self, from: &RelPath, to: &RelPath, expect: &Version) -> Result<Outcome> {
        off_runtime(|| rename_at(&self.root, from, to, expect))
    }

    /// Stages every write in the working folder in one blocking job, makes them durable with
    /// one file-system sync, then places them in the order given, each only if its path is
    /// still what the caller expected.
    async fn write_many(&self, ops: Vec<WriteOp>) -> BatchResult<Outcome> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        // A batch of folders makes no working folder.
        let work = if ops.iter().any(|op| op.entry.kind != EntryKind::Dir) {
            Some(self.work().await?)
        } else {
            None
        };
        let root = self.root.clone();
        let (ops, staged) = blocking("staging writes", move || {
            let staged: Vec<Result<Staged>> = ops
                .iter()
                .map(|op| stage(&root, work.as_ref(), op))
                .collect();
            (ops, staged)
        })
        .await?;
        // Staged temporaries that are never placed (a failed sync, a cancelled batch) go
        // when `staged` is dropped.
        let staged_file = ops.iter().zip(&staged).find_map(|(op, s)| match s {
            Ok(Staged::Temp(temp)) if op.entry.kind == EntryKind::File => Some(temp.work.clone()),
            _ => None,
        });
        // Where one syncfs is not enough, each file was synced as it was staged.
        if let Some(work) = staged_file.filter(|w| w.syncfs_durable()) {
            self.sync(&work).await?;
        }
        let root = self.root.clone();
        blocking("placing writes", move || {
            ops.iter()
                .zip(staged)
                .map(|(op, s)| s.and_then(|s| place_staged(&root, op, s)))
                .collect()
        })
        .await
    }

    async fn read_many(&self, items: &[(RelPath, ReplicaEntry)]) -> BatchResult<Bytes> {
        let (root, items) = (self.root.clone(), items.to_vec());
        blocking("reading files", move || {
            items
                .iter()
                .map(|(path, listed)| read_listed(&root, path, listed))
                .collect()
        })
        .await
    }

    async fn delete_many(&self, items: &[(RelPath, Version)]) -> BatchResult<Outcome> {
        let (root, items) = (self.root.clone(), items.to_vec());
        blocking("deleting", move || {
            items
                .iter()
                .map(|(path, expect)| delete_at(&root, path, expect))
                .collect()
        })
        .await
    }

    async fn rename_many(&self, moves: &[MoveOp]) -> BatchResult<Outcome> {
        let root = self.root.clone();
        let moves: Vec<(RelPath, RelPath, Version)> = moves
            .iter()
            .map(|m| (m.from.clone(), m.to.clone(), m.expect.clone()))
            .collect();
        blocking("moving", move || {
            moves
                .iter()
                .map(|(from, to, expect)| rename_at(&root, from, to, expect))
                .collect()
        })
        .await
    }

    async fn hash_many(&self, items: &[(RelPath, Version)]) -> Result<Vec<Option<ContentHash>>> {
        let (root, items) = (self.root.clone(), items.to_vec());
        // One job: two in parallel measured no faster on two cores (small files or large).
        blocking("hashing", move || {
            let mut buf = vec![0u8; HASH_BUFFER];
            items
                .iter()
                .map(|(path, version)| hash_at(&root, path, version, &mut buf))
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests;

/// Whether `dir`'s file system folds case: a new file there is looked up under its name in
/// capitals.
fn probe_case(dir: &Path) -> Result<bool> {
    let name = format!("case-probe-{}", std::process::id());
    let (lower, upper) = (dir.join(&name), dir.join(name.to_uppercase()));
    std::fs::write(&lower, b"").map_err(Error::io("writing a case probe", &lower))?;
    let folds = std::fs::symlink_metadata(&upper).is_ok();
    let _ = std::fs::remove_file(&lower);
    Ok(folds)
}
