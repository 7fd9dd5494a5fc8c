//! `cairn server log`: the server's activity log (logins, administration, sharing links,
//! cloud tasks, starts), newest first; on the server itself with `--data DIR` or from anywhere
//! with an administrator's `--connection NAME` (through `/api/v1/admin/events`).

use anyhow::Result;
use cairn_server::admin;
use cairn_server::meta::{Event, EventFilter, EventPage};
use clap::Args;

use crate::server_admin::{Admin, AdminTarget};

#[derive(Args)]
pub struct LogArgs {
    /// Only events of this kind (`login.failed`) or group (`login`, `user`, `folder`,
    /// `share`, `cloud`, `server`).
    #[arg(long)]
    kind: Option<String>,
    /// Only events by or about this user.
    #[arg(long)]
    user: Option<String>,
    /// Only events older than this event id (the id a previous page ended at).
    #[arg(long)]
    before: Option<i64>,
    /// Most events shown.
    #[arg(long, default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(cairn_server::meta::MAX_EVENTS_PAGE)))]
    limit: u32,
    /// As JSON (fields in docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: AdminTarget,
}

impl Admin {
    async fn events(&self, f: EventFilter) -> Result<EventPage> {
        match self {
            Admin::Local(d) => Ok(admin::events(&d.meta, f)?),
            Admin::Remote(c) => {
                let mut query: Vec<(&str, String)> = Vec::new();
                if let Some(k) = f.kind {
                    query.push(("kind", k));
                }
                if let Some(u) = f.user {
                    query.push(("user", u));
                }
                if let Some(b) = f.before {
                    query.push(("before", b.to_string()));
                }
                if let Some(l) = f.limit {
                    query.push(("limit", l.to_string()));
                }
                Ok(c.admin_get("/api/v1/admin/events", &query).await?)
            }
        }
    }
}

/// One event as a line of tab-separated fields: time, kind, outcome, who, on what, from
/// where, detail.
fn line(e: &Event) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        cairn_model::timespec::format_instant(e.at_ns),
        e.kind,
        e.outcome,
        e.actor.as_deref().unwrap_or("-"),
        if e.target.is_empty() { "-" } else { &e.target },
        if e.source.is_empty() { "-" } else { &e.source },
        e.detail
    )
}

pub async fn run(a: LogArgs) -> Result<()> {
    let filter = EventFilter {
        kind: a.kind,
        user: a.user,
        before: a.before,
        limit: Some(a.limit),
    };
    let page = Admin::open(&a.target)?.events(filter).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    for e in &page.events {
        println!("{}", line(e));
    }
    if let Some(before) = page.next_before {
        eprintln!("older events: add --before {before}");
    }
    Ok(())
}
