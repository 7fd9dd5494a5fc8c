//! Passwords (Argon2id) and bearer tokens (HMAC-signed claims; the format is
//! `cairn_protocol::token`); admitting and
//! slowing down login attempts is [`crate::login`]'s.

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::SecureRandom;

use crate::{Error, Result};

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random source does not fail on Linux");
    buf
}

/// `n` random bytes in lowercase hex (ids, tokens and secrets that travel as text).
pub fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
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
    verify_password_in(password, hash, &mut HashMemory::default())
}

/// Working memory for Argon2 (~19 MiB with the default parameters), kept between
/// verifications. Allocating it for each one let freed blocks pile up in the allocator's
/// per-thread arenas: 14 verifications spread over the blocking pool's threads left the
/// server at 300 MiB.
#[derive(Default)]
pub struct HashMemory(Vec<argon2::Block>);

/// [`verify_password`] in `memory`, which grows to the hash's memory cost if smaller.
pub fn verify_password_in(password: &str, hash: &str, memory: &mut HashMemory) -> bool {
    let Ok(h) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (Params::try_from(&h), Algorithm::try_from(h.algorithm))
    else {
        return false;
    };
    let Ok(version) = h.version.map(Version::try_from).transpose() else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.0.len() < blocks {
        memory.0.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version.unwrap_or_default(), params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory.0[..])
        .is_ok()
        // Output's equality is constant-time.
        && Output::new(&out).is_ok_and(|o| o == expected)
}

pub use cairn_protocol::token::{Claims, TokenKey};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify() {
        let h = hash_password("s3cret").expect("hash");
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("S3cret", &h));
        let mut memory = HashMemory::default();
        assert!(verify_password_in("s3cret", &h, &mut memory));
        assert!(
            !verify_password_in("S3cret", &h, &mut memory),
            "reused memory"
        );
        assert!(verify_password_in("s3cret", &h, &mut memory));
        assert!(!verify_password("s3cret", "not a hash"));
    }

    #[test]
    fn a_dummy_hash_costs_the_memory_of_a_real_one() {
        // What the login gate does for unknown users: verify against a hash of a random password.
        let real = hash_password("s3cret").expect("hash");
        let dummy = hash_password(&random_password()).expect("hash");
        let (mut a, mut b) = (HashMemory::default(), HashMemory::default());
        assert!(!verify_password_in("guess", &real, &mut a));
        assert!(!verify_password_in("guess", &dummy, &mut b));
        assert!(!a.0.is_empty(), "Argon2 ran");
        assert_eq!(a.0.len(), b.0.len());
    }
}
