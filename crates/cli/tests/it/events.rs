//! The server's activity log: logins (failed and not) with their address, administration
//! with who did it, sharing links without their secrets, shown to administrators only on the
//! administration page, through `/api/v1/admin/events` and by `cairn server log` (locally and
//! remotely), and kept within its bound.

use reqwest::blocking::Response;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{Client, Server};
use crate::web::{http, log_in, past_the_throttle};

/// A login through the API, waiting out the throttle a failure just before may cost.
fn api_login(server: &Server, user: &str, password: &str) -> Response {
    past_the_throttle(|| {
        http()
            .post(format!("{}/api/v1/login", server.url()))
            .json(&json!({"user": user, "password": password}))
            .send()
            .expect("login")
    })
}

fn token_of(server: &Server, user: &str, password: &str) -> String {
    let r = api_login(server, user, password);
    assert_eq!(r.status(), StatusCode::OK, "login of {user}");
    let body: Value = r.json().expect("json");
    body["token"].as_str().expect("token").to_string()
}

/// `GET /api/v1/admin/events?QUERY` with `token`: the status and the body's text.
fn events_api(server: &Server, token: &str, query: &str) -> (StatusCode, String) {
    let r = http()
        .get(format!("{}/api/v1/admin/events?{query}", server.url()))
        .bearer_auth(token)
        .send()
        .expect("events");
    (r.status(), r.text().expect("body"))
}

fn events(server: &Server, token: &str, query: &str) -> Vec<Value> {
    let (status, text) = events_api(server, token, query);
    assert_eq!(status, StatusCode::OK, "{text}");
    let page: Value = serde_json::from_str(&text).expect("json");
    page["events"].as_array().expect("events").clone()
}

fn find<'a>(events: &'a [Value], kind: &str, target: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["kind"] == kind && e["target"] == target)
        .unwrap_or_else(|| panic!("no {kind} event on {target} in {events:#?}"))
}

/// A server with an administrator `root` besides alice.
fn server_with_root() -> Server {
    let server = Server::start();
    server.admin(
        &["user", "add", "root", "--admin", "--password-stdin"],
        Some("root-pw-1"),
    );
    server
}

#[test]
fn failed_and_successful_logins_are_recorded_with_their_address_and_never_the_password() {
    let server = server_with_root();
    let wrong = api_login(&server, "alice", "not-alices-pw-42");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let unknown = api_login(&server, "nobody-here", "whatever-pw-17");
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    token_of(&server, "alice", "alice-pw");
    let browser = log_in(&server, "alice", "alice-pw");

    let root = token_of(&server, "root", "root-pw-1");
    let (status, raw) = events_api(&server, &root, "kind=login&user=&before=&limit=");
    assert_eq!(status, StatusCode::OK, "{raw}");
    for secret in ["not-alices-pw-42", "whatever-pw-17", "alice-pw\""] {
        assert!(!raw.contains(secret), "a password reached the log: {raw}");
    }
    let logins = events(&server, &root, "kind=login&limit=100");
    let failed: Vec<&Value> = logins
        .iter()
        .filter(|e| e["kind"] == "login.failed")
        .collect();
    let on_alice = failed
        .iter()
        .find(|e| e["target"] == "alice")
        .expect("alice's failure");
    assert_eq!(on_alice["source"], "127.0.0.1");
    assert_eq!(on_alice["outcome"], "failed");
    assert_eq!(on_alice["actor"], "alice");
    assert!(
        on_alice["detail"]
            .as_str()
            .is_some_and(|d| d.contains("wrong password")),
        "{on_alice}"
    );
    let stranger = failed
        .iter()
        .find(|e| e["target"] == "nobody-here")
        .expect("the unknown name's failure");
    assert!(stranger["actor"].is_null(), "{stranger}");
    assert!(stranger["detail"]
        .as_str()
        .is_some_and(|d| d.contains("unknown user")));
    let ok: Vec<&Value> = logins
        .iter()
        .filter(|e| e["kind"] == "login.ok" && e["actor"] == "alice")
        .collect();
    assert_eq!(ok.len(), 2, "the API's and the web's: {logins:#?}");
    assert!(ok.iter().all(|e| e["source"] == "127.0.0.1"));
    assert!(ok.iter().any(|e| e["detail"] == "web"));

    // Newest first, a page at a time.
    let first = http()
        .get(format!(
            "{}/api/v1/admin/events?kind=login&limit=2",
            server.url()
        ))
        .bearer_auth(&root)
        .send()
        .expect("events")
        .json::<Value>()
        .expect("json");
    let ids: Vec<i64> = first["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert!(ids[0] > ids[1], "{ids:?}");
    let before = first["next_before"].as_i64().expect("an older page");
    let older = events(&server, &root, &format!("kind=login&before={before}"));
    assert!(older.iter().all(|e| e["id"].as_i64().expect("id") < before));

    // A log-out of the web session is recorded too.
    let out = browser
        .http
        .post(format!("{}/logout", browser.base))
        .header("cookie", &browser.cookies)
        .form(&[("csrf", browser.csrf.as_str())])
        .send()
        .expect("logout");
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let logouts = events(&server, &root, "kind=logout");
    assert_eq!(find(&logouts, "logout", "alice")["actor"], "alice");

    let bad = events_api(&server, &root, "kind=logins");
    assert_eq!(bad.0, StatusCode::BAD_REQUEST, "{}", bad.1);
    assert!(bad.1.contains("login.failed"), "{}", bad.1);
}

#[test]
fn administration_is_recorded_with_who_did_it_and_shown_to_administrators_only() {
    let server = server_with_root();
    let admin = Client::new();
    admin.connect(&server, "root", "root-pw-1");
    let remote = |args: &[&str], stdin: &str| {
        let mut full = vec!["server"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--connection", "srv"]);
        let out = admin.cairn_stdin(&full, stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    remote(
        &["user", "add", "carol", "--password-stdin"],
        "carol-secret-pw",
    );
    remote(&["user", "quota", "carol", "1M"], "");
    remote(&["folder", "set", "backup", "--keep-versions", "5"], "");

    // Remotely, as JSON: who did it, to what, from where; the password is not there.
    let json = remote(&["log", "--kind", "user", "--json"], "");
    assert!(!json.contains("carol-secret-pw"), "{json}");
    let page: Value = serde_json::from_str(&json).expect("json");
    let list = page["events"].as_array().expect("events");
    let created = find(list, "user.created", "carol");
    assert_eq!(created["actor"], "root");
    assert_eq!(created["source"], "127.0.0.1");
    assert_eq!(created["outcome"], "ok");
    let quota = find(list, "user.quota", "carol");
    assert!(quota["detail"]
        .as_str()
        .is_some_and(|d| d.contains("1048576")));
    assert!(
        list.iter()
            .all(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("user."))),
        "only the user group: {list:#?}"
    );

    // Locally, as text; the console's own changes say so.
    server.admin(&["user", "disable", "carol"], None);
    let text = server.admin(&["log", "--user", "carol"], None);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("\tuser.disabled\tok\t-\tcarol\tconsole\t"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\tuser.created\tok\troot\tcarol\t127.0.0.1\t")),
        "{text}"
    );
    let folder = server.admin(&["log", "--kind", "folder.retention", "--limit", "1"], None);
    assert!(
        folder.contains("\troot\tbackup\t127.0.0.1\tkeeps 5 versions per file"),
        "{folder}"
    );
    let starts = server.admin(&["log", "--kind", "server"], None);
    assert!(starts.contains("\tserver.start\tok\t"), "{starts}");
    let refused = server.admin_raw(&["log", "--kind", "nonsense"], None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown event kind"));

    // A user who is not an administrator sees none of it.
    let alice = token_of(&server, "alice", "alice-pw");
    let (status, body) = events_api(&server, &alice, "");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let browser = log_in(&server, "alice", "alice-pw");
    let page = browser.get("/ui/admin?kind=login");
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let html = page.text().expect("html");
    assert!(!html.contains("login.ok"), "{html}");
    let out = alice_log(&server, "alice", "alice-pw");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an administrator"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cairn server log --connection srv` from a computer of `user`.
fn alice_log(server: &Server, user: &str, password: &str) -> std::process::Output {
    let c = Client::new();
    c.connect(server, user, password);
    c.cairn(&["server", "log", "--connection", "srv"])
}

#[test]
fn the_page_shows_markup_in_a_user_name_as_text() {
    let server = server_with_root();
    let http = http();
    let base = server.url();
    let form = http.get(format!("{base}/login")).send().expect("page");
    let cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cairn_csrf_ui="))
        .and_then(|v| v.split(';').next())
        .expect("csrf cookie")
        .to_string();
    let csrf = cookie.trim_start_matches("cairn_csrf_ui=").to_string();
    let name = "<b>mallory</b><script>alert(1)</script>";
    let r = http
        .post(format!("{base}/login"))
        .header("cookie", &cookie)
        .form(&[("user", name), ("password", "pw"), ("csrf", &csrf)])
        .send()
        .expect("login");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let root = log_in(&server, "root", "root-pw-1");
    let html = root.text("/ui/admin?kind=login.failed");
    assert!(html.contains("Activity log"), "{html}");
    assert!(
        html.contains("&lt;b&gt;mallory&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<b>mallory") && !html.contains("<script>alert"));
    assert!(html.contains("unknown user") && html.contains("127.0.0.1"));
    assert!(!html.contains("login.ok</td>"), "filtered to failures");

    // An administration change made on the page shows up on it, and so does its filter.
    let r = root
        .http
        .post(format!("{base}/ui/admin/folders"))
        .header("cookie", &root.cookies)
        .form(&[
            ("csrf", root.csrf.as_str()),
            ("name", "photos"),
            ("keep_versions", "3"),
        ])
        .send()
        .expect("new folder");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = root.text("/ui/admin?kind=folder&user=root");
    assert!(
        html.contains("<td>folder.created</td><td>root</td><td>photos</td>"),
        "{html}"
    );
    let bad = root.text("/ui/admin?kind=%3Cnonsense%3E");
    assert!(
        bad.contains("unknown event kind") && bad.contains("&quot;&lt;nonsense&gt;&quot;"),
        "{bad}"
    );
}

#[test]
fn a_link_opened_with_a_wrong_password_is_recorded_without_the_password_or_token() {
    let server = server_with_root();
    let alice = token_of(&server, "alice", "alice-pw");
    let made: Value = http()
        .post(format!("{}/api/v1/shares", server.url()))
        .bearer_auth(&alice)
        .json(&json!({"folder": "backup", "path": "", "password": "link-pw-right"}))
        .send()
        .expect("share")
        .json()
        .expect("json");
    let url = format!(
        "{}{}",
        server.url(),
        made["url_path"].as_str().expect("url")
    );
    let token = url.rsplit('/').next().expect("token").to_string();
    let id = made["id"].as_i64().expect("id");

    let visitor = http();
    let form = visitor.get(&url).send().expect("page");
    let cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cairn_csrf="))
        .and_then(|v| v.split(';').next())
        .expect("csrf cookie")
        .to_string();
    let csrf = cookie.trim_start_matches("cairn_csrf=").to_string();
    let wrong = visitor
        .post(&url)
        .header("cookie", &cookie)
        .form(&[("password", "link-pw-guess"), ("csrf", &csrf)])
        .send()
        .expect("post");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let root = token_of(&server, "root", "root-pw-1");
    let (status, raw) = events_api(&server, &root, "kind=share");
    assert_eq!(status, StatusCode::OK);
    for secret in ["link-pw-guess", "link-pw-right", token.as_str()] {
        assert!(!raw.contains(secret), "{secret} reached the log: {raw}");
    }
    let list = events(&server, &root, "kind=share");
    let link = format!("link {id}");
    let accessed = find(&list, "share.accessed", &link);
    assert_eq!(accessed["outcome"], "failed");
    assert_eq!(accessed["detail"], "wrong password");
    assert_eq!(accessed["source"], "127.0.0.1");
    assert!(accessed["actor"].is_null(), "a visitor: {accessed}");
    let created = find(&list, "share.created", &link);
    assert_eq!(created["actor"], "alice");
    assert!(created["detail"]
        .as_str()
        .is_some_and(|d| d.contains("with a password")));

    let revoked = http()
        .delete(format!("{}/api/v1/shares/{id}", server.url()))
        .bearer_auth(&root)
        .send()
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::OK);
    let list = events(&server, &root, "kind=share.revoked&user=root");
    assert_eq!(find(&list, "share.revoked", &link)["actor"], "root");
}

/// With the log's bound set low (`CAIRN_TEST_MAX_EVENTS`), a run of logins leaves no more rows
/// than the bound; the newest are the ones kept.
#[test]
#[cfg(feature = "test-hooks")]
fn the_log_keeps_within_its_bound_however_many_logins_come() {
    let server = Server::start_with(&[("CAIRN_TEST_MAX_EVENTS", "20")]);
    for _ in 0..30 {
        token_of(&server, "alice", "alice-pw");
    }
    let wrong = api_login(&server, "alice", "wrong-one");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let json = server.admin(&["log", "--limit", "1000", "--json"], None);
    let page: Value = serde_json::from_str(&json).expect("json");
    let list = page["events"].as_array().expect("events");
    // At most the bound: the cap of 20 prunes at every insert.
    assert!(list.len() <= 20, "{} events", list.len());
    assert!(list.len() >= 15, "{} events", list.len());
    assert_eq!(list[0]["kind"], "login.failed", "the newest is kept");
    assert!(
        list.iter().all(|e| e["kind"] != "server.start"),
        "the oldest went"
    );
}

/// A failed API login sent with `X-Forwarded-For: forwarded`; the source the log recorded.
fn logged_source(server: &Server, root: &str, forwarded: &str) -> String {
    let r = past_the_throttle(|| {
        http()
            .post(format!("{}/api/v1/login", server.url()))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"user": "alice", "password": "wrong-pw-behind-proxy"}))
            .send()
            .expect("login")
    });
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let logins = events(server, root, "kind=login&limit=1");
    logins[0]["source"].as_str().expect("source").to_string()
}

/// Behind a trusted proxy, logins are logged (and throttled) by the client's address from
/// `X-Forwarded-For`; a client that is not a trusted proxy cannot pose as another address.
#[test]
fn the_address_behind_a_trusted_proxy_is_logged_and_a_forged_one_is_not() {
    let mut server = server_with_root();
    let root = token_of(&server, "root", "root-pw-1");
    assert_eq!(
        logged_source(&server, &root, "198.51.100.7"),
        "127.0.0.1",
        "no proxy is trusted: the header is the client's own word"
    );
    server.args = vec!["--trusted-proxy".into(), "127.0.0.0/8".into()];
    server.restart();
    assert_eq!(
        logged_source(&server, &root, "198.51.100.7"),
        "198.51.100.7"
    );
    // A client's own header, then the proxy's append: the hop the proxy added wins.
    assert_eq!(
        logged_source(&server, &root, "203.0.113.9, 198.51.100.8"),
        "198.51.100.8"
    );
    let bad = server.admin_raw(&["run", "--trusted-proxy", "lb.example"], None);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("not an address range"), "{err}");
}

/// Logins refused before any password work (429) are logged once per address a minute, not
/// one row per attempt: a flood costs the log almost nothing.
#[test]
fn throttled_logins_are_logged_once_a_minute_per_address() {
    let server = server_with_root();
    let root = token_of(&server, "root", "root-pw-1");
    let attempt = || {
        http()
            .post(format!("{}/api/v1/login", server.url()))
            .json(&json!({"user": "alice", "password": "wrong-pw-flood"}))
            .send()
            .expect("login")
            .status()
    };
    // A failure blocks the name for a moment: the attempts right after it are refused.
    let mut refused = 0;
    for _ in 0..20 {
        if attempt() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused >= 2, "no 429 in 20 quick attempts");
    let logged: Vec<Value> = events(&server, &root, "kind=login&limit=100")
        .into_iter()
        .filter(|e| e["kind"] == "login.throttled")
        .collect();
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert_eq!(logged[0]["source"], "127.0.0.1");
    assert_eq!(logged[0]["target"], "alice");
    assert!(!logged[0].to_string().contains("wrong-pw-flood"));
}
