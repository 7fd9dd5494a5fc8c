//! `cairn server migrate`: an embedded server moved to PostgreSQL and an S3 bucket (moto)
//! serves the same users, folders, versions, tokens and certificate, and its clients send
//! nothing again; what it refuses; a chunk copy that stopped resumes, and until the end the
//! folder stays the embedded server it was.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::cloud::{start_moto, S3Server};
use crate::harness::{noise, postgres as pg, run, sent_bytes, Client, Server, BIN};
use crate::s3_store::{objects_in_bucket, store_url};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The S3 keys of `s3` in `cmd`'s environment, as an operator would set them.
fn with_keys<'c>(cmd: &'c mut Command, s3: &S3Server) -> &'c mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", &s3.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key)
}

/// `cairn server migrate --from DATA --to-metadata URL [--to-store STORE]` with `env`.
fn migrate(data: &Path, url: &str, store: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["server", "migrate", "--from"])
        .arg(data)
        .args(["--to-metadata", url]);
    if let Some(s) = store {
        cmd.args(["--to-store", s]);
    }
    cmd.envs(env.iter().copied());
    run(&mut cmd, None)
}

/// `cairn server ARGS --data DATA --metadata URL` with the bucket's keys.
fn admin_on_pg(data: &Path, url: &str, s3: &S3Server, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("server")
        .args(args)
        .arg("--data")
        .arg(data)
        .args(["--metadata", url]);
    run(with_keys(&mut cmd, s3), None)
}

/// `cairn versions t FILE --json` of the client's file `rel`.
fn versions(c: &Client, rel: &str) -> serde_json::Value {
    let out = c.ok(&[
        "versions",
        "t",
        c.path(rel).to_str().expect("utf-8"),
        "--json",
    ]);
    serde_json::from_str(&out).expect("versions as JSON")
}

/// The highest version number in `list` (a `versions --json` answer).
fn newest(list: &serde_json::Value) -> i64 {
    list.as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v["version"].as_i64())
        .max()
        .expect("a version")
}

/// The files under `dir`, at any depth (a local chunk store's objects).
#[cfg(feature = "test-hooks")]
fn local_objects(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read folder")
        .map(|e| e.expect("entry"))
        .map(|e| {
            if e.file_type().expect("type").is_dir() {
                local_objects(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// The objects copied and found in place, from migrate's summary line
/// `chunks: N objects copied (B bytes), M already there`.
#[cfg(feature = "test-hooks")]
fn object_counts(summary: &str) -> (usize, usize) {
    let line = summary
        .lines()
        .find_map(|l| l.strip_prefix("chunks: "))
        .unwrap_or_else(|| panic!("no chunks line in {summary}"));
    let number = |text: &str| -> usize {
        text.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line}"))
    };
    let skipped = line.rsplit(", ").next().unwrap_or_default();
    (number(line), number(skipped))
}

/// The files of the round trip, with several versions each and one deleted.
const FILES: [&str; 3] = ["notes.txt", "big.bin", "gone.txt"];

/// A server with alice's backup of three versions of `notes.txt` and `big.bin` and a deleted
/// `gone.txt`; the client that made it; the content of big.bin's first version.
fn embedded_with_history(envs: &[(&str, &str)]) -> (Server, Client, Vec<u8>) {
    let server = Server::start_with(envs);
    let c = Client::new();
    let first_big = noise(1, 3 * 1024 * 1024);
    c.write("notes.txt", b"first notes");
    c.write("big.bin", &first_big);
    c.write("gone.txt", b"soon deleted");
    for i in 0..8u64 {
        c.write(&format!("small/{i}.txt"), &noise(50 + i, 2_000));
    }
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    c.write("notes.txt", b"second notes, longer");
    c.write("big.bin", &noise(2, 3 * 1024 * 1024));
    std::fs::remove_file(c.path("gone.txt")).expect("rm");
    c.ok(&["run", "t", "--once"]);
    c.write("notes.txt", b"third notes");
    c.ok(&["run", "t", "--once"]);
    (server, c, first_big)
}

#[test]
fn an_embedded_server_moved_to_postgres_and_s3_serves_every_version_and_uploads_nothing_again() {
    let db = "it_migrate_round_trip";
    let Some(cluster) = pg::shared(db) else {
        return;
    };
    let url = cluster.create_database(db).expect("database");
    let s3 = start_moto().expect("moto (run scripts/test-servers)");
    let store = store_url(&s3, "moved");
    let (mut server, c, first_big) = embedded_with_history(&[]);
    let listed = c.ls(&[]);
    let history: Vec<serde_json::Value> = FILES.iter().map(|f| versions(&c, f)).collect();
    let newest_before = history.iter().map(newest).max().expect("versions");
    let fingerprint = server.fingerprint();
    server.kill();

    let keys = [
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.as_str()),
    ];
    let out = migrate(&server.data, &url, Some(&store), &keys);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("0 already there"), "{said}");
    assert!(
        said.contains(&format!("chunk store: {store}")),
        "the folder records the bucket: {said}"
    );
    assert!(said.contains("versions"), "rows per table: {said}");
    assert!(server.data.join("metadata-in-postgres").is_file());
    assert!(server.data.join("meta.sqlite.migrated").is_file());
    assert!(!server.data.join("meta.sqlite").exists());
    assert!(objects_in_bucket(&s3, "moved") >= 3, "chunks and packs");
    assert!(
        server.data.join("chunks").is_dir(),
        "the old chunks are left as they were"
    );

    // The same data folder on the database and the bucket: the saved connection (pinned to
    // the certificate) and the token work as before.
    server.args = vec!["--metadata".into(), url.clone(), "--store".into(), store];
    for (k, v) in keys {
        server.set_env(k, Some(v));
    }
    server.restart();
    assert_eq!(server.fingerprint(), fingerprint);
    let check = admin_on_pg(&server.data, &url, &s3, &["check", "--read-data"]);
    assert!(
        check.status.success() && text(&check).contains("no problems"),
        "{}",
        text(&check)
    );
    assert_eq!(c.ls(&[]), listed);
    let after: Vec<serde_json::Value> = FILES.iter().map(|f| versions(&c, f)).collect();
    assert_eq!(after, history);
    let oldest_big = history[1]
        .as_array()
        .and_then(|l| l.iter().filter_map(|v| v["version"].as_i64()).min())
        .expect("big.bin's first version");
    let restored = c.tmp().join("big-v1.bin");
    c.ok(&[
        "download",
        "t",
        c.path("big.bin").to_str().expect("utf-8"),
        "--version",
        &oldest_big.to_string(),
        "--to",
        restored.to_str().expect("utf-8"),
    ]);
    assert!(std::fs::read(&restored).expect("restored") == first_big);
    let again = c.ok(&["run", "t", "--once"]);
    assert_eq!(sent_bytes(&again), 0, "{again}");

    // New rows get ids past the copied ones: a commit (a version row) and a user.
    c.write("notes.txt", b"fourth notes, after the move");
    c.ok(&["run", "t", "--once"]);
    assert!(newest(&versions(&c, "notes.txt")) > newest_before);
    let mut add = Command::new(BIN);
    add.args([
        "server",
        "user",
        "add",
        "dave",
        "--password-stdin",
        "--data",
    ])
    .arg(&server.data)
    .args(["--metadata", &url]);
    let added = run(&mut add, Some("dave-pw"));
    assert!(added.status.success(), "{}", text(&added));
    let users = admin_on_pg(&server.data, &url, &s3, &["user", "list"]);
    let users = text(&users);
    assert!(users.contains("alice") && users.contains("dave"), "{users}");
}

#[test]
fn migrate_refuses_a_running_server_a_database_with_data_and_a_folder_on_postgres() {
    let db = "it_migrate_refusals";
    let Some(cluster) = pg::shared(db) else {
        return;
    };
    let url = cluster.create_database(db).expect("database");
    let mut server = Server::start();
    let data = server.data.clone();

    let out = migrate(&data, &url, None, &[]);
    assert!(!out.status.success());
    let e = text(&out);
    assert!(
        e.contains(&format!("a server is running on {}", data.display())),
        "{e}"
    );
    server.kill();

    // A database where a server on PostgreSQL ran already, named by its TCP address: the
    // message names it without its password.
    let used = "it_migrate_refusals_used";
    cluster.create_database(used).expect("database");
    let used_url = cluster.tcp_url(used, cluster.password());
    let top = tempfile::tempdir().expect("temp dir");
    let on_pg = top.path().join("on-pg");
    drop(Server::start_bare(
        on_pg.clone(),
        vec!["--metadata".into(), used_url.clone()],
    ));
    let out = migrate(&data, &used_url, None, &[]);
    assert!(!out.status.success());
    let e = text(&out);
    assert!(
        e.contains("already holds cairn data") && e.contains(&format!("/{used}")),
        "{e}"
    );
    assert!(!e.contains(cluster.password()), "{e}");

    // A folder on PostgreSQL already.
    let out = migrate(&on_pg, &url, None, &[]);
    assert!(!out.status.success());
    let e = text(&out);
    assert!(e.contains("is on PostgreSQL already"), "{e}");

    // Refused, the folder is the embedded server it was.
    assert!(data.join("meta.sqlite").is_file());
    assert!(!data.join("metadata-in-postgres").exists());
    server.restart();
    assert!(server.admin(&["user", "list"], None).contains("alice"));
}

/// A chunk copy stopped half-way (a test hook fails it after two objects) leaves the folder
/// the embedded server it was; the next run skips what arrived and copies the rest.
#[cfg(feature = "test-hooks")]
#[test]
fn a_chunk_copy_that_stopped_resumes_and_the_folder_stays_embedded_until_the_end() {
    let db = "it_migrate_resume";
    let Some(cluster) = pg::shared(db) else {
        return;
    };
    let url = cluster.create_database(db).expect("database");
    let s3 = start_moto().expect("moto (run scripts/test-servers)");
    let store = store_url(&s3, "resumed");
    let (mut server, c, _) = embedded_with_history(&[]);
    server.kill();
    let keys = [
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.as_str()),
    ];
    let mut stopping = keys.to_vec();
    stopping.push(("CAIRN_TEST_MIGRATE_STOP_AFTER", "2"));
    let out = migrate(&server.data, &url, Some(&store), &stopping);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("stopped after copying 2 objects"),
        "{}",
        text(&out)
    );
    // Copies in flight when it stopped may have landed too, but not all of them.
    let chunks = server.data.join("chunks");
    let total = local_objects(&chunks.join("chunks")) + local_objects(&chunks.join("packs"));
    let arrived = objects_in_bucket(&s3, "resumed");
    assert!(
        (2..total).contains(&arrived),
        "{arrived} of {total} objects"
    );
    assert!(server.data.join("meta.sqlite").is_file());
    assert!(!server.data.join("metadata-in-postgres").exists());

    // Still the embedded server: it starts on its own chunks and serves the client.
    server.restart();
    let again = c.ok(&["run", "t", "--once"]);
    assert_eq!(sent_bytes(&again), 0, "{again}");
    server.kill();

    let out = migrate(&server.data, &url, Some(&store), &keys);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    let (copied, skipped) = object_counts(&said);
    // At least what was in the bucket (a put cut off by the stop may have landed after).
    assert!(skipped >= arrived && skipped < total, "{said}");
    assert_eq!(copied + skipped, total, "{said}");
    assert_eq!(objects_in_bucket(&s3, "resumed"), total);
    let check = admin_on_pg(&server.data, &url, &s3, &["check", "--read-data"]);
    assert!(
        check.status.success() && text(&check).contains("no problems"),
        "{}",
        text(&check)
    );
}
