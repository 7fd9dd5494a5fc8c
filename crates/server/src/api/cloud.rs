//! `/api/v1/cloud/...`: each user's cloud connections and the cloud tasks the server runs for
//! their folders; an administrator may name any user as `owner`, or list with `all` (seed
//! 002's admin mode). The rules are [`crate::cloud`]'s; secrets go in and never come out,
//! but for an encrypted task's key, which its owner or an administrator may export. Tasks
//! added and removed go to the activity log (with the administrator, when one acts for a user).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::{blocking, ApiError, ApiResult, AppState, Caller};
use crate::cloud::{self, ConnectionInfo, ConnectionRequest, TaskInfo, TaskRequest};
use crate::meta::{EventKind, User};

#[derive(Deserialize)]
pub(super) struct Whose {
    /// Another user's (administrators only).
    owner: Option<String>,
    /// Every user's (administrators only).
    #[serde(default)]
    all: bool,
}

type Done = ApiResult<Json<serde_json::Value>>;

fn done() -> Done {
    Ok(Json(serde_json::json!({"ok": true})))
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message)
}

/// The user whose connections and tasks a request is about.
async fn owner_of(state: &Arc<AppState>, caller: &Caller, owner: Option<&str>) -> ApiResult<User> {
    let name = match owner {
        None => return Ok(caller.user.clone()),
        Some(n) if n == caller.user.name => return Ok(caller.user.clone()),
        Some(n) => n.to_string(),
    };
    if !caller.user.admin {
        return Err(forbidden(
            "only an administrator may manage another user's cloud tasks",
        ));
    }
    let shown = name.clone();
    blocking(state, move |m| m.user_by_name(&name))
        .await?
        .map(|(u, _)| u)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no user {shown}")))
}

/// Whose rows a listing shows: the caller's (or `owner`'s), or with `all` everyone's.
async fn listed(state: &Arc<AppState>, caller: &Caller, whose: &Whose) -> ApiResult<Option<i64>> {
    if whose.all {
        if !caller.user.admin {
            return Err(forbidden(
                "only an administrator may list every user's cloud tasks",
            ));
        }
        return Ok(None);
    }
    Ok(Some(
        owner_of(state, caller, whose.owner.as_deref()).await?.id,
    ))
}

pub(super) async fn save_connection(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<ConnectionRequest>,
) -> Done {
    let owner = owner_of(&state, &caller, req.owner.as_deref()).await?;
    let admin = caller.user.admin;
    blocking(&state, move |m| {
        cloud::save_connection(m, &owner, req, admin)
    })
    .await?;
    done()
}

pub(super) async fn connections(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(whose): Query<Whose>,
) -> ApiResult<Json<Vec<ConnectionInfo>>> {
    let owner = listed(&state, &caller, &whose).await?;
    Ok(Json(
        blocking(&state, move |m| cloud::connection_infos(m, owner)).await?,
    ))
}

pub(super) async fn remove_connection(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(whose): Query<Whose>,
) -> Done {
    let owner = owner_of(&state, &caller, whose.owner.as_deref()).await?;
    blocking(&state, move |m| m.remove_cloud_connection(&owner, &name)).await?;
    done()
}

pub(super) async fn add_task(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<TaskRequest>,
) -> Done {
    let owner = owner_of(&state, &caller, req.owner.as_deref()).await?;
    let who = owner.clone();
    let task = blocking(&state, move |m| cloud::check_task(m, &who, req)).await?;
    let key = match state.cloud_attach.get() {
        Some(attach) => attach.attach(&task).await.map_err(ApiError::bad)?,
        None if task.request.settings.encrypt => {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "this server does not run cloud tasks, so it cannot turn encryption on",
            ))
        }
        None => None,
    };
    blocking(&state, move |m| {
        m.add_cloud_task(&owner, &task.request, key.as_ref())?;
        let r = &task.request;
        let detail = format!(
            "{} {} {}:{}",
            r.folder, r.settings.direction, r.connection, r.settings.remote
        );
        cloud::record_task(
            m,
            EventKind::CloudTaskAdded,
            &caller.actor(),
            &owner,
            &r.name,
            &detail,
        );
        Ok(())
    })
    .await?;
    state.cloud_wake.notify_one();
    done()
}

/// An encrypted task's key, as the text of a key file (`cairn cloud decrypt --key` reads it):
/// for the task's owner or an administrator, never cached on the way.
pub(super) async fn task_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(whose): Query<Whose>,
) -> ApiResult<impl IntoResponse> {
    let owner = owner_of(&state, &caller, whose.owner.as_deref()).await?;
    let shown = name.clone();
    let key = blocking(&state, move |m| m.cloud_task_key_named(&owner, &name)).await?;
    tracing::info!(task = %shown, by = %caller.user.name, "cloud task key exported");
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({ "key": cairn_cloud::crypt::key_text(&key) })),
    ))
}

pub(super) async fn tasks(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(whose): Query<Whose>,
) -> ApiResult<Json<Vec<TaskInfo>>> {
    let owner = listed(&state, &caller, &whose).await?;
    Ok(Json(
        blocking(&state, move |m| cloud::task_infos(m, owner)).await?,
    ))
}

pub(super) async fn remove_task(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(whose): Query<Whose>,
) -> Done {
    let owner = owner_of(&state, &caller, whose.owner.as_deref()).await?;
    blocking(&state, move |m| {
        m.remove_cloud_task(&owner, &name)?;
        cloud::record_task(
            m,
            EventKind::CloudTaskRemoved,
            &caller.actor(),
            &owner,
            &name,
            "",
        );
        Ok(())
    })
    .await?;
    done()
}

pub(super) async fn run_task(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(whose): Query<Whose>,
) -> Done {
    let owner = owner_of(&state, &caller, whose.owner.as_deref()).await?;
    blocking(&state, move |m| m.request_cloud_run(&owner, &name)).await?;
    state.cloud_wake.notify_one();
    done()
}
