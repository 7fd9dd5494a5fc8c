//! The agent: near-real-time uploads, pause/resume, status and log through its socket.

use std::process::{Child, Stdio};

use crate::harness::{wait_until, Client, Server};

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_agent_uploads_changes_and_answers_pause_resume_status_and_log() {
    let server = Server::start();
    let c = Client::new();
    c.write("start.txt", b"s");
    c.backup_task(&server, &[]);
    let _agent = Agent(
        c.cmd()
            .args(["agent", "--rescan", "3600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    );
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
