//! The HTTP API (`/api/v1/...`): login, chunk presence and upload, commit, journal long-poll,
//! tree, versions and content with byte ranges.
//!
//! Handlers check the caller's token and folder access, then run metadata work on the blocking
//! pool. [`ApiError`] is the one place errors become HTTP statuses: a 5xx body says nothing
//! internal, the log says everything. Every path and id from a request is parsed into a model
//! type before use, so `..`, absolute paths and NUL bytes are refused with a 400 naming them.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::BytesMut;
use cairn_model::{ChunkId, DeviceId, PackId, RelPath, Seq};
use cairn_protocol::{
    frame, Access, ChunkListResponse, CommitRequest, CommitResponse, ErrorBody, FolderInfo,
    JournalResponse, LoginRequest, LoginResponse, MissingRequest, MissingResponse, TreeResponse,
    UploadResponse, VersionsResponse, MAX_WAIT_SECS,
};
use cairn_store::{ObjectKey, ObjectStore};
use serde::Deserialize;
use tokio::sync::watch;

use crate::auth::{self, LoginThrottle};
use crate::datadir::DataDir;
use crate::meta::{Folder, SqliteMeta, User, PACK_MAX};
use crate::Error;

/// Largest chunk-upload request body.
pub const MAX_UPLOAD_BODY: usize = 64 * 1024 * 1024;
/// Most ids one presence query or commit may carry.
const MAX_BATCH: usize = 200_000;

pub struct AppState {
    meta: Arc<SqliteMeta>,
    store: Arc<dyn ObjectStore>,
    server_id: String,
    tokens: auth::TokenKey,
    token_ttl: Duration,
    throttle: LoginThrottle,
    heads: Mutex<HashMap<i64, watch::Sender<i64>>>,
    /// Live agents: device -> (instance, last heard). A second instance with the same device
    /// is a copied configuration folder posing as another computer.
    agents: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Test hook (`CAIRN_TEST_COMMIT_PAUSE_MS`): sleep after each change of a commit so a test can
    /// kill the server in the middle of one.
    commit_pause: Option<Duration>,
    /// Test hook (`CAIRN_TEST_FAIL_UPLOADS=N`): the next N chunk uploads answer 503, as a
    /// server in trouble would.
    failing_uploads: std::sync::atomic::AtomicU64,
}

impl AppState {
    /// # Errors
    /// Never today; reserved for stores that connect at start.
    pub fn new(data: &DataDir, token_ttl: Duration) -> crate::Result<Arc<Self>> {
        let commit_pause = std::env::var("CAIRN_TEST_COMMIT_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis);
        Ok(Arc::new(AppState {
            meta: data.meta.clone(),
            store: data.store.clone(),
            server_id: data.server_id.clone(),
            tokens: auth::TokenKey::new(data.token_secret.as_bytes()),
            token_ttl,
            throttle: LoginThrottle::default(),
            heads: Mutex::new(HashMap::new()),
            agents: Mutex::new(HashMap::new()),
            commit_pause,
            failing_uploads: std::sync::atomic::AtomicU64::new(
                std::env::var("CAIRN_TEST_FAIL_UPLOADS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
        }))
    }

    fn head_watch(&self, folder: &Folder) -> watch::Receiver<i64> {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads
            .entry(folder.id)
            .or_insert_with(|| watch::channel(folder.head.0).0)
            .subscribe()
    }

    /// Records that agent `instance` of `device` is alive; refuses a second live instance.
    fn claim(&self, device: &DeviceId, instance: &str) -> ApiResult<()> {
        const LIVE: Duration = Duration::from_secs(90);
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if let Some((other, seen)) = agents.get(&device.0) {
            if other != instance && now.duration_since(*seen) < LIVE {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "another cairn agent with this device identity ({device}) is running, seen {}s ago: this \
                         configuration folder was probably copied from another computer. Run `cairn connect` again \
                         here to give this computer its own identity",
                        now.duration_since(*seen).as_secs()
                    ),
                ));
            }
        }
        agents.insert(device.0.clone(), (instance.to_string(), now));
        Ok(())
    }

    fn announce(&self, folder_id: i64, head: Seq) {
        let heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = heads.get(&folder_id) {
            tx.send_replace(head.0);
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/login", post(login))
        .route("/folders", get(folders))
        .route("/agent", post(agent))
        .route("/chunks/missing", post(missing))
        .route(
            "/chunks",
            post(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_BODY)),
        )
        .route("/chunks/{id}", get(chunk))
        .route("/folders/{folder}/commit", post(commit))
        .route("/folders/{folder}/journal", get(journal))
        .route("/folders/{folder}/tree", get(tree))
        .route("/folders/{folder}/versions", get(versions))
        .route("/folders/{folder}/content", get(content))
        .route("/folders/{folder}/chunklist", get(chunk_list))
        .layer(DefaultBodyLimit::max(32 * 1024 * 1024));
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .with_state(state)
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
            Error::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            other => {
                tracing::error!(error = ?other, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error (see the server log)",
                )
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
        ApiError::bad(format!("bad request body: {}", r.body_text()))
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
    f: impl FnOnce(&SqliteMeta) -> crate::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let meta = state.meta.clone();
    tokio::task::spawn_blocking(move || f(&meta))
        .await
        .map_err(|e| ApiError::from(Error::Invalid(format!("worker failed: {e}"))))?
        .map_err(ApiError::from)
}

// ---- authentication ----

/// The authenticated caller.
pub struct Caller {
    user: User,
    device: DeviceId,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("log in first: no bearer token"))?;
        let invalid = || unauthorized("the token is invalid or expired; log in again");
        let claims = state.tokens.verify(token.trim()).ok_or_else(invalid)?;
        if claims.expires_ns <= now_ns() {
            return Err(invalid());
        }
        let found = blocking(state, move |m| m.user_by_id(claims.user_id)).await?;
        let user = found
            .filter(|u| !u.disabled && u.token_gen == claims.token_gen)
            .ok_or_else(invalid)?;
        Ok(Caller {
            user,
            device: DeviceId(claims.device),
        })
    }
}

async fn folder_access(
    state: &Arc<AppState>,
    caller: &Caller,
    folder: &str,
    need: Access,
) -> ApiResult<Folder> {
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
        Some((f, _)) => Ok(f),
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
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> ApiResult<Json<LoginResponse>> {
    let Json(req) = body?;
    let name = req.user.clone();
    let password = req.password.clone();
    let found = blocking(&state, move |m| {
        let row = m.user_by_name(&name)?;
        // Verify against a dummy hash for unknown users so timing does not reveal who exists.
        let ok = match &row {
            Some((_, hash)) => auth::verify_password(&password, hash),
            None => {
                auth::verify_password(&password, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0000000000000000000000000000000000000000000");
                false
            }
        };
        Ok(row.filter(|_| ok).map(|(u, _)| u))
    })
    .await?;
    let Some(user) = found else {
        tokio::time::sleep(state.throttle.failed(&req.user)).await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password",
        ));
    };
    if user.disabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("user {} is disabled", user.name),
        ));
    }
    state.throttle.succeeded(&req.user);
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
    }))
}

#[derive(Deserialize)]
struct AgentRequest {
    instance: String,
}

/// An agent says it is running: refused when another live agent has the same device identity.
async fn agent(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<AgentRequest>, JsonRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Json(req) = body?;
    state.claim(&caller.device, &req.instance)?;
    Ok(Json(serde_json::json!({"ok": true})))
}

async fn folders(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<FolderInfo>>> {
    let user = caller.user;
    Ok(Json(blocking(&state, move |m| m.folders_of(&user)).await?))
}

async fn missing(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    body: Result<Json<MissingRequest>, JsonRejection>,
) -> ApiResult<Json<MissingResponse>> {
    let Json(req) = body?;
    if req.chunks.len() > MAX_BATCH {
        return Err(ApiError::bad(format!(
            "at most {MAX_BATCH} chunk ids per request"
        )));
    }
    let missing = blocking(&state, move |m| m.missing_chunks(&req.chunks)).await?;
    Ok(Json(MissingResponse { missing }))
}

async fn upload(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    body: Bytes,
) -> ApiResult<Json<UploadResponse>> {
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
    let frames = tokio::task::spawn_blocking(move || frame::decode_all(&body))
        .await
        .map_err(|e| ApiError::from(Error::Invalid(format!("worker failed: {e}"))))?
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let bytes: u64 = frames.iter().map(|(_, d)| d.len() as u64).sum();
    let stored = frames.len() as u32;
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
    let (packed, objects) = blocking(&state, move |m| {
        m.begin_chunks(pack, &small_ids, &large_ids)
    })
    .await?;
    if packed.is_empty() && objects.is_empty() {
        return Ok(Json(UploadResponse { stored, bytes }));
    }
    let data: HashMap<ChunkId, Bytes> = small.into_iter().chain(large).collect();
    let mut writes: Vec<(ObjectKey, Bytes)> = Vec::new();
    if !packed.is_empty() {
        let mut body = BytesMut::new();
        for id in &packed {
            if let Some(d) = data.get(id) {
                body.extend_from_slice(d);
            }
        }
        writes.push((ObjectKey::Pack(pack), body.freeze()));
    }
    writes.extend(
        objects
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
    let lost = blocking(&state, move |m| m.finish_chunks(pack, &packed, &objects)).await?;
    if let Some(id) = lost.first() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("chunk {id} was collected while it was uploaded; send it again"),
        ));
    }
    Ok(Json(UploadResponse { stored, bytes }))
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
    let row = row.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("chunk {id} is not on the server"),
        )
    })?;
    let (key, whole) = row.location();
    let wanted = match range {
        Some(r) => whole.start + r.start..whole.start + r.end.min(u64::from(row.len)),
        None => whole,
    };
    Ok(state.store.get_range(&key, wanted).await?)
}

async fn chunk(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = ChunkId::parse(&id).map_err(|e| ApiError::bad(e.to_string()))?;
    let data = read_chunk(&state, id, None).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

async fn commit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    body: Result<Json<CommitRequest>, JsonRejection>,
) -> ApiResult<Json<CommitResponse>> {
    let Json(req) = body?;
    if req.changes.len() > MAX_BATCH {
        return Err(ApiError::bad(format!(
            "at most {MAX_BATCH} changes per commit"
        )));
    }
    let folder = folder_access(&state, &caller, &folder, Access::Rw).await?;
    tracing::info!(folder = %folder.name, user = %caller.user.name, changes = req.changes.len(), "commit");
    let device = caller.device.clone();
    let pause = state.commit_pause;
    let f = folder.clone();
    let (results, head) =
        blocking(&state, move |m| m.commit(&f, &device, &req.changes, pause)).await?;
    state.announce(folder.id, head);
    Ok(Json(CommitResponse { results, head }))
}

#[derive(Deserialize)]
struct JournalQuery {
    after: Option<i64>,
    wait: Option<u64>,
    limit: Option<u32>,
}

async fn journal(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    Query(q): Query<JournalQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<JournalResponse>> {
    if let Some(instance) = headers
        .get("x-cairn-instance")
        .and_then(|v| v.to_str().ok())
    {
        state.claim(&caller.device, instance)?;
    }
    let folder = folder_access(&state, &caller, &folder, Access::Ro).await?;
    let after = Seq(q.after.unwrap_or(0));
    let limit = q.limit.unwrap_or(10_000).clamp(1, 100_000);
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(MAX_WAIT_SECS));
    let mut rx = state.head_watch(&folder);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let f = folder.clone();
        let changes = blocking(&state, move |m| {
            let fresh = m.folder(&f.name)?.map(|x| x.head).unwrap_or(f.head);
            Ok((m.journal(&f, after, limit)?, fresh))
        })
        .await?;
        let (changes, head) = changes;
        if !changes.is_empty() || wait.is_zero() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(JournalResponse {
                changes,
                head,
                server_id: state.server_id.clone(),
            }));
        }
        // Wake on the next commit to this folder, or give the empty answer at the deadline.
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Ok(Json(JournalResponse {
                changes: Vec::new(),
                head,
                server_id: state.server_id.clone(),
            }));
        }
    }
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
) -> ApiResult<Json<TreeResponse>> {
    let folder = folder_access(&state, &caller, &folder, Access::Ro).await?;
    let prefix = parse_path(q.prefix.as_deref())?;
    let head = folder.head;
    let entries = blocking(&state, move |m| {
        m.tree(&folder, &prefix, q.at, q.deleted.unwrap_or(false))
    })
    .await?;
    Ok(Json(TreeResponse { entries, head }))
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
    Ok(Json(ChunkListResponse { chunks: v.chunks }))
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
    let size = v.info.entry.size;
    let range = parse_range(&headers, size)?;
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
    let st = state.clone();
    let stream = futures_util::stream::unfold(pieces.into_iter(), move |mut it| {
        let st = st.clone();
        async move {
            let (id, (from, to), len) = it.next()?;
            let range = (from != 0 || to != u64::from(len)).then_some(from..to);
            let item = read_chunk(&st, id, range)
                .await
                .map_err(|e| std::io::Error::other(e.message));
            Some((item, it))
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
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
