//! One pass of a task at a time on this computer. The agent and `cairn run` both take the
//! task's lock before a pass: two passes of one task would race on its index rows, its upload
//! records and its temporaries. The server's device claim does not cover this (a one-off run
//! only probes it, and cloud tasks have no server). The lock is the kernel's (`flock`), so a
//! killed process leaves nothing to clean up.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};

use anyhow::{Context, Result};

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
        Self::try_take(home, name)?
    }

    /// Takes task `name`'s lock, waiting up to `limit` for a pass another process runs (the
    /// agent picking up a task just added) to end: what a one-off `cairn run` does, so a
    /// script that runs a task beside the agent gets its pass rather than a refusal. Says once
    /// on stderr that it waits.
    ///
    /// # Errors
    /// The other pass still runs after `limit`, or the lock file cannot be made.
    pub async fn wait(home: &Home, name: &str, limit: std::time::Duration) -> Result<TaskLock> {
        let until = std::time::Instant::now() + limit;
        let mut said = false;
        loop {
            match Self::try_take(home, name)? {
                Ok(lock) => return Ok(lock),
                Err(busy) if std::time::Instant::now() >= until => return Err(busy),
                Err(_) => {
                    if !said {
                        eprintln!("task {name}: waiting for another process's pass of it to end");
                        said = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// The lock, or (inner error) why another process holds it.
    fn try_take(home: &Home, name: &str) -> Result<std::result::Result<TaskLock, anyhow::Error>> {
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
                return Ok(Err(anyhow::anyhow!(
                    "another cairn process ({who}the agent or a second `cairn run`) is running a \
                     pass of task {name}; this one changed nothing: run it again when that pass ends"
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        // Who holds it, for the message above; a stale number is harmless.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(Ok(TaskLock { _file: file }))
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
