//! WebDAV (RFC 4918, classes 1 and 2) on the server's own address: `/dav/` is a collection of the
//! folders the caller may read, `/dav/FOLDER/path...` their files and folders.
//!
//! Every request names a user (HTTP Basic or a bearer token, [`login`]), and every change is
//! a commit like an agent's, through the API's own checks and the caller's access: a PUT is a
//! new version, a DELETE a deletion version (the file stays restorable from its history), a
//! MOVE within a folder is a move of the journal (no content is sent again), a COPY
//! references the same chunks. Reads ([`read`]) and changes ([`write`]) work on a path's head
//! as the store gives it; a collection is a folder entry or a path that has live entries
//! below it (backups imply their folders). Dead properties are stored per path
//! (`meta/dav.rs`). Write locks ([`lock`], class 2) are kept in the store too, so every
//! instance behind a load balancer honours them.
//!
//! Depth infinity on PROPFIND is refused with 403 (`DAV:propfind-finite-depth`), as many
//! servers do: a listing of a whole large folder in one answer is what a stranger could make
//! the server spend; clients walk the tree with Depth 1 instead.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_model::{EntryKind, RelPath, Seq};
use cairn_protocol::{Access, VersionInfo};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{blocking, folder_access, ApiError, ApiResult, AppState, Caller};
use crate::meta::{Folder, StoredVersion};

mod lock;
mod login;
mod read;
mod write;
mod xml;

pub(crate) use login::BasicCache;

/// Largest XML request body (PROPFIND, PROPPATCH).
const MAX_XML: usize = 1 << 20;
/// The methods offered, for `Allow`.
const ALLOW: &str =
    "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, COPY, MOVE, PROPFIND, PROPPATCH, LOCK, UNLOCK";

/// Characters kept as they are in an href's path segment: what RFC 3986 leaves unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Every request under `/dav`.
pub(super) async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let what = format!("{} {}", req.method(), req.uri().path());
    match serve(&state, req).await {
        Ok(resp) => resp,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(request = %what, status = %e.status, "webdav request failed");
            }
            e.into_response()
        }
    }
}

async fn serve(state: &Arc<AppState>, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    if parts.method == Method::OPTIONS {
        return Ok(options());
    }
    let caller = match login::caller(state, &parts).await {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let target = Target::parse(parts.uri.path())?;
    let h = &parts.headers;
    // Under HTTP/2 the host is the URI's authority; under HTTP/1.1, the Host header.
    let here = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| h.get(header::HOST).and_then(|v| v.to_str().ok()));
    let m = parts.method.as_str();
    if matches!(m, "GET" | "HEAD" | "PROPFIND") {
        return match m {
            "PROPFIND" => read::propfind(state, &caller, &target, h, body).await,
            _ => read::get(state, &caller, &target, h).await,
        };
    }
    let known = matches!(
        m,
        "PUT" | "DELETE" | "MKCOL" | "COPY" | "MOVE" | "PROPPATCH" | "LOCK" | "UNLOCK"
    );
    if !known {
        let mut resp = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{m} is not offered here"),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
        return Ok(resp);
    }
    let locks = lock::preconditions(state, &caller, &target, h).await?;
    match m {
        "PUT" => write::put(state, &caller, &target, h, body, &locks).await,
        "DELETE" => write::delete(state, &caller, &target, &locks).await,
        "MKCOL" => write::mkcol(state, &caller, &target, body, &locks).await,
        "COPY" => write::copy_move(state, &caller, &target, h, here, false, &locks).await,
        "MOVE" => write::copy_move(state, &caller, &target, h, here, true, &locks).await,
        "PROPPATCH" => write::proppatch(state, &caller, &target, body, &locks).await,
        "LOCK" => lock::lock(state, &caller, &target, h, body, &locks).await,
        _ => lock::unlock(state, &caller, &target, h).await,
    }
}

fn options() -> Response {
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert("dav", HeaderValue::from_static("1, 2"));
    h.insert(header::ALLOW, HeaderValue::from_static(ALLOW));
    h.insert("ms-author-via", HeaderValue::from_static("DAV"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// What a request's path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// `/dav/`: the caller's folders.
    Root,
    /// A path in a folder (its root when `path` is).
    In { folder: String, path: RelPath },
}

impl Target {
    /// Parses a request's (percent-encoded) path under `/dav`. Each segment is decoded on
    /// its own, so an encoded `/` cannot join two; the rest follows the model's path rules.
    fn parse(raw: &str) -> ApiResult<Target> {
        let rest = raw
            .strip_prefix("/dav")
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, format!("{raw} is not under /dav/"))
            })?;
        let rest = rest.trim_start_matches('/');
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Ok(Target::Root);
        }
        let mut names = Vec::new();
        for seg in rest.split('/') {
            let name = percent_decode_str(seg)
                .decode_utf8()
                .map_err(|_| ApiError::bad(format!("{raw}: a name is not UTF-8")))?;
            if name.contains('/') {
                return Err(ApiError::bad(format!("{raw}: a name holds an encoded '/'")));
            }
            names.push(name.into_owned());
        }
        let folder = names.remove(0);
        if !cairn_protocol::is_valid_name(&folder) {
            return Err(ApiError::bad(format!(
                "{raw}: invalid folder name {folder:?}"
            )));
        }
        let path =
            RelPath::parse(&names.join("/")).map_err(|e| ApiError::bad(format!("{raw}: {e}")))?;
        Ok(Target::In { folder, path })
    }

    /// The folder and path, or 403 for `/dav/` itself (which no method changes).
    fn in_folder(&self) -> ApiResult<(&str, &RelPath)> {
        match self {
            Target::In { folder, path } => Ok((folder, path)),
            Target::Root => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "/dav/ lists your folders; it cannot be changed",
            )),
        }
    }
}

/// The href of `path` in `folder`; a collection's ends with `/`.
pub(super) fn href(folder: &str, path: &RelPath, collection: bool) -> String {
    let mut out = format!("/dav/{}", utf8_percent_encode(folder, SEGMENT));
    if !path.is_root() {
        for name in path.as_str().split('/') {
            out.push('/');
            out.extend(utf8_percent_encode(name, SEGMENT));
        }
    }
    if collection {
        out.push('/');
    }
    out
}

/// A file's entity tag: the first 128 bits of its content hash, quoted. Short, because some
/// clients cut long `If` headers (litmus's end at 200 characters, and an `If` may name the
/// tag twice), and as strong a validator as any client needs.
pub(super) fn etag_of(hash: cairn_model::ContentHash) -> String {
    let hex = hash.to_hex();
    format!("\"{}\"", &hex[..32])
}

/// What a path holds now.
pub(super) enum Node {
    /// A folder: its own entry, if it has one (a folder's root and paths only implied by
    /// what is below them have none).
    Collection(Option<Box<VersionInfo>>),
    File(Box<StoredVersion>),
    /// Nothing (or a symbolic link, which WebDAV cannot show): the head to base a new
    /// version on, if the path has one.
    Missing(Option<Seq>),
}

impl Node {
    pub(super) fn exists(&self) -> bool {
        !matches!(self, Node::Missing(_))
    }

    /// The head a change replacing this path is based on.
    pub(super) fn base(&self) -> Option<Seq> {
        match self {
            Node::Collection(own) => own.as_ref().map(|v| v.seq),
            Node::File(v) => Some(v.info.seq),
            Node::Missing(base) => *base,
        }
    }
}

/// What `path` of `folder` is now.
pub(super) async fn node(
    state: &Arc<AppState>,
    folder: &Folder,
    path: &RelPath,
) -> ApiResult<Node> {
    if path.is_root() {
        return Ok(Node::Collection(None));
    }
    let (f, p) = (folder.clone(), path.clone());
    let head = blocking(state, move |m| m.version(&f, &p, None)).await?;
    let base = match head {
        Some(v) if v.info.entry.kind == EntryKind::File => return Ok(Node::File(Box::new(v))),
        Some(v) if v.info.entry.kind == EntryKind::Dir => {
            return Ok(Node::Collection(Some(Box::new(v.info))))
        }
        Some(v) if v.info.entry.kind == EntryKind::Symlink => {
            return Ok(Node::Missing(Some(v.info.seq)))
        }
        Some(v) => Some(v.info.seq),
        None => None,
    };
    let (id, p) = (folder.id, path.clone());
    if blocking(state, move |m| m.has_live_under(id, &p)).await? {
        return Ok(Node::Collection(None));
    }
    Ok(Node::Missing(base))
}

/// The folder named, checked for `need`. A folder the caller may not read is 404, the same
/// as one that does not exist (names do not leak); a read-only one asked for writing is 403.
pub(super) async fn folder_for(
    state: &Arc<AppState>,
    caller: &Caller,
    folder: &str,
    need: Access,
) -> ApiResult<Folder> {
    folder_access(state, caller, folder, need).await
}

/// A body of at most [`MAX_XML`] bytes.
pub(super) async fn small_body(body: Body) -> ApiResult<axum::body::Bytes> {
    axum::body::to_bytes(body, MAX_XML).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an XML body may have at most {MAX_XML} bytes"),
        )
    })
}

/// The `Depth` header: `Some(0)`, `Some(1)`, or `None` for infinity (also when absent, as
/// RFC 4918 says).
pub(super) fn depth(headers: &HeaderMap) -> ApiResult<Option<u8>> {
    match headers
        .get("depth")
        .map(|v| v.to_str().unwrap_or("?").trim())
    {
        None => Ok(None),
        Some("0") => Ok(Some(0)),
        Some("1") => Ok(Some(1)),
        Some(v) if v.eq_ignore_ascii_case("infinity") => Ok(None),
        Some(v) => Err(ApiError::bad(format!("bad Depth header {v:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Target, StatusCode> {
        Target::parse(s).map_err(|e| e.status)
    }

    #[test]
    fn request_paths_decode_per_segment_and_follow_the_path_rules() {
        assert_eq!(parse("/dav"), Ok(Target::Root));
        assert_eq!(parse("/dav/"), Ok(Target::Root));
        let t = parse("/dav/docs/a%20b/c%C3%A9.txt").expect("parses");
        assert_eq!(
            t,
            Target::In {
                folder: "docs".into(),
                path: RelPath::parse("a b/cé.txt").expect("path")
            }
        );
        assert_eq!(parse("/dav/docs/a/../b"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(parse("/dav/docs/a%2F..%2Fb"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(parse("/dav/docs/%2E%2E/x"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(parse("/dav/docs/a%00b"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(parse("/dav/docs/%FF"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(parse("/dav/../etc"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(parse("/davx"), Err(StatusCode::NOT_FOUND));
    }

    #[test]
    fn hrefs_encode_every_reserved_character() {
        let p = RelPath::parse("a b/x#y?z%").expect("path");
        assert_eq!(
            href("my docs", &p, false),
            "/dav/my%20docs/a%20b/x%23y%3Fz%25"
        );
        assert_eq!(href("d", &RelPath::root(), true), "/dav/d/");
    }
}
