//! Upload-only links ("file requests"): a visitor of the link uploads files into the shared
//! folder and sees nothing of what it holds. The files are committed as the link's owner
//! (computer "upload link"), who must still be able to write there; a name already taken
//! gets a number rather than replacing anything; each file completed takes one of the link's
//! accesses, so `--max-access` bounds how many files a link can bring. The uploads are the web UI's
//! resumable ones (`web::upload`), with the link's own staging area.

use std::sync::Arc;

use axum::body::Bytes;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use cairn_model::{DeviceId, RelPath};
use cairn_protocol::Access;

use super::super::web::upload::{self, Finished, LinkDrop, Offset, Received, StartRequest, Target};
use super::super::{blocking, folder_access, ApiError, ApiResult, AppState, Caller, ClientAddr};
use super::{cookie, esc, new_csrf, page, unlocked, usable};

/// The largest file a link's visitor may upload.
pub const MAX_LINK_FILE: u64 = 4 << 30;
/// What a link's visitors may have waiting on the server at once, all files together.
pub const MAX_LINK_STAGED: u64 = 8 << 30;
const CSRF: &str = "cairn_csrf";

/// The page of an upload-only link: a box to drop files on, nothing of the folder.
pub(super) fn drop_page(token: &str, shared: &str) -> Response {
    let csrf = new_csrf();
    let name = shared
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("a folder");
    let body = format!(
        "<p>Files you send here go to {} of the person who shared this link. You cannot see what is there.</p>\
         <div id=\"upload\" class=\"drop\" data-base=\"/s/{token}/uploads\" data-dir=\"\" data-csrf=\"{csrf}\" data-stay=\"1\"><label>Choose files <input type=\"file\" id=\"upload-pick\" multiple></label> <span class=\"muted\">or drop them here</span><ul id=\"upload-progress\"></ul></div>\
         <script src=\"/ui/app.js\"></script>",
        esc(name)
    );
    let mut resp = page(StatusCode::OK, "Send files", &body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    let c =
        format!("{CSRF}={csrf}; Path=/s/{token}; HttpOnly; Secure; SameSite=Strict; Max-Age=86400");
    if let Ok(v) = HeaderValue::from_str(&c) {
        h.append(header::SET_COOKIE, v);
    }
    resp
}

fn refused(status: StatusCode, why: &str) -> ApiError {
    ApiError::new(status, why)
}

/// The upload target of link `token` for this visitor: a usable upload-only link, unlocked
/// if it has a password, with the page's CSRF token, whose owner may still write there.
async fn target(state: &Arc<AppState>, token: &str, headers: &HeaderMap) -> ApiResult<Target> {
    let (row, _) = usable(state, token)
        .await
        .map_err(|_| refused(StatusCode::GONE, "this link does not work (any more)"))?;
    if row.kind != "drop" {
        return Err(refused(StatusCode::NOT_FOUND, "this link takes no uploads"));
    }
    if !unlocked(state, &row, headers) {
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "open the link with its password first",
        ));
    }
    let given = headers.get("x-cairn-csrf").and_then(|v| v.to_str().ok());
    let csrf = cookie(headers, CSRF).filter(|c| c.len() == 32);
    if csrf.is_none() || csrf != given {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "the page had expired; reload it",
        ));
    }
    let owner_id = row.owner_id;
    let owner = blocking(state, move |m| m.user_by_id(owner_id))
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(|| refused(StatusCode::GONE, "this link does not work (any more)"))?;
    let caller = Caller {
        user: owner,
        device: DeviceId("upload-link".into()),
        expires_ns: i64::MAX,
        from: None,
    };
    let folder = folder_access(state, &caller, &row.folder, Access::Rw).await?;
    let under = RelPath::parse(&row.path).map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(Target {
        dir: upload::link_dir(state, row.id),
        caller,
        folder,
        max_file: MAX_LINK_FILE,
        max_staged: MAX_LINK_STAGED,
        link: Some(LinkDrop { id: row.id, under }),
    })
}

pub(in crate::api) async fn start(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Json(req): Json<StartRequest>,
) -> ApiResult<Json<Received>> {
    let t = target(&state, &token, &headers).await?;
    Ok(Json(upload::begin(&t, req).await?))
}

pub(in crate::api) async fn status(
    State(state): State<Arc<AppState>>,
    Path((token, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Received>> {
    let t = target(&state, &token, &headers).await?;
    Ok(Json(upload::received(&t, id)?))
}

pub(in crate::api) async fn part(
    State(state): State<Arc<AppState>>,
    Path((token, id)): Path<(String, String)>,
    Query(at): Query<Offset>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Received>> {
    let t = target(&state, &token, &headers).await?;
    Ok(Json(upload::append(&state, &t, id, at.offset, body).await?))
}

pub(in crate::api) async fn finish(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    Path((token, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Finished>> {
    let t = target(&state, &token, &headers).await?;
    let done = upload::complete(&state, &t, id).await?;
    if let Some(link) = &t.link {
        use crate::meta::{Actor, EventKind, Outcome};
        let (target, by) = (format!("link {}", link.id), Actor::visitor(peer.ip()));
        let detail = format!("uploaded {}/{}", t.folder.name, done.path);
        let _ = blocking(&state, move |m| {
            m.record(EventKind::ShareUpload, &by, &target, Outcome::Ok, &detail);
            Ok(())
        })
        .await;
    }
    Ok(Json(done))
}
