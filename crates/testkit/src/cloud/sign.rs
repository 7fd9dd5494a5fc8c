//! Request signing for the test servers' fixtures and smoke checks: AWS Signature Version 4
//! (path-style S3) and Azure Storage Shared Key. Only what a single PUT, GET or container
//! creation needs: headers given here are the only ones signed, and the body is hashed whole.

use base64::Engine as _;
use ring::{digest, hmac};
use std::time::{SystemTime, UNIX_EPOCH};

/// The date parts a signature needs, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Monday.
    pub weekday: u32,
}

impl UtcTime {
    pub fn now() -> UtcTime {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        UtcTime::from_unix(secs)
    }

    /// Civil date from a day count (Howard Hinnant's days-to-civil algorithm).
    pub fn from_unix(secs: u64) -> UtcTime {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        UtcTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            // 1970-01-01 was a Thursday.
            weekday: ((days + 3).rem_euclid(7)) as u32,
        }
    }

    /// `20261130T130622Z`.
    pub fn amz(&self) -> String {
        format!(
            "{}T{:02}{:02}{:02}Z",
            self.amz_date(),
            self.hour,
            self.minute,
            self.second
        )
    }

    /// `20261130`.
    pub fn amz_date(&self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// `Mon, 30 Nov 2026 13:06:22 GMT`.
    pub fn rfc1123(&self) -> String {
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            DAYS[self.weekday as usize % 7],
            self.day,
            MONTHS[(self.month as usize + 11) % 12],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
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

/// Percent-encodes a path the way SigV4 canonicalises it: unreserved characters and `/` stay.
pub fn uri_encode_path(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query key or value as SigV4 does: only unreserved characters stay.
pub fn uri_encode(text: &str) -> String {
    uri_encode_path(text).replace('/', "%2F")
}

/// SigV4's canonical query string: pairs encoded, sorted, joined with `&`.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
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

/// SigV4 credentials for one region and service (`s3`).
#[derive(Debug, Clone)]
pub struct SigV4 {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

impl SigV4 {
    /// The headers to add to a request of `method` on `host` (with port), the already encoded
    /// `path` and the (unencoded) `query` pairs, carrying `body`.
    pub fn headers(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: &[(&str, &str)],
        body: &[u8],
        at: UtcTime,
    ) -> Vec<(String, String)> {
        let payload = hex(digest::digest(&digest::SHA256, body).as_ref());
        let amz = at.amz();
        let signed = "host;x-amz-content-sha256;x-amz-date";
        let query = canonical_query(query);
        let canonical = format!(
            "{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz}\n\n{signed}\n{payload}"
        );
        let scope = format!("{}/{}/s3/aws4_request", at.amz_date(), self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        let mut key = hmac_sha256(
            format!("AWS4{}", self.secret_access_key).as_bytes(),
            at.amz_date().as_bytes(),
        );
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        let signature = hex(&hmac_sha256(&key, to_sign.as_bytes()));
        vec![
            ("x-amz-date".into(), amz),
            ("x-amz-content-sha256".into(), payload),
            (
                "authorization".into(),
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                    self.access_key_id
                ),
            ),
        ]
    }
}

/// Azure Storage Shared Key credentials.
#[derive(Debug, Clone)]
pub struct SharedKey {
    pub account: String,
    /// The account key as Azure prints it (base64).
    pub key: String,
}

/// The service version the requests ask for; azurite 3.37 accepts it.
pub const AZURE_VERSION: &str = "2021-08-06";

impl SharedKey {
    /// The headers to add to a request of `method` on the URL path `path` (which, path-style,
    /// starts with the account) with the query pairs `query`, carrying `content_length` bytes
    /// and the `x-ms-*` headers `ms_headers` (these are sent as given, plus date and version).
    ///
    /// # Errors
    /// The account key is not base64.
    pub fn headers(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        content_length: usize,
        ms_headers: &[(&str, &str)],
        at: UtcTime,
    ) -> Result<Vec<(String, String)>, base64::DecodeError> {
        let key = base64::engine::general_purpose::STANDARD.decode(&self.key)?;
        let mut ms: Vec<(String, String)> = ms_headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        ms.push(("x-ms-date".into(), at.rfc1123()));
        ms.push(("x-ms-version".into(), AZURE_VERSION.into()));
        ms.sort();
        let canonical_headers: String = ms.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let mut q: Vec<(String, &str)> = query
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), *v))
            .collect();
        q.sort();
        let mut resource = format!("/{}{path}", self.account);
        for (k, v) in q {
            resource.push_str(&format!("\n{k}:{v}"));
        }
        let length = if content_length == 0 {
            String::new()
        } else {
            content_length.to_string()
        };
        // VERB, Content-Encoding, -Language, -Length, -MD5, -Type, Date, If-Modified-Since,
        // If-Match, If-None-Match, If-Unmodified-Since, Range; then headers and resource.
        let to_sign =
            format!("{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n{canonical_headers}{resource}");
        let signature =
            base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, to_sign.as_bytes()));
        ms.push((
            "authorization".into(),
            format!("SharedKey {}:{signature}", self.account),
        ));
        Ok(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_and_weekdays() {
        let t = UtcTime::from_unix(0);
        assert_eq!(t.rfc1123(), "Thu, 01 Jan 1970 00:00:00 GMT");
        // 2026-11-30 13:06:22 UTC, a Monday; and a leap day.
        let t = UtcTime::from_unix(1_796_043_982);
        assert_eq!(t.amz(), "20261130T130622Z");
        assert_eq!(t.rfc1123(), "Mon, 30 Nov 2026 13:06:22 GMT");
        assert_eq!(
            UtcTime::from_unix(951_782_400).rfc1123(),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
    }

    /// The signature itself is checked by servers that verify it (s3rver, in the integration
    /// tests); here: the same inputs sign the same, and the secret is part of it.
    #[test]
    fn sigv4_is_stable_and_depends_on_the_secret() {
        let at = UtcTime::from_unix(1_369_353_600); // 2013-05-24
        let creds = |secret: &str| SigV4 {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: secret.into(),
            region: "us-east-1".into(),
        };
        let a = creds("one").headers("GET", "h:1", "/b/k", &[], b"", at);
        let b = creds("one").headers("GET", "h:1", "/b/k", &[], b"", at);
        let c = creds("two").headers("GET", "h:1", "/b/k", &[], b"", at);
        assert_eq!(a, b);
        assert_ne!(a[2], c[2]);
        assert_eq!(a[0].1, "20130524T000000Z");
        assert_eq!(
            a[1].1,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn paths_keep_slashes_and_encode_the_rest() {
        assert_eq!(uri_encode_path("/b/a b/é~"), "/b/a%20b/%C3%A9~");
    }

    #[test]
    fn queries_are_encoded_and_sorted() {
        assert_eq!(
            canonical_query(&[("prefix", "a/b c"), ("list-type", "2"), ("max-keys", "1")]),
            "list-type=2&max-keys=1&prefix=a%2Fb%20c"
        );
    }
}
