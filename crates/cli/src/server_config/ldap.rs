//! The `[ldap]` table of the server config: directory logins (docs/deployment.md,
//! "Directory logins"). Values are checked for type here and for meaning by
//! `cairn_server::directory::Directory::new` when the server starts, so both the file and
//! any other source of a config meet the same rules.
//!
//! ```toml
//! [ldap]
//! url = "ldaps://dc1.corp.example.com"
//! base_dn = "dc=corp,dc=example,dc=com"
//! domain = "CORP"
//! bind_dn = "cn=cairn,ou=services,dc=corp,dc=example,dc=com"
//! bind_password = "..."
//! user_filter = "(&(objectClass=user)(sAMAccountName={user}))"
//! name_attribute = "sAMAccountName"
//! group_attribute = "memberOf"
//! admin_group = "cn=cairn-admins,ou=groups,dc=corp,dc=example,dc=com"
//! [[ldap.group]]
//! group = "staff"
//! folder = "team"
//! access = "rw"
//! ```

use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_protocol::Access;
use cairn_server::directory::{DirectoryConfig, GroupAccess};
use toml_edit::{Item, Table};

const KEYS: &str = "url, starttls, ca_file, base_dn, domain, user_dn, bind_dn, bind_password, \
                    user_filter, name_attribute, group_attribute, group_filter, group_base, \
                    disabled_filter, admin_group, timeout, [[ldap.group]]";

/// Reads `[ldap]`.
///
/// # Errors
/// An unknown key, a value of the wrong type, a missing `url` or `base_dn`, or a bad
/// `[[ldap.group]]`; the message names the key and never shows `bind_password`'s value.
pub fn directory(item: &Item) -> Result<DirectoryConfig> {
    let Some(table) = item.as_table() else {
        bail!("`ldap` must be a table ([ldap])");
    };
    let mut c = DirectoryConfig::default();
    let (mut url, mut base_dn) = (None, None);
    for (key, value) in table.iter() {
        let text = || text(key, value);
        match key {
            "url" => url = Some(text()?),
            "base_dn" => base_dn = Some(text()?),
            "starttls" => {
                c.starttls = value
                    .as_bool()
                    .with_context(|| "`ldap.starttls` must be true or false")?;
            }
            "ca_file" => c.ca_file = Some(text()?.into()),
            "domain" => c.domain = Some(text()?),
            "user_dn" => c.user_dn = Some(text()?),
            "bind_dn" => c.bind_dn = Some(text()?),
            "bind_password" => c.bind_password = Some(text()?),
            "user_filter" => c.user_filter = text()?,
            "name_attribute" => c.name_attribute = text()?,
            "group_attribute" => c.group_attribute = Some(text()?),
            "group_filter" => c.group_filter = Some(text()?),
            "group_base" => c.group_base = Some(text()?),
            "disabled_filter" => c.disabled_filter = Some(text()?),
            "admin_group" => c.admin_group = Some(text()?),
            "timeout" => c.timeout = seconds(key, value)?,
            "group" => c.groups = groups(value)?,
            other => bail!("unknown key `ldap.{other}` (known: {KEYS})"),
        }
    }
    c.url = url.context("[ldap] needs `url` (ldaps://HOST or ldap://HOST with starttls)")?;
    c.base_dn = base_dn.context("[ldap] needs `base_dn`")?;
    Ok(c)
}

/// A string value; the value itself is never echoed (it may be a password).
fn text(key: &str, item: &Item) -> Result<String> {
    match item.as_str() {
        Some(s) => Ok(s.to_string()),
        None => bail!("`ldap.{key}` must be a string"),
    }
}

fn seconds(key: &str, item: &Item) -> Result<Duration> {
    match item.as_integer() {
        Some(n) if n > 0 => Ok(Duration::from_secs(n as u64)),
        _ => bail!("`ldap.{key}` must be a number of seconds above 0"),
    }
}

/// `[[ldap.group]]` tables: `group`, `folder` and `access` (`rw` or `ro`).
fn groups(item: &Item) -> Result<Vec<GroupAccess>> {
    let Some(list) = item.as_array_of_tables() else {
        bail!("`ldap.group` must be [[ldap.group]] tables with group, folder and access");
    };
    list.iter().enumerate().map(|(i, t)| group(i, t)).collect()
}

fn group(i: usize, t: &Table) -> Result<GroupAccess> {
    let field = |k: &str| -> Result<String> {
        t.get(k)
            .and_then(Item::as_str)
            .map(str::to_string)
            .with_context(|| format!("[[ldap.group]] number {}: `{k}` must be a string", i + 1))
    };
    for (key, _) in t.iter() {
        if !matches!(key, "group" | "folder" | "access") {
            bail!(
                "[[ldap.group]] number {}: unknown key `{key}` (known: group, folder, access)",
                i + 1
            );
        }
    }
    let access = field("access")?;
    Ok(GroupAccess {
        group: field("group")?,
        folder: field("folder")?,
        access: Access::parse(&access).with_context(|| {
            format!(
                "[[ldap.group]] number {}: access {access:?}: use rw or ro",
                i + 1
            )
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml_edit::DocumentMut;

    fn parse(text: &str) -> Result<DirectoryConfig> {
        let doc: DocumentMut = text.parse()?;
        directory(doc.get("ldap").context("no [ldap]")?)
    }

    #[test]
    fn every_key_is_read_and_the_password_is_not_shown() {
        let c = parse(
            r#"
            [ldap]
            url = "ldap://dir.example.com"
            starttls = true
            ca_file = "/etc/cairn/ldap-ca.pem"
            base_dn = "dc=example,dc=com"
            domain = "EXAMPLE"
            bind_dn = "cn=cairn,dc=example,dc=com"
            bind_password = "TOPSECRET"
            user_filter = "(sAMAccountName={user})"
            name_attribute = "sAMAccountName"
            group_attribute = "memberOf"
            group_filter = "(member={dn})"
            group_base = "ou=groups,dc=example,dc=com"
            disabled_filter = "(employeeType=disabled)"
            admin_group = "admins"
            timeout = 3
            [[ldap.group]]
            group = "staff"
            folder = "team"
            access = "rw"
            [[ldap.group]]
            group = "cn=guests,dc=example,dc=com"
            folder = "team"
            access = "ro"
            "#,
        )
        .expect("parses");
        assert!(c.starttls);
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.groups.len(), 2);
        assert_eq!(c.groups[1].access, Access::Ro);
        assert_eq!(c.name_attribute, "sAMAccountName");
        assert_eq!(c.bind_password.as_deref(), Some("TOPSECRET"));
        assert!(!format!("{c:?}").contains("TOPSECRET"));
    }

    #[test]
    fn mistakes_are_named_without_secrets() {
        let err = |t: &str| format!("{:#}", parse(t).expect_err(t));
        let base = "[ldap]\nurl = \"ldaps://d\"\nbase_dn = \"dc=d\"\n";
        assert!(err("[ldap]\nbase_dn = \"dc=d\"").contains("needs `url`"));
        assert!(err("[ldap]\nurl = \"ldaps://d\"").contains("needs `base_dn`"));
        let e = err(&format!("{base}bind_pasword = \"TOPSECRET\""));
        assert!(
            e.contains("unknown key `ldap.bind_pasword`") && !e.contains("TOPSECRET"),
            "{e}"
        );
        assert!(err(&format!("{base}bind_password = 7")).contains("must be a string"));
        assert!(err(&format!("{base}starttls = \"yes\"")).contains("true or false"));
        assert!(err(&format!("{base}timeout = 0")).contains("above 0"));
        let g = "[[ldap.group]]\ngroup = \"staff\"\nfolder = \"team\"\n";
        assert!(err(&format!("{base}{g}access = \"write\"")).contains("use rw or ro"));
        assert!(err(&format!("{base}{g}")).contains("`access` must be a string"));
        assert!(err(&format!("{base}{g}access = \"rw\"\ncolour = 1")).contains("unknown key"));
    }
}

#[cfg(test)]
mod file_tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::server_config::ServerConfig;

    #[test]
    fn a_service_account_password_needs_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.toml");
        let text = "[ldap]\nurl = \"ldaps://d\"\nbase_dn = \"dc=d\"\n\
                    bind_dn = \"cn=svc,dc=d\"\nbind_password = \"TOPSECRET\"\n";
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = format!(
            "{:#}",
            ServerConfig::load(&path).expect_err("readable by others")
        );
        assert!(e.contains("chmod 600") && !e.contains("TOPSECRET"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let c = ServerConfig::load(&path).expect("private file");
        assert!(c.directory.is_some());
    }
}
