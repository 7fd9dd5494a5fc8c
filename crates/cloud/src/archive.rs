//! S3 objects in an archive storage class (Glacier Flexible Retrieval, Deep Archive): their
//! content cannot be read until a temporary copy is restored (seed 003, "Amazon Glacier and
//! Azure Archive objects"). A read that S3 refuses with `InvalidObjectState` is answered here,
//! in the connection's transport: the object's restore is requested (RestoreObject) unless one
//! is under way, and the refusal's message says so, with the time. The file then fails this
//! run with that message and is downloaded by a later run once the copy is readable.

use bytes::Bytes;
use http::{Method, Uri};

use crate::multipart::{now_secs, object_key, signed_request, SigV4};

/// Days a restored copy stays readable: a week of runs to pick it up.
pub const RESTORE_DAYS: u32 = 7;

/// Whether an S3 error answer says the object is archived (AWS answers 403; some servers
/// another client error).
pub(crate) fn is_archived(status: http::StatusCode, body: &[u8]) -> bool {
    status.is_client_error()
        && String::from_utf8_lossy(body).contains("<Code>InvalidObjectState</Code>")
}

/// Requests the restore of the archived object at `uri` unless one is under way; returns the
/// error answer `body` with its message saying what was done.
pub(crate) async fn request_restore(
    client: &reqwest::Client,
    signer: &SigV4,
    uri: &Uri,
    body: &[u8],
) -> Bytes {
    let object = object_key(uri, uri.path());
    let said = match restore_state(client, signer, &object).await {
        Ok(Some(state)) if state.contains("ongoing-request=\"true\"") => {
            "archived; its restore was requested by an earlier run and is under way: a later run downloads it".to_string()
        }
        _ => match post_restore(client, signer, &object).await {
            Ok(()) => format!(
                "archived; restore requested at {} (a copy readable for {RESTORE_DAYS} days): a later run downloads it",
                cairn_model::timespec::format_instant(now_secs().saturating_mul(1_000_000_000))
            ),
            Err(e) => format!("archived, and its restore could not be requested: {e}"),
        },
    };
    let text = String::from_utf8_lossy(body);
    let replaced = match (text.find("<Message>"), text.find("</Message>")) {
        (Some(a), Some(b)) if a < b => {
            format!("{}<Message>{said}</Message>{}", &text[..a], &text[b + 10..])
        }
        _ => format!("<Error><Code>InvalidObjectState</Code><Message>{said}</Message></Error>"),
    };
    Bytes::from(replaced)
}

/// The object's `x-amz-restore` header, if it has one.
async fn restore_state(
    client: &reqwest::Client,
    signer: &SigV4,
    object: &str,
) -> Result<Option<String>, String> {
    let (status, headers, _) =
        signed_request(client, signer, Method::HEAD, object, "", Bytes::new()).await?;
    if !status.is_success() {
        return Err(format!("HEAD answered {status}"));
    }
    Ok(headers
        .get("x-amz-restore")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string))
}

async fn post_restore(
    client: &reqwest::Client,
    signer: &SigV4,
    object: &str,
) -> Result<(), String> {
    let body = format!(
        "<RestoreRequest><Days>{RESTORE_DAYS}</Days><GlacierJobParameters><Tier>Standard</Tier></GlacierJobParameters></RestoreRequest>"
    );
    let (status, _, answer) = signed_request(
        client,
        signer,
        Method::POST,
        object,
        "restore=",
        Bytes::from(body),
    )
    .await?;
    // 202: requested; 200: a copy is restored already; 409: a restore is under way.
    if status.is_success() || status == http::StatusCode::CONFLICT {
        return Ok(());
    }
    Err(format!(
        "RestoreObject answered {status}: {}",
        String::from_utf8_lossy(&answer)
            .chars()
            .take(200)
            .collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invalid_object_state_refusals_are_archived() {
        let body = b"<Error><Code>InvalidObjectState</Code><Message>m</Message></Error>";
        assert!(is_archived(http::StatusCode::FORBIDDEN, body));
        assert!(is_archived(http::StatusCode::BAD_REQUEST, body));
        assert!(!is_archived(http::StatusCode::INTERNAL_SERVER_ERROR, body));
        assert!(!is_archived(
            http::StatusCode::FORBIDDEN,
            b"<Error><Code>AccessDenied</Code></Error>"
        ));
    }
}
