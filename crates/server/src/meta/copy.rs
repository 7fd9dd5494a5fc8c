//! Copies every row of one metadata store into another, empty one: how `cairn server migrate`
//! (`crate::migration`) moves an embedded server's SQLite store to PostgreSQL.
//!
//! [`Meta::copy_into`] reads the source in one read transaction (one consistent snapshot) and
//! writes the target in one write transaction, so a copy that fails half-way leaves the target
//! as empty as it found it. The tables go in [`TABLES`] order (a row's owner before the rows
//! that name it), in multi-row INSERTs of [`BATCH`] rows, so neither side ever holds a whole
//! table. Which columns a table has, and of what type, comes from `schema.rs`'s one definition:
//! a column added there is copied with no change here, where a hand-written column list per
//! table would silently drop it. Afterwards every identity sequence (PostgreSQL) is moved past
//! the largest id copied, or the next user, version or share would be handed an id in use.

use super::schema::{Column, Table, Type, TABLES};
use super::sql::{args, Arg, Dialect, Kind, Row, Sql, ToArg};
use super::Meta;
use crate::{Error, Result};

/// Rows per INSERT: few round trips, and far below PostgreSQL's 65,535 parameters per
/// statement for the widest table.
const BATCH: usize = 500;

/// Rows copied into one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRows {
    pub table: &'static str,
    pub rows: u64,
}

/// One column's value, owned (a row is read from one engine and bound on the other).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl ToArg for Value {
    fn arg(&self) -> Arg<'_> {
        match self {
            Value::Int(v) => v.arg(),
            Value::Text(v) => v.arg(),
            Value::Blob(v) => v.arg(),
        }
    }
}

pub(super) fn kind_of(ty: Type) -> Kind {
    match ty {
        Type::Id | Type::Key | Type::Int => Kind::Int,
        Type::Text => Kind::Text,
        Type::Blob => Kind::Blob,
    }
}

pub(super) fn value(r: &dyn Row, i: usize, kind: Kind) -> Result<Value> {
    Ok(match kind {
        Kind::Int => Value::Int(r.int(i)?),
        Kind::Text => Value::Text(r.text(i)?),
        Kind::Blob => Value::Blob(r.blob(i)?),
    })
}

/// `a, b, c`: every column of `t`.
fn column_list(t: &Table) -> String {
    t.columns
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT INTO t(a, b) VALUES(?1, ?2), (?3, ?4)` for `rows` rows.
fn insert_sql(t: &Table, rows: usize) -> String {
    let width = t.columns.len();
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=width).map(|c| format!("?{}", r * width + c)).collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {}({}) VALUES{}",
        t.name,
        column_list(t),
        tuples.join(", ")
    )
}

/// Inserts the rows of `batch` into `t` on `to`, and empties it.
fn flush(to: &dyn Sql, what: &str, t: &Table, batch: &mut Vec<Vec<Value>>) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let values: Vec<&dyn ToArg> = batch.iter().flatten().map(|v| v as &dyn ToArg).collect();
    to.exec(what, &insert_sql(t, batch.len()), &values)?;
    batch.clear();
    Ok(())
}

/// Copies every row of `t` from `from` to `to`; the number of rows.
fn copy_table(from: &dyn Sql, to: &dyn Sql, what: &str, t: &Table) -> Result<u64> {
    let kinds: Vec<Kind> = t.columns.iter().map(|c| kind_of(c.ty)).collect();
    let select = format!("SELECT {} FROM {}", column_list(t), t.name);
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH);
    let mut rows = 0u64;
    // `to` is another engine's connection than `from`, so it may run statements while
    // `from`'s rows stream.
    from.rows(what, &select, args![], &mut |r| {
        let row = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| value(r, i, *k))
            .collect::<Result<Vec<_>>>()?;
        batch.push(row);
        rows += 1;
        if batch.len() == BATCH {
            flush(to, what, t, &mut batch)?;
        }
        Ok(())
    })?;
    flush(to, what, t, &mut batch)?;
    Ok(rows)
}

/// The first table of [`TABLES`] holding a row, if any.
fn first_with_rows(db: &dyn Sql, what: &str) -> Result<Option<&'static str>> {
    for t in TABLES {
        let sql = format!("SELECT 1 FROM {} LIMIT 1", t.name);
        if db.opt(what, &sql, args![], |_| Ok(()))?.is_some() {
            return Ok(Some(t.name));
        }
    }
    Ok(None)
}

/// The identity column of `t` (PostgreSQL hands its values out from a sequence), if any.
fn identity(t: &Table) -> Option<&Column> {
    t.columns.iter().find(|c| c.ty == Type::Id)
}

/// Moves each identity sequence past the largest id its table holds. Nothing to do on
/// SQLite, whose next rowid is always past the largest.
pub(super) fn reset_identities(db: &dyn Sql, what: &str) -> Result<()> {
    if db.dialect() != Dialect::Pg {
        return Ok(());
    }
    for t in TABLES {
        let Some(c) = identity(t) else {
            continue;
        };
        // An empty table keeps its sequence at the start (`setval` would refuse 0).
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{t}', '{c}'), m) \
             FROM (SELECT MAX({c}) AS m FROM {t}) AS top WHERE m IS NOT NULL",
            t = t.name,
            c = c.name
        );
        db.opt(what, &sql, args![], |_| Ok(()))?;
    }
    Ok(())
}

impl Meta {
    /// Succeeds when no table of the store holds a row: it holds no cairn data.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the store and a table that holds rows; the store's.
    pub fn ensure_empty(&self) -> Result<()> {
        let what = format!("looking for cairn data in {}", self.describe());
        match self.read(|db| first_with_rows(db, &what))? {
            Some(table) => Err(not_empty(self, table)),
            None => Ok(()),
        }
    }

    /// Copies every row of every table of this store into `target`, then sets each
    /// `settings` key of the `meta` table to its value there (`chunk_store` for a store that
    /// moved), all in one transaction of `target`; `each_table` hears each table's count as
    /// it is done. Returns the rows per table.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `target` when it holds rows already (checked in the same
    /// transaction, so nothing else can have written in between); either store's errors.
    /// On any error `target` is left as it was.
    pub fn copy_into(
        &self,
        target: &Meta,
        settings: &[(&str, &str)],
        each_table: &mut dyn FnMut(&TableRows),
    ) -> Result<Vec<TableRows>> {
        let what = format!(
            "copying the metadata from {} to {}",
            self.describe(),
            target.describe()
        );
        target.write(&what, |to| {
            if let Some(table) = first_with_rows(to, &what)? {
                return Err(not_empty(target, table));
            }
            let copied = self.read(|from| {
                let mut copied = Vec::with_capacity(TABLES.len());
                for t in TABLES {
                    let rows = copy_table(from, to, &what, t)?;
                    let done = TableRows {
                        table: t.name,
                        rows,
                    };
                    each_table(&done);
                    copied.push(done);
                }
                Ok(copied)
            })?;
            for (key, value) in settings {
                to.exec(
                    &what,
                    "INSERT INTO meta(key, value) VALUES(?1, ?2) \
                     ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    args![*key, *value],
                )?;
            }
            reset_identities(to, &what)?;
            Ok(copied)
        })
    }
}

/// The refusal to copy into `target`, which holds rows in `table`.
fn not_empty(target: &Meta, table: &str) -> Error {
    Error::Invalid(format!(
        "the metadata store {} already holds cairn data (table {table} has rows); \
         migrate into a new, empty database",
        target.describe()
    ))
}

#[cfg(test)]
mod tests {
    use cairn_testkit::postgres;

    use super::*;
    use crate::meta::PgAddress;

    /// A row in every table, written the way the server writes them where it can.
    fn filled(path: &std::path::Path) -> Meta {
        let meta = Meta::open(path).expect("a SQLite store");
        meta.add_user("admin", "hash-a", true).expect("user");
        meta.add_user("bob", "hash-b", false).expect("user");
        meta.add_folder("docs", 5).expect("folder");
        let conn = rusqlite::Connection::open(path).expect("the same file");
        // Ids far apart, so a sequence left at the row count would collide with them.
        conn.execute_batch(
            "INSERT INTO meta(key, value) VALUES('server_id', 'abc');
             INSERT INTO users(id, name, pw_hash, admin, quota) VALUES(40, 'carol', 'h', 0, 9);
             INSERT INTO grants(folder_id, user_id, access) VALUES(1, 40, 'rw');
             INSERT INTO versions(id, folder_id, path, seq, kind, size, mtime_ns, mode, hash,
                 target, device, committed_ns, author, computer)
                 VALUES(77, 1, 'a/b.txt', 2, 'file', 5, 1, 420, x'0102', NULL, 'dev1', 9,
                 'carol', 'laptop');
             INSERT INTO version_chunks(version_id, idx, chunk, len) VALUES(77, 0, x'0a0b', 5);
             INSERT INTO chunks(id, len, state, epoch, pack, pack_offset)
                 VALUES(x'0a0b', 5, 1, 0, x'ff', 12);
             INSERT INTO chunk_proofs(user_id, chunk, len) VALUES(40, x'0a0b', 5);
             INSERT INTO devices(user_id, device, computer, added_ns) VALUES(40, 'dev1', 'pc', 1);
             INSERT INTO cloud_connections(id, owner, name, config, secrets, credential)
                 VALUES(3, 40, 'box', 'not json', '{}', 'cred');
             INSERT INTO cloud_tasks(id, owner, name, folder, connection, settings)
                 VALUES(4, 40, 'nightly', 'docs', 3, '{}');
             INSERT INTO cloud_task_keys(task, key) VALUES(4, 'k');
             INSERT INTO shares(id, token, owner, folder_id, path, kind, created_ns)
                 VALUES(6, 'tok', 40, 1, 'a', 'dir', 1);
             INSERT INTO events(id, at_ns, kind, actor, target, source, outcome, detail)
                 VALUES(900, 1, 'login', 'carol', '', '127.0.0.1', 'ok', '');
             INSERT INTO agent_claims(user_id, device, instance, seen_ns) VALUES(40, 'dev1', 'i', 1);
             INSERT INTO login_failures(kind, key, count, last_ns) VALUES(1, x'7f', 2, 3);
             INSERT INTO dav_props(folder_id, path, ns, name, value) VALUES(1, 'a', 'u:', 'n', 'v');
             INSERT INTO dav_locks(token, folder_id, path, deep, shared, owner, user_id,
                 timeout_s, expires_ns) VALUES('opaquelocktoken:x', 1, 'a', 1, 0, '', 40, 60, 9);
             INSERT INTO pack_review(pack) VALUES(x'0c0d');",
        )
        .expect("rows");
        meta
    }

    /// Every row of `t`, sorted.
    fn rows(meta: &Meta, t: &Table) -> Vec<Vec<Value>> {
        let kinds: Vec<Kind> = t.columns.iter().map(|c| kind_of(c.ty)).collect();
        let sql = format!("SELECT {} FROM {}", column_list(t), t.name);
        let mut out = meta
            .read(|db| {
                db.all("test", &sql, args![], |r| {
                    kinds
                        .iter()
                        .enumerate()
                        .map(|(i, k)| value(r, i, *k))
                        .collect()
                })
            })
            .expect("rows");
        out.sort();
        out
    }

    /// The store `filled` makes, copied into `target`: every row of every table arrives,
    /// the settings are applied, and new rows get ids past the copied ones.
    fn copies_everything_into(target: &Meta) {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = filled(&dir.path().join("meta.sqlite"));
        let mut heard = Vec::new();
        let copied = source
            .copy_into(target, &[("chunk_store", "s3://b")], &mut |t| {
                heard.push(t.clone())
            })
            .expect("copy");
        assert_eq!(copied, heard);
        assert_eq!(copied.len(), TABLES.len());
        for t in TABLES {
            let (from, to) = (rows(&source, t), rows(target, t));
            assert!(!from.is_empty(), "a row in {}", t.name);
            if t.name == "meta" {
                let store = Value::Text(Some("chunk_store".into()));
                let set = vec![store.clone(), Value::Text(Some("s3://b".into()))];
                assert!(to.contains(&set), "{to:?}");
                for r in from.iter().filter(|r| r[0] != store) {
                    assert!(to.contains(r), "{r:?} in {to:?}");
                }
                continue;
            }
            assert_eq!(from, to, "table {}", t.name);
        }
        // The identity sequences went past the copied ids.
        target.add_user("dave", "h", false).expect("a new user");
        let (dave, _) = target.user_by_name("dave").expect("read").expect("dave");
        assert!(dave.id > 40, "{}", dave.id);
        // A second copy is refused, naming the target, and changes nothing.
        let err = source
            .copy_into(target, &[], &mut |_| {})
            .expect_err("the target holds data now");
        assert!(
            err.to_string().contains(&target.describe())
                && err.to_string().contains("table meta has rows"),
            "{err}"
        );
        let users = TABLES.iter().find(|t| t.name == "users").expect("users");
        assert_eq!(rows(target, users).len(), 4, "3 copied and dave");
    }

    #[test]
    fn every_row_of_every_table_is_copied_into_another_sqlite_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = Meta::open(&dir.path().join("target.sqlite")).expect("target");
        target.ensure_empty().expect("a new store holds no data");
        copies_everything_into(&target);
        let err = target.ensure_empty().expect_err("it holds data now");
        assert!(err.to_string().contains("table meta has rows"), "{err}");
    }

    #[test]
    fn every_row_of_every_table_is_copied_into_postgres_and_sequences_move_past_it() {
        let name = "copy_into_postgres";
        let Some(cluster) = postgres::shared(name) else {
            return;
        };
        let url = cluster.create_database(name).expect("a test database");
        let target =
            Meta::open_postgres(&PgAddress::parse(&url).expect("address")).expect("target");
        copies_everything_into(&target);
    }
}
