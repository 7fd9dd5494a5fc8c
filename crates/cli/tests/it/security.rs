//! Security: what a hostile co-member of a shared folder, another user of the server, or a
//! stranger can make cairn do, tried through the real binary and the raw API.

use std::os::unix::fs::PermissionsExt;

use cairn_model::{ChunkId, ContentHash};
use serde_json::{json, Value};

use crate::harness::{Client, Server};

/// A logged-in user of the raw API.
struct Api {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Api {
    fn login(server: &Server, user: &str, password: &str) -> Api {
        Self::login_as(server, user, password, json!(null))
    }

    fn login_as(server: &Server, user: &str, password: &str, device: Value) -> Api {
        let http = crate::harness::http();
        let r = http
            .post(format!("{}/api/v1/login", server.url()))
            .json(
                &json!({"user": user, "password": password, "device": device,
                          "computer": format!("{user}-laptop")}),
            )
            .send()
            .expect("login");
        assert!(r.status().is_success(), "login of {user}: {}", r.status());
        let token = r.json::<Value>().expect("json")["token"]
            .as_str()
            .expect("token")
            .to_string();
        Api {
            base: format!("{}/api/v1", server.url()),
            token,
            http,
        }
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .expect("get");
        (r.status().as_u16(), r.bytes().expect("body").to_vec())
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Uploads `data` as one chunk for a commit to `folder`.
    fn upload(&self, folder: &str, data: &[u8]) -> (u16, String) {
        let id = ChunkId::of(data);
        let mut body = id.as_bytes().to_vec();
        body.extend_from_slice(&(data.len() as u32).to_be_bytes());
        body.extend_from_slice(data);
        let r = self
            .http
            .post(format!("{}/folders/{folder}/chunks", self.base))
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .expect("upload");
        (r.status().as_u16(), r.text().unwrap_or_default())
    }

    fn commit(&self, folder: &str, changes: Value) -> Value {
        let (status, body) = self.post(
            &format!("/folders/{folder}/commit"),
            json!({ "changes": changes }),
        );
        assert_eq!(status, 200, "commit to {folder}: {body}");
        body
    }

    /// Uploads `data` and commits it as the file `path` of `folder`.
    fn put_file(&self, folder: &str, path: &str, data: &[u8], mode: u32) -> Value {
        let (status, text) = self.upload(folder, data);
        assert_eq!(status, 200, "upload: {text}");
        self.commit(folder, json!([file(path, data, mode)]))
    }
}

fn file(path: &str, data: &[u8], mode: u32) -> Value {
    json!({"path": path, "base": null,
           "entry": {"kind": "file", "size": data.len(), "mtime_ns": 1_000_000_000,
                     "mode": mode, "hash": ContentHash::of(data).to_hex()},
           "chunks": [{"id": ChunkId::of(data).to_hex(), "len": data.len()}]})
}

fn link(path: &str, target: &str) -> Value {
    json!({"path": path, "base": null,
           "entry": {"kind": "symlink", "size": 0, "mtime_ns": 1_000_000_000, "mode": 0o777,
                     "hash": null, "target": target}})
}

fn accepted(r: &Value, i: usize) -> bool {
    r["results"][i]["status"] == "accepted"
}

fn add_user(server: &Server, name: &str, folder_access: &[(&str, &str)]) {
    server.admin(
        &["user", "add", name, "--password-stdin"],
        Some(&format!("{name}-pw")),
    );
    for (folder, access) in folder_access {
        server.admin(&["folder", "grant", folder, name, "--access", access], None);
    }
}

/// A drive computer of alice over the shared `backup` folder.
fn drive(server: &Server) -> Client {
    crate::drive::computer(server, "pc", &[])
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_hostile_co_member_cannot_make_writes_leave_the_folder() {
    let server = Server::start();
    add_user(&server, "bob", &[("backup", "rw")]);
    let c = drive(&server);
    let outside = c.tmp().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    let bob = Api::login(&server, "bob", "bob-pw");
    // A link to a folder outside, then files "under" it; a setuid file; a file under a file.
    let r = bob.commit(
        "backup",
        json!([
            link("esc", outside.to_str().expect("utf-8")),
            link("up", "../.."),
            {"path": "f/sub", "base": null,
             "entry": {"kind": "dir", "size": 0, "mtime_ns": 1, "mode": 493, "hash": null}}
        ]),
    );
    assert!(accepted(&r, 0) && accepted(&r, 1) && accepted(&r, 2), "{r}");
    for (path, data, mode) in [
        ("esc/pwned", &b"owned"[..], 0o644),
        ("up/pwned2", b"owned too", 0o644),
        ("ok.txt", b"fine", 0o644),
        ("setuid", b"#!/bin/sh", 0o4777),
        ("locked", b"no access", 0o000),
        ("f", b"a file", 0o644),
        ("f/g", b"under a file", 0o644),
    ] {
        let r = bob.put_file("backup", path, data, mode);
        assert!(accepted(&r, 0), "{path}: {r}");
    }

    let out = c.cairn(&["run", "d", "--once"]);
    let said = text(&out);
    assert_eq!(
        std::fs::read_dir(&outside).expect("ls").count(),
        0,
        "nothing lands outside: {said}"
    );
    assert!(
        !c.tmp().join("pwned2").exists() && !c.tmp().parent().expect("tmp").join("pwned2").exists()
    );
    let esc = std::fs::symlink_metadata(c.path("esc")).expect("the link itself is data");
    assert!(esc.file_type().is_symlink());
    assert_eq!(std::fs::read(c.path("ok.txt")).expect("read"), b"fine");
    let mode = |p: &str| {
        std::fs::metadata(c.path(p))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("setuid"), 0o777, "no setuid bit from the server");
    assert_eq!(mode("locked"), 0o600, "the owner can always read and write");
    assert!(c.path("f").is_file());
    for reported in ["esc/pwned", "up/pwned2", "f/g", "f/sub"] {
        assert!(said.contains(reported), "{reported} is reported: {said}");
    }
    // The pass left no temporary behind.
    assert!(
        !c.path(".cairn").exists(),
        "{:?}",
        std::fs::read_dir(c.path(".cairn")).map(|d| d.count())
    );

    // Restoring elsewhere is confined the same way.
    let to = c.tmp().join("restored");
    std::fs::create_dir(&to).expect("mkdir");
    let out = c.cairn(&["restore", "d", "--to", to.to_str().expect("utf-8")]);
    let said = text(&out);
    assert_eq!(
        std::fs::read_dir(&outside).expect("ls").count(),
        0,
        "{said}"
    );
    assert_eq!(
        std::fs::read(to.join("docs/ok.txt")).expect("restored"),
        b"fine",
        "{said}"
    );
    assert!(std::fs::symlink_metadata(to.join("docs/esc"))
        .expect("link restored")
        .file_type()
        .is_symlink());
    assert!(said.contains("esc/pwned"), "{said}");
    assert!(!out.status.success(), "a partial restore says so: {said}");
}

#[test]
fn content_is_reachable_only_through_folders_one_may_read() {
    let server = Server::start();
    server.admin(&["folder", "add", "carols"], None);
    add_user(&server, "carol", &[("carols", "rw")]);
    add_user(&server, "bob", &[("backup", "ro")]);
    let alice = Api::login(&server, "alice", "alice-pw");
    let secret = b"the password is hunter2".to_vec();
    let id = ChunkId::of(&secret).to_hex();
    assert!(accepted(
        &alice.put_file("backup", "secret.txt", &secret, 0o600),
        0
    ));

    // Carol can neither read it nor learn that it exists.
    let carol = Api::login(&server, "carol", "carol-pw");
    assert_eq!(carol.get(&format!("/folders/carols/chunks/{id}")).0, 404);
    assert_eq!(carol.get(&format!("/folders/backup/chunks/{id}")).0, 404);
    let (status, r) = carol.post("/folders/carols/chunks/missing", json!({"chunks": [id]}));
    assert_eq!(status, 200);
    assert_eq!(r["missing"], json!([id]), "present elsewhere looks missing");
    let r = carol.commit("carols", json!([file("mine.txt", &secret, 0o644)]));
    assert_eq!(r["results"][0]["status"], "missing_chunks", "{r}");
    // With the bytes, she may: the server verifies them and keeps one copy.
    let r = carol.put_file("carols", "mine.txt", &secret, 0o644);
    assert!(accepted(&r, 0), "{r}");
    assert_eq!(carol.get(&format!("/folders/carols/chunks/{id}")).1, secret);
    // Uploading needs write access to the folder.
    assert_eq!(carol.upload("backup", b"x").0, 404);
    let bob = Api::login(&server, "bob", "bob-pw");
    assert_eq!(bob.upload("backup", b"x").0, 403);
    // A reader reads through the folder; revoked, nothing.
    assert_eq!(bob.get(&format!("/folders/backup/chunks/{id}")).1, secret);
    server.admin(&["folder", "revoke", "backup", "bob"], None);
    assert_eq!(bob.get(&format!("/folders/backup/chunks/{id}")).0, 404);
    assert_eq!(bob.get("/folders/backup/content?path=secret.txt").0, 404);
}

#[test]
fn a_commit_with_a_wrong_chunk_length_is_refused() {
    let server = Server::start();
    let alice = Api::login(&server, "alice", "alice-pw");
    let data = b"twelve bytes";
    assert_eq!(alice.upload("backup", data).0, 200);
    let mut change = file("a.txt", data, 0o644);
    change["entry"]["size"] = json!(13);
    change["chunks"][0]["len"] = json!(13);
    let r = alice.commit("backup", json!([change]));
    assert_eq!(r["results"][0]["status"], "refused", "{r}");
    assert!(
        r["results"][0]["reason"]
            .as_str()
            .is_some_and(|m| m.contains("12 bytes")),
        "{r}"
    );
}

#[test]
fn quotas_are_enforced_and_shown() {
    let server = Server::start();
    server.admin(&["folder", "add", "daves"], None);
    server.admin(
        &["user", "add", "dave", "--password-stdin", "--quota", "1K"],
        Some("dave-pw"),
    );
    server.admin(
        &["folder", "grant", "daves", "dave", "--access", "rw"],
        None,
    );
    let dave = Api::login(&server, "dave", "dave-pw");
    assert_eq!(dave.upload("daves", &[1u8; 1000]).0, 200);
    let (status, text) = dave.upload("daves", &[2u8; 100]);
    assert_eq!(status, 507);
    assert!(text.contains("quota exceeded"), "{text}");
    let list = server.admin(&["user", "list"], None);
    assert!(
        list.lines()
            .any(|l| l.starts_with("dave") && l.contains("1000 bytes used of 1024")),
        "{list}"
    );
    server.admin(&["user", "quota", "dave", "none"], None);
    assert_eq!(dave.upload("daves", &[2u8; 100]).0, 200);
    let list = server.admin(&["user", "list"], None);
    assert!(
        list.lines()
            .any(|l| l.starts_with("dave") && l.contains("1100 bytes used no quota")),
        "{list}"
    );
}

#[test]
fn a_user_cannot_lock_out_or_sign_as_another_users_device() {
    let server = Server::start();
    add_user(&server, "bob", &[("backup", "rw")]);
    let alice = Api::login_as(&server, "alice", "alice-pw", json!("dev-1"));
    let (status, _) = alice.post("/agent", json!({"instance": "a1"}));
    assert_eq!(status, 200);
    // Bob names alice's device id: he claims only his own (bob, dev-1).
    let bob = Api::login_as(&server, "bob", "bob-pw", json!("dev-1"));
    let (status, body) = bob.post("/agent", json!({"instance": "b1"}));
    assert_eq!(status, 200, "{body}");
    let (status, _) = alice.post("/agent", json!({"instance": "a1"}));
    assert_eq!(status, 200, "alice's agent is not locked out");
    let (status, _) = alice.post("/agent", json!({"instance": "a2"}));
    assert_eq!(
        status, 409,
        "a second live agent of alice's own device is refused"
    );
    // Versions say who and which computer.
    bob.put_file("backup", "by-bob.txt", b"bob wrote this", 0o644);
    let (_, body) = alice.get("/folders/backup/versions?path=by-bob.txt");
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["versions"][0]["user"], "bob", "{v}");
    assert_eq!(v["versions"][0]["computer"], "bob-laptop", "{v}");
}

#[test]
fn versions_show_the_computer_name() {
    let server = Server::start();
    let c = Client::new();
    c.backup_task(&server, &[]);
    c.write("a.txt", b"one");
    c.ok(&["run", "t", "--once"]);
    let out = c.ok(&["versions", "t", c.path("a.txt").to_str().expect("utf-8")]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert!(out.contains(host.trim()), "{out}");
    assert!(out.contains("alice"), "{out}");
}

/// Every chunk object (not pack) under the server's data folder.
fn chunk_objects(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            chunk_objects(&p, out);
        } else if p.to_string_lossy().contains("/chunks/chunks/") {
            out.push(p);
        }
    }
}

#[test]
fn a_chunk_lost_from_the_store_is_named_and_sent_again() {
    let server = Server::start();
    let c = Client::new();
    c.backup_task(&server, &[]);
    let data = crate::harness::noise(21, 3 * 1024 * 1024);
    c.write("big.bin", &data);
    c.ok(&["run", "t", "--once"]);
    let mut objects = Vec::new();
    chunk_objects(&server.data, &mut objects);
    assert!(!objects.is_empty(), "big.bin has chunks of its own");
    for o in &objects {
        std::fs::remove_file(o).expect("lose a chunk");
    }
    let to = c.tmp().join("out");
    std::fs::create_dir(&to).expect("mkdir");
    let err = c.fails(&["restore", "t", "--to", to.to_str().expect("utf-8")]);
    assert!(
        err.contains("big.bin") && err.contains("missing from the server's store"),
        "{err}"
    );
    assert!(
        !to.join(".cairn").exists(),
        "the failed restore left no temporary"
    );
    // A drive pass that fails the same way leaves nothing behind either, pass after pass.
    let d = drive(&server);
    for _ in 0..2 {
        let out = d.cairn(&["run", "d", "--once"]);
        assert!(
            text(&out).contains("missing from the server's store"),
            "{}",
            text(&out)
        );
        assert!(
            !d.path(".cairn").exists(),
            "no temporary after a failed pass"
        );
        assert!(!d.path("pc/docs/big.bin").exists(), "no partial file");
    }
    let check = server.admin_raw(&["check"], None);
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stdout).contains("missing"));
    // The next backup sends the file again, and everything is whole.
    let out = c.ok(&["run", "t", "--once"]);
    assert!(out.contains("1 uploaded"), "{out}");
    assert!(server
        .admin(&["check", "--read-data"], None)
        .contains("no problems"));
    c.ok(&["restore", "t", "--to", to.to_str().expect("utf-8")]);
    assert_eq!(
        std::fs::read(to.join("docs/big.bin")).expect("restored"),
        data
    );
}

#[test]
fn names_equal_after_normalisation_are_a_clash_reported_every_run() {
    let server = Server::start();
    let c = Client::new();
    c.write("caf\u{e9}.txt", b"composed");
    c.write("cafe\u{301}.txt", b"decomposed");
    c.write("plain.txt", b"plain");
    c.backup_task(&server, &[]);
    for _ in 0..2 {
        let out = c.cairn(&["run", "t", "--once"]);
        let said = text(&out);
        assert!(
            said.contains("not in Unicode NFC"),
            "reported each run: {said}"
        );
    }
    let to = c.tmp().join("back");
    std::fs::create_dir(&to).expect("mkdir");
    c.ok(&["restore", "t", "--to", to.to_str().expect("utf-8")]);
    assert_eq!(
        std::fs::read(to.join("docs/caf\u{e9}.txt")).expect("restored"),
        b"composed",
        "the NFC file is itself, never the other's content"
    );
    assert!(!to.join("docs/cafe\u{301}.txt").exists());
    assert_eq!(
        std::fs::read(to.join("docs/plain.txt")).expect("restored"),
        b"plain"
    );
}

#[test]
fn a_path_too_long_for_the_server_is_skipped_and_the_rest_commits() {
    let server = Server::start();
    let c = Client::new();
    // 8 names of 250 bytes: 2007 bytes below the local folder, over 2048 once the task's
    // prefix (`pc/docs/`) and a file name are added.
    let deep: Vec<String> = (0..8).map(|i| format!("{i}{}", "d".repeat(249))).collect();
    let rel = format!("{}/{}", deep.join("/"), "f".repeat(40));
    c.write(&rel, b"deep");
    c.write("ok.txt", b"fine");
    c.backup_task(&server, &[]);
    let out = c.cairn(&["run", "t", "--once"]);
    let said = text(&out);
    assert!(said.contains("longer than the remote can hold"), "{said}");
    assert!(c.ls_paths().contains(&"ok.txt".to_string()), "{said}");
    // The server refuses such a path on its own too, and only that change.
    let alice = Api::login(&server, "alice", "alice-pw");
    let long = format!("x/{}", rel);
    let r = alice.commit(
        "backup",
        json!([
            {"path": long, "base": null, "entry": {"kind": "dir", "size": 0, "mtime_ns": 1, "mode": 493, "hash": null}},
            {"path": "fine-dir", "base": null, "entry": {"kind": "dir", "size": 0, "mtime_ns": 1, "mode": 493, "hash": null}}
        ]),
    );
    assert_eq!(r["results"][0]["status"], "refused", "{r}");
    assert!(accepted(&r, 1), "{r}");
}

#[test]
fn control_characters_in_names_are_escaped_in_output() {
    let server = Server::start();
    let c = Client::new();
    c.write("evil\u{1b}[2J\nname.txt", b"x");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    for args in [&["ls", "t"][..], &["log", "t"][..]] {
        let out = c.cairn(args);
        let said = text(&out);
        assert!(said.contains("evil\\x1b[2J\\nname.txt"), "{args:?}: {said}");
        assert!(!said.contains('\u{1b}'), "{args:?}: no raw escape byte");
    }
}

/// A file of `n` references to the one-byte chunk of `byte`.
fn repeated(path: &str, byte: u8, n: usize) -> Value {
    let id = ChunkId::of(&[byte]).to_hex();
    let chunks: Vec<Value> = (0..n).map(|_| json!({"id": id, "len": 1})).collect();
    json!({"path": path, "base": null,
           "entry": {"kind": "file", "size": n, "mtime_ns": 1_000_000_000, "mode": 0o644,
                     "hash": ContentHash::of(&vec![byte; n]).to_hex()},
           "chunks": chunks})
}

#[test]
fn moves_count_the_chunk_references_they_copy() {
    let server = Server::start();
    let alice = Api::login(&server, "alice", "alice-pw");
    assert_eq!(alice.upload("backup", b"x").0, 200);
    let max = cairn_protocol::MAX_COMMIT_CHUNKS;
    let big = repeated("big", b'x', max * 3 / 5);
    let r = alice.commit("backup", json!([big]));
    assert!(accepted(&r, 0), "{r}");
    let seq = r["results"][0]["seq"].clone();
    let mut moved = big.clone();
    moved["path"] = json!("moved");
    moved["chunks"] = json!([]);
    moved["moved_from"] = json!({"path": "big", "base": seq});
    // Named references and the moved file's list together go over the limit: the move is
    // refused by name, the rest of the commit is applied.
    let other = repeated("other", b'x', max / 2);
    let r = alice.commit("backup", json!([other, moved]));
    assert!(accepted(&r, 0), "{r}");
    assert_eq!(r["results"][1]["status"], "refused", "{r}");
    let reason = r["results"][1]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("moved") && reason.contains("chunk references"),
        "{r}"
    );
    // On its own the move fits.
    let r = alice.commit("backup", json!([moved]));
    assert!(accepted(&r, 0), "{r}");
}
