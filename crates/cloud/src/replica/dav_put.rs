//! A file's upload to WebDAV as one streamed PUT of its temporary.
//!
//! WebDAV takes a file in one request, and OpenDAL's writer for it gathers the whole file in
//! memory before sending (four transfers of large files held gigabytes, and files over a size
//! were refused). Here the content goes out as it is read, with its exact `Content-Length`,
//! through the connection's transport (its limits, counters and, in tests, faults; see
//! [`crate::transport::UploadBody`]).
//!
//! The content is checked against the length and hash it was announced with before its last
//! piece leaves: a file that changed while it was read never completes the request, so the
//! server cannot keep it as a whole file. A failed PUT is not retried here (its content was
//! read once); the engine's pass retries the file.

use bytes::Bytes;
use cairn_engine::replica::{Content, NewEntry};
use cairn_engine::{Error, Result};
use cairn_model::ContentHash;
use futures_util::StreamExt;
use http::{Request, StatusCode};

use super::dav::{url, DavAccess};
use super::CloudReplica;
use crate::transport::UploadBody;

/// Pieces in flight between the reader and the request.
const PIECES_AHEAD: usize = 4;

/// PUTs `content` at `temp`; the answer's metadata (its ETag) and the content's hash.
pub(super) async fn put_streamed(
    r: &CloudReplica,
    dav: &DavAccess,
    temp: &str,
    content: Content<'_>,
    entry: &NewEntry,
) -> Result<(opendal::Metadata, ContentHash)> {
    let (tx, body) = UploadBody::channel(PIECES_AHEAD);
    let mut req = Request::builder()
        .method("PUT")
        .uri(url(r, dav, temp))
        .header(http::header::CONTENT_LENGTH, entry.size)
        .header(http::header::CONTENT_TYPE, "application/octet-stream");
    if let Some(auth) = &dav.authorization {
        req = req.header(http::header::AUTHORIZATION, auth);
    }
    let mut req = req
        .body(opendal::Buffer::new())
        .map_err(|e| Error::remote(format!("{}/{temp}: PUT: {e}", r.describe)))?;
    req.extensions_mut().insert(body);
    let transport = r.op.context().http_transport();
    let (pumped, sent) = tokio::join!(pump(r, temp, content, entry, tx), transport.send(req));
    // The request's own failure says more than the pump's "nobody took the piece".
    let resp = sent.map_err(|e| r.fail("writing", temp, e))?;
    let hash = pumped?;
    let status = resp.status();
    if !status.is_success() {
        return Err(refused(r, temp, status));
    }
    let mut meta = opendal::MetadataBuilder::unknown();
    meta.set_file(entry.size);
    if let Some(tag) = resp
        .headers()
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
    {
        meta.etag(tag);
    }
    Ok((meta.build(), hash))
}

/// Feeds `content` to the request, holding each piece back until the next one is read, so
/// the last goes out only once length and hash are checked.
async fn pump(
    r: &CloudReplica,
    temp: &str,
    mut content: Content<'_>,
    entry: &NewEntry,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<ContentHash> {
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    let mut held: Option<Bytes> = None;
    let refuse = |why: String| Error::Refused(format!("{}/{temp}: {why}; not written", r.describe));
    let abort = |tx: &tokio::sync::mpsc::Sender<_>, why: &str| {
        // Best effort: the request may already be gone.
        let _ = tx.try_send(Err(std::io::Error::other(why.to_string())));
    };
    while let Some(piece) = content.next().await {
        let piece = match piece {
            Ok(p) => p,
            Err(e) => {
                abort(&tx, "the content could not be read");
                return Err(e);
            }
        };
        total += piece.len() as u64;
        if total > entry.size {
            abort(&tx, "the file grew");
            return Err(refuse(format!(
                "the file changed while it was sent (over {} bytes)",
                entry.size
            )));
        }
        hasher.update(&piece);
        if let Some(prev) = held.replace(piece) {
            if tx.send(Ok(prev)).await.is_err() {
                return Err(gone(r, temp));
            }
        }
    }
    if total != entry.size {
        abort(&tx, "the file shrank");
        return Err(refuse(format!(
            "the file changed while it was sent ({total} bytes instead of {})",
            entry.size
        )));
    }
    let got = ContentHash::from_bytes(*hasher.finalize().as_bytes());
    if entry.hash.is_some_and(|h| h != got) {
        abort(&tx, "the content does not match its hash");
        return Err(refuse(
            "the content sent does not match its hash".to_string(),
        ));
    }
    if let Some(last) = held {
        if tx.send(Ok(last)).await.is_err() {
            return Err(gone(r, temp));
        }
    }
    Ok(got)
}

/// The request ended before it took all the content (its own error is reported instead).
fn gone(r: &CloudReplica, temp: &str) -> Error {
    Error::Remote {
        message: format!("{}/{temp}: PUT: the request ended early", r.describe),
        temporary: true,
    }
}

/// A PUT the server answered with `status`: a full server is final (the next pass tries
/// again), a busy one temporary, anything else refused.
fn refused(r: &CloudReplica, temp: &str, status: StatusCode) -> Error {
    let full =
        status == StatusCode::INSUFFICIENT_STORAGE || status == StatusCode::PAYLOAD_TOO_LARGE;
    let message = if full {
        format!(
            "{}/{temp}: writing: the destination is full, over its quota, or refuses a file \
             this large (answered {status}); nothing was placed, the next pass tries again",
            r.describe
        )
    } else {
        format!("{}/{temp}: PUT answered {status}", r.describe)
    };
    Error::Remote {
        message,
        temporary: !full
            && (status.is_server_error()
                || status == StatusCode::LOCKED
                || status == StatusCode::TOO_MANY_REQUESTS),
    }
}
