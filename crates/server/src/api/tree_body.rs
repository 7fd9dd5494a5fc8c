//! The tree answer sent as it is read: a folder of a million files lists as hundreds of
//! megabytes of JSON, and its rows as about 250 MB, neither of which the server may hold whole
//! (ten agents listing it at once would hold ten copies). The rows are read in a blocking
//! thread, in one read transaction (one state of the folder), and handed over in pieces of
//! [`PER_PIECE`] versions through a channel of [`IN_FLIGHT`] pieces: the read waits while the
//! connection is behind, so a listing holds a few pieces whatever the folder's size.
//!
//! Waiting holds the read transaction open (on SQLite the log cannot be checkpointed past it;
//! on PostgreSQL old rows cannot be vacuumed), so a client that stops taking the answer for
//! [`STALL`], or takes longer than [`LONGEST`] in all, has its answer cut short: it sees a
//! broken listing, never a partial one that looks whole.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use cairn_model::Seq;
use cairn_protocol::VersionInfo;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::Error;

/// Versions per piece of the answer: about 300 KiB of JSON.
const PER_PIECE: usize = 1000;

/// Pieces read ahead of the connection.
const IN_FLIGHT: usize = 2;

/// How long a piece may wait for the connection to take the one before it.
const STALL: Duration = Duration::from_secs(60);

/// The longest a listing may take in all (a million entries take seconds on a LAN).
const LONGEST: Duration = Duration::from_secs(30 * 60);

/// What the reading thread hands the answer.
enum Piece {
    Versions(Vec<VersionInfo>),
    /// Every version was read.
    End,
    Failed(Error),
}

/// A read of versions in path order, handing each to the callback (`Meta::tree_each`).
pub(super) type Read =
    Box<dyn FnOnce(&mut dyn FnMut(VersionInfo) -> crate::Result<()>) -> crate::Result<()> + Send>;

/// `{"entries":[...],"head":N}`, the same JSON as a `TreeResponse`, from `read` run in a
/// blocking thread. A read that fails before its first piece is an error here, not a 200 with
/// a broken body.
pub(super) async fn tree_response(read: Read, head: Seq) -> crate::Result<Response> {
    let (tx, mut rx) = mpsc::channel(IN_FLIGHT);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || read_into(read, &tx, &runtime));
    let first = match rx.recv().await {
        Some(Piece::Failed(e)) => return Err(e),
        Some(first) => first,
        None => return Err(Error::Invalid("the listing's read ended early".into())),
    };
    let pieces = futures_util::stream::unfold(
        Writer {
            rx,
            next: Some(first),
            started: false,
            any: false,
            ended: false,
            head,
        },
        |mut w| async move {
            if w.ended {
                return None;
            }
            let piece = match w.next.take() {
                Some(p) => p,
                None => w.rx.recv().await.unwrap_or_else(|| {
                    Piece::Failed(Error::Invalid(
                        "the listing's read stopped before its end".into(),
                    ))
                }),
            };
            let bytes = w.write(piece);
            Some((bytes, w))
        },
    );
    // Fused: the compression layer polls the body once more after its end.
    let mut resp = Response::new(Body::from_stream(pieces.fuse()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Runs `read`, sending its versions in pieces; ends with `End` or `Failed`.
fn read_into(read: Read, tx: &mpsc::Sender<Piece>, runtime: &tokio::runtime::Handle) {
    let began = Instant::now();
    let send = |piece: Piece| -> crate::Result<()> {
        let wait = STALL.min(LONGEST.saturating_sub(began.elapsed()));
        match runtime.block_on(tokio::time::timeout(wait, tx.send(piece))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Invalid("the client left during the listing".into())),
            Err(_) => Err(Error::Invalid(format!(
                "the client took no part of the listing for {} s, or took longer than {} s \
                 in all",
                wait.as_secs(),
                LONGEST.as_secs()
            ))),
        }
    };
    let mut batch = Vec::with_capacity(PER_PIECE);
    let read = read(&mut |v| {
        batch.push(v);
        if batch.len() == PER_PIECE {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(PER_PIECE));
            send(Piece::Versions(full))?;
        }
        Ok(())
    });
    let ended = read.and_then(|()| {
        if !batch.is_empty() {
            send(Piece::Versions(std::mem::take(&mut batch)))?;
        }
        send(Piece::End)
    });
    if let Err(e) = ended {
        tracing::warn!("a tree listing ended early: {e}");
        // Nobody may be listening any more; the answer is cut short either way.
        let _ = tx.try_send(Piece::Failed(e));
    }
}

/// The answer's state between pieces.
struct Writer {
    rx: mpsc::Receiver<Piece>,
    next: Option<Piece>,
    started: bool,
    /// A version was written (the next one needs a comma).
    any: bool,
    ended: bool,
    head: Seq,
}

impl Writer {
    /// The JSON of one piece. A failed read is an error of the body, which cuts the answer
    /// short.
    fn write(&mut self, piece: Piece) -> Result<Bytes, std::io::Error> {
        let mut buf = Vec::new();
        if !std::mem::replace(&mut self.started, true) {
            buf.extend_from_slice(br#"{"entries":["#);
        }
        match piece {
            Piece::Versions(versions) => {
                buf.reserve(versions.len() * 320);
                for v in versions {
                    if std::mem::replace(&mut self.any, true) {
                        buf.push(b',');
                    }
                    serde_json::to_writer(&mut buf, &v).map_err(|e| {
                        self.ended = true;
                        std::io::Error::other(e)
                    })?;
                }
            }
            Piece::End => {
                buf.extend_from_slice(format!(r#"],"head":{}}}"#, self.head.0).as_bytes());
                self.ended = true;
            }
            Piece::Failed(e) => {
                self.ended = true;
                return Err(std::io::Error::other(e.to_string()));
            }
        }
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use cairn_model::{DeviceId, Entry, RelPath};
    use cairn_protocol::TreeResponse;

    fn version(i: usize) -> VersionInfo {
        VersionInfo {
            path: RelPath::parse(&format!("d/f{i:05}\"x")).expect("a test path"),
            seq: Seq(i as i64 + 1),
            entry: Entry::dir(1, 0o755),
            device: DeviceId("dev".into()),
            user: "u".into(),
            computer: "c".into(),
            committed_ns: 7,
            inline: None,
        }
    }

    /// A read of `n` versions that counts how many it has handed over, and fails after
    /// `fail_at` when given.
    fn counted(n: usize, fail_at: Option<usize>) -> (Read, Arc<AtomicUsize>) {
        let read_so_far = Arc::new(AtomicUsize::new(0));
        let count = read_so_far.clone();
        let read: Read = Box::new(move |each| {
            for i in 0..n {
                if Some(i) == fail_at {
                    return Err(Error::Invalid(format!("the store failed at {i}")));
                }
                count.fetch_add(1, Ordering::SeqCst);
                each(version(i))?;
            }
            Ok(())
        });
        (read, read_so_far)
    }

    async fn body_of(resp: Response) -> Result<Bytes, axum::Error> {
        axum::body::to_bytes(resp.into_body(), usize::MAX).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_answer_in_pieces_is_the_same_json_as_the_whole() {
        for n in [0, 1, PER_PIECE - 1, PER_PIECE, 2 * PER_PIECE + 3] {
            let whole = TreeResponse {
                entries: (0..n).map(version).collect(),
                head: Seq(42),
            };
            let (read, _) = counted(n, None);
            let resp = tree_response(read, Seq(42)).await.expect("an answer");
            let got = body_of(resp).await.expect("the body is read");
            let parsed: TreeResponse = serde_json::from_slice(&got).expect("valid JSON");
            assert_eq!(parsed.head, Seq(42), "{n} entries");
            assert_eq!(
                serde_json::to_value(&parsed.entries).expect("serialises"),
                serde_json::to_value(&whole.entries).expect("serialises"),
                "{n} entries"
            );
        }
    }

    /// The read stays a few pieces ahead of a connection that takes nothing, and stops when
    /// the answer is dropped (the client left).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_read_waits_for_the_connection_and_ends_when_it_leaves() {
        let n = 100 * PER_PIECE;
        let (read, count) = counted(n, None);
        let resp = tree_response(read, Seq(1)).await.expect("an answer");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ahead = count.load(Ordering::SeqCst);
        assert!(
            ahead <= (IN_FLIGHT + 2) * PER_PIECE,
            "{ahead} versions read before the connection took any"
        );
        drop(resp);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let read = count.load(Ordering::SeqCst);
        assert!(
            read <= ahead + PER_PIECE,
            "{read} versions read after the client left"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_fails_is_an_error_or_a_cut_answer_never_a_whole_looking_one() {
        let (read, _) = counted(10, Some(0));
        let refused = tree_response(read, Seq(1))
            .await
            .expect_err("failed at once");
        assert!(refused.to_string().contains("failed at 0"), "{refused}");
        let (read, _) = counted(5 * PER_PIECE, Some(3 * PER_PIECE + 7));
        let resp = tree_response(read, Seq(1))
            .await
            .expect("the first pieces were read");
        assert!(
            body_of(resp).await.is_err(),
            "a cut answer ends in an error"
        );
    }
}
