//! Deleting users and folders. The row stays behind under a name no login or lookup can
//! match (`~deleted-ID`: `~` is never valid in a name), so its id is never handed out again:
//! a token of a deleted user can never verify as a new user's, and a cached folder head can
//! never describe a new folder. The name is free again at once.

use rusqlite::{params, TransactionBehavior};

use super::{db, SqliteMeta};
use crate::{Error, Result};

/// What a deleted row's name starts with.
pub const DELETED_PREFIX: &str = "~deleted-";

impl SqliteMeta {
    /// Deletes a user: their sessions end, and their access, computers, sharing links and
    /// cloud tasks go. What they committed stays in the folders; chunks only they uploaded
    /// and nothing references any more are freed by the next gc.
    pub fn remove_user(&self, name: &str) -> Result<()> {
        let ctx = "deleting a user";
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(ctx))?;
        let id: i64 = tx
            .query_row("SELECT id FROM users WHERE name=?1", [name], |r| r.get(0))
            .map_err(|_| Error::NotFound(format!("no user named {name}")))?;
        tx.execute(
            "UPDATE users SET name=?1, pw_hash='!', admin=0, disabled=1, token_gen=token_gen+1,
             quota=NULL, used_bytes=0 WHERE id=?2",
            params![format!("{DELETED_PREFIX}{id}"), id],
        )
        .map_err(db(ctx))?;
        for sql in [
            "DELETE FROM grants WHERE user_id=?1",
            "DELETE FROM devices WHERE user_id=?1",
            "DELETE FROM chunk_proofs WHERE user_id=?1",
            "DELETE FROM shares WHERE owner=?1",
            "DELETE FROM cloud_tasks WHERE owner=?1",
            "DELETE FROM cloud_connections WHERE owner=?1",
        ] {
            tx.execute(sql, [id]).map_err(db(ctx))?;
        }
        tx.commit().map_err(db(ctx))
    }

    /// Deletes a folder and every version in it, its grants, sharing links and cloud tasks.
    /// Its chunks are freed by the next gc where nothing else references them.
    pub fn remove_folder(&self, name: &str) -> Result<()> {
        let ctx = "deleting a folder";
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(ctx))?;
        let id: i64 = tx
            .query_row("SELECT id FROM folders WHERE name=?1", [name], |r| r.get(0))
            .map_err(|_| Error::NotFound(format!("no folder named {name}")))?;
        tx.execute(
            "DELETE FROM version_chunks WHERE version_id IN (SELECT id FROM versions WHERE folder_id=?1)",
            [id],
        )
        .map_err(db(ctx))?;
        for sql in [
            "DELETE FROM versions WHERE folder_id=?1",
            "DELETE FROM grants WHERE folder_id=?1",
            "DELETE FROM shares WHERE folder_id=?1",
        ] {
            tx.execute(sql, [id]).map_err(db(ctx))?;
        }
        tx.execute("DELETE FROM cloud_tasks WHERE folder=?1", [name])
            .map_err(db(ctx))?;
        tx.execute(
            "UPDATE folders SET name=?1 WHERE id=?2",
            params![format!("{DELETED_PREFIX}{id}"), id],
        )
        .map_err(db(ctx))?;
        tx.commit().map_err(db(ctx))
    }
}
