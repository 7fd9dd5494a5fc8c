//! Real local cloud servers for tests: S3 (moto, s3rver), Azure Blob (azurite), Google Cloud
//! Storage (gcp-storage-emulator), WebDAV (wsgidav), FTP (pyftpdlib), SFTP (OpenSSH's sshd) and
//! OpenStack Swift (a one-node cluster with tempauth), each started on free 127.0.0.1 ports in
//! its own temp folder.
//!
//! Each `start_*` function returns a handle once the server answers and its bucket or container
//! exists; the handle holds what a client needs (endpoint, bucket, credentials) and kills the
//! server and removes its folder on drop. `scripts/test-servers` installs the servers into
//! [`tools_dir`]; a missing one is an [`Error::Missing`] naming that script, so a test fails
//! with the fix in its message rather than skipping. docs/cloud-testing.md has each server's
//! start time and quirks.
//!
//! The servers are driven over their own protocols with small signed requests ([`sign`]) rather
//! than through the product's cloud client, so a fault in that client cannot hide behind a
//! fixture built with it.

mod azblob;
mod ftp;
mod gcs;
mod s3;
mod sftp;
pub mod sign;
mod swift;
mod webdav;

pub use azblob::{start_azurite, AzblobServer};
pub use ftp::{start_pyftpdlib, FtpServer};
pub use gcs::{start_gcs_emulator, GcsServer};
pub use s3::{start_moto, start_s3rver, S3Server};
pub use sftp::{start_sshd, SftpServer};
pub use swift::{start_swift, SwiftServer};
pub use webdav::{start_wsgidav, WebdavServer};

use std::fs::File;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The script that installs every server this module starts.
pub const INSTALL_SCRIPT: &str = "scripts/test-servers";

/// How long a server may take to answer after it was started. Generous: azurite alone takes
/// 10-15 s on a busy 2-core machine. A bound on a hang, not a timing expectation.
const READY_WITHIN: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{server}: {program} is not installed (run {INSTALL_SCRIPT})")]
    Missing {
        server: &'static str,
        program: String,
    },
    #[error("{server}: {what}")]
    Io {
        server: &'static str,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{server}: exited before it was ready ({status}); its log ends:\n{log}")]
    Exited {
        server: &'static str,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("{server}: not ready after {READY_WITHIN:?}; its log ends:\n{log}")]
    NotReady { server: &'static str, log: String },
    #[error("{server}: {what}")]
    Setup { server: &'static str, what: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where `scripts/test-servers` installs: `$CAIRN_TEST_SERVERS`, else the user's cache folder
/// (`$XDG_CACHE_HOME` or `~/.cache`; the temp folder without a home) + `cairn/test-servers`.
/// Keep in step with the script.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_TEST_SERVERS") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("cairn").join("test-servers")
}

/// A program installed by the script: `rel` under [`tools_dir`] (`venv/bin/moto_server`), or an
/// absolute system path (`/usr/sbin/sshd`).
fn program(server: &'static str, rel: &str) -> Result<PathBuf> {
    let path = tools_dir().join(rel);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Missing {
            server,
            program: path.display().to_string(),
        })
    }
}

/// `N` distinct free ports on 127.0.0.1 (all held until all are chosen).
fn free_ports<const N: usize>(server: &'static str) -> Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in ports.iter_mut() {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
            server,
            what: "binding a free port".into(),
            source,
        })?;
        *port = listener
            .local_addr()
            .map_err(|source| Error::Io {
                server,
                what: "reading the free port".into(),
                source,
            })?
            .port();
        held.push(listener);
    }
    Ok(ports)
}

/// A free port on 127.0.0.1. The listener is dropped before the server binds it; another process
/// could take the port in between, and the server then fails to start with a clear log.
fn free_port(server: &'static str) -> Result<u16> {
    free_ports::<1>(server).map(|[port]| port)
}

/// A running server process with its temp folder and log; killed and removed on drop, with the
/// processes it needs beside it (Swift's storage servers, its memcached).
#[derive(Debug)]
pub struct ServerProcess {
    server: &'static str,
    companions: Vec<Child>,
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
    started: Instant,
    ready_after: Duration,
}

impl ServerProcess {
    /// Starts `cmd` with its output going to `<dir>/server.log`, in the folder `dir`.
    fn spawn(server: &'static str, dir: tempfile::TempDir, cmd: &mut Command) -> Result<Self> {
        let io_err = |what: &str| {
            let what = what.to_string();
            move |source| Error::Io {
                server,
                what,
                source,
            }
        };
        let log = dir.path().join("server.log");
        let out = File::create(&log).map_err(io_err("creating its log"))?;
        let err = out.try_clone().map_err(io_err("opening its log"))?;
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err(&format!("starting {:?}", cmd.get_program())))?;
        Ok(ServerProcess {
            server,
            companions: Vec::new(),
            child,
            log,
            dir,
            started: Instant::now(),
            ready_after: Duration::ZERO,
        })
    }

    /// Starts another process the server needs, in the same folder and log, stopped with it.
    fn spawn_companion(&mut self, cmd: &mut Command) -> Result<()> {
        let server = self.server;
        let what = format!("starting {:?}", cmd.get_program());
        let io_err = |source| Error::Io {
            server,
            what: what.clone(),
            source,
        };
        let out = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .map_err(io_err)?;
        let err = out.try_clone().map_err(io_err)?;
        let child = cmd
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err)?;
        self.companions.push(child);
        Ok(())
    }

    /// Polls `probe` until it is true, failing early if a process exits.
    fn wait_ready(&mut self, mut probe: impl FnMut() -> bool) -> Result<()> {
        loop {
            if probe() {
                self.ready_after = self.started.elapsed();
                return Ok(());
            }
            let exited = std::iter::once(&mut self.child)
                .chain(self.companions.iter_mut())
                .find_map(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(Error::Exited {
                    server: self.server,
                    status,
                    log: self.log_tail(),
                });
            }
            if self.started.elapsed() > READY_WITHIN {
                return Err(Error::NotReady {
                    server: self.server,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's temp folder (its data lives under it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How long the server took from spawn to its first good answer.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// The last lines of the server's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn setup_error(&self, what: impl std::fmt::Display) -> Error {
        Error::Setup {
            server: self.server,
            what: format!("{what}; its log ends:\n{}", self.log_tail()),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(self.companions.iter_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True when an HTTP server answers at `url` with any status.
fn http_answers(url: &str) -> bool {
    crate::http()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .is_ok()
}

/// True when a TCP server on `port` greets with a line starting with `greeting` (FTP's `220`,
/// SSH's `SSH-`).
fn greets(port: u16, greeting: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = vec![0u8; greeting.len()];
    stream.read_exact(&mut buf).is_ok() && buf == greeting.as_bytes()
}
