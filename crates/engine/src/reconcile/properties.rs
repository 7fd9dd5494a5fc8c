//! Properties of the planner, checked against a model of both replicas: the plan is applied to
//! the model as the executor applies it, then the planner is asked again.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const PATHS: [&str; 3] = ["a", "b", "c"];

/// One path's state: base (seq, content), local (content, mtime), remote head (seq, content,
/// mtime). Contents are small numbers so that equal contents are common.
#[derive(Clone, Debug)]
struct Slot {
    base: Option<(i64, u8)>,
    local: Option<(u8, i64)>,
    remote: Option<(i64, u8, i64)>,
}

#[derive(Clone, Debug)]
struct Model {
    slots: BTreeMap<RelPath, Slot>,
    next_seq: i64,
    /// Every content the remote ever held as a version, per path.
    history: Vec<(RelPath, u8)>,
    /// The remote keeps replaced content: what is overwritten or deleted stays in `history`.
    versions: bool,
    conflict_copies: Vec<u8>,
    /// Contents the remote's files kept as conflict copies on the remote.
    remote_copies: Vec<u8>,
}

fn rel(s: &str) -> RelPath {
    RelPath::parse(s).expect("valid test path")
}

fn hash(c: u8) -> ContentHash {
    ContentHash::of(&[c])
}

fn file(c: u8, mtime: i64, version: String) -> ReplicaEntry {
    ReplicaEntry {
        kind: EntryKind::File,
        size: 1,
        mtime_ns: mtime,
        mode: 0o644,
        hash: Some(hash(c)),
        target: None,
        version: Version(version),
    }
}

/// A local file's version is its stat: content and mtime here.
fn local_entry(c: u8, mtime: i64) -> ReplicaEntry {
    file(c, mtime, format!("{c}:{mtime}"))
}

fn remote_entry(seq: i64, c: u8, mtime: i64) -> ReplicaEntry {
    file(c, mtime, seq.to_string())
}

fn seq_of(e: &ReplicaEntry) -> i64 {
    e.version.0.parse().expect("model versions are numbers")
}

fn base_row(path: &RelPath, c: u8, seq: i64) -> IndexRow {
    let l = local_entry(c, 1);
    IndexRow {
        path: path.clone(),
        kind: l.kind,
        size: l.size,
        mtime_ns: l.mtime_ns,
        mode: l.mode,
        hash: l.hash,
        left: l.version,
        right: Version(seq.to_string()),
    }
}

fn slot() -> impl Strategy<Value = Slot> {
    (
        prop::option::of((1i64..4, 0u8..3)),
        prop::option::of((0u8..3, 1i64..4)),
        prop::option::of((0i64..3, 0u8..3, 1i64..4)),
    )
        .prop_map(|(base, local, remote)| {
            // A remote head at the base's version holds the base's content; a newer one has a
            // higher number.
            let remote = remote.map(|(ahead, c, m)| match base {
                Some((s, bc)) if ahead == 0 => (s, bc, m),
                Some((s, _)) => (s + ahead, c, m),
                None => (10 + ahead, c, m),
            });
            Slot {
                base,
                local,
                remote,
            }
        })
}

fn model() -> impl Strategy<Value = Model> {
    prop::collection::vec(slot(), PATHS.len()).prop_map(|slots| {
        let history = slots
            .iter()
            .zip(PATHS)
            .filter_map(|(s, p)| s.remote.map(|(_, c, _)| (rel(p), c)))
            .collect();
        Model {
            slots: PATHS.iter().map(|p| rel(p)).zip(slots).collect(),
            next_seq: 100,
            history,
            versions: true,
            conflict_copies: Vec::new(),
            remote_copies: Vec::new(),
        }
    })
}

struct Maps {
    base: BTreeMap<RelPath, IndexRow>,
    local: BTreeMap<RelPath, ReplicaEntry>,
    remote: BTreeMap<RelPath, ReplicaEntry>,
}

impl Model {
    fn maps(&self) -> Maps {
        let mut m = Maps {
            base: BTreeMap::new(),
            local: BTreeMap::new(),
            remote: BTreeMap::new(),
        };
        for (p, s) in &self.slots {
            if let Some((seq, c)) = s.base {
                m.base.insert(p.clone(), base_row(p, c, seq));
            }
            if let Some((c, mtime)) = s.local {
                m.local.insert(p.clone(), local_entry(c, mtime));
            }
            if let Some((seq, c, mtime)) = s.remote {
                m.remote.insert(p.clone(), remote_entry(seq, c, mtime));
            }
        }
        m
    }

    fn plan(&self, set: Settings) -> SyncPlan {
        plan_of(&self.maps(), set, 0)
    }

    /// The plan after the unchanged paths were sieved out, as a pass does.
    fn plan_sieved(&self, set: Settings) -> SyncPlan {
        let Maps {
            base,
            mut local,
            mut remote,
        } = self.maps();
        let mut sieve = unchanged::Sieve::new(&mut local, &mut remote);
        for row in base.into_values() {
            sieve.row(row);
        }
        let unchanged = sieve.unchanged;
        let base = sieve.base();
        plan_of(
            &Maps {
                base,
                local,
                remote,
            },
            set,
            unchanged,
        )
    }

    /// The plan after the listings were sifted against the base's fingerprints as they were
    /// read, then sieved, and the local hashes filled in as a pass does.
    fn plan_sifted(&self, set: Settings) -> SyncPlan {
        use crate::replica::Sift;
        use crate::sift::{Fingerprints, HereSift, ThereSift};
        use std::sync::Arc;
        let Maps {
            base,
            local: hashed,
            mut remote,
        } = self.maps();
        let prints = Arc::new(Fingerprints::of_rows(base.values()));
        // A scan knows no hashes.
        let mut local: BTreeMap<RelPath, ReplicaEntry> = hashed
            .iter()
            .map(|(p, e)| {
                (
                    p.clone(),
                    ReplicaEntry {
                        hash: None,
                        ..e.clone()
                    },
                )
            })
            .collect();
        let (here, there) = (
            HereSift::new(prints.clone()),
            ThereSift::new(Some(prints.clone()), cairn_model::Filter::default(), true),
        );
        local.retain(|p, e| !here.leaves_out(p, e));
        remote.retain(|p, e| !there.leaves_out(p, e));
        let mut sieve = unchanged::Sieve::new(&mut local, &mut remote).with_prints(Some(&*prints));
        for row in base.into_values() {
            sieve.row(row);
        }
        let unchanged = sieve.unchanged;
        let base = sieve.base();
        for (p, e) in &mut local {
            e.hash = match base.get(p) {
                Some(b) if b.left == e.version => b.hash,
                _ => hashed[p].hash,
            };
        }
        plan_of(
            &Maps {
                base,
                local,
                remote,
            },
            set,
            unchanged,
        )
    }

    fn content_of(entry: &ReplicaEntry) -> u8 {
        (0..3)
            .find(|c| Some(hash(*c)) == entry.hash)
            .expect("model content")
    }

    fn slot(&mut self, path: &RelPath) -> &mut Slot {
        self.slots.get_mut(path).expect("model path")
    }

    /// The remote head of `path` goes away: without versions, it is gone from history too.
    fn drop_remote(&mut self, path: &RelPath) {
        let Some((_, old, _)) = self.slots[path].remote else {
            return;
        };
        if !self.versions {
            if let Some(i) = self
                .history
                .iter()
                .rposition(|(p, c)| p == path && *c == old)
            {
                self.history.remove(i);
            }
        }
    }

    fn put_remote(&mut self, path: &RelPath, c: u8, mtime: i64) -> i64 {
        self.drop_remote(path);
        self.next_seq += 1;
        let seq = self.next_seq;
        self.history.push((path.clone(), c));
        let s = self.slot(path);
        s.remote = Some((seq, c, mtime));
        s.base = Some((seq, c));
        seq
    }

    /// Applies one action as the executor does.
    fn apply(&mut self, a: &Action) {
        match a {
            Action::Upload { path, base } => {
                let s = &self.slots[path];
                assert_eq!(
                    *base,
                    s.remote.map(|r| Version(r.0.to_string())),
                    "upload base is the head"
                );
                let (c, m) = s.local.expect("upload of a local file");
                self.put_remote(path, c, m);
            }
            Action::DeleteRemote { path, .. } => {
                self.drop_remote(path);
                let s = self.slot(path);
                s.remote = None;
                s.base = None;
            }
            Action::Download { path, remote, .. } => {
                let c = Self::content_of(remote);
                let s = self.slot(path);
                s.local = Some((c, remote.mtime_ns));
                s.base = Some((seq_of(remote), c));
            }
            Action::KeepLocalCopyThenDownload { path, remote, .. } => {
                if let Some((c, _)) = self.slots[path].local {
                    self.conflict_copies.push(c);
                }
                self.apply(&Action::Download {
                    path: path.clone(),
                    remote: remote.clone(),
                    expect: None,
                });
            }
            Action::SaveLocalThenDownload { path, remote, .. } => {
                if let Some((c, m)) = self.slots[path].local {
                    self.put_remote(path, c, m);
                }
                let c = Self::content_of(remote);
                let mtime = remote.mtime_ns;
                self.put_remote(path, c, mtime);
                self.slot(path).local = Some((c, mtime));
            }
            Action::KeepRemoteCopyThenUpload { path, .. } => {
                // Moved aside, not replaced: the content leaves the path, not the remote.
                if let Some((_, c, _)) = self.slot(path).remote.take() {
                    self.remote_copies.push(c);
                }
                let (c, m) = self.slots[path].local.expect("upload of a local file");
                self.put_remote(path, c, m);
            }
            Action::DeleteLocal { path, .. } => {
                let s = self.slot(path);
                s.local = None;
                s.base = None;
            }
            Action::MoveRemote { from, to, .. } => {
                let (c, m) = self.slots[to].local.expect("moved file is here");
                self.drop_remote(from);
                let f = self.slot(from);
                f.remote = None;
                f.base = None;
                self.put_remote(to, c, m);
            }
            Action::MoveLocal {
                from, to, remote, ..
            } => {
                let moved = self.slots[from].local;
                let f = self.slot(from);
                f.local = None;
                f.base = None;
                let c = Self::content_of(remote);
                let t = self.slot(to);
                t.local = moved;
                t.base = Some((seq_of(remote), c));
            }
            Action::Adopt { path, remote, .. } => {
                let seq = remote.0.parse().expect("model versions are numbers");
                let s = self.slot(path);
                let (c, _) = s.local.expect("adopted path is here");
                s.base = Some((seq, c));
            }
            Action::Forget { path } => self.slot(path).base = None,
        }
    }
}

fn plan_of(
    m: &Maps,
    (direction, policy, keep_deleted, versions): Settings,
    unchanged: usize,
) -> SyncPlan {
    plan_sync(&SyncInputs {
        base: &m.base,
        local: &m.local,
        remote: &m.remote,
        remote_keeps_versions: versions,
        direction,
        policy,
        keep_conflict_copy: false,
        incomplete: &[],
        excluded: &BTreeSet::new(),
        keep_deleted,
        guards: Guards {
            confirm_deletes: true,
            half_deletes: true,
        },
        unchanged,
    })
}

/// Direction, conflict policy, keep-deleted, the remote keeps versions.
type Settings = (Direction, ConflictPolicy, bool, bool);

fn settings() -> impl Strategy<Value = Settings> {
    (
        prop::sample::select(vec![
            Direction::TwoWay,
            Direction::UploadOnly,
            Direction::DownloadOnly,
        ]),
        prop::sample::select(vec![
            ConflictPolicy::KeepLatest,
            ConflictPolicy::KeepServer,
            ConflictPolicy::KeepLocal,
        ]),
        any::<bool>(),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_a_plan_leaves_nothing_to_do(m in model(), set in settings()) {
        let mut m = m;
        for a in m.plan(set).actions {
            m.apply(&a);
        }
        let again = m.plan(set);
        prop_assert!(again.actions.is_empty(), "{:?} after {:?}", again.actions, m);
    }

    #[test]
    fn leaving_out_unchanged_paths_changes_no_plan(m in model(), set in settings()) {
        prop_assert_eq!(m.plan_sieved(set), m.plan(set));
    }

    #[test]
    fn sifting_the_listings_as_they_are_read_changes_no_plan(m in model(), set in settings()) {
        prop_assert_eq!(m.plan_sifted(set), m.plan(set));
    }

    #[test]
    fn one_way_plans_write_one_side_only(m in model(), set in settings()) {
        for a in m.plan(set).actions {
            let writes_remote = matches!(
                a,
                Action::Upload { .. }
                    | Action::DeleteRemote { .. }
                    | Action::MoveRemote { .. }
                    | Action::SaveLocalThenDownload { .. }
                    | Action::KeepRemoteCopyThenUpload { .. }
            );
            let writes_local = matches!(
                a,
                Action::Download { .. }
                    | Action::DeleteLocal { .. }
                    | Action::MoveLocal { .. }
                    | Action::KeepLocalCopyThenDownload { .. }
                    | Action::SaveLocalThenDownload { .. }
            );
            prop_assert!(!(set.0 == Direction::DownloadOnly && writes_remote), "{:?}", a);
            prop_assert!(!(set.0 == Direction::UploadOnly && writes_local), "{:?}", a);
        }
    }

    #[test]
    fn a_path_without_a_base_is_never_deleted(m in model(), set in settings()) {
        let maps = m.maps();
        for a in m.plan(set).actions {
            let deleted = match &a {
                Action::DeleteRemote { path, .. } | Action::DeleteLocal { path, .. } => Some(path),
                Action::MoveRemote { from, .. } | Action::MoveLocal { from, .. } => Some(from),
                _ => None,
            };
            if let Some(path) = deleted {
                prop_assert!(maps.base.contains_key(path), "{:?} deletes {}", a, path);
            }
        }
    }

    #[test]
    fn every_local_edit_survives(m in model(), set in settings()) {
        // Local contents that differ from the base (or have none): edits made here.
        let edits: Vec<(RelPath, u8)> = m
            .slots
            .iter()
            .filter_map(|(path, s)| {
                let (c, _) = s.local?;
                (s.base.map(|b| b.1) != Some(c)).then_some((path.clone(), c))
            })
            .collect();
        let mut m = m;
        m.versions = set.3;
        for a in m.plan(set).actions {
            m.apply(&a);
        }
        for (path, c) in edits {
            let here = m.slots.values().any(|s| s.local.map(|l| l.0) == Some(c));
            let there = m.history.iter().any(|(_, h)| *h == c);
            let copy = m.conflict_copies.contains(&c);
            prop_assert!(here || there || copy, "edit {} of {} lost: {:?}", c, path, m);
        }
    }

    /// What another computer wrote to the remote survives a two-way or download-only pass,
    /// whether or not the remote keeps versions (an upload-only task mirrors this side by
    /// design, over a remote that keeps versions).
    #[test]
    fn every_remote_edit_survives(m in model(), set in settings()) {
        prop_assume!(set.0 != Direction::UploadOnly);
        let edits: Vec<(RelPath, u8)> = m
            .slots
            .iter()
            .filter_map(|(path, s)| {
                let (_, c, _) = s.remote?;
                (s.base.map(|b| b.1) != Some(c)).then_some((path.clone(), c))
            })
            .collect();
        let mut m = m;
        m.versions = set.3;
        for a in m.plan(set).actions {
            m.apply(&a);
        }
        for (path, c) in edits {
            let head = m.slots.values().any(|s| s.remote.map(|r| r.1) == Some(c));
            let here = m.slots.values().any(|s| s.local.map(|l| l.0) == Some(c));
            let kept = m.versions && m.history.iter().any(|(_, h)| *h == c);
            let copied = m.remote_copies.contains(&c);
            prop_assert!(
                head || here || kept || copied,
                "remote edit {} of {} lost: {:?}",
                c,
                path,
                m
            );
        }
    }

    /// Cloud tasks (seed 002): two-way under keep-local, a local edit stays at its path and
    /// becomes the remote's head there, whatever the remote did and whether or not it keeps
    /// versions.
    #[test]
    fn keep_local_leaves_every_local_edit_in_place_on_both_sides(
        m in model(),
        versions in any::<bool>(),
    ) {
        let set = (Direction::TwoWay, ConflictPolicy::KeepLocal, false, versions);
        let edits: Vec<(RelPath, u8)> = m
            .slots
            .iter()
            .filter_map(|(path, s)| {
                let (c, _) = s.local?;
                (s.base.map(|b| b.1) != Some(c)).then_some((path.clone(), c))
            })
            .collect();
        let mut m = m;
        m.versions = versions;
        for a in m.plan(set).actions {
            m.apply(&a);
        }
        for (path, c) in edits {
            let s = &m.slots[&path];
            prop_assert_eq!(s.local.map(|l| l.0), Some(c), "{:?}", m);
            prop_assert_eq!(s.remote.map(|r| r.1), Some(c), "{:?}", m);
        }
    }

    #[test]
    fn deletions_of_more_than_half_wait_for_confirmation(n in 10usize..30, gone in 0usize..30) {
        let gone = gone.min(n);
        let mut base = BTreeMap::new();
        let mut local = BTreeMap::new();
        let mut remote = BTreeMap::new();
        for i in 0..n {
            let path = rel(&format!("f{i:02}"));
            base.insert(path.clone(), base_row(&path, 1, 5));
            remote.insert(path.clone(), remote_entry(5, 1, 1));
            if i >= gone {
                local.insert(path.clone(), local_entry(1, 1));
            }
        }
        let guarded = |base: &BTreeMap<RelPath, IndexRow>, local: &BTreeMap<RelPath, ReplicaEntry>, remote: &BTreeMap<RelPath, ReplicaEntry>, unchanged: usize| plan_sync(&SyncInputs {
            base,
            local,
            remote,
            remote_keeps_versions: true,
            direction: Direction::TwoWay,
            policy: ConflictPolicy::KeepLatest,
            keep_conflict_copy: false,
            incomplete: &[],
            excluded: &BTreeSet::new(),
            keep_deleted: false,
            guards: Guards { confirm_deletes: false, half_deletes: true },
            unchanged,
        });
        let plan = guarded(&base, &local, &remote, 0);
        let expected = if gone == n {
            Some(Hold::EmptiedRoot { synced: n })
        } else if gone * 2 > n {
            Some(Hold::ManyDeletes { here: 0, there: gone as u64, synced: n })
        } else {
            None
        };
        prop_assert_eq!(&plan.hold, &expected);
        // The same when the unchanged paths are left out first, as a pass does.
        let mut sieve = unchanged::Sieve::new(&mut local, &mut remote);
        for row in base.into_values() {
            sieve.row(row);
        }
        let unchanged = sieve.unchanged;
        let base = sieve.base();
        prop_assert_eq!(guarded(&base, &local, &remote, unchanged).hold, expected);
    }
}
