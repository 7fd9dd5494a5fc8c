//! Changes the web UI makes to a folder (uploads, new folders, restores): commits like an
//! agent's, through the API's own checks, authored by the browser session.

use std::sync::Arc;

use cairn_model::{Entry, EntryKind, RelPath, Seq};
use cairn_protocol::{Change, ChangeResult, MAX_COMMIT_CHANGES, MAX_COMMIT_CHUNKS};

use super::super::{apply_commit, blocking, check_changes, ApiError, ApiResult, AppState, Caller};
use crate::meta::Folder;

/// Commits `changes` in as many commits as the API's limits need; each change's result in
/// order.
pub(in crate::api) async fn commit(
    state: &Arc<AppState>,
    caller: &Caller,
    folder: &Folder,
    changes: Vec<Change>,
) -> ApiResult<Vec<ChangeResult>> {
    let mut results = Vec::with_capacity(changes.len());
    let mut batch: Vec<Result<Change, String>> = Vec::new();
    let mut refs = 0;
    for change in changes {
        let n = change.chunks.len();
        if !batch.is_empty() && (batch.len() >= MAX_COMMIT_CHANGES || refs + n > MAX_COMMIT_CHUNKS)
        {
            let parsed = check_changes(std::mem::take(&mut batch))?;
            results.extend(apply_commit(state, caller, folder, parsed).await?.results);
            refs = 0;
        }
        refs += n;
        batch.push(Ok(change));
    }
    if !batch.is_empty() {
        let parsed = check_changes(batch)?;
        results.extend(apply_commit(state, caller, folder, parsed).await?.results);
    }
    Ok(results)
}

/// The head of `path` (a deletion marker included), as the base of a change to it.
pub(super) async fn head_of(
    state: &Arc<AppState>,
    folder: &Folder,
    path: &RelPath,
) -> ApiResult<Option<(Seq, EntryKind)>> {
    let (f, p) = (folder.clone(), path.clone());
    let found = blocking(state, move |m| m.version(&f, &p, None)).await?;
    Ok(found.map(|v| (v.info.seq, v.info.entry.kind)))
}

/// The folders `path` needs above it that are missing (or deleted), outermost first, as
/// changes; a file in the way is an error naming it.
pub(super) async fn parents_of(
    state: &Arc<AppState>,
    folder: &Folder,
    path: &RelPath,
    now_ns: i64,
) -> ApiResult<Vec<Change>> {
    match path.parent() {
        Some(dir) => folders_down_to(state, folder, &dir, now_ns).await,
        None => Ok(Vec::new()),
    }
}

/// `dir` and the folders above it that are missing (or deleted), outermost first, as changes.
pub(super) async fn folders_down_to(
    state: &Arc<AppState>,
    folder: &Folder,
    dir: &RelPath,
    now_ns: i64,
) -> ApiResult<Vec<Change>> {
    let mut chain = Vec::new();
    let mut at = Some(dir.clone());
    while let Some(p) = at.filter(|p| !p.is_root()) {
        at = p.parent();
        chain.push(p);
    }
    let mut out = Vec::new();
    for dir in chain.into_iter().rev() {
        match head_of(state, folder, &dir).await? {
            Some((_, EntryKind::Dir)) => {}
            Some((seq, EntryKind::Deleted)) => out.push(dir_change(dir, Some(seq), now_ns)),
            None => out.push(dir_change(dir, None, now_ns)),
            Some(_) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    format!("{dir} is a file, not a folder"),
                ))
            }
        }
    }
    Ok(out)
}

pub(in crate::api) fn dir_change(path: RelPath, base: Option<Seq>, now_ns: i64) -> Change {
    Change {
        path,
        base,
        entry: Entry::dir(now_ns, 0o755),
        chunks: Vec::new(),
        moved_from: None,
        inline: None,
    }
}

/// The reason a change was not applied, or `None` when it was.
pub(in crate::api) fn refusal(result: &ChangeResult) -> Option<String> {
    match result {
        ChangeResult::Accepted { .. } => None,
        ChangeResult::Conflict { .. } => {
            Some("it changed meanwhile; reload the page and try again".into())
        }
        ChangeResult::MissingChunks { chunks } => Some(format!(
            "{} chunks of its content are no longer on the server",
            chunks.len()
        )),
        ChangeResult::Refused { reason } => Some(reason.clone()),
    }
}
