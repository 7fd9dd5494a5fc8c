//! Before a conflict copy is made on a replica that does not say its content hash: is the
//! remote's "edit" our own earlier write, whose answer was lost?
//!
//! A cloud that stored an upload but whose answer never arrived (a cut connection, or a
//! resumable upload whose last answer was lost, so asking about the session afterwards
//! finds nothing) leaves the pass thinking the write failed. The next pass then finds a file
//! there that its base does not know, beside a local edit, and would keep one of the two as
//! a conflict copy: of the same bytes.

use std::collections::BTreeMap;

use cairn_model::{ContentHash, EntryKind, RelPath};
use futures_util::TryStreamExt;

use super::Ctx;
use crate::reconcile::Action;
use crate::replica::ReplicaEntry;
use crate::Result;

/// Conflicts where the remote side may hold the local bytes already, checked by content
/// before any conflict copy is made: the remote is read and hashed when it does not say its
/// hash and the sizes agree (a conflict reads it anyway), and where it holds the local bytes
/// the path is adopted. Everything else passes through unchanged.
pub(super) async fn lost_writes(
    ctx: &Ctx<'_>,
    actions: Vec<Action>,
    local: &BTreeMap<RelPath, ReplicaEntry>,
) -> Result<Vec<Action>> {
    let mut out = Vec::with_capacity(actions.len());
    for a in actions {
        let (path, remote) = match &a {
            Action::KeepLocalCopyThenDownload { path, remote, .. }
            | Action::KeepRemoteCopyThenUpload { path, remote } => (path, remote),
            _ => {
                out.push(a);
                continue;
            }
        };
        let Some(l) = local.get(path) else {
            out.push(a);
            continue;
        };
        let maybe_ours = l.kind == EntryKind::File
            && remote.kind == EntryKind::File
            && remote.hash.is_none()
            && l.hash.is_some()
            && l.size == remote.size;
        if maybe_ours && remote_hash(ctx, path, remote).await? == l.hash {
            out.push(Action::Adopt {
                path: path.clone(),
                remote: remote.version.clone(),
                hash: l.hash,
            });
        } else {
            out.push(a);
        }
    }
    Ok(out)
}

/// The content hash of what the remote holds at `path`, read whole as a stream; `None` when
/// it changed or vanished meanwhile (then the conflict goes on as planned).
async fn remote_hash(
    ctx: &Ctx<'_>,
    path: &RelPath,
    remote: &ReplicaEntry,
) -> Result<Option<ContentHash>> {
    let mut content = match ctx.right.read(path, &remote.version).await {
        Ok(c) => c,
        Err(e) if e.is_temporary() => return Err(e),
        Err(_) => return Ok(None),
    };
    let mut hasher = blake3::Hasher::new();
    while let Some(piece) = content.try_next().await? {
        hasher.update(&piece);
    }
    Ok(Some(ContentHash::from_bytes(*hasher.finalize().as_bytes())))
}
