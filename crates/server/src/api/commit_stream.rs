//! The commit stream (`POST .../commit-stream`, HTTP/2 only): one open request per agent and
//! folder whose body carries commits as frames (see `cairn_protocol::commit_stream`), each
//! answered by a frame on the open response.
//!
//! Each frame is one commit under the ordinary endpoint's rules: the same parsing change by
//! change, the same checks and limits (`check_changes`), the same store and transaction
//! (`apply_commit`), and the caller's account, token and write access checked again before
//! every frame. A commit refused as a whole is answered with the status and message the
//! ordinary endpoint would give, and the stream goes on; only bytes that are not frames (a
//! frame over [`MAX_FRAME`], one that does not inflate) or a token that no longer holds end
//! it. What an open stream may cost is bounded: [`MAX_STREAMS_PER_USER`] per user and
//! [`MAX_STREAMS`] in all (beyond, 503 and the client commits with ordinary requests), one
//! frame read at a time (the next waits in HTTP/2 flow control until the answer is sent), at
//! most [`IDLE`] between frames (a frame begun is held to the connection's body deadlines,
//! which do not count the wait between frames: `BodyIdle`) and `MAX_STREAM_LIFE` in all, never
//! beyond its token; it ends after the frame in hand when the server stops.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Version};
use axum::response::Response;
use axum::Extension;
use cairn_protocol::commit_stream::{
    encode_answer, parse_commit, Answer, FrameSplitter, CONTENT_TYPE, MAX_FRAME, MAX_FRAME_JSON,
};
use cairn_protocol::{Access, MAX_COMMIT_CHANGES};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::stream::{StreamSlot, MAX_STREAM_LIFE};
use super::{
    apply_commit, blocking, check_changes, folder_access, now_ns, ApiError, ApiResult, AppState,
    Caller,
};
use crate::connection::BodyIdle;
use crate::meta::Folder;

/// Most commit streams one user may hold open (an agent holds one per folder it writes to).
pub const MAX_STREAMS_PER_USER: usize = 32;
/// Most commit streams open on the server.
pub const MAX_STREAMS: usize = 4096;
/// Longest a commit stream waits for its next frame; the client opens a new one when it has
/// a commit again.
pub const IDLE: Duration = Duration::from_secs(60);

/// One open commit stream's state between frames.
struct Commits {
    state: Arc<AppState>,
    caller: Caller,
    folder: Folder,
    body: axum::body::BodyDataStream,
    /// Tells the connection's body deadlines when the body is idle between frames (a frame
    /// begun must still arrive at their pace).
    idle: Option<BodyIdle>,
    split: FrameSplitter,
    stopping: watch::Receiver<bool>,
    ends: Instant,
    /// Set once the stream must end after the frame it sends now.
    done: bool,
    _slot: StreamSlot,
}

/// Opens a commit stream: 403/404 as a commit would be answered, 400 over HTTP/1 (a body and
/// an answer both open at once need HTTP/2), 503 when the caller (or the server) holds too
/// many; else the open answer whose frames answer the body's.
pub async fn open(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(folder): Path<String>,
    version: Version,
    idle: Option<Extension<BodyIdle>>,
    body: Body,
) -> ApiResult<Response> {
    if state.no_commit_stream {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such API endpoint"));
    }
    if version != Version::HTTP_2 {
        return Err(ApiError::bad(
            "a commit stream needs HTTP/2; commit with ordinary requests",
        ));
    }
    let folder = folder_access(&state, &caller, &folder, Access::Rw).await?;
    let Some(slot) = state.commit_streams.try_open(caller.user.id) else {
        tracing::warn!(user = %caller.user.name, "commit stream refused: too many open");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many open commit streams (at most {MAX_STREAMS_PER_USER} per user); commit with ordinary requests"
            ),
        ));
    };
    let token_left = u64::try_from(caller.expires_ns.saturating_sub(now_ns())).unwrap_or(0);
    let life = MAX_STREAM_LIFE.min(Duration::from_nanos(token_left));
    let commits = Commits {
        body: body.into_data_stream(),
        idle: idle.map(|Extension(i)| i),
        split: FrameSplitter::new(MAX_FRAME, MAX_FRAME_JSON),
        stopping: state.stopping.subscribe(),
        ends: Instant::now() + life,
        done: false,
        state: state.clone(),
        caller,
        folder,
        _slot: slot,
    };
    let frames = futures_util::stream::unfold(commits, |mut c| async move {
        let frame = c.next_answer().await?;
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(frame)), c))
    });
    let mut resp = Response::new(Body::from_stream(frames));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    Ok(resp)
}

impl Commits {
    /// The answer to the next frame, `None` when the stream ends (the body ended or failed,
    /// it was idle or lived its life, the server stops, or it ended after an error frame).
    async fn next_answer(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        loop {
            match self.split.next_payload() {
                Ok(Some(payload)) => return Some(self.answer(payload).await),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    let message = format!("{}: {e}", self.folder.name);
                    tracing::warn!(user = %self.caller.user.name, error = %message, "commit stream ends: bad frame");
                    return Some(refused(0, StatusCode::BAD_REQUEST, message));
                }
            }
            if *self.stopping.borrow() || Instant::now() >= self.ends {
                return None;
            }
            let between = self.split.pending() == 0;
            if let Some(i) = &self.idle {
                i.set(between);
            }
            // Between frames the stream's own idle limit; inside one, the body deadlines.
            let idle = Instant::now() + if between { IDLE } else { MAX_STREAM_LIFE };
            let piece = tokio::select! {
                piece = self.body.next() => piece?,
                _ = tokio::time::sleep_until(idle.min(self.ends)) => return None,
                _ = self.stopping.changed() => return None,
            };
            match piece {
                Ok(bytes) => self.split.push(&bytes),
                Err(e) => {
                    tracing::info!(user = %self.caller.user.name, error = %e, "commit stream ends: its body failed");
                    return None;
                }
            }
        }
    }

    /// One frame's answer: its results, or its refusal as a whole.
    async fn answer(&mut self, payload: Vec<u8>) -> Vec<u8> {
        let loose = match parse_commit(&payload, MAX_COMMIT_CHANGES) {
            Ok(loose) => loose,
            Err((id, message)) => {
                let message = format!("{}: {message}", self.folder.name);
                return refused(id, StatusCode::BAD_REQUEST, message);
            }
        };
        let id = loose.id;
        if let Err(e) = still_allowed(&self.state, &self.caller, &self.folder).await {
            if e.status == StatusCode::UNAUTHORIZED {
                self.done = true;
            }
            return refused(id, e.status, e.message);
        }
        let checked = tokio::task::spawn_blocking(move || check_changes(loose.changes))
            .await
            .map_err(ApiError::worker)
            .and_then(|r| r);
        let outcome = match checked {
            Ok(parsed) => apply_commit(&self.state, &self.caller, &self.folder, parsed).await,
            Err(e) => Err(e),
        };
        if self.state.access_log {
            tracing::info!("commit-stream frame {id}");
        }
        match outcome {
            Ok(r) => encode_answer(Answer { id, outcome: Ok(r) }),
            Err(e) => refused(id, e.status, e.message),
        }
    }
}

/// The caller's token and account still hold and they may still write to the folder.
async fn still_allowed(state: &Arc<AppState>, caller: &Caller, folder: &Folder) -> ApiResult<()> {
    if caller.expires_ns <= now_ns() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the token is invalid or expired; log in again",
        ));
    }
    let user = caller.user.clone();
    let fresh = blocking(state, move |m| m.user_by_id(user.id)).await?;
    let u = &caller.user;
    if !fresh.is_some_and(|f| !f.disabled && f.token_gen == u.token_gen) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the token is invalid or expired; log in again",
        ));
    }
    folder_access(state, caller, &folder.name, Access::Rw)
        .await
        .map(|_| ())
}

fn refused(id: u64, status: StatusCode, message: String) -> Vec<u8> {
    encode_answer(Answer {
        id,
        outcome: Err((status.as_u16(), message)),
    })
}
