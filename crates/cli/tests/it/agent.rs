//! The agent: near-real-time uploads, pause/resume, status and log through its socket; tasks
//! that change while it runs, retries after a server outage, precise `status`, `--json`, and
//! closed pipes.

use std::path::Path;
use std::process::{Child, Stdio};

use crate::drive::computer;
use crate::harness::{wait_until, Client, Server};

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `c`'s agent; full rescans are an hour apart, so only the watcher, the journal,
/// retries and `resume` can start the passes a test waits for.
fn agent(c: &Client) -> Agent {
    Agent(
        c.cmd()
            .args(["agent", "--rescan", "3600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    )
}

fn json(c: &Client, args: &[&str]) -> serde_json::Value {
    let out = c.ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

/// Task `name` in `status --json`.
fn task_status(c: &Client, name: &str) -> serde_json::Value {
    let all = json(c, &["status", "--json"]);
    all["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no task {name} in {all}"))
}

fn state(c: &Client, name: &str) -> String {
    task_status(c, name)["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The paths of `cairn ls TASK`, as printed.
fn listing(c: &Client, task: &str) -> String {
    c.ok(&["ls", task])
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 test path")
}

#[test]
fn the_agent_uploads_changes_and_answers_pause_resume_status_and_log() {
    let server = Server::start();
    let c = Client::new();
    c.write("start.txt", b"s");
    c.backup_task(&server, &[]);
    let _agent = agent(&c);
    wait_until(60, "the first pass", || {
        c.ls_paths().contains(&"start.txt".to_string())
    });
    c.write("new.txt", b"n");
    wait_until(30, "the watcher to upload new.txt", || {
        c.ls_paths().contains(&"new.txt".to_string())
    });
    let status = c.ok(&["status"]);
    assert!(status.contains("t: 1 backup to srv/backup"), "{status}");
    assert!(!status.contains("not running"), "{status}");
    wait_until(30, "the recent activity to show new.txt", || {
        c.ok(&["status", "t"]).contains("uploaded new.txt")
    });

    assert!(c.ok(&["pause", "t"]).contains("paused t"));
    wait_until(10, "the agent to report the pause", || {
        c.ok(&["status", "t"]).contains("paused")
    });
    c.write("while-paused.txt", b"p");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        !c.ls_paths().contains(&"while-paused.txt".to_string()),
        "a paused task uploads nothing"
    );
    c.ok(&["resume", "t"]);
    wait_until(30, "the resumed task to upload", || {
        c.ls_paths().contains(&"while-paused.txt".to_string())
    });
    let log = c.ok(&["log", "t"]);
    assert!(log.contains("uploaded new.txt"), "{log}");
    let second = c.cairn(&["agent"]);
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));
}

/// Broke: a task added while the agent ran got one pass and was never watched, and a changed
/// task kept its old folder.
#[test]
fn tasks_added_or_changed_while_the_agent_runs_are_watched() {
    let server = Server::start();
    let c = Client::new();
    c.write("start.txt", b"s");
    c.backup_task(&server, &[]);
    let _agent = agent(&c);
    wait_until(60, "the first pass", || {
        c.ls_paths().contains(&"start.txt".to_string())
    });

    let more = c.tmp().join("more");
    std::fs::create_dir_all(&more).expect("mkdir");
    std::fs::write(more.join("a.txt"), b"a").expect("write");
    c.ok(&[
        "backup",
        "add",
        "t2",
        "--local",
        utf8(&more),
        "--connection",
        "srv",
        "--folder",
        "backup",
        "--computer",
        "pc",
    ]);
    wait_until(60, "the new task's first pass", || {
        listing(&c, "t2").contains("more/a.txt")
    });
    std::fs::write(more.join("b.txt"), b"b").expect("write");
    wait_until(60, "the watcher to see the new task's folder", || {
        listing(&c, "t2").contains("more/b.txt")
    });

    // Point t2 at another folder by editing the configuration, as a user may.
    let other = c.tmp().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("c.txt"), b"c").expect("write");
    let path = c.home.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("config")).expect("json");
    config["tasks"]["t2"]["locals"] = serde_json::json!([utf8(&other)]);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("write");
    wait_until(60, "a pass of the changed task", || {
        listing(&c, "t2").contains("other/c.txt")
    });
    std::fs::write(other.join("d.txt"), b"d").expect("write");
    wait_until(
        60,
        "the watcher to see the changed task's new folder",
        || listing(&c, "t2").contains("other/d.txt"),
    );

    // Removing a task leaves the others running.
    c.ok(&["backup", "remove", "t2"]);
    wait_until(30, "the removed task to leave the status", || {
        !c.ok(&["status"]).contains("t2:")
    });
    c.write("after.txt", b"x");
    wait_until(60, "the remaining task to go on", || {
        c.ls_paths().contains(&"after.txt".to_string())
    });
}

/// Broke: a drive task added while the agent ran never followed the server's journal.
#[test]
fn a_drive_task_added_while_the_agent_runs_follows_the_server() {
    let server = Server::start();
    let b = computer(&server, "B", &[]);
    b.write("first.txt", b"1");
    b.ok(&["run", "d", "--once"]);
    let a = Client::new();
    a.connect(&server, "alice", "alice-pw");
    let _agent = agent(&a);
    wait_until(30, "A's agent to run", || {
        !a.ok(&["status"]).contains("not running")
    });
    a.ok(&[
        "drive",
        "add",
        "d",
        "--local",
        utf8(&a.root),
        "--connection",
        "srv",
        "--folder",
        "backup",
        "--computer",
        "A",
    ]);
    wait_until(60, "A's first pass", || a.path("first.txt").exists());
    wait_until(60, "A's task to settle", || state(&a, "d") == "up_to_date");
    b.write("second.txt", b"2");
    b.ok(&["run", "d", "--once"]);
    wait_until(60, "A to follow the journal", || {
        a.path("second.txt").exists()
    });
}

/// Broke: a pass that failed while the server was down stayed failed after it came back, and
/// `status` said neither what failed nor when it would be tried again.
#[test]
fn a_pass_that_failed_while_the_server_was_down_is_retried_when_it_is_back() {
    let mut server = Server::start();
    let c = Client::new();
    c.write("start.txt", b"s");
    c.backup_task(&server, &[]);
    let _agent = agent(&c);
    wait_until(60, "the first pass", || state(&c, "t") == "up_to_date");

    server.kill();
    c.write("offline.txt", b"o");
    wait_until(120, "the pass to fail", || state(&c, "t") == "error");
    let t = task_status(&c, "t");
    assert!(t["error"].as_str().is_some_and(|e| !e.is_empty()), "{t}");
    assert!(t["next_retry_in_secs"].as_u64().is_some(), "{t}");
    assert!(t["next_retry_at"].as_str().is_some(), "{t}");
    let text = c.ok(&["status", "t"]);
    assert!(
        text.contains("next retry in") && text.contains("  error: "),
        "{text}"
    );
    assert!(!text.contains("up to date"), "{text}");
    // Tried again, with backoff, while the server stays down.
    wait_until(120, "a second failed attempt", || {
        c.ok(&["log", "t"]).matches("task failed").count() >= 2
    });
    assert_eq!(state(&c, "t"), "error");

    server.restart();
    wait_until(120, "the retry after the server's return", || {
        c.ls_paths().contains(&"offline.txt".to_string())
    });
    wait_until(60, "the task to be up to date again", || {
        state(&c, "t") == "up_to_date"
    });
    let t = task_status(&c, "t");
    assert!(
        t["error"].is_null() && t["next_retry_in_secs"].is_null(),
        "{t}"
    );
}

/// Broke: `resume` (with or without `--confirm-deletes`) started no pass.
#[test]
fn resume_starts_a_pass_at_once() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    for i in 0..12 {
        a.write(&format!("f{i:02}.txt"), format!("file {i}").as_bytes());
    }
    a.ok(&["run", "d", "--once"]);
    let _agent = agent(&a);
    wait_until(60, "the first pass", || state(&a, "d") == "up_to_date");
    let passes = || {
        a.ok(&["log", "d", "--lines", "100000"])
            .matches(" drive d: ")
            .count()
    };

    a.ok(&["pause", "d"]);
    wait_until(30, "the pause", || state(&a, "d") == "paused");
    let before = passes();
    a.ok(&["resume", "d"]);
    wait_until(60, "a pass started by resume", || passes() > before);

    for i in 0..8 {
        std::fs::remove_file(a.path(&format!("f{i:02}.txt"))).expect("rm");
    }
    wait_until(60, "the pass to stop before deleting", || {
        state(&a, "d") == "waiting_for_confirmation"
    });
    let text = a.ok(&["status", "d"]);
    assert!(
        text.contains("waiting for confirmation") && text.contains("--confirm-deletes"),
        "{text}"
    );
    assert!(!text.contains("up to date"), "{text}");
    assert!(listing(&a, "d").contains("f00.txt"), "nothing deleted yet");
    a.ok(&["resume", "d", "--confirm-deletes"]);
    wait_until(60, "the confirmed pass to delete", || {
        let ls = listing(&a, "d");
        (0..8).all(|i| !ls.contains(&format!("f{i:02}.txt"))) && ls.contains("f11.txt")
    });
    wait_until(60, "the task to settle", || state(&a, "d") == "up_to_date");
}

/// Broke: files in ignored folders, special files and local edits of download-only tasks all
/// said "syncing".
#[test]
fn status_of_a_path_says_why_it_is_not_synced() {
    let server = Server::start();
    let a = computer(&server, "A", &["--exclude-name", "node_modules"]);
    a.write("done.txt", b"x");
    a.write("node_modules/lib/index.js", b"js");
    a.write("$RECYCLE.BIN/old.txt", b"old");
    a.ok(&["run", "d", "--once"]);
    let fifo = a.path("pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    let _socket = std::os::unix::net::UnixListener::bind(a.path("sock")).expect("socket");
    let status = |c: &Client, rel: &str| c.ok(&["status", utf8(&c.path(rel))]);
    let s = status(&a, "node_modules/lib/index.js");
    assert!(
        s.contains("filtered out (inside the ignored folder node_modules"),
        "{s}"
    );
    let s = status(&a, "$RECYCLE.BIN/old.txt");
    assert!(s.contains("filtered out (inside the ignored folder"), "{s}");
    assert!(status(&a, "pipe").contains("skipped: special file (FIFO)"));
    assert!(status(&a, "sock").contains("skipped: special file (socket)"));
    let j = json(&a, &["status", utf8(&a.path("pipe")), "--json"]);
    assert_eq!(j["state"], "skipped_special_file", "{j}");
    assert_eq!(j["task"], "d", "{j}");

    let b = computer(&server, "B", &["--mode", "download-only"]);
    b.ok(&["run", "d", "--once"]);
    assert!(status(&b, "done.txt").contains(": synced [task d]"));
    b.write("done.txt", b"edited on B");
    b.ok(&["run", "d", "--once"]);
    let s = status(&b, "done.txt");
    assert!(s.contains("local edit kept (download-only task"), "{s}");
    let j = json(&b, &["status", utf8(&b.path("done.txt")), "--json"]);
    assert_eq!(j["state"], "local_edit_kept", "{j}");
}

/// Broke: `run --once` from a configuration folder copied from a computer whose agent runs
/// went ahead as that computer.
#[test]
fn run_once_from_a_copied_configuration_folder_is_refused() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    a.write("a.txt", b"a");
    let _agent = agent(&a);
    wait_until(60, "A's agent to sync", || state(&a, "d") == "up_to_date");
    // A's own one-off run goes on beside its agent.
    a.ok(&["run", "d", "--once"]);
    let c = Client::new();
    // The running agent replaces its state files now and then: copy again when one vanishes.
    let copied = (0..20).any(|_| {
        let _ = std::fs::remove_dir_all(&c.home);
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&a.home)
            .arg(&c.home)
            .stderr(Stdio::null())
            .status()
            .expect("cp")
            .success()
    });
    assert!(copied, "copying A's configuration folder");
    let err = c.fails(&["run", "d", "--once"]);
    assert!(
        err.contains("device identity") && err.contains("cairn connect"),
        "{err}"
    );
    // The check did not take A's place: A's agent still works.
    a.write("b.txt", b"b");
    wait_until(60, "A's agent to go on", || {
        listing(&a, "d").contains("b.txt")
    });
}

/// Broke: `cairn status | head -1` and friends panicked on the closed pipe.
#[test]
fn a_closed_output_pipe_ends_commands_quietly() {
    let server = Server::start();
    let c = Client::new();
    for i in 0..5 {
        c.write(&format!("f{i}.txt"), b"x");
    }
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    for args in [
        &["status"][..],
        &["status", "t", "--json"],
        &["log", "t"],
        &["run", "t", "--once"],
        &["ls", "t"],
    ] {
        // The reading end is closed before the command starts: its first line meets EPIPE.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = c
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run cairn");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            !err.to_lowercase().contains("broken pipe"),
            "{args:?}: {err}"
        );
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
    }
}

/// `--json` on status, log and run: the documented fields (docs/json.md).
#[test]
fn status_log_and_run_speak_json() {
    let server = Server::start();
    let c = Client::new();
    c.write("a.txt", b"a");
    c.backup_task(&server, &[]);
    let run = json(&c, &["run", "t", "--once", "--json"]);
    assert_eq!(run["ok"], true, "{run}");
    let t = &run["tasks"][0];
    assert_eq!(t["task"], "t", "{run}");
    assert_eq!(t["outcome"], "ok", "{run}");
    assert_eq!(t["counts"]["uploaded"], 1, "{run}");
    assert!(t["seconds"].as_f64().is_some(), "{run}");
    assert!(t["summary"]
        .as_str()
        .is_some_and(|s| s.starts_with("backup t:")));

    let log = json(&c, &["log", "t", "--json"]);
    let entries = log.as_array().expect("an array");
    assert!(
        entries
            .iter()
            .any(|e| e["task"] == "t" && e["message"] == "uploaded a.txt (1 bytes)"),
        "{log}"
    );
    assert!(entries
        .iter()
        .all(|e| e["time"].as_str().is_some_and(|t| t.ends_with('Z'))));

    let status = json(&c, &["status", "--json"]);
    assert_eq!(status["agent_running"], false, "{status}");
    let t = &status["tasks"][0];
    assert_eq!(t["name"], "t");
    assert_eq!(t["kind"], "backup");
    assert_eq!(t["state"], "not_running");
    assert_eq!(t["connection"], "srv");
    assert_eq!(t["folder"], "backup");
    assert_eq!(t["locals"][0], utf8(&c.root));
    let _agent = agent(&c);
    wait_until(60, "the agent's first pass", || {
        state(&c, "t") == "up_to_date"
    });
    let t = task_status(&c, "t");
    assert!(
        t["last_result"]
            .as_str()
            .is_some_and(|r| r.starts_with("backup t:")),
        "{t}"
    );
    assert!(t["last_pass_at"].as_str().is_some(), "{t}");

    // A failed run says so in JSON too, and still exits non-zero.
    std::fs::remove_dir_all(&c.root).expect("rm");
    let out = c.cairn(&["run", "t", "--once", "--json"]);
    assert!(!out.status.success());
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(run["ok"], false, "{run}");
    assert_eq!(run["tasks"][0]["outcome"], "error", "{run}");
}

/// SIGTERM in the middle of a download: the agent stops at once, leaves no temporary file and
/// no half-written target, and the next pass finishes the job.
#[test]
fn sigterm_cancels_a_pass_in_flight_and_leaves_nothing_half_written() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    // Incompressible and large enough that its download takes a while in a debug build.
    let big: Vec<u8> = (0..150u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    a.write("big.bin", &big);
    a.ok(&["run", "d", "--once"]);
    let b = computer(&server, "B", &[]);
    let mut agent = agent(&b);
    let work = b.root.join(".cairn");
    let temporaries = || {
        std::fs::read_dir(&work)
            .map(|d| d.flatten().count())
            .unwrap_or(0)
    };
    wait_until(120, "B's download to start", || {
        temporaries() > 0 || b.path("big.bin").exists()
    });
    let caught_in_flight = !b.path("big.bin").exists();
    let pid = agent.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = agent.0.wait().expect("agent exit");
    assert!(
        status.success(),
        "the agent ends cleanly on SIGTERM: {status}"
    );
    assert_eq!(temporaries(), 0, "no temporary left in {}", work.display());
    if let Ok(got) = std::fs::read(b.path("big.bin")) {
        assert!(got == big, "a target is whole or absent");
    }
    assert!(
        caught_in_flight,
        "the download finished before SIGTERM: nothing was cancelled"
    );
    b.ok(&["run", "d", "--once"]);
    assert!(std::fs::read(b.path("big.bin")).expect("downloaded") == big);
}

/// Starts `c`'s agent with `args` and environment `envs`; what it prints on stderr collects
/// in the returned text.
#[cfg(feature = "test-hooks")]
fn agent_with(
    c: &Client,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Agent, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut cmd = c.cmd();
    cmd.arg("agent").args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent");
    let stderr = child.stderr.take().expect("stderr");
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = said.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let mut all = sink.lock().expect("stderr text");
            all.push_str(&line);
            all.push('\n');
        }
    });
    (Agent(child), said)
}

/// With no inotify watcher at all (`start`), or none for the task's folder (`add`), the agent
/// says so and its periodic rescan still picks up every edit.
#[test]
#[cfg(feature = "test-hooks")]
fn without_a_watcher_the_agent_keeps_a_task_in_sync_by_rescanning() {
    for (refused, warning) in [
        ("start", "local changes are found by the rescan every 1 s"),
        ("add", "changes there wait for the next rescan"),
    ] {
        let server = Server::start();
        let c = Client::new();
        c.write("start.txt", b"s");
        c.backup_task(&server, &[]);
        let (_agent, said) = agent_with(
            &c,
            &["--rescan", "1"],
            &[("CAIRN_TEST_NO_WATCHER", refused)],
        );
        wait_until(60, "the first pass", || {
            c.ls_paths().contains(&"start.txt".to_string())
        });
        let text = said.lock().expect("stderr text").clone();
        assert!(
            text.contains("refused to") && text.contains(warning),
            "{refused}: {text}"
        );
        c.write("edited.txt", b"made after the first pass");
        c.write("start.txt", b"edited after the first pass");
        wait_until(60, "a rescan to send the new file", || {
            c.ls_paths().contains(&"edited.txt".to_string())
        });
        wait_until(60, "a rescan to send the edit", || {
            c.ok(&[
                "versions",
                "t",
                c.path("start.txt").to_str().expect("utf-8"),
            ])
            .lines()
            .count()
                > 2
        });
    }
}

/// Broke: a local edit that a two-way task keeps since its folder became read-only for the
/// user (its passes go on download-only) said "syncing".
#[test]
fn status_of_a_change_kept_since_the_folder_became_read_only_says_read_only() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    a.write("shared.txt", b"v1");
    a.write("same.txt", b"unchanged");
    a.write("old.txt", b"soon deleted here");
    a.ok(&["run", "d", "--once"]);
    server.admin(
        &["folder", "grant", "backup", "alice", "--access", "ro"],
        None,
    );
    a.write("shared.txt", b"alice's edit");
    a.write("new.txt", b"alice's new file");
    std::fs::remove_file(a.path("old.txt")).expect("rm");
    let path_state = |rel: &str| {
        json(&a, &["status", utf8(&a.path(rel)), "--json"])["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(path_state("shared.txt"), "changed_here", "before any pass");
    let agent = agent(&a);
    wait_until(60, "the agent's pass to go on download-only", || {
        path_state("shared.txt") == "read_only"
    });
    let s = a.ok(&["status", utf8(&a.path("shared.txt"))]);
    assert!(
        s.contains("read-only (changed here, not sent: the folder is read-only for you)"),
        "{s}"
    );
    assert!(!s.contains("syncing"), "{s}");
    assert_eq!(path_state("new.txt"), "read_only");
    assert_eq!(path_state("old.txt"), "read_only");
    assert_eq!(path_state("same.txt"), "synced_read_only");
    assert_eq!(
        std::fs::read(a.path("shared.txt")).expect("read"),
        b"alice's edit",
        "the edit stays here"
    );
    // Write access back: the next pass runs two-way, sends the changes, and the word goes.
    server.admin(
        &["folder", "grant", "backup", "alice", "--access", "rw"],
        None,
    );
    a.ok(&["resume", "d"]);
    wait_until(60, "the two-way pass to send the edit", || {
        path_state("shared.txt") == "synced"
    });
    assert_eq!(path_state("new.txt"), "synced");
    assert_eq!(path_state("same.txt"), "synced");
    drop(agent);
    let s = a.ok(&["status", utf8(&a.path("shared.txt"))]);
    assert!(s.contains(": synced [task d]"), "{s}");
}

/// Connecting again keeps the device id, except in a configuration folder copied from a
/// computer whose agent runs: there it makes a new one, as the server's refusal advises.
#[test]
fn connecting_from_a_copied_configuration_folder_gives_it_its_own_identity() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    a.write("a.txt", b"a");
    let _agent = agent(&a);
    wait_until(60, "A's agent to sync", || state(&a, "d") == "up_to_date");
    let device = |c: &Client| {
        let text = std::fs::read_to_string(c.home.join("config.json")).expect("config");
        let config: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        config["device_id"].as_str().unwrap_or_default().to_string()
    };
    let mine = device(&a);
    // A's own connect, beside its own agent, keeps A's identity.
    a.connect(&server, "alice", "alice-pw");
    assert_eq!(device(&a), mine);
    let c = Client::new();
    // The running agent replaces its state files now and then: copy again when one vanishes.
    let copied = (0..20).any(|_| {
        let _ = std::fs::remove_dir_all(&c.home);
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&a.home)
            .arg(&c.home)
            .stderr(Stdio::null())
            .status()
            .expect("cp")
            .success()
    });
    assert!(copied, "copying A's configuration folder");
    let err = c.fails(&["run", "d", "--once", "--dry-run"]);
    assert!(err.contains("device identity"), "{err}");
    c.connect(&server, "alice", "alice-pw");
    assert_ne!(device(&c), mine, "the copy has its own identity now");
    c.ok(&["run", "d", "--once", "--dry-run"]);
    assert_eq!(device(&a), mine);
}

/// Broke: a file deleted here in a download-only task said "syncing (deleted here)", though
/// the task never sends the deletion and does not bring the file back.
#[test]
fn status_of_a_deletion_kept_by_a_download_only_task_says_so() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    a.write("x.txt", b"x");
    a.write("stays.txt", b"s");
    a.ok(&["run", "d", "--once"]);
    let b = computer(&server, "B", &["--mode", "download-only"]);
    b.ok(&["run", "d", "--once"]);
    std::fs::remove_file(b.path("x.txt")).expect("rm");
    b.ok(&["run", "d", "--once"]);
    assert!(
        !b.path("x.txt").exists(),
        "a download-only pass keeps the deletion"
    );
    let j = json(&b, &["status", utf8(&b.path("x.txt")), "--json"]);
    assert_eq!(j["state"], "local_edit_kept", "{j}");
    let detail = j["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("local deletion kept"), "{j}");
    assert!(!detail.contains("syncing"), "{j}");
}

/// A folder deleted and made again under its name while an agent follows it: the agent
/// merges with the new one (its own files sent again, the new folder's fetched) and deletes
/// nothing, however many changes the new folder has had.
#[test]
fn an_agent_following_a_folder_made_again_merges_with_it() {
    let server = Server::start();
    let a = computer(&server, "A", &[]);
    a.write("mine.txt", b"kept on A");
    a.ok(&["run", "d", "--once"]);
    let _agent = agent(&a);
    wait_until(60, "A's task to settle", || state(&a, "d") == "up_to_date");

    server.admin(&["folder", "remove", "backup", "--confirm", "backup"], None);
    server.admin(&["folder", "add", "backup"], None);
    server.admin(
        &["folder", "grant", "backup", "alice", "--access", "rw"],
        None,
    );
    let b = computer(&server, "B", &[]);
    for i in 0..12 {
        b.write(&format!("new-{i}.txt"), format!("new {i}").as_bytes());
    }
    b.ok(&["run", "d", "--once"]);
    wait_until(90, "A to fetch the new folder's files", || {
        a.path("new-7.txt").exists()
    });
    wait_until(90, "A's own file to reach the new folder", || {
        b.ok(&["run", "d", "--once"]);
        b.path("mine.txt").exists()
    });
    assert_eq!(
        std::fs::read(a.path("mine.txt")).expect("A's file"),
        b"kept on A"
    );
}

/// `--log-format json` makes every line the agent writes on stderr a JSON object a collector
/// can parse, with the task's pass outcomes as events; a task's log rotates past
/// `--log-max-bytes`, keeps `--log-keep` old files, and `cairn log` reads across them.
#[test]
#[cfg(feature = "test-hooks")]
fn the_agent_logs_json_and_rotates_task_logs_by_size() {
    let server = Server::start();
    let c = Client::new();
    for i in 0..30 {
        c.write(&format!("file-{i:02}.txt"), b"x");
    }
    c.backup_task(&server, &[]);
    let (agent, said) = agent_with(
        &c,
        &[
            "--rescan",
            "3600",
            "--log-format",
            "json",
            "--log-max-bytes",
            "400",
            "--log-keep",
            "2",
        ],
        &[],
    );
    wait_until(60, "the first pass", || {
        c.ls_paths()
            .iter()
            .filter(|p| p.starts_with("file-"))
            .count()
            == 30
    });
    wait_until(30, "the pass's outcome in the agent's log", || {
        said.lock().expect("stderr text").contains("\"task\":\"t\"")
    });
    drop(agent);
    let text = said.lock().expect("stderr text").clone();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
    let logs = c.home.join("logs");
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .expect("logs folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // 30 "uploaded" lines of ~70 bytes cannot fit in 400 bytes: the log rotated, and the
    // files past the second old one are gone.
    assert_eq!(names, ["t.log", "t.log.1", "t.log.2"]);
    let mut kept = 0;
    for name in &names {
        let body = std::fs::read_to_string(logs.join(name)).expect("read log");
        assert!(body.len() <= 400, "{name} holds {} bytes", body.len());
        kept += body.lines().count();
    }
    let shown = c.ok(&["log", "t", "--lines", "1000"]);
    assert_eq!(shown.lines().count(), kept, "{shown}");
    let newest = std::fs::read_to_string(logs.join("t.log")).expect("read log");
    let newest = newest.lines().last().expect("a line in t.log");
    assert_eq!(shown.lines().last(), Some(format!("[t] {newest}").as_str()));
}
