//! SFTP host keys: pinned per connection, checked before any connection is made.
//!
//! OpenDAL's SFTP service runs the system's `ssh`, which checks a server's key against the
//! user's known_hosts only: it takes no known_hosts file and no ssh option from us. So a
//! connection records the fingerprint of the host key its user checked (`host_key`, as
//! `ssh-keygen -l` prints it: `SHA256:...`; required), and before each use:
//! - if the user's known_hosts lists keys for the host, one of them must have the pinned
//!   fingerprint, or the connection is refused (the host's key changed, or someone put another
//!   key there);
//! - if it lists none, the host's keys are fetched (`ssh-keyscan`) and the one with the pinned
//!   fingerprint, and only that one, is added to known_hosts; none matching is refused.
//!
//! Then `ssh` connects with strict checking against that file, so a server that shows another
//! key is refused by ssh itself. A `known_hosts_strategy` other than `strict` is refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The connection option holding the pinned fingerprint.
pub const OPTION: &str = "host_key";

/// Where a host key is looked up: known_hosts' name for `endpoint` (`host`, or `[host]:port`
/// off port 22), and the host and port to fetch its keys from.
#[derive(Debug, PartialEq, Eq)]
pub struct Host {
    pub host: String,
    pub port: u16,
}

impl Host {
    /// `endpoint` as OpenDAL's SFTP service takes it: `ssh://[user@]host[:port]` or
    /// `[user@]host[:port]`.
    pub fn parse(endpoint: &str) -> Result<Host, String> {
        let rest = endpoint.strip_prefix("ssh://").unwrap_or(endpoint);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("SFTP endpoint {endpoint}: bad port {p:?}"))?,
            ),
            _ => (rest, 22),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.starts_with('-') {
            return Err(format!("SFTP endpoint {endpoint}: no host name"));
        }
        Ok(Host {
            host: host.to_string(),
            port,
        })
    }

    /// The name known_hosts files it under.
    pub fn known_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

/// Refuses a fingerprint that is not `SHA256:` and 43 base64 characters.
pub fn check_fingerprint(fp: &str) -> Result<(), String> {
    let body = fp.strip_prefix("SHA256:").ok_or_else(|| {
        format!("host key fingerprint {fp:?}: give it as ssh-keygen -l prints it (SHA256:...)")
    })?;
    let base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    if body.len() != 43 || !body.chars().all(base64) {
        return Err(format!(
            "host key fingerprint {fp:?}: not a SHA256 fingerprint (43 base64 characters after SHA256:)"
        ));
    }
    Ok(())
}

/// The user's known_hosts, the one `ssh` reads.
pub fn user_known_hosts() -> Result<PathBuf, String> {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".ssh").join("known_hosts"))
        .ok_or_else(|| "SFTP: HOME is not set, so there is no known_hosts to check".to_string())
}

/// Makes sure `known_hosts` holds the key of `endpoint`'s host whose fingerprint is `pinned`
/// (adding it from the host when the file has no key for it), or says why not.
pub fn ensure_pinned(endpoint: &str, pinned: &str, known_hosts: &Path) -> Result<(), String> {
    check_fingerprint(pinned)?;
    let host = Host::parse(endpoint)?;
    let name = host.known_name();
    let listed = listed_fingerprints(&name, known_hosts)?;
    if !listed.is_empty() {
        if listed.iter().any(|f| f == pinned) {
            return Ok(());
        }
        return Err(format!(
            "SFTP {name}: {} lists another host key for it ({}) than this connection's \
             {pinned}: the server's key changed or the file was changed; check with the \
             server's administrator, then fix the file (ssh-keygen -R '{name}') or the connection",
            known_hosts.display(),
            listed.join(", ")
        ));
    }
    let line = scanned_line(&host, pinned)?;
    append(known_hosts, &line)
}

/// The fingerprints `known_hosts` lists for `name` (none when the file does not exist).
fn listed_fingerprints(name: &str, known_hosts: &Path) -> Result<Vec<String>, String> {
    if !known_hosts.exists() {
        return Ok(Vec::new());
    }
    let out = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-F")
        .arg(name)
        .arg("-f")
        .arg(known_hosts)
        .output()
        .map_err(|e| format!("SFTP: running ssh-keygen: {e}"))?;
    // Exit status 1 with no output: no key for the host.
    Ok(fingerprints(&String::from_utf8_lossy(&out.stdout)))
}

/// Every `SHA256:` fingerprint in ssh-keygen's output, skipping its comment lines.
fn fingerprints(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .filter(|w| w.starts_with("SHA256:"))
        .map(str::to_string)
        .collect()
}

/// The host's key line (as known_hosts holds it) whose fingerprint is `pinned`.
fn scanned_line(host: &Host, pinned: &str) -> Result<String, String> {
    let out = Command::new("ssh-keyscan")
        .arg("-p")
        .arg(host.port.to_string())
        .arg("-T")
        .arg("10")
        .arg("--")
        .arg(&host.host)
        .output()
        .map_err(|e| format!("SFTP: running ssh-keyscan: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return Err(format!(
            "SFTP {}: the server showed no host key",
            host.known_name()
        ));
    }
    for line in lines {
        if fingerprint_of_line(line)?.as_deref() == Some(pinned) {
            return Ok(line.to_string());
        }
    }
    Err(format!(
        "SFTP {}: the server's host keys do not have this connection's fingerprint {pinned}; \
         not connecting (someone may be in between, or the fingerprint is wrong)",
        host.known_name()
    ))
}

/// The fingerprint of one known_hosts line.
fn fingerprint_of_line(line: &str) -> Result<Option<String>, String> {
    let mut child = Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("SFTP: running ssh-keygen: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("SFTP: ssh-keygen: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("SFTP: ssh-keygen: {e}"))?;
    Ok(fingerprints(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .next())
}

/// Adds `line` to `known_hosts`, making the file (0600) and its folder (0700) if needed.
fn append(known_hosts: &Path, line: &str) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let fail = |e: std::io::Error| {
        format!(
            "SFTP: adding the host key to {}: {e}",
            known_hosts.display()
        )
    };
    if let Some(dir) = known_hosts.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(known_hosts)
        .map_err(fail)?;
    f.write_all(format!("{line}\n").as_bytes()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIneY64+vzqSyQFSNV62k1UG2G46RJGViCgfr2wjYwjb";

    #[test]
    fn endpoints_name_their_host_as_known_hosts_does() {
        let h = Host::parse("ssh://alice@127.0.0.1:2222").expect("parses");
        assert_eq!((h.host.as_str(), h.port), ("127.0.0.1", 2222));
        assert_eq!(h.known_name(), "[127.0.0.1]:2222");
        assert_eq!(
            Host::parse("files.example.com")
                .expect("parses")
                .known_name(),
            "files.example.com"
        );
        assert_eq!(
            Host::parse("bob@[::1]:22").expect("parses").known_name(),
            "::1"
        );
        assert!(Host::parse("ssh://alice@:22").is_err());
        assert!(Host::parse("-oProxyCommand=x").is_err());
        assert!(Host::parse("host:notaport").is_err());
    }

    #[test]
    fn fingerprints_are_checked_for_form() {
        assert!(check_fingerprint("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU").is_ok());
        assert!(check_fingerprint("MD5:aa:bb").is_err());
        assert!(check_fingerprint("SHA256:short").is_err());
        assert!(check_fingerprint("").is_err());
    }

    /// The fingerprint of `KEY`, as ssh-keygen computes it.
    fn key_fingerprint() -> String {
        fingerprint_of_line(&format!("host {KEY}"))
            .expect("ssh-keygen runs")
            .expect("a fingerprint")
    }

    #[test]
    fn a_known_key_with_the_pinned_fingerprint_passes_and_another_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, format!("[127.0.0.1]:2222 {KEY}\n")).expect("write");
        let fp = key_fingerprint();
        assert_eq!(fp, "SHA256:DFhf/avnB5+f0HZzY3j/uQFyk6FGBttgbcw8JLHk8N4");
        assert_eq!(ensure_pinned("ssh://u@127.0.0.1:2222", &fp, &file), Ok(()));
        let other = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
        let refused = ensure_pinned("ssh://u@127.0.0.1:2222", other, &file)
            .expect_err("another key is listed");
        assert!(refused.contains("another host key"), "{refused}");
        assert!(refused.contains(&fp), "{refused}");
        // The file is left as it was.
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            format!("[127.0.0.1]:2222 {KEY}\n")
        );
    }

    #[test]
    fn a_bad_fingerprint_is_refused_before_anything_is_looked_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("known_hosts");
        let refused =
            ensure_pinned("ssh://u@127.0.0.1:1", "SHA256:nope", &file).expect_err("bad form");
        assert!(refused.contains("not a SHA256 fingerprint"), "{refused}");
        assert!(!file.exists());
    }
}
