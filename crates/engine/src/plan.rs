//! How local entries become remote entries and index rows (shared by the planner and the
//! executor).

use cairn_model::{ContentHash, Entry, EntryKind, Seq};

use crate::index::IndexRow;
use crate::scanner::LocalEntry;

/// The entry a local folder or link stands for on the remote.
pub fn entry_of(local: &LocalEntry) -> Entry {
    Entry {
        kind: local.kind,
        size: match local.kind {
            EntryKind::Symlink => local.target.as_ref().map_or(0, |t| t.len() as u64),
            _ => local.size,
        },
        mtime_ns: local.mtime_ns,
        mode: local.mode,
        hash: local.target.as_ref().map(|t| ContentHash::of(t.as_bytes())),
        target: local.target.clone(),
    }
}

pub fn index_row(local: &LocalEntry, hash: Option<ContentHash>, seq: Seq) -> IndexRow {
    IndexRow {
        path: local.path.clone(),
        kind: local.kind,
        size: local.size,
        mtime_ns: local.mtime_ns,
        ctime_ns: local.ctime_ns,
        inode: local.inode,
        mode: local.mode,
        hash,
        seq,
    }
}
