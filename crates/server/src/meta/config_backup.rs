//! The settings of a server without its content, as one document (`cairn server
//! backup-config`), and their restore into a new server (`restore-config`): for the disaster
//! recovery of a small install whose files come back from the clients.
//!
//! [`Meta::export_config`] reads the [`CONFIG_TABLES`] in one read transaction;
//! [`Meta::import_config`] writes them in one write transaction that first checks those tables
//! are empty, so a restore never merges into a server in use and a failed one leaves nothing
//! behind. Rows keep their ids (grants and cloud tasks name users and connections by id).
//! Columns come from `schema.rs`'s one definition, as in [`super::copy`]: a setting column
//! added there is backed up with no change here.
//!
//! Left out on purpose: whatever describes content that is not restored (versions, chunks,
//! each folder's journal head, each user's bytes used, shares of paths, cloud tasks' status),
//! the activity log, devices and agent claims (the agents register again), and the `meta`
//! keys: the restored server gets a new identity and token secret, so every client sees a
//! new server and merges rather than trusting a journal that went back to zero (DESIGN.md's
//! invariant 8), and it records its own chunk store.

use serde::{Deserialize, Serialize};

use super::copy::{kind_of, reset_identities, value, Value};
use super::schema::{Table, TABLES};
use super::sql::{args, Kind, Sql, ToArg};
use super::{Meta, TableRows};
use crate::{Error, Result};

/// What a backup file says it is, checked before anything else is read.
const FORMAT: &str = "cairn-config-backup";
/// The layout of the document; a restore refuses another.
const VERSION: u32 = 1;

/// The tables a backup holds, in restore order, each with the columns it leaves out (their
/// defaults describe a server with no content yet).
const CONFIG_TABLES: &[(&str, &[&str])] = &[
    ("users", &["used_bytes"]),
    ("folders", &["head_seq"]),
    ("grants", &[]),
    ("cloud_connections", &[]),
    ("cloud_tasks", &["status", "run_now"]),
    ("cloud_task_keys", &[]),
];

/// A server's settings: users (with password hashes), folders and their retention, grants,
/// quotas, cloud connections (with secrets), cloud tasks and their encryption keys.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConfigBackup {
    pub format: String,
    pub version: u32,
    /// The cairn that wrote it.
    pub written_by: String,
    pub tables: Vec<TableDump>,
    /// The text of the server's config file, when the backup was made with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_config: Option<String>,
}

/// One table's rows, each a list of values in `columns` order.
#[derive(Debug, Serialize, Deserialize)]
pub struct TableDump {
    pub table: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

impl ConfigBackup {
    /// Checks that this is a backup this cairn can restore.
    ///
    /// # Errors
    /// [`Error::Invalid`] saying what the document is instead.
    pub fn check_format(&self) -> Result<()> {
        if self.format != FORMAT {
            return Err(Error::Invalid(format!(
                "not a cairn configuration backup (format {:?})",
                self.format
            )));
        }
        if self.version != VERSION {
            return Err(Error::Invalid(format!(
                "configuration backup version {} (written by cairn {}); this cairn restores version {VERSION}",
                self.version, self.written_by
            )));
        }
        Ok(())
    }
}

fn schema_table(name: &str) -> Result<&'static Table> {
    TABLES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::Invalid(format!("the backup holds table {name}, unknown here")))
}

fn to_json(v: Value, table: &str, column: &str) -> Result<serde_json::Value> {
    Ok(match v {
        Value::Int(i) => i.map_or(serde_json::Value::Null, serde_json::Value::from),
        Value::Text(t) => t.map_or(serde_json::Value::Null, serde_json::Value::from),
        // No backed-up column holds bytes; one that starts to must choose an encoding here.
        Value::Blob(_) => {
            return Err(Error::Invalid(format!(
                "column {table}.{column} holds bytes, which a configuration backup cannot carry"
            )))
        }
    })
}

fn from_json(v: &serde_json::Value, kind: Kind, table: &str, column: &str) -> Result<Value> {
    let wrong = || {
        Error::Invalid(format!(
            "the backup's {table}.{column} holds {v}, not a value of its type"
        ))
    };
    Ok(match (kind, v) {
        (Kind::Int, serde_json::Value::Null) => Value::Int(None),
        (Kind::Int, n) => Value::Int(Some(n.as_i64().ok_or_else(wrong)?)),
        (Kind::Text, serde_json::Value::Null) => Value::Text(None),
        (Kind::Text, serde_json::Value::String(s)) => Value::Text(Some(s.clone())),
        _ => return Err(wrong()),
    })
}

/// The columns of `t` a backup carries.
fn carried(t: &Table, left_out: &[&str]) -> Vec<(&'static str, Kind)> {
    t.columns
        .iter()
        .filter(|c| !left_out.contains(&c.name))
        .map(|c| (c.name, kind_of(c.ty)))
        .collect()
}

fn dump_table(db: &dyn Sql, what: &str, name: &str, left_out: &[&str]) -> Result<TableDump> {
    let t = schema_table(name)?;
    let columns = carried(t, left_out);
    let list: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    // Ordered, so two backups of one server compare equal.
    let sql = format!("SELECT {} FROM {name} ORDER BY 1", list.join(", "));
    let mut rows = Vec::new();
    db.rows(what, &sql, args![], &mut |r| {
        let row = columns
            .iter()
            .enumerate()
            .map(|(i, (col, kind))| to_json(value(r, i, *kind)?, name, col))
            .collect::<Result<Vec<_>>>()?;
        rows.push(row);
        Ok(())
    })?;
    Ok(TableDump {
        table: name.to_string(),
        columns: list.iter().map(|c| c.to_string()).collect(),
        rows,
    })
}

/// Inserts `dump`'s rows; the file's columns must be ones this schema backs up.
fn load_table(db: &dyn Sql, what: &str, dump: &TableDump) -> Result<u64> {
    let (name, left_out) = CONFIG_TABLES
        .iter()
        .find(|(n, _)| *n == dump.table)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "the backup holds table {}, which a restore does not write",
                dump.table
            ))
        })?;
    let known = carried(schema_table(name)?, left_out);
    let kinds = dump
        .columns
        .iter()
        .map(|c| {
            known
                .iter()
                .find(|(k, _)| k == c)
                .map(|(_, kind)| *kind)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "the backup's table {name} has column {c}, unknown here (a newer cairn wrote it)"
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let marks: Vec<String> = (1..=kinds.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO {name}({}) VALUES({})",
        dump.columns.join(", "),
        marks.join(", ")
    );
    for row in &dump.rows {
        if row.len() != kinds.len() {
            return Err(Error::Invalid(format!(
                "a row of the backup's table {name} has {} values for {} columns",
                row.len(),
                kinds.len()
            )));
        }
        let values = row
            .iter()
            .zip(&kinds)
            .zip(&dump.columns)
            .map(|((v, k), c)| from_json(v, *k, name, c))
            .collect::<Result<Vec<_>>>()?;
        let args: Vec<&dyn ToArg> = values.iter().map(|v| v as &dyn ToArg).collect();
        db.exec(what, &sql, &args)?;
    }
    Ok(dump.rows.len() as u64)
}

impl Meta {
    /// The settings of this server, as of one moment.
    ///
    /// # Errors
    /// The store's, naming it.
    pub fn export_config(&self) -> Result<ConfigBackup> {
        let what = format!("reading the settings in {}", self.describe());
        let tables = self.read(|db| {
            CONFIG_TABLES
                .iter()
                .map(|(name, left_out)| dump_table(db, &what, name, left_out))
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(ConfigBackup {
            format: FORMAT.into(),
            version: VERSION,
            written_by: env!("CARGO_PKG_VERSION").into(),
            tables,
            server_config: None,
        })
    }

    /// Writes `backup`'s settings into this store, whose settings tables must be empty (a
    /// data folder made for the restore). Returns the rows per table.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `backup` is not a backup this cairn restores, or names a table
    /// or column it does not know, or when the store holds settings already (checked in the
    /// same transaction); the store's. On any error the store is left as it was.
    pub fn import_config(&self, backup: &ConfigBackup) -> Result<Vec<TableRows>> {
        backup.check_format()?;
        let what = format!("restoring settings into {}", self.describe());
        self.write(&what, |db| {
            for (name, _) in CONFIG_TABLES {
                let sql = format!("SELECT 1 FROM {name} LIMIT 1");
                if db.opt(&what, &sql, args![], |_| Ok(()))?.is_some() {
                    return Err(Error::Invalid(format!(
                        "{} already holds settings (table {name} has rows); restore into a new data folder",
                        self.describe()
                    )));
                }
            }
            let mut done = Vec::new();
            for dump in &backup.tables {
                let rows = load_table(db, &what, dump)?;
                let table = schema_table(&dump.table)?.name;
                done.push(TableRows { table, rows });
            }
            reset_identities(db, &what)?;
            Ok(done)
        })
    }
}

#[cfg(test)]
mod tests {
    use cairn_testkit::postgres;

    use super::super::PgAddress;
    use super::*;

    /// A SQLite store with settings, content counters and rows a backup leaves out, ids far
    /// apart (a sequence left at the row count would collide with them).
    fn filled(path: &std::path::Path) -> Meta {
        let meta = Meta::open(path).expect("a SQLite store");
        meta.add_user("admin", "hash-a", true).expect("user");
        let conn = rusqlite::Connection::open(path).expect("the same file");
        conn.execute_batch(
            "INSERT INTO users(id, name, pw_hash, admin, quota, used_bytes, token_gen)
                 VALUES(40, 'carol', '$argon2id$h', 0, 9000, 987654, 3);
             INSERT INTO folders(id, name, keep_versions, head_seq) VALUES(7, 'docs', 5, 99);
             INSERT INTO grants(folder_id, user_id, access) VALUES(7, 40, 'ro');
             INSERT INTO cloud_connections(id, owner, name, config, secrets, credential)
                 VALUES(3, 40, 'box', '{}', '{\"k\":\"secret\"}', 'cred');
             INSERT INTO cloud_tasks(id, owner, name, folder, connection, settings, status, run_now)
                 VALUES(4, 40, 'nightly', 'docs', 3, '{}', '{\"status_marker\":1}', 1);
             INSERT INTO cloud_task_keys(task, key) VALUES(4, 'wrapped-key');
             INSERT INTO shares(id, token, owner, folder_id, path, kind, created_ns)
                 VALUES(6, 'share-token-x', 40, 7, 'a', 'dir', 1);
             INSERT INTO events(id, at_ns, kind, actor, target, source, outcome, detail)
                 VALUES(900, 1, 'login', 'carol', '', '127.0.0.1', 'ok', '');",
        )
        .expect("rows");
        meta
    }

    fn user(meta: &Meta, name: &str) -> Option<super::super::User> {
        meta.users()
            .expect("users")
            .into_iter()
            .find(|u| u.name == name)
    }

    /// Restores `filled`'s backup, read back from its text, into `target`, and checks what
    /// came back and what started over.
    fn round_trips_into(source: &Meta, target: &Meta) {
        let text = serde_json::to_string(&source.export_config().expect("export")).expect("json");
        assert!(text.contains("wrapped-key") && text.contains("secret"));
        assert!(
            !text.contains("share-token-x")
                && !text.contains("987654")
                && !text.contains("status_marker")
        );
        let backup: ConfigBackup = serde_json::from_str(&text).expect("parse");
        let rows = target.import_config(&backup).expect("import");
        assert!(rows.iter().any(|r| r.table == "users" && r.rows == 2));
        let again = serde_json::to_string(&target.export_config().expect("export")).expect("json");
        assert_eq!(again, text);
        let carol = user(target, "carol").expect("carol");
        assert_eq!(
            (carol.id, carol.quota, carol.used_bytes),
            (40, Some(9000), 0)
        );
        let docs = target.folder("docs").expect("read").expect("docs");
        assert_eq!((docs.id, docs.keep_versions, docs.head.0), (7, 5, 0));
        // The next ids are past the restored ones.
        target.add_user("dave", "h", false).expect("a new user");
        assert!(user(target, "dave").expect("dave").id > 40);
        // A second restore into the same store is refused and changes nothing.
        let err = target.import_config(&backup).expect_err("not empty");
        assert!(err.to_string().contains("already holds settings"), "{err}");
        assert!(user(target, "dave").is_some());
    }

    #[test]
    fn settings_round_trip_into_another_sqlite_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = filled(&dir.path().join("from.sqlite"));
        round_trips_into(
            &source,
            &Meta::open(&dir.path().join("to.sqlite")).expect("open"),
        );
    }

    #[test]
    fn settings_round_trip_into_postgres_and_sequences_move_past_them() {
        let name = "config_backup_into_postgres";
        let Some(cluster) = postgres::shared(name) else {
            return;
        };
        let url = cluster.create_database(name).expect("a test database");
        let target =
            Meta::open_postgres(&PgAddress::parse(&url).expect("address")).expect("target");
        let dir = tempfile::tempdir().expect("temp dir");
        round_trips_into(&filled(&dir.path().join("from.sqlite")), &target);
    }

    #[test]
    fn a_backup_from_elsewhere_or_a_newer_cairn_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let to = Meta::open(&dir.path().join("to.sqlite")).expect("open");
        let mut backup = filled(&dir.path().join("from.sqlite"))
            .export_config()
            .expect("export");
        backup.tables[0].columns.push("shoe_size".into());
        let err = to.import_config(&backup).expect_err("unknown column");
        assert!(
            err.to_string().contains("users has column shoe_size"),
            "{err}"
        );
        backup.version = 99;
        let err = to.import_config(&backup).expect_err("newer version");
        assert!(err.to_string().contains("version 99"), "{err}");
        assert!(to.users().expect("users").is_empty());
    }
}
