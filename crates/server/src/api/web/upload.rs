//! Uploads from the browser, resumable: the page announces a file (`POST .../uploads`), sends
//! it in parts at the offset the server has (`PUT .../uploads/ID?offset=N`), can ask how much
//! arrived after a dropped connection or a reload (`GET .../uploads/ID`), and finishes it
//! (`POST .../uploads/ID/finish`): the server then cuts the file into chunks as every client
//! does, stores them, and commits it as a new version.
//!
//! Parts are staged on the server's disk under `web-uploads/USER_ID/`, one `.part` file and
//! one `.json` ticket per upload, so an upload survives a server restart. What a user can make
//! the server hold is bounded: [`MAX_OPEN`] uploads at a time, each at most [`MAX_FILE`] bytes,
//! all of them together at most [`MAX_STAGED`] (an upload-only link's visitors: less) and
//! within what is left of the user's quota, parts of at most [`MAX_PART`] bytes; an upload
//! untouched for [`STALE_NS`] is removed when its user starts another.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use cairn_model::chunking::chunk_reader;
use cairn_model::{ChunkId, Entry, EntryKind, RelPath};
use cairn_protocol::{Access, Change, ChunkSpan};
use serde::{Deserialize, Serialize};

use super::super::{
    blocking, folder_access, now_ns, store_chunks, ApiError, ApiResult, AppState, Caller,
};
use super::{edit, json_caller};
use crate::meta::Folder;

/// Uploads one user may have open at once.
pub const MAX_OPEN: usize = 16;
/// The largest file the browser may upload.
pub const MAX_FILE: u64 = 64 << 30;
/// What one user's open uploads may announce in all.
pub const MAX_STAGED: u64 = 2 * MAX_FILE;
/// The largest part of one request.
pub const MAX_PART: usize = 8 << 20;
/// An upload not touched for a day is given up.
const STALE_NS: i64 = 24 * 3600 * 1_000_000_000;
/// Chunk bytes stored per request to the chunk store while finishing.
const STORE_BATCH: usize = 16 << 20;

/// The staging area of browser uploads.
pub struct Staging {
    root: PathBuf,
    /// Uploads a request is writing or finishing now: a second request for one waits its turn
    /// by being refused (the page retries).
    busy: Mutex<HashSet<String>>,
}

#[derive(Serialize, Deserialize)]
struct Ticket {
    folder: String,
    path: String,
    size: u64,
    mtime_ns: i64,
    touched_ns: i64,
}

/// Marks an upload busy for as long as it lives.
struct Busy<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

fn io_error(what: &str, path: &FsPath, e: std::io::Error) -> ApiError {
    crate::Error::Io {
        context: format!("{what} {}", path.display()),
        source: e,
    }
    .into()
}

impl Staging {
    pub fn new(root: PathBuf) -> Self {
        Staging {
            root,
            busy: Mutex::default(),
        }
    }

    fn user_dir(&self, user_id: i64) -> PathBuf {
        self.root.join(user_id.to_string())
    }

    fn claim(&self, id: &str) -> ApiResult<Busy<'_>> {
        let mut set = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(id.to_string()) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "another request is working on this upload; try again",
            ));
        }
        Ok(Busy {
            set: &self.busy,
            id: id.to_string(),
        })
    }
}

/// Where an upload goes and who makes it: a logged-in user into a folder they may write, or a
/// visitor of an upload-only link into the link's folder, as the link's owner.
pub(in crate::api) struct Target {
    pub caller: Caller,
    pub folder: Folder,
    /// The staging directory of this user (or link).
    pub dir: PathBuf,
    /// Largest file accepted.
    pub max_file: u64,
    /// What the open uploads of `dir` may announce in all (the quota may allow less).
    pub max_staged: u64,
    /// An upload-only link: a visitor names a file (no folders), never replaces one (a
    /// taken name gets a number), and each file takes one of the link's accesses.
    pub link: Option<LinkDrop>,
}

pub(in crate::api) struct LinkDrop {
    pub id: i64,
    /// The shared folder the files go into.
    pub under: RelPath,
}

impl Target {
    /// A logged-in user's upload into `folder`.
    pub async fn of_session(
        state: &Arc<AppState>,
        headers: &HeaderMap,
        folder: &str,
    ) -> ApiResult<Target> {
        let caller = json_caller(state, headers).await?;
        let f = folder_access(state, &caller, folder, Access::Rw).await?;
        let dir = state.web_uploads.user_dir(caller.user.id);
        Ok(Target {
            caller,
            folder: f,
            dir,
            max_file: MAX_FILE,
            max_staged: MAX_STAGED,
            link: None,
        })
    }

    /// The path a new upload named `name` goes to.
    fn path_of(&self, name: &str) -> ApiResult<RelPath> {
        let refuse = || ApiError::bad(format!("{name:?} is not a file name allowed here"));
        match &self.link {
            None => RelPath::parse(name)
                .ok()
                .filter(|p| !p.is_root())
                .ok_or_else(refuse),
            Some(l) => {
                let single = RelPath::parse(name)
                    .ok()
                    .filter(|p| !p.is_root() && p.parent().is_some_and(|d| d.is_root()))
                    .ok_or_else(refuse)?;
                Ok(l.under.join_path(&single))
            }
        }
    }
}

/// Where WebDAV stages a PUT body that comes without a length (`api/dav/write.rs`).
pub fn scratch_dir(state: &AppState) -> PathBuf {
    state.web_uploads.root.join("dav")
}

/// The staging directory of an upload-only link's visitors.
pub fn link_dir(state: &AppState, share_id: i64) -> PathBuf {
    state.web_uploads.root.join(format!("link-{share_id}"))
}

/// An upload id names files: 32 lowercase hex digits and nothing else.
fn check_id(id: &str) -> ApiResult<()> {
    let ok = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no such upload"))
    }
}

#[derive(Deserialize)]
pub(in crate::api) struct StartRequest {
    pub path: String,
    pub size: u64,
    /// The file's modification time as the browser gives it (ms since the epoch).
    #[serde(default)]
    pub mtime_ms: Option<i64>,
}

#[derive(Serialize)]
pub(in crate::api) struct Received {
    pub id: String,
    pub received: u64,
    pub size: u64,
}

pub(in crate::api) async fn start(
    State(state): State<Arc<AppState>>,
    Path(folder): Path<String>,
    headers: HeaderMap,
    Json(req): Json<StartRequest>,
) -> ApiResult<Json<Received>> {
    let target = Target::of_session(&state, &headers, &folder).await?;
    Ok(Json(begin(&target, req).await?))
}

/// Announces an upload into `target`: checks the name, size and quota, and stages it.
pub(in crate::api) async fn begin(target: &Target, req: StartRequest) -> ApiResult<Received> {
    let path = target.path_of(&req.path)?;
    if req.size > target.max_file {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{path}: {} bytes; the browser may upload files of at most {} bytes here (use the cairn client for larger ones)",
                req.size, target.max_file
            ),
        ));
    }
    let user = &target.caller.user;
    let mut budget = target.max_staged;
    if let Some(quota) = user.quota {
        // Staged bytes count against the quota before they are stored: a visitor of a link
        // cannot park more on the server's disk than the owner may keep.
        budget = budget.min(quota.saturating_sub(user.used_bytes));
        if user.used_bytes.saturating_add(req.size) > quota {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "{path}: {} bytes would go over the quota of {quota} bytes",
                    req.size
                ),
            ));
        }
    }
    let now = now_ns();
    let dir = target.dir.clone();
    let mtime_ns = req
        .mtime_ms
        .filter(|ms| *ms > 0)
        .and_then(|ms| ms.checked_mul(1_000_000))
        .unwrap_or(now);
    let ticket = Ticket {
        folder: target.folder.name.clone(),
        path: path.as_str().to_string(),
        size: req.size,
        mtime_ns,
        touched_ns: now,
    };
    let id = crate::auth::random_hex(16);
    let staged = id.clone();
    tokio::task::spawn_blocking(move || open_upload(&dir, &staged, &ticket, now, budget))
        .await
        .map_err(ApiError::worker)??;
    Ok(Received {
        id,
        received: 0,
        size: req.size,
    })
}

/// Removes the user's stale uploads, checks the count and the bytes announced (`budget` in
/// all, the new one's included), and writes the new one's files.
fn open_upload(dir: &FsPath, id: &str, ticket: &Ticket, now: i64, budget: u64) -> ApiResult<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
    let (mut open, mut announced) = (0, 0u64);
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("listing", dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(other) = name.strip_suffix(".json") else {
            continue;
        };
        match read_ticket(dir, other) {
            Ok(t) if now.saturating_sub(t.touched_ns) < STALE_NS => {
                open += 1;
                announced = announced.saturating_add(t.size);
            }
            _ => remove_upload(dir, other),
        }
    }
    if open >= MAX_OPEN {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "you have {open} uploads open; finish or cancel one first (at most {MAX_OPEN})"
            ),
        ));
    }
    if announced.saturating_add(ticket.size) > budget {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "{}: {} bytes, with the {announced} bytes of the {open} uploads open here, is more than the {budget} bytes that may wait here at once; finish or cancel one first",
                ticket.path, ticket.size
            ),
        ));
    }
    let part = dir.join(format!("{id}.part"));
    std::fs::File::create(&part).map_err(|e| io_error("creating", &part, e))?;
    write_ticket(dir, id, ticket)
}

fn read_ticket(dir: &FsPath, id: &str) -> ApiResult<Ticket> {
    let p = dir.join(format!("{id}.json"));
    let text = match std::fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no such upload"))
        }
        Err(e) => return Err(io_error("reading", &p, e)),
    };
    serde_json::from_slice(&text).map_err(|e| {
        tracing::warn!(path = %p.display(), error = %e, "unreadable upload ticket");
        ApiError::new(StatusCode::NOT_FOUND, "no such upload")
    })
}

fn write_ticket(dir: &FsPath, id: &str, ticket: &Ticket) -> ApiResult<()> {
    let p = dir.join(format!("{id}.json"));
    let tmp = dir.join(format!("{id}.json.tmp"));
    let text = serde_json::to_vec(ticket).map_err(|e| ApiError::bad(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(|e| io_error("writing", &tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| io_error("renaming", &tmp, e))
}

fn remove_upload(dir: &FsPath, id: &str) {
    for ext in ["part", "json", "json.tmp"] {
        let _ = std::fs::remove_file(dir.join(format!("{id}.{ext}")));
    }
}

/// Upload `id` of `target`, which must be for its folder.
fn ticket_of(target: &Target, id: &str) -> ApiResult<Ticket> {
    check_id(id)?;
    let ticket = read_ticket(&target.dir, id)?;
    if ticket.folder != target.folder.name {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such upload"));
    }
    Ok(ticket)
}

fn staged_len(dir: &FsPath, id: &str) -> ApiResult<u64> {
    let p = dir.join(format!("{id}.part"));
    std::fs::metadata(&p)
        .map(|m| m.len())
        .map_err(|e| io_error("reading", &p, e))
}

pub(in crate::api) async fn status(
    State(state): State<Arc<AppState>>,
    Path((folder, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Received>> {
    let target = Target::of_session(&state, &headers, &folder).await?;
    Ok(Json(received(&target, id)?))
}

/// How much of upload `id` the server holds.
pub(in crate::api) fn received(target: &Target, id: String) -> ApiResult<Received> {
    let ticket = ticket_of(target, &id)?;
    let received = staged_len(&target.dir, &id)?;
    Ok(Received {
        id,
        received,
        size: ticket.size,
    })
}

#[derive(Deserialize)]
pub(in crate::api) struct Offset {
    pub offset: u64,
}

pub(in crate::api) async fn part(
    State(state): State<Arc<AppState>>,
    Path((folder, id)): Path<(String, String)>,
    Query(at): Query<Offset>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Received>> {
    let target = Target::of_session(&state, &headers, &folder).await?;
    Ok(Json(append(&state, &target, id, at.offset, body).await?))
}

/// Appends a part at `offset`, which must be what the server has: a resent part is answered
/// with the length the server holds, so the page goes on from there.
pub(in crate::api) async fn append(
    state: &Arc<AppState>,
    target: &Target,
    id: String,
    offset: u64,
    body: Bytes,
) -> ApiResult<Received> {
    let mut ticket = ticket_of(target, &id)?;
    let _busy = state.web_uploads.claim(&id)?;
    let (dir, i, size) = (target.dir.clone(), id.clone(), ticket.size);
    let received = tokio::task::spawn_blocking(move || -> ApiResult<u64> {
        let have = staged_len(&dir, &i)?;
        if offset != have {
            return Ok(have);
        }
        if have.saturating_add(body.len() as u64) > size {
            return Err(ApiError::bad(format!(
                "{}: more bytes than the {size} announced",
                ticket.path
            )));
        }
        let p = dir.join(format!("{i}.part"));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .map_err(|e| io_error("opening", &p, e))?;
        if let Err(e) = f.write_all(&body) {
            // A part half written (a full disk) is cut back, so the offsets stay true.
            let _ = f.set_len(have);
            return Err(io_error("writing", &p, e));
        }
        ticket.touched_ns = now_ns();
        write_ticket(&dir, &i, &ticket)?;
        Ok(have + body.len() as u64)
    })
    .await
    .map_err(ApiError::worker)??;
    Ok(Received { id, received, size })
}

#[derive(Serialize)]
pub(in crate::api) struct Finished {
    pub(in crate::api) path: String,
    seq: i64,
}

pub(in crate::api) async fn finish(
    State(state): State<Arc<AppState>>,
    Path((folder, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Finished>> {
    let target = Target::of_session(&state, &headers, &folder).await?;
    Ok(Json(complete(&state, &target, id).await?))
}

/// Cuts the staged file into chunks, stores them, and commits the file as a new version on
/// top of whatever the path holds now (the old one stays in its history); through a link,
/// under a free name instead.
pub(in crate::api) async fn complete(
    state: &Arc<AppState>,
    target: &Target,
    id: String,
) -> ApiResult<Finished> {
    let ticket = ticket_of(target, &id)?;
    let _busy = state.web_uploads.claim(&id)?;
    let have = staged_len(&target.dir, &id)?;
    if have != ticket.size {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{}: {have} of {} bytes arrived; send the rest first",
                ticket.path, ticket.size
            ),
        ));
    }
    let path = RelPath::parse(&ticket.path).map_err(|e| ApiError::bad(e.to_string()))?;
    if let Some(link) = &target.link {
        // A file through a link is one access, taken when it is complete: never more files
        // than the link allows, however many were started.
        let share = link.id;
        if !blocking(state, move |m| m.take_share_access(share, now_ns())).await? {
            let dir = target.dir.clone();
            let _ = tokio::task::spawn_blocking(move || remove_upload(&dir, &id)).await;
            return Err(ApiError::new(
                StatusCode::GONE,
                "this link has been used as many times as it allows",
            ));
        }
    }
    let part = target.dir.join(format!("{id}.part"));
    let (chunks, hash) =
        store_file(state, &target.caller, &part, ticket.size, &ticket.path).await?;
    let entry = Entry {
        kind: EntryKind::File,
        size: ticket.size,
        mtime_ns: ticket.mtime_ns,
        mode: 0o644,
        hash: Some(hash),
        target: None,
    };
    let (path, seq) = commit_file(state, target, &path, entry, chunks).await?;
    let dir = target.dir.clone();
    tokio::task::spawn_blocking(move || remove_upload(&dir, &id))
        .await
        .map_err(ApiError::worker)?;
    Ok(Finished {
        path: path.as_str().to_string(),
        seq,
    })
}

/// Cuts `part` as every client cuts a file and stores its chunks for `caller`, a batch at a
/// time (memory stays bounded whatever the file's size).
async fn store_file(
    state: &Arc<AppState>,
    caller: &Caller,
    part: &FsPath,
    size: u64,
    shown: &str,
) -> ApiResult<(Vec<ChunkSpan>, cairn_model::ContentHash)> {
    let p = part.to_path_buf();
    let open = move || std::fs::File::open(&p).map_err(|e| io_error("opening", &p, e));
    store_from(state, caller, open, size, shown).await
}

/// Cuts the `size` bytes `open` gives (on the blocking pool) as every client cuts a file and
/// stores its chunks for `caller`, a batch at a time: memory stays bounded whatever the size.
pub(in crate::api) async fn store_from<R: std::io::Read>(
    state: &Arc<AppState>,
    caller: &Caller,
    open: impl FnOnce() -> ApiResult<R> + Send + 'static,
    size: u64,
    shown: &str,
) -> ApiResult<(Vec<ChunkSpan>, cairn_model::ContentHash)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(ChunkId, Bytes)>>(2);
    let what = shown.to_string();
    let reader = tokio::task::spawn_blocking(move || {
        let file = open()?;
        let (mut batch, mut bytes) = (Vec::new(), 0usize);
        let closed = || cairn_model::Error::Read {
            what: what.clone(),
            source: std::io::Error::other("the upload was abandoned"),
        };
        let digest = chunk_reader(file, size, &what, |c, data| {
            batch.push((c.id, data.clone()));
            bytes += data.len();
            if bytes >= STORE_BATCH {
                bytes = 0;
                tx.blocking_send(std::mem::take(&mut batch))
                    .map_err(|_| closed())?;
            }
            Ok(())
        })
        .map_err(|e| ApiError::bad(e.to_string()))?;
        if !batch.is_empty() {
            tx.blocking_send(batch).map_err(|_| ApiError::internal())?;
        }
        Ok::<_, ApiError>(digest)
    });
    while let Some(batch) = rx.recv().await {
        store_chunks(state, caller.user.clone(), batch).await?;
    }
    let digest = reader.await.map_err(ApiError::worker)??;
    if digest.size != size {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{shown}: the staged file changed while it was read"),
        ));
    }
    let spans = digest
        .chunks
        .iter()
        .map(|c| ChunkSpan {
            id: c.id,
            len: c.len,
        })
        .collect();
    Ok((spans, digest.hash))
}

/// Commits a file (and any missing folders above it) on top of the path's current head,
/// again if another commit came in between. Through a link, a taken name is never replaced:
/// the file gets the first free `NAME (N).EXT`.
async fn commit_file(
    state: &Arc<AppState>,
    target: &Target,
    wanted: &RelPath,
    entry: Entry,
    chunks: Vec<ChunkSpan>,
) -> ApiResult<(RelPath, i64)> {
    let folder = &target.folder;
    let mut last = String::new();
    let mut path = wanted.clone();
    for attempt in 0..MAX_NAME_TRIES {
        let now = now_ns();
        let mut changes = edit::parents_of(state, folder, &path, now).await?;
        let base = edit::head_of(state, folder, &path).await?;
        let taken = matches!(base, Some((_, k)) if k != EntryKind::Deleted);
        if taken && target.link.is_some() {
            path = numbered(wanted, attempt + 2)?;
            continue;
        }
        if let Some((_, EntryKind::Dir)) = base {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{path} is a folder; a file cannot replace it"),
            ));
        }
        changes.push(Change {
            path: path.clone(),
            base: base.map(|(s, _)| s),
            entry: entry.clone(),
            chunks: chunks.clone(),
            moved_from: None,
            inline: None,
        });
        let results = edit::commit(state, &target.caller, folder, changes).await?;
        match results.last() {
            Some(cairn_protocol::ChangeResult::Accepted { seq }) => return Ok((path, seq.0)),
            Some(cairn_protocol::ChangeResult::Conflict { .. }) => continue,
            Some(other) => last = edit::refusal(other).unwrap_or_default(),
            None => last = "nothing was committed".into(),
        }
        break;
    }
    if last.is_empty() {
        last = "it kept changing meanwhile; try again".into();
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        format!("{path}: {last}"),
    ))
}

/// Names tried for a link's upload before giving up.
const MAX_NAME_TRIES: u32 = 50;

/// `dir/stem (n).ext` for `dir/stem.ext`.
fn numbered(path: &RelPath, n: u32) -> ApiResult<RelPath> {
    let name = path.name();
    let (stem, ext) = match name.rfind('.').filter(|i| *i > 0) {
        Some(i) => name.split_at(i),
        None => (name, ""),
    };
    let parent = path.parent().unwrap_or_else(RelPath::root);
    parent
        .join(&format!("{stem} ({n}){ext}"))
        .map_err(|e| ApiError::bad(e.to_string()))
}

pub(in crate::api) async fn cancel(
    State(state): State<Arc<AppState>>,
    Path((folder, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let target = Target::of_session(&state, &headers, &folder).await?;
    ticket_of(&target, &id)?;
    let _busy = state.web_uploads.claim(&id)?;
    let dir = target.dir.clone();
    tokio::task::spawn_blocking(move || remove_upload(&dir, &id))
        .await
        .map_err(ApiError::worker)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::numbered;
    use cairn_model::RelPath;

    #[test]
    fn taken_names_get_a_number_before_the_extension() {
        let p = |s: &str| RelPath::parse(s).expect("path");
        assert_eq!(
            numbered(&p("in/report.pdf"), 2).expect("ok"),
            p("in/report (2).pdf")
        );
        assert_eq!(
            numbered(&p("in/README"), 3).expect("ok"),
            p("in/README (3)")
        );
        assert_eq!(numbered(&p(".profile"), 2).expect("ok"), p(".profile (2)"));
        assert_eq!(numbered(&p("a.tar.gz"), 2).expect("ok"), p("a.tar (2).gz"));
    }
}
