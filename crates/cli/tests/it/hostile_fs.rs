//! Hostile file systems under a computer's folder (issue 13): a disk that fills up, a disk
//! that disappears mid-pass, a clock hours off, a case-insensitive folder, names in NFD.
//! Each ends with nothing lost: every file on the server and on the other computer.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::drive::computer;
use crate::harness::{fuse::FuseMount, noise, Client, Server};

/// Unmounts a test's small disk on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A computer whose folder is on a small disk that fills up mid-download: the pass fails
/// saying so, no local file is harmed, no half file is left in the folder, the server's data
/// is untouched; once there is room, the next pass completes.
#[test]
fn a_full_local_disk_is_a_clear_error_and_loses_nothing() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    let b = Client::new();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&b.root)
        .status()
        .expect("mount");
    assert!(
        mounted.success(),
        "this test needs root to mount a small tmpfs"
    );
    let _unmount = Mounted(b.root.clone());
    join(&b, &server, "B");
    b.write("mine.txt", b"B's own file");
    b.ok(&["run", "d", "--once"]);
    a.ok(&["run", "d", "--once"]);
    let big = noise(21, 6 << 20);
    a.write("big.bin", &big);
    a.write("small.txt", b"fits");
    a.ok(&["run", "d", "--once"]);

    let out = b.cairn(&["run", "d", "--once"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "a pass that could not write must say so: {text}"
    );
    assert!(
        text.contains("big.bin") && text.to_lowercase().contains("space"),
        "the error names the file and the full disk: {text}"
    );
    assert_eq!(
        std::fs::read(b.path("mine.txt")).ok().as_deref(),
        Some(&b"B's own file"[..])
    );
    assert!(
        !b.path("big.bin").exists(),
        "no half-written file in the folder"
    );
    assert!(server
        .admin(&["check", "--read-data"], None)
        .contains("no problems"));
    // Room again: the same pass completes, and nothing of A's was deleted because B lacked it.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=32m"])
        .arg(&b.root)
        .status()
        .expect("remount");
    assert!(grown.success());
    b.ok(&["run", "d", "--once"]);
    assert_eq!(std::fs::read(b.path("big.bin")).ok(), Some(big.clone()));
    a.ok(&["run", "d", "--once"]);
    assert_eq!(std::fs::read(a.path("big.bin")).ok(), Some(big));
    assert_eq!(
        std::fs::read(a.path("mine.txt")).ok().as_deref(),
        Some(&b"B's own file"[..])
    );
}

/// Connects `c` as alice and adds drive task `d` over the `backup` folder as computer `name`.
fn join(c: &Client, server: &Server, name: &str) {
    c.connect(server, "alice", "alice-pw");
    crate::drive::add_drive(c, &["--computer", name]);
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A 64 MiB ext4 image at `image`, mounted at `at` (a removable disk).
fn mount_disk(image: &Path, at: &Path) {
    if !image.exists() {
        assert!(succeeds(
            Command::new("truncate").arg("-s").arg("64M").arg(image)
        ));
        assert!(
            succeeds(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image)),
            "mkfs.ext4 (e2fsprogs) is missing: run scripts/test-servers"
        );
    }
    assert!(
        succeeds(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(image)
                .arg(at)
        ),
        "this test needs root to mount a loop device"
    );
    // A fresh file system's lost+found is not a user's file.
    let _ = std::fs::remove_dir(at.join("lost+found"));
}

/// Everything under `root` (not `.cairn`), by path, with its bytes.
fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            if rel.starts_with(".cairn") || rel == "lost+found" {
                continue;
            }
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push((rel, std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The disk under a computer's folder is pulled out in the middle of a pass (a lazy unmount
/// at several moments): whatever the pass had seen, nothing is deleted on the server; with
/// the disk gone every pass refuses (an empty folder that had files); plugged in again, the
/// next pass completes and the edit made before it went away reaches the other computer.
#[test]
fn a_disk_pulled_out_mid_pass_deletes_nothing() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    for i in 0..400 {
        a.write(
            &format!("docs/{:02}/{i:03}.txt", i % 20),
            format!("file {i}").as_bytes(),
        );
    }
    a.write("big.bin", &noise(5, 6 << 20));
    a.ok(&["run", "d", "--once"]);
    let everything = files(&a.root);
    let b = Client::new();
    let image = b.tmp().join("disk.img");
    mount_disk(&image, &b.root);
    let mut mounted = Some(Mounted(b.root.clone()));
    join(&b, &server, "B");
    b.ok(&["run", "d", "--once"]);
    for (round, delay) in [0u64, 30, 120, 400].into_iter().enumerate() {
        let edit = format!("edited on B in round {round}");
        b.write("docs/00/000.txt", edit.as_bytes());
        // New files too: the pass has something to send while the disk goes.
        b.write(&format!("new/{round}.bin"), &noise(round as u64, 2 << 20));
        let pass = b
            .cmd()
            .args(["run", "d", "--once"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("a pass starts");
        std::thread::sleep(Duration::from_millis(delay));
        drop(mounted.take());
        let _ = pass.wait_with_output();
        let out = b.cairn(&["run", "d", "--once"]);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success() && text.contains("empty"),
            "a pass over the empty mount point must refuse: {text}"
        );
        // Nothing of A's was deleted.
        a.ok(&["run", "d", "--once"]);
        let now = files(&a.root);
        for (path, data) in &everything {
            assert!(
                now.iter()
                    .any(|(p, d)| p == path && (d == data || p == "docs/00/000.txt")),
                "round {round}: {path} is gone from A"
            );
        }
        // Plugged in again: the pass completes and B's edit reaches A.
        mount_disk(&image, &b.root);
        mounted = Some(Mounted(b.root.clone()));
        b.ok(&["run", "d", "--once"]);
        a.ok(&["run", "d", "--once"]);
        assert_eq!(
            std::fs::read_to_string(a.path("docs/00/000.txt")).ok(),
            Some(edit)
        );
    }
    b.ok(&["run", "d", "--once"]);
    assert_eq!(files(&a.root), files(&b.root));
}

/// libfaketime, which `scripts/test-servers` installs.
fn libfaketime() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|arch| arch.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
        .expect("libfaketime is missing: run scripts/test-servers")
}

/// A pass of `c` on a clock `skew` off ("+6h", "-6h"); its output.
fn skewed_pass(c: &Client, skew: &str) -> String {
    let out = c
        .cmd()
        .args(["run", "d", "--once"])
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", skew)
        // Timeouts and retries keep real time.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .output()
        .expect("a pass runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "a pass with the clock {skew} failed: {text}"
    );
    text
}

/// Three computers whose clocks are six hours apart edit the same files: each still
/// connects and syncs (certificates, sessions), the edits meet as conflicts decided by
/// their times, and every edit survives as the head, a version or a conflict copy.
#[test]
fn clocks_hours_apart_lose_no_edit() {
    let server = Server::start();
    let skews = ["+0", "+6h", "-6h"];
    let computers: Vec<Client> = ["A", "B", "C"]
        .iter()
        .map(|name| computer(&server, name, &[]))
        .collect();
    let mut made = Vec::new();
    for round in 0..3 {
        for (k, c) in computers.iter().enumerate() {
            let text = format!("round {round}: the same file edited on {}", skews[k]);
            c.write("shared.txt", text.as_bytes());
            c.write(&format!("own-{k}.txt"), text.as_bytes());
            // Written by an editor on that clock: B's edits look six hours newer than they
            // are, C's six hours older, so the newest-wins rule is misled both ways.
            let now = std::time::SystemTime::now();
            let hours = Duration::from_secs(6 * 3600);
            let mtime = match k {
                1 => now + hours,
                2 => now - hours,
                _ => now,
            };
            for name in ["shared.txt".to_string(), format!("own-{k}.txt")] {
                std::fs::File::options()
                    .write(true)
                    .open(c.path(&name))
                    .and_then(|f| f.set_modified(mtime))
                    .expect("set mtime");
            }
            made.push(text);
        }
        // Every computer edits before any syncs: the edits meet.
        for (k, c) in computers.iter().enumerate() {
            skewed_pass(c, skews[k]);
        }
    }
    for _ in 0..2 {
        for (k, c) in computers.iter().enumerate() {
            skewed_pass(c, skews[k]);
        }
    }
    let trees: Vec<_> = computers.iter().map(|c| files(&c.root)).collect();
    assert_eq!(trees[0], trees[1], "A and B differ");
    assert_eq!(trees[1], trees[2], "B and C differ");
    let mut kept: Vec<String> = trees[0]
        .iter()
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .collect();
    let listed = computers[0].ok(&[
        "versions",
        "d",
        computers[0].path("shared.txt").to_str().expect("utf-8"),
    ]);
    for line in listed.lines().skip(1) {
        let Some(seq) = line.split_whitespace().next() else {
            continue;
        };
        let to = computers[0].tmp().join(format!("v{seq}"));
        let got = computers[0].cairn(&[
            "download",
            "d",
            computers[0].path("shared.txt").to_str().expect("utf-8"),
            "--version",
            seq,
            "--to",
            to.to_str().expect("utf-8"),
        ]);
        if got.status.success() {
            kept.push(std::fs::read_to_string(&to).unwrap_or_default());
        }
    }
    for edit in &made {
        assert!(kept.contains(edit), "the edit {edit:?} is nowhere");
    }
}

/// A case-insensitive, case-preserving file system (`crates/testkit/src/casefold_fs.py`, over
/// FUSE: this kernel has no ext4 casefold and no vfat) mounted at `at`, its files kept in
/// `backing`; unmounted on drop.
fn casefold(backing: &Path, at: &Path) -> FuseMount {
    FuseMount::mount("casefold_fs.py", backing, at, &[])
}

/// A computer whose folder is case-insensitive (as on a Mac or Windows) joins a folder that
/// holds names differing only in case: `Report.txt` and `report.txt`, and two folders
/// `Photos` and `photos`. It can hold only one of each pair: it says so, holds one, and
/// never passes one's content off as the other's; nothing on the server or the other computer
/// changes, and an edit made there reaches only the name it was made under.
#[test]
fn a_case_insensitive_folder_holds_one_of_each_clash_and_loses_neither() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    a.write("Report.txt", b"the upper one");
    a.write("report.txt", b"the lower one");
    a.write("Photos/a.jpg", b"photo a");
    a.write("photos/b.jpg", b"photo b");
    a.write("plain.txt", b"no clash");
    a.ok(&["run", "d", "--once"]);
    let before = files(&a.root);

    let b = Client::new();
    let backing = tempfile::tempdir().expect("tempdir");
    let _mount = casefold(backing.path(), &b.root);
    join(&b, &server, "B");
    let first = b.cairn(&["run", "d", "--once"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        said.contains("differ only in case"),
        "the clash is reported: {said}"
    );
    for _ in 0..2 {
        let _ = b.cairn(&["run", "d", "--once"]);
        a.ok(&["run", "d", "--once"]);
    }
    assert_eq!(
        files(&a.root),
        before,
        "A's files changed though no one edited them"
    );
    // Each file B holds has the content of the name it holds it under.
    let held = files(&b.root);
    for (path, bytes) in &held {
        let theirs = before.iter().find(|(p, _)| p == path);
        assert_eq!(
            theirs.map(|(_, b)| b),
            Some(bytes),
            "B holds {path} with another file's content; B: {held:?}"
        );
    }
    assert!(held.iter().any(|(p, _)| p == "plain.txt"), "B: {held:?}");
    assert!(
        held.iter()
            .any(|(p, _)| p.eq_ignore_ascii_case("report.txt")),
        "B holds one of the two reports: {held:?}"
    );

    // An edit on B reaches the name it was made under, and only that one.
    let (name, _) = held
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case("report.txt"))
        .expect("a report on B")
        .clone();
    b.write(&name, b"edited on B");
    let _ = b.cairn(&["run", "d", "--once"]);
    a.ok(&["run", "d", "--once"]);
    let after = files(&a.root);
    for (path, bytes) in &before {
        let now = after.iter().find(|(p, _)| p == path).map(|(_, b)| b);
        let want = if *path == name {
            &b"edited on B"[..]
        } else {
            &bytes[..]
        };
        assert_eq!(now.map(|b| &b[..]), Some(want), "{path} on A; A: {after:?}");
    }
    assert!(server
        .admin(&["check", "--read-data"], None)
        .contains("no problems"));
}

/// The names in `dir` as they are on disk.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".cairn")
        .collect();
    names.sort();
    names
}

/// A folder copied from a Mac holds its names in NFD. They sync under their NFC form, and the
/// Mac-side spelling stays: edits, new files, moves and deletes from another computer act on
/// the names as they are on disk, never beside them as NFC twins.
#[test]
fn names_in_nfd_sync_under_their_nfc_form_and_keep_their_spelling() {
    let (cafe_nfd, cafe) = ("Cafe\u{301}", "Caf\u{e9}");
    let (resume_nfd, resume) = ("re\u{301}sume\u{301}.txt", "r\u{e9}sum\u{e9}.txt");
    let (naive_nfd, naive) = ("nai\u{308}ve.md", "na\u{ef}ve.md");
    let server = Server::start();
    let mac = computer(&server, "mac", &[]);
    mac.write(&format!("{cafe_nfd}/{resume_nfd}"), b"v1");
    mac.write(naive_nfd, b"naive");
    mac.write("plain.txt", b"plain");
    let out = mac.ok(&["run", "d", "--once"]);
    assert!(!out.contains("NFC"), "nothing is held: {out}");
    let pc = computer(&server, "pc", &[]);
    pc.ok(&["run", "d", "--once"]);
    let mut want = vec![
        (format!("{cafe}/{resume}"), b"v1".to_vec()),
        (naive.to_string(), b"naive".to_vec()),
        ("plain.txt".to_string(), b"plain".to_vec()),
    ];
    want.sort();
    assert_eq!(
        files(&pc.root),
        want,
        "the other computer holds the NFC names"
    );

    // An edit from elsewhere lands in the Mac's own file.
    pc.write(&format!("{cafe}/{resume}"), b"v2 from pc");
    pc.ok(&["run", "d", "--once"]);
    mac.ok(&["run", "d", "--once"]);
    assert_eq!(names_in(&mac.root), {
        let mut n = vec![
            cafe_nfd.to_string(),
            naive_nfd.to_string(),
            "plain.txt".into(),
        ];
        n.sort();
        n
    });
    assert_eq!(
        names_in(&mac.root.join(cafe_nfd)),
        vec![resume_nfd.to_string()]
    );
    assert_eq!(
        std::fs::read(mac.root.join(cafe_nfd).join(resume_nfd)).expect("read"),
        b"v2 from pc"
    );

    // An edit on the Mac travels as the NFC name.
    mac.write(&format!("{cafe_nfd}/{resume_nfd}"), b"v3 from mac");
    mac.ok(&["run", "d", "--once"]);
    pc.ok(&["run", "d", "--once"]);
    assert_eq!(
        std::fs::read(pc.root.join(cafe).join(resume)).expect("read"),
        b"v3 from mac"
    );

    // A new file in the folder, a move and a delete from elsewhere act on the Mac's names.
    pc.write(&format!("{cafe}/new.txt"), b"new");
    std::fs::rename(
        pc.root.join(cafe).join(resume),
        pc.root.join(cafe).join("cv.txt"),
    )
    .expect("move");
    std::fs::remove_file(pc.root.join(naive)).expect("delete");
    pc.ok(&["run", "d", "--once"]);
    mac.ok(&["run", "d", "--once"]);
    assert_eq!(
        names_in(&mac.root),
        vec![cafe_nfd.to_string(), "plain.txt".to_string()]
    );
    assert_eq!(
        names_in(&mac.root.join(cafe_nfd)),
        vec!["cv.txt".to_string(), "new.txt".to_string()]
    );
    assert_eq!(
        std::fs::read(mac.root.join(cafe_nfd).join("cv.txt")).expect("read"),
        b"v3 from mac"
    );
    // Quiet afterwards: nothing goes back and forth.
    for c in [&mac, &pc] {
        let out = c.ok(&["run", "d", "--once"]);
        assert!(
            out.contains("0 uploaded, 0 downloaded, 0 moved, 0 deleted here, 0 deleted on the server, 0 conflicts, 0 failed"),
            "{out}"
        );
    }
    assert_eq!(
        files(&pc.root),
        vec![
            (format!("{cafe}/cv.txt"), b"v3 from mac".to_vec()),
            (format!("{cafe}/new.txt"), b"new".to_vec()),
            ("plain.txt".to_string(), b"plain".to_vec()),
        ]
    );
    assert!(server
        .admin(&["check", "--read-data"], None)
        .contains("no problems"));
}
