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
