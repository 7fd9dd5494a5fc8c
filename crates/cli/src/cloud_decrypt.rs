//! `cairn cloud decrypt --key FILE SRC DST`: plain files back from a plain copy of an
//! encrypted remote's objects, with the key `cairn cloud export-key` wrote; no task, no
//! connection, no network (the format is docs/encryption.md).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::output::{escape, escape_path};

#[derive(Args)]
pub struct DecryptCmd {
    /// The key file written by `cairn cloud export-key`.
    #[arg(long)]
    key: PathBuf,
    /// A folder holding a plain copy of the encrypted remote's objects (its root).
    src: PathBuf,
    /// Where the plain files go (made if missing; nothing in it is overwritten).
    dst: PathBuf,
}

/// Runs the decryption and prints what was restored; fails when any file could not be.
pub fn run(cmd: &DecryptCmd) -> Result<()> {
    let report =
        cairn_cloud::crypt::decrypt_tree(&cmd.key, &cmd.src, &cmd.dst).with_context(|| {
            format!(
                "decrypting {} into {}",
                escape_path(&cmd.src),
                escape_path(&cmd.dst)
            )
        })?;
    for (path, why) in &report.skipped {
        eprintln!("skipped {}: {}", escape_path(path), escape(why));
    }
    for (path, why) in &report.failed {
        eprintln!("failed {}: {}", escape_path(path), escape(why));
    }
    println!(
        "restored {} files ({} bytes), {} folders, {} links into {}",
        report.files,
        report.bytes,
        report.folders,
        report.links,
        escape_path(&cmd.dst)
    );
    if !report.failed.is_empty() {
        bail!(
            "{} entries could not be restored (listed above); the others were",
            report.failed.len()
        );
    }
    Ok(())
}
