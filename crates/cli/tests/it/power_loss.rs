//! Power loss at the sync and rename points (issue 13). The disk under test is a folder seen
//! through `crates/testkit/src/powerloss_fs.py`: what is written there stays in memory until
//! it is synced, and the power goes at one numbered point (an fsync, fdatasync, directory
//! fsync, rename or link), tearing or dropping every unsynced write. A first run of each
//! workload counts its points; then each chosen point gets a fresh copy of the same starting
//! state, loses power there, and everything is checked on what the disk kept:
//!
//! - a server commit: the server's data folder on the disk, a backup run: the server opens,
//!   `check --read-data` is clean, an acknowledged backup is the head, the next run converges;
//! - a gc run: the same checks, and every retained version reads back whole;
//! - a computer's download and index update: its folder and state on the disk, a drive pass
//!   fetching another computer's edits: afterwards both computers and the server hold exactly
//!   those edits (a torn file taken for an edit would be sent back over them).
//!
//! `CAIRN_POWER_POINTS` is how many points each workload loses power at (8 here; `all` in
//! `scripts/soak`), chosen with `CAIRN_TEST_SEED` as in `reliability.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::drive::computer;
use crate::harness::{fuse, fuse::FuseMount, noise, setup, Client, Server};
use crate::reliability::{tree, Rng};

/// The folders of one rig: the starting state, one copy per point, and the mount point the
/// programs under test see (the same path in every iteration).
struct Rig {
    seed: u64,
    rng: Rng,
    base: PathBuf,
    at: PathBuf,
    work: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let (seed, rng) = Rng::from_env();
        eprintln!("seed = {seed} (run again with CAIRN_TEST_SEED={seed})");
        let dir = tempfile::tempdir().expect("tempdir");
        let (base, at, work) = (
            dir.path().join("base"),
            dir.path().join("disk"),
            dir.path().join("work"),
        );
        for d in [&base, &at, &work] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        Rig {
            seed,
            rng,
            base,
            at,
            work,
            _dir: dir,
        }
    }

    /// The points to lose power at, among `first..=last`: all of them with
    /// `CAIRN_POWER_POINTS=all`, otherwise that many (8 by default) at random, and the last.
    fn chosen(&mut self, first: usize, last: usize) -> Vec<usize> {
        assert!(first <= last, "the workload has no point to lose power at");
        let wanted = std::env::var("CAIRN_POWER_POINTS").unwrap_or_default();
        if wanted == "all" {
            return (first..=last).collect();
        }
        let n: usize = wanted.parse().unwrap_or(8);
        let mut points: Vec<usize> = (0..n)
            .map(|_| first + self.rng.below((last - first + 1) as u64) as usize)
            .chain([last])
            .collect();
        points.sort_unstable();
        points.dedup();
        points
    }

    /// The summary line (`scripts/soak` keeps it in soak.log).
    fn report(&self, workload: &str, points: &[usize], first: usize, last: usize, clock: Instant) {
        eprintln!(
            "power loss during {workload}: {} iterations in {:.0} s (points {first} to {last}), every check clean, nothing lost (seed {})",
            points.len(),
            clock.elapsed().as_secs_f64(),
            self.seed
        );
    }

    /// A fresh copy of the starting state for the iteration that loses power at `point`
    /// (0: the counting run), mounted at the rig's mount point.
    fn power_disk(&self, point: usize) -> Disk {
        let backing = self.work.join(format!("p{point}"));
        copy_tree(&self.base, &backing);
        let log = self.work.join(format!("p{point}.log"));
        let tear = ["torn", "prefix", "none", "all"][(self.seed ^ point as u64) as usize % 4];
        let args = [
            "--log".to_string(),
            log.display().to_string(),
            "--crash-at".into(),
            point.to_string(),
            "--seed".into(),
            (self.seed ^ point as u64).to_string(),
            "--tear".into(),
            tear.into(),
        ];
        let mount = FuseMount::mount("powerloss_fs.py", &backing, &self.at, &args);
        Disk {
            mount: Some(mount),
            kept: None,
            backing,
            log,
            at: self.at.clone(),
        }
    }
}

/// The disk of one iteration: mounted through the power-loss layer until the power goes, then
/// what it kept, bound at the same place.
struct Disk {
    mount: Option<FuseMount>,
    kept: Option<Bound>,
    backing: PathBuf,
    log: PathBuf,
    at: PathBuf,
}

impl Disk {
    fn points(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("crash"))
            .count()
    }

    fn lost_power(&self) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|l| l.contains("crash "))
    }

    /// Takes the power-loss layer away and puts what the disk kept in its place.
    fn what_it_kept(&mut self) {
        self.mount = None;
        self.kept = Some(Bound::new(&self.backing, &self.at));
    }
}

/// Folder `backing` bound at `at` (`mount --bind`) until dropped.
struct Bound(PathBuf);

impl Bound {
    fn new(backing: &Path, at: &Path) -> Bound {
        let bound = Command::new("mount")
            .arg("--bind")
            .arg(backing)
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(bound, "mount --bind {} {}", backing.display(), at.display());
        Bound(at.to_path_buf())
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        fuse::unmount(&self.0);
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.mount = None;
        self.kept = None;
        let _ = std::fs::remove_dir_all(&self.backing);
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let copied = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .is_ok_and(|s| s.success());
    assert!(copied, "cp -a {} {}", from.display(), to.display());
}

/// Runs `cmd` until it ends (`Some(success)`) or the power goes on `disk` (`None`: it is killed
/// then, and `server` with it when given, since it was on the machine that lost power). A run
/// with the power on that fails shows what it said.
fn until_power_off(cmd: &mut Command, disk: &Disk, server: Option<&mut Server>) -> Option<bool> {
    let said = disk.log.with_extension("out");
    let out = std::fs::File::create(&said).expect("output file");
    let mut child = cmd
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("spawn");
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            if status.success() {
                return Some(true);
            }
            if disk.lost_power() {
                break;
            }
            eprintln!("{}", std::fs::read_to_string(&said).unwrap_or_default());
            return Some(false);
        }
        if disk.lost_power() {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(s) = server {
        s.kill();
    }
    None
}

/// What became of a run under test, for the log.
fn said(run: Option<bool>) -> &'static str {
    match run {
        Some(true) => "was acknowledged",
        Some(false) => "failed",
        None => "lost power",
    }
}

fn check_is_clean(server: &Server, after: &str) {
    let out = server.admin_raw(&["check", "--read-data"], None);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("no problems"),
        "{after}: check says\n{said}"
    );
}

/// The head of `rel` in backup task `t` (its newest version), downloaded.
fn head(c: &Client, rel: &str) -> Option<Vec<u8>> {
    let path = c.path(rel);
    let path = path.to_str().expect("utf-8");
    let listed = c.cairn(&["versions", "t", path]);
    let newest = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .max()?;
    let to = c.tmp().join("head");
    let _ = std::fs::remove_file(&to);
    let got = c.cairn(&[
        "download",
        "t",
        path,
        "--version",
        &newest.to_string(),
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert!(
        got.status.success(),
        "download {rel} version {newest}: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    Some(std::fs::read(&to).expect("read"))
}

/// A backup run's edits: a small file changed, a file of several chunks replaced, one added.
fn backup_edits(seed: u64, point: usize) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.txt", format!("edit at point {point}\n").into_bytes()),
        ("big.bin", noise(seed ^ point as u64, 1_500_000)),
        ("new/c.txt", format!("new at point {point}\n").into_bytes()),
    ]
}

#[test]
fn power_loss_during_a_server_commit_keeps_every_acknowledged_backup() {
    if setup::scale_out() {
        return; // the metadata is in PostgreSQL, not on this disk
    }
    let mut rig = Rig::new();
    let mut server = Server::start();
    let mut c = Client::new();
    c.backup_task(&server, &[]);
    c.write("a.txt", b"first\n");
    c.write("big.bin", &noise(1, 1_500_000));
    c.write("sub/b.txt", b"untouched\n");
    c.ok(&["run", "t", "--once"]);
    server.kill();
    copy_tree(&server.data, &rig.base.join("data"));
    copy_tree(&c.home, &rig.work.join("home"));
    let (started, total) = commit_iteration(&rig, 0, &mut server, &mut c);
    let points = rig.chosen(started + 1, total);
    let clock = Instant::now();
    for &point in &points {
        commit_iteration(&rig, point, &mut server, &mut c);
    }
    rig.report("a backup run", &points, started + 1, total, clock);
}

/// One backup run against a server whose data folder loses power at `point`; returns the
/// points the server's start took and the points in all.
fn commit_iteration(
    rig: &Rig,
    point: usize,
    server: &mut Server,
    c: &mut Client,
) -> (usize, usize) {
    let listen = format!("127.0.0.1:{}", server.port);
    let mut disk = rig.power_disk(point);
    server.data = rig.at.join("data");
    server.spawn(&listen);
    let started = disk.points();
    // Every iteration starts from the same client state, as from the same server state.
    c.home = rig.work.join(format!("home{point}"));
    copy_tree(&rig.work.join("home"), &c.home);
    let edits = backup_edits(rig.seed, point);
    for (rel, data) in &edits {
        c.write(rel, data);
    }
    let run = until_power_off(c.cmd().args(["run", "t", "--once"]), &disk, Some(server));
    server.kill();
    let total = disk.points();
    eprintln!("point {point}: the run {}", said(run));
    disk.what_it_kept();
    server.spawn(&listen);
    let after = format!("power lost at point {point} of a backup run");
    check_is_clean(server, &after);
    if run == Some(true) {
        for (rel, data) in &edits {
            assert_eq!(
                head(c, rel).as_ref(),
                Some(data),
                "{after}: the acknowledged {rel}"
            );
        }
    }
    c.ok(&["run", "t", "--once"]);
    for (rel, data) in &edits {
        assert_eq!(
            head(c, rel).as_ref(),
            Some(data),
            "{after}: {rel} after the next run"
        );
    }
    check_is_clean(server, &after);
    server.kill();
    let _ = std::fs::remove_dir_all(&c.home);
    (started, total)
}

#[test]
fn power_loss_during_gc_keeps_every_retained_version() {
    if setup::scale_out() {
        return;
    }
    let mut rig = Rig::new();
    let mut server = Server::start();
    server.alice_folder("short", "2");
    let c = Client::new();
    c.connect(&server, "alice", "alice-pw");
    c.add_backup_task_into("short", &["--computer", "pc"]);
    // Versions that retention drops: their chunks die, and the packs of small files only in
    // part (each round's pack also holds a file kept throughout), so gc repacks as well.
    let mut written = Vec::new();
    for i in 0..5u64 {
        let data = noise(rig.seed ^ i, 300_000);
        c.write("f.bin", &data);
        for k in 0..8 {
            c.write(
                &format!("s{k}.txt"),
                format!("small {k} of round {i}\n").as_bytes(),
            );
        }
        c.write(
            &format!("kept{i}.txt"),
            format!("kept from round {i}\n").as_bytes(),
        );
        c.ok(&["run", "t", "--once"]);
        written.push(data);
    }
    // gc spares what was touched since the run before it: the run under test frees.
    server.admin(&["gc"], None);
    server.kill();
    copy_tree(&server.data, &rig.base.join("data"));
    let retained = &written[written.len() - 2..];
    let (_, total) = gc_iteration(&rig, 0, &mut server, &c, retained);
    let points = rig.chosen(1, total);
    let clock = Instant::now();
    for &point in &points {
        gc_iteration(&rig, point, &mut server, &c, retained);
    }
    rig.report("a gc run", &points, 1, total, clock);
}

/// One `server gc` on a data folder that loses power at `point`; returns the points of the
/// run and the points in all (the same: gc runs alone).
fn gc_iteration(
    rig: &Rig,
    point: usize,
    server: &mut Server,
    c: &Client,
    retained: &[Vec<u8>],
) -> (usize, usize) {
    let listen = format!("127.0.0.1:{}", server.port);
    let mut disk = rig.power_disk(point);
    server.data = rig.at.join("data");
    let mut gc = server.command();
    gc.args(["server", "gc", "--data"]).arg(&server.data);
    let ran = until_power_off(&mut gc, &disk, None);
    eprintln!("point {point}: gc {}", said(ran));
    assert!(
        ran.is_none() || ran == Some(true),
        "gc failed with the power on"
    );
    let total = disk.points();
    disk.what_it_kept();
    server.spawn(&listen);
    let after = format!(
        "power lost at point {point} of a gc run, whose points were\n{}",
        std::fs::read_to_string(&disk.log).unwrap_or_default()
    );
    check_is_clean(server, &after);
    let versions = c.ok(&["versions", "t", c.path("f.bin").to_str().expect("utf-8")]);
    let seqs: Vec<&str> = versions
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut read = Vec::new();
    for seq in &seqs {
        let to = c.tmp().join(format!("v{seq}"));
        c.ok(&[
            "download",
            "t",
            c.path("f.bin").to_str().expect("utf-8"),
            "--version",
            seq,
            "--to",
            to.to_str().expect("utf-8"),
        ]);
        read.push(std::fs::read(&to).expect("read"));
    }
    for data in retained {
        assert!(
            read.contains(data),
            "{after}: a retained version of f.bin is gone"
        );
    }
    server.admin(&["gc"], None);
    check_is_clean(server, &after);
    server.kill();
    (total, total)
}

#[test]
fn power_loss_during_a_download_loses_no_edit_and_sends_back_nothing_torn() {
    if setup::scale_out() {
        return; // each iteration restores the server's state from a copy of its data folder
    }
    let mut rig = Rig::new();
    let mut server = Server::start();
    let a = computer(&server, "A", &[]);
    for i in 0..6 {
        a.write(&format!("docs/n{i}.txt"), format!("first {i}\n").as_bytes());
    }
    a.write("big.bin", &noise(rig.seed, 2_000_000));
    a.ok(&["run", "d", "--once"]);
    // B's folder and state are on the disk under test; its first pass happens before.
    let mut b = Client::new();
    b.home = rig.at.join("home");
    b.root = rig.at.join("docs");
    {
        let _setup = Bound::new(&rig.base, &rig.at);
        std::fs::create_dir_all(&b.root).expect("mkdir");
        b.connect(&server, "alice", "alice-pw");
        crate::drive::add_drive(&b, &["--computer", "B"]);
        b.ok(&["run", "d", "--once"]);
    }
    // A's edits, which B's pass under test fetches: a batch of small files, a large one
    // replaced, one renamed, one deleted, new ones.
    for i in 0..4 {
        a.write(
            &format!("docs/n{i}.txt"),
            format!("second {i}, longer than the first\n").as_bytes(),
        );
    }
    a.write("big.bin", &noise(rig.seed ^ 1, 2_100_000));
    std::fs::rename(a.path("docs/n4.txt"), a.path("moved.txt")).expect("mv");
    std::fs::remove_file(a.path("docs/n5.txt")).expect("rm");
    for i in 0..6 {
        a.write(&format!("new/m{i}.txt"), format!("new {i}\n").as_bytes());
    }
    a.ok(&["run", "d", "--once"]);
    let expected = tree(&a);
    server.kill();
    let server_base = rig.work.join("server-base");
    copy_tree(&server.data, &server_base);
    let (_, total) = download_iteration(&rig, 0, &mut server, &server_base, &a, &b, &expected);
    let points = rig.chosen(1, total);
    let clock = Instant::now();
    for &point in &points {
        download_iteration(&rig, point, &mut server, &server_base, &a, &b, &expected);
    }
    rig.report("a download", &points, 1, total, clock);
}

/// One pass of computer `b` fetching `a`'s edits with its folder and state on a disk that
/// loses power at `point`; afterwards every tree is `expected`.
fn download_iteration(
    rig: &Rig,
    point: usize,
    server: &mut Server,
    server_base: &Path,
    a: &Client,
    b: &Client,
    expected: &BTreeMap<String, u64>,
) -> (usize, usize) {
    let _ = std::fs::remove_dir_all(&server.data);
    copy_tree(server_base, &server.data);
    server.spawn(&format!("127.0.0.1:{}", server.port));
    let mut disk = rig.power_disk(point);
    let ran = until_power_off(b.cmd().args(["run", "d", "--once"]), &disk, None);
    let total = disk.points();
    eprintln!("point {point}: B's pass {}", said(ran));
    if ran == Some(false) {
        eprintln!(
            "{}",
            String::from_utf8_lossy(&b.cairn(&["log", "d"]).stdout)
        );
    }
    disk.what_it_kept();
    let after = format!("power lost at point {point} of a download");
    for _ in 0..2 {
        b.ok(&["run", "d", "--once"]);
    }
    a.ok(&["run", "d", "--once"]);
    assert_eq!(&tree(a), expected, "{after}: A's folder changed");
    assert_eq!(&tree(b), expected, "{after}: B's folder is not A's");
    check_is_clean(server, &after);
    server.kill();
    (total, total)
}
