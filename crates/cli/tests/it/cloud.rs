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

#[test]
fn an_upload_only_cloud_task_sends_a_local_edit_of_a_file_it_sent_before() {
    let moto = start_moto();
    moto.bucket("upload-only");
    let (a, b) = (Client::new(), Client::new());
    connect(&a, &moto, "s3", "upload-only");
    connect(&b, &moto, "s3", "upload-only");
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

/// A wsgidav WebDAV server (anonymous, over a temporary folder) on a free port. Its file
/// system provider stores no dead properties: it answers PROPPATCH with 403.
struct Wsgidav {
    child: std::process::Child,
    endpoint: String,
    _root: tempfile::TempDir,
}

impl Drop for Wsgidav {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_wsgidav() -> Wsgidav {
    let root = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let child = std::process::Command::new("wsgidav")
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--auth"])
        .args(["anonymous", "--no-config", "-q", "--root"])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wsgidav (pip install wsgidav cheroot)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Wsgidav {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        _root: root,
    }
}

#[test]
fn a_cloud_task_syncs_through_a_webdav_server_that_keeps_no_properties() {
    let dav = start_wsgidav();
    let (a, b) = (Client::new(), Client::new());
    for c in [&a, &b] {
        c.ok(&[
            "cloud",
            "connect",
            "dav",
            "--provider",
            "webdav",
            "--endpoint",
            &dav.endpoint,
        ]);
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
