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
