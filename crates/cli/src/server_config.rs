//! `cairn server run --config FILE`: the server's settings in a small TOML file, each key the
//! same as a `server run` option (docs/deployment.md lists them). Options given on the command
//! line win over the file.
//!
//! ```toml
//! data = "/srv/cairn"
//! listen = ["0.0.0.0:8443"]
//! store = "s3://cairn-chunks?endpoint=https://s3.example.net&region=eu-west-1"
//! [s3]
//! access_key_id = "AKIA..."
//! secret_access_key = "..."
//! ```

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cairn_server::directory::DirectoryConfig;
use cairn_server::StoreChoice;
use cairn_store::{S3Credentials, StoreLocation};
use toml_edit::{DocumentMut, Item, Table};

/// What a config file says; every part optional.
#[derive(Debug, Default)]
pub struct ServerConfig {
    pub data: Option<PathBuf>,
    pub listen: Vec<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub store: StoreChoice,
    pub trusted_proxies: Vec<cairn_server::proxy::Cidr>,
    /// `[ldap]`: directory logins.
    pub directory: Option<DirectoryConfig>,
    /// `announce = false` turns the mDNS announcement off.
    pub announce: Option<bool>,
    pub announce_name: Option<String>,
}

const TOP_KEYS: &str =
    "data, listen, metrics_listen, cert, key, store, metadata, trusted_proxies, announce, announce_name, [s3], [ldap]";

impl ServerConfig {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// When the file cannot be read, is not TOML, has an unknown key or a value of the wrong
    /// type, or holds a secret other users can read. The message names the file and the key.
    pub fn load(path: &Path) -> Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading server config {}", path.display()))?;
        let doc: DocumentMut = text
            .parse()
            .with_context(|| format!("server config {} is not valid TOML", path.display()))?;
        let config = Self::from_table(doc.as_table())
            .with_context(|| format!("server config {}", path.display()))?;
        let directory_secret = config
            .directory
            .as_ref()
            .is_some_and(|d| d.bind_password.is_some());
        if config.store.credentials.is_some() || config.store.metadata.is_some() || directory_secret
        {
            refuse_if_readable_by_others(path)?;
        }
        Ok(config)
    }

    fn from_table(table: &Table) -> Result<ServerConfig> {
        let mut config = ServerConfig::default();
        for (key, item) in table.iter() {
            match key {
                "data" => config.data = Some(string(key, item)?.into()),
                "cert" => config.cert = Some(string(key, item)?.into()),
                "key" => config.key = Some(string(key, item)?.into()),
                "listen" => config.listen = addresses(key, item)?,
                "metrics_listen" => config.metrics_listen = Some(address(key, item)?),
                "store" => {
                    config.store.location = Some(StoreLocation::parse(&string(key, item)?)?);
                }
                "metadata" => config.store.metadata = metadata(item)?,
                "trusted_proxies" => config.trusted_proxies = ranges(key, item)?,
                "s3" => config.store.credentials = Some(credentials(item)?),
                "ldap" => config.directory = Some(ldap::directory(item)?),
                "announce" => match item.as_bool() {
                    Some(b) => config.announce = Some(b),
                    None => bail!("`announce` must be true or false"),
                },
                "announce_name" => {
                    let name = string(key, item)?;
                    crate::discovery::check_name(&name).context("`announce_name`")?;
                    config.announce_name = Some(name);
                }
                other => bail!("unknown key `{other}` (known: {TOP_KEYS})"),
            }
        }
        if let (Some(_), Some(loc)) = (&config.store.credentials, &config.store.location) {
            if !matches!(loc, StoreLocation::S3(_)) {
                bail!("[s3] keys are given but the store is not on S3 ({loc})");
            }
        }
        Ok(config)
    }
}

mod ldap;

fn string(key: &str, item: &Item) -> Result<String> {
    match item.as_str() {
        Some(s) => Ok(s.to_string()),
        None => bail!("`{key}` must be a string"),
    }
}

fn address(key: &str, item: &Item) -> Result<SocketAddr> {
    let text = string(key, item)?;
    text.parse()
        .with_context(|| format!("`{key}`: {text} is not an address like 0.0.0.0:8443"))
}

/// One address or a list of them.
fn addresses(key: &str, item: &Item) -> Result<Vec<SocketAddr>> {
    if item.is_str() {
        return Ok(vec![address(key, item)?]);
    }
    let Some(list) = item.as_array() else {
        bail!("`{key}` must be an address or a list of addresses");
    };
    list.iter()
        .map(|v| {
            let text = v
                .as_str()
                .with_context(|| format!("`{key}` must list addresses as strings"))?;
            text.parse()
                .with_context(|| format!("`{key}`: {text} is not an address like 0.0.0.0:8443"))
        })
        .collect()
}

/// `trusted_proxies = ["10.0.0.0/8", "192.0.2.7"]` (or one string).
fn ranges(key: &str, item: &Item) -> Result<Vec<cairn_server::proxy::Cidr>> {
    let texts: Vec<&str> = match (item.as_str(), item.as_array()) {
        (Some(one), _) => vec![one],
        (None, Some(list)) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .with_context(|| format!("`{key}` must list address ranges as strings"))
            })
            .collect::<Result<_>>()?,
        _ => bail!("`{key}` must be an address range or a list of them"),
    };
    texts
        .into_iter()
        .map(|t| {
            t.parse()
                .map_err(|e: String| anyhow::anyhow!("`{key}`: {e}"))
        })
        .collect()
}

/// `metadata`: `"sqlite"` (in the data folder, the default) or a PostgreSQL address.
fn metadata(item: &Item) -> Result<Option<cairn_server::meta::PgAddress>> {
    let text = string("metadata", item)?;
    if text == "sqlite" {
        return Ok(None);
    }
    cairn_server::meta::PgAddress::parse(&text)
        .map(Some)
        .map_err(|e| {
            anyhow::anyhow!("`metadata`: {e} (or write \"sqlite\" for the data folder's own)")
        })
}

fn credentials(item: &Item) -> Result<S3Credentials> {
    let Some(table) = item.as_table() else {
        bail!("`s3` must be a table ([s3])");
    };
    let mut id = None;
    let mut secret = None;
    for (key, value) in table.iter() {
        let slot = match key {
            "access_key_id" => &mut id,
            "secret_access_key" => &mut secret,
            other => bail!("unknown key `s3.{other}` (known: access_key_id, secret_access_key)"),
        };
        // The value is never echoed: a secret pasted into the wrong key stays out of messages.
        let Some(text) = value.as_str() else {
            bail!("`s3.{key}` must be a string");
        };
        *slot = Some(text.to_string());
    }
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(S3Credentials {
            access_key_id,
            secret_access_key,
        }),
        _ => bail!("[s3] needs both access_key_id and secret_access_key"),
    }
}

/// A file holding a secret key must be private to its owner (as ssh insists for its keys).
fn refuse_if_readable_by_others(path: &Path) -> Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "server config {} holds a secret key but other users can read it (mode {:o}); \
             run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig> {
        let doc: DocumentMut = text.parse()?;
        ServerConfig::from_table(doc.as_table())
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"
            data = "/srv/cairn"
            listen = ["127.0.0.1:8443", "[::1]:8443"]
            metrics_listen = "127.0.0.1:9100"
            cert = "/etc/cert.pem"
            key = "/etc/key.pem"
            store = "s3://b?endpoint=http://127.0.0.1:9000&region=us-east-1"
            metadata = "sqlite"
            trusted_proxies = ["10.0.0.0/8", "fd00::1"]
            [s3]
            access_key_id = "AKID"
            secret_access_key = "TOPSECRET"
            "#,
        )
        .expect("parses");
        assert_eq!(c.data, Some("/srv/cairn".into()));
        assert_eq!(c.listen.len(), 2);
        assert_eq!(
            c.metrics_listen,
            Some("127.0.0.1:9100".parse().expect("addr"))
        );
        assert_eq!(c.cert, Some("/etc/cert.pem".into()));
        assert!(matches!(c.store.location, Some(StoreLocation::S3(_))));
        assert!(!format!("{c:?}").contains("TOPSECRET"));
        let shown: Vec<String> = c.trusted_proxies.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "fd00::1/128"]);
        let one = parse(r#"listen = "0.0.0.0:1""#).expect("parses");
        assert_eq!(one.listen.len(), 1);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |t: &str| format!("{:#}", parse(t).expect_err(t));
        assert!(err("colour = 1").contains("unknown key `colour`"));
        assert!(err("data = 1").contains("`data` must be a string"));
        assert!(err(r#"listen = "nowhere""#).contains("nowhere is not an address"));
        assert!(err(r#"store = "gs://b""#).contains("unknown scheme `gs`"));
        assert!(err(r#"trusted_proxies = ["lb.local"]"#).contains("`lb.local` is not an address"));
        assert!(err("trusted_proxies = 7").contains("must be an address range"));
        assert!(err(r#"metadata = "mysql://db""#).contains("`metadata`"));
        let pg = parse(r#"metadata = "postgres://cairn:TOPSECRET@db.internal/cairn""#)
            .expect("a PostgreSQL address");
        let shown = format!("{pg:?}");
        assert!(
            shown.contains("db.internal") && !shown.contains("TOPSECRET"),
            "{shown}"
        );
        let e = err("[s3]\nsecret_access_key = \"TOPSECRET\"");
        assert!(e.contains("needs both") && !e.contains("TOPSECRET"), "{e}");
        let e = err("[s3]\naccess_key = \"TOPSECRET\"");
        assert!(
            e.contains("unknown key `s3.access_key`") && !e.contains("TOPSECRET"),
            "{e}"
        );
    }

    #[test]
    fn announcing_is_on_unless_turned_off() {
        assert_eq!(parse("").expect("empty").announce, None);
        let c = parse("announce = false\nannounce_name = \"attic\"").expect("parses");
        assert_eq!(
            (c.announce, c.announce_name.as_deref()),
            (Some(false), Some("attic"))
        );
        let err = |t: &str| format!("{:#}", parse(t).expect_err(t));
        assert!(err("announce = \"no\"").contains("`announce` must be true or false"));
        assert!(err(&format!("announce_name = \"{}\"", "x".repeat(64))).contains("`announce_name`"));
    }
}
