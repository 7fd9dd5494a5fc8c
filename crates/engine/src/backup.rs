//! Backup tasks: one upload-only pass per local root that makes the remote hold what the root
//! holds. Only what the remote lacks travels (the remote's replica decides how: the cairn
//! server's sends only missing chunks). A file is sent only if it is still the version listed
//! after reading it (DESIGN.md invariant 6); otherwise it is reported and retried next pass.

use std::path::PathBuf;
use std::sync::Arc;

use cairn_model::{Filter, RelPath};

use crate::executor::{PassStats, Planned};
use crate::index::LocalIndex;
use crate::pass::{self, PassSpec};
use crate::reconcile::{ConflictPolicy, Direction, Guards};
use crate::replica::{LocalReplica, Replica};
use crate::scanner;
use crate::{Progress, Result};

/// One local folder of a task and where it lands in the remote folder.
#[derive(Clone, Debug)]
pub struct BackupRoot {
    pub local: PathBuf,
    pub remote_prefix: RelPath,
}

#[derive(Clone, Debug)]
pub struct BackupOptions {
    pub filter: Filter,
    pub keep_deleted: bool,
    pub transfers: usize,
    /// Lets a pass delete on the server although the local folder became empty.
    pub confirm_deletes: bool,
    /// Plan only and report (`BackupStats::planned`); change nothing.
    pub dry_run: bool,
}

#[derive(Debug, Default)]
pub struct BackupStats {
    pub files_uploaded: u64,
    pub dirs_recorded: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub bytes_sent: u64,
    pub chunks_sent: u64,
    pub failed: u64,
    pub reported: u64,
    /// A dry run: what the pass would do, and why.
    pub planned: Vec<Planned>,
}

/// Runs one backup pass over every root of `task`: the one [`pass`] every task runs,
/// upload-only, without the half-delete guard (the server keeps every deleted file as a
/// version).
///
/// # Errors
/// A missing or unreadable root, a failed remote listing, or a local index failure stop the
/// pass before anything is deleted. Failures of single files are reported through `progress`
/// and counted in the stats instead.
pub async fn run(
    task: &str,
    roots: &[BackupRoot],
    remote_at: &(dyn Fn(&RelPath) -> Arc<dyn Replica> + Sync),
    index: &mut LocalIndex,
    opts: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupStats> {
    let mut stats = BackupStats::default();
    for r in roots {
        scanner::check_root(&r.local)?;
    }
    for (i, root) in roots.iter().enumerate() {
        let local = LocalReplica::open(&root.local, opts.filter.clone())?;
        let remote = remote_at(&root.remote_prefix);
        let spec = PassSpec {
            task,
            root_no: i as u32,
            direction: Direction::UploadOnly,
            policy: ConflictPolicy::KeepLatest,
            keep_conflict_copy: false,
            keep_deleted: opts.keep_deleted,
            consistency_check: false,
            filter: &opts.filter,
            transfers: opts.transfers,
            computer: "",
            guards: Guards {
                confirm_deletes: opts.confirm_deletes,
                half_deletes: false,
            },
            dry_run: opts.dry_run,
        };
        let pass = pass::run(
            &spec,
            &local,
            remote.as_ref(),
            index,
            None,
            progress.clone(),
        )
        .await?;
        stats.add(&pass);
    }
    Ok(stats)
}

impl BackupStats {
    fn add(&mut self, p: &PassStats) {
        self.files_uploaded += p.uploaded - p.recorded;
        self.dirs_recorded += p.recorded;
        self.deleted += p.deleted_remote;
        self.unchanged += p.unchanged;
        self.bytes_sent += p.bytes_sent;
        self.chunks_sent += p.chunks_sent;
        self.failed += p.failed;
        self.reported += p.reported;
        self.planned.extend(p.planned.iter().cloned());
    }
}
