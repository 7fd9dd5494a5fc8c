//! Reading through WebDAV: GET and HEAD of a file (with byte ranges, streamed chunk by chunk
//! as the API's content endpoint does) or of a collection (a short HTML list), and PROPFIND
//! at Depth 0 or 1 with the live properties of an entry and the dead ones stored for it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_model::{EntryKind, RelPath};
use cairn_protocol::{Access, VersionInfo};
use quick_xml::escape::escape;

use super::super::{blocking, now_ns, stream_file, ApiError, ApiResult, AppState, Caller};
use super::xml::{self, Wanted, DAV};
use super::{depth, etag_of, folder_for, href, node, small_body, Node, Target};
use crate::meta::dav::{DeadProp, PropName};

/// A resource as PROPFIND shows it.
struct Resource {
    href: String,
    /// Its path in its folder (`None` for `/dav/` and a folder's entry in it), for its dead
    /// properties.
    path: Option<RelPath>,
    name: String,
    collection: bool,
    size: u64,
    mtime_ns: i64,
    etag: Option<String>,
    /// The `lockdiscovery` value (`None` outside a folder, where nothing can be locked).
    locks: Option<String>,
}

impl Resource {
    fn of_version(folder: &str, v: &VersionInfo) -> Resource {
        let collection = v.entry.kind == EntryKind::Dir;
        Resource {
            href: href(folder, &v.path, collection),
            path: Some(v.path.clone()),
            name: v.path.name().to_string(),
            collection,
            size: v.entry.size,
            mtime_ns: v.entry.mtime_ns,
            etag: v.entry.hash.map(etag_of),
            locks: None,
        }
    }

    fn collection(href: String, path: Option<RelPath>, name: &str, mtime_ns: i64) -> Resource {
        Resource {
            href,
            path,
            name: name.to_string(),
            collection: true,
            size: 0,
            mtime_ns,
            etag: None,
            locks: None,
        }
    }

    /// The live properties: (local name in DAV:, value as XML).
    fn live(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (
                "resourcetype",
                if self.collection {
                    "<D:collection/>".to_string()
                } else {
                    String::new()
                },
            ),
            ("displayname", escape(self.name.as_str()).into_owned()),
            ("getlastmodified", http_date(self.mtime_ns)),
        ];
        if !self.collection {
            out.push(("getcontentlength", self.size.to_string()));
            out.push(("getcontenttype", "application/octet-stream".to_string()));
        }
        if let Some(e) = &self.etag {
            out.push(("getetag", escape(e.as_str()).into_owned()));
        }
        if let Some(l) = &self.locks {
            out.push(("supportedlock", super::lock::SUPPORTED.to_string()));
            out.push(("lockdiscovery", l.clone()));
        }
        out
    }
}

/// The live property names offered in DAV: (any resource may lack some).
pub(super) const LIVE: [&str; 8] = [
    "resourcetype",
    "displayname",
    "getlastmodified",
    "getcontentlength",
    "getcontenttype",
    "getetag",
    "supportedlock",
    "lockdiscovery",
];

fn http_date(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
    httpdate::fmt_http_date(t)
}

pub(super) async fn get(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let Target::In { folder, path } = target else {
        return Ok(listing("/dav/", folders(state, caller).await?));
    };
    let f = folder_for(state, caller, folder, Access::Ro).await?;
    match node(state, &f, path).await? {
        Node::File(v) => {
            let shown = format!("{folder}/{path}");
            let mut resp = stream_file(state, &v, &shown, headers).await?;
            let h = resp.headers_mut();
            if let Some(hash) = v.info.entry.hash {
                if let Ok(e) = HeaderValue::from_str(&etag_of(hash)) {
                    h.insert(header::ETAG, e);
                }
            }
            if let Ok(d) = HeaderValue::from_str(&http_date(v.info.entry.mtime_ns)) {
                h.insert(header::LAST_MODIFIED, d);
            }
            Ok(resp)
        }
        Node::Collection(_) => {
            let rows = children(state, &f, path).await?;
            let items = rows
                .iter()
                .map(|r| (r.name.clone(), r.href.clone(), r.collection))
                .collect();
            Ok(listing(&href(folder, path, true), items))
        }
        Node::Missing(_) => Err(not_found(folder, path)),
    }
}

pub(super) fn not_found(folder: &str, path: &RelPath) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("nothing at {folder}/{path}"))
}

/// A collection as a plain HTML list, for a browser that opens it.
fn listing(title: &str, items: Vec<(String, String, bool)>) -> Response {
    let mut body = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>{0}</title><h1>{0}</h1><ul>",
        escape(title)
    );
    for (name, link, dir) in items {
        let slash = if dir { "/" } else { "" };
        let _ = write!(
            body,
            "<li><a href=\"{}\">{}{slash}</a></li>",
            escape(link.as_str()),
            escape(name.as_str())
        );
    }
    body.push_str("</ul>");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// The caller's folders as (name, href, collection).
async fn folders(state: &Arc<AppState>, caller: &Caller) -> ApiResult<Vec<(String, String, bool)>> {
    let user = caller.user.clone();
    let list = blocking(state, move |m| m.folders_of(&user)).await?;
    Ok(list
        .into_iter()
        .map(|f| {
            let link = href(&f.name, &RelPath::root(), true);
            (f.name, link, true)
        })
        .collect())
}

/// The resources directly in collection `dir` (folders implied by deeper paths included;
/// symbolic links left out).
async fn children(
    state: &Arc<AppState>,
    folder: &crate::meta::Folder,
    dir: &RelPath,
) -> ApiResult<Vec<Resource>> {
    let (f, p) = (folder.clone(), dir.clone());
    let children = blocking(state, move |m| {
        super::super::web::children_in(m, &f, &p, None, false)
    })
    .await?;
    Ok(children
        .iter()
        .filter(|v| matches!(v.entry.kind, EntryKind::File | EntryKind::Dir))
        .map(|v| Resource::of_version(&folder.name, v))
        .collect())
}

pub(super) async fn propfind(
    state: &Arc<AppState>,
    caller: &Caller,
    target: &Target,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let Some(depth) = depth(headers)? else {
        return Ok(finite_depth());
    };
    let body = small_body(body).await?;
    let wanted = xml::propfind(&body).map_err(|e| ApiError::bad(format!("PROPFIND: {e}")))?;
    let (resources, dead) = match target {
        Target::Root => (root_resources(state, caller, depth).await?, HashMap::new()),
        Target::In { folder, path } => {
            in_folder(state, caller, (folder, path), depth == 1, &wanted).await?
        }
    };
    let mut out = String::from(xml::MULTISTATUS_START);
    for r in &resources {
        let none = Vec::new();
        let props = r.path.as_ref().and_then(|p| dead.get(p)).unwrap_or(&none);
        response_of(&mut out, r, props, &wanted);
    }
    out.push_str(xml::MULTISTATUS_END);
    Ok(multistatus(out))
}

/// The resources a PROPFIND of `path` in `folder` shows (with its members when `members`),
/// their locks filled in, and the dead properties it asks for, by path.
async fn in_folder(
    state: &Arc<AppState>,
    caller: &Caller,
    (folder, path): (&str, &RelPath),
    members: bool,
    wanted: &Wanted,
) -> ApiResult<(Vec<Resource>, HashMap<RelPath, Vec<DeadProp>>)> {
    let f = folder_for(state, caller, folder, Access::Ro).await?;
    let mut out = vec![match node(state, &f, path).await? {
        Node::Missing(_) => return Err(not_found(folder, path)),
        Node::File(v) => Resource::of_version(folder, &v.info),
        Node::Collection(own) => {
            let mtime = own.map_or(now_ns(), |v| v.entry.mtime_ns);
            // A folder's root is shown under the folder's name.
            let name = if path.is_root() { folder } else { path.name() };
            Resource::collection(href(folder, path, true), Some(path.clone()), name, mtime)
        }
    }];
    if members && out[0].collection {
        out.extend(children(state, &f, path).await?);
    }
    let id = f.id;
    let locks = blocking(state, move |m| m.dav_locks(id, now_ns())).await?;
    for r in &mut out {
        let mut xml = String::new();
        if let Some(p) = &r.path {
            for l in locks.iter().filter(|l| l.covers(p)) {
                super::lock::activelock(&mut xml, folder, l);
            }
        }
        r.locks = Some(xml);
    }
    let only_live = |n: &PropName| n.ns == DAV && LIVE.contains(&n.name.as_str());
    if matches!(wanted, Wanted::Some(n) if n.iter().all(only_live)) {
        return Ok((out, HashMap::new()));
    }
    let p = path.clone();
    let props = blocking(state, move |m| m.dead_props(id, &p, members)).await?;
    Ok((out, group(props)))
}

/// 403 with the precondition RFC 4918 names for a PROPFIND of Depth infinity.
fn finite_depth() -> Response {
    let body = format!(
        "{}<D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>\n",
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    );
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

pub(super) fn multistatus(body: String) -> Response {
    (
        StatusCode::MULTI_STATUS,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn group(props: Vec<DeadProp>) -> HashMap<RelPath, Vec<DeadProp>> {
    let mut out: HashMap<RelPath, Vec<DeadProp>> = HashMap::new();
    for p in props {
        out.entry(p.path.clone()).or_default().push(p);
    }
    out
}

async fn root_resources(
    state: &Arc<AppState>,
    caller: &Caller,
    depth: u8,
) -> ApiResult<Vec<Resource>> {
    let mut out = vec![Resource::collection("/dav/".into(), None, "dav", now_ns())];
    if depth == 1 {
        for (name, link, _) in folders(state, caller).await? {
            out.push(Resource::collection(link, None, &name, now_ns()));
        }
    }
    Ok(out)
}

/// One `response` of a PROPFIND answer.
fn response_of(out: &mut String, r: &Resource, dead: &[DeadProp], wanted: &Wanted) {
    let _ = write!(
        out,
        "<D:response><D:href>{}</D:href>",
        escape(r.href.as_str())
    );
    let live = r.live();
    let mut found = String::new();
    match wanted {
        Wanted::All | Wanted::Names => {
            let names = matches!(wanted, Wanted::Names);
            for (name, value) in &live {
                let n = PropName {
                    ns: DAV.into(),
                    name: (*name).into(),
                };
                xml::prop_xml(&mut found, &n, (!names).then_some(value.as_str()));
            }
            for d in dead {
                xml::prop_xml(&mut found, &d.name, (!names).then_some(d.value.as_str()));
            }
            xml::propstat(out, &found, 200);
        }
        Wanted::Some(asked) => {
            let mut missing = String::new();
            for n in asked {
                let live = live
                    .iter()
                    .find(|(l, _)| n.ns == DAV && *l == n.name)
                    .map(|(_, v)| v.as_str());
                let value =
                    live.or_else(|| dead.iter().find(|d| d.name == *n).map(|d| d.value.as_str()));
                match value {
                    Some(v) => xml::prop_xml(&mut found, n, Some(v)),
                    None => xml::prop_xml(&mut missing, n, None),
                }
            }
            if !found.is_empty() {
                xml::propstat(out, &found, 200);
            }
            if !missing.is_empty() {
                xml::propstat(out, &missing, 404);
            }
        }
    }
    out.push_str("</D:response>");
}
