//! The soak (issue 13): three agents follow one folder for `CAIRN_SOAK_SECONDS` (180 here,
//! 3,600 in `scripts/soak --hour`) while simulated users edit, rename and delete at random on
//! all three computers, the server is killed and restarted, and gc runs. A user touches a
//! file only once what it holds is on the server (as a person would wait for the green tick),
//! so every edit ever made must survive: at the end, once quiet, the three trees agree, every
//! edit is there or in the folder's history, no task is left in error, and the server's
//! memory over the run is printed (`scripts/soak` records it).

use std::collections::{HashMap, HashSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cairn_model::ContentHash;

use crate::drive::computer;
use crate::harness::{http, noise, Client, Server};
use crate::reliability::{history, print_of, tree, Rng};

/// A running agent, killed on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(c: &Client) -> Agent {
    Agent(
        c.cmd()
            .arg("agent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("an agent starts"),
    )
}

/// Asks the server which contents a path has held, as a user's file browser would.
struct Api {
    http: reqwest::blocking::Client,
    token: Option<String>,
}

impl Api {
    fn token(&mut self, server: &Server) -> Option<String> {
        if self.token.is_none() {
            let login: serde_json::Value = self
                .http
                .post(format!("{}/api/v1/login", server.url()))
                .json(&serde_json::json!({"user": "alice", "password": "alice-pw"}))
                .send()
                .ok()?
                .json()
                .ok()?;
            self.token = login["token"].as_str().map(str::to_string);
        }
        self.token.clone()
    }

    /// Whether some version of `path` holds `data` (false while the server is down).
    fn holds(&mut self, server: &Server, path: &str, data: &[u8]) -> bool {
        let Some(token) = self.token(server) else {
            return false;
        };
        let want = ContentHash::of(data).to_hex();
        let answer = self
            .http
            .get(format!("{}/api/v1/folders/backup/versions", server.url()))
            .query(&[("path", path)])
            .bearer_auth(token)
            .send();
        let Ok(answer) = answer else { return false };
        if answer.status() == reqwest::StatusCode::UNAUTHORIZED {
            self.token = None;
            return false;
        }
        let Ok(v) = answer.json::<serde_json::Value>() else {
            return false;
        };
        v["versions"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v["entry"]["hash"] == want.as_str()))
    }
}

/// The server's resident memory now, in MiB.
fn rss_mib(server: &Server) -> Option<u64> {
    let pid = server.child.as_ref()?.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024)
}

const NAMES: [&str; 12] = [
    "a.txt",
    "b.bin",
    "c.txt",
    "d/e.bin",
    "d/f.txt",
    "d/g.txt",
    "h/i.txt",
    "h/j.bin",
    "h/k/l.txt",
    "h/k/m.bin",
    "n.txt",
    "o.txt",
];

#[test]
fn three_agents_through_restarts_and_gc_lose_no_edit() {
    let seconds: u64 = std::env::var("CAIRN_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let (seed, mut rng) = Rng::from_env();
    eprintln!("seed = {seed} (run again with CAIRN_TEST_SEED={seed})");
    let mut server = Server::start();
    // Every version kept, so the checker can tell a loss from retention's pruning.
    server.admin(
        &["folder", "set", "backup", "--keep-versions", "100000"],
        None,
    );
    let computers: Vec<Client> = ["A", "B", "C"]
        .iter()
        .map(|name| computer(&server, name, &[]))
        .collect();
    let _agents: Vec<Agent> = computers.iter().map(agent).collect();
    let mut api = Api {
        http: http(),
        token: None,
    };
    let mut made: HashSet<u64> = HashSet::new();
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut memory: Vec<u64> = Vec::new();
    let started = Instant::now();
    let mut next_sample = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        if Instant::now() >= next_sample {
            memory.extend(rss_mib(&server));
            next_sample += Duration::from_secs(10);
        }
        let k = rng.below(3) as usize;
        let c = &computers[k];
        let name = NAMES[rng.below(NAMES.len() as u64) as usize];
        // A user touches a file only once the server has what it holds.
        if let Ok(now) = std::fs::read(c.path(name)) {
            let waited = Instant::now();
            while !api.holds(&server, name, &now) {
                assert!(
                    waited.elapsed() < Duration::from_secs(120),
                    "seed {seed}: computer {k}'s {name} was not on the server after 120 s: an agent stopped syncing"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        match rng.below(20) {
            0..=11 => {
                let size = if rng.below(5) == 0 { 1 << 20 } else { 100 };
                let mut data = format!("{name} on {k} at {:?}\n", started.elapsed()).into_bytes();
                data.extend(noise(rng.below(u64::MAX), size));
                made.insert(print_of(&data));
                c.write(name, &data);
                *counts.entry("edits").or_default() += 1;
            }
            12..=13 => {
                let to = NAMES[rng.below(NAMES.len() as u64) as usize];
                if c.path(name).exists() && !c.path(to).exists() {
                    std::fs::create_dir_all(c.path(to).parent().expect("parent")).expect("mkdir");
                    let _ = std::fs::rename(c.path(name), c.path(to));
                    *counts.entry("renames").or_default() += 1;
                }
            }
            14..=15 if std::fs::remove_file(c.path(name)).is_ok() => {
                *counts.entry("deletes").or_default() += 1;
            }
            // About once a minute: long enough between kills for the memory samples to
            // show how one server process fares.
            16 if rng.below(8) == 0 => {
                server.restart();
                *counts.entry("server kills").or_default() += 1;
            }
            17 => {
                server.admin(&["gc"], None);
                *counts.entry("gc runs").or_default() += 1;
            }
            _ => {}
        }
        // A pass held before deleting most files waits for its user: this one confirms.
        if rng.below(10) == 0 {
            for c in &computers {
                if c.ok(&["status", "--json"])
                    .contains("waiting_for_confirmation")
                {
                    c.ok(&["resume", "d", "--confirm-deletes"]);
                    *counts.entry("confirmations").or_default() += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
    }
    // Quiet: the three trees agree and stay so.
    let settled = Instant::now();
    let mut stable = 0;
    while stable < 3 {
        assert!(
            settled.elapsed() < Duration::from_secs(180),
            "seed {seed}: the computers did not converge within 180 s of the last edit"
        );
        std::thread::sleep(Duration::from_secs(2));
        let trees: Vec<_> = computers.iter().map(tree).collect();
        stable = if trees[0] == trees[1] && trees[1] == trees[2] {
            stable + 1
        } else {
            0
        };
    }
    let final_tree = tree(&computers[0]);
    let history = history(&server, "backup");
    let present: HashSet<u64> = final_tree.values().copied().collect();
    let lost = made
        .iter()
        .filter(|e| !present.contains(e) && !history.contains(e))
        .count();
    for (k, c) in computers.iter().enumerate() {
        let status = c.ok(&["status", "--json"]);
        assert!(
            !status.contains("\"state\": \"error\"") && !status.contains("\"state\":\"error\""),
            "seed {seed}: computer {k} is left in error: {status}"
        );
    }
    eprintln!(
        "seed {seed}: soak of {:?}, {counts:?}, {} contents checked, {lost} lost; server RSS every 10 s (MiB): {memory:?}",
        started.elapsed(),
        made.len(),
    );
    assert_eq!(lost, 0, "seed {seed}: edits are nowhere");
}
