//! `cairn cloud buckets NAME`: the buckets (Azure: containers) a saved connection can see.
//!
//! A refused list (seed 003: a credential allowed into one bucket only) and a provider with
//! no list both end in the same advice: name the bucket by hand with `cloud edit --bucket`.

use anyhow::{bail, Context, Result};
use cairn_cloud::buckets::{self, BucketListing};
use cairn_cloud::provider::Provider;

use crate::config::{read_stdin_line, Home};

pub async fn run(name: &str) -> Result<()> {
    let home = Home::locate()?;
    let config = home.load()?;
    let conn = config
        .clouds
        .get(name)
        .with_context(|| format!("no cloud connection named {name}"))?;
    let mut secrets = home
        .credentials()?
        .clouds
        .get(name)
        .cloned()
        .unwrap_or_default();
    for key in &conn.prompt {
        eprint!("{key} for cloud connection {name}: ");
        secrets.0.insert(key.clone(), read_stdin_line()?);
    }
    let word = Provider::from_id(&conn.provider)
        .map(|p| p.bucket_word())
        .unwrap_or("bucket");
    let flag = if word == "container" {
        "--option container=NAME"
    } else {
        "--bucket NAME"
    };
    let by_hand = format!("name the {word} by hand: `cairn cloud edit {name} {flag}`");
    match buckets::list(conn, &secrets)
        .await
        .map_err(|e| anyhow::anyhow!("connection {name}: {e}"))?
    {
        BucketListing::Listed(names) => {
            let current = conn
                .options
                .get("bucket")
                .or(conn.options.get("container"));
            if names.is_empty() {
                println!("connection {name} sees no {word}s");
            }
            for n in &names {
                let mark = if Some(n) == current { "  (this connection's)" } else { "" };
                println!("{n}{mark}");
            }
            Ok(())
        }
        BucketListing::Denied { status, reason } => bail!(
            "connection {name}: the service refused to list {word}s ({status} {reason}); the credential may be allowed into one {word} and not the list, or be wrong: {by_hand}"
        ),
        BucketListing::NotOffered(why) => {
            bail!("connection {name}: listing {word}s is not offered: {why}; {by_hand}")
        }
    }
}
