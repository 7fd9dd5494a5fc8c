//! The edges of the replica conformance suite (`replica.rs` runs them on every replica):
//! empty files, unicode names, a file in more than two parts, and 5,000 files in one folder.

use bytes::Bytes;
use cairn_engine::replica::{collect, content_of, Outcome, Replica, ReplicaEntry, WriteOp};
use cairn_model::{ContentHash, EntryKind, RelPath};
use futures_util::stream::{self, StreamExt};

use crate::harness::noise;

/// The part size the cloud replicas of the suite are opened with: the smallest S3 takes.
pub(crate) const PART_SIZE: usize = 5 << 20;

/// How many files the one large folder holds.
pub(crate) const MANY: usize = 5_000;

/// How many the GCS emulator gets: it stores objects ever slower as they grow in number
/// (about 8 a second past 2,000 on the 2-core VM, 10 minutes for 5,000), and it ignores
/// `maxResults`, so its listing is one page whatever the count.
pub(crate) const MANY_ON_GCS_EMULATOR: usize = 1_000;

fn rel(s: &str) -> RelPath {
    RelPath::parse(s).expect("valid test path")
}

fn entry(data: &[u8]) -> cairn_engine::replica::NewEntry {
    cairn_engine::replica::NewEntry {
        kind: EntryKind::File,
        size: data.len() as u64,
        mtime_ns: 1_600_000_000_000_000_000,
        mode: 0o640,
        hash: Some(ContentHash::of(data)),
        target: None,
    }
}

fn done(r: &dyn Replica, what: &str, o: Outcome) -> ReplicaEntry {
    match o {
        Outcome::Done(Some(e)) => e,
        other => panic!(
            "{}: {what}: expected a done write, got {other:?}",
            r.describe()
        ),
    }
}

async fn put(r: &dyn Replica, path: &str, data: &[u8], expect: Option<&ReplicaEntry>) -> Outcome {
    r.write(
        &rel(path),
        &entry(data),
        content_of(Bytes::copy_from_slice(data)),
        expect.map(|e| &e.version),
    )
    .await
    .unwrap_or_else(|e| panic!("{}: writing {path}: {e}", r.describe()))
}

async fn get(r: &dyn Replica, path: &str, e: &ReplicaEntry) -> Vec<u8> {
    let content = r
        .read(&rel(path), &e.version)
        .await
        .unwrap_or_else(|err| panic!("{}: reading {path}: {err}", r.describe()));
    collect(content)
        .await
        .unwrap_or_else(|err| panic!("{}: reading {path}: {err}", r.describe()))
}

/// Empty files, unicode names and a file of three parts, each written, listed, read back,
/// edited, moved and deleted as any other.
pub(crate) async fn edges(r: &dyn Replica) {
    empty_files(r).await;
    unicode_names(r).await;
    multipart(r).await;
}

async fn empty_files(r: &dyn Replica) {
    let empty = done(r, "empty", put(r, "e/empty.txt", b"", None).await);
    assert_eq!((empty.kind, empty.size), (EntryKind::File, 0));
    let listed = r.list().await.expect("list");
    assert_eq!(
        listed.entries.get(&rel("e/empty.txt")).map(|e| e.size),
        Some(0),
        "{}: an empty file is listed",
        r.describe()
    );
    assert!(get(r, "e/empty.txt", &empty).await.is_empty());
    // Empty to something and back: each is an edit the next write must name.
    let full = done(
        r,
        "filled",
        put(r, "e/empty.txt", b"now full", Some(&empty)).await,
    );
    assert_ne!(full.version, empty.version);
    let again = done(r, "emptied", put(r, "e/empty.txt", b"", Some(&full)).await);
    assert_eq!(again.size, 0);
    let stat = r.stat(&rel("e/empty.txt")).await.expect("stat");
    assert_eq!(
        stat.map(|e| (e.size, e.version)),
        Some((0, again.version.clone()))
    );
    assert!(get(r, "e/empty.txt", &again).await.is_empty());
    assert_eq!(
        r.delete(&rel("e/empty.txt"), &again.version)
            .await
            .expect("delete"),
        Outcome::Done(None)
    );
}

async fn unicode_names(r: &dyn Replica) {
    // NFC names from several scripts, a space, an emoji and a combining-free accent.
    let names = [
        "ünï/日本語 ñ.txt",
        "ünï/emoji 🎉.md",
        "ünï/Ελληνικά/файл.bin",
        "ünï/café – ½.txt",
    ];
    let mut written = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let data = format!("content {i} of {name}");
        let e = done(r, name, put(r, name, data.as_bytes(), None).await);
        written.push((name, data, e));
    }
    let listed = r.list().await.expect("list");
    for (name, data, e) in &written {
        let seen = listed.entries.get(&rel(name));
        assert_eq!(
            seen.map(|s| &s.version),
            Some(&e.version),
            "{}: {name} listed under its own name",
            r.describe()
        );
        assert_eq!(get(r, name, e).await, data.as_bytes());
    }
    // A move between unicode names keeps the content; the old name is gone.
    let (from, data, e) = &written[0];
    let moved = done(
        r,
        "move",
        r.rename(&rel(from), &rel("ünï/ψ moved ✓.txt"), &e.version)
            .await
            .expect("rename"),
    );
    assert_eq!(get(r, "ünï/ψ moved ✓.txt", &moved).await, data.as_bytes());
    assert_eq!(r.stat(&rel(from)).await.expect("stat"), None);
}

/// A file of more than two parts at the suite's part size, streamed in pieces smaller than
/// a part, read back whole and edited in its last part.
async fn multipart(r: &dyn Replica) {
    let mut data = noise(71, 2 * PART_SIZE + 12_345);
    let pieces = |data: &[u8]| {
        let owned: Vec<_> = data
            .chunks(1 << 20)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(owned).boxed()
    };
    let first = done(
        r,
        "multipart",
        r.write(&rel("parts/three.bin"), &entry(&data), pieces(&data), None)
            .await
            .expect("write"),
    );
    assert_eq!(first.size, data.len() as u64);
    assert!(
        get(r, "parts/three.bin", &first).await == data,
        "{}: a three-part file came back different",
        r.describe()
    );
    // One byte changed in the last part, and one more at the end: services without ETags
    // tell edits apart by size and time only, and this one lands within the same second.
    let at = data.len() - 100;
    data[at] ^= 0xff;
    data.push(1);
    let second = done(
        r,
        "multipart edit",
        r.write(
            &rel("parts/three.bin"),
            &entry(&data),
            pieces(&data),
            Some(&first.version),
        )
        .await
        .expect("write"),
    );
    assert_ne!(second.version, first.version);
    assert!(get(r, "parts/three.bin", &second).await == data);
}

/// How the 5,000 files get there: through the replica, or straight through a cloud path's
/// operator (the listing is what is tested; 5,000 conditional writes would cost several
/// requests each on services without If-None-Match).
pub(crate) enum Fill<'a> {
    Replica,
    Operator(&'a opendal::Operator),
}

fn many_name(i: usize) -> String {
    format!("many/f{i:05}.txt")
}

fn many_data(i: usize) -> Vec<u8> {
    format!("file {i}").into_bytes()
}

/// `count` files in one folder: the listing has every one of them (paged by the service
/// wherever it pages), with its size, once; a few read back.
pub(crate) async fn many_files(r: &dyn Replica, fill: Fill<'_>, count: usize) {
    match fill {
        Fill::Replica => {
            let ops: Vec<WriteOp> = (0..count)
                .map(|i| WriteOp {
                    path: rel(&many_name(i)),
                    entry: entry(&many_data(i)),
                    content: Bytes::from(many_data(i)),
                    expect: None,
                })
                .collect();
            for batch in ops.chunks(500) {
                let out = r.write_many(batch.to_vec()).await.expect("write_many");
                assert!(out.iter().all(|o| matches!(o, Ok(Outcome::Done(_)))));
            }
        }
        Fill::Operator(op) => {
            // WebDAV writes make no folders (connection::service_defaults).
            if op.info().scheme() == "webdav" {
                op.create_dir("many/")
                    .await
                    .unwrap_or_else(|e| panic!("{}: making the folder: {e}", r.describe()));
            }
            let results: Vec<opendal::Result<opendal::Metadata>> = stream::iter(0..count)
                .map(|i| async move { op.write(&many_name(i), many_data(i)).await })
                .buffer_unordered(8)
                .collect()
                .await;
            for res in results {
                res.unwrap_or_else(|e| panic!("{}: filling the folder: {e}", r.describe()));
            }
        }
    }
    let listed = r.list().await.expect("list");
    let in_folder: Vec<(&RelPath, &ReplicaEntry)> = listed
        .entries
        .iter()
        .filter(|(p, _)| p.as_str().starts_with("many/"))
        .collect();
    assert_eq!(
        in_folder.len(),
        count,
        "{}: every file of the large folder is listed",
        r.describe()
    );
    for i in 0..count {
        let e = listed.entries.get(&rel(&many_name(i)));
        assert_eq!(
            e.map(|e| (e.kind, e.size)),
            Some((EntryKind::File, many_data(i).len() as u64)),
            "{}: {} in the listing",
            r.describe(),
            many_name(i)
        );
    }
    for i in [0, count / 2, count - 1] {
        let e = listed.entries.get(&rel(&many_name(i))).expect("listed");
        assert_eq!(get(r, &many_name(i), e).await, many_data(i));
    }
}

/// A file replaced on S3 while it downloads (another computer's task at work on it): where
/// versions are kept, the read goes on from the copy kept of the version it began with and
/// gives that version whole; where none are, it says the file changed since it was listed,
/// an error of that file alone, never a failure of the pass to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_while_it_downloads_is_read_whole_or_said_changed() {
    let moto = tokio::task::spawn_blocking(crate::cloud::start_moto)
        .await
        .expect("moto");
    let (conn, secrets) = crate::cloud::s3_connection(&moto);
    for keep_versions in [3, 0] {
        let opts = cairn_cloud::CloudOptions {
            keep_versions,
            ..crate::replica::suite_options()
        };
        let root = format!("replaced-{keep_versions}");
        let r = crate::replica::cloud_replica(&conn, &secrets, &root, opts).await;
        let old = noise(21, 3 * PART_SIZE + 1000);
        let listed = done(&r, "first", put(&r, "f.bin", &old, None).await);
        let mut content = r.read(&rel("f.bin"), &listed.version).await.expect("read");
        let mut got = content
            .next()
            .await
            .expect("a first piece")
            .expect("the first piece reads")
            .to_vec();
        assert!(got.len() < old.len(), "the whole file came in one piece");
        let new = noise(22, 2 * PART_SIZE);
        done(&r, "replacing", put(&r, "f.bin", &new, Some(&listed)).await);
        let mut end = None;
        while let Some(piece) = content.next().await {
            match piece {
                Ok(bytes) => got.extend_from_slice(&bytes),
                Err(e) => {
                    end = Some(e);
                    break;
                }
            }
        }
        match (keep_versions, end) {
            (0, Some(e)) => {
                assert!(!e.is_temporary(), "a change is no failure to retry: {e}");
                assert!(e.to_string().contains("changed on the remote"), "{e}");
            }
            (0, None) => panic!("a read of a replaced file without kept versions ended well"),
            (_, Some(e)) => panic!("the kept copy did not finish the read: {e}"),
            (_, None) => assert!(got == old, "the read is not the version it began with"),
        }
    }
}
