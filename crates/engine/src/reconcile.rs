//! The planner of every task: per path, base (what both sides agreed on last time), local and
//! remote state give one action, for any direction (two-way, upload-only for backups,
//! download-only), with or without removing on the destination, under a conflict policy.
//! Pure: no I/O, no clock. The deletion guards are part of its answer ([`Hold`]), so a caller
//! cannot plan deletions without meeting them.
//!
//! The two sides are replicas: the left one "here" (a local folder), the right one, the
//! "remote" (a cairn server, later a cloud). Changes are detected by version tokens and
//! content hashes, never by clocks (DESIGN.md invariant 7): the remote changed when its
//! version is not the base's; the local side when its content (hash, mode, link target) is not
//! the base's. mtime only picks
//! the winner under `keep-latest`, and the loser always survives, as a historic version on the
//! server or as a local conflict copy. A deletion meets an edit: the edit survives.

use std::collections::{BTreeMap, BTreeSet};

use cairn_model::{ContentHash, EntryKind, RelPath};

use crate::index::IndexRow;
use crate::replica::{ReplicaEntry, Version};

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
    /// Cloud tasks (seed 002): the local edit always stays; the remote's is kept as a version
    /// where the remote keeps versions, as a conflict copy on the remote otherwise.
    KeepLocal,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send the local state (file content, folder or link) with this base.
    Upload {
        path: RelPath,
        base: Option<Version>,
    },
    /// Remove the remote path (still version `base`).
    DeleteRemote { path: RelPath, base: Version },
    /// Write the remote state locally; `expect` is the local state that may be replaced.
    Download {
        path: RelPath,
        remote: ReplicaEntry,
        expect: Option<ReplicaEntry>,
    },
    /// Move the local file aside as a conflict copy, then download the remote state.
    KeepLocalCopyThenDownload {
        path: RelPath,
        remote: ReplicaEntry,
        expect: ReplicaEntry,
    },
    /// Save the local loser as a version on the server, then make the remote state the head
    /// again and download it: the local edit survives in history.
    SaveLocalThenDownload {
        path: RelPath,
        remote: ReplicaEntry,
        expect: ReplicaEntry,
    },
    /// Move the remote file aside as a conflict copy on the remote, then upload the local state
    /// in its place: the remote's edit survives beside it (and reaches here next pass).
    KeepRemoteCopyThenUpload { path: RelPath, remote: ReplicaEntry },
    /// Remove the local path (it has not changed since the base).
    DeleteLocal { path: RelPath, expect: ReplicaEntry },
    /// A file moved here: tell the server `to` takes `from`'s content (no content is sent).
    MoveRemote {
        from: RelPath,
        from_base: Version,
        to: RelPath,
        to_base: Option<Version>,
    },
    /// A file moved on the server: rename it here instead of downloading it again.
    MoveLocal {
        from: RelPath,
        expect: ReplicaEntry,
        to: RelPath,
        remote: ReplicaEntry,
    },
    /// Both sides already agree: record the base.
    Adopt {
        path: RelPath,
        /// The remote's version.
        remote: Version,
        hash: Option<ContentHash>,
    },
    /// Both sides deleted it: drop the base.
    Forget { path: RelPath },
}

pub struct SyncInputs<'a> {
    pub base: &'a BTreeMap<RelPath, IndexRow>,
    /// The local side, with content hashes of files where known.
    pub local: &'a BTreeMap<RelPath, ReplicaEntry>,
    pub remote: &'a BTreeMap<RelPath, ReplicaEntry>,
    /// The remote keeps replaced content as versions: a losing local edit can be saved there.
    pub remote_keeps_versions: bool,
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
    /// Paths left out of `base`, `local` and `remote` as unchanged on both sides
    /// ([`unchanged::Sieve`]): still synced entries for the guards.
    pub unchanged: usize,
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

/// Did the local side change since the base?
fn local_changed(base: Option<&IndexRow>, local: Option<&ReplicaEntry>) -> bool {
    match (base, local) {
        (None, None) => false,
        (Some(_), None) | (None, Some(_)) => true,
        (Some(b), Some(l)) => {
            if b.kind != l.kind {
                return true;
            }
            match b.kind {
                EntryKind::File => b.hash != l.hash || b.mode != l.mode,
                EntryKind::Symlink => {
                    l.target.as_ref().map(|t| ContentHash::of(t.as_bytes())) != b.hash
                }
                EntryKind::Dir => false,
                EntryKind::Deleted => true,
            }
        }
    }
}

fn remote_changed(base: Option<&IndexRow>, remote: Option<&ReplicaEntry>) -> bool {
    match (base, remote) {
        (None, None) => false,
        (Some(_), None) | (None, Some(_)) => true,
        (Some(b), Some(r)) => b.right != r.version,
    }
}

/// Local and remote hold the same thing (so nothing needs to move).
fn same(l: &ReplicaEntry, r: &ReplicaEntry) -> bool {
    if l.kind != r.kind {
        return false;
    }
    match l.kind {
        // Folders agree whatever their modes: a mode change alone is not worth a conflict.
        EntryKind::Dir => true,
        // Unknown content is never taken as the same.
        EntryKind::File => l.hash.is_some() && r.hash == l.hash && r.mode == l.mode,
        EntryKind::Symlink => l.target == r.target,
        EntryKind::Deleted => false,
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
        let remote = i.remote.get(path).filter(|r| r.kind != EntryKind::Deleted);
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
                    base: remote.map(|r| r.version.clone()),
                }),
                (None, Some(_)) => match remote {
                    Some(_) if i.keep_deleted => None,
                    Some(r) => Some(Action::DeleteRemote {
                        path: p,
                        base: r.version.clone(),
                    }),
                    None => Some(Action::Forget { path: p }),
                },
                (None, None) => continue,
            },
            (false, true) => match (remote, local) {
                (Some(r), l) => Some(Action::Download {
                    path: p,
                    remote: r.clone(),
                    expect: l.cloned(),
                }),
                (None, Some(_)) if i.keep_deleted => None,
                (None, Some(l)) => Some(Action::DeleteLocal {
                    path: p,
                    expect: l.clone(),
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
                Action::KeepRemoteCopyThenUpload { .. } => {
                    plan.conflicts += 1;
                    plan.uploads += 1;
                }
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
    local: Option<&ReplicaEntry>,
    remote: Option<&ReplicaEntry>,
) -> Option<Action> {
    match (local, remote) {
        (Some(l), Some(r)) if same(l, r) => Some(Action::Adopt {
            path,
            remote: r.version.clone(),
            hash: r.hash,
        }),
        (Some(_), r) => Some(Action::Upload {
            path,
            base: r.map(|r| r.version.clone()),
        }),
        (None, _) => base.map(|_| Action::Forget { path }),
    }
}

/// The guard that holds `plan`, if any.
fn hold(i: &SyncInputs<'_>, plan: &SyncPlan) -> Option<Hold> {
    if i.guards.confirm_deletes {
        return None;
    }
    let synced = i.base.len() + i.unchanged;
    // An unmounted folder looks emptied: two-way would delete remotely, download-only would
    // fill the mount point. Only a backup that removes nothing can go on.
    let harmless = i.keep_deleted && i.direction == Direction::UploadOnly;
    if i.local.is_empty() && i.unchanged == 0 && synced > 0 && !harmless {
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
/// matched by content hash, preferring a source of the same name (a renamed folder's files).
fn pair_moves(i: &SyncInputs<'_>, plan: &mut SyncPlan) {
    use std::collections::HashMap;
    // Here: DeleteRemote{from} + Upload{to} of a new local file with the same content.
    let mut gone_here: HashMap<ContentHash, Vec<(RelPath, Version)>> = HashMap::new();
    for a in &plan.actions {
        if let Action::DeleteRemote { path, base } = a {
            if let Some(b) = i.base.get(path).filter(|b| b.kind == EntryKind::File) {
                if let Some(h) = b.hash {
                    gone_here
                        .entry(h)
                        .or_default()
                        .push((path.clone(), base.clone()));
                }
            }
        }
    }
    // There: DeleteLocal{from} (unchanged here) + Download{to} of the same content.
    let mut gone_there: HashMap<ContentHash, Vec<(RelPath, ReplicaEntry)>> = HashMap::new();
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
                let Some(l) = i.local.get(path).filter(|l| l.kind == EntryKind::File) else {
                    continue;
                };
                let Some(cands) = l.hash.and_then(|h| gone_here.get_mut(&h)) else {
                    continue;
                };
                if let Some(k) = pick_source(cands.iter().map(|c| &c.0), path) {
                    let (from, from_base) = cands.remove(k);
                    consumed.insert(from.clone());
                    consumed.insert(path.clone());
                    moves.push(Action::MoveRemote {
                        from,
                        from_base,
                        to: path.clone(),
                        to_base: base.clone(),
                    });
                }
            }
            Action::Download {
                path,
                remote,
                expect: None,
            } if remote.kind == EntryKind::File => {
                let Some(cands) = remote.hash.and_then(|h| gone_there.get_mut(&h)) else {
                    continue;
                };
                if let Some(k) = pick_source(cands.iter().map(|c| &c.0), path) {
                    let (from, expect) = cands.remove(k);
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

/// Among sources of the same content, the one of the same name as `to` (files of a renamed
/// folder keep their names), else the first.
fn pick_source<'a>(sources: impl Iterator<Item = &'a RelPath>, to: &RelPath) -> Option<usize> {
    let mut first = None;
    for (k, from) in sources.enumerate() {
        if from.name() == to.name() {
            return Some(k);
        }
        first.get_or_insert(k);
    }
    first
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
            | Action::KeepRemoteCopyThenUpload { path, .. }
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
    local: Option<&ReplicaEntry>,
    remote: Option<&ReplicaEntry>,
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
            remote: r.version.clone(),
            hash: r.hash,
        },
        (Some(l), Some(r)) => {
            // Folders never conflict: their children do.
            if l.kind == EntryKind::Dir && r.kind == EntryKind::Dir {
                return Action::Adopt {
                    path,
                    remote: r.version.clone(),
                    hash: None,
                };
            }
            if let Some(a) = keep_local(i, &path, l, r) {
                return a;
            }
            // Overwriting the remote's edit is only safe where the remote keeps it as a
            // version; elsewhere the local edit becomes the conflict copy.
            let local_wins = i.direction == Direction::TwoWay
                && i.policy == ConflictPolicy::KeepLatest
                && i.remote_keeps_versions
                && l.mtime_ns > r.mtime_ns;
            if local_wins {
                // The remote version stays in history; ours becomes the head.
                return Action::Upload {
                    path,
                    base: Some(r.version.clone()),
                };
            }
            let expect = l.clone();
            let remote = r.clone();
            // A loser that is a folder, or download-only, or asked for: a local conflict copy.
            if i.direction == Direction::DownloadOnly
                || i.keep_conflict_copy
                || !i.remote_keeps_versions
                || l.kind == EntryKind::Dir
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

/// Under [`ConflictPolicy::KeepLocal`], two-way, between files: the local edit goes up, over
/// the remote's (kept as a version) or after it (moved aside as a conflict copy there).
/// Folders keep the general rule: a remote folder is not moved aside for a local file.
fn keep_local(
    i: &SyncInputs<'_>,
    path: &RelPath,
    l: &ReplicaEntry,
    r: &ReplicaEntry,
) -> Option<Action> {
    let applies = i.policy == ConflictPolicy::KeepLocal
        && i.direction == Direction::TwoWay
        && l.kind != EntryKind::Dir
        && r.kind != EntryKind::Dir;
    if !applies {
        return None;
    }
    let path = path.clone();
    Some(if i.remote_keeps_versions && !i.keep_conflict_copy {
        Action::Upload {
            path,
            base: Some(r.version.clone()),
        }
    } else {
        Action::KeepRemoteCopyThenUpload {
            path,
            remote: r.clone(),
        }
    })
}

pub mod unchanged;

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).expect("valid test path")
    }

    fn file(data: &[u8], mtime: i64, version: String) -> ReplicaEntry {
        ReplicaEntry {
            kind: EntryKind::File,
            size: data.len() as u64,
            mtime_ns: mtime,
            mode: 0o644,
            hash: Some(ContentHash::of(data)),
            target: None,
            version: Version(version),
        }
    }

    fn local(_path: &str, data: &[u8], mtime: i64) -> ReplicaEntry {
        file(data, mtime, format!("{}:{mtime}", data.len()))
    }

    fn remote(seq: i64, data: &[u8], mtime: i64) -> ReplicaEntry {
        file(data, mtime, seq.to_string())
    }

    fn v(seq: i64) -> Version {
        Version(seq.to_string())
    }

    fn row(path: &str, l: &ReplicaEntry, seq: i64) -> IndexRow {
        IndexRow {
            path: p(path),
            kind: l.kind,
            size: l.size,
            mtime_ns: l.mtime_ns,
            mode: l.mode,
            hash: l.hash,
            left: l.version.clone(),
            right: v(seq),
        }
    }

    fn base(path: &str, data: &[u8], seq: i64) -> IndexRow {
        row(path, &local(path, data, 1), seq)
    }

    struct Case {
        base: BTreeMap<RelPath, IndexRow>,
        local: BTreeMap<RelPath, ReplicaEntry>,
        remote: BTreeMap<RelPath, ReplicaEntry>,
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
                remote_keeps_versions: true,
                direction,
                policy,
                keep_conflict_copy: flag && two_sided,
                incomplete: &[],
                excluded: &BTreeSet::new(),
                keep_deleted: flag && !two_sided,
                guards: Guards::default(),
                unchanged: 0,
            })
            .actions
        }

        /// The plan's actions with "don't remove on the destination".
        fn plan_keeping(&self, direction: Direction) -> Vec<Action> {
            plan_sync(&SyncInputs {
                base: &self.base,
                local: &self.local,
                remote: &self.remote,
                remote_keeps_versions: true,
                direction,
                policy: KL,
                keep_conflict_copy: false,
                incomplete: &[],
                excluded: &BTreeSet::new(),
                keep_deleted: true,
                guards: Guards::default(),
                unchanged: 0,
            })
            .actions
        }
    }

    fn case(b: Option<IndexRow>, l: Option<ReplicaEntry>, r: Option<ReplicaEntry>) -> Case {
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
                base: Some(v(1))
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
                base: v(1)
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
                base: Some(v(2))
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
    fn a_remote_without_versions_gets_no_saved_loser_but_a_local_conflict_copy() {
        let c = case(
            Some(base("f", b"a", 1)),
            Some(local("f", b"mine", 1)),
            Some(remote(2, b"theirs", 5)),
        );
        let plan = plan_sync(&SyncInputs {
            base: &c.base,
            local: &c.local,
            remote: &c.remote,
            remote_keeps_versions: false,
            direction: TW,
            policy: ConflictPolicy::KeepServer,
            keep_conflict_copy: false,
            incomplete: &[],
            excluded: &BTreeSet::new(),
            keep_deleted: false,
            guards: Guards::default(),
            unchanged: 0,
        });
        assert!(matches!(
            plan.actions[..],
            [Action::KeepLocalCopyThenDownload { .. }]
        ));
    }

    #[test]
    fn keep_local_sends_the_local_edit_and_keeps_the_remotes_as_a_version_or_a_copy() {
        // The local edit is older: under keep-local it wins all the same.
        let c = case(
            Some(base("f", b"a", 1)),
            Some(local("f", b"mine", 1)),
            Some(remote(2, b"theirs", 5)),
        );
        let plan = |versions: bool, copy: bool, direction: Direction| {
            plan_sync(&SyncInputs {
                base: &c.base,
                local: &c.local,
                remote: &c.remote,
                remote_keeps_versions: versions,
                direction,
                policy: ConflictPolicy::KeepLocal,
                keep_conflict_copy: copy,
                incomplete: &[],
                excluded: &BTreeSet::new(),
                keep_deleted: false,
                guards: Guards::default(),
                unchanged: 0,
            })
        };
        let kept = plan(true, false, TW);
        assert_eq!(
            kept.actions,
            vec![Action::Upload {
                path: p("f"),
                base: Some(v(2))
            }]
        );
        assert_eq!((kept.conflicts, kept.uploads), (1, 1));
        let copied = plan(false, false, TW);
        assert_eq!(
            copied.actions,
            vec![Action::KeepRemoteCopyThenUpload {
                path: p("f"),
                remote: remote(2, b"theirs", 5)
            }]
        );
        assert_eq!((copied.conflicts, copied.uploads), (1, 1));
        assert!(matches!(
            plan(true, true, TW).actions[..],
            [Action::KeepRemoteCopyThenUpload { .. }]
        ));
        // Download-only still takes the remote's and keeps the local edit here.
        assert!(matches!(
            plan(false, false, Direction::DownloadOnly).actions[..],
            [Action::KeepLocalCopyThenDownload { .. }]
        ));
    }

    #[test]
    fn a_rename_is_a_move_on_either_side() {
        let old = local("old", b"content", 1);
        let renamed = local("new", b"content", 1);
        let b = row("old", &old, 4);
        let base = BTreeMap::from([(p("old"), b)]);
        let here = SyncInputs {
            base: &base,
            local: &BTreeMap::from([(p("new"), renamed.clone())]),
            remote: &BTreeMap::from([(p("old"), remote(4, b"content", 1))]),
            remote_keeps_versions: true,
            direction: TW,
            policy: KL,
            keep_conflict_copy: false,
            incomplete: &[],
            excluded: &BTreeSet::new(),
            keep_deleted: false,
            guards: Guards::default(),
            unchanged: 0,
        };
        let plan = plan_sync(&here);
        assert_eq!(
            plan.actions,
            vec![Action::MoveRemote {
                from: p("old"),
                from_base: v(4),
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
                base: Some(v(1))
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
                base: Some(v(7))
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
        let b = row("f", &l, 2);
        let c = case(Some(b), Some(l), Some(remote(2, b"z", 5)));
        assert!(c.plan(TW, KL, false).is_empty());
    }
}
