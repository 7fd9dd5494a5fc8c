//! gc's repacking: after churn, packs with dead space are rewritten so the store holds at most
//! a tenth more than what retained versions reference, and nothing retained is lost or damaged.

use std::path::{Path, PathBuf};

use crate::harness::{noise, Client, Server};

const FILES: u64 = 300;
const SIZE: usize = 3000;

/// A client backing up `FILES` small files (packed, as every chunk under 64 KiB is) into a
/// folder that keeps one version.
fn churned(server: &Server) -> Client {
    server.alice_folder("one", "1");
    let c = Client::new();
    c.connect(server, "alice", "alice-pw");
    c.add_backup_task_into("one", &["--computer", "pc"]);
    for i in 0..FILES {
        c.write(&format!("f{i}.bin"), &noise(i, SIZE));
    }
    c.ok(&["run", "t", "--once"]);
    // Four files in five change: their first contents die with their only other version.
    for i in (0..FILES).filter(|i| i % 5 != 0) {
        c.write(&format!("f{i}.bin"), &noise(10_000 + i, SIZE));
    }
    c.ok(&["run", "t", "--once"]);
    c
}

fn bytes_under(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Runs gc through `server` until a run repacks nothing more; the output of every run.
fn gc_until_settled(server: &Server) -> String {
    let mut all = String::new();
    for _ in 0..4 {
        let out = server.admin(&["gc"], None);
        all.push_str(&out);
        if !out.contains("repacked") && all.contains("repacked") {
            break;
        }
    }
    all
}

/// Churns through `server`, collects through `gc_server` (the same store), and checks the
/// chunk folder `store` ends within a tenth of the retained data, all of it restorable.
fn repacks_and_loses_nothing(server: &Server, gc_server: &Server, store: &Path) {
    let c = churned(server);
    let retained = FILES * SIZE as u64;
    let before = bytes_under(store);
    assert!(
        before > 3 * retained / 2,
        "the churn left dead parts: {before}"
    );
    let out = gc_until_settled(gc_server);
    assert!(out.contains("repacked"), "{out}");
    let after = bytes_under(store);
    assert!(
        after * 10 <= retained * 11,
        "store {after} bytes for {retained} retained (before gc {before})\n{out}"
    );
    assert!(gc_server
        .admin(&["check", "--read-data"], None)
        .contains("no problems"));
    let restored = c.tmp().join("out");
    c.ok(&["restore", "t", "--to", restored.to_str().expect("utf-8")]);
    let got = files_under(&restored);
    for i in 0..FILES {
        let rel = format!("f{i}.bin");
        let file = got
            .iter()
            .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(rel.as_str()))
            .unwrap_or_else(|| panic!("{rel} restored"));
        assert_eq!(
            std::fs::read(file).expect("read"),
            std::fs::read(c.path(&rel)).expect("local"),
            "{rel}"
        );
    }
}

#[test]
fn gc_repacks_packs_whose_parts_mostly_died_and_loses_nothing() {
    let server = Server::start();
    repacks_and_loses_nothing(&server, &server, &server.data.join("chunks"));
}

/// The same on PostgreSQL, gc run by the other instance of the pair.
#[test]
fn repacking_on_postgresql_through_another_instance_loses_nothing() {
    let top = tempfile::tempdir().expect("temp dir");
    let Some((one, two)) = crate::postgres::two_instances("it_repack", top.path()) else {
        return;
    };
    repacks_and_loses_nothing(&one, &two, &top.path().join("chunks"));
}

#[test]
fn a_damaged_part_is_not_copied_and_stays_reported_where_it_was() {
    let server = Server::start();
    let c = churned(&server);
    // Damage the content of f0.bin (kept) inside its pack.
    let wanted = std::fs::read(c.path("f0.bin")).expect("local");
    let (pack, at) = files_under(&server.data.join("chunks/packs"))
        .into_iter()
        .find_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            let at = bytes.windows(wanted.len()).position(|w| w == wanted)?;
            Some((p, at))
        })
        .expect("f0.bin's part in a pack");
    let mut bytes = std::fs::read(&pack).expect("read pack");
    bytes[at + 10] ^= 0xff;
    std::fs::write(&pack, bytes).expect("damage pack");
    let out = gc_until_settled(&server);
    assert!(
        out.contains("repacked"),
        "the other packs still repack: {out}"
    );
    assert!(pack.exists(), "the pack holding a damaged part stays");
    let check = server.admin_raw(&["check", "--read-data"], None);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{text}");
    assert_eq!(text.matches("corrupt").count(), 1, "{text}");
    // Every other kept file still restores whole.
    let restored = c.tmp().join("out");
    let _ = c.cairn(&["restore", "t", "--to", restored.to_str().expect("utf-8")]);
    let got = files_under(&restored);
    for i in 1..FILES {
        let rel = format!("f{i}.bin");
        let file = got
            .iter()
            .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(rel.as_str()))
            .unwrap_or_else(|| panic!("{rel} restored"));
        assert_eq!(
            std::fs::read(file).expect("read"),
            std::fs::read(c.path(&rel)).expect("local"),
            "{rel}"
        );
    }
}
