//! Azure Blob requests OpenDAL has no API for, made in the connection's transport
//! ([`crate::hook`]): access tiers on upload, rehydration of archived blobs, and block uploads
//! that resume after an interruption ([`blocks`]).
//!
//! - **Tier.** With `--storage-class hot|cool|archive`, Put Blob and Put Block List (the two
//!   requests that make a blob) carry `x-ms-access-tier`; OpenDAL's azblob service has no such
//!   option, so the header is added here and the request signed again (Shared Key signs every
//!   `x-ms-` header; a SAS token in the query does not need it).
//! - **Archive.** A read refused with `BlobArchived` (seed 003, "Amazon Glacier and Azure
//!   Archive objects") makes the hook look at the blob (`x-ms-archive-status`) and, unless a
//!   rehydration is under way, ask for one (Set Blob Tier to Hot, standard priority). The
//!   refusal's message then says so; the file fails this run with that message and a later
//!   run downloads it, as the S3 Glacier path does ([`crate::archive`]).

mod blocks;

use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use opendal::Buffer;
use reqsign_core::{Context, Signer};

use crate::hook::{query_pairs, without_query, Hook, OnAnswer, Step};

/// The Blob service version of our own requests (the one OpenDAL's azblob service sends).
const VERSION: &str = "2022-11-02";
/// The tier an archived blob is rehydrated to: readable at once when done, and without the
/// early-deletion charge Cool has.
const REHYDRATE_TO: &str = "Hot";

/// How the connection authenticates (never shown by `Debug`).
#[derive(Clone)]
pub(crate) enum AzureAuth {
    SharedKey { account: String, key: String },
    Sas(String),
    Anonymous,
}

impl std::fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AzureAuth::SharedKey { .. } => "AzureAuth::SharedKey",
            AzureAuth::Sas(_) => "AzureAuth::Sas",
            AzureAuth::Anonymous => "AzureAuth::Anonymous",
        })
    }
}

impl AzureAuth {
    /// From the options the connection opens OpenDAL with.
    pub(crate) fn of(options: &std::collections::BTreeMap<String, String>) -> AzureAuth {
        let get = |k: &str| options.get(k).filter(|v| !v.trim().is_empty()).cloned();
        match (get("account_name"), get("account_key"), get("sas_token")) {
            (_, _, Some(sas)) => AzureAuth::Sas(sas.trim_start_matches('?').to_string()),
            (Some(account), Some(key), None) => AzureAuth::SharedKey { account, key },
            _ => AzureAuth::Anonymous,
        }
    }

    /// Signs one of our own requests (adds the version header; a SAS goes into the query).
    async fn sign(&self, parts: &mut http::request::Parts) -> Result<(), String> {
        parts
            .headers
            .insert("x-ms-version", http::HeaderValue::from_static(VERSION));
        if let AzureAuth::Sas(sas) = self {
            let uri = parts.uri.to_string();
            let sep = if uri.contains('?') { '&' } else { '?' };
            parts.uri = format!("{uri}{sep}{sas}")
                .parse()
                .map_err(|e| format!("address with the SAS token: {e}"))?;
            return Ok(());
        }
        self.sign_headers(parts).await
    }

    /// Signs `parts` again after a header was added (Shared Key only: OpenDAL's own SAS or
    /// anonymous requests carry no header signature).
    async fn sign_headers(&self, parts: &mut http::request::Parts) -> Result<(), String> {
        let AzureAuth::SharedKey { account, key } = self else {
            return Ok(());
        };
        parts.headers.remove(http::header::AUTHORIZATION);
        let signer = Signer::new(
            Context::new(),
            reqsign_azure_storage::StaticCredentialProvider::new_shared_key(account, key),
            reqsign_azure_storage::RequestSigner::new(),
        );
        signer
            .sign(parts, None)
            .await
            .map_err(|e| format!("signing: {e}"))
    }

    /// A body-less request of ours on `blob` (`scheme://host/path`) with `query` (already
    /// encoded) and extra headers: status, headers and body of the answer.
    async fn request(
        &self,
        client: &reqwest::Client,
        method: Method,
        blob: &str,
        query: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let url = if query.is_empty() {
            blob.to_string()
        } else {
            format!("{blob}?{query}")
        };
        let mut builder = http::Request::builder().method(method.clone()).uri(&url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if method == Method::PUT {
            builder = builder.header(http::header::CONTENT_LENGTH, "0");
        }
        let (mut parts, ()) = builder
            .body(())
            .map_err(|e| format!("building the request: {e}"))?
            .into_parts();
        self.sign(&mut parts).await?;
        let mut req = client
            .request(method, parts.uri.to_string())
            .headers(parts.headers);
        if parts.method == Method::PUT {
            req = req.body(Bytes::new());
        }
        let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
        Ok((status, headers, body))
    }
}

/// One Blob request as far as tiers and block uploads go.
#[derive(Debug, PartialEq, Eq)]
enum Call {
    /// Put Block of `id` (base64, as sent) into the blob at this URL.
    PutBlock {
        blob: String,
        id: String,
    },
    PutBlockList {
        blob: String,
    },
    /// Put Blob of a block blob (the whole content in one request).
    PutBlob {
        blob: String,
    },
    Other,
}

impl Call {
    fn of<T>(req: &Request<T>) -> Call {
        if req.method() != Method::PUT {
            return Call::Other;
        }
        let blob = without_query(req.uri());
        let query = query_pairs(req.uri());
        match query.get("comp").map(String::as_str) {
            Some("block") => match query.get("blockid") {
                Some(id) => Call::PutBlock {
                    blob,
                    id: id.clone(),
                },
                None => Call::Other,
            },
            Some("blocklist") => Call::PutBlockList { blob },
            None if req
                .headers()
                .get("x-ms-blob-type")
                .is_some_and(|v| v == "BlockBlob")
                && !req.headers().contains_key("x-ms-copy-source") =>
            {
                Call::PutBlob { blob }
            }
            _ => Call::Other,
        }
    }
}

/// The Azure hook of one connection as a task uses it.
#[derive(Debug)]
pub(crate) struct AzureHook {
    auth: AzureAuth,
    /// `x-ms-access-tier` of the blobs this task writes (`Hot`, `Cool`, `Archive`).
    tier: Option<String>,
    /// Block uploads recorded so an interrupted one resumes (none: not resumed).
    blocks: Option<blocks::Blocks>,
}

impl AzureHook {
    /// `tier`: the task's access tier; `uploads`: the task's state file.
    pub(crate) fn new(auth: AzureAuth, tier: Option<String>, uploads: Option<&Path>) -> Self {
        AzureHook {
            auth,
            tier,
            blocks: uploads.map(blocks::Blocks::load),
        }
    }

    /// `req` with the task's access tier, signed again.
    async fn with_tier(&self, req: Request<Buffer>) -> Request<Buffer> {
        let Some(tier) = &self.tier else {
            return req;
        };
        let Ok(value) = http::HeaderValue::from_str(tier) else {
            return req;
        };
        let (mut parts, body) = req.into_parts();
        parts.headers.insert("x-ms-access-tier", value);
        // A failed signature is the service's to refuse, with its own message.
        let _ = self.auth.sign_headers(&mut parts).await;
        Request::from_parts(parts, body)
    }
}

#[async_trait::async_trait]
impl Hook for AzureHook {
    async fn before(&self, client: &reqwest::Client, req: Request<Buffer>) -> Step {
        let call = Call::of(&req);
        let mut on_answer: Option<OnAnswer> = None;
        let req = match (&call, &self.blocks) {
            (Call::PutBlock { blob, id }, Some(blocks)) => {
                match blocks
                    .put_block(client, &self.auth, blob, id, req.body())
                    .await
                {
                    blocks::Put::Answered(answer) => return Step::Answered(answer),
                    blocks::Put::Send(then) => on_answer = Some(then),
                }
                req
            }
            (Call::PutBlockList { blob }, Some(blocks)) => {
                on_answer = Some(blocks.committed(blob));
                self.with_tier(blocks.aliased(blob, req)).await
            }
            (Call::PutBlockList { .. }, None) => self.with_tier(req).await,
            (Call::PutBlob { blob }, _) => {
                on_answer = self.blocks.as_ref().map(|b| b.committed(blob));
                self.with_tier(req).await
            }
            _ => req,
        };
        Step::Send(req, on_answer)
    }

    async fn refused_read(
        &self,
        client: &reqwest::Client,
        uri: &Uri,
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Bytes {
        if !is_archived(status, headers, &body) {
            return body;
        }
        let said = self.rehydrate(client, &without_query(uri)).await;
        with_message(&body, &said)
    }
}

impl AzureHook {
    /// Asks for `blob`'s rehydration unless one is under way; says what was done.
    async fn rehydrate(&self, client: &reqwest::Client, blob: &str) -> String {
        let props = self.auth.request(client, Method::HEAD, blob, "", &[]).await;
        if let Ok((status, headers, _)) = &props {
            let pending = headers
                .get("x-ms-archive-status")
                .and_then(|v| v.to_str().ok())
                .filter(|s| s.starts_with("rehydrate-pending"));
            if status.is_success() {
                if let Some(state) = pending {
                    return format!(
                        "archived; its restore was requested by an earlier run and is under way \
                         ({state}; Azure takes up to 15 hours): a later run downloads it"
                    );
                }
            }
        }
        let asked = self
            .auth
            .request(
                client,
                Method::PUT,
                blob,
                "comp=tier",
                &[
                    ("x-ms-access-tier", REHYDRATE_TO),
                    ("x-ms-rehydrate-priority", "Standard"),
                ],
            )
            .await;
        match asked {
            // 202: rehydration started; 200: the tier changed at once.
            Ok((status, _, _)) if status.is_success() => format!(
                "archived; restore requested at {} (rehydration to the {REHYDRATE_TO} tier, \
                 standard priority: Azure takes up to 15 hours): a later run downloads it",
                cairn_model::timespec::format_instant(
                    crate::multipart::now_secs().saturating_mul(1_000_000_000)
                )
            ),
            Ok((status, headers, body)) => format!(
                "archived, and its restore could not be requested: Set Blob Tier answered \
                 {status} {}",
                error_code(&headers, &body)
            ),
            Err(e) => format!("archived, and its restore could not be requested: {e}"),
        }
    }
}

/// Whether a refused read says the blob is in the Archive tier.
fn is_archived(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> bool {
    status == StatusCode::CONFLICT && error_code(headers, body) == "BlobArchived"
}

/// The service's error code: the `x-ms-error-code` header, else the body's `<Code>`.
fn error_code(headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(code) = headers.get("x-ms-error-code").and_then(|v| v.to_str().ok()) {
        return code.to_string();
    }
    let text = String::from_utf8_lossy(body);
    match (text.find("<Code>"), text.find("</Code>")) {
        (Some(a), Some(b)) if a + 6 <= b => text[a + 6..b].to_string(),
        _ => String::new(),
    }
}

/// The error answer `body` with its `<Message>` replaced by `said`.
fn with_message(body: &[u8], said: &str) -> Bytes {
    let said = said.replace('&', "&amp;").replace('<', "&lt;");
    let text = String::from_utf8_lossy(body);
    let replaced = match (text.find("<Message>"), text.find("</Message>")) {
        (Some(a), Some(b)) if a < b => {
            format!("{}<Message>{said}</Message>{}", &text[..a], &text[b + 10..])
        }
        _ => format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>BlobArchived</Code><Message>{said}</Message></Error>"
        ),
    };
    Bytes::from(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(url: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(Method::PUT).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn calls_are_told_apart_by_query_and_blob_type() {
        let blob = "http://h:1/acct/c/dir/a%20b".to_string();
        assert_eq!(
            Call::of(&put(
                "http://h:1/acct/c/dir/a%20b?comp=block&blockid=AAAA%2Bb%3D%3D&sig=x",
                &[]
            )),
            Call::PutBlock {
                blob: blob.clone(),
                id: "AAAA+b==".into()
            }
        );
        assert_eq!(
            Call::of(&put("http://h:1/acct/c/dir/a%20b?comp=blocklist", &[])),
            Call::PutBlockList { blob: blob.clone() }
        );
        assert_eq!(
            Call::of(&put(
                "http://h:1/acct/c/dir/a%20b",
                &[("x-ms-blob-type", "BlockBlob")]
            )),
            Call::PutBlob { blob }
        );
        // Copy Blob and append blobs are not tiered.
        assert_eq!(
            Call::of(&put(
                "http://h:1/acct/c/k",
                &[("x-ms-blob-type", "BlockBlob"), ("x-ms-copy-source", "x")]
            )),
            Call::Other
        );
        assert_eq!(
            Call::of(&put(
                "http://h:1/acct/c/k",
                &[("x-ms-blob-type", "AppendBlob")]
            )),
            Call::Other
        );
    }

    #[test]
    fn an_archived_refusal_is_told_by_its_code_and_gets_our_message() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>BlobArchived</Code><Message>This operation is not permitted on an archived blob.</Message></Error>";
        let none = HeaderMap::new();
        assert!(is_archived(StatusCode::CONFLICT, &none, body));
        assert!(!is_archived(StatusCode::NOT_FOUND, &none, body));
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-error-code",
            http::HeaderValue::from_static("BlobArchived"),
        );
        assert!(is_archived(StatusCode::CONFLICT, &h, b""));
        assert!(!is_archived(
            StatusCode::CONFLICT,
            &none,
            b"<Error><Code>LeaseIdMissing</Code></Error>"
        ));
        let out = with_message(body, "archived; restore requested <now>");
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("<Code>BlobArchived</Code>"), "{out}");
        assert!(
            out.contains("<Message>archived; restore requested &lt;now></Message>"),
            "{out}"
        );
    }

    #[test]
    fn debug_never_shows_a_key_or_token() {
        let k = AzureAuth::SharedKey {
            account: "a".into(),
            key: "secret-key".into(),
        };
        let s = AzureAuth::Sas("sig=secret-token".into());
        assert!(!format!("{k:?}{s:?}").contains("secret"));
    }
}
