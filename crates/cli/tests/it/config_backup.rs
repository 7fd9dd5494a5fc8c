//! `cairn server backup-config` / `restore-config`: a server's settings survive the loss of
//! its data folder (users log in with their passwords, folders, grants, quotas and cloud
//! connections are back), its content does not come along, and the file stays private.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::{bin, Client, Server};

/// Runs `cairn ARGS`, asserting success; its stdout.
fn cairn(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().expect("run cairn");
    assert!(
        out.status.success(),
        "cairn {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `user list` without the bytes each user has stored ("0 bytes used of N" -> "bytes used of
/// N"): the content is not restored.
fn without_usage(list: &str) -> String {
    list.lines()
        .map(|l| match l.find(" bytes used") {
            Some(i) => format!(
                "{}{}",
                l[..i].trim_end_matches(|c: char| c.is_ascii_digit()),
                &l[i..]
            ),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `folder list` without each folder's journal head ("head 12" -> "head").
fn without_heads(list: &str) -> String {
    list.lines()
        .map(|l| {
            l.split('\t')
                .map(|f| if f.starts_with("head ") { "head" } else { f })
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn settings_round_trip_through_backup_config_and_restore_config() {
    let server = Server::start();
    let data = server.data.to_str().expect("utf-8").to_string();
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    server.admin(&["user", "quota", "bob", "2G"], None);
    server.admin(&["folder", "add", "team"], None);
    server.admin(&["folder", "set", "team", "--keep-versions", "7"], None);
    server.admin(&["folder", "grant", "team", "bob", "--access", "ro"], None);
    server.admin(
        &[
            "cloud",
            "connect",
            "s3c",
            "--provider",
            "s3",
            "--endpoint",
            "http://127.0.0.1:9",
            "--bucket",
            "bucket1",
            "--region",
            "us-east-1",
            "--secret",
            "secret_access_key",
            "--owner",
            "bob",
        ],
        Some("a-cloud-secret\n"),
    );
    let c = Client::new();
    c.write("a.txt", b"content stays behind");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);

    // Through the shell, as the docs say: the redirected file is made private.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("settings.json");
    // The server's own setup (its database, on the scale-out run) goes to the shell too.
    let place = server.command();
    let envs = place
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())));
    let status = Command::new("sh")
        .envs(envs)
        .arg("-c")
        .arg(format!(
            "umask 022; '{}' server backup-config --data '{data}' > '{}'",
            bin().display(),
            file.display()
        ))
        .status()
        .expect("sh");
    assert!(status.success());
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).expect("read backup");
    assert!(text.contains("a-cloud-secret") && text.contains("$argon2id$"));

    let restored = dir.path().join("restored");
    let restored_s = restored.to_str().expect("utf-8");
    let file_s = file.to_str().expect("utf-8");
    cairn(&["server", "restore-config", file_s, "--data", restored_s]);
    let listed = |d: &str, what: &[&str]| {
        let mut args = vec!["server"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["--data", d]);
        cairn(&args)
    };
    // The same users, quotas, folders, retention and grants; bytes used and journal heads
    // start over, as the content is not there.
    let users = |d: &str| without_usage(&listed(d, &["user", "list"]));
    assert_eq!(users(restored_s), users(&data));
    assert!(users(restored_s).contains("of 2147483648"));
    let folders = |d: &str| without_heads(&listed(d, &["folder", "list"]));
    assert_eq!(folders(restored_s), folders(&data));
    assert!(folders(restored_s).contains("team\tkeep 7\thead\tbob:ro"));
    assert_eq!(
        listed(restored_s, &["cloud", "connections", "--owner", "bob"]),
        listed(&data, &["cloud", "connections", "--owner", "bob"])
    );

    // A new server on it: alice's password works, and her file is not there.
    drop(server);
    let again = Server::start_bare(restored.clone(), Vec::new());
    let c2 = Client::new();
    c2.connect(&again, "alice", "alice-pw");
    c2.add_backup_task(&[]);
    assert!(c2.ls_paths().is_empty(), "{:?}", c2.ls_paths());

    // A second restore never merges into a server that has settings.
    let out = Command::new(bin())
        .args(["server", "restore-config", file_s, "--data", restored_s])
        .output()
        .expect("run cairn");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds a data folder already"));
}
