//! Chunks and who may see them. Storage is deduplicated across users, but every question about
//! a chunk is answered in the caller's scope: a chunk exists *for a user* only when a folder
//! they can read references it, or they uploaded its bytes themselves (a *proof*, recorded when
//! the server verified them). Anything else looks missing, so a client that lacks the proof
//! uploads the bytes, the server re-hashes them and keeps its one copy; nobody learns whether
//! content exists outside what they can read.
//!
//! Proofs also carry the quota: a user's use is the size of the chunks they proved, each counted
//! once, until gc collects the chunk.

use std::collections::{HashMap, HashSet};

use cairn_model::{ChunkId, PackId, RelPath};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::sql::{args, Lite, Sql};
use super::{db, gc_epoch, place_of, relaxed, ChunkRow, SqliteMeta, User};
use crate::{Error, Result};

/// What the server knows of one chunk a client names, in that client's scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkScope {
    /// Present, and the user may reference it; its stored length.
    Usable { len: u32 },
    /// Absent, or present but outside the user's scope: the client must send the bytes.
    Missing,
}

/// The scope of the chunks a request names, read in one snapshot.
pub struct Scope {
    pub chunks: HashMap<ChunkId, ChunkScope>,
    /// The removal count at that snapshot: when it is unchanged under the write lock, no chunk
    /// has left the present state since, so presence need not be looked up again.
    pub removals: i64,
}

impl Scope {
    /// The stored length of `id` when it is usable.
    pub fn usable(&self, id: &ChunkId) -> Option<u32> {
        match self.chunks.get(id) {
            Some(ChunkScope::Usable { len }) => Some(*len),
            _ => None,
        }
    }
}

/// How many times chunks left the present state (collected or marked lost). Every transaction
/// that removes a present chunk bumps it with [`note_removal`].
pub(super) fn removals(db: &dyn Sql) -> Result<i64> {
    let v: Option<String> = db.opt(
        "reading chunk removals",
        "SELECT value FROM meta WHERE key='chunk_removals'",
        args![],
        |r| r.get(0),
    )?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

pub(super) fn note_removal(tx: &Connection) -> Result<()> {
    let next = removals(&Lite(tx))? + 1;
    tx.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES('chunk_removals', ?1)",
        [next.to_string()],
    )
    .map_err(db("counting chunk removals"))?;
    Ok(())
}

/// The chunks of one upload that still need writing, as [`SqliteMeta::begin_chunks`] decides.
pub struct UploadPlan {
    /// Small chunks to concatenate into the upload's pack, in offset order.
    pub packed: Vec<ChunkId>,
    /// Large chunks to write as their own objects.
    pub objects: Vec<ChunkId>,
}

/// The stored length of a present chunk.
pub(super) fn present_len(db: &dyn Sql, id: &ChunkId) -> Result<Option<u32>> {
    db.opt(
        "reading chunk",
        "SELECT len FROM chunks WHERE id=?1 AND state=1",
        args![&id.as_bytes()[..]],
        |r| {
            let len: i64 = r.get(0)?;
            u32::try_from(len)
                .map_err(|_| Error::Corrupt(format!("a chunk row holds the length {len}")))
        },
    )
}

impl SqliteMeta {
    /// Each distinct id of `ids` as `user` may see it. Runs on a reader, off the write lock.
    pub fn chunk_scope(&self, user: &User, ids: &[ChunkId]) -> Result<Scope> {
        let ctx = "checking chunk access";
        let reader = self.reader()?;
        // One read transaction for all the lookups: without it SQLite takes and drops its
        // file lock around every statement (two fcntl calls per chunk).
        let conn = reader.unchecked_transaction().map_err(db(ctx))?;
        let removals = removals(&Lite(&conn))?;
        // One statement per chunk: present, and proved by the user or referenced in a folder
        // they can read.
        let mut st = conn
            .prepare_cached(
                "SELECT c.len,
                   EXISTS(SELECT 1 FROM chunk_proofs p WHERE p.user_id=?1 AND p.chunk=c.id)
                   OR EXISTS(SELECT 1 FROM version_chunks vc JOIN versions v ON v.id=vc.version_id
                             JOIN grants g ON g.folder_id=v.folder_id AND g.user_id=?1
                             WHERE vc.chunk=c.id)
                 FROM chunks c WHERE c.id=?2 AND c.state=1",
            )
            .map_err(db(ctx))?;
        // Each distinct id once, in id order: neighbours share index pages.
        let mut sorted: Vec<&ChunkId> = ids.iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut out = HashMap::with_capacity(sorted.len());
        for id in sorted {
            let row: Option<(u32, bool)> = st
                .query_row(params![user.id, &id.as_bytes()[..]], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(db(ctx))?;
            let scope = match row {
                Some((len, true)) => ChunkScope::Usable { len },
                _ => ChunkScope::Missing,
            };
            out.insert(*id, scope);
        }
        Ok(Scope {
            chunks: out,
            removals,
        })
    }

    /// The ids among `ids` that `user` must upload (absent, or outside their scope). The
    /// usable ones are touched (moved to the current gc generation): the caller is about to
    /// reference them, and gc spares chunks touched in its own or the previous generation.
    pub fn missing_chunks(&self, user: &User, ids: &[ChunkId]) -> Result<Vec<ChunkId>> {
        let scope = self.chunk_scope(user, ids)?;
        let mut seen = HashSet::with_capacity(ids.len());
        let (usable, missing): (Vec<ChunkId>, Vec<ChunkId>) = ids
            .iter()
            .filter(|id| seen.insert(**id))
            .partition(|id| scope.usable(id).is_some());
        if !usable.is_empty() {
            self.touch(&usable)?;
        }
        Ok(missing)
    }

    fn touch(&self, ids: &[ChunkId]) -> Result<()> {
        let ctx = "looking up chunks";
        let mut conn = self.conn();
        relaxed(&mut conn, |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(ctx))?;
            let epoch = gc_epoch(&tx)?;
            {
                let mut touch = tx
                    .prepare_cached("UPDATE chunks SET epoch=?2 WHERE id=?1 AND state=1")
                    .map_err(db(ctx))?;
                for id in ids {
                    touch
                        .execute(params![&id.as_bytes()[..], epoch])
                        .map_err(db(ctx))?;
                }
            }
            tx.commit().map_err(db(ctx))
        })
    }

    /// Registers, in one transaction, the verified chunks `user` uploaded: records their proofs
    /// (charging the quota for chunks new to this user), touches the ones already present, and
    /// registers the absent ones: small ones as parts of pack `pack` (offsets in the order
    /// returned), large ones as their own objects. Rows are registered before any object is
    /// written, which is what keeps gc from deleting an object an upload still needs.
    ///
    /// # Errors
    /// [`Error::Quota`] when the new proofs would take `user` over their quota; nothing is
    /// registered then.
    pub fn begin_chunks(
        &self,
        user: &User,
        pack: PackId,
        small: &[(ChunkId, u32)],
        large: &[(ChunkId, u32)],
    ) -> Result<UploadPlan> {
        let ctx = "registering chunks";
        let mut conn = self.conn();
        relaxed(&mut conn, |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(ctx))?;
            let epoch = gc_epoch(&tx)?;
            let mut plan = UploadPlan {
                packed: Vec::new(),
                objects: Vec::new(),
            };
            let mut seen = HashSet::with_capacity(small.len() + large.len());
            let mut charged = 0u64;
            {
                let mut prove = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO chunk_proofs(user_id, chunk, len) VALUES(?1, ?2, ?3)",
                    )
                    .map_err(db(ctx))?;
                let mut touch = tx
                    .prepare_cached("UPDATE chunks SET epoch=?2 WHERE id=?1 AND state=1")
                    .map_err(db(ctx))?;
                let mut register = tx
                .prepare_cached(
                    "INSERT INTO chunks(id, len, state, epoch, pack, pack_offset) VALUES(?1, ?2, 0, ?3, ?4, ?5)
                     ON CONFLICT(id) DO UPDATE SET len=excluded.len, state=0, epoch=excluded.epoch, pack=excluded.pack, pack_offset=excluded.pack_offset",
                )
                .map_err(db(ctx))?;
                let mut offset = 0u64;
                let all = small
                    .iter()
                    .map(|c| (c, true))
                    .chain(large.iter().map(|c| (c, false)));
                for ((id, len), is_small) in all {
                    if !seen.insert(*id) {
                        continue;
                    }
                    let raw = &id.as_bytes()[..];
                    if prove.execute(params![user.id, raw, len]).map_err(db(ctx))? == 1 {
                        charged += u64::from(*len);
                    }
                    if touch.execute(params![raw, epoch]).map_err(db(ctx))? == 1 {
                        continue;
                    }
                    if is_small {
                        register
                            .execute(params![raw, len, epoch, &pack.0[..], offset as i64])
                            .map_err(db(ctx))?;
                        plan.packed.push(*id);
                        offset += u64::from(*len);
                    } else {
                        register
                            .execute(params![raw, len, epoch, None::<Vec<u8>>, None::<i64>])
                            .map_err(db(ctx))?;
                        plan.objects.push(*id);
                    }
                }
            }
            charge(&tx, user, charged)?;
            tx.commit().map_err(db(ctx))?;
            Ok(plan)
        })
    }

    /// Marks written chunks present. A row that another upload re-pointed meanwhile is left to
    /// that upload. Returns the ids whose registration vanished (collected by gc while the
    /// upload was slow): the caller must report failure.
    pub fn finish_chunks(&self, pack: PackId, plan: &UploadPlan) -> Result<Vec<ChunkId>> {
        let ctx = "registering chunks";
        let mut conn = self.conn();
        relaxed(&mut conn, |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(ctx))?;
            let mut lost = Vec::new();
            {
                let mut in_pack = tx
                    .prepare_cached("UPDATE chunks SET state=1 WHERE id=?1 AND state=0 AND pack=?2")
                    .map_err(db(ctx))?;
                let mut alone = tx
                    .prepare_cached(
                        "UPDATE chunks SET state=1 WHERE id=?1 AND state=0 AND pack IS NULL",
                    )
                    .map_err(db(ctx))?;
                let mut exists = tx
                    .prepare_cached("SELECT 1 FROM chunks WHERE id=?1")
                    .map_err(db(ctx))?;
                for id in &plan.packed {
                    in_pack
                        .execute(params![&id.as_bytes()[..], &pack.0[..]])
                        .map_err(db(ctx))?;
                }
                for id in &plan.objects {
                    alone.execute([&id.as_bytes()[..]]).map_err(db(ctx))?;
                }
                for id in plan.packed.iter().chain(&plan.objects) {
                    if !exists.exists([&id.as_bytes()[..]]).map_err(db(ctx))? {
                        lost.push(*id);
                    }
                }
            }
            tx.commit().map_err(db(ctx))?;
            Ok(lost)
        })
    }

    /// A chunk that a version in folder `folder_id` references: the only way content is read by
    /// id, so a chunk is reachable only through a folder the caller may read. `None` when no
    /// version there references it; `Some(None)` when one does but its bytes are not present
    /// (lost from the store).
    pub fn chunk_in_folder(
        &self,
        folder_id: i64,
        id: &ChunkId,
    ) -> Result<Option<Option<ChunkRow>>> {
        let conn = self.reader()?;
        let referenced = conn
            .prepare_cached(
                "SELECT 1 FROM version_chunks vc JOIN versions v ON v.id=vc.version_id
                 WHERE vc.chunk=?1 AND v.folder_id=?2 LIMIT 1",
            )
            .map_err(db("reading chunk"))?
            .exists(params![&id.as_bytes()[..], folder_id])
            .map_err(db("reading chunk"))?;
        if !referenced {
            return Ok(None);
        }
        chunk_row(&conn, id).map(Some)
    }

    /// A present chunk by id, in no user's scope: for the server's own work (content of a
    /// version already checked against its folder, gc, check).
    pub fn chunk(&self, id: &ChunkId) -> Result<Option<ChunkRow>> {
        let conn = self.reader()?;
        chunk_row(&conn, id)
    }
}

impl SqliteMeta {
    /// Marks a chunk whose bytes are gone from the store as lost: it then counts as missing
    /// everywhere, so the next upload of any file holding it sends it again, and
    /// [`SqliteMeta::damaged`] lists the paths that need that.
    pub fn mark_lost(&self, id: &ChunkId) -> Result<bool> {
        let ctx = "marking a chunk lost";
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(ctx))?;
        let n = tx
            .execute(
                "UPDATE chunks SET state=?2 WHERE id=?1 AND state=1",
                params![&id.as_bytes()[..], LOST],
            )
            .map_err(db(ctx))?;
        if n > 0 {
            note_removal(&tx)?;
        }
        tx.commit().map_err(db(ctx))?;
        Ok(n > 0)
    }

    /// Paths under `prefix` in folder `folder_id` with a retained version that references a
    /// lost chunk: their content must be uploaded again.
    pub fn damaged(&self, folder_id: i64, prefix: &RelPath) -> Result<Vec<RelPath>> {
        let ctx = "listing damaged files";
        let conn = self.reader()?;
        let mut st = conn
            .prepare_cached(
                "SELECT DISTINCT v.path FROM chunks c JOIN version_chunks vc ON vc.chunk=c.id
                 JOIN versions v ON v.id=vc.version_id WHERE c.state=2 AND v.folder_id=?1",
            )
            .map_err(db(ctx))?;
        let paths = st
            .query_map([folder_id], |r| r.get::<_, String>(0))
            .map_err(db(ctx))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db(ctx))?;
        Ok(paths
            .iter()
            .filter_map(|p| RelPath::parse(p).ok())
            .filter(|p| p.starts_with(prefix))
            .collect())
    }
}

/// Chunk row state 2: the row is known but its bytes are gone from the store.
pub(super) const LOST: i64 = 2;

fn chunk_row(conn: &Connection, id: &ChunkId) -> Result<Option<ChunkRow>> {
    conn.prepare_cached("SELECT len, pack, pack_offset FROM chunks WHERE id=?1 AND state=1")
        .map_err(db("reading chunk"))?
        .query_row([&id.as_bytes()[..]], |r| {
            Ok(ChunkRow {
                id: *id,
                len: r.get(0)?,
                place: place_of(r.get(1)?, r.get(2)?),
            })
        })
        .optional()
        .map_err(db("reading chunk"))
}

/// Adds `bytes` to `user`'s use, refusing when that passes their quota.
fn charge(tx: &Connection, user: &User, bytes: u64) -> Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    let (quota, used): (Option<i64>, i64) = tx
        .query_row(
            "SELECT quota, used_bytes FROM users WHERE id=?1",
            [user.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db("checking quota"))?;
    let after = used.saturating_add(bytes as i64);
    if let Some(q) = quota.filter(|q| after > *q) {
        return Err(Error::Quota(format!(
            "quota exceeded: user {} uses {used} of {q} bytes and this upload needs {bytes} more; nothing was stored",
            user.name
        )));
    }
    tx.execute(
        "UPDATE users SET used_bytes=?1 WHERE id=?2",
        params![after, user.id],
    )
    .map_err(db("charging quota"))?;
    Ok(())
}

/// Drops the proofs of a collected chunk and gives its bytes back to their users' quotas.
pub(super) fn forget_proofs(tx: &Connection, id: &ChunkId) -> Result<()> {
    let ctx = "collecting garbage";
    let raw = &id.as_bytes()[..];
    tx.prepare_cached(
        "UPDATE users SET used_bytes=MAX(0, used_bytes - (SELECT p.len FROM chunk_proofs p
           WHERE p.user_id=users.id AND p.chunk=?1))
         WHERE id IN (SELECT user_id FROM chunk_proofs WHERE chunk=?1)",
    )
    .map_err(db(ctx))?
    .execute([raw])
    .map_err(db(ctx))?;
    tx.prepare_cached("DELETE FROM chunk_proofs WHERE chunk=?1")
        .map_err(db(ctx))?
        .execute([raw])
        .map_err(db(ctx))?;
    Ok(())
}
