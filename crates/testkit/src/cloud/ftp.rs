//! FTP on pyftpdlib: one user with a password and write access, passive mode, files under its
//! temp folder.

use std::process::Command;

use super::{free_port, greets, program, Error, Result, ServerProcess};

/// A running FTP server sharing one empty folder.
#[derive(Debug)]
pub struct FtpServer {
    /// `ftp://127.0.0.1:PORT`: OpenDAL needs the scheme, or it tries FTPS.
    pub endpoint: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The folder the user sees as `/`.
    pub root: std::path::PathBuf,
    pub process: ServerProcess,
}

pub fn start_pyftpdlib() -> Result<FtpServer> {
    const NAME: &str = "pyftpdlib";
    // The module runs from the venv's python; the check is that the package is there.
    let python = program(NAME, "venv/bin/python")?;
    program(NAME, "venv/bin/ftpbench")?;
    let port = free_port(NAME)?;
    let dir = tempfile::tempdir().map_err(|source| Error::Io {
        server: NAME,
        what: "creating its temp folder".into(),
        source,
    })?;
    let root = dir.path().join("share");
    std::fs::create_dir(&root).map_err(|source| Error::Io {
        server: NAME,
        what: format!("creating {}", root.display()),
        source,
    })?;
    let (user, password) = ("cairn", "cairn-ftp-password");
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pyftpdlib",
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-w",
    ])
    .arg("-d")
    .arg(&root)
    .args(["-u", user, "-P", password]);
    let mut process = ServerProcess::spawn(NAME, dir, &mut cmd)?;
    process.wait_ready(|| greets(port, "220"))?;
    Ok(FtpServer {
        endpoint: format!("ftp://127.0.0.1:{port}"),
        port,
        user: user.into(),
        password: password.into(),
        root,
        process,
    })
}
