//! The cloud rules of seeds 002 and 003 end to end against moto: conflicts keep the local
//! edit, the remote's version stays as a kept version or a conflict copy.

use std::time::Duration;

use crate::cloud::{add_task, connect, now_text, read, start_moto, Moto};
use crate::harness::Client;

/// Two computers on one cloud path of `moto`, with `extra` task options.
fn two_computers(moto: &Moto, remote: &str, extra: &[&str]) -> (Client, Client) {
    let (a, b) = (Client::new(), Client::new());
    for c in [&a, &b] {
        connect(c, moto, "s3");
        add_task(c, "s3", remote, extra);
    }
    (a, b)
}

/// The files of `c`'s folder whose names start with `stem`, by name.
fn files_starting(c: &Client, stem: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&c.root)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(stem))
        .map(|n| {
            let data = std::fs::read(c.root.join(&n)).expect("read");
            (n, data)
        })
        .collect();
    out.sort();
    out
}

/// B edited first, A later and A synced first: B's edit stays (the local edit always does,
/// whatever the clocks), and A's comes back as a conflict copy on the cloud, reaching both.
#[test]
fn a_conflict_keeps_the_local_edit_and_the_remotes_as_a_conflict_copy() {
    let moto = start_moto();
    let (a, b) = two_computers(&moto, "conflicts", &[]);
    a.write("notes.txt", b"first");
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    b.write("notes.txt", b"edit on b");
    std::thread::sleep(Duration::from_millis(50));
    a.write("notes.txt", b"edit on a, newer");
    a.ok(&["run", "t"]);
    let out = b.ok(&["run", "t"]);
    assert!(out.contains("1 conflicts"), "{out}");
    assert_eq!(read(&b, "notes.txt").as_deref(), Some(&b"edit on b"[..]));
    // The next passes bring the conflict copy down on both computers.
    b.ok(&["run", "t"]);
    a.ok(&["run", "t"]);
    for c in [&a, &b] {
        let seen = files_starting(c, "notes");
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].0, "notes.txt");
        assert_eq!(seen[0].1, b"edit on b");
        assert!(seen[1].0.ends_with("_Conflict.txt"), "{seen:?}");
        assert_eq!(seen[1].1, b"edit on a, newer");
    }
    let again = a.ok(&["run", "t"]);
    assert!(!again.contains("1 uploaded"), "{again}");
}

/// With `--keep-versions` the remote's edit becomes a kept version instead: no conflict copy,
/// and `versions`/`restore` give it back.
#[test]
fn a_conflict_keeps_the_remotes_edit_as_a_version_where_versions_are_kept() {
    let moto = start_moto();
    let (a, b) = two_computers(&moto, "kept", &["--keep-versions", "4"]);
    a.write("notes.txt", b"first");
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    b.write("notes.txt", b"edit on b");
    a.write("notes.txt", b"edit on a");
    a.ok(&["run", "t"]);
    // The cloud's times have whole seconds: the steps are more than a second apart.
    std::thread::sleep(Duration::from_millis(1500));
    let while_a_was_head = now_text();
    std::thread::sleep(Duration::from_millis(1500));
    let out = b.ok(&["run", "t"]);
    assert!(out.contains("1 conflicts"), "{out}");
    b.ok(&["run", "t"]);
    a.ok(&["run", "t"]);
    for c in [&a, &b] {
        let seen = files_starting(c, "notes");
        assert_eq!(seen, vec![("notes.txt".into(), b"edit on b".to_vec())]);
    }
    let notes = a.path("notes.txt");
    let notes = notes.to_str().expect("utf-8");
    let listed = a.ok(&["versions", "t", notes]);
    assert!(listed.lines().count() >= 2, "kept versions: {listed}");
    let to = a.tmp().join("back");
    a.ok(&[
        "restore",
        "t",
        notes,
        "--at",
        &while_a_was_head,
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        std::fs::read(to.join("notes.txt")).expect("restored"),
        b"edit on a"
    );
}

/// `versions` and `restore` of an encrypted task: the kept versions are stored under
/// encrypted names with encrypted contents, and are listed and restored in the clear.
#[test]
fn an_encrypted_task_lists_and_restores_its_kept_versions() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "s3");
    let root = c.root.to_str().expect("utf-8").to_string();
    let out = c.cairn_stdin(
        &[
            "cloud",
            "add",
            "t",
            "--connection",
            "s3",
            "--local",
            &root,
            "--remote",
            "sealed",
            "--encrypt",
            "--keep-versions",
            "3",
        ],
        "correct horse battery\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.write("stays.txt", b"so the folder is never empty");
    c.write("private/doc.txt", b"version one");
    c.write("private/inner/note.txt", b"never changed");
    c.ok(&["run", "t"]);
    std::thread::sleep(Duration::from_millis(1500));
    let after_one = now_text();
    std::thread::sleep(Duration::from_millis(1500));
    c.write("private/doc.txt", b"version two, longer");
    c.ok(&["run", "t"]);
    std::thread::sleep(Duration::from_millis(1500));
    let after_two = now_text();
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::remove_file(c.path("private/doc.txt")).expect("rm");
    c.ok(&["run", "t"]);

    let doc = c.path("private/doc.txt");
    let doc = doc.to_str().expect("utf-8");
    let listed = c.ok(&["versions", "t", doc]);
    // A header and two kept versions, with their plain sizes.
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains(" 11\n"), "{listed}");
    assert!(listed.contains(" 19\n"), "{listed}");

    // The whole folder as it was: its paths are found by decrypting the stored ones.
    let to = c.tmp().join("back");
    let private = c.path("private");
    c.ok(&[
        "restore",
        "t",
        private.to_str().expect("utf-8"),
        "--at",
        &after_one,
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        std::fs::read(to.join("private/doc.txt")).expect("restored"),
        b"version one"
    );
    c.ok(&["restore", "t", "--at", &after_two]);
    assert_eq!(
        std::fs::read(doc).expect("restored"),
        b"version two, longer"
    );
    // A nested folder below `--to` keeps its own name; its unchanged file is the head.
    let inner = c.path("private/inner");
    let to = c.tmp().join("inner-back");
    c.ok(&[
        "restore",
        "t",
        inner.to_str().expect("utf-8"),
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        std::fs::read(to.join("inner/note.txt")).expect("restored"),
        b"never changed"
    );
}

/// The multipart uploads moto holds unfinished: (key, upload id).
pub(crate) fn unfinished_uploads(moto: &Moto) -> Vec<(String, String)> {
    let text = moto
        .request_query(reqwest::Method::GET, "", &[("uploads", "")])
        .send()
        .and_then(|r| r.text())
        .expect("ListMultipartUploads");
    text.split("<Upload>")
        .skip(1)
        .filter_map(|u| Some((between(u, "Key")?, between(u, "UploadId")?)))
        .collect()
}

/// How many parts moto holds of `upload` of `key`.
pub(crate) fn parts_held(moto: &Moto, key: &str, upload: &str) -> usize {
    moto.request_query(reqwest::Method::GET, key, &[("uploadId", upload)])
        .send()
        .and_then(|r| r.text())
        .map_or(0, |t| t.matches("<PartNumber>").count())
}

fn between(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..start + len].to_string())
}

const PART: usize = 5 << 20;

/// A task on moto sending `big.bin` (16 MiB, parts of 5 MiB, one at a time) through a slow
/// connection, killed (SIGKILL) once moto holds two of its parts; the limit is lifted after.
fn upload_killed_after_two_parts(moto: &Moto, remote: &str) -> Client {
    let c = Client::new();
    connect(&c, moto, "s3");
    c.ok(&["cloud", "edit", "s3", "--up-limit", "2000"]);
    add_task(&c, "s3", remote, &["--part-size", "5", "--transfers", "1"]);
    c.write("big.bin", &crate::harness::noise(7, 16 << 20));
    let mut run = c
        .cmd()
        .args(["run", "t"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cairn run");
    let key = format!("{remote}/big.bin");
    crate::harness::wait_until(300, "two parts held by moto", || {
        unfinished_uploads(moto)
            .iter()
            .any(|(k, id)| *k == key && parts_held(moto, k, id) >= 2)
    });
    run.kill().expect("kill -9 the run");
    let _ = run.wait();
    c.ok(&["cloud", "edit", "s3", "--up-limit", "0"]);
    c
}

/// A run killed in the middle of a multipart upload: the next run takes the same upload up
/// again (ListParts on the recorded id) and sends only the parts the service does not hold.
#[test]
fn an_interrupted_multipart_upload_resumes_without_sending_finished_parts_again() {
    let moto = start_moto();
    let c = upload_killed_after_two_parts(&moto, "resume");
    let out = c.ok(&["run", "t"]);
    let sent = crate::harness::sent_bytes(&out) as usize;
    let total = 16 << 20;
    assert!(
        sent <= total - 2 * PART + (64 << 10),
        "{sent} bytes sent of {total}: the two finished parts went again\n{out}"
    );
    assert!(sent >= total - 3 * PART, "{sent} bytes sent: {out}");
    assert!(
        unfinished_uploads(&moto).is_empty(),
        "the upload was completed"
    );
    // The object is whole: another computer gets the file as it was written.
    let b = Client::new();
    connect(&b, &moto, "s3");
    add_task(&b, "s3", "resume", &[]);
    b.ok(&["run", "t"]);
    assert_eq!(
        read(&b, "big.bin"),
        Some(crate::harness::noise(7, 16 << 20))
    );
}

/// An upload recorded long ago whose file is never written again is aborted by a later run.
#[test]
fn a_stale_multipart_upload_is_aborted_by_a_later_run() {
    let moto = start_moto();
    let c = upload_killed_after_two_parts(&moto, "stale");
    assert_eq!(unfinished_uploads(&moto).len(), 1);
    std::fs::remove_file(c.path("big.bin")).expect("rm");
    // The record says the upload started at the epoch: long stale.
    let dir = c.home.join("cloud-uploads");
    let file = std::fs::read_dir(&dir)
        .expect("the run recorded its upload")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a state file");
    let text = std::fs::read_to_string(&file).expect("state");
    let mut state: serde_json::Value = serde_json::from_str(&text).expect("json");
    for upload in state["uploads"]
        .as_object_mut()
        .expect("uploads")
        .values_mut()
    {
        upload["started"] = serde_json::json!(0);
    }
    std::fs::write(&file, state.to_string()).expect("write state");
    c.write("small.txt", b"a run that sends something");
    c.ok(&["run", "t"]);
    assert!(
        unfinished_uploads(&moto).is_empty(),
        "{:?}",
        unfinished_uploads(&moto)
    );
}

/// An object in Glacier is not readable: the run that needs it requests its restore and says
/// so; a later run (moto restores at once) downloads it.
#[test]
fn an_archived_object_is_restored_and_picked_up_by_a_later_run() {
    let moto = start_moto();
    let (a, b) = (Client::new(), Client::new());
    connect(&a, &moto, "s3");
    connect(&b, &moto, "s3");
    add_task(&a, "s3", "cold", &["--storage-class", "glacier"]);
    add_task(&b, "s3", "cold", &[]);
    a.write("archive.txt", b"kept in the cold");
    a.ok(&["run", "t"]);
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

/// The local index of a cloud task lost: `cloud db rebuild` makes it again from both
/// listings (S3 ETags against local MD5s, also of a multipart object), so the next run has
/// nothing to do; a file that differs becomes a conflict, and nothing is lost.
#[test]
fn a_lost_index_is_rebuilt_from_both_listings_without_transfers() {
    let moto = start_moto();
    let c = Client::new();
    connect(&c, &moto, "s3");
    add_task(&c, "s3", "db", &["--part-size", "5"]);
    c.write("a.txt", b"first file");
    c.write("deep/b.txt", b"second file");
    c.write("big.bin", &crate::harness::noise(3, 6 << 20));
    std::fs::create_dir_all(c.path("empty")).expect("mkdir");
    c.ok(&["run", "t"]);

    let lose_index = || {
        let index = c.home.join("index.sqlite");
        assert!(index.is_file(), "the index is at {}", index.display());
        for ext in ["sqlite", "sqlite-wal", "sqlite-shm"] {
            let _ = std::fs::remove_file(c.home.join(format!("index.{ext}")));
        }
    };
    lose_index();
    let out = c.ok(&["cloud", "db", "rebuild", "t"]);
    assert!(
        out.contains("3 files the same on both sides (3 by hash"),
        "{out}"
    );
    let run = c.ok(&["run", "t"]);
    assert!(run.contains("0 uploaded, 0 downloaded"), "{run}");
    assert!(run.contains(" 0 conflicts"), "{run}");
    assert_eq!(crate::harness::sent_bytes(&run), 0, "{run}");

    // Lost again, with a local edit of the same size meanwhile: a conflict, not an overwrite.
    lose_index();
    c.write("a.txt", b"FIRST FILE");
    let out = c.ok(&["cloud", "db", "rebuild", "t"]);
    assert!(out.contains("1 files differ"), "{out}");
    let run = c.ok(&["run", "t"]);
    assert!(run.contains("1 conflicts"), "{run}");
    c.ok(&["run", "t"]);
    let mut seen: Vec<Vec<u8>> = std::fs::read_dir(&c.root)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('a'))
        .map(|e| std::fs::read(e.path()).expect("read"))
        .collect();
    seen.sort();
    assert_eq!(seen, vec![b"FIRST FILE".to_vec(), b"first file".to_vec()]);
}

/// `--encode-names`: names S3 refuses are stored under their escaped spelling and come back
/// as they were on another computer, including names that already look escaped; a rename
/// travels too.
#[test]
fn encoded_names_round_trip_through_s3() {
    let moto = start_moto();
    let (a, b) = two_computers(&moto, "enc", &["--encode-names"]);
    let files: [(&str, &[u8]); 5] = [
        ("12:30 report.txt", b"colon"),
        ("dir:a/b#c.txt", b"hash in a folder with a colon"),
        ("looks@3Aescaped.txt", b"already looks escaped"),
        ("wow@.txt", b"a lone escape character"),
        ("plain.txt", b"nothing to encode"),
    ];
    for (name, data) in files {
        a.write(name, data);
    }
    let out = a.ok(&["run", "t"]);
    // Five files and the folder `dir:a`, none refused.
    assert!(out.contains("6 uploaded"), "{out}");
    assert!(out.contains(" 0 failed"), "{out}");
    let keys = moto
        .list_v2(&[("prefix", "enc/")])
        .send()
        .and_then(|r| r.text())
        .expect("listing");
    for stored in [
        "enc/12@3A30 report.txt",
        "enc/dir@3Aa/b@23c.txt",
        "enc/looks@403Aescaped.txt",
        "enc/wow@.txt",
        "enc/plain.txt",
    ] {
        assert!(
            keys.contains(&format!("<Key>{stored}</Key>")),
            "{stored}: {keys}"
        );
    }
    b.ok(&["run", "t"]);
    for (name, data) in files {
        assert_eq!(read(&b, name).as_deref(), Some(data), "{name}");
    }
    std::fs::rename(b.path("12:30 report.txt"), b.path("13:45 report.txt")).expect("rename");
    b.ok(&["run", "t"]);
    a.ok(&["run", "t"]);
    assert!(!a.path("12:30 report.txt").exists());
    assert_eq!(read(&a, "13:45 report.txt").as_deref(), Some(&b"colon"[..]));
    // Without the flag, such a name is reported by name and not sent.
    let c = Client::new();
    connect(&c, &moto, "s3");
    add_task(&c, "s3", "plain", &[]);
    c.write("12:30 report.txt", b"colon");
    c.write("ok.txt", b"fine");
    let out = c.cairn(&["run", "t"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("12:30 report.txt"), "{said}");
}

/// The same edit made on two computers comes back to the second as the cloud's "edit" of a
/// file edited there too (Google Cloud Storage here): the same bytes are adopted, not a
/// conflict; different bytes of the same size still make a conflict copy.
#[test]
fn the_same_bytes_in_the_cloud_are_adopted_and_not_taken_for_a_conflict() {
    let remote = crate::cloud_remotes::start("gcs");
    let (a, b) = (Client::new(), Client::new());
    for c in [&a, &b] {
        crate::cloud_remotes::connect(c, &remote, "r");
        crate::cloud_remotes::add_task(c, "t", "r", "same", &[], "");
    }
    a.write("report.txt", b"first draft");
    a.ok(&["run", "t"]);
    b.ok(&["run", "t"]);
    let names =
        |c: &Client| -> Vec<String> { crate::cloud_remotes::tree(&c.root).into_keys().collect() };

    for c in [&a, &b] {
        c.write("report.txt", b"second draft, longer");
    }
    b.ok(&["run", "t"]);
    let said = a.ok(&["run", "t"]);
    assert!(said.contains("0 conflicts"), "{said}");
    assert_eq!(names(&a), ["report.txt"], "{said}");

    // Same size, other bytes: a real conflict; the local edit wins and the cloud's is kept
    // as a conflict copy there (the seeds' rule), which B then receives.
    a.write("report.txt", b"third draft by A, xx");
    b.write("report.txt", b"third draft by B, yy");
    b.ok(&["run", "t"]);
    let said = a.ok(&["run", "t"]);
    assert!(said.contains("1 conflicts"), "{said}");
    b.ok(&["run", "t"]);
    let seen = crate::cloud_remotes::tree(&b.root);
    assert_eq!(
        seen.get("report.txt").map(Vec::as_slice),
        Some(&b"third draft by A, xx"[..])
    );
    assert!(
        seen.iter()
            .any(|(n, data)| n.ends_with("_Conflict.txt") && data == b"third draft by B, yy"),
        "{said}: {:?}",
        seen.keys()
    );
}

/// A file replaced on the cloud path while another computer's run downloads it, on a path
/// that keeps no versions: that run ends well and says it skipped the file (it changed while
/// it was read), nothing half-read lands, and the next run brings the new content.
#[test]
fn a_file_replaced_while_a_run_downloads_it_is_skipped_and_taken_next_time() {
    let moto = start_moto();
    // Downloads slowed to 2 MB/s, so the replacement lands part way through one.
    let (a, b) = two_computers(
        &moto,
        "replaced",
        &["--part-size", "5", "--down-limit", "2000"],
    );
    let old = crate::harness::noise(31, 16 << 20);
    a.write("big.bin", &old);
    a.ok(&["run", "t"]);
    let downloading = b
        .cmd()
        .args(["run", "t"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("a run starts");
    std::thread::sleep(Duration::from_millis(1500));
    let new = crate::harness::noise(32, 6 << 20);
    a.write("big.bin", &new);
    a.ok(&["run", "t"]);
    let out = downloading.wait_with_output().expect("the run ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the downloading run failed: {said}");
    assert!(
        said.contains("skipped big.bin: changed on the remote while it was read"),
        "{said}"
    );
    assert_eq!(read(&b, "big.bin"), None, "a half-read file landed");
    b.ok(&["run", "t"]);
    assert!(
        read(&b, "big.bin") == Some(new),
        "the next run did not bring the new content"
    );
}
