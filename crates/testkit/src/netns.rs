//! Two network namespaces joined by a veth pair: a small local network of two machines, for
//! tests of what crosses a network by multicast (mDNS discovery). Needs root and `ip`
//! (iproute2); `NetnsPair::create` says `None` where namespaces cannot be made, and the test
//! falls back to loopback.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The address of the server's end of the pair.
pub const SERVER_IP: &str = "10.231.0.1";
const CLIENT_IP: &str = "10.231.0.2";

/// Namespaces `server` and `client`, deleted (with their veth ends) on drop.
pub struct NetnsPair {
    pub server: String,
    pub client: String,
}

impl NetnsPair {
    /// Makes the pair, or `None` when this machine cannot (not root, no iproute2, a
    /// container without the right), or when `CAIRN_TEST_NO_NETNS` is set (to try the
    /// loopback fallback where namespaces work). A half-made pair is removed.
    pub fn create() -> Option<NetnsPair> {
        if std::env::var_os("CAIRN_TEST_NO_NETNS").is_some() {
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Unique per process and per call: tests run in parallel, and test runs too.
        let tag = format!(
            "{}{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let pair = NetnsPair {
            server: format!("cairn-s{tag}"),
            client: format!("cairn-c{tag}"),
        };
        // Interface names are at most 15 bytes.
        let (veth_s, veth_c) = (format!("cvs{tag}"), format!("cvc{tag}"));
        let steps: [&[&str]; 9] = [
            &["netns", "add", &pair.server],
            &["netns", "add", &pair.client],
            &[
                "link",
                "add",
                &veth_s,
                "netns",
                &pair.server,
                "type",
                "veth",
                "peer",
                "name",
                &veth_c,
                "netns",
                &pair.client,
            ],
            &[
                "-n",
                &pair.server,
                "addr",
                "add",
                &format!("{SERVER_IP}/24"),
                "dev",
                &veth_s,
            ],
            &[
                "-n",
                &pair.client,
                "addr",
                "add",
                &format!("{CLIENT_IP}/24"),
                "dev",
                &veth_c,
            ],
            &["-n", &pair.server, "link", "set", &veth_s, "up"],
            &["-n", &pair.client, "link", "set", &veth_c, "up"],
            &["-n", &pair.server, "link", "set", "lo", "up"],
            &["-n", &pair.client, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let ok = Command::new("ip")
                .args(step)
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                eprintln!(
                    "network namespaces unavailable (ip {}): using loopback",
                    step.join(" ")
                );
                return None;
            }
        }
        pair.wait_for_addresses();
        Some(pair)
    }

    /// Waits (at most about 10 s) until the new links' IPv6 addresses are past duplicate
    /// address detection: an mDNS responder started while they are tentative leaves the link
    /// out until its next look at the interfaces, seconds later.
    fn wait_for_addresses(&self) {
        for _ in 0..100 {
            let tentative = [&self.server, &self.client].iter().any(|ns| {
                Command::new("ip")
                    .args(["-n", ns, "-6", "addr", "show", "tentative"])
                    .output()
                    .is_ok_and(|o| !o.stdout.is_empty())
            });
            if !tentative {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// `program` run inside namespace `ns` when one is given.
pub fn command_in(ns: Option<&str>, program: &std::path::Path) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}
