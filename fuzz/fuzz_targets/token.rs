//! Bearer tokens (`cairn_protocol::token::TokenKey::verify`), checked on every request.
//!
//! The fuzzer cannot forge a signature, so besides checking the input as a token it signs the
//! input with the key to reach the parser behind the signature: what verifies must be exactly
//! the token that would be issued for its claims (one token, one spelling), and issued claims
//! verify to themselves.

#![no_main]

use cairn_protocol::token::{Claims, TokenKey};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzzing key";

fuzz_target!(|data: &[u8]| {
    let key = TokenKey::new(SECRET);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(c) = key.verify(text) {
        assert_eq!(key.issue(&c), text);
    }

    let signer = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
    let tag = ring::hmac::sign(&signer, text.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let signed = format!("{text}.{hex}");
    if let Some(c) = key.verify(&signed) {
        assert_eq!(key.issue(&c), signed, "claims {c:?}");
    }

    if let [a, b, c, rest @ ..] = data {
        let claims = Claims {
            user_id: i64::from(*a) - 128,
            token_gen: i64::from(*b),
            expires_ns: i64::from(*c) << 40,
            device: String::from_utf8_lossy(rest).into_owned(),
        };
        assert_eq!(key.verify(&key.issue(&claims)), Some(claims));
    }
});
