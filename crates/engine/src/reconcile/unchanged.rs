//! Paths unchanged on both sides since the base are the bulk of every re-run, and the planner
//! has nothing to say about them. They are left out before planning, as the index's rows
//! stream past: the base is then only the rows of changed paths, and the two listings lose
//! their unchanged entries, so the pass never holds the whole index beside them.

use std::collections::BTreeMap;

use cairn_model::{ContentHash, EntryKind, RelPath};

use crate::index::IndexRow;
use crate::replica::ReplicaEntry;
use crate::sift::{here_entry, there_entry, Fingerprints, HERE, THERE};

/// Sorts the base's rows as they come: a row unchanged on both sides takes its two entries
/// out of `local` and `remote` and is counted; every other row is kept as the base. Entries
/// the listings left out already ([`crate::sift`]) count by their marks; a row kept for a
/// change on one side gets the other side's left-out entry back.
pub struct Sieve<'a> {
    local: &'a mut BTreeMap<RelPath, ReplicaEntry>,
    remote: &'a mut BTreeMap<RelPath, ReplicaEntry>,
    prints: Option<&'a Fingerprints>,
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
            prints: None,
            kept: Vec::new(),
            unchanged: 0,
        }
    }

    /// Reads the marks the sifted listings left in `prints`.
    pub fn with_prints(mut self, prints: Option<&'a Fingerprints>) -> Self {
        self.prints = prints;
        self
    }

    /// Takes one row of the base.
    pub fn row(&mut self, row: IndexRow) {
        let marks = self.prints.map_or(0, |p| p.marks(row.path.as_str()));
        // A side without an entry was left out by its listing if it is marked.
        let (l, r) = (self.local.get(&row.path), self.remote.get(&row.path));
        let (back_here, back_there) = (
            l.is_none() && marks & HERE != 0,
            r.is_none() && marks & THERE != 0,
        );
        let here = back_here || l.is_some_and(|l| unchanged_here(&row, l));
        let there =
            back_there || r.is_some_and(|r| r.kind != EntryKind::Deleted && r.version == row.right);
        if here && there {
            self.local.remove(&row.path);
            self.remote.remove(&row.path);
            self.unchanged += 1;
            return;
        }
        if back_here {
            self.local.insert(row.path.clone(), here_entry(&row));
        }
        if back_there {
            self.remote.insert(row.path.clone(), there_entry(&row));
        }
        self.kept.push((row.path.clone(), row));
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
