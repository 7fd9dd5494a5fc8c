//! The metadata store's SQLite engine: one file in the data folder, one writer connection
//! (SQLite has one writer; a mutex queues the work for it) and a pool of read-only
//! connections, which WAL lets read while the writer writes.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::sql::{Lite, Sql};
use super::{db, schema};
use crate::Result;

/// Prepared statements kept per connection: every statement of the store goes through the
/// cache, and rusqlite's default of 16 is fewer than the writer alone uses.
const STATEMENTS: usize = 128;

/// Readers kept open beside the writer.
const MAX_IDLE_READERS: usize = 8;

pub(super) struct LiteStore {
    /// The writer: every write transaction, one at a time.
    conn: Mutex<Connection>,
    /// Idle read-only connections: reads (listings, journal, chunk scope) run on these, so
    /// they never wait behind a write and never hold up one.
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
}

impl LiteStore {
    /// Opens (creating if needed) the store at `path`, its schema brought up to date.
    pub(super) fn open(path: &Path) -> Result<Self> {
        let ctx = format!("opening metadata store {}", path.display());
        let conn = Connection::open(path).map_err(db(&ctx))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(db(&ctx))?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        // WAL lets admin commands and gc work beside a running server; FULL makes every
        // committed transaction durable before the client hears "accepted".
        // A 64 MiB page cache keeps the indexes of a large commit in memory. Chunk ids are
        // random, so every batch of uploads dirties pages all over the chunk indexes; a
        // checkpoint every 64 MiB of log (not SQLite's 4 MiB) copies each such page into the
        // database once per many batches instead of once per batch.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;
             PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=16384;",
        )
        .map_err(db(&ctx))?;
        schema::upgrade(&path.display().to_string(), &|what, f| {
            Lite(&conn).transaction(what, |db| f(db))
        })?;
        Ok(LiteStore {
            conn: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            path: path.to_path_buf(),
        })
    }

    /// Takes the lock one gc run at a time holds (a file beside the store, locked by the
    /// kernel, so a killed gc leaves nothing to clean up); `None` when another run holds it.
    pub(super) fn gc_lock(&self) -> Result<Option<std::fs::File>> {
        let path = self.path.with_extension("gc-lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(crate::Error::io(format!("opening {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(crate::Error::io(format!("locking {}", path.display()))(e))
            }
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write<T>(&self, what: &str, f: impl FnOnce(&dyn Sql) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        in_transaction(&mut conn, what, f)
    }

    /// A write with `synchronous=NORMAL`. Chunk registrations need not reach the disk on
    /// their own: the commit that references them is a FULL transaction, and its fsync of the
    /// log carries every earlier registration with it. Losing one to a power cut only makes a
    /// later commit ask for the chunk again.
    pub(super) fn write_relaxed<T>(
        &self,
        what: &str,
        f: impl FnOnce(&dyn Sql) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        conn.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(db("relaxing sync"))?;
        let out = in_transaction(&mut conn, what, f);
        conn.execute_batch("PRAGMA synchronous=FULL")
            .map_err(db("restoring sync"))?;
        out
    }

    /// `f` on a reader, in one read transaction: that makes one state true across statements
    /// (a scope lookup reads the removal count and then each chunk), and takes the file lock
    /// once instead of around every statement.
    pub(super) fn read<T>(&self, f: impl FnOnce(&dyn Sql) -> Result<T>) -> Result<T> {
        let conn = self.reader()?;
        let out = {
            let tx = conn
                .unchecked_transaction()
                .map_err(db("starting a read"))?;
            let out = f(&Lite(&tx))?;
            tx.commit().map_err(db("ending a read"))?;
            out
        };
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        Ok(out)
    }

    /// A read-only connection from the pool (a new one when none is idle).
    fn reader(&self) -> Result<Connection> {
        let idle = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(c) = idle {
            return Ok(c);
        }
        let ctx = format!("opening metadata store {}", self.path.display());
        let c = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db(&ctx))?;
        c.busy_timeout(Duration::from_secs(30)).map_err(db(&ctx))?;
        c.set_prepared_statement_cache_capacity(STATEMENTS);
        c.execute_batch(READER_CACHE).map_err(db(&ctx))?;
        Ok(c)
    }
}

fn in_transaction<T>(
    conn: &mut Connection,
    what: &str,
    f: impl FnOnce(&dyn Sql) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db(what))?;
    let out = f(&Lite(&tx))?;
    tx.commit().map_err(db(what))?;
    Ok(out)
}

/// A reader's page cache: 32 MiB, filled only as far as the database is read.
pub(super) const READER_CACHE: &str = "PRAGMA cache_size=-32768";

/// The cache of a reader streaming through a large part of the database once (a folder's
/// whole listing): caching it would only hold 32 MiB per listing in flight.
pub(super) const SCAN_CACHE: &str = "PRAGMA cache_size=-2048";
