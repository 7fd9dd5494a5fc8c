//! One pass of any task between two replicas: the same steps for backups (upload-only) and
//! drives (two-way or download-only), whatever the replicas are.
//!
//! The pass: take the complete remote listing (or its changes since the last one), list the
//! local side and hash what changed there, plan with [`planner::plan_sync`], meet the deletion
//! guards the plan carries, then hand the plan to the [`executor`]. A listing that fails or a
//! guard stops the pass before anything is deleted.
//!
//! [`planner::plan_sync`]: crate::reconcile::plan_sync
//! [`executor`]: crate::executor

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use cairn_model::filter::FilterDecision;
use cairn_model::{EntryKind, Filter, RelPath};

mod base;
mod case;

use crate::executor::{self, Ctx, PassStats, Planned};
use crate::index::{IndexRow, LocalIndex};
use crate::reconcile::{
    self, Action, ConflictPolicy, Direction, Guards, Hold, SyncInputs, SyncPlan,
};
use crate::replica::{Cursor, Listing, Replica, ReplicaChange, ReplicaEntry, Sift};
use crate::retry::retrying;
use crate::sift::{clash_candidates, Fingerprints, HereSift, ThereSift, HERE, THERE};
use crate::{Error, Progress, ProgressEvent, Result};

/// What one pass does: a root of a task and the task's rules.
#[derive(Clone, Debug)]
pub struct PassSpec<'a> {
    pub task: &'a str,
    /// The index's number for this root (a backup task has several roots).
    pub root_no: u32,
    pub direction: Direction,
    pub policy: ConflictPolicy,
    pub keep_conflict_copy: bool,
    /// "Don't remove on the destination".
    pub keep_deleted: bool,
    /// Read every local file, not only those whose stat changed.
    pub consistency_check: bool,
    pub filter: &'a Filter,
    pub transfers: usize,
    pub computer: &'a str,
    pub guards: Guards,
    /// Plan only: report what would be done ([`PassStats::planned`]) and change nothing.
    pub dry_run: bool,
}

/// Runs one pass between `local` (here) and `remote`. `cache`, when given, keeps the remote
/// listing between passes of a long-running agent (a one-shot pass keeps no second copy).
///
/// # Errors
/// A failed listing, an index failure, or the emptied-folder guard stop the pass before
/// anything is deleted; single paths that fail are counted and reported.
pub async fn run(
    spec: &PassSpec<'_>,
    local_side: &dyn Replica,
    remote: &dyn Replica,
    index: &mut LocalIndex,
    cache: Option<&mut Option<RemoteCache>>,
    progress: Arc<dyn Progress>,
) -> Result<PassStats> {
    let task = spec.task;
    let mut stats = PassStats::default();
    let identity = retrying(|| remote.identity()).await?;
    let prepared = base::prepare(spec, remote, index, identity.clone()).await?;
    let prints = prepared.prints.clone();
    let here = prints.clone().map(|p| Arc::new(HereSift::new(p)));
    let there = Arc::new(ThereSift::new(
        prints.clone(),
        spec.filter.clone(),
        spec.direction != Direction::UploadOnly,
    ));
    // The server builds its listing while this computer walks its folder.
    let (listed, scanned) = futures_util::future::join(
        remote_listing(remote, identity.as_deref(), cache, there.clone()),
        async {
            match &here {
                Some(h) => local_side.list_sifted(h.clone()).await,
                None => local_side.list().await,
            }
        },
    )
    .await;
    let (mut remote_map, cursor) = listed?;
    let mut scan = scanned?;
    drop_filtered(&mut scan, spec.filter);
    drop_too_long(&mut scan, local_side, remote);
    drop_unstorable_links(&mut scan, local_side, remote);
    drop_refused(&mut scan, local_side, remote);
    let files = scan
        .entries
        .values()
        .filter(|e| e.kind == EntryKind::File)
        .count() as u64;
    let left_out = here
        .as_ref()
        .map_or(0, |h| h.files.load(std::sync::atomic::Ordering::Relaxed));
    progress.event(ProgressEvent::Scanned {
        files: files + left_out,
        dirs: scan.entries.len() as u64 - files,
    });
    for (path, reason) in &scan.skipped {
        stats.reported += 1;
        progress.event(ProgressEvent::Skipped {
            path: path.clone(),
            reason: reason.clone(),
        });
    }
    let direction = effective_direction(spec, remote, &progress).await?;
    stats.read_only_now = direction != spec.direction;
    let upload_only = direction == Direction::UploadOnly;
    // What the rules leave out is neither fetched nor deleted, on either side.
    let mut excluded: BTreeSet<RelPath> = scan.excluded.iter().map(|(p, _)| p.clone()).collect();
    excluded.extend(spec.filter.excluded_dirs.iter().cloned());
    // In place: collecting into a new map would hold a second copy of a large listing.
    remote_map.retain(|p, r| {
        let keep = spec.filter.check(p, r.kind, r.size).is_included();
        if !keep {
            excluded.insert(p.clone());
        }
        keep
    });
    if !upload_only {
        let clashes = case_clashes(spec, index, &there, prints.as_deref(), &remote_map, &scan)?;
        let folds = !clashes.is_empty() && local_side.folds_case().await?;
        for (out, kept) in clashes {
            let reason = if folds {
                format!("name clash: {out} and {kept} differ only in case, and this folder does not tell case apart: {kept} is kept here, {out} is left alone on both sides")
            } else {
                format!("name clash: {out} and {kept} differ only in case; a case-insensitive computer cannot hold both")
            };
            progress.event(ProgressEvent::Skipped {
                path: out.to_string(),
                reason,
            });
            if folds {
                excluded.insert(out);
            }
        }
    }
    let sides = base::Sides {
        local: &mut scan.entries,
        remote: &mut remote_map,
        cursor: cursor.as_ref(),
    };
    let base::Base {
        rows: base,
        unchanged,
    } = base::load(spec, local_side, remote, index, prepared, sides, &progress).await?;
    let (local, unreadable) = hash_local(
        local_side,
        std::mem::take(&mut scan.entries),
        &base,
        spec.consistency_check,
        !upload_only,
    )
    .await?;
    // A held name (a non-NFC name's normal form, a path too long for the remote) is left
    // alone on both sides, unless a file of that very name is here: then it syncs as itself
    // (or was left out of `local` as unchanged).
    excluded.extend(
        scan.held
            .iter()
            .filter(|p| !local.contains_key(*p))
            .cloned(),
    );
    for path in unreadable {
        progress.event(ProgressEvent::Failed {
            path: path.to_string(),
            reason: "cannot be read; left alone on both sides".into(),
        });
        stats.failed += 1;
        excluded.insert(path);
    }
    let remote_map = fill_remote_hashes(remote, &local, &base, remote_map).await?;
    let plan = reconcile::plan_sync(&SyncInputs {
        base: &base,
        local: &local,
        remote: &remote_map,
        remote_keeps_versions: remote.capabilities().keeps_versions,
        direction,
        policy: spec.policy,
        keep_conflict_copy: spec.keep_conflict_copy,
        incomplete: &scan.incomplete,
        excluded: &excluded,
        keep_deleted: spec.keep_deleted,
        guards: spec.guards,
        unchanged,
    });
    if spec.dry_run {
        stats.planned = describe_plan(&plan, &scan, direction != spec.direction);
        if let Some(hold) = &plan.hold {
            let why = match hold {
                Hold::EmptiedRoot { synced } => emptied(spec, local_side, *synced).to_string(),
                Hold::ManyDeletes { .. } => "more than half of the synced entries would be deleted: the pass would wait for `--confirm-deletes`".into(),
            };
            stats.planned.insert(
                0,
                Planned {
                    what: "stop",
                    path: local_side.describe(),
                    why,
                },
            );
        }
        return Ok(stats);
    }
    match plan.hold {
        Some(Hold::EmptiedRoot { synced }) => return Err(emptied(spec, local_side, synced)),
        Some(Hold::ManyDeletes {
            here,
            there,
            synced,
        }) => {
            stats.waiting_for_confirmation = Some(format!(
                "this pass would delete {} of {synced} entries ({here} here, {there} on the server); nothing was deleted. \
                 If that is what you want, run `cairn resume {task} --confirm-deletes`",
                here + there
            ));
            return Ok(stats);
        }
        None => {}
    }
    if direction != spec.direction {
        for path in &plan.kept_here {
            stats.reported += 1;
            progress.event(ProgressEvent::Skipped {
                path: path.to_string(),
                reason: "changed here and kept; not sent, the folder is read-only for you".into(),
            });
        }
    }
    stats.conflicts = plan.conflicts;
    let touched: HashSet<&RelPath> = plan.actions.iter().flat_map(|a| a.paths()).collect();
    stats.unchanged = (local.keys().filter(|p| !touched.contains(p)).count() + unchanged) as u64;
    let ctx = Ctx {
        task,
        root_no: spec.root_no,
        left: local_side,
        right: remote,
        progress: progress.clone(),
        transfers: spec.transfers,
        computer: spec.computer,
        rebase: upload_only,
        traffic: std::sync::Mutex::new(remote.traffic()),
    };
    executor::execute(&ctx, plan.actions, &local, index, &mut stats).await?;
    Ok(stats)
}

/// The direction this pass runs in: a two-way task whose folder became read-only for the user
/// goes on download-only (local edits stay here, reported) instead of failing every pass.
async fn effective_direction(
    spec: &PassSpec<'_>,
    remote: &dyn Replica,
    progress: &Arc<dyn Progress>,
) -> Result<Direction> {
    if spec.direction != Direction::TwoWay || retrying(|| remote.writable()).await? {
        return Ok(spec.direction);
    }
    progress.event(ProgressEvent::Skipped {
        path: remote.describe(),
        reason: "the folder is read-only for you now: syncing download-only, local edits stay here"
            .into(),
    });
    Ok(Direction::DownloadOnly)
}

/// A dry run's report: every action of `plan`, what the scan left out, and why.
fn describe_plan(plan: &SyncPlan, scan: &Listing, read_only: bool) -> Vec<Planned> {
    let step = |what, path: &RelPath, why: String| Planned {
        what,
        path: path.to_string(),
        why,
    };
    let mut out: Vec<Planned> = plan
        .actions
        .iter()
        .filter_map(|a| {
            Some(match a {
                Action::Upload { path, base: None } => step("upload", path, "new here".into()),
                Action::Upload { path, .. } => step("upload", path, "changed here".into()),
                Action::DeleteRemote { path, .. } => {
                    step("delete on the server", path, "deleted here".into())
                }
                Action::Download { path, expect, .. } => step(
                    "download",
                    path,
                    if expect.is_some() {
                        "changed on the server"
                    } else {
                        "new on the server"
                    }
                    .into(),
                ),
                Action::KeepLocalCopyThenDownload { path, .. } => step(
                    "keep as a conflict copy, then download",
                    path,
                    "changed on both sides; the server's version wins".into(),
                ),
                Action::SaveLocalThenDownload { path, .. } => step(
                    "save as a version, then download",
                    path,
                    "changed on both sides; the server's version wins".into(),
                ),
                Action::KeepRemoteCopyThenUpload { path, .. } => step(
                    "keep the server's as a conflict copy, then upload",
                    path,
                    "changed on both sides; the local version wins".into(),
                ),
                Action::DeleteLocal { path, .. } => {
                    step("delete here", path, "deleted on the server".into())
                }
                Action::MoveRemote { from, to, .. } => step(
                    "move on the server",
                    to,
                    format!("renamed here from {from}"),
                ),
                Action::MoveLocal { from, to, .. } => step(
                    "move here",
                    to,
                    format!("renamed on the server from {from}"),
                ),
                Action::Adopt { .. } | Action::Forget { .. } => return None,
            })
        })
        .collect();
    let kept = if read_only {
        "changed here; not sent, the folder is read-only for you"
    } else {
        "changed here; not sent by a download-only task"
    };
    out.extend(plan.kept_here.iter().map(|p| step("skip", p, kept.into())));
    out.extend(
        scan.excluded
            .iter()
            .map(|(p, why)| step("skip", p, why.clone())),
    );
    out.extend(scan.skipped.iter().map(|(p, why)| Planned {
        what: "skip",
        path: p.clone(),
        why: why.clone(),
    }));
    out
}

/// The refusal of a pass whose local folder became empty.
fn emptied(spec: &PassSpec<'_>, local_side: &dyn Replica, synced: usize) -> Error {
    let (what, how) = match spec.direction {
        Direction::UploadOnly => ("backed up", "run"),
        _ => ("synced", "resume"),
    };
    let confirm = match spec.direction {
        Direction::UploadOnly => format!("cairn run {} --once --confirm-deletes", spec.task),
        _ => format!("cairn {how} {} --confirm-deletes", spec.task),
    };
    Error::Refused(format!(
        "the local folder {} is empty but {synced} entries were {what} from it; it may be unmounted. Nothing was deleted \
         (if you emptied it on purpose, run `{confirm}`)",
        local_side.describe(),
    ))
}

/// Paths too long for the remote are reported and left alone on both sides.
fn drop_too_long(scan: &mut Listing, local_side: &dyn Replica, remote: &dyn Replica) {
    let limit = remote.capabilities().max_path_bytes;
    let long: Vec<RelPath> = scan
        .entries
        .keys()
        .filter(|p| p.as_str().len() > limit)
        .cloned()
        .collect();
    for path in long {
        scan.entries.remove(&path);
        scan.skipped.push((
            executor::side_path(local_side, &path),
            format!(
                "the path would be longer than the remote can hold ({limit} bytes below {}); skipped",
                remote.describe()
            ),
        ));
        scan.held.push(path);
    }
}

/// Links a remote cannot store are reported and left alone on both sides.
fn drop_unstorable_links(scan: &mut Listing, local_side: &dyn Replica, remote: &dyn Replica) {
    if remote.capabilities().stores_links {
        return;
    }
    let links: Vec<RelPath> = scan
        .entries
        .iter()
        .filter(|(_, e)| e.kind == EntryKind::Symlink)
        .map(|(p, _)| p.clone())
        .collect();
    for path in links {
        scan.entries.remove(&path);
        scan.skipped.push((
            executor::side_path(local_side, &path),
            format!(
                "a symbolic link; {} cannot store links, so it is left alone",
                remote.describe()
            ),
        ));
        scan.held.push(path);
    }
}

/// Entries the remote refuses by its rules (names, lengths, sizes): reported, left alone.
/// The task's rules on the local side's listing as on the remote's: a scanned folder has
/// applied them already, but a side that is not one (the server folder of a server cloud
/// task) lists everything. What they leave out is neither sent nor deleted.
fn drop_filtered(scan: &mut Listing, filter: &Filter) {
    let out: Vec<(RelPath, String)> = scan
        .entries
        .iter()
        .filter_map(|(p, e)| match filter.check(p, e.kind, e.size) {
            FilterDecision::Include => None,
            FilterDecision::Exclude(why) => Some((p.clone(), why)),
        })
        .collect();
    for (path, _) in &out {
        scan.entries.remove(path);
    }
    scan.excluded.extend(out);
}

fn drop_refused(scan: &mut Listing, local_side: &dyn Replica, remote: &dyn Replica) {
    let refused: Vec<(RelPath, String)> = scan
        .entries
        .iter()
        .filter_map(|(p, e)| Some((p.clone(), remote.refuses(p, e.kind, e.size)?)))
        .collect();
    for (path, why) in refused {
        scan.entries.remove(&path);
        scan.skipped.push((
            executor::side_path(local_side, &path),
            format!("{why}; not sent to {}", remote.describe()),
        ));
        scan.held.push(path);
    }
}

/// A remote that does not list content hashes (a cloud) is asked for the hash of a file only
/// where the plan needs it to tell "the same" from "a conflict": both sides hold a file of
/// the same size and the remote's differs from the base. A remote that keeps no modes takes
/// the local file's, so a mode alone never makes a conflict.
async fn fill_remote_hashes(
    remote: &dyn Replica,
    local: &BTreeMap<RelPath, ReplicaEntry>,
    base: &BTreeMap<RelPath, IndexRow>,
    mut remote_map: BTreeMap<RelPath, ReplicaEntry>,
) -> Result<BTreeMap<RelPath, ReplicaEntry>> {
    let caps = remote.capabilities();
    if caps.knows_hashes {
        return Ok(remote_map);
    }
    let mut wanted = Vec::new();
    for (path, r) in remote_map.iter_mut() {
        let Some(l) = local.get(path) else { continue };
        if r.kind != EntryKind::File || l.kind != EntryKind::File {
            continue;
        }
        if !caps.keeps_modes {
            r.mode = l.mode;
        }
        match base.get(path) {
            // Unchanged there since the base: what the base says it holds.
            Some(b) if b.right == r.version => r.hash = b.hash,
            _ if l.size == r.size && l.hash.is_some() => {
                wanted.push((path.clone(), r.version.clone()))
            }
            _ => {}
        }
    }
    if wanted.is_empty() {
        return Ok(remote_map);
    }
    let hashes = remote.hash_many(&wanted).await?;
    for ((path, _), hash) in wanted.into_iter().zip(hashes) {
        if let Some(r) = remote_map.get_mut(&path) {
            r.hash = hash;
        }
    }
    Ok(remote_map)
}

/// The remote listing as the last pass left it, kept by a long-running agent so the next pass
/// reads only the changes since then instead of the whole listing.
#[derive(Clone, Debug)]
pub struct RemoteCache {
    identity: Option<String>,
    cursor: Cursor,
    entries: BTreeMap<RelPath, ReplicaEntry>,
}

/// The live remote entries and the cursor they were read at, without what `sift` leaves out:
/// from the cache plus the changes since it, or (first pass, another remote, changes it cannot
/// answer) from a whole listing.
async fn remote_listing(
    remote: &dyn Replica,
    identity: Option<&str>,
    cache: Option<&mut Option<RemoteCache>>,
    sift: Arc<ThereSift>,
) -> Result<(BTreeMap<RelPath, ReplicaEntry>, Option<Cursor>)> {
    let Some(cache) = cache else {
        let listing = retrying(|| remote.list_sifted(sift.clone())).await?;
        return Ok((listing.entries, listing.cursor));
    };
    let sifted = |entries: &BTreeMap<RelPath, ReplicaEntry>| {
        sift.restart();
        entries
            .iter()
            .filter(|(p, e)| !sift.leaves_out(p, e))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    if let Some(c) = cache.as_mut().filter(|c| c.identity.as_deref() == identity) {
        if let Some((changes, cursor)) = retrying(|| remote.changes(&c.cursor)).await? {
            for change in changes {
                match change {
                    ReplicaChange::Upsert(path, entry) => {
                        c.entries.insert(path, entry);
                    }
                    ReplicaChange::Remove(path) => {
                        c.entries.remove(&path);
                    }
                }
            }
            c.cursor = cursor;
            return Ok((sifted(&c.entries), Some(c.cursor.clone())));
        }
    }
    // The cache keeps the whole listing; the pass takes the sifted copy.
    let listing = retrying(|| remote.list()).await?;
    let entries = sifted(&listing.entries);
    *cache = listing.cursor.clone().map(|cursor| RemoteCache {
        identity: identity.map(str::to_string),
        cursor,
        entries: listing.entries,
    });
    Ok((entries, listing.cursor))
}

/// Names of the remote listing that differ only in case, as (left out, kept). The sift saw
/// every name go by and kept only the hashes of their case keys; the names behind a clashing
/// key are gathered again (from what is listed, and from the rows of names it left out)
/// and compared in full.
fn case_clashes(
    spec: &PassSpec<'_>,
    index: &LocalIndex,
    there: &ThereSift,
    prints: Option<&Fingerprints>,
    remote: &BTreeMap<RelPath, ReplicaEntry>,
    scan: &Listing,
) -> Result<Vec<(RelPath, RelPath)>> {
    let clashing = there.clashing();
    if clashing.is_empty() {
        return Ok(Vec::new());
    }
    let mut names = BTreeSet::new();
    clash_candidates(there, &clashing, remote.keys(), &mut names);
    if let Some(p) = prints {
        index.each(spec.task, spec.root_no, &mut |row| {
            if p.marks(row.path.as_str()) & THERE != 0 {
                clash_candidates(there, &clashing, std::iter::once(&row.path), &mut names);
            }
        })?;
    }
    let here = |path: &RelPath| {
        scan.entries.contains_key(path)
            || prints.is_some_and(|p| p.marks(path.as_str()) & HERE != 0)
    };
    Ok(case::clashes(names.iter(), &here))
}

/// Content hashes of local files: from the index when the version is unchanged (unless the
/// consistency check asks to read everything), read otherwise (or, when `hash_changed` is off,
/// left unknown: the planner then sees the file as changed, and the upload hashes it).
/// Files that cannot be read are returned apart: not the same as deleted.
async fn hash_local(
    local_side: &dyn Replica,
    entries: BTreeMap<RelPath, ReplicaEntry>,
    base: &BTreeMap<RelPath, IndexRow>,
    full: bool,
    hash_changed: bool,
) -> Result<(BTreeMap<RelPath, ReplicaEntry>, Vec<RelPath>)> {
    // A list first, the map built from it in bulk at the end (see `LocalIndex::load`).
    let mut out = Vec::with_capacity(entries.len());
    let mut to_hash = Vec::new();
    for (path, mut e) in entries {
        if e.kind == EntryKind::File && e.hash.is_none() {
            let known = base
                .get(&path)
                .filter(|b| !full && b.kind == e.kind && b.left == e.version);
            match known {
                Some(b) => e.hash = b.hash,
                None if hash_changed => {
                    to_hash.push((path, e));
                    continue;
                }
                None => {}
            }
        }
        out.push((path, e));
    }
    let items: Vec<(RelPath, crate::replica::Version)> = to_hash
        .iter()
        .map(|(p, e)| (p.clone(), e.version.clone()))
        .collect();
    let hashes = if items.is_empty() {
        Vec::new()
    } else {
        local_side.hash_many(&items).await?
    };
    let mut unreadable = Vec::new();
    for ((path, mut e), hash) in to_hash.into_iter().zip(hashes) {
        match hash {
            Some(h) => {
                e.hash = Some(h);
                out.push((path, e));
            }
            // Unreadable (or changed or vanished mid-pass): nothing is done with this path on
            // either side until it can be read.
            None => unreadable.push(path),
        }
    }
    Ok((BTreeMap::from_iter(out), unreadable))
}

#[cfg(test)]
mod tests {
    use super::base::same_remote;

    #[test]
    fn an_identity_kept_before_folder_incarnations_matches_only_its_own_server() {
        assert!(same_remote("abc#3", "abc#3"));
        assert!(same_remote("abc", "abc#3"));
        assert!(!same_remote("abc#3", "abc#4"));
        assert!(!same_remote("abc#3", "abc"));
        assert!(!same_remote("ab", "abc#3"));
        assert!(!same_remote("abc", "abd#3"));
    }
}
