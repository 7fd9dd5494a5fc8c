//! The commit of a written file on WebDAV, with requests made here rather than through
//! OpenDAL: its rename always overwrites (`Overwrite: T`) and looks twice before it moves (a
//! PROPFIND of the source and one of the destination's folder), and its `create_dir` looks
//! before it makes. Through it a new file cost ten requests; here it costs two.
//!
//! - A new file: the temporary is moved into place with `Overwrite: F` (RFC 4918 §10.6: the
//!   server must not move over anything there), which guards the path at the moment of the
//!   move, where a look first left a gap between look and move. A 412 means something is
//!   there: the write reports it as changed and the temporary is dropped. A 409 means a
//!   folder on the way is missing: it is made, and the move tried once more.
//! - A replaced file (its version was checked just before the write): moved with
//!   `Overwrite: T`; a server that will not move over a file gets `place`'s careful steps.
//! - A new folder: one MKCOL; a 405 (something is there) is looked at.
//! - The written file's version is the ETag the PUT of the temporary answered with, where the
//!   server keeps an ETag through a move (wsgidav's and Apache's are inode, time and size):
//!   the replica's first commit looks after the move and compares, and keeps looking after
//!   every commit if it differs.
//! - These requests go through the connection's transport (its limits, counters and, in
//!   tests, faults) but not OpenDAL's retry layer: temporary failures are retried here. A
//!   move whose answer was lost may have been carried out: a move that finds the temporary
//!   gone or the place taken looks whether the file there is the temporary (by its ETag).

use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_engine::replica::{Outcome, ReplicaEntry};
use cairn_engine::{Error, Result};
use cairn_model::{ContentHash, EntryKind, RelPath};
use http::{Request, StatusCode};
use opendal::raw::{build_rooted_abs_path, percent_encode_path};

use super::listing::{dir_entry, entry_of};
use super::CloudReplica;
use crate::connection::{CloudConnection, Secrets};

/// Where a WebDAV connection's requests go and how they are signed.
#[derive(Clone)]
pub struct DavAccess {
    endpoint: String,
    pub(super) authorization: Option<String>,
}

impl std::fmt::Debug for DavAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DavAccess")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl DavAccess {
    /// A WebDAV connection's endpoint and credentials, as OpenDAL's WebDAV service takes them
    /// (a token wins over a user name); none for other services.
    ///
    /// # Errors
    /// A credential that cannot be put in a header.
    pub fn of(
        conn: &CloudConnection,
        secrets: &Secrets,
    ) -> std::result::Result<Option<Self>, String> {
        if conn.scheme() != "webdav" {
            return Ok(None);
        }
        let get = |k: &str| secrets.0.get(k).or_else(|| conn.options.get(k));
        let Some(endpoint) = conn.options.get("endpoint") else {
            return Ok(None);
        };
        let bad = |e: opendal::Error| format!("the connection's credentials: {}", e.kind());
        let authorization = match (get("token"), get("username")) {
            (Some(token), _) => {
                Some(opendal::raw::format_authorization_by_bearer(token).map_err(bad)?)
            }
            (None, Some(user)) => Some(
                opendal::raw::format_authorization_by_basic(
                    user,
                    get("password").map_or("", String::as_str),
                )
                .map_err(bad)?,
            ),
            (None, None) => None,
        };
        Ok(Some(DavAccess {
            endpoint: endpoint.clone(),
            authorization,
        }))
    }

    /// The endpoint's own path, which the server's hrefs start with.
    pub(super) fn server_path(&self) -> String {
        self.endpoint
            .parse::<http::Uri>()
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default()
    }
}

/// Whether the server's ETag survives a move: not known yet, yes, no.
pub(super) const ETAG_UNKNOWN: u8 = 0;
const ETAG_KEPT: u8 = 1;
const ETAG_CHANGED: u8 = 2;

/// How often and after how long a request failed for a temporary reason is sent again.
const RETRY_WAITS_MS: [u64; 4] = [250, 1000, 2000, 4000];
/// One try of a request: a move or a folder is quick, unless the server is stuck.
const TRY_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn url(r: &CloudReplica, dav: &DavAccess, key: &str) -> String {
    let path = build_rooted_abs_path(&r.op.info().root(), key);
    format!("{}{}", dav.endpoint, percent_encode_path(&path))
}

/// `method` on `key` (with a destination for a move), sent again while it fails for a
/// temporary reason.
async fn send(
    r: &CloudReplica,
    dav: &DavAccess,
    method: &str,
    key: &str,
    destination: Option<(&str, bool)>,
) -> Result<StatusCode> {
    let mut headers = Vec::new();
    let to;
    if let Some((dest, overwrite)) = destination {
        to = url(r, dav, dest);
        headers.push(("Destination", to.as_str()));
        headers.push(("Overwrite", if overwrite { "T" } else { "F" }));
    }
    let (status, _) = send_with(r, dav, method, key, &headers, "").await?;
    Ok(status)
}

/// `method` on `key` with `headers` and `body`, sent again while it fails for a temporary
/// reason; the answer's status and body.
pub(super) async fn send_with(
    r: &CloudReplica,
    dav: &DavAccess,
    method: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> Result<(StatusCode, bytes::Bytes)> {
    let mut waits = RETRY_WAITS_MS.iter();
    loop {
        let mut req = Request::builder().method(method).uri(url(r, dav, key));
        if let Some(auth) = &dav.authorization {
            req = req.header(http::header::AUTHORIZATION, auth);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(opendal::Buffer::from(body))
            .map_err(|e| Error::remote(format!("{}/{key}: {method}: {e}", r.describe)))?;
        let sent =
            tokio::time::timeout(TRY_TIMEOUT, r.op.context().http_transport().send(req)).await;
        let failure = match sent {
            Ok(Ok(resp)) if !is_busy(resp.status()) => {
                return Ok((resp.status(), resp.into_body().to_bytes()))
            }
            Ok(Ok(resp)) => format!("answered {}", resp.status()),
            Ok(Err(e)) if e.is_temporary() => e.to_string(),
            Ok(Err(e)) => return Err(r.fail(method, key, e)),
            Err(_) => format!("no answer within {} s", TRY_TIMEOUT.as_secs()),
        };
        let Some(wait) = waits.next() else {
            return Err(Error::Remote {
                message: format!("{}/{key}: {method}: {failure}", r.describe),
                temporary: true,
            });
        };
        tokio::time::sleep(Duration::from_millis(*wait)).await;
    }
}

/// A server error that a later try may not meet.
fn is_busy(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::LOCKED
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// Puts the complete temporary `temp` (answered with `written`'s ETag) in place at `path`:
/// over the version the caller checked when `replacing`, else only where nothing is.
#[allow(clippy::too_many_arguments)]
pub(super) async fn commit(
    r: &CloudReplica,
    dav: &DavAccess,
    temp: &str,
    path: &RelPath,
    replacing: bool,
    written: &opendal::Metadata,
    size: u64,
    hash: ContentHash,
) -> Result<Outcome> {
    let placed = if replacing {
        replace(r, dav, temp, path, written).await?
    } else {
        place_new(r, dav, temp, path, written).await?
    };
    let mut done = match placed {
        Placed::Moved => settled(r, path, written, size).await?,
        Placed::Seen(there) => there,
        Placed::Taken(now) => return Ok(Outcome::Changed(now)),
    };
    done.hash = Some(hash);
    Ok(Outcome::Done(Some(done)))
}

enum Placed {
    /// In place; not looked at since.
    Moved,
    /// In place, as a look found it (after a move whose answer was lost).
    Seen(ReplicaEntry),
    /// Something else is there (the temporary is dropped).
    Taken(Option<ReplicaEntry>),
}

/// A new file's move into place, only where nothing is.
async fn place_new(
    r: &CloudReplica,
    dav: &DavAccess,
    temp: &str,
    path: &RelPath,
    written: &opendal::Metadata,
) -> Result<Placed> {
    let key = path.as_str();
    let mut status = send(r, dav, "MOVE", temp, Some((key, false))).await?;
    if status == StatusCode::CONFLICT {
        // A folder on the way is missing (the planner makes folders first: rare).
        make_parents(r, path).await?;
        status = send(r, dav, "MOVE", temp, Some((key, false))).await?;
    }
    match status {
        s if s.is_success() => Ok(Placed::Moved),
        // Something is there, or the temporary is gone: either may be the temporary itself,
        // moved by a try whose answer was lost.
        StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND => {
            let now = r.current(path).await?;
            if let Some(own) = now.as_ref().filter(|e| is_written(e, written)) {
                return Ok(Placed::Seen(own.clone()));
            }
            discard(r, temp).await;
            match now {
                Some(now) => Ok(Placed::Taken(Some(now))),
                None => Err(Error::remote(format!(
                    "{}/{key}: the server refused to move the written file into place \
                     ({status}), and nothing is there; the next pass sends it again",
                    r.describe
                ))),
            }
        }
        other => {
            discard(r, temp).await;
            Err(Error::remote(format!(
                "{}/{key}: moving the written file into place: the server answered {other}",
                r.describe
            )))
        }
    }
}

/// A replaced file's move over the checked version; where the server will not move over a
/// file, `place`'s steps (the old one aside until the new one is in).
async fn replace(
    r: &CloudReplica,
    dav: &DavAccess,
    temp: &str,
    path: &RelPath,
    written: &opendal::Metadata,
) -> Result<Placed> {
    let status = send(r, dav, "MOVE", temp, Some((path.as_str(), true))).await?;
    if status.is_success() {
        return Ok(Placed::Moved);
    }
    if status == StatusCode::NOT_FOUND {
        // The temporary is gone: moved by a try whose answer was lost, or removed.
        if let Some(own) = r.current(path).await?.filter(|e| is_written(e, written)) {
            return Ok(Placed::Seen(own));
        }
    }
    super::write::place(r, temp, path.as_str()).await?;
    Ok(Placed::Moved)
}

/// The placed file's entry: from the temporary's ETag where the server keeps ETags through a
/// move, else as the server gives it now.
async fn settled(
    r: &CloudReplica,
    path: &RelPath,
    written: &opendal::Metadata,
    size: u64,
) -> Result<ReplicaEntry> {
    let tag = written.etag().filter(|_| r.use_etags);
    if tag.is_some() && r.dav_etag_moves.load(Ordering::Relaxed) == ETAG_KEPT {
        let mut meta = written.clone().into_builder();
        meta.set_file(size);
        return Ok(entry_of(&meta.build(), true, 1, path.as_str()));
    }
    let Some(now) = r.current(path).await? else {
        return Err(Error::remote(format!(
            "{}/{path}: written, but not there when checked",
            r.describe
        )));
    };
    if tag.is_some() && r.dav_etag_moves.load(Ordering::Relaxed) == ETAG_UNKNOWN {
        let kept = if is_written(&now, written) {
            ETAG_KEPT
        } else {
            ETAG_CHANGED
        };
        r.dav_etag_moves.store(kept, Ordering::Relaxed);
    }
    Ok(now)
}

/// Whether `e` is the file whose PUT answered with `written`'s ETag.
fn is_written(e: &ReplicaEntry, written: &opendal::Metadata) -> bool {
    let tag = written
        .etag()
        .is_some()
        .then(|| entry_of(written, true, 1, "").version);
    e.kind == EntryKind::File && tag.is_some_and(|v| v.0.starts_with("e:") && v == e.version)
}

/// Makes the folders `path` is in, the task's own root included (a fresh remote path).
async fn make_parents(r: &CloudReplica, path: &RelPath) -> Result<()> {
    let dir = match path.parent().filter(|p| !p.is_root()) {
        Some(parent) => format!("{}/", parent.as_str()),
        None => "/".to_string(),
    };
    r.op.create_dir(&dir)
        .await
        .map_err(|e| r.fail("making the folder", &dir, e))
}

/// Best effort: the staging folder's leftovers are the owner's next pass's to remove.
async fn discard(r: &CloudReplica, temp: &str) {
    let _ = r.op.delete(temp).await;
}

/// A new folder: one MKCOL; changed when something other than a folder is there.
pub(super) async fn make_new_dir(
    r: &CloudReplica,
    dav: &DavAccess,
    path: &RelPath,
) -> Result<Outcome> {
    let key = format!("{}/", path.as_str());
    let mut status = send(r, dav, "MKCOL", &key, None).await?;
    if status == StatusCode::CONFLICT {
        make_parents(r, path).await?;
        status = send(r, dav, "MKCOL", &key, None).await?;
    }
    match status {
        s if s.is_success() => Ok(Outcome::Done(Some(dir_entry()))),
        // Something is there: a folder (made by another, or by a try whose answer was lost)
        // is what was asked for; a file is a change.
        StatusCode::METHOD_NOT_ALLOWED => match r.current(path).await? {
            Some(now) if now.kind == EntryKind::Dir => Ok(Outcome::Done(Some(now))),
            now => Ok(Outcome::Changed(now)),
        },
        other => Err(Error::remote(format!(
            "{}/{path}: making the folder: the server answered {other}",
            r.describe
        ))),
    }
}

/// The version a written file's ETag makes (for tests of the comparison).
#[cfg(test)]
fn version_of_tag(tag: &str) -> cairn_engine::replica::Version {
    let mut meta = opendal::MetadataBuilder::file(3);
    meta.etag(tag);
    entry_of(&meta.build(), true, 1, "x").version
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_is_known_by_its_etag_only() {
        let mut written = opendal::MetadataBuilder::file(3);
        written.etag("\"7-1-3\"");
        let written = written.build();
        let mut e = dir_entry();
        e.kind = EntryKind::File;
        e.version = version_of_tag("W/\"7-1-3\"");
        assert!(is_written(&e, &written));
        e.version = version_of_tag("\"7-2-3\"");
        assert!(!is_written(&e, &written));
        let untagged = opendal::MetadataBuilder::file(3).build();
        e.version = cairn_engine::replica::Version("m:3:1:abc".into());
        assert!(!is_written(&e, &untagged), "no ETag: never taken for ours");
        assert!(!is_written(&dir_entry(), &written));
    }

    #[test]
    fn access_is_for_webdav_only_and_never_shows_the_secret() {
        let mut conn = CloudConnection {
            provider: "webdav".into(),
            options: [
                ("endpoint".to_string(), "http://127.0.0.1:1".to_string()),
                ("username".to_string(), "u".to_string()),
            ]
            .into(),
            secrets: vec!["password".into()],
            prompt: Vec::new(),
            ca_file: None,
            limit_upload: None,
            limit_download: None,
            public_only: false,
        };
        let secrets = Secrets([("password".to_string(), "hunter2".to_string())].into());
        let access = DavAccess::of(&conn, &secrets)
            .expect("access")
            .expect("webdav");
        assert_eq!(access.authorization.as_deref(), Some("Basic dTpodW50ZXIy"));
        assert!(!format!("{access:?}").contains("dTpodW50ZXIy"));
        conn.provider = "s3".into();
        assert!(DavAccess::of(&conn, &secrets).expect("access").is_none());
    }
}
