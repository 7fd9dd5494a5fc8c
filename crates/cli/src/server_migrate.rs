//! `cairn server migrate`: moves a stopped embedded server's data folder to PostgreSQL (and
//! its chunks to another store, S3 say) through `cairn_server::migration`, showing progress on
//! stderr and a summary on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cairn_server::datadir::RunLock;
use cairn_server::meta::{PgAddress, TableRows};
use cairn_server::migration::{self, ObjectTally, Progress, Target};
use cairn_store::StoreLocation;
use clap::Args;

#[derive(Args)]
pub struct MigrateCmd {
    /// The data folder of the embedded server to move (it must be stopped).
    #[arg(long, value_name = "DATA_DIR")]
    from: PathBuf,
    /// The PostgreSQL database to move the metadata to: postgres://USER:PASSWORD@HOST:PORT/DB
    /// (or libpq's key=value form). It must hold no cairn data.
    #[arg(long, value_name = "URL")]
    to_metadata: String,
    /// Copy the chunks to this store (s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION, or a
    /// path) [default: keep them where they are]. S3 keys come from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY.
    #[arg(long, value_name = "URL")]
    to_store: Option<String>,
}

/// Progress on stderr: a line per table, and the object count at most once a second.
struct StderrProgress {
    last: Mutex<Option<Instant>>,
}

const EVERY: Duration = Duration::from_secs(1);

impl Progress for StderrProgress {
    fn copying_objects(&self, from: &str, to: &str) {
        eprintln!("copying chunks from {from} to {to}");
    }

    fn object(&self, tally: &ObjectTally) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        *last = Some(Instant::now());
        eprintln!("  {}", objects_line(tally));
    }

    fn table(&self, rows: &TableRows) {
        eprintln!("copied table {} ({} rows)", rows.table, rows.rows);
    }
}

fn objects_line(t: &ObjectTally) -> String {
    format!(
        "{} objects copied ({} bytes), {} already there",
        t.copied, t.copied_bytes, t.skipped
    )
}

pub async fn run(cmd: MigrateCmd) -> Result<()> {
    let target = Target {
        metadata: PgAddress::parse(&cmd.to_metadata)?,
        store: cmd
            .to_store
            .as_deref()
            .map(StoreLocation::parse)
            .transpose()?,
        credentials: None,
    };
    let from = cmd.from;
    if !from.is_dir() {
        bail!(
            "{} is not a cairn data folder (no such folder)",
            from.display()
        );
    }
    // Held to the end, so no server starts on the folder while it moves.
    let _running = RunLock::take(&from)?;
    let rt = tokio::runtime::Handle::current();
    // Without its password, as every message shows an address.
    let shown = target.metadata.to_string();
    let report = tokio::task::spawn_blocking(move || {
        let progress = StderrProgress {
            last: Mutex::new(None),
        };
        migration::migrate(&from, &target, &rt, &progress)
    })
    .await??;
    let mut out = std::io::stdout().lock();
    writeln!(out, "migrated to {shown}")?;
    for t in &report.tables {
        writeln!(out, "  {:<18} {:>10} rows", t.table, t.rows)?;
    }
    match &report.objects {
        Some(tally) => writeln!(out, "chunks: {}", objects_line(tally))?,
        None => writeln!(out, "chunks: left where they are")?,
    }
    writeln!(out, "chunk store: {}", report.store)?;
    writeln!(
        out,
        "the old metadata is kept as {}; start the server with --metadata URL from now on",
        report.kept.display()
    )?;
    Ok(())
}
