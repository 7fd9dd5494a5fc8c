//! Progress reporting: the engine emits events, the CLI turns them into bars, lines or the
//! agent's recent-activity list.

use cairn_model::RelPath;

#[derive(Clone, Debug)]
pub enum ProgressEvent {
    Scanned {
        files: u64,
        dirs: u64,
    },
    Queued {
        path: RelPath,
        size: u64,
    },
    Uploading {
        path: RelPath,
    },
    Uploaded {
        path: RelPath,
        size: u64,
    },
    Deleted {
        path: RelPath,
    },
    /// A drive task brought a file from the server.
    Downloaded {
        path: RelPath,
        size: u64,
    },
    Restored {
        path: RelPath,
        size: u64,
    },
    /// Bytes moved over the network (chunk bodies and control requests).
    Transferred {
        bytes: u64,
    },
    /// A path left out or not processed; the text says why. Not an error of the task.
    Skipped {
        path: String,
        reason: String,
    },
    /// A path that failed this pass; the task reports failure at the end.
    Failed {
        path: String,
        reason: String,
    },
}

pub trait Progress: Send + Sync {
    fn event(&self, event: ProgressEvent);
}

/// Discards every event.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: ProgressEvent) {}
}
