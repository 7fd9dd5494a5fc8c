//! The streamed journal: one long-lived answer to `GET .../journal?stream=true` whose body is a
//! sequence of frames, each what one long-poll answer would have been.
//!
//! An agent waits for news all the time; as a long-poll, every wake-up costs a new request
//! (headers with a fresh `after=`, the answer's headers, its end-of-stream record). A stream
//! costs one request per connection, and each change then travels as one frame.
//!
//! A frame is `length (u32, big-endian) | raw deflate of a JSON object`, compressed on its own
//! (no state shared across frames, so a server keeps no compressor per open stream). The JSON
//! is compact: one-letter keys, a version's author (device, user, computer) left out when it
//! is the previous version's in the same stream, and the content hash left out of a file that
//! carries its content inline (the reader hashes the content). [`FrameWriter`] and
//! [`FrameReader`] keep that per-stream state; both are pure so they can be fuzzed.
//!
//! The frame after "changes after `after`" answers "changes after [`JournalFrame::reach`]":
//! both sides compute the point the same way, so the reader knows which question each frame
//! answers.

use cairn_model::{ContentHash, DeviceId, Entry, EntryKind, RelPath, Seq};
use serde::{Deserialize, Serialize};

use crate::{Access, Inline, VersionInfo};

/// Content type of a streamed journal answer.
pub const CONTENT_TYPE: &str = "application/x-cairn-journal-stream";
/// Header of a streamed journal answer that gives the server's identity (frames do not).
pub const SERVER_ID_HEADER: &str = "x-cairn-server";
/// Header of a streamed journal answer that gives the folder's incarnation
/// ([`crate::JournalResponse::folder_id`]).
pub const FOLDER_ID_HEADER: &str = "x-cairn-folder";
/// Largest frame, compressed.
pub const MAX_FRAME: u32 = 16 << 20;
/// Largest frame's JSON, once inflated.
pub const MAX_FRAME_JSON: u64 = 64 << 20;
const HEADER: usize = 4;

/// One frame: changes after the point the frame answers, the folder's head when they were
/// read, and the caller's access now.
#[derive(Clone, Debug, PartialEq)]
pub struct JournalFrame {
    pub changes: Vec<VersionInfo>,
    pub head: Seq,
    pub access: Option<Access>,
}

impl JournalFrame {
    /// The point the next frame answers "changes after": the newest of `after`, the head and
    /// the last change. After a full page (a folder moved, many files added) the stream goes on
    /// from the head, not from the page's end: a reader that needs the rest reads it (a pass
    /// does; a follower whose page held nothing of its own opens a stream at the page's end),
    /// and a folder's rename is not sent to every follower page after page.
    pub fn reach(&self, after: Seq) -> Seq {
        let last = self.changes.last().map_or(after, |v| v.seq);
        after.max(self.head).max(last)
    }
}

/// Why a stream is given up; each says what was wrong with it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("journal stream frame of {0} bytes; at most {MAX_FRAME}")]
    TooLong(u32),
    #[error("journal stream frame does not inflate: {0}")]
    Inflate(String),
    #[error("journal stream frame is not valid: {0}")]
    Json(String),
    #[error("journal stream frame names no author for {0}")]
    NoAuthor(RelPath),
}

#[derive(Serialize, Deserialize)]
struct WireFrame {
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    changes: Vec<WireVersion>,
    #[serde(rename = "h")]
    head: Seq,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    access: Option<Access>,
}

#[derive(Serialize, Deserialize)]
struct WireVersion {
    #[serde(rename = "p")]
    path: RelPath,
    #[serde(rename = "s")]
    seq: Seq,
    #[serde(rename = "k")]
    kind: EntryKind,
    #[serde(rename = "z", default, skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(rename = "m", default)]
    mtime_ns: i64,
    #[serde(rename = "o", default)]
    mode: u32,
    /// Absent for a file whose content is inline: the hash of that content.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    hash: Option<ContentHash>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    /// Author fields, each absent when equal to the previous version's in the stream.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    device: Option<DeviceId>,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    computer: Option<String>,
    #[serde(rename = "w", default)]
    committed_ns: i64,
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    inline: Option<Inline>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The author of the previous version in a stream.
#[derive(Default)]
struct Author {
    device: Option<DeviceId>,
    user: Option<String>,
    computer: Option<String>,
}

/// `new` when it differs from what `last` holds (which then becomes `new`), else `None`.
fn unless_same<T: Clone + PartialEq>(last: &mut Option<T>, new: &T) -> Option<T> {
    if last.as_ref() == Some(new) {
        None
    } else {
        *last = Some(new.clone());
        Some(new.clone())
    }
}

/// Encodes the frames of one stream (the server keeps one per open stream).
#[derive(Default)]
pub struct FrameWriter {
    author: Author,
}

impl FrameWriter {
    /// The frame as it goes on the wire: length, then the compressed JSON.
    pub fn encode(&mut self, frame: &JournalFrame) -> Vec<u8> {
        let wire = WireFrame {
            changes: frame.changes.iter().map(|v| self.wire(v)).collect(),
            head: frame.head,
            access: frame.access,
        };
        let json = serde_json::to_vec(&wire).expect("a frame always serialises");
        let mut packed = deflate(&json);
        let len = u32::try_from(packed.len()).unwrap_or(u32::MAX);
        let mut out = len.to_be_bytes().to_vec();
        out.append(&mut packed);
        out
    }

    fn wire(&mut self, v: &VersionInfo) -> WireVersion {
        let inline_hash = v.inline.as_ref().map(|i| ContentHash::of(&i.0));
        let hash = match (v.entry.kind, inline_hash) {
            (EntryKind::File, Some(h)) if v.entry.hash == Some(h) => None,
            _ => v.entry.hash,
        };
        WireVersion {
            path: v.path.clone(),
            seq: v.seq,
            kind: v.entry.kind,
            size: v.entry.size,
            mtime_ns: v.entry.mtime_ns,
            mode: v.entry.mode,
            hash,
            target: v.entry.target.clone(),
            device: unless_same(&mut self.author.device, &v.device),
            user: unless_same(&mut self.author.user, &v.user),
            computer: unless_same(&mut self.author.computer, &v.computer),
            committed_ns: v.committed_ns,
            inline: v.inline.clone(),
        }
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(data.len() / 2 + 16),
        flate2::Compression::best(),
    );
    std::io::Write::write_all(&mut enc, data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// Decodes the frames of one stream as its bytes arrive.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    author: Author,
}

impl FrameReader {
    /// Adds bytes as they came off the wire.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, `None` until its bytes are all there.
    ///
    /// # Errors
    /// A frame over [`MAX_FRAME`] (known from its length alone, before its bytes arrive), one
    /// that does not inflate within [`MAX_FRAME_JSON`] or is not a valid frame, or a version
    /// with no author where the stream named none before. The stream is unusable after one.
    pub fn next_frame(&mut self) -> Result<Option<JournalFrame>, StreamError> {
        let Some(header) = self.buf.get(..HEADER) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(header.try_into().expect("four bytes were sliced"));
        if len > MAX_FRAME {
            return Err(StreamError::TooLong(len));
        }
        let end = HEADER + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let json = inflate(&self.buf[HEADER..end])?;
        self.buf.drain(..end);
        let wire: WireFrame =
            serde_json::from_slice(&json).map_err(|e| StreamError::Json(e.to_string()))?;
        let changes = wire
            .changes
            .into_iter()
            .map(|w| self.version(w))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(JournalFrame {
            changes,
            head: wire.head,
            access: wire.access,
        }))
    }

    fn version(&mut self, w: WireVersion) -> Result<VersionInfo, StreamError> {
        let a = &mut self.author;
        if let Some(d) = w.device {
            a.device = Some(d);
        }
        if let Some(u) = w.user {
            a.user = Some(u);
        }
        if let Some(c) = w.computer {
            a.computer = Some(c);
        }
        let (Some(device), Some(user), Some(computer)) =
            (a.device.clone(), a.user.clone(), a.computer.clone())
        else {
            return Err(StreamError::NoAuthor(w.path));
        };
        let hash = match (&w.hash, &w.inline, w.kind) {
            (None, Some(i), EntryKind::File) => Some(ContentHash::of(&i.0)),
            _ => w.hash,
        };
        Ok(VersionInfo {
            path: w.path,
            seq: w.seq,
            entry: Entry {
                kind: w.kind,
                size: w.size,
                mtime_ns: w.mtime_ns,
                mode: w.mode,
                hash,
                target: w.target,
            },
            device,
            user,
            computer,
            committed_ns: w.committed_ns,
            inline: w.inline,
        })
    }
}

fn inflate(packed: &[u8]) -> Result<Vec<u8>, StreamError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(packed)
        .take(MAX_FRAME_JSON + 1)
        .read_to_end(&mut out)
        .map_err(|e| StreamError::Inflate(e.to_string()))?;
    if out.len() as u64 > MAX_FRAME_JSON {
        return Err(StreamError::Inflate(format!(
            "more than {MAX_FRAME_JSON} bytes once inflated"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(path: &str, seq: i64, device: &str, content: Option<&[u8]>) -> VersionInfo {
        let data = content.unwrap_or(b"elsewhere");
        VersionInfo {
            path: RelPath::parse(path).expect("path"),
            seq: Seq(seq),
            entry: Entry {
                kind: EntryKind::File,
                size: data.len() as u64,
                mtime_ns: 1_764_000_000_123_456_789,
                mode: 0o644,
                hash: Some(ContentHash::of(data)),
                target: None,
            },
            device: DeviceId(device.into()),
            user: "alice".into(),
            computer: device.to_uppercase(),
            committed_ns: 1_764_000_000_987_654_321,
            inline: content.map(|c| Inline(bytes::Bytes::copy_from_slice(c))),
        }
    }

    #[test]
    fn frames_round_trip_through_a_stream_in_any_pieces() {
        let frames = vec![
            JournalFrame {
                changes: vec![
                    version("a.txt", 3, "pc-a", Some(b"first content")),
                    version("b.txt", 4, "pc-a", None),
                ],
                head: Seq(4),
                access: Some(Access::Rw),
            },
            JournalFrame {
                changes: Vec::new(),
                head: Seq(9),
                access: Some(Access::Ro),
            },
            JournalFrame {
                changes: vec![
                    version("a.txt", 10, "pc-a", Some(b"")),
                    version("c/d.txt", 11, "pc-b", None),
                    version("a.txt", 12, "pc-a", None),
                ],
                head: Seq(12),
                access: None,
            },
        ];
        let mut writer = FrameWriter::default();
        let wire: Vec<u8> = frames.iter().flat_map(|f| writer.encode(f)).collect();
        for piece in [1, 3, 7, wire.len()] {
            let mut reader = FrameReader::default();
            let mut got = Vec::new();
            for bytes in wire.chunks(piece) {
                reader.push(bytes);
                while let Some(f) = reader.next_frame().expect("valid stream") {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "in pieces of {piece}");
        }
    }

    #[test]
    fn a_frame_leaves_out_what_the_reader_knows() {
        let mut writer = FrameWriter::default();
        let frame = |v| JournalFrame {
            changes: vec![v],
            head: Seq(5),
            access: Some(Access::Rw),
        };
        let first = writer.encode(&frame(version("a.txt", 5, "pc-a", Some(b"hello"))));
        let second = writer.encode(&frame(version("a.txt", 6, "pc-a", Some(b"hello"))));
        let json =
            |w: &[u8]| String::from_utf8(inflate(&w[HEADER..]).expect("inflate")).expect("utf-8");
        let (first, second) = (json(&first), json(&second));
        assert!(
            first.contains("\"d\":\"pc-a\"") && first.contains("\"n\":\"PC-A\""),
            "{first}"
        );
        assert!(
            !second.contains("\"d\"") && !second.contains("\"u\""),
            "{second}"
        );
        assert!(
            !first.contains("\"x\""),
            "the inline content gives the hash: {first}"
        );
    }

    #[test]
    fn a_bad_stream_is_refused_with_what_is_wrong() {
        let mut reader = FrameReader::default();
        reader.push(&(MAX_FRAME + 1).to_be_bytes());
        assert_eq!(
            reader.next_frame(),
            Err(StreamError::TooLong(MAX_FRAME + 1))
        );
        let mut reader = FrameReader::default();
        reader.push(&[0, 0, 0, 3, 1, 2, 3]);
        assert!(matches!(reader.next_frame(), Err(StreamError::Inflate(_))));
        let mut reader = FrameReader::default();
        let no_author = deflate(br#"{"c":[{"p":"a","s":1,"k":"dir"}],"h":1}"#);
        reader.push(&(no_author.len() as u32).to_be_bytes());
        reader.push(&no_author);
        assert!(matches!(reader.next_frame(), Err(StreamError::NoAuthor(_))));
        let mut reader = FrameReader::default();
        let escaping =
            deflate(br#"{"c":[{"p":"../x","s":1,"k":"dir","d":"x","u":"u","n":"n"}],"h":1}"#);
        reader.push(&(escaping.len() as u32).to_be_bytes());
        reader.push(&escaping);
        assert!(matches!(reader.next_frame(), Err(StreamError::Json(_))));
        // Half a frame is no frame yet.
        let mut reader = FrameReader::default();
        reader.push(&[0, 0]);
        assert_eq!(reader.next_frame(), Ok(None));
    }

    #[test]
    fn the_next_point_is_the_same_on_both_sides() {
        let frame = |seqs: &[i64], head| JournalFrame {
            changes: seqs.iter().map(|s| version("a", *s, "pc", None)).collect(),
            head: Seq(head),
            access: None,
        };
        assert_eq!(frame(&[], 7).reach(Seq(5)), Seq(7));
        assert_eq!(frame(&[], 3).reach(Seq(5)), Seq(5));
        assert_eq!(frame(&[6], 9).reach(Seq(5)), Seq(9));
        assert_eq!(
            frame(&[6, 10], 9).reach(Seq(5)),
            Seq(10),
            "committed after the head was read"
        );
    }
}
