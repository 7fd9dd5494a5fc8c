//! Test harness: a real `cairn server` on 127.0.0.1 with a temporary data folder, and clients
//! with their own `CAIRN_HOME`, both driven through the real binary. Any crate's tests can use
//! it; the `cairn` binary must be built (the CLI's own integration tests build it first).

pub mod cloud;
pub mod fuse;
pub mod ldap;
pub mod netns;
pub mod postgres;
pub mod setup;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `cairn` binary under test: `CAIRN_TEST_BIN` when set, otherwise the one cargo built next
/// to the running test (`target/<profile>/cairn`, the test being in `target/<profile>/deps`).
pub fn bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CAIRN_TEST_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps");
        let found = profile_dir.join("cairn");
        assert!(
            found.exists(),
            "{} is missing: build it first (cargo build -p cairn) or set CAIRN_TEST_BIN",
            found.display()
        );
        found
    })
}

pub struct Server {
    pub data: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    pub log: Arc<Mutex<Vec<String>>>,
    envs: Vec<(String, String)>,
    /// Where its metadata and chunks are (`setup::place_envs`), for `server run` and every
    /// admin command alike.
    place: Vec<(String, String)>,
    /// Extra `server run` flags for the next `spawn` (`--token-ttl 1`, `--cert ...`).
    pub args: Vec<String>,
    /// The network namespace its commands run in (`netns::NetnsPair`), if not this one.
    pub netns: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(envs: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let mut s = Server {
            data,
            port: 0,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            place: setup::place_envs(),
            args: Vec::new(),
            netns: None,
            _dir: Some(dir),
        };
        s.spawn("127.0.0.1:0");
        // The server took the setup it was given (its data folder names the database).
        assert!(
            !setup::scale_out() || s.data.join("metadata-in-postgres").is_file(),
            "{} is not on PostgreSQL",
            s.data.display()
        );
        s.admin(
            &["user", "add", "alice", "--password-stdin"],
            Some("alice-pw"),
        );
        s.admin(&["folder", "add", "backup"], None);
        s.admin(
            &["folder", "grant", "backup", "alice", "--access", "rw"],
            None,
        );
        s
    }

    /// Starts a server on data folder `data` with `args` besides `--data` and `--listen`, and
    /// adds nobody (a second instance of a server that has its users already).
    pub fn start_bare(data: PathBuf, args: Vec<String>) -> Server {
        Self::started(data, Vec::new(), args)
    }

    /// Starts one instance of a server whose metadata and chunks are elsewhere, on data folder
    /// `data`, with `place` in the environment of `server run` and of every admin command
    /// (`CAIRN_METADATA`, `CAIRN_STORE`); adds nobody.
    pub fn instance(data: PathBuf, place: Vec<(String, String)>) -> Server {
        Self::started(data, place, Vec::new())
    }

    fn started(data: PathBuf, place: Vec<(String, String)>, args: Vec<String>) -> Server {
        let mut s = Server {
            data,
            port: 0,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
            envs: Vec::new(),
            place,
            args,
            netns: None,
            _dir: None,
        };
        s.spawn("127.0.0.1:0");
        s
    }

    /// Starts (or restarts) the server process on `listen`.
    pub fn spawn(&mut self, listen: &str) {
        let mut cmd = self.command();
        cmd.args(["server", "run", "--data"])
            .arg(&self.data)
            .args(["--listen", listen]);
        cmd.args(&self.args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on https://") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().expect("log").push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server did not start listening");
        self.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.child = Some(child);
    }

    /// Sets (`Some`) or removes (`None`) an environment variable of the next `spawn`.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.envs.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.envs.push((key.to_string(), v.to_string()));
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts on the same port, so saved connections keep working.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        self.spawn(&format!("127.0.0.1:{port}"));
    }

    /// `cairn server ARGS --data DATA`, asserting success.
    /// Adds server folder `name`, keeping `keep` versions a file, readable and writable by
    /// alice.
    pub fn alice_folder(&self, name: &str, keep: &str) {
        self.admin(&["folder", "add", name, "--keep-versions", keep], None);
        self.admin(&["folder", "grant", name, "alice", "--access", "rw"], None);
    }

    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.admin_raw(args, stdin);
        assert!(
            out.status.success(),
            "cairn server {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn admin_raw(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let (head, tail) = args.split_at(if matches!(args[0], "user" | "folder") {
            2
        } else {
            1
        });
        let mut full = vec!["server"];
        full.extend_from_slice(head);
        full.extend_from_slice(tail);
        run(
            self.command().args(&full).arg("--data").arg(&self.data),
            stdin,
        )
    }

    /// The `cairn` binary with this server's setup in its environment: for `cairn server ...`
    /// commands a test runs on the data folder itself.
    pub fn command(&self) -> Command {
        let mut cmd = netns::command_in(self.netns.as_deref(), bin());
        cmd.envs(self.place.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn fingerprint(&self) -> String {
        self.admin(&["fingerprint"], None).trim().to_string()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains(needle))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows the end of the server's log: a 500's cause is only there.
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            let tail = &log[log.len().saturating_sub(40)..];
            eprintln!("--- the server's log ends:\n{}", tail.join("\n"));
        }
    }
}

/// A raw HTTPS client for the API that accepts the test server's self-signed certificate.
pub fn http() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

pub fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{input}\n").as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait cairn")
}

/// A client computer: its own CAIRN_HOME and a folder of files to back up.
pub struct Client {
    pub home: PathBuf,
    pub root: PathBuf,
    /// The network namespace its commands run in (`netns::NetnsPair`), if not this one.
    pub netns: Option<String>,
    dir: tempfile::TempDir,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().join("home");
        let root = dir.path().join("docs");
        std::fs::create_dir_all(&root).expect("mkdir");
        Client {
            home,
            root,
            netns: None,
            dir,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn tmp(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, data: &[u8]) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    }

    pub fn cmd(&self) -> Command {
        let mut c = netns::command_in(self.netns.as_deref(), bin());
        c.env("CAIRN_HOME", &self.home)
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy");
        c.current_dir(self.dir.path());
        c
    }

    pub fn cairn(&self, args: &[&str]) -> Output {
        run(self.cmd().args(args), None)
    }

    pub fn cairn_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run(self.cmd().args(args), Some(stdin))
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure; returns stdout + stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "cairn {args:?} should have failed:\n{text}"
        );
        text
    }

    pub fn connect(&self, server: &Server, user: &str, password: &str) {
        let fp = server.fingerprint();
        let out = self.cairn_stdin(
            &[
                "connect",
                &server.url(),
                "--user",
                user,
                "--password-stdin",
                "--fingerprint",
                &fp,
                "--name",
                "srv",
            ],
            password,
        );
        assert!(
            out.status.success(),
            "connect failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Connects as alice and adds backup task `t` over the client's folder.
    pub fn backup_task(&self, server: &Server, extra: &[&str]) {
        self.connect(server, "alice", "alice-pw");
        self.add_backup_task(extra);
    }

    /// Adds backup task `t` over the client's folder on the saved connection `srv`.
    pub fn add_backup_task(&self, extra: &[&str]) {
        let mut args = vec!["--computer", "pc"];
        args.extend_from_slice(extra);
        self.add_backup_task_into("backup", &args);
    }

    /// Adds backup task `t` over the client's folder into the server folder `folder`, on the
    /// saved connection `srv`.
    pub fn add_backup_task_into(&self, folder: &str, extra: &[&str]) {
        let root = self.root.to_str().expect("utf-8").to_string();
        let mut args = vec![
            "backup",
            "add",
            "t",
            "--local",
            &root,
            "--connection",
            "srv",
            "--folder",
            folder,
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// `cairn ls t` as (kind, path relative to the root) pairs.
    pub fn ls(&self, extra: &[&str]) -> Vec<(String, String)> {
        let mut args = vec!["ls", "t"];
        args.extend_from_slice(extra);
        let root = format!("{}/", self.root.display());
        self.ok(&args)
            .lines()
            .filter_map(|l| {
                let kind = l.split_whitespace().next()?.to_string();
                let path = l.split(&root).nth(1)?.to_string();
                Some((kind, path))
            })
            .collect()
    }

    pub fn ls_paths(&self) -> Vec<String> {
        self.ls(&[]).into_iter().map(|(_, p)| p).collect()
    }
}

/// The number in "sent N bytes" of a run's summary.
pub fn sent_bytes(stdout: &str) -> u64 {
    stdout
        .split("sent ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'sent N bytes' in {stdout}"))
}

/// Deterministic incompressible bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Polls `f` until it is true; panics after `secs`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
