//! Changes made from the web UI, over HTTP: resumable uploads, new folders, restoring an old
//! version or a folder as it was, and folders downloaded as zip files. Each reaches the
//! computers that sync the folder.

use std::process::Command;

use reqwest::blocking::Response;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{noise, Server};
use crate::web::{log_in, Browser};

fn post_json(b: &Browser, path: &str, body: &Value) -> Response {
    b.http
        .post(format!("{}{path}", b.base))
        .header("cookie", &b.cookies)
        .header("x-cairn-csrf", &b.csrf)
        .json(body)
        .send()
        .expect("post")
}

fn put_part(b: &Browser, id: &str, offset: usize, data: &[u8]) -> Response {
    b.http
        .put(format!(
            "{}/ui/f/backup/uploads/{id}?offset={offset}",
            b.base
        ))
        .header("cookie", &b.cookies)
        .header("x-cairn-csrf", &b.csrf)
        .body(data.to_vec())
        .send()
        .expect("put")
}

fn call(b: &Browser, method: reqwest::Method, path: &str) -> Response {
    b.http
        .request(method, format!("{}{path}", b.base))
        .header("cookie", &b.cookies)
        .header("x-cairn-csrf", &b.csrf)
        .send()
        .expect("request")
}

fn json_of(r: Response) -> Value {
    let status = r.status();
    let text = r.text().expect("body");
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).expect("json")
}

fn start(b: &Browser, path: &str, size: usize) -> String {
    let r = post_json(
        b,
        "/ui/f/backup/uploads",
        &json!({"path": path, "size": size, "mtime_ms": 1_700_000_000_000i64}),
    );
    json_of(r)["id"].as_str().expect("id").to_string()
}

fn form(b: &Browser, path: &str, fields: &[(&str, &str)]) -> Response {
    let mut all = vec![("csrf", b.csrf.as_str())];
    all.extend_from_slice(fields);
    b.http
        .post(format!("{}{path}", b.base))
        .header("cookie", &b.cookies)
        .form(&all)
        .send()
        .expect("form")
}

#[test]
fn a_browser_upload_resumes_after_a_resent_part_and_a_server_restart() {
    let mut server = Server::start();
    let pc = crate::drive::computer(&server, "pc", &[]);
    pc.ok(&["run", "d"]);
    let b = log_in(&server, "alice", "alice-pw");
    let data = noise(7, 3 * 1024 * 1024 + 123);
    let id = start(&b, "up/deep/big.bin", data.len());
    let mib = 1024 * 1024;
    assert_eq!(json_of(put_part(&b, &id, 0, &data[..mib]))["received"], mib);
    // The same part again (its answer was lost): nothing is appended twice.
    assert_eq!(json_of(put_part(&b, &id, 0, &data[..mib]))["received"], mib);

    server.restart();
    let status = json_of(call(
        &b,
        reqwest::Method::GET,
        &format!("/ui/f/backup/uploads/{id}"),
    ));
    assert_eq!(status["received"], mib, "{status}");
    // Finishing early says how much is missing.
    let early = call(
        &b,
        reqwest::Method::POST,
        &format!("/ui/f/backup/uploads/{id}/finish"),
    );
    assert_eq!(early.status(), StatusCode::CONFLICT);
    assert_eq!(
        json_of(put_part(&b, &id, mib, &data[mib..2 * mib]))["received"],
        2 * mib
    );
    assert_eq!(
        json_of(put_part(&b, &id, 2 * mib, &data[2 * mib..]))["received"],
        data.len()
    );
    let done = json_of(call(
        &b,
        reqwest::Method::POST,
        &format!("/ui/f/backup/uploads/{id}/finish"),
    ));
    assert_eq!(done["path"], "up/deep/big.bin");

    let got = b.get("/ui/f/backup/download?path=up/deep/big.bin");
    assert_eq!(got.bytes().expect("body").as_ref(), &data[..]);
    let versions = b.text("/ui/f/backup/versions?path=up/deep/big.bin");
    assert!(versions.contains("web browser"), "{versions}");
    pc.ok(&["run", "d"]);
    assert_eq!(
        std::fs::read(pc.path("up/deep/big.bin")).expect("synced"),
        data
    );
    // The staging area is empty again.
    let staged = server.data.join("web-uploads");
    let left: usize = std::fs::read_dir(&staged)
        .expect("staging")
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).map(|r| r.count()).unwrap_or(0))
        .sum();
    assert_eq!(left, 0, "files left in {}", staged.display());
}

#[test]
fn browser_uploads_are_checked_and_bounded() {
    let server = Server::start();
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    server.admin(&["folder", "add", "team"], None);
    server.admin(
        &["folder", "grant", "team", "alice", "--access", "ro"],
        None,
    );
    let b = log_in(&server, "alice", "alice-pw");

    // Without the CSRF header (a form or script of another site) nothing starts.
    let r = b
        .http
        .post(format!("{}/ui/f/backup/uploads", b.base))
        .header("cookie", &b.cookies)
        .json(&json!({"path": "x.txt", "size": 1}))
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Read-only folders, climbing paths and huge files are refused.
    let r = post_json(
        &b,
        "/ui/f/team/uploads",
        &json!({"path": "x.txt", "size": 1}),
    );
    assert!(
        r.status() == StatusCode::FORBIDDEN || r.status() == StatusCode::NOT_FOUND,
        "{}",
        r.status()
    );
    let r = post_json(
        &b,
        "/ui/f/backup/uploads",
        &json!({"path": "../x.txt", "size": 1}),
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post_json(
        &b,
        "/ui/f/backup/uploads",
        &json!({"path": "x.txt", "size": 1u64 << 50}),
    );
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // No more bytes than announced.
    let id = start(&b, "small.txt", 4);
    let r = put_part(&b, &id, 0, b"12345");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Another user cannot see or touch it, nor guess ids that name files.
    let bob = log_in(&server, "bob", "bob-pw");
    server.admin(
        &["folder", "grant", "backup", "bob", "--access", "rw"],
        None,
    );
    let r = call(
        &bob,
        reqwest::Method::GET,
        &format!("/ui/f/backup/uploads/{id}"),
    );
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = call(
        &bob,
        reqwest::Method::GET,
        "/ui/f/backup/uploads/..%2F..%2Fmeta.db",
    );
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A user has a bounded number open; cancelling frees one.
    let mut ids = vec![id];
    for i in 1..16 {
        ids.push(start(&b, &format!("f{i}.txt"), 1));
    }
    let r = post_json(
        &b,
        "/ui/f/backup/uploads",
        &json!({"path": "one-more.txt", "size": 1}),
    );
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = call(
        &b,
        reqwest::Method::DELETE,
        &format!("/ui/f/backup/uploads/{}", ids[0]),
    );
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = call(
        &b,
        reqwest::Method::GET,
        &format!("/ui/f/backup/uploads/{}", ids[0]),
    );
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    start(&b, "one-more.txt", 1);
    // An empty file needs no parts.
    call(
        &b,
        reqwest::Method::DELETE,
        &format!("/ui/f/backup/uploads/{}", ids[1]),
    );
    let id = start(&b, "empty.txt", 0);
    let r = call(
        &b,
        reqwest::Method::POST,
        &format!("/ui/f/backup/uploads/{id}/finish"),
    );
    assert_eq!(r.status(), StatusCode::OK);
    let r = b.get("/ui/f/backup/download?path=empty.txt");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().expect("body").is_empty());

    // What open uploads announce is bounded in all, and counts against the quota while the
    // bytes wait: two 64 GiB files may wait at once, not a byte more.
    let big = 64u64 << 30;
    let first = start(&bob, "big-1.bin", big as usize);
    let second = start(&bob, "big-2.bin", big as usize);
    let r = post_json(
        &bob,
        "/ui/f/backup/uploads",
        &json!({"path": "one-byte.txt", "size": 1}),
    );
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert!(r.text().expect("text").contains("may wait here at once"));
    for id in [first, second] {
        call(
            &bob,
            reqwest::Method::DELETE,
            &format!("/ui/f/backup/uploads/{id}"),
        );
    }
    server.admin(&["user", "quota", "bob", "1000000"], None);
    start(&bob, "half.bin", 600_000);
    let r = post_json(
        &bob,
        "/ui/f/backup/uploads",
        &json!({"path": "other-half.bin", "size": 600_000}),
    );
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
}

#[test]
fn restores_and_new_folders_from_the_browser_reach_the_computers() {
    let server = Server::start();
    server.admin(&["folder", "add", "team"], None);
    server.admin(
        &["folder", "grant", "team", "alice", "--access", "ro"],
        None,
    );
    let pc = crate::drive::computer(&server, "pc", &[]);
    pc.write("notes/plan.txt", b"plan one");
    pc.write("gone.txt", b"soon deleted");
    pc.ok(&["run", "d"]);
    pc.write("notes/plan.txt", b"plan two");
    pc.ok(&["run", "d"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = crate::web::instant_now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::remove_file(pc.path("gone.txt")).expect("rm");
    pc.write("notes/plan.txt", b"plan three");
    pc.write("new.txt", b"made after");
    pc.ok(&["run", "d"]);
    let b = log_in(&server, "alice", "alice-pw");

    // The oldest version of plan.txt becomes the current one again.
    let versions = b.text("/ui/f/backup/versions?path=notes/plan.txt");
    let seqs: Vec<&str> = versions
        .split("name=\"seq\" value=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(seqs.len(), 2, "two older versions to restore: {versions}");
    let r = form(
        &b,
        "/ui/f/backup/restore",
        &[("path", "notes/plan.txt"), ("seq", seqs[1])],
    );
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let now = b.get("/ui/f/backup/download?path=notes/plan.txt");
    assert_eq!(now.bytes().expect("body").as_ref(), b"plan one");
    pc.ok(&["run", "d"]);
    assert_eq!(
        std::fs::read(pc.path("notes/plan.txt")).expect("plan"),
        b"plan one"
    );

    // The whole folder as it was before the deletion: gone.txt is back, plan.txt is as it
    // was then, and what came later stays.
    let r = form(
        &b,
        "/ui/f/backup/restore-tree",
        &[("dir", ""), ("at", &before)],
    );
    let text = r.text().expect("page");
    assert!(text.contains("restored"), "{text}");
    pc.ok(&["run", "d"]);
    assert_eq!(
        std::fs::read(pc.path("gone.txt")).expect("back"),
        b"soon deleted"
    );
    assert_eq!(
        std::fs::read(pc.path("notes/plan.txt")).expect("plan"),
        b"plan two"
    );
    assert_eq!(
        std::fs::read(pc.path("new.txt")).expect("kept"),
        b"made after"
    );
    // Every step is a version: plan.txt's history holds all of them.
    let versions = b.text("/ui/f/backup/versions?path=notes/plan.txt");
    assert_eq!(versions.matches("bytes</a>").count(), 5, "{versions}");

    // A new folder, inside another.
    let r = form(
        &b,
        "/ui/f/backup/mkdir",
        &[("dir", "notes"), ("name", "drafts")],
    );
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    pc.ok(&["run", "d"]);
    assert!(pc.path("notes/drafts").is_dir());
    let r = form(
        &b,
        "/ui/f/backup/mkdir",
        &[("dir", "notes"), ("name", "../../escape")],
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Without the CSRF token, or on a read-only folder, nothing changes.
    let r = b
        .http
        .post(format!("{}/ui/f/backup/restore", b.base))
        .header("cookie", &b.cookies)
        .form(&[
            ("csrf", "0".repeat(32).as_str()),
            ("path", "notes/plan.txt"),
            ("seq", seqs[1]),
        ])
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = form(&b, "/ui/f/team/mkdir", &[("dir", ""), ("name", "x")]);
    assert!(
        !r.status().is_success() && r.status() != StatusCode::SEE_OTHER,
        "{}",
        r.status()
    );
}

/// Unpacks `zip` with Python's zipfile (which checks every CRC) into `dir`.
fn unzip(zip: &std::path::Path, dir: &std::path::Path) {
    let script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nbad = z.testzip()\nassert bad is None, bad\nz.extractall(sys.argv[2])\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(zip)
        .arg(dir)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_folder_downloads_as_a_zip_as_it_is_or_as_it_was() {
    let server = Server::start();
    let pc = crate::drive::computer(&server, "pc", &[]);
    let big = noise(3, 2 * 1024 * 1024 + 7);
    pc.write("docs/big.bin", &big);
    pc.write("docs/über ñ.txt", b"unicode");
    pc.write("docs/empty.txt", b"");
    pc.write("docs/sub/deeper.txt", b"deep");
    pc.write("top.txt", b"top v1");
    pc.ok(&["run", "d"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = crate::web::instant_now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    pc.write("top.txt", b"top v2");
    pc.ok(&["run", "d"]);
    let b = log_in(&server, "alice", "alice-pw");
    let tmp = tempfile::tempdir().expect("tmp");

    let r = b.get("/ui/f/backup/zip?dir=docs");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let disp = r.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(disp.contains("docs.zip"), "{disp}");
    let zip = tmp.path().join("docs.zip");
    std::fs::write(&zip, r.bytes().expect("zip")).expect("write");
    let out = tmp.path().join("docs");
    unzip(&zip, &out);
    assert_eq!(std::fs::read(out.join("big.bin")).expect("big"), big);
    assert_eq!(
        std::fs::read(out.join("über ñ.txt")).expect("unicode"),
        b"unicode"
    );
    assert_eq!(std::fs::read(out.join("empty.txt")).expect("empty"), b"");
    assert_eq!(
        std::fs::read(out.join("sub/deeper.txt")).expect("deep"),
        b"deep"
    );
    assert!(!out.join("top.txt").exists(), "only the folder asked for");

    // The whole folder as it was before the edit.
    let r = b.get(&format!(
        "/ui/f/backup/zip?at={}",
        before.replace(' ', "%20")
    ));
    let zip = tmp.path().join("then.zip");
    std::fs::write(&zip, r.bytes().expect("zip")).expect("write");
    let out = tmp.path().join("then");
    unzip(&zip, &out);
    assert_eq!(std::fs::read(out.join("top.txt")).expect("top"), b"top v1");
    assert_eq!(std::fs::read(out.join("docs/big.bin")).expect("big"), big);

    // Only for those who may read the folder.
    let r = b.get("/ui/f/nope/zip");
    assert_ne!(r.status(), StatusCode::OK);
    let r = b
        .http
        .get(format!("{}/ui/f/backup/zip", b.base))
        .send()
        .expect("get");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

/// The value of the first `<input ... id="ID" ... value="...">`-like field after `marker`.
fn after<'a>(page: &'a str, marker: &str) -> Option<&'a str> {
    page.split(marker).nth(1)?.split('"').next()
}

#[test]
fn links_are_made_listed_and_revoked_from_the_browser() {
    let server = Server::start();
    server.admin(&["folder", "add", "team"], None);
    let pc = crate::drive::computer(&server, "pc", &[]);
    pc.write("notes/plan.txt", b"the plan");
    pc.ok(&["run", "d"]);
    let b = log_in(&server, "alice", "alice-pw");

    let page = b.text("/ui/shares/new?folder=backup&path=notes/plan.txt");
    assert!(page.contains("Share backup/notes/plan.txt"), "{page}");
    let r = form(
        &b,
        "/ui/shares",
        &[
            ("folder", "backup"),
            ("path", "notes/plan.txt"),
            ("password", "open sesame"),
            ("expires", "1d"),
            ("max_access", "2"),
        ],
    );
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()["location"].to_str().expect("ascii").to_string();
    let list = b.text(&to);
    let url = after(&list, "<input readonly size=\"60\" value=\"")
        .expect("the new link is shown")
        .to_string();
    assert!(url.starts_with(&format!("{}/s/", b.base)), "{list}");
    assert!(
        list.contains("password") && list.contains("0 of 2 accesses"),
        "{list}"
    );
    let token_path = &url[url.find("/s/").expect("path")..];

    // A stranger gets the password form, not the file.
    let stranger = crate::web::http();
    let r = stranger
        .get(format!("{}{token_path}", b.base))
        .send()
        .expect("open");
    let text = r.text().expect("page");
    assert!(
        text.contains("password") && !text.contains("the plan"),
        "{text}"
    );

    // Revoked from the list: the link says so.
    let id = after(&list, "/ui/shares/")
        .expect("revoke form")
        .split('/')
        .next()
        .expect("id");
    let r = form(&b, &format!("/ui/shares/{id}/revoke"), &[]);
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = stranger
        .get(format!("{}{token_path}", b.base))
        .send()
        .expect("open");
    assert_eq!(r.status(), StatusCode::GONE);
    assert!(b.text("/ui/shares").contains("revoked"));

    // Links only for what the user may read; forms only with the CSRF token.
    let r = form(
        &b,
        "/ui/shares",
        &[("folder", "team"), ("path", ""), ("expires", "")],
    );
    assert!(
        !r.status().is_success() && r.status() != StatusCode::SEE_OTHER,
        "{}",
        r.status()
    );
    let r = b
        .http
        .post(format!("{}/ui/shares", b.base))
        .header("cookie", &b.cookies)
        .form(&[
            ("csrf", "0".repeat(32).as_str()),
            ("folder", "backup"),
            ("path", ""),
            ("expires", ""),
        ])
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[test]
fn an_administrator_manages_users_and_folders_in_the_browser() {
    let server = Server::start();
    server.admin(
        &["user", "add", "root", "--admin", "--password-stdin"],
        Some("root-pw"),
    );
    let alice = log_in(&server, "alice", "alice-pw");
    let r = alice.get("/ui/admin");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = form(
        &alice,
        "/ui/admin/users",
        &[("name", "mallory"), ("password", "x")],
    );
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let pc = crate::drive::computer(&server, "pc", &[]);
    pc.write("notes/a.txt", b"0123456789");
    pc.ok(&["run", "d"]);
    let root = log_in(&server, "root", "root-pw");
    let page = root.text("/ui/admin");
    assert!(page.contains("alice") && page.contains("backup"), "{page}");
    // Space per folder, cloud tasks, and the latest changes with who made them.
    assert!(page.contains("1 files, 10 B"), "{page}");
    assert!(page.contains("No cloud tasks"), "{page}");
    assert!(
        page.contains("backup/notes/a.txt") && page.contains("alice · "),
        "{page}"
    );
    assert!(root.text("/ui").contains("Administration"));

    // A new user, a new folder granted to them; they log in and see it.
    let r = form(
        &root,
        "/ui/admin/users",
        &[("name", "carol"), ("password", "carol-pw")],
    );
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = form(
        &root,
        "/ui/admin/folders",
        &[("name", "projects"), ("keep_versions", "5")],
    );
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = form(
        &root,
        "/ui/admin/folders/projects",
        &[("op", "grant"), ("user", "carol"), ("access", "ro")],
    );
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = form(
        &root,
        "/ui/admin/folders/projects",
        &[("op", "keep"), ("keep_versions", "7")],
    );
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = root.text("/ui/admin");
    assert!(
        page.contains("carol (read-only)") && page.contains("7 versions kept"),
        "{page}"
    );
    let carol = log_in(&server, "carol", "carol-pw");
    let folders = carol.text("/ui");
    assert!(
        folders.contains("projects") && folders.contains("read-only"),
        "{folders}"
    );

    // Quota and a new password; disabling ends the session.
    let r = form(
        &root,
        "/ui/admin/users/carol",
        &[("op", "quota"), ("quota_mib", "100")],
    );
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(root.text("/ui/admin").contains("100.0 MiB"));
    let r = form(
        &root,
        "/ui/admin/users/carol",
        &[("op", "password"), ("password", "carol-new")],
    );
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let carol = log_in(&server, "carol", "carol-new");
    let r = form(&root, "/ui/admin/users/carol", &[("op", "disable")]);
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = carol.get("/ui");
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "a disabled user's session ends"
    );
    let r = form(&root, "/ui/admin/users/carol", &[("op", "enable")]);
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    log_in(&server, "carol", "carol-new");

    // Deleting needs the name typed again; then carol is gone, and so is projects.
    let r = form(
        &root,
        "/ui/admin/users/carol",
        &[("op", "delete"), ("confirm", "caro")],
    );
    assert!(r.text().expect("page").contains("nothing was deleted"));
    let r = form(
        &root,
        "/ui/admin/users/carol",
        &[("op", "delete"), ("confirm", "carol")],
    );
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = form(
        &root,
        "/ui/admin/folders/projects",
        &[("op", "delete"), ("confirm", "projects")],
    );
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = root.text("/ui/admin");
    // Gone from the lists; the activity log below them says who deleted them.
    let (lists, log) = page
        .split_once("<h2 id=\"activity\">")
        .expect("the activity log");
    assert!(
        !lists.contains("carol") && !lists.contains("projects"),
        "{page}"
    );
    assert!(
        log.contains("<td>user.deleted</td><td>root</td><td>carol</td>")
            && log.contains("<td>folder.deleted</td><td>root</td><td>projects</td>"),
        "{log}"
    );

    // An administrator cannot lock themselves out; bad names are refused with the reason.
    let r = form(&root, "/ui/admin/users/root", &[("op", "disable")]);
    assert!(r.text().expect("page").contains("your own account"));
    let r = form(
        &root,
        "/ui/admin/users",
        &[("name", "<b>x</b>"), ("password", "pw")],
    );
    let text = r.text().expect("page");
    assert!(
        text.contains("invalid user name") && !text.contains("<b>x"),
        "{text}"
    );
}
