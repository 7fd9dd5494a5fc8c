//! The local index (SQLite on the client): per task, root and path, the state both replicas
//! agreed on last time (the base): the entry, its content hash, and each side's version token
//! for it (the left side's is a local file's stat, the right side's the server's sequence
//! number or a cloud's tag).
//!
//! The index is a cache plus the base: losing it costs a re-hash and never a deletion, because
//! a delete is planned only for a path whose base the index holds.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cairn_model::{ContentHash, EntryKind, RelPath};
use rusqlite::{params, Connection};

use crate::replica::{stat_version, Version};
use crate::{Error, Result};

/// The columns every read of rows takes, in this order (`versions_of` reads them by place).
const COLUMNS: &str = "SELECT path, kind, size, mtime_ns, ctime_ns, inode, mode, hash, seq, \
    left_version, right_version FROM files WHERE task=?1 AND root=?2";

/// A row's two version tokens, borrowed where stored. Rows written before versions were
/// tokens have none: the stat and the sequence number are those tokens.
fn versions_of<'r>(r: &'r rusqlite::Row<'_>) -> rusqlite::Result<(Cow<'r, str>, Cow<'r, str>)> {
    let left = match r.get_ref(9)?.as_str_or_null()? {
        Some(l) => Cow::Borrowed(l),
        None => Cow::Owned(
            stat_version(
                r.get::<_, i64>(2)? as u64,
                r.get(3)?,
                r.get(4)?,
                r.get::<_, i64>(5)? as u64,
                r.get(6)?,
            )
            .0,
        ),
    };
    let right = match r.get_ref(10)?.as_str_or_null()? {
        Some(v) => Cow::Borrowed(v),
        None => Cow::Owned(r.get::<_, i64>(8)?.to_string()),
    };
    Ok((left, right))
}

/// A row's path, kind, mode and versions, borrowed from the read.
pub struct Versions<'a> {
    pub path: &'a str,
    pub kind: EntryKind,
    pub mode: u32,
    pub left: &'a str,
    pub right: &'a str,
}

/// What both sides agreed a path was.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexRow {
    pub path: RelPath,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    pub hash: Option<ContentHash>,
    /// The left replica's version of it (here: the local file's stat).
    pub left: Version,
    /// The right replica's version of it (the server's sequence number).
    pub right: Version,
}

pub struct LocalIndex {
    conn: Connection,
}

fn db(context: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |cause| Error::Index {
        context: context.to_string(),
        cause,
    }
}

impl LocalIndex {
    /// # Errors
    /// When the index file cannot be opened or created.
    pub fn open(path: &Path) -> Result<Self> {
        let ctx = format!("opening local index {}", path.display());
        let conn = Connection::open(path).map_err(db(&ctx))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(db(&ctx))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS files(
               task TEXT NOT NULL, root INTEGER NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL,
               size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
               inode INTEGER NOT NULL, mode INTEGER NOT NULL, hash BLOB, seq INTEGER NOT NULL,
               PRIMARY KEY(task, root, path)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS servers(task TEXT PRIMARY KEY, server_id TEXT NOT NULL);",
        )
        .map_err(db(&ctx))?;
        add_version_columns(&conn).map_err(db(&ctx))?;
        Ok(LocalIndex { conn })
    }

    /// Every row of one local root of a task, by path. Built in bulk from a list (the map's
    /// nodes full), not row by row: inserting in order leaves every node half empty, which
    /// costs more than the list does while it lives.
    pub fn load(&self, task: &str, root: u32) -> Result<BTreeMap<RelPath, IndexRow>> {
        let mut out = Vec::new();
        self.each(task, root, &mut |row| out.push((row.path.clone(), row)))?;
        Ok(BTreeMap::from_iter(out))
    }

    /// Hands every row of one local root of a task to `f`, one at a time (none is kept).
    pub fn each(&self, task: &str, root: u32, f: &mut dyn FnMut(IndexRow)) -> Result<()> {
        self.each_unless(task, root, &mut |_| false, f)
    }

    /// [`LocalIndex::each`] without the rows whose path `skip` takes (judged before the row
    /// is built: a pass skips the bulk of a large index this way).
    pub fn each_unless(
        &self,
        task: &str,
        root: u32,
        skip: &mut dyn FnMut(&str) -> bool,
        f: &mut dyn FnMut(IndexRow),
    ) -> Result<()> {
        crate::off_runtime(|| self.each_now(task, root, None, skip, f))
    }

    /// The row of `path`, if the index has one (without reading the others).
    pub fn row(&self, task: &str, root: u32, path: &RelPath) -> Result<Option<IndexRow>> {
        let mut found = None;
        self.each_now(
            task,
            root,
            Some(path.as_str()),
            &mut |_| false,
            &mut |row| found = Some(row),
        )?;
        Ok(found)
    }

    /// Whether one local root of a task has no rows (it was never synced).
    pub fn is_empty(&self, task: &str, root: u32) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT NOT EXISTS(SELECT 1 FROM files WHERE task=?1 AND root=?2)",
                params![task, root],
                |r| r.get(0),
            )
            .map_err(db(&format!("reading the index of task {task}")))
    }

    /// The versions of every row of one root, borrowed from the read (no row is built):
    /// what a pass fingerprints before it lists.
    pub fn each_versions(
        &self,
        task: &str,
        root: u32,
        f: &mut dyn FnMut(Versions<'_>),
    ) -> Result<()> {
        let ctx = format!("reading the index of task {task}");
        let run = || -> rusqlite::Result<()> {
            let mut st = self.conn.prepare(COLUMNS)?;
            let mut rows = st.query(params![task, root])?;
            while let Some(r) = rows.next()? {
                let (Ok(path), Some(kind)) = (
                    r.get_ref(0)?.as_str(),
                    r.get_ref(1)?.as_str().ok().and_then(EntryKind::parse),
                ) else {
                    continue;
                };
                let (left, right) = versions_of(r)?;
                f(Versions {
                    path,
                    kind,
                    mode: r.get(6)?,
                    left: &left,
                    right: &right,
                });
            }
            Ok(())
        };
        crate::off_runtime(run).map_err(db(&ctx))
    }

    /// The rows of one root, or only that of `path`, but those whose path `skip` takes.
    fn each_now(
        &self,
        task: &str,
        root: u32,
        path: Option<&str>,
        skip: &mut dyn FnMut(&str) -> bool,
        f: &mut dyn FnMut(IndexRow),
    ) -> Result<()> {
        let ctx = format!("reading the index of task {task}");
        // Two statements, not `(?3 IS NULL OR path=?3)`: with the OR, SQLite would not look
        // the path up in the primary key but read the whole root.
        let sql = match path {
            Some(_) => format!("{COLUMNS} AND path=?3"),
            None => format!("{COLUMNS} AND ?3 IS NULL"),
        };
        let mut st = self.conn.prepare(&sql).map_err(db(&ctx))?;
        let mut rows = st.query(params![task, root, path]).map_err(db(&ctx))?;
        while let Some(r) = rows.next().map_err(db(&ctx))? {
            let row = (|| -> rusqlite::Result<Option<IndexRow>> {
                let path = r.get_ref(0)?.as_str()?;
                if skip(path) {
                    return Ok(None);
                }
                // A row that no longer parses is dropped: the next scan re-hashes that path.
                let (Ok(path), Some(kind)) = (
                    RelPath::parse(path),
                    r.get_ref(1)?.as_str().ok().and_then(EntryKind::parse),
                ) else {
                    return Ok(None);
                };
                let hash = r
                    .get_ref(7)?
                    .as_blob_or_null()?
                    .and_then(|h| <[u8; 32]>::try_from(h).ok())
                    .map(ContentHash::from_bytes);
                let (left, right) = versions_of(r)?;
                Ok(Some(IndexRow {
                    path,
                    kind,
                    size: r.get::<_, i64>(2)? as u64,
                    mtime_ns: r.get(3)?,
                    mode: r.get(6)?,
                    hash,
                    left: Version(left.into_owned()),
                    right: Version(right.into_owned()),
                }))
            })()
            .map_err(db(&ctx))?;
            if let Some(row) = row {
                f(row);
            }
        }
        Ok(())
    }

    /// Writes rows and removes paths in one transaction (durable: SQLite syncs, so the async
    /// runtime's thread is handed over meanwhile).
    pub fn apply(
        &mut self,
        task: &str,
        root: u32,
        upserts: &[IndexRow],
        removes: &[RelPath],
    ) -> Result<()> {
        crate::off_runtime(|| self.apply_now(task, root, upserts, removes))
    }

    fn apply_now(
        &mut self,
        task: &str,
        root: u32,
        upserts: &[IndexRow],
        removes: &[RelPath],
    ) -> Result<()> {
        let ctx = format!("updating the index of task {task}");
        let tx = self.conn.transaction().map_err(db(&ctx))?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO files(task, root, path, kind, size, mtime_ns, ctime_ns, inode, mode, hash, seq, left_version, right_version)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, 0, 0, ?7, ?8, 0, ?9, ?10)",
                )
                .map_err(db(&ctx))?;
            for r in upserts {
                put.execute(params![
                    task,
                    root,
                    r.path.as_str(),
                    r.kind.as_str(),
                    r.size as i64,
                    r.mtime_ns,
                    r.mode,
                    r.hash.map(|h| h.as_bytes().to_vec()),
                    r.left.0,
                    r.right.0
                ])
                .map_err(db(&ctx))?;
            }
            let mut del = tx
                .prepare_cached("DELETE FROM files WHERE task=?1 AND root=?2 AND path=?3")
                .map_err(db(&ctx))?;
            for p in removes {
                del.execute(params![task, root, p.as_str()])
                    .map_err(db(&ctx))?;
            }
        }
        tx.commit().map_err(db(&ctx))
    }

    /// The identity of the server a task last synced with.
    pub fn server_of(&self, task: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row("SELECT server_id FROM servers WHERE task=?1", [task], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db(&format!("reading the server of task {task}")))
    }

    pub fn set_server(&self, task: &str, server_id: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO servers(task, server_id) VALUES(?1, ?2)",
                [task, server_id],
            )
            .map_err(db(&format!("recording the server of task {task}")))?;
        Ok(())
    }

    /// Renumbers the local roots of a task whose folders changed: `kept` maps an old root
    /// number to its new one, and the rows of every other root are forgotten. A base is only
    /// ever compared with the folder it was taken from, so a new folder never inherits
    /// another's base (which could plan deletions on the server).
    pub fn remap_roots(&mut self, task: &str, kept: &[(u32, u32)]) -> Result<()> {
        let ctx = format!("renumbering the folders of task {task}");
        // Kept roots are parked above every real root number first, so that swapping two
        // roots never collides on the primary key.
        const PARKED: i64 = 1 << 40;
        let tx = self.conn.transaction().map_err(db(&ctx))?;
        for (old, new) in kept {
            tx.execute(
                "UPDATE files SET root=?3 WHERE task=?1 AND root=?2",
                params![task, old, PARKED + i64::from(*new)],
            )
            .map_err(db(&ctx))?;
        }
        tx.execute(
            "DELETE FROM files WHERE task=?1 AND root<?2",
            params![task, PARKED],
        )
        .map_err(db(&ctx))?;
        tx.execute(
            "UPDATE files SET root=root-?2 WHERE task=?1",
            params![task, PARKED],
        )
        .map_err(db(&ctx))?;
        tx.commit().map_err(db(&ctx))
    }

    /// Forgets every row of one root of a task: its base means nothing any more.
    pub fn forget_root(&self, task: &str, root: u32) -> Result<()> {
        crate::off_runtime(|| {
            self.conn
                .execute(
                    "DELETE FROM files WHERE task=?1 AND root=?2",
                    params![task, root],
                )
                .map(|_| ())
                .map_err(db(&format!("forgetting the index of task {task}")))
        })
    }

    /// Forgets a task (its remote data stays).
    pub fn forget_task(&self, task: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM files WHERE task=?1", [task])
            .map_err(db(&format!("forgetting task {task}")))?;
        self.conn
            .execute("DELETE FROM servers WHERE task=?1", [task])
            .map_err(db(&format!("forgetting task {task}")))?;
        Ok(())
    }
}

/// Indexes made before versions were tokens gain the two version columns (their rows keep
/// working: the old stat and sequence number columns stand for them).
fn add_version_columns(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('files') WHERE name='left_version'")?
        .exists([])?;
    if !has {
        conn.execute_batch(
            "ALTER TABLE files ADD COLUMN left_version TEXT;
             ALTER TABLE files ADD COLUMN right_version TEXT;",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, seq: i64) -> IndexRow {
        IndexRow {
            path: RelPath::parse(path).expect("valid path"),
            kind: EntryKind::File,
            size: 1,
            mtime_ns: 1,
            mode: 0o644,
            hash: None,
            left: stat_version(1, 1, 1, 1, 0o644),
            right: Version(seq.to_string()),
        }
    }

    fn paths(index: &LocalIndex, task: &str, root: u32) -> Vec<String> {
        let mut p: Vec<String> = index
            .load(task, root)
            .expect("load")
            .into_keys()
            .map(|p| p.as_str().to_string())
            .collect();
        p.sort();
        p
    }

    #[test]
    fn rows_written_before_version_columns_keep_their_stat_and_sequence_number() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("index.sqlite");
        let old = Connection::open(&path).expect("open");
        old.execute_batch(
            "CREATE TABLE files(
               task TEXT NOT NULL, root INTEGER NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL,
               size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
               inode INTEGER NOT NULL, mode INTEGER NOT NULL, hash BLOB, seq INTEGER NOT NULL,
               PRIMARY KEY(task, root, path)) WITHOUT ROWID;
             INSERT INTO files VALUES('t', 0, 'a.txt', 'file', 5, 11, 12, 13, 420, NULL, 42);",
        )
        .expect("old schema");
        drop(old);
        let mut index = LocalIndex::open(&path).expect("open and migrate");
        let rows = index.load("t", 0).expect("load");
        let a = &rows[&RelPath::parse("a.txt").expect("path")];
        assert_eq!(a.left, stat_version(5, 11, 12, 13, 420));
        assert_eq!(a.right, Version("42".into()));
        // New rows carry their versions as written.
        let mut b = a.clone();
        b.path = RelPath::parse("b.txt").expect("path");
        b.right = Version("etag-7".into());
        index.apply("t", 0, &[b.clone()], &[]).expect("apply");
        let again = LocalIndex::open(&path).expect("reopen");
        assert_eq!(again.load("t", 0).expect("load")[&b.path], b);
        // One row read alone, and emptiness, without loading the root.
        assert_eq!(again.row("t", 0, &b.path).expect("row"), Some(b.clone()));
        let none = RelPath::parse("c.txt").expect("path");
        assert_eq!(again.row("t", 0, &none).expect("row"), None);
        assert!(!again.is_empty("t", 0).expect("is_empty"));
        assert!(again.is_empty("t", 1).expect("is_empty"));
        assert!(again.is_empty("u", 0).expect("is_empty"));
        // The borrowed read gives the same versions, old row and new.
        let mut seen = Vec::new();
        again
            .each_versions("t", 0, &mut |v| {
                seen.push((v.path.to_string(), v.left.to_string(), v.right.to_string()))
            })
            .expect("each_versions");
        seen.sort();
        assert_eq!(
            seen,
            [
                ("a.txt".into(), a.left.0.clone(), "42".into()),
                ("b.txt".into(), b.left.0.clone(), "etag-7".into()),
            ]
        );
    }

    #[test]
    fn remapping_roots_swaps_keeps_and_forgets_without_touching_other_tasks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut index = LocalIndex::open(&dir.path().join("index.sqlite")).expect("open");
        for (root, path) in [(0, "a"), (1, "b"), (2, "c")] {
            index.apply("t", root, &[row(path, 1)], &[]).expect("apply");
        }
        index.apply("u", 0, &[row("u", 1)], &[]).expect("apply");
        index.remap_roots("t", &[(0, 1), (1, 0)]).expect("remap");
        assert_eq!(paths(&index, "t", 0), ["b"]);
        assert_eq!(paths(&index, "t", 1), ["a"]);
        assert!(
            paths(&index, "t", 2).is_empty(),
            "a dropped root is forgotten"
        );
        assert_eq!(paths(&index, "u", 0), ["u"]);
        index.remap_roots("t", &[]).expect("remap");
        assert!(paths(&index, "t", 0).is_empty() && paths(&index, "t", 1).is_empty());
    }
}
