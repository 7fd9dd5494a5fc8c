//! Which setup the tests' servers run on. By default the embedded one (SQLite and chunks in
//! the data folder). With `CAIRN_TEST_SETUP=postgres-s3`, the scale-out one: each [`Server`]
//! gets its own database in the test process's PostgreSQL cluster and its own prefix in one
//! bucket of one moto S3 server, passed to `server run` and to every admin command through
//! `CAIRN_METADATA`, `CAIRN_STORE` and the S3 keys, so a suite's meaning is unchanged and
//! only the engines under it differ (docs/postgres-testing.md).
//!
//! [`Server`]: crate::Server

use std::net::{TcpListener, TcpStream};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::cloud::tools_dir;

/// The variable that picks the setup, and its one non-default value.
pub const VAR: &str = "CAIRN_TEST_SETUP";
pub const SCALE_OUT: &str = "postgres-s3";

/// True when this process's servers run on PostgreSQL and S3.
pub fn scale_out() -> bool {
    match std::env::var(VAR) {
        Ok(v) if v == SCALE_OUT => true,
        Ok(v) if v.is_empty() || v == "embedded" => false,
        Ok(v) => panic!("{VAR}={v:?}: expected {SCALE_OUT:?} or \"embedded\""),
        Err(_) => false,
    }
}

/// The environment that puts one new server on the chosen setup: nothing for the embedded
/// one; a fresh database and bucket prefix for the scale-out one.
///
/// # Panics
/// When PostgreSQL or moto is missing or does not start: a suite asked to run scaled out
/// must not quietly run embedded instead.
pub fn place_envs() -> Vec<(String, String)> {
    if !scale_out() {
        return Vec::new();
    }
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("server_{}_{n}", std::process::id());
    let cluster = crate::postgres::shared(&name)
        .unwrap_or_else(|| panic!("{VAR}={SCALE_OUT} needs PostgreSQL: run scripts/test-servers"));
    let url = cluster
        .create_database(&name)
        .unwrap_or_else(|e| panic!("{VAR}: {e}"));
    let s3 = shared_s3();
    vec![
        ("CAIRN_METADATA".into(), url),
        (
            "CAIRN_STORE".into(),
            format!(
                "s3://{}/{name}?endpoint={}&region=us-east-1",
                s3.bucket, s3.endpoint
            ),
        ),
        // Any key: this moto checks none.
        ("AWS_ACCESS_KEY_ID".into(), "cairn-test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "cairn-test-secret".into()),
    ]
}

/// Where the process's moto listens, and the bucket made in it.
struct SharedS3 {
    endpoint: String,
    bucket: &'static str,
    /// Its supervisor's standard input: when this process ends, for any reason, the pipe
    /// closes and the supervisor stops moto and removes its folder.
    _stdin: ChildStdin,
}

/// Runs `$@` (moto), and when its own standard input closes stops it and removes `$1`.
const SUPERVISOR: &str = r#"
dir=$1; shift
"$@" >"$dir.log" 2>&1 </dev/null & pid=$!
read -r _
kill "$pid"; wait "$pid"
rm -rf "$dir" "$dir.log"
"#;

/// One moto for the whole test process (each server has its own prefix in its bucket).
/// moto rather than s3rver: s3rver answers a one-byte range at offset 0 (`bytes=0-0`) with
/// the whole object, which a store reading a one-byte chunk from the start of a pack rightly
/// refuses. Without `INITIAL_NO_AUTH_ACTION_COUNT` moto accepts any key (the S3 tests of
/// `s3_store` check signatures against a moto of their own).
fn shared_s3() -> &'static SharedS3 {
    static SHARED: OnceLock<SharedS3> = OnceLock::new();
    SHARED.get_or_init(|| start_s3().unwrap_or_else(|e| panic!("{VAR}={SCALE_OUT}: moto: {e}")))
}

fn start_s3() -> Result<SharedS3, String> {
    let bin = tools_dir().join("venv/bin/moto_server");
    if !bin.is_file() {
        return Err(format!(
            "{} is missing: run scripts/test-servers",
            bin.display()
        ));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let dir = std::env::temp_dir().join(format!("cairn-moto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let bucket = "cairn-test";
    let mut child = Command::new("sh")
        .args(["-c", SUPERVISOR, "sh"])
        .arg(&dir)
        .arg(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let stdin = child.stdin.take().ok_or("no pipe to the supervisor")?;
    let ready_by = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > ready_by {
            return Err(format!("not listening on port {port} after 60 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let made = crate::http()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .map_err(|e| format!("creating bucket {bucket}: {e}"))?;
    if !made.status().is_success() {
        return Err(format!("creating bucket {bucket}: {}", made.status()));
    }
    Ok(SharedS3 {
        endpoint,
        bucket,
        _stdin: stdin,
    })
}
