//! The server's activity log: an append-only table of who did what from where (logins and
//! log-outs, administration, sharing links, cloud tasks, server starts), read newest first by
//! the administration page, `/api/v1/admin/events` and `cairn server log`.
//!
//! Callers record through [`Meta::record`] (best effort: a log that cannot be written
//! never fails the action it describes) with an [`Actor`] and an [`EventKind`]; nothing that
//! records passes a secret in (passwords, tokens, a link's token: a link is named by its id).
//!
//! Bound: a stranger can make the server write rows (failed logins, link visits), so the table
//! keeps at most [`Bounds::max_rows`] rows, checked as rows are added (every
//! [`Bounds::prune_every`]th insert deletes by id range, which costs one indexed delete), and
//! drops rows older than [`Bounds::max_age`] when maintenance runs and when the server starts.
//! Ids are dense (SQLite's next rowid is the largest plus one and only the oldest rows are
//! deleted), so "the newest N" is "id greater than the largest minus N". No secondary index:
//! reads scan newest first by rowid and stop at their page, which keeps each insert cheap;
//! a filter that matches rarely scans at most the bounded table.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::sql::args;
use super::{now_ns, Meta};
use crate::{Error, Result};

/// Most events one read returns.
pub const MAX_PAGE: u32 = 1000;
/// Characters of a target or detail kept (a name a stranger typed, a shared file's path).
const MAX_TEXT: usize = 200;

/// How much of the log is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub max_rows: i64,
    pub max_age: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        let max_rows = test_cap().unwrap_or(100_000).max(1);
        Bounds {
            max_rows,
            max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl Bounds {
    /// Every this many inserts, the oldest rows over `max_rows` go: the table never holds
    /// more than `max_rows + prune_every - 1` rows.
    pub fn prune_every(&self) -> i64 {
        (self.max_rows / 100).max(1)
    }
}

/// Test hook (`CAIRN_TEST_MAX_EVENTS`): a small cap, so a test can see the bound hold.
#[cfg(feature = "test-hooks")]
fn test_cap() -> Option<i64> {
    std::env::var("CAIRN_TEST_MAX_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
}

#[cfg(not(feature = "test-hooks"))]
fn test_cap() -> Option<i64> {
    None
}

/// What happened. The text form (`login.failed`) is what is stored and filtered on; a
/// filter may also name a group (`login`, `user`, `folder`, `share`, `cloud`, `server`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    ServerStart,
    LoginOk,
    LoginFailed,
    /// Login attempts from an address refused before any password work (429), at most one
    /// event per address a minute.
    LoginThrottled,
    Logout,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserPassword,
    UserAdmin,
    UserQuota,
    UserDeleted,
    FolderCreated,
    FolderRetention,
    FolderGrant,
    FolderDeleted,
    ShareCreated,
    ShareRevoked,
    ShareAccessed,
    ShareUpload,
    ShareThrottled,
    CloudTaskAdded,
    CloudTaskRemoved,
}

impl EventKind {
    pub const ALL: [EventKind; 23] = [
        EventKind::ServerStart,
        EventKind::LoginOk,
        EventKind::LoginFailed,
        EventKind::LoginThrottled,
        EventKind::Logout,
        EventKind::UserCreated,
        EventKind::UserDisabled,
        EventKind::UserEnabled,
        EventKind::UserPassword,
        EventKind::UserAdmin,
        EventKind::UserQuota,
        EventKind::UserDeleted,
        EventKind::FolderCreated,
        EventKind::FolderRetention,
        EventKind::FolderGrant,
        EventKind::FolderDeleted,
        EventKind::ShareCreated,
        EventKind::ShareRevoked,
        EventKind::ShareAccessed,
        EventKind::ShareUpload,
        EventKind::ShareThrottled,
        EventKind::CloudTaskAdded,
        EventKind::CloudTaskRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ServerStart => "server.start",
            EventKind::LoginOk => "login.ok",
            EventKind::LoginFailed => "login.failed",
            EventKind::LoginThrottled => "login.throttled",
            EventKind::Logout => "logout",
            EventKind::UserCreated => "user.created",
            EventKind::UserDisabled => "user.disabled",
            EventKind::UserEnabled => "user.enabled",
            EventKind::UserPassword => "user.password",
            EventKind::UserAdmin => "user.admin",
            EventKind::UserQuota => "user.quota",
            EventKind::UserDeleted => "user.deleted",
            EventKind::FolderCreated => "folder.created",
            EventKind::FolderRetention => "folder.retention",
            EventKind::FolderGrant => "folder.grant",
            EventKind::FolderDeleted => "folder.deleted",
            EventKind::ShareCreated => "share.created",
            EventKind::ShareRevoked => "share.revoked",
            EventKind::ShareAccessed => "share.accessed",
            EventKind::ShareUpload => "share.upload",
            EventKind::ShareThrottled => "share.throttled",
            EventKind::CloudTaskAdded => "cloud.task-added",
            EventKind::CloudTaskRemoved => "cloud.task-removed",
        }
    }

    /// The groups a filter may name besides the kinds themselves.
    pub fn groups() -> Vec<&'static str> {
        let mut g: Vec<&str> = Self::ALL
            .iter()
            .filter_map(|k| k.as_str().split_once('.').map(|(g, _)| g))
            .collect();
        g.dedup();
        g
    }
}

/// Whether the recorded action succeeded (`ok`) or was refused (`failed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
        }
    }
}

/// Who did something and from where: a user (or nobody known: a link's visitor, a failed
/// login for an unknown name, the server's own console) and a source address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub user: Option<String>,
    pub source: String,
}

impl Actor {
    /// `cairn server ... --data DIR` on the server itself.
    pub fn console() -> Actor {
        Actor {
            user: None,
            source: "console".into(),
        }
    }

    pub fn user(name: &str, from: IpAddr) -> Actor {
        Actor {
            user: Some(name.to_string()),
            source: from.to_string(),
        }
    }

    pub fn visitor(from: IpAddr) -> Actor {
        Actor {
            user: None,
            source: from.to_string(),
        }
    }

    /// The user's name, if a user acts.
    pub fn name(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// One recorded event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub at_ns: i64,
    pub kind: String,
    pub actor: Option<String>,
    pub target: String,
    pub source: String,
    pub outcome: String,
    pub detail: String,
}

/// Which events a read returns: newest first, older than `before` (an event id), of a kind
/// or group, by or about a user (as actor or target). Read from a URL query, where an empty
/// value means "any".
#[derive(Clone, Debug, Default, Deserialize)]
pub struct EventFilter {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "blank_is_none")]
    pub before: Option<i64>,
    #[serde(default, deserialize_with = "blank_is_none")]
    pub limit: Option<u32>,
}

/// A number from a query, where `before=` (empty) means no number.
fn blank_is_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text: Option<String> = Option::deserialize(d)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// One page of events, and the `before` that reads the next (older) page, if there is one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub next_before: Option<i64>,
}

impl EventFilter {
    /// The filter with its kind checked and blanks as "any".
    ///
    /// # Errors
    /// A kind that is neither an event kind nor a group, or a limit of 0.
    pub fn checked(mut self) -> Result<EventFilter> {
        self.kind = self.kind.filter(|k| !k.trim().is_empty());
        self.user = self.user.filter(|u| !u.trim().is_empty());
        if let Some(k) = &self.kind {
            let known = EventKind::ALL.iter().any(|e| e.as_str() == k)
                || EventKind::groups().contains(&k.as_str());
            if !known {
                let mut all: Vec<&str> = EventKind::groups();
                all.extend(EventKind::ALL.iter().map(|e| e.as_str()));
                return Err(Error::Invalid(format!(
                    "unknown event kind {k:?}: use one of {}",
                    all.join(", ")
                )));
            }
        }
        if self.limit == Some(0) {
            return Err(Error::Invalid("a limit is at least 1".into()));
        }
        Ok(self)
    }
}

/// `text` cut at [`MAX_TEXT`] characters, with control characters replaced.
fn clip(text: &str) -> String {
    text.chars()
        .take(MAX_TEXT)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Meta {
    /// Records an event, best effort: a failure (a full disk) is logged, never returned, so
    /// the action the event describes goes ahead.
    pub fn record(
        &self,
        kind: EventKind,
        by: &Actor,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) {
        if let Err(e) = self.try_record(kind, by, target, outcome, detail) {
            tracing::warn!(kind = kind.as_str(), error = %e, "could not record an event");
        }
    }

    /// Records an event, and every [`Bounds::prune_every`]th time drops the oldest rows
    /// beyond [`Bounds::max_rows`].
    ///
    /// # Errors
    /// The store.
    pub fn try_record(
        &self,
        kind: EventKind,
        by: &Actor,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) -> Result<()> {
        let ctx = "recording an event";
        let bounds = self.event_bounds;
        self.write(ctx, |db| {
            let id: i64 = db
                .opt(
                    ctx,
                    "INSERT INTO events(at_ns, kind, actor, target, source, outcome, detail)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                    args![
                        now_ns(),
                        kind.as_str(),
                        by.user.as_deref().map(clip),
                        clip(target),
                        clip(&by.source),
                        outcome.as_str(),
                        clip(detail)
                    ],
                    |r| r.get(0),
                )?
                .ok_or_else(|| Error::Corrupt("a new event got no id".into()))?;
            if id % bounds.prune_every() == 0 {
                db.exec(
                    ctx,
                    "DELETE FROM events WHERE id <= ?1",
                    args![id - bounds.max_rows],
                )?;
            }
            Ok(())
        })
    }

    /// Drops events beyond the bounds: older than `max_age`, or not among the newest
    /// `max_rows`. Returns how many went.
    ///
    /// # Errors
    /// The store.
    pub fn prune_events(&self) -> Result<u64> {
        let ctx = "pruning the activity log";
        let bounds = self.event_bounds;
        let cutoff =
            now_ns().saturating_sub(bounds.max_age.as_nanos().min(i64::MAX as u128) as i64);
        self.write(ctx, |db| {
            let old = db.exec(ctx, "DELETE FROM events WHERE at_ns < ?1", args![cutoff])?;
            let over = db.exec(
                ctx,
                "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
                args![bounds.max_rows],
            )?;
            Ok(old + over)
        })
    }

    /// Events matching `filter` (see [`EventFilter::checked`]), newest first.
    ///
    /// # Errors
    /// A bad filter, or the store.
    pub fn events(&self, filter: EventFilter) -> Result<EventPage> {
        let f = filter.checked()?;
        let limit = f.limit.unwrap_or(100).min(MAX_PAGE);
        // A kind names itself or its family (`login` is `login.*`): a byte range, as LIKE's
        // case and wildcard rules differ between the engines (`/` follows `.`).
        let mut events = self.read(|db| {
            db.all(
                "reading the activity log",
                "SELECT id, at_ns, kind, actor, target, source, outcome, detail FROM events
             WHERE (CAST(?1 AS TEXT) IS NULL OR kind=?1 OR (kind > ?1 || '.' AND kind < ?1 || '/'))
             AND (CAST(?2 AS TEXT) IS NULL OR actor=?2 OR target=?2)
             AND (CAST(?3 AS BIGINT) IS NULL OR id < ?3)
             ORDER BY id DESC LIMIT ?4",
                args![f.kind, f.user, f.before, i64::from(limit) + 1],
                |r| {
                    Ok(Event {
                        id: r.get(0)?,
                        at_ns: r.get(1)?,
                        kind: r.get(2)?,
                        actor: r.get(3)?,
                        target: r.get(4)?,
                        source: r.get(5)?,
                        outcome: r.get(6)?,
                        detail: r.get(7)?,
                    })
                },
            )
        })?;
        // One row more than the page says whether an older page exists.
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let next_before = more.then(|| events.last().map(|e| e.id)).flatten();
        Ok(EventPage {
            events,
            next_before,
        })
    }

    /// Rows in the activity log.
    ///
    /// # Errors
    /// The store.
    pub fn event_count(&self) -> Result<i64> {
        let n = self.read(|db| {
            db.opt(
                "counting events",
                "SELECT COUNT(*) FROM events",
                args![],
                |r| r.get(0),
            )
        })?;
        Ok(n.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str, bounds: Bounds) -> Meta {
        let dir = std::env::temp_dir().join(format!(
            "cairn-meta-events-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut meta = Meta::open(&dir.join("meta.sqlite")).expect("open");
        meta.event_bounds = bounds;
        meta
    }

    fn bob() -> Actor {
        Actor::user("bob", IpAddr::from([192, 0, 2, 7]))
    }

    #[test]
    fn the_newest_rows_stay_within_the_bound_as_rows_are_added() {
        let bounds = Bounds {
            max_rows: 200,
            max_age: Duration::from_secs(3600),
        };
        let meta = store("cap", bounds);
        for i in 0..1000 {
            meta.try_record(
                EventKind::LoginFailed,
                &Actor::visitor(IpAddr::from([192, 0, 2, 1])),
                &format!("stranger-{i}"),
                Outcome::Failed,
                "unknown user",
            )
            .expect("record");
            let n = meta.event_count().expect("count");
            assert!(n < bounds.max_rows + bounds.prune_every(), "{n} rows");
        }
        let page = meta
            .events(EventFilter {
                limit: Some(1),
                ..EventFilter::default()
            })
            .expect("read");
        assert_eq!(page.events[0].target, "stranger-999", "the newest is kept");
        assert_eq!(
            meta.prune_events().expect("prune"),
            0,
            "nothing past the cap"
        );
    }

    #[test]
    fn maintenance_drops_rows_past_the_age_and_the_count() {
        let meta = store(
            "age",
            Bounds {
                max_rows: 1000,
                max_age: Duration::from_secs(3600),
            },
        );
        for i in 0..5 {
            meta.try_record(
                EventKind::UserCreated,
                &bob(),
                &format!("u{i}"),
                Outcome::Ok,
                "",
            )
            .expect("record");
        }
        let old = now_ns() - 2 * 3600 * 1_000_000_000;
        meta.write("ageing events", |db| {
            db.exec(
                "ageing events",
                "UPDATE events SET at_ns=?1 WHERE id <= 2",
                args![old],
            )
        })
        .expect("age two rows");
        assert_eq!(meta.prune_events().expect("prune"), 2);
        assert_eq!(meta.event_count().expect("count"), 3);
    }

    #[test]
    fn filters_page_newest_first_by_kind_group_and_user() {
        let meta = store("filter", Bounds::default());
        let visitor = Actor::visitor(IpAddr::from([192, 0, 2, 9]));
        meta.try_record(
            EventKind::LoginFailed,
            &visitor,
            "bob",
            Outcome::Failed,
            "wrong password",
        )
        .expect("record");
        meta.try_record(EventKind::LoginOk, &bob(), "bob", Outcome::Ok, "")
            .expect("record");
        meta.try_record(EventKind::UserCreated, &bob(), "carol", Outcome::Ok, "")
            .expect("record");
        let read = |kind: Option<&str>, user: Option<&str>, before: Option<i64>| {
            meta.events(EventFilter {
                kind: kind.map(String::from),
                user: user.map(String::from),
                before,
                limit: Some(2),
            })
            .expect("read")
        };
        let logins = read(Some("login"), None, None);
        let kinds: Vec<&str> = logins.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["login.ok", "login.failed"]);
        assert_eq!(logins.next_before, None);
        let first = read(None, None, None);
        assert_eq!(first.events.len(), 2);
        let rest = read(None, None, first.next_before);
        assert_eq!(rest.events.len(), 1);
        assert_eq!(rest.events[0].kind, "login.failed");
        assert_eq!(read(None, Some("carol"), None).events.len(), 1);
        assert_eq!(read(Some("user.created"), None, None).events.len(), 1);
        let bad = meta.events(EventFilter {
            kind: Some("logins".into()),
            ..EventFilter::default()
        });
        assert!(matches!(bad, Err(Error::Invalid(m)) if m.contains("login.failed")));
    }

    #[test]
    fn long_or_odd_text_is_clipped_and_control_characters_replaced() {
        assert_eq!(clip("a\nb"), "a?b");
        assert_eq!(clip(&"x".repeat(5000)).len(), MAX_TEXT);
    }
}
