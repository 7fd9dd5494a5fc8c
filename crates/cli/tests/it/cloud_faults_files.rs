//! Cloud tasks on the services our HTTP fault layer cannot reach (SFTP, FTP, a mounted
//! folder), under the faults that fit each: a TCP proxy in front of sshd and pyftpdlib that
//! cuts connections part-way through (mid-transfer) or stalls them and then cuts; for a
//! folder, a pass killed part-way, a file that vanishes while it is sent, and a destination
//! that refuses to grow a file (a file-size limit on the process: "disk full" without root).
//! The invariants are those of `cloud_faults`: no file that should stay is deleted, nothing
//! corrupt lands, a failed pass says what failed, and once the faults stop both computers
//! converge. The seed is printed and named in every failure (`CAIRN_TEST_FAULT_SEED=N`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::cloud_remotes::{self, add_task, connect, tree, Remote};
use crate::harness::{noise, Client};

/// The seed of this run: `CAIRN_TEST_FAULT_SEED`, or one from the clock (printed).
pub(crate) fn seed() -> u64 {
    let seed = std::env::var("CAIRN_TEST_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u64 % 100_000)
                .unwrap_or(1)
        });
    eprintln!("fault seed {seed} (replay with CAIRN_TEST_FAULT_SEED={seed})");
    seed
}

/// xorshift: the same seed, the same faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What the proxy does to a new connection.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Pass,
    /// Cut both ways after this many bytes (either direction).
    Cut(u64),
    /// After this many bytes, hold everything for a while, then cut.
    Stall(u64),
}

/// How long a stalled connection is held before it is cut: long enough for the client to be
/// waiting on it, short enough to keep the test quick. Not a bound anything is checked against.
const STALL: Duration = Duration::from_secs(2);

/// A TCP proxy on 127.0.0.1 in front of `upstream`: passes everything, or (while faulty) gives
/// `rate` percent of new connections a seeded cut or stall.
struct FaultProxy {
    port: u16,
    faulty: Arc<Mutex<Option<(Rng, u64)>>>,
    stop: Arc<AtomicBool>,
    injected: Arc<AtomicU64>,
}

impl FaultProxy {
    fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = FaultProxy {
            port,
            faulty: Arc::new(Mutex::new(None)),
            stop: Arc::new(AtomicBool::new(false)),
            injected: Arc::new(AtomicU64::new(0)),
        };
        let (faulty, stop, injected) = (
            proxy.faulty.clone(),
            proxy.stop.clone(),
            proxy.injected.clone(),
        );
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let fate = pick(faulty.lock().expect("proxy state").as_mut());
                if !matches!(fate, Fate::Pass) {
                    injected.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) {
                    relay(client, server, fate);
                }
            }
        });
        proxy
    }

    /// Faults on new connections from now on (`rate` percent), or none.
    fn set_faults(&self, plan: Option<(u64, u64)>) {
        *self.faulty.lock().expect("proxy state") =
            plan.map(|(seed, rate)| (Rng(seed.max(1)), rate));
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A new connection's fate under the plan (seeded generator, rate in percent), if any.
fn pick(plan: Option<&mut (Rng, u64)>) -> Fate {
    let Some((rng, rate)) = plan else {
        return Fate::Pass;
    };
    if rng.next() % 100 >= *rate {
        return Fate::Pass;
    }
    // Anywhere in the first 96 KiB: the handshake, a listing or mid-file.
    let after = 200 + rng.next() % 96_000;
    if rng.next() % 3 == 0 {
        Fate::Stall(after)
    } else {
        Fate::Cut(after)
    }
}

/// Copies both ways between `a` and `b` until either side closes, or the fate cuts it.
fn relay(a: TcpStream, b: TcpStream, fate: Fate) {
    let budget = Arc::new(AtomicU64::new(match fate {
        Fate::Pass => u64::MAX,
        Fate::Cut(n) | Fate::Stall(n) => n,
    }));
    let stall = matches!(fate, Fate::Stall(_));
    for (from, to) in [(&a, &b), (&b, &a)] {
        let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
            return;
        };
        let (a2, b2) = match (a.try_clone(), b.try_clone()) {
            (Ok(x), Ok(y)) => (x, y),
            _ => return,
        };
        let budget = budget.clone();
        thread::spawn(move || pipe(from, to, &budget, stall, [a2, b2]));
    }
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    budget: &AtomicU64,
    stall: bool,
    both: [TcpStream; 2],
) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        let left = budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(n as u64))
            })
            .unwrap_or(0);
        if (n as u64) < left {
            if to.write_all(&buf[..n]).is_err() {
                return;
            }
            continue;
        }
        // The budget ends inside this piece: what fits goes through, then the cut.
        let _ = to.write_all(&buf[..left as usize]);
        if stall {
            thread::sleep(STALL);
        }
        for s in &both {
            let _ = s.shutdown(Shutdown::Both);
        }
        return;
    }
}

/// A pass's exit and output.
fn pass(c: &Client) -> (bool, String) {
    let out = c.cairn(&["run", "t"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// A failed pass says which remote (or which file) it failed on.
fn assert_names_where(ok: bool, said: &str, names: &[&str], what: &str) {
    if !ok {
        eprintln!("{what}: a pass under faults failed: {}", said.trim_end());
    }
    assert!(
        ok || names.iter().any(|n| said.contains(n)),
        "{what}: a failed pass named neither the remote nor a file ({names:?}):\n{said}"
    );
}

/// Rounds of random work on computer A, each synced by A then B while the proxy misbehaves;
/// then with the proxy clean, both converge and no temporary of theirs is left.
fn faults_keep_every_file(remote: &Remote, proxy: &FaultProxy, endpoint: &str) {
    let p = remote.provider;
    let seed = seed();
    let (a, b) = (Client::new(), Client::new());
    for c in [&a, &b] {
        connect(c, remote, "r");
        add_task(c, "t", "r", "faults", &[], "");
    }
    let mut rng = Rng(seed.max(1));
    let mut ever: BTreeSet<Vec<u8>> = BTreeSet::new();
    for round in 0..2u64 {
        for i in 0..6 {
            let n = rng.next() % 8;
            let name = format!("d{}/f{n}.bin", n % 2);
            match rng.next() % 4 {
                0 if a.path(&name).exists() => std::fs::remove_file(a.path(&name)).expect("rm"),
                1 if a.path(&name).exists() => {
                    let to = a.path(&format!("d{}/moved{round}-{i}.bin", n % 2));
                    std::fs::rename(a.path(&name), to).expect("mv");
                }
                // Up to 60 KB: a cut lands mid-file often.
                _ => a.write(
                    &name,
                    &noise(rng.next(), 1 + (rng.next() % 60_000) as usize),
                ),
            }
        }
        let expected = tree(&a.root);
        ever.extend(expected.values().cloned());
        proxy.set_faults(Some((seed + round, 35)));
        let mut said = String::new();
        for pass_no in 0..2 {
            let (ok, out) = pass(&a);
            assert_names_where(ok, &out, &[endpoint, "d0/", "d1/"], p);
            said += &format!("pass {pass_no}: {out}");
            assert!(
                tree(&a.root) == expected,
                "{p}, seed {seed}, round {round}: A's files changed under faults; the passes \
                 said:\n{said}"
            );
        }
        for _ in 0..2 {
            let before = tree(&b.root);
            let (ok, out) = pass(&b);
            assert_names_where(ok, &out, &[endpoint, "d0/", "d1/"], p);
            let after = tree(&b.root);
            for (path, data) in &after {
                assert!(
                    ever.contains(data),
                    "{p}, seed {seed}, round {round}: {path} arrived corrupt; the pass \
                     said:\n{out}"
                );
            }
            for path in before.keys().filter(|k| expected.contains_key(*k)) {
                assert!(
                    after.contains_key(path),
                    "{p}, seed {seed}, round {round}: {path} was deleted on B; the pass \
                     said:\n{out}"
                );
            }
        }
    }
    proxy.set_faults(None);
    eprintln!(
        "{p}: {} connections faulted",
        proxy.injected.load(Ordering::Relaxed)
    );
    for c in [&a, &b, &b] {
        let (ok, out) = pass(c);
        assert!(ok, "{p}, seed {seed}: a pass without faults failed:\n{out}");
    }
    assert_eq!(
        tree(&b.root),
        tree(&a.root),
        "{p}, seed {seed}: not converged after the faults stopped"
    );
    if let Some(share) = &remote.share {
        let left = cloud_remotes::staged(share, "faults");
        assert!(
            left.is_empty(),
            "{p}, seed {seed}: temporaries left after clean passes: {left:?}"
        );
    }
}

#[test]
fn cut_and_stalled_connections_never_lose_a_file_on_sftp() {
    let sshd = crate::harness::cloud::start_sshd().unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(sshd.port);
    let remote = cloud_remotes::sftp(&sshd, proxy.port);
    faults_keep_every_file(&remote, &proxy, &format!("127.0.0.1:{}", proxy.port));
}

#[test]
fn cut_and_stalled_connections_never_lose_a_file_on_ftp() {
    let ftp = crate::harness::cloud::start_pyftpdlib().unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(ftp.port);
    let remote = cloud_remotes::ftp_at(&ftp, proxy.port);
    faults_keep_every_file(&remote, &proxy, &format!("127.0.0.1:{}", proxy.port));
}

/// Spawns a pass of `c` and kills it after `ms` milliseconds (if it is still running).
fn killed_pass(c: &Client, ms: u64) {
    let mut child = c
        .cmd()
        .args(["run", "t"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn cairn");
    thread::sleep(Duration::from_millis(ms));
    let _ = child.kill();
    let _ = child.wait();
}

/// A pass of `c` under a file-size limit of `blocks` (the shell's `ulimit -f` units), with
/// SIGXFSZ ignored so a write past it fails with EFBIG instead of killing the process.
fn pass_with_file_limit(c: &Client, blocks: u64) -> (bool, String) {
    let cmd = c.cmd();
    let script = format!("trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" run t");
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c").arg(script).arg(cmd.get_program());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh.current_dir(c.tmp());
    let out = crate::harness::run(&mut sh, None);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A mounted folder as the remote: passes killed part-way, files that vanish on either side
/// while they are sent, and a destination that will not take a large file; nothing is lost or
/// corrupt, the refusal names the file, and clean passes converge with no temporary left.
#[test]
fn interrupted_passes_vanished_files_and_a_full_destination_lose_nothing_on_a_mounted_folder() {
    let seed = seed();
    let remote = cloud_remotes::start("fs");
    let share = remote.share.clone().expect("a folder");
    let (a, b) = (Client::new(), Client::new());
    for c in [&a, &b] {
        connect(c, &remote, "r");
        add_task(c, "t", "r", "faults", &[], "");
    }
    let mut rng = Rng(seed.max(1));
    let mut ever: BTreeSet<Vec<u8>> = BTreeSet::new();
    let check_b = |ever: &BTreeSet<Vec<u8>>, what: &str| {
        for (path, data) in tree(&b.root) {
            assert!(
                ever.contains(&data),
                "seed {seed}, {what}: {path} on B is corrupt"
            );
        }
    };

    // Passes killed part-way through, A's then B's.
    for round in 0..3u64 {
        for i in 0..4 {
            let data = noise(rng.next(), 1 + (rng.next() % 400_000) as usize);
            ever.insert(data.clone());
            a.write(&format!("k{round}/f{i}.bin"), &data);
        }
        let expected = tree(&a.root);
        killed_pass(&a, 20 + rng.next() % 400);
        assert!(
            tree(&a.root) == expected,
            "seed {seed}: A changed by a killed pass"
        );
        killed_pass(&b, 20 + rng.next() % 400);
        check_b(&ever, "after a killed pass");
    }

    // A file that vanishes while a pass sends it: here (A's upload) and there (B's download).
    let big = noise(rng.next(), 3_000_000);
    ever.insert(big.clone());
    a.write("vanish/up.bin", &big);
    a.write("vanish/down.bin", &big);
    let victim = a.path("vanish/up.bin");
    let there = share.join("faults/vanish/down.bin");
    let child = a.cmd().args(["run", "t"]).output_in_thread();
    thread::sleep(Duration::from_millis(rng.next() % 200));
    let _ = std::fs::remove_file(&victim);
    let _ = child.join();
    let child = b.cmd().args(["run", "t"]).output_in_thread();
    thread::sleep(Duration::from_millis(rng.next() % 200));
    let _ = std::fs::remove_file(&there);
    let _ = child.join();
    check_b(&ever, "after files vanished");

    // A destination that will not grow a file past 256 KiB (dash's blocks are 512 bytes).
    let huge = noise(rng.next(), 2_000_000);
    ever.insert(huge.clone());
    a.write("full/huge.bin", &huge);
    let (ok, said) = pass_with_file_limit(&a, 512);
    assert!(
        !ok,
        "seed {seed}: a pass past the file-size limit succeeded:\n{said}"
    );
    assert!(
        said.contains("full/huge.bin") && said.to_lowercase().contains("too large"),
        "seed {seed}: the refusal does not name the file and why:\n{said}"
    );
    // Said as a full destination, given up at once: not retried as a temporary failure.
    assert!(
        said.contains("the destination is full") && !said.contains("(persistent)"),
        "seed {seed}: the refusal does not say the destination is full:\n{said}"
    );
    assert_eq!(
        std::fs::read(a.path("full/huge.bin")).ok(),
        Some(huge),
        "seed {seed}"
    );
    assert!(
        !share.join("faults/full/huge.bin").exists()
            || std::fs::read(share.join("faults/full/huge.bin"))
                .ok()
                .as_deref()
                == Some(&std::fs::read(a.path("full/huge.bin")).expect("read")[..]),
        "seed {seed}: a partial file is visible on the destination"
    );

    // Clean passes converge; no temporary of the task is left.
    for c in [&a, &b, &a, &b] {
        let (ok, said) = pass(c);
        assert!(ok, "seed {seed}: a clean pass failed:\n{said}");
    }
    let (ta, tb): (BTreeMap<_, _>, BTreeMap<_, _>) = (tree(&a.root), tree(&b.root));
    assert_eq!(tb, ta, "seed {seed}: not converged");
    let left = cloud_remotes::staged(&share, "faults");
    assert!(left.is_empty(), "seed {seed}: temporaries left: {left:?}");
}

/// Runs a command to its end on another thread.
trait InThread {
    fn output_in_thread(&mut self) -> thread::JoinHandle<()>;
}

impl InThread for std::process::Command {
    fn output_in_thread(&mut self) -> thread::JoinHandle<()> {
        let child = self
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn cairn");
        thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        })
    }
}
