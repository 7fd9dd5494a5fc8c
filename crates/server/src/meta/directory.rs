//! The accounts of directory users (`crate::directory`): created at a first login, and
//! their role and grants brought in line with their directory groups at every login, in one
//! transaction.
//!
//! A user's `directory` column says where their password is checked: empty for a local
//! account (its `pw_hash`), else the normalised base DN of their directory. A directory
//! account has no usable local password (`pw_hash` is no PHC string, so no hash verifies
//! against it), and a name held by a local account is never taken over by a directory login
//! of the same name: the login is refused and says why in the log.

use cairn_protocol::Access;

use super::sql::{args, Sql};
use super::{folder_in, user_with_id, Meta, User};
use crate::{Error, Result};

/// The `pw_hash` of directory accounts: not a PHC string, so it verifies no password.
pub const NO_LOCAL_PASSWORD: &str = "!directory";

/// What [`Meta::directory_login`] did.
#[derive(Debug)]
pub enum DirectoryAccount {
    /// The account, up to date; `missing` lists mapped folders that do not exist.
    Ready { user: User, missing: Vec<String> },
    /// The name belongs to a local account, or to another directory's.
    Taken { owner: String },
}

impl Meta {
    /// Creates the account of directory `directory`'s user `name` if it is new, sets their
    /// admin role when `admin` says, and sets or removes their grant on each folder of
    /// `grants` (folders no mapping names are left alone).
    ///
    /// # Errors
    /// When the store fails.
    pub fn directory_login(
        &self,
        directory: &str,
        name: &str,
        admin: Option<bool>,
        grants: &[(String, Option<Access>)],
    ) -> Result<DirectoryAccount> {
        let what = "recording a directory login";
        self.write(what, |db| {
            let id = match owner_in(db, name)? {
                None => create(db, what, directory, name, admin.unwrap_or(false))?,
                Some((id, owner)) if owner == directory => id,
                Some((_, owner)) => return Ok(DirectoryAccount::Taken { owner }),
            };
            if let Some(admin) = admin {
                // A role change ends the sessions of the old role, as `set_admin` does.
                db.exec(
                    what,
                    "UPDATE users SET admin=?1, token_gen=token_gen+1 WHERE id=?2 AND admin<>?1",
                    args![admin, id],
                )?;
            }
            let mut missing = Vec::new();
            for (folder, access) in grants {
                let Some(f) = folder_in(db, folder)? else {
                    missing.push(folder.clone());
                    continue;
                };
                match access {
                    Some(a) => db.exec(
                        what,
                        "INSERT INTO grants(folder_id, user_id, access) VALUES(?1, ?2, ?3)
                         ON CONFLICT(folder_id, user_id) DO UPDATE SET access=excluded.access",
                        args![f.id, id, a.as_str()],
                    )?,
                    None => db.exec(
                        what,
                        "DELETE FROM grants WHERE folder_id=?1 AND user_id=?2",
                        args![f.id, id],
                    )?,
                };
            }
            let user = user_with_id(db, id)?
                .ok_or_else(|| Error::Corrupt(format!("user {name} vanished while logging in")))?;
            Ok(DirectoryAccount::Ready { user, missing })
        })
    }
}

/// The id of the user named `name` and the directory that owns them ("" for local).
fn owner_in(db: &dyn Sql, name: &str) -> Result<Option<(i64, String)>> {
    db.opt(
        "looking up user",
        "SELECT id, directory FROM users WHERE name=?1",
        args![name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

fn create(db: &dyn Sql, what: &str, directory: &str, name: &str, admin: bool) -> Result<i64> {
    db.exec(
        what,
        "INSERT INTO users(name, pw_hash, admin, directory) VALUES(?1, ?2, ?3, ?4)",
        args![name, NO_LOCAL_PASSWORD, admin, directory],
    )?;
    owner_in(db, name)?
        .map(|(id, _)| id)
        .ok_or_else(|| Error::Corrupt(format!("user {name} vanished after it was added")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const DIR: &str = "dc=example,dc=com";

    /// The behaviour, on whichever engine `meta` runs.
    pub(crate) fn directory_accounts(meta: &Meta) {
        meta.add_folder("team", 5).expect("folder");
        meta.add_folder("minutes", 5).expect("folder");
        meta.add_user("bob", "local-hash", false)
            .expect("local bob");
        let ready = |r: DirectoryAccount| match r {
            DirectoryAccount::Ready { user, missing } => (user, missing),
            DirectoryAccount::Taken { owner } => panic!("taken by {owner:?}"),
        };
        let grants = vec![
            ("team".to_string(), Some(Access::Rw)),
            ("minutes".to_string(), Some(Access::Ro)),
            ("gone".to_string(), Some(Access::Rw)),
        ];
        let (alice, missing) = ready(
            meta.directory_login(DIR, "alice", Some(false), &grants)
                .expect("first login"),
        );
        assert_eq!((alice.directory.as_str(), alice.admin), (DIR, false));
        assert_eq!(missing, ["gone"]);
        let folders = |u: &User| -> Vec<(String, Access)> {
            let mut f: Vec<_> = meta
                .folders_of(u)
                .expect("folders")
                .into_iter()
                .map(|f| (f.name, f.access))
                .collect();
            f.sort_by(|a, b| a.0.cmp(&b.0));
            f
        };
        assert_eq!(
            folders(&alice),
            [("minutes".into(), Access::Ro), ("team".into(), Access::Rw)]
        );
        let (_, hash) = meta.user_by_name("alice").expect("read").expect("alice");
        assert_eq!(hash, NO_LOCAL_PASSWORD);

        // Next login: out of one group, into the admins; the same account.
        let fewer = vec![
            ("team".to_string(), None),
            ("minutes".to_string(), Some(Access::Ro)),
        ];
        let (again, _) = ready(
            meta.directory_login(DIR, "alice", Some(true), &fewer)
                .expect("second login"),
        );
        assert_eq!(again.id, alice.id);
        assert!(again.admin && again.token_gen > alice.token_gen);
        assert_eq!(folders(&again), [("minutes".into(), Access::Ro)]);

        // A grant on a folder no mapping names stays; no admin group leaves the role.
        meta.add_folder("private", 5).expect("folder");
        meta.grant("private", "alice", Access::Rw).expect("grant");
        let (kept, _) = ready(
            meta.directory_login(DIR, "alice", None, &fewer)
                .expect("login"),
        );
        assert!(kept.admin);
        assert_eq!(folders(&kept).len(), 2);

        // A local name is never taken over, nor another directory's.
        match meta
            .directory_login(DIR, "bob", None, &grants)
            .expect("login")
        {
            DirectoryAccount::Taken { owner } => assert_eq!(owner, ""),
            other => panic!("{other:?}"),
        }
        match meta
            .directory_login("dc=other", "alice", None, &grants)
            .expect("login")
        {
            DirectoryAccount::Taken { owner } => assert_eq!(owner, DIR),
            other => panic!("{other:?}"),
        }
        let (bob, _) = meta.user_by_name("bob").expect("read").expect("bob");
        assert_eq!(bob.directory, "");
        assert!(meta.folders_of(&bob).expect("folders").is_empty());
    }

    #[test]
    fn directory_accounts_on_sqlite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = Meta::open(&dir.path().join("meta.sqlite")).expect("open");
        directory_accounts(&meta);
    }

    #[test]
    fn directory_accounts_on_postgres() {
        let name = "t_directory_accounts";
        let Some(cluster) = cairn_testkit::postgres::shared(name) else {
            return;
        };
        let url = cluster.create_database(name).expect("a test database");
        let address = super::super::PgAddress::parse(&url).expect("address");
        let meta = Meta::open_postgres(&address).expect("open");
        directory_accounts(&meta);
    }
}
