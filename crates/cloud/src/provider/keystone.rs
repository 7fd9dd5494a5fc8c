//! Which OpenStack Keystone login a Swift connection makes, and which options each version takes
//! (seed 002 "OpenStack Swift compatible cloud services"):
//!
//! - 1.0: user name and API key;
//! - 2.0: user name, password, and optionally a tenant (id or name);
//! - 3.0: user name, password, optionally a tenant/project and a domain (id or name).
//!
//! The presets fix the version their service speaks (SoftLayer and Rackspace 1.0, OVH 3.0, seed
//! 003's "Use Identity V3 API"); a generic Swift connection names it with `--keystone`. The login
//! itself belongs to the connection code, which hands OpenDAL the storage URL and token it gets.

use std::fmt;

use super::{OptionKey, Provider, RuleError, SwiftPreset};

/// A Keystone (identity) API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeystoneVersion {
    V1,
    V2,
    V3,
}

impl KeystoneVersion {
    /// The version for `--keystone` (`1`, `2`, `3`, also `v2`, `2.0`, `v3.0`).
    pub fn parse(raw: &str) -> Option<KeystoneVersion> {
        let lower = raw.trim().to_ascii_lowercase();
        let digits = lower.strip_prefix('v').unwrap_or(&lower);
        match digits.strip_suffix(".0").unwrap_or(digits) {
            "1" => Some(KeystoneVersion::V1),
            "2" => Some(KeystoneVersion::V2),
            "3" => Some(KeystoneVersion::V3),
            _ => None,
        }
    }

    /// Whether this version takes an option (the others a Swift connection may give apply to
    /// every version).
    fn takes(self, key: OptionKey) -> bool {
        match key {
            OptionKey::Tenant => self != KeystoneVersion::V1,
            OptionKey::Domain => self == KeystoneVersion::V3,
            _ => true,
        }
    }
}

impl fmt::Display for KeystoneVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeystoneVersion::V1 => "1.0",
            KeystoneVersion::V2 => "2.0",
            KeystoneVersion::V3 => "3.0",
        })
    }
}

impl SwiftPreset {
    /// The Keystone version the preset's service speaks; `None` for a generic Swift service.
    pub fn keystone(self) -> Option<KeystoneVersion> {
        match self {
            SwiftPreset::Generic => None,
            SwiftPreset::SoftLayer | SwiftPreset::Rackspace | SwiftPreset::RackspaceUk => {
                Some(KeystoneVersion::V1)
            }
            SwiftPreset::Ovh => Some(KeystoneVersion::V3),
        }
    }
}

impl Provider {
    /// The Keystone version a Swift connection logs in with, from `--keystone` or the preset,
    /// checked against the options given (a tenant needs 2.0 or 3.0, a domain 3.0).
    ///
    /// # Errors
    /// Not a Swift provider, an unknown or missing version, a version other than the preset's,
    /// or an option the version does not take.
    pub fn keystone(
        self,
        given: Option<&str>,
        options: &[OptionKey],
    ) -> Result<KeystoneVersion, RuleError> {
        let problem = |problem: String| RuleError::Option {
            provider: self.display_name(),
            problem,
        };
        let Provider::Swift(preset) = self else {
            return Err(problem(
                "the service does not log in through Keystone".into(),
            ));
        };
        let parsed =
            match given {
                Some(raw) => Some(KeystoneVersion::parse(raw).ok_or_else(|| {
                    problem(format!("--keystone `{raw}`: the version is 1, 2 or 3"))
                })?),
                None => None,
            };
        let version = match (preset.keystone(), parsed) {
            (Some(fixed), Some(asked)) if fixed != asked => {
                return Err(problem(format!(
                    "the service speaks Keystone {fixed}, not {asked}"
                )))
            }
            (Some(fixed), _) => fixed,
            (None, Some(asked)) => asked,
            (None, None) => {
                return Err(problem(
                    "--keystone is required (1, 2 or 3: ask the service which it supports)".into(),
                ))
            }
        };
        if let Some(key) = options.iter().find(|k| !version.takes(**k)) {
            return Err(problem(format!(
                "{key} is not used by a Keystone {version} login"
            )));
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_any_spelling() {
        for (raw, v) in [
            ("1", KeystoneVersion::V1),
            ("v2", KeystoneVersion::V2),
            ("2.0", KeystoneVersion::V2),
            ("V3.0", KeystoneVersion::V3),
        ] {
            assert_eq!(KeystoneVersion::parse(raw), Some(v), "{raw}");
        }
        assert_eq!(KeystoneVersion::parse("4"), None);
        assert_eq!(KeystoneVersion::parse(""), None);
    }

    #[test]
    fn presets_fix_the_version_and_generic_swift_asks_for_it() {
        use OptionKey::*;
        let base = [User, Password, Container];
        let ovh = Provider::Swift(SwiftPreset::Ovh);
        assert_eq!(ovh.keystone(None, &base), Ok(KeystoneVersion::V3));
        assert_eq!(ovh.keystone(Some("3"), &base), Ok(KeystoneVersion::V3));
        let clash = ovh
            .keystone(Some("2"), &base)
            .expect_err("OVH speaks 3.0")
            .to_string();
        assert_eq!(
            clash,
            "OVH Object Storage: the service speaks Keystone 3.0, not 2.0"
        );
        let generic = Provider::Swift(SwiftPreset::Generic);
        assert!(generic.keystone(None, &base).is_err());
        assert_eq!(generic.keystone(Some("2"), &base), Ok(KeystoneVersion::V2));
        let bad = generic
            .keystone(Some("9"), &base)
            .expect_err("no such version")
            .to_string();
        assert!(bad.contains("--keystone `9`"), "{bad}");
        assert!(Provider::B2.keystone(Some("1"), &[]).is_err());
    }

    #[test]
    fn tenant_and_domain_follow_the_version() {
        use OptionKey::*;
        let generic = Provider::Swift(SwiftPreset::Generic);
        assert!(generic.keystone(Some("3"), &[User, Tenant, Domain]).is_ok());
        assert!(generic.keystone(Some("2"), &[User, Tenant]).is_ok());
        let err = generic
            .keystone(Some("2"), &[User, Tenant, Domain])
            .expect_err("domains are 3.0")
            .to_string();
        assert_eq!(
            err,
            "OpenStack Swift: --domain is not used by a Keystone 2.0 login"
        );
        let rackspace = Provider::Swift(SwiftPreset::Rackspace);
        assert!(rackspace.keystone(None, &[User, Tenant]).is_err());
    }
}
