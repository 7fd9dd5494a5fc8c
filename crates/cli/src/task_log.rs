//! A task's log file (`logs/TASK.log` under the data folder), rotated by size: when a line
//! would take it past [`Rotation::max_bytes`], `TASK.log` becomes `TASK.log.1`, `.1` becomes
//! `.2`, and so on; the oldest past [`Rotation::keep`] is deleted. `cairn log` reads the kept
//! files oldest first, so its `--lines` reach across a rotation.
//!
//! Rotation by the writer, not by logrotate: the agent runs as a user service on desktops
//! that have no logrotate entry for it. Passes of one task run one at a time (the task
//! lock), so a log has one writer nearly always; a second one that opened the file before a
//! rotation keeps appending to it under its new name `.1`, so no line is lost, and the size
//! limit is then only approximate.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// When a task's log rotates and how many old files stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The size past which the log starts a new file.
    pub max_bytes: u64,
    /// Old files kept besides the current one (0: the log is cut short at each rotation).
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 10 << 20,
            keep: 5,
        }
    }
}

/// An open task log, appending lines and rotating on the way.
pub struct TaskLog {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
}

/// The name of old file `n` (1 the newest) of the log at `path`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the task log {}", path.display()))
}

impl TaskLog {
    pub fn open(path: &Path, rotation: Rotation) -> Result<TaskLog> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let file = open_append(path)?;
        let size = file
            .metadata()
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len();
        Ok(TaskLog {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
        })
    }

    /// Appends `line` and a newline, rotating first when the line would not fit.
    pub fn append(&mut self, line: &str) -> Result<()> {
        let len = line.len() as u64 + 1;
        // A line longer than the limit still goes into a file of its own.
        if self.size > 0 && self.size + len > self.rotation.max_bytes {
            self.rotate()?;
        }
        writeln!(self.file, "{line}")
            .with_context(|| format!("writing the task log {}", self.path.display()))?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let keep = self.rotation.keep;
        let remove = |p: &Path| match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing the old task log {}", p.display()))
            }
            _ => Ok(()),
        };
        if keep == 0 {
            remove(&self.path)?;
        } else {
            remove(&rotated(&self.path, keep))?;
            for n in (1..keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    let to = rotated(&self.path, n + 1);
                    std::fs::rename(&from, &to).with_context(|| {
                        format!("renaming {} to {}", from.display(), to.display())
                    })?;
                }
            }
            let first = rotated(&self.path, 1);
            std::fs::rename(&self.path, &first).with_context(|| {
                format!("renaming {} to {}", self.path.display(), first.display())
            })?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The text of the log at `path` and its kept old files, oldest first; missing files are
/// empty. Stops at the first gap: files past it belong to no rotation of this log.
pub fn read_all(path: &Path) -> Result<String> {
    let mut parts = Vec::new();
    let mut n = 1;
    loop {
        let old = rotated(path, n);
        match std::fs::read_to_string(&old) {
            Ok(t) => parts.push(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(e).with_context(|| format!("reading {}", old.display())),
        }
        n += 1;
    }
    parts.reverse();
    match std::fs::read_to_string(path) {
        Ok(t) => parts.push(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    Ok(parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotates_by_size_keeps_n_files_and_reads_back_oldest_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("logs/t.log");
        let rotation = Rotation {
            max_bytes: 20,
            keep: 2,
        };
        let mut log = TaskLog::open(&path, rotation).expect("open");
        // Each line is 10 bytes with its newline: two fit in a file.
        for i in 0..7 {
            log.append(&format!("line {i:04}")).expect("append");
        }
        assert_eq!(
            names(&dir.path().join("logs")),
            ["t.log", "t.log.1", "t.log.2"]
        );
        for f in ["t.log", "t.log.1", "t.log.2"] {
            let len = std::fs::metadata(dir.path().join("logs").join(f))
                .expect("stat")
                .len();
            assert!(len <= 20, "{f} is {len} bytes");
        }
        // Lines 0 and 1 went with the oldest file past `keep`.
        let text = read_all(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "line 0002",
                "line 0003",
                "line 0004",
                "line 0005",
                "line 0006"
            ]
        );
    }

    #[test]
    fn a_reopened_log_counts_what_it_holds_and_keep_zero_truncates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.log");
        let rotation = Rotation {
            max_bytes: 20,
            keep: 0,
        };
        TaskLog::open(&path, rotation)
            .and_then(|mut l| l.append("line 0000"))
            .expect("first pass");
        let mut log = TaskLog::open(&path, rotation).expect("reopen");
        log.append("line 0001").expect("append");
        log.append("line 0002").expect("append");
        assert_eq!(names(dir.path()), ["t.log"]);
        assert_eq!(read_all(&path).expect("read"), "line 0002\n");
    }
}
