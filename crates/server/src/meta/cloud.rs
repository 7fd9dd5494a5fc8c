//! Cloud connections and tasks of the server's users (see [`crate::cloud`]): kept in the
//! metadata store so a data folder carries them, with the secrets in their own column that no
//! listing reads, and encrypted tasks' keys in their own table that only the runner and an
//! export read.

use cairn_cloud::crypt::{self, MasterKey};
use cairn_cloud::{CloudConnection, Secrets};

use super::sql::{args, Row, Sql};
use super::{Meta, User};
use crate::cloud::{TaskRequest, TaskSettings, TaskStatus, MAX_PER_USER};
use crate::{Error, Result};

/// A saved connection with its secrets: for the runner only, never for an answer.
pub struct CloudConnectionRow {
    pub id: i64,
    pub owner_id: i64,
    pub owner: String,
    pub name: String,
    pub connection: CloudConnection,
    pub secrets: Secrets,
}

/// A task as stored.
#[derive(Clone, Debug)]
pub struct CloudTaskRow {
    pub id: i64,
    pub owner_id: i64,
    pub owner: String,
    pub name: String,
    pub folder: String,
    pub connection_id: i64,
    pub connection: String,
    pub settings: TaskSettings,
    pub status: TaskStatus,
    pub run_now: bool,
}

/// Recomputes each connection's `credential` from its saved config when it differs: what
/// identifies a credential can change between versions, and a stale value would let a second
/// connection with the same credential in. A config that no longer decodes keeps its value.
pub(super) fn refresh_credentials(db: &dyn Sql) -> Result<()> {
    let ctx = "refreshing cloud credentials";
    let rows = db.all(
        ctx,
        "SELECT id, config, credential FROM cloud_connections",
        args![],
        |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get::<String>(2)?)),
    )?;
    for (id, config, stored) in rows {
        let Ok(parsed) = serde_json::from_str::<CloudConnection>(&config) else {
            continue;
        };
        let now = parsed.credential_id();
        if now != stored {
            db.exec(
                ctx,
                "UPDATE cloud_connections SET credential=?1 WHERE id=?2",
                args![now, id],
            )?;
        }
    }
    Ok(())
}

fn json_col<T: serde::de::DeserializeOwned>(r: &dyn Row, i: usize) -> Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Corrupt(format!("a saved cloud setting does not read: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Invalid(format!("encoding settings: {e}")))
}

/// The id of `owner`'s connection `name`, if there is one.
fn connection_id(db: &dyn Sql, ctx: &str, owner: &User, name: &str) -> Result<Option<i64>> {
    db.opt(
        ctx,
        "SELECT id FROM cloud_connections WHERE owner=?1 AND name=?2",
        args![owner.id, name],
        |r| r.get(0),
    )
}

fn no_connection(owner: &User, name: &str) -> Error {
    Error::NotFound(format!(
        "no cloud connection named {name} for user {}",
        owner.name
    ))
}

fn no_task(owner: &User, name: &str) -> Error {
    Error::NotFound(format!(
        "no cloud task named {name} for user {}",
        owner.name
    ))
}

impl Meta {
    /// Saves `name` for `owner`, or with `edit` changes it (secrets not given stay). One
    /// connection per credential on the whole server (seed 002).
    ///
    /// # Errors
    /// A name taken (or missing, with `edit`), a credential used by another connection, too
    /// many connections, or the store.
    pub fn save_cloud_connection(
        &self,
        owner: &User,
        name: &str,
        conn: &CloudConnection,
        secrets: &Secrets,
        edit: bool,
    ) -> Result<()> {
        let ctx = "saving a cloud connection";
        self.write(ctx, |db| {
            save_connection_in(db, owner, name, conn, secrets, edit)
        })
    }

    /// Sets one secret of connection `id` (a renewed OAuth refresh token), keeping the others;
    /// a connection removed meanwhile is left alone.
    ///
    /// # Errors
    /// The store, or a row that does not decode.
    pub fn set_cloud_secret(&self, id: i64, key: &str, value: &str) -> Result<()> {
        let ctx = "saving a cloud connection's renewed token";
        self.write(ctx, |db| {
            let old: Option<String> = db.opt(
                ctx,
                "SELECT secrets FROM cloud_connections WHERE id=?1",
                args![id],
                |r| r.get(0),
            )?;
            let Some(old) = old else {
                return Ok(());
            };
            let mut secrets: Secrets =
                serde_json::from_str(&old).map_err(|e| Error::Invalid(format!("{ctx}: {e}")))?;
            secrets.0.insert(key.to_string(), value.to_string());
            db.exec(
                ctx,
                "UPDATE cloud_connections SET secrets=?1 WHERE id=?2",
                args![to_json(&secrets)?, id],
            )?;
            Ok(())
        })
    }

    /// Connections of `owner` (every user's with `None`), secrets included: callers that
    /// answer requests must drop them.
    ///
    /// # Errors
    /// The store, or a row that does not decode.
    pub fn cloud_connections(&self, owner: Option<i64>) -> Result<Vec<CloudConnectionRow>> {
        self.read(|db| {
            db.all(
                "listing cloud connections",
                "SELECT c.id, c.owner, u.name, c.name, c.config, c.secrets FROM cloud_connections c
             JOIN users u ON u.id=c.owner WHERE CAST(?1 AS BIGINT) IS NULL OR c.owner=?1 ORDER BY u.name, c.name",
                args![owner],
                |r| {
                    Ok(CloudConnectionRow {
                        id: r.get(0)?,
                        owner_id: r.get(1)?,
                        owner: r.get(2)?,
                        name: r.get(3)?,
                        connection: json_col(r, 4)?,
                        secrets: json_col(r, 5)?,
                    })
                },
            )
        })
    }

    /// # Errors
    /// No such connection, one still used by a task, or the store.
    pub fn remove_cloud_connection(&self, owner: &User, name: &str) -> Result<()> {
        let ctx = "removing a cloud connection";
        self.write(ctx, |db| {
            let id =
                connection_id(db, ctx, owner, name)?.ok_or_else(|| no_connection(owner, name))?;
            let users: Vec<String> = db.all(
                ctx,
                "SELECT name FROM cloud_tasks WHERE connection=?1 ORDER BY name",
                args![id],
                |r| r.get(0),
            )?;
            if !users.is_empty() {
                return Err(Error::Invalid(format!(
                    "connection {name} is used by task(s) {}; remove them first",
                    users.join(", ")
                )));
            }
            db.exec(ctx, "DELETE FROM cloud_connections WHERE id=?1", args![id])?;
            Ok(())
        })
    }

    /// Adds a task for `owner` over their connection `req.connection`, with its encryption
    /// key when it encrypts. Folder access is the caller's to check
    /// ([`crate::cloud::check_task`]).
    ///
    /// # Errors
    /// A name taken, no such connection, too many tasks, an encrypted task without its key
    /// (or a plain one with one), or the store.
    pub fn add_cloud_task(
        &self,
        owner: &User,
        req: &TaskRequest,
        key: Option<&MasterKey>,
    ) -> Result<()> {
        let ctx = "adding a cloud task";
        if req.settings.encrypt != key.is_some() {
            return Err(Error::Invalid(format!(
                "cloud task {}: an encrypted task is saved with its key, a plain one without",
                req.name
            )));
        }
        self.write(ctx, |db| add_cloud_task_in(db, owner, req, key))
    }

    /// The encryption key of task `id` (for the runner); `None` for a plain task.
    ///
    /// # Errors
    /// The store, or a kept key that does not read (never quoted).
    pub fn cloud_task_key(&self, id: i64) -> Result<Option<MasterKey>> {
        let text: Option<String> = self.read(|db| {
            db.opt(
                "reading a cloud task's key",
                "SELECT key FROM cloud_task_keys WHERE task=?1",
                args![id],
                |r| r.get(0),
            )
        })?;
        text.map(|t| {
            crypt::parse_key_text(t.as_bytes(), &format!("the key of cloud task #{id}"))
                .map_err(|e| Error::Invalid(e.to_string()))
        })
        .transpose()
    }

    /// The encryption key of `owner`'s task `name`, to export it.
    ///
    /// # Errors
    /// No such task, a task that does not encrypt, or the store.
    pub fn cloud_task_key_named(&self, owner: &User, name: &str) -> Result<MasterKey> {
        let id: i64 = self
            .read(|db| {
                db.opt(
                    "finding a cloud task",
                    "SELECT id FROM cloud_tasks WHERE owner=?1 AND name=?2",
                    args![owner.id, name],
                    |r| r.get(0),
                )
            })?
            .ok_or_else(|| no_task(owner, name))?;
        self.cloud_task_key(id)?.ok_or_else(|| {
            Error::Invalid(format!("cloud task {name} is not encrypted: it has no key"))
        })
    }

    /// Tasks of `owner` (every user's with `None`).
    ///
    /// # Errors
    /// The store, or a row that does not decode.
    pub fn cloud_tasks(&self, owner: Option<i64>) -> Result<Vec<CloudTaskRow>> {
        self.read(|db| {
            db.all(
                "listing cloud tasks",
                "SELECT t.id, t.owner, u.name, t.name, t.folder, t.connection, c.name, t.settings,
                    t.status, t.run_now
             FROM cloud_tasks t JOIN users u ON u.id=t.owner
             JOIN cloud_connections c ON c.id=t.connection
             WHERE CAST(?1 AS BIGINT) IS NULL OR t.owner=?1 ORDER BY u.name, t.name",
                args![owner],
                |r| {
                    Ok(CloudTaskRow {
                        id: r.get(0)?,
                        owner_id: r.get(1)?,
                        owner: r.get(2)?,
                        name: r.get(3)?,
                        folder: r.get(4)?,
                        connection_id: r.get(5)?,
                        connection: r.get(6)?,
                        settings: json_col(r, 7)?,
                        status: json_col(r, 8)?,
                        run_now: r.get(9)?,
                    })
                },
            )
        })
    }

    /// # Errors
    /// No such task, or the store.
    pub fn remove_cloud_task(&self, owner: &User, name: &str) -> Result<()> {
        let ctx = "removing a cloud task";
        let gone = self.write(ctx, |db| {
            // The key goes with its task: the password still opens the remote.
            db.exec(
                ctx,
                "DELETE FROM cloud_task_keys WHERE task IN
                 (SELECT id FROM cloud_tasks WHERE owner=?1 AND name=?2)",
                args![owner.id, name],
            )?;
            db.exec(
                ctx,
                "DELETE FROM cloud_tasks WHERE owner=?1 AND name=?2",
                args![owner.id, name],
            )
        })?;
        if gone == 0 {
            return Err(no_task(owner, name));
        }
        Ok(())
    }

    /// Asks the runner for a pass of the task soon (`cairn server cloud run`).
    ///
    /// # Errors
    /// No such task, or the store.
    pub fn request_cloud_run(&self, owner: &User, name: &str) -> Result<()> {
        let ctx = "asking for a cloud pass";
        let asked = self.write(ctx, |db| {
            db.exec(
                ctx,
                "UPDATE cloud_tasks SET run_now=1 WHERE owner=?1 AND name=?2",
                args![owner.id, name],
            )
        })?;
        if asked == 0 {
            return Err(no_task(owner, name));
        }
        Ok(())
    }

    /// Takes a request for a pass (made by `run` or by adding the task): true once per request.
    ///
    /// # Errors
    /// The store.
    pub fn take_cloud_run(&self, id: i64) -> Result<bool> {
        let ctx = "taking a request for a cloud pass";
        let taken = self.write(ctx, |db| {
            db.exec(
                ctx,
                "UPDATE cloud_tasks SET run_now=0 WHERE id=?1 AND run_now=1",
                args![id],
            )
        })?;
        Ok(taken > 0)
    }

    /// Records how a pass went.
    ///
    /// # Errors
    /// The store.
    pub fn finish_cloud_pass(&self, id: i64, status: &TaskStatus) -> Result<()> {
        let ctx = "recording a cloud pass";
        let status = to_json(status)?;
        self.write(ctx, |db| {
            db.exec(
                ctx,
                "UPDATE cloud_tasks SET status=?1 WHERE id=?2",
                args![status, id],
            )
        })?;
        Ok(())
    }
}

/// [`Meta::save_cloud_connection`] inside its transaction.
fn save_connection_in(
    db: &dyn Sql,
    owner: &User,
    name: &str,
    conn: &CloudConnection,
    secrets: &Secrets,
    edit: bool,
) -> Result<()> {
    let ctx = "saving a cloud connection";
    let credential = conn.credential_id();
    let existing: Option<(i64, String)> = db.opt(
        ctx,
        "SELECT id, secrets FROM cloud_connections WHERE owner=?1 AND name=?2",
        args![owner.id, name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let clash: Option<(i64, String, i64)> = db.opt(
        ctx,
        "SELECT owner, name, id FROM cloud_connections WHERE credential=?1",
        args![credential],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if let Some((other_owner, other, id)) = clash {
        if existing.as_ref().map(|e| e.0) != Some(id) {
            return Err(Error::Invalid(if other_owner == owner.id {
                format!("connection {other} already uses this credential; use it (or edit it) instead of adding a second one")
            } else {
                "another connection on this server already uses this credential".into()
            }));
        }
    }
    match (existing, edit) {
        (Some(_), false) => Err(Error::Invalid(format!(
            "a cloud connection named {name} exists already for user {}",
            owner.name
        ))),
        (None, true) => Err(no_connection(owner, name)),
        (Some((id, old)), true) => {
            let mut merged: Secrets = serde_json::from_str(&old).unwrap_or_default();
            merged.0.extend(secrets.0.clone());
            db.exec(
                ctx,
                "UPDATE cloud_connections SET config=?1, secrets=?2, credential=?3 WHERE id=?4",
                args![to_json(conn)?, to_json(&merged)?, credential, id],
            )?;
            Ok(())
        }
        (None, false) => {
            let count: i64 = db
                .opt(
                    ctx,
                    "SELECT COUNT(*) FROM cloud_connections WHERE owner=?1",
                    args![owner.id],
                    |r| r.get(0),
                )?
                .unwrap_or(0);
            if count >= MAX_PER_USER {
                return Err(Error::Invalid(format!(
                    "user {} has {MAX_PER_USER} cloud connections, the most allowed",
                    owner.name
                )));
            }
            db.exec(
                ctx,
                "INSERT INTO cloud_connections(owner, name, config, secrets, credential) VALUES(?1, ?2, ?3, ?4, ?5)",
                args![owner.id, name, to_json(conn)?, to_json(secrets)?, credential],
            )?;
            Ok(())
        }
    }
}

/// [`Meta::add_cloud_task`] inside its transaction.
fn add_cloud_task_in(
    tx: &dyn Sql,
    owner: &User,
    req: &TaskRequest,
    key: Option<&MasterKey>,
) -> Result<()> {
    let ctx = "adding a cloud task";
    let connection = connection_id(tx, ctx, owner, &req.connection)?
        .ok_or_else(|| no_connection(owner, &req.connection))?;
    let (taken, count): (bool, i64) = tx
        .opt(
            ctx,
            "SELECT COALESCE(MAX(CASE WHEN name=?2 THEN 1 ELSE 0 END), 0), COUNT(*)
             FROM cloud_tasks WHERE owner=?1",
            args![owner.id, req.name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .unwrap_or((false, 0));
    if taken {
        return Err(Error::Invalid(format!(
            "a cloud task named {} exists already for user {}",
            req.name, owner.name
        )));
    }
    if count >= MAX_PER_USER {
        return Err(Error::Invalid(format!(
            "user {} has {MAX_PER_USER} cloud tasks, the most allowed",
            owner.name
        )));
    }
    let id: i64 = tx
        .opt(
            ctx,
            "INSERT INTO cloud_tasks(owner, name, folder, connection, settings, run_now)
             VALUES(?1, ?2, ?3, ?4, ?5, 1) RETURNING id",
            args![
                owner.id,
                req.name,
                req.folder,
                connection,
                to_json(&req.settings)?
            ],
            |r| r.get(0),
        )?
        .ok_or_else(|| Error::Corrupt("a new cloud task got no id".into()))?;
    if let Some(key) = key {
        tx.exec(
            ctx,
            "INSERT INTO cloud_task_keys(task, key) VALUES(?1, ?2)
             ON CONFLICT(task) DO UPDATE SET key=excluded.key",
            args![id, crypt::key_text(key)],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A renewed token replaces its secret alone; a connection removed meanwhile is no error.
    #[test]
    fn a_renewed_token_replaces_only_its_own_secret() {
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = Meta::open(&dir.path().join("meta.sqlite")).expect("open");
        meta.add_user("alice", "hash", false).expect("user");
        let (alice, _) = meta.user_by_name("alice").expect("read").expect("alice");
        let conn = CloudConnection {
            provider: "onedrive".into(),
            options: BTreeMap::from([("client_id".to_string(), "app".to_string())]),
            secrets: vec!["client_secret".into(), "refresh_token".into()],
            prompt: vec![],
            ca_file: None,
            limit_upload: None,
            limit_download: None,
            public_only: false,
        };
        let secrets = Secrets(BTreeMap::from([
            ("client_secret".to_string(), "app-secret".to_string()),
            ("refresh_token".to_string(), "old".to_string()),
        ]));
        meta.save_cloud_connection(&alice, "od", &conn, &secrets, false)
            .expect("save");
        let id = meta.cloud_connections(Some(alice.id)).expect("list")[0].id;
        meta.set_cloud_secret(id, "refresh_token", "renewed")
            .expect("renew");
        let row = &meta.cloud_connections(Some(alice.id)).expect("list")[0];
        assert_eq!(row.secrets.0["refresh_token"], "renewed");
        assert_eq!(row.secrets.0["client_secret"], "app-secret");
        assert_eq!(row.connection, conn);
        meta.set_cloud_secret(id + 100, "refresh_token", "x")
            .expect("a connection gone is no error");
    }

    /// Regression: a credential stored by a version that computed it differently let a second
    /// connection with the same credential in.
    #[test]
    fn a_stale_credential_is_recomputed_when_the_store_opens() {
        let dir = std::env::temp_dir().join(format!(
            "cairn-meta-credential-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("meta.sqlite");
        let conn = CloudConnection {
            provider: "s3".into(),
            options: BTreeMap::from([
                ("access_key_id".to_string(), "AK".to_string()),
                ("endpoint".to_string(), "http://h:9000".to_string()),
                ("bucket".to_string(), "data".to_string()),
            ]),
            secrets: vec![],
            prompt: vec![],
            ca_file: None,
            limit_upload: None,
            limit_download: None,
            public_only: false,
        };
        {
            let meta = Meta::open(&path).expect("open");
            meta.add_user("alice", "hash", false).expect("user");
            let (alice, _) = meta.user_by_name("alice").expect("read").expect("alice");
            meta.save_cloud_connection(&alice, "one", &conn, &Secrets::default(), false)
                .expect("first connection");
            meta.write("ageing a credential", |db| {
                db.exec(
                    "ageing a credential",
                    "UPDATE cloud_connections SET credential='s3|http://h:9000|AK'",
                    args![],
                )
            })
            .expect("an older version's value");
        }
        let meta = Meta::open(&path).expect("reopen");
        let (alice, _) = meta.user_by_name("alice").expect("read").expect("alice");
        let err = meta
            .save_cloud_connection(&alice, "two", &conn, &Secrets::default(), false)
            .expect_err("the same credential again");
        assert!(
            err.to_string().contains("already uses this credential"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// What a user saves is held to public addresses at every connection; what an
    /// administrator saves is not (and a request cannot choose for itself).
    #[test]
    fn a_users_connection_is_public_only_and_an_administrators_is_not() {
        let dir = std::env::temp_dir().join(format!(
            "cairn-meta-public-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let meta = Meta::open(&dir.join("meta.sqlite")).expect("open");
        meta.add_user("alice", "hash", false).expect("user");
        let (alice, _) = meta.user_by_name("alice").expect("read").expect("alice");
        let request = |name: &str, key: &str| crate::cloud::ConnectionRequest {
            name: name.into(),
            owner: None,
            connection: CloudConnection {
                provider: "s3".into(),
                // A literal public address: checked without DNS.
                options: BTreeMap::from([
                    ("access_key_id".to_string(), key.to_string()),
                    ("endpoint".to_string(), "http://1.1.1.1:9000".to_string()),
                    ("bucket".to_string(), "data".to_string()),
                ]),
                secrets: vec![],
                prompt: vec![],
                ca_file: None,
                limit_upload: None,
                limit_download: None,
                public_only: false,
            },
            secrets: BTreeMap::new(),
            edit: false,
        };
        crate::cloud::save_connection(&meta, &alice, request("mine", "AK1"), false).expect("saved");
        crate::cloud::save_connection(&meta, &alice, request("set-up", "AK2"), true)
            .expect("saved");
        let rows = meta.cloud_connections(Some(alice.id)).expect("rows");
        let public_only = |name: &str| {
            rows.iter()
                .find(|r| r.name == name)
                .map(|r| r.connection.public_only)
                .expect("row")
        };
        assert!(public_only("mine"));
        assert!(!public_only("set-up"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
