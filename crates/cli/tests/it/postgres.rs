//! Scale-out: two server instances on one PostgreSQL database and one chunk store serve the
//! same users and folders; a commit through one wakes the followers of the other.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::drive::computer;
use crate::harness::{postgres as pg, wait_until, Server, BIN};

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two instances on database `db` of the shared cluster and one chunk folder, serving one
/// certificate (instance two has a copy of instance one's `tls/`, as behind a load balancer),
/// with alice granted `backup`; `None` when PostgreSQL is missing outside CI.
pub(crate) fn two_instances(db: &str, top: &Path) -> Option<(Server, Server)> {
    let cluster = pg::shared(db)?;
    let url = cluster.create_database(db).expect("database");
    let store = format!("file://{}", top.join("chunks").display());
    let place = vec![
        ("CAIRN_METADATA".to_string(), url.clone()),
        ("CAIRN_STORE".to_string(), store),
    ];
    let (one, two): (PathBuf, PathBuf) = (top.join("one"), top.join("two"));
    let first = Server::instance(one.clone(), place.clone());
    first.admin(
        &["user", "add", "alice", "--password-stdin"],
        Some("alice-pw"),
    );
    first.admin(&["folder", "add", "backup"], None);
    first.admin(
        &["folder", "grant", "backup", "alice", "--access", "rw"],
        None,
    );
    copy_dir(&one.join("tls"), &two.join("tls"));
    let second = Server::instance(two, place);
    assert_eq!(first.fingerprint(), second.fingerprint());
    Some((first, second))
}

/// Copies the files of folder `from` into a new folder `to`, keeping their permissions.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read tls/") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// `cairn run d --once` on `c`; a failure shows both servers' logs, where a database error is.
fn sync(c: &crate::harness::Client, servers: [&Server; 2]) {
    let out = c.cairn(&["run", "d", "--once"]);
    if !out.status.success() {
        let logs: Vec<String> = servers
            .iter()
            .map(|s| s.log.lock().map(|l| l.join("\n")).unwrap_or_default())
            .collect();
        panic!(
            "run failed: {}\n--- instance one:\n{}\n--- instance two:\n{}",
            String::from_utf8_lossy(&out.stderr),
            logs[0],
            logs[1]
        );
    }
}

#[test]
fn two_instances_on_one_database_serve_the_same_folders_and_wake_each_others_followers() {
    let top = tempfile::tempdir().expect("temp dir");
    let Some((one, two)) = two_instances("it_two_instances", top.path()) else {
        return;
    };
    // A computer on each instance, one drive task over the same folder.
    let a = computer(&one, "pc-a", &[]);
    let b = computer(&two, "pc-b", &[]);
    a.write("report.txt", b"written through instance one");
    sync(&a, [&one, &two]);
    sync(&b, [&one, &two]);
    assert_eq!(
        std::fs::read(b.path("report.txt")).ok().as_deref(),
        Some(&b"written through instance one"[..])
    );

    // b's agent follows the folder through instance two; a commit through instance one
    // reaches it without any pass of b's being asked for.
    let _agent = Agent(
        b.cmd()
            .args(["agent", "--rescan", "3600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    );
    std::thread::sleep(Duration::from_secs(2));
    a.write("later.txt", b"a later edit");
    sync(&a, [&one, &two]);
    wait_until(60, "instance two's follower to fetch", || {
        std::fs::read(b.path("later.txt")).ok().as_deref() == Some(&b"a later edit"[..])
    });

    // gc through either data folder (one run at a time, whichever instance) keeps every
    // retained version, and the store checks clean after it.
    two.admin(&["gc"], None);
    let out = two.admin(&["check", "--read-data"], None);
    assert!(!out.contains("error"), "{out}");
    // A data folder of the cluster is refused without its database.
    let bare = Command::new(BIN)
        .args(["server", "user", "list", "--data"])
        .arg(top.path().join("one"))
        .output()
        .expect("cairn");
    assert!(!bare.status.success());
    let err = String::from_utf8_lossy(&bare.stderr);
    assert!(err.contains("is in PostgreSQL"), "{err}");
}

/// Three computers each pass through an instance picked at random (as a load balancer
/// would), with restarts of either: they converge and no synced edit is lost.
#[test]
fn three_computers_switching_instances_between_passes_converge_and_lose_no_edit() {
    let top = tempfile::tempdir().expect("temp dir");
    let Some((one, two)) = two_instances("it_switching", top.path()) else {
        return;
    };
    crate::drive::random_edits_converge(&mut [one, two]);
}

/// A login through the API of `server`; its status.
fn login_status(server: &Server, password: &str) -> reqwest::StatusCode {
    crate::web::http()
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": "alice", "password": password}))
        .send()
        .expect("login")
        .status()
}

/// Failed logins through one instance throttle the name on the other: guesses spread over
/// the instances behind a load balancer meet one count.
#[test]
fn failed_logins_through_one_instance_throttle_the_name_on_the_other() {
    let top = tempfile::tempdir().expect("temp dir");
    let Some((one, two)) = two_instances("it_shared_throttle", top.path()) else {
        return;
    };
    assert_eq!(login_status(&two, "alice-pw"), reqwest::StatusCode::OK);
    // Six counted failures of the name: the next attempt waits the longest delay (8 s).
    for _ in 0..6 {
        let r = crate::web::past_the_throttle(|| {
            crate::web::http()
                .post(format!("{}/api/v1/login", one.url()))
                .json(&serde_json::json!({"user": "alice", "password": "a-wrong-guess"}))
                .send()
                .expect("login")
        });
        assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    // Instance two has seen no failure of its own, yet refuses before any password work.
    assert_eq!(
        login_status(&two, "alice-pw"),
        reqwest::StatusCode::TOO_MANY_REQUESTS
    );
}

/// A login of alice from `device` through `server`; the token.
fn token(server: &Server, device: &str) -> String {
    let r: cairn_protocol::LoginResponse = crate::harness::http()
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": "alice", "password": "alice-pw", "device": device}))
        .send()
        .expect("login")
        .json()
        .expect("login answer");
    r.token
}

/// One commit of a new small file with its content inline: the sequence number it was
/// given, or why the instance did not acknowledge it (an error status, or gone).
fn commit_one(url: &str, token: &str, path: &str) -> Result<i64, String> {
    let change = serde_json::json!({
        "path": path,
        "base": null,
        "entry": {"kind": "file", "size": path.len(), "mtime_ns": 1, "mode": 420, "hash": null},
        "inline": {"text": path},
    });
    let r = crate::harness::http()
        .post(format!("{url}/api/v1/folders/backup/commit"))
        .header(cairn_protocol::TOKEN_HEADER, token)
        .json(&serde_json::json!({ "changes": [change] }))
        .send()
        .map_err(|e| format!("{path}: {e}"))?;
    let status = r.status();
    let text = r.text().map_err(|e| format!("{path}: {e}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{path}: {status} {text}"));
    }
    let body: cairn_protocol::CommitResponse =
        serde_json::from_str(&text).map_err(|e| format!("{path}: {e}: {text}"))?;
    match body.results.first() {
        Some(cairn_protocol::ChangeResult::Accepted { seq }) => Ok(seq.0),
        other => Err(format!("{path}: {other:?}")),
    }
}

/// Every version of folder `backup` through `server`'s journal: (path, seq).
fn journal(server: &Server, token: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |(_, s)| *s);
        let r: cairn_protocol::JournalResponse = crate::harness::http()
            .get(format!("{}/api/v1/folders/backup/journal", server.url()))
            .query(&[("after", after.to_string()), ("limit", "1000".into())])
            .header(cairn_protocol::TOKEN_HEADER, token)
            .send()
            .expect("journal")
            .json()
            .expect("journal answer");
        if r.changes.is_empty() {
            return out;
        }
        out.extend(r.changes.into_iter().map(|v| (v.path.to_string(), v.seq.0)));
    }
}

/// Commits racing into one folder through two instances each get a sequence number of their
/// own (the folder's row lock orders them; without it two would read the same head and one
/// would fail on the unique index), and killing one instance while they race loses none
/// that it acknowledged.
#[test]
fn racing_commits_through_two_instances_never_share_a_sequence_number_nor_vanish_on_a_kill() {
    let top = tempfile::tempdir().expect("temp dir");
    let Some((mut one, two)) = two_instances("it_racing_commits", top.path()) else {
        return;
    };
    let urls = [one.url(), two.url()];
    let tokens = [token(&one, "racer-one"), token(&two, "racer-two")];
    let (stop, killed) = (AtomicBool::new(false), AtomicBool::new(false));
    let (acked, failed): (Vec<(String, i64)>, Vec<String>) = std::thread::scope(|s| {
        let racers: Vec<_> = (0..6)
            .map(|t| {
                let (url, token) = (&urls[t % 2], &tokens[t % 2]);
                let (stop, killed) = (&stop, &killed);
                s.spawn(move || {
                    let (mut mine, mut failed) = (Vec::new(), Vec::new());
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let path = format!("racer{t}/c{n}.txt");
                        match commit_one(url, token, &path) {
                            Ok(seq) => mine.push((path, seq)),
                            // Instance one is gone: this racer is done.
                            Err(_) if t % 2 == 0 && killed.load(Ordering::Relaxed) => break,
                            Err(e) => failed.push(e),
                        }
                    }
                    (mine, failed)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        // SIGKILL mid-race: whatever instance one acknowledged is already in the database.
        killed.store(true, Ordering::Relaxed);
        one.kill();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        let mut all = (Vec::new(), Vec::new());
        for r in racers {
            let (mine, failed) = r.join().expect("racer");
            all.0.extend(mine);
            all.1.extend(failed);
        }
        all
    });
    // Without the lock, two commits read one head and the second fails on the unique index.
    assert!(failed.is_empty(), "commits refused: {failed:?}");
    let through_one = acked
        .iter()
        .filter(|(p, _)| p.starts_with("racer0") || p.starts_with("racer2"))
        .count();
    assert!(through_one > 0 && through_one < acked.len(), "{acked:?}");

    let mut seqs: Vec<i64> = acked.iter().map(|(_, s)| *s).collect();
    seqs.sort_unstable();
    let before = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), before, "a sequence number handed out twice");
    // Every acknowledged commit is in the journal as instance two reads it, at its number.
    let journal = journal(&two, &tokens[1]);
    let listed: std::collections::HashMap<&str, i64> =
        journal.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    for (path, seq) in &acked {
        assert_eq!(listed.get(path.as_str()), Some(seq), "{path} lost");
    }
}
