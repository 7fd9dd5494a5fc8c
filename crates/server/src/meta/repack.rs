//! Repacking's side of the metadata: the packs gc should look at for dead space, their parts,
//! and pointing moved parts at the pack they were copied to. `crate::repack` drives these.
//!
//! A pack enters the review list when gc collects one of its parts and keeps another
//! (`meta/gc.rs`), and leaves it once looked at. Parts move under the write side, each only if
//! it still points where it was copied from, so a part re-registered meanwhile stays with the
//! upload that re-pointed it.

use cairn_model::{ChunkId, PackId};
use cairn_store::ObjectKey;

use super::chunk_id;
use super::chunks::len_at;
use super::gc::{PACK_USED, REVIEW};
use super::sql::args;
use super::Meta;
use crate::Result;

/// One part of a pack: a present chunk and where it sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackPart {
    pub id: ChunkId,
    pub len: u32,
    pub offset: u64,
}

/// A part copied into another pack, to be pointed at its new place.
#[derive(Clone, Copy, Debug)]
pub struct Move {
    pub id: ChunkId,
    pub from: PackId,
    pub from_offset: u64,
    pub to_offset: u64,
}

impl Meta {
    /// Up to `n` packs of the review list, in key order, after `after`.
    pub fn packs_to_review(&self, after: Option<&PackId>, n: u32) -> Result<Vec<PackId>> {
        let ctx = "listing packs to review";
        let after: Vec<u8> = after.map(|p| p.0.to_vec()).unwrap_or_default();
        self.read(|db| {
            db.all(
                ctx,
                "SELECT pack FROM pack_review WHERE pack > ?1 ORDER BY pack LIMIT ?2",
                args![&after[..], n],
                |r| r.get::<Vec<u8>>(0),
            )
        })
        .map(|rows| {
            rows.into_iter()
                .filter_map(|p| <[u8; 16]>::try_from(p).ok().map(PackId))
                .collect()
        })
    }

    /// The parts of `pack` in offset order; `None` when one is not present (an upload still
    /// writing it, or a chunk found lost): such a pack is left as it is.
    pub fn pack_parts(&self, pack: &PackId) -> Result<Option<Vec<PackPart>>> {
        let ctx = "reading the parts of a pack";
        let rows = self.read(|db| {
            db.all(
                ctx,
                "SELECT id, len, pack_offset, state FROM chunks WHERE pack=?1 ORDER BY pack_offset",
                args![&pack.0[..]],
                |r| {
                    let id = chunk_id(&r.get::<Vec<u8>>(0)?);
                    let offset = r.get::<i64>(2)?;
                    Ok((id, len_at(r, 1)?, offset, r.get::<i64>(3)?))
                },
            )
        })?;
        let mut parts = Vec::with_capacity(rows.len());
        for (id, len, offset, state) in rows {
            let (Some(id), Ok(offset), 1) = (id, u64::try_from(offset), state) else {
                return Ok(None);
            };
            parts.push(PackPart { id, len, offset });
        }
        Ok(Some(parts))
    }

    /// Takes `packs` off the review list.
    pub fn reviewed(&self, packs: &[PackId]) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let ctx = "recording reviewed packs";
        self.write(ctx, |tx| {
            for p in packs {
                tx.exec(
                    ctx,
                    "DELETE FROM pack_review WHERE pack=?1",
                    args![&p.0[..]],
                )?;
            }
            Ok(())
        })
    }

    /// Points each moved part at pack `to` (written and synced by the caller), if it still
    /// points where it was copied from; once that has committed, has `delete_objects` remove
    /// the packs left without parts ([`Meta::delete_unreferenced`]). Returns how many parts moved.
    /// A pack that keeps a part stays on the review list; `to` joins it when a part it holds
    /// did not move (that copy is dead space).
    pub fn repoint(
        &self,
        to: PackId,
        moves: &[Move],
        delete_objects: &mut dyn FnMut(&[ObjectKey]),
    ) -> Result<u64> {
        let ctx = "moving chunks to a new pack";
        self.write_alone(ctx, |tx| {
            let mut moved = 0u64;
            for m in moves {
                moved += tx.exec(
                    ctx,
                    "UPDATE chunks SET pack=?2, pack_offset=?3
                     WHERE id=?1 AND pack=?4 AND pack_offset=?5 AND state=1",
                    args![
                        &m.id.as_bytes()[..],
                        &to.0[..],
                        m.to_offset as i64,
                        &m.from.0[..],
                        m.from_offset as i64
                    ],
                )?;
            }
            if moved < moves.len() as u64 {
                tx.exec(ctx, REVIEW, args![&to.0[..]])?;
            }
            let mut from: Vec<PackId> = moves.iter().map(|m| m.from).collect();
            from.sort();
            from.dedup();
            let mut emptied = Vec::new();
            for pack in from {
                let raw = &pack.0[..];
                if tx.opt(ctx, PACK_USED, args![raw], |_| Ok(()))?.is_none() {
                    tx.exec(ctx, "DELETE FROM pack_review WHERE pack=?1", args![raw])?;
                    emptied.push(ObjectKey::Pack(pack));
                }
            }
            Ok((moved, emptied))
        })
        .and_then(|(moved, emptied)| {
            self.delete_unreferenced(ctx, emptied, delete_objects)?;
            Ok(moved)
        })
    }
}
