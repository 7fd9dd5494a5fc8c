//! GCS resumable uploads that go on after an interruption (a killed run, a lost network).
//!
//! OpenDAL writes a new GCS object (`if_not_exists`, which is how a task writes a file the
//! remote does not have) through a resumable session: a POST that answers with the session's
//! URI, then PUTs of 8 MiB chunks with `Content-Range`, the last one naming the total. It
//! starts a new session for every write; the hook in the connection's transport takes an old
//! one up:
//! - the session URI, what identifies the write (the POST's query and body: object name,
//!   precondition, content type, and the file's mtime and mode as metadata) and each chunk
//!   (range and BLAKE3 of its bytes, recorded before it is sent) go into the task's state file
//!   once a first chunk is sent; a finished or cancelled session is forgotten;
//! - when the same object is written again with the same identity, the hook asks the service
//!   how much of the recorded session it holds (a PUT with `Content-Range: bytes */*`) and
//!   answers the POST itself with the recorded URI; chunks the service holds whole are answered
//!   here (their bytes must have the recorded BLAKE3), a chunk it holds in part is sent from
//!   where the service stopped, and the rest goes out as usual;
//! - a write with another identity (the file changed: its mtime is part of it) cancels the
//!   recorded session and starts a new one, so an object is never made of two contents. A
//!   chunk whose bytes differ from the recorded ones although the identity matched (a file
//!   changed without a new mtime) fails the write and cancels the session; the next attempt
//!   starts afresh.
//!
//! Edits of an existing object have no precondition OpenDAL sends to GCS, so they go through
//! the XML multipart API instead, which is not resumed here.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use opendal::Buffer;
use serde::{Deserialize, Serialize};

use crate::hook::{
    content_id, query_pairs, without_query, Hook, OnAnswer, StateFile, Step, KEPT_SECS,
};
use crate::multipart::now_secs;

/// One chunk sent into a session: bytes `start..end` of the object.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Chunk {
    start: u64,
    end: u64,
    /// BLAKE3 of its bytes, hex.
    content: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session {
    uri: String,
    identity: String,
    /// Unix seconds.
    started: i64,
    chunks: Vec<Chunk>,
}

impl Session {
    /// How far from 0 the recorded chunks cover the object without a gap.
    fn covered(&self) -> u64 {
        let mut chunks: Vec<&Chunk> = self.chunks.iter().collect();
        chunks.sort_by_key(|c| c.start);
        let mut end = 0;
        for c in chunks {
            if c.start != end {
                break;
            }
            end = c.end;
        }
        end
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// By object (upload URL and object name).
    #[serde(default)]
    sessions: BTreeMap<String, Session>,
}

/// A session OpenDAL writes into in this run.
#[derive(Clone, Debug)]
struct Live {
    object: String,
    identity: String,
    /// Taken up from an earlier run: the bytes the service held then, and the chunks recorded.
    resumed: Option<(u64, Vec<Chunk>)>,
}

#[derive(Debug)]
pub(crate) struct GcsHook {
    file: Arc<StateFile<Saved>>,
    /// By session URI.
    live: Arc<Mutex<HashMap<String, Live>>>,
}

/// One request as far as resumable sessions go.
enum Call {
    Initiate {
        object: String,
        identity: String,
    },
    /// A chunk (`total`: the object's size, on the last one) or a status query (no range).
    Put {
        range: Option<(u64, u64)>,
        total: Option<u64>,
    },
    Cancel,
    Other,
}

impl GcsHook {
    pub(crate) fn load(file: &Path) -> GcsHook {
        let file = StateFile::load(file);
        // A week old: GCS has forgotten those sessions.
        file.update(|saved: &mut Saved| {
            let before = saved.sessions.len();
            saved
                .sessions
                .retain(|_, s| now_secs() - s.started <= KEPT_SECS);
            ((), saved.sessions.len() != before)
        });
        GcsHook {
            file: Arc::new(file),
            live: Arc::default(),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn call(&self, req: &Request<Buffer>) -> Call {
        let uri = req.uri();
        if req.method() == Method::POST
            && uri.path().contains("/upload/storage/v1/b/")
            && query_pairs(uri).get("uploadType").map(String::as_str) == Some("resumable")
        {
            let name = query_pairs(uri).get("name").cloned().unwrap_or_default();
            let mut what = uri.query().unwrap_or("").as_bytes().to_vec();
            what.push(b'\n');
            what.extend_from_slice(&req.body().to_bytes());
            return Call::Initiate {
                object: format!("{}?name={name}", without_query(uri)),
                identity: content_id(&what),
            };
        }
        if !self.live().contains_key(&uri.to_string()) {
            return Call::Other;
        }
        match *req.method() {
            Method::PUT => {
                let header = req
                    .headers()
                    .get(http::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let (range, total) = content_range(header);
                Call::Put { range, total }
            }
            Method::DELETE => Call::Cancel,
            _ => Call::Other,
        }
    }

    /// A POST that starts a session of `object`: answered with the recorded session when the
    /// service still holds a part of it we can vouch for.
    async fn initiate(
        &self,
        client: &reqwest::Client,
        req: Request<Buffer>,
        object: String,
        identity: String,
    ) -> Step {
        let recorded = self
            .file
            .update(|saved| (saved.sessions.get(&object).cloned(), false));
        if let Some(s) = recorded {
            let usable = s.identity == identity && now_secs() - s.started <= KEPT_SECS;
            let held = if usable {
                held_bytes(client, &s.uri).await
            } else {
                None
            };
            match held {
                Some(held) if held > 0 && held <= s.covered() => {
                    self.live().insert(
                        s.uri.clone(),
                        Live {
                            object,
                            identity,
                            resumed: Some((held, s.chunks.clone())),
                        },
                    );
                    return Step::Answered(crate::hook::answer(
                        StatusCode::OK,
                        &[("location", s.uri)],
                    ));
                }
                // Another content, too old, gone, or holding bytes we cannot vouch for.
                _ => {
                    cancel(client, &s.uri).await;
                    self.forget(&object);
                }
            }
        }
        let live = self.live.clone();
        Step::Send(
            req,
            Some(Box::new(move |status, headers| {
                let location = headers
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<Uri>().ok());
                if let (true, Some(uri)) = (status.is_success(), location) {
                    live.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(
                            uri.to_string(),
                            Live {
                                object,
                                identity,
                                resumed: None,
                            },
                        );
                }
            })),
        )
    }

    /// A chunk PUT into a live session.
    async fn chunk(
        &self,
        client: &reqwest::Client,
        req: Request<Buffer>,
        range: (u64, u64),
        total: Option<u64>,
    ) -> Step {
        let uri = req.uri().to_string();
        let Some(live) = self.live().get(&uri).cloned() else {
            return Step::Send(req, None);
        };
        let (start, end) = range;
        let body = req.body().to_bytes();
        if body.len() as u64 != end - start {
            return Step::Send(req, None);
        }
        let chunk = Chunk {
            start,
            end,
            content: content_id(&body),
        };
        if let Some((held, chunks)) = live.resumed.as_ref().filter(|(held, _)| start < *held) {
            if !chunks.contains(&chunk) {
                cancel(client, &uri).await;
                self.forget(&live.object);
                self.live().remove(&uri);
                return Step::Answered(changed_meanwhile());
            }
            if end <= *held {
                return Step::Answered(crate::hook::answer(
                    StatusCode::PERMANENT_REDIRECT,
                    &[("range", format!("bytes=0-{}", end - 1))],
                ));
            }
            // The service holds the first part of this chunk: the rest goes.
            let rest = body.slice(usize::try_from(held - start).unwrap_or(body.len())..);
            return Step::Send(
                tail(req, *held, end, total, rest),
                Some(self.heard(&live, &uri)),
            );
        }
        self.record(&live, &uri, chunk, total.is_none());
        Step::Send(req, Some(self.heard(&live, &uri)))
    }

    /// Records `chunk` before it is sent: in a session on disk, or starting one when more
    /// chunks follow (a file sent in one chunk has nothing to resume).
    fn record(&self, live: &Live, uri: &str, chunk: Chunk, more: bool) {
        self.file.update(|saved| {
            let on_disk = saved
                .sessions
                .get(&live.object)
                .is_some_and(|s| s.uri == uri);
            if !on_disk && !more {
                return ((), false);
            }
            let s = saved
                .sessions
                .entry(live.object.clone())
                .or_insert_with(|| Session {
                    uri: uri.to_string(),
                    identity: live.identity.clone(),
                    started: now_secs(),
                    chunks: Vec::new(),
                });
            if s.uri != uri {
                *s = Session {
                    uri: uri.to_string(),
                    identity: live.identity.clone(),
                    started: now_secs(),
                    chunks: Vec::new(),
                };
            }
            s.chunks.retain(|c| c.end <= chunk.start);
            s.chunks.push(chunk);
            ((), true)
        });
    }

    /// What to do with the answer to a chunk: a finished object ends the session.
    fn heard(&self, live: &Live, uri: &str) -> OnAnswer {
        let file = self.file.clone();
        let sessions = self.live.clone();
        let (object, uri) = (live.object.clone(), uri.to_string());
        Box::new(move |status, _| {
            if status == StatusCode::OK || status == StatusCode::CREATED {
                sessions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&uri);
                file.update(|saved| ((), saved.sessions.remove(&object).is_some()));
            }
        })
    }

    fn forget(&self, object: &str) {
        self.file
            .update(|saved| ((), saved.sessions.remove(object).is_some()));
    }
}

#[async_trait::async_trait]
impl Hook for GcsHook {
    async fn before(&self, client: &reqwest::Client, req: Request<Buffer>) -> Step {
        match self.call(&req) {
            Call::Initiate { object, identity } => {
                self.initiate(client, req, object, identity).await
            }
            Call::Put {
                range: Some(range),
                total,
            } => self.chunk(client, req, range, total).await,
            Call::Cancel => {
                let uri = req.uri().to_string();
                if let Some(live) = self.live().remove(&uri) {
                    self.forget(&live.object);
                }
                Step::Send(req, None)
            }
            Call::Put { range: None, .. } | Call::Other => Step::Send(req, None),
        }
    }
}

/// `req` carrying only `rest`, the bytes `from..end`.
fn tail(
    req: Request<Buffer>,
    from: u64,
    end: u64,
    total: Option<u64>,
    rest: Bytes,
) -> Request<Buffer> {
    let (mut parts, _) = req.into_parts();
    let size = total.map_or_else(|| "*".to_string(), |t| t.to_string());
    if let Ok(v) = http::HeaderValue::from_str(&format!("bytes {from}-{}/{size}", end - 1)) {
        parts.headers.insert(http::header::CONTENT_RANGE, v);
    }
    parts.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(rest.len()),
    );
    Request::from_parts(parts, Buffer::from(rest))
}

/// `Content-Range: bytes A-B/T` (or `/*`) as the range `A..B+1` and the total; `bytes */T`
/// has no range.
fn content_range(header: &str) -> (Option<(u64, u64)>, Option<u64>) {
    let Some(spec) = header.trim().strip_prefix("bytes ") else {
        return (None, None);
    };
    let (range, total) = spec.split_once('/').unwrap_or((spec, "*"));
    let total = total.parse().ok();
    let range = range
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b)
        .map(|(a, b)| (a, b + 1));
    (range, total)
}

/// How many bytes the service holds of the session at `uri` (`None`: it finished the object,
/// forgot the session, or could not be asked).
async fn held_bytes(client: &reqwest::Client, uri: &str) -> Option<u64> {
    let resp = client
        .put(uri)
        .header(http::header::CONTENT_RANGE, "bytes */*")
        .header(http::header::CONTENT_LENGTH, "0")
        .body(Bytes::new())
        .send()
        .await
        .ok()?;
    if resp.status() != StatusCode::PERMANENT_REDIRECT {
        return None;
    }
    let range = resp
        .headers()
        .get(http::header::RANGE)
        .and_then(|v| v.to_str().ok());
    match range {
        None => Some(0),
        Some(r) => r
            .trim()
            .strip_prefix("bytes=")
            .and_then(|r| r.split_once('-'))
            .and_then(|(_, end)| end.parse::<u64>().ok())
            .map(|end| end + 1),
    }
}

/// Cancels the session at `uri` (a failure leaves it to expire within a week).
async fn cancel(client: &reqwest::Client, uri: &str) {
    let _ = client
        .delete(uri)
        .header(http::header::CONTENT_LENGTH, "0")
        .send()
        .await;
}

/// The answer to a chunk whose bytes are not those of the session taken up.
fn changed_meanwhile() -> http::Response<opendal::HttpBody> {
    let body = serde_json::json!({"error": {"code": 400, "message":
        "the file changed since its interrupted upload (the bytes differ from those the \
         service holds); that upload was cancelled, and the next attempt starts afresh"}});
    let mut r = http::Response::new(crate::multipart::body_of(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_read_as_opendal_writes_them() {
        assert_eq!(content_range("bytes 0-9/*"), (Some((0, 10)), None));
        assert_eq!(content_range("bytes 10-19/20"), (Some((10, 20)), Some(20)));
        assert_eq!(content_range("bytes */20"), (None, Some(20)));
        assert_eq!(content_range("bytes */*"), (None, None));
        assert_eq!(content_range("junk"), (None, None));
    }

    #[test]
    fn a_chunk_held_in_part_is_sent_from_where_the_service_stopped() {
        let req = Request::put("http://h/s?upload_id=1")
            .header(http::header::CONTENT_RANGE, "bytes 8-15/16")
            .header(http::header::CONTENT_LENGTH, "8")
            .body(Buffer::from(Bytes::from_static(b"abcdefgh")))
            .expect("request");
        let out = tail(req, 11, 16, Some(16), Bytes::from_static(b"defgh"));
        assert_eq!(out.headers()[http::header::CONTENT_RANGE], "bytes 11-15/16");
        assert_eq!(out.headers()[http::header::CONTENT_LENGTH], "5");
        assert_eq!(out.body().to_bytes(), Bytes::from_static(b"defgh"));
    }

    #[test]
    fn only_chunks_without_a_gap_from_zero_are_vouched_for() {
        let c = |start, end| Chunk {
            start,
            end,
            content: String::new(),
        };
        let mut s = Session {
            uri: String::new(),
            identity: String::new(),
            started: 0,
            chunks: vec![c(8, 16), c(0, 8), c(24, 32)],
        };
        assert_eq!(s.covered(), 16);
        s.chunks.clear();
        assert_eq!(s.covered(), 0);
    }

    #[test]
    fn a_file_sent_in_one_chunk_is_not_recorded_and_a_longer_one_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("uploads.json");
        let hook = GcsHook::load(&file);
        let live = Live {
            object: "http://h/upload/storage/v1/b/b/o?name=k".into(),
            identity: "id".into(),
            resumed: None,
        };
        let chunk = |start, end| Chunk {
            start,
            end,
            content: "c".into(),
        };
        hook.record(&live, "http://h/s?upload_id=1", chunk(0, 5), false);
        assert!(!file.exists(), "one-chunk files leave no record");
        hook.record(&live, "http://h/s?upload_id=2", chunk(0, 8), true);
        hook.record(&live, "http://h/s?upload_id=2", chunk(8, 10), false);
        let again = GcsHook::load(&file);
        let s = again
            .file
            .update(|saved| (saved.sessions.get(&live.object).cloned(), false))
            .expect("recorded");
        assert_eq!(s.uri, "http://h/s?upload_id=2");
        assert_eq!(s.covered(), 10);
    }
}
