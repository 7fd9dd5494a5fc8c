//! Restore and download: write remote versions into local folders without losing a local byte.
//!
//! Each file is streamed into a temporary file inside the destination's working
//! folder (`.cairn`), checked against its content hash, fsynced, given its mode and mtime, and
//! renamed over the target (DESIGN.md invariant 5). Restoring in place never silently replaces
//! a local file that holds an edit the server does not have: that file is first kept under a
//! conflict-copy name.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use cairn_model::conflict::conflict_name;
use cairn_model::{ContentHash, EntryKind, RelPath};
use cairn_protocol::VersionInfo;
use futures_util::stream::{self, StreamExt};

use crate::local_root::LocalRoot;
use crate::remote::Remote;
use crate::replica::{content_of, Content, LocalReplica, NewEntry, Outcome, Replica};
use crate::{Error, Progress, ProgressEvent, Result};

pub struct RestoreOptions {
    /// Restoring over the task's own folder (rather than into a separate destination).
    pub in_place: bool,
    /// This computer's name, for conflict-copy names.
    pub computer: String,
    /// Content hash of each path's current head on the server (by destination path), to tell
    /// a local file that is safely backed up from one that holds an unsaved edit.
    pub heads: HashMap<RelPath, ContentHash>,
    pub transfers: usize,
}

#[derive(Debug, Default)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub unchanged: u64,
    /// Local files kept under a conflict-copy name before being replaced.
    pub kept_local: Vec<PathBuf>,
    /// Paths that could not be written, with why; the rest of the restore went on.
    pub failed: Vec<(PathBuf, String)>,
}

/// Restores each version to its destination path below `root`; every write stays inside
/// `root` and never goes through a link. Temporary files go to `root`'s working folder.
///
/// # Errors
/// A temporary failure (the server went away), after the other files were tried; a path that
/// cannot be written is counted in [`RestoreStats::failed`] and the rest goes on.
pub async fn restore(
    remote: Arc<dyn Remote>,
    mut items: Vec<(VersionInfo, RelPath)>,
    root: &LocalRoot,
    opts: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreStats> {
    let mut stats = RestoreStats::default();
    items.sort_by(|a, b| a.1.cmp(&b.1));
    let shadowed = listed_under_non_folders(items.iter().map(|(v, d)| (d, v.entry.kind)));
    items.retain(|(_, dest)| match shadowed.get(dest) {
        Some(ancestor) => {
            let why = under_non_folder_error(root, dest, ancestor);
            stats.failed.push((root.full(dest), why));
            false
        }
        None => true,
    });
    let replica = LocalReplica::open(root.path(), cairn_model::Filter::default())?;
    let mut files = Vec::new();
    for (v, dest) in items {
        let done = match v.entry.kind {
            EntryKind::Dir => root
                .create_dir_all(&dest)
                .and_then(|()| root.set_dir_mode(&dest, v.entry.mode))
                .map(|()| stats.dirs += 1),
            EntryKind::Symlink => match restore_link(&v, &dest, root, &replica, opts).await {
                Ok(FileOutcome::Unchanged) => {
                    stats.unchanged += 1;
                    Ok(())
                }
                Ok(FileOutcome::Written { kept, .. }) => {
                    stats.files += 1;
                    stats.kept_local.extend(kept);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            EntryKind::File => {
                files.push((v, dest));
                continue;
            }
            EntryKind::Deleted => Ok(()),
        };
        if let Err(e) = done {
            stats.failed.push((root.full(&dest), e.to_string()));
        }
    }
    let results: Vec<(RelPath, Result<FileOutcome>)> =
        stream::iter(files.into_iter().map(|(v, dest)| {
            let remote = remote.clone();
            let progress = progress.clone();
            let replica = &replica;
            async move {
                let r = restore_file(
                    remote.as_ref(),
                    &v,
                    &dest,
                    root,
                    replica,
                    opts,
                    progress.as_ref(),
                )
                .await;
                (dest, r)
            }
        }))
        .buffer_unordered(opts.transfers.max(1))
        .collect()
        .await;
    let mut temporary = None;
    for (dest, r) in results {
        match r {
            Ok(FileOutcome::Unchanged) => stats.unchanged += 1,
            Ok(FileOutcome::Written { bytes, kept }) => {
                stats.files += 1;
                stats.bytes += bytes;
                stats.kept_local.extend(kept);
            }
            Err(e) if e.is_temporary() => {
                temporary.get_or_insert(e);
            }
            Err(e) => stats.failed.push((root.full(&dest), e.to_string())),
        }
    }
    match temporary {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

/// The entries a listing puts under something that is not a folder (a file or a link), each
/// with that ancestor: a broken or hostile listing. They are reported, never written, so which
/// of the two wins never depends on the order transfers finish in.
pub(crate) fn listed_under_non_folders<'a>(
    entries: impl Iterator<Item = (&'a RelPath, EntryKind)> + Clone,
) -> HashMap<RelPath, RelPath> {
    let non_folders: std::collections::HashSet<&RelPath> = entries
        .clone()
        .filter(|(_, k)| !matches!(k, EntryKind::Dir | EntryKind::Deleted))
        .map(|(p, _)| p)
        .collect();
    let mut out = HashMap::new();
    if non_folders.is_empty() {
        return out;
    }
    for (path, _) in entries {
        let mut up = path.parent();
        while let Some(a) = up.filter(|a| !a.is_root()) {
            if non_folders.contains(&a) {
                out.insert(path.clone(), a.clone());
                break;
            }
            up = a.parent();
        }
    }
    out
}

fn under_non_folder_error(root: &LocalRoot, path: &RelPath, ancestor: &RelPath) -> String {
    format!(
        "{}: the server lists it under {}, which is not a folder; not written",
        root.full(path).display(),
        root.full(ancestor).display()
    )
}

enum FileOutcome {
    Unchanged,
    Written { bytes: u64, kept: Option<PathBuf> },
}

/// The content hash of the file at `rel`; `None` when it is not a readable file (a link there
/// is not followed).
pub(crate) fn hash_file(root: &LocalRoot, rel: &RelPath) -> Option<ContentHash> {
    let mut f = root.open_file(rel).ok()?;
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(ContentHash::from_bytes(*h.finalize().as_bytes()))
}

/// Moves what is at `rel` aside under a free conflict-copy name in the same folder; returns
/// its new local path.
pub(crate) fn keep_aside(root: &LocalRoot, rel: &RelPath, computer: &str) -> Result<PathBuf> {
    let name = if rel.name().is_empty() {
        "file"
    } else {
        rel.name()
    };
    // Named with the losing file's modified date, as the seeds say (not the day it lost).
    let modified = root
        .stat(rel)?
        .map(|md| std::os::unix::fs::MetadataExt::mtime(&md))
        .unwrap_or_else(|| crate::now_ns() / 1_000_000_000)
        .max(0);
    let parent = rel.parent().unwrap_or_default();
    for n in 1..10_000 {
        let candidate = conflict_name(name, computer, modified, n);
        let Ok(aside) = parent.join(&candidate) else {
            continue;
        };
        if root.stat(&aside)?.is_none() {
            root.rename_aside(rel, &candidate)?;
            return Ok(root.full(&aside));
        }
    }
    Err(Error::Refused(format!(
        "no free conflict-copy name for {}",
        root.full(rel).display()
    )))
}

/// Decides what to do with what is at `dest` before writing there: (already the same content,
/// the path the local file was kept at).
fn clear_target(
    root: &LocalRoot,
    dest: &RelPath,
    want: Option<&ContentHash>,
    opts: &RestoreOptions,
) -> Result<(bool, Option<PathBuf>)> {
    let Some(md) = root.stat(dest)? else {
        return Ok((false, None));
    };
    if md.is_dir() {
        return Err(Error::Refused(format!(
            "{} is a folder; the restored file would replace it. Move it away or restore with --to",
            root.full(dest).display()
        )));
    }
    let local = if md.is_file() {
        hash_file(root, dest)
    } else {
        None
    };
    if local.is_some() && local.as_ref() == want {
        return Ok((true, None));
    }
    // In place, a local file that differs from the server's head holds an edit the server
    // lacks: keep it. Elsewhere (--to), never replace anything the user had.
    let backed_up = opts.in_place && local.is_some() && local.as_ref() == opts.heads.get(dest);
    if backed_up {
        return Ok((false, None));
    }
    Ok((false, Some(keep_aside(root, dest, &opts.computer)?)))
}

async fn restore_link(
    v: &VersionInfo,
    dest: &RelPath,
    root: &LocalRoot,
    replica: &LocalReplica,
    opts: &RestoreOptions,
) -> Result<FileOutcome> {
    let target = v.entry.target.clone().unwrap_or_default();
    if root.read_link(dest).as_ref() == Some(&target) {
        return Ok(FileOutcome::Unchanged);
    }
    // As for a file: only what was judged is replaced (see `restore_file`).
    let judged = replica.stat(dest).await?.map(|e| e.version);
    let (_, kept) = clear_target(root, dest, None, opts)?;
    let expect = if kept.is_some() { None } else { judged };
    planned_gate().await;
    let entry = NewEntry {
        kind: EntryKind::Symlink,
        size: target.len() as u64,
        mtime_ns: v.entry.mtime_ns,
        mode: v.entry.mode,
        hash: None,
        target: Some(target),
    };
    let empty = content_of(bytes::Bytes::new());
    match replica.write(dest, &entry, empty, expect.as_ref()).await? {
        Outcome::Done(_) => Ok(FileOutcome::Written { bytes: 0, kept }),
        Outcome::Changed(_) => Err(changed_meanwhile(root, dest)),
    }
}

/// The refusal of a restore that found its target changed after it planned.
fn changed_meanwhile(root: &LocalRoot, dest: &RelPath) -> Error {
    Error::Refused(format!(
        "{} changed while it was being restored; left as it is",
        root.full(dest).display()
    ))
}

/// Files up to this size are fetched whole, larger ones as a stream.
const WHOLE_FILE_LIMIT: u64 = 1024 * 1024;

async fn restore_file(
    remote: &dyn Remote,
    v: &VersionInfo,
    dest: &RelPath,
    root: &LocalRoot,
    replica: &LocalReplica,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<FileOutcome> {
    let want = v.entry.hash.ok_or_else(|| {
        Error::remote(format!("{} version {} has no content hash", v.path, v.seq))
    })?;
    // The version decided on is the one seen before deciding: a file that appears or changes
    // after this stat (even before the decision below) is not what was judged safe to replace.
    let judged = replica.stat(dest).await?.map(|e| e.version);
    let (same, kept) = clear_target(root, dest, Some(&want), opts)?;
    if same {
        return Ok(FileOutcome::Unchanged);
    }
    // What is left at `dest` is replaced only if it is still what was judged (a backed-up file
    // in place), or written only where nothing is (the local file was kept aside, or there was
    // none); anything that appears or changes meanwhile wins, and the path is reported.
    let expect = if kept.is_some() { None } else { judged };
    planned_gate().await;
    let entry = NewEntry {
        kind: EntryKind::File,
        size: v.entry.size,
        mtime_ns: v.entry.mtime_ns,
        mode: v.entry.mode,
        hash: Some(want),
        target: None,
    };
    let content = version_content(remote, v).await?.inspect(|piece| {
        if let Ok(p) = piece {
            progress.event(ProgressEvent::Transferred {
                bytes: p.len() as u64,
            });
        }
    });
    match replica
        .write(dest, &entry, content.boxed(), expect.as_ref())
        .await?
    {
        Outcome::Done(_) => {}
        Outcome::Changed(_) => return Err(changed_meanwhile(root, dest)),
    }
    progress.event(ProgressEvent::Restored {
        path: v.path.clone(),
        size: v.entry.size,
    });
    Ok(FileOutcome::Written {
        bytes: v.entry.size,
        kept,
    })
}

/// Test hook (`CAIRN_TEST_RESTORE_GATE=DIR`, only in builds with the `test-hooks` feature):
/// once a file's restore is planned and before it is written, creates `DIR/planned` and waits
/// for `DIR/go`, so a test can put a file at the target in between, deterministically.
#[cfg(feature = "test-hooks")]
async fn planned_gate() {
    let Some(dir) = std::env::var_os("CAIRN_TEST_RESTORE_GATE").map(PathBuf::from) else {
        return;
    };
    let _ = std::fs::write(dir.join("planned"), b"");
    while !dir.join("go").exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(not(feature = "test-hooks"))]
async fn planned_gate() {}

/// The content of version `v` as a stream: whole for small files, as one streamed answer
/// otherwise (a request per chunk cost each chunk a request's checks on the server and a hash
/// of its own here). The writer checks the whole against the version's hash and length.
async fn version_content<'a>(remote: &'a dyn Remote, v: &'a VersionInfo) -> Result<Content<'a>> {
    if v.entry.size <= WHOLE_FILE_LIMIT {
        // One request, the answer read whole.
        let whole = remote.content(&v.path, v.seq).await?;
        return Ok(content_of(whole));
    }
    // Opening is retried like any request (a dropped connection, a restarting server, an
    // answer cut off before its head arrived); a cut later is resumed by the stream itself.
    crate::retry::retrying(|| remote.content_stream(&v.path, v.seq, v.entry.size)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).expect("valid path")
    }

    #[test]
    fn entries_under_a_file_or_link_are_found_whatever_the_order() {
        let entries = [
            (p("f/g"), EntryKind::File),
            (p("f"), EntryKind::File),
            (p("d"), EntryKind::Dir),
            (p("d/x"), EntryKind::File),
            (p("l"), EntryKind::Symlink),
            (p("l/deep/er"), EntryKind::Dir),
        ];
        let found = listed_under_non_folders(entries.iter().map(|(p, k)| (p, *k)));
        assert_eq!(found.len(), 2);
        assert_eq!(found.get(&p("f/g")), Some(&p("f")));
        assert_eq!(found.get(&p("l/deep/er")), Some(&p("l")));
    }
}
