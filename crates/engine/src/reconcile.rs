//! The planner of every task: per path, base (what both sides agreed on last time), local and
//! remote state give one action, for any direction (two-way, upload-only for backups,
//! download-only), with or without removing on the destination, under a conflict policy.
//! Pure: no I/O, no clock. The deletion guards are part of its answer ([`Hold`]), so a caller
//! cannot plan deletions without meeting them.
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
    /// Backups: the remote is made to hold what the local folder holds; remote changes by
    /// others are overwritten (the remote keeps them as versions), never downloaded.
    UploadOnly,
    DownloadOnly,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::TwoWay => "two-way",
            Direction::UploadOnly => "upload-only",
            Direction::DownloadOnly => "download-only",
        }
    }
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
    /// "Don't remove on the destination": a deletion on one side is not carried to the other.
    pub keep_deleted: bool,
    pub guards: Guards,
}

/// When a plan with deletions must wait for the user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guards {
    /// The user confirmed: no guard holds the plan.
    pub confirm_deletes: bool,
    /// Hold a plan that deletes more than half of the synced entries (drive tasks; a backup
    /// keeps every deleted file as a version on the server).
    pub half_deletes: bool,
}

/// Why a plan is held instead of run (DESIGN.md invariant 9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The local folder is empty but `synced` entries were synced from it: maybe unmounted.
    EmptiedRoot { synced: usize },
    /// The plan deletes `here` local and `there` remote entries of `synced`.
    ManyDeletes {
        here: u64,
        there: u64,
        synced: usize,
    },
}

/// Below this many synced entries, the half-delete guard does not apply.
pub const GUARD_FLOOR: usize = 10;

#[derive(Debug, Default, PartialEq)]
pub struct SyncPlan {
    pub actions: Vec<Action>,
    /// Set when a guard holds the plan: nothing may run until the user confirms.
    pub hold: Option<Hold>,
    /// Download-only: paths changed here and not sent (they stay as they are).
    pub kept_here: Vec<RelPath>,
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
            (_, true) if i.direction == Direction::UploadOnly => {
                overwrite_remote(p, base, local, remote)
            }
            (true, false) if i.direction == Direction::DownloadOnly => {
                plan.kept_here.push(p);
                None
            }
            (true, false) => match (local, base) {
                (Some(_), _) => Some(Action::Upload {
                    path: p,
                    base: remote.map(|r| r.seq),
                }),
                (None, Some(_)) => match remote {
                    Some(_) if i.keep_deleted => None,
                    Some(r) => Some(Action::DeleteRemote {
                        path: p,
                        base: r.seq,
                    }),
                    None => Some(Action::Forget { path: p }),
                },
                (None, None) => continue,
            },
            (false, true) => match (remote, local) {
                (Some(r), l) => Some(Action::Download {
                    path: p,
                    remote: r.clone(),
                    expect: l.map(|l| l.entry.clone()),
                }),
                (None, Some(_)) if i.keep_deleted => None,
                (None, Some(l)) => Some(Action::DeleteLocal {
                    path: p,
                    expect: l.entry.clone(),
                }),
                (None, None) => Some(Action::Forget { path: p }),
            },
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
    plan.hold = hold(i, &plan);
    plan
}

/// Upload-only, and the remote changed since the base: the local state goes back up (the
/// remote keeps the other as a version); a path gone here is not ours to delete any more.
fn overwrite_remote(
    path: RelPath,
    base: Option<&IndexRow>,
    local: Option<&LocalState>,
    remote: Option<&RemoteEntry>,
) -> Option<Action> {
    match (local, remote) {
        (Some(l), Some(r)) if same(l, r) => Some(Action::Adopt {
            path,
            seq: r.seq,
            hash: r.entry.hash,
        }),
        (Some(_), r) => Some(Action::Upload {
            path,
            base: r.map(|r| r.seq),
        }),
        (None, _) => base.map(|_| Action::Forget { path }),
    }
}

/// The guard that holds `plan`, if any.
fn hold(i: &SyncInputs<'_>, plan: &SyncPlan) -> Option<Hold> {
    if i.guards.confirm_deletes {
        return None;
    }
    let synced = i.base.len();
    // An unmounted folder looks emptied: two-way would delete remotely, download-only would
    // fill the mount point. Only a backup that removes nothing can go on.
    let harmless = i.keep_deleted && i.direction == Direction::UploadOnly;
    if i.local.is_empty() && synced > 0 && !harmless {
        return Some(Hold::EmptiedRoot { synced });
    }
    let (here, there) = (plan.local_deletes, plan.remote_deletes);
    let deletions = (here + there) as usize;
    (i.guards.half_deletes && deletions > 0 && synced >= GUARD_FLOOR && deletions * 2 > synced)
        .then_some(Hold::ManyDeletes {
            here,
            there,
            synced,
        })
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
    /// Every path the action touches (a move touches two).
    pub fn paths(&self) -> impl Iterator<Item = &RelPath> {
        let from = match self {
            Action::MoveRemote { from, .. } | Action::MoveLocal { from, .. } => Some(from),
            _ => None,
        };
        std::iter::once(self.path()).chain(from)
    }

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
        (Some(_), None) if i.direction != Direction::DownloadOnly => {
            Action::Upload { path, base: None }
        }
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
mod properties;

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
        /// The plan's actions; `flag` is keep-conflict-copy for two-way and download-only,
        /// and keep-deleted for upload-only (keep-deleted elsewhere: see its own test).
        fn plan(&self, direction: Direction, policy: ConflictPolicy, flag: bool) -> Vec<Action> {
            let two_sided = direction != Direction::UploadOnly;
            plan_sync(&SyncInputs {
                base: &self.base,
                local: &self.local,
                remote: &self.remote,
                direction,
                policy,
                keep_conflict_copy: flag && two_sided,
                incomplete: &[],
                excluded: &BTreeSet::new(),
                keep_deleted: flag && !two_sided,
                guards: Guards::default(),
            })
            .actions
        }

        /// The plan's actions with "don't remove on the destination".
        fn plan_keeping(&self, direction: Direction) -> Vec<Action> {
            plan_sync(&SyncInputs {
                base: &self.base,
                local: &self.local,
                remote: &self.remote,
                direction,
                policy: KL,
                keep_conflict_copy: false,
                incomplete: &[],
                excluded: &BTreeSet::new(),
                keep_deleted: true,
                guards: Guards::default(),
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
            keep_deleted: false,
            guards: Guards::default(),
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
    fn upload_only_sends_changes_and_deletes_only_what_it_put_there() {
        const UP: Direction = Direction::UploadOnly;
        // A file whose stat changed has no known hash: it is sent (the upload hashes it).
        let mut changed = local("f", b"a", 1);
        changed.hash = None;
        let c = case(
            Some(base("f", b"a", 1)),
            Some(changed),
            Some(remote(1, b"a", 1)),
        );
        assert_eq!(
            c.plan(UP, KL, false),
            vec![Action::Upload {
                path: p("f"),
                base: Some(Seq(1))
            }]
        );
        // Someone else changed the remote copy: ours goes back up, theirs stays as a version.
        let c = case(
            Some(base("f", b"a", 1)),
            Some(local("f", b"a", 1)),
            Some(remote(7, b"theirs", 9)),
        );
        assert_eq!(
            c.plan(UP, KL, false),
            vec![Action::Upload {
                path: p("f"),
                base: Some(Seq(7))
            }]
        );
        // Deleted here: removed there only when the remote still holds what we put there.
        let c = case(Some(base("f", b"a", 1)), None, Some(remote(1, b"a", 1)));
        assert!(matches!(
            c.plan(UP, KL, false)[..],
            [Action::DeleteRemote { .. }]
        ));
        assert!(
            c.plan(UP, KL, true).is_empty(),
            "keep-deleted removes nothing"
        );
        let c = case(Some(base("f", b"a", 1)), None, Some(remote(3, b"b", 1)));
        assert_eq!(c.plan(UP, KL, false), vec![Action::Forget { path: p("f") }]);
        let c = case(None, None, Some(remote(3, b"b", 1)));
        assert!(c.plan(UP, KL, false).is_empty(), "never ours: left alone");
    }

    #[test]
    fn keep_deleted_carries_no_deletion_either_way() {
        let gone_here = case(Some(base("f", b"a", 1)), None, Some(remote(1, b"a", 1)));
        assert!(gone_here.plan_keeping(TW).is_empty());
        let gone_there = case(Some(base("f", b"a", 1)), Some(local("f", b"a", 1)), None);
        assert!(gone_there.plan_keeping(TW).is_empty());
        assert!(gone_there.plan_keeping(Direction::DownloadOnly).is_empty());
        // Without the flag both deletions are carried over.
        assert!(!gone_here.plan(TW, KL, false).is_empty());
        assert!(!gone_there.plan(TW, KL, false).is_empty());
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
