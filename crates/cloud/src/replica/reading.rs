//! Reading an object's content: in ranged pieces on object stores, checked against the MD5
//! the service gives, slowed to the connection's download limit where our transport does not
//! do it.
//!
//! A head read under `If-Match` can find the object replaced or gone after its first pieces
//! (another computer's task at work on the same path). Where versions are kept, the replaced
//! content was copied aside first: the read goes on from the same byte in that copy, so a file
//! is not failed only because it was edited while it downloaded. Without a kept copy the
//! error says the object changed since it was listed, and the next pass sees it anew.

use bytes::Bytes;
use cairn_engine::replica::{Content, Version};
use cairn_engine::Error;
use cairn_model::RelPath;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use opendal::Operator;

use super::{checked, versions, CloudReplica};

/// Content pieces as the service gives them, errors still the service's.
type Pieces = BoxStream<'static, std::io::Result<Bytes>>;

impl CloudReplica {
    /// The content of object `key`, only if it is still `if_match` when given.
    pub(super) async fn stream(
        &self,
        key: &str,
        if_match: Option<&str>,
    ) -> std::result::Result<Content<'static>, opendal::Error> {
        let pieces = pieces(&self.op, self.piece_size(), key, if_match, 0).await?;
        self.finish(pieces, key, if_match).await
    }

    /// The content of `path` while it is still the head at `version` (under `if_match`), or,
    /// when it is replaced part way, the rest from the copy kept of `version`.
    pub(super) async fn head_stream(
        &self,
        path: &RelPath,
        version: &Version,
        if_match: Option<&str>,
    ) -> std::result::Result<Content<'static>, opendal::Error> {
        let key = path.as_str();
        let pieces = pieces(&self.op, self.piece_size(), key, if_match, 0).await?;
        let pieces = match versions::kept_name(self, path, version) {
            Some(kept) => or_kept(pieces, self.op.clone(), self.piece_size(), kept),
            None => pieces,
        };
        self.finish(pieces, key, if_match).await
    }

    /// Ranged pieces on object stores; one plain read on file-like services (an FTP range
    /// read left open blocks the connection's next command).
    fn piece_size(&self) -> Option<usize> {
        (self.atomic_put && self.op.info().scheme() != "ftp").then_some(self.opts.part_size)
    }

    /// `pieces` of object `key` as content: errors said in our words, the download limit
    /// applied, the whole checked against the MD5 the service gives for it.
    async fn finish(
        &self,
        pieces: Pieces,
        key: &str,
        if_match: Option<&str>,
    ) -> std::result::Result<Content<'static>, opendal::Error> {
        let describe = self.describe.clone();
        let stream = pieces
            .map_err({
                let (describe, key) = (describe.clone(), key.to_string());
                move |e| match service_error(&e) {
                    Some(inner) if is_changed(inner) => changed(&describe, &key),
                    _ => Error::Remote {
                        message: format!("{describe}/{key}: reading: {e}"),
                        temporary: true,
                    },
                }
            })
            .boxed();
        let stream = if self.own_transport && self.limits.down.is_some() {
            let (limits, counters) = (self.limits.clone(), self.counters.clone());
            stream
                .and_then(move |piece| {
                    let (limits, counters) = (limits.clone(), counters.clone());
                    async move {
                        limits.take_down(piece.len() as u64, &counters).await;
                        Ok(piece)
                    }
                })
                .boxed()
        } else {
            stream
        };
        let md5 = match if_match.and_then(|t| self.md5_etag(t)) {
            Some(md5) => Some(md5),
            None => self.stated_md5(key, if_match).await?,
        };
        Ok(match md5 {
            Some(md5) => checked::md5_checked(stream, md5, format!("{describe}/{key}")),
            None => stream,
        })
    }

    /// The MD5 of object `key`'s content where the service's stat gives one (seed 002: compare
    /// the provider's MD5): Azure's and GCS's of an object written in one request, Swift's
    /// ETag of a plain object (a large object's is quoted, and not an MD5 of the content).
    async fn stated_md5(
        &self,
        key: &str,
        if_match: Option<&str>,
    ) -> std::result::Result<Option<[u8; 16]>, opendal::Error> {
        let scheme = self.op.info().scheme();
        if !matches!(scheme, "azblob" | "gcs" | "swift") {
            return Ok(None);
        }
        let mut stat = self.op.stat_with(key);
        if let Some(tag) = if_match.filter(|_| self.caps().stat_with_if_match) {
            stat = stat.if_match(tag);
        }
        let meta = stat.await?;
        let from_etag = || {
            meta.etag()
                .filter(|t| scheme == "swift" && !t.starts_with('"'))
                .and_then(checked::parse_md5_hex)
        };
        Ok(meta
            .content_md5()
            .and_then(checked::parse_md5)
            .or_else(from_etag))
    }

    /// The MD5 an ETag is, where the service says so: S3's ETag of an object written in one
    /// part (seed 002: compare the provider's MD5 where it gives one).
    fn md5_etag(&self, quoted: &str) -> Option<[u8; 16]> {
        if self.op.info().scheme() != "s3" {
            return None;
        }
        checked::parse_md5_hex(quoted.trim_matches('"'))
    }

    pub(super) fn read_error(&self, path: &RelPath, e: opendal::Error) -> Error {
        if is_changed(&e) {
            return changed(&self.describe, path.as_str());
        }
        self.fail("reading", path.as_str(), e)
    }
}

/// The pieces of object `key` from byte `from` on, only while it is still `if_match`.
async fn pieces(
    op: &Operator,
    piece_size: Option<usize>,
    key: &str,
    if_match: Option<&str>,
    from: u64,
) -> std::result::Result<Pieces, opendal::Error> {
    let mut reader = op.reader_with(key);
    if let Some(size) = piece_size {
        reader = reader.chunk(size);
    }
    if let Some(tag) = if_match {
        reader = reader.if_match(tag);
    }
    Ok(reader.await?.into_bytes_stream(from..).await?.boxed())
}

/// `head`, or, once it says the object changed, the rest from the kept copy `kept` (found
/// then: it is made when the head is replaced). Switches once; any other error passes on.
fn or_kept(
    head: Pieces,
    op: Operator,
    piece_size: Option<usize>,
    kept: versions::KeptName,
) -> Pieces {
    struct State {
        now: Pieces,
        read: u64,
        switched: bool,
        op: Operator,
        piece_size: Option<usize>,
        kept: versions::KeptName,
    }
    let state = State {
        now: head,
        read: 0,
        switched: false,
        op,
        piece_size,
        kept,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            let e = match s.now.next().await? {
                Ok(bytes) => {
                    s.read += bytes.len() as u64;
                    return Some((Ok(bytes), s));
                }
                Err(e) => e,
            };
            if s.switched || !service_error(&e).is_some_and(is_changed) {
                return Some((Err(e), s));
            }
            s.switched = true;
            let rest = match s.kept.find(&s.op).await {
                Ok(Some(key)) => pieces(&s.op, s.piece_size, &key, None, s.read).await,
                // Not kept (pruned, or never copied): the object changed, as `e` says.
                Ok(None) => return Some((Err(e), s)),
                Err(other) => Err(other),
            };
            match rest {
                Ok(rest) => s.now = rest,
                Err(other) => return Some((Err(other.into()), s)),
            }
        }
    })
    .boxed()
}

/// The service's own error inside an error of a piece stream.
fn service_error(e: &std::io::Error) -> Option<&opendal::Error> {
    e.get_ref()?.downcast_ref::<opendal::Error>()
}

/// The object is no longer the version asked for: replaced (`If-Match` failed) or gone.
pub(super) fn is_changed(e: &opendal::Error) -> bool {
    matches!(
        e.kind(),
        opendal::ErrorKind::ConditionNotMatch | opendal::ErrorKind::NotFound
    )
}

pub(super) fn changed(describe: &str, path: &str) -> Error {
    Error::Refused(format!(
        "{describe}/{path}: changed on the remote since it was listed"
    ))
}
