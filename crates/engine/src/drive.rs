//! Drive tasks: two-way (or download-only) sync between a local folder and a folder on a cairn
//! server. A drive pass is the one [`pass`] every task runs, with the half-delete guard on.

use std::path::Path;
use std::sync::Arc;

use cairn_model::Filter;

use crate::executor::PassStats;
use crate::index::LocalIndex;
pub use crate::pass::RemoteCache;
use crate::pass::{self, PassSpec};
use crate::reconcile::{ConflictPolicy, Direction, Guards};
use crate::replica::{LocalReplica, Replica};
use crate::{Progress, Result};

#[derive(Clone, Debug)]
pub struct DriveOptions {
    pub direction: Direction,
    pub policy: ConflictPolicy,
    pub keep_conflict_copy: bool,
    pub consistency_check: bool,
    pub filter: Filter,
    pub transfers: usize,
    pub computer: String,
    /// Let a pass through that deletes more than half of the files, or follows an emptied
    /// local folder.
    pub confirm_deletes: bool,
    /// "Don't remove files": a deletion on either side is not carried to the other.
    pub keep_deleted: bool,
    /// Plan only and report (`DriveStats::planned`); change nothing.
    pub dry_run: bool,
}

/// What a drive pass did.
pub type DriveStats = PassStats;

/// Runs one pass of a drive task whose local folder is `root` and whose remote folder (part) is
/// `remote`.
///
/// # Errors
/// As [`pass::run`].
#[allow(clippy::too_many_arguments)]
pub async fn run(
    task: &str,
    root: &Path,
    remote: &dyn Replica,
    index: &mut LocalIndex,
    opts: &DriveOptions,
    cache: &mut Option<RemoteCache>,
    progress: Arc<dyn Progress>,
) -> Result<DriveStats> {
    let local = LocalReplica::open(root, opts.filter.clone())?;
    let spec = PassSpec {
        task,
        root_no: 0,
        direction: opts.direction,
        policy: opts.policy,
        keep_conflict_copy: opts.keep_conflict_copy,
        keep_deleted: opts.keep_deleted,
        consistency_check: opts.consistency_check,
        filter: &opts.filter,
        transfers: opts.transfers,
        computer: &opts.computer,
        guards: Guards {
            confirm_deletes: opts.confirm_deletes,
            half_deletes: true,
        },
        dry_run: opts.dry_run,
    };
    pass::run(&spec, &local, remote, index, Some(cache), progress).await
}
