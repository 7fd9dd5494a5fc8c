//! The version explorer: versions, ls at a time, restore (in place and elsewhere), download.

use std::time::Duration;

use crate::harness::{Client, Server};

fn stamp_between() -> String {
    // A moment strictly between two runs, in RFC 3339, read from the clock like a user would.
    std::thread::sleep(Duration::from_millis(1100));
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    std::thread::sleep(Duration::from_millis(1100));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn restore_a_file_as_it_was_at_a_time_and_a_deleted_file() {
    let server = Server::start();
    let c = Client::new();
    c.write("notes/plan.txt", b"version one");
    c.write("notes/old.txt", b"soon deleted");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    let t1 = stamp_between();
    c.write("notes/plan.txt", b"version two, longer");
    std::fs::remove_file(c.path("notes/old.txt")).expect("rm");
    c.ok(&["run", "t", "--once"]);

    let at_t1 = c.ls(&["--at", &t1]);
    assert!(
        at_t1.contains(&("file".into(), "notes/old.txt".into())),
        "{at_t1:?}"
    );
    assert!(!c.ls(&[]).iter().any(|(_, p)| p == "notes/old.txt"));
    assert!(c
        .ls(&["--deleted"])
        .contains(&("deleted".into(), "notes/old.txt".into())));

    // In place: plan.txt is backed up as "two", so restoring "one" over it loses nothing.
    let plan = c.path("notes/plan.txt");
    c.ok(&["restore", "t", plan.to_str().expect("utf-8"), "--at", &t1]);
    assert_eq!(std::fs::read(&plan).expect("read"), b"version one");
    // A deleted file comes back from the time it existed, by a path relative to the cwd.
    c.ok(&["restore", "t", "docs/notes/old.txt", "--at", &t1]);
    assert_eq!(
        std::fs::read(c.path("notes/old.txt")).expect("read"),
        b"soon deleted"
    );
}

#[test]
fn restoring_a_whole_task_elsewhere_lands_under_the_folder_name() {
    let server = Server::start();
    let c = Client::new();
    c.write("a.txt", b"a");
    c.write("sub/deeper/b.txt", b"b");
    std::fs::create_dir_all(c.path("empty")).expect("mkdir");
    std::os::unix::fs::symlink("a.txt", c.path("ln")).expect("symlink");
    std::fs::set_permissions(
        c.path("a.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o751),
    )
    .expect("chmod");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    let dest = c.tmp().join("restore-here");
    c.ok(&["restore", "t", "--to", dest.to_str().expect("utf-8")]);
    let base = dest.join("docs");
    assert_eq!(std::fs::read(base.join("a.txt")).expect("a"), b"a");
    assert_eq!(
        std::fs::read(base.join("sub/deeper/b.txt")).expect("b"),
        b"b"
    );
    assert!(base.join("empty").is_dir());
    assert_eq!(
        std::fs::read_link(base.join("ln")).expect("link").to_str(),
        Some("a.txt")
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(base.join("a.txt"))
            .expect("md")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o751);
    let mtime = |p: &std::path::Path| std::fs::metadata(p).expect("md").modified().expect("mtime");
    assert_eq!(mtime(&base.join("a.txt")), mtime(&c.path("a.txt")));
    assert!(
        !base.join(".cairn").exists(),
        "the working folder is cleaned up"
    );
    // A sub-folder lands under its own name.
    let sub_dest = c.tmp().join("sub-only");
    c.ok(&[
        "restore",
        "t",
        c.path("sub").to_str().expect("utf-8"),
        "--to",
        sub_dest.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        std::fs::read(sub_dest.join("sub/deeper/b.txt")).expect("b"),
        b"b"
    );
}

#[test]
fn restore_in_place_never_overwrites_an_unsaved_local_edit() {
    let server = Server::start();
    let c = Client::new();
    c.write("report.txt", b"backed up");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    c.write("report.txt", b"edited after the backup");
    let out = c.ok(&[
        "restore",
        "t",
        c.path("report.txt").to_str().expect("utf-8"),
    ]);
    assert!(out.contains("kept the local file"), "{out}");
    assert_eq!(
        std::fs::read(c.path("report.txt")).expect("read"),
        b"backed up"
    );
    let kept: Vec<_> = std::fs::read_dir(&c.root)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("report_pc_") && n.ends_with("_Conflict.txt"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read(c.root.join(&kept[0])).expect("read"),
        b"edited after the backup"
    );
}

#[test]
fn download_a_given_version_to_a_file() {
    let server = Server::start();
    let c = Client::new();
    c.write("v.txt", b"first");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    c.write("v.txt", b"second");
    c.ok(&["run", "t", "--once"]);
    let versions = c.ok(&["versions", "t", c.path("v.txt").to_str().expect("utf-8")]);
    let oldest = versions
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .expect("version")
        .to_string();
    let out = c.tmp().join("old-v.txt");
    c.ok(&[
        "download",
        "t",
        c.path("v.txt").to_str().expect("utf-8"),
        "--version",
        &oldest,
        "--to",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(std::fs::read(&out).expect("read"), b"first");
    let err = c.fails(&[
        "download",
        "t",
        c.path("v.txt").to_str().expect("utf-8"),
        "--version",
        "999",
        "--to",
        out.to_str().expect("utf-8"),
    ]);
    assert!(err.contains("has no version 999"), "{err}");
}

#[test]
fn paths_outside_the_task_and_bad_times_are_clear_errors() {
    let server = Server::start();
    let c = Client::new();
    c.write("x", b"x");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    let err = c.fails(&["versions", "t", "/etc/passwd"]);
    assert!(
        err.contains("is not inside the task's local folders"),
        "{err}"
    );
    let err = c.fails(&["ls", "t", "--at", "last tuesday-ish"]);
    assert!(err.contains("invalid time"), "{err}");
    let err = c.fails(&["restore", "t", "--at", "2001-01-01"]);
    assert!(err.contains("nothing to restore"), "{err}");
}

#[test]
fn ls_and_versions_print_json_with_stable_field_names() {
    let server = Server::start();
    let c = Client::new();
    c.write("notes/plan.txt", b"one");
    c.write("gone.txt", b"bye");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    c.write("notes/plan.txt", b"two, longer");
    std::fs::remove_file(c.path("gone.txt")).expect("rm");
    c.ok(&["run", "t", "--once"]);

    let plan = c.path("notes/plan.txt");
    let plan_arg = plan.to_str().expect("utf-8");
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["versions", "t", plan_arg, "--json"])).expect("json");
    let versions = json.as_array().expect("an array");
    assert_eq!(versions.len(), 2, "{json}");
    let sizes: Vec<u64> = versions.iter().filter_map(|v| v["size"].as_u64()).collect();
    assert_eq!(sizes, [11, 3], "newest first: {json}");
    for v in versions {
        assert!(v["version"].as_i64().is_some_and(|n| n > 0), "{v}");
        assert_eq!(v["kind"], "file");
        assert_eq!(v["user"], "alice");
        assert!(v["hash"].as_str().is_some_and(|h| h.len() == 64), "{v}");
        assert!(v["saved"].as_str().is_some_and(|s| s.ends_with('Z')), "{v}");
        assert!(v["saved_ns"].as_i64().is_some_and(|n| n > 0), "{v}");
        assert!(v["computer"].is_string() && v["device"].is_string(), "{v}");
    }
    assert!(versions[0]["version"].as_i64() > versions[1]["version"].as_i64());

    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["ls", "t", "--deleted", "--json"])).expect("json");
    let entries = json.as_array().expect("an array");
    let find = |rel: &str| {
        let local = c.path(rel).to_str().expect("utf-8").to_string();
        entries
            .iter()
            .find(|e| e["path"] == local.as_str())
            .unwrap_or_else(|| panic!("no {local} in {json}"))
    };
    let p = find("notes/plan.txt");
    assert_eq!(p["kind"], "file");
    assert_eq!(p["size"], 11);
    assert_eq!(p["server_path"], "pc/docs/notes/plan.txt");
    assert_eq!(p["version"], versions[0]["version"]);
    assert_eq!(find("notes")["kind"], "dir");
    assert_eq!(find("gone.txt")["kind"], "deleted");
    // Without --deleted the deleted file is left out; at no time before the first run, empty.
    let live: serde_json::Value =
        serde_json::from_str(&c.ok(&["ls", "t", "--json"])).expect("json");
    assert!(!live.to_string().contains("gone.txt"), "{live}");
    let empty = c.ok(&["ls", "t", "--json", "--at", "2000-01-01T00:00:00Z"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&empty).expect("json"),
        serde_json::json!([])
    );
}

/// `cairn restore t NAME` held (test hook) after it planned and before it wrote, while
/// `meanwhile` changes the target; returns what restore said.
#[cfg(feature = "test-hooks")]
fn restore_racing(
    c: &Client,
    name: &str,
    extra: &[&str],
    meanwhile: impl FnOnce(&std::path::Path),
) -> String {
    let gate = c.tmp().join(format!("gate-{name}"));
    std::fs::create_dir_all(&gate).expect("mkdir");
    let target = c.path(name);
    let child = c
        .cmd()
        .args(["restore", "t", target.to_str().expect("utf-8")])
        .args(extra)
        .env("CAIRN_TEST_RESTORE_GATE", &gate)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("restore");
    crate::harness::wait_until(60, "restore to plan", || gate.join("planned").exists());
    meanwhile(&target);
    std::fs::write(gate.join("go"), b"").expect("open the gate");
    let out = child.wait_with_output().expect("restore ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    said
}

/// Broke: restore took the version it would replace after deciding (and placed links with a
/// plain rename), so a file that appeared (or was edited) at the target in between was
/// overwritten.
#[test]
#[cfg(feature = "test-hooks")]
fn a_restore_that_loses_a_race_to_a_file_at_its_target_never_overwrites_it() {
    let server = Server::start();
    let c = Client::new();
    c.write("gone.txt", b"backed up");
    c.write("kept.txt", b"version one");
    std::os::unix::fs::symlink("kept.txt", c.path("ln")).expect("symlink");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    let t1 = stamp_between();
    c.write("kept.txt", b"version two, backed up");
    c.ok(&["run", "t", "--once"]);

    // Nothing at the target when restore plans; a file appears before it writes.
    std::fs::remove_file(c.path("gone.txt")).expect("rm");
    let said = restore_racing(&c, "gone.txt", &[], |p| {
        std::fs::write(p, b"made meanwhile").expect("write")
    });
    assert!(
        said.contains("changed while it was being restored"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(c.path("gone.txt")).expect("read"),
        b"made meanwhile"
    );

    // The same for a link.
    std::fs::remove_file(c.path("ln")).expect("rm");
    let said = restore_racing(&c, "ln", &[], |p| {
        std::fs::write(p, b"made meanwhile").expect("write")
    });
    assert!(
        said.contains("changed while it was being restored"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(c.path("ln")).expect("read"),
        b"made meanwhile"
    );

    // A backed-up file restore may replace (in place, `--at` an older version) is edited
    // after the plan: the edit wins.
    let said = restore_racing(&c, "kept.txt", &["--at", &t1], |p| {
        std::fs::write(p, b"edited meanwhile").expect("write")
    });
    assert!(
        said.contains("changed while it was being restored"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(c.path("kept.txt")).expect("read"),
        b"edited meanwhile"
    );
    let work = c.path(".cairn");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no temporary left behind: {left:?}");

    // Without a race the same restore goes through.
    c.write("kept.txt", b"version two, backed up");
    c.ok(&[
        "restore",
        "t",
        c.path("kept.txt").to_str().expect("utf-8"),
        "--at",
        &t1,
    ]);
    assert_eq!(
        std::fs::read(c.path("kept.txt")).expect("read"),
        b"version one"
    );
}

/// Broke: restoring a drive task elsewhere joined a server path below the local folder's name
/// past the 2048-byte path limit, unchecked.
#[test]
fn a_restore_destination_over_the_path_limit_is_reported_not_written() {
    let server = Server::start();
    let a = crate::drive::computer(&server, "A", &[]);
    // 2045 bytes at the root of the server folder; below "docs/" elsewhere it would be 2050.
    let deep = vec!["d".repeat(250); 8].join("/") + "/" + &"f".repeat(37);
    assert_eq!(deep.len(), 2045);
    a.write(&deep, b"deep");
    a.write("short.txt", b"short");
    a.ok(&["run", "d", "--once"]);
    let to = a.tmp().join("elsewhere");
    let out = a.cairn(&["restore", "d", "--to", to.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("not restored") && err.contains("longer than 2048 bytes"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(to.join("docs/short.txt")).expect("the rest is restored"),
        b"short"
    );
    assert!(!to.join("docs").join(&deep).exists());
}
