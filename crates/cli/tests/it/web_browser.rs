//! The web UI and the sharing pages in a real browser: headless Chromium over WebDriver
//! (crate::browser) against a real server. Each main page is saved under
//! `target/screenshots/` for a reviewer to look at (docs/testing.md lists them).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::browser::{Chromedriver, ENTER, TAB};
use crate::harness::{Client, Server};

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i64
}

#[test]
fn a_user_logs_in_browses_downloads_versions_and_the_past_in_a_browser() {
    let server = Server::start();
    server.admin(&["folder", "add", "team"], None);
    server.admin(
        &["folder", "grant", "team", "alice", "--access", "ro"],
        None,
    );
    let pc = crate::drive::computer(&server, "pc", &[]);
    pc.write("notes/plan.txt", b"first plan");
    pc.write(
        "notes/<img src=x onerror=alert(1)>.txt",
        b"markup in a name",
    );
    pc.write("gone.txt", b"soon deleted");
    pc.ok(&["run", "d"]);
    pc.write("notes/plan.txt", b"second plan");
    pc.ok(&["run", "d"]);
    // Times in the UI have whole seconds: keep the deletion in a later second than `before`,
    // and `before` in a later one than the commits.
    std::thread::sleep(Duration::from_millis(1100));
    let before = cairn_model::timespec::format_instant(now_ns());
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::remove_file(pc.path("gone.txt")).expect("rm");
    pc.ok(&["run", "d"]);

    let Some(driver) = Chromedriver::start() else {
        return;
    };
    let b = driver.session(&server.url());

    // Not logged in: the UI sends the browser to the login page; a wrong password is refused.
    b.goto("/ui");
    assert_eq!(b.path(), "/login");
    b.screenshot("login");
    b.fill("user", "alice");
    b.fill("password", "not-her-password");
    b.click_text("Log in");
    assert_eq!(b.path(), "/login");
    assert!(
        b.find("[role=alert]")
            .text()
            .contains("Wrong user name or password"),
        "{}",
        b.text()
    );
    b.login("alice", "alice-pw");

    // The folder list marks the read-only folder, and only it.
    let rows: Vec<String> = b.find_all("tr").iter().map(|r| r.text()).collect();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name} in {rows:?}"))
            .clone()
    };
    assert!(row("team").contains("read-only"), "{rows:?}");
    assert!(!row("backup").contains("read-only"), "{rows:?}");
    b.screenshot("folders");

    // Browse into a subfolder; a file's versions; download the old one and the current one.
    b.click_text("backup");
    let top = b.text();
    assert!(top.contains("notes") && !top.contains("gone.txt"), "{top}");
    b.screenshot("folder");
    b.click_text("notes");
    assert!(b.path().contains("dir=notes"), "{}", b.path());
    // A name with markup is shown as text, not rendered.
    assert!(
        b.text().contains("<img src=x onerror=alert(1)>.txt"),
        "{}",
        b.text()
    );
    assert!(b.try_find("td img").is_none(), "a file name became markup");
    b.click_text("plan.txt");
    assert_eq!(b.title(), "Versions of notes/plan.txt - cairn");
    let versions: Vec<String> = b.find_all("tr").iter().skip(1).map(|r| r.text()).collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(
        // The user's column, then the restore button of an older version.
        versions
            .iter()
            .all(|v| v.ends_with(" alice") || v.ends_with(" alice Restore")),
        "each version names its user: {versions:?}"
    );
    b.screenshot("versions");
    let (name, bytes) = b.download(|| b.find_text("10 bytes").click());
    assert_eq!(
        (name.as_str(), bytes.as_slice()),
        ("plan.txt", &b"first plan"[..])
    );
    let (_, bytes) = b.download(|| b.find_text("11 bytes").click());
    assert_eq!(bytes, b"second plan");
    b.click_text("Back to the folder");
    assert!(b.text().contains("plan.txt"));

    // Time travel with the form: before the deletion the file is there.
    b.click_text("Folders");
    b.click_text("backup");
    b.set_value("at", before.trim_end_matches('Z'));
    b.click_text("Show");
    assert!(b.path().contains("at="), "{}", b.path());
    assert!(b.text().contains("gone.txt"), "{}", b.text());
    b.screenshot("time-travel");

    // Deleted files on request, marked as such.
    b.goto("/ui/f/backup");
    b.find("input[name=deleted]").click();
    b.click_text("Show");
    let gone = b
        .find_all("tr")
        .iter()
        .map(|r| r.text())
        .find(|r| r.contains("gone.txt"))
        .unwrap_or_else(|| panic!("no deleted file shown: {}", b.text()));
    assert!(gone.contains("deleted"), "{gone}");
    b.screenshot("deleted");

    // On a phone: the folder view fits the width.
    b.set_window_size(390, 844);
    b.goto("/ui/f/backup?dir=notes");
    b.screenshot("folder-phone");
    assert!(b.fits_width(), "the folder view scrolls sideways at 390 px");

    // Logging out ends the session.
    b.logout();
    assert_eq!(b.path(), "/login");
    b.goto("/ui");
    assert_eq!(b.path(), "/login");

    // The login form by keyboard alone: the focus starts in the user field, Tab goes on to
    // the password and the button, Enter submits.
    b.screenshot("login-phone");
    assert!(b.fits_width(), "the login page scrolls sideways at 390 px");
    assert_eq!(b.focused().attr("name").as_deref(), Some("user"));
    b.press("alice");
    b.press(TAB);
    assert_eq!(b.focused().attr("name").as_deref(), Some("password"));
    b.press("alice-pw");
    b.press(TAB);
    assert_eq!(b.focused().text(), "Log in");
    b.new_page("Enter", || b.press(ENTER));
    assert_eq!(b.path(), "/ui", "{}", b.text());
}

/// `cairn share create d PATH EXTRA...` on `c`: the link.
fn share(c: &Client, rel: &str, extra: &[&str], stdin: &str) -> String {
    let path = c.path(rel);
    let mut args = vec!["share", "create", "d", path.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let out = c.cairn_stdin(&args, stdin);
    assert!(
        out.status.success(),
        "share create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_shared_link_opens_in_a_logged_out_browser_and_keeps_its_limits() {
    let server = Server::start();
    let pc = crate::drive::computer(&server, "pc", &[]);
    pc.write("report.txt", b"the report");
    pc.write("soon.txt", b"short-lived");
    pc.write("public/a.txt", b"file a");
    pc.write("public/sub/b.txt", b"file b");
    pc.write("not-shared.txt", b"private");
    pc.ok(&["run", "d"]);
    let link = share(
        &pc,
        "report.txt",
        &["--password-stdin", "--max-access", "1"],
        "s3cret-pw",
    );
    // Expires while the first link is tried; looked at once that time has passed. (Six
    // seconds: the time is cut to whole seconds and must still be ahead when the CLI sends it.)
    let expires_ns = now_ns() + 6_000_000_000;
    let expires = cairn_model::timespec::format_instant(expires_ns);
    let short = share(&pc, "soon.txt", &["--expires", &expires], "");
    let folder = share(&pc, "public", &[], "");

    let Some(driver) = Chromedriver::start() else {
        return;
    };
    let v = driver.session(&server.url());
    v.goto("/ui");
    assert_eq!(v.path(), "/login", "a fresh browser is logged out");

    // The password page shows nothing of the file; a wrong password is refused.
    v.goto(&link);
    let ask = v.text();
    assert!(
        ask.contains("password") && !ask.contains("report.txt"),
        "{ask}"
    );
    v.screenshot("share-password");
    v.fill("password", "guess");
    v.click_text("Open");
    assert!(v.text().contains("Wrong password"), "{}", v.text());
    assert!(!v.text().contains("report.txt"));
    v.screenshot("share-wrong-password");

    // The right one opens it (after the wait a failure costs), and the file downloads.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        v.goto(&link);
        v.fill("password", "s3cret-pw");
        v.click_text("Open");
        if !v.text().contains("Too many attempts") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", v.text());
        std::thread::sleep(Duration::from_millis(500));
    }
    let opened = v.text();
    assert!(
        opened.contains("report.txt") && opened.contains("10 bytes"),
        "{opened}"
    );
    v.screenshot("share-file");
    let (name, bytes) = v.download(|| v.find_text("Download").click());
    assert_eq!(
        (name.as_str(), bytes.as_slice()),
        ("report.txt", &b"the report"[..])
    );

    // One access was allowed: the next one says the link is used up.
    v.click_text("Download");
    assert!(
        v.text().contains("used as many times as it allows"),
        "{}",
        v.text()
    );
    v.goto(&link);
    assert!(
        v.text().contains("used as many times as it allows"),
        "{}",
        v.text()
    );
    v.screenshot("share-exhausted");

    // A folder link without a password: its folder and subfolders, nothing above.
    v.goto(&folder);
    let listed = v.text();
    assert!(
        listed.contains("a.txt") && listed.contains("sub") && !listed.contains("not-shared"),
        "{listed}"
    );
    v.screenshot("share-folder");
    v.click_text("sub");
    assert!(v.title().starts_with("Shared folder: sub"), "{}", v.title());
    let (name, bytes) = v.download(|| v.find_text("b.txt").click());
    assert_eq!((name.as_str(), bytes.as_slice()), ("b.txt", &b"file b"[..]));

    // The expiring link, once its time has passed.
    let left = expires_ns - now_ns();
    if left >= 0 {
        std::thread::sleep(Duration::from_nanos(left as u64 + 100_000_000));
    }
    v.goto(&short);
    assert!(v.text().contains("expired"), "{}", v.text());
    v.screenshot("share-expired");
}

#[test]
fn a_user_uploads_restores_and_shares_and_an_administrator_adds_a_user_in_a_browser() {
    let server = Server::start();
    server.admin(
        &["user", "add", "root", "--admin", "--password-stdin"],
        Some("root-pw"),
    );
    let pc = crate::drive::computer(&server, "pc", &[]);
    pc.write("notes/plan.txt", b"first plan");
    pc.write("gone.txt", b"soon deleted");
    pc.ok(&["run", "d"]);
    pc.write("notes/plan.txt", b"second plan");
    pc.ok(&["run", "d"]);
    std::thread::sleep(Duration::from_millis(1100));
    let before = cairn_model::timespec::format_instant(now_ns());
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::remove_file(pc.path("gone.txt")).expect("rm");
    pc.ok(&["run", "d"]);
    let local = tempfile::tempdir().expect("tmp");
    let upload = local.path().join("from the browser.bin");
    let content = crate::harness::noise(11, 5 * 1024 * 1024 + 3);
    std::fs::write(&upload, &content).expect("write");

    let Some(driver) = Chromedriver::start() else {
        return;
    };
    let b = driver.session(&server.url());
    b.login("alice", "alice-pw");
    b.click_text("backup");

    // Upload with the file picker: the page sends it in parts, then shows it.
    b.find("#upload-pick")
        .send_keys(upload.to_str().expect("utf-8"));
    crate::harness::wait_until(60, "the uploaded file listed", || {
        // The page reloads itself when the upload is done: read it only while it is there.
        let Some(text) = b.try_text() else {
            return false;
        };
        assert!(!text.contains("not uploaded"), "{text}");
        // Listed (with its size) once the page has reloaded.
        text.contains(&format!("{} bytes", content.len()))
    });
    b.screenshot("uploaded");
    pc.ok(&["run", "d"]);
    assert_eq!(
        std::fs::read(pc.path("from the browser.bin")).expect("synced"),
        content
    );

    // A new folder.
    b.fill("name", "drafts");
    b.click_text("Create");
    assert!(b.path().contains("dir=drafts"), "{}", b.path());

    // Restore the first version of plan.txt.
    b.goto("/ui/f/backup/versions?path=notes/plan.txt");
    let restore = b.find_all("button");
    let oldest = restore
        .iter()
        .rev()
        .find(|e| e.text() == "Restore")
        .expect("a Restore button for the old version");
    b.new_page("Restore", || oldest.click());
    assert!(
        b.text().contains("is the current version again"),
        "{}",
        b.text()
    );
    b.screenshot("restored-version");

    // Back to before the deletion, and restore the whole folder as it was.
    b.goto("/ui/f/backup");
    b.set_value("at", before.trim_end_matches('Z'));
    b.click_text("Show");
    b.click_text("Restore this folder as it was then");
    assert!(b.text().contains("restored as they were"), "{}", b.text());
    b.screenshot("restored-folder");
    pc.ok(&["run", "d"]);
    assert_eq!(
        std::fs::read(pc.path("gone.txt")).expect("back"),
        b"soon deleted"
    );
    assert_eq!(
        std::fs::read(pc.path("notes/plan.txt")).expect("plan"),
        b"second plan"
    );

    // The folder as a zip.
    b.goto("/ui/f/backup?dir=notes");
    let (name, bytes) = b.download(|| b.find_text("Download as zip").click());
    assert_eq!(name, "notes.zip");
    assert!(bytes.starts_with(b"PK\x03\x04"), "not a zip");

    // A password link from the UI, opened in a fresh browser.
    b.goto("/ui/f/backup/versions?path=notes/plan.txt");
    b.click_text("Share this file");
    b.screenshot("share-new");
    b.fill("password", "link-pw");
    b.fill("max_access", "2");
    b.click_text("Create link");
    let link = b
        .find("#new-link")
        .attr("value")
        .expect("the new link is shown");
    b.screenshot("shares");
    let v = driver.session(&server.url());
    v.goto(&link[link.find("/s/").expect("a link path")..]);
    v.fill("password", "link-pw");
    v.click_text("Open");
    let (name, bytes) = v.download(|| v.find_text("Download").click());
    assert_eq!(
        (name.as_str(), bytes.as_slice()),
        ("plan.txt", &b"second plan"[..])
    );

    // An upload-only link: a visitor sends a file into notes/ and sees nothing there.
    b.goto("/ui/shares/new?folder=backup&path=notes");
    b.find("input[name=upload_only]").click();
    b.click_text("Create link");
    let drop = b
        .find("#new-link")
        .attr("value")
        .expect("the new link is shown");
    let w = driver.session(&server.url());
    w.goto(&drop[drop.find("/s/").expect("a link path")..]);
    assert!(!w.text().contains("plan.txt"), "{}", w.text());
    let sent = local.path().join("for you.txt");
    std::fs::write(&sent, b"a visitor's file").expect("write");
    w.find("#upload-pick")
        .send_keys(sent.to_str().expect("utf-8"));
    crate::harness::wait_until(60, "the visitor's upload", || {
        w.find("#upload-progress").text().contains("uploaded")
    });
    w.screenshot("share-upload-only");
    pc.ok(&["run", "d"]);
    assert_eq!(
        std::fs::read(pc.path("notes/for you.txt")).expect("sent"),
        b"a visitor's file"
    );
    b.logout();

    // An administrator adds a user, who then logs in.
    b.login("root", "root-pw");
    b.click_text("Administration");
    b.screenshot("admin");
    b.fill("name", "dave");
    b.find("form[action=\"/ui/admin/users\"] input[name=password]")
        .send_keys("dave-pw");
    b.new_page("Create user", || {
        b.find("form[action=\"/ui/admin/users\"] button").click()
    });
    assert!(b.text().contains("dave"), "{}", b.text());
    b.logout();
    b.login("dave", "dave-pw");
    assert!(b.text().contains("No folders yet"), "{}", b.text());
}
