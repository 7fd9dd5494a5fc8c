//! A folder (as it is, or as it was at a time) downloaded as one zip file, written while it
//! streams: files are stored as they are (no compression: most of what people keep is
//! compressed already, and the server's CPU is for everyone), each followed by a data
//! descriptor with its CRC-32, and ZIP64 records where a size, an offset or the count needs
//! them. Memory stays bounded by one chunk whatever the folder's size.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_model::EntryKind;
use cairn_protocol::VersionInfo;
use tokio::sync::mpsc;

use super::super::shares::disposition;
use super::super::{blocking, read_chunk, AppState};
use super::{view_of, Browse, View};
use crate::meta::Folder;

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
const END: u32 = 0x0605_4b50;
const END64: u32 = 0x0606_4b50;
const LOCATOR64: u32 = 0x0706_4b50;
/// Flags: sizes and CRC follow the data (bit 3); names are UTF-8 (bit 11).
const FLAGS_FILE: u16 = 0x0808;
const FLAGS_DIR: u16 = 0x0800;
const MAX32: u64 = 0xFFFF_FFFF;

/// One entry as the central directory needs it.
struct Written {
    name: String,
    dir: bool,
    crc: u32,
    size: u64,
    offset: u64,
    time: (u16, u16),
    mode: u32,
}

/// The zip's bytes as they are produced, with the running offset.
struct Out {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    offset: u64,
}

impl Out {
    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), ()> {
        self.offset += bytes.len() as u64;
        self.tx.send(Ok(Bytes::from(bytes))).await.map_err(|_| ())
    }
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// MS-DOS time and date of a time in ns since the epoch (UTC; 1980 at the earliest).
fn dos_time(ns: i64) -> (u16, u16) {
    let secs = ns.div_euclid(1_000_000_000).max(315_532_800);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).min(2107);
    let time = ((rest / 3600) << 11) | ((rest % 3600 / 60) << 5) | ((rest % 60) / 2);
    let date = ((year - 1980) << 9) | (month << 5) | day;
    (time as u16, date as u16)
}

fn local_header(w: &Written) -> Vec<u8> {
    let big = w.size >= MAX32;
    let mut b = Vec::with_capacity(30 + w.name.len() + 20);
    put32(&mut b, LOCAL);
    put16(&mut b, if big { 45 } else { 20 });
    put16(&mut b, if w.dir { FLAGS_DIR } else { FLAGS_FILE });
    put16(&mut b, 0);
    put16(&mut b, w.time.0);
    put16(&mut b, w.time.1);
    put32(&mut b, 0);
    let sizes = if big { MAX32 as u32 } else { 0 };
    put32(&mut b, sizes);
    put32(&mut b, sizes);
    put16(&mut b, w.name.len() as u16);
    put16(&mut b, if big { 20 } else { 0 });
    b.extend_from_slice(w.name.as_bytes());
    if big {
        put16(&mut b, 1);
        put16(&mut b, 16);
        put64(&mut b, 0);
        put64(&mut b, 0);
    }
    b
}

fn descriptor(w: &Written) -> Vec<u8> {
    let mut b = Vec::with_capacity(24);
    put32(&mut b, DESCRIPTOR);
    put32(&mut b, w.crc);
    if w.size >= MAX32 {
        put64(&mut b, w.size);
        put64(&mut b, w.size);
    } else {
        put32(&mut b, w.size as u32);
        put32(&mut b, w.size as u32);
    }
    b
}

fn central(w: &Written) -> Vec<u8> {
    let mut extra = Vec::new();
    if w.size >= MAX32 {
        put64(&mut extra, w.size);
        put64(&mut extra, w.size);
    }
    if w.offset >= MAX32 {
        put64(&mut extra, w.offset);
    }
    let mut b = Vec::with_capacity(46 + w.name.len() + extra.len() + 4);
    put32(&mut b, CENTRAL);
    put16(&mut b, 3 << 8 | 45);
    put16(&mut b, if extra.is_empty() { 20 } else { 45 });
    put16(&mut b, if w.dir { FLAGS_DIR } else { FLAGS_FILE });
    put16(&mut b, 0);
    put16(&mut b, w.time.0);
    put16(&mut b, w.time.1);
    put32(&mut b, w.crc);
    let size = w.size.min(MAX32) as u32;
    put32(&mut b, size);
    put32(&mut b, size);
    put16(&mut b, w.name.len() as u16);
    put16(
        &mut b,
        if extra.is_empty() {
            0
        } else {
            extra.len() as u16 + 4
        },
    );
    put16(&mut b, 0);
    put16(&mut b, 0);
    put16(&mut b, 0);
    let kind = if w.dir { 0o040_000 } else { 0o100_000 };
    put32(
        &mut b,
        (kind | (w.mode & 0o7777)) << 16 | u32::from(w.dir) << 4,
    );
    put32(&mut b, w.offset.min(MAX32) as u32);
    b.extend_from_slice(w.name.as_bytes());
    if !extra.is_empty() {
        put16(&mut b, 1);
        put16(&mut b, extra.len() as u16);
        b.extend_from_slice(&extra);
    }
    b
}

/// The end records: ZIP64 ones first when the count or an offset needs them.
fn end(count: u64, cd_start: u64, cd_len: u64) -> Vec<u8> {
    let mut b = Vec::new();
    let big = count >= 0xFFFF || cd_start >= MAX32 || cd_len >= MAX32;
    if big {
        let at = cd_start + cd_len;
        put32(&mut b, END64);
        put64(&mut b, 44);
        put16(&mut b, 3 << 8 | 45);
        put16(&mut b, 45);
        put32(&mut b, 0);
        put32(&mut b, 0);
        put64(&mut b, count);
        put64(&mut b, count);
        put64(&mut b, cd_len);
        put64(&mut b, cd_start);
        put32(&mut b, LOCATOR64);
        put32(&mut b, 0);
        put64(&mut b, at);
        put32(&mut b, 1);
    }
    put32(&mut b, END);
    put16(&mut b, 0);
    put16(&mut b, 0);
    let n = count.min(0xFFFF) as u16;
    put16(&mut b, n);
    put16(&mut b, n);
    put32(&mut b, cd_len.min(MAX32) as u32);
    put32(&mut b, cd_start.min(MAX32) as u32);
    put16(&mut b, 0);
    b
}

/// Writes the zip of `entries` (paths below `dir`) into `out`; a chunk that cannot be read
/// ends the stream with an error, so the browser reports a failed download rather than a
/// short file.
async fn write(
    state: Arc<AppState>,
    f: Folder,
    strip: usize,
    entries: Vec<VersionInfo>,
    mut out: Out,
) {
    let mut done = Vec::new();
    for v in entries {
        let Some(name) = v.path.as_str().get(strip..) else {
            continue;
        };
        let dir = v.entry.kind == EntryKind::Dir;
        let mut w = Written {
            name: if dir {
                format!("{name}/")
            } else {
                name.to_string()
            },
            dir,
            crc: 0,
            size: if dir { 0 } else { v.entry.size },
            offset: out.offset,
            time: dos_time(v.entry.mtime_ns),
            mode: v.entry.mode,
        };
        if out.send(local_header(&w)).await.is_err() {
            return;
        }
        if !dir {
            let (ff, p, seq) = (f.clone(), v.path.clone(), v.seq);
            let stored = match blocking(&state, move |m| m.version(&ff, &p, Some(seq))).await {
                Ok(Some(s)) => s,
                _ => return fail(&out, &v.path.to_string()).await,
            };
            let mut crc = crc32fast::Hasher::new();
            for c in &stored.chunks {
                let Ok(data) = read_chunk(&state, c.id, None).await else {
                    return fail(&out, &v.path.to_string()).await;
                };
                crc.update(&data);
                out.offset += data.len() as u64;
                if out.tx.send(Ok(data)).await.is_err() {
                    return;
                }
            }
            w.crc = crc.finalize();
            if out.send(descriptor(&w)).await.is_err() {
                return;
            }
        }
        done.push(w);
    }
    let cd_start = out.offset;
    let mut cd = Vec::new();
    for w in &done {
        cd.extend_from_slice(&central(w));
        if cd.len() >= 1 << 20 && out.send(std::mem::take(&mut cd)).await.is_err() {
            return;
        }
    }
    let _ = out.send(cd).await;
    let cd_len = out.offset - cd_start;
    let _ = out.send(end(done.len() as u64, cd_start, cd_len)).await;
}

async fn fail(out: &Out, path: &str) {
    tracing::error!(path, "zip download: content unreadable");
    let _ = out
        .tx
        .send(Err(std::io::Error::other(format!(
            "{path}: content unreadable"
        ))))
        .await;
}

pub(in crate::api) async fn download(
    State(state): State<Arc<AppState>>,
    Path(folder): Path<String>,
    axum::extract::Query(b): Query<Browse>,
    headers: HeaderMap,
) -> Response {
    let View {
        folder: f,
        dir,
        at_ns,
        ..
    } = match view_of(&state, &headers, &folder, &b).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (ff, d) = (f.clone(), dir.clone());
    let entries = match blocking(&state, move |m| m.tree(&ff, &d, at_ns, false)).await {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let entries: Vec<VersionInfo> = entries
        .into_iter()
        .filter(|v| v.path != dir && matches!(v.entry.kind, EntryKind::File | EntryKind::Dir))
        .collect();
    let strip = if dir.is_root() {
        0
    } else {
        dir.as_str().len() + 1
    };
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(write(
        state.clone(),
        f,
        strip,
        entries,
        Out { tx, offset: 0 },
    ));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let name = if dir.is_root() {
        folder.clone()
    } else {
        dir.name().to_string()
    };
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition(&format!("{name}.zip")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    *resp.status_mut() = StatusCode::OK;
    resp
}

#[cfg(test)]
mod tests {
    use super::{central, descriptor, dos_time, end, local_header, Written};

    /// More entries than a plain zip can count: the ZIP64 end records are written, and
    /// Python's `zipfile` reads every entry back (names, sizes, CRCs).
    #[test]
    fn a_zip_with_more_entries_than_a_plain_zip_counts_opens() {
        let n = 70_000u32;
        let mut out = Vec::new();
        let mut done = Vec::new();
        for i in 0..n {
            let data = i.to_le_bytes();
            let mut w = Written {
                name: format!("d{}/f{i}.bin", i % 7),
                dir: false,
                crc: 0,
                size: data.len() as u64,
                offset: out.len() as u64,
                time: dos_time(1_796_067_910_000_000_000),
                mode: 0o644,
            };
            out.extend_from_slice(&local_header(&w));
            out.extend_from_slice(&data);
            w.crc = crc32fast::hash(&data);
            out.extend_from_slice(&descriptor(&w));
            done.push(w);
        }
        let cd_start = out.len() as u64;
        for w in &done {
            out.extend_from_slice(&central(w));
        }
        let cd_len = out.len() as u64 - cd_start;
        out.extend_from_slice(&end(u64::from(n), cd_start, cd_len));
        let dir = std::env::temp_dir().join(format!("cairn-zip64-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("many.zip");
        std::fs::write(&path, &out).expect("write");
        let script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nnames = z.namelist()\nassert len(names) == 70000, len(names)\nassert z.read('d6/f69999.bin') == (69999).to_bytes(4, 'little')\n";
        let run = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .output()
            .expect("python3");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }

    #[test]
    fn dos_times_are_civil_dates() {
        // 2026-11-30 19:45:10 UTC
        let (time, date) = dos_time(1_796_067_910 * 1_000_000_000);
        assert_eq!(date >> 9, 2026 - 1980);
        assert_eq!((date >> 5) & 0xF, 11);
        assert_eq!(date & 0x1F, 30);
        assert_eq!(time >> 11, 19);
        assert_eq!((time >> 5) & 0x3F, 45);
        assert_eq!((time & 0x1F) * 2, 10);
        // Before 1980 is clamped to 1980-01-01.
        assert_eq!(dos_time(0).1, 1 << 5 | 1);
    }
}
