//! Names that differ only in case, on a computer whose folder folds case.

use std::collections::{BTreeMap, HashMap};

use cairn_model::RelPath;

use crate::replica::ReplicaEntry;

/// Names of the remote listing that differ only in case from another (Windows and macOS fold
/// case by default, so such a computer can hold only one of them): each as (left out, kept).
/// A folder's clash covers what is under it. Of two names, the one this computer holds is
/// kept, else the first in path order (the same on every pass). Folders a listing implies but
/// does not list are compared too.
pub(super) fn clashes(
    remote: &BTreeMap<RelPath, ReplicaEntry>,
    local: &BTreeMap<RelPath, ReplicaEntry>,
) -> Vec<(RelPath, RelPath)> {
    let mut first: HashMap<String, RelPath> = HashMap::new();
    let mut out: BTreeMap<RelPath, RelPath> = BTreeMap::new();
    for path in remote.keys() {
        let mut at = Some(path.clone());
        while let Some(p) = at.filter(|p| !p.is_root()) {
            match first.get(&p.case_key()) {
                // An ancestor seen before: the rest of the way up was compared then.
                Some(seen) if *seen == p => break,
                Some(seen) => {
                    out.insert(p.clone(), seen.clone());
                    break;
                }
                None => {
                    first.insert(p.case_key(), p.clone());
                }
            }
            at = p.parent();
        }
    }
    // Under a folder left out, its own clashes need no word.
    let covered = |p: &RelPath| {
        std::iter::successors(p.parent(), RelPath::parent).any(|a| out.contains_key(&a))
    };
    let outer: Vec<(RelPath, RelPath)> = out
        .iter()
        .filter(|(left, _)| !covered(left))
        .map(|(l, k)| (l.clone(), k.clone()))
        .collect();
    outer
        .into_iter()
        .map(|(left, kept)| {
            if local.contains_key(&left) && !local.contains_key(&kept) {
                (kept, left)
            } else {
                (left, kept)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_model::EntryKind;

    fn listing(paths: &[&str]) -> BTreeMap<RelPath, ReplicaEntry> {
        paths
            .iter()
            .map(|p| {
                let entry = ReplicaEntry {
                    kind: EntryKind::Dir,
                    size: 0,
                    mtime_ns: 0,
                    mode: 0o755,
                    hash: None,
                    target: None,
                    version: crate::replica::Version("v".into()),
                };
                (RelPath::parse(p).expect("a test path"), entry)
            })
            .collect()
    }

    fn pairs(found: Vec<(RelPath, RelPath)>) -> Vec<(String, String)> {
        found
            .into_iter()
            .map(|(l, k)| (l.to_string(), k.to_string()))
            .collect()
    }

    #[test]
    fn the_first_name_is_kept_and_a_folder_covers_its_subtree() {
        let remote = listing(&[
            "Photos",
            "Photos/a.jpg",
            "Photos/Sub/x",
            "photos",
            "photos/b.jpg",
            "photos/sub/y",
            "Report.txt",
            "report.txt",
            "plain",
        ]);
        assert_eq!(
            pairs(clashes(&remote, &BTreeMap::new())),
            [("photos", "Photos"), ("report.txt", "Report.txt")].map(|(a, b)| (a.into(), b.into()))
        );
    }

    #[test]
    fn the_name_this_computer_holds_is_kept() {
        let remote = listing(&["Report.txt", "report.txt"]);
        let local = listing(&["report.txt"]);
        assert_eq!(
            pairs(clashes(&remote, &local)),
            [("Report.txt".to_string(), "report.txt".to_string())]
        );
    }

    #[test]
    fn folders_a_listing_only_implies_clash_too() {
        let remote = listing(&["Docs/a", "docs/b", "other/c"]);
        assert_eq!(
            pairs(clashes(&remote, &BTreeMap::new())),
            [("docs".to_string(), "Docs".to_string())]
        );
        assert!(clashes(&listing(&["a", "b/c", "B2"]), &BTreeMap::new()).is_empty());
    }
}
