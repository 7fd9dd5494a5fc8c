//! The two-way planner of drive tasks: per path, base (what both sides agreed on last time),
//! local and remote state give one action. Pure: no I/O, no clock.
//!
//! Conflicts are detected by the remote's sequence numbers, never by clocks (DESIGN.md
//! invariant 7): the remote changed when its head is not the base's version. mtime only picks
//! the winner under `keep-latest`, and the loser always survives, as a historic version on the
//! server or as a local conflict copy. A deletion meets an edit: the edit survives.

use std::collections::{BTreeMap, BTreeSet};

use cairn_model::{ContentHash, Entry, EntryKind, RelPath, Seq};

use crate::index::IndexRow;
use crate::remote::RemoteEntry;
use crate::scanner::LocalEntry;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    TwoWay,
    DownloadOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    KeepLatest,
    KeepServer,
}

/// A local path as the planner sees it: its entry and, for files, its content hash.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalState {
    pub entry: LocalEntry,
    pub hash: Option<ContentHash>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send the local state (file content, folder or link) with this base.
    Upload { path: RelPath, base: Option<Seq> },
    /// Mark the remote path deleted.
    DeleteRemote { path: RelPath, base: Seq },
    /// Write the remote state locally; `expect` is the local state that may be replaced.
    Download {
        path: RelPath,
        remote: RemoteEntry,
        expect: Option<LocalEntry>,
    },
    /// Move the local file aside as a conflict copy, then download the remote state.
    KeepLocalCopyThenDownload {
        path: RelPath,
        remote: RemoteEntry,
        expect: LocalEntry,
    },
    /// Save the local loser as a version on the server, then make the remote state the head
    /// again and download it: the local edit survives in history.
    SaveLocalThenDownload {
        path: RelPath,
        remote: RemoteEntry,
        expect: LocalEntry,
    },
    /// Remove the local path (it has not changed since the base).
    DeleteLocal { path: RelPath, expect: LocalEntry },
    /// A file moved here: tell the server `to` takes `from`'s content (no content is sent).
    MoveRemote {
        from: RelPath,
        from_base: Seq,
        to: RelPath,
        to_base: Option<Seq>,
    },
    /// A file moved on the server: rename it here instead of downloading it again.
    MoveLocal {
        from: RelPath,
        expect: LocalEntry,
        to: RelPath,
        remote: RemoteEntry,
    },
    /// Both sides already agree: record the base.
    Adopt {
        path: RelPath,
        seq: Seq,
        hash: Option<ContentHash>,
    },
    /// Both sides deleted it: drop the base.
    Forget { path: RelPath },
}

pub struct SyncInputs<'a> {
    pub base: &'a BTreeMap<RelPath, IndexRow>,
    pub local: &'a BTreeMap<RelPath, LocalState>,
    pub remote: &'a BTreeMap<RelPath, RemoteEntry>,
    pub direction: Direction,
    pub policy: ConflictPolicy,
    pub keep_conflict_copy: bool,
    /// Sub-folders the scanner could not read: nothing under them is deleted anywhere.
    pub incomplete: &'a [RelPath],
    /// Paths a rule leaves out locally: they are neither uploaded nor deleted.
    pub excluded: &'a BTreeSet<RelPath>,
}

#[derive(Debug, Default, PartialEq)]
pub struct SyncPlan {
    pub actions: Vec<Action>,
    pub uploads: u64,
    pub downloads: u64,
    pub local_deletes: u64,
    pub remote_deletes: u64,
    pub conflicts: u64,
    pub moves: u64,
}

fn local_entry(l: &LocalState) -> Entry {
    let mut e = crate::plan::entry_of(&l.entry);
    if l.entry.kind == EntryKind::File {
        e.hash = l.hash;
    }
    e
}

/// Did the local side change since the base?
fn local_changed(base: Option<&IndexRow>, local: Option<&LocalState>) -> bool {
    match (base, local) {
        (None, None) => false,
        (Some(_), None) | (None, Some(_)) => true,
        (Some(b), Some(l)) => {
            if b.kind != l.entry.kind {
                return true;
            }
            match b.kind {
                EntryKind::File => b.hash != l.hash || b.mode != l.entry.mode,
                EntryKind::Symlink => {
                    l.entry
                        .target
                        .as_ref()
                        .map(|t| ContentHash::of(t.as_bytes()))
                        != b.hash
                }
                EntryKind::Dir => false,
                EntryKind::Deleted => true,
            }
        }
    }
}

fn remote_changed(base: Option<&IndexRow>, remote: Option<&RemoteEntry>) -> bool {
    match (base, remote) {
        (None, None) => false,
        (Some(_), None) | (None, Some(_)) => true,
        (Some(b), Some(r)) => b.seq != r.seq,
    }
}

/// Local and remote hold the same thing (so nothing needs to move).
fn same(local: &LocalState, remote: &RemoteEntry) -> bool {
    let l = local_entry(local);
    match l.kind {
        // Folders agree whatever their modes: a mode change alone is not worth a conflict.
        EntryKind::Dir => remote.entry.kind == EntryKind::Dir,
        EntryKind::File => {
            remote.entry.kind == EntryKind::File
                && remote.entry.hash == l.hash
                && remote.entry.mode == l.mode
        }
        _ => remote.entry.same_content(&l),
    }
}

pub fn plan_sync(i: &SyncInputs<'_>) -> SyncPlan {
    let mut plan = SyncPlan::default();
    let paths: BTreeSet<&RelPath> = i
        .base
        .keys()
        .chain(i.local.keys())
        .chain(i.remote.keys())
        .collect();
    let protected = |p: &RelPath| {
        i.incomplete.iter().any(|d| p.starts_with(d)) || i.excluded.iter().any(|x| p.starts_with(x))
    };
    let two_way = i.direction == Direction::TwoWay;
    for path in paths {
        let base = i.base.get(path);
        let local = i.local.get(path);
        let remote = i.remote.get(path).filter(|r| r.entry.is_live());
        if protected(path) {
            continue;
        }
        let lc = local_changed(base, local);
        let rc = remote_changed(base, remote);
        let p = path.clone();
        let action = match (lc, rc) {
            (false, false) => None,
            (true, false) if !two_way => None,
            (true, false) => Some(match (local, base) {
                (Some(_), _) => Action::Upload {
                    path: p,
                    base: remote.map(|r| r.seq),
                },
                (None, Some(_)) => match remote {
                    Some(r) => Action::DeleteRemote {
                        path: p,
                        base: r.seq,
                    },
                    None => Action::Forget { path: p },
                },
                (None, None) => continue,
            }),
            (false, true) => Some(match (remote, local) {
                (Some(r), l) => Action::Download {
                    path: p,
                    remote: r.clone(),
                    expect: l.map(|l| l.entry.clone()),
                },
                (None, Some(l)) => Action::DeleteLocal {
                    path: p,
                    expect: l.entry.clone(),
                },
                (None, None) => Action::Forget { path: p },
            }),
            (true, true) => {
                let a = both_changed(i, p, local, remote);
                // The local edit won over a different server edit: still a conflict (the
                // server's version stays in history), whatever the clocks made of it.
                if matches!(a, Action::Upload { base: Some(_), .. })
                    && local.is_some()
                    && remote.is_some()
                {
                    plan.conflicts += 1;
                }
                Some(a)
            }
        };
        if let Some(a) = action {
            match &a {
                Action::Upload { .. } => plan.uploads += 1,
                Action::DeleteRemote { .. } => plan.remote_deletes += 1,
                Action::Download { .. } => plan.downloads += 1,
                Action::KeepLocalCopyThenDownload { .. } | Action::SaveLocalThenDownload { .. } => {
                    plan.conflicts += 1;
                    plan.downloads += 1;
                }
                Action::DeleteLocal { .. } => plan.local_deletes += 1,
                Action::Adopt { .. } | Action::Forget { .. } => {}
                Action::MoveRemote { .. } | Action::MoveLocal { .. } => plan.moves += 1,
            }
            plan.actions.push(a);
        }
    }
    pair_moves(i, &mut plan);
    plan
}

/// Turns a file deleted on one side plus the same content new on that side into a move:
/// matched by inode, size and mtime first (a rename here), then by content hash.
fn pair_moves(i: &SyncInputs<'_>, plan: &mut SyncPlan) {
    use std::collections::HashMap;
    // Here: DeleteRemote{from} + Upload{to} of a new local file with the same content.
    let mut gone_here: HashMap<ContentHash, Vec<(RelPath, Seq, u64)>> = HashMap::new();
    for a in &plan.actions {
        if let Action::DeleteRemote { path, base } = a {
            if let Some(b) = i.base.get(path).filter(|b| b.kind == EntryKind::File) {
                if let Some(h) = b.hash {
                    gone_here
                        .entry(h)
                        .or_default()
                        .push((path.clone(), *base, b.inode));
                }
            }
        }
    }
    // There: DeleteLocal{from} (unchanged here) + Download{to} of the same content.
    let mut gone_there: HashMap<ContentHash, Vec<(RelPath, LocalEntry)>> = HashMap::new();
    for a in &plan.actions {
        if let Action::DeleteLocal { path, expect } = a {
            if let Some(h) = i
                .base
                .get(path)
                .filter(|b| b.kind == EntryKind::File && expect.kind == EntryKind::File)
                .and_then(|b| b.hash)
            {
                gone_there
                    .entry(h)
                    .or_default()
                    .push((path.clone(), expect.clone()));
            }
        }
    }
    if gone_here.is_empty() && gone_there.is_empty() {
        return;
    }
    let mut consumed: BTreeSet<RelPath> = BTreeSet::new();
    let mut moves = Vec::new();
    for a in &plan.actions {
        match a {
            Action::Upload { path, base } if !i.base.contains_key(path) => {
                let Some(l) = i
                    .local
                    .get(path)
                    .filter(|l| l.entry.kind == EntryKind::File)
                else {
                    continue;
                };
                let Some(cands) = l.hash.and_then(|h| gone_here.get_mut(&h)) else {
                    continue;
                };
                // Prefer the source with the same inode: that is the file that was renamed.
                let pick = cands
                    .iter()
                    .position(|c| c.2 == l.entry.inode)
                    .or((!cands.is_empty()).then_some(0));
                if let Some(k) = pick {
                    let (from, from_base, _) = cands.remove(k);
                    consumed.insert(from.clone());
                    consumed.insert(path.clone());
                    moves.push(Action::MoveRemote {
                        from,
                        from_base,
                        to: path.clone(),
                        to_base: *base,
                    });
                }
            }
            Action::Download {
                path,
                remote,
                expect: None,
            } if remote.entry.kind == EntryKind::File => {
                let Some(cands) = remote.entry.hash.and_then(|h| gone_there.get_mut(&h)) else {
                    continue;
                };
                if let Some((from, expect)) = cands.pop() {
                    consumed.insert(from.clone());
                    consumed.insert(path.clone());
                    moves.push(Action::MoveLocal {
                        from,
                        expect,
                        to: path.clone(),
                        remote: remote.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    let before = plan.actions.len();
    plan.actions.retain(|a| match a {
        Action::Upload { path, .. } | Action::Download { path, .. } => !consumed.contains(path),
        Action::DeleteRemote { path, .. } | Action::DeleteLocal { path, .. } => {
            !consumed.contains(path)
        }
        _ => true,
    });
    let removed = (before - plan.actions.len()) as u64;
    let pairs = moves.len() as u64;
    debug_assert_eq!(removed, pairs * 2);
    for m in &moves {
        match m {
            Action::MoveRemote { .. } => {
                plan.uploads -= 1;
                plan.remote_deletes -= 1;
            }
            _ => {
                plan.downloads -= 1;
                plan.local_deletes -= 1;
            }
        }
    }
    plan.moves += pairs;
    plan.actions.extend(moves);
}

impl Action {
    pub fn path(&self) -> &RelPath {
        match self {
            Action::Upload { path, .. }
            | Action::DeleteRemote { path, .. }
            | Action::Download { path, .. }
            | Action::KeepLocalCopyThenDownload { path, .. }
            | Action::SaveLocalThenDownload { path, .. }
            | Action::DeleteLocal { path, .. }
            | Action::Adopt { path, .. }
            | Action::Forget { path } => path,
            Action::MoveRemote { to, .. } | Action::MoveLocal { to, .. } => to,
        }
    }
}

/// Both sides changed since the base.
fn both_changed(
    i: &SyncInputs<'_>,
    path: RelPath,
    local: Option<&LocalState>,
    remote: Option<&RemoteEntry>,
) -> Action {
    match (local, remote) {
        (None, None) => Action::Forget { path },
        // Edit against delete: the edit survives.
        (Some(_), None) if i.direction == Direction::TwoWay => Action::Upload { path, base: None },
        (Some(_), None) => Action::Forget { path },
        (None, Some(r)) => Action::Download {
            path,
            remote: r.clone(),
            expect: None,
        },
        (Some(l), Some(r)) if same(l, r) => Action::Adopt {
            path,
            seq: r.seq,
            hash: r.entry.hash,
        },
        (Some(l), Some(r)) => {
            // Folders never conflict: their children do.
            if l.entry.kind == EntryKind::Dir && r.entry.kind == EntryKind::Dir {
                return Action::Adopt {
                    path,
                    seq: r.seq,
                    hash: None,
                };
            }
            let local_wins = i.direction == Direction::TwoWay
                && i.policy == ConflictPolicy::KeepLatest
                && l.entry.mtime_ns > r.entry.mtime_ns;
            if local_wins {
                // The remote version stays in history; ours becomes the head.
                return Action::Upload {
                    path,
                    base: Some(r.seq),
                };
            }
            let expect = l.entry.clone();
            let remote = r.clone();
            // A loser that is a folder, or download-only, or asked for: a local conflict copy.
            if i.direction == Direction::DownloadOnly
                || i.keep_conflict_copy
                || l.entry.kind == EntryKind::Dir
            {
                Action::KeepLocalCopyThenDownload {
                    path,
                    remote,
                    expect,
                }
            } else {
                Action::SaveLocalThenDownload {
                    path,
                    remote,
                    expect,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).expect("valid test path")
    }

    fn local(path: &str, data: &[u8], mtime: i64) -> LocalState {
        LocalState {
            entry: LocalEntry {
                path: p(path),
                kind: EntryKind::File,
                size: data.len() as u64,
                mtime_ns: mtime,
                ctime_ns: mtime,
                inode: 1,
                mode: 0o644,
                target: None,
            },
            hash: Some(ContentHash::of(data)),
        }
    }

    fn remote(seq: i64, data: &[u8], mtime: i64) -> RemoteEntry {
        RemoteEntry {
            seq: Seq(seq),
            entry: Entry {
                kind: EntryKind::File,
                size: data.len() as u64,
                mtime_ns: mtime,
                mode: 0o644,
                hash: Some(ContentHash::of(data)),
                target: None,
            },
        }
    }

    fn base(path: &str, data: &[u8], seq: i64) -> IndexRow {
        let l = local(path, data, 1);
        crate::plan::index_row(&l.entry, l.hash, Seq(seq))
    }

    struct Case {
        base: BTreeMap<RelPath, IndexRow>,
        local: BTreeMap<RelPath, LocalState>,
        remote: BTreeMap<RelPath, RemoteEntry>,
    }

    impl Case {
        fn plan(&self, direction: Direction, policy: ConflictPolicy, copy: bool) -> Vec<Action> {
            plan_sync(&SyncInputs {
                base: &self.base,
                local: &self.local,
                remote: &self.remote,
                direction,
                policy,
                keep_conflict_copy: copy,
                incomplete: &[],
                excluded: &BTreeSet::new(),
            })
            .actions
        }
    }

    fn case(b: Option<IndexRow>, l: Option<LocalState>, r: Option<RemoteEntry>) -> Case {
        let key = p("f");
        Case {
            base: b.into_iter().map(|b| (key.clone(), b)).collect(),
            local: l.into_iter().map(|l| (key.clone(), l)).collect(),
            remote: r.into_iter().map(|r| (key.clone(), r)).collect(),
        }
    }

    const TW: Direction = Direction::TwoWay;
    const KL: ConflictPolicy = ConflictPolicy::KeepLatest;

    #[test]
    fn one_sided_changes_flow_to_the_other_side() {
        let c = case(
            Some(base("f", b"a", 1)),
            Some(local("f", b"b", 5)),
            Some(remote(1, b"a", 1)),
        );
        assert_eq!(
            c.plan(TW, KL, false),
            vec![Action::Upload {
                path: p("f"),
                base: Some(Seq(1))
            }]
        );
        assert!(
            c.plan(Direction::DownloadOnly, KL, false).is_empty(),
            "download-only never uploads"
        );
        let c = case(
            Some(base("f", b"a", 1)),
            Some(local("f", b"a", 1)),
            Some(remote(2, b"b", 5)),
        );
        assert!(matches!(
            c.plan(TW, KL, false)[..],
            [Action::Download { .. }]
        ));
        let c = case(Some(base("f", b"a", 1)), Some(local("f", b"a", 1)), None);
        assert!(matches!(
            c.plan(TW, KL, false)[..],
            [Action::DeleteLocal { .. }]
        ));
        let c = case(Some(base("f", b"a", 1)), None, Some(remote(1, b"a", 1)));
        assert_eq!(
            c.plan(TW, KL, false),
            vec![Action::DeleteRemote {
                path: p("f"),
                base: Seq(1)
            }]
        );
    }

    #[test]
    fn edit_beats_delete_on_either_side() {
        let c = case(
            Some(base("f", b"a", 1)),
            Some(local("f", b"edited", 5)),
            None,
        );
        assert_eq!(
            c.plan(TW, KL, false),
            vec![Action::Upload {
                path: p("f"),
                base: None
            }]
        );
        let c = case(
            Some(base("f", b"a", 1)),
            None,
            Some(remote(2, b"edited", 5)),
        );
        assert!(matches!(
            c.plan(TW, KL, false)[..],
            [Action::Download { .. }]
        ));
    }

    #[test]
    fn edit_edit_picks_by_mtime_and_keeps_the_loser() {
        let newer_local = case(
            Some(base("f", b"a", 1)),
            Some(local("f", b"mine", 9)),
            Some(remote(2, b"theirs", 5)),
        );
        assert_eq!(
            newer_local.plan(TW, KL, false),
            vec![Action::Upload {
                path: p("f"),
                base: Some(Seq(2))
            }]
        );
        assert!(matches!(
            newer_local.plan(TW, ConflictPolicy::KeepServer, false)[..],
            [Action::SaveLocalThenDownload { .. }]
        ));
        assert!(matches!(
            newer_local.plan(TW, ConflictPolicy::KeepServer, true)[..],
            [Action::KeepLocalCopyThenDownload { .. }]
        ));
        assert!(matches!(
            newer_local.plan(Direction::DownloadOnly, KL, false)[..],
            [Action::KeepLocalCopyThenDownload { .. }]
        ));
        let same_both = case(
            Some(base("f", b"a", 1)),
            Some(local("f", b"z", 9)),
            Some(remote(2, b"z", 5)),
        );
        assert!(matches!(
            same_both.plan(TW, KL, false)[..],
            [Action::Adopt { .. }]
        ));
        let deleted_both = case(Some(base("f", b"a", 1)), None, None);
        assert_eq!(
            deleted_both.plan(TW, KL, false),
            vec![Action::Forget { path: p("f") }]
        );
    }

    #[test]
    fn a_rename_is_a_move_on_either_side() {
        let old = local("old", b"content", 1);
        let mut renamed = local("new", b"content", 1);
        renamed.entry.path = p("new");
        let b = crate::plan::index_row(&old.entry, old.hash, Seq(4));
        let base = BTreeMap::from([(p("old"), b)]);
        let here = SyncInputs {
            base: &base,
            local: &BTreeMap::from([(p("new"), renamed.clone())]),
            remote: &BTreeMap::from([(p("old"), remote(4, b"content", 1))]),
            direction: TW,
            policy: KL,
            keep_conflict_copy: false,
            incomplete: &[],
            excluded: &BTreeSet::new(),
        };
        let plan = plan_sync(&here);
        assert_eq!(
            plan.actions,
            vec![Action::MoveRemote {
                from: p("old"),
                from_base: Seq(4),
                to: p("new"),
                to_base: None
            }]
        );
        let there_local = BTreeMap::from([(p("old"), old.clone())]);
        let there_remote = BTreeMap::from([(p("new"), remote(6, b"content", 1))]);
        let plan = plan_sync(&SyncInputs {
            local: &there_local,
            remote: &there_remote,
            ..here
        });
        assert!(
            matches!(&plan.actions[..], [Action::MoveLocal { from, to, .. }] if from == &p("old") && to == &p("new"))
        );
    }

    #[test]
    fn planning_twice_after_applying_is_quiet() {
        // After an Adopt the base equals both sides: nothing more to do.
        let l = local("f", b"z", 9);
        let b = crate::plan::index_row(&l.entry, l.hash, Seq(2));
        let c = case(Some(b), Some(l), Some(remote(2, b"z", 5)));
        assert!(c.plan(TW, KL, false).is_empty());
    }
}
