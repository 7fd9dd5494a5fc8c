//! A folder's commit stream, client side (see `cairn_protocol::commit_stream`): commits go as
//! frames on one open request while the server offers it, one commit in flight at a time.
//!
//! Anything else commits with an ordinary request: a server that does not offer the stream
//! or refuses to open one (too many open, HTTP/1), a commit whose frame is too large, a
//! commit while another is on the stream, and a stream that broke before the answer. A
//! commit that may have landed unseen is safe to send again: the server accepts a change
//! equal to the head as that head.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_protocol::commit_stream::{
    encode_commit, parse_answer, FrameSplitter, CONTENT_TYPE, MAX_ANSWER_FRAME, MAX_ANSWER_JSON,
    MAX_FRAME,
};
use cairn_protocol::{Change, CommitResponse};

use crate::{describe_reqwest, Connection, Error, Result};

/// How long a client waits before trying to open a stream again after the server refused one.
const REFUSED_WAIT: Duration = Duration::from_secs(60);
/// A stream unused this long is not used again (the server ends them after a minute idle).
const IDLE: Duration = Duration::from_secs(45);
/// Frames buffered toward the request body (one commit is in flight at a time).
const BODY_QUEUE: usize = 2;

/// A remote's commit stream: the open one, or when the server last refused one.
#[derive(Default)]
pub(crate) struct CommitStreams {
    open: Option<Open>,
    refused_until: Option<Instant>,
}

struct Open {
    url: String,
    body: tokio::sync::mpsc::Sender<Bytes>,
    resp: reqwest::Response,
    split: FrameSplitter,
    next_id: u64,
    used: Instant,
}

/// What became of a commit offered to the stream.
pub(crate) enum Sent {
    /// The server answered it (results, or a refusal as an ordinary commit would get one).
    Answered(Result<CommitResponse>),
    /// It was not committed on the stream: commit it with an ordinary request.
    Ordinary,
}

impl CommitStreams {
    /// Commits `changes` on the stream of `path` (the folder's `commit-stream` endpoint).
    pub(crate) async fn commit(
        &mut self,
        conn: &Connection,
        path: &str,
        changes: &[Change],
    ) -> Sent {
        if self.refused_until.is_some_and(|t| Instant::now() < t) {
            return Sent::Ordinary;
        }
        let id = self.open.as_ref().map_or(1, |o| o.next_id);
        let frame = encode_commit(id, changes);
        if frame.len() > MAX_FRAME as usize + 4 {
            return Sent::Ordinary;
        }
        if self.open.as_ref().is_some_and(|o| o.used.elapsed() >= IDLE) {
            self.open = None;
        }
        let fresh = self.open.is_none();
        let frame = Bytes::from(frame);
        if fresh {
            match open(conn, path, frame.clone()).await {
                Ok(Some(o)) => self.open = Some(o),
                Ok(None) => {
                    self.refused_until = Some(Instant::now() + REFUSED_WAIT);
                    return Sent::Ordinary;
                }
                Err(_) => return Sent::Ordinary,
            }
        }
        let Some(o) = self.open.as_mut() else {
            return Sent::Ordinary;
        };
        if !fresh && o.body.send(frame).await.is_err() {
            self.open = None;
            return Sent::Ordinary;
        }
        o.next_id = id + 1;
        o.used = Instant::now();
        let wait = conn.opts.timeout + crate::sending_time(changes.len() * 1024);
        match o.answer(id, wait).await {
            // The token no longer holds: an ordinary request logs in again.
            Ok(Err((401, _))) => {
                self.open = None;
                Sent::Ordinary
            }
            Ok(outcome) => {
                let url = o.url.clone();
                Sent::Answered(outcome.map_err(|(status, message)| Error::Status {
                    url,
                    status,
                    message,
                }))
            }
            Err(_) => {
                self.open = None;
                Sent::Ordinary
            }
        }
    }
}

/// Opens a stream whose body starts with `first`: `None` when the server refused one (no such
/// endpoint, too many open, not over HTTP/2), an error when the request failed.
async fn open(conn: &Connection, path: &str, first: Bytes) -> Result<Option<Open>> {
    let url = conn.url_of(path);
    let sender = std::sync::Mutex::new(None);
    let resp = conn
        .send(&url, Duration::ZERO, |c| {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(BODY_QUEUE);
            // Room for it: the channel is new.
            let _ = tx.try_send(first.clone());
            *sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
            let body = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
            });
            c.post(&url)
                .header("content-type", CONTENT_TYPE)
                .body(reqwest::Body::wrap_stream(body))
        })
        .await?;
    let streamed = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == CONTENT_TYPE.as_bytes());
    if !resp.status().is_success() || !streamed {
        return Ok(None);
    }
    let body = sender.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(body) = body else {
        return Ok(None);
    };
    Ok(Some(Open {
        url,
        body,
        resp,
        split: FrameSplitter::new(MAX_ANSWER_FRAME, MAX_ANSWER_JSON),
        next_id: 1,
        used: Instant::now(),
    }))
}

impl Open {
    /// The answer to commit `id`: its results, or the status and message it was refused
    /// with. An error when the stream broke, ended or sent something else first.
    async fn answer(
        &mut self,
        id: u64,
        idle: Duration,
    ) -> Result<std::result::Result<CommitResponse, (u16, String)>> {
        let bad = |url: &str, detail: String| Error::Answer {
            url: url.to_string(),
            detail,
        };
        loop {
            let payload = self
                .split
                .next_payload()
                .map_err(|e| bad(&self.url, e.to_string()))?;
            if let Some(p) = payload {
                let answer = parse_answer(&p).map_err(|e| bad(&self.url, e))?;
                if answer.id != id {
                    // A refusal of the stream itself (id 0), or out of order.
                    let what = match answer.outcome {
                        Err((status, message)) => format!("{message} (HTTP {status})"),
                        Ok(_) => format!("an answer to commit {} instead of {id}", answer.id),
                    };
                    return Err(bad(&self.url, what));
                }
                return Ok(answer.outcome);
            }
            let piece = tokio::time::timeout(idle, self.resp.chunk())
                .await
                .map_err(|_| Error::Timeout {
                    url: self.url.clone(),
                    secs: idle.as_secs(),
                })?
                .map_err(|e| describe_reqwest(&self.url, &e))?;
            match piece {
                Some(bytes) => self.split.push(&bytes),
                None => return Err(bad(&self.url, "the commit stream ended".into())),
            }
        }
    }
}
