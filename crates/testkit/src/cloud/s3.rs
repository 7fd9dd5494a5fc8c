//! S3 on moto (signatures checked: an IAM user's key made at start) or s3rver (keys
//! `S3RVER`/`S3RVER`; it checks only the access key id of a V4 signature), path-style, with
//! one bucket created by a signed PUT.

use std::process::Command;

use super::sign::{canonical_query, uri_encode_path, SigV4, UtcTime};
use super::{free_port, http_answers, program, Result, ServerProcess};

/// A running S3-compatible server with one empty bucket.
#[derive(Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`; buckets are addressed path-style.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub process: ServerProcess,
}

/// moto's S3: CPU-heavy but the most complete emulation (multipart, versions, copy), and the
/// only local S3 here that verifies signatures.
pub fn start_moto() -> Result<S3Server> {
    const NAME: &str = "moto";
    let bin = program(NAME, "venv/bin/moto_server")?;
    let port = free_port(NAME)?;
    let dir = tempdir(NAME)?;
    let mut cmd = Command::new(bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        // Authentication on after the three IAM calls that make the test user below: from then
        // on moto verifies every signature and refuses unknown keys.
        .env(
            "INITIAL_NO_AUTH_ACTION_COUNT",
            IAM_SETUP_CALLS.len().to_string(),
        );
    let mut process = ServerProcess::spawn(NAME, dir, &mut cmd)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    // moto's own API answers without counting as an action.
    let probe = format!("{endpoint}/moto-api/");
    process.wait_ready(|| http_answers(&probe))?;
    let (key, secret) = moto_user(&process, &endpoint)?;
    ready(process, port, &key, &secret)
}

/// The IAM calls that make a user allowed everything, with an access key.
const IAM_SETUP_CALLS: [&str; 3] = ["CreateUser", "CreateAccessKey", "PutUserPolicy"];

/// Makes moto's test user and returns its access key id and secret.
fn moto_user(process: &ServerProcess, endpoint: &str) -> Result<(String, String)> {
    const POLICY: &str =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    // Unauthenticated calls still need a credential scope naming IAM for moto to route them.
    let scope = "AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/iam/aws4_request, \
                 SignedHeaders=host, Signature=0";
    let mut key_xml = String::new();
    for action in IAM_SETUP_CALLS {
        let mut form = vec![
            ("Action", action),
            ("Version", "2010-05-08"),
            ("UserName", "cairn"),
        ];
        if action == "PutUserPolicy" {
            form.extend([("PolicyName", "all"), ("PolicyDocument", POLICY)]);
        }
        let answer = crate::http()
            .post(format!("{endpoint}/"))
            .header("authorization", scope)
            .form(&form)
            .send()
            .map_err(|e| process.setup_error(format!("IAM {action}: {e}")))?;
        let status = answer.status();
        let body = answer.text().unwrap_or_default();
        if !status.is_success() {
            return Err(process.setup_error(format!("IAM {action}: {status}: {body}")));
        }
        if action == "CreateAccessKey" {
            key_xml = body;
        }
    }
    match (
        xml_text(&key_xml, "AccessKeyId"),
        xml_text(&key_xml, "SecretAccessKey"),
    ) {
        (Some(key), Some(secret)) => Ok((key, secret)),
        _ => Err(process.setup_error(format!("no access key in: {key_xml}"))),
    }
}

/// The text of the first `<tag>` element (enough for moto's flat IAM answers).
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..start + len].to_string())
}

/// s3rver: faster than moto and checks signatures, keeping objects as files under its folder.
pub fn start_s3rver() -> Result<S3Server> {
    const NAME: &str = "s3rver";
    let bin = program(NAME, "node/node_modules/.bin/s3rver")?;
    let port = free_port(NAME)?;
    let dir = tempdir(NAME)?;
    let data = dir.path().join("data");
    std::fs::create_dir(&data).map_err(|source| super::Error::Io {
        server: NAME,
        what: format!("creating {}", data.display()),
        source,
    })?;
    let mut cmd = Command::new(bin);
    cmd.arg("--directory")
        .arg(&data)
        .args(["--address", "127.0.0.1", "--port", &port.to_string()])
        // Its V2 listings' continuation tokens use a cipher Node 17+ keeps in the legacy
        // provider: without it the second page of a listing is a 500.
        .env("NODE_OPTIONS", "--openssl-legacy-provider");
    let process = ServerProcess::spawn(NAME, dir, &mut cmd)?;
    // s3rver's fixed development credentials.
    ready(process, port, "S3RVER", "S3RVER")
}

fn tempdir(server: &'static str) -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|source| super::Error::Io {
        server,
        what: "creating its temp folder".into(),
        source,
    })
}

/// Waits for the server, then creates the bucket.
fn ready(mut process: ServerProcess, port: u16, key: &str, secret: &str) -> Result<S3Server> {
    let endpoint = format!("http://127.0.0.1:{port}");
    if process.ready_after().is_zero() {
        process.wait_ready(|| http_answers(&endpoint))?;
    }
    let s3 = S3Server {
        endpoint,
        bucket: "cairn-test".into(),
        region: "us-east-1".into(),
        access_key_id: key.into(),
        secret_access_key: secret.into(),
        process,
    };
    let answer = s3
        .request(reqwest::Method::PUT, "", Vec::new())
        .send()
        .map_err(|e| {
            s3.process
                .setup_error(format!("creating bucket {}: {e}", s3.bucket))
        })?;
    if !answer.status().is_success() {
        let status = answer.status();
        let body = answer.text().unwrap_or_default();
        return Err(s3
            .process
            .setup_error(format!("creating bucket {}: {status}: {body}", s3.bucket)));
    }
    Ok(s3)
}

impl S3Server {
    pub fn sigv4(&self) -> SigV4 {
        SigV4 {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            region: self.region.clone(),
        }
    }

    /// A request on `key` in the bucket (the bucket itself when `key` is empty), signed with
    /// this server's credentials.
    pub fn request(
        &self,
        method: reqwest::Method,
        key: &str,
        body: Vec<u8>,
    ) -> reqwest::blocking::RequestBuilder {
        self.request_as(&self.sigv4(), method, key, body)
    }

    /// Like [`S3Server::request`], signed with other credentials.
    pub fn request_as(
        &self,
        creds: &SigV4,
        method: reqwest::Method,
        key: &str,
        body: Vec<u8>,
    ) -> reqwest::blocking::RequestBuilder {
        self.signed(creds, method, key, &[], body)
    }

    /// A request on `key` (the bucket itself when empty) with the query pairs `query`
    /// (`uploads`, `uploadId`, ...), signed with this server's credentials.
    pub fn request_query(
        &self,
        method: reqwest::Method,
        key: &str,
        query: &[(&str, &str)],
    ) -> reqwest::blocking::RequestBuilder {
        self.signed(&self.sigv4(), method, key, query, Vec::new())
    }

    /// A signed GET of one page of the bucket's V2 listing (`list-type=2`) with `query` added
    /// (`max-keys`, `continuation-token`, `prefix`).
    pub fn list_v2(&self, query: &[(&str, &str)]) -> reqwest::blocking::RequestBuilder {
        let mut all = vec![("list-type", "2")];
        all.extend_from_slice(query);
        self.signed(&self.sigv4(), reqwest::Method::GET, "", &all, Vec::new())
    }

    fn signed(
        &self,
        creds: &SigV4,
        method: reqwest::Method,
        key: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::blocking::RequestBuilder {
        let path = if key.is_empty() {
            format!("/{}", self.bucket)
        } else {
            uri_encode_path(&format!("/{}/{key}", self.bucket))
        };
        let host = self.endpoint.trim_start_matches("http://");
        let mut url = format!("{}{path}", self.endpoint);
        if !query.is_empty() {
            // Encoded exactly as signed, so the server's canonical form matches.
            url = format!("{url}?{}", canonical_query(query));
        }
        let mut req = crate::http().request(method.clone(), url);
        let now = UtcTime::now();
        for (name, value) in creds.headers(method.as_str(), host, &path, query, &body, now) {
            req = req.header(name, value);
        }
        req.body(body)
    }
}
