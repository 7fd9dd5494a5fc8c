//! Changes through WebDAV, each a commit on top of the heads it read (a change that raced
//! another is refused with 409, never applied over it): PUT (the body cut into chunks as it
//! arrives, a new version), DELETE (deletion versions: restorable), MKCOL, COPY (the copy
//! references the same chunks), MOVE (within a folder the journal's move, so agents see a
//! rename; between folders a copy and a deletion) and PROPPATCH (dead properties).
//!
//! Replacing an existing destination (`Overwrite: T`) first deletes it, as RFC 4918 says,
//! except a file over a file, which simply becomes its next version. A collection's changes
//! may span several commits (the API's limits); each one is whole.

use std::io::Read as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_model::{ContentHash, Entry, EntryKind, RelPath, Seq};
use cairn_protocol::{
    Access, Change, ChangeResult, ChunkSpan, MovedFrom, VersionInfo, MAX_COMMIT_CHUNKS,
};
use futures_util::TryStreamExt;
use quick_xml::escape::escape;

use super::super::web::{edit, upload};
use super::super::{blocking, now_ns, ApiError, ApiResult, AppState, Caller};
use super::lock::{check, Submitted};
use super::read::{multistatus, not_found, LIVE};
use super::xml::{self, DAV};
use super::{depth, folder_for, href, node, small_body, Node, Target};
use crate::meta::dav::{PropUpdate, MAX_VALUE};
use crate::meta::Folder;

pub(super) async fn put(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    headers: &HeaderMap,
    body: Body,
    locks: &Submitted,
) -> ApiResult<Response> {
    let (folder, path) = target.in_folder()?;
    let shown = format!("{folder}/{path}");
    if path.is_root() {
        return Err(not_allowed(&shown, "a folder's root is a collection"));
    }
    if headers.contains_key(header::CONTENT_RANGE) {
        return Err(ApiError::bad(format!(
            "{shown}: a PUT with Content-Range is refused; send the whole file"
        )));
    }
    let f = folder_for(state, caller, folder, Access::Rw).await?;
    let announced = content_length(headers);
    if let Some(size) = announced {
        check_size(caller, size, &shown)?;
    }
    check(state, caller, &f, &[(path, false)], locks).await?;
    parent_ok(state, &f, path).await?;
    if let Node::Collection(_) = node(state, &f, path).await? {
        return Err(not_allowed(&shown, "it is a collection"));
    }
    let (size, chunks, hash) = store_body(state, caller, announced, body, &shown).await?;
    let entry = Entry {
        kind: EntryKind::File,
        size,
        mtime_ns: client_mtime(headers).unwrap_or_else(now_ns),
        mode: 0o644,
        hash: Some(hash),
        target: None,
    };
    // The head is read after the body arrived: a long upload bases on what is there now.
    let base = node(state, &f, path).await?;
    if let Node::Collection(_) = base {
        return Err(not_allowed(&shown, "it is a collection"));
    }
    let created = !base.exists();
    let change = Change {
        path: path.clone(),
        base: base.base(),
        entry,
        chunks,
        moved_from: None,
        inline: None,
    };
    apply(state, caller, &f, vec![change]).await?;
    let mut resp = created_or_not(created);
    if client_mtime(headers).is_some() {
        resp.headers_mut()
            .insert("x-oc-mtime", header::HeaderValue::from_static("accepted"));
    }
    Ok(resp)
}

/// The modification time a client gives with `X-OC-Mtime` (seconds since the epoch, as
/// ownCloud's clients and rclone's `owncloud` vendor send it), in nanoseconds.
fn client_mtime(headers: &HeaderMap) -> Option<i64> {
    let raw = headers.get("x-oc-mtime")?.to_str().ok()?.trim();
    let secs: f64 = raw
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)?;
    // Up to the year 2262, the last that nanoseconds in an i64 reach.
    (secs < 9.2e9).then_some((secs * 1e9) as i64)
}

fn created_or_not(created: bool) -> Response {
    if created {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

fn not_allowed(shown: &str, why: &str) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{shown}: {why}"))
}

/// The body's announced length, if any.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Cuts a PUT's body into chunks and stores them: as it arrives when its length is announced
/// (the chunking parameters follow the size), otherwise (a chunked body, as some desktop
/// clients send) after staging it on disk within the same bounds; its size, chunks and hash.
async fn store_body(
    state: &Arc<AppState>,
    caller: &Caller,
    announced: Option<u64>,
    body: Body,
    shown: &str,
) -> ApiResult<(u64, Vec<ChunkSpan>, ContentHash)> {
    let data = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(data));
    if let Some(size) = announced {
        let open = move || Ok(reader.take(size));
        let (chunks, hash) = upload::store_from(state, caller, open, size, shown).await?;
        return Ok((size, chunks, hash));
    }
    let limit = caller.user.quota.map_or(upload::MAX_FILE, |q| {
        q.saturating_sub(caller.user.used_bytes)
            .min(upload::MAX_FILE)
    });
    let staged = Staged::new(upload::scratch_dir(state))?;
    let file = staged.path.clone();
    let size = tokio::task::spawn_blocking(move || {
        let mut out =
            std::fs::File::create(&file).map_err(|e| staging_error("creating", &file, e))?;
        std::io::copy(&mut reader.take(limit.saturating_add(1)), &mut out)
            .map_err(|e| staging_error("writing", &file, e))
    })
    .await
    .map_err(ApiError::worker)??;
    if size > limit {
        // Whichever bound it crossed says why.
        check_size(caller, size, shown)?;
    }
    let file = staged.path.clone();
    let open = move || std::fs::File::open(&file).map_err(|e| staging_error("opening", &file, e));
    let (chunks, hash) = upload::store_from(state, caller, open, size, shown).await?;
    drop(staged);
    Ok((size, chunks, hash))
}

fn staging_error(what: &str, path: &std::path::Path, e: std::io::Error) -> ApiError {
    crate::Error::Io {
        context: format!("{what} {}", path.display()),
        source: e,
    }
    .into()
}

/// A PUT body staged on disk, removed when dropped (files a crash left behind are removed by
/// a later staging once they are a day old).
struct Staged {
    path: std::path::PathBuf,
}

impl Staged {
    fn new(dir: std::path::PathBuf) -> ApiResult<Staged> {
        const STALE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
        std::fs::create_dir_all(&dir).map_err(|e| staging_error("creating", &dir, e))?;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE);
                if old {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let path = dir.join(format!("{}.part", crate::auth::random_hex(16)));
        Ok(Staged { path })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The bounds of a browser upload apply: the largest file, and the caller's quota.
fn check_size(caller: &Caller, size: u64, shown: &str) -> ApiResult<()> {
    if size > upload::MAX_FILE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{shown}: {size} bytes; files of at most {} bytes may be sent this way (use the cairn client for larger ones)",
                upload::MAX_FILE
            ),
        ));
    }
    let user = &caller.user;
    if let Some(quota) = user.quota {
        if user.used_bytes.saturating_add(size) > quota {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!("{shown}: {size} bytes would go over the quota of {quota} bytes"),
            ));
        }
    }
    Ok(())
}

/// 409 unless the collection that would hold `path` exists.
pub(super) async fn parent_ok(state: &Arc<AppState>, f: &Folder, path: &RelPath) -> ApiResult<()> {
    let parent = path.parent().unwrap_or_else(RelPath::root);
    match node(state, f, &parent).await? {
        Node::Collection(_) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{}/{path}: the collection {parent} does not exist", f.name),
        )),
    }
}

/// Commits `changes` to `folder`; any one not applied makes the request fail with its reason.
pub(super) async fn apply(
    state: &Arc<AppState>,
    caller: &Caller,
    folder: &Folder,
    changes: Vec<Change>,
) -> ApiResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let paths: Vec<RelPath> = changes.iter().map(|c| c.path.clone()).collect();
    let results = edit::commit(state, caller, folder, changes).await?;
    for (r, p) in results.iter().zip(&paths) {
        let why = match r {
            ChangeResult::Accepted { .. } => continue,
            ChangeResult::Conflict { .. } => "it changed meanwhile; try again".to_string(),
            other => edit::refusal(other).unwrap_or_default(),
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{}/{p}: {why}", folder.name),
        ));
    }
    Ok(())
}

/// `changes` in groups whose chunk references stay within one commit's limit, a move counted
/// at the most chunks its file can have (the store counts a moved file's chunk list against
/// the limit; the commit's own batching sees no chunks in a move).
fn by_references(changes: Vec<Change>) -> Vec<Vec<Change>> {
    let cost = |c: &Change| match &c.moved_from {
        Some(_) => {
            usize::try_from(cairn_model::chunking::most_chunks(c.entry.size)).unwrap_or(usize::MAX)
        }
        None => c.chunks.len(),
    };
    let mut out: Vec<Vec<Change>> = vec![Vec::new()];
    let mut refs = 0usize;
    for c in changes {
        let n = cost(&c);
        let full = refs.saturating_add(n) > MAX_COMMIT_CHUNKS;
        if full && out.last().is_some_and(|b| !b.is_empty()) {
            out.push(Vec::new());
            refs = 0;
        }
        refs = refs.saturating_add(n);
        if let Some(b) = out.last_mut() {
            b.push(c);
        }
    }
    out
}

fn deletion(path: RelPath, base: Seq, now: i64) -> Change {
    Change {
        path,
        base: Some(base),
        entry: Entry {
            kind: EntryKind::Deleted,
            size: 0,
            mtime_ns: now,
            mode: 0,
            hash: None,
            target: None,
        },
        chunks: Vec::new(),
        moved_from: None,
        inline: None,
    }
}

/// The live entries at and below `path` (heads that are not deletions), in path order.
async fn subtree(state: &Arc<AppState>, f: &Folder, path: &RelPath) -> ApiResult<Vec<VersionInfo>> {
    let (f, p) = (f.clone(), path.clone());
    blocking(state, move |m| m.tree(&f, &p, None, false)).await
}

/// Deletion versions for what `node` at `path` holds (a collection: everything below it).
async fn deletions(
    state: &Arc<AppState>,
    f: &Folder,
    path: &RelPath,
    node: &Node,
) -> ApiResult<Vec<Change>> {
    let now = now_ns();
    Ok(match node {
        Node::Missing(_) => Vec::new(),
        Node::File(v) => vec![deletion(path.clone(), v.info.seq, now)],
        Node::Collection(_) => subtree(state, f, path)
            .await?
            .into_iter()
            .rev()
            .map(|v| deletion(v.path, v.seq, now))
            .collect(),
    })
}

pub(super) async fn delete(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    locks: &Submitted,
) -> ApiResult<Response> {
    let (folder, path) = target.in_folder()?;
    if path.is_root() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{folder}: a folder's root cannot be deleted through WebDAV"),
        ));
    }
    let f = folder_for(state, caller, folder, Access::Rw).await?;
    let here = node(state, &f, path).await?;
    if !here.exists() {
        return Err(not_found(folder, path));
    }
    check(state, caller, &f, &[(path, true)], locks).await?;
    let changes = deletions(state, &f, path, &here).await?;
    apply(state, caller, &f, changes).await?;
    let (id, p) = (f.id, path.clone());
    blocking(state, move |m| {
        m.drop_props(id, &p)?;
        m.drop_dav_locks(id, &p)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn mkcol(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    body: Body,
    locks: &Submitted,
) -> ApiResult<Response> {
    let (folder, path) = target.in_folder()?;
    let shown = format!("{folder}/{path}");
    if !small_body(body).await?.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{shown}: MKCOL takes no body"),
        ));
    }
    let f = folder_for(state, caller, folder, Access::Rw).await?;
    let here = node(state, &f, path).await?;
    if path.is_root() || here.exists() {
        return Err(not_allowed(&shown, "something is there already"));
    }
    parent_ok(state, &f, path).await?;
    check(state, caller, &f, &[(path, false)], locks).await?;
    let change = edit::dir_change(path.clone(), here.base(), now_ns());
    apply(state, caller, &f, vec![change]).await?;
    Ok(StatusCode::CREATED.into_response())
}

/// Where a COPY or MOVE goes: its `Destination`, which must be under `/dav/` on this server
/// (`here`: the request's own host).
fn destination(headers: &HeaderMap, here: Option<&str>) -> ApiResult<(String, RelPath)> {
    let raw = headers
        .get("destination")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad("a Destination header is needed"))?;
    let elsewhere = || {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("Destination {raw:?} is not under /dav/ on this server"),
        )
    };
    let path = if raw.starts_with('/') {
        raw.to_string()
    } else {
        let uri: axum::http::Uri = raw
            .parse()
            .map_err(|_| ApiError::bad(format!("bad Destination {raw:?}")))?;
        let same = match (uri.authority(), here) {
            (Some(a), Some(h)) => a.as_str().eq_ignore_ascii_case(h),
            _ => false,
        };
        if !same {
            return Err(elsewhere());
        }
        uri.path().to_string()
    };
    match Target::parse(&path) {
        Ok(Target::In { folder, path }) if !path.is_root() => Ok((folder, path)),
        Ok(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("Destination {raw:?}: /dav/ and a folder's root cannot be replaced"),
        )),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(elsewhere()),
        Err(e) => Err(e),
    }
}

fn overwrite(headers: &HeaderMap) -> ApiResult<bool> {
    match headers.get("overwrite").map(|v| v.as_bytes()) {
        None | Some(b"T") | Some(b"t") => Ok(true),
        Some(b"F") | Some(b"f") => Ok(false),
        Some(_) => Err(ApiError::bad("the Overwrite header is T or F")),
    }
}

/// Both ends of a COPY or MOVE, checked.
struct Ends {
    src: (Folder, RelPath, Node),
    dst: (Folder, RelPath, Node),
    /// Depth 0: a collection is copied without its members.
    shallow: bool,
}

pub(super) async fn copy_move(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    headers: &HeaderMap,
    here: Option<&str>,
    moving: bool,
    locks: &Submitted,
) -> ApiResult<Response> {
    let ends = ends(state, caller, target, headers, here, moving).await?;
    let existed = ends.dst.2.exists();
    let (sf, spath) = (&ends.src.0, &ends.src.1);
    let (df, dpath) = (&ends.dst.0, &ends.dst.1);
    if moving {
        check(state, caller, sf, &[(spath, true)], locks).await?;
    }
    check(state, caller, df, &[(dpath, true)], locks).await?;
    let in_place = matches!((&ends.src.2, &ends.dst.2), (Node::File(_), Node::File(_)));
    let base = if existed && !in_place {
        let gone = deletions(state, df, dpath, &ends.dst.2).await?;
        apply(state, caller, df, gone).await?;
        None
    } else {
        ends.dst.2.base()
    };
    let (to_dst, from_src) = carry(state, &ends, base, moving).await?;
    for batch in by_references(to_dst) {
        apply(state, caller, df, batch).await?;
    }
    apply(state, caller, sf, from_src).await?;
    let (from, to) = ((sf.id, spath.clone()), (df.id, dpath.clone()));
    blocking(state, move |m| {
        m.carry_props((from.0, &from.1), (to.0, &to.1), !moving)
    })
    .await?;
    Ok(created_or_not(!existed))
}

/// Reads and checks a COPY's or MOVE's source and destination.
async fn ends(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    headers: &HeaderMap,
    here: Option<&str>,
    moving: bool,
) -> ApiResult<Ends> {
    let (sfolder, spath) = target.in_folder()?;
    let shown = format!("{sfolder}/{spath}");
    if spath.is_root() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{shown}: a folder's root cannot be copied or moved through WebDAV"),
        ));
    }
    let (dfolder, dpath) = destination(headers, here)?;
    let replace = overwrite(headers)?;
    let shallow = match (depth(headers)?, moving) {
        (None, _) => false,
        (Some(0), false) => true,
        (Some(d), _) => {
            return Err(ApiError::bad(format!(
                "{shown}: Depth {d} is not offered for this method"
            )))
        }
    };
    let sf = folder_for(
        state,
        caller,
        sfolder,
        if moving { Access::Rw } else { Access::Ro },
    )
    .await?;
    let df = folder_for(state, caller, &dfolder, Access::Rw).await?;
    if sf.id == df.id && (spath.starts_with(&dpath) || dpath.starts_with(spath)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{shown}: the destination {dfolder}/{dpath} is the source, inside it or above it"
            ),
        ));
    }
    let src = node(state, &sf, spath).await?;
    if !src.exists() {
        return Err(not_found(sfolder, spath));
    }
    parent_ok(state, &df, &dpath).await?;
    let dst = node(state, &df, &dpath).await?;
    if dst.exists() && !replace {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!("{dfolder}/{dpath} exists and Overwrite is F"),
        ));
    }
    Ok(Ends {
        src: (sf, spath.clone(), src),
        dst: (df, dpath, dst),
        shallow,
    })
}

/// The changes that bring the source to the destination (based on `base` there), and those
/// that then remove it from the source (a move between folders, or of a collection's own
/// entries that are not moved one by one).
async fn carry(
    state: &Arc<AppState>,
    ends: &Ends,
    base: Option<Seq>,
    moving: bool,
) -> ApiResult<(Vec<Change>, Vec<Change>)> {
    let (sf, spath, src) = &ends.src;
    let (df, dpath, _) = &ends.dst;
    let same = sf.id == df.id;
    let now = now_ns();
    let (mut to_dst, mut from_src) = (Vec::new(), Vec::new());
    match src {
        Node::Missing(_) => {}
        Node::File(v) => {
            let change = if moving && same {
                moved(dpath.clone(), base, &v.info)
            } else {
                if moving {
                    from_src.push(deletion(spath.clone(), v.info.seq, now));
                }
                copied(dpath.clone(), base, &v.info, v.chunks.clone())
            };
            to_dst.push(change);
        }
        Node::Collection(own) => {
            let mut top = edit::dir_change(dpath.clone(), base, now);
            if let Some(own) = own {
                top.entry = own.entry.clone();
                if moving {
                    from_src.push(deletion(spath.clone(), own.seq, now));
                }
            }
            to_dst.push(top);
            if !ends.shallow {
                carry_members(state, ends, moving, (&mut to_dst, &mut from_src)).await?;
            }
        }
    }
    // Members before their collection: a deletion of a collection's entry comes last.
    from_src.reverse();
    Ok((to_dst, from_src))
}

/// The changes that bring the members of the source collection to the destination, and
/// those that then remove them from the source (all but files moved within a folder).
async fn carry_members(
    state: &Arc<AppState>,
    ends: &Ends,
    moving: bool,
    (to_dst, from_src): (&mut Vec<Change>, &mut Vec<Change>),
) -> ApiResult<()> {
    let (sf, spath, _) = &ends.src;
    let (df, dpath, _) = &ends.dst;
    let same = sf.id == df.id;
    let now = now_ns();
    let members = subtree(state, sf, spath).await?;
    for v in members.into_iter().filter(|v| v.path != *spath) {
        let Some(rel) = v.path.strip_prefix(spath) else {
            continue;
        };
        let to = dpath.join_path(&rel);
        if v.entry.kind == EntryKind::File && moving && same {
            to_dst.push(moved(to, None, &v));
            continue;
        }
        let chunks = if v.entry.kind == EntryKind::File {
            let (f, p, seq) = (sf.clone(), v.path.clone(), v.seq);
            // Gone meanwhile: the copy is refused for its missing content, naming it.
            blocking(state, move |m| m.version(&f, &p, Some(seq)))
                .await?
                .map(|s| s.chunks)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        if moving {
            from_src.push(deletion(v.path.clone(), v.seq, now));
        }
        to_dst.push(copied(to, None, &v, chunks));
    }
    Ok(())
}

/// A move of `from`'s head to `to` in the same folder: no content is sent.
fn moved(to: RelPath, base: Option<Seq>, from: &VersionInfo) -> Change {
    Change {
        path: to,
        base,
        entry: from.entry.clone(),
        chunks: Vec::new(),
        moved_from: Some(MovedFrom {
            path: from.path.clone(),
            base: from.seq,
        }),
        inline: None,
    }
}

/// A copy of `from` at `to`, referencing the same chunks.
fn copied(
    to: RelPath,
    base: Option<Seq>,
    from: &VersionInfo,
    chunks: Vec<cairn_protocol::ChunkSpan>,
) -> Change {
    Change {
        path: to,
        base,
        entry: from.entry.clone(),
        chunks,
        moved_from: None,
        inline: None,
    }
}

pub(super) async fn proppatch(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    body: Body,
    locks: &Submitted,
) -> ApiResult<Response> {
    let (folder, path) = target.in_folder()?;
    let shown = format!("{folder}/{path}");
    let body = small_body(body).await?;
    let updates =
        xml::proppatch(&body).map_err(|e| ApiError::bad(format!("PROPPATCH {shown}: {e}")))?;
    let f = folder_for(state, caller, folder, Access::Rw).await?;
    let here = node(state, &f, path).await?;
    if !here.exists() {
        return Err(not_found(folder, path));
    }
    check(state, caller, &f, &[(path, false)], locks).await?;
    let name_of = |u: &PropUpdate| match u {
        PropUpdate::Set(n, _) | PropUpdate::Remove(n) => n.clone(),
    };
    let protected = |u: &PropUpdate| {
        let n = name_of(u);
        n.ns == DAV && LIVE.contains(&n.name.as_str())
    };
    let too_long = updates
        .iter()
        .any(|u| matches!(u, PropUpdate::Set(_, v) if v.len() > MAX_VALUE));
    if too_long {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{shown}: a property's value may have at most {MAX_VALUE} bytes"),
        ));
    }
    let collection = matches!(here, Node::Collection(_));
    let mut out = String::from(xml::MULTISTATUS_START);
    out.push_str(&format!(
        "<D:response><D:href>{}</D:href>",
        escape(href(folder, path, collection).as_str())
    ));
    if updates.iter().any(protected) {
        // All or nothing: the live ones are refused, the others fail with them.
        for u in &updates {
            let mut p = String::new();
            xml::prop_xml(&mut p, &name_of(u), None);
            xml::propstat(&mut out, &p, if protected(u) { 403 } else { 424 });
        }
    } else {
        let (id, p, names) = (
            f.id,
            path.clone(),
            updates.iter().map(name_of).collect::<Vec<_>>(),
        );
        blocking(state, move |m| m.patch_props(id, &p, &updates)).await?;
        let mut props = String::new();
        for n in &names {
            xml::prop_xml(&mut props, n, None);
        }
        xml::propstat(&mut out, &props, 200);
    }
    out.push_str("</D:response>");
    out.push_str(xml::MULTISTATUS_END);
    Ok(multistatus(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_are_batched_by_the_most_chunks_their_files_can_have() {
        let file = |size: u64, is_move: bool| {
            let p = RelPath::parse("f").expect("path");
            let v = VersionInfo {
                path: p.clone(),
                seq: Seq(1),
                entry: Entry {
                    kind: EntryKind::File,
                    size,
                    mtime_ns: 0,
                    mode: 0o644,
                    hash: Some(cairn_model::ContentHash::of(b"")),
                    target: None,
                },
                device: cairn_model::DeviceId("d".into()),
                user: "u".into(),
                computer: String::new(),
                committed_ns: 0,
                inline: None,
            };
            if is_move {
                moved(p, None, &v)
            } else {
                copied(p, None, &v, Vec::new())
            }
        };
        // A 4 GiB file has at most 32,768 chunks (of 128 KiB): two are more than one commit
        // may reference.
        let big = 4 << 30;
        let batches = by_references(vec![file(big, true), file(big, true), file(10, false)]);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 2]);
        let small = by_references((0..100).map(|_| file(1000, true)).collect());
        assert_eq!(small.len(), 1);
    }
}
