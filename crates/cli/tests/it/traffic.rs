//! Metadata traffic (issue 7): JSON answers and large request bodies travel gzipped, limits
//! count decompressed bytes, and an agent is not sent back its own commits while it waits.

use std::io::{Read, Write};

use crate::harness::{http, noise, wait_until, Client, Server};

fn login_as(server: &Server, device: &str) -> String {
    let r = http()
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": "alice", "password": "alice-pw", "device": device}))
        .send()
        .expect("login");
    r.json::<serde_json::Value>().expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// A client that shows answers as they travel: no automatic decompression.
fn raw_http() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_gzip()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("client")
}

fn dirs(names: impl Iterator<Item = String>) -> serde_json::Value {
    names
        .map(|p| serde_json::json!({"path": p, "base": null, "entry": {"kind": "dir", "size": 0, "mtime_ns": 1, "mode": 493, "hash": null}}))
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// `len` zero bytes, gzipped, written in pieces so the test never holds them whole.
fn zeros_gzipped(prefix: &[u8], len: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(prefix).expect("gzip");
    let block = vec![b' '; 1 << 20];
    for _ in 0..len / block.len() {
        enc.write_all(&block).expect("gzip");
    }
    enc.finish().expect("gzip")
}

/// The peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[test]
fn json_answers_travel_gzipped_and_gzipped_commits_are_taken() {
    let server = Server::start();
    let tok = login_as(&server, "pc-a");
    let url = |what: &str| format!("{}/api/v1/folders/backup/{what}", server.url());

    // A commit of 300 folders, gzipped as the client sends large ones.
    let body = serde_json::to_vec(&serde_json::json!({
        "changes": dirs((0..300).map(|i| format!("dir-{i:04}")))
    }))
    .expect("json");
    let r = raw_http()
        .post(url("commit"))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(&body))
        .send()
        .expect("commit");
    assert_eq!(r.status(), 200);
    // The server says it takes gzipped bodies (RFC 7694).
    assert_eq!(
        r.headers().get("accept-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    let r = raw_http()
        .get(url("journal"))
        .query(&[("after", "0")])
        .bearer_auth(&tok)
        .header("accept-encoding", "gzip")
        .send()
        .expect("journal");
    assert_eq!(
        r.headers().get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..]),
        "a large JSON answer is gzipped"
    );
    let packed = r.bytes().expect("body");
    let plain = gunzip(&packed);
    let journal: serde_json::Value = serde_json::from_slice(&plain).expect("json");
    assert_eq!(journal["changes"].as_array().map(Vec::len), Some(300));
    assert_eq!(journal["head"], 300);
    assert_eq!(journal["access"], "rw");
    assert!(
        packed.len() * 4 < plain.len(),
        "{} bytes gzipped of {}",
        packed.len(),
        plain.len()
    );

    // Without Accept-Encoding the same answer comes plain.
    let r = raw_http()
        .get(url("journal"))
        .query(&[("after", "0")])
        .bearer_auth(&tok)
        .send()
        .expect("journal");
    assert!(r.headers().get("content-encoding").is_none());

    // Small answers and file content are sent as they are.
    let r = raw_http()
        .get(url("journal"))
        .query(&[("after", "299")])
        .bearer_auth(&tok)
        .header("accept-encoding", "gzip")
        .send()
        .expect("journal");
    assert!(r.headers().get("content-encoding").is_none());
    let c = Client::new();
    c.connect(&server, "alice", "alice-pw");
    c.backup_task(&server, &[]);
    c.write("text.txt", "all the same ".repeat(2000).as_bytes());
    c.ok(&["run", "t", "--once"]);
    let tree: serde_json::Value = http()
        .get(url("tree"))
        .bearer_auth(&tok)
        .send()
        .expect("tree")
        .json()
        .expect("json");
    let path = tree["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|v| v["path"].as_str())
        .find(|p| p.ends_with("text.txt"))
        .expect("uploaded")
        .to_string();
    let r = raw_http()
        .get(url("content"))
        .query(&[("path", path.as_str())])
        .bearer_auth(&tok)
        .header("accept-encoding", "gzip")
        .send()
        .expect("content");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.bytes().expect("body").len(), 13 * 2000);

    // An encoding the server does not take is refused, naming the one it does.
    let r = raw_http()
        .post(url("commit"))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body(body)
        .send()
        .expect("commit");
    assert_eq!(r.status(), 415);
}

#[test]
fn a_gzip_bomb_is_refused_with_413_before_it_is_unpacked() {
    let server = Server::start();
    let tok = login_as(&server, "pc-a");
    let pid = server.child.as_ref().expect("server running").id();
    // 512 MiB of JSON whitespace once unpacked (16 times the 32 MiB a body may have), about
    // 0.5 MiB on the wire.
    let unpacked = 512usize << 20;
    let bomb = zeros_gzipped(br#"{"changes":[]"#, unpacked);
    assert!(bomb.len() < 4 << 20, "{} bytes", bomb.len());
    let before = peak_rss(pid);
    for what in ["commit", "chunks/missing"] {
        let r = raw_http()
            .post(format!("{}/api/v1/folders/backup/{what}", server.url()))
            .bearer_auth(&tok)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(bomb.clone())
            .send()
            .expect("post");
        assert_eq!(r.status(), 413, "{what}: {:?}", r.text());
    }
    let grew = peak_rss(pid).saturating_sub(before);
    assert!(
        grew < (unpacked as u64) / 4,
        "the server's peak memory grew by {grew} bytes for a body of {unpacked} unpacked"
    );
    // The server is still there for everyone else.
    let r = http()
        .get(format!("{}/api/v1/folders", server.url()))
        .bearer_auth(&tok)
        .send()
        .expect("folders");
    assert_eq!(r.status(), 200);
}

#[test]
fn a_computer_waiting_for_news_is_not_sent_its_own_commits() {
    let server = Server::start();
    let (a, b) = (login_as(&server, "pc-a"), login_as(&server, "pc-b"));
    let url = format!("{}/api/v1/folders/backup/commit", server.url());
    let r = http()
        .post(&url)
        .bearer_auth(&a)
        .json(&serde_json::json!({"changes": dirs((0..3).map(|i| format!("from-a-{i}")))}))
        .send()
        .expect("commit");
    assert_eq!(r.status(), 200);
    let news = |tok: &str, after: &str| -> serde_json::Value {
        http()
            .get(format!("{}/api/v1/folders/backup/journal", server.url()))
            .query(&[("after", after), ("wait", "0"), ("others", "true")])
            .bearer_auth(tok)
            .send()
            .expect("journal")
            .json()
            .expect("json")
    };
    // A's own commits are not news to A, but the head moves on for it.
    let seen = news(&a, "0");
    assert_eq!(seen["changes"], serde_json::json!([]));
    assert_eq!(seen["head"], 3);
    // B sees every one of them, with their author.
    let seen = news(&b, "0");
    let changes = seen["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|v| v["device"] == "pc-a"));
    // A long-poll by A is not woken by A's commit, and is by B's.
    let waiter = {
        let (base, a) = (server.url(), a.clone());
        std::thread::spawn(move || -> serde_json::Value {
            http()
                .get(format!("{base}/api/v1/folders/backup/journal"))
                .query(&[("after", "3"), ("wait", "55"), ("others", "true")])
                .bearer_auth(&a)
                .send()
                .expect("poll")
                .json()
                .expect("json")
        })
    };
    for (tok, name) in [(&a, "own"), (&b, "from-b")] {
        let r = http()
            .post(&url)
            .bearer_auth(tok)
            .json(&serde_json::json!({"changes": dirs(std::iter::once(name.to_string()))}))
            .send()
            .expect("commit");
        assert_eq!(r.status(), 200);
    }
    let woke = waiter.join().expect("poll thread");
    let changes = woke["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{woke}");
    assert_eq!(changes[0]["path"], "from-b");
    // The plain journal still has everything, for every reader.
    let all: serde_json::Value = http()
        .get(format!("{}/api/v1/folders/backup/journal", server.url()))
        .query(&[("after", "0")])
        .bearer_auth(&a)
        .send()
        .expect("journal")
        .json()
        .expect("json");
    assert_eq!(all["changes"].as_array().map(Vec::len), Some(5));
}

/// Two computers with agents on one folder: each one's changes reach the other, including a
/// commit too large to go plain (sent gzipped) and a folder renamed on one of them.
#[test]
fn two_agents_converge_with_compressed_traffic() {
    let server = Server::start();
    let (a, b) = (Client::new(), Client::new());
    for (c, name) in [(&a, "A"), (&b, "B")] {
        c.connect(&server, "alice", "alice-pw");
        let local = c.path("sync");
        std::fs::create_dir_all(&local).expect("mkdir");
        c.ok(&[
            "drive",
            "add",
            "d",
            "--local",
            local.to_str().expect("utf-8 path"),
            "--connection",
            "srv",
            "--folder",
            "backup",
            "--computer",
            name,
        ]);
    }
    let mut agents: Vec<std::process::Child> = [&a, &b]
        .iter()
        .map(|c| {
            c.cmd()
                .arg("agent")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("agent")
        })
        .collect();
    // 400 files: their commit is far above the size sent gzipped.
    for i in 0..400 {
        a.write(
            &format!("sync/many/f{i:03}.bin"),
            &noise(i, 100 + i as usize),
        );
    }
    let same = |from: &Client, to: &Client, rel: &str| {
        std::fs::read(from.path(rel))
            .ok()
            .is_some_and(|x| std::fs::read(to.path(rel)).ok() == Some(x))
    };
    wait_until(120, "B has A's 400 files", || {
        (0..400).all(|i| same(&a, &b, &format!("sync/many/f{i:03}.bin")))
    });
    b.write("sync/from-b.txt", b"written on B");
    wait_until(60, "A has B's file", || same(&b, &a, "sync/from-b.txt"));
    // A edits again after its own commits came back to nobody: B still sees it.
    a.write("sync/many/f000.bin", b"edited on A");
    wait_until(60, "B has A's edit", || same(&a, &b, "sync/many/f000.bin"));
    std::fs::rename(a.path("sync/many"), a.path("sync/moved")).expect("rename");
    wait_until(120, "B has the renamed folder", || {
        !b.path("sync/many").exists()
            && (0..400).all(|i| same(&a, &b, &format!("sync/moved/f{i:03}.bin")))
    });
    for agent in &mut agents {
        let _ = agent.kill();
        let _ = agent.wait();
    }
}

#[test]
fn small_files_come_down_in_batches_each_checked_against_its_hash() {
    let server = Server::start();
    let a = crate::drive::computer(&server, "A", &[]);
    let b = crate::drive::computer(&server, "B", &[]);
    for i in 0..300u64 {
        a.write(&format!("small/f{i:03}.bin"), &noise(i, 200 + i as usize));
    }
    a.write("large.bin", &noise(999, 300 * 1024));
    a.ok(&["run", "d", "--once"]);
    // One small file's bytes are damaged in the server's store (same length): the batch that
    // carries it must not write it, and must write every other file.
    let victim = noise(7, 207);
    let damaged = crate::replica::damage(&server.data.join("chunks"), &victim);
    assert_eq!(
        damaged, 1,
        "the victim's bytes were found once in the store"
    );
    let out = b.cairn(&["run", "d", "--once"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("small/f007.bin") && text.contains("does not match its content hash"),
        "{text}"
    );
    assert!(
        !b.path("small/f007.bin").exists(),
        "a damaged file was written"
    );
    for i in (0..300u64).filter(|i| *i != 7) {
        let rel = format!("small/f{i:03}.bin");
        assert_eq!(
            std::fs::read(b.path(&rel)).ok(),
            Some(noise(i, 200 + i as usize)),
            "{rel}"
        );
    }
    assert_eq!(
        std::fs::read(b.path("large.bin")).ok(),
        Some(noise(999, 300 * 1024))
    );
    // 299 files came in two requests (256 and 43 or 44 files), not one each.
    assert!(server.log_contains("files=256"), "no batch of 256 files");
}

#[test]
fn a_batch_is_bounded_and_names_what_it_cannot_send() {
    let server = Server::start();
    let tok = login_as(&server, "pc-a");
    let c = Client::new();
    c.backup_task(&server, &[]);
    c.write("a.txt", b"first");
    c.write("b.txt", b"second");
    c.ok(&["run", "t", "--once"]);
    let url = format!("{}/api/v1/folders/backup/contents", server.url());
    let tree: serde_json::Value = http()
        .get(format!("{}/api/v1/folders/backup/tree", server.url()))
        .bearer_auth(&tok)
        .send()
        .expect("tree")
        .json()
        .expect("json");
    let files: Vec<serde_json::Value> = tree["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|v| v["entry"]["kind"] == "file")
        .map(|v| serde_json::json!({"path": v["path"], "seq": v["seq"]}))
        .collect();
    assert_eq!(files.len(), 2);
    let post = |body: serde_json::Value| {
        http()
            .post(&url)
            .bearer_auth(&tok)
            .json(&body)
            .send()
            .expect("contents")
    };
    let r = post(serde_json::json!({"files": [files[1], files[0], files[1]]}));
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().expect("body").as_ref(), b"secondfirstsecond");
    let too_many: Vec<serde_json::Value> = (0..=cairn_protocol::MAX_BATCH_FILES)
        .map(|_| files[0].clone())
        .collect();
    let r = post(serde_json::json!({ "files": too_many }));
    assert_eq!(r.status(), 400);
    assert!(r.text().expect("text").contains("at most 256 files"));
    let r = post(serde_json::json!({"files": [files[0], {"path": "no/such.txt", "seq": 1}]}));
    assert_eq!(r.status(), 404);
    assert!(r.text().expect("text").contains("no/such.txt"));
}

/// The requests the server logged from line `from` on (test hook `CAIRN_TEST_ACCESS_LOG`), by
/// method and endpoint: `GET journal` -> 3.
fn requests(server: &Server, from: usize) -> std::collections::BTreeMap<String, usize> {
    let log = server.log.lock().expect("log");
    let mut out = std::collections::BTreeMap::new();
    for line in log.iter().skip(from) {
        if let Some((_, what)) = line.split_once(" request ") {
            let what = what.split(" ?").next().unwrap_or_default();
            *out.entry(what.trim().to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// Waits until the server logged no request for two seconds in a row (a journal long-poll
/// that is waiting logged its start already).
fn quiet(server: &Server) {
    let mut seen = usize::MAX;
    wait_until(60, "the agents are quiet", || {
        let now = server.log.lock().expect("log").len();
        let still = now == seen;
        seen = now;
        if !still {
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        still
    });
}

fn drive_agent(c: &Client, name: &str) -> std::process::Child {
    let local = c.path("sync");
    std::fs::create_dir_all(&local).expect("mkdir");
    c.ok(&[
        "drive",
        "add",
        "d",
        "--local",
        local.to_str().expect("utf-8 path"),
        "--connection",
        "srv",
        "--folder",
        "backup",
        "--computer",
        name,
    ]);
    c.cmd()
        .arg("agent")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("agent")
}

/// A small edit on A reaches B's agent with its content in the commit (no "missing" question,
/// no upload), which is a frame on the commit stream A opened in the warm-up (no request), and
/// in the frame of the journal stream B follows (no content request, no new wait for news).
#[test]
fn a_small_edit_travels_in_one_commit_and_one_stream_frame() {
    let server = Server::start_with(&[("CAIRN_TEST_ACCESS_LOG", "1")]);
    let (a, b) = (Client::new(), Client::new());
    for c in [&a, &b] {
        c.connect(&server, "alice", "alice-pw");
    }
    let mut agents = vec![drive_agent(&a, "A"), drive_agent(&b, "B")];
    let same = |rel: &str| {
        std::fs::read(a.path(rel))
            .ok()
            .is_some_and(|x| std::fs::read(b.path(rel)).ok() == Some(x))
    };
    for i in 0..5 {
        a.write(&format!("sync/edit-{i}.txt"), &noise(i, 300));
    }
    wait_until(60, "B has A's files", || {
        (0..5).all(|i| same(&format!("sync/edit-{i}.txt")))
    });
    quiet(&server);
    // The first edit settles what each connection knows of the journal (the warm-up's passes
    // listed the folder); the next ones are the steady state.
    for round in 0..4u64 {
        let from = server.log.lock().expect("log").len();
        let text = format!("edit {round}\n{}", "some words ".repeat(30));
        a.write("sync/edit-2.txt", text.as_bytes());
        wait_until(60, "B has A's edit", || same("sync/edit-2.txt"));
        quiet(&server);
        let seen = requests(&server, from);
        let total: usize = seen.values().sum();
        println!("edit {round}: {total} requests {seen:?}");
        if round == 0 {
            continue;
        }
        let count = |what: &str| seen.get(what).copied().unwrap_or(0);
        let log_lines = |what: &str| {
            let log = server.log.lock().expect("log");
            log.iter().skip(from).filter(|l| l.contains(what)).count()
        };
        assert_eq!(log_lines("commit-stream frame"), 1, "{seen:?}");
        for none in [
            "POST commit",
            "POST commit-stream",
            "POST chunks/missing",
            "POST chunks",
            "POST contents",
            "GET content",
            "GET chunklist",
            "GET chunks/ID",
            "GET versions",
            "GET folders",
        ] {
            assert_eq!(count(none), 0, "{none}: {seen:?}");
        }
        // No pass reads the journal: A knows its own commit from the commit's answer, B's
        // pass reads the frame its follower got (content included), and B's pass after
        // writing the file knows nothing else happened. B's follower reads its journal stream,
        // open since the warm-up: the edit is one frame on it, and no request at all.
        assert_eq!(count("GET journal"), 0, "{seen:?}");
        assert_eq!(log_lines("stream frame 1 changes"), 1, "{seen:?}");
    }
    for agent in &mut agents {
        let _ = agent.kill();
        let _ = agent.wait();
    }
}

/// One change of a commit, with `inline` as its content (which may lie about `data`).
fn inline_change(path: &str, data: &[u8], inline: &[u8]) -> serde_json::Value {
    use cairn_model::{ChunkId, ContentHash, Entry, EntryKind, RelPath};
    let change = cairn_protocol::Change {
        path: RelPath::parse(path).expect("path"),
        base: None,
        entry: Entry {
            kind: EntryKind::File,
            size: data.len() as u64,
            mtime_ns: 1,
            mode: 0o644,
            hash: Some(ContentHash::of(data)),
            target: None,
        },
        chunks: vec![cairn_protocol::ChunkSpan {
            id: ChunkId::of(data),
            len: data.len() as u32,
        }],
        moved_from: None,
        inline: Some(cairn_protocol::Inline(bytes::Bytes::copy_from_slice(
            inline,
        ))),
    };
    serde_json::to_value(change).expect("json")
}

#[test]
fn inline_content_is_checked_bounded_and_only_sent_to_other_computers() {
    let server = Server::start();
    let (a, b) = (login_as(&server, "pc-a"), login_as(&server, "pc-b"));
    let url = |what: &str| format!("{}/api/v1/folders/backup/{what}", server.url());
    let commit = |changes: Vec<serde_json::Value>| {
        http()
            .post(url("commit"))
            .bearer_auth(&a)
            .json(&serde_json::json!({ "changes": changes }))
            .send()
            .expect("commit")
    };
    let good = noise(1, 300);
    let mut lying = good.clone();
    lying[10] ^= 0xff;
    let big = noise(2, cairn_protocol::MAX_INLINE_FILE as usize + 1);
    let r = commit(vec![
        inline_change("good.txt", &good, &good),
        inline_change("lying.txt", &good, &lying),
        inline_change("big.bin", &big, &big),
    ]);
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().expect("json");
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results[0]["status"], "accepted", "{answer}");
    assert_eq!(results[1]["status"], "refused", "{answer}");
    let why = results[1]["reason"].as_str().expect("reason");
    assert!(
        why.contains("lying.txt") && why.contains("does not match"),
        "{why}"
    );
    assert_eq!(results[2]["status"], "refused", "{answer}");
    let why = results[2]["reason"].as_str().expect("reason");
    assert!(why.contains("big.bin") && why.contains("per file"), "{why}");
    // The good file is there, stored from its inline content; nothing else is.
    let content = http()
        .get(url("content"))
        .query(&[("path", "good.txt")])
        .bearer_auth(&b)
        .send()
        .expect("content");
    assert_eq!(content.status(), 200);
    assert_eq!(content.bytes().expect("body").as_ref(), &good[..]);
    for gone in ["lying.txt", "big.bin"] {
        let r = http()
            .get(url("content"))
            .query(&[("path", gone)])
            .bearer_auth(&b)
            .send()
            .expect("content");
        assert_eq!(r.status(), 404, "{gone}");
    }
    // Too much inline content in one request: refused whole, with 413 and the limit.
    let each = cairn_protocol::MAX_INLINE_FILE as usize;
    let n = (cairn_protocol::MAX_INLINE_COMMIT as usize) / each + 1;
    let many: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let data = noise(100 + i as u64, each);
            inline_change(&format!("many/f{i}.bin"), &data, &data)
        })
        .collect();
    let r = commit(many);
    assert_eq!(r.status(), 413);
    let text = r.text().expect("text");
    assert!(
        text.contains("inline content in one commit")
            && text.contains(&cairn_protocol::MAX_INLINE_COMMIT.to_string()),
        "{text}"
    );
    // The journal carries the content to another computer, not back to its author.
    let journal = |tok: &str| -> serde_json::Value {
        http()
            .get(url("journal"))
            .query(&[("after", "0"), ("inline", "true")])
            .bearer_auth(tok)
            .send()
            .expect("journal")
            .json()
            .expect("json")
    };
    let to_b = journal(&b);
    let carried: cairn_protocol::Inline =
        serde_json::from_value(to_b["changes"][0]["inline"].clone()).expect("inline content");
    assert_eq!(carried.0.as_ref(), &good[..]);
    assert!(journal(&a)["changes"][0].get("inline").is_none());
    let plain: serde_json::Value = http()
        .get(url("journal"))
        .query(&[("after", "0")])
        .bearer_auth(&b)
        .send()
        .expect("journal")
        .json()
        .expect("json");
    assert!(plain["changes"][0].get("inline").is_none(), "{plain}");
}
