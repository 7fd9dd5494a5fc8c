//! `EncryptedReplica` over a real folder (`LocalReplica`): what the engine sees is plain,
//! what lands on disk is not, and every kind of damage to it is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cairn_engine::replica::{collect, content_of, LocalReplica};
use cairn_model::Filter;
use futures_util::stream;
use proptest::prelude::*;

use super::segment::{HEADER, SEALED_SEGMENT};
use super::*;

const PW: &str = "correct horse battery staple";
const MTIME: i64 = 1_700_000_000_000_000_000;

/// Cheap Argon2id costs: the tests are about the format, not the KDF's strength.
fn fast() -> KdfParams {
    KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

fn rel(s: &str) -> RelPath {
    RelPath::parse(s).expect("valid test path")
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(167).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn local(dir: &Path) -> LocalReplica {
    LocalReplica::open(dir, Filter::default()).expect("open the folder")
}

async fn remote() -> (tempfile::TempDir, EncryptedReplica<LocalReplica>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let r = EncryptedReplica::enable(local(dir.path()), PW, fast())
        .await
        .expect("turn encryption on");
    (dir, r)
}

fn file_entry(content: &[u8]) -> NewEntry {
    NewEntry {
        kind: EntryKind::File,
        size: content.len() as u64,
        mtime_ns: MTIME,
        mode: 0o640,
        hash: Some(ContentHash::of(content)),
        target: None,
    }
}

async fn put(r: &EncryptedReplica<LocalReplica>, path: &str, content: &[u8]) -> ReplicaEntry {
    let written = r
        .write(
            &rel(path),
            &file_entry(content),
            content_of(Bytes::copy_from_slice(content)),
            None,
        )
        .await;
    match written {
        Ok(Outcome::Done(Some(e))) => e,
        other => panic!("writing {path}: {other:?}"),
    }
}

async fn get(r: &EncryptedReplica<LocalReplica>, path: &str) -> Result<Vec<u8>> {
    let entry = r.stat(&rel(path)).await?.expect("the file exists");
    collect(r.read(&rel(path), &entry.version).await?).await
}

/// Where `path` is stored on disk.
fn on_disk(dir: &Path, r: &EncryptedReplica<LocalReplica>, path: &str) -> PathBuf {
    let stored = r.stored_path(&rel(path)).expect("storable path");
    dir.join(stored.as_str())
}

/// Every stored file and folder below `dir` (cairn's working folder left out), with sizes.
fn stored_tree(dir: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for child in std::fs::read_dir(dir).expect("read dir") {
            let child = child.expect("dir entry");
            let path = child.path();
            let name = path
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            if name == ".cairn" {
                continue;
            }
            let md = child.metadata().expect("stat");
            out.push((name, md.len()));
            if md.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn is_stored_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_one_byte_one_segment_and_many_segments_round_trip() {
    let (dir, r) = remote().await;
    let sizes = [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 17];
    for (i, &len) in sizes.iter().enumerate() {
        put(&r, &format!("f{len}"), &data(len, i as u8)).await;
    }
    let listing = r.list().await.expect("list");
    assert_eq!(listing.entries.len(), sizes.len());
    assert!(listing.skipped.is_empty(), "{:?}", listing.skipped);
    for (i, &len) in sizes.iter().enumerate() {
        let path = format!("f{len}");
        let entry = &listing.entries[&rel(&path)];
        assert_eq!(entry.size, len as u64, "{path}: the plain size is listed");
        assert_eq!(entry.hash, None);
        assert_eq!(entry.mtime_ns, MTIME);
        assert_eq!(get(&r, &path).await.expect("read"), data(len, i as u8));
        let stored = std::fs::metadata(on_disk(dir.path(), &r, &path)).expect("stored");
        assert_eq!(stored.len(), cipher_size(len as u64));
    }
    // Nothing on disk is named or filled in the clear.
    for (name, _) in stored_tree(dir.path()) {
        assert!(name == MARKER_NAME || is_stored_name(&name), "{name}");
    }
    let stored = std::fs::read(on_disk(dir.path(), &r, "f65536")).expect("read stored");
    let clear = &data(SEGMENT, 3)[..64];
    assert!(!stored.windows(64).any(|w| w == clear));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_and_case_differing_names_round_trip_as_lowercase_ascii() {
    let (dir, r) = remote().await;
    let names = [
        "Dossier été/日本語 ファイル.txt",
        "emoji 📁/Ünïcödé ✓.md",
        "case/A.txt",
        "case/a.txt",
    ];
    for (i, name) in names.iter().enumerate() {
        put(&r, name, name.as_bytes()).await;
        assert_eq!(get(&r, name).await.expect("read"), name.as_bytes(), "{i}");
    }
    let listing = r.list().await.expect("list");
    for name in names {
        assert!(listing.entries.contains_key(&rel(name)), "{name}");
    }
    assert!(listing.entries.contains_key(&rel("Dossier été")));
    assert!(r.capabilities().case_sensitive);
    for (stored, _) in stored_tree(dir.path()) {
        for part in stored.split('/') {
            assert!(part == MARKER_NAME || is_stored_name(part), "{part}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_of_files_and_folders_map_one_to_one() {
    let (dir, r) = remote().await;
    let a = put(&r, "docs/a.txt", b"alpha").await;
    put(&r, "docs/sub/b.txt", b"beta").await;
    let stored_b = on_disk(dir.path(), &r, "docs/sub/b.txt");
    let moved = r
        .rename(&rel("docs/a.txt"), &rel("docs/c.txt"), &a.version)
        .await
        .expect("rename a file");
    assert!(
        matches!(moved, Outcome::Done(Some(ref e)) if e.size == 5),
        "{moved:?}"
    );
    let docs = r.stat(&rel("docs")).await.expect("stat").expect("folder");
    let moved = r
        .rename(&rel("docs"), &rel("papers"), &docs.version)
        .await
        .expect("rename a folder");
    assert!(matches!(moved, Outcome::Done(Some(_))), "{moved:?}");
    let listing = r.list().await.expect("list");
    let paths: Vec<&str> = listing.entries.keys().map(RelPath::as_str).collect();
    assert_eq!(
        paths,
        ["papers", "papers/c.txt", "papers/sub", "papers/sub/b.txt"]
    );
    assert_eq!(get(&r, "papers/c.txt").await.expect("read"), b"alpha");
    assert_eq!(get(&r, "papers/sub/b.txt").await.expect("read"), b"beta");
    // One stored name changed: the folder's; its children kept theirs.
    let now_b = on_disk(dir.path(), &r, "papers/sub/b.txt");
    assert_eq!(now_b.file_name(), stored_b.file_name());
    assert_ne!(now_b, stored_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_before_anything_is_touched() {
    let (dir, r) = remote().await;
    put(&r, "secret.txt", b"the plans").await;
    drop(r);
    let before = stored_tree(dir.path());
    for attempt in [
        EncryptedReplica::open(local(dir.path()), "wrong password").await,
        EncryptedReplica::enable(local(dir.path()), "a new password", fast()).await,
    ] {
        let err = attempt.err().expect("refused").to_string();
        assert!(err.contains("wrong encryption password"), "{err}");
        assert!(err.contains("cannot be changed"), "{err}");
        assert!(err.contains(MARKER_NAME), "{err}");
    }
    assert_eq!(stored_tree(dir.path()), before);
    let r = EncryptedReplica::open(local(dir.path()), PW)
        .await
        .expect("the right password opens it");
    assert_eq!(get(&r, "secret.txt").await.expect("read"), b"the plans");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_cannot_be_turned_off_nor_turned_on_over_plain_files() {
    let (dir, _r) = remote().await;
    let err = refuse_if_encrypted(&local(dir.path()))
        .await
        .expect_err("a plain task on an encrypted remote");
    assert!(err.to_string().contains("cannot be turned off"), "{err}");

    let plain = tempfile::tempdir().expect("temp dir");
    refuse_if_encrypted(&local(plain.path()))
        .await
        .expect("a plain remote is fine");
    let err = EncryptedReplica::open(local(plain.path()), PW)
        .await
        .err()
        .expect("not encrypted");
    assert!(err.to_string().contains("is not encrypted"), "{err}");
    std::fs::write(plain.path().join("clear.txt"), b"x").expect("write");
    let err = EncryptedReplica::enable(local(plain.path()), PW, fast())
        .await
        .err()
        .expect("plain files there");
    assert!(err.to_string().contains("1 entries in the clear"), "{err}");
    assert!(!plain.path().join(MARKER_NAME).exists());
}

/// Replaces the stored bytes of `path` with what `damage` makes of them, reads it, and
/// puts the original back; the read's error.
async fn read_damaged(
    dir: &Path,
    r: &EncryptedReplica<LocalReplica>,
    path: &str,
    damage: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let file = on_disk(dir, r, path);
    let original = std::fs::read(&file).expect("read stored");
    std::fs::write(&file, damage(&original)).expect("damage");
    let result = get(r, path).await;
    std::fs::write(&file, &original).expect("restore");
    assert_eq!(
        get(r, path).await.expect("intact again").len(),
        3 * SEGMENT + 5
    );
    result.expect_err("damage goes unnoticed").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_truncated_reordered_and_swapped_contents_are_refused() {
    let (dir, r) = remote().await;
    put(&r, "a.bin", &data(3 * SEGMENT + 5, 1)).await;
    put(&r, "b.bin", &data(3 * SEGMENT + 5, 2)).await;
    let other = std::fs::read(on_disk(dir.path(), &r, "b.bin")).expect("read b");
    let seg = |i: usize| HEADER + i * SEALED_SEGMENT..HEADER + (i + 1) * SEALED_SEGMENT;

    let err = read_damaged(dir.path(), &r, "a.bin", |s| {
        let mut s = s.to_vec();
        s[seg(1).start + 1000] ^= 0x20;
        s
    })
    .await;
    assert!(
        err.contains("a.bin: segment 1 does not authenticate"),
        "{err}"
    );

    let err = read_damaged(dir.path(), &r, "a.bin", |s| s[..seg(2).end].to_vec()).await;
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains("after segment 2"), "{err}");

    let err = read_damaged(dir.path(), &r, "a.bin", |s| {
        let mut s = s.to_vec();
        let (first, second) = (s[seg(0)].to_vec(), s[seg(1)].to_vec());
        s[seg(0)].copy_from_slice(&second);
        s[seg(1)].copy_from_slice(&first);
        s
    })
    .await;
    assert!(err.contains("segment 0 does not authenticate"), "{err}");

    let err = read_damaged(dir.path(), &r, "a.bin", |s| {
        let mut s = s.to_vec();
        s[seg(2)].copy_from_slice(&other[seg(2)]);
        s
    })
    .await;
    assert!(err.contains("segment 2 does not authenticate"), "{err}");
    assert!(err.contains("another file"), "{err}");

    // A whole stored file put in another's place has the other's header: its own file id.
    let err = read_damaged(dir.path(), &r, "a.bin", |s| {
        let mut s = s.to_vec();
        s[..HEADER].copy_from_slice(&other[..HEADER]);
        s
    })
    .await;
    assert!(err.contains("segment 0 does not authenticate"), "{err}");

    // Cut inside a segment: no plain size gives that stored size, so the listing holds it
    // (nothing done to it on either side) and says why.
    let file = on_disk(dir.path(), &r, "a.bin");
    let original = std::fs::read(&file).expect("read");
    // The last segment holds 5 bytes and its tag: 8 stored bytes of it are no segment.
    std::fs::write(&file, &original[..original.len() - 13]).expect("cut");
    let err = r.stat(&rel("a.bin")).await.expect_err("odd size");
    assert!(
        err.to_string().contains("no encrypted file's size"),
        "{err}"
    );
    let listing = r.list().await.expect("list");
    assert!(!listing.entries.contains_key(&rel("a.bin")));
    assert!(listing.held.contains(&rel("a.bin")));
    assert!(
        listing
            .skipped
            .iter()
            .any(|(p, why)| p.ends_with("/a.bin") && why.contains("cut short")),
        "{:?}",
        listing.skipped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_write_read_and_check_what_they_read() {
    let (dir, r) = remote().await;
    let folder = NewEntry {
        kind: EntryKind::Dir,
        size: 0,
        mtime_ns: MTIME,
        mode: 0o750,
        hash: None,
        target: None,
    };
    let files = [
        ("d/one", data(10, 1)),
        ("d/two", data(0, 2)),
        ("three", data(70_000, 3)),
    ];
    let mut ops = vec![WriteOp {
        path: rel("d"),
        entry: folder,
        content: Bytes::new(),
        expect: None,
    }];
    ops.extend(files.iter().map(|(p, c)| WriteOp {
        path: rel(p),
        entry: file_entry(c),
        content: Bytes::copy_from_slice(c),
        expect: None,
    }));
    // One item with a lying hash fails alone.
    let mut liar = file_entry(b"honest");
    liar.hash = Some(ContentHash::of(b"something else"));
    ops.push(WriteOp {
        path: rel("liar"),
        entry: liar,
        content: Bytes::from_static(b"honest"),
        expect: None,
    });
    let results = r.write_many(ops).await.expect("batch");
    assert!(
        results[..4]
            .iter()
            .all(|o| matches!(o, Ok(Outcome::Done(Some(_))))),
        "{results:?}"
    );
    assert!(results[4].is_err());
    let listing = r.list().await.expect("list");
    assert!(!listing.entries.contains_key(&rel("liar")));
    let items: Vec<(RelPath, ReplicaEntry)> = files
        .iter()
        .map(|(p, _)| (rel(p), listing.entries[&rel(p)].clone()))
        .collect();
    let read = r.read_many(&items).await.expect("batch read");
    for ((_, want), got) in files.iter().zip(&read) {
        assert_eq!(got.as_ref().expect("read").as_ref(), &want[..]);
    }
    // A damaged stored file fails its item only.
    let stored = on_disk(dir.path(), &r, "d/one");
    let mut bytes = std::fs::read(&stored).expect("read");
    bytes[HEADER + 2] ^= 1;
    std::fs::write(&stored, bytes).expect("damage");
    let mut items = items;
    items[0].1 = r.stat(&rel("d/one")).await.expect("stat").expect("there");
    let read = r.read_many(&items).await.expect("batch read");
    let err = read[0].as_ref().expect_err("damaged").to_string();
    assert!(err.contains("segment 0 does not authenticate"), "{err}");
    assert!(read[1].is_ok() && read[2].is_ok());
    let hashes = r
        .hash_many(&[(rel("three"), items[2].1.version.clone())])
        .await
        .expect("hash");
    assert_eq!(hashes, [Some(ContentHash::of(&files[2].1))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_is_not_what_was_announced_stores_nothing() {
    let (_dir, r) = remote().await;
    let content = data(SEGMENT + 10, 7);
    let short = Bytes::copy_from_slice(&content[..SEGMENT]);
    let err = r
        .write(
            &rel("short"),
            &file_entry(&content),
            content_of(short),
            None,
        )
        .await
        .expect_err("short stream");
    assert!(err.to_string().contains("ended after 65536 bytes"), "{err}");
    let mut entry = file_entry(&content);
    entry.hash = Some(ContentHash::of(b"other"));
    let pieces = stream::iter(
        content
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    )
    .boxed();
    let err = r
        .write(&rel("wrong"), &entry, pieces, None)
        .await
        .expect_err("wrong hash");
    assert!(err.to_string().contains("does not match its hash"), "{err}");
    let listing = r.list().await.expect("list");
    assert!(listing.entries.is_empty(), "{:?}", listing.entries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_too_long_once_encrypted_are_refused_with_the_limit() {
    let (_dir, r) = remote().await;
    assert_eq!(r.capabilities().max_name_bytes, 143);
    assert!(!r.capabilities().knows_hashes);
    put(&r, &"n".repeat(143), b"fits").await;
    let err = r
        .write(
            &rel(&"n".repeat(144)),
            &file_entry(b"x"),
            content_of(Bytes::from_static(b"x")),
            None,
        )
        .await
        .expect_err("too long");
    let err = err.to_string();
    assert!(err.contains("144 bytes"), "{err}");
    assert!(err.contains("at most 143 bytes"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_hide_the_marker_and_report_foreign_and_damaged_names() {
    let (dir, r) = remote().await;
    put(&r, "docs/a.txt", b"a").await;
    std::fs::write(dir.path().join("README.txt"), b"left by someone").expect("write");
    // A foreign folder is reported once, not once per entry in it.
    std::fs::create_dir_all(dir.path().join("Photos/2024")).expect("mkdir");
    std::fs::write(dir.path().join("Photos/2024/x.jpg"), b"jpg").expect("write");
    // A name in cairn's form that does not authenticate under this key, inside "docs".
    let stranger = Keys::derive(&MasterKey::generate().expect("key"));
    let docs = on_disk(dir.path(), &r, "docs");
    std::fs::write(docs.join(name::encrypt_name(&stranger, "b.txt")), b"x").expect("write");
    let listing = r.list().await.expect("list");
    let paths: Vec<&str> = listing.entries.keys().map(RelPath::as_str).collect();
    assert_eq!(paths, ["docs", "docs/a.txt"]);
    let reasons: Vec<&str> = listing
        .skipped
        .iter()
        .map(|(_, why)| why.as_str())
        .collect();
    assert_eq!(listing.skipped.len(), 3, "{:?}", listing.skipped);
    assert_eq!(
        reasons
            .iter()
            .filter(|w| w.contains("not an encrypted name"))
            .count(),
        2
    );
    assert!(listing
        .skipped
        .iter()
        .any(|(p, _)| p.ends_with("/Photos (stored name)")));
    assert!(reasons
        .iter()
        .any(|w| w.contains("does not decrypt") && w.contains("(in docs)")));
    // What the damaged name stood for is unknown: nothing in docs may pass for deleted.
    assert_eq!(listing.incomplete, [rel("docs")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_key_opens_the_remote_and_decrypts_a_copy_offline() {
    let (dir, r) = remote().await;
    let files = [
        ("empty", data(0, 0)),
        ("one", data(1, 1)),
        ("big/segments.bin", data(2 * SEGMENT + 99, 2)),
        ("big/exact.bin", data(SEGMENT, 3)),
        ("Ünïcödé/日本語.txt", data(300, 4)),
    ];
    for (p, c) in &files {
        put(&r, p, c).await;
    }
    let keys_dir = tempfile::tempdir().expect("temp dir");
    let key_file = keys_dir.path().join("remote.key");
    r.export_key(&key_file).expect("export");
    let mode = std::fs::metadata(&key_file)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let err = r.export_key(&key_file).expect_err("never overwritten");
    assert!(err.to_string().contains("never overwritten"), "{err}");
    let key = read_key_file(&key_file).expect("read key");
    EncryptedReplica::open_with_key(local(dir.path()), key)
        .await
        .expect("the key opens it");

    let out = tempfile::tempdir().expect("temp dir");
    let dst = out.path().join("restored");
    let report = decrypt_tree(&key_file, dir.path(), &dst).expect("decrypt");
    assert_eq!(report.files, files.len() as u64);
    assert_eq!(report.folders, 2);
    assert!(
        report.skipped.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );
    for (p, c) in &files {
        assert_eq!(&std::fs::read(dst.join(p)).expect("restored"), c, "{p}");
    }
    // Run again: nothing is overwritten, each file says so.
    let again = decrypt_tree(&key_file, dir.path(), &dst).expect("decrypt");
    assert_eq!(again.failed.len(), files.len());
    assert!(again
        .failed
        .iter()
        .all(|(_, why)| why.contains("not overwritten")));

    // A damaged object fails alone and leaves nothing behind.
    let stored = on_disk(dir.path(), &r, "big/segments.bin");
    let mut bytes = std::fs::read(&stored).expect("read");
    bytes[HEADER + SEALED_SEGMENT + 5] ^= 1;
    std::fs::write(&stored, bytes).expect("damage");
    let fresh = out.path().join("fresh");
    let report = decrypt_tree(&key_file, dir.path(), &fresh).expect("decrypt");
    assert_eq!(report.files, files.len() as u64 - 1);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0]
        .1
        .contains("segment 1 does not authenticate"));
    assert!(!fresh.join("big/segments.bin").exists());
    assert!(!fresh.join("big").join(".cairn-decrypting").exists());

    // Another remote's key is refused before anything is written.
    let (_other_dir, other) = remote().await;
    let other_key = keys_dir.path().join("other.key");
    other.export_key(&other_key).expect("export");
    let never = out.path().join("never");
    let err = decrypt_tree(&other_key, dir.path(), &never).expect_err("wrong key");
    assert!(err.to_string().contains("not the key"), "{err}");
    assert!(!never.exists());
    let err = EncryptedReplica::open_with_key(
        local(dir.path()),
        read_key_file(&other_key).expect("read"),
    )
    .await
    .err()
    .expect("wrong key");
    assert!(err.to_string().contains("not this remote's key"), "{err}");
}

#[test]
fn markers_round_trip_and_refuse_what_they_cannot_be() {
    let (marker, key) = Marker::create(PW, fast()).expect("create");
    let parsed = Marker::parse(&marker.to_json(), "test").expect("parse");
    assert!(parsed.matches(&key));
    assert_eq!(
        parsed.unlock(PW, "test").expect("unlock").check(),
        key.check()
    );
    assert!(Marker::create("", fast()).is_err());
    let json: serde_json::Value = serde_json::from_slice(&marker.to_json()).expect("json");
    for (field, value, why) in [
        ("/version", serde_json::json!(2), "version 2"),
        (
            "/kdf/memory_kib",
            serde_json::json!(u32::MAX),
            "out of range",
        ),
        (
            "/kdf/algorithm",
            serde_json::json!("scrypt"),
            "key derivation",
        ),
        ("/wrap/nonce", serde_json::json!("AAAA"), "wrap nonce"),
    ] {
        let mut bad = json.clone();
        *bad.pointer_mut(field).expect("field") = value;
        let err = Marker::parse(&serde_json::to_vec(&bad).expect("json"), "m")
            .expect_err(field)
            .to_string();
        assert!(err.contains(why), "{field}: {err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Any size, cut into pieces of any size by the writer, comes back whole.
    #[test]
    fn random_sizes_round_trip_through_the_replica(
        len in 0usize..(4 * SEGMENT),
        piece in 1usize..(2 * SEGMENT),
        seed in any::<u8>(),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (dir, r) = remote().await;
            let content = data(len, seed);
            let pieces = stream::iter(
                content.chunks(piece).map(|c| Ok(Bytes::copy_from_slice(c))).collect::<Vec<_>>(),
            )
            .boxed();
            let written = r
                .write(&rel("f"), &file_entry(&content), pieces, None)
                .await
                .expect("write");
            assert!(matches!(written, Outcome::Done(Some(ref e)) if e.size == len as u64));
            assert_eq!(get(&r, "f").await.expect("read"), content);
            let stored = std::fs::metadata(on_disk(dir.path(), &r, "f")).expect("stat");
            assert_eq!(plain_size(stored.len()), Some(len as u64));
        });
    }
}

/// The test vectors of docs/encryption.md: a second decoder checks itself against these, and
/// this test keeps the format from drifting.
#[test]
fn the_documented_test_vectors_hold() {
    let key = MasterKey::from_bytes(std::array::from_fn(|i| i as u8));
    let keys = Keys::derive(&key);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(key.check(), "rkGIsScPQZY=");
    assert_eq!(
        hex(&keys.content),
        "3654e5336435beac0cd56d90c5c9908ea0b05c07b28688be9317da05b48fa333"
    );
    assert_eq!(
        name::encrypt_name(&keys, "hello.txt"),
        "r725am2wgiotzqoqctm4vgfnje5hfnyrvftrkbty"
    );
    assert_eq!(
        name::encrypt_target(&keys, "../a"),
        "3zwfqan6nq3mot6pggaqml555rmra5ez"
    );
    let mut sealer = segment::Sealer::with_file_id(&keys, std::array::from_fn(|i| 0xa0 + i as u8));
    let mut stored = sealer.header().to_vec();
    let mut buf = b"hello".to_vec();
    sealer.seal(&mut buf, true);
    stored.extend_from_slice(&buf);
    assert_eq!(
        hex(&stored),
        "434149524e2d4531a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\
         96ccd0b793ef293292a091aff91a51a8fb1671dd3b"
    );
}

/// The marker of docs/encryption.md unlocks with its password to the key file shown there.
#[test]
fn the_documented_marker_unlocks_to_the_documented_key() {
    let marker = r#"{
      "format": "cairn-encryption", "version": 1,
      "kdf": {"algorithm": "argon2id", "argon2_version": 19, "memory_kib": 1024,
              "iterations": 2, "parallelism": 1, "salt": "8ubv8sdS7EPh1JhEbrgiOw=="},
      "wrap": {"algorithm": "xchacha20poly1305", "nonce": "uEtNibI5Yzk7ISMYkJih/ZrVfZYE1qO8",
               "ciphertext": "UaTK7kV0cV5QWWs6d/69EmH21F8476hXtdBDMcRJ8F5AvUtZ+2kM8d/B6n6SboW/"},
      "key_check": "1WoP5UerHeo="
    }"#;
    let marker = Marker::parse(marker.as_bytes(), "docs").expect("parse");
    let key = marker.unlock(PW, "docs").expect("unlock");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("key");
    std::fs::write(
        &file,
        r#"{"format": "cairn-encryption-key", "version": 1,
            "key": "iiauC/+Cc8mh4LxoKXVjxBiLTU94r0RLBJK3sr1TSfc=", "key_check": "1WoP5UerHeo="}"#,
    )
    .expect("write");
    assert_eq!(read_key_file(&file).expect("read").check(), key.check());
    assert!(marker
        .unlock("Correct horse battery staple", "docs")
        .is_err());
}

/// A key kept as text (a server's database) reads back as the same key, and a damaged text is
/// refused without quoting it.
#[test]
fn a_key_kept_as_text_round_trips_and_a_damaged_one_is_not_quoted() {
    let key = MasterKey::generate().expect("key");
    let text = key_text(&key);
    let back = parse_key_text(text.as_bytes(), "the database").expect("parse");
    assert_eq!(back.check(), key.check());
    let secret = text
        .split('"')
        .find(|p| p.len() == 44)
        .expect("the base64 key");
    // A parser quoting the value it choked on would show the key here.
    let damaged = text.replacen("\"version\": 1", &format!("\"version\": \"{secret}\""), 1);
    assert_ne!(damaged, text);
    let err = parse_key_text(damaged.as_bytes(), "the database")
        .expect_err("refused")
        .to_string();
    assert!(err.contains("the database"), "{err}");
    assert!(!err.contains(secret), "{err}");
}
