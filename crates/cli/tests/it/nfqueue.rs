//! A network that delays and reorders packets, for the reliability rigs: the kernel here has no
//! netem, but it has NFQUEUE. Every packet to or from a port on loopback is queued to this
//! process and let through after a random delay of up to `max_ms`; packets held for different
//! times leave in another order than they came, so TCP sees reordering, duplicate ACKs and
//! retransmissions as on a bad long-distance link.
//!
//! The netlink messages are those of `linux/netfilter/nfnetlink_queue.h`: a bind of the queue,
//! metadata-only copies (the payload is never read), one verdict per packet by its id. The
//! iptables rules say `--queue-bypass`, so packets pass undelayed if this process is gone.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NF_ACCEPT: u32 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const HEADER: usize = 16;

/// What the queue did: packets delayed, and of them those let through after a packet that
/// came later (reordered).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Held {
    pub(crate) delayed: u64,
    pub(crate) overtaken: u64,
}

/// Packets to and from a port delayed at random; undone on drop.
pub(crate) struct Delay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Held>>,
    rules: Vec<Vec<String>>,
}

impl Delay {
    /// Delays every packet to and from `port` on loopback by 0 to `max_ms` ms (uniformly at
    /// random from `seed`).
    pub(crate) fn new(port: u16, max_ms: u64, seed: u64) -> Delay {
        let queue = port;
        let socket = bind_queue(queue).unwrap_or_else(|e| {
            panic!("binding NFQUEUE {queue}: {e} (this test needs root and CONFIG_NETFILTER_NETLINK_QUEUE)")
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread =
            std::thread::spawn(move || hold_and_release(&socket, queue, max_ms, seed, &flag));
        let mut rules = Vec::new();
        for dir in ["--dport", "--sport"] {
            let rule: Vec<String> = [
                "INPUT",
                "-i",
                "lo",
                "-p",
                "tcp",
                dir,
                &port.to_string(),
                "-j",
                "NFQUEUE",
                "--queue-num",
                &queue.to_string(),
                "--queue-bypass",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            crate::reliability::insert_rule(&rule);
            rules.push(rule);
        }
        Delay {
            stop,
            thread: Some(thread),
            rules,
        }
    }

    /// Removes the rules and lets every held packet through; what was done.
    pub(crate) fn finish(mut self) -> Held {
        self.undo()
    }

    fn undo(&mut self) -> Held {
        for rule in std::mem::take(&mut self.rules) {
            crate::reliability::delete_rule(&rule);
        }
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().expect("the delaying thread"))
            .unwrap_or_default()
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        self.undo();
    }
}

/// A netlink socket bound to queue `queue`, copying metadata only. (An unbound netlink socket
/// is bound by the kernel on its first send, and sends to the kernel by default.)
fn bind_queue(queue: u16) -> std::io::Result<Socket> {
    let socket = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(NETLINK_NETFILTER)),
    )?;
    let bind = [NFQNL_CFG_CMD_BIND, 0, 0, 0];
    request(&socket, NFQNL_MSG_CONFIG, queue, &[(NFQA_CFG_CMD, &bind)])?;
    let mut params = 0u32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_META);
    request(
        &socket,
        NFQNL_MSG_CONFIG,
        queue,
        &[(NFQA_CFG_PARAMS, &params)],
    )?;
    Ok(socket)
}

/// Sends a config message and waits for the kernel's acknowledgement.
fn request(socket: &Socket, kind: u16, queue: u16, attrs: &[(u16, &[u8])]) -> std::io::Result<()> {
    socket.send(&message(kind, NLM_F_REQUEST | NLM_F_ACK, queue, attrs))?;
    let mut buf = vec![0u8; 8192];
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let n = (&*socket).read(&mut buf)?;
    for (kind, body) in messages(&buf[..n]) {
        if kind == NLMSG_ERROR {
            let code = i32::from_ne_bytes(body[..4].try_into().expect("4 bytes"));
            if code != 0 {
                return Err(std::io::Error::from_raw_os_error(-code));
            }
        }
    }
    Ok(())
}

/// An nfnetlink message of the queue subsystem: header, nfgenmsg, attributes.
fn message(kind: u16, flags: u16, queue: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = vec![0u8; HEADER];
    m.extend([libc::AF_UNSPEC as u8, 0]);
    m.extend(queue.to_be_bytes());
    for (t, data) in attrs {
        m.extend(((4 + data.len()) as u16).to_ne_bytes());
        m.extend(t.to_ne_bytes());
        m.extend_from_slice(data);
        m.resize(m.len().next_multiple_of(4), 0);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m
}

/// The (type, body after the netlink header) of each message in `buf`.
fn messages(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= HEADER {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        if len < HEADER || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes(buf[4..6].try_into().expect("2 bytes"));
        out.push((kind, &buf[HEADER..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// The packet id of a queued packet's message body (nfgenmsg, then attributes).
fn packet_id(body: &[u8]) -> Option<u32> {
    let mut attrs = body.get(4..)?;
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes(attrs[0..2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(attrs[2..4].try_into().ok()?) & 0x7fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NFQA_PACKET_HDR && len >= 8 {
            return Some(u32::from_be_bytes(attrs[4..8].try_into().ok()?));
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

/// Takes queued packets and lets each through after its random delay, until `stop`; then
/// lets every held packet through.
fn hold_and_release(
    socket: &Socket,
    queue: u16,
    max_ms: u64,
    seed: u64,
    stop: &AtomicBool,
) -> Held {
    let mut state = seed | 1;
    let mut held: BinaryHeap<Reverse<(Instant, u32)>> = BinaryHeap::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = Held::default();
    // Packet ids rise in the order packets arrive.
    let mut newest_released = 0;
    let mut accept = |id: u32| {
        if id < newest_released {
            done.overtaken += 1;
        }
        newest_released = newest_released.max(id);
        let mut verdict = NF_ACCEPT.to_be_bytes().to_vec();
        verdict.extend(id.to_be_bytes());
        let _ = socket.send(&message(
            NFQNL_MSG_VERDICT,
            NLM_F_REQUEST,
            queue,
            &[(NFQA_VERDICT_HDR, &verdict)],
        ));
    };
    // A packet the socket's buffer could not take would stay queued in the kernel for good.
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_nonblocking(true);
    while !stop.load(Ordering::SeqCst) {
        let mut idle = true;
        while let Ok(n) = (&*socket).read(&mut buf) {
            idle = false;
            for (kind, body) in messages(&buf[..n]) {
                if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
                    continue;
                }
                let Some(id) = packet_id(body) else { continue };
                // xorshift64: the delays of one seed are the same run to run.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let delay = Duration::from_millis(state % (max_ms + 1));
                held.push(Reverse((Instant::now() + delay, id)));
                done.delayed += 1;
            }
        }
        let now = Instant::now();
        while held.peek().is_some_and(|Reverse((due, _))| *due <= now) {
            let Some(Reverse((_, id))) = held.pop() else {
                break;
            };
            accept(id);
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    while let Some(Reverse((_, id))) = held.pop() {
        accept(id);
    }
    done
}
