//! A server whose chunks live in an S3 bucket (`server run --store s3://...`) on a real local S3
//! server (moto): backup, byte-exact restore, check, gc on the bucket, and the errors and secrets
//! of store URLs and config files; also `--store PATH`, and the store a data folder records.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use cairn_store::{ObjectStore, OpendalStore, S3Credentials, S3Location};
use futures_util::TryStreamExt;

use crate::harness::cloud::{start_moto, S3Server};
use crate::harness::{bin, noise, run, Client, Server};

pub(crate) fn store_url(s3: &S3Server, prefix: &str) -> String {
    format!(
        "s3://{}/{prefix}?endpoint={}&region={}",
        s3.bucket, s3.endpoint, s3.region
    )
}

/// The server's environment: the store and its keys, as an operator would set them.
fn s3_env(s3: &S3Server, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CAIRN_STORE", store_url(s3, prefix)),
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.clone()),
    ]
}

/// `cairn server ARGS --data DATA` with the keys in the environment.
fn admin_with_keys(server: &Server, s3: &S3Server, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("server").args(args).arg("--data").arg(&server.data);
    cmd.env("AWS_ACCESS_KEY_ID", &s3.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key);
    run(&mut cmd, None)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The objects under `prefix/chunks/` and `prefix/packs/` in the bucket, listed directly.
pub(crate) fn objects_in_bucket(s3: &S3Server, prefix: &str) -> usize {
    let location = S3Location {
        bucket: s3.bucket.clone(),
        prefix: prefix.into(),
        endpoint: Some(s3.endpoint.clone()),
        region: Some(s3.region.clone()),
    };
    let keys = S3Credentials {
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.clone(),
    };
    let store = OpendalStore::s3(&location, Some(&keys)).expect("open bucket");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let chunks: Vec<_> = store.list("chunks/").try_collect().await.expect("list");
        let packs: Vec<_> = store.list("packs/").try_collect().await.expect("list");
        chunks.len() + packs.len()
    })
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[test]
fn a_server_on_s3_backs_up_restores_checks_and_collects_on_the_bucket() {
    let s3 = start_moto().expect("moto (run scripts/test-servers)");
    let env = s3_env(&s3, "srv1");
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with(&env_refs);
    server.alice_folder("short", "1");
    let c = Client::new();
    // Large chunks go one object each, small files into packs.
    c.write("big.bin", &noise(1, 3 * 1024 * 1024));
    for i in 0..20u64 {
        c.write(&format!("small/{i}.txt"), &noise(100 + i, 3_000));
    }
    c.connect(&server, "alice", "alice-pw");
    let root = c.root.to_str().expect("utf-8");
    c.ok(&[
        "backup",
        "add",
        "t",
        "--local",
        root,
        "--connection",
        "srv",
        "--folder",
        "short",
        "--computer",
        "pc",
    ]);
    c.ok(&["run", "t", "--once"]);

    // Every chunk is on the bucket, none in the data folder.
    let stored = objects_in_bucket(&s3, "srv1");
    assert!(stored >= 3, "chunks and packs on the bucket: {stored}");
    assert!(
        !server.data.join("chunks").exists(),
        "no local chunk store beside an S3 one"
    );

    let out = c.tmp().join("out");
    c.ok(&["restore", "t", "--to", out.to_str().expect("utf-8")]);
    let mut restored = vec!["big.bin".to_string()];
    restored.extend((0..20).map(|i| format!("small/{i}.txt")));
    for rel in &restored {
        assert_eq!(
            std::fs::read(out.join("docs").join(rel)).expect("restored"),
            std::fs::read(c.path(rel)).expect("local"),
            "{rel}"
        );
    }

    // check, with the keys from a private config file this time.
    let config = c.tmp().join("server.toml");
    write_private(
        &config,
        &format!(
            "data = {:?}\nstore = {:?}\n[s3]\naccess_key_id = {:?}\nsecret_access_key = {:?}\n",
            server.data.to_str().expect("utf-8"),
            store_url(&s3, "srv1"),
            s3.access_key_id,
            s3.secret_access_key
        ),
    );
    let check = run(
        Command::new(bin())
            .args(["server", "check", "--read-data", "--config"])
            .arg(&config)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY"),
        None,
    );
    assert!(
        check.status.success() && text(&check).contains("no problems"),
        "{}",
        text(&check)
    );

    // A new big file replaces the old one; with one version kept, gc frees the old chunks
    // from the bucket (its second run: gc spares what the run before it saw in use).
    c.write("big.bin", &noise(2, 3 * 1024 * 1024));
    c.ok(&["run", "t", "--once"]);
    let before = objects_in_bucket(&s3, "srv1");
    let mut freed = 0u64;
    for _ in 0..2 {
        let gc = admin_with_keys(&server, &s3, &["gc"]);
        assert!(gc.status.success(), "{}", text(&gc));
        freed += text(&gc)
            .split(" chunks (")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .expect("gc output");
    }
    assert_eq!(freed, 3 * 1024 * 1024, "the old big file's bytes");
    let after = objects_in_bucket(&s3, "srv1");
    assert!(after < before, "gc deleted objects: {before} -> {after}");
    let check = admin_with_keys(&server, &s3, &["check", "--read-data"]);
    assert!(check.status.success(), "{}", text(&check));

    // The secret key is in no log line, and the store shows without it.
    assert!(!server.log_contains(&s3.secret_access_key));
}

#[test]
fn store_urls_and_config_files_are_checked_and_keep_secrets_out() {
    let s3 = start_moto().expect("moto (run scripts/test-servers)");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let serve = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.args(["server", "run", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run(&mut cmd, None);
        assert!(!out.status.success(), "server run {extra:?} should fail");
        text(&out)
    };

    let e = serve(&["--store", "gs://bucket"], &[]);
    assert!(
        e.contains("gs://bucket") && e.contains("unknown scheme"),
        "{e}"
    );

    let e = serve(&["--store", "s3://?region=us-east-1"], &[]);
    assert!(e.contains("names no bucket"), "{e}");

    let missing = format!(
        "s3://no-such-bucket?endpoint={}&region={}",
        s3.endpoint, s3.region
    );
    let keys = [
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.as_str()),
    ];
    let e = serve(&["--store", &missing], &keys);
    assert!(
        e.contains("s3://no-such-bucket") && e.contains("does not exist"),
        "{e}"
    );
    assert!(!e.contains(&s3.secret_access_key), "{e}");

    let e = serve(
        &[
            "--store",
            &format!("{missing}&secret_access_key=SHOULD-NOT-SHOW"),
        ],
        &[],
    );
    assert!(e.contains("does not belong in the URL"), "{e}");
    assert!(!e.contains("SHOULD-NOT-SHOW"), "{e}");

    // A config file holding a secret must be private; its mistakes name the file and key.
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "store = {:?}\n[s3]\naccess_key_id = \"AKID\"\nsecret_access_key = \"SHOULD-NOT-SHOW\"\n",
            store_url(&s3, "x")
        ),
    )
    .expect("write");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let path = config.to_str().expect("utf-8");
    let e = serve(&["--config", path], &[]);
    assert!(e.contains("chmod 600") && e.contains(path), "{e}");
    assert!(!e.contains("SHOULD-NOT-SHOW"), "{e}");
    write_private(
        &config,
        "listen = \"127.0.0.1:0\"\nmetadata = \"postgres://db\"\n",
    );
    // The folder's metadata is its meta.sqlite: a database named now would be an empty server.
    let e = serve(&["--config", path], &[]);
    assert!(e.contains("keeps its metadata in"), "{e}");

    // A folder keeps the store it was created with: another one is refused by name.
    write_private(&config, "");
    let first = store_url(&s3, "first");
    let env = [
        ("CAIRN_STORE", first.as_str()),
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.as_str()),
    ];
    let mut server = Server::start_with(&env);
    server.kill();
    let mut other = Command::new(bin());
    other
        .args(["server", "run", "--listen", "127.0.0.1:0", "--data"])
        .arg(&server.data)
        .args(["--store", &store_url(&s3, "second")])
        .envs(keys);
    let out = run(&mut other, None);
    assert!(!out.status.success());
    let e = text(&out);
    assert!(
        e.contains("keeps its chunks in") && e.contains(&first) && e.contains("second"),
        "{e}"
    );
}

/// `server run --config FILE` alone: data folder, listen address, metrics address, store and
/// its keys all from the file (no AWS variables in the environment).
#[test]
fn server_run_takes_everything_from_its_config_file() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let s3 = start_moto().expect("moto (run scripts/test-servers)");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("srv-data");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.path().join("server.toml");
    write_private(
        &config,
        &format!(
            "data = {:?}\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
             store = {:?}\nmetadata = \"sqlite\"\n[s3]\naccess_key_id = {:?}\nsecret_access_key = {:?}\n",
            data.to_str().expect("utf-8"),
            store_url(&s3, "from-config"),
            s3.access_key_id,
            s3.secret_access_key
        ),
    );
    let mut child = Command::new(bin())
        .args(["server", "run", "--config"])
        .arg(&config)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("CAIRN_DATA")
        .env_remove("CAIRN_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let stdout = child.stdout.take().expect("stdout");
    let mut said = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let done = line.starts_with("listening on https://");
        said.push(line);
        if done {
            break;
        }
    }
    let printed = said.join("\n");
    let metrics = reqwest::blocking::get(format!("http://127.0.0.1:{metrics_port}/metrics"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        printed.contains(&format!("chunk store: {}", store_url(&s3, "from-config"))),
        "{printed}"
    );
    assert!(
        printed.contains("listening on https://127.0.0.1:"),
        "{printed}"
    );
    assert!(!printed.contains(&s3.secret_access_key), "{printed}");
    assert!(
        data.join("meta.sqlite").is_file(),
        "the data folder of the file"
    );
    let metrics = metrics.expect("scrape");
    assert_eq!(metrics.status(), 200);
    assert!(metrics
        .text()
        .expect("text")
        .contains("cairn_commits_total 0"));
    // gc finds folder, store and keys through the same file.
    let gc = run(
        Command::new(bin())
            .args(["server", "gc", "--config"])
            .arg(&config)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("CAIRN_DATA"),
        None,
    );
    assert!(gc.status.success(), "{}", text(&gc));
}

/// `--store PATH` puts the chunks in another folder, recorded like an S3 store; a folder that
/// kept its chunks inside refuses to be started with another store.
#[test]
fn a_local_store_elsewhere_is_used_and_the_recorded_store_is_kept() {
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let store = elsewhere.path().join("chunks");
    let url = format!("file://{}", store.display());
    let server = Server::start_with(&[("CAIRN_STORE", url.as_str())]);
    let c = Client::new();
    c.write("big.bin", &noise(3, 2 * 1024 * 1024));
    c.backup_task(&server, &[]);
    c.ok(&["run", "t", "--once"]);
    assert!(store.join("chunks").is_dir(), "chunks in the named folder");
    assert!(!server.data.join("chunks").exists());
    // Admin commands find it without being told.
    assert!(server
        .admin(&["check", "--read-data"], None)
        .contains("no problems"));

    let mut inside = Server::start();
    let c2 = Client::new();
    c2.write("f.bin", &noise(4, 2 * 1024 * 1024));
    c2.backup_task(&inside, &[]);
    c2.ok(&["run", "t", "--once"]);
    inside.kill();
    let out = run(
        Command::new(bin())
            .args(["server", "run", "--listen", "127.0.0.1:0", "--data"])
            .arg(&inside.data)
            .args(["--store", &url]),
        None,
    );
    assert!(!out.status.success());
    let e = text(&out);
    let own = inside.data.join("chunks");
    assert!(
        e.contains("keeps its chunks in") && e.contains(&own.display().to_string()),
        "{e}"
    );
}
