//! Cloud tasks the server runs for its own folders: a real server, a real S3 (moto), drive
//! computers on one side and a cloud task of another computer on the other.

use crate::cloud::{add_task, connect, start_moto, Moto};
use crate::harness::{wait_until, Client, Server};

/// `server cloud connect s3` for `owner`, on the server itself (`--data`, an administrator).
pub(crate) fn server_connect(server: &Server, moto: &Moto, owner: &str) {
    let secret = format!("{}\n", moto.secret_access_key);
    connect_with(server, moto, "s3", owner, &moto.access_key_id, &secret);
}

/// Another connection for `owner` with key id `key_id` (one per credential) and a wrong secret.
fn server_connect_as(server: &Server, moto: &Moto, owner: &str, key_id: &str) {
    connect_with(server, moto, "s3", owner, key_id, "x\n");
}

/// `server cloud connect NAME` for `owner` with key id `key_id` and `secret` (on stdin).
fn connect_with(server: &Server, moto: &Moto, name: &str, owner: &str, key_id: &str, secret: &str) {
    let key = format!("access_key_id={key_id}");
    server.admin(
        &[
            "cloud",
            "connect",
            name,
            "--provider",
            "s3",
            "--endpoint",
            &moto.endpoint,
            "--bucket",
            &moto.bucket,
            "--option",
            &key,
            "--secret",
            "secret_access_key",
            "--owner",
            owner,
        ],
        Some(secret),
    );
}

fn read(c: &Client, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(c.path(rel)).ok()
}

/// Runs `c`'s task `task` until `rel` holds `want` there.
fn sync_until(c: &Client, task: &str, rel: &str, want: &[u8]) {
    wait_until(60, &format!("{rel} to arrive"), || {
        c.ok(&["run", task]);
        read(c, rel).as_deref() == Some(want)
    });
}

#[test]
fn a_server_folder_and_a_bucket_stay_in_sync_both_ways() {
    let moto = start_moto();
    let server = Server::start();
    server_connect(&server, &moto, "alice");
    server.admin(
        &[
            "cloud", "add", "mirror", "--folder", "backup", "--cloud", "s3", "--remote", "nas",
            "--poll", "2", "--owner", "alice",
        ],
        None,
    );
    // A drive computer on the server folder; another computer's cloud task on the bucket.
    let pc = crate::drive::computer(&server, "pc", &[]);
    let cloud_side = Client::new();
    connect(&cloud_side, &moto, "s3");
    add_task(&cloud_side, "s3", "nas", &[]);

    pc.write("report.txt", b"from a client of the server");
    pc.write("deep/data.bin", &crate::harness::noise(7, 200_000));
    pc.ok(&["run", "d"]);
    sync_until(
        &cloud_side,
        "t",
        "report.txt",
        b"from a client of the server",
    );
    assert_eq!(
        read(&cloud_side, "deep/data.bin"),
        Some(crate::harness::noise(7, 200_000))
    );

    // A change made in the cloud becomes a new server version every client sees.
    cloud_side.write("from-cloud.txt", b"written in the bucket");
    cloud_side.write("report.txt", b"edited in the bucket");
    cloud_side.ok(&["run", "t"]);
    sync_until(&pc, "d", "from-cloud.txt", b"written in the bucket");
    sync_until(&pc, "d", "report.txt", b"edited in the bucket");
    let report = pc.path("report.txt");
    let versions = pc.ok(&["versions", "d", report.to_str().expect("utf-8")]);
    assert!(versions.contains("cloud task mirror"), "{versions}");

    // A deletion on the server side reaches the bucket.
    std::fs::remove_file(pc.path("from-cloud.txt")).expect("rm");
    pc.ok(&["run", "d"]);
    wait_until(60, "the deletion to reach the bucket", || {
        cloud_side.ok(&["run", "t"]);
        read(&cloud_side, "from-cloud.txt").is_none()
    });

    let listed = server.admin(&["cloud", "list", "--owner", "alice"], None);
    assert!(
        listed.contains("mirror") && listed.contains("ok"),
        "{listed}"
    );
    assert!(
        !server.log_contains(&moto.secret_access_key),
        "the secret reached the server's log"
    );
}

#[test]
fn users_manage_their_own_server_cloud_tasks_and_no_one_elses() {
    let moto = start_moto();
    let server = Server::start();
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    server.admin(&["folder", "add", "shared"], None);
    server.admin(
        &["folder", "grant", "shared", "bob", "--access", "ro"],
        None,
    );
    let alice = Client::new();
    alice.connect(&server, "alice", "alice-pw");
    let bob = Client::new();
    bob.connect(&server, "bob", "bob-pw");
    let via = |c: &Client, args: &[&str], stdin: &str| {
        let mut full = vec!["server", "cloud"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--connection", "srv"]);
        c.cairn_stdin(&full, stdin)
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let key = format!("access_key_id={}", moto.access_key_id);
    let connect_args = [
        "connect",
        "mine",
        "--provider",
        "s3",
        "--endpoint",
        &moto.endpoint,
        "--bucket",
        &moto.bucket,
        "--option",
        &key,
        "--secret",
        "secret_access_key",
    ];
    let secret = format!("{}\n", moto.secret_access_key);

    // A user may not point the server at itself or its network: that is an administrator's call.
    let out = via(&alice, &connect_args, &secret);
    assert!(!out.status.success());
    assert!(text(&out).contains("private network"), "{}", text(&out));
    // Nor reach the server's own disk.
    let out = via(
        &alice,
        &[
            "connect",
            "disk",
            "--provider",
            "fs",
            "--option",
            "root=/etc",
        ],
        "",
    );
    assert!(text(&out).contains("administrator"), "{}", text(&out));

    // The administrator makes the connection for alice; she sees it, without its secret.
    server_connect(&server, &moto, "alice");
    let out = via(&alice, &["connections"], "");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("alice\ts3"), "{}", text(&out));
    assert!(!text(&out).contains(&moto.secret_access_key));

    // Bob sees none of it and cannot act for alice.
    let out = via(&bob, &["connections"], "");
    assert!(!text(&out).contains("alice"), "{}", text(&out));
    for args in [
        &["list", "--owner", "alice"][..],
        &["list", "--all"][..],
        &["remove", "x", "--owner", "alice"][..],
    ] {
        let out = via(&bob, args, "");
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out).contains("administrator"),
            "{args:?}: {}",
            text(&out)
        );
    }
    // Bob has no connection named s3 of his own, and only reads `shared`.
    let out = via(
        &bob,
        &["add", "t", "--folder", "backup", "--cloud", "s3"],
        "",
    );
    assert!(
        text(&out).contains("no cloud connection named s3"),
        "{}",
        text(&out)
    );

    // Alice adds a task on her folder through the API; on a folder she cannot see, refused.
    let out = via(
        &alice,
        &["add", "t", "--folder", "shared", "--cloud", "s3"],
        "",
    );
    assert!(text(&out).contains("no folder shared"), "{}", text(&out));
    let out = via(
        &alice,
        &[
            "add", "t", "--folder", "backup", "--cloud", "s3", "--poll", "90000",
        ],
        "",
    );
    assert!(text(&out).contains("poll period"), "{}", text(&out));
    let out = via(
        &alice,
        &[
            "add", "t", "--folder", "backup", "--cloud", "s3", "--remote", "a",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = via(&alice, &["connections"], "");
    assert!(text(&out).contains("tasks: t"), "{}", text(&out));
    let out = via(&alice, &["disconnect", "s3"], "");
    assert!(text(&out).contains("used by task(s) t"), "{}", text(&out));

    // A read-only user may only copy the folder to the cloud (admin acting for bob).
    server_connect_as(&server, &moto, "bob", "other-key");
    let ro = server.admin_raw(
        &[
            "cloud", "add", "b", "--folder", "shared", "--cloud", "s3", "--owner", "bob",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&ro.stderr).contains("may only read"));
    server.admin(
        &[
            "cloud",
            "add",
            "b",
            "--folder",
            "shared",
            "--cloud",
            "s3",
            "--owner",
            "bob",
            "--direction",
            "upload-only",
            "--remote",
            "b",
        ],
        None,
    );
    let all = server.admin(&["cloud", "list", "--all"], None);
    assert!(all.contains("alice\tt") && all.contains("bob\tb"), "{all}");
    let out = via(&alice, &["remove", "t"], "");
    assert!(out.status.success(), "{}", text(&out));

    // The activity log has each task added and removed, and who acted for whom.
    let log = server.admin(&["log", "--kind", "cloud"], None);
    let has = |needle: &str| log.lines().any(|l| l.contains(needle));
    assert!(
        has("\tcloud.task-removed\tok\talice\talice/t\t127.0.0.1\t"),
        "{log}"
    );
    assert!(
        has("\tcloud.task-added\tok\talice\talice/t\t127.0.0.1\tbackup bidirectional s3:a"),
        "{log}"
    );
    assert!(
        has("\tcloud.task-added\tok\t-\tbob/b\tconsole\tshared upload-only s3:b (for bob)"),
        "{log}"
    );
}

#[test]
fn one_credential_is_one_connection_on_the_server() {
    let moto = start_moto();
    let server = Server::start();
    server_connect(&server, &moto, "alice");
    let key = format!("access_key_id={}", moto.access_key_id);
    let again = server.admin_raw(
        &[
            "cloud",
            "connect",
            "other",
            "--provider",
            "s3",
            "--endpoint",
            &moto.endpoint,
            "--bucket",
            &moto.bucket,
            "--option",
            &key,
            "--secret",
            "secret_access_key",
            "--owner",
            "admin",
        ],
        Some("y\n"),
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already uses this credential"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn a_failing_task_says_why_and_recovers_once_re_authorised() {
    let moto = start_moto();
    let server = Server::start();
    // A wrong secret: every pass fails, and the list says why (without the secret).
    server_connect_as(&server, &moto, "alice", &moto.access_key_id);
    server.admin(
        &[
            "cloud", "add", "m", "--folder", "backup", "--cloud", "s3", "--owner", "alice",
        ],
        None,
    );
    let list = || server.admin(&["cloud", "list", "--owner", "alice"], None);
    wait_until(60, "the failed pass to be reported", || {
        list().contains("error:")
    });
    let shown = list();
    assert!(!shown.contains(&moto.secret_access_key), "{shown}");
    // The administration page lists it with its error, and no secret.
    let pw = std::fs::read_to_string(server.data.join("admin-password")).expect("admin password");
    let admin = crate::web::log_in(&server, "admin", pw.trim());
    let page = admin.text("/ui/admin");
    let tasks = page
        .split("<h2>Cloud tasks</h2>")
        .nth(1)
        .expect("a cloud tasks part");
    assert!(
        tasks.contains(">m<") && tasks.contains("of alice") && tasks.contains("role=\"alert\""),
        "{tasks}"
    );
    assert!(!page.contains(&moto.secret_access_key));

    // Re-authorised and asked for a pass: it succeeds.
    let key = format!("access_key_id={}", moto.access_key_id);
    server.admin(
        &[
            "cloud",
            "edit",
            "s3",
            "--option",
            &key,
            "--secret",
            "secret_access_key",
            "--owner",
            "alice",
            "--provider",
            "s3",
            "--endpoint",
            &moto.endpoint,
            "--bucket",
            &moto.bucket,
        ],
        Some(&format!("{}\n", moto.secret_access_key)),
    );
    server.admin(&["cloud", "run", "m", "--owner", "alice"], None);
    wait_until(60, "a pass to succeed", || list().contains("\tok: "));
}

const PASSWORD: &str = "correct horse battery";

/// `server cloud add NAME --encrypt` on the server itself, the password on stdin.
fn add_encrypted(
    server: &Server,
    name: &str,
    remote: &str,
    password: &str,
) -> std::process::Output {
    server.admin_raw(
        &[
            "cloud",
            "add",
            name,
            "--folder",
            "backup",
            "--cloud",
            "s3",
            "--remote",
            remote,
            "--poll",
            "2",
            "--owner",
            "alice",
            "--encrypt",
        ],
        Some(password),
    )
}

/// The objects under `prefix` of `moto`'s bucket, copied into a new folder.
fn dump(moto: &Moto, prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(crate::cloud::copy_objects(moto, prefix, dir.path()));
    dir
}

/// An encrypted server task: the cloud holds only ciphertext (names and bytes); the folder and
/// a computer's encrypted cloud task with the same password sync both ways through it, also
/// after the server restarts; a wrong password and a plain task on that path are refused; the
/// exported key opens a plain copy of the objects with `cairn cloud decrypt`; no listing or
/// log shows the password or the key.
#[test]
fn an_encrypted_server_cloud_task_keeps_only_ciphertext_in_the_cloud() {
    let moto = start_moto();
    let mut server = Server::start();
    server_connect(&server, &moto, "alice");
    let short = add_encrypted(&server, "vault", "vault", "short");
    assert!(!short.status.success());
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("at least 8 characters"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );
    let out = add_encrypted(&server, "vault", "vault", PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pc = crate::drive::computer(&server, "pc", &[]);
    let cloud_side = Client::new();
    connect(&cloud_side, &moto, "s3");
    let root = cloud_side.root.to_str().expect("utf-8").to_string();
    let out = cloud_side.cairn_stdin(
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
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "the server's remote opens with its password: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Folder to cloud.
    pc.write("private/plans.txt", b"the secret plan");
    pc.ok(&["run", "d"]);
    sync_until(&cloud_side, "t", "private/plans.txt", b"the secret plan");
    for (path, data) in crate::cloud::tree(dump(&moto, "vault").path()) {
        assert!(
            !path.contains("plans") && !path.contains("private"),
            "a plain name in the cloud: {path}"
        );
        assert!(
            !data.windows(15).any(|w| w == b"the secret plan"),
            "{path} holds plain text"
        );
    }

    // Cloud to folder, before and after a restart of the server.
    cloud_side.write("from-cloud.txt", b"written in the bucket");
    cloud_side.ok(&["run", "t"]);
    sync_until(&pc, "d", "from-cloud.txt", b"written in the bucket");
    server.restart();
    cloud_side.write("after-restart.txt", b"the task still runs");
    cloud_side.ok(&["run", "t"]);
    sync_until(&pc, "d", "after-restart.txt", b"the task still runs");

    // A wrong password for that path, and a plain task on it, are refused.
    let wrong = add_encrypted(&server, "again", "vault", "not the password");
    assert!(!wrong.status.success(), "a wrong password is refused");
    let plain = server.admin_raw(
        &[
            "cloud", "add", "plain", "--folder", "backup", "--cloud", "s3", "--remote", "vault",
            "--owner", "alice",
        ],
        None,
    );
    assert!(!plain.status.success());
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("encrypted"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    // Disaster recovery: the exported key opens a plain copy of the objects.
    let key = pc.tmp().join("vault.key");
    server.admin(
        &[
            "cloud",
            "export-key",
            "vault",
            "--owner",
            "alice",
            "--out",
            key.to_str().expect("utf-8"),
        ],
        None,
    );
    let copy = dump(&moto, "vault");
    let restored = pc.tmp().join("restored");
    pc.ok(&[
        "cloud",
        "decrypt",
        "--key",
        key.to_str().expect("utf-8"),
        copy.path().to_str().expect("utf-8"),
        restored.to_str().expect("utf-8"),
    ]);
    let files = crate::cloud::tree(&restored);
    assert_eq!(
        files.get("private/plans.txt").map(Vec::as_slice),
        Some(&b"the secret plan"[..])
    );
    assert_eq!(
        files.get("after-restart.txt").map(Vec::as_slice),
        Some(&b"the task still runs"[..])
    );

    // Neither the password nor the key is shown anywhere.
    let key_text = std::fs::read_to_string(&key).expect("key file");
    let secret = key_text
        .split('"')
        .find(|p| p.len() == 44)
        .expect("the base64 key");
    let listed = server.admin(&["cloud", "list", "--owner", "alice", "--json"], None);
    assert!(listed.contains("\"encrypt\": true"), "{listed}");
    for shown in [
        listed,
        server.admin(&["cloud", "list", "--all"], None),
        server.admin(&["cloud", "connections", "--all"], None),
    ] {
        assert!(
            !shown.contains(PASSWORD) && !shown.contains(secret),
            "{shown}"
        );
    }
    assert!(
        !server.log_contains(PASSWORD),
        "the password reached the log"
    );
    assert!(!server.log_contains(secret), "the key reached the log");
}

/// Through the API: a user adds an encrypted task on their folder; only they or an
/// administrator export its key, and both get the same key.
#[test]
fn only_the_owner_or_an_administrator_exports_a_server_tasks_key() {
    let moto = start_moto();
    let server = Server::start();
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    server_connect(&server, &moto, "alice");
    let alice = Client::new();
    alice.connect(&server, "alice", "alice-pw");
    let bob = Client::new();
    bob.connect(&server, "bob", "bob-pw");
    let via = |c: &Client, args: &[&str], stdin: &str| {
        let mut full = vec!["server", "cloud"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--connection", "srv"]);
        let out = c.cairn_stdin(&full, stdin);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let add = [
        "add",
        "vault",
        "--folder",
        "backup",
        "--cloud",
        "s3",
        "--remote",
        "api-vault",
        "--encrypt",
    ];
    let (ok, text) = via(&alice, &add, "short\n");
    assert!(!ok && text.contains("at least 8 characters"), "{text}");
    let (ok, text) = via(&alice, &add, &format!("{PASSWORD}\n"));
    assert!(ok, "{text}");
    wait_until(60, "the first pass", || {
        server
            .admin(&["cloud", "list", "--owner", "alice"], None)
            .contains("\tok: ")
    });
    assert!(
        !server.log_contains(PASSWORD),
        "the password reached the log"
    );

    let out_file = |c: &Client| c.tmp().join("vault.key");
    let path = |c: &Client| out_file(c).to_str().expect("utf-8").to_string();
    let (ok, text) = via(
        &bob,
        &[
            "export-key",
            "vault",
            "--owner",
            "alice",
            "--out",
            &path(&bob),
        ],
        "",
    );
    assert!(!ok && text.contains("administrator"), "{text}");
    assert!(!out_file(&bob).exists());
    let (ok, text) = via(&bob, &["export-key", "vault", "--out", &path(&bob)], "");
    assert!(!ok && text.contains("no cloud task named vault"), "{text}");

    let (ok, text) = via(&alice, &["export-key", "vault", "--out", &path(&alice)], "");
    assert!(ok, "{text}");
    let admin_key = server.data.with_file_name("admin.key");
    server.admin(
        &[
            "cloud",
            "export-key",
            "vault",
            "--owner",
            "alice",
            "--out",
            admin_key.to_str().expect("utf-8"),
        ],
        None,
    );
    let text_of = |p: &std::path::Path| std::fs::read_to_string(p).expect("key file");
    let key_text = text_of(&out_file(&alice));
    assert_eq!(key_text, text_of(&admin_key));
    let secret = key_text
        .split('"')
        .find(|p| p.len() == 44)
        .expect("the base64 key");
    let (ok, listed) = via(&alice, &["list", "--json"], "");
    assert!(ok && listed.contains("\"encrypt\": true"), "{listed}");
    assert!(
        !listed.contains(PASSWORD) && !listed.contains(secret),
        "{listed}"
    );

    // Removing the task forgets the server's copy of the key; the password opens the path
    // again, with the same key.
    let (ok, text) = via(&alice, &["remove", "vault"], "");
    assert!(ok, "{text}");
    let again = alice.tmp().join("again.key");
    let again_path = again.to_str().expect("utf-8").to_string();
    let (ok, text) = via(&alice, &["export-key", "vault", "--out", &again_path], "");
    assert!(!ok && text.contains("no cloud task named vault"), "{text}");
    let (ok, text) = via(&alice, &add, "the wrong password\n");
    assert!(!ok, "a wrong password is refused: {text}");
    let (ok, text) = via(&alice, &add, &format!("{PASSWORD}\n"));
    assert!(ok, "{text}");
    let (ok, text) = via(&alice, &["export-key", "vault", "--out", &again_path], "");
    assert!(ok, "{text}");
    assert_eq!(text_of(&again), key_text);
    // What the key opens: the marker the server wrote for that path.
    let copy = dump(&moto, "api-vault");
    let restored = alice.tmp().join("restored");
    alice.ok(&[
        "cloud",
        "decrypt",
        "--key",
        &path(&alice),
        copy.path().to_str().expect("utf-8"),
        restored.to_str().expect("utf-8"),
    ]);
}

/// The folder page carries the seeds' status words for the owner's server cloud tasks:
/// "synced" once a pass has taken the folder as it is, "filtered" with the rule on files a
/// task leaves out (and those never reach the bucket), "error" with the reason; another
/// user with access to the folder sees no one else's tasks, an administrator every task.
#[test]
fn the_folder_page_says_synced_filtered_and_error() {
    let moto = start_moto();
    let server = Server::start();
    server_connect(&server, &moto, "alice");
    server.admin(
        &[
            "cloud",
            "add",
            "mirror",
            "--folder",
            "backup",
            "--cloud",
            "s3",
            "--remote",
            "words",
            "--poll",
            "2",
            "--owner",
            "alice",
            "--exclude-ext",
            "ISO",
            "--max-size",
            "1",
        ],
        None,
    );
    let pc = crate::drive::computer(&server, "pc", &[]);
    pc.write("report.txt", b"for the cloud");
    pc.write("disk.iso", b"not for the cloud");
    pc.write("big.bin", &crate::harness::noise(3, 1_200_000));
    pc.ok(&["run", "d"]);

    let b = crate::web::log_in(&server, "alice", "alice-pw");
    wait_until(60, "the folder page to say synced", || {
        b.text("/ui/f/backup").contains(">synced</span>")
    });
    let page = b.text("/ui/f/backup");
    assert!(
        page.contains("cloud task mirror: <span class=\"tag\""),
        "{page}"
    );
    assert!(
        page.contains("disk.iso</a> <span class=\"tag\" title=\"not synced by cloud task mirror: extension rule *.iso\">filtered</span>"),
        "{page}"
    );
    assert!(page.contains("big.bin</a> <span class=\"tag\" title=\"not synced by cloud task mirror: larger than the maximum size"), "{page}");
    assert!(page.contains("report.txt</a></td>"), "{page}");
    let bucket = dump(&moto, "words");
    assert!(bucket.path().join("report.txt").exists());
    let in_bucket: Vec<_> = std::fs::read_dir(bucket.path())
        .expect("dump")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !bucket.path().join("disk.iso").exists() && !bucket.path().join("big.bin").exists(),
        "{in_bucket:?}"
    );

    // A second task whose credential is refused ends in "error", named with its reason.
    connect_with(
        &server,
        &moto,
        "bad",
        "alice",
        "refused-key",
        "x
",
    );
    server.admin(
        &[
            "cloud", "add", "broken", "--folder", "backup", "--cloud", "bad", "--remote", "x",
            "--owner", "alice",
        ],
        None,
    );
    wait_until(60, "the broken task's error on the page", || {
        b.text("/ui/f/backup")
            .contains("cloud task broken: <span class=\"tag\" title=\"last pass")
    });
    assert!(b.text("/ui/f/backup").contains(">error</span>"));

    // Bob reads the folder but sees no one's tasks; the administrator sees whose they are.
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    server.admin(
        &["folder", "grant", "backup", "bob", "--access", "ro"],
        None,
    );
    let bob = crate::web::log_in(&server, "bob", "bob-pw");
    let seen = bob.text("/ui/f/backup");
    assert!(
        seen.contains("report.txt") && !seen.contains("cloud task"),
        "{seen}"
    );
    server.admin(
        &["folder", "grant", "backup", "admin", "--access", "ro"],
        None,
    );
    let pw = std::fs::read_to_string(server.data.join("admin-password")).expect("admin password");
    let admin = crate::web::log_in(&server, "admin", pw.trim());
    assert!(admin
        .text("/ui/f/backup")
        .contains("cloud task mirror of alice"));
}
