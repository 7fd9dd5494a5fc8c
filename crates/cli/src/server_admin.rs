//! `cairn server user ...` and `cairn server folder ...`: on the server itself with `--data DIR`,
//! or from anywhere with `--connection NAME`, a saved connection of an administrator (through
//! `/api/v1/admin/...`). Both go through `cairn_server::admin`, so the rules are the same.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use cairn_client::Connection;
use cairn_server::admin::{
    self, FolderAdminInfo, GrantChange, NewFolder, NewUser, UserChange, UserInfo,
};
use cairn_server::meta::Actor;
use cairn_server::{auth, DataDir};
use clap::{Args, Subcommand};

use crate::config::read_stdin_line;

/// Which server: its data folder here, or a saved connection of an administrator.
#[derive(Args)]
pub(crate) struct AdminTarget {
    /// The server's data folder (on the server itself).
    #[arg(long, env = "CAIRN_DATA", default_value = "cairn-data")]
    data: PathBuf,
    /// The server's PostgreSQL metadata, when it has it there (as `server run --metadata`).
    #[arg(long, env = "CAIRN_METADATA", value_name = "URL")]
    metadata: Option<String>,
    /// A saved connection (`cairn connect`) of an administrator, to administer a remote
    /// server instead.
    #[arg(long)]
    connection: Option<String>,
}

/// Where a data folder's metadata is, from a `--metadata` URL (none: its own SQLite file).
pub(crate) fn metadata_choice(url: Option<&str>) -> Result<cairn_server::StoreChoice> {
    Ok(cairn_server::StoreChoice {
        metadata: url.map(cairn_server::meta::PgAddress::parse).transpose()?,
        ..Default::default()
    })
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Adds a user (an administrator with --admin).
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input (otherwise a random one is made and printed).
        #[arg(long)]
        password_stdin: bool,
        /// Most bytes the user's uploads may take (`500M`, `20G`, `none`; default: none).
        #[arg(long, value_parser = parse_quota)]
        quota: Option<Quota>,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Sets or lifts a user's quota (`500M`, `20G`, `none`).
    Quota {
        name: String,
        #[arg(value_parser = parse_quota)]
        quota: Quota,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Users with their use against their quota.
    List {
        #[command(flatten)]
        target: AdminTarget,
        /// As JSON (fields in docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Sets a user's password; their sessions end.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Disables a user: their sessions end and they cannot log in; nothing is deleted.
    Disable {
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Enables a disabled user again.
    Enable {
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Deletes a user: their sessions, access, computers, links and cloud tasks go; what
    /// they committed stays in the folders. Give the name twice (`--confirm NAME`).
    Remove {
        name: String,
        #[arg(long, value_name = "NAME")]
        confirm: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Makes a user an administrator (`admin`) or not (`user`).
    Role {
        name: String,
        #[arg(value_parser = ["admin", "user"])]
        role: String,
        #[command(flatten)]
        target: AdminTarget,
    },
}

#[derive(Subcommand)]
pub enum FolderCmd {
    /// Adds a shared folder (no one has access until granted).
    Add {
        name: String,
        /// Versions kept per file.
        #[arg(long, default_value_t = 32)]
        keep_versions: u32,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Folders with their retention and who may use them.
    List {
        #[command(flatten)]
        target: AdminTarget,
        /// As JSON (fields in docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Gives a user read-write (`rw`) or read-only (`ro`) access to a folder.
    Grant {
        folder: String,
        user: String,
        #[arg(long, value_parser = ["rw", "ro"])]
        access: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Changes how many versions per file a folder keeps.
    Set {
        name: String,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        keep_versions: u32,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Takes a user's access to a folder away; nothing in it is deleted.
    Revoke {
        folder: String,
        user: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Deletes a folder and EVERY VERSION in it (its chunks are freed by the next gc). Give
    /// the name twice (`--confirm NAME`).
    Remove {
        name: String,
        #[arg(long, value_name = "NAME")]
        confirm: String,
        #[command(flatten)]
        target: AdminTarget,
    },
}

/// A quota in bytes; `None` for no limit.
#[derive(Clone, Copy, Debug)]
pub struct Quota(Option<u64>);

/// Parses `none`, a byte count, or a count with a K, M, G or T suffix (powers of 1024).
fn parse_quota(text: &str) -> Result<Quota, String> {
    crate::config::parse_size(text).map(Quota)
}

fn quota_change(q: Quota) -> UserChange {
    UserChange {
        quota: q.0,
        no_quota: q.0.is_none(),
        ..UserChange::default()
    }
}

/// The server the commands go to.
pub(crate) enum Admin {
    Local(DataDir),
    Remote(Arc<Connection>),
}

impl Admin {
    pub(crate) fn open(t: &AdminTarget) -> Result<Admin> {
        match &t.connection {
            Some(name) => {
                let home = crate::config::Home::locate()?;
                let config = home.load()?;
                Ok(Admin::Remote(home.connection(&config, name)?))
            }
            None => {
                let choice = metadata_choice(t.metadata.as_deref())?;
                Ok(Admin::Local(DataDir::open_with(&t.data, &choice)?))
            }
        }
    }

    async fn post<B: serde::Serialize>(conn: &Connection, path: &str, body: &B) -> Result<()> {
        let _: serde_json::Value = conn.admin_post(path, body).await?;
        Ok(())
    }

    async fn add_user(&self, u: &NewUser) -> Result<()> {
        match self {
            Admin::Local(d) => Ok(admin::add_user(&d.meta, u, &Actor::console())?),
            Admin::Remote(c) => Self::post(c, "/api/v1/admin/users", u).await,
        }
    }

    async fn change_user(&self, name: &str, change: &UserChange) -> Result<()> {
        match self {
            Admin::Local(d) => Ok(admin::change_user(
                &d.meta,
                name,
                change,
                &Actor::console(),
            )?),
            Admin::Remote(c) => Self::post(c, &format!("/api/v1/admin/users/{name}"), change).await,
        }
    }

    async fn users(&self) -> Result<Vec<UserInfo>> {
        match self {
            Admin::Local(d) => Ok(admin::users(&d.meta)?),
            Admin::Remote(c) => Ok(c.admin_get("/api/v1/admin/users", &[]).await?),
        }
    }

    async fn add_folder(&self, f: &NewFolder) -> Result<()> {
        match self {
            Admin::Local(d) => Ok(admin::add_folder(&d.meta, f, &Actor::console())?),
            Admin::Remote(c) => Self::post(c, "/api/v1/admin/folders", f).await,
        }
    }

    async fn set_keep_versions(&self, name: &str, keep: u32) -> Result<()> {
        match self {
            Admin::Local(d) => Ok(admin::set_keep_versions(
                &d.meta,
                name,
                keep,
                &Actor::console(),
            )?),
            Admin::Remote(c) => {
                let body = serde_json::json!({ "keep_versions": keep });
                Self::post(c, &format!("/api/v1/admin/folders/{name}"), &body).await
            }
        }
    }

    async fn set_grant(&self, folder: &str, g: &GrantChange) -> Result<()> {
        match self {
            Admin::Local(d) => Ok(admin::set_grant(&d.meta, folder, g, &Actor::console())?),
            Admin::Remote(c) => {
                Self::post(c, &format!("/api/v1/admin/folders/{folder}/grants"), g).await
            }
        }
    }

    async fn remove(&self, what: &str, name: &str) -> Result<()> {
        match self {
            Admin::Local(d) if what == "users" => {
                Ok(admin::remove_user(&d.meta, name, &Actor::console())?)
            }
            Admin::Local(d) => Ok(admin::remove_folder(&d.meta, name, &Actor::console())?),
            Admin::Remote(c) => Ok(c
                .admin_delete(&format!("/api/v1/admin/{what}/{name}"), &[])
                .await?),
        }
    }

    async fn folders(&self) -> Result<Vec<FolderAdminInfo>> {
        match self {
            Admin::Local(d) => Ok(admin::folders(&d.meta)?),
            Admin::Remote(c) => Ok(c.admin_get("/api/v1/admin/folders", &[]).await?),
        }
    }
}

/// The password to set: from stdin, or a new random one (then printed).
fn password(from_stdin: bool) -> Result<(String, bool)> {
    if from_stdin {
        Ok((read_stdin_line()?, false))
    } else {
        Ok((auth::random_password(), true))
    }
}

/// Refuses a name that could not be a user or folder, before it becomes part of a URL.
fn check(what: &str, name: &str) -> Result<()> {
    if cairn_protocol::is_valid_name(name) {
        Ok(())
    } else {
        anyhow::bail!("invalid {what} name {name:?}: use 1-64 letters, digits, '.', '_' or '-'")
    }
}

pub async fn user(cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Add {
            name,
            admin,
            password_stdin,
            quota,
            target,
        } => {
            check("user", &name)?;
            let server = Admin::open(&target)?;
            let (pw, made) = password(password_stdin)?;
            let new = NewUser {
                name: name.clone(),
                password: pw.clone(),
                admin,
                quota: quota.and_then(|q| q.0),
            };
            server.add_user(&new).await?;
            if made {
                println!("added user {name} with password {pw}");
            } else {
                println!("added user {name}");
            }
        }
        UserCmd::List { target, json } => {
            let users = Admin::open(&target)?.users().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
                return Ok(());
            }
            for u in users {
                let mut flags = Vec::new();
                if u.admin {
                    flags.push("admin");
                }
                if u.disabled {
                    flags.push("disabled");
                }
                if u.directory.is_some() {
                    flags.push("directory");
                }
                let quota = u
                    .quota
                    .map_or("no quota".to_string(), |q| format!("of {q}"));
                println!(
                    "{}\t{}\t{} bytes used {quota}",
                    u.name,
                    flags.join(","),
                    u.used_bytes
                );
            }
        }
        UserCmd::Quota {
            name,
            quota,
            target,
        } => {
            check("user", &name)?;
            Admin::open(&target)?
                .change_user(&name, &quota_change(quota))
                .await?;
            match quota.0 {
                Some(q) => println!("quota of {name}: {q} bytes"),
                None => println!("{name} has no quota"),
            }
        }
        UserCmd::Passwd {
            name,
            password_stdin,
            target,
        } => {
            check("user", &name)?;
            let server = Admin::open(&target)?;
            let (pw, made) = password(password_stdin)?;
            let change = UserChange {
                password: Some(pw.clone()),
                ..UserChange::default()
            };
            server.change_user(&name, &change).await?;
            if made {
                println!("new password of {name}: {pw}");
            } else {
                println!("changed the password of {name}; its sessions are ended");
            }
        }
        UserCmd::Disable { name, target } => set_disabled(&name, &target, true).await?,
        UserCmd::Remove {
            name,
            confirm,
            target,
        } => {
            check("user", &name)?;
            confirmed(&name, &confirm)?;
            Admin::open(&target)?.remove("users", &name).await?;
            println!("deleted user {name}");
        }
        UserCmd::Enable { name, target } => set_disabled(&name, &target, false).await?,
        UserCmd::Role { name, role, target } => {
            check("user", &name)?;
            let change = UserChange {
                admin: Some(role == "admin"),
                ..UserChange::default()
            };
            Admin::open(&target)?.change_user(&name, &change).await?;
            println!(
                "{name} is now {}",
                if role == "admin" {
                    "an administrator"
                } else {
                    "a user"
                }
            );
        }
    }
    Ok(())
}

/// A deletion goes ahead only when the name was given twice the same.
fn confirmed(name: &str, confirm: &str) -> Result<()> {
    if name == confirm {
        Ok(())
    } else {
        anyhow::bail!("--confirm {confirm:?} is not {name:?}: nothing was deleted")
    }
}

async fn set_disabled(name: &str, target: &AdminTarget, disabled: bool) -> Result<()> {
    check("user", name)?;
    let change = UserChange {
        disabled: Some(disabled),
        ..UserChange::default()
    };
    Admin::open(target)?.change_user(name, &change).await?;
    if disabled {
        println!("disabled user {name}; its sessions are ended");
    } else {
        println!("enabled user {name}");
    }
    Ok(())
}

pub async fn folder(cmd: FolderCmd) -> Result<()> {
    match cmd {
        FolderCmd::Add {
            name,
            keep_versions,
            target,
        } => {
            check("folder", &name)?;
            let f = NewFolder {
                name: name.clone(),
                keep_versions,
            };
            Admin::open(&target)?.add_folder(&f).await?;
            println!("added folder {name} (keeps {keep_versions} versions per file)");
        }
        FolderCmd::List { target, json } => {
            let folders = Admin::open(&target)?.folders().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&folders)?);
                return Ok(());
            }
            for f in folders {
                let g: Vec<String> = f.grants.iter().map(|(u, a)| format!("{u}:{a}")).collect();
                println!(
                    "{}\tkeep {}\thead {}\t{}",
                    f.name,
                    f.keep_versions,
                    f.head,
                    g.join(" ")
                );
            }
        }
        FolderCmd::Grant {
            folder,
            user,
            access,
            target,
        } => {
            check("folder", &folder)?;
            let g = GrantChange {
                user: user.clone(),
                access: Some(access.clone()),
            };
            Admin::open(&target)?.set_grant(&folder, &g).await?;
            println!("granted {access} on {folder} to {user}");
        }
        FolderCmd::Revoke {
            folder,
            user,
            target,
        } => {
            check("folder", &folder)?;
            let g = GrantChange {
                user: user.clone(),
                access: None,
            };
            Admin::open(&target)?.set_grant(&folder, &g).await?;
            println!("revoked {user}'s access to {folder}");
        }
        FolderCmd::Set {
            name,
            keep_versions,
            target,
        } => {
            check("folder", &name)?;
            Admin::open(&target)?
                .set_keep_versions(&name, keep_versions)
                .await
                .with_context(|| format!("folder {name}"))?;
            println!("{name} keeps {keep_versions} versions per file from its next change on");
        }
        FolderCmd::Remove {
            name,
            confirm,
            target,
        } => {
            check("folder", &name)?;
            confirmed(&name, &confirm)?;
            Admin::open(&target)?.remove("folders", &name).await?;
            println!("deleted folder {name} and its versions; `cairn server gc` frees their space");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_with_units_or_none() {
        assert_eq!(parse_quota("none").map(|q| q.0), Ok(None));
        assert_eq!(parse_quota("1024").map(|q| q.0), Ok(Some(1024)));
        assert_eq!(parse_quota("1K").map(|q| q.0), Ok(Some(1024)));
        assert_eq!(parse_quota("20G").map(|q| q.0), Ok(Some(20 << 30)));
        assert_eq!(parse_quota("3MiB").map(|q| q.0), Ok(Some(3 << 20)));
        assert!(parse_quota("-5").is_err());
        assert!(parse_quota("12X").is_err());
        assert!(parse_quota("99999999999T").is_err(), "overflow is refused");
    }
}
