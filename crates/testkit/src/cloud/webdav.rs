//! WebDAV on wsgidav (served by cheroot): one user with a password over Basic authentication,
//! the dead-property store on (so user metadata is kept), files under its temp folder.

use std::process::Command;

use super::{free_port, http_answers, program, Error, Result, ServerProcess};

/// A running WebDAV server sharing one empty folder.
#[derive(Debug)]
pub struct WebdavServer {
    /// `http://127.0.0.1:PORT` (the share is the root).
    pub endpoint: String,
    pub user: String,
    pub password: String,
    /// The folder the share serves, to check what the server stored.
    pub root: std::path::PathBuf,
    pub process: ServerProcess,
}

pub fn start_wsgidav() -> Result<WebdavServer> {
    const NAME: &str = "wsgidav";
    let bin = program(NAME, "venv/bin/wsgidav")?;
    let port = free_port(NAME)?;
    let dir = tempfile::tempdir().map_err(|source| Error::Io {
        server: NAME,
        what: "creating its temp folder".into(),
        source,
    })?;
    let root = dir.path().join("share");
    let (user, password) = ("cairn", "cairn-dav-password");
    let config = config_json(port, &root, user, password);
    let config_path = dir.path().join("wsgidav.json");
    for result in [
        std::fs::create_dir(&root),
        std::fs::write(&config_path, config),
    ] {
        result.map_err(|source| Error::Io {
            server: NAME,
            what: "writing its share and config".into(),
            source,
        })?;
    }
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(&config_path);
    let mut process = ServerProcess::spawn(NAME, dir, &mut cmd)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    process.wait_ready(|| http_answers(&endpoint))?;
    Ok(WebdavServer {
        endpoint,
        user: user.into(),
        password: password.into(),
        root,
        process,
    })
}

/// wsgidav's configuration: Basic only (Digest would need the client to support it), no
/// directory browser, quiet logs.
fn config_json(port: u16, root: &std::path::Path, user: &str, password: &str) -> String {
    let root = root
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"{{
  "host": "127.0.0.1",
  "port": {port},
  "provider_mapping": {{ "/": "{root}" }},
  "http_authenticator": {{
    "domain_controller": null,
    "accept_basic": true,
    "accept_digest": false,
    "default_to_digest": false
  }},
  "simple_dc": {{ "user_mapping": {{ "*": {{ "{user}": {{ "password": "{password}" }} }} }} }},
  "property_manager": true,
  "lock_storage": true,
  "dir_browser": {{ "enable": false }},
  "verbose": 1
}}"#
    )
}

impl WebdavServer {
    /// A request on `path` (relative to the share), with this server's user and password.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        crate::http()
            .request(method, format!("{}/{path}", self.endpoint))
            .basic_auth(&self.user, Some(&self.password))
    }
}
