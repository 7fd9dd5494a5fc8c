//! `cairn connect --discover`: the URL and the fingerprint come from an announcement on the
//! local network, which anyone there can send. So the fingerprint is shown and confirmed
//! before it is pinned, and the login that follows (as for `connect URL`) fails the TLS
//! handshake when the server at that address holds another certificate: nothing is saved.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_protocol::is_valid_name;

use super::ConnectCmd;
use crate::discovery::{browse, fingerprint_display, Found};

/// How long `--discover` listens without `--discover-seconds`: mDNS answers within about a
/// second on a quiet network, and queries are repeated once or twice in that time.
const DEFAULT_SECONDS: u64 = 3;

pub async fn discover_and_save(mut c: ConnectCmd) -> Result<()> {
    // Checked before listening for seconds, not after.
    if !is_valid_name(&c.name) {
        bail!("invalid connection name {:?}", c.name);
    }
    let wait = Duration::from_secs(c.discover.discover_seconds.unwrap_or(DEFAULT_SECONDS));
    eprintln!(
        "looking for cairn servers on the local network for {} s...",
        wait.as_secs()
    );
    let (found, notes) = tokio::task::spawn_blocking(move || browse(wait))
        .await
        .context("browsing the local network")??;
    for note in &notes {
        eprintln!("{note}");
    }
    if found.is_empty() {
        bail!(
            "no cairn server answered on the local network within {} s (servers announce \
             themselves unless started with --no-announce; see docs/deployment.md, \"Discovery\")",
            wait.as_secs()
        );
    }
    for (i, f) in found.iter().enumerate() {
        println!(
            "{:>3}  {}  {}  cairn {}",
            i + 1,
            f.name,
            f.addr,
            crate::output::escape(&f.version)
        );
        println!("     fingerprint {}", fingerprint_display(&f.fingerprint));
    }
    let chosen = pick(&found, c.discover.pick.as_deref())?;
    println!(
        "{} at {} presents the certificate with SHA-256 fingerprint\n  {}",
        chosen.name,
        chosen.addr,
        fingerprint_display(&chosen.fingerprint)
    );
    println!("(`cairn server fingerprint` on the server prints the fingerprint it really has)");
    if !c.discover.yes && !confirmed()? {
        bail!("not confirmed: nothing saved");
    }
    c.url = Some(chosen.url());
    c.fingerprint = Some(fingerprint_display(&chosen.fingerprint));
    super::save(c).await
}

/// The server `--pick` names (by number or name), or the one the user types the number of.
fn pick<'a>(found: &'a [Found], given: Option<&str>) -> Result<&'a Found> {
    let answer = match given {
        Some(g) => g.to_string(),
        None => ask(&format!("which server (1-{})? ", found.len()))?,
    };
    let answer = answer.trim();
    if let Ok(number) = answer.parse::<usize>() {
        return number
            .checked_sub(1)
            .and_then(|i| found.get(i))
            .with_context(|| {
                format!(
                    "there is no server {number}: the list has {} (1-{})",
                    found.len(),
                    found.len()
                )
            });
    }
    let mut named = found.iter().filter(|f| f.name == answer);
    match (named.next(), named.next()) {
        (Some(one), None) => Ok(one),
        (Some(_), Some(_)) => bail!(
            "several servers are announced as {:?}: pick one by its number",
            answer
        ),
        (None, _) => bail!(
            "{:?} is neither a number of the list nor the name of a server in it",
            answer
        ),
    }
}

fn confirmed() -> Result<bool> {
    let answer = ask("trust this certificate and save the connection? [y/N] ")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Asks on standard error (standard output keeps the list for scripts) and reads one line;
/// the end of input is an answer of its own: nothing was chosen.
fn ask(question: &str) -> Result<String> {
    eprint!("{question}");
    std::io::stderr()
        .flush()
        .context("writing to standard error")?;
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer from standard input")?;
    if read == 0 {
        bail!("standard input ended before an answer (use --pick N and --yes in scripts): nothing saved");
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str, port: u16) -> Found {
        Found {
            name: name.into(),
            addr: std::net::SocketAddr::from(([192, 0, 2, 1], port)),
            fingerprint: "ab".repeat(32),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn a_pick_is_a_number_of_the_list_or_a_name_in_it() {
        let list = [found("attic", 1), found("cellar", 2), found("cellar", 3)];
        assert_eq!(pick(&list, Some("2")).expect("number").addr.port(), 2);
        assert_eq!(pick(&list, Some("attic")).expect("name").addr.port(), 1);
        let err = |g: &str| format!("{:#}", pick(&list, Some(g)).expect_err(g));
        assert!(err("0").contains("no server 0"));
        assert!(err("4").contains("no server 4: the list has 3"));
        assert!(err("cellar").contains("several servers"));
        assert!(err("garage").contains("neither a number"));
    }
}
