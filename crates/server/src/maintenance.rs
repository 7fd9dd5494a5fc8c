//! Garbage collection and consistency checks, safe to run beside a live server.
//!
//! gc decides by generations, never by wall-clock guesses: it removes chunks that no retained
//! version references, and upload registrations that survived a whole previous generation. It
//! deletes objects while holding the metadata write lock, and uploads register a chunk before
//! writing its object, so a chunk an upload in flight relies on is never deleted under it; a
//! commit checks its chunks inside its own transaction, so it cannot reference a collected one.

use std::collections::HashSet;

use cairn_model::ChunkId;
use cairn_store::ObjectKey;
use tokio::runtime::Handle;

use crate::datadir::DataDir;
use crate::Result;

#[derive(Debug, Default)]
pub struct GcReport {
    pub chunks: u64,
    pub bytes: u64,
    pub orphan_objects: u64,
}

/// Runs gc to completion. Call from a blocking thread of a tokio runtime.
///
/// # Errors
/// When the metadata store or the chunk store fails; what was collected before stays collected.
pub fn gc(data: &DataDir, rt: &Handle) -> Result<GcReport> {
    let epoch = data.meta.bump_gc_epoch()?;
    let store = data.store.clone();
    let mut report = GcReport::default();
    let mut delete = |ids: &[ChunkId]| -> Result<()> {
        for id in ids {
            rt.block_on(store.delete(&ObjectKey::Chunk(*id)))?;
        }
        Ok(())
    };
    loop {
        let (n, bytes) = data.meta.collect_batch(epoch, 512, &mut delete)?;
        if n == 0 {
            break;
        }
        report.chunks += n;
        report.bytes += bytes;
    }
    // Objects with no row at all (a row is always written before its object, so none of these
    // belongs to an upload in flight while we hold the lock).
    report.orphan_objects = data.meta.with_write_lock(|conn| {
        let objects = rt.block_on(data.store.list("chunks/"))?;
        let mut st = conn
            .prepare("SELECT 1 FROM chunks WHERE id=?1")
            .map_err(|source| crate::Error::Db {
                context: "finding orphan objects".into(),
                source,
            })?;
        let mut n = 0;
        for key in objects {
            let ObjectKey::Chunk(id) = key;
            let known = st
                .exists([&id.as_bytes()[..]])
                .map_err(|source| crate::Error::Db {
                    context: "finding orphan objects".into(),
                    source,
                })?;
            if !known {
                rt.block_on(data.store.delete(&key))?;
                n += 1;
            }
        }
        Ok(n)
    })?;
    Ok(report)
}

/// Verifies metadata against chunks; with `read_data`, re-hashes every chunk. Returns one line
/// per problem found (empty when all is well).
///
/// # Errors
/// When a store cannot be read at all.
pub fn check(data: &DataDir, rt: &Handle, read_data: bool) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for (folder, path, seq, chunk) in data.meta.dangling_references()? {
        problems.push(format!("folder {folder}: {path} version {seq} references chunk {chunk}, which is not on the server"));
    }
    for (folder, path, seq) in data.meta.size_mismatches()? {
        problems.push(format!(
            "folder {folder}: {path} version {seq}: its chunks do not add up to its size"
        ));
    }
    let mut known = HashSet::new();
    data.meta.all_chunks(&mut |row, present| {
        known.insert(row.id);
        if !present {
            return Ok(());
        }
        match &row.inline {
            Some(bytes) => {
                if bytes.len() != row.len as usize || (read_data && ChunkId::of(bytes) != row.id) {
                    problems.push(format!(
                        "chunk {} (inline) is corrupt: its bytes do not match its id",
                        row.id
                    ));
                }
            }
            None => {
                let key = ObjectKey::Chunk(row.id);
                match rt.block_on(data.store.stat(&key))? {
                    None => problems.push(format!(
                        "chunk {} is missing from {}",
                        row.id,
                        data.store.describe()
                    )),
                    Some(size) if size != u64::from(row.len) => problems.push(format!(
                        "chunk {} in {} has {size} bytes, expected {}",
                        row.id,
                        data.store.describe(),
                        row.len
                    )),
                    Some(_) if read_data => {
                        let bytes = rt.block_on(data.store.get(&key))?;
                        if ChunkId::of(&bytes) != row.id {
                            problems.push(format!(
                                "chunk {} in {} is corrupt: its bytes do not match its id",
                                row.id,
                                data.store.describe()
                            ));
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    })?;
    Ok(problems)
}
