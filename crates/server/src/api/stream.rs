//! The streamed journal (`GET .../journal?stream=true`): one open answer per follower whose
//! body carries a frame (see `cairn_protocol::stream`) whenever other computers changed the
//! folder, and an empty one every `wait` seconds so the reader knows the stream is alive.
//!
//! Called by `api::journal`. What an open stream may cost is bounded: each user holds at most
//! [`MAX_STREAMS_PER_USER`] and the server [`MAX_STREAMS`] (beyond, 503 and the client waits
//! with long-polls as before); a stream lasts at most [`MAX_STREAM_LIFE`] and never beyond its
//! token, checks the caller's account and access before every frame (a disabled user, a
//! new password or a revoked folder ends it), holds no compressor between frames, and ends
//! when the server stops. A reader that stops reading is HTTP/2 flow control's and the
//! connection's write deadline's to cut off. The alternative that lost was to keep long-polls:
//! every wake-up then costs a request and an answer's headers, most of a small edit's bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::Response;
use cairn_model::Seq;
use cairn_protocol::stream::{
    FrameWriter, JournalFrame, CONTENT_TYPE, FOLDER_ID_HEADER, SERVER_ID_HEADER,
};
use cairn_protocol::{Access, VersionInfo};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{blocking, now_ns, with_inline, ApiError, ApiResult, AppState, Caller};
use crate::meta::Folder;

/// Most journal streams one user may hold open (an agent holds one per folder it follows).
pub const MAX_STREAMS_PER_USER: usize = 32;
/// Most journal streams open on the server.
pub const MAX_STREAMS: usize = 4096;
/// Longest a stream stays open; the client then opens the next one where it ended.
pub const MAX_STREAM_LIFE: Duration = Duration::from_secs(600);

/// Open streams of one kind, per user and in all, within their caps.
pub struct StreamCounts {
    open: Mutex<HashMap<i64, usize>>,
    per_user: usize,
    total: usize,
}

impl Default for StreamCounts {
    /// The journal streams' caps.
    fn default() -> Self {
        StreamCounts::new(MAX_STREAMS_PER_USER, MAX_STREAMS)
    }
}

impl StreamCounts {
    pub fn new(per_user: usize, total: usize) -> Self {
        StreamCounts {
            open: Mutex::default(),
            per_user,
            total,
        }
    }

    pub(super) fn try_open(self: &Arc<Self>, user: i64) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = open.values().sum();
        let mine = open.entry(user).or_insert(0);
        if *mine >= self.per_user || total >= self.total {
            if *mine == 0 {
                open.remove(&user);
            }
            return None;
        }
        *mine += 1;
        Some(StreamSlot {
            counts: self.clone(),
            user,
        })
    }

    /// Streams open now (for tests and logs).
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }
}

/// One open stream of a user; dropping the stream's body gives it back.
pub(super) struct StreamSlot {
    counts: Arc<StreamCounts>,
    user: i64,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// What the stream's question is: as a long-poll's query.
pub struct StreamQuery {
    pub after: Seq,
    pub limit: u32,
    pub wait: Duration,
    pub others: bool,
    pub inline: bool,
    /// The agent instance that follows (`x-cairn-instance`): an open stream is its sign of
    /// life, so each frame renews its claim on the device as each long-poll did.
    pub instance: Option<String>,
}

/// One open stream's state between frames.
struct Follow {
    state: Arc<AppState>,
    caller: Caller,
    folder: Folder,
    q: StreamQuery,
    rx: watch::Receiver<i64>,
    stopping: watch::Receiver<bool>,
    writer: FrameWriter,
    ends: Instant,
    /// When an empty frame is due if nothing happens.
    beat: Instant,
    _slot: StreamSlot,
}

/// The streamed answer, or 503 when the caller (or the server) holds too many streams.
pub async fn open(
    state: Arc<AppState>,
    caller: Caller,
    folder: Folder,
    q: StreamQuery,
) -> ApiResult<Response> {
    let Some(slot) = state.streams.try_open(caller.user.id) else {
        tracing::warn!(user = %caller.user.name, "journal stream refused: too many open");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many open journal streams (at most {MAX_STREAMS_PER_USER} per user); wait with a long-poll"
            ),
        ));
    };
    let token_left = u64::try_from(caller.expires_ns.saturating_sub(now_ns())).unwrap_or(0);
    let life = MAX_STREAM_LIFE.min(Duration::from_nanos(token_left));
    let now = Instant::now();
    let folder_id = folder.id;
    let follow = Follow {
        rx: state.head_watch(&folder),
        stopping: state.stopping.subscribe(),
        ends: now + life,
        beat: now + q.wait,
        writer: FrameWriter::default(),
        state: state.clone(),
        caller,
        folder,
        q,
        _slot: slot,
    };
    let body = futures_util::stream::unfold(follow, |mut f| async move {
        let frame = f.next_frame().await?;
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(frame)), f))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    if let Ok(id) = header::HeaderValue::from_str(&state.server_id) {
        h.insert(SERVER_ID_HEADER, id);
    }
    h.insert(FOLDER_ID_HEADER, header::HeaderValue::from(folder_id));
    Ok(resp)
}

impl Follow {
    /// The next frame to send, `None` when the stream ends (its life is over, the server
    /// stops, the caller lost access, or the store failed: the reader asks again).
    async fn next_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if *self.stopping.borrow() || Instant::now() >= self.ends {
                return None;
            }
            if let Some(instance) = &self.q.instance {
                let c = &self.caller;
                // Another live agent took this device identity: the reader's next request
                // gets the 409 that says so.
                self.state
                    .claim(&c.user, &c.device, instance, false)
                    .await
                    .ok()?;
            }
            let (changes, head, access) = self.read().await?;
            let beat = Instant::now() >= self.beat;
            if !changes.is_empty() || beat {
                let changes = if self.q.inline {
                    let c = &self.caller;
                    let me = (c.user.name.as_str(), c.device.0.as_str());
                    with_inline(&self.state, &self.folder, changes, me).await
                } else {
                    changes
                };
                let frame = JournalFrame {
                    changes,
                    head,
                    access: Some(access),
                };
                self.q.after = frame.reach(self.q.after);
                self.beat = Instant::now() + self.q.wait;
                let bytes = self.writer.encode(&frame);
                if self.state.access_log {
                    tracing::info!(
                        "stream frame {} changes, {} bytes",
                        frame.changes.len(),
                        bytes.len()
                    );
                }
                return Some(bytes);
            }
            // Wake on the next commit to the folder, the next beat, or the end.
            tokio::select! {
                changed = self.rx.changed() => changed.ok()?,
                _ = tokio::time::sleep_until(self.beat.min(self.ends)) => {}
                _ = self.stopping.changed() => return None,
            }
        }
    }

    /// The caller's access now and the changes after the stream's point; `None` when the
    /// caller may no longer read the folder (or the read failed).
    async fn read(&self) -> Option<(Vec<VersionInfo>, Seq, Access)> {
        let (user, folder) = (self.caller.user.clone(), self.folder.clone());
        let (after, limit) = (self.q.after, self.q.limit);
        let device = self.caller.device.0.clone();
        let others = self.q.others;
        let read = blocking(&self.state, move |m| {
            let fresh = m.user_by_id(user.id)?;
            let valid = fresh.is_some_and(|u| !u.disabled && u.token_gen == user.token_gen);
            // A folder deleted (and perhaps made again under its name) ends the stream: the
            // reader's next request finds the folder as it is now.
            let (now, access) = match m.access(&user, &folder.name)? {
                Some((now, access)) if valid && now.id == folder.id => (now, access),
                _ => return Ok(None),
            };
            // The head is read before the changes, as a long-poll reads it.
            let head = now.head;
            let mine = others.then_some((user.name.as_str(), device.as_str()));
            Ok(Some((
                m.journal(&folder, after, limit, mine)?,
                head,
                access,
            )))
        })
        .await;
        match read {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(folder = %self.folder.name, error = %e.message, "journal stream ends: read failed");
                None
            }
        }
    }
}
