//! Paths unchanged on both sides since the base are the bulk of every re-run, and the planner
//! has nothing to say about them. They are left out before planning, as the index's rows
//! stream past: the base is then only the rows of changed paths, and the two listings lose
//! their unchanged entries, so the pass never holds the whole index beside them.

use std::collections::BTreeMap;

use cairn_model::{ContentHash, EntryKind, RelPath};

use crate::index::IndexRow;
use crate::replica::ReplicaEntry;

/// Sorts the base's rows as they come: a row unchanged on both sides takes its two entries
/// out of `local` and `remote` and is counted; every other row is kept as the base.
pub struct Sieve<'a> {
    local: &'a mut BTreeMap<RelPath, ReplicaEntry>,
    remote: &'a mut BTreeMap<RelPath, ReplicaEntry>,
    kept: Vec<(RelPath, IndexRow)>,
    /// Paths left out as unchanged (in the base, here and there).
    pub unchanged: usize,
}

impl<'a> Sieve<'a> {
    pub fn new(
        local: &'a mut BTreeMap<RelPath, ReplicaEntry>,
        remote: &'a mut BTreeMap<RelPath, ReplicaEntry>,
    ) -> Self {
        Self {
            local,
            remote,
            kept: Vec::new(),
            unchanged: 0,
        }
    }

    /// Takes one row of the base.
    pub fn row(&mut self, row: IndexRow) {
        let same = self
            .local
            .get(&row.path)
            .is_some_and(|l| unchanged_here(&row, l))
            && self
                .remote
                .get(&row.path)
                .is_some_and(|r| r.kind != EntryKind::Deleted && r.version == row.right);
        if same {
            self.local.remove(&row.path);
            self.remote.remove(&row.path);
            self.unchanged += 1;
        } else {
            self.kept.push((row.path.clone(), row));
        }
    }

    /// The base of the changed paths.
    pub fn base(self) -> BTreeMap<RelPath, IndexRow> {
        // Built in bulk: the map's nodes full (see `LocalIndex::load`).
        BTreeMap::from_iter(self.kept)
    }
}

/// Whether the local entry is what the base says, as the planner would judge it: a file by
/// its stat (the base's hash stands for an unchanged stat) and mode, a link by its target.
fn unchanged_here(b: &IndexRow, l: &ReplicaEntry) -> bool {
    if b.kind != l.kind {
        return false;
    }
    match b.kind {
        EntryKind::File => {
            let hash = match l.hash {
                Some(h) => Some(h),
                None if l.version == b.left => b.hash,
                None => return false,
            };
            hash == b.hash && l.mode == b.mode
        }
        EntryKind::Symlink => l.target.as_ref().map(|t| ContentHash::of(t.as_bytes())) == b.hash,
        EntryKind::Dir => true,
        EntryKind::Deleted => false,
    }
}
