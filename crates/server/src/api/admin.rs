//! `/api/v1/admin/...`: users, folders and the activity log, for administrators only, with
//! the rules of [`crate::admin`] (the same `cairn server user|folder|log` applies with
//! `--data`). Every change is recorded with the administrator and their address.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;

use super::{blocking, ApiError, ApiResult, AppState, Caller};
use crate::admin::{self, FolderAdminInfo, GrantChange, NewFolder, NewUser, UserChange, UserInfo};
use crate::meta::{EventFilter, EventPage};

type Done = ApiResult<Json<serde_json::Value>>;

fn done() -> Done {
    Ok(Json(serde_json::json!({"ok": true})))
}

fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.user.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("user {} is not an administrator", caller.user.name),
        ))
    }
}

pub(super) async fn users(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<UserInfo>>> {
    require_admin(&caller)?;
    Ok(Json(blocking(&state, admin::users).await?))
}

pub(super) async fn add_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(u): Json<NewUser>,
) -> Done {
    require_admin(&caller)?;
    let by = caller.actor();
    blocking(&state, move |m| admin::add_user(m, &u, &by)).await?;
    done()
}

pub(super) async fn change_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(c): Json<UserChange>,
) -> Done {
    require_admin(&caller)?;
    let by = caller.actor();
    blocking(&state, move |m| admin::change_user(m, &name, &c, &by)).await?;
    done()
}

pub(super) async fn folders(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<FolderAdminInfo>>> {
    require_admin(&caller)?;
    Ok(Json(blocking(&state, admin::folders).await?))
}

pub(super) async fn add_folder(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(f): Json<NewFolder>,
) -> Done {
    require_admin(&caller)?;
    let by = caller.actor();
    blocking(&state, move |m| admin::add_folder(m, &f, &by)).await?;
    done()
}

#[derive(serde::Deserialize)]
pub(super) struct FolderChange {
    keep_versions: u32,
}

pub(super) async fn change_folder(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(c): Json<FolderChange>,
) -> Done {
    require_admin(&caller)?;
    let by = caller.actor();
    blocking(&state, move |m| {
        admin::set_keep_versions(m, &name, c.keep_versions, &by)
    })
    .await?;
    done()
}

pub(super) async fn set_grant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(g): Json<GrantChange>,
) -> Done {
    require_admin(&caller)?;
    let by = caller.actor();
    blocking(&state, move |m| admin::set_grant(m, &name, &g, &by)).await?;
    done()
}

pub(super) async fn remove_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Done {
    require_admin(&caller)?;
    let by = caller.actor();
    blocking(&state, move |m| admin::remove_user(m, &name, &by)).await?;
    done()
}

pub(super) async fn remove_folder(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Done {
    require_admin(&caller)?;
    let by = caller.actor();
    blocking(&state, move |m| admin::remove_folder(m, &name, &by)).await?;
    done()
}

/// `GET /api/v1/admin/events?kind=&user=&before=&limit=`: the activity log, newest first.
pub(super) async fn events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    filter: Result<Query<EventFilter>, QueryRejection>,
) -> ApiResult<Json<EventPage>> {
    require_admin(&caller)?;
    let Query(filter) = filter.map_err(|e| ApiError::bad(format!("events: {}", e.body_text())))?;
    Ok(Json(
        blocking(&state, move |m| admin::events(m, filter)).await?,
    ))
}
