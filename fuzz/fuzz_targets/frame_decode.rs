//! The chunk-upload body decoder (`cairn_protocol::frame::decode_all` and `Decoder`, which the
//! server runs on every upload as its pieces arrive).
//!
//! Odd first byte: any bytes; what decodes must be exactly its chunks re-encoded, each matching
//! its id. Even: a valid body built from the input (chunks split at 0xff bytes), then cut and
//! altered where the input says, since random bytes almost never hash to a frame's id.

#![no_main]

use bytes::Bytes;
use cairn_model::ChunkId;
use cairn_protocol::frame::{self, FrameError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 1 {
        any_bytes(rest);
    } else if let [a, b, c, d, rest @ ..] = rest {
        let cut = usize::from(u16::from_le_bytes([*a, *b]));
        let flip = usize::from(u16::from_le_bytes([*c, *d]));
        built(rest, cut, flip);
    }
});

fn any_bytes(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    if let Ok(chunks) = frame::decode_all(&body) {
        for (id, d) in &chunks {
            assert_eq!(ChunkId::of(d), *id);
        }
        assert_eq!(frame::encode_all(&chunks), body);
    }
}

fn built(data: &[u8], cut: usize, flip: usize) {
    let chunks: Vec<(ChunkId, Bytes)> = data
        .split(|b| *b == 0xff)
        .map(|c| (ChunkId::of(c), Bytes::copy_from_slice(c)))
        .collect();
    let body = frame::encode_all(&chunks);
    assert_eq!(frame::decode_all(&body).as_ref(), Ok(&chunks));

    // A cut body is refused as truncated, or (cut between frames) is the chunks before the cut.
    if cut < body.len() {
        let short = body.slice(..cut);
        match frame::decode_all(&short) {
            Ok(prefix) => {
                assert!(chunks.starts_with(&prefix));
                assert_eq!(frame::encode_all(&prefix), short);
            }
            Err(FrameError::TruncatedHeader { .. } | FrameError::TruncatedChunk { .. }) => {}
            Err(e) => panic!("a cut body was refused as {e}"),
        }
    }

    // The same body in two pieces, split where the input says, decodes the same (the server
    // decodes a body as its pieces arrive).
    let at = cut.min(body.len());
    let mut decoder = frame::Decoder::default();
    let mut two = decoder.push(body.slice(..at));
    if two.is_ok() {
        two = decoder.push(body.slice(at..));
    }
    assert_eq!(two.and_then(|()| decoder.finish()).as_ref(), Ok(&chunks));

    // One altered byte anywhere is never accepted.
    if flip < body.len() {
        let mut altered = body.to_vec();
        altered[flip] ^= 0x01;
        assert!(frame::decode_all(&Bytes::from(altered)).is_err());
    }
}
