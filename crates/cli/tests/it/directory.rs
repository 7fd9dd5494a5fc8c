//! Directory logins against a real slapd (cairn_testkit::ldap): both login forms, the first
//! login making the account, groups giving folder access (and taking it back), wrong
//! passwords throttled like local ones, disabled accounts, StartTLS and LDAPS, untrusted
//! certificates, an unreachable directory beside working local logins, and a local account
//! that a directory user of the same name cannot take over.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use cairn_testkit::ldap::{self, Slapd};
use reqwest::StatusCode;

use crate::harness::{http, wait_until, Client, Server};

/// Which way the server reaches the directory and finds users.
struct Setup {
    url: String,
    starttls: bool,
    /// The CA to trust; `None`: the system's.
    ca_file: Option<PathBuf>,
    /// The `[ldap]` keys that find users and groups.
    lookup: &'static str,
    timeout_secs: u64,
}

/// A service account searches by uid; groups by a search for `member`.
const SEARCH: &str = r#"
bind_dn = "cn=admin,dc=example,dc=com"
bind_password = "directory-admin-pw"
user_filter = "(&(objectClass=inetOrgPerson)(uid={user}))"
group_filter = "(&(objectClass=groupOfNames)(member={dn}))"
disabled_filter = "(employeeType=disabled)"
"#;

/// Active Directory's way: bind straight as the user, name and groups from their entry.
/// (The filter stays on uid: Microsoft's schema in slapd gives sAMAccountName no equality
/// rule, so a filter on it matches nothing here, unlike in a real domain.)
const DIRECT: &str = r#"
user_dn = "uid={user},ou=people,dc=example,dc=com"
user_filter = "(&(objectClass=inetOrgPerson)(uid={user}))"
name_attribute = "sAMAccountName"
group_attribute = "memberOf"
"#;

impl Setup {
    fn ldaps(dir: &Slapd) -> Setup {
        Setup {
            url: dir.ldaps_url(),
            starttls: false,
            ca_file: Some(dir.ca_file()),
            lookup: SEARCH,
            timeout_secs: 10,
        }
    }

    fn config(&self) -> String {
        format!(
            r#"[ldap]
url = "{url}"
starttls = {starttls}
{ca}
base_dn = "{base}"
domain = "{domain}"
admin_group = "admins"
timeout = {timeout}
{lookup}
[[ldap.group]]
group = "staff"
folder = "team"
access = "rw"
[[ldap.group]]
group = "cn=readers,ou=groups,dc=example,dc=com"
folder = "team"
access = "ro"
"#,
            url = self.url,
            starttls = self.starttls,
            ca = self
                .ca_file
                .as_ref()
                .map(|f| format!("ca_file = \"{}\"", f.display()))
                .unwrap_or_default(),
            base = ldap::BASE_DN,
            domain = ldap::DOMAIN,
            timeout = self.timeout_secs,
            lookup = self.lookup,
        )
    }
}

/// The test server (local alice, folder `backup`) with folder `team`, restarted with
/// `setup`'s `[ldap]` in its config file.
fn server(setup: &Setup) -> Server {
    let mut s = Server::start();
    s.admin(&["folder", "add", "team"], None);
    let path = s.data.with_file_name("server.toml");
    std::fs::write(&path, setup.config()).expect("write config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    s.args = vec!["--config".into(), path.to_string_lossy().into_owned()];
    s.restart();
    s
}

/// POST /api/v1/login: the status and the body.
fn login(s: &Server, user: &str, password: &str) -> (StatusCode, serde_json::Value) {
    let r = http()
        .post(format!("{}/api/v1/login", s.url()))
        .json(&serde_json::json!({"user": user, "password": password}))
        .send()
        .expect("login");
    let status = r.status();
    (status, r.json().unwrap_or_default())
}

fn token(s: &Server, user: &str, password: &str) -> String {
    let (status, body) = login(s, user, password);
    assert_eq!(
        status,
        StatusCode::OK,
        "{user}: {body}\n{:?}",
        s.log.lock().map(|l| l.join("\n"))
    );
    body["token"].as_str().expect("token").to_string()
}

/// The folders the token's user sees, with their access.
fn folders(s: &Server, token: &str) -> Vec<(String, String)> {
    let r = http()
        .get(format!("{}/api/v1/folders", s.url()))
        .bearer_auth(token)
        .send()
        .expect("folders");
    assert!(r.status().is_success(), "{}", r.status());
    let list: serde_json::Value = r.json().expect("json");
    let mut out: Vec<(String, String)> = list
        .as_array()
        .or_else(|| list["folders"].as_array())
        .expect("a list")
        .iter()
        .map(|f| {
            let field = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (field("name"), field("access"))
        })
        .collect();
    out.sort();
    out
}

/// `server user list` of the server.
fn users(s: &Server) -> String {
    s.admin(&["user", "list"], None)
}

#[test]
fn a_directory_user_logs_in_in_both_forms_as_one_account_made_at_the_first_login() {
    let Some(dir) = ldap::start_or_skip("directory_both_forms") else {
        return;
    };
    let s = server(&Setup::ldaps(&dir));
    assert!(
        !users(&s).contains("dana"),
        "no account before the first login"
    );
    let first = token(&s, "EXAMPLE\\dana", "dana-dir-pw");
    assert!(users(&s).contains("dana"), "{}", users(&s));
    token(&s, "dana@dc=example,dc=com", "dana-dir-pw");
    token(&s, "dana@example.com", "dana-dir-pw");
    // A plain name no local account has goes to the directory.
    let plain = token(&s, "dana", "dana-dir-pw");
    assert_eq!(folders(&s, &first), folders(&s, &plain));
    assert_eq!(folders(&s, &first), [("team".into(), "rw".into())]);
    let listed = users(&s);
    let dana: Vec<&str> = listed.lines().filter(|l| l.starts_with("dana\t")).collect();
    assert!(
        matches!(dana[..], [line] if line.contains("directory")),
        "{listed}"
    );
    assert!(listed
        .lines()
        .any(|l| l.starts_with("alice\t") && !l.contains("directory")));
    // The web page's door is the same.
    let browser = crate::web::log_in(&s, "dana@example.com", "dana-dir-pw");
    assert!(browser.text("/ui").contains("team"));
    // An administrator can still disable a directory user here.
    s.admin(&["user", "disable", "dana"], None);
    assert_eq!(
        login(&s, "EXAMPLE\\dana", "dana-dir-pw").0,
        StatusCode::FORBIDDEN
    );
    // Another domain's name is nobody's.
    assert_eq!(
        login(&s, "OTHER\\dana", "dana-dir-pw").0,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn groups_give_folder_access_that_syncs_and_leaving_a_group_takes_it_away() {
    let Some(dir) = ldap::start_or_skip("directory_groups") else {
        return;
    };
    let s = server(&Setup::ldaps(&dir));
    // dana (staff) syncs folder team both ways through the CLI, logged in as EXAMPLE\dana.
    let c = Client::new();
    c.connect(&s, "EXAMPLE\\dana", "dana-dir-pw");
    let root = c.root.to_str().expect("utf-8").to_string();
    c.ok(&[
        "drive",
        "add",
        "d",
        "--local",
        &root,
        "--connection",
        "srv",
        "--folder",
        "team",
    ]);
    c.write("plan.txt", b"from dana");
    c.ok(&["run", "d", "--once"]);
    // erin (readers, admins) reads it, may not write, and is an administrator.
    let erin = token(&s, "EXAMPLE\\erin", "erin-dir-pw");
    assert_eq!(folders(&s, &erin), [("team".into(), "ro".into())]);
    let r = http()
        .get(format!("{}/api/v1/folders/team/tree", s.url()))
        .bearer_auth(&erin)
        .send()
        .expect("tree");
    assert!(r.text().expect("text").contains("plan.txt"));
    let admins = http()
        .get(format!("{}/api/v1/admin/users", s.url()))
        .bearer_auth(&erin)
        .send()
        .expect("admin users");
    assert_eq!(admins.status(), StatusCode::OK);

    // Out of staff: the next login takes team away.
    dir.modify(
        "dn: cn=staff,ou=groups,dc=example,dc=com\nchangetype: modify\ndelete: member\n\
         member: uid=dana,ou=people,dc=example,dc=com\n",
    )
    .expect("remove dana from staff");
    let dana = token(&s, "EXAMPLE\\dana", "dana-dir-pw");
    assert!(folders(&s, &dana).is_empty(), "{:?}", folders(&s, &dana));
}

#[test]
fn wrong_passwords_are_throttled_like_local_ones_and_disabled_accounts_are_refused() {
    let Some(dir) = ldap::start_or_skip("directory_refusals") else {
        return;
    };
    let s = server(&Setup::ldaps(&dir));
    // Disabled the Active Directory way, and by the configured filter: the right password
    // does not let them in, and no account is made.
    let (status, body) = login(&s, "EXAMPLE\\frank", "frank-dir-pw");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = login(&s, "gail@example.com", "gail-dir-pw");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!users(&s).contains("frank") && !users(&s).contains("gail"));
    // An empty password is no anonymous bind.
    assert_eq!(login(&s, "EXAMPLE\\erin", "").0, StatusCode::UNAUTHORIZED);

    // Wrong passwords: refused, then slowed down (429) like local ones. The forms and cases
    // take turns and share one count; fewer failures than an address may have for free
    // (16), so what slows them is the name's count.
    let forms = [
        "EXAMPLE\\dana",
        "DANA@example.com",
        "dana@dc=example,dc=com",
    ];
    let statuses: Vec<StatusCode> = (0..12)
        .map(|i| login(&s, forms[i % forms.len()], "wrong").0)
        .collect();
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(s)),
        "{statuses:?}"
    );
    let events = s.admin(&["log", "--limit", "50"], None);
    assert!(events.contains("directory: wrong password"), "{events}");
    assert!(events.contains("disabled in the directory"), "{events}");
    assert!(!events.contains("dana-dir-pw"), "{events}");
    // A line logged after everything above: once it is read, so is all before it.
    login(&s, "EXAMPLE\\admin", "admin-dir-pw");
    wait_until(30, "the log to catch up", || {
        s.log_contains("admin is the name of a local account")
    });
    assert!(!s.log_contains("dana-dir-pw") && !s.log_contains("directory-admin-pw"));
}

#[test]
fn a_directory_user_never_takes_over_a_local_account_of_the_same_name() {
    let Some(dir) = ldap::start_or_skip("directory_local_names") else {
        return;
    };
    let s = server(&Setup::ldaps(&dir));
    // A plain local name is the local account's, whatever the directory says.
    let alice = token(&s, "alice", "alice-pw");
    assert_eq!(folders(&s, &alice), [("backup".into(), "rw".into())]);
    assert_eq!(
        login(&s, "alice", "alice-dir-pw").0,
        StatusCode::UNAUTHORIZED
    );
    // The directory's admin, with the directory's password, is not the local admin.
    assert_eq!(
        login(&s, "EXAMPLE\\admin", "admin-dir-pw").0,
        StatusCode::UNAUTHORIZED
    );
    wait_until(30, "the log to say why", || {
        s.log_contains("admin is the name of a local account")
    });
    let events = s.admin(&["log", "--limit", "20"], None);
    assert!(
        events.contains("admin is the name of a local account"),
        "{events}"
    );
}

#[test]
fn starttls_and_the_directorys_own_attributes_work_too() {
    let Some(dir) = ldap::start_or_skip("directory_starttls") else {
        return;
    };
    let s = server(&Setup {
        url: dir.ldap_url(),
        starttls: true,
        ca_file: Some(dir.ca_file()),
        lookup: DIRECT,
        timeout_secs: 10,
    });
    let dana = token(&s, "EXAMPLE\\dana", "dana-dir-pw");
    assert_eq!(folders(&s, &dana), [("team".into(), "rw".into())]);
    let erin = token(&s, "erin@example.com", "erin-dir-pw");
    assert_eq!(folders(&s, &erin), [("team".into(), "ro".into())]);
    assert_eq!(
        login(&s, "EXAMPLE\\frank", "frank-dir-pw").0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        login(&s, "EXAMPLE\\dana", "wrong").0,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn a_certificate_the_config_does_not_trust_is_refused_over_ldaps_and_starttls() {
    let Some(dir) = ldap::start_or_skip("directory_untrusted") else {
        return;
    };
    for (url, starttls) in [(dir.ldaps_url(), false), (dir.ldap_url(), true)] {
        let s = server(&Setup {
            url,
            starttls,
            ca_file: Some(dir.other_ca_file()),
            lookup: SEARCH,
            timeout_secs: 10,
        });
        let (status, body) = login(&s, "EXAMPLE\\dana", "dana-dir-pw");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.to_string().contains("directory"), "{body}");
        // The server's log reaches the test through a pipe: give it a moment.
        wait_until(30, "the log to say why", || s.log_contains("UnknownIssuer"));
        assert!(!users(&s).contains("dana"));
    }
}

#[test]
fn an_unreachable_directory_fails_its_users_in_bounded_time_and_local_users_log_in() {
    // One port where nothing listens, one that accepts connections and never answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    for port in [closed_port, silent_port] {
        let s = server(&Setup {
            url: format!("ldaps://127.0.0.1:{port}"),
            starttls: false,
            ca_file: None,
            lookup: SEARCH,
            timeout_secs: 2,
        });
        let (status, body) = login(&s, "EXAMPLE\\dana", "dana-dir-pw");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        // Not counted as a wrong password: the same attempt is not throttled.
        assert_eq!(
            login(&s, "EXAMPLE\\dana", "dana-dir-pw").0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        token(&s, "alice", "alice-pw");
    }
    drop(silent);
}

#[test]
fn a_config_that_would_send_passwords_in_clear_text_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "[ldap]\nurl = \"ldap://127.0.0.1:389\"\nbase_dn = \"dc=example,dc=com\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["server", "run", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("clear text") && err.contains("starttls"),
        "{err}"
    );
}
