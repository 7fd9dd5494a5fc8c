//! Finding cairn servers on the local network: `server run` announces `_cairn._tcp.local.` over
//! multicast DNS (DNS-SD), and `connect --discover` browses for it.
//!
//! An announcement is a hint, not trust: anyone on the network can send one. It carries the
//! certificate's fingerprint so that the connection saved from it pins that certificate, and a
//! forged announcement naming a real server's address with another fingerprint fails the TLS
//! handshake instead of being believed. Everything read from the network is checked here
//! (lengths, hex, port) and a bad announcement is skipped with a note.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mdns_sd::{IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};

/// The DNS-SD service type of a cairn server.
pub const SERVICE_TYPE: &str = "_cairn._tcp.local.";
/// TXT key of the certificate's SHA-256, as 64 lowercase hex digits.
const TXT_FINGERPRINT: &str = "fp";
/// TXT key of the server's version.
const TXT_VERSION: &str = "version";
/// Longest version accepted from the network (ours are like 0.1.0).
const MAX_VERSION_LEN: usize = 32;
/// An instance name is one DNS label.
const MAX_NAME_LEN: usize = 63;
/// Most servers (and most skipped announcements) kept from one browse: a flood of forged
/// announcements must not grow the list without end.
const MAX_FOUND: usize = 256;

/// What `server run` announces and how.
pub struct AnnounceOptions {
    /// The instance name people see (the host name unless `--announce-name`).
    pub name: String,
    /// The addresses the server listens on.
    pub listen: Vec<SocketAddr>,
    /// The certificate's fingerprint, in any form `fingerprint_hex` reads.
    pub fingerprint: String,
    /// Announce on loopback too (tests; a server listening only on loopback otherwise
    /// announces nothing, as nobody else could reach it).
    pub loopback: bool,
}

/// A running announcement; dropping it says goodbye on the network.
pub struct Announcer {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Drop for Announcer {
    fn drop(&mut self) {
        // Best effort: a server that stops should vanish from others' lists at once, but an
        // unreachable network must not hold up its exit.
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

/// Starts announcing. `Ok(None)` when nothing is to be announced (listening on loopback only).
///
/// # Errors
/// When the name is not one DNS label, or the multicast socket cannot be opened.
pub fn announce(opts: &AnnounceOptions) -> Result<Option<Announcer>> {
    check_name(&opts.name)?;
    let Some((port, ips, everywhere)) = announced_addresses(&opts.listen, opts.loopback) else {
        return Ok(None);
    };
    let fingerprint = fingerprint_hex(&opts.fingerprint)
        .with_context(|| format!("the certificate fingerprint {}", opts.fingerprint))?;
    let daemon = ServiceDaemon::new().context("starting the mDNS announcer")?;
    if !opts.loopback {
        daemon
            .disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])
            .context("leaving loopback out of the mDNS announcer")?;
    }
    let host = format!("{}.local.", host_label(&opts.name));
    let txt = [
        (TXT_FINGERPRINT, fingerprint.as_str()),
        (TXT_VERSION, env!("CARGO_PKG_VERSION")),
    ];
    let mut info = ServiceInfo::new(SERVICE_TYPE, &opts.name, &host, &ips[..], port, &txt[..])
        .with_context(|| format!("describing the service {}", opts.name))?;
    if everywhere {
        // Listening on every address: announce each interface's own, kept up to date; only
        // the IPv4 ones when the server listens on 0.0.0.0 and not on [::].
        info = info.enable_addr_auto();
        let any_v6 = opts
            .listen
            .iter()
            .any(|a| a.port() == port && a.is_ipv6() && a.ip().is_unspecified());
        if !any_v6 {
            info.set_interfaces(vec![IfKind::IPv4]);
        }
    }
    let fullname = info.get_fullname().to_string();
    daemon
        .register(info)
        .with_context(|| format!("announcing {fullname}"))?;
    Ok(Some(Announcer { daemon, fullname }))
}

/// An instance name is one DNS label of 1 to 63 bytes, without control characters.
///
/// # Errors
/// When `name` is not.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        anyhow::bail!(
            "the announced name {name:?} must be 1 to {MAX_NAME_LEN} bytes without control characters"
        );
    }
    Ok(())
}

/// The port and addresses to announce for `listen`, and whether the server listens everywhere.
/// One port only (an SRV record has one): the first address's. `None` when nothing is left.
fn announced_addresses(listen: &[SocketAddr], loopback: bool) -> Option<(u16, Vec<IpAddr>, bool)> {
    let usable: Vec<&SocketAddr> = listen
        .iter()
        .filter(|a| loopback || !a.ip().is_loopback())
        .collect();
    let port = usable.first()?.port();
    let same_port = usable.iter().filter(|a| a.port() == port);
    let everywhere = same_port.clone().any(|a| a.ip().is_unspecified());
    let ips = if everywhere {
        Vec::new()
    } else {
        same_port.map(|a| a.ip()).collect()
    };
    Some((port, ips, everywhere))
}

/// A DNS host label made from an instance name: letters, digits and '-'.
fn host_label(name: &str) -> String {
    let label: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    match label.trim_matches('-') {
        "" => "cairn".into(),
        trimmed => trimmed.to_string(),
    }
}

/// A fingerprint as 64 lowercase hex digits, from either that or the colon-separated form
/// `server fingerprint` prints. `None` for anything else.
pub fn fingerprint_hex(text: &str) -> Option<String> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// The colon-separated uppercase form `server run` and `server fingerprint` print, so a person
/// can compare the two by eye.
pub fn fingerprint_display(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

/// One server found on the network, checked.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub addr: SocketAddr,
    /// 64 lowercase hex digits.
    pub fingerprint: String,
    pub version: String,
}

impl Found {
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// Browses for `wait` and returns the servers found, sorted by name, and the notes about the
/// announcements skipped.
///
/// # Errors
/// When the multicast socket cannot be opened.
pub fn browse(wait: Duration) -> Result<(Vec<Found>, Vec<String>)> {
    let daemon = ServiceDaemon::new().context("starting the mDNS browser")?;
    let events = daemon
        .browse(SERVICE_TYPE)
        .with_context(|| format!("browsing for {SERVICE_TYPE}"))?;
    let deadline = Instant::now() + wait;
    // By full name: a server answers several times; the last answer counts.
    let mut found = BTreeMap::new();
    let mut notes = BTreeMap::new();
    let mut dropped = 0_usize;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(event) = events.recv_timeout(left) else {
            break;
        };
        if let ServiceEvent::ServiceResolved(service) = event {
            let fullname = service.get_fullname().to_string();
            match check(&service) {
                Ok(f) if found.len() < MAX_FOUND || found.contains_key(&fullname) => {
                    notes.remove(&fullname);
                    found.insert(fullname, f);
                }
                Ok(_) => dropped += 1,
                Err(why) if notes.len() < MAX_FOUND || notes.contains_key(&fullname) => {
                    notes.insert(fullname, why);
                }
                Err(_) => dropped += 1,
            }
        }
    }
    let _ = daemon.shutdown();
    let mut list: Vec<Found> = found.into_values().collect();
    list.sort_by(|a, b| a.name.cmp(&b.name).then(a.addr.cmp(&b.addr)));
    let mut notes: Vec<String> = notes
        .into_iter()
        .map(|(name, why)| format!("skipped the announcement {}: {why}", shown(&name)))
        .collect();
    if dropped > 0 {
        notes.push(format!(
            "ignored {dropped} more announcements past the first {MAX_FOUND}"
        ));
    }
    Ok((list, notes))
}

/// Network text made safe to print (no control characters, bounded).
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(2 * MAX_NAME_LEN).collect();
    crate::output::escape(&cut).into_owned()
}

/// Checks one announcement; the error says what is wrong with it.
fn check(service: &ResolvedService) -> Result<Found, String> {
    let fullname = service.get_fullname();
    let name = fullname
        .strip_suffix(SERVICE_TYPE)
        .and_then(|n| n.strip_suffix('.'))
        .ok_or("its name is not of the service _cairn._tcp")?;
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("its name is not 1 to {MAX_NAME_LEN} bytes"));
    }
    let port = service.get_port();
    if port == 0 {
        return Err("port 0".into());
    }
    let fp = txt(service, TXT_FINGERPRINT)?;
    let fingerprint = (fp.len() == 64)
        .then(|| fingerprint_hex(&fp))
        .flatten()
        .ok_or("its fingerprint is not 64 hex digits")?;
    let version = txt(service, TXT_VERSION)?;
    if version.len() > MAX_VERSION_LEN || version.chars().any(char::is_control) {
        return Err(format!(
            "its version is longer than {MAX_VERSION_LEN} bytes or has control characters"
        ));
    }
    let ip = best_address(service).ok_or("no address reachable without a scope")?;
    Ok(Found {
        name: shown(name),
        addr: SocketAddr::new(ip, port),
        fingerprint,
        version,
    })
}

/// A TXT value as text; the record itself is at most 255 bytes.
fn txt(service: &ResolvedService, key: &str) -> Result<String, String> {
    let value = service
        .get_property_val(key)
        .flatten()
        .ok_or_else(|| format!("no TXT value {key}"))?;
    String::from_utf8(value.to_vec()).map_err(|_| format!("TXT value {key} is not UTF-8"))
}

/// IPv4 first (the usual LAN), then a global IPv6; an IPv6 link-local address needs an
/// interface scope a URL cannot carry everywhere, so it is not used.
fn best_address(service: &ResolvedService) -> Option<IpAddr> {
    let mut ips: Vec<IpAddr> = service
        .get_addresses()
        .iter()
        .map(|a| a.to_ip_addr())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_multicast(),
            IpAddr::V6(v6) => {
                !v6.is_unspecified() && !v6.is_multicast() && (v6.segments()[0] & 0xffc0) != 0xfe80
            }
        })
        .collect();
    ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    ips.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_in_both_forms_and_nothing_else() {
        let hex = "ab".repeat(32);
        assert_eq!(fingerprint_hex(&hex).as_deref(), Some(hex.as_str()));
        let colons = fingerprint_display(&hex);
        assert_eq!(colons, "AB:".repeat(31) + "AB");
        assert_eq!(fingerprint_hex(&colons).as_deref(), Some(hex.as_str()));
        assert_eq!(fingerprint_hex(&"ab".repeat(31)), None);
        assert_eq!(
            fingerprint_hex(&("zz".to_string() + &"ab".repeat(31))),
            None
        );
    }

    #[test]
    fn loopback_only_servers_announce_nothing_unless_asked() {
        let lo: Vec<SocketAddr> = vec!["127.0.0.1:8443".parse().expect("address")];
        assert!(announced_addresses(&lo, false).is_none());
        let (port, ips, everywhere) = announced_addresses(&lo, true).expect("announced");
        assert_eq!((port, ips.len(), everywhere), (8443, 1, false));
        let all: Vec<SocketAddr> = vec![
            "127.0.0.1:9000".parse().expect("address"),
            "[::]:8443".parse().expect("address"),
        ];
        let (port, ips, everywhere) = announced_addresses(&all, false).expect("announced");
        assert_eq!((port, ips.len(), everywhere), (8443, 0, true));
    }

    #[test]
    fn host_labels_are_letters_digits_and_dashes() {
        assert_eq!(host_label("Anna's server"), "Anna-s-server");
        assert_eq!(host_label("..."), "cairn");
    }
}
