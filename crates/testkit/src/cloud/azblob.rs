//! Azure Blob on azurite: the well-known development account, path-style URLs, Shared Key
//! signatures checked, one container created at start.

use std::process::Command;

use super::sign::{uri_encode_path, SharedKey, UtcTime};
use super::{free_port, http_answers, program, Result, ServerProcess};

/// Azurite's fixed development account and key (published in Azure's documentation).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running azurite blob service with one empty container.
#[derive(Debug)]
pub struct AzblobServer {
    /// `http://127.0.0.1:PORT/devstoreaccount1` (the account is part of the path).
    pub endpoint: String,
    pub container: String,
    pub account_name: String,
    pub account_key: String,
    pub process: ServerProcess,
}

pub fn start_azurite() -> Result<AzblobServer> {
    const NAME: &str = "azurite";
    let bin = program(NAME, "node/node_modules/.bin/azurite-blob")?;
    let port = free_port(NAME)?;
    let dir = tempfile::tempdir().map_err(|source| super::Error::Io {
        server: NAME,
        what: "creating its temp folder".into(),
        source,
    })?;
    let mut cmd = Command::new(bin);
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(dir.path())
        // Clients newer than the emulator send API versions it does not know yet.
        .args(["--skipApiVersionCheck", "--disableTelemetry"]);
    let mut process = ServerProcess::spawn(NAME, dir, &mut cmd)?;
    let endpoint = format!("http://127.0.0.1:{port}/{DEV_ACCOUNT}");
    process.wait_ready(|| http_answers(&endpoint))?;
    let az = AzblobServer {
        endpoint,
        container: "cairn-test".into(),
        account_name: DEV_ACCOUNT.into(),
        account_key: DEV_KEY.into(),
        process,
    };
    let answer = az
        .request(
            reqwest::Method::PUT,
            "",
            &[("restype", "container")],
            &[],
            Vec::new(),
        )
        .and_then(|r| r.send().map_err(|e| e.to_string()))
        .map_err(|e| az.process.setup_error(format!("creating container: {e}")))?;
    if !answer.status().is_success() {
        let status = answer.status();
        let body = answer.text().unwrap_or_default();
        return Err(az
            .process
            .setup_error(format!("creating container: {status}: {body}")));
    }
    Ok(az)
}

impl AzblobServer {
    pub fn shared_key(&self) -> SharedKey {
        SharedKey {
            account: self.account_name.clone(),
            key: self.account_key.clone(),
        }
    }

    /// A request on blob `name` in the container (the container itself when empty), with the
    /// query pairs and `x-ms-*` headers given, signed with the account key.
    ///
    /// # Errors
    /// The account key is not base64.
    pub fn request(
        &self,
        method: reqwest::Method,
        name: &str,
        query: &[(&str, &str)],
        ms_headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<reqwest::blocking::RequestBuilder, String> {
        self.request_as(&self.shared_key(), method, name, query, ms_headers, body)
    }

    /// Like [`AzblobServer::request`], signed with other credentials.
    ///
    /// # Errors
    /// The key is not base64.
    pub fn request_as(
        &self,
        creds: &SharedKey,
        method: reqwest::Method,
        name: &str,
        query: &[(&str, &str)],
        ms_headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<reqwest::blocking::RequestBuilder, String> {
        let mut path = format!("/{}/{}", self.account_name, self.container);
        if !name.is_empty() {
            path = uri_encode_path(&format!("{path}/{name}"));
        }
        let headers = creds
            .headers(
                method.as_str(),
                &path,
                query,
                body.len(),
                ms_headers,
                UtcTime::now(),
            )
            .map_err(|e| format!("account key of {}: {e}", creds.account))?;
        let origin = self
            .endpoint
            .trim_end_matches(&format!("/{}", self.account_name));
        let mut req = crate::http()
            .request(method, format!("{origin}{path}"))
            .query(query);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        Ok(req.body(body))
    }
}
