//! The metadata store: users, sessions, folders and grants, every version of every path, the
//! per-folder journal counter, and the chunk table (which chunks exist and where: their own object
//! or a range of a pack).
//!
//! `Meta`'s public methods are the whole interface the rest of the server uses. Their SQL is
//! written once for SQLite (`meta/lite.rs`, the embedded default) and PostgreSQL (`meta/pg.rs`,
//! several instances), through `meta/sql.rs` (docs/design.md, "Metadata on two engines"). All
//! methods are synchronous and short; async callers run them on the blocking pool. A commit
//! batch is one transaction: after a crash either every change of it is there or none is.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

mod check;
mod chunks;
mod claims;
mod cloud;
mod config_backup;
mod copy;
pub mod dav;
mod directory;
mod events;
mod gc;
mod lite;
mod pg;
mod removal;
mod repack;
mod report;
mod schema;
mod shares;
mod sql;
mod throttle;
pub use chunks::{ChunkScope, Scope, StoredTotals, UploadPlan};
pub use claims::Claim;
pub use cloud::{CloudConnectionRow, CloudTaskRow};
pub use config_backup::{ConfigBackup, TableDump};
pub use copy::TableRows;
pub use directory::{DirectoryAccount, NO_LOCAL_PASSWORD};
pub use events::{
    Actor, Bounds as EventBounds, Event, EventFilter, EventKind, EventPage, Outcome,
    MAX_PAGE as MAX_EVENTS_PAGE,
};
pub use gc::{GcRuns, WritesHeld};
pub use pg::PgAddress;
pub use removal::DELETED_PREFIX;
pub use repack::{Move, PackPart};
pub use report::FolderUsage;
pub use shares::{NewShare, ShareRow, MAX_SHARES_PER_USER};
use sql::{args, Dialect, Row, Sql, ToArg};
pub use throttle::FailureKey;

use cairn_model::{ChunkId, ContentHash, DeviceId, Entry, EntryKind, PackId, RelPath, Seq};
use cairn_protocol::{
    Access, Change, ChangeResult, ChunkSpan, FolderInfo, VersionInfo, MAX_COMMIT_CHUNKS,
};
use cairn_store::ObjectKey;

use crate::{Error, Result};

/// Chunks up to this size are packed: the small chunks of one upload request go into one pack
/// object, so 20,000 small files cost a few dozen objects and fsyncs, not 20,000.
pub const PACK_MAX: usize = 64 * 1024;

/// Device names kept per user.
pub const MAX_DEVICES: i64 = 1000;

/// Chunk row state 1: present (0: registered by an upload whose object may not be written yet).
const PRESENT: i64 = 1;

#[derive(Clone, Debug)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    /// Tokens carry this number; bumping it (new password, disabling) ends every session.
    pub token_gen: i64,
    /// Most bytes of proved chunks the user may hold; `None`: no limit.
    pub quota: Option<u64>,
    /// Bytes of the chunks the user proved (uploaded) that the server still keeps.
    pub used_bytes: u64,
    /// Where their password is checked: empty for a local account, else the normalised
    /// base DN of their directory (`meta/directory.rs`).
    pub directory: String,
}

/// The columns [`user_row`] reads (macros, so statements are `concat!`ed at compile time).
macro_rules! user_cols {
    () => {
        "id, name, admin, disabled, token_gen, quota, used_bytes, directory"
    };
}

/// The columns [`folder_row`] reads.
macro_rules! folder_cols {
    () => {
        "id, name, keep_versions, head_seq"
    };
}

/// Rows whose name is not a deleted one ([`DELETED_PREFIX`]): such names sort from
/// `~deleted-` up to, not including, `~deleted.` (`.` follows `-`), in byte order on both
/// engines. A range, as LIKE's case rules differ between them.
macro_rules! not_deleted {
    () => {
        "(name < '~deleted-' OR name >= '~deleted.')"
    };
}

/// The columns [`version_of`] reads, as a macro so per-row queries can be `concat!`ed at
/// compile time (a `format!` per row costs an allocation and a hash of the text).
macro_rules! version_cols {
    () => {
        "path, seq, kind, size, mtime_ns, mode, hash, target, device, committed_ns, folder_id, author, computer"
    };
}
const VERSION_COLS: &str = version_cols!();

fn user_row(r: &dyn Row) -> Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        admin: r.get(2)?,
        disabled: r.get(3)?,
        token_gen: r.get(4)?,
        quota: r.get::<Option<i64>>(5)?.map(|q| q.max(0) as u64),
        used_bytes: r.get::<i64>(6)?.max(0) as u64,
        directory: r.get(7)?,
    })
}

/// The user named `name` and their password hash.
fn user_in(db: &dyn Sql, name: &str) -> Result<Option<(User, String)>> {
    db.opt(
        "looking up user",
        concat!(
            "SELECT ",
            user_cols!(),
            ", pw_hash FROM users WHERE name=?1"
        ),
        args![name],
        |r| Ok((user_row(r)?, r.get(8)?)),
    )
}

/// The user whose id is `id`.
fn user_with_id(db: &dyn Sql, id: i64) -> Result<Option<User>> {
    db.opt(
        "looking up user",
        concat!("SELECT ", user_cols!(), " FROM users WHERE id=?1"),
        args![id],
        user_row,
    )
}

#[derive(Clone, Debug)]
pub struct Folder {
    pub id: i64,
    pub name: String,
    pub keep_versions: u32,
    pub head: Seq,
}

fn folder_row(r: &dyn Row) -> Result<Folder> {
    Ok(Folder {
        id: r.get(0)?,
        name: r.get(1)?,
        keep_versions: keep_of(r, 2)?,
        head: Seq(r.get(3)?),
    })
}

/// A `keep_versions` column.
fn keep_of(r: &dyn Row, i: usize) -> Result<u32> {
    let keep: i64 = r.get(i)?;
    u32::try_from(keep)
        .map_err(|_| Error::Corrupt(format!("a folder keeps {keep} versions, out of range")))
}

fn folder_in(db: &dyn Sql, name: &str) -> Result<Option<Folder>> {
    db.opt(
        "looking up folder",
        concat!("SELECT ", folder_cols!(), " FROM folders WHERE name=?1"),
        args![name],
        folder_row,
    )
}

fn meta_value_in(db: &dyn Sql, key: &str) -> Result<Option<String>> {
    db.opt(
        "reading server settings",
        "SELECT value FROM meta WHERE key=?1",
        args![key],
        |r| r.get(0),
    )
}

/// Where a chunk's bytes are: its own object, or a range of a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkPlace {
    Object,
    Packed { pack: PackId, offset: u64 },
}

/// A chunk as the store knows it.
#[derive(Clone, Debug)]
pub struct ChunkRow {
    pub id: ChunkId,
    pub len: u32,
    pub place: ChunkPlace,
}

impl ChunkRow {
    /// The object holding the chunk and the byte range of the chunk in it.
    pub fn location(&self) -> (ObjectKey, std::ops::Range<u64>) {
        match self.place {
            ChunkPlace::Object => (ObjectKey::Chunk(self.id), 0..u64::from(self.len)),
            ChunkPlace::Packed { pack, offset } => {
                (ObjectKey::Pack(pack), offset..offset + u64::from(self.len))
            }
        }
    }
}

fn place_of(pack: Option<Vec<u8>>, offset: Option<i64>) -> ChunkPlace {
    match pack.and_then(|p| <[u8; 16]>::try_from(p).ok()) {
        Some(p) => ChunkPlace::Packed {
            pack: PackId(p),
            offset: offset.unwrap_or(0) as u64,
        },
        None => ChunkPlace::Object,
    }
}

/// One version row with the chunk list of its content.
pub struct StoredVersion {
    pub info: VersionInfo,
    pub chunks: Vec<ChunkSpan>,
}

/// The users granted on a folder, with their access.
pub type Grants = Vec<(String, Access)>;

/// The metadata store, on either engine: the rules above the SQL are one copy.
pub struct Meta {
    engine: Engine,
    /// How much of the activity log is kept.
    event_bounds: events::Bounds,
}

/// Where the metadata lives.
enum Engine {
    /// SQLite in the data folder: the embedded default, one server process.
    Lite(lite::LiteStore),
    /// PostgreSQL: several server instances on one database.
    Pg(Box<pg::Pg>),
}

/// On PostgreSQL, every write transaction first takes the chunk table's ROW EXCLUSIVE lock,
/// which writes share with each other but not with [`Meta::write_alone`]'s EXCLUSIVE:
/// a commit, a chunk registration or a touch then either ends before a gc batch starts or
/// starts after it committed, and sees its deletions (SQLite's one writer gives the same).
fn beside_other_writes(db: &dyn Sql, what: &str) -> Result<()> {
    db.batch(what, "LOCK TABLE chunks IN ROW EXCLUSIVE MODE")
}

/// The advisory lock key of a gc run ("cairn gc" in ASCII).
const GC_LOCK_KEY: i64 = 0x6361_6972_6e20_6763;

/// Held while gc runs ([`Meta::gc_guard`]); the lock goes when it is dropped.
pub enum GcGuard {
    Lite(std::fs::File),
    Pg(Box<postgres::Client>),
}

/// The PostgreSQL channel commits announce folder heads on (`folder_id:head`).
const HEADS_CHANNEL: &str = "cairn_heads";

/// Connections one server instance keeps to PostgreSQL at most: the blocking pool runs the
/// store's work, and more connections than cores mostly wait on each other.
const PG_CONNECTIONS: usize = 16;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn db(context: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |source| Error::Db {
        context: context.to_string(),
        source,
    }
}

impl Meta {
    /// Opens (creating if needed) the SQLite store at `path`.
    ///
    /// # Errors
    /// When the file cannot be opened or its schema created.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Meta {
            engine: Engine::Lite(lite::LiteStore::open(path)?),
            event_bounds: events::Bounds::default(),
        })
    }

    /// Connects to the PostgreSQL database at `address` and brings its schema up to date.
    ///
    /// # Errors
    /// A URL that does not parse, a database that cannot be reached or upgraded.
    pub fn open_postgres(address: &PgAddress) -> Result<Self> {
        Ok(Meta {
            engine: Engine::Pg(Box::new(pg::Pg::open(address.clone(), PG_CONNECTIONS)?)),
            event_bounds: events::Bounds::default(),
        })
    }

    /// Where the store is, for messages (a PostgreSQL address without its password).
    pub fn describe(&self) -> String {
        match &self.engine {
            Engine::Lite(l) => l.path().display().to_string(),
            Engine::Pg(p) => p.address().to_string(),
        }
    }

    /// The right to run gc, one run at a time across every instance and process: the epochs
    /// keep uploads in flight safe from one run, not from two interleaved. Held until the
    /// guard is dropped; an error says another run holds it.
    ///
    /// # Errors
    /// Another gc runs, or the lock cannot be taken.
    pub fn gc_guard(&self) -> Result<GcGuard> {
        let held = match &self.engine {
            Engine::Lite(l) => l.gc_lock()?.map(GcGuard::Lite),
            Engine::Pg(p) => p
                .advisory_lock(GC_LOCK_KEY)?
                .map(|c| GcGuard::Pg(Box::new(c))),
        };
        held.ok_or_else(|| {
            Error::Busy(format!(
                "another gc is running on {} (one runs at a time); try again when it ends",
                self.describe()
            ))
        })
    }

    /// Whether other server instances may share the store (PostgreSQL).
    pub fn shared(&self) -> bool {
        matches!(self.engine, Engine::Pg(_))
    }

    /// Tells the other server instances that folder `folder_id`'s head moved to `head`, so
    /// their journal followers wake (PostgreSQL `NOTIFY`). Nothing to do on SQLite, whose
    /// server is alone.
    ///
    /// # Errors
    /// The store's.
    pub fn publish_head(&self, folder_id: i64, head: i64) -> Result<()> {
        match &self.engine {
            Engine::Lite(_) => Ok(()),
            Engine::Pg(p) => p.notify(HEADS_CHANNEL, &format!("{folder_id}:{head}")),
        }
    }

    /// Hands every head another instance publishes to `each` (folder id, head), on a thread
    /// of its own until `stop` is set; `resync` runs after each (re)connection, since heads
    /// published meanwhile are lost. `None` on SQLite: no other instance publishes.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn follow_heads(
        &self,
        each: Box<dyn Fn(i64, i64) + Send>,
        resync: Box<dyn Fn() + Send>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Option<std::thread::JoinHandle<()>>> {
        let Engine::Pg(p) = &self.engine else {
            return Ok(None);
        };
        let parse = move |payload: &str| {
            let parsed = payload
                .split_once(':')
                .and_then(|(f, h)| Some((f.parse().ok()?, h.parse().ok()?)));
            if let Some((folder, head)) = parsed {
                each(folder, head);
            }
        };
        p.listen(HEADS_CHANNEL, Box::new(parse), resync, stop)
            .map(Some)
            .map_err(Error::io("starting the PostgreSQL listener"))
    }

    /// Every folder's id and head.
    ///
    /// # Errors
    /// The store's.
    pub fn folder_heads(&self) -> Result<Vec<(i64, i64)>> {
        self.read(|db| {
            db.all(
                "reading folder heads",
                "SELECT id, head_seq FROM folders",
                args![],
                |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?)),
            )
        })
    }

    /// Runs `f` in one write transaction: every change of it lands, or none. With
    /// [`Self::write_relaxed`] and [`Self::read`], the only way to the engine.
    fn write<T>(&self, what: &str, f: impl FnOnce(&dyn Sql) -> Result<T>) -> Result<T> {
        match &self.engine {
            Engine::Lite(l) => l.write(what, f),
            Engine::Pg(p) => p.write(what, |db| {
                beside_other_writes(db, what)?;
                f(db)
            }),
        }
    }

    /// Like [`Self::write`], alone: no other write of any instance runs until it ends (gc
    /// deleting chunks and their objects, as SQLite's single writer gives every write).
    fn write_alone<T>(&self, what: &str, f: impl FnOnce(&dyn Sql) -> Result<T>) -> Result<T> {
        match &self.engine {
            Engine::Lite(l) => l.write(what, f),
            Engine::Pg(p) => p.write(what, |db| {
                db.batch(what, "LOCK TABLE chunks IN EXCLUSIVE MODE")?;
                f(db)
            }),
        }
    }

    /// Like [`Self::write`], for chunk registrations, which need not reach the disk on their
    /// own (SQLite: `synchronous=NORMAL`); on PostgreSQL the same as `write`.
    fn write_relaxed<T>(&self, what: &str, f: impl FnOnce(&dyn Sql) -> Result<T>) -> Result<T> {
        match &self.engine {
            Engine::Lite(l) => l.write_relaxed(what, f),
            Engine::Pg(p) => p.write_relaxed(what, |db| {
                beside_other_writes(db, what)?;
                f(db)
            }),
        }
    }

    /// Runs `f` in a read-only transaction: it sees one consistent state and never waits
    /// behind a write.
    fn read<T>(&self, f: impl FnOnce(&dyn Sql) -> Result<T>) -> Result<T> {
        match &self.engine {
            Engine::Lite(l) => l.read(f),
            Engine::Pg(p) => p.read(f),
        }
    }

    pub fn meta_value(&self, key: &str) -> Result<Option<String>> {
        self.read(|db| meta_value_in(db, key))
    }

    /// Sets `key` unless it is set already; returns the value in force.
    pub fn init_meta_value(&self, key: &str, value: &str) -> Result<String> {
        self.write("writing server settings", |db| {
            db.exec(
                "writing server settings",
                "INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO NOTHING",
                args![key, value],
            )?;
            meta_value_in(db, key)?
                .ok_or_else(|| Error::Corrupt(format!("server setting {key} vanished")))
        })
    }

    // ---- users and sessions ----

    /// Sets (or, with `None`, lifts) a user's quota in bytes.
    pub fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<()> {
        let quota = quota.map(|q| q.min(i64::MAX as u64) as i64);
        self.update_user(
            name,
            "changing quota",
            "UPDATE users SET quota=?1 WHERE id=?2",
            &quota,
        )
    }

    /// Records the name a user's device logged in with; versions it commits carry that name.
    /// Writes nothing when the name is known already; keeps the newest [`MAX_DEVICES`] per
    /// user, so a user cannot grow the table without bound.
    pub fn remember_device(&self, user: &User, device: &DeviceId, computer: &str) -> Result<()> {
        let ctx = "recording device";
        self.write(ctx, |db| {
            let changed = db.exec(
                ctx,
                "INSERT INTO devices(user_id, device, computer, added_ns) VALUES(?1, ?2, ?3, ?4)
                 ON CONFLICT(user_id, device) DO UPDATE SET computer=excluded.computer
                 WHERE devices.computer != excluded.computer",
                args![user.id, device.0, computer, now_ns()],
            )?;
            if changed > 0 {
                db.exec(
                    ctx,
                    "DELETE FROM devices WHERE user_id=?1 AND device NOT IN
                     (SELECT device FROM devices WHERE user_id=?1 ORDER BY added_ns DESC LIMIT ?2)",
                    args![user.id, MAX_DEVICES],
                )?;
            }
            Ok(())
        })
    }

    /// The name of `user`'s device (empty when it never gave one).
    pub fn device_name(&self, user: &User, device: &DeviceId) -> Result<String> {
        let name = self.read(|db| {
            db.opt(
                "reading device",
                "SELECT computer FROM devices WHERE user_id=?1 AND device=?2",
                args![user.id, device.0],
                |r| r.get::<String>(0),
            )
        })?;
        Ok(name.unwrap_or_default())
    }

    pub fn add_user(&self, name: &str, pw_hash: &str, admin: bool) -> Result<()> {
        self.write("adding user", |db| {
            if user_in(db, name)?.is_some() {
                return Err(Error::Invalid(format!("user {name} already exists")));
            }
            db.exec(
                "adding user",
                "INSERT INTO users(name, pw_hash, admin) VALUES(?1, ?2, ?3)",
                args![name, pw_hash, admin],
            )?;
            Ok(())
        })
    }

    pub fn user_count(&self) -> Result<i64> {
        self.read(|db| {
            let n = db.opt(
                "counting users",
                "SELECT COUNT(*) FROM users",
                args![],
                |r| r.get::<i64>(0),
            )?;
            Ok(n.unwrap_or(0))
        })
    }

    /// Every user but the deleted ones, by name.
    pub fn users(&self) -> Result<Vec<User>> {
        self.read(|db| {
            db.all(
                "listing users",
                concat!(
                    "SELECT ",
                    user_cols!(),
                    " FROM users WHERE ",
                    not_deleted!(),
                    " ORDER BY name"
                ),
                args![],
                user_row,
            )
        })
    }

    /// The user and their password hash.
    pub fn user_by_name(&self, name: &str) -> Result<Option<(User, String)>> {
        self.read(|db| user_in(db, name))
    }

    pub fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        self.read(|db| user_with_id(db, id))
    }

    /// Sets a new password; every session of the old one ends.
    pub fn set_password(&self, name: &str, pw_hash: &str) -> Result<()> {
        self.update_user(
            name,
            "changing password",
            "UPDATE users SET pw_hash=?1, token_gen=token_gen+1 WHERE id=?2",
            &pw_hash,
        )
    }

    /// Disables (or enables) a user; disabling ends every session.
    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        self.update_user(
            name,
            "disabling user",
            "UPDATE users SET disabled=?1, token_gen=token_gen+1 WHERE id=?2",
            &disabled,
        )
    }

    /// Makes a user an administrator or not; their sessions end (a token carries no role, but
    /// a session begun as one role should not outlive the change).
    pub fn set_admin(&self, name: &str, admin: bool) -> Result<()> {
        self.update_user(
            name,
            "changing a user's role",
            "UPDATE users SET admin=?1, token_gen=token_gen+1 WHERE id=?2",
            &admin,
        )
    }

    /// Runs `sql` on the user named `name`: `?1` is `value`, `?2` the user's id.
    fn update_user(&self, name: &str, what: &str, sql: &str, value: &dyn ToArg) -> Result<()> {
        self.write(what, |db| {
            let (user, _) = user_in(db, name)?
                .ok_or_else(|| Error::NotFound(format!("no user named {name}")))?;
            db.exec(what, sql, &[value, &user.id])?;
            Ok(())
        })
    }

    // ---- folders and access ----

    pub fn add_folder(&self, name: &str, keep_versions: u32) -> Result<()> {
        let n = self.write("adding folder", |db| {
            db.exec(
                "adding folder",
                "INSERT INTO folders(name, keep_versions) VALUES(?1, ?2) ON CONFLICT(name) DO NOTHING",
                args![name, keep_versions],
            )
        })?;
        if n == 0 {
            return Err(Error::Invalid(format!("folder {name} already exists")));
        }
        Ok(())
    }

    pub fn set_keep_versions(&self, name: &str, keep_versions: u32) -> Result<()> {
        let n = self.write("changing folder", |db| {
            db.exec(
                "changing folder",
                "UPDATE folders SET keep_versions=?1 WHERE name=?2",
                args![keep_versions, name],
            )
        })?;
        if n == 0 {
            return Err(Error::NotFound(format!("no folder named {name}")));
        }
        Ok(())
    }

    pub fn folder(&self, name: &str) -> Result<Option<Folder>> {
        self.read(|db| folder_in(db, name))
    }

    /// Every folder with the users granted on it.
    pub fn folders(&self) -> Result<Vec<(Folder, Grants)>> {
        self.read(|db| {
            let folders = db.all(
                "listing folders",
                concat!(
                    "SELECT ",
                    folder_cols!(),
                    " FROM folders WHERE ",
                    not_deleted!(),
                    " ORDER BY name"
                ),
                args![],
                folder_row,
            )?;
            let mut out = Vec::with_capacity(folders.len());
            for f in folders {
                let grants = db.all(
                    "listing grants",
                    "SELECT u.name, g.access FROM grants g JOIN users u ON u.id=g.user_id
                     WHERE g.folder_id=?1 ORDER BY u.name",
                    args![f.id],
                    |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
                )?;
                let grants = grants
                    .into_iter()
                    .filter_map(|(u, a)| Access::parse(&a).map(|a| (u, a)))
                    .collect();
                out.push((f, grants));
            }
            Ok(out)
        })
    }

    pub fn grant(&self, folder: &str, user: &str, access: Access) -> Result<()> {
        self.change_grant(
            folder,
            user,
            "granting access",
            "INSERT INTO grants(folder_id, user_id, access) VALUES(?1, ?2, ?3)
             ON CONFLICT(folder_id, user_id) DO UPDATE SET access=excluded.access",
            Some(access),
        )
    }

    pub fn revoke(&self, folder: &str, user: &str) -> Result<()> {
        self.change_grant(
            folder,
            user,
            "revoking access",
            "DELETE FROM grants WHERE folder_id=?1 AND user_id=?2",
            None,
        )
    }

    /// Runs `sql` on the grant of `user` on `folder`: `?1` the folder's id, `?2` the user's,
    /// `?3` the access when given.
    fn change_grant(
        &self,
        folder: &str,
        user: &str,
        what: &str,
        sql: &str,
        access: Option<Access>,
    ) -> Result<()> {
        self.write(what, |db| {
            let f = folder_in(db, folder)?
                .ok_or_else(|| Error::NotFound(format!("no folder named {folder}")))?;
            let (u, _) = user_in(db, user)?
                .ok_or_else(|| Error::NotFound(format!("no user named {user}")))?;
            match access {
                Some(a) => db.exec(what, sql, args![f.id, u.id, a.as_str()])?,
                None => db.exec(what, sql, args![f.id, u.id])?,
            };
            Ok(())
        })
    }

    /// The folder and the user's access to it; `None` when either is unknown or nothing is
    /// granted (both look the same to the user, so folder names do not leak).
    pub fn access(&self, user: &User, folder: &str) -> Result<Option<(Folder, Access)>> {
        let row = self.read(|db| {
            db.opt(
                "checking access",
                "SELECT f.id, f.name, f.keep_versions, f.head_seq, g.access FROM folders f
                 JOIN grants g ON g.folder_id=f.id WHERE f.name=?1 AND g.user_id=?2",
                args![folder, user.id],
                |r| Ok((folder_row(r)?, r.get::<String>(4)?)),
            )
        })?;
        Ok(row.and_then(|(f, a)| Access::parse(&a).map(|a| (f, a))))
    }

    pub fn folders_of(&self, user: &User) -> Result<Vec<FolderInfo>> {
        let rows = self.read(|db| {
            db.all(
                "listing folders",
                "SELECT f.name, g.access, f.keep_versions, f.head_seq FROM folders f
                 JOIN grants g ON g.folder_id=f.id WHERE g.user_id=?1 ORDER BY f.name",
                args![user.id],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<String>(1)?,
                        keep_of(r, 2)?,
                        r.get::<i64>(3)?,
                    ))
                },
            )
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, a, keep, head)| {
                Access::parse(&a).map(|access| FolderInfo {
                    name,
                    access,
                    keep_versions: keep,
                    head: Seq(head),
                })
            })
            .collect())
    }

    // ---- versions and journal ----

    /// Applies a batch of changes in one transaction. `pause` (tests only) sleeps after each
    /// change so a test can kill the server in the middle of a commit.
    pub fn commit(
        &self,
        folder: &Folder,
        author: &Author<'_>,
        changes: &[Change],
        pause: Option<Duration>,
    ) -> Result<(Vec<ChangeResult>, Seq)> {
        // Whether each named chunk is in the author's scope is read before taking the write
        // lock; under it only presence is checked again (gc may have run in between).
        let named: Vec<ChunkId> = changes
            .iter()
            .filter(|c| c.entry.kind == EntryKind::File && c.moved_from.is_none())
            .flat_map(|c| c.chunks.iter().map(|s| s.id))
            .collect();
        let scope = self.chunk_scope(author.user, &named)?;
        self.write("committing", |db| {
            let mut head = lock_head(db, folder)?;
            let committed_ns = now_ns();
            // Unchanged removal count: every chunk the scope found usable is still present.
            let fresh = chunks::removals(db)? == scope.removals;
            let mut scope = Checked {
                scope: &scope,
                fresh,
                // Moves copy their source's chunk list: they count against the same limit.
                refs_left: MAX_COMMIT_CHUNKS.saturating_sub(named.len()),
            };
            let mut results = Vec::with_capacity(changes.len());
            for change in changes {
                let result = apply_change(
                    db,
                    folder,
                    author,
                    &mut scope,
                    change,
                    &mut head,
                    committed_ns,
                )?;
                results.push(result);
                if let Some(p) = pause {
                    std::thread::sleep(p);
                }
            }
            db.exec(
                "committing",
                "UPDATE folders SET head_seq=?1 WHERE id=?2",
                args![head, folder.id],
            )?;
            Ok((results, Seq(head)))
        })
    }

    /// Whether anything was ever stored under `prefix` (a folder a backup's paths imply
    /// without an entry of its own).
    pub fn has_entries_under(&self, folder: &Folder, prefix: &RelPath) -> Result<bool> {
        let (lo, hi) = prefix_bounds(prefix);
        self.read(|db| {
            let found = db.opt(
                "reading folder",
                "SELECT EXISTS(SELECT 1 FROM versions WHERE folder_id=?1 AND path>=?2 AND path<?3 AND kind!='deleted')",
                args![folder.id, lo, hi],
                |r| r.get::<bool>(0),
            )?;
            Ok(found.unwrap_or(false))
        })
    }

    /// Versions after `after`, oldest first, at most `limit`; without those of `skip` (a user
    /// name and a device) when given.
    pub fn journal(
        &self,
        folder: &Folder,
        after: Seq,
        limit: u32,
        skip: Option<(&str, &str)>,
    ) -> Result<Vec<VersionInfo>> {
        let ctx = "reading journal";
        self.read(|db| match skip {
            None => db.all(
                ctx,
                concat!(
                    "SELECT ",
                    version_cols!(),
                    " FROM versions WHERE folder_id=?1 AND seq>?2 ORDER BY seq LIMIT ?3"
                ),
                args![folder.id, after.0, limit],
                version_of,
            ),
            Some((user, device)) => db.all(
                ctx,
                concat!(
                    "SELECT ",
                    version_cols!(),
                    " FROM versions WHERE folder_id=?1 AND seq>?2 AND NOT (author=?4 AND device=?5)",
                    " ORDER BY seq LIMIT ?3"
                ),
                args![folder.id, after.0, limit, user, device],
                version_of,
            ),
        })
    }

    /// The newest version of every path under `prefix` accepted at or before `at_ns`; deletion
    /// markers only when `deleted` is set.
    pub fn tree(
        &self,
        folder: &Folder,
        prefix: &RelPath,
        at_ns: Option<i64>,
        deleted: bool,
    ) -> Result<Vec<VersionInfo>> {
        let mut out = Vec::new();
        self.tree_each(folder, prefix, at_ns, deleted, &mut |v| {
            out.push(v);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Self::tree`] one version at a time, in path order, from one read transaction (one
    /// state of the folder however long `each` takes); an error from `each` ends the read.
    ///
    /// Every retained version is read in index order (path, then seq) and the last of each
    /// path kept: the read streams. (Picking each path's newest in SQL with `GROUP BY` made
    /// SQLite materialise and index the whole folder first: 6 s before the first row of a
    /// million-file folder, against 0.7 s for this whole read.)
    pub fn tree_each(
        &self,
        folder: &Folder,
        prefix: &RelPath,
        at_ns: Option<i64>,
        deleted: bool,
        each: &mut dyn FnMut(VersionInfo) -> Result<()>,
    ) -> Result<()> {
        let at = at_ns.unwrap_or(i64::MAX);
        let (lo, hi) = prefix_bounds(prefix);
        let mut newest: Option<VersionInfo> = None;
        let hand = |v: VersionInfo, each: &mut dyn FnMut(VersionInfo) -> Result<()>| {
            if deleted || !v.is_deleted() {
                each(v)?;
            }
            Ok(())
        };
        self.read(|db| {
            // A listing reads its part of the folder once: a small cache, so that listings in
            // flight at once do not each fill a reader's 32 MiB (the pages freed at once).
            let lite = db.dialect() == Dialect::Lite;
            if lite {
                db.batch("narrowing the cache", lite::SCAN_CACHE)?;
            }
            let read = db.rows(
                "reading tree",
                concat!(
                    "SELECT ",
                    version_cols!(),
                    " FROM versions WHERE folder_id=?1 AND committed_ns<=?2",
                    " AND (path=?3 OR (path>=?4 AND path<?5)) ORDER BY path, seq"
                ),
                args![folder.id, at, prefix.as_str(), lo, hi],
                &mut |r| {
                    let v = version_of(r)?;
                    match newest.take() {
                        Some(older) if older.path == v.path => {}
                        Some(done) => hand(done, each)?,
                        None => {}
                    }
                    newest = Some(v);
                    Ok(())
                },
            );
            if lite {
                db.batch("widening the cache", lite::READER_CACHE)?;
            }
            read
        })?;
        match newest {
            Some(last) => hand(last, each),
            None => Ok(()),
        }
    }

    /// Every retained version of `path`, newest first.
    pub fn versions(&self, folder: &Folder, path: &RelPath) -> Result<Vec<VersionInfo>> {
        self.read(|db| {
            db.all(
                "reading versions",
                concat!(
                    "SELECT ",
                    version_cols!(),
                    " FROM versions WHERE folder_id=?1 AND path=?2 ORDER BY seq DESC"
                ),
                args![folder.id, path.as_str()],
                version_of,
            )
        })
    }

    /// One version with its chunk list: `seq`, or the head when `None`.
    pub fn version(
        &self,
        folder: &Folder,
        path: &RelPath,
        seq: Option<Seq>,
    ) -> Result<Option<StoredVersion>> {
        self.read(|db| {
            let found = db.opt(
                "reading version",
                concat!(
                    "SELECT ",
                    version_cols!(),
                    ", id FROM versions WHERE folder_id=?1 AND path=?2 AND (CAST(?3 AS BIGINT) IS NULL OR seq=?3)
                     ORDER BY seq DESC LIMIT 1"
                ),
                args![folder.id, path.as_str(), seq.map(|s| s.0)],
                |r| Ok((version_of(r)?, r.get::<i64>(13)?)),
            )?;
            let Some((info, id)) = found else {
                return Ok(None);
            };
            let chunks = version_chunks(db, id)?;
            Ok(Some(StoredVersion { info, chunks }))
        })
    }
}

/// A version from a row of [`VERSION_COLS`], of either engine.
fn version_of(r: &dyn sql::Row) -> Result<VersionInfo> {
    let path: String = r.get(0)?;
    let kind: String = r.get(2)?;
    let hash: Option<Vec<u8>> = r.get(6)?;
    let bad = |what: &str, value: &str| {
        Error::Corrupt(format!("a version row holds the {what} {value:?}"))
    };
    Ok(VersionInfo {
        path: RelPath::parse(&path).map_err(|_| bad("path", &path))?,
        seq: Seq(r.get(1)?),
        entry: Entry {
            kind: EntryKind::parse(&kind).ok_or_else(|| bad("kind", &kind))?,
            size: r.get::<i64>(3)?.max(0) as u64,
            mtime_ns: r.get(4)?,
            mode: u32::try_from(r.get::<i64>(5)?).map_err(|_| bad("mode", "out of range"))?,
            hash: hash
                .as_deref()
                .and_then(chunk_id)
                .map(|c| ContentHash::from_bytes(*c.as_bytes())),
            target: r.get(7)?,
        },
        device: DeviceId(r.get(8)?),
        user: r.get(11)?,
        computer: r.get(12)?,
        committed_ns: r.get(9)?,
        inline: None,
    })
}

fn version_chunks(db: &dyn Sql, version_id: i64) -> Result<Vec<ChunkSpan>> {
    db.all(
        "reading chunk list",
        "SELECT chunk, len FROM version_chunks WHERE version_id=?1 ORDER BY idx",
        args![version_id],
        |r| {
            let id = chunk_id(&r.get::<Vec<u8>>(0)?)
                .ok_or_else(|| Error::Corrupt("malformed chunk id in a chunk list".into()))?;
            let len = r.get::<i64>(1)?;
            let len = u32::try_from(len).map_err(|_| {
                Error::Corrupt(format!(
                    "a chunk list gives a chunk {len} bytes, out of range"
                ))
            })?;
            Ok(ChunkSpan { id, len })
        },
    )
}

fn chunk_id(raw: &[u8]) -> Option<ChunkId> {
    <[u8; 32]>::try_from(raw).ok().map(ChunkId::from_bytes)
}

/// Bounds that select every path strictly below `prefix` with an index range scan:
/// `prefix/` <= path < `prefix0` (`0` follows `/` in byte order).
pub(super) fn prefix_bounds(prefix: &RelPath) -> (String, String) {
    if prefix.is_root() {
        (String::new(), "\u{10FFFF}".into())
    } else {
        (
            format!("{}/", prefix.as_str()),
            format!("{}0", prefix.as_str()),
        )
    }
}

/// The folder's head sequence number, for a commit. On PostgreSQL the folder's row is locked
/// until the commit ends, so concurrent commits to one folder (from any instance) take turns
/// and never hand out a number twice; SQLite's single writer already makes them take turns,
/// and knows no `FOR UPDATE`.
fn lock_head(db: &dyn Sql, folder: &Folder) -> Result<i64> {
    let sql = match db.dialect() {
        Dialect::Pg => "SELECT head_seq FROM folders WHERE id=?1 FOR UPDATE",
        Dialect::Lite => "SELECT head_seq FROM folders WHERE id=?1",
    };
    db.opt("committing", sql, args![folder.id], |r| r.get::<i64>(0))?
        .ok_or_else(|| Error::NotFound(format!("no folder named {}", folder.name)))
}

fn head_of(db: &dyn Sql, folder_id: i64, path: &RelPath) -> Result<Option<(VersionInfo, i64)>> {
    db.opt(
        "reading head",
        concat!(
            "SELECT ",
            version_cols!(),
            ", id FROM versions WHERE folder_id=?1 AND path=?2 ORDER BY seq DESC LIMIT 1"
        ),
        args![folder_id, path.as_str()],
        |r| Ok((version_of(r)?, r.get::<i64>(13)?)),
    )
}

/// Checks a change on its own. A move (`moved`) brings its source's content, so the chunks it
/// names, if any, are ignored.
fn validate(change: &Change, moved: bool) -> Option<String> {
    let e = &change.entry;
    if change.path.is_root() {
        return Some("the root of a folder cannot be changed".into());
    }
    match e.kind {
        EntryKind::File if moved && e.hash.is_none() => {
            return Some("a file needs a content hash".into());
        }
        EntryKind::File if moved => {}
        EntryKind::File => {
            let total: u64 = change.chunks.iter().map(|c| u64::from(c.len)).sum();
            if total != e.size {
                return Some(format!(
                    "chunk lengths add up to {total} bytes, the file has {}",
                    e.size
                ));
            }
            if e.hash.is_none() {
                return Some("a file needs a content hash".into());
            }
        }
        EntryKind::Symlink
            if e.target
                .as_deref()
                .is_none_or(|t| t.is_empty() || t.contains('\0')) =>
        {
            return Some("a symbolic link needs a target without NUL bytes".into());
        }
        _ if !change.chunks.is_empty() && !moved => {
            return Some(format!("a {} has no content", e.kind.as_str()))
        }
        _ => {}
    }
    None
}

fn apply_change(
    tx: &dyn Sql,
    folder: &Folder,
    author: &Author<'_>,
    scope: &mut Checked<'_>,
    change: &Change,
    head_seq: &mut i64,
    committed_ns: i64,
) -> Result<ChangeResult> {
    // A move takes its content from the source's head, which must still be what the client saw.
    let moved: Option<(RelPath, Option<i64>)> = match &change.moved_from {
        None => None,
        Some(m) => {
            let from = head_of(tx, folder.id, &m.path)?;
            let same = from.as_ref().is_some_and(|(h, _)| {
                h.seq == m.base
                    && h.entry.kind == change.entry.kind
                    && h.entry.hash == change.entry.hash
                    && h.entry.size == change.entry.size
            });
            if !same || m.path == change.path {
                return Ok(ChangeResult::Conflict {
                    head: from.map(|(h, _)| h),
                });
            }
            let source = from.map(|(_, id)| id);
            let refs = match source {
                Some(id) => count_version_chunks(tx, id)?,
                None => 0,
            };
            if refs > scope.refs_left {
                return Ok(ChangeResult::Refused {
                    reason: format!(
                        "{}: moving it brings the commit over {MAX_COMMIT_CHUNKS} chunk references; commit the move on its own",
                        change.path
                    ),
                });
            }
            scope.refs_left -= refs;
            Some((m.path.clone(), source))
        }
    };
    if let Some(reason) = validate(change, moved.is_some()) {
        return Ok(ChangeResult::Refused {
            reason: format!("{}: {reason}", change.path),
        });
    }
    let head = head_of(tx, folder.id, &change.path)?;
    if let Some((h, _)) = &head {
        // Re-sending what is already the head (a retry after a lost answer) writes nothing.
        if h.entry.same_content(&change.entry) && moved.is_none() {
            return Ok(ChangeResult::Accepted { seq: h.seq });
        }
    }
    let base_ok = match &head {
        None => change.base.is_none(),
        Some((h, _)) if h.is_deleted() => change.base.is_none() || change.base == Some(h.seq),
        Some((h, _)) => change.base == Some(h.seq),
    };
    if !base_ok {
        return Ok(ChangeResult::Conflict {
            head: head.map(|(h, _)| h),
        });
    }
    if change.entry.kind == EntryKind::Deleted && head.as_ref().is_none_or(|(h, _)| h.is_deleted())
    {
        return Ok(ChangeResult::Accepted {
            seq: head.map(|(h, _)| h.seq).unwrap_or(Seq(*head_seq)),
        });
    }
    // Content a move takes from its source is in this folder already: no scope to check.
    let content = match &moved {
        Some((_, Some(source))) => Content::CopyOf(*source),
        Some((_, None)) => Content::Spans(&[]),
        None => Content::Spans(&change.chunks),
    };
    if change.entry.kind == EntryKind::File && moved.is_none() {
        if let Some(outcome) = check_chunks(tx, &change.path, &change.chunks, scope)? {
            return Ok(outcome);
        }
    }
    let seq = insert_version(
        tx,
        folder,
        author,
        &change.path,
        &change.entry,
        content,
        head_seq,
        committed_ns,
        head.is_some(),
    )?;
    if let Some((from, _)) = moved {
        let gone = Entry {
            kind: EntryKind::Deleted,
            size: 0,
            mtime_ns: committed_ns,
            mode: 0,
            hash: None,
            target: None,
        };
        insert_version(
            tx,
            folder,
            author,
            &from,
            &gone,
            Content::Spans(&[]),
            head_seq,
            committed_ns,
            true,
        )?;
    }
    Ok(ChangeResult::Accepted { seq })
}

/// The author's chunk scope as a commit checks it under the write lock.
struct Checked<'a> {
    scope: &'a Scope,
    /// No chunk was removed since the scope was read: its lengths are the present ones.
    fresh: bool,
    /// Chunk references the commit may still write (moves copy their source's list).
    refs_left: usize,
}

/// Checks the chunks of a file change: each must be in the author's scope, present now, and of
/// the length the change gives it. `None` when all are.
fn check_chunks(
    tx: &dyn Sql,
    path: &RelPath,
    spans: &[ChunkSpan],
    scope: &Checked<'_>,
) -> Result<Option<ChangeResult>> {
    // Look each distinct id up once, in id order: neighbours share index pages.
    let mut ids: Vec<ChunkId> = spans.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut stored: HashMap<ChunkId, Option<u32>> = HashMap::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        let len = match scope.scope.usable(&id) {
            Some(len) if scope.fresh => Some(len),
            Some(_) => chunks::present_len(tx, &id)?,
            None => None,
        };
        if len.is_none() {
            missing.push(id);
        }
        stored.insert(id, len);
    }
    if !missing.is_empty() {
        return Ok(Some(ChangeResult::MissingChunks { chunks: missing }));
    }
    for c in spans {
        if let Some(len) = stored
            .get(&c.id)
            .copied()
            .flatten()
            .filter(|len| *len != c.len)
        {
            return Ok(Some(ChangeResult::Refused {
                reason: format!(
                    "{path}: chunk {} is {len} bytes on the server, the change says {}",
                    c.id, c.len
                ),
            }));
        }
    }
    Ok(None)
}

/// A version that gives a chunk another length than the stored chunk has.
pub struct LengthMismatch {
    pub folder: String,
    pub path: String,
    pub seq: i64,
    pub chunk: ChunkId,
    pub said: u32,
    pub stored: u32,
}

/// Who makes a commit: recorded with every version it writes.
pub struct Author<'a> {
    pub user: &'a User,
    pub device: &'a DeviceId,
    pub computer: &'a str,
}

/// Appends one version (the folder's next sequence number) and applies retention to its path.
#[allow(clippy::too_many_arguments)]
fn insert_version(
    tx: &dyn Sql,
    folder: &Folder,
    author: &Author<'_>,
    path: &RelPath,
    e: &Entry,
    content: Content<'_>,
    head_seq: &mut i64,
    committed_ns: i64,
    had_versions: bool,
) -> Result<Seq> {
    *head_seq += 1;
    tx.exec(
        "committing",
        "INSERT INTO versions(folder_id, path, seq, kind, size, mtime_ns, mode, hash, target, device, committed_ns, author, computer)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        args![
            folder.id,
            path.as_str(),
            *head_seq,
            e.kind.as_str(),
            e.size as i64,
            e.mtime_ns,
            e.mode & 0o7777,
            e.hash.map(|h| h.as_bytes().to_vec()),
            e.target,
            author.device.0,
            committed_ns,
            author.user.name,
            author.computer
        ],
    )?;
    match content {
        // Nothing to list (a folder, link, deletion or empty file): the id is not needed.
        Content::Spans([]) => {}
        Content::Spans(chunks) => {
            insert_spans(tx, version_id(tx, folder, *head_seq)?, chunks)?;
        }
        Content::CopyOf(source) => {
            tx.exec(
                "committing",
                "INSERT INTO version_chunks(version_id, idx, chunk, len)
                 SELECT ?1, idx, chunk, len FROM version_chunks WHERE version_id=?2",
                args![version_id(tx, folder, *head_seq)?, source],
            )?;
        }
    }
    // A path seen for the first time has nothing to prune (saves a query per new file).
    if had_versions {
        prune(tx, folder, path)?;
    }
    Ok(Seq(*head_seq))
}

/// The id of the version just written as `seq`, looked up by its unique (folder, seq) rather
/// than taken with `RETURNING`: on SQLite a `RETURNING` statement keeps a statement journal
/// (a copy of every page it touches), which made a commit of 20,000 new versions about half
/// as slow again.
fn version_id(tx: &dyn Sql, folder: &Folder, seq: i64) -> Result<i64> {
    tx.opt(
        "committing",
        "SELECT id FROM versions WHERE folder_id=?1 AND seq=?2",
        args![folder.id, seq],
        |r| r.get(0),
    )?
    .ok_or_else(|| Error::Corrupt(format!("version {seq} of {} vanished", folder.name)))
}

/// What a new version's chunk list is.
#[derive(Clone, Copy)]
enum Content<'a> {
    Spans(&'a [ChunkSpan]),
    /// The list of another version (a move), copied inside the database.
    CopyOf(i64),
}

fn insert_spans(tx: &dyn Sql, version_id: i64, chunks: &[ChunkSpan]) -> Result<()> {
    // In chunk order: the chunk index then grows at nearby pages instead of random ones.
    let mut order: Vec<(usize, &ChunkSpan)> = chunks.iter().enumerate().collect();
    order.sort_unstable_by_key(|(_, c)| c.id);
    for (i, c) in order {
        tx.exec(
            "committing",
            "INSERT INTO version_chunks(version_id, idx, chunk, len) VALUES(?1, ?2, ?3, ?4)",
            args![version_id, i as i64, &c.id.as_bytes()[..], c.len],
        )?;
    }
    Ok(())
}

fn count_version_chunks(tx: &dyn Sql, version_id: i64) -> Result<usize> {
    let n = tx.opt(
        "committing",
        "SELECT COUNT(*) FROM version_chunks WHERE version_id=?1",
        args![version_id],
        |r| r.get::<i64>(0),
    )?;
    Ok(usize::try_from(n.unwrap_or(0)).unwrap_or(usize::MAX))
}

/// Retention: keeps the newest `keep_versions` versions of `path` and drops the rest (their
/// chunks become collectable by gc).
fn prune(tx: &dyn Sql, folder: &Folder, path: &RelPath) -> Result<()> {
    let ctx = "applying retention";
    let keep = i64::from(folder.keep_versions.max(1));
    // PostgreSQL takes OFFSET alone but not SQLite's `LIMIT -1` (no limit); SQLite takes
    // OFFSET only after a LIMIT: the largest one means none on both.
    let old = tx.all(
        ctx,
        "SELECT id FROM versions WHERE folder_id=?1 AND path=?2 ORDER BY seq DESC LIMIT ?4 OFFSET ?3",
        args![folder.id, path.as_str(), keep, i64::MAX],
        |r| r.get::<i64>(0),
    )?;
    for id in old {
        tx.exec(
            ctx,
            "DELETE FROM version_chunks WHERE version_id=?1",
            args![id],
        )?;
        tx.exec(ctx, "DELETE FROM versions WHERE id=?1", args![id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_protocol::MovedFrom;

    fn store(name: &str) -> Meta {
        let dir = std::env::temp_dir().join(format!(
            "cairn-meta-core-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Meta::open(&dir.join("meta.sqlite")).expect("open")
    }

    fn path(p: &str) -> RelPath {
        RelPath::parse(p).expect("a valid path")
    }

    fn link(p: &str, base: Option<Seq>, target: &str) -> Change {
        Change {
            path: path(p),
            base,
            entry: Entry {
                kind: EntryKind::Symlink,
                size: 0,
                mtime_ns: 1,
                mode: 0o777,
                hash: None,
                target: Some(target.into()),
            },
            chunks: Vec::new(),
            moved_from: None,
            inline: None,
        }
    }

    fn accepted(r: &ChangeResult) -> Seq {
        match r {
            ChangeResult::Accepted { seq } => *seq,
            other => panic!("expected accepted, got {other:?}"),
        }
    }

    #[test]
    fn deleted_users_and_folders_are_left_out_of_listings_by_a_byte_range() {
        let meta = store("deleted");
        // Names no login can have, on both sides of the range that stands for `~deleted-`.
        for name in [
            "alice",
            "~deleted",
            "~deleted-7",
            "~deleted.",
            "~deletedx",
            "bob",
        ] {
            meta.add_user(name, "hash", false).expect("user");
            meta.add_folder(name, 3).expect("folder");
        }
        meta.remove_user("bob").expect("remove user");
        meta.remove_folder("bob").expect("remove folder");
        let users: Vec<String> = meta
            .users()
            .expect("users")
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(users, ["alice", "~deleted", "~deleted.", "~deletedx"]);
        let folders: Vec<String> = meta
            .folders()
            .expect("folders")
            .into_iter()
            .map(|(f, _)| f.name)
            .collect();
        assert_eq!(folders, ["alice", "~deleted", "~deleted.", "~deletedx"]);
    }

    #[test]
    fn a_device_name_changes_only_when_it_differs() {
        let meta = store("device");
        meta.add_user("alice", "hash", false).expect("user");
        let (alice, _) = meta.user_by_name("alice").expect("read").expect("alice");
        let device = DeviceId("d1".into());
        assert_eq!(meta.device_name(&alice, &device).expect("read"), "");
        meta.remember_device(&alice, &device, "laptop")
            .expect("first");
        // The same name again takes the upsert's WHERE (columns of the row, not `excluded`).
        meta.remember_device(&alice, &device, "laptop")
            .expect("same");
        assert_eq!(meta.device_name(&alice, &device).expect("read"), "laptop");
        meta.remember_device(&alice, &device, "desk")
            .expect("renamed");
        assert_eq!(meta.device_name(&alice, &device).expect("read"), "desk");
    }

    #[test]
    fn users_settings_and_grants_round_trip() {
        let meta = store("grants");
        assert_eq!(meta.user_count().expect("count"), 0);
        meta.add_user("alice", "h1", false).expect("user");
        let err = meta.add_user("alice", "h2", true).expect_err("taken");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(meta.init_meta_value("k", "first").expect("init"), "first");
        assert_eq!(meta.init_meta_value("k", "second").expect("init"), "first");
        assert_eq!(
            meta.meta_value("k").expect("read").as_deref(),
            Some("first")
        );
        meta.set_quota("alice", Some(10)).expect("quota");
        meta.set_password("alice", "h3").expect("password");
        meta.set_admin("alice", true).expect("admin");
        let (alice, hash) = meta.user_by_name("alice").expect("read").expect("alice");
        assert_eq!(
            (alice.quota, alice.admin, hash.as_str()),
            (Some(10), true, "h3")
        );
        assert_eq!(
            alice.token_gen, 2,
            "a new password and a new role end sessions"
        );
        assert!(meta.set_disabled("nobody", true).is_err());
        meta.add_folder("docs", 5).expect("folder");
        assert!(meta.add_folder("docs", 5).is_err());
        meta.set_keep_versions("docs", 7).expect("keep");
        meta.grant("docs", "alice", Access::Ro).expect("grant");
        meta.grant("docs", "alice", Access::Rw).expect("regrant");
        let (f, access) = meta
            .access(&alice, "docs")
            .expect("access")
            .expect("granted");
        assert_eq!((f.keep_versions, access), (7, Access::Rw));
        let mine = meta.folders_of(&alice).expect("folders of");
        assert_eq!(mine.len(), 1);
        let all = meta.folders().expect("folders");
        assert_eq!(all[0].1, vec![("alice".to_string(), Access::Rw)]);
        meta.revoke("docs", "alice").expect("revoke");
        assert!(meta.access(&alice, "docs").expect("access").is_none());
        assert_eq!(
            meta.user_by_id(alice.id).expect("by id").map(|u| u.name),
            Some("alice".into())
        );
    }

    #[test]
    fn commits_number_versions_keep_the_newest_and_move_content() {
        let meta = store("commit");
        meta.add_user("alice", "hash", false).expect("user");
        let (alice, _) = meta.user_by_name("alice").expect("read").expect("alice");
        meta.add_folder("docs", 2).expect("folder");
        let folder = meta.folder("docs").expect("read").expect("docs");
        let device = DeviceId("d1".into());
        let author = Author {
            user: &alice,
            device: &device,
            computer: "laptop",
        };
        let mut base = None;
        for target in ["a", "b", "c"] {
            let (results, head) = meta
                .commit(&folder, &author, &[link("l", base, target)], None)
                .expect("commit");
            base = Some(accepted(&results[0]));
            assert_eq!(base, Some(head));
        }
        assert_eq!(base, Some(Seq(3)));
        // Retention keeps two (`LIMIT <largest> OFFSET keep` drops the rest).
        let kept: Vec<Seq> = meta
            .versions(&folder, &path("l"))
            .expect("versions")
            .iter()
            .map(|v| v.seq)
            .collect();
        assert_eq!(kept, [Seq(3), Seq(2)]);
        // A stale base conflicts and writes nothing.
        let (results, head) = meta
            .commit(&folder, &author, &[link("l", Some(Seq(1)), "d")], None)
            .expect("commit");
        assert!(matches!(results[0], ChangeResult::Conflict { .. }));
        assert_eq!(head, Seq(3));
        // A move writes the new path and a deletion of the old one.
        let mut moved = link("m", None, "c");
        moved.moved_from = Some(MovedFrom {
            path: path("l"),
            base: Seq(3),
        });
        let (results, head) = meta.commit(&folder, &author, &[moved], None).expect("move");
        assert_eq!(accepted(&results[0]), Seq(4));
        assert_eq!(head, Seq(5));
        let tree = meta
            .tree(&folder, &RelPath::root(), None, false)
            .expect("tree");
        let names: Vec<&str> = tree.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(names, ["m"]);
        let with_deleted = meta
            .tree(&folder, &RelPath::root(), None, true)
            .expect("tree");
        assert_eq!(with_deleted.len(), 2);
        assert!(meta
            .has_entries_under(&folder, &RelPath::root())
            .expect("under"));
        let journal = meta.journal(&folder, Seq(3), 10, None).expect("journal");
        assert_eq!(
            journal.iter().map(|v| v.seq).collect::<Vec<_>>(),
            [Seq(4), Seq(5)]
        );
        let skipped = meta
            .journal(&folder, Seq(0), 10, Some(("alice", "d1")))
            .expect("journal");
        assert!(skipped.is_empty(), "every version is alice's on d1");
        let head = meta
            .version(&folder, &path("m"), None)
            .expect("version")
            .expect("m");
        assert_eq!(
            (head.info.seq, head.info.computer.as_str()),
            (Seq(4), "laptop")
        );
        assert!(head.chunks.is_empty());
        // The move's deletion of `l` is its newest version: seq 2 went to retention.
        let old = meta
            .version(&folder, &path("l"), Some(Seq(3)))
            .expect("version")
            .expect("kept");
        assert_eq!(old.info.entry.target.as_deref(), Some("c"));
        assert!(meta
            .version(&folder, &path("l"), Some(Seq(2)))
            .expect("version")
            .is_none());
    }
}
