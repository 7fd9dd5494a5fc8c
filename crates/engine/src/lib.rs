//! The sync engine: one planner and one executor over two [`replica::Replica`]s, a local
//! index of what both sides agreed on, the scanner and the watcher of local folders.
//!
//! Who calls whom: the CLI opens the [`index::LocalIndex`], builds the remote replica (today
//! the cairn server's, in `cairn-client`) and calls [`backup::run`], [`drive::run`] or
//! [`restore::restore`]. A pass ([`pass::run`]) lists both replicas, plans with
//! [`reconcile::plan_sync`] and runs the plan with the [`executor`]; everything reports
//! through [`Progress`]. Libraries never print.

pub mod backup;
pub mod drive;
pub mod executor;
pub mod index;
pub mod local_root;
pub mod pass;
pub mod progress;
pub mod ratelimit;
pub mod reconcile;
pub mod remote;
pub mod replica;
pub mod restore;
pub mod retry;
pub mod scanner;
pub mod sift;
pub mod watcher;

pub use progress::{Progress, ProgressEvent};
pub use remote::{Remote, RemoteEntry};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // The cause is part of the text, not a `source`: a failure reported per path (the
    // executor, restore) is shown by its text alone, and must say why ("No space left on
    // device"), not only what was being done.
    #[error("{context}: {cause}")]
    Index {
        context: String,
        cause: rusqlite::Error,
    },
    #[error("{context} {}: {cause}", path.display())]
    Io {
        context: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The remote failed; the text says what was asked and why it failed. `temporary` when
    /// the same request may succeed later (a dropped connection, a restarting server).
    #[error("{message}")]
    Remote { message: String, temporary: bool },
    /// A safety rule stopped the task before it could lose data.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Model(#[from] cairn_model::Error),
}

impl Error {
    /// A remote failure that retrying will not fix.
    pub fn remote(message: impl Into<String>) -> Error {
        Error::Remote {
            message: message.into(),
            temporary: false,
        }
    }

    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Error::Remote {
                temporary: true,
                ..
            }
        )
    }

    pub fn io(
        context: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        let path = path.into();
        move |cause| Error::Io {
            context,
            path,
            cause,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs blocking work (SQLite with its syncs) from async code without stalling the other tasks
/// of a multi-threaded runtime: the thread is handed over while `f` runs. Elsewhere (plain
/// threads, single-threaded runtimes) `f` just runs.
pub(crate) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
