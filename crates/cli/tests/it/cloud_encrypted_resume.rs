//! Interrupted uploads of an encrypted task on S3 (moto): taken up again under the same file
//! id, so the parts the service holds are not sent twice, and never with other bytes under a
//! used id (`cairn_cloud::crypt::resume`); either way no multipart upload is left behind.

use crate::cloud::{connect, read, start_moto, Moto};
use crate::cloud_rules::{parts_held, unfinished_uploads};
use crate::harness::{noise, sent_bytes, wait_until, Client};

const PASSWORD: &str = "correct horse battery";
const PART: usize = 5 << 20;
const SIZE: usize = 16 << 20;

/// `cloud add t` on `c`: path `vault` of connection `s3`, encrypted with [`PASSWORD`].
fn add_encrypted(c: &Client, extra: &[&str]) {
    let root = c.root.to_str().expect("utf-8").to_string();
    let mut args = vec![
        "cloud",
        "add",
        "t",
        "--connection",
        "s3",
        "--local",
        &root,
        "--remote",
        "vault",
        "--encrypt",
    ];
    args.extend_from_slice(extra);
    let out = c.cairn_stdin(&args, &format!("{PASSWORD}\n"));
    assert!(
        out.status.success(),
        "cloud add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An encrypted task sending `big.bin` (16 MiB, parts of 5 MiB, one at a time) through a
/// slow connection, killed (SIGKILL) once moto holds two of its parts; the limit is lifted.
fn encrypted_upload_killed_after_two_parts(moto: &Moto) -> Client {
    let c = Client::new();
    connect(&c, moto, "s3");
    add_encrypted(&c, &["--part-size", "5", "--transfers", "1"]);
    c.ok(&["cloud", "edit", "s3", "--up-limit", "2000"]);
    c.write("big.bin", &noise(7, SIZE));
    let mut run = c
        .cmd()
        .args(["run", "t"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cairn run");
    wait_until(300, "two parts held by moto", || {
        unfinished_uploads(moto)
            .iter()
            .any(|(k, id)| k.starts_with("vault/") && parts_held(moto, k, id) >= 2)
    });
    run.kill().expect("kill -9 the run");
    let _ = run.wait();
    c.ok(&["cloud", "edit", "s3", "--up-limit", "0"]);
    c
}

/// What another computer with the password gets from the path.
fn fetched(moto: &Moto) -> Option<Vec<u8>> {
    let b = Client::new();
    connect(&b, moto, "s3");
    add_encrypted(&b, &[]);
    b.ok(&["run", "t"]);
    read(&b, "big.bin")
}

#[test]
fn an_interrupted_encrypted_upload_resumes_without_sending_held_parts_again() {
    let moto = start_moto();
    let c = encrypted_upload_killed_after_two_parts(&moto);
    let out = c.ok(&["run", "t"]);
    let sent = sent_bytes(&out) as usize;
    // The stored file: a 24-byte header and a 16-byte tag per 64 KiB segment.
    let stored = SIZE + 24 + 16 * (SIZE >> 16);
    eprintln!("encrypted resume: {sent} of {stored} bytes sent");
    assert!(
        sent <= stored - 2 * PART + (64 << 10),
        "{sent} bytes sent of {stored}: the two held parts went again\n{out}"
    );
    assert!(sent >= stored - 3 * PART, "{sent} bytes sent: {out}");
    assert!(
        unfinished_uploads(&moto).is_empty(),
        "{:?}",
        unfinished_uploads(&moto)
    );
    assert!(fetched(&moto) == Some(noise(7, SIZE)), "not the file");
}

/// Killed midway, then the file rewritten with other bytes: its upload starts over under a
/// new file id (nothing of the new file is sealed under the old one), the object is the new
/// file, and the old upload's parts are not left behind.
#[test]
fn a_changed_file_restarts_its_encrypted_upload_under_a_new_file_id() {
    let moto = start_moto();
    let c = encrypted_upload_killed_after_two_parts(&moto);
    c.write("big.bin", &noise(8, SIZE));
    let out = c.ok(&["run", "t"]);
    let sent = sent_bytes(&out) as usize;
    assert!(sent >= SIZE, "{sent} bytes sent: {out}");
    assert!(
        unfinished_uploads(&moto).is_empty(),
        "{:?}",
        unfinished_uploads(&moto)
    );
    assert!(fetched(&moto) == Some(noise(8, SIZE)), "not the new file");
}
