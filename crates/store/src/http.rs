//! The HTTP transport of the S3 store: OpenDAL's requests sent with the workspace's reqwest
//! (system TLS roots), and refusals that mean "no room" turned into an I/O error of kind
//! `StorageFull` or `QuotaExceeded`, so the store classifies them by kind, as it does a full disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use http::{Request, Response};
use opendal::raw::{parse_content_encoding, parse_content_length};
use opendal::{Buffer, Error, ErrorKind, HttpBody, HttpTransport, Result};

#[derive(Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    /// Requests sent, for tests and figures (one GET per read).
    pub(crate) requests: Arc<AtomicU64>,
}

impl Transport {
    pub(crate) fn new() -> std::result::Result<Self, String> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config()?)
            .connect_timeout(Duration::from_secs(30))
            // A store that stops answering mid-body fails the request (the retry layer sends
            // it again) instead of hanging an upload.
            .read_timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(60))
            // The signature covers the host: a redirect elsewhere could only fail, or leak.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client setup: {e}"))?;
        Ok(Transport {
            client,
            requests: Arc::default(),
        })
    }
}

fn tls_config() -> std::result::Result<rustls::ClientConfig, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// `uri` with every `/` in its query sent as `%2F`: OpenDAL signs the canonical query (where
/// `/` is encoded) but builds the URL with `/` raw, and a server that checks the signature
/// against the query as received (moto) refuses a listing of `chunks/` otherwise.
fn query_slashes_encoded(uri: &http::Uri) -> String {
    let text = uri.to_string();
    match text.split_once('?') {
        Some((path, query)) => format!("{path}?{}", query.replace('/', "%2F")),
        None => text,
    }
}

fn failed(what: &'static str, err: reqwest::Error) -> Error {
    let temporary = err.is_connect()
        || err.is_timeout()
        || err.is_request()
        || err.is_body()
        || err.is_decode();
    Error::new(ErrorKind::Unexpected, what)
        .with_operation("cairn::store::http")
        .with_temporary(temporary)
        .set_source(err.without_url())
}

/// The S3 error codes (and HTTP 507) that mean the bucket or the account has no room left:
/// MinIO's full disks and bucket quotas, Ceph RGW's quotas.
pub(crate) fn no_room(status: u16, body: &[u8]) -> Option<std::io::ErrorKind> {
    let code = error_code(body);
    match code.as_deref() {
        Some("QuotaExceeded" | "XMinioAdminBucketQuotaExceeded") => {
            Some(std::io::ErrorKind::QuotaExceeded)
        }
        Some("XMinioStorageFull" | "StorageFull" | "InsufficientStorage") => {
            Some(std::io::ErrorKind::StorageFull)
        }
        _ if status == 507 => Some(std::io::ErrorKind::StorageFull),
        _ => None,
    }
}

/// The `<Code>` of an S3 error document.
fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(text[start..start + len].trim().to_string())
}

fn response_error(e: http::Error) -> Error {
    Error::new(ErrorKind::Unexpected, "building the response").set_source(e)
}

impl HttpTransport for Transport {
    async fn fetch(&self, req: Request<Buffer>) -> Result<Response<HttpBody>> {
        let uri = req.uri().clone();
        let is_head = req.method() == http::Method::HEAD;
        let (parts, body) = req.into_parts();
        let url = reqwest::Url::parse(&query_slashes_encoded(&uri)).map_err(|e| {
            Error::new(ErrorKind::Unexpected, "request url is invalid").set_source(e)
        })?;
        let sends_body = matches!(
            parts.method,
            http::Method::PUT | http::Method::POST | http::Method::PATCH
        );
        let mut builder = self
            .client
            .request(parts.method, url)
            .headers(parts.headers)
            .version(parts.version);
        if !body.is_empty() || sends_body {
            builder = builder.body(body.to_bytes());
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut resp = builder
            .send()
            .await
            .map_err(|e| failed("send http request", e))?;
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
        if resp.status().is_client_error() || resp.status().is_server_error() {
            // Error documents are small: read whole to learn whether it means "no room".
            let status = resp.status().as_u16();
            let body = resp
                .bytes()
                .await
                .map_err(|e| failed("read data from http response", e))?;
            if let Some(kind) = no_room(status, &body) {
                let detail = error_code(&body).unwrap_or_else(|| format!("HTTP {status}"));
                return Err(Error::new(ErrorKind::Unexpected, "the store has no room")
                    .with_operation("cairn::store::http")
                    .set_source(std::io::Error::new(kind, detail)));
            }
            let len = body.len() as u64;
            let stream = futures_util::stream::iter([Ok(Buffer::from(body))]);
            return out
                .body(HttpBody::new(stream, Some(len)))
                .map_err(response_error);
        }
        let stream = resp
            .bytes_stream()
            .map_err(|e| failed("read data from http response", e))
            .map_ok(Buffer::from)
            .try_filter(|b: &Buffer| futures_util::future::ready(!b.is_empty()));
        let stream: std::pin::Pin<
            Box<dyn futures_util::Stream<Item = Result<Buffer>> + Send + Sync>,
        > = Box::pin(stream);
        out.body(HttpBody::new(stream, content_length))
            .map_err(response_error)
    }
}

#[cfg(test)]
mod tests {
    use super::no_room;
    use std::io::ErrorKind;

    #[test]
    fn no_room_is_told_by_code_and_status() {
        let doc = |code: &str| {
            format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>x</Message></Error>")
        };
        assert_eq!(
            no_room(403, doc("QuotaExceeded").as_bytes()),
            Some(ErrorKind::QuotaExceeded)
        );
        assert_eq!(
            no_room(507, doc("XMinioStorageFull").as_bytes()),
            Some(ErrorKind::StorageFull)
        );
        assert_eq!(no_room(507, b""), Some(ErrorKind::StorageFull));
        assert_eq!(no_room(403, doc("AccessDenied").as_bytes()), None);
        assert_eq!(no_room(404, doc("NoSuchKey").as_bytes()), None);
        // A message that merely mentions a quota is not one.
        assert_eq!(
            no_room(
                400,
                b"<Error><Code>InvalidArgument</Code><Message>QuotaExceeded</Message></Error>"
            ),
            None
        );
    }
}
