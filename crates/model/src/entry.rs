//! `Entry`: what one path is at one moment on one replica (file, folder, symbolic link) or in
//! history (a deletion marker).

use serde::{Deserialize, Serialize};

use crate::ContentHash;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Only in history: the path was deleted at this version.
    Deleted,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "file" => EntryKind::File,
            "dir" => EntryKind::Dir,
            "symlink" => EntryKind::Symlink,
            "deleted" => EntryKind::Deleted,
            _ => return None,
        })
    }
}

/// Metadata of one path. `hash` is set for files (content) and symbolic links (their target);
/// `target` only for symbolic links.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub kind: EntryKind,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Unix permission bits (`0o7777` part only).
    pub mode: u32,
    pub hash: Option<ContentHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Entry {
    pub fn dir(mtime_ns: i64, mode: u32) -> Self {
        Entry {
            kind: EntryKind::Dir,
            size: 0,
            mtime_ns,
            mode: mode & 0o7777,
            hash: None,
            target: None,
        }
    }

    /// True when both describe the same thing as far as history is concerned: kind, content and
    /// permission bits. A different mtime alone is not a new version.
    pub fn same_content(&self, other: &Entry) -> bool {
        if self.kind != other.kind {
            return false;
        }
        match self.kind {
            EntryKind::File => {
                self.size == other.size && self.hash == other.hash && self.mode == other.mode
            }
            EntryKind::Symlink => self.target == other.target,
            EntryKind::Dir => self.mode == other.mode,
            EntryKind::Deleted => true,
        }
    }

    pub fn is_live(&self) -> bool {
        self.kind != EntryKind::Deleted
    }
}
