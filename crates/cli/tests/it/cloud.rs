//! Cloud tasks end to end: the real binary syncing folders with a real S3 server (moto).

use std::time::Duration;

use crate::harness::Client;

/// A moto S3 server on a free port, for the cloud replica's conformance (until the testkit
/// starts every cloud server).
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { child, endpoint }
}

pub fn s3_connection(
    endpoint: &str,
    bucket: &str,
) -> (cairn_cloud::CloudConnection, cairn_cloud::Secrets) {
    let options = [
        ("endpoint", endpoint),
        ("bucket", bucket),
        ("access_key_id", "test"),
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
    };
    let secrets = cairn_cloud::Secrets(
        [("secret_access_key".to_string(), "test".to_string())]
            .into_iter()
            .collect(),
    );
    (conn, secrets)
}

impl Moto {
    /// Creates `name` (moto takes an unsigned bucket creation).
    pub fn bucket(&self, name: &str) {
        let resp = crate::harness::http()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .expect("create bucket");
        assert!(
            resp.status().is_success(),
            "create bucket: {}",
            resp.status()
        );
    }
}

/// `cloud connect NAME` to bucket `bucket` on `moto` with the test key.
fn connect(c: &Client, moto: &Moto, name: &str, bucket: &str) {
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
            "access_key_id=test",
            "--secret",
            "secret_access_key",
        ],
        "test-secret-value\n",
    );
    assert!(
        out.status.success(),
        "cloud connect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn add_task(c: &Client, conn: &str, remote: &str, extra: &[&str]) {
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

fn read(c: &Client, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(c.path(rel)).ok()
}

#[test]
fn a_cloud_task_keeps_two_computers_in_sync_through_s3() {
    let moto = start_moto();
    moto.bucket("sync");
    let (a, b) = (Client::new(), Client::new());
    connect(&a, &moto, "s3", "sync");
    connect(&b, &moto, "s3", "sync");
    add_task(&a, "s3", "shared/docs", &[]);
    add_task(&b, "s3", "shared/docs", &[]);

    a.write("notes.txt", b"first");
    a.write("deep/er/data.bin", &crate::harness::noise(1, 300_000));
    a.write("empty.txt", b"");
    std::fs::create_dir_all(a.path("empty-dir")).expect("mkdir");
    std::os::unix::fs::symlink("notes.txt", a.path("link")).expect("symlink");
    let out = a.ok(&["run", "t"]);
    assert!(out.contains("t:"), "{out}");
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

    // Both edit one file: nothing is lost, one is the file and the other a conflict copy.
    a.write("notes.txt", b"edit on a");
    std::thread::sleep(Duration::from_millis(20));
    b.write("notes.txt", b"edit on b");
    a.ok(&["run", "t"]);
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
    moto.bucket("one");
    let c = Client::new();
    connect(&c, &moto, "first", "one");
    let config = std::fs::read_to_string(c.home.join("config.json")).expect("config");
    assert!(!config.contains("test-secret-value"), "{config}");
    let creds = c.home.join("credentials.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&creds).expect("creds").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(!c.ok(&["cloud", "list"]).contains("test-secret-value"));

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
            "access_key_id=test",
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
    moto.bucket("asked");
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
    connect(&c, &moto, "s3", "does-not-exist");
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
fn tree(root: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
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
    moto.bucket("faulty");
    let (a, b) = (Client::new(), Client::new());
    connect(&a, &moto, "s3", "faulty");
    connect(&b, &moto, "s3", "faulty");
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
    moto.bucket("liar");
    let c = Client::new();
    connect(&c, &moto, "s3", "liar");
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
    moto.bucket("rules");
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

    connect(&c, &moto, "s3", "rules");
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
    connect(&other, &moto, "s3", "rules");
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
    moto.bucket("secret");
    let (a, b) = (Client::new(), Client::new());
    connect(&a, &moto, "s3", "secret");
    connect(&b, &moto, "s3", "secret");
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
        .block_on(copy_objects(&moto.endpoint, "secret", "vault", dump.path()));
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
    connect(&c, &moto, "s3", "secret");
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

/// Copies every object under `prefix` of `bucket` into `dest`, as a plain download would.
async fn copy_objects(endpoint: &str, bucket: &str, prefix: &str, dest: &std::path::Path) {
    let (conn, secrets) = s3_connection(endpoint, bucket);
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
