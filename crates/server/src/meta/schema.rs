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
            // Empty for a local account, else the directory that checks the password.
            added("directory", Text, "NOT NULL DEFAULT ''", 5),
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
    // Which agent instance holds each (user, device), and when it was last heard: in the
    // database, so every server instance refuses a copied configuration alike.
    Table {
        since: 3,
        ..keyed(
            "agent_claims",
            &[
                col("user_id", Int, "NOT NULL"),
                col("device", Text, "NOT NULL"),
                col("instance", Text, "NOT NULL"),
                col("seen_ns", Int, "NOT NULL"),
            ],
            &["PRIMARY KEY(user_id, device)"],
        )
    },
    // Failed logins per user name (kind 0, a BLAKE3 hash) and per source address (kind 1),
    // shared by every server instance so spreading guesses over them gains nothing.
    Table {
        since: 4,
        ..keyed(
            "login_failures",
            &[
                col("kind", Int, "NOT NULL"),
                col("key", Blob, "NOT NULL"),
                col("count", Int, "NOT NULL"),
                col("last_ns", Int, "NOT NULL"),
            ],
            &["PRIMARY KEY(kind, key)"],
        )
    },
    // WebDAV dead properties (`meta/props.rs`): per folder and path, a namespaced name and
    // its XML value.
    Table {
        since: 6,
        ..keyed(
            "dav_props",
            &[
                col("folder_id", Int, "NOT NULL"),
                col("path", Text, "NOT NULL"),
                col("ns", Text, "NOT NULL"),
                col("name", Text, "NOT NULL"),
                col("value", Text, "NOT NULL"),
            ],
            &["PRIMARY KEY(folder_id, path, ns, name)"],
        )
    },
    // WebDAV write locks (`meta/dav.rs`), shared by every instance.
    Table {
        since: 6,
        ..keyed(
            "dav_locks",
            &[
                col("token", Text, "NOT NULL"),
                col("folder_id", Int, "NOT NULL"),
                col("path", Text, "NOT NULL"),
                col("deep", Int, "NOT NULL"),
                col("shared", Int, "NOT NULL"),
                col("owner", Text, "NOT NULL"),
                col("user_id", Int, "NOT NULL"),
                col("timeout_s", Int, "NOT NULL"),
                col("expires_ns", Int, "NOT NULL"),
            ],
            &["PRIMARY KEY(token)"],
        )
    },
    // Packs gc should look at for dead space (`meta/repack.rs`): those that lost a part and
    // kept another. Version 7 fills it with every pack, so packs that lost parts before it
    // existed are looked at once.
    Table {
        since: 7,
        ..keyed(
            "pack_review",
            &[col("pack", Blob, "NOT NULL")],
            &["PRIMARY KEY(pack)"],
        )
    },
];

/// Rows a version's step writes once its tables exist: what a new table must start with in a
/// store that already holds data.
const FILLS: &[(u32, &str)] = &[(
    7,
    "INSERT INTO pack_review(pack) SELECT DISTINCT pack FROM chunks WHERE pack IS NOT NULL",
)];

/// Every index.
pub(super) const INDEXES: &[Index] = &[
    unique("versions_seq", "versions(folder_id, seq)"),
    index("versions_path", "versions(folder_id, path, seq)"),
    index("version_chunks_chunk", "version_chunks(chunk)"),
    index("chunks_pack", "chunks(pack) WHERE pack IS NOT NULL"),
    index("chunk_proofs_chunk", "chunk_proofs(chunk)"),
    index("chunks_lost", "chunks(id) WHERE state=2"),
    Index {
        since: 3,
        ..index("agent_claims_seen", "agent_claims(seen_ns)")
    },
    Index {
        since: 4,
        ..index("login_failures_last", "login_failures(last_ns)")
    },
    Index {
        since: 6,
        ..index("dav_locks_folder", "dav_locks(folder_id, path)")
    },
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
    for (_, fill) in FILLS.iter().filter(|(since, _)| *since == v) {
        db.batch(what, fill)?;
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
    let found = found.unwrap_or(LATEST);
    if found < LATEST {
        tracing::info!(store, from = found, to = LATEST, "metadata schema upgraded");
    }
    let what = format!("refreshing cloud credentials of metadata store {store}");
    write(&what, &mut |db| super::cloud::refresh_credentials(db))?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::meta::Meta;

    /// The schema text of the releases before versions were recorded (meta.rs, meta/cloud.rs,
    /// meta/shares.rs and meta/events.rs as they were), which made the data folders in use.
    const OLD_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users(
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, pw_hash TEXT NOT NULL,
    admin INTEGER NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
    token_gen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS folders(
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, keep_versions INTEGER NOT NULL,
    head_seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS grants(
    folder_id INTEGER NOT NULL, user_id INTEGER NOT NULL, access TEXT NOT NULL,
    PRIMARY KEY(folder_id, user_id));
CREATE TABLE IF NOT EXISTS versions(
    id INTEGER PRIMARY KEY, folder_id INTEGER NOT NULL, path TEXT NOT NULL, seq INTEGER NOT NULL,
    kind TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, mode INTEGER NOT NULL,
    hash BLOB, target TEXT, device TEXT NOT NULL, committed_ns INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS versions_seq ON versions(folder_id, seq);
CREATE INDEX IF NOT EXISTS versions_path ON versions(folder_id, path, seq);
CREATE TABLE IF NOT EXISTS version_chunks(
    version_id INTEGER NOT NULL, idx INTEGER NOT NULL, chunk BLOB NOT NULL, len INTEGER NOT NULL,
    PRIMARY KEY(version_id, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS version_chunks_chunk ON version_chunks(chunk);
CREATE TABLE IF NOT EXISTS chunks(
    id BLOB PRIMARY KEY, len INTEGER NOT NULL, state INTEGER NOT NULL, epoch INTEGER NOT NULL,
    pack BLOB, pack_offset INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_pack ON chunks(pack) WHERE pack IS NOT NULL;
CREATE TABLE IF NOT EXISTS chunk_proofs(
    user_id INTEGER NOT NULL, chunk BLOB NOT NULL, len INTEGER NOT NULL,
    PRIMARY KEY(user_id, chunk)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunk_proofs_chunk ON chunk_proofs(chunk);
CREATE INDEX IF NOT EXISTS chunks_lost ON chunks(id) WHERE state=2;
CREATE TABLE IF NOT EXISTS devices(
    user_id INTEGER NOT NULL, device TEXT NOT NULL, computer TEXT NOT NULL,
    added_ns INTEGER NOT NULL, PRIMARY KEY(user_id, device)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cloud_connections(
    id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL,
    secrets TEXT NOT NULL, credential TEXT NOT NULL, UNIQUE(owner, name));
CREATE TABLE IF NOT EXISTS cloud_tasks(
    id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, name TEXT NOT NULL, folder TEXT NOT NULL,
    connection INTEGER NOT NULL, settings TEXT NOT NULL, status TEXT NOT NULL DEFAULT '{}',
    run_now INTEGER NOT NULL DEFAULT 0, UNIQUE(owner, name));
CREATE TABLE IF NOT EXISTS cloud_task_keys(task INTEGER PRIMARY KEY, key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shares(
    id INTEGER PRIMARY KEY, token TEXT UNIQUE NOT NULL, owner INTEGER NOT NULL,
    folder_id INTEGER NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL, pw_hash TEXT,
    expires_ns INTEGER, max_access INTEGER, accesses INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0, created_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY, at_ns INTEGER NOT NULL, kind TEXT NOT NULL, actor TEXT,
    target TEXT NOT NULL, source TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL);
"#;

    /// What those releases added at open to folders made before the columns existed.
    const OLD_ADDED_COLUMNS: &str = "
        ALTER TABLE users ADD COLUMN quota INTEGER;
        ALTER TABLE users ADD COLUMN used_bytes INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE versions ADD COLUMN author TEXT NOT NULL DEFAULT '';
        ALTER TABLE versions ADD COLUMN computer TEXT NOT NULL DEFAULT '';";

    /// A row in every table of the old schema.
    const OLD_ROWS: &str = "
        INSERT INTO meta(key, value) VALUES('server_id', 'abc');
        INSERT INTO users(id, name, pw_hash, admin) VALUES(7, 'alice', 'hash', 1);
        INSERT INTO folders(id, name, keep_versions, head_seq) VALUES(3, 'docs', 5, 2);
        INSERT INTO grants(folder_id, user_id, access) VALUES(3, 7, 'rw');
        INSERT INTO versions(id, folder_id, path, seq, kind, size, mtime_ns, mode, hash, target,
            device, committed_ns) VALUES(11, 3, 'a/b.txt', 2, 'file', 5, 1, 420, x'0102', NULL,
            'dev1', 9);
        INSERT INTO version_chunks(version_id, idx, chunk, len) VALUES(11, 0, x'0a0b', 5);
        INSERT INTO chunks(id, len, state, epoch, pack, pack_offset)
            VALUES(x'0a0b', 5, 1, 0, NULL, NULL);
        INSERT INTO chunk_proofs(user_id, chunk, len) VALUES(7, x'0a0b', 5);
        INSERT INTO devices(user_id, device, computer, added_ns) VALUES(7, 'dev1', 'laptop', 1);
        INSERT INTO cloud_connections(id, owner, name, config, secrets, credential)
            VALUES(1, 7, 'box', 'not json', '{}', 'cred');
        INSERT INTO cloud_tasks(id, owner, name, folder, connection, settings)
            VALUES(1, 7, 'nightly', 'docs', 1, '{}');
        INSERT INTO cloud_task_keys(task, key) VALUES(1, 'k');
        INSERT INTO shares(id, token, owner, folder_id, path, kind, created_ns)
            VALUES(1, 'tok', 7, 3, 'a', 'dir', 1);
        INSERT INTO events(id, at_ns, kind, actor, target, source, outcome, detail)
            VALUES(1, 1, 'login', 'alice', '', '127.0.0.1', 'ok', '');";

    /// Every table's columns (name, type, NOT NULL, default, key) and rowid-ness, and every
    /// index: what two stores must share to be the same schema.
    fn shape(conn: &Connection) -> Vec<String> {
        let mut st = conn
            .prepare(
                "SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master \
                 WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .expect("schema");
        let items: Vec<(String, String, String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("schema")
            .collect::<rusqlite::Result<_>>()
            .expect("schema");
        let mut out = Vec::new();
        for (kind, name, table, sql) in items {
            if kind == "index" {
                let mut cols = conn
                    .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                    .expect("index info");
                let cols: Vec<String> = cols
                    .query_map([&name], |r| r.get(0))
                    .expect("index info")
                    .collect::<rusqlite::Result<_>>()
                    .expect("index info");
                let partial = sql.contains(" WHERE ");
                out.push(format!("index {name} on {table}{cols:?} partial={partial}"));
                continue;
            }
            let rowid = !sql.contains("WITHOUT ROWID");
            out.push(format!("table {name} rowid={rowid}"));
            let mut cols = conn
                .prepare(
                    "SELECT name, type, \"notnull\", COALESCE(dflt_value, ''), pk \
                     FROM pragma_table_info(?1) ORDER BY cid",
                )
                .expect("table info");
            let cols: Vec<String> = cols
                .query_map([&name], |r| {
                    Ok(format!(
                        "  {} {} notnull={} default={} pk={}",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?
                    ))
                })
                .expect("table info")
                .collect::<rusqlite::Result<_>>()
                .expect("table info");
            out.extend(cols);
        }
        out
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    }

    fn versions(conn: &Connection) -> Vec<i64> {
        let mut st = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .expect("versions");
        st.query_map([], |r| r.get(0))
            .expect("versions")
            .collect::<rusqlite::Result<_>>()
            .expect("versions")
    }

    /// Makes an old data folder's store with `schema`, upgrades it by opening, and checks
    /// that it ends with the fresh schema and every row it had.
    fn upgrades_in_place(schema: &str) {
        let dir = tempfile::tempdir().expect("temp dir");
        let fresh_path = dir.path().join("fresh.db");
        drop(Meta::open(&fresh_path).expect("a new store"));
        let fresh = Connection::open(&fresh_path).expect("fresh");

        let old_path = dir.path().join("old.db");
        let old = Connection::open(&old_path).expect("old");
        old.execute_batch(schema).expect("the old schema");
        old.execute_batch(OLD_ROWS).expect("old rows");
        // The tables the old schema text had; later ones start empty.
        let tables: Vec<&str> = TABLES
            .iter()
            .filter(|t| t.since == 1)
            .map(|t| t.name)
            .collect();
        let before: Vec<i64> = tables.iter().map(|t| count(&old, t)).collect();
        assert!(before.iter().all(|&n| n == 1), "a row in every table");
        drop(old);

        let meta = Meta::open(&old_path).expect("the old store opens");
        let upgraded = Connection::open(&old_path).expect("upgraded");
        assert_eq!(shape(&upgraded), shape(&fresh));
        let after: Vec<i64> = tables.iter().map(|t| count(&upgraded, t)).collect();
        assert_eq!(after, before, "rows of {tables:?}");
        let all: Vec<i64> = (1..=i64::from(LATEST)).collect();
        assert_eq!(versions(&upgraded), all);
        assert_eq!(versions(&fresh), all);
        // The store reads its old rows, the added columns at their defaults.
        let (user, _) = meta.user_by_name("alice").expect("read").expect("alice");
        assert_eq!(
            (user.id, user.admin, user.quota, user.used_bytes),
            (7, true, None, 0)
        );
        assert_eq!(meta.folder("docs").expect("read").expect("docs").head.0, 2);
        assert_eq!(
            meta.meta_value("server_id").expect("read").as_deref(),
            Some("abc")
        );
        drop(meta);
        // A second open finds nothing to do.
        drop(Meta::open(&old_path).expect("reopen"));
        assert_eq!(versions(&upgraded), all);
    }

    #[test]
    fn a_store_made_by_the_old_schema_upgrades_in_place_with_nothing_lost() {
        upgrades_in_place(OLD_SCHEMA);
    }

    #[test]
    fn an_old_store_that_had_the_added_columns_upgrades_too() {
        upgrades_in_place(&format!("{OLD_SCHEMA}{OLD_ADDED_COLUMNS}"));
    }

    #[test]
    fn every_pack_of_an_upgraded_store_is_put_up_for_review_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("meta.db");
        let old = Connection::open(&path).expect("old");
        old.execute_batch(OLD_SCHEMA).expect("the old schema");
        old.execute_batch(
            "INSERT INTO chunks(id, len, state, epoch, pack, pack_offset) VALUES
                (x'01', 5, 1, 0, x'aa', 0), (x'02', 5, 1, 0, x'aa', 5),
                (x'03', 5, 1, 0, x'bb', 0), (x'04', 70000, 1, 0, NULL, NULL)",
        )
        .expect("old rows");
        drop(old);
        drop(Meta::open(&path).expect("upgrade"));
        let upgraded = Connection::open(&path).expect("upgraded");
        let mut st = upgraded
            .prepare("SELECT hex(pack) FROM pack_review ORDER BY pack")
            .expect("query");
        let packs: Vec<String> = st
            .query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(packs, ["AA", "BB"]);
    }

    #[test]
    fn a_store_newer_than_this_build_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("meta.db");
        drop(Meta::open(&path).expect("a new store"));
        Connection::open(&path)
            .expect("store")
            .execute(
                "INSERT INTO schema_migrations(version, applied_ns) VALUES(?1, 0)",
                [i64::from(LATEST) + 1],
            )
            .expect("a future version");
        let Err(err) = Meta::open(&path) else {
            panic!("a newer store must not open");
        };
        assert!(err.to_string().contains("newer than this cairn"), "{err}");
    }

    #[test]
    fn each_engine_gets_its_own_types_from_the_one_definition() {
        let users = TABLES.iter().find(|t| t.name == "users").expect("users");
        assert_eq!(
            table_sql(users, Dialect::Lite, 1),
            "CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, \
             pw_hash TEXT NOT NULL, admin INTEGER NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, \
             token_gen INTEGER NOT NULL DEFAULT 0)"
        );
        assert_eq!(
            table_sql(users, Dialect::Pg, LATEST),
            "CREATE TABLE IF NOT EXISTS users(id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY \
             KEY, name TEXT COLLATE \"C\" UNIQUE NOT NULL, pw_hash TEXT COLLATE \"C\" NOT NULL, \
             admin BIGINT NOT NULL, disabled BIGINT NOT NULL DEFAULT 0, token_gen BIGINT NOT NULL \
             DEFAULT 0, quota BIGINT, used_bytes BIGINT NOT NULL DEFAULT 0, directory TEXT \
             COLLATE \"C\" NOT NULL DEFAULT '')"
        );
        let chunks = TABLES.iter().find(|t| t.name == "chunks").expect("chunks");
        assert!(table_sql(chunks, Dialect::Lite, 1).ends_with(") WITHOUT ROWID"));
        assert!(table_sql(chunks, Dialect::Pg, 1).contains("id BYTEA PRIMARY KEY"));
        assert!(!table_sql(chunks, Dialect::Pg, 1).contains("ROWID"));
    }

    #[test]
    fn added_columns_suit_alter_table_in_both_engines() {
        for t in TABLES {
            for c in t.columns.iter().filter(|c| c.since > t.since) {
                let rest = c.rest.to_ascii_uppercase();
                assert!(
                    !rest.contains("PRIMARY") && !rest.contains("UNIQUE"),
                    "{}.{}: no key can be added",
                    t.name,
                    c.name
                );
                assert!(
                    !rest.contains("NOT NULL") || rest.contains("DEFAULT"),
                    "{}.{}: NOT NULL needs a default",
                    t.name,
                    c.name
                );
                assert!(
                    !matches!(c.ty, Type::Id | Type::Key),
                    "{}.{}",
                    t.name,
                    c.name
                );
            }
        }
    }
}
