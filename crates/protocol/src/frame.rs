//! Chunk-upload frames: `id (32 bytes) | length (u32, big-endian) | bytes`, repeated.
//!
//! Raw frames instead of JSON keep a 1 GiB upload free of base64; the receiver re-hashes each
//! chunk, so a frame whose bytes do not match its id is refused rather than trusted.

use cairn_model::ChunkId;

/// Largest chunk a frame may carry.
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;
pub const HEADER_LEN: usize = 36;
/// Most frames one upload request may carry: registering them is work under the server's
/// write lock, and this keeps any one request's share of it short.
pub const MAX_FRAMES_PER_UPLOAD: usize = 10_000;

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
