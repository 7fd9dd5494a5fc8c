//! Passwords (Argon2id) and bearer tokens (HMAC-signed claims, see [`TokenKey`]); admitting and
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

/// What a bearer token says: who, which session generation, until when, from which device.
#[derive(Debug, PartialEq, Eq)]
pub struct Claims {
    pub user_id: i64,
    pub token_gen: i64,
    pub expires_ns: i64,
    pub device: String,
}

/// Issues and checks bearer tokens. Tokens are signed (HMAC-SHA256 under a key kept in the
/// metadata store), not stored: logging in writes nothing, so it works on a full disk and on
/// any server process of a scaled-out deployment. A token ends when it expires or when the
/// user's session generation moves on (new password, disabled).
pub struct TokenKey(ring::hmac::Key);

impl TokenKey {
    pub fn new(secret: &[u8]) -> Self {
        TokenKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }

    pub fn issue(&self, c: &Claims) -> String {
        let device: String = c.device.bytes().map(|b| format!("{b:02x}")).collect();
        let body = format!("v1.{}.{}.{}.{device}", c.user_id, c.token_gen, c.expires_ns);
        let tag = ring::hmac::sign(&self.0, body.as_bytes());
        let tag: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{body}.{tag}")
    }

    /// The claims of a token this key signed; `None` for anything else (forged, altered,
    /// malformed). Expiry is the caller's to check.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let (body, tag) = token.rsplit_once('.')?;
        let tag = unhex(tag)?;
        ring::hmac::verify(&self.0, body.as_bytes(), &tag).ok()?;
        let mut parts = body.split('.');
        if parts.next()? != "v1" {
            return None;
        }
        let user_id = parts.next()?.parse().ok()?;
        let token_gen = parts.next()?.parse().ok()?;
        let expires_ns = parts.next()?.parse().ok()?;
        let device = String::from_utf8(unhex(parts.next()?)?).ok()?;
        parts.next().is_none().then_some(Claims {
            user_id,
            token_gen,
            expires_ns,
            device,
        })
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

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

    #[test]
    fn tokens_verify_only_unaltered() {
        let key = TokenKey::new(b"secret");
        let claims = Claims {
            user_id: 7,
            token_gen: 2,
            expires_ns: 99,
            device: "laptop".into(),
        };
        let token = key.issue(&claims);
        assert_eq!(key.verify(&token), Some(claims));
        assert_eq!(key.verify(&token.replace("v1.7.", "v1.8.")), None);
        assert_eq!(TokenKey::new(b"other").verify(&token), None);
        assert_eq!(key.verify("garbage"), None);
    }
}
