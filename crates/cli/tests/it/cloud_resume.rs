//! Interrupted large uploads resume on Azure (uncommitted blocks, azurite) and GCS (resumable
//! sessions, gcp-storage-emulator; of a new object and of an edit): a run killed midway, then
//! the next run sends only what the service does not hold, counted by the transport, and the
//! object is byte-exact; a file that changed meanwhile starts over. Also Azure's access tiers
//! and archived blobs.

use crate::cloud::{add_task, read};
use crate::harness::cloud::{self, AzblobServer, GcsServer};
use crate::harness::{noise, sent_bytes, wait_until, Client};

const MIB: usize = 1 << 20;

fn started<T>(server: cloud::Result<T>) -> T {
    server.unwrap_or_else(|e| panic!("{e}"))
}

/// `cloud connect NAME` to azurite's container with the development key.
fn connect_azure(c: &Client, az: &AzblobServer, name: &str) {
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
            &format!("account_name={}", az.account_name),
            "--secret",
            "account_key",
        ],
        &format!("{}\n", az.account_key),
    );
    assert!(
        out.status.success(),
        "cloud connect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn connect_gcs(c: &Client, gcs: &GcsServer, name: &str) {
    c.ok(&[
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
    ]);
}

/// The task's upload state file as JSON (`null` while there is none).
fn upload_state(c: &Client) -> serde_json::Value {
    let Ok(dir) = std::fs::read_dir(c.home.join("cloud-uploads")) else {
        return serde_json::Value::Null;
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The most entries of `list` (`blocks` or `chunks`) any record under `section` holds.
fn recorded(c: &Client, section: &str, list: &str) -> usize {
    upload_state(c)[section]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|v| v[list].as_array().map(Vec::len))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Starts `cairn run t` on `c` with the connection `conn` limited to 2 MB/s, waits until
/// `held()` says the service holds enough, and kills the run (SIGKILL); the limit is lifted.
fn killed_midway(c: &Client, conn: &str, what: &str, mut held: impl FnMut() -> bool) {
    c.ok(&["cloud", "edit", conn, "--up-limit", "2000"]);
    let mut run = c
        .cmd()
        .args(["run", "t"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cairn run");
    wait_until(300, what, &mut held);
    run.kill().expect("kill -9 the run");
    let _ = run.wait();
    c.ok(&["cloud", "edit", conn, "--up-limit", "0"]);
}

/// An Azure task in 4 MiB blocks (tier Cool) whose run was killed once azurite held two of
/// the 16 MiB file's blocks.
fn azure_upload_killed_after_two_blocks(az: &AzblobServer, remote: &str) -> Client {
    let c = Client::new();
    connect_azure(&c, az, "az");
    add_task(
        &c,
        "az",
        remote,
        &[
            "--part-size",
            "4",
            "--transfers",
            "1",
            "--storage-class",
            "cool",
        ],
    );
    c.write("big.bin", &noise(7, 16 * MIB));
    killed_midway(&c, "az", "two blocks acknowledged by azurite", || {
        recorded(&c, "blobs", "blocks") >= 2
    });
    c
}

/// The blob's content and access tier, straight from azurite.
fn azure_blob(az: &AzblobServer, name: &str) -> (Vec<u8>, String) {
    let resp = az
        .request(reqwest::Method::GET, name, &[], &[], Vec::new())
        .expect("signed request")
        .send()
        .expect("azurite answers");
    assert!(resp.status().is_success(), "GET {name}: {}", resp.status());
    (resp.bytes().expect("body").to_vec(), azure_tier(az, name))
}

/// The blob's access tier (Get Blob Properties).
fn azure_tier(az: &AzblobServer, name: &str) -> String {
    let props = az
        .request(reqwest::Method::HEAD, name, &[], &[], Vec::new())
        .expect("signed request")
        .send()
        .expect("azurite answers");
    props
        .headers()
        .get("x-ms-access-tier")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Killed with two 4 MiB blocks uncommitted on azurite: the next run takes them up (Get Block
/// List, then Put Block List naming them) and sends only the other blocks.
#[test]
fn an_interrupted_azure_upload_resumes_without_sending_held_blocks_again() {
    let az = started(cloud::start_azurite());
    let c = azure_upload_killed_after_two_blocks(&az, "resume");
    let out = c.ok(&["run", "t"]);
    let sent = sent_bytes(&out) as usize;
    let total = 16 * MIB;
    eprintln!("azure resume: {sent} of {total} bytes sent");
    assert!(
        sent <= total - 2 * 4 * MIB + (64 << 10),
        "{sent} bytes sent of {total}: held blocks went again\n{out}"
    );
    assert!(sent >= total - 3 * 4 * MIB, "{sent} bytes sent: {out}");
    let (data, tier) = azure_blob(&az, "resume/big.bin");
    assert!(data == noise(7, 16 * MIB), "the blob is not the file");
    assert_eq!(tier, "Cool", "the block list carried the task's tier");
    assert_eq!(upload_state(&c)["blobs"], serde_json::json!({}));
}

/// Killed midway, then the file rewritten with other bytes: no held block has them, so every
/// block goes again and the blob is the new file, never a mix.
#[test]
fn a_changed_file_starts_its_azure_upload_over() {
    let az = started(cloud::start_azurite());
    let c = azure_upload_killed_after_two_blocks(&az, "changed");
    c.write("big.bin", &noise(8, 16 * MIB));
    let out = c.ok(&["run", "t"]);
    let sent = sent_bytes(&out) as usize;
    assert!(sent >= 16 * MIB, "{sent} bytes sent: {out}");
    let (data, _) = azure_blob(&az, "changed/big.bin");
    assert!(data == noise(8, 16 * MIB), "the blob is not the new file");
}

/// A GCS task whose run was killed once the emulator acknowledged the first 8 MiB chunk of
/// a 20 MiB file (the second is recorded only after the first was answered).
fn gcs_upload_killed_after_one_chunk(gcs: &GcsServer, remote: &str) -> Client {
    let c = Client::new();
    connect_gcs(&c, gcs, "g");
    add_task(&c, "g", remote, &["--transfers", "1"]);
    c.write("big.bin", &noise(5, 20 * MIB));
    killed_midway(&c, "g", "a chunk acknowledged by the emulator", || {
        recorded(&c, "sessions", "chunks") >= 2
    });
    c
}

fn gcs_object(gcs: &GcsServer, name: &str) -> Vec<u8> {
    let resp = gcs.download(name).send().expect("emulator answers");
    assert!(resp.status().is_success(), "GET {name}: {}", resp.status());
    resp.bytes().expect("body").to_vec()
}

/// Killed with at least one chunk held by the emulator: the next run asks the session how
/// much it holds, answers those chunks itself and sends the rest into the same session.
#[test]
fn an_interrupted_gcs_upload_resumes_from_what_the_session_holds() {
    let gcs = started(cloud::start_gcs_emulator());
    let c = gcs_upload_killed_after_one_chunk(&gcs, "resume");
    let out = c.ok(&["run", "t"]);
    let sent = sent_bytes(&out) as usize;
    let total = 20 * MIB;
    eprintln!("gcs resume: {sent} of {total} bytes sent");
    assert!(
        sent <= total - 8 * MIB + (64 << 10),
        "{sent} bytes sent of {total}: held chunks went again\n{out}"
    );
    assert!(sent >= total - 16 * MIB, "{sent} bytes sent: {out}");
    assert!(
        gcs_object(&gcs, "resume/big.bin") == noise(5, 20 * MIB),
        "the object is not the file"
    );
    assert_eq!(upload_state(&c)["sessions"], serde_json::json!({}));
}

/// An edit of a large object names the generation it replaces, so it too is a resumable
/// session (an unconditional write in parts was an XML multipart upload, which the emulator
/// answers with 501): killed after a chunk, the object is still the old file; the next run
/// sends only what the session does not hold, and the object is the edited file.
#[test]
fn an_interrupted_gcs_edit_resumes_and_leaves_the_old_object_whole_meanwhile() {
    let gcs = started(cloud::start_gcs_emulator());
    let c = Client::new();
    connect_gcs(&c, &gcs, "g");
    add_task(&c, "g", "edit", &["--transfers", "1"]);
    c.write("big.bin", &noise(5, 20 * MIB));
    c.ok(&["run", "t"]);
    c.write("big.bin", &noise(7, 20 * MIB));
    killed_midway(&c, "g", "a chunk of the edit acknowledged", || {
        recorded(&c, "sessions", "chunks") >= 2
    });
    assert!(
        gcs_object(&gcs, "edit/big.bin") == noise(5, 20 * MIB),
        "the interrupted edit changed the object"
    );
    let out = c.ok(&["run", "t"]);
    let sent = sent_bytes(&out) as usize;
    let total = 20 * MIB;
    assert!(
        sent <= total - 8 * MIB + (64 << 10),
        "{sent} bytes sent of {total}: held chunks went again\n{out}"
    );
    assert!(
        gcs_object(&gcs, "edit/big.bin") == noise(7, 20 * MIB),
        "the object is not the edited file"
    );
    assert_eq!(upload_state(&c)["sessions"], serde_json::json!({}));
}

/// Killed midway, then the file rewritten: its new mtime makes it another write, so the old
/// session is cancelled and every byte goes into a new one.
#[test]
fn a_changed_file_starts_its_gcs_upload_over() {
    let gcs = started(cloud::start_gcs_emulator());
    let c = gcs_upload_killed_after_one_chunk(&gcs, "changed");
    c.write("big.bin", &noise(6, 20 * MIB));
    let out = c.ok(&["run", "t"]);
    let sent = sent_bytes(&out) as usize;
    assert!(sent >= 20 * MIB, "{sent} bytes sent: {out}");
    assert!(
        gcs_object(&gcs, "changed/big.bin") == noise(6, 20 * MIB),
        "the object is not the new file"
    );
}

/// `--storage-class archive` puts the blob in the Archive tier; another computer's first run
/// cannot read it, asks for its rehydration and says so; azurite rehydrates at once, so the
/// next run downloads it.
#[test]
fn an_archived_azure_blob_is_rehydrated_and_picked_up_by_a_later_run() {
    let az = started(cloud::start_azurite());
    let (a, b) = (Client::new(), Client::new());
    connect_azure(&a, &az, "az");
    connect_azure(&b, &az, "az");
    add_task(&a, "az", "cold", &["--storage-class", "archive"]);
    add_task(&b, "az", "cold", &[]);
    a.write("archive.txt", b"kept in the cold");
    a.ok(&["run", "t"]);
    assert_eq!(azure_tier(&az, "cold/archive.txt"), "Archive");
    let first = b.cairn(&["run", "t"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(said.contains("archive.txt"), "{said}");
    assert!(said.contains("restore requested at"), "{said}");
    assert!(!b.path("archive.txt").exists(), "not readable yet");
    b.ok(&["run", "t"]);
    assert_eq!(
        read(&b, "archive.txt").as_deref(),
        Some(&b"kept in the cold"[..])
    );
}

/// Killed midway, then the file rewritten with other bytes but its old mtime (so the write
/// looks the same): the first chunk's bytes differ from the recorded ones, so the session is
/// cancelled rather than finished with them, and the object ends up the new file.
#[test]
fn a_file_changed_under_its_old_mtime_never_finishes_the_old_gcs_session() {
    let gcs = started(cloud::start_gcs_emulator());
    let c = gcs_upload_killed_after_one_chunk(&gcs, "same-mtime");
    let path = c.path("big.bin");
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    c.write("big.bin", &noise(9, 20 * MIB));
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(mtime))
        .expect("set the old mtime back");
    let first = c.cairn(&["run", "t"]);
    let said = String::from_utf8_lossy(&first.stdout).into_owned()
        + &String::from_utf8_lossy(&first.stderr);
    assert!(
        said.contains("changed since its interrupted upload"),
        "the old session was not refused: {said}"
    );
    if !first.status.success() {
        c.ok(&["run", "t"]);
    }
    assert!(
        gcs_object(&gcs, "same-mtime/big.bin") == noise(9, 20 * MIB),
        "the object is not the new file"
    );
    assert_eq!(upload_state(&c)["sessions"], serde_json::json!({}));
}
