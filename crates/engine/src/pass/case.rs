//! Names that differ only in case, on a computer whose folder folds case.

use std::collections::{BTreeMap, HashMap};

use cairn_model::RelPath;

/// Names of the remote listing (`names`, in path order) that differ only in case from
/// another (Windows and macOS fold case by default, so such a computer can hold only one of
/// them): each as (left out, kept). A folder's clash covers what is under it. Of two names,
/// the one this computer holds (`here`) is kept, else the first in path order (the same on
/// every pass). Folders a listing implies but does not list are compared too.
pub(super) fn clashes<'a>(
    names: impl Iterator<Item = &'a RelPath>,
    here: &dyn Fn(&RelPath) -> bool,
) -> Vec<(RelPath, RelPath)> {
    let mut first: HashMap<String, RelPath> = HashMap::new();
    let mut out: BTreeMap<RelPath, RelPath> = BTreeMap::new();
    for path in names {
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
            if here(&left) && !here(&kept) {
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
    use std::collections::BTreeSet;

    /// The clashes among `remote` when this computer holds `local`.
    fn found(remote: &[&str], local: &[&str]) -> Vec<(String, String)> {
        let set = |paths: &[&str]| -> BTreeSet<RelPath> {
            paths
                .iter()
                .map(|p| RelPath::parse(p).expect("a test path"))
                .collect()
        };
        let (remote, local) = (set(remote), set(local));
        clashes(remote.iter(), &|p| local.contains(p))
            .into_iter()
            .map(|(l, k)| (l.to_string(), k.to_string()))
            .collect()
    }

    #[test]
    fn the_first_name_is_kept_and_a_folder_covers_its_subtree() {
        let remote = [
            "Photos",
            "Photos/a.jpg",
            "Photos/Sub/x",
            "photos",
            "photos/b.jpg",
            "photos/sub/y",
            "Report.txt",
            "report.txt",
            "plain",
        ];
        assert_eq!(
            found(&remote, &[]),
            [("photos", "Photos"), ("report.txt", "Report.txt")].map(|(a, b)| (a.into(), b.into()))
        );
    }

    #[test]
    fn the_name_this_computer_holds_is_kept() {
        assert_eq!(
            found(&["Report.txt", "report.txt"], &["report.txt"]),
            [("Report.txt".to_string(), "report.txt".to_string())]
        );
    }

    #[test]
    fn folders_a_listing_only_implies_clash_too() {
        assert_eq!(
            found(&["Docs/a", "docs/b", "other/c"], &[]),
            [("docs".to_string(), "Docs".to_string())]
        );
        assert!(found(&["a", "b/c", "B2"], &[]).is_empty());
    }
}
