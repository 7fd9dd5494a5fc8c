//! A throwaway OpenLDAP directory for tests of directory logins: Debian's `slapd` on
//! 127.0.0.1, plain LDAP (for StartTLS) on one free port and LDAPS on another, with a
//! certificate of its own test CA, and the tree of [`TREE`] loaded by `slapadd`.
//!
//! slapd runs in the foreground under a small `sh` that stops it and removes its folder when
//! its standard input closes, so the directory ends with the test process even when that is
//! killed (as `postgres.rs` does). Root may run slapd; nothing here needs another user.
//!
//! Binaries: `$CAIRN_SLAPD`, else `/usr/sbin/slapd` and `/usr/sbin/slapadd`, and `ldapmodify`
//! (Debian's `slapd` and `ldap-utils`, installed by `scripts/test-servers`). Missing
//! binaries skip a test with a loud message, except under CI, where they fail it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The base DN of the test tree.
pub const BASE_DN: &str = "dc=example,dc=com";
/// The NetBIOS-style domain of `EXAMPLE\user` logins.
pub const DOMAIN: &str = "EXAMPLE";
/// The directory's administrator, also the service account that searches for users.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const ADMIN_PASSWORD: &str = "directory-admin-pw";

/// The test tree. People (password `NAME-dir-pw`):
/// - `dana`: in `staff` (and `memberOf` says so, as Active Directory would);
/// - `erin`: in `readers` and `admins`;
/// - `frank`: in `staff`, disabled the Active Directory way (`userAccountControl` 514);
/// - `gail`: in `staff`, disabled by an attribute (`employeeType: disabled`);
/// - `alice` and `admin`: names that the test server's local accounts have too.
pub const TREE: &str = include_str!("ldap/tree.ldif");

/// How long slapd may take to accept connections: a bound on a hang, not a timing
/// expectation.
const READY_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("slapd: {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("slapd: {what} failed ({status}):\n{output}")]
    Failed {
        what: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("slapd: not ready after {READY_WITHIN:?}; its log ends:\n{log}")]
    NotReady { log: String },
    #[error("slapd: {0}")]
    Setup(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// slapd, if it is installed.
pub fn slapd_bin() -> Option<PathBuf> {
    let bin =
        std::env::var_os("CAIRN_SLAPD").map_or_else(|| "/usr/sbin/slapd".into(), PathBuf::from);
    let utils = ["/usr/sbin/slapadd", "/usr/bin/ldapmodify"];
    (bin.is_file() && utils.iter().all(|u| Path::new(u).is_file())).then_some(bin)
}

/// Starts a directory, or returns `None` (after saying so loudly) when slapd is missing
/// outside CI.
///
/// # Panics
/// When slapd is missing under CI, or does not start.
pub fn start_or_skip(test: &str) -> Option<Slapd> {
    if slapd_bin().is_none() {
        let msg = "slapd is not installed (no /usr/sbin/slapd, slapadd or ldapmodify): run \
                   scripts/test-servers";
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        assert!(!ci, "{test}: {msg}");
        eprintln!("\n!!!! SKIPPED {test}: {msg} !!!!\n");
        return None;
    }
    Some(Slapd::start().unwrap_or_else(|e| panic!("{test}: {e}")))
}

/// A running directory; stopped and its folder removed on drop.
pub struct Slapd {
    dir: PathBuf,
    ldap_port: u16,
    ldaps_port: u16,
    child: Child,
    input: Option<ChildStdin>,
}

/// Runs slapd as given in `$@` and, on EOF, stops it and removes the folder `$1`.
const SUPERVISOR: &str = r#"
dir=$1; shift
"$@" >>"$dir/log" 2>&1 </dev/null & pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null; wait "$pid"
rm -rf "$dir"
"#;

impl Slapd {
    /// Makes the certificates, loads the tree and starts slapd.
    ///
    /// # Errors
    /// A step that failed, with its output or slapd's log.
    pub fn start() -> Result<Slapd> {
        // Another process may take a free port before slapd does: try a few times.
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::start_once() {
                Err(Error::NotReady { log }) if tries < 4 && log.contains("bind") => {}
                other => return other,
            }
        }
    }

    fn start_once() -> Result<Slapd> {
        let bin = slapd_bin().ok_or_else(|| Error::Setup("slapd is not installed".into()))?;
        let dir = tempfile::Builder::new()
            .prefix("cairn-slapd-")
            .tempdir()
            .map_err(io("creating a temp folder"))?;
        let path = dir.path();
        write_certificates(path)?;
        std::fs::create_dir(path.join("db")).map_err(io("creating the database folder"))?;
        std::fs::write(path.join("slapd.conf"), config(path)).map_err(io("writing slapd.conf"))?;
        std::fs::write(path.join("tree.ldif"), TREE).map_err(io("writing the tree"))?;
        let loaded = Command::new("/usr/sbin/slapadd")
            .arg("-f")
            .arg(path.join("slapd.conf"))
            .arg("-l")
            .arg(path.join("tree.ldif"))
            .output()
            .map_err(io("running slapadd"))?;
        if !loaded.status.success() {
            return Err(Error::Failed {
                what: "slapadd".into(),
                status: loaded.status,
                output: String::from_utf8_lossy(&loaded.stderr).into_owned(),
            });
        }
        let (ldap_port, ldaps_port) = (free_port()?, free_port()?);
        let urls = format!("ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/");
        // From here the supervisor removes the folder.
        let dir = dir.keep();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("sh")
            .arg(&dir)
            .arg(bin)
            .args(["-d", "0", "-h", &urls, "-f"])
            .arg(dir.join("slapd.conf"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("starting slapd"))?;
        let input = child.stdin.take();
        let started = Slapd {
            dir,
            ldap_port,
            ldaps_port,
            child,
            input,
        };
        started.wait_ready()?;
        Ok(started)
    }

    /// Waits until both ports accept connections, failing early when slapd's log says it
    /// gave up.
    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let open = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if open(self.ldap_port) && open(self.ldaps_port) {
                return Ok(());
            }
            let log = self.log();
            if log.contains("slapd stopped") || log.contains("failed") || Instant::now() > deadline
            {
                return Err(Error::NotReady { log });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// `ldap://127.0.0.1:PORT`, for StartTLS.
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// The CA that signed the directory's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A CA that signed nothing the directory shows (PEM).
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }

    /// Applies `ldif` (changes) as the directory's administrator, over the plain port on
    /// loopback (only cairn is held to TLS here).
    ///
    /// # Errors
    /// When ldapmodify fails; the error holds its output.
    pub fn modify(&self, ldif: &str) -> Result<()> {
        let mut child = Command::new("/usr/bin/ldapmodify")
            .args([
                "-x",
                "-H",
                &self.ldap_url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("running ldapmodify"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(ldif.as_bytes())
                .map_err(io("writing to ldapmodify"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(io("waiting for ldapmodify"))?;
        if !out.status.success() {
            return Err(Error::Failed {
                what: "ldapmodify".into(),
                status: out.status,
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // EOF tells the supervisor to stop slapd and remove the folder.
        drop(self.input.take());
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

/// slapd.conf for a directory in `dir`: the schemas the tree needs (Microsoft's user schema
/// for `userAccountControl`, `sAMAccountName` and `memberOf`), TLS, one database.
fn config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/msuser.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
TLSCertificateFile {d}/cert.pem
TLSCertificateKeyFile {d}/key.pem
database mdb
maxsize 10485760
suffix \"{BASE_DN}\"
rootdn \"{ADMIN_DN}\"
rootpw {ADMIN_PASSWORD}
directory {d}/db
access to attrs=userPassword by anonymous auth by self write by * none
access to * by * read
"
    )
}

/// A test CA, the directory's certificate (127.0.0.1 and localhost) signed by it, and a
/// second CA that signed nothing.
fn write_certificates(dir: &Path) -> Result<()> {
    let tls = |e: rcgen::Error| Error::Setup(format!("making a test certificate: {e}"));
    let (ca, ca_key) = make_ca("cairn test directory CA").map_err(tls)?;
    let (other, _) = make_ca("cairn test unrelated CA").map_err(tls)?;
    let key = rcgen::KeyPair::generate().map_err(tls)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(tls)?;
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(tls)?;
    let files = [
        ("ca.pem", ca.pem()),
        ("other-ca.pem", other.pem()),
        ("cert.pem", cert.pem()),
        ("key.pem", key.serialize_pem()),
    ];
    for (name, pem) in files {
        std::fs::write(dir.join(name), pem).map_err(io(format!("writing {name}")))?;
    }
    Ok(())
}

fn make_ca(name: &str) -> Result<(rcgen::Certificate, rcgen::KeyPair), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    Ok((params.self_signed(&key)?, key))
}
