//! A seeded fault-injecting HTTP transport for tests (`test-hooks` builds only): what a bad
//! network or a broken server does to a cloud task. The same seed gives the same faults.
//!
//! `CAIRN_TEST_CLOUD_FAULTS=seed=7,rate=20,kinds=drop+lost+busy+slow+corrupt+empty` makes
//! `rate` percent of requests fail in one of the given ways:
//! - `drop`: the request never reaches the server (a reset connection);
//! - `lost`: the server does it, the answer is lost (so the retry is a duplicate);
//! - `busy`: a 503 answer without the server seeing the request;
//! - `slow`: a wait, then a timeout;
//! - `corrupt`: one byte of a downloaded body flipped;
//! - `empty`: an S3 listing answered as empty (a lying or broken server);
//! - `refuse`: a rename (WebDAV `MOVE`) answered 412, as a server that will not rename over a
//!   file does; other requests pass.
//!
//! `only=PUT+MOVE` limits the faults to requests of those methods (every method without it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use http::{Request, Response};
use opendal::{Buffer, Error, ErrorKind, HttpBody, HttpTransport, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Drop,
    Lost,
    Busy,
    Slow,
    Corrupt,
    Empty,
    Refuse,
}

/// What faults to inject, parsed from the environment variable's text.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    seed: u64,
    rate: u64,
    kinds: Vec<Kind>,
    /// The methods faults apply to (empty: all).
    only: Vec<String>,
}

impl FaultPlan {
    /// # Errors
    /// A malformed description, saying which part.
    pub fn parse(text: &str) -> std::result::Result<FaultPlan, String> {
        let mut plan = FaultPlan {
            seed: 1,
            rate: 10,
            kinds: vec![Kind::Drop, Kind::Lost, Kind::Busy],
            only: Vec::new(),
        };
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("fault plan part {part:?}: give KEY=VALUE"))?;
            match k {
                "seed" => plan.seed = v.parse().map_err(|_| format!("bad seed {v:?}"))?,
                "rate" => plan.rate = v.parse().map_err(|_| format!("bad rate {v:?}"))?,
                "kinds" => {
                    plan.kinds = v
                        .split('+')
                        .map(|k| match k {
                            "drop" => Ok(Kind::Drop),
                            "lost" => Ok(Kind::Lost),
                            "busy" => Ok(Kind::Busy),
                            "slow" => Ok(Kind::Slow),
                            "corrupt" => Ok(Kind::Corrupt),
                            "empty" => Ok(Kind::Empty),
                            "refuse" => Ok(Kind::Refuse),
                            other => Err(format!("unknown fault {other:?}")),
                        })
                        .collect::<std::result::Result<_, _>>()?
                }
                "only" => plan.only = v.split('+').map(str::to_uppercase).collect(),
                other => return Err(format!("unknown fault plan key {other:?}")),
            }
        }
        Ok(plan)
    }
}

pub struct FaultTransport<T> {
    inner: T,
    plan: FaultPlan,
    state: Mutex<u64>,
    pub injected: AtomicU64,
}

impl<T> FaultTransport<T> {
    pub fn new(inner: T, plan: FaultPlan) -> Self {
        let seed = plan.seed.max(1);
        FaultTransport {
            inner,
            plan,
            state: Mutex::new(seed),
            injected: AtomicU64::new(0),
        }
    }

    /// The next pseudo-random number (xorshift: reproducible from the seed).
    fn next(&self) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    /// The fault for this request, if one applies to it.
    fn pick(&self, req: &Request<Buffer>) -> Option<Kind> {
        if !self.plan.only.is_empty() && !self.plan.only.iter().any(|m| m == req.method().as_str())
        {
            return None;
        }
        if self.next() % 100 >= self.plan.rate || self.plan.kinds.is_empty() {
            return None;
        }
        let kind = self.plan.kinds[(self.next() % self.plan.kinds.len() as u64) as usize];
        let listing = is_listing(req);
        let get = req.method() == http::Method::GET;
        let fits = match kind {
            Kind::Corrupt => get && !listing,
            Kind::Empty => listing,
            Kind::Refuse => req.method().as_str() == "MOVE",
            _ => true,
        };
        fits.then_some(kind)
    }
}

fn is_listing(req: &Request<Buffer>) -> bool {
    let q = req.uri().query().unwrap_or("");
    req.method() == http::Method::GET && (q.contains("list-type") || q.contains("delimiter"))
}

fn injected(what: &'static str) -> Error {
    Error::new(ErrorKind::Unexpected, what)
        .with_operation("cairn::faults")
        .set_temporary()
}

fn answer(status: u16, body: &'static [u8]) -> Result<Response<HttpBody>> {
    let stream = futures_util::stream::iter([Ok(Buffer::from(body))]);
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(HttpBody::new(stream, Some(body.len() as u64)))
        .map_err(|e| Error::new(ErrorKind::Unexpected, "building an injected answer").set_source(e))
}

const EMPTY_LISTING: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><IsTruncated>false</IsTruncated>\
<KeyCount>0</KeyCount></ListBucketResult>";

impl<T: HttpTransport> HttpTransport for FaultTransport<T> {
    async fn fetch(&self, req: Request<Buffer>) -> Result<Response<HttpBody>> {
        let Some(kind) = self.pick(&req) else {
            return self.inner.fetch(req).await;
        };
        self.injected.fetch_add(1, Ordering::Relaxed);
        match kind {
            Kind::Drop => Err(injected("injected fault: connection reset before sending")),
            Kind::Busy => answer(503, b"<Error><Code>SlowDown</Code></Error>"),
            Kind::Slow => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(injected(
                    "injected fault: the server did not answer in time",
                ))
            }
            Kind::Lost => {
                let _ = self.inner.fetch(req).await;
                Err(injected("injected fault: the answer was lost"))
            }
            Kind::Empty => answer(200, EMPTY_LISTING),
            Kind::Refuse => answer(412, b"<error>will not move over a file</error>"),
            Kind::Corrupt => {
                let resp = self.inner.fetch(req).await?;
                let (parts, body) = resp.into_parts();
                let body = body.map_inner(|inner| {
                    let mut first = true;
                    Box::new(inner.map(move |piece| {
                        let piece = piece?;
                        if !first || piece.is_empty() {
                            return Ok(piece);
                        }
                        first = false;
                        let mut bytes = piece.to_vec();
                        bytes[0] ^= 0x5a;
                        Ok(Buffer::from(bytes))
                    }))
                });
                Ok(Response::from_parts(parts, body))
            }
        }
    }
}
