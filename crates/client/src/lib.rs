//! The client of a cairn server: TLS trust (system roots, a CA file, or a pinned fingerprint),
//! proxies, login, and [`HttpRemote`], the engine's [`Remote`] over the HTTP API.
//!
//! A `Connection` logs in lazily and once more when its token expires; every error names the
//! request it is about and, for TLS failures, says the certificate may be self-signed or the
//! connection intercepted.
//!
//! The server is not trusted to behave: every request gives up when the server stays silent
//! for [`ConnectOptions::timeout`] (a temporary error, so the engine's retry applies), and
//! every answer is read with a size cap chosen per request ([`Cap`]) and checked against the
//! request it answers, so a stalled, endless or huge answer is an error naming the URL rather
//! than a hang or the client's memory. Bodies are read piece by piece against their cap (never
//! `Response::bytes`, which takes whatever the server sends). Listings are capped rather than
//! streamed because the engine's `Remote` takes them whole; the caps are far above real folders.

pub use cairn_engine::ratelimit;
mod commit_stream;
mod content_stream;
pub mod replica;
mod tree_stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_engine::{Remote, Result as EngineResult};
use cairn_model::{ChunkId, DeviceId, Entry, RelPath, Seq};
use cairn_protocol::{
    frame, identity_of, Change, ChangeResult, ChunkListResponse, ChunkSpan, CommitRequest,
    CommitResponse, ContentsRequest, DamagedResponse, ErrorBody, FileRef, FolderInfo,
    JournalResponse, LoginRequest, LoginResponse, MissingRequest, MissingResponse, TreeResponse,
    UploadResponse, VersionInfo, VersionsResponse,
};
use futures_util::stream::BoxStream;
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
    #[error("{url}: the server sent nothing for {secs} s; giving up on this request")]
    Timeout { url: String, secs: u64 },
    #[error("{url}: the answer is larger than the {limit} bytes this request allows; refused")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: unusable answer: {detail}")]
    Answer { url: String, detail: String },
    /// The folder was deleted and made again under its name: what was known of the old one
    /// (the journal's point, read-aheads) is void, and the next pass merges with the new one.
    #[error("{url}: the folder was deleted and made again; the next pass merges with the new one")]
    Renewed { url: String },
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
            Error::Timeout { .. } => true,
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
    /// How long the server may stay silent (connecting, before answering, or between two
    /// pieces of an answer) before a request fails; a journal long-poll adds its wait.
    pub timeout: Duration,
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
            .field("timeout", &self.timeout)
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

/// The timeout of [`ConnectOptions`] unless the user chose another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The slowest upload rate assumed when giving a request body time to be sent (and the server
/// time to work through it), in bytes per second: a 64 MiB batch gets about 17 minutes on top
/// of the timeout.
const SLOWEST_UPLOAD: u64 = 64 * 1024;

/// Largest answer each kind of request accepts, in bytes. Listings are buffered whole (the
/// engine takes them as one `Vec`), so their caps bound the client's memory.
#[derive(Clone, Copy, Debug)]
pub enum Cap {
    /// Login, agent claim, upload receipt, folder list, error bodies.
    Small,
    /// A tree, a path's versions or a file's chunk list: about 3 million entries.
    Listing,
    /// A journal page (the server sends at most 10,000 changes unless asked for more).
    Journal,
    /// An answer whose size follows from the request (missing chunks, commit results).
    Exactly(u64),
}

impl Cap {
    pub const fn bytes(self) -> u64 {
        match self {
            Cap::Small => 16 << 20,
            Cap::Listing => 1 << 30,
            Cap::Journal => 256 << 20,
            Cap::Exactly(n) => n,
        }
    }
}

/// Longest JSON of one version (path of 2048 bytes, each possibly escaped to six) or one result.
const MAX_VERSION_JSON: u64 = 16 * 1024;
/// Longest JSON of one chunk id in a list.
const MAX_ID_JSON: u64 = 80;
/// The least an answer sized by its request may take (its fixed fields, a refusal's reason).
const MIN_EXACT_CAP: u64 = 1 << 20;
/// Largest whole-file answer: the engine fetches only small files whole.
pub const MAX_CONTENT: u64 = 64 << 20;

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

/// Largest HTTP/2 frame the client asks the server for.
const MAX_FRAME_SIZE: u32 = 256 * 1024;

/// rustls's ring provider, asking for AES-128-GCM first: TLS 1.3's mandatory suite, and half
/// again as fast as AES-256-GCM here (`cairn debug floors`), which a restore or backup pays
/// on every byte at both ends of one connection. The others keep their order.
fn tls_provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
}

fn tls_config(trust: &Trust) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(tls_provider());
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
    /// The server said it takes gzipped request bodies (`Accept-Encoding: gzip` on an answer).
    gzip_requests: std::sync::atomic::AtomicBool,
    /// What the server said at the last login that it understands.
    features: ServerFeatures,
    /// Per folder: how far the last journal read went, and the answer an identity check got
    /// by reading on from there (see [`HttpRemote::identity`]).
    journals: std::sync::Mutex<std::collections::HashMap<String, Followed>>,
    /// Per folder: its commit stream (see [`commit_stream`]), shared by the connection's
    /// remotes of that folder (a pass makes its own).
    commit_streams: std::sync::Mutex<
        std::collections::HashMap<String, Arc<Mutex<commit_stream::CommitStreams>>>,
    >,
    /// Content bytes per second, shared by every transfer of this connection.
    up: Option<ratelimit::RateLimit>,
    down: Option<ratelimit::RateLimit>,
    /// Makes tokens in place of a login (see [`Connection::with_token_source`]).
    mint: Option<TokenSource>,
}

/// Makes a fresh token for a connection that does not log in.
pub type TokenSource = Arc<dyn Fn() -> String + Send + Sync>;

/// What a server understands beyond the first API (its login answer's `features`); all off
/// until a login says otherwise, so an older server is spoken to as before.
#[derive(Default)]
struct ServerFeatures {
    token_header: std::sync::atomic::AtomicBool,
    derived_inline: std::sync::atomic::AtomicBool,
    journal_stream: std::sync::atomic::AtomicBool,
    commit_stream: std::sync::atomic::AtomicBool,
}

impl ServerFeatures {
    fn set(&self, names: &[String]) {
        use std::sync::atomic::Ordering::Relaxed;
        let has = |f: &str| names.iter().any(|n| n == f);
        self.token_header
            .store(has(cairn_protocol::FEATURE_TOKEN_HEADER), Relaxed);
        self.derived_inline
            .store(has(cairn_protocol::FEATURE_DERIVED_INLINE), Relaxed);
        self.journal_stream
            .store(has(cairn_protocol::FEATURE_JOURNAL_STREAM), Relaxed);
        self.commit_stream
            .store(has(cairn_protocol::FEATURE_COMMIT_STREAM), Relaxed);
    }

    fn has(flag: &std::sync::atomic::AtomicBool) -> bool {
        flag.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What a connection knows of one folder's journal.
///
/// An agent's pass asks "which server, and what changed after `seen`" first. The connection
/// can often answer without a request: while an agent's follower waits for news after a point
/// at or before what the answer covers, every change by another computer after it is either in
/// the answer (a wait for news that just ended) or will be announced, and the agent then runs
/// another pass; this computer's own changes are known from its commits' answers when they took
/// exactly the sequence numbers after the answer's end (nobody else committed in between).
#[derive(Default)]
struct Followed {
    /// The last sequence number a journal read (or listing) of this folder reached.
    seen: Option<Seq>,
    /// The answer to "changes after `seen`", and when it was made: read ahead by an identity
    /// check, brought by a wait for news, or extended with this computer's own commits. The
    /// pass asks exactly that next.
    ahead: Option<(Seq, JournalResponse, std::time::Instant)>,
    /// The point a live follower waits for news after (see [`HttpRemote::following`]);
    /// `Seq(i64::MAX)` while it is not known (before its first wait, after a failed one, or
    /// news it brought that no pass read yet).
    follower: Option<Seq>,
    /// Commits of this folder under way on this connection.
    committing: u32,
    /// The highest head a commit of this connection returned.
    own_head: Option<Seq>,
    /// The caller's access as the latest journal answer gave it, and when.
    access: Option<(cairn_protocol::Access, std::time::Instant)>,
    /// The folder's incarnation as the latest journal answer gave it (a folder deleted and
    /// made again under its name has another).
    incarnation: Option<i64>,
    /// Content hashes of versions this connection saw lately (journal answers, its own
    /// commits), by full path: an edit whose base is here with other content is new to the
    /// server, so it may travel inline. At most [`RECENT_VERSIONS`] paths.
    recent: std::collections::HashMap<RelPath, (Seq, Option<cairn_model::ContentHash>)>,
}

/// Most paths whose latest seen version a connection remembers per folder.
const RECENT_VERSIONS: usize = 4096;

impl Followed {
    fn saw(&mut self, versions: &[VersionInfo]) {
        if self.recent.len() + versions.len() > RECENT_VERSIONS {
            self.recent.clear();
        }
        // Oldest first, so a path's newest version in the answer is the one kept.
        let start = versions.len().saturating_sub(RECENT_VERSIONS);
        for v in &versions[start..] {
            self.recent.insert(v.path.clone(), (v.seq, v.entry.hash));
        }
    }
}

/// The last sequence number an answer to "changes after `after`" covers.
fn reach_of(after: Seq, r: &JournalResponse) -> Seq {
    r.changes
        .last()
        .map_or(after.max(r.head), |v| v.seq.max(r.head))
}

/// How long an identity check's answer waits for the journal read it stands in for.
const AHEAD_FRESH: Duration = Duration::from_secs(5);
/// Most changes an identity check reads ahead: what it reads in vain (a task that lists the
/// whole tree instead, a second task on the same folder) stays small.
const AHEAD_PAGE: u32 = 1_000;

/// Whether an I/O error (a connection closed or reset) is among the causes of `e`.
fn io_failure_beneath(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
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
            // A body cut off midway is a dropped connection too, also under the gzip
            // decoder, which reports it as a decoding error with the I/O failure beneath.
            temporary: e.is_timeout()
                || e.is_connect()
                || e.is_request()
                || e.is_body()
                || (e.is_decode() && io_failure_beneath(e)),
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
            .connect_timeout(opts.timeout)
            // The API never redirects; following one would carry the password or the token
            // wherever the answer points.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            // Frames of 256 KiB rather than 16: a download reaches its reader in a sixteenth of
            // the pieces, each a wake-up between threads (a restore of 1 GiB made 200,000
            // futex calls with 16 KiB frames, 22,000 with these).
            .http2_max_frame_size(MAX_FRAME_SIZE)
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
            gzip_requests: std::sync::atomic::AtomicBool::new(false),
            features: ServerFeatures::default(),
            journals: std::sync::Mutex::new(std::collections::HashMap::new()),
            commit_streams: std::sync::Mutex::default(),
            up: None,
            down: None,
            mint: None,
        })
    }

    /// A session whose tokens come from `mint` instead of a login: the server's own cloud task
    /// runner holds the signing key and acts as a task's owner without their password.
    /// `features` and `server_id` are what a login answer would have said.
    pub fn with_token_source(
        mut self,
        mint: TokenSource,
        server_id: String,
        features: &[String],
    ) -> Self {
        self.server_id = Mutex::new(Some(server_id));
        self.features.set(features);
        self.mint = Some(mint);
        self
    }

    /// Limits content uploads and downloads to these many bytes per second (`None` or 0:
    /// unlimited), for all transfers of this connection together.
    pub fn with_rate_limits(mut self, up: Option<u64>, down: Option<u64>) -> Self {
        self.up = ratelimit::RateLimit::new(up);
        self.down = ratelimit::RateLimit::new(down);
        self
    }

    async fn pace_up(&self, bytes: u64) {
        if let Some(l) = &self.up {
            l.take(bytes).await;
        }
    }

    async fn pace_down(&self, bytes: u64) {
        if let Some(l) = &self.down {
            l.take(bytes).await;
        }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.base)
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
                .answer_head(&url, self.http.post(&url).json(&req), Duration::ZERO)
                .await?;
            match retry_after(&resp) {
                Some(wait) if waits < MAX_RETRY_AFTER_WAITS => {
                    waits += 1;
                    tokio::time::sleep(wait).await;
                }
                _ => break resp,
            }
        };
        let login: LoginResponse = self.decode(&url, resp, Cap::Small).await?;
        *self.token.lock().await = Some(login.token.clone());
        *self.server_id.lock().await = Some(login.server_id.clone());
        self.features.set(&login.features);
        Ok(login)
    }

    async fn token(&self) -> Result<String> {
        let mut held = self.token.lock().await;
        if let Some(t) = held.clone() {
            return Ok(t);
        }
        if let Some(mint) = &self.mint {
            let t = mint();
            *held = Some(t.clone());
            return Ok(t);
        }
        drop(held);
        Ok(self.login().await?.token)
    }

    /// Sends `req` and waits for the head of the answer, at most the timeout plus `extra`
    /// (the time the server may legitimately take: a long-poll's wait, sending a big body).
    async fn answer_head(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
        extra: Duration,
    ) -> Result<reqwest::Response> {
        let limit = self.opts.timeout + extra;
        let resp = match tokio::time::timeout(limit, req.send()).await {
            Ok(sent) => sent.map_err(|e| describe_reqwest(url, &e))?,
            Err(_) => {
                return Err(Error::Timeout {
                    url: url.to_string(),
                    secs: limit.as_secs(),
                })
            }
        };
        let takes_gzip = resp
            .headers()
            .get_all(reqwest::header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|e| e.trim().eq_ignore_ascii_case("gzip")));
        if takes_gzip {
            self.gzip_requests
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(resp)
    }

    /// Sends a request built by `make`, logging in again once if the token was refused.
    async fn send(
        &self,
        url: &str,
        extra: Duration,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut retried = false;
        let mut waits = 0;
        loop {
            let token = self.token().await?;
            let mut req = make(&self.http);
            req = if ServerFeatures::has(&self.features.token_header) {
                req.header(cairn_protocol::TOKEN_HEADER, token_value(&token)?)
            } else {
                req.header(reqwest::header::AUTHORIZATION, bearer(&token)?)
            };
            if let Some(i) = self.instance.get() {
                req = req.header("x-cairn-instance", i);
            }
            let resp = self.answer_head(url, req, extra).await?;
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

    /// GET of an administration endpoint (`/api/v1/...`), answered in JSON of a small size.
    ///
    /// # Errors
    /// The server's refusal with its message, network and TLS failures.
    pub async fn admin_get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        self.get_json(path, query, Cap::Listing, Duration::ZERO)
            .await
    }

    /// POST of a JSON body to an administration endpoint.
    ///
    /// # Errors
    /// As [`Connection::admin_get`].
    pub async fn admin_post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.post_json(path, body, Cap::Small).await
    }

    /// DELETE of an administration resource.
    ///
    /// # Errors
    /// As [`Connection::admin_get`].
    pub async fn admin_delete(&self, path: &str, query: &[(&str, String)]) -> Result<()> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .send(&url, Duration::ZERO, |c| c.delete(&url).query(query))
            .await?;
        let _: serde_json::Value = self.decode(&url, resp, Cap::Small).await?;
        Ok(())
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        cap: Cap,
        wait: Duration,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let resp = self.send(&url, wait, |c| c.get(&url).query(query)).await?;
        self.decode(&url, resp, cap).await
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        cap: Cap,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let body = serde_json::to_vec(body).map_err(|e| Error::Config(format!("{url}: {e}")))?;
        let takes_gzip = self
            .gzip_requests
            .load(std::sync::atomic::Ordering::Relaxed);
        let packed = if takes_gzip && body.len() >= GZIP_REQUEST_ABOVE {
            Some(gzip_body(&url, &body).await?)
        } else {
            None
        };
        // Gzipped only where that is shorter: a small commit of random bytes may not be.
        let (body, gzip) = match packed {
            Some(p) if p.len() < body.len() => (Bytes::from(p), true),
            _ => (Bytes::from(body), false),
        };
        let resp = self
            .send(&url, sending_time(body.len()), |c| {
                let req = c
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone());
                if gzip {
                    req.header("content-encoding", "gzip")
                } else {
                    req
                }
            })
            .await?;
        self.decode(&url, resp, cap).await
    }

    /// Reads a JSON answer of at most `cap`, or the error the server answered instead.
    async fn decode<T: DeserializeOwned>(
        &self,
        url: &str,
        resp: reqwest::Response,
        cap: Cap,
    ) -> Result<T> {
        if !resp.status().is_success() {
            return Err(self.status_error(url, resp).await);
        }
        let body = read_capped(url, resp, cap.bytes(), self.opts.timeout).await?;
        serde_json::from_slice(&body).map_err(|e| Error::Answer {
            url: url.to_string(),
            detail: format!("not the expected JSON: {e}"),
        })
    }

    /// The error of a non-2xx answer, with the server's message when it sent a readable one.
    async fn status_error(&self, url: &str, resp: reqwest::Response) -> Error {
        let status = resp.status().as_u16();
        let message = match read_capped(url, resp, ERROR_BODY_CAP, self.opts.timeout).await {
            Ok(body) => serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(300).collect()),
            Err(e) => format!("no readable message ({e})"),
        };
        Error::Status {
            url: url.to_string(),
            status,
            message,
        }
    }

    /// The engine's error for a content answer that is not a success: temporary when the
    /// server failed (5xx) but for a full disk (507); `about` (a path) leads the message.
    async fn content_refused(
        &self,
        url: &str,
        resp: reqwest::Response,
        about: Option<&RelPath>,
    ) -> cairn_engine::Error {
        let status = resp.status();
        let temporary = status.is_server_error() && status.as_u16() != 507;
        let e = self.status_error(url, resp).await;
        cairn_engine::Error::Remote {
            message: match about {
                Some(path) => format!("{path}: {e}"),
                None => e.to_string(),
            },
            temporary,
        }
    }

    /// Announces a running agent (`instance` is random per process); refused with HTTP 409
    /// when another live agent has this device identity.
    pub async fn claim_agent(&self, instance: &str) -> Result<()> {
        let _ = self.instance.set(instance.to_string());
        self.post_agent(serde_json::json!({ "instance": instance }))
            .await
    }

    /// Gives up this agent's claim (it is stopping). Nothing to do when it never claimed.
    pub async fn release_agent(&self) -> Result<()> {
        match self.instance.get() {
            Some(instance) => {
                self.post_agent(serde_json::json!({ "instance": instance, "release": true }))
                    .await
            }
            None => Ok(()),
        }
    }

    /// Asks whether another live agent has this device identity without becoming the live
    /// one (`run --once`): refused with HTTP 409 like [`Connection::claim_agent`].
    pub async fn probe_agent(&self, instance: &str) -> Result<()> {
        self.post_agent(serde_json::json!({ "instance": instance, "probe": true }))
            .await
    }

    async fn post_agent(&self, body: serde_json::Value) -> Result<()> {
        let _: serde_json::Value = self.post_json("/api/v1/agent", &body, Cap::Small).await?;
        Ok(())
    }

    pub async fn folders(&self) -> Result<Vec<FolderInfo>> {
        self.get_json("/api/v1/folders", &[], Cap::Small, Duration::ZERO)
            .await
    }

    pub fn remote(self: &Arc<Self>, folder: &str) -> HttpRemote {
        HttpRemote {
            conn: self.clone(),
            folder: folder.to_string(),
            news: Mutex::new(NewsState::default()),
        }
    }
}

/// JSON request bodies at least this long go gzipped to a server that takes them, when that is
/// shorter: a commit of many changes or with a small file's content inline (an edit of a few
/// hundred bytes of text saves about a third), a long "which are missing" question.
pub const GZIP_REQUEST_ABOVE: usize = 128;

/// Bodies up to this size are gzipped right away; larger ones off the async runtime (a large
/// commit takes a moment).
const GZIP_INLINE_BELOW: usize = 64 * 1024;

/// `body` gzipped: at the best level when it is small (a small edit's commit travels often and
/// costs microseconds), the fastest when it is large.
async fn gzip_body(url: &str, body: &[u8]) -> Result<Vec<u8>> {
    fn pack(body: &[u8], level: flate2::Compression) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), level);
        enc.write_all(body)?;
        enc.finish()
    }
    let packed = if body.len() < GZIP_INLINE_BELOW {
        Ok(pack(body, flate2::Compression::best()))
    } else {
        let body = body.to_vec();
        tokio::task::spawn_blocking(move || pack(&body, flate2::Compression::fast())).await
    };
    match packed {
        Ok(Ok(packed)) => Ok(packed),
        Ok(Err(e)) => Err(Error::Config(format!(
            "{url}: compressing the request: {e}"
        ))),
        Err(e) => Err(Error::Config(format!(
            "{url}: compressing the request: {e}"
        ))),
    }
}

/// The `Authorization` value for `token`, for servers without [`cairn_protocol::TOKEN_HEADER`]
/// (HTTP/2 sends it whole with every request: HPACK never indexes `Authorization`).
fn bearer(token: &str) -> Result<reqwest::header::HeaderValue> {
    token_value(&format!("Bearer {token}"))
}

/// `value` as a header value, not marked sensitive: in [`cairn_protocol::TOKEN_HEADER`] HTTP/2
/// then sends it once per connection and a one-byte index after that (see that header's note).
fn token_value(value: &str) -> Result<reqwest::header::HeaderValue> {
    reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| Error::Config("the server issued a token that is not a valid header".into()))
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

/// The time a request body of `len` bytes may take to send (and the server to work through)
/// at the slowest rate assumed.
fn sending_time(len: usize) -> Duration {
    Duration::from_secs(len as u64 / SLOWEST_UPLOAD)
}

/// Most of an error answer read for its message.
const ERROR_BODY_CAP: u64 = 64 * 1024;

/// Reads a whole body of at most `limit` bytes, failing when the server declares or sends more
/// or stays silent for `idle` between two pieces.
async fn read_capped(
    url: &str,
    resp: reqwest::Response,
    limit: u64,
    idle: Duration,
) -> Result<Bytes> {
    // Kept as the pieces it arrived in and joined once at its exact size: no buffer doubling
    // as the body grows.
    let mut pieces = std::collections::VecDeque::new();
    read_body(url, resp, limit, idle, &mut |piece| {
        pieces.push_back(piece);
        Ok(())
    })
    .await?;
    if pieces.len() == 1 {
        return Ok(pieces.pop_front().unwrap_or_default());
    }
    let mut out = Vec::with_capacity(pieces.iter().map(Bytes::len).sum());
    // Each piece freed once copied.
    while let Some(piece) = pieces.pop_front() {
        out.extend_from_slice(&piece);
    }
    Ok(Bytes::from(out))
}

/// Hands each piece of a body to `sink` as it arrives, within `limit` bytes in all and `idle`
/// between pieces.
async fn read_body(
    url: &str,
    mut resp: reqwest::Response,
    limit: u64,
    idle: Duration,
    sink: &mut (dyn FnMut(Bytes) -> Result<()> + Send),
) -> Result<()> {
    let too_large = || Error::TooLarge {
        url: url.to_string(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut total = 0u64;
    loop {
        let piece = tokio::time::timeout(idle, resp.chunk())
            .await
            .map_err(|_| Error::Timeout {
                url: url.to_string(),
                secs: idle.as_secs(),
            })?
            .map_err(|e| describe_reqwest(url, &e))?;
        let Some(piece) = piece else {
            return Ok(());
        };
        total += piece.len() as u64;
        if total > limit {
            return Err(too_large());
        }
        sink(piece)?;
    }
}

/// A folder on a cairn server, as the engine's [`Remote`].
pub struct HttpRemote {
    conn: Arc<Connection>,
    folder: String,
    /// The journal stream its waits for news read, while one is open.
    news: Mutex<NewsState>,
}

/// A follower's journal stream (see [`HttpRemote::news`]).
#[derive(Default)]
struct NewsState {
    open: Option<NewsStream>,
    /// The server refused a stream (too many open): long-polls until then.
    refused_until: Option<std::time::Instant>,
}

/// How long a follower waits with long-polls after the server refused it a stream.
const STREAM_REFUSED_WAIT: Duration = Duration::from_secs(60);

/// An open journal stream: its answer, the frames read so far, and the point its next frame
/// answers "changes after".
struct NewsStream {
    url: String,
    resp: reqwest::Response,
    reader: cairn_protocol::stream::FrameReader,
    point: Seq,
    server_id: String,
    folder_id: Option<i64>,
}

impl NewsStream {
    /// The next frame as a journal answer, `None` when the server ended the stream.
    async fn next(&mut self, limit: Duration) -> Result<Option<JournalResponse>> {
        loop {
            let frame = self.reader.next_frame().map_err(|e| Error::Answer {
                url: self.url.clone(),
                detail: e.to_string(),
            })?;
            if let Some(f) = frame {
                let after = self.point;
                self.point = f.reach(after);
                return Ok(Some(JournalResponse {
                    changes: f.changes,
                    head: f.head,
                    server_id: self.server_id.clone(),
                    access: f.access,
                    folder_id: self.folder_id,
                }));
            }
            let piece = tokio::time::timeout(limit, self.resp.chunk())
                .await
                .map_err(|_| Error::Timeout {
                    url: self.url.clone(),
                    secs: limit.as_secs(),
                })?
                .map_err(|e| describe_reqwest(&self.url, &e))?;
            match piece {
                Some(bytes) => self.reader.push(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// How long the access a journal answer gave stands for `writable` (answers refresh it: a
/// pass's read, and a follower's waits for news at least every half minute). A write refused
/// for lack of access sets it to read-only at once.
const ACCESS_FRESH: Duration = Duration::from_secs(60);

/// Changes one wait for news reads at most: a page full of changes outside the task's part of
/// the folder is followed by the next page, not skipped.
pub const NEWS_PAGE: u32 = 64;

fn remote_err(e: Error) -> cairn_engine::Error {
    let temporary = e.is_temporary();
    cairn_engine::Error::Remote {
        message: e.to_string(),
        temporary,
    }
}

/// A live follower's mark on its connection (see [`HttpRemote::following`]); dropping it (the
/// follower stopped) makes passes read for themselves again.
pub struct Following {
    conn: Arc<Connection>,
    folder: String,
}

impl Following {
    fn with<T>(&self, f: impl FnOnce(&mut Followed) -> T) -> T {
        let mut all = self.conn.journals.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(self.folder.clone()).or_default())
    }

    /// Starts following; until its first wait begins the point is not known (`i64::MAX`).
    pub fn start(self) -> Self {
        self.with(|f| f.follower = Some(Seq(i64::MAX)));
        self
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.with(|f| f.follower = None);
    }
}

/// A commit under way on a remote's folder, counted while it lasts.
struct Committing<'a>(&'a HttpRemote);

impl<'a> Committing<'a> {
    fn start(remote: &'a HttpRemote) -> Self {
        remote.followed(|f| f.committing += 1);
        Committing(remote)
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0
            .followed(|f| f.committing = f.committing.saturating_sub(1));
    }
}

impl HttpRemote {
    /// One commit request; the server answers one result per change.
    async fn commit_request(&self, changes: &[Change]) -> EngineResult<Vec<ChangeResult>> {
        let path = self.folder_path("commit");
        let per_change: u64 = changes
            .iter()
            .map(|c| MAX_VERSION_JSON + c.chunks.len() as u64 * MAX_ID_JSON)
            .sum();
        let under_way = Committing::start(self);
        let mut sent = changes.to_vec();
        if ServerFeatures::has(&self.conn.features.derived_inline) {
            sent.iter_mut().for_each(Change::strip_derived);
        }
        let answer = self
            .send_commit(&path, sent, Cap::Exactly(MIN_EXACT_CAP + per_change))
            .await;
        let r: CommitResponse = match answer {
            Ok(r) => r,
            Err(e) => {
                // The commit may have landed unseen: what this connection knows of the journal
                // no longer stands, until a read.
                self.followed(|f| {
                    f.seen = None;
                    f.ahead = None;
                    if e.status() == Some(403) {
                        f.access = Some((cairn_protocol::Access::Ro, std::time::Instant::now()));
                    }
                });
                return Err(remote_err(e));
            }
        };
        r.check(changes.len())
            .map_err(invalid(self.conn.url_of(&path)))?;
        let server_id = self.conn.server_id.lock().await.clone();
        drop(under_way);
        self.note_commit(changes, &r.results, r.head, server_id);
        Ok(r.results)
    }

    /// A commit on the folder's commit stream when the server offers one and it is free, else
    /// as an ordinary request (see [`commit_stream`]).
    async fn send_commit(&self, path: &str, sent: Vec<Change>, cap: Cap) -> Result<CommitResponse> {
        if ServerFeatures::has(&self.conn.features.commit_stream) {
            let streams = {
                let mut all = self
                    .conn
                    .commit_streams
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                all.entry(self.folder.clone()).or_default().clone()
            };
            // Busy with another commit: this one goes as a request of its own, not after it.
            let held = streams.try_lock();
            if let Ok(mut streams) = held {
                let stream_path = self.folder_path("commit-stream");
                let sent_on = streams.commit(&self.conn, &stream_path, &sent).await;
                if let commit_stream::Sent::Answered(r) = sent_on {
                    return r;
                }
            }
        }
        self.conn
            .post_json(path, &CommitRequest { changes: sent }, cap)
            .await
    }

    /// One upload request of `chunks` as frames.
    async fn upload_request(&self, chunks: &[(ChunkId, Bytes)]) -> EngineResult<u64> {
        // Sent as its pieces: the chunks are slices of the blocks the file was read into, and
        // one contiguous body would copy every byte once more.
        let pieces = frame::encode_pieces(chunks);
        let len: usize = pieces.iter().map(Bytes::len).sum();
        let total = len as u64;
        self.conn.pace_up(total).await;
        let url = self.conn.url_of(&self.folder_path("chunks"));
        let resp = self
            .conn
            .send(&url, sending_time(len), |c| {
                let body = futures_util::stream::iter(
                    pieces.clone().into_iter().map(Ok::<_, std::io::Error>),
                );
                c.post(&url)
                    .header("content-type", "application/octet-stream")
                    .header("content-length", len)
                    .body(reqwest::Body::wrap_stream(body))
            })
            .await
            .map_err(remote_err)?;
        let _: UploadResponse = self
            .conn
            .decode(&url, resp, Cap::Small)
            .await
            .map_err(remote_err)?;
        Ok(total)
    }

    fn folder_path(&self, what: &str) -> String {
        format!("/api/v1/folders/{}/{what}", self.folder)
    }

    /// The answer to `GET /content` for version `seq` of `path`, once its status says it is
    /// one, with its URL and the length it announces (the server always announces it).
    async fn content_answer(
        &self,
        path: &RelPath,
        seq: Seq,
    ) -> EngineResult<(String, reqwest::Response, u64)> {
        let url = self.conn.url_of(&self.folder_path("content"));
        let resp = content_stream::request(&self.conn, &url, path, seq, 0).await?;
        let Some(want) = resp.content_length() else {
            return Err(remote_err(Error::Answer {
                url,
                detail: format!("the content of {path} came without a length"),
            }));
        };
        Ok((url, resp, want))
    }

    fn followed<T>(&self, f: impl FnOnce(&mut Followed) -> T) -> T {
        let mut all = self.conn.journals.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(self.folder.clone()).or_default())
    }

    /// Records how far a journal answer to "after `after`" reached.
    fn seen_up_to(&self, after: Seq, r: &JournalResponse) {
        let reached = r.changes.last().map_or(after.max(r.head), |v| v.seq);
        self.followed(|f| {
            f.seen = Some(reached);
            f.saw(&r.changes);
        });
    }

    /// The content hash of version `seq` of `path` (full), when this connection saw it lately.
    pub fn known_hash(&self, path: &RelPath, seq: Seq) -> Option<cairn_model::ContentHash> {
        self.followed(|f| {
            f.recent
                .get(path)
                .filter(|(s, _)| *s == seq)
                .and_then(|(_, h)| *h)
        })
    }

    fn remember_access(&self, r: &JournalResponse) {
        if let Some(a) = r.access {
            self.followed(|f| f.access = Some((a, std::time::Instant::now())));
        }
    }

    /// Keeps the folder's incarnation an answer gives. A new one (the folder was deleted and
    /// made again under its name) voids everything the connection knew of the old folder;
    /// says whether it did.
    fn note_incarnation(&self, r: &JournalResponse) -> bool {
        self.followed(|f| {
            let changed = matches!((f.incarnation, r.folder_id), (Some(a), Some(b)) if a != b);
            if changed {
                f.seen = None;
                f.ahead = None;
                f.own_head = None;
                f.recent.clear();
                if f.follower.is_some() {
                    f.follower = Some(Seq(i64::MAX));
                }
            }
            if r.folder_id.is_some() {
                f.incarnation = r.folder_id;
            }
            changed
        })
    }

    /// The server's identity and head when this connection knows what changed after `seen`
    /// without asking (see [`Followed`]); then that answer waits as the read-ahead.
    async fn known_identity(&self) -> Option<(String, Seq)> {
        let server_id = self.conn.server_id.lock().await.clone()?;
        self.followed(|f| {
            let (seen, follower) = (f.seen?, f.follower?);
            if f.committing > 0 {
                return None;
            }
            let own_upto = |at: Seq| f.own_head.is_none_or(|h| h <= at);
            match &mut f.ahead {
                // However old, it still holds everything after `seen`: the follower vouches
                // for other computers' changes, the commits' answers for this one's. The pass
                // reads it next, as a fresh read-ahead.
                Some((from, r, made)) => {
                    let reach = reach_of(*from, r);
                    let known = *from == seen
                        && follower <= reach
                        && own_upto(reach)
                        && r.server_id == server_id;
                    if known {
                        *made = std::time::Instant::now();
                    }
                    known.then(|| (identity_of(&server_id, f.incarnation), r.head))
                }
                None => (follower <= seen && own_upto(seen))
                    .then(|| (identity_of(&server_id, f.incarnation), seen)),
            }
        })
    }

    /// Whether this connection committed to the folder after `head` (or is committing now):
    /// an identity read at `head` no longer describes the folder.
    pub fn committed_after(&self, head: Seq) -> bool {
        self.followed(|f| f.committing > 0 || f.own_head.is_some_and(|h| h > head))
    }

    /// Marks this remote as the folder's live follower until the guard is dropped: its waits
    /// for news ([`HttpRemote::news`]) then let passes skip journal reads whose answer the
    /// connection already knows.
    pub fn following(&self) -> Following {
        Following {
            conn: self.conn.clone(),
            folder: self.folder.clone(),
        }
    }

    /// After a commit answered: this computer's new versions, when they are exactly the
    /// sequence numbers after what the connection knows of the journal, are appended to the
    /// read-ahead, so the next pass need not read its own commit back.
    fn note_commit(
        &self,
        changes: &[Change],
        results: &[ChangeResult],
        head: Seq,
        server_id: Option<String>,
    ) {
        let mine = self.own_versions(changes, results);
        self.followed(|f| {
            f.saw(&mine);
            f.own_head = Some(f.own_head.map_or(head, |h| h.max(head)));
            let (Some(seen), Some(server_id)) = (f.seen, server_id) else {
                return;
            };
            let (from, mut known) = match &f.ahead {
                Some((from, r, _)) if *from == seen => (*from, r.clone()),
                _ => (
                    seen,
                    JournalResponse {
                        changes: Vec::new(),
                        head: seen,
                        server_id: server_id.clone(),
                        access: None,
                        folder_id: f.incarnation,
                    },
                ),
            };
            // Only after an answer that holds every version up to its head.
            let whole = known.changes.last().is_none_or(|v| v.seq >= known.head);
            let end = reach_of(from, &known);
            let exact = whole
                && !mine.is_empty()
                && known.server_id == server_id
                && mine
                    .iter()
                    .enumerate()
                    .all(|(i, v)| v.seq.0 == end.0 + 1 + i as i64)
                && mine.last().map(|v| v.seq) == Some(head);
            if exact {
                known.changes.extend(mine);
                known.head = head;
                f.ahead = Some((from, known, std::time::Instant::now()));
            }
        });
    }

    /// The versions a commit wrote, in sequence order, as the journal shows them.
    fn own_versions(&self, changes: &[Change], results: &[ChangeResult]) -> Vec<VersionInfo> {
        let version = |path: &RelPath, seq: Seq, entry: Entry| VersionInfo {
            path: path.clone(),
            seq,
            entry,
            device: self.conn.opts.device.clone(),
            user: self.conn.opts.user.clone(),
            computer: self.conn.opts.computer.clone(),
            committed_ns: 0,
            inline: None,
        };
        let mut out = Vec::new();
        for (c, r) in changes.iter().zip(results) {
            let ChangeResult::Accepted { seq } = r else {
                continue;
            };
            let mut entry = c.entry.clone();
            entry.mode &= 0o7777;
            out.push(version(&c.path, *seq, entry));
            if let Some(m) = &c.moved_from {
                let gone = Entry {
                    kind: cairn_model::EntryKind::Deleted,
                    size: 0,
                    mtime_ns: 0,
                    mode: 0,
                    hash: None,
                    target: None,
                };
                out.push(version(&m.path, Seq(seq.0 + 1), gone));
            }
        }
        out.sort_by_key(|v| v.seq);
        out
    }

    /// Waits up to `wait_secs` for versions after `after` written by other computers (or other
    /// users); returns at most [`NEWS_PAGE`] of them and the head as it was before they were
    /// read. Versions this computer wrote are not sent, so its own commits cost it nothing here.
    ///
    /// # Errors
    /// As any request; an answer with a change at or before `after`.
    pub async fn news(&self, after: Seq, wait_secs: u64) -> Result<(Vec<VersionInfo>, Seq)> {
        let q = [
            ("after", after.0.to_string()),
            ("wait", wait_secs.to_string()),
            ("others", "true".to_string()),
            ("limit", NEWS_PAGE.to_string()),
            ("inline", "true".to_string()),
        ];
        let path = self.folder_path("journal");
        let live = self.followed(|f| {
            let live = f.follower.is_some();
            if live {
                f.follower = Some(after);
            }
            live
        });
        let answer = match self.streamed_news(&path, &q, after, wait_secs).await {
            Some(answer) => answer,
            None => {
                self.conn
                    .get_json::<JournalResponse>(
                        &path,
                        &q,
                        Cap::Journal,
                        Duration::from_secs(wait_secs),
                    )
                    .await
            }
        };
        let r = match answer.and_then(|r| {
            r.check(after).map_err(|e| Error::Answer {
                url: self.conn.url_of(&path),
                detail: e.to_string(),
            })?;
            Ok(r)
        }) {
            Ok(r) => r,
            Err(e) => {
                // Until a wait answers again, passes read for themselves.
                self.followed(|f| f.follower = f.follower.map(|_| Seq(i64::MAX)));
                return Err(e);
            }
        };
        if self.note_incarnation(&r) {
            return Err(Error::Renewed {
                url: self.conn.url_of(&path),
            });
        }
        if live {
            self.keep_news(after, &r).await;
        }
        Ok((r.changes.clone(), r.head))
    }

    /// The next answer of the folder's journal stream to "after `after`" (`query` as a
    /// long-poll's, which a server without streams answers as one): from the stream open since
    /// the last wait when it is at `after`, else from a new one. `None` when the server has no
    /// streams or refused one lately: then the caller long-polls.
    async fn streamed_news(
        &self,
        path: &str,
        query: &[(&str, String)],
        after: Seq,
        wait_secs: u64,
    ) -> Option<Result<JournalResponse>> {
        if !ServerFeatures::has(&self.conn.features.journal_stream) {
            return None;
        }
        let limit = Duration::from_secs(wait_secs) + self.conn.opts.timeout;
        let mut news = self.news.lock().await;
        if news
            .refused_until
            .is_some_and(|t| std::time::Instant::now() < t)
        {
            return None;
        }
        if let Some(open) = news.open.as_mut().filter(|s| s.point == after) {
            match open.next(limit).await {
                Ok(Some(r)) => return Some(Ok(r)),
                // The server ended it (its life is over, or it stops): open the next one.
                Ok(None) => {}
                Err(e) => {
                    news.open = None;
                    return Some(Err(e));
                }
            }
        }
        news.open = None;
        let url = self.conn.url_of(path);
        let resp = self
            .conn
            .send(&url, Duration::from_secs(wait_secs), |c| {
                c.get(&url).query(query).query(&[("stream", "true")])
            })
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            news.refused_until = Some(std::time::Instant::now() + STREAM_REFUSED_WAIT);
            return None;
        }
        let streamed = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == cairn_protocol::stream::CONTENT_TYPE.as_bytes());
        if !resp.status().is_success() || !streamed {
            // An error, or a server that answered as a long-poll.
            return Some(self.conn.decode(&url, resp, Cap::Journal).await);
        }
        let server_id = resp
            .headers()
            .get(cairn_protocol::stream::SERVER_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let folder_id = resp
            .headers()
            .get(cairn_protocol::stream::FOLDER_ID_HEADER)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let mut open = NewsStream {
            url: url.clone(),
            resp,
            reader: cairn_protocol::stream::FrameReader::default(),
            point: after,
            server_id,
            folder_id,
        };
        match open.next(limit).await {
            Ok(Some(r)) => {
                news.open = Some(open);
                Some(Ok(r))
            }
            Ok(None) => Some(Err(Error::Answer {
                url,
                detail: "the journal stream ended before its first frame".into(),
            })),
            Err(e) => Some(Err(e)),
        }
    }

    /// What a follower's answer tells the connection: a journal that went back or another
    /// server voids what it knew; an answer with changes stands as the next pass's read when
    /// it is all there is after `seen` (no commit of this connection after it, not cut short).
    async fn keep_news(&self, after: Seq, r: &JournalResponse) {
        self.remember_access(r);
        let server_id = self.conn.server_id.lock().await.clone();
        let same_server = server_id.as_deref() == Some(r.server_id.as_str());
        self.followed(|f| {
            if !same_server || r.head < after {
                f.seen = None;
                f.ahead = None;
                f.follower = Some(Seq(i64::MAX));
                return;
            }
            if r.changes.is_empty() {
                return;
            }
            let whole = f.seen == Some(after)
                && f.committing == 0
                && f.own_head.is_none_or(|h| h <= after)
                && r.changes.len() < NEWS_PAGE as usize;
            if whole {
                f.ahead = Some((after, r.clone(), std::time::Instant::now()));
            } else {
                // Changes not read yet: the next pass asks.
                f.follower = Some(Seq(i64::MAX));
            }
        });
    }

    /// The chunk list of version `seq` of `path`, with the version's entry when the server
    /// sends it (servers before that field did not).
    ///
    /// # Errors
    /// As any request; no such version; chunks that do not add up to the entry.
    pub async fn version_chunks(
        &self,
        path: &RelPath,
        seq: Seq,
    ) -> EngineResult<(Option<Entry>, Vec<ChunkSpan>)> {
        let api = self.folder_path("chunklist");
        let r: ChunkListResponse = self
            .conn
            .get_json(
                &api,
                &[
                    ("path", path.as_str().to_string()),
                    ("seq", seq.0.to_string()),
                ],
                Cap::Listing,
                Duration::ZERO,
            )
            .await
            .map_err(remote_err)?;
        r.check().map_err(invalid(self.conn.url_of(&api)))?;
        Ok((r.entry, r.chunks))
    }

    /// The server's identity as seen at the last login.
    pub async fn server_id(&self) -> Option<String> {
        self.conn.server_id.lock().await.clone()
    }
}

/// An answer that parsed but contradicts its request, as an engine error naming the URL.
fn invalid(url: String) -> impl FnOnce(cairn_protocol::InvalidAnswer) -> cairn_engine::Error {
    move |e| {
        remote_err(Error::Answer {
            url,
            detail: e.to_string(),
        })
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
        let path = self.folder_path("tree");
        let t: TreeResponse = self
            .conn
            .get_json(&path, &q, Cap::Listing, Duration::ZERO)
            .await
            .map_err(remote_err)?;
        t.check(prefix).map_err(invalid(self.conn.url_of(&path)))?;
        Ok(t.entries)
    }

    async fn tree_each(
        &self,
        prefix: &RelPath,
        each: &mut (dyn FnMut(VersionInfo) + Send),
    ) -> EngineResult<()> {
        let q = [
            ("prefix", prefix.as_str().to_string()),
            ("deleted", "false".to_string()),
        ];
        let path = self.folder_path("tree");
        let url = self.conn.url_of(&path);
        let conn = &self.conn;
        let resp = conn
            .send(&url, Duration::ZERO, |c| c.get(&url).query(&q))
            .await
            .map_err(remote_err)?;
        if !resp.status().is_success() {
            return Err(remote_err(conn.status_error(&url, resp).await));
        }
        let not_json = |detail: String| Error::Answer {
            url: url.clone(),
            detail: format!("not the expected JSON: {detail}"),
        };
        let mut splitter = tree_stream::TreeSplitter::new(prefix, each);
        read_body(
            &url,
            resp,
            Cap::Listing.bytes(),
            conn.opts.timeout,
            &mut |piece| splitter.feed(&piece).map_err(not_json),
        )
        .await
        .map_err(remote_err)?;
        splitter
            .finish()
            .map(|_| ())
            .map_err(|d| remote_err(not_json(d)))
    }

    async fn missing(&self, ids: &[ChunkId]) -> EngineResult<Vec<ChunkId>> {
        let path = self.folder_path("chunks/missing");
        let mut missing = Vec::new();
        for part in ids.chunks(cairn_protocol::MAX_MISSING_IDS) {
            let cap = Cap::Exactly(MIN_EXACT_CAP + part.len() as u64 * MAX_ID_JSON);
            let r: MissingResponse = self
                .conn
                .post_json(
                    &path,
                    &MissingRequest {
                        chunks: part.to_vec(),
                    },
                    cap,
                )
                .await
                .map_err(remote_err)?;
            r.check(part).map_err(invalid(self.conn.url_of(&path)))?;
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

    async fn writable(&self) -> EngineResult<bool> {
        let known = self.followed(|f| f.access);
        if let Some((access, _)) = known.filter(|(_, at)| at.elapsed() < ACCESS_FRESH) {
            return Ok(access == cairn_protocol::Access::Rw);
        }
        let folders = self.conn.folders().await.map_err(remote_err)?;
        let info = folders.iter().find(|f| f.name == self.folder);
        Ok(info.is_some_and(|f| f.access == cairn_protocol::Access::Rw))
    }

    /// Where an earlier journal read of this folder on this connection stopped (a drive task
    /// that follows the journal), this check reads on from there, at most `AHEAD_PAGE`
    /// changes, and keeps the answer: the pass asks for exactly those changes next and gets
    /// them without a request of its own. Otherwise (a first pass, a backup, which lists the
    /// whole tree) it asks for no changes at all.
    async fn identity(&self) -> EngineResult<(String, Seq)> {
        if let Some(known) = self.known_identity().await {
            return Ok(known);
        }
        let seen = self.followed(|f| f.seen);
        let after = seen.unwrap_or(Seq(i64::MAX));
        let q = [
            ("after", after.0.to_string()),
            ("wait", "0".to_string()),
            ("limit", AHEAD_PAGE.to_string()),
        ];
        let path = self.folder_path("journal");
        let r: JournalResponse = self
            .conn
            .get_json(&path, &q, Cap::Journal, Duration::ZERO)
            .await
            .map_err(remote_err)?;
        r.check(after).map_err(invalid(self.conn.url_of(&path)))?;
        self.remember_access(&r);
        let renewed = self.note_incarnation(&r);
        let id = (r.identity(), r.head);
        *self.conn.server_id.lock().await = Some(r.server_id.clone());
        // After a new incarnation the answer's changes are not those after `seen`.
        if seen.is_some() && !renewed {
            self.followed(|f| f.ahead = Some((after, r, std::time::Instant::now())));
        }
        Ok(id)
    }

    async fn journal(&self, after: Seq, wait_secs: u64) -> EngineResult<(Vec<VersionInfo>, Seq)> {
        let ahead = self
            .followed(|f| f.ahead.take())
            .filter(|(from, _, at)| *from == after && wait_secs == 0 && at.elapsed() < AHEAD_FRESH);
        if let Some((_, r, _)) = ahead {
            self.seen_up_to(after, &r);
            return Ok((r.changes, r.head));
        }
        let q = [
            ("after", after.0.to_string()),
            ("wait", wait_secs.to_string()),
        ];
        let path = self.folder_path("journal");
        let r: JournalResponse = self
            .conn
            .get_json(&path, &q, Cap::Journal, Duration::from_secs(wait_secs))
            .await
            .map_err(remote_err)?;
        r.check(after).map_err(invalid(self.conn.url_of(&path)))?;
        self.remember_access(&r);
        if self.note_incarnation(&r) {
            // Not retried within the pass (not temporary): the next pass's identity check
            // sees the new folder and merges with it.
            return Err(remote_err(Error::Renewed {
                url: self.conn.url_of(&path),
            }));
        }
        self.seen_up_to(after, &r);
        *self.conn.server_id.lock().await = Some(r.server_id);
        Ok((r.changes, r.head))
    }

    async fn versions(&self, path: &RelPath) -> EngineResult<Vec<VersionInfo>> {
        let r: VersionsResponse = self
            .conn
            .get_json(
                &self.folder_path("versions"),
                &[("path", path.as_str().to_string())],
                Cap::Listing,
                Duration::ZERO,
            )
            .await
            .map_err(remote_err)?;
        Ok(r.versions)
    }

    async fn chunk_list(&self, path: &RelPath, seq: Seq) -> EngineResult<Vec<ChunkSpan>> {
        Ok(self.version_chunks(path, seq).await?.1)
    }

    async fn content(&self, path: &RelPath, seq: Seq) -> EngineResult<Bytes> {
        let (url, resp, want) = self.content_answer(path, seq).await?;
        // A whole-file answer is only asked for small files.
        if want > MAX_CONTENT {
            return Err(remote_err(Error::TooLarge {
                url,
                limit: MAX_CONTENT,
            }));
        }
        let body = read_capped(&url, resp, want, self.conn.opts.timeout)
            .await
            .map_err(remote_err)?;
        if body.len() as u64 != want {
            return Err(remote_err(Error::Answer {
                url,
                detail: format!(
                    "the content of {path} is {} bytes, not the {want} announced",
                    body.len()
                ),
            }));
        }
        self.conn.pace_down(want).await;
        Ok(body)
    }

    async fn content_stream(
        &self,
        path: &RelPath,
        seq: Seq,
        size: u64,
    ) -> EngineResult<BoxStream<'static, EngineResult<Bytes>>> {
        let url = self.conn.url_of(&self.folder_path("content"));
        content_stream::open(self.conn.clone(), url, path, seq, size).await
    }

    async fn contents(&self, versions: &[VersionInfo]) -> EngineResult<Vec<Bytes>> {
        let url = self.conn.url_of(&self.folder_path("contents"));
        let want: u64 = versions.iter().map(|v| v.entry.size).sum();
        if versions.len() > cairn_protocol::MAX_BATCH_FILES
            || want > cairn_protocol::MAX_BATCH_BYTES
        {
            return Err(remote_err(Error::Config(format!(
                "{url}: {} files of {want} bytes are more than one request may ask for",
                versions.len()
            ))));
        }
        let req = ContentsRequest {
            files: versions
                .iter()
                .map(|v| FileRef {
                    path: v.path.clone(),
                    seq: v.seq,
                })
                .collect(),
        };
        let body = Bytes::from(
            serde_json::to_vec(&req)
                .map_err(|e| remote_err(Error::Config(format!("{url}: {e}"))))?,
        );
        let resp = self
            .conn
            .send(&url, Duration::ZERO, |c| {
                c.post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await
            .map_err(remote_err)?;
        if !resp.status().is_success() {
            return Err(self.conn.content_refused(&url, resp, None).await);
        }
        // Exactly the bytes of the versions asked for, cut at their sizes; each piece is
        // checked against its hash by the caller.
        let body = read_capped(&url, resp, want, self.conn.opts.timeout)
            .await
            .map_err(remote_err)?;
        if body.len() as u64 != want {
            return Err(remote_err(Error::Answer {
                url,
                detail: format!(
                    "{} bytes for {} files of {want} bytes",
                    body.len(),
                    versions.len()
                ),
            }));
        }
        self.conn.pace_down(want).await;
        let mut at = 0usize;
        Ok(versions
            .iter()
            .map(|v| {
                let len = usize::try_from(v.entry.size).unwrap_or(usize::MAX);
                let piece = body.slice(at..at + len);
                at += len;
                piece
            })
            .collect())
    }

    async fn damaged(&self, prefix: &RelPath) -> EngineResult<Vec<RelPath>> {
        let r: DamagedResponse = self
            .conn
            .get_json(
                &self.folder_path("damaged"),
                &[("prefix", prefix.as_str().to_string())],
                Cap::Listing,
                Duration::ZERO,
            )
            .await
            .map_err(remote_err)?;
        Ok(r.paths)
    }

    async fn chunk(&self, id: &ChunkId) -> EngineResult<Bytes> {
        let url = self.conn.url_of(&self.folder_path(&format!("chunks/{id}")));
        let resp = self
            .conn
            .send(&url, Duration::ZERO, |c| c.get(&url))
            .await
            .map_err(remote_err)?;
        if !resp.status().is_success() {
            return Err(remote_err(self.conn.status_error(&url, resp).await));
        }
        let data = read_capped(
            &url,
            resp,
            u64::from(frame::MAX_FRAME_LEN),
            self.conn.opts.timeout,
        )
        .await
        .map_err(remote_err)?;
        self.conn.pace_down(data.len() as u64).await;
        Ok(data)
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
            inline: None,
        }
    }

    #[test]
    fn the_client_asks_for_aes_128_gcm_first_and_drops_no_suite() {
        let ours: Vec<_> = tls_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            ours.first(),
            Some(&rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        let mut theirs: Vec<_> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let mut sorted = ours.clone();
        sorted.sort_by_key(|s| format!("{s:?}"));
        theirs.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(sorted, theirs);
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
            timeout: DEFAULT_TIMEOUT,
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

#[cfg(test)]
mod dropped_body_tests {
    use std::io::Write;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A gzipped answer whose connection closes halfway is reported by reqwest as a decoding
    /// error; it is a dropped connection all the same, so it must be retried.
    #[tokio::test]
    async fn a_gzipped_body_cut_off_by_the_connection_is_temporary() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let body: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        gz.write_all(&body).expect("gzip");
        let packed = gz.finish().expect("gzip");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
                packed.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&packed[..packed.len() / 2]).await;
            // Closed here: half the body never comes.
        });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().build().expect("client");
        let url = format!("http://{addr}/x");
        let resp = client.get(&url).send().await.expect("head arrives");
        let e = resp.bytes().await.expect_err("the body is cut off");
        let err = describe_reqwest(&url, &e);
        assert!(err.is_temporary(), "{err} (decode: {})", e.is_decode());
    }
}
