//! Write locks (WebDAV class 2): LOCK and UNLOCK, the `If` header, and the check every write
//! makes against the folder's locks.
//!
//! Locks live in the store (`dav_locks`), so every server instance honours them; a folder
//! holds at most `MAX_LOCKS`. A write must submit (in its `If` header) the token of every
//! lock on what it changes, and the lock must be the caller's; otherwise it is answered 423.
//! An `If` header that evaluates false is 412 before anything else happens. A LOCK on a path
//! where nothing is makes an empty file, as RFC 4918 asks. Locks expire after their timeout
//! ([`MAX_TIMEOUT`] at most); a deleted or moved resource loses its locks.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_model::{ContentHash, Entry, EntryKind, RelPath};
use cairn_protocol::{Access, Change};
use quick_xml::escape::escape;

use super::super::{blocking, folder_access, now_ns, ApiError, ApiResult, AppState, Caller};
use super::write::{apply, parent_ok};
use super::xml;
use super::{depth, etag_of, folder_for, href, node, small_body, Node, Target};
use crate::meta::dav::{DavLock, LockRefused};
use crate::meta::Folder;

/// The longest a lock lives without a refresh.
pub(super) const MAX_TIMEOUT: i64 = 3600;
/// A lock's life when the client names none.
const DEFAULT_TIMEOUT: i64 = 600;

/// The lock tokens a request submitted (in its `If` header).
#[derive(Default)]
pub(super) struct Submitted(Vec<String>);

/// One condition of an `If` list.
#[derive(Debug, PartialEq)]
struct Cond {
    not: bool,
    /// A state token (`<...>`) or, when `false`, an entity tag (`[...]`).
    is_token: bool,
    value: String,
}

/// One list of an `If` header, with the resource it is about (`None`: the request's).
#[derive(Debug, PartialEq)]
struct IfList {
    resource: Option<String>,
    conds: Vec<Cond>,
}

/// Parses an `If` header (RFC 4918 section 10.4).
fn parse_if(raw: &str) -> Result<Vec<IfList>, String> {
    let bad = || format!("bad If header {raw:?}");
    let mut out = Vec::new();
    let mut resource = None;
    let mut rest = raw.trim_start();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('<') {
            let (tag, after) = r.split_once('>').ok_or_else(bad)?;
            resource = Some(tag.to_string());
            rest = after.trim_start();
            continue;
        }
        let r = rest.strip_prefix('(').ok_or_else(bad)?;
        let (inner, after) = r.split_once(')').ok_or_else(bad)?;
        out.push(IfList {
            resource: resource.clone(),
            conds: conditions(inner).ok_or_else(bad)?,
        });
        rest = after.trim_start();
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

fn conditions(mut s: &str) -> Option<Vec<Cond>> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            break;
        }
        let not = s.get(..3).is_some_and(|w| w.eq_ignore_ascii_case("not"));
        if not {
            s = s[3..].trim_start();
        }
        let (close, is_token) = match s.as_bytes().first() {
            Some(b'<') => ('>', true),
            Some(b'[') => (']', false),
            _ => return None,
        };
        let (value, after) = s[1..].split_once(close)?;
        out.push(Cond {
            not,
            is_token,
            value: value.to_string(),
        });
        s = after;
    }
    (!out.is_empty()).then_some(out)
}

/// Evaluates the request's `If` header: 412 when it is false; the tokens it submits.
pub(super) async fn preconditions(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    headers: &HeaderMap,
) -> ApiResult<Submitted> {
    let Some(raw) = headers.get("if") else {
        return Ok(Submitted::default());
    };
    let raw = raw
        .to_str()
        .map_err(|_| ApiError::bad("the If header is not text"))?;
    let lists = parse_if(raw).map_err(ApiError::bad)?;
    let mut holds = false;
    for list in &lists {
        if list_holds(state, caller, target, list).await? {
            holds = true;
            break;
        }
    }
    if !holds {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!("the If header {raw:?} does not hold"),
        ));
    }
    let tokens = lists
        .iter()
        .flat_map(|l| &l.conds)
        .filter(|c| c.is_token && !c.not)
        .map(|c| c.value.clone())
        .collect();
    Ok(Submitted(tokens))
}

/// Whether every condition of `list` holds for its resource.
async fn list_holds(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    list: &IfList,
) -> ApiResult<bool> {
    let about = match &list.resource {
        None => target.clone(),
        Some(tag) => match tag_target(tag) {
            Some(t) => t,
            None => return Ok(false),
        },
    };
    let Target::In { folder, path } = about else {
        return Ok(false);
    };
    let Ok(f) = folder_access(state, caller, &folder, Access::Ro).await else {
        return Ok(false);
    };
    let locks = if list.conds.iter().any(|c| c.is_token) {
        let id = f.id;
        blocking(state, move |m| m.dav_locks(id, now_ns())).await?
    } else {
        Vec::new()
    };
    let etag = if list.conds.iter().any(|c| !c.is_token) {
        match node(state, &f, &path).await? {
            Node::File(v) => v.info.entry.hash.map(etag_of),
            _ => None,
        }
    } else {
        None
    };
    Ok(list.conds.iter().all(|c| {
        let truth = if c.is_token {
            locks.iter().any(|l| l.token == c.value && l.covers(&path))
        } else {
            etag.as_deref() == Some(c.value.trim_start_matches("W/"))
        };
        truth != c.not
    }))
}

/// The target a resource tag names (an absolute URI or a path), if it is under `/dav/`.
fn tag_target(tag: &str) -> Option<Target> {
    let path = if tag.starts_with('/') {
        tag.to_string()
    } else {
        tag.parse::<axum::http::Uri>().ok()?.path().to_string()
    };
    Target::parse(&path).ok()
}

/// 423 unless every lock on the `paths` of `f` (covering one, or below one marked `deep`) is
/// the caller's and submitted.
pub(super) async fn check(
    state: &Arc<AppState>,
    caller: &Caller,
    f: &Folder,
    paths: &[(&RelPath, bool)],
    submitted: &Submitted,
) -> ApiResult<()> {
    let id = f.id;
    let locks = blocking(state, move |m| m.dav_locks(id, now_ns())).await?;
    for l in &locks {
        let hit = paths
            .iter()
            .any(|(p, deep)| l.covers(p) || (*deep && l.path.starts_with(p)));
        if hit && !(l.user_id == caller.user.id && submitted.0.contains(&l.token)) {
            return Err(ApiError::new(
                StatusCode::LOCKED,
                format!(
                    "{}/{} is locked; send its lock token in an If header",
                    f.name, l.path
                ),
            ));
        }
    }
    Ok(())
}

/// The `activelock` element of `l` in `folder`.
pub(super) fn activelock(out: &mut String, folder: &str, l: &DavLock) {
    let scope = if l.shared { "shared" } else { "exclusive" };
    let depth = if l.deep { "infinity" } else { "0" };
    let left = (l.expires_ns - now_ns()).max(0) / 1_000_000_000;
    let _ = write!(
        out,
        "<D:activelock><D:locktype><D:write/></D:locktype><D:lockscope><D:{scope}/></D:lockscope>\
         <D:depth>{depth}</D:depth>"
    );
    if !l.owner.is_empty() {
        let _ = write!(out, "<D:owner>{}</D:owner>", l.owner);
    }
    let root = href(folder, &l.path, false);
    let _ = write!(
        out,
        "<D:timeout>Second-{left}</D:timeout><D:locktoken><D:href>{}</D:href></D:locktoken>\
         <D:lockroot><D:href>{}</D:href></D:lockroot></D:activelock>",
        escape(l.token.as_str()),
        escape(root.as_str())
    );
}

/// The `supportedlock` property's value.
pub(super) const SUPPORTED: &str = "<D:lockentry><D:lockscope><D:exclusive/></D:lockscope>\
    <D:locktype><D:write/></D:locktype></D:lockentry><D:lockentry><D:lockscope><D:shared/>\
    </D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>";

/// The lock's life the client asks for (`Timeout: Second-N` or `Infinite`), at most
/// [`MAX_TIMEOUT`].
fn timeout(headers: &HeaderMap) -> i64 {
    let raw = headers
        .get("timeout")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for part in raw.split(',').map(str::trim) {
        if part.eq_ignore_ascii_case("infinite") {
            return MAX_TIMEOUT;
        }
        if let Some(n) = part
            .strip_prefix("Second-")
            .and_then(|n| n.parse::<i64>().ok())
        {
            return n.clamp(1, MAX_TIMEOUT);
        }
    }
    DEFAULT_TIMEOUT
}

fn new_token() -> String {
    let h = crate::auth::random_hex(16);
    format!(
        "opaquelocktoken:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn lock_answer(status: StatusCode, folder: &str, l: &DavLock) -> Response {
    let mut body = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:prop xmlns:D=\"DAV:\"><D:lockdiscovery>",
    );
    activelock(&mut body, folder, l);
    body.push_str("</D:lockdiscovery></D:prop>\n");
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("<{}>", l.token)) {
        resp.headers_mut().insert("lock-token", v);
    }
    resp
}

pub(super) async fn lock(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    headers: &HeaderMap,
    body: Body,
    submitted: &Submitted,
) -> ApiResult<Response> {
    let (folder, path) = target.in_folder()?;
    let shown = format!("{folder}/{path}");
    let body = small_body(body).await?;
    let f = folder_for(state, caller, folder, Access::Rw).await?;
    let timeout_s = timeout(headers);
    let expires_ns = now_ns().saturating_add(timeout_s * 1_000_000_000);
    if body.iter().all(u8::is_ascii_whitespace) {
        return refresh(state, caller, &f, path, submitted, timeout_s, expires_ns).await;
    }
    let (shared, owner) =
        xml::lockinfo(&body).map_err(|e| ApiError::bad(format!("LOCK {shown}: {e}")))?;
    let deep = match depth(headers)? {
        None => true,
        Some(0) => false,
        Some(_) => {
            return Err(ApiError::bad(format!(
                "LOCK {shown}: Depth is 0 or infinity"
            )))
        }
    };
    let here = node(state, &f, path).await?;
    if !here.exists() {
        parent_ok(state, &f, path).await?;
    }
    let lock = DavLock {
        token: new_token(),
        path: path.clone(),
        deep,
        shared,
        owner,
        user_id: caller.user.id,
        timeout_s,
        expires_ns,
    };
    let (fc, lc) = (f.clone(), lock.clone());
    match blocking(state, move |m| m.add_dav_lock(&fc, &lc, now_ns())).await? {
        Ok(()) => {}
        Err(LockRefused::Conflict) => {
            return Err(ApiError::new(
                StatusCode::LOCKED,
                format!("{shown} is locked already"),
            ))
        }
        Err(LockRefused::Full) => {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!("{folder} holds as many locks as it may"),
            ))
        }
    }
    if here.exists() {
        return Ok(lock_answer(StatusCode::OK, folder, &lock));
    }
    // An unmapped path gets an empty file, which the lock now protects.
    if let Err(e) = empty_file(state, caller, &f, path, here.base()).await {
        let (id, token) = (f.id, lock.token.clone());
        let _ = blocking(state, move |m| m.remove_dav_lock(id, &token)).await;
        return Err(e);
    }
    Ok(lock_answer(StatusCode::CREATED, folder, &lock))
}

async fn empty_file(
    state: &Arc<AppState>,
    caller: &Caller,
    f: &Folder,
    path: &RelPath,
    base: Option<cairn_model::Seq>,
) -> ApiResult<()> {
    let change = Change {
        path: path.clone(),
        base,
        entry: Entry {
            kind: EntryKind::File,
            size: 0,
            mtime_ns: now_ns(),
            mode: 0o644,
            hash: Some(ContentHash::of(&[])),
            target: None,
        },
        chunks: Vec::new(),
        moved_from: None,
        inline: None,
    };
    apply(state, caller, f, vec![change]).await
}

/// A LOCK without a body: the submitted lock on `path` lives `timeout_s` longer.
async fn refresh(
    state: &Arc<AppState>,
    caller: &Caller,
    f: &Folder,
    path: &RelPath,
    submitted: &Submitted,
    timeout_s: i64,
    expires_ns: i64,
) -> ApiResult<Response> {
    let id = f.id;
    let locks = blocking(state, move |m| m.dav_locks(id, now_ns())).await?;
    let found = locks
        .into_iter()
        .find(|l| l.covers(path) && l.user_id == caller.user.id && submitted.0.contains(&l.token));
    let Some(mut l) = found else {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "{}/{path}: a refresh names the lock in an If header",
                f.name
            ),
        ));
    };
    let token = l.token.clone();
    if !blocking(state, move |m| {
        m.refresh_dav_lock(id, &token, timeout_s, expires_ns)
    })
    .await?
    {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "the lock is gone",
        ));
    }
    l.timeout_s = timeout_s;
    l.expires_ns = expires_ns;
    Ok(lock_answer(StatusCode::OK, &f.name, &l))
}

pub(super) async fn unlock(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let (folder, path) = target.in_folder()?;
    let token = headers
        .get("lock-token")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .ok_or_else(|| ApiError::bad("UNLOCK needs a Lock-Token header"))?;
    let f = folder_for(state, caller, folder, Access::Rw).await?;
    let id = f.id;
    let locks = blocking(state, move |m| m.dav_locks(id, now_ns())).await?;
    let Some(l) = locks.iter().find(|l| l.token == token && l.covers(path)) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{folder}/{path} holds no lock {token}"),
        ));
    };
    if l.user_id != caller.user.id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("the lock on {folder}/{} is another user's", l.path),
        ));
    }
    blocking(state, move |m| m.remove_dav_lock(id, &token)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_headers_parse_into_tagged_and_untagged_lists() {
        let lists =
            parse_if("<https://h/dav/f/a> (<opaquelocktoken:x> [\"e\"]) (Not <DAV:no-lock>)")
                .expect("parses");
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[1].resource.as_deref(), Some("https://h/dav/f/a"));
        assert_eq!(
            lists[0].conds[1],
            Cond {
                not: false,
                is_token: false,
                value: "\"e\"".into()
            }
        );
        assert!(lists[1].conds[0].not && lists[1].conds[0].is_token);
        assert!(parse_if("(<a>").is_err());
        assert!(parse_if("()").is_err());
        assert!(parse_if("junk").is_err());
        assert!(parse_if("(ÄÖÜ)").is_err(), "refused, not a panic");
        let full = "<https://h/dav/é> (Not <opaquelocktoken:x> [W/\"e\"]) (<DAV:no-lock>)";
        for (i, _) in full.char_indices() {
            let _ = parse_if(&full[..i]);
        }
    }

    #[test]
    fn timeouts_are_capped() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("timeout", HeaderValue::from_str(v).expect("value"));
            timeout(&m)
        };
        assert_eq!(h("Second-60"), 60);
        assert_eq!(h("Infinite, Second-5"), MAX_TIMEOUT);
        assert_eq!(h("Second-99999999"), MAX_TIMEOUT);
        assert_eq!(timeout(&HeaderMap::new()), DEFAULT_TIMEOUT);
    }
}
