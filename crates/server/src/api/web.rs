//! The web UI, served by `cairn server run` on the API's port: log in, see your folders
//! (read-only ones marked), browse them as they are or as they were at a time (deleted files
//! shown on request), download files and any of their versions.
//!
//! Server-rendered pages without script (see `shares::page` for the headers every page
//! carries). A session is a token like the API's in a cookie (HttpOnly, Secure,
//! SameSite=Strict); every form that changes state carries a double-submit CSRF token, so
//! another site can neither read nor forge one. The login form goes through the login gate
//! like the API's login.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use cairn_model::{EntryKind, RelPath, Seq};
use cairn_protocol::Access;
use serde::Deserialize;

use super::authn::Denied;
use super::shares::{cookie, esc, new_csrf, page, query_escape, see_other};
use super::{
    blocking, caller_of, now_ns, stream_file, ApiError, ApiResult, AppState, Caller, ClientAddr,
};
use crate::auth;
use crate::meta::{Actor, EventKind, Outcome};

pub(super) mod edit;
pub(super) mod links;
pub(super) mod manage;
pub(super) mod restore;
mod status;
pub(super) mod upload;
pub(super) mod zip;

/// The server cloud tasks on `folder` the caller may see (their own; every one for an
/// administrator) with their status words; none when they cannot be read, as the page is
/// still worth showing.
async fn folder_tasks(
    state: &Arc<AppState>,
    caller: &Caller,
    folder: &str,
    folder_id: i64,
) -> Vec<status::TaskView> {
    let owner = (!caller.user.admin).then_some(caller.user.id);
    let name = folder.to_string();
    blocking(state, move |m| {
        let tasks: Vec<_> = m.cloud_tasks(owner)?;
        if !tasks.iter().any(|t| t.folder == name) {
            return Ok(Vec::new());
        }
        let last = m.recent_changes(folder_id, &RelPath::root(), 1)?;
        Ok(status::task_views(
            tasks,
            &name,
            last.first().map(|v| v.committed_ns),
        ))
    })
    .await
    .unwrap_or_default()
}

/// Entries per page of a folder view.
const PAGE: usize = 200;
const SESSION: &str = "cairn_session";
const CSRF: &str = "cairn_csrf_ui";

fn set_cookie(resp: &mut Response, name: &str, value: &str, max_age: i64) {
    let c = format!("{name}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The session's user, or the login page to answer instead.
pub(super) async fn session(
    state: &Arc<AppState>,
    headers: &HeaderMap,
) -> Result<Caller, Response> {
    match cookie(headers, SESSION) {
        Some(token) => caller_of(state, token)
            .await
            .map_err(|_| see_other("/login")),
        None => Err(see_other("/login")),
    }
}

/// The session's user of a form that changes state, with its CSRF token checked; or the page
/// to answer instead.
pub(super) async fn form_session(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Caller, Response> {
    let caller = session(state, headers).await?;
    if !csrf_ok(headers, csrf) {
        return Err(page(
            StatusCode::FORBIDDEN,
            "Please try again",
            "<p role=\"alert\">The form had expired; go back, reload the page and try again.</p>",
        ));
    }
    Ok(caller)
}

/// The CSRF token of this browser: the cookie's, or a new one (set on the answer).
pub(super) fn csrf_of(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF).filter(|c| c.len() == 32) {
        Some(c) => (c.to_string(), false),
        None => (new_csrf(), true),
    }
}

pub(super) fn csrf_ok(headers: &HeaderMap, given: &str) -> bool {
    cookie(headers, CSRF).is_some_and(|c| c.len() == 32 && c == given)
}

/// The caller of a request the page's script makes: the session cookie, and the CSRF token
/// in a header (which another site can neither read nor set).
pub(super) async fn json_caller(state: &Arc<AppState>, headers: &HeaderMap) -> ApiResult<Caller> {
    let token = cookie(headers, SESSION)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "log in first"))?;
    let given = headers
        .get("x-cairn-csrf")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !csrf_ok(headers, given) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the page had expired; reload it",
        ));
    }
    caller_of(state, token).await
}

/// The page's script (uploads), from the binary: nothing is fetched from elsewhere.
pub(super) async fn script() -> Response {
    let mut resp = include_str!("web/app.js").into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// A page of a logged-in user: their name and a log-out button on top. It may run the
/// server's own script and talk to the server, nothing else.
fn app_page(user: &str, admin: bool, csrf: &str, title: &str, body: &str) -> Response {
    let bar = format!(
        "<nav><a href=\"/ui\">Folders</a> · <a href=\"/ui/shares\">Links</a>{admin} · {} <form method=\"post\" action=\"/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Log out</button></form></nav>",
        esc(user),
        admin = if admin {
            " · <a href=\"/ui/admin\">Administration</a>"
        } else {
            ""
        }
    );
    let mut resp = page(
        StatusCode::OK,
        title,
        &format!("{bar}{body}<script src=\"/ui/app.js\"></script>"),
    );
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    resp
}

pub(super) async fn root(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match session(&state, &headers).await {
        Ok(_) => see_other("/ui"),
        Err(r) => r,
    }
}

fn login_form(csrf: &str, set: bool, note: &str, status: StatusCode) -> Response {
    let body = format!(
        "{note}<form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><p><label>User <input name=\"user\" autocomplete=\"username\" required autofocus></label></p><p><label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label></p><p><button type=\"submit\">Log in</button></p></form>"
    );
    let mut resp = page(status, "Log in to cairn", &body);
    if set {
        set_cookie(&mut resp, CSRF, csrf, 86_400);
    }
    resp
}

pub(super) async fn login_page(headers: HeaderMap) -> Response {
    let (csrf, set) = csrf_of(&headers);
    login_form(&csrf, set, "", StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    user: String,
    password: String,
    csrf: String,
}

pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !csrf_ok(&headers, &form.csrf) {
        let (csrf, set) = csrf_of(&headers);
        let note = "<p role=\"alert\">The form had expired; please log in again.</p>";
        return login_form(&csrf, set, note, StatusCode::FORBIDDEN);
    }
    let user = match state
        .authenticate(&form.user, form.password, peer, "web")
        .await
    {
        Ok(user) => user,
        Err(Denied::Throttled(refusal)) => {
            let note = format!("<p role=\"alert\">{}</p>", esc(refusal.message()));
            let mut resp = login_form(&form.csrf, false, &note, StatusCode::TOO_MANY_REQUESTS);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, refusal.retry_after_secs().into());
            return resp;
        }
        Err(Denied::Wrong | Denied::Disabled(_)) => {
            let note = "<p role=\"alert\">Wrong user name or password.</p>";
            return login_form(&form.csrf, false, note, StatusCode::UNAUTHORIZED);
        }
        Err(Denied::Unavailable) => {
            let note = format!(
                "<p role=\"alert\">{}.</p>",
                esc(super::DIRECTORY_UNAVAILABLE)
            );
            return login_form(&form.csrf, false, &note, StatusCode::SERVICE_UNAVAILABLE);
        }
        Err(Denied::Failed(e)) => return e.into_response(),
    };
    let ttl = state.token_ttl.as_nanos().min(i64::MAX as u128) as i64;
    let token = state.tokens.issue(&auth::Claims {
        user_id: user.id,
        token_gen: user.token_gen,
        expires_ns: now_ns().saturating_add(ttl),
        device: "web".into(),
    });
    let mut resp = see_other("/ui");
    set_cookie(&mut resp, SESSION, &token, (ttl / 1_000_000_000).max(1));
    resp
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn logout(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&headers, &form.csrf) {
        return page(
            StatusCode::FORBIDDEN,
            "Please try again",
            "<p>The form had expired.</p>",
        );
    }
    // Only a live session's end is worth a line: a stale cookie's holder was out already.
    if let Ok(caller) = session(&state, &headers).await {
        let (name, by) = (
            caller.user.name.clone(),
            Actor::user(&caller.user.name, peer.ip()),
        );
        let _ = blocking(&state, move |m| {
            m.record(EventKind::Logout, &by, &name, Outcome::Ok, "web");
            Ok(())
        })
        .await;
    }
    let mut resp = see_other("/login");
    set_cookie(&mut resp, SESSION, "", 0);
    resp
}

pub(super) async fn folders(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let caller = match session(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (csrf, set) = csrf_of(&headers);
    let user = caller.user.clone();
    let list = match blocking(&state, move |m| m.folders_of(&user)).await {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let mut rows = String::new();
    for f in &list {
        let mark = if f.access == Access::Ro {
            " <span class=\"muted\">(read-only)</span>"
        } else {
            ""
        };
        rows.push_str(&format!(
            "<tr><td><a href=\"/ui/f/{}\">{}</a>{mark}</td></tr>",
            esc(&f.name),
            esc(&f.name)
        ));
    }
    if list.is_empty() {
        rows.push_str(
            "<tr><td class=\"muted\">No folders yet: an administrator grants them.</td></tr>",
        );
    }
    let mut resp = app_page(
        &caller.user.name,
        caller.user.admin,
        &csrf,
        "Your folders",
        &format!("<table>{rows}</table>"),
    );
    if set {
        set_cookie(&mut resp, CSRF, &csrf, 86_400);
    }
    resp
}

#[derive(Deserialize)]
pub(super) struct Browse {
    pub(super) dir: Option<String>,
    page: Option<usize>,
    /// A time to see the folder as it was (see `cairn_model::timespec`).
    pub(super) at: Option<String>,
    /// Show deleted files too.
    #[serde(default)]
    deleted: bool,
    path: Option<String>,
    seq: Option<i64>,
    /// The version a restore just made current again, to say so.
    restored: Option<i64>,
}

/// The entries directly in `dir`, in path order, from every entry under it: a folder that
/// has no entry of its own (a backup stores `COMPUTER/FOLDER/...` without entries for the
/// folders above its root) is shown as a folder, changed when the latest change under it was.
#[cfg(test)]
pub(super) fn children_of(
    entries: &[cairn_protocol::VersionInfo],
    dir: &RelPath,
) -> Vec<cairn_protocol::VersionInfo> {
    let mut children = Children::new(dir);
    for v in entries {
        children.take(v.clone());
    }
    children.into_vec()
}

/// [`children_of`] as the subtree's listing streams past: holds the children only, not the
/// subtree (the root of a folder of a million files lists a handful of names).
pub(super) struct Children {
    dir: RelPath,
    skip: usize,
    /// By name: the entry, and whether only deeper paths imply it.
    out: std::collections::BTreeMap<String, (cairn_protocol::VersionInfo, bool)>,
}

impl Children {
    pub(super) fn new(dir: &RelPath) -> Children {
        let skip = if dir.is_root() {
            0
        } else {
            dir.as_str().len() + 1
        };
        Children {
            dir: dir.clone(),
            skip,
            out: std::collections::BTreeMap::new(),
        }
    }

    pub(super) fn take(&mut self, v: cairn_protocol::VersionInfo) {
        let Some(rest) = v.path.as_str().get(self.skip..).filter(|r| !r.is_empty()) else {
            return;
        };
        match rest.split_once('/') {
            None => {
                let name = rest.to_string();
                self.out.insert(name, (v, false));
            }
            Some((first, _)) => match self.out.get_mut(first) {
                Some((d, true)) => d.committed_ns = d.committed_ns.max(v.committed_ns),
                Some(_) => {}
                None => {
                    let name = first.to_string();
                    let mut d = v.clone();
                    d.path = self.dir.join(first).unwrap_or_else(|_| v.path.clone());
                    d.entry = cairn_model::Entry::dir(v.entry.mtime_ns, 0o755);
                    d.inline = None;
                    self.out.insert(name, (d, true));
                }
            },
        }
    }

    pub(super) fn into_vec(self) -> Vec<cairn_protocol::VersionInfo> {
        self.out.into_values().map(|(v, _)| v).collect()
    }
}

/// The children of `dir` in `folder` at `at_ns` (deletion markers when `deleted`), read as the
/// subtree's listing streams past.
pub(super) fn children_in(
    m: &crate::meta::Meta,
    folder: &crate::meta::Folder,
    dir: &RelPath,
    at_ns: Option<i64>,
    deleted: bool,
) -> crate::Result<Vec<cairn_protocol::VersionInfo>> {
    let mut children = Children::new(dir);
    m.tree_each(folder, dir, at_ns, deleted, &mut |v| {
        children.take(v);
        Ok(())
    })?;
    Ok(children.into_vec())
}

pub(super) fn parse_rel(text: Option<&str>) -> Option<RelPath> {
    match text.filter(|t| !t.is_empty()) {
        None => Some(RelPath::root()),
        Some(t) => RelPath::parse(t).ok(),
    }
}

pub(super) fn bad(what: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Bad request",
        &format!("<p>{}</p>", esc(what)),
    )
}

/// What a view of a folder needs: the session's user, the folder they may read (and how),
/// the folder below it asked for, and the time to see it at.
pub(super) struct View {
    pub caller: Caller,
    pub folder: crate::meta::Folder,
    pub access: Access,
    pub dir: RelPath,
    pub at_ns: Option<i64>,
}

/// The [`View`] a request asks for, or the page to answer instead.
pub(super) async fn view_of(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    folder: &str,
    b: &Browse,
) -> Result<View, Response> {
    let caller = session(state, headers).await?;
    let (f, access) = super::folder_access_as(state, &caller, folder, Access::Ro)
        .await
        .map_err(|e| {
            page(
                e.status,
                "Not available",
                &format!("<p>{}</p>", esc(&e.message)),
            )
        })?;
    let dir = parse_rel(b.dir.as_deref()).ok_or_else(|| bad("That path is not allowed."))?;
    let at_ns = match b.at.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(
            cairn_model::timespec::parse_instant(t, now_ns()).map_err(|e| bad(&e.to_string()))?,
        ),
        None => None,
    };
    Ok(View {
        caller,
        folder: f,
        access,
        dir,
        at_ns,
    })
}

pub(super) async fn browse(
    State(state): State<Arc<AppState>>,
    Path(folder): Path<String>,
    Query(b): Query<Browse>,
    headers: HeaderMap,
) -> Response {
    let View {
        caller,
        folder: f,
        access,
        dir,
        at_ns,
    } = match view_of(&state, &headers, &folder, &b).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (csrf, _) = csrf_of(&headers);
    let f_id = f.id;
    let (d, deleted) = (dir.clone(), b.deleted);
    let children = match blocking(&state, move |m| children_in(m, &f, &d, at_ns, deleted)).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let tasks = folder_tasks(&state, &caller, &folder, f_id).await;
    let page_no = b.page.unwrap_or(0);
    let keep = format!(
        "{}{}",
        b.at.as_deref()
            .map(|a| format!("&at={}", query_escape(a)))
            .unwrap_or_default(),
        if deleted { "&deleted=true" } else { "" }
    );
    let mut rows = String::new();
    for v in children.iter().skip(page_no * PAGE).take(PAGE) {
        let name = v.path.name();
        let p = query_escape(v.path.as_str());
        let (link, what) = match v.entry.kind {
            EntryKind::Dir => (
                format!("/ui/f/{folder}?dir={p}{keep}"),
                "folder".to_string(),
            ),
            EntryKind::Deleted => (
                format!("/ui/f/{folder}/versions?path={p}"),
                "deleted".to_string(),
            ),
            _ => (
                format!("/ui/f/{folder}/versions?path={p}"),
                format!("{} bytes", v.entry.size),
            ),
        };
        let mark = status::filtered_mark(&tasks, &v.path, v.entry.kind, v.entry.size);
        rows.push_str(&format!(
            "<tr><td><a href=\"{}\">{}</a>{mark}</td><td class=\"muted\">{what}</td><td class=\"muted\">{}</td></tr>",
            esc(&link),
            esc(name),
            cairn_model::timespec::format_instant(v.committed_ns)
        ));
    }
    let mut nav = String::new();
    if page_no > 0 {
        nav.push_str(&format!(
            "<a href=\"/ui/f/{folder}?dir={}{}&amp;page={}\">Previous</a> ",
            query_escape(dir.as_str()),
            esc(&keep),
            page_no - 1
        ));
    }
    if children.len() > (page_no + 1) * PAGE {
        nav.push_str(&format!(
            "<a href=\"/ui/f/{folder}?dir={}{}&amp;page={}\">Next</a>",
            query_escape(dir.as_str()),
            esc(&keep),
            page_no + 1
        ));
    }
    let travel = format!(
        "<form method=\"get\" action=\"/ui/f/{f}\"><input type=\"hidden\" name=\"dir\" value=\"{d}\"><label>As it was at <input type=\"datetime-local\" name=\"at\" step=\"1\" value=\"{at}\"></label> <label><input type=\"checkbox\" name=\"deleted\" value=\"true\"{chk}> deleted files</label> <button type=\"submit\">Show</button></form>",
        f = esc(&folder),
        d = esc(dir.as_str()),
        at = esc(b.at.as_deref().unwrap_or("")),
        chk = if deleted { " checked" } else { "" }
    );
    let ro = if access == Access::Ro {
        " (read-only)"
    } else {
        ""
    };
    let title = if dir.is_root() {
        format!("{folder}{ro}")
    } else {
        format!("{folder}/{}{ro}", dir.as_str())
    };
    let tools = folder_tools(&folder, &dir, b.at.as_deref(), access, &csrf);
    let (fid, d) = (f_id, dir.clone());
    let changes = blocking(&state, move |m| m.recent_changes(fid, &d, TIMELINE_CHANGES))
        .await
        .unwrap_or_default();
    let timeline = timeline(&folder, &dir, &changes);
    let words = status::banner(&tasks, caller.user.admin);
    let body = format!("{words}{travel}{timeline}{tools}<table>{rows}</table><p>{nav}</p>");
    app_page(&caller.user.name, caller.user.admin, &csrf, &title, &body)
}

/// Changes read for the timeline, and moments shown.
const TIMELINE_CHANGES: u32 = 500;
const TIMELINE_MOMENTS: usize = 12;

/// The latest moments something changed under `dir`, newest first, each a link to the
/// folder as it was just after: where to look when hunting an old state.
fn timeline(folder: &str, dir: &RelPath, changes: &[cairn_protocol::VersionInfo]) -> String {
    let mut moments: Vec<(i64, usize, String)> = Vec::new();
    for v in changes {
        let second = v.committed_ns.div_euclid(1_000_000_000);
        if let Some((_, n, _)) = moments.last_mut().filter(|(s, _, _)| *s == second) {
            *n += 1;
        } else if moments.len() >= TIMELINE_MOMENTS {
            break;
        } else {
            moments.push((second, 1, format!("{} on {}", v.user, v.computer)));
        }
    }
    if moments.is_empty() {
        return String::new();
    }
    let items: String = moments
        .iter()
        .map(|(second, n, who)| {
            // Times travel in whole seconds: the next second's start takes in all of this one.
            let at = cairn_model::timespec::format_instant((second + 1) * 1_000_000_000);
            let href = format!(
                "/ui/f/{}?dir={}&at={}",
                query_escape(folder),
                query_escape(dir.as_str()),
                query_escape(&at)
            );
            let label = cairn_model::timespec::format_instant(second * 1_000_000_000);
            let changes = if *n == 1 {
                "1 change".to_string()
            } else {
                format!("{n} changes")
            };
            format!(
                "<li><a href=\"{}\">{}</a> <span class=\"muted\">{changes}, {}</span></li>",
                esc(&href),
                esc(&label),
                esc(who)
            )
        })
        .collect();
    format!(
        "<details><summary>Timeline: the latest changes here</summary><ul>{items}</ul></details>"
    )
}

/// What a folder view offers besides the list: a zip of it, and where the user may write,
/// uploads and a new folder (as it is now) or a restore (as it was at a time).
fn folder_tools(
    folder: &str,
    dir: &RelPath,
    at: Option<&str>,
    access: Access,
    csrf: &str,
) -> String {
    let (f, d) = (esc(folder), esc(dir.as_str()));
    let at = at.filter(|a| !a.is_empty());
    let zip = format!(
        "/ui/f/{}/zip?dir={}{}",
        query_escape(folder),
        query_escape(dir.as_str()),
        at.map(|a| format!("&at={}", query_escape(a)))
            .unwrap_or_default()
    );
    let share = format!(
        "/ui/shares/new?folder={}&path={}",
        query_escape(folder),
        query_escape(dir.as_str())
    );
    let mut out = format!(
        "<p><a href=\"{}\">Download as zip</a> · <a href=\"{}\">Share this folder</a></p>",
        esc(&zip),
        esc(&share)
    );
    if access != Access::Rw {
        return out;
    }
    let hidden = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"dir\" value=\"{d}\">"
    );
    match at {
        Some(a) => out.push_str(&format!(
            "<form method=\"post\" action=\"/ui/f/{f}/restore-tree\">{hidden}<input type=\"hidden\" name=\"at\" value=\"{}\"><button type=\"submit\">Restore this folder as it was then</button> <span class=\"muted\">(files changed or deleted since come back; nothing is deleted)</span></form>",
            esc(a)
        )),
        None => out.push_str(&format!(
            "<div id=\"upload\" class=\"drop\" data-folder=\"{f}\" data-dir=\"{d}\" data-csrf=\"{csrf}\"><label>Upload files <input type=\"file\" id=\"upload-pick\" multiple></label> <span class=\"muted\">or drop files and folders here</span><ul id=\"upload-progress\"></ul></div>\
             <form method=\"post\" action=\"/ui/f/{f}/mkdir\">{hidden}<label>New folder <input name=\"name\" required></label> <button type=\"submit\">Create</button></form>"
        )),
    }
    out
}

pub(super) async fn versions(
    State(state): State<Arc<AppState>>,
    Path(folder): Path<String>,
    Query(b): Query<Browse>,
    headers: HeaderMap,
) -> Response {
    let caller = match session(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (csrf, _) = csrf_of(&headers);
    let (f, access) = match super::folder_access_as(&state, &caller, &folder, Access::Ro).await {
        Ok(found) => found,
        Err(e) => {
            return page(
                e.status,
                "Not available",
                &format!("<p>{}</p>", esc(&e.message)),
            )
        }
    };
    let Some(path) = parse_rel(b.path.as_deref()).filter(|p| !p.is_root()) else {
        return bad("Name a file.");
    };
    let p = path.clone();
    let list = match blocking(&state, move |m| m.versions(&f, &p)).await {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let mut rows = String::new();
    let head = list.first().map(|v| v.seq);
    for v in &list {
        let restore = if access == Access::Rw && !v.is_deleted() && Some(v.seq) != head {
            format!(
                "<form method=\"post\" action=\"/ui/f/{}/restore\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"path\" value=\"{}\"><input type=\"hidden\" name=\"seq\" value=\"{}\"><button type=\"submit\">Restore</button></form>",
                esc(&folder),
                esc(path.as_str()),
                v.seq.0
            )
        } else {
            String::new()
        };
        let what = if v.is_deleted() {
            "deleted".to_string()
        } else {
            format!(
                "<a href=\"/ui/f/{}/download?path={}&amp;seq={}\">{} bytes</a>",
                esc(&folder),
                esc(&query_escape(path.as_str())),
                v.seq.0,
                v.entry.size
            )
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{what}</td><td class=\"muted\">{}</td><td class=\"muted\">{}</td><td>{restore}</td></tr>",
            cairn_model::timespec::format_instant(v.committed_ns),
            esc(&v.computer),
            esc(&v.user)
        ));
    }
    let note = match b.restored {
        Some(seq) => format!("<p role=\"status\">Version {seq} is the current version again.</p>"),
        None => String::new(),
    };
    let share = format!(
        "/ui/shares/new?folder={}&path={}",
        query_escape(&folder),
        query_escape(path.as_str())
    );
    let body = format!(
        "{note}<p><a href=\"{}\">Share this file</a></p><p><a href=\"/ui/f/{}?dir={}\">Back to the folder</a></p><table><tr><th>Saved</th><th>Version</th><th>Computer</th><th>User</th><th></th></tr>{rows}</table>",
        esc(&share),
        esc(&folder),
        esc(&query_escape(path.parent().map(|p| p.as_str().to_string()).unwrap_or_default().as_str()))
    );
    app_page(
        &caller.user.name,
        caller.user.admin,
        &csrf,
        &format!("Versions of {}", path.as_str()),
        &body,
    )
}

pub(super) async fn download(
    State(state): State<Arc<AppState>>,
    Path(folder): Path<String>,
    Query(b): Query<Browse>,
    headers: HeaderMap,
) -> Response {
    let caller = match session(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let f = match super::folder_access(&state, &caller, &folder, Access::Ro).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let Some(path) = parse_rel(b.path.as_deref()).filter(|p| !p.is_root()) else {
        return bad("Name a file.");
    };
    let (p, seq) = (path.clone(), b.seq.map(Seq));
    let found = match blocking(&state, move |m| m.version(&f, &p, seq)).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let Some(v) = found.filter(|v| v.info.entry.kind == EntryKind::File) else {
        return page(
            StatusCode::NOT_FOUND,
            "No such file",
            "<p>That version is not a file.</p>",
        );
    };
    match stream_file(&state, &v, path.as_str(), &headers).await {
        Ok(mut resp) => {
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_DISPOSITION,
                super::shares::disposition(path.name()),
            );
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
    use cairn_model::{DeviceId, Entry, EntryKind, RelPath, Seq};
    use cairn_protocol::VersionInfo;

    use super::children_of;

    fn v(path: &str, kind: EntryKind, at: i64) -> VersionInfo {
        VersionInfo {
            path: RelPath::parse(path).expect("path"),
            seq: Seq(at),
            entry: Entry {
                kind,
                size: 1,
                mtime_ns: 0,
                mode: 0o644,
                hash: None,
                target: None,
            },
            device: DeviceId("d".into()),
            user: "u".into(),
            computer: "c".into(),
            committed_ns: at,
            inline: None,
        }
    }

    #[test]
    fn folders_without_an_entry_of_their_own_are_listed() {
        // A backup's paths: pc/Documents/... with no entries for pc or pc/Documents.
        let all = [
            v("pc/Documents/a.txt", EntryKind::File, 5),
            v("pc/Documents/sub/b.txt", EntryKind::File, 9),
            v("top.txt", EntryKind::File, 1),
            v("z", EntryKind::Dir, 2),
            v("z/c.txt", EntryKind::File, 3),
        ];
        let names = |dir: &str| -> Vec<(String, EntryKind, i64)> {
            let d = if dir.is_empty() {
                RelPath::root()
            } else {
                RelPath::parse(dir).expect("dir")
            };
            children_of(&all, &d)
                .iter()
                .map(|c| (c.path.as_str().to_string(), c.entry.kind, c.committed_ns))
                .collect()
        };
        assert_eq!(
            names(""),
            vec![
                ("pc".to_string(), EntryKind::Dir, 9),
                ("top.txt".to_string(), EntryKind::File, 1),
                // Its own entry, not one made up from z/c.txt.
                ("z".to_string(), EntryKind::Dir, 2),
            ]
        );
        assert_eq!(
            names("pc/Documents"),
            vec![
                ("pc/Documents/a.txt".to_string(), EntryKind::File, 5),
                ("pc/Documents/sub".to_string(), EntryKind::Dir, 9),
            ]
        );
    }
}
