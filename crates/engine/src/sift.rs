//! Paths unchanged since the base, left out of both listings as they are read.
//!
//! A re-run of a large folder changes little, yet a listing would hold every path, and a pass
//! reads two. Before the listings are read, the base's rows become fingerprints (three words a
//! path, found by a hash of the path); a listed entry that matches its path's fingerprint is
//! marked and dropped at once, so neither listing is ever whole. The row pass afterwards
//! ([`Sieve`](crate::reconcile::unchanged::Sieve)) reads the marks: a path marked on both
//! sides is unchanged; a path marked on one side only gets that side's entry back, rebuilt
//! from its row (which is what the entry was when both sides agreed).
//!
//! The hashes are keyed with a secret of this process. A false match (about one in 2^64) only
//! postpones a change to the next pass, whose keys differ: nothing of a left-out path is
//! written or forgotten.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use cairn_model::{EntryKind, Filter, RelPath};

use crate::index::{IndexRow, Versions};
use crate::replica::{ReplicaEntry, Sift};

/// Marks: the local entry matched its row.
pub const HERE: u8 = 1;
/// Marks: the remote entry matched its row.
pub const THERE: u8 = 2;

struct Slot {
    key: u64,
    /// What an unchanged local file hashes to; 0 for rows that are not files.
    here: u64,
    /// What the remote's unchanged entry hashes to.
    there: u64,
    /// HERE and THERE, as the listings find them (beside the hashes: one cache miss a look).
    marks: AtomicU8,
}

impl Slot {
    fn of(keys: &RandomState, row: &Versions<'_>) -> Self {
        Slot {
            key: key_of(keys, row.path),
            here: if row.kind == EntryKind::File {
                here_of(keys, row.path, row.left, row.mode)
            } else {
                0
            },
            there: there_of(keys, row.path, row.kind, row.right),
            marks: AtomicU8::new(0),
        }
    }
}

/// The base's rows as fingerprints, sorted by the hash of their path, with a directory of
/// where each range of hashes starts (the hashes are uniform: about eight slots a range, so
/// the directory stays in the processor's cache and a look reads one run of slots).
pub struct Fingerprints {
    keys: RandomState,
    slots: Vec<Slot>,
    starts: Vec<u32>,
    shift: u32,
}

impl Fingerprints {
    /// Fingerprints of the rows `each` hands over, one at a time.
    pub fn build(
        each: impl FnOnce(&mut dyn FnMut(Versions<'_>)) -> crate::Result<()>,
    ) -> crate::Result<Self> {
        let keys = RandomState::new();
        let mut slots = Vec::new();
        each(&mut |row| slots.push(Slot::of(&keys, &row)))?;
        Ok(Self::sorted(keys, slots))
    }

    /// Fingerprints of rows at hand.
    pub fn of_rows<'a>(rows: impl Iterator<Item = &'a IndexRow>) -> Self {
        let keys = RandomState::new();
        let slots = rows
            .map(|r| {
                let row = Versions {
                    path: r.path.as_str(),
                    kind: r.kind,
                    mode: r.mode,
                    left: &r.left.0,
                    right: &r.right.0,
                };
                Slot::of(&keys, &row)
            })
            .collect();
        Self::sorted(keys, slots)
    }

    fn sorted(keys: RandomState, mut slots: Vec<Slot>) -> Self {
        slots.sort_unstable_by_key(|s| s.key);
        // Two paths of one hash: neither can be matched (both go through the row pass).
        let mut i = 0;
        while i < slots.len() {
            let run = slots[i..]
                .iter()
                .take_while(|s| s.key == slots[i].key)
                .count();
            if run > 1 {
                for s in &mut slots[i..i + run] {
                    (s.here, s.there) = (0, 0);
                }
            }
            i += run;
        }
        let bits = (slots.len() / 8)
            .max(2)
            .next_power_of_two()
            .trailing_zeros()
            .min(32);
        let shift = 64 - bits;
        let mut starts = vec![0u32; (1usize << bits) + 1];
        for s in &slots {
            starts[(s.key >> shift) as usize + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        Self {
            keys,
            slots,
            starts,
            shift,
        }
    }

    fn find(&self, key: u64) -> Option<&Slot> {
        let b = (key >> self.shift) as usize;
        let (from, to) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        self.slots[from..to].iter().find(|s| s.key == key)
    }

    /// The marks left on `path` by the listings.
    pub fn marks(&self, path: &str) -> u8 {
        self.find(key_of(&self.keys, path))
            .map_or(0, |s| s.marks.load(Ordering::Relaxed))
    }

    /// Marks `path` HERE if `entry` is the local file its row describes.
    fn matches_here(&self, path: &RelPath, entry: &ReplicaEntry) -> bool {
        entry.kind == EntryKind::File
            && entry.hash.is_none()
            && self.mark_if(path, HERE, |keys| {
                here_of(keys, path.as_str(), &entry.version.0, entry.mode)
            })
    }

    /// Marks `path` THERE if `entry` is the remote version its row describes.
    fn matches_there(&self, path: &RelPath, entry: &ReplicaEntry) -> bool {
        matches!(entry.kind, EntryKind::File | EntryKind::Dir)
            && self.mark_if(path, THERE, |keys| {
                there_of(keys, path.as_str(), entry.kind, &entry.version.0)
            })
    }

    /// Marks `path` with `mark` if its slot's hash for that side is `digest`'s.
    fn mark_if(&self, path: &RelPath, mark: u8, digest: impl FnOnce(&RandomState) -> u64) -> bool {
        let Some(s) = self.find(key_of(&self.keys, path.as_str())) else {
            return false;
        };
        let want = if mark == HERE { s.here } else { s.there };
        let hit = want == digest(&self.keys);
        if hit {
            s.marks.fetch_or(mark, Ordering::Relaxed);
        }
        hit
    }

    fn clear(&self, mark: u8) {
        for s in &self.slots {
            s.marks.fetch_and(!mark, Ordering::Relaxed);
        }
    }
}

fn key_of(keys: &RandomState, path: &str) -> u64 {
    keys.hash_one((0u8, path))
}

// Never 0: 0 is "no fingerprint".
fn here_of(keys: &RandomState, path: &str, left: &str, mode: u32) -> u64 {
    keys.hash_one((1u8, path, left, mode)) | 1
}

fn there_of(keys: &RandomState, path: &str, kind: EntryKind, right: &str) -> u64 {
    keys.hash_one((2u8, path, kind, right)) | 1
}

/// The local entry a row stands for, when the local file matched it: its content, stat and
/// mode are the row's (the row was written from the local entry when both sides agreed).
pub fn here_entry(row: &IndexRow) -> ReplicaEntry {
    ReplicaEntry {
        kind: row.kind,
        size: row.size,
        mtime_ns: row.mtime_ns,
        mode: row.mode,
        hash: None,
        target: None,
        version: row.left.clone(),
    }
}

/// The remote entry a row stands for, when the remote's version is the row's.
pub fn there_entry(row: &IndexRow) -> ReplicaEntry {
    ReplicaEntry {
        kind: row.kind,
        size: row.size,
        mtime_ns: row.mtime_ns,
        mode: row.mode,
        hash: row.hash,
        target: None,
        version: row.right.clone(),
    }
}

/// The local listing's sift: files whose stat and mode are their row's.
pub struct HereSift {
    prints: Arc<Fingerprints>,
    /// Files left out, for the scan's count.
    pub files: AtomicU64,
}

impl HereSift {
    pub fn new(prints: Arc<Fingerprints>) -> Self {
        Self {
            prints,
            files: AtomicU64::new(0),
        }
    }
}

impl Sift for HereSift {
    fn restart(&self) {
        self.prints.clear(HERE);
        self.files.store(0, Ordering::Relaxed);
    }

    fn leaves_out(&self, path: &RelPath, entry: &ReplicaEntry) -> bool {
        let out = self.prints.matches_here(path, entry);
        if out {
            self.files.fetch_add(1, Ordering::Relaxed);
        }
        out
    }
}

/// The remote listing's sift: files and folders at their row's version that the task's
/// rules take in (what they leave out must stay in the listing to be set apart). It also
/// watches every name go by for names that differ only in case, when asked to.
pub struct ThereSift {
    prints: Option<Arc<Fingerprints>>,
    filter: Filter,
    case_keys: RandomState,
    case: Option<Mutex<CaseWatch>>,
}

impl ThereSift {
    pub fn new(prints: Option<Arc<Fingerprints>>, filter: Filter, watch_case: bool) -> Self {
        Self {
            prints,
            filter,
            case_keys: RandomState::new(),
            case: watch_case.then(|| Mutex::new(CaseWatch::default())),
        }
    }

    /// Hashes of the case keys that more than one name of the listing has (none when case
    /// is not watched).
    pub fn clashing(&self) -> HashSet<u64> {
        self.case
            .as_ref()
            .map(|c| std::mem::take(&mut lock(c).clashing))
            .unwrap_or_default()
    }

    /// The hash of `path`'s case key, as [`ThereSift::clashing`] names them.
    pub fn case_hash(&self, path: &RelPath) -> u64 {
        self.case_keys.hash_one(path.case_key())
    }
}

fn lock(c: &Mutex<CaseWatch>) -> std::sync::MutexGuard<'_, CaseWatch> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sift for ThereSift {
    fn restart(&self) {
        if let Some(p) = &self.prints {
            p.clear(THERE);
        }
        if let Some(c) = &self.case {
            let mut c = lock(c);
            c.first.clear();
            c.clashing.clear();
        }
    }

    fn leaves_out(&self, path: &RelPath, entry: &ReplicaEntry) -> bool {
        if let Some(c) = &self.case {
            lock(c).watch(&self.case_keys, path);
        }
        self.prints.as_ref().is_some_and(|p| {
            self.filter
                .check(path, entry.kind, entry.size)
                .is_included()
                && p.matches_there(path, entry)
        })
    }
}

/// Names (and the folders above them) by the hash of their case key, each with the hash of
/// the first name seen under that key: a second name under a key makes it clashing.
#[derive(Default)]
struct CaseWatch {
    first: HashMap<u64, u64>,
    clashing: HashSet<u64>,
}

impl CaseWatch {
    fn watch(&mut self, keys: &RandomState, path: &RelPath) {
        let mut at = Some(path.clone());
        while let Some(p) = at.filter(|p| !p.is_root()) {
            let (case, exact) = (keys.hash_one(p.case_key()), keys.hash_one(p.as_str()));
            match self.first.get(&case) {
                // Seen before, and so was the rest of the way up.
                Some(e) if *e == exact => break,
                Some(_) => {
                    self.clashing.insert(case);
                }
                None => {
                    self.first.insert(case, exact);
                }
            }
            at = p.parent();
        }
    }
}

/// The names among `paths` that `clashing` needs compared in full: each whose case key, or
/// the case key of a folder above it, is clashing.
pub fn clash_candidates<'a>(
    sift: &ThereSift,
    clashing: &HashSet<u64>,
    paths: impl Iterator<Item = &'a RelPath>,
    out: &mut BTreeSet<RelPath>,
) {
    for path in paths {
        let hit = std::iter::successors(Some(path.clone()), RelPath::parent)
            .take_while(|p| !p.is_root())
            .any(|p| clashing.contains(&sift.case_hash(&p)));
        if hit {
            out.insert(path.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::Version;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).expect("a test path")
    }

    fn file(version: &str, mode: u32) -> ReplicaEntry {
        ReplicaEntry {
            kind: EntryKind::File,
            size: 1,
            mtime_ns: 1,
            mode,
            hash: None,
            target: None,
            version: Version(version.into()),
        }
    }

    fn row(path: &str, kind: EntryKind, left: &str, right: &str) -> IndexRow {
        IndexRow {
            path: p(path),
            kind,
            size: 1,
            mtime_ns: 1,
            mode: 0o644,
            hash: None,
            left: Version(left.into()),
            right: Version(right.into()),
        }
    }

    fn prints(rows: &[IndexRow]) -> Arc<Fingerprints> {
        Arc::new(Fingerprints::of_rows(rows.iter()))
    }

    #[test]
    fn only_entries_that_are_their_rows_are_left_out_and_marked() {
        let rows = [
            row("a", EntryKind::File, "s1", "7"),
            row("d", EntryKind::Dir, "dir:1", "8"),
        ];
        let prints = prints(&rows);
        let here = HereSift::new(prints.clone());
        assert!(
            !here.leaves_out(&p("a"), &file("s2", 0o644)),
            "another stat"
        );
        assert!(
            !here.leaves_out(&p("a"), &file("s1", 0o600)),
            "another mode"
        );
        assert!(
            !here.leaves_out(&p("b"), &file("s1", 0o644)),
            "another path"
        );
        let hashed = ReplicaEntry {
            hash: Some(cairn_model::ContentHash::of(b"x")),
            ..file("s1", 0o644)
        };
        assert!(
            !here.leaves_out(&p("a"), &hashed),
            "a hash is compared by the sieve"
        );
        assert_eq!(prints.marks("a"), 0);
        assert!(here.leaves_out(&p("a"), &file("s1", 0o644)));
        assert_eq!(prints.marks("a"), HERE);
        let dir = ReplicaEntry {
            kind: EntryKind::Dir,
            ..file("dir:1", 0o644)
        };
        assert!(!here.leaves_out(&p("d"), &dir), "local folders stay listed");

        let there = ThereSift::new(Some(prints.clone()), Filter::default(), false);
        assert!(
            !there.leaves_out(&p("a"), &file("9", 0o644)),
            "a newer version"
        );
        assert!(there.leaves_out(&p("a"), &file("7", 0o644)));
        assert!(there.leaves_out(
            &p("d"),
            &ReplicaEntry {
                kind: EntryKind::Dir,
                ..file("8", 0o755)
            }
        ));
        assert_eq!(prints.marks("a"), HERE | THERE);
        // A retried listing starts over on its own side only.
        there.restart();
        assert_eq!(prints.marks("a"), HERE);
        assert_eq!(prints.marks("d"), 0);
    }

    #[test]
    fn what_the_rules_leave_out_stays_in_the_remote_listing() {
        let prints = prints(&[row("build/x", EntryKind::File, "s1", "7")]);
        let filter = Filter {
            excluded_dirs: vec![p("build")],
            ..Filter::default()
        };
        let there = ThereSift::new(Some(prints.clone()), filter, false);
        assert!(!there.leaves_out(&p("build/x"), &file("7", 0o644)));
        assert_eq!(prints.marks("build/x"), 0);
    }

    #[test]
    fn names_and_folders_that_differ_only_in_case_are_seen_going_by() {
        let there = ThereSift::new(None, Filter::default(), true);
        for name in ["Docs/a", "docs/b", "other/c", "Other2/d"] {
            assert!(!there.leaves_out(&p(name), &file("1", 0o644)));
        }
        let clashing = there.clashing();
        assert_eq!(clashing, HashSet::from([there.case_hash(&p("docs"))]));
        let mut names = BTreeSet::new();
        let listed = [p("Docs/a"), p("docs/b"), p("other/c")];
        clash_candidates(&there, &clashing, listed.iter(), &mut names);
        assert_eq!(names, BTreeSet::from([p("Docs/a"), p("docs/b")]));
    }
}
