//! Providers that need an account (no local server for them here: B2, OSS, COS, Dropbox,
//! Google Drive, OneDrive, Yandex Disk): their configuration and request-level rules, without
//! network. A connection built from the provider table's options opens an OpenDAL operator of
//! the right service (OpenDAL builds without a request; a login happens on first use), and what
//! a connection lacks or gives wrongly is refused with a message naming it, never a secret.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::connection::{operator, CloudConnection, Secrets};
use crate::provider::{Need, OnedriveKind, Provider};
use crate::transport::Counters;

/// The providers no local server stands in for.
const ACCOUNT_ONLY: &[Provider] = &[
    Provider::B2,
    Provider::Oss,
    Provider::Cos,
    Provider::Dropbox,
    Provider::Gdrive,
    Provider::Onedrive(OnedriveKind::Personal),
    Provider::Onedrive(OnedriveKind::Business),
    Provider::YandexDisk,
];

/// A bucket name every account provider's rules allow (COS wants its -APPID suffix).
const BUCKET: &str = "cairntest-1250000000";

/// A value a provider's rules take for `opendal_key`.
fn value_for(opendal_key: &str) -> String {
    match opendal_key {
        "endpoint" => "https://storage.example.com".into(),
        "bucket" => BUCKET.into(),
        "bucket_id" => "4a48fe8875c6214145260818".into(),
        "region" => "ap-guangzhou".into(),
        other => format!("value-of-{other}-1234"),
    }
}

/// A connection of `p` with every option its table gives OpenDAL, secrets apart.
pub(crate) fn full_connection(p: Provider) -> (CloudConnection, Secrets) {
    let mut options = BTreeMap::new();
    let mut secrets = Secrets::default();
    let mut names = Vec::new();
    for o in p.spec().options {
        let Some(key) = o.opendal else { continue };
        if o.key.is_secret() {
            secrets.0.insert(key.to_string(), value_for(key));
            names.push(key.to_string());
        } else {
            options.insert(key.to_string(), value_for(key));
        }
    }
    let conn = CloudConnection {
        provider: p.id().to_string(),
        options,
        secrets: names,
        prompt: Vec::new(),
        ca_file: None,
        limit_upload: None,
        limit_download: None,
        public_only: false,
    };
    (conn, secrets)
}

#[test]
fn every_account_provider_builds_its_service_from_the_table_options() {
    for &p in ACCOUNT_ONLY {
        let (conn, secrets) = full_connection(p);
        let op = operator(
            &conn,
            &secrets,
            "task/folder",
            Arc::new(Counters::default()),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", p.id()));
        let info = op.info();
        assert_eq!(info.scheme(), p.scheme(), "{}", p.id());
        assert!(
            info.root().trim_end_matches('/').ends_with("task/folder"),
            "{}: root {}",
            p.id(),
            info.root()
        );
        // The services that name their operator after the bucket (not B2's) name this one.
        if let Some(bucket) = conn
            .options
            .get("bucket")
            .filter(|_| !info.name().is_empty())
        {
            assert_eq!(info.name(), bucket.as_str(), "{}: bucket", p.id());
        }
    }
}

#[test]
fn every_required_option_of_an_account_provider_is_named_when_missing() {
    for &p in ACCOUNT_ONLY {
        let required: Vec<_> = p
            .spec()
            .options
            .iter()
            .filter(|o| o.need == Need::Required)
            .map(|o| o.key)
            .collect();
        assert_eq!(p.check_options(&required), Ok(()), "{}", p.id());
        for missing in &required {
            let given: Vec<_> = required.iter().copied().filter(|k| k != missing).collect();
            let refused = p
                .check_options(&given)
                .expect_err("a required option is missing")
                .to_string();
            assert!(
                refused.contains(&missing.to_string()),
                "{}: {refused} does not name {missing}",
                p.id()
            );
        }
    }
}

#[test]
fn a_missing_secret_is_named_and_no_secret_is_shown() {
    for &p in ACCOUNT_ONLY {
        let (conn, mut secrets) = full_connection(p);
        let Some(name) = conn.secrets.first().cloned() else {
            continue;
        };
        let value = secrets.0.remove(&name).expect("given above");
        let refused = operator(&conn, &secrets, "", Arc::new(Counters::default()))
            .expect_err("a secret is missing");
        assert!(refused.contains(&name), "{}: {refused}", p.id());
        assert!(!refused.contains(&value), "{}: a secret shown", p.id());
        for other in secrets.0.values() {
            assert!(
                !refused.contains(other.as_str()),
                "{}: a secret shown",
                p.id()
            );
        }
    }
}

#[test]
fn bucket_names_the_account_providers_refuse_are_refused_before_any_request() {
    // (provider, a name its rules refuse)
    let cases = [
        (Provider::B2, "b2-reserved"),
        (Provider::B2, "ab"),
        (Provider::Oss, "Upper"),
        (Provider::Oss, "-leading"),
        (Provider::Cos, "no_underscores"),
    ];
    for (p, name) in cases {
        let refused = p.check_bucket(name, None).expect_err(name).to_string();
        assert!(!refused.is_empty(), "{}: {name}", p.id());
    }
    for p in [Provider::B2, Provider::Oss, Provider::Cos] {
        assert_eq!(
            p.check_bucket(BUCKET, None).map_err(|e| e.to_string()),
            Ok(()),
            "{}",
            p.id()
        );
    }
}
