//! Bearer tokens: `v1.<user>.<generation>.<expiry ns>.<device hex>.<HMAC-SHA256 hex>`.
//!
//! The server issues and checks them with [`TokenKey`]; the client treats them as opaque. They
//! live here rather than in the server because a token is untrusted input from the network:
//! this crate is light enough to fuzz its decoders under sanitizers, the server is not.
//! Tokens are signed (under a key kept in the server's metadata store), not stored: logging in
//! writes nothing, so it works on a full disk and on any server process of a scaled-out
//! deployment.

/// What a bearer token says: who, which session generation, until when, from which device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub user_id: i64,
    pub token_gen: i64,
    pub expires_ns: i64,
    pub device: String,
}

/// Issues and checks bearer tokens. A token ends when it expires or when the user's session
/// generation moves on (new password, disabled); both are the caller's to check.
pub struct TokenKey(ring::hmac::Key);

impl TokenKey {
    pub fn new(secret: &[u8]) -> Self {
        TokenKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }

    pub fn issue(&self, c: &Claims) -> String {
        let device = hex(c.device.as_bytes());
        let body = format!("v1.{}.{}.{}.{device}", c.user_id, c.token_gen, c.expires_ns);
        let tag = ring::hmac::sign(&self.0, body.as_bytes());
        format!("{body}.{}", hex(tag.as_ref()))
    }

    /// The claims of a token this key signed; `None` for anything else (forged, altered,
    /// malformed, or spelt otherwise than [`TokenKey::issue`] spells it). Expiry is the
    /// caller's to check.
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
        if parts.next().is_some() {
            return None;
        }
        let claims = Claims {
            user_id,
            token_gen,
            expires_ns,
            device,
        };
        // One token, one spelling: "+7", "007" or upper-case hex would otherwise verify as
        // the same claims, and a token told apart by its text (a log, a revocation) could be
        // re-spelt past it.
        (self.issue(&claims) == token).then_some(claims)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

    /// Found by fuzzing: a re-spelt body (upper-case hex, a sign, leading zeros) signed by the
    /// key verified as the same claims.
    #[test]
    fn a_token_spelt_differently_does_not_verify() {
        let key = TokenKey::new(b"secret");
        let sign = |body: &str| {
            let tag = ring::hmac::sign(&key.0, body.as_bytes());
            format!("{body}.{}", hex(tag.as_ref()))
        };
        assert!(key.verify(&sign("v1.7.2.99.6c6170746f70")).is_some());
        for body in [
            "v1.7.2.99.6C6170746F70",
            "v1.+7.2.99.6c6170746f70",
            "v1.07.2.99.6c6170746f70",
            "v1.7.2.099.6c6170746f70",
        ] {
            assert_eq!(key.verify(&sign(body)), None, "{body}");
        }
        let token = key.issue(&Claims {
            user_id: 1,
            token_gen: 1,
            expires_ns: 1,
            device: String::new(),
        });
        let (body, tag) = token.rsplit_once('.').expect("a tag");
        let upper = format!("{body}.{}", tag.to_uppercase());
        assert_eq!(key.verify(&upper), None);
    }
}
