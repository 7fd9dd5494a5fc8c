//! Google Cloud Storage on gcp-storage-emulator: in memory, no authentication (clients skip
//! signing), the bucket created by the emulator at start.

use std::process::Command;

use super::{free_port, program, Result, ServerProcess};

/// A running GCS emulator with one empty bucket.
#[derive(Debug)]
pub struct GcsServer {
    /// `http://127.0.0.1:PORT`, serving the JSON API (`/storage/v1/...`, `/upload/...`).
    pub endpoint: String,
    pub bucket: String,
    pub process: ServerProcess,
}

pub fn start_gcs_emulator() -> Result<GcsServer> {
    const NAME: &str = "gcp-storage-emulator";
    let bin = program(NAME, "venv/bin/gcp-storage-emulator")?;
    let port = free_port(NAME)?;
    let dir = tempfile::tempdir().map_err(|source| super::Error::Io {
        server: NAME,
        what: "creating its temp folder".into(),
        source,
    })?;
    let bucket = "cairn-test";
    let mut cmd = Command::new(bin);
    cmd.args(["start", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--in-memory", "--default-bucket", bucket]);
    let mut process = ServerProcess::spawn(NAME, dir, &mut cmd)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    // Ready once the bucket answers: the emulator creates it after it starts listening.
    let probe = format!("{endpoint}/storage/v1/b/{bucket}");
    process.wait_ready(|| {
        crate::http()
            .get(&probe)
            .send()
            .is_ok_and(|r| r.status().is_success())
    })?;
    Ok(GcsServer {
        endpoint,
        bucket: bucket.into(),
        process,
    })
}

impl GcsServer {
    /// A one-shot (media) upload of `name` with `body`; the emulator needs a content type.
    pub fn upload(&self, name: &str, body: Vec<u8>) -> reqwest::blocking::RequestBuilder {
        crate::http()
            .post(format!(
                "{}/upload/storage/v1/b/{}/o",
                self.endpoint, self.bucket
            ))
            .query(&[("uploadType", "media"), ("name", name)])
            .header("content-type", "application/octet-stream")
            .body(body)
    }

    /// A download of object `name`'s content.
    pub fn download(&self, name: &str) -> reqwest::blocking::RequestBuilder {
        let encoded: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        crate::http()
            .get(format!(
                "{}/storage/v1/b/{}/o/{encoded}",
                self.endpoint, self.bucket
            ))
            .query(&[("alt", "media")])
    }
}
