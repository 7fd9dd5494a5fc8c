//! Stored paths back to plain ones: each component decrypted once per listing, and the
//! stored names that give no plain name collected for the listing's report.

use std::collections::{BTreeSet, HashMap, HashSet};

use cairn_model::RelPath;

use super::key::Keys;
use super::name::{self, NameError};

/// A stored path that gives no plain path, and where it stopped.
pub(super) struct PathFail {
    /// The plain path of the components that did decrypt.
    pub(super) plain_parent: RelPath,
    /// The stored path up to and including the component that did not.
    stored_prefix: String,
    why: NameError,
}

/// Decrypts stored paths, each distinct component once (a listing repeats folder names in
/// every path below them).
pub(super) struct NameCache<'k> {
    keys: &'k Keys,
    seen: HashMap<String, std::result::Result<String, NameError>>,
}

impl<'k> NameCache<'k> {
    pub(super) fn new(keys: &'k Keys) -> Self {
        NameCache {
            keys,
            seen: HashMap::new(),
        }
    }

    pub(super) fn plain_path(
        &mut self,
        stored: &RelPath,
    ) -> std::result::Result<RelPath, PathFail> {
        let mut plain = RelPath::root();
        let mut prefix = String::new();
        for part in stored.components() {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            let keys = self.keys;
            let name = self
                .seen
                .entry(part.to_owned())
                .or_insert_with(|| name::decrypt_name(keys, part))
                .clone();
            // A name that is not one valid component in normal form was not written by us.
            let joined = name.and_then(|n| match plain.join(&n) {
                Ok(p) if p.name() == n => Ok(p),
                _ => Err(NameError::Damaged),
            });
            match joined {
                Ok(p) => plain = p,
                Err(why) => {
                    return Err(PathFail {
                        plain_parent: plain,
                        stored_prefix: prefix,
                        why,
                    })
                }
            }
        }
        Ok(plain)
    }
}

/// Stored names of a listing that give no plain name: each reported once (not once per
/// entry below it), and the plain folders holding damaged ones marked incomplete.
#[derive(Default)]
pub(super) struct BadNames {
    reported: HashSet<String>,
    pub(super) reports: Vec<(String, String)>,
    pub(super) incomplete: BTreeSet<RelPath>,
}

impl BadNames {
    pub(super) fn note(&mut self, fail: PathFail) {
        // Everything below a bad name fails at that same name: one report covers them all.
        if !self.reported.insert(fail.stored_prefix.clone()) {
            return;
        }
        // Foreign names never stood for a plain file; a damaged one may have: nothing in
        // its folder may be taken as deleted.
        if fail.why == NameError::Damaged {
            self.incomplete.insert(fail.plain_parent.clone());
        }
        let under = if fail.plain_parent.is_root() {
            String::new()
        } else {
            format!(" (in {})", fail.plain_parent)
        };
        self.reports
            .push((fail.stored_prefix, format!("{}{under}", fail.why)));
    }
}
