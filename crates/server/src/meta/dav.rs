//! What the WebDAV door (`api/dav.rs`) asks of the store beyond versions: whether a folder
//! holds anything live below a path (a collection without an entry of its own), and the dead
//! properties of resources (`PROPPATCH`): a name (namespace and local name) and
//! its value as well-formed XML, per folder and path, in `dav_props`. They follow a resource
//! through a move or copy and go when it is deleted; a new version of a file keeps them, as
//! they describe the path, not one version. What one resource may hold is bounded
//! ([`MAX_PROPS`], [`MAX_VALUE`]), so a writer cannot make the table grow without limit per
//! path.

use cairn_model::RelPath;

use super::sql::{args, Sql};
use super::{prefix_bounds, Meta};
use crate::{Error, Result};

/// Dead properties one resource may hold.
pub const MAX_PROPS: i64 = 256;
/// The longest value of one property, in bytes of XML.
pub const MAX_VALUE: usize = 64 * 1024;

/// A property's name: its namespace URI (possibly empty) and local name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PropName {
    pub ns: String,
    pub name: String,
}

/// One dead property of the resource at `path`.
#[derive(Clone, Debug)]
pub struct DeadProp {
    pub path: RelPath,
    pub name: PropName,
    /// Well-formed XML content (text or elements with their namespaces declared).
    pub value: String,
}

/// A change asked of a resource's dead properties, applied in order.
pub enum PropUpdate {
    Set(PropName, String),
    Remove(PropName),
}

impl Meta {
    /// Whether a path strictly below `prefix` has a head that is not a deletion: such a
    /// prefix is a collection even without an entry of its own (a backup's paths imply their
    /// folders).
    pub fn has_live_under(&self, folder_id: i64, prefix: &RelPath) -> Result<bool> {
        let (lo, hi) = prefix_bounds(prefix);
        self.read(|db| {
            let found = db.opt(
                "looking below a path",
                "SELECT EXISTS(SELECT 1 FROM versions v WHERE v.folder_id=?1 AND v.path>=?2
                   AND v.path<?3 AND v.kind!='deleted'
                   AND v.seq=(SELECT MAX(w.seq) FROM versions w WHERE w.folder_id=?1 AND w.path=v.path))",
                args![folder_id, lo, hi],
                |r| r.get::<bool>(0),
            )?;
            Ok(found.unwrap_or(false))
        })
    }

    /// The dead properties of `path` and, with `children`, of the paths directly below it.
    pub fn dead_props(
        &self,
        folder_id: i64,
        path: &RelPath,
        children: bool,
    ) -> Result<Vec<DeadProp>> {
        let (lo, hi) = prefix_bounds(path);
        let (lo, hi) = if children {
            (lo, hi)
        } else {
            (String::new(), String::new())
        };
        let rows = self.read(|db| {
            db.all(
                "reading dead properties",
                "SELECT path, ns, name, value FROM dav_props
                 WHERE folder_id=?1 AND (path=?2 OR (path>=?3 AND path<?4)) ORDER BY path, ns, name",
                args![folder_id, path.as_str(), lo, hi],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<String>(1)?,
                        r.get::<String>(2)?,
                        r.get::<String>(3)?,
                    ))
                },
            )
        })?;
        let depth = depth_of(path) + 1;
        Ok(rows
            .into_iter()
            .filter_map(|(p, ns, name, value)| {
                let p = RelPath::parse(&p).ok()?;
                let below = depth_of(&p) == depth;
                (p == *path || below).then_some(DeadProp {
                    path: p,
                    name: PropName { ns, name },
                    value,
                })
            })
            .collect())
    }

    /// Applies `updates` to the dead properties of `path`, all or none.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the resource would hold more than [`MAX_PROPS`].
    pub fn patch_props(
        &self,
        folder_id: i64,
        path: &RelPath,
        updates: &[PropUpdate],
    ) -> Result<()> {
        let ctx = "changing dead properties";
        self.write(ctx, |db| {
            for u in updates {
                match u {
                    PropUpdate::Set(n, value) => {
                        db.exec(
                            ctx,
                            "DELETE FROM dav_props WHERE folder_id=?1 AND path=?2 AND ns=?3 AND name=?4",
                            args![folder_id, path.as_str(), n.ns, n.name],
                        )?;
                        db.exec(
                            ctx,
                            "INSERT INTO dav_props(folder_id, path, ns, name, value) VALUES (?1, ?2, ?3, ?4, ?5)",
                            args![folder_id, path.as_str(), n.ns, n.name, *value],
                        )?;
                    }
                    PropUpdate::Remove(n) => {
                        db.exec(
                            ctx,
                            "DELETE FROM dav_props WHERE folder_id=?1 AND path=?2 AND ns=?3 AND name=?4",
                            args![folder_id, path.as_str(), n.ns, n.name],
                        )?;
                    }
                }
            }
            let held = db
                .opt(
                    ctx,
                    "SELECT COUNT(*) FROM dav_props WHERE folder_id=?1 AND path=?2",
                    args![folder_id, path.as_str()],
                    |r| r.get::<i64>(0),
                )?
                .unwrap_or(0);
            if held > MAX_PROPS {
                // Returning the error rolls the transaction back: nothing of it stays.
                return Err(Error::Invalid(format!(
                    "{path}: at most {MAX_PROPS} dead properties per resource"
                )));
            }
            Ok(())
        })
    }

    /// Drops the dead properties of `path` and of everything below it (a delete).
    pub fn drop_props(&self, folder_id: i64, path: &RelPath) -> Result<()> {
        self.write("dropping dead properties", |db| {
            drop_in(db, folder_id, path)
        })
    }

    /// Gives the dead properties of `from` and everything below it to `to` (in `to_folder`),
    /// replacing what `to` had: a move when `keep` is false, a copy when it is true.
    pub fn carry_props(
        &self,
        from: (i64, &RelPath),
        to: (i64, &RelPath),
        keep: bool,
    ) -> Result<()> {
        let ctx = "carrying dead properties";
        self.write(ctx, |db| {
            drop_in(db, to.0, to.1)?;
            let (lo, hi) = prefix_bounds(from.1);
            // Characters of `from` to cut before the rest of a path below it (1-based).
            let cut = i64::try_from(from.1.as_str().chars().count()).unwrap_or(i64::MAX) + 1;
            let select = "SELECT CAST(?5 AS BIGINT), CASE WHEN path=?2 THEN CAST(?6 AS TEXT)
                    WHEN CAST(?6 AS TEXT)='' THEN substr(path, CAST(?7 AS INTEGER) + 1)
                    WHEN CAST(?2 AS TEXT)='' THEN CAST(?6 AS TEXT) || '/' || path
                    ELSE CAST(?6 AS TEXT) || substr(path, CAST(?7 AS INTEGER)) END,
                    ns, name, value FROM dav_props
                 WHERE folder_id=?1 AND (path=?2 OR (path>=?3 AND path<?4))";
            db.exec(
                ctx,
                &format!("INSERT INTO dav_props(folder_id, path, ns, name, value) {select}"),
                args![from.0, from.1.as_str(), lo, hi, to.0, to.1.as_str(), cut],
            )?;
            if !keep {
                drop_in(db, from.0, from.1)?;
            }
            Ok(())
        })
    }
}

/// Components in `path`: 0 for the root.
fn depth_of(path: &RelPath) -> usize {
    if path.is_root() {
        0
    } else {
        path.as_str().matches('/').count() + 1
    }
}

fn drop_in(db: &dyn Sql, folder_id: i64, path: &RelPath) -> Result<()> {
    let (lo, hi) = prefix_bounds(path);
    db.exec(
        "dropping dead properties",
        "DELETE FROM dav_props WHERE folder_id=?1 AND (path=?2 OR (path>=?3 AND path<?4))",
        args![folder_id, path.as_str(), lo, hi],
    )?;
    Ok(())
}

/// Locks one folder may hold at once (each names a user and a path; a LOCK past this is
/// refused), so that reading a folder's locks, which every WebDAV write does, stays cheap.
pub const MAX_LOCKS: i64 = 1000;

/// A WebDAV write lock (`LOCK`), kept in the store so every server instance honours it.
#[derive(Clone, Debug)]
pub struct DavLock {
    /// `opaquelocktoken:...`
    pub token: String,
    pub path: RelPath,
    /// Depth infinity: it covers everything below `path` too.
    pub deep: bool,
    pub shared: bool,
    /// The `DAV:owner` the client gave, as XML.
    pub owner: String,
    pub user_id: i64,
    pub timeout_s: i64,
    pub expires_ns: i64,
}

impl DavLock {
    /// Whether the lock covers `path`.
    pub fn covers(&self, path: &RelPath) -> bool {
        self.path == *path || (self.deep && path.starts_with(&self.path))
    }
}

/// Why a lock was not granted.
pub enum LockRefused {
    /// Another lock is in the way.
    Conflict,
    /// The folder holds [`MAX_LOCKS`].
    Full,
}

const LOCK_COLS: &str = "token, path, deep, shared, owner, user_id, timeout_s, expires_ns";

fn lock_of(r: &dyn super::sql::Row) -> Result<DavLock> {
    let path: String = r.get(1)?;
    Ok(DavLock {
        token: r.get(0)?,
        path: RelPath::parse(&path)
            .map_err(|_| Error::Corrupt(format!("a lock names the path {path:?}")))?,
        deep: r.get::<i64>(2)? != 0,
        shared: r.get::<i64>(3)? != 0,
        owner: r.get(4)?,
        user_id: r.get(5)?,
        timeout_s: r.get(6)?,
        expires_ns: r.get(7)?,
    })
}

fn locks_in(db: &dyn Sql, folder_id: i64, now_ns: i64) -> Result<Vec<DavLock>> {
    db.all(
        "reading locks",
        &format!(
            "SELECT {LOCK_COLS} FROM dav_locks WHERE folder_id=?1 AND expires_ns>?2 ORDER BY path"
        ),
        args![folder_id, now_ns],
        lock_of,
    )
}

impl Meta {
    /// The folder's locks that have not expired at `now_ns`.
    pub fn dav_locks(&self, folder_id: i64, now_ns: i64) -> Result<Vec<DavLock>> {
        self.read(|db| locks_in(db, folder_id, now_ns))
    }

    /// Grants `lock` in `folder` unless a live lock conflicts with it (an exclusive one on
    /// either side, over the same path or one covering the other). Checked and written under
    /// the folder's row lock, so two instances never grant conflicting locks.
    pub fn add_dav_lock(
        &self,
        folder: &super::Folder,
        lock: &DavLock,
        now_ns: i64,
    ) -> Result<std::result::Result<(), LockRefused>> {
        let ctx = "granting a lock";
        self.write(ctx, |db| {
            super::lock_head(db, folder)?;
            db.exec(
                ctx,
                "DELETE FROM dav_locks WHERE folder_id=?1 AND expires_ns<=?2",
                args![folder.id, now_ns],
            )?;
            let held = locks_in(db, folder.id, now_ns)?;
            let clash = held.iter().any(|h| {
                let overlap = h.covers(&lock.path) || lock.covers(&h.path);
                overlap && !(h.shared && lock.shared)
            });
            if clash {
                return Ok(Err(LockRefused::Conflict));
            }
            if held.len() as i64 >= MAX_LOCKS {
                return Ok(Err(LockRefused::Full));
            }
            db.exec(
                ctx,
                &format!(
                    "INSERT INTO dav_locks(folder_id, {LOCK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                args![
                    folder.id,
                    lock.token,
                    lock.path.as_str(),
                    i64::from(lock.deep),
                    i64::from(lock.shared),
                    lock.owner,
                    lock.user_id,
                    lock.timeout_s,
                    lock.expires_ns
                ],
            )?;
            Ok(Ok(()))
        })
    }

    /// Extends lock `token` of `folder_id` to `expires_ns`; false when it is gone.
    pub fn refresh_dav_lock(
        &self,
        folder_id: i64,
        token: &str,
        timeout_s: i64,
        expires_ns: i64,
    ) -> Result<bool> {
        let n = self.write("refreshing a lock", |db| {
            db.exec(
                "refreshing a lock",
                "UPDATE dav_locks SET timeout_s=?3, expires_ns=?4 WHERE folder_id=?1 AND token=?2",
                args![folder_id, token, timeout_s, expires_ns],
            )
        })?;
        Ok(n > 0)
    }

    /// Removes lock `token` of `folder_id`; false when there was none.
    pub fn remove_dav_lock(&self, folder_id: i64, token: &str) -> Result<bool> {
        let n = self.write("removing a lock", |db| {
            db.exec(
                "removing a lock",
                "DELETE FROM dav_locks WHERE folder_id=?1 AND token=?2",
                args![folder_id, token],
            )
        })?;
        Ok(n > 0)
    }

    /// Removes the locks on `path` and below it (the resource was deleted or moved away).
    pub fn drop_dav_locks(&self, folder_id: i64, path: &RelPath) -> Result<()> {
        let (lo, hi) = prefix_bounds(path);
        self.write("removing locks", |db| {
            db.exec(
                "removing locks",
                "DELETE FROM dav_locks WHERE folder_id=?1 AND (path=?2 OR (path>=?3 AND path<?4))",
                args![folder_id, path.as_str(), lo, hi],
            )?;
            Ok(())
        })
    }
}
