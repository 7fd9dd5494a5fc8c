//! The buckets (Azure: containers) a connection's credential can see, for `cairn cloud buckets`.
//!
//! OpenDAL opens one bucket and has no call for the account's list, so the request is made
//! here: S3's ListBuckets signed with AWS SigV4, Azure's List Containers signed with the
//! account's Shared Key (or carrying its SAS token), GCS's `buckets.list` for a project. The
//! signatures come from the reqsign crates OpenDAL itself signs with, so no new signing code
//! and no new crate enter the build. Requests go through the connection's own HTTP client
//! ([`Transport`]), with its CA file.
//!
//! Seed 003: a credential may be allowed into one bucket and refused the list. A refusal is
//! a value ([`BucketListing::Denied`]) the CLI turns into "name the bucket by hand", not a
//! failure of the connection; so is a provider whose API offers no list we can make here
//! ([`BucketListing::NotOffered`]).

use std::sync::Arc;

use reqsign_core::{Context, Signer};

use crate::provider::Provider;
use crate::transport::{Counters, Limits, Transport};
use crate::{CloudConnection, Secrets};

/// What asking for the list gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketListing {
    /// The names, sorted.
    Listed(Vec<String>),
    /// The service refused the list (HTTP status and its own words).
    Denied { status: u16, reason: String },
    /// This provider has no list we can ask for here; the text says why.
    NotOffered(String),
}

/// SHA-256 of an empty body, the payload hash of a GET.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The Blob service version asked for (the one OpenDAL's azblob service sends).
const AZURE_VERSION: &str = "2019-12-12";

/// Lists the buckets or containers `conn` can see.
///
/// # Errors
/// A request that could not be made or answered (unreachable, bad options, an answer that is
/// not a listing); the text names the connection's service and never holds a secret.
pub async fn list(conn: &CloudConnection, secrets: &Secrets) -> Result<BucketListing, String> {
    let provider = Provider::from_id(&conn.provider).map_err(|e| e.to_string())?;
    let ca = match &conn.ca_file {
        Some(path) => Some(
            std::fs::read(path).map_err(|e| format!("reading CA file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let transport = Transport::new(
        ca.as_deref(),
        Arc::new(Limits::default()),
        Arc::new(Counters::default()),
        conn.public_only,
    )?;
    let asked = Asked {
        conn,
        secrets,
        provider,
        http: transport.http(),
    };
    let result = match provider.scheme() {
        "s3" => asked.s3().await,
        "azblob" => asked.azblob().await,
        "gcs" => asked.gcs().await,
        _ => Ok(BucketListing::NotOffered(format!(
            "{} has no bucket list this build can ask for",
            provider.display_name()
        ))),
    };
    result.map_err(|e| crate::connection::redact(&e, secrets))
}

struct Asked<'a> {
    conn: &'a CloudConnection,
    secrets: &'a Secrets,
    provider: Provider,
    http: &'a reqwest::Client,
}

impl Asked<'_> {
    fn option(&self, key: &str) -> Option<String> {
        self.conn
            .options
            .get(key)
            .or_else(|| self.secrets.0.get(key))
            .filter(|v| !v.trim().is_empty())
            .cloned()
    }

    /// The service address: the one given, or the provider's template.
    fn endpoint(&self) -> Result<String, String> {
        if let Some(e) = self.option("endpoint") {
            return Ok(e.trim_end_matches('/').to_string());
        }
        let provider = self.provider;
        provider
            .endpoint(|key| {
                self.conn.options.iter().find_map(|(k, v)| {
                    (provider.option_for_opendal_key(k) == Some(key)).then(|| v.clone())
                })
            })
            .map(|e| e.trim_end_matches('/').to_string())
            .map_err(|e| e.to_string())
    }

    async fn s3(&self) -> Result<BucketListing, String> {
        let url = format!("{}/", self.endpoint()?);
        let region = self.option("region").unwrap_or_else(|| "us-east-1".into());
        let mut parts = request_parts(&url)?;
        parts.headers.insert(
            "x-amz-content-sha256",
            http::HeaderValue::from_static(EMPTY_SHA256),
        );
        if let (Some(id), Some(secret)) = (
            self.option("access_key_id"),
            self.option("secret_access_key"),
        ) {
            let mut creds = reqsign_aws_v4::StaticCredentialProvider::new(&id, &secret);
            if let Some(token) = self.option("session_token") {
                creds = creds.with_session_token(&token);
            }
            let signer = Signer::new(
                Context::new(),
                creds,
                reqsign_aws_v4::RequestSigner::new("s3", &region),
            );
            signer
                .sign(&mut parts, None)
                .await
                .map_err(|e| format!("signing the bucket list request: {e}"))?;
        }
        let body = match self.get(parts).await? {
            Ok(body) => body,
            Err(denied) => return Ok(denied),
        };
        Ok(BucketListing::Listed(sorted(xml_names(&body, "Bucket"))))
    }

    async fn azblob(&self) -> Result<BucketListing, String> {
        let base = self.endpoint()?;
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut url = format!("{base}/?comp=list");
            if let Some(m) = &marker {
                url.push_str("&marker=");
                url.push_str(&query_encode(m));
            }
            let sas = self.option("sas_token");
            if let Some(sas) = &sas {
                url.push('&');
                url.push_str(sas.trim_start_matches('?'));
            }
            let mut parts = request_parts(&url)?;
            parts.headers.insert(
                "x-ms-version",
                http::HeaderValue::from_static(AZURE_VERSION),
            );
            if sas.is_none() {
                let (Some(account), Some(key)) =
                    (self.option("account_name"), self.option("account_key"))
                else {
                    return Err("the connection has neither an account key nor a SAS token".into());
                };
                let signer = Signer::new(
                    Context::new(),
                    reqsign_azure_storage::StaticCredentialProvider::new_shared_key(&account, &key),
                    reqsign_azure_storage::RequestSigner::new(),
                );
                signer
                    .sign(&mut parts, None)
                    .await
                    .map_err(|e| format!("signing the container list request: {e}"))?;
            }
            let body = match self.get(parts).await? {
                Ok(body) => body,
                Err(denied) => return Ok(denied),
            };
            names.extend(xml_names(&body, "Container"));
            marker = xml_text(&body, "NextMarker").filter(|m| !m.is_empty());
            if marker.is_none() {
                return Ok(BucketListing::Listed(sorted(names)));
            }
        }
    }

    async fn gcs(&self) -> Result<BucketListing, String> {
        let Some(project) = self.option("project_id").or_else(|| self.option("project")) else {
            return Ok(BucketListing::NotOffered(
                "Google Cloud Storage lists buckets per project; save the project id with \
                 `--option project_id=ID`"
                    .into(),
            ));
        };
        let base = self
            .option("endpoint")
            .unwrap_or_else(|| "https://storage.googleapis.com".into());
        let url = format!(
            "{}/storage/v1/b?project={}",
            base.trim_end_matches('/'),
            query_encode(&project)
        );
        let mut parts = request_parts(&url)?;
        let unsigned = self
            .option("skip_signature")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        match self.option("token") {
            Some(token) => {
                let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| "the access token is not a valid header value".to_string())?;
                parts.headers.insert(http::header::AUTHORIZATION, value);
            }
            None if unsigned => {}
            None => {
                return Ok(BucketListing::NotOffered(
                    "this build lists Google Cloud Storage buckets with an access token \
                     (`--secret token`) only, not with a service-account key file"
                        .into(),
                ))
            }
        }
        let body = match self.get(parts).await? {
            Ok(body) => body,
            Err(denied) => return Ok(denied),
        };
        let doc: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("the bucket list is not JSON: {e}"))?;
        let names = doc["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|b| b["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(BucketListing::Listed(sorted(names)))
    }

    /// Sends a signed GET: the body of a success, or the refusal as a listing.
    async fn get(
        &self,
        parts: http::request::Parts,
    ) -> Result<Result<String, BucketListing>, String> {
        let url = parts.uri.to_string();
        let answer = self
            .http
            .get(&url)
            .headers(parts.headers)
            .send()
            .await
            .map_err(|e| format!("asking {} for its list: {}", host_of(&url), e.without_url()))?;
        let status = answer.status();
        let body = answer
            .text()
            .await
            .map_err(|e| format!("reading the list from {}: {e}", host_of(&url)))?;
        if status.is_success() {
            return Ok(Ok(body));
        }
        let reason = [xml_text(&body, "Code"), xml_text(&body, "Message")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        let reason = if reason.is_empty() {
            status.canonical_reason().unwrap_or("refused").to_string()
        } else {
            reason
        };
        if matches!(status.as_u16(), 401 | 403) {
            return Ok(Err(BucketListing::Denied {
                status: status.as_u16(),
                reason,
            }));
        }
        Err(format!(
            "{} answered the list request with {status}: {reason}",
            host_of(&url)
        ))
    }
}

fn request_parts(url: &str) -> Result<http::request::Parts, String> {
    http::Request::get(url)
        .body(())
        .map(|r| r.into_parts().0)
        .map_err(|e| format!("address {url}: {e}"))
}

/// `scheme://host:port` of a URL, for messages (never its query, which may hold a SAS token).
fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| Some(format!("{}://{}", u.scheme_str()?, u.authority()?)))
        .unwrap_or_else(|| "the service".into())
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}

fn query_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `<Name>` of every `<item>` element in an S3 or Azure listing (both put the bucket's
/// or container's name in a `Name` child and nothing else of that name inside the item).
fn xml_names(body: &str, item: &str) -> Vec<String> {
    let open = format!("<{item}>");
    body.split(&open)
        .skip(1)
        .filter_map(|rest| xml_text(rest, "Name"))
        .collect()
}

/// The text of the first `<tag>` element, unescaped.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&close)?;
    Some(unescape(&body[start..start + len]))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_out_of_s3_and_azure_listings() {
        let s3 = "<ListAllMyBucketsResult><Owner><DisplayName>me</DisplayName></Owner>\
                  <Buckets><Bucket><Name>b-two</Name><CreationDate>x</CreationDate></Bucket>\
                  <Bucket><Name>a&amp;one</Name></Bucket></Buckets></ListAllMyBucketsResult>";
        assert_eq!(
            sorted(xml_names(s3, "Bucket")),
            ["a&one".to_string(), "b-two".to_string()]
        );
        let az = "<EnumerationResults><Containers><Container><Name>c1</Name><Properties/>\
                  </Container></Containers><NextMarker/></EnumerationResults>";
        assert_eq!(xml_names(az, "Container"), ["c1".to_string()]);
        assert_eq!(
            xml_text(az, "NextMarker"),
            None,
            "an empty marker ends the list"
        );
        let denied = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        assert_eq!(xml_text(denied, "Code").as_deref(), Some("AccessDenied"));
    }

    #[test]
    fn messages_never_show_a_query() {
        assert_eq!(
            host_of("http://127.0.0.1:9/acct/?comp=list&sig=secret"),
            "http://127.0.0.1:9"
        );
    }
}
