//! The client against a broken or hostile server: a fake HTTP server in this file that stalls,
//! sends endless or gigantic answers, or answers what was not asked. The real `cairn` binary
//! must fail with an error naming the request, retry what may pass later, and read no more than
//! each request's cap. No timings are asserted; a hang guard only stops a stuck client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::Client;

const LISTING_CAP: u64 = cairn_client::Cap::Listing.bytes();
const CONTENT_CAP: u64 = cairn_client::MAX_CONTENT;
const CHUNK_CAP: u64 = cairn_protocol::frame::MAX_FRAME_LEN as u64;
/// What sockets may hold beyond what the client read: kernel buffers on both sides.
const SOCKET_SLACK: u64 = 64 << 20;

/// One request as the fake saw it.
struct Request {
    method: String,
    /// Without the query string.
    path: String,
    /// The `Range` header's value, if any.
    range: Option<String>,
}

/// How the fake answers one request.
enum Reply {
    /// 200 with this JSON body.
    Json(String),
    /// Read the request, never answer.
    Silent,
    /// 307 to this URL.
    Redirect(String),
    /// Announce `len` bytes, send `sent` of them, then stall.
    StallBody { len: u64, sent: String },
    /// Announce this many bytes and send none.
    Declared(u64),
    /// A chunked body: `head`, then `filler` over and over until the client hangs up.
    Endless { head: String, filler: String },
    /// 200 with this gzipped JSON body (`content-encoding: gzip`).
    Gzip(Arc<Vec<u8>>),
    /// These bytes as they are (status line, headers and body), then the connection closes.
    Cut(Vec<u8>),
}

struct FakeServer {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    /// Body bytes written, over all answers.
    sent: Arc<AtomicU64>,
}

type Route = dyn Fn(&Request) -> Reply + Send + Sync;

impl FakeServer {
    /// Answers login and the folder list like a server would, everything else by `route`.
    fn start(route: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeServer {
        Self::start_raw(move |r: &Request| match r.path.as_str() {
            "/api/v1/login" => Reply::Json(format!(
                r#"{{"token":"t","expires_ns":{},"server_id":"fake","admin":false}}"#,
                i64::MAX
            )),
            "/api/v1/folders" => Reply::Json(
                r#"[{"name":"backup","access":"rw","keep_versions":5,"head":0}]"#.into(),
            ),
            _ => route(r),
        })
    }

    /// Answers every request by `route`.
    fn start_raw(route: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = FakeServer {
            port,
            stop: Arc::new(AtomicBool::new(false)),
            seen: Arc::new(Mutex::new(Vec::new())),
            sent: Arc::new(AtomicU64::new(0)),
        };
        let route: Arc<Route> = Arc::new(route);
        let (stop, seen, sent) = (
            server.stop.clone(),
            server.seen.clone(),
            server.sent.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (route, stop, seen, sent) =
                    (route.clone(), stop.clone(), seen.clone(), sent.clone());
                std::thread::spawn(move || serve(conn, &*route, &stop, &seen, &sent));
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many requests reached `path`.
    fn requests(&self, path: &str) -> usize {
        let seen = self.seen.lock().expect("seen");
        seen.iter().filter(|p| p.ends_with(path)).count()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves one connection until the client hangs up or an answer stalls for good.
fn serve(
    conn: TcpStream,
    route: &Route,
    stop: &AtomicBool,
    seen: &Mutex<Vec<String>>,
    sent: &AtomicU64,
) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut input = BufReader::new(conn);
    while let Some(req) = read_request(&mut input) {
        seen.lock()
            .expect("seen")
            .push(format!("{} {}", req.method, req.path));
        let done = match route(&req) {
            Reply::Json(body) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let ok = out.write_all(head.as_bytes()).is_ok()
                    && out.write_all(body.as_bytes()).is_ok();
                sent.fetch_add(body.len() as u64, Ordering::SeqCst);
                !ok
            }
            Reply::Silent => true,
            Reply::Gzip(body) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let ok = out.write_all(head.as_bytes()).is_ok() && out.write_all(&body).is_ok();
                sent.fetch_add(body.len() as u64, Ordering::SeqCst);
                !ok
            }
            Reply::Redirect(to) => {
                let head = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: {to}\r\ncontent-length: 0\r\n\r\n"
                );
                out.write_all(head.as_bytes()).is_err()
            }
            Reply::StallBody { len, sent: part } => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n{part}");
                let _ = out.write_all(head.as_bytes());
                sent.fetch_add(part.len() as u64, Ordering::SeqCst);
                true
            }
            Reply::Declared(len) => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
                let _ = out.write_all(head.as_bytes());
                true
            }
            Reply::Endless { head, filler } => {
                endless(&mut out, &head, &filler, sent);
                true
            }
            Reply::Cut(bytes) => {
                let _ = out.write_all(&bytes);
                sent.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                return;
            }
        };
        if done {
            // Hold the connection open (a stall) until the client goes or the test ends.
            while !stop.load(Ordering::SeqCst) && !hung_up(&mut input) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
    }
}

/// Writes a chunked body until a write fails (the client hung up).
fn endless(out: &mut TcpStream, head: &str, filler: &str, sent: &AtomicU64) {
    let start =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    if out.write_all(start.as_bytes()).is_err() {
        return;
    }
    let chunk = |data: &str| format!("{:x}\r\n{data}\r\n", data.len());
    // An empty chunk would end the body.
    if !head.is_empty() && out.write_all(chunk(head).as_bytes()).is_err() {
        return;
    }
    let mut block = String::new();
    while block.len() < 256 * 1024 {
        block.push_str(filler);
    }
    let block = chunk(&block);
    let body_len = block.len() as u64;
    while out.write_all(block.as_bytes()).is_ok() {
        sent.fetch_add(body_len, Ordering::SeqCst);
    }
}

/// True when the peer closed the connection (checked without blocking for long).
fn hung_up(input: &mut BufReader<TcpStream>) -> bool {
    let s = input.get_mut();
    if s.set_read_timeout(Some(Duration::from_millis(10))).is_err() {
        return true;
    }
    let mut buf = [0u8; 4096];
    matches!(s.read(&mut buf), Ok(0))
}

fn read_request(input: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    input.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let mut words = line.split_whitespace();
    let method = words.next()?.to_string();
    let target = words.next()?;
    let path = target.split('?').next().unwrap_or(target).to_string();
    let mut len = 0usize;
    let mut range = None;
    loop {
        let mut h = String::new();
        input.read_line(&mut h).ok().filter(|n| *n > 0)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                len = value.trim().parse().ok()?;
            } else if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        range,
    })
}

/// A version of `path` as a tree lists it.
fn version_json(path: &str, size: u64) -> String {
    format!(
        r#"{{"path":"{path}","seq":1,"entry":{{"kind":"file","size":{size},"mtime_ns":0,"mode":420,"hash":"{}"}},"device":"pc","committed_ns":0}}"#,
        "ab".repeat(32)
    )
}

/// Runs the client; a client still running after five minutes is stuck, not slow, and fails.
/// `cairn connect URL` as alice with a one-second timeout (and `extra`), which must fail;
/// returns what it printed on stderr.
fn connect_fails(c: &Client, url: &str, extra: &[&str]) -> String {
    let mut args = vec!["connect", url, "--user", "alice", "--password-stdin"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--timeout", "1"]);
    let out = run_guarded(c, &args, Some("pw"));
    assert!(!out.status.success(), "connect to {url} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run_guarded(c: &Client, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = c
        .cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(format!("{input}\n").as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("cairn {args:?} hung against the fake server");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// Runs the client, asserts it failed, returns its stderr.
fn fails(c: &Client, args: &[&str]) -> String {
    let out = run_guarded(c, args, None);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "cairn {args:?} should have failed:\n{err}"
    );
    err
}

/// A client connected to `url` (timeout 1 s) with backup task `t` over its folder.
fn client_of(url: &str) -> Client {
    let c = Client::new();
    let out = run_guarded(
        &c,
        &[
            "connect",
            url,
            "--user",
            "alice",
            "--password-stdin",
            "--name",
            "srv",
            "--timeout",
            "1",
        ],
        Some("pw"),
    );
    assert!(
        out.status.success(),
        "connect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.add_backup_task(&[]);
    c
}

/// The fake's path of the tree of folder `backup`.
const TREE: &str = "/api/v1/folders/backup/tree";
const JOURNAL: &str = "/api/v1/folders/backup/journal";
/// A journal answer with nothing in it: the identity a pass asks for first.
const EMPTY_JOURNAL: &str = r#"{"changes":[],"head":0,"server_id":"fake"}"#;

/// What a well-behaved server answers to the requests a pass makes besides the one a test
/// makes hostile: an empty journal, nothing damaged, `{}` for the rest.
fn usual(path: &str) -> Reply {
    match path {
        JOURNAL => Reply::Json(EMPTY_JOURNAL.into()),
        "/api/v1/folders/backup/damaged" => Reply::Json(r#"{"paths":[]}"#.into()),
        _ => Reply::Json("{}".into()),
    }
}

#[test]
fn a_silent_server_is_given_up_at_connect() {
    // Over TLS: the handshake never gets an answer.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let c = Client::new();
    let url = format!("https://127.0.0.1:{port}");
    let fp = "ab".repeat(32);
    let err = connect_fails(&c, &url, &["--fingerprint", &fp]);
    // Whichever bound is met first names the wait: the handshake's timeout, or the 1 s with
    // nothing received (a loaded machine reaches the second first).
    assert!(
        err.contains(&url) && (err.contains("timed out") || err.contains("sent nothing for 1 s")),
        "{err}"
    );
    assert!(
        held.join().expect("accept thread").is_ok(),
        "the client never connected"
    );

    // Over plain HTTP: the request is read and never answered.
    let silent = FakeServer::start_raw(|_| Reply::Silent);
    let url = silent.url();
    let err = connect_fails(&c, &url, &[]);
    assert!(
        err.contains(&format!("{url}/api/v1/login")) && err.contains("sent nothing for 1 s"),
        "{err}"
    );
}

#[test]
fn a_body_that_stalls_midway_fails_and_is_retried() {
    let fake = FakeServer::start(|r| match r.path.as_str() {
        TREE => Reply::StallBody {
            len: 1000,
            sent: r#"{"entries":["#.into(),
        },
        other => usual(other),
    });
    let c = client_of(&fake.url());
    let err = fails(&c, &["run", "t", "--once"]);
    assert!(
        err.contains(&format!("{}{TREE}", fake.url())) && err.contains("sent nothing"),
        "{err}"
    );
    // A stall is temporary: the same request was made again before giving up.
    assert!(
        fake.requests(TREE) > 1,
        "tree asked {} times",
        fake.requests(TREE)
    );

    // `ls` makes one request and reports the stall the same way.
    let err = fails(&c, &["ls", "t"]);
    assert!(err.contains("sent nothing"), "{err}");
}

#[test]
fn an_endless_listing_is_cut_off_at_its_cap() {
    let entry = version_json("pc/docs/a", 1);
    // `ls` reads the listing whole, a pass piece by piece: the same cap for both.
    for args in [&["ls", "t"][..], &["run", "t", "--once"]] {
        let entry = entry.clone();
        let fake = FakeServer::start(move |r| match r.path.as_str() {
            TREE => Reply::Endless {
                head: format!(r#"{{"head":1,"entries":[{entry}"#),
                filler: format!(",{entry}"),
            },
            other => usual(other),
        });
        let c = client_of(&fake.url());
        let err = fails(&c, args);
        assert!(
            err.contains(&format!("{}{TREE}", fake.url()))
                && err.contains(&format!("larger than the {LISTING_CAP} bytes")),
            "{args:?}: {err}"
        );
        let sent = fake.sent.load(Ordering::SeqCst);
        assert!(
            sent <= LISTING_CAP + SOCKET_SLACK,
            "{args:?}: the client let the server send {sent} bytes"
        );
    }
}

#[test]
fn a_gigantic_declared_listing_is_refused_unread() {
    let fake = FakeServer::start(|r| match r.path.as_str() {
        TREE => Reply::Declared(1 << 40),
        _ => Reply::Json("{}".into()),
    });
    let c = client_of(&fake.url());
    let err = fails(&c, &["ls", "t"]);
    assert!(
        err.contains(&format!("larger than the {LISTING_CAP} bytes")),
        "{err}"
    );
    assert_eq!(
        fake.requests(TREE),
        1,
        "an oversized answer is not worth asking again"
    );
}

#[test]
fn answers_that_contradict_the_request_are_refused() {
    // A listing of pc/docs that holds a path elsewhere.
    let outside = format!(
        r#"{{"head":1,"entries":[{}]}}"#,
        version_json("elsewhere/x", 1)
    );
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        TREE => Reply::Json(outside.clone()),
        other => usual(other),
    });
    let c = client_of(&fake.url());
    // `ls` reads the listing whole; a pass reads it entry by entry: both refuse it.
    for args in [&["ls", "t"][..], &["run", "t", "--once"]] {
        let err = fails(&c, args);
        assert!(
            err.contains(TREE) && err.contains("elsewhere/x is outside the listed prefix pc/docs"),
            "{args:?}: {err}"
        );
    }

    let junk = FakeServer::start(|r| match r.path.as_str() {
        TREE => Reply::Json(r#"{"entries":"not a list"}"#.into()),
        other => usual(other),
    });
    let c = client_of(&junk.url());
    for args in [&["ls", "t"][..], &["run", "t", "--once"]] {
        let err = fails(&c, args);
        assert!(
            err.contains(TREE) && err.contains("not the expected JSON"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn restore_reads_no_more_than_a_file_may_hold() {
    // A small file fetched whole, announced far larger than any whole-file answer.
    let small = format!(
        r#"{{"head":1,"entries":[{}]}}"#,
        version_json("pc/docs/small", 10)
    );
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        TREE => Reply::Json(small.clone()),
        "/api/v1/folders/backup/content" => Reply::Declared(CONTENT_CAP + 1),
        _ => Reply::Json("{}".into()),
    });
    let c = client_of(&fake.url());
    let to = c.tmp().join("out");
    let to = to.to_str().expect("utf-8");
    let err = fails(&c, &["restore", "t", "--to", to]);
    assert!(
        err.contains("/content") && err.contains(&format!("larger than the {CONTENT_CAP} bytes")),
        "{err}"
    );

    // A large file is streamed, and held to its listed size and hash.
    let size: u64 = 2 << 20;
    let large = format!(
        r#"{{"head":1,"entries":[{}]}}"#,
        version_json("pc/docs/large", size)
    );
    let big = large.clone();
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        TREE => Reply::Json(big.clone()),
        "/api/v1/folders/backup/content" => Reply::Declared(size + 1),
        _ => Reply::Json("{}".into()),
    });
    let c = client_of(&fake.url());
    let err = fails(&c, &["restore", "t", "--to", to]);
    assert!(
        err.contains("/content") && err.contains(&format!("{} bytes announced", size + 1)),
        "{err}"
    );

    // An answer without a length that never ends is not read.
    let big = large.clone();
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        TREE => Reply::Json(big.clone()),
        "/api/v1/folders/backup/content" => Reply::Endless {
            head: String::new(),
            filler: "x".into(),
        },
        _ => Reply::Json("{}".into()),
    });
    let c = client_of(&fake.url());
    let err = fails(&c, &["restore", "t", "--to", to]);
    assert!(
        err.contains("/content") && err.contains("no length"),
        "{err}"
    );
    let sent = fake.sent.load(Ordering::SeqCst);
    assert!(
        sent <= size + SOCKET_SLACK,
        "the client let the server send {sent} bytes"
    );

    // The announced length, stalled part way: the wait is bounded, the rest is asked for,
    // and an answer that is not the rest is refused; nothing is placed.
    let big = large.clone();
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        TREE => Reply::Json(big.clone()),
        "/api/v1/folders/backup/content" => Reply::StallBody {
            len: size,
            sent: "x".repeat(300_000),
        },
        _ => Reply::Json("{}".into()),
    });
    let c = client_of(&fake.url());
    let err = fails(&c, &["restore", "t", "--to", to]);
    assert!(
        err.contains("from byte 300000") && err.contains("something else"),
        "{err}"
    );
    assert_eq!(fake.requests("/content"), 2);
    assert_eq!(named_under(to, "large"), Vec::<String>::new());

    // The announced length of the wrong bytes: refused by the hash, nothing placed.
    let big = large.clone();
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        TREE => Reply::Json(big.clone()),
        "/api/v1/folders/backup/content" => Reply::Json("x".repeat(size as usize)),
        _ => Reply::Json("{}".into()),
    });
    let c = client_of(&fake.url());
    let err = fails(&c, &["restore", "t", "--to", to]);
    assert!(err.contains("does not match its hash"), "{err}");
    assert_eq!(named_under(to, "large"), Vec::<String>::new());
}

#[test]
fn a_restore_cut_off_part_way_asks_for_the_rest() {
    let data: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let hash = cairn_model::ContentHash::of(&data);
    let listing = format!(
        r#"{{"head":1,"entries":[{{"path":"pc/docs/large","seq":1,"entry":{{"kind":"file","size":{},"mtime_ns":0,"mode":420,"hash":"{hash}"}},"device":"pc","committed_ns":0}}]}}"#,
        data.len()
    );
    let cut = 1_000_000;
    let served = Arc::new(Mutex::new(Vec::new()));
    let seen = served.clone();
    let body = data.clone();
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        TREE => Reply::Json(listing.clone()),
        "/api/v1/folders/backup/content" => {
            seen.lock().expect("ranges").push(r.range.clone());
            let mut answer = match r.range.as_deref() {
                // The whole file announced, the connection lost part way.
                None => format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len())
                    .into_bytes(),
                Some(range) => {
                    let from: usize = range
                        .strip_prefix("bytes=")
                        .and_then(|r| r.strip_suffix('-'))
                        .and_then(|n| n.parse().ok())
                        .expect("an open range from a byte");
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {from}-{}/{}\r\n\r\n",
                        body.len() - from,
                        body.len() - 1,
                        body.len()
                    );
                    let mut answer = head.into_bytes();
                    answer.extend_from_slice(&body[from..]);
                    return Reply::Cut(answer);
                }
            };
            answer.extend_from_slice(&body[..cut]);
            Reply::Cut(answer)
        }
        other => usual(other),
    });
    let c = client_of(&fake.url());
    let to = c.tmp().join("out");
    let out = run_guarded(
        &c,
        &["restore", "t", "--to", to.to_str().expect("utf-8")],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = named_under(to.to_str().expect("utf-8"), "large");
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert!(
        std::fs::read(&restored[0]).expect("restored") == data,
        "the file is whole"
    );
    assert_eq!(
        *served.lock().expect("ranges"),
        vec![None, Some(format!("bytes={cut}-"))]
    );
}

/// Every file under `dir` (at any depth) called `name`.
fn named_under(dir: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else if e.file_name() == name {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

#[test]
fn a_redirect_is_not_followed() {
    let elsewhere = FakeServer::start(|_| Reply::Json("{}".into()));
    let to = format!("{}/api/v1/login", elsewhere.url());
    let fake = FakeServer::start_raw(move |_| Reply::Redirect(to.clone()));
    let c = Client::new();
    let url = fake.url();
    let err = connect_fails(&c, &url, &[]);
    assert!(
        err.contains(&format!("{url}/api/v1/login")) && err.contains("HTTP 307"),
        "{err}"
    );
    assert_eq!(
        elsewhere.requests("/api/v1/login"),
        0,
        "the password followed the redirect"
    );
}

#[test]
fn a_gzip_bomb_answer_is_cut_off_at_its_cap_unpacked() {
    // A login answer of 64 MiB once unpacked, 64 KiB on the wire: the cap of a login answer
    // (16 MiB) counts the unpacked bytes.
    let small_cap = cairn_client::Cap::Small.bytes();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(br#"{"token":""#).expect("gzip");
    let block = vec![b'a'; 1 << 20];
    for _ in 0..4 * small_cap / block.len() as u64 {
        enc.write_all(&block).expect("gzip");
    }
    let bomb = Arc::new(enc.finish().expect("gzip"));
    assert!((bomb.len() as u64) < small_cap / 16, "{} bytes", bomb.len());
    let fake = FakeServer::start_raw(move |_| Reply::Gzip(bomb.clone()));
    let c = Client::new();
    let url = fake.url();
    let err = connect_fails(&c, &url, &[]);
    assert!(
        err.contains(&format!("{url}/api/v1/login"))
            && err.contains(&format!("larger than the {small_cap} bytes")),
        "{err}"
    );
}

/// A `ServerReplica` of folder `backup` on the fake, as alice, with a five-second timeout.
fn replica_of(fake: &FakeServer) -> cairn_client::replica::ServerReplica {
    let conn = cairn_client::Connection::new(cairn_client::ConnectOptions {
        url: fake.url(),
        user: "alice".into(),
        password: "pw".into(),
        trust: cairn_client::Trust::SystemRoots,
        proxy: None,
        device: cairn_model::DeviceId("hostile".into()),
        computer: "hostile".into(),
        timeout: Duration::from_secs(5),
    })
    .expect("connection");
    cairn_client::replica::ServerReplica::new(
        Arc::new(Arc::new(conn).remote("backup")),
        cairn_model::RelPath::root(),
    )
}

/// A listed file whose content is `data`.
fn listed(data: &[u8], seq: u64) -> cairn_engine::replica::ReplicaEntry {
    cairn_engine::replica::ReplicaEntry {
        kind: cairn_model::EntryKind::File,
        size: data.len() as u64,
        mtime_ns: 0,
        mode: 0o644,
        hash: Some(cairn_model::ContentHash::of(data)),
        target: None,
        version: cairn_engine::replica::Version(seq.to_string()),
    }
}

const CONTENTS: &str = "/api/v1/folders/backup/contents";
const CONTENT: &str = "/api/v1/folders/backup/content";
const CHUNKLIST: &str = "/api/v1/folders/backup/chunklist";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_hands_on_no_content_that_does_not_match_its_hash() {
    use cairn_engine::replica::{collect, Replica};
    let rel = |p: &str| cairn_model::RelPath::parse(p).expect("path");

    // A batch whose second file is not what was listed, and is no better asked for alone: the
    // first file arrives, the second is an error naming it.
    let fake = FakeServer::start(|r| match r.path.as_str() {
        CONTENTS => Reply::Json("goodXXXXX".into()),
        CONTENT => Reply::Json("XXXXX".into()),
        _ => Reply::Json("{}".into()),
    });
    let r = replica_of(&fake);
    let items = [
        (rel("a.txt"), listed(b"good", 1)),
        (rel("b.txt"), listed(b"evil!", 2)),
    ];
    let got = r.read_many(&items).await.expect("read_many");
    assert_eq!(got[0].as_ref().expect("a.txt")[..], b"good"[..]);
    let err = got[1]
        .as_ref()
        .expect_err("b.txt was handed on")
        .to_string();
    assert!(err.contains("b.txt") && err.contains("corrupt"), "{err}");
    assert_eq!(fake.requests(CONTENTS), 1);
    assert_eq!(fake.requests(CONTENT), 1, "b.txt was not asked for alone");

    // A streamed read: a chunk that is not the one named, then chunks that are genuine but do
    // not make the file the chunk list's entry names.
    let real: &[u8] = b"real chunk bytes";
    let id = cairn_model::ChunkId::of(real);
    let list = move |hash: cairn_model::ContentHash| {
        format!(
            r#"{{"chunks":[{{"id":"{id}","len":16}}],"entry":{{"kind":"file","size":16,"mtime_ns":0,"mode":420,"hash":"{hash}"}}}}"#
        )
    };
    let genuine = list(cairn_model::ContentHash::of(real));
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        CHUNKLIST => Reply::Json(genuine.clone()),
        _ => Reply::Json("fake chunk bytes".into()),
    });
    let r = replica_of(&fake);
    let version = cairn_engine::replica::Version("3".into());
    let content = r.read(&rel("big.bin"), &version).await.expect("read");
    let err = collect(content)
        .await
        .expect_err("a forged chunk was handed on");
    assert!(err.to_string().contains("arrived corrupt"), "{err}");
    assert_eq!(
        fake.requests("/versions"),
        0,
        "the chunk list named the version; its history is not needed"
    );

    let other = list(cairn_model::ContentHash::of(b"another file"));
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        CHUNKLIST => Reply::Json(other.clone()),
        _ => Reply::Json("real chunk bytes".into()),
    });
    let r = replica_of(&fake);
    let content = r.read(&rel("big.bin"), &version).await.expect("read");
    let err = collect(content)
        .await
        .expect_err("a file not matching its hash was handed on");
    assert!(
        err.to_string().contains("does not match its content hash"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_streams_a_file_of_many_chunks_and_checks_the_whole() {
    use cairn_engine::replica::{collect, Replica};
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (a, b) = data.split_at(3000);
    let list = |hash: cairn_model::ContentHash| {
        format!(
            r#"{{"chunks":[{{"id":"{}","len":3000}},{{"id":"{}","len":2000}}],"entry":{{"kind":"file","size":5000,"mtime_ns":0,"mode":420,"hash":"{hash}"}}}}"#,
            cairn_model::ChunkId::of(a),
            cairn_model::ChunkId::of(b)
        )
    };
    let path = cairn_model::RelPath::parse("big.bin").expect("path");
    let version = cairn_engine::replica::Version("3".into());

    // The whole file in one answer, handed on whole; no chunk is asked for.
    let genuine = list(cairn_model::ContentHash::of(&data));
    let body = data.clone();
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        CHUNKLIST => Reply::Json(genuine.clone()),
        CONTENT => {
            let mut answer =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
            answer.extend_from_slice(&body);
            Reply::Cut(answer)
        }
        _ => Reply::Json("{}".into()),
    });
    let r = replica_of(&fake);
    let got = collect(r.read(&path, &version).await.expect("read"))
        .await
        .expect("the file");
    assert!(got[..] == data[..], "the file arrived whole");
    assert_eq!(fake.requests("/chunks/"), 0);

    // An answer of the right length that is not the file is never handed on whole.
    let forged = list(cairn_model::ContentHash::of(&data));
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        CHUNKLIST => Reply::Json(forged.clone()),
        CONTENT => Reply::Json("x".repeat(5000)),
        _ => Reply::Json("{}".into()),
    });
    let r = replica_of(&fake);
    let err = collect(r.read(&path, &version).await.expect("read"))
        .await
        .expect_err("a forged file was handed on");
    assert!(
        err.to_string().contains("does not match its content hash"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reads_no_more_than_a_chunk_may_hold() {
    use cairn_engine::replica::{collect, Replica};
    // A chunk that never ends is cut off at the longest a chunk may be.
    let id = "cd".repeat(32);
    let list = format!(
        r#"{{"chunks":[{{"id":"{id}","len":{size}}}],"entry":{{"kind":"file","size":{size},"mtime_ns":0,"mode":420,"hash":"{hash}"}}}}"#,
        size = 2 << 20,
        hash = "ab".repeat(32),
    );
    let fake = FakeServer::start(move |r| match r.path.as_str() {
        CHUNKLIST => Reply::Json(list.clone()),
        p if p.starts_with("/api/v1/folders/backup/chunks/") => Reply::Endless {
            head: String::new(),
            filler: "x".into(),
        },
        _ => Reply::Json("{}".into()),
    });
    let r = replica_of(&fake);
    let path = cairn_model::RelPath::parse("big.bin").expect("path");
    let version = cairn_engine::replica::Version("3".into());
    let content = r.read(&path, &version).await.expect("read");
    let err = collect(content)
        .await
        .expect_err("an endless chunk was handed on")
        .to_string();
    assert!(
        err.contains(&format!("/api/v1/folders/backup/chunks/{id}"))
            && err.contains(&format!("larger than the {CHUNK_CAP} bytes")),
        "{err}"
    );
    let sent = fake.sent.load(Ordering::SeqCst);
    assert!(
        sent <= CHUNK_CAP + SOCKET_SLACK,
        "the client let the server send {sent} bytes"
    );
}

const COMMIT: &str = "/api/v1/folders/backup/commit";
const UPLOAD: &str = "/api/v1/folders/backup/chunks";

/// A fake that says no chunk is missing, takes uploads, and answers the first `lost` commits
/// with "missing chunks" (gc took them meanwhile), then accepts as version 7.
fn losing_chunks(lost: usize, id: cairn_model::ChunkId) -> FakeServer {
    let commits = AtomicU64::new(0);
    FakeServer::start(move |r| match r.path.as_str() {
        "/api/v1/folders/backup/chunks/missing" => Reply::Json(r#"{"missing":[]}"#.into()),
        UPLOAD => Reply::Json(r#"{"stored":1,"bytes":5}"#.into()),
        COMMIT if commits.fetch_add(1, Ordering::SeqCst) < lost as u64 => Reply::Json(format!(
            r#"{{"results":[{{"status":"missing_chunks","chunks":["{id}"]}}],"head":1}}"#
        )),
        COMMIT => Reply::Json(r#"{"results":[{"status":"accepted","seq":7}],"head":7}"#.into()),
        _ => Reply::Json("{}".into()),
    })
}

/// Chunks gc collected between the upload and the commit are sent again and the commit
/// retried, for three rounds; a fourth loss is an error for that file, never a silent skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sends_again_chunks_lost_before_the_commit() {
    use cairn_engine::replica::{NewEntry, Outcome, Replica, WriteOp};
    let data = bytes::Bytes::from_static(b"hello");
    let op = || WriteOp {
        path: cairn_model::RelPath::parse("h.txt").expect("path"),
        entry: NewEntry {
            kind: cairn_model::EntryKind::File,
            size: 5,
            mtime_ns: 0,
            mode: 0o644,
            hash: Some(cairn_model::ContentHash::of(&data)),
            target: None,
        },
        content: data.clone(),
        expect: None,
    };
    let id = cairn_model::ChunkId::of(&data);

    let fake = losing_chunks(2, id);
    let r = replica_of(&fake);
    let out = r.write_many(vec![op()]).await.expect("write_many");
    match out.into_iter().next().expect("result") {
        Ok(Outcome::Done(Some(e))) => assert_eq!(e.version.0, "7"),
        other => panic!("expected the third commit to land: {other:?}"),
    }
    assert_eq!(fake.requests(COMMIT), 3);
    assert_eq!(
        fake.requests(UPLOAD),
        2,
        "the lost chunk was not sent again"
    );
    assert_eq!(r.traffic().chunks, 2);

    let fake = losing_chunks(3, id);
    let r = replica_of(&fake);
    let out = r.write_many(vec![op()]).await.expect("write_many");
    let err = out
        .into_iter()
        .next()
        .expect("result")
        .expect_err("a file whose chunks kept vanishing was reported written");
    assert!(err.to_string().contains("h.txt"), "{err}");
    assert_eq!(fake.requests(COMMIT), 3, "three rounds, then the error");
}

/// A server from before chunk lists named their version: the replica learns the hash from the
/// path's history instead, and still checks the content against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reads_from_a_server_whose_chunk_lists_name_no_entry() {
    use cairn_engine::replica::{collect, Replica, Version};
    let real: &[u8] = b"real chunk bytes";
    let id = cairn_model::ChunkId::of(real);
    let list = format!(r#"{{"chunks":[{{"id":"{id}","len":16}}]}}"#);
    let history = |hash: cairn_model::ContentHash| {
        format!(
            r#"{{"versions":[{{"path":"big.bin","seq":3,"entry":{{"kind":"file","size":16,"mtime_ns":0,"mode":420,"hash":"{hash}"}},"device":"pc","committed_ns":0}}]}}"#
        )
    };
    for (hash, ok) in [
        (cairn_model::ContentHash::of(real), true),
        (cairn_model::ContentHash::of(b"another file"), false),
    ] {
        let (list, history) = (list.clone(), history(hash));
        let fake = FakeServer::start(move |r| match r.path.as_str() {
            CHUNKLIST => Reply::Json(list.clone()),
            "/api/v1/folders/backup/versions" => Reply::Json(history.clone()),
            _ => Reply::Json("real chunk bytes".into()),
        });
        let r = replica_of(&fake);
        let path = cairn_model::RelPath::parse("big.bin").expect("path");
        let content = r.read(&path, &Version("3".into())).await.expect("read");
        let got = collect(content).await;
        assert_eq!(got.is_ok(), ok, "{got:?}");
        if ok {
            assert_eq!(got.expect("content"), real);
        }
        assert_eq!(fake.requests("/versions"), 1);
    }
}
