//! The cairn server: an HTTPS API in front of two stores, metadata in SQL ([`meta`]) and chunk
//! content in an [`cairn_store::ObjectStore`].
//!
//! [`datadir`] creates and opens the data folder (metadata, chunks, TLS, admin password);
//! [`api`] is the axum router; [`auth`] hashes passwords and issues tokens; [`maintenance`]
//! holds gc and check, which run beside a live server. The CLI calls [`bind`] and the admin
//! functions; nothing here prints except through `tracing`.

pub mod api;
pub mod auth;
pub mod datadir;
pub mod maintenance;
pub mod meta;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use datadir::DataDir;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{context}")]
    Db {
        context: String,
        #[source]
        source: rusqlite::Error,
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
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// True when the cause is a full disk (SQLite or the chunk store).
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::Db { source, .. } => {
                matches!(
                    source.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DiskFull)
                )
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
}

/// A server bound to its sockets, ready to serve.
pub struct BoundServer {
    pub addrs: Vec<SocketAddr>,
    listeners: Vec<std::net::TcpListener>,
    tls: axum_server::tls_rustls::RustlsConfig,
    state: Arc<api::AppState>,
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
        let l =
            std::net::TcpListener::bind(addr).map_err(Error::io(format!("listening on {addr}")))?;
        l.set_nonblocking(true)
            .map_err(Error::io(format!("listening on {addr}")))?;
        addrs.push(
            l.local_addr()
                .map_err(Error::io(format!("listening on {addr}")))?,
        );
        listeners.push(l);
    }
    let state = api::AppState::new(data, opts.token_ttl)?;
    Ok(BoundServer {
        addrs,
        listeners,
        tls: axum_server::tls_rustls::RustlsConfig::from_config(tls),
        state,
    })
}

impl BoundServer {
    /// Serves until ctrl-c or SIGTERM, then lets requests in flight finish.
    ///
    /// # Errors
    /// When a listener fails.
    pub async fn serve(self) -> Result<()> {
        let handle = axum_server::Handle::new();
        let app = api::router(self.state);
        let mut tasks = tokio::task::JoinSet::new();
        for l in self.listeners {
            // TCP_NODELAY: a streamed body's last small write must not wait ~40 ms for the
            // client's delayed ACK (it made every small download 10x slower).
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(self.tls.clone())
                .acceptor(axum_server::accept::NoDelayAcceptor::new());
            let server = axum_server::from_tcp(l)
                .acceptor(acceptor)
                .handle(handle.clone());
            let app = app.clone();
            tasks.spawn(async move { server.serve(app.into_make_service()).await });
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
