//! Who a WebDAV request comes from: a bearer token (as the API takes), or HTTP Basic, whose
//! name and password go through [`AppState::authenticate`] like every other login (gate,
//! throttle, activity log).
//!
//! Basic sends the password with every request, and verifying one costs the server a large
//! Argon2 hash (tens of MiB, a good part of a second). A verified pair is therefore
//! remembered for [`FRESH`] in a bounded map ([`BasicCache`]) under a keyed BLAKE3 hash of
//! the name and password, with a key made at start-up: the map never holds a password, and
//! its keys reveal nothing without the process's memory. A hit is believed only while the
//! user's token generation is the one seen at verification, so a new password or a disabled
//! account ends it at once; other instances behind a load balancer keep their own maps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use cairn_model::DeviceId;

use super::super::authn::Denied;
use super::super::{
    blocking, caller_of, client_addr, now_ns, too_many_logins, ApiError, AppState, Caller,
};
use crate::meta::User;

/// How long a verified name and password are believed without verifying them again.
const FRESH: Duration = Duration::from_secs(120);
/// Verified pairs remembered at most (a few bytes each).
const MAX_REMEMBERED: usize = 4096;
/// The device name commits through WebDAV carry.
pub(super) const DEVICE: &str = "webdav";

/// Name and password pairs verified lately, by keyed hash (see the module's head).
pub(crate) struct BasicCache {
    key: [u8; 32],
    seen: Mutex<HashMap<[u8; 32], Seen>>,
}

struct Seen {
    user_id: i64,
    token_gen: i64,
    at: Instant,
}

impl BasicCache {
    pub(crate) fn new() -> Self {
        let mut key = [0u8; 32];
        key.copy_from_slice(&crate::auth::random_bytes(32));
        BasicCache {
            key,
            seen: Mutex::default(),
        }
    }

    /// The map's key for a pair: the name's length first, so no two pairs run together.
    fn key_of(&self, name: &str, password: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(password.as_bytes());
        *h.finalize().as_bytes()
    }

    /// The user id and token generation a pair verified as, if that was less than
    /// [`FRESH`] ago.
    fn lookup(&self, key: &[u8; 32]) -> Option<(i64, i64)> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(key)
            .filter(|s| s.at.elapsed() < FRESH)
            .map(|s| (s.user_id, s.token_gen))
    }

    fn remember(&self, key: [u8; 32], user: &User) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, s| s.at.elapsed() < FRESH);
        }
        if seen.len() >= MAX_REMEMBERED {
            // Still full of fresh pairs: the oldest goes (a linear scan of a small map).
            if let Some(oldest) = seen.iter().min_by_key(|(_, s)| s.at).map(|(k, _)| *k) {
                seen.remove(&oldest);
            }
        }
        seen.insert(
            key,
            Seen {
                user_id: user.id,
                token_gen: user.token_gen,
                at: Instant::now(),
            },
        );
    }

    fn forget(&self, key: &[u8; 32]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.remove(key);
    }
}

/// The answer that asks for credentials.
pub(super) fn challenge(message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"cairn\", charset=\"UTF-8\""),
    );
    resp
}

/// The caller of a WebDAV request, or the answer to give instead (401 with a challenge, 429
/// when throttled, 403 for a disabled account).
pub(super) async fn caller(state: &Arc<AppState>, parts: &Parts) -> Result<Caller, Response> {
    let from = client_addr(parts, state);
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(token) = auth.strip_prefix("Bearer ") {
        let mut caller = caller_of(state, token)
            .await
            .map_err(|e| challenge(&e.message))?;
        caller.from = from.map(|a| a.ip());
        return Ok(caller);
    }
    let Some((name, password)) = basic_pair(auth) else {
        return Err(challenge("log in: HTTP Basic (over TLS) or a bearer token"));
    };
    let Some(peer) = from else {
        return Err(ApiError::internal().into_response());
    };
    let key = state.dav_logins.key_of(&name, &password);
    if let Some(user) = remembered(state, &key).await {
        return Ok(caller_as(user, Some(peer.ip())));
    }
    match state.authenticate(&name, password, peer, "webdav").await {
        Ok(user) => {
            state.dav_logins.remember(key, &user);
            Ok(caller_as(user, Some(peer.ip())))
        }
        Err(Denied::Throttled(refusal)) => Err(too_many_logins(refusal)),
        Err(Denied::Wrong) => Err(challenge("wrong user name or password")),
        Err(Denied::Disabled(name)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("user {name} is disabled"),
        )
        .into_response()),
        Err(Denied::Unavailable) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::api::DIRECTORY_UNAVAILABLE,
        )
        .into_response()),
        Err(Denied::Failed(e)) => Err(e.into_response()),
    }
}

/// The user a remembered pair stands for, if they are still as they were when it was
/// verified (same token generation, not disabled); otherwise the pair is forgotten.
async fn remembered(state: &Arc<AppState>, key: &[u8; 32]) -> Option<User> {
    let (id, token_gen) = state.dav_logins.lookup(key)?;
    let found = blocking(state, move |m| m.user_by_id(id))
        .await
        .ok()
        .flatten();
    match found {
        Some(u) if !u.disabled && u.token_gen == token_gen => Some(u),
        _ => {
            state.dav_logins.forget(key);
            None
        }
    }
}

fn caller_as(user: User, from: Option<std::net::IpAddr>) -> Caller {
    Caller {
        user,
        device: DeviceId(DEVICE.into()),
        expires_ns: now_ns().saturating_add(FRESH.as_nanos() as i64),
        from,
    }
}

/// The name and password of a `Basic` authorization, if it is one that decodes.
fn basic_pair(auth: &str) -> Option<(String, String)> {
    let (scheme, rest) = auth.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode_and_split_at_the_first_colon() {
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss");
        assert_eq!(
            basic_pair(&format!("Basic {enc}")),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_pair("Basic !!!"), None);
        assert_eq!(basic_pair("Digest x"), None);
    }

    #[test]
    fn the_cache_key_depends_on_the_key_name_and_password_and_holds_no_password() {
        let (a, b) = (BasicCache::new(), BasicCache::new());
        let k = a.key_of("alice", "secret");
        assert_ne!(k, b.key_of("alice", "secret"), "a per-process key");
        assert_ne!(k, a.key_of("alice", "secreT"));
        assert_ne!(a.key_of("ab", "c"), a.key_of("a", "bc"));
        assert!(!k.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = BasicCache::new();
        let user = User {
            id: 1,
            name: "u".into(),
            admin: false,
            disabled: false,
            token_gen: 0,
            quota: None,
            used_bytes: 0,
            directory: String::new(),
        };
        for i in 0..MAX_REMEMBERED + 10 {
            cache.remember(cache.key_of("u", &i.to_string()), &user);
        }
        let held = cache.seen.lock().map(|s| s.len()).unwrap_or(0);
        assert_eq!(held, MAX_REMEMBERED);
        assert!(cache.lookup(&cache.key_of("u", "4105")).is_some());
    }
}
