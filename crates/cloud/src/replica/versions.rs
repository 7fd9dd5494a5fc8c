//! Versions kept on the remote (`--keep-versions N`): a replaced or deleted file is copied
//! into `.cairn/versions/<path>/` first, under a name that sorts by time and carries the
//! version token it had; the oldest beyond N are pruned.

use std::collections::BTreeMap;

use cairn_engine::replica::{Outcome, Version};
use cairn_engine::{Error, Result};
use cairn_model::{EntryKind, RelPath};
use opendal::Operator;

use super::CloudReplica;

const VERSIONS: &str = ".cairn/versions";

fn folder_of(path: &RelPath) -> String {
    format!("{VERSIONS}/{}/", path.as_str())
}

/// A version token as part of an object name.
fn token_name(version: &Version) -> String {
    version
        .0
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Keeps the file at `path` (if any) as a version before it is replaced or deleted.
pub(super) async fn save(r: &CloudReplica, path: &RelPath) -> Result<()> {
    if r.opts.keep_versions == 0 {
        return Ok(());
    }
    let Some(now) = r.current(path).await? else {
        return Ok(());
    };
    if now.kind != EntryKind::File {
        return Ok(());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let folder = folder_of(path);
    let dest = format!("{folder}{stamp:020}_{}", token_name(&now.version));
    super::write::copy_object(r, path.as_str(), &dest)
        .await
        .map_err(|e| r.fail("keeping the old version", path.as_str(), e))?;
    prune(r, &folder).await
}

async fn names(r: &CloudReplica, folder: &str) -> Result<Vec<String>> {
    names_in(&r.op, folder)
        .await
        .map_err(|e| r.fail("listing versions", folder, e))
}

/// The kept versions' keys in `folder`, sorted (oldest first).
async fn names_in(op: &Operator, folder: &str) -> opendal::Result<Vec<String>> {
    let mut names: Vec<String> = match op.list(folder).await {
        Ok(entries) => entries
            .iter()
            .map(|e| e.path().to_string())
            .filter(|p| !p.ends_with('/'))
            .collect(),
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    names.sort();
    Ok(names)
}

async fn prune(r: &CloudReplica, folder: &str) -> Result<()> {
    let names = names(r, folder).await?;
    let extra = names.len().saturating_sub(r.opts.keep_versions);
    for old in &names[..extra] {
        r.op.delete(old)
            .await
            .map_err(|e| r.fail("pruning an old version", old, e))?;
    }
    Ok(())
}

/// The kept versions of `path`, oldest first: (object key, time in ns, version token name).
pub(super) async fn list_versions(r: &CloudReplica, path: &RelPath) -> Result<Vec<(String, i64)>> {
    let folder = folder_of(path);
    Ok(names(r, &folder)
        .await?
        .into_iter()
        .filter_map(|key| {
            let name = key.rsplit('/').next()?.to_string();
            let stamp = name.split('_').next()?.parse::<i64>().ok()?;
            Some((key, stamp))
        })
        .collect())
}

/// Where the kept `version` of a path would be: found by [`KeptName::find`] when asked, so
/// a copy made after this was built is found too.
pub(super) struct KeptName {
    folder: String,
    suffix: String,
}

impl KeptName {
    /// The newest object holding this version, if one is kept.
    pub(super) async fn find(&self, op: &Operator) -> opendal::Result<Option<String>> {
        Ok(names_in(op, &self.folder)
            .await?
            .into_iter()
            .rev()
            .find(|k| k.ends_with(&self.suffix)))
    }
}

/// Where `path`'s kept `version` would be; `None` when the task keeps no versions.
pub(super) fn kept_name(r: &CloudReplica, path: &RelPath, version: &Version) -> Option<KeptName> {
    (r.opts.keep_versions > 0).then(|| KeptName {
        folder: folder_of(path),
        suffix: format!("_{}", token_name(version)),
    })
}

/// The object holding the kept `version` of `path`, if it is still kept.
pub(super) async fn find(
    r: &CloudReplica,
    path: &RelPath,
    version: &Version,
) -> Result<Option<String>> {
    let Some(kept) = kept_name(r, path, version) else {
        return Ok(None);
    };
    kept.find(&r.op)
        .await
        .map_err(|e| r.fail("listing versions", &kept.folder, e))
}

/// Makes the kept `version` of `path` its head again, if the head is still `expect`.
pub(super) async fn promote(
    r: &CloudReplica,
    path: &RelPath,
    version: &Version,
    expect: &Version,
) -> Result<Outcome> {
    if let Some(changed) = r.check(path, Some(expect)).await? {
        return Ok(changed);
    }
    let kept = find(r, path, version).await?.ok_or_else(|| {
        Error::Refused(format!(
            "{}/{path}: no kept version {}",
            r.describe, version.0
        ))
    })?;
    save(r, path).await?;
    super::write::copy_object(r, &kept, path.as_str())
        .await
        .map_err(|e| r.fail("restoring a kept version", path.as_str(), e))?;
    Ok(Outcome::Done(r.current(path).await?))
}

/// Every kept version under `under` (the whole task for the root), by path, oldest first.
pub(super) async fn all_kept(
    r: &CloudReplica,
    under: &RelPath,
) -> Result<BTreeMap<RelPath, Vec<(String, i64)>>> {
    let prefix = if under.is_root() {
        format!("{VERSIONS}/")
    } else {
        folder_of(under)
    };
    let entries = match r.op.list_with(&prefix).recursive(true).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(r.fail("listing versions", &prefix, e)),
    };
    let mut out: BTreeMap<RelPath, Vec<(String, i64)>> = BTreeMap::new();
    for e in entries {
        let key = e.path().trim_start_matches('/').to_string();
        let Some((folder, name)) = key.rsplit_once('/') else {
            continue;
        };
        let Some(path) = folder
            .strip_prefix(VERSIONS)
            .map(|p| p.trim_start_matches('/'))
        else {
            continue;
        };
        let (Ok(path), Some(stamp)) = (
            RelPath::parse(path),
            name.split('_').next().and_then(|s| s.parse::<i64>().ok()),
        ) else {
            continue;
        };
        out.entry(path).or_default().push((key, stamp));
    }
    for v in out.values_mut() {
        v.sort_by_key(|(_, stamp)| *stamp);
    }
    Ok(out)
}
