//! The kill -9 loop on cloud tasks (issue 13): two computers keep one S3 path (moto, with
//! kept versions) in sync through two-way cloud tasks. Each iteration edits, renames or deletes
//! files on one computer and runs its task, killed with SIGKILL at a seeded random moment or
//! left to finish. At the end both run until quiet; the trees must agree, and every content
//! that was on a computer when one of its runs completed must be in the final tree, among the
//! cloud's kept versions, or a conflict copy: somewhere in the bucket.
//!
//! The second loop kills a server while it runs its own cloud task: a drive computer on the
//! server's folder, the server's task between that folder and an S3 path, and a computer's
//! cloud task on the same path; the server is killed at random moments after each edit
//! reaches it. At the end the two computers agree, and every acknowledged content is kept by
//! the server (a version of a file) or in the bucket.
//!
//! `CAIRN_KILL_ITERATIONS` (30 and 20 here, 1,000 in `scripts/soak`) and `CAIRN_TEST_SEED` as
//! in `reliability.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cloud::{add_task, connect, s3_connection, start_moto, Moto};
use crate::harness::{noise, Client, Server};
use crate::reliability::{print_of, tree, Rng};

const NAMES: &[&str] = &["a.txt", "b.bin", "c.md", "d/e.txt", "d/f.bin", "g/h/i.txt"];

struct CloudRig {
    seed: u64,
    rng: Rng,
    computers: [Client; 2],
    /// The task each computer runs.
    tasks: [&'static str; 2],
    edits: u64,
    must_survive: HashSet<u64>,
    kills: HashMap<&'static str, u64>,
}

impl CloudRig {
    fn edit(&mut self, k: usize) {
        for _ in 0..1 + self.rng.below(3) {
            let c = &self.computers[k];
            let existing: Vec<String> = tree(c).into_keys().collect();
            match self.rng.below(6) {
                0..=3 => {
                    self.edits += 1;
                    let name = NAMES[self.rng.below(NAMES.len() as u64) as usize];
                    // Now and then a file of several parts, so kills land inside uploads.
                    let size = [64, 64, 300 << 10, 3 << 20, 12 << 20][self.rng.below(5) as usize];
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

    fn spawn_run(&self, k: usize) -> Child {
        self.computers[k]
            .cmd()
            .args(["run", self.tasks[k], "--confirm-deletes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("a run starts")
    }

    /// A run of computer `k` that must complete: what it had is then acknowledged.
    fn run(&mut self, k: usize) {
        let before = tree(&self.computers[k]);
        let out = self.spawn_run(k).wait_with_output().expect("a run ends");
        assert!(
            out.status.success(),
            "seed {}: a run of computer {k} failed: {}",
            self.seed,
            String::from_utf8_lossy(&out.stderr)
        );
        self.must_survive.extend(before.into_values());
    }

    /// A run of computer `k` killed at a random moment of its first two seconds.
    fn kill_run(&mut self, k: usize) {
        let mut child = self.spawn_run(k);
        std::thread::sleep(Duration::from_millis(self.rng.below(2000)));
        let _ = child.kill();
        let _ = child.wait();
        *self.kills.entry("run").or_default() += 1;
    }
}

impl CloudRig {
    /// A rig over two computers, each running its task of `tasks`, with a seed from the
    /// environment (printed).
    fn new(computers: [Client; 2], tasks: [&'static str; 2]) -> Self {
        let (seed, rng) = Rng::from_env();
        eprintln!("seed = {seed} (run again with CAIRN_TEST_SEED={seed})");
        CloudRig {
            seed,
            rng,
            computers,
            tasks,
            edits: 0,
            must_survive: HashSet::new(),
            kills: HashMap::new(),
        }
    }

    /// Counts the acknowledged contents missing from `present`, prints the run's figures and
    /// fails when any is missing (`where_kept` says where they were looked for).
    fn judge(&self, iterations: u64, started: Instant, present: &HashSet<u64>, where_kept: &str) {
        let lost = self
            .must_survive
            .iter()
            .filter(|p| !present.contains(p))
            .count();
        let seed = self.seed;
        eprintln!(
            "seed {seed}: {iterations} iterations in {:?}, {} edits, kills {:?}, {} acknowledged contents checked, {lost} lost",
            started.elapsed(),
            self.edits,
            self.kills,
            self.must_survive.len(),
        );
        assert_eq!(
            lost, 0,
            "seed {seed}: acknowledged contents are nowhere {where_kept}"
        );
    }
}

/// `CAIRN_KILL_ITERATIONS`, or `default`.
fn iterations(default: u64) -> u64 {
    std::env::var("CAIRN_KILL_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Fingerprints of every object under `root` in the bucket: files, kept versions, conflict
/// copies.
fn bucket_prints(moto: &Moto, root: &str) -> HashSet<u64> {
    let (conn, secrets) = s3_connection(moto);
    let counters = Arc::new(cairn_cloud::transport::Counters::default());
    let op = cairn_cloud::connection::operator(&conn, &secrets, root, counters).expect("operator");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let entries = op
            .list_with("")
            .recursive(true)
            .await
            .expect("listing the bucket");
        let mut out = HashSet::new();
        for e in entries {
            if e.metadata().is_dir() {
                continue;
            }
            let data = op.read(e.path()).await.expect("reading an object");
            out.insert(print_of(&data.to_vec()));
        }
        out
    })
}

#[test]
fn kill_9_during_cloud_tasks_loses_no_acknowledged_edit() {
    let iterations = iterations(30);
    let moto = start_moto();
    let computers = [Client::new(), Client::new()];
    for c in &computers {
        connect(c, &moto, "s3");
        add_task(
            c,
            "s3",
            "kills",
            &["--keep-versions", "1000", "--part-size", "5"],
        );
    }
    let mut rig = CloudRig::new(computers, ["t", "t"]);
    let started = Instant::now();
    for _ in 0..iterations {
        let k = rig.rng.below(2) as usize;
        rig.edit(k);
        if rig.rng.below(3) == 0 {
            rig.run(k);
        } else {
            rig.kill_run(k);
        }
    }
    for _ in 0..3 {
        rig.run(0);
        rig.run(1);
    }
    let (a, b) = (tree(&rig.computers[0]), tree(&rig.computers[1]));
    assert_eq!(a, b, "seed {}: the two computers differ", rig.seed);
    let present = bucket_prints(&moto, "kills");
    rig.judge(iterations, started, &present, "in the bucket");
}

/// Fingerprints of every version the server keeps of `paths`, read through computer `c`'s
/// drive task `d`.
fn server_prints(c: &Client, paths: &BTreeSet<String>) -> HashSet<u64> {
    let mut out = HashSet::new();
    for rel in paths {
        let path = c.path(rel);
        let path = path.to_str().expect("utf-8");
        let listed = c.cairn(&["versions", "d", path]);
        let seqs: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .filter(|seq| seq.parse::<u64>().is_ok())
            .map(str::to_string)
            .collect();
        for seq in seqs {
            let to = c.tmp().join("version");
            let _ = std::fs::remove_file(&to);
            let got = c.cairn(&[
                "download",
                "d",
                path,
                "--version",
                &seq,
                "--to",
                to.to_str().expect("utf-8"),
            ]);
            if let (true, Ok(data)) = (got.status.success(), std::fs::read(&to)) {
                out.insert(print_of(&data));
            }
        }
    }
    out
}

#[test]
fn kill_9_of_a_server_during_its_cloud_task_loses_no_acknowledged_edit() {
    let iterations = iterations(20);
    let moto = start_moto();
    let mut server = Server::start();
    crate::server_cloud::server_connect(&server, &moto, "alice");
    server.admin(
        &[
            "cloud",
            "add",
            "mirror",
            "--folder",
            "backup",
            "--cloud",
            "s3",
            "--remote",
            "server-kills",
            "--poll",
            "1",
            "--keep-versions",
            "1000",
            "--part-size",
            "5",
            "--owner",
            "alice",
        ],
        None,
    );
    let pc = crate::drive::computer(&server, "pc", &[]);
    let cloud_side = Client::new();
    connect(&cloud_side, &moto, "s3");
    add_task(
        &cloud_side,
        "s3",
        "server-kills",
        &["--keep-versions", "1000", "--part-size", "5"],
    );
    let mut rig = CloudRig::new([pc, cloud_side], ["d", "t"]);
    let started = Instant::now();
    for _ in 0..iterations {
        let k = rig.rng.below(2) as usize;
        rig.edit(k);
        rig.run(k);
        // The server's task is at work on that edit (or on the other side's, seen by its poll).
        std::thread::sleep(Duration::from_millis(rig.rng.below(2500)));
        server.kill();
        *rig.kills.entry("server").or_default() += 1;
        server.restart();
    }
    let mut settled = false;
    for _ in 0..20 {
        rig.run(0);
        rig.run(1);
        std::thread::sleep(Duration::from_millis(1500));
        rig.run(0);
        rig.run(1);
        if tree(&rig.computers[0]) == tree(&rig.computers[1]) {
            settled = true;
            break;
        }
    }
    assert!(settled, "seed {}: the two computers never agreed", rig.seed);
    let mut paths: BTreeSet<String> = NAMES.iter().map(|n| n.to_string()).collect();
    paths.extend(tree(&rig.computers[0]).into_keys());
    let mut present = bucket_prints(&moto, "server-kills");
    present.extend(server_prints(&rig.computers[0], &paths));
    rig.judge(
        iterations,
        started,
        &present,
        "on the server or in the bucket",
    );
}
