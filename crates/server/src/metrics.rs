//! Prometheus metrics in the text exposition format, written by hand (a few counters do not
//! need a crate). `GET /metrics` answers an administrator's bearer token on the API's address,
//! or anyone on the separate `--metrics-listen` address (bind that to a private network).
//!
//! Requests are counted by route pattern (`/api/v1/folders/{folder}/commit`), never by raw
//! path, so the series stay few; bytes are counted as bodies travel. What is stored (chunks,
//! bytes, dedup ratio) and gc's runs are read from the metadata at scrape time: gc runs in
//! another process (`cairn server gc`) and records its figures there.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::meta::Meta;

/// The server's counters, shared by every request.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
    commits: AtomicU64,
}

impl Metrics {
    pub fn commit_accepted(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    fn request_done(&self, method: &str, route: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((method.to_string(), route.to_string(), status))
            .or_insert(0) += 1;
    }

    /// The exposition text. `journal_followers` is the number of open journal streams,
    /// `login_failures` the logins refused since the start.
    ///
    /// # Errors
    /// When the metadata cannot be read.
    pub fn render(
        &self,
        meta: &Meta,
        journal_followers: usize,
        login_failures: u64,
    ) -> crate::Result<String> {
        let stored = meta.stored_totals()?;
        let gc = meta.gc_runs()?;
        let mut out = String::new();
        out.push_str("# HELP cairn_http_requests_total HTTP requests answered, by route pattern and status.\n");
        out.push_str("# TYPE cairn_http_requests_total counter\n");
        for ((method, route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "cairn_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let dedup = if stored.bytes == 0 {
            1.0
        } else {
            stored.referenced as f64 / stored.bytes as f64
        };
        for (name, kind, help, value) in [
            (
                "cairn_http_request_bytes_total",
                "counter",
                "Request body bytes received.",
                load(&self.bytes_in).to_string(),
            ),
            (
                "cairn_http_response_bytes_total",
                "counter",
                "Response body bytes sent.",
                load(&self.bytes_out).to_string(),
            ),
            (
                "cairn_commits_total",
                "counter",
                "Commit requests accepted.",
                load(&self.commits).to_string(),
            ),
            (
                "cairn_login_failures_total",
                "counter",
                "Logins refused for a wrong name or password.",
                login_failures.to_string(),
            ),
            (
                "cairn_journal_followers",
                "gauge",
                "Journal streams open now.",
                journal_followers.to_string(),
            ),
            (
                "cairn_chunks_stored",
                "gauge",
                "Chunks in the chunk store.",
                stored.chunks.to_string(),
            ),
            (
                "cairn_stored_bytes",
                "gauge",
                "Bytes of the chunks in the chunk store.",
                stored.bytes.to_string(),
            ),
            (
                "cairn_referenced_bytes",
                "gauge",
                "Bytes the kept versions reference (before deduplication).",
                stored.referenced.to_string(),
            ),
            (
                "cairn_dedup_ratio",
                "gauge",
                "Referenced bytes per stored byte.",
                format!("{dedup:.4}"),
            ),
            (
                "cairn_gc_runs_total",
                "counter",
                "gc runs completed.",
                gc.runs.to_string(),
            ),
            (
                "cairn_gc_duration_seconds_total",
                "counter",
                "Time spent in gc runs.",
                format!("{:.3}", gc.seconds),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        Ok(out)
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: counts the request by route pattern and status, and its body bytes both ways.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().as_str().to_string();
    let req = req.map(|b| Body::new(Counted::new(b, metrics.bytes_in.clone())));
    let resp = next.run(req).await;
    metrics.request_done(&method, &route, resp.status().as_u16());
    resp.map(|b| Body::new(Counted::new(b, metrics.bytes_out.clone())))
}

/// A body that adds the bytes of its data frames to a counter as they pass.
struct Counted {
    inner: Body,
    counter: Arc<AtomicU64>,
}

impl Counted {
    fn new(inner: Body, counter: Arc<AtomicU64>) -> Self {
        Counted { inner, counter }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
