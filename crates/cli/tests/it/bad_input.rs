//! Bad input gets a clear error and nothing is lost.

use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{http, noise, sent_bytes, wait_until, Client, Server};

fn token(server: &Server, user: &str, password: &str) -> String {
    let r = http()
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": user, "password": password}))
        .send()
        .expect("login");
    assert!(r.status().is_success(), "login failed: {}", r.status());
    r.json::<serde_json::Value>().expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string()
}

#[test]
fn a_missing_or_emptied_source_fails_and_deletes_nothing() {
    let server = Server::start();
    let c = Client::new();
    c.write("a.txt", b"a");
    c.write("b/c.txt", b"c");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    let moved = c.tmp().join("elsewhere");
    std::fs::rename(&c.root, &moved).expect("move away");
    let err = c.fails(&["run", "t", "--once"]);
    assert!(err.contains("missing or unmounted"), "{err}");
    assert!(err.contains("nothing was changed on the server"), "{err}");
    // An unmounted disk often leaves an empty mount point behind.
    std::fs::create_dir_all(&c.root).expect("mkdir");
    let err = c.fails(&["run", "t", "--once"]);
    assert!(
        err.contains("is empty") && err.contains("Nothing was deleted"),
        "{err}"
    );
    assert_eq!(c.ls_paths(), vec!["a.txt", "b", "b/c.txt"]);
}

#[test]
fn the_api_refuses_escaping_paths_and_nul_bytes() {
    let server = Server::start();
    let tok = token(&server, "alice", "alice-pw");
    let http = http();
    for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "a\0b"] {
        let r = http
            .get(format!("{}/api/v1/folders/backup/versions", server.url()))
            .query(&[("path", bad)])
            .bearer_auth(&tok)
            .send()
            .expect("request");
        assert_eq!(r.status().as_u16(), 400, "{bad:?}");
        let body: serde_json::Value = r.json().expect("json error body");
        assert!(
            body["error"]
                .as_str()
                .expect("error")
                .contains("invalid path"),
            "{body}"
        );
        let commit = serde_json::json!({"changes": [{"path": bad, "base": null,
            "entry": {"kind": "dir", "size": 0, "mtime_ns": 0, "mode": 493, "hash": null}}]});
        let r = http
            .post(format!("{}/api/v1/folders/backup/commit", server.url()))
            .bearer_auth(&tok)
            .json(&commit)
            .send()
            .expect("request");
        // A commit is parsed change by change: this one is refused, naming the path.
        assert_eq!(r.status().as_u16(), 200, "{bad:?}");
        let body: serde_json::Value = r.json().expect("json");
        assert_eq!(body["results"][0]["status"], "refused", "{bad:?}: {body}");
        assert!(
            body["results"][0]["reason"]
                .as_str()
                .is_some_and(|m| m.contains("invalid path")),
            "{body}"
        );
    }
    let r = http
        .get(format!(
            "{}/api/v1/folders/backup/chunks/..%2F..%2Fmeta.sqlite",
            server.url()
        ))
        .bearer_auth(&tok)
        .send()
        .expect("request");
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .get(format!("{}/api/v1/folders/..%2Fx/tree", server.url()))
        .bearer_auth(&tok)
        .send()
        .expect("request");
    assert_eq!(r.status().as_u16(), 400);
}

#[test]
fn a_chunk_whose_bytes_do_not_match_its_id_is_refused() {
    let server = Server::start();
    let tok = token(&server, "alice", "alice-pw");
    let mut body = Vec::new();
    body.extend_from_slice(&[7u8; 32]);
    body.extend_from_slice(&5u32.to_be_bytes());
    body.extend_from_slice(b"hello");
    let (status, said) = post_chunks(&server, &tok, body);
    assert_eq!(status, 400);
    assert!(said.contains("do not match its id"), "{said}");
}

/// `POST /chunks` of `body` to folder `backup`: the answer's status and text.
fn post_chunks(server: &Server, tok: &str, body: Vec<u8>) -> (u16, String) {
    let r = http()
        .post(format!("{}/api/v1/folders/backup/chunks", server.url()))
        .bearer_auth(tok)
        .body(body)
        .send()
        .expect("upload");
    (r.status().as_u16(), r.text().expect("text"))
}

/// The server reads an upload body as it arrives: one over 64 MiB, or with more chunks than a
/// request may carry, is refused with 413 part way, and nothing of it is stored; a body cut
/// inside a frame is a 400 naming the cut chunk.
#[test]
fn upload_bodies_over_their_bounds_or_cut_are_refused_and_store_nothing() {
    let server = Server::start();
    let tok = token(&server, "alice", "alice-pw");
    let send = |body: Vec<u8>| post_chunks(&server, &tok, body);
    let frame = |data: &[u8]| {
        let mut f = cairn_model::ChunkId::of(data).as_bytes().to_vec();
        f.extend_from_slice(&(data.len() as u32).to_be_bytes());
        f.extend_from_slice(data);
        f
    };
    // Five frames of 14 MiB: every one valid, the whole over the bound.
    let big: Vec<u8> = (0..5)
        .flat_map(|i| frame(&noise(40 + i, 14 << 20)))
        .collect();
    let (status, said) = send(big);
    assert_eq!(status, 413, "{said}");
    assert!(said.contains("upload body of over"), "{said}");
    // 10,001 empty chunks: small, but more than a request may register.
    let many: Vec<u8> = (0..10_001).flat_map(|_| frame(b"")).collect();
    let (status, said) = send(many);
    assert_eq!(status, 413, "{said}");
    assert!(said.contains("at most 10000 per request"), "{said}");
    let mut cut = frame(b"a chunk cut short");
    cut.truncate(cut.len() - 3);
    let (status, said) = send(cut);
    assert_eq!(status, 400, "{said}");
    assert!(said.contains("is truncated"), "{said}");
    let stored = walkdir_files(&server.data.join("chunks"));
    assert_eq!(stored, 0, "objects stored from refused uploads");
}

/// Files under `dir`, however deep (none when it does not exist).
fn walkdir_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walkdir_files(&p)
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn a_file_rewritten_while_it_is_read_is_not_committed() {
    let server = Server::start();
    let c = Client::new();
    let path = c.path("growing.log");
    c.write("growing.log", &noise(9, 64 * 1024 * 1024));
    c.write("other.txt", b"fine");
    c.backup_task(&server, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let path = path.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                f.seek(SeekFrom::Start((i * 7919) % (60 * 1024 * 1024)))
                    .expect("seek");
                f.write_all(&i.to_le_bytes()).expect("write");
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let err = c.fails(&["run", "t", "--once"]);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    // Caught when the file is opened (it changed since the listing) or at the end of the read.
    assert!(err.contains("it will be read again"), "{err}");
    assert_eq!(
        c.ls_paths(),
        vec!["other.txt"],
        "nothing half-old half-new was committed"
    );
    c.ok(&["run", "t", "--once"]);
    assert_eq!(c.ls_paths(), vec!["growing.log", "other.txt"]);
    let restored = c.tmp().join("restored");
    c.ok(&[
        "download",
        "t",
        path.to_str().expect("utf-8"),
        "--version",
        &latest_version(&c, "growing.log"),
        "--to",
        restored.to_str().expect("utf-8"),
    ]);
    assert!(std::fs::read(&restored).expect("read") == std::fs::read(&path).expect("read"));
}

fn latest_version(c: &Client, rel: &str) -> String {
    let out = c.ok(&["versions", "t", c.path(rel).to_str().expect("utf-8")]);
    out.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("a version")
        .to_string()
}

/// True when process `pid` holds `path` open.
fn holds_open(pid: u32, path: &std::path::Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path))
        })
        .unwrap_or(false)
}

#[test]
fn a_file_deleted_while_it_is_read_is_not_committed() {
    let server = Server::start();
    let c = Client::new();
    let path = c.path("doomed.bin");
    c.write("doomed.bin", &noise(11, 96 * 1024 * 1024));
    c.backup_task(&server, &[]);
    let child = c
        .cmd()
        .args(["run", "t", "--once"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let pid = child.id();
    wait_until(60, "the client to open the file", || holds_open(pid, &path));
    std::fs::remove_file(&path).expect("delete during upload");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "a vanished file is not an error: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        c.ls_paths().is_empty(),
        "the vanished file was not committed"
    );
}

#[test]
fn an_interrupted_run_resumes_without_resending() {
    let server = Server::start();
    let c = Client::new();
    let size = 128 * 1024 * 1024;
    c.write("big.bin", &noise(12, size));
    c.backup_task(&server, &[]);
    let mut child = c.cmd().args(["run", "t", "--once"]).spawn().expect("run");
    let chunks = server.data.join("chunks/chunks");
    wait_until(120, "some chunks to arrive", || count_files(&chunks) >= 40);
    child.kill().expect("kill client");
    let _ = child.wait();
    let out = c.ok(&["run", "t", "--once"]);
    let sent = sent_bytes(&out);
    assert!(sent < size as u64, "re-run sent {sent} of {size} bytes");
    assert_eq!(c.ls_paths(), vec!["big.bin"]);
}

fn count_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            n += count_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

#[test]
#[cfg(feature = "test-hooks")]
fn a_server_killed_in_the_middle_of_a_commit_keeps_all_or_nothing() {
    let mut server = Server::start_with(&[("CAIRN_TEST_COMMIT_PAUSE_MS", "10")]);
    let c = Client::new();
    for i in 0..400 {
        c.write(&format!("f/{i:03}.txt"), format!("file {i}").as_bytes());
    }
    c.backup_task(&server, &[]);
    let mut child = c
        .cmd()
        .args(["run", "t", "--once"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run");
    wait_until(60, "a commit of the 400 files to start", || {
        server.log_contains("changes=400")
    });
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    let status = child.wait().expect("client");
    assert!(!status.success(), "the client saw the server die");
    server.restart();
    let files = c
        .ls_paths()
        .into_iter()
        .filter(|p| p.starts_with("f/"))
        .count();
    assert_eq!(files, 0, "the interrupted commit left nothing half-applied");
    assert!(server.admin(&["check"], None).contains("no problems"));
    c.ok(&["run", "t", "--once"]);
    assert_eq!(
        c.ls_paths()
            .into_iter()
            .filter(|p| p.starts_with("f/"))
            .count(),
        400
    );
}

#[test]
fn a_full_server_disk_is_a_clear_error_and_loses_nothing() {
    let mut server = Server::start();
    let c = Client::new();
    c.write("first.txt", b"safe");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    // Move the data folder onto a 24 MiB tmpfs and fill it with a larger file.
    server.kill();
    let mount = c.tmp().join("small-disk");
    std::fs::create_dir_all(&mount).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mount)
        .status()
        .expect("mount");
    assert!(
        mounted.success(),
        "this test needs root to mount a small tmpfs"
    );
    let _unmount = Unmount(mount.clone());
    let data = mount.join("data");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&server.data)
        .arg(&data)
        .status()
        .expect("cp")
        .success());
    let original = std::mem::replace(&mut server.data, data.clone());
    server.restart();
    c.write("huge.bin", &noise(13, 40 * 1024 * 1024));
    let err = c.fails(&["run", "t", "--once"]);
    assert!(err.contains("storage is full"), "{err}");
    let listed = c.ls_paths();
    assert!(
        listed.contains(&"first.txt".to_string()) && !listed.contains(&"huge.bin".to_string()),
        "{listed:?}"
    );
    assert!(server.admin(&["check"], None).contains("no problems"));
    // Once the disk has room again, the same run completes.
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=160m"])
        .arg(&mount)
        .status()
        .expect("remount");
    assert!(grown.success());
    c.ok(&["run", "t", "--once"]);
    assert!(c.ls_paths().contains(&"huge.bin".to_string()));
    assert!(server
        .admin(&["check", "--read-data"], None)
        .contains("no problems"));
    // gc frees space on a disk filled to the last byte: huge.bin's content becomes garbage...
    server.admin(&["folder", "set", "backup", "--keep-versions", "1"], None);
    let kept = c.tmp().join("huge.bin");
    std::fs::rename(c.path("huge.bin"), &kept).expect("move aside");
    c.ok(&["run", "t", "--once"]);
    server.admin(&["gc"], None);
    // ...then the disk fills up completely...
    let filled = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M"])
        .arg(format!("of={}", mount.join("filler").display()))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("dd");
    assert!(!filled.success(), "dd stops at a full disk");
    let free = |p: &std::path::Path| {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(p)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            .expect("df figure")
    };
    assert!(free(&mount) < 1024 * 1024, "the disk is full");
    // ...and gc still runs and frees it.
    let said = server.admin(&["gc"], None);
    assert!(free(&mount) > 30 * 1024 * 1024, "gc freed space: {said}");
    std::fs::rename(&kept, c.path("huge.bin")).expect("move back");
    server.kill();
    server.data = original;
    assert!(
        std::fs::read(c.path("huge.bin")).is_ok_and(|d| d.len() == 40 * 1024 * 1024),
        "the local file is intact"
    );
}

#[test]
fn wrong_passwords_are_refused_clearly() {
    let server = Server::start();
    let c = Client::new();
    let fp = server.fingerprint();
    let out = c.cairn_stdin(
        &[
            "connect",
            &server.url(),
            "--user",
            "alice",
            "--password-stdin",
            "--fingerprint",
            &fp,
        ],
        "nope",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong user name or password"));
    assert!(
        !c.home.join("config.json").exists(),
        "a failed login saves nothing"
    );
    c.write("a", b"a");
    c.backup_task(&server, &[]);
    server.admin(
        &["user", "passwd", "alice", "--password-stdin"],
        Some("changed-pw"),
    );
    let err = c.fails(&["run", "t", "--once"]);
    assert!(err.contains("wrong user name or password"), "{err}");
}

#[test]
fn expired_and_forged_tokens_are_refused() {
    let mut server = Server::start();
    server.kill();
    server.args = vec!["--token-ttl".into(), "1".into()];
    server.spawn("127.0.0.1:0");
    let tok = token(&server, "alice", "alice-pw");
    let folders = format!("{}/api/v1/folders", server.url());
    assert!(http()
        .get(&folders)
        .bearer_auth(&tok)
        .send()
        .expect("req")
        .status()
        .is_success());
    std::thread::sleep(Duration::from_millis(1500));
    let r = http().get(&folders).bearer_auth(&tok).send().expect("req");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().expect("body").contains("invalid or expired"));
    let r = http()
        .get(&folders)
        .bearer_auth("f".repeat(64))
        .send()
        .expect("req");
    assert_eq!(r.status().as_u16(), 401);
    let r = http().get(&folders).send().expect("req");
    assert_eq!(r.status().as_u16(), 401);
}

#[test]
fn a_read_only_user_cannot_write() {
    let server = Server::start();
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    server.admin(
        &["folder", "grant", "backup", "bob", "--access", "ro"],
        None,
    );
    let c = Client::new();
    c.connect(&server, "bob", "bob-pw");
    let root = c.root.to_str().expect("utf-8");
    let err = c.fails(&[
        "backup",
        "add",
        "t",
        "--local",
        root,
        "--connection",
        "srv",
        "--folder",
        "backup",
    ]);
    assert!(
        err.contains("read-only") && err.contains("must be writable"),
        "{err}"
    );
    let tok = token(&server, "bob", "bob-pw");
    let commit = serde_json::json!({"changes": [{"path": "x", "base": null,
        "entry": {"kind": "dir", "size": 0, "mtime_ns": 0, "mode": 493, "hash": null}}]});
    let r = http()
        .post(format!("{}/api/v1/folders/backup/commit", server.url()))
        .bearer_auth(&tok)
        .json(&commit)
        .send()
        .expect("req");
    assert_eq!(r.status().as_u16(), 403);
    assert!(r
        .text()
        .expect("body")
        .contains("may only read folder backup"));
    // A folder not shared with the user looks the same as one that does not exist.
    server.admin(&["folder", "add", "secret"], None);
    let r = http()
        .get(format!("{}/api/v1/folders/secret/tree", server.url()))
        .bearer_auth(&tok)
        .send()
        .expect("req");
    assert_eq!(r.status().as_u16(), 404);
}

#[test]
fn a_disabled_user_cannot_log_in_and_loses_its_sessions() {
    let server = Server::start();
    let tok = token(&server, "alice", "alice-pw");
    server.admin(&["user", "disable", "alice"], None);
    let r = http()
        .get(format!("{}/api/v1/folders", server.url()))
        .bearer_auth(&tok)
        .send()
        .expect("req");
    assert_eq!(r.status().as_u16(), 401);
    let r = http()
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": "alice", "password": "alice-pw"}))
        .send()
        .expect("login");
    assert_eq!(r.status().as_u16(), 403);
    assert!(server
        .admin(&["user", "list"], None)
        .contains("alice\tdisabled"));
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_dropped_connection_is_retried_and_the_run_completes() {
    let mut server = Server::start();
    let c = Client::new();
    let data = noise(31, 96 * 1024 * 1024);
    c.write("big.bin", &data);
    c.backup_task(&server, &[]);
    let child = c
        .cmd()
        .args(["run", "t", "--once"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let chunks = server.data.join("chunks/chunks");
    wait_until(120, "some chunks to arrive", || count_files(&chunks) >= 10);
    server.restart();
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "the run survived the restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.ls_paths(), vec!["big.bin"]);
    assert!(server
        .admin(&["check", "--read-data"], None)
        .contains("no problems"));
    let back = c.tmp().join("back.bin");
    c.ok(&[
        "download",
        "t",
        c.path("big.bin").to_str().expect("utf-8"),
        "--version",
        &latest_version(&c, "big.bin"),
        "--to",
        back.to_str().expect("utf-8"),
    ]);
    assert!(std::fs::read(&back).expect("read") == data);
}
