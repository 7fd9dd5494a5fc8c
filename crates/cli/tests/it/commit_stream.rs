//! The commit stream (`POST .../commit-stream`): commits as frames on one open HTTP/2 request,
//! each checked and stored as an ordinary commit, refused one by one; its caps; a client that
//! falls back to ordinary commits; and a SIGTERM that loses no acknowledged commit.

use bytes::Bytes;
use cairn_model::{Entry, EntryKind, RelPath, Seq};
use cairn_protocol::commit_stream::{
    encode_commit, encode_frame, parse_answer, Answer, FrameSplitter, CONTENT_TYPE,
    MAX_ANSWER_FRAME, MAX_ANSWER_JSON, MAX_FRAME,
};
use cairn_protocol::{Change, ChangeResult, Inline};

use crate::harness::{http, noise, Client, Server};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn async_http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

fn login(server: &Server, user: &str, password: &str, device: &str) -> (String, Vec<String>) {
    let r: cairn_protocol::LoginResponse = http()
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": user, "password": password, "device": device}))
        .send()
        .expect("login")
        .json()
        .expect("login answer");
    (r.token, r.features)
}

/// An open commit stream, as a test drives it frame by frame.
struct Stream {
    body: tokio::sync::mpsc::Sender<Bytes>,
    resp: reqwest::Response,
    split: FrameSplitter,
}

/// Opens a stream on folder `backup`: the stream, or the status and text it was refused with.
async fn open(
    client: &reqwest::Client,
    server_url: &str,
    token: &str,
) -> Result<Stream, (u16, String)> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    let resp = client
        .post(format!("{server_url}/api/v1/folders/backup/commit-stream"))
        .header(cairn_protocol::TOKEN_HEADER, token)
        .header("content-type", CONTENT_TYPE)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("the request is sent");
    let status = resp.status().as_u16();
    if status != 200 {
        return Err((status, resp.text().await.unwrap_or_default()));
    }
    Ok(Stream {
        body: tx,
        resp,
        split: FrameSplitter::new(MAX_ANSWER_FRAME, MAX_ANSWER_JSON),
    })
}

impl Stream {
    async fn send(&self, frame: Vec<u8>) {
        self.body.send(Bytes::from(frame)).await.expect("body open");
    }

    /// The next answer; `None` when the server ended the stream.
    async fn answer(&mut self) -> Option<Answer> {
        loop {
            if let Some(p) = self.split.next_payload().expect("valid frames") {
                return Some(parse_answer(&p).expect("an answer"));
            }
            match self.resp.chunk().await {
                Ok(Some(bytes)) => self.split.push(&bytes),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Commits `changes` as commit `id` and returns the answer.
    async fn commit(&mut self, id: u64, changes: &[Change]) -> Answer {
        self.send(encode_commit(id, changes)).await;
        let a = self.answer().await.expect("an answer");
        assert_eq!(a.id, id);
        a
    }
}

/// A small file with its content inline and neither chunk list nor hash.
fn inline(path: &str, data: &[u8], base: Option<i64>) -> Change {
    Change {
        path: RelPath::parse(path).expect("path"),
        base: base.map(Seq),
        entry: Entry {
            kind: EntryKind::File,
            size: data.len() as u64,
            mtime_ns: 1,
            mode: 0o644,
            hash: None,
            target: None,
        },
        chunks: Vec::new(),
        moved_from: None,
        inline: Some(Inline(Bytes::copy_from_slice(data))),
    }
}

fn accepted(a: &Answer) -> Vec<Option<i64>> {
    let r = a.outcome.as_ref().expect("results, not a refusal");
    r.results
        .iter()
        .map(|x| match x {
            ChangeResult::Accepted { seq } => Some(seq.0),
            _ => None,
        })
        .collect()
}

fn content(server: &Server, token: &str, path: &str) -> Vec<u8> {
    http()
        .get(format!("{}/api/v1/folders/backup/content", server.url()))
        .query(&[("path", path)])
        .header(cairn_protocol::TOKEN_HEADER, token)
        .send()
        .expect("content")
        .bytes()
        .expect("body")
        .to_vec()
}

#[test]
fn commits_on_a_stream_land_as_versions_and_a_bad_one_is_refused_alone() {
    let server = Server::start();
    let (token, features) = login(&server, "alice", "alice-pw", "pc-a");
    assert!(features
        .iter()
        .any(|f| f == cairn_protocol::FEATURE_COMMIT_STREAM));
    let rt = runtime();
    let client = async_http();
    let (first, second) = (noise(1, 300), noise(2, 250));
    rt.block_on(async {
        let mut s = open(&client, &server.url(), &token).await.expect("open");
        let a = s.commit(1, &[inline("notes.txt", &first, None)]).await;
        let seq = accepted(&a)[0].expect("accepted");

        // Not a commit: refused with its id and what is wrong, and the stream goes on.
        s.send(encode_frame(br#"{"i":2,"c":5}"#)).await;
        let a = s.answer().await.expect("an answer");
        assert_eq!(a.id, 2);
        let (status, message) = a.outcome.expect_err("refused");
        assert_eq!(status, 400);
        assert!(message.contains("not valid"), "{message}");

        // One change that does not parse and one whose content is not what it claims are
        // refused by name; the valid one beside them commits.
        let mut lying = inline("lie.txt", b"some content", None);
        lying.entry.hash = Some(cairn_model::ContentHash::of(b"other content"));
        let bad_path = serde_json::json!({"i": 3, "c": [{"p": "../x", "k": "file"}]});
        s.send(encode_frame(bad_path.to_string().as_bytes())).await;
        let a = s.answer().await.expect("an answer");
        let r = a.outcome.expect("results");
        assert!(
            matches!(&r.results[0], ChangeResult::Refused { reason } if reason.contains("change 0 is not valid")),
            "{r:?}"
        );
        let a = s
            .commit(4, &[lying, inline("notes.txt", &second, Some(seq))])
            .await;
        let r = a.outcome.as_ref().expect("results");
        assert!(
            matches!(&r.results[0], ChangeResult::Refused { reason } if reason.contains("lie.txt") && reason.contains("does not match")),
            "{r:?}"
        );
        let seq2 = accepted(&a)[1].expect("the edit is accepted");
        assert!(seq2 > seq);

        // A frame over the cap ends the stream with an error for it; what was acknowledged
        // stays.
        s.send((MAX_FRAME + 1).to_be_bytes().to_vec()).await;
        let a = s.answer().await.expect("an error frame");
        assert_eq!(a.id, 0);
        let (status, message) = a.outcome.expect_err("refused");
        assert_eq!(status, 400);
        assert!(message.contains("backup") && message.contains("at most"), "{message}");
        assert!(s.answer().await.is_none(), "the stream ended");
    });
    assert_eq!(content(&server, &token, "notes.txt"), second);
    let versions = http()
        .get(format!("{}/api/v1/folders/backup/versions", server.url()))
        .query(&[("path", "notes.txt")])
        .header(cairn_protocol::TOKEN_HEADER, &token)
        .send()
        .expect("versions")
        .text()
        .expect("text");
    assert!(versions.matches("\"seq\"").count() >= 2, "{versions}");
}

#[test]
fn a_user_without_write_access_is_refused_per_commit() {
    let server = Server::start();
    let (token, _) = login(&server, "alice", "alice-pw", "pc-a");
    server.admin(&["user", "add", "bob", "--password-stdin"], Some("bob-pw"));
    server.admin(
        &["folder", "grant", "backup", "bob", "--access", "ro"],
        None,
    );
    let (bob, _) = login(&server, "bob", "bob-pw", "pc-b");
    let rt = runtime();
    let client = async_http();
    rt.block_on(async {
        let refused = open(&client, &server.url(), &bob).await.err();
        assert_eq!(refused.as_ref().map(|r| r.0), Some(403), "{refused:?}");

        let mut s = open(&client, &server.url(), &token).await.expect("open");
        let a = s.commit(1, &[inline("a.txt", b"one", None)]).await;
        let seq = accepted(&a)[0].expect("accepted");
        server.admin(
            &["folder", "grant", "backup", "alice", "--access", "ro"],
            None,
        );
        let a = s.commit(2, &[inline("a.txt", b"two", Some(seq))]).await;
        let (status, message) = a.outcome.expect_err("refused");
        assert_eq!(status, 403);
        assert!(message.contains("may only read"), "{message}");
        // Access back: the same stream commits again.
        server.admin(
            &["folder", "grant", "backup", "alice", "--access", "rw"],
            None,
        );
        let a = s.commit(3, &[inline("a.txt", b"three", Some(seq))]).await;
        assert!(accepted(&a)[0].is_some(), "{a:?}");
    });
    assert_eq!(content(&server, &token, "a.txt"), b"three");
}

#[test]
fn a_user_holding_many_commit_streams_is_refused_more_and_gets_them_back() {
    let server = Server::start_with(&[("CAIRN_TEST_ACCESS_LOG", "1")]);
    let (token, _) = login(&server, "alice", "alice-pw", "pc-a");
    let rt = runtime();
    let client = async_http();
    let mut held = rt.block_on(async {
        let mut held = Vec::new();
        for i in 0..32 {
            let s = open(&client, &server.url(), &token).await;
            held.push(s.unwrap_or_else(|e| panic!("stream {i}: {e:?}")));
        }
        let refused = open(&client, &server.url(), &token).await.err();
        let (status, text) = refused.expect("refused");
        assert_eq!(status, 503);
        assert!(text.contains("too many open commit streams"), "{text}");
        // The streams held still commit.
        let a = held[0].commit(1, &[inline("x.txt", b"x", None)]).await;
        assert!(accepted(&a)[0].is_some());
        held
    });
    // A client refused a stream commits with ordinary requests.
    let (asked, ordinary) = run_once_commit(&server);
    assert!(asked && ordinary, "asked {asked}, ordinary {ordinary}");
    rt.block_on(async {
        // One closed by its client is given back.
        drop(held.pop());
        let mut again = None;
        for _ in 0..300 {
            if let Ok(s) = open(&client, &server.url(), &token).await {
                again = Some(s);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(again.is_some(), "a closed stream was not given back");
    });
}

/// Syncs one new file with `run --once` against `server` and says whether the commit went on
/// the stream (per the server's request log).
fn run_once_commit(server: &Server) -> (bool, bool) {
    let c = Client::new();
    c.connect(server, "alice", "alice-pw");
    c.write("new.txt", b"a new file");
    let root = c.root.to_str().expect("utf-8").to_string();
    c.ok(&[
        "drive",
        "add",
        "d",
        "--local",
        &root,
        "--connection",
        "srv",
        "--folder",
        "backup",
    ]);
    c.ok(&["run", "d", "--once"]);
    let (token, _) = login(server, "alice", "alice-pw", "pc-check");
    assert_eq!(content(server, &token, "new.txt"), b"a new file");
    (
        server.log_contains("request POST commit-stream"),
        server.log_contains("request POST commit ?"),
    )
}

#[test]
fn the_client_commits_on_the_stream_and_with_requests_where_there_is_none() {
    let server = Server::start_with(&[("CAIRN_TEST_ACCESS_LOG", "1")]);
    let (stream, ordinary) = run_once_commit(&server);
    assert!(
        stream && !ordinary,
        "commit-stream {stream}, ordinary {ordinary}"
    );
    assert!(server.log_contains("commit-stream frame"));

    let old = Server::start_with(&[
        ("CAIRN_TEST_ACCESS_LOG", "1"),
        ("CAIRN_TEST_NO_COMMIT_STREAM", "1"),
    ]);
    let (_, features) = login(&old, "alice", "alice-pw", "pc-x");
    assert!(!features
        .iter()
        .any(|f| f == cairn_protocol::FEATURE_COMMIT_STREAM));
    let (stream, ordinary) = run_once_commit(&old);
    assert!(
        !stream && ordinary,
        "commit-stream {stream}, ordinary {ordinary}"
    );
}

#[test]
fn sigterm_mid_stream_loses_no_acknowledged_commit() {
    // Each change takes a moment, so the signal comes while a commit is under way.
    let mut server = Server::start_with(&[("CAIRN_TEST_COMMIT_PAUSE_MS", "200")]);
    let (token, _) = login(&server, "alice", "alice-pw", "pc-a");
    let rt = runtime();
    let client = async_http();
    let pid = server.child.as_ref().expect("running").id().to_string();
    let acknowledged = rt.block_on(async {
        let mut s = open(&client, &server.url(), &token).await.expect("open");
        let mut acked = Vec::new();
        for i in 1..=3u64 {
            let path = format!("f{i}.txt");
            let a = s.commit(i, &[inline(&path, &noise(i, 100), None)]).await;
            acked.push((path, accepted(&a)[0].expect("accepted")));
        }
        s.send(encode_commit(4, &[inline("f4.txt", &noise(4, 100), None)]))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        // The commit under way is answered before the stream ends.
        while let Some(a) = s.answer().await {
            if let Ok(r) = &a.outcome {
                if let Some(ChangeResult::Accepted { seq }) = r.results.first() {
                    acked.push((format!("f{}.txt", a.id), seq.0));
                }
            }
        }
        acked
    });
    let status = server
        .child
        .as_mut()
        .expect("running")
        .wait()
        .expect("exits");
    assert!(status.success(), "{status}");
    server.child = None;
    server.restart();
    let (token, _) = login(&server, "alice", "alice-pw", "pc-a");
    assert!(acknowledged.len() >= 3);
    for (path, _) in &acknowledged {
        let i: u64 = path[1..path.len() - 4].parse().expect("number");
        assert_eq!(content(&server, &token, path), noise(i, 100), "{path}");
    }
}

#[test]
fn a_stream_may_wait_between_frames_but_a_frame_begun_may_not_stall() {
    let mut server = Server::start();
    server.args = vec!["--body-timeout".into(), "1".into()];
    server.restart();
    let (token, _) = login(&server, "alice", "alice-pw", "pc-a");
    let rt = runtime();
    let client = async_http();
    rt.block_on(async {
        let mut s = open(&client, &server.url(), &token).await.expect("open");
        let a = s.commit(1, &[inline("a.txt", b"one", None)]).await;
        let seq = accepted(&a)[0].expect("accepted");
        // Longer than a request body may stall: the wait between two commits is not one.
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let a = s.commit(2, &[inline("a.txt", b"two", Some(seq))]).await;
        assert!(accepted(&a)[0].is_some(), "{a:?}");
        // Half a frame header, then nothing: the body deadline ends the stream.
        s.send(vec![0, 0]).await;
        let end = tokio::time::timeout(std::time::Duration::from_secs(30), s.answer()).await;
        assert!(matches!(end, Ok(None)), "the stream did not end: {end:?}");
    });
    assert_eq!(content(&server, &token, "a.txt"), b"two");
}
