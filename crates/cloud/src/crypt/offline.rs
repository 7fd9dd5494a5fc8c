//! The offline decoder: plain files back from a plain copy of an encrypted remote's objects
//! (downloaded by any tool, or a folder an encrypted task wrote to), with the exported key,
//! without a task, the provider or the network.
//!
//! It never overwrites: a file already at a destination is reported and left. A file is
//! decrypted into a temporary beside its destination and renamed into place only once every
//! segment has authenticated, so a damaged file leaves nothing half-written behind.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cairn_engine::{Error, Result};

use super::key::{read_key_file, Keys, Marker, MARKER_NAME};
use super::name::{self, NameError};
use super::segment::{plain_size, segments, Opener, HEADER, SEGMENT, TAG};
use super::RESERVED_PREFIX;

/// Temporary name of a file being decrypted, in its destination folder.
const PART_NAME: &str = ".cairn-decrypting";

/// What [`decrypt_tree`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecryptReport {
    pub files: u64,
    pub folders: u64,
    pub links: u64,
    /// Plain bytes written.
    pub bytes: u64,
    /// Source paths left alone as not cairn's (names not in cairn's form), with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Source paths that could not be restored (damaged, or the destination exists), with why.
    pub failed: Vec<(PathBuf, String)>,
}

/// Decrypts every object under `src` (a plain copy of an encrypted remote's root) into
/// `dst`, with the key file `key_file` written by `export_key`. Files that fail are listed in
/// the report and the others restored.
///
/// # Errors
/// When the key file cannot be read, `src` is not a folder, `dst` cannot be made, or `src`
/// holds a marker of another key (then nothing is written).
pub fn decrypt_tree(key_file: &Path, src: &Path, dst: &Path) -> Result<DecryptReport> {
    let key = read_key_file(key_file)?;
    let md = fs::metadata(src).map_err(Error::io("reading the encrypted copy", src))?;
    if !md.is_dir() {
        return Err(Error::Refused(format!(
            "{}: not a folder (give the folder holding the remote's objects)",
            src.display()
        )));
    }
    let marker = src.join(MARKER_NAME);
    match fs::read(&marker) {
        Ok(bytes) => {
            let found = Marker::parse(&bytes, &marker.display().to_string())?;
            if !found.matches(&key) {
                return Err(Error::Refused(format!(
                    "{}: the key is not the key of the remote copied at {} (its marker names \
                     another); nothing was written",
                    key_file.display(),
                    src.display()
                )));
            }
        }
        // A copy without its marker still decrypts: every name and segment authenticates.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("reading the marker", &marker)(e)),
    }
    fs::create_dir_all(dst).map_err(Error::io("creating the destination", dst))?;
    let keys = Keys::derive(&key);
    let mut report = DecryptReport::default();
    walk(&keys, src, dst, true, &mut report);
    Ok(report)
}

/// Decrypts the folder `src` into `dst`, in name order, recursively.
fn walk(keys: &Keys, src: &Path, dst: &Path, at_root: bool, report: &mut DecryptReport) {
    let mut children = match fs::read_dir(src).and_then(|rd| rd.collect::<Result<Vec<_>, _>>()) {
        Ok(children) => children,
        Err(e) => {
            report
                .failed
                .push((src.to_path_buf(), format!("the folder cannot be read: {e}")));
            return;
        }
    };
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let from = child.path();
        let stored = child.file_name();
        let Some(stored) = stored.to_str() else {
            report.skipped.push((from, NameError::Foreign.to_string()));
            continue;
        };
        // The marker, and cairn's own objects beside the user's tree.
        if at_root && stored.starts_with(RESERVED_PREFIX) {
            continue;
        }
        let plain = match name::decrypt_name(keys, stored) {
            Ok(plain) => plain,
            Err(e @ NameError::Foreign) => {
                report.skipped.push((from, e.to_string()));
                continue;
            }
            Err(e @ NameError::Damaged) => {
                report.failed.push((from, e.to_string()));
                continue;
            }
        };
        let to = dst.join(&plain);
        if let Err(why) = restore(keys, &from, &to, report) {
            report.failed.push((from, why));
        }
    }
}

/// Restores one entry of any kind.
fn restore(keys: &Keys, from: &Path, to: &Path, report: &mut DecryptReport) -> Result<(), String> {
    let md = fs::symlink_metadata(from).map_err(|e| format!("cannot be read: {e}"))?;
    let ft = md.file_type();
    if ft.is_dir() {
        match fs::create_dir(to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && to.is_dir() => {}
            Err(e) => return Err(format!("{} cannot be made: {e}", to.display())),
        }
        report.folders += 1;
        walk(keys, from, to, false, report);
    } else if ft.is_file() {
        report.bytes += decrypt_file(keys, from, to, md.len())?;
        report.files += 1;
    } else if ft.is_symlink() {
        let stored = fs::read_link(from).map_err(|e| format!("cannot be read: {e}"))?;
        let stored = stored.to_str().ok_or("its link target is not encrypted")?;
        let target =
            name::decrypt_target(keys, stored).map_err(|e| format!("its link target is {e}"))?;
        std::os::unix::fs::symlink(&target, to)
            .map_err(|e| format!("{} cannot be made: {e}", to.display()))?;
        report.links += 1;
    } else {
        return Err("a special file; not an object of the remote".into());
    }
    Ok(())
}

/// Decrypts the stored file `from` (`stored_len` bytes) to the new file `to`; its plain size.
fn decrypt_file(keys: &Keys, from: &Path, to: &Path, stored_len: u64) -> Result<u64, String> {
    if fs::symlink_metadata(to).is_ok() {
        return Err(format!("{} exists; not overwritten", to.display()));
    }
    let plain_len = plain_size(stored_len).ok_or_else(|| {
        format!(
            "its size ({stored_len} bytes) is no encrypted file's size: truncated, or not \
             encrypted by cairn"
        )
    })?;
    let part = to.with_file_name(PART_NAME);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .map_err(|e| format!("{} cannot be made: {e}", part.display()))?;
    let written = File::open(from)
        .map_err(|e| format!("cannot be opened: {e}"))
        .and_then(|mut input| copy_plain(keys, &mut input, &mut out, plain_len))
        .and_then(|()| out.sync_all().map_err(|e| format!("writing failed: {e}")))
        .and_then(|()| {
            fs::rename(&part, to).map_err(|e| format!("{} cannot be made: {e}", to.display()))
        });
    if written.is_err() {
        let _ = fs::remove_file(&part);
    }
    written.map(|()| plain_len)
}

/// Reads a stored file of `plain_len` plain bytes from `input`, writes its plaintext.
fn copy_plain(keys: &Keys, input: &mut File, out: &mut File, plain_len: u64) -> Result<(), String> {
    let mut header = [0u8; HEADER];
    input
        .read_exact(&mut header)
        .map_err(|e| format!("reading failed: {e}"))?;
    let mut opener = Opener::new(keys, &header).map_err(|e| e.to_string())?;
    let count = segments(plain_len);
    let mut buf = Vec::with_capacity(SEGMENT + TAG);
    for i in 0..count {
        let last = i + 1 == count;
        let len = if last {
            (plain_len - SEGMENT as u64 * (count - 1)) as usize + TAG
        } else {
            SEGMENT + TAG
        };
        buf.resize(len, 0);
        input
            .read_exact(&mut buf)
            .map_err(|e| format!("reading failed (did it change meanwhile?): {e}"))?;
        opener.open(&mut buf, last).map_err(|e| e.to_string())?;
        out.write_all(&buf)
            .map_err(|e| format!("writing failed: {e}"))?;
    }
    Ok(())
}
