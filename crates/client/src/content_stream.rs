//! A large file's content as one streamed answer (`GET /content`), handed on piece by piece as
//! it arrives.
//!
//! A request per chunk costs the server a login check, a folder check and a lookup each, and
//! the client a body gathered whole and hashed before it is handed on; one answer for the file
//! costs those once, and its pieces (HTTP/2 frames) go to the writer as they arrive. The
//! writer checks the whole against the version's content hash, so a forged or reordered piece
//! is caught there; here every answer is held to the length the version announces, so a
//! server that sends more cannot fill the disk.
//!
//! An answer cut off part way (a dropped connection, or a chunk the server finds lost after it
//! began to answer) is asked again from the first missing byte (`Range`): a version never
//! changes, so the rest is the same bytes. The new answer says why if it fails at once (a lost
//! chunk is named there), and [`RESUMES`] attempts in a row without a byte give up.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_engine::Result as EngineResult;
use cairn_model::{RelPath, Seq};
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::{describe_reqwest, remote_err, Connection, Error};

/// Answers asked again in a row, each after one that brought nothing, before giving up.
const RESUMES: u32 = 3;

/// One version's content on the server, and what has arrived of it.
struct Reading {
    conn: Arc<Connection>,
    url: String,
    path: RelPath,
    seq: Seq,
    /// Bytes the version has, and bytes handed on so far.
    size: u64,
    got: u64,
    resp: Option<reqwest::Response>,
    /// Resumes left before giving up; refilled by every piece that arrives.
    resumes: u32,
}

/// The content of version `seq` of `path` (`size` bytes) from the folder's `url`: the first
/// answer is awaited here, so a refusal is an error now rather than a failed stream.
pub(crate) async fn open(
    conn: Arc<Connection>,
    url: String,
    path: &RelPath,
    seq: Seq,
    size: u64,
) -> EngineResult<BoxStream<'static, EngineResult<Bytes>>> {
    let mut r = Reading {
        conn,
        url,
        path: path.clone(),
        seq,
        size,
        got: 0,
        resp: None,
        resumes: RESUMES,
    };
    r.resp = Some(r.ask().await?);
    Ok(stream::try_unfold(r, |mut r| async move {
        match r.next_piece().await? {
            Some(piece) => Ok(Some((piece, r))),
            None => Ok(None),
        }
    })
    .boxed())
}

/// `GET /content` for version `seq` of `path` from byte `from` on (a `Range` past 0), once its
/// status says it is an answer.
pub(crate) async fn request(
    conn: &Connection,
    url: &str,
    path: &RelPath,
    seq: Seq,
    from: u64,
) -> EngineResult<reqwest::Response> {
    let q = [
        ("path", path.as_str().to_string()),
        ("seq", seq.0.to_string()),
    ];
    let resp = conn
        .send(url, Duration::ZERO, |c| {
            let req = c.get(url).query(&q);
            if from == 0 {
                req
            } else {
                req.header(reqwest::header::RANGE, format!("bytes={from}-"))
            }
        })
        .await
        .map_err(remote_err)?;
    if !resp.status().is_success() {
        return Err(conn.content_refused(url, resp, Some(path)).await);
    }
    Ok(resp)
}

impl Reading {
    /// Asks for the content from byte `got` on, and checks that the answer is that.
    async fn ask(&self) -> EngineResult<reqwest::Response> {
        let from = self.got;
        let resp = request(&self.conn, &self.url, &self.path, self.seq, from).await?;
        let status = resp.status();
        let want = self.size - from;
        let partial = status == reqwest::StatusCode::PARTIAL_CONTENT;
        let range_ok = from == 0 && !partial
            || partial
                && resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v == format!("bytes {from}-{}/{}", self.size - 1, self.size));
        if !range_ok || resp.content_length() != Some(want) {
            let announced = resp
                .content_length()
                .map_or("no length".to_string(), |n| format!("{n} bytes announced"));
            return Err(self.unusable(format!(
                "asked for {} from byte {from} ({want} bytes), the answer is something else \
                 (HTTP {}, {announced})",
                self.path,
                status.as_u16(),
            )));
        }
        Ok(resp)
    }

    /// The next piece, asking again from the first missing byte when an answer breaks off;
    /// `None` once all `size` bytes arrived.
    async fn next_piece(&mut self) -> EngineResult<Option<Bytes>> {
        loop {
            let Some(resp) = self.resp.as_mut() else {
                return Ok(None);
            };
            let idle = self.conn.opts.timeout;
            let failure = match tokio::time::timeout(idle, resp.chunk()).await {
                Ok(Ok(Some(piece))) => return self.take(piece).await.map(Some),
                Ok(Ok(None)) if self.got == self.size => {
                    self.resp = None;
                    return Ok(None);
                }
                Ok(Ok(None)) => self.unusable(format!(
                    "the content of {} ended after {} of {} bytes",
                    self.path, self.got, self.size
                )),
                Ok(Err(e)) => remote_err(describe_reqwest(&self.url, &e)),
                Err(_) => remote_err(Error::Timeout {
                    url: self.url.clone(),
                    secs: idle.as_secs(),
                }),
            };
            self.resp = None;
            if self.resumes == 0 {
                return Err(failure);
            }
            self.resumes -= 1;
            self.resp = Some(self.ask().await?);
        }
    }

    /// Counts `piece` in, refusing bytes past the version's size, and paces it.
    async fn take(&mut self, piece: Bytes) -> EngineResult<Bytes> {
        self.got += piece.len() as u64;
        if self.got > self.size {
            self.resp = None;
            return Err(remote_err(Error::TooLarge {
                url: self.url.clone(),
                limit: self.size,
            }));
        }
        if !piece.is_empty() {
            self.resumes = RESUMES;
        }
        self.conn.pace_down(piece.len() as u64).await;
        Ok(piece)
    }

    fn unusable(&self, detail: String) -> cairn_engine::Error {
        remote_err(Error::Answer {
            url: self.url.clone(),
            detail,
        })
    }
}
