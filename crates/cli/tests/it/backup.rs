//! Backup tasks: what is uploaded, what is skipped, and what crosses the network.

use std::os::unix::ffi::OsStrExt;

use crate::harness::{noise, sent_bytes, Client, Server};

#[test]
fn first_backup_keeps_links_empty_folders_and_skips_special_and_ignored_files() {
    let server = Server::start();
    let c = Client::new();
    c.write("a.txt", b"alpha");
    c.write("sub/b.txt", b"beta");
    std::fs::create_dir_all(c.path("empty")).expect("mkdir");
    std::os::unix::fs::symlink("a.txt", c.path("link")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/target", c.path("dangling")).expect("symlink");
    c.write(".DS_Store", b"x");
    c.write("Thumbs.db", b"x");
    c.write("notes.TMP", b"x");
    c.write("~$report.docx", b"x");
    let fifo = c.path("pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    c.backup_task(&server, &[]);
    let out = c.cairn(&["run", "t", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("a FIFO; skipped"));
    let listed = c.ls(&[]);
    let expect = [
        ("file", "a.txt"),
        ("symlink", "dangling"),
        ("dir", "empty"),
        ("symlink", "link"),
        ("dir", "sub"),
        ("file", "sub/b.txt"),
    ];
    let got: Vec<(&str, &str)> = listed
        .iter()
        .map(|(k, p)| (k.as_str(), p.as_str()))
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn changes_become_versions_and_an_unchanged_run_sends_nothing() {
    let server = Server::start();
    let c = Client::new();
    c.write("doc.txt", b"one");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    let again = c.ok(&["run", "t", "--once"]);
    assert_eq!(sent_bytes(&again), 0, "{again}");
    assert!(again.contains("1 unchanged"), "{again}");
    c.write("doc.txt", b"two!");
    c.ok(&["run", "t", "--once"]);
    let versions = c.ok(&["versions", "t", c.path("doc.txt").to_str().expect("utf-8")]);
    assert_eq!(
        versions.lines().count(),
        3,
        "header + 2 versions:\n{versions}"
    );
}

#[test]
fn rules_max_size_names_and_extensions() {
    let server = Server::start();
    let c = Client::new();
    c.write("big.bin", &noise(1, 2 * 1024 * 1024));
    c.write("small.bin", b"ok");
    c.write("old.bak", b"x");
    c.write("OLD.BAK", b"x");
    c.write("disk.ISO", b"x");
    c.backup_task(
        &server,
        &[
            "--max-size",
            "1",
            "--exclude-name",
            "*.bak",
            "--exclude-ext",
            "*.iso",
        ],
    );
    c.ok(&["run", "t", "--once"]);
    // Name rules match in the file system's case (Linux: case-sensitive), extensions in any.
    assert_eq!(c.ls_paths(), vec!["OLD.BAK", "small.bin"]);
    let too_big = c.fails(&[
        "backup",
        "add",
        "u",
        "--local",
        c.root.to_str().expect("utf-8"),
        "--connection",
        "srv",
        "--folder",
        "backup",
        "--max-size",
        "10240001",
    ]);
    assert!(too_big.contains("over the limit"), "{too_big}");
}

#[test]
fn deleted_files_leave_the_head_unless_keep_deleted() {
    let server = Server::start();
    let c = Client::new();
    c.write("gone.txt", b"bye");
    c.write("kept.txt", b"stay");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    std::fs::remove_file(c.path("gone.txt")).expect("rm");
    c.ok(&["run", "t", "--once"]);
    assert_eq!(c.ls_paths(), vec!["kept.txt"]);
    assert!(c
        .ls(&["--deleted"])
        .contains(&("deleted".into(), "gone.txt".into())));

    let k = Client::new();
    k.write("x.txt", b"x");
    k.write("y.txt", b"y");
    k.connect(&server, "alice", "alice-pw");
    let root = k.root.to_str().expect("utf-8");
    k.ok(&[
        "backup",
        "add",
        "t",
        "--local",
        root,
        "--connection",
        "srv",
        "--folder",
        "backup",
        "--computer",
        "pc2",
        "--keep-deleted",
    ]);
    k.ok(&["run", "t", "--once"]);
    std::fs::remove_file(k.path("x.txt")).expect("rm");
    k.ok(&["run", "t", "--once"]);
    assert_eq!(k.ls_paths(), vec!["x.txt", "y.txt"]);
}

#[test]
fn a_small_edit_in_a_large_file_sends_only_nearby_chunks() {
    let server = Server::start();
    let c = Client::new();
    let mut data = noise(2, 16 * 1024 * 1024);
    c.write("big.bin", &data);
    c.backup_task(&server, &[]);
    let first = c.ok(&["run", "t", "--once"]);
    assert!(sent_bytes(&first) >= data.len() as u64);
    let mid = data.len() / 2;
    data[mid..mid + 4096].iter_mut().for_each(|b| *b ^= 0x5a);
    c.write("big.bin", &data);
    let second = c.ok(&["run", "t", "--once"]);
    assert!(sent_bytes(&second) < 1024 * 1024, "{second}");
}

#[test]
fn removing_and_adding_a_task_again_uploads_nothing_already_there() {
    let server = Server::start();
    let c = Client::new();
    c.write("a.bin", &noise(3, 300_000));
    c.write("b/c.txt", b"c");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    c.ok(&["backup", "remove", "t"]);
    assert!(c.fails(&["ls", "t"]).contains("no task named t"));
    let root = c.root.to_str().expect("utf-8");
    c.ok(&[
        "backup",
        "add",
        "t",
        "--local",
        root,
        "--connection",
        "srv",
        "--folder",
        "backup",
        "--computer",
        "pc",
    ]);
    let out = c.ok(&["run", "t", "--once"]);
    assert_eq!(sent_bytes(&out), 0, "{out}");
    assert_eq!(c.ls_paths(), vec!["a.bin", "b", "b/c.txt"]);
}

#[test]
fn several_local_folders_land_under_the_computer_name() {
    let server = Server::start();
    let c = Client::new();
    let other = c.tmp().join("photos");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("p.jpg"), b"jpg").expect("write");
    c.write("d.txt", b"d");
    c.connect(&server, "alice", "alice-pw");
    let out = c.ok(&[
        "backup",
        "add",
        "t",
        "--local",
        c.root.to_str().expect("utf-8"),
        "--local",
        other.to_str().expect("utf-8"),
        "--connection",
        "srv",
        "--folder",
        "backup",
        "--computer",
        "laptop",
    ]);
    assert!(
        out.contains("backup/laptop/docs") && out.contains("backup/laptop/photos"),
        "{out}"
    );
    c.ok(&["run", "t", "--once"]);
    let listing = c.ok(&["ls", "t"]);
    assert!(
        listing.contains("photos/p.jpg") && listing.contains("docs/d.txt"),
        "{listing}"
    );
}

#[test]
fn unusable_names_are_reported_not_fatal() {
    let server = Server::start();
    let c = Client::new();
    c.write("fine.txt", b"ok");
    let bad = std::ffi::OsStr::from_bytes(b"bad-\xff-name");
    std::fs::write(c.root.join(bad), b"x").expect("write invalid utf-8 name");
    // A path over 2048 bytes, built from allowed names.
    let mut deep = c.root.clone();
    for i in 0..9 {
        deep = deep.join(format!("{i}{}", "d".repeat(249)));
    }
    std::fs::create_dir_all(&deep).expect("deep dirs");
    std::fs::write(deep.join("leaf.txt"), b"leaf").expect("write");
    c.backup_task(&server, &[]);
    let out = c.cairn(&["run", "t", "--once"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
    assert!(err.contains("longer than 2048 bytes"), "{err}");
    assert!(c.ls_paths().contains(&"fine.txt".to_string()));
}

#[test]
fn retention_keeps_the_last_n_versions_and_gc_frees_the_rest() {
    let server = Server::start();
    server.alice_folder("short", "3");
    let c = Client::new();
    c.connect(&server, "alice", "alice-pw");
    let root = c.root.to_str().expect("utf-8");
    c.ok(&[
        "backup",
        "add",
        "t",
        "--local",
        root,
        "--connection",
        "srv",
        "--folder",
        "short",
        "--computer",
        "pc",
    ]);
    for i in 0..5u64 {
        c.write("f.bin", &noise(100 + i, 200_000));
        c.ok(&["run", "t", "--once"]);
    }
    let versions = c.ok(&["versions", "t", c.path("f.bin").to_str().expect("utf-8")]);
    assert_eq!(
        versions.lines().count(),
        4,
        "header + 3 versions:\n{versions}"
    );
    // gc spares what was touched since the run before it, so the second run frees the two
    // dropped versions: 200,000 bytes each, shared with nothing.
    let freed: u64 = (0..2)
        .map(|_| {
            let out = server.admin(&["gc"], None);
            out.split(" chunks (")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .expect("gc output")
        })
        .sum();
    assert_eq!(freed, 400_000);
    assert!(server
        .admin(&["check", "--read-data"], None)
        .contains("no problems"));
}

#[test]
fn check_names_missing_and_corrupt_chunks() {
    let server = Server::start();
    let c = Client::new();
    c.write("big.bin", &noise(5, 3 * 1024 * 1024));
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    let mut objects: Vec<_> = walk(&server.data.join("chunks/chunks"));
    objects.sort();
    assert!(objects.len() >= 2, "large chunks live in the object store");
    let mut bytes = std::fs::read(&objects[0]).expect("read chunk");
    bytes[0] ^= 1;
    std::fs::write(&objects[0], bytes).expect("corrupt chunk");
    std::fs::remove_file(&objects[1]).expect("remove chunk");
    let quick = server.admin_raw(&["check"], None);
    let quick_out = String::from_utf8_lossy(&quick.stdout);
    assert!(!quick.status.success());
    let missing = objects[1]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert!(
        quick_out.contains(&format!("chunk {missing} is missing")),
        "{quick_out}"
    );
    let full = server.admin_raw(&["check", "--read-data"], None);
    let full_out = String::from_utf8_lossy(&full.stdout);
    let corrupt = objects[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert!(
        full_out.contains(&format!("chunk {corrupt} in")) && full_out.contains("corrupt"),
        "{full_out}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// (kind, path as shown) of every line of `cairn ls t --deleted`.
fn listing(c: &Client) -> Vec<(String, String)> {
    c.ok(&["ls", "t", "--deleted"])
        .lines()
        .filter_map(|l| {
            let kind = l.split_whitespace().next()?.to_string();
            let path = l.split("  ").last()?.trim().to_string();
            Some((kind, path))
        })
        .collect()
}

fn is_live(list: &[(String, String)], path: &std::path::Path) -> bool {
    let path = path.to_str().expect("utf-8");
    list.iter().any(|(k, p)| p == path && k != "deleted")
}

#[test]
fn task_set_changes_a_backups_folders_and_never_deletes_what_the_old_folder_sent() {
    let server = Server::start();
    let c = Client::new();
    c.write("a.txt", b"a");
    c.write("keep/b.txt", b"b");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);

    // Another folder with the same name lands in the same place on the server (pc/docs), and
    // lacks the old folder's files: the next pass must not take their absence as deletions.
    let moved = c.tmp().join("moved/docs");
    std::fs::create_dir_all(&moved).expect("mkdir");
    std::fs::write(moved.join("new.txt"), b"new").expect("write");
    std::fs::write(moved.join("stay.txt"), b"stay").expect("write");
    let moved_arg = moved.to_str().expect("utf-8");
    let out = c.ok(&["task", "set", "t", "--local", moved_arg]);
    assert!(out.contains("backup/pc/docs"), "{out}");
    assert!(out.contains("no longer synced"), "{out}");
    c.ok(&["run", "t", "--once"]);
    let list = listing(&c);
    for p in ["a.txt", "keep/b.txt", "new.txt"] {
        assert!(
            is_live(&list, &moved.join(p)),
            "{p} is not live in {list:?}"
        );
    }

    // A second folder, then the same two in the other order: each keeps its own base, so a
    // file deleted afterwards is still deleted on the server, and nothing else is.
    let photos = c.tmp().join("photos");
    std::fs::create_dir_all(&photos).expect("mkdir");
    std::fs::write(photos.join("p.jpg"), b"jpg").expect("write");
    std::fs::write(photos.join("q.jpg"), b"jpg2").expect("write");
    let photos_arg = photos.to_str().expect("utf-8");
    c.ok(&[
        "task", "set", "t", "--local", moved_arg, "--local", photos_arg,
    ]);
    c.ok(&["run", "t", "--once"]);
    c.ok(&[
        "task", "set", "t", "--local", photos_arg, "--local", moved_arg,
    ]);
    std::fs::remove_file(photos.join("q.jpg")).expect("rm");
    std::fs::remove_file(moved.join("new.txt")).expect("rm");
    let out = c.ok(&["run", "t", "--once"]);
    assert!(out.contains("2 deleted"), "{out}");
    let list = listing(&c);
    assert!(is_live(&list, &photos.join("p.jpg")), "{list:?}");
    assert!(!is_live(&list, &photos.join("q.jpg")), "{list:?}");
    assert!(!is_live(&list, &moved.join("new.txt")), "{list:?}");
    assert!(is_live(&list, &moved.join("a.txt")), "{list:?}");

    // Filters change too; what they now leave out stays on the server.
    std::fs::write(photos.join("big.raw"), noise(4, 2 * 1024 * 1024)).expect("write");
    std::fs::create_dir_all(moved.join("keep")).expect("mkdir");
    std::fs::write(moved.join("c.log"), b"log").expect("write");
    std::fs::write(moved.join("keep/d.txt"), b"d").expect("write");
    c.ok(&[
        "task",
        "set",
        "t",
        "--max-size",
        "1",
        "--exclude-ext",
        "log",
        "--exclude-dir",
        "keep",
    ]);
    c.ok(&["run", "t", "--once"]);
    let list = listing(&c);
    assert!(!is_live(&list, &photos.join("big.raw")), "{list:?}");
    assert!(!is_live(&list, &moved.join("keep/d.txt")), "{list:?}");
    assert!(!is_live(&list, &moved.join("c.log")), "{list:?}");
    assert!(is_live(&list, &moved.join("keep/b.txt")), "{list:?}");
    // An empty value clears a list of rules.
    c.ok(&["task", "set", "t", "--exclude-ext", "", "--exclude-dir", ""]);
    c.ok(&["run", "t", "--once"]);
    let list = listing(&c);
    assert!(is_live(&list, &moved.join("keep/d.txt")), "{list:?}");
    assert!(is_live(&list, &moved.join("c.log")), "{list:?}");

    // Bad folders are refused, naming them, and change nothing.
    let err = c.fails(&["task", "set", "t", "--local", "/no/such/folder"]);
    assert!(err.contains("/no/such/folder"), "{err}");
    let err = c.fails(&[
        "task",
        "set",
        "t",
        "--local",
        photos_arg,
        "--local",
        moved_arg,
        "--local",
        c.root.to_str().expect("utf-8"),
    ]);
    assert!(err.contains("both land in"), "{err}");
    let out = c.ok(&["run", "t", "--once"]);
    assert!(
        out.contains("0 uploaded") && out.contains("0 deleted"),
        "{out}"
    );
}

#[test]
fn run_draws_a_progress_bar_on_a_terminal_and_nothing_extra_into_a_pipe() {
    let server = Server::start();
    let c = Client::new();
    for i in 0..5 {
        c.write(&format!("f{i}.bin"), &noise(i, 100_000));
    }
    c.backup_task(&server, &[]);
    let out = c.cairn(&["run", "t", "--once"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "only the summary: {stdout:?}");
    assert!(stdout.starts_with("backup t: 5 uploaded"), "{stdout:?}");
    for text in [&stdout, &String::from_utf8_lossy(&out.stderr)] {
        assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text:?}");
    }

    // On a terminal (script(1) gives the run a pseudo-terminal) the bar is drawn (how often
    // depends on the machine's speed) and cleared before the summary.
    for i in 0..5 {
        c.write(&format!("g{i}.bin"), &noise(10 + i, 100_000));
    }
    let log = c.tmp().join("typescript");
    let out = std::process::Command::new("script")
        .env("CAIRN_HOME", &c.home)
        .env("COLUMNS", "100")
        .current_dir(c.tmp())
        .args([
            "-qe",
            "-c",
            &format!("{} run t --once", crate::harness::BIN),
        ])
        .arg(&log)
        .output()
        .expect("script(1) from util-linux runs the client on a pseudo-terminal");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("\r[") && screen.contains(" files  ") && screen.contains("\r\u{1b}[K"),
        "{screen:?}"
    );
    assert!(
        screen.contains("\r\u{1b}[Kbackup t: 5 uploaded"),
        "the summary replaces the bar: {screen:?}"
    );

    // With --json the terminal gets the document alone.
    for i in 0..5 {
        c.write(&format!("h{i}.bin"), &noise(20 + i, 100_000));
    }
    let out = std::process::Command::new("script")
        .env("CAIRN_HOME", &c.home)
        .current_dir(c.tmp())
        .args([
            "-qe",
            "-c",
            &format!("{} run t --once --json", crate::harness::BIN),
        ])
        .arg(&log)
        .output()
        .expect("script(1)");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen:?}");
    assert!(
        screen.contains("\"tasks\"") && !screen.contains("\r[") && !screen.contains('\u{1b}'),
        "{screen:?}"
    );
}

#[test]
fn a_dry_run_lists_the_uploads_and_sends_nothing() {
    let server = Server::start();
    let c = Client::new();
    c.write("doc.txt", b"one");
    c.backup_task(&server, &[]);
    let plan = c.ok(&["run", "t", "--once", "--dry-run"]);
    assert!(plan.contains("would upload: doc.txt (new here)"), "{plan}");
    assert!(c.ls_paths().is_empty(), "a dry run sends nothing");
    c.ok(&["run", "t", "--once"]);
    assert_eq!(c.ls_paths(), vec!["doc.txt"]);
    std::fs::remove_file(c.path("doc.txt")).expect("rm");
    c.write("other.txt", b"keeps the folder non-empty");
    let plan = c.ok(&["run", "t", "--once", "--dry-run"]);
    assert!(
        plan.contains("would delete on the server: doc.txt (deleted here)"),
        "{plan}"
    );
    assert!(c.ls_paths().contains(&"doc.txt".to_string()));
}

#[test]
fn a_renamed_file_is_moved_on_the_server_and_sends_no_content() {
    let server = Server::start();
    let c = Client::new();
    c.write("report.bin", &noise(9, 600_000));
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    std::fs::rename(c.path("report.bin"), c.path("report-final.bin")).expect("rename");
    let out = c.ok(&["run", "t", "--once"]);
    assert_eq!(sent_bytes(&out), 0, "{out}");
    assert_eq!(c.ls_paths(), vec!["report-final.bin"]);
    // The old name stays restorable: a move keeps its history.
    let deleted = c.ok(&["ls", "t", "--deleted"]);
    assert!(deleted.contains("report.bin"), "{deleted}");
}
