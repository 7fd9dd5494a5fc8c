//! The base of a pass: what both sides agreed on last time, read from the index row by row.
//! Paths unchanged on both sides leave the listings as their rows go by
//! ([`Sieve`](crate::reconcile::unchanged::Sieve)), so only changed paths reach the planner.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cairn_model::RelPath;

use super::PassSpec;
use crate::index::{IndexRow, LocalIndex};
use crate::reconcile::{unchanged::Sieve, Direction};
use crate::replica::{Cursor, Replica, ReplicaEntry};
use crate::retry::retrying;
use crate::sift::{Fingerprints, HERE, THERE};
use crate::{Progress, ProgressEvent, Result};

/// The base of the changed paths, and how many paths were left out as unchanged.
pub(super) struct Base {
    pub rows: BTreeMap<RelPath, IndexRow>,
    pub unchanged: usize,
}

/// The two listings of a pass, before planning.
pub(super) struct Sides<'a> {
    pub local: &'a mut BTreeMap<RelPath, ReplicaEntry>,
    pub remote: &'a mut BTreeMap<RelPath, ReplicaEntry>,
    pub cursor: Option<&'a Cursor>,
}

/// What a pass knows of its base before it lists: whether the remote is the one synced with,
/// what the remote lost, and the fingerprints the listings are sifted with.
pub(super) struct Prepared {
    damaged: HashSet<RelPath>,
    other: bool,
    identity: Option<String>,
    pub prints: Option<Arc<Fingerprints>>,
}

/// Reads what the listings need of the base. Paths whose content the remote lost part of are
/// never left out: when uploading, they have no base, so they are sent again.
pub(super) async fn prepare(
    spec: &PassSpec<'_>,
    remote: &dyn Replica,
    // `&mut`: a shared borrow of the index (not `Sync`) would make the pass's future not `Send`.
    index: &mut LocalIndex,
    identity: Option<String>,
) -> Result<Prepared> {
    let task = spec.task;
    let damaged: HashSet<RelPath> = if spec.direction == Direction::UploadOnly {
        retrying(|| remote.damaged()).await?.into_iter().collect()
    } else {
        HashSet::new()
    };
    let known = index.server_of(task)?;
    let other = matches!((&known, &identity), (Some(k), Some(id)) if !same_remote(k, id));
    // A consistency check reads every file: nothing is taken as unchanged by its stat.
    let prints = if other || spec.consistency_check {
        None
    } else {
        let damaged: HashSet<&str> = damaged.iter().map(RelPath::as_str).collect();
        let prints = Fingerprints::build(|f| {
            index.each_versions(task, spec.root_no, &mut |row| {
                if !damaged.contains(row.path) {
                    f(row);
                }
            })
        })?;
        Some(Arc::new(prints))
    };
    Ok(Prepared {
        damaged,
        other,
        identity,
        prints,
    })
}

/// Reads the base of this root. A different remote, or one that went back in time (restored
/// from an older copy of its data), voids the base: both sides are merged as if never
/// synced, which deletes nothing.
pub(super) async fn load(
    spec: &PassSpec<'_>,
    local_side: &dyn Replica,
    remote: &dyn Replica,
    index: &mut LocalIndex,
    prepared: Prepared,
    sides: Sides<'_>,
    progress: &Arc<dyn Progress>,
) -> Result<Base> {
    let task = spec.task;
    let Prepared {
        damaged,
        other,
        identity,
        prints,
    } = prepared;
    let mut went_back = false;
    let mut base = Base {
        rows: BTreeMap::new(),
        unchanged: 0,
    };
    if !other {
        let sieving = !spec.consistency_check;
        let (local, remote_map) = (sides.local, sides.remote);
        let mut sieve = Sieve::new(local, remote_map).with_prints(prints.as_deref());
        let mut whole = Vec::new();
        // Rows both listings matched are the bulk of a re-run: counted, never built. (Their
        // version is the one listed, so it cannot be ahead of the listing's cursor either.)
        let mut matched = 0;
        let mut skip = |path: &str| {
            let both = prints
                .as_deref()
                .is_some_and(|p| p.marks(path) == HERE | THERE);
            matched += usize::from(both);
            both
        };
        index.each_unless(task, spec.root_no, &mut skip, &mut |row| {
            went_back |= sides
                .cursor
                .is_some_and(|c| remote.went_back(&row.right, c));
            if damaged.contains(&row.path) {
                progress.event(ProgressEvent::Skipped {
                    path: row.path.to_string(),
                    reason: "the server lost part of this file; sending it again".into(),
                });
            } else if sieving {
                sieve.row(row);
            } else {
                whole.push((row.path.clone(), row));
            }
        })?;
        base.unchanged = sieve.unchanged + matched;
        base.rows = if sieving {
            sieve.base()
        } else {
            BTreeMap::from_iter(whole)
        };
    }
    if other || went_back {
        progress.event(ProgressEvent::Skipped {
            path: local_side.describe(),
            reason: "the server is not the one last synced with (or was restored from an older copy): merging both sides, deleting nothing".into(),
        });
        // The old base means nothing on this server: forget it for good, so later passes
        // start from what this merge agrees on. Paths already left out as unchanged are
        // merged by the next pass, without a base: nothing of theirs is deleted either.
        if !spec.dry_run {
            index.forget_root(task, spec.root_no)?;
        }
        base.rows.clear();
    }
    if let Some(id) = identity.filter(|_| !spec.dry_run) {
        index.set_server(task, &id)?;
    }
    Ok(base)
}

/// Whether identity `now` is the remote an index kept as `known`. An identity kept before
/// remotes named a part of themselves (a server folder's incarnation, `SERVER#N`) matches
/// every part: one pass after an upgrade then keeps its base, and stores the full identity.
pub(super) fn same_remote(known: &str, now: &str) -> bool {
    known == now
        || now
            .strip_prefix(known)
            .is_some_and(|rest| rest.starts_with('#') && !known.contains('#'))
}
