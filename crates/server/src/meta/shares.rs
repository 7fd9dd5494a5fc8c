//! Sharing links: a file or folder of a server folder, reachable by whoever holds the link's
//! token, optionally behind a password, until an expiry or a number of accesses.

use super::sql::{args, Row};
use super::Meta;
use crate::{Error, Result};

/// Links one user may hold (revoked ones included until they are deleted with their user).
pub const MAX_SHARES_PER_USER: i64 = 10_000;

#[derive(Clone, Debug)]
pub struct ShareRow {
    pub id: i64,
    pub token: String,
    pub owner_id: i64,
    pub owner: String,
    pub folder_id: i64,
    pub folder: String,
    /// The shared path in the folder (the root for a whole folder).
    pub path: String,
    /// `file` or `dir`.
    pub kind: String,
    pub pw_hash: Option<String>,
    pub expires_ns: Option<i64>,
    pub max_access: Option<i64>,
    pub accesses: i64,
    pub revoked: bool,
    pub created_ns: i64,
}

/// What a new link is.
pub struct NewShare<'a> {
    pub token: &'a str,
    pub owner_id: i64,
    pub folder_id: i64,
    pub path: &'a str,
    pub kind: &'a str,
    pub pw_hash: Option<&'a str>,
    pub expires_ns: Option<i64>,
    pub max_access: Option<i64>,
    pub now_ns: i64,
}

const COLS: &str = "s.id, s.token, s.owner, u.name, s.folder_id, f.name, s.path, s.kind, s.pw_hash,
    s.expires_ns, s.max_access, s.accesses, s.revoked, s.created_ns";
const FROM: &str = "FROM shares s JOIN users u ON u.id=s.owner JOIN folders f ON f.id=s.folder_id";

fn share_row(r: &dyn Row) -> Result<ShareRow> {
    Ok(ShareRow {
        id: r.get(0)?,
        token: r.get(1)?,
        owner_id: r.get(2)?,
        owner: r.get(3)?,
        folder_id: r.get(4)?,
        folder: r.get(5)?,
        path: r.get(6)?,
        kind: r.get(7)?,
        pw_hash: r.get(8)?,
        expires_ns: r.get(9)?,
        max_access: r.get(10)?,
        accesses: r.get(11)?,
        revoked: r.get(12)?,
        created_ns: r.get(13)?,
    })
}

impl Meta {
    /// # Errors
    /// Too many links, or the store.
    pub fn add_share(&self, s: &NewShare<'_>) -> Result<i64> {
        let ctx = "creating a sharing link";
        self.write(ctx, |db| {
            let count: i64 = db
                .opt(
                    ctx,
                    "SELECT COUNT(*) FROM shares WHERE owner=?1",
                    args![s.owner_id],
                    |r| r.get(0),
                )?
                .unwrap_or(0);
            if count >= MAX_SHARES_PER_USER {
                return Err(Error::Invalid(format!(
                    "at most {MAX_SHARES_PER_USER} sharing links per user"
                )));
            }
            db.opt(
                ctx,
                "INSERT INTO shares(token, owner, folder_id, path, kind, pw_hash, expires_ns, max_access, created_ns)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
                args![s.token, s.owner_id, s.folder_id, s.path, s.kind, s.pw_hash, s.expires_ns, s.max_access, s.now_ns],
                |r| r.get(0),
            )?
            .ok_or_else(|| Error::Corrupt("a new sharing link got no id".into()))
        })
    }

    /// Links of `owner` (every user's with `None`), newest first.
    ///
    /// # Errors
    /// The store.
    pub fn shares(&self, owner: Option<i64>) -> Result<Vec<ShareRow>> {
        self.read(|db| {
            db.all(
                "listing sharing links",
                &format!("SELECT {COLS} {FROM} WHERE CAST(?1 AS BIGINT) IS NULL OR s.owner=?1 ORDER BY s.id DESC"),
                args![owner],
                share_row,
            )
        })
    }

    /// # Errors
    /// The store.
    pub fn share_by_token(&self, token: &str) -> Result<Option<ShareRow>> {
        self.read(|db| {
            db.opt(
                "looking up a sharing link",
                &format!("SELECT {COLS} {FROM} WHERE s.token=?1"),
                args![token],
                share_row,
            )
        })
    }

    /// Revokes link `id` of `owner` (any user's with `None`).
    ///
    /// # Errors
    /// No such link, or the store.
    pub fn revoke_share(&self, id: i64, owner: Option<i64>) -> Result<()> {
        let ctx = "revoking a sharing link";
        let n = self.write(ctx, |db| {
            db.exec(
                ctx,
                "UPDATE shares SET revoked=1 WHERE id=?1 AND (CAST(?2 AS BIGINT) IS NULL OR owner=?2)",
                args![id, owner],
            )
        })?;
        if n == 0 {
            return Err(Error::NotFound(format!("no sharing link {id} of yours")));
        }
        Ok(())
    }

    /// Counts one access to link `id` if it may still be used at `now_ns`: not revoked, not
    /// expired, accesses left. In one statement, so two visitors cannot both take the last one.
    ///
    /// # Errors
    /// The store.
    pub fn take_share_access(&self, id: i64, now_ns: i64) -> Result<bool> {
        let ctx = "counting an access to a sharing link";
        let n = self.write(ctx, |db| {
            db.exec(
                ctx,
                "UPDATE shares SET accesses=accesses+1 WHERE id=?1 AND revoked=0
                 AND (max_access IS NULL OR accesses<max_access)
                 AND (expires_ns IS NULL OR expires_ns>?2)",
                args![id, now_ns],
            )
        })?;
        Ok(n == 1)
    }
}
