//! Every bound a client meets before it has proved who it is, in one place: the values of
//! [`Limits`] are enforced by [`crate::connection`] (sockets, timeouts, request bodies) and
//! [`crate::login`] (password verification and failed-login throttling).
//!
//! The CLI exposes each field as a `server run` option, so tests set short values through the
//! real binary instead of test-only hooks. `docs/limits.md` says what happens when each is hit.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

/// What one stranger may cost the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest time to receive one complete HTTP/1 request header, counted from the end of the
    /// previous request (so it also closes idle HTTP/1 keep-alive connections).
    pub header_timeout: Duration,
    /// Longest time a connection may have no request in flight (any protocol), and longest time
    /// a response may wait for the peer to read it.
    pub idle_timeout: Duration,
    /// Longest wait for the next bytes of a request body that has not ended.
    pub body_timeout: Duration,
    /// Slowest average request body, in bytes per second, after the first `body_timeout` of
    /// waiting.
    pub min_body_rate: u64,
    /// Open connections per source address (an IPv4 address, or an IPv6 /64).
    pub max_connections_per_address: usize,
    /// HTTP/2 streams open at once on one connection.
    pub max_streams: u32,
    /// Password verifications running at once (each takes ~19 MiB for Argon2id).
    pub login_concurrency: usize,
    /// Login attempts that may wait for a verification slot, in each of three queues (addresses
    /// that logged in recently, then those without a recent failure, then the rest); more are answered 429 at once.
    pub login_queue: usize,
    /// Login attempts one source address may have running or waiting at once.
    pub login_per_address: usize,
    /// Longest wait for a verification slot before the answer is 429.
    pub login_wait: Duration,
    /// Entries in each login table (failed user names, failed and known source addresses).
    pub login_throttle_entries: usize,
    /// Load balancers and reverse proxies in front of the server: their `X-Forwarded-For` is
    /// believed (`proxy.rs`), and they are exempt from the per-address connection cap.
    pub trusted_proxies: crate::proxy::TrustedProxies,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            min_body_rate: 1024,
            max_connections_per_address: 64,
            max_streams: 64,
            login_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            login_queue: 64,
            login_per_address: 4,
            login_wait: Duration::from_secs(5),
            login_throttle_entries: 10_000,
            trusted_proxies: crate::proxy::TrustedProxies::default(),
        }
    }
}

/// The unit per-address limits count: an IPv4 address, or the /64 network of an IPv6 address
/// (a single host is usually given a whole /64, so counting single IPv6 addresses would let
/// it multiply its budget by 2^64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                SourceKey(IpAddr::V6(Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
            v4 => SourceKey(v4),
        }
    }
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::5".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::5".parse().expect("ip");
        assert_eq!(SourceKey::of(a), SourceKey::of(b));
        assert_ne!(SourceKey::of(a), SourceKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(SourceKey::of(mapped), SourceKey::of(v4));
        assert_eq!(SourceKey::of(a).to_string(), "2001:db8:1:2::/64");
    }
}
