//! Cloud tasks through the seeded fault layer (`CAIRN_TEST_CLOUD_FAULTS`) on every HTTP
//! service with a local server: dropped requests, lost answers (so retries are duplicates),
//! 503s, timeouts and flipped bytes. Whatever a pass under faults does, no file that should
//! stay is deleted on either computer, nothing corrupt lands, and once the faults stop both
//! computers converge. The seed is printed, and named in every failure, so a failing run can be
//! replayed with `CAIRN_TEST_FAULT_SEED=N`. (moto's S3 has its own run in `cloud.rs`; SFTP, FTP
//! and mounted folders do not go through the HTTP transport: `cloud_faults_files.rs` injects
//! their faults at the connection and the file system.)

#![cfg(feature = "test-hooks")]

use std::collections::BTreeSet;

use crate::cloud_faults_files::seed;
use crate::cloud_remotes::{self, add_task, connect, tree, Remote};
use crate::harness::Client;

const ALL_KINDS: &str = "drop+lost+busy+slow+corrupt";

/// What the server's own folder holds, for a failure message.
fn share_of(remote: &Remote) -> String {
    match &remote.share {
        Some(dir) => format!("{:?}", tree(dir).keys().collect::<Vec<_>>()),
        None => "(not a folder)".into(),
    }
}

/// A pass under `faults`, and what it said (a pass may fail under faults; what it leaves is
/// what is checked, and what it said goes into the failure message).
fn run_with_faults(c: &Client, faults: &str) -> String {
    let out = crate::harness::run(
        c.cmd()
            .env("CAIRN_TEST_CLOUD_FAULTS", faults)
            .args(["run", "t"]),
        None,
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Rounds of random work on computer A, each synced under faults (`kinds`) by A then B.
fn faults_keep_every_file(remote: &Remote, kinds: &str) {
    let service = remote.provider;
    let seed = seed();
    let (a, b) = (Client::new(), Client::new());
    for c in [&a, &b] {
        connect(c, remote, "r");
        add_task(c, "t", "r", "faults", &[], "");
    }
    let mut state = seed.max(1);
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut ever: BTreeSet<Vec<u8>> = BTreeSet::new();
    for round in 0..2 {
        for i in 0..8 {
            let n = rnd() % 16;
            let name = format!("d{}/f{n}.txt", n % 3);
            match rnd() % 4 {
                0 if a.path(&name).exists() => std::fs::remove_file(a.path(&name)).expect("rm"),
                1 if a.path(&name).exists() => {
                    let to = a.path(&format!("d{}/moved{round}-{i}.txt", n % 3));
                    std::fs::rename(a.path(&name), to).expect("mv");
                }
                _ => a.write(
                    &name,
                    format!("round {round} item {i} {}", rnd()).as_bytes(),
                ),
            }
        }
        let expected = tree(&a.root);
        ever.extend(expected.values().cloned());
        let faults = format!("seed={},rate=25,kinds={kinds}", seed + round);
        let mut said = String::new();
        for pass in 0..2 {
            said += &format!("pass {pass}: {}", run_with_faults(&a, &faults));
            let now = tree(&a.root);
            assert!(
                now == expected,
                "{service}, seed {seed}, round {round}: A's files changed under faults: \
                 {:?} instead of {:?}; the server holds {}; the passes said:\n{said}\n\
                 A's task log:\n{}",
                now.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>(),
                share_of(remote),
                String::from_utf8_lossy(&a.cairn(&["log", "t"]).stdout)
            );
        }
        for _ in 0..2 {
            let before = tree(&b.root);
            let said = run_with_faults(&b, &faults);
            let after = tree(&b.root);
            for (path, data) in &after {
                assert!(
                    ever.contains(data),
                    "{service}, seed {seed}, round {round}: {path} arrived corrupt; the pass \
                     said:\n{said}"
                );
            }
            // A file B had that A still has is never deleted by a faulted pass.
            for path in before.keys().filter(|p| expected.contains_key(*p)) {
                assert!(
                    after.contains_key(path),
                    "{service}, seed {seed}, round {round}: {path} was deleted on B; the pass \
                     said:\n{said}"
                );
            }
        }
    }
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    assert_eq!(
        tree(&b.root),
        tree(&a.root),
        "{service}, seed {seed}: not converged after the faults stopped"
    );
}

#[test]
fn faults_never_lose_a_file_on_azure() {
    faults_keep_every_file(&cloud_remotes::start("azblob"), ALL_KINDS);
}

#[test]
fn faults_never_lose_a_file_on_gcs() {
    faults_keep_every_file(&cloud_remotes::start("gcs"), ALL_KINDS);
}

/// Flipped bytes only where the service gives an MD5 to check a download against (WebDAV
/// gives none, so nothing could tell them).
#[test]
fn faults_never_lose_a_file_on_webdav() {
    faults_keep_every_file(&cloud_remotes::start("webdav"), "drop+lost+busy+slow");
}

#[test]
fn faults_never_lose_a_file_on_swift() {
    faults_keep_every_file(&cloud_remotes::start("swift"), ALL_KINDS);
}

/// A WebDAV server that will not rename over a file (`refuse`: every or every other MOVE
/// answered 412): an edit never leaves the cloud without the file. Regression: placing a
/// written file deleted the old one first, and lost it when the rename then failed too.
#[test]
fn a_refused_rename_never_loses_the_file_on_webdav() {
    const KINDS: &str = "refuse";
    let remote = cloud_remotes::start("webdav");
    let root = remote
        .share
        .clone()
        .expect("WebDAV keeps its files in a folder");
    let c = Client::new();
    connect(&c, &remote, "r");
    add_task(&c, "t", "r", "faults", &[], "");
    c.write("doc.txt", b"version 0");
    c.ok(&["run", "t"]);
    let stored = root.join("faults/doc.txt");
    let in_cloud = |said: &str| {
        std::fs::read(&stored).unwrap_or_else(|e| {
            panic!(
                "doc.txt is gone from the cloud ({e}); it holds {}; the pass said: {said}",
                share_of(&remote)
            )
        })
    };
    assert_eq!(in_cloud(""), b"version 0");

    // Every rename refused: the edit cannot be placed, and the old file stays.
    c.write("doc.txt", b"version 1, which cannot be placed");
    let said = run_with_faults(&c, &format!("seed=1,rate=100,kinds={}", KINDS));
    assert_eq!(in_cloud(&said), b"version 0", "{said}");

    // Some renames refused: whatever a pass does, the file is the old or the new version, or,
    // when the server also refused to put the old one back, the old one waits under the name
    // the error gives (and the next pass uploads the edit, which is still here).
    let seed = seed();
    let mut before = Some(in_cloud(""));
    for round in 0..8u64 {
        let body = format!("version {} of the file", round + 2).into_bytes();
        c.write("doc.txt", &body);
        let faults = format!("seed={},rate=50,kinds={}", seed + round, KINDS);
        let said = run_with_faults(&c, &faults);
        let context = format!("seed {seed} round {round}; the pass said: {said}");
        match std::fs::read(&stored) {
            Ok(now) => {
                assert!(
                    before.as_ref() == Some(&now) || now == body,
                    "the cloud holds {:?}; {context}",
                    String::from_utf8_lossy(&now)
                );
                before = Some(now);
            }
            Err(_) => {
                if let Some(old) = before.take() {
                    let kept = said
                        .split("it is kept as ")
                        .nth(1)
                        .and_then(|t| t.split(')').next())
                        .unwrap_or_else(|| panic!("doc.txt is gone without a word; {context}"));
                    let aside = root.join("faults").join(kept);
                    assert_eq!(
                        std::fs::read(&aside).ok(),
                        Some(old),
                        "{}; {context}",
                        aside.display()
                    );
                }
            }
        }
    }
    // Without faults, the last edit lands.
    c.ok(&["run", "t"]);
    assert_eq!(in_cloud(""), b"version 9 of the file");
}
