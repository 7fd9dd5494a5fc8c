//! Sharing links over HTTP: passwords, accesses, expiry, revocation, boundaries, escaping and
//! the headers of the public pages (the browser tests of the web UI come on top).

use reqwest::blocking::{Client as Http, Response};
use reqwest::StatusCode;

use crate::harness::{Client, Server};

/// A client that shows redirects and cookies as they come.
fn http() -> Http {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Http::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The `name=value` of a Set-Cookie header of `resp`, and the whole header.
fn set_cookie(resp: &Response, name: &str) -> Option<(String, String)> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap_or("").to_string(), v.to_string()))
}

fn share(c: &Client, rel: &str, extra: &[&str], stdin: &str) -> String {
    let path = c.path(rel);
    let mut args = vec!["share", "create", "d", path.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let out = c.cairn_stdin(&args, stdin);
    assert!(
        out.status.success(),
        "share create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A drive computer of alice that synced `files`.
fn computer_with(server: &Server, files: &[(&str, &[u8])]) -> Client {
    let pc = crate::drive::computer(server, "pc", &[]);
    for (rel, data) in files {
        pc.write(rel, data);
    }
    pc.ok(&["run", "d"]);
    pc
}

#[test]
fn a_password_link_counts_its_downloads_and_then_stops() {
    let server = Server::start();
    let pc = computer_with(&server, &[("report.pdf", b"the report")]);
    let url = share(
        &pc,
        "report.pdf",
        &["--password-stdin", "--max-access", "2"],
        "s3cret-pw",
    );
    assert!(
        url.starts_with(&server.url()) && url.contains("/s/"),
        "{url}"
    );
    let token = url.rsplit('/').next().expect("token");
    assert_eq!(token.len(), 48, "192 random bits in hex");
    let http = http();

    // The page asks for the password, with the safety headers, and sets a CSRF cookie.
    let form = http.get(&url).send().expect("page");
    assert_eq!(form.status(), StatusCode::OK);
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    let (csrf_cookie, attrs) = set_cookie(&form, "cairn_csrf").expect("csrf cookie");
    for flag in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(attrs.contains(flag), "{attrs}");
    }
    let csrf = csrf_cookie.trim_start_matches("cairn_csrf=").to_string();
    let body = form.text().expect("html");
    assert!(
        body.contains("password") && !body.contains("report.pdf"),
        "{body}"
    );

    // Downloading before the password is given leads back to the form.
    let early = http
        .get(format!("{url}/download"))
        .send()
        .expect("download");
    assert_eq!(early.status(), StatusCode::SEE_OTHER);

    // No CSRF token: refused. A wrong password: refused, nothing unlocked.
    let forged = http
        .post(&url)
        .form(&[("password", "s3cret-pw"), ("csrf", &csrf)])
        .send()
        .expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let wrong = http
        .post(&url)
        .header("cookie", &csrf_cookie)
        .form(&[("password", "guess"), ("csrf", &csrf)])
        .send()
        .expect("post");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong, "cairn_share").is_none());

    // The right one unlocks this link for this browser (after the wait a failure costs: the
    // login gate throttles a link's password as it throttles a user's).
    let right = loop {
        let r = http
            .post(&url)
            .header("cookie", &csrf_cookie)
            .form(&[("password", "s3cret-pw"), ("csrf", &csrf)])
            .send()
            .expect("post");
        if r.status() != StatusCode::TOO_MANY_REQUESTS {
            break r;
        }
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .expect("a 429 says when to come back");
        assert!(wait <= 60, "{wait}");
        std::thread::sleep(std::time::Duration::from_secs(wait));
    };
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let (unlock, attrs) = set_cookie(&right, "cairn_share").expect("unlock cookie");
    assert!(
        attrs.contains("HttpOnly") && attrs.contains(&format!("Path=/s/{token}")),
        "{attrs}"
    );
    let page = http
        .get(&url)
        .header("cookie", &unlock)
        .send()
        .expect("page");
    assert!(page.text().expect("html").contains("report.pdf"));

    let get = || {
        http.get(format!("{url}/download"))
            .header("cookie", &unlock)
            .send()
            .expect("download")
    };
    for _ in 0..2 {
        let d = get();
        assert_eq!(d.status(), StatusCode::OK);
        let disp = d.headers()["content-disposition"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(
            disp.starts_with("attachment; filename=\"report.pdf\""),
            "{disp}"
        );
        assert_eq!(d.bytes().expect("body").as_ref(), b"the report");
    }
    assert_eq!(
        get().status(),
        StatusCode::GONE,
        "two accesses were allowed"
    );
    let listed = pc.ok(&["share", "list"]);
    assert!(
        listed.contains("exhausted") && listed.contains("2/2 accesses"),
        "{listed}"
    );
    // The activity log: the wrong and the right password, and the two counted downloads;
    // neither the password nor the token.
    let log = server.admin(&["log", "--kind", "share"], None);
    assert!(!log.contains("s3cret-pw") && !log.contains("guess") && !log.contains(token));
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("\tshare.accessed\tok\t-\t"), 3, "{log}");
    assert_eq!(count("\t127.0.0.1\tdownload report.pdf"), 2, "{log}");
    assert_eq!(count("\t127.0.0.1\tpassword accepted"), 1, "{log}");
    assert_eq!(count("\tshare.accessed\tfailed\t-\t"), 1, "{log}");
    assert_eq!(count("\tshare.created\tok\talice\t"), 1, "{log}");
}

#[test]
fn a_folder_link_reaches_its_folder_and_nothing_above_it() {
    let server = Server::start();
    let pc = computer_with(
        &server,
        &[
            ("top-secret.txt", b"not shared"),
            ("public/a.txt", b"file a"),
            ("public/sub/b.txt", b"file b"),
            ("public/<script>alert(1)</script>.txt", b"x"),
        ],
    );
    let url = share(&pc, "public", &[], "");
    let http = http();
    let page = http.get(&url).send().expect("page").text().expect("html");
    assert!(page.contains("a.txt") && page.contains("sub"), "{page}");
    assert!(
        !page.contains("<script>") && page.contains("&lt;script&gt;"),
        "{page}"
    );
    let sub = http.get(format!("{url}?dir=sub")).send().expect("sub");
    assert!(sub.text().expect("html").contains("b.txt"));
    let b = http
        .get(format!("{url}/download?path=sub/b.txt"))
        .send()
        .expect("b");
    assert_eq!(b.bytes().expect("body").as_ref(), b"file b");

    for climb in [
        "../top-secret.txt",
        "sub/../../top-secret.txt",
        "/top-secret.txt",
        "%2e%2e/top-secret.txt",
    ] {
        let r = http
            .get(format!("{url}/download?path={climb}"))
            .send()
            .expect("climb");
        assert_ne!(r.status(), StatusCode::OK, "{climb}");
        assert!(!r.text().expect("body").contains("not shared"), "{climb}");
    }
    let r = http.get(format!("{url}?dir=..")).send().expect("climb");
    assert!(!r.text().expect("html").contains("top-secret"));
    // Tokens that are not ours are not looked up.
    let r = http
        .get(format!("{}/s/../api/v1/folders", server.url()))
        .send()
        .expect("odd");
    assert_ne!(r.status(), StatusCode::OK);
    assert_eq!(
        http.get(format!("{}/s/{}", server.url(), "0".repeat(48)))
            .send()
            .expect("none")
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn revoked_expired_and_orphaned_links_say_so() {
    let server = Server::start();
    let pc = computer_with(&server, &[("a.txt", b"a"), ("b.txt", b"b")]);
    let http = http();

    let url = share(&pc, "a.txt", &[], "");
    assert_eq!(
        http.get(&url).send().expect("page").status(),
        StatusCode::OK
    );
    let listed = pc.ok(&["share", "list", "--json"]);
    let links: serde_json::Value = serde_json::from_str(&listed).expect("json");
    let id = links[0]["id"].as_i64().expect("id");
    assert_eq!(links[0]["state"], "active");

    // Another user can neither see nor revoke it.
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    let bob = Client::new();
    bob.connect(&server, "bob", "bob-pw");
    assert!(!bob.ok(&["share", "list"]).contains("a.txt"));
    let out = bob.fails(&["share", "revoke", &id.to_string()]);
    assert!(out.contains("no sharing link"), "{out}");

    pc.ok(&["share", "revoke", &id.to_string()]);
    let r = http.get(&url).send().expect("page");
    assert_eq!(r.status(), StatusCode::GONE);
    assert!(r.text().expect("html").contains("revoked"));

    // An expiry in the past is refused; one that passes ends the link.
    let out = pc.fails(&[
        "share",
        "create",
        "d",
        pc.path("b.txt").to_str().expect("utf-8"),
        "--expires",
        "2001-01-01",
    ]);
    assert!(out.contains("not in the future"), "{out}");
    let soon = chrono_in(2);
    let url = share(&pc, "b.txt", &["--expires", &soon], "");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let r = http.get(&url).send().expect("page");
    assert_eq!(r.status(), StatusCode::GONE);
    assert!(r.text().expect("html").contains("expired"));

    // A link lives only while its owner may read what it shares.
    let url = share(&pc, "a.txt", &[], "");
    server.admin(&["folder", "revoke", "backup", "alice"], None);
    assert_eq!(
        http.get(&url).send().expect("page").status(),
        StatusCode::GONE
    );
}

/// An RFC 3339 time `secs` from now.
fn chrono_in(secs: u64) -> String {
    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(secs);
    let ns = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i64;
    cairn_model::timespec::format_instant(ns)
}

/// Sends `data` as `name` through an upload-only link's endpoints; the answer of `finish`.
fn send_to_link(
    http: &Http,
    url: &str,
    cookies: &str,
    csrf: &str,
    name: &str,
    data: &[u8],
) -> Response {
    let start = http
        .post(format!("{url}/uploads"))
        .header("cookie", cookies)
        .header("x-cairn-csrf", csrf)
        .json(&serde_json::json!({"path": name, "size": data.len()}))
        .send()
        .expect("start");
    if !start.status().is_success() {
        return start;
    }
    let id = start.json::<serde_json::Value>().expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let put = http
        .put(format!("{url}/uploads/{id}?offset=0"))
        .header("cookie", cookies)
        .header("x-cairn-csrf", csrf)
        .body(data.to_vec())
        .send()
        .expect("part");
    assert!(put.status().is_success(), "{}", put.status());
    http.post(format!("{url}/uploads/{id}/finish"))
        .header("cookie", cookies)
        .header("x-cairn-csrf", csrf)
        .send()
        .expect("finish")
}

#[test]
fn an_upload_only_link_takes_files_and_shows_nothing() {
    let server = Server::start();
    let pc = computer_with(&server, &[("inbox/existing.txt", b"mine"), ("a.txt", b"a")]);
    // Only for folders, and only where the owner may write.
    let out = pc.cairn(&[
        "share",
        "create",
        "d",
        pc.path("a.txt").to_str().expect("utf-8"),
        "--upload-only",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("upload-only link is for a folder"));
    let url = share(&pc, "inbox", &["--upload-only", "--max-access", "3"], "");
    let http = http();

    // The page: an upload box with its CSRF token, nothing of the folder.
    let page = http.get(&url).send().expect("page");
    let (csrf_cookie, _) = set_cookie(&page, "cairn_csrf").expect("csrf cookie");
    let csrf = csrf_cookie.trim_start_matches("cairn_csrf=").to_string();
    let body = page.text().expect("html");
    assert!(
        body.contains("data-csrf=\"") && !body.contains("existing.txt"),
        "{body}"
    );
    let r = http.get(format!("{url}?dir=")).send().expect("page");
    assert!(!r.text().expect("html").contains("existing.txt"));
    let r = http
        .get(format!("{url}/download?path=existing.txt"))
        .send()
        .expect("download");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Without the page's token nothing starts; names with folders or climbing are refused.
    let r = send_to_link(&http, &url, "", "", "x.txt", b"x");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for bad in ["sub/x.txt", "../x.txt", ""] {
        let r = send_to_link(&http, &url, &csrf_cookie, &csrf, bad, b"x");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad:?}");
    }

    // A taken name gets a number; nothing of the owner's is replaced.
    let r = send_to_link(
        &http,
        &url,
        &csrf_cookie,
        &csrf,
        "existing.txt",
        b"from a visitor",
    );
    assert_eq!(r.status(), StatusCode::OK);
    let done: serde_json::Value = r.json().expect("json");
    assert_eq!(done["path"], "inbox/existing (2).txt");
    let r = send_to_link(&http, &url, &csrf_cookie, &csrf, "new.txt", b"second");
    assert_eq!(r.status(), StatusCode::OK);
    let r = send_to_link(&http, &url, &csrf_cookie, &csrf, "third.txt", b"third");
    assert_eq!(r.status(), StatusCode::OK);
    // Three files were allowed.
    let r = send_to_link(&http, &url, &csrf_cookie, &csrf, "fourth.txt", b"fourth");
    assert_eq!(r.status(), StatusCode::GONE);

    pc.ok(&["run", "d"]);
    assert_eq!(
        std::fs::read(pc.path("inbox/existing.txt")).expect("kept"),
        b"mine"
    );
    assert_eq!(
        std::fs::read(pc.path("inbox/existing (2).txt")).expect("sent"),
        b"from a visitor"
    );
    assert_eq!(
        std::fs::read(pc.path("inbox/new.txt")).expect("sent"),
        b"second"
    );
    let versions = pc.ok(&[
        "versions",
        "d",
        pc.path("inbox/new.txt").to_str().expect("utf-8"),
    ]);
    assert!(versions.contains("upload link"), "{versions}");
    let log = server.admin(&["log", "--kind", "share.upload"], None);
    assert!(
        log.contains("\tshare.upload\tok\t-\t")
            && log.contains("\t127.0.0.1\tuploaded backup/inbox/existing (2).txt"),
        "{log}"
    );
    assert_eq!(
        log.lines().count(),
        3,
        "three files, the refused fourth not: {log}"
    );
}

/// Guesses at a link's password beyond the throttle are answered 429 and logged once a
/// minute per address (`share.throttled`), without the guesses.
#[test]
fn a_flood_of_guesses_at_a_link_password_is_throttled_and_logged_once() {
    let server = Server::start();
    let pc = computer_with(&server, &[("plan.txt", b"the plan")]);
    let url = share(&pc, "plan.txt", &["--password-stdin"], "right-pw-1");
    let http = http();
    let form = http.get(&url).send().expect("page");
    let (cookie, _) = set_cookie(&form, "cairn_csrf").expect("csrf cookie");
    let csrf = cookie.trim_start_matches("cairn_csrf=").to_string();
    let statuses: Vec<StatusCode> = (0..20)
        .map(|_| {
            http.post(&url)
                .header("cookie", &cookie)
                .form(&[("password", "flood-guess"), ("csrf", &csrf)])
                .send()
                .expect("post")
                .status()
        })
        .collect();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(refused >= 2, "{statuses:?}");
    let log = server.admin(&["log", "--kind", "share"], None);
    let throttled: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\tshare.throttled\t"))
        .collect();
    assert_eq!(throttled.len(), 1, "{log}");
    assert!(throttled[0].contains("127.0.0.1"), "{log}");
    assert!(!log.contains("flood-guess"), "{log}");
}
