//! The seeds' status words on a folder page (seed 001's icons: synced, syncing, filtered,
//! read-only). On the server the folder itself is the copy every computer follows, so the
//! words that fit are those of the server's own cloud tasks on the folder: whether the cloud
//! holds the folder as it is ("synced") or a pass is still due ("syncing"), and which files a
//! task's rules leave out ("filtered", with the rule). A user sees the words of their own
//! tasks; an administrator those of every task, as on the administration page.

use cairn_model::filter::{Filter, FilterDecision};
use cairn_model::{EntryKind, RelPath};

use crate::meta::CloudTaskRow;

use super::super::shares::esc;

/// A cloud task of the folder shown, with the filter its passes apply.
pub(super) struct TaskView {
    pub name: String,
    pub owner: String,
    pub filter: Filter,
    pub word: &'static str,
    /// What the word stands on: the last pass, or the error it ended with.
    pub detail: String,
}

/// The tasks on `folder` the viewer may see, with their status words; `last_change_ns`: when
/// the folder last changed.
pub(super) fn task_views(
    tasks: Vec<CloudTaskRow>,
    folder: &str,
    last_change_ns: Option<i64>,
) -> Vec<TaskView> {
    tasks
        .into_iter()
        .filter(|t| t.folder == folder)
        .map(|t| {
            let (word, detail) = word_of(&t, last_change_ns);
            TaskView {
                filter: t.settings.filter(),
                name: t.name,
                owner: t.owner,
                word,
                detail,
            }
        })
        .collect()
}

/// "synced" when the last pass ended well after the folder's last change (for a task that
/// only brings the cloud's changes in, whenever it ended well); "syncing" while a pass is due.
fn word_of(t: &CloudTaskRow, last_change_ns: Option<i64>) -> (&'static str, String) {
    let s = &t.status;
    let Some(last) = s.last_ns else {
        return ("syncing", "waiting for its first pass".into());
    };
    let when = cairn_model::timespec::format_instant(last);
    match s.outcome.as_str() {
        "error" => (
            "error",
            format!(
                "last pass {when}: {}",
                s.error.as_deref().unwrap_or("failed")
            ),
        ),
        "failed_files" => ("not all synced", format!("last pass {when}: {}", s.summary)),
        _ if t.run_now => ("syncing", format!("a pass is due (last {when})")),
        _ if t.settings.direction != "download-only"
            && last_change_ns.is_some_and(|c| c > last) =>
        {
            ("syncing", format!("changed since the last pass ({when})"))
        }
        _ => ("synced", format!("last pass {when}")),
    }
}

/// The line above the file list naming each task and its word.
pub(super) fn banner(tasks: &[TaskView], admin: bool) -> String {
    if tasks.is_empty() {
        return String::new();
    }
    let items: Vec<String> = tasks
        .iter()
        .map(|t| {
            let owner = if admin {
                format!(" of {}", esc(&t.owner))
            } else {
                String::new()
            };
            format!(
                "cloud task {}{owner}: <span class=\"tag\" title=\"{}\">{}</span>",
                esc(&t.name),
                esc(&t.detail),
                t.word
            )
        })
        .collect();
    format!("<p class=\"muted\">{}</p>", items.join("; "))
}

/// The "filtered" mark of an entry some task leaves out, with its rule as the title.
pub(super) fn filtered_mark(
    tasks: &[TaskView],
    path: &RelPath,
    kind: EntryKind,
    size: u64,
) -> String {
    let reasons: Vec<String> = tasks
        .iter()
        .filter_map(|t| match t.filter.check(path, kind, size) {
            FilterDecision::Include => None,
            FilterDecision::Exclude(why) => {
                Some(format!("not synced by cloud task {}: {why}", t.name))
            }
        })
        .collect();
    if reasons.is_empty() {
        return String::new();
    }
    format!(
        " <span class=\"tag\" title=\"{}\">filtered</span>",
        esc(&reasons.join("; "))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{TaskSettings, TaskStatus};

    fn task(direction: &str, status: TaskStatus, run_now: bool) -> CloudTaskRow {
        CloudTaskRow {
            id: 1,
            owner_id: 1,
            owner: "alice".into(),
            name: "mirror".into(),
            folder: "docs".into(),
            connection_id: 1,
            connection: "s3".into(),
            settings: TaskSettings {
                remote: "nas".into(),
                direction: direction.into(),
                keep_deleted: false,
                poll_secs: 600,
                keep_versions: 0,
                transfers: 4,
                part_size_mb: 16,
                max_size_mb: 1,
                exclude_names: vec!["*.tmp".into()],
                exclude_exts: vec!["ISO".into()],
                storage_class: None,
                sse: None,
                encrypt: false,
            },
            status,
            run_now,
        }
    }

    fn ended(ns: i64, outcome: &str) -> TaskStatus {
        TaskStatus {
            last_ns: Some(ns),
            outcome: outcome.into(),
            ..TaskStatus::default()
        }
    }

    #[test]
    fn the_word_follows_the_last_pass_and_the_folders_last_change() {
        let word = |t: &CloudTaskRow, change| word_of(t, change).0;
        assert_eq!(
            word(&task("bidirectional", TaskStatus::default(), true), None),
            "syncing"
        );
        let ok = task("bidirectional", ended(100, "ok"), false);
        assert_eq!(word(&ok, Some(90)), "synced");
        assert_eq!(word(&ok, Some(110)), "syncing");
        assert_eq!(
            word(&task("download-only", ended(100, "ok"), false), Some(110)),
            "synced"
        );
        assert_eq!(
            word(&task("upload-only", ended(100, "ok"), true), Some(90)),
            "syncing"
        );
        assert_eq!(
            word(&task("upload-only", ended(100, "error"), false), None),
            "error"
        );
        assert_eq!(
            word(
                &task("upload-only", ended(100, "failed_files"), false),
                None
            ),
            "not all synced"
        );
    }

    #[test]
    fn entries_a_task_leaves_out_are_marked_with_the_rule() {
        let views = task_views(
            vec![task("upload-only", ended(1, "ok"), false)],
            "docs",
            None,
        );
        let p = |s: &str| RelPath::parse(s).expect("valid");
        let file = EntryKind::File;
        assert!(filtered_mark(&views, &p("a/report.txt"), file, 10).is_empty());
        assert!(filtered_mark(&views, &p("disk.iso"), file, 10).contains("extension rule"));
        assert!(filtered_mark(&views, &p("x.tmp"), file, 10).contains("file name rule"));
        assert!(filtered_mark(&views, &p("big.bin"), file, 2 << 20).contains("maximum size"));
        assert!(task_views(
            vec![task("upload-only", ended(1, "ok"), false)],
            "other",
            None
        )
        .is_empty());
    }
}
