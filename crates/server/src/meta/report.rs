//! What the administration pages show about the server as a whole: the space each folder's
//! files take, and the latest changes across all folders.

use super::sql::{args, Row};
use super::{version_of, Meta, VERSION_COLS};
use crate::Result;
use cairn_protocol::VersionInfo;

/// A folder's files now and with their history (sizes as files, before dedup).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolderUsage {
    pub files: u64,
    pub bytes: u64,
    pub versions: u64,
    pub version_bytes: u64,
}

impl Meta {
    /// How many files folder `folder_id` holds and their size, now and counting every version
    /// it keeps.
    pub fn folder_usage(&self, folder_id: i64) -> Result<FolderUsage> {
        let ctx = "measuring a folder";
        let pair = |r: &dyn Row| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?));
        let ((files, bytes), (versions, version_bytes)) = self.read(|db| {
            let now = db
                .opt(
                    ctx,
                    "SELECT COUNT(*), CAST(COALESCE(SUM(v.size), 0) AS BIGINT) FROM versions v
                     WHERE v.folder_id=?1 AND v.kind='file'
                     AND v.seq=(SELECT MAX(w.seq) FROM versions w WHERE w.folder_id=?1 AND w.path=v.path)",
                    args![folder_id],
                    pair,
                )?
                .unwrap_or_default();
            let kept = db
                .opt(
                    ctx,
                    "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM versions
                     WHERE folder_id=?1 AND kind='file'",
                    args![folder_id],
                    pair,
                )?
                .unwrap_or_default();
            Ok((now, kept))
        })?;
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
        let (lo, hi) = super::prefix_bounds(prefix);
        self.read(|db| {
            db.all(
                "reading a folder's changes",
                &format!(
                    "SELECT {VERSION_COLS} FROM versions WHERE folder_id=?1 AND path>=?2 AND path<?3
                     ORDER BY seq DESC LIMIT ?4"
                ),
                args![folder_id, lo, hi, limit],
                version_of,
            )
        })
    }

    /// The latest `limit` changes across every folder, newest first, with their folder's
    /// name (in the order the server accepted them).
    pub fn recent_activity(&self, limit: u32) -> Result<Vec<(String, VersionInfo)>> {
        self.read(|db| {
            db.all(
                "reading recent activity",
                &format!(
                    "SELECT {VERSION_COLS}, (SELECT name FROM folders f WHERE f.id=versions.folder_id)
                     FROM versions ORDER BY id DESC LIMIT ?1"
                ),
                args![limit],
                |r| Ok((r.get::<String>(13)?, version_of(r)?)),
            )
        })
    }
}
