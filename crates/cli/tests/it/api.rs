//! The HTTP API seen raw: optimistic concurrency, the journal's long-poll, byte ranges, and gc
//! beside running uploads.

use std::time::Duration;

use crate::harness::{http, noise, Client, Server};

fn login(server: &Server) -> String {
    let r = http()
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": "alice", "password": "alice-pw"}))
        .send()
        .expect("login");
    r.json::<serde_json::Value>().expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string()
}

fn commit(server: &Server, tok: &str, changes: serde_json::Value) -> serde_json::Value {
    let r = http()
        .post(format!("{}/api/v1/folders/backup/commit", server.url()))
        .bearer_auth(tok)
        .json(&serde_json::json!({ "changes": changes }))
        .send()
        .expect("commit");
    assert!(r.status().is_success(), "commit: {}", r.status());
    r.json().expect("json")
}

fn dir(path: &str, base: Option<i64>, mode: u32) -> serde_json::Value {
    serde_json::json!({"path": path, "base": base, "entry": {"kind": "dir", "size": 0, "mtime_ns": 1, "mode": mode, "hash": null}})
}

#[test]
fn commits_name_their_base_and_a_stale_base_is_a_conflict() {
    let server = Server::start();
    let tok = login(&server);
    let r = commit(&server, &tok, serde_json::json!([dir("d", None, 0o755)]));
    assert_eq!(
        r["results"][0],
        serde_json::json!({"status": "accepted", "seq": 1})
    );
    let r = commit(&server, &tok, serde_json::json!([dir("d", None, 0o700)]));
    assert_eq!(r["results"][0]["status"], "conflict");
    assert_eq!(r["results"][0]["head"]["seq"], 1);
    let r = commit(
        &server,
        &tok,
        serde_json::json!([dir("d", Some(1), 0o700), dir("e", Some(7), 0o700)]),
    );
    assert_eq!(
        r["results"][0],
        serde_json::json!({"status": "accepted", "seq": 2})
    );
    assert_eq!(r["results"][1]["status"], "conflict");
    // A file whose chunks the server does not have is not accepted.
    let hash = "0".repeat(64);
    let file = serde_json::json!({"path": "f", "base": null,
        "entry": {"kind": "file", "size": 3, "mtime_ns": 1, "mode": 420, "hash": hash},
        "chunks": [{"id": "1".repeat(64), "len": 3}]});
    let r = commit(&server, &tok, serde_json::json!([file]));
    assert_eq!(r["results"][0]["status"], "missing_chunks");
}

#[test]
fn the_journal_long_poll_wakes_on_a_commit() {
    let server = Server::start();
    let tok = login(&server);
    commit(&server, &tok, serde_json::json!([dir("a", None, 0o755)]));
    let url = format!("{}/api/v1/folders/backup/journal", server.url());
    let all: serde_json::Value = http()
        .get(&url)
        .query(&[("after", "0")])
        .bearer_auth(&tok)
        .send()
        .expect("journal")
        .json()
        .expect("json");
    assert_eq!(all["changes"].as_array().map(Vec::len), Some(1));
    assert_eq!(all["head"], 1);
    let waiter = {
        let (url, tok) = (url.clone(), tok.clone());
        std::thread::spawn(move || -> serde_json::Value {
            http()
                .get(&url)
                .query(&[("after", "1"), ("wait", "55")])
                .bearer_auth(&tok)
                .send()
                .expect("poll")
                .json()
                .expect("json")
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !waiter.is_finished(),
        "the poll waits while nothing changes"
    );
    commit(&server, &tok, serde_json::json!([dir("b", None, 0o755)]));
    let woke = waiter.join().expect("poll thread");
    assert_eq!(woke["changes"][0]["path"], "b");
    assert_eq!(woke["head"], 2);
}

#[test]
fn content_is_served_whole_and_by_byte_ranges() {
    let server = Server::start();
    let c = Client::new();
    let data = noise(21, 300_000);
    c.write("r.bin", &data);
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    let tok = login(&server);
    let url = format!("{}/api/v1/folders/backup/content", server.url());
    let get = |range: Option<&str>| {
        let mut req = http()
            .get(&url)
            .query(&[("path", "pc/docs/r.bin")])
            .bearer_auth(&tok);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send().expect("content")
    };
    let whole = get(None);
    assert_eq!(whole.status().as_u16(), 200);
    assert_eq!(whole.bytes().expect("body").as_ref(), &data[..]);
    // A range that crosses chunk boundaries.
    let part = get(Some("bytes=70000-200009"));
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 70000-200009/300000");
    assert_eq!(part.bytes().expect("body").as_ref(), &data[70_000..200_010]);
    let tail = get(Some("bytes=-10"));
    assert_eq!(
        tail.bytes().expect("body").as_ref(),
        &data[data.len() - 10..]
    );
    assert_eq!(get(Some("bytes=400000-")).status().as_u16(), 416);
}

#[test]
fn gc_beside_running_backups_loses_nothing() {
    let server = Server::start();
    server.alice_folder("tight", "1");
    let c = Client::new();
    c.connect(&server, "alice", "alice-pw");
    c.add_backup_task_into("tight", &["--computer", "pc"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let stop = stop.clone();
        let mut gc = server.command();
        gc.args(["server", "gc", "--data"]).arg(&server.data);
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = gc.output().expect("gc");
                assert!(
                    out.status.success(),
                    "gc failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                runs += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            runs
        })
    };
    for round in 0..4u64 {
        for i in 0..60u64 {
            let size = if i % 10 == 0 {
                700_000
            } else {
                3_000 + (i as usize) * 10
            };
            c.write(
                &format!("d{}/f{i}.bin", i % 4),
                &noise(round * 1000 + i, size),
            );
        }
        c.ok(&["run", "t", "--once"]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = collector.join().expect("collector");
    assert!(runs > 0);
    assert!(server
        .admin(&["check", "--read-data"], None)
        .contains("no problems"));
    let out = c.tmp().join("out");
    c.ok(&["restore", "t", "--to", out.to_str().expect("utf-8")]);
    for i in 0..60u64 {
        let rel = format!("d{}/f{i}.bin", i % 4);
        assert_eq!(
            std::fs::read(out.join("docs").join(&rel)).expect("restored"),
            std::fs::read(c.path(&rel)).expect("local"),
            "{rel}"
        );
    }
}
