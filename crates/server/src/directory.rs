//! Directory logins: people of an LDAP directory or an Active Directory domain log in with
//! their directory password, and their groups there decide their folder access here.
//!
//! [`DirectoryConfig`] is what the server's config file says (`[ldap]`, docs/deployment.md);
//! [`Directory`] checks it once at start and then answers [`Directory::login`], which the
//! one login function every door goes through (`api/authn.rs`) calls for names that
//! [`Directory::parse_name`] gives to the directory. The network part is in
//! `directory/ldap.rs`; turning groups into grants is [`Directory::membership`], pure code;
//! writing the account and grants is `Meta::directory_login` (`meta/directory.rs`).
//!
//! Invariants callers rely on:
//! - A password only ever travels inside TLS whose certificate chain and host name were
//!   checked: `ldap://` without StartTLS is refused when the config is read, and a StartTLS
//!   that fails ends the attempt.
//! - An empty password never reaches the directory (LDAP takes a simple bind without one as an
//!   anonymous bind, which "succeeds").
//! - Every attempt ends within [`DirectoryConfig::timeout`], and at most
//!   [`MAX_CONCURRENT_LOGINS`] run at once, so an unreachable directory costs bounded time
//!   and holds none of the password-hashing slots local users need.
//! - Passwords appear in no log line, error or `Debug` output.
//!
//! The key choice: each login binds as the user (the directory checks the password, its
//! lockout and password policies apply), instead of reading password hashes with a service
//! account and checking them here, which would need far more trust in cairn.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_protocol::{is_valid_name, Access};

use crate::{Error, Result};

mod ldap;

/// Directory logins running at once; more wait (within the timeout) for a turn.
pub const MAX_CONCURRENT_LOGINS: usize = 8;

/// The `[ldap]` table of the server config.
#[derive(Clone)]
pub struct DirectoryConfig {
    /// `ldaps://host[:port]`, or `ldap://host[:port]` with [`Self::starttls`].
    pub url: String,
    pub starttls: bool,
    /// PEM certificates to trust for the directory; `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// Where users (and, by default, groups) are searched; also names the directory in the
    /// `users.directory` column and in the `user@base-dn` login form.
    pub base_dn: String,
    /// The `DOMAIN` of `DOMAIN\user` logins (Active Directory's NetBIOS domain name).
    pub domain: Option<String>,
    /// Bind straight as this DN, `{user}` replaced by the escaped user name; no search.
    pub user_dn: Option<String>,
    /// The service account that searches for the user's DN; with neither this nor
    /// [`Self::user_dn`], the search is anonymous.
    pub bind_dn: Option<String>,
    /// The service account's password (a secret: never shown by `Debug`).
    pub bind_password: Option<String>,
    /// Finds the user under the base DN; `{user}` is the escaped user name.
    pub user_filter: String,
    /// The attribute whose value becomes the cairn user name.
    pub name_attribute: String,
    /// An attribute of the user's entry that lists their groups' DNs (`memberOf`).
    pub group_attribute: Option<String>,
    /// A search for the user's groups; `{dn}` is the user's DN, `{user}` their name.
    pub group_filter: Option<String>,
    /// Where [`Self::group_filter`] searches; the base DN by default.
    pub group_base: Option<String>,
    /// A filter that, when the user's entry matches it, means the account is disabled.
    pub disabled_filter: Option<String>,
    /// Members of this group are cairn administrators; the others are not.
    pub admin_group: Option<String>,
    /// Which groups give which folder access.
    pub groups: Vec<GroupAccess>,
    /// Bound on one login's whole conversation with the directory, connecting included.
    pub timeout: Duration,
}

/// Members of `group` get `access` to `folder`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupAccess {
    /// A group DN, or a group's common name (the value of the first part of its DN).
    pub group: String,
    pub folder: String,
    pub access: Access,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            url: String::new(),
            starttls: false,
            ca_file: None,
            base_dn: String::new(),
            domain: None,
            user_dn: None,
            bind_dn: None,
            bind_password: None,
            user_filter: "(uid={user})".into(),
            name_attribute: "uid".into(),
            group_attribute: None,
            group_filter: None,
            group_base: None,
            disabled_filter: None,
            admin_group: None,
            groups: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for DirectoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryConfig")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("ca_file", &self.ca_file)
            .field("base_dn", &self.base_dn)
            .field("domain", &self.domain)
            .field("user_dn", &self.user_dn)
            .field("bind_dn", &self.bind_dn)
            .field(
                "bind_password",
                &self.bind_password.as_ref().map(|_| "<redacted>"),
            )
            .field("user_filter", &self.user_filter)
            .field("name_attribute", &self.name_attribute)
            .field("group_attribute", &self.group_attribute)
            .field("group_filter", &self.group_filter)
            .field("group_base", &self.group_base)
            .field("disabled_filter", &self.disabled_filter)
            .field("admin_group", &self.admin_group)
            .field("groups", &self.groups)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Who a login name is for.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginName<'a> {
    /// `DOMAIN\user` or `user@base-dn`: only the directory's user.
    Directory(&'a str),
    /// A plain name: the local account of that name if there is one, else the directory's.
    Either(&'a str),
}

impl LoginName<'_> {
    /// The name the login throttle counts failures under: every form of one user shares it,
    /// in lower case (directories match names without regard to case), so switching forms
    /// or case gains a guesser nothing.
    pub fn throttle_key(&self) -> String {
        match self {
            LoginName::Directory(name) | LoginName::Either(name) => name.to_lowercase(),
        }
    }
}

/// What the directory said about a login.
#[derive(Debug)]
pub enum Verdict {
    /// The password is right and the account may log in.
    Accepted(DirectoryUser),
    /// Unknown user or wrong password (the directory does not say which, nor do we); also a
    /// locked account, which the directory refuses like a wrong password.
    Rejected { why: String },
    /// The password is right but the account is disabled.
    Disabled { name: String },
}

/// A directory user who just proved their password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// Their cairn user name ([`DirectoryConfig::name_attribute`]).
    pub name: String,
    pub dn: String,
    /// The DNs of their groups.
    pub groups: Vec<String>,
}

/// What a directory user's groups give them, applied at each login.
#[derive(Debug, PartialEq, Eq)]
pub struct Membership {
    /// Whether they are an administrator; `None` when no admin group is configured (then the
    /// role is left as an administrator set it).
    pub admin: Option<bool>,
    /// Every folder a mapping names, with the access their groups give (`None`: no access).
    pub grants: Vec<(String, Option<Access>)>,
}

/// The directory could not answer: unreachable, TLS refused, a timeout, or a setting it
/// rejected. Directory logins fail with this message; local logins go on.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checked [`DirectoryConfig`], ready to log people in.
pub struct Directory {
    config: DirectoryConfig,
    /// [`DirectoryConfig::base_dn`], normalised: the `users.directory` value of its users.
    id: String,
    tls: Arc<rustls::ClientConfig>,
    turns: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// Checks `config` and loads the certificates it trusts.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a URL that is not `ldaps://` or `ldap://` with StartTLS, an
    /// empty base DN, both or neither halves of a service account, a filter without its
    /// placeholder, a bad mapping; [`Error::Tls`] when the CA file cannot be read or holds no
    /// certificate. Each message names the key.
    pub fn new(config: DirectoryConfig) -> Result<Directory> {
        check(&config)?;
        let tls = ldap::tls_config(config.ca_file.as_deref())?;
        Ok(Directory {
            id: normalize_dn(&config.base_dn),
            tls,
            turns: tokio::sync::Semaphore::new(MAX_CONCURRENT_LOGINS),
            config,
        })
    }

    /// The value of `users.directory` for this directory's users.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// Which account `typed` names: `DOMAIN\user` (the configured domain, any case),
    /// `user@base-dn` (the base DN, or the DNS name its `dc=` parts spell), or a plain name.
    /// `None` for a `\` or `@` form of another domain: no account has such a name (local
    /// names are letters, digits, `.`, `_` and `-`).
    pub fn parse_name<'a>(&self, typed: &'a str) -> Option<LoginName<'a>> {
        if let Some((domain, user)) = typed.split_once('\\') {
            let ours = self
                .config
                .domain
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case(domain));
            return (ours && !user.is_empty()).then_some(LoginName::Directory(user));
        }
        if let Some((user, suffix)) = typed.rsplit_once('@') {
            let ours = normalize_dn(suffix) == self.id
                || dns_name(&self.id).is_some_and(|d| d.eq_ignore_ascii_case(suffix));
            return (ours && !user.is_empty()).then_some(LoginName::Directory(user));
        }
        Some(LoginName::Either(typed))
    }

    /// Checks `user`'s `password` with the directory and reads their groups.
    ///
    /// # Errors
    /// [`Unavailable`] when the directory cannot be reached or asked within the timeout (a
    /// wrong password is a [`Verdict`], not an error).
    pub async fn login(&self, user: &str, password: &str) -> Result<Verdict, Unavailable> {
        if password.is_empty() {
            return Ok(Verdict::Rejected {
                why: "empty password".into(),
            });
        }
        if user.len() > 256 || user.chars().any(char::is_control) {
            return Ok(Verdict::Rejected {
                why: "not a user name".into(),
            });
        }
        let limit = self.config.timeout;
        let url = &self.config.url;
        let work = async {
            let _turn = self
                .turns
                .acquire()
                .await
                .map_err(|_| Unavailable("directory logins are shut down".into()))?;
            ldap::login(&self.config, &self.tls, user, password).await
        };
        match tokio::time::timeout(limit, work).await {
            Ok(verdict) => verdict,
            Err(_) => Err(Unavailable(format!(
                "the directory at {url} did not answer within {limit:?}"
            ))),
        }
    }

    /// The admin role and folder grants `groups` give.
    pub fn membership(&self, groups: &[String]) -> Membership {
        let member = |wanted: &str| groups.iter().any(|g| group_matches(wanted, g));
        let admin = self.config.admin_group.as_deref().map(member);
        let mut grants: Vec<(String, Option<Access>)> = Vec::new();
        for m in &self.config.groups {
            let given = member(&m.group).then_some(m.access);
            match grants.iter_mut().find(|(f, _)| *f == m.folder) {
                Some((_, best)) => *best = stronger(*best, given),
                None => grants.push((m.folder.clone(), given)),
            }
        }
        Membership { admin, grants }
    }
}

fn stronger(a: Option<Access>, b: Option<Access>) -> Option<Access> {
    match (a, b) {
        (Some(Access::Rw), _) | (_, Some(Access::Rw)) => Some(Access::Rw),
        (Some(Access::Ro), _) | (_, Some(Access::Ro)) => Some(Access::Ro),
        _ => None,
    }
}

/// Whether the group DN `dn` is the configured `wanted`: a whole DN, or a common name.
fn group_matches(wanted: &str, dn: &str) -> bool {
    if wanted.contains('=') {
        return normalize_dn(wanted) == normalize_dn(dn);
    }
    first_rdn_value(dn).is_some_and(|cn| cn.eq_ignore_ascii_case(wanted.trim()))
}

/// The value of a DN's first part: `staff` of `cn=staff,ou=groups,dc=example,dc=com`.
fn first_rdn_value(dn: &str) -> Option<&str> {
    let first = dn.split(',').next()?;
    Some(first.split_once('=')?.1.trim())
}

/// A DN in one spelling: lower case, no spaces around `,` and `=`. Enough to compare the DNs
/// people type in a config file with the ones a directory returns (escaped characters are
/// left as they are).
pub fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| match rdn.split_once('=') {
            Some((k, v)) => format!("{}={}", k.trim(), v.trim()),
            None => rdn.trim().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// `example.com` of `dc=example,dc=com`, when every part of the DN is a `dc=`.
fn dns_name(normalized: &str) -> Option<String> {
    let labels: Option<Vec<&str>> = normalized
        .split(',')
        .map(|rdn| rdn.strip_prefix("dc="))
        .collect();
    labels.map(|l| l.join("."))
}

fn check(c: &DirectoryConfig) -> Result<()> {
    let bad = |msg: String| Err(Error::Invalid(format!("[ldap] {msg}")));
    match ldap::scheme_of(&c.url) {
        Some("ldaps") if c.starttls => {
            return bad(format!(
                "`url` {} is ldaps:// already; starttls is for ldap:// URLs",
                c.url
            ))
        }
        Some("ldaps") => {}
        Some("ldap") if c.starttls => {}
        Some("ldap") => {
            return bad(format!(
                "`url` {} would send passwords in clear text: use ldaps://, or set \
                 starttls = true",
                c.url
            ))
        }
        _ => {
            return bad(format!(
                "`url` {:?} is not ldaps://HOST[:PORT] or ldap://HOST[:PORT]",
                c.url
            ))
        }
    }
    if c.base_dn.trim().is_empty() {
        return bad("`base_dn` is missing".into());
    }
    if c.user_dn.is_some() && c.bind_dn.is_some() {
        return bad(
            "give `user_dn` (bind as the user) or `bind_dn` (search first), not both".into(),
        );
    }
    if c.bind_dn.is_some() != c.bind_password.is_some() {
        return bad("`bind_dn` and `bind_password` go together".into());
    }
    if c.bind_password.as_deref() == Some("") {
        return bad("`bind_password` is empty (an empty password binds anonymously)".into());
    }
    let placeholders = [
        ("user_dn", c.user_dn.as_deref(), "{user}"),
        ("user_filter", Some(c.user_filter.as_str()), "{user}"),
    ];
    for (key, value, placeholder) in placeholders {
        if value.is_some_and(|v| !v.contains(placeholder)) {
            return bad(format!("`{key}` must contain {placeholder}"));
        }
    }
    let filters = [
        ("user_filter", Some(c.user_filter.as_str())),
        ("group_filter", c.group_filter.as_deref()),
        ("disabled_filter", c.disabled_filter.as_deref()),
    ];
    for (key, value) in filters {
        if let Some(f) = value.filter(|f| !ldap::is_filter(f)) {
            return bad(format!("`{key}` {f:?} is not an LDAP filter"));
        }
    }
    if c.timeout.is_zero() {
        return bad("`timeout` must be more than 0 seconds".into());
    }
    for m in &c.groups {
        if !is_valid_name(&m.folder) {
            return bad(format!(
                "group {}: {:?} is not a folder name",
                m.group, m.folder
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(edit: impl FnOnce(&mut DirectoryConfig)) -> Directory {
        let mut c = DirectoryConfig {
            url: "ldaps://dir.example.com".into(),
            base_dn: "DC=Example, DC=com".into(),
            domain: Some("EXAMPLE".into()),
            ..DirectoryConfig::default()
        };
        edit(&mut c);
        Directory::new(c).expect("a valid config")
    }

    #[test]
    fn the_login_forms_of_the_seeds_name_the_directory_user() {
        let d = directory(|_| {});
        assert_eq!(d.id(), "dc=example,dc=com");
        let dir = |n| Some(LoginName::Directory(n));
        assert_eq!(d.parse_name("EXAMPLE\\alice"), dir("alice"));
        assert_eq!(d.parse_name("example\\alice"), dir("alice"));
        assert_eq!(d.parse_name("alice@dc=example,dc=com"), dir("alice"));
        assert_eq!(d.parse_name("alice@DC=Example, DC=Com"), dir("alice"));
        assert_eq!(d.parse_name("alice@example.com"), dir("alice"));
        assert_eq!(d.parse_name("alice"), Some(LoginName::Either("alice")));
        assert_eq!(d.parse_name("OTHER\\alice"), None);
        assert_eq!(d.parse_name("alice@dc=other,dc=com"), None);
        assert_eq!(d.parse_name("EXAMPLE\\"), None);
        assert_eq!(d.parse_name("@example.com"), None);
        let key = |typed| d.parse_name(typed).map(|n| n.throttle_key());
        assert_eq!(key("EXAMPLE\\Alice"), key("alice@example.com"));
        assert_eq!(key("ALICE"), key("alice@example.com"));
    }

    #[test]
    fn groups_give_the_strongest_access_of_any_mapping_and_no_access_otherwise() {
        let d = directory(|c| {
            c.admin_group = Some("cn=Admins,ou=groups,dc=example,dc=com".into());
            c.groups = vec![
                GroupAccess {
                    group: "staff".into(),
                    folder: "team".into(),
                    access: Access::Ro,
                },
                GroupAccess {
                    group: "CN=Editors, OU=groups, DC=example, DC=com".into(),
                    folder: "team".into(),
                    access: Access::Rw,
                },
                GroupAccess {
                    group: "board".into(),
                    folder: "minutes".into(),
                    access: Access::Rw,
                },
            ];
        });
        let staff = "cn=staff,ou=groups,dc=example,dc=com".to_string();
        let editors = "cn=editors,ou=groups,dc=example,dc=com".to_string();
        let admins = "cn=admins,ou=groups,dc=example,dc=com".to_string();
        assert_eq!(
            d.membership(std::slice::from_ref(&staff)),
            Membership {
                admin: Some(false),
                grants: vec![("team".into(), Some(Access::Ro)), ("minutes".into(), None)],
            }
        );
        assert_eq!(
            d.membership(&[editors, staff, admins]),
            Membership {
                admin: Some(true),
                grants: vec![("team".into(), Some(Access::Rw)), ("minutes".into(), None)],
            }
        );
        assert_eq!(directory(|_| {}).membership(&[]).admin, None);
    }

    #[test]
    fn a_config_that_would_leak_or_confuse_is_refused_by_name() {
        let refused = |edit: fn(&mut DirectoryConfig)| {
            let mut c = DirectoryConfig {
                url: "ldaps://dir.example.com:636".into(),
                base_dn: "dc=example,dc=com".into(),
                ..DirectoryConfig::default()
            };
            edit(&mut c);
            Directory::new(c).expect_err("refused").to_string()
        };
        assert!(refused(|c| c.url = "ldap://dir.example.com".into()).contains("clear text"));
        assert!(refused(|c| c.url = "http://dir".into()).contains("not ldaps://"));
        assert!(refused(|c| c.url = "ldaps://".into()).contains("not ldaps://"));
        assert!(refused(|c| c.starttls = true).contains("ldaps:// already"));
        assert!(refused(|c| c.base_dn = " ".into()).contains("base_dn"));
        assert!(refused(|c| c.bind_dn = Some("cn=svc".into())).contains("go together"));
        assert!(refused(|c| c.user_filter = "(uid=alice)".into()).contains("{user}"));
        assert!(refused(|c| c.group_filter = Some("(member={dn}".into())).contains("group_filter"));
        let c = DirectoryConfig {
            url: "ldap://dir.example.com".into(),
            starttls: true,
            base_dn: "dc=example,dc=com".into(),
            bind_dn: Some("cn=svc,dc=example,dc=com".into()),
            bind_password: Some("TOPSECRET".into()),
            ..DirectoryConfig::default()
        };
        let d = Directory::new(c).expect("StartTLS is fine");
        assert!(!format!("{d:?}").contains("TOPSECRET"));
    }

    #[tokio::test]
    async fn an_empty_password_never_reaches_the_directory() {
        // Port 9 on loopback: nothing answers there, so reaching out would be Unavailable.
        let d = directory(|c| c.url = "ldaps://127.0.0.1:9".into());
        let verdict = d.login("alice", "").await.expect("no network needed");
        assert!(matches!(verdict, Verdict::Rejected { .. }), "{verdict:?}");
    }
}
