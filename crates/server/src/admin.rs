//! Administration of users and folders, shared by `cairn server user|folder ... --data DIR` on
//! the server itself and the administrators' API (`/api/v1/admin/...`), so both check the same
//! rules: valid names, at least one version kept, and an administrator who cannot lock
//! themselves out (disable or demote their own account).

use cairn_protocol::{is_valid_name, Access};
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::meta::SqliteMeta;
use crate::{Error, Result};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    /// Most bytes the user's uploads may take; `None`: no limit.
    pub quota: Option<u64>,
    pub used_bytes: u64,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub quota: Option<u64>,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("admin", &self.admin)
            .field("quota", &self.quota)
            .finish()
    }
}

/// Changes to a user; what is `None` stays.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct UserChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    /// A new quota in bytes; with `no_quota`, the quota is lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    #[serde(default)]
    pub no_quota: bool,
}

impl std::fmt::Debug for UserChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserChange")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("disabled", &self.disabled)
            .field("admin", &self.admin)
            .field("quota", &self.quota)
            .field("no_quota", &self.no_quota)
            .finish()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FolderAdminInfo {
    pub name: String,
    pub keep_versions: u32,
    pub head: i64,
    /// (user, `rw` or `ro`)
    pub grants: Vec<(String, String)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewFolder {
    pub name: String,
    pub keep_versions: u32,
}

/// A user's access to a folder: `rw`, `ro`, or `None` to take it away.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GrantChange {
    pub user: String,
    pub access: Option<String>,
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid {what} name {name:?}: use 1-64 letters, digits, '.', '_' or '-'"
        )))
    }
}

fn hashed(password: &str) -> Result<String> {
    if password.is_empty() || password.len() > 1024 {
        return Err(Error::Invalid("a password has 1 to 1024 bytes".into()));
    }
    auth::hash_password(password)
}

/// # Errors
/// A bad name or password, a name taken, or the store.
pub fn add_user(meta: &SqliteMeta, u: &NewUser) -> Result<()> {
    check_name("user", &u.name)?;
    meta.add_user(&u.name, &hashed(&u.password)?, u.admin)?;
    if u.quota.is_some() {
        meta.set_quota(&u.name, u.quota)?;
    }
    Ok(())
}

/// Changes user `name`; `acting` is the administrator asking (None: the server's own console),
/// who may not disable or demote themselves.
///
/// # Errors
/// No such user, a refused change, or the store.
pub fn change_user(
    meta: &SqliteMeta,
    name: &str,
    c: &UserChange,
    acting: Option<&str>,
) -> Result<()> {
    let (user, _) = meta
        .user_by_name(name)?
        .ok_or_else(|| Error::NotFound(format!("no user named {name}")))?;
    if acting == Some(name) && (c.disabled == Some(true) || c.admin == Some(false)) {
        return Err(Error::Invalid(
            "you may not disable or demote your own account; ask another administrator".into(),
        ));
    }
    if let Some(pw) = &c.password {
        meta.set_password(name, &hashed(pw)?)?;
    }
    if let Some(d) = c.disabled.filter(|d| *d != user.disabled) {
        meta.set_disabled(name, d)?;
    }
    if let Some(a) = c.admin.filter(|a| *a != user.admin) {
        meta.set_admin(name, a)?;
    }
    if c.no_quota {
        meta.set_quota(name, None)?;
    } else if c.quota.is_some() {
        meta.set_quota(name, c.quota)?;
    }
    Ok(())
}

/// # Errors
/// The store.
pub fn users(meta: &SqliteMeta) -> Result<Vec<UserInfo>> {
    Ok(meta
        .users()?
        .into_iter()
        .map(|u| UserInfo {
            name: u.name,
            admin: u.admin,
            disabled: u.disabled,
            quota: u.quota,
            used_bytes: u.used_bytes,
        })
        .collect())
}

/// # Errors
/// A bad name, no version kept, a name taken, or the store.
pub fn add_folder(meta: &SqliteMeta, f: &NewFolder) -> Result<()> {
    check_name("folder", &f.name)?;
    if f.keep_versions == 0 {
        return Err(Error::Invalid(
            "a folder keeps at least 1 version per file".into(),
        ));
    }
    meta.add_folder(&f.name, f.keep_versions)
}

/// # Errors
/// No such folder, no version kept, or the store.
pub fn set_keep_versions(meta: &SqliteMeta, name: &str, keep: u32) -> Result<()> {
    if keep == 0 {
        return Err(Error::Invalid(
            "a folder keeps at least 1 version per file".into(),
        ));
    }
    meta.set_keep_versions(name, keep)
}

/// # Errors
/// No such folder or user, a bad access word, or the store.
pub fn set_grant(meta: &SqliteMeta, folder: &str, g: &GrantChange) -> Result<()> {
    match g.access.as_deref() {
        None => meta.revoke(folder, &g.user),
        Some(word) => {
            let access = Access::parse(word)
                .ok_or_else(|| Error::Invalid(format!("access {word:?}: use rw or ro")))?;
            meta.grant(folder, &g.user, access)
        }
    }
}

/// # Errors
/// The store.
pub fn folders(meta: &SqliteMeta) -> Result<Vec<FolderAdminInfo>> {
    Ok(meta
        .folders()?
        .into_iter()
        .map(|(f, grants)| FolderAdminInfo {
            name: f.name,
            keep_versions: f.keep_versions,
            head: f.head.0,
            grants: grants
                .into_iter()
                .map(|(u, a)| (u, a.as_str().to_string()))
                .collect(),
        })
        .collect())
}

/// Deletes a user (see [`SqliteMeta::remove_user`]); `acting` may not delete themselves.
///
/// # Errors
/// No such user, deleting oneself, or the store.
pub fn remove_user(meta: &SqliteMeta, name: &str, acting: Option<&str>) -> Result<()> {
    check_name("user", name)?;
    if acting == Some(name) {
        return Err(Error::Invalid(
            "you may not delete your own account; ask another administrator".into(),
        ));
    }
    meta.remove_user(name)
}

/// Deletes a folder with every version in it (see [`SqliteMeta::remove_folder`]).
///
/// # Errors
/// No such folder, or the store.
pub fn remove_folder(meta: &SqliteMeta, name: &str) -> Result<()> {
    check_name("folder", name)?;
    meta.remove_folder(name)
}
