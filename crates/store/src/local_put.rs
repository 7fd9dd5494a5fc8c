//! Writing an object of the local-disk store: a temporary in the store's `.tmp` folder,
//! written from the caller's bytes and renamed into place, so a partial object is never
//! visible under its key.
//!
//! Not through OpenDAL's `fs` writer: it copies every write into tokio's file buffer, and
//! looks for the target, makes its folders and stats the file again around each object (about
//! ten system calls an object; a backup of 1 GiB writes about 1,700 chunk objects).
//!
//! OpenDAL also synced each object on close: a journal commit per object. The store's `sync`
//! (one `syncfs` per batch) makes the batch durable on ext4, XFS and the like, so objects are
//! synced one by one only where `syncfs` does not reach the disk: through FUSE (the power-loss
//! rig's disk, sshfs, mergerfs), whose daemon is never told of it. Without that, the rig found
//! acknowledged chunks empty after a power loss.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// Tells the temporaries of one process apart (the pid tells processes apart).
static NEXT_TEMPORARY: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `root/rel` through a temporary in `root/.tmp`, making `rel`'s folders
/// when they are missing, and syncing the data first when `sync_each`. On failure nothing is
/// left under either name.
pub(crate) fn put(root: &Path, rel: &str, data: &Bytes, sync_each: bool) -> std::io::Result<()> {
    let target = root.join(rel);
    let n = NEXT_TEMPORARY.fetch_add(1, Ordering::Relaxed);
    let temporary = root
        .join(".tmp")
        .join(format!("{}-{n}.part", std::process::id()));
    let written =
        write_new(&temporary, data, sync_each).and_then(|()| rename_into(&temporary, &target));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

fn write_new(path: &PathBuf, data: &[u8], sync: bool) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(data)?;
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// Whether one `syncfs` of the file system holding `root` makes its files durable: not on
/// FUSE, whose daemon never hears of it (`local_root::syncfs_is_durable` in the engine asks the
/// same of a working folder).
pub(crate) fn syncfs_is_durable(root: &Path) -> bool {
    const FUSE_MAGIC: i64 = 0x6573_5546;
    // `f_type` is an i32 on some architectures.
    #[allow(clippy::useless_conversion)]
    rustix::fs::statfs(root).is_ok_and(|st| i64::from(st.f_type) != FUSE_MAGIC)
}

/// Renames, making the target's folders first when the rename says they are missing (once
/// per folder of the store: chunk folders are made as their first object arrives).
fn rename_into(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(from, to)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_lands_whole_with_its_folders_and_no_temporary_stays() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join(".tmp")).expect(".tmp");
        let data = Bytes::from(vec![7u8; 300_000]);
        put(dir.path(), "chunks/ab/cd/abcd", &data, true).expect("put");
        assert_eq!(
            std::fs::read(dir.path().join("chunks/ab/cd/abcd")).expect("read"),
            data
        );
        // Replacing an object is one rename over it.
        put(
            dir.path(),
            "chunks/ab/cd/abcd",
            &Bytes::from_static(b"new"),
            false,
        )
        .expect("put again");
        assert_eq!(
            std::fs::read(dir.path().join("chunks/ab/cd/abcd")).expect("read"),
            b"new"
        );
        let left = std::fs::read_dir(dir.path().join(".tmp"))
            .expect("list")
            .count();
        assert_eq!(left, 0, "temporaries left behind");
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join(".tmp")).expect(".tmp");
        // A file where a folder of the key must go: the rename cannot succeed.
        std::fs::write(dir.path().join("chunks"), b"in the way").expect("blocker");
        let e = put(
            dir.path(),
            "chunks/ab/x",
            &Bytes::from_static(b"data"),
            false,
        )
        .expect_err("no folder can be made");
        assert_ne!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        let left = std::fs::read_dir(dir.path().join(".tmp"))
            .expect("list")
            .count();
        assert_eq!(left, 0, "temporaries left behind");
    }
}
