//! `cairn versions` and `cairn restore` for cloud tasks: the versions a task keeps on the
//! remote (`--keep-versions N`, in `.cairn/versions/`) and the head, written back here
//! through the no-follow local replica. An encrypted task's are read through its key: names
//! and contents are decrypted as a run would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cairn_cloud::crypt::{self, EncryptedReplica};
use cairn_cloud::encoded::EncodedReplica;
use cairn_cloud::CloudReplica;
use cairn_engine::replica::{Content, LocalReplica, NewEntry, Outcome, Replica};
use cairn_model::{EntryKind, Filter, RelPath};

use crate::config::{Config, Home, TaskConfig};

/// A cloud task's remote path, through its encryption when it has one.
enum Remote {
    Plain(CloudReplica),
    Encrypted(EncryptedReplica<CloudReplica>),
    /// `--encode-names`: versions are kept under the stored (encoded) names.
    Encoded(EncodedReplica<CloudReplica>),
}

impl Remote {
    /// Task `name`'s remote; an encrypted one is opened with the task's key file (as a run
    /// opens it: nothing is read before the key is checked against the remote's marker).
    async fn open(home: &Home, config: &Config, name: &str, task: &TaskConfig) -> Result<Self> {
        let replica = crate::cloud_cmd::cloud_replica(home, config, &task.connection, task, false)?;
        if !task.cloud.as_ref().is_some_and(|c| c.encrypt) {
            return Ok(match crate::cloud_cmd::encoded_names(config, task) {
                Some(provider) => Remote::Encoded(EncodedReplica::new(replica, provider)),
                None => Remote::Plain(replica),
            });
        }
        let key = crypt::read_key_file(&crate::cloud_cmd::key_path(home, name))?;
        Ok(Remote::Encrypted(
            EncryptedReplica::open_with_key(replica, key).await?,
        ))
    }

    fn replica(&self) -> &dyn Replica {
        match self {
            Remote::Plain(r) => r,
            Remote::Encrypted(r) => r,
            Remote::Encoded(r) => r,
        }
    }

    fn describe(&self) -> String {
        self.replica().describe()
    }

    async fn kept_versions(&self, path: &RelPath) -> Result<Vec<(String, i64)>> {
        Ok(match self {
            Remote::Plain(r) => r.kept_versions(path).await?,
            Remote::Encrypted(r) => r.kept_versions(path).await?,
            Remote::Encoded(r) => r.inner().kept_versions(&r.stored(path)?).await?,
        })
    }

    async fn all_kept_versions(
        &self,
        under: &RelPath,
    ) -> Result<BTreeMap<RelPath, Vec<(String, i64)>>> {
        Ok(match self {
            Remote::Plain(r) => r.all_kept_versions(under).await?,
            Remote::Encrypted(r) => r.all_kept_versions(under).await?,
            Remote::Encoded(r) => r
                .inner()
                .all_kept_versions(&r.stored(under)?)
                .await?
                .into_iter()
                .filter_map(|(stored, kept)| Some((r.plain(&stored).ok()?, kept)))
                .collect(),
        })
    }

    async fn read_kept(&self, key: &str) -> Result<Content<'static>> {
        Ok(match self {
            Remote::Plain(r) => r.read_kept(key).await?,
            Remote::Encrypted(r) => r.read_kept(key).await?,
            Remote::Encoded(r) => r.inner().read_kept(key).await?,
        })
    }

    async fn kept_size(&self, key: &str) -> Result<u64> {
        Ok(match self {
            Remote::Plain(r) => r.kept_size(key).await?,
            Remote::Encrypted(r) => r.kept_size(key).await?,
            Remote::Encoded(r) => r.inner().kept_size(key).await?,
        })
    }
}

/// Where `path` (a file or folder in the task's local folder) is in the task.
fn relative(task: &TaskConfig, path: &Path) -> Result<RelPath> {
    let root = &task.locals[0];
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let rest = abs
        .strip_prefix(root)
        .with_context(|| format!("{} is not inside {}", path.display(), root.display()))?;
    let text = rest
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", rest.display()))?;
    Ok(RelPath::parse(text.trim_end_matches('/'))?)
}

pub async fn versions(
    home: &Home,
    config: &Config,
    name: &str,
    task: &TaskConfig,
    path: &Path,
) -> Result<()> {
    let replica = Remote::open(home, config, name, task).await?;
    let rel = relative(task, path)?;
    let head = replica.replica().stat(&rel).await?;
    let kept = replica.kept_versions(&rel).await?;
    if head.is_none() && kept.is_empty() {
        bail!(
            "{} has no versions on {}",
            path.display(),
            replica.describe()
        );
    }
    println!("{:>8}  {:<20}  {:>12}", "version", "replaced", "size");
    for (i, (key, stamp)) in kept.iter().enumerate() {
        let size = replica.kept_size(key).await?;
        println!(
            "{:>8}  {:<20}  {size:>12}",
            i + 1,
            cairn_model::timespec::format_instant(*stamp)
        );
    }
    if let Some(h) = head {
        println!("{:>8}  {:<20}  {:>12}", "head", "-", h.size);
    }
    Ok(())
}

/// What to write for one path: the head, or a kept version's object.
enum Source {
    Head(cairn_engine::replica::ReplicaEntry),
    Kept(String),
}

/// The source of each file under `rel` as it was at `at` (now when `None`): the earliest
/// version replaced after `at`, else the head if it was written by then.
async fn sources(
    replica: &Remote,
    rel: &RelPath,
    at: Option<i64>,
) -> Result<BTreeMap<RelPath, Source>> {
    let listing = replica.replica().list().await?;
    let under = |p: &RelPath| rel.is_root() || p == rel || p.starts_with(rel);
    let mut out = BTreeMap::new();
    for (path, e) in listing.entries.iter().filter(|(p, _)| under(p)) {
        if e.kind == EntryKind::File && at.is_none_or(|t| e.mtime_ns <= t) {
            out.insert(path.clone(), Source::Head(e.clone()));
        }
    }
    if let Some(t) = at {
        for (path, kept) in replica.all_kept_versions(rel).await? {
            if let Some((key, _)) = kept.into_iter().find(|(_, stamp)| *stamp > t) {
                out.insert(path, Source::Kept(key));
            }
        }
    }
    Ok(out)
}

pub async fn restore(
    home: &Home,
    config: &Config,
    name: &str,
    task: &TaskConfig,
    path: Option<&Path>,
    at: Option<i64>,
    to: Option<&Path>,
) -> Result<()> {
    let replica = Remote::open(home, config, name, task).await?;
    let rel = match path {
        Some(p) => relative(task, p)?,
        None => RelPath::root(),
    };
    let plan = sources(&replica, &rel, at).await?;
    if plan.is_empty() {
        bail!("nothing to restore under {rel} on {}", replica.describe());
    }
    let dest: PathBuf = match to {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.to_path_buf()
        }
        None => task.locals[0].clone(),
    };
    let local = LocalReplica::open(&dest, Filter::default())?;
    let (mut done, mut failed) = (0, 0);
    for (path, source) in plan {
        let target = match to {
            // Below `--to`, the restored item keeps its own name.
            Some(_) => match rel.parent() {
                Some(parent) if !parent.is_root() => {
                    path.strip_prefix(&parent).unwrap_or_else(|| path.clone())
                }
                _ => path.clone(),
            },
            None => path.clone(),
        };
        match restore_one(&replica, &local, &path, &target, source).await {
            Ok(()) => done += 1,
            Err(e) => {
                failed += 1;
                eprintln!("not restored: {target}: {e:#}");
            }
        }
    }
    println!("restored {done} files into {}", dest.display());
    if failed > 0 {
        bail!("{failed} files could not be restored (listed above)");
    }
    Ok(())
}

/// Restores the remote's `path` from `source` to `target` here (they differ below `--to`).
async fn restore_one(
    replica: &Remote,
    local: &LocalReplica,
    path: &RelPath,
    target: &RelPath,
    source: Source,
) -> Result<()> {
    let data = match &source {
        Source::Head(e) => {
            cairn_engine::replica::collect(replica.replica().read(path, &e.version).await?).await?
        }
        Source::Kept(key) => cairn_engine::replica::collect(replica.read_kept(key).await?).await?,
    };
    let entry = NewEntry {
        kind: EntryKind::File,
        size: data.len() as u64,
        mtime_ns: crate::run::now_ns(),
        mode: 0o644,
        hash: Some(cairn_model::ContentHash::of(&data)),
        target: None,
    };
    let expect = local.stat(target).await?.map(|e| e.version);
    match local
        .write(
            target,
            &entry,
            cairn_engine::replica::content_of(data.into()),
            expect.as_ref(),
        )
        .await?
    {
        Outcome::Done(_) => Ok(()),
        Outcome::Changed(_) => bail!("changed here while it was restored; left as it is"),
    }
}
