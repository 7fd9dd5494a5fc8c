//! Content storage behind one small trait, [`ObjectStore`], so the server's chunk store can move
//! from a local folder to S3 without touching its callers.
//!
//! [`OpendalStore`] is the one place that builds OpenDAL operators (today: the `fs` service);
//! [`MemoryStore`] serves unit tests. Keys are typed ([`ObjectKey`]) and [`ObjectKey::path`] is
//! the single mapping from a key to an object name.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_model::{ChunkId, PackId};

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

    /// Every key whose path starts with `prefix` (`"chunks/"`, `"packs/"`).
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>>;

    /// Deletes an object; deleting a missing key succeeds.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Makes every completed `put` durable (fsync on disks; nothing on stores that are durable
    /// on acknowledgement).
    async fn sync(&self) -> Result<()>;
}

/// An [`ObjectStore`] over an OpenDAL operator.
pub struct OpendalStore {
    op: opendal::Operator,
    name: String,
    /// Set for the local-disk service: the folder `sync` flushes.
    fs_root: Option<PathBuf>,
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
        Ok(OpendalStore {
            op,
            name,
            fs_root: Some(root.to_path_buf()),
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

fn is_full(e: &opendal::Error) -> bool {
    let text = format!("{e:?}");
    text.contains("No space left") || text.contains("StorageFull") || text.contains("QuotaExceeded")
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
        let size = self.stat(key).await?.ok_or_else(|| Error::NotFound {
            store: self.name.clone(),
            key: key.path(),
        })?;
        let range = range.start.min(size)..range.end.min(size);
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let buf = self
            .op
            .read_with(&key.path())
            .range(range)
            .await
            .map_err(|e| self.map("read", key, e))?;
        Ok(buf.to_bytes())
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<()> {
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

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>> {
        let entries = match self.op.list_with(prefix).recursive(true).await {
            Ok(v) => v,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(backend("list", &self.name, prefix, e)),
        };
        Ok(entries
            .iter()
            .filter_map(|e| ObjectKey::from_path(e.path()))
            .collect())
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
        // One syncfs per batch flushes every chunk written by it: far cheaper than an fsync per
        // chunk, and just as durable.
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

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>> {
        Ok(self
            .objects()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .filter_map(|k| ObjectKey::from_path(k))
            .collect())
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
    use std::sync::Arc;

    use super::*;

    /// The behaviours every store must show, run against each implementation.
    async fn conformance(store: Arc<dyn ObjectStore>) {
        let id = ChunkId::of(b"hello world");
        let key = ObjectKey::Chunk(id);
        assert!(matches!(store.get(&key).await, Err(Error::NotFound { .. })));
        assert_eq!(store.stat(&key).await.expect("stat"), None);
        store
            .put(&key, Bytes::from_static(b"hello world"))
            .await
            .expect("put");
        store.sync().await.expect("sync");
        assert_eq!(store.stat(&key).await.expect("stat"), Some(11));
        assert_eq!(&store.get(&key).await.expect("get")[..], b"hello world");
        assert_eq!(
            &store.get_range(&key, 6..100).await.expect("range")[..],
            b"world"
        );
        assert_eq!(store.list("chunks/").await.expect("list"), vec![key]);
        store.delete(&key).await.expect("delete");
        store
            .delete(&key)
            .await
            .expect("deleting a missing key succeeds");
        assert!(store.list("chunks/").await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn memory_store_conforms() {
        conformance(Arc::new(MemoryStore::default())).await;
    }

    #[tokio::test]
    async fn local_store_conforms() {
        let dir = std::env::temp_dir().join(format!("cairn-store-test-{}", std::process::id()));
        conformance(Arc::new(OpendalStore::local(&dir).expect("open"))).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
