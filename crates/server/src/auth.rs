//! Passwords (Argon2id), bearer tokens (signed; the format is `cairn_protocol::token`) and the
//! slow-down of failed logins.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ring::rand::SecureRandom;

use crate::{Error, Result};

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random source does not fail on Linux");
    buf
}

/// A random password of 20 characters from an unambiguous alphabet.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    random_bytes(20)
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// # Errors
/// Never in practice (argon2 fails only on invalid parameters).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes(16))
        .map_err(|e| Error::Invalid(format!("making a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Invalid(format!("hashing a password: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

pub use cairn_protocol::token::{Claims, TokenKey};

/// Failed logins per user name: each failure costs a delay that doubles (from 250 ms up to 8 s),
/// so guessing is slow while a user who mistypes once barely notices. A success clears it.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

impl LoginThrottle {
    /// How long to hold the answer to a login for `user` that just failed.
    pub fn failed(&self, user: &str) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, at)| at.elapsed() < FORGET_AFTER);
        let entry = map.entry(user.to_string()).or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now();
        Duration::from_millis(250u64 << entry.0.min(6).saturating_sub(1))
    }

    pub fn succeeded(&self, user: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_failures_slow_down() {
        let h = hash_password("s3cret").expect("hash");
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("S3cret", &h));
        let t = LoginThrottle::default();
        let first = t.failed("bob");
        let second = t.failed("bob");
        assert!(second > first);
        t.succeeded("bob");
        assert_eq!(t.failed("bob"), first);
    }
}
