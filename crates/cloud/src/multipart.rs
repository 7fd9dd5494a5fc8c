//! S3 multipart uploads that resume after an interruption (a killed run, a lost network).
//!
//! OpenDAL's writer starts a new multipart upload for every write and has no way to take up
//! an old one, so the resuming happens below it, in the connection's HTTP transport, which
//! sees each request OpenDAL makes:
//! - CreateMultipartUpload's answer (the upload id) is recorded per object in a small state
//!   file of the task (written whole and renamed into place, so a kill never leaves half of
//!   it), and forgotten when the upload is completed or aborted.
//! - When the same object is written again and an upload of it is recorded, the transport asks
//!   the service which parts it holds (ListParts) and answers CreateMultipartUpload itself with
//!   the recorded id. An UploadPart whose content has the MD5 the service holds for that part
//!   number (S3's part ETag) is answered with that ETag instead of being sent again; any other
//!   part is sent and replaces what was there, so a file that changed meanwhile is still
//!   written right. CompleteMultipartUpload names the parts and their ETags as OpenDAL has
//!   them, so the object is exactly what was written.
//! - A recorded upload the service no longer knows is forgotten and a new one started.
//!   Uploads recorded more than [`STALE_SECS`] ago (a file that was never written again) are
//!   aborted at the first request of a later run, so no stale upload is billed for long.
//!
//! Only S3 with static keys: the two requests OpenDAL has no API for are signed here.

mod sigv4;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use http::{Method, Response, Uri};
use md5::{Digest, Md5};
use opendal::{Buffer, HttpBody};
use serde::{Deserialize, Serialize};

pub(crate) use sigv4::SigV4;

/// Recorded uploads older than this are aborted (a week, as S3's usual lifecycle rule).
pub const STALE_SECS: i64 = 7 * 24 * 3600;

/// One S3 request as far as multipart uploads go.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// CreateMultipartUpload of the object at this URL path.
    Create {
        object: String,
    },
    UploadPart {
        upload: String,
        number: u32,
    },
    /// CompleteMultipartUpload or AbortMultipartUpload.
    Finish {
        upload: String,
    },
    Other,
}

impl Call {
    pub(crate) fn of(method: &Method, uri: &Uri) -> Call {
        let pairs: Vec<(String, String)> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (percent_decode(k), percent_decode(v)),
                None => (percent_decode(p), String::new()),
            })
            .collect();
        let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let upload = get("uploadId");
        if *method == Method::POST && get("uploads").is_some() {
            return Call::Create {
                object: uri.path().to_string(),
            };
        }
        match (
            method,
            upload,
            get("partNumber").and_then(|n| n.parse().ok()),
        ) {
            (&Method::PUT, Some(upload), Some(number)) => Call::UploadPart { upload, number },
            (&Method::POST | &Method::DELETE, Some(upload), None) => Call::Finish { upload },
            _ => Call::Other,
        }
    }
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An upload started and not finished yet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Started {
    upload_id: String,
    /// Unix seconds.
    started: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// By object URL (scheme, host and path), so one file serves any bucket.
    uploads: BTreeMap<String, Started>,
    /// Uploads a newer one of the same object replaced (the old one could not be taken up):
    /// no write will finish them, so the next run aborts them whatever their age.
    #[serde(default)]
    replaced: Vec<(String, Started)>,
}

/// The resuming state of one connection as a task uses it.
#[derive(Debug)]
pub struct Resume {
    file: PathBuf,
    signer: SigV4,
    saved: Mutex<Saved>,
    /// Parts the service holds of the uploads taken up again in this run: upload id, then
    /// part number and ETag.
    held: Mutex<HashMap<String, HashMap<u32, String>>>,
    swept: AtomicBool,
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `scheme://host` and path of `uri`, the key of a recorded upload.
pub(crate) fn object_key(uri: &Uri, path: &str) -> String {
    let scheme = uri.scheme_str().unwrap_or("https");
    let host = uri.authority().map_or("", |a| a.as_str());
    format!("{scheme}://{host}{path}")
}

impl Resume {
    /// The state kept in `file` (read now; a missing or unreadable file is an empty state:
    /// at worst an upload starts again from its first part).
    pub(crate) fn load(file: &Path, signer: SigV4) -> Resume {
        let saved = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Resume {
            file: file.to_path_buf(),
            signer,
            saved: Mutex::new(saved),
            held: Mutex::new(HashMap::new()),
            swept: AtomicBool::new(false),
        }
    }

    fn saved(&self) -> std::sync::MutexGuard<'_, Saved> {
        self.saved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the state whole, then renames it into place. A failure only costs resuming.
    fn store(&self, saved: &Saved) {
        let Ok(json) = serde_json::to_vec_pretty(saved) else {
            return;
        };
        if let Some(dir) = self.file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let temp = self.file.with_extension("tmp");
        if std::fs::write(&temp, json).is_ok() {
            let _ = std::fs::rename(&temp, &self.file);
        }
    }

    /// Answers `call` without the network where it can: `Some` is the answer.
    pub(crate) async fn answer(
        &self,
        client: &reqwest::Client,
        call: &Call,
        uri: &Uri,
        body: &Buffer,
    ) -> Option<Response<HttpBody>> {
        if !self.swept.swap(true, Ordering::Relaxed) {
            self.sweep(client).await;
        }
        match call {
            Call::Create { object } => self.take_up(client, uri, object).await,
            Call::UploadPart { upload, number } => {
                let held = self
                    .held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(upload)
                    .and_then(|parts| parts.get(number).cloned())?;
                let md5 = Md5::digest(body.to_bytes());
                let ours: String = md5.iter().map(|b| format!("{b:02x}")).collect();
                (held.trim_matches('"').eq_ignore_ascii_case(&ours)).then(|| {
                    let mut r = respond(Bytes::new());
                    if let Ok(v) = http::HeaderValue::from_str(&held) {
                        r.headers_mut().insert(http::header::ETAG, v);
                    }
                    r
                })
            }
            Call::Finish { .. } | Call::Other => None,
        }
    }

    /// Notes what the service answered to `call` (`body`: the answer to a create).
    pub(crate) fn note(&self, call: &Call, uri: &Uri, status: http::StatusCode, body: &[u8]) {
        match call {
            Call::Create { object } if status.is_success() => {
                let Some(id) = upload_id_of(body) else {
                    return;
                };
                let key = object_key(uri, object);
                let mut saved = self.saved();
                let old = saved.uploads.insert(
                    key.clone(),
                    Started {
                        upload_id: id.clone(),
                        started: now_secs(),
                    },
                );
                if let Some(old) = old.filter(|o| o.upload_id != id) {
                    saved.replaced.push((key, old));
                }
                self.store(&saved);
            }
            Call::Finish { upload }
                if status.is_success() || status == http::StatusCode::NOT_FOUND =>
            {
                self.forget(upload);
            }
            _ => {}
        }
    }

    fn forget(&self, upload: &str) {
        let mut saved = self.saved();
        let before = (saved.uploads.len(), saved.replaced.len());
        saved.uploads.retain(|_, s| s.upload_id != upload);
        saved.replaced.retain(|(_, s)| s.upload_id != upload);
        if (saved.uploads.len(), saved.replaced.len()) != before {
            self.store(&saved);
        }
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(upload);
    }

    /// A recorded upload of `object` the service still has: its parts are noted and its id
    /// answered as if it had just been created.
    async fn take_up(
        &self,
        client: &reqwest::Client,
        uri: &Uri,
        object: &str,
    ) -> Option<Response<HttpBody>> {
        let key = object_key(uri, object);
        let started = self.saved().uploads.get(&key).cloned()?;
        match self.list_parts(client, &key, &started.upload_id).await {
            Ok(Some(parts)) => {
                self.held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(started.upload_id.clone(), parts);
                let xml = format!(
                    "<InitiateMultipartUploadResult><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
                    xml_escape(&started.upload_id)
                );
                Some(respond(Bytes::from(xml)))
            }
            // Gone on the service: a new upload starts.
            Ok(None) => {
                self.forget(&started.upload_id);
                None
            }
            // Not known now: a new upload starts, the old one is aborted when stale.
            Err(_) => None,
        }
    }

    /// The parts the service holds of `upload` (`None`: it does not know the upload).
    async fn list_parts(
        &self,
        client: &reqwest::Client,
        object: &str,
        upload: &str,
    ) -> Result<Option<HashMap<u32, String>>, String> {
        let mut parts = HashMap::new();
        let mut marker = String::from("0");
        loop {
            let query = sigv4::canonical_query(&[
                ("part-number-marker", marker.as_str()),
                ("uploadId", upload),
            ]);
            let (status, body) = self.signed(client, Method::GET, object, &query).await?;
            if status == http::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(format!("ListParts answered {status}"));
            }
            let text = String::from_utf8_lossy(&body);
            for part in elements(&text, "Part") {
                let number = element(part, "PartNumber").and_then(|n| n.parse().ok());
                if let (Some(n), Some(etag)) = (number, element(part, "ETag")) {
                    parts.insert(n, xml_unescape(etag));
                }
            }
            match (
                element(&text, "IsTruncated"),
                element(&text, "NextPartNumberMarker"),
            ) {
                (Some("true"), Some(next)) if next != marker => marker = next.to_string(),
                _ => return Ok(Some(parts)),
            }
        }
    }

    /// Aborts the recorded uploads started more than [`STALE_SECS`] ago, and those a newer
    /// upload of the same object replaced.
    async fn sweep(&self, client: &reqwest::Client) {
        let now = now_secs();
        let stale: Vec<(String, Started)> = {
            let saved = self.saved();
            saved
                .uploads
                .iter()
                .filter(|(_, s)| now - s.started > STALE_SECS)
                .map(|(k, s)| (k.clone(), s.clone()))
                .chain(saved.replaced.iter().cloned())
                .collect()
        };
        for (object, s) in stale {
            let query = sigv4::canonical_query(&[("uploadId", s.upload_id.as_str())]);
            if let Ok((status, _)) = self.signed(client, Method::DELETE, &object, &query).await {
                if status.is_success() || status == http::StatusCode::NOT_FOUND {
                    self.forget(&s.upload_id);
                }
            }
        }
    }

    /// A body-less signed request on `object` (a key of the state: scheme, host, path).
    async fn signed(
        &self,
        client: &reqwest::Client,
        method: Method,
        object: &str,
        query: &str,
    ) -> Result<(http::StatusCode, Bytes), String> {
        let (status, _, body) =
            signed_request(client, &self.signer, method, object, query, Bytes::new()).await?;
        Ok((status, body))
    }

    pub(crate) fn signer(&self) -> &SigV4 {
        &self.signer
    }
}

/// A request on `object` (scheme, host and encoded path) with the canonical `query`, signed
/// with `signer`: status, headers and body of the answer.
pub(crate) async fn signed_request(
    client: &reqwest::Client,
    signer: &SigV4,
    method: Method,
    object: &str,
    query: &str,
    body: Bytes,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), String> {
    let uri: Uri = object.parse().map_err(|e| format!("{object}: {e}"))?;
    let host = uri.authority().map_or("", |a| a.as_str()).to_string();
    let headers = signer.headers(method.as_str(), &host, uri.path(), query, &body, now_secs());
    let url = if query.is_empty() {
        object.to_string()
    } else {
        format!("{object}?{query}")
    };
    let mut req = client.request(method, url);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    if !body.is_empty() {
        req = req.body(body);
    }
    let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| e.without_url().to_string())?;
    Ok((status, headers, body))
}

/// A 200 answer with `body`.
fn respond(body: Bytes) -> Response<HttpBody> {
    let mut r = Response::new(body_of(body));
    *r.status_mut() = http::StatusCode::OK;
    r
}

/// `body` as a response body.
pub(crate) fn body_of(body: Bytes) -> HttpBody {
    let len = body.len() as u64;
    let stream = futures_util::stream::once(async move { Ok(Buffer::from(body)) });
    let stream: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = opendal::Result<Buffer>> + Send + Sync>,
    > = Box::pin(stream);
    HttpBody::new(stream, Some(len))
}

/// The text of the first `<name>` element in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    elements(xml, name).next()
}

/// The texts of the `<name>` elements in `xml`, in order (flat S3 answers need no more).
fn elements<'a>(xml: &'a str, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let len = rest[start..].find(&close)?;
        let text = &rest[start..start + len];
        rest = &rest[start + len + close.len()..];
        Some(text)
    })
}

fn upload_id_of(body: &[u8]) -> Option<String> {
    element(&String::from_utf8_lossy(body), "UploadId").map(xml_unescape)
}

fn xml_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().expect("test uri")
    }

    #[test]
    fn calls_are_told_apart_by_method_and_query() {
        let u = uri("http://h:1/b/a%20b?uploads");
        assert_eq!(
            Call::of(&Method::POST, &u),
            Call::Create {
                object: "/b/a%20b".into()
            }
        );
        let u = uri("http://h:1/b/k?partNumber=3&uploadId=x%2By%3D");
        assert_eq!(
            Call::of(&Method::PUT, &u),
            Call::UploadPart {
                upload: "x+y=".into(),
                number: 3
            }
        );
        let u = uri("http://h:1/b/k?uploadId=x");
        assert_eq!(
            Call::of(&Method::POST, &u),
            Call::Finish { upload: "x".into() }
        );
        assert_eq!(
            Call::of(&Method::DELETE, &u),
            Call::Finish { upload: "x".into() }
        );
        assert_eq!(Call::of(&Method::PUT, &uri("http://h:1/b/k")), Call::Other);
        assert_eq!(Call::of(&Method::GET, &u), Call::Other);
    }

    #[test]
    fn list_parts_answers_are_read() {
        let xml = r#"<ListPartsResult><IsTruncated>false</IsTruncated>
            <Part><PartNumber>1</PartNumber><ETag>&quot;aa&quot;</ETag></Part>
            <Part><PartNumber>2</PartNumber><ETag>"bb"</ETag></Part></ListPartsResult>"#;
        let parts: Vec<(Option<&str>, Option<String>)> = elements(xml, "Part")
            .map(|p| {
                (
                    element(p, "PartNumber"),
                    element(p, "ETag").map(xml_unescape),
                )
            })
            .collect();
        assert_eq!(
            parts,
            vec![
                (Some("1"), Some("\"aa\"".into())),
                (Some("2"), Some("\"bb\"".into()))
            ]
        );
        assert_eq!(
            upload_id_of(b"<R><Bucket>b</Bucket><UploadId>a&amp;b</UploadId></R>").as_deref(),
            Some("a&b")
        );
    }

    #[test]
    fn the_state_survives_a_reload_and_forgets_finished_uploads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("uploads.json");
        let signer = SigV4 {
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            region: "r".into(),
        };
        let r = Resume::load(&file, signer.clone());
        let create = Call::Create {
            object: "/b/k".into(),
        };
        let u = uri("http://h:1/b/k?uploads");
        r.note(
            &create,
            &u,
            http::StatusCode::OK,
            b"<R><UploadId>id-1</UploadId></R>",
        );
        let again = Resume::load(&file, signer.clone());
        assert_eq!(
            again
                .saved()
                .uploads
                .get("http://h:1/b/k")
                .map(|s| s.upload_id.as_str()),
            Some("id-1")
        );
        again.note(
            &Call::Finish {
                upload: "id-1".into(),
            },
            &u,
            http::StatusCode::OK,
            b"",
        );
        assert!(Resume::load(&file, signer.clone())
            .saved()
            .uploads
            .is_empty());
    }

    #[test]
    fn an_upload_replaced_by_a_newer_one_is_kept_for_aborting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("uploads.json");
        let signer = SigV4 {
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            region: "r".into(),
        };
        let r = Resume::load(&file, signer.clone());
        let create = Call::Create {
            object: "/b/k".into(),
        };
        let u = uri("http://h:1/b/k?uploads");
        r.note(
            &create,
            &u,
            http::StatusCode::OK,
            b"<UploadId>one</UploadId>",
        );
        r.note(
            &create,
            &u,
            http::StatusCode::OK,
            b"<UploadId>two</UploadId>",
        );
        let again = Resume::load(&file, signer);
        let saved = again.saved();
        assert_eq!(saved.uploads["http://h:1/b/k"].upload_id, "two");
        let replaced: Vec<&str> = saved
            .replaced
            .iter()
            .map(|(_, s)| s.upload_id.as_str())
            .collect();
        assert_eq!(replaced, vec!["one"]);
    }
}
