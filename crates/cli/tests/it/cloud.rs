//! Cloud tasks end to end: the real binary syncing folders with a real S3 server (moto).

use std::time::Duration;

use crate::harness::Client;

pub use crate::harness::cloud::S3Server as Moto;

/// moto's S3 with signatures checked, one bucket and a user key (`cairn_testkit::cloud`).
pub fn start_moto() -> Moto {
    crate::harness::cloud::start_moto().unwrap_or_else(|e| panic!("{e}"))
}

/// The connection `cairn cloud connect` saves for `s3`'s bucket, and its secret.
pub fn s3_connection(s3: &Moto) -> (cairn_cloud::CloudConnection, cairn_cloud::Secrets) {
    let options = [
        ("endpoint", s3.endpoint.as_str()),
        ("bucket", s3.bucket.as_str()),
        ("region", s3.region.as_str()),
        ("access_key_id", s3.access_key_id.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let conn = cairn_cloud::CloudConnection {
        provider: "s3".into(),
        options,
        secrets: vec!["secret_access_key".into()],
        prompt: vec![],
        ca_file: None,
        limit_upload: None,
        limit_download: None,
        public_only: false,
    };
    let secrets = cairn_cloud::Secrets(
        [(
            "secret_access_key".to_string(),
            s3.secret_access_key.clone(),
        )]
        .into_iter()
        .collect(),
    );
    (conn, secrets)
}

/// `cloud connect NAME` to `moto`'s bucket with its key.
pub fn connect(c: &Client, moto: &Moto, name: &str) {
    connect_bucket(c, moto, name, &moto.bucket);
}

/// `cloud connect NAME` to bucket `bucket` on `moto` with its key.
fn connect_bucket(c: &Client, moto: &Moto, name: &str, bucket: &str) {
    let key = format!("access_key_id={}", moto.access_key_id);
    let out = c.cairn_stdin(
        &[
            "cloud",
            "connect",
            name,
            "--provider",
            "s3",
            "--endpoint",
            &moto.endpoint,
            "--bucket",
            bucket,
            "--option",
            &key,
            "--secret",
            "secret_access_key",
        ],
        &format!("{}\n", moto.secret_access_key),
    );
    assert!(
        out.status.success(),
        "cloud connect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn add_task(c: &Client, conn: &str, remote: &str, extra: &[&str]) {
    let root = c.root.to_str().expect("utf-8").to_string();
    let mut args = vec![
        "cloud",
        "add",
        "t",
        "--connection",
        conn,
        "--local",
        &root,
        "--remote",
        remote,
        "--computer",
        "pc",
    ];
    args.extend_from_slice(extra);
    c.ok(&args);
}

pub(crate) fn read(c: &Client, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(c.path(rel)).ok()
}

#[test]
fn a_cloud_task_keeps_two_computers_in_sync_through_s3() {
    let moto = start_moto();
    let (a, b) = (Client::new(), Client::new());
    connect(&a, &moto, "s3");
    connect(&b, &moto, "s3");
    add_task(&a, "s3", "shared/docs", &[]);
    add_task(&b, "s3", "shared/docs", &[]);

    a.write("notes.txt", b"first");
    a.write("deep/er/data.bin", &crate::harness::noise(1, 300_000));
    a.write("empty.txt", b"");
    std::fs::create_dir_all(a.path("empty-dir")).expect("mkdir");
    std::os::unix::fs::symlink("notes.txt", a.path("link")).expect("symlink");
    let out = a.ok(&["run", "t"]);
    assert!(out.contains("t:"), "{out}");
    let status = a.ok(&["status"]);
    assert!(status.contains("t: cloud (two-way)"), "{status}");
    b.ok(&["run", "t"]);
    assert_eq!(read(&b, "notes.txt").as_deref(), Some(&b"first"[..]));
    assert_eq!(
        read(&b, "deep/er/data.bin"),
        Some(crate::harness::noise(1, 300_000))
    );
    assert_eq!(read(&b, "empty.txt").as_deref(), Some(&b""[..]));
    assert!(b.path("empty-dir").is_dir(), "empty folders sync too");
    assert!(
        !b.path("link").exists(),
        "a link is not stored in the cloud"
    );
    let log = a.ok(&["log", "t"]);
    assert!(log.contains("link"), "the link is reported: {log}");

    // An edit and a rename on B reach A; a delete on A reaches B.
    b.write("notes.txt", b"second, from b");
    std::fs::rename(b.path("deep"), b.path("moved")).expect("rename");
    b.ok(&["run", "t"]);
    a.ok(&["run", "t"]);
    assert_eq!(
        read(&a, "notes.txt").as_deref(),
        Some(&b"second, from b"[..])
    );
    assert!(a.path("moved/er/data.bin").is_file());
    assert!(!a.path("deep").exists());
    std::fs::remove_file(a.path("empty.txt")).expect("rm");
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    assert!(!b.path("empty.txt").exists());

    // Both edit one file: nothing is lost, one is the file and the other a conflict copy
    // (made on the cloud, so it reaches B on its next pass).
    a.write("notes.txt", b"edit on a");
    std::thread::sleep(Duration::from_millis(20));
    b.write("notes.txt", b"edit on b");
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    let mut seen: Vec<Vec<u8>> = std::fs::read_dir(&b.root)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("notes"))
        .map(|e| std::fs::read(e.path()).expect("read"))
        .collect();
    seen.sort();
    assert_eq!(seen, vec![b"edit on a".to_vec(), b"edit on b".to_vec()]);
    // A nothing-changed run changes nothing.
    let before = a.ok(&["run", "t"]);
    assert!(!before.contains("uploaded 1"), "{before}");
}

#[test]
fn cloud_connections_keep_secrets_apart_and_refuse_a_second_for_one_credential() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "first");
    let config = std::fs::read_to_string(c.home.join("config.json")).expect("config");
    assert!(!config.contains(&moto.secret_access_key), "{config}");
    let creds = c.home.join("credentials.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&creds).expect("creds").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(!c.ok(&["cloud", "list"]).contains(&moto.secret_access_key));

    let same_key = format!("access_key_id={}", moto.access_key_id);
    // The same key on the same endpoint is one account: a second connection is refused.
    let out = c.cairn_stdin(
        &[
            "cloud",
            "connect",
            "second",
            "--provider",
            "s3",
            "--endpoint",
            &moto.endpoint,
            "--bucket",
            "other",
            "--option",
            &same_key,
            "--secret",
            "secret_access_key",
        ],
        "x\n",
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("first"), "{text}");
    // A secret as a plain option is refused (it would land in the configuration).
    let text = c.fails(&[
        "cloud",
        "connect",
        "third",
        "--provider",
        "s3",
        "--option",
        "secret_access_key=oops",
    ]);
    assert!(text.contains("--secret secret_access_key"), "{text}");

    // A missing bucket is said when the task is added, and nothing is saved.
    let root = c.root.to_str().expect("utf-8").to_string();
    let text = c.fails(&[
        "cloud",
        "add",
        "t",
        "--connection",
        "first",
        "--local",
        &root,
        "--remote",
        "x",
        "--poll",
        "90000",
    ]);
    assert!(text.contains("86400"), "{text}");

    // A task holds its connection.
    add_task(&c, "first", "p", &[]);
    let text = c.fails(&["cloud", "remove", "first"]);
    assert!(text.contains("used by task"), "{text}");
}

#[test]
fn a_secret_asked_at_each_run_fails_an_unattended_run_clearly() {
    let moto = start_moto();
    let c = Client::new();
    let out = c.cairn_stdin(
        &[
            "cloud",
            "connect",
            "p",
            "--provider",
            "s3",
            "--endpoint",
            &moto.endpoint,
            "--bucket",
            "asked",
            "--option",
            "access_key_id=asker",
            "--secret",
            "secret_access_key",
        ],
        "prompt\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = c.root.to_str().expect("utf-8").to_string();
    let text = c.fails(&[
        "cloud",
        "add",
        "t",
        "--connection",
        "p",
        "--local",
        &root,
        "--remote",
        "x",
    ]);
    assert!(text.contains("asks for its secret"), "{text}");
}

#[test]
fn a_missing_bucket_is_refused_when_the_task_is_added() {
    let moto = start_moto();
    let c = Client::new();
    connect_bucket(&c, &moto, "s3", "does-not-exist");
    let root = c.root.to_str().expect("utf-8").to_string();
    let text = c.fails(&[
        "cloud",
        "add",
        "t",
        "--connection",
        "s3",
        "--local",
        &root,
        "--remote",
        "x",
    ]);
    assert!(text.contains("listing"), "{text}");
    assert!(!std::fs::read_to_string(c.home.join("config.json"))
        .expect("config")
        .contains("\"t\""));
}

/// `cairn run t` with the seeded fault plan `faults`; whether it succeeded.
#[cfg(feature = "test-hooks")]
fn run_with_faults(c: &Client, faults: &str) -> bool {
    crate::harness::run(
        c.cmd()
            .env("CAIRN_TEST_CLOUD_FAULTS", faults)
            .args(["run", "t"]),
        None,
    )
    .status
    .success()
}

/// The files under `root` with their contents.
pub(crate) fn tree(root: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("list").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).expect("inside").display().to_string();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// Dropped requests, lost answers (duplicated retries), 503s, timeouts and flipped bytes:
/// whatever a pass under faults does, no local file is lost or changed, no corrupt content
/// lands, and once the faults stop both computers converge on the same files.
#[cfg(feature = "test-hooks")]
#[test]
fn faults_never_lose_or_corrupt_a_file() {
    let moto = start_moto();
    let (a, b) = (Client::new(), Client::new());
    connect(&a, &moto, "s3");
    connect(&b, &moto, "s3");
    add_task(&a, "s3", "f", &[]);
    add_task(&b, "s3", "f", &[]);
    let mut seed = 11u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Every content A ever held: what B holds must be one of them (older is fine, mixed or
    // flipped is not).
    let mut ever: std::collections::BTreeSet<Vec<u8>> = Default::default();
    for round in 0..4 {
        // Random work on A: new files, edits, deletions, a rename.
        for i in 0..8 {
            let n = rnd() % 20;
            let name = format!("d{}/f{n}.txt", n % 3);
            match rnd() % 4 {
                0 if a.path(&name).exists() => std::fs::remove_file(a.path(&name)).expect("rm"),
                1 if a.path(&name).exists() => {
                    let to = a.path(&format!("d{}/moved{round}-{i}.txt", n % 3));
                    std::fs::rename(a.path(&name), to).expect("mv");
                }
                _ => a.write(
                    &name,
                    format!("round {round} item {i} {}", rnd()).as_bytes(),
                ),
            }
        }
        let expected = tree(&a.root);
        ever.extend(expected.values().cloned());
        let faults = format!("seed={round},rate=30,kinds=drop+lost+busy+slow+corrupt");
        for _ in 0..2 {
            run_with_faults(&a, &faults);
            assert_eq!(tree(&a.root), expected, "round {round}: A's files changed");
        }
        // B under faults: whatever it has is something A wrote.
        for _ in 0..2 {
            run_with_faults(&b, &faults);
            for (path, data) in tree(&b.root) {
                assert!(
                    ever.contains(&data),
                    "round {round}: {path} arrived corrupt: {:?}",
                    String::from_utf8_lossy(&data)
                );
            }
        }
    }
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    assert_eq!(tree(&b.root), tree(&a.root), "converged after the faults");
}

/// A broken (or lying) server answers every listing as empty: the pass stops at the
/// deletion guard instead of deleting everything here.
#[cfg(feature = "test-hooks")]
#[test]
fn an_empty_listing_from_a_lying_server_deletes_nothing() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "s3");
    add_task(&c, "s3", "l", &[]);
    for i in 0..10 {
        c.write(&format!("f{i}.txt"), format!("file {i}").as_bytes());
    }
    c.ok(&["run", "t"]);
    let before = tree(&c.root);
    let out = crate::harness::run(
        c.cmd()
            .env("CAIRN_TEST_CLOUD_FAULTS", "seed=3,rate=100,kinds=empty")
            .args(["run", "t"]),
        None,
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("confirm-deletes"), "{text}");
    assert_eq!(tree(&c.root), before, "nothing deleted here");
    // The server is honest again: nothing to do.
    c.ok(&["run", "t"]);
    assert_eq!(tree(&c.root), before);
}

/// The provider's rules act before any request: a bucket name S3 refuses is refused at
/// `connect`, saying which rule; a file name S3 connections refuse (seed 002: no `:`) is
/// reported by name on every pass and left alone, while the rest syncs.
#[test]
fn provider_rules_refuse_bad_buckets_and_report_bad_names() {
    let moto = start_moto();
    let c = Client::new();
    let out = c.cairn_stdin(
        &[
            "cloud",
            "connect",
            "bad",
            "--provider",
            "s3",
            "--endpoint",
            &moto.endpoint,
            "--bucket",
            "no spaces!",
            "--option",
            "access_key_id=k",
            "--secret",
            "secret_access_key",
        ],
        "s\n",
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("no spaces!"),
        "{text}"
    );
    let text = c.fails(&["cloud", "connect", "x", "--provider", "no-such-cloud"]);
    assert!(
        text.contains("azblob"),
        "the known providers are listed: {text}"
    );

    connect(&c, &moto, "s3");
    add_task(&c, "s3", "r", &[]);
    c.write("ok.txt", b"fine");
    c.write("12:30.txt", b"a colon");
    let out = c.cairn(&["run", "t"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = c.ok(&["log", "t"]);
    assert!(log.contains("12:30.txt"), "reported by name: {all}\n{log}");
    let other = Client::new();
    connect(&other, &moto, "s3");
    add_task(&other, "s3", "r", &[]);
    other.ok(&["run", "t"]);
    assert!(other.path("ok.txt").is_file());
    assert!(!other.path("12:30.txt").exists());
    assert!(c.path("12:30.txt").is_file(), "left alone here");
}

/// Encrypted cloud tasks: the cloud sees neither names nor contents; a second computer with
/// the password syncs, a wrong password is refused before anything is touched, a task
/// without encryption is refused on that remote, and an exported key restores a plain copy
/// of the objects with no task and no network.
#[test]
fn an_encrypted_cloud_task_hides_names_and_contents_and_decrypts_offline() {
    let moto = start_moto();
    let (a, b) = (Client::new(), Client::new());
    connect(&a, &moto, "s3");
    connect(&b, &moto, "s3");
    let add = |c: &Client, password: &str| {
        let root = c.root.to_str().expect("utf-8").to_string();
        c.cairn_stdin(
            &[
                "cloud",
                "add",
                "t",
                "--connection",
                "s3",
                "--local",
                &root,
                "--remote",
                "vault",
                "--encrypt",
            ],
            &format!("{password}\n"),
        )
    };
    let out = add(&a, "correct horse battery");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.write("private/plans.txt", b"the secret plan");
    a.write("big.bin", &crate::harness::noise(5, 200_000));
    a.ok(&["run", "t"]);

    let out = add(&b, "wrong password!");
    assert!(!out.status.success(), "a wrong password is refused");
    let out = add(&b, "correct horse battery");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.ok(&["run", "t"]);
    assert_eq!(
        std::fs::read(b.path("private/plans.txt")).expect("synced"),
        b"the secret plan"
    );

    // What the cloud holds: no plain name, no plain content.
    let dump = tempfile::tempdir().expect("tempdir");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(copy_objects(&moto, "vault", dump.path()));
    for (path, data) in tree(dump.path()) {
        assert!(
            !path.contains("plans") && !path.contains("private"),
            "{path}"
        );
        assert!(
            !data.windows(15).any(|w| w == b"the secret plan"),
            "{path} holds plain text"
        );
    }
    // A plain task on that remote is refused.
    let c = Client::new();
    connect(&c, &moto, "s3");
    let root = c.root.to_str().expect("utf-8").to_string();
    let text = c.fails(&[
        "cloud",
        "add",
        "t",
        "--connection",
        "s3",
        "--local",
        &root,
        "--remote",
        "vault",
    ]);
    assert!(text.contains("encrypted"), "{text}");

    // Offline: the exported key and a plain copy of the objects give the files back.
    let key = a.tmp().join("vault.key");
    a.ok(&["cloud", "export-key", "t", key.to_str().expect("utf-8")]);
    let restored = a.tmp().join("restored");
    a.ok(&[
        "cloud",
        "decrypt",
        "--key",
        key.to_str().expect("utf-8"),
        dump.path().to_str().expect("utf-8"),
        restored.to_str().expect("utf-8"),
    ]);
    assert_eq!(tree(&restored), tree(&a.root));
}

/// Copies every object under `prefix` of `moto`'s bucket into `dest`, as a plain download would.
pub(crate) async fn copy_objects(moto: &Moto, prefix: &str, dest: &std::path::Path) {
    let (conn, secrets) = s3_connection(moto);
    let counters = std::sync::Arc::new(cairn_cloud::transport::Counters::default());
    let op = cairn_cloud::connection::operator(&conn, &secrets, prefix, counters).expect("op");
    let entries = op.list_with("").recursive(true).await.expect("list");
    for e in entries {
        let path = e.path().trim_start_matches('/');
        if path.is_empty() || path.ends_with('/') {
            continue;
        }
        let data = op.read(path).await.expect("read").to_vec();
        let file = dest.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, data).expect("write");
    }
}

pub(crate) fn now_text() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    cairn_model::timespec::format_instant(ns)
}

/// `--keep-versions`: replaced and deleted files stay on the cloud; `versions` lists them and
/// `restore --at` brings back what a file was at a time, also after it was deleted.
#[test]
fn a_cloud_task_keeps_versions_and_restores_them() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "s3");
    add_task(&c, "s3", "h", &["--keep-versions", "3"]);
    c.write("stays.txt", b"so the folder is never empty");
    c.write("doc.txt", b"version one");
    c.ok(&["run", "t"]);
    // The cloud's times have whole seconds: the steps are more than a second apart.
    std::thread::sleep(Duration::from_millis(1500));
    let after_one = now_text();
    std::thread::sleep(Duration::from_millis(1500));
    c.write("doc.txt", b"version two");
    c.ok(&["run", "t"]);
    std::thread::sleep(Duration::from_millis(1500));
    let after_two = now_text();
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::remove_file(c.path("doc.txt")).expect("rm");
    c.ok(&["run", "t"]);

    let doc = c.path("doc.txt");
    let listed = c.ok(&["versions", "t", doc.to_str().expect("utf-8")]);
    assert_eq!(listed.lines().count(), 3, "two kept versions: {listed}");

    let to = c.tmp().join("back");
    let to_s = to.to_str().expect("utf-8");
    c.ok(&[
        "restore",
        "t",
        doc.to_str().expect("utf-8"),
        "--at",
        &after_one,
        "--to",
        to_s,
    ]);
    assert_eq!(
        std::fs::read(to.join("doc.txt")).expect("restored"),
        b"version one"
    );
    c.ok(&["restore", "t", "--at", &after_two]);
    assert_eq!(
        std::fs::read(&doc).expect("restored in place"),
        b"version two"
    );
}

/// `run --dry-run` on a cloud task says what it would do and changes nothing on either side.
#[test]
fn a_cloud_dry_run_changes_nothing() {
    let moto = start_moto();
    let (a, b) = (Client::new(), Client::new());
    connect(&a, &moto, "s3");
    connect(&b, &moto, "s3");
    add_task(&a, "s3", "d", &[]);
    add_task(&b, "s3", "d", &[]);
    a.write("stays.txt", b"so the folder is never empty");
    a.write("new.txt", b"new");
    let out = a.ok(&["run", "t", "--dry-run"]);
    assert!(out.contains("new.txt"), "{out}");
    b.ok(&["run", "t"]);
    assert!(!b.path("new.txt").exists(), "the dry run sent nothing");
    assert!(!b.path("stays.txt").exists(), "the dry run sent nothing");
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    std::fs::remove_file(a.path("new.txt")).expect("rm");
    a.ok(&["run", "t"]);
    let out = b.ok(&["run", "t", "--dry-run"]);
    assert!(out.contains("new.txt"), "{out}");
    assert!(b.path("new.txt").exists());
}

/// `--storage-class` and `--sse` reach the objects; a class the provider does not offer is
/// refused when the task is added, naming the ones it does.
#[test]
fn storage_class_and_sse_reach_the_objects() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "s3");
    let root = c.root.to_str().expect("utf-8").to_string();
    let text = c.fails(&[
        "cloud",
        "add",
        "t",
        "--connection",
        "s3",
        "--local",
        &root,
        "--storage-class",
        "cool",
    ]);
    assert!(text.contains("cool"), "{text}");
    add_task(&c, "s3", "k", &["--storage-class", "ia", "--sse"]);
    c.write("cold.txt", b"rarely read");
    c.ok(&["run", "t"]);
    // moto's own view of its objects (its introspection API).
    let state = crate::harness::http()
        .get(format!("{}/moto-api/data.json", moto.endpoint))
        .send()
        .expect("moto state")
        .text()
        .expect("moto state");
    let at = state.find("cold.txt").expect("the object is there");
    let around = &state[at.saturating_sub(3000)..(at + 3000).min(state.len())];
    assert!(around.contains("STANDARD_IA"), "{around}");
    assert!(around.contains("AES256"), "{around}");
}

#[test]
fn an_upload_only_cloud_task_sends_a_local_edit_of_a_file_it_sent_before() {
    let moto = start_moto();
    let (a, b) = (Client::new(), Client::new());
    connect(&a, &moto, "s3");
    connect(&b, &moto, "s3");
    add_task(&a, "s3", "p", &["--direction", "upload-only"]);
    add_task(&b, "s3", "p", &[]);
    a.write("doc.bin", &crate::harness::noise(1, 10_000));
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    assert_eq!(read(&b, "doc.bin"), Some(crate::harness::noise(1, 10_000)));

    // An edit in place: same size, new content.
    a.write("doc.bin", &crate::harness::noise(2, 10_000));
    let out = a.ok(&["run", "t"]);
    assert!(out.contains("1 uploaded"), "{out}");
    b.ok(&["run", "t"]);
    assert_eq!(read(&b, "doc.bin"), Some(crate::harness::noise(2, 10_000)));
}

#[test]
fn a_cloud_task_syncs_through_a_webdav_server_that_keeps_no_properties() {
    let dav = crate::harness::cloud::start_wsgidav().unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (Client::new(), Client::new());
    let user = format!("username={}", dav.user);
    for c in [&a, &b] {
        let out = c.cairn_stdin(
            &[
                "cloud",
                "connect",
                "dav",
                "--provider",
                "webdav",
                "--endpoint",
                &dav.endpoint,
                "--option",
                &user,
                "--secret",
                "password",
            ],
            &format!("{}\n", dav.password),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        add_task(c, "dav", "shared", &[]);
    }
    a.write("notes.txt", b"over webdav");
    a.write("deep/data.bin", &crate::harness::noise(3, 50_000));
    let out = a.ok(&["run", "t"]);
    assert!(!out.contains("failed") || out.contains("0 failed"), "{out}");
    b.ok(&["run", "t"]);
    assert_eq!(read(&b, "notes.txt").as_deref(), Some(&b"over webdav"[..]));
    assert_eq!(
        read(&b, "deep/data.bin"),
        Some(crate::harness::noise(3, 50_000))
    );
}

/// `task set` changes a cloud task (no server to ask about access), with its own rules.
#[test]
fn task_set_changes_a_cloud_task() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "s3");
    add_task(&c, "s3", "ts", &[]);
    c.ok(&[
        "task",
        "set",
        "t",
        "--poll",
        "120",
        "--keep-versions",
        "5",
        "--mode",
        "two-way",
    ]);
    let config = std::fs::read_to_string(c.home.join("config.json")).expect("config");
    assert!(config.contains("\"poll_secs\": 120"), "{config}");
    assert!(config.contains("\"keep_versions\": 5"), "{config}");
    let text = c.fails(&["task", "set", "t", "--poll", "90000"]);
    assert!(text.contains("86400"), "{text}");
}

/// A pass of a task while another process runs one (the agent, a second `cairn run`) is
/// refused with the holder named, and changes nothing; once the other pass ends it runs.
#[test]
fn a_second_pass_of_one_task_waits_or_with_no_wait_is_refused_clearly() {
    let moto = start_moto();
    let (a, b) = (Client::new(), Client::new());
    connect(&a, &moto, "s3");
    connect(&b, &moto, "s3");
    add_task(&a, "s3", "d", &[]);
    add_task(&b, "s3", "d", &[]);
    a.write("a.txt", b"a");
    // flock(1) holds the lock the way another cairn process would, for as long as it sleeps.
    let lock = a.home.join("locks").join("t.lock");
    std::fs::create_dir_all(lock.parent().expect("lock folder")).expect("locks folder");
    // `-o`: the lock stays with flock itself, so killing flock frees it.
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "120"])
        .spawn()
        .expect("flock from util-linux");
    let held = || {
        !std::process::Command::new("flock")
            .arg("-n")
            .arg(&lock)
            .arg("true")
            .status()
            .expect("flock")
            .success()
    };
    while !held() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = a.fails(&["run", "t", "--no-wait"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(err.contains("is running a pass of task t"), "{err}");
    b.ok(&["run", "t"]);
    assert!(!b.path("a.txt").exists(), "the refused pass sent nothing");
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    assert_eq!(read(&b, "a.txt").as_deref(), Some(&b"a"[..]));
    // Without --no-wait, a run waits for the other pass to end and then makes its own (a
    // script running a task beside the agent that just picked it up).
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "2"])
        .spawn()
        .expect("flock");
    while !held() {
        std::thread::sleep(Duration::from_millis(20));
    }
    a.write("later.txt", b"later");
    let out = a.cairn(&["run", "t"]);
    let _ = holder.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("waiting for another process's pass"), "{err}");
    b.ok(&["run", "t"]);
    assert_eq!(read(&b, "later.txt").as_deref(), Some(&b"later"[..]));
}
