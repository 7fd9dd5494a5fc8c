//! Content in flight: a plain stream sealed into a stored one on the way to the inner replica,
//! and a stored stream opened on the way back, one segment at a time (memory: a segment and
//! whatever piece the other side handed over, never the whole file). A resumable upload is
//! sealed a batch of segments at a time instead, each batch checked against the upload's
//! record before any of it is sealed (`resume`).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cairn_engine::replica::Content;
use cairn_engine::{Error, Result};
use cairn_model::ContentHash;
use futures_util::stream::{self, StreamExt};

use super::key::Keys;
use super::resume::{batch_digest, SealLog, BATCH};
use super::segment::{segments, Opener, Sealer, SegmentError, HEADER, SEALED_SEGMENT, SEGMENT};

/// An upload sealed under a file id its record keeps (see `resume`).
pub(crate) struct Resumed {
    pub log: Arc<SealLog>,
    /// The plain path, as the record names it.
    pub path: String,
    pub id: [u8; 16],
}

/// What sealing needs between two pieces.
struct Sealing<'a> {
    input: Content<'a>,
    /// Received and not yet sealed.
    pending: Bytes,
    keys: Arc<Keys>,
    sealer: Sealer,
    resumed: Option<Resumed>,
    header_sent: bool,
    /// Sealed and not yet handed on.
    ready: VecDeque<Bytes>,
    /// Segments read so far.
    next: u64,
    count: u64,
    size: u64,
    hasher: blake3::Hasher,
    hash: Option<ContentHash>,
    what: String,
}

/// `plain`, announced as `size` bytes with `hash`, sealed (under the file id of `resumed`
/// when given, a new random one otherwise). The stream fails (and so the write it feeds)
/// when the content is not `size` bytes or does not match `hash`; both are checked before
/// the last segment is sealed, so a wrong file never becomes a whole object.
pub(crate) fn seal_stream<'a>(
    keys: Arc<Keys>,
    plain: Content<'a>,
    size: u64,
    hash: Option<ContentHash>,
    what: String,
    resumed: Option<Resumed>,
) -> Result<Content<'a>> {
    let sealer = match &resumed {
        Some(r) => Sealer::with_file_id(&keys, r.id),
        None => Sealer::new(&keys)?,
    };
    let state = Sealing {
        input: plain,
        pending: Bytes::new(),
        keys,
        sealer,
        resumed,
        header_sent: false,
        ready: VecDeque::new(),
        next: 0,
        count: segments(size),
        size,
        hasher: blake3::Hasher::new(),
        hash,
        what,
    };
    Ok(stream::try_unfold(state, seal_next).boxed())
}

async fn seal_next(mut st: Sealing<'_>) -> Result<Option<(Bytes, Sealing<'_>)>> {
    if !st.header_sent {
        st.header_sent = true;
        let header = Bytes::copy_from_slice(st.sealer.header());
        return Ok(Some((header, st)));
    }
    if let Some(sealed) = st.ready.pop_front() {
        return Ok(Some((sealed, st)));
    }
    if st.next == st.count {
        return Ok(None);
    }
    let first = st.next;
    let batch = if st.resumed.is_some() {
        BATCH as u64
    } else {
        1
    };
    let mut plain = Vec::new();
    while st.next < st.count && st.next - first < batch {
        plain.push(read_segment(&mut st).await?);
    }
    if st.next == st.count {
        check_end(&mut st).await?;
    }
    if let Some(r) = &st.resumed {
        let index = (first / BATCH as u64) as usize;
        let digest = batch_digest(&st.keys, &r.id, st.size, index, &plain);
        let (log, path, id) = (r.log.clone(), r.path.clone(), r.id);
        tokio::task::spawn_blocking(move || log.check_batch(&path, &id, index, &digest))
            .await
            .map_err(|e| Error::Refused(format!("{}: recording the upload: {e}", st.what)))??;
    }
    for (i, mut buf) in plain.into_iter().enumerate() {
        let last = first + i as u64 + 1 == st.count;
        st.sealer.seal(&mut buf, last);
        st.ready.push_back(Bytes::from(buf));
    }
    Ok(st.ready.pop_front().map(|sealed| (sealed, st)))
}

/// The plaintext of the next segment (counted into the file's hash).
async fn read_segment(st: &mut Sealing<'_>) -> Result<Vec<u8>> {
    let want = if st.next + 1 == st.count {
        (st.size - SEGMENT as u64 * (st.count - 1)) as usize
    } else {
        SEGMENT
    };
    let mut buf = Vec::with_capacity(SEALED_SEGMENT);
    while buf.len() < want {
        if st.pending.is_empty() {
            match st.input.next().await {
                Some(piece) => st.pending = piece?,
                None => {
                    let got = SEGMENT as u64 * st.next + buf.len() as u64;
                    return Err(Error::Refused(format!(
                        "{}: the content ended after {got} bytes where {} were announced; \
                         nothing was stored",
                        st.what, st.size
                    )));
                }
            }
            continue;
        }
        let n = (want - buf.len()).min(st.pending.len());
        buf.extend_from_slice(&st.pending.split_to(n));
    }
    st.hasher.update(&buf);
    st.next += 1;
    Ok(buf)
}

/// After the announced size: nothing more may come, and the hash must match.
async fn check_end(st: &mut Sealing<'_>) -> Result<()> {
    let mut extra = st.pending.len() as u64;
    while let Some(piece) = st.input.next().await {
        extra += piece?.len() as u64;
    }
    if extra > 0 {
        return Err(Error::Refused(format!(
            "{}: {extra} bytes more than the {} announced arrived; nothing was stored",
            st.what, st.size
        )));
    }
    if let Some(want) = st.hash {
        let got = ContentHash::from_bytes(*st.hasher.finalize().as_bytes());
        if got != want {
            return Err(Error::Refused(format!(
                "{}: the content does not match its hash; nothing was stored",
                st.what
            )));
        }
    }
    Ok(())
}

/// What opening needs between two pieces.
struct Opening {
    input: Content<'static>,
    buf: BytesMut,
    keys: Arc<Keys>,
    opener: Option<Opener>,
    ended: bool,
    done: bool,
    what: String,
}

/// The plaintext of the stored stream `stored`; fails at the first segment that does not
/// authenticate, saying which and why (`what` names the file).
pub(crate) fn open_stream(
    keys: Arc<Keys>,
    stored: Content<'static>,
    what: String,
) -> Content<'static> {
    let state = Opening {
        input: stored,
        buf: BytesMut::new(),
        keys,
        opener: None,
        ended: false,
        done: false,
        what,
    };
    stream::try_unfold(state, open_next).boxed()
}

async fn open_next(mut st: Opening) -> Result<Option<(Bytes, Opening)>> {
    loop {
        if st.done {
            return Ok(None);
        }
        // One byte past a whole segment tells whether the segment is the last.
        let need = if st.opener.is_some() {
            SEALED_SEGMENT + 1
        } else {
            HEADER
        };
        while !st.ended && st.buf.len() < need {
            match st.input.next().await {
                Some(piece) => st.buf.extend_from_slice(&piece?),
                None => st.ended = true,
            }
        }
        let what = &st.what;
        let fail = |e: SegmentError| Error::Refused(format!("{what}: {e}; not used"));
        let Some(opener) = st.opener.as_mut() else {
            if st.buf.len() < HEADER {
                return Err(fail(SegmentError::TooShort));
            }
            let header = st.buf.split_to(HEADER);
            st.opener = Some(Opener::new(&st.keys, &header).map_err(fail)?);
            continue;
        };
        let last = st.buf.len() <= SEALED_SEGMENT;
        let mut segment = st.buf.split_to(st.buf.len().min(SEALED_SEGMENT)).to_vec();
        opener.open(&mut segment, last).map_err(fail)?;
        st.done = last;
        if !segment.is_empty() {
            return Ok(Some((Bytes::from(segment), st)));
        }
    }
}
