//! Cloud task options end to end: `cloud buckets` on real S3 (moto, signatures checked) and
//! Azure (azurite) servers, `task set` changing every option `cloud add` takes with the same
//! checks, the weekly schedule in the agent, and files the cloud rules leave out.

use std::process::{Child, Stdio};

use crate::cloud::{add_task, connect, start_moto};
use crate::harness::{wait_until, Client};

fn config(c: &Client) -> serde_json::Value {
    let text = std::fs::read_to_string(c.home.join("config.json")).expect("config.json");
    serde_json::from_str(&text).expect("config.json is JSON")
}

#[test]
fn cloud_buckets_lists_s3_buckets_and_says_plainly_when_the_list_is_refused() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "s3");
    let out = c.ok(&["cloud", "buckets", "s3"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&moto.bucket) && l.contains("this connection's")),
        "{out}"
    );
    // A key moto does not know: the request is signed and refused with 403.
    let out = c.cairn_stdin(
        &[
            "cloud",
            "connect",
            "stranger",
            "--provider",
            "s3",
            "--endpoint",
            &moto.endpoint,
            "--bucket",
            &moto.bucket,
            "--option",
            "access_key_id=AKIANOSUCHKEY0000000",
            "--secret",
            "secret_access_key",
        ],
        "not-the-secret\n",
    );
    assert!(out.status.success(), "{out:?}");
    let text = c.fails(&["cloud", "buckets", "stranger"]);
    assert!(text.contains("refused to list buckets (403"), "{text}");
    assert!(
        text.contains("cairn cloud edit stranger --bucket NAME"),
        "{text}"
    );
    assert!(!text.contains("not-the-secret"), "no secret in messages");
    // A service with no list here says so, with the same advice.
    let dav = c.tmp().join("dav");
    std::fs::create_dir_all(&dav).expect("mkdir");
    let dav = dav.to_str().expect("utf-8").to_string();
    c.ok(&[
        "cloud",
        "connect",
        "disk",
        "--provider",
        "fs",
        "--option",
        &format!("root={dav}"),
    ]);
    let text = c.fails(&["cloud", "buckets", "disk"]);
    assert!(text.contains("not offered"), "{text}");
}

#[test]
fn cloud_buckets_lists_azure_containers_and_a_wrong_key_is_refused() {
    let az = crate::harness::cloud::start_azurite().unwrap_or_else(|e| panic!("{e}"));
    let c = Client::new();
    let connect = |name: &str, account: &str, key: &str| {
        let out = c.cairn_stdin(
            &[
                "cloud",
                "connect",
                name,
                "--provider",
                "azblob",
                "--endpoint",
                &az.endpoint,
                "--option",
                &format!("container={}", az.container),
                "--option",
                &format!("account_name={account}"),
                "--secret",
                "account_key",
            ],
            &format!("{key}\n"),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    connect("az", &az.account_name, &az.account_key);
    let out = c.ok(&["cloud", "buckets", "az"]);
    assert!(out.lines().any(|l| l.starts_with(&az.container)), "{out}");
    // The same account with a wrong key (another connection: a second account name on the
    // same endpoint would be refused as the same credential).
    let c2 = Client::new();
    let out = c2.cairn_stdin(
        &[
            "cloud",
            "connect",
            "az",
            "--provider",
            "azblob",
            "--endpoint",
            &az.endpoint,
            "--option",
            &format!("container={}", az.container),
            "--option",
            &format!("account_name={}", az.account_name),
            "--secret",
            "account_key",
        ],
        &format!("{}\n", "AAAA".repeat(22)),
    );
    assert!(out.status.success(), "{out:?}");
    let text = c2.fails(&["cloud", "buckets", "az"]);
    assert!(text.contains("refused to list containers (403"), "{text}");
    assert!(text.contains("--option container=NAME"), "{text}");
}

/// Every option `cloud add` takes, changed by `task set`, and each refusal the same in both.
#[test]
fn task_set_changes_every_cloud_option_with_the_checks_of_cloud_add() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "s3");
    std::fs::create_dir_all(c.path("sub")).expect("mkdir");
    add_task(
        &c,
        "s3",
        "opts",
        &[
            "--schedule",
            "mon-fri 09-18=suspend",
            "--up-limit",
            "500",
            "--max-size",
            "10",
            "--exclude-dir",
            "sub",
        ],
    );
    let t = &config(&c)["tasks"]["t"];
    assert_eq!(t["cloud"]["limit_upload"], 500_000);
    assert_eq!(t["filter"]["max_size"], 10 << 20);
    assert_eq!(t["filter"]["excluded_dirs"][0], "sub");
    let grid = t["cloud"]["schedule"].as_str().expect("a grid").to_string();
    assert_eq!(grid.len(), 168);
    assert_eq!(&grid[0..24], "111111111000000000111111", "monday");
    assert_eq!(&grid[120..168], "1".repeat(48), "the weekend runs");

    c.ok(&[
        "task",
        "set",
        "t",
        "--direction",
        "upload-only",
        "--keep-deleted",
        "true",
        "--transfers",
        "7",
        "--part-size",
        "16",
        "--storage-class",
        "ia",
        "--sse",
        "true",
        "--max-size",
        "10240",
        "--exclude-name",
        "*.bak",
        "--exclude-ext",
        "*.ISO",
        "--exclude-dir",
        "",
        "--schedule",
        "sat,sun 00-06=suspend",
        "--up-limit",
        "0",
        "--down-limit",
        "300",
        "--poll",
        "60",
        "--keep-versions",
        "3",
    ]);
    let t = &config(&c)["tasks"]["t"];
    assert_eq!(t["drive"]["mode"], "upload-only");
    assert_eq!(t["keep_deleted"], true);
    assert_eq!(t["transfers"], 7);
    assert_eq!(t["cloud"]["part_size_mb"], 16);
    assert_eq!(t["cloud"]["storage_class"], "STANDARD_IA");
    assert_eq!(t["cloud"]["sse"], "AES256");
    assert_eq!(t["filter"]["max_size"], 10_240u64 << 20);
    assert_eq!(t["filter"]["names"], serde_json::json!(["*.bak"]));
    assert_eq!(t["filter"]["exts"], serde_json::json!(["iso"]));
    assert_eq!(t["filter"]["excluded_dirs"], serde_json::json!([]));
    let grid = t["cloud"]["schedule"].as_str().expect("a grid");
    assert_eq!(&grid[120..126], "000000");
    assert_eq!(
        &grid[0..24],
        "1".repeat(24),
        "the weekday rule was replaced"
    );
    assert!(
        t["cloud"].get("limit_upload").is_none(),
        "0 took the cap away"
    );
    assert_eq!(t["cloud"]["limit_download"], 300_000);
    assert_eq!(t["cloud"]["poll_secs"], 60);
    assert_eq!(t["cloud"]["keep_versions"], 3);
    c.ok(&["task", "set", "t", "--schedule", "always", "--sse", "false"]);
    let t = &config(&c)["tasks"]["t"];
    assert!(t["cloud"].get("schedule").is_none());
    assert!(t["cloud"].get("sse").is_none());

    // Each bad value: refused by `task set`, nothing changed, and refused by `cloud add` with
    // the same words.
    let before = config(&c);
    let long_ext = "x".repeat(256);
    for (option, value, says) in [
        ("--max-size", "10241", "0 to 10240 MB"),
        ("--part-size", "4", "the part size is 5 to 5120 MB"),
        ("--transfers", "0", "between 1 and 64"),
        ("--transfers", "65", "between 1 and 64"),
        ("--schedule", "mon 25=suspend", "not an hour"),
        ("--schedule", "weekdays=suspend", "is not a day"),
        ("--storage-class", "frozen", "unknown class"),
        ("--poll", "0", "at least 1 second"),
        ("--poll", "86401", "at most one day"),
        ("--exclude-ext", long_ext.as_str(), "at most 255"),
    ] {
        let text = c.fails(&["task", "set", "t", option, value]);
        assert!(text.contains(says), "task set {option} {value}: {text}");
        assert_eq!(
            config(&c),
            before,
            "task set {option} {value} changed nothing"
        );
        let other = Client::new();
        connect(&other, &moto, "s3");
        let root = other.root.to_str().expect("utf-8").to_string();
        let text = other.fails(&[
            "cloud",
            "add",
            "t",
            "--connection",
            "s3",
            "--local",
            &root,
            "--remote",
            "x",
            option,
            value,
        ]);
        assert!(text.contains(says), "cloud add {option} {value}: {text}");
    }
    // Options of cloud tasks on a task that is not one.
    let text = c.fails(&["task", "set", "nope", "--schedule", "always"]);
    assert!(text.contains("no task named nope"), "{text}");
}

/// Seconds since the Unix epoch now.
#[cfg(feature = "test-hooks")]
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// The hour of the week (0 = Monday 00:00 UTC) that holds `unix` seconds.
#[cfg(feature = "test-hooks")]
fn slot_of(unix: i64) -> usize {
    let days = unix.div_euclid(86_400);
    // 1970-01-01 was a Thursday (3 days after a Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let hour = (unix.rem_euclid(86_400) / 3600) as usize;
    weekday * 24 + hour
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `c`'s agent in UTC with its clock moved `offset` seconds.
fn agent_at(c: &Client, offset: i64) -> Agent {
    Agent(
        c.cmd()
            .args(["agent", "--rescan", "3600"])
            .env("TZ", "UTC")
            .env("CAIRN_TEST_CLOCK_OFFSET_SECS", offset.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    )
}

fn task_status(c: &Client) -> serde_json::Value {
    let out = c.ok(&["status", "--json"]);
    let all: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    all["tasks"][0].clone()
}

/// moto's keys in the bucket.
fn remote_keys(moto: &crate::cloud::Moto) -> String {
    moto.list_v2(&[])
        .send()
        .and_then(|r| r.text())
        .expect("moto lists the bucket")
}

/// A schedule computed from the clock: the agent uploads in a running hour, stops the
/// transfer when the suspended hour starts (no object half-written, no pass during the hour,
/// `status` says until when), and the next running hour finishes the upload.
#[test]
#[cfg(feature = "test-hooks")]
fn a_suspended_hour_stops_the_transfer_cleanly_and_the_next_hour_finishes_it() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "s3");
    // The agent's clock stands 25 s before an hour: the hour after it is suspended.
    let now = unix_now();
    let boundary = (now / 3600 + 1) * 3600;
    let offset = boundary - 25 - now;
    let suspended = slot_of(boundary);
    let grid: String = (0..168)
        .map(|s| if s == suspended { '0' } else { '1' })
        .collect();
    // 16 MiB at 400 KB/s in 5 MiB parts: ~40 s, so the suspension meets it half-way.
    let big = crate::harness::noise(77, 16 << 20);
    c.write("big.bin", &big);
    add_task(
        &c,
        "s3",
        "sched",
        &[
            "--schedule",
            &grid,
            "--up-limit",
            "400",
            "--part-size",
            "5",
            "--direction",
            "upload-only",
        ],
    );
    let agent = agent_at(&c, offset);
    wait_until(20, "the upload to start", || {
        task_status(&c)["uploading"]
            .as_array()
            .is_some_and(|u| u.iter().any(|p| p.as_str() == Some("big.bin")))
    });
    wait_until(40, "the suspended hour", || {
        task_status(&c)["state"] == "suspended"
    });
    let st = task_status(&c);
    let until_hour = format!("{:02}:00 UTC", ((boundary + 3600) % 86_400) / 3600);
    let until = st["suspended_until"].as_str().unwrap_or_default();
    assert!(until.ends_with(&until_hour), "{st}");
    let text = c.ok(&["status"]);
    assert!(text.contains("suspended until"), "{text}");
    assert!(
        st["last_result"]
            .as_str()
            .is_some_and(|r| r.contains("schedule suspends")),
        "{st}"
    );
    // No pass in the suspended hour: a new file waits, and nothing is half-written remotely.
    c.write("later.txt", b"written while suspended");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let keys = remote_keys(&moto);
    assert!(!keys.contains("big.bin"), "no half upload: {keys}");
    assert!(
        !keys.contains("later.txt"),
        "no pass while suspended: {keys}"
    );
    assert_eq!(task_status(&c)["state"], "suspended");
    drop(agent);

    // The next hour runs: the agent (its clock an hour on) finishes what was left.
    c.ok(&["task", "set", "t", "--up-limit", "0"]);
    let _agent = agent_at(&c, offset + 3600);
    wait_until(120, "the upload to finish", || {
        let keys = remote_keys(&moto);
        keys.contains("sched/big.bin") && keys.contains("sched/later.txt")
    });
    wait_until(30, "the pass to end", || {
        task_status(&c)["state"] == "up_to_date"
    });
    let other = Client::new();
    connect(&other, &moto, "s3");
    add_task(&other, "s3", "sched", &["--direction", "download-only"]);
    other.ok(&["run", "t"]);
    assert!(std::fs::read(other.path("big.bin")).expect("downloaded") == big);
    // The index agrees with the remote: a run finds nothing to do.
    let out = c.ok(&["run", "t"]);
    assert!(out.contains(": 0 uploaded, 0 downloaded"), "{out}");
}

/// The cloud default ignore list leaves `._*` and the seeds' working names out; a name the
/// provider cannot hold is named with its reason in the run summary, the log and `status`.
#[test]
fn cloud_filters_leave_default_names_out_and_name_what_a_provider_refuses() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "s3");
    add_task(&c, "s3", "filters", &["--exclude-ext", "iso"]);
    c.write("ok.txt", b"fine");
    c.write("._ok.txt", b"a resource fork");
    c.write("@SynologyCloudSync/x", b"a working folder");
    c.write("disk.ISO", b"an image");
    c.write("a{b}.txt", b"braces S3 refuses (seed 002)");
    let out = c.cairn(&["run", "t"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 not synced"), "{stdout}");
    assert!(stderr.contains("a{b}.txt"), "named: {stderr}");
    let keys = remote_keys(&moto);
    assert!(keys.contains("filters/ok.txt"), "{keys}");
    for left_out in ["._ok.txt", "SynologyCloudSync", "disk.ISO", "a{b}"] {
        assert!(!keys.contains(left_out), "{left_out} sent: {keys}");
    }
    let text = c.ok(&["status", c.path("._ok.txt").to_str().expect("utf-8")]);
    assert!(text.contains("default ignore list"), "{text}");
    let log = c.ok(&["log", "t"]);
    assert!(log.contains("a{b}.txt"), "{log}");
    // The agent's status names it too.
    let _agent = agent_at(&c, 0);
    wait_until(30, "a pass", || {
        task_status(&c)["not_synced"].as_array().is_some_and(|n| {
            n.iter()
                .any(|p| p.as_str().is_some_and(|p| p.contains("a{b}.txt")))
        })
    });
    let text = c.ok(&["status"]);
    assert!(
        text.lines()
            .any(|l| l.contains("not synced: ") && l.contains("a{b}.txt: cannot be stored")),
        "{text}"
    );
}

/// GCS lists buckets per project: the emulator (no signatures) answers for any project; a
/// connection without a project id is told to save one.
#[test]
fn cloud_buckets_lists_gcs_buckets_of_a_project() {
    let gcs = crate::harness::cloud::start_gcs_emulator().unwrap_or_else(|e| panic!("{e}"));
    let c = Client::new();
    let connect = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "cloud",
            "connect",
            name,
            "--provider",
            "gcs",
            "--endpoint",
            &gcs.endpoint,
            "--bucket",
            &gcs.bucket,
            "--option",
            "skip_signature=true",
        ];
        args.extend_from_slice(extra);
        c.ok(&args);
    };
    connect("g", &["--option", "project_id=cairn-test-project"]);
    let out = c.ok(&["cloud", "buckets", "g"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&gcs.bucket) && l.contains("this connection's")),
        "{out}"
    );
    let other = Client::new();
    other.ok(&[
        "cloud",
        "connect",
        "g",
        "--provider",
        "gcs",
        "--endpoint",
        &gcs.endpoint,
        "--bucket",
        &gcs.bucket,
        "--option",
        "skip_signature=true",
    ]);
    let text = other.fails(&["cloud", "buckets", "g"]);
    assert!(text.contains("project_id"), "{text}");
}
