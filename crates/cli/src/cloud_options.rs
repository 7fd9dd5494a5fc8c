//! The options of a cloud task that `cloud add` takes and `task set` changes, checked by one
//! function, [`apply`], for both: a value one command refuses, the other refuses the same way.
//!
//! `cloud add` builds a task from [`CloudTaskConfig::default`] and applies every option it was
//! given; `task set` applies only those given. The checks are the provider's rules
//! (`cairn_cloud::provider`: part sizes, storage classes, SSE, polling period, the cloud
//! filter's limits) and the schedule's syntax (`cairn_model::schedule`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cairn_cloud::provider::{filter as cloud_filter, PollPeriod, Provider};
use cairn_engine::reconcile::Direction;
use cairn_model::filter::normalize_ext;
use cairn_model::{RelPath, Schedule};
use clap::Args;

use crate::cloud_cmd::{CloudTaskConfig, DirectionArg, DEFAULT_POLL_SECS};
use crate::config::TaskConfig;

/// Files transferred at once: 1 to this many.
pub const MAX_TRANSFERS: usize = 64;
/// The part size when none is given, in MB.
pub const DEFAULT_PART_SIZE_MB: u64 = 8;

impl Default for CloudTaskConfig {
    fn default() -> Self {
        CloudTaskConfig {
            poll_secs: DEFAULT_POLL_SECS,
            part_size_mb: DEFAULT_PART_SIZE_MB,
            keep_versions: 0,
            encrypt: false,
            storage_class: None,
            sse: None,
            schedule: None,
            limit_upload: None,
            limit_download: None,
            encode_names: false,
        }
    }
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Self {
        match d {
            DirectionArg::Bidirectional => Direction::TwoWay,
            DirectionArg::UploadOnly => Direction::UploadOnly,
            DirectionArg::DownloadOnly => Direction::DownloadOnly,
        }
    }
}

/// The cloud-only options of `task set` (the ones every task has, such as `--transfers` or
/// `--max-size`, are `task set`'s own and reach [`apply`] too).
#[derive(Args, Default)]
pub struct CloudSetArgs {
    /// A cloud task's direction.
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,
    /// A cloud task's multipart part size in MB (the provider's bounds).
    #[arg(long)]
    pub part_size: Option<u64>,
    /// A cloud task's storage class of new objects (S3: standard, ia, one-zone-ia, rrs,
    /// glacier).
    #[arg(long)]
    pub storage_class: Option<String>,
    /// A cloud task's server-side encryption (AES-256) of new objects: true or false.
    #[arg(long)]
    pub sse: Option<bool>,
    /// A cloud task's weekly schedule: `always`, rules such as `mon-fri 09-18=suspend`, or a
    /// grid of 168 `1`/`0` (docs/cloud.md).
    #[arg(long)]
    pub schedule: Option<String>,
    /// A cloud task's own upload cap in KB/s, inside its connection's (0 = none of its own).
    #[arg(long)]
    pub up_limit: Option<u64>,
    /// A cloud task's own download cap in KB/s (0 = none of its own).
    #[arg(long)]
    pub down_limit: Option<u64>,
}

impl CloudSetArgs {
    /// The option names given, for the refusal on a task that is not a cloud task.
    pub fn given(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let flags = [
            (self.direction.is_some(), "--direction"),
            (self.part_size.is_some(), "--part-size"),
            (self.storage_class.is_some(), "--storage-class"),
            (self.sse.is_some(), "--sse"),
            (self.schedule.is_some(), "--schedule"),
            (self.up_limit.is_some(), "--up-limit"),
            (self.down_limit.is_some(), "--down-limit"),
        ];
        for (given, name) in flags {
            if given {
                out.push(name);
            }
        }
        out
    }
}

/// What to change in a cloud task; `None` leaves a setting as it is.
#[derive(Default)]
pub struct CloudChange {
    pub direction: Option<Direction>,
    pub keep_deleted: Option<bool>,
    pub transfers: Option<usize>,
    pub part_size_mb: Option<u64>,
    pub storage_class: Option<String>,
    pub sse: Option<bool>,
    pub max_size_mb: Option<u64>,
    pub exclude_names: Option<Vec<String>>,
    pub exclude_exts: Option<Vec<String>>,
    /// Sub-folders left out, relative to the local folder or absolute inside it.
    pub exclude_dirs: Option<Vec<PathBuf>>,
    pub schedule: Option<String>,
    pub poll_secs: Option<u64>,
    pub keep_versions: Option<usize>,
    /// KB/s; 0 takes the task's own cap away.
    pub up_limit_kb: Option<u64>,
    pub down_limit_kb: Option<u64>,
}

impl CloudChange {
    /// The change `task set` asks for: its common options and its cloud-only ones.
    pub fn from_set(common: CloudChange, cloud: &CloudSetArgs) -> CloudChange {
        CloudChange {
            direction: cloud.direction.map(Into::into).or(common.direction),
            part_size_mb: cloud.part_size,
            storage_class: cloud.storage_class.clone(),
            sse: cloud.sse,
            schedule: cloud.schedule.clone(),
            up_limit_kb: cloud.up_limit,
            down_limit_kb: cloud.down_limit,
            ..common
        }
    }
}

/// Applies `change` to the cloud task `task` (of a connection to `provider`), checking every
/// value first: on an error nothing is changed.
///
/// # Errors
/// The first value a rule refuses, named as the option it came from.
pub fn apply(task: &mut TaskConfig, provider: Provider, change: &CloudChange) -> Result<()> {
    let mut next = task.clone();
    apply_to(&mut next, provider, change)?;
    *task = next;
    Ok(())
}

fn apply_to(task: &mut TaskConfig, provider: Provider, ch: &CloudChange) -> Result<()> {
    if let Some(d) = ch.direction {
        task.drive
            .as_mut()
            .context("a cloud task without its sync settings")?
            .mode = d;
    }
    if let Some(k) = ch.keep_deleted {
        task.keep_deleted = k;
    }
    if let Some(t) = ch.transfers {
        if !(1..=MAX_TRANSFERS).contains(&t) {
            bail!("--transfers {t}: between 1 and {MAX_TRANSFERS} files at once");
        }
        task.transfers = t;
    }
    apply_filter(task, ch)?;
    let cloud = task.cloud.get_or_insert_with(CloudTaskConfig::default);
    if let Some(p) = ch.poll_secs {
        cloud.poll_secs = u64::from(PollPeriod::try_from_secs(p)?.as_secs());
    }
    if let Some(k) = ch.keep_versions {
        cloud.keep_versions = k;
    }
    if let Some(mb) = ch.part_size_mb {
        provider.part_size(mb)?;
        cloud.part_size_mb = mb;
    }
    if let Some(raw) = &ch.storage_class {
        let class = provider.storage_class(raw)?;
        if !matches!(provider.scheme(), "s3" | "azblob") {
            bail!("--storage-class {raw}: this build sets storage classes on S3 and Azure only");
        }
        cloud.storage_class = Some(class.api_value().to_string());
    }
    if let Some(on) = ch.sse {
        cloud.sse = provider.sse(on)?.map(|s| s.api_value().to_string());
    }
    if let Some(text) = &ch.schedule {
        cloud.schedule = Schedule::parse(text).map_err(|e| anyhow::anyhow!("--schedule: {e}"))?;
    }
    if let Some(kb) = ch.up_limit_kb {
        cloud.limit_upload = kb_per_sec("--up-limit", kb)?;
    }
    if let Some(kb) = ch.down_limit_kb {
        cloud.limit_download = kb_per_sec("--down-limit", kb)?;
    }
    Ok(())
}

/// A limit in KB/s (1000 bytes, as `cloud connect` counts them) to bytes per second; 0 is none.
fn kb_per_sec(option: &str, kb: u64) -> Result<Option<u64>> {
    let bytes = kb
        .checked_mul(1000)
        .with_context(|| format!("{option} {kb}: too large"))?;
    Ok(Some(bytes).filter(|b| *b > 0))
}

/// The filter options, with the cloud task's limits (seed 002): at most 10,240 MB, rules of 1
/// to 255 characters, sub-folders inside the local folder.
fn apply_filter(task: &mut TaskConfig, ch: &CloudChange) -> Result<()> {
    if let Some(mb) = ch.max_size_mb {
        task.filter.max_size = cloud_filter::max_size_bytes(mb)?;
    }
    if let Some(names) = &ch.exclude_names {
        for n in names.iter().filter(|n| !n.is_empty()) {
            cloud_filter::check_rule("--exclude-name", n)?;
        }
        task.filter.names = names.iter().filter(|n| !n.is_empty()).cloned().collect();
    }
    if let Some(exts) = &ch.exclude_exts {
        for e in exts.iter().filter(|e| !e.is_empty()) {
            cloud_filter::check_rule("--exclude-ext", e)?;
        }
        task.filter.exts = exts
            .iter()
            .map(|e| normalize_ext(e))
            .filter(|e| !e.is_empty())
            .collect();
    }
    if let Some(dirs) = &ch.exclude_dirs {
        let local = task
            .locals
            .first()
            .context("a cloud task without its local folder")?
            .clone();
        task.filter.excluded_dirs = dirs
            .iter()
            .filter(|d| !d.as_os_str().is_empty())
            .map(|d| sub_folder(&local, d))
            .collect::<Result<_>>()?;
    }
    Ok(())
}

/// A sub-folder of `local` given relative to it, or absolute inside it.
fn sub_folder(local: &Path, dir: &Path) -> Result<RelPath> {
    let rel = if dir.is_absolute() {
        dir.strip_prefix(local).with_context(|| {
            format!(
                "--exclude-dir {}: not inside {}",
                dir.display(),
                local.display()
            )
        })?
    } else {
        dir
    };
    let text = rel
        .to_str()
        .with_context(|| format!("--exclude-dir {}: not UTF-8", dir.display()))?;
    let path = RelPath::parse(text.trim_matches('/'))
        .with_context(|| format!("--exclude-dir {}", dir.display()))?;
    if path.is_root() {
        bail!(
            "--exclude-dir {}: that is the whole folder; name a sub-folder",
            dir.display()
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_cloud::provider::S3Preset;

    fn task() -> TaskConfig {
        TaskConfig {
            kind: "cloud".into(),
            locals: vec![PathBuf::from("/home/ann/docs")],
            connection: "s3".into(),
            folder: "docs".into(),
            computer: "pc".into(),
            filter: cairn_model::Filter::default(),
            keep_deleted: false,
            transfers: 3,
            drive: Some(crate::config::DriveConfig {
                sub: String::new(),
                mode: Direction::TwoWay,
                conflict: cairn_engine::reconcile::ConflictPolicy::KeepLatest,
                keep_conflict_copy: false,
                consistency_check: false,
                read_only: false,
                on_relink: "merge".into(),
            }),
            cloud: Some(CloudTaskConfig::default()),
        }
    }

    #[test]
    fn a_refused_value_changes_nothing_even_after_good_ones() {
        let mut t = task();
        let before = serde_json::to_value(&t).expect("serialises");
        let change = CloudChange {
            transfers: Some(9),
            schedule: Some("mon 09-18=suspend".into()),
            part_size_mb: Some(4),
            ..CloudChange::default()
        };
        let err = apply(&mut t, Provider::S3(S3Preset::Aws), &change).expect_err("4 MB parts");
        assert!(err.to_string().contains("5 to 5120 MB"), "{err}");
        assert_eq!(serde_json::to_value(&t).expect("serialises"), before);
    }

    #[test]
    fn sub_folders_are_inside_the_local_folder() {
        let mut t = task();
        let change = CloudChange {
            exclude_dirs: Some(vec![
                PathBuf::from("/home/ann/docs/build/"),
                PathBuf::from("cache"),
            ]),
            ..CloudChange::default()
        };
        apply(&mut t, Provider::S3(S3Preset::Aws), &change).expect("both inside");
        let dirs: Vec<&str> = t.filter.excluded_dirs.iter().map(|d| d.as_str()).collect();
        assert_eq!(dirs, ["build", "cache"]);
        for outside in ["/home/bob", "../up", "/home/ann/docs"] {
            let change = CloudChange {
                exclude_dirs: Some(vec![PathBuf::from(outside)]),
                ..CloudChange::default()
            };
            assert!(
                apply(&mut t, Provider::S3(S3Preset::Aws), &change).is_err(),
                "{outside}"
            );
        }
    }

    #[test]
    fn a_task_cap_is_kept_in_bytes_and_zero_removes_it() {
        let mut t = task();
        let set = |kb| CloudChange {
            up_limit_kb: Some(kb),
            ..CloudChange::default()
        };
        apply(&mut t, Provider::S3(S3Preset::Aws), &set(250)).expect("a cap");
        assert_eq!(t.cloud.as_ref().and_then(|c| c.limit_upload), Some(250_000));
        apply(&mut t, Provider::S3(S3Preset::Aws), &set(0)).expect("no cap");
        assert_eq!(t.cloud.as_ref().and_then(|c| c.limit_upload), None);
        assert!(apply(&mut t, Provider::S3(S3Preset::Aws), &set(u64::MAX)).is_err());
    }
}
