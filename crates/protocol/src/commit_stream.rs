//! The commit stream (`POST .../commit-stream`): one long-lived request per connection and
//! folder whose body carries commits as frames, each answered by a frame on the response.
//!
//! A small edit's commit as its own request costs its request headers (the path, the token's
//! index, the content type and encoding), the answer's headers and the body's framing: about a
//! third of the edit's bytes. On the stream a commit is one frame up and one frame down.
//!
//! A frame is `header (u32, big-endian) | payload`: the header's top bit says the payload is
//! raw deflate (set only where that is shorter), the other bits its length. The payload is
//! compact JSON, compressed on its own (no state shared across frames, so neither side keeps a
//! compressor per open stream):
//! - up: `{"i": id, "c": [change, ...]}`, a change with one-letter keys ([`WireChange`]);
//! - down: `{"i": id, "r": [result, ...], "h": head}`; `{"i": id, "a": [seq, ...]}` when
//!   every change was accepted (with `"h"` only when the head is not the last of them); or
//!   `{"i": id, "s": status, "e": message}` for a commit refused as a whole (the status an
//!   ordinary commit would answer).
//!
//! The server reads the next frame only after answering the one before, so a client has one
//! commit in flight per stream. [`FrameSplitter`] is the one decoder of both directions; it is
//! pure so that it can be fuzzed on its own.

use cairn_model::{ContentHash, Entry, EntryKind, RelPath, Seq};
use serde::{Deserialize, Serialize};

use crate::{Change, ChangeResult, ChunkSpan, CommitResponse, Inline, MovedFrom, VersionInfo};

/// Content type of a commit stream, both ways.
pub const CONTENT_TYPE: &str = "application/x-cairn-commit-stream";
/// Largest frame payload (as sent, compressed or not) a commit stream carries: a commit too
/// big for it goes as an ordinary request.
pub const MAX_FRAME: u32 = 1 << 20;
/// Largest frame payload once inflated.
pub const MAX_FRAME_JSON: u64 = 4 << 20;
/// Largest answer frame a client reads (conflicts carry the path's head).
pub const MAX_ANSWER_FRAME: u32 = 16 << 20;
/// Largest answer frame once inflated.
pub const MAX_ANSWER_JSON: u64 = 64 << 20;
const DEFLATED: u32 = 1 << 31;
const HEADER: usize = 4;

/// Why a stream's bytes are refused; the stream cannot go on after one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    #[error("commit stream frame of {0} bytes; at most {1}")]
    TooLong(u32, u32),
    #[error("commit stream frame does not inflate: {0}")]
    Inflate(String),
}

/// Cuts a stream's bytes into frame payloads (inflated), within the given caps.
pub struct FrameSplitter {
    buf: Vec<u8>,
    max: u32,
    max_json: u64,
}

impl FrameSplitter {
    /// A splitter for frames of at most `max` bytes, `max_json` once inflated.
    pub fn new(max: u32, max_json: u64) -> Self {
        FrameSplitter {
            buf: Vec::new(),
            max,
            max_json,
        }
    }

    /// Bytes held that are not a whole frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Adds bytes as they came off the wire.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame's payload, `None` until its bytes are all there.
    ///
    /// # Errors
    /// A frame over the cap (known from its header alone) or one that does not inflate
    /// within the cap.
    pub fn next_payload(&mut self) -> Result<Option<Vec<u8>>, SplitError> {
        let Some(header) = self.buf.get(..HEADER) else {
            return Ok(None);
        };
        let header = u32::from_be_bytes(header.try_into().expect("four bytes were sliced"));
        let len = header & !DEFLATED;
        if len > self.max {
            return Err(SplitError::TooLong(len, self.max));
        }
        let end = HEADER + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let payload = if header & DEFLATED != 0 {
            inflate(&self.buf[HEADER..end], self.max_json)?
        } else {
            self.buf[HEADER..end].to_vec()
        };
        self.buf.drain(..end);
        Ok(Some(payload))
    }
}

/// `json` as one frame: deflated when that is shorter.
pub fn encode_frame(json: &[u8]) -> Vec<u8> {
    let packed = deflate(json);
    let (flag, payload) = if packed.len() < json.len() {
        (DEFLATED, packed.as_slice())
    } else {
        (0, json)
    };
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX >> 1);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(len | flag).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A change as it travels on the stream: a [`Change`] with one-letter keys.
#[derive(Serialize, Deserialize)]
pub struct WireChange {
    #[serde(rename = "p")]
    path: RelPath,
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    base: Option<Seq>,
    #[serde(rename = "k")]
    kind: EntryKind,
    #[serde(rename = "z", default, skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(rename = "m", default)]
    mtime_ns: i64,
    #[serde(rename = "o", default)]
    mode: u32,
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    hash: Option<ContentHash>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    chunks: Vec<ChunkSpan>,
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    moved_from: Option<MovedFrom>,
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    inline: Option<Inline>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<&Change> for WireChange {
    fn from(c: &Change) -> Self {
        WireChange {
            path: c.path.clone(),
            base: c.base,
            kind: c.entry.kind,
            size: c.entry.size,
            mtime_ns: c.entry.mtime_ns,
            mode: c.entry.mode,
            hash: c.entry.hash,
            target: c.entry.target.clone(),
            chunks: c.chunks.clone(),
            moved_from: c.moved_from.clone(),
            inline: c.inline.clone(),
        }
    }
}

impl From<WireChange> for Change {
    fn from(w: WireChange) -> Self {
        Change {
            path: w.path,
            base: w.base,
            entry: Entry {
                kind: w.kind,
                size: w.size,
                mtime_ns: w.mtime_ns,
                mode: w.mode,
                hash: w.hash,
                target: w.target,
            },
            chunks: w.chunks,
            moved_from: w.moved_from,
            inline: w.inline,
        }
    }
}

#[derive(Serialize)]
struct UpFrame {
    #[serde(rename = "i")]
    id: u64,
    #[serde(rename = "c")]
    changes: Vec<WireChange>,
}

/// One commit as an up frame.
pub fn encode_commit(id: u64, changes: &[Change]) -> Vec<u8> {
    let up = UpFrame {
        id,
        changes: changes.iter().map(WireChange::from).collect(),
    };
    encode_frame(&serde_json::to_vec(&up).expect("a commit always serialises"))
}

/// An up frame parsed change by change, as an ordinary commit's body is: a change that does
/// not parse is refused on its own.
pub struct LooseCommit {
    pub id: u64,
    pub changes: Vec<Result<Change, String>>,
}

#[derive(Deserialize)]
struct LooseUp<'a> {
    #[serde(rename = "i")]
    id: u64,
    #[serde(rename = "c", borrow)]
    changes: Vec<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct IdOnly {
    #[serde(rename = "i")]
    id: u64,
}

/// Parses an up frame's payload. `max_changes` is checked before any change is parsed.
///
/// # Errors
/// The frame is not a commit (with its id when that much could be read, else 0), or it holds
/// more than `max_changes` changes.
pub fn parse_commit(payload: &[u8], max_changes: usize) -> Result<LooseCommit, (u64, String)> {
    let loose: LooseUp = serde_json::from_slice(payload).map_err(|e| {
        let id = serde_json::from_slice::<IdOnly>(payload).map_or(0, |x| x.id);
        (id, format!("commit stream frame is not valid: {e}"))
    })?;
    if loose.changes.len() > max_changes {
        return Err((
            loose.id,
            format!("at most {max_changes} changes per commit"),
        ));
    }
    let changes = loose
        .changes
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            serde_json::from_str::<WireChange>(raw.get())
                .map(Change::from)
                .map_err(|e| {
                    let text: String = raw.get().chars().take(200).collect();
                    format!("change {i} is not valid: {e} (in {text:?})")
                })
        })
        .collect();
    Ok(LooseCommit {
        id: loose.id,
        changes,
    })
}

/// A change's result with a one-letter key.
#[derive(Serialize, Deserialize)]
enum WireResult {
    #[serde(rename = "a")]
    Accepted(Seq),
    #[serde(rename = "c")]
    Conflict(Option<VersionInfo>),
    #[serde(rename = "m")]
    MissingChunks(Vec<cairn_model::ChunkId>),
    #[serde(rename = "r")]
    Refused(String),
}

impl From<ChangeResult> for WireResult {
    fn from(r: ChangeResult) -> Self {
        match r {
            ChangeResult::Accepted { seq } => WireResult::Accepted(seq),
            ChangeResult::Conflict { head } => WireResult::Conflict(head),
            ChangeResult::MissingChunks { chunks } => WireResult::MissingChunks(chunks),
            ChangeResult::Refused { reason } => WireResult::Refused(reason),
        }
    }
}

impl From<WireResult> for ChangeResult {
    fn from(r: WireResult) -> Self {
        match r {
            WireResult::Accepted(seq) => ChangeResult::Accepted { seq },
            WireResult::Conflict(head) => ChangeResult::Conflict { head },
            WireResult::MissingChunks(chunks) => ChangeResult::MissingChunks { chunks },
            WireResult::Refused(reason) => ChangeResult::Refused { reason },
        }
    }
}

#[derive(Serialize, Deserialize)]
struct DownFrame {
    #[serde(rename = "i")]
    id: u64,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    results: Option<Vec<WireResult>>,
    /// Instead of `r` when every change was accepted: their sequence numbers.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    accepted: Option<Vec<Seq>>,
    /// Absent when it is the last accepted change's number.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    head: Option<Seq>,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What the server answered one commit of the stream.
#[derive(Debug)]
pub struct Answer {
    pub id: u64,
    /// The results, or the status and message of a commit refused as a whole.
    pub outcome: Result<CommitResponse, (u16, String)>,
}

/// One answer as a down frame.
pub fn encode_answer(answer: Answer) -> Vec<u8> {
    let down = match answer.outcome {
        Ok(r) => {
            let seqs: Option<Vec<Seq>> = r
                .results
                .iter()
                .map(|x| match x {
                    ChangeResult::Accepted { seq } => Some(*seq),
                    _ => None,
                })
                .collect();
            let (results, accepted) = match seqs {
                Some(seqs) if !seqs.is_empty() => (None, Some(seqs)),
                _ => (
                    Some(r.results.into_iter().map(WireResult::from).collect()),
                    None,
                ),
            };
            let implied = accepted.as_ref().and_then(|a| a.last().copied());
            DownFrame {
                id: answer.id,
                results,
                accepted,
                head: (implied != Some(r.head)).then_some(r.head),
                status: None,
                error: None,
            }
        }
        Err((status, message)) => DownFrame {
            id: answer.id,
            results: None,
            accepted: None,
            head: None,
            status: Some(status),
            error: Some(message),
        },
    };
    encode_frame(&serde_json::to_vec(&down).expect("an answer always serialises"))
}

/// Parses a down frame's payload.
///
/// # Errors
/// Not an answer: neither results with a head nor a status with a message.
pub fn parse_answer(payload: &[u8]) -> Result<Answer, String> {
    let down: DownFrame = serde_json::from_slice(payload)
        .map_err(|e| format!("commit stream answer is not valid: {e}"))?;
    let outcome = match (
        down.results,
        down.accepted,
        down.head,
        down.status,
        down.error,
    ) {
        (Some(results), None, Some(head), None, None) => Ok(CommitResponse {
            results: results.into_iter().map(ChangeResult::from).collect(),
            head,
        }),
        (None, Some(seqs), head, None, None) => {
            let Some(head) = head.or_else(|| seqs.last().copied()) else {
                return Err("commit stream answer accepts no change".into());
            };
            Ok(CommitResponse {
                results: seqs
                    .into_iter()
                    .map(|seq| ChangeResult::Accepted { seq })
                    .collect(),
                head,
            })
        }
        (None, None, None, Some(status), Some(message)) => Err((status, message)),
        _ => return Err("commit stream answer has neither results nor an error".into()),
    };
    Ok(Answer {
        id: down.id,
        outcome,
    })
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(data.len() / 2 + 16),
        flate2::Compression::best(),
    );
    std::io::Write::write_all(&mut enc, data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

fn inflate(packed: &[u8], max: u64) -> Result<Vec<u8>, SplitError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(packed)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| SplitError::Inflate(e.to_string()))?;
    if out.len() as u64 > max {
        return Err(SplitError::Inflate(format!(
            "more than {max} bytes once inflated"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, content: &[u8]) -> Change {
        Change {
            path: RelPath::parse(path).expect("path"),
            base: Some(Seq(7)),
            entry: Entry {
                kind: EntryKind::File,
                size: content.len() as u64,
                mtime_ns: 1_764_000_000_123_456_789,
                mode: 0o644,
                hash: None,
                target: None,
            },
            chunks: Vec::new(),
            moved_from: None,
            inline: Some(Inline(bytes::Bytes::copy_from_slice(content))),
        }
    }

    #[test]
    fn commits_and_answers_round_trip_in_any_pieces() {
        let commits = [
            (1, vec![change("a.txt", b"first"), change("b/c.txt", b"")]),
            (
                2,
                vec![change("a.txt", "second, longer: ".repeat(20).as_bytes())],
            ),
        ];
        let wire: Vec<u8> = commits
            .iter()
            .flat_map(|(id, c)| encode_commit(*id, c))
            .collect();
        for piece in [1, 5, wire.len()] {
            let mut split = FrameSplitter::new(MAX_FRAME, MAX_FRAME_JSON);
            let mut got = Vec::new();
            for bytes in wire.chunks(piece) {
                split.push(bytes);
                while let Some(p) = split.next_payload().expect("valid") {
                    let c = parse_commit(&p, 10).expect("a commit");
                    let changes: Vec<Change> =
                        c.changes.into_iter().map(|x| x.expect("ok")).collect();
                    got.push((c.id, changes));
                }
            }
            assert_eq!(got, commits.to_vec(), "in pieces of {piece}");
            assert_eq!(split.pending(), 0);
        }
        let answers = [
            Answer {
                id: 1,
                outcome: Ok(CommitResponse {
                    results: vec![
                        ChangeResult::Accepted { seq: Seq(8) },
                        ChangeResult::Refused {
                            reason: "no".into(),
                        },
                        ChangeResult::Conflict { head: None },
                    ],
                    head: Seq(8),
                }),
            },
            Answer {
                id: 2,
                outcome: Err((403, "read only".into())),
            },
            Answer {
                id: 3,
                outcome: Ok(CommitResponse {
                    results: vec![
                        ChangeResult::Accepted { seq: Seq(9) },
                        ChangeResult::Accepted { seq: Seq(10) },
                    ],
                    head: Seq(12),
                }),
            },
            Answer {
                id: 4,
                outcome: Ok(CommitResponse {
                    results: vec![ChangeResult::Accepted { seq: Seq(13) }],
                    head: Seq(13),
                }),
            },
        ];
        for a in answers {
            let text = format!("{a:?}");
            let frame = encode_answer(a);
            let mut split = FrameSplitter::new(MAX_ANSWER_FRAME, MAX_ANSWER_JSON);
            split.push(&frame);
            let p = split.next_payload().expect("valid").expect("whole");
            let back = parse_answer(&p).expect("an answer");
            assert_eq!(format!("{back:?}"), text);
        }
    }

    #[test]
    fn an_accepted_edit_is_answered_in_a_few_bytes() {
        let a = Answer {
            id: 12,
            outcome: Ok(CommitResponse {
                results: vec![ChangeResult::Accepted { seq: Seq(1234) }],
                head: Seq(1234),
            }),
        };
        let frame = encode_answer(a);
        assert!(frame.len() <= 24, "{} bytes", frame.len());
    }

    #[test]
    fn bad_frames_are_refused_with_what_is_wrong() {
        let mut split = FrameSplitter::new(MAX_FRAME, MAX_FRAME_JSON);
        split.push(&(MAX_FRAME + 1).to_be_bytes());
        assert_eq!(
            split.next_payload(),
            Err(SplitError::TooLong(MAX_FRAME + 1, MAX_FRAME))
        );
        let mut split = FrameSplitter::new(MAX_FRAME, MAX_FRAME_JSON);
        split.push(&(3 | DEFLATED).to_be_bytes());
        split.push(&[1, 2, 3]);
        assert!(matches!(split.next_payload(), Err(SplitError::Inflate(_))));
        // A bomb: small on the wire, over the cap once inflated.
        let bomb = encode_frame(&vec![b' '; 2 << 20]);
        let mut split = FrameSplitter::new(MAX_FRAME, 1 << 20);
        split.push(&bomb);
        assert!(matches!(split.next_payload(), Err(SplitError::Inflate(_))));
        // Not a commit: refused with the id when it is there.
        assert_eq!(parse_commit(b"{\"i\":5}", 10).err().map(|e| e.0), Some(5));
        assert_eq!(parse_commit(b"nonsense", 10).err().map(|e| e.0), Some(0));
        // One bad change is refused alone.
        let c = parse_commit(
            br#"{"i":3,"c":[{"p":"../x","k":"file"},{"p":"ok.txt","k":"dir"}]}"#,
            10,
        )
        .expect("the frame parses");
        assert!(c.changes[0].as_ref().is_err_and(|e| e.contains("change 0")));
        assert!(c.changes[1].is_ok());
        let many = br#"{"i":4,"c":[{"p":"a","k":"dir"},{"p":"b","k":"dir"}]}"#;
        assert_eq!(parse_commit(many, 1).err().map(|e| e.0), Some(4));
        assert!(parse_answer(br#"{"i":1}"#).is_err());
    }
}
