//! Chunk-upload frames: `id (32 bytes) | length (u32, big-endian) | bytes`, repeated.
//!
//! Raw frames instead of JSON keep a 1 GiB upload free of base64; the receiver re-hashes each
//! chunk, so a frame whose bytes do not match its id is refused rather than trusted.
//! [`decode_all`] is the one decoder of an upload body (the server calls it on the blocking pool);
//! it is pure so that it can be fuzzed on its own.

use bytes::Bytes;
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
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let header: &[u8; HEADER_LEN] = body
            .get(at..)
            .and_then(|rest| rest.get(..HEADER_LEN))
            .and_then(|h| h.try_into().ok())
            .ok_or(FrameError::TruncatedHeader { at })?;
        let (id, len) = decode_header(header).ok_or(FrameError::TooLong { at })?;
        let start = at + HEADER_LEN;
        let end = start
            .checked_add(len as usize)
            .filter(|end| *end <= body.len())
            .ok_or(FrameError::TruncatedChunk { id })?;
        let data = body.slice(start..end);
        if ChunkId::of(&data) != id {
            return Err(FrameError::Mismatch { id });
        }
        out.push((id, data));
        at = end;
    }
    Ok(out)
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
