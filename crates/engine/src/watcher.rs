//! The watcher: inotify (through `notify`) turned into "something changed under this path".
//! Only a hint: the scanner stays the truth, so a lost event costs latency, never data.

use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::{Error, Result};

/// Keeps the watches alive; dropping it stops them.
pub struct LocalWatcher {
    inner: notify::RecommendedWatcher,
}

impl LocalWatcher {
    /// Starts watching `root` recursively (a task added while the agent runs).
    ///
    /// # Errors
    /// When the OS refuses the watch (the folder is missing, or the inotify limit is reached).
    pub fn add(&mut self, root: &Path) -> Result<()> {
        self.inner
            .watch(root, RecursiveMode::Recursive)
            .map_err(|e| Error::Refused(format!("watching {}: {e}", root.display())))
    }

    /// Stops watching `root`; a root that was not watched (or vanished) is not an error.
    pub fn remove(&mut self, root: &Path) {
        let _ = self.inner.unwatch(root);
    }
}

/// Watches every folder in `roots` recursively; changed paths arrive on the receiver.
///
/// # Errors
/// When the OS refuses a watch (e.g. the inotify watch limit is reached).
pub fn watch(roots: &[PathBuf]) -> Result<(LocalWatcher, mpsc::UnboundedReceiver<PathBuf>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Opening or reading a file (the scanner lists every folder on each pass) is not a
        // change: forwarding those would make every pass trigger the next one.
        if let Some(event) = res
            .ok()
            .filter(|e| !matches!(e.kind, notify::EventKind::Access(_)))
        {
            for p in event.paths {
                let _ = tx.send(p);
            }
        }
    })
    .map_err(|e| Error::Refused(format!("starting the file watcher: {e}")))?;
    let mut watcher = LocalWatcher { inner };
    for r in roots {
        watcher.add(r)?;
    }
    Ok((watcher, rx))
}
