//! AWS Signature Version 4 for the few S3 requests OpenDAL has no API for (ListParts,
//! AbortMultipartUpload, RestoreObject): headers given here are the only ones signed.

use ring::{digest, hmac};

/// Static S3 credentials of one connection.
#[derive(Clone)]
pub(crate) struct SigV4 {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

impl std::fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("SigV4")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// Percent-encodes a query key or value as SigV4 canonicalises it: unreserved characters stay.
pub(crate) fn uri_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical query: pairs encoded, sorted, joined with `&` (also what is sent).
pub(crate) fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

impl SigV4 {
    /// The headers that sign a request of `method` on `host` (with port), the already encoded
    /// `path` and the canonical `query`, carrying `body`, at `unix_secs`.
    pub(crate) fn headers(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: &str,
        body: &[u8],
        unix_secs: i64,
    ) -> Vec<(&'static str, String)> {
        let (y, m, d) = cairn_model::timespec::civil_date(unix_secs);
        let rem = unix_secs.rem_euclid(86_400);
        let date = format!("{y:04}{m:02}{d:02}");
        let amz = format!(
            "{date}T{:02}{:02}{:02}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        );
        let payload = hex(digest::digest(&digest::SHA256, body).as_ref());
        let signed = "host;x-amz-content-sha256;x-amz-date";
        let canonical = format!(
            "{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz}\n\n{signed}\n{payload}"
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        let mut key = hmac_sha256(
            format!("AWS4{}", self.secret_access_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        let signature = hex(&hmac_sha256(&key, to_sign.as_bytes()));
        vec![
            ("x-amz-date", amz),
            ("x-amz-content-sha256", payload),
            (
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                    self.access_key_id
                ),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_and_sorted() {
        assert_eq!(
            canonical_query(&[("uploadId", "a/b+c="), ("part-number-marker", "0")]),
            "part-number-marker=0&uploadId=a%2Fb%2Bc%3D"
        );
    }

    /// The signature itself is checked by moto in the integration tests; here: stable for the
    /// same inputs, and the secret is part of it.
    #[test]
    fn a_signature_is_stable_and_depends_on_the_secret() {
        let creds = |secret: &str| SigV4 {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: secret.into(),
            region: "us-east-1".into(),
        };
        let at = 1_796_043_982; // 2026-11-30 13:06:22 UTC
        let a = creds("one").headers("GET", "h:1", "/b/k", "uploadId=x", b"", at);
        let b = creds("one").headers("GET", "h:1", "/b/k", "uploadId=x", b"", at);
        let c = creds("two").headers("GET", "h:1", "/b/k", "uploadId=x", b"", at);
        assert_eq!(a, b);
        assert_ne!(a[2], c[2]);
        assert_eq!(a[0].1, "20261130T130622Z");
        assert!(!format!("{:?}", creds("hidden")).contains("hidden"));
    }
}
