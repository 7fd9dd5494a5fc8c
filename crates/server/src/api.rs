//! The HTTP API (`/api/v1/...`): login, chunk presence and upload, commit (as requests or on a
//! stream), journal long-poll, tree, versions and content with byte ranges.
//!
//! Handlers check the caller's token and folder access, then run metadata work on the blocking
//! pool. [`ApiError`] is the one place errors become HTTP statuses: a 5xx body says nothing
//! internal, the log says everything. Every path and id from a request is parsed into a model
//! type before use, so `..`, absolute paths and NUL bytes are refused with a 400 naming them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use bytes::BytesMut;
use cairn_model::{ChunkId, ContentHash, DeviceId, EntryKind, PackId, RelPath, Seq};
use cairn_protocol::{
    frame, Access, Change, ChangeResult, ChunkListResponse, CommitResponse, ContentsRequest,
    DamagedResponse, ErrorBody, FolderInfo, Inline, JournalResponse, LoginRequest, LoginResponse,
    MissingRequest, MissingResponse, UploadResponse, VersionInfo, VersionsResponse,
    MAX_BATCH_BYTES, MAX_BATCH_FILES, MAX_COMMIT_CHANGES, MAX_COMMIT_CHUNKS, MAX_INLINE_CHANGES,
    MAX_INLINE_COMMIT, MAX_INLINE_FILE, MAX_INLINE_JOURNAL, MAX_MISSING_IDS, MAX_WAIT_SECS,
};
use cairn_store::{ObjectKey, ObjectStore};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::watch;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::decompression::RequestDecompressionLayer;

use crate::auth;
use crate::datadir::DataDir;
use crate::limits::Limits;
use crate::login::{LoginGate, Refusal};
use crate::meta::{Author, EventKind, Folder, Meta, User, PACK_MAX};
use crate::Error;
use authn::Denied;

mod admin;
mod authn;
mod cloud;
mod commit_stream;
mod dav;
mod shares;
mod stream;
mod tree_body;
mod web;

/// Largest chunk-upload request body.
pub const MAX_UPLOAD_BODY: usize = 64 * 1024 * 1024;
/// Largest login request body: a name of 64 bytes and a password fit many times over.
const MAX_LOGIN_BODY: usize = 16 * 1024;
/// Largest request body of every other endpoint, counted after decompression for the bodies
/// that may come gzipped (commit, "which are missing").
pub const MAX_JSON_BODY: usize = 32 * 1024 * 1024;
/// What a login answer says this server understands beyond the first API.
pub const FEATURES: [&str; 4] = [
    cairn_protocol::FEATURE_TOKEN_HEADER,
    cairn_protocol::FEATURE_DERIVED_INLINE,
    cairn_protocol::FEATURE_JOURNAL_STREAM,
    cairn_protocol::FEATURE_COMMIT_STREAM,
];
/// Largest cloud connection or task request: options, secrets and filters fit many times over.
const MAX_CLOUD_BODY: usize = 256 * 1024;
/// JSON answers at least this long are gzipped for a client that accepts it; shorter ones gain
/// too little to pay for the work.
pub const COMPRESS_ABOVE: u16 = 512;

pub struct AppState {
    meta: Arc<Meta>,
    store: Arc<dyn ObjectStore>,
    server_id: String,
    tokens: auth::TokenKey,
    token_ttl: Duration,
    login: LoginGate,
    /// Proxies whose `X-Forwarded-For` is believed.
    proxies: crate::proxy::TrustedProxies,
    heads: Mutex<HashMap<i64, watch::Sender<i64>>>,
    /// When a throttled login was last noted in the activity log, per source address.
    throttle_noted: Mutex<HashMap<(crate::limits::SourceKey, EventKind), std::time::Instant>>,
    /// Ends the thread that follows other instances' heads (`follow_other_instances`).
    heads_stop: Arc<std::sync::atomic::AtomicBool>,
    /// The claims this instance renewed lately: (user, device) -> (agent instance, when). The
    /// claims themselves are in the store (`meta/claims.rs`).
    agents: Mutex<HashMap<(i64, String), (String, std::time::Instant)>>,
    /// Test hook (`CAIRN_TEST_COMMIT_PAUSE_MS`): sleep after each change of a commit so a test can
    /// kill the server in the middle of one.
    commit_pause: Option<Duration>,
    /// Test hook (`CAIRN_TEST_FAIL_UPLOADS=N`): the next N chunk uploads answer 503, as a
    /// server in trouble would.
    failing_uploads: std::sync::atomic::AtomicU64,
    /// Open journal streams, per user.
    streams: Arc<stream::StreamCounts>,
    /// Open commit streams, per user.
    commit_streams: Arc<stream::StreamCounts>,
    /// Set when the server stops, so open journal streams end rather than hold it up.
    stopping: watch::Sender<bool>,
    /// Test hook (`CAIRN_TEST_ACCESS_LOG`): log requests, and each journal stream frame.
    access_log: bool,
    /// Wakes the cloud task runner: a task was added or asked to run.
    cloud_wake: Arc<tokio::sync::Notify>,
    /// Looks at a new cloud task's path (set by the binary that runs the tasks); without it,
    /// no encrypted task can be added through the API.
    cloud_attach: std::sync::OnceLock<Arc<dyn crate::cloud::CloudAttach>>,
    /// Where directory users' passwords are checked (`[ldap]` of the config), if anywhere.
    directory: std::sync::OnceLock<Arc<crate::directory::Directory>>,
    /// Test hook (`CAIRN_TEST_NO_COMMIT_STREAM`): neither offer nor serve commit streams.
    no_commit_stream: bool,
    /// Files the browser is uploading, in parts.
    web_uploads: web::upload::Staging,
    /// Counters for `/metrics`.
    metrics: Arc<crate::metrics::Metrics>,
    /// HTTP Basic logins of WebDAV clients verified lately (`api/dav/login.rs`).
    dav_logins: dav::BasicCache,
}

/// A test hook's value from the environment: only in builds with the `test-hooks` feature,
/// which the release build does not enable, so no environment can slow or fail a real server.
#[cfg(feature = "test-hooks")]
pub(crate) fn test_hook<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[cfg(not(feature = "test-hooks"))]
pub(crate) fn test_hook<T>(_name: &str) -> Option<T> {
    None
}

impl AppState {
    /// # Errors
    /// When the thread that follows other instances' commits cannot start.
    pub fn new(data: &DataDir, token_ttl: Duration, limits: &Limits) -> crate::Result<Arc<Self>> {
        let commit_pause =
            test_hook::<u64>("CAIRN_TEST_COMMIT_PAUSE_MS").map(Duration::from_millis);
        let state = Arc::new(AppState {
            meta: data.meta.clone(),
            store: data.store.clone(),
            server_id: data.server_id.clone(),
            tokens: auth::TokenKey::new(data.token_secret.as_bytes()),
            token_ttl,
            login: LoginGate::new(limits)?,
            proxies: limits.trusted_proxies.clone(),
            heads: Mutex::new(HashMap::new()),
            heads_stop: Arc::default(),
            throttle_noted: Mutex::new(HashMap::new()),
            agents: Mutex::new(HashMap::new()),
            commit_pause,
            failing_uploads: std::sync::atomic::AtomicU64::new(
                test_hook("CAIRN_TEST_FAIL_UPLOADS").unwrap_or(0),
            ),
            streams: Arc::default(),
            commit_streams: Arc::new(stream::StreamCounts::new(
                commit_stream::MAX_STREAMS_PER_USER,
                commit_stream::MAX_STREAMS,
            )),
            stopping: watch::channel(false).0,
            access_log: test_hook::<u8>("CAIRN_TEST_ACCESS_LOG").is_some(),
            cloud_wake: Arc::default(),
            cloud_attach: std::sync::OnceLock::new(),
            directory: std::sync::OnceLock::new(),
            no_commit_stream: test_hook::<u8>("CAIRN_TEST_NO_COMMIT_STREAM").is_some(),
            web_uploads: web::upload::Staging::new(data.root.join("web-uploads")),
            metrics: Arc::default(),
            dav_logins: dav::BasicCache::new(),
        });
        state.follow_other_instances()?;
        if state.meta.shared() {
            state.login.share_through(state.meta.clone());
        }
        Ok(state)
    }

    /// The server is stopping: open journal streams end now (their readers ask again
    /// elsewhere, or after the restart), so they do not hold up the graceful shutdown.
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
        self.heads_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Journal streams open now.
    pub fn open_streams(&self) -> usize {
        self.streams.open()
    }

    /// The Prometheus exposition of this server's counters.
    ///
    /// # Errors
    /// When the metadata cannot be read.
    pub fn metrics_text(&self) -> crate::Result<String> {
        self.metrics
            .render(&self.meta, self.open_streams(), self.login.failures())
    }

    /// A token for `user` on `device`, as a login would give: the cloud task runner acts as a
    /// task's owner with it.
    pub fn issue_token(&self, user: &User, device: &str) -> String {
        self.tokens.issue(&auth::Claims {
            user_id: user.id,
            token_gen: user.token_gen,
            expires_ns: now_ns().saturating_add(self.token_ttl.as_nanos() as i64),
            device: device.to_string(),
        })
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    pub fn meta(&self) -> Arc<Meta> {
        self.meta.clone()
    }

    /// Notified when a cloud task is added or asked to run.
    pub fn cloud_wake(&self) -> Arc<tokio::sync::Notify> {
        self.cloud_wake.clone()
    }

    /// Lets the users of `directory` log in (once; a second call changes nothing).
    pub fn set_directory(&self, directory: Arc<crate::directory::Directory>) {
        let _ = self.directory.set(directory);
    }

    /// Gives the API its look at new cloud tasks' paths (once; a second call changes nothing).
    pub fn set_cloud_attach(&self, attach: Arc<dyn crate::cloud::CloudAttach>) {
        let _ = self.cloud_attach.set(attach);
    }

    /// The folder's head, as commits move it: a cloud task follows its folder with this.
    pub fn folder_head(&self, folder: &Folder) -> watch::Receiver<i64> {
        self.head_watch(folder)
    }

    fn head_watch(&self, folder: &Folder) -> watch::Receiver<i64> {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads
            .entry(folder.id)
            .or_insert_with(|| watch::channel(folder.head.0).0)
            .subscribe()
    }

    /// Records that agent `instance` of `device` is alive; refuses a second live instance.
    /// A `probe` (a one-off `run --once`) is refused the same way but records nothing, so the
    /// computer's own agent may start right after it. The claim is a row in the store, so
    /// every server instance behind a load balancer agrees; this instance renews its own
    /// claims at most every [`RENEW`] (journal frames would otherwise write one per frame).
    async fn claim(
        self: &Arc<Self>,
        user: &User,
        device: &DeviceId,
        instance: &str,
        probe: bool,
    ) -> ApiResult<()> {
        const LIVE: Duration = Duration::from_secs(90);
        const RENEW: Duration = Duration::from_secs(20);
        let key = (user.id, device.0.clone());
        let now = std::time::Instant::now();
        if !probe {
            let mut renewed = self.agents.lock().unwrap_or_else(|p| p.into_inner());
            if renewed
                .get(&key)
                .is_some_and(|(i, at)| i == instance && now.duration_since(*at) < RENEW)
            {
                return Ok(());
            }
            // Dropped here, so the map stays as small as the set of live agents.
            renewed.retain(|_, (_, at)| now.duration_since(*at) < RENEW);
        }
        let (user_id, dev, inst) = (user.id, device.0.clone(), instance.to_string());
        let times = (now_ns(), LIVE.as_nanos() as i64);
        let claim = blocking(self, move |m| {
            m.claim_device(user_id, &dev, &inst, times, probe)
        })
        .await?;
        match claim {
            crate::meta::Claim::Held => {
                if !probe {
                    let mut renewed = self.agents.lock().unwrap_or_else(|p| p.into_inner());
                    renewed.insert(key, (instance.to_string(), now));
                }
                Ok(())
            }
            crate::meta::Claim::Taken { seen_ago_ns } => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "another cairn agent with this device identity ({device}) is running, seen {}s ago: this \
                     configuration folder was probably copied from another computer. Run `cairn connect` again \
                     here to give this computer its own identity",
                    seen_ago_ns / 1_000_000_000
                ),
            )),
        }
    }

    /// Forgets agent `instance` of `device` (it stopped), so a `run --once` or a new agent on
    /// that computer need not wait for the claim to age out.
    async fn release(
        self: &Arc<Self>,
        user: &User,
        device: &DeviceId,
        instance: &str,
    ) -> ApiResult<()> {
        let key = (user.id, device.0.clone());
        {
            let mut renewed = self.agents.lock().unwrap_or_else(|p| p.into_inner());
            if renewed.get(&key).is_some_and(|(i, _)| i == instance) {
                renewed.remove(&key);
            }
        }
        let (user_id, dev, inst) = (user.id, device.0.clone(), instance.to_string());
        blocking(self, move |m| m.release_device(user_id, &dev, &inst)).await
    }

    /// Records in the activity log that password attempts from `peer` (at a login, `kind`
    /// `LoginThrottled`, or at a link's password, `ShareThrottled`) are being refused before
    /// any password work (429): once per address and kind a minute, so a flood costs the log
    /// one row a minute per address, and the table of when each was last noted stays bounded.
    pub(crate) async fn note_throttled(
        self: &Arc<Self>,
        kind: EventKind,
        target: String,
        peer: SocketAddr,
        way: &str,
    ) {
        const EVERY: Duration = Duration::from_secs(60);
        const MAX_NOTED: usize = 4096;
        let key = (crate::limits::SourceKey::of(peer.ip()), kind);
        {
            let mut noted = self
                .throttle_noted
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            if noted
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < EVERY)
            {
                return;
            }
            if noted.len() >= MAX_NOTED {
                noted.retain(|_, t| now.duration_since(*t) < EVERY);
                if noted.len() >= MAX_NOTED {
                    return;
                }
            }
            noted.insert(key, now);
        }
        let detail = format!("{way}: too many attempts, answered 429");
        let _ = blocking(self, move |m| {
            let by = crate::meta::Actor::visitor(peer.ip());
            m.record(kind, &by, &target, crate::meta::Outcome::Failed, &detail);
            Ok(())
        })
        .await;
    }

    /// A commit moved `folder_id`'s head: its followers here wake, and on a shared store the
    /// other instances are told, so theirs wake too.
    fn announce(&self, folder_id: i64, head: Seq) {
        self.wake(folder_id, head.0);
        if self.meta.shared() {
            let meta = self.meta.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = meta.publish_head(folder_id, head.0) {
                    tracing::warn!(folder_id, error = %e, "could not tell the other instances of a commit");
                }
            });
        }
    }

    /// Wakes the followers of `folder_id` here if `head` is past what they last saw (heads
    /// from other instances may arrive out of order).
    fn wake(&self, folder_id: i64, head: i64) {
        let heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = heads.get(&folder_id) {
            tx.send_if_modified(|seen| {
                let newer = head > *seen;
                if newer {
                    *seen = head;
                }
                newer
            });
        }
    }

    /// Follows the heads other instances publish (a shared store only), until the server
    /// stops.
    fn follow_other_instances(self: &Arc<Self>) -> crate::Result<()> {
        let (on_head, on_resync) = (Arc::downgrade(self), Arc::downgrade(self));
        let each = Box::new(move |folder, head| {
            if let Some(state) = on_head.upgrade() {
                state.wake(folder, head);
            }
        });
        let resync = Box::new(move || {
            let Some(state) = on_resync.upgrade() else {
                return;
            };
            match state.meta.folder_heads() {
                Ok(heads) => heads.into_iter().for_each(|(f, h)| state.wake(f, h)),
                Err(e) => tracing::warn!(error = %e, "could not read the folder heads"),
            }
        });
        self.meta
            .follow_heads(each, resync, self.heads_stop.clone())
            .map(drop)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route(
            "/login",
            post(login).layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route("/folders", get(folders))
        .route("/agent", post(agent))
        .route(
            "/folders/{folder}/chunks/missing",
            post(missing).layer(RequestDecompressionLayer::new()),
        )
        // The body is read as it arrives; `decode_upload` holds it to `MAX_UPLOAD_BODY`.
        .route("/folders/{folder}/chunks", post(upload))
        .route("/folders/{folder}/chunks/{id}", get(chunk))
        .route(
            "/folders/{folder}/commit",
            post(commit).layer(RequestDecompressionLayer::new()),
        )
        // Its body is read frame by frame within the stream's own caps.
        .route(
            "/folders/{folder}/commit-stream",
            post(commit_stream::open).layer(DefaultBodyLimit::disable()),
        )
        .route("/folders/{folder}/journal", get(journal))
        .route("/folders/{folder}/tree", get(tree))
        .route("/folders/{folder}/versions", get(versions))
        .route("/folders/{folder}/content", get(content))
        .route(
            "/folders/{folder}/contents",
            post(contents).layer(RequestDecompressionLayer::new()),
        )
        .route("/folders/{folder}/chunklist", get(chunk_list))
        .route("/folders/{folder}/damaged", get(damaged))
        .route(
            "/cloud/connections",
            get(cloud::connections)
                .post(cloud::save_connection)
                .layer(DefaultBodyLimit::max(MAX_CLOUD_BODY)),
        )
        .route(
            "/cloud/connections/{name}",
            delete(cloud::remove_connection),
        )
        .route(
            "/cloud/tasks",
            get(cloud::tasks)
                .post(cloud::add_task)
                .layer(DefaultBodyLimit::max(MAX_CLOUD_BODY)),
        )
        .route("/cloud/tasks/{name}", delete(cloud::remove_task))
        .route("/cloud/tasks/{name}/run", post(cloud::run_task))
        .route("/cloud/tasks/{name}/key", post(cloud::task_key))
        .route("/shares", get(shares::list).post(shares::create))
        .route("/shares/{id}", delete(shares::revoke))
        .route("/admin/users", get(admin::users).post(admin::add_user))
        .route(
            "/admin/users/{name}",
            post(admin::change_user).delete(admin::remove_user),
        )
        .route(
            "/admin/folders",
            get(admin::folders).post(admin::add_folder),
        )
        .route(
            "/admin/folders/{name}",
            post(admin::change_folder).delete(admin::remove_folder),
        )
        .route("/admin/folders/{name}/grants", post(admin::set_grant))
        .route("/admin/events", get(admin::events))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY));
    let api = if state.access_log {
        api.layer(axum::middleware::from_fn(access_log))
    } else {
        api
    };
    // The public pages of sharing links: no token, small bodies.
    let public = Router::new()
        .route(
            "/s/{token}",
            get(shares::open)
                .post(shares::unlock)
                .layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route("/s/{token}/download", get(shares::download))
        .route("/metrics", get(metrics))
        .route("/s/{token}/uploads", post(shares::drop::start))
        .route(
            "/s/{token}/uploads/{id}",
            get(shares::drop::status)
                .put(shares::drop::part)
                .layer(DefaultBodyLimit::max(web::upload::MAX_PART)),
        )
        .route("/s/{token}/uploads/{id}/finish", post(shares::drop::finish))
        .route("/", get(web::root))
        .route(
            "/login",
            get(web::login_page)
                .post(web::login)
                .layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route(
            "/logout",
            post(web::logout).layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route("/ui", get(web::folders))
        .route("/ui/f/{folder}", get(web::browse))
        .route("/ui/f/{folder}/versions", get(web::versions))
        .route("/ui/f/{folder}/download", get(web::download))
        .route("/ui/app.js", get(web::script))
        .route("/ui/shares", get(web::links::list).post(web::links::create))
        .route("/ui/shares/new", get(web::links::new_form))
        .route("/ui/shares/{id}/revoke", post(web::links::revoke))
        .route("/ui/admin", get(web::manage::overview))
        .route("/ui/admin/users", post(web::manage::add_user))
        .route("/ui/admin/users/{name}", post(web::manage::change_user))
        .route("/ui/admin/folders", post(web::manage::add_folder))
        .route("/ui/admin/folders/{name}", post(web::manage::change_folder))
        .route("/ui/f/{folder}/zip", get(web::zip::download))
        .route("/ui/f/{folder}/mkdir", post(web::restore::mkdir))
        .route("/ui/f/{folder}/restore", post(web::restore::version))
        .route("/ui/f/{folder}/restore-tree", post(web::restore::tree))
        .route("/ui/f/{folder}/uploads", post(web::upload::start))
        .route(
            "/ui/f/{folder}/uploads/{id}",
            get(web::upload::status)
                .put(web::upload::part)
                .delete(web::upload::cancel)
                .layer(DefaultBodyLimit::max(web::upload::MAX_PART)),
        )
        .route(
            "/ui/f/{folder}/uploads/{id}/finish",
            post(web::upload::finish),
        )
        // WebDAV: every method, its own bounds on bodies (PUT is streamed into chunks).
        .route("/dav", any(dav::handle).layer(DefaultBodyLimit::disable()))
        .route("/dav/", any(dav::handle).layer(DefaultBodyLimit::disable()))
        .route(
            "/dav/{*path}",
            any(dav::handle).layer(DefaultBodyLimit::disable()),
        );
    Router::new()
        .nest("/api/v1", api)
        .merge(public)
        .fallback(not_found)
        .layer(axum::middleware::map_response(advertise_gzip))
        .layer(
            // The fastest level: every re-run of a backup lists the whole tree, and the default
            // level made that measurably slower on a fast link (docs/benchmarks.md).
            CompressionLayer::new()
                .quality(CompressionLevel::Fastest)
                .compress_when(SizeAbove::new(COMPRESS_ABOVE).and(is_json)),
        )
        .layer(axum::middleware::from_fn(catch_panic))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// `GET /metrics` on the API's address: administrators only.
async fn metrics(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Response> {
    if !caller.user.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("user {} is not an administrator", caller.user.name),
        ));
    }
    let text = blocking(&state, {
        let state = state.clone();
        move |_| state.metrics_text()
    })
    .await?;
    Ok(metrics_response(text))
}

/// The router of the separate metrics address (`--metrics-listen`): `/metrics` only, no token
/// (the operator binds that address to a private network).
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<Arc<AppState>>| async move {
                let text = blocking(&state, {
                    let state = state.clone();
                    move |_| state.metrics_text()
                })
                .await?;
                ApiResult::Ok(metrics_response(text))
            }),
        )
        .with_state(state)
}

/// The exposition format's content type around `text`.
pub fn metrics_response(text: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Test hook (`CAIRN_TEST_ACCESS_LOG=1`): one log line per API request, `request GET journal
/// ?after=3&wait=0` (the endpoint without the folder's name, a chunk's id as `chunks/ID`, then
/// the query), so tests can count what an operation costs.
async fn access_log(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    let endpoint = match path.split_once("/folders/") {
        Some((_, rest)) => match rest.split_once('/') {
            Some((_, what)) if what.starts_with("chunks/") && what != "chunks/missing" => {
                "chunks/ID"
            }
            Some((_, what)) => what,
            None => "folders/NAME",
        },
        None => path.trim_start_matches('/'),
    }
    .to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    tracing::info!("request {} {endpoint} ?{query}", req.method());
    next.run(req).await
}

/// Only JSON is compressed: chunk and file content is sent as stored (most of it is compressed
/// or random already, and byte ranges must stay byte ranges).
fn is_json(
    _: StatusCode,
    _: axum::http::Version,
    headers: &HeaderMap,
    _: &axum::http::Extensions,
) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Tells clients that gzipped request bodies are understood (RFC 7694), so a client sends them
/// only to a server that said so.
async fn advertise_gzip(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::ACCEPT_ENCODING,
        header::HeaderValue::from_static("gzip"),
    );
    resp
}

/// A handler that panics answers a plain 500; what happened goes to the log only.
async fn catch_panic(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let what = format!("{} {}", req.method(), req.uri().path());
    match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(next.run(req))).await {
        Ok(resp) => resp,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(request = %what, panic = %message, "handler panicked");
            ApiError::internal().into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such API endpoint")
}

// ---- errors ----

/// An error answer: status plus a message safe to show the user.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A blocking worker that panicked or was cancelled: logged, answered as an internal error.
    fn worker(e: tokio::task::JoinError) -> Self {
        tracing::error!(error = %e, "worker failed");
        Self::internal()
    }

    fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error (see the server log)",
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        if e.is_storage_full() {
            tracing::error!(error = ?e, "storage full");
            return ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "the server's storage is full; nothing was stored",
            );
        }
        match e {
            Error::Invalid(m) => ApiError::bad(m),
            Error::Quota(m) => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, m),
            Error::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            other => {
                tracing::error!(error = ?other, "internal error");
                ApiError::internal()
            }
        }
    }
}

impl From<cairn_store::Error> for ApiError {
    fn from(e: cairn_store::Error) -> Self {
        Error::Store(e).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // A body over its limit (after decompression) keeps its 413.
        let status = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, format!("bad request body: {}", r.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs metadata work on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&Meta) -> crate::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let meta = state.meta.clone();
    tokio::task::spawn_blocking(move || f(&meta))
        .await
        .map_err(ApiError::worker)?
        .map_err(ApiError::from)
}

// ---- authentication ----

/// The authenticated caller.
pub struct Caller {
    user: User,
    device: DeviceId,
    /// When the caller's token expires: a journal stream ends then.
    expires_ns: i64,
    /// The address the request came from, when the handler knows it (for the activity log).
    from: Option<std::net::IpAddr>,
}

impl Caller {
    /// The caller as the activity log records them.
    fn actor(&self) -> crate::meta::Actor {
        match self.from {
            Some(ip) => crate::meta::Actor::user(&self.user.name, ip),
            None => crate::meta::Actor {
                user: Some(self.user.name.clone()),
                source: String::new(),
            },
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
        let h = &parts.headers;
        let token = h
            .get(cairn_protocol::TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                h.get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            })
            .ok_or_else(|| unauthorized("log in first: no bearer token"))?;
        let mut caller = caller_of(state, token).await?;
        caller.from = client_addr(parts, state).map(|a| a.ip());
        Ok(caller)
    }
}

/// The address a request came from, past the proxies the operator trusts (`proxy.rs`): what
/// login throttling, sharing-link gates and the activity log count.
pub struct ClientAddr(pub SocketAddr);

fn client_addr(parts: &Parts, state: &AppState) -> Option<SocketAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0;
    Some(state.proxies.client(peer, &parts.headers))
}

impl FromRequestParts<Arc<AppState>> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        client_addr(parts, state).map(ClientAddr).ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server did not record the connection's address",
            )
        })
    }
}

/// The caller a token stands for: signed by this server, unexpired, of an enabled user whose
/// sessions were not ended since.
async fn caller_of(state: &Arc<AppState>, token: &str) -> ApiResult<Caller> {
    let invalid = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the token is invalid or expired; log in again",
        )
    };
    let claims = state.tokens.verify(token.trim()).ok_or_else(invalid)?;
    if claims.expires_ns <= now_ns() || claims.device.starts_with("share:") {
        return Err(invalid());
    }
    let found = blocking(state, move |m| m.user_by_id(claims.user_id)).await?;
    let user = found
        .filter(|u| !u.disabled && u.token_gen == claims.token_gen)
        .ok_or_else(invalid)?;
    Ok(Caller {
        user,
        device: DeviceId(claims.device),
        expires_ns: claims.expires_ns,
        from: None,
    })
}

async fn folder_access(
    state: &Arc<AppState>,
    caller: &Caller,
    folder: &str,
    need: Access,
) -> ApiResult<Folder> {
    Ok(folder_access_as(state, caller, folder, need).await?.0)
}

/// The folder and the caller's access to it.
async fn folder_access_as(
    state: &Arc<AppState>,
    caller: &Caller,
    folder: &str,
    need: Access,
) -> ApiResult<(Folder, Access)> {
    if !cairn_protocol::is_valid_name(folder) {
        return Err(ApiError::bad(format!("invalid folder name {folder:?}")));
    }
    let user = caller.user.clone();
    let name = folder.to_string();
    let found = blocking(state, move |m| m.access(&user, &name)).await?;
    match found {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no folder {folder} for user {}", caller.user.name),
        )),
        Some((_, Access::Ro)) if need == Access::Rw => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("user {} may only read folder {folder}", caller.user.name),
        )),
        Some(found) => Ok(found),
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

// ---- handlers ----

async fn login(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Json<LoginResponse>, Response> {
    let Json(req) = body.map_err(|e| ApiError::from(e).into_response())?;
    let user = match state
        .authenticate(&req.user, req.password.clone(), peer, "api")
        .await
    {
        Ok(user) => user,
        Err(Denied::Throttled(refusal)) => return Err(too_many_logins(refusal)),
        Err(Denied::Wrong) => {
            return Err(
                ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password")
                    .into_response(),
            )
        }
        Err(Denied::Disabled(name)) => {
            return Err(
                ApiError::new(StatusCode::FORBIDDEN, format!("user {name} is disabled"))
                    .into_response(),
            )
        }
        Err(Denied::Unavailable) => {
            return Err(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, DIRECTORY_UNAVAILABLE)
                    .into_response(),
            )
        }
        Err(Denied::Failed(e)) => return Err(e.into_response()),
    };
    if let Some(computer) = req
        .computer
        .filter(|c| cairn_protocol::is_valid_computer_name(c))
    {
        let (u, device) = (
            user.clone(),
            req.device.clone().unwrap_or(DeviceId("unknown".into())),
        );
        // Best effort: logging in must work on a full disk, and a name is only for history.
        if let Err(e) = blocking(&state, move |m| m.remember_device(&u, &device, &computer)).await {
            tracing::warn!(user = %user.name, error = %e.message, "could not record the computer name");
        }
    }
    let expires_ns = now_ns().saturating_add(state.token_ttl.as_nanos() as i64);
    let token = state.tokens.issue(&auth::Claims {
        user_id: user.id,
        token_gen: user.token_gen,
        expires_ns,
        device: req.device.map(|d| d.0).unwrap_or_else(|| "unknown".into()),
    });
    Ok(Json(LoginResponse {
        token,
        expires_ns,
        server_id: state.server_id.clone(),
        admin: user.admin,
        features: FEATURES
            .into_iter()
            // Test hook: a server that offers no commit stream, as one before it.
            .filter(|f| !(state.no_commit_stream && *f == cairn_protocol::FEATURE_COMMIT_STREAM))
            .map(String::from)
            .collect(),
    }))
}

/// Records a login attempt that was verified: `user` is who it verified as (`None`: a wrong
/// password or an unknown name). Refusals of the login gate are not recorded one by one: they
/// cost the server nothing, and recording them would let a stranger write at request rate.
async fn login_event(
    state: &Arc<AppState>,
    tried: &str,
    user: Option<&User>,
    peer: SocketAddr,
    way: &'static str,
) {
    use crate::meta::Actor;
    let (tried, user) = (tried.to_string(), user.cloned());
    let _ = blocking(state, move |m| {
        // The client hears "wrong user name or password" either way; the log tells them apart.
        let why = match &user {
            Some(u) if u.disabled => Some("user is disabled"),
            Some(_) => None,
            None if m.user_by_name(&tried)?.is_some() => Some("wrong password"),
            None => Some("unknown user"),
        };
        let by = match why {
            Some("unknown user") => Actor::visitor(peer.ip()),
            _ => Actor::user(&tried, peer.ip()),
        };
        record_login(m, &by, &tried, way, why);
        Ok(())
    })
    .await;
}

/// A login in the activity log: accepted (`why` is `None`) or failed, saying why.
pub(crate) fn record_login(
    m: &Meta,
    by: &crate::meta::Actor,
    tried: &str,
    way: &str,
    why: Option<&str>,
) {
    use crate::meta::Outcome;
    match why {
        None => m.record(EventKind::LoginOk, by, tried, Outcome::Ok, way),
        Some(why) => {
            let detail = format!("{way}: {why}");
            m.record(EventKind::LoginFailed, by, tried, Outcome::Failed, &detail);
        }
    }
}

/// What a directory user hears when the directory cannot be asked (the log says why).
pub(crate) const DIRECTORY_UNAVAILABLE: &str =
    "directory logins are unavailable: the directory could not be reached; try again later";

/// 429 with Retry-After, for a login attempt refused before any password work.
fn too_many_logins(refusal: Refusal) -> Response {
    let mut resp = ApiError::new(StatusCode::TOO_MANY_REQUESTS, refusal.message()).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, refusal.retry_after_secs().into());
    resp
}

#[derive(Deserialize)]
struct AgentRequest {
    instance: String,
    /// Only ask whether another agent of this device is live; do not become the live one.
    #[serde(default)]
    probe: bool,
    /// The agent is stopping: it is no longer the live one (only its own claim is dropped).
    #[serde(default)]
    release: bool,
}

/// An agent says it is running: refused when another live agent has the same device identity.
async fn agent(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<AgentRequest>, JsonRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Json(req) = body?;
    if req.release {
        state
            .release(&caller.user, &caller.device, &req.instance)
            .await?;
    } else {
        state
            .claim(&caller.user, &caller.device, &req.instance, req.probe)
            .await?;
    }
    Ok(Json(serde_json::json!({"ok": true})))
}

async fn folders(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<FolderInfo>>> {
    let user = caller.user;
    Ok(Json(blocking(&state, move |m| m.folders_of(&user)).await?))
}

/// Which of the named chunks the caller must upload before committing to `folder`: answered in
/// the caller's scope only (see `meta::chunks`).
async fn missing(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    body: Result<Json<MissingRequest>, JsonRejection>,
) -> ApiResult<Json<MissingResponse>> {
    let Json(req) = body?;
    if req.chunks.len() > MAX_MISSING_IDS {
        return Err(ApiError::bad(format!(
            "at most {MAX_MISSING_IDS} chunk ids per request"
        )));
    }
    folder_access(&state, &caller, &folder, Access::Rw).await?;
    let user = caller.user;
    let missing = blocking(&state, move |m| m.missing_chunks(&user, &req.chunks)).await?;
    Ok(Json(MissingResponse { missing }))
}

/// Stores verified chunks for a commit to `folder` (which needs write access).
async fn upload(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    body: axum::body::Body,
) -> ApiResult<Json<UploadResponse>> {
    folder_access(&state, &caller, &folder, Access::Rw).await?;
    let failing = &state.failing_uploads;
    if failing
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok()
    {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is in trouble (test hook)",
        ));
    }
    let frames = decode_upload(body).await?;
    let bytes: u64 = frames.iter().map(|(_, d)| d.len() as u64).sum();
    let stored = frames.len() as u32;
    store_chunks(&state, caller.user, frames).await?;
    Ok(Json(UploadResponse { stored, bytes }))
}

/// An upload body's chunks, decoded and checked as its pieces arrive (not gathered whole
/// first: that was a copy of every byte into fresh memory), within the request's bounds.
async fn decode_upload(body: axum::body::Body) -> ApiResult<Vec<(ChunkId, Bytes)>> {
    let too_large = |what: String| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, what);
    let mut decoder = frame::Decoder::default();
    let mut pieces = body.into_data_stream();
    let mut taken = 0usize;
    while let Some(piece) = pieces.next().await {
        let piece = piece.map_err(|e| ApiError::bad(format!("reading the upload: {e}")))?;
        taken += piece.len();
        if taken > MAX_UPLOAD_BODY {
            return Err(too_large(format!(
                "an upload body of over {MAX_UPLOAD_BODY} bytes"
            )));
        }
        decoder
            .push(piece)
            .map_err(|e| ApiError::bad(e.to_string()))?;
        if decoder.chunks() > frame::MAX_FRAMES_PER_UPLOAD {
            let most = frame::MAX_FRAMES_PER_UPLOAD;
            return Err(too_large(format!(
                "over {most} chunks in one upload; at most {most} per request"
            )));
        }
    }
    decoder.finish().map_err(|e| ApiError::bad(e.to_string()))
}

/// Stores chunks whose bytes were verified against their ids, for `user`: records the user's
/// proofs (and quota), writes the ones the server lacks (small ones packed together), and
/// marks them present. Shared by uploads and the inline content of commits.
async fn store_chunks(
    state: &Arc<AppState>,
    user: User,
    frames: Vec<(ChunkId, Bytes)>,
) -> ApiResult<()> {
    let (small, large): (Vec<_>, Vec<_>) =
        frames.into_iter().partition(|(_, d)| d.len() <= PACK_MAX);
    let lens = |v: &[(ChunkId, Bytes)]| -> Vec<(ChunkId, u32)> {
        v.iter().map(|(id, d)| (*id, d.len() as u32)).collect()
    };
    let (small_ids, large_ids) = (lens(&small), lens(&large));
    let pack = PackId(
        auth::random_bytes(16)
            .try_into()
            .expect("16 random bytes were asked for"),
    );
    let plan = blocking(state, move |m| {
        m.begin_chunks(&user, pack, &small_ids, &large_ids)
    })
    .await?;
    if plan.packed.is_empty() && plan.objects.is_empty() {
        return Ok(());
    }
    let data: HashMap<ChunkId, Bytes> = small.into_iter().chain(large).collect();
    let mut writes: Vec<(ObjectKey, Bytes)> = Vec::new();
    if !plan.packed.is_empty() {
        let mut body = BytesMut::new();
        for id in &plan.packed {
            if let Some(d) = data.get(id) {
                body.extend_from_slice(d);
            }
        }
        writes.push((ObjectKey::Pack(pack), body.freeze()));
    }
    writes.extend(
        plan.objects
            .iter()
            .filter_map(|id| data.get(id).map(|d| (ObjectKey::Chunk(*id), d.clone()))),
    );
    if let Err(e) = write_all(state.store.as_ref(), &writes).await {
        // Free what this request wrote (a full disk must not stay full of a failed upload);
        // the pending rows are left for gc.
        for (key, _) in &writes {
            let _ = state.store.delete(key).await;
        }
        return Err(e.into());
    }
    let lost = blocking(state, move |m| m.finish_chunks(pack, &plan)).await?;
    if let Some(id) = lost.first() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("chunk {id} was collected while it was uploaded; send it again"),
        ));
    }
    Ok(())
}

async fn write_all(
    store: &dyn ObjectStore,
    writes: &[(ObjectKey, Bytes)],
) -> cairn_store::Result<()> {
    for (key, bytes) in writes {
        store.put(key, bytes.clone()).await?;
    }
    store.sync().await
}

/// Reads a chunk (or `range` of it) from wherever it lives.
async fn read_chunk(
    state: &Arc<AppState>,
    id: ChunkId,
    range: Option<Range<u64>>,
) -> ApiResult<Bytes> {
    let row = blocking(state, move |m| m.chunk(&id)).await?;
    let row = row.ok_or_else(|| lost_chunk(id))?;
    read_row(state, &row, range).await
}

/// The answer for content whose chunk is gone from the store: permanent (410), naming the chunk;
/// the caller adds the file.
fn lost_chunk(id: ChunkId) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        format!(
            "chunk {id} is missing from the server's store; the next backup of a computer that has \
             this file sends it again (`cairn server check` lists every file affected)"
        ),
    )
}

/// Reads `range` of a chunk (all of it for `None`) and checks the length read. A chunk whose
/// object is gone or short is marked lost, so clients that have its bytes upload them again;
/// unless gc's repacking moved it since `row` was read, in which case it is read from its new
/// place.
async fn read_row(
    state: &Arc<AppState>,
    row: &crate::meta::ChunkRow,
    range: Option<Range<u64>>,
) -> ApiResult<Bytes> {
    let id = row.id;
    let mut row = row.clone();
    // Each move is a gc run's; two in a row while one chunk is read is already far-fetched.
    for _ in 0..3 {
        match read_at(state, &row, range.clone()).await? {
            Ok(bytes) => return Ok(bytes),
            Err(found) => match blocking(state, move |m| m.chunk(&id)).await? {
                Some(now) if now.place != row.place => row = now,
                _ => {
                    tracing::error!(chunk = %id, store = %state.store.describe(), found = %found, "chunk lost from the store");
                    let lost = row.clone();
                    blocking(state, move |m| m.mark_lost(&lost)).await?;
                    return Err(lost_chunk(id));
                }
            },
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("chunk {id} kept moving while it was read; try again"),
    ))
}

/// Reads `range` of a chunk where `row` says it is: its bytes, or what was found instead
/// (no object, or too few bytes).
async fn read_at(
    state: &Arc<AppState>,
    row: &crate::meta::ChunkRow,
    range: Option<Range<u64>>,
) -> ApiResult<Result<Bytes, String>> {
    let (key, whole) = row.location();
    let wanted = match range {
        Some(r) => whole.start + r.start..whole.start + r.end.min(u64::from(row.len)),
        None => whole,
    };
    let expected = wanted.end.saturating_sub(wanted.start);
    match state.store.get_range(&key, wanted).await {
        Ok(b) if b.len() as u64 == expected => Ok(Ok(b)),
        Ok(b) => Ok(Err(format!("{} bytes of {expected}", b.len()))),
        Err(cairn_store::Error::NotFound { .. }) => Ok(Err("no object".to_string())),
        Err(e) => Err(e.into()),
    }
}

/// A chunk by id, only when a version in `folder` (which the caller may read) references it.
async fn chunk(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((folder, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = ChunkId::parse(&id).map_err(|e| ApiError::bad(e.to_string()))?;
    let folder = folder_access(&state, &caller, &folder, Access::Ro).await?;
    let row = blocking(&state, move |m| m.chunk_in_folder(folder.id, &id)).await?;
    let row = row
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no version in this folder has chunk {id}"),
            )
        })?
        .ok_or_else(|| lost_chunk(id))?;
    let data = read_row(&state, &row, None).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

/// A commit body parsed change by change: one change that does not parse (a path too long or
/// badly formed) is refused on its own, and the others still commit.
#[derive(Deserialize)]
struct LooseCommit<'a> {
    #[serde(borrow)]
    changes: Vec<&'a serde_json::value::RawValue>,
}

fn parse_commit(body: &[u8]) -> ApiResult<Vec<Result<Change, String>>> {
    let loose: LooseCommit = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("bad request body: {e}")))?;
    if loose.changes.len() > MAX_COMMIT_CHANGES {
        return Err(ApiError::bad(format!(
            "at most {MAX_COMMIT_CHANGES} changes per commit"
        )));
    }
    let parsed = loose
        .changes
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            serde_json::from_str::<Change>(raw.get()).map_err(|e| {
                let text: String = raw.get().chars().take(200).collect();
                format!("change {i} is not valid: {e} (in {text:?})")
            })
        })
        .collect();
    check_changes(parsed)
}

/// The checks of a commit's changes, each on its own (derived fields filled in, chunk and
/// inline limits, inline content that matches) and of the commit as a whole, wherever the
/// commit came from (a request body or a commit stream's frame).
fn check_changes(parsed: Vec<Result<Change, String>>) -> ApiResult<Vec<Result<Change, String>>> {
    let parsed: Vec<Result<Change, String>> = parsed
        .into_iter()
        .map(|change| {
            let mut change = change?;
            if change.inline_len() <= MAX_INLINE_FILE {
                change.derive_from_inline();
            }
            if change.chunks.len() > MAX_COMMIT_CHUNKS {
                return Err(format!(
                    "{}: {} chunks; a file may have at most {MAX_COMMIT_CHUNKS}",
                    change.path,
                    change.chunks.len()
                ));
            }
            check_inline(&change)?;
            Ok(change)
        })
        .collect();
    let chunks: usize = parsed.iter().flatten().map(|c| c.chunks.len()).sum();
    if chunks > MAX_COMMIT_CHUNKS {
        return Err(ApiError::bad(format!(
            "{chunks} chunk references in one commit; at most {MAX_COMMIT_CHUNKS}"
        )));
    }
    let inline: u64 = parsed.iter().flatten().map(Change::inline_len).sum();
    if inline > MAX_INLINE_COMMIT {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{inline} bytes of inline content in one commit; at most {MAX_INLINE_COMMIT} (upload larger content as chunks)"
            ),
        ));
    }
    Ok(parsed)
}

/// A change's inline content, if any, must be a small file's whole content that makes exactly
/// its chunk list and its hash: the server trusts no bytes it did not hash itself.
fn check_inline(change: &Change) -> Result<(), String> {
    let Some(Inline(data)) = &change.inline else {
        return Ok(());
    };
    let path = &change.path;
    if data.len() as u64 > MAX_INLINE_FILE {
        return Err(format!(
            "{path}: {} bytes of inline content; at most {MAX_INLINE_FILE} per file (upload it as chunks)",
            data.len()
        ));
    }
    if change.entry.kind != EntryKind::File || change.moved_from.is_some() {
        return Err(format!(
            "{path}: only a new file's content may travel inline"
        ));
    }
    let mut at = 0usize;
    let tiles = change.chunks.iter().all(|c| {
        let end = at + c.len as usize;
        let ok = data
            .get(at..end)
            .is_some_and(|piece| ChunkId::of(piece) == c.id);
        at = end;
        ok
    });
    if !tiles || at != data.len() || change.entry.hash != Some(ContentHash::of(data)) {
        return Err(format!(
            "{path}: the inline content does not match its chunk list and content hash; refused"
        ));
    }
    Ok(())
}

/// The chunks of every valid change's inline content, each once.
fn inline_chunks(parsed: &[Result<Change, String>]) -> Vec<(ChunkId, Bytes)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for change in parsed.iter().flatten() {
        let Some(Inline(data)) = &change.inline else {
            continue;
        };
        let mut at = 0usize;
        for c in &change.chunks {
            let end = at + c.len as usize;
            if seen.insert(c.id) {
                out.push((c.id, data.slice(at..end)));
            }
            at = end;
        }
    }
    out
}

async fn commit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    body: Bytes,
) -> ApiResult<Json<CommitResponse>> {
    let folder = folder_access(&state, &caller, &folder, Access::Rw).await?;
    let parsed = tokio::task::spawn_blocking(move || parse_commit(&body))
        .await
        .map_err(ApiError::worker)??;
    Ok(Json(apply_commit(&state, &caller, &folder, parsed).await?))
}

/// Stores a checked commit's inline content, then commits its valid changes in one
/// transaction; each refused change keeps its place in the answer.
async fn apply_commit(
    state: &Arc<AppState>,
    caller: &Caller,
    folder: &Folder,
    parsed: Vec<Result<Change, String>>,
) -> ApiResult<CommitResponse> {
    let inline = inline_chunks(&parsed);
    tracing::info!(folder = %folder.name, user = %caller.user.name, changes = parsed.len(), inline_chunks = inline.len(), "commit");
    // Stored (verified, proved, charged) before the commit looks at the author's scope.
    if !inline.is_empty() {
        store_chunks(state, caller.user.clone(), inline).await?;
    }
    let pause = state.commit_pause;
    let f = folder.clone();
    let (user, device) = (caller.user.clone(), caller.device.clone());
    let (results, head) = blocking(state, move |m| {
        let mut computer = m.device_name(&user, &device)?;
        if computer.is_empty() {
            match device.0.as_str() {
                "web" => computer = "web browser".into(),
                "upload-link" => computer = "upload link".into(),
                "webdav" => computer = "WebDAV".into(),
                _ => {}
            }
        }
        let author = Author {
            user: &user,
            device: &device,
            computer: &computer,
        };
        // The valid changes go to the store as they are (no copy); each refused one keeps its
        // place in the answer.
        let mut valid = Vec::with_capacity(parsed.len());
        let slots: Vec<Option<String>> = parsed
            .into_iter()
            .map(|c| c.map(|change| valid.push(change)).err())
            .collect();
        let (done, head) = m.commit(&f, &author, &valid, pause)?;
        let mut done = done.into_iter();
        let results = slots
            .into_iter()
            .map(|slot| match slot {
                None => done.next().unwrap_or(ChangeResult::Refused {
                    reason: "not applied".into(),
                }),
                Some(reason) => ChangeResult::Refused { reason },
            })
            .collect();
        Ok((results, head))
    })
    .await?;
    state.announce(folder.id, head);
    state.metrics.commit_accepted();
    Ok(CommitResponse { results, head })
}

#[derive(Deserialize)]
struct JournalQuery {
    after: Option<i64>,
    wait: Option<u64>,
    limit: Option<u32>,
    /// Only versions from other computers (or other users): what an agent waits for. Its own
    /// commits neither come back to it nor end its wait.
    others: Option<bool>,
    /// Carry small files' content in the answer (see [`VersionInfo::inline`]).
    inline: Option<bool>,
    /// Answer with a stream of frames that stays open (see [`stream`]); `wait` is then the
    /// most time between two frames.
    stream: Option<bool>,
}

async fn journal(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    Query(q): Query<JournalQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let instance = headers
        .get("x-cairn-instance")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(instance) = &instance {
        state
            .claim(&caller.user, &caller.device, instance, false)
            .await?;
    }
    let (folder, access) = folder_access_as(&state, &caller, &folder, Access::Ro).await?;
    let after = Seq(q.after.unwrap_or(0));
    let limit = q.limit.unwrap_or(10_000).clamp(1, 100_000);
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(MAX_WAIT_SECS));
    if q.stream.unwrap_or(false) {
        let q = stream::StreamQuery {
            after,
            limit,
            // A stream with no beat would never notice a reader that went away quietly.
            wait: wait.max(Duration::from_secs(1)),
            others: q.others.unwrap_or(false),
            inline: q.inline.unwrap_or(false),
            instance,
        };
        return stream::open(state, caller, folder, q).await;
    }
    let others = q
        .others
        .unwrap_or(false)
        .then(|| (caller.user.name.clone(), caller.device.0.clone()));
    let mut rx = state.head_watch(&folder);
    let deadline = tokio::time::Instant::now() + wait;
    let inline = q.inline.unwrap_or(false);
    let folder_id = folder.id;
    let answer = |changes, head| {
        Json(JournalResponse {
            changes,
            head,
            server_id: state.server_id.clone(),
            access: Some(access),
            folder_id: Some(folder_id),
        })
    };
    loop {
        let (f, others) = (folder.clone(), others.clone());
        // The head is read before the changes: every change after it is in this answer or
        // the next, so a client that asks again after the head misses nothing.
        let (changes, head) = blocking(&state, move |m| {
            let fresh = match m.folder(&f.name)? {
                Some(now) if now.id == f.id => now.head,
                // Deleted (perhaps made again under its name) while the caller waited.
                _ => return Err(crate::Error::NotFound(format!("folder {}", f.name))),
            };
            let mine = others.as_ref().map(|(u, d)| (u.as_str(), d.as_str()));
            Ok((m.journal(&f, after, limit, mine)?, fresh))
        })
        .await?;
        if !changes.is_empty() || wait.is_zero() || tokio::time::Instant::now() >= deadline {
            let changes = if inline {
                let me = (caller.user.name.as_str(), caller.device.0.as_str());
                with_inline(&state, &folder, changes, me).await
            } else {
                changes
            };
            return Ok(answer(changes, head).into_response());
        }
        // Wake on the next commit to this folder, or give the empty answer at the deadline.
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Ok(answer(Vec::new(), head).into_response());
        }
    }
}

/// Journal changes with the content of small files carried inline, in an answer of at most
/// [`MAX_INLINE_CHANGES`] changes: the newest version of each path in the answer only, written by another computer than the caller's `me` (user, device),
/// which has its own; at most [`MAX_INLINE_FILE`] bytes each, [`MAX_INLINE_JOURNAL`] and
/// [`MAX_BATCH_FILES`] files in all. The caller may read the folder (the journal checked it).
/// A version whose content cannot be read now (pruned, a chunk lost) simply comes without: the
/// reader asks for it and gets the error then.
async fn with_inline(
    state: &Arc<AppState>,
    folder: &Folder,
    mut changes: Vec<VersionInfo>,
    me: (&str, &str),
) -> Vec<VersionInfo> {
    if changes.len() > MAX_INLINE_CHANGES {
        return changes;
    }
    let mut seen = std::collections::HashSet::new();
    let (mut budget, mut files) = (MAX_INLINE_JOURNAL, MAX_BATCH_FILES);
    for i in (0..changes.len()).rev() {
        let v = &changes[i];
        let mine = v.user == me.0 && v.device.0 == me.1;
        if !seen.insert(v.path.clone()) || v.entry.kind != EntryKind::File || mine {
            continue;
        }
        if v.entry.size > MAX_INLINE_FILE || v.entry.size > budget || files == 0 {
            continue;
        }
        let (f, path, seq) = (folder.clone(), v.path.clone(), v.seq);
        let Ok(Some(stored)) = blocking(state, move |m| m.version(&f, &path, Some(seq))).await
        else {
            continue;
        };
        let mut data = BytesMut::with_capacity(v.entry.size as usize);
        let mut whole = true;
        for c in &stored.chunks {
            match read_chunk(state, c.id, None).await {
                Ok(piece) => data.extend_from_slice(&piece),
                Err(_) => {
                    whole = false;
                    break;
                }
            }
        }
        if !whole || data.len() as u64 != v.entry.size {
            continue;
        }
        budget -= v.entry.size;
        files -= 1;
        changes[i].inline = Some(Inline(data.freeze()));
    }
    changes
}

fn parse_path(raw: Option<&str>) -> ApiResult<RelPath> {
    RelPath::parse(raw.unwrap_or("")).map_err(|e| ApiError::bad(e.to_string()))
}

#[derive(Deserialize)]
struct TreeQuery {
    prefix: Option<String>,
    at: Option<i64>,
    deleted: Option<bool>,
}

async fn tree(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    Query(q): Query<TreeQuery>,
) -> ApiResult<Response> {
    let folder = folder_access(&state, &caller, &folder, Access::Ro).await?;
    let prefix = parse_path(q.prefix.as_deref())?;
    let head = folder.head;
    let meta = state.meta.clone();
    let deleted = q.deleted.unwrap_or(false);
    // Read and written piece by piece as the connection takes it (see `tree_body`).
    let read: tree_body::Read =
        Box::new(move |each| meta.tree_each(&folder, &prefix, q.at, deleted, each));
    Ok(tree_body::tree_response(read, head).await?)
}

/// Paths under `prefix` whose content the server lost part of: a backup sends them again.
async fn damaged(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    Query(q): Query<TreeQuery>,
) -> ApiResult<Json<DamagedResponse>> {
    let folder = folder_access(&state, &caller, &folder, Access::Ro).await?;
    let prefix = parse_path(q.prefix.as_deref())?;
    let paths = blocking(&state, move |m| m.damaged(folder.id, &prefix)).await?;
    Ok(Json(DamagedResponse { paths }))
}

#[derive(Deserialize)]
struct PathQuery {
    path: Option<String>,
    seq: Option<i64>,
}

async fn versions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<VersionsResponse>> {
    let folder = folder_access(&state, &caller, &folder, Access::Ro).await?;
    let path = parse_path(q.path.as_deref())?;
    let versions = blocking(&state, move |m| m.versions(&folder, &path)).await?;
    Ok(Json(VersionsResponse { versions }))
}

async fn chunk_list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<ChunkListResponse>> {
    let folder = folder_access(&state, &caller, &folder, Access::Ro).await?;
    let path = parse_path(q.path.as_deref())?;
    let seq = q.seq.map(Seq);
    let found = blocking(&state, move |m| m.version(&folder, &path, seq)).await?;
    let v = found.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such version"))?;
    Ok(Json(ChunkListResponse {
        chunks: v.chunks,
        entry: Some(v.info.entry),
    }))
}

/// Parses a single `bytes=` range against a size; `None` for no (or an unusable) header.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<Range<u64>>, ApiError> {
    let Some(raw) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let spec = raw
        .strip_prefix("bytes=")
        .filter(|s| !s.contains(','))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("unsupported range {raw:?}"),
            )
        })?;
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| ApiError::bad(format!("bad range {raw:?}")))?;
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::bad(format!("bad range {raw:?}")))
    };
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => size.saturating_sub(num(b)?)..size,
        (false, true) => num(a)?..size,
        (false, false) => num(a)?..num(b)?.saturating_add(1).min(size),
        (true, true) => return Err(ApiError::bad(format!("bad range {raw:?}"))),
    };
    if range.start >= size || range.is_empty() {
        return Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("range {raw:?} is outside the {size} bytes"),
        ));
    }
    Ok(Some(range))
}

async fn content(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    Query(q): Query<PathQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let folder = folder_access(&state, &caller, &folder, Access::Ro).await?;
    let path = parse_path(q.path.as_deref())?;
    let seq = q.seq.map(Seq);
    let shown = path.to_string();
    let found = blocking(&state, move |m| m.version(&folder, &path, seq)).await?;
    let v = found.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("no such version of {shown}"))
    })?;
    if v.info.entry.kind != cairn_model::EntryKind::File {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{shown} at version {} is a {}, not a file",
                v.info.seq,
                v.info.entry.kind.as_str()
            ),
        ));
    }
    stream_file(&state, &v, &shown, &headers).await
}

/// Answers with the content of file version `v` (of the range `headers` ask for), streamed
/// chunk by chunk; `shown` names it in errors.
async fn stream_file(
    state: &Arc<AppState>,
    v: &crate::meta::StoredVersion,
    shown: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let size = v.info.entry.size;
    let range = parse_range(headers, size)?;
    let want = range.clone().unwrap_or(0..size);
    // The chunks that overlap the wanted range, each with the part of it to send.
    let mut pieces = Vec::new();
    let mut offset = 0u64;
    for c in &v.chunks {
        let end = offset + u64::from(c.len);
        if end > want.start && offset < want.end {
            let from = want.start.saturating_sub(offset);
            let to = (want.end - offset).min(u64::from(c.len));
            pieces.push((c.id, (from, to), c.len));
        }
        offset = end;
    }
    // Every chunk is looked up and the first piece read before answering, so a file with a
    // chunk known lost (or whose first chunk is gone) gets an error status naming it rather
    // than a cut-off body; a chunk found gone later cuts the body, and the client's request
    // for the rest gets that status.
    let named = |e: ApiError| ApiError {
        message: format!("{shown} version {}: {}", v.info.seq, e.message),
        ..e
    };
    let ids: Vec<ChunkId> = pieces.iter().map(|(id, _, _)| *id).collect();
    let rows = blocking(state, move |m| m.chunks(&ids)).await?;
    let mut located = Vec::with_capacity(rows.len());
    for ((id, (from, to), len), row) in pieces.into_iter().zip(rows) {
        let row = row.ok_or_else(|| named(lost_chunk(id)))?;
        located.push((row, (from != 0 || to != u64::from(len)).then_some(from..to)));
    }
    let mut pieces = located.into_iter();
    let first = match pieces.next() {
        Some((row, range)) => Some(read_row(state, &row, range).await.map_err(named)?),
        None => None,
    };
    let st = state.clone();
    // The next chunk is read while this one is sent: the store's latency (a read, an object
    // store's round trip) overlaps the network's, at the cost of one chunk's memory.
    let rest = futures_util::stream::iter(pieces)
        .map(move |(row, range)| {
            let st = st.clone();
            async move {
                read_row(&st, &row, range)
                    .await
                    .map_err(|e| std::io::Error::other(e.message))
            }
        })
        .buffered(2);
    let head = futures_util::stream::iter(first.map(Ok::<Bytes, std::io::Error>));
    let mut resp = Response::new(Body::from_stream(head.chain(rest)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    h.insert(header::CONTENT_LENGTH, (want.end - want.start).into());
    h.insert("x-cairn-seq", v.info.seq.0.into());
    if let Some(r) = range {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        let cr = format!("bytes {}-{}/{}", r.start, r.end - 1, size);
        if let Ok(v) = header::HeaderValue::from_str(&cr) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

/// The whole contents of several small files in one answer (see [`ContentsRequest`]): at most
/// [`MAX_BATCH_FILES`] files adding up to at most [`MAX_BATCH_BYTES`], read before answering so
/// that a missing file or lost chunk is an error status naming it, never a cut-off body.
async fn contents(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    body: Result<Json<ContentsRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(req) = body?;
    if req.files.len() > MAX_BATCH_FILES {
        return Err(ApiError::bad(format!(
            "at most {MAX_BATCH_FILES} files per request"
        )));
    }
    let folder = folder_access(&state, &caller, &folder, Access::Ro).await?;
    tracing::info!(folder = %folder.name, user = %caller.user.name, files = req.files.len(), "contents");
    let files = req.files;
    let found = blocking(&state, move |m| {
        files
            .iter()
            .map(|f| Ok((f.clone(), m.version(&folder, &f.path, Some(f.seq))?)))
            .collect::<crate::Result<Vec<_>>>()
    })
    .await?;
    let mut versions = Vec::with_capacity(found.len());
    let mut total = 0u64;
    for (f, v) in found {
        let v = v
            .filter(|v| v.info.entry.kind == cairn_model::EntryKind::File)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no file {} at version {}", f.path, f.seq),
                )
            })?;
        total += v.info.entry.size;
        if total > MAX_BATCH_BYTES {
            return Err(ApiError::bad(format!(
                "the files add up to more than {MAX_BATCH_BYTES} bytes; ask for fewer at once"
            )));
        }
        versions.push(v);
    }
    let mut out = BytesMut::with_capacity(usize::try_from(total).unwrap_or(0));
    for v in &versions {
        for c in &v.chunks {
            let data = read_chunk(&state, c.id, None).await.map_err(|e| ApiError {
                message: format!("{} version {}: {}", v.info.path, v.info.seq, e.message),
                ..e
            })?;
            out.extend_from_slice(&data);
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        out.freeze(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_plain_500() {
        let mut app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    panic!("secret internal detail");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .layer(axum::middleware::from_fn(catch_panic));
        let req = axum::http::Request::get("/boom")
            .body(Body::empty())
            .expect("request");
        let resp = app.call(req).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 4096)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("internal server error"), "{text}");
    }
}
