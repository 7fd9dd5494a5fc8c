//! `cairn cloud db rebuild TASK`: rebuilds a cloud task's local index (seed 003's "cloud
//! database": what both sides agreed on, with the hashes and times a cloud cannot keep) from a
//! listing of both sides, reading only local files.
//!
//! A path gets an index row only when both sides are shown to hold the same thing: a folder on
//! both sides, or files of one size whose S3 ETag is the local file's MD5 (or multipart ETag),
//! or, where the ETag cannot tell (encrypted tasks, other services), whose modification time
//! kept beside the object equals the local one. Everything else is left without a row, which
//! deletes nothing: the next run treats such a path as new on both sides, so files that differ
//! become conflicts (the local file stays, the remote's is kept) and never overwrite each other.

use anyhow::{Context, Result};
use cairn_cloud::rebuild::Digests;
use cairn_engine::index::{IndexRow, LocalIndex};
use cairn_engine::replica::{LocalReplica, Replica, ReplicaEntry};
use cairn_model::{ContentHash, EntryKind, RelPath};
use clap::Subcommand;

use crate::config::Home;

#[derive(Subcommand)]
pub enum DbCmd {
    /// Rebuild a cloud task's local index from a listing of both sides (after it was lost or
    /// damaged); nothing is transferred and nothing on either side is changed.
    Rebuild { task: String },
}

pub async fn run(cmd: DbCmd) -> Result<()> {
    match cmd {
        DbCmd::Rebuild { task } => rebuild(&task).await,
    }
}

/// How one path compared.
enum Compared {
    /// The same: the content's hash (files), and whether the ETag or the time showed it.
    Same(Option<ContentHash>, How),
    Differ,
    /// Cannot tell without reading the remote's content (the next run reads it).
    Unknown,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    Folder,
    Etag,
    Time,
}

#[derive(Default)]
struct Counts {
    by_etag: u64,
    by_time: u64,
    folders: u64,
    differ: u64,
    unknown: u64,
    only_here: u64,
    only_there: u64,
}

async fn rebuild(name: &str) -> Result<()> {
    let home = Home::locate()?;
    let config = home.load()?;
    let task = config
        .tasks
        .get(name)
        .filter(|t| t.kind == "cloud")
        .with_context(|| format!("no cloud task named {name}"))?
        .clone();
    let remote = crate::cloud_cmd::task_replica(&home, &config, name, &task, false).await?;
    let cloud = task.cloud.as_ref();
    // An encrypted object's ETag is of its ciphertext: only times can tell.
    let etags_tell = !cloud.is_some_and(|c| c.encrypt);
    let part_size = (cloud.map_or(8, |c| c.part_size_mb) as usize) << 20;
    let root = task
        .locals
        .first()
        .with_context(|| format!("task {name} has no local folder"))?;
    let local = LocalReplica::open(root, task.filter.clone())?;
    let here = local
        .list()
        .await
        .with_context(|| format!("listing {}", root.display()))?;
    let there = remote
        .list()
        .await
        .with_context(|| format!("listing {}", remote.describe()))?;
    let mut rows = Vec::new();
    let mut counts = Counts::default();
    for (path, l) in &here.entries {
        let Some(r) = there.entries.get(path) else {
            counts.only_here += 1;
            continue;
        };
        let file = root.join(path.as_str());
        let compared = compare(remote.as_ref(), path, l, r, &file, part_size, etags_tell).await;
        match compared {
            Compared::Same(hash, how) => {
                match how {
                    How::Folder => counts.folders += 1,
                    How::Etag => counts.by_etag += 1,
                    How::Time => counts.by_time += 1,
                }
                rows.push(IndexRow {
                    path: path.clone(),
                    kind: l.kind,
                    size: l.size,
                    mtime_ns: l.mtime_ns,
                    mode: l.mode,
                    hash,
                    left: l.version.clone(),
                    right: r.version.clone(),
                });
            }
            Compared::Differ => counts.differ += 1,
            Compared::Unknown => counts.unknown += 1,
        }
    }
    counts.only_there = there
        .entries
        .keys()
        .filter(|p| !here.entries.contains_key(*p))
        .count() as u64;
    let mut index = LocalIndex::open(&home.index_path())?;
    index.forget_task(name)?;
    index.apply(name, 0, &rows, &[])?;
    report(name, &counts);
    Ok(())
}

async fn compare(
    remote: &dyn Replica,
    path: &RelPath,
    l: &ReplicaEntry,
    r: &ReplicaEntry,
    file: &std::path::Path,
    part_size: usize,
    etags_tell: bool,
) -> Compared {
    match (l.kind, r.kind) {
        (EntryKind::Dir, EntryKind::Dir) => return Compared::Same(None, How::Folder),
        (EntryKind::File, EntryKind::File) if l.size == r.size => {}
        _ => return Compared::Differ,
    }
    let path_buf = file.to_path_buf();
    let digests = tokio::task::spawn_blocking(move || Digests::of_file(&path_buf, part_size))
        .await
        .ok()
        .and_then(|d| d.ok());
    // Unreadable here: left for the next run, which reports it.
    let Some(d) = digests.filter(|d| d.size == l.size) else {
        return Compared::Unknown;
    };
    if etags_tell {
        match d.matches(&r.version) {
            Some(true) => return Compared::Same(Some(d.hash), How::Etag),
            Some(false) => return Compared::Differ,
            None => {}
        }
    }
    // The modification time kept beside the object (read back by a stat), where there is one.
    match remote.stat(path).await {
        Ok(Some(now)) if now.version == r.version && now.mtime_ns == l.mtime_ns => {
            Compared::Same(Some(d.hash), How::Time)
        }
        _ => Compared::Unknown,
    }
}

fn report(name: &str, c: &Counts) {
    println!(
        "rebuilt the index of {name}: {} files the same on both sides ({} by hash, {} by size and time), {} folders",
        c.by_etag + c.by_time,
        c.by_etag,
        c.by_time,
        c.folders
    );
    if c.differ > 0 {
        println!(
            "{} files differ: the next run keeps both (the local file stays, the remote's is kept as a version or a conflict copy)",
            c.differ
        );
    }
    if c.unknown > 0 {
        println!(
            "{} files could not be compared without reading them: the next run reads them to compare",
            c.unknown
        );
    }
    if c.only_here + c.only_there > 0 {
        println!(
            "{} only here and {} only on the cloud: the next run copies them across (nothing is deleted)",
            c.only_here, c.only_there
        );
    }
}
