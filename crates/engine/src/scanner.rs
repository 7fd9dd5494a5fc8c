//! The scanner: walks a local folder and returns what is there, with the stat fields that let
//! unchanged files skip re-hashing. It never follows symbolic links, skips sockets, FIFOs and
//! devices, and reports (never drops silently) names it cannot carry.
//!
//! A folder it cannot read is listed in `incomplete`: the planner deletes nothing under it.

use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use cairn_model::{EntryKind, Filter, FilterDecision, RelPath};

use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct LocalEntry {
    pub path: RelPath,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub mode: u32,
    pub target: Option<String>,
}

impl LocalEntry {
    pub fn from_metadata(
        path: RelPath,
        kind: EntryKind,
        md: &fs::Metadata,
        target: Option<String>,
    ) -> Self {
        LocalEntry {
            path,
            kind,
            size: if kind == EntryKind::File { md.len() } else { 0 },
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            inode: md.ino(),
            mode: md.mode() & 0o7777,
            target,
        }
    }
}

#[derive(Debug, Default)]
pub struct Scan {
    pub entries: Vec<LocalEntry>,
    /// Paths left out by a rule, with the rule.
    pub excluded: Vec<(RelPath, String)>,
    /// Names that could not be taken, with why (invalid UTF-8, too long, special files).
    pub reports: Vec<(String, String)>,
    /// Sub-folders that could not be read completely.
    pub incomplete: Vec<RelPath>,
    /// Paths reported above that must be left alone on both sides: what is on the remote
    /// under these names is neither fetched nor deleted.
    pub held: Vec<RelPath>,
    /// Names spelled otherwise than in NFC (as a Mac writes them), by the NFC path they are
    /// listed and synced as: the name on disk of that path's last component.
    pub aliases: Vec<(RelPath, String)>,
}

/// Checks that a task's local root is there and is a folder.
///
/// # Errors
/// [`Error::Refused`] when it is missing, not a folder, or unreadable (an unmounted disk looks
/// like this): the task must stop before it concludes that everything was deleted.
pub fn check_root(root: &Path) -> Result<()> {
    match fs::metadata(root) {
        Ok(md) if md.is_dir() => fs::read_dir(root).map(|_| ()).map_err(|e| {
            Error::Refused(format!(
                "cannot read the local folder {}: {e}; nothing was changed on the server",
                root.display()
            ))
        }),
        Ok(_) => Err(Error::Refused(format!(
            "{} is not a folder; nothing was changed on the server",
            root.display()
        ))),
        Err(e) => Err(Error::Refused(format!(
            "the local folder {} is missing or unmounted ({e}); nothing was changed on the server",
            root.display()
        ))),
    }
}

/// Walks `root` (which [`check_root`] accepted).
pub fn scan(root: &Path, filter: &Filter) -> Scan {
    scan_sifted(root, filter, &|_| false)
}

/// [`scan`] without the entries `leave_out` takes (a pass's files unchanged since its base):
/// they are dropped as they are found, so a large folder's walk is never held whole.
pub fn scan_sifted(root: &Path, filter: &Filter, leave_out: &dyn Fn(&LocalEntry) -> bool) -> Scan {
    let mut out = Scan::default();
    let mut stack: Vec<(PathBuf, RelPath)> = vec![(root.to_path_buf(), RelPath::root())];
    // NFC paths already taken by a name spelled otherwise.
    let mut aliased: HashSet<RelPath> = HashSet::new();
    while let Some((dir, rel)) = stack.pop() {
        let iter = match fs::read_dir(&dir) {
            Ok(it) => it,
            Err(e) => {
                out.reports.push((
                    dir.display().to_string(),
                    format!("cannot read folder: {e}"),
                ));
                out.incomplete.push(rel);
                continue;
            }
        };
        for item in iter {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    out.reports.push((
                        dir.display().to_string(),
                        format!("cannot list folder: {e}"),
                    ));
                    out.incomplete.push(rel.clone());
                    continue;
                }
            };
            let full = item.path();
            let Some(name) = item.file_name().to_str().map(str::to_string) else {
                out.reports.push((
                    full.display().to_string(),
                    format!(
                        "name is not valid UTF-8 (bytes {:?}); not backed up",
                        item.file_name().as_bytes()
                    ),
                ));
                continue;
            };
            let path = match rel.join(&name) {
                Ok(p) => p,
                Err(e) => {
                    out.reports
                        .push((full.display().to_string(), e.to_string()));
                    continue;
                }
            };
            // Names travel in NFC. One spelled otherwise (a Mac writes NFD) syncs under its
            // NFC form and keeps its spelling here (`LocalRoot` acts on it by its alias),
            // unless another name in the folder reads the same once normalised: then the
            // two cannot both travel, and this one is reported on every run and left alone.
            if !cairn_model::path::is_nfc(&name) {
                let twin = dir.join(path.name());
                if fs::symlink_metadata(&twin).is_ok() || !aliased.insert(path.clone()) {
                    out.reports.push((
                        full.display().to_string(),
                        format!(
                            "name is not in Unicode NFC form; it reads the same as {} once normalised, which is kept apart; not synced (rename it to sync it)",
                            twin.display()
                        ),
                    ));
                    out.held.push(path);
                    continue;
                }
                out.aliases.push((path.clone(), name.clone()));
            }
            // A file that vanished between listing and stat is simply not there any more.
            // (Stat relative to the open folder, fstatat, as `symlink_metadata` would without
            // walking the whole path again.)
            let Ok(md) = item.metadata() else {
                continue;
            };
            let ft = md.file_type();
            let kind = if ft.is_symlink() {
                EntryKind::Symlink
            } else if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_file() {
                EntryKind::File
            } else {
                let what = if ft.is_socket() {
                    "a socket"
                } else if ft.is_fifo() {
                    "a FIFO"
                } else {
                    "a device"
                };
                out.reports
                    .push((full.display().to_string(), format!("{what}; skipped")));
                continue;
            };
            if let FilterDecision::Exclude(rule) = filter.check(&path, kind, md.len()) {
                out.excluded.push((path, rule));
                continue;
            }
            let target = if kind == EntryKind::Symlink {
                match fs::read_link(&full) {
                    Ok(t) => match t.to_str() {
                        Some(t) => Some(t.to_string()),
                        None => {
                            out.reports.push((
                                full.display().to_string(),
                                "link target is not valid UTF-8; skipped".into(),
                            ));
                            continue;
                        }
                    },
                    Err(_) => continue,
                }
            } else {
                None
            };
            if kind == EntryKind::Dir {
                stack.push((full, path.clone()));
            }
            let entry = LocalEntry::from_metadata(path, kind, &md, target);
            if !leave_out(&entry) {
                out.entries.push(entry);
            }
        }
    }
    out.entries.sort_by(|a, b| a.path.cmp(&b.path));
    out
}
