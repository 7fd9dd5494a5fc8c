//! Every cloud service the tests can run here, as `cairn cloud connect` takes it: the local
//! server started (`cairn_testkit::cloud`), the command's arguments and secrets, and the
//! server's own folder where it has one. Shared by the task checks (`cloud_tasks`) and the
//! fault runs on file-like services (`cloud_faults_files`).

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::harness::cloud::{self, FtpServer, SftpServer};
use crate::harness::Client;

/// One service with its server running (stopped when the value is dropped).
pub(crate) struct Remote {
    pub provider: &'static str,
    /// `cloud connect NAME` arguments after the name.
    pub args: Vec<String>,
    /// The secrets, one a line, in the order of the `--secret` arguments.
    pub stdin: String,
    /// The folder the service keeps its files in, where it has one (fs, SFTP, FTP, WebDAV).
    pub share: Option<PathBuf>,
    /// The server, its temp folders and known_hosts entries, kept alive for the test.
    _held: Vec<Box<dyn Any>>,
}

impl Remote {
    /// Keeps `thing` alive as long as the remote.
    pub(crate) fn hold(mut self, thing: impl Any) -> Self {
        self._held.push(Box::new(thing));
        self
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn started<T>(server: cloud::Result<T>) -> T {
    server.unwrap_or_else(|e| panic!("{e}"))
}

fn remote(provider: &'static str, list: &[&str], stdin: String, share: Option<PathBuf>) -> Remote {
    Remote {
        provider,
        args: args(list),
        stdin,
        share,
        _held: Vec::new(),
    }
}

/// Starts the server of `provider` (s3, azblob, gcs, webdav, sftp, ftp, swift, fs).
pub(crate) fn start(provider: &str) -> Remote {
    match provider {
        "s3" => {
            let s3 = started(cloud::start_moto());
            let key = format!("access_key_id={}", s3.access_key_id);
            let r = remote(
                "s3",
                &[
                    "--provider",
                    "s3",
                    "--endpoint",
                    &s3.endpoint,
                    "--bucket",
                    &s3.bucket,
                    "--option",
                    &key,
                    "--secret",
                    "secret_access_key",
                ],
                format!("{}\n", s3.secret_access_key),
                None,
            );
            r.hold(s3)
        }
        "azblob" => {
            let az = started(cloud::start_azurite());
            let r = remote(
                "azblob",
                &[
                    "--provider",
                    "azblob",
                    "--endpoint",
                    &az.endpoint,
                    "--option",
                    &format!("container={}", az.container),
                    "--option",
                    &format!("account_name={}", az.account_name),
                    "--secret",
                    "account_key",
                ],
                format!("{}\n", az.account_key),
                None,
            );
            r.hold(az)
        }
        "gcs" => {
            let gcs = started(cloud::start_gcs_emulator());
            let r = remote(
                "gcs",
                &[
                    "--provider",
                    "gcs",
                    "--endpoint",
                    &gcs.endpoint,
                    "--bucket",
                    &gcs.bucket,
                    "--option",
                    "skip_signature=true",
                ],
                String::new(),
                None,
            );
            r.hold(gcs)
        }
        "webdav" => {
            let dav = started(cloud::start_wsgidav());
            let r = remote(
                "webdav",
                &[
                    "--provider",
                    "webdav",
                    "--endpoint",
                    &dav.endpoint,
                    "--option",
                    &format!("username={}", dav.user),
                    "--secret",
                    "password",
                ],
                format!("{}\n", dav.password),
                Some(dav.root.clone()),
            );
            r.hold(dav)
        }
        "swift" => {
            let swift = started(cloud::start_swift());
            let r = remote(
                "swift",
                &[
                    "--provider",
                    "swift",
                    "--endpoint",
                    &swift.endpoint,
                    "--option",
                    &format!("container={}", swift.container),
                    "--secret",
                    "token",
                ],
                format!("{}\n", swift.token),
                None,
            );
            r.hold(swift)
        }
        "sftp" => {
            let sshd = started(cloud::start_sshd());
            let port = sshd.port;
            sftp(&sshd, port).hold(sshd)
        }
        "ftp" => {
            let ftp = started(cloud::start_pyftpdlib());
            let port = ftp.port;
            ftp_at(&ftp, port).hold(ftp)
        }
        "fs" => {
            let dir = tempfile::tempdir().expect("tempdir");
            let share = dir.path().to_path_buf();
            fs(&share).hold(dir)
        }
        other => panic!("no test server for {other}"),
    }
}

/// `sshd` reached at `port` on 127.0.0.1 (its own, or a proxy's in front of it), its host
/// key pinned; the known_hosts entry for that port is removed when the remote is dropped.
pub(crate) fn sftp(sshd: &SftpServer, port: u16) -> Remote {
    let entry = crate::replica::KnownHostsEntry::clear(port);
    let fingerprint = crate::replica::fingerprint_in(&sshd.known_hosts);
    let endpoint = format!("ssh://{}@127.0.0.1:{port}", sshd.user);
    let r = remote(
        "sftp",
        &[
            "--provider",
            "sftp",
            "--endpoint",
            &endpoint,
            "--option",
            &format!("user={}", sshd.user),
            "--option",
            &format!("key={}", sshd.key.display()),
            "--option",
            &format!("root={}", sshd.root.display()),
            "--option",
            &format!("host_key={fingerprint}"),
        ],
        String::new(),
        Some(sshd.root.clone()),
    );
    r.hold(entry)
}

/// `ftp` reached at `port` on 127.0.0.1 (its own, or a proxy's in front of it).
pub(crate) fn ftp_at(ftp: &FtpServer, port: u16) -> Remote {
    remote(
        "ftp",
        &[
            "--provider",
            "ftp",
            "--endpoint",
            &format!("ftp://127.0.0.1:{port}"),
            "--option",
            &format!("user={}", ftp.user),
            "--secret",
            "password",
        ],
        format!("{}\n", ftp.password),
        Some(ftp.root.clone()),
    )
}

/// A folder of this machine as the remote (a mounted share).
pub(crate) fn fs(share: &Path) -> Remote {
    remote(
        "fs",
        &[
            "--provider",
            "fs",
            "--option",
            &format!("root={}", share.display()),
        ],
        String::new(),
        Some(share.to_path_buf()),
    )
}

/// `cloud connect NAME` on `c` for `remote`.
pub(crate) fn connect(c: &Client, remote: &Remote, name: &str) {
    let mut args = vec!["cloud", "connect", name];
    args.extend(remote.args.iter().map(String::as_str));
    let out = c.cairn_stdin(&args, &remote.stdin);
    assert!(
        out.status.success(),
        "{}: cloud connect: {}",
        remote.provider,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cloud add TASK` of `c`'s folder on connection `conn`, path `path`, computer `pc`;
/// `stdin` for a task's password.
pub(crate) fn add_task(
    c: &Client,
    task: &str,
    conn: &str,
    path: &str,
    extra: &[&str],
    stdin: &str,
) {
    let root = c.root.to_str().expect("utf-8").to_string();
    let mut args = vec![
        "cloud",
        "add",
        task,
        "--connection",
        conn,
        "--local",
        &root,
        "--remote",
        path,
        "--computer",
        "pc",
    ];
    args.extend_from_slice(extra);
    let out = c.cairn_stdin(&args, stdin);
    assert!(
        out.status.success(),
        "cloud add {task}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The files under `root` with their contents (a missing folder is empty), but for a task's
/// working folder `.cairn` at the top (a killed pass may leave a partial download there).
pub(crate) fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if dir == root && e.file_name() == ".cairn" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(data) = std::fs::read(&p) {
                let rel = p.strip_prefix(root).expect("inside").display().to_string();
                out.insert(rel, data);
            }
        }
    }
    out
}

/// The temporaries in a task's staging folder on a service with a folder of its own.
pub(crate) fn staged(share: &Path, task_path: &str) -> Vec<String> {
    let dir = share.join(task_path).join(".cairn").join("tmp");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
