//! Sharing links from the web UI: a user lists their links (with how often each was used
//! and whether it still works), makes one for a file or folder they may read, with an
//! optional password, expiry and number of accesses, and revokes one. The rules are the
//! API's (`shares::create_share`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::super::shares::{create_share, esc, page, revoke_share, see_other};
use super::super::{blocking, now_ns, AppState, ClientAddr};
use super::{app_page, csrf_of, form_session, session};
use crate::share::{ShareInfo, ShareRequest};

/// The spans a new link may be valid for, as the form offers them.
const SPANS: [(&str, &str, i64); 5] = [
    ("", "never", 0),
    ("1h", "1 hour", 3600),
    ("1d", "1 day", 86_400),
    ("7d", "7 days", 7 * 86_400),
    ("30d", "30 days", 30 * 86_400),
];

#[derive(Deserialize)]
pub(in crate::api) struct Made {
    made: Option<i64>,
}

/// The server's address as the browser reached it (HTTP/2 names it in the URI, HTTP/1.1
/// in the Host header), for links to copy.
fn origin(uri: &Uri, headers: &HeaderMap) -> String {
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("");
    format!("https://{host}")
}

fn describe(s: &ShareInfo) -> String {
    let mut limits = Vec::new();
    if s.password {
        limits.push("password".to_string());
    }
    if let Some(e) = s.expires_ns {
        limits.push(format!(
            "until {}",
            cairn_model::timespec::format_instant(e)
        ));
    }
    match s.max_access {
        Some(m) => limits.push(format!("{} of {m} accesses used", s.accesses)),
        None => limits.push(format!("{} accesses", s.accesses)),
    }
    limits.join(", ")
}

pub(in crate::api) async fn list(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Made>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let caller = match session(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (csrf, _) = csrf_of(&headers);
    let owner = caller.user.id;
    let rows = match blocking(&state, move |m| m.shares(Some(owner))).await {
        Ok(r) => r,
        Err(e) => {
            return page(
                e.status,
                "Not available",
                &format!("<p>{}</p>", esc(&e.message)),
            )
        }
    };
    let now = now_ns();
    let origin = origin(&uri, &headers);
    let mut body = String::new();
    let mut table = String::new();
    for row in rows.iter().rev() {
        let s = ShareInfo::of(row, now);
        let url = format!("{origin}{}", s.url_path);
        if q.made == Some(s.id) {
            body.push_str(&format!(
                "<p role=\"status\">New link for {}: <input readonly size=\"60\" value=\"{}\" aria-label=\"The new link\" id=\"new-link\"></p>",
                esc(&format!("{}/{}", s.folder, s.path)),
                esc(&url)
            ));
        }
        let revoke = if s.state == "active" {
            format!(
                "<form method=\"post\" action=\"/ui/shares/{}/revoke\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"danger\">Revoke</button></form>",
                s.id
            )
        } else {
            String::new()
        };
        table.push_str(&format!(
            "<tr><td><a href=\"{}\">{}</a><br><span class=\"muted\">{} · {}</span></td><td>{}</td><td>{revoke}</td></tr>",
            esc(&s.url_path),
            esc(format!("{}/{}", s.folder, s.path).trim_end_matches('/')),
            esc(&s.kind),
            esc(&describe(&s)),
            esc(&s.state)
        ));
    }
    if rows.is_empty() {
        table.push_str("<tr><td class=\"muted\">No links yet: open a file's versions or a folder and choose Share.</td></tr>");
    }
    body.push_str(&format!("<table>{table}</table>"));
    app_page(
        &caller.user.name,
        caller.user.admin,
        &csrf,
        "Your sharing links",
        &body,
    )
}

#[derive(Deserialize)]
pub(in crate::api) struct NewQuery {
    folder: String,
    #[serde(default)]
    path: String,
}

pub(in crate::api) async fn new_form(
    State(state): State<Arc<AppState>>,
    Query(q): Query<NewQuery>,
    headers: HeaderMap,
) -> Response {
    let caller = match session(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (csrf, _) = csrf_of(&headers);
    let spans: String = SPANS
        .iter()
        .map(|(v, label, _)| format!("<option value=\"{v}\">{label}</option>"))
        .collect();
    let what = format!("{}/{}", q.folder, q.path);
    let body = format!(
        "<form method=\"post\" action=\"/ui/shares\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"folder\" value=\"{}\"><input type=\"hidden\" name=\"path\" value=\"{}\">\
         <p><label>Password (optional) <input type=\"password\" name=\"password\" autocomplete=\"new-password\"></label></p>\
         <p><label>Valid for <select name=\"expires\">{spans}</select></label></p>\
         <p><label>Most accesses (optional) <input type=\"number\" name=\"max_access\" min=\"1\" max=\"1000000\"></label></p>\
         <p><label><input type=\"checkbox\" name=\"upload_only\" value=\"true\"> Upload only: visitors send files into this folder and see nothing of it</label></p>\
         <p><button type=\"submit\">Create link</button></p></form>",
        esc(&q.folder),
        esc(&q.path)
    );
    app_page(
        &caller.user.name,
        caller.user.admin,
        &csrf,
        &format!("Share {}", what.trim_end_matches('/')),
        &body,
    )
}

#[derive(Deserialize)]
pub(in crate::api) struct NewForm {
    csrf: String,
    folder: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    max_access: String,
    #[serde(default)]
    upload_only: bool,
}

fn refused(status: StatusCode, why: &str) -> Response {
    page(
        status,
        "No link made",
        &format!("<p role=\"alert\">{}</p>", esc(why)),
    )
}

pub(in crate::api) async fn create(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<NewForm>,
) -> Response {
    let mut caller = match form_session(&state, &headers, &form.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(span) = SPANS
        .iter()
        .find(|(v, _, _)| *v == form.expires)
        .map(|s| s.2)
    else {
        return refused(StatusCode::BAD_REQUEST, "Choose a validity from the list.");
    };
    let max_access = match form.max_access.trim() {
        "" => None,
        n => match n.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return refused(
                    StatusCode::BAD_REQUEST,
                    "The most accesses is a whole number.",
                )
            }
        },
    };
    let req = ShareRequest {
        folder: form.folder,
        path: form.path,
        password: Some(form.password).filter(|p| !p.is_empty()),
        expires_ns: (span > 0).then(|| now_ns().saturating_add(span * 1_000_000_000)),
        max_access,
        upload_only: form.upload_only,
    };
    caller.from = Some(peer.ip());
    match create_share(&state, &caller, req).await {
        Ok(s) => see_other(&format!("/ui/shares?made={}", s.id)),
        Err(e) => refused(e.status, &e.message),
    }
}

#[derive(Deserialize)]
pub(in crate::api) struct CsrfOnly {
    csrf: String,
}

pub(in crate::api) async fn revoke(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let mut caller = match form_session(&state, &headers, &form.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // Only the owner's own links, from this page (an administrator uses the CLI or API).
    let owner = Some(caller.user.id);
    caller.from = Some(peer.ip());
    match revoke_share(&state, id, owner, caller.actor()).await {
        Ok(()) => see_other("/ui/shares"),
        Err(e) => refused(e.status, &e.message),
    }
}
