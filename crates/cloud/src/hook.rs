//! Provider code that sits in a connection's HTTP transport and sees every request OpenDAL
//! makes: Azure's uncommitted blocks and access tiers ([`crate::azure`]), GCS's resumable
//! sessions ([`crate::gcs_session`]). A [`Hook`] may answer a request itself, change it before
//! it is sent, and hear the answer's status and headers; the transport ([`crate::transport`])
//! calls it and still does the sending, counting and rate limiting.
//!
//! Why here and not in a writer of our own: OpenDAL's writers start a new upload for every
//! write and cannot take an old one up; the transport is the one place that sees their
//! requests without copying their retries, checksums and conditions (the same choice as the
//! S3 path in [`crate::multipart`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use opendal::{Buffer, HttpBody};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What to do once the service answered a request the hook let through.
pub(crate) type OnAnswer = Box<dyn FnOnce(StatusCode, &HeaderMap) + Send>;

/// The hook's decision about one request.
pub(crate) enum Step {
    /// Answered here; nothing is sent.
    Answered(Response<HttpBody>),
    /// Send this request (the one given, or a changed one); `OnAnswer` hears the answer.
    Send(Request<Buffer>, Option<OnAnswer>),
}

#[async_trait::async_trait]
pub(crate) trait Hook: Send + Sync {
    /// Looks at `req` before it is sent (`client` makes the hook's own requests).
    async fn before(&self, client: &reqwest::Client, req: Request<Buffer>) -> Step;

    /// A read the service refused with a client error: the answer body to hand OpenDAL (the
    /// same, or one that says what was done about it).
    async fn refused_read(
        &self,
        _client: &reqwest::Client,
        _uri: &Uri,
        _status: StatusCode,
        _headers: &HeaderMap,
        body: Bytes,
    ) -> Bytes {
        body
    }
}

/// A hook's state kept in a file of the task, written whole and renamed into place after each
/// change, so a killed run leaves the old state or the new one, never half of one.
#[derive(Debug)]
pub(crate) struct StateFile<T> {
    file: PathBuf,
    state: Mutex<T>,
}

impl<T: Serialize + DeserializeOwned + Default> StateFile<T> {
    /// The state in `file` (a missing or unreadable file is an empty state: at worst an upload
    /// starts again from its beginning).
    pub(crate) fn load(file: &Path) -> StateFile<T> {
        let state = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StateFile {
            file: file.to_path_buf(),
            state: Mutex::new(state),
        }
    }

    /// Runs `f` on the state; stores it when `f` says it changed it.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut T) -> (R, bool)) -> R {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (out, changed) = f(&mut state);
        if changed {
            self.store(&state);
        }
        out
    }

    /// A failure only costs resuming.
    fn store(&self, state: &T) {
        let Ok(json) = serde_json::to_vec_pretty(state) else {
            return;
        };
        if let Some(dir) = self.file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let temp = self.file.with_extension("tmp");
        if write_private(&temp, &json).is_ok() {
            let _ = std::fs::rename(&temp, &self.file);
        }
    }
}

/// Writes `data` to a new `file` only its owner may read: a GCS session URI lets its holder
/// upload into the session.
fn write_private(file: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file)?.write_all(data)
}

/// An answer made here: `status`, `headers`, empty body.
pub(crate) fn answer(status: StatusCode, headers: &[(&'static str, String)]) -> Response<HttpBody> {
    let mut r = Response::new(crate::multipart::body_of(Bytes::new()));
    *r.status_mut() = status;
    for (name, value) in headers {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            r.headers_mut().insert(*name, v);
        }
    }
    r
}

/// The query pairs of `uri`, decoded.
pub(crate) fn query_pairs(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (
                crate::multipart::percent_decode(k),
                crate::multipart::percent_decode(v),
            ),
            None => (crate::multipart::percent_decode(p), String::new()),
        })
        .collect()
}

/// `scheme://host/path` of `uri`, without its query (which may hold a SAS token).
pub(crate) fn without_query(uri: &Uri) -> String {
    crate::multipart::object_key(uri, uri.path())
}

/// BLAKE3 of `body`, hex: what identifies a part's content in the state files.
pub(crate) fn content_id(body: &[u8]) -> String {
    blake3::hash(body).to_hex().to_string()
}

/// Records older than this are dropped: Azure collects uncommitted blocks and GCS forgets
/// resumable sessions after a week.
pub(crate) const KEPT_SECS: i64 = crate::multipart::STALE_SECS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_is_whole_after_a_change_and_only_its_owner_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("state").join("uploads.json");
        let state: StateFile<BTreeMap<String, String>> = StateFile::load(&file);
        state.update(|m| (m.insert("k".into(), "v".into()), true));
        let again: StateFile<BTreeMap<String, String>> = StateFile::load(&file);
        assert_eq!(
            again.update(|m| (m.get("k").cloned(), false)).as_deref(),
            Some("v")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
