//! Restore and download: write remote versions into local folders without losing a local byte.
//!
//! Each file is fetched chunk by chunk into a temporary file inside the destination's working
//! folder (`.cairn`), checked against its content hash, fsynced, given its mode and mtime, and
//! renamed over the target (DESIGN.md invariant 5). Restoring in place never silently replaces
//! a local file that holds an edit the server does not have: that file is first kept under a
//! conflict-copy name.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use cairn_model::conflict::conflict_name;
use cairn_model::filter::WORK_DIR_NAME;
use cairn_model::{ContentHash, EntryKind};
use cairn_protocol::VersionInfo;
use futures_util::stream::{self, StreamExt};

use crate::remote::Remote;
use crate::{Error, Progress, ProgressEvent, Result};

pub struct RestoreOptions {
    /// Restoring over the task's own folder (rather than into a separate destination).
    pub in_place: bool,
    /// This computer's name, for conflict-copy names.
    pub computer: String,
    /// Content hash of each path's current head on the server (by destination path), to tell
    /// a local file that is safely backed up from one that holds an unsaved edit.
    pub heads: HashMap<PathBuf, ContentHash>,
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
}

/// Restores each version to its destination path. `work_root` is the folder whose `.cairn`
/// holds temporary files (same file system as the destinations).
///
/// # Errors
/// The first failure to fetch, verify or write a file; files done before it stay restored.
pub async fn restore(
    remote: Arc<dyn Remote>,
    mut items: Vec<(VersionInfo, PathBuf)>,
    work_root: &Path,
    opts: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreStats> {
    let mut stats = RestoreStats::default();
    items.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    let work = work_root.join(WORK_DIR_NAME);
    fs::create_dir_all(&work).map_err(Error::io("creating the working folder", &work))?;
    let mut files = Vec::new();
    for (v, dest) in items {
        match v.entry.kind {
            EntryKind::Dir => {
                fs::create_dir_all(&dest).map_err(Error::io("creating folder", &dest))?;
                let _ =
                    fs::set_permissions(&dest, fs::Permissions::from_mode(v.entry.mode.max(0o700)));
                stats.dirs += 1;
            }
            EntryKind::Symlink => restore_link(&v, &dest, opts, &mut stats)?,
            EntryKind::File => files.push((v, dest)),
            EntryKind::Deleted => {}
        }
    }
    let results: Vec<Result<FileOutcome>> =
        stream::iter(
            files.into_iter().map(|(v, dest)| {
                let remote = remote.clone();
                let work = work.clone();
                let progress = progress.clone();
                async move {
                    restore_file(remote.as_ref(), &v, &dest, &work, opts, progress.as_ref()).await
                }
            }),
        )
        .buffer_unordered(opts.transfers.max(1))
        .collect()
        .await;
    let _ = fs::remove_dir(&work);
    for r in results {
        match r? {
            FileOutcome::Unchanged => stats.unchanged += 1,
            FileOutcome::Written { bytes, kept } => {
                stats.files += 1;
                stats.bytes += bytes;
                stats.kept_local.extend(kept);
            }
        }
    }
    Ok(stats)
}

enum FileOutcome {
    Unchanged,
    Written { bytes: u64, kept: Option<PathBuf> },
}

pub(crate) fn hash_file(path: &Path) -> Option<ContentHash> {
    let mut f = fs::File::open(path).ok()?;
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(ContentHash::from_bytes(*h.finalize().as_bytes()))
}

/// Moves an existing local file aside under a free conflict-copy name; returns the new path.
pub(crate) fn keep_aside(dest: &Path, computer: &str) -> Result<PathBuf> {
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let now = (crate::now_ns() / 1_000_000_000).max(0);
    let parent = dest.parent().unwrap_or(Path::new("."));
    for n in 1..10_000 {
        let candidate = parent.join(conflict_name(name, computer, now, n));
        if fs::symlink_metadata(&candidate).is_err() {
            fs::rename(dest, &candidate).map_err(Error::io("keeping the local copy", dest))?;
            return Ok(candidate);
        }
    }
    Err(Error::Refused(format!(
        "no free conflict-copy name for {}",
        dest.display()
    )))
}

/// Decides what to do with what is at `dest` before writing there: `Ok(None)` to go ahead,
/// `Ok(Some(path))` when the local file was kept aside at `path`.
fn clear_target(
    dest: &Path,
    want: Option<&ContentHash>,
    opts: &RestoreOptions,
) -> Result<(bool, Option<PathBuf>)> {
    let Ok(md) = fs::symlink_metadata(dest) else {
        return Ok((false, None));
    };
    if md.is_dir() {
        return Err(Error::Refused(format!(
            "{} is a folder; the restored file would replace it. Move it away or restore with --to",
            dest.display()
        )));
    }
    let local = if md.is_file() { hash_file(dest) } else { None };
    if local.is_some() && local.as_ref() == want {
        return Ok((true, None));
    }
    // In place, a local file that differs from the server's head holds an edit the server
    // lacks: keep it. Elsewhere (--to), never replace anything the user had.
    let backed_up = opts.in_place && local.is_some() && local.as_ref() == opts.heads.get(dest);
    if backed_up {
        return Ok((false, None));
    }
    Ok((false, Some(keep_aside(dest, &opts.computer)?)))
}

fn restore_link(
    v: &VersionInfo,
    dest: &Path,
    opts: &RestoreOptions,
    stats: &mut RestoreStats,
) -> Result<()> {
    let target = v.entry.target.clone().unwrap_or_default();
    if fs::read_link(dest)
        .ok()
        .and_then(|t| t.to_str().map(str::to_string))
        == Some(target.clone())
    {
        stats.unchanged += 1;
        return Ok(());
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(Error::io("creating folder", parent))?;
    }
    let (_, kept) = clear_target(dest, None, opts)?;
    stats.kept_local.extend(kept);
    let _ = fs::remove_file(dest);
    std::os::unix::fs::symlink(&target, dest).map_err(Error::io("creating symbolic link", dest))?;
    stats.files += 1;
    Ok(())
}

/// Files up to this size are fetched whole, larger ones chunk by chunk.
const WHOLE_FILE_LIMIT: u64 = 1024 * 1024;

/// Fetches version `v` chunk by chunk into a new temporary file in `work`, checks every chunk
/// and the whole content against their hashes, gives it the version's mode and mtime and
/// fsyncs it (unless `durable` is false). Returns the temporary file, ready to be renamed into place, and its size; on
/// error nothing is left behind.
pub(crate) async fn fetch_verified(
    remote: &dyn Remote,
    v: &VersionInfo,
    work: &Path,
    progress: &dyn Progress,
    durable: bool,
) -> Result<(PathBuf, u64)> {
    let want = v.entry.hash.ok_or_else(|| {
        Error::remote(format!("{} version {} has no content hash", v.path, v.seq))
    })?;
    let tmp = work.join(format!("download-{}-{}", v.seq, crate::now_ns()));
    let result = async {
        let mut f = fs::File::create(&tmp).map_err(Error::io("creating temporary file", &tmp))?;
        let mut hasher = blake3::Hasher::new();
        let mut bytes = 0u64;
        let mut write = |data: &[u8]| -> Result<()> {
            hasher.update(data);
            f.write_all(data).map_err(Error::io("writing", &tmp))?;
            bytes += data.len() as u64;
            progress.event(ProgressEvent::Transferred {
                bytes: data.len() as u64,
            });
            Ok(())
        };
        if v.entry.size <= WHOLE_FILE_LIMIT {
            // One request instead of a chunk list plus a request per chunk.
            write(&remote.content(&v.path, v.seq).await?)?;
        } else {
            for c in &remote.chunk_list(&v.path, v.seq).await? {
                let data = remote.chunk(&c.id).await?;
                if cairn_model::ChunkId::of(&data) != c.id {
                    return Err(Error::remote(format!(
                        "chunk {} of {} arrived corrupt",
                        c.id, v.path
                    )));
                }
                write(&data)?;
            }
        }
        if ContentHash::from_bytes(*hasher.finalize().as_bytes()) != want {
            return Err(Error::remote(format!(
                "{} version {} does not match its content hash",
                v.path, v.seq
            )));
        }
        f.set_permissions(fs::Permissions::from_mode(v.entry.mode & 0o7777))
            .map_err(Error::io("setting mode", &tmp))?;
        let mtime = UNIX_EPOCH + Duration::from_nanos(v.entry.mtime_ns.max(0) as u64);
        f.set_modified(mtime)
            .map_err(Error::io("setting mtime", &tmp))?;
        // A caller placing many files passes `durable = false` and syncs the file system
        // once before renaming any of them into place.
        if durable {
            f.sync_all().map_err(Error::io("syncing", &tmp))?;
        }
        Ok(bytes)
    }
    .await;
    match result {
        Ok(bytes) => Ok((tmp, bytes)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

async fn restore_file(
    remote: &dyn Remote,
    v: &VersionInfo,
    dest: &Path,
    work: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<FileOutcome> {
    let want = v.entry.hash.ok_or_else(|| {
        Error::remote(format!("{} version {} has no content hash", v.path, v.seq))
    })?;
    let (same, kept) = clear_target(dest, Some(&want), opts)?;
    if same {
        return Ok(FileOutcome::Unchanged);
    }
    let (tmp, bytes) = fetch_verified(remote, v, work, progress, true).await?;
    let placed = (|| {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(Error::io("creating folder", parent))?;
        }
        fs::rename(&tmp, dest).map_err(Error::io("moving the restored file into place", dest))
    })();
    if placed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    placed?;
    progress.event(ProgressEvent::Restored {
        path: v.path.clone(),
        size: bytes,
    });
    Ok(FileOutcome::Written { bytes, kept })
}
