//! The WebDAV door at `/dav/` against real clients: Debian's `litmus` conformance suites and
//! `rclone`'s webdav remote, plus what the door promises beyond them: a PUT is a version, a
//! DELETE stays restorable, a MOVE is a move, access and paths are checked, Basic logins are
//! throttled like every other login. Needs `scripts/test-servers` (litmus, rclone, curl).

use std::path::Path;
use std::process::Command;

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{http, noise, Server};

/// The program `name`, which `scripts/test-servers` installs.
fn tool(name: &str) -> &str {
    let found = Command::new(name).arg("--version").output().is_ok();
    assert!(found, "{name} is missing: run scripts/test-servers");
    name
}

fn dav(server: &Server, method: &str, path: &str, who: (&str, &str)) -> RequestBuilder {
    let m = Method::from_bytes(method.as_bytes()).expect("method");
    http()
        .request(m, format!("{}{path}", server.url()))
        .basic_auth(who.0, Some(who.1))
}

const ALICE: (&str, &str) = ("alice", "alice-pw");

fn send(r: RequestBuilder) -> Response {
    r.send().expect("request")
}

fn expect(r: RequestBuilder, status: StatusCode, what: &str) -> String {
    let resp = send(r);
    let got = resp.status();
    let text = resp.text().unwrap_or_default();
    assert_eq!(got, status, "{what}: {text}");
    text
}

fn token(server: &Server) -> String {
    let r = http()
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": "alice", "password": "alice-pw"}))
        .send()
        .expect("login");
    r.json::<Value>().expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// The versions of `path` in folder `backup`, newest first, as the API lists them.
fn versions(server: &Server, path: &str) -> Vec<Value> {
    let r = http()
        .get(format!("{}/api/v1/folders/backup/versions", server.url()))
        .query(&[("path", path)])
        .bearer_auth(token(server))
        .send()
        .expect("versions");
    r.json::<Value>().expect("json")["versions"]
        .as_array()
        .expect("list")
        .clone()
}

fn kind(v: &Value) -> &str {
    v["entry"]["kind"].as_str().unwrap_or_default()
}

#[test]
fn litmus_passes_basic_copymove_props_and_locks() {
    let server = Server::start();
    let work = tempfile::tempdir().expect("temp dir");
    let out = Command::new(tool("litmus"))
        .arg(format!("{}/dav/backup/", server.url()))
        .args(["alice", "alice-pw"])
        .env("TESTS", "basic copymove props locks")
        .current_dir(work.path())
        .output()
        .expect("litmus");
    let text = String::from_utf8_lossy(&out.stdout);
    for (suite, n) in [
        ("basic", 16),
        ("copymove", 13),
        ("props", 30),
        ("locks", 41),
    ] {
        let line = format!("<- summary for `{suite}': of {n} tests run: {n} passed, 0 failed.");
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
    assert!(out.status.success(), "litmus failed:\n{text}");
}

/// An rclone webdav remote `c:` over folder `backup` (vendor `other`), and `oc:` (vendor
/// `owncloud`, which sends modification times), their config in `dir`.
fn rclone(dir: &Path, server: &Server, args: &[&str]) -> String {
    let conf = dir.join("rclone.conf");
    if !conf.exists() {
        let out = Command::new(tool("rclone"))
            .args(["obscure", "alice-pw"])
            .output()
            .expect("rclone obscure");
        let pass = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut text = String::new();
        for (name, vendor) in [("c", "other"), ("oc", "owncloud")] {
            text.push_str(&format!(
                "[{name}]\ntype = webdav\nurl = {}/dav/backup\nvendor = {vendor}\nuser = alice\npass = {pass}\n",
                server.url()
            ));
        }
        std::fs::write(&conf, text).expect("rclone.conf");
    }
    let out = Command::new("rclone")
        .arg("--config")
        .arg(&conf)
        .args(["--no-check-certificate", "--retries", "1"])
        .args(args)
        .output()
        .expect("rclone");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "rclone {args:?} failed:\n{all}");
    all
}

fn read(root: &Path, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(root.join(rel)).ok()
}

#[test]
fn rclone_copies_a_tree_in_and_syncs_both_ways_and_a_drive_sees_versions() {
    let server = Server::start();
    let pc = crate::drive::computer(&server, "pc", &[]);
    let work = tempfile::tempdir().expect("temp dir");
    let src = work.path().join("src");
    let big = noise(11, 3 * 1024 * 1024 + 17);
    for (rel, data) in [
        ("notes/plan.txt", b"first plan".to_vec()),
        ("notes/old.txt", b"old".to_vec()),
        ("media/big.bin", big.clone()),
        ("top.txt", b"top".to_vec()),
    ] {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    }
    let src_arg = src.to_str().expect("utf-8");
    rclone(work.path(), &server, &["copy", src_arg, "c:tree"]);
    pc.ok(&["run", "d", "--once"]);
    assert_eq!(read(&pc.root, "tree/media/big.bin"), Some(big));
    assert_eq!(
        read(&pc.root, "tree/notes/plan.txt").as_deref(),
        Some(&b"first plan"[..])
    );

    // Local changes go up with `sync`: a new version, and a deletion.
    std::fs::write(src.join("notes/plan.txt"), b"second plan").expect("write");
    std::fs::remove_file(src.join("notes/old.txt")).expect("rm");
    rclone(work.path(), &server, &["sync", src_arg, "c:tree"]);
    let history = versions(&server, "tree/notes/plan.txt");
    assert_eq!(history.len(), 2, "both versions are kept: {history:?}");
    assert!(
        history.iter().all(|v| v["computer"] == "WebDAV"),
        "{history:?}"
    );
    assert_eq!(kind(&versions(&server, "tree/notes/old.txt")[0]), "deleted");
    pc.ok(&["run", "d", "--once"]);
    assert_eq!(
        read(&pc.root, "tree/notes/plan.txt").as_deref(),
        Some(&b"second plan"[..])
    );
    assert!(!pc.path("tree/notes/old.txt").exists());

    // The drive's changes come down with `sync` the other way.
    pc.write("tree/notes/plan.txt", b"third plan, from the pc");
    pc.write("tree/new/from-pc.txt", b"new on the pc");
    pc.ok(&["run", "d", "--once"]);
    rclone(work.path(), &server, &["sync", "c:tree", src_arg]);
    assert_eq!(
        read(&src, "notes/plan.txt").as_deref(),
        Some(&b"third plan, from the pc"[..])
    );
    assert_eq!(
        read(&src, "new/from-pc.txt").as_deref(),
        Some(&b"new on the pc"[..])
    );
    let out = rclone(work.path(), &server, &["check", src_arg, "c:tree"]);
    assert!(out.contains("0 differences found"), "{out}");

    // With the owncloud vendor, rclone sends modification times, and they are kept.
    let dated = src.join("dated.txt");
    std::fs::write(&dated, b"from 2001").expect("write");
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&dated)
        .and_then(|f| f.set_modified(when))
        .expect("set mtime");
    rclone(work.path(), &server, &["copy", src_arg, "oc:tree"]);
    let head = &versions(&server, "tree/dated.txt")[0];
    assert_eq!(
        head["entry"]["mtime_ns"].as_i64(),
        Some(1_000_000_000_000_000_000),
        "{head}"
    );
}

#[test]
fn a_put_is_a_version_a_delete_is_restorable_and_a_move_sends_no_content() {
    let server = Server::start();
    let pc = crate::drive::computer(&server, "pc", &[]);
    let url = "/dav/backup/report.txt";
    expect(
        dav(&server, "PUT", url, ALICE).body("one"),
        StatusCode::CREATED,
        "first PUT",
    );
    expect(
        dav(&server, "PUT", url, ALICE).body("two"),
        StatusCode::NO_CONTENT,
        "second PUT",
    );
    let history = versions(&server, "report.txt");
    assert_eq!(history.len(), 2, "{history:?}");
    let got = expect(dav(&server, "GET", url, ALICE), StatusCode::OK, "GET");
    assert_eq!(got, "two");
    let part = dav(&server, "GET", url, ALICE).header("range", "bytes=1-");
    assert_eq!(expect(part, StatusCode::PARTIAL_CONTENT, "range"), "wo");
    // A body without a length (chunked, as some desktop clients send it) is staged first.
    let data = noise(9, 300_000);
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(data.clone()));
    let streamed = dav(&server, "PUT", "/dav/backup/streamed.bin", ALICE).body(chunked);
    expect(streamed, StatusCode::CREATED, "a chunked PUT");
    let got = send(dav(&server, "GET", "/dav/backup/streamed.bin", ALICE));
    assert_eq!(got.bytes().expect("body").as_ref(), &data[..]);
    let ranged = dav(&server, "PUT", url, ALICE)
        .header("content-range", "bytes 0-2/3")
        .body("abc");
    expect(ranged, StatusCode::BAD_REQUEST, "a PUT with Content-Range");

    // A delete is a deletion version: the content before it is still there to restore.
    expect(
        dav(&server, "DELETE", url, ALICE),
        StatusCode::NO_CONTENT,
        "DELETE",
    );
    expect(
        dav(&server, "GET", url, ALICE),
        StatusCode::NOT_FOUND,
        "GET after DELETE",
    );
    let history = versions(&server, "report.txt");
    assert_eq!(kind(&history[0]), "deleted", "{history:?}");
    let seq = history[1]["seq"].as_i64().expect("seq");
    let old = http()
        .get(format!("{}/api/v1/folders/backup/content", server.url()))
        .query(&[("path", "report.txt"), ("seq", &seq.to_string())])
        .bearer_auth(token(&server))
        .send()
        .expect("content");
    assert_eq!(old.text().expect("body"), "two");

    // A move reaches a drive as a rename: nothing is downloaded again.
    let data = noise(5, 500_000);
    pc.write("docs/a.bin", &data);
    pc.ok(&["run", "d", "--once"]);
    let to = format!("{}/dav/backup/docs/b.bin", server.url());
    let mv = dav(&server, "MOVE", "/dav/backup/docs/a.bin", ALICE).header("destination", to);
    expect(mv, StatusCode::CREATED, "MOVE");
    let out = pc.ok(&["run", "d", "--once"]);
    assert!(
        out.contains("0 downloaded, 1 moved"),
        "a rename, not a download: {out}"
    );
    assert_eq!(read(&pc.root, "docs/b.bin"), Some(data));
    assert!(!pc.path("docs/a.bin").exists());
}

#[test]
fn access_and_paths_are_checked() {
    let server = Server::start();
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    server.admin(
        &["folder", "grant", "backup", "bob", "--access", "ro"],
        None,
    );
    server.admin(
        &["user", "add", "carol", "--password-stdin"],
        Some("carol-pw"),
    );
    server.admin(&["folder", "add", "private"], None);
    let bob = ("bob", "bob-pw");
    let carol = ("carol", "carol-pw");
    expect(
        dav(&server, "PUT", "/dav/backup/a.txt", ALICE).body("a"),
        StatusCode::CREATED,
        "alice writes",
    );
    // Read-only: reads work, every write is 403.
    assert_eq!(
        expect(
            dav(&server, "GET", "/dav/backup/a.txt", bob),
            StatusCode::OK,
            "bob reads"
        ),
        "a"
    );
    expect(
        dav(&server, "PUT", "/dav/backup/a.txt", bob).body("b"),
        StatusCode::FORBIDDEN,
        "bob's PUT",
    );
    expect(
        dav(&server, "DELETE", "/dav/backup/a.txt", bob),
        StatusCode::FORBIDDEN,
        "bob's DELETE",
    );
    expect(
        dav(&server, "MKCOL", "/dav/backup/d", bob),
        StatusCode::FORBIDDEN,
        "bob's MKCOL",
    );
    let to = format!("{}/dav/backup/b.txt", server.url());
    let mv = dav(&server, "MOVE", "/dav/backup/a.txt", bob).header("destination", to);
    expect(mv, StatusCode::FORBIDDEN, "bob's MOVE");
    // A folder not granted is not there; the list of folders shows only granted ones.
    let d1 = |r: RequestBuilder| r.header("depth", "1");
    expect(
        d1(dav(&server, "PROPFIND", "/dav/private/", ALICE)),
        StatusCode::NOT_FOUND,
        "not granted",
    );
    expect(
        dav(&server, "GET", "/dav/backup/a.txt", carol),
        StatusCode::NOT_FOUND,
        "carol",
    );
    let list = expect(
        d1(dav(&server, "PROPFIND", "/dav/", ALICE)),
        StatusCode::MULTI_STATUS,
        "list",
    );
    assert!(
        list.contains("/dav/backup/") && !list.contains("private"),
        "{list}"
    );
    expect(
        dav(&server, "PROPFIND", "/dav/backup/", ALICE).header("depth", "infinity"),
        StatusCode::FORBIDDEN,
        "Depth infinity",
    );
    // The quota bounds a PUT, announced or chunked.
    server.admin(&["user", "quota", "carol", "100K"], None);
    server.admin(
        &["folder", "grant", "private", "carol", "--access", "rw"],
        None,
    );
    let big = noise(3, 200_000);
    let put = dav(&server, "PUT", "/dav/private/big", carol).body(big.clone());
    expect(put, StatusCode::INSUFFICIENT_STORAGE, "over the quota");
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(big));
    let put = dav(&server, "PUT", "/dav/private/big", carol).body(chunked);
    expect(
        put,
        StatusCode::INSUFFICIENT_STORAGE,
        "over the quota, chunked",
    );
    // A destination on another server, or outside /dav/, is refused.
    let away = dav(&server, "COPY", "/dav/backup/a.txt", ALICE)
        .header("destination", "https://elsewhere.example/dav/backup/x");
    expect(away, StatusCode::BAD_GATEWAY, "another server");
    // Paths that climb out, or hide a separator or a NUL, are refused (curl sends them as
    // they are; an HTTP library would tidy them first).
    for path in [
        "/dav/backup/../private/x",
        "/dav/backup/a/%2e%2e/%2e%2e/private/x",
        "/dav/backup/a%2F..%2F..%2Fprivate",
        "/dav/backup/a%00b",
    ] {
        let out = Command::new(tool("curl"))
            .args([
                "-sk",
                "--path-as-is",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["-u", "alice:alice-pw", "-X", "PUT", "--data-binary", "x"])
            .arg(format!("{}{path}", server.url()))
            .output()
            .expect("curl");
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(code, "400", "{path}");
    }
}

#[test]
fn basic_logins_are_throttled_and_a_new_password_ends_the_remembered_one() {
    let server = Server::start();
    server.admin(
        &["user", "add", "dave", "--password-stdin"],
        Some("dave-pw"),
    );
    server.admin(
        &["folder", "grant", "backup", "dave", "--access", "rw"],
        None,
    );
    let dave = ("dave", "dave-pw");
    let list = |who| dav(&server, "PROPFIND", "/dav/backup/", who).header("depth", "0");
    expect(list(dave), StatusCode::MULTI_STATUS, "right password");
    expect(list(dave), StatusCode::MULTI_STATUS, "again, remembered");
    // A bearer token works as well.
    let bearer = http()
        .request(
            Method::from_bytes(b"PROPFIND").expect("method"),
            format!("{}/dav/backup/", server.url()),
        )
        .header("depth", "0")
        .bearer_auth(token(&server));
    assert_eq!(send(bearer).status(), StatusCode::MULTI_STATUS);

    // The remembered verification ends with a new password.
    server.admin(
        &["user", "passwd", "dave", "--password-stdin"],
        Some("dave-pw-2"),
    );
    let first = send(list(dave));
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    let challenge = first
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    assert!(
        challenge.is_some_and(|c| c.starts_with("Basic")),
        "a Basic challenge"
    );
    // Wrong passwords are answered 401 until the throttle answers 429.
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let s = send(list(("dave", "guess"))).status();
        statuses.push(s);
        if s == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

/// Locks and dead properties live in the store: behind a load balancer, what one instance
/// granted or stored, the other honours and shows.
#[test]
fn a_lock_and_a_property_set_through_one_instance_hold_on_the_other() {
    let top = tempfile::tempdir().expect("temp dir");
    let Some((one, two)) = crate::postgres::two_instances("it_dav_locks", top.path()) else {
        return;
    };
    let url = "/dav/backup/shared.txt";
    expect(
        dav(&one, "PUT", url, ALICE).body("v1"),
        StatusCode::CREATED,
        "PUT",
    );
    let info = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>tester</D:owner></D:lockinfo>"#;
    let locked = send(
        dav(&one, "LOCK", url, ALICE)
            .header("timeout", "Second-600")
            .body(info),
    );
    assert_eq!(locked.status(), StatusCode::OK);
    let token = locked
        .headers()
        .get("lock-token")
        .and_then(|v| v.to_str().ok())
        .expect("a Lock-Token")
        .to_string();
    expect(
        dav(&two, "PUT", url, ALICE).body("v2"),
        StatusCode::LOCKED,
        "PUT without the token",
    );
    let with = dav(&two, "PUT", url, ALICE)
        .header("if", format!("({token})"))
        .body("v2");
    expect(with, StatusCode::NO_CONTENT, "PUT with the token");
    let patch = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:z="urn:x"><D:set><D:prop><z:colour>blue</z:colour></D:prop></D:set></D:propertyupdate>"#;
    let patched = dav(&one, "PROPPATCH", url, ALICE)
        .header("if", format!("({token})"))
        .body(patch);
    expect(patched, StatusCode::MULTI_STATUS, "PROPPATCH");
    let seen = expect(
        dav(&two, "PROPFIND", url, ALICE).header("depth", "0"),
        StatusCode::MULTI_STATUS,
        "PROPFIND",
    );
    assert!(seen.contains(">blue<") && seen.contains("tester"), "{seen}");
    let unlock = dav(&two, "UNLOCK", url, ALICE).header("lock-token", token);
    expect(unlock, StatusCode::NO_CONTENT, "UNLOCK");
    expect(
        dav(&one, "PUT", url, ALICE).body("v3"),
        StatusCode::NO_CONTENT,
        "PUT after UNLOCK",
    );
}
