//! Sharing links (seed 001, "To create a file sharing link"): a file or folder of a server
//! folder, reachable by whoever holds the link, optionally behind a password, until an expiry
//! or a number of accesses, and revocable. The wire types and rules live here; the API and the
//! public pages in `api::shares`.
//!
//! A link carries 192 random bits. It reaches its file or folder and nothing above it, and only
//! while its owner may still read the folder and is not disabled. An access is one delivery of
//! content (a download of the file, or of one file of a shared folder); looking at a folder's
//! list is not counted.

use serde::{Deserialize, Serialize};

/// Longest validity a link may be given: a year.
pub const MAX_VALIDITY_NS: i64 = 366 * 24 * 3600 * 1_000_000_000;

#[derive(Clone, Serialize, Deserialize)]
pub struct ShareRequest {
    pub folder: String,
    /// The file or folder in it (empty: the whole folder).
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// When the link stops working (ns since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ns: Option<i64>,
    /// Most accesses (downloads) it allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_access: Option<u64>,
    /// A link that takes files into a folder and shows nothing of it ("file request"); each
    /// file sent is one access.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upload_only: bool,
}

impl std::fmt::Debug for ShareRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareRequest")
            .field("folder", &self.folder)
            .field("path", &self.path)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("expires_ns", &self.expires_ns)
            .field("max_access", &self.max_access)
            .field("upload_only", &self.upload_only)
            .finish()
    }
}

/// A link as its owner sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShareInfo {
    pub id: i64,
    pub owner: String,
    pub folder: String,
    pub path: String,
    /// `file`, `dir` or `drop` (upload-only).
    pub kind: String,
    /// The link's path on the server, `/s/TOKEN`.
    pub url_path: String,
    pub password: bool,
    pub expires_ns: Option<i64>,
    pub max_access: Option<i64>,
    pub accesses: i64,
    /// `active`, `expired`, `exhausted` or `revoked`.
    pub state: String,
    pub created_ns: i64,
}

impl ShareInfo {
    pub fn of(row: &crate::meta::ShareRow, now_ns: i64) -> ShareInfo {
        ShareInfo {
            id: row.id,
            owner: row.owner.clone(),
            folder: row.folder.clone(),
            path: row.path.clone(),
            kind: row.kind.clone(),
            url_path: format!("/s/{}", row.token),
            password: row.pw_hash.is_some(),
            expires_ns: row.expires_ns,
            max_access: row.max_access,
            accesses: row.accesses,
            state: state_of(row, now_ns).into(),
            created_ns: row.created_ns,
        }
    }
}

/// Whether a link may be used at `now_ns`, in one word.
pub fn state_of(row: &crate::meta::ShareRow, now_ns: i64) -> &'static str {
    if row.revoked {
        "revoked"
    } else if row.expires_ns.is_some_and(|e| e <= now_ns) {
        "expired"
    } else if row.max_access.is_some_and(|m| row.accesses >= m) {
        "exhausted"
    } else {
        "active"
    }
}

/// A new link's token: 24 random bytes, URL-safe.
pub fn new_token() -> String {
    crate::auth::random_bytes(24)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `text` could be a token this server made (checked before any lookup).
pub fn is_token(text: &str) -> bool {
    text.len() == 48 && text.bytes().all(|b| b.is_ascii_hexdigit())
}
