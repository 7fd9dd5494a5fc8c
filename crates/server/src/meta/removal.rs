//! Deleting users and folders. The row stays behind under a name no login or lookup can
//! match (`~deleted-ID`: `~` is never valid in a name), so its id is never handed out again:
//! a token of a deleted user can never verify as a new user's, and a cached folder head can
//! never describe a new folder. The name is free again at once.

use super::sql::{args, Sql};
use super::Meta;
use crate::{Error, Result};

/// What a deleted row's name starts with.
pub const DELETED_PREFIX: &str = "~deleted-";

impl Meta {
    /// Deletes a user: their sessions end, and their access, computers, sharing links and
    /// cloud tasks go. What they committed stays in the folders; chunks only they uploaded
    /// and nothing references any more are freed by the next gc.
    pub fn remove_user(&self, name: &str) -> Result<()> {
        self.write("deleting a user", |db| remove_user_in(db, name))
    }

    /// Deletes a folder and every version in it, its grants, sharing links and cloud tasks.
    /// Its chunks are freed by the next gc where nothing else references them.
    pub fn remove_folder(&self, name: &str) -> Result<()> {
        self.write("deleting a folder", |db| remove_folder_in(db, name))
    }
}

fn remove_user_in(tx: &dyn Sql, name: &str) -> Result<()> {
    let ctx = "deleting a user";
    let id = id_named(tx, ctx, "users", "user", name)?;
    tx.exec(
        ctx,
        "UPDATE users SET name=?1, pw_hash='!', admin=0, disabled=1, token_gen=token_gen+1,
         quota=NULL, used_bytes=0 WHERE id=?2",
        args![format!("{DELETED_PREFIX}{id}"), id],
    )?;
    for sql in [
        "DELETE FROM grants WHERE user_id=?1",
        "DELETE FROM devices WHERE user_id=?1",
        "DELETE FROM chunk_proofs WHERE user_id=?1",
        "DELETE FROM shares WHERE owner=?1",
        "DELETE FROM cloud_tasks WHERE owner=?1",
        "DELETE FROM cloud_connections WHERE owner=?1",
    ] {
        tx.exec(ctx, sql, args![id])?;
    }
    Ok(())
}

fn remove_folder_in(tx: &dyn Sql, name: &str) -> Result<()> {
    let ctx = "deleting a folder";
    let id = id_named(tx, ctx, "folders", "folder", name)?;
    for sql in [
        "DELETE FROM version_chunks WHERE version_id IN (SELECT id FROM versions WHERE folder_id=?1)",
        "DELETE FROM versions WHERE folder_id=?1",
        "DELETE FROM grants WHERE folder_id=?1",
        "DELETE FROM shares WHERE folder_id=?1",
        "DELETE FROM dav_props WHERE folder_id=?1",
        "DELETE FROM dav_locks WHERE folder_id=?1",
    ] {
        tx.exec(ctx, sql, args![id])?;
    }
    tx.exec(ctx, "DELETE FROM cloud_tasks WHERE folder=?1", args![name])?;
    tx.exec(
        ctx,
        "UPDATE folders SET name=?1 WHERE id=?2",
        args![format!("{DELETED_PREFIX}{id}"), id],
    )?;
    Ok(())
}

/// The id of the row of `table` named `name` (a `what`, for the error).
fn id_named(tx: &dyn Sql, ctx: &str, table: &str, what: &str, name: &str) -> Result<i64> {
    tx.opt(
        ctx,
        &format!("SELECT id FROM {table} WHERE name=?1"),
        args![name],
        |r| r.get(0),
    )?
    .ok_or_else(|| Error::NotFound(format!("no {what} named {name}")))
}
