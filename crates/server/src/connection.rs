//! What one connection may cost: a cap on open connections per source address, and deadlines
//! so that no connection sits idle, leaves a response unread or trickles a request body.
//!
//! [`ConnectionAcceptor`] sits under the TLS acceptor (so its deadlines cover the handshake
//! too). It refuses a connection beyond `max_connections_per_address` by closing it, and wraps
//! the socket in a [`GuardedStream`] and the connection's service in a [`TrackedService`]; the
//! two share an `Activity`. The service counts requests in flight until their response body
//! is fully sent, and gives each request body a [`TimedBody`]. The stream fails its I/O, which
//! makes hyper close the connection, when no request has been in flight for `idle_timeout`, or
//! when a write has made no progress for `idle_timeout` (a peer that stopped reading).
//!
//! Invariants: while a request is in flight the connection may be silent as long as its handler
//! likes (the journal's long-poll waits a minute); only its body is watched, and a body that
//! sends nothing for `body_timeout` or less than `min_body_rate` on average is cut off. A
//! per-address count lives only while the address has connections, so the table is never
//! larger than the number of open connections.
//!
//! The alternative that lost is one inactivity timeout on the socket: short enough for
//! strangers it cuts the long-poll, long enough for the long-poll it lets a peer that sends a
//! byte now and then hold a connection forever. Header reads are hyper's `header_read_timeout`
//! and the handshake is the rustls acceptor's `handshake_timeout` (both set in `serve`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, Response};
use axum_server::accept::Accept;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::limits::{Limits, SourceKey};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Open connections per source address.
pub struct ConnectionCounts {
    max: usize,
    open: Mutex<HashMap<SourceKey, usize>>,
    /// When a refusal was last logged, so a flood of refusals is one log line a minute.
    last_warned: Mutex<Option<std::time::Instant>>,
}

impl ConnectionCounts {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ConnectionCounts {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
            last_warned: Mutex::new(None),
        })
    }

    /// A slot for one more connection from `key`, or `None` at the cap.
    fn try_open(self: &Arc<Self>, key: SourceKey) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            drop(open);
            self.warn_refused(key);
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: self.clone(),
            key,
        })
    }

    fn warn_refused(&self, key: SourceKey) {
        let mut last = self.last_warned.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(std::time::Instant::now());
            tracing::warn!(
                source = %key,
                max = self.max,
                "refusing connections beyond the per-address cap (logged at most once a minute)"
            );
        }
    }

    /// Addresses with open connections.
    pub fn addresses(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// One open connection of an address; closing it (dropping the stream) gives the slot back.
struct Slot {
    counts: Arc<ConnectionCounts>,
    key: SourceKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What the stream and the service of one connection share: requests in flight, and since
/// when there have been none.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    /// The connection task, woken when the last request ends so it arms the idle deadline.
    waker: Mutex<Option<Waker>>,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            waker: Mutex::new(None),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    fn idle_since(&self) -> Option<Instant> {
        let since = *self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        (self.in_flight.load(Ordering::SeqCst) == 0).then_some(since)
    }

    fn remember(&self, cx: &Context<'_>) {
        let mut w = self.waker.lock().unwrap_or_else(|p| p.into_inner());
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
    }
}

/// One request in flight, from the service call until its response body is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Some(w) = self
                .0
                .waker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                w.wake();
            }
        }
    }
}

/// Set by a handler while its request body is idle by design (a commit stream between two
/// frames): that wait is not the client trickling a body, and the handler bounds it itself.
/// Each request carries its own in its extensions.
#[derive(Clone, Default)]
pub struct BodyIdle(Arc<std::sync::atomic::AtomicBool>);

impl BodyIdle {
    pub fn set(&self, idle: bool) {
        self.0.store(idle, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The deadlines of request bodies.
#[derive(Clone, Copy, Debug)]
struct BodyLimits {
    timeout: Duration,
    min_rate: u64,
}

/// Wraps an inner acceptor that yields TCP streams (`NoDelayAcceptor`). See the module doc.
#[derive(Clone)]
pub struct ConnectionAcceptor<A> {
    inner: A,
    counts: Arc<ConnectionCounts>,
    idle_timeout: Duration,
    body: BodyLimits,
    /// Proxies the operator runs: every client behind them shares their address, so they
    /// are not capped (the login throttle counts the clients behind them instead).
    proxies: crate::proxy::TrustedProxies,
}

impl<A> ConnectionAcceptor<A> {
    pub fn new(inner: A, counts: Arc<ConnectionCounts>, limits: &Limits) -> Self {
        ConnectionAcceptor {
            inner,
            counts,
            proxies: limits.trusted_proxies.clone(),
            idle_timeout: limits.idle_timeout,
            body: BodyLimits {
                timeout: limits.body_timeout,
                min_rate: limits.min_body_rate,
            },
        }
    }
}

type AcceptFuture<St, Sv> = Pin<Box<dyn Future<Output = io::Result<(St, Sv)>> + Send>>;

impl<A, S> Accept<TcpStream, S> for ConnectionAcceptor<A>
where
    A: Accept<TcpStream, S, Stream = TcpStream>,
    A::Future: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = GuardedStream<TcpStream>;
    type Service = TrackedService<A::Service>;
    type Future = AcceptFuture<Self::Stream, Self::Service>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let slot = match stream.peer_addr() {
            Ok(a) if self.proxies.trusts(a.ip()) => Some(None),
            Ok(a) => self.counts.try_open(SourceKey::of(a.ip())).map(Some),
            Err(_) => None,
        };
        let Some(slot) = slot else {
            // Dropping the stream closes it: the cheapest answer there is.
            return Box::pin(std::future::ready(Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "over the per-address connection cap",
            ))));
        };
        let inner = self.inner.accept(stream, service);
        let idle_timeout = self.idle_timeout;
        let body = self.body;
        Box::pin(async move {
            let (stream, service) = inner.await?;
            let activity = Activity::new();
            let stream = GuardedStream {
                inner: stream,
                activity: activity.clone(),
                idle_timeout,
                timer: Box::pin(tokio::time::sleep(idle_timeout)),
                write_stalled_since: None,
                _slot: slot,
            };
            Ok((
                stream,
                TrackedService {
                    inner: service,
                    activity,
                    body,
                },
            ))
        })
    }
}

/// A socket that fails its reads and writes once the connection has been idle, or a write
/// stalled, for `idle_timeout`.
pub struct GuardedStream<S> {
    inner: S,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    timer: Pin<Box<Sleep>>,
    write_stalled_since: Option<Instant>,
    /// `None` for a trusted proxy's connection, which is not counted.
    _slot: Option<Slot>,
}

impl<S> GuardedStream<S> {
    /// Ready with an error once a deadline has passed; otherwise arms the timer to wake the
    /// connection task at the nearest deadline.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        self.activity.remember(cx);
        let idle = self.activity.idle_since();
        let Some(since) = [idle, self.write_stalled_since].into_iter().flatten().min() else {
            return Poll::Pending;
        };
        let deadline = since + self.idle_timeout;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                if self.write_stalled_since.is_some_and(|w| w == since) {
                    "the peer read nothing for the idle timeout"
                } else {
                    "no request for the idle timeout"
                },
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => this.poll_deadline(cx).map(Err),
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => {
                this.write_stalled_since.get_or_insert_with(Instant::now);
                this.poll_deadline(cx).map(Err)
            }
            ready => {
                this.write_stalled_since = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => {
                this.write_stalled_since.get_or_insert_with(Instant::now);
                this.poll_deadline(cx).map(Err)
            }
            ready => {
                this.write_stalled_since = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The service of one connection: counts requests in flight and times their bodies.
#[derive(Clone)]
pub struct TrackedService<S> {
    inner: S,
    activity: Arc<Activity>,
    body: BodyLimits,
}

impl<S, B, RB> tower_service::Service<Request<B>> for TrackedService<S>
where
    S: tower_service::Service<Request<TimedBody<B>>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<TrackedBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let in_flight = self.activity.begin();
        let limits = self.body;
        let idle = BodyIdle::default();
        let mut req = req.map(|b| TimedBody::new(b, limits, idle.clone()));
        req.extensions_mut().insert(idle);
        let response = self.inner.call(req);
        Box::pin(async move {
            let r = response.await?;
            Ok(r.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
pub struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails when it sends nothing for `timeout` while its reader waits, or
/// less than `min_rate` bytes per second on average once the reader has waited `timeout`.
/// Only time spent waiting counts, so a handler that reads late is not blamed on the client.
pub struct TimedBody<B> {
    inner: B,
    limits: BodyLimits,
    idle: BodyIdle,
    timer: Option<Pin<Box<Sleep>>>,
    waiting_since: Option<Instant>,
    waited: Duration,
    received: u64,
}

impl<B> TimedBody<B> {
    fn new(inner: B, limits: BodyLimits, idle: BodyIdle) -> Self {
        TimedBody {
            inner,
            limits,
            idle,
            timer: None,
            waiting_since: None,
            waited: Duration::ZERO,
            received: 0,
        }
    }

    fn too_slow(&self) -> bool {
        let Some(beyond) = self.waited.checked_sub(self.limits.timeout) else {
            return false;
        };
        (self.received as f64) < self.limits.min_rate as f64 * beyond.as_secs_f64()
    }
}

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SlowBody(String);

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    this.received += data.map_or(0, |d| d.len() as u64);
                }
                if this.too_slow() {
                    return Poll::Ready(Some(Err(Box::new(SlowBody(format!(
                        "the request body arrived slower than {} bytes per second",
                        this.limits.min_rate
                    ))))));
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending if this.idle.get() => {
                // Idle by design: not counted, and the handler's own deadline applies.
                this.waiting_since = None;
                Poll::Pending
            }
            Poll::Pending => {
                let since = *this.waiting_since.get_or_insert_with(Instant::now);
                let deadline = since + this.limits.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(SlowBody(format!(
                        "the request body stalled: nothing arrived for {} s",
                        this.limits.timeout.as_secs_f64()
                    )))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
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
    use super::*;

    fn key(last: u8) -> SourceKey {
        SourceKey::of(std::net::IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn an_address_gets_its_cap_and_slots_come_back_when_closed() {
        let counts = ConnectionCounts::new(2);
        let a = counts.try_open(key(1)).expect("first");
        let _b = counts.try_open(key(1)).expect("second");
        assert!(counts.try_open(key(1)).is_none(), "third is over the cap");
        assert!(counts.try_open(key(2)).is_some(), "other addresses are not");
        drop(a);
        assert!(counts.try_open(key(1)).is_some());
    }

    #[test]
    fn the_table_forgets_addresses_without_connections() {
        let counts = ConnectionCounts::new(2);
        let slots: Vec<_> = (0..200).filter_map(|i| counts.try_open(key(i))).collect();
        assert_eq!(counts.addresses(), 200);
        drop(slots);
        assert_eq!(counts.addresses(), 0);
    }

    #[test]
    fn a_body_is_too_slow_only_after_the_first_timeout_of_waiting() {
        let limits = BodyLimits {
            timeout: Duration::from_secs(10),
            min_rate: 100,
        };
        let mut b = TimedBody::new((), limits, BodyIdle::default());
        b.waited = Duration::from_secs(10);
        assert!(!b.too_slow(), "within the grace period");
        b.waited = Duration::from_secs(20);
        b.received = 999;
        assert!(
            b.too_slow(),
            "999 bytes in 10 s beyond the grace is under 100/s"
        );
        b.received = 1000;
        assert!(!b.too_slow());
    }
}
