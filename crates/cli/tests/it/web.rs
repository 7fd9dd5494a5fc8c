//! The web UI over HTTP: login with CSRF and cookie flags, folders, browsing, time travel,
//! versions and downloads, escaping and access (the browser tests come on top).

use reqwest::blocking::{Client as Http, Response};
use reqwest::StatusCode;

use crate::harness::Server;

pub(crate) fn http() -> Http {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Http::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `name=value` of the Set-Cookie header for `name`, and the whole header.
fn set_cookie(resp: &Response, name: &str) -> Option<(String, String)> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap_or("").to_string(), v.to_string()))
}

/// A logged-in browser: its cookies and CSRF token.
pub(crate) struct Browser {
    pub(crate) http: Http,
    pub(crate) base: String,
    pub(crate) cookies: String,
    pub(crate) csrf: String,
}

impl Browser {
    pub(crate) fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookies)
            .send()
            .expect("get")
    }

    pub(crate) fn text(&self, path: &str) -> String {
        let r = self.get(path);
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.text().expect("html")
    }
}

/// Sends a login until it is not throttled: a failure just before may cost a wait, which the
/// 429's Retry-After gives.
pub(crate) fn past_the_throttle(send: impl Fn() -> Response) -> Response {
    loop {
        let r = send();
        if r.status() != StatusCode::TOO_MANY_REQUESTS {
            return r;
        }
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .expect("a 429 says when to come back");
        std::thread::sleep(std::time::Duration::from_secs(wait.min(60)));
    }
}

pub(crate) fn log_in(server: &Server, user: &str, password: &str) -> Browser {
    let http = http();
    let base = server.url();
    let form = http
        .get(format!("{base}/login"))
        .send()
        .expect("login page");
    let (csrf_cookie, _) = set_cookie(&form, "cairn_csrf_ui").expect("csrf cookie");
    let csrf = csrf_cookie.trim_start_matches("cairn_csrf_ui=").to_string();
    // A failure just before costs a wait, as at the API's login.
    let r = past_the_throttle(|| {
        http.post(format!("{base}/login"))
            .header("cookie", &csrf_cookie)
            .form(&[("user", user), ("password", password), ("csrf", &csrf)])
            .send()
            .expect("login")
    });
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "login of {user}");
    let (session, _) = set_cookie(&r, "cairn_session").expect("session cookie");
    Browser {
        http,
        base,
        cookies: format!("{session}; {csrf_cookie}"),
        csrf,
    }
}

/// Now, as the UI's time fields take it.
pub(crate) fn instant_now() -> String {
    cairn_model::timespec::format_instant(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as i64,
    )
}

#[test]
fn logging_in_is_guarded_and_the_session_cookie_is_locked_down() {
    let server = Server::start();
    let http = http();
    let base = server.url();
    let root = http.get(&base).send().expect("root");
    assert_eq!(root.status(), StatusCode::SEE_OTHER);
    assert_eq!(root.headers()["location"], "/login");

    let form = http
        .get(format!("{base}/login"))
        .send()
        .expect("login page");
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let (csrf_cookie, attrs) = set_cookie(&form, "cairn_csrf_ui").expect("csrf");
    assert!(
        attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict"),
        "{attrs}"
    );
    let csrf = csrf_cookie.trim_start_matches("cairn_csrf_ui=").to_string();

    // A form posted from elsewhere carries no cookie: refused.
    let forged = http
        .post(format!("{base}/login"))
        .form(&[("user", "alice"), ("password", "alice-pw"), ("csrf", &csrf)])
        .send()
        .expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let wrong = http
        .post(format!("{base}/login"))
        .header("cookie", &csrf_cookie)
        .form(&[("user", "alice"), ("password", "nope"), ("csrf", &csrf)])
        .send()
        .expect("post");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong, "cairn_session").is_none());

    let b = log_in(&server, "alice", "alice-pw");
    let page = b.text("/ui");
    assert!(page.contains("backup") && page.contains("alice"), "{page}");

    // A forged or stale session is sent to the login page.
    let stale = http
        .get(format!("{base}/ui"))
        .header("cookie", "cairn_session=forged.token")
        .send()
        .expect("ui");
    assert_eq!(stale.status(), StatusCode::SEE_OTHER);

    // Logging out needs the CSRF token too, and clears the session.
    let r = b
        .http
        .post(format!("{base}/logout"))
        .header("cookie", &b.cookies)
        .form(&[("csrf", "0".repeat(32))])
        .send()
        .expect("logout");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = b
        .http
        .post(format!("{base}/logout"))
        .header("cookie", &b.cookies)
        .form(&[("csrf", b.csrf.as_str())])
        .send()
        .expect("logout");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (cleared, _) = set_cookie(&r, "cairn_session").expect("cleared");
    assert_eq!(cleared, "cairn_session=");
}

#[test]
fn a_user_browses_versions_and_the_past_of_their_folders_only() {
    let server = Server::start();
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    server.admin(&["folder", "add", "team"], None);
    server.admin(
        &["folder", "grant", "team", "alice", "--access", "ro"],
        None,
    );
    let pc = crate::drive::computer(&server, "pc", &[]);
    pc.write("notes/plan.txt", b"first plan");
    pc.write("notes/<script>x&y'.txt", b"x");
    pc.write("gone.txt", b"soon deleted");
    pc.ok(&["run", "d"]);
    pc.write("notes/plan.txt", b"second plan");
    pc.ok(&["run", "d"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = instant_now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::remove_file(pc.path("gone.txt")).expect("rm");
    pc.ok(&["run", "d"]);

    let b = log_in(&server, "alice", "alice-pw");
    let folders = b.text("/ui");
    assert!(
        folders.contains("team</a> <span class=\"muted\">(read-only)"),
        "{folders}"
    );
    let top = b.text("/ui/f/backup");
    assert!(top.contains("notes") && !top.contains("gone.txt"), "{top}");
    // The timeline: the newest moment is the deletion, the one before still has the file.
    let moments: Vec<String> = top
        .split("<li><a href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|h| h.replace("&amp;", "&"))
        .collect();
    assert!(moments.len() >= 2, "{top}");
    assert!(!b.text(&moments[0]).contains("gone.txt"));
    assert!(b.text(&moments[1]).contains("gone.txt"), "{}", moments[1]);
    let notes = b.text("/ui/f/backup?dir=notes");
    assert!(notes.contains("plan.txt"), "{notes}");
    assert!(
        !notes.contains("<script>") && notes.contains("&lt;script&gt;x&amp;y&#39;.txt"),
        "{notes}"
    );

    // Time travel: before the deletion the file is there; deleted files can be shown.
    let past = b.text(&format!("/ui/f/backup?at={before}"));
    assert!(past.contains("gone.txt"), "{past}");
    let with_deleted = b.text("/ui/f/backup?deleted=true");
    assert!(
        with_deleted.contains("gone.txt") && with_deleted.contains("deleted"),
        "{with_deleted}"
    );

    // Versions: both listed, each downloadable.
    let versions = b.text("/ui/f/backup/versions?path=notes/plan.txt");
    let seqs: Vec<&str> = versions
        .split("seq=")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(seqs.len(), 2, "{versions}");
    let old = b.get(&format!(
        "/ui/f/backup/download?path=notes/plan.txt&seq={}",
        seqs[1]
    ));
    let disp = old.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(disp.contains("plan.txt"), "{disp}");
    assert_eq!(old.bytes().expect("body").as_ref(), b"first plan");
    let now = b.get("/ui/f/backup/download?path=notes/plan.txt");
    assert_eq!(now.bytes().expect("body").as_ref(), b"second plan");

    // Bob sees neither folder; paths that climb are refused.
    let bob = log_in(&server, "bob", "bob-pw");
    assert!(!bob.text("/ui").contains("backup"));
    let r = bob.get("/ui/f/backup");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = bob.get("/ui/f/backup/download?path=notes/plan.txt");
    assert_ne!(r.status(), StatusCode::OK);
    let r = b.get("/ui/f/backup/download?path=../backup/notes/plan.txt");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
