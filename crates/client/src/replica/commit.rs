//! Changes without content: deletions and moves in as few commits as the protocol's limits
//! allow (each commit is one transaction on the server, so other computers never see half a
//! renamed folder within one), and promotions of a retained version.

use std::ops::Range;

use cairn_engine::remote::Remote;
use cairn_engine::replica::{MoveOp, Outcome, Version};
use cairn_engine::retry::retrying;
use cairn_engine::{Error, Result};
use cairn_model::chunking::most_chunks;
use cairn_model::{Entry, EntryKind, RelPath};
use cairn_protocol::{Change, ChangeResult, MovedFrom, MAX_COMMIT_CHANGES, MAX_COMMIT_CHUNKS};

use super::{copy_err, entry_of, live_head, seq_of, wire_entry, ServerReplica};

/// `0..n` cut into runs that each fit one commit: at most [`MAX_COMMIT_CHANGES`] changes and
/// [`MAX_COMMIT_CHUNKS`] chunk references (`refs(i)` for item `i`: the chunks a file names, or
/// a moved file's most chunks). An item over the limit alone goes alone (the server refuses it
/// by name).
pub(super) fn cuts(n: usize, refs: impl Fn(usize) -> u64) -> Vec<Range<usize>> {
    let max_refs = MAX_COMMIT_CHUNKS as u64;
    let mut out = Vec::new();
    let (mut start, mut held) = (0, 0u64);
    for i in 0..n {
        let r = refs(i);
        if i > start && (i - start >= MAX_COMMIT_CHANGES || held + r > max_refs) {
            out.push(start..i);
            (start, held) = (i, 0);
        }
        held += r;
    }
    if start < n {
        out.push(start..n);
    }
    out
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl ServerReplica {
    /// Commits `changes` run by run, in order; one result per change. A failure before any
    /// run was committed fails the batch (nothing is known to be done); after that, it is the
    /// result of each change it stopped.
    async fn commit_runs(
        &self,
        changes: &[Change],
        runs: Vec<Range<usize>>,
    ) -> Result<Vec<Result<ChangeResult>>> {
        let mut out: Vec<Result<ChangeResult>> = Vec::with_capacity(changes.len());
        for run in runs {
            let part = &changes[run.clone()];
            match retrying(|| self.remote.commit(part)).await {
                Ok(results) => out.extend(results.into_iter().map(Ok)),
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => {
                    let left = changes.len() - out.len();
                    out.extend((0..left).map(|_| Err(copy_err(&e))));
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Conditional deletions, in order (children before parents), in as few commits as the
    /// limits allow. A path already gone (or never there) counts as done.
    pub(super) async fn delete_batch(
        &self,
        items: &[(RelPath, Version)],
    ) -> Result<Vec<Result<Outcome>>> {
        let now = now_ns();
        let mut out: Vec<Option<Result<Outcome>>> = Vec::with_capacity(items.len());
        let mut changes = Vec::new();
        let mut sent = Vec::new();
        for (i, (path, expect)) in items.iter().enumerate() {
            match seq_of(expect) {
                Ok(base) => {
                    changes.push(Change {
                        path: self.full(path),
                        base: Some(base),
                        entry: deleted(now),
                        chunks: Vec::new(),
                        moved_from: None,
                        inline: None,
                    });
                    sent.push(i);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let runs = cuts(changes.len(), |_| 0);
        let results = self.commit_runs(&changes, runs).await?;
        for (i, result) in sent.into_iter().zip(results) {
            let path = &items[i].0;
            out[i] = Some(result.and_then(|r| match r {
                // Nothing live there any more: the deletion is what the caller wanted.
                ChangeResult::Conflict { head } => Ok(match live_head(head) {
                    Some(h) => Outcome::Changed(Some(h)),
                    None => Outcome::Done(None),
                }),
                other => self.outcome(path, &deleted(now), other),
            }));
        }
        Ok(finish(out))
    }

    /// Conditional moves, all of a run in one commit; the moved entry is the one the caller
    /// listed (the server checks it is still the source's head), so no head is asked for.
    pub(super) async fn move_batch(&self, moves: &[MoveOp]) -> Result<Vec<Result<Outcome>>> {
        let mut out: Vec<Option<Result<Outcome>>> = Vec::with_capacity(moves.len());
        let mut changes = Vec::new();
        let mut sent = Vec::new();
        for (i, m) in moves.iter().enumerate() {
            match seq_of(&m.expect) {
                Ok(base) => {
                    changes.push(Change {
                        path: self.full(&m.to),
                        base: None,
                        entry: wire_entry(&m.entry, m.entry.hash),
                        chunks: Vec::new(),
                        moved_from: Some(MovedFrom {
                            path: self.full(&m.from),
                            base,
                        }),
                        inline: None,
                    });
                    sent.push(i);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        // The server copies each moved file's chunk list: those references count too.
        let runs = cuts(changes.len(), |i| match changes[i].entry.kind {
            EntryKind::File => most_chunks(changes[i].entry.size),
            _ => 0,
        });
        let results = self.commit_runs(&changes, runs).await?;
        for ((i, result), change) in sent.into_iter().zip(results).zip(&changes) {
            out[i] = Some(result.and_then(|r| self.outcome(&moves[i].to, &change.entry, r)));
        }
        Ok(finish(out))
    }

    /// Makes the retained `version` of `path` the head again if the head is still `expect`:
    /// its chunk list is committed again (the server has the content), nothing is uploaded.
    pub(super) async fn promote_version(
        &self,
        path: &RelPath,
        version: &Version,
        expect: &Version,
    ) -> Result<Outcome> {
        let (seq, base) = (seq_of(version)?, seq_of(expect)?);
        let full = self.full(path);
        let (entry, spans) = retrying(|| self.remote.version_chunks(&full, seq)).await?;
        let entry = match entry {
            Some(e) => e,
            None => self.entry_from_history(&full, seq).await?,
        };
        if !entry.is_live() {
            return Err(Error::Refused(format!(
                "{}: version {seq} is a deletion; there is nothing to make the head",
                self.name(path)
            )));
        }
        let change = Change {
            path: full,
            base: Some(base),
            chunks: if entry.kind == EntryKind::File {
                spans
            } else {
                Vec::new()
            },
            entry,
            moved_from: None,
            inline: None,
        };
        let results = retrying(|| self.remote.commit(std::slice::from_ref(&change))).await?;
        match results.into_iter().next() {
            Some(ChangeResult::MissingChunks { chunks }) => Err(Error::remote(format!(
                "{}: the server lost {} chunks of version {seq}; it cannot be made the head",
                self.name(path),
                chunks.len()
            ))),
            Some(ChangeResult::Accepted { seq }) => {
                Ok(Outcome::Done(Some(entry_of(&change.entry, seq))))
            }
            Some(other) => self.outcome(path, &change.entry, other),
            None => Err(Error::remote("the server gave no result for a commit")),
        }
    }
}

/// Results in item order; every slot is filled by the time a batch finishes.
fn finish(out: Vec<Option<Result<Outcome>>>) -> Vec<Result<Outcome>> {
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::remote("the server gave no result"))))
        .collect()
}

fn deleted(mtime_ns: i64) -> Entry {
    Entry {
        kind: EntryKind::Deleted,
        size: 0,
        mtime_ns,
        mode: 0,
        hash: None,
        target: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_respect_both_commit_limits() {
        let sizes = |runs: Vec<Range<usize>>| runs.iter().map(|r| r.len()).collect::<Vec<_>>();
        let n = MAX_COMMIT_CHANGES * 2 + 3;
        assert_eq!(
            sizes(cuts(n, |_| 1)),
            vec![MAX_COMMIT_CHANGES, MAX_COMMIT_CHANGES, 3]
        );
        // Large files: cut by the chunk references they bring; one over the limit goes alone.
        let max = MAX_COMMIT_CHUNKS as u64;
        let refs = [max / 2, max / 2, 1, max * 3, 5];
        assert_eq!(cuts(refs.len(), |i| refs[i]), vec![0..2, 2..3, 3..4, 4..5]);
        assert!(cuts(0, |_| 1).is_empty());
    }
}
