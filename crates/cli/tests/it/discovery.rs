//! Finding servers on the local network: `server run` announces itself over mDNS and
//! `connect --discover` saves the one picked with its announced fingerprint pinned.
//!
//! The server and the client run in two network namespaces joined by a veth pair when this
//! machine can make them (root), so they talk over a real multicast link and nothing else
//! announcing on this machine shows up. Elsewhere both run here and the server announces on
//! loopback (`--announce-loopback`). The forged announcement is sent on loopback by this test
//! process itself, with mdns-sd, at a real server's address.

use std::sync::Mutex;

use cairn_testkit::netns::{NetnsPair, SERVER_IP};
use mdns_sd::{ServiceDaemon, ServiceInfo};

use crate::harness::{Client, Server};

/// Tests that announce on this machine's loopback see each other's announcements: one at a
/// time, so that "nothing found" means what it says. (The others pick their server by name.)
static LOOPBACK: Mutex<()> = Mutex::new(());

const SERVICE: &str = "_cairn._tcp.local.";

/// A server of users alice, announcing as `name` with `extra` flags, and a client that can
/// reach it: in a namespace pair when there is one, else on loopback.
fn announced_server(pair: Option<&NetnsPair>, name: &str, extra: &[&str]) -> (Server, Client) {
    let mut server = Server::start();
    server.kill();
    server.args = ["--announce-name", name]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
    let mut client = Client::new();
    match pair {
        Some(p) => {
            server.netns = Some(p.server.clone());
            client.netns = Some(p.client.clone());
            server.spawn("0.0.0.0:0");
        }
        None => {
            server.args.push("--announce-loopback".into());
            server.spawn("127.0.0.1:0");
        }
    }
    (server, client)
}

/// `connect --discover --pick PICK --yes`, as alice.
fn discover(c: &Client, seconds: &str, pick: &str) -> std::process::Output {
    c.cairn_stdin(
        &[
            "connect",
            "--discover",
            "--discover-seconds",
            seconds,
            "--pick",
            pick,
            "--yes",
            "--user",
            "alice",
            "--password-stdin",
            "--name",
            "srv",
        ],
        "alice-pw",
    )
}

fn saved_connections(c: &Client) -> serde_json::Value {
    serde_json::from_str(&c.ok(&["connect", "list", "--json"])).expect("connect list --json")
}

#[test]
fn a_discovered_server_is_saved_with_its_fingerprint_pinned_and_backs_up() {
    let _one = LOOPBACK.lock().unwrap_or_else(|p| p.into_inner());
    let pair = NetnsPair::create();
    let name = format!("it-found-{}", std::process::id());
    let (server, c) = announced_server(pair.as_ref(), &name, &[]);
    let out = discover(&c, "4", &name);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host = if pair.is_some() {
        SERVER_IP
    } else {
        "127.0.0.1"
    };
    let url = format!("https://{host}:{}", server.port);
    assert!(
        stdout.contains(&format!("  {name}  {host}:{}", server.port)),
        "{stdout}"
    );
    let saved = saved_connections(&c);
    let srv = &saved[0];
    assert_eq!(srv["name"], "srv");
    assert_eq!(srv["url"], url.as_str());
    assert_eq!(srv["trust"], "fingerprint");
    assert_eq!(srv["fingerprint"], server.fingerprint().as_str());
    // The saved connection works: a backup runs over it.
    c.write("found.txt", b"found on the network");
    c.add_backup_task(&[]);
    c.ok(&["run", "t", "--once"]);
    let listed = c.ls(&[]);
    assert!(listed.iter().any(|(_, p)| p == "found.txt"), "{listed:?}");
}

#[test]
fn a_server_run_with_no_announce_is_not_found() {
    let _one = LOOPBACK.lock().unwrap_or_else(|p| p.into_inner());
    let pair = NetnsPair::create();
    let name = format!("it-silent-{}", std::process::id());
    let (server, c) = announced_server(pair.as_ref(), &name, &["--no-announce"]);
    let out = discover(&c, "3", "1");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        !text.contains(&name) && !text.contains(&format!(":{}", server.port)),
        "{text}"
    );
    // Alone on its link nothing at all answers; on this machine's loopback another server
    // listening everywhere (another test's) may.
    if pair.is_some() {
        assert!(text.contains("no cairn server answered"), "{text}");
    }
    assert_eq!(saved_connections(&c), serde_json::json!([]));
}

#[test]
fn a_forged_announcement_fails_the_pinned_fingerprint_and_saves_nothing() {
    let _one = LOOPBACK.lock().unwrap_or_else(|p| p.into_inner());
    // A real server that does not announce itself (it listens on loopback only), and a
    // forger announcing its address with another certificate's fingerprint.
    let server = Server::start();
    let forger = ServiceDaemon::new().expect("mDNS daemon of the forger");
    let forged = format!("it-forged-{}", std::process::id());
    let wrong = "ab".repeat(32);
    announce(&forger, &forged, server.port, &wrong);
    // And a malformed one, which must be skipped with a note, not believed or fatal.
    let malformed = format!("it-malformed-{}", std::process::id());
    announce(&forger, &malformed, server.port, "12345");
    let c = Client::new();
    let out = discover(&c, "4", &forged);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = forger.shutdown();
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("  {forged}  127.0.0.1:{}", server.port)),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains(&format!("skipped the announcement {malformed}"))
            && stderr.contains("fingerprint is not 64 hex digits"),
        "{stderr}"
    );
    assert!(!stdout.contains(&malformed), "{stdout}");
    // The TLS pin error, as for `connect URL --fingerprint WRONG`.
    assert!(
        stderr.contains("self-signed") && stderr.contains("intercepted"),
        "{stderr}"
    );
    assert_eq!(saved_connections(&c), serde_json::json!([]));
}

/// Announces a cairn server `name` at 127.0.0.1:`port` with fingerprint `fp`.
fn announce(daemon: &ServiceDaemon, name: &str, port: u16, fp: &str) {
    let txt = [("fp", fp), ("version", "0.1.0")];
    let mut info = ServiceInfo::new(SERVICE, name, "forger.local.", "127.0.0.1", port, &txt[..])
        .expect("service info");
    info.set_requires_probe(false);
    daemon.register(info).expect("register the forged service");
}
