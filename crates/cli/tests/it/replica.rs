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
    collect, content_of, LocalReplica, MoveOp, NewEntry, Outcome, Replica, ReplicaChange,
    ReplicaEntry, WriteOp,
};
use cairn_model::{ContentHash, DeviceId, EntryKind, Filter, RelPath};
use futures_util::stream::{self, StreamExt};

use crate::harness::{noise, Server};

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
    let caps = r.capabilities();
    let outcome = r
        .write(
            &rel(path),
            &file(data),
            content_of(Bytes::copy_from_slice(data)),
            expect.map(|e| &e.version),
        )
        .await
        .expect("write");
    as_listed(&caps, outcome)
}

/// An outcome compared with what stat and listings say: without the hash a write may add.
fn as_listed(caps: &cairn_engine::replica::Capabilities, outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Done(e) => Outcome::Done(e.map(|e| listed(caps, e))),
        Outcome::Changed(e) => Outcome::Changed(e.map(|e| listed(caps, e))),
    }
}

async fn read(r: &dyn Replica, path: &str, e: &ReplicaEntry) -> Vec<u8> {
    collect(r.read(&rel(path), &e.version).await.expect("read"))
        .await
        .expect("content")
}

/// An entry as a listing gives it: a replica that lists no hashes may still say in a write's
/// answer what it wrote; one that keeps no times may answer a write without the service's
/// time (WebDAV's commit answers from the PUT's ETag, not a look: the engine records a
/// remote's version and hash, never its time).
fn listed(caps: &cairn_engine::replica::Capabilities, mut e: ReplicaEntry) -> ReplicaEntry {
    if !caps.knows_hashes {
        e.hash = None;
    }
    if !caps.knows_mtimes {
        e.mtime_ns = 0;
    }
    e
}

/// Every check, in order, on an empty replica.
async fn conformance(r: &dyn Replica) {
    let caps = r.capabilities();
    let first = r.list().await.expect("list");
    assert!(first.entries.is_empty(), "{}: starts empty", r.describe());

    // A new file: written, listed, stat'ed and read back whole.
    let v1 = done(write(r, "a.txt", b"one", None).await);
    assert_eq!((v1.kind, v1.size), (EntryKind::File, 3));
    if caps.keeps_modes {
        assert_eq!(v1.mode, 0o640, "{}: mode kept", r.describe());
        assert_eq!(
            v1.mtime_ns,
            file(b"one").mtime_ns,
            "{}: mtime kept",
            r.describe()
        );
    }
    assert_eq!(
        r.stat(&rel("a.txt"))
            .await
            .expect("stat")
            .map(|e| listed(&caps, e)),
        Some(listed(&caps, v1.clone()))
    );
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
    batches(r).await;
    promotion(r).await;
    dedup(r).await;
    crate::replica_edges::edges(r).await;
}

/// The whole suite, then the large folder, on a cloud replica.
async fn cloud_suite(r: &cairn_cloud::CloudReplica) {
    cloud_suite_of(r, crate::replica_edges::MANY).await;
}

/// The whole suite, then a folder of `many` files, on a cloud replica.
async fn cloud_suite_of(r: &cairn_cloud::CloudReplica, many: usize) {
    conformance(r).await;
    let fill = crate::replica_edges::Fill::Operator(r.operator());
    crate::replica_edges::many_files(r, fill, many).await;
}

fn link(target: &str) -> NewEntry {
    NewEntry {
        kind: EntryKind::Symlink,
        size: target.len() as u64,
        mtime_ns: 1_600_000_000_000_000_000,
        mode: 0o777,
        hash: None,
        target: Some(target.into()),
    }
}

fn write_op(path: &str, entry: NewEntry, content: &[u8], expect: Option<&ReplicaEntry>) -> WriteOp {
    WriteOp {
        path: rel(path),
        entry,
        content: Bytes::copy_from_slice(content),
        expect: expect.map(|e| e.version.clone()),
    }
}

/// What a listed entry is, as a move or a write names it.
fn as_new(e: &ReplicaEntry) -> NewEntry {
    NewEntry {
        kind: e.kind,
        size: e.size,
        mtime_ns: e.mtime_ns,
        mode: e.mode,
        hash: e.hash,
        target: e.target.clone(),
    }
}

/// The batch methods: each item has its own outcome, a bad item fails alone.
async fn batches(r: &dyn Replica) {
    let caps = r.capabilities();
    let stale = done(write(r, "pre/stale.txt", b"first", None).await);
    let big = noise(11, 200_000);
    let mut lying = file(b"abc");
    lying.hash = Some(ContentHash::of(b"xyz"));
    // Parents before children; one stale expect and one lying hash among them.
    let mut ops = vec![
        write_op("m", folder(), b"", None),
        write_op("m/link", link("f1.txt"), b"", None),
        write_op("m/f1.txt", file(b"one one"), b"one one", None),
        write_op("m/f2.bin", file(&big), &big, None),
        write_op("pre/stale.txt", file(b"second"), b"second", None),
        write_op("m/lie.txt", lying, b"abc", None),
        write_op("m/empty", file(b""), b"", None),
    ];
    if !caps.stores_links {
        // A replica without links refuses one alone, saying so.
        let refused = r.write_many(vec![ops.remove(1)]).await.expect("write_many");
        assert!(refused[0].is_err(), "{}: a link was taken", r.describe());
    }
    let out = r.write_many(ops).await.expect("write_many");
    let n = if caps.stores_links { 7 } else { 6 };
    assert_eq!(out.len(), n, "{}: one result per write", r.describe());
    let mut out = out.into_iter();
    let mut next = || out.next().expect("a result");
    let dir = done(next().expect("folder"));
    assert_eq!(dir.kind, EntryKind::Dir);
    if caps.keeps_modes {
        assert_eq!(dir.mode, 0o750);
    }
    if caps.stores_links {
        let l = done(next().expect("link"));
        assert_eq!(
            (l.kind, l.target.as_deref()),
            (EntryKind::Symlink, Some("f1.txt"))
        );
    }
    let f1 = done(next().expect("f1"));
    let f2 = done(next().expect("f2"));
    assert_eq!((f1.size, f2.size), (7, 200_000));
    if caps.knows_hashes {
        assert_eq!(f2.hash, Some(ContentHash::of(&big)));
    }
    assert_eq!(
        as_listed(&caps, next().expect("stale")),
        Outcome::Changed(Some(stale.clone())),
        "{}: a stale expect loses alone",
        r.describe()
    );
    assert!(
        next().is_err(),
        "{}: a lying hash was accepted",
        r.describe()
    );
    let empty = done(next().expect("empty"));
    assert_eq!(empty.size, 0);
    assert_eq!(r.stat(&rel("m/lie.txt")).await.expect("stat"), None);
    let listed = r.list().await.expect("list");
    for p in ["m", "m/f1.txt", "m/f2.bin", "m/empty"] {
        assert!(listed.entries.contains_key(&rel(p)), "{p} listed");
    }
    assert_eq!(
        listed.entries.contains_key(&rel("m/link")),
        caps.stores_links
    );

    // read_many: one bad item (a path that is not there) fails alone.
    let items = vec![
        (rel("m/f1.txt"), f1.clone()),
        (rel("m/nope.txt"), f1.clone()),
        (rel("m/f2.bin"), f2.clone()),
        (rel("m/empty"), empty.clone()),
    ];
    let got = r.read_many(&items).await.expect("read_many");
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].as_ref().expect("f1")[..], b"one one"[..]);
    assert!(got[1].is_err(), "{}: a missing file was read", r.describe());
    assert_eq!(got[2].as_ref().expect("f2")[..], big[..]);
    assert!(got[3].as_ref().expect("empty").is_empty());

    // delete_many: done, stale (changed, with what is there), and already gone (done).
    let gone = r
        .delete_many(&[
            (rel("m/f1.txt"), f1.version.clone()),
            (rel("m/f2.bin"), f1.version.clone()),
            (rel("m/never.txt"), f1.version.clone()),
        ])
        .await
        .expect("delete_many");
    assert_eq!(gone[0].as_ref().expect("delete"), &Outcome::Done(None));
    assert!(
        matches!(&gone[1], Ok(Outcome::Changed(Some(e))) if e.version == f2.version),
        "{}: a stale delete: {:?}",
        r.describe(),
        gone[1]
    );
    assert_eq!(gone[2].as_ref().expect("delete"), &Outcome::Done(None));
    assert_eq!(r.stat(&rel("m/f1.txt")).await.expect("stat"), None);
    assert!(r.stat(&rel("m/f2.bin")).await.expect("stat").is_some());

    // rename_many: a folder's files move together; a stale one stays.
    let files = ["a", "b", "c"];
    let ops = files
        .iter()
        .map(|n| {
            let data = format!("content of {n}");
            write_op(
                &format!("src/{n}"),
                file(data.as_bytes()),
                data.as_bytes(),
                None,
            )
        })
        .collect();
    let written = r.write_many(ops).await.expect("write_many");
    assert!(written
        .iter()
        .all(|w| matches!(w, Ok(Outcome::Done(Some(_))))));
    let listed = r.list().await.expect("list");
    let at = |p: &str| listed.entries.get(&rel(p)).expect("listed").clone();
    let mut moves: Vec<MoveOp> = ["a", "b"]
        .iter()
        .map(|n| {
            let e = at(&format!("src/{n}"));
            MoveOp {
                from: rel(&format!("src/{n}")),
                to: rel(&format!("dst/{n}")),
                expect: e.version.clone(),
                entry: as_new(&e),
            }
        })
        .collect();
    moves.push(MoveOp {
        from: rel("src/c"),
        to: rel("dst/c"),
        expect: at("src/a").version,
        entry: as_new(&at("src/c")),
    });
    let moved = r.rename_many(&moves).await.expect("rename_many");
    assert_eq!(moved.len(), 3);
    for (n, m) in ["a", "b"].iter().zip(&moved) {
        let e = match m {
            Ok(Outcome::Done(Some(e))) => e.clone(),
            other => panic!("{}: moving {n}: {other:?}", r.describe()),
        };
        assert_eq!(
            read(r, &format!("dst/{n}"), &e).await,
            format!("content of {n}").as_bytes()
        );
        assert_eq!(r.stat(&rel(&format!("src/{n}"))).await.expect("stat"), None);
    }
    assert!(
        matches!(&moved[2], Ok(Outcome::Changed(_))),
        "{}: a stale move: {:?}",
        r.describe(),
        moved[2]
    );
    assert!(r.stat(&rel("src/c")).await.expect("stat").is_some());
    assert_eq!(r.stat(&rel("dst/c")).await.expect("stat"), None);
}

/// A replica that keeps versions makes an old one the head again, without sending it.
async fn promotion(r: &dyn Replica) {
    if !r.capabilities().keeps_versions {
        return;
    }
    let old = done(write(r, "p.txt", b"old", None).await);
    let new = done(write(r, "p.txt", b"new", Some(&old)).await);
    let before = r.traffic();
    let caps = r.capabilities();
    assert_eq!(
        match r
            .promote(&rel("p.txt"), &old.version, &old.version)
            .await
            .expect("promote")
        {
            Outcome::Changed(now) => Outcome::Changed(now.map(|e| listed(&caps, e))),
            other => other,
        },
        Outcome::Changed(Some(listed(&caps, new.clone()))),
        "{}: promote checks the head",
        r.describe()
    );
    let head = done(
        r.promote(&rel("p.txt"), &old.version, &new.version)
            .await
            .expect("promote"),
    );
    assert_ne!(head.version, new.version);
    if r.capabilities().knows_hashes {
        assert_ne!(head.version, old.version);
        assert_eq!(head.hash, Some(ContentHash::of(b"old")));
    }
    assert_eq!(
        r.stat(&rel("p.txt")).await.expect("stat"),
        Some(head.clone())
    );
    assert_eq!(read(r, "p.txt", &head).await, b"old");
    assert_eq!(
        r.traffic(),
        before,
        "{}: promoting sent content",
        r.describe()
    );
}

/// Content the replica holds already is not sent again, in a batch or streamed (where the
/// replica dedups; elsewhere the same checks run for the content alone).
async fn dedup(r: &dyn Replica) {
    let dedups = r.capabilities().dedups;
    let small = noise(21, 300_000);
    let once = r
        .write_many(vec![write_op("t/one.bin", file(&small), &small, None)])
        .await
        .expect("write_many");
    done(once.into_iter().next().expect("result").expect("write"));
    let sent = r.traffic();
    let twice = r
        .write_many(vec![write_op("t/two.bin", file(&small), &small, None)])
        .await
        .expect("write_many");
    done(twice.into_iter().next().expect("result").expect("write"));
    if dedups {
        assert_eq!(
            r.traffic(),
            sent,
            "{}: the same content was sent again",
            r.describe()
        );
    }

    // A large file streamed in pieces, read back whole, then written again elsewhere.
    let large = noise(22, 9 << 20);
    let pieces = |data: &[u8]| {
        let owned: Vec<_> = data
            .chunks(1 << 20)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(owned).boxed()
    };
    let first = done(
        r.write(&rel("big/one.bin"), &file(&large), pieces(&large), None)
            .await
            .expect("write"),
    );
    assert!(
        read(r, "big/one.bin", &first).await == large,
        "{}: large read back",
        r.describe()
    );
    let sent = r.traffic();
    let second = done(
        r.write(&rel("big/two.bin"), &file(&large), pieces(&large), None)
            .await
            .expect("write"),
    );
    if dedups {
        assert_eq!(
            r.traffic(),
            sent,
            "{}: the same large content was sent again",
            r.describe()
        );
    } else {
        assert!(read(r, "big/two.bin", &second).await == large);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_folder_is_a_conforming_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = LocalReplica::open(dir.path(), Filter::default()).expect("open");
    conformance(&r).await;
    crate::replica_edges::many_files(
        &r,
        crate::replica_edges::Fill::Replica,
        crate::replica_edges::MANY,
    )
    .await;
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

/// A replica of `prefix` in folder `backup` on `server`, as alice.
async fn server_replica(server: &Server, prefix: &str) -> ServerReplica {
    server_replica_as(server, "alice", "alice-pw", prefix).await
}

async fn server_replica_as(
    server: &Server,
    user: &str,
    password: &str,
    prefix: &str,
) -> ServerReplica {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fp = tokio::task::block_in_place(|| server.fingerprint());
    let conn = Connection::new(ConnectOptions {
        url: server.url(),
        user: user.into(),
        password: password.into(),
        trust: Trust::Fingerprint(fp),
        proxy: None,
        device: DeviceId("conformance".into()),
        computer: "conformance".into(),
        timeout: Duration::from_secs(30),
    })
    .expect("connection");
    conn.login().await.expect("login");
    let conn = Arc::new(conn);
    ServerReplica::new(Arc::new(conn.remote("backup")), rel(prefix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_folder_is_a_conforming_replica() {
    let server = tokio::task::spawn_blocking(Server::start)
        .await
        .expect("server");
    // A sub-folder of the shared folder: prefixes must stay invisible to the engine.
    let r = server_replica(&server, "sub/dir").await;
    conformance(&r).await;
    crate::replica_edges::many_files(
        &r,
        crate::replica_edges::Fill::Replica,
        crate::replica_edges::MANY,
    )
    .await;
    // What travelled: every new content once (the suite writes well over 9 MiB of new bytes).
    let sent = r.traffic();
    assert!(
        sent.bytes > 9 << 20 && sent.chunks > 100,
        "traffic counted {sent:?}"
    );
}

/// Uploads the server answers 503 to (restarting, overloaded) are sent again: the batch and
/// the streamed write both land, and what travelled is counted once per upload that landed.
#[cfg(feature = "test-hooks")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_replica_sends_again_what_the_server_failed_to_take() {
    let server =
        tokio::task::spawn_blocking(|| Server::start_with(&[("CAIRN_TEST_FAIL_UPLOADS", "2")]))
            .await
            .expect("server");
    let r = server_replica(&server, "").await;
    let small = noise(31, 100_000);
    let out = r
        .write_many(vec![write_op("s.bin", file(&small), &small, None)])
        .await
        .expect("write_many");
    let s = done(out.into_iter().next().expect("result").expect("write"));
    assert_eq!(read(&r, "s.bin", &s).await, small);
    let large = noise(32, 6 << 20);
    let l = done(
        r.write(
            &rel("l.bin"),
            &file(&large),
            content_of(Bytes::from(large.clone())),
            None,
        )
        .await
        .expect("write"),
    );
    assert!(read(&r, "l.bin", &l).await == large);
    let sent = r.traffic();
    assert!(
        sent.bytes >= (small.len() + large.len()) as u64
            && sent.bytes < 2 * (small.len() + large.len()) as u64,
        "traffic counted {sent:?}"
    );
}

/// Server log lines with `field=N` since line `from`, as the N's.
fn logged(server: &Server, field: &str, from: usize) -> Vec<usize> {
    let log = server.log.lock().expect("log");
    log.iter()
        .skip(from)
        .filter_map(|l| l.split(&format!("{field}=")).nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

fn log_len(server: &Server) -> usize {
    server.log.lock().expect("log").len()
}

/// Many small files cost a few requests, not one each: a batch of 1,000 writes is one
/// commit, reading them back is four `contents` requests of at most 256 files, and moving or
/// deleting all of them is one commit each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_replica_batch_costs_a_few_requests() {
    let server = tokio::task::spawn_blocking(Server::start)
        .await
        .expect("server");
    let r = server_replica(&server, "many").await;
    let data: Vec<Vec<u8>> = (0..1000).map(|i| noise(1000 + i, 1024)).collect();
    let ops = data
        .iter()
        .enumerate()
        .map(|(i, d)| write_op(&format!("f/{i}"), file(d), d, None))
        .collect();
    let at = log_len(&server);
    let written: Vec<ReplicaEntry> = r
        .write_many(ops)
        .await
        .expect("write_many")
        .into_iter()
        .map(|w| done(w.expect("write")))
        .collect();
    assert_eq!(logged(&server, "changes", at), vec![1000]);
    assert_eq!(r.traffic().chunks, 1000);

    let items: Vec<(RelPath, ReplicaEntry)> = written
        .iter()
        .enumerate()
        .map(|(i, e)| (rel(&format!("f/{i}")), e.clone()))
        .collect();
    let at = log_len(&server);
    let got = r.read_many(&items).await.expect("read_many");
    for (g, d) in got.iter().zip(&data) {
        assert_eq!(g.as_ref().expect("read")[..], d[..]);
    }
    let mut batches = logged(&server, "files", at);
    batches.sort_unstable();
    assert_eq!(batches, vec![232, 256, 256, 256]);

    let moves: Vec<MoveOp> = items
        .iter()
        .map(|(p, e)| MoveOp {
            from: p.clone(),
            to: rel(&format!("g/{}", p.name())),
            expect: e.version.clone(),
            entry: as_new(e),
        })
        .collect();
    let at = log_len(&server);
    let moved: Vec<ReplicaEntry> = r
        .rename_many(&moves)
        .await
        .expect("rename_many")
        .into_iter()
        .map(|m| done(m.expect("move")))
        .collect();
    assert_eq!(logged(&server, "changes", at), vec![1000]);
    let listed = r.list().await.expect("list");
    assert_eq!(listed.entries.len(), 1000, "only g/ is left");

    let deletes: Vec<(RelPath, cairn_engine::replica::Version)> = moves
        .iter()
        .zip(&moved)
        .map(|(m, e)| (m.to.clone(), e.version.clone()))
        .collect();
    let at = log_len(&server);
    let gone = r.delete_many(&deletes).await.expect("delete_many");
    assert!(gone.iter().all(|g| matches!(g, Ok(Outcome::Done(None)))));
    assert_eq!(logged(&server, "changes", at), vec![1000]);
    assert!(r.list().await.expect("list").entries.is_empty());
}

/// The server's identity, the caller's access, and a version from after a cursor (what a
/// restored server shows) are what they say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_replica_knows_its_server_access_and_past() {
    let server = tokio::task::spawn_blocking(|| {
        let s = Server::start();
        s.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
        s.admin(
            &["folder", "grant", "backup", "bob", "--access", "ro"],
            None,
        );
        s
    })
    .await
    .expect("server");
    let r = server_replica(&server, "past").await;
    let id = r
        .identity()
        .await
        .expect("identity")
        .expect("a server has one");
    assert!(!id.is_empty());
    assert_eq!(r.identity().await.expect("identity"), Some(id));
    assert!(r.writable().await.expect("writable"));
    let ro = server_replica_as(&server, "bob", "bob-pw", "past").await;
    assert!(!ro.writable().await.expect("writable"));

    let before = done(write(&r, "a.txt", b"a", None).await);
    let cursor = r.list().await.expect("list").cursor.expect("cursor");
    let after = done(write(&r, "b.txt", b"b", None).await);
    assert!(!r.went_back(&before.version, &cursor));
    assert!(
        r.went_back(&after.version, &cursor),
        "a version newer than the cursor's head is what a restored server shows"
    );
}

/// A file whose stored bytes were damaged fails alone when read; once the server's check
/// marks its chunk lost it is listed as damaged, and writing it again repairs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_replica_reads_around_a_damaged_file_and_names_it() {
    let server = tokio::task::spawn_blocking(Server::start)
        .await
        .expect("server");
    let r = server_replica(&server, "dmg").await;
    let data: Vec<Vec<u8>> = (0..5).map(|i| noise(40 + i, 300)).collect();
    let ops = data
        .iter()
        .enumerate()
        .map(|(i, d)| write_op(&format!("s{i}"), file(d), d, None))
        .collect();
    let items: Vec<(RelPath, ReplicaEntry)> = r
        .write_many(ops)
        .await
        .expect("write_many")
        .into_iter()
        .enumerate()
        .map(|(i, w)| (rel(&format!("s{i}")), done(w.expect("write"))))
        .collect();
    assert_eq!(damage(&server.data.join("chunks"), &data[2]), 1);

    let got = r.read_many(&items).await.expect("read_many");
    for (i, g) in got.iter().enumerate() {
        match (i, g) {
            (2, Err(e)) => assert!(e.to_string().contains("dmg/s2"), "{e}"),
            (2, Ok(_)) => panic!("damaged content was handed on"),
            (_, g) => assert_eq!(g.as_ref().expect("read")[..], data[i][..]),
        }
    }
    assert!(r.damaged().await.expect("damaged").is_empty());
    let check = tokio::task::block_in_place(|| server.admin_raw(&["check", "--read-data"], None));
    assert!(!check.status.success(), "the check found nothing");
    assert_eq!(r.damaged().await.expect("damaged"), vec![rel("s2")]);

    // The same content again: the lost chunk counts as missing, so it travels and lands.
    let sent = r.traffic();
    let again = r
        .write_many(vec![write_op(
            "s2",
            file(&data[2]),
            &data[2],
            Some(&items[2].1),
        )])
        .await
        .expect("write_many");
    done(again.into_iter().next().expect("result").expect("write"));
    assert_eq!(r.traffic().chunks, sent.chunks + 1);
    assert!(r.damaged().await.expect("damaged").is_empty());
    let now = r.stat(&rel("s2")).await.expect("stat").expect("s2");
    assert_eq!(read(&r, "s2", &now).await, data[2]);
}

/// Flips one byte of `victim` wherever the store under `dir` holds it; how many objects had it.
pub(crate) fn damage(dir: &std::path::Path, victim: &[u8]) -> usize {
    let mut damaged = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let mut bytes = std::fs::read(&p).expect("read object");
            if let Some(at) = bytes.windows(victim.len()).position(|w| w == victim) {
                bytes[at + 100] ^= 0xff;
                std::fs::write(&p, bytes).expect("damage object");
                damaged += 1;
            }
        }
    }
    damaged
}

pub(crate) async fn cloud_replica(
    conn: &cairn_cloud::CloudConnection,
    secrets: &cairn_cloud::Secrets,
    root: &str,
    opts: cairn_cloud::CloudOptions,
) -> cairn_cloud::CloudReplica {
    counted_cloud_replica(conn, secrets, root, opts).0
}

/// [`cloud_replica`] with the counters of its transport.
fn counted_cloud_replica(
    conn: &cairn_cloud::CloudConnection,
    secrets: &cairn_cloud::Secrets,
    root: &str,
    opts: cairn_cloud::CloudOptions,
) -> (
    cairn_cloud::CloudReplica,
    Arc<cairn_cloud::transport::Counters>,
) {
    let counters = Arc::new(cairn_cloud::transport::Counters::default());
    let op =
        cairn_cloud::connection::operator(conn, secrets, root, counters.clone()).expect("operator");
    let r = cairn_cloud::CloudReplica::new(op, conn.describe(root), opts, counters.clone())
        .with_webdav_access(conn, secrets)
        .expect("webdav access");
    (r, counters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_path_is_a_conforming_replica() {
    let moto = tokio::task::spawn_blocking(crate::cloud::start_moto)
        .await
        .expect("moto");
    let (conn, secrets) = crate::cloud::s3_connection(&moto);
    let plain = cloud_replica(&conn, &secrets, "plain", suite_options()).await;
    cloud_suite(&plain).await;
    // The three-part file went up in three parts (S3's ETag of a multipart object says how
    // many).
    let meta = plain
        .operator()
        .stat("parts/three.bin")
        .await
        .expect("stat");
    assert!(
        meta.etag()
            .is_some_and(|t| t.trim_matches('"').ends_with("-3")),
        "not sent in three parts: {:?}",
        meta.etag()
    );
    let versioned = cloud_replica(
        &conn,
        &secrets,
        "versioned",
        cairn_cloud::CloudOptions {
            keep_versions: 3,
            ..suite_options()
        },
    )
    .await;
    conformance(&versioned).await;
}

/// How the suite opens a cloud path: small parts, so a file of a few MiB has several.
pub(crate) fn suite_options() -> cairn_cloud::CloudOptions {
    cairn_cloud::CloudOptions {
        part_size: crate::replica_edges::PART_SIZE,
        ..Default::default()
    }
}

/// The conformance suite on the cloud path `root` of a connection, as a task would open it.
async fn cloud_conformance(
    provider: &str,
    options: &[(&str, &str)],
    secrets: &[(&str, &str)],
    root: &str,
) {
    let (conn, secrets) = crate::cloud_servers::connection(provider, options, secrets);
    let r = cloud_replica(&conn, &secrets, root, suite_options()).await;
    cloud_suite(&r).await;
}

fn started<T>(server: crate::harness::cloud::Result<T>) -> T {
    server.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_container_is_a_conforming_replica() {
    let az = tokio::task::spawn_blocking(crate::harness::cloud::start_azurite)
        .await
        .expect("azurite");
    let az = started(az);
    let opts = [
        ("endpoint", az.endpoint.as_str()),
        ("container", az.container.as_str()),
        ("account_name", az.account_name.as_str()),
    ];
    cloud_conformance("azblob", &opts, &[("account_key", &az.account_key)], "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webdav_folder_is_a_conforming_replica() {
    let dav = tokio::task::spawn_blocking(crate::harness::cloud::start_wsgidav)
        .await
        .expect("wsgidav");
    let dav = started(dav);
    let opts = [("endpoint", dav.endpoint.as_str()), ("username", &dav.user)];
    cloud_conformance("webdav", &opts, &[("password", &dav.password)], "w").await;
}

/// Every pass of a plain task looks for the encryption marker: one request on WebDAV (a look
/// for a folder of that name too was a second PROPFIND per pass), and a folder of that name is
/// still refused as no marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encryption_marker_is_looked_for_with_one_request() {
    let dav = tokio::task::spawn_blocking(crate::harness::cloud::start_wsgidav)
        .await
        .expect("wsgidav");
    let dav = started(dav);
    let opts = [("endpoint", dav.endpoint.as_str()), ("username", &dav.user)];
    let (conn, secrets) =
        crate::cloud_servers::connection("webdav", &opts, &[("password", &dav.password)]);
    let (r, counters) = counted_cloud_replica(&conn, &secrets, "m", suite_options());
    r.operator().create_dir("x/").await.expect("make the root");
    let requests = || counters.requests.load(std::sync::atomic::Ordering::Relaxed);
    let before = requests();
    cairn_cloud::crypt::refuse_if_encrypted(&r)
        .await
        .expect("a plain remote");
    assert_eq!(requests() - before, 1, "requests to look for the marker");
    r.operator()
        .create_dir(".cairn-encryption/")
        .await
        .expect("a folder named like the marker");
    let refused = cairn_cloud::crypt::refuse_if_encrypted(&r)
        .await
        .expect_err("a folder is no marker");
    assert!(
        refused.to_string().contains("not an encryption marker"),
        "{refused}"
    );
}

/// `data` as a stream of 1 MiB pieces, as a local file's reader gives it.
fn pieces(data: &[u8]) -> cairn_engine::replica::Content<'static> {
    let parts: Vec<_> = data
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(parts).boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webdav_upload_streams_and_never_completes_a_file_that_changed_while_sent() {
    let dav = tokio::task::spawn_blocking(crate::harness::cloud::start_wsgidav)
        .await
        .expect("wsgidav");
    let dav = started(dav);
    let opts = [("endpoint", dav.endpoint.as_str()), ("username", &dav.user)];
    let (conn, secrets) =
        crate::cloud_servers::connection("webdav", &opts, &[("password", &dav.password)]);
    let r = cloud_replica(&conn, &secrets, "s", suite_options()).await;
    // A file in many pieces arrives whole, each byte sent once.
    let data = noise(5, 12 << 20);
    let before = r.traffic().bytes;
    let e = done(
        r.write(&rel("big.bin"), &file(&data), pieces(&data), None)
            .await
            .expect("streamed write"),
    );
    let sent = r.traffic().bytes - before;
    // Each byte once, plus the few small requests around it (folders, the move).
    let len = data.len() as u64;
    assert!(
        (len..len + (64 << 10)).contains(&sent),
        "{sent} bytes sent for a file of {len}"
    );
    assert!(
        read(&r, "big.bin", &e).await == data,
        "big.bin read back differs"
    );
    // Announced at one size, read at another, or not matching its hash: refused, and the
    // server never got a whole file (the last piece is held back until the checks pass).
    let announced = noise(6, 3 << 20);
    let grown = [announced.as_slice(), &[1u8; 1 << 20]].concat();
    let lying = {
        let mut e = file(&announced);
        e.hash = Some(ContentHash::of(b"something else"));
        e
    };
    let cases: [(&str, NewEntry, &[u8]); 3] = [
        ("grew.bin", file(&announced), &grown),
        ("shrank.bin", file(&announced), &announced[..2 << 20]),
        ("lie.bin", lying, &announced),
    ];
    for (name, entry, content) in cases {
        let refused = r.write(&rel(name), &entry, pieces(content), None).await;
        assert!(refused.is_err(), "{name}: accepted: {refused:?}");
        assert_eq!(r.stat(&rel(name)).await.expect("stat"), None, "{name}");
    }
    let staging = dav.root.join("s/.cairn/tmp");
    for temp in std::fs::read_dir(&staging).into_iter().flatten().flatten() {
        let len = temp.metadata().map(|m| m.len()).unwrap_or(0);
        assert!(
            len < announced.len() as u64,
            "a temporary of {len} bytes was completed: {:?}",
            temp.path()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_folder_is_a_conforming_cloud_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf-8");
    cloud_conformance("fs", &[("root", root)], &[], "fs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcs_bucket_is_a_conforming_replica() {
    let gcs = tokio::task::spawn_blocking(crate::harness::cloud::start_gcs_emulator)
        .await
        .expect("gcs emulator");
    let gcs = started(gcs);
    let opts = [
        ("endpoint", gcs.endpoint.as_str()),
        ("bucket", gcs.bucket.as_str()),
        ("skip_signature", "true"),
    ];
    // Every write of a file in parts is conditional (a new object, or the generation an edit
    // replaces) and so a resumable session: the emulator does not implement the XML API's
    // multipart upload an unconditional write of several parts would take.
    let (conn, secrets) = crate::cloud_servers::connection("gcs", &opts, &[]);
    let r = cloud_replica(&conn, &secrets, "g", suite_options()).await;
    cloud_suite_of(&r, crate::replica_edges::MANY_ON_GCS_EMULATOR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ftp_folder_is_a_conforming_replica() {
    let ftp = tokio::task::spawn_blocking(crate::harness::cloud::start_pyftpdlib)
        .await
        .expect("pyftpdlib");
    let ftp = started(ftp);
    let opts = [("endpoint", ftp.endpoint.as_str()), ("user", &ftp.user)];
    cloud_conformance("ftp", &opts, &[("password", &ftp.password)], "f").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swift_container_is_a_conforming_replica() {
    let swift = tokio::task::spawn_blocking(crate::harness::cloud::start_swift)
        .await
        .expect("swift");
    let swift = started(swift);
    let opts = [
        ("endpoint", swift.endpoint.as_str()),
        ("container", swift.container.as_str()),
    ];
    cloud_conformance("swift", &opts, &[("token", &swift.token)], "s").await;
}

/// The user's known_hosts entry of a test sshd: none before the test (a leftover of an
/// earlier server on the same port would be another key), none after it.
pub(crate) struct KnownHostsEntry(String);

impl KnownHostsEntry {
    pub(crate) fn clear(port: u16) -> Self {
        let entry = KnownHostsEntry(format!("[127.0.0.1]:{port}"));
        entry.remove();
        entry
    }

    fn remove(&self) {
        let file = cairn_cloud::sftp_host::user_known_hosts().expect("HOME");
        if file.exists() {
            let _ = std::process::Command::new("ssh-keygen")
                .arg("-R")
                .arg(&self.0)
                .arg("-f")
                .arg(&file)
                .output();
        }
    }
}

impl Drop for KnownHostsEntry {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The SHA256 fingerprint of the host key in a known_hosts file.
pub(crate) fn fingerprint_in(known_hosts: &std::path::Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(known_hosts)
        .output()
        .expect("ssh-keygen");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .expect("a fingerprint")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sftp_folder_is_a_conforming_replica() {
    let sshd = tokio::task::spawn_blocking(crate::harness::cloud::start_sshd)
        .await
        .expect("sshd");
    let sshd = started(sshd);
    let entry = KnownHostsEntry::clear(sshd.port);
    let pinned = fingerprint_in(&sshd.known_hosts);
    let key = sshd.key.to_str().expect("utf-8");
    let root = sshd.root.to_str().expect("utf-8");
    let opts = |fp: &str| {
        vec![
            ("endpoint".to_string(), sshd.endpoint.clone()),
            ("user".to_string(), sshd.user.clone()),
            ("key".to_string(), key.to_string()),
            ("root".to_string(), root.to_string()),
            ("host_key".to_string(), fp.to_string()),
        ]
    };
    let open = |fp: &str| {
        let pairs = opts(fp);
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (conn, secrets) = crate::cloud_servers::connection("sftp", &refs, &[]);
        let counters = Arc::new(cairn_cloud::transport::Counters::default());
        cairn_cloud::connection::operator(&conn, &secrets, "s", counters)
    };
    let known = cairn_cloud::sftp_host::user_known_hosts().expect("HOME");
    let has_entry = || {
        std::process::Command::new("ssh-keygen")
            .arg("-F")
            .arg(&entry.0)
            .arg("-f")
            .arg(&known)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    // A fingerprint the server's key does not have: refused, and nothing is trusted.
    let wrong = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let refused = open(wrong).expect_err("a wrong host key was accepted");
    assert!(
        refused.contains("do not have this connection's fingerprint"),
        "{refused}"
    );
    assert!(!has_entry(), "a key was trusted after a refusal");
    // No pin at all is refused too, and so is turning the check off.
    let (conn, secrets) = crate::cloud_servers::connection(
        "sftp",
        &[("endpoint", &sshd.endpoint), ("user", &sshd.user)],
        &[],
    );
    let counters = Arc::new(cairn_cloud::transport::Counters::default());
    let unpinned = cairn_cloud::connection::operator(&conn, &secrets, "s", counters)
        .expect_err("an unpinned SFTP connection");
    assert!(unpinned.contains("host_key"), "{unpinned}");
    // The right one: the key is added to known_hosts and ssh checks against it.
    open(&pinned).expect("operator");
    assert!(has_entry(), "the pinned key is in known_hosts");
    let pairs = opts(&pinned);
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    cloud_conformance("sftp", &refs, &[], "s").await;
    // Once known_hosts holds the key, another pin for the host is refused.
    let changed = open(wrong).expect_err("another pin for a known host");
    assert!(changed.contains("another host key"), "{changed}");
}
