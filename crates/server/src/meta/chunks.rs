//! Chunks and who may see them. Storage is deduplicated across users, but every question about
//! a chunk is answered in the caller's scope: a chunk exists *for a user* only when a folder
//! they can read references it, or they uploaded its bytes themselves (a *proof*, recorded when
//! the server verified them). Anything else looks missing, so a client that lacks the proof
//! uploads the bytes, the server re-hashes them and keeps its one copy; nobody learns whether
//! content exists outside what they can read.
//!
//! Proofs also carry the quota: a user's use is the size of the chunks they proved, each counted
//! once, until gc collects the chunk.
//!
//! Every statement here is on the upload path (a plan of 100,000 small files looks up and
//! registers each chunk): they run once per chunk with fixed text, so each engine prepares
//! them once per connection, and one transaction covers a whole request.

use std::collections::{HashMap, HashSet};

use cairn_model::{ChunkId, PackId, RelPath};

use super::gc::gc_epoch;
use super::sql::{args, Row, Sql};
use super::{place_of, ChunkPlace, ChunkRow, Meta, User};
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

pub(super) fn note_removal(tx: &dyn Sql) -> Result<()> {
    let next = removals(tx)? + 1;
    tx.exec(
        "counting chunk removals",
        "INSERT INTO meta(key, value) VALUES('chunk_removals', ?1)
         ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        args![next.to_string()],
    )?;
    Ok(())
}

/// The chunks of one upload that still need writing, as [`Meta::begin_chunks`] decides.
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
        |r| len_at(r, 0),
    )
}

/// A chunk length column, which the schema keeps within `u32`.
pub(super) fn len_at(r: &dyn Row, i: usize) -> Result<u32> {
    let len: i64 = r.get(i)?;
    u32::try_from(len).map_err(|_| Error::Corrupt(format!("a chunk row holds the length {len}")))
}

/// Chunk lookups of a request: present, and proved by the user or referenced in a folder
/// they can read.
const SCOPE_OF: &str = "SELECT c.len,
       EXISTS(SELECT 1 FROM chunk_proofs p WHERE p.user_id=?1 AND p.chunk=c.id)
       OR EXISTS(SELECT 1 FROM version_chunks vc JOIN versions v ON v.id=vc.version_id
                 JOIN grants g ON g.folder_id=v.folder_id AND g.user_id=?1
                 WHERE vc.chunk=c.id)
     FROM chunks c WHERE c.id=?2 AND c.state=1";

const TOUCH: &str = "UPDATE chunks SET epoch=?2 WHERE id=?1 AND state=1";

impl Meta {
    /// Each distinct id of `ids` as `user` may see it. Runs on a reader, off the write lock,
    /// in one snapshot (the removal count and every lookup agree).
    pub fn chunk_scope(&self, user: &User, ids: &[ChunkId]) -> Result<Scope> {
        let ctx = "checking chunk access";
        self.read(|db| {
            let removals = removals(db)?;
            // Each distinct id once, in id order: neighbours share index pages.
            let mut sorted: Vec<&ChunkId> = ids.iter().collect();
            sorted.sort_unstable();
            sorted.dedup();
            let mut out = HashMap::with_capacity(sorted.len());
            for id in sorted {
                let row = db.opt(ctx, SCOPE_OF, args![user.id, &id.as_bytes()[..]], |r| {
                    Ok((len_at(r, 0)?, r.get::<bool>(1)?))
                })?;
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
        self.write_relaxed(ctx, |tx| {
            let epoch = gc_epoch(tx)?;
            for id in ids {
                tx.exec(ctx, TOUCH, args![&id.as_bytes()[..], epoch])?;
            }
            Ok(())
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
        self.write_relaxed(ctx, |tx| {
            let epoch = gc_epoch(tx)?;
            let mut plan = UploadPlan {
                packed: Vec::new(),
                objects: Vec::new(),
            };
            let mut seen = HashSet::with_capacity(small.len() + large.len());
            let mut charged = 0u64;
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
                if tx.exec(ctx, PROVE, args![user.id, raw, *len])? == 1 {
                    charged += u64::from(*len);
                }
                if tx.exec(ctx, TOUCH, args![raw, epoch])? == 1 {
                    continue;
                }
                if is_small {
                    let at = offset as i64;
                    tx.exec(
                        ctx,
                        REGISTER_PACKED,
                        args![raw, *len, epoch, &pack.0[..], at],
                    )?;
                    plan.packed.push(*id);
                    offset += u64::from(*len);
                } else {
                    tx.exec(ctx, REGISTER_ALONE, args![raw, *len, epoch])?;
                    plan.objects.push(*id);
                }
            }
            charge(tx, user, charged)?;
            Ok(plan)
        })
    }

    /// Marks written chunks present. A row that another upload re-pointed meanwhile is left to
    /// that upload. Returns the ids whose registration vanished (collected by gc while the
    /// upload was slow): the caller must report failure.
    pub fn finish_chunks(&self, pack: PackId, plan: &UploadPlan) -> Result<Vec<ChunkId>> {
        let ctx = "registering chunks";
        self.write_relaxed(ctx, |tx| {
            for id in &plan.packed {
                tx.exec(
                    ctx,
                    "UPDATE chunks SET state=1 WHERE id=?1 AND state=0 AND pack=?2",
                    args![&id.as_bytes()[..], &pack.0[..]],
                )?;
            }
            for id in &plan.objects {
                tx.exec(
                    ctx,
                    "UPDATE chunks SET state=1 WHERE id=?1 AND state=0 AND pack IS NULL",
                    args![&id.as_bytes()[..]],
                )?;
            }
            let mut lost = Vec::new();
            for id in plan.packed.iter().chain(&plan.objects) {
                let known = tx.opt(
                    ctx,
                    "SELECT 1 FROM chunks WHERE id=?1",
                    args![&id.as_bytes()[..]],
                    |_| Ok(()),
                )?;
                if known.is_none() {
                    lost.push(*id);
                }
            }
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
        self.read(|db| {
            let referenced = db.opt(
                "reading chunk",
                "SELECT 1 FROM version_chunks vc JOIN versions v ON v.id=vc.version_id
                 WHERE vc.chunk=?1 AND v.folder_id=?2 LIMIT 1",
                args![&id.as_bytes()[..], folder_id],
                |_| Ok(()),
            )?;
            match referenced {
                Some(()) => chunk_row(db, id).map(Some),
                None => Ok(None),
            }
        })
    }

    /// A present chunk by id, in no user's scope: for the server's own work (content of a
    /// version already checked against its folder, gc, check).
    pub fn chunk(&self, id: &ChunkId) -> Result<Option<ChunkRow>> {
        self.read(|db| chunk_row(db, id))
    }

    /// The rows of `ids`, in order, in one read.
    pub fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRow>>> {
        self.read(|db| ids.iter().map(|id| chunk_row(db, id)).collect())
    }
}

/// Records a proof; changes one row when the proof is new to the user.
const PROVE: &str = "INSERT INTO chunk_proofs(user_id, chunk, len) VALUES(?1, ?2, ?3)
     ON CONFLICT(user_id, chunk) DO NOTHING";

/// Registers an absent chunk as a part of a pack (or re-points a registration that never
/// became present).
const REGISTER_PACKED: &str =
    "INSERT INTO chunks(id, len, state, epoch, pack, pack_offset) VALUES(?1, ?2, 0, ?3, ?4, ?5)
     ON CONFLICT(id) DO UPDATE SET len=excluded.len, state=0, epoch=excluded.epoch,
       pack=excluded.pack, pack_offset=excluded.pack_offset";

/// [`REGISTER_PACKED`] for a chunk stored as its own object.
const REGISTER_ALONE: &str =
    "INSERT INTO chunks(id, len, state, epoch, pack, pack_offset) VALUES(?1, ?2, 0, ?3, NULL, NULL)
     ON CONFLICT(id) DO UPDATE SET len=excluded.len, state=0, epoch=excluded.epoch,
       pack=NULL, pack_offset=NULL";

impl Meta {
    /// Marks a chunk whose bytes are gone from the store as lost: it then counts as missing
    /// everywhere, so the next upload of any file holding it sends it again, and
    /// [`Meta::damaged`] lists the paths that need that. Only while the row still says the
    /// chunk is where `row` looked (gc's repacking may have moved it meanwhile).
    pub fn mark_lost(&self, row: &ChunkRow) -> Result<bool> {
        let ctx = "marking a chunk lost";
        let raw = &row.id.as_bytes()[..];
        self.write(ctx, |tx| {
            let n = match row.place {
                ChunkPlace::Object => tx.exec(
                    ctx,
                    "UPDATE chunks SET state=?2 WHERE id=?1 AND state=1 AND pack IS NULL",
                    args![raw, LOST],
                )?,
                ChunkPlace::Packed { pack, offset } => tx.exec(
                    ctx,
                    "UPDATE chunks SET state=?2
                     WHERE id=?1 AND state=1 AND pack=?3 AND pack_offset=?4",
                    args![raw, LOST, &pack.0[..], offset as i64],
                )?,
            };
            if n > 0 {
                note_removal(tx)?;
            }
            Ok(n > 0)
        })
    }

    /// Paths under `prefix` in folder `folder_id` with a retained version that references a
    /// lost chunk: their content must be uploaded again.
    pub fn damaged(&self, folder_id: i64, prefix: &RelPath) -> Result<Vec<RelPath>> {
        let paths: Vec<String> = self.read(|db| {
            db.all(
                "listing damaged files",
                "SELECT DISTINCT v.path FROM chunks c JOIN version_chunks vc ON vc.chunk=c.id
                 JOIN versions v ON v.id=vc.version_id WHERE c.state=2 AND v.folder_id=?1",
                args![folder_id],
                |r| r.get(0),
            )
        })?;
        Ok(paths
            .iter()
            .filter_map(|p| RelPath::parse(p).ok())
            .filter(|p| p.starts_with(prefix))
            .collect())
    }

    /// The chunks stored and the bytes the kept versions reference, for `/metrics`. Two
    /// aggregate scans: fine for a scrape every 15 s or more up to millions of chunks; a
    /// scale-out store would keep running totals instead.
    pub fn stored_totals(&self) -> Result<StoredTotals> {
        let ctx = "reading the metrics";
        self.read(|db| {
            let (chunks, bytes) = db
                .opt(
                    ctx,
                    "SELECT COUNT(*), CAST(COALESCE(SUM(len), 0) AS BIGINT) FROM chunks
                     WHERE state=1",
                    args![],
                    |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?)),
                )?
                .unwrap_or_default();
            let referenced = db
                .opt(
                    ctx,
                    "SELECT CAST(COALESCE(SUM(len), 0) AS BIGINT) FROM version_chunks",
                    args![],
                    |r| r.get::<i64>(0),
                )?
                .unwrap_or_default();
            let n = |v: i64| v.max(0) as u64;
            Ok(StoredTotals {
                chunks: n(chunks),
                bytes: n(bytes),
                referenced: n(referenced),
            })
        })
    }
}

/// What the chunk table holds and what the kept versions reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredTotals {
    /// Present chunks.
    pub chunks: u64,
    /// Their bytes, each chunk once.
    pub bytes: u64,
    /// Bytes the kept versions reference (before deduplication).
    pub referenced: u64,
}

/// Chunk row state 2: the row is known but its bytes are gone from the store.
pub(super) const LOST: i64 = 2;

fn chunk_row(db: &dyn Sql, id: &ChunkId) -> Result<Option<ChunkRow>> {
    db.opt(
        "reading chunk",
        "SELECT len, pack, pack_offset FROM chunks WHERE id=?1 AND state=1",
        args![&id.as_bytes()[..]],
        |r| {
            Ok(ChunkRow {
                id: *id,
                len: len_at(r, 0)?,
                place: place_of(r.get(1)?, r.get(2)?),
            })
        },
    )
}

/// Adds `bytes` to `user`'s use, refusing when that passes their quota.
fn charge(tx: &dyn Sql, user: &User, bytes: u64) -> Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    let (quota, used): (Option<i64>, i64) = tx
        .opt(
            "checking quota",
            "SELECT quota, used_bytes FROM users WHERE id=?1",
            args![user.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .ok_or_else(|| Error::NotFound(format!("checking quota: no user {}", user.name)))?;
    let after = used.saturating_add(bytes as i64);
    if let Some(q) = quota.filter(|q| after > *q) {
        return Err(Error::Quota(format!(
            "quota exceeded: user {} uses {used} of {q} bytes and this upload needs {bytes} more; nothing was stored",
            user.name
        )));
    }
    tx.exec(
        "charging quota",
        "UPDATE users SET used_bytes=?1 WHERE id=?2",
        args![after, user.id],
    )?;
    Ok(())
}

/// Drops the proofs of a collected chunk and gives its bytes back to their users' quotas.
pub(super) fn forget_proofs(tx: &dyn Sql, id: &ChunkId) -> Result<()> {
    let ctx = "collecting garbage";
    let raw = &id.as_bytes()[..];
    // `UPDATE ... FROM` joins each prover's row once (the proof key is user and chunk); a use
    // never goes below 0.
    tx.exec(
        ctx,
        "UPDATE users SET used_bytes=CASE WHEN users.used_bytes > p.len
           THEN users.used_bytes - p.len ELSE 0 END
         FROM chunk_proofs p WHERE p.chunk=?1 AND p.user_id=users.id",
        args![raw],
    )?;
    tx.exec(ctx, "DELETE FROM chunk_proofs WHERE chunk=?1", args![raw])?;
    Ok(())
}
