//! What the package ships besides the binary: completions and man pages written by the hidden
//! `cairn generate`, and the log formats a service's journal or a collector reads.

use std::path::Path;
use std::process::Command;

use crate::harness::BIN;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn generate_writes_completions_and_man_pages_naming_the_subcommands() {
    let out = tempfile::tempdir().expect("temp dir");
    let status = Command::new(BIN)
        .args(["generate", "--out"])
        .arg(out.path())
        .status()
        .expect("run cairn generate");
    assert!(status.success());
    for name in ["cairn", "_cairn", "cairn.fish"] {
        let text = read(&out.path().join("completions").join(name));
        // Top-level and nested subcommands, and an option of a nested one.
        for word in ["server", "backup", "drive", "migrate", "token-ttl"] {
            assert!(text.contains(word), "completions/{name} lacks {word}");
        }
        assert!(
            !text.contains("generate"),
            "completions/{name} offers the hidden command"
        );
    }
    let man = out.path().join("man");
    let top = read(&man.join("cairn.1"));
    assert!(
        top.contains(".TH cairn 1"),
        "cairn.1 is not a section 1 page"
    );
    assert!(
        top.contains("cairn\\-server(1)"),
        "cairn.1 lists no subcommand page"
    );
    let run = read(&man.join("cairn-server-run.1"));
    assert!(
        run.contains("\\-\\-listen"),
        "cairn-server-run.1 lacks --listen"
    );
    // The hidden command gets no page of its own.
    assert!(!man.join("cairn-generate.1").exists());
}

/// The server's log on stderr: readable lines by default, and with `--log-format json` one
/// JSON object per line with the event's fields at the top (what a collector indexes).
#[test]
fn the_server_logs_human_lines_by_default_and_json_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let human = crate::harness::Server::start_bare(dir.path().join("human"), Vec::new());
    crate::harness::wait_until(30, "the listening event", || {
        human.log_contains("listening")
    });
    let json = crate::harness::Server::start_bare(
        dir.path().join("json"),
        vec!["--log-format".into(), "json".into()],
    );
    crate::harness::wait_until(30, "the listening event", || json.log_contains("listening"));
    let lines = |s: &crate::harness::Server| s.log.lock().expect("log").clone();
    let human_lines = lines(&human);
    assert!(
        human_lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "{human_lines:?}"
    );
    let events: Vec<serde_json::Value> = lines(&json)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let listening = events
        .iter()
        .find(|e| e["message"] == "listening")
        .expect("a listening event");
    assert_eq!(listening["level"], "INFO");
    assert!(listening["address"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
}
