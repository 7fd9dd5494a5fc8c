//! Every JSON answer the client parses from a server (`cairn_protocol` response types), and the
//! checks the client makes on them before the engine sees them.
//!
//! First byte picks the type. Whatever parses round-trips like a request does; the checks never
//! panic and accept an answer that is consistent by construction.

#![no_main]

use cairn_model::{RelPath, Seq};
use cairn_protocol::{
    ChunkListResponse, CommitResponse, ErrorBody, FolderInfo, JournalResponse, LoginResponse,
    MissingResponse, TreeResponse, UploadResponse, VersionsResponse,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which % 10 {
        0 => {
            let _ = round_trip::<LoginResponse>(json);
        }
        1 => {
            let _ = round_trip::<Vec<FolderInfo>>(json);
        }
        2 => {
            if let Some(r) = round_trip::<MissingResponse>(json) {
                assert!(r.check(&r.missing).is_ok());
                let _ = r.check(&r.missing[..r.missing.len() / 2]);
            }
        }
        3 => {
            let _ = round_trip::<UploadResponse>(json);
        }
        4 => {
            if let Some(r) = round_trip::<CommitResponse>(json) {
                assert!(r.check(r.results.len()).is_ok());
            }
        }
        5 => {
            if let Some(r) = round_trip::<JournalResponse>(json) {
                let oldest = r.changes.iter().map(|v| v.seq).min();
                if let Some(after) = oldest.and_then(|s| s.0.checked_sub(1)) {
                    assert!(r.check(Seq(after)).is_ok());
                }
                let _ = r.check(Seq(0));
            }
        }
        6 => {
            if let Some(r) = round_trip::<TreeResponse>(json) {
                assert!(r.check(&RelPath::root()).is_ok());
                if let Some(first) = r.entries.first() {
                    let _ = r.check(&first.path);
                }
            }
        }
        7 => {
            let _ = round_trip::<VersionsResponse>(json);
        }
        8 => {
            if let Some(r) = round_trip::<ChunkListResponse>(json) {
                let _ = r.check();
            }
        }
        _ => {
            let _ = round_trip::<ErrorBody>(json);
        }
    }
});

fn round_trip<T: Serialize + DeserializeOwned>(json: &[u8]) -> Option<T> {
    let value = serde_json::from_slice::<T>(json).ok()?;
    let once = serde_json::to_vec(&value).expect("a parsed value serialises");
    let again: T = serde_json::from_slice(&once).expect("what was serialised parses");
    assert_eq!(
        serde_json::to_vec(&again).expect("a parsed value serialises"),
        once
    );
    Some(again)
}
