//! A WebDAV path's whole listing in one request (`PROPFIND` with `Depth: infinity`) where the
//! server allows it, instead of one request per folder (OpenDAL lists one folder at a time).
//!
//! A server may refuse an infinite depth (RFC 4918 §9.1: 403 with `propfind-finite-depth`):
//! the replica then lists folder by folder for the rest of its life. A server that answers an
//! infinite depth as depth 1 would make every deeper file look deleted: when the answer holds
//! a sub-folder but nothing below depth 1, the listing is taken folder by folder instead (for
//! a tree of empty folders that costs what the walk costs anyway).

use std::sync::atomic::Ordering;

use cairn_engine::{Error, Result};
use http::StatusCode;
use opendal::raw::{build_rel_path, percent_decode_path, Timestamp};
use opendal::{Metadata, MetadataBuilder};
use serde::Deserialize;

use super::dav::{send_with, DavAccess};
use super::CloudReplica;

/// The properties a listing needs, asked by name (an `allprop` answer is larger).
const PROPFIND_BODY: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<D:propfind xmlns:D=\"DAV:\"><D:prop><D:resourcetype/><D:getcontentlength/>\
<D:getlastmodified/><D:getetag/></D:prop></D:propfind>";

/// Every entry under the root as (path relative to the root, `/`-terminated for folders,
/// metadata); `None` where this server is listed folder by folder.
pub(super) async fn list_all(
    r: &CloudReplica,
    dav: &DavAccess,
) -> Result<Option<Vec<(String, Metadata)>>> {
    if r.dav_finite_depth.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let headers = [("Depth", "infinity"), ("Content-Type", "application/xml")];
    let (status, body) = send_with(r, dav, "PROPFIND", "/", &headers, PROPFIND_BODY).await?;
    match status {
        StatusCode::MULTI_STATUS => {}
        // The root not made yet: an empty root.
        StatusCode::NOT_FOUND => return Ok(Some(Vec::new())),
        // Refused (403 propfind-finite-depth), or not understood: folder by folder.
        s if s.is_client_error() => {
            r.dav_finite_depth.store(true, Ordering::Relaxed);
            return Ok(None);
        }
        other => {
            return Err(Error::remote(format!(
                "{}: listing: the server answered {other}",
                r.describe
            )))
        }
    }
    let root = r.op.info().root();
    let entries = parse(&body, &dav.server_path(), &root)
        .map_err(|e| Error::remote(format!("{}: listing: {e}", r.describe)))?;
    let has_folder = entries.iter().any(|(p, m)| m.is_dir() && !p.is_empty());
    let deep = entries
        .iter()
        .any(|(p, _)| p.trim_end_matches('/').contains('/'));
    if has_folder && !deep {
        return Ok(None);
    }
    Ok(Some(entries))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Multistatus {
    response: Vec<Response>,
}

#[derive(Deserialize)]
struct Response {
    href: String,
    #[serde(default)]
    propstat: Vec<Propstat>,
}

#[derive(Deserialize)]
struct Propstat {
    #[serde(default)]
    status: String,
    #[serde(default)]
    prop: Prop,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Prop {
    getcontentlength: Option<String>,
    getlastmodified: Option<String>,
    getetag: Option<String>,
    resourcetype: Kind,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Kind {
    #[serde(rename = "$value")]
    value: Vec<KindValue>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum KindValue {
    Collection,
    #[serde(other)]
    Other,
}

/// The entries of a multistatus answer, by path relative to `root` (the root itself as
/// the empty path).
fn parse(
    body: &[u8],
    server_path: &str,
    root: &str,
) -> std::result::Result<Vec<(String, Metadata)>, String> {
    let text = String::from_utf8_lossy(body);
    let all: Multistatus = quick_xml::de::from_str(&text).map_err(|e| format!("{e}"))?;
    let mut out = Vec::with_capacity(all.response.len());
    for res in all.response {
        let Some(prop) = res
            .propstat
            .iter()
            .find(|p| status_ok(&p.status))
            .map(|p| &p.prop)
        else {
            continue;
        };
        let href = strip_origin(&res.href);
        let href = href.strip_prefix(server_path).unwrap_or(href);
        let mut abs = percent_decode_path(href);
        let is_dir = prop.resourcetype.value.contains(&KindValue::Collection);
        if is_dir && !abs.ends_with('/') {
            abs.push('/');
        }
        if !abs.starts_with(root) {
            continue;
        }
        let rel = if abs == root {
            String::new()
        } else {
            build_rel_path(root, &abs)
        };
        out.push((rel, metadata(prop, is_dir)?));
    }
    Ok(out)
}

fn metadata(prop: &Prop, is_dir: bool) -> std::result::Result<Metadata, String> {
    let mut m = if is_dir {
        MetadataBuilder::dir()
    } else {
        let len = prop.getcontentlength.as_deref().unwrap_or("0").trim();
        MetadataBuilder::file(
            len.parse()
                .map_err(|_| format!("a file's length {len:?} is not a number"))?,
        )
    };
    if let Some(tag) = &prop.getetag {
        m.etag(tag.trim());
    }
    if let Some(t) = prop.getlastmodified.as_deref() {
        if let Ok(t) = Timestamp::parse_rfc2822(t.trim()) {
            m.last_modified(t);
        }
    }
    Ok(m.build())
}

/// `HTTP/1.1 200 OK` and the like.
fn status_ok(status: &str) -> bool {
    status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..300).contains(&c))
}

/// An href as a path: some servers give the whole URL.
fn strip_origin(href: &str) -> &str {
    let href = href.trim();
    match href.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => href,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"<?xml version="1.0" encoding="utf-8" ?>
<D:multistatus xmlns:D="DAV:">
<D:response><D:href>/dav/data/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype><D:getlastmodified>Mon, 30 Nov 2026 22:00:00 GMT</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><D:getcontentlength/><D:getetag/></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response>
<D:response><D:href>/dav/data/a%20b/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>http://127.0.0.1:8080/dav/data/a%20b/f%26g.txt</D:href><D:propstat><D:prop><D:resourcetype/><D:getcontentlength>12</D:getcontentlength><D:getetag>"7-1-12"</D:getetag><D:getlastmodified>Mon, 30 Nov 2026 22:00:01 GMT</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/dav/data/x &amp; y.bin</D:href><D:propstat><D:prop><D:resourcetype></D:resourcetype><D:getcontentlength>0</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/dav/other/z</D:href><D:propstat><D:prop><D:getcontentlength>1</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
</D:multistatus>"#;

    #[test]
    fn an_infinite_listing_gives_paths_under_the_root() {
        let got = parse(ANSWER.as_bytes(), "/dav", "/data/").expect("parse");
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["", "a b/", "a b/f&g.txt", "x & y.bin"]);
        let (_, file) = &got[2];
        assert!(file.is_file());
        assert_eq!(file.content_length(), 12);
        assert_eq!(file.etag(), Some("\"7-1-12\""));
        assert!(file.last_modified().is_some());
        assert!(got[1].1.is_dir());
        assert_eq!(got[3].1.content_length(), 0);
    }

    #[test]
    fn a_broken_answer_fails_the_listing() {
        assert!(parse(b"<D:multistatus xmlns:D=\"DAV:\"><D:response>", "", "/").is_err());
        let bad_len = ANSWER.replace(">12<", ">twelve<");
        assert!(parse(bad_len.as_bytes(), "/dav", "/data/").is_err());
    }

    #[test]
    fn statuses_and_origins() {
        assert!(status_ok("HTTP/1.1 200 OK"));
        assert!(!status_ok("HTTP/1.1 404 Not Found"));
        assert!(!status_ok(""));
        assert_eq!(strip_origin("https://h:1/a/b"), "/a/b");
        assert_eq!(strip_origin("https://h"), "/");
        assert_eq!(strip_origin("/a"), "/a");
    }
}
