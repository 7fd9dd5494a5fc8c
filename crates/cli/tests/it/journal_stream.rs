//! The streamed journal (`journal?stream=true`), the token in `x-cairn-token` and inline
//! commits without the chunk list and hash their content gives: what they deliver, how they
//! end, and what a user holding many streams is refused.

use std::io::Read;

use cairn_protocol::stream::{FrameReader, JournalFrame, CONTENT_TYPE, SERVER_ID_HEADER};

use crate::harness::{http, noise, Server};

/// Logs in as alice from `device`: the token and the features the server announced.
fn login(server: &Server, device: &str) -> (String, Vec<String>) {
    let r: cairn_protocol::LoginResponse = http()
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": "alice", "password": "alice-pw", "device": device}))
        .send()
        .expect("login")
        .json()
        .expect("login answer");
    (r.token, r.features)
}

fn url(server: &Server, what: &str) -> String {
    format!("{}/api/v1/folders/backup/{what}", server.url())
}

/// Opens a journal stream after `after`, with a beat every `wait` seconds.
fn open(server: &Server, token: &str, after: i64, wait: u64) -> reqwest::blocking::Response {
    http()
        .get(url(server, "journal"))
        .query(&[
            ("after", after.to_string()),
            ("wait", wait.to_string()),
            ("others", "true".into()),
            ("inline", "true".into()),
            ("limit", "64".into()),
            ("stream", "true".into()),
        ])
        .header(cairn_protocol::TOKEN_HEADER, token)
        .send()
        .expect("open stream")
}

/// The next frame of a stream; `None` at its clean end.
fn next(resp: &mut reqwest::blocking::Response, reader: &mut FrameReader) -> Option<JournalFrame> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = reader.next_frame().expect("a valid frame") {
            return Some(f);
        }
        let n = resp
            .read(&mut buf)
            .expect("the stream ends cleanly, never with an error");
        if n == 0 {
            return None;
        }
        reader.push(&buf[..n]);
    }
}

/// A commit of one small file with its content inline and neither chunk list nor hash.
fn commit_inline(
    server: &Server,
    token: &str,
    path: &str,
    data: &[u8],
    base: Option<i64>,
) -> serde_json::Value {
    let change = serde_json::json!({
        "path": path,
        "base": base,
        "entry": {"kind": "file", "size": data.len(), "mtime_ns": 1, "mode": 420, "hash": null},
        "inline": cairn_protocol::Inline(bytes::Bytes::copy_from_slice(data)),
    });
    let r = http()
        .post(url(server, "commit"))
        .header(cairn_protocol::TOKEN_HEADER, token)
        .json(&serde_json::json!({ "changes": [change] }))
        .send()
        .expect("commit");
    assert_eq!(r.status(), 200);
    r.json().expect("commit answer")
}

#[test]
fn a_journal_stream_delivers_others_changes_and_ends_cleanly_when_the_server_stops() {
    let mut server = Server::start();
    let (a, features) = login(&server, "pc-a");
    for f in [
        cairn_protocol::FEATURE_TOKEN_HEADER,
        cairn_protocol::FEATURE_DERIVED_INLINE,
        cairn_protocol::FEATURE_JOURNAL_STREAM,
    ] {
        assert!(features.iter().any(|x| x == f), "{f} in {features:?}");
    }
    let (b, _) = login(&server, "pc-b");
    let mut stream = open(&server, &b, 0, 30);
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers().get("content-type").map(|v| v.as_bytes()),
        Some(CONTENT_TYPE.as_bytes())
    );
    assert!(stream.headers().get(SERVER_ID_HEADER).is_some());
    let mut reader = FrameReader::default();

    // Two edits by A come as two frames on the one open answer, each with its content (whose
    // hash the reader computes: the commit named none either).
    let first = noise(1, 300);
    let r = commit_inline(&server, &a, "notes.txt", &first, None);
    let seq = r["results"][0]["seq"].as_i64().expect("accepted");
    let f = next(&mut stream, &mut reader).expect("a frame");
    assert_eq!(f.changes.len(), 1);
    let v = &f.changes[0];
    assert_eq!((v.path.as_str(), v.seq.0), ("notes.txt", seq));
    assert_eq!(v.device.0, "pc-a");
    assert_eq!(v.checked_inline().map(|b| b.to_vec()), Some(first.clone()));
    assert_eq!(v.entry.hash, Some(cairn_model::ContentHash::of(&first)));
    let second = noise(2, 200);
    commit_inline(&server, &a, "notes.txt", &second, Some(seq));
    let f = next(&mut stream, &mut reader).expect("a frame");
    assert_eq!(
        f.changes[0].checked_inline().map(|b| b.to_vec()),
        Some(second.clone())
    );
    assert_eq!(
        f.changes[0].user, "alice",
        "the author carries over from the frame before"
    );
    // What the server stored is the content, cut as a client cuts it.
    let stored = http()
        .get(url(&server, "content"))
        .query(&[("path", "notes.txt")])
        .header(cairn_protocol::TOKEN_HEADER, &a)
        .send()
        .expect("content")
        .bytes()
        .expect("body");
    assert_eq!(stored.to_vec(), second);

    // B's own commit is no news to B.
    commit_inline(&server, &b, "mine.txt", b"my own", None);
    // SIGTERM: the stream ends with its last frame, not cut off, and the server exits.
    let child = server.child.as_mut().expect("running");
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    while let Some(f) = next(&mut stream, &mut reader) {
        assert!(
            f.changes.iter().all(|v| v.device.0 != "pc-b"),
            "B was sent its own commit: {f:?}"
        );
    }
    let status = child.wait().expect("server exits");
    assert!(status.success(), "{status}");
    server.child = None;
}

#[test]
fn a_stream_ends_when_its_reader_loses_access() {
    let server = Server::start();
    let (b, _) = login(&server, "pc-b");
    let mut stream = open(&server, &b, 0, 1);
    let mut reader = FrameReader::default();
    let beat = next(&mut stream, &mut reader).expect("a beat");
    assert!(beat.changes.is_empty());
    assert_eq!(beat.access, Some(cairn_protocol::Access::Rw));
    server.admin(&["folder", "revoke", "backup", "alice"], None);
    while next(&mut stream, &mut reader).is_some() {}
    let again = open(&server, &b, 0, 1);
    assert_eq!(again.status(), 404, "no access, no stream");
}

#[test]
fn a_user_holding_many_streams_is_refused_more_and_gets_them_back() {
    let server = Server::start();
    let (token, _) = login(&server, "pc-b");
    // Over several connections, as a hostile client would spread them.
    let mut held = Vec::new();
    let max = 32;
    for i in 0..max {
        let r = open(&server, &token, 0, 60);
        assert_eq!(r.status(), 200, "stream {i}");
        held.push(r);
    }
    let refused = open(&server, &token, 0, 60);
    assert_eq!(refused.status(), 503);
    let text = refused.text().expect("text");
    assert!(text.contains("too many open journal streams"), "{text}");
    // Another user is not held up by alice's streams.
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    server.admin(
        &["folder", "grant", "backup", "bob", "--access", "ro"],
        None,
    );
    let bob: cairn_protocol::LoginResponse = http()
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": "bob", "password": "bob-pw", "device": "pc-c"}))
        .send()
        .expect("login")
        .json()
        .expect("login answer");
    assert_eq!(open(&server, &bob.token, 0, 60).status(), 200);
    // A stream closed by its reader is given back.
    drop(held.pop());
    crate::harness::wait_until(30, "a closed stream is given back", || {
        let r = open(&server, &token, 0, 60);
        let ok = r.status() == 200;
        if ok {
            held.push(r);
        }
        ok
    });
}
