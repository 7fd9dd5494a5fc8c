//! The planner: a pure function from (index, local scan, remote listing) to the changes a task
//! must make. No I/O and no clock, so every rule is testable with plain values.
//!
//! Safety rules it enforces (DESIGN.md invariants 3 and 4): nothing under a folder the scanner
//! could not read completely is deleted, and a remote path is deleted only when the index says
//! this task put exactly that version there.

use std::collections::{HashMap, HashSet};

use cairn_model::{ContentHash, Entry, EntryKind, RelPath, Seq};
use cairn_protocol::Change;

use crate::index::IndexRow;
use crate::remote::RemoteEntry;
use crate::scanner::LocalEntry;

#[derive(Debug, Default, PartialEq)]
pub struct BackupPlan {
    /// Files to read and upload, each with the remote head it replaces.
    pub uploads: Vec<(LocalEntry, Option<Seq>)>,
    /// Folders and symbolic links to record (no content to move).
    pub changes: Vec<(LocalEntry, Change)>,
    /// Remote paths to mark deleted.
    pub deletes: Vec<Change>,
    /// Paths already equal on both sides whose index row needs refreshing.
    pub refresh: Vec<IndexRow>,
    pub unchanged: u64,
}

pub struct BackupInputs<'a> {
    pub local: &'a [LocalEntry],
    pub remote: &'a HashMap<RelPath, RemoteEntry>,
    pub index: &'a HashMap<RelPath, IndexRow>,
    pub incomplete: &'a [RelPath],
    pub excluded: &'a HashSet<RelPath>,
    pub keep_deleted: bool,
    pub now_ns: i64,
}

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

pub fn plan_backup(i: &BackupInputs<'_>) -> BackupPlan {
    let mut plan = BackupPlan::default();
    let mut seen = HashSet::with_capacity(i.local.len());
    for l in i.local {
        seen.insert(&l.path);
        let rem = i.remote.get(&l.path);
        let base = rem.map(|r| r.seq);
        match l.kind {
            EntryKind::File => {
                let unchanged = i.index.get(&l.path).is_some_and(|idx| {
                    idx.kind == EntryKind::File
                        && l.same_stat(idx.size, idx.mtime_ns, idx.ctime_ns, idx.inode)
                        && idx.mode == l.mode
                        && rem.is_some_and(|r| {
                            r.seq == idx.seq
                                && r.entry.kind == EntryKind::File
                                && r.entry.hash == idx.hash
                        })
                });
                if unchanged {
                    plan.unchanged += 1;
                } else {
                    plan.uploads.push((l.clone(), base));
                }
            }
            EntryKind::Dir | EntryKind::Symlink => {
                let entry = entry_of(l);
                match rem {
                    Some(r) if r.entry.same_content(&entry) => {
                        plan.unchanged += 1;
                        if i.index.get(&l.path).is_none_or(|idx| {
                            idx.seq != r.seq
                                || !l.same_stat(idx.size, idx.mtime_ns, idx.ctime_ns, idx.inode)
                        }) {
                            plan.refresh.push(index_row(l, entry.hash, r.seq));
                        }
                    }
                    _ => plan.changes.push((
                        l.clone(),
                        Change {
                            path: l.path.clone(),
                            base,
                            entry,
                            chunks: Vec::new(),
                            moved_from: None,
                        },
                    )),
                }
            }
            EntryKind::Deleted => {}
        }
    }
    if i.keep_deleted {
        return plan;
    }
    let mut gone: Vec<(&RelPath, &RemoteEntry)> = i
        .remote
        .iter()
        .filter(|(p, r)| !seen.contains(p) && r.entry.is_live())
        .filter(|(p, _)| !i.incomplete.iter().any(|d| p.starts_with(d)))
        .filter(|(p, _)| !i.excluded.iter().any(|x| p.starts_with(x)))
        .filter(|(p, r)| i.index.get(*p).is_some_and(|idx| idx.seq == r.seq))
        .collect();
    gone.sort_by(|a, b| a.0.cmp(b.0));
    for (path, r) in gone {
        plan.deletes.push(Change {
            path: path.clone(),
            base: Some(r.seq),
            entry: Entry {
                kind: EntryKind::Deleted,
                size: 0,
                mtime_ns: i.now_ns,
                mode: 0,
                hash: None,
                target: None,
            },
            chunks: Vec::new(),
            moved_from: None,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).expect("valid test path")
    }

    fn file(path: &str, size: u64) -> LocalEntry {
        LocalEntry {
            path: p(path),
            kind: EntryKind::File,
            size,
            mtime_ns: 5,
            ctime_ns: 5,
            inode: 9,
            mode: 0o644,
            target: None,
        }
    }

    fn remote_file(seq: i64, hash: ContentHash, size: u64) -> RemoteEntry {
        RemoteEntry {
            seq: Seq(seq),
            entry: Entry {
                kind: EntryKind::File,
                size,
                mtime_ns: 5,
                mode: 0o644,
                hash: Some(hash),
                target: None,
            },
        }
    }

    #[test]
    fn unchanged_file_is_skipped_and_changed_stat_uploads() {
        let h = ContentHash::of(b"x");
        let local = vec![file("a", 1), file("b", 2)];
        let remote = HashMap::from([
            (p("a"), remote_file(3, h, 1)),
            (p("b"), remote_file(4, h, 1)),
        ]);
        let index = HashMap::from([
            (p("a"), index_row(&local[0], Some(h), Seq(3))),
            (p("b"), index_row(&file("b", 1), Some(h), Seq(4))),
        ]);
        let plan = plan_backup(&BackupInputs {
            local: &local,
            remote: &remote,
            index: &index,
            incomplete: &[],
            excluded: &HashSet::new(),
            keep_deleted: false,
            now_ns: 0,
        });
        assert_eq!(plan.unchanged, 1);
        assert_eq!(plan.uploads, vec![(local[1].clone(), Some(Seq(4)))]);
    }

    #[test]
    fn deletes_only_what_the_index_put_there_and_not_under_unreadable_folders() {
        let h = ContentHash::of(b"x");
        let remote = HashMap::from([
            (p("ours"), remote_file(1, h, 1)),
            (p("theirs"), remote_file(2, h, 1)),
            (p("locked/x"), remote_file(3, h, 1)),
            (p("moved-on"), remote_file(9, h, 1)),
        ]);
        let index = HashMap::from([
            (p("ours"), index_row(&file("ours", 1), Some(h), Seq(1))),
            (
                p("locked/x"),
                index_row(&file("locked/x", 1), Some(h), Seq(3)),
            ),
            (
                p("moved-on"),
                index_row(&file("moved-on", 1), Some(h), Seq(4)),
            ),
        ]);
        let mut inputs = BackupInputs {
            local: &[],
            remote: &remote,
            index: &index,
            incomplete: &[p("locked")],
            excluded: &HashSet::new(),
            keep_deleted: false,
            now_ns: 0,
        };
        let plan = plan_backup(&inputs);
        let deleted: Vec<_> = plan
            .deletes
            .iter()
            .map(|c| c.path.as_str().to_string())
            .collect();
        assert_eq!(deleted, vec!["ours"]);
        inputs.keep_deleted = true;
        assert!(plan_backup(&inputs).deletes.is_empty());
    }
}
