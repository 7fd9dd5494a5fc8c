//! gc's repacking: the present parts of packs with too much dead space are copied into new
//! packs, and the old packs deleted, so the store holds at most [`MAX_DEAD`] more than what
//! retained versions reference (small chunks travel in packs, and a pack used to be freed only
//! once every part of it was dead).
//!
//! Only packs on the review list are looked at (those that lost a part to gc; see
//! `meta/repack.rs`). A pack's dead space is its object's size less its present parts. Every
//! part copied is read back and checked against its id first, so repacking never spreads a
//! damaged chunk; a part that fails stays where it is, and its pack with it. The new pack is
//! written and synced before any row points at it, and old packs are deleted only once no row
//! points at them, so a crash at any point leaves at worst an orphan object for the next gc.
//! A reader that looked a part up just before it moved finds the old pack gone and looks the
//! part up again (`api::read_row`).

use bytes::{Bytes, BytesMut};
use cairn_model::{ChunkId, PackId};
use cairn_store::ObjectKey;
use tokio::runtime::Handle;

use crate::datadir::DataDir;
use crate::meta::{Move, PackPart};
use crate::Result;

/// The dead share of a pack, as a fraction of its present parts, above which it is rewritten:
/// a pack of 110 bytes holding 100 live ones stays, one holding 99 goes.
pub const MAX_DEAD: f64 = 0.10;

/// New packs are cut at this size (a pack is one object; millions of tiny ones would cost a
/// request each to read).
const TARGET: usize = 16 << 20;

/// Packs read from the review list at a time.
const PAGE: u32 = 256;

/// What repacking did.
#[derive(Debug, Default)]
pub struct RepackReport {
    /// Packs looked at.
    pub reviewed: u64,
    /// Old packs deleted once their parts moved.
    pub packs_deleted: u64,
    /// Bytes of present parts copied into new packs.
    pub bytes_moved: u64,
    /// Store bytes given back (old packs' sizes less what was copied out of them).
    pub bytes_freed: u64,
    /// Problems that left a pack as it is (it is looked at again next time where that helps).
    pub failed: Vec<String>,
}

/// Repacks every pack on the review list that holds too much dead space. Call from a blocking
/// thread of a tokio runtime, as gc does, with gc's one-run guard held.
///
/// # Errors
/// When the metadata store fails; what moved before stays moved.
pub fn repack(data: &DataDir, rt: &Handle) -> Result<RepackReport> {
    let mut report = RepackReport::default();
    let mut out = NewPack::default();
    let mut after = None;
    loop {
        let page = data.meta.packs_to_review(after.as_ref(), PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(*last);
        let mut done = Vec::new();
        for pack in page {
            report.reviewed += 1;
            match look(data, rt, &pack) {
                Ok(Some((parts, size, bytes))) => {
                    out.add(pack, size, &parts, &bytes);
                    if out.body.len() >= TARGET {
                        out.flush(data, rt, &mut report)?;
                    }
                }
                Ok(None) => done.push(pack),
                Err(e) => report.failed.push(e),
            }
        }
        data.meta.reviewed(&done)?;
    }
    out.flush(data, rt, &mut report)?;
    Ok(report)
}

/// A pack worth rewriting: its parts whose bytes check out, its size and its bytes. `None`
/// when it is to be left as it is (little dead space, a part not present, its object gone).
type Worth = Option<(Vec<PackPart>, u64, Bytes)>;

fn look(data: &DataDir, rt: &Handle, pack: &PackId) -> std::result::Result<Worth, String> {
    let key = ObjectKey::Pack(*pack);
    let parts = match data.meta.pack_parts(pack) {
        Ok(Some(p)) if !p.is_empty() => p,
        Ok(_) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let live: u64 = parts.iter().map(|p| u64::from(p.len)).sum();
    let size = match rt.block_on(data.store.stat(&key)) {
        Ok(Some(size)) => size,
        // Missing: `cairn server check` reports the parts that went with it.
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if (size.saturating_sub(live) as f64) <= live as f64 * MAX_DEAD {
        return Ok(None);
    }
    let bytes = rt
        .block_on(data.store.get_range(&key, 0..size))
        .map_err(|e| e.to_string())?;
    let mut sound = Vec::with_capacity(parts.len());
    for part in parts {
        let end = part.offset + u64::from(part.len);
        match bytes.get(part.offset as usize..end as usize) {
            Some(b) if ChunkId::of(b) == part.id => sound.push(part),
            _ => tracing::warn!(
                pack = %hex(pack),
                chunk = %part.id,
                "a part does not match its id; left in place for `cairn server check`"
            ),
        }
    }
    if sound.is_empty() {
        return Ok(None);
    }
    Ok(Some((sound, size, bytes)))
}

/// The pack being filled with parts copied out of old ones.
#[derive(Default)]
struct NewPack {
    body: BytesMut,
    moves: Vec<Move>,
    /// The old packs copied from, with their sizes.
    sources: Vec<(PackId, u64)>,
}

impl NewPack {
    fn add(&mut self, from: PackId, size: u64, parts: &[PackPart], bytes: &[u8]) {
        for p in parts {
            let start = p.offset as usize;
            self.moves.push(Move {
                id: p.id,
                from,
                from_offset: p.offset,
                to_offset: self.body.len() as u64,
            });
            self.body
                .extend_from_slice(&bytes[start..start + p.len as usize]);
        }
        self.sources.push((from, size));
    }

    /// Writes the pack, points its parts at it and deletes the old packs left empty.
    fn flush(&mut self, data: &DataDir, rt: &Handle, report: &mut RepackReport) -> Result<()> {
        let NewPack {
            body,
            moves,
            sources,
        } = std::mem::take(self);
        if moves.is_empty() {
            return Ok(());
        }
        let copied = body.len() as u64;
        let to = PackId(random_id());
        let key = ObjectKey::Pack(to);
        let written = rt.block_on(async {
            data.store.put(&key, body.freeze()).await?;
            data.store.sync().await
        });
        if let Err(e) = written {
            // The old packs stay on the list; a partial object is an orphan if this fails too.
            let _ = rt.block_on(data.store.delete(&key));
            report.failed.push(format!("writing a new pack: {e}"));
            return Ok(());
        }
        let mut deleted = Vec::new();
        data.meta.repoint(to, &moves, &mut |keys| {
            for k in keys {
                match rt.block_on(data.store.delete(k)) {
                    Ok(()) => deleted.push(*k),
                    // Without a row it is an orphan: the sweep after repacking removes it.
                    Err(e) => tracing::warn!(error = %e, "deleting a repacked pack"),
                }
            }
        })?;
        report.bytes_moved += copied;
        report.packs_deleted += deleted.len() as u64;
        let freed: u64 = sources
            .iter()
            .filter(|(p, _)| deleted.contains(&ObjectKey::Pack(*p)))
            .map(|(_, size)| size)
            .sum();
        report.bytes_freed += freed.saturating_sub(copied);
        Ok(())
    }
}

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id.copy_from_slice(&crate::auth::random_bytes(16));
    id
}

fn hex(pack: &PackId) -> String {
    pack.0.iter().map(|b| format!("{b:02x}")).collect()
}
