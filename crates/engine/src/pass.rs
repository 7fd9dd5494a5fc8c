//! One pass of any task over one local root: the same steps for backups (upload-only) and
//! drives (two-way or download-only), and for any remote.
//!
//! The pass: check the local folder, take the complete remote listing (or the journal since
//! the last one), scan and hash what changed locally, plan with [`planner::plan_sync`], meet
//! the deletion guards the plan carries, then hand the plan to the [`executor`]. A listing that
//! fails, a missing root or a guard stops the pass before anything is deleted.
//!
//! [`planner::plan_sync`]: crate::reconcile::plan_sync
//! [`executor`]: crate::executor

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use cairn_model::{ContentHash, EntryKind, Filter, RelPath, Seq};

use crate::backup::retrying;
use crate::executor::{self, Ctx, PassStats, Planned};
use crate::index::{IndexRow, LocalIndex};
use crate::local_root::LocalRoot;
use crate::reconcile::{
    self, Action, ConflictPolicy, Direction, Guards, Hold, LocalState, SyncInputs, SyncPlan,
};
use crate::remote::{Remote, RemoteEntry};
use crate::restore::hash_file;
use crate::scanner::{self, LocalEntry};
use crate::{Error, Progress, ProgressEvent, Result};

/// What one pass does: a local root of a task, where it lands remotely, and the task's rules.
#[derive(Clone, Debug)]
pub struct PassSpec<'a> {
    pub task: &'a str,
    /// The index's number for this root (a backup task has several roots).
    pub root_no: u32,
    pub root: &'a Path,
    pub prefix: &'a RelPath,
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

/// Runs one pass. `cache` keeps the remote tree between passes of a long-running agent.
///
/// # Errors
/// A missing local folder, a failed listing, an index failure, or the emptied-folder guard stop
/// the pass before anything is deleted; single paths that fail are counted and reported.
pub async fn run(
    spec: &PassSpec<'_>,
    remote: Arc<dyn Remote>,
    index: &mut LocalIndex,
    cache: &mut Option<RemoteCache>,
    progress: Arc<dyn Progress>,
) -> Result<PassStats> {
    let (task, root, prefix) = (spec.task, spec.root, spec.prefix);
    scanner::check_root(root)?;
    let local_root = Arc::new(LocalRoot::open(root)?);
    let mut stats = PassStats::default();
    let (server_id, head) = retrying(|| remote.identity()).await?;
    let remote_map = remote_listing(remote.as_ref(), prefix, &server_id, head, cache).await?;
    let (scan_root, filter) = (root.to_path_buf(), spec.filter.clone());
    let mut scan = tokio::task::spawn_blocking(move || scanner::scan(&scan_root, &filter))
        .await
        .map_err(|e| Error::Refused(format!("scanner failed: {e}")))?;
    scanner::drop_too_long(&mut scan, root, prefix);
    let files = scan
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .count() as u64;
    progress.event(ProgressEvent::Scanned {
        files,
        dirs: scan.entries.len() as u64 - files,
    });
    for (path, reason) in &scan.reports {
        stats.reported += 1;
        progress.event(ProgressEvent::Skipped {
            path: path.clone(),
            reason: reason.clone(),
        });
    }
    let base = load_base(spec, remote.as_ref(), index, &server_id, head, &progress).await?;
    let direction = effective_direction(spec, remote.as_ref(), &progress).await?;
    let upload_only = direction == Direction::UploadOnly;
    let (local, unreadable) = hash_local(
        &local_root,
        &scan.entries,
        &base,
        spec.consistency_check,
        !upload_only,
    )
    .await?;
    // What the rules leave out is neither fetched nor deleted, on either side.
    let mut excluded: BTreeSet<RelPath> = scan.excluded.iter().map(|(p, _)| p.clone()).collect();
    excluded.extend(spec.filter.excluded_dirs.iter().cloned());
    // A held name (a non-NFC name's normal form, a path too long for the remote) is left
    // alone on both sides, unless a file of that very name is here: then it syncs as itself.
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
    let remote_map: BTreeMap<RelPath, RemoteEntry> = remote_map
        .into_iter()
        .filter(|(p, r)| {
            let keep = spec
                .filter
                .check(p, r.entry.kind, r.entry.size)
                .is_included();
            if !keep {
                excluded.insert(p.clone());
            }
            keep
        })
        .collect();
    if !upload_only {
        report_case_clashes(&remote_map, progress.as_ref());
    }
    let plan = reconcile::plan_sync(&SyncInputs {
        base: &base,
        local: &local,
        remote: &remote_map,
        direction,
        policy: spec.policy,
        keep_conflict_copy: spec.keep_conflict_copy,
        incomplete: &scan.incomplete,
        excluded: &excluded,
        keep_deleted: spec.keep_deleted,
        guards: spec.guards,
    });
    if spec.dry_run {
        stats.planned = describe_plan(&plan, &scan, direction != spec.direction);
        if let Some(hold) = &plan.hold {
            let why = match hold {
                Hold::EmptiedRoot { .. } => emptied(spec, base.len()).to_string(),
                Hold::ManyDeletes { .. } => "more than half of the synced entries would be deleted: the pass would wait for `--confirm-deletes`".into(),
            };
            stats.planned.insert(
                0,
                Planned {
                    what: "stop",
                    path: spec.root.display().to_string(),
                    why,
                },
            );
        }
        return Ok(stats);
    }
    match plan.hold {
        Some(Hold::EmptiedRoot { synced }) => return Err(emptied(spec, synced)),
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
    stats.unchanged = local.keys().filter(|p| !touched.contains(p)).count() as u64;
    let work = local_root.work_dir()?;
    let ctx = Ctx {
        task,
        root_no: spec.root_no,
        root: &local_root,
        prefix,
        remote: remote.clone(),
        work: &work,
        progress: progress.clone(),
        transfers: spec.transfers,
        computer: spec.computer,
        rebase: upload_only,
    };
    // The working folder's drop removes any temporary a failed step left behind.
    executor::execute(&ctx, plan.actions, &local, index, &mut stats).await?;
    Ok(stats)
}

/// The direction this pass runs in: a two-way task whose folder became read-only for the user
/// goes on download-only (local edits stay here, reported) instead of failing every pass.
async fn effective_direction(
    spec: &PassSpec<'_>,
    remote: &dyn Remote,
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
fn describe_plan(plan: &SyncPlan, scan: &scanner::Scan, read_only: bool) -> Vec<Planned> {
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
    out.extend(scan.reports.iter().map(|(p, why)| Planned {
        what: "skip",
        path: p.clone(),
        why: why.clone(),
    }));
    out
}

/// The refusal of a pass whose local folder became empty.
fn emptied(spec: &PassSpec<'_>, synced: usize) -> Error {
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
        spec.root.display(),
    ))
}

/// The base of this root: what both sides agreed on last time. Paths whose content the
/// remote lost part of are dropped from it when uploading, so they are sent again. A
/// different server, or one whose journal went backwards (restored from an older copy of its
/// data), voids the base: both sides are merged as if never synced, which deletes nothing.
async fn load_base(
    spec: &PassSpec<'_>,
    remote: &dyn Remote,
    index: &mut LocalIndex,
    server_id: &str,
    head: Seq,
    progress: &Arc<dyn Progress>,
) -> Result<BTreeMap<RelPath, IndexRow>> {
    let (task, prefix) = (spec.task, spec.prefix);
    let mut base: BTreeMap<RelPath, IndexRow> =
        index.load(task, spec.root_no)?.into_iter().collect();
    if spec.direction == Direction::UploadOnly {
        for damaged in retrying(|| remote.damaged(prefix)).await? {
            if let Some(rel) = damaged.strip_prefix(prefix) {
                if base.remove(&rel).is_some() {
                    progress.event(ProgressEvent::Skipped {
                        path: rel.to_string(),
                        reason: "the server lost part of this file; sending it again".into(),
                    });
                }
            }
        }
    }
    let known = index.server_of(task)?;
    let max_base = base.values().map(|b| b.seq).max().unwrap_or(Seq(0));
    if known.as_deref().is_some_and(|k| k != server_id) || max_base > head {
        progress.event(ProgressEvent::Skipped {
            path: spec.root.display().to_string(),
            reason: "the server is not the one last synced with (or was restored from an older copy): merging both sides, deleting nothing".into(),
        });
        // The old base means nothing on this server: forget it for good, so later passes
        // start from what this merge agrees on.
        let stale: Vec<RelPath> = base.keys().cloned().collect();
        if !spec.dry_run {
            index.apply(task, spec.root_no, &[], &stale)?;
        }
        base.clear();
    }
    if !spec.dry_run {
        index.set_server(task, server_id)?;
    }
    Ok(base)
}

/// The remote tree as the last pass left it, kept by a long-running agent so the next pass
/// reads only the journal since then instead of the whole listing.
#[derive(Clone, Debug)]
pub struct RemoteCache {
    server_id: String,
    head: Seq,
    entries: BTreeMap<RelPath, RemoteEntry>,
}

/// The live entries under `prefix`: from the cache plus the journal since it, or (first pass,
/// another server, a journal that went backwards) from a complete listing.
async fn remote_listing(
    remote: &dyn Remote,
    prefix: &RelPath,
    server_id: &str,
    head: Seq,
    cache: &mut Option<RemoteCache>,
) -> Result<BTreeMap<RelPath, RemoteEntry>> {
    if let Some(c) = cache
        .as_mut()
        .filter(|c| c.server_id == server_id && c.head <= head)
    {
        while c.head < head {
            let (changes, _) = retrying(|| remote.journal(c.head, 0)).await?;
            let Some(last) = changes.last().map(|v| v.seq) else {
                break;
            };
            for v in changes {
                let Some(rel) = v.path.strip_prefix(prefix).filter(|r| !r.is_root()) else {
                    continue;
                };
                if v.entry.is_live() {
                    c.entries.insert(
                        rel,
                        RemoteEntry {
                            seq: v.seq,
                            entry: v.entry,
                        },
                    );
                } else {
                    c.entries.remove(&rel);
                }
            }
            c.head = last;
        }
        if c.head >= head {
            return Ok(c.entries.clone());
        }
    }
    let listing = retrying(|| remote.tree(prefix, None, false)).await?;
    let entries: BTreeMap<RelPath, RemoteEntry> = listing
        .into_iter()
        .filter_map(|v| {
            let rel = v.path.strip_prefix(prefix)?;
            (!rel.is_root()).then_some((
                rel,
                RemoteEntry {
                    seq: v.seq,
                    entry: v.entry,
                },
            ))
        })
        .collect();
    *cache = Some(RemoteCache {
        server_id: server_id.to_string(),
        head,
        entries: entries.clone(),
    });
    Ok(entries)
}

/// Names that differ only in case cannot both live on a case-insensitive computer (Windows,
/// macOS by default): say so, once per pair, rather than let one silently shadow the other.
fn report_case_clashes(remote: &BTreeMap<RelPath, RemoteEntry>, progress: &dyn Progress) {
    let mut seen: std::collections::HashMap<String, &RelPath> = std::collections::HashMap::new();
    for path in remote.keys() {
        if let Some(other) = seen.insert(path.case_key(), path) {
            progress.event(ProgressEvent::Skipped {
                path: path.to_string(),
                reason: format!("name clash: {path} and {other} differ only in case; a case-insensitive computer cannot hold both"),
            });
        }
    }
}

/// Content hashes of local files: from the index when the stat is unchanged (unless the
/// consistency check asks to read everything), read from disk otherwise (or, when
/// `hash_changed` is off, left unknown: the planner then sees the file as changed).
async fn hash_local(
    root: &Arc<LocalRoot>,
    entries: &[LocalEntry],
    base: &BTreeMap<RelPath, IndexRow>,
    full: bool,
    hash_changed: bool,
) -> Result<(BTreeMap<RelPath, LocalState>, Vec<RelPath>)> {
    let mut out = BTreeMap::new();
    let mut to_hash = Vec::new();
    for e in entries {
        let known = base.get(&e.path).filter(|b| {
            !full
                && b.kind == e.kind
                && e.same_stat(b.size, b.mtime_ns, b.ctime_ns, b.inode)
                && b.mode == e.mode
        });
        let hash = match e.kind {
            EntryKind::File => match known {
                Some(b) => b.hash,
                // Upload-only: a changed file is read once, by the upload, which hashes it.
                None if !hash_changed => None,
                None => {
                    to_hash.push(e.clone());
                    continue;
                }
            },
            EntryKind::Symlink => e.target.as_ref().map(|t| ContentHash::of(t.as_bytes())),
            _ => None,
        };
        out.insert(
            e.path.clone(),
            LocalState {
                entry: e.clone(),
                hash,
            },
        );
    }
    let root = root.clone();
    let hashed = tokio::task::spawn_blocking(move || {
        to_hash
            .into_iter()
            .map(|e| {
                let h = hash_file(&root, &e.path);
                (e, h)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| Error::Refused(format!("hashing failed: {e}")))?;
    let mut unreadable = Vec::new();
    for (entry, hash) in hashed {
        match hash {
            Some(h) => {
                out.insert(
                    entry.path.clone(),
                    LocalState {
                        entry,
                        hash: Some(h),
                    },
                );
            }
            // Unreadable (or vanished mid-pass): not the same as deleted, so nothing is done
            // with this path on either side until it can be read.
            None => unreadable.push(entry.path),
        }
    }
    Ok((out, unreadable))
}
