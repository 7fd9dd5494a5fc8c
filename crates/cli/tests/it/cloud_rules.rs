//! The cloud rules of seeds 002 and 003 end to end against moto: conflicts keep the local
//! edit, the remote's version stays as a kept version or a conflict copy.

use std::time::Duration;

use crate::cloud::{add_task, connect, now_text, read, start_moto, Moto};
use crate::harness::Client;

/// Two computers on one cloud path of `moto`, with `extra` task options.
fn two_computers(moto: &Moto, remote: &str, extra: &[&str]) -> (Client, Client) {
    let (a, b) = (Client::new(), Client::new());
    for c in [&a, &b] {
        connect(c, moto, "s3");
        add_task(c, "s3", remote, extra);
    }
    (a, b)
}

/// The files of `c`'s folder whose names start with `stem`, by name.
fn files_starting(c: &Client, stem: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&c.root)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(stem))
        .map(|n| {
            let data = std::fs::read(c.root.join(&n)).expect("read");
            (n, data)
        })
        .collect();
    out.sort();
    out
}

/// B edited first, A later and A synced first: B's edit stays (the local edit always does,
/// whatever the clocks), and A's comes back as a conflict copy on the cloud, reaching both.
#[test]
fn a_conflict_keeps_the_local_edit_and_the_remotes_as_a_conflict_copy() {
    let moto = start_moto();
    let (a, b) = two_computers(&moto, "conflicts", &[]);
    a.write("notes.txt", b"first");
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    b.write("notes.txt", b"edit on b");
    std::thread::sleep(Duration::from_millis(50));
    a.write("notes.txt", b"edit on a, newer");
    a.ok(&["run", "t"]);
    let out = b.ok(&["run", "t"]);
    assert!(out.contains("1 conflicts"), "{out}");
    assert_eq!(read(&b, "notes.txt").as_deref(), Some(&b"edit on b"[..]));
    // The next passes bring the conflict copy down on both computers.
    b.ok(&["run", "t"]);
    a.ok(&["run", "t"]);
    for c in [&a, &b] {
        let seen = files_starting(c, "notes");
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].0, "notes.txt");
        assert_eq!(seen[0].1, b"edit on b");
        assert!(seen[1].0.ends_with("_Conflict.txt"), "{seen:?}");
        assert_eq!(seen[1].1, b"edit on a, newer");
    }
    let again = a.ok(&["run", "t"]);
    assert!(!again.contains("1 uploaded"), "{again}");
}

/// With `--keep-versions` the remote's edit becomes a kept version instead: no conflict copy,
/// and `versions`/`restore` give it back.
#[test]
fn a_conflict_keeps_the_remotes_edit_as_a_version_where_versions_are_kept() {
    let moto = start_moto();
    let (a, b) = two_computers(&moto, "kept", &["--keep-versions", "4"]);
    a.write("notes.txt", b"first");
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    b.write("notes.txt", b"edit on b");
    a.write("notes.txt", b"edit on a");
    a.ok(&["run", "t"]);
    // The cloud's times have whole seconds: the steps are more than a second apart.
    std::thread::sleep(Duration::from_millis(1500));
    let while_a_was_head = now_text();
    std::thread::sleep(Duration::from_millis(1500));
    let out = b.ok(&["run", "t"]);
    assert!(out.contains("1 conflicts"), "{out}");
    b.ok(&["run", "t"]);
    a.ok(&["run", "t"]);
    for c in [&a, &b] {
        let seen = files_starting(c, "notes");
        assert_eq!(seen, vec![("notes.txt".into(), b"edit on b".to_vec())]);
    }
    let notes = a.path("notes.txt");
    let notes = notes.to_str().expect("utf-8");
    let listed = a.ok(&["versions", "t", notes]);
    assert!(listed.lines().count() >= 2, "kept versions: {listed}");
    let to = a.tmp().join("back");
    a.ok(&[
        "restore",
        "t",
        notes,
        "--at",
        &while_a_was_head,
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        std::fs::read(to.join("notes.txt")).expect("restored"),
        b"edit on a"
    );
}

/// `versions` and `restore` of an encrypted task: the kept versions are stored under
/// encrypted names with encrypted contents, and are listed and restored in the clear.
#[test]
fn an_encrypted_task_lists_and_restores_its_kept_versions() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "s3");
    let root = c.root.to_str().expect("utf-8").to_string();
    let out = c.cairn_stdin(
        &[
            "cloud",
            "add",
            "t",
            "--connection",
            "s3",
            "--local",
            &root,
            "--remote",
            "sealed",
            "--encrypt",
            "--keep-versions",
            "3",
        ],
        "correct horse battery\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.write("stays.txt", b"so the folder is never empty");
    c.write("private/doc.txt", b"version one");
    c.ok(&["run", "t"]);
    std::thread::sleep(Duration::from_millis(1500));
    let after_one = now_text();
    std::thread::sleep(Duration::from_millis(1500));
    c.write("private/doc.txt", b"version two, longer");
    c.ok(&["run", "t"]);
    std::thread::sleep(Duration::from_millis(1500));
    let after_two = now_text();
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::remove_file(c.path("private/doc.txt")).expect("rm");
    c.ok(&["run", "t"]);

    let doc = c.path("private/doc.txt");
    let doc = doc.to_str().expect("utf-8");
    let listed = c.ok(&["versions", "t", doc]);
    // A header and two kept versions, with their plain sizes.
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains(" 11\n"), "{listed}");
    assert!(listed.contains(" 19\n"), "{listed}");

    // The whole folder as it was: its paths are found by decrypting the stored ones.
    let to = c.tmp().join("back");
    let private = c.path("private");
    c.ok(&[
        "restore",
        "t",
        private.to_str().expect("utf-8"),
        "--at",
        &after_one,
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        std::fs::read(to.join("private/doc.txt")).expect("restored"),
        b"version one"
    );
    c.ok(&["restore", "t", "--at", &after_two]);
    assert_eq!(
        std::fs::read(doc).expect("restored"),
        b"version two, longer"
    );
}
