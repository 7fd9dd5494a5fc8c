//! Keys: the random master key, the marker object that keeps it wrapped under the user's
//! password on the remote, the subkeys derived from it, and the exported key file.
//!
//! The password never encrypts data: Argon2id turns it into a key-encryption key that wraps
//! the master key (XChaCha20-Poly1305). A wrong password fails the wrap's tag, so it is refused
//! before anything is read or written. Because the data is encrypted under the master key
//! and the marker decides which master key a remote has, encryption cannot be turned off for
//! a remote, nor its password changed: the marker is written once and never replaced.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cairn_engine::{Error, Result};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Name of the marker object at the root of an encrypted remote.
pub const MARKER_NAME: &str = ".cairn-encryption";

const MARKER_FORMAT: &str = "cairn-encryption";
const KEY_FILE_FORMAT: &str = "cairn-encryption-key";
const FORMAT_VERSION: u32 = 1;
const KDF_ALGORITHM: &str = "argon2id";
/// Argon2 version 1.3, as a number (0x13).
const ARGON2_VERSION: u32 = 19;
const WRAP_ALGORITHM: &str = "xchacha20poly1305";
/// Associated data of the key wrap: a wrap made for another format never opens as this one.
const WRAP_AAD: &[u8] = b"cairn-encryption v1 key wrap";
const SALT_LEN: usize = 16;
const KEY_LEN: usize = 32;
const WRAP_NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// A marker is a few hundred bytes; anything much larger is not one.
pub(crate) const MARKER_MAX_BYTES: u64 = 64 * 1024;

/// BLAKE3 `derive_key` contexts of the subkeys (one key per purpose).
const CONTEXT_CONTENT: &str = "cairn 2026-11-30 encryption v1 content";
const CONTEXT_NAME_SIV: &str = "cairn 2026-11-30 encryption v1 name siv";
const CONTEXT_NAME_CIPHER: &str = "cairn 2026-11-30 encryption v1 name cipher";
const CONTEXT_RESUME: &str = "cairn 2026-11-30 encryption v1 resume digest";
const CONTEXT_KEY_CHECK: &str = "cairn 2026-11-30 encryption v1 key check";

/// The 256-bit key everything on an encrypted remote is encrypted under. Its bytes never
/// appear in `Debug` output and are wiped when it is dropped.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(check {})", self.check())
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl MasterKey {
    /// A new random key.
    ///
    /// # Errors
    /// When the operating system gives no random bytes.
    pub fn generate() -> Result<MasterKey> {
        let mut key = [0u8; KEY_LEN];
        random(&mut key)?;
        Ok(MasterKey(key))
    }

    /// A key from its bytes (the format's test vectors).
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey(bytes)
    }

    /// A short fingerprint of the key (not secret): tells whether a key file belongs to a
    /// remote without trying to decrypt anything.
    pub fn check(&self) -> String {
        let derived = blake3::derive_key(CONTEXT_KEY_CHECK, &self.0);
        B64.encode(&derived[..8])
    }
}

/// Fills `buf` from the operating system's random source.
pub(crate) fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf)
        .map_err(|e| Error::Refused(format!("no random bytes from the operating system: {e}")))
}

/// The keys derived from the master key, one per purpose; wiped when dropped.
pub(crate) struct Keys {
    pub(crate) content: [u8; KEY_LEN],
    pub(crate) name_siv: [u8; KEY_LEN],
    pub(crate) name_cipher: [u8; KEY_LEN],
    /// Keys the digests of the local record of uploads in flight (never stored remotely).
    pub(crate) resume: [u8; KEY_LEN],
}

impl Keys {
    pub(crate) fn derive(master: &MasterKey) -> Keys {
        Keys {
            content: blake3::derive_key(CONTEXT_CONTENT, &master.0),
            name_siv: blake3::derive_key(CONTEXT_NAME_SIV, &master.0),
            name_cipher: blake3::derive_key(CONTEXT_NAME_CIPHER, &master.0),
            resume: blake3::derive_key(CONTEXT_RESUME, &master.0),
        }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.content.zeroize();
        self.name_siv.zeroize();
        self.name_cipher.zeroize();
        self.resume.zeroize();
    }
}

/// Argon2id costs for turning a password into the key-encryption key; stored in the marker,
/// so a remote keeps the costs it was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory, in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane (RFC 9106's second recommendation with one lane): about a
    /// third of a second per unlock on a small machine, paid once per task run.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

/// Costs a marker may ask for: a marker from the network must not make the client allocate
/// without bound or spin for hours.
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;

impl KdfParams {
    fn check(&self, source: &str) -> Result<()> {
        let ok = (1..=MAX_PARALLELISM).contains(&self.parallelism)
            && (1..=MAX_ITERATIONS).contains(&self.iterations)
            && (8 * self.parallelism..=MAX_MEMORY_KIB).contains(&self.memory_kib);
        if ok {
            return Ok(());
        }
        Err(Error::Refused(format!(
            "{source}: Argon2id costs out of range (memory {} KiB, {} iterations, {} lanes; \
             at most {MAX_MEMORY_KIB} KiB, {MAX_ITERATIONS} iterations, {MAX_PARALLELISM} lanes)",
            self.memory_kib, self.iterations, self.parallelism
        )))
    }

    /// The key-encryption key for `password` and `salt`.
    fn derive(&self, password: &str, salt: &[u8], source: &str) -> Result<[u8; KEY_LEN]> {
        let failed = |e: argon2::Error| Error::Refused(format!("{source}: Argon2id failed: {e}"));
        let params = argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_LEN),
        )
        .map_err(failed)?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut kek = [0u8; KEY_LEN];
        argon
            .hash_password_into(password.as_bytes(), salt, &mut kek)
            .map_err(failed)?;
        Ok(kek)
    }
}

/// The marker object as stored (JSON).
#[derive(Serialize, Deserialize)]
struct MarkerJson {
    format: String,
    version: u32,
    kdf: KdfJson,
    wrap: WrapJson,
    key_check: String,
}

#[derive(Serialize, Deserialize)]
struct KdfJson {
    algorithm: String,
    argon2_version: u32,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    /// Base64 (standard, padded).
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct WrapJson {
    algorithm: String,
    /// Base64 of the 24-byte nonce.
    nonce: String,
    /// Base64 of the wrapped master key and its tag (32 + 16 bytes).
    ciphertext: String,
}

/// An encrypted remote's marker: how to get its master key from its password.
#[derive(Clone, Debug)]
pub struct Marker {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; WRAP_NONCE_LEN],
    wrapped: [u8; KEY_LEN + TAG_LEN],
    key_check: String,
}

impl Marker {
    /// A new master key and the marker that wraps it under `password`.
    ///
    /// # Errors
    /// An empty password, costs out of range, or no random bytes.
    pub fn create(password: &str, params: KdfParams) -> Result<(Marker, MasterKey)> {
        if password.is_empty() {
            return Err(Error::Refused(
                "an encryption password may not be empty".into(),
            ));
        }
        params.check("the encryption settings")?;
        let key = MasterKey::generate()?;
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; WRAP_NONCE_LEN];
        random(&mut salt)?;
        random(&mut nonce)?;
        let mut kek = params.derive(password, &salt, "the new encryption key")?;
        let mut wrapped = [0u8; KEY_LEN + TAG_LEN];
        wrapped[..KEY_LEN].copy_from_slice(&key.0);
        let tag = XChaCha20Poly1305::new(Key::from_slice(&kek))
            .encrypt_in_place_detached(
                XNonce::from_slice(&nonce),
                WRAP_AAD,
                &mut wrapped[..KEY_LEN],
            )
            .map_err(|_| Error::Refused("wrapping the encryption key failed".into()))?;
        kek.zeroize();
        wrapped[KEY_LEN..].copy_from_slice(&tag);
        let marker = Marker {
            params,
            salt,
            nonce,
            wrapped,
            key_check: key.check(),
        };
        Ok((marker, key))
    }

    /// The master key, if `password` is this remote's (`source` names the marker for errors).
    ///
    /// # Errors
    /// A wrong password (the wrap's tag does not verify); nothing else was touched then.
    pub fn unlock(&self, password: &str, source: &str) -> Result<MasterKey> {
        let mut kek = self.params.derive(password, &self.salt, source)?;
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&self.wrapped[..KEY_LEN]);
        let opened = XChaCha20Poly1305::new(Key::from_slice(&kek)).decrypt_in_place_detached(
            XNonce::from_slice(&self.nonce),
            WRAP_AAD,
            &mut key,
            Tag::from_slice(&self.wrapped[KEY_LEN..]),
        );
        kek.zeroize();
        let key = MasterKey(key);
        if opened.is_err() {
            return Err(Error::Refused(format!(
                "{source}: wrong encryption password; nothing was read or written \
                 (the password of an encrypted remote cannot be changed)"
            )));
        }
        if key.check() != self.key_check {
            return Err(Error::Refused(format!(
                "{source}: the marker's key check does not match its key; the marker is damaged"
            )));
        }
        Ok(key)
    }

    /// Whether `key` is the key this marker wraps (by its check, without the password).
    pub fn matches(&self, key: &MasterKey) -> bool {
        key.check() == self.key_check
    }

    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// The marker as stored: pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let json = MarkerJson {
            format: MARKER_FORMAT.into(),
            version: FORMAT_VERSION,
            kdf: KdfJson {
                algorithm: KDF_ALGORITHM.into(),
                argon2_version: ARGON2_VERSION,
                memory_kib: self.params.memory_kib,
                iterations: self.params.iterations,
                parallelism: self.params.parallelism,
                salt: B64.encode(self.salt),
            },
            wrap: WrapJson {
                algorithm: WRAP_ALGORITHM.into(),
                nonce: B64.encode(self.nonce),
                ciphertext: B64.encode(self.wrapped),
            },
            key_check: self.key_check.clone(),
        };
        let mut out = serde_json::to_vec_pretty(&json).expect("a marker always serialises");
        out.push(b'\n');
        out
    }

    /// Reads a stored marker (`source` names it for errors).
    ///
    /// # Errors
    /// Not a marker, a format version this program does not know, or fields out of range.
    pub fn parse(bytes: &[u8], source: &str) -> Result<Marker> {
        let bad =
            |why: String| Error::Refused(format!("{source}: not a valid encryption marker: {why}"));
        let json: MarkerJson = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if json.format != MARKER_FORMAT {
            return Err(bad(format!("format {:?}", json.format)));
        }
        if json.version != FORMAT_VERSION {
            return Err(Error::Refused(format!(
                "{source}: encryption format version {} is not known to this version of cairn \
                 (it reads version {FORMAT_VERSION}); upgrade cairn",
                json.version
            )));
        }
        if json.kdf.algorithm != KDF_ALGORITHM || json.kdf.argon2_version != ARGON2_VERSION {
            return Err(bad(format!(
                "key derivation {} version {}",
                json.kdf.algorithm, json.kdf.argon2_version
            )));
        }
        if json.wrap.algorithm != WRAP_ALGORITHM {
            return Err(bad(format!("key wrap {}", json.wrap.algorithm)));
        }
        let params = KdfParams {
            memory_kib: json.kdf.memory_kib,
            iterations: json.kdf.iterations,
            parallelism: json.kdf.parallelism,
        };
        params.check(source)?;
        Ok(Marker {
            params,
            salt: decode_fixed(&json.kdf.salt).ok_or_else(|| bad("salt".into()))?,
            nonce: decode_fixed(&json.wrap.nonce).ok_or_else(|| bad("wrap nonce".into()))?,
            wrapped: decode_fixed(&json.wrap.ciphertext)
                .ok_or_else(|| bad("wrapped key".into()))?,
            key_check: json.key_check,
        })
    }
}

/// Base64 of exactly `N` bytes.
fn decode_fixed<const N: usize>(text: &str) -> Option<[u8; N]> {
    B64.decode(text).ok()?.try_into().ok()
}

/// The key file as written by [`export_key`].
#[derive(Serialize, Deserialize)]
struct KeyFileJson {
    format: String,
    version: u32,
    /// Base64 of the 32-byte master key.
    key: String,
    key_check: String,
}

/// Writes `key` to a new file at `path`, readable by its owner only (mode 0600), as JSON:
/// `{"format": "cairn-encryption-key", "version": 1, "key": BASE64, "key_check": ...}`.
/// Anyone with this file can read the remote's data: it is the password's equal.
///
/// # Errors
/// When `path` exists (it is never overwritten) or cannot be written.
pub fn export_key(key: &MasterKey, path: &Path) -> Result<()> {
    let mut text = key_text(key).into_bytes();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io("creating the key file (never overwritten)", path))?;
    let written = file.write_all(&text).and_then(|()| file.sync_all());
    text.zeroize();
    written.map_err(Error::io("writing the key file", path))
}

/// The text of a key file (what [`export_key`] writes), for a key kept somewhere other than
/// a file of its own: a server keeps its cloud tasks' keys in its database this way. The
/// caller owns a secret: it must never reach a log or an answer other than an export.
pub fn key_text(key: &MasterKey) -> String {
    let json = KeyFileJson {
        format: KEY_FILE_FORMAT.into(),
        version: FORMAT_VERSION,
        key: B64.encode(key.0),
        key_check: key.check(),
    };
    let mut text = serde_json::to_string_pretty(&json).expect("a key file always serialises");
    text.push('\n');
    text
}

/// Reads a key file written by [`export_key`].
///
/// # Errors
/// When it cannot be read, is not a key file, or its key does not match its own check.
pub fn read_key_file(path: &Path) -> Result<MasterKey> {
    let mut bytes = std::fs::read(path).map_err(Error::io("reading the key file", path))?;
    let key = parse_key_text(&bytes, &path.display().to_string());
    bytes.zeroize();
    key
}

/// Reads the text of a key file ([`key_text`]); `source` names where it came from in errors,
/// which never quote the text.
///
/// # Errors
/// When it is not a key file, or its key does not match its own check.
pub fn parse_key_text(bytes: &[u8], source: &str) -> Result<MasterKey> {
    let json: KeyFileJson = serde_json::from_slice(bytes).map_err(|e| {
        Error::Refused(format!(
            "{source}: not a cairn key file (at line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if json.format != KEY_FILE_FORMAT || json.version != FORMAT_VERSION {
        return Err(Error::Refused(format!(
            "{source}: not a cairn key file of version {FORMAT_VERSION} (format {:?}, version {})",
            json.format, json.version
        )));
    }
    let key =
        MasterKey(decode_fixed(&json.key).ok_or_else(|| {
            Error::Refused(format!("{source}: the key is not 32 bytes of base64"))
        })?);
    if key.check() != json.key_check {
        return Err(Error::Refused(format!(
            "{source}: the key does not match its key check; the file is damaged"
        )));
    }
    Ok(key)
}
