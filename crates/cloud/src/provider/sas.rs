//! An Azure shared access signature URL (seed 003: "supply it here. Note that it must include the
//! container"), split into what OpenDAL's azblob service takes: endpoint, container and token.
//!
//! The token is a secret: [`SasUrl`]'s `Debug` hides it and no error quotes it, so a mistyped URL
//! can be reported without leaking the signature.

use std::fmt;

use super::{BucketRule, Provider, RuleError};

/// The parts of a container SAS URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SasUrl {
    /// `https://account.blob.core.windows.net`, or with the account in the path for emulators
    /// (`http://127.0.0.1:10000/devstoreaccount1`).
    pub endpoint: String,
    pub container: String,
    /// The query string without `?` (OpenDAL's `sas_token`).
    pub token: String,
}

impl fmt::Debug for SasUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasUrl")
            .field("endpoint", &self.endpoint)
            .field("container", &self.container)
            .field("token", &"<hidden>")
            .finish()
    }
}

impl SasUrl {
    /// Splits a container SAS URL: the last path segment is the container, the query the token.
    ///
    /// # Errors
    /// Not an http(s) URL, no container, no token, or a container name Azure refuses; the
    /// message shows the URL without its token.
    pub fn parse(raw: &str) -> Result<SasUrl, RuleError> {
        let raw = raw.trim();
        let (base, token) = raw.split_once('?').unwrap_or((raw, ""));
        let problem = |problem: &str| RuleError::Option {
            provider: Provider::Azblob.display_name(),
            problem: format!("--sas-url `{base}?…`: {problem}"),
        };
        let Some(rest) = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
        else {
            return Err(problem(
                "the URL starts with https:// (or http:// for a local emulator)",
            ));
        };
        if token.is_empty() {
            return Err(problem("the URL has no signature (the part after `?`)"));
        }
        let scheme_len = base.len() - rest.len();
        let trimmed = rest.trim_end_matches('/');
        let Some((host_and_path, container)) = trimmed.rsplit_once('/') else {
            return Err(problem(
                "the URL does not name the container (a SAS URL for a container is needed)",
            ));
        };
        if container.is_empty() || host_and_path.is_empty() {
            return Err(problem("the URL does not name the container"));
        }
        if let Some(rule) = BucketRule::Azure.problem(container) {
            return Err(RuleError::BucketName {
                kind: "container",
                name: container.to_string(),
                rule,
            });
        }
        Ok(SasUrl {
            endpoint: format!("{}{host_and_path}", &base[..scheme_len]),
            container: container.to_string(),
            token: token.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_azure_and_emulator_urls() {
        let sas = SasUrl::parse("https://acct.blob.core.windows.net/photos?sv=2022&sig=SECRET")
            .expect("a container SAS URL");
        assert_eq!(sas.endpoint, "https://acct.blob.core.windows.net");
        assert_eq!(sas.container, "photos");
        assert_eq!(sas.token, "sv=2022&sig=SECRET");
        let local = SasUrl::parse("http://127.0.0.1:10000/devstoreaccount1/box/?sig=x")
            .expect("an emulator SAS URL");
        assert_eq!(local.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(local.container, "box");
    }

    #[test]
    fn refusals_never_show_the_signature() {
        for (raw, why) in [
            ("ftp://acct/photos?sig=SECRET", "starts with https://"),
            (
                "https://acct.blob.core.windows.net?sig=SECRET",
                "does not name the container",
            ),
            ("https://acct.blob.core.windows.net/photos", "no signature"),
            (
                "https://acct.blob.core.windows.net/Bad--Name?sig=SECRET",
                "container name",
            ),
        ] {
            let err = SasUrl::parse(raw).expect_err("refused").to_string();
            assert!(err.contains(why), "{raw}: {err}");
            assert!(!err.contains("SECRET"), "{err}");
        }
        let sas = SasUrl::parse("https://a.blob.core.windows.net/c1c?sig=SECRET").expect("valid");
        assert!(!format!("{sas:?}").contains("SECRET"));
    }
}
