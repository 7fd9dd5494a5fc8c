//! Content storage behind one small trait, [`ObjectStore`], so the server's chunk store can move
//! from a local folder to S3 without touching its callers.
//!
//! [`OpendalStore`] is the one place that builds OpenDAL operators (the `fs` and `s3`
//! services, from a [`StoreLocation`]); [`MemoryStore`] serves unit tests. Keys are typed
//! ([`ObjectKey`]) and [`ObjectKey::path`] is the single mapping from a key to an object name.

mod http;
mod local_put;
mod location;

pub use location::{LocationError, S3Credentials, S3Location, StoreLocation};

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use cairn_model::{ChunkId, PackId};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

/// What is stored: large chunks one object each, small chunks packed together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKey {
    Chunk(ChunkId),
    Pack(PackId),
}

impl ObjectKey {
    /// The object name: `chunks/ab/cd/<hex>` or `packs/ab/<hex>`; fan-out keeps folders
    /// small on disk.
    pub fn path(&self) -> String {
        match self {
            ObjectKey::Chunk(id) => {
                let hex = id.to_hex();
                format!("chunks/{}/{}/{}", &hex[..2], &hex[2..4], hex)
            }
            ObjectKey::Pack(id) => {
                let hex = id.to_hex();
                format!("packs/{}/{}", &hex[..2], hex)
            }
        }
    }

    fn from_path(path: &str) -> Option<ObjectKey> {
        let name = path.rsplit('/').next()?;
        if path.starts_with("chunks/") {
            ChunkId::parse(name).ok().map(ObjectKey::Chunk)
        } else if path.starts_with("packs/") {
            PackId::parse(name).map(ObjectKey::Pack)
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("object {key} not found in {store}")]
    NotFound { store: String, key: String },
    #[error("storage full while writing {key} to {store}")]
    Full { store: String, key: String },
    /// The store cannot be used at all (no such bucket, refused credentials).
    #[error("{store}: {why}")]
    Unusable { store: String, why: String },
    #[error("{op} {key} in {store}")]
    Backend {
        op: &'static str,
        store: String,
        key: String,
        temporary: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// True when retrying the same call may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Error::Backend {
                temporary: true,
                ..
            }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An object store. Object-safe; held as `Arc<dyn ObjectStore>`.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A short description for messages (`fs:/srv/cairn/chunks`).
    fn describe(&self) -> String;

    /// Reads a whole object.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist.
    async fn get(&self, key: &ObjectKey) -> Result<Bytes>;

    /// Reads `range` of an object; a range past the end is cut at the end.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist.
    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes>;

    /// Writes an object whole. A partial write is never visible under `key`; writing a key that
    /// exists replaces it.
    ///
    /// # Errors
    /// [`Error::Full`] when the backend ran out of space.
    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()>;

    /// The object's size, or `None` when it does not exist.
    async fn stat(&self, key: &ObjectKey) -> Result<Option<u64>>;

    /// Every key whose path starts with `prefix` (`"chunks/"`, `"packs/"`), streamed as the
    /// backend pages them, so a listing of millions of objects is never held whole.
    fn list(&self, prefix: &str) -> KeyStream;

    /// Deletes an object; deleting a missing key succeeds.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Makes every completed `put` durable (fsync on disks; nothing on stores that are durable
    /// on acknowledgement).
    async fn sync(&self) -> Result<()>;

    /// Lists one key to find out whether the store can be used: a missing bucket or refused
    /// credentials fail here, at start, naming the store, rather than at the first upload.
    ///
    /// # Errors
    /// [`Error::Unusable`] saying why.
    async fn probe(&self) -> Result<()> {
        let first = self.list("chunks/").next().await;
        match first {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(Error::Backend { source, .. })) => {
                let kind = source
                    .downcast_ref::<opendal::Error>()
                    .map(opendal::Error::kind);
                let why = match kind {
                    Some(opendal::ErrorKind::ConfigInvalid) => {
                        format!("the bucket does not exist or cannot be used ({source})")
                    }
                    Some(opendal::ErrorKind::PermissionDenied) => format!(
                        "access denied: check the credentials (AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY, or the config file) ({source})"
                    ),
                    _ => format!("cannot be reached: {source}"),
                };
                Err(Error::Unusable {
                    store: self.describe(),
                    why,
                })
            }
            Some(Err(e)) => Err(e),
        }
    }
}

/// The keys of a listing, in no particular order.
pub type KeyStream = BoxStream<'static, Result<ObjectKey>>;

/// Times a temporary failure (a dropped connection, a 503, a "slow down") is sent again before
/// the caller sees it; the waits grow from 1 s, with jitter.
const RETRIES: usize = 4;

/// An [`ObjectStore`] over an OpenDAL operator.
pub struct OpendalStore {
    op: opendal::Operator,
    name: String,
    /// Set for the local-disk service: the folder `sync` flushes.
    fs_root: Option<PathBuf>,
    /// Local disk only: each object is synced as it is written, as `syncfs` does not reach
    /// the disk there (FUSE).
    sync_each: bool,
    /// HTTP requests sent (S3 only).
    requests: Option<Arc<AtomicU64>>,
}

impl OpendalStore {
    /// A store in a local folder (OpenDAL `fs`), created if missing. Writes go through a
    /// temporary folder inside it so a partial object is never visible.
    ///
    /// # Errors
    /// When the folder cannot be created or the operator cannot be built.
    pub fn local(root: &Path) -> Result<Self> {
        let name = format!("fs:{}", root.display());
        let tmp = root.join(".tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(|e| backend("create", &name, &tmp.display().to_string(), e))?;
        let builder = opendal::services::Fs::default()
            .root(&root.to_string_lossy())
            .atomic_write_dir(&tmp.to_string_lossy());
        let op = opendal::Operator::new(builder).map_err(|e| backend("open", &name, "", e))?;
        // No retry layer: OpenDAL calls every unknown disk error temporary, a full disk
        // included, and retrying one only delays the answer.
        Ok(OpendalStore {
            op,
            name,
            fs_root: Some(root.to_path_buf()),
            sync_each: !local_put::syncfs_is_durable(root),
            requests: None,
        })
    }

    /// The store a [`StoreLocation`] names; `credentials` apply to S3 only (without them the
    /// standard AWS environment variables and profile files are used). Nothing is contacted
    /// yet: [`OpendalStore::probe`] does.
    ///
    /// # Errors
    /// When a local folder cannot be created or the operator cannot be built.
    pub fn open(location: &StoreLocation, credentials: Option<&S3Credentials>) -> Result<Self> {
        match location {
            StoreLocation::Local(path) => Self::local(path),
            StoreLocation::S3(s3) => Self::s3(s3, credentials),
        }
    }

    /// A store in an S3 bucket (OpenDAL `s3`), path-style addressed. Reads are one ranged GET
    /// each; a PUT is atomic on S3, so no temporary names are needed.
    ///
    /// # Errors
    /// When the operator cannot be built.
    pub fn s3(location: &S3Location, credentials: Option<&S3Credentials>) -> Result<Self> {
        let name = location.to_string();
        let mut builder = opendal::services::S3::default()
            .bucket(&location.bucket)
            .root(&format!("/{}", location.prefix));
        if let Some(endpoint) = &location.endpoint {
            builder = builder.endpoint(endpoint);
        }
        // S3-compatible services ignore the region but the signature names one.
        match (&location.region, &location.endpoint) {
            (Some(region), _) => builder = builder.region(region),
            (None, Some(_)) if std::env::var_os("AWS_REGION").is_none() => {
                builder = builder.region("us-east-1");
            }
            _ => {}
        }
        if let Some(c) = credentials {
            builder = builder
                .access_key_id(&c.access_key_id)
                .secret_access_key(&c.secret_access_key);
        }
        let op = opendal::Operator::new(builder).map_err(|e| Error::Unusable {
            store: name.clone(),
            why: e.to_string(),
        })?;
        let transport = http::Transport::new().map_err(|why| Error::Unusable {
            store: name.clone(),
            why,
        })?;
        let requests = transport.requests.clone();
        let ctx = opendal::OperationContext::new()
            .with_http_transport(opendal::HttpTransporter::new(transport));
        Ok(OpendalStore {
            op: with_retries(op.with_context(ctx)),
            name,
            fs_root: None,
            sync_each: false,
            requests: Some(requests),
        })
    }

    /// HTTP requests sent so far (`None` for a local store).
    pub fn requests_sent(&self) -> Option<u64> {
        self.requests.as_ref().map(|r| r.load(Ordering::Relaxed))
    }

    /// [`ObjectStore::put`] on the local disk (see `local_put`).
    async fn put_local(&self, root: PathBuf, key: &ObjectKey, data: Bytes) -> Result<()> {
        let rel = key.path();
        let (at, sync_each) = (rel.clone(), self.sync_each);
        let written =
            tokio::task::spawn_blocking(move || local_put::put(&root, &at, &data, sync_each))
                .await
                .map_err(|e| backend("write", &self.name, &rel, e))?;
        written.map_err(|e| match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Error::Full {
                store: self.name.clone(),
                key: rel.clone(),
            },
            _ => backend("write", &self.name, &rel, e),
        })
    }

    fn map(&self, op: &'static str, key: &ObjectKey, e: opendal::Error) -> Error {
        let k = key.path();
        match e.kind() {
            opendal::ErrorKind::NotFound => Error::NotFound {
                store: self.name.clone(),
                key: k,
            },
            _ if is_full(&e) => Error::Full {
                store: self.name.clone(),
                key: k,
            },
            _ => Error::Backend {
                op,
                store: self.name.clone(),
                key: k,
                temporary: e.is_temporary(),
                source: Box::new(e),
            },
        }
    }
}

fn with_retries(op: opendal::Operator) -> opendal::Operator {
    op.layer(
        opendal::layers::RetryLayer::new()
            .with_jitter()
            .with_max_times(RETRIES),
    )
}

/// Whether `e` says the store has no room: a full disk or a quota (an I/O error of that kind
/// somewhere in its causes; the S3 transport reports a bucket's or account's refusal so).
fn is_full(e: &opendal::Error) -> bool {
    use std::io::ErrorKind as K;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), K::StorageFull | K::QuotaExceeded) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

fn list_error(store: &str, prefix: &str, e: opendal::Error) -> Error {
    Error::Backend {
        op: "list",
        store: store.to_string(),
        key: prefix.to_string(),
        temporary: e.is_temporary(),
        source: Box::new(e),
    }
}

fn backend(
    op: &'static str,
    store: &str,
    key: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Backend {
        op,
        store: store.to_string(),
        key: key.to_string(),
        temporary: false,
        source: Box::new(e),
    }
}

#[async_trait]
impl ObjectStore for OpendalStore {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        let buf = self
            .op
            .read(&key.path())
            .await
            .map_err(|e| self.map("read", key, e))?;
        Ok(buf.to_bytes())
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        // One ranged GET. Only when it fails is the size asked: a range running past the end
        // of a (truncated) object is refused by the reader, and is then read cut at the end.
        let err = match self.op.read_with(&key.path()).range(range.clone()).await {
            Ok(buf) => return Ok(buf.to_bytes()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
                return Err(self.map("read", key, e))
            }
            Err(e) => e,
        };
        match self.stat(key).await? {
            Some(size) if size < range.end => {
                let cut = range.start.min(size)..size;
                if cut.is_empty() {
                    return Ok(Bytes::new());
                }
                let buf = self
                    .op
                    .read_with(&key.path())
                    .range(cut)
                    .await
                    .map_err(|e| self.map("read", key, e))?;
                Ok(buf.to_bytes())
            }
            Some(_) => Err(self.map("read", key, err)),
            None => Err(Error::NotFound {
                store: self.name.clone(),
                key: key.path(),
            }),
        }
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
        if let Some(root) = self.fs_root.clone() {
            return self.put_local(root, key, data).await;
        }
        self.op
            .write(&key.path(), data)
            .await
            .map_err(|e| self.map("write", key, e))?;
        Ok(())
    }

    async fn stat(&self, key: &ObjectKey) -> Result<Option<u64>> {
        match self.op.stat(&key.path()).await {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.map("stat", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> KeyStream {
        let op = self.op.clone();
        let name = self.name.clone();
        let prefix = prefix.to_string();
        stream::once(async move {
            match op.lister_with(&prefix).recursive(true).await {
                Ok(lister) => lister
                    .map_err(move |e| list_error(&name, &prefix, e))
                    .try_filter_map(|entry| async move { Ok(ObjectKey::from_path(entry.path())) })
                    .boxed(),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => stream::empty().boxed(),
                Err(e) => stream::iter([Err(list_error(&name, &prefix, e))]).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        match self.op.delete(&key.path()).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.map("delete", key, e)),
        }
    }

    async fn sync(&self) -> Result<()> {
        let Some(root) = self.fs_root.clone() else {
            return Ok(());
        };
        let name = self.name.clone();
        // One syncfs per batch makes every object written by it durable, data and rename:
        // far cheaper than an fsync per object (a journal commit each). Where syncfs does not
        // reach the disk (FUSE) each object was synced as it was written.
        tokio::task::spawn_blocking(move || {
            let dir = std::fs::File::open(&root).map_err(|e| backend("sync", &name, "", e))?;
            rustix::fs::syncfs(&dir)
                .map_err(|e| backend("sync", &name, "", std::io::Error::from(e)))
        })
        .await
        .map_err(|e| backend("sync", &self.name, "", e))?
    }
}

/// An in-memory [`ObjectStore`] for unit tests.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryStore {
    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes> {
        self.objects()
            .get(&key.path())
            .cloned()
            .ok_or_else(|| Error::NotFound {
                store: "memory".into(),
                key: key.path(),
            })
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        let all = self.get(key).await?;
        let end = (range.end as usize).min(all.len());
        let start = (range.start as usize).min(end);
        Ok(all.slice(start..end))
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
        self.objects().insert(key.path(), data);
        Ok(())
    }

    async fn stat(&self, key: &ObjectKey) -> Result<Option<u64>> {
        Ok(self.objects().get(&key.path()).map(|b| b.len() as u64))
    }

    fn list(&self, prefix: &str) -> KeyStream {
        let keys: Vec<Result<ObjectKey>> = self
            .objects()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .filter_map(|k| ObjectKey::from_path(k))
            .map(Ok)
            .collect();
        stream::iter(keys).boxed()
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.objects().remove(&key.path());
        Ok(())
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn listed(store: &dyn ObjectStore, prefix: &str) -> Vec<ObjectKey> {
        let mut keys: Vec<ObjectKey> = store.list(prefix).try_collect().await.expect("list");
        keys.sort();
        keys
    }

    /// The behaviours every store must show, run against each implementation.
    async fn conformance(store: Arc<dyn ObjectStore>) {
        let id = ChunkId::of(b"hello world");
        let key = ObjectKey::Chunk(id);
        assert!(matches!(store.get(&key).await, Err(Error::NotFound { .. })));
        assert!(matches!(
            store.get_range(&key, 0..4).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(store.stat(&key).await.expect("stat"), None);
        assert!(listed(&*store, "chunks/").await.is_empty());
        store
            .put(&key, Bytes::from_static(b"hello world"))
            .await
            .expect("put");
        store.sync().await.expect("sync");
        assert_eq!(store.stat(&key).await.expect("stat"), Some(11));
        assert_eq!(&store.get(&key).await.expect("get")[..], b"hello world");
        assert_eq!(
            &store.get_range(&key, 0..5).await.expect("range")[..],
            b"hello"
        );
        assert_eq!(
            &store.get_range(&key, 6..100).await.expect("range")[..],
            b"world"
        );
        assert!(store
            .get_range(&key, 20..30)
            .await
            .expect("range")
            .is_empty());
        assert_eq!(listed(&*store, "chunks/").await, vec![key]);
        assert!(listed(&*store, "packs/").await.is_empty());
        store
            .put(&key, Bytes::from_static(b"replaced"))
            .await
            .expect("put again");
        assert_eq!(&store.get(&key).await.expect("get")[..], b"replaced");
        store.delete(&key).await.expect("delete");
        store
            .delete(&key)
            .await
            .expect("deleting a missing key succeeds");
        assert!(listed(&*store, "chunks/").await.is_empty());
    }

    /// A listing longer than one page of the service (S3 pages by 1,000) comes whole.
    async fn long_listing(store: Arc<dyn ObjectStore>) {
        let mut keys = Vec::new();
        for i in 0..1_050u32 {
            let chunk = ObjectKey::Chunk(ChunkId::of(&i.to_le_bytes()));
            store.put(&chunk, Bytes::new()).await.expect("put");
            keys.push(chunk);
        }
        let pack = ObjectKey::Pack(PackId([7; 16]));
        store
            .put(&pack, Bytes::from_static(b"p"))
            .await
            .expect("put");
        keys.sort();
        assert_eq!(listed(&*store, "chunks/").await, keys);
        assert_eq!(listed(&*store, "packs/").await, vec![pack]);
    }

    #[tokio::test]
    async fn memory_store_conforms() {
        conformance(Arc::new(MemoryStore::default())).await;
        long_listing(Arc::new(MemoryStore::default())).await;
    }

    #[tokio::test]
    async fn local_store_conforms() {
        let dir = tempfile::tempdir().expect("temp dir");
        conformance(Arc::new(OpendalStore::local(dir.path()).expect("open"))).await;
        long_listing(Arc::new(OpendalStore::local(dir.path()).expect("open"))).await;
    }

    /// A full disk is `Error::Full`, told by the I/O error's kind (a 1 MiB tmpfs; needs root,
    /// as the server's full-disk test does).
    #[tokio::test]
    async fn a_full_disk_is_told_by_kind() {
        struct Unmount(std::path::PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            mounted.success(),
            "this test needs root to mount a small tmpfs"
        );
        let _unmount = Unmount(dir.path().to_path_buf());
        let store = OpendalStore::local(dir.path()).expect("open");
        let key = ObjectKey::Chunk(ChunkId::of(b"big"));
        let err = store
            .put(&key, Bytes::from(vec![7u8; 2 * 1024 * 1024]))
            .await
            .expect_err("does not fit");
        assert!(matches!(err, Error::Full { .. }), "{err:?}");
        assert_eq!(
            store.stat(&key).await.expect("stat"),
            None,
            "nothing partial is visible"
        );
    }

    fn moto_location(server: &cairn_testkit::cloud::S3Server, bucket: &str) -> S3Location {
        S3Location {
            bucket: bucket.to_string(),
            prefix: "cairn".into(),
            endpoint: Some(server.endpoint.clone()),
            region: Some(server.region.clone()),
        }
    }

    fn moto_credentials(server: &cairn_testkit::cloud::S3Server) -> S3Credentials {
        S3Credentials {
            access_key_id: server.access_key_id.clone(),
            secret_access_key: server.secret_access_key.clone(),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// The same behaviours on a real S3 service (moto, installed by scripts/test-servers).
    #[test]
    fn s3_store_conforms() {
        let server = cairn_testkit::cloud::start_moto().expect("moto");
        let location = moto_location(&server, &server.bucket);
        let store = OpendalStore::s3(&location, Some(&moto_credentials(&server))).expect("open");
        runtime().block_on(async {
            store.probe().await.expect("the bucket is usable");
            let key = ObjectKey::Pack(PackId([1; 16]));
            store
                .put(&key, Bytes::from_static(b"0123456789"))
                .await
                .expect("put");
            let before = store.requests_sent().expect("counted");
            let got = store.get_range(&key, 2..5).await.expect("range");
            assert_eq!(&got[..], b"234");
            assert_eq!(store.requests_sent(), Some(before + 1), "one GET per read");
            store.delete(&key).await.expect("delete");
            let store = Arc::new(store);
            conformance(store.clone()).await;
            long_listing(store).await;
        });
    }

    #[test]
    fn s3_store_names_a_missing_bucket_and_bad_keys() {
        let server = cairn_testkit::cloud::start_moto().expect("moto");
        runtime().block_on(async {
            let missing = moto_location(&server, "no-such-bucket");
            let store = OpendalStore::s3(&missing, Some(&moto_credentials(&server))).expect("open");
            let e = store.probe().await.expect_err("no such bucket").to_string();
            assert!(e.contains("s3://no-such-bucket"), "{e}");
            assert!(e.contains("does not exist"), "{e}");

            let wrong = S3Credentials {
                access_key_id: server.access_key_id.clone(),
                secret_access_key: "not-the-secret".into(),
            };
            let location = moto_location(&server, &server.bucket);
            let store = OpendalStore::s3(&location, Some(&wrong)).expect("open");
            let e = store.probe().await.expect_err("bad keys").to_string();
            assert!(e.contains("access denied"), "{e}");
            assert!(!e.contains("not-the-secret"), "{e}");
        });
    }
}
