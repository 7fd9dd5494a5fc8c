//! The SQL the metadata store speaks, apart from the engine that runs it (issue 10: SQLite
//! embedded, PostgreSQL for scale-out). Statements are written once, in what both engines
//! accept: `?N` placeholders (a PostgreSQL connection writes them `$N`), `ON CONFLICT`,
//! `RETURNING`, `COALESCE`, `CAST(... AS BIGINT)` around sums. Values cross as integers, text,
//! bytes or NULL, so the commit rules, validation and retention above run unchanged on either.
//!
//! [`Sql`] is one connection (or transaction) of either engine; [`Lite`] is SQLite's. Rows are
//! read through [`Row::get`], whatever the engine.

use rusqlite::types::ValueRef;

use crate::{Error, Result};

/// A statement's argument.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
    /// NULL, typed as the column it goes to (PostgreSQL binds typed parameters).
    Null(#[expect(dead_code, reason = "read by the PostgreSQL side, the next step")] Kind),
}

/// The three column types the schema uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    Blob,
}

/// A value a statement takes.
pub trait ToArg {
    fn arg(&self) -> Arg<'_>;
}

impl ToArg for i64 {
    fn arg(&self) -> Arg<'_> {
        Arg::Int(*self)
    }
}

impl ToArg for u32 {
    fn arg(&self) -> Arg<'_> {
        Arg::Int(i64::from(*self))
    }
}

impl ToArg for bool {
    fn arg(&self) -> Arg<'_> {
        Arg::Int(i64::from(*self))
    }
}

impl ToArg for str {
    fn arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for &str {
    fn arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for String {
    fn arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for [u8] {
    fn arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}

impl ToArg for &[u8] {
    fn arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}

impl ToArg for Vec<u8> {
    fn arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}

impl ToArg for Option<i64> {
    fn arg(&self) -> Arg<'_> {
        self.map_or(Arg::Null(Kind::Int), Arg::Int)
    }
}

impl ToArg for Option<&str> {
    fn arg(&self) -> Arg<'_> {
        self.map_or(Arg::Null(Kind::Text), Arg::Text)
    }
}

impl ToArg for Option<String> {
    fn arg(&self) -> Arg<'_> {
        self.as_deref().map_or(Arg::Null(Kind::Text), Arg::Text)
    }
}

impl ToArg for Option<Vec<u8>> {
    fn arg(&self) -> Arg<'_> {
        self.as_deref().map_or(Arg::Null(Kind::Blob), Arg::Blob)
    }
}

/// A statement's arguments: `args![a, b]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$(&$a as &dyn $crate::meta::sql::ToArg),*][..]
    };
}
pub(crate) use args;

/// One row of an answer, of either engine.
pub trait Row {
    /// Column `i` as an integer (a boolean as 0 or 1); `None` for NULL.
    fn int(&self, i: usize) -> Result<Option<i64>>;
    fn text(&self, i: usize) -> Result<Option<String>>;
    fn blob(&self, i: usize) -> Result<Option<Vec<u8>>>;
}

impl dyn Row + '_ {
    /// Column `i` as `T`.
    ///
    /// # Errors
    /// A column of another type, or NULL where `T` is not an `Option`.
    pub fn get<T: FromCol>(&self, i: usize) -> Result<T> {
        T::from_col(self, i)
    }
}

/// A type a column is read as.
pub trait FromCol: Sized {
    fn from_col(row: &dyn Row, i: usize) -> Result<Self>;
}

fn required<T>(v: Option<T>, i: usize) -> Result<T> {
    v.ok_or_else(|| Error::Corrupt(format!("metadata column {i} is NULL where a value must be")))
}

impl FromCol for i64 {
    fn from_col(row: &dyn Row, i: usize) -> Result<Self> {
        required(row.int(i)?, i)
    }
}

impl FromCol for bool {
    fn from_col(row: &dyn Row, i: usize) -> Result<Self> {
        Ok(required(row.int(i)?, i)? != 0)
    }
}

impl FromCol for String {
    fn from_col(row: &dyn Row, i: usize) -> Result<Self> {
        required(row.text(i)?, i)
    }
}

impl FromCol for Vec<u8> {
    fn from_col(row: &dyn Row, i: usize) -> Result<Self> {
        required(row.blob(i)?, i)
    }
}

impl FromCol for Option<i64> {
    fn from_col(row: &dyn Row, i: usize) -> Result<Self> {
        row.int(i)
    }
}

impl FromCol for Option<String> {
    fn from_col(row: &dyn Row, i: usize) -> Result<Self> {
        row.text(i)
    }
}

impl FromCol for Option<Vec<u8>> {
    fn from_col(row: &dyn Row, i: usize) -> Result<Self> {
        row.blob(i)
    }
}

/// Which engine a connection belongs to, for the few statements only one of them has (a row
/// lock, `FOR UPDATE`, means nothing to SQLite, whose writer is alone anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(
    dead_code,
    reason = "the commit's row lock and the PostgreSQL side, under way"
)]
pub enum Dialect {
    Lite,
    Pg,
}

/// One connection or transaction of either engine. `what` names the work for errors
/// ("deleting a user"), as every metadata error says what it was doing.
#[expect(
    dead_code,
    reason = "the commit's row lock and the PostgreSQL side, under way"
)]
pub trait Sql {
    fn dialect(&self) -> Dialect;

    /// Runs statements that take no arguments, `;`-separated (schema changes).
    fn batch(&self, what: &str, sql: &str) -> Result<()>;

    /// Runs a statement; the rows it changed.
    fn exec(&self, what: &str, sql: &str, args: &[&dyn ToArg]) -> Result<u64>;

    /// Runs a query, handing each row to `each` in order.
    fn rows(
        &self,
        what: &str,
        sql: &str,
        args: &[&dyn ToArg],
        each: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()>;
}

impl dyn Sql + '_ {
    /// The first row of a query as `T`, `None` when there is none.
    ///
    /// # Errors
    /// The engine's, or `read`'s.
    pub fn opt<T>(
        &self,
        what: &str,
        sql: &str,
        args: &[&dyn ToArg],
        read: impl Fn(&dyn Row) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut first = None;
        self.rows(what, sql, args, &mut |r| {
            if first.is_none() {
                first = Some(read(r)?);
            }
            Ok(())
        })?;
        Ok(first)
    }

    /// Every row of a query as `T`.
    ///
    /// # Errors
    /// The engine's, or `read`'s.
    pub fn all<T>(
        &self,
        what: &str,
        sql: &str,
        args: &[&dyn ToArg],
        read: impl Fn(&dyn Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.rows(what, sql, args, &mut |r| {
            out.push(read(r)?);
            Ok(())
        })?;
        Ok(out)
    }
}

/// SQLite's side: a connection (or a transaction, through `Deref`).
pub struct Lite<'c>(pub &'c rusqlite::Connection);

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value};
        Ok(match *self {
            Arg::Int(v) => ToSqlOutput::Owned(Value::Integer(v)),
            Arg::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Arg::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Arg::Null(_) => ToSqlOutput::Owned(Value::Null),
        })
    }
}

fn lite_err(what: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    super::db(what)
}

fn lite_args<'a>(args: &'a [&'a dyn ToArg]) -> Vec<Arg<'a>> {
    args.iter().map(|a| a.arg()).collect()
}

impl Sql for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Lite
    }

    fn batch(&self, what: &str, sql: &str) -> Result<()> {
        self.0.execute_batch(sql).map_err(lite_err(what))
    }

    fn exec(&self, what: &str, sql: &str, args: &[&dyn ToArg]) -> Result<u64> {
        let args = lite_args(args);
        let mut st = self.0.prepare_cached(sql).map_err(lite_err(what))?;
        let n = st
            .execute(rusqlite::params_from_iter(args.iter()))
            .map_err(lite_err(what))?;
        Ok(n as u64)
    }

    fn rows(
        &self,
        what: &str,
        sql: &str,
        args: &[&dyn ToArg],
        each: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()> {
        let args = lite_args(args);
        let mut st = self.0.prepare_cached(sql).map_err(lite_err(what))?;
        let mut rows = st
            .query(rusqlite::params_from_iter(args.iter()))
            .map_err(lite_err(what))?;
        while let Some(r) = rows.next().map_err(lite_err(what))? {
            each(&LiteRow(r))?;
        }
        Ok(())
    }
}

/// A row of SQLite's, as the engine-neutral [`Row`].
pub struct LiteRow<'r, 's>(pub &'r rusqlite::Row<'s>);

impl LiteRow<'_, '_> {
    fn value(&self, i: usize) -> Result<ValueRef<'_>> {
        self.0
            .get_ref(i)
            .map_err(super::db("reading a metadata row"))
    }
}

fn wrong(i: usize, want: &str, got: ValueRef<'_>) -> Error {
    Error::Corrupt(format!(
        "metadata column {i} holds {:?} where {want} must be",
        got.data_type()
    ))
}

impl Row for LiteRow<'_, '_> {
    fn int(&self, i: usize) -> Result<Option<i64>> {
        match self.value(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(v) => Ok(Some(v)),
            other => Err(wrong(i, "an integer", other)),
        }
    }

    fn text(&self, i: usize) -> Result<Option<String>> {
        match self.value(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => String::from_utf8(t.to_vec())
                .map(Some)
                .map_err(|_| Error::Corrupt(format!("metadata column {i} is not UTF-8"))),
            other => Err(wrong(i, "text", other)),
        }
    }

    fn blob(&self, i: usize) -> Result<Option<Vec<u8>>> {
        match self.value(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(b) => Ok(Some(b.to_vec())),
            other => Err(wrong(i, "bytes", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_and_rows_cross_as_integers_text_bytes_and_null() {
        let conn = rusqlite::Connection::open_in_memory().expect("memory db");
        let db = Lite(&conn);
        let db: &dyn Sql = &db;
        db.exec(
            "t",
            "CREATE TABLE t(i INTEGER, s TEXT, b BLOB, n INTEGER)",
            args![],
        )
        .expect("create");
        let none: Option<i64> = None;
        let n = db
            .exec(
                "t",
                "INSERT INTO t(i, s, b, n) VALUES(?1, ?2, ?3, ?4)",
                args![7i64, "seven", vec![7u8, 7], none],
            )
            .expect("insert");
        assert_eq!(n, 1);
        let row = db
            .opt(
                "t",
                "SELECT i, s, b, n, i=7 FROM t WHERE s=?1",
                args!["seven"],
                |r| {
                    Ok((
                        r.get::<i64>(0)?,
                        r.get::<String>(1)?,
                        r.get::<Vec<u8>>(2)?,
                        r.get::<Option<i64>>(3)?,
                        r.get::<bool>(4)?,
                    ))
                },
            )
            .expect("select");
        assert_eq!(row, Some((7, "seven".to_string(), vec![7, 7], None, true)));
        let missing = db
            .opt("t", "SELECT i FROM t WHERE s=?1", args!["eight"], |r| {
                r.get::<i64>(0)
            })
            .expect("select");
        assert_eq!(missing, None);
        let err = db
            .opt("t", "SELECT s FROM t", args![], |r| r.get::<i64>(0))
            .expect_err("text is not an integer");
        assert!(err.to_string().contains("column 0"), "{err}");
        let err = db
            .opt("t", "SELECT n FROM t", args![], |r| r.get::<i64>(0))
            .expect_err("NULL is not an integer");
        assert!(err.to_string().contains("NULL"), "{err}");
    }
}
