//! A cloud path's listing as the engine sees it.

use cairn_engine::replica::{Listing, ReplicaEntry, Version};
use cairn_engine::Result;
use cairn_model::{EntryKind, RelPath};
use futures_util::TryStreamExt;
use opendal::Metadata;

use super::{CloudReplica, HIDDEN_MARKER, RESERVED_PREFIX};

/// Every entry under the replica's root, with the folders implied by the objects' names;
/// and the keys of the staging folder's files where the listing saw them (a WebDAV listing
/// in one request does).
pub(super) async fn list(r: &CloudReplica) -> Result<(Listing, Option<Vec<String>>)> {
    let mut out = Listing::default();
    let mut staged = None;
    let whole = match r.dav.as_ref() {
        Some(dav) => super::dav_list::list_all(r, dav).await?,
        None => None,
    };
    let entries: Vec<(String, Metadata)> = if let Some(whole) = whole {
        staged = Some(staging_files(r, &whole));
        whole
    } else if r.caps().list_with_recursive {
        let lister =
            r.op.lister_with("")
                .recursive(true)
                .await
                .map_err(|e| r.fail("listing", "", e))?;
        let listed: Vec<opendal::Entry> = lister
            .try_collect()
            .await
            .map_err(|e| r.fail("listing", "", e))?;
        listed.into_iter().map(opendal::Entry::into_parts).collect()
    } else {
        walk(r)
            .await?
            .into_iter()
            .map(opendal::Entry::into_parts)
            .collect()
    };
    for (key, meta) in &entries {
        let mut raw = key.trim_start_matches('/');
        // A hidden marker stands for its folder.
        let hidden = r.hidden_markers && raw.rsplit('/').next() == Some(HIDDEN_MARKER);
        if hidden {
            raw = raw.strip_suffix(HIDDEN_MARKER).unwrap_or(raw);
        }
        let is_dir = hidden || raw.ends_with('/') || meta.is_dir();
        let name = raw.trim_end_matches('/');
        if name.is_empty() || reserved(name) {
            continue;
        }
        let path = match RelPath::parse(name) {
            Ok(p) => p,
            Err(err) => {
                out.skipped.push((name.to_string(), err.to_string()));
                continue;
            }
        };
        add_parents(&mut out, &path);
        let entry = if is_dir {
            dir_entry()
        } else {
            r.entry_of(meta, path.as_str())
        };
        // A file and a folder marker of one name: the file is what users see.
        if is_dir && out.entries.contains_key(&path) {
            continue;
        }
        out.entries.insert(path, entry);
    }
    Ok((out, staged))
}

/// The staging folder's files in a whole listing; the folder, seen, needs no making.
fn staging_files(r: &CloudReplica, whole: &[(String, Metadata)]) -> Vec<String> {
    let dir = format!("{}/", super::STAGING);
    if whole.iter().any(|(k, _)| *k == dir) {
        r.staging_ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    whole
        .iter()
        .filter(|(k, m)| !m.is_dir() && k.strip_prefix(&dir).is_some_and(|n| !n.contains('/')))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Every entry under the root, one folder listing at a time. OpenDAL simulates a recursive
/// listing for services without one, and under its retry layer a folder whose listing failed
/// was skipped, not retried: a pass then saw that folder's files as deleted (found by the
/// fault runs on WebDAV). Here a folder's listing either completes or fails the whole listing.
async fn walk(r: &CloudReplica) -> Result<Vec<opendal::Entry>> {
    let mut out = Vec::new();
    let mut folders = vec![String::new()];
    while let Some(folder) = folders.pop() {
        let listed = match r.op.list(&folder).await {
            Ok(listed) => listed,
            // The root not made yet is an empty root; a folder gone since its parent was
            // listed is gone.
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(r.fail("listing", &folder, e)),
        };
        for e in listed {
            let key = e.path().trim_start_matches('/');
            if key.is_empty() || key == folder {
                continue;
            }
            if (key.ends_with('/') || e.metadata().is_dir()) && !reserved(key) {
                let mut sub = key.to_string();
                if !sub.ends_with('/') {
                    sub.push('/');
                }
                folders.push(sub);
            }
            out.push(e);
        }
    }
    Ok(out)
}

/// Our own names: `.cairn...` at the top.
pub(super) fn reserved(name: &str) -> bool {
    name.split('/')
        .next()
        .is_some_and(|first| first.starts_with(RESERVED_PREFIX))
}

fn add_parents(out: &mut Listing, path: &RelPath) {
    let mut parent = path.parent();
    while let Some(p) = parent {
        if p.is_root() {
            break;
        }
        out.entries.entry(p.clone()).or_insert_with(dir_entry);
        parent = p.parent();
    }
}

/// Folders have no content: one version for all.
pub(super) fn dir_entry() -> ReplicaEntry {
    ReplicaEntry {
        kind: EntryKind::Dir,
        size: 0,
        mtime_ns: 0,
        mode: 0o755,
        hash: None,
        target: None,
        version: Version("dir".into()),
    }
}

/// A file's entry from the service's metadata; a version from its time counts whole steps
/// of `step_ns` (rounded up, as Swift rounds a stat's time).
pub(super) fn entry_of(meta: &Metadata, use_etag: bool, step_ns: i64, key: &str) -> ReplicaEntry {
    let modified = meta
        .last_modified()
        .map(|t| {
            let t = t.into_inner();
            t.as_second() * 1_000_000_000 + i64::from(t.subsec_nanosecond())
        })
        .unwrap_or(0);
    let user = meta.user_metadata();
    let mtime_ns = user
        .as_ref()
        .and_then(|m| m.get("mtime"))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(modified);
    let mode = user
        .as_ref()
        .and_then(|m| m.get("mode"))
        .and_then(|v| u32::from_str_radix(v, 8).ok())
        .map_or(0o644, |m| m & 0o7777);
    let size = meta.content_length();
    ReplicaEntry {
        kind: EntryKind::File,
        size,
        mtime_ns,
        mode,
        hash: None,
        target: None,
        version: version_of(
            meta.etag().or(meta.content_md5()).filter(|_| use_etag),
            size,
            round_up(modified, step_ns),
            key,
        ),
    }
}

/// `ns` rounded up to a whole number of `step` (a step below 2 leaves it as it is).
fn round_up(ns: i64, step: i64) -> i64 {
    if step < 2 {
        return ns;
    }
    ns.div_euclid(step) * step + if ns.rem_euclid(step) > 0 { step } else { 0 }
}

/// The ETag where the service gives one everywhere; size, time and path otherwise (the
/// path as a short hash: kept versions carry the token in their names).
fn version_of(etag: Option<&str>, size: u64, modified_ns: i64, key: &str) -> Version {
    match etag.map(normal_etag) {
        Some(tag) if !tag.is_empty() => Version(format!("e:{tag}")),
        _ => {
            let path = blake3::hash(key.trim_start_matches('/').as_bytes());
            let short = &path.to_hex()[..12];
            Version(format!("m:{size}:{modified_ns}:{short}"))
        }
    }
}

/// ETags arrive quoted, and sometimes weak (`W/"..."`): compare their value.
fn normal_etag(tag: &str) -> String {
    tag.trim_start_matches("W/").trim_matches('"').to_string()
}

/// The ETag a version token carries, quoted as services expect it in `If-Match`.
pub(super) fn etag_of(version: &Version) -> Option<String> {
    version.0.strip_prefix("e:").map(|t| format!("\"{t}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_by_value() {
        assert_eq!(normal_etag("\"abc\""), "abc");
        assert_eq!(normal_etag("W/\"abc\""), "abc");
        assert_eq!(
            etag_of(&Version("e:abc".into())).as_deref(),
            Some("\"abc\"")
        );
        assert_eq!(etag_of(&Version("m:1:2".into())), None);
    }

    #[test]
    fn time_versions_name_their_path() {
        let a = version_of(None, 12, 1_000, "src/a");
        assert_eq!(a, version_of(None, 12, 1_000, "/src/a"));
        assert_ne!(a, version_of(None, 12, 1_000, "src/c"));
        assert_ne!(a, version_of(None, 13, 1_000, "src/a"));
        assert_eq!(version_of(Some("\"x\""), 12, 1_000, "src/a").0, "e:x");
    }

    #[test]
    fn times_round_up_to_the_step() {
        let s = 1_000_000_000;
        assert_eq!(
            round_up(1_796_055_399_897_610_000, s),
            1_796_055_400_000_000_000
        );
        assert_eq!(
            round_up(1_796_055_400_000_000_000, s),
            1_796_055_400_000_000_000
        );
        assert_eq!(round_up(-1, s), 0);
        assert_eq!(round_up(1_234, 1), 1_234);
    }

    #[test]
    fn our_names_are_reserved_only_at_the_top() {
        assert!(reserved(".cairn/tmp/x"));
        assert!(reserved(".cairn-encryption"));
        assert!(!reserved("a/.cairn"));
        assert!(!reserved("cairn"));
    }
}
