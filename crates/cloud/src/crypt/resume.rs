//! Resuming an encrypted upload without ever sealing two plaintexts under one nonce.
//!
//! A segment's nonce is its file's id and its index, so an upload taken up again after an
//! interruption sends the same bytes (and the transport's multipart resume skips the parts
//! the service holds) only if it keeps the file id. Keeping it is safe only if every segment
//! sealed under that id again has exactly the plaintext it had before: a file edited between
//! the two tries, or while the first was read, would otherwise put two plaintexts under one
//! nonce, which gives away their XOR and the segment's one-time authentication key.
//!
//! [`SealLog`] is the task's record of uploads in flight (a local file beside the transport's
//! own upload state): per plain path, the random file id, the file's size, what the file was
//! when the upload began (its hash, else its size and time) and a keyed digest of each batch of
//! [`BATCH`] segments sealed under the id, in order. The rules that make reuse safe:
//! - a batch's digest is on disk (written, fsynced, renamed into place) before any segment of
//!   the batch is sealed, so nothing ever left this computer under an id whose record does not
//!   name its plaintext;
//! - under an id, a batch already recorded is sealed again only if its digest is the same
//!   (then its ciphertext is the same bytes too); any difference ends the upload, the record
//!   is dropped, and the next try starts over under a new random id;
//! - every check and append happens under an exclusive lock of the file, re-read each time,
//!   so two processes running the same task cannot both extend one id with different bytes;
//! - a record is reused only for the same path, size and source; it is dropped when the write
//!   is done, or a week after it began (as the transport aborts stale uploads).
//!
//! The alternative, file ids derived from the content (deterministic encryption), was refused:
//! it would show the provider which files have the same content, and an announced hash is
//! only a claim until the whole file has been read.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_engine::{Error, Result};
use serde::{Deserialize, Serialize};

use super::key::{random, Keys};
use super::segment::SEGMENT;

/// Segments per recorded batch (4 MiB of plaintext): what the sealing stream holds before it
/// seals, and one record update each.
pub(crate) const BATCH: usize = 64;
/// Files smaller than this are never resumed: they go in one request anyway (S3's smallest
/// part is 5 MiB), and a record would only cost three updates of the log each.
pub(crate) const RESUMED_FROM: u64 = 5 << 20;
/// Records older than this are dropped (a week, as the transport's stale uploads).
const KEPT_SECS: i64 = crate::multipart::STALE_SECS;

/// One upload in flight.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    /// The file id, hex.
    file_id: String,
    size: u64,
    /// Keyed digest of what the file was when the upload began (its hash, or size and time).
    source: String,
    /// Unix seconds.
    began: i64,
    /// Keyed digests of the batches sealed so far, in order.
    batches: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Log {
    files: BTreeMap<String, Record>,
}

/// The record of encrypted uploads in flight of one task, in `file` (see the module).
#[derive(Debug)]
pub struct SealLog {
    file: PathBuf,
}

/// What identifies the plaintext an upload begins with.
pub(crate) struct Source<'a> {
    pub path: &'a str,
    pub size: u64,
    pub hash: Option<[u8; 32]>,
    pub mtime_ns: i64,
}

impl SealLog {
    pub fn new(file: &Path) -> SealLog {
        SealLog {
            file: file.to_path_buf(),
        }
    }

    /// The file id to seal `src` under: the one of its interrupted upload when that upload
    /// began from the same file, otherwise a new random one (recorded before it is used).
    pub(crate) fn begin(&self, keys: &Keys, src: &Source<'_>) -> Result<[u8; 16]> {
        let source = source_digest(keys, src);
        self.locked(|log| {
            let now = now_secs();
            let before = log.files.len();
            log.files.retain(|_, r| now - r.began < KEPT_SECS);
            let pruned = log.files.len() != before;
            let same = log
                .files
                .get(src.path)
                .filter(|r| r.size == src.size && r.source == source);
            if let Some(id) = same.and_then(|r| parse_id(&r.file_id)) {
                return (Ok(id), pruned);
            }
            let mut id = [0u8; 16];
            if let Err(e) = random(&mut id) {
                return (Err(e), pruned);
            }
            let record = Record {
                file_id: hex(&id),
                size: src.size,
                source,
                began: now,
                batches: Vec::new(),
            };
            log.files.insert(src.path.to_string(), record);
            (Ok(id), true)
        })
    }

    /// Before batch `index` of `path` is sealed under `id`: records its digest, or checks it
    /// against the one recorded. An error means nothing of the batch may be sealed.
    pub(crate) fn check_batch(
        &self,
        path: &str,
        id: &[u8; 16],
        index: usize,
        digest: &str,
    ) -> Result<()> {
        let id = hex(id);
        self.locked(|log| {
            let Some(r) = log.files.get_mut(path).filter(|r| r.file_id == id) else {
                let why = "its record of the upload is gone (done or replaced meanwhile)";
                return (Err(refused(path, why)), false);
            };
            match r.batches.get(index) {
                Some(known) if known == digest => (Ok(()), false),
                Some(_) => {
                    log.files.remove(path);
                    let why = "the file is not what its interrupted upload was sending (it \
                               changed while it was read); it starts over under a new file id";
                    (Err(refused(path, why)), true)
                }
                None if r.batches.len() == index => {
                    r.batches.push(digest.to_string());
                    (Ok(()), true)
                }
                None => (
                    Err(refused(path, "its batches were not sealed in order")),
                    false,
                ),
            }
        })
    }

    /// The upload of `path` under `id` is over (done, or given up for a new one).
    pub(crate) fn finish(&self, path: &str, id: &[u8; 16]) {
        let id = hex(id);
        // A record left behind costs nothing but a reuse that its digests still guard.
        let _ = self.locked(|log| {
            let ours = log.files.get(path).is_some_and(|r| r.file_id == id);
            if ours {
                log.files.remove(path);
            }
            (Ok(()), ours)
        });
    }

    /// Runs `f` on the log under an exclusive lock of its file, re-read first; stores the log
    /// durably (fsync of the file and its folder) when `f` says it changed it.
    fn locked<T>(&self, f: impl FnOnce(&mut Log) -> (Result<T>, bool)) -> Result<T> {
        let fail = |what: &str, e: std::io::Error| {
            Error::Refused(format!(
                "{}: {what}: {e}; nothing more of the upload is sealed or sent",
                self.file.display()
            ))
        };
        let dir = self.file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| fail("making its folder", e))?;
        let lock = open_private(&with_suffix(&self.file, ".lock"), false)
            .map_err(|e| fail("opening its lock", e))?;
        lock.lock().map_err(|e| fail("locking", e))?;
        let mut log: Log = match std::fs::read(&self.file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Log::default(),
            Err(e) => return Err(fail("reading", e)),
        };
        let (out, changed) = f(&mut log);
        if changed {
            let json = serde_json::to_vec(&log).map_err(|e| fail("encoding", e.into()))?;
            let temp = with_suffix(&self.file, ".tmp");
            let mut file = open_private(&temp, true).map_err(|e| fail("writing", e))?;
            file.write_all(&json)
                .and_then(|()| file.sync_all())
                .map_err(|e| fail("writing", e))?;
            std::fs::rename(&temp, &self.file).map_err(|e| fail("renaming into place", e))?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| fail("syncing its folder", e))?;
        }
        out
    }
}

/// The digest of batch `index` (its segments' plaintext, in order) of a file of `size` bytes
/// sealed under `id`.
pub(crate) fn batch_digest(
    keys: &Keys,
    id: &[u8; 16],
    size: u64,
    index: usize,
    segments: &[Vec<u8>],
) -> String {
    let mut h = blake3::Hasher::new_keyed(&keys.resume);
    h.update(b"batch");
    h.update(id);
    h.update(&size.to_be_bytes());
    h.update(&(index as u64).to_be_bytes());
    for s in segments {
        debug_assert!(s.len() <= SEGMENT);
        h.update(&(s.len() as u64).to_be_bytes());
        h.update(s);
    }
    h.finalize().to_hex().to_string()
}

fn source_digest(keys: &Keys, src: &Source<'_>) -> String {
    let mut h = blake3::Hasher::new_keyed(&keys.resume);
    h.update(b"source");
    h.update(&src.size.to_be_bytes());
    match src.hash {
        Some(hash) => h.update(b"hash").update(&hash),
        None => h.update(b"mtime").update(&src.mtime_ns.to_be_bytes()),
    };
    h.finalize().to_hex().to_string()
}

fn refused(path: &str, why: &str) -> Error {
    Error::Refused(format!("{path}: encrypted upload: {why}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_id(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

fn with_suffix(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens `file` for writing, readable by its owner only (the log names the task's files).
fn open_private(file: &Path, truncate: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use cairn_engine::replica::content_of;
    use futures_util::StreamExt;

    use super::super::key::MasterKey;
    use super::super::segment::{open_all, HEADER, SEALED_SEGMENT};
    use super::super::stream::{seal_stream, Resumed};
    use super::*;

    const SIZE: usize = 3 * BATCH * SEGMENT + 1000;

    fn keys() -> Arc<Keys> {
        Arc::new(Keys::derive(&MasterKey::generate().expect("random key")))
    }

    fn data(seed: u8) -> Vec<u8> {
        (0..SIZE)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
            .collect()
    }

    fn source(path: &str, hash: [u8; 32]) -> Source<'_> {
        Source {
            path,
            size: SIZE as u64,
            hash: Some(hash),
            mtime_ns: 1,
        }
    }

    /// Seals `plain` under the record's id and takes at most `pieces` pieces of the stream
    /// (an upload cut off there): the bytes handed on, and the error that ended it, if any.
    async fn sealed(
        keys: &Arc<Keys>,
        log: &Arc<SealLog>,
        plain: &[u8],
        claimed: [u8; 32],
        pieces: usize,
    ) -> (Vec<u8>, Option<String>) {
        let id = log.begin(keys, &source("big.bin", claimed)).expect("begin");
        let resumed = Resumed {
            log: log.clone(),
            path: "big.bin".into(),
            id,
        };
        let content = content_of(Bytes::copy_from_slice(plain));
        let hash = Some(cairn_model::ContentHash::from_bytes(claimed));
        let mut stream = seal_stream(
            keys.clone(),
            content,
            SIZE as u64,
            hash,
            "big.bin".into(),
            Some(resumed),
        )
        .expect("seal");
        let mut out = Vec::new();
        for _ in 0..pieces {
            match stream.next().await {
                Some(Ok(piece)) => out.extend_from_slice(&piece),
                Some(Err(e)) => return (out, Some(e.to_string())),
                None => break,
            }
        }
        (out, None)
    }

    fn hash_of(plain: &[u8]) -> [u8; 32] {
        *blake3::hash(plain).as_bytes()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_cut_off_is_taken_up_again_with_the_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(SealLog::new(&dir.path().join("t.sealed")));
        let k = keys();
        let plain = data(1);
        // Cut off inside the second batch.
        let (first, failed) = sealed(&k, &log, &plain, hash_of(&plain), 1 + BATCH + 3).await;
        assert_eq!(failed, None);
        let (whole, failed) = sealed(&k, &log, &plain, hash_of(&plain), usize::MAX).await;
        assert_eq!(failed, None);
        assert!(
            whole.starts_with(&first),
            "the resumed upload sends the same bytes"
        );
        assert_eq!(open_all(&k, &whole).expect("opens"), plain);
        // Done: the record goes, and the next upload of the file has a new id.
        let id = parse_id(&hex(&whole[8..HEADER])).expect("id");
        log.finish("big.bin", &id);
        let (again, _) = sealed(&k, &log, &plain, hash_of(&plain), 1).await;
        assert_ne!(again[..HEADER], whole[..HEADER], "a new file id");
    }

    /// The file changed under the same announced hash (it was edited while the first try
    /// read it): the second batch is never sealed under the old id with other bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_with_other_bytes_is_never_sealed_under_a_used_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(SealLog::new(&dir.path().join("t.sealed")));
        let k = keys();
        let plain = data(1);
        let claimed = hash_of(&plain);
        let mut edited = plain.clone();
        edited[BATCH * SEGMENT + 5] ^= 0xff;
        let (first, _) = sealed(&k, &log, &edited, claimed, 1 + BATCH + 1).await;
        let (second, failed) = sealed(&k, &log, &plain, claimed, usize::MAX).await;
        let failed = failed.expect("refused at the changed batch");
        assert!(
            failed.contains("starts over under a new file id"),
            "{failed}"
        );
        // Only the first batch went again: the same bytes as before.
        assert_eq!(second.len(), HEADER + BATCH * SEALED_SEGMENT);
        assert!(first.starts_with(&second));
        // The next try has a new id, and goes through.
        let (third, failed) = sealed(&k, &log, &plain, claimed, usize::MAX).await;
        assert_eq!(failed, None);
        assert_ne!(third[..HEADER], first[..HEADER]);
        assert_eq!(open_all(&k, &third).expect("opens"), plain);
    }

    #[test]
    fn another_file_or_another_size_gets_a_new_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = SealLog::new(&dir.path().join("t.sealed"));
        let k = keys();
        let a = log.begin(&k, &source("big.bin", [1; 32])).expect("begin");
        assert_eq!(
            log.begin(&k, &source("big.bin", [1; 32])).expect("begin"),
            a
        );
        let b = log.begin(&k, &source("big.bin", [2; 32])).expect("begin");
        assert_ne!(a, b, "another hash");
        let mut src = source("big.bin", [2; 32]);
        src.size += 1;
        assert_ne!(log.begin(&k, &src).expect("begin"), b, "another size");
        // The record names no plaintext: digests are keyed.
        let text = std::fs::read_to_string(dir.path().join("t.sealed")).expect("log");
        assert!(!text.contains(&hex(&[2; 32])), "{text}");
    }
}
