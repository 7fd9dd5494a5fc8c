//! The cairn server: an HTTPS API in front of two stores, metadata in SQL ([`meta`]) and chunk
//! content in an [`cairn_store::ObjectStore`].
//!
//! [`datadir`] creates and opens the data folder (metadata, chunks, TLS, admin password);
//! [`api`] is the axum router; [`auth`] hashes passwords and issues tokens; [`login`] admits
//! and slows down login attempts; [`connection`] bounds what each connection may cost, within
//! the [`Limits`] of [`limits`]; [`maintenance`] holds gc and check, which run beside a live
//! server; [`migration`] moves an embedded server to PostgreSQL (and S3). The CLI calls
//! [`bind`] and the admin functions; nothing here prints except through `tracing`.

pub mod admin;
pub mod api;
pub mod auth;
pub mod cloud;
pub mod connection;
pub mod datadir;
pub mod directory;
pub mod limits;
pub mod login;
pub mod maintenance;
pub mod meta;
pub mod metrics;
pub mod migration;
pub mod proxy;
pub mod repack;
pub mod share;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use datadir::{DataDir, StoreChoice};
pub use limits::Limits;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{context}")]
    Db {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The metadata store on PostgreSQL failed; `context` says at what (and where, without
    /// the password).
    #[error("{context}")]
    Pg {
        context: String,
        #[source]
        source: postgres::Error,
    },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    #[error("{context}")]
    Tls {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Corrupt(String),
    /// A user's quota would be exceeded; the text says by whom and by how much.
    #[error("{0}")]
    Quota(String),
    /// Work that runs one at a time is running elsewhere (a gc run).
    #[error("{0}")]
    Busy(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// True when the cause is a full disk (SQLite, PostgreSQL or the chunk store).
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::Db { source, .. } => {
                matches!(
                    source.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DiskFull)
                )
            }
            Error::Pg { source, .. } => {
                source.code() == Some(&postgres::error::SqlState::DISK_FULL)
            }
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            Error::Store(cairn_store::Error::Full { .. }) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How `cairn server run` was asked to serve.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub data: PathBuf,
    pub listen: Vec<SocketAddr>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub token_ttl: Duration,
    pub limits: Limits,
    /// A plain-HTTP address that serves `/metrics` to anyone (else: admins on the API).
    pub metrics_listen: Option<SocketAddr>,
}

/// A server bound to its sockets, ready to serve.
pub struct BoundServer {
    pub addrs: Vec<SocketAddr>,
    /// Where `/metrics` is served without a token, when asked for.
    pub metrics_addr: Option<SocketAddr>,
    metrics_listener: Option<std::net::TcpListener>,
    listeners: Vec<std::net::TcpListener>,
    tls: axum_server::tls_rustls::RustlsConfig,
    state: Arc<api::AppState>,
    limits: Limits,
}

/// Opens the data folder and binds every listen address (port 0 picks a free port).
///
/// # Errors
/// When the data folder cannot be opened or created, or an address cannot be bound.
pub async fn bind(opts: &ServerOptions, data: &DataDir) -> Result<BoundServer> {
    let tls = data.tls_config(opts.cert.as_deref(), opts.key.as_deref())?;
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for addr in &opts.listen {
        let (l, a) = listen_on(*addr)?;
        addrs.push(a);
        listeners.push(l);
    }
    let (metrics_listener, metrics_addr) = match opts.metrics_listen {
        Some(addr) => {
            let (l, a) = listen_on(addr)?;
            (Some(l), Some(a))
        }
        None => (None, None),
    };
    let state = api::AppState::new(data, opts.token_ttl, &opts.limits)?;
    record_start(data, &addrs);
    Ok(BoundServer {
        addrs,
        metrics_addr,
        metrics_listener,
        listeners,
        tls: axum_server::tls_rustls::RustlsConfig::from_config(tls),
        state,
        limits: opts.limits.clone(),
    })
}

/// A non-blocking listener on `addr` and the address it got (port 0 picks one).
fn listen_on(addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr)> {
    let ctx = || format!("listening on {addr}");
    let l = std::net::TcpListener::bind(addr).map_err(Error::io(ctx()))?;
    l.set_nonblocking(true).map_err(Error::io(ctx()))?;
    let local = l.local_addr().map_err(Error::io(ctx()))?;
    Ok((l, local))
}

/// The server's start in the activity log, after dropping what is past its bounds (a server
/// that never runs gc keeps its log bounded too).
fn record_start(data: &DataDir, addrs: &[SocketAddr]) {
    use meta::{Actor, EventKind, Outcome};
    if let Err(e) = data.meta.prune_events() {
        tracing::warn!(error = %e, "could not prune the activity log");
    }
    let listening: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let detail = format!(
        "cairn {}, listening on {}",
        env!("CARGO_PKG_VERSION"),
        listening.join(" ")
    );
    data.meta.record(
        EventKind::ServerStart,
        &Actor::console(),
        "",
        Outcome::Ok,
        &detail,
    );
}

impl BoundServer {
    /// The API's state, for work that runs beside the server (the cloud task runner).
    pub fn state(&self) -> Arc<api::AppState> {
        self.state.clone()
    }

    /// Serves until ctrl-c or SIGTERM, then lets requests in flight finish.
    ///
    /// # Errors
    /// When a listener fails.
    pub async fn serve(self) -> Result<()> {
        let handle = axum_server::Handle::new();
        let state = self.state.clone();
        if let Some(l) = self.metrics_listener {
            let l =
                tokio::net::TcpListener::from_std(l).map_err(Error::io("listening for metrics"))?;
            let app = api::metrics_router(self.state.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
        }
        let app = api::router(self.state);
        // One table for every listener: the cap is per address, whichever port it dials.
        let counts = connection::ConnectionCounts::new(self.limits.max_connections_per_address);
        let mut tasks = tokio::task::JoinSet::new();
        for l in self.listeners {
            // TCP_NODELAY: a streamed body's last small write must not wait ~40 ms for the
            // client's delayed ACK (it made every small download 10x slower).
            let guarded = connection::ConnectionAcceptor::new(
                axum_server::accept::NoDelayAcceptor::new(),
                counts.clone(),
                &self.limits,
            );
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(self.tls.clone())
                .handshake_timeout(self.limits.handshake_timeout)
                .acceptor(guarded);
            let mut server = axum_server::from_tcp(l)
                .acceptor(acceptor)
                .handle(handle.clone());
            configure_http(server.http_builder(), &self.limits);
            let app = app.clone();
            tasks.spawn(async move {
                server
                    .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                    .await
            });
        }
        let shutdown = handle.clone();
        tokio::spawn(async move {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
            state.stop_streams();
            shutdown.graceful_shutdown(Some(Duration::from_secs(10)));
        });
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::io("serving")(e)),
                Err(e) => return Err(Error::io("serving")(std::io::Error::other(e))),
            }
        }
        Ok(())
    }
}

/// Largest HTTP/2 frame either side of a cairn connection asks for (the client sets the same).
pub const MAX_FRAME_SIZE: u32 = 256 * 1024;

/// Header and HTTP/2 limits of hyper (the rest of [`Limits`] is [`connection`]'s).
fn configure_http(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limits: &Limits,
) {
    use hyper_util::rt::TokioTimer;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    // Pings find peers that vanished without closing; the stream cap bounds what one
    // connection can ask for at once. Frames of up to 256 KiB rather than 16: an upload's body
    // reaches its handler in a sixteenth of the pieces (each a wake-up between threads).
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_frame_size(MAX_FRAME_SIZE)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(64 * 1024);
}
