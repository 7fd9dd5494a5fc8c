//! The tree answer sent as it is written: a folder of a million files lists as hundreds of
//! megabytes of JSON, which the server must not build whole (a buffer that doubles as it
//! grows) beside the rows it came from. Pieces of [`PER_PIECE`] entries are written one at a
//! time as the connection takes them; each entry is freed once written.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use cairn_model::Seq;
use cairn_protocol::VersionInfo;

/// Entries per piece of the answer: about 300 KiB of JSON.
const PER_PIECE: usize = 1000;

/// `{"entries":[...],"head":N}`, the same JSON as a `TreeResponse`, in pieces.
pub(super) fn tree_response(entries: Vec<VersionInfo>, head: Seq) -> Response {
    let mut rest = entries.into_iter();
    let mut started = false;
    let mut done = false;
    let pieces = std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = Vec::with_capacity(PER_PIECE * 320);
        if !started {
            buf.extend_from_slice(br#"{"entries":["#);
        }
        for v in rest.by_ref().take(PER_PIECE) {
            if std::mem::replace(&mut started, true) {
                buf.push(b',');
            }
            if let Err(e) = serde_json::to_writer(&mut buf, &v) {
                // Cut the answer short: the client sees a broken listing, never a partial one.
                done = true;
                return Some(Err(std::io::Error::other(e)));
            }
        }
        started = true;
        if rest.len() == 0 {
            buf.extend_from_slice(format!(r#"],"head":{}}}"#, head.0).as_bytes());
            done = true;
        }
        Some(Ok(Bytes::from(buf)))
    });
    let mut resp = Response::new(Body::from_stream(futures_util::stream::iter(pieces)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
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

    #[tokio::test]
    async fn the_answer_in_pieces_is_the_same_json_as_the_whole() {
        for n in [0, 1, PER_PIECE - 1, PER_PIECE, 2 * PER_PIECE + 3] {
            let entries: Vec<VersionInfo> = (0..n).map(version).collect();
            let whole = TreeResponse {
                entries: entries.clone(),
                head: Seq(42),
            };
            let body = tree_response(entries, Seq(42)).into_body();
            let got = axum::body::to_bytes(body, usize::MAX)
                .await
                .expect("the body is read");
            let parsed: TreeResponse = serde_json::from_slice(&got).expect("valid JSON");
            assert_eq!(parsed.head, Seq(42), "{n} entries");
            assert_eq!(
                serde_json::to_value(&parsed.entries).expect("serialises"),
                serde_json::to_value(&whole.entries).expect("serialises"),
                "{n} entries"
            );
        }
    }
}
