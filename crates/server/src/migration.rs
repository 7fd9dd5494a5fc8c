//! `cairn server migrate`: moves an embedded server's data folder (metadata in its
//! `meta.sqlite`) to PostgreSQL, and its chunks to another store if asked, with every user,
//! folder, version, token and setting intact, so clients carry on without uploading again.
//!
//! [`migrate`] runs in this order, and the order is the safety argument:
//! 1. refusals, before anything is written: the folder is on PostgreSQL already, or the
//!    target database holds cairn data (the caller holds the folder's [`RunLock`], so no
//!    server writes meanwhile);
//! 2. the chunks, object by object, a few at a time; an object the new store holds already
//!    with the same size is skipped (a store never shows a partial object), so a run that
//!    stopped half-way resumes where it was;
//! 3. the metadata, in one PostgreSQL transaction ([`Meta::copy_into`]), with the new chunk
//!    store recorded in it;
//! 4. the commit point: the folder's PostgreSQL marker is written, then `meta.sqlite` is
//!    renamed `meta.sqlite.migrated` (kept, never read again).
//!
//! Until step 4, the folder is the embedded server it was: nothing of it changed, and the old
//! chunks are never touched. The alternative of copying the metadata first would leave a
//! database that a re-run after a failed chunk copy must refuse as not empty.
//!
//! [`RunLock`]: crate::datadir::RunLock

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_store::{ObjectKey, ObjectStore, OpendalStore, S3Credentials, StoreLocation};
use futures_util::TryStreamExt;
use tokio::runtime::Handle;

use crate::datadir::{self, DataDir, StoreChoice};
use crate::meta::{Meta, PgAddress, TableRows};
use crate::{Error, Result};

/// Objects copied at once: enough to keep a remote store busy, few enough that memory stays
/// a handful of chunks and packs.
const COPIES: usize = 4;

/// Where the folder's server goes.
#[derive(Clone, Debug)]
pub struct Target {
    /// The database that will hold the metadata; it must hold no cairn data yet.
    pub metadata: PgAddress,
    /// The chunk store to copy the chunks to; `None` keeps them where they are.
    pub store: Option<StoreLocation>,
    /// S3 keys for both stores; without them the AWS environment variables are used.
    pub credentials: Option<S3Credentials>,
}

/// What a migration did, as it goes ([`Progress`]) and at its end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectTally {
    pub copied: u64,
    pub copied_bytes: u64,
    /// Objects the new store held already, with the same size.
    pub skipped: u64,
}

/// What the CLI shows while a migration runs (this crate never prints).
pub trait Progress: Send + Sync {
    /// The stores the chunks go between (called once, before the first object).
    fn copying_objects(&self, from: &str, to: &str);
    /// After each object.
    fn object(&self, tally: &ObjectTally);
    /// After each table of the metadata.
    fn table(&self, rows: &TableRows);
}

#[derive(Debug)]
pub struct Report {
    pub tables: Vec<TableRows>,
    /// `None` when the chunks stayed where they were.
    pub objects: Option<ObjectTally>,
    /// The chunk store the folder uses now.
    pub store: String,
    /// Where the old SQLite metadata was kept.
    pub kept: PathBuf,
}

/// Moves the data folder at `root` to `target`. Call from a blocking thread of a tokio
/// runtime, holding the folder's `RunLock`.
///
/// # Errors
/// The refusals above ([`Error::Invalid`], naming the folder or the database), or a failure
/// of either store; before the commit point the folder is left as it was.
pub fn migrate(
    root: &Path,
    target: &Target,
    rt: &Handle,
    progress: &dyn Progress,
) -> Result<Report> {
    if let Some(at) = datadir::postgres_of(root) {
        return Err(Error::Invalid(format!(
            "data folder {} is on PostgreSQL already ({at}); there is nothing to migrate",
            root.display()
        )));
    }
    // No admin command, gc or check changes the metadata while it is copied.
    let _admin = datadir::AdminLock::exclusive(root)?;
    let source = DataDir::open_to_migrate(
        root,
        &StoreChoice {
            credentials: target.credentials.clone(),
            ..StoreChoice::default()
        },
    )?;
    let to_meta = Meta::open_postgres(&target.metadata)?;
    to_meta.ensure_empty()?;
    let (store, objects) = copy_store(&source, target, rt, progress)?;
    let settings: Vec<(&str, &str)> = store.iter().map(|s| ("chunk_store", s.as_str())).collect();
    let tables = source
        .meta
        .copy_into(&to_meta, &settings, &mut |t| progress.table(t))?;
    let shown_store = store.unwrap_or_else(|| source.store.describe());
    // Every SQLite connection closes before the file is renamed, so its log is folded in.
    drop(source);
    drop(to_meta);
    let kept = commit(root, &target.metadata)?;
    Ok(Report {
        tables,
        objects,
        store: shown_store,
        kept,
    })
}

/// Copies the chunks of `source` to the target's store, if it names one other than the one
/// `source` uses; the new store's recorded name and what was copied.
fn copy_store(
    source: &DataDir,
    target: &Target,
    rt: &Handle,
    progress: &dyn Progress,
) -> Result<(Option<String>, Option<ObjectTally>)> {
    let Some(location) = &target.store else {
        return Ok((None, None));
    };
    let recorded = datadir::recorded_store(&source.root, location)?;
    if source.meta.meta_value("chunk_store")?.as_deref() == Some(recorded.as_str()) {
        return Ok((None, None));
    }
    let to: Arc<dyn ObjectStore> =
        Arc::new(OpendalStore::open(location, target.credentials.as_ref())?);
    rt.block_on(to.probe())?;
    progress.copying_objects(&source.store.describe(), &to.describe());
    let tally = rt.block_on(copy_objects(source.store.clone(), to.clone(), progress))?;
    rt.block_on(to.sync())?;
    Ok((Some(recorded), Some(tally)))
}

/// Whether one object was copied or found in place, and its size.
enum Outcome {
    Copied(u64),
    Skipped,
}

/// Copies every chunk and pack object of `from` to `to`, [`COPIES`] at a time, from a
/// streamed listing (never held whole).
async fn copy_objects(
    from: Arc<dyn ObjectStore>,
    to: Arc<dyn ObjectStore>,
    progress: &dyn Progress,
) -> Result<ObjectTally> {
    let mut tally = ObjectTally::default();
    let stop_after = crate::api::test_hook::<u64>("CAIRN_TEST_MIGRATE_STOP_AFTER");
    for prefix in ["chunks/", "packs/"] {
        let mut copies = from
            .list(prefix)
            .map_err(Error::from)
            .map_ok(|key| copy_object(from.clone(), to.clone(), key))
            .try_buffer_unordered(COPIES);
        while let Some(outcome) = copies.try_next().await? {
            match outcome {
                Outcome::Copied(bytes) => {
                    tally.copied += 1;
                    tally.copied_bytes += bytes;
                }
                Outcome::Skipped => tally.skipped += 1,
            }
            progress.object(&tally);
            if stop_after.is_some_and(|n| tally.copied >= n) {
                return Err(Error::Invalid(format!(
                    "stopped after copying {} objects (test hook CAIRN_TEST_MIGRATE_STOP_AFTER)",
                    tally.copied
                )));
            }
        }
    }
    Ok(tally)
}

async fn copy_object(
    from: Arc<dyn ObjectStore>,
    to: Arc<dyn ObjectStore>,
    key: ObjectKey,
) -> Result<Outcome> {
    let size = from.stat(&key).await?;
    if size.is_some() && to.stat(&key).await? == size {
        return Ok(Outcome::Skipped);
    }
    let data = from.get(&key).await?;
    let bytes = data.len() as u64;
    to.put(&key, data).await?;
    Ok(Outcome::Copied(bytes))
}

/// The commit point: the folder now opens on PostgreSQL only. Returns where `meta.sqlite`
/// went.
fn commit(root: &Path, metadata: &PgAddress) -> Result<PathBuf> {
    // The marker first: a stop between the two leaves a folder that opens nowhere (and says
    // why), never one that a `server run` without the database would take for a new server.
    datadir::record_postgres(root, metadata)?;
    let kept = root.join("meta.sqlite.migrated");
    for suffix in ["", "-wal", "-shm"] {
        let from = root.join(format!("meta.sqlite{suffix}"));
        if !from.exists() {
            continue;
        }
        let to = root.join(format!("meta.sqlite.migrated{suffix}"));
        fs::rename(&from, &to).map_err(Error::io(format!(
            "renaming {} to {}",
            from.display(),
            to.display()
        )))?;
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cairn_model::{ChunkId, PackId};
    use cairn_store::MemoryStore;

    use super::*;

    struct Quiet;

    impl Progress for Quiet {
        fn copying_objects(&self, _: &str, _: &str) {}
        fn object(&self, _: &ObjectTally) {}
        fn table(&self, _: &TableRows) {}
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Objects the new store holds whole are skipped; one cut short (a store that could show
    /// a partial write, or another writer) and missing ones are copied, chunks and packs alike.
    #[test]
    fn objects_in_place_with_their_size_are_skipped_and_the_rest_copied() {
        let rt = runtime();
        let from: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let to: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let body = |i: u8| Bytes::from(vec![i; 100 + usize::from(i)]);
        let keys: Vec<ObjectKey> = (0..6u8)
            .map(|i| ObjectKey::Chunk(ChunkId::of(&[i])))
            .chain([ObjectKey::Pack(PackId([7; 16]))])
            .collect();
        rt.block_on(async {
            for (i, key) in (0u8..).zip(&keys) {
                from.put(key, body(i)).await.expect("put");
            }
            to.put(&keys[0], body(0)).await.expect("put");
            to.put(&keys[1], body(1).slice(..10)).await.expect("put");
            to.put(&keys[6], body(6)).await.expect("put");
        });
        let tally = rt
            .block_on(copy_objects(from.clone(), to.clone(), &Quiet))
            .expect("copy");
        let copied_bytes: u64 = (1..6u64).map(|i| 100 + i).sum();
        assert_eq!(
            tally,
            ObjectTally {
                copied: 5,
                copied_bytes,
                skipped: 2
            }
        );
        for (i, key) in (0u8..).zip(&keys) {
            assert_eq!(
                rt.block_on(to.get(key)).expect("copied"),
                body(i),
                "{key:?}"
            );
        }
    }
}
