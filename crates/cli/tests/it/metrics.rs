//! Prometheus `/metrics`: an administrator's token on the API's address, or anyone on
//! `--metrics-listen`; the counters move with a backup, a failed login and a gc run.

use crate::harness::{http, noise, Client, Server};

fn login(server: &Server, user: &str, password: &str) -> reqwest::blocking::Response {
    http()
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": user, "password": password}))
        .send()
        .expect("login")
}

fn token(server: &Server, user: &str, password: &str) -> String {
    let r = login(server, user, password);
    assert!(r.status().is_success(), "login {user}: {}", r.status());
    r.json::<serde_json::Value>().expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string()
}

fn admin_password(server: &Server) -> String {
    std::fs::read_to_string(server.data.join("admin-password"))
        .expect("admin password")
        .trim()
        .to_string()
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn scrape(server: &Server, token: &str) -> String {
    let r = http()
        .get(format!("{}/metrics", server.url()))
        .bearer_auth(token)
        .send()
        .expect("scrape");
    assert_eq!(r.status(), 200);
    let kind = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    r.text().expect("text")
}

#[test]
fn metrics_count_a_backup_a_failed_login_and_gc_for_administrators_only() {
    let mut server = Server::start();
    let admin = token(&server, "admin", &admin_password(&server));
    let before = scrape(&server, &admin);
    assert_eq!(sample(&before, "cairn_commits_total"), Some(0.0));
    assert_eq!(sample(&before, "cairn_chunks_stored"), Some(0.0));

    assert_eq!(login(&server, "alice", "wrong").status(), 401);
    let c = Client::new();
    c.write("big.bin", &noise(7, 2 * 1024 * 1024));
    c.write("same.bin", &noise(7, 2 * 1024 * 1024));
    c.write("small.txt", b"hello");
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);

    let after = scrape(&server, &admin);
    assert!(
        sample(&after, "cairn_commits_total").unwrap_or(0.0) >= 1.0,
        "{after}"
    );
    assert_eq!(sample(&after, "cairn_login_failures_total"), Some(1.0));
    assert!(
        sample(
            &after,
            r#"cairn_http_requests_total{method="POST",route="/api/v1/login",status="401"}"#
        ) == Some(1.0),
        "{after}"
    );
    // Routes are patterns: no folder name, chunk id or token in any label.
    assert!(
        after.contains(r#"route="/api/v1/folders/{folder}/"#),
        "{after}"
    );
    assert!(!after.contains("/folders/backup/"), "{after}");
    let received = sample(&after, "cairn_http_request_bytes_total").unwrap_or(0.0);
    assert!(
        received >= 2.0 * 1024.0 * 1024.0,
        "uploaded bytes counted: {received}"
    );
    assert!(sample(&after, "cairn_http_response_bytes_total").unwrap_or(0.0) > 0.0);
    let stored = sample(&after, "cairn_stored_bytes").unwrap_or(0.0);
    assert!(stored >= 2.0 * 1024.0 * 1024.0, "{after}");
    assert!(sample(&after, "cairn_chunks_stored").unwrap_or(0.0) >= 2.0);
    // Two identical files: twice the bytes referenced as stored, give or take the small one.
    let ratio = sample(&after, "cairn_dedup_ratio").unwrap_or(0.0);
    assert!(ratio > 1.9 && ratio <= 2.0, "dedup ratio {ratio}");

    // Not for other users, nor without a token.
    let alice = token(&server, "alice", "alice-pw");
    let r = http()
        .get(format!("{}/metrics", server.url()))
        .bearer_auth(&alice)
        .send()
        .expect("scrape");
    assert_eq!(r.status(), 403);
    let r = http()
        .get(format!("{}/metrics", server.url()))
        .send()
        .expect("scrape");
    assert_eq!(r.status(), 401);

    // gc runs in its own process; the server reports what it recorded.
    server.admin(&["gc"], None);
    let after_gc = scrape(&server, &admin);
    assert_eq!(sample(&after_gc, "cairn_gc_runs_total"), Some(1.0));
    assert!(sample(&after_gc, "cairn_gc_duration_seconds_total").unwrap_or(-1.0) >= 0.0);

    // A separate plain-HTTP address serves them without a token.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    server.args = vec!["--metrics-listen".into(), format!("127.0.0.1:{port}")];
    server.restart();
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .expect("scrape")
        .text()
        .expect("text");
    assert_eq!(sample(&text, "cairn_gc_runs_total"), Some(1.0), "{text}");
    assert!(sample(&text, "cairn_stored_bytes").unwrap_or(0.0) >= stored);
}
