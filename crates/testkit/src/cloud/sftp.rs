//! SFTP on OpenSSH's sshd, run unprivileged-style: a free port, a host key and an authorized
//! client key made for this run, sshd's own `internal-sftp`, the current user.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{free_port, greets, Error, Result, ServerProcess};

const NAME: &str = "sshd";
const SSHD: &str = "/usr/sbin/sshd";
const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";

/// A running sshd that accepts one key for the current user.
#[derive(Debug)]
pub struct SftpServer {
    /// `ssh://USER@127.0.0.1:PORT`, as OpenDAL's sftp service takes it.
    pub endpoint: String,
    pub port: u16,
    pub user: String,
    /// The client's private key (no passphrase).
    pub key: PathBuf,
    /// A known_hosts file holding this server's host key under `[127.0.0.1]:PORT`.
    pub known_hosts: PathBuf,
    /// An empty folder for the test's files; give it as an absolute root.
    pub root: PathBuf,
    pub process: ServerProcess,
}

pub fn start_sshd() -> Result<SftpServer> {
    for bin in [SSHD, SSH_KEYGEN] {
        if !Path::new(bin).is_file() {
            return Err(Error::Missing {
                server: NAME,
                program: bin.into(),
            });
        }
    }
    let port = free_port(NAME)?;
    let dir = tempfile::tempdir().map_err(|e| io(e, "creating its temp folder"))?;
    let d = dir.path();
    let user = current_user()?;
    keygen(&d.join("host_key"))?;
    keygen(&d.join("client_key"))?;
    let client_pub = read(&d.join("client_key.pub"))?;
    let host_pub = read(&d.join("host_key.pub"))?;
    let known_hosts = d.join("known_hosts");
    let root = d.join("files");
    let host_line = host_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    write(&d.join("authorized_keys"), &client_pub)?;
    write(&known_hosts, &format!("[127.0.0.1]:{port} {host_line}\n"))?;
    std::fs::create_dir(&root).map_err(|e| io(e, "creating its files folder"))?;
    write(&d.join("sshd_config"), &config(d, port, &user))?;
    privsep_dir()?;
    let mut cmd = Command::new(SSHD);
    // -D: stay in the foreground (the handle owns the process); -e: log to its stderr.
    cmd.args(["-D", "-e", "-f"]).arg(d.join("sshd_config"));
    let mut process = ServerProcess::spawn(NAME, dir, &mut cmd)?;
    process.wait_ready(|| greets(port, "SSH-"))?;
    let d = process.dir().to_path_buf();
    Ok(SftpServer {
        endpoint: format!("ssh://{user}@127.0.0.1:{port}"),
        port,
        user,
        key: d.join("client_key"),
        known_hosts,
        root,
        process,
    })
}

/// Keys only, for the current user only; `StrictModes no` because temp folders are not laid out
/// as a home. MaxStartups keeps sshd's default (10 unauthenticated connections) on purpose:
/// real servers have it, and a client must cope.
fn config(d: &Path, port: u16, user: &str) -> String {
    let d = d.display();
    format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {d}/host_key\n\
         PidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         StrictModes no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         AllowUsers {user}\n\
         UsePAM no\n\
         Subsystem sftp internal-sftp\n\
         LogLevel INFO\n"
    )
}

/// sshd started by root insists on its privilege-separation folder existing.
fn privsep_dir() -> Result<()> {
    let dir = Path::new("/run/sshd");
    if current_uid()? == "0" && !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|e| io(e, "creating /run/sshd"))?;
    }
    Ok(())
}

fn keygen(path: &Path) -> Result<()> {
    let out = Command::new(SSH_KEYGEN)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "cairn-test", "-f"])
        .arg(path)
        .output()
        .map_err(|e| io(e, "running ssh-keygen"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Setup {
            server: NAME,
            what: format!(
                "ssh-keygen for {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

pub(super) fn current_user() -> Result<String> {
    id(&["-un"])
}

fn current_uid() -> Result<String> {
    id(&["-u"])
}

fn id(args: &[&str]) -> Result<String> {
    let out = Command::new("id")
        .args(args)
        .output()
        .map_err(|e| io(e, "running id"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !text.is_empty() {
        Ok(text)
    } else {
        Err(Error::Setup {
            server: NAME,
            what: format!("id {args:?} failed"),
        })
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| io(e, &format!("reading {}", path.display())))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| io(e, &format!("writing {}", path.display())))
}

fn io(source: std::io::Error, what: &str) -> Error {
    Error::Io {
        server: NAME,
        what: what.into(),
        source,
    }
}
