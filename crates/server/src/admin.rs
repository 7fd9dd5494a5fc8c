//! Administration of users and folders, shared by `cairn server user|folder ... --data DIR` on
//! the server itself and the administrators' API (`/api/v1/admin/...`), so both check the same
//! rules: valid names, at least one version kept, and an administrator who cannot lock
//! themselves out (disable or demote their own account). Each change done is recorded in
//! the activity log with who asked ([`Actor`]); a password never is.

use cairn_protocol::{is_valid_name, Access};
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::meta::{Actor, EventFilter, EventKind, EventPage, Meta, Outcome};
use crate::{Error, Result};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    /// Most bytes the user's uploads may take; `None`: no limit.
    pub quota: Option<u64>,
    pub used_bytes: u64,
    /// The base DN of the directory that checks their password; absent for a local account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
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

fn quota_text(quota: Option<u64>) -> String {
    quota.map_or_else(|| "no quota".into(), |q| format!("quota {q} bytes"))
}

/// # Errors
/// A bad name or password, a name taken, or the store.
pub fn add_user(meta: &Meta, u: &NewUser, by: &Actor) -> Result<()> {
    check_name("user", &u.name)?;
    meta.add_user(&u.name, &hashed(&u.password)?, u.admin)?;
    if u.quota.is_some() {
        meta.set_quota(&u.name, u.quota)?;
    }
    let role = if u.admin { "administrator" } else { "user" };
    let detail = format!("{role}, {}", quota_text(u.quota));
    meta.record(EventKind::UserCreated, by, &u.name, Outcome::Ok, &detail);
    Ok(())
}

/// Changes user `name` as `by` asks; an administrator may not disable or demote themselves
/// (the server's own console, with no user, may).
///
/// # Errors
/// No such user, a refused change, or the store.
pub fn change_user(meta: &Meta, name: &str, c: &UserChange, by: &Actor) -> Result<()> {
    let (user, _) = meta
        .user_by_name(name)?
        .ok_or_else(|| Error::NotFound(format!("no user named {name}")))?;
    if by.name() == Some(name) && (c.disabled == Some(true) || c.admin == Some(false)) {
        return Err(Error::Invalid(
            "you may not disable or demote your own account; ask another administrator".into(),
        ));
    }
    let done = |kind, detail: &str| meta.record(kind, by, name, Outcome::Ok, detail);
    if let Some(pw) = &c.password {
        meta.set_password(name, &hashed(pw)?)?;
        done(EventKind::UserPassword, "new password; sessions ended");
    }
    if let Some(d) = c.disabled.filter(|d| *d != user.disabled) {
        meta.set_disabled(name, d)?;
        if d {
            done(EventKind::UserDisabled, "sessions ended");
        } else {
            done(EventKind::UserEnabled, "");
        }
    }
    if let Some(a) = c.admin.filter(|a| *a != user.admin) {
        meta.set_admin(name, a)?;
        done(
            EventKind::UserAdmin,
            if a {
                "now an administrator"
            } else {
                "no longer an administrator"
            },
        );
    }
    let quota = if c.no_quota {
        Some(None)
    } else {
        c.quota.map(Some)
    };
    if let Some(q) = quota {
        meta.set_quota(name, q)?;
        done(EventKind::UserQuota, &quota_text(q));
    }
    Ok(())
}

/// # Errors
/// The store.
pub fn users(meta: &Meta) -> Result<Vec<UserInfo>> {
    Ok(meta
        .users()?
        .into_iter()
        .map(|u| UserInfo {
            name: u.name,
            admin: u.admin,
            disabled: u.disabled,
            quota: u.quota,
            used_bytes: u.used_bytes,
            directory: Some(u.directory).filter(|d| !d.is_empty()),
        })
        .collect())
}

/// # Errors
/// A bad name, no version kept, a name taken, or the store.
pub fn add_folder(meta: &Meta, f: &NewFolder, by: &Actor) -> Result<()> {
    check_name("folder", &f.name)?;
    if f.keep_versions == 0 {
        return Err(Error::Invalid(
            "a folder keeps at least 1 version per file".into(),
        ));
    }
    meta.add_folder(&f.name, f.keep_versions)?;
    let detail = format!("keeps {} versions per file", f.keep_versions);
    meta.record(EventKind::FolderCreated, by, &f.name, Outcome::Ok, &detail);
    Ok(())
}

/// # Errors
/// No such folder, no version kept, or the store.
pub fn set_keep_versions(meta: &Meta, name: &str, keep: u32, by: &Actor) -> Result<()> {
    if keep == 0 {
        return Err(Error::Invalid(
            "a folder keeps at least 1 version per file".into(),
        ));
    }
    meta.set_keep_versions(name, keep)?;
    let detail = format!("keeps {keep} versions per file");
    meta.record(EventKind::FolderRetention, by, name, Outcome::Ok, &detail);
    Ok(())
}

/// # Errors
/// No such folder or user, a bad access word, or the store.
pub fn set_grant(meta: &Meta, folder: &str, g: &GrantChange, by: &Actor) -> Result<()> {
    let detail = match g.access.as_deref() {
        None => {
            meta.revoke(folder, &g.user)?;
            format!("{}: no access", g.user)
        }
        Some(word) => {
            let access = Access::parse(word)
                .ok_or_else(|| Error::Invalid(format!("access {word:?}: use rw or ro")))?;
            meta.grant(folder, &g.user, access)?;
            format!("{}: {}", g.user, access.as_str())
        }
    };
    meta.record(EventKind::FolderGrant, by, folder, Outcome::Ok, &detail);
    Ok(())
}

/// # Errors
/// The store.
pub fn folders(meta: &Meta) -> Result<Vec<FolderAdminInfo>> {
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

/// Deletes a user (see [`Meta::remove_user`]); an administrator may not delete
/// themselves.
///
/// # Errors
/// No such user, deleting oneself, or the store.
pub fn remove_user(meta: &Meta, name: &str, by: &Actor) -> Result<()> {
    check_name("user", name)?;
    if by.name() == Some(name) {
        return Err(Error::Invalid(
            "you may not delete your own account; ask another administrator".into(),
        ));
    }
    meta.remove_user(name)?;
    meta.record(EventKind::UserDeleted, by, name, Outcome::Ok, "");
    Ok(())
}

/// Deletes a folder with every version in it (see [`Meta::remove_folder`]).
///
/// # Errors
/// No such folder, or the store.
pub fn remove_folder(meta: &Meta, name: &str, by: &Actor) -> Result<()> {
    check_name("folder", name)?;
    meta.remove_folder(name)?;
    meta.record(
        EventKind::FolderDeleted,
        by,
        name,
        Outcome::Ok,
        "with every version",
    );
    Ok(())
}

/// The activity log, newest first (see [`Meta::events`]).
///
/// # Errors
/// A bad filter, or the store.
pub fn events(meta: &Meta, filter: EventFilter) -> Result<EventPage> {
    meta.events(filter)
}
