use std::collections::BTreeMap;

use super::*;
use crate::replica::{collect, content_of};

fn rel(s: &str) -> RelPath {
    RelPath::parse(s).expect("valid test path")
}

const MTIME: i64 = 1_600_000_000_123_456_789;

fn file_entry(data: &[u8]) -> NewEntry {
    NewEntry {
        kind: EntryKind::File,
        size: data.len() as u64,
        mtime_ns: MTIME,
        mode: 0o640,
        hash: Some(ContentHash::of(data)),
        target: None,
    }
}

fn folder_entry() -> NewEntry {
    NewEntry {
        kind: EntryKind::Dir,
        size: 0,
        mtime_ns: MTIME,
        mode: 0o750,
        hash: None,
        target: None,
    }
}

fn link_entry(target: &str) -> NewEntry {
    NewEntry {
        kind: EntryKind::Symlink,
        size: 0,
        mtime_ns: MTIME,
        mode: 0o777,
        hash: Some(ContentHash::of(target.as_bytes())),
        target: Some(target.into()),
    }
}

fn write_file(path: &str, data: &[u8], expect: Option<&ReplicaEntry>) -> WriteOp {
    WriteOp {
        path: rel(path),
        entry: file_entry(data),
        content: Bytes::copy_from_slice(data),
        expect: expect.map(|e| e.version.clone()),
    }
}

fn write_meta(path: &str, entry: NewEntry) -> WriteOp {
    WriteOp {
        path: rel(path),
        entry,
        content: Bytes::new(),
        expect: None,
    }
}

fn replica() -> (tempfile::TempDir, LocalReplica) {
    let dir = tempfile::tempdir().expect("temp dir");
    let r = LocalReplica::open(dir.path(), Filter::default()).expect("open");
    (dir, r)
}

async fn listing(r: &LocalReplica) -> BTreeMap<RelPath, ReplicaEntry> {
    r.list().await.expect("list").entries
}

fn put(dir: &tempfile::TempDir, path: &str, data: &[u8]) {
    std::fs::write(dir.path().join(path), data).expect("write test file");
}

fn done(o: &Result<Outcome>) -> ReplicaEntry {
    match o {
        Ok(Outcome::Done(Some(e))) => e.clone(),
        other => panic!("expected a done write, got {other:?}"),
    }
}

/// Nothing is left in the working folder (it may not exist at all).
fn no_temporaries(dir: &tempfile::TempDir) {
    let work = dir.path().join(cairn_model::filter::WORK_DIR_NAME);
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "temporaries left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_many_places_what_is_still_expected_and_skips_a_stale_expect() {
    let (dir, r) = replica();
    put(&dir, "b.txt", b"old b");
    put(&dir, "c.txt", b"old c");
    let listed = listing(&r).await;
    // Edited here after the listing (a size change: visible whatever the clock's grain).
    put(&dir, "b.txt", b"edited here");

    let results = r
        .write_many(vec![
            write_meta("d", folder_entry()),
            write_file("d/a.txt", b"new a", None),
            write_file("b.txt", b"theirs", listed.get(&rel("b.txt"))),
            write_file("c.txt", b"new c", listed.get(&rel("c.txt"))),
            write_meta("d/l", link_entry("a.txt")),
        ])
        .await
        .expect("batch");
    assert_eq!(results.len(), 5);
    let d = done(&results[0]);
    assert_eq!((d.kind, d.mode), (EntryKind::Dir, 0o750));
    let a = done(&results[1]);
    assert_eq!(
        (a.kind, a.size, a.mode, a.mtime_ns),
        (EntryKind::File, 5, 0o640, MTIME)
    );
    match &results[2] {
        Ok(Outcome::Changed(Some(now))) => assert_eq!(now.size, 11),
        other => panic!("a stale expect must not write: {other:?}"),
    }
    assert_eq!(
        std::fs::read(dir.path().join("b.txt")).expect("read"),
        b"edited here"
    );
    done(&results[3]);
    assert_eq!(
        std::fs::read(dir.path().join("c.txt")).expect("read"),
        b"new c"
    );
    assert_eq!(done(&results[4]).target.as_deref(), Some("a.txt"));
    assert_eq!(
        std::fs::read_link(dir.path().join("d/l")).expect("link"),
        Path::new("a.txt")
    );
    // What a write reports is what a listing sees.
    let now = listing(&r).await;
    assert_eq!(now.get(&rel("d/a.txt")), Some(&a));
    no_temporaries(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sync_makes_a_whole_batch_durable() {
    let (dir, r) = replica();
    let ops: Vec<WriteOp> = (0..50)
        .map(|i| write_file(&format!("f{i}.txt"), format!("file {i}").as_bytes(), None))
        .collect();
    let results = r.write_many(ops).await.expect("batch");
    assert!(results
        .iter()
        .all(|o| matches!(o, Ok(Outcome::Done(Some(_))))));
    assert_eq!(r.syncs.load(Ordering::Relaxed), 1, "one sync for 50 files");
    // Folders and links carry no content: no sync at all.
    let results = r
        .write_many(vec![
            write_meta("x", folder_entry()),
            write_meta("x/y", folder_entry()),
            write_meta("l", link_entry("x")),
        ])
        .await
        .expect("batch");
    assert!(results
        .iter()
        .all(|o| matches!(o, Ok(Outcome::Done(Some(_))))));
    assert_eq!(r.syncs.load(Ordering::Relaxed), 1);
    assert_eq!(listing(&r).await.len(), 53);
    no_temporaries(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_that_does_not_match_its_entry_is_refused_in_a_batch() {
    let (dir, r) = replica();
    let mut lying = write_file("lie.txt", b"abc", None);
    lying.entry.hash = Some(ContentHash::of(b"xyz"));
    let mut short = write_file("short.txt", b"abc", None);
    short.entry.size = 10;
    short.entry.hash = None;
    let results = r
        .write_many(vec![lying, short, write_file("ok.txt", b"fine", None)])
        .await
        .expect("batch");
    assert!(results[0].is_err(), "a lying hash was accepted");
    assert!(results[1].is_err(), "a short content was accepted");
    done(&results[2]);
    assert!(!dir.path().join("lie.txt").exists());
    assert!(!dir.path().join("short.txt").exists());
    no_temporaries(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_many_never_writes_through_a_linked_parent() {
    let (dir, r) = replica();
    let outside = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).expect("symlink");
    let results = r
        .write_many(vec![
            write_file("out/x.txt", b"escape", None),
            write_meta("out/sub", folder_entry()),
            write_meta("out/l", link_entry("/etc/passwd")),
            write_file("in.txt", b"inside", None),
        ])
        .await
        .expect("batch");
    for (i, result) in results.iter().take(3).enumerate() {
        assert!(
            result.is_err(),
            "item {i} went through the link: {result:?}"
        );
    }
    done(&results[3]);
    let escaped: Vec<_> = std::fs::read_dir(outside.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(escaped.is_empty(), "written outside the root: {escaped:?}");
    assert!(
        std::fs::symlink_metadata(dir.path().join("out"))
            .expect("the link")
            .file_type()
            .is_symlink(),
        "the link itself is left alone"
    );
    no_temporaries(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_many_refuses_a_file_changed_or_gone_since_the_listing() {
    let (dir, r) = replica();
    put(&dir, "a.txt", b"steady");
    put(&dir, "b.txt", b"will grow");
    put(&dir, "c.txt", b"will go");
    std::fs::create_dir(dir.path().join("d")).expect("mkdir");
    let listed = listing(&r).await;
    put(&dir, "b.txt", b"will grow, and did");
    std::fs::remove_file(dir.path().join("c.txt")).expect("rm");

    let items: Vec<(RelPath, ReplicaEntry)> = ["a.txt", "b.txt", "c.txt", "d"]
        .iter()
        .map(|p| (rel(p), listed[&rel(p)].clone()))
        .collect();
    let read = r.read_many(&items).await.expect("batch");
    assert_eq!(
        read[0].as_ref().expect("a is unchanged").as_ref(),
        b"steady"
    );
    let changed = read[1].as_ref().expect_err("b changed");
    assert!(changed.to_string().contains("b.txt"), "{changed}");
    let gone = read[2].as_ref().expect_err("c is gone");
    assert!(gone.to_string().contains("gone"), "{gone}");
    assert!(read[3].is_err(), "a folder has no content");

    // A listed hash is checked too.
    let mut wrong = listed[&rel("a.txt")].clone();
    wrong.hash = Some(ContentHash::of(b"something else"));
    let read = r.read_many(&[(rel("a.txt"), wrong)]).await.expect("batch");
    assert!(read[0].is_err(), "content that does not match its hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_many_gives_none_for_a_vanished_or_changed_file() {
    let (dir, r) = replica();
    let big = vec![42u8; 3 * HASH_BUFFER + 17];
    put(&dir, "big.bin", &big);
    put(&dir, "gone.txt", b"soon gone");
    put(&dir, "edited.txt", b"short");
    std::os::unix::fs::symlink("big.bin", dir.path().join("link")).expect("symlink");
    let listed = listing(&r).await;
    std::fs::remove_file(dir.path().join("gone.txt")).expect("rm");
    put(&dir, "edited.txt", b"longer now");

    let items: Vec<(RelPath, Version)> = ["big.bin", "gone.txt", "edited.txt", "link"]
        .iter()
        .map(|p| (rel(p), listed[&rel(p)].version.clone()))
        .collect();
    let hashes = r.hash_many(&items).await.expect("hashes");
    assert_eq!(hashes, vec![Some(ContentHash::of(&big)), None, None, None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_many_keeps_a_folder_that_is_not_empty() {
    let (dir, r) = replica();
    for d in ["d", "e"] {
        std::fs::create_dir(dir.path().join(d)).expect("mkdir");
    }
    put(&dir, "d/a.txt", b"a");
    put(&dir, "e/b.txt", b"b");
    put(&dir, "f.txt", b"f");
    put(&dir, "g.txt", b"g");
    let listed = listing(&r).await;
    // After the listing: something new in d, f edited, g already deleted.
    put(&dir, "d/new.txt", b"new");
    put(&dir, "f.txt", b"f, edited");
    std::fs::remove_file(dir.path().join("g.txt")).expect("rm");

    let items: Vec<(RelPath, Version)> = ["d/a.txt", "d", "e/b.txt", "e", "f.txt", "g.txt"]
        .iter()
        .map(|p| (rel(p), listed[&rel(p)].version.clone()))
        .collect();
    let results = r.delete_many(&items).await.expect("batch");
    assert!(matches!(results[0], Ok(Outcome::Done(None))));
    let kept = results[1].as_ref().expect_err("d holds a new file");
    assert!(kept.to_string().contains("not empty"), "{kept}");
    assert!(matches!(results[2], Ok(Outcome::Done(None))));
    // e's times moved when its child went; it is still the folder that was listed.
    assert!(
        matches!(results[3], Ok(Outcome::Done(None))),
        "{:?}",
        results[3]
    );
    assert!(matches!(&results[4], Ok(Outcome::Changed(Some(e))) if e.size == 9));
    assert!(
        matches!(results[5], Ok(Outcome::Done(None))),
        "already gone"
    );
    assert!(dir.path().join("d/new.txt").exists());
    assert!(!dir.path().join("d/a.txt").exists());
    assert!(!dir.path().join("e").exists());
    assert!(dir.path().join("f.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_many_moves_only_what_is_still_expected() {
    let (dir, r) = replica();
    for (p, data) in [
        ("a.txt", "a"),
        ("b.txt", "b"),
        ("c.txt", "c"),
        ("taken.txt", "t"),
    ] {
        put(&dir, p, data.as_bytes());
    }
    std::fs::create_dir(dir.path().join("d")).expect("mkdir");
    put(&dir, "d/x.txt", b"x");
    let listed = listing(&r).await;
    put(&dir, "b.txt", b"b, edited");
    let mv = |from: &str, to: &str| {
        let e = &listed[&rel(from)];
        MoveOp {
            from: rel(from),
            to: rel(to),
            expect: e.version.clone(),
            entry: NewEntry {
                kind: e.kind,
                size: e.size,
                mtime_ns: e.mtime_ns,
                mode: e.mode,
                hash: e.hash,
                target: e.target.clone(),
            },
        }
    };
    let results = r
        .rename_many(&[
            mv("a.txt", "sub/a2.txt"),
            mv("b.txt", "b2.txt"),
            mv("c.txt", "taken.txt"),
            mv("d", "e"),
        ])
        .await
        .expect("batch");
    assert_eq!(done(&results[0]).size, 1);
    assert!(matches!(results[1], Ok(Outcome::Changed(Some(_)))));
    assert!(matches!(&results[2], Ok(Outcome::Changed(Some(t))) if t.size == 1));
    assert_eq!(done(&results[3]).kind, EntryKind::Dir);
    assert_eq!(
        std::fs::read(dir.path().join("sub/a2.txt")).expect("read"),
        b"a"
    );
    assert!(dir.path().join("b.txt").exists() && !dir.path().join("b2.txt").exists());
    assert_eq!(std::fs::read(dir.path().join("c.txt")).expect("read"), b"c");
    assert_eq!(
        std::fs::read(dir.path().join("taken.txt")).expect("read"),
        b"t"
    );
    assert_eq!(
        std::fs::read(dir.path().join("e/x.txt")).expect("read"),
        b"x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_write_lands_whole_or_not_at_all() {
    let (dir, r) = replica();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let pieces: Vec<Result<Bytes>> = data
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let written = r
        .write(
            &rel("big.bin"),
            &file_entry(&data),
            stream::iter(pieces).boxed(),
            None,
        )
        .await;
    let big = done(&written);
    assert_eq!(big.size, data.len() as u64);
    let back = collect(r.read(&rel("big.bin"), &big.version).await.expect("read"))
        .await
        .expect("content");
    assert!(back == data, "the content read back differs");

    // A stream that fails half-way leaves nothing behind, not even a temporary.
    let broken = stream::iter(vec![
        Ok(Bytes::from_static(b"half")),
        Err(Error::remote("connection dropped")),
    ])
    .boxed();
    let failed = r
        .write(
            &rel("broken.bin"),
            &file_entry(b"half and half"),
            broken,
            None,
        )
        .await;
    assert!(failed.is_err());
    // So does a stream shorter than announced (no hash to catch it).
    let announced = NewEntry {
        hash: None,
        ..file_entry(b"twelve bytes")
    };
    let short = r
        .write(
            &rel("short.bin"),
            &announced,
            content_of(Bytes::from_static(b"twelve")),
            None,
        )
        .await;
    assert!(short.is_err());
    assert!(!dir.path().join("broken.bin").exists());
    assert!(!dir.path().join("short.bin").exists());
    no_temporaries(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_leaves_no_temporary() {
    let (dir, r) = replica();
    let (started, mut first_piece) = tokio::sync::mpsc::channel::<()>(1);
    // One piece, then a sender that never finishes (a stalled download).
    let stalled = stream::once(async move {
        let _ = started.send(()).await;
        Ok(Bytes::from_static(b"partial"))
    })
    .chain(stream::pending())
    .boxed();
    let entry = file_entry(b"partial content that never comes");
    let path = rel("stalled.bin");
    let mut write = Box::pin(r.write(&path, &entry, stalled, None));
    tokio::select! {
        done = &mut write => panic!("a stalled write finished: {done:?}"),
        _ = first_piece.recv() => {}
    }
    let work = dir.path().join(cairn_model::filter::WORK_DIR_NAME);
    let count = || std::fs::read_dir(&work).map_or(0, |d| d.count());
    assert_eq!(count(), 1, "the write had its temporary");
    // Cancelled: its writer thread then lets go of the temporary.
    drop(write);
    let mut left = usize::MAX;
    for _ in 0..200 {
        left = count();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "the temporary of a cancelled write was left");
    assert!(!dir.path().join("stalled.bin").exists());
}
