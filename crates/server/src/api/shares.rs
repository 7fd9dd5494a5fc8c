//! Sharing links: `/api/v1/shares` for their owners (create, list, revoke), and the public
//! pages at `/s/TOKEN` for whoever holds one (see [`crate::share`] for the rules).
//!
//! The public pages are server-rendered HTML with no script: every user text is escaped, a
//! Content-Security-Policy allows nothing but the page's own inline style, and no page may be
//! framed. A password is asked by a form guarded by a double-submit CSRF token and throttled by
//! the login gate (per link and per address); a right one sets a cookie that unlocks this link
//! only (HttpOnly, Secure, SameSite=Strict, Path=/s/TOKEN, signed, one hour).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use cairn_model::{EntryKind, RelPath};
use cairn_protocol::Access;
use serde::Deserialize;

use super::{blocking, now_ns, stream_file, ApiError, ApiResult, AppState, Caller, ClientAddr};

pub(super) mod drop;
use crate::auth;
use crate::meta::{Actor, EventKind, Folder, NewShare, Outcome, ShareRow};
use crate::share::{self, ShareInfo, ShareRequest, MAX_VALIDITY_NS};

/// Entries per page of a shared folder's list.
const PAGE: usize = 200;
/// How long a right password unlocks a link in one browser.
const UNLOCK_NS: i64 = 3600 * 1_000_000_000;

// ---- the owners' API ----

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<ShareRequest>,
) -> ApiResult<Json<ShareInfo>> {
    Ok(Json(create_share(&state, &caller, req).await?))
}

/// Makes a link for the caller, who must be able to read what it points to.
pub(super) async fn create_share(
    state: &Arc<AppState>,
    caller: &Caller,
    req: ShareRequest,
) -> ApiResult<ShareInfo> {
    let state = state.clone();
    // An upload-only link writes into the folder: its owner must be able to.
    let need = if req.upload_only {
        Access::Rw
    } else {
        Access::Ro
    };
    let folder = super::folder_access(&state, caller, &req.folder, need).await?;
    let path = super::parse_path(Some(&req.path))?;
    let now = now_ns();
    if let Some(e) = req.expires_ns {
        if e <= now || e - now > MAX_VALIDITY_NS {
            return Err(ApiError::bad(
                "the expiry must be in the future and at most a year away",
            ));
        }
    }
    if req.max_access == Some(0) || req.max_access.is_some_and(|m| m > 1_000_000) {
        return Err(ApiError::bad("the most accesses is 1 to 1,000,000"));
    }
    if req
        .password
        .as_ref()
        .is_some_and(|p| p.is_empty() || p.len() > 1024)
    {
        return Err(ApiError::bad("a link's password has 1 to 1024 bytes"));
    }
    let owner = caller.user.clone();
    let by = caller.actor();
    let row = blocking(&state, move |m| {
        let kind = match (kind_at(m, &folder, &path)?, req.upload_only) {
            ("dir", true) => "drop",
            (_, true) => {
                return Err(crate::Error::Invalid(format!(
                    "{path} is a file; an upload-only link is for a folder"
                )))
            }
            (kind, false) => kind,
        };
        let pw_hash = req
            .password
            .as_deref()
            .map(auth::hash_password)
            .transpose()?;
        let token = share::new_token();
        let id = m.add_share(&NewShare {
            token: &token,
            owner_id: owner.id,
            folder_id: folder.id,
            path: path.as_str(),
            kind,
            pw_hash: pw_hash.as_deref(),
            expires_ns: req.expires_ns,
            max_access: req.max_access.map(|m| m as i64),
            now_ns: now,
        })?;
        // The link's id names it here: its token is a secret.
        let detail = format!(
            "{kind} {}/{path}{}",
            folder.name,
            if pw_hash.is_some() {
                ", with a password"
            } else {
                ""
            }
        );
        m.record(
            EventKind::ShareCreated,
            &by,
            &format!("link {id}"),
            Outcome::Ok,
            &detail,
        );
        m.share_by_token(&token)?
            .ok_or_else(|| crate::Error::NotFound("the new link vanished".into()))
    })
    .await?;
    Ok(ShareInfo::of(&row, now))
}

/// What is at `path` now: `file` or `dir` (the folder's root is a `dir`).
fn kind_at(m: &crate::meta::Meta, folder: &Folder, path: &RelPath) -> crate::Result<&'static str> {
    if path.is_root() {
        return Ok("dir");
    }
    match m.version(folder, path, None)? {
        Some(v) if !v.info.is_deleted() && v.info.entry.kind == EntryKind::File => Ok("file"),
        Some(v) if !v.info.is_deleted() && v.info.entry.kind == EntryKind::Dir => Ok("dir"),
        None if m.has_entries_under(folder, path)? => Ok("dir"),
        _ => Err(crate::Error::NotFound(format!(
            "no file or folder {path} in {}",
            folder.name
        ))),
    }
}

#[derive(Deserialize)]
pub(super) struct All {
    #[serde(default)]
    all: bool,
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<All>,
) -> ApiResult<Json<Vec<ShareInfo>>> {
    if q.all && !caller.user.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only an administrator may list every user's links",
        ));
    }
    let owner = (!q.all).then_some(caller.user.id);
    let rows = blocking(&state, move |m| m.shares(owner)).await?;
    let now = now_ns();
    Ok(Json(rows.iter().map(|r| ShareInfo::of(r, now)).collect()))
}

pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let owner = (!caller.user.admin).then_some(caller.user.id);
    revoke_share(&state, id, owner, caller.actor()).await?;
    Ok(Json(serde_json::json!({"ok": true})))
}

/// Revokes link `id` of `owner` (any user's with `None`) and records who did.
pub(super) async fn revoke_share(
    state: &Arc<AppState>,
    id: i64,
    owner: Option<i64>,
    by: Actor,
) -> ApiResult<()> {
    blocking(state, move |m| {
        m.revoke_share(id, owner)?;
        m.record(
            EventKind::ShareRevoked,
            &by,
            &format!("link {id}"),
            Outcome::Ok,
            "",
        );
        Ok(())
    })
    .await
}

// ---- the public pages ----

/// `text` safe inside HTML text and attribute values.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one component of a URL query (`/` and `:` of paths and times left as they are).
pub(super) fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:52rem;margin:1.5rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem;overflow-wrap:anywhere}table{width:100%;border-collapse:collapse}\
td,th{padding:.35rem;border-bottom:1px solid #ddd;text-align:left;overflow-wrap:anywhere}\
a.button,button{display:inline-block;padding:.5rem 1rem;background:#2a5d9f;color:#fff;border:0;border-radius:4px;text-decoration:none;cursor:pointer}\
button.danger{background:#a33}a:focus,button:focus,input:focus,select:focus{outline:3px solid #f90;outline-offset:1px}\
input,select{padding:.45rem;font-size:1rem;max-width:100%}.muted{color:#666}form.inline{display:inline}\
nav{margin-bottom:1rem}.drop{border:2px dashed #9ab;border-radius:6px;padding:1rem;margin:1rem 0}.drop.over{background:#eef4fb}\
[role=alert]{color:#a33}[role=status]{color:#265}\
.tag{font-size:.85rem;padding:0 .35rem;border:1px solid #9ab;border-radius:3px;color:#345}\
@media (max-width:40rem){body{margin:.5rem auto}td,th{padding:.3rem .2rem;font-size:.95rem}.hide-narrow{display:none}}";

/// A page with the headers every public page carries.
pub(super) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} - cairn</title><style>{STYLE}</style></head><body><h1>{}</h1>{body}</body></html>",
        esc(title),
        esc(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn gone(why: &str) -> Response {
    page(
        StatusCode::GONE,
        "This link no longer works",
        &format!("<p>{}</p>", esc(why)),
    )
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "No such link",
        "<p>This link does not exist. Check that it was copied whole.</p>",
    )
}

/// A cookie's value from the request.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The link of `token` if it may be used now by this visitor: `Err` is the page to answer.
pub(super) async fn usable(
    state: &Arc<AppState>,
    token: &str,
) -> Result<(ShareRow, Folder), Response> {
    if !share::is_token(token) {
        return Err(not_found());
    }
    let t = token.to_string();
    let found = blocking(state, move |m| {
        let Some(row) = m.share_by_token(&t)? else {
            return Ok(None);
        };
        // The owner must still be able to read what they shared.
        let owner = m.user_by_id(row.owner_id)?.filter(|u| !u.disabled);
        let folder = match owner {
            Some(u) => m.access(&u, &row.folder)?.map(|(f, _)| f),
            None => None,
        };
        Ok(Some((row, folder)))
    })
    .await
    .map_err(IntoResponse::into_response)?;
    let Some((row, folder)) = found else {
        return Err(not_found());
    };
    match share::state_of(&row, now_ns()) {
        "revoked" => return Err(gone("Its owner revoked it.")),
        "expired" => return Err(gone("It has expired.")),
        "exhausted" => return Err(gone("It has been used as many times as it allows.")),
        _ => {}
    }
    let folder = folder.ok_or_else(|| gone("What it shared is no longer available."))?;
    Ok((row, folder))
}

/// Whether the visitor may see a password-protected link: its unlock cookie is valid.
pub(super) fn unlocked(state: &AppState, row: &ShareRow, headers: &HeaderMap) -> bool {
    if row.pw_hash.is_none() {
        return true;
    }
    cookie(headers, "cairn_share")
        .and_then(|v| state.tokens.verify(v))
        .is_some_and(|c| c.device == format!("share:{}", row.token) && c.expires_ns > now_ns())
}

fn password_form(token: &str, csrf: &str, wrong: bool) -> Response {
    let note = if wrong {
        "<p role=\"alert\"><strong>Wrong password.</strong></p>"
    } else {
        ""
    };
    let body = format!(
        "{note}<form method=\"post\" action=\"/s/{token}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label>Password <input type=\"password\" name=\"password\" autofocus required></label> <button type=\"submit\">Open</button></form>"
    );
    let mut resp = page(
        if wrong {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        },
        "This link is protected by a password",
        &body,
    );
    let cookie = format!(
        "cairn_csrf={csrf}; Path=/s/{token}; HttpOnly; Secure; SameSite=Strict; Max-Age=3600"
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// A CSRF token: 128 random bits in hex.
pub(super) fn new_csrf() -> String {
    auth::random_hex(16)
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
    /// A sub-folder of a shared folder, relative to it.
    dir: Option<String>,
    page: Option<usize>,
    /// A file of a shared folder, relative to it (downloads).
    path: Option<String>,
}

/// A path the visitor gave, under the shared path: parsed, so it can never climb above it.
/// `None`: a path that is not allowed.
fn under(row: &ShareRow, rel: Option<&str>) -> Option<RelPath> {
    let base = RelPath::parse(&row.path).ok()?;
    match rel.filter(|r| !r.is_empty()) {
        None => Some(base),
        Some(r) => base.try_join_path(&RelPath::parse(r).ok()?).ok(),
    }
}

fn bad_path() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Bad path",
        "<p>That path is not allowed.</p>",
    )
}

pub(super) async fn open(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let (row, folder) = match usable(&state, &token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if !unlocked(&state, &row, &headers) {
        return password_form(&token, &new_csrf(), false);
    }
    if row.kind == "drop" {
        return drop::drop_page(&token, &row.path);
    }
    if row.kind == "file" {
        let name = row.path.rsplit('/').next().unwrap_or(&row.path).to_string();
        let folder2 = folder.clone();
        let path = RelPath::parse(&row.path).unwrap_or_else(|_| RelPath::root());
        let size = blocking(&state, move |m| m.version(&folder2, &path, None))
            .await
            .ok()
            .flatten()
            .filter(|v| !v.info.is_deleted())
            .map(|v| v.info.entry.size);
        let Some(size) = size else {
            return gone("The shared file was deleted.");
        };
        let body = format!(
            "<p>{} <span class=\"muted\">({size} bytes)</span></p><p><a class=\"button\" href=\"/s/{token}/download\">Download</a></p>",
            esc(&name)
        );
        return page(StatusCode::OK, "A file was shared with you", &body);
    }
    let Some(dir) = under(&row, q.dir.as_deref()) else {
        return bad_path();
    };
    folder_page(&state, &row, folder, dir, q.page.unwrap_or(0)).await
}

/// The entries directly in `dir` (a folder at or below the shared one), a page at a time.
async fn folder_page(
    state: &Arc<AppState>,
    row: &ShareRow,
    folder: Folder,
    dir: RelPath,
    page_no: usize,
) -> Response {
    let d = dir.clone();
    let listed = blocking(state, move |m| {
        super::web::children_in(m, &folder, &d, None, false)
    })
    .await;
    let Ok(children) = listed else {
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "<p>The folder could not be read.</p>",
        );
    };
    let base = RelPath::parse(&row.path).unwrap_or_else(|_| RelPath::root());
    let rel_of = |p: &RelPath| -> String {
        let full = p.as_str();
        let b = base.as_str();
        if b.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(b)
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(full)
                .to_string()
        }
    };
    let token = &row.token;
    let mut rows = String::new();
    for v in children.iter().skip(page_no * PAGE).take(PAGE) {
        let rel = rel_of(&v.path);
        let name = v.path.as_str().rsplit('/').next().unwrap_or("");
        let link = match v.entry.kind {
            EntryKind::Dir => format!("/s/{token}?dir={}", query_escape(&rel)),
            _ => format!("/s/{token}/download?path={}", query_escape(&rel)),
        };
        let size = if v.entry.kind == EntryKind::Dir {
            "folder".to_string()
        } else {
            format!("{} bytes", v.entry.size)
        };
        rows.push_str(&format!(
            "<tr><td><a href=\"{}\">{}</a></td><td class=\"muted\">{size}</td></tr>",
            esc(&link),
            esc(name)
        ));
    }
    let mut nav = String::new();
    let here = rel_of(&dir);
    if page_no > 0 {
        nav.push_str(&format!(
            "<a href=\"/s/{token}?dir={}&amp;page={}\">Previous</a> ",
            query_escape(&here),
            page_no - 1
        ));
    }
    if children.len() > (page_no + 1) * PAGE {
        nav.push_str(&format!(
            "<a href=\"/s/{token}?dir={}&amp;page={}\">Next</a>",
            query_escape(&here),
            page_no + 1
        ));
    }
    let title = if here.is_empty() {
        "A folder was shared with you".to_string()
    } else {
        format!("Shared folder: {here}")
    };
    page(
        StatusCode::OK,
        &title,
        &format!("<table>{rows}</table><p>{nav}</p>"),
    )
}

#[derive(Deserialize)]
pub(super) struct Unlock {
    password: String,
    csrf: String,
}

pub(super) async fn unlock(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Unlock>,
) -> Response {
    let (row, _) = match usable(&state, &token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let Some(hash) = row.pw_hash.clone() else {
        return see_other(&format!("/s/{token}"));
    };
    let csrf_ok = cookie(&headers, "cairn_csrf").is_some_and(|c| c == form.csrf && c.len() == 32);
    if !csrf_ok {
        return page(
            StatusCode::FORBIDDEN,
            "Please try again",
            &format!(
                "<p>The form had expired. <a href=\"/s/{token}\">Open the link again</a>.</p>"
            ),
        );
    }
    let gate_name = format!("share:{}", row.id);
    let ticket = match state.login.admit(&gate_name, peer.ip()).await {
        Ok(t) => t,
        Err(refusal) => {
            let link = format!("link {}", row.id);
            state
                .note_throttled(EventKind::ShareThrottled, link, peer, "link password")
                .await;
            let mut resp = page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                &format!("<p>{}</p>", esc(refusal.message())),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, refusal.retry_after_secs().into());
            return resp;
        }
    };
    let password = form.password;
    let ok = tokio::task::spawn_blocking(move || ticket.verify(&password, Some(&hash)))
        .await
        .unwrap_or(false);
    let (outcome, detail) = if ok {
        (Outcome::Ok, "password accepted")
    } else {
        (Outcome::Failed, "wrong password")
    };
    let (id, by) = (row.id, Actor::visitor(peer.ip()));
    let _ = blocking(&state, move |m| {
        m.record(
            EventKind::ShareAccessed,
            &by,
            &format!("link {id}"),
            outcome,
            detail,
        );
        Ok(())
    })
    .await;
    if !ok {
        state.login.failed(&gate_name, peer.ip());
        return password_form(&token, &new_csrf(), true);
    }
    state.login.succeeded(&gate_name, peer.ip());
    let value = state.tokens.issue(&auth::Claims {
        user_id: 0,
        token_gen: row.id,
        expires_ns: now_ns().saturating_add(UNLOCK_NS),
        device: format!("share:{token}"),
    });
    let mut resp = see_other(&format!("/s/{token}"));
    let cookie = format!(
        "cairn_share={value}; Path=/s/{token}; HttpOnly; Secure; SameSite=Strict; Max-Age=3600"
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub(super) fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `attachment` with the file's name, safe whatever the name holds.
pub(super) fn disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

pub(super) async fn download(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    Path(token): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let (row, folder) = match usable(&state, &token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if !unlocked(&state, &row, &headers) {
        return see_other(&format!("/s/{token}"));
    }
    if row.kind == "drop" {
        return not_found();
    }
    let path = if row.kind == "file" {
        if q.path.as_deref().is_some_and(|p| !p.is_empty()) {
            return not_found();
        }
        RelPath::parse(&row.path).ok()
    } else {
        under(&row, q.path.as_deref())
    };
    let Some(path) = path else {
        return bad_path();
    };
    let (id, p) = (row.id, path.clone());
    let found = blocking(&state, move |m| {
        let v = m.version(&folder, &p, None)?;
        let v = v.filter(|v| !v.info.is_deleted() && v.info.entry.kind == EntryKind::File);
        // Counted only when there is something to deliver.
        let counted = v.is_some() && m.take_share_access(id, now_ns())?;
        if counted {
            let by = Actor::visitor(peer.ip());
            let detail = format!("download {p}");
            m.record(
                EventKind::ShareAccessed,
                &by,
                &format!("link {id}"),
                Outcome::Ok,
                &detail,
            );
        }
        Ok((v, counted))
    })
    .await;
    let (v, counted) = match found {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let Some(v) = v else {
        return page(
            StatusCode::NOT_FOUND,
            "No such file",
            "<p>That file is not in the shared folder.</p>",
        );
    };
    if !counted {
        return gone("It has been used as many times as it allows, or has just expired.");
    }
    let name = path
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or("download")
        .to_string();
    match stream_file(&state, &v, path.as_str(), &headers).await {
        Ok(mut resp) => {
            let h = resp.headers_mut();
            h.insert(header::CONTENT_DISPOSITION, disposition(&name));
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_names_are_escaped() {
        assert_eq!(esc("<script>\"'&"), "&lt;script&gt;&quot;&#39;&amp;");
        let d = disposition("evil\"\r\nSet-Cookie: x.txt");
        let text = d.to_str().expect("ascii");
        assert!(!text.contains('\r') && !text.contains('\n'), "{text}");
        assert!(text.starts_with("attachment; filename=\"evil_"), "{text}");
        assert!(disposition("résumé.pdf")
            .to_str()
            .expect("ascii")
            .contains("r%C3%A9sum%C3%A9.pdf"));
    }
}
