//! Every table and index of the metadata store, defined once ([`TABLES`], [`INDEXES`]), and the
//! versioned upgrade that creates or brings them up to date at open, on SQLite or PostgreSQL.
//!
//! Each table, column and index says the schema version it arrived in (`since`). Step N of the
//! upgrade creates what arrived in version N, in one transaction that also records N in
//! `schema_migrations`; a store runs, in order, the steps past the newest version it records.
//! So a new column is one line here with the next version, and nothing else: its DDL for both
//! engines, and the step that adds it to existing stores, follow from that line. The steps
//! are written to be safe over a store that already holds part of them (`IF NOT EXISTS`, a column
//! added only when missing): data folders made before versions were recorded (version 0) hold
//! version 1's tables and maybe version 2's columns, and upgrade in place.
//!
//! The engines differ only in how a definition is written out ([`table_sql`]): SQLite's
//! `INTEGER`, `BLOB`, `WITHOUT ROWID` and rowid keys; PostgreSQL's `BIGINT`, `BYTEA`, identity
//! keys, and `COLLATE "C"` on every text column, so text compares and sorts by its bytes as it
//! does in SQLite (prefix ranges on paths, listings by name). Two hand-written schemas would
//! drift; one list cannot.

use super::sql::{args, Dialect, Sql};
use crate::{Error, Result};

/// The types a column may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Type {
    /// An integer key the store hands out (SQLite's rowid, PostgreSQL's identity).
    Id,
    /// An integer primary key the caller gives.
    Key,
    Int,
    Text,
    Blob,
}

#[derive(Debug)]
pub(super) struct Column {
    pub name: &'static str,
    pub ty: Type,
    /// What follows the type, the same in both engines: `NOT NULL DEFAULT 0`, `UNIQUE NOT NULL`.
    pub rest: &'static str,
    pub since: u32,
}

#[derive(Debug)]
pub(super) struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// Table constraints: `PRIMARY KEY(a, b)`, `UNIQUE(a, b)`.
    pub keys: &'static [&'static str],
    /// SQLite keeps the rows in the primary key's b-tree (no rowid).
    pub without_rowid: bool,
    pub since: u32,
}

#[derive(Debug)]
pub(super) struct Index {
    pub name: &'static str,
    /// `ON table(columns) [WHERE ...]`, the same in both engines.
    pub on: &'static str,
    pub unique: bool,
    pub since: u32,
}

const fn col(name: &'static str, ty: Type, rest: &'static str) -> Column {
    Column {
        name,
        ty,
        rest,
        since: 1,
    }
}

/// A column added to an existing table in version `since`. It must suit `ALTER TABLE ADD
/// COLUMN` in both engines: no key, and a default when NOT NULL.
const fn added(name: &'static str, ty: Type, rest: &'static str, since: u32) -> Column {
    Column {
        name,
        ty,
        rest,
        since,
    }
}

const fn table(
    name: &'static str,
    columns: &'static [Column],
    keys: &'static [&'static str],
) -> Table {
    Table {
        name,
        columns,
        keys,
        without_rowid: false,
        since: 1,
    }
}

const fn keyed(
    name: &'static str,
    columns: &'static [Column],
    keys: &'static [&'static str],
) -> Table {
    Table {
        without_rowid: true,
        ..table(name, columns, keys)
    }
}

const fn index(name: &'static str, on: &'static str) -> Index {
    Index {
        name,
        on,
        unique: false,
        since: 1,
    }
}

const fn unique(name: &'static str, on: &'static str) -> Index {
    Index {
        unique: true,
        ..index(name, on)
    }
}

use Type::{Blob, Id, Int, Key, Text};

/// The record of applied steps, created before any of them.
const MIGRATIONS: Table = table(
    "schema_migrations",
    &[col("version", Key, ""), col("applied_ns", Int, "NOT NULL")],
    &[],
);

/// Every table, in creation order.
pub(super) const TABLES: &[Table] = &[
    // Server settings (keys and values).
    table(
        "meta",
        &[
            col("key", Text, "PRIMARY KEY"),
            col("value", Text, "NOT NULL"),
        ],
        &[],
    ),
    table(
        "users",
        &[
            col("id", Id, ""),
            col("name", Text, "UNIQUE NOT NULL"),
            col("pw_hash", Text, "NOT NULL"),
            col("admin", Int, "NOT NULL"),
            col("disabled", Int, "NOT NULL DEFAULT 0"),
            col("token_gen", Int, "NOT NULL DEFAULT 0"),
            added("quota", Int, "", 2),
            added("used_bytes", Int, "NOT NULL DEFAULT 0", 2),
        ],
        &[],
    ),
    table(
        "folders",
        &[
            col("id", Id, ""),
            col("name", Text, "UNIQUE NOT NULL"),
            col("keep_versions", Int, "NOT NULL"),
            col("head_seq", Int, "NOT NULL DEFAULT 0"),
        ],
        &[],
    ),
    table(
        "grants",
        &[
            col("folder_id", Int, "NOT NULL"),
            col("user_id", Int, "NOT NULL"),
            col("access", Text, "NOT NULL"),
        ],
        &["PRIMARY KEY(folder_id, user_id)"],
    ),
    table(
        "versions",
        &[
            col("id", Id, ""),
            col("folder_id", Int, "NOT NULL"),
            col("path", Text, "NOT NULL"),
            col("seq", Int, "NOT NULL"),
            col("kind", Text, "NOT NULL"),
            col("size", Int, "NOT NULL"),
            col("mtime_ns", Int, "NOT NULL"),
            col("mode", Int, "NOT NULL"),
            col("hash", Blob, ""),
            col("target", Text, ""),
            col("device", Text, "NOT NULL"),
            col("committed_ns", Int, "NOT NULL"),
            added("author", Text, "NOT NULL DEFAULT ''", 2),
            added("computer", Text, "NOT NULL DEFAULT ''", 2),
        ],
        &[],
    ),
    keyed(
        "version_chunks",
        &[
            col("version_id", Int, "NOT NULL"),
            col("idx", Int, "NOT NULL"),
            col("chunk", Blob, "NOT NULL"),
            col("len", Int, "NOT NULL"),
        ],
        &["PRIMARY KEY(version_id, idx)"],
    ),
    keyed(
        "chunks",
        &[
            col("id", Blob, "PRIMARY KEY"),
            col("len", Int, "NOT NULL"),
            col("state", Int, "NOT NULL"),
            col("epoch", Int, "NOT NULL"),
            col("pack", Blob, ""),
            col("pack_offset", Int, ""),
        ],
        &[],
    ),
    keyed(
        "chunk_proofs",
        &[
            col("user_id", Int, "NOT NULL"),
            col("chunk", Blob, "NOT NULL"),
            col("len", Int, "NOT NULL"),
        ],
        &["PRIMARY KEY(user_id, chunk)"],
    ),
    keyed(
        "devices",
        &[
            col("user_id", Int, "NOT NULL"),
            col("device", Text, "NOT NULL"),
            col("computer", Text, "NOT NULL"),
            col("added_ns", Int, "NOT NULL"),
        ],
        &["PRIMARY KEY(user_id, device)"],
    ),
    table(
        "cloud_connections",
        &[
            col("id", Id, ""),
            col("owner", Int, "NOT NULL"),
            col("name", Text, "NOT NULL"),
            col("config", Text, "NOT NULL"),
            col("secrets", Text, "NOT NULL"),
            col("credential", Text, "NOT NULL"),
        ],
        &["UNIQUE(owner, name)"],
    ),
    table(
        "cloud_tasks",
        &[
            col("id", Id, ""),
            col("owner", Int, "NOT NULL"),
            col("name", Text, "NOT NULL"),
            col("folder", Text, "NOT NULL"),
            col("connection", Int, "NOT NULL"),
            col("settings", Text, "NOT NULL"),
            col("status", Text, "NOT NULL DEFAULT '{}'"),
            col("run_now", Int, "NOT NULL DEFAULT 0"),
        ],
        &["UNIQUE(owner, name)"],
    ),
    table(
        "cloud_task_keys",
        &[col("task", Key, ""), col("key", Text, "NOT NULL")],
        &[],
    ),
    table(
        "shares",
        &[
            col("id", Id, ""),
            col("token", Text, "UNIQUE NOT NULL"),
            col("owner", Int, "NOT NULL"),
            col("folder_id", Int, "NOT NULL"),
            col("path", Text, "NOT NULL"),
            col("kind", Text, "NOT NULL"),
            col("pw_hash", Text, ""),
            col("expires_ns", Int, ""),
            col("max_access", Int, ""),
            col("accesses", Int, "NOT NULL DEFAULT 0"),
            col("revoked", Int, "NOT NULL DEFAULT 0"),
            col("created_ns", Int, "NOT NULL"),
        ],
        &[],
    ),
    // The activity log.
    table(
        "events",
        &[
            col("id", Id, ""),
            col("at_ns", Int, "NOT NULL"),
            col("kind", Text, "NOT NULL"),
            col("actor", Text, ""),
            col("target", Text, "NOT NULL"),
            col("source", Text, "NOT NULL"),
            col("outcome", Text, "NOT NULL"),
            col("detail", Text, "NOT NULL"),
        ],
        &[],
    ),
];

/// Every index.
pub(super) const INDEXES: &[Index] = &[
    unique("versions_seq", "versions(folder_id, seq)"),
    index("versions_path", "versions(folder_id, path, seq)"),
    index("version_chunks_chunk", "version_chunks(chunk)"),
    index("chunks_pack", "chunks(pack) WHERE pack IS NOT NULL"),
    index("chunk_proofs_chunk", "chunk_proofs(chunk)"),
    index("chunks_lost", "chunks(id) WHERE state=2"),
];

/// The newest schema version: the store is at it once open.
pub(super) const LATEST: u32 = latest();

const fn latest() -> u32 {
    let mut v = 0;
    let mut t = 0;
    while t < TABLES.len() {
        let table = &TABLES[t];
        if table.since > v {
            v = table.since;
        }
        let mut c = 0;
        while c < table.columns.len() {
            if table.columns[c].since > v {
                v = table.columns[c].since;
            }
            c += 1;
        }
        t += 1;
    }
    let mut i = 0;
    while i < INDEXES.len() {
        if INDEXES[i].since > v {
            v = INDEXES[i].since;
        }
        i += 1;
    }
    v
}

fn column_sql(c: &Column, dialect: Dialect) -> String {
    let ty = match (c.ty, dialect) {
        (Id | Key, Dialect::Lite) => "INTEGER PRIMARY KEY",
        (Id, Dialect::Pg) => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        (Key, Dialect::Pg) => "BIGINT PRIMARY KEY",
        (Int, Dialect::Lite) => "INTEGER",
        (Int, Dialect::Pg) => "BIGINT",
        (Text, Dialect::Lite) => "TEXT",
        (Text, Dialect::Pg) => "TEXT COLLATE \"C\"",
        (Blob, Dialect::Lite) => "BLOB",
        (Blob, Dialect::Pg) => "BYTEA",
    };
    let mut out = format!("{} {ty}", c.name);
    if !c.rest.is_empty() {
        out.push(' ');
        out.push_str(c.rest);
    }
    out
}

/// `CREATE TABLE IF NOT EXISTS` for `t` with its columns of version `at` or older.
pub(super) fn table_sql(t: &Table, dialect: Dialect, at: u32) -> String {
    let mut parts: Vec<String> = t
        .columns
        .iter()
        .filter(|c| c.since <= at)
        .map(|c| column_sql(c, dialect))
        .collect();
    parts.extend(t.keys.iter().map(|k| (*k).to_string()));
    let tail = if t.without_rowid && dialect == Dialect::Lite {
        " WITHOUT ROWID"
    } else {
        ""
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {}({}){tail}",
        t.name,
        parts.join(", ")
    )
}

pub(super) fn index_sql(i: &Index) -> String {
    let unique = if i.unique { "UNIQUE " } else { "" };
    format!("CREATE {unique}INDEX IF NOT EXISTS {} ON {}", i.name, i.on)
}

/// Adds `c` to `table` unless it is there already (a store of version 0 may have it).
fn add_column(db: &dyn Sql, what: &str, table: &str, c: &Column) -> Result<()> {
    let dialect = db.dialect();
    let def = column_sql(c, dialect);
    match dialect {
        Dialect::Pg => db.batch(
            what,
            &format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {def}"),
        ),
        Dialect::Lite => {
            let there = db
                .opt(
                    what,
                    "SELECT 1 FROM pragma_table_info(?1) WHERE name=?2",
                    args![table, c.name],
                    |_| Ok(()),
                )?
                .is_some();
            if there {
                return Ok(());
            }
            db.batch(what, &format!("ALTER TABLE {table} ADD COLUMN {def}"))
        }
    }
}

/// The schema changes of version `v`, in order.
fn step(db: &dyn Sql, what: &str, v: u32) -> Result<()> {
    let dialect = db.dialect();
    for t in TABLES {
        if t.since == v {
            db.batch(what, &table_sql(t, dialect, v))?;
        } else if t.since < v {
            for c in t.columns.iter().filter(|c| c.since == v) {
                add_column(db, what, t.name, c)?;
            }
        }
    }
    for i in INDEXES.iter().filter(|i| i.since == v) {
        db.batch(what, &index_sql(i))?;
    }
    Ok(())
}

/// Runs work in one write transaction of the store being opened.
pub(super) type Write<'a> = dyn Fn(&str, &mut dyn FnMut(&dyn Sql) -> Result<()>) -> Result<()> + 'a;

/// On PostgreSQL, instances starting together take turns at the upgrade (a transaction-scoped
/// advisory lock; the number is arbitrary, "cairn" in ASCII). SQLite's writer is alone anyway.
fn serialise(db: &dyn Sql, what: &str) -> Result<()> {
    if db.dialect() == Dialect::Pg {
        db.opt(
            what,
            "SELECT pg_advisory_xact_lock(1667330414)",
            args![],
            |_| Ok(()),
        )?;
    }
    Ok(())
}

fn version(db: &dyn Sql, what: &str) -> Result<u32> {
    let v = db
        .opt(
            what,
            "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations",
            args![],
            |r| r.get::<i64>(0),
        )?
        .unwrap_or(0);
    u32::try_from(v).map_err(|_| Error::Corrupt(format!("{what}: schema version {v} is not one")))
}

/// Brings the store opened as `store` (its path or address, for errors) to [`LATEST`], one
/// step per transaction, then refreshes what is derived at every open. Returns the version it
/// found.
///
/// # Errors
/// A store of a newer version than this build knows ([`Error::Invalid`]: run the newer
/// cairn), or the engine's.
pub(super) fn upgrade(store: &str, write: &Write<'_>) -> Result<u32> {
    let what = format!("creating the schema record of metadata store {store}");
    write(&what, &mut |db| {
        serialise(db, &what)?;
        db.batch(&what, &table_sql(&MIGRATIONS, db.dialect(), LATEST))
    })?;
    let mut found = None;
    for v in 1..=LATEST {
        let what = format!("upgrading metadata store {store} to schema version {v}");
        write(&what, &mut |db| {
            serialise(db, &what)?;
            let at = version(db, &what)?;
            found.get_or_insert(at);
            if at > LATEST {
                return Err(Error::Invalid(format!(
                    "metadata store {store} is at schema version {at}, newer than this cairn \
                     knows ({LATEST}); run the cairn that wrote it, or a newer one"
                )));
            }
            if at >= v {
                return Ok(());
            }
            step(db, &what, v)?;
            db.exec(
                &what,
                "INSERT INTO schema_migrations(version, applied_ns) VALUES(?1, ?2)",
                args![i64::from(v), super::now_ns()],
            )?;
            Ok(())
        })?;
    }
    let what = format!("refreshing cloud credentials of metadata store {store}");
    write(&what, &mut |db| super::cloud::refresh_credentials(db))?;
    Ok(found.unwrap_or(LATEST))
}
