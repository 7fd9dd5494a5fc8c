//! What `crate::maintenance::check` asks of the metadata: every chunk row (to compare with the
//! store), and the references that contradict the chunk table or their own version. Each runs
//! on a reader, in one snapshot, so a check never holds up the server's writes.

use cairn_model::ChunkId;

use super::chunks::len_at;
use super::sql::{args, Row};
use super::{chunk_id, place_of, ChunkRow, LengthMismatch, Meta, PRESENT};
use crate::{Error, Result};

impl Meta {
    /// Calls `f` with every chunk row and whether it is present, grouped by pack.
    pub fn all_chunks(&self, f: &mut dyn FnMut(ChunkRow, bool) -> Result<()>) -> Result<()> {
        self.read(|db| {
            db.rows(
                "checking chunks",
                // NULLS FIRST: the engines differ by default; chunks stored alone come first.
                "SELECT id, len, pack, pack_offset, state FROM chunks
                 ORDER BY pack NULLS FIRST, pack_offset",
                args![],
                &mut |r| {
                    let raw: Vec<u8> = r.get(0)?;
                    let Some(id) = chunk_id(&raw) else {
                        return Err(Error::Corrupt(format!(
                            "chunk row with a malformed id ({} bytes)",
                            raw.len()
                        )));
                    };
                    let row = ChunkRow {
                        id,
                        len: len_at(r, 1)?,
                        place: place_of(r.get(2)?, r.get(3)?),
                    };
                    f(row, r.get::<i64>(4)? == PRESENT)
                },
            )
        })
    }

    /// References to chunks that are not present: (folder, path, seq, chunk).
    pub fn dangling_references(&self) -> Result<Vec<(String, String, i64, ChunkId)>> {
        let rows = self.read(|db| {
            db.all(
                "checking references",
                "SELECT f.name, v.path, v.seq, vc.chunk FROM version_chunks vc
                 JOIN versions v ON v.id=vc.version_id JOIN folders f ON f.id=v.folder_id
                 LEFT JOIN chunks c ON c.id=vc.chunk AND c.state=1 WHERE c.id IS NULL",
                args![],
                |r| Ok((place_in(r)?, r.get::<Vec<u8>>(3)?)),
            )
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|((f, p, s), c)| Some((f, p, s, chunk_id(&c)?)))
            .collect())
    }

    /// Chunk references whose length is not the stored chunk's.
    pub fn length_mismatches(&self) -> Result<Vec<LengthMismatch>> {
        let rows = self.read(|db| {
            db.all(
                "checking chunk lengths",
                "SELECT f.name, v.path, v.seq, vc.chunk, vc.len, c.len FROM version_chunks vc
                 JOIN chunks c ON c.id=vc.chunk JOIN versions v ON v.id=vc.version_id
                 JOIN folders f ON f.id=v.folder_id WHERE vc.len != c.len",
                args![],
                |r| {
                    let (folder, path, seq) = place_in(r)?;
                    let chunk: Vec<u8> = r.get(3)?;
                    Ok((folder, path, seq, chunk, len_at(r, 4)?, len_at(r, 5)?))
                },
            )
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(folder, path, seq, c, said, stored)| {
                Some(LengthMismatch {
                    folder,
                    path,
                    seq,
                    chunk: chunk_id(&c)?,
                    said,
                    stored,
                })
            })
            .collect())
    }

    /// File versions whose chunk lengths do not add up to their size: (folder, path, seq).
    pub fn size_mismatches(&self) -> Result<Vec<(String, String, i64)>> {
        self.read(|db| {
            db.all(
                "checking sizes",
                "SELECT f.name, v.path, v.seq FROM versions v JOIN folders f ON f.id=v.folder_id
                 WHERE v.kind='file' AND v.size != COALESCE((SELECT CAST(SUM(len) AS BIGINT)
                   FROM version_chunks vc WHERE vc.version_id=v.id), 0)",
                args![],
                place_in,
            )
        })
    }
}

/// The first three columns as a version's folder name, path and sequence number.
fn place_in(r: &dyn Row) -> Result<(String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

#[cfg(test)]
mod tests {
    use cairn_model::PackId;

    use super::*;
    use crate::meta::ChunkPlace;

    #[test]
    fn every_chunk_is_listed_those_stored_alone_first_then_by_pack_and_offset() {
        let dir = std::env::temp_dir().join(format!("cairn-meta-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let meta = Meta::open(&dir.join("meta.sqlite")).expect("open");
        meta.add_user("ann", "x", false).expect("add user");
        let ann = meta.user_by_name("ann").expect("look up").expect("added").0;
        let id = |s: &str| ChunkId::of(s.as_bytes());
        let (p1, p2) = (PackId([1; 16]), PackId([2; 16]));
        let plan = meta
            .begin_chunks(&ann, p2, &[(id("c"), 5), (id("d"), 7)], &[])
            .expect("begin");
        meta.finish_chunks(p2, &plan).expect("finish");
        let plan = meta
            .begin_chunks(&ann, p1, &[(id("b"), 3)], &[(id("a"), 70_000)])
            .expect("begin");
        meta.finish_chunks(p1, &plan).expect("finish");
        let mut seen = Vec::new();
        meta.all_chunks(&mut |row, present| {
            seen.push((row.id, row.place, row.len, present));
            Ok(())
        })
        .expect("list");
        let packed = |pack, offset| ChunkPlace::Packed { pack, offset };
        assert_eq!(
            seen,
            vec![
                (id("a"), ChunkPlace::Object, 70_000, true),
                (id("b"), packed(p1, 0), 3, true),
                (id("c"), packed(p2, 0), 5, true),
                (id("d"), packed(p2, 5), 7, true),
            ]
        );
    }
}
