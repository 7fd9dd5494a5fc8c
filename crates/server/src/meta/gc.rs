//! gc's side of the metadata: generations (the gc epoch), collecting unreferenced chunk rows
//! in batches, holding the write side while gc looks for orphan objects, and the record of
//! gc runs that `/metrics` reads. `crate::maintenance::gc` drives these; the rules for what may
//! be collected live in [`Meta::collect_batch`]'s statement and nowhere else.
//!
//! gc decides by generations rather than by clocks: a chunk touched (uploaded, registered or
//! asked about) in the current or previous generation is spared, which covers uploads not yet
//! committed whatever their speed.

use cairn_model::PackId;
use cairn_store::ObjectKey;

use super::chunks::{forget_proofs, len_at, note_removal};
use super::sql::{args, Sql};
use super::{chunk_id, place_of, ChunkPlace, ChunkRow, Meta};
use crate::Result;

/// The `meta` rows that count gc runs and their time: gc runs in its own process
/// (`cairn server gc`), and the server's `/metrics` reads them at scrape time.
const GC_RUNS_KEY: &str = "gc_runs";
const GC_SECONDS_KEY: &str = "gc_seconds_total";

/// The current gc generation (0 before the first gc).
pub(super) fn gc_epoch(db: &dyn Sql) -> Result<i64> {
    Ok(meta_number(db, "reading gc epoch", "gc_epoch")?.unwrap_or(0))
}

/// A `meta` value that holds a number; `None` when unset or not a number.
fn meta_number<T: std::str::FromStr>(db: &dyn Sql, what: &str, key: &str) -> Result<Option<T>> {
    let v: Option<String> = db.opt(
        what,
        "SELECT value FROM meta WHERE key=?1",
        args![key],
        |r| r.get(0),
    )?;
    Ok(v.and_then(|v| v.parse().ok()))
}

fn set_meta(db: &dyn Sql, what: &str, key: &str, value: &str) -> Result<()> {
    db.exec(
        what,
        "INSERT INTO meta(key, value) VALUES(?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        args![key, value],
    )?;
    Ok(())
}

/// Chunk rows gc may collect, `?1` being the generation before the current one (rows touched
/// in it or later are spared): present ones no version references, registrations whose upload
/// never finished, and lost ones nothing references any more.
const COLLECTABLE: &str = "SELECT id, len, pack, pack_offset FROM chunks c WHERE
       (state=1 AND epoch < ?1
        AND NOT EXISTS (SELECT 1 FROM version_chunks vc WHERE vc.chunk=c.id))
       OR (state=0 AND epoch < ?1)
       OR (state=2 AND NOT EXISTS (SELECT 1 FROM version_chunks vc WHERE vc.chunk=c.id))
     LIMIT ?2";

/// A pack keeps its object while a row still points into it (`LIMIT 1`: a pack has many).
pub(super) const PACK_USED: &str = "SELECT 1 FROM chunks WHERE pack=?1 LIMIT 1";

/// Puts a pack on the list repacking looks at.
pub(super) const REVIEW: &str =
    "INSERT INTO pack_review(pack) VALUES(?1) ON CONFLICT(pack) DO NOTHING";

impl Meta {
    /// Starts a gc generation; returns the new epoch.
    pub fn bump_gc_epoch(&self) -> Result<i64> {
        let ctx = "starting gc";
        self.write(ctx, |tx| {
            let epoch = gc_epoch(tx)? + 1;
            set_meta(tx, ctx, "gc_epoch", &epoch.to_string())?;
            Ok(epoch)
        })
    }

    /// Collects the next batch of collectable chunks while holding the write side: chunks no
    /// version references and nobody touched (uploaded, registered or asked about) in this
    /// generation or the previous one, which covers uploads not yet committed and dead ones.
    /// Rows go first, in a transaction that commits; then `delete_objects` removes their
    /// objects and the packs left without rows ([`Meta::delete_unreferenced`]). A crash or a
    /// failed delete in between leaves an orphan (the next gc removes it), never a row without
    /// its object. Returns how many chunks and bytes went; 0 when done.
    pub fn collect_batch(
        &self,
        epoch: i64,
        batch: u32,
        delete_objects: &mut dyn FnMut(&[ObjectKey]),
    ) -> Result<(u64, u64)> {
        let ctx = "collecting garbage";
        self.write_alone(ctx, |tx| {
            let doomed: Vec<ChunkRow> = tx
                .all(ctx, COLLECTABLE, args![epoch - 1, batch], |r| {
                    Ok((r.get::<Vec<u8>>(0)?, len_at(r, 1)?, r.get(2)?, r.get(3)?))
                })?
                .into_iter()
                .filter_map(|(id, len, pack, offset)| {
                    Some(ChunkRow {
                        id: chunk_id(&id)?,
                        len,
                        place: place_of(pack, offset),
                    })
                })
                .collect();
            if doomed.is_empty() {
                return Ok((Vec::new(), 0, 0));
            }
            let keys = forget_rows(tx, &doomed)?;
            Ok((
                keys,
                doomed.len() as u64,
                doomed.iter().map(|r| u64::from(r.len)).sum(),
            ))
        })
        .and_then(|(keys, n, bytes)| {
            self.delete_unreferenced(ctx, keys, delete_objects)?;
            Ok((n, bytes))
        })
    }

    /// Deletes, through `delete_objects`, those of `keys` that no row points at, holding the
    /// write side. Called once the transaction that took their rows away has committed: an
    /// object deleted before that commit would leave, after a crash or power cut, rows
    /// pointing at nothing (found by the power-loss rig, `docs/reliability.md`). The look
    /// again under the lock matters for a chunk stored alone: an upload of the same chunk
    /// in between made a new row for the same object.
    pub fn delete_unreferenced(
        &self,
        what: &str,
        keys: Vec<ObjectKey>,
        delete_objects: &mut dyn FnMut(&[ObjectKey]),
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.holding_writes(what, |rows| {
            let mut free = Vec::with_capacity(keys.len());
            for key in keys {
                if !rows.has_rows_for(&key)? {
                    free.push(key);
                }
            }
            delete_objects(&free);
            Ok(())
        })
    }

    /// Runs `f` while gc holds the store's write side: nothing registers, touches or commits
    /// a chunk until it returns, so a row `f` does not find cannot appear under it. `f` looks
    /// rows up through the [`WritesHeld`] it is given. An error from `f` changes nothing.
    pub fn holding_writes<T>(
        &self,
        what: &str,
        f: impl FnOnce(&WritesHeld<'_>) -> Result<T>,
    ) -> Result<T> {
        self.write_alone(what, |db| f(&WritesHeld { db, what }))
    }

    /// Counts a completed gc run of `seconds`.
    pub fn record_gc_run(&self, seconds: f64) -> Result<()> {
        let ctx = "recording the gc run";
        self.write(ctx, |tx| {
            let runs: u64 = meta_number(tx, ctx, GC_RUNS_KEY)?.unwrap_or(0);
            let total: f64 = meta_number(tx, ctx, GC_SECONDS_KEY)?.unwrap_or(0.0);
            set_meta(tx, ctx, GC_RUNS_KEY, &(runs + 1).to_string())?;
            set_meta(tx, ctx, GC_SECONDS_KEY, &format!("{:.6}", total + seconds))
        })
    }

    /// The gc runs completed and the seconds they took in all.
    pub fn gc_runs(&self) -> Result<GcRuns> {
        let ctx = "reading the gc runs";
        self.read(|db| {
            Ok(GcRuns {
                runs: meta_number(db, ctx, GC_RUNS_KEY)?.unwrap_or(0),
                seconds: meta_number(db, ctx, GC_SECONDS_KEY)?.unwrap_or(0.0),
            })
        })
    }
}

/// What [`Meta::record_gc_run`] has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GcRuns {
    pub runs: u64,
    pub seconds: f64,
}

/// Deletes the rows of `doomed` and their proofs; returns the objects left without a row
/// (chunks stored alone, and packs none of whose parts is left).
fn forget_rows(tx: &dyn Sql, doomed: &[ChunkRow]) -> Result<Vec<ObjectKey>> {
    let ctx = "collecting garbage";
    note_removal(tx)?;
    let mut keys = Vec::new();
    for row in doomed {
        let raw = &row.id.as_bytes()[..];
        tx.exec(ctx, "DELETE FROM chunks WHERE id=?1", args![raw])?;
        forget_proofs(tx, &row.id)?;
        if row.place == ChunkPlace::Object {
            keys.push(ObjectKey::Chunk(row.id));
        }
    }
    let mut packs: Vec<PackId> = doomed
        .iter()
        .filter_map(|r| match r.place {
            ChunkPlace::Packed { pack, .. } => Some(pack),
            ChunkPlace::Object => None,
        })
        .collect();
    packs.sort();
    packs.dedup();
    for pack in packs {
        let raw = &pack.0[..];
        if tx.opt(ctx, PACK_USED, args![raw], |_| Ok(()))?.is_none() {
            tx.exec(ctx, "DELETE FROM pack_review WHERE pack=?1", args![raw])?;
            keys.push(ObjectKey::Pack(pack));
        } else {
            // Part dead now: gc's repacking looks at it (`meta/repack.rs`).
            tx.exec(ctx, REVIEW, args![raw])?;
        }
    }
    Ok(keys)
}

/// The metadata as gc sees it while holding the write side ([`Meta::holding_writes`]).
pub struct WritesHeld<'a> {
    db: &'a dyn Sql,
    what: &'a str,
}

impl WritesHeld<'_> {
    /// Whether a chunk row points at object `key`: a chunk stored alone, or a pack with a part
    /// left in it. An object without one is an orphan.
    pub fn has_rows_for(&self, key: &ObjectKey) -> Result<bool> {
        let found = match key {
            ObjectKey::Chunk(id) => self.db.opt(
                self.what,
                "SELECT 1 FROM chunks WHERE id=?1 AND pack IS NULL",
                args![&id.as_bytes()[..]],
                |_| Ok(()),
            )?,
            ObjectKey::Pack(p) => self
                .db
                .opt(self.what, PACK_USED, args![&p.0[..]], |_| Ok(()))?,
        };
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use cairn_model::ChunkId;

    use super::*;
    use crate::meta::User;

    fn store(name: &str) -> Meta {
        let dir = std::env::temp_dir().join(format!(
            "cairn-meta-gc-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Meta::open(&dir.join("meta.sqlite")).expect("open")
    }

    fn user(meta: &Meta, name: &str) -> User {
        meta.add_user(name, "x", false).expect("add user");
        meta.user_by_name(name).expect("look up").expect("added").0
    }

    /// Uploads `chunks` as `user` would (small ones into `pack`), all the way to present.
    fn upload(meta: &Meta, user: &User, pack: PackId, small: &[(ChunkId, u32)]) {
        let plan = meta.begin_chunks(user, pack, small, &[]).expect("begin");
        assert!(meta.finish_chunks(pack, &plan).expect("finish").is_empty());
    }

    /// One gc generation: returns the objects it deleted.
    fn generation(meta: &Meta) -> Vec<ObjectKey> {
        let epoch = meta.bump_gc_epoch().expect("bump");
        let mut deleted = Vec::new();
        while meta
            .collect_batch(epoch, 2, &mut |keys| deleted.extend_from_slice(keys))
            .expect("collect")
            .0
            > 0
        {}
        deleted
    }

    /// The stored use, as the column holds it (a `User` reads a negative one as 0).
    fn used(meta: &Meta, name: &str) -> i64 {
        meta.read(|db| {
            db.opt(
                "test",
                "SELECT used_bytes FROM users WHERE name=?1",
                args![name],
                |r| r.get(0),
            )
        })
        .expect("read")
        .expect("known")
    }

    #[test]
    fn a_collected_chunk_gives_its_bytes_back_to_every_prover_never_below_zero() {
        let meta = store("proofs");
        let (ann, bob) = (user(&meta, "ann"), user(&meta, "bob"));
        let a = ChunkId::of(b"a");
        let b = ChunkId::of(b"b");
        upload(&meta, &ann, PackId([1; 16]), &[(a, 100), (b, 50)]);
        upload(&meta, &bob, PackId([2; 16]), &[(a, 100)]);
        assert_eq!((used(&meta, "ann"), used(&meta, "bob")), (150, 100));
        // A use already below a proof's length (set by hand) stops at 0.
        meta.write("test", |db| {
            db.exec(
                "test",
                "UPDATE users SET used_bytes=30 WHERE name='bob'",
                args![],
            )
        })
        .expect("lower bob's use");
        assert!(
            generation(&meta).is_empty(),
            "touched in the previous generation"
        );
        let deleted = generation(&meta);
        assert_eq!(deleted, vec![ObjectKey::Pack(PackId([1; 16]))]);
        assert_eq!((used(&meta, "ann"), used(&meta, "bob")), (0, 0));
        assert!(meta.chunk(&a).expect("read").is_none());
    }

    #[test]
    fn a_pack_goes_with_its_last_part_and_orphans_are_told_from_rows() {
        let meta = store("packs");
        let ann = user(&meta, "ann");
        let (a, b) = (ChunkId::of(b"a"), ChunkId::of(b"b"));
        let pack = PackId([3; 16]);
        upload(&meta, &ann, pack, &[(a, 10), (b, 20)]);
        let alone = ChunkId::of(b"alone");
        let plan = meta
            .begin_chunks(&ann, pack, &[], &[(alone, 100_000)])
            .expect("begin");
        assert_eq!(plan.objects, vec![alone]);
        meta.finish_chunks(pack, &plan).expect("finish");
        let known = |key: ObjectKey| {
            meta.holding_writes("test", |rows| rows.has_rows_for(&key))
                .expect("look up")
        };
        assert!(known(ObjectKey::Pack(pack)));
        assert!(known(ObjectKey::Chunk(alone)));
        assert!(!known(ObjectKey::Chunk(a)), "a packed chunk has no object");
        assert!(!known(ObjectKey::Pack(PackId([4; 16]))));
        // `a` stays referenced through a touch in every generation; `b` and `alone` go.
        let mut deleted = Vec::new();
        for _ in 0..3 {
            assert!(meta.missing_chunks(&ann, &[a]).expect("ask").is_empty());
            deleted.extend(generation(&meta));
        }
        assert_eq!(deleted, vec![ObjectKey::Chunk(alone)], "the pack keeps `a`");
        assert!(known(ObjectKey::Pack(pack)));
        assert_eq!(generation(&meta), vec![ObjectKey::Pack(pack)]);
        assert!(!known(ObjectKey::Pack(pack)));
    }

    #[test]
    fn parts_move_only_from_where_they_were_copied_and_an_emptied_pack_goes() {
        use crate::meta::{ChunkPlace, Move};
        let meta = store("repoint");
        let ann = user(&meta, "ann");
        let (a, b, c) = (ChunkId::of(b"a"), ChunkId::of(b"b"), ChunkId::of(b"c"));
        let (old, new) = (PackId([5; 16]), PackId([6; 16]));
        upload(&meta, &ann, old, &[(a, 10), (b, 20), (c, 30)]);
        let parts = meta.pack_parts(&old).expect("parts").expect("all present");
        assert_eq!(
            parts.iter().map(|p| p.offset).collect::<Vec<_>>(),
            [0, 10, 30]
        );
        let mv = |id, from_offset, to_offset| Move {
            id,
            from: old,
            from_offset,
            to_offset,
        };
        // c's move names an offset it is not at: it stays, and so does the old pack.
        let mut deleted = Vec::new();
        let moved = meta
            .repoint(
                new,
                &[mv(a, 0, 0), mv(b, 10, 10), mv(c, 99, 30)],
                &mut |k| deleted.extend_from_slice(k),
            )
            .expect("repoint");
        assert_eq!((moved, deleted.len()), (2, 0));
        let place = |id| meta.chunk(&id).expect("read").expect("present").place;
        assert_eq!(
            place(b),
            ChunkPlace::Packed {
                pack: new,
                offset: 10
            }
        );
        assert_eq!(
            place(c),
            ChunkPlace::Packed {
                pack: old,
                offset: 30
            }
        );
        let review = meta.packs_to_review(None, 10).expect("review");
        assert!(review.contains(&new), "the new pack holds a dead copy of c");
        // A reader that saw b in the old pack may not mark it lost there.
        let stale = crate::meta::ChunkRow {
            id: b,
            len: 20,
            place: ChunkPlace::Packed {
                pack: old,
                offset: 10,
            },
        };
        assert!(!meta.mark_lost(&stale).expect("mark"));
        meta.repoint(new, &[mv(c, 30, 30)], &mut |k| deleted.extend_from_slice(k))
            .expect("repoint");
        assert_eq!(deleted, vec![ObjectKey::Pack(old)]);
        assert!(!meta
            .packs_to_review(None, 10)
            .expect("review")
            .contains(&old));
    }

    #[test]
    fn one_gc_runs_at_a_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("meta.sqlite");
        let meta = Meta::open(&path).expect("open");
        let first = meta.gc_guard().expect("the first run");
        // Another process's store object on the same file: the lock is the kernel's.
        let other = Meta::open(&path).expect("open again");
        let err = other.gc_guard().err().expect("a second run is refused");
        assert!(err.to_string().contains("another gc is running"), "{err}");
        drop(first);
        other.gc_guard().expect("free once the first run ended");
    }

    #[test]
    fn gc_runs_add_up() {
        let meta = store("runs");
        assert_eq!(meta.gc_runs().expect("read"), GcRuns::default());
        meta.record_gc_run(1.25).expect("record");
        meta.record_gc_run(0.5).expect("record");
        let runs = meta.gc_runs().expect("read");
        assert_eq!(runs.runs, 2);
        assert!((runs.seconds - 1.75).abs() < 1e-9, "{runs:?}");
    }
}
