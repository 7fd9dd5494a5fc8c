//! Connections: TLS trust, proxies, IPv6, editing, and admin commands beside a live server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::harness::{Client, Server};

#[test]
fn a_wrong_fingerprint_says_self_signed_or_intercepted() {
    let server = Server::start();
    let c = Client::new();
    let wrong = "AB:".repeat(31) + "AB";
    let out = c.cairn_stdin(
        &[
            "connect",
            &server.url(),
            "--user",
            "alice",
            "--password-stdin",
            "--fingerprint",
            &wrong,
        ],
        "alice-pw",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("self-signed") && err.contains("intercepted"),
        "{err}"
    );
    // Without a fingerprint or CA the system roots do not know the self-signed certificate.
    let out = c.cairn_stdin(
        &[
            "connect",
            &server.url(),
            "--user",
            "alice",
            "--password-stdin",
        ],
        "alice-pw",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("self-signed"));
}

#[test]
fn a_ca_file_trusts_the_server_and_connect_again_edits() {
    let server = Server::start();
    let c = Client::new();
    let ca = server.data.join("tls/cert.pem");
    let out = c.cairn_stdin(
        &[
            "connect",
            &server.url(),
            "--user",
            "alice",
            "--password-stdin",
            "--ca",
            ca.to_str().expect("utf-8"),
            "--name",
            "srv",
        ],
        "alice-pw",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("saved connection srv"));
    let creds = c.home.join("credentials.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&creds)
            .expect("credentials")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(!std::fs::read_to_string(c.home.join("config.json"))
        .expect("config")
        .contains("alice-pw"));
    let out = c.cairn_stdin(
        &[
            "connect",
            &server.url(),
            "--user",
            "alice",
            "--password-stdin",
            "--fingerprint",
            &server.fingerprint(),
            "--name",
            "srv",
        ],
        "alice-pw",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("updated connection srv"));
}

/// A minimal HTTP CONNECT proxy that insists on `Proxy-Authorization` and counts tunnels.
fn start_proxy(expect_auth: Option<&'static str>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let count = count.clone();
            std::thread::spawn(move || tunnel(conn, expect_auth, &count));
        }
    });
    (port, tunnels)
}

fn tunnel(mut client: TcpStream, expect_auth: Option<&str>, count: &AtomicUsize) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let target = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    if let Some(auth) = expect_auth {
        if !text.to_ascii_lowercase().contains(&format!(
            "proxy-authorization: basic {}",
            auth.to_ascii_lowercase()
        )) {
            let _ = client.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n");
            return;
        }
    }
    let Ok(server) = TcpStream::connect(&target) else {
        return;
    };
    count.fetch_add(1, Ordering::SeqCst);
    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let (mut c2, mut s2) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let mut client_r = client;
    let mut server_r = server;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_r, &mut c2);
    });
    let _ = std::io::copy(&mut client_r, &mut s2);
}

#[test]
fn proxies_with_credentials_and_from_the_environment_are_used() {
    let server = Server::start();
    // base64("user:secret")
    let (port, tunnels) = start_proxy(Some("dXNlcjpzZWNyZXQ="));
    let c = Client::new();
    let fp = server.fingerprint();
    let proxy = format!("http://user:secret@127.0.0.1:{port}");
    let out = c.cairn_stdin(
        &[
            "connect",
            &server.url(),
            "--user",
            "alice",
            "--password-stdin",
            "--fingerprint",
            &fp,
            "--proxy",
            &proxy,
            "--name",
            "srv",
        ],
        "alice-pw",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tunnels.load(Ordering::SeqCst) >= 1,
        "the connection went through the proxy"
    );
    // The proxy's password is kept only in the private credentials file.
    let config = std::fs::read_to_string(c.home.join("config.json")).expect("config");
    assert!(!config.contains("secret"), "{config}");
    let creds = std::fs::read_to_string(c.home.join("credentials.json")).expect("credentials");
    assert!(creds.contains("user:secret@"), "{creds}");
    c.add_backup_task(&[]);
    c.write("via-proxy.txt", b"x");
    let before = tunnels.load(Ordering::SeqCst);
    c.ok(&["run", "t", "--once"]);
    assert!(
        tunnels.load(Ordering::SeqCst) > before,
        "later runs use the saved proxy with its password"
    );

    let (env_port, env_tunnels) = start_proxy(None);
    let d = Client::new();
    let out = crate::harness::run(
        d.cmd()
            .env("HTTPS_PROXY", format!("http://127.0.0.1:{env_port}"))
            .args([
                "connect",
                &server.url(),
                "--user",
                "alice",
                "--password-stdin",
                "--fingerprint",
                &fp,
            ]),
        Some("alice-pw"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        env_tunnels.load(Ordering::SeqCst) >= 1,
        "HTTPS_PROXY was honoured"
    );
}

#[test]
fn the_server_listens_on_ipv6() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let mut server = Server::start();
    server.kill();
    server.spawn("[::1]:0");
    let c = Client::new();
    let url = format!("https://[::1]:{}", server.port);
    let out = c.cairn_stdin(
        &[
            "connect",
            &url,
            "--user",
            "alice",
            "--password-stdin",
            "--fingerprint",
            &server.fingerprint(),
        ],
        "alice-pw",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn admin_commands_work_while_the_server_runs() {
    let server = Server::start();
    let added = server.admin(&["user", "add", "carol"], None);
    let password = added
        .trim()
        .rsplit(' ')
        .next()
        .expect("generated password")
        .to_string();
    server.admin(&["folder", "add", "shared", "--keep-versions", "5"], None);
    server.admin(
        &["folder", "grant", "shared", "carol", "--access", "rw"],
        None,
    );
    let c = Client::new();
    c.connect(&server, "carol", &password);
    let listing = server.admin(&["folder", "list"], None);
    assert!(
        listing.contains("shared\tkeep 5") && listing.contains("carol:rw"),
        "{listing}"
    );
    server.admin(&["folder", "revoke", "shared", "carol"], None);
    assert!(!server.admin(&["folder", "list"], None).contains("carol:rw"));
    let users = server.admin(&["user", "list"], None);
    assert!(
        users.contains("admin\tadmin") && users.contains("carol"),
        "{users}"
    );
    let pw_file = server.data.join("admin-password");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&pw_file)
            .expect("admin-password")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let admin_pw = std::fs::read_to_string(&pw_file).expect("read");
    let a = Client::new();
    a.connect(&server, "admin", admin_pw.trim());
    let dup = server.admin_raw(&["user", "add", "carol"], None);
    assert!(
        !dup.status.success() && String::from_utf8_lossy(&dup.stderr).contains("already exists")
    );
}

#[test]
fn a_given_certificate_and_key_replace_the_self_signed_one() {
    // Another server's certificate stands in for one a CA issued: what matters is that the
    // server serves the files it is given.
    let other = Server::start();
    let cert = other.data.join("tls/cert.pem");
    let key = other.data.join("tls/key.pem");
    let mut server = Server::start();
    let own = server.fingerprint();
    let given = other.fingerprint();
    assert_ne!(own, given);
    let shown = server.admin(
        &["fingerprint", "--cert", cert.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(shown.trim(), given);
    server.kill();
    server.args = vec![
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ];
    server.spawn("127.0.0.1:0");
    let url = server.url();
    let c = Client::new();
    let out = c.cairn_stdin(
        &[
            "connect",
            &url,
            "--user",
            "alice",
            "--password-stdin",
            "--fingerprint",
            &given,
        ],
        "alice-pw",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.cairn_stdin(
        &[
            "connect",
            &url,
            "--user",
            "alice",
            "--password-stdin",
            "--fingerprint",
            &own,
        ],
        "alice-pw",
    );
    assert!(
        !out.status.success(),
        "the self-signed certificate is no longer served"
    );
}

fn connect_args<'a>(server_url: &'a str, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "connect",
        server_url,
        "--user",
        "alice",
        "--password-stdin",
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    args
}

fn connect_ok(c: &Client, args: &[&str]) -> String {
    let out = c.cairn_stdin(args, "alice-pw");
    assert!(
        out.status.success(),
        "cairn {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn connect_list_shows_connections_without_passwords_and_remove_waits_for_tasks() {
    let server = Server::start();
    let (port, _tunnels) = start_proxy(Some("dXNlcjpzZWNyZXQ="));
    let c = Client::new();
    let fp = server.fingerprint();
    let url = server.url();
    let proxy = format!("http://user:secret@127.0.0.1:{port}");
    connect_ok(
        &c,
        &connect_args(&url, "srv", &["--fingerprint", &fp, "--proxy", &proxy]),
    );
    let ca = server.data.join("tls/cert.pem");
    let ca = ca.to_str().expect("utf-8");
    connect_ok(&c, &connect_args(&url, "other", &["--ca", ca]));
    c.add_backup_task(&[]);

    let text = c.ok(&["connect", "list"]);
    assert!(
        !text.contains("secret") && !text.contains("alice-pw"),
        "{text}"
    );
    for needle in [
        "srv",
        "other",
        url.as_str(),
        "alice",
        fp.as_str(),
        ca,
        "<redacted>@127.0.0.1",
        "used by t",
    ] {
        assert!(text.contains(needle), "no {needle} in:\n{text}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["connect", "list", "--json"])).expect("connect list --json");
    let all = json.as_array().expect("an array");
    assert_eq!(all.len(), 2, "{json}");
    let srv = all.iter().find(|v| v["name"] == "srv").expect("srv");
    assert_eq!(srv["url"], url.as_str());
    assert_eq!(srv["user"], "alice");
    assert_eq!(srv["trust"], "fingerprint");
    assert_eq!(srv["fingerprint"], fp.as_str());
    assert_eq!(
        srv["proxy"],
        format!("http://<redacted>@127.0.0.1:{port}").as_str()
    );
    assert_eq!(srv["tasks"], serde_json::json!(["t"]));
    assert!(srv["computer"].as_str().is_some_and(|s| !s.is_empty()));
    let other = all.iter().find(|v| v["name"] == "other").expect("other");
    assert_eq!(other["trust"], "ca");
    assert_eq!(other["ca"], ca);
    assert!(other["proxy"].is_null() && other["fingerprint"].is_null());

    // Removing a connection a task still uses is refused, naming the task.
    let err = c.fails(&["connect", "remove", "srv"]);
    assert!(err.contains("used by tasks t"), "{err}");
    assert!(c.ok(&["connect", "list"]).contains("srv"));
    c.ok(&["backup", "remove", "t"]);
    c.ok(&["connect", "remove", "srv"]);
    let creds: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.home.join("credentials.json")).expect("credentials"),
    )
    .expect("credentials json");
    assert!(creds["passwords"].get("srv").is_none(), "{creds}");
    assert!(creds["passwords"].get("other").is_some(), "{creds}");
    assert!(!creds.to_string().contains("secret"), "{creds}");
    let text = c.ok(&["connect", "list"]);
    assert!(!text.contains("srv") && text.contains("other"), "{text}");
    let err = c.fails(&["connect", "remove", "srv"]);
    assert!(err.contains("no connection named srv"), "{err}");
}

#[test]
fn connecting_again_keeps_the_proxy_fingerprint_and_ca_unless_given() {
    let server = Server::start();
    let (port, tunnels) = start_proxy(Some("dXNlcjpzZWNyZXQ="));
    let c = Client::new();
    let fp = server.fingerprint();
    let url = server.url();
    let proxy = format!("http://user:secret@127.0.0.1:{port}");
    connect_ok(
        &c,
        &connect_args(&url, "srv", &["--fingerprint", &fp, "--proxy", &proxy]),
    );
    // Only the password again: the pin and the proxy (with its password) stay.
    let before = tunnels.load(Ordering::SeqCst);
    let out = connect_ok(&c, &connect_args(&url, "srv", &[]));
    assert!(
        out.contains("kept the pinned fingerprint") && out.contains("the proxy http://<redacted>@"),
        "{out}"
    );
    assert!(!out.contains("secret"), "{out}");
    assert!(
        tunnels.load(Ordering::SeqCst) > before,
        "logged in through the kept proxy"
    );
    let config = std::fs::read_to_string(c.home.join("config.json")).expect("config");
    assert!(config.contains(&fp), "{config}");
    let creds = std::fs::read_to_string(c.home.join("credentials.json")).expect("credentials");
    assert!(creds.contains("user:secret@"), "{creds}");

    // A CA file replaces the pin, and is kept in turn.
    let ca = server.data.join("tls/cert.pem");
    let ca = ca.to_str().expect("utf-8");
    let out = connect_ok(&c, &connect_args(&url, "srv", &["--ca", ca]));
    assert!(!out.contains("fingerprint"), "{out}");
    let out = connect_ok(&c, &connect_args(&url, "srv", &["--no-proxy"]));
    assert!(out.contains(&format!("kept the CA file {ca}")), "{out}");
    assert!(!out.contains("proxy"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["connect", "list", "--json"])).expect("json");
    assert_eq!(json[0]["trust"], "ca");
    assert!(json[0]["proxy"].is_null(), "{json}");
    let creds = std::fs::read_to_string(c.home.join("credentials.json")).expect("credentials");
    assert!(
        !creds.contains("secret"),
        "--no-proxy drops the proxy's password: {creds}"
    );
    // Back to the system's roots, which do not know the self-signed certificate.
    let out = c.cairn_stdin(&connect_args(&url, "srv", &["--system-roots"]), "alice-pw");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("self-signed"));
}

#[test]
fn rate_limits_are_saved_kept_listed_and_cleared() {
    let server = Server::start();
    let c = Client::new();
    let fp = server.fingerprint();
    let url = server.url();
    let bad = c.cairn_stdin(
        &connect_args(
            &url,
            "srv",
            &["--fingerprint", &fp, "--limit-upload", "fast"],
        ),
        "alice-pw",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("K, M, G or T"));
    connect_ok(
        &c,
        &connect_args(
            &url,
            "srv",
            &[
                "--fingerprint",
                &fp,
                "--limit-upload",
                "2M",
                "--limit-download",
                "512K/s",
            ],
        ),
    );
    let limits = |c: &Client| -> (serde_json::Value, serde_json::Value) {
        let json: serde_json::Value =
            serde_json::from_str(&c.ok(&["connect", "list", "--json"])).expect("json");
        (
            json[0]["limit_upload"].clone(),
            json[0]["limit_download"].clone(),
        )
    };
    assert_eq!(
        limits(&c),
        (serde_json::json!(2 << 20), serde_json::json!(512 << 10))
    );
    // Connecting again keeps them, and says so; `none` clears one.
    let out = connect_ok(&c, &connect_args(&url, "srv", &[]));
    assert!(out.contains("the upload limit of 2097152 bytes/s"), "{out}");
    connect_ok(&c, &connect_args(&url, "srv", &["--limit-upload", "none"]));
    assert_eq!(
        limits(&c),
        (serde_json::Value::Null, serde_json::json!(512 << 10))
    );
    // Transfers work under a limit (how fast they go is measured in bench/README.md).
    c.write("f.bin", &crate::harness::noise(5, 300_000));
    c.add_backup_task(&[]);
    c.ok(&["run", "t", "--once"]);
    assert_eq!(c.ls_paths(), vec!["f.bin"]);
}

fn device_id(c: &Client) -> String {
    let config = std::fs::read_to_string(c.home.join("config.json")).expect("config");
    let config: serde_json::Value = serde_json::from_str(&config).expect("config is JSON");
    config["device_id"]
        .as_str()
        .expect("a device id in the configuration")
        .to_string()
}

/// Broke: every `cairn connect` for a saved connection made a new device id, so the server saw
/// a new device each time.
#[test]
fn connecting_again_keeps_the_device_id_unless_asked() {
    let server = Server::start();
    let c = Client::new();
    let fp = server.fingerprint();
    let url = server.url();
    connect_ok(&c, &connect_args(&url, "srv", &["--fingerprint", &fp]));
    let first = device_id(&c);
    c.write("a.txt", b"one");
    c.add_backup_task(&[]);
    c.ok(&["run", "t", "--once"]);
    // The password again, then no password at all (the saved one), then another connection.
    let out = connect_ok(&c, &connect_args(&url, "srv", &[]));
    assert!(!out.contains("new device identity"), "{out}");
    assert_eq!(device_id(&c), first);
    c.ok(&["connect", &url, "--user", "alice", "--name", "srv"]);
    assert_eq!(device_id(&c), first);
    connect_ok(&c, &connect_args(&url, "other", &["--fingerprint", &fp]));
    assert_eq!(device_id(&c), first);
    // The server sees one device: both versions name it.
    c.write("a.txt", b"two, after connecting again");
    c.ok(&["run", "t", "--once"]);
    let versions: serde_json::Value = serde_json::from_str(&c.ok(&[
        "versions",
        "t",
        c.path("a.txt").to_str().expect("utf-8"),
        "--json",
    ]))
    .expect("json");
    let devices: Vec<&str> = versions
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["device"].as_str())
        .collect();
    assert_eq!(devices, [first.as_str(), first.as_str()], "{versions}");
    // Asked for: a new identity.
    let out = connect_ok(&c, &connect_args(&url, "srv", &["--new-device"]));
    assert!(out.contains("new device identity"), "{out}");
    assert_ne!(device_id(&c), first);
}
