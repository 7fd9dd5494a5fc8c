//! Where the chunk store lives, as the user writes it: `s3://BUCKET[/PREFIX]?endpoint=URL&region=R`,
//! `file:///PATH` or a plain path. Credentials never go in the URL (it is printed and logged):
//! they come from the standard AWS environment variables or from [`S3Credentials`].

use std::fmt;
use std::path::PathBuf;

/// A parsed store URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    Local(PathBuf),
    S3(S3Location),
}

/// A bucket (and a prefix in it) on an S3-compatible service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Objects go under this prefix (no leading or trailing `/`; empty: the bucket's top).
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible service; `None`: AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// Static S3 keys from a config file. Debug output shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// A store URL that cannot be used; the message names it (with any query values other than
/// `endpoint` and `region` blanked, in case a secret was pasted there).
#[derive(Debug, thiserror::Error)]
#[error("store URL {shown}: {why}")]
pub struct LocationError {
    shown: String,
    why: String,
}

const HELP: &str = "use s3://BUCKET?endpoint=URL&region=REGION, file:///PATH or a path";

impl StoreLocation {
    /// Parses a store URL.
    ///
    /// # Errors
    /// An unknown scheme, an S3 URL without a bucket, an unknown or repeated query key, or
    /// credentials in the URL.
    pub fn parse(text: &str) -> Result<StoreLocation, LocationError> {
        let fail = |why: String| LocationError {
            shown: shown(text),
            why,
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            if text.is_empty() {
                return Err(fail(format!("empty; {HELP}")));
            }
            return Ok(StoreLocation::Local(PathBuf::from(text)));
        };
        match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(fail(format!(
                        "a file URL needs an absolute path (file:///PATH); {HELP}"
                    )));
                }
                Ok(StoreLocation::Local(PathBuf::from(rest)))
            }
            "s3" => parse_s3(rest).map(StoreLocation::S3).map_err(fail),
            other => Err(fail(format!("unknown scheme `{other}`; {HELP}"))),
        }
    }
}

fn parse_s3(rest: &str) -> Result<S3Location, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err(format!("names no bucket; {HELP}"));
    }
    if !bucket
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(format!("`{bucket}` is not a bucket name"));
    }
    let mut location = S3Location {
        bucket: bucket.to_string(),
        prefix: prefix.trim_matches('/').to_string(),
        endpoint: None,
        region: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).ok_or_else(|| format!("{key}: bad %-escape"))?;
        let slot = match key {
            "endpoint" => &mut location.endpoint,
            "region" => &mut location.region,
            "access_key_id" | "secret_access_key" | "session_token" => {
                return Err(format!(
                    "{key} does not belong in the URL (it is printed and logged); set \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put the keys in the server's \
                     config file"
                ))
            }
            other => {
                return Err(format!(
                    "unknown option `{other}` (known: endpoint, region)"
                ))
            }
        };
        if slot.is_some() {
            return Err(format!("{key} is given twice"));
        }
        if value.is_empty() {
            return Err(format!("{key} is empty"));
        }
        *slot = Some(value);
    }
    if let Some(e) = &location.endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(format!("endpoint {e} is not an http:// or https:// URL"));
        }
    }
    Ok(location)
}

/// `%XX` escapes decoded; `None` when one is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `text` with the value of every query key other than `endpoint` and `region` blanked.
fn shown(text: &str) -> String {
    let Some((head, query)) = text.split_once('?') else {
        return text.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == "endpoint" || k == "region" => format!("{k}={v}"),
            Some((k, _)) => format!("{k}=***"),
            None => pair.to_string(),
        })
        .collect();
    format!("{head}?{}", pairs.join("&"))
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Local(path) => write!(f, "file://{}", path.display()),
            StoreLocation::S3(s3) => s3.fmt(f),
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        let mut sep = '?';
        for (key, value) in [("endpoint", &self.endpoint), ("region", &self.region)] {
            if let Some(v) = value {
                write!(f, "{sep}{key}={v}")?;
                sep = '&';
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_parse_and_print_back() {
        let text = "s3://cairn-chunks/prod/a?endpoint=http://127.0.0.1:9000&region=us-east-1";
        let StoreLocation::S3(s3) = StoreLocation::parse(text).expect("parses") else {
            panic!("not s3");
        };
        assert_eq!(s3.bucket, "cairn-chunks");
        assert_eq!(s3.prefix, "prod/a");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("us-east-1"));
        assert_eq!(s3.to_string(), text);
        let escaped = StoreLocation::parse("s3://b?endpoint=http%3A%2F%2Fh%3A1").expect("parses");
        assert_eq!(escaped.to_string(), "s3://b?endpoint=http://h:1");
    }

    #[test]
    fn local_paths_and_file_urls() {
        assert_eq!(
            StoreLocation::parse("file:///srv/chunks").expect("parses"),
            StoreLocation::Local("/srv/chunks".into())
        );
        assert_eq!(
            StoreLocation::parse("rel/chunks").expect("parses"),
            StoreLocation::Local("rel/chunks".into())
        );
        assert!(StoreLocation::parse("file://relative").is_err());
    }

    #[test]
    fn bad_urls_are_named_and_explained() {
        let err = |t: &str| StoreLocation::parse(t).expect_err(t).to_string();
        let e = err("gs://bucket");
        assert!(
            e.contains("gs://bucket") && e.contains("unknown scheme `gs`"),
            "{e}"
        );
        let e = err("s3://?region=x");
        assert!(e.contains("names no bucket"), "{e}");
        let e = err("s3://b?colour=red");
        assert!(e.contains("unknown option `colour`"), "{e}");
        let e = err("s3://b?endpoint=ftp://h");
        assert!(e.contains("not an http"), "{e}");
        let e = err("s3://b?region=a&region=b");
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn secrets_in_the_url_are_refused_without_being_echoed() {
        let e = StoreLocation::parse("s3://b?endpoint=http://h:1&secret_access_key=TOPSECRET")
            .expect_err("refused")
            .to_string();
        assert!(e.contains("does not belong in the URL"), "{e}");
        assert!(!e.contains("TOPSECRET"), "{e}");
        let creds = S3Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "TOPSECRET".into(),
        };
        assert!(!format!("{creds:?}").contains("TOPSECRET"));
    }
}
