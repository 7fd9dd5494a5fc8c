//! Versions an encrypted cloud task keeps on the remote (`--keep-versions`): the cloud replica
//! keeps them under the stored (encrypted) path, so listing them means encrypting the plain
//! path asked for, or decrypting the stored paths found; their content is the stored
//! (encrypted) file, opened like any read.

use std::collections::BTreeMap;

use cairn_engine::replica::{Content, Replica};
use cairn_engine::{Error, Result};
use cairn_model::RelPath;

use super::path::NameCache;
use super::{plain_size, stream, EncryptedReplica};
use crate::CloudReplica;

impl EncryptedReplica<CloudReplica> {
    /// The kept versions of the plain `path`, oldest first: object key and when it was
    /// replaced (ns since the epoch).
    ///
    /// # Errors
    /// When the path cannot be stored encrypted, or the listing fails.
    pub async fn kept_versions(&self, path: &RelPath) -> Result<Vec<(String, i64)>> {
        let stored = self.stored_path(path)?;
        self.inner.kept_versions(&stored).await
    }

    /// Every kept version under the plain `under`, by plain path, oldest first. A stored path
    /// that does not decrypt with this key is not ours to show, and is left out.
    ///
    /// # Errors
    /// When the listing fails.
    pub async fn all_kept_versions(
        &self,
        under: &RelPath,
    ) -> Result<BTreeMap<RelPath, Vec<(String, i64)>>> {
        let stored_under = if under.is_root() {
            RelPath::root()
        } else {
            self.stored_path(under)?
        };
        let mut names = NameCache::new(&self.keys);
        Ok(self
            .inner
            .all_kept_versions(&stored_under)
            .await?
            .into_iter()
            .filter_map(|(stored, kept)| Some((names.plain_path(&stored).ok()?, kept)))
            .collect())
    }

    /// The plain content of a kept version's object.
    ///
    /// # Errors
    /// When `key` is no kept version or cannot be read; a read of content that does not
    /// authenticate fails.
    pub async fn read_kept(&self, key: &str) -> Result<Content<'static>> {
        let content = self.inner.read_kept(key).await?;
        let source = format!("{}/{key}", self.inner.describe());
        Ok(stream::open_stream(self.keys.clone(), content, source))
    }

    /// The plain size of a kept version.
    ///
    /// # Errors
    /// When the object cannot be read, or its size is no encrypted file's.
    pub async fn kept_size(&self, key: &str) -> Result<u64> {
        let stored = self.inner.kept_size(key).await?;
        plain_size(stored).ok_or_else(|| {
            Error::Refused(format!(
                "{}/{key}: {stored} bytes is no encrypted file's size",
                self.inner.describe()
            ))
        })
    }
}
