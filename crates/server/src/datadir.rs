//! The server's data folder: `meta.sqlite` (metadata; or the marker `metadata-in-postgres`
//! naming the database that holds it), `chunks/` (content, an OpenDAL fs store, unless the
//! chunks live elsewhere: see [`StoreChoice`]), `tls/` (a self-signed certificate made on
//! first run), `admin-password` (0600) and `server.lock` (held by the running server:
//! [`RunLock`]).
//!
//! The first run creates everything, including the server's identity and an `admin` user with a
//! random password; later runs and admin commands open what is there. The chunk store a folder
//! was created with is recorded in its metadata, so later runs and admin commands find it, and a
//! run naming another store is refused (its chunks would all be missing).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_store::{ObjectStore, OpendalStore, S3Credentials, StoreLocation};

use crate::auth;
use crate::meta::{Meta, PgAddress};
use crate::{Error, Result};

pub struct DataDir {
    pub root: PathBuf,
    pub meta: Arc<Meta>,
    pub store: Arc<dyn ObjectStore>,
    pub server_id: String,
    /// Signs bearer tokens (see `auth::TokenKey`).
    pub token_secret: String,
    /// Held (shared) while an admin command, gc or check has the folder open, so a
    /// `server migrate` cannot copy the metadata from under it (see [`AdminLock`]).
    _admin: Option<AdminLock>,
}

/// Where the chunks are: `location` `None` means the one recorded in the metadata (on first
/// run: `chunks/` in the data folder). `credentials` are S3 keys from a config file; without
/// them the standard AWS environment variables are used.
#[derive(Clone, Debug, Default)]
pub struct StoreChoice {
    pub location: Option<StoreLocation>,
    pub credentials: Option<S3Credentials>,
    /// The metadata in PostgreSQL instead of `meta.sqlite` in the data folder.
    pub metadata: Option<PgAddress>,
}

/// The file in a data folder whose metadata is in PostgreSQL: the database's address
/// (without its password), so the folder is never opened on an empty SQLite store by mistake.
const METADATA_FILE: &str = "metadata-in-postgres";

/// The metadata key that records the chunk store, and its value for `chunks/` in the folder.
const STORE_KEY: &str = "chunk_store";
const IN_DATA_FOLDER: &str = "data-folder";

/// What a first run created, for the CLI to tell the user.
pub struct Created {
    pub admin_password_file: PathBuf,
}

/// Disk kept aside for `server gc` on a full disk.
pub const RESERVE_BYTES: u64 = 8 * 1024 * 1024;

impl DataDir {
    /// Opens the data folder, creating it on first use.
    ///
    /// # Errors
    /// When the folder or one of its parts cannot be created or opened.
    pub fn open_or_init(root: &Path) -> Result<(DataDir, Option<Created>)> {
        Self::open_or_init_with(root, &StoreChoice::default())
    }

    /// [`DataDir::open_or_init`] with the chunks in `store`.
    ///
    /// # Errors
    /// As [`DataDir::open_or_init`], and when `store` is not the store the folder records.
    pub fn open_or_init_with(
        root: &Path,
        store: &StoreChoice,
    ) -> Result<(DataDir, Option<Created>)> {
        let dir = Self::create_parts(root, store)?;
        let created = if dir.meta.user_count()? == 0 {
            let password = auth::random_password();
            dir.meta
                .add_user("admin", &auth::hash_password(&password)?, true)?;
            let file = root.join("admin-password");
            write_private(&file, format!("{password}\n").as_bytes())?;
            Some(Created {
                admin_password_file: file,
            })
        } else {
            None
        };
        Ok((dir, created))
    }

    /// Opens an existing data folder (admin commands, gc, check).
    ///
    /// # Errors
    /// When `root` holds no cairn data folder.
    pub fn open(root: &Path) -> Result<DataDir> {
        Self::open_with(root, &StoreChoice::default())
    }

    /// [`DataDir::open`] with S3 keys (or a store named again, which must be the recorded one).
    ///
    /// # Errors
    /// As [`DataDir::open`], and when `store` is not the store the folder records.
    pub fn open_with(root: &Path, store: &StoreChoice) -> Result<DataDir> {
        let elsewhere = store.metadata.is_some() || root.join(METADATA_FILE).is_file();
        if !elsewhere && !root.join("meta.sqlite").is_file() {
            return Err(Error::NotFound(format!(
                "{} is not a cairn data folder (no meta.sqlite); start the server once with `cairn server run --data {}`",
                root.display(),
                root.display()
            )));
        }
        let admin = AdminLock::shared(root)?;
        let mut dir = Self::open_parts(root, store, false)?;
        dir._admin = Some(admin);
        Ok(dir)
    }

    /// [`DataDir::open_with`] for `server migrate`, which holds the folder's [`AdminLock`]
    /// exclusively already.
    pub(crate) fn open_to_migrate(root: &Path, store: &StoreChoice) -> Result<DataDir> {
        Self::open_parts(root, store, false)
    }

    /// Creates a new data folder with no users, for `restore-config` to fill from a backup
    /// (the admin user a first run makes would collide with the backup's).
    ///
    /// # Errors
    /// [`Error::Invalid`] when `root` holds a data folder already; as [`DataDir::open_or_init`].
    pub fn create_empty(root: &Path, store: &StoreChoice) -> Result<DataDir> {
        if root.join("meta.sqlite").is_file() || root.join(METADATA_FILE).is_file() {
            return Err(Error::Invalid(format!(
                "{} holds a data folder already; a restore makes a new one (choose another --data)",
                root.display()
            )));
        }
        Self::create_parts(root, store)
    }

    /// Opens the data folder, creating whatever of it is missing, users apart.
    fn create_parts(root: &Path, store: &StoreChoice) -> Result<DataDir> {
        fs::create_dir_all(root).map_err(Error::io(format!(
            "creating data folder {}",
            root.display()
        )))?;
        let _ = fs::set_permissions(root, fs::Permissions::from_mode(0o700));
        let dir = Self::open_parts(root, store, true)?;
        dir.ensure_certificate()?;
        dir.keep_reserve();
        Ok(dir)
    }

    fn open_parts(root: &Path, choice: &StoreChoice, first_use: bool) -> Result<DataDir> {
        let meta = Arc::new(open_metadata(root, choice.metadata.as_ref())?);
        let location = chunk_store(&meta, root, choice.location.as_ref(), first_use)?;
        let store: Arc<dyn ObjectStore> =
            Arc::new(OpendalStore::open(&location, choice.credentials.as_ref())?);
        let server_id = meta.init_meta_value("server_id", &auth::random_hex(16))?;
        let token_secret = meta.init_meta_value("token_secret", &auth::random_hex(32))?;
        Ok(DataDir {
            token_secret,
            root: root.to_path_buf(),
            meta,
            store,
            server_id,
            _admin: None,
        })
    }

    fn reserve_path(&self) -> PathBuf {
        self.root.join("reserve")
    }

    /// Keeps [`RESERVE_BYTES`] of disk set aside in the data folder (best effort: a disk that
    /// has no room for it now gets it at the next chance). `server gc` gives it back first, so
    /// that even on a disk filled to the last byte the metadata store can record what it frees.
    pub fn keep_reserve(&self) {
        let path = self.reserve_path();
        if fs::metadata(&path).is_ok_and(|m| m.len() == RESERVE_BYTES) {
            return;
        }
        let made = fs::File::create(&path).and_then(|mut f| {
            let block = vec![0u8; 1024 * 1024];
            for _ in 0..RESERVE_BYTES / block.len() as u64 {
                f.write_all(&block)?;
            }
            f.sync_all()
        });
        if made.is_err() {
            let _ = fs::remove_file(&path);
        }
    }

    /// Frees the reserve (see [`DataDir::keep_reserve`]).
    pub fn release_reserve(&self) {
        let _ = fs::remove_file(self.reserve_path());
    }

    fn cert_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.root.join("tls").join("cert.pem"),
            self.root.join("tls").join("key.pem"),
        )
    }

    fn ensure_certificate(&self) -> Result<()> {
        let (cert, key) = self.cert_paths();
        if cert.is_file() && key.is_file() {
            return Ok(());
        }
        let tls_dir = self.root.join("tls");
        fs::create_dir_all(&tls_dir)
            .map_err(Error::io(format!("creating {}", tls_dir.display())))?;
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
            let host = host.trim();
            if !host.is_empty() && host != "localhost" {
                names.push(host.to_string());
            }
        }
        let made = rcgen::generate_simple_self_signed(names).map_err(|e| Error::Tls {
            context: "making a self-signed certificate".into(),
            source: Box::new(e),
        })?;
        write_private(&key, made.key_pair.serialize_pem().as_bytes())?;
        fs::write(&cert, made.cert.pem())
            .map_err(Error::io(format!("writing {}", cert.display())))?;
        Ok(())
    }

    /// The TLS configuration: the given certificate and key, or the generated ones.
    ///
    /// # Errors
    /// When a file cannot be read or holds no usable certificate or key.
    pub fn tls_config(
        &self,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Arc<rustls::ServerConfig>> {
        let (default_cert, default_key) = self.cert_paths();
        let cert = cert.unwrap_or(&default_cert);
        let key = key.unwrap_or(&default_key);
        let certs = read_certs(cert)?;
        let key_pem =
            fs::read(key).map_err(Error::io(format!("reading TLS key {}", key.display())))?;
        let key_der = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(Error::io(format!("reading TLS key {}", key.display())))?
            .ok_or_else(|| Error::Invalid(format!("{} holds no private key", key.display())))?;
        let tls_err = |source: rustls::Error| Error::Tls {
            context: format!("using certificate {}", cert.display()),
            source: Box::new(source),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(tls_err)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// SHA-256 of the certificate in use, as colon-separated uppercase hex (as browsers show it).
    ///
    /// # Errors
    /// When the certificate cannot be read.
    pub fn fingerprint(&self, cert: Option<&Path>) -> Result<String> {
        certificate_fingerprint(&self.root, cert)
    }
}

/// The fingerprint of `cert`, or of the certificate the data folder at `root` made: it needs
/// no metadata (a server whose metadata is elsewhere has its certificate here).
///
/// # Errors
/// When the certificate cannot be read.
pub fn certificate_fingerprint(root: &Path, cert: Option<&Path>) -> Result<String> {
    let default_cert = root.join("tls").join("cert.pem");
    let certs = read_certs(cert.unwrap_or(&default_cert))?;
    Ok(fingerprint_of(certs[0].as_ref()))
}

/// The chunk store of the folder at `root`: the recorded one, recorded now on first use.
fn chunk_store(
    meta: &Meta,
    root: &Path,
    wanted: Option<&StoreLocation>,
    first_use: bool,
) -> Result<StoreLocation> {
    let wanted_text = wanted.map(|w| recorded_store(root, w)).transpose()?;
    let recorded = match meta.meta_value(STORE_KEY)? {
        Some(r) => r,
        // Folders made before the store was recorded kept their chunks inside.
        None if !first_use || has_local_chunks(root) => {
            meta.init_meta_value(STORE_KEY, IN_DATA_FOLDER)?
        }
        None => {
            meta.init_meta_value(STORE_KEY, wanted_text.as_deref().unwrap_or(IN_DATA_FOLDER))?
        }
    };
    if let Some(w) = wanted_text {
        if w != recorded {
            return Err(Error::Invalid(format!(
                "data folder {} keeps its chunks in {}; it cannot be opened with the store {w} \
                 (its chunks would all be missing)",
                root.display(),
                shown_store(root, &recorded),
            )));
        }
    }
    recorded_location(root, &recorded)
}

/// How the metadata of the folder at `root` records `store` (the value of its `chunk_store`
/// key): `chunks/` in the folder by a name that survives moving the folder, anything else by
/// its absolute URL.
///
/// # Errors
/// When a local path cannot be made absolute.
pub(crate) fn recorded_store(root: &Path, store: &StoreLocation) -> Result<String> {
    Ok(match store {
        StoreLocation::Local(path) => {
            let path = std::path::absolute(path)
                .map_err(Error::io(format!("resolving {}", path.display())))?;
            if path == absolute_or(root).join("chunks") {
                IN_DATA_FOLDER.to_string()
            } else {
                StoreLocation::Local(path).to_string()
            }
        }
        s3 => s3.to_string(),
    })
}

/// The store `recorded` (a `chunk_store` value) names for the folder at `root`.
///
/// # Errors
/// [`Error::Corrupt`] when the value does not read as a store.
fn recorded_location(root: &Path, recorded: &str) -> Result<StoreLocation> {
    if recorded == IN_DATA_FOLDER {
        return Ok(StoreLocation::Local(root.join("chunks")));
    }
    StoreLocation::parse(recorded).map_err(|e| {
        Error::Corrupt(format!(
            "{}: the recorded chunk store cannot be read: {e}",
            root.join("meta.sqlite").display()
        ))
    })
}

fn absolute_or(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn shown_store(root: &Path, recorded: &str) -> String {
    if recorded == IN_DATA_FOLDER {
        format!("{}", root.join("chunks").display())
    } else {
        recorded.to_string()
    }
}

/// Whether `root/chunks` already holds chunk or pack objects.
fn has_local_chunks(root: &Path) -> bool {
    ["chunks", "packs"].iter().any(|sub| {
        fs::read_dir(root.join("chunks").join(sub)).is_ok_and(|mut d| d.next().is_some())
    })
}

pub fn fingerprint_of(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn read_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let pem =
        fs::read(path).map_err(Error::io(format!("reading certificate {}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::io(format!("reading certificate {}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Invalid(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Writes a file only its owner can read (created 0600, never briefly wider).
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let ctx = format!("writing {}", path.display());
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(ctx.clone()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(Error::io(ctx.clone()))?;
    f.write_all(data).map_err(Error::io(ctx.clone()))?;
    f.sync_all().map_err(Error::io(ctx))
}

/// The metadata store of the data folder `root`: `meta.sqlite` in it, or the PostgreSQL
/// database `pg`. A folder whose metadata went to PostgreSQL is refused without it, and a
/// folder with SQLite metadata of its own is refused with it (`cairn server migrate` moves
/// one to the other), so neither is ever taken for an empty server.
fn open_metadata(root: &Path, pg: Option<&PgAddress>) -> Result<Meta> {
    let lite = root.join("meta.sqlite");
    match pg {
        None => {
            if let Some(at) = postgres_of(root) {
                return Err(Error::Invalid(format!(
                    "the metadata of data folder {} is in PostgreSQL ({at}): give its address \
                     (--metadata or `metadata` in the config file)",
                    root.display(),
                )));
            }
            Meta::open(&lite)
        }
        Some(address) => {
            if lite.is_file() {
                return Err(Error::Invalid(format!(
                    "data folder {} keeps its metadata in {}; move it to PostgreSQL with \
                     `cairn server migrate --from {} --to-metadata URL`, or give a new data \
                     folder for a server on PostgreSQL",
                    root.display(),
                    lite.display(),
                    root.display()
                )));
            }
            let meta = Meta::open_postgres(address)?;
            record_postgres(root, address)?;
            Ok(meta)
        }
    }
}

/// Records in the folder at `root` that its metadata is in the database at `address` (the
/// marker file, written only when it changes).
///
/// # Errors
/// When the marker cannot be written.
pub(crate) fn record_postgres(root: &Path, address: &PgAddress) -> Result<()> {
    let marker = root.join(METADATA_FILE);
    let recorded = format!("{address}\n");
    if fs::read_to_string(&marker).ok().as_deref() != Some(recorded.as_str()) {
        write_private(&marker, recorded.as_bytes())?;
    }
    Ok(())
}

/// The database the folder at `root` records its metadata in (its address without password),
/// or `None` for a folder whose metadata is its own `meta.sqlite`.
pub fn postgres_of(root: &Path) -> Option<String> {
    fs::read_to_string(root.join(METADATA_FILE))
        .ok()
        .map(|at| at.trim().to_string())
}

/// Taken shared by admin commands, gc and check while they have a data folder open (they run
/// beside each other and beside a live server), and exclusively by `cairn server migrate`,
/// which must not copy metadata that one of them is changing. The kernel's `flock` on
/// `admin.lock` in the folder, so a killed command leaves nothing to clean up.
#[derive(Debug)]
pub struct AdminLock {
    _file: fs::File,
}

impl AdminLock {
    /// For an admin command, gc or check.
    ///
    /// # Errors
    /// [`Error::Busy`] while a migration of the folder runs.
    pub fn shared(root: &Path) -> Result<AdminLock> {
        Self::take(root, true)
    }

    /// For `server migrate`.
    ///
    /// # Errors
    /// [`Error::Busy`] while an admin command, gc or check has the folder open.
    pub fn exclusive(root: &Path) -> Result<AdminLock> {
        Self::take(root, false)
    }

    fn take(root: &Path, shared: bool) -> Result<AdminLock> {
        let path = root.join("admin.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io(format!("opening {}", path.display())))?;
        let taken = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match taken {
            Ok(()) => Ok(AdminLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) if shared => Err(Error::Busy(format!(
                "{} is being migrated (cairn server migrate); try again when it is done",
                root.display()
            ))),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Busy(format!(
                "an admin command, gc or check is working on {}; try again when it is done",
                root.display()
            ))),
            Err(fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("locking {}", path.display()))(e))
            }
        }
    }
}

/// Held by the one `cairn server run` of a data folder, and by `cairn server migrate`, which
/// must not move a folder while a server writes to it. The lock is the kernel's (`flock` on
/// `server.lock` in the folder), so a killed server leaves nothing to clean up. Admin
/// commands, gc and check do not take it: they run beside a live server.
pub struct RunLock {
    _file: fs::File,
}

impl RunLock {
    /// Takes the lock of the (existing) data folder at `root`.
    ///
    /// # Errors
    /// [`Error::Busy`] when a server holds it, or the lock file cannot be opened.
    pub fn take(root: &Path) -> Result<RunLock> {
        let path = root.join("server.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io(format!("opening {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Busy(format!(
                "a server is running on {}; stop it first",
                root.display()
            ))),
            Err(fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("locking {}", path.display()))(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admin commands share the folder with each other; a migration waits for them, and they
    /// for it.
    #[test]
    fn a_migration_and_admin_commands_exclude_each_other() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().join("data");
        drop(DataDir::open_or_init(&root).expect("a new data folder"));
        let one = DataDir::open(&root).expect("an admin command");
        let two = DataDir::open(&root).expect("a second one beside it");
        let busy = AdminLock::exclusive(&root).expect_err("admin commands are working");
        assert!(matches!(busy, Error::Busy(_)), "{busy}");
        drop((one, two));
        let migrating = AdminLock::exclusive(&root).expect("no admin command now");
        let refused = DataDir::open(&root).err().expect("a migration runs");
        assert!(refused.to_string().contains("being migrated"), "{refused}");
        drop(migrating);
        DataDir::open(&root).expect("the migration is over");
    }
}
