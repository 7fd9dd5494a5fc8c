//! One directory login over the wire (ldap3): connect with TLS, find the user's DN, bind as
//! them with their password, read their entry (name, disabled flags, groups), hang up.
//!
//! Everything the directory sends is untrusted: entries are decoded without panicking
//! ([`entries`]), referrals are skipped, and a user filter that matches more than one entry
//! refuses the login rather than pick one.

use std::path::Path;
use std::sync::Arc;

use ldap3::{dn_escape, ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use super::{DirectoryConfig, DirectoryUser, Unavailable, Verdict};
use crate::{Error, Result};

/// LDAP result codes this module tells apart (RFC 4511, appendix A).
const INVALID_CREDENTIALS: u32 = 49;
/// Active Directory's diagnostic for a bind refused because the account is disabled
/// (`data 533`); expired (`701`, `532`) and locked (`775`) accounts also end up refused.
const AD_DISABLED: &str = "data 533";
/// Active Directory's `userAccountControl` bit of a disabled account (ACCOUNTDISABLE).
const AD_ACCOUNT_DISABLE: u64 = 0x2;

/// `ldaps` or `ldap` when `url` is `SCHEME://HOST[:PORT][/]`, else `None`.
pub(super) fn scheme_of(url: &str) -> Option<&'static str> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    let (name, port) = match host.strip_prefix('[') {
        Some(v6) => {
            let (name, after) = v6.split_once(']')?;
            match after {
                "" => (name, None),
                _ => (name, Some(after.strip_prefix(':')?)),
            }
        }
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    let name_ok = !name.is_empty() && !name.contains(['/', '?', '#', '@', ' ']);
    if !port_ok || !name_ok {
        return None;
    }
    match scheme.to_ascii_lowercase().as_str() {
        "ldaps" => Some("ldaps"),
        "ldap" => Some("ldap"),
        _ => None,
    }
}

/// Whether `filter` parses as an LDAP filter once its placeholders are filled in.
pub(super) fn is_filter(filter: &str) -> bool {
    let sample = filter.replace("{user}", "x").replace("{dn}", "cn=x");
    ldap3::parse_filter(sample).is_ok()
}

/// A rustls client config trusting the PEM certificates of `ca_file`, or the system's.
pub(super) fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let tls_err = |e: Box<dyn std::error::Error + Send + Sync>| Error::Tls {
                context: format!("[ldap] reading `ca_file` {}", path.display()),
                source: e,
            };
            let pem = std::fs::read(path).map_err(|e| tls_err(e.into()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots
                    .add(cert.map_err(|e| tls_err(e.into()))?)
                    .map_err(|e| tls_err(e.into()))?;
            }
            if roots.is_empty() {
                return Err(tls_err("it holds no PEM certificate".into()));
            }
        }
        None => {
            // Unreadable system certificates are skipped, as every TLS client does.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls {
            context: "[ldap] setting up TLS".into(),
            source: e.into(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The whole login; the caller bounds its time.
pub(super) async fn login(
    c: &DirectoryConfig,
    tls: &Arc<rustls::ClientConfig>,
    user: &str,
    password: &str,
) -> Result<Verdict, Unavailable> {
    let mut ldap = connect(c, tls).await?;
    let verdict = bind_and_read(c, &mut ldap, user, password).await;
    // Hanging up politely is a courtesy; the verdict stands either way.
    let _ = ldap.unbind().await;
    verdict
}

async fn connect(
    c: &DirectoryConfig,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Ldap, Unavailable> {
    let settings = LdapConnSettings::new()
        .set_conn_timeout(c.timeout)
        .set_starttls(c.starttls)
        .set_config(tls.clone());
    let (conn, ldap) = LdapConnAsync::with_settings(settings, &c.url)
        .await
        .map_err(|e| Unavailable(format!("could not reach the directory at {}: {e}", c.url)))?;
    ldap3::drive!(conn);
    Ok(ldap)
}

async fn bind_and_read(
    c: &DirectoryConfig,
    ldap: &mut Ldap,
    user: &str,
    password: &str,
) -> Result<Verdict, Unavailable> {
    let dn = match find_dn(c, ldap, user).await? {
        Ok(dn) => dn,
        Err(why) => return Ok(Verdict::Rejected { why }),
    };
    let bound = ldap
        .simple_bind(&dn, password)
        .await
        .map_err(|e| failed(c, "binding as the user", e))?;
    match bound.rc {
        0 => {}
        INVALID_CREDENTIALS if bound.text.contains(AD_DISABLED) => {
            return Ok(Verdict::Disabled {
                name: user.to_string(),
            })
        }
        INVALID_CREDENTIALS => {
            return Ok(Verdict::Rejected {
                why: "wrong password (or a locked account)".into(),
            })
        }
        rc => {
            return Ok(Verdict::Rejected {
                why: format!(
                    "the directory refused the bind (result {rc}: {})",
                    bound.text
                ),
            })
        }
    }
    read_user(c, ldap, user, dn).await
}

/// The user's DN: from the `user_dn` template, or a search (as the service account, or
/// anonymously). `Ok(Err(why))` when there is no such user.
async fn find_dn(
    c: &DirectoryConfig,
    ldap: &mut Ldap,
    user: &str,
) -> Result<Result<String, String>, Unavailable> {
    if let Some(template) = &c.user_dn {
        return Ok(Ok(template.replace("{user}", &dn_escape(user))));
    }
    if let (Some(dn), Some(pw)) = (&c.bind_dn, &c.bind_password) {
        ldap.simple_bind(dn, pw)
            .await
            .and_then(|r| r.success())
            .map_err(|e| failed(c, &format!("binding as the service account {dn}"), e))?;
    }
    let filter = c.user_filter.replace("{user}", &ldap_escape(user));
    let found = search(c, ldap, &c.base_dn, Scope::Subtree, &filter, &["1.1"]).await?;
    Ok(match found.as_slice() {
        [one] => Ok(one.dn.clone()),
        [] => Err("unknown user".into()),
        many => Err(format!(
            "`user_filter` matches {} entries for this name",
            many.len()
        )),
    })
}

/// Reads the bound user's entry: it must match the user filter, gives their cairn name,
/// and may say they are disabled; then their groups.
async fn read_user(
    c: &DirectoryConfig,
    ldap: &mut Ldap,
    user: &str,
    dn: String,
) -> Result<Verdict, Unavailable> {
    let filter = c.user_filter.replace("{user}", &ldap_escape(user));
    let mut attrs = vec![c.name_attribute.as_str(), "userAccountControl"];
    attrs.extend(c.group_attribute.as_deref());
    let entry = match search(c, ldap, &dn, Scope::Base, &filter, &attrs)
        .await?
        .pop()
    {
        Some(e) => e,
        None => {
            return Ok(Verdict::Rejected {
                why: format!("{dn} does not match `user_filter`"),
            })
        }
    };
    let Some(name) = first_value(&entry, &c.name_attribute) else {
        return Ok(Verdict::Rejected {
            why: format!("{dn} has no {}", c.name_attribute),
        });
    };
    if is_disabled(c, ldap, &entry).await? {
        return Ok(Verdict::Disabled { name });
    }
    let groups = groups_of(c, ldap, user, &entry).await?;
    Ok(Verdict::Accepted(DirectoryUser { name, dn, groups }))
}

/// Active Directory's ACCOUNTDISABLE bit, or a match of `disabled_filter`.
async fn is_disabled(
    c: &DirectoryConfig,
    ldap: &mut Ldap,
    entry: &SearchEntry,
) -> Result<bool, Unavailable> {
    let uac = first_value(entry, "userAccountControl").and_then(|v| v.trim().parse::<u64>().ok());
    if uac.is_some_and(|v| v & AD_ACCOUNT_DISABLE != 0) {
        return Ok(true);
    }
    let Some(filter) = &c.disabled_filter else {
        return Ok(false);
    };
    let hits = search(c, ldap, &entry.dn, Scope::Base, filter, &["1.1"]).await?;
    Ok(!hits.is_empty())
}

/// The DNs of the user's groups: the group attribute's values, and what the group filter
/// finds; without either, none.
async fn groups_of(
    c: &DirectoryConfig,
    ldap: &mut Ldap,
    user: &str,
    entry: &SearchEntry,
) -> Result<Vec<String>, Unavailable> {
    let mut groups: Vec<String> = c
        .group_attribute
        .as_ref()
        .and_then(|a| attr(entry, a))
        .cloned()
        .unwrap_or_default();
    if let Some(filter) = &c.group_filter {
        let filter = filter
            .replace("{dn}", &ldap_escape(entry.dn.as_str()))
            .replace("{user}", &ldap_escape(user));
        let base = c.group_base.as_deref().unwrap_or(&c.base_dn);
        let found = search(c, ldap, base, Scope::Subtree, &filter, &["1.1"]).await?;
        groups.extend(found.into_iter().map(|e| e.dn));
    }
    Ok(groups)
}

/// The entries a search returns; a search of a base that does not exist finds nothing.
async fn search(
    c: &DirectoryConfig,
    ldap: &mut Ldap,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
) -> Result<Vec<SearchEntry>, Unavailable> {
    const NO_SUCH_OBJECT: u32 = 32;
    let what = || format!("searching {base} for {filter}");
    let result = ldap
        .search(base, scope, filter, attrs)
        .await
        .map_err(|e| failed(c, &what(), e))?;
    if result.1.rc == NO_SUCH_OBJECT {
        return Ok(Vec::new());
    }
    let (raw, _) = result.success().map_err(|e| failed(c, &what(), e))?;
    entries(raw).ok_or_else(|| {
        Unavailable(format!(
            "the directory at {} answered {} with a malformed entry",
            c.url,
            what()
        ))
    })
}

/// Decodes search entries, skipping referrals; `None` if one is malformed. ldap3's decoder
/// panics on a malformed entry, so it runs under `catch_unwind`: a hostile directory must
/// not take the server down.
fn entries(raw: Vec<ldap3::ResultEntry>) -> Option<Vec<SearchEntry>> {
    raw.into_iter()
        .filter(|e| !e.is_ref() && !e.is_intermediate())
        .map(|e| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(e)))
                .ok()
        })
        .collect()
}

/// An attribute's values, whatever the case of its name in the answer.
fn attr<'a>(entry: &'a SearchEntry, name: &str) -> Option<&'a Vec<String>> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn first_value(entry: &SearchEntry, name: &str) -> Option<String> {
    attr(entry, name).and_then(|v| v.first()).cloned()
}

/// A failed conversation: what was being done, with which directory. Never holds a
/// password: ldap3's errors carry result codes and server text, not requests.
fn failed(c: &DirectoryConfig, what: &str, e: ldap3::LdapError) -> Unavailable {
    Unavailable(format!("directory {}: {what}: {e}", c.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ldap_urls_with_a_host_are_taken() {
        assert_eq!(scheme_of("ldaps://dir.example.com"), Some("ldaps"));
        assert_eq!(scheme_of("LDAPS://dir.example.com:636/"), Some("ldaps"));
        assert_eq!(scheme_of("ldap://127.0.0.1:389"), Some("ldap"));
        assert_eq!(scheme_of("ldaps://"), None);
        assert_eq!(scheme_of("ldaps://dir:0"), None);
        assert_eq!(scheme_of("ldaps://dir:99999"), None);
        assert_eq!(scheme_of("ldaps://dir/dc=example"), None);
        assert_eq!(scheme_of("ldapi://%2fvar%2frun"), None);
        assert_eq!(scheme_of("https://dir"), None);
    }

    #[test]
    fn filters_are_checked_with_their_placeholders_filled_in() {
        assert!(is_filter("(uid={user})"));
        assert!(is_filter("(&(objectClass=groupOfNames)(member={dn}))"));
        assert!(!is_filter("(uid={user}))("));
        assert!(!is_filter("(&(uid={user})"));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = tls_config(Some(&path)).expect_err("refused").to_string();
        assert!(err.contains("ca.pem"), "{err}");
        let missing = tls_config(Some(&dir.path().join("none.pem")))
            .expect_err("refused")
            .to_string();
        assert!(missing.contains("none.pem"), "{missing}");
    }
}
