//! The OAuth services (Dropbox, Google Drive, OneDrive) at the request level, without an
//! account: the operator a connection builds talks to a stand-in for the provider's token
//! endpoint and API, which records every request. What is checked is what seed 003 asks of long
//! runs ("Large file uploads and security time-outs"): the refresh token of the connection is
//! exchanged for an access token, that token signs the requests while it lasts, and an expired
//! one is refreshed before the next request instead of failing the run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use opendal::{Buffer, HttpBody, HttpTransport, HttpTransporter, OperationContext, Operator};

use crate::account_tests::full_connection;
use crate::connection::service_options;
use crate::provider::{OnedriveKind, Provider};

/// Access tokens given out live this long past the two minutes OpenDAL keeps in hand.
const LIFETIME_S: u64 = 121;

/// One request the stand-in saw.
#[derive(Debug, Clone)]
struct Seen {
    url: String,
    /// The `Authorization` header of an API request; the body of a token request.
    auth_or_body: String,
    token_request: bool,
}

/// A provider's token endpoint and API: tokens `token-1`, `token-2`, ... each valid for
/// [`LIFETIME_S`] seconds; every API request answered 404 with an empty JSON error.
struct StandIn {
    token_url: &'static str,
    seen: Mutex<Vec<Seen>>,
}

/// The stand-in as the operator holds it (the test keeps another handle to read what it saw).
struct Shared(Arc<StandIn>);

impl StandIn {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

impl HttpTransport for Shared {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        let url = req.uri().to_string();
        let token_request = url.starts_with(self.0.token_url);
        let auth_or_body = if token_request {
            String::from_utf8_lossy(&req.body().to_bytes()).into_owned()
        } else {
            req.headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let issued = {
            let mut seen = self.0.seen.lock().expect("lock");
            seen.push(Seen {
                url,
                auth_or_body,
                token_request,
            });
            seen.iter().filter(|s| s.token_request).count()
        };
        let (status, body) = if token_request {
            let answer = serde_json::json!({
                "access_token": format!("token-{issued}"),
                "refresh_token": format!("rotated-{issued}"),
                "token_type": "Bearer",
                "expires_in": LIFETIME_S,
            });
            (StatusCode::OK, answer.to_string())
        } else {
            (StatusCode::NOT_FOUND, "{}".to_string())
        };
        let mut out = Response::new(crate::multipart::body_of(Bytes::from(body)));
        *out.status_mut() = status;
        out.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Ok(out)
    }
}

/// The operator a connection of `p` builds, its requests going to a new stand-in.
fn operator_at_stand_in(p: Provider, token_url: &'static str) -> (Operator, Arc<StandIn>) {
    opendal::init_default_registry();
    let (conn, secrets) = full_connection(p);
    let map = service_options(&conn, &secrets, "task").unwrap_or_else(|e| panic!("{e}"));
    let stand_in = Arc::new(StandIn {
        token_url,
        seen: Mutex::new(Vec::new()),
    });
    let op = Operator::via_iter(conn.scheme(), map).unwrap_or_else(|e| panic!("{e}"));
    let ctx =
        OperationContext::new().with_http_transport(HttpTransporter::new(Shared(stand_in.clone())));
    (op.with_context(ctx), stand_in)
}

/// Requests made while the first token lasts share it; after it expired, the next request
/// gets a new one first. Every API request is signed with the newest token.
async fn refreshes_an_expired_token(p: Provider, token_url: &'static str) {
    let (op, stand_in) = operator_at_stand_in(p, token_url);
    let _ = op.stat("a.txt").await;
    let _ = op.stat("b.txt").await;
    let before = stand_in.seen();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let _ = op.stat("c.txt").await;
    let seen = stand_in.seen();
    let id = p.id();
    let tokens: Vec<&Seen> = seen.iter().filter(|s| s.token_request).collect();
    assert_eq!(
        before.iter().filter(|s| s.token_request).count(),
        1,
        "{id}: one token for the requests while it lasts: {before:#?}"
    );
    assert_eq!(tokens.len(), 2, "{id}: a new token after expiry: {seen:#?}");
    // The first exchange is of the connection's own refresh token and app credentials.
    let first = &tokens[0];
    for value in [
        "value-of-refresh_token-1234",
        "value-of-client_id-1234",
        "value-of-client_secret-1234",
    ] {
        assert!(
            first.auth_or_body.contains(value) || first.url.contains(value),
            "{id}: the token request carries {value}: {first:?}"
        );
    }
    // Every API request carries the token given out most recently before it.
    let mut current = 0;
    for s in &seen {
        if s.token_request {
            current += 1;
            continue;
        }
        assert_eq!(
            s.auth_or_body,
            format!("Bearer token-{current}"),
            "{id}: {} signed with an old token",
            s.url
        );
    }
    assert!(
        seen.iter()
            .skip_while(|s| !s.token_request)
            .skip(1)
            .any(|s| !s.token_request),
        "{id}: no request after the refresh: {seen:#?}"
    );
}

#[tokio::test]
async fn dropbox_refreshes_an_expired_access_token_between_requests() {
    refreshes_an_expired_token(Provider::Dropbox, "https://api.dropboxapi.com/oauth2/token").await;
}

#[tokio::test]
async fn google_drive_refreshes_an_expired_access_token_between_requests() {
    refreshes_an_expired_token(Provider::Gdrive, "https://oauth2.googleapis.com/token").await;
}

#[tokio::test]
async fn onedrive_refreshes_an_expired_access_token_between_requests() {
    for kind in [OnedriveKind::Personal, OnedriveKind::Business] {
        refreshes_an_expired_token(
            Provider::Onedrive(kind),
            "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        )
        .await;
    }
}

/// OneDrive's saved refresh token is exchanged once at the first listing of a run (not again
/// within the day) and the new one it is given is handed over to be saved; the request
/// carries the saved token and the app's credentials.
#[tokio::test]
async fn onedrive_hands_over_the_refresh_token_it_is_given_in_exchange() {
    use crate::oauth::{Renewal, ONEDRIVE_TOKEN_URL};
    let p = Provider::Onedrive(OnedriveKind::Personal);
    let (op, stand_in) = operator_at_stand_in(p, ONEDRIVE_TOKEN_URL);
    let (conn, secrets) = full_connection(p);
    let saved = Arc::new(Mutex::new(Vec::<String>::new()));
    let into = saved.clone();
    let renewal = Renewal::of(
        "od-test",
        &conn,
        &secrets,
        Box::new(move |t| {
            into.lock().expect("lock").push(t.to_string());
            Ok(())
        }),
    )
    .expect("a OneDrive connection renews its token");
    renewal.renew_if_due(&op).await;
    renewal.renew_if_due(&op).await;
    assert_eq!(*saved.lock().expect("lock"), vec!["rotated-1".to_string()]);
    let seen = stand_in.seen();
    let tokens: Vec<&Seen> = seen.iter().filter(|s| s.token_request).collect();
    assert_eq!(tokens.len(), 1, "one exchange a day: {seen:#?}");
    for part in [
        "refresh_token=value-of-refresh_token-1234",
        "client_id=value-of-client_id-1234",
        "client_secret=value-of-client_secret-1234",
        "grant_type=refresh_token",
    ] {
        assert!(
            tokens[0].auth_or_body.contains(part),
            "the exchange carries {part}: {:?}",
            tokens[0]
        );
    }
}

/// Only a OneDrive connection whose refresh token is saved renews it: other services do not
/// rotate theirs, and a token typed at each run is the user's to keep.
#[test]
fn only_a_saved_onedrive_token_is_renewed() {
    use crate::oauth::Renewal;
    let never = || -> crate::oauth::SaveToken { Box::new(|_| Ok(())) };
    for p in [Provider::Dropbox, Provider::Gdrive] {
        let (conn, secrets) = full_connection(p);
        assert!(
            Renewal::of("t", &conn, &secrets, never()).is_none(),
            "{}",
            p.id()
        );
    }
    let (mut conn, secrets) = full_connection(Provider::Onedrive(OnedriveKind::Business));
    assert!(Renewal::of("t", &conn, &secrets, never()).is_some());
    conn.prompt.push("refresh_token".into());
    assert!(Renewal::of("t", &conn, &secrets, never()).is_none());
}
