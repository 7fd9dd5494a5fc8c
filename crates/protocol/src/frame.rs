//! Chunk-upload frames: `id (32 bytes) | length (u32, big-endian) | bytes`, repeated.
//!
//! Raw frames instead of JSON keep a 1 GiB upload free of base64; the receiver re-hashes each
//! chunk, so a frame whose bytes do not match its id is refused rather than trusted.
//! [`decode_all`] is the one decoder of an upload body (the server calls it on the blocking pool);
//! it is pure so that it can be fuzzed on its own.

use bytes::{Bytes, BytesMut};
use cairn_model::ChunkId;

/// Largest chunk a frame may carry.
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;
pub const HEADER_LEN: usize = 36;
/// Most frames one upload request may carry: registering them is work under the server's
/// write lock, and this keeps any one request's share of it short.
pub const MAX_FRAMES_PER_UPLOAD: usize = 10_000;

/// Why an upload body is refused; each says where in the body the fault is.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("truncated chunk frame header at byte {at}")]
    TruncatedHeader { at: usize },
    #[error("chunk frame at byte {at} is longer than {MAX_FRAME_LEN} bytes")]
    TooLong { at: usize },
    #[error("chunk {id} is truncated")]
    TruncatedChunk { id: ChunkId },
    #[error("chunk {id}: its bytes do not match its id; nothing was stored")]
    Mismatch { id: ChunkId },
}

pub fn encode_header(id: &ChunkId, len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..32].copy_from_slice(id.as_bytes());
    h[32..].copy_from_slice(&len.to_be_bytes());
    h
}

/// Decodes a header; `None` when the length is over [`MAX_FRAME_LEN`].
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Option<(ChunkId, u32)> {
    let mut id = [0u8; 32];
    id.copy_from_slice(&h[..32]);
    let len = u32::from_be_bytes([h[32], h[33], h[34], h[35]]);
    (len <= MAX_FRAME_LEN).then_some((ChunkId::from_bytes(id), len))
}

/// Splits an upload body into its chunks, each checked against its id. The chunks are slices
/// of `body` (no copy). An empty body is no chunks.
///
/// # Errors
/// The first fault met: a truncated header or chunk, a length over [`MAX_FRAME_LEN`], or bytes
/// that do not hash to their id. Nothing of a refused body is meant to be stored.
pub fn decode_all(body: &Bytes) -> Result<Vec<(ChunkId, Bytes)>, FrameError> {
    let mut decoder = Decoder::default();
    decoder.push(body.clone())?;
    decoder.finish()
}

/// Decodes an upload body as its pieces arrive (the server reads a request's body so, rather
/// than gathering it whole first). Each chunk is checked against its id as it completes; a
/// chunk that arrived within one piece is a slice of it, one spread over several is copied
/// once into its own buffer. Faults are the ones [`decode_all`] names, at the same places.
#[derive(Default)]
pub struct Decoder {
    /// Bytes of the body taken so far.
    at: usize,
    /// A header begun in one piece and not finished.
    header: Vec<u8>,
    /// The chunk being gathered: its id, its length, what has arrived.
    current: Option<(ChunkId, usize, BytesMut)>,
    done: Vec<(ChunkId, Bytes)>,
}

impl Decoder {
    /// Takes the body's next piece.
    ///
    /// # Errors
    /// A header over [`MAX_FRAME_LEN`] or a chunk that does not hash to its id.
    pub fn push(&mut self, mut piece: Bytes) -> Result<(), FrameError> {
        while !piece.is_empty() {
            if let Some((id, len, mut data)) = self.current.take() {
                let take = (len - data.len()).min(piece.len());
                data.extend_from_slice(&piece.split_to(take));
                self.at += take;
                if data.len() == len {
                    self.complete(id, data.freeze())?;
                } else {
                    self.current = Some((id, len, data));
                }
                continue;
            }
            let start = self.at - self.header.len();
            let take = (HEADER_LEN - self.header.len()).min(piece.len());
            self.header.extend_from_slice(&piece.split_to(take));
            self.at += take;
            let Ok(header) = <[u8; HEADER_LEN]>::try_from(self.header.as_slice()) else {
                continue;
            };
            self.header.clear();
            let (id, len) = decode_header(&header).ok_or(FrameError::TooLong { at: start })?;
            let len = len as usize;
            if piece.len() >= len {
                // The whole chunk is in this piece: a slice of it, no copy.
                let data = piece.split_to(len);
                self.at += len;
                self.complete(id, data)?;
            } else {
                self.current = Some((id, len, BytesMut::with_capacity(len)));
            }
        }
        Ok(())
    }

    /// Chunks completed so far.
    pub fn chunks(&self) -> usize {
        self.done.len()
    }

    /// The body's chunks, once it has ended.
    ///
    /// # Errors
    /// The body ended inside a header or a chunk.
    pub fn finish(self) -> Result<Vec<(ChunkId, Bytes)>, FrameError> {
        if let Some((id, _, _)) = self.current {
            return Err(FrameError::TruncatedChunk { id });
        }
        if !self.header.is_empty() {
            return Err(FrameError::TruncatedHeader {
                at: self.at - self.header.len(),
            });
        }
        Ok(self.done)
    }

    fn complete(&mut self, id: ChunkId, data: Bytes) -> Result<(), FrameError> {
        if ChunkId::of(&data) != id {
            return Err(FrameError::Mismatch { id });
        }
        self.done.push((id, data));
        Ok(())
    }
}

/// Encodes chunks as one upload body: the inverse of [`decode_all`] for chunks of at most
/// [`MAX_FRAME_LEN`] bytes (the chunker cuts at 2 MiB; a longer chunk is refused by the
/// receiver, never silently cut).
pub fn encode_all(chunks: &[(ChunkId, Bytes)]) -> Bytes {
    let pieces = encode_pieces(chunks);
    let mut body = Vec::with_capacity(pieces.iter().map(Bytes::len).sum());
    for piece in &pieces {
        body.extend_from_slice(piece);
    }
    Bytes::from(body)
}

/// The body [`encode_all`] makes, as its pieces in order: each frame's header, then the
/// chunk's own bytes (shared, not copied), for a body sent as it is read.
pub fn encode_pieces(chunks: &[(ChunkId, Bytes)]) -> Vec<Bytes> {
    let mut pieces = Vec::with_capacity(chunks.len() * 2);
    for (id, data) in chunks {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        pieces.push(Bytes::copy_from_slice(&encode_header(id, len)));
        pieces.push(data.clone());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(data: &'static [u8]) -> (ChunkId, Bytes) {
        (ChunkId::of(data), Bytes::from_static(data))
    }

    #[test]
    fn frames_round_trip() {
        let chunks = vec![chunk(b"one"), chunk(b""), chunk(b"three")];
        assert_eq!(decode_all(&encode_all(&chunks)), Ok(chunks));
        assert_eq!(decode_all(&Bytes::new()), Ok(Vec::new()));
    }

    /// Every way of cutting a body into pieces decodes as the whole body does, faults
    /// included.
    #[test]
    fn pieces_decode_as_the_whole_body() {
        let chunks = vec![chunk(b"one"), chunk(b""), chunk(b"three"), chunk(&[7; 100])];
        let body = encode_all(&chunks);
        let mut altered = body.to_vec();
        altered[50] ^= 1;
        let cut = body.slice(..body.len() - 3);
        let torn_header = body.slice(..HEADER_LEN + 3 + 10);
        for whole in [body.clone(), Bytes::from(altered), cut, torn_header] {
            let want = decode_all(&whole);
            for step in [1, 2, 5, 35, 36, 37, 64] {
                let mut decoder = Decoder::default();
                let mut got = Ok(());
                for piece in whole.chunks(step) {
                    got = decoder.push(Bytes::copy_from_slice(piece));
                    if got.is_err() {
                        break;
                    }
                }
                let got = got.and_then(|()| decoder.finish());
                assert_eq!(got, want, "pieces of {step} bytes");
            }
        }
    }

    #[test]
    fn faults_are_named_with_their_place() {
        let body = encode_all(&[chunk(b"abc")]);
        let (id, _) = chunk(b"abc");
        let cut = body.slice(..body.len() - 1);
        assert_eq!(decode_all(&cut), Err(FrameError::TruncatedChunk { id }));
        let two = encode_all(&[chunk(b"abc"), chunk(b"d")]);
        let cut = two.slice(..body.len() + 10);
        assert_eq!(
            decode_all(&cut),
            Err(FrameError::TruncatedHeader { at: body.len() })
        );
        let mut altered = body.to_vec();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            decode_all(&Bytes::from(altered)),
            Err(FrameError::Mismatch { id })
        );
        let mut long = encode_header(&id, MAX_FRAME_LEN + 1).to_vec();
        long.extend_from_slice(b"abc");
        assert_eq!(
            decode_all(&Bytes::from(long)),
            Err(FrameError::TooLong { at: 0 })
        );
    }
}
