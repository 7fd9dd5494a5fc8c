//! The client of a cairn server: TLS trust (system roots, a CA file, or a pinned fingerprint),
//! proxies, login, and [`HttpRemote`], the engine's [`Remote`] over the HTTP API.
//!
//! A `Connection` logs in lazily and once more when its token expires; every error names the
//! request it is about and, for TLS failures, says the certificate may be self-signed or the
//! connection intercepted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cairn_engine::{Remote, Result as EngineResult};
use cairn_model::{ChunkId, DeviceId, RelPath, Seq};
use cairn_protocol::{
    frame, Change, ChangeResult, ChunkListResponse, ChunkSpan, CommitRequest, CommitResponse,
    DamagedResponse, ErrorBody, FolderInfo, JournalResponse, LoginRequest, LoginResponse,
    MissingRequest, MissingResponse, TreeResponse, UploadResponse, VersionInfo, VersionsResponse,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("TLS verification of {url} failed: the server's certificate may be self-signed, or the connection may be intercepted. Pin it with --fingerprint (the server prints it with `cairn server fingerprint`) or trust its CA with --ca ({detail})")]
    Tls { url: String, detail: String },
    #[error("cannot reach {url}: {detail}")]
    Network {
        url: String,
        detail: String,
        temporary: bool,
    },
    #[error("{url}: {message} (HTTP {status})")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// True when the same request may succeed later: the network failed, or the server
    /// answered 429, 502, 503 or 504 (too many attempts, restarting, overloaded, or asking to
    /// send again).
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Network { temporary, .. } => *temporary,
            Error::Status { status, .. } => matches!(status, 429 | 502..=504),
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the server's certificate is trusted.
#[derive(Clone, Debug)]
pub enum Trust {
    SystemRoots,
    CaFile(PathBuf),
    /// SHA-256 of the server's certificate (hex, colons and case ignored).
    Fingerprint(String),
}

#[derive(Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub user: String,
    pub password: String,
    pub trust: Trust,
    pub proxy: Option<String>,
    pub device: DeviceId,
    /// This computer's name, recorded with every version it commits.
    pub computer: String,
}

/// Shows everything but secrets: the password, and the credentials of a proxy URL.
impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("trust", &self.trust)
            .field("proxy", &self.proxy.as_deref().map(redact_url))
            .field("device", &self.device)
            .field("computer", &self.computer)
            .finish()
    }
}

/// `url` with any `user:password@` part replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn normalize_fingerprint(f: &str) -> String {
    f.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_lowercase()
}

/// Accepts exactly the certificate whose SHA-256 was pinned; signatures are still verified so
/// the peer must hold that certificate's key.
#[derive(Debug)]
struct PinnedVerifier {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        let got: String = got.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if got == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {got} is not the pinned one"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn tls_config(trust: &Trust) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup: {e}")))?;
    let mut config = match trust {
        Trust::Fingerprint(f) => {
            let fingerprint = normalize_fingerprint(f);
            if fingerprint.len() != 64 {
                return Err(Error::Config(format!(
                    "fingerprint {f:?} is not a SHA-256 (64 hex digits)"
                )));
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    fingerprint,
                    provider,
                }))
                .with_no_client_auth()
        }
        Trust::SystemRoots | Trust::CaFile(_) => {
            let mut roots = rustls::RootCertStore::empty();
            if let Trust::CaFile(path) = trust {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::Config(format!("reading CA file {}: {e}", path.display()))
                })?;
                for cert in rustls_pemfile::certs(&mut &pem[..]) {
                    let cert = cert.map_err(|e| {
                        Error::Config(format!("reading CA file {}: {e}", path.display()))
                    })?;
                    roots
                        .add(cert)
                        .map_err(|e| Error::Config(format!("CA file {}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(Error::Config(format!(
                        "CA file {} holds no certificate",
                        path.display()
                    )));
                }
            } else {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A logged-in (or ready to log in) session with one server.
pub struct Connection {
    http: reqwest::Client,
    base: String,
    opts: ConnectOptions,
    token: Mutex<Option<String>>,
    server_id: Mutex<Option<String>>,
    /// Set by a running agent: sent with journal polls so the server can tell two agents
    /// with the same device identity apart.
    instance: std::sync::OnceLock<String>,
}

fn describe_reqwest(url: &str, e: &reqwest::Error) -> Error {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    let mut tls = false;
    while let Some(s) = source {
        let text = s.to_string();
        if text.contains("certificate")
            || text.contains("UnknownIssuer")
            || text.contains("fingerprint")
        {
            tls = true;
        }
        detail = format!("{detail}: {text}");
        source = s.source();
    }
    if tls {
        Error::Tls {
            url: url.to_string(),
            detail,
        }
    } else {
        Error::Network {
            url: url.to_string(),
            detail,
            temporary: e.is_timeout() || e.is_connect() || e.is_request(),
        }
    }
}

impl Connection {
    /// # Errors
    /// A bad URL, proxy or trust setting.
    pub fn new(opts: ConnectOptions) -> Result<Self> {
        let base = opts.url.trim_end_matches('/').to_string();
        if !base.starts_with("https://") && !base.starts_with("http://") {
            return Err(Error::Config(format!(
                "server URL {base:?} must start with https://"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(&opts.trust)?)
            .connect_timeout(Duration::from_secs(20))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(p) = &opts.proxy {
            let proxy = reqwest::Proxy::all(p)
                .map_err(|e| Error::Config(format!("proxy {:?}: {e}", redact_url(p))))?;
            builder = builder.proxy(proxy);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Connection {
            http,
            base,
            opts,
            token: Mutex::new(None),
            server_id: Mutex::new(None),
            instance: std::sync::OnceLock::new(),
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// Logs in and keeps the token.
    ///
    /// # Errors
    /// Wrong credentials (HTTP 401), TLS and network failures.
    pub async fn login(&self) -> Result<LoginResponse> {
        let url = format!("{}/api/v1/login", self.base);
        let req = LoginRequest {
            user: self.opts.user.clone(),
            password: self.opts.password.clone(),
            device: Some(self.opts.device.clone()),
            computer: Some(self.opts.computer.clone())
                .filter(|c| cairn_protocol::is_valid_computer_name(c)),
        };
        let mut waits = 0;
        let resp = loop {
            let resp = self
                .http
                .post(&url)
                .json(&req)
                .send()
                .await
                .map_err(|e| describe_reqwest(&url, &e))?;
            match retry_after(&resp) {
                Some(wait) if waits < MAX_RETRY_AFTER_WAITS => {
                    waits += 1;
                    tokio::time::sleep(wait).await;
                }
                _ => break resp,
            }
        };
        let login: LoginResponse = decode(&url, resp).await?;
        *self.token.lock().await = Some(login.token.clone());
        *self.server_id.lock().await = Some(login.server_id.clone());
        Ok(login)
    }

    async fn token(&self) -> Result<String> {
        if let Some(t) = self.token.lock().await.clone() {
            return Ok(t);
        }
        Ok(self.login().await?.token)
    }

    /// Sends a request built by `make`, logging in again once if the token was refused.
    async fn send(
        &self,
        url: &str,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut retried = false;
        let mut waits = 0;
        loop {
            let token = self.token().await?;
            let mut req = make(&self.http).bearer_auth(&token);
            if let Some(i) = self.instance.get() {
                req = req.header("x-cairn-instance", i);
            }
            let resp = req.send().await.map_err(|e| describe_reqwest(url, &e))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && !retried {
                // The token expired (or the server's key changed): log in once more.
                retried = true;
                *self.token.lock().await = None;
                continue;
            }
            match retry_after(&resp) {
                Some(wait) if waits < MAX_RETRY_AFTER_WAITS => {
                    waits += 1;
                    tokio::time::sleep(wait).await;
                }
                _ => return Ok(resp),
            }
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let resp = self.send(&url, |c| c.get(&url).query(query)).await?;
        decode(&url, resp).await
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let resp = self.send(&url, |c| c.post(&url).json(body)).await?;
        decode(&url, resp).await
    }

    /// Announces a running agent (`instance` is random per process); refused with HTTP 409
    /// when another live agent has this device identity.
    pub async fn claim_agent(&self, instance: &str) -> Result<()> {
        let _ = self.instance.set(instance.to_string());
        let _: serde_json::Value = self
            .post_json(
                "/api/v1/agent",
                &serde_json::json!({ "instance": instance }),
            )
            .await?;
        Ok(())
    }

    pub async fn folders(&self) -> Result<Vec<FolderInfo>> {
        self.get_json("/api/v1/folders", &[]).await
    }

    pub fn remote(self: &Arc<Self>, folder: &str) -> HttpRemote {
        HttpRemote {
            conn: self.clone(),
            folder: folder.to_string(),
        }
    }
}

/// How many times one request waits out a 429 before its error is returned (then it is a
/// temporary error, which the engine retries on its own schedule).
const MAX_RETRY_AFTER_WAITS: u32 = 5;

/// The wait a 429 answer asks for (Retry-After in seconds; 1 s if absent), at most a minute.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    if resp.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let secs = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Some(Duration::from_secs(secs.clamp(1, 60)))
}

async fn decode<T: DeserializeOwned>(url: &str, resp: reqwest::Response) -> Result<T> {
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| describe_reqwest(url, &e))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(300).collect());
        return Err(Error::Status {
            url: url.to_string(),
            status: status.as_u16(),
            message,
        });
    }
    serde_json::from_slice(&body).map_err(|e| Error::Status {
        url: url.to_string(),
        status: status.as_u16(),
        message: format!("unreadable answer: {e}"),
    })
}

/// A folder on a cairn server, as the engine's [`Remote`].
pub struct HttpRemote {
    conn: Arc<Connection>,
    folder: String,
}

fn remote_err(e: Error) -> cairn_engine::Error {
    let temporary = e.is_temporary();
    cairn_engine::Error::Remote {
        message: e.to_string(),
        temporary,
    }
}

impl HttpRemote {
    /// One commit request; the server answers one result per change.
    async fn commit_request(&self, changes: &[Change]) -> EngineResult<Vec<ChangeResult>> {
        let r: CommitResponse = self
            .conn
            .post_json(
                &self.folder_path("commit"),
                &CommitRequest {
                    changes: changes.to_vec(),
                },
            )
            .await
            .map_err(remote_err)?;
        if r.results.len() != changes.len() {
            return Err(cairn_engine::Error::remote(format!(
                "{}: the server answered {} results for {} changes",
                self.describe(),
                r.results.len(),
                changes.len()
            )));
        }
        Ok(r.results)
    }

    /// One upload request of `chunks` as frames.
    async fn upload_request(&self, chunks: &[(ChunkId, Bytes)]) -> EngineResult<u64> {
        let total: usize = chunks
            .iter()
            .map(|(_, d)| d.len() + frame::HEADER_LEN)
            .sum();
        let mut body = BytesMut::with_capacity(total);
        for (id, data) in chunks {
            body.extend_from_slice(&frame::encode_header(id, data.len() as u32));
            body.extend_from_slice(data);
        }
        let body = body.freeze();
        let url = format!("{}{}", self.conn.base, self.folder_path("chunks"));
        let resp = self
            .conn
            .send(&url, |c| {
                c.post(&url)
                    .header("content-type", "application/octet-stream")
                    .body(body.clone())
            })
            .await
            .map_err(remote_err)?;
        let _: UploadResponse = decode(&url, resp).await.map_err(remote_err)?;
        Ok(total as u64)
    }

    fn folder_path(&self, what: &str) -> String {
        format!("/api/v1/folders/{}/{what}", self.folder)
    }

    /// The server's identity as seen at the last login.
    pub async fn server_id(&self) -> Option<String> {
        self.conn.server_id.lock().await.clone()
    }
}

#[async_trait]
impl Remote for HttpRemote {
    fn describe(&self) -> String {
        format!("{}/{}", self.conn.base, self.folder)
    }

    async fn tree(
        &self,
        prefix: &RelPath,
        at_ns: Option<i64>,
        deleted: bool,
    ) -> EngineResult<Vec<VersionInfo>> {
        let mut q = vec![
            ("prefix", prefix.as_str().to_string()),
            ("deleted", deleted.to_string()),
        ];
        if let Some(at) = at_ns {
            q.push(("at", at.to_string()));
        }
        let t: TreeResponse = self
            .conn
            .get_json(&self.folder_path("tree"), &q)
            .await
            .map_err(remote_err)?;
        Ok(t.entries)
    }

    async fn missing(&self, ids: &[ChunkId]) -> EngineResult<Vec<ChunkId>> {
        let mut missing = Vec::new();
        for part in ids.chunks(cairn_protocol::MAX_MISSING_IDS) {
            let r: MissingResponse = self
                .conn
                .post_json(
                    &self.folder_path("chunks/missing"),
                    &MissingRequest {
                        chunks: part.to_vec(),
                    },
                )
                .await
                .map_err(remote_err)?;
            missing.extend(r.missing);
        }
        Ok(missing)
    }

    async fn upload(&self, chunks: &[(ChunkId, Bytes)]) -> EngineResult<u64> {
        let mut sent = 0;
        // The server takes at most this many frames per request.
        for part in chunks.chunks(frame::MAX_FRAMES_PER_UPLOAD) {
            sent += self.upload_request(part).await?;
        }
        Ok(sent)
    }

    async fn commit(&self, changes: &[Change]) -> EngineResult<Vec<ChangeResult>> {
        let mut results = Vec::with_capacity(changes.len());
        for part in commit_parts(changes) {
            results.extend(self.commit_request(part).await?);
        }
        Ok(results)
    }

    async fn identity(&self) -> EngineResult<(String, Seq)> {
        let q = [("after", i64::MAX.to_string()), ("wait", "0".to_string())];
        let r: JournalResponse = self
            .conn
            .get_json(&self.folder_path("journal"), &q)
            .await
            .map_err(remote_err)?;
        Ok((r.server_id, r.head))
    }

    async fn journal(&self, after: Seq, wait_secs: u64) -> EngineResult<(Vec<VersionInfo>, Seq)> {
        let q = [
            ("after", after.0.to_string()),
            ("wait", wait_secs.to_string()),
        ];
        let r: JournalResponse = self
            .conn
            .get_json(&self.folder_path("journal"), &q)
            .await
            .map_err(remote_err)?;
        *self.conn.server_id.lock().await = Some(r.server_id);
        Ok((r.changes, r.head))
    }

    async fn versions(&self, path: &RelPath) -> EngineResult<Vec<VersionInfo>> {
        let r: VersionsResponse = self
            .conn
            .get_json(
                &self.folder_path("versions"),
                &[("path", path.as_str().to_string())],
            )
            .await
            .map_err(remote_err)?;
        Ok(r.versions)
    }

    async fn chunk_list(&self, path: &RelPath, seq: Seq) -> EngineResult<Vec<ChunkSpan>> {
        let r: ChunkListResponse = self
            .conn
            .get_json(
                &self.folder_path("chunklist"),
                &[
                    ("path", path.as_str().to_string()),
                    ("seq", seq.0.to_string()),
                ],
            )
            .await
            .map_err(remote_err)?;
        Ok(r.chunks)
    }

    async fn content(&self, path: &RelPath, seq: Seq) -> EngineResult<Bytes> {
        let url = format!("{}{}", self.conn.base, self.folder_path("content"));
        let q = [
            ("path", path.as_str().to_string()),
            ("seq", seq.0.to_string()),
        ];
        let resp = self
            .conn
            .send(&url, |c| c.get(&url).query(&q))
            .await
            .map_err(remote_err)?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| remote_err(describe_reqwest(&url, &e)))?;
        if !status.is_success() {
            let temporary = status.is_server_error() && status.as_u16() != 507;
            return Err(cairn_engine::Error::Remote {
                message: format!("{url} ({path}): {}", refusal(status, &body)),
                temporary,
            });
        }
        Ok(body)
    }

    async fn damaged(&self, prefix: &RelPath) -> EngineResult<Vec<RelPath>> {
        let r: DamagedResponse = self
            .conn
            .get_json(
                &self.folder_path("damaged"),
                &[("prefix", prefix.as_str().to_string())],
            )
            .await
            .map_err(remote_err)?;
        Ok(r.paths)
    }

    async fn chunk(&self, id: &ChunkId) -> EngineResult<Bytes> {
        let url = format!(
            "{}{}",
            self.conn.base,
            self.folder_path(&format!("chunks/{id}"))
        );
        let resp = self
            .conn
            .send(&url, |c| c.get(&url))
            .await
            .map_err(remote_err)?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| remote_err(describe_reqwest(&url, &e)))?;
        if !status.is_success() {
            return Err(cairn_engine::Error::remote(format!(
                "{url}: {}",
                refusal(status, &body)
            )));
        }
        Ok(body)
    }
}

/// `changes` cut into runs that each fit the server's limits on changes and chunk references
/// per commit (a run is one transaction on the server).
fn commit_parts(changes: &[Change]) -> Vec<&[Change]> {
    let mut parts = Vec::new();
    let (mut start, mut refs) = (0, 0);
    for (i, c) in changes.iter().enumerate() {
        let full = i - start >= cairn_protocol::MAX_COMMIT_CHANGES
            || refs + c.chunks.len() > cairn_protocol::MAX_COMMIT_CHUNKS;
        if full && i > start {
            parts.push(&changes[start..i]);
            start = i;
            refs = 0;
        }
        refs += c.chunks.len();
    }
    if start < changes.len() {
        parts.push(&changes[start..]);
    }
    parts
}

/// What a non-2xx answer says: the server's own message when it sent one, and the status.
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => format!(
            "{} (HTTP {status})",
            e.error.chars().take(1000).collect::<String>()
        ),
        Err(_) => format!("HTTP {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_model::{Entry, EntryKind};

    fn change(chunks: usize) -> Change {
        Change {
            path: RelPath::parse("f").expect("path"),
            base: None,
            entry: Entry {
                kind: EntryKind::File,
                size: 0,
                mtime_ns: 0,
                mode: 0o644,
                hash: None,
                target: None,
            },
            chunks: vec![
                ChunkSpan {
                    id: ChunkId::of(b"x"),
                    len: 1
                };
                chunks
            ],
            moved_from: None,
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let opts = ConnectOptions {
            url: "https://example.org".into(),
            user: "alice".into(),
            password: "hunter2".into(),
            trust: Trust::SystemRoots,
            proxy: Some("http://bob:proxy-secret@proxy:3128/".into()),
            device: DeviceId("d".into()),
            computer: "laptop".into(),
        };
        let shown = format!("{opts:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("proxy-secret"),
            "{shown}"
        );
        assert!(shown.contains("proxy:3128"), "{shown}");
        assert_eq!(redact_url("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(
            redact_url("http://u:p@host:1/x@y"),
            "http://<redacted>@host:1/x@y"
        );
    }

    #[test]
    fn commits_are_cut_to_the_servers_limits() {
        let max = cairn_protocol::MAX_COMMIT_CHUNKS;
        let changes = vec![change(max - 10), change(20), change(5), change(max + 1)];
        let sizes: Vec<usize> = commit_parts(&changes).iter().map(|p| p.len()).collect();
        // A change over the limit on its own still goes (the server refuses it by name).
        assert_eq!(sizes, vec![1, 2, 1]);
        let many: Vec<Change> = (0..cairn_protocol::MAX_COMMIT_CHANGES + 1)
            .map(|_| change(0))
            .collect();
        let sizes: Vec<usize> = commit_parts(&many).iter().map(|p| p.len()).collect();
        assert_eq!(sizes, vec![cairn_protocol::MAX_COMMIT_CHANGES, 1]);
        assert!(commit_parts(&[]).is_empty());
    }
}
