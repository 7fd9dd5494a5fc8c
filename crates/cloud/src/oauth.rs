//! OneDrive's refresh tokens, kept fresh. Microsoft answers each refresh with a new refresh
//! token and leaves the old one valid only until its own expiry, 90 days after it was issued
//! however often it was used. OpenDAL keeps the new one for the run alone, so the token saved
//! at `cloud connect` stopped working 90 days later and every task on the connection failed
//! until `cloud edit`. A task's replica now exchanges the saved token itself at its first
//! listing (once a day in a process that lives long: an agent, a server) and hands the new one
//! to the caller, which saves it in place of the old: a connection used at least every 90 days
//! keeps working.
//! A failed exchange changes nothing: the run goes on with the saved token, as before.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use opendal::raw::oio::ReadStream;
use opendal::{Buffer, Operator};
use serde::Deserialize;

use crate::connection::{CloudConnection, Secrets};

/// Where OneDrive (personal and business alike) exchanges refresh tokens; the address
/// OpenDAL's service uses.
pub const ONEDRIVE_TOKEN_URL: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/token";

/// What OpenDAL's service asks for, so the new token has the same reach as the old.
const SCOPE: &str = "offline_access Files.ReadWrite";

/// How often a process that lives long (an agent, a server) exchanges a token again.
const EVERY: Duration = Duration::from_secs(24 * 3600);

/// How long the token endpoint may take to answer (and between pieces of its answer).
const WAIT: Duration = Duration::from_secs(30);

/// Largest token answer read; Microsoft's are a few KiB.
const MAX_ANSWER: usize = 64 << 10;

/// Saves a new refresh token where the connection's secrets live.
pub type SaveToken = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// A connection whose refresh token is exchanged and saved as it goes.
pub struct Renewal {
    client_id: String,
    client_secret: Option<String>,
    refresh_token: Mutex<String>,
    token_url: String,
    save: SaveToken,
    /// Names the connection among this process's renewals (see [`RENEWED`]).
    key: String,
}

/// When this process last renewed each connection's token, by [`Renewal`]'s key: an agent or
/// a server opens a new replica for each pass (every few minutes), and one exchange a day is
/// enough to keep a 90-day token alive.
static RENEWED: Mutex<BTreeMap<String, Instant>> = Mutex::new(BTreeMap::new());

impl std::fmt::Debug for Renewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewal")
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    refresh_token: Option<String>,
}

impl Renewal {
    /// A renewal for `conn` (named `key` in this process) when it is a OneDrive connection
    /// with a saved refresh token (one typed at each run is the user's to keep); `None`
    /// otherwise.
    pub fn of(
        key: &str,
        conn: &CloudConnection,
        secrets: &Secrets,
        save: SaveToken,
    ) -> Option<Self> {
        if conn.scheme() != "onedrive" || conn.prompt.iter().any(|k| k == "refresh_token") {
            return None;
        }
        let get = |k: &str| secrets.0.get(k).or_else(|| conn.options.get(k)).cloned();
        Some(Renewal {
            client_id: get("client_id")?,
            client_secret: get("client_secret"),
            refresh_token: Mutex::new(get("refresh_token")?),
            token_url: token_url(),
            save,
            key: key.to_string(),
        })
    }

    /// Exchanges the token when none was exchanged yet, or a day ago, through `op`'s transport
    /// (its limits, its checks of where it connects, and in tests a stand-in), and saves the
    /// new one. Failures are logged and change nothing.
    pub async fn renew_if_due(&self, op: &Operator) {
        {
            let Ok(mut renewed) = RENEWED.lock() else {
                return;
            };
            if renewed.get(&self.key).is_some_and(|t| t.elapsed() < EVERY) {
                return;
            }
            renewed.insert(self.key.clone(), Instant::now());
        }
        match self.exchange(op).await {
            Ok(Some(token)) => match (self.save)(&token) {
                Ok(()) => {
                    if let Ok(mut held) = self.refresh_token.lock() {
                        *held = token;
                    }
                }
                Err(e) => tracing::warn!("OneDrive: the renewed refresh token could not be saved ({e}); the saved one is used until it expires"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!("OneDrive: the refresh token could not be renewed ({e}); the saved one is used"),
        }
    }

    /// One exchange: the new refresh token, if the answer has one.
    async fn exchange(&self, op: &Operator) -> Result<Option<String>, String> {
        let token = self
            .refresh_token
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .clone();
        let mut form = vec![
            ("client_id", self.client_id.as_str()),
            ("scope", SCOPE),
            ("refresh_token", token.as_str()),
            ("grant_type", "refresh_token"),
        ];
        if let Some(secret) = &self.client_secret {
            form.push(("client_secret", secret));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = Request::post(&self.token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Buffer::from(body))
            .map_err(|e| format!("the token request: {e}"))?;
        let fetched = tokio::time::timeout(WAIT, op.context().http_transport().fetch(req))
            .await
            .map_err(|_| format!("no answer within {} s", WAIT.as_secs()))?;
        let resp = fetched.map_err(|e| format!("the token endpoint: {}", e.kind()))?;
        let status = resp.status();
        let (_, mut body) = resp.into_parts();
        let mut answer = Vec::new();
        loop {
            let piece = tokio::time::timeout(WAIT, ReadStream::read(&mut body))
                .await
                .map_err(|_| format!("no answer within {} s", WAIT.as_secs()))?
                .map_err(|e| format!("the token endpoint's answer: {}", e.kind()))?;
            if piece.is_empty() {
                break;
            }
            if answer.len() + piece.len() > MAX_ANSWER {
                return Err("the token endpoint's answer is too large".into());
            }
            answer.extend_from_slice(&piece.to_bytes());
        }
        if status != StatusCode::OK {
            return Err(format!("the token endpoint answered {status}"));
        }
        let answer: Answer = serde_json::from_slice(&answer)
            .map_err(|_| "the token endpoint's answer is not a token".to_string())?;
        Ok(answer.refresh_token.filter(|t| plausible(t)))
    }
}

/// A token worth saving: not empty, not huge, printable ASCII.
fn plausible(token: &str) -> bool {
    !token.is_empty() && token.len() <= 16 << 10 && token.bytes().all(|b| b.is_ascii_graphic())
}

/// `application/x-www-form-urlencoded` of one value: everything but the unreserved bytes
/// escaped.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Tests of the whole program have no OneDrive to list after the exchange, and every failed
/// request would be retried for a minute: with the stand-in endpoint set, a listing stops
/// right after the exchange, at once and for good (builds with `test-hooks` only).
pub(crate) fn stop_after_exchange() -> cairn_engine::Result<()> {
    #[cfg(feature = "test-hooks")]
    if std::env::var_os("CAIRN_TEST_ONEDRIVE_TOKEN_URL").is_some() {
        return Err(cairn_engine::Error::Refused(
            "stopped after the token exchange (CAIRN_TEST_ONEDRIVE_TOKEN_URL)".into(),
        ));
    }
    Ok(())
}

/// The token endpoint; tests of the whole program point it at a stand-in
/// (`CAIRN_TEST_ONEDRIVE_TOKEN_URL`, builds with the `test-hooks` feature only).
fn token_url() -> String {
    #[cfg(feature = "test-hooks")]
    if let Ok(url) = std::env::var("CAIRN_TEST_ONEDRIVE_TOKEN_URL") {
        return url;
    }
    ONEDRIVE_TOKEN_URL.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_form_encoded() {
        assert_eq!(form_encode("a b/c+d=e&f"), "a%20b%2Fc%2Bd%3De%26f");
        assert_eq!(form_encode("M.R3_BAY.-x~"), "M.R3_BAY.-x~");
    }

    #[test]
    fn only_a_plausible_token_is_saved() {
        assert!(plausible("M.C545_BAY.0.U.-Cv*Tok!en"));
        assert!(!plausible(""));
        assert!(!plausible("two words"));
        assert!(!plausible("line\nbreak"));
        assert!(!plausible(&"x".repeat(20_000)));
    }
}
