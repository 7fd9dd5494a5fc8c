//! Behind a load balancer or reverse proxy every connection comes from the proxy, so the
//! login throttle, the per-address connection cap and the activity log would see one address
//! for every user. The operator names the proxies they run (`--trusted-proxy CIDR`); from those
//! alone `X-Forwarded-For` is believed, read right to left past the trusted hops, so a client
//! cannot pose as another address by sending the header itself.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// Hops of `X-Forwarded-For` read at most: more proxies than this in a row is no real setup,
/// and the walk stays bounded whatever a client sends.
const MAX_HOPS: usize = 16;

/// A range of addresses: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("`{s}` is not an address range (like 10.0.0.0/8, fd00::/8 or 192.0.2.7)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is in the range; an IPv4 address written as IPv6 (`::ffff:a.b.c.d`, as a
    /// dual-stack socket reports it) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// The proxies the operator runs in front of the server.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The address a request came from: the peer's, unless the peer is a trusted proxy; then
    /// the nearest hop of `X-Forwarded-For` that no trusted proxy added. A hop that is not an
    /// address ends the walk at the proxy that passed it on.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if self.0.is_empty() || !self.trusts(peer.ip()) {
            return peer;
        }
        // Every X-Forwarded-For line, in order: proxies may append a line or extend the last.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut current = peer.ip();
        for hop in hops.iter().rev().take(MAX_HOPS) {
            if !self.trusts(current) {
                break;
            }
            match parse_hop(hop) {
                Some(ip) => current = ip,
                None => break,
            }
        }
        SocketAddr::new(canonical(current), 0)
    }
}

/// One hop: an address, maybe with a port (`192.0.2.1:443`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies(list.iter().map(|c| c.parse().expect("range")).collect())
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", l.parse().expect("header"));
        }
        h
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().expect("ip"), 5000)
    }

    #[test]
    fn ranges_parse_and_match_by_prefix() {
        let c: Cidr = "10.1.0.0/16".parse().expect("range");
        assert!(c.contains("10.1.200.3".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        assert!(
            c.contains("::ffff:10.1.0.9".parse().expect("ip")),
            "v4 mapped in v6"
        );
        let odd: Cidr = "192.168.0.0/23".parse().expect("range");
        assert!(odd.contains("192.168.1.255".parse().expect("ip")));
        assert!(!odd.contains("192.168.2.0".parse().expect("ip")));
        let one: Cidr = "2001:db8::7".parse().expect("one address");
        assert_eq!(one.to_string(), "2001:db8::7/128");
        assert!(!one.contains("2001:db8::8".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("everything");
        assert!(all.contains("203.0.113.1".parse().expect("ip")));
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "proxy",
            "10.0.0/8",
            "10.0.0.0/x",
            "",
        ] {
            let err = bad.parse::<Cidr>().expect_err(bad);
            assert!(err.contains("not an address range"), "{err}");
        }
    }

    #[test]
    fn only_a_trusted_peer_is_believed_and_only_past_trusted_hops() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&["198.51.100.9"]);
        // Not from the proxy: the header is the client's own word, ignored.
        assert_eq!(
            p.client(peer("203.0.113.5"), &h).ip(),
            peer("203.0.113.5").ip()
        );
        // From the proxy: the address it saw.
        assert_eq!(
            p.client(peer("10.0.0.2"), &h).ip(),
            peer("198.51.100.9").ip()
        );
        // A client that sends its own header: the proxy appends the real address, and the
        // walk stops at the first hop no trusted proxy added.
        let forged = headers(&["1.2.3.4, 198.51.100.9"]);
        assert_eq!(
            p.client(peer("10.0.0.2"), &forged).ip(),
            peer("198.51.100.9").ip()
        );
        // Two proxies in a row, on separate lines.
        let chain = headers(&["198.51.100.9", "10.0.0.7"]);
        assert_eq!(
            p.client(peer("10.0.0.2"), &chain).ip(),
            peer("198.51.100.9").ip()
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(
            p.client(peer("10.0.0.2"), &HeaderMap::new()).ip(),
            peer("10.0.0.2").ip()
        );
        let junk = headers(&["unknown"]);
        assert_eq!(
            p.client(peer("10.0.0.2"), &junk).ip(),
            peer("10.0.0.2").ip()
        );
        // Ports and brackets as some proxies write them.
        let ported = headers(&["[2001:db8::1]:443"]);
        assert_eq!(
            p.client(peer("10.0.0.2"), &ported).ip(),
            peer("2001:db8::1").ip()
        );
        let bracketed = headers(&["[2001:db8::2]"]);
        assert_eq!(
            p.client(peer("10.0.0.2"), &bracketed).ip(),
            peer("2001:db8::2").ip()
        );
        // No proxies configured: never believed.
        assert_eq!(
            TrustedProxies::default().client(peer("10.0.0.2"), &h).ip(),
            peer("10.0.0.2").ip()
        );
    }

    #[test]
    fn a_long_chain_of_trusted_hops_is_walked_only_so_far() {
        let p = proxies(&["10.0.0.0/8"]);
        let mut line = String::from("198.51.100.9");
        for i in 0..100 {
            line.push_str(&format!(", 10.0.0.{}", i % 250));
        }
        // Past MAX_HOPS trusted hops the walk gives up on a trusted address, which is never
        // taken for a client of its own: the throttle then counts the proxy, as without
        // the header.
        let got = p.client(peer("10.0.0.2"), &headers(&[&line])).ip();
        assert!(p.trusts(got), "{got}");
    }
}
