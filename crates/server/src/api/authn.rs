//! A user's name and password, checked one way for every door (the API's login, the web
//! page's, and any later one): the login gate admits the attempt or throttles it (429, noted
//! in the activity log once a minute); then the password is checked, by a local account's
//! hash or by the directory (`crate::directory`); the outcome is counted by the throttle and
//! recorded in the activity log.
//!
//! Which check: `DOMAIN\user` and `user@base-dn` go to the directory only. A plain name goes
//! to the local account of that name when there is one (verified off the runtime against its
//! hash), else to the directory when one is configured, else against the gate's dummy hash
//! (an unknown name costs what a known one does). So local accounts keep working whatever
//! the directory's state, and a directory user never shadows a local one of the same name.
//! A directory that cannot be reached fails the attempt without counting it as a wrong
//! password: the user did nothing wrong, and the throttle must not lock them out for it.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{blocking, login_event, ApiError, AppState};
use crate::directory::{Directory, DirectoryUser, LoginName, Verdict};
use crate::login::{Refusal, Ticket};
use crate::meta::{Actor, DirectoryAccount, EventKind, User};

/// Why a name and password did not let someone in.
pub(crate) enum Denied {
    /// Refused before any password work; says when to come back.
    Throttled(Refusal),
    /// A wrong name or password (which of the two is not said).
    Wrong,
    /// The password was right, but the account (named) is disabled, here or in the
    /// directory.
    Disabled(String),
    /// The directory that checks this name could not be asked; the log says why.
    Unavailable,
    /// The metadata store failed.
    Failed(ApiError),
}

/// What the local check found.
enum Local {
    /// The local account whose password this is, or `None`.
    Checked(Option<User>),
    /// No local account has this name: the directory decides.
    NotLocal,
}

impl AppState {
    /// The user `name` is, if `password` is theirs and they may log in. `way` says which
    /// door (`api`, `web`) in the activity log.
    pub(crate) async fn authenticate(
        self: &Arc<Self>,
        name: &str,
        password: String,
        peer: SocketAddr,
        way: &'static str,
    ) -> Result<User, Denied> {
        let directory = self.directory.get().cloned();
        let login = match &directory {
            Some(d) => d.parse_name(name),
            None => Some(LoginName::Either(name)),
        };
        // Without a directory, names count exactly as typed, as they always did.
        let key = match (&login, &directory) {
            (Some(l), Some(_)) => l.throttle_key(),
            _ => name.to_string(),
        };
        let ticket = match self.login.admit(&key, peer.ip()).await {
            Ok(t) => t,
            Err(refusal) => {
                self.note_throttled(EventKind::LoginThrottled, name.to_string(), peer, way)
                    .await;
                return Err(Denied::Throttled(refusal));
            }
        };
        let door = Door { name, peer, way };
        let result = match (login, directory) {
            (Some(LoginName::Directory(user)), Some(d)) => {
                // The directory's turns bound these; the hashing slot is for local users.
                drop(ticket);
                self.through_directory(&d, user, &password, &door).await
            }
            (Some(LoginName::Either(n)), d) => {
                match self.local(n, password.clone(), ticket, d.is_some()).await {
                    Ok(Local::Checked(found)) => self.local_outcome(found, &door).await,
                    Ok(Local::NotLocal) => match d {
                        Some(d) => self.through_directory(&d, n, &password, &door).await,
                        None => Err(Denied::Wrong),
                    },
                    Err(e) => Err(Denied::Failed(e)),
                }
            }
            // Another domain's name: nobody has it; it costs what an unknown name does.
            _ => match self.local("", password, ticket, false).await {
                Ok(_) => self.local_outcome(None, &door).await,
                Err(e) => Err(Denied::Failed(e)),
            },
        };
        match &result {
            Ok(_) => self.login.succeeded(&key, peer.ip()),
            // A disabled account's attempts count as failures too: it is no way around the
            // throttle.
            Err(Denied::Wrong | Denied::Disabled(_)) => self.login.failed(&key, peer.ip()),
            Err(_) => {}
        }
        result
    }

    /// Verifies `password` against the local account `name` (or the dummy hash). With
    /// `directory`, a name no local account has is left to the directory, unverified.
    async fn local(
        self: &Arc<Self>,
        name: &str,
        password: String,
        ticket: Ticket,
        directory: bool,
    ) -> Result<Local, ApiError> {
        let tried = name.to_string();
        blocking(self, move |m| {
            let row = m.user_by_name(&tried)?;
            let local = row.as_ref().filter(|(u, _)| u.directory.is_empty());
            if directory && local.is_none() {
                return Ok(Local::NotLocal);
            }
            let ok = ticket.verify(&password, local.map(|(_, hash)| hash.as_str()));
            Ok(Local::Checked(local.filter(|_| ok).map(|(u, _)| u.clone())))
        })
        .await
    }

    async fn local_outcome(
        self: &Arc<Self>,
        found: Option<User>,
        door: &Door<'_>,
    ) -> Result<User, Denied> {
        login_event(self, door.name, found.as_ref(), door.peer, door.way).await;
        match found {
            Some(user) if !user.disabled => Ok(user),
            Some(user) => Err(Denied::Disabled(user.name)),
            None => Err(Denied::Wrong),
        }
    }

    /// Asks the directory about `user`, then brings their account, role and grants in line
    /// with what it says.
    async fn through_directory(
        self: &Arc<Self>,
        d: &Arc<Directory>,
        user: &str,
        password: &str,
        door: &Door<'_>,
    ) -> Result<User, Denied> {
        let verdict = match d.login(user, password).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(user = door.name, error = %e, "a directory login could not be checked");
                self.directory_event(door, Some("the directory could not be reached"))
                    .await;
                return Err(Denied::Unavailable);
            }
        };
        let found = match verdict {
            Verdict::Accepted(found) => found,
            Verdict::Rejected { why } => {
                self.directory_event(door, Some(&why)).await;
                return Err(Denied::Wrong);
            }
            Verdict::Disabled { name } => {
                self.directory_event(door, Some("disabled in the directory"))
                    .await;
                return Err(Denied::Disabled(name));
            }
        };
        self.directory_account(d, found, door).await
    }

    /// Makes or updates the account of `found`, who proved their directory password.
    async fn directory_account(
        self: &Arc<Self>,
        d: &Arc<Directory>,
        found: DirectoryUser,
        door: &Door<'_>,
    ) -> Result<User, Denied> {
        if !cairn_protocol::is_valid_name(&found.name) {
            let why = format!(
                "{:?} of {} is not a valid cairn user name",
                found.name, found.dn
            );
            tracing::warn!(user = door.name, "{why}");
            self.directory_event(door, Some(&why)).await;
            return Err(Denied::Wrong);
        }
        let membership = d.membership(&found.groups);
        let (id, name) = (d.id().to_string(), found.name.clone());
        let account = blocking(self, move |m| {
            m.directory_login(&id, &name, membership.admin, &membership.grants)
        })
        .await
        .map_err(Denied::Failed)?;
        match account {
            DirectoryAccount::Taken { owner } => {
                let why = match owner.as_str() {
                    "" => format!("{} is the name of a local account", found.name),
                    other => format!("{} belongs to directory {other}", found.name),
                };
                tracing::warn!(user = door.name, "a directory login was refused: {why}");
                self.directory_event(door, Some(&why)).await;
                Err(Denied::Wrong)
            }
            DirectoryAccount::Ready { user, missing } => {
                if !missing.is_empty() {
                    tracing::warn!(
                        user = %user.name,
                        folders = ?missing,
                        "[ldap] maps groups to folders that do not exist"
                    );
                }
                if user.disabled {
                    self.directory_event(door, Some("user is disabled")).await;
                    return Err(Denied::Disabled(user.name));
                }
                self.directory_event(door, None).await;
                Ok(user)
            }
        }
    }

    /// A directory login in the activity log: failed with `why`, or accepted.
    async fn directory_event(self: &Arc<Self>, door: &Door<'_>, why: Option<&str>) {
        let (tried, peer, way) = (door.name.to_string(), door.peer, door.way);
        let why = why.map(str::to_string);
        let _ = blocking(self, move |m| {
            let by = Actor::user(&tried, peer.ip());
            let why = why.map(|w| format!("directory: {w}"));
            super::record_login(m, &by, &tried, way, why.as_deref());
            Ok(())
        })
        .await;
    }
}

/// The attempt being checked: the name as typed, from where, through which door.
struct Door<'a> {
    name: &'a str,
    peer: SocketAddr,
    way: &'static str,
}
