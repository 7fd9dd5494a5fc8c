//! The README's tour, pasted into bash on a fresh machine: every command must succeed.

use std::path::Path;

use crate::harness::BIN;

/// The shell blocks of the tour, after the one that builds the binary.
fn tour_script() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md");
    let start = text.find("## A five-minute tour").expect("the tour");
    let end = start
        + text[start..]
            .find("\n## ")
            .expect("a section after the tour");
    text[start..end]
        .split("```sh\n")
        .skip(2)
        .filter_map(|b| b.split("```").next())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_tour_works_pasted_into_a_shell() {
    let script = tour_script();
    assert!(script.contains("cairn server run") && script.contains("cairn drive add"));
    // A free port instead of 8443, and instead of the tour's pause for the server's first
    // start, a wait for it to listen (a loaded test machine may need longer).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let wait = format!("until (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.1; done");
    let script: Vec<String> = script
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"))
        .lines()
        .map(|l| {
            if l.starts_with("sleep 2 ") {
                wait.clone()
            } else {
                l.to_string()
            }
        })
        .collect();
    let script = format!(
        "set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\ncd ~\n{}\n",
        script.join("\n")
    );
    let home = tempfile::tempdir().expect("temp dir");
    let bin_dir = Path::new(BIN).parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("HOME", home.path())
        .env("PATH", path)
        .env_remove("CAIRN_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the tour failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tour = home.path().join("cairn-tour");
    let read = |p: &str| std::fs::read_to_string(tour.join(p)).unwrap_or_default();
    assert_eq!(read("Documents/old.txt"), "old notes\n", "{stdout}");
    assert_eq!(read("Documents/plan.txt"), "first plan\n", "{stdout}");
    assert_eq!(read("plan-v1.txt"), "first plan\n", "{stdout}");
    // Either head: the agent may have backed up the restored file before the rescue.
    assert!(
        read("rescue/Documents/plan.txt").starts_with("first plan\n"),
        "{stdout}"
    );
    assert!(stdout.contains("synced [task work]"), "{stdout}");
}
