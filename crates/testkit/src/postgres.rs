//! A throwaway PostgreSQL cluster for tests: `initdb` into a temp folder, the server listening
//! on a unix socket in that folder and on 127.0.0.1 at a free port, with fsync off (nothing
//! here needs to survive a crash). [`shared`] gives one cluster per test process (each test
//! makes its own database in it); [`Postgres::start`] one of a test's own (to restart it).
//!
//! PostgreSQL refuses to run as root, and tests here run as root: then `initdb` and the server
//! run as the `postgres` system user (Debian's package makes it) through `setpriv`, in a folder
//! that user owns. A non-root developer runs them as themselves (docs/postgres-testing.md).
//!
//! The server runs under a small `sh` that stops it (fast shutdown) and removes the folder when
//! its standard input closes, so the cluster ends with the test process even when the handle
//! is a never-dropped static or the process is killed. It takes `restart` on that input too.
//!
//! Binaries: `$CAIRN_PG_BIN`, else `/usr/lib/postgresql/15/bin` (Debian's `postgresql`,
//! installed by `scripts/test-servers`). Missing binaries skip a test with a loud message,
//! except under CI (`CI` set), where they fail it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The cluster's superuser, also the owner of every test database.
pub const USER: &str = "cairn";

/// How long the server may take to accept connections: a bound on a hang, not a timing
/// expectation.
const READY_WITHIN: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("PostgreSQL: {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("PostgreSQL: {what} failed ({status}):\n{output}")]
    Failed {
        what: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("PostgreSQL: not ready after {READY_WITHIN:?}; its log ends:\n{log}")]
    NotReady { log: String },
    #[error("PostgreSQL: {0}")]
    Setup(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The folder of `initdb`, `postgres`, `pg_isready` and `psql`, if they are there.
pub fn bin_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CAIRN_PG_BIN").map_or_else(
        || PathBuf::from("/usr/lib/postgresql/15/bin"),
        PathBuf::from,
    );
    ["initdb", "postgres", "pg_isready", "psql"]
        .iter()
        .all(|p| dir.join(p).is_file())
        .then_some(dir)
}

/// True under CI, where a missing server is a failure rather than a skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The binaries' folder, or `None` (after saying so loudly) when they are missing outside CI.
///
/// # Panics
/// When they are missing under CI.
pub fn bin_dir_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(dir) = bin_dir() {
        return Some(dir);
    }
    let msg = "PostgreSQL 15 is not installed (no initdb/postgres/pg_isready/psql in \
               /usr/lib/postgresql/15/bin or $CAIRN_PG_BIN): run scripts/test-servers";
    assert!(!in_ci(), "{test}: {msg}");
    eprintln!("\n!!!! SKIPPED {test}: {msg} !!!!\n");
    None
}

/// One cluster for the whole test process, started on first use; `None` when the binaries
/// are missing outside CI (see [`bin_dir_or_skip`]).
///
/// # Panics
/// When the cluster does not start, or the binaries are missing under CI.
pub fn shared(test: &str) -> Option<&'static Postgres> {
    static SHARED: OnceLock<Mutex<Option<&'static Postgres>>> = OnceLock::new();
    bin_dir_or_skip(test)?;
    let mut slot = SHARED
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        let pg = Postgres::start().unwrap_or_else(|e| panic!("{test}: {e}"));
        *slot = Some(Box::leak(Box::new(pg)));
    }
    *slot
}

/// A running cluster; stopped and its folder removed on drop.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
    /// The supervising `sh` and its pipes: a line in asks for a restart, EOF stops it all.
    sup: Mutex<Supervisor>,
}

struct Supervisor {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

/// `uid` and `gid` of the `postgres` system user, from /etc/passwd.
fn postgres_user() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(io("reading /etc/passwd"))?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| {
            Error::Setup(
                "running as root, and there is no postgres user to run the server as \
                 (install Debian's postgresql package)"
                    .into(),
            )
        })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

fn random_password() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs the server as given in `$@`, restarts it on a `restart` line (answering `stopped` once
/// the old one is gone), and on EOF stops it and removes the folder `$1`.
const SUPERVISOR: &str = r#"
dir=$1; shift
trap '' INT
"$@" 2>>"$dir/log" </dev/null & pid=$!
while read -r line; do
    kill -INT "$pid"; wait "$pid"
    echo stopped
    "$@" 2>>"$dir/log" </dev/null & pid=$!
done
kill -INT "$pid" 2>/dev/null; wait "$pid"
rm -rf "$dir"
"#;

impl Postgres {
    /// Starts a cluster of its own (a few seconds: `initdb` is most of it).
    ///
    /// # Errors
    /// Missing binaries, or a step that failed (with its output or the server's log).
    pub fn start() -> Result<Postgres> {
        // Another process may take the free port before the server does: try a few times.
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::start_once() {
                Err(Error::NotReady { log }) if tries < 4 && log.contains("could not bind") => {}
                other => return other,
            }
        }
    }

    fn start_once() -> Result<Postgres> {
        let bin = bin_dir()
            .ok_or_else(|| Error::Setup("binaries missing (run scripts/test-servers)".into()))?;
        let dir = tempfile::Builder::new()
            .prefix("cairn-pg-")
            .tempdir()
            .map_err(io("creating a temp folder"))?;
        let owner = if is_root() {
            let (uid, gid) = postgres_user()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(io(format!(
                "giving {} to the postgres user",
                dir.path().display()
            )))?;
            Some((uid, gid))
        } else {
            None
        };
        let password = random_password();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, &password).map_err(io("writing the password file"))?;
        let pg = PgCommand { bin: &bin, owner };
        let initdb = pg
            .cmd("initdb")
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .map_err(io("running initdb"))?;
        if !initdb.status.success() {
            return Err(Error::Failed {
                what: "initdb".into(),
                status: initdb.status,
                output: String::from_utf8_lossy(&initdb.stderr).into_owned(),
            });
        }
        // From here the supervisor removes the folder.
        let dir = dir.keep();
        Self::spawn(&pg, &dir, free_port()?, &password)
    }

    fn spawn(pg: &PgCommand<'_>, dir: &Path, port: u16, password: &str) -> Result<Postgres> {
        let server = pg.argv("postgres", dir, port);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("sh")
            .arg(dir)
            .args(&server)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("starting the server"))?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Setup("the supervisor's pipes are missing".into()));
        };
        let started = Postgres {
            dir: dir.to_path_buf(),
            bin: pg.bin.to_path_buf(),
            port,
            password: password.to_string(),
            sup: Mutex::new(Supervisor {
                child,
                input: Some(input),
                output: BufReader::new(output),
            }),
        };
        // On failure, dropping it stops what started and removes the folder.
        started.wait_ready(0)?;
        Ok(started)
    }

    /// Polls `pg_isready` until the server accepts connections, failing early when its log
    /// past byte `from` says it stopped.
    fn wait_ready(&self, from: usize) -> Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(&self.dir)
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-U", USER, "-d", "postgres"])
                .status()
                .map_err(io("running pg_isready"))?;
            if ready.success() {
                return Ok(());
            }
            let log = self.log();
            // A server that could not start says so as it exits (a probe's own FATAL lines,
            // "starting up", are no such sign).
            let gave_up = log
                .get(from..)
                .is_some_and(|l| l.contains("database system is shut down"));
            if gave_up || Instant::now() > deadline {
                return Err(Error::NotReady {
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The folder holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// [`USER`]'s password, which TCP connections need (the socket trusts the local user).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A `key=value` address of database `db` over the unix socket.
    pub fn socket_url(&self, db: &str) -> String {
        format!(
            "host={} port={} user={USER} dbname={db}",
            self.dir.display(),
            self.port
        )
    }

    /// A `postgres://` address of database `db` over TCP with `password`.
    pub fn tcp_url(&self, db: &str, password: &str) -> String {
        format!("postgres://{USER}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` in database `db` through `psql` (over the socket).
    ///
    /// # Errors
    /// When psql fails; the error holds its output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .arg("-X")
            .arg("-q")
            .arg("-A")
            .arg("-t")
            .args(["-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", USER, "-d", db, "-c", sql])
            .output()
            .map_err(io("running psql"))?;
        if !out.status.success() {
            return Err(Error::Failed {
                what: format!("psql -c {sql:?}"),
                status: out.status,
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Creates a database named `name` (letters, digits and `_`), dropping one of that name
    /// first, and returns its socket address.
    ///
    /// # Errors
    /// As [`Self::psql`].
    pub fn create_database(&self, name: &str) -> Result<String> {
        if !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(Error::Setup(format!(
                "{name:?} is not a plain database name"
            )));
        }
        self.psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"))?;
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.socket_url(name))
    }

    /// Stops the server (fast shutdown: sessions are cut) and starts it again on the same
    /// socket and port, returning once it accepts connections.
    ///
    /// # Errors
    /// When the supervisor is gone or the server does not come back.
    pub fn restart(&self) -> Result<()> {
        {
            let mut sup = self.sup.lock().unwrap_or_else(|p| p.into_inner());
            let input = sup
                .input
                .as_mut()
                .ok_or_else(|| Error::Setup("the server was stopped".into()))?;
            input
                .write_all(b"restart\n")
                .and_then(|()| input.flush())
                .map_err(io("asking for a restart"))?;
            let mut line = String::new();
            sup.output
                .read_line(&mut line)
                .map_err(io("waiting for the server to stop"))?;
            if line.trim() != "stopped" {
                return Err(Error::Setup("the supervisor ended during a restart".into()));
            }
        }
        // The old server's goodbyes (FATAL for each session it cut) are not the new one's.
        self.wait_ready(self.log().len())
    }

    /// Ends the supervisor's input (it stops the server and removes the folder) and waits.
    fn stop(&self) {
        let mut sup = self.sup.lock().unwrap_or_else(|p| p.into_inner());
        drop(sup.input.take());
        let _ = sup.child.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds the commands of one cluster, as the `postgres` user when running as root.
struct PgCommand<'a> {
    bin: &'a Path,
    owner: Option<(u32, u32)>,
}

impl PgCommand<'_> {
    /// The argument vector of `program` (prefixed to drop root when needed).
    fn prefix(&self, program: &str) -> Vec<String> {
        let exe = self.bin.join(program).display().to_string();
        match self.owner {
            Some((uid, gid)) => vec![
                "setpriv".into(),
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
                exe,
            ],
            None => vec![exe],
        }
    }

    fn cmd(&self, program: &str) -> Command {
        let argv = self.prefix(program);
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    }

    /// The server's command line: socket in `dir`, TCP on 127.0.0.1:`port`, no fsync.
    fn argv(&self, program: &str, dir: &Path, port: u16) -> Vec<String> {
        let mut argv = self.prefix(program);
        argv.extend([
            "-D".into(),
            dir.join("data").display().to_string(),
            "-k".into(),
            dir.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            "fsync=off".into(),
            "-c".into(),
            "synchronous_commit=off".into(),
            "-c".into(),
            "full_page_writes=off".into(),
        ]);
        argv
    }
}
