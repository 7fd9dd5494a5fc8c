//! One pass of a task at a time on this computer. The agent and `cairn run` both take the
//! task's lock before a pass: two passes of one task would race on its index rows, its upload
//! records and its temporaries. The server's device claim does not cover this (a one-off run
//! only probes it, and cloud tasks have no server). The lock is the kernel's (`flock`), so a
//! killed process leaves nothing to clean up.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};

use anyhow::{bail, Context, Result};

use crate::config::Home;

/// Held while a pass runs; the lock goes with the file when this is dropped.
pub struct TaskLock {
    _file: File,
}

impl TaskLock {
    /// Takes task `name`'s lock, or says which process holds it.
    ///
    /// # Errors
    /// Another process runs a pass of the task, or the lock file cannot be made.
    pub fn take(home: &Home, name: &str) -> Result<TaskLock> {
        let path = home.lock_path(name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.chars().all(|c| c.is_ascii_digit()) && !holder.is_empty() {
                    format!("process {holder}, ")
                } else {
                    String::new()
                };
                bail!(
                    "another cairn process ({who}the agent or a second `cairn run`) is running a \
                     pass of task {name}; this one changed nothing: run it again when that pass ends"
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        // Who holds it, for the message above; a stale number is harmless.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(TaskLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_pass_of_a_task_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = Home {
            config_dir: dir.path().to_path_buf(),
            data_dir: dir.path().to_path_buf(),
        };
        let first = TaskLock::take(&home, "docs").expect("first pass");
        let err = TaskLock::take(&home, "docs")
            .err()
            .expect("second pass refused");
        let text = format!("{err:#}");
        assert!(text.contains("is running a pass of task docs"), "{text}");
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        // Another task is not held up.
        let other = TaskLock::take(&home, "photos").expect("another task");
        drop(first);
        drop(other);
        TaskLock::take(&home, "docs").expect("free again once the first pass ended");
    }
}
