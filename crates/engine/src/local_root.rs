//! `LocalRoot`: the one way the engine touches a task's local folder, so that whatever a server
//! or a co-member of a shared folder sends, nothing is created, replaced, read or deleted outside
//! the root or through a symbolic link.
//!
//! Every operation opens the parents of a [`RelPath`] one component at a time, relative to a
//! descriptor of the root, with `O_NOFOLLOW | O_DIRECTORY`, and then acts on the last name with
//! an `*at` call on that parent. A link anywhere on the way is refused by the kernel, not by a
//! string check, so a link swapped in between two calls cannot redirect a write either. Links
//! are data: they are created and removed as links and never followed. The alternative that
//! lost, `openat2(RESOLVE_BENEATH)`, needs Linux 5.6 and still follows links inside the root.
//!
//! [`WorkDir`] is the task's working folder (`.cairn`) inside the root: temporary files are
//! made there and renamed into place, and any it made that are left over from a failed pass
//! (or a killed process) are removed.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use cairn_model::filter::WORK_DIR_NAME;
use cairn_model::RelPath;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::{Error, Result};

/// Permission bits a file gets from a version's mode: never setuid, setgid or sticky, and the
/// owner can always read and write it.
pub fn file_mode(mode: u32) -> u32 {
    (mode & 0o777) | 0o600
}

/// Permission bits a folder gets: as [`file_mode`], and the owner can always enter it.
pub fn dir_mode(mode: u32) -> u32 {
    (mode & 0o777) | 0o700
}

/// A local folder opened for confined access.
#[derive(Debug)]
pub struct LocalRoot {
    path: PathBuf,
    dir: OwnedFd,
    /// Names spelled here otherwise than in NFC (as a Mac writes them), by the NFC path they
    /// travel as: what the last scan found (see [`LocalRoot::set_aliases`]).
    aliases: RwLock<HashMap<RelPath, String>>,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn io_err(context: &str, path: &Path) -> impl FnOnce(Errno) -> Error {
    let context = context.to_string();
    let path = path.to_path_buf();
    move |e| Error::Io {
        context,
        path,
        cause: e.into(),
    }
}

impl LocalRoot {
    /// Opens the folder at `path`. The root itself may be reached through a link: the user
    /// chose it; only what lies below it is confined.
    ///
    /// # Errors
    /// When `path` is not an openable folder.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("opening folder", path))?;
        Ok(LocalRoot {
            path: path.to_path_buf(),
            dir,
            aliases: RwLock::new(HashMap::new()),
        })
    }

    /// Creates the folder at `path` (and its parents) when missing, then opens it.
    ///
    /// # Errors
    /// When it cannot be created or opened.
    pub fn create(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(Error::io("creating folder", path))?;
        Self::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The local spelling of `rel`, for messages and for readers that need a path.
    pub fn full(&self, rel: &RelPath) -> PathBuf {
        if self.aliases.read().map_or(true, |held| held.is_empty()) {
            return rel.components().fold(self.path.clone(), |p, c| p.join(c));
        }
        let mut walked = RelPath::root();
        let mut full = self.path.clone();
        for part in rel.components() {
            match walked.join(part) {
                Ok(next) => {
                    walked = next;
                    full.push(self.name_of(&walked).as_ref());
                }
                Err(_) => full.push(part),
            }
        }
        full
    }

    /// Takes the names the last scan found spelled otherwise than in NFC, each under the NFC
    /// path it syncs as: every later operation on such a path acts on the name as it is on
    /// disk, so an edit from elsewhere replaces that file rather than making an NFC twin.
    pub fn set_aliases(&self, found: Vec<(RelPath, String)>) {
        if let Ok(mut held) = self.aliases.write() {
            *held = found.into_iter().collect();
        }
    }

    /// The name of `rel`'s last component on disk: its alias, or its own name.
    fn name_of<'a>(&self, rel: &'a RelPath) -> Cow<'a, str> {
        match self.aliases.read() {
            Ok(held) if !held.is_empty() => match held.get(rel) {
                Some(name) => Cow::Owned(name.clone()),
                None => Cow::Borrowed(rel.name()),
            },
            _ => Cow::Borrowed(rel.name()),
        }
    }

    /// Forgets the alias of `rel` once the name is gone from disk (deleted or moved away), so
    /// a file made there later gets the NFC name.
    fn forget_alias(&self, rel: &RelPath) {
        if let Ok(mut held) = self.aliases.write() {
            if !held.is_empty() {
                held.remove(rel);
            }
        }
    }

    /// Opens the folder holding `rel` (the root for a top-level name) without following links,
    /// creating missing folders when `create` is set. `Ok(None)` when a parent is missing (or is
    /// not a folder) and `create` is off.
    fn parent(&self, rel: &RelPath, create: bool) -> Result<Option<OwnedFd>> {
        let mut cur = rustix::fs::openat(&self.dir, ".", DIR_FLAGS, Mode::empty())
            .map_err(io_err("opening folder", &self.path))?;
        let parts: Vec<&str> = rel.components().collect();
        let mut walked = RelPath::root();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            walked = walked.join(part)?;
            let part = self.name_of(&walked);
            let part = part.as_ref();
            match open_dir(&cur, part, create) {
                Ok(next) => cur = next,
                Err(Errno::NOENT) if !create => return Ok(None),
                Err(Errno::NOTDIR | Errno::LOOP) if !create => return Ok(None),
                Err(e) => return Err(self.walk_error(&cur, part, &walked, rel, e)),
            }
        }
        Ok(Some(cur))
    }

    fn parent_for_write(&self, rel: &RelPath) -> Result<OwnedFd> {
        if rel.is_root() {
            return Err(Error::Refused(format!(
                "{}: the root of a task is never replaced",
                self.path.display()
            )));
        }
        self.parent(rel, true)?.ok_or_else(|| {
            Error::Refused(format!("{}: no parent folder", self.full(rel).display()))
        })
    }

    /// Explains why a folder on the way to `rel` could not be opened: a link, a file, or an
    /// I/O error, naming both paths.
    fn walk_error(
        &self,
        at: &OwnedFd,
        name: &str,
        walked: &RelPath,
        rel: &RelPath,
        e: Errno,
    ) -> Error {
        let what = match rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                rustix::fs::FileType::Symlink => {
                    Some("a symbolic link, which cairn never writes through")
                }
                rustix::fs::FileType::Directory => None,
                _ => Some("a file, not a folder"),
            },
            Err(_) => None,
        };
        match what {
            Some(what) => Error::Refused(format!(
                "{}: {} is {what}",
                self.full(rel).display(),
                self.full(walked).display()
            )),
            None => io_err("opening folder", &self.full(walked))(e),
        }
    }

    /// What is at `rel` now, without following a link there or on the way; `None` when
    /// nothing is (or a parent is not a folder).
    ///
    /// # Errors
    /// An I/O error other than "not there".
    pub fn stat(&self, rel: &RelPath) -> Result<Option<Metadata>> {
        let fd = if rel.is_root() {
            rustix::fs::openat(&self.dir, ".", DIR_FLAGS, Mode::empty())
        } else {
            let Some(parent) = self.parent(rel, false)? else {
                return Ok(None);
            };
            rustix::fs::openat(
                &parent,
                self.name_of(rel).as_ref(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        match fd {
            Ok(fd) => File::from(fd)
                .metadata()
                .map(Some)
                .map_err(Error::io("reading metadata", self.full(rel))),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(e) => Err(io_err("reading metadata", &self.full(rel))(e)),
        }
    }

    /// The target of the link at `rel`; `None` when there is no link there.
    pub fn read_link(&self, rel: &RelPath) -> Option<String> {
        let parent = self.parent(rel, false).ok()??;
        let target =
            rustix::fs::readlinkat(&parent, self.name_of(rel).as_ref(), Vec::new()).ok()?;
        target.into_string().ok()
    }

    /// Opens the file at `rel` for reading; a link there is refused.
    ///
    /// # Errors
    /// When it is missing, a link, or unreadable.
    pub fn open_file(&self, rel: &RelPath) -> Result<File> {
        let full = || self.full(rel);
        let parent = self.parent(rel, false)?.ok_or_else(|| Error::Io {
            context: "opening".into(),
            path: full(),
            cause: std::io::ErrorKind::NotFound.into(),
        })?;
        rustix::fs::openat(
            &parent,
            self.name_of(rel).as_ref(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(|e| io_err("opening", &full())(e))
    }

    /// Creates the folder `rel` and its parents; a folder already there is fine.
    ///
    /// # Errors
    /// When something that is not a folder (a file, a link) stands on the way or at `rel`.
    pub fn create_dir_all(&self, rel: &RelPath) -> Result<()> {
        if rel.is_root() {
            return Ok(());
        }
        let parent = self.parent_for_write(rel)?;
        open_dir(&parent, self.name_of(rel).as_ref(), true)
            .map(drop)
            .map_err(|e| self.walk_error(&parent, self.name_of(rel).as_ref(), rel, rel, e))
    }

    /// Sets the permission bits of the folder `rel` to [`dir_mode`] of `mode`.
    ///
    /// # Errors
    /// When `rel` is not a folder (a link there is refused) or its mode cannot change.
    pub fn set_dir_mode(&self, rel: &RelPath, mode: u32) -> Result<()> {
        let dir = if rel.is_root() {
            rustix::fs::openat(&self.dir, ".", DIR_FLAGS, Mode::empty())
        } else {
            let parent = self.parent_for_write(rel)?;
            rustix::fs::openat(
                &parent,
                self.name_of(rel).as_ref(),
                DIR_FLAGS,
                Mode::empty(),
            )
        }
        .map_err(io_err("opening folder", &self.full(rel)))?;
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(dir_mode(mode)))
            .map_err(io_err("setting mode", &self.full(rel)))
    }

    /// Moves `from` to `to` inside the root; refuses to replace anything at `to`.
    ///
    /// # Errors
    /// When either parent cannot be reached without a link, or `to` exists.
    pub fn rename(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        let src = self.parent_for_write(from)?;
        let dst = self.parent_for_write(to)?;
        rename_noreplace(
            &src,
            self.name_of(from).as_ref(),
            &dst,
            self.name_of(to).as_ref(),
        )
        .map_err(io_err("moving here", &self.full(to)))?;
        self.forget_alias(from);
        Ok(())
    }

    /// Moves `rel` to the free name `new_name` in the same folder (a conflict copy).
    ///
    /// # Errors
    /// When `new_name` is taken or the move fails.
    pub fn rename_aside(&self, rel: &RelPath, new_name: &str) -> Result<()> {
        let parent = self.parent_for_write(rel)?;
        rename_noreplace(&parent, self.name_of(rel).as_ref(), &parent, new_name)
            .map_err(io_err("keeping the local copy", &self.full(rel)))?;
        self.forget_alias(rel);
        Ok(())
    }

    /// Removes the file or link at `rel` (a link is removed, never what it points to).
    ///
    /// # Errors
    /// When it cannot be removed.
    pub fn remove_file(&self, rel: &RelPath) -> Result<()> {
        let parent = self.parent_for_write(rel)?;
        rustix::fs::unlinkat(&parent, self.name_of(rel).as_ref(), AtFlags::empty())
            .map_err(io_err("deleting", &self.full(rel)))?;
        self.forget_alias(rel);
        Ok(())
    }

    /// Removes the empty folder at `rel`.
    ///
    /// # Errors
    /// When it is not empty or cannot be removed.
    pub fn remove_dir(&self, rel: &RelPath) -> Result<()> {
        let parent = self.parent_for_write(rel)?;
        rustix::fs::unlinkat(&parent, self.name_of(rel).as_ref(), AtFlags::REMOVEDIR)
            .map_err(io_err("deleting folder", &self.full(rel)))?;
        self.forget_alias(rel);
        Ok(())
    }

    /// Opens (creating it) the task's working folder inside this root.
    ///
    /// # Errors
    /// When it cannot be created, or something that is not a folder stands there.
    pub fn work_dir(&self) -> Result<WorkDir> {
        let path = self.path.join(WORK_DIR_NAME);
        let dir = open_dir(&self.dir, WORK_DIR_NAME, true).map_err(|e| {
            self.walk_error(
                &self.dir,
                WORK_DIR_NAME,
                &RelPath::root(),
                &RelPath::root(),
                e,
            )
        })?;
        let root = rustix::fs::openat(&self.dir, ".", DIR_FLAGS, Mode::empty())
            .map_err(io_err("opening folder", &self.path))?;
        let syncfs_durable = syncfs_is_durable(&dir);
        let work = WorkDir {
            path,
            root,
            dir,
            made: Mutex::new(HashSet::new()),
            syncfs_durable,
        };
        work.sweep_dead();
        Ok(work)
    }

    /// Renames the temporary `name` of `work` over `rel`, creating `rel`'s parents. The
    /// temporary is gone afterwards either way: placed, or removed when placing failed.
    ///
    /// # Errors
    /// When a parent cannot be made without a link, `rel` is a folder, or the rename fails.
    pub fn place(&self, work: &WorkDir, name: &str, rel: &RelPath) -> Result<()> {
        let placed = self.parent_for_write(rel).and_then(|parent| {
            rustix::fs::renameat(&work.dir, name, &parent, self.name_of(rel).as_ref())
                .map_err(io_err("placing", &self.full(rel)))
        });
        match placed {
            Ok(()) => work.forget(name),
            Err(_) => work.remove(name),
        }
        placed
    }
}

/// Opens the folder `name` in `at` without following a link, creating it when `create` is set.
fn open_dir(at: &OwnedFd, name: &str, create: bool) -> std::result::Result<OwnedFd, Errno> {
    match rustix::fs::openat(at, name, DIR_FLAGS, Mode::empty()) {
        Err(Errno::NOENT) if create => {
            match rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
            rustix::fs::openat(at, name, DIR_FLAGS, Mode::empty())
        }
        other => other,
    }
}

/// The task's working folder: temporary files of this process, removed when placed, when
/// dropped, or (left by a process that died) by the next one to open the folder.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    root: OwnedFd,
    dir: OwnedFd,
    made: Mutex<HashSet<String>>,
    /// Whether one `syncfs` makes this file system's writes durable ([`syncfs_is_durable`]).
    syncfs_durable: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Renames `from` in `src` to `to` in `dst` unless `to` is taken (`EEXIST` then). File
/// systems that refuse the no-replace flag (those built on libfuse 2, some network ones: they
/// answer `EINVAL`) get the same guarantee for a file or link from a hard link and an unlink,
/// and for a folder from a look before a plain rename.
fn rename_noreplace(src: &OwnedFd, from: &str, dst: &OwnedFd, to: &str) -> rustix::io::Result<()> {
    match rustix::fs::renameat_with(src, from, dst, to, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL) => {}
        done => return done,
    }
    match rustix::fs::linkat(src, from, dst, to, AtFlags::empty()) {
        Ok(()) => rustix::fs::unlinkat(src, from, AtFlags::empty()),
        // A folder (never hard-linked), or a file system without hard links.
        Err(Errno::PERM | Errno::NOTSUP | Errno::MLINK) => {
            match rustix::fs::statat(dst, to, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => Err(Errno::EXIST),
                Err(Errno::NOENT) => rustix::fs::renameat(src, from, dst, to),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// FUSE's `f_type` (`FUSE_SUPER_MAGIC`).
const FUSE_MAGIC: i64 = 0x6573_5546;

/// Whether `syncfs` on the file system holding `dir` makes its writes durable. Not on FUSE
/// (sshfs, mergerfs, rclone mount, ...): the kernel hands the daemon the written pages but no
/// sync, so the daemon's own disk may never see them; files there are fsynced one by one.
/// Found by the power-loss rig (docs/reliability.md).
// `f_type` is an i32 on some architectures.
#[allow(clippy::useless_conversion)]
pub fn syncfs_is_durable(dir: &OwnedFd) -> bool {
    rustix::fs::fstatfs(dir).is_ok_and(|st| i64::from(st.f_type) != FUSE_MAGIC)
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether [`WorkDir::sync_filesystem`] makes what was written here durable; when not,
    /// each file must be synced on its own.
    pub fn syncfs_durable(&self) -> bool {
        self.syncfs_durable
    }

    /// A new empty temporary file only this user can read; its name carries this process's id
    /// so a later process can tell leftovers of a dead one.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn create_temp(&self, kind: &str) -> Result<(File, String)> {
        let name = self.temp_name(kind);
        let fd = rustix::fs::openat(
            &self.dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_err("creating temporary file", &self.path.join(&name)))?;
        self.remember(&name);
        Ok((File::from(fd), name))
    }

    /// A new temporary symbolic link to `target`.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn create_link(&self, target: &str) -> Result<String> {
        let name = self.temp_name("link");
        rustix::fs::symlinkat(target, &self.dir, name.as_str())
            .map_err(io_err("creating symbolic link", &self.path.join(&name)))?;
        self.remember(&name);
        Ok(name)
    }

    /// Removes a temporary this process made (a no-op when it is gone already).
    pub fn remove(&self, name: &str) {
        let _ = rustix::fs::unlinkat(&self.dir, name, AtFlags::empty());
        self.forget(name);
    }

    /// Makes everything written to this file system durable (one `syncfs`, off the async
    /// threads).
    ///
    /// # Errors
    /// When the sync fails.
    pub async fn sync_filesystem(&self) -> Result<()> {
        let fd = self
            .dir
            .try_clone()
            .map_err(Error::io("syncing", &self.path))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            rustix::fs::syncfs(&fd).map_err(io_err("syncing", &path))
        })
        .await
        .map_err(|e| Error::Refused(format!("syncing {} failed: {e}", self.path.display())))?
    }

    fn temp_name(&self, kind: &str) -> String {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{kind}-{}-{n}.tmp", std::process::id())
    }

    fn remember(&self, name: &str) {
        self.made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
    }

    fn forget(&self, name: &str) {
        self.made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Removes temporaries whose process is no longer running (killed mid-pass).
    fn sweep_dead(&self) {
        let Ok(dir) = rustix::fs::openat(&self.dir, ".", DIR_FLAGS, Mode::empty()) else {
            return;
        };
        let Ok(entries) = rustix::fs::Dir::read_from(dir.as_fd()) else {
            return;
        };
        let me = std::process::id();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            let Some(pid) = temp_pid(name) else {
                continue;
            };
            if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = rustix::fs::unlinkat(&self.dir, name, AtFlags::empty());
            }
        }
    }
}

/// The process id in a temporary's name (`kind-PID-N.tmp`).
fn temp_pid(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".tmp")?;
    let mut parts = stem.rsplitn(3, '-');
    let _n = parts.next()?;
    parts.next()?.parse().ok()
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let made = std::mem::take(self.made.get_mut().unwrap_or_else(|p| p.into_inner()));
        for name in made {
            let _ = rustix::fs::unlinkat(&self.dir, name.as_str(), AtFlags::empty());
        }
        // Leave the folder when it is empty (another process's files keep it).
        let _ = rustix::fs::unlinkat(&self.root, WORK_DIR_NAME, AtFlags::REMOVEDIR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).expect("valid path")
    }

    #[test]
    fn modes_keep_only_permission_bits_and_owner_access() {
        assert_eq!(file_mode(0o4755), 0o755);
        assert_eq!(file_mode(0o7000), 0o600);
        assert_eq!(file_mode(0o444), 0o644);
        assert_eq!(dir_mode(0o1777), 0o777);
        assert_eq!(dir_mode(0o055), 0o755);
    }

    #[test]
    fn a_name_spelled_otherwise_than_nfc_is_acted_on_as_it_is_on_disk() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("Cafe\u{301}");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("a\u{301}.txt"), b"mac").expect("write");
        // Two spellings of one NFC name, neither of them NFC: only one can travel.
        std::fs::write(tmp.path().join("o\u{302}\u{323}.txt"), b"one").expect("write");
        std::fs::write(tmp.path().join("o\u{323}\u{302}.txt"), b"two").expect("write");
        let scan = crate::scanner::scan(tmp.path(), &cairn_model::Filter::default());
        let listed: Vec<String> = scan.entries.iter().map(|e| e.path.to_string()).collect();
        assert!(
            listed.contains(&"Caf\u{e9}/\u{e1}.txt".to_string()),
            "{listed:?}"
        );
        assert_eq!(scan.held, vec![p("\u{1ed9}.txt")], "{listed:?}");
        assert!(
            listed.contains(&"\u{1ed9}.txt".to_string()),
            "one of the two travels"
        );

        let root = LocalRoot::open(tmp.path()).expect("open");
        root.set_aliases(scan.aliases);
        let file = p("Caf\u{e9}/\u{e1}.txt");
        let mut read = String::new();
        std::io::Read::read_to_string(&mut root.open_file(&file).expect("open"), &mut read)
            .expect("read");
        assert_eq!(read, "mac");
        assert_eq!(root.full(&file), dir.join("a\u{301}.txt"));
        // A file made beside it goes into the folder as it is spelled on disk.
        let work = root.work_dir().expect("work dir");
        let (_, temp) = work.create_temp("t").expect("temp");
        root.place(&work, &temp, &p("Caf\u{e9}/new.txt"))
            .expect("place");
        assert!(dir.join("new.txt").exists());
        root.rename(&file, &p("Caf\u{e9}/moved.txt")).expect("move");
        assert!(dir.join("moved.txt").exists());
        assert!(!dir.join("a\u{301}.txt").exists());
        root.remove_file(&p("Caf\u{e9}/moved.txt")).expect("delete");
        root.remove_file(&p("Caf\u{e9}/new.txt")).expect("delete");
        root.remove_dir(&p("Caf\u{e9}")).expect("delete folder");
        assert!(!dir.exists());
        // The alias went with the folder: a folder made there now has the NFC name.
        root.create_dir_all(&p("Caf\u{e9}")).expect("mkdir");
        assert!(tmp.path().join("Caf\u{e9}").is_dir());
    }

    #[test]
    fn writes_never_go_through_a_link() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        let root_path = tmp.path().join("root");
        std::fs::create_dir(&root_path).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root_path.join("link")).expect("symlink");
        std::fs::write(root_path.join("file"), b"x").expect("write");
        let root = LocalRoot::open(&root_path).expect("open");

        let err = root
            .create_dir_all(&p("link/sub"))
            .expect_err("through a link");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = root
            .create_dir_all(&p("file/sub"))
            .expect_err("under a file");
        assert!(err.to_string().contains("a file, not a folder"), "{err}");
        let work = root.work_dir().expect("work dir");
        let (_, name) = work.create_temp("download").expect("temp");
        assert!(root.place(&work, &name, &p("link/evil")).is_err());
        assert!(root.open_file(&p("link")).is_err(), "a link is not opened");
        assert!(root.stat(&p("link/anything")).expect("stat").is_none());
        root.remove_file(&p("link"))
            .expect("remove the link itself");
        assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
        drop(work);
        assert!(
            !root_path.join(WORK_DIR_NAME).exists(),
            "temporaries removed"
        );
    }

    #[test]
    fn leftovers_of_dead_processes_are_swept() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let work = tmp.path().join(WORK_DIR_NAME);
        std::fs::create_dir(&work).expect("mkdir");
        // Pid 0 is never a user process.
        std::fs::write(work.join("download-0-1.tmp"), b"stale").expect("write");
        std::fs::write(work.join("keep-me"), b"x").expect("write");
        let root = LocalRoot::open(tmp.path()).expect("open");
        let _w = root.work_dir().expect("work dir");
        assert!(!work.join("download-0-1.tmp").exists());
        assert!(work.join("keep-me").exists());
        assert_eq!(temp_pid("download-123-9.tmp"), Some(123));
    }
}
