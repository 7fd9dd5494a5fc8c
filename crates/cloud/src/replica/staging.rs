//! Temporaries of file-like services (SFTP, WebDAV, mounted folders): a file is written whole
//! under `.cairn/tmp/` and renamed into place. An upload cut off between the two (a killed
//! process, a lost answer, a dropped connection) leaves its temporary behind; the owner's
//! next pass removes it.
//!
//! Whose is a temporary: a replica opened with an owner ([`owner_tag`] of the computer and
//! task for a computer's task, of the server and task id for a server's) names its
//! temporaries `OWNER-TIME-PID-N`, and at its first listing deletes the ones with its own tag
//! only. Another computer's temporary may be an upload still in flight,
//! so it is never touched; an age limit was the alternative, and it would have removed a slow
//! upload's temporary under it, or kept a crashed one for the whole limit. Names of any other
//! shape are left alone too.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{CloudReplica, STAGING};

/// The tag of one task's temporaries: 16 hex digits of a hash of what identifies the task
/// (`parts`, which must not change while the task lives, or its leftovers are no longer found).
pub fn owner_tag(parts: &[&str]) -> String {
    let what = parts.join("\0");
    cairn_model::ContentHash::of(what.as_bytes()).to_hex()[..16].to_string()
}

/// A temporary's name: unique within this process, and across processes by pid and time;
/// tagged with `owner` when the replica has one.
pub(super) fn temp_name(owner: Option<&str>) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let unique = format!("{now:x}-{:x}-{n}", std::process::id());
    match owner {
        Some(owner) => format!("{owner}-{unique}"),
        None => unique,
    }
}

/// Whether `name` (in the staging folder) is a temporary `owner` made: its tag, then
/// `TIME-PID-N` as [`temp_name`] writes them.
pub(super) fn is_own(name: &str, owner: &str) -> bool {
    let Some(rest) = name.strip_prefix(owner).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let dec = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    matches!(parts.as_slice(), [time, pid, n] if hex(time) && hex(pid) && dec(n))
}

/// Deletes the owner's temporaries left by earlier passes. Best effort: a temporary that
/// cannot be listed or deleted now is tried again at the next pass, and the pass goes on.
pub(super) async fn clean(r: &CloudReplica, owner: &str) -> usize {
    let dir = format!("{STAGING}/");
    let Ok(listed) = r.op.list(&dir).await else {
        return 0;
    };
    let files = listed
        .into_iter()
        .filter(|e| !e.metadata().is_dir())
        .map(|e| e.path().trim_start_matches('/').to_string())
        .collect();
    remove_own(r, owner, files).await
}

/// Deletes those of the staging folder's files (`keys`) that are the owner's.
pub(super) async fn remove_own(r: &CloudReplica, owner: &str, keys: Vec<String>) -> usize {
    let dir = format!("{STAGING}/");
    let mut removed = 0;
    for key in keys {
        let Some(name) = key.strip_prefix(&dir) else {
            continue;
        };
        if !is_own(name, owner) {
            continue;
        }
        if r.op.delete(&key).await.is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_the_hash_of_its_parts_so_it_stays_the_same_across_versions() {
        let hash = cairn_model::ContentHash::of(b"dev\0conn\0remote\0/home/a");
        assert_eq!(
            owner_tag(&["dev", "conn", "remote", "/home/a"]),
            hash.to_hex()[..16]
        );
        assert_ne!(owner_tag(&["a", "bc"]), owner_tag(&["ab", "c"]));
    }

    #[test]
    fn only_the_owners_own_temporaries_are_its_own() {
        let name = temp_name(Some("a1b2"));
        assert!(is_own(&name, "a1b2"), "{name}");
        assert!(!is_own(&name, "a1b"), "another owner's prefix");
        assert!(!is_own(&name, "ffff"), "another owner");
        assert!(!is_own(&temp_name(None), "a1b2"), "untagged");
        for other in [
            "a1b2-notes.txt",
            "a1b2",
            "a1b2-",
            "a1b2-18f-2a-x",
            "a1b2-18f-2a-1-2",
            "a1b2-18g-2a-1",
        ] {
            assert!(!is_own(other, "a1b2"), "{other}");
        }
    }
}
