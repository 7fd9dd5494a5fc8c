//! OpenDAL's HTTP requests, sent with the workspace's own reqwest client.
//!
//! One transport per connection: it carries the connection's upload and download limits
//! (shared by every transfer of that connection, as seed 003's traffic control asks) and
//! counts what travelled. Writing our own instead of enabling OpenDAL's keeps one reqwest in
//! the build and the TLS trust in our hands (system roots, or a CA file the user names).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::ratelimit::RateLimit;
use futures_util::{StreamExt, TryStreamExt};
use http::{Request, Response};
use opendal::raw::{parse_content_encoding, parse_content_length};
use opendal::{Buffer, Error, ErrorKind, HttpBody, HttpTransport, Result};

/// What one connection sent and received, in body bytes.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub requests: AtomicU64,
    /// Requests or pieces a rate limit made wait.
    pub limit_waits: AtomicU64,
}

/// Upload and download limits in bytes per second (`None`: unlimited).
#[derive(Debug, Default)]
pub struct Limits {
    pub up: Option<RateLimit>,
    pub down: Option<RateLimit>,
}

impl Limits {
    /// Waits for `bytes` to go up under the upload limit, counting a wait in `counters`.
    pub async fn take_up(&self, bytes: u64, counters: &Counters) {
        Self::take(self.up.as_ref(), bytes, counters).await;
    }

    /// Waits for `bytes` that came down under the download limit, counting a wait.
    pub async fn take_down(&self, bytes: u64, counters: &Counters) {
        Self::take(self.down.as_ref(), bytes, counters).await;
    }

    async fn take(limit: Option<&RateLimit>, bytes: u64, counters: &Counters) {
        if let Some(limit) = limit {
            if !limit.take(bytes).await.is_zero() {
                counters.limit_waits.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A request body that streams instead of being held whole: rides on a request as an
/// extension (OpenDAL's request type carries a buffer only), and is sent as it arrives,
/// under the connection's upload limit. The request must say its `Content-Length`.
#[derive(Clone)]
pub struct UploadBody(Arc<std::sync::Mutex<Option<UploadPieces>>>);

type UploadPieces = tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>;

impl UploadBody {
    /// A body fed through the returned sender, `ahead` pieces buffered; an `Err` piece aborts
    /// the request.
    pub fn channel(
        ahead: usize,
    ) -> (
        tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
        Self,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(ahead);
        (tx, UploadBody(Arc::new(std::sync::Mutex::new(Some(rx)))))
    }

    /// The pieces, once (a second send of the same request has none: it was consumed).
    fn take(&self) -> Option<UploadPieces> {
        self.0.lock().ok().and_then(|mut rx| rx.take())
    }
}

/// `pieces` as a request body, each piece counted and waiting for the upload limit.
fn streamed(pieces: UploadPieces, limits: Arc<Limits>, counters: Arc<Counters>) -> reqwest::Body {
    let stream = futures_util::stream::unfold(pieces, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    })
    .then(move |piece| {
        let limits = limits.clone();
        let counters = counters.clone();
        async move {
            let piece = piece?;
            limits.take_up(piece.len() as u64, &counters).await;
            counters
                .sent
                .fetch_add(piece.len() as u64, Ordering::Relaxed);
            Ok::<_, std::io::Error>(piece)
        }
    });
    reqwest::Body::wrap_stream(stream)
}

#[derive(Clone)]
pub struct Transport {
    client: reqwest::Client,
    /// Uploads without a content type get `application/octet-stream` (the GCS emulator drops
    /// the connection otherwise; only for services that do not sign the header).
    default_content_type: bool,
    limits: Arc<Limits>,
    counters: Arc<Counters>,
    /// Multipart uploads taken up again after an interruption (S3; see [`crate::multipart`]).
    resume: Option<Arc<crate::multipart::Resume>>,
    /// Provider requests OpenDAL has no API for (Azure, GCS; see [`crate::hook`]).
    hook: Option<Arc<dyn crate::hook::Hook>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

/// Redirects are followed on the same host and port only: a service answering with another
/// address must not turn a connection (the server's own cloud tasks included) into a way to
/// reach hosts it was not given, such as an instance metadata service.
fn same_host_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first();
        let same = first.is_some_and(|f| {
            f.host_str() == attempt.url().host_str()
                && f.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if same && attempt.previous().len() < 5 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Whether `ip` is this machine, a private or link-local network, or carrier-grade NAT:
/// addresses a connection saved by a user who is not an administrator may not reach.
pub fn is_private(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Resolves names for a public-only connection: private answers are dropped, and a name with
/// only private answers fails, at every connection (so a name re-pointed after the check at
/// save time is still caught).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public = public_addrs(&host, found)?;
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// The public ones of `found` for `host`, or an error naming it when there is none.
fn public_addrs(
    host: &str,
    found: Vec<std::net::SocketAddr>,
) -> std::result::Result<Vec<std::net::SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let public: Vec<_> = found.into_iter().filter(|a| !is_private(a.ip())).collect();
    if public.is_empty() {
        return Err(format!(
            "{host} points at this machine or a private network; only an administrator's connection may reach one"
        )
        .into());
    }
    Ok(public)
}

impl Transport {
    /// A transport trusting the system's roots, plus the certificates in `ca_pem` when given;
    /// with `public_only`, names resolve to public addresses only ([`is_private`]).
    pub fn new(
        ca_pem: Option<&[u8]>,
        limits: Arc<Limits>,
        counters: Arc<Counters>,
        public_only: bool,
    ) -> std::result::Result<Self, String> {
        let tls = tls_config(ca_pem)?;
        let mut builder = reqwest::Client::builder();
        if public_only {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(30))
            // A server that stops answering mid-body fails the request (and OpenDAL's retry
            // layer tries again) instead of hanging the task.
            .read_timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(same_host_redirects())
            .build()
            .map_err(|e| format!("HTTP client setup: {e}"))?;
        Ok(Transport {
            client,
            default_content_type: false,
            limits,
            counters,
            resume: None,
            hook: None,
        })
    }

    /// Resumes interrupted multipart uploads with `resume`.
    pub fn with_resume(mut self, resume: Arc<crate::multipart::Resume>) -> Self {
        self.resume = Some(resume);
        self
    }

    /// Lets `hook` see, answer or change every request ([`crate::hook`]).
    pub(crate) fn with_hook(mut self, hook: Arc<dyn crate::hook::Hook>) -> Self {
        self.hook = Some(hook);
        self
    }
}

impl Transport {
    /// The HTTP client, for the few requests OpenDAL has no call for (listing buckets).
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// Uploads without a content type get `application/octet-stream` (the GCS emulator drops
    /// the connection otherwise).
    pub fn with_default_content_type(mut self) -> Self {
        self.default_content_type = true;
        self
    }
}

fn tls_config(ca_pem: Option<&[u8]>) -> std::result::Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_pem {
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| format!("CA file: {e}"))?;
            roots.add(cert).map_err(|e| format!("CA file: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("CA file holds no certificate".into());
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// `uri` with every `/` in its query sent as `%2F`. OpenDAL signs S3 requests over the
/// canonical query (where `/` is encoded) but builds the URL with `/` raw; a server that checks
/// the signature against the query as received (moto) then refuses it. Both spellings mean the
/// same to every server (a query's `/` is data), so the encoded one is sent.
fn query_slashes_encoded(uri: &http::Uri) -> String {
    let text = uri.to_string();
    match text.split_once('?') {
        Some((path, query)) => format!("{path}?{}", query.replace('/', "%2F")),
        None => text,
    }
}

/// Whether a failed request is worth sending again.
fn temporary(err: &reqwest::Error) -> bool {
    err.is_connect() || err.is_timeout() || err.is_request() || err.is_body() || err.is_decode()
}

fn failed(what: &'static str, uri: &http::Uri, err: reqwest::Error) -> Error {
    let temporary = temporary(&err);
    Error::new(ErrorKind::Unexpected, what)
        .with_operation("cairn::transport")
        .with_context("url", uri.to_string())
        .with_temporary(temporary)
        .set_source(err.without_url())
}

impl HttpTransport for Transport {
    async fn fetch(&self, req: Request<Buffer>) -> Result<Response<HttpBody>> {
        let uri = req.uri().clone();
        let call = self
            .resume
            .as_ref()
            .map(|_| crate::multipart::Call::of(req.method(), &uri));
        if let (Some(resume), Some(call)) = (&self.resume, &call) {
            if let Some(answer) = resume.answer(&self.client, call, &uri, req.body()).await {
                return Ok(answer);
            }
        }
        let (req, on_answer) = match &self.hook {
            Some(hook) => match hook.before(&self.client, req).await {
                crate::hook::Step::Answered(answer) => return Ok(answer),
                crate::hook::Step::Send(req, then) => (req, then),
            },
            None => (req, None),
        };
        // A hook may change a request, never where it goes; the address is read again anyway.
        let uri = req.uri().clone();
        let is_head = req.method() == http::Method::HEAD;
        let (mut parts, body) = req.into_parts();
        let upload = parts.extensions.remove::<UploadBody>();
        let url = reqwest::Url::parse(&query_slashes_encoded(&uri)).map_err(|e| {
            Error::new(ErrorKind::Unexpected, "request url is invalid")
                .with_context("url", uri.to_string())
                .set_source(e)
        })?;
        if self.default_content_type
            && matches!(parts.method, http::Method::PUT | http::Method::POST)
            && !parts.headers.contains_key(http::header::CONTENT_TYPE)
        {
            parts.headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            );
        }
        let builder_method = parts.method.clone();
        let mut builder = self
            .client
            .request(parts.method, url)
            .headers(parts.headers)
            .version(parts.version);
        let sends_body = matches!(
            builder_method,
            http::Method::PUT | http::Method::POST | http::Method::PATCH
        );
        if let Some(upload) = upload {
            let Some(pieces) = upload.take() else {
                return Err(
                    Error::new(ErrorKind::Unexpected, "a streamed upload was sent twice")
                        .with_context("url", uri.to_string()),
                );
            };
            builder = builder.body(streamed(pieces, self.limits.clone(), self.counters.clone()));
        } else if !body.is_empty() {
            let len = body.len() as u64;
            self.limits.take_up(len, &self.counters).await;
            self.counters.sent.fetch_add(len, Ordering::Relaxed);
            builder = builder.body(body.to_bytes());
        } else if sends_body {
            // An empty upload still says so (`Content-Length: 0`): some servers wait for a
            // body otherwise.
            builder = builder.body(bytes::Bytes::new());
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut resp = builder
            .send()
            .await
            .map_err(|e| failed("send http request", &uri, e))?;
        if let Some(then) = on_answer {
            then(resp.status(), resp.headers());
        }
        let content_length = if is_head || parse_content_encoding(resp.headers())?.is_some() {
            None
        } else {
            parse_content_length(resp.headers())?
        };
        let mut out = Response::builder()
            .status(resp.status())
            .version(resp.version())
            .extension(uri.clone());
        if let Some(headers) = out.headers_mut() {
            std::mem::swap(headers, resp.headers_mut());
        }
        if (self.resume.is_some() || self.hook.is_some())
            && builder_method == http::Method::GET
            && resp.status().is_client_error()
        {
            // A refused read: an archived object's restore is requested, and the refusal
            // says so (seed 003).
            let status = resp.status();
            let mut body = resp
                .bytes()
                .await
                .map_err(|e| failed("read data from http response", &uri, e))?;
            if let Some(resume) = &self.resume {
                if crate::archive::is_archived(status, &body) {
                    body =
                        crate::archive::request_restore(&self.client, resume.signer(), &uri, &body)
                            .await;
                }
            }
            if let (Some(hook), Some(headers)) = (&self.hook, out.headers_ref()) {
                body = hook
                    .refused_read(&self.client, &uri, status, headers, body)
                    .await;
            }
            return out.body(crate::multipart::body_of(body)).map_err(|e| {
                Error::new(ErrorKind::Unexpected, "building the response")
                    .with_context("url", uri.to_string())
                    .set_source(e)
            });
        }
        if let (Some(resume), Some(call)) = (&self.resume, &call) {
            let status = resp.status();
            if matches!(call, crate::multipart::Call::Create { .. }) {
                // A small answer, read whole to learn the upload's id.
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| failed("read data from http response", &uri, e))?;
                resume.note(call, &uri, status, &body);
                return out.body(crate::multipart::body_of(body)).map_err(|e| {
                    Error::new(ErrorKind::Unexpected, "building the response")
                        .with_context("url", uri.to_string())
                        .set_source(e)
                });
            }
            resume.note(call, &uri, status, &[]);
        }
        let limits = self.limits.clone();
        let counters = self.counters.clone();
        let body_uri = uri.clone();
        let stream = resp
            .bytes_stream()
            .map_err(move |e| failed("read data from http response", &body_uri, e))
            .then(move |piece| {
                let limits = limits.clone();
                let counters = counters.clone();
                async move {
                    let piece = piece?;
                    counters
                        .received
                        .fetch_add(piece.len() as u64, Ordering::Relaxed);
                    limits.take_down(piece.len() as u64, &counters).await;
                    Ok(Buffer::from(piece))
                }
            })
            .try_filter(|b: &Buffer| futures_util::future::ready(!b.is_empty()));
        let stream: std::pin::Pin<
            Box<dyn futures_util::Stream<Item = Result<Buffer>> + Send + Sync>,
        > = Box::pin(stream);
        out.body(HttpBody::new(stream, content_length))
            .map_err(|e| {
                Error::new(ErrorKind::Unexpected, "building the response")
                    .with_context("url", uri.to_string())
                    .set_source(e)
            })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn inside_addresses_are_private_and_public_ones_are_not() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "172.16.4.4",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "100.128.0.1", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
        let found = vec![
            "10.0.0.1:0".parse().expect("addr"),
            "1.1.1.1:0".parse().expect("addr"),
        ];
        assert_eq!(public_addrs("mixed", found).expect("one public").len(), 1);
        let inside = vec!["127.0.0.1:0".parse().expect("addr")];
        let err = public_addrs("evil.example", inside)
            .expect_err("only private")
            .to_string();
        assert!(
            err.contains("evil.example") && err.contains("private network"),
            "{err}"
        );
    }

    /// A public-only transport resolves at every connection: a name that points inside
    /// (here `localhost`, which a re-pointed name would do) fails with why, and the request
    /// never reaches the listening server.
    #[tokio::test]
    async fn a_public_only_transport_refuses_a_name_that_points_inside() {
        let (port, reached) = answering("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".into());
        let open = Transport::new(None, Arc::default(), Arc::default(), false).expect("transport");
        let url = format!("http://localhost:{port}/");
        open.http()
            .get(&url)
            .send()
            .await
            .expect("an ordinary transport connects");
        reached.recv().expect("reached");
        let (port, reached) = answering("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".into());
        let guarded =
            Transport::new(None, Arc::default(), Arc::default(), true).expect("transport");
        let err = guarded
            .http()
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .expect_err("a name pointing inside is refused");
        let mut chain = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert!(chain.contains("private network"), "{chain}");
        assert!(
            reached.try_recv().is_err(),
            "the request reached the server"
        );
    }

    /// A one-shot HTTP server answering every request with `answer`; returns its port.
    fn answering(answer: String) -> (u16, std::sync::mpsc::Receiver<()>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while let Ok((mut s, _)) = l.accept() {
                let _ = tx.send(());
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        (port, rx)
    }

    #[tokio::test]
    async fn redirects_to_another_host_are_not_followed() {
        let (elsewhere, hits) = answering("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".into());
        let (port, _) = answering(format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.2:{elsewhere}/latest\r\ncontent-length: 0\r\n\r\n"
        ));
        let t = Transport::new(None, Arc::default(), Arc::default(), false).expect("transport");
        let resp = t
            .client
            .get(format!("http://127.0.0.1:{port}/x"))
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status().as_u16(), 302, "the redirect is handed back");
        assert!(hits.try_recv().is_err(), "the other host was reached");
    }
}
