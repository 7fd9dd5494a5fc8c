//! Temporaries of the server's cloud tasks on a file-like service (WebDAV): tagged per task
//! as a computer's are, so a server pass cut short leaves nothing behind for good.

#![cfg(feature = "test-hooks")]

use std::collections::BTreeSet;

use crate::cloud_remotes::{self, staged, Remote};
use crate::harness::{wait_until, Client, Server};

/// Every PUT reaches the WebDAV server and its answer is lost: an upload's temporary is
/// written, never renamed into place, and the pass fails.
const LOST_PUTS: &str = "seed=3,rate=100,kinds=lost,only=PUT";

/// `server cloud connect dav` to `remote` for alice, by the administrator.
fn server_connect(server: &Server, remote: &Remote) {
    let mut args = vec!["cloud", "connect", "dav"];
    args.extend(remote.args.iter().map(String::as_str));
    args.extend(["--owner", "alice"]);
    server.admin(&args, Some(&remote.stdin));
}

/// A server task's pass whose uploads were cut short leaves its temporaries; the task's next
/// pass (after a restart of the server) removes them, and leaves alone those of another task
/// on the same remote path (a computer's, cut short the same way).
#[test]
fn a_server_tasks_next_pass_removes_its_own_leftover_temporaries_and_no_one_elses() {
    let remote = cloud_remotes::start("webdav");
    let share = remote.share.clone().expect("a WebDAV share");
    let names = || staged(&share, "nas").into_iter().collect::<BTreeSet<_>>();

    // A computer's task on the same path, its upload cut short.
    let pc = Client::new();
    cloud_remotes::connect(&pc, &remote, "r");
    cloud_remotes::add_task(&pc, "t", "r", "nas", &[], "");
    pc.write("from-pc.txt", b"sent, answer lost");
    let out = crate::harness::run(
        pc.cmd()
            .env("CAIRN_TEST_CLOUD_FAULTS", LOST_PUTS)
            .args(["run", "t"]),
        None,
    );
    assert!(!out.status.success(), "every upload's answer was lost");
    let theirs = names();
    assert!(!theirs.is_empty(), "the computer's pass left no temporary");

    // The server's task, its uploads cut short the same way.
    let mut server = Server::start_with(&[("CAIRN_TEST_CLOUD_FAULTS", LOST_PUTS)]);
    let drive = crate::drive::computer(&server, "laptop", &[]);
    drive.write("report.txt", b"from the server folder");
    drive.ok(&["run", "d"]);
    server_connect(&server, &remote);
    server.admin(
        &[
            "cloud", "add", "mirror", "--folder", "backup", "--cloud", "dav", "--remote", "nas",
            "--owner", "alice",
        ],
        None,
    );
    let list = |s: &Server| s.admin(&["cloud", "list", "--owner", "alice"], None);
    wait_until(60, "the server's pass to fail", || {
        list(&server).contains("\tfailed_files: ")
    });
    let left = names();
    let ours: BTreeSet<_> = left.difference(&theirs).cloned().collect();
    assert!(
        !ours.is_empty(),
        "the server's pass left no temporary: {left:?}"
    );

    // Restarted without faults: the next pass succeeds and removes its own leftovers only.
    server.set_env("CAIRN_TEST_CLOUD_FAULTS", None);
    server.restart();
    wait_until(60, "a clean pass of the server's task", || {
        list(&server).contains("\tok: ")
    });
    assert_eq!(
        names(),
        theirs,
        "the server's task removed its own temporaries ({ours:?}) and only those"
    );
    assert_eq!(
        std::fs::read(share.join("nas/report.txt")).ok().as_deref(),
        Some(&b"from the server folder"[..])
    );

    // And the computer's next pass removes its own.
    pc.ok(&["run", "t"]);
    assert!(names().is_empty(), "left: {:?}", names());
}
