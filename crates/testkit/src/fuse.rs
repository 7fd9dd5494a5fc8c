//! File systems of our own for the reliability tests, mounted through FUSE: the Python
//! scripts beside this file (`casefold_fs.py`, `powerloss_fs.py`), run with the test servers'
//! Python (scripts/test-servers installs fusepy and Debian's libfuse2).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One of our file systems mounted at a folder; unmounted when dropped.
pub struct FuseMount {
    at: PathBuf,
    process: Child,
}

impl FuseMount {
    /// Mounts `script` (a file beside this one) over folder `backing` at `at`, with `args`
    /// after those two, and waits until the mount is there.
    pub fn mount(script: &str, backing: &Path, at: &Path, args: &[String]) -> FuseMount {
        let python = crate::cloud::tools_dir().join("venv/bin/python");
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(script);
        std::fs::create_dir_all(at).expect("mount point");
        let process = Command::new(&python)
            .arg(&script)
            .arg(backing)
            .arg(at)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/test-servers)", python.display()));
        let mounted = FuseMount {
            at: at.to_path_buf(),
            process,
        };
        crate::wait_until(20, "the FUSE mount", || is_mounted(at));
        mounted
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        unmount(&self.at);
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Whether something is mounted at `at`.
pub fn is_mounted(at: &Path) -> bool {
    let point = at.to_string_lossy();
    std::fs::read_to_string("/proc/mounts")
        .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(1) == Some(&*point)))
}

/// Detaches whatever is mounted at `at` (lazily: a process still inside it keeps it until it
/// lets go, and nothing new gets in).
pub fn unmount(at: &Path) {
    let _ = Command::new("umount").arg("-l").arg(at).status();
}
