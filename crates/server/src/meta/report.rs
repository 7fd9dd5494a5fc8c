//! What the administration pages show about the server as a whole: the space each folder's
//! files take, and the latest changes across all folders.

use cairn_protocol::VersionInfo;
use rusqlite::params;

use super::{db, version_row, SqliteMeta, VERSION_COLS};
use crate::Result;

/// A folder's files now and with their history (sizes as files, before dedup).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolderUsage {
    pub files: u64,
    pub bytes: u64,
    pub versions: u64,
    pub version_bytes: u64,
}

impl SqliteMeta {
    /// How many files folder `folder_id` holds and their size, now and counting every version
    /// it keeps.
    pub fn folder_usage(&self, folder_id: i64) -> Result<FolderUsage> {
        let ctx = "measuring a folder";
        let conn = self.reader()?;
        let (files, bytes): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(v.size), 0) FROM versions v
                 WHERE v.folder_id=?1 AND v.kind='file'
                 AND v.seq=(SELECT MAX(w.seq) FROM versions w WHERE w.folder_id=?1 AND w.path=v.path)",
                [folder_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db(ctx))?;
        let (versions, version_bytes): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM versions WHERE folder_id=?1 AND kind='file'",
                [folder_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db(ctx))?;
        let n = |v: i64| v.max(0) as u64;
        Ok(FolderUsage {
            files: n(files),
            bytes: n(bytes),
            versions: n(versions),
            version_bytes: n(version_bytes),
        })
    }

    /// The latest `limit` changes under `prefix` of one folder, newest first.
    pub fn recent_changes(
        &self,
        folder_id: i64,
        prefix: &cairn_model::RelPath,
        limit: u32,
    ) -> Result<Vec<VersionInfo>> {
        let ctx = "reading a folder's changes";
        let (lo, hi) = super::prefix_bounds(prefix);
        let conn = self.reader()?;
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM versions WHERE folder_id=?1 AND path>=?2 AND path<?3
                 ORDER BY seq DESC LIMIT ?4"
            ))
            .map_err(db(ctx))?;
        let rows = st
            .query_map(params![folder_id, lo, hi, limit], version_row)
            .map_err(db(ctx))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db(ctx))
    }

    /// The latest `limit` changes across every folder, newest first, with their folder's
    /// name (in the order the server accepted them).
    pub fn recent_activity(&self, limit: u32) -> Result<Vec<(String, VersionInfo)>> {
        let ctx = "reading recent activity";
        let conn = self.reader()?;
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {VERSION_COLS}, (SELECT name FROM folders f WHERE f.id=versions.folder_id)
                 FROM versions ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(db(ctx))?;
        let rows = st
            .query_map(params![limit], |r| {
                Ok((r.get::<_, String>(13)?, version_row(r)?))
            })
            .map_err(db(ctx))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db(ctx))
    }
}
