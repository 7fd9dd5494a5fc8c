//! `cairn server user|folder ... --connection C`: administering a remote server through the
//! API with an administrator's saved connection, with the rules `--data` has.

use crate::harness::{Client, Server};

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `cairn server ARGS --connection srv` from `c`.
fn remote(c: &Client, args: &[&str], stdin: &str) -> std::process::Output {
    let mut full = vec!["server"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--connection", "srv"]);
    c.cairn_stdin(&full, stdin)
}

fn remote_ok(c: &Client, args: &[&str], stdin: &str) -> String {
    let out = remote(c, args, stdin);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    text(&out)
}

/// Whether `user` logs in with `password` (a fresh computer connecting).
fn logs_in(server: &Server, user: &str, password: &str) -> bool {
    let c = Client::new();
    let fp = server.fingerprint();
    let out = c.cairn_stdin(
        &[
            "connect",
            &server.url(),
            "--user",
            user,
            "--password-stdin",
            "--fingerprint",
            &fp,
            "--name",
            "srv",
        ],
        password,
    );
    out.status.success()
}

#[test]
fn an_administrator_runs_a_remote_server_from_another_computer() {
    let server = Server::start();
    server.admin(
        &["user", "add", "root", "--admin", "--password-stdin"],
        Some("root-pw-1"),
    );
    let admin = Client::new();
    admin.connect(&server, "root", "root-pw-1");

    remote_ok(
        &admin,
        &["user", "add", "carol", "--password-stdin", "--quota", "1M"],
        "carol-pw",
    );
    assert!(logs_in(&server, "carol", "carol-pw"));
    let users = remote_ok(&admin, &["user", "list"], "");
    assert!(
        users.contains("carol\t\t0 bytes used of 1048576"),
        "{users}"
    );
    remote_ok(&admin, &["user", "quota", "carol", "none"], "");
    let users = remote_ok(&admin, &["user", "list", "--json"], "");
    let parsed: serde_json::Value = serde_json::from_str(&users).expect("json");
    let carol = parsed
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == "carol"))
        .expect("carol listed");
    assert!(carol["quota"].is_null(), "{carol}");

    remote_ok(
        &admin,
        &["folder", "add", "docs", "--keep-versions", "4"],
        "",
    );
    remote_ok(
        &admin,
        &["folder", "grant", "docs", "carol", "--access", "ro"],
        "",
    );
    remote_ok(
        &admin,
        &["folder", "set", "docs", "--keep-versions", "9"],
        "",
    );
    let folders = remote_ok(&admin, &["folder", "list"], "");
    assert!(
        folders.contains("docs\tkeep 9\thead 0\tcarol:ro"),
        "{folders}"
    );
    remote_ok(&admin, &["folder", "revoke", "docs", "carol"], "");
    let folders = server.admin(&["folder", "list"], None);
    assert!(!folders.contains("carol"), "{folders}");

    // Disabled, a user cannot log in; enabled again, they can; a new password replaces the old.
    remote_ok(&admin, &["user", "disable", "carol"], "");
    assert!(!logs_in(&server, "carol", "carol-pw"));
    remote_ok(&admin, &["user", "enable", "carol"], "");
    remote_ok(
        &admin,
        &["user", "passwd", "carol", "--password-stdin"],
        "carol-new",
    );
    assert!(!logs_in(&server, "carol", "carol-pw"));
    assert!(logs_in(&server, "carol", "carol-new"));
    remote_ok(&admin, &["user", "role", "carol", "admin"], "");
    assert!(server
        .admin(&["user", "list"], None)
        .contains("carol\tadmin"));

    // Mistakes are refused with the rule broken.
    let out = remote(&admin, &["user", "disable", "root"], "");
    assert!(text(&out).contains("your own account"), "{}", text(&out));
    let out = remote(
        &admin,
        &["folder", "grant", "nope", "carol", "--access", "rw"],
        "",
    );
    assert!(
        text(&out).contains("no folder named nope"),
        "{}",
        text(&out)
    );
    let out = remote(&admin, &["user", "add", "carol", "--password-stdin"], "x");
    assert!(text(&out).contains("already exists"), "{}", text(&out));
}

#[test]
fn only_administrators_may_administer() {
    let server = Server::start();
    let alice = Client::new();
    alice.connect(&server, "alice", "alice-pw");
    for args in [
        &["user", "list"][..],
        &["user", "add", "mallory", "--password-stdin"][..],
        &["user", "passwd", "alice", "--password-stdin"][..],
        &["folder", "list"][..],
        &["folder", "grant", "backup", "alice", "--access", "rw"][..],
    ] {
        let out = remote(&alice, args, "mallory-pw");
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out).contains("not an administrator"),
            "{args:?}: {}",
            text(&out)
        );
    }
    assert!(!server.admin(&["user", "list"], None).contains("mallory"));
}

#[test]
fn deleting_a_user_or_a_folder_needs_its_name_twice_and_frees_the_name() {
    let server = Server::start();
    server.admin(
        &["user", "add", "root", "--admin", "--password-stdin"],
        Some("root-pw-1"),
    );
    server.admin(
        &["user", "add", "carol", "--password-stdin"],
        Some("carol-pw"),
    );
    server.admin(&["folder", "add", "team"], None);
    server.admin(
        &["folder", "grant", "team", "carol", "--access", "rw"],
        None,
    );
    let admin = Client::new();
    admin.connect(&server, "root", "root-pw-1");
    // carol's computer backs up into team.
    let carol = Client::new();
    carol.connect(&server, "carol", "carol-pw");
    carol.write("work.txt", &crate::harness::noise(5, 300_000));
    team_task(&carol);
    carol.ok(&["run", "t"]);

    // A wrong or missing confirmation deletes nothing.
    let out = remote(
        &admin,
        &["user", "remove", "carol", "--confirm", "carl"],
        "",
    );
    assert!(
        !out.status.success() && text(&out).contains("nothing was deleted"),
        "{}",
        text(&out)
    );
    assert!(remote_ok(&admin, &["user", "list"], "").contains("carol"));
    let out = remote(&admin, &["user", "remove", "root", "--confirm", "root"], "");
    assert!(text(&out).contains("your own account"), "{}", text(&out));

    remote_ok(
        &admin,
        &["user", "remove", "carol", "--confirm", "carol"],
        "",
    );
    assert!(!remote_ok(&admin, &["user", "list"], "").contains("carol"));
    assert!(!logs_in(&server, "carol", "carol-pw"));
    // Her saved token no longer works; her files stay in the folder.
    let out = carol.cairn(&["run", "t"]);
    assert!(!out.status.success(), "a deleted user's token still works");
    let folders = remote_ok(&admin, &["folder", "list"], "");
    assert!(
        folders.contains("team") && !folders.contains("carol"),
        "{folders}"
    );
    // The name is free again, for a new person with nothing of the old one's.
    remote_ok(
        &admin,
        &["user", "add", "carol", "--password-stdin"],
        "new-carol-pw",
    );
    assert!(logs_in(&server, "carol", "new-carol-pw"));
    let users = remote_ok(&admin, &["user", "list"], "");
    assert_eq!(users.matches("carol").count(), 1, "{users}");

    // A folder: gone with its versions; a new one of that name starts empty.
    let out = remote(
        &admin,
        &["folder", "remove", "team", "--confirm", "tema"],
        "",
    );
    assert!(!out.status.success());
    remote_ok(
        &admin,
        &["folder", "remove", "team", "--confirm", "team"],
        "",
    );
    assert!(!remote_ok(&admin, &["folder", "list"], "").contains("team"));
    remote_ok(&admin, &["folder", "add", "team"], "");
    remote_ok(
        &admin,
        &["folder", "grant", "team", "carol", "--access", "rw"],
        "",
    );
    let again = Client::new();
    again.connect(&server, "carol", "new-carol-pw");
    team_task(&again);
    assert!(again.ls_paths().is_empty(), "{:?}", again.ls_paths());
    // gc frees what only the deleted folder held (it spares what was touched since its run
    // before, hence two runs).
    let freed: u64 = (0..2)
        .map(|_| {
            let out = server.admin(&["gc"], None);
            out.split(" chunks (")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("gc output: {out}"))
        })
        .sum();
    assert_eq!(freed, 300_000);
}

/// Backup task `t` of `c`'s folder into the server folder `team`.
fn team_task(c: &Client) {
    c.add_backup_task_into("team", &[]);
}

/// A folder deleted and made again under its name is a new folder to every computer that
/// synced the old one: however many changes the new one has had, a computer merges with it
/// (its own files sent again, the new folder's fetched) and deletes nothing, as after a
/// server restored from an older copy.
#[test]
fn a_folder_made_again_under_its_name_is_merged_never_taken_as_deletions() {
    let server = Server::start();
    let pc = crate::drive::computer(&server, "pc", &[]);
    pc.write("a.txt", b"kept on pc");
    pc.write("sub/b.txt", b"also kept");
    pc.ok(&["run", "d"]);

    server.admin(&["folder", "remove", "backup", "--confirm", "backup"], None);
    server.admin(&["folder", "add", "backup"], None);
    server.admin(
        &["folder", "grant", "backup", "alice", "--access", "rw"],
        None,
    );
    // Another computer fills the new folder past the old one's sequence numbers.
    let other = crate::drive::computer(&server, "other", &[]);
    for i in 0..12 {
        other.write(&format!("new-{i}.txt"), format!("new {i}").as_bytes());
    }
    other.ok(&["run", "d"]);

    let out = pc.ok(&["run", "d"]);
    assert_eq!(
        std::fs::read(pc.path("a.txt")).ok().as_deref(),
        Some(&b"kept on pc"[..]),
        "{out}"
    );
    assert_eq!(
        std::fs::read(pc.path("sub/b.txt")).ok().as_deref(),
        Some(&b"also kept"[..])
    );
    assert_eq!(
        std::fs::read(pc.path("new-7.txt")).ok().as_deref(),
        Some(&b"new 7"[..])
    );
    other.ok(&["run", "d"]);
    assert_eq!(
        std::fs::read(other.path("a.txt")).ok().as_deref(),
        Some(&b"kept on pc"[..])
    );
}
