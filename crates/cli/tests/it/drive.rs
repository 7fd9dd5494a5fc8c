//! Drive tasks: two or three computers, one server, every edit kept.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::harness::{wait_until, Client, Server};

/// A computer with drive task `d` over the whole `backup` folder.
pub(crate) fn computer(server: &Server, name: &str, extra: &[&str]) -> Client {
    let c = Client::new();
    c.connect(server, "alice", "alice-pw");
    let mut args = vec!["--computer", name];
    args.extend_from_slice(extra);
    add_drive(&c, &args);
    c
}

/// Adds drive task `d` over the whole `backup` folder on `c`'s saved connection `srv`.
pub(crate) fn add_drive(c: &Client, extra: &[&str]) {
    let root = c.root.to_str().expect("utf-8").to_string();
    let mut args = vec![
        "drive",
        "add",
        "d",
        "--local",
        &root,
        "--connection",
        "srv",
        "--folder",
        "backup",
    ];
    args.extend_from_slice(extra);
    c.ok(&args);
}

fn sync(c: &Client) -> String {
    c.ok(&["run", "d", "--once"])
}

fn read(c: &Client, rel: &str) -> Option<String> {
    std::fs::read_to_string(c.path(rel)).ok()
}

fn set_mtime(path: &Path, t: SystemTime) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    f.set_modified(t).expect("set mtime");
}

fn files(c: &Client) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            if rel.starts_with(".cairn") {
                continue;
            }
            if p.is_dir() {
                out.push(format!("{rel}/"));
                walk(&p, root, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(&c.root, &c.root, &mut out);
    out.sort();
    out
}

/// Every version of `rel` ever stored, as text.
fn history(c: &Client, rel: &str) -> Vec<String> {
    let out = c.ok(&["versions", "d", c.path(rel).to_str().expect("utf-8")]);
    let mut texts = Vec::new();
    for line in out.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) != Some(&"file") {
            continue;
        }
        let to = c.tmp().join(format!("v{}", fields[0]));
        c.ok(&[
            "download",
            "d",
            c.path(rel).to_str().expect("utf-8"),
            "--version",
            fields[0],
            "--to",
            to.to_str().expect("utf-8"),
        ]);
        texts.push(std::fs::read_to_string(&to).expect("downloaded"));
    }
    texts
}

#[test]
fn creates_edits_and_deletes_flow_between_two_computers() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    a.write("notes/todo.txt", b"buy milk");
    a.write("gone.txt", b"x");
    std::fs::create_dir_all(a.path("empty")).expect("mkdir");
    std::os::unix::fs::symlink("notes/todo.txt", a.path("link")).expect("symlink");
    sync(&a);
    sync(&b);
    assert_eq!(files(&b), files(&a));
    assert_eq!(
        std::fs::read_link(b.path("link")).expect("link").to_str(),
        Some("notes/todo.txt")
    );
    b.write("notes/todo.txt", b"buy milk and bread");
    std::fs::remove_file(b.path("gone.txt")).expect("rm");
    sync(&b);
    sync(&a);
    assert_eq!(
        read(&a, "notes/todo.txt").as_deref(),
        Some("buy milk and bread")
    );
    assert!(!a.path("gone.txt").exists());
    assert_eq!(files(&a), files(&b));
    // Quiet when nothing changed.
    let quiet = sync(&a);
    assert!(quiet.contains("0 uploaded, 0 downloaded"), "{quiet}");
}

#[test]
fn edit_against_edit_keeps_the_latest_and_the_loser_as_a_version() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    a.write("plan.txt", b"v0");
    sync(&a);
    sync(&b);
    let now = SystemTime::now();
    // A's edit is older by the clocks, but B's clock runs an hour behind: mtime alone decides.
    a.write("plan.txt", b"edit on A");
    set_mtime(&a.path("plan.txt"), now + Duration::from_secs(3600));
    b.write("plan.txt", b"edit on B");
    set_mtime(&b.path("plan.txt"), now);
    sync(&a);
    let out = sync(&b);
    assert!(out.contains("1 conflicts"), "{out}");
    assert_eq!(
        read(&b, "plan.txt").as_deref(),
        Some("edit on A"),
        "the latest edit wins"
    );
    sync(&a);
    assert_eq!(read(&a, "plan.txt").as_deref(), Some("edit on A"));
    let kept = history(&a, "plan.txt");
    assert!(
        kept.contains(&"edit on B".to_string()),
        "the losing edit is a version: {kept:?}"
    );
    assert!(kept.contains(&"v0".to_string()));
}

#[test]
fn a_losing_local_edit_can_be_kept_as_a_conflict_copy() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(
        &server,
        "laptop",
        &["--conflict", "keep-server", "--keep-conflict-copy"],
    );
    a.write("r.txt", b"v0");
    sync(&a);
    sync(&b);
    a.write("r.txt", b"server side");
    sync(&a);
    b.write("r.txt", b"local side");
    // Last modified on 2021-03-04 (UTC): the copy is named with that date, not today's.
    set_mtime(
        &b.path("r.txt"),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_614_859_200),
    );
    sync(&b);
    assert_eq!(
        read(&b, "r.txt").as_deref(),
        Some("server side"),
        "keep-server"
    );
    let copies: Vec<String> = files(&b)
        .into_iter()
        .filter(|f| f.starts_with("r_laptop_") && f.ends_with("_Conflict.txt"))
        .collect();
    assert_eq!(copies, vec!["r_laptop_20210304_Conflict.txt"]);
    assert_eq!(copies.len(), 1, "{:?}", files(&b));
    assert_eq!(read(&b, &copies[0]).as_deref(), Some("local side"));
    // The copy is an ordinary new file: it reaches the other computer.
    sync(&b);
    sync(&a);
    assert_eq!(read(&a, &copies[0]).as_deref(), Some("local side"));
}

#[test]
fn keep_deleted_carries_no_deletion_either_way() {
    let server = Server::start();
    let a = computer(&server, "A", &["--keep-deleted"]);
    let b = computer(&server, "B", &[]);
    a.write("mine.txt", b"a");
    a.write("theirs.txt", b"b");
    sync(&a);
    sync(&b);
    // Deleted here: stays on the server and on the other computer.
    std::fs::remove_file(a.path("mine.txt")).expect("rm");
    let out = sync(&a);
    assert!(out.contains("0 deleted on the server"), "{out}");
    sync(&b);
    assert_eq!(read(&b, "mine.txt").as_deref(), Some("a"));
    // Deleted on the server (by B): stays here.
    std::fs::remove_file(b.path("theirs.txt")).expect("rm");
    sync(&b);
    sync(&a);
    assert_eq!(read(&a, "theirs.txt").as_deref(), Some("b"));
    // Neither comes back where it was deleted, and the passes stay quiet.
    let quiet = sync(&a);
    assert!(quiet.contains("0 uploaded, 0 downloaded"), "{quiet}");
    assert!(!a.path("mine.txt").exists());
    sync(&b);
    assert!(!b.path("theirs.txt").exists());
}

#[test]
fn an_edit_beats_a_delete_and_deletes_on_both_sides_agree() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    a.write("f.txt", b"v0");
    a.write("both.txt", b"x");
    a.write("anchor.txt", b"keeps the folder from looking unmounted");
    sync(&a);
    sync(&b);
    std::fs::remove_file(a.path("f.txt")).expect("rm");
    std::fs::remove_file(a.path("both.txt")).expect("rm");
    std::fs::remove_file(b.path("both.txt")).expect("rm");
    sync(&a);
    b.write("f.txt", b"edited on B");
    sync(&b);
    sync(&a);
    assert_eq!(read(&a, "f.txt").as_deref(), Some("edited on B"));
    assert!(!a.path("both.txt").exists() && !b.path("both.txt").exists());
    // And the other way round: the server's edit survives a local delete.
    std::fs::remove_file(b.path("f.txt")).expect("rm");
    a.write("f.txt", b"edited on A");
    sync(&a);
    sync(&b);
    assert_eq!(read(&b, "f.txt").as_deref(), Some("edited on A"));
}

#[test]
fn download_only_keeps_local_edits_and_uploads_nothing() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let d = computer(&server, "kiosk", &["--mode", "download-only"]);
    a.write("doc.txt", b"v0");
    sync(&a);
    sync(&d);
    assert_eq!(read(&d, "doc.txt").as_deref(), Some("v0"));
    d.write("mine.txt", b"never uploaded");
    d.write("doc.txt", b"local edit");
    a.write("doc.txt", b"v1");
    sync(&a);
    sync(&d);
    assert_eq!(read(&d, "doc.txt").as_deref(), Some("v1"));
    let copies: Vec<String> = files(&d)
        .into_iter()
        .filter(|f| f.contains("_kiosk_") && f.ends_with("_Conflict.txt"))
        .collect();
    assert_eq!(copies.len(), 1, "{:?}", files(&d));
    assert_eq!(read(&d, &copies[0]).as_deref(), Some("local edit"));
    sync(&a);
    assert!(
        !a.path("mine.txt").exists(),
        "download-only uploads nothing"
    );
}

#[test]
fn a_read_only_folder_allows_only_download_only() {
    let server = Server::start();
    server.admin(&["user", "add", "ro", "--password-stdin"], Some("ro-pw"));
    server.admin(&["folder", "grant", "backup", "ro", "--access", "ro"], None);
    let c = Client::new();
    c.connect(&server, "ro", "ro-pw");
    let root = c.root.to_str().expect("utf-8");
    let err = c.fails(&[
        "drive",
        "add",
        "d",
        "--local",
        root,
        "--connection",
        "srv",
        "--folder",
        "backup",
    ]);
    assert!(
        err.contains("read-only") && err.contains("download-only"),
        "{err}"
    );
    c.ok(&[
        "drive",
        "add",
        "d",
        "--local",
        root,
        "--connection",
        "srv",
        "--folder",
        "backup",
        "--mode",
        "download-only",
    ]);
    let err = c.fails(&["task", "set", "d", "--mode", "two-way"]);
    assert!(err.contains("read-only"), "{err}");
}

#[test]
fn a_folder_made_read_only_goes_on_download_only_and_keeps_local_edits() {
    let server = Server::start();
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    server.admin(
        &["folder", "grant", "backup", "bob", "--access", "rw"],
        None,
    );
    let a = computer(&server, "A", &[]);
    let b = Client::new();
    b.connect(&server, "bob", "bob-pw");
    add_drive(&b, &[]);
    a.write("shared.txt", b"v1");
    sync(&a);
    sync(&b);
    server.admin(
        &["folder", "grant", "backup", "alice", "--access", "ro"],
        None,
    );
    a.write("shared.txt", b"alice's edit");
    a.write("new.txt", b"alice's new file");
    b.write("from-bob.txt", b"bob");
    sync(&b);
    let out = a.cairn(&["run", "d", "--once"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("read-only for you"), "{said}");
    // Downloads still arrive; local edits stay here, unsent.
    assert_eq!(read(&a, "from-bob.txt").as_deref(), Some("bob"));
    assert_eq!(read(&a, "shared.txt").as_deref(), Some("alice's edit"));
    assert_eq!(read(&a, "new.txt").as_deref(), Some("alice's new file"));
    sync(&b);
    assert_eq!(read(&b, "shared.txt").as_deref(), Some("v1"));
    assert!(!b.path("new.txt").exists());
    // Write access back: the kept edits go up.
    server.admin(
        &["folder", "grant", "backup", "alice", "--access", "rw"],
        None,
    );
    sync(&a);
    sync(&b);
    assert_eq!(read(&b, "new.txt").as_deref(), Some("alice's new file"));
    assert_eq!(read(&b, "shared.txt").as_deref(), Some("alice's edit"));
}

#[test]
fn a_pass_that_would_delete_most_files_waits_for_confirmation() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    for i in 0..20 {
        a.write(&format!("f{i:02}.txt"), b"x");
    }
    sync(&a);
    for i in 0..15 {
        std::fs::remove_file(a.path(&format!("f{i:02}.txt"))).expect("rm");
    }
    let err = a.fails(&["run", "d", "--once"]);
    assert!(
        err.contains("would delete 15 of") && err.contains("--confirm-deletes"),
        "{err}"
    );
    let b = computer(&server, "B", &[]);
    sync(&b);
    assert_eq!(files(&b).len(), 20, "nothing was deleted on the server");
    a.ok(&["resume", "d", "--confirm-deletes"]);
    sync(&a);
    // The other computer is guarded the same way.
    let err = b.fails(&["run", "d", "--once"]);
    assert!(err.contains("would delete 15 of"), "{err}");
    b.ok(&["resume", "d", "--confirm-deletes"]);
    sync(&b);
    assert_eq!(files(&b).len(), 5);
    // An emptied (or unmounted) folder deletes nothing either.
    for f in files(&a) {
        std::fs::remove_file(a.path(&f)).expect("rm");
    }
    let err = a.fails(&["run", "d", "--once"]);
    assert!(
        err.contains("is empty") && err.contains("Nothing was deleted"),
        "{err}"
    );
}

#[test]
fn a_file_replaced_by_a_folder_and_back() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    a.write("thing", b"a file");
    sync(&a);
    sync(&b);
    std::fs::remove_file(a.path("thing")).expect("rm");
    a.write("thing/inside.txt", b"now a folder");
    sync(&a);
    sync(&b);
    assert_eq!(
        read(&b, "thing/inside.txt").as_deref(),
        Some("now a folder")
    );
    std::fs::remove_dir_all(b.path("thing")).expect("rm");
    b.write("thing", b"a file again");
    sync(&b);
    sync(&a);
    assert_eq!(read(&a, "thing").as_deref(), Some("a file again"));
}

#[test]
fn the_same_new_file_made_on_two_computers_is_not_a_conflict() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    a.write("same.txt", b"identical");
    b.write("same.txt", b"identical");
    a.write("differs.txt", b"from A");
    b.write("differs.txt", b"from B");
    sync(&a);
    let out = sync(&b);
    assert!(
        out.contains("1 conflicts"),
        "only differs.txt conflicts: {out}"
    );
    sync(&a);
    assert_eq!(read(&a, "differs.txt"), read(&b, "differs.txt"));
    let kept = history(&a, "differs.txt");
    assert!(
        kept.contains(&"from A".to_string()) && kept.contains(&"from B".to_string()),
        "{kept:?}"
    );
}

#[test]
fn selective_sync_leaves_an_excluded_folder_alone() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    a.write("keep/a.txt", b"a");
    a.write("big/b.bin", b"b");
    let b = computer(&server, "B", &[]);
    b.ok(&["drive", "exclude", "d", "big"]);
    sync(&a);
    sync(&b);
    assert!(b.path("keep/a.txt").exists());
    assert!(!b.path("big/b.bin").exists());
    b.ok(&["drive", "include", "d", "big"]);
    sync(&b);
    assert!(b.path("big/b.bin").exists());
}

#[test]
fn a_server_restored_from_an_older_copy_loses_nothing() {
    let mut server = Server::start();
    let a = computer(&server, "A", &[]);
    a.write("old.txt", b"old");
    sync(&a);
    // Snapshot the server's data folder, then keep working.
    server.kill();
    let snapshot = a.tmp().join("snapshot");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&server.data)
        .arg(&snapshot)
        .status()
        .expect("cp")
        .success());
    server.restart();
    a.write("new.txt", b"made after the snapshot");
    a.write("old.txt", b"old, edited after the snapshot");
    sync(&a);
    // Disaster: the server comes back from the snapshot.
    server.kill();
    std::fs::remove_dir_all(&server.data).expect("rm");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&snapshot)
        .arg(&server.data)
        .status()
        .expect("cp")
        .success());
    server.restart();
    sync(&a);
    assert_eq!(
        read(&a, "new.txt").as_deref(),
        Some("made after the snapshot"),
        "nothing local was deleted"
    );
    assert_eq!(
        read(&a, "old.txt").as_deref(),
        Some("old, edited after the snapshot")
    );
    let b = computer(&server, "B", &[]);
    sync(&b);
    assert_eq!(
        read(&b, "new.txt").as_deref(),
        Some("made after the snapshot"),
        "re-uploaded"
    );
    assert_eq!(
        read(&b, "old.txt").as_deref(),
        Some("old, edited after the snapshot")
    );
    // After the merge, deletions flow again.
    std::fs::remove_file(a.path("new.txt")).expect("rm");
    sync(&a);
    sync(&b);
    assert!(
        !b.path("new.txt").exists(),
        "a deletion after the merge reaches B"
    );
}

#[test]
fn agents_carry_a_save_to_the_other_computer() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    let spawn = |c: &Client| {
        c.cmd()
            .args(["agent"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("agent")
    };
    let mut agents = [spawn(&a), spawn(&b)];
    a.write("live.txt", b"first");
    wait_until(60, "B to receive live.txt", || {
        read(&b, "live.txt").as_deref() == Some("first")
    });
    b.write("live.txt", b"second, from B");
    wait_until(60, "A to receive B's edit", || {
        read(&a, "live.txt").as_deref() == Some("second, from B")
    });
    // Idle agents stay idle: no pass runs without a change (listing folders, reading files
    // and the agents' own downloads are not changes).
    let passes = |c: &Client| {
        c.ok(&["log", "d", "--lines", "100000"])
            .lines()
            .filter(|l| l.contains("] 20") && l.contains(" drive d: "))
            .count()
    };
    std::thread::sleep(Duration::from_secs(2));
    let (a0, b0) = (passes(&a), passes(&b));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        (passes(&a), passes(&b)),
        (a0, b0),
        "passes ran while nothing changed"
    );
    for agent in &mut agents {
        let _ = agent.kill();
        let _ = agent.wait();
    }
}

#[test]
fn renaming_a_folder_moves_it_on_the_server_and_sends_no_content() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    for i in 0..50 {
        a.write(
            &format!("photos/{i:02}.jpg"),
            format!("photo {i}").as_bytes(),
        );
    }
    a.write("photos/raw/big.raw", &crate::harness::noise(3, 200_000));
    sync(&a);
    sync(&b);
    std::fs::rename(a.path("photos"), a.path("pictures")).expect("rename");
    let out = sync(&a);
    assert!(
        out.contains("51 moved") && out.contains("sent 0 bytes"),
        "{out}"
    );
    let out = sync(&b);
    // Only the two new folders are "downloaded"; the 51 files are renamed here.
    assert!(
        out.contains("2 downloaded, 51 moved"),
        "renamed here, not downloaded: {out}"
    );
    assert_eq!(files(&a), files(&b));
    assert!(!b.path("photos").exists());
    assert_eq!(read(&b, "pictures/07.jpg").as_deref(), Some("photo 7"));
    // A renamed file is a move too, and its history shows where it came from.
    std::fs::rename(b.path("pictures/07.jpg"), b.path("pictures/seven.jpg")).expect("rename");
    assert!(sync(&b).contains("1 moved"));
    assert!(sync(&a).contains("1 moved"));
    assert_eq!(read(&a, "pictures/seven.jpg").as_deref(), Some("photo 7"));
}

#[test]
fn a_copied_configuration_folder_does_not_pose_as_the_first_computer() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let spawn = |c: &Client| {
        c.cmd()
            .args(["agent"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("agent")
    };
    let mut agent_a = spawn(&a);
    wait_until(30, "A's agent to run", || {
        !a.ok(&["status"]).contains("not running")
    });
    let c = Client::new();
    // The running agent replaces its state files now and then (write to a temporary, rename),
    // so a copy can meet a file that vanishes under it: copy again, as a user would.
    let copied = (0..20).any(|_| {
        let _ = std::fs::remove_dir_all(&c.home);
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(&a.home)
            .arg(&c.home)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("cp")
            .success();
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(copied, "copying A's configuration folder");
    let out = c.cairn(&["agent"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the copy must not run");
    assert!(
        err.contains("device identity") && err.contains("cairn connect"),
        "{err}"
    );
    // Connecting again gives the copy its own identity.
    c.connect(&server, "alice", "alice-pw");
    c.ok(&["drive", "remove", "d"]);
    let root = c.root.to_str().expect("utf-8").to_string();
    c.ok(&[
        "drive",
        "add",
        "d",
        "--local",
        &root,
        "--connection",
        "srv",
        "--folder",
        "backup",
        "--computer",
        "C",
    ]);
    let mut agent_c = spawn(&c);
    wait_until(30, "C's agent to run", || {
        !c.ok(&["status"]).contains("not running")
    });
    for agent in [&mut agent_a, &mut agent_c] {
        let _ = agent.kill();
        let _ = agent.wait();
    }
}

#[test]
fn names_differing_only_in_case_are_reported_and_downloads_are_logged() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    a.write("Readme.txt", b"one");
    a.write("README.txt", b"two");
    sync(&a);
    let out = b.cairn(&["run", "d", "--once"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("differ only in case"), "{err}");
    let log = b.ok(&["log", "d", "--downloads"]);
    assert!(
        log.contains("downloaded Readme.txt") && log.contains("downloaded README.txt"),
        "{log}"
    );
    assert!(
        !log.contains("name clash"),
        "--downloads shows only downloads: {log}"
    );
}

#[test]
fn a_new_name_differing_only_in_case_from_an_unchanged_one_is_reported() {
    // B's pass leaves the unchanged name out of both listings as it reads them; the clash
    // with the new name must still be found, and the name B holds kept.
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    a.write("docs/Readme.txt", b"one");
    sync(&a);
    sync(&b);
    a.write("docs/README.txt", b"two");
    sync(&a);
    let out = b.cairn(&["run", "d", "--once"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("docs/README.txt and docs/Readme.txt differ only in case"),
        "{err}"
    );
}

#[test]
fn sixty_four_tasks_over_one_connection() {
    let server = Server::start();
    let c = Client::new();
    c.connect(&server, "alice", "alice-pw");
    for i in 0..64 {
        let dir = c.tmp().join(format!("t{i}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("f.txt"), format!("task {i}")).expect("write");
        let folder = format!("backup/t{i}");
        c.ok(&[
            "drive",
            "add",
            &format!("t{i}"),
            "--local",
            dir.to_str().expect("utf-8"),
            "--connection",
            "srv",
            "--folder",
            &folder,
        ]);
    }
    // A folder inside (or around) one already synced is refused, naming the other task.
    let inner = c.tmp().join("t3").join("inner");
    std::fs::create_dir_all(&inner).expect("mkdir");
    let err = c.fails(&[
        "drive",
        "add",
        "x",
        "--local",
        inner.to_str().expect("utf-8"),
        "--connection",
        "srv",
        "--folder",
        "backup",
    ]);
    assert!(err.contains("already synced by task t3"), "{err}");
    let out = c.ok(&["run", "--once"]);
    let done = out
        .lines()
        .filter(|l| l.starts_with("drive t") && l.contains(" 0 failed"))
        .count();
    assert_eq!(done, 64, "{out}");
    let d = Client::new();
    d.connect(&server, "alice", "alice-pw");
    d.ok(&[
        "drive",
        "add",
        "all",
        "--local",
        d.root.to_str().expect("utf-8"),
        "--connection",
        "srv",
        "--folder",
        "backup",
    ]);
    d.ok(&["run", "all", "--once"]);
    assert_eq!(
        std::fs::read_to_string(d.path("t63/f.txt")).expect("read"),
        "task 63"
    );
}

#[test]
fn status_of_a_path_says_synced_syncing_filtered_read_only_or_conflict() {
    let server = Server::start();
    let a = computer(&server, "A", &["--exclude-ext", "iso"]);
    a.write("done.txt", b"x");
    sync(&a);
    a.write("fresh.txt", b"y");
    a.write("disk.iso", b"z");
    a.write("notes.tmp", b"t");
    a.write("r_B_20261122_Conflict.txt", b"c");
    let status = |rel: &str| a.ok(&["status", a.path(rel).to_str().expect("utf-8")]);
    assert!(
        status("done.txt").contains(": synced [task d]"),
        "{}",
        status("done.txt")
    );
    assert!(status("fresh.txt").contains("syncing (new here)"));
    assert!(status("disk.iso").contains("filtered out (extension rule *.iso)"));
    assert!(status("notes.tmp").contains("filtered out (default ignore list"));
    assert!(status("r_B_20261122_Conflict.txt").contains("conflict copy"));
    server.admin(&["user", "add", "viewer", "--password-stdin"], Some("v-pw"));
    server.admin(
        &["folder", "grant", "backup", "viewer", "--access", "ro"],
        None,
    );
    let v = Client::new();
    v.connect(&server, "viewer", "v-pw");
    let root = v.root.to_str().expect("utf-8").to_string();
    v.ok(&[
        "drive",
        "add",
        "d",
        "--local",
        &root,
        "--connection",
        "srv",
        "--folder",
        "backup",
        "--mode",
        "download-only",
    ]);
    sync(&v);
    let s = v.ok(&["status", v.path("done.txt").to_str().expect("utf-8")]);
    assert!(s.contains("synced, read-only"), "{s}");
    let t = v.ok(&["status", "d"]);
    assert!(t.contains("d: drive (download-only)"), "{t}");
}

/// Every file's content in a replica, by path (the working folder left out).
fn contents(c: &Client) -> std::collections::BTreeMap<String, String> {
    files(c)
        .into_iter()
        .filter(|f| !f.ends_with('/'))
        .filter_map(|f| read(c, &f).map(|t| (f, t)))
        .collect()
}

/// Every content any version of any path ever had on the server.
fn server_history(server: &Server) -> std::collections::HashSet<String> {
    let http = crate::harness::http();
    let login: serde_json::Value = http
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": "alice", "password": "alice-pw"}))
        .send()
        .expect("login")
        .json()
        .expect("json");
    let tok = login["token"].as_str().expect("token").to_string();
    let base = format!("{}/api/v1/folders/backup", server.url());
    let get = |what: &str, q: &[(&str, String)]| -> reqwest::blocking::Response {
        http.get(format!("{base}/{what}"))
            .query(q)
            .bearer_auth(&tok)
            .send()
            .expect("request")
    };
    let tree: serde_json::Value = get("tree", &[("deleted", "true".into())])
        .json()
        .expect("tree");
    let mut out = std::collections::HashSet::new();
    for e in tree["entries"].as_array().expect("entries") {
        let path = e["path"].as_str().expect("path").to_string();
        let versions: serde_json::Value = get("versions", &[("path", path.clone())])
            .json()
            .expect("versions");
        for v in versions["versions"].as_array().expect("versions") {
            if v["entry"]["kind"] == "file" {
                let seq = v["seq"].as_i64().expect("seq").to_string();
                out.insert(
                    get("content", &[("path", path.clone()), ("seq", seq)])
                        .text()
                        .expect("content"),
                );
            }
        }
    }
    out
}

#[test]
fn random_edits_on_three_computers_converge_and_lose_no_synced_edit() {
    random_edits_converge(&mut [Server::start()]);
}

/// Three computers make random edits, renames and deletes in rounds, each pass now and then
/// skipped (paused or offline), through instances of one server (one, or several over one
/// database: then each pass goes to an instance picked at random, as behind a load
/// balancer); now and then an instance restarts. At the end all three hold the same tree,
/// and every edit a computer had when it synced is there, in history, or a conflict copy.
/// All instances must serve one certificate (a load balancer's, or a copied `tls/`).
pub(crate) fn random_edits_converge(servers: &mut [Server]) {
    let seed: u64 = std::env::var("CAIRN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("seed = {seed} (run again with CAIRN_TEST_SEED={seed})");
    let mut state = seed | 1;
    let mut rnd = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let computers = [
        computer(&servers[0], "A", &[]),
        computer(&servers[0], "B", &[]),
        computer(&servers[0], "C", &[]),
    ];
    let instances = servers.len() as u64;
    let pass = |c: &Client, to: usize, servers: &[Server]| {
        if instances > 1 {
            // The saved connection now points at that instance (same certificate).
            c.connect(&servers[to], "alice", "alice-pw");
        }
        let out = c.cairn(&["run", "d", "--once", "--confirm-deletes"]);
        assert!(
            out.status.success(),
            "seed {seed}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let names = [
        "a.txt",
        "b.txt",
        "c.txt",
        "d/e.txt",
        "d/f.txt",
        "g/h.txt",
        "g/i/j.txt",
    ];
    let mut must_survive: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut counter = 0;
    for round in 0..10 {
        // Now and then an instance goes away and comes back: its clients are disconnected.
        if rnd(5) == 0 {
            servers[rnd(instances) as usize].restart();
        }
        for (k, c) in computers.iter().enumerate() {
            for _ in 0..rnd(4) {
                let existing: Vec<String> = contents(c)
                    .into_keys()
                    .filter(|f| !f.contains("_Conflict"))
                    .collect();
                match rnd(5) {
                    0..=2 => {
                        counter += 1;
                        let name = names[rnd(names.len() as u64) as usize];
                        c.write(
                            name,
                            format!("edit {counter} by {k} in round {round}").as_bytes(),
                        );
                    }
                    3 if !existing.is_empty() => {
                        let from = &existing[rnd(existing.len() as u64) as usize];
                        let to = names[rnd(names.len() as u64) as usize];
                        if !c.path(to).exists() {
                            std::fs::create_dir_all(c.path(to).parent().expect("parent"))
                                .expect("mkdir");
                            std::fs::rename(c.path(from), c.path(to)).expect("rename");
                        }
                    }
                    4 if !existing.is_empty() => {
                        let victim = &existing[rnd(existing.len() as u64) as usize];
                        std::fs::remove_file(c.path(victim)).expect("rm");
                    }
                    _ => {}
                }
            }
            // A computer that skips a round is paused or offline.
            if rnd(3) != 0 {
                must_survive.extend(contents(c).into_values());
                pass(c, rnd(instances) as usize, servers);
            }
        }
    }
    for _ in 0..3 {
        for c in &computers {
            must_survive.extend(contents(c).into_values());
            pass(c, rnd(instances) as usize, servers);
        }
    }
    let trees: Vec<_> = computers.iter().map(contents).collect();
    assert_eq!(trees[0], trees[1], "seed {seed}: A and B differ");
    assert_eq!(trees[1], trees[2], "seed {seed}: B and C differ");
    let history = server_history(&servers[servers.len() - 1]);
    let present: std::collections::HashSet<&String> = trees[0].values().collect();
    for edit in &must_survive {
        assert!(
            present.contains(edit) || history.contains(edit),
            "seed {seed}: the edit {edit:?} is nowhere"
        );
    }
}

#[test]
#[cfg(feature = "test-hooks")]
fn uploads_failing_for_a_while_delete_nothing_local() {
    let server = Server::start_with(&[("CAIRN_TEST_FAIL_UPLOADS", "12")]);
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    a.write("keep/one.txt", b"one");
    a.write("keep/two.txt", b"two");
    b.write("other.txt", b"from B");
    // Each failing pass retries a few times, then gives up without touching local files.
    let mut failures = 0;
    while a.cairn(&["run", "d", "--once"]).status.code() != Some(0) {
        failures += 1;
        assert!(failures < 10, "the server never recovered");
        assert_eq!(
            read(&a, "keep/one.txt").as_deref(),
            Some("one"),
            "nothing local is deleted"
        );
        assert_eq!(read(&a, "keep/two.txt").as_deref(), Some("two"));
    }
    assert!(failures > 0, "the hook made some passes fail");
    sync(&b);
    sync(&a);
    assert_eq!(files(&a), files(&b));
    assert_eq!(read(&b, "keep/one.txt").as_deref(), Some("one"));
    assert_eq!(read(&a, "other.txt").as_deref(), Some("from B"));
}

#[test]
fn a_rename_on_one_computer_and_an_edit_on_the_other_keep_both() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    a.write("draft.txt", b"v0");
    sync(&a);
    sync(&b);
    std::fs::rename(a.path("draft.txt"), a.path("final.txt")).expect("rename");
    b.write("draft.txt", b"edited on B");
    sync(&a);
    sync(&b);
    sync(&a);
    assert_eq!(read(&b, "final.txt").as_deref(), Some("v0"));
    assert_eq!(
        read(&b, "draft.txt").as_deref(),
        Some("edited on B"),
        "the edit survives the rename"
    );
    assert_eq!(files(&a), files(&b));
}

#[test]
fn relinking_a_folder_that_already_holds_files_merges_or_lets_the_server_win() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    a.write("same.txt", b"same");
    a.write("differs.txt", b"server copy");
    sync(&a);
    // B already has files: the equal one is adopted, the other is a conflict.
    let b = Client::new();
    b.write("same.txt", b"same");
    b.write("differs.txt", b"local copy");
    set_mtime(
        &b.path("differs.txt"),
        SystemTime::now() - Duration::from_secs(3600),
    );
    b.write("only-here.txt", b"mine");
    b.connect(&server, "alice", "alice-pw");
    add_drive(&b, &["--computer", "B"]);
    let out = sync(&b);
    assert!(out.contains("1 conflicts"), "{out}");
    assert_eq!(
        read(&b, "differs.txt").as_deref(),
        Some("server copy"),
        "the newer copy wins"
    );
    assert!(history(&b, "differs.txt").contains(&"local copy".to_string()));
    sync(&a);
    assert_eq!(read(&a, "only-here.txt").as_deref(), Some("mine"));
    // server-wins: the server's copy wins whatever the clocks say; the local one stays a version.
    let c = Client::new();
    c.write("differs.txt", b"newest local");
    set_mtime(
        &c.path("differs.txt"),
        SystemTime::now() + Duration::from_secs(3600),
    );
    c.connect(&server, "alice", "alice-pw");
    let root = c.root.to_str().expect("utf-8").to_string();
    c.ok(&[
        "drive",
        "add",
        "d",
        "--local",
        &root,
        "--connection",
        "srv",
        "--folder",
        "backup",
        "--computer",
        "C",
        "--on-relink",
        "server-wins",
    ]);
    sync(&c);
    assert_eq!(read(&c, "differs.txt").as_deref(), Some("server copy"));
    assert!(history(&c, "differs.txt").contains(&"newest local".to_string()));
}

#[test]
fn permission_changes_travel_and_the_consistency_check_rehashes() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    let a = computer(&server, "A", &["--consistency-check"]);
    let b = computer(&server, "B", &[]);
    a.write("run.sh", b"#!/bin/sh\necho hi\n");
    sync(&a);
    sync(&b);
    std::fs::set_permissions(a.path("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    sync(&a);
    sync(&b);
    let mode = std::fs::metadata(b.path("run.sh"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "the exec bit reached B");
    // A same-size rewrite with its mtime put back is still caught (ctime moved, and the
    // consistency check re-hashes every file anyway).
    let before = std::fs::metadata(a.path("run.sh"))
        .expect("stat")
        .modified()
        .expect("mtime");
    a.write("run.sh", b"#!/bin/sh\necho HI\n");
    set_mtime(&a.path("run.sh"), before);
    sync(&a);
    sync(&b);
    assert_eq!(read(&b, "run.sh").as_deref(), Some("#!/bin/sh\necho HI\n"));
}

#[test]
fn task_set_moves_a_drive_to_another_folder_which_merges_and_deletes_nothing() {
    let server = Server::start();
    let a = computer(&server, "a", &[]);
    a.write("x.txt", b"x");
    a.write("sub/y.txt", b"y");
    sync(&a);
    // The new folder lacks x and y: taking the old folder's base for it would delete them.
    let other = a.tmp().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("z.txt"), b"z").expect("write");
    let err = a.fails(&[
        "task",
        "set",
        "d",
        "--local",
        other.to_str().expect("utf-8"),
        "--local",
        a.root.to_str().expect("utf-8"),
    ]);
    assert!(err.contains("exactly one local folder"), "{err}");
    a.ok(&[
        "task",
        "set",
        "d",
        "--local",
        other.to_str().expect("utf-8"),
    ]);
    let out = sync(&a);
    assert!(out.contains("0 deleted on the server"), "{out}");
    assert_eq!(
        std::fs::read(other.join("x.txt")).expect("x came down"),
        b"x"
    );
    assert_eq!(
        std::fs::read(other.join("sub/y.txt")).expect("y came down"),
        b"y"
    );
    let b = computer(&server, "b", &[]);
    sync(&b);
    assert_eq!(files(&b), ["sub/", "sub/y.txt", "x.txt", "z.txt"]);
}

#[test]
fn dry_run_says_what_would_happen_and_changes_nothing() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = computer(&server, "B", &[]);
    a.write("keep.txt", b"k");
    a.write("doomed.txt", b"d");
    sync(&a);
    sync(&b);
    std::fs::remove_file(a.path("doomed.txt")).expect("rm");
    a.write("fresh.txt", b"f");
    a.write("skip.tmp", b"t");
    let plan = a.ok(&["run", "d", "--once", "--dry-run"]);
    for line in [
        "would upload: fresh.txt (new here)",
        "would delete on the server: doomed.txt (deleted here)",
        "would skip: skip.tmp (default ignore list (*.tmp))",
        "nothing was changed",
    ] {
        assert!(plan.contains(line), "{line} missing from:\n{plan}");
    }
    // Nothing moved: the other computer still sees the old state, and so does a second dry run.
    sync(&b);
    assert!(b.path("doomed.txt").exists() && !b.path("fresh.txt").exists());
    let steps = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with("would "))
            .map(String::from)
            .collect()
    };
    assert_eq!(
        steps(&a.ok(&["run", "d", "--once", "--dry-run"])),
        steps(&plan)
    );
    // The real pass does what the dry run said; B's dry run then names the download and the
    // deletion it would make.
    sync(&a);
    let there = b.ok(&["run", "d", "--once", "--dry-run"]);
    assert!(
        there.contains("would download: fresh.txt (new on the server)"),
        "{there}"
    );
    assert!(
        there.contains("would delete here: doomed.txt (deleted on the server)"),
        "{there}"
    );
}
