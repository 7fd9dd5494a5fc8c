//! The metadata store's PostgreSQL engine: [`Pg`] is a bounded pool of connections to one
//! database, and runs work in transactions the way `Meta::write` and `read` do on SQLite,
//! handing it a [`Sql`] so the statements of `meta/` run unchanged.
//!
//! Statements arrive in the dialect both engines accept (`meta/sql.rs`): `?N` placeholders are
//! rewritten to `$N` once per statement text ([`to_dollars`], cached), and each connection keeps
//! its prepared statements. PostgreSQL infers a parameter's type from the statement, so an
//! integer argument binds to whichever integer or boolean type it asks for (with a range check),
//! and a NULL carries its [`Kind`] for the places nothing can be inferred.
//!
//! Synchronous, through the `postgres` crate, as SQLite is: the callers already run the store on
//! the blocking pool, and one code path for both engines beats an async copy of every rule.
//! The pool waits (bounded) for a free connection rather than opening without limit; a
//! connection that broke (server restarted, network gone) is dropped and replaced, and work that
//! finds its idle connection dead before it began is retried once on a new one.
//!
//! Rows are streamed to the caller, not collected, so a scan of every chunk needs no memory for
//! the whole table; a statement run from inside another's row callback is refused with an error
//! (one connection answers one statement at a time), where SQLite would allow it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::sql::{Arg, Dialect, Kind, Row, Sql, ToArg};
use crate::{Error, Result};

/// How long work waits for a free connection before it fails: a bound on a stuck pool, far
/// above any transaction the store runs.
const POOL_WAIT: Duration = Duration::from_secs(60);

/// A connection attempt's limit when the address sets none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Prepared statements kept per connection, and rewritten texts kept per pool. The store's
/// statements are fixed texts, far fewer than this; the bound only guards against a caller that
/// builds texts on the fly.
const MAX_STATEMENTS: usize = 1024;

/// Where the PostgreSQL server is: a `postgres://` URL or `key=value` string as libpq takes
/// them. Shown (Display and Debug) without its password, so it can go into logs and errors.
#[derive(Clone)]
pub struct PgAddress {
    config: postgres::Config,
    shown: String,
}

impl PgAddress {
    /// # Errors
    /// [`Error::Invalid`] when `url` does not parse; the message never repeats it (it may hold
    /// a password).
    pub fn parse(url: &str) -> Result<Self> {
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            Error::Invalid(format!(
                "the PostgreSQL address does not parse ({}); \
                 write postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("cairn");
        }
        let shown = shown(&config);
        Ok(PgAddress { config, shown })
    }
}

/// `postgres://user@host:port/db` without the password; a socket folder stands as the host.
fn shown(config: &postgres::Config) -> String {
    use postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(ToString::to_string).collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let port = if ports.is_empty() {
        String::new()
    } else {
        format!(":{}", ports.join(","))
    };
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{}{port}/{db}", hosts.join(","))
}

impl fmt::Display for PgAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PgAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgAddress({})", self.shown)
    }
}

/// A pool of connections to one PostgreSQL database.
pub struct Pg {
    address: PgAddress,
    max: usize,
    pool: Mutex<Pool>,
    /// Signalled when a connection goes back to the pool or a slot frees.
    freed: Condvar,
    /// `?N` texts rewritten to `$N`, by the text they came as.
    rewritten: Mutex<HashMap<String, Arc<str>>>,
}

impl fmt::Debug for Pg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pg")
            .field("address", &self.address)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Closing a connection blocks on its runtime too.
        let idle = std::mem::take(&mut self.lock().idle);
        blocking(|| drop(idle));
    }
}

struct Pool {
    idle: Vec<Conn>,
    /// Connections open, idle or lent out; never above `Pg::max`.
    open: usize,
}

/// One connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// A connection lent to one piece of work; back to the pool when dropped, unless it broke or
/// was left inside a transaction (then it is closed and its slot freed).
struct Lease<'p> {
    pg: &'p Pg,
    conn: Option<Conn>,
    /// Opened for this lease (not taken idle): a failure on it is not a stale connection's.
    fresh: bool,
    /// Outside any transaction, fit to go back to the pool.
    clean: bool,
}

impl Lease<'_> {
    fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut pool = self.pg.lock();
        if self.clean && !conn.client.is_closed() {
            pool.idle.push(conn);
        } else {
            pool.open -= 1;
        }
        drop(pool);
        self.pg.freed.notify_one();
    }
}

/// The `Error::Pg` of `what`.
fn pg_err(what: &str) -> impl FnOnce(postgres::Error) -> Error + '_ {
    move |source| Error::Pg {
        context: what.to_string(),
        source,
    }
}

/// Runs `f`, which blocks on the `postgres` client's own small runtime. On a worker of a
/// multi-thread tokio runtime that would panic (no runtime may be entered from inside another),
/// so there it goes through `block_in_place`, which lets the worker block as SQLite calls do;
/// on a blocking thread or outside tokio it runs as is. A current-thread runtime cannot host it:
/// call the store from `spawn_blocking` there.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// One connection's listening: `Ok` once `stop` is set, `Err` when the connection failed.
fn follow(
    address: &PgAddress,
    channel: &str,
    each: &dyn Fn(&str),
    resync: &dyn Fn(),
    stop: &std::sync::atomic::AtomicBool,
) -> std::result::Result<(), postgres::Error> {
    // A half-open connection (the server's host gone) says nothing; a look every so often
    // finds it.
    const LOOK_EVERY: Duration = Duration::from_secs(15);
    let mut client = address.config.connect(NoTls)?;
    client.batch_execute(&format!("LISTEN {channel}"))?;
    resync();
    let mut looked = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        {
            let mut notes = client.notifications();
            let mut pending = notes.timeout_iter(Duration::from_millis(500));
            while let Some(note) = pending.next()? {
                each(note.payload());
            }
        }
        if looked.elapsed() >= LOOK_EVERY {
            client.is_valid(Duration::from_secs(10))?;
            looked = Instant::now();
        }
    }
    Ok(())
}

/// True when `e` says the connection is gone (rather than the statement failing): the server
/// shut down or restarted, the socket broke.
fn is_gone(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
        }
        // No SQLSTATE: an I/O error, nothing the server said.
        None => true,
    }
}

impl Pg {
    /// A pool of at most `max` connections (at least 1) to `address`; opens one to check the
    /// address and the credentials now, so a mistake shows at start.
    ///
    /// # Errors
    /// [`Error::Pg`] naming the address (without its password) when no connection can be made.
    pub fn connect(address: PgAddress, max: usize) -> Result<Pg> {
        let pg = Pg {
            address,
            max: max.max(1),
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            rewritten: Mutex::new(HashMap::new()),
        };
        blocking(|| {
            pg.lease(&format!("connecting to PostgreSQL at {}", pg.address))
                .map(drop)
        })?;
        Ok(pg)
    }

    /// [`Self::connect`], then the schema brought up to date (`meta/schema.rs`).
    ///
    /// # Errors
    /// As `connect`, or a failed upgrade step.
    pub fn open(address: PgAddress, max: usize) -> Result<Pg> {
        let pg = Pg::connect(address, max)?;
        super::schema::upgrade(&pg.address.to_string(), &|what, f| {
            pg.write(what, |db| f(db))
        })?;
        Ok(pg)
    }

    /// Sends `payload` on `channel` to every listening connection (`NOTIFY`), in a transaction
    /// of its own: listeners hear it once it commits.
    ///
    /// # Errors
    /// [`Error::Pg`].
    pub fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        let what = "announcing a change to the other server instances";
        self.write(what, |db| {
            db.opt(
                what,
                "SELECT pg_notify(?1, ?2)",
                super::sql::args![channel, payload],
                |_| Ok(()),
            )
            .map(drop)
        })
    }

    /// Follows `channel` on a thread of its own, with its own connection, handing each
    /// payload to `each` until `stop` is set. Notifications sent while no connection listens
    /// are lost, so `resync` runs after each (re)connection, before any payload: the caller
    /// reads what it may have missed. A broken connection is replaced, waiting longer each
    /// time up to half a minute.
    pub fn listen(
        &self,
        channel: &'static str,
        each: Box<dyn Fn(&str) + Send>,
        resync: Box<dyn Fn() + Send>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let address = self.address.clone();
        std::thread::Builder::new()
            .name(format!("pg-listen-{channel}"))
            .spawn(move || {
                let mut wait = Duration::from_millis(250);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match follow(&address, channel, &*each, &*resync, &stop) {
                        Ok(()) => return,
                        Err(e) => tracing::warn!(
                            channel,
                            error = %e,
                            "listening to PostgreSQL failed; connecting again"
                        ),
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            })
    }

    /// Takes session advisory lock `key` on a connection of its own, outside the pool; it is
    /// held until the returned client is dropped (PostgreSQL frees it with the session, so a
    /// killed holder frees it too). `None` when another session holds it.
    ///
    /// # Errors
    /// [`Error::Pg`].
    pub fn advisory_lock(&self, key: i64) -> Result<Option<Client>> {
        let what = "taking an advisory lock";
        blocking(|| {
            let mut client = self.address.config.connect(NoTls).map_err(pg_err(what))?;
            let row = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .map_err(pg_err(what))?;
            let held: bool = row.try_get(0).map_err(pg_err(what))?;
            Ok(held.then_some(client))
        })
    }

    /// Where the pool connects.
    pub fn address(&self) -> &PgAddress {
        &self.address
    }

    /// Runs `f` in one transaction (`BEGIN` ... `COMMIT`; `ROLLBACK` when it fails): every
    /// change of it lands, or none.
    ///
    /// # Errors
    /// `f`'s, or [`Error::Pg`] with `what` as its context.
    pub(crate) fn write<T>(&self, what: &str, f: impl FnOnce(&dyn Sql) -> Result<T>) -> Result<T> {
        self.transaction(what, "BEGIN", f)
    }

    /// The same as [`Self::write`]: SQLite's relaxed durability for chunk registrations has no
    /// counterpart worth its risk here.
    ///
    /// # Errors
    /// As [`Self::write`].
    pub(crate) fn write_relaxed<T>(
        &self,
        what: &str,
        f: impl FnOnce(&dyn Sql) -> Result<T>,
    ) -> Result<T> {
        self.write(what, f)
    }

    /// Runs `f` in a read-only transaction that sees one consistent state, as a SQLite reader
    /// does.
    ///
    /// # Errors
    /// `f`'s, or [`Error::Pg`].
    pub(crate) fn read<T>(&self, f: impl FnOnce(&dyn Sql) -> Result<T>) -> Result<T> {
        self.transaction(
            "reading metadata",
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            f,
        )
    }

    fn transaction<T>(
        &self,
        what: &str,
        begin: &str,
        f: impl FnOnce(&dyn Sql) -> Result<T>,
    ) -> Result<T> {
        blocking(|| self.transaction_here(what, begin, f))
    }

    fn transaction_here<T>(
        &self,
        what: &str,
        begin: &str,
        f: impl FnOnce(&dyn Sql) -> Result<T>,
    ) -> Result<T> {
        let mut lease = self.begin(what, begin)?;
        let out = f(&PgSql {
            pg: self,
            conn: RefCell::new(lease.conn()),
        });
        let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = lease.conn().client.batch_execute(end);
        match (out, ended) {
            (Ok(v), Ok(())) => {
                lease.clean = true;
                Ok(v)
            }
            (Ok(_), Err(e)) => Err(pg_err(what)(e)),
            (Err(e), Ok(())) => {
                lease.clean = true;
                Err(e)
            }
            // The work's error says more than the failed rollback; the connection is dropped.
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// A lease with `begin` run on it. An idle connection that turns out dead (the server
    /// restarted since it was last used) is dropped with every other idle one, and the work
    /// starts again on a new connection: nothing of it ran yet.
    fn begin(&self, what: &str, begin: &str) -> Result<Lease<'_>> {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut lease = self.lease(what)?;
            lease.clean = false;
            match lease.conn().client.batch_execute(begin) {
                Ok(()) => return Ok(lease),
                Err(e) if !lease.fresh && is_gone(&e) && tries <= 3 => {
                    tracing::warn!(address = %self.address, error = %e,
                        "a pooled PostgreSQL connection broke; opening a new one");
                    let stale = std::mem::take(&mut self.lock().idle);
                    self.forget(stale);
                }
                Err(e) => return Err(pg_err(what)(e)),
            }
        }
    }

    /// Closes connections taken out of the pool and frees their slots.
    fn forget(&self, conns: Vec<Conn>) {
        let n = conns.len();
        drop(conns);
        self.lock().open -= n;
        self.freed.notify_all();
    }

    /// Frees the slot of a connection that could not be opened.
    fn forget_slot(&self) {
        self.lock().open -= 1;
        self.freed.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection, a new one while fewer than `max` are open, or the first to come
    /// back (waiting at most [`POOL_WAIT`]).
    fn lease(&self, what: &str) -> Result<Lease<'_>> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut pool = self.lock();
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(self.lent(conn, false));
            }
            if pool.open < self.max {
                pool.open += 1;
                drop(pool);
                return match self.open_conn() {
                    Ok(conn) => Ok(self.lent(conn, true)),
                    Err(e) => {
                        self.forget_slot();
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Not the request's fault: an internal error, not a bad request.
                return Err(Error::Io {
                    context: what.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no PostgreSQL connection came free within {POOL_WAIT:?} (all {} in use)",
                            self.max
                        ),
                    ),
                });
            }
            pool = self
                .freed
                .wait_timeout(pool, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn lent(&self, conn: Conn, fresh: bool) -> Lease<'_> {
        Lease {
            pg: self,
            conn: Some(conn),
            fresh,
            clean: true,
        }
    }

    fn open_conn(&self) -> Result<Conn> {
        let client = self.address.config.connect(NoTls).map_err(|e| Error::Pg {
            context: format!("connecting to PostgreSQL at {}", self.address),
            source: e,
        })?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// `sql` with `$N` for `?N`, rewritten once per text.
    fn dollars(&self, what: &str, sql: &str) -> Result<Arc<str>> {
        let mut cache = self.rewritten.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(done) = cache.get(sql) {
            return Ok(done.clone());
        }
        let done: Arc<str> = to_dollars(sql)
            .map_err(|e| Error::Invalid(format!("{what}: {e}")))?
            .into();
        if cache.len() >= MAX_STATEMENTS {
            cache.clear();
        }
        cache.insert(sql.to_string(), done.clone());
        Ok(done)
    }

    /// The number of connections open now (idle or lent out).
    #[cfg(test)]
    fn open_now(&self) -> usize {
        self.lock().open
    }
}

/// Rewrites `?N` placeholders to PostgreSQL's `$N`, leaving quoted text, quoted names and
/// comments alone.
///
/// # Errors
/// A `?` with no number after it (the statements number every placeholder), or a quote or
/// comment left open.
pub fn to_dollars(sql: &str) -> Result<String, String> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut i = 0;
    // Bytes before `i` not yet copied start at `from`; only ASCII bytes are acted on, so every
    // cut falls on a character boundary.
    let mut from = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                // E'...' strings take backslash escapes.
                let escapes =
                    i > 0 && matches!(b[i - 1], b'E' | b'e') && (i < 2 || !is_word(b[i - 2]));
                i = skip_quoted(b, i, b'\'', escapes)
                    .ok_or_else(|| "a quoted string is not closed".to_string())?;
            }
            b'"' => {
                i = skip_quoted(b, i, b'"', false)
                    .ok_or_else(|| "a quoted name is not closed".to_string())?;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(b, i)
                    .ok_or_else(|| "a comment is not closed".to_string())?;
            }
            b'$' if i == 0 || !is_word(b[i - 1]) => {
                i = skip_dollar_quoted(b, i)
                    .ok_or_else(|| "a dollar-quoted string is not closed".to_string())?;
            }
            b'?' => {
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 {
                    return Err(format!(
                        "a placeholder without a number at byte {i}: write ?1, ?2 ..."
                    ));
                }
                out.push_str(&sql[from..i]);
                out.push('$');
                from = i + 1;
                i += 1 + digits;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[from..]);
    Ok(out)
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The index past the quote opened at `start`; a doubled quote inside is one quote.
fn skip_quoted(b: &[u8], start: usize, quote: u8, escapes: bool) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if escapes => i += 2,
            c if c == quote => {
                if b.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The index past the `/* */` comment opened at `start` (they nest in PostgreSQL).
fn skip_block_comment(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The index past a `$tag$ ... $tag$` string starting at `start`, or `start + 1` when the `$`
/// opens none (a `$1` already written, say).
fn skip_dollar_quoted(b: &[u8], start: usize) -> Option<usize> {
    let rest = &b[start + 1..];
    let name = rest.iter().take_while(|&&c| is_word(c)).count();
    if rest.get(name) != Some(&b'$') || rest.first().is_some_and(u8::is_ascii_digit) {
        return Some(start + 1);
    }
    let tag = &b[start..start + name + 2];
    let body = start + tag.len();
    b[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map(|p| body + p + tag.len())
}

/// A transaction on one lent connection, as the engine-neutral [`Sql`].
struct PgSql<'a> {
    pg: &'a Pg,
    conn: RefCell<&'a mut Conn>,
}

impl<'a> PgSql<'a> {
    fn conn(&self, what: &str) -> Result<std::cell::RefMut<'_, &'a mut Conn>> {
        // A fault of the calling code, not of the request: an internal error.
        self.conn.try_borrow_mut().map_err(|_| Error::Io {
            context: what.to_string(),
            source: std::io::Error::other(
                "a statement ran while another's rows were being read; one PostgreSQL \
                 connection answers one statement at a time (read the rows first, with all())",
            ),
        })
    }

    /// The prepared statement for `sql` on this connection. Parameters whose argument is NULL
    /// are declared with their kind (nothing else may say what type they are); the others are
    /// left for the server to infer from the statement.
    fn statement(
        &self,
        conn: &mut Conn,
        what: &str,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Statement> {
        if let Some(st) = conn.statements.get(sql) {
            return Ok(st.clone());
        }
        let text = self.pg.dollars(what, sql)?;
        let types: Vec<Type> = args.iter().map(declared).collect();
        let st = conn
            .client
            .prepare_typed(&text, &types)
            .map_err(pg_err(what))?;
        if conn.statements.len() >= MAX_STATEMENTS {
            conn.statements.clear();
        }
        conn.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

/// The type a parameter is declared with: a NULL's kind, or none (OID 0, "infer it").
fn declared(arg: &Arg<'_>) -> Type {
    match arg {
        Arg::Null(Kind::Int) => Type::INT8,
        Arg::Null(Kind::Text) => Type::TEXT,
        Arg::Null(Kind::Blob) => Type::BYTEA,
        _ => Type::new(
            String::new(),
            0,
            postgres::types::Kind::Simple,
            String::new(),
        ),
    }
}

fn bound<'a>(args: &'a [&'a dyn ToArg]) -> Vec<Bound<'a>> {
    args.iter().map(|a| Bound(a.arg())).collect()
}

impl Sql for PgSql<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Pg
    }

    fn batch(&self, what: &str, sql: &str) -> Result<()> {
        self.conn(what)?
            .client
            .batch_execute(sql)
            .map_err(pg_err(what))
    }

    fn exec(&self, what: &str, sql: &str, args: &[&dyn ToArg]) -> Result<u64> {
        let args = bound(args);
        let mut conn = self.conn(what)?;
        let plain: Vec<Arg<'_>> = args.iter().map(|a| a.0).collect();
        let st = self.statement(&mut conn, what, sql, &plain)?;
        let params: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        conn.client.execute(&st, &params).map_err(pg_err(what))
    }

    fn rows(
        &self,
        what: &str,
        sql: &str,
        args: &[&dyn ToArg],
        each: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()> {
        let args = bound(args);
        let mut conn = self.conn(what)?;
        let plain: Vec<Arg<'_>> = args.iter().map(|a| a.0).collect();
        let st = self.statement(&mut conn, what, sql, &plain)?;
        let mut rows = conn
            .client
            .query_raw(&st, args.iter().map(|a| a as &dyn ToSql))
            .map_err(pg_err(what))?;
        while let Some(r) = rows.next().map_err(pg_err(what))? {
            each(&PgRow(&r))?;
        }
        Ok(())
    }
}

/// An argument as PostgreSQL binds it: to the type the statement's parameter has.
#[derive(Debug)]
struct Bound<'a>(Arg<'a>);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Bound<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            Arg::Null(_) => Ok(IsNull::Yes),
            Arg::Int(v) => int_to_sql(v, ty, out),
            Arg::Text(s) if <&str as ToSql>::accepts(ty) => s.to_sql(ty, out),
            Arg::Blob(b) if *ty == Type::BYTEA => b.to_sql(ty, out),
            Arg::Text(_) => Err(format!("text given where the statement takes {ty}").into()),
            Arg::Blob(_) => Err(format!("bytes given where the statement takes {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Every type is let through to `to_sql`, which binds or says why not.
        true
    }

    to_sql_checked!();
}

fn int_to_sql(v: i64, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    let too_big = || -> BoxError { format!("{v} does not fit the statement's {ty}").into() };
    match *ty {
        Type::INT8 => v.to_sql(ty, out),
        Type::INT4 => i32::try_from(v).map_err(|_| too_big())?.to_sql(ty, out),
        Type::INT2 => i16::try_from(v).map_err(|_| too_big())?.to_sql(ty, out),
        Type::BOOL => match v {
            0 => false.to_sql(ty, out),
            1 => true.to_sql(ty, out),
            _ => Err(too_big()),
        },
        _ => Err(format!("an integer given where the statement takes {ty}").into()),
    }
}

/// A row of PostgreSQL's, as the engine-neutral [`Row`].
struct PgRow<'r>(&'r postgres::Row);

impl PgRow<'_> {
    fn column_type(&self, i: usize) -> Result<&Type> {
        self.0
            .columns()
            .get(i)
            .map(postgres::Column::type_)
            .ok_or_else(|| Error::Corrupt(format!("metadata row has no column {i}")))
    }

    fn read<'a, T: postgres::types::FromSql<'a>>(&'a self, i: usize) -> Result<Option<T>> {
        self.0
            .try_get::<_, Option<T>>(i)
            .map_err(|e| Error::Corrupt(format!("metadata column {i} does not read: {e}")))
    }
}

fn wrong(i: usize, want: &str, got: &Type) -> Error {
    let hint = if *got == Type::NUMERIC {
        " (a SUM: write CAST(SUM(..) AS BIGINT))"
    } else {
        ""
    };
    Error::Corrupt(format!(
        "metadata column {i} holds {got} where {want} must be{hint}"
    ))
}

impl Row for PgRow<'_> {
    fn int(&self, i: usize) -> Result<Option<i64>> {
        let ty = self.column_type(i)?;
        match *ty {
            Type::INT8 => self.read::<i64>(i),
            Type::INT4 => Ok(self.read::<i32>(i)?.map(i64::from)),
            Type::INT2 => Ok(self.read::<i16>(i)?.map(i64::from)),
            Type::BOOL => Ok(self.read::<bool>(i)?.map(i64::from)),
            _ => Err(wrong(i, "an integer", ty)),
        }
    }

    fn text(&self, i: usize) -> Result<Option<String>> {
        let ty = self.column_type(i)?;
        match *ty {
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => self.read::<String>(i),
            _ => Err(wrong(i, "text", ty)),
        }
    }

    fn blob(&self, i: usize) -> Result<Option<Vec<u8>>> {
        let ty = self.column_type(i)?;
        match *ty {
            Type::BYTEA => self.read::<Vec<u8>>(i),
            _ => Err(wrong(i, "bytes", ty)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use cairn_testkit::postgres;

    use super::*;
    use crate::meta::schema;
    use crate::meta::sql::args;

    /// A pool of at most `max` on a new database `name` of the shared cluster; `None` when
    /// PostgreSQL is missing outside CI (the test is skipped, loudly).
    fn fresh(name: &str, max: usize) -> Option<Pg> {
        let cluster = postgres::shared(name)?;
        let url = cluster.create_database(name).expect("a test database");
        Some(Pg::connect(PgAddress::parse(&url).expect("address"), max).expect("connect"))
    }

    fn one<T>(pg: &Pg, sql: &str, read: impl Fn(&dyn Row) -> Result<T>) -> T {
        pg.read(|db| db.opt("t", sql, args![], read))
            .expect("query")
            .expect("a row")
    }

    /// The error and its causes, as a person reading a log would see them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    #[test]
    fn placeholders_become_dollars_outside_quotes_and_comments() {
        let cases = [
            ("SELECT ?1", "SELECT $1"),
            ("a=?1 AND b=?12 AND c=?1", "a=$1 AND b=$12 AND c=$1"),
            ("VALUES(?1,?2)", "VALUES($1,$2)"),
            ("SELECT '?1', ?2", "SELECT '?1', $2"),
            ("SELECT 'it''s ?', ?1", "SELECT 'it''s ?', $1"),
            ("SELECT E'\\'?', ?1", "SELECT E'\\'?', $1"),
            (
                "SELECT \"odd?name\" FROM t WHERE x=?3",
                "SELECT \"odd?name\" FROM t WHERE x=$3",
            ),
            ("SELECT 1 -- what? ?1\n, ?2", "SELECT 1 -- what? ?1\n, $2"),
            (
                "SELECT /* ?1 /* ?2 */ ?3 */ ?4",
                "SELECT /* ?1 /* ?2 */ ?3 */ $4",
            ),
            (
                "SELECT $$ ?1 $$, $x$ ?2 $x$, ?3",
                "SELECT $$ ?1 $$, $x$ ?2 $x$, $3",
            ),
            ("SELECT 'é?', ?1", "SELECT 'é?', $1"),
            ("no placeholders", "no placeholders"),
        ];
        for (from, to) in cases {
            assert_eq!(to_dollars(from).as_deref(), Ok(to), "{from}");
        }
        for bad in [
            "SELECT ?",
            "SELECT ?a",
            "SELECT 'open ?1",
            "SELECT /* ?1",
            "x=\"?1",
        ] {
            assert!(to_dollars(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn an_address_is_shown_without_its_password() {
        for url in [
            "postgres://cairn:hunter2@db.example:5433/meta",
            "host=/run/postgresql port=5433 user=cairn password=hunter2 dbname=meta",
        ] {
            let address = PgAddress::parse(url).expect("parses");
            let shown = format!("{address} {address:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(
                shown.contains("cairn@") && shown.contains(":5433/meta"),
                "{shown}"
            );
        }
        let err = PgAddress::parse("postgres://cairn:hunter2@db.example:port/meta")
            .expect_err("a port that is no number");
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        assert!(err.to_string().contains("does not parse"), "{err}");
    }

    #[test]
    fn statements_and_rows_cross_on_postgres() {
        let Some(pg) = fresh("t_statements", 2) else {
            return;
        };
        pg.write("t", |db| {
            crate::meta::sql::tests::statements_and_rows(db);
            Ok(())
        })
        .expect("write");
    }

    #[test]
    fn integers_bind_to_the_type_the_statement_takes() {
        let Some(pg) = fresh("t_binding", 2) else {
            return;
        };
        let small = pg.read(|db| {
            db.opt(
                "t",
                "SELECT CAST(?1 AS INT4) + 1, CAST(?2 AS INT2), CAST(?3 AS BOOLEAN), ?4 IS NULL",
                args![41i64, 7i64, true, None::<String>],
                |r| {
                    Ok((
                        r.get::<i64>(0)?,
                        r.get::<i64>(1)?,
                        r.get::<bool>(2)?,
                        r.get::<bool>(3)?,
                    ))
                },
            )
        });
        assert_eq!(small.expect("binds"), Some((42, 7, true, true)));
        let err = pg
            .read(|db| {
                db.opt("t", "SELECT CAST(?1 AS INT4)", args![1i64 << 40], |r| {
                    r.get::<i64>(0)
                })
            })
            .expect_err("too big for INT4");
        let text = chain(&err);
        assert!(text.contains("does not fit"), "{text}");
        let err = pg
            .read(|db| {
                db.opt("t", "SELECT CAST(?1 AS BOOLEAN)", args![2i64], |r| {
                    r.get::<bool>(0)
                })
            })
            .expect_err("2 is no boolean");
        assert!(chain(&err).contains("does not fit"), "{}", chain(&err));
        // A sum is numeric on PostgreSQL: the error says how to read it.
        let err = pg
            .read(|db| {
                db.opt(
                    "t",
                    "SELECT SUM(x) FROM (SELECT CAST(1 AS BIGINT) AS x) s",
                    args![],
                    |r| r.get::<i64>(0),
                )
            })
            .expect_err("numeric is not an integer");
        assert!(chain(&err).contains("CAST(SUM"), "{}", chain(&err));
        let quoted = one(&pg, "SELECT '?1', 'it''s ?2'", |r| {
            Ok((r.get::<String>(0)?, r.get::<String>(1)?))
        });
        assert_eq!(quoted, ("?1".to_string(), "it's ?2".to_string()));
    }

    #[test]
    fn a_failed_write_leaves_nothing_and_its_connection_serves_on() {
        let Some(pg) = fresh("t_rollback", 1) else {
            return;
        };
        pg.write("t", |db| {
            db.batch("t", "CREATE TABLE u(k TEXT PRIMARY KEY)")
        })
        .expect("table");
        let insert = |db: &dyn Sql, k: &str| db.exec("t", "INSERT INTO u(k) VALUES(?1)", args![k]);
        // The work fails after a change: the change goes.
        let err = pg
            .write("t", |db| {
                insert(db, "a")?;
                Err::<(), _>(Error::Invalid("changed my mind".into()))
            })
            .expect_err("the work's error");
        assert_eq!(err.to_string(), "changed my mind");
        // A statement fails (the key is taken) after a change: the change goes too.
        pg.write("t", |db| insert(db, "b")).expect("b");
        let err = pg
            .write("adding c and b", |db| {
                insert(db, "c")?;
                insert(db, "b")
            })
            .expect_err("b is there");
        assert!(chain(&err).contains("duplicate key"), "{}", chain(&err));
        let keys = pg
            .read(|db| {
                db.all("t", "SELECT k FROM u ORDER BY k", args![], |r| {
                    r.get::<String>(0)
                })
            })
            .expect("keys");
        assert_eq!(keys, ["b"]);
        assert_eq!(pg.open_now(), 1, "the one connection was kept");
    }

    #[test]
    fn the_store_may_be_called_from_async_code() {
        let Some(pg) = fresh("t_async", 1) else {
            return;
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let pg = std::sync::Arc::new(pg);
        let address = pg.address().clone();
        let select = |pg: &Pg| one(pg, "SELECT 1", |r| r.get::<i64>(0));
        let (a, b, c) = (pg.clone(), pg.clone(), pg.clone());
        let on_worker = rt.block_on(async move { tokio::spawn(async move { select(&a) }).await });
        assert_eq!(on_worker.expect("task"), 1);
        let on_blocking = rt.block_on(rt.spawn_blocking(move || select(&b)));
        assert_eq!(on_blocking.expect("task"), 1);
        assert_eq!(rt.block_on(async move { select(&c) }), 1);
        // Opening and dropping a pool there too.
        rt.block_on(async move {
            tokio::spawn(async move {
                let other = Pg::connect(address, 1).expect("connect");
                assert_eq!(select(&other), 1);
            })
            .await
        })
        .expect("task");
        drop(pg);
    }

    #[test]
    fn a_statement_inside_another_s_rows_is_refused() {
        let Some(pg) = fresh("t_nested", 1) else {
            return;
        };
        let err = pg
            .read(|db| {
                db.rows("outer", "SELECT 1 UNION ALL SELECT 2", args![], &mut |_| {
                    db.opt("inner", "SELECT 3", args![], |r| r.get::<i64>(0))?;
                    Ok(())
                })
            })
            .expect_err("one statement at a time");
        assert!(
            chain(&err).contains("one statement at a time"),
            "{}",
            chain(&err)
        );
        // The connection is still good for the next work.
        assert_eq!(one(&pg, "SELECT 5", |r| r.get::<i64>(0)), 5);
    }

    #[test]
    fn the_schema_is_created_and_reopened_on_postgres() {
        let Some(first) = fresh("t_schema", 2) else {
            return;
        };
        let address = first.address().clone();
        drop(first);
        let pg = Pg::open(address.clone(), 2).expect("open creates the schema");
        let tables = one(
            &pg,
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='public'",
            |r| r.get::<i64>(0),
        );
        // Every table of the definition, and the record of versions.
        assert_eq!(tables, schema::TABLES.len() as i64 + 1);
        let versions = one(
            &pg,
            "SELECT COUNT(*), MAX(version) FROM schema_migrations",
            |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?)),
        );
        assert_eq!(
            versions,
            (i64::from(schema::LATEST), i64::from(schema::LATEST))
        );
        drop(pg);
        let again = Pg::open(address, 2).expect("a second open changes nothing");
        let versions = one(&again, "SELECT COUNT(*) FROM schema_migrations", |r| {
            r.get::<i64>(0)
        });
        assert_eq!(versions, i64::from(schema::LATEST));
        // Keys the store hands out, the added columns' defaults, and text in byte order.
        let names = ["b", "B", "a", "é", "a b"];
        again
            .write_relaxed("t", |db| {
                for n in names {
                    let id = db
                        .opt(
                            "t",
                            "INSERT INTO users(name, pw_hash, admin) VALUES(?1, '', 0) RETURNING id",
                            args![n],
                            |r| r.get::<i64>(0),
                        )?
                        .expect("an id");
                    assert!(id > 0);
                }
                Ok(())
            })
            .expect("insert users");
        let sorted = again
            .read(|db| {
                db.all(
                    "t",
                    "SELECT name, used_bytes, quota FROM users WHERE name >= ?1 AND name < ?2 ORDER BY name",
                    args!["A", "\u{10ffff}"],
                    |r| {
                        assert_eq!(r.get::<i64>(1)?, 0);
                        assert_eq!(r.get::<Option<i64>>(2)?, None);
                        r.get::<String>(0)
                    },
                )
            })
            .expect("list");
        assert_eq!(sorted, ["B", "a", "a b", "b", "é"]);
    }

    #[test]
    fn instances_opening_one_database_at_once_upgrade_it_once() {
        let Some(first) = fresh("t_open_race", 1) else {
            return;
        };
        let address = first.address().clone();
        drop(first);
        std::thread::scope(|s| {
            let opens: Vec<_> = (0..3)
                .map(|_| s.spawn(|| Pg::open(address.clone(), 1).map(drop)))
                .collect();
            for o in opens {
                o.join().expect("thread").expect("every instance opens");
            }
        });
        let pg = Pg::connect(address, 1).expect("connect");
        let versions = one(&pg, "SELECT COUNT(*) FROM schema_migrations", |r| {
            r.get::<i64>(0)
        });
        assert_eq!(versions, i64::from(schema::LATEST));
    }

    #[test]
    fn the_pool_never_opens_more_than_its_bound() {
        let Some(pg) = fresh("t_pool", 2) else {
            return;
        };
        pg.write("t", |db| {
            db.batch(
                "t",
                "CREATE TABLE counter(n BIGINT NOT NULL); INSERT INTO counter VALUES(0)",
            )
        })
        .expect("counter");
        let threads = 6;
        let rounds = 10;
        let most = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut most = 0;
                        for _ in 0..rounds {
                            let seen = pg
                                .write("t", |db| {
                                    db.exec("t", "UPDATE counter SET n = n + 1", args![])?;
                                    db.opt(
                                        "t",
                                        "SELECT COUNT(*) FROM pg_stat_activity \
                                         WHERE datname = current_database() \
                                         AND application_name = 'cairn'",
                                        args![],
                                        |r| r.get::<i64>(0),
                                    )
                                })
                                .expect("write")
                                .expect("a count");
                            most = most.max(seen).max(pg.open_now() as i64);
                        }
                        most
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .max()
                .unwrap_or(0)
        });
        assert!(most <= 2, "{most} connections were open at once");
        assert_eq!(
            one(&pg, "SELECT n FROM counter", |r| r.get::<i64>(0)),
            threads * rounds
        );
    }

    #[test]
    fn commits_to_one_folder_queue_on_its_row() {
        let Some(pg) = fresh("t_row_lock", 3) else {
            return;
        };
        let pg = Pg::open(pg.address().clone(), 3).expect("schema");
        let id = pg
            .write("t", |db| {
                db.opt(
                    "t",
                    "INSERT INTO folders(name, keep_versions) VALUES('f', 1) RETURNING id",
                    args![],
                    |r| r.get::<i64>(0),
                )
            })
            .expect("folder")
            .expect("id");
        // Reads the head under the row lock and moves it one on, as a commit does.
        let commit = |db: &dyn Sql| -> Result<i64> {
            let head = db
                .opt(
                    "commit",
                    "SELECT head_seq FROM folders WHERE id=?1 FOR UPDATE",
                    args![id],
                    |r| r.get::<i64>(0),
                )?
                .expect("the folder");
            db.exec(
                "commit",
                "UPDATE folders SET head_seq=?1 WHERE id=?2",
                args![head + 1, id],
            )?;
            Ok(head)
        };
        let (locked, holding) = mpsc::channel();
        let (go, proceed) = mpsc::channel::<()>();
        let (pg, commit) = (&pg, &commit);
        std::thread::scope(|s| {
            let first = s.spawn(move || {
                pg.write("first", |db| {
                    let head = commit(db)?;
                    locked.send(()).expect("the test waits");
                    proceed.recv().expect("the test says go");
                    Ok(head)
                })
            });
            holding.recv().expect("the first holds the row");
            let second = s.spawn(|| pg.write("second", |db| commit(db)));
            // Until the second is seen waiting for the lock (or finished: then it did not
            // wait, and the assertions below fail).
            while !second.is_finished() {
                let waiting = one(
                    pg,
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock'",
                    |r| r.get::<i64>(0),
                );
                if waiting > 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            go.send(()).expect("the first waits");
            assert_eq!(first.join().expect("first").expect("commit"), 0);
            assert_eq!(
                second.join().expect("second").expect("commit"),
                1,
                "the second must see the first's head"
            );
        });
        let head = one(pg, "SELECT head_seq FROM folders", |r| r.get::<i64>(0));
        assert_eq!(head, 2);
    }

    #[test]
    fn a_listener_hears_notifications_and_resyncs_after_a_restart() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        if postgres::bin_dir_or_skip("a_listener_hears_notifications_and_resyncs_after_a_restart")
            .is_none()
        {
            return;
        }
        // A cluster of its own: the restart would cut the other tests' connections.
        let cluster = postgres::Postgres::start().expect("cluster");
        let url = cluster.create_database("t_listen").expect("database");
        let pg = Pg::connect(PgAddress::parse(&url).expect("address"), 2).expect("connect");
        let (heard, got) = mpsc::channel::<String>();
        let resyncs = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let counted = resyncs.clone();
        let thread = pg
            .listen(
                "t_heads",
                Box::new(move |p| {
                    let _ = heard.send(p.to_string());
                }),
                Box::new(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                }),
                stop.clone(),
            )
            .expect("thread");
        let wait_for = |n: usize| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while resyncs.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "no resync {n}");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_for(1);
        pg.notify("t_heads", "7:42").expect("notify");
        let first = got.recv_timeout(Duration::from_secs(30)).expect("heard");
        assert_eq!(first, "7:42");
        cluster.restart().expect("restart");
        wait_for(2);
        pg.notify("t_heads", "7:43")
            .expect("notify after the restart");
        let second = got
            .recv_timeout(Duration::from_secs(30))
            .expect("heard again");
        assert_eq!(second, "7:43");
        stop.store(true, Ordering::SeqCst);
        thread.join().expect("the listener stops");
    }

    #[test]
    fn a_connection_broken_by_a_server_restart_is_replaced() {
        if postgres::bin_dir_or_skip("a_connection_broken_by_a_server_restart_is_replaced")
            .is_none()
        {
            return;
        }
        // A cluster of its own: the restart would cut the other tests' connections.
        let cluster = postgres::Postgres::start().expect("cluster");
        let url = cluster.create_database("t_restart").expect("database");
        let pg = Pg::connect(PgAddress::parse(&url).expect("address"), 2).expect("connect");
        let pid = |pg: &Pg| one(pg, "SELECT pg_backend_pid()", |r| r.get::<i64>(0));
        let before = pid(&pg);
        assert_eq!(pid(&pg), before, "the idle connection is reused");
        cluster.restart().expect("restart");
        let after = pid(&pg);
        assert_ne!(after, before, "a new connection after the restart");
        assert_eq!(pg.open_now(), 1, "the broken one is gone");
        // Writes work on it too.
        pg.write("t", |db| {
            db.batch("t", "CREATE TABLE after_restart(x BIGINT)")
        })
        .expect("write after restart");
    }

    #[test]
    fn an_advisory_lock_is_held_by_one_session_until_it_ends() {
        let Some(pg) = fresh("t_advisory", 2) else {
            return;
        };
        let held = pg.advisory_lock(7).expect("lock").expect("free");
        assert!(
            pg.advisory_lock(7).expect("try").is_none(),
            "held by the first"
        );
        assert!(
            pg.advisory_lock(8).expect("try").is_some(),
            "another key is free"
        );
        drop(held);
        // The server frees it when the session ends, a moment after the client closes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pg.advisory_lock(7).expect("try").is_none() {
            assert!(Instant::now() < deadline, "never freed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_wrong_password_says_so_without_the_password() {
        let Some(cluster) = postgres::shared("a_wrong_password_says_so_without_the_password")
        else {
            return;
        };
        let secret = "not-the-password-9f8e7d";
        let url = cluster.tcp_url("postgres", secret);
        let address = PgAddress::parse(&url).expect("address");
        assert!(!format!("{address} {address:?}").contains(secret));
        let err = Pg::connect(address, 1).expect_err("a wrong password");
        let said = format!("{} | {err:?}", chain(&err));
        assert!(said.contains("password authentication failed"), "{said}");
        assert!(
            said.contains("127.0.0.1"),
            "the error names the server: {said}"
        );
        assert!(!said.contains(secret), "the password leaked: {said}");
        let right = cluster.tcp_url("postgres", cluster.password());
        let pg = Pg::connect(PgAddress::parse(&right).expect("address"), 1)
            .expect("the right password over TCP");
        assert_eq!(one(&pg, "SELECT 1", |r| r.get::<i64>(0)), 1);
        assert!(!format!("{pg:?}").contains(cluster.password()));
    }

    /// Unmounts a test's tmpfs when dropped.
    struct Unmount(std::path::PathBuf);

    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }

    #[test]
    fn a_full_disk_under_postgres_is_storage_full() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let Some(cluster) = postgres::shared("a_full_disk_under_postgres_is_storage_full") else {
            return;
        };
        let url = cluster.create_database("t_full").expect("database");
        let pg = Pg::connect(PgAddress::parse(&url).expect("address"), 1).expect("connect");
        // A 1 MiB tmpfs the server's user owns, as a tablespace.
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let owner = std::fs::metadata(cluster.socket_dir()).expect("cluster folder");
        let mount = dir.path().join("tiny");
        std::fs::create_dir(&mount).expect("mkdir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!(
                "size=1m,mode=0700,uid={},gid={}",
                owner.uid(),
                owner.gid()
            ))
            .arg("tmpfs")
            .arg(&mount)
            .status()
            .expect("mount");
        assert!(
            mounted.success(),
            "this test needs root to mount a small tmpfs"
        );
        let _unmount = Unmount(mount.clone());
        cluster
            .psql(
                "t_full",
                &format!("CREATE TABLESPACE tiny_full LOCATION '{}'", mount.display()),
            )
            .expect("tablespace");
        pg.write("t", |db| {
            db.batch("t", "CREATE TABLE big(b BYTEA) TABLESPACE tiny_full")
        })
        .expect("table");
        // 4 MiB that do not compress.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let err = pg
            .write("filling the tablespace", |db| {
                db.exec("fill", "INSERT INTO big(b) VALUES(?1)", args![noise])
            })
            .expect_err("1 MiB cannot hold 4");
        assert!(err.is_storage_full(), "{}", chain(&err));
        assert!(err.to_string().contains("fill"), "{err}");
        pg.write("t", |db| db.batch("t", "DROP TABLE big"))
            .expect("drop");
        cluster
            .psql("postgres", "DROP TABLESPACE tiny_full")
            .expect("drop tablespace");
    }
}
