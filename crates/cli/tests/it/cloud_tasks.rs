//! What a cloud task does, checked on every service the tests can run here (the replica
//! conformance suite checks the replica under it): a dry run lists and changes nothing, an
//! upload limit is at work (the pass's `limit_waits`, never a timing), an edit on both sides
//! keeps both (the remote's as a conflict copy named as the seeds name them), `--keep-versions`
//! keeps that many replaced versions, and an encrypted task round-trips between two computers
//! with nothing plain on the service. Few and small files: one test per service.

use crate::cloud_remotes::{self, add_task, connect, tree, Remote};
use crate::harness::{noise, Client};

fn ok(c: &Client, what: &str, args: &[&str]) -> String {
    let out = c.cairn(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}: cairn {args:?}:\n{text}");
    text
}

/// The files of `c` whose names start with `stem`, sorted.
fn starting(c: &Client, stem: &str) -> Vec<(String, Vec<u8>)> {
    tree(&c.root)
        .into_iter()
        .filter(|(n, _)| n.starts_with(stem))
        .collect()
}

/// `run TASK --json`: its counts.
fn run_json(c: &Client, what: &str, task: &str) -> serde_json::Value {
    let text = ok(c, what, &["run", task, "--json"]);
    let start = text.find('{').unwrap_or(0);
    let v: serde_json::Value = serde_json::Deserializer::from_str(&text[start..])
        .into_iter()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("{what}: no JSON in {text}"));
    v
}

fn limit_waits(v: &serde_json::Value) -> u64 {
    let found = v.pointer("/counts/limit_waits").or_else(|| {
        v.get("tasks")
            .and_then(|t| t.get(0))
            .and_then(|t| t.pointer("/counts/limit_waits"))
    });
    found.and_then(|w| w.as_u64()).unwrap_or(0)
}

fn task_behaviour(remote: &Remote) {
    let p = remote.provider;
    let (a, b) = (Client::new(), Client::new());
    for c in [&a, &b] {
        connect(c, remote, "r");
        add_task(c, "t", "r", "tasks", &[], "");
    }

    // A dry run says what it would send and sends nothing.
    a.write("stays.txt", b"so the folder is never empty");
    a.write("notes.txt", b"first");
    let dry = ok(&a, p, &["run", "t", "--dry-run"]);
    assert!(dry.contains("notes.txt"), "{p}: dry run: {dry}");
    ok(&b, p, &["run", "t"]);
    assert!(tree(&b.root).is_empty(), "{p}: the dry run sent something");
    ok(&a, p, &["run", "t"]);
    ok(&b, p, &["run", "t"]);
    assert_eq!(tree(&b.root), tree(&a.root), "{p}: first sync");

    // Both edit: B's local edit stays, A's comes back as `notes_pc_DATE_Conflict.txt`.
    b.write("notes.txt", b"edit on b");
    a.write("notes.txt", b"edit on a, longer");
    ok(&a, p, &["run", "t"]);
    let out = ok(&b, p, &["run", "t"]);
    assert!(out.contains("1 conflicts"), "{p}: {out}");
    ok(&b, p, &["run", "t"]);
    ok(&a, p, &["run", "t"]);
    for c in [&a, &b] {
        let seen = starting(c, "notes");
        assert_eq!(seen.len(), 2, "{p}: {seen:?}");
        assert_eq!(seen[0], ("notes.txt".into(), b"edit on b".to_vec()), "{p}");
        assert!(
            seen[1].0.starts_with("notes_pc_") && seen[1].0.ends_with("_Conflict.txt"),
            "{p}: {seen:?}"
        );
        assert_eq!(seen[1].1, b"edit on a, longer", "{p}");
    }

    // An upload limit holds the transfers back (100 KB/s against 300 KB).
    ok(&a, p, &["task", "set", "t", "--up-limit", "100"]);
    let big = noise(3, 300_000);
    a.write("big.bin", &big);
    let v = run_json(&a, p, "t");
    assert!(
        limit_waits(&v) > 0,
        "{p}: the upload limit was not at work: {v}"
    );
    ok(&a, p, &["task", "set", "t", "--up-limit", "0"]);
    ok(&b, p, &["run", "t"]);
    assert_eq!(std::fs::read(b.path("big.bin")).ok(), Some(big), "{p}");
    let v = run_json(&a, p, "t");
    assert_eq!(limit_waits(&v), 0, "{p}: no limit, no waits: {v}");

    // `--keep-versions 2`: three replacements keep the last two.
    ok(&a, p, &["task", "set", "t", "--keep-versions", "2"]);
    for (i, text) in ["v1", "v2 ", "v3  ", "v4   "].iter().enumerate() {
        a.write("doc.txt", text.as_bytes());
        ok(&a, &format!("{p}: version {i}"), &["run", "t"]);
    }
    let doc = a.path("doc.txt");
    let listed = ok(&a, p, &["versions", "t", doc.to_str().expect("utf-8")]);
    // `version replaced size` rows: the kept ones are numbered, the oldest (v1) pruned.
    let kept: Vec<&str> = listed
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<u32>().is_ok())
        })
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(
        kept,
        vec!["3", "4"],
        "{p}: two kept versions, v2 and v3: {listed}"
    );

    // An encrypted task on its own path: B reads what A wrote; the service holds nothing
    // plain where its files can be seen.
    let password = "correct horse battery\n";
    let (a, b) = (Client::new(), Client::new());
    for c in [&a, &b] {
        connect(c, remote, "r");
        add_task(c, "e", "r", "vault", &["--encrypt"], password);
    }
    a.write("private/plans.txt", b"the secret plan");
    ok(&a, p, &["run", "e"]);
    ok(&b, p, &["run", "e"]);
    assert_eq!(
        std::fs::read(b.path("private/plans.txt")).ok().as_deref(),
        Some(&b"the secret plan"[..]),
        "{p}: encrypted round trip"
    );
    if let Some(share) = &remote.share {
        let stored = tree(&share.join("vault"));
        assert!(!stored.is_empty(), "{p}: nothing stored under vault");
        for (path, data) in stored {
            assert!(!path.contains("plans"), "{p}: {path} is a plain name");
            assert!(
                !data.windows(15).any(|w| w == b"the secret plan"),
                "{p}: {path} holds plain text"
            );
        }
    }
}

#[test]
fn task_behaviour_on_s3() {
    task_behaviour(&cloud_remotes::start("s3"));
}

#[test]
fn task_behaviour_on_azure() {
    task_behaviour(&cloud_remotes::start("azblob"));
}

#[test]
fn task_behaviour_on_gcs() {
    task_behaviour(&cloud_remotes::start("gcs"));
}

#[test]
fn task_behaviour_on_webdav() {
    task_behaviour(&cloud_remotes::start("webdav"));
}

#[test]
fn task_behaviour_on_swift() {
    task_behaviour(&cloud_remotes::start("swift"));
}

#[test]
fn task_behaviour_on_sftp() {
    task_behaviour(&cloud_remotes::start("sftp"));
}

#[test]
fn task_behaviour_on_ftp() {
    task_behaviour(&cloud_remotes::start("ftp"));
}

#[test]
fn task_behaviour_on_a_mounted_folder() {
    task_behaviour(&cloud_remotes::start("fs"));
}

/// An upload whose answers were lost leaves its temporary on the WebDAV server; the next pass
/// of the same task removes it, and leaves alone what is not its own: another computer's
/// temporary (maybe an upload in flight) and a file of another name in the staging folder.
#[cfg(feature = "test-hooks")]
#[test]
fn the_next_pass_removes_the_temporaries_an_interrupted_webdav_upload_left() {
    let remote = cloud_remotes::start("webdav");
    let share = remote.share.clone().expect("a WebDAV share");
    let c = Client::new();
    connect(&c, &remote, "r");
    add_task(&c, "t", "r", "tasks", &[], "");
    c.write("stays.txt", b"so the folder is never empty");
    ok(&c, "first pass", &["run", "t"]);
    let staging = share.join("tasks/.cairn/tmp");
    std::fs::create_dir_all(&staging).expect("staging folder");
    let theirs = "0123456789abcdef-18f3a9c0d1e2f3a4-1c2-0";
    std::fs::write(staging.join(theirs), b"another computer's upload").expect("write");
    std::fs::write(staging.join("notes.txt"), b"not a temporary").expect("write");

    // Every PUT reaches the server and its answer is lost: the pass fails, the temporary stays.
    c.write("doc.txt", b"sent, answer lost");
    let out = crate::harness::run(
        c.cmd()
            .env(
                "CAIRN_TEST_CLOUD_FAULTS",
                "seed=3,rate=100,kinds=lost,only=PUT",
            )
            .args(["run", "t"]),
        None,
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "every upload's answer was lost: {said}"
    );
    assert!(said.contains("doc.txt"), "the error names the file: {said}");
    let left = cloud_remotes::staged(&share, "tasks");
    let ours: Vec<&String> = left
        .iter()
        .filter(|n| *n != theirs && *n != "notes.txt")
        .collect();
    assert!(!ours.is_empty(), "no temporary was left: {left:?}");

    ok(&c, "clean pass", &["run", "t"]);
    let mut left = cloud_remotes::staged(&share, "tasks");
    left.sort();
    assert_eq!(left, vec![theirs.to_string(), "notes.txt".to_string()]);
    assert_eq!(
        std::fs::read(share.join("tasks/doc.txt")).ok().as_deref(),
        Some(&b"sent, answer lost"[..])
    );
}

/// A stand-in for OneDrive's token endpoint on 127.0.0.1: answers every request with a new
/// refresh token (`rotated-N`) and keeps the request bodies.
fn token_stand_in() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/token", listener.local_addr().expect("addr"));
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let n = {
                let mut all = seen.lock().expect("lock");
                all.push(String::from_utf8_lossy(&body).into_owned());
                all.len()
            };
            let answer = format!(
                r#"{{"access_token":"access-{n}","refresh_token":"rotated-{n}","token_type":"Bearer","expires_in":3600}}"#
            );
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, bodies)
}

/// OneDrive gives a new refresh token with every exchange, and the one saved at `cloud
/// connect` expires 90 days after it was issued: whatever lists the remote of a task (its
/// runs, and `cloud add`, which looks at the path first) exchanges the saved token and saves
/// the new one, so a connection in use never needs `cloud edit`. OneDrive itself is out of
/// reach here, so each command fails after the exchange; only the token's way is checked: each
/// exchange sends the token the one before saved.
#[test]
fn a_onedrive_refresh_token_is_renewed_and_saved_when_the_remote_is_listed() {
    let (url, bodies) = token_stand_in();
    let c = Client::new();
    let out = c.cairn_stdin(
        &[
            "cloud",
            "connect",
            "od",
            "--provider",
            "onedrive",
            "--option",
            "client_id=app-id",
            "--secret",
            "client_secret",
            "--secret",
            "refresh_token",
        ],
        "app-secret\nsaved-at-connect\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = || -> String {
        let creds: serde_json::Value = serde_json::from_slice(
            &std::fs::read(c.home.join("credentials.json")).expect("credentials"),
        )
        .expect("json");
        creds["clouds"]["od"]["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let root = c.root.to_str().expect("utf-8").to_string();
    for (n, carried) in [(1, "saved-at-connect"), (2, "rotated-1")] {
        let out = c
            .cmd()
            .args(["cloud", "add", "t", "--connection", "od", "--local", &root])
            .args(["--remote", "docs"])
            .env("CAIRN_TEST_ONEDRIVE_TOKEN_URL", &url)
            .output()
            .expect("cloud add");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("stopped after the token exchange"),
            "{said}"
        );
        let seen = bodies.lock().expect("lock").clone();
        assert_eq!(seen.len(), n, "one exchange a command: {seen:?}");
        let body = &seen[n - 1];
        for part in [
            format!("refresh_token={carried}"),
            "client_id=app-id".to_string(),
            "client_secret=app-secret".to_string(),
        ] {
            assert!(body.contains(&part), "exchange {n} sends {part}: {body}");
        }
        assert_eq!(
            saved(),
            format!("rotated-{n}"),
            "exchange {n}'s token saved"
        );
    }
    // The other secrets stay as they were.
    let creds = std::fs::read_to_string(c.home.join("credentials.json")).expect("credentials");
    assert!(creds.contains("app-secret"), "{creds}");
}
