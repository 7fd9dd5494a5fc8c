//! The replica conformance suite: the same checks against every kind of replica (a local
//! folder, a folder on a real cairn server; cloud replicas join in the next issue). What the
//! engine relies on: complete listings, conditional writes that never clobber a change they did
//! not expect, content that arrives whole and checked, moves, and (where a journal is kept)
//! changes after a cursor.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_client::replica::ServerReplica;
use cairn_client::{ConnectOptions, Connection, Trust};
use cairn_engine::replica::{
    collect, content_of, LocalReplica, NewEntry, Outcome, Replica, ReplicaChange, ReplicaEntry,
};
use cairn_model::{ContentHash, DeviceId, EntryKind, Filter, RelPath};

use crate::harness::Server;

fn rel(s: &str) -> RelPath {
    RelPath::parse(s).expect("valid test path")
}

fn file(data: &[u8]) -> NewEntry {
    NewEntry {
        kind: EntryKind::File,
        size: data.len() as u64,
        mtime_ns: 1_600_000_000_000_000_000,
        mode: 0o640,
        hash: Some(ContentHash::of(data)),
        target: None,
    }
}

fn folder() -> NewEntry {
    NewEntry {
        kind: EntryKind::Dir,
        size: 0,
        mtime_ns: 1_600_000_000_000_000_000,
        mode: 0o750,
        hash: None,
        target: None,
    }
}

fn done(o: Outcome) -> ReplicaEntry {
    match o {
        Outcome::Done(Some(e)) => e,
        other => panic!("expected a done write, got {other:?}"),
    }
}

async fn write(r: &dyn Replica, path: &str, data: &[u8], expect: Option<&ReplicaEntry>) -> Outcome {
    r.write(
        &rel(path),
        &file(data),
        content_of(Bytes::copy_from_slice(data)),
        expect.map(|e| &e.version),
    )
    .await
    .expect("write")
}

async fn read(r: &dyn Replica, path: &str, e: &ReplicaEntry) -> Vec<u8> {
    collect(r.read(&rel(path), &e.version).await.expect("read"))
        .await
        .expect("content")
}

/// Every check, in order, on an empty replica.
async fn conformance(r: &dyn Replica) {
    let caps = r.capabilities();
    let first = r.list().await.expect("list");
    assert!(first.entries.is_empty(), "{}: starts empty", r.describe());

    // A new file: written, listed, stat'ed and read back whole.
    let v1 = done(write(r, "a.txt", b"one", None).await);
    assert_eq!((v1.kind, v1.size, v1.mode), (EntryKind::File, 3, 0o640));
    assert_eq!(
        v1.mtime_ns,
        file(b"one").mtime_ns,
        "{}: mtime kept",
        r.describe()
    );
    assert_eq!(r.stat(&rel("a.txt")).await.expect("stat"), Some(v1.clone()));
    assert_eq!(read(r, "a.txt", &v1).await, b"one");
    let listed = r.list().await.expect("list");
    assert_eq!(
        listed.entries.get(&rel("a.txt")).map(|e| &e.version),
        Some(&v1.version)
    );

    // Writes are conditional: "nothing there" and a stale version both lose, and say what
    // is there now.
    let clash = write(r, "a.txt", b"other", None).await;
    assert_eq!(clash, Outcome::Changed(Some(v1.clone())));
    let v2 = done(write(r, "a.txt", b"two!", Some(&v1)).await);
    assert_ne!(v2.version, v1.version);
    assert_eq!(
        write(r, "a.txt", b"late", Some(&v1)).await,
        Outcome::Changed(Some(v2.clone()))
    );
    assert_eq!(read(r, "a.txt", &v2).await, b"two!");

    // Content that does not match the hash it was announced with is refused.
    let mut lying = file(b"abc");
    lying.hash = Some(ContentHash::of(b"xyz"));
    let refused = r
        .write(
            &rel("lie.txt"),
            &lying,
            content_of(Bytes::from_static(b"abc")),
            None,
        )
        .await;
    assert!(
        refused.is_err(),
        "{}: a lying hash was accepted",
        r.describe()
    );
    assert_eq!(r.stat(&rel("lie.txt")).await.expect("stat"), None);

    // Nested paths: parents come into being; folders are entries too.
    done(
        r.write(&rel("d"), &folder(), content_of(Bytes::new()), None)
            .await
            .expect("mkdir"),
    );
    let deep = done(write(r, "d/e/f.bin", &[7u8; 300_000], None).await);
    assert_eq!(read(r, "d/e/f.bin", &deep).await, vec![7u8; 300_000]);
    let listed = r.list().await.expect("list");
    assert_eq!(
        listed.entries.get(&rel("d")).map(|e| e.kind),
        Some(EntryKind::Dir)
    );
    assert!(listed.entries.contains_key(&rel("d/e/f.bin")));

    // Moves: conditional, never over something, and the content goes along.
    assert!(matches!(
        r.rename(&rel("a.txt"), &rel("b.txt"), &v1.version)
            .await
            .expect("rename"),
        Outcome::Changed(_)
    ));
    assert!(matches!(
        r.rename(&rel("a.txt"), &rel("d/e/f.bin"), &v2.version)
            .await
            .expect("rename"),
        Outcome::Changed(Some(_))
    ));
    let moved = done(
        r.rename(&rel("a.txt"), &rel("b.txt"), &v2.version)
            .await
            .expect("rename"),
    );
    assert_eq!(r.stat(&rel("a.txt")).await.expect("stat"), None);
    assert_eq!(read(r, "b.txt", &moved).await, b"two!");

    // Deletes: conditional too.
    assert!(matches!(
        r.delete(&rel("b.txt"), &v1.version).await.expect("delete"),
        Outcome::Changed(Some(_))
    ));
    assert_eq!(
        r.delete(&rel("b.txt"), &moved.version)
            .await
            .expect("delete"),
        Outcome::Done(None)
    );
    assert_eq!(r.stat(&rel("b.txt")).await.expect("stat"), None);
    // Again (a retry after a lost answer): already gone is done.
    assert_eq!(
        r.delete(&rel("b.txt"), &moved.version)
            .await
            .expect("delete"),
        Outcome::Done(None)
    );

    // A journal, where there is one: exactly the changes after the cursor.
    if caps.has_journal {
        let before = r.list().await.expect("list").cursor.expect("cursor");
        let fresh = done(write(r, "c.txt", b"c", None).await);
        r.delete(&rel("d/e/f.bin"), &deep.version)
            .await
            .expect("delete");
        let (changes, after) = r.changes(&before).await.expect("changes").expect("journal");
        assert_eq!(
            changes,
            vec![
                ReplicaChange::Upsert(rel("c.txt"), fresh),
                ReplicaChange::Remove(rel("d/e/f.bin")),
            ]
        );
        let (none, _) = r.changes(&after).await.expect("changes").expect("journal");
        assert!(none.is_empty());
        let bogus = cairn_engine::replica::Cursor("999999:another-server".into());
        assert!(r.changes(&bogus).await.expect("changes").is_none());
    } else {
        let cursor = cairn_engine::replica::Cursor("anything".into());
        assert!(r.changes(&cursor).await.expect("changes").is_none());
    }
    if caps.keeps_versions {
        // The replaced content is still readable at its version.
        assert_eq!(read(r, "a.txt", &v1).await, b"one");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_folder_is_a_conforming_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = LocalReplica::open(dir.path(), Filter::default()).expect("open");
    conformance(&r).await;
    // A local replica writes through links never: a link to outside is replaced, not followed.
    let outside = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).expect("symlink");
    let written = r
        .write(
            &rel("out/x"),
            &file(b"x"),
            content_of(Bytes::from_static(b"x")),
            None,
        )
        .await;
    assert!(written.is_err());
    assert!(!outside.path().join("x").exists());
    // A file that changes while it is read fails the read instead of handing on mixed content.
    let v = done(write(&r, "grows.log", b"first line\n", None).await);
    let reading = r.read(&rel("grows.log"), &v.version).await.expect("read");
    std::fs::write(dir.path().join("grows.log"), b"first line\nsecond line\n").expect("append");
    assert!(collect(reading).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_folder_is_a_conforming_replica() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = tokio::task::spawn_blocking(Server::start)
        .await
        .expect("server");
    let fp = {
        let s = &server;
        tokio::task::block_in_place(|| s.fingerprint())
    };
    let conn = Connection::new(ConnectOptions {
        url: server.url(),
        user: "alice".into(),
        password: "alice-pw".into(),
        trust: Trust::Fingerprint(fp),
        proxy: None,
        device: DeviceId("conformance".into()),
        computer: "conformance".into(),
        timeout: Duration::from_secs(30),
    })
    .expect("connection");
    conn.login().await.expect("login");
    let conn = Arc::new(conn);
    // A sub-folder of the shared folder: prefixes must stay invisible to the engine.
    let r = ServerReplica::new(Arc::new(conn.remote("backup")), rel("sub/dir"));
    conformance(&r).await;
}
