//! `--encode-names`: [`EncodedReplica`] wraps a cloud replica and stores each name the provider
//! refuses under its reversible spelling (`names::encode_name`, docs/cloud.md "Names"); the
//! engine sees the plain names only.
//!
//! Stored names map 1:1 to plain ones: a stored name is taken only when encoding its decoded
//! form gives it back. One that does not (`a@40b`, which no encoding writes) would have two
//! plain readings of one object, so it is reported and left alone (no plain name is stored
//! there, so no local file stands for it).

use async_trait::async_trait;
use cairn_engine::replica::{
    Capabilities, Content, Cursor, Listing, NewEntry, Outcome, Replica, ReplicaChange,
    ReplicaEntry, Traffic, Version,
};
use cairn_engine::{Error, Result};
use cairn_model::{ContentHash, EntryKind, RelPath};

use crate::names::{decode_path, encode_path};
use crate::provider::Provider;

pub struct EncodedReplica<R> {
    inner: R,
    provider: Provider,
}

impl<R: Replica> EncodedReplica<R> {
    pub fn new(inner: R, provider: Provider) -> Self {
        EncodedReplica { inner, provider }
    }

    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Where `plain` is stored.
    ///
    /// # Errors
    /// When the encoded path is no valid path (it always is: escapes are ASCII and never `/`).
    pub fn stored(&self, plain: &RelPath) -> Result<RelPath> {
        if plain.is_root() {
            return Ok(RelPath::root());
        }
        let encoded = encode_path(self.provider, plain.as_str());
        RelPath::parse(&encoded).map_err(|e| {
            Error::Refused(format!(
                "{}/{plain}: encoded as {encoded:?}: {e}",
                self.inner.describe()
            ))
        })
    }

    /// The plain path `stored` stands for, or why it is not taken.
    pub fn plain(&self, stored: &RelPath) -> std::result::Result<RelPath, String> {
        let decoded = decode_path(stored.as_str());
        let plain = RelPath::parse(&decoded)
            .map_err(|e| format!("its name decoded ({decoded:?}) is not a valid path: {e}"))?;
        if encode_path(self.provider, plain.as_str()) != stored.as_str() {
            return Err(format!(
                "its name reads as {decoded:?}, which --encode-names stores under another name; left alone"
            ));
        }
        Ok(plain)
    }

    fn map_listing(&self, inner: Listing) -> Listing {
        let describe = self.inner.describe();
        let mut out = Listing {
            cursor: inner.cursor,
            skipped: inner.skipped,
            ..Listing::default()
        };
        for (stored, entry) in inner.entries {
            match self.plain(&stored) {
                Ok(plain) => {
                    out.entries.insert(plain, entry);
                }
                // Reported; no plain name is stored there, so nothing here stands for it.
                Err(why) => out.skipped.push((format!("{describe}/{stored}"), why)),
            }
        }
        for (stored, rule) in inner.excluded {
            if let Ok(plain) = self.plain(&stored) {
                out.excluded.push((plain, rule));
            }
        }
        for stored in inner.held {
            if let Ok(plain) = self.plain(&stored) {
                out.held.push(plain);
            }
        }
        for stored in inner.incomplete {
            let plain = self
                .plain(&stored)
                .or_else(|_| {
                    stored
                        .parent()
                        .map_or(Ok(RelPath::root()), |p| self.plain(&p))
                })
                .unwrap_or_else(|_| RelPath::root());
            out.incomplete.push(plain);
        }
        out
    }
}

#[async_trait]
impl<R: Replica> Replica for EncodedReplica<R> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn list(&self) -> Result<Listing> {
        Ok(self.map_listing(self.inner.list().await?))
    }

    /// A change whose name is not taken makes the answer `None`: the caller lists again.
    async fn changes(&self, since: &Cursor) -> Result<Option<(Vec<ReplicaChange>, Cursor)>> {
        let Some((changes, cursor)) = self.inner.changes(since).await? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(changes.len());
        for change in changes {
            let mapped = match change {
                ReplicaChange::Upsert(p, e) => self.plain(&p).map(|p| ReplicaChange::Upsert(p, e)),
                ReplicaChange::Remove(p) => self.plain(&p).map(ReplicaChange::Remove),
            };
            match mapped {
                Ok(c) => out.push(c),
                Err(_) => return Ok(None),
            }
        }
        Ok(Some((out, cursor)))
    }

    async fn stat(&self, path: &RelPath) -> Result<Option<ReplicaEntry>> {
        self.inner.stat(&self.stored(path)?).await
    }

    async fn read(&self, path: &RelPath, version: &Version) -> Result<Content<'static>> {
        self.inner.read(&self.stored(path)?, version).await
    }

    async fn write(
        &self,
        path: &RelPath,
        entry: &NewEntry,
        content: Content<'_>,
        expect: Option<&Version>,
    ) -> Result<Outcome> {
        self.inner
            .write(&self.stored(path)?, entry, content, expect)
            .await
    }

    async fn delete(&self, path: &RelPath, expect: &Version) -> Result<Outcome> {
        self.inner.delete(&self.stored(path)?, expect).await
    }

    async fn rename(&self, from: &RelPath, to: &RelPath, expect: &Version) -> Result<Outcome> {
        self.inner
            .rename(&self.stored(from)?, &self.stored(to)?, expect)
            .await
    }

    async fn promote(
        &self,
        path: &RelPath,
        version: &Version,
        expect: &Version,
    ) -> Result<Outcome> {
        self.inner
            .promote(&self.stored(path)?, version, expect)
            .await
    }

    async fn hash_many(&self, items: &[(RelPath, Version)]) -> Result<Vec<Option<ContentHash>>> {
        let stored = items
            .iter()
            .map(|(p, v)| Ok((self.stored(p)?, v.clone())))
            .collect::<Result<Vec<_>>>()?;
        self.inner.hash_many(&stored).await
    }

    fn traffic(&self) -> Traffic {
        self.inner.traffic()
    }

    async fn identity(&self) -> Result<Option<String>> {
        self.inner.identity().await
    }

    fn went_back(&self, version: &Version, cursor: &Cursor) -> bool {
        self.inner.went_back(version, cursor)
    }

    async fn writable(&self) -> Result<bool> {
        self.inner.writable().await
    }

    /// What the provider refuses of the path as it will be stored: with names encoded, only
    /// lengths and sizes are left to refuse.
    fn refuses(&self, path: &RelPath, kind: EntryKind, size: u64) -> Option<String> {
        match self.stored(path) {
            Ok(stored) => self.inner.refuses(&stored, kind, size),
            Err(e) => Some(e.to_string()),
        }
    }

    async fn damaged(&self) -> Result<Vec<RelPath>> {
        Ok(self
            .inner
            .damaged()
            .await?
            .iter()
            .filter_map(|p| self.plain(p).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::S3Preset;

    /// A replica that is nothing but a listing, to see names mapped.
    struct Names(Vec<&'static str>);

    #[async_trait]
    impl Replica for Names {
        fn describe(&self) -> String {
            "mem".into()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                keeps_versions: false,
                knows_hashes: false,
                knows_mtimes: false,
                can_move: false,
                keeps_modes: false,
                stores_links: false,
                dedups: false,
                has_journal: false,
                case_sensitive: true,
                max_name_bytes: 255,
                max_path_bytes: 1024,
            }
        }
        async fn list(&self) -> Result<Listing> {
            let mut l = Listing::default();
            for n in &self.0 {
                let p = RelPath::parse(n).expect("test path");
                l.entries.insert(
                    p,
                    ReplicaEntry {
                        kind: EntryKind::File,
                        size: 0,
                        mtime_ns: 0,
                        mode: 0o644,
                        hash: None,
                        target: None,
                        version: Version("v".into()),
                    },
                );
            }
            Ok(l)
        }
        async fn changes(&self, _: &Cursor) -> Result<Option<(Vec<ReplicaChange>, Cursor)>> {
            Ok(None)
        }
        async fn stat(&self, _: &RelPath) -> Result<Option<ReplicaEntry>> {
            Ok(None)
        }
        async fn read(&self, _: &RelPath, _: &Version) -> Result<Content<'static>> {
            Err(Error::Refused("no content".into()))
        }
        async fn write(
            &self,
            _: &RelPath,
            _: &NewEntry,
            _: Content<'_>,
            _: Option<&Version>,
        ) -> Result<Outcome> {
            Err(Error::Refused("read-only".into()))
        }
        async fn delete(&self, _: &RelPath, _: &Version) -> Result<Outcome> {
            Err(Error::Refused("read-only".into()))
        }
        async fn rename(&self, _: &RelPath, _: &RelPath, _: &Version) -> Result<Outcome> {
            Err(Error::Refused("read-only".into()))
        }
    }

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).expect("test path")
    }

    #[tokio::test]
    async fn stored_names_are_decoded_and_only_canonical_ones_taken() {
        let aws = Provider::S3(S3Preset::Aws);
        let r = EncodedReplica::new(Names(vec!["a@3Ab/c.txt", "x@40y", "plain@.txt"]), aws);
        let listing = r.list().await.expect("list");
        let names: Vec<&str> = listing.entries.keys().map(RelPath::as_str).collect();
        assert_eq!(names, vec!["a:b/c.txt", "plain@.txt"]);
        assert_eq!(listing.skipped.len(), 1, "{:?}", listing.skipped);
        assert!(listing.skipped[0].0.contains("x@40y"));
        assert_eq!(
            r.stored(&p("a:b/c.txt")).expect("stored").as_str(),
            "a@3Ab/c.txt"
        );
        // A name that looks escaped already is escaped again, and read back as itself.
        let stored = r.stored(&p("x@3Ay")).expect("stored");
        assert_eq!(stored.as_str(), "x@403Ay");
        assert_eq!(r.plain(&stored).expect("plain").as_str(), "x@3Ay");
    }
}
