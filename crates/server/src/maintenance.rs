//! Garbage collection and consistency checks, safe to run beside a live server.
//!
//! gc decides by generations, never by wall-clock guesses: it removes chunks that no retained
//! version references, and upload registrations that survived a whole previous generation. It
//! deletes objects while holding the metadata write lock, and uploads register a chunk before
//! writing its object, so a chunk an upload in flight relies on is never deleted under it; a
//! commit checks its chunks inside its own transaction, so it cannot reference a collected one.
//! A pack goes when none of its chunks is left; a pack with too much dead space has its live
//! parts copied into a new pack first (`crate::repack`). gc also drops activity log rows past
//! their bounds (age and count; see `meta::events`).

use std::collections::{HashMap, HashSet};

use cairn_model::ChunkId;
use cairn_store::{KeyStream, ObjectKey};
use futures_util::StreamExt;
use tokio::runtime::Handle;

use crate::datadir::DataDir;
use crate::meta::{ChunkPlace, ChunkRow};
use crate::repack::RepackReport;
use crate::Result;

#[derive(Debug, Default)]
pub struct GcReport {
    /// Activity log rows past its bounds (age or count), dropped.
    pub events: u64,
    pub chunks: u64,
    pub bytes: u64,
    pub objects_deleted: u64,
    pub orphan_objects: u64,
    /// Objects that could not be deleted (they stay as orphans for the next run).
    pub failed: Vec<String>,
    /// Packs rewritten because too much of them was dead.
    pub repack: RepackReport,
}

/// Runs gc to completion. Call from a blocking thread of a tokio runtime.
///
/// # Errors
/// When the metadata store fails; what was collected before stays collected.
pub fn gc(data: &DataDir, rt: &Handle) -> Result<GcReport> {
    // On a full disk the metadata store could not record a single deletion: the reserve
    // gives it room, and is set aside again once gc has freed space.
    data.release_reserve();
    let started = std::time::Instant::now();
    let report = collect(data, rt).and_then(|mut r| {
        r.events = data.meta.prune_events()?;
        Ok(r)
    });
    data.keep_reserve();
    if report.is_ok() {
        // In the metadata, where the server's `/metrics` reads it (gc runs in its own process).
        data.meta.record_gc_run(started.elapsed().as_secs_f64())?;
    }
    report
}

fn collect(data: &DataDir, rt: &Handle) -> Result<GcReport> {
    let _one_run = data.meta.gc_guard()?;
    let epoch = data.meta.bump_gc_epoch()?;
    let store = data.store.clone();
    let mut report = GcReport::default();
    let mut deleted = 0u64;
    let mut failed = Vec::new();
    let mut delete = |keys: &[ObjectKey]| {
        for key in keys {
            match rt.block_on(store.delete(key)) {
                Ok(()) => deleted += 1,
                Err(e) => failed.push(e.to_string()),
            }
        }
    };
    loop {
        let (n, bytes) = data.meta.collect_batch(epoch, 512, &mut delete)?;
        if n == 0 {
            break;
        }
        report.chunks += n;
        report.bytes += bytes;
    }
    report.objects_deleted = deleted;
    report.failed = failed;
    // Before the sweep, which removes what a crashed or failed repack left behind.
    report.repack = crate::repack::repack(data, rt)?;
    // Objects no row points to (a row is always written before its object, so none of these
    // belongs to an upload in flight while we hold the lock).
    report.orphan_objects = data.meta.holding_writes("finding orphan objects", |rows| {
        // Streamed in pages: a bucket of millions of objects is never listed into memory.
        let mut objects: KeyStream = data
            .store
            .list("chunks/")
            .chain(data.store.list("packs/"))
            .boxed();
        let mut n = 0;
        loop {
            let page = rt.block_on(next_page(&mut objects))?;
            if page.is_empty() {
                break;
            }
            for key in page {
                if !rows.has_rows_for(&key)? {
                    rt.block_on(data.store.delete(&key))?;
                    n += 1;
                }
            }
        }
        Ok(n)
    })?;
    Ok(report)
}

/// Keys of a listing taken a page at a time (deleting is done between pages, never under
/// the listing's feet mid-page).
async fn next_page(objects: &mut KeyStream) -> Result<Vec<ObjectKey>> {
    const PAGE: usize = 1000;
    let mut page = Vec::with_capacity(PAGE);
    while page.len() < PAGE {
        match objects.next().await {
            Some(key) => page.push(key?),
            None => break,
        }
    }
    Ok(page)
}

/// Verifies metadata against chunks; with `read_data`, re-hashes every chunk. Returns one line
/// per problem found (empty when all is well).
///
/// # Errors
/// When a store cannot be read at all.
pub fn check(data: &DataDir, rt: &Handle, read_data: bool) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for (folder, path, seq, chunk) in data.meta.dangling_references()? {
        problems.push(format!(
            "folder {folder}: {path} version {seq} references chunk {chunk}, which is not on the server"
        ));
    }
    for m in data.meta.length_mismatches()? {
        problems.push(format!(
            "folder {}: {} version {} says chunk {} is {} bytes; it is {}",
            m.folder, m.path, m.seq, m.chunk, m.said, m.stored
        ));
    }
    for (folder, path, seq) in data.meta.size_mismatches()? {
        problems.push(format!(
            "folder {folder}: {path} version {seq}: its chunks do not add up to its size"
        ));
    }
    let store = data.store.describe();
    // Object sizes, asked once per object (a pack holds many chunks).
    let mut sizes: HashMap<ObjectKey, Option<u64>> = HashMap::new();
    let mut seen: HashSet<ChunkId> = HashSet::new();
    // Chunks found short or damaged, with what was found; confirmed once the listing is done.
    let mut lost: Vec<(ChunkRow, String)> = Vec::new();
    data.meta.all_chunks(&mut |row, present| {
        seen.insert(row.id);
        if !present {
            return Ok(());
        }
        let (key, range) = row.location();
        let size = match sizes.get(&key) {
            Some(s) => *s,
            None => {
                let s = rt.block_on(data.store.stat(&key))?;
                sizes.insert(key, s);
                s
            }
        };
        let what = match row.place {
            ChunkPlace::Object => format!("chunk {}", row.id),
            ChunkPlace::Packed { pack, .. } => format!("chunk {} (in pack {pack})", row.id),
        };
        let problem = match size {
            None => Some(format!("{what} is missing from {store}")),
            Some(size)
                if size < range.end || (row.place == ChunkPlace::Object && size != range.end) =>
            {
                Some(format!(
                    "{what} in {store} is truncated: {size} bytes, expected {}",
                    range.end
                ))
            }
            Some(_) if read_data => match rt.block_on(data.store.get_range(&key, range.clone())) {
                Err(cairn_store::Error::NotFound { .. }) => {
                    Some(format!("{what} is missing from {store}"))
                }
                Err(e) => return Err(e.into()),
                Ok(bytes) if bytes.len() as u64 != range.end - range.start => Some(format!(
                    "{what} in {store} is {} bytes, expected {}",
                    bytes.len(),
                    range.end - range.start
                )),
                Ok(bytes) if ChunkId::of(&bytes) != row.id => Some(format!(
                    "{what} in {store} is corrupt: its bytes do not match its id"
                )),
                Ok(_) => None,
            },
            Some(_) => None,
        };
        if let Some(p) = problem {
            lost.push((row, p));
        }
        Ok(())
    })?;
    // Chunks whose bytes are gone count as missing from now on: the next backup of a file
    // that holds one sends it again. A chunk gc repacked while it was checked is not one.
    for (row, problem) in lost {
        let now = data.meta.chunk(&row.id)?;
        if now.is_some_and(|n| n.place != row.place) {
            continue;
        }
        data.meta.mark_lost(&row)?;
        problems.push(problem);
    }
    Ok(problems)
}
