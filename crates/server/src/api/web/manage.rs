//! Administration in the web UI, for administrators only: users (create, disable and
//! enable, administrator or not, quota, new password, delete) and folders (create, versions
//! kept, who may read or write, delete). Deleting asks for the name typed again. It also
//! shows the space each folder takes, every user's cloud tasks, the latest file changes and
//! the server's activity log (newest first, a page at a time, filtered by kind or user). The
//! same rules as the admin API and `cairn server user|folder|log` (`crate::admin`); every
//! form carries the CSRF token, and every change is recorded with the administrator's address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::super::shares::{esc, page, query_escape, see_other};
use super::super::{blocking, AppState, Caller, ClientAddr};
use super::{app_page, csrf_of, csrf_ok, session};
use cairn_protocol::VersionInfo;

use crate::admin::{self, FolderAdminInfo, GrantChange, NewFolder, NewUser, UserChange, UserInfo};
use crate::meta::{Actor, CloudTaskRow, EventFilter, EventKind, EventPage, FolderUsage};

/// The administrator of a form, as the activity log records them; or the page to answer.
async fn acting(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    csrf: &str,
    peer: SocketAddr,
) -> Result<Actor, Response> {
    let caller = administrator(state, headers).await?;
    if !csrf_ok(headers, csrf) {
        return Err(stale());
    }
    Ok(Actor::user(&caller.user.name, peer.ip()))
}

/// The session's user if they are an administrator, or the page to answer instead.
async fn administrator(state: &Arc<AppState>, headers: &HeaderMap) -> Result<Caller, Response> {
    let caller = session(state, headers).await?;
    if !caller.user.admin {
        return Err(page(
            StatusCode::FORBIDDEN,
            "Administrators only",
            "<p>This page is for the server's administrators.</p>",
        ));
    }
    Ok(caller)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn hidden(csrf: &str, op: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"op\" value=\"{op}\">")
}

fn user_row(u: &UserInfo, csrf: &str) -> String {
    let action = format!("/ui/admin/users/{}", query_escape(&u.name));
    let button = |op: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"{}\" class=\"inline\">{}<button type=\"submit\">{label}</button></form> ",
            esc(&action),
            hidden(csrf, op)
        )
    };
    let state = if u.disabled { "disabled" } else { "active" };
    let role = if u.admin { "administrator" } else { "user" };
    let quota = u.quota.map(bytes).unwrap_or_else(|| "no limit".into());
    format!(
        "<tr><td>{name}<br><span class=\"muted\">{role}, {state}</span></td><td>{used} of {quota}</td><td>{toggle}{promote}\
         <form method=\"post\" action=\"{a}\" class=\"inline\">{q}<label>Quota (MiB, empty: none) <input name=\"quota_mib\" size=\"6\" inputmode=\"numeric\"></label> <button type=\"submit\">Set</button></form> \
         <form method=\"post\" action=\"{a}\" class=\"inline\">{p}<label>New password <input type=\"password\" name=\"password\" autocomplete=\"new-password\" size=\"10\"></label> <button type=\"submit\">Set</button></form> \
         <form method=\"post\" action=\"{a}\" class=\"inline\">{d}<label>Type the name to delete <input name=\"confirm\" size=\"8\" autocomplete=\"off\"></label> <button type=\"submit\" class=\"danger\">Delete user</button></form></td></tr>",
        name = esc(&u.name),
        used = bytes(u.used_bytes),
        toggle = if u.disabled { button("enable", "Enable") } else { button("disable", "Disable") },
        promote = if u.admin { button("user", "Make user") } else { button("admin", "Make administrator") },
        a = esc(&action),
        q = hidden(csrf, "quota"),
        p = hidden(csrf, "password"),
        d = hidden(csrf, "delete"),
    )
}

fn folder_row(f: &FolderAdminInfo, usage: &FolderUsage, csrf: &str) -> String {
    let action = esc(&format!("/ui/admin/folders/{}", query_escape(&f.name)));
    let grants: String = f
        .grants
        .iter()
        .map(|(u, a)| {
            format!(
                "{} ({})",
                esc(u),
                if a == "rw" { "read-write" } else { "read-only" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "<tr><td>{name}<br><span class=\"muted\">{versions} versions kept<br>{files} files, {bytes}; {all} with history</span></td><td>{grants}</td><td>\
         <form method=\"post\" action=\"{action}\" class=\"inline\">{k}<label>Versions kept <input name=\"keep_versions\" size=\"4\" inputmode=\"numeric\" required></label> <button type=\"submit\">Set</button></form> \
         <form method=\"post\" action=\"{action}\" class=\"inline\">{g}<label>User <input name=\"user\" size=\"8\" required></label> <select name=\"access\" aria-label=\"Access\"><option value=\"rw\">read-write</option><option value=\"ro\">read-only</option><option value=\"none\">no access</option></select> <button type=\"submit\">Grant</button></form> \
         <form method=\"post\" action=\"{action}\" class=\"inline\">{d}<label>Type the name to delete it and all its versions <input name=\"confirm\" size=\"8\" autocomplete=\"off\"></label> <button type=\"submit\" class=\"danger\">Delete folder</button></form></td></tr>",
        name = esc(&f.name),
        versions = f.keep_versions,
        files = usage.files,
        bytes = bytes(usage.bytes),
        all = bytes(usage.version_bytes),
        grants = if grants.is_empty() { "<span class=\"muted\">nobody</span>".to_string() } else { grants },
        k = hidden(csrf, "keep"),
        g = hidden(csrf, "grant"),
        d = hidden(csrf, "delete"),
    )
}

/// Changes shown under "Recent file changes".
const ACTIVITY: u32 = 100;
/// Events per page of the activity log.
const EVENTS_PAGE: u32 = 50;

/// What the overview shows besides users and folders.
struct Extra {
    tasks: Vec<CloudTaskRow>,
    activity: Vec<(String, VersionInfo)>,
    usage: Vec<FolderUsage>,
    /// The activity log's page, or why the filter was refused.
    events: Result<EventPage, String>,
}

/// Every user's cloud tasks with the outcome of their last pass (never a secret).
fn tasks_table(tasks: &[CloudTaskRow]) -> String {
    if tasks.is_empty() {
        return "<p class=\"muted\">No cloud tasks.</p>".into();
    }
    let rows: String = tasks
        .iter()
        .map(|t| {
            let last = match t.status.last_ns {
                Some(ns) => format!(
                    "{} at {}",
                    if t.status.outcome.is_empty() { "ran" } else { &t.status.outcome },
                    cairn_model::timespec::format_instant(ns)
                ),
                None => "never ran".into(),
            };
            let error = t.status.error.as_deref().map(|e| format!("<br><span role=\"alert\">{}</span>", esc(e))).unwrap_or_default();
            format!(
                "<tr><td>{}<br><span class=\"muted\">of {}</span></td><td>{} {} {}:{}</td><td>{}{error}</td></tr>",
                esc(&t.name),
                esc(&t.owner),
                esc(&t.folder),
                esc(direction_arrow(&t.settings.direction)),
                esc(&t.connection),
                esc(&t.settings.remote),
                esc(&last)
            )
        })
        .collect();
    format!(
        "<table><tr><th>Task</th><th>Folder and cloud</th><th>Last pass</th></tr>{rows}</table>"
    )
}

fn direction_arrow(direction: &str) -> &'static str {
    match direction {
        "upload-only" => "→",
        "download-only" => "←",
        _ => "⇄",
    }
}

/// The latest changes across every folder: when, who, from which computer, what.
fn activity_table(activity: &[(String, VersionInfo)]) -> String {
    if activity.is_empty() {
        return "<p class=\"muted\">Nothing yet.</p>".into();
    }
    let rows: String = activity
        .iter()
        .map(|(folder, v)| {
            let what = match v.entry.kind {
                cairn_model::EntryKind::Deleted => "deleted".to_string(),
                cairn_model::EntryKind::Dir => "folder".to_string(),
                _ => bytes(v.entry.size),
            };
            format!(
                "<tr><td class=\"muted\">{}</td><td>{}/{}</td><td>{what}</td><td class=\"muted\">{} · {}</td></tr>",
                cairn_model::timespec::format_instant(v.committed_ns),
                esc(folder),
                esc(v.path.as_str()),
                esc(&v.user),
                esc(&v.computer)
            )
        })
        .collect();
    format!("<table>{rows}</table>")
}

/// The activity log section: a filter form, a page of events, a link to older ones.
fn events_section(filter: &EventFilter, events: &Result<EventPage, String>) -> String {
    let kind = filter.kind.as_deref().unwrap_or("");
    let user = filter.user.as_deref().unwrap_or("");
    let mut options = String::from("<option value=\"\">every kind</option>");
    let groups = EventKind::groups();
    let kinds = EventKind::ALL.iter().map(|k| k.as_str());
    for k in groups.iter().copied().chain(kinds) {
        let label = if groups.contains(&k) {
            format!("{k} (all)")
        } else {
            k.to_string()
        };
        let selected = if k == kind { " selected" } else { "" };
        options.push_str(&format!(
            "<option value=\"{}\"{selected}>{}</option>",
            esc(k),
            esc(&label)
        ));
    }
    let form = format!(
        "<form method=\"get\" action=\"/ui/admin#activity\"><label>Kind <select name=\"kind\">{options}</select></label> <label>User <input name=\"user\" value=\"{}\" size=\"10\"></label> <button type=\"submit\">Show</button></form>",
        esc(user)
    );
    let page = match events {
        Ok(p) => p,
        Err(why) => return format!("{form}<p role=\"alert\">{}</p>", esc(why)),
    };
    if page.events.is_empty() {
        return format!("{form}<p class=\"muted\">No events.</p>");
    }
    let rows: String = page
        .events
        .iter()
        .map(|e| {
            let outcome = if e.outcome == "ok" {
                String::new()
            } else {
                format!("<strong>{}</strong> ", esc(&e.outcome))
            };
            format!(
                "<tr><td class=\"muted\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{outcome}{}</td><td class=\"muted hide-narrow\">{}</td></tr>",
                cairn_model::timespec::format_instant(e.at_ns),
                esc(&e.kind),
                e.actor.as_deref().map(esc).unwrap_or_else(|| "<span class=\"muted\">-</span>".into()),
                esc(&e.target),
                esc(&e.detail),
                esc(&e.source)
            )
        })
        .collect();
    let older = match page.next_before {
        Some(before) => format!(
            "<p><a href=\"/ui/admin?kind={}&amp;user={}&amp;before={before}#activity\">Older events</a></p>",
            query_escape(kind),
            query_escape(user)
        ),
        None => String::new(),
    };
    let newest = if filter.before.is_some() {
        format!(
            "<p><a href=\"/ui/admin?kind={}&amp;user={}#activity\">Newest events</a></p>",
            query_escape(kind),
            query_escape(user)
        )
    } else {
        String::new()
    };
    format!("{form}<table><tr><th>Time</th><th>Event</th><th>By</th><th>On</th><th>Outcome</th><th class=\"hide-narrow\">From</th></tr>{rows}</table>{newest}{older}")
}

pub(in crate::api) async fn overview(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    filter: Result<Query<EventFilter>, QueryRejection>,
) -> Response {
    let caller = match administrator(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (csrf, _) = csrf_of(&headers);
    let filter = match filter {
        Ok(Query(f)) => f,
        Err(_) => EventFilter::default(),
    };
    let shown = EventFilter {
        limit: Some(EVENTS_PAGE),
        ..filter.clone()
    };
    let found = blocking(&state, move |m| {
        let folders = admin::folders(m)?;
        let mut usage = Vec::with_capacity(folders.len());
        for f in &folders {
            let id = m.folder(&f.name)?.map(|f| f.id);
            usage.push(match id {
                Some(id) => m.folder_usage(id)?,
                None => FolderUsage::default(),
            });
        }
        let extra = Extra {
            tasks: m.cloud_tasks(None)?,
            activity: m.recent_activity(ACTIVITY)?,
            usage,
            events: match admin::events(m, shown) {
                Ok(page) => Ok(page),
                Err(crate::Error::Invalid(why)) => Err(why),
                Err(e) => return Err(e),
            },
        };
        Ok((admin::users(m)?, folders, extra))
    })
    .await;
    let (users, folders, extra) = match found {
        Ok(f) => f,
        Err(e) => {
            return page(
                e.status,
                "Not available",
                &format!("<p>{}</p>", esc(&e.message)),
            )
        }
    };
    let users_rows: String = users.iter().map(|u| user_row(u, &csrf)).collect();
    let folder_rows: String = folders
        .iter()
        .zip(&extra.usage)
        .map(|(f, u)| folder_row(f, u, &csrf))
        .collect();
    let total: u64 = users.iter().map(|u| u.used_bytes).sum();
    let body = format!(
        "<h2>Users</h2><p class=\"muted\">{} users; their uploads take {} in all.</p><table>{users_rows}</table>\
         <form method=\"post\" action=\"/ui/admin/users\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label>New user <input name=\"name\" required size=\"10\"></label> <label>Password <input type=\"password\" name=\"password\" required autocomplete=\"new-password\" size=\"10\"></label> <label><input type=\"checkbox\" name=\"admin\" value=\"true\"> administrator</label> <button type=\"submit\">Create</button></form>\
         <h2>Folders</h2><table>{folder_rows}</table>\
         <form method=\"post\" action=\"/ui/admin/folders\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label>New folder <input name=\"name\" required size=\"10\"></label> <label>Versions kept <input name=\"keep_versions\" value=\"10\" size=\"4\" inputmode=\"numeric\"></label> <button type=\"submit\">Create</button></form>\
         <h2>Cloud tasks</h2>{tasks}<h2>Recent file changes</h2>{activity}\
         <h2 id=\"activity\">Activity log</h2>{events}",
        users.len(),
        bytes(total),
        tasks = tasks_table(&extra.tasks),
        activity = activity_table(&extra.activity),
        events = events_section(&filter, &extra.events),
    );
    app_page(&caller.user.name, true, &csrf, "Administration", &body)
}

fn refused(status: StatusCode, why: &str) -> Response {
    page(
        status,
        "Not done",
        &format!(
            "<p role=\"alert\">{}</p><p><a href=\"/ui/admin\">Back to administration</a></p>",
            esc(why)
        ),
    )
}

fn stale() -> Response {
    refused(
        StatusCode::FORBIDDEN,
        "The form had expired; reload the page and try again.",
    )
}

#[derive(Deserialize)]
pub(in crate::api) struct NewUserForm {
    csrf: String,
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

pub(in crate::api) async fn add_user(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<NewUserForm>,
) -> Response {
    let by = match acting(&state, &headers, &form.csrf, peer).await {
        Ok(by) => by,
        Err(r) => return r,
    };
    let u = NewUser {
        name: form.name.trim().to_string(),
        password: form.password,
        admin: form.admin,
        quota: None,
    };
    match blocking(&state, move |m| admin::add_user(m, &u, &by)).await {
        Ok(()) => see_other("/ui/admin"),
        Err(e) => refused(e.status, &e.message),
    }
}

#[derive(Deserialize)]
pub(in crate::api) struct UserForm {
    csrf: String,
    op: String,
    #[serde(default)]
    quota_mib: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub(in crate::api) async fn change_user(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<UserForm>,
) -> Response {
    let by = match acting(&state, &headers, &form.csrf, peer).await {
        Ok(by) => by,
        Err(r) => return r,
    };
    if form.op == "delete" {
        if form.confirm != name {
            return refused(
                StatusCode::BAD_REQUEST,
                "Type the user's name to delete them; nothing was deleted.",
            );
        }
        return match blocking(&state, move |m| admin::remove_user(m, &name, &by)).await {
            Ok(()) => see_other("/ui/admin"),
            Err(e) => refused(e.status, &e.message),
        };
    }
    let mut c = UserChange::default();
    match form.op.as_str() {
        "enable" => c.disabled = Some(false),
        "disable" => c.disabled = Some(true),
        "admin" => c.admin = Some(true),
        "user" => c.admin = Some(false),
        "password" => c.password = Some(form.password),
        "quota" => match form.quota_mib.trim() {
            "" => c.no_quota = true,
            n => match n.parse::<u64>() {
                Ok(mib) => c.quota = Some(mib.saturating_mul(1 << 20)),
                Err(_) => {
                    return refused(StatusCode::BAD_REQUEST, "A quota is a whole number of MiB.")
                }
            },
        },
        _ => return refused(StatusCode::BAD_REQUEST, "Unknown change."),
    }
    match blocking(&state, move |m| admin::change_user(m, &name, &c, &by)).await {
        Ok(()) => see_other("/ui/admin"),
        Err(e) => refused(e.status, &e.message),
    }
}

#[derive(Deserialize)]
pub(in crate::api) struct NewFolderForm {
    csrf: String,
    name: String,
    keep_versions: String,
}

fn keep_of(text: &str) -> Result<u32, Box<Response>> {
    text.trim().parse::<u32>().map_err(|_| {
        Box::new(refused(
            StatusCode::BAD_REQUEST,
            "Versions kept is a whole number.",
        ))
    })
}

pub(in crate::api) async fn add_folder(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<NewFolderForm>,
) -> Response {
    let by = match acting(&state, &headers, &form.csrf, peer).await {
        Ok(by) => by,
        Err(r) => return r,
    };
    let keep_versions = match keep_of(&form.keep_versions) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let f = NewFolder {
        name: form.name.trim().to_string(),
        keep_versions,
    };
    match blocking(&state, move |m| admin::add_folder(m, &f, &by)).await {
        Ok(()) => see_other("/ui/admin"),
        Err(e) => refused(e.status, &e.message),
    }
}

#[derive(Deserialize)]
pub(in crate::api) struct FolderForm {
    csrf: String,
    op: String,
    #[serde(default)]
    keep_versions: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    access: String,
    #[serde(default)]
    confirm: String,
}

pub(in crate::api) async fn change_folder(
    State(state): State<Arc<AppState>>,
    ClientAddr(peer): ClientAddr,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<FolderForm>,
) -> Response {
    let by = match acting(&state, &headers, &form.csrf, peer).await {
        Ok(by) => by,
        Err(r) => return r,
    };
    let done = match form.op.as_str() {
        "keep" => {
            let keep = match keep_of(&form.keep_versions) {
                Ok(k) => k,
                Err(r) => return *r,
            };
            blocking(&state, move |m| {
                admin::set_keep_versions(m, &name, keep, &by)
            })
            .await
        }
        "grant" => {
            let access = match form.access.as_str() {
                "rw" | "ro" => Some(form.access.clone()),
                "none" => None,
                _ => return refused(StatusCode::BAD_REQUEST, "Choose an access from the list."),
            };
            let g = GrantChange {
                user: form.user.trim().to_string(),
                access,
            };
            blocking(&state, move |m| admin::set_grant(m, &name, &g, &by)).await
        }
        "delete" if form.confirm == name => {
            blocking(&state, move |m| admin::remove_folder(m, &name, &by)).await
        }
        "delete" => {
            return refused(
                StatusCode::BAD_REQUEST,
                "Type the folder's name to delete it; nothing was deleted.",
            )
        }
        _ => return refused(StatusCode::BAD_REQUEST, "Unknown change."),
    };
    match done {
        Ok(()) => see_other("/ui/admin"),
        Err(e) => refused(e.status, &e.message),
    }
}
