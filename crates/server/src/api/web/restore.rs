//! Changes from forms of the web UI: a new folder, an old version restored as the current one,
//! and a folder brought back to how it was at a time. Each is a commit on top of the current
//! heads, so what they replace stays in the history.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use cairn_model::{EntryKind, RelPath, Seq};
use cairn_protocol::{Access, Change, ChangeResult, VersionInfo};
use serde::Deserialize;

use super::super::shares::{esc, page, query_escape, see_other};
use super::super::{blocking, folder_access, now_ns, ApiResult, AppState, Caller};
use super::{edit, form_session, parse_rel};
use crate::meta::Folder;

/// The caller of a form that changes `folder`, with the folder checked for writing; or the
/// page to answer instead.
async fn writer(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    folder: &str,
    csrf: &str,
) -> Result<(Caller, Folder), Response> {
    let caller = form_session(state, headers, csrf).await?;
    match folder_access(state, &caller, folder, Access::Rw).await {
        Ok(f) => Ok((caller, f)),
        Err(e) => Err(page(
            e.status,
            "Not done",
            &format!("<p>{}</p>", esc(&e.message)),
        )),
    }
}

fn not_done(status: StatusCode, why: &str) -> Response {
    page(status, "Not done", &format!("<p>{}</p>", esc(why)))
}

fn failed(e: super::super::ApiError) -> Response {
    not_done(e.status, &e.message)
}

#[derive(Deserialize)]
pub(in crate::api) struct MkdirForm {
    csrf: String,
    #[serde(default)]
    dir: String,
    name: String,
}

pub(in crate::api) async fn mkdir(
    State(state): State<Arc<AppState>>,
    Path(folder): Path<String>,
    headers: HeaderMap,
    Form(form): Form<MkdirForm>,
) -> Response {
    let (caller, f) = match writer(&state, &headers, &folder, &form.csrf).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let path = parse_rel(Some(&form.dir))
        .and_then(|d| d.join(form.name.trim()).ok())
        .filter(|p| !p.is_root());
    let Some(path) = path else {
        return not_done(
            StatusCode::BAD_REQUEST,
            &format!("{:?} is not a folder name allowed here", form.name),
        );
    };
    let made = async {
        let now = now_ns();
        let mut changes = edit::parents_of(&state, &f, &path, now).await?;
        let base = edit::head_of(&state, &f, &path).await?;
        match base {
            Some((_, EntryKind::Deleted)) | None => {}
            Some(_) => return Ok(Some(format!("{path} exists already"))),
        }
        changes.push(edit::dir_change(path.clone(), base.map(|(s, _)| s), now));
        let results = edit::commit(&state, &caller, &f, changes).await?;
        Ok::<_, super::super::ApiError>(results.last().and_then(edit::refusal))
    };
    match made.await {
        Ok(None) => see_other(&format!(
            "/ui/f/{}?dir={}",
            query_escape(&folder),
            query_escape(path.as_str())
        )),
        Ok(Some(why)) => not_done(StatusCode::CONFLICT, &why),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
pub(in crate::api) struct RestoreForm {
    csrf: String,
    path: String,
    seq: i64,
}

/// Makes version `seq` of a path its current version again.
pub(in crate::api) async fn version(
    State(state): State<Arc<AppState>>,
    Path(folder): Path<String>,
    headers: HeaderMap,
    Form(form): Form<RestoreForm>,
) -> Response {
    let (caller, f) = match writer(&state, &headers, &folder, &form.csrf).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let Some(path) = parse_rel(Some(&form.path)).filter(|p| !p.is_root()) else {
        return not_done(StatusCode::BAD_REQUEST, "Name a file.");
    };
    let (ff, p) = (f.clone(), path.clone());
    let old = match blocking(&state, move |m| m.version(&ff, &p, Some(Seq(form.seq)))).await {
        Ok(Some(v)) if !v.info.is_deleted() => v,
        Ok(_) => {
            return not_done(
                StatusCode::NOT_FOUND,
                "That version does not exist or is a deletion.",
            )
        }
        Err(e) => return failed(e),
    };
    let done = async {
        let now = now_ns();
        let mut changes = edit::parents_of(&state, &f, &path, now).await?;
        let base = edit::head_of(&state, &f, &path).await?;
        changes.push(Change {
            path: path.clone(),
            base: base.map(|(s, _)| s),
            entry: old.info.entry.clone(),
            chunks: old.chunks.clone(),
            moved_from: None,
            inline: None,
        });
        let results = edit::commit(&state, &caller, &f, changes).await?;
        Ok::<_, super::super::ApiError>(results.last().and_then(edit::refusal))
    };
    match done.await {
        Ok(None) => see_other(&format!(
            "/ui/f/{}/versions?path={}&restored={}",
            query_escape(&folder),
            query_escape(path.as_str()),
            form.seq
        )),
        Ok(Some(why)) => not_done(StatusCode::CONFLICT, &format!("{path}: {why}")),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
pub(in crate::api) struct TreeForm {
    csrf: String,
    #[serde(default)]
    dir: String,
    at: String,
}

/// Brings every file and folder under a folder back to how it was at a time: what existed
/// then and differs now (or was deleted since) becomes current again. What was created since
/// is left as it is: a restore never deletes.
pub(in crate::api) async fn tree(
    State(state): State<Arc<AppState>>,
    Path(folder): Path<String>,
    headers: HeaderMap,
    Form(form): Form<TreeForm>,
) -> Response {
    let (caller, f) = match writer(&state, &headers, &folder, &form.csrf).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let Some(dir) = parse_rel(Some(&form.dir)) else {
        return not_done(StatusCode::BAD_REQUEST, "That path is not allowed.");
    };
    let at_ns = match cairn_model::timespec::parse_instant(&form.at, now_ns()) {
        Ok(ns) => ns,
        Err(e) => return not_done(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match restore_tree(&state, &caller, &f, &dir, at_ns).await {
        Ok(outcome) => {
            let back = format!(
                "/ui/f/{}?dir={}",
                esc(&query_escape(&folder)),
                esc(&query_escape(dir.as_str()))
            );
            let mut body = format!(
                "<p role=\"status\">{} restored as they were at {}; {} already were.</p>",
                outcome.restored,
                esc(&cairn_model::timespec::format_instant(at_ns)),
                outcome.same
            );
            if !outcome.refused.is_empty() {
                body.push_str("<p>Not restored:</p><ul>");
                for why in outcome.refused.iter().take(100) {
                    body.push_str(&format!("<li>{}</li>", esc(why)));
                }
                body.push_str("</ul>");
            }
            body.push_str(&format!("<p><a href=\"{back}\">Back to the folder</a></p>"));
            page(StatusCode::OK, "Restored", &body)
        }
        Err(e) => failed(e),
    }
}

struct Outcome {
    restored: usize,
    same: usize,
    refused: Vec<String>,
}

async fn restore_tree(
    state: &Arc<AppState>,
    caller: &Caller,
    f: &Folder,
    dir: &RelPath,
    at_ns: i64,
) -> ApiResult<Outcome> {
    let (ff, d) = (f.clone(), dir.clone());
    let (then, now): (Vec<VersionInfo>, HashMap<RelPath, VersionInfo>) =
        blocking(state, move |m| {
            let then = m.tree(&ff, &d, Some(at_ns), false)?;
            let now = m.tree(&ff, &d, None, true)?;
            Ok((then, now.into_iter().map(|v| (v.path.clone(), v)).collect()))
        })
        .await?;
    let mut out = Outcome {
        restored: 0,
        same: 0,
        refused: Vec::new(),
    };
    let mut changes = edit::folders_down_to(state, f, dir, now_ns()).await?;
    for v in then {
        let cur = now.get(&v.path).filter(|c| !c.is_deleted());
        if let Some(c) = cur {
            if c.entry.same_content(&v.entry)
                || (c.entry.kind == EntryKind::Dir && v.entry.kind == EntryKind::Dir)
            {
                out.same += 1;
                continue;
            }
            if c.entry.kind == EntryKind::Dir || v.entry.kind == EntryKind::Dir {
                out.refused.push(format!(
                    "{}: a file and a folder have traded places since; restore it on its own",
                    v.path
                ));
                continue;
            }
        }
        let chunks = if v.entry.kind == EntryKind::File {
            let (ff, p, seq) = (f.clone(), v.path.clone(), v.seq);
            match blocking(state, move |m| m.version(&ff, &p, Some(seq))).await? {
                Some(stored) => stored.chunks,
                None => continue,
            }
        } else {
            Vec::new()
        };
        changes.push(Change {
            base: now.get(&v.path).map(|c| c.seq),
            path: v.path,
            entry: v.entry,
            chunks,
            moved_from: None,
            inline: None,
        });
    }
    let paths: Vec<RelPath> = changes.iter().map(|c| c.path.clone()).collect();
    let results = edit::commit(state, caller, f, changes).await?;
    for (path, result) in paths.iter().zip(&results) {
        match (result, edit::refusal(result)) {
            (ChangeResult::Accepted { .. }, _) => out.restored += 1,
            (_, Some(why)) => out.refused.push(format!("{path}: {why}")),
            (_, None) => {}
        }
    }
    Ok(out)
}
