//! The kill -9 loop (issue 13): three computers edit, rename and delete at random while a
//! supervisor kills passes, the server and gc with SIGKILL at seeded random moments. After
//! every kill the server must come back and `check --read-data` be clean; at the end the three
//! trees must agree and every edit that was on a computer when one of its passes completed
//! must be there, in the folder's history, or a conflict copy (the checker).
//!
//! The same rig runs on hostile networks: one that drops 3 % of the packets with partitions
//! and clients asleep through gc, and one that delays and reorders every packet (NFQUEUE,
//! `nfqueue.rs`: this kernel has no netem).
//!
//! `CAIRN_KILL_ITERATIONS` sets the number of iterations (50 here, 12 on the reordering
//! network, 1,000 in `scripts/soak`); `CAIRN_LONG_PARTITIONS=1` (the nightly mode) makes one
//! partition in 20 last one to two minutes; `CAIRN_TEST_SEED` replays a run: the seed is
//! printed first, and in every failure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::drive::computer;
use crate::harness::{noise, Client, Server};

/// A seeded xorshift: the same seed, the same run.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn from_env() -> (u64, Rng) {
        let seed = std::env::var("CAIRN_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(7)
            });
        (seed, Rng(seed | 1))
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the checker compares: a content's fingerprint (contents are large and binary).
pub(crate) fn print_of(data: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// Every file under a computer's folder (not its state), by path, as fingerprints.
pub(crate) fn tree(c: &Client) -> BTreeMap<String, u64> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, u64>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            if rel.starts_with(".cairn") {
                continue;
            }
            if p.is_dir() {
                walk(&p, root, out);
            } else if let Ok(data) = std::fs::read(&p) {
                out.insert(rel, print_of(&data));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&c.root, &c.root, &mut out);
    out
}

/// The fingerprint of every content any version of any path ever had in the folder.
pub(crate) fn history(server: &Server, folder: &str) -> HashSet<u64> {
    let http = crate::harness::http();
    let login: serde_json::Value = http
        .post(format!("{}/api/v1/login", server.url()))
        .json(&serde_json::json!({"user": "alice", "password": "alice-pw"}))
        .send()
        .expect("login")
        .json()
        .expect("json");
    let tok = login["token"].as_str().expect("token").to_string();
    let base = format!("{}/api/v1/folders/{folder}", server.url());
    let get = |what: &str, q: &[(&str, String)]| {
        http.get(format!("{base}/{what}"))
            .query(q)
            .bearer_auth(&tok)
            .send()
            .expect("request")
    };
    let tree: serde_json::Value = get("tree", &[("deleted", "true".into())])
        .json()
        .expect("tree");
    let mut out = HashSet::new();
    for e in tree["entries"].as_array().expect("entries") {
        let path = e["path"].as_str().expect("path").to_string();
        let versions: serde_json::Value = get("versions", &[("path", path.clone())])
            .json()
            .expect("versions");
        for v in versions["versions"].as_array().expect("versions") {
            if v["entry"]["kind"] == "file" {
                let seq = v["seq"].as_i64().expect("seq").to_string();
                let body = get("content", &[("path", path.clone()), ("seq", seq)])
                    .bytes()
                    .expect("content");
                out.insert(print_of(&body));
            }
        }
    }
    out
}

const NAMES: [&str; 8] = [
    "a.txt",
    "b.bin",
    "c.txt",
    "d/e.bin",
    "d/f.txt",
    "g/h.txt",
    "g/i/j.bin",
    "g/i/k.txt",
];

/// The rig's state: the server, the computers, the seed and the checker's record.
struct Rig {
    seed: u64,
    rng: Rng,
    server: Server,
    computers: Vec<Client>,
    /// A fourth computer backing its folder up to folder `vault` (task `t`).
    vault: Client,
    edits: u64,
    /// Fingerprints of contents that were on a computer when one of its passes completed.
    must_survive: HashSet<u64>,
    /// The same for the backup's passes: each must be in the vault's history.
    must_keep: HashSet<u64>,
    kills: HashMap<&'static str, u64>,
    long_partitions: bool,
}

impl Rig {
    /// One user's random edits on computer `k`: writes (small, or large enough that a kill
    /// lands mid-transfer), renames and deletes.
    fn edit(&mut self, k: usize) {
        for _ in 0..1 + self.rng.below(3) {
            let c = &self.computers[k];
            let existing: Vec<String> = tree(c).into_keys().collect();
            match self.rng.below(6) {
                0..=3 => {
                    self.edits += 1;
                    let name = NAMES[self.rng.below(NAMES.len() as u64) as usize];
                    let size = match self.rng.below(4) {
                        0 => 3 << 20,
                        1 => 300 << 10,
                        _ => 64,
                    };
                    let mut data = format!("edit {} by {k}\n", self.edits).into_bytes();
                    data.extend(noise(self.seed ^ self.edits, size));
                    c.write(name, &data);
                }
                4 if !existing.is_empty() => {
                    let from = &existing[self.rng.below(existing.len() as u64) as usize];
                    let to = NAMES[self.rng.below(NAMES.len() as u64) as usize];
                    if !c.path(to).exists() {
                        std::fs::create_dir_all(c.path(to).parent().expect("parent"))
                            .expect("mkdir");
                        std::fs::rename(c.path(from), c.path(to)).expect("rename");
                    }
                }
                5 if !existing.is_empty() => {
                    let victim = &existing[self.rng.below(existing.len() as u64) as usize];
                    std::fs::remove_file(c.path(victim)).expect("rm");
                }
                _ => {}
            }
        }
    }

    /// Random writes and deletes in the backed-up folder.
    fn edit_vault(&mut self) {
        for _ in 0..1 + self.rng.below(4) {
            let name = NAMES[self.rng.below(NAMES.len() as u64) as usize];
            if self.rng.below(4) == 0 {
                let _ = std::fs::remove_file(self.vault.path(name));
                continue;
            }
            self.edits += 1;
            let size = [64, 300 << 10, 3 << 20][self.rng.below(3) as usize];
            let mut data = format!("backed-up edit {}\n", self.edits).into_bytes();
            data.extend(noise(self.seed ^ self.edits, size));
            self.vault.write(name, &data);
        }
    }

    fn spawn_backup(&self) -> Child {
        self.vault
            .cmd()
            .args(["run", "t", "--once", "--confirm-deletes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("a backup starts")
    }

    /// A backup pass: run whole (what it had is then kept) or killed at a random moment.
    fn backup(&mut self, kill: bool) {
        self.edit_vault();
        let before = tree(&self.vault);
        let mut child = self.spawn_backup();
        if kill {
            self.moment(800);
            let _ = child.kill();
            let _ = child.wait();
            *self.kills.entry("backup").or_default() += 1;
            return;
        }
        let out = child.wait_with_output().expect("a backup ends");
        assert!(
            out.status.success(),
            "seed {}: a backup failed: {}",
            self.seed,
            String::from_utf8_lossy(&out.stderr)
        );
        self.must_keep.extend(before.into_values());
    }

    /// Folders of computer `k` renamed again and again, a pass started and killed after each
    /// rename: the moves meet half-done moves of the pass before.
    fn rename_storm(&mut self, k: usize) {
        for _ in 0..2 + self.rng.below(4) {
            let root = self.computers[k].root.clone();
            let dirs: Vec<std::path::PathBuf> = std::fs::read_dir(&root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !p.ends_with(".cairn"))
                .collect();
            let Some(from) = dirs.get(self.rng.below(dirs.len().max(1) as u64) as usize) else {
                return;
            };
            self.edits += 1;
            let to = root.join(format!("moved-{}", self.edits));
            std::fs::rename(from, &to).expect("rename a folder");
            let mut child = self.spawn_pass(k);
            self.moment(400);
            let _ = child.kill();
            let _ = child.wait();
        }
        *self.kills.entry("rename storm").or_default() += 1;
    }

    fn spawn_pass(&self, k: usize) -> Child {
        self.computers[k]
            .cmd()
            .args(["run", "d", "--once", "--confirm-deletes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("a pass starts")
    }

    /// A pass of computer `k` that must complete: what it had is then acknowledged.
    fn pass(&mut self, k: usize) {
        let before = tree(&self.computers[k]);
        let out = self.spawn_pass(k).wait_with_output().expect("a pass ends");
        assert!(
            out.status.success(),
            "seed {}: a pass of computer {k} failed: {}",
            self.seed,
            String::from_utf8_lossy(&out.stderr)
        );
        self.must_survive.extend(before.into_values());
    }

    /// A random wait of up to `ms` milliseconds: where the kill lands.
    fn moment(&mut self, ms: u64) {
        std::thread::sleep(Duration::from_millis(self.rng.below(ms)));
    }

    /// A pass of computer `k`, killed at a random moment.
    fn kill_pass(&mut self, k: usize) {
        let mut child = self.spawn_pass(k);
        self.moment(800);
        let _ = child.kill();
        let _ = child.wait();
        *self.kills.entry("pass").or_default() += 1;
    }

    /// The server killed at a random moment of a pass of computer `k`, then started again.
    fn kill_server(&mut self, k: usize) {
        let child = self.spawn_pass(k);
        self.moment(800);
        self.server.kill();
        // The pass fails or finishes: either is fine, nothing is acknowledged by it.
        let _ = child.wait_with_output();
        self.server.restart();
        *self.kills.entry("server").or_default() += 1;
        self.check();
    }

    /// gc killed at a random moment (while a pass of computer `k` runs), then run whole.
    fn kill_gc(&mut self, k: usize) {
        let pass = self.spawn_pass(k);
        let mut gc = self
            .server
            .command()
            .args(["server", "gc", "--data"])
            .arg(&self.server.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gc starts");
        self.moment(400);
        let _ = gc.kill();
        let _ = gc.wait();
        let _ = pass.wait_with_output();
        *self.kills.entry("gc").or_default() += 1;
        self.server.admin(&["gc"], None);
        self.check();
    }

    /// A pass of computer `k` stopped (SIGSTOP) at a random moment and kept asleep through two
    /// whole gc runs (the second frees what the first spared), then woken: whatever it had
    /// uploaded before sleeping may be gone, and its commit must then fail or send again.
    fn sleep_through_gc(&mut self, k: usize) {
        let child = self.spawn_pass(k);
        self.moment(600);
        signal(&child, "STOP");
        self.server.admin(&["gc"], None);
        self.server.admin(&["gc"], None);
        signal(&child, "CONT");
        let _ = child.wait_with_output();
        *self.kills.entry("sleep through gc").or_default() += 1;
        self.check();
    }

    /// The network to the server cut (every packet to its port dropped) for up to 3 s at a
    /// random moment of a pass of computer `k`, then healed. In the nightly mode
    /// (`CAIRN_LONG_PARTITIONS=1`) one partition in 20 lasts one to two minutes: longer than
    /// the client's timeouts, so the pass gives up and a later one takes over.
    fn partition(&mut self, k: usize) {
        let child = self.spawn_pass(k);
        self.moment(500);
        let cut = Cut::new(self.server.port, None);
        if self.long_partitions && self.rng.below(20) == 0 {
            std::thread::sleep(Duration::from_millis(60_000 + self.rng.below(60_000)));
            *self.kills.entry("long partition").or_default() += 1;
        } else {
            self.moment(3000);
            *self.kills.entry("partition").or_default() += 1;
        }
        drop(cut);
        let _ = child.wait_with_output();
    }

    /// The server's data is whole: every chunk of every version is there and reads back.
    fn check(&self) {
        let out = self.server.admin_raw(&["check", "--read-data"], None);
        assert!(
            out.status.success(),
            "seed {}: check --read-data after a kill: {}{}",
            self.seed,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Sends `sig` to `child`; it may have ended already, which is fine.
fn signal(child: &Child, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

/// An iptables rule dropping packets to and from a port on loopback (all of them, or a
/// random share), removed on drop.
struct Cut {
    rules: Vec<Vec<String>>,
}

impl Cut {
    fn new(port: u16, share: Option<&str>) -> Cut {
        let mut rules = Vec::new();
        for dir in ["--dport", "--sport"] {
            let mut rule: Vec<String> = ["INPUT", "-i", "lo", "-p", "tcp", dir, &port.to_string()]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if let Some(p) = share {
                rule.extend(
                    ["-m", "statistic", "--mode", "random", "--probability", p]
                        .iter()
                        .map(|s| s.to_string()),
                );
            }
            rule.extend(["-j".to_string(), "DROP".to_string()]);
            insert_rule(&rule);
            rules.push(rule);
        }
        Cut { rules }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        for rule in &self.rules {
            delete_rule(rule);
        }
    }
}

/// Puts an iptables rule first in its chain.
pub(crate) fn insert_rule(rule: &[String]) {
    let ok = std::process::Command::new("iptables")
        .arg("-I")
        .args(rule)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "iptables -I {rule:?} failed: this test needs root and iptables"
    );
}

/// Takes an iptables rule out again (gone already is fine).
pub(crate) fn delete_rule(rule: &[String]) {
    let _ = std::process::Command::new("iptables")
        .arg("-D")
        .args(rule)
        .status();
}

#[derive(Clone, Copy)]
enum Fault {
    Pass,
    KillPass,
    KillServer,
    KillGc,
    SleepThroughGc,
    Partition,
    Backup,
    KillBackup,
    RenameStorm,
}

/// Runs `iterations` rounds (unless `CAIRN_KILL_ITERATIONS` says) of random edits and faults
/// picked from `faults` (repeat one to make it likelier), then syncs until quiet and runs the
/// checker.
fn run_rig(faults: &[Fault], iterations: u64, setup: impl FnOnce(&Server, u64) -> Network) {
    let iterations: u64 = std::env::var("CAIRN_KILL_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(iterations);
    let (seed, rng) = Rng::from_env();
    eprintln!("seed = {seed} (run again with CAIRN_TEST_SEED={seed})");
    let server = Server::start();
    let computers = ["A", "B", "C"]
        .iter()
        .map(|name| computer(&server, name, &[]))
        .collect();
    // Every version kept: the checker then knows that a content missing from history was
    // lost, not dropped by retention (32 versions a file by default).
    server.admin(
        &["folder", "set", "backup", "--keep-versions", "100000"],
        None,
    );
    server.alice_folder("vault", "100000");
    let vault = Client::new();
    vault.connect(&server, "alice", "alice-pw");
    vault.add_backup_task_into("vault", &[]);
    let network = setup(&server, seed);
    let mut rig = Rig {
        seed,
        rng,
        server,
        computers,
        vault,
        edits: 0,
        must_survive: HashSet::new(),
        must_keep: HashSet::new(),
        kills: HashMap::new(),
        long_partitions: std::env::var("CAIRN_LONG_PARTITIONS").is_ok_and(|v| v == "1"),
    };
    let started = Instant::now();
    for _ in 0..iterations {
        let k = rig.rng.below(3) as usize;
        rig.edit(k);
        match faults[rig.rng.below(faults.len() as u64) as usize] {
            Fault::Pass => rig.pass(k),
            Fault::KillPass => rig.kill_pass(k),
            Fault::KillServer => rig.kill_server(k),
            Fault::KillGc => rig.kill_gc(k),
            Fault::SleepThroughGc => rig.sleep_through_gc(k),
            Fault::Partition => rig.partition(k),
            Fault::Backup => rig.backup(false),
            Fault::KillBackup => rig.backup(true),
            Fault::RenameStorm => rig.rename_storm(k),
        }
    }
    if let Some(delay) = network.delay {
        let held = delay.finish();
        rig.kills.insert("packets delayed", held.delayed);
        rig.kills.insert("packets overtaken", held.overtaken);
    }
    drop(network.cut);
    // Quiet now: every computer syncs until all agree.
    for _ in 0..3 {
        for k in 0..3 {
            rig.pass(k);
        }
    }
    rig.backup(false);
    rig.check();
    let trees: Vec<_> = rig.computers.iter().map(tree).collect();
    assert_eq!(trees[0], trees[1], "seed {seed}: A and B differ");
    assert_eq!(trees[1], trees[2], "seed {seed}: B and C differ");
    let history = history(&rig.server, "backup");
    let present: HashSet<u64> = trees[0].values().copied().collect();
    let vault = crate::reliability::history(&rig.server, "vault");
    let lost = rig
        .must_survive
        .iter()
        .filter(|e| !present.contains(e) && !history.contains(e))
        .count()
        + rig.must_keep.iter().filter(|e| !vault.contains(e)).count();
    eprintln!(
        "seed {seed}: {iterations} iterations in {:?}, {} edits, faults {:?}, {} acknowledged contents checked, {lost} lost",
        started.elapsed(),
        rig.edits,
        rig.kills,
        rig.must_survive.len() + rig.must_keep.len(),
    );
    assert_eq!(lost, 0, "seed {seed}: acknowledged edits are nowhere");
}

#[test]
fn kill_9_anywhere_loses_no_acknowledged_edit() {
    use Fault::*;
    run_rig(
        &[
            Pass,
            Pass,
            Pass,
            KillPass,
            KillPass,
            KillServer,
            KillServer,
            KillGc,
            Backup,
            KillBackup,
            RenameStorm,
        ],
        50,
        |_, _| Network::default(),
    );
}

/// The same users on a network that drops 3 % of the packets to and from the server, with
/// partitions of up to 3 s and clients asleep (SIGSTOP) through gc runs.
#[test]
fn a_lossy_network_partitions_and_sleeping_clients_lose_no_acknowledged_edit() {
    use Fault::*;
    run_rig(
        &[Pass, Pass, Partition, SleepThroughGc, KillPass],
        50,
        |server, _| Network {
            cut: Some(Cut::new(server.port, Some("0.03"))),
            delay: None,
        },
    );
}

/// The same users on a slow network that reorders: every packet to and from the server held
/// 0-40 ms at random (so packets overtake each other), 1 % dropped, partitions of up to 3 s,
/// and the server killed now and then.
#[test]
fn a_slow_reordering_network_loses_no_acknowledged_edit() {
    use Fault::*;
    // Fewer iterations in CI than the other rigs: each pass is slow on this network.
    run_rig(
        &[Pass, Pass, Partition, KillServer, KillPass],
        12,
        |server, seed| {
            // The delay first: the loss rule goes in above it and sees each packet first (a
            // packet let through by the queue skips the rest of the chain).
            let delay = Some(crate::nfqueue::Delay::new(server.port, 40, seed));
            Network {
                cut: Some(Cut::new(server.port, Some("0.01"))),
                delay,
            }
        },
    );
}

/// What a rig's network does to packets to and from the server, undone on drop.
#[derive(Default)]
struct Network {
    cut: Option<Cut>,
    delay: Option<crate::nfqueue::Delay>,
}
