//! Every JSON body the server parses from a client (`cairn_protocol` request types).
//!
//! First byte picks the type. Whatever parses serialises, parses again and serialises the same
//! (so what the server stores is what it read).

#![no_main]

use cairn_protocol::{CommitRequest, LoginRequest, MissingRequest};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => round_trip::<LoginRequest>(json),
        1 => round_trip::<MissingRequest>(json),
        _ => round_trip::<CommitRequest>(json),
    }
});

fn round_trip<T: Serialize + DeserializeOwned>(json: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(json) else {
        return;
    };
    let once = serde_json::to_vec(&value).expect("a parsed value serialises");
    let again: T = serde_json::from_slice(&once).expect("what was serialised parses");
    assert_eq!(
        serde_json::to_vec(&again).expect("a parsed value serialises"),
        once
    );
}
